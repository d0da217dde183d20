/**
 * Finding and loading the native library.
 *
 * Order, when relaykit is on disk (a checkout, the npm package):
 * an explicit path (option) -> RELAYKIT_LIB -> the checkout's own build
 * (native/build/librelaykit.so) -> the prebuilt library of this platform
 * (native/prebuilt/PLATFORM/librelaykit.so, its SHA-256 checked) -> a build
 * of the sources into the cache directory with the system C compiler.
 *
 * When relaykit is imported from an http(s) URL (JSR, or any server):
 * an explicit path -> RELAYKIT_LIB -> the prebuilt library of this platform,
 * fetched once from beside the modules into the cache directory under its
 * SHA-256 -> the C sources, fetched the same way (their hash checked), built
 * with the system C compiler. The fetching happens while this module loads
 * (loading the library is synchronous); it asks for no permission it does
 * not have, and says which flag a missing one needs.
 *
 * A library whose SHA-256 is not the one in src/native/prebuilt.ts is never
 * loaded. An explicit path or RELAYKIT_LIB that fails is final: a user who
 * names a library gets that library or an error naming it, never another.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { NativeLoadError } from "../errors.ts";
import { runtime } from "../runtime/detect.ts";
import type { NativeLibrary } from "../runtime/types.ts";
import { PREBUILT, type PrebuiltPlatform } from "./prebuilt.ts";
import { hashSources, listSources, sha256, sourcesHash } from "./sources.ts";
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

type Attempt = { path: string; reason: string };

const LIB_NAME = "librelaykit.so";
/** native/ beside the modules: a directory, or a URL when imported from one. */
const NATIVE_URL = new URL("../../native/", import.meta.url);
const REMOTE = NATIVE_URL.protocol === "http:" || NATIVE_URL.protocol === "https:";
/** How long fetching one file may take before the loader gives up on it. */
const FETCH_TIMEOUT_MS = 30_000;
/** The environment variables that place the cache directory, in order. */
const CACHE_ENV = ["RELAYKIT_CACHE", "XDG_CACHE_HOME", "HOME"] as const;

/**
 * The platforms whose prebuilt library may load here, best first, or the one
 * line that says why none can and what would bring the native engine.
 */
export function prebuiltPlatforms(): { platforms: PrebuiltPlatform[] } | { why: string } {
  const os = process.platform, arch = process.arch;
  if (os !== "linux") {
    const name = os === "darwin" ? "macOS" : os === "win32" ? "Windows" : os;
    return {
      why:
        `The native engine is Linux-only (epoll, splice) and this is ${name}: run on Linux (x64 or arm64, a container will do) for it`,
    };
  }
  if (arch !== "x64" && arch !== "arm64") {
    return {
      why:
        `No prebuilt library for linux-${arch} (there are for x64 and arm64): install a C compiler (cc) and relaykit builds one, or set RELAYKIT_LIB to a built librelaykit.so`,
    };
  }
  const libcs = runtime.libc === undefined ? ["glibc", "musl"] as const : [runtime.libc];
  return { platforms: libcs.map((l) => `linux-${arch}-${l}` as PrebuiltPlatform) };
}

function isPermissionError(err: unknown): boolean {
  return err instanceof Error &&
    (err.name === "NotCapable" || err.name === "PermissionDenied");
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message.split("\n")[0] ?? err.name : String(err);
}

function env(name: string): string | undefined {
  if (!runtime.granted({ name: "env", variable: name })) return undefined;
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

/**
 * The libssl the native engine loads for TLS instead of libssl.so.3
 * (RELAYKIT_LIBSSL): another OpenSSL 3 build, or - for tests - a path that
 * does not exist, which makes native TLS unavailable.
 */
export function libsslOverride(): string | undefined {
  return env("RELAYKIT_LIBSSL");
}

/**
 * The cache directory: RELAYKIT_CACHE, else $XDG_CACHE_HOME/relaykit, else
 * ~/.cache/relaykit, else relaykit in the temporary directory. Undefined
 * (with the flag to add) when Deno may not read these variables.
 */
function cacheRoot(): string | { missing: string } {
  const own = env("RELAYKIT_CACHE");
  if (own !== undefined) return own;
  if (!CACHE_ENV.every((variable) => runtime.granted({ name: "env", variable }))) {
    return { missing: `--allow-env=${CACHE_ENV.join(",")}` };
  }
  const xdg = env("XDG_CACHE_HOME");
  if (xdg !== undefined) return join(xdg, "relaykit");
  const home = env("HOME") ?? homedir();
  return home ? join(home, ".cache", "relaykit") : join(tmpdir(), "relaykit");
}

/** The flags a Deno run lacks for reading and writing `dir`. */
function missingFileAccess(dir: string, write: boolean): string[] {
  const missing: string[] = [];
  if (!runtime.granted({ name: "read", path: dir })) missing.push(`--allow-read=${dir}`);
  if (write && !runtime.granted({ name: "write", path: dir })) {
    missing.push(`--allow-write=${dir}`);
  }
  return missing;
}

function needs(flags: string[]): string {
  return `needs ${flags.join(" ")} (run again with ${
    flags.length === 1 ? "that flag" : "those flags"
  })`;
}

/** Write atomically: a concurrent loader never sees half a file. */
function writeAtomic(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

/** The compiler invocation that builds the library from its sources. */
function buildInto(dir: string, src: string): string {
  mkdirSync(dir, { recursive: true });
  const out = join(dir, LIB_NAME);
  const tmp = `${out}.${process.pid}.tmp`;
  const sources = readdirSync(join(src, "src"))
    .filter((f) => f.endsWith(".c"))
    .map((f) => join(src, "src", f));
  execFileSync(env("CC") ?? "cc", [
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
  renameSync(tmp, out);
  return out;
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
 * Why `bytes` may not be loaded as the prebuilt library of `platform`, or
 * undefined when its SHA-256 is the recorded one.
 */
export function checksumProblem(platform: PrebuiltPlatform, bytes: Uint8Array): string | undefined {
  const want = PREBUILT.libraries[platform].sha256;
  const got = sha256(bytes);
  return got === want
    ? undefined
    : `checksum mismatch: its SHA-256 is ${got}, the ${platform} library's is ${want}; not loaded`;
}

// ---- fetching, when imported from a URL ------------------------------------

/** What fetching found, for the synchronous load to report. */
const fetched: Attempt[] = [];
/** A directory holding sources fetched and verified, when no prebuilt would do. */
let fetchedSources: string | undefined;

async function download(url: URL): Promise<Uint8Array> {
  const res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`HTTP ${res.status} ${res.statusText}`.trim());
  }
  return new Uint8Array(await res.arrayBuffer());
}

/** Fetch this platform's prebuilt library (or else the sources) into the cache. */
async function prefetch(): Promise<void> {
  const plan = prebuiltPlatforms();
  if ("why" in plan && process.platform !== "linux") return; // nothing to fetch
  const root = cacheRoot();
  if (typeof root !== "string") {
    fetched.push({ path: "the cache directory", reason: needs([root.missing]) });
    return;
  }
  const host = NATIVE_URL.host;
  const missing = missingFileAccess(root, true);
  const net = runtime.granted({ name: "net", host });
  let prebuiltOk = false;
  for (const platform of "platforms" in plan ? plan.platforms : []) {
    const want = PREBUILT.libraries[platform].sha256;
    const path = join(root, want, LIB_NAME);
    const url = new URL(`prebuilt/${platform}/${LIB_NAME}`, NATIVE_URL);
    if (missing.length === 0 && existsSync(path)) {
      const problem = checksumProblem(platform, readFileSync(path));
      if (problem === undefined) {
        prebuiltOk = true; // and checked again before loading
        continue;
      }
      // refused; fetched again over it below
      fetched.push({ path, reason: problem });
    }
    if (!net || missing.length > 0) {
      const flags = [...(net ? [] : [`--allow-net=${host}`]), ...missing];
      fetched.push({ path: url.href, reason: `fetching it into ${root} ${needs(flags)}` });
      continue;
    }
    try {
      const bytes = await download(url);
      const problem = checksumProblem(platform, bytes);
      if (problem !== undefined) {
        fetched.push({ path: url.href, reason: problem });
        continue;
      }
      writeAtomic(path, bytes);
      prebuiltOk = true;
    } catch (err) {
      fetched.push({ path: url.href, reason: `fetching it failed: ${reasonOf(err)}` });
    }
  }
  if (prebuiltOk || !net || missing.length > 0) return;
  // No prebuilt library here: fetch the sources for the C compiler.
  const dir = join(root, `sources-${PREBUILT.sources.sha256.slice(0, 16)}`);
  try {
    if (!existsSync(join(dir, "Makefile"))) {
      const files: [string, Uint8Array][] = [];
      for (const name of PREBUILT.sources.files) {
        files.push([name, await download(new URL(name, NATIVE_URL))]);
      }
      if (hashSources(files) !== PREBUILT.sources.sha256) {
        throw new Error("their SHA-256 is not the one recorded: not used");
      }
      const tmp = `${dir}.${process.pid}.tmp`;
      rmSync(tmp, { recursive: true, force: true });
      for (const [name, bytes] of files) writeAtomic(join(tmp, name), bytes);
      renameSync(tmp, dir);
    }
    fetchedSources = dir;
  } catch (err) {
    fetched.push({
      path: new URL("src/", NATIVE_URL).href,
      reason: `fetching the C sources failed: ${reasonOf(err)}`,
    });
  }
}

if (REMOTE && runtime.ffi) await prefetch();

// ---- loading -----------------------------------------------------------------

/**
 * Load the native library, trying each place in order.
 *
 * @param options An explicit path, and whether to build as a last resort.
 * @returns The library and the path it came from.
 * @throws {NativeLoadError} listing every path tried and why it failed; a
 * runtime permission error (Deno without `--allow-ffi`) passes through.
 */
export function loadNative(options: LoadOptions = {}): LoadedNative {
  const attempts: Attempt[] = [];
  if (!runtime.ffi) {
    throw new NativeLoadError(
      `Cannot load the relaykit native library on ${runtime.name}: it has no FFI`,
      [],
    );
  }
  const explicit: [string, string][] = [];
  if (options.path !== undefined) explicit.push([options.path, "the path option"]);
  const lib = env("RELAYKIT_LIB");
  if (lib !== undefined) explicit.push([lib, "RELAYKIT_LIB"]);
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

  const plan = prebuiltPlatforms();
  if ("why" in plan && process.platform !== "linux") {
    throw new NativeLoadError(plan.why, []);
  }
  const tryOpen = (path: string, platform?: PrebuiltPlatform): LoadedNative | undefined => {
    try {
      if (!existsSync(path)) {
        attempts.push({ path, reason: "file not found" });
        return undefined;
      }
      if (platform !== undefined) {
        const problem = checksumProblem(platform, readFileSync(path));
        if (problem !== undefined) {
          attempts.push({ path, reason: problem });
          return undefined;
        }
      }
      return { lib: open(path), path };
    } catch (err) {
      if (isPermissionError(err)) throw err;
      attempts.push({ path, reason: reasonOf(err) });
      return undefined;
    }
  };
  const platforms = "platforms" in plan ? plan.platforms : [];

  let src: string | undefined;
  let cache: string | undefined;
  if (!REMOTE) {
    const dir = fileURLToPath(NATIVE_URL.href);
    const own = tryOpen(join(dir, "build", LIB_NAME));
    if (own !== undefined) return own;
    // sources beside the prebuilt libraries that are not theirs (a checkout
    // after a C change): those libraries would not match the TypeScript
    let stale = false;
    try {
      stale = existsSync(join(dir, "src")) &&
        sourcesHash(dir, listSources(dir)) !== PREBUILT.sources.sha256;
    } catch (err) {
      if (isPermissionError(err)) throw err;
    }
    for (const platform of platforms) {
      const path = join(dir, "prebuilt", platform, LIB_NAME);
      if (stale) {
        attempts.push({
          path,
          reason:
            'built from other sources than these (run "deno run -A scripts/build_prebuilt.ts")',
        });
        continue;
      }
      const found = tryOpen(path, platform);
      if (found !== undefined) return found;
    }
    if (existsSync(join(dir, "src"))) src = dir;
  } else {
    attempts.push(...fetched);
    const root = cacheRoot();
    // without access to the cache, fetching said which flags are missing
    if (typeof root === "string" && missingFileAccess(root, false).length === 0) {
      for (const platform of platforms) {
        const path = join(root, PREBUILT.libraries[platform].sha256, LIB_NAME);
        if (!existsSync(path)) continue; // fetching said why
        const found = tryOpen(path, platform);
        if (found !== undefined) return found;
      }
      src = fetchedSources;
    }
  }

  if (src !== undefined) {
    try {
      const root = cacheRoot();
      if (typeof root !== "string") throw new Error(needs([root.missing]));
      cache = join(root, sourcesHash(src, listSources(src)).slice(0, 16), LIB_NAME);
    } catch (err) {
      if (isPermissionError(err)) throw err;
      attempts.push({ path: join(src, "src"), reason: `no sources to build: ${reasonOf(err)}` });
    }
  }
  if (cache !== undefined && src !== undefined) {
    const cached = tryOpen(cache);
    if (cached !== undefined) return cached;
    const cc = env("CC") ?? "cc";
    if (options.build !== false && !runtime.granted({ name: "run", command: cc })) {
      attempts.push({
        path: cache,
        reason: `building it with the C compiler ${needs([`--allow-run=${cc}`])}`,
      });
    } else if (options.build !== false) {
      try {
        const path = buildInto(dirname(cache), src);
        return { lib: open(path), path };
      } catch (err) {
        if (isPermissionError(err)) throw err;
        const stderr = (err as { stderr?: { toString(): string } }).stderr?.toString().trim();
        const noCompiler = (err as { code?: string }).code === "ENOENT";
        attempts.push({
          path: cache,
          reason: noCompiler
            ? `no C compiler ("${cc}") to build it`
            : `building with the C compiler failed: ${stderr || reasonOf(err)}`,
        });
      }
    }
  }
  const hint = "why" in plan
    ? plan.why
    : REMOTE
    ? "Set RELAYKIT_LIB to a built librelaykit.so."
    : 'Set RELAYKIT_LIB to a built librelaykit.so, or run "make -C native".';
  throw new NativeLoadError(
    `Cannot load the relaykit native library; tried:\n${
      attempts.map((a) => `  ${a.path}: ${a.reason}`).join("\n")
    }\n${hint}`,
    attempts,
  );
}
