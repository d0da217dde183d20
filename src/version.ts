/** The relaykit version (kept equal to deno.json's by the tests). */
export const VERSION = "0.1.0";
