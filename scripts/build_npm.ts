/**
 * Build the npm package into npm/: ESM JavaScript and .d.ts files from the
 * TypeScript sources (with the TypeScript compiler: dnt lives on JSR, which
 * these machines cannot reach), a package.json with `bin: relaykit`, the C
 * sources and the prebuilt libraries (native/prebuilt/, made by
 * scripts/build_prebuilt.ts).
 *
 *   deno run -A scripts/build_npm.ts [--tests]
 *
 * --tests also compiles the engine-parameterised tests to .build/node-test/
 * so that Node can run the stream engine's conformance suite.
 *
 * On Node the package runs the stream engine on node:net; on Bun it loads
 * the native library through bun:ffi.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "npm");
const work = join(root, ".build");
const denoJson = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as {
  version: string;
};
// the runtime dependencies of the package are the development package's
const pkgJson = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  dependencies: { yaml: string };
  engines: { node: string };
};

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
}

/** The deno binary: this process when the script runs on Deno. */
function denoBinary(): string {
  const self = process.execPath;
  return /deno[^/]*$/.test(self) ? self : join(root, "node_modules", ".bin", "deno");
}

function compile(outDir: string, files: string[]): void {
  // Deno's own declarations type the Deno adapter; bun-types (referenced
  // from the Bun adapter) types Bun's; @types/node types the rest.
  writeFileSync(join(work, "deno.d.ts"), run(denoBinary(), ["types"]));
  const tsconfig = {
    compilerOptions: {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      rewriteRelativeImportExtensions: true,
      declaration: true,
      outDir,
      rootDir: root,
      strict: true,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      noImplicitOverride: true,
      // the runtimes' declaration files overlap each other's globals
      skipLibCheck: true,
      types: ["node"],
      lib: ["ES2023", "ES2024.Promise", "DOM"],
    },
    files: [...files.map((f) => join(root, f)), join(work, "deno.d.ts")],
  };
  const config = join(work, `tsconfig.${files.length}.json`);
  writeFileSync(config, JSON.stringify(tsconfig, null, 2));
  run(process.env.NODE ?? "node", [join(root, "node_modules/typescript/bin/tsc"), "-p", config]);
}

rmSync(out, { recursive: true, force: true });
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

compile(out, ["mod.ts", "internals.ts", "src/cli.ts", "src/cli/node_bin.ts"]);

// The C sources, and the prebuilt library of each Linux platform (x64 and
// arm64, glibc and musl; about 60 KiB each): the loader picks the one for
// the platform it runs on and checks its SHA-256 before loading it. One
// package rather than one per platform (as esbuild does) because four
// libraries add about 100 KiB to the tarball, and optional per-platform
// packages break where installs skip optional dependencies.
for (const part of ["include", "src", "Makefile", "relaykit.map", "prebuilt"]) {
  cpSync(join(root, "native", part), join(out, "native", part), { recursive: true });
}

// The stats page of the admin endpoint (its HTML, script and the vendored
// uPlot with its licence), read next to src/admin/api.js.
cpSync(join(root, "src", "admin", "page"), join(out, "src", "admin", "page"), { recursive: true });

mkdirSync(join(out, "bin"), { recursive: true });
writeFileSync(
  join(out, "bin", "relaykit.js"),
  `#!/usr/bin/env node
import process from "node:process";
import { rerunWithTypeStripping } from "../src/cli/node_bin.js";

// Node 22.6 to 22.17 and 23.0 to 23.5 load .ts modules only with
// --experimental-strip-types: the command then runs in a child with it
if (!rerunWithTypeStripping()) {
  const { main } = await import("../src/cli.js");
  const code = await main(process.argv.slice(2));
  if (code !== 0) process.exit(code);
}
`,
);
chmodSync(join(out, "bin", "relaykit.js"), 0o755);

const pkg = {
  name: "relaykit",
  version: denoJson.version,
  description:
    "A proxy toolkit for TypeScript: a native splice engine through FFI on Bun and Deno, node:net elsewhere",
  license: "MIT",
  type: "module",
  main: "./mod.js",
  types: "./mod.d.ts",
  exports: {
    ".": { types: "./mod.d.ts", default: "./mod.js" },
    "./internals": { types: "./internals.d.ts", default: "./internals.js" },
    "./cli": { types: "./src/cli.d.ts", default: "./src/cli.js" },
  },
  bin: { relaykit: "bin/relaykit.js" },
  engines: pkgJson.engines, // one range: the workspace's package.json
  dependencies: { yaml: pkgJson.dependencies.yaml },
  files: [
    "mod.js",
    "mod.d.ts",
    "internals.js",
    "internals.d.ts",
    "src/",
    "bin/",
    "native/",
    "README.md",
    "LICENSE",
  ],
  keywords: ["proxy", "tcp", "splice", "ffi", "bun", "deno"],
};
writeFileSync(join(out, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
cpSync(join(root, "README.md"), join(out, "README.md"));
cpSync(join(root, "LICENSE"), join(out, "LICENSE"));
console.log(`built ${pkg.name}@${pkg.version} into ${out}`);

if (process.argv.includes("--tests")) {
  compile(join(work, "node-test"), [
    "test/conformance_test.ts",
    "test/hooks_test.ts",
    "test/proxy_listener_test.ts",
    "test/route_test.ts",
    "test/balance_test.ts",
    "test/socks_test.ts",
    "test/hostile_results_test.ts",
    "test/tls_verify_test.ts",
  ]);
  console.log(`compiled the engine-parameterised tests into ${join(work, "node-test")}`);
}
