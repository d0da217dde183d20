/**
 * A TCP proxy: listen on an address and relay every connection to a target.
 *
 * @module
 */
import { Emitter } from "../emitter.ts";
import { describeValue, RelaykitError } from "../errors.ts";
import { chooseEngine, chooseTlsEngine, type EnginePreference } from "../forward/select.ts";
import { TLS_AFTER_PROXY } from "../forward/native.ts";
import type {
  ConnectionEnd,
  ConnectionInfo,
  ConnectionStats,
  Endpoint,
  FamilyPreference,
  OriginalInfo,
  ProxyCallbacks,
  ProxyHandle,
  ProxySpec,
  TlsClientOptions,
} from "../forward/types.ts";
import { readFileSync } from "node:fs";
import type { NativeEngine } from "../native/engine.ts";
import { callHook, type DataHook, type DataHooks, type HookContext } from "../forward/hooks.ts";
import { Backend, type BackendOptions, type Server } from "./balance.ts";
import type { AcceptProxyOptions } from "./accept_proxy.ts";
import {
  checkFrontOptions,
  decisionTimeout,
  engineFront,
  Front,
  type FrontOptions,
} from "./front.ts";
import type { RouteFunction } from "./routing.ts";
import { engineRouterOf } from "./socks.ts";
import { Sessions } from "./session.ts";
import {
  type ConnectionSnapshot,
  type OpenConnection,
  type ProxyTotals,
  sameEndpoint,
  type SendProxyOptions,
} from "../types.ts";

/**
 * Options of {@link TcpProxy.listen}.
 *
 * @example
 * ```ts
 * import { TcpProxy, type TcpProxyOptions } from "@relaykit/relaykit";
 * const options: TcpProxyOptions = {
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 5432 },
 *   maxConnections: 100,
 *   idleTimeout: 30_000,
 * };
 * const proxy = await TcpProxy.listen(options);
 * await proxy.close();
 * ```
 */
export interface TcpProxyOptions {
  /** Where to listen: `{ host, port }` (port 0 picks one) or `{ path }`. */
  listen: Endpoint;
  /** Where every connection goes (unless `route` or `backend` decides). */
  target?: Endpoint;
  /**
   * Or a group of servers: each connection goes to the one the balancing
   * picks; a refused or timed-out connect moves on to the next server
   * within the retry budget (failover). A `Backend` may be shared by
   * several proxies (its connection counts then are too).
   */
  backend?: Backend | BackendOptions;
  /**
   * Decide per connection from its first bytes (tproxy's `proxy(data)`):
   * return a `RouteResult`, or `undefined` for more bytes; anything
   * else closes that connection with `RK_EROUTE`. Once decided, the bytes
   * move natively again.
   */
  route?: RouteFunction;
  /** Most bytes a client may send before `route` decides. @default 65536 */
  routeLimit?: number;
  /** Most ms before `route` decides; then the connection is closed. @default 10000 */
  routeTimeout?: number;
  /**
   * Called with each error that concerns a connection (tproxy's
   * `proxy_error`). If it throws (or its promise rejects), that connection
   * is closed and the failure is an "error" event with code `RK_EHOOK`.
   */
  onError?: (
    conn: { id: number; original?: OriginalInfo },
    error: RelaykitError,
  ) => void | Promise<void>;
  /**
   * Terminate TLS on the listener: certificate chain and key, as PEM text or
   * file paths. The native engine terminates it in its worker threads when
   * OpenSSL 3 (libssl.so.3) loads and no PROXY header is accepted before
   * the TLS (`acceptProxy`); otherwise the listener runs on the runtime's
   * TLS (the stream engine), and `engineReason` says why.
   */
  tls?: { cert: string; key: string };
  /**
   * Speak TLS to `target` (`true` or options). On the native engine the
   * library speaks it (OpenSSL 3, loaded at run time); without OpenSSL the
   * TLS side runs on the runtime's TLS through a loopback bridge.
   */
  targetTls?: true | TlsClientOptions;
  /** A streaming rewrite of what clients send (the `aToB` hook). */
  rewriteRequest?: DataHook;
  /** A streaming rewrite of what targets answer (the `bToA` hook). */
  rewriteResponse?: DataHook;
  /** Which engine moves the bytes. @default "auto" */
  engine?: EnginePreference;
  /** Run on this native engine instead of the shared one. */
  nativeEngine?: NativeEngine;
  /** listen(2) backlog. @default 511 */
  backlog?: number;
  /** Let other sockets bind the same port (SO_REUSEPORT). @default false */
  reusePort?: boolean;
  /**
   * Accept on this inherited listening socket (socket activation, e.g. fd 3
   * from systemd) instead of binding `listen`, which then only names it.
   */
  fd?: number;
  /**
   * A running proxy on the same address that this one replaces (a restart
   * with new settings): on the native engine the new proxy accepts from the
   * old one's socket, so closing the old one afterwards resets no client
   * that was waiting to be accepted. Elsewhere (the stream engine, a Unix
   * socket, another address) the new proxy binds beside it, which needs
   * `reusePort` on both.
   */
  replaces?: TcpProxy;
  /** Concurrent connections; more are closed at once. 0 is none. @default 0 */
  maxConnections?: number;
  /** Close a connection idle this many ms. 0 is never. @default 0 */
  idleTimeout?: number;
  /** Give up connecting to the target after this many ms. 0 is never. @default 10000 */
  connectTimeout?: number;
  /** Which family to try first when the target is a name. @default "any" */
  family?: FamilyPreference;
  /** Bind outbound connections to this source address. */
  bindAddress?: string;
  /**
   * Data hooks: `aToB` sees what clients send, `bToA` what the target
   * answers. Each may rewrite, drop or just observe the bytes; a direction
   * without a hook keeps moving natively at full speed.
   */
  hooks?: DataHooks;
  /**
   * Most ms an async hook may take over one chunk; then the connection is
   * closed with `RK_EHOOK`. 0 is no limit. @default 10000
   */
  hookTimeout?: number;
  /**
   * Accept a PROXY protocol header from clients in trusted ranges: the
   * original client's address then reaches the `original` event, hooks
   * (`ctx.original`), `close` events and any header sent on.
   */
  acceptProxy?: AcceptProxyOptions;
  /** Send a PROXY protocol header (v1 or v2, with TLVs) to the target first. */
  sendProxy?: SendProxyOptions;
}

/**
 * Events of a {@link TcpProxy}.
 *
 * @example
 * ```ts
 * import { TcpProxy, type TcpProxyEvents } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 * });
 * const onError = (err: TcpProxyEvents["error"]) => console.error(err.code);
 * proxy.on("error", onError);
 * await proxy.close();
 * ```
 */
export interface TcpProxyEvents {
  /** A client connected. */
  open: ConnectionInfo;
  /** A client's connection to the target is up. */
  connect: number;
  /** A client's PROXY header was accepted: who it really is. */
  original: OriginalInfo;
  /** A connection ended, with counters and the reason. */
  close: ConnectionEnd;
  /** Something failed: a connect, a reset, a refused or failed accept. */
  error: RelaykitError;
}

function nonNegative(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
    throw new RangeError(`${name} must be a non-negative integer, not ${v}`);
  }
  return v;
}

function checkEndpoint(name: string, e: Endpoint): void {
  if (typeof e !== "object" || e === null) {
    throw new TypeError(`${name} must be { host, port } or { path }`);
  }
  if ("path" in e) {
    if (typeof e.path !== "string" || e.path === "") {
      throw new TypeError(`${name}.path must be a non-empty string`);
    }
    return;
  }
  if (typeof e.host !== "string") throw new TypeError(`${name}.host must be a string`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) {
    throw new RangeError(`${name}.port must be an integer from 0 to 65535, not ${e.port}`);
  }
}

/** PEM text as it is, or the contents of the file it names. */
function pem(value: string, name: string): string {
  if (typeof value !== "string") throw new TypeError(`${name} must be PEM text or a file path`);
  if (value.includes("-----BEGIN")) return value;
  try {
    return readFileSync(value, "utf8");
  } catch (err) {
    throw new TypeError(`${name}: cannot read "${value}": ${(err as Error).message}`);
  }
}

/**
 * Hooks as the engines run them: bounded to `timeout` ms per chunk when
 * async, and seeing `ctx.original` from the front's PROXY header state.
 */
function boundHooks(
  hooks: DataHooks,
  timeout: number,
  sessions: Sessions | undefined,
): DataHooks {
  const wrap = (hook: DataHook | undefined): DataHook | undefined => {
    if (hook === undefined) return undefined;
    if (sessions === undefined) {
      return timeout === 0 ? hook : (chunk, ctx) => callHook(hook, chunk, ctx, timeout);
    }
    return (chunk, ctx) =>
      callHook(
        hook,
        chunk,
        Object.create(ctx, { original: { value: sessions.original(ctx.id) } }) as HookContext,
        timeout,
      );
  };
  const out: DataHooks = {};
  const aToB = wrap(hooks.aToB), bToA = wrap(hooks.bToA);
  if (aToB !== undefined) out.aToB = aToB;
  if (bToA !== undefined) out.bToA = bToA;
  if (hooks.lend === true) out.lend = true;
  return out;
}

/**
 * The built-in router the engine may run itself for a front with
 * `options`: only when nothing else happens before the route (a PROXY
 * header to accept) or after it (a header to send, a client-to-target hook
 * over the bytes read while deciding), so that the engine's decision is
 * exactly the route's.
 */
function engineRouting(options: FrontOptions): ProxySpec["router"] {
  const router = engineRouterOf(options.route);
  if (
    router === undefined || options.accept !== undefined || options.send !== undefined ||
    options.hooks.aToB !== undefined
  ) {
    return undefined;
  }
  return { router, routeLimit: options.routeLimit };
}

/**
 * Listens on an address and relays each connection to a target. On the
 * native engine no JavaScript runs per byte; JavaScript sees one event when a
 * connection opens and one when it ends.
 *
 * @example Forward a local port
 * ```ts
 * import { TcpProxy } from "@relaykit/relaykit";
 * await using proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 5432 },
 * });
 * console.log(`listening on port ${proxy.port} (${proxy.engine} engine)`);
 * proxy.on("close", (end) => console.log(end.id, end.reason, end.aToB.written));
 * ```
 */
export class TcpProxy extends Emitter<TcpProxyEvents> {
  /** Which engine moves the bytes. */
  readonly engine: "native" | "stream";
  /** Why the native engine is not in use, or undefined when it is. */
  readonly engineReason: string | undefined;
  /** The bound address (port filled in). */
  readonly address: Endpoint;
  readonly #handle: ProxyHandle;
  readonly #drained: Promise<void>;
  readonly #front: Front | undefined;
  readonly #sessions: Sessions | undefined;
  readonly #onError: TcpProxyOptions["onError"];
  /** Hooks or onError see who each client is: the engine always tells. */
  readonly #alwaysOriginal: boolean;
  /** TLS is terminated in the native engine: no PROXY header can come first. */
  readonly #nativeTls: boolean;
  #closing: Promise<void> | undefined;
  /** Resolves once the listening socket is closed. */
  readonly #stopped: Promise<void>;
  readonly #connectFailures: Record<string, number> = {};

  private constructor(
    choice: { name: "native" | "stream"; reason: string | undefined },
    handle: ProxyHandle,
    front: { options: FrontOptions; sessions: Sessions; alwaysOriginal: boolean } | undefined,
    onError: TcpProxyOptions["onError"],
    nativeTls: boolean,
  ) {
    super();
    this.engine = choice.name;
    this.engineReason = choice.reason;
    this.#handle = handle;
    this.address = handle.address;
    this.#onError = onError;
    this.#sessions = front?.sessions;
    this.#front = front && new Front(front.options, handle, front.sessions, {
      onOriginal: (info) => this.emit("original", info),
      onError: (err) => this.#fail(err),
    });
    this.#alwaysOriginal = front?.alwaysOriginal ?? false;
    this.#nativeTls = nativeTls;
    let drained!: () => void, stopped!: () => void;
    this.#drained = new Promise<void>((r) => drained = r);
    this.#stopped = new Promise<void>((r) => stopped = r);
    if (front !== undefined) this.#updateInterest(); // before the first connection
    handle.start(this.#callbacks(drained, stopped));
  }

  /** What the engine reports, turned into events. */
  #callbacks(drained: () => void, stopped: () => void): ProxyCallbacks {
    const front = this.#front, sessions = this.#sessions;
    return {
      held: (u) => front?.held(u),
      proxied: (r) => front?.proxied(r),
      open: (info) => this.emit("open", info),
      connected: (id) => this.emit("connect", id),
      close: (end) => {
        // reported whatever the interest: every connection that ends with an error is
        if (end.reason === "connect-failed" && end.error !== undefined) {
          const f = this.#connectFailures;
          f[end.error.code] = (f[end.error.code] ?? 0) + 1;
        }
        sessions?.ended(end);
        if (end.error !== undefined) this.#fail(end.error, end.original);
        this.emit("close", end);
      },
      // An "error" nobody listens to is dropped, not thrown: a proxy must not
      // die because one backend refused.
      reject: (err) => this.#fail(err),
      hookFailed: (err) => this.#fail(err),
      stopped,
      drained,
    };
  }

  /** Every error: the "error" event, and onError when it names a connection. */
  #fail(err: RelaykitError, original = this.#sessions?.original(err.connectionId ?? -1)): void {
    this.emit("error", err);
    const id = err.connectionId;
    const onError = this.#onError;
    if (onError === undefined || id === undefined) return;
    // user code: a throw or a rejection closes the connection and is
    // reported, never thrown on (and never passed to onError again)
    const failed = (e: unknown) => {
      this.closeConnection(id, "graceful");
      const why = e instanceof Error ? e.message : describeValue(e);
      this.emit(
        "error",
        new RelaykitError(`onError of connection ${id} failed: ${why}`, "RK_EHOOK", {
          connectionId: id,
          cause: e,
        }),
      );
    };
    try {
      const r: unknown = onError(original === undefined ? { id } : { id, original }, err);
      if (r instanceof Promise) r.catch(failed);
    } catch (e) {
      failed(e);
    }
  }

  /**
   * Start a proxy.
   *
   * @param options Where to listen, where to go, engine and limits.
   * @returns The running proxy, already accepting.
   * @throws {RelaykitError} when the address cannot be bound.
   */
  static async listen(options: TcpProxyOptions): Promise<TcpProxy> {
    checkEndpoint("listen", options.listen);
    const backend = options.backend === undefined || options.backend instanceof Backend
      ? options.backend
      : new Backend(options.backend);
    if (backend !== undefined) {
      for (const s of backend.servers) checkEndpoint(`server "${s.name}"`, s.address);
    } else if (options.route === undefined) {
      if (options.target === undefined) {
        throw new TypeError("TcpProxy needs a target, a backend or a route");
      }
      checkEndpoint("target", options.target);
    } else if (typeof options.route !== "function") {
      throw new TypeError("route must be a function");
    }
    checkFrontOptions(options.acceptProxy, options.sendProxy);
    const spec: ProxySpec = {
      listen: options.listen,
      target: options.target,
      backlog: nonNegative("backlog", options.backlog, 511),
      reusePort: options.reusePort ?? false,
      ...(options.fd !== undefined ? { fd: options.fd } : {}),
      ...(options.replaces !== undefined && sameEndpoint(options.listen, options.replaces.address)
        ? { replaces: options.replaces.#handle }
        : {}),
      maxConnections: nonNegative("maxConnections", options.maxConnections, 0),
      idleTimeout: nonNegative("idleTimeout", options.idleTimeout, 0),
      connectTimeout: nonNegative("connectTimeout", options.connectTimeout, 10_000),
      family: options.family ?? "any",
      bindAddress: options.bindAddress,
      hooks: {
        ...options.hooks,
        ...(options.rewriteRequest ? { aToB: options.rewriteRequest } : {}),
        ...(options.rewriteResponse ? { bToA: options.rewriteResponse } : {}),
      },
    };
    const targetTls = options.targetTls === true ? {} : options.targetTls;
    const decides = options.acceptProxy !== undefined || options.sendProxy !== undefined ||
      options.route !== undefined || targetTls !== undefined || backend !== undefined;
    let choice;
    if (options.tls !== undefined) {
      spec.tls = { cert: pem(options.tls.cert, "tls.cert"), key: pem(options.tls.key, "tls.key") };
      choice = chooseTlsEngine(
        options.engine,
        options.nativeEngine,
        options.acceptProxy !== undefined,
      );
    } else {
      choice = chooseEngine(options.engine, options.nativeEngine);
    }
    const hookTimeout = nonNegative("hookTimeout", options.hookTimeout, 10_000);
    let front:
      | { options: FrontOptions; sessions: Sessions; alwaysOriginal: boolean }
      | undefined;
    if (decides) {
      const frontOptions: FrontOptions = {
        accept: options.acceptProxy,
        send: options.sendProxy,
        target: options.target,
        backend,
        targetTls,
        route: options.route,
        routeLimit: nonNegative("routeLimit", options.routeLimit, 65536) || 65536,
        routeTimeout: nonNegative("routeTimeout", options.routeTimeout, 10_000),
        hooks: spec.hooks,
        hookTimeout,
      };
      const hooked = spec.hooks.aToB !== undefined || spec.hooks.bToA !== undefined;
      front = {
        options: frontOptions,
        sessions: new Sessions(),
        alwaysOriginal: hooked || options.onError !== undefined,
      };
      spec.hold = {
        timeout: decisionTimeout(frontOptions),
        // a route asked first with none, then at once with what is there
        // (a PROXY header is read step by step: no read-ahead)
        first: frontOptions.route !== undefined && frontOptions.accept === undefined
          ? frontOptions.routeLimit
          : 0,
      };
      spec.router = engineRouting(frontOptions);
      const inEngine = engineFront(frontOptions);
      if (inEngine !== undefined) spec.front = inEngine;
    }
    spec.hooks = boundHooks(spec.hooks, hookTimeout, front?.sessions);
    const handle = await choice.engine.startProxy(spec);
    return new TcpProxy(
      { name: choice.engine.name, reason: choice.reason },
      handle,
      front,
      options.onError,
      options.tls !== undefined && choice.engine.name === "native",
    );
  }

  /**
   * Call `fn` for every `event`. Per-connection events are reported only
   * while someone listens for them, so an unwatched proxy costs JavaScript
   * nothing per connection.
   */
  override on<K extends keyof TcpProxyEvents>(
    event: K,
    fn: (arg: TcpProxyEvents[K]) => void,
  ): this {
    super.on(event, fn);
    this.#updateInterest();
    return this;
  }

  /** Stop calling `fn` for `event`. */
  override off<K extends keyof TcpProxyEvents>(
    event: K,
    fn: (arg: TcpProxyEvents[K]) => void,
  ): this {
    super.off(event, fn);
    this.#updateInterest();
    return this;
  }

  #updateInterest(): void {
    this.#handle.setInterest({
      open: this.hasListeners("open"),
      connected: this.hasListeners("connect"),
      close: this.hasListeners("close"),
      // who each client is: for "original", the ends and whoever asks later
      original: this.#alwaysOriginal || this.hasListeners("original") ||
        this.hasListeners("close") || this.hasListeners("open"),
    });
  }

  /**
   * Change where new connections go (and how their PROXY headers are
   * handled) without touching the listening socket: connections from now on
   * follow the new options; established ones go on as they were. Only for a
   * proxy started with a `backend`, `route`, `acceptProxy` or `sendProxy`.
   * A proxy that terminates TLS in the native engine takes no `acceptProxy`
   * (a TypeError): the header would come before the TLS.
   */
  reconfigure(
    options: Pick<TcpProxyOptions, "target" | "backend" | "route" | "acceptProxy" | "sendProxy">,
  ): void {
    if (this.#front === undefined) {
      throw new TypeError(
        "reconfigure needs a proxy started with a backend, route, acceptProxy or sendProxy",
      );
    }
    const backend = options.backend === undefined || options.backend instanceof Backend
      ? options.backend
      : new Backend(options.backend);
    if (backend === undefined && options.route === undefined && options.target === undefined) {
      throw new TypeError("reconfigure needs a target, a backend or a route");
    }
    if (this.#nativeTls && options.acceptProxy !== undefined) {
      throw new TypeError(`${TLS_AFTER_PROXY}: this proxy terminates TLS in the native engine`);
    }
    this.#front.update({
      target: options.target,
      backend,
      route: options.route,
      accept: options.acceptProxy,
      send: options.sendProxy,
    });
    this.#handle.setRouter(engineRouting(this.#front.options));
  }

  /** The bound TCP port (0 for Unix sockets). */
  get port(): number {
    return "port" in this.address ? this.address.port : 0;
  }

  /** Number of open connections. */
  get connections(): number {
    return this.#handle.activeConnections();
  }

  /**
   * The proxy's counters since it started: kept by the engine without any
   * per-connection event, so reading them costs nothing per connection.
   */
  totals(): ProxyTotals {
    return { ...this.#handle.totals(), connectFailures: { ...this.#connectFailures } };
  }

  /**
   * Every open connection with its client, age and counters, read in one
   * pass (on the native engine, one call into the library).
   */
  openConnections(): OpenConnection[] {
    const s = this.#handle.snapshot();
    return Array.from({ length: s.size }, (_, i) => s.at(i));
  }

  /**
   * The open connections read in one pass, without an object per
   * connection until one is asked for: what {@linkcode openConnections}
   * builds on, for a caller that sums or pages many. On the native engine
   * it reads the engine's buffer where the library wrote them: it is valid
   * until the next `snapshot()` or `openConnections()` of any proxy on the
   * same engine, so read it at once (`at(i)` makes a lasting copy).
   *
   * @param first Only the `first` oldest (its `total` still counts all).
   */
  snapshot(first?: number): ConnectionSnapshot {
    return this.#handle.snapshot(first);
  }

  /** Live counters of connection `id`, or undefined once it ended. */
  stats(id: number): ConnectionStats | undefined {
    return this.#handle.connectionStats(id);
  }

  /** The backend server open connection `id` went to, if it has one. */
  serverOf(id: number): Server | undefined {
    return this.#sessions?.get(id)?.server;
  }

  /**
   * Who open connection `id` really is, once its PROXY header was handled.
   * Where the native engine reads headers without JavaScript (a fixed
   * target), it is known while the proxy has `original`, `open` or `close`
   * listeners, hooks or `onError`; otherwise undefined there.
   */
  originalOf(id: number): OriginalInfo | undefined {
    return this.#sessions?.original(id);
  }

  /** Close one connection: "graceful" flushes then sends FIN; "abort" resets. */
  closeConnection(id: number, mode: "graceful" | "abort" = "graceful"): void {
    this.#handle.closeConnection(id, mode);
  }

  /**
   * Stop accepting: resolves once the listening socket is closed, so that a
   * new connection is refused. The open ones go on ({@linkcode drained}
   * waits for them). Safe to call twice.
   */
  stopAccepting(): Promise<void> {
    this.#handle.stopAccepting();
    return this.#stopped;
  }

  /**
   * Stop accepting and wait until every open connection has ended on its
   * own. Safe to call twice.
   */
  close(): Promise<void> {
    this.#handle.stopAccepting();
    this.#closing ??= this.#drained;
    return this.#closing;
  }

  /**
   * Resolves once the proxy has closed and its last connection has ended
   * (its {@linkcode totals} are final then). It does not close it.
   */
  drained(): Promise<void> {
    return this.#drained;
  }

  /** Stop accepting and reset every open connection now. */
  abort(): Promise<void> {
    this.#handle.stopAccepting();
    this.#handle.abortAll();
    this.#closing ??= this.#drained;
    return this.#closing;
  }

  /** `await using` closes gracefully. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
