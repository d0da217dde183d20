/**
 * The multiplexer: many streams over one link (a NetConn), with the
 * handshake (handshake.ts: version negotiation, optional HMAC-SHA256 proofs
 * of a shared secret in both directions, the client's first), per-stream
 * flow control (stream.ts) and keepalive.
 *
 * The link's own backpressure: when the link socket holds more than
 * LINK_HIGH bytes, every stream stops sending DATA until it drains.
 *
 * @module
 */
import { RelaykitError } from "../errors.ts";
import type { NetConn } from "../runtime/types.ts";
import {
  destinationProblem,
  encodeFrame,
  FrameDecoder,
  MAX_FRAME_PAYLOAD,
  TUNNEL_VERSIONS,
  type TunnelDestination,
  type TunnelFrame,
  TunnelProtocolError,
} from "./frame.ts";
import { Handshake, looksLikeTls } from "./handshake.ts";
import { type NativeConnected, type NativeHeld, NativeLinkConn } from "./native.ts";
import {
  newStream,
  type Stream,
  streamBacklog,
  type StreamEndReason,
  type StreamOpened,
  type TunnelStreamEnd,
  type TunnelStreamStats,
} from "./stream.ts";

export type {
  StreamEndReason,
  StreamOpened,
  TunnelStreamEnd,
  TunnelStreamStats,
} from "./stream.ts";

/** Per-stream window granted to the peer, by default (1 MiB). */
export const DEFAULT_WINDOW = 1024 * 1024;

/** Bytes the link socket may hold before streams stop sending. */
const LINK_HIGH = 256 * 1024;

/**
 * Bytes the link socket may hold at all: past this the peer is not reading
 * what it asks for (PONGs, grants, refusals) and the link is closed.
 */
const LINK_MAX = 16 * 1024 * 1024;

/**
 * Bytes all of a link's streams may hold that their sockets have not taken
 * (each at most its window): past this the link is not read until they take
 * some, so a peer that fills the windows of many streams whose destinations
 * do not read costs this side at most this much (the native engine's
 * RK__TUN_HELD_MAX, native/src/tunnel.c).
 */
export const LINK_HELD_MAX = 64 * 1024 * 1024;

/** Most streams open at once on one link. */
const MAX_STREAMS = 65_536;

/** Why a link closed. */
export type LinkCloseReason =
  | "link-lost"
  | "protocol-error"
  | "keepalive-timeout"
  | "handshake-timeout"
  | "goaway"
  | "auth-failed"
  | "version"
  | "closed";

/** How a link behaves; both sides. */
export interface LinkOptions {
  /** Shared secret; when set, both sides prove they know it. */
  secret?: string | undefined;
  /** Versions offered (client) or spoken (server). @default TUNNEL_VERSIONS */
  versions?: readonly number[] | undefined;
  /** Per-stream window the server announces. @default 1048576 */
  window?: number | undefined;
  /** PING every this many ms (0: never). @default 10000 */
  keepaliveInterval?: number | undefined;
  /** The link is dead after this many intervals without a frame. @default 3 */
  keepaliveMisses?: number | undefined;
  /** Give up a handshake after this many ms. @default 10000 */
  handshakeTimeout?: number | undefined;
  /**
   * The client side: a stream whose OPEN the peer has answered neither way
   * after this many ms ends (ETIMEDOUT) and is reset at the peer (0: never).
   * @default 30000
   */
  openTimeout?: number | undefined;
}

/** What the owner of a link hears. */
export interface LinkHandlers {
  /** The handshake is done. */
  ready?(version: number): void;
  /** The server side: the peer opened a stream; answer with attach() or refuse(). */
  open?(id: number, destination: TunnelDestination): void;
  /** A stream ended. */
  streamEnd(end: TunnelStreamEnd): void;
  /** The link closed (once). */
  close(reason: LinkCloseReason, error: RelaykitError | undefined): void;
}

/** The close reason a peer's GOAWAY code stands for. */
function goawayReason(code: string): LinkCloseReason {
  if (code === "RK_ETUNNEL_AUTH") return "auth-failed";
  if (code === "RK_ETUNNEL_VERSION") return "version";
  if (code === "RK_ETUNNEL_PROTOCOL") return "protocol-error";
  return "goaway";
}

function linkError(code: string, message: string): RelaykitError {
  return new RelaykitError(message, code);
}

/**
 * One link: the handshake, then streams. Made by TunnelClient and
 * TunnelServer; not public.
 */
export class Link {
  readonly role: "client" | "server";
  readonly #conn: NetConn;
  readonly #h: LinkHandlers;
  #decoder = new FrameDecoder();
  /** The native data plane, once the handshake is done on a native link. */
  #nat: NativeLinkConn | undefined;
  readonly #handshake: Handshake;
  #state: "handshake" | "ready" | "closed" = "handshake";
  #streamWindow: number; // the initial credit each way, once agreed
  #rxBytes = 0;
  #overflow = false;
  readonly #streams = new Map<number, Stream>();
  #nextId = 1; // client: the next stream id
  #lastPeerId = 0; // server: the highest stream id opened
  #queued = 0; // bytes given to the link socket
  #congested = false;
  /** Bytes the streams hold for their sockets (#hold): the link is paused from LINK_HELD_MAX on. */
  #held = 0;
  #inbox: TunnelFrame[] = [];
  #busy = false;
  readonly #openTimeout: number;
  /**
   * The link's end (or failure), when it came while frames read before it
   * still wait in the inbox: it is acted on after them, so a refusal the
   * peer sent before closing is what the link ends with.
   */
  #endAfterInbox: (() => void) | undefined;
  #lastRx = Date.now();
  #timer: ReturnType<typeof setInterval> | undefined;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #pingSentAt = 0;
  #goaway: RelaykitError | undefined;
  /** Round-trip time of the last PING, in ms. */
  rttMs: number | undefined;

  constructor(role: "client" | "server", conn: NetConn, options: LinkOptions, h: LinkHandlers) {
    this.role = role;
    this.#conn = conn;
    this.#h = h;
    const window = options.window ?? DEFAULT_WINDOW;
    this.#streamWindow = window;
    this.#openTimeout = options.openTimeout ?? 30_000;
    const versions = options.versions ?? TUNNEL_VERSIONS;
    this.#handshake = new Handshake(role, { secret: options.secret, versions, window }, {
      peer: () => this.peer,
      closed: () => this.closed,
      send: (f) => this.#send(f),
      refuse: (code, message) => this.#refuse(code, message),
      refused: (code, message) => this.#fail(goawayReason(code), linkError(code, message)),
      ready: () => this.#becomeReady(),
    });
    this.setKeepalive(options.keepaliveInterval ?? 10_000, options.keepaliveMisses ?? 3);
    const ht = options.handshakeTimeout ?? 10_000;
    this.#handshakeTimer = setTimeout(() => {
      this.#fail(
        "handshake-timeout",
        linkError("ETIMEDOUT", `Tunnel handshake with ${this.peer} took more than ${ht} ms`),
      );
    }, ht);
    conn.start({
      data: (chunk) => this.#onData(chunk),
      end: () => this.#onLinkEnd(),
      drain: () => this.#onDrain(),
      close: (code) => this.#onLinkClose(code),
    });
    this.#handshake.start();
  }

  /**
   * PING every `interval` ms (0: never); the link is dead after `misses`
   * intervals without a frame. Replaces the running timer (a reload).
   */
  setKeepalive(interval: number, misses: number): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (interval <= 0 || this.#state === "closed") return;
    this.#timer = setInterval(() => {
      // a native link's frames are read by the engine: its last one counts
      const natRx = this.#nat?.lastRx();
      if (natRx !== undefined && natRx > this.#lastRx) this.#lastRx = natRx;
      if (Date.now() - this.#lastRx > interval * misses) {
        this.#fail(
          "keepalive-timeout",
          linkError(
            "ETIMEDOUT",
            `Tunnel link to ${this.peer} is dead: no frame for ${interval * misses} ms`,
          ),
        );
        return;
      }
      if (this.#state === "ready") {
        this.#pingSentAt = Date.now();
        this.#send({ type: "ping", data: new Uint8Array(8) });
      }
    }, interval);
  }

  /** "host:port" of the peer. */
  get peer(): string {
    const r = this.#conn.remote;
    return r === undefined
      ? "the peer"
      : `${r.host.includes(":") ? `[${r.host}]` : r.host}:${r.port}`;
  }

  /** Whether streams can be opened. */
  get ready(): boolean {
    return this.#state === "ready";
  }

  /** Whether the native engine carries the streams. */
  get native(): boolean {
    return this.#nat !== undefined;
  }

  /** Whether the link is closed. */
  get closed(): boolean {
    return this.#state === "closed";
  }

  /** The protocol version agreed (0 before). */
  get version(): number {
    return this.#handshake.version;
  }

  /** Open streams. */
  get streams(): number {
    return this.#streams.size;
  }

  /**
   * Bytes a stream's socket holds that it has not taken yet (DATA written
   * to it and not yet drained, or waiting for it to be attached).
   */
  streamBacklog(id: number): number | undefined {
    const s = this.#streams.get(id);
    if (s === undefined) return undefined;
    if (s.native) return this.#nat?.streamStats(id)?.[2] ?? 0;
    return streamBacklog(s);
  }

  /** Counters of the open streams. */
  streamStats(): TunnelStreamStats[] {
    return [...this.#streams.values()].map((s) => {
      const n = s.native ? this.#nat?.streamStats(s.id) : undefined;
      return {
        id: s.id,
        destination: s.destination,
        bytesOut: n?.[0] ?? s.bytesOut,
        bytesIn: n?.[1] ?? s.bytesIn,
        backlog: n?.[2] ?? this.streamBacklog(s.id) ?? 0,
        credit: n?.[3] ?? s.credit,
      };
    });
  }

  /** The largest backlog of any stream. */
  maxBacklog(): number {
    let max = 0;
    for (const id of this.#streams.keys()) max = Math.max(max, this.streamBacklog(id) ?? 0);
    return max;
  }

  // -------------------------------------------------------------------------
  // Writing

  #send(f: TunnelFrame): void {
    if (this.#state === "closed" || this.#overflow) return;
    const bytes = encodeFrame(f);
    this.#queued += bytes.length;
    if (this.#conn.write(bytes)) return;
    const held = this.#queued - this.#conn.written;
    if (held > LINK_HIGH) this.#congested = true;
    if (held > LINK_MAX) {
      // not from inside whatever is sending: close on the next microtask
      this.#overflow = true;
      queueMicrotask(() =>
        this.#fail(
          "link-lost",
          linkError(
            "ENOBUFS",
            `Tunnel peer ${this.peer} does not read its link (more than ${LINK_MAX} bytes waiting)`,
          ),
        )
      );
    }
  }

  #onDrain(): void {
    if (!this.#congested) return;
    this.#congested = false;
    for (const s of [...this.#streams.values()]) {
      if (this.#congested) break;
      this.#flushOut(s);
    }
  }

  // -------------------------------------------------------------------------
  // Reading

  #onData(chunk: Uint8Array): void {
    if (this.#state === "closed") return;
    this.#lastRx = Date.now();
    const first = this.#rxBytes === 0;
    this.#rxBytes += chunk.length;
    if (first && chunk.length > 0 && looksLikeTls(chunk)) {
      this.#protocolError(
        new TunnelProtocolError(
          "tls",
          this.role === "client"
            ? "the server speaks TLS; connect with TLS (--tls, or tls in the config)"
            : "the client speaks TLS; this server has no TLS certificate (--tls-cert, --tls-key)",
        ),
      );
      return;
    }
    let frames: TunnelFrame[];
    try {
      frames = this.#decoder.push(chunk);
    } catch (err) {
      this.#protocolError(
        err instanceof TunnelProtocolError
          ? err
          : new TunnelProtocolError("malformed", `undecodable bytes (${err})`),
      );
      return;
    }
    if (this.#state !== "ready") {
      const over = this.#handshake.admit(frames.length);
      if (over !== undefined) {
        this.#protocolError(over);
        return;
      }
    }
    if (this.#busy || this.#inbox.length > 0 || this.#state !== "ready") {
      this.#inbox.push(...frames);
      void this.#drainInbox();
      return;
    }
    for (const f of frames) {
      if (this.closed) return;
      this.#handle(f);
    }
  }

  /** Frames in order, some of them (the handshake's) async. */
  async #drainInbox(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      while (this.#inbox.length > 0 && this.#state !== "closed") {
        const f = this.#inbox.shift()!;
        if (this.#state === "ready") this.#handle(f);
        else await this.#handshake.step(f);
      }
    } catch (err) {
      if (err instanceof TunnelProtocolError) this.#protocolError(err);
      else this.#fail("closed", linkError("EIO", `Tunnel link to ${this.peer}: ${err}`));
    } finally {
      this.#busy = false;
    }
    const end = this.#endAfterInbox;
    this.#endAfterInbox = undefined;
    end?.();
  }

  /** Whether frames read before now are still to be acted on. */
  #inboxWaiting(): boolean {
    return this.#busy || this.#inbox.length > 0;
  }

  /** Refuse the peer in the handshake: tell it why (GOAWAY), then close. */
  #refuse(code: "RK_ETUNNEL_AUTH" | "RK_ETUNNEL_VERSION", msg: string): void {
    this.#send({ type: "goaway", code, message: msg });
    const peer = this.role === "client" ? "server" : "client";
    this.#fail(goawayReason(code), linkError(code, `Tunnel ${peer} ${this.peer}: ${msg}`));
  }

  #protocolError(err: TunnelProtocolError): void {
    this.#send({ type: "goaway", code: err.code, message: err.message });
    this.#fail("protocol-error", err);
  }

  #becomeReady(): void {
    this.#state = "ready";
    this.#streamWindow = this.#handshake.window;
    clearTimeout(this.#handshakeTimer);
    if (this.#conn instanceof NativeLinkConn) {
      // the engine parses frames from now on: what was read past the
      // handshake first
      const nat = this.#conn;
      const parts = this.#inbox.map((f) => encodeFrame(f));
      parts.push(this.#decoder.takeRest());
      this.#inbox = [];
      this.#decoder = new FrameDecoder();
      const replay = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) {
        replay.set(p, o);
        o += p.length;
      }
      this.#nat = nat;
      nat.attach(this.role === "server", this.#streamWindow, replay, {
        streamEnd: (id, how, code, bytesOut, bytesIn) =>
          this.#nativeStreamEnd(id, how, code, bytesOut, bytesIn),
        protocol: (problem, message) =>
          this.#protocolError(new TunnelProtocolError(problem, message)),
      });
    }
    this.#h.ready?.(this.#handshake.version);
  }

  /** A frame after the handshake. */
  #handle(f: TunnelFrame): void {
    try {
      this.#handleReady(f);
    } catch (err) {
      if (err instanceof TunnelProtocolError) this.#protocolError(err);
      else {
        this.#fail(
          "closed",
          linkError("EIO", `Tunnel link to ${this.peer}: a ${f.type} frame failed: ${err}`),
        );
      }
    }
  }

  #stream(id: number, type: string): Stream | undefined {
    const s = this.#streams.get(id);
    if (s !== undefined) return s;
    const opened = this.role === "client" ? id < this.#nextId : id <= this.#lastPeerId;
    if (!opened) {
      throw new TunnelProtocolError("state", `a ${type} frame for stream ${id}, never opened`);
    }
    return undefined; // closed already: late frames are dropped
  }

  #handleReady(f: TunnelFrame): void {
    switch (f.type) {
      case "data": {
        const s = this.#stream(f.stream, f.type);
        if (s === undefined) return;
        if (s.finRecv) throw new TunnelProtocolError("state", `data after FIN on stream ${s.id}`);
        if (f.data.length > s.allowed) {
          throw new TunnelProtocolError(
            "flow-control",
            `stream ${s.id} sent ${f.data.length} bytes with ${s.allowed} of credit`,
          );
        }
        s.allowed -= f.data.length;
        s.bytesIn += f.data.length;
        if (s.conn === undefined) {
          s.early.push(f.data);
          this.#hold(f.data.length);
          return;
        }
        this.#toConn(s, f.data);
        return;
      }
      case "window": {
        const s = this.#stream(f.stream, f.type);
        if (s === undefined) return;
        if (s.credit + f.credit > 0x7fffffff) {
          throw new TunnelProtocolError("flow-control", `stream ${s.id}'s credit overflows`);
        }
        s.credit += f.credit;
        this.#flushOut(s);
        return;
      }
      case "fin": {
        const s = this.#stream(f.stream, f.type);
        if (s === undefined) return;
        if (s.finRecv) throw new TunnelProtocolError("state", `a second FIN on stream ${s.id}`);
        s.finRecv = true;
        if (s.conn !== undefined) s.conn.end();
        this.#maybeDone(s);
        return;
      }
      case "rst": {
        const s = this.#stream(f.stream, f.type);
        if (s === undefined) return;
        this.#endStream(
          s,
          "reset",
          linkError(f.code, `Stream ${s.id} reset by the tunnel peer: ${f.message}`),
          true,
          false,
        );
        return;
      }
      case "open": {
        if (this.role !== "server") {
          throw new TunnelProtocolError("state", "the server opened a stream");
        }
        if (f.stream <= this.#lastPeerId) {
          throw new TunnelProtocolError(
            "state",
            `stream id ${f.stream} is not above ${this.#lastPeerId}`,
          );
        }
        this.#lastPeerId = f.stream;
        if (this.#streams.size >= MAX_STREAMS) {
          const fail: TunnelFrame = {
            type: "open-fail",
            stream: f.stream,
            code: "RK_ELIMIT",
            message: `more than ${MAX_STREAMS} streams on one link`,
          };
          if (this.#nat !== undefined) this.#nat.closeStream(f.stream, true, encodeFrame(fail));
          else this.#send(fail);
          return;
        }
        const opened = newStream(f.stream, f.destination, this.#streamWindow);
        opened.native = this.#nat !== undefined;
        this.#streams.set(f.stream, opened);
        this.#h.open?.(f.stream, f.destination);
        return;
      }
      case "open-ok": {
        if (this.role !== "client") {
          throw new TunnelProtocolError("state", "OPEN_OK from the client");
        }
        const s = this.#stream(f.stream, f.type);
        const opened = s?.opened;
        if (s !== undefined) {
          s.opened = undefined;
          clearTimeout(s.openTimer);
        }
        opened?.(undefined);
        return;
      }
      case "open-fail": {
        if (this.role !== "client") {
          throw new TunnelProtocolError("state", "OPEN_FAIL from the client");
        }
        const s = this.#stream(f.stream, f.type);
        if (s === undefined) return;
        const reason = f.code === "RK_EDENIED" || f.code === "RK_EROUTE"
          ? "refused"
          : "connect-failed";
        this.#endStream(s, reason, linkError(f.code, f.message), false, false);
        return;
      }
      case "ping":
        this.#send({ type: "pong", data: f.data });
        return;
      case "pong":
        if (this.#pingSentAt > 0) this.rttMs = Date.now() - this.#pingSentAt;
        return;
      case "goaway":
        this.#goaway = linkError(f.code, `Tunnel peer ${this.peer} went away: ${f.message}`);
        this.#fail(goawayReason(f.code), this.#goaway);
        return;
      default:
        throw new TunnelProtocolError("state", `a ${f.type} frame after the handshake`);
    }
  }

  // -------------------------------------------------------------------------
  // Streams

  /**
   * The client side: open a stream to `destination` carrying `conn`;
   * `opened` hears how the OPEN went (see StreamOpened). Returns the
   * stream id.
   */
  open(
    destination: TunnelDestination,
    conn: NetConn | NativeHeld,
    opened?: StreamOpened,
  ): number {
    if (this.#state !== "ready") throw new RelaykitError("The tunnel link is not up", "ENOTCONN");
    const problem = destinationProblem(destination);
    // before the stream exists: a throw leaves nothing behind
    if (problem !== undefined) throw new RangeError(problem);
    const id = this.#nextId++;
    const s = newStream(id, destination, this.#streamWindow);
    s.opened = opened;
    this.#streams.set(id, s);
    if (this.#openTimeout > 0) {
      const ms = this.#openTimeout;
      s.openTimer = setTimeout(() => {
        this.#endStream(
          s,
          "connect-failed",
          linkError("ETIMEDOUT", `The tunnel peer did not answer stream ${id}'s OPEN in ${ms} ms`),
          true,
          true,
        );
      }, ms);
    }
    if ("native" in conn) {
      const nat = this.#nat;
      if (nat === undefined) throw new RelaykitError("The tunnel link is not native", "EINVAL");
      s.native = true;
      const r = nat.open(id, conn, encodeFrame({ type: "open", stream: id, destination }));
      if (r < 0) {
        // the OPEN never went: the stream ends here (after the caller knows its id)
        s.nativeGone = true;
        queueMicrotask(() =>
          this.#endStream(
            s,
            "reset",
            linkError("ECONNRESET", `Stream ${id}'s local connection went away`),
            false,
            false,
          )
        );
      }
      return id;
    }
    if (this.#nat !== undefined) {
      // the engine would take this stream's frames for a protocol error
      this.#streams.delete(id);
      throw new RelaykitError("A native tunnel link carries native connections only", "EINVAL");
    }
    this.#send({ type: "open", stream: id, destination });
    this.#attachConn(s, conn);
    return id;
  }

  /** A stream the native engine ended (FIN both ways, or its socket failed). */
  #nativeStreamEnd(
    id: number,
    how: "done" | "reset",
    code: string | undefined,
    bytesOut: number,
    bytesIn: number,
  ): void {
    const s = this.#streams.get(id);
    if (s === undefined || s.ended) return;
    s.nativeGone = true;
    s.bytesOut = bytesOut;
    s.bytesIn = bytesIn;
    if (how === "done") this.#endStream(s, "done", undefined, false, false);
    else {
      const c = code ?? "ECONNRESET";
      this.#endStream(
        s,
        "reset",
        linkError(c, `Stream ${id}'s socket failed (${c})`),
        false,
        false,
      );
    }
  }

  /** The server side: the stream's destination is connected. */
  attach(id: number, conn: NetConn | NativeConnected): boolean {
    const s = this.#streams.get(id);
    if (s === undefined || s.ended) return false;
    if ("native" in conn) {
      if (this.#nat === undefined) return false;
      this.#nat.accept(id, conn, encodeFrame({ type: "open-ok", stream: id }));
      return true;
    }
    if (this.#nat !== undefined) {
      const e = new RelaykitError("A native tunnel link carries native connections only", "EINVAL");
      this.refuse(id, e, "connect-failed");
      return false;
    }
    this.#send({ type: "open-ok", stream: id });
    this.#attachConn(s, conn);
    const early = s.early;
    s.early = [];
    for (const b of early) {
      this.#hold(-b.length);
      this.#toConn(s, b);
    }
    if (s.finRecv) conn.end();
    return true;
  }

  /** The server side: the stream's destination cannot be reached. */
  refuse(id: number, error: RelaykitError, reason: "connect-failed" | "refused"): void {
    const s = this.#streams.get(id);
    if (s === undefined || s.ended) return;
    const fail: TunnelFrame = {
      type: "open-fail",
      stream: id,
      code: error.code,
      message: error.message,
    };
    if (s.native && this.#nat !== undefined) {
      s.nativeGone = true;
      this.#nat.closeStream(id, true, encodeFrame(fail));
    } else this.#send(fail);
    this.#endStream(s, reason, error, false, false);
  }

  #attachConn(s: Stream, conn: NetConn): void {
    s.conn = conn;
    conn.start({
      data: (chunk) => {
        if (s.ended) return;
        s.out.push(chunk);
        this.#flushOut(s);
      },
      end: () => {
        if (s.ended) return;
        s.eof = true;
        this.#flushOut(s);
      },
      drain: () => {
        if (s.ended || s.backlog === 0) return;
        s.consumed += s.backlog;
        this.#hold(-s.backlog);
        s.backlog = 0;
        this.#grant(s);
      },
      close: (code) => {
        s.connClosed = true;
        if (s.ended) return;
        if (code === undefined && s.eof && s.finRecv) {
          this.#maybeDone(s); // its bytes may still wait for credit
          return;
        }
        const c = code ?? "ECONNRESET";
        this.#endStream(
          s,
          "reset",
          linkError(
            c,
            `Stream ${s.id}'s socket ${code === undefined ? "closed early" : "failed"} (${c})`,
          ),
          false,
          true,
        );
      },
    });
  }

  /** The streams hold n more bytes (less, when negative): the link is read while they hold under LINK_HELD_MAX. */
  #hold(n: number): void {
    const was = this.#held >= LINK_HELD_MAX;
    this.#held += n;
    const is = this.#held >= LINK_HELD_MAX;
    if (is && !was) this.#conn.pause();
    else if (was && !is && this.#state !== "closed") this.#conn.resume();
  }

  /** DATA for the socket; granted back once the socket takes it. */
  #toConn(s: Stream, data: Uint8Array): void {
    // behind bytes the socket has not taken: queued, granted on drain
    const behind = s.backlog > 0;
    const took = s.conn!.write(data);
    if (behind || !took) {
      s.backlog += data.length;
      this.#hold(data.length);
      return;
    }
    s.consumed += data.length;
    this.#grant(s);
  }

  #grant(s: Stream): void {
    if (s.finRecv || s.consumed < Math.min(this.#streamWindow / 4, 64 * 1024)) return;
    this.#send({ type: "window", stream: s.id, credit: s.consumed });
    s.allowed += s.consumed;
    s.consumed = 0;
  }

  /** Send what waits, as credit and the link allow; pause or resume the socket. */
  #flushOut(s: Stream): void {
    while (s.out.length > 0 && s.credit > 0 && !this.#congested && !s.ended) {
      const chunk = s.out[0]!;
      const n = Math.min(chunk.length, s.credit, MAX_FRAME_PAYLOAD);
      // a copy of a part, a view of a whole chunk (encodeFrame copies anyway)
      this.#send({ type: "data", stream: s.id, data: chunk.subarray(0, n) });
      s.credit -= n;
      s.bytesOut += n;
      if (n === chunk.length) s.out.shift();
      else s.out[0] = chunk.subarray(n);
    }
    if (s.ended) return;
    const stop = s.out.length > 0 || s.credit === 0 || this.#congested;
    if (stop && !s.paused) {
      s.paused = true;
      s.conn?.pause();
    } else if (!stop && s.paused && !s.eof) {
      s.paused = false;
      s.conn?.resume();
    }
    if (s.eof && s.out.length === 0 && !s.finSent) {
      s.finSent = true;
      this.#send({ type: "fin", stream: s.id });
      this.#maybeDone(s);
    }
  }

  #maybeDone(s: Stream): void {
    if (s.finSent && s.finRecv) this.#endStream(s, "done", undefined, false, false);
  }

  /**
   * End a stream: report it, and unless it ended cleanly close its socket
   * (reset) and tell the peer (RST) when `tellPeer`.
   */
  #endStream(
    s: Stream,
    reason: StreamEndReason,
    error: RelaykitError | undefined,
    reset: boolean,
    tellPeer: boolean,
  ): void {
    if (s.ended) return;
    s.ended = true;
    clearTimeout(s.openTimer);
    this.#nativeCounters(s);
    this.#hold(-streamBacklog(s));
    s.out = [];
    s.early = [];
    s.backlog = 0;
    this.#streams.delete(s.id);
    const owned = this.#settle(s, error);
    const rst: TunnelFrame | undefined = tellPeer
      ? {
        type: "rst",
        stream: s.id,
        code: error?.code ?? "ECONNRESET",
        message: error?.message ?? "",
      }
      : undefined;
    if (s.native) {
      if (!s.nativeGone) {
        s.nativeGone = true;
        this.#nat?.closeStream(s.id, reset, rst === undefined ? undefined : encodeFrame(rst));
      }
    } else {
      if (rst !== undefined) this.#send(rst);
      if (reason !== "done" && !owned) s.conn?.destroy(reset);
    }
    const end: TunnelStreamEnd = {
      id: s.id,
      destination: s.destination,
      reason,
      bytesOut: s.bytesOut,
      bytesIn: s.bytesIn,
      durationMs: Date.now() - s.startedAt,
    };
    if (error !== undefined) end.error = error;
    this.#h.streamEnd(end);
  }

  /**
   * A stream that ends before its OPEN was answered: tell its `opened`
   * (which then owns the socket). Returns whether it did.
   */
  #settle(s: Stream, error: RelaykitError | undefined): boolean {
    const opened = s.opened;
    if (opened === undefined) return false;
    s.opened = undefined;
    opened(
      error ?? linkError("ECONNRESET", `Stream ${s.id} ended before the tunnel peer answered`),
    );
    return true;
  }

  /** Reset one stream from this side (the owner closes it). */
  resetStream(id: number, code: string, message: string): void {
    const s = this.#streams.get(id);
    if (s !== undefined) this.#endStream(s, "closed", linkError(code, message), true, true);
  }

  // -------------------------------------------------------------------------
  // The link's end

  #onLinkEnd(): void {
    if (this.#state === "closed") return;
    if (this.#inboxWaiting()) {
      this.#endAfterInbox ??= () => this.#onLinkEnd();
      return;
    }
    try {
      this.#decoder.end();
    } catch (err) {
      // cut inside a frame: as lost as any other link that goes (a reset
      // may look like an EOF on some runtimes)
      this.#fail(
        "link-lost",
        linkError(
          "ECONNRESET",
          `Tunnel link to ${this.peer} lost mid-frame (${(err as Error).message})`,
        ),
      );
      return;
    }
    this.#fail(
      this.#goaway ? "goaway" : "link-lost",
      this.#goaway ??
        linkError("ECONNRESET", `Tunnel link to ${this.peer} lost (the peer closed it)`),
    );
  }

  #onLinkClose(code: string | undefined): void {
    if (this.#state === "closed") return;
    if (this.#inboxWaiting()) {
      this.#endAfterInbox ??= () => this.#onLinkClose(code);
      return;
    }
    this.#fail(
      "link-lost",
      linkError(code ?? "ECONNRESET", `Tunnel link to ${this.peer} lost (${code ?? "closed"})`),
    );
  }

  /** Close the link: every stream ends with reason "link-lost" (or "closed" for ours). */
  #fail(reason: LinkCloseReason, error: RelaykitError | undefined): void {
    if (this.#state === "closed") return;
    const wasReady = this.#state === "ready";
    this.#state = "closed";
    clearInterval(this.#timer);
    clearTimeout(this.#handshakeTimer);
    this.#inbox = [];
    const streamReason: StreamEndReason = reason === "closed" ? "closed" : "link-lost";
    const streamError = linkError(
      "RK_ELINK_LOST",
      `Stream lost with its tunnel link (${reason}${error ? `: ${error.message}` : ""})`,
    );
    for (const s of [...this.#streams.values()]) {
      this.#endStreamClosed(s, streamReason, streamError);
    }
    // what was written (a GOAWAY) goes out, then FIN; a link that does not
    // go is cut a moment later
    this.#conn.end();
    const cut = setTimeout(() => this.#conn.destroy(false), wasReady ? 1000 : 200);
    (cut as { unref?: () => void }).unref?.();
    this.#h.close(reason, error);
  }

  /** A native stream's counters, read from the engine before it drops the stream. */
  #nativeCounters(s: Stream): void {
    if (!s.native || s.nativeGone) return;
    const n = this.#nat?.streamStats(s.id);
    if (n === undefined) return;
    s.bytesOut = n[0];
    s.bytesIn = n[1];
  }

  #endStreamClosed(s: Stream, reason: StreamEndReason, error: RelaykitError): void {
    if (s.ended) return;
    s.ended = true;
    clearTimeout(s.openTimer);
    this.#nativeCounters(s);
    this.#streams.delete(s.id);
    if (!this.#settle(s, error)) s.conn?.destroy(true);
    const end: TunnelStreamEnd = {
      id: s.id,
      destination: s.destination,
      reason,
      error,
      bytesOut: s.bytesOut,
      bytesIn: s.bytesIn,
      durationMs: Date.now() - s.startedAt,
    };
    this.#h.streamEnd(end);
  }

  /** Close the link now, telling the peer (GOAWAY); streams end with "closed". */
  close(message = "shutting down"): void {
    if (this.#state === "closed") return;
    this.#send({ type: "goaway", code: "RK_ESHUTDOWN", message });
    this.#fail("closed", undefined);
  }

  /** Cut the link without a word (as a network failure would). */
  destroy(): void {
    this.#conn.destroy(true);
  }
}
