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
