#!/usr/bin/env node
// The prebuilt libraries of the other platforms, run where they would run:
// - linux-arm64-glibc: the arm64 Bun from npm (@oven/bun-linux-aarch64, the
//   version package.json pins) under qemu-user-static finds and loads it by
//   itself (native/build holds an x64 library it must pass over), then runs
//   the relay suite and a quick subset of the native conformance suite;
// - linux-x64-musl and linux-arm64-musl: the C harness (native/test/
//   harness.c), built with musl-gcc against each, runs in a musl process,
//   natively and under qemu. (Bun's musl builds need a musl libstdc++.so.6,
//   which Debian does not package, so they cannot start here.)
// Needs qemu-user-static, gcc-aarch64-linux-gnu, musl-tools and
// musl-dev:arm64 (.ci/run installs them). Prints
// "emulated: N passed, M failed".
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { npmRuntime } from "./_npm_runtime.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const bunVersion = pkg.devDependencies.bun;
const QEMU = "qemu-aarch64-static";
const ARM64_GLIBC_ROOT = "/usr/aarch64-linux-gnu"; // libc6-arm64-cross
let passed = 0, failed = 0;

function check(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
  if (ok) passed++;
  else failed++;
}

function run(name, cmd, args, { env = {}, timeout = 120_000, expect } = {}) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1", ...env },
    encoding: "utf8",
    timeout,
    maxBuffer: 16 * 1024 * 1024,
  });
  const out = (r.stdout ?? "") + (r.stderr ?? "");
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  const verdict = expect(out, r.status);
  if (verdict !== true) process.stdout.write(out);
  check(`${name} (${secs} s)`, verdict === true, verdict === true ? "" : String(verdict));
}

const bunPass = (min) => (out, status) => {
  const p = Number(out.match(/^\s*(\d+) pass$/m)?.[1] ?? 0);
  const f = Number(out.match(/^\s*(\d+) fail$/m)?.[1] ?? 1);
  return status === 0 && f === 0 && p >= min ? true : `exit ${status}, ${p} passed, ${f} failed`;
};

try {
  // ---- linux-arm64-glibc: Bun for arm64 under qemu
  const bun = npmRuntime("@oven/bun-linux-aarch64", bunVersion, "bin/bun");
  const qemuBun = ["-L", ARM64_GLIBC_ROOT, bun];
  const probe = join(mkdtempSync(join(tmpdir(), "relaykit-emu-")), "probe.ts");
  writeFileSync(
    probe,
    `import { runtime } from ${JSON.stringify(join(root, "src/runtime/detect.ts"))};
import { nativeLibrary } from ${JSON.stringify(join(root, "src/native/engine.ts"))};
console.log(JSON.stringify({ arch: process.arch, libc: runtime.libc, path: nativeLibrary().path }));
`,
  );
  const want = join(root, "native/prebuilt/linux-arm64-glibc/librelaykit.so");
  run("arm64 Bun (qemu) loads the linux-arm64-glibc library by itself", QEMU, [
    ...qemuBun,
    probe,
  ], {
    expect: (out) => {
      try {
        const r = JSON.parse(out.trim().split("\n").pop());
        return r.arch === "arm64" && r.libc === "glibc" && r.path === want ||
          JSON.stringify(r);
      } catch {
        return out.slice(-400);
      }
    },
  });
  rmSync(dirname(probe), { recursive: true, force: true });
  run("arm64 Bun (qemu): relay suite on the native engine", QEMU, [
    ...qemuBun,
    "test",
    "test/relay_test.ts",
  ], { expect: bunPass(12) });
  // the conformance tests that do not measure time: qemu makes timings meaningless
  run("arm64 Bun (qemu): native conformance, quick subset", QEMU, [
    ...qemuBun,
    "test",
    "test/conformance_test.ts",
    "-t",
    "native engine: TCP proxy .*(shuts down|refused backend|reset mid-stream)",
  ], { expect: bunPass(5) });

  // ---- linux-x64-musl and linux-arm64-musl: the C harness in a musl process
  for (
    const [platform, cc, cflags, wrap] of [
      ["linux-x64-musl", "x86_64-linux-musl-gcc", [], []],
      ["linux-arm64-musl", "aarch64-linux-musl-gcc", ["-mno-outline-atomics"], [QEMU]],
    ]
  ) {
    const dir = mkdtempSync(join(tmpdir(), `relaykit-${platform}-`));
    try {
      copyFileSync(
        join(root, "native/prebuilt", platform, "librelaykit.so"),
        join(dir, "librelaykit.so"),
      );
      execFileSync(cc, [
        "-std=gnu11",
        "-pthread",
        "-D_GNU_SOURCE",
        "-O1",
        ...cflags,
        "-I",
        join(root, "native/include"),
        "-o",
        join(dir, "harness"),
        join(root, "native/test/harness.c"),
        `-L${dir}`,
        "-Wl,-rpath,$ORIGIN",
        "-lrelaykit",
      ]);
      const [cmd, ...args] = [...wrap, join(dir, "harness")];
      run(
        `${platform}: the C harness in a musl process${wrap.length ? " (qemu)" : ""}`,
        cmd,
        args,
        {
          expect: (out, status) => {
            const m = out.match(/^harness: (\d+) passed, (\d+) failed/m);
            return status === 0 && m && Number(m[1]) > 0 && m[2] === "0" || `exit ${status}`;
          },
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
} catch (err) {
  check("emulated runs", false, String(err));
}
console.log(`emulated: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
