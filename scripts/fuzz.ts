/**
 * The whole-surface fuzzer. It starts each listener kind as a child process
 * through the relaykit command (`forward --accept-proxy detect`, `echo`,
 * `route` with each route script in examples/ and with a route module that
 * returns hostile values, `socks` and `http-connect` with users, `tunnel
 * server` with a secret, `tunnel client --socks --http-connect` with users,
 * `run` with a hooks listener and the metrics endpoint) on each engine and runtime, and sends it mutated input: PROXY
 * headers, SOCKS and CONNECT handshakes, tunnel frames (before and after
 * the handshake), HTTP requests, each from a seed corpus with bit flips,
 * truncations, length fields set to 0, the maximum or one past the bytes
 * there are, bytes split into 1-byte writes, and random bytes.
 *
 * After each batch it checks the process: alive, a canary connection
 * through each of its listeners works end to end, its open fds are back to
 * the baseline, its RSS is bounded. Every connection the fuzzer opens must
 * be closed by the process within the listener's timeout. A destination
 * that an access rule denies (a sentinel listener) must never be reached.
 *
 * Every input comes from a seeded generator: a failure prints the seed,
 * the case, its input class and its bytes, and the command that replays it.
 *
 *   deno run -A scripts/fuzz.ts                 20,000 inputs over every target
 *   deno run -A scripts/fuzz.ts --long          1,000,000 inputs
 *   deno run -A scripts/fuzz.ts --kinds socks,tunnel --engines native
 *     --runtimes bun --seed 7 --count 5000
 *   deno run -A scripts/fuzz.ts --seed 7 --kinds socks --engines native
 *     --runtimes bun --case socks:123      replay one case
 *
 * Flags: --count N, --long, --seed S, --kinds K,... (forward, echo, route,
 * route:NAME, route-fuzz, socks, http-connect, tunnel, tunnel-entry, run), --engines
 * native,stream, --runtimes deno,bun, --batch N (cases per batch, 64),
 * --concurrency N (connections at once, 16), --parallel N (processes at
 * once, 2), --case SURFACE:INDEX[:hold], --no-hold, --no-shrink,
 * --rss-mb N (RSS growth allowed, 768), --json FILE, --verbose.
 * Exit code 0 when nothing failed, 1 otherwise.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { NetConn, NetHandlers } from "../src/runtime/types.ts";
import { crc32c } from "../src/protocol/proxy_protocol.ts";
import { encodeFrame, NONCE_SIZE, TUNNEL_VERSIONS, type TunnelFrame } from "../src/tunnel/frame.ts";
import { Link } from "../src/tunnel/link.ts";
import { TunnelClient } from "../src/tunnel/client.ts";
import { TunnelServer } from "../src/tunnel/server.ts";
import { CHOICES as ROUTE_CHOICES } from "../test/fixtures/fuzz_route.ts";
import { CHOICES as HOOK_CHOICES } from "../test/fixtures/fuzz_hooks.ts";
import { freePort } from "./free_port.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join(ROOT, "src", "cli.ts");
const FIXTURES = join(ROOT, "test", "fixtures");
const EXAMPLES = join(ROOT, "examples");
const enc = new TextEncoder();

/** An engine of the relaykit command. */
export type Engine = "native" | "stream";
/** A runtime the relaykit command runs on. */
export type RuntimeName = "deno" | "bun";

/** What to fuzz, how much, and from which seed. */
export interface FuzzOptions {
  /** Base seed: the same seed gives the same inputs. */
  seed: number;
  /** Inputs in all, spread over the targets. */
  count: number;
  /** Kinds to run (prefixes: "route" is every route:NAME); all when empty. */
  kinds: string[];
  engines: Engine[];
  runtimes: RuntimeName[];
  /** Cases per batch (the process is checked after each). @default 64 */
  batch?: number;
  /** Connections open at once per target. @default 16 */
  concurrency?: number;
  /** Target processes at once. @default 2 */
  parallel?: number;
  /** Also send inputs that stop short and stay open (timeouts). @default true */
  hold?: boolean;
  /** After a crash, replay the batch one case at a time to find the one. @default true */
  shrink?: boolean;
  /** RSS growth over the baseline that counts as a failure, in MiB. @default 768 */
  rssMiB?: number;
  /** Replay one case: "SURFACE:INDEX" or "SURFACE:INDEX:hold". */
  replay?: string;
  /** Progress and failures, one line each. */
  log?: (line: string) => void;
  verbose?: boolean;
}

/** One thing that went wrong. */
export interface Failure {
  /** "died", "hang", "canary", "fd", "rss", "bypass", "start". */
  type: string;
  /** kind/engine/runtime, e.g. "socks/native/bun". */
  target: string;
  surface: string;
  detail: string;
  /** The case that did it, when known. */
  input?: { index: number; hold: boolean; cls: string; hex: string; length: number } | undefined;
  /** The command that replays it. */
  reproduce: string;
}

/** What a run did. */
export interface FuzzReport {
  seed: number;
  inputs: number;
  targets: number;
  ms: number;
  failures: Failure[];
  perTarget: { target: string; inputs: number; restarts: number; ms: number }[];
}

// ---------------------------------------------------------------- random

/** sfc32, seeded from any number of 32-bit values. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  constructor(...seeds: number[]) {
    const mix = (x: number) => {
      x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
      x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
      return (x ^ (x >>> 16)) >>> 0;
    };
    let s = 0x2545f491;
    for (const v of seeds) s = mix(s ^ mix((v >>> 0) + 0x9e3779b9));
    this.#a = mix(s ^ 1);
    this.#b = mix(s ^ 2);
    this.#c = mix(s ^ 3);
    this.#d = mix(s ^ 4) || 1;
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.u32() / 0x100000000) * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(0, list.length - 1)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (v >>> (8 * j)) & 0xff;
    }
    return out;
  }
}

/** FNV-1a of a string. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (const c of enc.encode(s)) h = Math.imul(h ^ c, 0x01000193);
  return h >>> 0;
}

// ---------------------------------------------------------------- inputs

/** A length field inside a seed: big-endian, `size` bytes at `off`. */
interface Field {
  off: number;
  size: 1 | 2 | 4;
}

/** A valid (or deliberately broken) input, with its length fields. */
interface Seed {
  name: string;
  bytes: Uint8Array;
  fields: Field[];
}

/** One input: its class (for the report), bytes, and how they are written. */
interface Case {
  cls: string;
  bytes: Uint8Array;
  /** whole: one write; chunks: random pieces; bytes: the first bytes one at a time. */
  split: "whole" | "chunks" | "bytes";
  /** Half-close after the bytes (false: stay open, the process must time it out). */
  end: boolean;
}

function cat(...parts: (ArrayLike<number> | string)[]): Uint8Array {
  const arrays = parts.map((p) => typeof p === "string" ? enc.encode(p) : Uint8Array.from(p));
  const out = new Uint8Array(arrays.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const a of arrays) {
    out.set(a, o);
    o += a.length;
  }
  return out;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** A seed built piece by piece, recording where length fields sit. */
class SeedBuilder {
  #parts: number[] = [];
  #fields: Field[] = [];
  get length(): number {
    return this.#parts.length;
  }
  add(...parts: (ArrayLike<number> | string)[]): this {
    for (const p of cat(...parts)) this.#parts.push(p);
    return this;
  }
  /** A length field of `size` bytes holding `value`. */
  len(value: number, size: 1 | 2 | 4): this {
    this.#fields.push({ off: this.#parts.length, size });
    for (let i = size - 1; i >= 0; i--) this.#parts.push((value >>> (8 * i)) & 0xff);
    return this;
  }
  /** Bytes with an 8-bit length in front. */
  str8(s: ArrayLike<number> | string): this {
    const b = cat(s);
    return this.len(b.length, 1).add(b);
  }
  /** Another seed's bytes, with its length fields. */
  addSeed(seed: Seed): this {
    const base = this.#parts.length;
    for (const f of seed.fields) this.#fields.push({ off: base + f.off, size: f.size });
    return this.add(seed.bytes);
  }
  build(name: string): Seed {
    return { name, bytes: Uint8Array.from(this.#parts), fields: [...this.#fields] };
  }
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x0d, 0x3a, 0x00];

/** One mutation of a seed: its class and bytes. */
function mutate(rng: Rng, seed: Seed): { cls: string; bytes: Uint8Array } {
  let b: Uint8Array = seed.bytes.slice();
  const ops: string[] = [];
  const n = rng.int(1, 3);
  // length fields first, while their offsets still hold
  const fields = seed.fields.filter((f) => f.off + f.size <= b.length);
  if (fields.length > 0 && rng.chance(0.45)) {
    const f = rng.pick(fields);
    let v = 0;
    for (let i = 0; i < f.size; i++) v = v * 256 + b[f.off + i]!;
    const max = 2 ** (8 * f.size) - 1;
    const which = rng.pick(["0", "max", "over", "under", "double", "random", "half-max"]);
    const nv = {
      "0": 0,
      "max": max,
      "over": Math.min(max, v + rng.int(1, 16)),
      "under": Math.max(0, v - rng.int(1, 4)),
      "double": Math.min(max, v * 2),
      "random": rng.int(0, max),
      "half-max": Math.floor(max / 2) + 1,
    }[which]!;
    for (let i = f.size - 1, x = nv; i >= 0; i--, x = Math.floor(x / 256)) b[f.off + i] = x & 0xff;
    ops.push(`len-${which}`);
  }
  for (let i = ops.length; i < n; i++) {
    const op = rng.pick([
      "flip",
      "flip",
      "byte",
      "truncate",
      "insert",
      "delete",
      "dup",
      "append",
      "swap",
    ]);
    ops.push(op);
    const at = () => rng.int(0, Math.max(0, b.length - 1));
    switch (op) {
      case "flip":
        if (b.length > 0) {
          for (let k = rng.int(1, 4); k > 0; k--) b[at()]! ^= 1 << rng.int(0, 7);
        }
        break;
      case "byte":
        if (b.length > 0) b[at()] = rng.chance(0.7) ? rng.pick(INTERESTING) : rng.int(0, 255);
        break;
      case "truncate":
        b = b.slice(0, rng.int(0, Math.max(0, b.length - 1)));
        break;
      case "insert": {
        const p = rng.int(0, b.length);
        b = cat(b.subarray(0, p), rng.bytes(rng.int(1, 64)), b.subarray(p));
        break;
      }
      case "delete": {
        const p = at();
        b = cat(b.subarray(0, p), b.subarray(Math.min(b.length, p + rng.int(1, 16))));
        break;
      }
      case "dup": {
        const p = at(), q = Math.min(b.length, p + rng.int(1, 64));
        const piece = b.slice(p, q);
        const times = rng.int(1, rng.chance(0.1) ? 512 : 8);
        b = cat(b.subarray(0, q), ...Array(times).fill(piece), b.subarray(q));
        break;
      }
      case "append":
        b = cat(b, rng.bytes(rng.chance(0.05) ? rng.int(16_384, 70_000) : rng.int(1, 1024)));
        break;
      case "swap":
        if (b.length > 1) {
          const p = at(), q = at();
          [b[p], b[q]] = [b[q]!, b[p]!];
        }
        break;
    }
  }
  return { cls: `${seed.name}/${ops.join("+")}`, bytes: b };
}

/** Random bytes: mostly short, sometimes past every buffer limit. */
function randomBytes(rng: Rng): Uint8Array {
  const n = rng.chance(0.03) ? rng.int(65_536, 140_000) : rng.int(0, 2048);
  return rng.bytes(n);
}

/**
 * A case from a corpus: a valid seed (10%), a mutated seed (72%), a seed's
 * prefix then random bytes (8%), random bytes (10%).
 */
function fromCorpus(rng: Rng, seeds: readonly Seed[]): { cls: string; bytes: Uint8Array } {
  const r = rng.u32() / 0x100000000;
  const seed = rng.pick(seeds);
  if (r < 0.1) return { cls: `${seed.name}/valid`, bytes: seed.bytes.slice() };
  if (r < 0.82) return mutate(rng, seed);
  if (r < 0.9) {
    const p = rng.int(1, Math.max(1, seed.bytes.length - 1));
    return {
      cls: `${seed.name}/prefix+random`,
      bytes: cat(seed.bytes.subarray(0, p), rng.bytes(rng.int(1, 512))),
    };
  }
  return { cls: "random", bytes: randomBytes(rng) };
}

function writeMode(rng: Rng): Case["split"] {
  return rng.pick(["whole", "whole", "whole", "chunks", "bytes"] as const);
}

/** A valid seed cut short, left open: the process must time it out. */
function holdCase(rng: Rng, seeds: readonly Seed[]): Case {
  const seed = rng.pick(seeds);
  const cut = rng.int(0, Math.max(0, seed.bytes.length - 1));
  return {
    cls: `${seed.name}/cut-at-${cut}/held`,
    bytes: seed.bytes.slice(0, cut),
    split: writeMode(rng),
    end: false,
  };
}

// -------------------------------------------------------- seed corpora

const V2_SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

interface TlvSpec {
  type: number;
  value: ArrayLike<number> | string;
  /** SSL sub-TLVs, after the value (client u8, verify u32). */
  sub?: { type: number; value: ArrayLike<number> | string }[];
}

function v2Seed(
  name: string,
  verCmd: number,
  famProto: number,
  addr: ArrayLike<number>,
  tlvs: TlvSpec[],
  tail: string = "hello\n",
): Seed {
  const body = new SeedBuilder().add(addr);
  let crcAt = -1;
  for (const t of tlvs) {
    const value = new SeedBuilder().add(t.value);
    for (const sub of t.sub ?? []) {
      const v = cat(sub.value);
      value.add([sub.type]).len(v.length, 2).add(v);
    }
    const vs = value.build("");
    body.add([t.type]).len(vs.bytes.length, 2);
    if (t.type === 0x03) crcAt = body.length;
    body.addSeed(vs);
  }
  const b = body.build("");
  const out = new SeedBuilder().add(V2_SIG, [verCmd, famProto]).len(b.bytes.length, 2).addSeed(b)
    .add(tail).build(name);
  if (crcAt >= 0) {
    // CRC32c of the whole header, computed with its own field zero
    const crc = crc32c(out.bytes.subarray(0, 16 + b.bytes.length));
    new DataView(out.bytes.buffer).setUint32(16 + crcAt, crc);
  }
  return out;
}

const TCP4_ADDR = [192, 0, 2, 1, 127, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb];
const TCP6_ADDR = [
  ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
  ...[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
  0xdc,
  0x04,
  0x01,
  0xbb,
];

/** PROXY v1 and v2 headers, valid and spec-breaking, with data behind them. */
function proxySeeds(): Seed[] {
  const v1 = (name: string, line: string) => new SeedBuilder().add(line).build(name);
  const unixAddr = cat(
    "/tmp/src.sock",
    new Uint8Array(108 - 13),
    "/tmp/dst.sock",
    new Uint8Array(108 - 13),
  );
  const ssl = (sub: NonNullable<TlvSpec["sub"]>): TlvSpec => ({
    type: 0x20,
    value: [0x07, 0, 0, 0, 0],
    sub,
  });
  return [
    v1("v1-tcp4", "PROXY TCP4 192.0.2.1 127.0.0.1 56324 443\r\nhello\n"),
    v1("v1-tcp6", "PROXY TCP6 2001:db8::1 ::1 56324 443\r\nhello\n"),
    v1("v1-unknown", "PROXY UNKNOWN\r\nhello\n"),
    v1(
      "v1-unknown-longest",
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    ),
    v1("v1-port-65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n"),
    v1("v1-leading-zeros", "PROXY TCP4 001.2.3.4 5.6.7.8 0080 1\r\n"),
    v1("v1-http", "GET / HTTP/1.0\r\n\r\n"),
    v2Seed("v2-tcp4", 0x21, 0x11, TCP4_ADDR, []),
    v2Seed("v2-tcp6", 0x21, 0x21, TCP6_ADDR, []),
    v2Seed("v2-local", 0x20, 0x00, [], []),
    v2Seed("v2-local-trailing", 0x20, 0x00, [1, 2, 3], []),
    v2Seed("v2-unix", 0x21, 0x31, unixAddr, []),
    v2Seed("v2-udp4", 0x21, 0x12, TCP4_ADDR, []),
    v2Seed("v2-unspec-proxy", 0x21, 0x00, [], []),
    v2Seed("v2-tlvs", 0x21, 0x11, TCP4_ADDR, [
      { type: 0x01, value: "h2" },
      { type: 0x02, value: "example.com" },
      { type: 0x03, value: [0, 0, 0, 0] },
      { type: 0x04, value: [0, 0, 0] },
      { type: 0x05, value: new Uint8Array(16).fill(0x41) },
      ssl([
        { type: 0x21, value: "TLSv1.3" },
        { type: 0x22, value: "client" },
        { type: 0x23, value: "TLS_AES_128_GCM_SHA256" },
        { type: 0x24, value: "SHA256" },
        { type: 0x25, value: "RSA2048" },
      ]),
      { type: 0x30, value: "ns1" },
      { type: 0xe0, value: [1, 2, 3] },
    ]),
    v2Seed("v2-unique-id-129", 0x21, 0x11, TCP4_ADDR, [{ type: 0x05, value: new Uint8Array(129) }]),
    v2Seed("v2-ssl-short", 0x21, 0x11, TCP4_ADDR, [{ type: 0x20, value: [1, 0, 0] }]),
    v2Seed("v2-ssl-sub-overflow", 0x21, 0x11, TCP4_ADDR, [
      { type: 0x20, value: [0x07, 0, 0, 0, 0, 0x22, 0x00, 0xc8, 0x61, 0x62] },
    ]),
    v2Seed("v2-ssl-cn-not-utf8", 0x21, 0x11, TCP4_ADDR, [
      ssl([{ type: 0x22, value: [0xff, 0xfe] }]),
    ]),
    v2Seed("v2-authority-300", 0x21, 0x11, TCP4_ADDR, [{ type: 0x02, value: "a".repeat(300) }]),
    v2Seed("v2-authority-not-utf8", 0x21, 0x11, TCP4_ADDR, [{ type: 0x02, value: [0xc3, 0x28] }]),
    v2Seed("v2-alpn-empty", 0x21, 0x11, TCP4_ADDR, [{ type: 0x01, value: [] }]),
    v2Seed("v2-crc-wrong", 0x21, 0x11, TCP4_ADDR, [{ type: 0x03, value: [1, 2, 3] }]),
    v2Seed("v2-tlv-cut", 0x21, 0x11, cat(TCP4_ADDR, [0x01, 0x00]), []),
    v2Seed("v2-netns-not-utf8", 0x21, 0x11, TCP4_ADDR, [{ type: 0x30, value: [0xff] }]),
  ];
}

const SOCKS_USER = "alice";
const SOCKS_PASS = "s3cret";

function socks5(
  name: string,
  user: string,
  pass: string,
  atyp: number,
  addr: ArrayLike<number> | string,
  port: number,
  opts: { cmd?: number; methods?: number[] } = {},
): Seed {
  const s = new SeedBuilder().add([5]);
  const methods = opts.methods ?? [2];
  s.len(methods.length, 1).add(methods);
  s.add([1]).str8(user).str8(pass);
  s.add([5, opts.cmd ?? 1, 0, atyp]);
  if (atyp === 3) s.str8(addr);
  else s.add(typeof addr === "string" ? enc.encode(addr) : addr);
  s.add([port >> 8, port & 0xff]);
  return s.build(name);
}

function socks4(name: string, ip: number[], port: number, user: string, host?: string): Seed {
  const s = new SeedBuilder().add([4, 1, port >> 8, port & 0xff], ip, user, [0]);
  if (host !== undefined) s.add(host, [0]);
  return s.build(name);
}

const V6 = {
  any: new Uint8Array(16),
  loop: cat(new Uint8Array(15), [1]),
  mappedAny: cat(new Uint8Array(10), [0xff, 0xff, 0, 0, 0, 0]),
  mappedLoop: cat(new Uint8Array(10), [0xff, 0xff, 127, 0, 0, 1]),
  compatLoop: cat(new Uint8Array(12), [127, 0, 0, 1]),
};

/** SOCKS 4, 4a and 5 handshakes, valid and odd, to the echo port. */
function socksSeeds(a: number): Seed[] {
  const U = SOCKS_USER, P = SOCKS_PASS;
  return [
    socks5("socks5-ipv4", U, P, 1, [127, 0, 0, 1], a),
    socks5("socks5-ipv6", U, P, 4, V6.loop, a),
    socks5("socks5-name", U, P, 3, "localhost", a),
    socks5("socks5-wrong-password", U, "nope", 1, [127, 0, 0, 1], a),
    socks5("socks5-user-constructor", "constructor", "x", 1, [127, 0, 0, 1], a),
    socks5("socks5-user-proto", "__proto__", "x", 1, [127, 0, 0, 1], a),
    socks5("socks5-user-control", "ev\nil\x1b[31m", "x", 1, [127, 0, 0, 1], a),
    socks5("socks5-name-control", U, P, 3, "a\r\nrelaykit: forged\x1b[2J", a),
    socks5("socks5-bind", U, P, 1, [127, 0, 0, 1], a, { cmd: 2 }),
    socks5("socks5-udp", U, P, 1, [127, 0, 0, 1], a, { cmd: 3 }),
    socks5("socks5-atyp-9", U, P, 9, [127, 0, 0, 1], a),
    socks5("socks5-no-auth-method", U, P, 1, [127, 0, 0, 1], a, { methods: [0] }),
    socks5("socks5-many-methods", U, P, 1, [127, 0, 0, 1], a, {
      methods: Array.from({ length: 255 }, (_, i) => i),
    }),
    new SeedBuilder().add([5]).len(2, 1).add([0, 2]).build("socks5-greeting-only"),
    socks4("socks4", [127, 0, 0, 1], a, "user"),
    socks4("socks4a", [0, 0, 0, 1], a, "user", "localhost"),
  ];
}

/** Every spelling of "this host" at the sentinel port; none may get through. */
function socksProbes(s: number): Seed[] {
  const U = SOCKS_USER, P = SOCKS_PASS;
  const v4 = (n: string, ip: number[]) => socks5(`probe-socks5-${n}`, U, P, 1, ip, s);
  const v6 = (n: string, ip: Uint8Array) => socks5(`probe-socks5-${n}`, U, P, 4, ip, s);
  const name = (n: string) => socks5(`probe-socks5-name-${n}`, U, P, 3, n, s);
  return [
    v4("127.0.0.1", [127, 0, 0, 1]),
    v4("127.1.2.3", [127, 1, 2, 3]),
    v4("0.0.0.0", [0, 0, 0, 0]),
    v4("0.1.2.3", [0, 1, 2, 3]),
    v6("::", V6.any),
    v6("::1", V6.loop),
    v6("::ffff:0.0.0.0", V6.mappedAny),
    v6("::ffff:127.0.0.1", V6.mappedLoop),
    v6("::127.0.0.1", V6.compatLoop),
    ...["0", "0.0.0.0", "::", "localhost", "LOCALHOST", "localhost.", "127.1", "2130706433"]
      .map(name),
    ...["0x7f000001", "::ffff:127.0.0.1", "::1", "[::1]", "0000::1", "::ffff:0:0"].map(name),
  ];
}

const basic = (cred: string) => `Proxy-Authorization: Basic ${btoa(cred)}\r\n`;

function connectSeed(
  name: string,
  target: string,
  extra = basic(`${SOCKS_USER}:${SOCKS_PASS}`),
): Seed {
  return new SeedBuilder().add(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${extra}\r\n`)
    .build(name);
}

/** HTTP CONNECT requests, valid and odd, to the echo port. */
function connectSeeds(a: number): Seed[] {
  return [
    connectSeed("connect-ipv4", `127.0.0.1:${a}`),
    connectSeed("connect-ipv6", `[::1]:${a}`),
    connectSeed("connect-name", `localhost:${a}`),
    connectSeed("connect-no-auth", `127.0.0.1:${a}`, ""),
    connectSeed("connect-basic-bang", `127.0.0.1:${a}`, "Proxy-Authorization: Basic !!!\r\n"),
    connectSeed("connect-basic-no-colon", `127.0.0.1:${a}`, basic("alice")),
    connectSeed("connect-basic-constructor", `127.0.0.1:${a}`, basic("constructor:x")),
    connectSeed("connect-bearer", `127.0.0.1:${a}`, "Proxy-Authorization: Bearer x\r\n"),
    connectSeed("connect-port-0", "127.0.0.1:0"),
    connectSeed("connect-port-99999", "127.0.0.1:99999"),
    connectSeed("connect-control", `a\x1b[31m\n:${a}`),
    new SeedBuilder().add("GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n").build("connect-get"),
    new SeedBuilder().add(`CONNECT 127.0.0.1:${a} HTTP/1.1\r\n`, "X: y\r\n".repeat(3000), "\r\n")
      .build("connect-huge-head"),
  ];
}

function connectProbes(s: number): Seed[] {
  return [
    "127.0.0.1",
    "0.0.0.0",
    "[::]",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:0.0.0.0]",
    "[::127.0.0.1]",
    "0",
    "127.1",
    "localhost",
    "2130706433",
    "0x7f000001",
  ].map((h) => connectSeed(`probe-connect-${h}`, `${h}:${s}`));
}

/** Frames as one seed, with each frame's stream id and length as fields. */
function frameSeed(name: string, frames: TunnelFrame[]): Seed | undefined {
  const s = new SeedBuilder();
  try {
    for (const f of frames) {
      const fields: Field[] = [{ off: 2, size: 4 }, { off: 6, size: 4 }];
      s.addSeed({ name: "", bytes: encodeFrame(f), fields });
    }
  } catch {
    return undefined; // a frame this protocol version does not have
  }
  return s.build(name);
}

const nonce = () => new Uint8Array(NONCE_SIZE).fill(7);
const hello = (versions: number[] = [...TUNNEL_VERSIONS]): TunnelFrame => ({
  type: "hello",
  versions,
  nonce: nonce(),
});

/** Frames a stranger sends before (or instead of) a handshake. */
function tunnelHandshakeSeeds(): Seed[] {
  const list: (Seed | undefined)[] = [
    frameSeed("tunnel-hello", [hello()]),
    frameSeed("tunnel-hello-auth", [hello(), { type: "auth", proof: new Uint8Array(32).fill(1) }]),
    frameSeed("tunnel-hello-many-versions", [hello([1, 2, 3, 99, 0xffff])]),
    frameSeed("tunnel-hello-unknown-version", [hello([0xfffe])]),
    frameSeed("tunnel-hello-twice", [hello(), hello()]),
    frameSeed("tunnel-ping-first", [{ type: "ping", data: new Uint8Array(8) }, hello()]),
    frameSeed("tunnel-ready-first", [{ type: "ready", proof: new Uint8Array(32) }]),
    frameSeed("tunnel-open-first", [{
      type: "open",
      stream: 1,
      destination: { host: "127.0.0.1", port: 1 },
    }]),
    frameSeed("tunnel-goaway", [{ type: "goaway", code: "X", message: "bye" }]),
    frameSeed("tunnel-data-first", [{ type: "data", stream: 1, data: enc.encode("hi") }]),
  ];
  list.push(new SeedBuilder().add("RKTN", [1, 0, 1]).build("tunnel-raw-magic"));
  return list.filter((s): s is Seed => s !== undefined);
}

/** Stream frames after a completed handshake. */
function tunnelStreamSeeds(a: number): Seed[] {
  const open = (stream: number, destination: { host: string; port: number } | { route: string }) =>
    ({ type: "open", stream, destination }) as TunnelFrame;
  const data = (stream: number, n = 6) =>
    ({
      type: "data",
      stream,
      data: enc.encode("hello\n".repeat(Math.ceil(n / 6)).slice(0, n)),
    }) as TunnelFrame;
  const fin = (stream: number) => ({ type: "fin", stream }) as TunnelFrame;
  const echo = { host: "127.0.0.1", port: a };
  const list: (Seed | undefined)[] = [
    frameSeed("stream-open-data-fin", [open(1, echo), data(1), fin(1)]),
    frameSeed("stream-open-v6", [open(1, { host: "::1", port: a }), data(1), fin(1)]),
    frameSeed("stream-open-name", [open(1, { host: "localhost", port: a }), data(1), fin(1)]),
    frameSeed("stream-route-web", [open(1, { route: "web" }), data(1), fin(1)]),
    frameSeed("stream-route-constructor", [open(1, { route: "constructor" }), data(1)]),
    frameSeed("stream-route-proto", [open(1, { route: "__proto__" }), data(1)]),
    frameSeed("stream-route-toString", [open(1, { route: "toString" }), data(1)]),
    frameSeed("stream-open-twice", [open(1, echo), open(1, echo)]),
    frameSeed("stream-ids-down", [open(3, echo), open(2, echo)]),
    frameSeed("stream-data-unknown", [data(5)]),
    frameSeed("stream-window-overflow", [
      open(1, echo),
      { type: "window", stream: 1, credit: 0x7fffffff },
      { type: "window", stream: 1, credit: 0x7fffffff },
    ]),
    frameSeed("stream-over-credit", [open(1, echo), ...Array(20).fill(data(1, 16_384))]),
    frameSeed("stream-rst", [open(1, echo), {
      type: "rst",
      stream: 1,
      code: "X",
      message: "reset",
    }, data(1)]),
    frameSeed("stream-fin-twice", [open(1, echo), fin(1), fin(1), data(1)]),
    frameSeed("stream-hello-again", [hello()]),
    frameSeed("stream-ping", [{ type: "ping", data: new Uint8Array(8) }]),
    frameSeed("stream-goaway", [{ type: "goaway", code: "RK_X", message: "bye" }]),
    frameSeed("stream-many-opens", Array.from({ length: 64 }, (_, i) => open(i + 1, echo))),
  ];
  return list.filter((s): s is Seed => s !== undefined);
}

function tunnelProbes(s: number): Seed[] {
  return [
    "127.0.0.1",
    "0.0.0.0",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:0.0.0.0",
    "0",
    "localhost",
    "127.1",
  ]
    .map((host) =>
      frameSeed(`probe-tunnel-${host}`, [
        { type: "open", stream: 1, destination: { host, port: s } },
      ])
    ).filter((x): x is Seed => x !== undefined);
}

/** HTTP requests for the metrics endpoint and the HTTP route examples. */
function httpSeeds(host = "x"): Seed[] {
  const req = (name: string, text: string) => new SeedBuilder().add(text).build(name);
  return [
    req("http-get-metrics", `GET /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
    req("http-get-root", `GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`),
    req("http-post", `POST /metrics HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\n\r\nhello`),
    req("http-delete", `DELETE /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
    req("http-head", `HEAD /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
    req(
      "http-chunked-bad",
      `POST /metrics HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n`,
    ),
    req(
      "http-length-huge",
      `POST /metrics HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 99999999999\r\n\r\n`,
    ),
    req("http-length-negative", `POST /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n`),
    req("http-absolute", `GET http://${host}/metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
    req("http-pipelined", `GET /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n`.repeat(20)),
    req("http-huge-header", `GET /metrics HTTP/1.1\r\nX: ${"a".repeat(70_000)}\r\n\r\n`),
    req("http-many-headers", `GET /metrics HTTP/1.1\r\n${"X-A: b\r\n".repeat(2000)}\r\n`),
    req("http2-preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    req(
      "http-upgrade",
      `GET /metrics HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`,
    ),
    req(
      "http-expect",
      `PUT /metrics HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n`,
    ),
    req("http-no-version", "GET /metrics\r\n\r\n"),
    req("http-host-control", `GET / HTTP/1.1\r\nHost: a\x1b[31m\r\n\r\n`),
  ];
}

// ---------------------------------------------------------------- sockets

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function connectSocket(port: number, timeoutMs = 5000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to 127.0.0.1:${port} took more than ${timeoutMs} ms`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(t);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/**
 * Send `data` and read until `done(received)` holds; reject when the
 * connection closes first or after `timeoutMs`.
 */
async function exchange(
  port: number | (() => Promise<net.Socket>),
  data: Uint8Array,
  done: (got: Uint8Array) => boolean,
  timeoutMs = 5000,
): Promise<Uint8Array> {
  const s = typeof port === "number" ? await connectSocket(port) : await port();
  return await new Promise((resolve, reject) => {
    let got: Uint8Array = new Uint8Array(0);
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer in ${timeoutMs} ms (got ${got.length} bytes: ${preview(got)})`));
    }, timeoutMs);
    s.on("data", (d: Uint8Array) => {
      got = cat(got, d);
      if (done(got)) {
        clearTimeout(t);
        s.destroy();
        resolve(got);
      }
    });
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(t);
      reject(new Error(`closed after ${got.length} bytes: ${preview(got)}`));
    });
    s.write(data);
  });
}

function preview(b: Uint8Array): string {
  const head = b.subarray(0, 96);
  const text = Array.from(head, (x) => x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : ".").join(
    "",
  );
  return JSON.stringify(text) + (b.length > head.length ? "..." : "");
}

function endsWith(b: Uint8Array, tail: Uint8Array): boolean {
  if (b.length < tail.length) return false;
  const o = b.length - tail.length;
  for (let i = 0; i < tail.length; i++) if (b[o + i] !== tail[i]) return false;
  return true;
}

function includes(b: Uint8Array, text: string): boolean {
  return new TextDecoder("latin1").decode(b).includes(text);
}

/** An ASCII payload (survives the text rewrites of the HTTP examples). */
function payload(rng: Rng, max = 4096): Uint8Array {
  return enc.encode(hex(rng.bytes(rng.int(1, max >> 1))));
}

/**
 * A NetConn over a node:net socket that a tunnel Link runs its handshake
 * on; `detach()` takes the socket back (the Link hears nothing more and
 * writes nothing more).
 */
function handshakeConn(sock: net.Socket): NetConn & { detach(): void } {
  let detached = false;
  let written = 0;
  return {
    remote: { host: "127.0.0.1", port: sock.remotePort ?? 0 },
    local: undefined,
    get written() {
      return written;
    },
    start(h: NetHandlers) {
      sock.on("data", (d: Uint8Array) => {
        if (!detached) h.data(new Uint8Array(d));
      });
      sock.on("end", () => {
        if (!detached) h.end();
      });
      sock.on("close", () => {
        if (!detached) h.close(undefined);
      });
    },
    write(d: Uint8Array) {
      if (!detached) {
        written += d.length;
        sock.write(d);
      }
      return true;
    },
    pause: () => {},
    resume: () => {},
    end() {
      if (!detached) sock.end();
    },
    destroy() {
      if (!detached) sock.destroy();
    },
    detach() {
      detached = true;
    },
  };
}

/** A raw socket to a tunnel server after a successful handshake. */
async function tunnelSession(port: number, secret: string): Promise<net.Socket> {
  const sock = await connectSocket(port);
  sock.on("error", () => {});
  const conn = handshakeConn(sock);
  return await new Promise((resolve, reject) => {
    new Link("client", conn, { secret, keepaliveInterval: 0, handshakeTimeout: 5000 }, {
      ready() {
        conn.detach();
        resolve(sock);
      },
      streamEnd() {},
      close(reason, err) {
        sock.destroy();
        reject(new Error(`tunnel handshake failed: ${reason}${err ? ` (${err.message})` : ""}`));
      },
    });
  });
}

// ---------------------------------------------------------------- targets

/** What the fuzzer runs beside the targets. */
interface Env {
  /** Echo server (dual stack): where allowed connections go. */
  echoPort: number;
  /** A port nothing listens on. */
  closedPort: number;
  /** The sentinel (dual stack): denied by every access rule. */
  sentinelPort: number;
  /** Connections that reached the sentinel, by the tag in their first bytes. */
  sentinelHits: { tag: string; at: number }[];
  dir: string;
  secret: string;
  secretFile: string;
}

/** One listener of a target process and how to fuzz it. */
interface Surface {
  name: string;
  port: number;
  /** After its last byte, a connection must be closed within this many ms. */
  closeMs: number;
  gen(rng: Rng): Case;
  /** A case that stops short and stays open; undefined: none. */
  hold?: (rng: Rng) => Case;
  /** How a case's connection is made (default: TCP connect). */
  open?: () => Promise<net.Socket>;
  /** Bytes after the case's own (a tag the sentinel can attribute). */
  tag?: boolean | ((tag: Uint8Array) => Uint8Array);
  canary(rng: Rng): Promise<void>;
}

interface TargetSpec {
  kind: string;
  engine: Engine | undefined;
  runtime: RuntimeName;
  /** Listening ports the process needs. */
  ports: number;
  args(env: Env, ports: number[]): string[];
  env?(env: Env, ports: number[]): Record<string, string>;
  surfaces(env: Env, ports: number[]): Surface[];
  /** Set up before the process starts (tunnel: the canary client). */
  teardown?: () => Promise<void>;
}

/** Timeouts the targets are started with, and the slack on top. */
const T = {
  idle: 2000,
  connect: 1000,
  route: 2000,
  header: 5000, // the PROXY header timeout (no flag; the default)
  routerRoute: 10_000, // socks/http-connect decision time (no flag; the default)
  tunnelHandshake: 10_000, // no flag; the default
  keepalive: 1000,
  slack: 3000,
};

function caseFrom(rng: Rng, seeds: readonly Seed[]): Case {
  const { cls, bytes } = fromCorpus(rng, seeds);
  return { cls, bytes, split: writeMode(rng), end: true };
}

function proxySurface(name: string, port: number, closeMs: number): Surface {
  const seeds = proxySeeds();
  return {
    name,
    port,
    closeMs,
    gen: (rng) => caseFrom(rng, seeds),
    hold: (rng) => holdCase(rng, seeds.filter((s) => s.name !== "v1-http")),
    async canary(rng) {
      const p = payload(rng);
      const header = rng.chance(0.5)
        ? enc.encode("PROXY TCP4 192.0.2.1 127.0.0.1 56324 443\r\n")
        : v2Seed("", 0x21, 0x11, TCP4_ADDR, [{ type: 0x02, value: "canary" }], "").bytes;
      await exchange(port, cat(header, p), (g) => endsWith(g, p));
    },
  };
}

function socksSurfaces(env: Env, port: number): Surface[] {
  const seeds = socksSeeds(env.echoPort);
  const probes = socksProbes(env.sentinelPort);
  return [{
    name: "socks",
    port,
    closeMs: T.routerRoute + T.connect + T.slack,
    tag: true,
    gen(rng) {
      if (rng.chance(0.1)) {
        const p = rng.pick(probes);
        return { cls: `${p.name}/valid`, bytes: p.bytes.slice(), split: "whole", end: true };
      }
      return caseFrom(rng, seeds);
    },
    hold: (rng) => holdCase(rng, seeds),
    async canary(rng) {
      const p = payload(rng);
      const req = socks5("", SOCKS_USER, SOCKS_PASS, 1, [127, 0, 0, 1], env.echoPort).bytes;
      const got = await exchange(port, cat(req, p), (g) => endsWith(g, p));
      if (got[0] !== 5 || got[1] !== 2 || got[2] !== 1 || got[3] !== 0 || got[5] !== 0) {
        throw new Error(`unexpected SOCKS5 replies: ${hex(got.subarray(0, 14))}`);
      }
    },
  }];
}

function connectSurfaces(env: Env, port: number): Surface[] {
  const seeds = connectSeeds(env.echoPort);
  const probes = connectProbes(env.sentinelPort);
  return [{
    name: "http-connect",
    port,
    closeMs: T.routerRoute + T.connect + T.slack,
    tag: true,
    gen(rng) {
      if (rng.chance(0.1)) {
        const p = rng.pick(probes);
        return { cls: `${p.name}/valid`, bytes: p.bytes.slice(), split: "whole", end: true };
      }
      return caseFrom(rng, seeds);
    },
    hold: (rng) => holdCase(rng, seeds),
    async canary(rng) {
      const p = payload(rng);
      const got = await exchange(
        port,
        cat(connectSeed("", `127.0.0.1:${env.echoPort}`).bytes, p),
        (g) => endsWith(g, p),
      );
      if (!includes(got, "HTTP/1.1 200")) throw new Error(`unexpected answer ${preview(got)}`);
    },
  }];
}

/** The route scripts in examples/: those that export a route function. */
function exampleRoutes(): string[] {
  return readdirSync(EXAMPLES).filter((f) => /\.(ts|js)$/.test(f)).filter((f) =>
    /export\s+(async\s+)?function\s+(route|proxy)\b|export\s+(const|let)\s+(route|proxy)\b|export\s+default\b/
      .test(readFileSync(join(EXAMPLES, f), "utf8"))
  ).map((f) => f.replace(/\.(ts|js)$/, "")).sort();
}

function exampleSurface(name: string, env: Env, port: number): Surface {
  const closeMs = T.route + T.connect + T.idle + T.slack;
  const http = httpSeeds("a.test");
  const base = { name: `route:${name}`, port, closeMs };
  const hold = (rng: Rng) => holdCase(rng, http);
  switch (name) {
    case "file_reply": {
      const file = readFileSync(join(EXAMPLES, "welcome.txt"), "latin1");
      return {
        ...base,
        gen: (rng) => caseFrom(rng, http),
        hold,
        async canary() {
          const got = await exchange(
            port,
            enc.encode("GET / HTTP/1.0\r\n\r\n"),
            (g) => includes(g, file),
          );
          if (!includes(got, "200 OK")) throw new Error(`unexpected answer ${preview(got)}`);
        },
      };
    }
    case "host_router":
    case "http_rewrite":
      return {
        ...base,
        gen: (rng) => caseFrom(rng, http),
        hold,
        async canary(rng) {
          const p = payload(rng);
          await exchange(
            port,
            cat(`GET / HTTP/1.1\r\nHost: a.test\r\n\r\n`, p),
            (g) => endsWith(g, p),
          );
        },
      };
    case "socks4": {
      // no access control in the example: destinations stay on the echo
      // server or the closed port, whatever the mutation did
      const seeds = [socks4("socks4", [127, 0, 0, 1], env.echoPort, "user")];
      const fix = (rng: Rng, c: Case): Case => {
        if (c.bytes.length >= 8) {
          const port = rng.chance(0.8) ? env.echoPort : env.closedPort;
          c.bytes.set([port >> 8, port & 0xff, 127, 0, 0, 1], 2);
        }
        return c;
      };
      return {
        ...base,
        gen: (rng) => fix(rng, caseFrom(rng, seeds)),
        hold: (rng) => fix(rng, holdCase(rng, seeds)),
        async canary(rng) {
          const p = payload(rng);
          const got = await exchange(port, cat(seeds[0]!.bytes, p), (g) => endsWith(g, p));
          if (got[1] !== 0x5a) throw new Error(`SOCKS4 refused: ${hex(got.subarray(0, 8))}`);
        },
      };
    }
    default: // transparent, and any route script added later: bytes to the echo server
      return {
        ...base,
        gen: (rng) => caseFrom(rng, http),
        async canary(rng) {
          const p = payload(rng);
          await exchange(port, p, (g) => endsWith(g, p));
        },
      };
  }
}

function routeFuzzSurface(port: number): Surface {
  return {
    name: "route-values",
    port,
    closeMs: T.route + T.connect + T.idle + T.slack,
    gen(rng) {
      const head = [
        rng.int(0, ROUTE_CHOICES.route - 1),
        rng.int(0, ROUTE_CHOICES.timing - 1),
        rng.int(0, ROUTE_CHOICES.hook - 1),
        rng.int(0, ROUTE_CHOICES.onError - 1),
      ];
      const cut = rng.chance(0.05) ? rng.int(0, 3) : 4;
      const bytes = cat(head.slice(0, cut), cut === 4 ? payload(rng, 2048) : []);
      return {
        cls: `route#${head[0]}/timing#${head[1]}/hook#${head[2]}/onError#${head[3]}${
          cut < 4 ? `/cut-at-${cut}` : ""
        }`,
        bytes,
        split: writeMode(rng),
        end: rng.chance(0.9),
      };
    },
    hold(rng) {
      const c = this.gen(rng);
      return { ...c, cls: `${c.cls}/held`, end: false };
    },
    async canary(rng) {
      const p = payload(rng);
      await exchange(port, cat("CANARY", p), (g) => endsWith(g, p));
    },
  };
}

function tunnelSurfaces(env: Env, port: number, canaryPort: () => number): Surface[] {
  const pre = tunnelHandshakeSeeds();
  const post = tunnelStreamSeeds(env.echoPort);
  const probes = tunnelProbes(env.sentinelPort);
  const canary = async (rng: Rng) => {
    const p = payload(rng);
    let last: unknown;
    for (let i = 0; i < 10; i++) {
      try {
        await exchange(canaryPort(), p, (g) => endsWith(g, p));
        return;
      } catch (err) {
        last = err; // the canary's own link may still be coming up
        await sleep(300);
      }
    }
    throw last;
  };
  return [
    {
      name: "tunnel-handshake",
      port,
      closeMs: T.tunnelHandshake + T.slack,
      gen: (rng) => caseFrom(rng, pre),
      hold: (rng) => holdCase(rng, pre),
      canary,
    },
    {
      name: "tunnel-streams",
      port,
      closeMs: T.keepalive * 3 + T.connect + T.slack,
      // the tag as stream 1's data, so that a stream that got through carries it
      tag: (t) => encodeFrame({ type: "data", stream: 1, data: t }),
      open: () => tunnelSession(port, env.secret),
      gen(rng) {
        if (rng.chance(0.1)) {
          const p = rng.pick(probes);
          return { cls: `${p.name}/valid`, bytes: p.bytes.slice(), split: "whole", end: true };
        }
        return caseFrom(rng, post);
      },
      hold: (rng) => holdCase(rng, post),
      canary: async () => {},
    },
  ];
}

function runSurfaces(_env: Env, ports: number[]): Surface[] {
  const [hooksPort, metricsPort] = ports as [number, number];
  const proxy = proxySeeds();
  const http = httpSeeds();
  return [
    {
      name: "run-hooks",
      port: hooksPort,
      closeMs: T.route + T.idle + T.slack,
      gen(rng) {
        if (rng.chance(0.3)) return caseFrom(rng, proxy);
        const choice = rng.int(0, HOOK_CHOICES - 1);
        const header = rng.chance(0.3) ? "PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n" : "";
        return {
          cls: `hook#${choice}${header ? "/after-v1" : ""}`,
          bytes: cat(header, [choice], payload(rng, 8192)),
          split: writeMode(rng),
          end: rng.chance(0.9),
        };
      },
      hold: (rng) => holdCase(rng, proxy),
      async canary(rng) {
        const p = cat("CANARY", payload(rng));
        await exchange(hooksPort, p, (g) => endsWith(g, p));
      },
    },
    {
      name: "metrics",
      port: metricsPort,
      closeMs: 10_000 + T.slack, // the metrics request timeout (no flag; the default)
      gen: (rng) => caseFrom(rng, http),
      hold: (rng) => holdCase(rng, http),
      async canary() {
        const got = await exchange(
          metricsPort,
          enc.encode("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
          (g) => includes(g, "relaykit_listener_connections_total"),
        );
        if (!includes(got, " 200 ")) throw new Error(`unexpected answer ${preview(got)}`);
      },
    },
  ];
}

const engineFlags = (e: Engine | undefined) =>
  e === undefined ? [] : ["--engine", e, "--threads", "1"];
const listen = (p: number) => ["--listen", `127.0.0.1:${p}`];
const common = [
  "--idle-timeout",
  String(T.idle),
  "--connect-timeout",
  String(T.connect),
];

function rules(env: Env): string[] {
  const a = env.echoPort, s = env.sentinelPort;
  return [
    "--allow",
    `127.0.0.1/32:${a},[::1]/128:${a},*:${s}`,
    "--deny",
    `127.0.0.0/8:${s},[::1]/128:${s}`,
  ];
}

/** Every target, in a fixed order. */
function allTargets(o: FuzzOptions): TargetSpec[] {
  const out: TargetSpec[] = [];
  for (const runtime of o.runtimes) {
    for (const engine of o.engines) {
      out.push({
        kind: "forward",
        engine,
        runtime,
        ports: 1,
        args: (env, [p]) => [
          "forward",
          ...listen(p!),
          "--to",
          `127.0.0.1:${env.echoPort}`,
          "--accept-proxy",
          "detect",
          ...common,
          ...engineFlags(engine),
        ],
        surfaces: (_env, [p]) => [proxySurface("proxy-header", p!, T.header + T.idle + T.slack)],
      });
      for (const name of exampleRoutes()) {
        out.push({
          kind: `route:${name}`,
          engine,
          runtime,
          ports: 1,
          args: (_env, [p]) => [
            "route",
            join(EXAMPLES, `${name}.ts`),
            ...listen(p!),
            "--route-timeout",
            String(T.route),
            ...common,
            ...engineFlags(engine),
          ],
          env: (env) => ({
            ROUTES: `a.test=127.0.0.1:${env.echoPort}`,
            BACKEND: `127.0.0.1:${env.echoPort}`,
          }),
          surfaces: (env, [p]) => [exampleSurface(name, env, p!)],
        });
      }
      out.push({
        kind: "route-fuzz",
        engine,
        runtime,
        ports: 1,
        args: (_env, [p]) => [
          "route",
          join(FIXTURES, "fuzz_route.ts"),
          ...listen(p!),
          "--route-timeout",
          String(T.route),
          ...common,
          ...engineFlags(engine),
        ],
        surfaces: (_env, [p]) => [routeFuzzSurface(p!)],
      });
      for (const kind of ["socks", "http-connect"] as const) {
        out.push({
          kind,
          engine,
          runtime,
          ports: 1,
          args: (env, [p]) => [
            kind,
            ...listen(p!),
            ...rules(env),
            "--users",
            `${SOCKS_USER}:${SOCKS_PASS}`,
            ...common,
            ...engineFlags(engine),
          ],
          surfaces: (env, [p]) =>
            kind === "socks" ? socksSurfaces(env, p!) : connectSurfaces(env, p!),
        });
      }
      out.push({
        kind: "run",
        engine,
        runtime,
        ports: 2,
        args: (env, ports) => ["run", writeRunConfig(env, ports, engine), ...engineFlags(engine)],
        surfaces: runSurfaces,
      });
    }
    out.push({
      kind: "echo",
      engine: undefined,
      runtime,
      ports: 1,
      args: (_env, [p]) => ["echo", ...listen(p!), "--accept-proxy", "detect"],
      surfaces: (_env, [p]) => [proxySurface("proxy-header", p!, T.header + T.slack)],
    });
    let client: TunnelClient | undefined;
    let clientPort = 0;
    out.push({
      kind: "tunnel",
      engine: undefined,
      runtime,
      ports: 1,
      args: (env, [p]) => [
        "tunnel",
        "server",
        ...listen(p!),
        ...rules(env),
        "--route",
        `web=127.0.0.1:${env.echoPort}`,
        "--secret-file",
        env.secretFile,
        "--keepalive",
        String(T.keepalive),
        "--connect-timeout",
        String(T.connect),
      ],
      surfaces(env, [p]) {
        if (client === undefined) {
          const started = TunnelClient.start({
            link: { host: "127.0.0.1", port: p! },
            listeners: [{
              listen: { host: "127.0.0.1", port: 0 },
              to: { host: "127.0.0.1", port: env.echoPort },
            }],
            secret: env.secret,
            keepaliveInterval: T.keepalive,
            reconnectMaxDelay: 200,
          });
          started.then((c) => {
            client = c;
            clientPort = c.addresses[0]!.port;
          });
        }
        return tunnelSurfaces(env, p!, () => clientPort);
      },
      async teardown() {
        await client?.close();
        client = undefined;
      },
    });
    // the tunnel client's SOCKS and HTTP CONNECT entry as the process under
    // test; its server (with the same rules as the routers) in this one
    let entryServer: TunnelServer | undefined;
    out.push({
      kind: "tunnel-entry",
      engine: undefined,
      runtime,
      ports: 3,
      args: (env, [s, h, link]) => [
        "tunnel",
        "client",
        "--link",
        `127.0.0.1:${link}`,
        "--socks",
        `127.0.0.1:${s}`,
        "--http-connect",
        `127.0.0.1:${h}`,
        "--users",
        `${SOCKS_USER}:${SOCKS_PASS}`,
        "--secret-file",
        env.secretFile,
        "--keepalive",
        String(T.keepalive),
        "--reconnect-max",
        "200",
      ],
      surfaces(env, [s, h, link]) {
        if (entryServer === undefined) {
          const a = env.echoPort, x = env.sentinelPort;
          void TunnelServer.listen({
            listen: { host: "127.0.0.1", port: link! },
            allow: [{ cidr: "127.0.0.1/32", port: a }, { cidr: "::1/128", port: a }, { port: x }],
            deny: [{ cidr: "127.0.0.0/8", port: x }, { cidr: "::1/128", port: x }],
            secret: env.secret,
            connectTimeout: T.connect,
            keepaliveInterval: T.keepalive,
          }).then((srv) => entryServer = srv);
        }
        // the canaries wait for the process's link to come up
        return [...socksSurfaces(env, s!), ...connectSurfaces(env, h!)].map((surface) => ({
          ...surface,
          async canary(rng: Rng) {
            let last: unknown;
            for (let i = 0; i < 10; i++) {
              try {
                return await surface.canary(rng);
              } catch (err) {
                last = err;
                await sleep(300);
              }
            }
            throw last;
          },
        }));
      },
      async teardown() {
        await entryServer?.close();
        entryServer = undefined;
      },
    });
  }
  const want = o.kinds;
  return out.filter((t) =>
    want.length === 0 ||
    want.some((k) => t.kind === k || t.kind.startsWith(`${k}:`))
  );
}

function writeRunConfig(env: Env, ports: number[], engine: Engine | undefined): string {
  const [hooksPort, metricsPort] = ports;
  const file = join(env.dir, `run-${engine ?? "auto"}-${hooksPort}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      {
        metrics: { address: "127.0.0.1", port: metricsPort },
        listeners: [{
          name: "hooks",
          address: "127.0.0.1",
          port: hooksPort,
          backend: "echo",
          hooks: join(FIXTURES, "fuzz_hooks.ts"),
          accept_proxy: { mode: "detect", timeout: T.route },
          idle_timeout: T.idle,
          connect_timeout: T.connect,
        }],
        backends: [{ name: "echo", host: "127.0.0.1", port: env.echoPort }],
      },
      null,
      2,
    ),
  );
  return file;
}

// ---------------------------------------------------------------- processes

const BIN = (name: RuntimeName) => join(ROOT, "node_modules", ".bin", name);

/** A target's process: the relaykit command on one runtime. */
class Proc {
  readonly child: ChildProcess;
  #out = "";
  #err = "";
  exited: { code: number | null; signal: string | null } | undefined;
  readonly ready: Promise<void>;

  constructor(runtime: RuntimeName, args: string[], env: Record<string, string>) {
    const argv = runtime === "deno" ? ["run", "-A", CLI, ...args] : [CLI, ...args];
    this.child = spawn(BIN(runtime), argv, {
      env: { ...process.env, NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (s: string, d: string) => (s + d).slice(-16_384);
    let line: () => void = () => {};
    let fail: (e: Error) => void = () => {};
    this.ready = new Promise<void>((resolve, reject) => {
      line = resolve;
      fail = reject;
    });
    this.child.stdout!.on("data", (d: Uint8Array) => {
      this.#out = keep(this.#out, String(d));
      if (this.#out.includes("\n")) line();
    });
    this.child.stderr!.on("data", (d: Uint8Array) => this.#err = keep(this.#err, String(d)));
    this.child.once("exit", (code, signal) => {
      this.exited = { code, signal };
      fail(new Error(`exited (${code ?? signal}) before it was ready: ${this.tail()}`));
    });
    this.child.once("error", (e) => fail(e));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  alive(): boolean {
    return this.exited === undefined && this.child.exitCode === null &&
      this.child.signalCode === null;
  }

  /**
   * What it last said on stderr (or stdout), for a report: the last error
   * line and a few lines after it, or the last lines.
   */
  tail(lines = 8): string {
    const text = this.#err.trim() !== "" ? this.#err : this.#out;
    const all = text.trim().split("\n");
    let at = -1;
    for (let i = all.length - 1; i >= 0 && at < 0; i--) {
      if (
        /^error: |Uncaught|^\w*(Error|Exception)\b.*:|panicked|Segmentation|Assertion/.test(all[i]!)
      ) at = i;
    }
    return (at >= 0 ? all.slice(at, at + lines) : all.slice(-lines)).join("\n");
  }

  /** Forget what was written so far (each batch reports its own). */
  clearOutput(): void {
    this.#err = "";
  }

  stderrText(): string {
    return this.#err;
  }

  fds(): number {
    try {
      return readdirSync(`/proc/${this.pid}/fd`).length;
    } catch {
      return -1;
    }
  }

  /** Resident set size in KiB. */
  rss(): number {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      return m ? Number(m[1]) : -1;
    } catch {
      return -1;
    }
  }

  /** CPU time used so far (user + system), in clock ticks. */
  cpu(): number {
    try {
      const f = readFileSync(`/proc/${this.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return Number(f[11]) + Number(f[12]);
    } catch {
      return -1;
    }
  }

  /**
   * SIGTERM, then SIGKILL after `graceMs`: whether it ended by itself
   * (false: it had to be killed).
   */
  async stop(graceMs = 5000): Promise<boolean> {
    if (!this.alive()) return true;
    const gone = new Promise<void>((r) => this.child.once("exit", () => r()));
    const signal = (sig: string) => {
      try {
        process.kill(this.pid, sig); // child.kill() may ignore a second signal
      } catch { /* gone */ }
    };
    signal("SIGTERM");
    let t: ReturnType<typeof setTimeout> | undefined;
    const byItself = await Promise.race([
      gone.then(() => true),
      new Promise<boolean>((r) => t = setTimeout(() => r(false), graceMs)),
    ]);
    clearTimeout(t);
    if (!byItself) {
      signal("SIGKILL");
      await Promise.race([gone, sleep(5000)]);
    }
    return byItself;
  }
}

// ---------------------------------------------------------------- running

/** Where one case ended. */
interface Outcome {
  hang?: string;
  connectError?: string;
}

async function runCase(surface: Surface, c: Case, tag: Uint8Array): Promise<Outcome> {
  let s: net.Socket;
  try {
    s = surface.open ? await surface.open() : await connectSocket(surface.port);
  } catch (err) {
    return { connectError: (err as Error).message };
  }
  const closed = new Promise<void>((r) => {
    if (s.destroyed) r();
    s.once("close", () => r());
  });
  s.on("error", () => {});
  s.on("data", () => {});
  s.resume();
  const bytes = withTag(surface, c.bytes, tag);
  const write = (b: Uint8Array) => {
    if (!s.destroyed && b.length > 0) s.write(b);
  };
  if (c.split === "whole") write(bytes);
  else {
    const r = new Rng(bytes.length, bytes[0] ?? 0);
    let o = 0;
    while (o < bytes.length && !s.destroyed) {
      const n = c.split === "bytes" ? (o < 48 ? 1 : bytes.length - o) : r.int(1, 512);
      write(bytes.subarray(o, o + n));
      o += n;
      await sleep(c.split === "bytes" ? 1 : 0);
    }
  }
  if (c.end && !s.destroyed) s.end();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = surface.closeMs;
  const hung = await Promise.race([
    closed.then(() => false),
    new Promise<boolean>((r) => timer = setTimeout(() => r(true), limit)),
  ]);
  clearTimeout(timer);
  if (hung) {
    s.destroy();
    return {
      hang: `the connection was still open ${limit} ms after its last byte${
        c.end ? " and the client's FIN" : ""
      }`,
    };
  }
  return {};
}

function withTag(surface: Surface, bytes: Uint8Array, tag: Uint8Array): Uint8Array {
  if (surface.tag === undefined || surface.tag === false) return bytes;
  return cat(bytes, surface.tag === true ? tag : surface.tag(tag));
}

interface CaseRef {
  surface: Surface;
  index: number;
  hold: boolean;
}

function caseOf(o: FuzzOptions, kind: string, ref: CaseRef): Case {
  const rng = new Rng(o.seed, hash(`${kind}/${ref.surface.name}`), ref.index, ref.hold ? 1 : 0);
  return ref.hold && ref.surface.hold ? ref.surface.hold(rng) : ref.surface.gen(rng);
}

function tagOf(key: string, ref: CaseRef): Uint8Array {
  return enc.encode(`RKFUZZ ${key} ${ref.surface.name} ${ref.index}${ref.hold ? " hold" : ""}\n`);
}

/** Run cases with at most `limit` at once. */
async function pool<T>(items: T[], limit: number, f: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < items.length) await f(items[i++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function targetKey(t: TargetSpec): string {
  return `${t.kind}/${t.engine ?? "-"}/${t.runtime}`;
}

function reproduce(o: FuzzOptions, t: TargetSpec, ref?: CaseRef): string {
  const base = `deno run -A scripts/fuzz.ts --seed ${o.seed} --kinds ${t.kind}${
    t.engine ? ` --engines ${t.engine}` : ""
  } --runtimes ${t.runtime}`;
  return ref ? `${base} --case ${ref.surface.name}:${ref.index}${ref.hold ? ":hold" : ""}` : base;
}

function inputOf(o: FuzzOptions, t: TargetSpec, ref: CaseRef): Failure["input"] {
  const c = caseOf(o, t.kind, ref);
  const bytes = withTag(ref.surface, c.bytes, tagOf(targetKey(t), ref));
  return {
    index: ref.index,
    hold: ref.hold,
    cls: `${c.cls} (${c.split}${c.end ? ", then FIN" : ", held open"})`,
    hex: hex(bytes.subarray(0, 2048)) + (bytes.length > 2048 ? "..." : ""),
    length: bytes.length,
  };
}

/** One target: start, fuzz in batches, check, restart after a crash. */
async function runTarget(
  o: FuzzOptions,
  env: Env,
  t: TargetSpec,
  budget: number,
  failures: Failure[],
  state: { phase: string; since: number },
): Promise<{ inputs: number; restarts: number }> {
  const phase = (p: string) => {
    state.phase = p;
    state.since = Date.now();
  };
  const key = targetKey(t);
  const log = o.log ?? (() => {});
  const fail = (f: Omit<Failure, "target" | "reproduce">, ref?: CaseRef) => {
    const full: Failure = { ...f, target: key, reproduce: reproduce(o, t, ref) };
    failures.push(full);
    log(formatFailure(full, o.seed));
  };
  const batch = o.batch ?? 64;
  const concurrency = o.concurrency ?? 16;
  let inputs = 0, restarts = 0, shrinks = 0;
  const ports: number[] = [];
  for (let i = 0; i < t.ports; i++) ports.push(await freePort());
  const surfaces = t.surfaces(env, ports);
  const rng = new Rng(o.seed, hash(key), 0xcafe);

  const start = async (): Promise<{ p: Proc; fds: number; rss: number } | undefined> => {
    phase("starting");
    const p = new Proc(t.runtime, t.args(env, ports), t.env?.(env, ports) ?? {});
    const timeout = sleep(30_000).then(() => {
      throw new Error("not ready after 30 s");
    });
    try {
      await Promise.race([p.ready, timeout]);
      // warm up (lazy allocations), then take the baseline
      for (let i = 0; i < 2; i++) {
        for (const s of surfaces) await s.canary(rng);
      }
      await sleep(500);
      return { p, fds: p.fds(), rss: p.rss() };
    } catch (err) {
      fail({ type: "start", surface: "-", detail: `${(err as Error).message}\n${p.tail()}` });
      await p.stop();
      return undefined;
    }
  };

  let proc = await start();
  if (proc === undefined) return { inputs, restarts };
  const counters = new Map(surfaces.map((s) => [s.name, 0]));
  const reported = new Set<string>();
  let batchNo = 0;

  const replayOne = o.replay !== undefined;
  const holdEvery = budget <= batch * 8 ? Math.max(1, Math.ceil(budget / batch)) : 16;

  while (inputs < budget || replayOne) {
    // the cases of this batch, round-robin over the surfaces
    const hold = !replayOne && o.hold !== false && batchNo % holdEvery === holdEvery - 1;
    let refs: CaseRef[] = [];
    if (replayOne) {
      const [sname, idx, h] = o.replay!.split(":");
      const surface = surfaces.find((s) => s.name === sname);
      if (surface === undefined) {
        throw new Error(
          `--case: no surface "${sname}" (${surfaces.map((s) => s.name).join(", ")})`,
        );
      }
      refs = [{ surface, index: Number(idx), hold: h === "hold" }];
    } else if (hold) {
      for (const s of surfaces.filter((s) => s.hold)) {
        for (let i = 0; i < 4; i++) {
          refs.push({ surface: s, index: counters.get(s.name)!, hold: true });
          counters.set(s.name, counters.get(s.name)! + 1);
        }
      }
    } else {
      const n = Math.min(batch, budget - inputs);
      for (let i = 0; i < n; i++) {
        const s = surfaces[i % surfaces.length]!;
        refs.push({ surface: s, index: counters.get(s.name)!, hold: false });
        counters.set(s.name, counters.get(s.name)! + 1);
      }
    }
    batchNo++;
    phase(`batch ${batchNo}`);
    const p = proc.p;
    const deaths: CaseRef[] = [];
    // a guard for the machine: a process far over the RSS bound is killed
    const cap = proc.rss + ((o.rssMiB ?? 768) + 512) * 1024;
    let overCap = 0;
    const guard = setInterval(() => {
      const rss = p.rss();
      if (rss > cap && p.alive()) {
        overCap = rss;
        try {
          process.kill(p.pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }, 250);
    await pool(refs, concurrency, async (ref) => {
      if (!p.alive()) return;
      const c = caseOf(o, t.kind, ref);
      const out = await runCase(ref.surface, c, tagOf(key, ref));
      inputs++;
      if (out.hang !== undefined && p.alive()) {
        const k = `hang/${ref.surface.name}/${c.end}`;
        if (!reported.has(k)) {
          reported.add(k);
          fail({
            type: "hang",
            surface: ref.surface.name,
            detail: out.hang,
            input: inputOf(o, t, ref),
          }, ref);
        }
      }
      if (
        out.connectError !== undefined && p.alive() && !reported.has(`connect/${ref.surface.name}`)
      ) {
        // a live listener that cannot be reached (or a tunnel handshake that fails) fuzzes nothing
        reported.add(`connect/${ref.surface.name}`);
        fail({
          type: "connect",
          surface: ref.surface.name,
          detail: `a case could not start: ${out.connectError}`,
          input: inputOf(o, t, ref),
        }, ref);
      }
      if (!p.alive()) deaths.push(ref);
    });
    if (o.verbose) log(`${key}: batch ${batchNo}${hold ? " (held)" : ""}: ${inputs} inputs`);

    clearInterval(guard);

    // the sentinel: a denied destination reached
    for (const hit of env.sentinelHits.filter((h) => h.tag.startsWith(`RKFUZZ ${key} `))) {
      env.sentinelHits.splice(env.sentinelHits.indexOf(hit), 1);
      const [, , sname, idx, h] = hit.tag.trim().split(" ");
      const surface = surfaces.find((s) => s.name === sname) ?? surfaces[0]!;
      const ref = { surface, index: Number(idx), hold: h === "hold" };
      fail({
        type: "bypass",
        surface: surface.name,
        detail: "a connection reached the sentinel, a destination every access rule denies",
        input: inputOf(o, t, ref),
      }, ref);
    }

    // alive?
    phase(`checks after batch ${batchNo}`);
    await sleep(50);
    if (!p.alive()) {
      const how = p.exited ? (p.exited.code ?? p.exited.signal) : "?";
      const detail = overCap > 0
        ? `the fuzzer killed it at ${Math.round(overCap / 1024)} MiB of RSS (${
          Math.round(proc.rss / 1024)
        } MiB at the start):\n${p.tail()}`
        : `the process ended (exit ${how}):\n${p.tail()}`;
      let culprit: CaseRef | undefined;
      if (o.shrink !== false && shrinks < 3 && refs.length > 1) {
        shrinks++;
        phase(`replaying batch ${batchNo} case by case`);
        culprit = await shrink(o, env, t, ports, refs, log);
      } else if (refs.length === 1) culprit = refs[0];
      fail({
        type: "died",
        surface: culprit?.surface.name ?? refs[0]!.surface.name,
        detail: culprit
          ? detail
          : `${detail}\n(no single case of the batch ends it alone: ${refs.length} cases, ${
            [...new Set(refs.map((r) => r.surface.name))].join(", ")
          } from index ${refs[0]!.index})`,
        ...(culprit ? { input: inputOf(o, t, culprit) } : {}),
      }, culprit);
      if (replayOne || ++restarts > 4) break;
      proc = await start();
      if (proc === undefined) break;
      continue;
    }

    // canaries
    for (const s of surfaces) {
      try {
        await s.canary(rng);
      } catch (err) {
        const k = `canary/${s.name}`;
        if (!reported.has(k)) {
          reported.add(k);
          fail({
            type: "canary",
            surface: s.name,
            detail: `a valid connection failed after the batch: ${(err as Error).message}`,
          });
        }
      }
    }

    // fds back to the baseline (a short settle time), RSS bounded
    const end = Date.now() + 3000;
    let fds = p.fds();
    while (fds > proc.fds && Date.now() < end) {
      await sleep(100);
      fds = p.fds();
    }
    if (fds > proc.fds && p.alive()) {
      if (!reported.has("fd")) {
        reported.add("fd");
        fail({
          type: "fd",
          surface: surfaces.map((s) => s.name).join(","),
          detail: `${fds} open fds 3 s after the batch; ${proc.fds} at the start (${
            fdKinds(p.pid)
          })`,
        });
      }
      proc.fds = fds; // report growth once, keep watching from here
    }
    const rss = p.rss();
    const bound = proc.rss + (o.rssMiB ?? 768) * 1024;
    if (rss > bound && !reported.has("rss")) {
      reported.add("rss");
      fail({
        type: "rss",
        surface: "-",
        detail: `RSS ${Math.round(rss / 1024)} MiB, over ${Math.round(bound / 1024)} MiB (${
          Math.round(proc.rss / 1024)
        } MiB at the start + ${o.rssMiB ?? 768})`,
      });
    }
    if (replayOne) break;
  }
  phase("stopping");
  if (proc !== undefined && proc.p.alive()) {
    const cpu0 = proc.p.cpu();
    await sleep(1000);
    const spin = proc.p.cpu() - cpu0; // ticks in an idle second (100 a second is a core)
    if (spin > 50) {
      fail({
        type: "spin",
        surface: "-",
        detail: `${spin} CPU ticks (of 100 a core) in a second with no connection open`,
      });
    }
    if (!(await proc.p.stop())) {
      fail({
        type: "stop",
        surface: "-",
        detail:
          `it did not end within 5 s of SIGTERM after the fuzzing (killed); ${spin} CPU ticks in the idle second before`,
      });
    }
  }
  return { inputs, restarts };
}

/** What the open fds of a process are, counted by kind. */
function fdKinds(pid: number): string {
  const counts = new Map<string, number>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let what = "?";
      try {
        what = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/:\[\d+\]$/, "").replace(
          /^\/.*/,
          "file",
        );
      } catch { /* gone */ }
      counts.set(what, (counts.get(what) ?? 0) + 1);
    }
  } catch { /* gone */ }
  return [...counts].map(([k, v]) => `${k} ${v}`).join(", ");
}

/** Replay a batch one case at a time on a fresh process: the case that ends it. */
async function shrink(
  o: FuzzOptions,
  env: Env,
  t: TargetSpec,
  ports: number[],
  refs: CaseRef[],
  log: (s: string) => void,
): Promise<CaseRef | undefined> {
  let p: Proc | undefined;
  const fresh = async () => {
    p = new Proc(t.runtime, t.args(env, ports), t.env?.(env, ports) ?? {});
    await Promise.race([p.ready, sleep(30_000)]);
  };
  try {
    await fresh();
    for (const ref of refs) {
      if (!p!.alive()) await fresh();
      const c = caseOf(o, t.kind, ref);
      const limited = { ...ref.surface, closeMs: Math.min(ref.surface.closeMs, 2000) };
      await runCase(limited, c, tagOf(targetKey(t), ref));
      await sleep(100);
      if (!p!.alive()) {
        log(`${targetKey(t)}: case ${ref.surface.name}:${ref.index} ends the process alone`);
        return ref;
      }
    }
    return undefined;
  } catch {
    return undefined;
  } finally {
    await p?.stop();
  }
}

/** One failure as text: what, where, the input, and how to replay it. */
export function formatFailure(f: Failure, seed: number): string {
  const lines = [
    `FAIL ${f.type} ${f.target} ${f.surface} (seed ${seed})`,
    `  ${f.detail.replace(/\n/g, "\n  ")}`,
  ];
  if (f.input) {
    lines.push(
      `  case ${f.input.index}${
        f.input.hold ? " (held)" : ""
      }: ${f.input.cls}, ${f.input.length} bytes`,
      `  input: ${f.input.hex.slice(0, 512)}${f.input.hex.length > 512 ? "..." : ""}`,
    );
  }
  lines.push(`  replay: ${f.reproduce}`);
  return lines.join("\n");
}

/** The failures grouped by symptom: one line each, with the targets and one example. */
export function summarize(failures: Failure[]): string {
  const groups = new Map<string, Failure[]>();
  for (const f of failures) {
    const lines = f.detail.split("\n");
    const killed = lines[0]!.startsWith("the fuzzer killed it");
    const what = f.type === "died" && !killed ? (lines[1] ?? lines[0]!).trim() : lines[0]!;
    const cls = f.input?.cls.includes("held open") ? " (held open)" : " (after FIN)";
    const k = `${f.type} ${f.target.split("/")[0]} ${f.surface}${f.type === "hang" ? cls : ""}: ${
      what.replace(/\d+/g, "N").slice(0, 200)
    }`;
    groups.set(k, [...groups.get(k) ?? [], f]);
  }
  return [...groups].map(([k, list]) => {
    const targets = [...new Set(list.map((f) => f.target.split("/").slice(1).join("/")))];
    const ex = list.find((f) => f.input) ?? list[0]!;
    const example = ex.input
      ? `\n    e.g. case ${ex.input.index}: ${ex.input.cls}; ${ex.reproduce}`
      : "";
    return `${list.length} x ${k}\n    on ${targets.join(", ")}${example}`;
  }).join("\n");
}

/** Start the echo server and the sentinel the targets point at. */
async function startEnv(): Promise<{ env: Env; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.setTimeout(30_000, () => s.destroy());
    s.on("data", (d) => s.write(d));
    s.on("end", () => s.end());
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => echo.listen({ port: 0, host: "::", ipv6Only: false }, r));
  const hits: Env["sentinelHits"] = [];
  const sentinel = net.createServer((s) => {
    sockets.add(s);
    let got = "";
    const record = () => {
      hits.push({ tag: got.slice(got.indexOf("RKFUZZ ")).split("\n")[0] ?? "", at: Date.now() });
      s.destroy();
    };
    const t = setTimeout(record, 1000);
    s.on("data", (d) => {
      got += new TextDecoder("latin1").decode(d as Uint8Array);
      if (/RKFUZZ [^\n]*\n/.test(got)) {
        clearTimeout(t);
        record();
      }
    });
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => sentinel.listen({ port: 0, host: "::", ipv6Only: false }, r));
  const dir = mkdtempSync(join(tmpdir(), "relaykit-fuzz-"));
  const secret = "fuzz-secret-" + hex(new Rng(Date.now()).bytes(8));
  const secretFile = join(dir, "tunnel.secret");
  writeFileSync(secretFile, secret + "\n");
  const env: Env = {
    echoPort: (echo.address() as net.AddressInfo).port,
    sentinelPort: (sentinel.address() as net.AddressInfo).port,
    closedPort: await freePort(),
    sentinelHits: hits,
    dir,
    secret,
    secretFile,
  };
  return {
    env,
    async stop() {
      for (const s of sockets) s.destroy();
      await Promise.all(
        [echo, sentinel].map((srv) => new Promise<void>((r) => srv.close(() => r()))),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Run the fuzzer: every selected target, `count` inputs in all. */
export async function fuzz(o: FuzzOptions): Promise<FuzzReport> {
  const t0 = Date.now();
  const targets = allTargets(o);
  if (targets.length === 0) throw new Error("no target matches --kinds/--engines/--runtimes");
  const { env, stop } = await startEnv();
  process.env.FUZZ_ECHO = `127.0.0.1:${env.echoPort}`;
  process.env.FUZZ_CLOSED = `127.0.0.1:${env.closedPort}`;
  process.env.FUZZ_FILE = join(EXAMPLES, "welcome.txt");
  const failures: Failure[] = [];
  const perTarget: FuzzReport["perTarget"] = [];
  const per = Math.max(1, Math.ceil(o.count / targets.length));
  let inputs = 0;
  // a watchdog for the fuzzer itself: a target that makes no progress
  const states = new Map<string, { phase: string; since: number }>();
  const watchdog = setInterval(() => {
    for (const [k, st] of states) {
      const secs = (Date.now() - st.since) / 1000;
      if (secs > 60) console.error(`fuzz: ${k} has been in "${st.phase}" for ${secs.toFixed(0)} s`);
    }
  }, 20_000);
  try {
    await pool(targets, o.parallel ?? 2, async (t) => {
      const s = Date.now();
      const state = { phase: "", since: s };
      states.set(targetKey(t), state);
      try {
        const r = await runTarget(o, env, t, per, failures, state);
        inputs += r.inputs;
        perTarget.push({ target: targetKey(t), ...r, ms: Date.now() - s });
        o.log?.(
          `${targetKey(t)}: ${r.inputs} inputs, ${r.restarts} restarts, ${
            ((Date.now() - s) / 1000).toFixed(1)
          } s`,
        );
      } finally {
        state.phase = "teardown";
        await t.teardown?.();
        states.delete(targetKey(t));
      }
    });
    // the sentinel reached by a connection that carried no tag
    await sleep(1200);
    const untagged = env.sentinelHits.splice(0);
    if (untagged.length > 0) {
      failures.push({
        type: "bypass",
        target: o.kinds.join(",") || "all",
        surface: "?",
        detail: `${untagged.length} connections reached the sentinel, a destination every access ` +
          "rule denies, without the tag that names their case (the proxy connected, then " +
          "the client's bytes did not follow)",
        reproduce: `deno run -A scripts/fuzz.ts --seed ${o.seed} --count ${o.count}`,
      });
    }
  } finally {
    clearInterval(watchdog);
    await stop();
  }
  return {
    seed: o.seed,
    inputs,
    targets: targets.length,
    ms: Date.now() - t0,
    failures,
    perTarget,
  };
}

/** Parse the command line. */
export function parseArgs(args: string[]): FuzzOptions & { json?: string } {
  const o: FuzzOptions & { json?: string } = {
    seed: (Date.now() ^ (process.pid << 16)) >>> 0,
    count: 20_000,
    kinds: [],
    engines: ["native", "stream"],
    runtimes: ["deno", "bun"],
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const v = () => {
      const x = args[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    const list = () => v().split(",").map((x) => x.trim()).filter((x) => x !== "");
    const int = () => {
      const x = Number(v());
      if (!Number.isInteger(x) || x < 0) throw new Error(`${a} needs a non-negative integer`);
      return x;
    };
    switch (a) {
      case "--long":
        o.count = Math.max(o.count, 1_000_000);
        break;
      case "--count":
        o.count = int();
        break;
      case "--seed":
        o.seed = int() >>> 0;
        break;
      case "--kinds":
        o.kinds = list();
        break;
      case "--engines":
        o.engines = list() as Engine[];
        if (o.engines.some((e) => e !== "native" && e !== "stream")) {
          throw new Error("--engines: native, stream");
        }
        break;
      case "--runtimes":
        o.runtimes = list() as RuntimeName[];
        if (o.runtimes.some((r) => r !== "deno" && r !== "bun")) {
          throw new Error("--runtimes: deno, bun");
        }
        break;
      case "--batch":
        o.batch = Math.max(1, int());
        break;
      case "--concurrency":
        o.concurrency = Math.max(1, int());
        break;
      case "--parallel":
        o.parallel = Math.max(1, int());
        break;
      case "--case":
        o.replay = v();
        break;
      case "--no-hold":
        o.hold = false;
        break;
      case "--no-shrink":
        o.shrink = false;
        break;
      case "--rss-mb":
        o.rssMiB = int();
        break;
      case "--json":
        o.json = v();
        break;
      case "--verbose":
        o.verbose = true;
        break;
      default:
        throw new Error(`unknown option "${a}" (see the top of scripts/fuzz.ts)`);
    }
  }
  return o;
}

if (import.meta.main) {
  let o: ReturnType<typeof parseArgs>;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`fuzz: ${(err as Error).message}`);
    process.exit(2);
  }
  o.log = (line) => console.log(line);
  console.log(
    `fuzz: seed ${o.seed}, ${o.count} inputs, kinds ${o.kinds.join(",") || "all"}, engines ${
      o.engines.join(",")
    }, runtimes ${o.runtimes.join(",")}`,
  );
  const r = await fuzz(o);
  if (o.json) writeFileSync(o.json, JSON.stringify(r, null, 2));
  if (r.failures.length > 0) console.log(`\nfuzz: failures by symptom\n${summarize(r.failures)}\n`);
  console.log(
    `fuzz: ${r.inputs} inputs over ${r.targets} targets in ${
      (r.ms / 1000).toFixed(1)
    } s, ${r.failures.length} failures (seed ${r.seed})`,
  );
  process.exit(r.failures.length === 0 ? 0 : 1);
}
