/**
 * Finding and loading the native library.
 *
 * Order: an explicit path (option) -> RELAYKIT_LIB -> the package's own build
 * (native/build/librelaykit.so beside the sources) -> a build into a cache
 * directory with the system C compiler -> not available. An explicit path or
 * RELAYKIT_LIB that fails is final: a user who names a library gets that
 * library or an error naming it, never a different one.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { NativeLoadError } from "../errors.ts";
import { runtime } from "../runtime/detect.ts";
import type { NativeLibrary } from "../runtime/types.ts";
import { NATIVE_VERSION, SYMBOLS } from "./symbols.ts";

/** Options for {@link loadNative}. */
export interface LoadOptions {
  /** Load exactly this file. */
  path?: string;
  /** Build into a cache directory if nothing is found. @default true */
  build?: boolean;
}

/** A loaded library and where it came from. */
export interface LoadedNative {
  /** The bound library. */
  lib: NativeLibrary;
  /** The file it was loaded from. */
  path: string;
}

const LIB_NAME = "librelaykit.so";

function nativeDir(): string {
  return fileURLToPath(new URL("../../native/", import.meta.url).href);
}

function isPermissionError(err: unknown): boolean {
  return err instanceof Error &&
    (err.name === "NotCapable" || err.name === "PermissionDenied");
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message.split("\n")[0] ?? err.name : String(err);
}

function envLib(): string | undefined {
  try {
    const v = process.env.RELAYKIT_LIB;
    return v === undefined || v === "" ? undefined : v;
  } catch (err) {
    if (isPermissionError(err)) return undefined; // no --allow-env: no override
    throw err;
  }
}

/** The compiler invocation that builds the library from its sources. */
function buildInto(dir: string, src: string): string {
  mkdirSync(dir, { recursive: true });
  const out = join(dir, LIB_NAME);
  const tmp = `${out}.${process.pid}.tmp`;
  const sources = readdirSync(join(src, "src"))
    .filter((f) => f.endsWith(".c"))
    .map((f) => join(src, "src", f));
  const cc = process.env.CC ?? "cc";
  execFileSync(cc, [
    "-std=gnu11",
    "-O2",
    "-fPIC",
    "-fvisibility=hidden",
    "-pthread",
    "-D_GNU_SOURCE",
    "-shared",
    "-Wl,-z,nodelete",
    `-Wl,--version-script=${join(src, "relaykit.map")}`,
    "-o",
    tmp,
    ...sources,
  ], { stdio: ["ignore", "ignore", "pipe"] });
  renameSync(tmp, out); // atomic: a concurrent loader never sees half a file
  return out;
}

function cacheDir(src: string): string {
  // keyed by the sources, so an upgrade never loads a stale build
  const h = createHash("sha256");
  for (const f of readdirSync(join(src, "src")).sort()) {
    h.update(f);
    h.update(readFileSync(join(src, "src", f)));
  }
  h.update(readFileSync(join(src, "include", "relaykit.h")));
  const base = process.env.XDG_CACHE_HOME ??
    (homedir() ? join(homedir(), ".cache") : tmpdir());
  return join(base, "relaykit", h.digest("hex").slice(0, 16));
}

function open(path: string): NativeLibrary {
  const lib = runtime.dlopen(path, SYMBOLS);
  const v = lib.symbols.rk_version();
  if (v !== NATIVE_VERSION) {
    lib.close();
    throw new Error(
      `library version ${v >> 16}.${(v >> 8) & 255}.${v & 255} does not match ${
        NATIVE_VERSION >> 16
      }.${(NATIVE_VERSION >> 8) & 255}.${NATIVE_VERSION & 255}`,
    );
  }
  return lib;
}

/**
 * Load the native library, trying each place in order.
 *
 * @param options An explicit path, and whether to build as a last resort.
 * @returns The library and the path it came from.
 * @throws {NativeLoadError} listing every path tried and why it failed; a
 * runtime permission error (Deno without `--allow-ffi`) passes through.
 */
export function loadNative(options: LoadOptions = {}): LoadedNative {
  const attempts: { path: string; reason: string }[] = [];
  if (!runtime.ffi) {
    throw new NativeLoadError(
      `Cannot load the relaykit native library on ${runtime.name}: it has no FFI`,
      [],
    );
  }
  const explicit: [string, string][] = [];
  if (options.path !== undefined) explicit.push([options.path, "the path option"]);
  const env = envLib();
  if (env !== undefined) explicit.push([env, "RELAYKIT_LIB"]);
  const first = explicit[0];
  if (first !== undefined) {
    const [path, from] = first;
    try {
      if (!existsSync(path)) throw new Error("file not found");
      return { lib: open(path), path };
    } catch (err) {
      if (isPermissionError(err)) throw err;
      throw new NativeLoadError(
        `Cannot load the relaykit native library from "${path}" (set by ${from}): ${reasonOf(err)}`,
        [{ path, reason: reasonOf(err) }],
        err,
      );
    }
  }

  const src = nativeDir();
  const tryOpen = (path: string): LoadedNative | undefined => {
    try {
      if (!existsSync(path)) {
        attempts.push({ path, reason: "file not found" });
        return undefined;
      }
      return { lib: open(path), path };
    } catch (err) {
      if (isPermissionError(err)) throw err;
      attempts.push({ path, reason: reasonOf(err) });
      return undefined;
    }
  };
  const own = tryOpen(join(src, "build", LIB_NAME));
  if (own !== undefined) return own;

  let cache: string | undefined;
  try {
    cache = join(cacheDir(src), LIB_NAME);
  } catch (err) {
    if (isPermissionError(err)) throw err;
    attempts.push({ path: join(src, "src"), reason: `no sources to build: ${reasonOf(err)}` });
  }
  if (cache !== undefined) {
    const cached = tryOpen(cache);
    if (cached !== undefined) return cached;
    if (options.build !== false) {
      try {
        const path = buildInto(join(cache, ".."), src);
        return { lib: open(path), path };
      } catch (err) {
        if (isPermissionError(err)) throw err;
        const stderr = (err as { stderr?: { toString(): string } }).stderr?.toString().trim();
        attempts.push({
          path: cache,
          reason: `building with the C compiler failed: ${stderr || reasonOf(err)}`,
        });
      }
    }
  }
  throw new NativeLoadError(
    `Cannot load the relaykit native library; tried:\n${
      attempts.map((a) => `  ${a.path}: ${a.reason}`).join("\n")
    }\nSet RELAYKIT_LIB to a built librelaykit.so, or run "make -C native".`,
    attempts,
  );
}
