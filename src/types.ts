/**
 * The vocabulary every layer shares: endpoints, counters, how a connection
 * ended, the original addresses from a PROXY header, TLS options. It sits at
 * the bottom of the tree (it imports only errors and the PROXY protocol's
 * types), so the runtime adapters, the engines and the proxy layer all speak
 * it without importing each other.
 *
 * @module
 */
import type { RelaykitError } from "./errors.ts";
import type { DecodedTlvs, ProxyHeader, Tlv } from "./protocol/proxy_protocol.ts";

/**
 * A TCP address or a Unix socket path.
 *
 * @example
 * ```ts
 * import { type Endpoint, formatEndpoint } from "@relaykit/relaykit";
 * const targets: Endpoint[] = [{ host: "db.internal", port: 5432 }, { path: "/run/db.sock" }];
 * console.log(targets.map(formatEndpoint));
 * ```
 */
export type Endpoint = { host: string; port: number } | { path: string };

/**
 * Address family preference for outbound connects.
 *
 * @example
 * ```ts
 * import { type FamilyPreference, TcpProxy } from "@relaykit/relaykit";
 * const family: FamilyPreference = "prefer-v6";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "localhost", port: 9 },
 *   family,
 * });
 * await proxy.close();
 * ```
 */
export type FamilyPreference = "any" | "prefer-v4" | "prefer-v6" | "only-v4" | "only-v6";

/**
 * Why a connection ended.
 *
 * @example
 * ```ts
 * import { type EndReason } from "@relaykit/relaykit";
 * const clean: EndReason[] = ["done", "closed"];
 * console.log(clean.includes("reset"));
 * ```
 */
export type EndReason =
  | "done"
  | "reset"
  | "idle-timeout"
  | "closed"
  | "connect-failed"
  | "engine-closed"
  | "decision-timeout";

/**
 * Byte counters of one direction.
 *
 * @example
 * ```ts
 * import { type DirectionCounters } from "@relaykit/relaykit";
 * const up: DirectionCounters = { read: 100, written: 90 }; // 10 bytes still in flight
 * console.log(up.read - up.written);
 * ```
 */
export interface DirectionCounters {
  /** Bytes read from the source. */
  read: number;
  /** Bytes written to the destination. */
  written: number;
}

/**
 * Counters of a connection. Side "a" is the accepted client (or the first
 * fd of a relay), side "b" the target (or the second fd).
 *
 * @example
 * ```ts
 * import { type Counters } from "@relaykit/relaykit";
 * const c: Counters = { aToB: { read: 10, written: 10 }, bToA: { read: 5, written: 5 } };
 * console.log(c.aToB.written + c.bToA.written);
 * ```
 */
export interface Counters {
  /** Bytes from a to b. */
  aToB: DirectionCounters;
  /** Bytes from b to a. */
  bToA: DirectionCounters;
}

/**
 * Live state of a connection.
 *
 * @example
 * ```ts
 * import { type ConnectionStats, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 * });
 * const stats: ConnectionStats | undefined = proxy.stats(1); // undefined: no such connection
 * console.log(stats?.state);
 * await proxy.close();
 * ```
 */
export interface ConnectionStats extends Counters {
  /** When it started, ms since the Unix epoch. */
  startedAt: number;
  /** When a byte last moved, ms since the Unix epoch. */
  lastActivityAt: number;
  /** Where it is in its life. */
  state: "held" | "connecting" | "relaying" | "closing";
}

/**
 * An open connection as {@linkcode TcpProxy.openConnections} lists it: its
 * live counters, with its id and client.
 *
 * @example
 * ```ts
 * import { type OpenConnection, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 * });
 * const open: OpenConnection[] = proxy.openConnections(); // none yet
 * console.log(open.length);
 * await proxy.close();
 * ```
 */
export interface OpenConnection extends ConnectionStats {
  /** Engine-wide connection id. */
  id: number;
  /** The client's address (absent for Unix sockets). */
  remote?: { host: string; port: number };
}

/**
 * The open connections of a proxy read in one pass
 * ({@linkcode TcpProxy.snapshot}): ids and byte counts without an object
 * per connection; `at(i)` makes connection `i` in full. Read it at once:
 * the next snapshot on the same engine reuses its memory.
 *
 * @example
 * ```ts
 * import { type ConnectionSnapshot, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 * });
 * const snap: ConnectionSnapshot = proxy.snapshot();
 * let up = 0;
 * for (let i = 0; i < snap.size; i++) up += snap.up(i);
 * console.log(snap.size, up);
 * await proxy.close();
 * ```
 */
export interface ConnectionSnapshot {
  /** How many connections it has. */
  readonly size: number;
  /** How many were open (more than `size` when only the oldest were asked for). */
  readonly total: number;
  /** The id of connection `i` (0 ≤ i < size; oldest, the lowest id, first). */
  id(i: number): number;
  /** Bytes connection `i` had written to its target. */
  up(i: number): number;
  /** Bytes connection `i` had written to its client. */
  down(i: number): number;
  /** Connection `i` in full. */
  at(i: number): OpenConnection;
}

/**
 * A proxy's counters since it started, kept by its engine whether or not
 * anyone listens for per-connection events (final once it has closed).
 *
 * @example
 * ```ts
 * import { type ProxyTotals, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 * });
 * const t: ProxyTotals = proxy.totals();
 * console.log(t.accepted, t.ended, t.bytesUp);
 * await proxy.close();
 * ```
 */
export interface ProxyTotals {
  /** Connections accepted (not those refused at a limit). */
  accepted: number;
  /** Connections that ended. */
  ended: number;
  /** Connections open now. */
  open: number;
  /** The most open at once. */
  peak: number;
  /** Bytes its connections wrote to their targets (the open ones' so far too). */
  bytesUp: number;
  /** Bytes its connections wrote to their clients (likewise). */
  bytesDown: number;
  /** Connections whose target could not be reached, by error code (counted as their ends reach JavaScript). */
  connectFailures: Record<string, number>;
}

/** {@linkcode ProxyTotals} as an engine keeps them (connect failures are counted above it). */
export type ListenerTotals = Omit<ProxyTotals, "connectFailures">;

/**
 * A connection that was accepted.
 *
 * @example
 * ```ts
 * import { type ConnectionInfo, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 * });
 * proxy.on("open", (c: ConnectionInfo) => console.log(c.id, c.remote));
 * await proxy.close();
 * ```
 */
export interface ConnectionInfo {
  /** Engine-wide connection id. */
  id: number;
  /** The client's address (absent for Unix sockets). */
  remote?: { host: string; port: number };
}

/**
 * The end of a connection.
 *
 * @example
 * ```ts
 * import { type ConnectionEnd, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 * });
 * proxy.on("close", (end: ConnectionEnd) => console.log(end.id, end.reason, end.error?.code));
 * await proxy.close();
 * ```
 */
export interface ConnectionEnd extends Counters {
  /** Connection id. */
  id: number;
  /** Why it ended. */
  reason: EndReason;
  /** What went wrong, for "reset", "connect-failed" and timeouts. */
  error?: RelaykitError;
  /** Lifetime in ms. */
  durationMs: number;
  /** Who the client really was, when a PROXY header was received or sent. */
  original?: OriginalInfo;
  /** The backend server it went to (proxies with a backend). */
  server?: string;
}

/**
 * Terminating TLS on a listener: PEM text of the certificate chain and key.
 *
 * @example
 * ```ts
 * import { type TlsServerOptions } from "@relaykit/relaykit";
 * const tls: TlsServerOptions = { cert: "-----BEGIN CERTIFICATE-----...", key: "-----BEGIN PRIVATE KEY-----..." };
 * console.log(Object.keys(tls)); // TcpProxy's `tls` option also takes file paths
 * ```
 */
export interface TlsServerOptions {
  /** Certificate chain, PEM. */
  cert: string;
  /** Private key, PEM. */
  key: string;
}

/**
 * Originating TLS to a target.
 *
 * @example
 * ```ts
 * import { TcpProxy, type TlsClientOptions } from "@relaykit/relaykit";
 * const tls: TlsClientOptions = { servername: "db.internal" };
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 *   targetTls: tls,
 * });
 * await proxy.close();
 * ```
 */
export interface TlsClientOptions {
  /** SNI and the name to verify. @default the target's host name */
  servername?: string;
  /** Trusted CA certificates, PEM. @default the runtime's */
  ca?: string;
  /** Verify the target's certificate. @default true */
  rejectUnauthorized?: boolean;
}

/**
 * A TCP address.
 *
 * @example
 * ```ts
 * import { type InetEndpoint } from "@relaykit/relaykit";
 * const client: InetEndpoint = { host: "2001:db8::1", port: 443 };
 * console.log(`[${client.host}]:${client.port}`);
 * ```
 */
export interface InetEndpoint {
  /** Numeric address ("192.0.2.1", "2001:db8::1"). */
  host: string;
  /** Port. */
  port: number;
}

/**
 * Who a connection really comes from.
 *
 * @example
 * ```ts
 * import { type OriginalInfo, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 *   acceptProxy: { mode: "detect" },
 * });
 * proxy.on("original", (o: OriginalInfo) => console.log(o.source, o.tlvs?.authority));
 * await proxy.close();
 * ```
 */
export interface OriginalInfo {
  /** Connection id. */
  id: number;
  /** The original client: from the PROXY header, else the peer itself. */
  source?: InetEndpoint;
  /** The address the client connected to, likewise. */
  destination?: InetEndpoint;
  /** The PROXY header the client sent, if it sent one. */
  header?: ProxyHeader;
  /** Its TLVs, decoded. */
  tlvs?: DecodedTlvs;
}

/**
 * Sending a PROXY protocol header to the target before any client byte.
 *
 * @example
 * ```ts
 * import { type SendProxyOptions } from "@relaykit/relaykit";
 * const v2: SendProxyOptions = { version: 2, uniqueId: true, authority: "app.internal", crc32c: true };
 * console.log(v2.version);
 * ```
 */
export interface SendProxyOptions {
  /** Header version. */
  version: 1 | 2;
  /** v2: a UNIQUE_ID TLV: `true` for a random 32-character id, or one per connection. */
  uniqueId?: boolean | ((conn: OriginalInfo) => string | Uint8Array);
  /** v2: an AUTHORITY TLV (the host name the client asked for). */
  authority?: string | ((conn: OriginalInfo) => string | undefined);
  /** v2: more TLVs, as they are. */
  tlvs?: readonly Tlv[] | ((conn: OriginalInfo) => readonly Tlv[]);
  /** v2: a CRC32C TLV over the header. @default false */
  crc32c?: boolean;
}

/**
 * Describe an endpoint for messages: "host:port", "[v6]:port" or the path.
 *
 * @example
 * ```ts
 * import { formatEndpoint } from "@relaykit/relaykit";
 * console.log(formatEndpoint({ host: "::1", port: 80 })); // [::1]:80
 * ```
 */
export function formatEndpoint(e: Endpoint): string {
  if ("path" in e) return e.path;
  return e.host.includes(":") && !e.host.startsWith("[")
    ? `[${e.host}]:${e.port}`
    : `${e.host}:${e.port}`;
}

/**
 * Whether two endpoints name one socket address: the same path, or the same
 * port on hosts that are equal once brackets, case, "" or "*" (any) and
 * "localhost" are put aside.
 */
export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  if ("path" in a || "path" in b) return "path" in a && "path" in b && a.path === b.path;
  const norm = (h: string) => {
    const x = h.replace(/^\[|\]$/g, "").toLowerCase();
    return x === "" || x === "*" ? "0.0.0.0" : x === "localhost" ? "127.0.0.1" : x;
  };
  return a.port === b.port && norm(a.host) === norm(b.host);
}

/** "Connection 5 to "host:port"", or without a target when it had none yet. */
export function connectionTo(id: number, target: Endpoint | undefined): string {
  return target === undefined
    ? `Connection ${id}`
    : `Connection ${id} to "${formatEndpoint(target)}"`;
}

/** The message start for a failed connect to `target`. */
export function connectFailure(target: Endpoint): string {
  return `Cannot connect to "${formatEndpoint(target)}"`;
}

/** The start of every message about a listener that cannot bind `at`. */
export function listenFailure(at: Endpoint): string {
  return `Cannot listen on "${formatEndpoint(at)}"`;
}

/**
 * Parse "HOST:PORT", "[V6]:PORT", ":PORT" (all IPv4 interfaces),
 * "unix:/path" or "/path" into an endpoint.
 *
 * @param text What the user wrote.
 * @param what Its name, for the error message ("--listen").
 * @throws {RangeError} with a message naming `what` and the text.
 * @example
 * ```ts
 * import { parseEndpoint } from "@relaykit/relaykit";
 * console.log(parseEndpoint("[::1]:8080")); // { host: "::1", port: 8080 }
 * ```
 */
export function parseEndpoint(text: string, what = "address"): Endpoint {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (path === "") throw new RangeError(`${what}: "${text}" has no path after "unix:"`);
    return { path };
  }
  if (text.startsWith("/") || text.startsWith("./")) return { path: text };
  let host: string, portText: string;
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    if (end < 0 || text[end + 1] !== ":") {
      throw new RangeError(`${what}: "${text}" is not [IPV6]:PORT`);
    }
    host = text.slice(1, end);
    portText = text.slice(end + 2);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) throw new RangeError(`${what}: "${text}" has no port (HOST:PORT)`);
    host = text.slice(0, colon);
    if (host.includes(":")) {
      throw new RangeError(`${what}: "${text}" looks like IPv6; write it as [${host}]:PORT`);
    }
    portText = text.slice(colon + 1);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new RangeError(`${what}: "${portText}" in "${text}" is not a port from 0 to 65535`);
  }
  return { host: host === "" ? "0.0.0.0" : host, port: Number(portText) };
}
