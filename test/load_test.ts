import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "./_test.ts";
import { fileURLToPath } from "node:url";
import { NativeLoadError } from "../src/errors.ts";
import { loadNative } from "../src/native/load.ts";
import { detectRuntime, runtime } from "../src/runtime/detect.ts";
import { runtimeCommand } from "./_helpers.ts";

const cli = fileURLToPath(new URL("../src/cli.ts", import.meta.url).href);
const isDeno = detectRuntime() === "deno";
/** A forward that needs the native engine (its target does not matter). */
const FORWARD_NATIVE = [
  "forward",
  "--engine",
  "native",
  "--listen",
  "127.0.0.1:0",
  "--to",
  "127.0.0.1:9",
];

describe("loading the native library", () => {
  test("detects the runtime it runs on", () => {
    const g = globalThis as { Deno?: unknown; Bun?: unknown };
    assert.equal(runtime.name, g.Deno ? "deno" : g.Bun ? "bun" : "node");
    assert.equal(runtime.ffi, runtime.name !== "node");
  });

  test("an explicit path that does not exist is named in the error, with no fallback", () => {
    assert.throws(
      () => loadNative({ path: "/nonexistent/librelaykit.so" }),
      (err: unknown) => {
        assert.ok(err instanceof NativeLoadError);
        assert.match(err.message, /"\/nonexistent\/librelaykit\.so"/);
        assert.match(err.message, /file not found/);
        assert.deepEqual(err.attempts.map((a) => a.path), ["/nonexistent/librelaykit.so"]);
        return true;
      },
    );
  });

  test("a file that is not a library is reported with the loader's reason", () => {
    assert.throws(
      () => loadNative({ path: cli }),
      (err: unknown) => err instanceof NativeLoadError && err.message.includes(cli),
    );
  });

  test("RELAYKIT_LIB=/nonexistent gives a clear message naming that path", () => {
    const [cmd, ...args] = runtimeCommand(cli, FORWARD_NATIVE);
    const r = spawnSync(cmd!, args, {
      env: { ...process.env, RELAYKIT_LIB: "/nonexistent" },
      encoding: "utf8",
      timeout: 20_000,
    });
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /Cannot load the relaykit native library from "\/nonexistent" \(set by RELAYKIT_LIB\): file not found/,
    );
  });

  // Only Deno has permissions: on Bun there is no flag to forget.
  if (isDeno) {
    test("Deno without --allow-ffi is told which flag is missing", () => {
      const r = spawnSync(process.execPath, [
        "run",
        "--allow-read",
        "--allow-env",
        "--allow-net",
        cli,
        ...FORWARD_NATIVE,
      ], { encoding: "utf8", timeout: 20_000 });
      assert.equal(r.status, 1);
      assert.match(r.stderr, /--allow-ffi/);
    });
  }
});
