/**
 * The fuzzer's short round (scripts/fuzz.ts): every listener kind of the
 * relaykit command, on both engines, as child processes on the runtime that
 * runs this test (`deno test` fuzzes Deno, `bun test` fuzzes Bun). After
 * each batch the process must be alive, a canary connection through each
 * of its listeners must work, its fds must be back to the baseline and its
 * RSS bounded; every connection must be closed within its timeout; no
 * denied destination may be reached.
 *
 * The seed is fixed (FUZZ_SEED overrides it, FUZZ_COUNT the number of
 * inputs, FUZZ_KINDS=a,b the kinds); each failure prints its input and the
 * command that replays it.
 * `deno run -A scripts/fuzz.ts --long` runs a million inputs.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { test } from "./_test.ts";
import { formatFailure, fuzz, type RuntimeName, summarize } from "../scripts/fuzz.ts";

const RUNTIME: RuntimeName = typeof (globalThis as { Deno?: unknown }).Deno === "object"
  ? "deno"
  : "bun";
const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed17) >>> 0;
const COUNT = Number(process.env.FUZZ_COUNT ?? 2200);
const KINDS = (process.env.FUZZ_KINDS ?? "").split(",").filter((k) => k !== "");

test(
  `fuzz: every listener kind on both engines survives ${COUNT} hostile inputs (${RUNTIME}, seed ${SEED})`,
  { timeout: 170_000 },
  async () => {
    const r = await fuzz({
      seed: SEED,
      count: COUNT,
      kinds: KINDS,
      engines: ["native", "stream"],
      runtimes: [RUNTIME],
      batch: 50,
      parallel: 4,
    });
    const report = r.failures.length === 0
      ? ""
      : `${r.failures.length} failures, by symptom:\n${summarize(r.failures)}\n\nin full:\n${
        r.failures.map((f) => formatFailure(f, SEED)).join("\n")
      }`;
    assert.equal(r.failures.length, 0, report);
    assert.ok(
      r.inputs >= COUNT * 0.95,
      `only ${r.inputs} of ${COUNT} inputs were sent (${r.targets} targets)`,
    );
  },
);
