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

/**
 * Where the first CR LF at or after `from` starts in `d`, or -1. The CRs are
 * found by the typed array's own indexOf, so a head that comes a byte at a
 * time costs a fast scan per byte, not a loop in JavaScript.
 */
export function indexOfCrlf(d: Uint8Array, from = 0): number {
  for (let i = d.indexOf(13, from); i >= 0 && i + 1 < d.length; i = d.indexOf(13, i + 1)) {
    if (d[i + 1] === 10) return i;
  }
  return -1;
}

/** Where the empty line that ends an HTTP head (CR LF CR LF) starts in `d`, or -1. */
export function indexOfHeadEnd(d: Uint8Array): number {
  for (let i = indexOfCrlf(d); i >= 0 && i + 3 < d.length; i = indexOfCrlf(d, i + 2)) {
    if (d[i + 2] === 13 && d[i + 3] === 10) return i;
  }
  return -1;
}

const typedArrayProto = Object.getPrototypeOf(Uint8Array.prototype) as object;
const intrinsic = (name: PropertyKey) =>
  Object.getOwnPropertyDescriptor(typedArrayProto, name)!.get! as (this: unknown) => unknown;
const tagOf = intrinsic(Symbol.toStringTag);
const bufferOf = intrinsic("buffer");
const offsetOf = intrinsic("byteOffset");
const lengthOf = intrinsic("byteLength");

/**
 * The kind of a typed array ("Uint8Array", "Float64Array", ...) read from
 * its internal slot, so neither a subclass nor an own property can lie; a
 * Proxy or any other value gives undefined.
 */
export function typedArrayTag(v: unknown): string | undefined {
  return tagOf.call(v) as string | undefined;
}

/**
 * A plain Uint8Array over the same memory as `v` when `v` is a Uint8Array
 * (a Buffer, a subclass, one with odd own properties), else undefined. Read
 * through the typed array's internal slots: what user code hands over
 * cannot make a later `.length` or an FFI call throw.
 */
export function plainBytes(v: unknown): Uint8Array | undefined {
  if (tagOf.call(v) !== "Uint8Array") return undefined;
  return new Uint8Array(
    bufferOf.call(v) as ArrayBuffer,
    offsetOf.call(v) as number,
    lengthOf.call(v) as number,
  );
}
