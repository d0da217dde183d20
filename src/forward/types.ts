/**
 * The interface both engines implement. proxy/ talks only to this; it never
 * knows which engine moves the bytes.
 *
 * @module
 */
import type { RelaykitError } from "../errors.ts";
import type { DataHooks } from "./hooks.ts";

/** A TCP address or a Unix socket path. */
export type Endpoint = { host: string; port: number } | { path: string };

/** Address family preference for outbound connects. */
export type FamilyPreference = "any" | "prefer-v4" | "prefer-v6" | "only-v4" | "only-v6";

/** Why a connection ended. */
export type EndReason =
  | "done"
  | "reset"
  | "idle-timeout"
  | "closed"
  | "connect-failed"
  | "engine-closed";

/** Byte counters of one direction. */
export interface DirectionCounters {
  /** Bytes read from the source. */
  read: number;
  /** Bytes written to the destination. */
  written: number;
}

/**
 * Counters of a connection. Side "a" is the accepted client (or the first
 * fd of a relay), side "b" the target (or the second fd).
 */
export interface Counters {
  /** Bytes from a to b. */
  aToB: DirectionCounters;
  /** Bytes from b to a. */
  bToA: DirectionCounters;
}

/** Live state of a connection. */
export interface ConnectionStats extends Counters {
  /** When it started, ms since the Unix epoch. */
  startedAt: number;
  /** When a byte last moved, ms since the Unix epoch. */
  lastActivityAt: number;
  /** Where it is in its life. */
  state: "connecting" | "relaying" | "closing";
}

/** A connection that was accepted. */
export interface ConnectionInfo {
  /** Engine-wide connection id. */
  id: number;
  /** The client's address (absent for Unix sockets). */
  remote?: { host: string; port: number };
}

/** The end of a connection. */
export interface ConnectionEnd extends Counters {
  /** Connection id. */
  id: number;
  /** Why it ended. */
  reason: EndReason;
  /** What went wrong, for "reset", "connect-failed" and timeouts. */
  error?: RelaykitError;
  /** Lifetime in ms. */
  durationMs: number;
}

/** What a proxy listener needs to know. */
export interface ProxySpec {
  /** Where to listen. Port 0 picks a free port. */
  listen: Endpoint;
  /** Where each connection goes. */
  target: Endpoint;
  /** listen(2) backlog. */
  backlog: number;
  /** SO_REUSEPORT, so several processes can share the port. */
  reusePort: boolean;
  /** Concurrent connections on this listener; 0 is no limit. */
  maxConnections: number;
  /** Close a connection after this many ms without a byte moving; 0 is never. */
  idleTimeout: number;
  /** Give up connecting to the target after this many ms; 0 is never. */
  connectTimeout: number;
  /** Which address family to try first for a target name. */
  family: FamilyPreference;
  /** Source address to bind outbound connections to. */
  bindAddress: string | undefined;
  /** Data hooks per direction (a is the client). */
  hooks: DataHooks;
}

/** What an engine reports about a proxy listener. */
export interface ProxyCallbacks {
  /** A connection was accepted. */
  open(info: ConnectionInfo): void;
  /** Its target connected; bytes flow. */
  connected(id: number): void;
  /** It ended. */
  close(end: ConnectionEnd): void;
  /** A connection was refused (limit) or accept(2) failed. */
  reject(error: RelaykitError): void;
  /** A hook failed; its connection is being closed. */
  hookFailed(error: RelaykitError): void;
  /** The listening socket is closed. */
  stopped(): void;
  /** Closed, and its last connection has ended: nothing more will come. */
  drained(): void;
}

/** Which per-connection events a proxy's owner wants. Errors always come. */
export interface EventInterest {
  /** Each accepted connection. */
  open: boolean;
  /** Each connection whose target connected. */
  connected: boolean;
  /** Each connection that ended, also cleanly. */
  close: boolean;
}

/** A running proxy listener inside an engine. */
export interface ProxyHandle {
  /** The address actually bound (the port filled in). */
  readonly address: Endpoint;
  /** Stop accepting; `stopped` follows. Established connections go on. */
  stopAccepting(): void;
  /** Reset every open connection (reason "closed"). */
  abortAll(): void;
  /** Number of open connections. */
  activeConnections(): number;
  /** Which per-connection events to report from now on. */
  setInterest(interest: EventInterest): void;
  /** Close one connection: graceful (flush, then FIN) or abort (reset). */
  closeConnection(id: number, mode: "graceful" | "abort"): void;
  /** Live counters of one connection, or undefined once it ended. */
  connectionStats(id: number): ConnectionStats | undefined;
}

/** An engine: native (C workers) or stream (runtime sockets). */
export interface ForwardEngine {
  /** Which engine this is. */
  readonly name: "native" | "stream";
  /** Bind, then accept and relay every connection to the target. */
  startProxy(spec: ProxySpec, callbacks: ProxyCallbacks): Promise<ProxyHandle>;
}

/** Describe an endpoint for messages: "host:port", "[v6]:port" or the path. */
export function formatEndpoint(e: Endpoint): string {
  if ("path" in e) return e.path;
  return e.host.includes(":") && !e.host.startsWith("[")
    ? `[${e.host}]:${e.port}`
    : `${e.host}:${e.port}`;
}

/** The message start for a failed connect to `target`. */
export function connectFailure(target: Endpoint): string {
  return `Cannot connect to "${formatEndpoint(target)}"`;
}
