/**
 * PROXY protocol parser and builder under random, mutated and generated
 * input. The parser either returns a result or throws a ProxyProtocolError,
 * never reads past its input, asks for more bytes on every proper prefix of
 * a header, and gives back what the builder was given.
 *
 * Deterministic: every case comes from a seeded xorshift32 generator. The
 * seed is in every failure message, with the case number, the mode and the
 * input as hex; `PROXY_FUZZ_SEED=<n>` runs the same cases from another seed.
 */
import assert from "node:assert/strict";
import process from "node:process";
import { describe, test } from "./_test.ts";
import { parseBoth } from "./_proxy_twin.ts";
import { ipv6Bytes, ipv6Text } from "../src/protocol/ip.ts";
import {
  buildProxyHeader,
  decodeTlvs,
  type InetAddress,
  type ParseMode,
  type ParseResult,
  type ProxyHeader,
  ProxyProtocolError,
  TLV,
  type Tlv,
  V1_MAX,
  V2_MAX,
} from "../src/protocol/proxy_protocol.ts";

const SEED = Number(process.env.PROXY_FUZZ_SEED ?? 0x5eed1e55) >>> 0;
const MODES: readonly ParseMode[] = ["detect", "v1", "v2"];
const V1_PREFIX = [0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]; // "PROXY "
const V2_SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

const enc = new TextEncoder();
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const concat = (...parts: ArrayLike<number>[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

/** xorshift32, seeded per test so that each test replays on its own. */
class Rng {
  #s: number;
  /** @param seed any 32-bit value (0 is replaced) */
  constructor(seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9;
  }
  /** For a test named `name`: the base seed mixed with the name (FNV-1a). */
  static for(name: string): Rng {
    let h = 0x811c9dc5;
    for (const c of enc.encode(name)) h = Math.imul(h ^ c, 0x01000193);
    return new Rng(SEED ^ h);
  }
  u32(): number {
    let s = this.#s;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (this.#s = s >>> 0);
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + (this.u32() % (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.u32() < p * 0x100000000;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
  /** `n` characters drawn from `alphabet`. */
  text(n: number, alphabet: string): string {
    const chars = [...alphabet];
    let s = "";
    for (let i = 0; i < n; i++) s += this.pick(chars);
    return s;
  }
}

/** Describes the case under test, for failure messages; built only on failure. */
type Ctx = () => string;
const ctxOf = (what: string, i: number, mode: ParseMode, buf: Uint8Array): Ctx => () =>
  `seed=0x${SEED.toString(16)} ${what} case ${i} mode=${mode} input(${buf.length})=${hex(buf)}`;

function check(ok: boolean, ctx: Ctx, what: string): void {
  if (!ok) assert.fail(`${ctx()}\n${what}`);
}

function sameValue(actual: unknown, expected: unknown, ctx: Ctx, what: string): void {
  try {
    assert.deepStrictEqual(actual, expected);
  } catch (e) {
    assert.fail(`${ctx()}\n${what}: ${(e as Error).message}`);
  }
}

/** A parse outcome that can be compared: the result, or the error's code and message. */
type Outcome = { result: ParseResult } | { error: { code: string; message: string } };

function isAddress(a: unknown): boolean {
  if (typeof a !== "object" || a === null) return false;
  if ("path" in a) return typeof a.path === "string";
  const { host, port } = a as InetAddress;
  return typeof host === "string" && Number.isInteger(port) && port >= 0 && port <= 65535;
}

/** The invariants every result must keep, whatever the input. */
function checkResult(r: ParseResult, buf: Uint8Array, mode: ParseMode, ctx: Ctx): void {
  switch (r.kind) {
    case "need":
      check(Number.isInteger(r.bytes) && r.bytes >= 1, ctx, `need ${r.bytes} bytes`);
      return;
    case "none":
      check(mode === "detect", ctx, `"none" outside detect mode`);
      return;
    case "header": {
      const { header: h, length } = r;
      check(Number.isInteger(length) && length >= 1, ctx, `header length ${length}`);
      check(length <= buf.length, ctx, `header length ${length} past the input's end`);
      check(mode === "detect" || mode === `v${h.version}`, ctx, `v${h.version} in ${mode} mode`);
      if (h.version === 1) {
        check(length <= V1_MAX, ctx, `v1 header of ${length} bytes`);
        check(h.tlvs.length === 0, ctx, "v1 header with TLVs");
      } else {
        check(h.version === 2, ctx, `version ${String(h.version)}`);
        check(length === 16 + ((buf[14]! << 8) | buf[15]!), ctx, `v2 length ${length}`);
        // The TLVs are the input's, as its bytes say, and fill the header to its end.
        let o = 16 + [0, 12, 36, 216][buf[13]! >> 4]!;
        check(length <= V2_MAX, ctx, `v2 header of ${length} bytes, past ${V2_MAX}`);
        // LOCAL ignores its family and a tail that is not valid TLVs: a body
        // shorter than that family's address block, or a tail that does not
        // decode, is skipped whole, with no TLVs
        if (h.command === "local" && (o > length || h.tlvs.length === 0)) {
          check(h.tlvs.length === 0, ctx, "TLVs from a LOCAL header without addresses");
          o = length;
        }
        // a datagram's addresses are not a stream connection's
        check(h.command === "local" || h.transport !== "dgram", ctx, "PROXY command for DGRAM");
        // the TLVs of any header returned decode, with nothing but known TLVs' values read
        try {
          decodeTlvs(h.tlvs);
        } catch (e) {
          assert.fail(`${ctx()}\nthe TLVs of a parsed header do not decode: ${e}`);
        }
        for (const t of h.tlvs) {
          const len = (buf[o + 1]! << 8) | buf[o + 2]!;
          check(
            o + 3 + len <= length && t.type === buf[o] && t.value.length === len &&
              t.value.every((v, j) => v === buf[o + 3 + j]),
            ctx,
            `TLV at ${o} differs from the input`,
          );
          o += 3 + len;
        }
        check(o === length, ctx, `TLVs end at ${o}, the header at ${length}`);
      }
      check(h.command === "proxy" || h.command === "local", ctx, `command ${h.command}`);
      check(["stream", "dgram", "unspec"].includes(h.transport), ctx, `transport ${h.transport}`);
      check(
        (h.source === undefined) === (h.destination === undefined),
        ctx,
        "only one of source and destination",
      );
      if (h.source !== undefined) {
        check(isAddress(h.source) && isAddress(h.destination), ctx, "malformed address");
      }
      for (const t of h.tlvs) {
        check(Number.isInteger(t.type) && t.type >= 0 && t.type <= 255, ctx, `TLV ${t.type}`);
        check(t.value instanceof Uint8Array, ctx, "TLV value not a Uint8Array");
      }
      return;
    }
    default:
      assert.fail(`${ctx()}\nunknown result ${JSON.stringify(r)}`);
  }
}

/**
 * Parse, allowing only a well-formed result or a ProxyProtocolError with a
 * code; anything else thrown fails the test.
 */
function outcome(buf: Uint8Array, mode: ParseMode, ctx: Ctx): Outcome {
  let result: ParseResult;
  try {
    result = parseBoth(buf, mode);
  } catch (e) {
    if (!(e instanceof ProxyProtocolError)) {
      assert.fail(`${ctx()}\nthrew something else than ProxyProtocolError: ${String(e)}`);
    }
    check(typeof e.code === "string" && e.code.length > 0, ctx, `error code "${e.code}"`);
    return { error: { code: e.code, message: e.message } };
  }
  checkResult(result, buf, mode, ctx);
  return { result };
}

/** Poison to put after a view: enough to complete any v2 header, and more. */
const POISON_LEN = 16 + 0xffff + V1_MAX + 16;
const POISONS = {
  crlf: Uint8Array.from({ length: POISON_LEN }, (_, i) => i & 1 ? 0x0a : 0x0d),
  zero: new Uint8Array(POISON_LEN),
  random: new Rng(SEED).bytes(2 * POISON_LEN),
} as const;

/**
 * `buf` placed inside a larger buffer: random bytes before it (a nonzero
 * byteOffset) and `poison` after it, enough to complete any header it
 * starts. A parser that reads past the view sees the poison.
 */
function poisoned(buf: Uint8Array, poison: keyof typeof POISONS, rng: Rng): Uint8Array {
  const declared = buf.length >= 16 ? 16 + ((buf[14]! << 8) | buf[15]!) : 0;
  const pre = rng.int(1, 24);
  const post = Math.max(0, declared - buf.length) + V1_MAX + 16;
  const big = new Uint8Array(pre + buf.length + post);
  big.set(rng.bytes(pre), 0);
  big.set(buf, pre);
  const from = poison === "random" ? rng.int(0, POISON_LEN) : 0;
  big.set(POISONS[poison].subarray(from, from + post), pre + buf.length);
  return big.subarray(pre, pre + buf.length);
}

/**
 * Every property that holds for any input, in one mode: the outcome rule;
 * the same outcome for a view of a larger, poisoned buffer as for a copy;
 * and for a header, the same header from exactly its `length` bytes.
 */
function fuzzOne(buf: Uint8Array, mode: ParseMode, rng: Rng, ctx: Ctx): Outcome {
  const copy = buf.slice();
  const o = outcome(copy, mode, ctx);
  for (const poison of ["crlf", "zero", "random"] as const) {
    const view = poisoned(copy, poison, rng);
    sameValue(outcome(view, mode, ctx), o, ctx, `a view with ${poison} bytes after it`);
  }
  if ("result" in o && o.result.kind === "header") {
    const exact = copy.subarray(0, o.result.length);
    sameValue(outcome(exact, mode, ctx), o, ctx, "the header's bytes alone");
  }
  return o;
}

/** All three modes, and detect agreeing with the mode it picks. */
function fuzzAllModes(buf: Uint8Array, rng: Rng, what: string, i: number): void {
  const [d, v1, v2] = MODES.map((m) => fuzzOne(buf, m, rng, ctxOf(what, i, m, buf))) as [
    Outcome,
    Outcome,
    Outcome,
  ];
  const ctx = ctxOf(what, i, "detect", buf);
  const starts = (sig: number[]) => buf.length >= sig.length && sig.every((b, j) => buf[j] === b);
  if (starts(V1_PREFIX)) sameValue(d, v1, ctx, "detect and v1 disagree on a v1 header");
  if (starts(V2_SIG)) sameValue(d, v2, ctx, "detect and v2 disagree on a v2 header");
  if ("result" in d && d.result.kind === "none") {
    for (const o of [v1, v2]) {
      check("error" in o && o.error.code === "NO_HEADER", ctx, "none in detect, not NO_HEADER");
    }
  }
}

// ---------------------------------------------------------------------------
// Generators

const ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const KNOWN_TYPES: readonly number[] = Object.values(TLV);

function ipv4(rng: Rng): string {
  return Array.from(rng.bytes(4)).join(".");
}

/** 16 bytes with runs of zero groups, as real addresses have. */
function ipv6Raw(rng: Rng): Uint8Array {
  const b = rng.bytes(16);
  if (rng.chance(0.6)) {
    const from = rng.int(0, 7), to = rng.int(from, 8);
    b.fill(0, 2 * from, 2 * to);
  }
  return b;
}

/** IPv6 text as a v1 sender may write it: canonical or not, with an IPv4 tail or not. */
function ipv6TextVariant(rng: Rng): string {
  const b = ipv6Raw(rng);
  const groups = Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!));
  switch (rng.int(0, 4)) {
    case 0:
      return ipv6Text(b);
    case 1:
      return groups.map((g) => g.toString(16).padStart(4, "0")).join(":");
    case 2:
      return ipv6Text(b).toUpperCase();
    case 3:
      return `::ffff:${Array.from(b.subarray(12)).join(".")}`;
    default:
      return `${groups.slice(0, 6).map((g) => g.toString(16)).join(":")}:${
        Array.from(b.subarray(12)).join(".")
      }`;
  }
}

/** A string of at most `maxBytes` UTF-8 bytes without NUL, non-ASCII included. */
function unixPath(rng: Rng, maxBytes: number): string {
  const parts = [..."/abcxyz_-.0123456789", "é", "日", "😀"];
  let s = "";
  const target = rng.chance(0.2) ? maxBytes : rng.int(0, maxBytes);
  for (;;) {
    const next = s + rng.pick(parts);
    if (enc.encode(next).length > target) return s;
    s = next;
  }
}

function inetPair(rng: Rng, v6: boolean): [InetAddress, InetAddress] {
  const host = () => v6 ? ipv6Text(ipv6Raw(rng)) : ipv4(rng);
  const port = () => rng.chance(0.1) ? rng.pick([0, 65535]) : rng.int(0, 65535);
  return [{ host: host(), port: port() }, { host: host(), port: port() }];
}

/** A valid SSL TLV value: client, verify, sub-TLVs (known, unknown, empty). */
function sslValue(rng: Rng): Uint8Array {
  const subs: Tlv[] = [];
  for (let n = rng.int(0, 5); n > 0; n--) {
    const type = rng.chance(0.8) ? rng.int(TLV.SSL_VERSION, TLV.SSL_KEY_ALG) : rng.int(0, 255);
    const value = rng.chance(0.15)
      ? new Uint8Array(0)
      : enc.encode(rng.pick(["TLSv1.3", "TLSv1.2", "example.com", "RSA2048", "SHA256"]));
    subs.push({ type, value });
  }
  const head = new Uint8Array(5);
  head[0] = rng.int(0, 7);
  new DataView(head.buffer).setUint32(1, rng.u32());
  return concat(
    head,
    ...subs.map((t) => concat([t.type, t.value.length >> 8, t.value.length & 0xff], t.value)),
  );
}

/** A list of TLVs of every kind but CRC32C (which the builder adds). */
function tlvList(rng: Rng): Tlv[] {
  const out: Tlv[] = [];
  for (let n = rng.chance(0.2) ? 0 : rng.int(1, 8); n > 0; n--) {
    const kind = rng.int(0, 8);
    let t: Tlv;
    if (kind === 0) t = { type: TLV.ALPN, value: enc.encode(rng.pick(["h2", "http/1.1", "h3"])) };
    else if (kind === 1) {
      t = { type: TLV.AUTHORITY, value: enc.encode(`${rng.text(rng.int(1, 40), ALNUM)}.example`) };
    } else if (kind === 2) t = { type: TLV.UNIQUE_ID, value: rng.bytes(rng.int(0, 128)) };
    else if (kind === 3) t = { type: TLV.NOOP, value: new Uint8Array(rng.int(0, 32)) };
    else if (kind === 4) t = { type: TLV.SSL, value: sslValue(rng) };
    else if (kind === 5) {
      t = { type: TLV.NETNS, value: enc.encode(rng.text(rng.int(0, 20), ALNUM)) };
    } else {
      let type = rng.int(0xe0, 0xef); // PP2_TYPE_MIN_CUSTOM..MAX_CUSTOM
      if (rng.chance(0.5)) { // or any other type the module does not know
        do type = rng.int(0, 255); while (KNOWN_TYPES.includes(type));
      }
      t = { type, value: rng.bytes(rng.chance(0.1) ? rng.int(200, 400) : rng.int(0, 40)) };
    }
    // any TLV may be empty but SSL, whose value has 5 fixed bytes
    if (rng.chance(0.1) && t.type !== TLV.SSL) t = { type: t.type, value: new Uint8Array(0) };
    out.push(t);
  }
  return out;
}

/** The length of the v1 line for `s` and `d` with their hosts as given. */
const v1LineLength = (s: InetAddress, d: InetAddress) =>
  `PROXY TCP6 ${s.host} ${d.host} ${s.port} ${d.port}\r\n`.length;

/** IPv6 text in RFC 5952 form. */
const canonical6 = (host: string) => ipv6Text(ipv6Bytes(host));

/**
 * A valid header for either version. With `overlong`, a v1 header may spell
 * its IPv6 addresses out (IPv4 tails, leading zeros) past the spec's 107
 * bytes; without, those are written in RFC 5952 form, which always fits.
 */
function genHeader(rng: Rng, version: 1 | 2, overlong = false): ProxyHeader {
  const base: Omit<ProxyHeader, "tlvs"> = {
    version,
    command: rng.chance(0.85) ? "proxy" : "local",
    transport: rng.pick(["stream", "dgram", "unspec"] as const),
  };
  if (version === 1) {
    const kind = rng.int(0, 4);
    if (kind === 0) return { ...base, tlvs: [] }; // UNKNOWN
    const [s, d] = inetPair(rng, kind >= 3);
    if (kind === 4) {
      s.host = ipv6TextVariant(rng);
      d.host = ipv6TextVariant(rng);
      if (!overlong && v1LineLength(s, d) > V1_MAX) {
        s.host = canonical6(s.host);
        d.host = canonical6(d.host);
      }
    }
    return { ...base, source: s, destination: d, tlvs: rng.chance(0.1) ? tlvList(rng) : [] };
  }
  const tlvs = tlvList(rng);
  // the parser refuses the addresses of a datagram connection (a stream listener's)
  const addressed = { ...base, transport: base.transport === "dgram" ? "stream" : base.transport };
  switch (rng.int(0, 3)) {
    case 0:
      return { ...base, tlvs };
    case 1:
    case 2: {
      const [source, destination] = inetPair(rng, rng.chance(0.5));
      return { ...addressed, source, destination, tlvs };
    }
    default:
      return {
        ...addressed,
        source: { path: unixPath(rng, 108) },
        destination: { path: unixPath(rng, 108) },
        tlvs,
      };
  }
}

/** What parsing the built `h` must give back, on the fields the format carries. */
function expectedOf(h: ProxyHeader, crcTlv: Tlv | undefined): ProxyHeader {
  const addressed = h.command === "proxy" && h.source !== undefined &&
    h.destination !== undefined;
  if (h.version === 1) {
    // v1 has no LOCAL and no TLVs; UNKNOWN comes back as proxy/unspec.
    return addressed
      ? {
        version: 1,
        command: "proxy",
        transport: "stream",
        source: h.source!,
        destination: h.destination!,
        tlvs: [],
      }
      : { version: 1, command: "proxy", transport: "unspec", tlvs: [] };
  }
  const tlvs = crcTlv === undefined ? h.tlvs : [...h.tlvs, crcTlv];
  // No addresses: family UNSPEC, whose transport is always written as UNSPEC.
  return addressed
    ? {
      version: 2,
      command: "proxy",
      transport: h.transport,
      source: h.source!,
      destination: h.destination!,
      tlvs,
    }
    : { version: 2, command: h.command, transport: "unspec", tlvs };
}

/** v1 carries IPv6 addresses as text in any spelling: compare them in RFC 5952 form. */
function canonicalHosts(h: ProxyHeader): ProxyHeader {
  if (h.version !== 1) return h;
  const norm = (a: InetAddress | { path: string }) =>
    "host" in a && a.host.includes(":") ? { ...a, host: canonical6(a.host) } : a;
  const out = { ...h };
  if (h.source !== undefined) out.source = norm(h.source);
  if (h.destination !== undefined) out.destination = norm(h.destination);
  return out;
}

/** A v2 header whose TLVs, CRC32C among them, are taken as they are; the first CRC is sealed. */
function sealedV2(rng: Rng): Uint8Array {
  const tlvs = tlvList(rng);
  const crcs = rng.int(1, 3);
  for (let i = 0; i < crcs; i++) {
    const len = i === 0 ? 4 : rng.pick([0, 1, 2, 3, 4, 5, 8]);
    tlvs.splice(rng.int(0, tlvs.length), 0, { type: TLV.CRC32C, value: new Uint8Array(len) });
  }
  const h = genHeader(rng, 2);
  return seal(buildProxyHeader({ ...h, tlvs }));
}

/** Write the right checksum into the first CRC32C TLV of a v2 header, if it has a 4-byte one. */
function seal(b: Uint8Array): Uint8Array {
  if (b.length < 16) return b;
  const fam = b[13]! >> 4;
  const total = Math.min(b.length, 16 + ((b[14]! << 8) | b[15]!));
  let o = 16 + ([0, 12, 36, 216][fam] ?? 0);
  while (o + 3 <= total) {
    const len = (b[o + 1]! << 8) | b[o + 2]!;
    if (b[o] === TLV.CRC32C) {
      if (len !== 4 || o + 7 > total) return b;
      const copy = b.slice(0, total);
      copy.fill(0, o + 3, o + 7);
      new DataView(b.buffer, b.byteOffset).setUint32(o + 3, crc32cOf(copy));
      return b;
    }
    o += 3 + len;
  }
  return b;
}

/** CRC32C, written here again so that the test does not trust the module's. */
function crc32cOf(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0x82f63b78 ^ (crc >>> 1) : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

const INTERESTING = [0x00, 0x01, 0x0a, 0x0d, 0x20, 0x2e, 0x30, 0x3a, 0x7f, 0x80, 0xff];

/** Flip, set, insert, delete, duplicate, truncate or extend some bytes. */
function mutate(b: Uint8Array, rng: Rng): Uint8Array {
  let out = b;
  for (let n = rng.int(1, 4); n > 0; n--) {
    const at = rng.int(0, out.length);
    switch (rng.int(0, 7)) {
      case 0: // flip a bit
        if (out.length) {
          out = out.slice();
          const i = Math.min(at, out.length - 1);
          out[i] = out[i]! ^ (1 << rng.int(0, 7));
        }
        break;
      case 1: // set a byte
        if (out.length) {
          out = out.slice();
          out[Math.min(at, out.length - 1)] = rng.chance(0.5)
            ? rng.pick(INTERESTING)
            : rng.int(0, 255);
        }
        break;
      case 2: // insert
        out = concat(out.subarray(0, at), rng.bytes(rng.int(1, 8)), out.subarray(at));
        break;
      case 3: // delete
        out = concat(out.subarray(0, at), out.subarray(Math.min(out.length, at + rng.int(1, 8))));
        break;
      case 4: // duplicate a chunk
        out = concat(out.subarray(0, at), out.subarray(at, at + rng.int(1, 16)), out.subarray(at));
        break;
      case 5: // truncate
        out = out.subarray(0, at);
        break;
      case 6: // the v2 length field
        if (out.length >= 16) {
          out = out.slice();
          const len = rng.chance(0.5) ? ((out[14]! << 8) | out[15]!) + rng.int(-8, 8) : rng.u32();
          out[14] = (len >> 8) & 0xff;
          out[15] = len & 0xff;
        }
        break;
      default: // trailing payload
        out = concat(out, rng.bytes(rng.int(1, 64)));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tests

describe("PROXY protocol parser under fuzzing", () => {
  test("random bytes give a result or a ProxyProtocolError, in every mode", () => {
    const rng = Rng.for("random");
    const V1_TOKENS = [
      "TCP4",
      "TCP6",
      "UNKNOWN",
      " ",
      "  ",
      "1.2.3.4",
      "255.255.255.255",
      "256.1.1.1",
      "01.2.3.4",
      "::",
      "::1",
      "2001:db8::1",
      "::ffff:1.2.3.4",
      "1::2::3",
      "0",
      "65535",
      "65536",
      "00",
      "\r\n",
      "\r",
      "\n",
      "\0",
      ":",
      ".",
      "é",
    ];
    for (let i = 0; i < 3000; i++) {
      const len = rng.int(0, 600);
      let head: Uint8Array;
      switch (rng.int(0, 5)) {
        case 0:
          head = new Uint8Array(0);
          break;
        case 1:
          head = new Uint8Array(V1_PREFIX);
          break;
        case 2: { // a v1 line from likely tokens
          let line = "PROXY ";
          for (let n = rng.int(0, 12); n > 0; n--) line += rng.pick(V1_TOKENS);
          if (rng.chance(0.7)) line += "\r\n";
          head = enc.encode(line);
          break;
        }
        case 3:
          head = new Uint8Array(V2_SIG);
          break;
        default: { // a v2 preamble whose length field covers the random rest
          const verCmd = rng.chance(0.8) ? rng.pick([0x20, 0x21]) : rng.int(0, 255);
          const fam = rng.chance(0.8)
            ? rng.pick([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32])
            : rng.int(0, 255);
          const rest = Math.max(0, len - 16) + (rng.chance(0.2) ? rng.int(-4, 4) : 0);
          head = new Uint8Array([...V2_SIG, verCmd, fam, (rest >> 8) & 0xff, rest & 0xff]);
        }
      }
      const tail = rng.chance(0.5)
        ? rng.bytes(Math.max(0, len - head.length))
        : enc.encode(rng.text(Math.max(0, len - head.length), "0123456789abcdef.: \r\n\0"));
      fuzzAllModes(concat(head, tail), rng, "random", i);
    }
  });

  test("mutated valid headers give a result or a ProxyProtocolError, in every mode", () => {
    const rng = Rng.for("mutated");
    for (let i = 0; i < 2500; i++) {
      let valid: Uint8Array;
      const kind = rng.int(0, 3);
      if (kind === 0) valid = buildProxyHeader(genHeader(rng, 1));
      else if (kind === 1) valid = sealedV2(rng);
      else valid = buildProxyHeader(genHeader(rng, 2), { crc32c: rng.chance(0.5) });
      let input = mutate(valid, rng);
      // Most mutations break the checksum; re-seal some to reach what is behind it.
      if (rng.chance(0.3)) input = seal(input.slice());
      fuzzAllModes(input, rng, "mutated", i);
    }
  });

  test("every proper prefix of a header needs more bytes, never more than the rest", () => {
    const rng = Rng.for("prefix");
    for (let i = 0; i < 300; i++) {
      const version = rng.chance(0.4) ? 1 : 2;
      const full = buildProxyHeader(genHeader(rng, version), { crc32c: rng.chance(0.5) });
      for (const mode of ["detect", `v${version}`] as const) {
        const ctx = ctxOf("prefix", i, mode, full);
        for (let n = 0; n < full.length; n++) {
          const r = outcome(full.subarray(0, n), mode, ctx);
          check(
            "result" in r && r.result.kind === "need" && n + r.result.bytes <= full.length,
            ctx,
            `prefix of ${n} bytes gave ${JSON.stringify(r)}`,
          );
        }
      }
    }
  });

  test("a header followed by payload parses to its own length, payload untouched", () => {
    const rng = Rng.for("payload");
    for (let i = 0; i < 1000; i++) {
      const version = rng.chance(0.4) ? 1 : 2;
      const full = buildProxyHeader(genHeader(rng, version), { crc32c: rng.chance(0.5) });
      // Payload that is random, or that is itself another header.
      const payload = rng.chance(0.3)
        ? buildProxyHeader(genHeader(rng, rng.chance(0.5) ? 1 : 2))
        : rng.bytes(rng.int(0, 600));
      const input = concat(full, payload);
      const before = input.slice();
      for (const mode of ["detect", `v${version}`] as const) {
        const ctx = ctxOf("payload", i, mode, input);
        const alone = outcome(full, mode, ctx);
        const withPayload = fuzzOne(input, mode, rng, ctx);
        check(
          "result" in withPayload && withPayload.result.kind === "header" &&
            withPayload.result.length === full.length,
          ctx,
          `header of ${full.length} bytes gave ${JSON.stringify(withPayload)}`,
        );
        sameValue(withPayload, alone, ctx, "the header alone and with payload differ");
      }
      sameValue(input, before, ctxOf("payload", i, "detect", input), "the input was modified");
    }
  });
});

/**
 * Build `h`, parse it back and compare, on the fields the format carries;
 * rebuild what was parsed and get the same bytes.
 */
function roundTrip(h: ProxyHeader, withCrc: boolean, i: number): void {
  const label = `round-trip${withCrc ? " with CRC32C" : ""} of ${
    JSON.stringify(h, (_, v) => v instanceof Uint8Array ? hex(v) : v)
  }`;
  const fail = (what: string) => assert.fail(`seed=0x${SEED.toString(16)} case ${i}: ${what}`);
  const addressed = h.command === "proxy" && h.source !== undefined && "host" in h.source &&
    h.destination !== undefined && "host" in h.destination;
  const overlong = h.version === 1 && addressed &&
    v1LineLength(h.source as InetAddress, h.destination as InetAddress) > V1_MAX;
  let bytes: Uint8Array;
  try {
    bytes = buildProxyHeader(h, { crc32c: withCrc });
  } catch (e) {
    // Refusing what v1 cannot carry in 107 bytes is right; anything else is not.
    if (overlong && e instanceof RangeError) return;
    return fail(`the builder refused ${label}: ${e}`);
  }
  const ctx = ctxOf("round-trip", i, "detect", bytes);
  check(
    h.version === 2 || bytes.length <= V1_MAX,
    ctx,
    `the builder wrote a v1 header of ${bytes.length} bytes, past the spec's ${V1_MAX}, ` +
      `for ${label}`,
  );
  const o = outcome(bytes, "detect", ctx);
  if (!("result" in o) || o.result.kind !== "header") {
    return fail(`${ctx()}\n${label} parsed as ${JSON.stringify(o)}`);
  }
  const { header, length } = o.result;
  check(length === bytes.length, ctx, `length ${length} of ${bytes.length}`);
  const crcTlv = withCrc && h.version === 2 ? header.tlvs.at(-1) : undefined;
  if (crcTlv !== undefined) {
    check(crcTlv.type === TLV.CRC32C && crcTlv.value.length === 4, ctx, "no trailing CRC32C");
    const zeroed = bytes.slice();
    zeroed.fill(0, bytes.length - 4);
    const sent = new DataView(crcTlv.value.buffer, crcTlv.value.byteOffset).getUint32(0);
    check(crc32cOf(zeroed) === sent, ctx, "the CRC32C value is not the header's checksum");
  }
  // The builder replaces CRC32C TLVs with its own when asked for one.
  const input = withCrc ? { ...h, tlvs: h.tlvs.filter((t) => t.type !== TLV.CRC32C) } : h;
  sameValue(
    canonicalHosts(header),
    canonicalHosts(expectedOf(input, crcTlv)),
    ctx,
    label,
  );
  // What was parsed builds the same bytes again (a CRC32C TLV is kept as it is).
  sameValue(buildProxyHeader(header), bytes, ctx, "rebuilding the parsed header");
}

describe("PROXY protocol round-trip", () => {
  test("v2 headers parse back to what was built, with and without CRC32C", () => {
    const rng = Rng.for("roundtrip v2");
    const latin1 = new TextDecoder("latin1"), utf8 = new TextDecoder();
    for (let i = 0; i < 2500; i++) {
      const h = genHeader(rng, 2);
      roundTrip(h, rng.chance(0.5), i);
      // The known TLVs decode to what was sent (the last of a type wins).
      const ctx = () => `seed=0x${SEED.toString(16)} case ${i}: decodeTlvs`;
      if (h.tlvs.some((t) => t.type === TLV.SSL && t.value.length < 5)) {
        assert.throws(() => decodeTlvs(h.tlvs), { code: "V2_BAD_TLV" }, ctx());
        continue;
      }
      const d = decodeTlvs(h.tlvs);
      const last = (type: number) => h.tlvs.findLast((t) => t.type === type)?.value;
      const text = (type: number, dec: TextDecoder) => {
        const v = last(type);
        return v === undefined ? undefined : dec.decode(v);
      };
      sameValue(d.alpn, text(TLV.ALPN, latin1), ctx, "ALPN");
      sameValue(d.authority, text(TLV.AUTHORITY, utf8), ctx, "AUTHORITY");
      sameValue(d.netns, text(TLV.NETNS, latin1), ctx, "NETNS");
      sameValue(d.uniqueId, last(TLV.UNIQUE_ID), ctx, "UNIQUE_ID");
      const ssl = last(TLV.SSL);
      if (ssl !== undefined) {
        const dv = new DataView(ssl.buffer, ssl.byteOffset, ssl.length);
        sameValue([d.ssl?.client, d.ssl?.verify], [ssl[0], dv.getUint32(1)], ctx, "SSL");
      }
    }
  });

  test("v1 headers parse back to what was built, and are never longer than 107 bytes", () => {
    const rng = Rng.for("roundtrip v1");
    for (let i = 0; i < 2500; i++) roundTrip(genHeader(rng, 1, true), false, i);
  });
});

describe("decodeTlvs under fuzzing", () => {
  test("the TLVs of any parsed header decode, also as views into larger buffers", () => {
    const rng = Rng.for("decode");
    for (let i = 0; i < 2500; i++) {
      let input = sealedV2(rng);
      if (rng.chance(0.5)) input = seal(mutate(input, rng).slice());
      const ctx = ctxOf("decode", i, "v2", input);
      const o = outcome(input, "v2", ctx);
      if (!("result" in o) || o.result.kind !== "header") continue;
      const tlvs = o.result.header.tlvs;
      const decoded = (list: Tlv[]) => {
        try {
          return { decoded: decodeTlvs(list) };
        } catch (e) {
          if (!(e instanceof ProxyProtocolError)) {
            assert.fail(`${ctx()}\ndecodeTlvs threw something else than ProxyProtocolError: ${e}`);
          }
          return { error: e.code };
        }
      };
      const own = decoded(tlvs);
      // Each value as a view into a larger buffer: nothing past its end is read.
      const views = tlvs.map((t) => ({
        type: t.type,
        value: poisoned(t.value, rng.pick(["crlf", "zero", "random"] as const), rng),
      }));
      sameValue(decoded(views), own, ctx, "decodeTlvs of the values as views");
    }
  });
});
