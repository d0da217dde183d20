/**
 * Byte helpers shared by the engines and the front.
 *
 * @module
 */

/** No bytes. */
export const EMPTY: Uint8Array = new Uint8Array(0);

/** `parts` one after another (the part itself when there is only one). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
