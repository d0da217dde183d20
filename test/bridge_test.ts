import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, test } from "./_test.ts";
import { callsOf, NativeEngine } from "../src/native/engine.ts";
import { runtime } from "../src/runtime/detect.ts";
import { nativeEngine, runtimeCommand } from "./_helpers.ts";

describe("event bridge", () => {
  test("native library loads on this runtime", () => {
    const e = nativeEngine();
    assert.match(e.libraryPath, /librelaykit\.so$/);
    assert.ok(e.threads >= 1);
    console.log(`native library loaded on ${runtime.name}: ${e.libraryPath}`);
  });

  test("delivers 200,000 events from two native threads exactly once, in per-thread order", async () => {
    const e = new NativeEngine({ threads: 1 });
    const perThread = 100_000;
    const next = [0, 0];
    let total = 0;
    let bad = "";
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${total} events arrived`)), 30_000);
        e.onTest((ev) => {
          if (ev.type !== "test") return;
          const t = ev.thread;
          if (t > 1 || ev.seq !== next[t]) {
            bad ||= `thread ${t}: got #${ev.seq}, expected #${next[t]}`;
          } else {
            next[t]!++;
          }
          if (++total === 2 * perThread) {
            clearTimeout(timer);
            resolve();
          }
        });
        e.ref();
        e.check(callsOf(e).testPost(2, perThread), "Cannot post");
      });
      assert.equal(bad, "");
      assert.deepEqual(next, [perThread, perThread]);
      // nothing more arrives: exactly once
      assert.equal(e.drain(), 0);
      assert.equal(total, 2 * perThread);
    } finally {
      e.unref();
      e.close();
    }
  });

  test("the process exits by itself once every listener and relay is closed", () => {
    const fixture = fileURLToPath(new URL("./fixtures/exit_clean.ts", import.meta.url).href);
    const [cmd, ...args] = runtimeCommand(fixture);
    const r = spawnSync(cmd!, args, { timeout: 20_000, encoding: "utf8" });
    assert.equal(r.error, undefined, "the child did not exit on its own within 20 s");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /echoed 5 bytes through the native engine/);
  });
});
