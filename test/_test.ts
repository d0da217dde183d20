/**
 * node:test with a deadline on every test: a test that does not say how long
 * it may take gets {@linkcode DEFAULT_TIMEOUT_MS}, so a regression that hangs
 * (a relay that never half-closes, a promise that never settles) fails in
 * seconds and names itself, on Deno (which has no default) as on Bun.
 *
 * @module
 */
import { test as nodeTest, type TestContext, type TestOptions } from "node:test";

export { after, afterEach, before, beforeEach, describe } from "node:test";

/** The deadline of a test that names none of its own. */
export const DEFAULT_TIMEOUT_MS = 20_000;

type Body = (t: TestContext) => void | Promise<void>;

/** `test(name, fn)` or `test(name, options, fn)`, as node:test, with a deadline. */
export function test(name: string, a: TestOptions | Body, b?: Body): void {
  const [options, fn] = typeof a === "function" ? [{}, a] : [a, b!];
  void nodeTest(name, { timeout: DEFAULT_TIMEOUT_MS, ...options }, fn);
}
