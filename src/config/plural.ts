/**
 * Counted nouns in operator lines: "1 listener", "3 connections".
 *
 * @module
 */

/** `n` and the noun, in the plural unless `n` is 1 (`plural(1, "link")` is "1 link"). */
export function plural(n: number, noun: string, many = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : many}`;
}
