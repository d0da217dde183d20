/**
 * The PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt):
 * a pure, incremental parser and a builder. Bytes in, values out, no I/O.
 *
 * The parser never consumes a byte past the header: it reports the header's
 * length, and asks for more bytes (`{ need }`) instead of guessing.
 *
 * @example Parse what a load balancer sent
 * ```ts
 * import { buildProxyHeader, parseProxyHeader } from "@relaykit/relaykit";
 * const bytes = buildProxyHeader({
 *   version: 2,
 *   command: "proxy",
 *   transport: "stream",
 *   source: { host: "192.0.2.1", port: 51000 },
 *   destination: { host: "192.0.2.2", port: 443 },
 *   tlvs: [{ type: 0x02, value: new TextEncoder().encode("example.com") }],
 * });
 * const r = parseProxyHeader(bytes);
 * if (r.kind === "header") console.log(r.header.source, r.length);
 * ```
 *
 * @module
 */
import { ipv6Bytes, ipv6Text, isIPv4 } from "./ip.ts";

/**
 * A TCP or UDP address.
 *
 * @example
 * ```ts
 * import { type InetAddress } from "@relaykit/relaykit";
 * const source: InetAddress = { host: "192.0.2.1", port: 56324 };
 * console.log(source);
 * ```
 */
export interface InetAddress {
  /** IPv4 dotted quad or IPv6 text. */
  host: string;
  /** Port, 0 to 65535. */
  port: number;
}

/**
 * A type-length-value record of a v2 header.
 *
 * @example
 * ```ts
 * import { type Tlv, TLV } from "@relaykit/relaykit";
 * const noop: Tlv = { type: TLV.NOOP, value: new Uint8Array(4) };
 * console.log(noop.type);
 * ```
 */
export interface Tlv {
  /** The type byte (0x01 ALPN, 0x02 AUTHORITY, 0x03 CRC32C, ...). */
  type: number;
  /** The value, as sent. */
  value: Uint8Array;
}

/**
 * The SSL TLV (0x20), decoded.
 *
 * @example
 * ```ts
 * import { type SslInfo } from "@relaykit/relaykit";
 * const ssl: SslInfo = { client: 1, verify: 0, version: "TLSv1.3", tlvs: [] };
 * console.log(ssl.client & 1 ? "client connected over TLS" : "plain");
 * ```
 */
export interface SslInfo {
  /** PP2_CLIENT_* bits: 1 SSL, 2 client cert on this connection, 4 in the session. */
  client: number;
  /** 0 when the client certificate was verified. */
  verify: number;
  /** PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3". */
  version?: string;
  /** PP2_SUBTYPE_SSL_CN: the client certificate's common name. */
  cn?: string;
  /** PP2_SUBTYPE_SSL_CIPHER. */
  cipher?: string;
  /** PP2_SUBTYPE_SSL_SIG_ALG. */
  sigAlg?: string;
  /** PP2_SUBTYPE_SSL_KEY_ALG. */
  keyAlg?: string;
  /** Every sub-TLV as sent, known or not. */
  tlvs: Tlv[];
}

/**
 * A parsed (or to be built) PROXY header.
 *
 * @example
 * ```ts
 * import { buildProxyHeader, type ProxyHeader } from "@relaykit/relaykit";
 * const h: ProxyHeader = {
 *   version: 1,
 *   command: "proxy",
 *   transport: "stream",
 *   source: { host: "2001:db8::1", port: 1000 },
 *   destination: { host: "2001:db8::2", port: 443 },
 *   tlvs: [],
 * };
 * console.log(new TextDecoder().decode(buildProxyHeader(h)));
 * ```
 */
export interface ProxyHeader {
  /** Protocol version. */
  version: 1 | 2;
  /** "local": a health check from the proxy itself, no client addresses. */
  command: "proxy" | "local";
  /** v2 transport; v1 is always "stream". */
  transport: "stream" | "dgram" | "unspec";
  /** The client's address (TCP/UDP), or its socket path (Unix). */
  source?: InetAddress | { path: string };
  /** The address the client connected to. */
  destination?: InetAddress | { path: string };
  /** v2 TLVs, in order, including unknown ones. */
  tlvs: Tlv[];
}

/**
 * The known TLVs of a header, decoded.
 *
 * @example
 * ```ts
 * import { type DecodedTlvs, decodeTlvs } from "@relaykit/relaykit";
 * const t: DecodedTlvs = decodeTlvs([{ type: 0x02, value: new TextEncoder().encode("example.com") }]);
 * console.log(t.authority);
 * ```
 */
export interface DecodedTlvs {
  /** PP2_TYPE_ALPN: the application protocol. */
  alpn?: string;
  /** PP2_TYPE_AUTHORITY: the host name the client asked for. */
  authority?: string;
  /** PP2_TYPE_CRC32C: the checksum (verified by the parser). */
  crc32c?: number;
  /** PP2_TYPE_UNIQUE_ID: up to 128 bytes. */
  uniqueId?: Uint8Array;
  /** PP2_TYPE_SSL with its sub-TLVs. */
  ssl?: SslInfo;
  /** PP2_TYPE_NETNS: the namespace's name. */
  netns?: string;
}

/**
 * What the parser found.
 *
 * @example
 * ```ts
 * import { parseProxyHeader, type ParseResult } from "@relaykit/relaykit";
 * const r: ParseResult = parseProxyHeader(new TextEncoder().encode("PROXY TCP4 1.2.3.4"));
 * if (r.kind === "need") console.log(`need ${r.bytes} more bytes`);
 * ```
 */
export type ParseResult =
  | { kind: "need"; bytes: number }
  | { kind: "none" }
  | { kind: "header"; header: ProxyHeader; length: number };

/**
 * Which header a listener accepts.
 *
 * @example
 * ```ts
 * import { type ParseMode, parseProxyHeader } from "@relaykit/relaykit";
 * const mode: ParseMode = "none"; // the no-op mode
 * console.log(parseProxyHeader(new TextEncoder().encode("PROXY UNKNOWN\r\n"), mode).kind); // none
 * ```
 */
export type ParseMode = "detect" | "v1" | "v2" | "none";

/**
 * A malformed header. `code` names what is wrong.
 *
 * @example
 * ```ts
 * import { parseProxyHeader, ProxyProtocolError } from "@relaykit/relaykit";
 * try {
 *   parseProxyHeader(new TextEncoder().encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"));
 * } catch (err) {
 *   if (err instanceof ProxyProtocolError) console.log(err.code); // V1_NO_CRLF
 * }
 * ```
 */
export class ProxyProtocolError extends Error {
  /** E.g. "V1_NO_CRLF", "V1_TOO_LONG", "V2_BAD_VERSION", "CRC32C_MISMATCH". */
  readonly code: string;
  /**
   * Make one.
   *
   * @param code What is wrong, as a constant.
   * @param message What is wrong, in words.
   */
  constructor(code: string, message: string) {
    super(message);
    this.name = "ProxyProtocolError";
    this.code = code;
  }
}

/**
 * TLV types of the spec.
 *
 * @example
 * ```ts
 * import { buildProxyHeader, TLV } from "@relaykit/relaykit";
 * const header = buildProxyHeader({
 *   version: 2,
 *   command: "proxy",
 *   transport: "stream",
 *   source: { host: "192.0.2.1", port: 1234 },
 *   destination: { host: "192.0.2.2", port: 443 },
 *   tlvs: [{ type: TLV.AUTHORITY, value: new TextEncoder().encode("example.com") }],
 * });
 * console.log(header.length);
 * ```
 */
export const TLV = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  SSL_VERSION: 0x21,
  SSL_CN: 0x22,
  SSL_CIPHER: 0x23,
  SSL_SIG_ALG: 0x24,
  SSL_KEY_ALG: 0x25,
  NETNS: 0x30,
} as const;

const V1_PREFIX = new TextEncoder().encode("PROXY ");
/** "\r\n\r\n\0\r\nQUIT\n" */
const V2_SIG = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);
/** The longest v1 header, CRLF included (the spec's 107 bytes). */
export const V1_MAX = 107;
/**
 * The longest v2 header relaykit buffers, 16-byte preamble included: HAProxy's
 * default buffer (`tune.bufsize`), the most a header from HAProxy can be read
 * into. A longer announced length is refused at once (`V2_TOO_LONG`) rather
 * than waited for.
 */
export const V2_MAX = 16384;
/** The longest AUTHORITY TLV: a host name (RFC 1035), HAProxy's limit too. */
const AUTHORITY_MAX = 255;
/** The longest UNIQUE_ID TLV (the spec). */
const UNIQUE_ID_MAX = 128;

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8");

function fail(code: string, message: string): never {
  throw new ProxyProtocolError(code, message);
}

/** How many leading bytes of `buf` agree with `sig` (up to its length). */
function prefixMatch(buf: Uint8Array, sig: Uint8Array): number {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return -1;
  return n;
}

/**
 * Parse a PROXY header at the start of `buf`.
 *
 * @param buf The bytes received so far.
 * @param mode "detect" accepts v1, v2 or no header; "v1"/"v2" require that one;
 * "none" is the no-op mode: the bytes are payload, whatever they are.
 * @returns `need` (how many more bytes at least), `none` (detect: the
 * stream does not start with a header) or the header and its length. The
 * known TLVs of a returned header are valid: {@link decodeTlvs} decodes them.
 * @throws {ProxyProtocolError} for a malformed header, and at once for a v2
 * header announced longer than `V2_MAX` (16384 bytes, `V2_TOO_LONG`). It never
 * throws anything else.
 *
 * @example
 * ```ts
 * import { parseProxyHeader } from "@relaykit/relaykit";
 * const bytes = new TextEncoder().encode("PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET /");
 * const r = parseProxyHeader(bytes, "detect");
 * if (r.kind === "header") console.log(r.header.source, bytes.subarray(r.length).length); // ... 5
 * ```
 */
export function parseProxyHeader(buf: Uint8Array, mode: ParseMode = "detect"): ParseResult {
  if (mode === "none") return { kind: "none" }; // the no-op mode: never a header
  const v1 = prefixMatch(buf, V1_PREFIX);
  const v2 = prefixMatch(buf, V2_SIG);
  if (mode !== "v2" && v1 === V1_PREFIX.length) return parseV1(buf);
  if (mode !== "v1" && v2 === V2_SIG.length) return parseV2(buf);
  const couldV1 = mode !== "v2" && v1 >= 0;
  const couldV2 = mode !== "v1" && v2 >= 0;
  if (couldV1 || couldV2) {
    const need = Math.min(
      couldV1 ? V1_PREFIX.length - buf.length : Infinity,
      couldV2 ? V2_SIG.length - buf.length : Infinity,
    );
    return { kind: "need", bytes: need };
  }
  if (mode === "detect") return { kind: "none" };
  return fail("NO_HEADER", `Expected a PROXY protocol ${mode} header`);
}

function parsePort(text: string): number {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text) || Number(text) > 65535) {
    fail("V1_BAD_PORT", `Bad port "${text}" in PROXY v1 header`);
  }
  return Number(text);
}

function isIPv6(text: string): boolean {
  // Syntax only (hex groups, one "::", optional IPv4 tail); the bytes are
  // produced by the v2 encoder when needed.
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.length > 45) return false;
  try {
    ipv6Bytes(text);
    return true;
  } catch {
    return false;
  }
}

function parseV1(buf: Uint8Array): ParseResult {
  // CR must come early enough that CRLF ends within V1_MAX bytes
  const limit = Math.min(buf.length, V1_MAX - 1);
  let cr = -1;
  for (let i = V1_PREFIX.length; i < limit; i++) {
    if (buf[i] === 0x0d) {
      cr = i;
      break;
    }
    if (buf[i] === 0x0a) fail("V1_NO_CRLF", "PROXY v1 header ends with LF without CR");
  }
  if (cr < 0) {
    if (buf.length >= V1_MAX - 1) {
      fail("V1_TOO_LONG", `PROXY v1 header longer than ${V1_MAX} bytes`);
    }
    return { kind: "need", bytes: 1 };
  }
  if (cr + 1 >= buf.length) return { kind: "need", bytes: 1 };
  if (buf[cr + 1] !== 0x0a) fail("V1_NO_CRLF", "PROXY v1 header: CR not followed by LF");
  const line = latin1.decode(buf.subarray(V1_PREFIX.length, cr));
  const length = cr + 2;
  if (line === "UNKNOWN" || line.startsWith("UNKNOWN ")) {
    return {
      kind: "header",
      header: { version: 1, command: "proxy", transport: "unspec", tlvs: [] },
      length,
    };
  }
  const parts = line.split(" ");
  if (parts.length !== 5) {
    fail("V1_BAD_FORMAT", `PROXY v1 header needs 5 fields after "PROXY", got "${line}"`);
  }
  const [proto, src, dst, sport, dport] = parts as [string, string, string, string, string];
  const valid = proto === "TCP4" ? isIPv4 : proto === "TCP6" ? isIPv6 : undefined;
  if (valid === undefined) fail("V1_BAD_PROTOCOL", `Unknown PROXY v1 protocol "${proto}"`);
  if (!valid(src) || !valid(dst)) {
    fail("V1_BAD_ADDRESS", `Bad ${proto} address in PROXY v1 header "${line}"`);
  }
  return {
    kind: "header",
    header: {
      version: 1,
      command: "proxy",
      transport: "stream",
      source: { host: src, port: parsePort(sport) },
      destination: { host: dst, port: parsePort(dport) },
      tlvs: [],
    },
    length,
  };
}

function readInet(b: Uint8Array, off: number, v6: boolean): [InetAddress, InetAddress] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const alen = v6 ? 16 : 4;
  const text = (o: number) =>
    v6 ? ipv6Text(b.subarray(o, o + 16)) : Array.from(b.subarray(o, o + 4)).join(".");
  return [
    { host: text(off), port: dv.getUint16(off + 2 * alen) },
    { host: text(off + alen), port: dv.getUint16(off + 2 * alen + 2) },
  ];
}

function readPath(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return utf8.decode(nul < 0 ? b : b.subarray(0, nul));
}

function parseTlvs(b: Uint8Array, what: string): Tlv[] {
  const out: Tlv[] = [];
  let o = 0;
  while (o < b.length) {
    if (o + 3 > b.length) fail("V2_BAD_TLV", `Truncated ${what} TLV header`);
    const type = b[o]!;
    const len = (b[o + 1]! << 8) | b[o + 2]!;
    if (o + 3 + len > b.length) {
      fail("V2_BAD_TLV", `${what} TLV 0x${type.toString(16)} overruns the header`);
    }
    out.push({ type, value: new Uint8Array(b.subarray(o + 3, o + 3 + len)) }); // a copy, plain
    o += 3 + len;
  }
  return out;
}

function transportOf(proto: number): ProxyHeader["transport"] {
  return proto === 1 ? "stream" : proto === 2 ? "dgram" : "unspec";
}

function parseV2(buf: Uint8Array): ParseResult {
  if (buf.length < 16) return { kind: "need", bytes: 16 - buf.length };
  const verCmd = buf[12]!, fam = buf[13]!;
  const len = (buf[14]! << 8) | buf[15]!;
  if (verCmd >> 4 !== 2) fail("V2_BAD_VERSION", `PROXY v2 header with version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) fail("V2_BAD_COMMAND", `PROXY v2 header with command ${cmd}`);
  const family = fam >> 4, proto = fam & 0x0f;
  if (family > 3) fail("V2_BAD_FAMILY", `PROXY v2 header with address family ${family}`);
  if (proto > 2) fail("V2_BAD_TRANSPORT", `PROXY v2 header with transport ${proto}`);
  const total = 16 + len;
  if (total > V2_MAX) {
    fail("V2_TOO_LONG", `PROXY v2 header of ${total} bytes, longer than ${V2_MAX}`);
  }
  if (buf.length < total) return { kind: "need", bytes: total - buf.length };
  const header = buf.subarray(0, total);
  const alen = [0, 12, 36, 216][family]!;
  return {
    kind: "header",
    header: cmd === 0 ? local(header, alen, proto) : proxied(header, alen, family, proto),
    length: total,
  };
}

/**
 * LOCAL: the receiver must accept it and use the real endpoints (the spec),
 * so the address block and a tail that is not well-formed TLVs are ignored;
 * a CRC32C TLV, when the tail has one, is still checked (a flipped command
 * bit turns a PROXY header into a LOCAL one: the checksum is what sees it).
 */
function local(header: Uint8Array, alen: number, proto: number): ProxyHeader {
  const out: ProxyHeader = {
    version: 2,
    command: "local",
    transport: transportOf(proto),
    tlvs: [],
  };
  const body = header.subarray(16);
  if (body.length < alen) return out;
  let tlvs: Tlv[];
  try {
    tlvs = parseTlvs(body.subarray(alen), "v2");
  } catch {
    return out;
  }
  checkCrc(header, alen, tlvs);
  try {
    decodeTlvs(tlvs);
  } catch {
    return out;
  }
  out.tlvs = tlvs;
  return out;
}

function proxied(header: Uint8Array, alen: number, family: number, proto: number): ProxyHeader {
  // relaykit's listeners are stream listeners: a datagram's addresses are
  // not those of the connection being relayed
  if (proto === 2) {
    fail(
      "V2_BAD_TRANSPORT",
      "PROXY v2 header for a datagram (UDP or Unix datagram) connection on a stream listener",
    );
  }
  const body = header.subarray(16);
  if (body.length < alen) {
    fail(
      "V2_SHORT_ADDRESS",
      `PROXY v2 address block needs ${alen} bytes, header has ${body.length}`,
    );
  }
  const out: ProxyHeader = {
    version: 2,
    command: "proxy",
    transport: transportOf(proto),
    tlvs: parseTlvs(body.subarray(alen), "v2"),
  };
  checkCrc(header, alen, out.tlvs);
  decodeTlvs(out.tlvs); // every known TLV valid: a header that parses decodes
  // UNSPEC carries no address: the receiver uses the real endpoints (the spec)
  if (family === 3) {
    out.source = { path: readPath(body.subarray(0, 108)) };
    out.destination = { path: readPath(body.subarray(108, 216)) };
  } else if (family !== 0) {
    [out.source, out.destination] = readInet(body, 0, family === 2);
  }
  return out;
}

/** Verify the CRC32C TLV of `header` if `tlvs` (its TLVs) has one. */
function checkCrc(header: Uint8Array, alen: number, tlvs: readonly Tlv[]): void {
  const crcs = tlvs.filter((t) => t.type === TLV.CRC32C);
  if (crcs.length === 0) return;
  if (crcs.length > 1) fail("V2_BAD_TLV", "PROXY v2 header with more than one CRC32C TLV");
  if (crcs[0]!.value.length !== 4) fail("V2_BAD_TLV", "PROXY v2 CRC32C TLV must be 4 bytes");
  const copy = header.slice();
  // zero the checksum field in the copy, then compare
  const at = findTlvOffset(copy.subarray(16 + alen), TLV.CRC32C) + 16 + alen + 3;
  const want = new DataView(copy.buffer).getUint32(at);
  copy.fill(0, at, at + 4);
  if (crc32c(copy) !== want) fail("CRC32C_MISMATCH", "PROXY v2 header fails its CRC32C check");
}

function findTlvOffset(b: Uint8Array, type: number): number {
  let o = 0;
  while (o + 3 <= b.length) {
    if (b[o] === type) return o;
    o += 3 + ((b[o + 1]! << 8) | b[o + 2]!);
  }
  return -1;
}

/**
 * The known TLVs of a header, decoded (unknown ones stay in `header.tlvs`).
 * The TLVs of a header that {@link parseProxyHeader} returned always decode:
 * it checks them with this function before it returns.
 *
 * @throws {ProxyProtocolError} (code `V2_BAD_TLV`, and never anything else)
 * for a known TLV that breaks the spec: a CRC32C TLV that is not 4 bytes, a
 * UNIQUE_ID over 128 bytes, an AUTHORITY over 255 bytes, an SSL TLV shorter
 * than its 5 fixed bytes or whose sub-TLVs overrun it.
 *
 * @example
 * ```ts
 * import { buildProxyHeader, decodeTlvs, parseProxyHeader, TLV } from "@relaykit/relaykit";
 * const r = parseProxyHeader(buildProxyHeader({
 *   version: 2,
 *   command: "local",
 *   transport: "stream",
 *   tlvs: [{ type: TLV.UNIQUE_ID, value: new TextEncoder().encode("req-1") }],
 * }, { crc32c: true }));
 * if (r.kind === "header") console.log(decodeTlvs(r.header.tlvs));
 * ```
 */
export function decodeTlvs(tlvs: readonly Tlv[]): DecodedTlvs {
  const out: DecodedTlvs = {};
  for (const t of tlvs) {
    switch (t.type) {
      case TLV.ALPN:
        out.alpn = latin1.decode(t.value);
        break;
      case TLV.AUTHORITY:
        if (t.value.length > AUTHORITY_MAX) {
          fail("V2_BAD_TLV", `PROXY v2 AUTHORITY longer than ${AUTHORITY_MAX} bytes`);
        }
        out.authority = utf8.decode(t.value);
        break;
      case TLV.CRC32C:
        if (t.value.length !== 4) fail("V2_BAD_TLV", "PROXY v2 CRC32C TLV must be 4 bytes");
        out.crc32c = new DataView(t.value.buffer, t.value.byteOffset, 4).getUint32(0);
        break;
      case TLV.UNIQUE_ID:
        if (t.value.length > UNIQUE_ID_MAX) {
          fail("V2_BAD_TLV", `PROXY v2 UNIQUE_ID longer than ${UNIQUE_ID_MAX} bytes`);
        }
        out.uniqueId = t.value;
        break;
      case TLV.NETNS:
        out.netns = latin1.decode(t.value);
        break;
      case TLV.SSL: {
        if (t.value.length < 5) fail("V2_BAD_TLV", "PROXY v2 SSL TLV shorter than 5 bytes");
        const dv = new DataView(t.value.buffer, t.value.byteOffset, t.value.length);
        const ssl: SslInfo = {
          client: dv.getUint8(0),
          verify: dv.getUint32(1),
          tlvs: parseTlvs(t.value.subarray(5), "SSL sub-"),
        };
        for (const s of ssl.tlvs) {
          const text = latin1.decode(s.value);
          if (s.type === TLV.SSL_VERSION) ssl.version = text;
          else if (s.type === TLV.SSL_CN) ssl.cn = utf8.decode(s.value);
          else if (s.type === TLV.SSL_CIPHER) ssl.cipher = text;
          else if (s.type === TLV.SSL_SIG_ALG) ssl.sigAlg = text;
          else if (s.type === TLV.SSL_KEY_ALG) ssl.keyAlg = text;
        }
        out.ssl = ssl;
        break;
      }
    }
  }
  return out;
}

/**
 * Options of {@link buildProxyHeader}.
 *
 * @example
 * ```ts
 * import { type BuildOptions, buildProxyHeader } from "@relaykit/relaykit";
 * const options: BuildOptions = { crc32c: true };
 * const h = buildProxyHeader({ version: 2, command: "local", transport: "stream", tlvs: [] }, options);
 * console.log(h.length); // 16 + a 7-byte CRC32C TLV
 * ```
 */
export interface BuildOptions {
  /** v2: append a CRC32C TLV over the whole header. @default false */
  crc32c?: boolean;
}

/**
 * Encode a header. v1 needs IPv4 or IPv6 addresses (or none: UNKNOWN); v2
 * takes TLVs and any family.
 *
 * @throws {RangeError} for addresses or values the version cannot carry.
 *
 * @example
 * ```ts
 * import { buildProxyHeader } from "@relaykit/relaykit";
 * const v1 = buildProxyHeader({
 *   version: 1,
 *   command: "proxy",
 *   transport: "stream",
 *   source: { host: "192.0.2.1", port: 56324 },
 *   destination: { host: "192.0.2.2", port: 443 },
 *   tlvs: [],
 * });
 * console.log(new TextDecoder().decode(v1)); // PROXY TCP4 192.0.2.1 192.0.2.2 56324 443
 * ```
 */
export function buildProxyHeader(h: ProxyHeader, options: BuildOptions = {}): Uint8Array {
  return h.version === 1 ? buildV1(h) : buildV2(h, options.crc32c ?? false);
}

function inetOf(a: ProxyHeader["source"]): InetAddress | undefined {
  return a !== undefined && "host" in a ? a : undefined;
}

function buildV1(h: ProxyHeader): Uint8Array {
  const s = inetOf(h.source), d = inetOf(h.destination);
  if (h.command === "local" || s === undefined || d === undefined) {
    return new TextEncoder().encode("PROXY UNKNOWN\r\n");
  }
  const proto = isIPv4(s.host) && isIPv4(d.host)
    ? "TCP4"
    : isIPv6(s.host) && isIPv6(d.host)
    ? "TCP6"
    : undefined;
  if (proto === undefined) {
    throw new RangeError(
      `PROXY v1 needs two IPv4 or two IPv6 addresses, not "${s.host}" and "${d.host}"`,
    );
  }
  for (const p of [s.port, d.port]) {
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new RangeError(`Bad port ${p}`);
  }
  // TCP6 in its shortest form: any spelling of an address then fits V1_MAX
  const text = (h: string) => proto === "TCP6" ? ipv6Text(ipv6Bytes(h)) : h;
  return new TextEncoder().encode(
    `PROXY ${proto} ${text(s.host)} ${text(d.host)} ${s.port} ${d.port}\r\n`,
  );
}

function buildV2(h: ProxyHeader, withCrc: boolean): Uint8Array {
  let family = 0;
  let addr = new Uint8Array(0);
  const s = h.source, d = h.destination;
  if (h.command === "proxy" && s !== undefined && d !== undefined) {
    if ("path" in s && "path" in d) {
      family = 3;
      addr = new Uint8Array(216);
      const enc = new TextEncoder();
      const sp = enc.encode(s.path), dp = enc.encode(d.path);
      if (sp.length > 108 || dp.length > 108) {
        throw new RangeError("A Unix path is longer than 108 bytes");
      }
      addr.set(sp, 0);
      addr.set(dp, 108);
    } else if ("host" in s && "host" in d) {
      const v4 = isIPv4(s.host) && isIPv4(d.host);
      if (!v4 && !(isIPv6(s.host) && isIPv6(d.host))) {
        throw new RangeError(
          `PROXY v2 needs two addresses of one family, not "${s.host}" and "${d.host}"`,
        );
      }
      family = v4 ? 1 : 2;
      const alen = v4 ? 4 : 16;
      addr = new Uint8Array(alen * 2 + 4);
      const bytes = (host: string) =>
        v4 ? new Uint8Array(host.split(".").map(Number)) : ipv6Bytes(host);
      addr.set(bytes(s.host), 0);
      addr.set(bytes(d.host), alen);
      const dv = new DataView(addr.buffer);
      dv.setUint16(alen * 2, s.port);
      dv.setUint16(alen * 2 + 2, d.port);
    } else {
      throw new RangeError("PROXY v2 source and destination must be of one kind");
    }
  }
  const tlvs = h.tlvs.filter((t) => !(withCrc && t.type === TLV.CRC32C));
  let tlen = 0;
  for (const t of tlvs) {
    if (t.value.length > 0xffff) throw new RangeError(`TLV 0x${t.type.toString(16)} is too long`);
    tlen += 3 + t.value.length;
  }
  if (withCrc) tlen += 7;
  const len = addr.length + tlen;
  if (len > 0xffff) throw new RangeError("PROXY v2 header is too long");
  const out = new Uint8Array(16 + len);
  out.set(V2_SIG, 0);
  out[12] = 0x20 | (h.command === "proxy" ? 1 : 0);
  const proto = h.transport === "stream" ? 1 : h.transport === "dgram" ? 2 : 0;
  out[13] = (family << 4) | (family === 0 ? 0 : proto);
  out[14] = len >> 8;
  out[15] = len & 0xff;
  out.set(addr, 16);
  let o = 16 + addr.length;
  for (const t of tlvs) {
    out[o] = t.type;
    out[o + 1] = t.value.length >> 8;
    out[o + 2] = t.value.length & 0xff;
    out.set(t.value, o + 3);
    o += 3 + t.value.length;
  }
  if (withCrc) {
    out[o] = TLV.CRC32C;
    out[o + 1] = 0;
    out[o + 2] = 4;
    new DataView(out.buffer).setUint32(o + 3, crc32c(out)); // over the zeroed field
  }
  return out;
}

let crcTable: Uint32Array | undefined;

/**
 * CRC32C (Castagnoli), as the v2 CRC32C TLV uses.
 *
 * @example
 * ```ts
 * import { crc32c } from "@relaykit/relaykit";
 * console.log(crc32c(new TextEncoder().encode("123456789")).toString(16)); // e3069283
 * ```
 */
export function crc32c(data: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
