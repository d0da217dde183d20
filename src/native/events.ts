/**
 * The event records of relaykit.h, each type decoded once into an object
 * with named fields. Consumers switch on `type`; nobody else reads record
 * words.
 *
 * @module
 */
import type {
  ConnectionSnapshot,
  Counters,
  EndReason,
  InetEndpoint,
  ListenerTotals,
  OpenConnection,
} from "../types.ts";
import { ipv6Text } from "../protocol/ip.ts";
import { END, EV, EVENT_WORDS, HOLD, HOLD_SENT_SHIFT, STATE_NAMES, TEND, TEV } from "./symbols.ts";

/** A hooked direction: "aToB" (client to target) or "bToA". */
export type HookDirection = "aToB" | "bToA";

/**
 * One event of the native engine, decoded.
 *
 * @example
 * ```ts
 * import { type NativeEvent } from "@relaykit/relaykit/internals";
 * const describe = (ev: NativeEvent) => ev.type === "closed" ? ev.reason : ev.type;
 * console.log(typeof describe);
 * ```
 */
export type NativeEvent =
  /** A listener accepted connection `id` (its client's address, if inet). */
  | { type: "accept"; id: number; listener: number; remote?: InetEndpoint }
  /** Connection `id` connected its target and relays. */
  | { type: "connected"; id: number; listener: number }
  /** Connection or relay `id` ended; `err` is a negative code or 0. */
  | {
    type: "closed";
    id: number;
    /** The listener, or 0 for a relay. */
    listener: number;
    reason: EndReason;
    err: number;
    durationMs: number;
    counters: Counters;
  }
  /** The listener refused an accepted socket (a limit). */
  | { type: "rejected"; listener: number; err: number }
  /** accept(2) failed on the listener (EMFILE...). */
  | { type: "accept-error"; listener: number; err: number }
  /** The listener's fd is closed. */
  | { type: "listener-closed"; listener: number }
  /** The listener is closed and its last connection has ended. */
  | { type: "listener-drained"; listener: number; totals: ListenerTotals }
  /** An rk_connect_fd request ended: `fd` when `err` is 0. */
  | { type: "fd-connected"; id: number; fd: number; err: number }
  /**
   * A batch of `length` bytes is lent for the host's hook: its bytes are at
   * `address` until rk_hook_return(`token`).
   */
  | {
    type: "hook";
    id: number;
    listener: number;
    direction: HookDirection;
    length: number;
    token: number;
    address: number;
  }
  /** A held connection waits for a decision. */
  | {
    type: "hold";
    id: number;
    listener: number;
    /** Just accepted: nothing read yet (remote and local are set). */
    first: boolean;
    /** The client finished sending. */
    eof: boolean;
    /** The held bytes reached the maximum asked for. */
    full: boolean;
    /** A CONNECT decided with retry failed with `err`: decide again. */
    retry: boolean;
    /** Bytes held so far (`data`, or rk_hold_take copies them). */
    held: number;
    /** The held bytes, when the drain carried them (a copy of their own). */
    data?: Uint8Array;
    /** The failed connect's error (retry), or 0. */
    err: number;
    /**
     * The listener's built-in router hands the connection over (first is
     * set too) after sending this many handshake replies; undefined when
     * no router had it.
     */
    routed?: number;
    remote?: InetEndpoint;
    local?: InetEndpoint;
  }
  /** The connect a built-in router decided failed; the client got the failure reply. */
  | { type: "route-failed"; id: number; listener: number; err: number; target: InetEndpoint }
  /** A connection a built-in router sent to `target` ends with an error (its closed event follows). */
  | { type: "route-target"; id: number; listener: number; err: number; target: InetEndpoint }
  /**
   * The engine read a client's PROXY header itself (rk_listener_set_proxy),
   * or refused the client (`err`, then `code` and the client's address as
   * `source`).
   */
  | {
    type: "proxy";
    id: number;
    listener: number;
    /** 0, or the code of the refusal (RK_EPROXY, RK_EPROXY_UNTRUSTED). */
    err: number;
    /** A refusal: the parser's code (NativeCalls.proxyError), or 0. */
    code: number;
    /** A refusal: the bytes held; else the header's length. */
    length: number;
    /** A header came (else none came, and one is sent on). */
    header: boolean;
    version: 1 | 2;
    command: "proxy" | "local";
    transport: "stream" | "dgram" | "unspec";
    /** `source` and `destination` are the header's (else the connection's own). */
    fromHeader: boolean;
    /** The connection is handed to the host next (a first hold event follows). */
    handed: boolean;
    source?: InetEndpoint;
    destination?: InetEndpoint;
  }
  /** Tunnel `id` has bytes for the host (rk_tunnel_take). */
  | { type: "tunnel-rx"; id: number }
  /** A stream of tunnel `id` ended in the engine (its socket failed, or FIN both ways). */
  | {
    type: "tunnel-stream-end";
    id: number;
    stream: number;
    /** "done": FIN both ways; "reset": its socket failed with `err` (RST sent). */
    how: "done" | "reset";
    err: number;
    durationMs: number;
    /** Bytes from the stream's socket to the link, and from the link to it. */
    bytesOut: number;
    bytesIn: number;
  }
  /** Tunnel `id`'s link ended (`err` 0: the peer closed it); the tunnel is gone. */
  | { type: "tunnel-link-end"; id: number; err: number; midFrame: boolean }
  /** The TLS handshake of tunnel `id`'s link is done (rk_tunnel_new_tls). */
  | { type: "tunnel-tls-up"; id: number }
  /** The peer of tunnel `id` broke the protocol (RK_TPROB_* `problem`, details a, b). */
  | { type: "tunnel-protocol"; id: number; stream: number; problem: number; a: number; b: number }
  /** rk_test_post: event `seq` of thread `thread`. */
  | { type: "test"; thread: number; seq: number };

const REASONS: Record<number, EndReason> = {
  [END.DONE]: "done",
  [END.RESET]: "reset",
  [END.IDLE_TIMEOUT]: "idle-timeout",
  [END.CLOSED]: "closed",
  [END.CONNECT_FAILED]: "connect-failed",
  [END.ENGINE_CLOSED]: "engine-closed",
  [END.HOLD_TIMEOUT]: "decision-timeout",
};

const AF_INET = 2, AF_INET6 = 10;

/** The transports of an RK_EV_PROXY record. */
const TRANSPORTS = ["unspec", "stream", "dgram"] as const;
/** Host byte order: a record's address bytes sit in its words so. */
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Record word `i` (a closure per record costs JavaScriptCore dearly). */
function word(rec: Uint32Array, i: number): number {
  return rec[i] ?? 0;
}

/** A 64-bit counter from two record words at `i` (low, high). */
function u64(rec: Uint32Array, i: number): number {
  return (rec[i] ?? 0) + (rec[i + 1] ?? 0) * 2 ** 32;
}

/**
 * IPv4 addresses as text, by their record word: a listener's own address
 * and the clients that come again are made text once (a few hundred at
 * most; then it starts over).
 */
const v4Text = new Map<number, string>();
const V4_TEXT_MAX = 256;

/** An address of family `family` from the 16 record bytes at word `word`. */
function inetAt(
  rec: Uint32Array,
  family: number,
  word: number,
  port: number,
): InetEndpoint | undefined {
  if (family === AF_INET && LITTLE) { // the common case, without a view
    const a = rec[word] ?? 0;
    let host = v4Text.get(a);
    if (host === undefined) {
      host = `${a & 255}.${(a >>> 8) & 255}.${(a >>> 16) & 255}.${a >>> 24}`;
      if (v4Text.size >= V4_TEXT_MAX) v4Text.clear();
      v4Text.set(a, host);
    }
    return { host, port };
  }
  const bytes = new Uint8Array(rec.buffer, rec.byteOffset + word * 4, 16);
  if (family === AF_INET) return { host: bytes.subarray(0, 4).join("."), port };
  if (family === AF_INET6) return { host: ipv6Text(bytes), port };
  return undefined;
}

/**
 * A listener's counters from words 4..13 of the record at `at`
 * (RK_EV_LISTENER_DRAINED, rk_listener_counters).
 */
export function listenerTotals(rec: Uint32Array, at = 0): ListenerTotals {
  return {
    accepted: u64(rec, at + 4),
    ended: u64(rec, at + 6),
    bytesUp: u64(rec, at + 8),
    bytesDown: u64(rec, at + 10),
    peak: rec[at + 12] ?? 0,
    open: rec[at + 13] ?? 0,
  };
}

/** The words of one rk_listener_conns record. */
export const CONN_WORDS = 20;

/** Open connections over rk_listener_conns records (`n` of them in `words`, not copied). */
export class RecordSnapshot implements ConnectionSnapshot {
  readonly size: number;
  readonly total: number;
  readonly #w: Uint32Array;

  /**
   * @param words The records (read where they are).
   * @param n How many.
   * @param total How many were open.
   */
  constructor(words: Uint32Array, n: number, total: number) {
    this.#w = words;
    this.size = n;
    this.total = total;
  }

  id(i: number): number {
    return this.#w[i * CONN_WORDS] ?? 0;
  }

  up(i: number): number {
    return u64(this.#w, i * CONN_WORDS + 4);
  }

  down(i: number): number {
    return u64(this.#w, i * CONN_WORDS + 12);
  }

  at(i: number): OpenConnection {
    return openConnectionAt(this.#w, i * CONN_WORDS);
  }
}

/** The open connection in the rk_listener_conns record at word `at` of `out`. */
export function openConnectionAt(out: Uint32Array, at: number): OpenConnection {
  const rec = out.subarray(at, at + CONN_WORDS);
  const remote = inetAt(rec, rec[6] ?? 0, 8, rec[7] ?? 0);
  const s = rec[1] ?? 0;
  const c: OpenConnection = {
    id: rec[0] ?? 0,
    aToB: { read: u64(rec, 14), written: u64(rec, 4) },
    bToA: { read: u64(rec, 16), written: u64(rec, 12) },
    startedAt: u64(rec, 2),
    lastActivityAt: u64(rec, 18),
    state: STATE_NAMES[s] ?? "closing",
  };
  if (remote !== undefined) c.remote = remote;
  return c;
}

/**
 * Decode the record at `rec[at..at + EVENT_WORDS)` (the words are copied
 * where they are kept; read in place, without a view per record).
 * Undefined for a type this table does not know.
 */
export function decodeEvent(rec: Uint32Array, at = 0): NativeEvent | undefined {
  if (rec.length < at + EVENT_WORDS) return undefined;
  const id = word(rec, at + 1), aux = word(rec, at + 2), err = word(rec, at + 3) | 0;
  switch (word(rec, at)) {
    case EV.ACCEPT: {
      const remote = inetAt(rec, word(rec, at + 6), at + 8, word(rec, at + 7));
      return remote === undefined
        ? { type: "accept", id, listener: aux }
        : { type: "accept", id, listener: aux, remote };
    }
    case EV.CONNECTED:
      return { type: "connected", id, listener: aux };
    case EV.CLOSED:
      return {
        type: "closed",
        id,
        listener: aux,
        reason: REASONS[word(rec, at + 4)] ?? "reset",
        err,
        durationMs: word(rec, at + 5),
        counters: {
          aToB: { read: u64(rec, at + 8), written: u64(rec, at + 10) },
          bToA: { read: u64(rec, at + 12), written: u64(rec, at + 14) },
        },
      };
    case EV.REJECTED:
      return { type: "rejected", listener: aux, err };
    case EV.ACCEPT_ERROR:
      return { type: "accept-error", listener: aux, err };
    case EV.LISTENER_CLOSED:
      return { type: "listener-closed", listener: aux };
    case EV.LISTENER_DRAINED:
      return { type: "listener-drained", listener: aux, totals: listenerTotals(rec, at) };
    case EV.FD_CONNECTED:
      return { type: "fd-connected", id, fd: aux | 0, err };
    case EV.HOOK:
      return {
        type: "hook",
        id,
        listener: aux,
        direction: word(rec, at + 6) === 1 ? "bToA" : "aToB",
        length: word(rec, at + 7),
        token: word(rec, at + 8),
        // a user-space address fits a double exactly (at most 2^53)
        address: u64(rec, at + 10),
      };
    case EV.HOLD: {
      const flags = word(rec, at + 4), family = word(rec, at + 6);
      const first = (flags & HOLD.FIRST) !== 0, retry = (flags & HOLD.RETRY) !== 0;
      const ev: NativeEvent = {
        type: "hold",
        id,
        listener: aux,
        first,
        eof: (flags & HOLD.EOF) !== 0,
        full: (flags & HOLD.FULL) !== 0,
        retry,
        held: word(rec, at + 5),
        // word 3 is the local port on a first record, the error on a retry
        err: retry ? err : 0,
      };
      if ((flags & HOLD.ROUTED) !== 0) ev.routed = (flags >>> HOLD_SENT_SHIFT) & 0xff;
      if (first) {
        const remote = inetAt(rec, family, at + 8, word(rec, at + 7));
        const local = inetAt(rec, family, at + 12, word(rec, at + 3));
        if (remote !== undefined) ev.remote = remote;
        if (local !== undefined) ev.local = local;
      }
      return ev;
    }
    case EV.ROUTE_FAILED:
    case EV.ROUTE_TARGET: {
      const target = inetAt(rec, word(rec, at + 6), at + 8, word(rec, at + 7));
      if (target === undefined) return undefined; // cannot happen: always an address
      const type = word(rec, at) === EV.ROUTE_FAILED ? "route-failed" : "route-target";
      return { type, id, listener: aux, err, target };
    }
    case EV.PROXY: {
      const h = word(rec, at + 4), family = word(rec, at + 6), ports = word(rec, at + 7);
      const ev: NativeEvent = {
        type: "proxy",
        id,
        listener: aux,
        err,
        code: err === 0 ? 0 : h,
        length: word(rec, at + 5),
        header: err === 0 && (h & 0xf) !== 0,
        version: (h & 0xf) === 1 ? 1 : 2,
        command: ((h >> 4) & 0xf) === 1 ? "proxy" : "local",
        transport: TRANSPORTS[(h >> 8) & 0xf] ?? "unspec",
        fromHeader: err === 0 && (h & 0x1000) !== 0,
        handed: err === 0 && (h & 0x2000) !== 0,
      };
      const source = inetAt(rec, family, at + 8, ports & 0xffff);
      const destination = inetAt(rec, family, at + 12, ports >>> 16);
      if (source !== undefined) ev.source = source;
      if (destination !== undefined && err === 0) ev.destination = destination;
      return ev;
    }
    case EV.TUNNEL:
      switch (word(rec, at + 4)) {
        case TEV.RX:
          return { type: "tunnel-rx", id };
        case TEV.STREAM_END:
          return {
            type: "tunnel-stream-end",
            id,
            stream: aux,
            how: word(rec, at + 6) === TEND.DONE ? "done" : "reset",
            err,
            durationMs: word(rec, at + 5),
            bytesOut: u64(rec, at + 8),
            bytesIn: u64(rec, at + 10),
          };
        case TEV.LINK_END:
          return { type: "tunnel-link-end", id, err, midFrame: word(rec, at + 6) === 1 };
        case TEV.TLS_UP:
          return { type: "tunnel-tls-up", id };
        case TEV.PROTOCOL:
          return {
            type: "tunnel-protocol",
            id,
            stream: aux,
            problem: word(rec, at + 6),
            a: word(rec, at + 7),
            b: word(rec, at + 8),
          };
        default:
          return undefined;
      }
    case EV.TEST:
      return { type: "test", thread: id, seq: aux };
    default:
      return undefined;
  }
}
