/**
 * The option structs of relaykit.h as layout tables, and the one encoder
 * that writes them. Each table lists the C struct's fields in declaration
 * order with their C names; offsets follow the C rules for these field
 * types (natural alignment, size rounded up to the largest alignment).
 * test/native_boundary_test.ts checks every table against rk_layout().
 *
 * @module
 */

/** Field types the structs use: int32_t, uint32_t, int64_t. */
export type FieldType = "i32" | "u32" | "i64";

const SIZE: Record<FieldType, number> = { i32: 4, u32: 4, i64: 8 };

/** Host byte order: the structs cross in the native one. */
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A field named "reserved" is written as 0 and never given. */
type Given<F extends string> = Exclude<F, "reserved">;

/** A C struct: its name in relaykit.h, size, field offsets, encoder. */
export interface StructLayout<F extends string> {
  /** The C type name, e.g. "rk_decision_t". */
  readonly name: string;
  /** sizeof in bytes. */
  readonly size: number;
  /** The fields in declaration order with their offsets. */
  readonly fields: readonly { name: F; type: FieldType; offset: number }[];
  /** The bytes of one struct with every field given (reserved ones 0). */
  encode(values: Readonly<Record<Given<F>, number>>): Uint8Array;
  /** Write the struct at byte `at` of `view` (reserved fields 0). */
  encodeInto(view: DataView, at: number, values: Readonly<Record<Given<F>, number>>): void;
}

/** Lay out a struct from its fields in declaration order. */
export function defineStruct<const F extends string>(
  name: string,
  fields: readonly (readonly [F, FieldType])[],
): StructLayout<F> {
  let offset = 0, align = 1;
  const laid = fields.map(([field, type]) => {
    const size = SIZE[type];
    offset = Math.ceil(offset / size) * size;
    align = Math.max(align, size);
    const at = { name: field, type, offset };
    offset += size;
    return at;
  });
  const size = Math.ceil(offset / align) * align;
  const encodeInto: StructLayout<F>["encodeInto"] = (view, at, values) => {
    for (const f of laid) {
      const v = f.name === "reserved" ? 0 : (values as Record<string, number>)[f.name];
      if (typeof v !== "number" || !Number.isInteger(v)) {
        throw new TypeError(`${name}.${f.name} must be an integer, not ${v}`);
      }
      const o = at + f.offset;
      if (f.type === "i64") {
        if (v === 0 || v === -1) { // the usual values, without a BigInt
          view.setInt32(o, v, LITTLE);
          view.setInt32(o + 4, v, LITTLE);
        } else view.setBigInt64(o, BigInt(v), LITTLE);
      } else if (f.type === "u32") view.setUint32(o, v >>> 0, LITTLE);
      else view.setInt32(o, v | 0, LITTLE);
    }
  };
  return {
    name,
    size,
    fields: laid,
    encode(values) {
      const bytes = new Uint8Array(size);
      encodeInto(new DataView(bytes.buffer), 0, values);
      return bytes;
    },
    encodeInto,
  };
}

/** rk_listen_opts_t: options of rk_listen. */
export const LISTEN_OPTS = defineStruct("rk_listen_opts_t", [
  ["backlog", "i32"],
  ["flags", "u32"],
  ["max_conns", "i32"],
  ["idle_timeout_ms", "i32"],
  ["events", "u32"],
  ["hooks", "u32"],
  ["hold_timeout_ms", "i32"],
  ["adopt_fd", "i32"],
]);

/** rk_relay_opts_t: options of rk_relay_fds. */
export const RELAY_OPTS = defineStruct("rk_relay_opts_t", [
  ["flags", "u32"],
  ["idle_timeout_ms", "i32"],
]);

/** rk_decision_t: a held connection's decision for rk_hold_decide. */
export const DECISION = defineStruct("rk_decision_t", [
  ["action", "i32"],
  ["flags", "u32"],
  ["port", "i32"],
  ["family", "i32"],
  ["connect_timeout_ms", "i32"],
  ["idle_timeout_ms", "i32"],
  ["consume", "u32"],
  ["reserved", "i32"],
  ["offset", "i64"],
  ["length", "i64"],
]);

/** rk_proxy_opts_t: options of rk_listener_set_proxy. */
export const PROXY_OPTS = defineStruct("rk_proxy_opts_t", [
  ["mode", "i32"],
  ["flags", "u32"],
  ["send_version", "i32"],
  ["tlv_split", "u32"],
]);

/** Every struct that crosses the boundary (for the layout test). */
export const STRUCTS: readonly StructLayout<string>[] = [
  LISTEN_OPTS,
  RELAY_OPTS,
  DECISION,
  PROXY_OPTS,
];
