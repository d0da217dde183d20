/**
 * The suite's own rules, checked: every test file takes `test` from
 * ./_test.ts, so every test has a deadline (Deno gives none by default).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "./_test.ts";

const here = dirname(fileURLToPath(import.meta.url));

test("every test file takes node:test through ./_test.ts, so every test has a deadline", () => {
  const direct = readdirSync(here)
    .filter((f) => f.endsWith("_test.ts") && f !== "_test.ts")
    .filter((f) => /from\s+["']node:test["']/.test(readFileSync(join(here, f), "utf8")));
  assert.deepEqual(direct, [], 'import { describe, test } from "./_test.ts" instead');
});
