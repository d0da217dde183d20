/**
 * The event records of relaykit.h, each type decoded once into an object
 * with named fields. Consumers switch on `type`; nobody else reads record
 * words.
 *
 * @module
 */
import type { Counters, EndReason, InetEndpoint } from "../types.ts";
import { ipv6Text } from "../protocol/ip.ts";
import { END, EV, EVENT_WORDS, HOLD, HOLD_SENT_SHIFT } from "./symbols.ts";

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
  | { type: "listener-drained"; listener: number }
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
    /** Bytes held so far (rk_hold_take copies them). */
    held: number;
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

/** Host byte order: a record's address bytes sit in its words so. */
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A 64-bit counter from two record words at `i` (low, high). */
function u64(rec: Uint32Array, i: number): number {
  return (rec[i] ?? 0) + (rec[i + 1] ?? 0) * 2 ** 32;
}

/** An address of family `family` from the 16 record bytes at word `word`. */
function inetAt(
  rec: Uint32Array,
  family: number,
  word: number,
  port: number,
): InetEndpoint | undefined {
  if (family === AF_INET && LITTLE) { // the common case, without a view
    const a = rec[word] ?? 0;
    return { host: `${a & 255}.${(a >>> 8) & 255}.${(a >>> 16) & 255}.${a >>> 24}`, port };
  }
  const bytes = new Uint8Array(rec.buffer, rec.byteOffset + word * 4, 16);
  if (family === AF_INET) return { host: bytes.subarray(0, 4).join("."), port };
  if (family === AF_INET6) return { host: ipv6Text(bytes), port };
  return undefined;
}

/**
 * Decode the record at `rec[0..EVENT_WORDS)` (the words are copied where
 * they are kept). Undefined for a type this table does not know.
 */
export function decodeEvent(rec: Uint32Array): NativeEvent | undefined {
  if (rec.length < EVENT_WORDS) return undefined;
  const w = (i: number) => rec[i] ?? 0;
  const id = w(1), aux = w(2), err = w(3) | 0;
  switch (w(0)) {
    case EV.ACCEPT: {
      const remote = inetAt(rec, w(6), 8, w(7));
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
        reason: REASONS[w(4)] ?? "reset",
        err,
        durationMs: w(5),
        counters: {
          aToB: { read: u64(rec, 8), written: u64(rec, 10) },
          bToA: { read: u64(rec, 12), written: u64(rec, 14) },
        },
      };
    case EV.REJECTED:
      return { type: "rejected", listener: aux, err };
    case EV.ACCEPT_ERROR:
      return { type: "accept-error", listener: aux, err };
    case EV.LISTENER_CLOSED:
      return { type: "listener-closed", listener: aux };
    case EV.LISTENER_DRAINED:
      return { type: "listener-drained", listener: aux };
    case EV.FD_CONNECTED:
      return { type: "fd-connected", id, fd: aux | 0, err };
    case EV.HOOK:
      return {
        type: "hook",
        id,
        listener: aux,
        direction: w(6) === 1 ? "bToA" : "aToB",
        length: w(7),
        token: w(8),
        // a user-space address fits a double exactly (at most 2^53)
        address: u64(rec, 10),
      };
    case EV.HOLD: {
      const flags = w(4), family = w(6);
      const first = (flags & HOLD.FIRST) !== 0, retry = (flags & HOLD.RETRY) !== 0;
      const ev: NativeEvent = {
        type: "hold",
        id,
        listener: aux,
        first,
        eof: (flags & HOLD.EOF) !== 0,
        full: (flags & HOLD.FULL) !== 0,
        retry,
        held: w(5),
        // word 3 is the local port on a first record, the error on a retry
        err: retry ? err : 0,
      };
      if ((flags & HOLD.ROUTED) !== 0) ev.routed = (flags >>> HOLD_SENT_SHIFT) & 0xff;
      if (first) {
        const remote = inetAt(rec, family, 8, w(7));
        const local = inetAt(rec, family, 12, w(3));
        if (remote !== undefined) ev.remote = remote;
        if (local !== undefined) ev.local = local;
      }
      return ev;
    }
    case EV.ROUTE_FAILED:
    case EV.ROUTE_TARGET: {
      const target = inetAt(rec, w(6), 8, w(7));
      if (target === undefined) return undefined; // cannot happen: always an address
      const type = w(0) === EV.ROUTE_FAILED ? "route-failed" : "route-target";
      return { type, id, listener: aux, err, target };
    }
    case EV.TEST:
      return { type: "test", thread: id, seq: aux };
    default:
      return undefined;
  }
}
