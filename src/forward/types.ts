/**
 * The interface both engines implement. proxy/ talks only to this; it never
 * knows which engine moves the bytes.
 *
 * @module
 */
import type { HoldDecision } from "../decision.ts";
import type { RelaykitError } from "../errors.ts";
import type { DataHooks } from "./hooks.ts";
import type { EngineRouter, RuleTable } from "../native/router.ts";
import type { ProxyFront } from "../native/calls.ts";
import type {
  ConnectionEnd,
  ConnectionInfo,
  ConnectionSnapshot,
  ConnectionStats,
  Endpoint,
  FamilyPreference,
  InetEndpoint,
  ListenerTotals,
  OpenConnection,
  OriginalInfo,
  TlsServerOptions,
} from "../types.ts";

export type { EngineRouter, RuleTable };

export type { ProxyFront } from "../native/calls.ts";

/**
 * What an engine that reads PROXY headers itself (ProxySpec.front) found
 * in a client's: the original client, or why the client was closed.
 *
 * @example
 * ```ts
 * import { type FrontResult } from "@relaykit/relaykit/internals";
 * const seen = (r: FrontResult) => "original" in r ? r.original.source : r.refused;
 * console.log(typeof seen);
 * ```
 */
export type FrontResult =
  /**
   * A header was read (or none came: `original.header` is undefined),
   * `length` bytes. `handed`: the connection comes to `held` next, the
   * header at the front of its bytes; else the engine connected it.
   */
  | { id: number; original: OriginalInfo; length: number; handed: boolean }
  | { id: number; remote?: InetEndpoint; refused: "untrusted" }
  | { id: number; remote?: InetEndpoint; refused: "eof"; held: number }
  | { id: number; remote?: InetEndpoint; refused: "malformed"; code: string; message: string };

export type {
  ConnectionEnd,
  ConnectionInfo,
  ConnectionSnapshot,
  ConnectionStats,
  Counters,
  DirectionCounters,
  Endpoint,
  EndReason,
  FamilyPreference,
  InetEndpoint,
  ListenerTotals,
  OpenConnection,
  OriginalInfo,
  ProxyTotals,
  TlsClientOptions,
  TlsServerOptions,
} from "../types.ts";
export { connectFailure, connectionTo, formatEndpoint, listenFailure } from "../types.ts";

/**
 * A snapshot over connections already made as objects (the stream engine's,
 * and none).
 *
 * @example
 * ```ts
 * import { ArraySnapshot } from "@relaykit/relaykit/internals";
 * console.log(new ArraySnapshot([]).size); // 0
 * ```
 */
export class ArraySnapshot implements ConnectionSnapshot {
  readonly #list: readonly OpenConnection[];
  /** How many were open. */
  readonly total: number;

  /**
   * A snapshot of `list`, in its order.
   *
   * @param list The connections.
   * @param total How many were open (`list` may be the oldest of them).
   */
  constructor(list: readonly OpenConnection[], total = list.length) {
    this.#list = list;
    this.total = total;
  }

  /** How many. */
  get size(): number {
    return this.#list.length;
  }

  /** Connection `i`'s id. */
  id(i: number): number {
    return this.#list[i]!.id;
  }

  /** Bytes connection `i` wrote to its target. */
  up(i: number): number {
    return this.#list[i]!.aToB.written;
  }

  /** Bytes connection `i` wrote to its client. */
  down(i: number): number {
    return this.#list[i]!.bToA.written;
  }

  /** Connection `i`. */
  at(i: number): OpenConnection {
    return this.#list[i]!;
  }
}
export type { HoldDecision } from "../decision.ts";

/**
 * A connection held for a decision (see {@link ProxySpec.hold}).
 *
 * @example
 * ```ts
 * import { type HeldConnection } from "@relaykit/relaykit/internals";
 * const held: HeldConnection = { id: 7, remote: { host: "192.0.2.1", port: 5000 } };
 * console.log(held.local ?? "a Unix socket peer has no addresses");
 * ```
 */
export interface HeldConnection {
  /** Engine-wide connection id. */
  id: number;
  /** The client's address (absent for Unix sockets). */
  remote?: InetEndpoint;
  /** The address the client connected to (absent for Unix sockets). */
  local?: InetEndpoint;
}

/**
 * What a held connection's owner sees each time something arrives.
 *
 * @example
 * ```ts
 * import { type HeldUpdate } from "@relaykit/relaykit/internals";
 * const first: HeldUpdate = { conn: { id: 1 }, data: new Uint8Array(), first: true, eof: false };
 * console.log(first.first && first.data.length === 0);
 * ```
 */
export interface HeldUpdate {
  /** The connection. */
  conn: HeldConnection;
  /** Every byte the client sent so far (none at first, unless `ahead`). */
  data: Uint8Array;
  /** Just accepted: nothing was read yet (unless `ahead`). */
  first: boolean;
  /**
   * A first update that already holds what the client had sent when it
   * was accepted (`ProxySpec.hold.first`): nobody has seen "nothing yet".
   */
  ahead?: true;
  /** The client finished sending. */
  eof: boolean;
  /**
   * A connect decided with `retry` failed: decide again (another target,
   * or close). The bytes to send and the reply are kept: a new decision
   * without `toTarget`/`toClient` sends them.
   */
  retry?: RelaykitError;
}

/**
 * What a proxy listener needs to know.
 *
 * @example
 * ```ts
 * import { type ProxySpec } from "@relaykit/relaykit/internals";
 * const spec: ProxySpec = {
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 5432 },
 *   backlog: 511,
 *   reusePort: false,
 *   maxConnections: 1000,
 *   idleTimeout: 60_000,
 *   connectTimeout: 3_000,
 *   family: "any",
 *   bindAddress: undefined,
 *   hooks: {},
 * };
 * console.log(spec.maxConnections);
 * ```
 */
export interface ProxySpec {
  /** Where to listen. Port 0 picks a free port. */
  listen: Endpoint;
  /** Where each connection goes (undefined: held connections are decided one by one). */
  target: Endpoint | undefined;
  /** listen(2) backlog. */
  backlog: number;
  /** SO_REUSEPORT, so several processes can share the port. */
  reusePort: boolean;
  /**
   * An inherited listening socket (socket activation) to accept on instead
   * of binding `listen`. The native engine accepts on a duplicate (the fd
   * stays open for a later listener); the stream engine takes the fd itself
   * and closes it with the listener.
   */
  fd?: number | undefined;
  /**
   * A running proxy on the same address whose socket this one takes over
   * (its dupListener), when it has one to give: the two accept from one
   * queue, so closing the old one resets nobody waiting to be accepted.
   */
  replaces?: ProxyHandle | undefined;
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
  /**
   * Hold each connection until its owner decides where it goes
   * (`ProxyCallbacks.held`, `ProxyHandle.readMore` and `decide`) instead of
   * connecting to `target`; undecided after `timeout` ms (0: never), it
   * ends with "decision-timeout".
   */
  hold?: {
    timeout: number;
    /**
     * Read up to this many bytes the client has already sent before the
     * first update (`HeldUpdate.ahead`), saving a round trip where clients
     * speak first; 0 or undefined: none. An engine may ignore it.
     */
    first?: number;
  };
  /**
   * With `hold`: a built-in router (SOCKS, HTTP CONNECT) the engine may run
   * itself, handing over to `held` only what its owner must see. The stream
   * engine ignores it (its owner's route function decides every
   * connection, with the same result).
   */
  router?: { router: EngineRouter; routeLimit: number } | undefined;
  /**
   * With `hold`: the PROXY header phase, for an engine that runs it itself
   * (the native one, in C), reporting each header (or refusal) to
   * `proxied`; with `front.decides` it then connects to `target` without
   * asking `held`, else it hands the connection to `held` with the header
   * read. An engine that cannot ignores it and holds as usual.
   */
  front?: ProxyFront;
  /** Terminate TLS on the listener (stream engine only). */
  tls?: TlsServerOptions;
}

/**
 * What an engine reports about a proxy listener.
 *
 * @example
 * ```ts
 * import { type ProxyCallbacks } from "@relaykit/relaykit/internals";
 * const quiet: ProxyCallbacks = {
 *   open: () => {},
 *   connected: () => {},
 *   close: (end) => console.log(end.reason),
 *   reject: (err) => console.error(err.message),
 *   hookFailed: (err) => console.error(err.message),
 *   stopped: () => {},
 *   drained: () => console.log("drained"),
 * };
 * console.log(Object.keys(quiet).length);
 * ```
 */
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
  /** A held connection was accepted or sent more (ProxySpec.hold). */
  held?(update: HeldUpdate): void;
  /** The engine read a client's PROXY header itself, or refused it (ProxySpec.front). */
  proxied?(result: FrontResult): void;
  /** The listening socket is closed. */
  stopped(): void;
  /** Closed, and its last connection has ended: nothing more will come. */
  drained(): void;
}

/**
 * Which per-connection events a proxy's owner wants. Errors always come.
 *
 * @example
 * ```ts
 * import { type EventInterest } from "@relaykit/relaykit/internals";
 * const onlyEnds: EventInterest = { open: false, connected: false, close: true };
 * console.log(onlyEnds);
 * ```
 */
export interface EventInterest {
  /** Each accepted connection. */
  open: boolean;
  /** Each connection whose target connected. */
  connected: boolean;
  /** Each connection that ended, also cleanly. */
  close: boolean;
  /** The original client of each PROXY header an engine reads itself (ProxySpec.front). */
  original?: boolean;
}

/**
 * A running proxy listener inside an engine.
 *
 * @example
 * ```ts
 * import { chooseEngine, type ProxyHandle } from "@relaykit/relaykit/internals";
 * const { engine } = chooseEngine("stream");
 * const handle: ProxyHandle = await engine.startProxy({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 *   backlog: 16,
 *   reusePort: false,
 *   maxConnections: 0,
 *   idleTimeout: 0,
 *   connectTimeout: 1000,
 *   family: "any",
 *   bindAddress: undefined,
 *   hooks: {},
 * });
 * handle.start({
 *   open: () => {},
 *   connected: () => {},
 *   close: () => {},
 *   reject: () => {},
 *   hookFailed: () => {},
 *   stopped: () => {},
 *   drained: () => {},
 * });
 * console.log(handle.activeConnections());
 * handle.stopAccepting();
 * ```
 */
export interface ProxyHandle {
  /** The address actually bound (the port filled in). */
  readonly address: Endpoint;
  /**
   * Start accepting, reporting to `callbacks`. Call it once, right after
   * `startProxy` resolved (before awaiting anything else): until then the
   * socket is bound but nothing is accepted from it.
   *
   * @throws {RelaykitError} when accepting cannot start.
   */
  start(callbacks: ProxyCallbacks): void;
  /** Stop accepting; `stopped` follows. Established connections go on. */
  stopAccepting(): void;
  /** Reset every open connection (reason "closed"). */
  abortAll(): void;
  /** Number of open connections. */
  activeConnections(): number;
  /**
   * A new fd for the listening socket, owned by the caller (see
   * TcpProxyOptions.replaces), or undefined: the stream engine's sockets
   * have none to give, and a listener that stopped accepting keeps none.
   */
  dupListener?(): number | undefined;
  /** The listener's counters, kept without per-connection events (final once drained). */
  totals(): ListenerTotals;
  /**
   * The open connections, oldest first, read in one pass: all of them or
   * the `first` oldest. Valid until the next `snapshot()` of any proxy on
   * the same engine (read it at once).
   */
  snapshot(first?: number): ConnectionSnapshot;
  /** Which per-connection events to report from now on. */
  setInterest(interest: EventInterest): void;
  /** Close one connection: graceful (flush, then FIN) or abort (reset). */
  closeConnection(id: number, mode: "graceful" | "abort"): void;
  /**
   * Stop running ProxySpec.front in the engine: every new connection is
   * held for `held` from now on (after the front's options changed).
   */
  dropFront?(): void;
  /** Live counters of one connection, or undefined once it ended. */
  connectionStats(id: number): ConnectionStats | undefined;
  /**
   * Read more of a held connection: `held` is called again once at least
   * one more byte came, the client ended, or `max` bytes are held in all.
   */
  readMore(id: number, max: number): void;
  /** Send a few bytes (a handshake's reply) to a held client; it stays held. */
  sendHeld(id: number, data: Uint8Array): void;
  /**
   * The route answered a first update with none of the client's bytes by
   * waiting (true) or otherwise (false). After a wait, an engine may hold
   * back the first update of later clients that have sent nothing yet
   * until their first bytes come (the route would wait again): one update,
   * not two; the first other answer stops that for good, since a route that
   * answers before the client speaks must be asked at once.
   */
  firstAnswered?(waited: boolean): void;
  /**
   * Decide where a held connection goes (once). Returns the error when the
   * decision cannot even start (a file that cannot be opened); the
   * connection is still held then, to be decided again.
   */
  decide(id: number, decision: HoldDecision): RelaykitError | undefined;
  /**
   * From now on, let the engine run this built-in router on new
   * connections (undefined: none); see `ProxySpec.router`. Engines that
   * cannot, ignore it.
   */
  setRouter(router: ProxySpec["router"]): void;
}

/**
 * An engine: native (C workers) or stream (runtime sockets).
 *
 * @example
 * ```ts
 * import { chooseEngine, type ForwardEngine } from "@relaykit/relaykit/internals";
 * const engine: ForwardEngine = chooseEngine("stream").engine;
 * console.log(engine.name); // stream
 * ```
 */
export interface ForwardEngine {
  /** Which engine this is. */
  readonly name: "native" | "stream";
  /**
   * Bind; `ProxyHandle.start` then accepts and relays every connection to
   * the target (or holds it, with `ProxySpec.hold`).
   *
   * @throws {RelaykitError} when the address cannot be bound.
   */
  startProxy(spec: ProxySpec): Promise<ProxyHandle>;
}
