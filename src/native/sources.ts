/**
 * The C sources of the native library as one fact: which files under
 * native/ they are and one SHA-256 over them all. The prebuilt libraries
 * record the hash of the sources they were built from; the loader and the
 * tests compare it with the sources they see.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The SHA-256 of some bytes, in hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * The files a build reads, relative to the native/ directory, sorted: the
 * Makefile (it owns the flags), the export map, the headers and C files.
 */
export function listSources(nativeDir: string): string[] {
  const under = (d: string, ext: RegExp) =>
    readdirSync(join(nativeDir, d)).filter((f) => ext.test(f)).map((f) => `${d}/${f}`);
  return [
    "Makefile",
    "relaykit.map",
    ...under("include", /\.h$/),
    ...under("src", /\.[ch]$/),
  ].sort();
}

/** One SHA-256 over named files: each name, its length and its bytes, in order. */
export function hashSources(files: Iterable<[name: string, bytes: Uint8Array]>): string {
  const h = createHash("sha256");
  for (const [name, bytes] of files) {
    h.update(`${name}\0${bytes.length}\0`);
    h.update(bytes);
  }
  return h.digest("hex");
}

/** The hash of the files `names` under `nativeDir`. */
export function sourcesHash(nativeDir: string, names: readonly string[]): string {
  return hashSources(
    names.map((n): [string, Uint8Array] => [n, readFileSync(join(nativeDir, n))]),
  );
}
