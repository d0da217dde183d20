/**
 * Log lines that a client cannot forge: names, users, paths and header
 * values a client chose are written into log lines, so the characters that
 * could end a line, move a terminal's cursor, recolour it or reorder text
 * on screen are written as escapes instead (`\x0a`, `\x1b`, `\u{202e}`).
 * The commands' logger (src/cli/log.ts) formats every line with these, and
 * the JSON access log escapes the same characters in JSON's own way.
 *
 * @module
 */

/**
 * C0 controls, DEL, C1 controls, the Unicode line and paragraph
 * separators, and the bidi embeddings, overrides and isolates.
 */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with each unsafe character as `\xNN` (up to 0xff) or `\u{NNNN}`. */
export function escapeLogText(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u{${n.toString(16)}}`;
  });
}

/**
 * `value` as one line of JSON in which every unsafe character is a `\uNNNN`
 * escape (JSON.stringify escapes C0 controls only): the same value, safe
 * to print.
 */
export function jsonLogLine(value: unknown): string {
  return JSON.stringify(value).replace(
    UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
