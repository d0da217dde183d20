/**
 * One stream of a tunnel link: its record (the flow-control counters each
 * way), and what is reported of it. The link (link.ts) moves the bytes.
 *
 * Theory of operation, per stream and direction:
 * - The sender may have at most `credit` bytes of DATA outstanding. Bytes
 *   read from its socket that do not fit wait in `out` and the socket is
 *   paused until a WINDOW frame gives credit back.
 * - The receiver writes DATA to its socket at once and grants the bytes
 *   back (WINDOW) only once its socket has taken them (write() returned
 *   true, or the drain after false). A destination that stops reading
 *   stops the grants, so the sender's credit runs out and only that stream
 *   stops: the receiver never holds more than one window for it.
 * - EOF on a socket becomes FIN once its bytes are out; FIN from the peer
 *   becomes a half-close of the socket after the bytes written before it.
 *   A stream is done when FIN went both ways. A socket error or reset
 *   becomes RST (and RST a reset of the socket).
 * - When the link goes, every stream's socket is reset (not closed with a
 *   FIN, which would look like a complete stream) with reason "link-lost".
 *   Nothing is replayed: what arrived arrived once, in order.
 *
 * @module
 */
import type { RelaykitError } from "../errors.ts";
import type { NetConn } from "../runtime/types.ts";
import type { TunnelDestination } from "./frame.ts";

/** Why a stream ended. */
export type StreamEndReason =
  | "done"
  | "reset"
  | "connect-failed"
  | "refused"
  | "link-lost"
  | "closed";

/**
 * One stream that ended, as tunnel clients and servers report it.
 *
 * @example
 * ```ts
 * import type { TunnelStreamEnd } from "@relaykit/relaykit";
 * const show = (e: TunnelStreamEnd) => `#${e.id} ${e.reason}: ${e.bytesOut} up, ${e.bytesIn} down`;
 * console.log(show({ id: 1, destination: { route: "db" }, reason: "done", bytesOut: 3, bytesIn: 5, durationMs: 1 }));
 * ```
 */
export interface TunnelStreamEnd {
  /** The stream's id on its link. */
  id: number;
  /** Where it went. */
  destination: TunnelDestination;
  /** Why it ended. */
  reason: StreamEndReason;
  /** What went wrong, unless it ended normally. */
  error?: RelaykitError;
  /** Bytes read from this side's socket and sent into the tunnel. */
  bytesOut: number;
  /** Bytes that came out of the tunnel and were written to this side's socket. */
  bytesIn: number;
  /** From open to end. */
  durationMs: number;
}

/**
 * Counters of one open stream.
 *
 * @example
 * ```ts
 * import type { TunnelStreamStats } from "@relaykit/relaykit";
 * const s: TunnelStreamStats = { id: 1, destination: { route: "db" }, bytesOut: 10, bytesIn: 0, backlog: 0, credit: 262134 };
 * console.log(`stream ${s.id}: ${s.bytesOut - s.bytesIn} bytes more up than down`);
 * ```
 */
export interface TunnelStreamStats {
  /** The stream's id on its link. */
  id: number;
  /** Where it goes. */
  destination: TunnelDestination;
  /** Bytes read from this side's socket and sent into the tunnel. */
  bytesOut: number;
  /** Bytes that came out of the tunnel for this side's socket. */
  bytesIn: number;
  /** Of those, bytes this side's socket has not taken yet (at most one window). */
  backlog: number;
  /** Bytes this side may still send before the peer grants more. */
  credit: number;
}

/** One stream's state, on one side of its link. */
export interface Stream {
  id: number;
  destination: TunnelDestination;
  startedAt: number;
  conn: NetConn | undefined;
  credit: number; // DATA we may still send
  out: Uint8Array[]; // read from conn, waiting for credit
  paused: boolean;
  allowed: number; // DATA the peer may still send
  consumed: number; // taken by conn, not granted back yet
  backlog: number; // written to conn, not taken yet
  early: Uint8Array[]; // DATA before conn is attached
  eof: boolean; // conn ended
  finSent: boolean;
  finRecv: boolean;
  connClosed: boolean;
  ended: boolean;
  bytesOut: number;
  bytesIn: number;
  /** The client side: told once whether OPEN succeeded (see StreamOpened). */
  opened: StreamOpened | undefined;
  /** Carried by the native engine (conn is undefined; counters live there). */
  native: boolean;
  /** The native engine dropped it already. */
  nativeGone: boolean;
  /** The client side: ends the stream if its OPEN is not answered in time. */
  openTimer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * Told once, on the client side, how a stream's OPEN went: undefined on
 * OPEN_OK; on OPEN_FAIL (or the stream ending before either: the link
 * lost, the socket closed) the error, whose code is the engine-wide one.
 * When it is called with an error the socket is the callback's to close:
 * the link does not touch it again.
 */
export type StreamOpened = (error: RelaykitError | undefined) => void;

/** A stream just opened, with `window` bytes of credit each way. */
export function newStream(id: number, destination: TunnelDestination, window: number): Stream {
  return {
    id,
    destination,
    startedAt: Date.now(),
    conn: undefined,
    credit: window,
    out: [],
    paused: false,
    allowed: window,
    consumed: 0,
    backlog: 0,
    early: [],
    eof: false,
    finSent: false,
    finRecv: false,
    connClosed: false,
    ended: false,
    bytesOut: 0,
    bytesIn: 0,
    opened: undefined,
    native: false,
    nativeGone: false,
    openTimer: undefined,
  };
}

/**
 * Bytes a stream's socket holds that it has not taken yet (DATA written to
 * it and not yet drained, or waiting for it to be attached).
 */
export function streamBacklog(s: Stream): number {
  return s.backlog + s.early.reduce((n, b) => n + b.length, 0);
}
