/**
 * The tunnel's frames: pure encode and decode, no I/O. Every frame is a
 * 10-byte header (type u8, flags u8, stream id u32, payload length u32,
 * big-endian) and a payload of at most {@link MAX_FRAME_PAYLOAD} bytes.
 * The decoder is incremental (it keeps a partial frame until the rest
 * arrives) and strict: an unknown type, an oversize length, a payload of
 * the wrong shape, flags that mean nothing or a stream id where none
 * belongs is a {@link TunnelProtocolError}, never a crash. docs/tunnel.md
 * describes the wire format.
 *
 * @module
 */
import { RelaykitError } from "../errors.ts";

/** The header: type u8, flags u8, stream id u32, payload length u32. */
export const FRAME_HEADER_SIZE = 10;

/** The most payload a frame may carry (16 KiB). */
export const MAX_FRAME_PAYLOAD = 16 * 1024;

/** The first four bytes of a HELLO payload: "RKTN". */
export const TUNNEL_MAGIC: Uint8Array = new Uint8Array([0x52, 0x4b, 0x54, 0x4e]);

/**
 * The protocol versions this implementation speaks, newest last. Version 2
 * changed the handshake (the client proves the secret first); version 1
 * peers are refused with a message that names both versions.
 */
export const TUNNEL_VERSIONS: readonly number[] = [2];

/** Bytes of a handshake nonce and of an HMAC-SHA256 proof. */
export const NONCE_SIZE = 32;

/** Frame type numbers on the wire. */
export const FRAME_TYPES = {
  hello: 0x01,
  "hello-ack": 0x02,
  auth: 0x03,
  ready: 0x04,
  open: 0x05,
  "open-ok": 0x06,
  "open-fail": 0x07,
  data: 0x08,
  window: 0x09,
  fin: 0x0a,
  rst: 0x0b,
  ping: 0x0c,
  pong: 0x0d,
  goaway: 0x0e,
} as const;

/** HELLO_ACK flag: the server wants an AUTH frame (the client's proof) before READY. */
const FLAG_AUTH = 0x01;

/** Where a stream goes: an address, or a route the server knows by name. */
export type TunnelDestination = { host: string; port: number } | { route: string };

/**
 * One frame, decoded.
 *
 * @example
 * ```ts
 * import { decodeFrame, encodeFrame, type TunnelFrame } from "@relaykit/relaykit/internals";
 * const f: TunnelFrame = { type: "window", stream: 7, credit: 65536 };
 * const r = decodeFrame(encodeFrame(f));
 * console.log("frame" in r && r.frame); // { type: "window", stream: 7, credit: 65536 }
 * ```
 */
export type TunnelFrame =
  | { type: "hello"; versions: number[]; nonce: Uint8Array }
  | {
    type: "hello-ack";
    version: number;
    window: number;
    /** Present when the server wants the client's proof: the server's nonce. */
    auth?: { nonce: Uint8Array };
  }
  | { type: "auth"; proof: Uint8Array }
  | { type: "ready"; proof: Uint8Array }
  | { type: "open"; stream: number; destination: TunnelDestination }
  | { type: "open-ok"; stream: number }
  | { type: "open-fail"; stream: number; code: string; message: string }
  | { type: "data"; stream: number; data: Uint8Array }
  | { type: "window"; stream: number; credit: number }
  | { type: "fin"; stream: number }
  | { type: "rst"; stream: number; code: string; message: string }
  | { type: "ping"; data: Uint8Array }
  | { type: "pong"; data: Uint8Array }
  | { type: "goaway"; code: string; message: string };

/** What is wrong with bytes that claim to be a frame. */
export type TunnelProblem =
  | "bad-magic"
  | "unknown-type"
  | "oversize"
  | "malformed"
  | "truncated"
  | "flow-control"
  | "state"
  | "tls";

/**
 * The peer broke the tunnel protocol: the link is closed. `problem` says
 * how; `code` is always "RK_ETUNNEL_PROTOCOL".
 *
 * @example
 * ```ts
 * import { decodeFrame, TunnelProtocolError } from "@relaykit/relaykit/internals";
 * try {
 *   decodeFrame(new Uint8Array([0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
 * } catch (err) {
 *   if (err instanceof TunnelProtocolError) console.log(err.problem); // "unknown-type"
 * }
 * ```
 */
export class TunnelProtocolError extends RelaykitError {
  /** How the protocol was broken. */
  readonly problem: TunnelProblem;

  /**
   * Make one.
   *
   * @param problem How the protocol was broken.
   * @param message Sentence-case description.
   */
  constructor(problem: TunnelProblem, message: string) {
    super(`Tunnel protocol error (${problem}): ${message}`, "RK_ETUNNEL_PROTOCOL");
    this.name = "TunnelProtocolError";
    this.problem = problem;
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

const LINK_TYPES = new Set<number>([
  FRAME_TYPES.hello,
  FRAME_TYPES["hello-ack"],
  FRAME_TYPES.auth,
  FRAME_TYPES.ready,
  FRAME_TYPES.ping,
  FRAME_TYPES.pong,
  FRAME_TYPES.goaway,
]);

/** code (u8 length, ASCII) then message (UTF-8, the rest). */
function reasonBytes(code: string, message: string): Uint8Array {
  const c = enc.encode(code);
  const m = enc.encode(message);
  if (c.length === 0 || c.length > 64 || !/^[\x21-\x7e]+$/.test(code)) {
    throw new RangeError(`A reason code must be 1 to 64 printable ASCII characters, not "${code}"`);
  }
  const room = MAX_FRAME_PAYLOAD - 1 - c.length;
  const out = new Uint8Array(1 + c.length + Math.min(m.length, room));
  out[0] = c.length;
  out.set(c, 1);
  out.set(m.subarray(0, room), 1 + c.length);
  return out;
}

/**
 * Why `d` cannot travel in an OPEN frame (a host or route name is 1 to 255
 * bytes of UTF-8, a port 1 to 65535), or undefined if it can.
 *
 * @example
 * ```ts
 * import { destinationProblem } from "@relaykit/relaykit/internals";
 * console.log(destinationProblem({ host: "db", port: 0 })); // "0" is not a port from 1 to 65535
 * ```
 */
export function destinationProblem(d: TunnelDestination): string | undefined {
  if ("route" in d) {
    const n = enc.encode(d.route).length;
    return n < 1 || n > 255 ? "A route name is 1 to 255 bytes" : undefined;
  }
  const n = enc.encode(d.host).length;
  if (n < 1 || n > 255) return "A host is 1 to 255 bytes";
  if (!Number.isInteger(d.port) || d.port < 1 || d.port > 65535) {
    return `"${d.port}" is not a port from 1 to 65535`;
  }
  return undefined;
}

function payloadOf(f: TunnelFrame): { stream: number; flags: number; payload: Uint8Array } {
  switch (f.type) {
    case "hello": {
      if (f.versions.length < 1 || f.versions.length > 16) {
        throw new RangeError("A HELLO offers 1 to 16 versions");
      }
      if (f.nonce.length !== NONCE_SIZE) throw new RangeError(`A nonce is ${NONCE_SIZE} bytes`);
      const p = new Uint8Array(5 + 2 * f.versions.length + NONCE_SIZE);
      const v = new DataView(p.buffer);
      p.set(TUNNEL_MAGIC, 0);
      p[4] = f.versions.length;
      f.versions.forEach((x, i) => v.setUint16(5 + 2 * i, x));
      p.set(f.nonce, 5 + 2 * f.versions.length);
      return { stream: 0, flags: 0, payload: p };
    }
    case "hello-ack": {
      if (f.auth && f.auth.nonce.length !== NONCE_SIZE) {
        throw new RangeError(`A nonce is ${NONCE_SIZE} bytes`);
      }
      const p = new Uint8Array(6 + (f.auth ? NONCE_SIZE : 0));
      const v = new DataView(p.buffer);
      v.setUint16(0, f.version);
      v.setUint32(2, f.window);
      if (f.auth) p.set(f.auth.nonce, 6);
      return { stream: 0, flags: f.auth ? FLAG_AUTH : 0, payload: p };
    }
    case "auth":
    case "ready":
      if (f.proof.length !== NONCE_SIZE) throw new RangeError(`A proof is ${NONCE_SIZE} bytes`);
      return { stream: 0, flags: 0, payload: f.proof };
    case "open": {
      const d = f.destination;
      const problem = destinationProblem(d);
      if (problem !== undefined) throw new RangeError(problem);
      if ("route" in d) {
        const r = enc.encode(d.route);
        const p = new Uint8Array(1 + r.length);
        p[0] = 2;
        p.set(r, 1);
        return { stream: f.stream, flags: 0, payload: p };
      }
      const h = enc.encode(d.host);
      const p = new Uint8Array(3 + h.length);
      p[0] = 1;
      new DataView(p.buffer).setUint16(1, d.port);
      p.set(h, 3);
      return { stream: f.stream, flags: 0, payload: p };
    }
    case "open-ok":
    case "fin":
      return { stream: f.stream, flags: 0, payload: new Uint8Array(0) };
    case "open-fail":
    case "rst":
      return { stream: f.stream, flags: 0, payload: reasonBytes(f.code, f.message) };
    case "goaway":
      return { stream: 0, flags: 0, payload: reasonBytes(f.code, f.message) };
    case "data":
      return { stream: f.stream, flags: 0, payload: f.data };
    case "window": {
      const p = new Uint8Array(4);
      new DataView(p.buffer).setUint32(0, f.credit);
      return { stream: f.stream, flags: 0, payload: p };
    }
    case "ping":
    case "pong":
      return { stream: 0, flags: 0, payload: f.data };
  }
}

/**
 * The bytes of one frame. Throws a RangeError for a frame that could not
 * be decoded again (oversize DATA, a bad port, a stream id of 0 where one
 * is needed).
 *
 * @param f The frame.
 * @returns Header and payload, one array.
 * @example
 * ```ts
 * import { encodeFrame } from "@relaykit/relaykit/internals";
 * const bytes = encodeFrame({ type: "open", stream: 1, destination: { host: "db", port: 5432 } });
 * console.log(bytes.length); // 10-byte header + 1 + 2 + 2
 * ```
 */
export function encodeFrame(f: TunnelFrame): Uint8Array {
  const { stream, flags, payload } = payloadOf(f);
  const type = FRAME_TYPES[f.type];
  if (payload.length > MAX_FRAME_PAYLOAD) {
    throw new RangeError(
      `A frame carries at most ${MAX_FRAME_PAYLOAD} bytes, not ${payload.length}`,
    );
  }
  if (LINK_TYPES.has(type) !== (stream === 0) || stream < 0 || stream > 0xffffffff) {
    throw new RangeError(`Stream id ${stream} does not fit a ${f.type} frame`);
  }
  const out = new Uint8Array(FRAME_HEADER_SIZE + payload.length);
  const v = new DataView(out.buffer);
  out[0] = type;
  out[1] = flags;
  v.setUint32(2, stream);
  v.setUint32(6, payload.length);
  out.set(payload, FRAME_HEADER_SIZE);
  return out;
}

function bad(problem: TunnelProblem, message: string): never {
  throw new TunnelProtocolError(problem, message);
}

function reasonOf(p: Uint8Array, what: string): { code: string; message: string } {
  const n = p[0] ?? 0;
  if (p.length < 1 + n || n === 0) bad("truncated", `${what} reason code is cut short`);
  const code = String.fromCharCode(...p.subarray(1, 1 + n));
  if (!/^[\x21-\x7e]+$/.test(code)) bad("malformed", `${what} reason code is not ASCII`);
  return { code, message: text(p.subarray(1 + n), `${what} message`) };
}

function text(b: Uint8Array, what: string): string {
  try {
    return dec.decode(b);
  } catch {
    return bad("malformed", `${what} is not UTF-8`);
  }
}

const NAMES = new Map<number, TunnelFrame["type"]>(
  Object.entries(FRAME_TYPES).map(([k, v]) => [v, k as TunnelFrame["type"]]),
);

/** Decode one payload whose header has been checked. */
function parse(type: number, flags: number, stream: number, p: Uint8Array): TunnelFrame {
  const name = NAMES.get(type)!;
  const exact = (n: number) => {
    if (p.length !== n) {
      bad(
        p.length < n ? "truncated" : "malformed",
        `a ${name} frame has ${n} payload bytes, not ${p.length}`,
      );
    }
  };
  if (flags !== 0 && !(name === "hello-ack" && flags === FLAG_AUTH)) {
    bad("malformed", `flags 0x${flags.toString(16)} mean nothing on a ${name} frame`);
  }
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  switch (name) {
    case "hello": {
      if (p.length < 4 || !TUNNEL_MAGIC.every((b, i) => p[i] === b)) {
        bad("bad-magic", "the peer's HELLO does not start with RKTN: not a relaykit tunnel");
      }
      const n = p[4] ?? 0;
      if (n < 1 || n > 16) {
        bad(p.length < 5 ? "truncated" : "malformed", "a HELLO offers 1 to 16 versions");
      }
      exact(5 + 2 * n + NONCE_SIZE);
      const versions = Array.from({ length: n }, (_, i) => v.getUint16(5 + 2 * i));
      return { type: name, versions, nonce: p.slice(5 + 2 * n) };
    }
    case "hello-ack": {
      exact(flags & FLAG_AUTH ? 6 + NONCE_SIZE : 6);
      const f: TunnelFrame = { type: name, version: v.getUint16(0), window: v.getUint32(2) };
      if (f.window < 1 || f.window > 0x7fffffff) {
        bad("malformed", `window ${f.window} is out of range`);
      }
      if (flags & FLAG_AUTH) {
        f.auth = { nonce: p.slice(6, 6 + NONCE_SIZE) };
      }
      return f;
    }
    case "auth":
    case "ready":
      exact(NONCE_SIZE);
      return { type: name, proof: p.slice() };
    case "open": {
      if (p.length < 2) bad("truncated", "an OPEN frame needs a destination");
      if (p[0] === 1) {
        if (p.length < 4) bad("truncated", "an OPEN frame's host is missing");
        if (p.length > 3 + 255) bad("malformed", "an OPEN frame's host is longer than 255 bytes");
        const port = v.getUint16(1);
        if (port === 0) bad("malformed", "an OPEN frame's port is 0");
        return { type: name, stream, destination: { host: text(p.subarray(3), "the host"), port } };
      }
      if (p[0] === 2) {
        if (p.length > 1 + 255) bad("malformed", "an OPEN frame's route is longer than 255 bytes");
        return { type: name, stream, destination: { route: text(p.subarray(1), "the route") } };
      }
      return bad("malformed", `destination kind ${p[0]} is unknown`);
    }
    case "open-ok":
    case "fin":
      exact(0);
      return { type: name, stream };
    case "open-fail":
    case "rst":
      return { type: name, stream, ...reasonOf(p, `a ${name} frame's`) };
    case "goaway":
      return { type: name, ...reasonOf(p, "a goaway frame's") };
    case "data":
      if (p.length === 0) bad("malformed", "a data frame is empty");
      return { type: name, stream, data: p };
    case "window": {
      exact(4);
      const credit = v.getUint32(0);
      if (credit < 1 || credit > 0x7fffffff) bad("malformed", `credit ${credit} is out of range`);
      return { type: name, stream, credit };
    }
    case "ping":
    case "pong":
      exact(8);
      return { type: name, data: p.slice() };
  }
}

/**
 * Decode the frame at the start of `buf`: the frame and its size in bytes,
 * or how many bytes are needed before it can be decoded.
 *
 * @param buf Bytes from the link.
 * @returns `{ frame, size }` or `{ need }`.
 * @throws {TunnelProtocolError} for bytes that are no valid frame.
 * @example
 * ```ts
 * import { decodeFrame, encodeFrame } from "@relaykit/relaykit/internals";
 * const bytes = encodeFrame({ type: "fin", stream: 3 });
 * console.log(decodeFrame(bytes.subarray(0, 4))); // { need: 10 }
 * ```
 */
export function decodeFrame(
  buf: Uint8Array,
): { frame: TunnelFrame; size: number } | { need: number } {
  if (buf.length >= 1 && !NAMES.has(buf[0]!)) {
    bad("unknown-type", `frame type 0x${buf[0]!.toString(16).padStart(2, "0")} is unknown`);
  }
  if (buf.length < FRAME_HEADER_SIZE) return { need: FRAME_HEADER_SIZE };
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const type = buf[0]!, flags = buf[1]!;
  const stream = v.getUint32(2), length = v.getUint32(6);
  if (length > MAX_FRAME_PAYLOAD) {
    bad("oversize", `a frame of ${length} bytes is over the limit of ${MAX_FRAME_PAYLOAD}`);
  }
  if (LINK_TYPES.has(type) !== (stream === 0)) {
    bad(
      "malformed",
      stream === 0
        ? `a ${NAMES.get(type)} frame needs a stream id`
        : `a ${NAMES.get(type)} frame has stream id ${stream}`,
    );
  }
  const size = FRAME_HEADER_SIZE + length;
  if (buf.length < size) return { need: size };
  return { frame: parse(type, flags, stream, buf.subarray(FRAME_HEADER_SIZE, size)), size };
}

/**
 * An incremental decoder: bytes in as they arrive, whole frames out.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder } from "@relaykit/relaykit/internals";
 * const d = new FrameDecoder();
 * const bytes = encodeFrame({ type: "ping", data: new Uint8Array(8) });
 * console.log(d.push(bytes.subarray(0, 3)).length, d.push(bytes.subarray(3)).length); // 0 1
 * ```
 */
export class FrameDecoder {
  #rest: Uint8Array = new Uint8Array(0);

  /** Bytes of a partial frame kept for the next push. */
  get buffered(): number {
    return this.#rest.length;
  }

  /**
   * Decode what `chunk` completes. Payloads may be views into `chunk`.
   *
   * @param chunk The next bytes of the link.
   * @returns The frames completed, in order.
   * @throws {TunnelProtocolError} at the first invalid frame.
   */
  push(chunk: Uint8Array): TunnelFrame[] {
    let buf = chunk;
    if (this.#rest.length > 0) {
      buf = new Uint8Array(this.#rest.length + chunk.length);
      buf.set(this.#rest);
      buf.set(chunk, this.#rest.length);
    }
    const out: TunnelFrame[] = [];
    let o = 0;
    for (;;) {
      const r = decodeFrame(buf.subarray(o));
      if ("need" in r) break;
      out.push(r.frame);
      o += r.size;
    }
    this.#rest = o === buf.length ? new Uint8Array(0) : buf.slice(o);
    return out;
  }

  /** Take the bytes of a partial frame out (the decoder is empty after). */
  takeRest(): Uint8Array {
    const rest = this.#rest;
    this.#rest = new Uint8Array(0);
    return rest;
  }

  /**
   * The link ended: a partial frame left over is a truncated frame.
   *
   * @throws {TunnelProtocolError} when bytes of a frame are left.
   */
  end(): void {
    if (this.#rest.length > 0) {
      bad("truncated", `the link ended ${this.#rest.length} bytes into a frame`);
    }
  }
}
