/**
 * Which C library this Linux process runs on, read from its own mappings
 * (the musl loader is its libc; glibc maps libc.so.6). Checking for files
 * such as /lib/ld-musl-*.so.1 would be wrong: a glibc system may have musl
 * installed, and a musl system a glibc compatibility layer.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import type { Libc } from "./types.ts";

/** The libc of this process on Linux, or undefined. */
export function processLibc(): Libc | undefined {
  if (process.platform !== "linux") return undefined;
  let maps: string;
  try {
    maps = readFileSync("/proc/self/maps", "utf8");
  } catch {
    return undefined;
  }
  if (/\/(?:ld-musl-[^/\s]*|libc\.musl-[^/\s]*)$/m.test(maps)) return "musl";
  if (/\/libc\.so\.6$|\/libc-2\.[0-9]+\.so$/m.test(maps)) return "glibc";
  return undefined;
}
