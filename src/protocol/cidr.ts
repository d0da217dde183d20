/**
 * Address ranges ("10.0.0.0/8", "2001:db8::/32", "127.0.0.1"): parse once,
 * match client addresses. IPv4-mapped IPv6 addresses ("::ffff:10.1.2.3")
 * match IPv4 ranges, as a dual-stack listener reports IPv4 clients so.
 *
 * @module
 */
import { ipv6Bytes, isIPv4 } from "./ip.ts";

/**
 * A parsed range.
 *
 * @example
 * ```ts
 * import { type Cidr, parseCidr } from "@relaykit/relaykit";
 * const range: Cidr = parseCidr("2001:db8::/32");
 * console.log(range.bytes.length, range.prefix); // 16 32
 * ```
 */
export interface Cidr {
  /** The text it came from. */
  readonly text: string;
  /** 4 bytes (IPv4) or 16 (IPv6), masked to the prefix. */
  readonly bytes: Uint8Array;
  /** Prefix length in bits. */
  readonly prefix: number;
}

function ipv4Bytes(text: string): Uint8Array {
  return new Uint8Array(text.split(".").map(Number));
}

/** The bytes of an address: 4 for IPv4 and IPv4-mapped IPv6, 16 otherwise. */
export function addressBytes(host: string): Uint8Array | undefined {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (isIPv4(h)) return ipv4Bytes(h);
  let b: Uint8Array;
  try {
    b = ipv6Bytes(h.replace(/%.*$/, "")); // a zone id does not matter here
  } catch {
    return undefined;
  }
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? b.slice(12) : b;
}

/**
 * Parse "ADDRESS/PREFIX" or a single address.
 *
 * @throws {RangeError} naming the text, for anything else.
 *
 * @example
 * ```ts
 * import { parseCidr } from "@relaykit/relaykit";
 * console.log(parseCidr("10.1.2.3/8").prefix); // 8
 * ```
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const bytes = addressBytes(addr);
  if (bytes === undefined) {
    throw new RangeError(`"${text}" is not an address range (like 10.0.0.0/8 or ::1/128)`);
  }
  const max = bytes.length * 8;
  const ptext = slash < 0 ? String(max) : text.slice(slash + 1);
  const prefix = Number(ptext);
  if (!/^[0-9]{1,3}$/.test(ptext) || prefix > max) {
    throw new RangeError(`"${text}": the prefix length must be 0 to ${max}`);
  }
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return { text, bytes, prefix };
}

/**
 * Whether `host` lies in one of `ranges`.
 *
 * @example
 * ```ts
 * import { inRanges, parseCidr } from "@relaykit/relaykit";
 * const trusted = ["10.0.0.0/8", "::1"].map(parseCidr);
 * console.log(inRanges("10.9.8.7", trusted), inRanges("::ffff:10.0.0.1", trusted)); // true true
 * ```
 */
export function inRanges(host: string, ranges: readonly Cidr[]): boolean {
  const b = addressBytes(host);
  if (b === undefined) return false;
  return ranges.some((r) => cidrContains(r, b));
}

/**
 * Whether the address `bytes` (4 or 16) lies in `range`; an IPv4 range
 * never holds 16 bytes, nor an IPv6 range 4.
 *
 * @example
 * ```ts
 * import { cidrContains, parseCidr } from "@relaykit/relaykit";
 * console.log(cidrContains(parseCidr("10.0.0.0/8"), new Uint8Array([10, 9, 8, 7]))); // true
 * ```
 */
export function cidrContains(range: Cidr, bytes: Uint8Array): boolean {
  if (range.bytes.length !== bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, range.prefix - i * 8));
    if (keep === 0) return true;
    const mask = (0xff << (8 - keep)) & 0xff;
    if (((bytes[i] ?? 0) & mask) !== range.bytes[i]) return false;
  }
  return true;
}
