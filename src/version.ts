/**
 * The relaykit version (kept equal to deno.json's by the tests).
 *
 * @example
 * ```ts
 * import { VERSION } from "@relaykit/relaykit";
 * console.log(`relaykit ${VERSION}`);
 * ```
 */
export const VERSION = "0.1.0";
