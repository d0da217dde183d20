/**
 * node:test with a deadline on every test: a test that does not say how long
 * it may take gets {@linkcode DEFAULT_TIMEOUT_MS}, so a regression that hangs
 * (a relay that never half-closes, a promise that never settles) fails in
 * seconds and names itself, on Deno (which has no default) as on Bun.
 *
 * @module
 */
import process from "node:process";
import { test as nodeTest, type TestContext, type TestOptions } from "node:test";

export { after, afterEach, before, beforeEach, describe } from "node:test";

// Every `deno run` checks for a newer Deno in the background: it reads the
// system's CA certificates and resolves dl.deno.land, holding fds for as long
// as the resolver takes. In a relaykit child under a tight fd limit (the
// reliability tests) those fds came and went at random and made it look out
// of fds; tests reach nothing beyond loopback anyway. The children the tests
// start inherit this.
process.env.DENO_NO_UPDATE_CHECK ??= "1";

/** The deadline of a test that names none of its own. */
export const DEFAULT_TIMEOUT_MS = 20_000;

type Body = (t: TestContext) => void | Promise<void>;

/** `test(name, fn)` or `test(name, options, fn)`, as node:test, with a deadline. */
export function test(name: string, a: TestOptions | Body, b?: Body): void {
  const [options, fn] = typeof a === "function" ? [{}, a] : [a, b!];
  void nodeTest(name, { timeout: DEFAULT_TIMEOUT_MS, ...options }, fn);
}
