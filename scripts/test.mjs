#!/usr/bin/env node
// The whole test suite, as `npm test` runs it: build the native library
// (optimised and sanitized), run its C harness under ThreadSanitizer and
// ASan + UBSan, lint, format check and type check, then every test under
// Deno and under Bun, the npm package, the prebuilt libraries of the other
// platforms under emulation, then the native tests again against the ASan +
// UBSan build. Prints one summary line: "total: N passed, M failed".
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const results = [];
let passed = 0;
let failed = 0;

function run(title, cmd, args, { env = {}, count } = {}) {
  console.log(`\n=== ${title}: ${[cmd, ...args].join(" ")}`);
  const t0 = Date.now();
  const r = spawnSync(cmd, args, {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
    timeout: 15 * 60 * 1000, // a hung step fails instead of hanging CI
  });
  const out = (r.stdout ?? "") + (r.stderr ?? "");
  process.stdout.write(out);
  const ok = r.status === 0;
  // Checks without tests (build, lint, ...) add nothing to the counts unless
  // they fail; test runs add the tests their runner counted.
  let n = { passed: 0, failed: ok ? 0 : 1 };
  if (count) n = count(out) ?? n;
  if (!ok && n.failed === 0) n.failed = 1; // a crash counts as a failure
  passed += n.passed;
  failed += n.failed;
  results.push({ title, ok, ...n, secs: ((Date.now() - t0) / 1000).toFixed(1) });
  return ok;
}

// `deno test`: "ok | 4 passed (29 steps) | 0 failed"; count the test steps.
const denoCount = (out) => {
  // deno-lint-ignore no-control-regex -- stripping terminal colour codes
  const plain = out.replace(/\x1b\[[0-9;]*m/g, "");
  const m = plain.match(/(\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/);
  if (!m) return undefined;
  return { passed: Number(m[2] ?? m[1]), failed: Number(m[4] ?? m[3]) };
};
// `bun test`: " 28 pass" / " 0 fail".
const bunCount = (out) => {
  const p = out.match(/^\s*(\d+) pass$/m), f = out.match(/^\s*(\d+) fail$/m);
  if (!p || !f) return undefined;
  return { passed: Number(p[1]), failed: Number(f[1]) };
};

if (!existsSync(bin("deno")) || !existsSync(bin("bun"))) {
  console.error("deno and bun are missing from node_modules: run `npm install` first");
  process.exit(2);
}

const make = process.env.MAKE ?? "make";
const built = run("build the native library", make, [
  "-C",
  "native",
  "all",
  "sanitize",
  "harness",
]);

// The C harness (native/test/harness.c) drives the library's C API from
// many threads; TSan cannot watch the library inside Deno or Bun.
// "harness: 19 passed, 0 failed"; any sanitizer report is a failure even if
// the summary line says otherwise (check-tsan halts at the first, exit 66).
const harnessCount = (out) => {
  const m = out.match(/^harness: (\d+) passed, (\d+) failed/m);
  if (!m) return undefined;
  const reports =
    (out.match(/WARNING: ThreadSanitizer|ERROR: (?:Address|Leak)Sanitizer|runtime error:/g) ?? [])
      .length;
  return { passed: Number(m[1]), failed: Number(m[2]) + reports };
};
if (built) {
  // gcc 12's TSan cannot map its shadow memory when the kernel randomises
  // mmap with more than 28 bits ("FATAL: ThreadSanitizer: unexpected memory
  // mapping"); a probe run (no test matches) shows it, and then the harness
  // runs without address randomisation.
  const tsanArgs = ["-s", "-C", "native", "check-tsan"];
  const probe = spawnSync(join(root, "native/build/tsan/harness"), ["no test has this name"], {
    encoding: "utf8",
  });
  const noAslr = /unexpected memory mapping/.test((probe.stdout ?? "") + (probe.stderr ?? ""));
  if (noAslr) console.log("\nTSan cannot run with this kernel's ASLR: running it under setarch -R");
  run(
    "native harness under ThreadSanitizer",
    noAslr ? "setarch" : make,
    noAslr ? [process.arch === "arm64" ? "aarch64" : "x86_64", "-R", make, ...tsanArgs] : tsanArgs,
    { count: harnessCount },
  );
  run("native harness under ASan+UBSan (leaks checked)", make, [
    "-s",
    "-C",
    "native",
    "check-asan",
  ], { count: harnessCount });
}
// The prebuilt libraries: the same sources with the same toolchains give
// the same bytes, so rebuilding them proves the checked-in ones are these
// sources' (and that the glibc builds need nothing newer than GLIBC_2.17).
run("prebuilt libraries rebuilt bit-for-bit", bin("deno"), [
  "run",
  "-A",
  "scripts/build_prebuilt.ts",
  "--check",
]);
run("deno lint", bin("deno"), ["lint"]);
run("deno fmt --check", bin("deno"), ["fmt", "--check"]);
run("deno check", bin("deno"), [
  "check",
  "mod.ts",
  "internals.ts",
  "src/",
  "scripts/",
  "test/",
  "examples/",
]);
// JSR readiness: every public symbol documented, no slow types
run("deno doc --lint", bin("deno"), ["doc", "--lint", "mod.ts", "internals.ts"]);
run("deno publish --dry-run", bin("deno"), ["publish", "--dry-run", "--allow-dirty"]);
const env = { NO_COLOR: "1" };
run("tests under Deno", bin("deno"), ["test", "-A", "test/"], { env, count: denoCount });
run("doc examples under Deno", bin("deno"), [
  "test",
  "--doc",
  "-A",
  "mod.ts",
  "internals.ts",
  "src/",
], {
  env,
  count: denoCount,
});
run("tests under Bun", bin("bun"), ["test", "test/"], { env, count: bunCount });

// The npm package: build it, run the stream engine's conformance and hook
// suites under Node against its compiled code, then install the packed
// tarball into a fresh project and use it from Node and Bun (and from
// Nodes 22 fetched from npm, with .ts route and hooks modules).
// `node --test`: "# pass 19" / "# fail 0".
const nodeCount = (out) => {
  const p = out.match(/^# pass (\d+)$/m), f = out.match(/^# fail (\d+)$/m);
  if (!p || !f) return undefined;
  return { passed: Number(p[1]), failed: Number(f[1]) };
};
// npm_smoke.mjs: "npm smoke: 5 passed, 0 failed"
const smokeCount = (out) => {
  const m = out.match(/npm smoke: (\d+) passed, (\d+) failed/);
  return m ? { passed: Number(m[1]), failed: Number(m[2]) } : undefined;
};
if (run("npm build", bin("deno"), ["run", "-A", "scripts/build_npm.ts", "--tests"])) {
  run("stream engine suites under Node, built code", process.execPath, [
    "--test",
    ".build/node-test/test/",
  ], { env, count: nodeCount });
  run("npm package smoke test (Node 20 and 22, Bun)", process.execPath, ["scripts/npm_smoke.mjs"], {
    count: smokeCount,
  });
}

// The arm64 and musl libraries, run by an arm64 Bun under qemu and by the C
// harness in musl processes. "emulated: 5 passed, 0 failed"
const emuCount = (out) => {
  const m = out.match(/emulated: (\d+) passed, (\d+) failed/);
  return m ? { passed: Number(m[1]), failed: Number(m[2]) } : undefined;
};
run("prebuilt arm64 and musl libraries under emulation", process.execPath, [
  "scripts/test_emulated.mjs",
], { count: emuCount });

// The native tests again, against the ASan + UBSan build of the library.
if (built) {
  const asan = spawnSync(process.env.CC ?? "cc", ["-print-file-name=libasan.so"], {
    encoding: "utf8",
  }).stdout.trim();
  const senv = {
    ...env,
    RELAYKIT_LIB: join(root, "native/build/sanitize/librelaykit.so"),
    LD_PRELOAD: asan,
    ASAN_OPTIONS: "detect_leaks=0:abort_on_error=1",
    UBSAN_OPTIONS: "halt_on_error=1:print_stacktrace=1",
  };
  const nativeTests = [
    "test/relay_test.ts",
    "test/conformance_test.ts",
    "test/hooks_test.ts",
    "test/bridge_test.ts",
    "test/proxy_listener_test.ts",
    "test/route_test.ts",
    "test/tls_test.ts",
    "test/balance_test.ts",
    "test/socks_test.ts",
    "test/totals_test.ts",
  ];
  run("native tests under Deno, ASan+UBSan library", bin("deno"), ["test", "-A", ...nativeTests], {
    env: senv,
    count: denoCount,
  });
  run("native tests under Bun, ASan+UBSan library", bin("bun"), ["test", ...nativeTests], {
    env: senv,
    count: bunCount,
  });
}

console.log("\n=== summary");
for (const r of results) {
  console.log(
    `${r.ok ? "ok  " : "FAIL"} ${r.title} (${r.passed} passed, ${r.failed} failed, ${r.secs} s)`,
  );
}
console.log(`total: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && results.every((r) => r.ok) ? 0 : 1);
