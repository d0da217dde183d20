/**
 * Figures over the rounds of scripts/bench.ts and its sections.
 *
 * @module
 */

/** The median of the finite numbers among `xs`; null when there are none. */
export function median(xs: readonly (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}
