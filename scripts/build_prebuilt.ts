/**
 * Build the prebuilt native libraries, one per Linux platform, from the C
 * sources in native/, with Debian's cross toolchains:
 *
 *   linux-x64-glibc    gcc
 *   linux-arm64-glibc  aarch64-linux-gnu-gcc   (gcc-aarch64-linux-gnu)
 *   linux-x64-musl     x86_64-linux-musl-gcc   (musl-tools)
 *   linux-arm64-musl   aarch64-linux-musl-gcc  (musl-dev:arm64, with
 *                                               `dpkg --add-architecture arm64`)
 *
 *   deno run -A scripts/build_prebuilt.ts           build, copy to native/prebuilt/,
 *                                                   write src/native/prebuilt.ts
 *   deno run -A scripts/build_prebuilt.ts --check   build into native/build/prebuilt/
 *                                                   and compare with what is checked in
 *
 * The builds are reproducible (same sources and toolchain, same bytes), so
 * --check proves that the checked-in libraries are what these sources give.
 * Every glibc build is also checked to need no symbol newer than GLIBC_2.17.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { PREBUILT, type PrebuiltPlatform } from "../src/native/prebuilt.ts";
import { listSources, sha256, sourcesHash } from "../src/native/sources.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const native = join(root, "native");

/** The toolchain of each platform, and what it needs besides the common flags. */
export const TARGETS: Record<PrebuiltPlatform, { cc: string; cflags: string; install: string }> = {
  "linux-x64-glibc": { cc: "x86_64-linux-gnu-gcc", cflags: "", install: "gcc" },
  "linux-arm64-glibc": {
    cc: "aarch64-linux-gnu-gcc",
    cflags: "",
    install: "gcc-aarch64-linux-gnu",
  },
  "linux-x64-musl": { cc: "x86_64-linux-musl-gcc", cflags: "", install: "musl-tools" },
  // libgcc's outline atomics call glibc's __getauxval, which musl lacks
  "linux-arm64-musl": {
    cc: "aarch64-linux-musl-gcc",
    cflags: "-mno-outline-atomics",
    install: "gcc-aarch64-linux-gnu musl-dev:arm64 (after dpkg --add-architecture arm64)",
  },
};
/** The newest glibc symbol version a glibc build may need. */
export const GLIBC_BASELINE = "2.17";

/** The glibc symbol versions a library needs (objdump -T reads any ELF machine). */
export function glibcVersionsNeeded(path: string): string[] {
  const out = execFileSync("objdump", ["-T", path], { encoding: "utf8" });
  const versions = new Set<string>();
  for (const m of out.matchAll(/\(GLIBC_([0-9.]+)\)/g)) versions.add(m[1]!);
  return [...versions].sort(compareVersions);
}

/** Compare "2.17" and "2.2.5" as versions. */
export function compareVersions(x: string, y: string): number {
  const a = x.split(".").map(Number), b = y.split(".").map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

if (import.meta.main) main();

function main(): void {
  const check = process.argv.includes("--check");
  const failures: string[] = [];

  const sources = listSources(native);
  const srcHash = sourcesHash(native, sources);
  const libraries: Record<string, { sha256: string; size: number }> = {};

  for (
    const [platform, t] of Object.entries(TARGETS) as [
      PrebuiltPlatform,
      typeof TARGETS[PrebuiltPlatform],
    ][]
  ) {
    try {
      execFileSync("sh", ["-c", `command -v ${t.cc}`], { stdio: "ignore" });
    } catch {
      failures.push(`${platform}: ${t.cc} is not installed (apt-get install ${t.install})`);
      continue;
    }
    execFileSync(
      process.env.MAKE ?? "make",
      [
        "-s",
        "-B",
        "-C",
        native,
        "prebuilt",
        `PLATFORM=${platform}`,
        `CC=${t.cc}`,
        `PLATFORM_CFLAGS=${t.cflags}`,
      ],
      { stdio: ["ignore", "inherit", "inherit"] },
    );
    const built = join(native, "build", "prebuilt", platform, "librelaykit.so");
    const bytes = readFileSync(built);
    const sum = sha256(bytes);
    libraries[platform] = { sha256: sum, size: bytes.length };
    if (platform.endsWith("-glibc")) {
      const too = glibcVersionsNeeded(built).filter((v) => compareVersions(v, GLIBC_BASELINE) > 0);
      if (too.length > 0) {
        failures.push(
          `${platform}: needs GLIBC_${too.join(", GLIBC_")}, newer than GLIBC_${GLIBC_BASELINE}`,
        );
      }
    }
    if (check) {
      const want = PREBUILT.libraries[platform];
      if (want.sha256 !== sum) {
        failures.push(
          `${platform}: this build's SHA-256 is ${sum}, the checked-in one's ${want.sha256}`,
        );
      }
    } else {
      mkdirSync(join(native, "prebuilt", platform), { recursive: true });
      copyFileSync(built, join(native, "prebuilt", platform, "librelaykit.so"));
    }
    console.log(`${platform}: ${bytes.length} bytes, sha256 ${sum}`);
  }

  if (check) {
    if (PREBUILT.sources.sha256 !== srcHash) {
      failures.push(
        `the native sources changed since the prebuilt libraries were built: run "deno run -A scripts/build_prebuilt.ts"`,
      );
    }
  } else if (failures.length === 0) {
    const manifest = join(root, "src", "native", "prebuilt.ts");
    const body = `/**
 * The prebuilt native libraries: which sources they were built from and the
 * SHA-256 of each. Written by scripts/build_prebuilt.ts; do not edit. The
 * loader refuses a library whose checksum is not the one here.
 *
 * @module
 */

/** A platform with a prebuilt library. */
export type PrebuiltPlatform =
  | "linux-x64-glibc"
  | "linux-arm64-glibc"
  | "linux-x64-musl"
  | "linux-arm64-musl";

/** The sources (files under native/ and their SHA-256 together) and the libraries. */
export const PREBUILT: {
  readonly sources: { readonly sha256: string; readonly files: readonly string[] };
  readonly libraries: Readonly<Record<PrebuiltPlatform, { readonly sha256: string; readonly size: number }>>;
} = ${JSON.stringify({ sources: { sha256: srcHash, files: sources }, libraries }, null, 2)};
`;
    writeFileSync(manifest, body);
    execFileSync(denoBinary(), ["fmt", "-q", manifest], { cwd: root, stdio: "inherit" });
    console.log(`wrote ${manifest}`);
    // the README's platform table says each library's size (checked by test/prebuilt_test.ts)
    const readme = join(root, "README.md");
    let text = readFileSync(readme, "utf8");
    for (const [platform, { size }] of Object.entries(libraries)) {
      text = text.replace(
        new RegExp(`(\\| \`native/prebuilt/${platform}/\`\\s*\\| )[\\d,]+( +\\|)`),
        (_, a: string, b: string) => a + size.toLocaleString("en-US") + b,
      );
    }
    writeFileSync(readme, text);
    execFileSync(denoBinary(), ["fmt", "-q", readme], { cwd: root, stdio: "inherit" });
  }

  if (failures.length > 0) {
    console.error(`prebuilt libraries:\n  ${failures.join("\n  ")}`);
    process.exit(1);
  }
  console.log(
    check ? "prebuilt libraries: identical to the checked-in ones" : "prebuilt libraries: built",
  );
}

function denoBinary(): string {
  return /deno[^/]*$/.test(process.execPath)
    ? process.execPath
    : join(root, "node_modules", ".bin", "deno");
}
