/**
 * The front of a proxy listener: what happens to a connection before its
 * bytes start moving. Accepting a PROXY protocol header (from trusted
 * sources only), sending one to the target, and running the client-to-
 * target hook over bytes that were read while deciding. It works on held
 * connections (ProxySpec.hold) through the engine-neutral ProxyHandle, so
 * both engines behave the same; on the native engine the relay that
 * follows is native again.
 *
 * @module
 */
import { concatBytes, EMPTY } from "../bytes.ts";
import { describeValue, errorFor, RelaykitError } from "../errors.ts";
import type { DataHooks } from "../forward/hooks.ts";
import { runHook } from "../forward/hooks.ts";
import type {
  Endpoint,
  HeldConnection,
  HeldUpdate,
  HoldDecision,
  InetEndpoint,
  OriginalInfo,
  ProxyHandle,
  TlsClientOptions,
} from "../forward/types.ts";
import { addressBytes, type Cidr, inRanges, parseCidr } from "../protocol/cidr.ts";
import * as settings from "../settings.ts";
import type { SendProxyOptions } from "../types.ts";
import type { Backend, Server } from "./balance.ts";
import {
  buildProxyHeader,
  type DecodedTlvs,
  decodeTlvs,
  parseProxyHeader,
  type ProxyHeader,
  type ProxyProtocolError,
  TLV,
  V2_MAX,
} from "../protocol/proxy_protocol.ts";
import { checkRouteResult, routeBytes, type RouteDecision } from "./decision.ts";

/**
 * Accepting a PROXY protocol header from the clients of a listener.
 *
 * @example
 * ```ts
 * import { type AcceptProxyOptions } from "@relaykit/relaykit";
 * const fromLoadBalancers: AcceptProxyOptions = {
 *   mode: "v2",
 *   trusted: ["10.0.0.0/8"],
 *   untrusted: "refuse",
 *   timeout: 3000,
 * };
 * console.log(fromLoadBalancers.mode);
 * ```
 */
export interface AcceptProxyOptions {
  /** "detect": v1, v2 or no header; "v1" or "v2": that header, required. */
  mode: "detect" | "v1" | "v2";
  /**
   * Source ranges allowed to send a header ("10.0.0.0/8", "::1"). Anyone
   * else could forge their address with one. @default ["127.0.0.0/8", "::1"]
   */
  trusted?: readonly string[];
  /**
   * A client outside `trusted`: "refuse" closes it; "no-header" relays its
   * bytes as they are, header or not. @default "refuse"
   */
  untrusted?: "refuse" | "no-header";
  /** Close a connection whose header is incomplete after this many ms. @default 5000 */
  timeout?: number;
}

/** How long a PROXY header may take to arrive, by default (`acceptProxy.timeout`). */
export const HEADER_TIMEOUT_MS = 5000;

/** The default trusted sources: this machine only. */
export const LOOPBACK = ["127.0.0.0/8", "::1"] as const;

/** The first read: what the spec suggests a receiver reads at once. Bytes
 * past the header are not lost: they go to the target after it. */
const FIRST_READ = 536;

/** "::ffff:10.1.2.3" -> "10.1.2.3"; anything else unchanged. */
function plain(e: InetEndpoint | undefined): InetEndpoint | undefined {
  if (e === undefined) return undefined;
  const b = addressBytes(e.host);
  return b?.length === 4 ? { host: b.join("."), port: e.port } : e;
}

function describe(conn: HeldConnection): string {
  const r = conn.remote;
  if (r === undefined) return `Connection ${conn.id}`;
  const host = r.host.includes(":") ? `[${r.host}]` : r.host;
  return `Connection ${conn.id} from ${host}:${r.port}`;
}

function randomId(): Uint8Array {
  const raw = crypto.getRandomValues(new Uint8Array(16));
  const hex = Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
  return new TextEncoder().encode(hex);
}

/**
 * Who is connecting, as a route function sees it.
 *
 * @example
 * ```ts
 * import { type RouteConnection, type RouteFunction } from "@relaykit/relaykit";
 * const byClient: RouteFunction = (_data, conn: RouteConnection) =>
 *   ({ remote: conn.remote?.host.startsWith("10.") ? "127.0.0.1:8001" : "127.0.0.1:8002" });
 * console.log(typeof byClient);
 * ```
 */
export interface RouteConnection {
  /** Connection id. */
  id: number;
  /** The peer's address (absent for Unix sockets). */
  remote?: InetEndpoint;
  /** The address it connected to. */
  local?: InetEndpoint;
  /** Who it really is, when it sent a PROXY header (acceptProxy). */
  original?: OriginalInfo;
}

/**
 * Bytes as a route function may give them.
 *
 * @example
 * ```ts
 * import { type RouteBytes } from "@relaykit/relaykit";
 * const replies: RouteBytes[] = ["HTTP/1.0 200 OK\r\n\r\n", new Uint8Array([0, 0x5a, 0, 0, 0, 0, 0, 0])];
 * console.log(replies.length);
 * ```
 */
export type RouteBytes = string | Uint8Array;

/**
 * Where a connection goes, as a route function returns it (tproxy's
 * results): connect to `remote` (sending `data` instead of what the client
 * sent so far, and `reply` to the client once connected), `close` (after
 * sending the bytes given), or send a `file` (after `reply`) and close.
 *
 * @example
 * ```ts
 * import { type RouteResult } from "@relaykit/relaykit";
 * const results: RouteResult[] = [
 *   { remote: "127.0.0.1:8080", reply: "OK\n", failReply: "FAIL\n" },
 *   { close: "go away\n" },
 *   { file: "/etc/hostname", reply: "HTTP/1.0 200 OK\r\n\r\n" },
 *   { send: new Uint8Array([5, 0]) },
 * ];
 * console.log(results.length);
 * ```
 */
export type RouteResult =
  | {
    /** "host:port", "[v6]:port", "unix:/path", or an endpoint. */
    remote: string | Endpoint;
    /** Sent to the remote instead of the bytes received so far. */
    data?: RouteBytes;
    /** Sent to the client once the remote is connected. */
    reply?: RouteBytes;
    /** Connect timeout in ms for this route. */
    connectTimeout?: number;
    /** Idle timeout in ms for this route. */
    idleTimeout?: number;
    /**
     * Speak TLS to the remote. On the native engine those bytes run on the
     * runtime's TLS; the client side stays native.
     */
    tls?: boolean | TlsClientOptions;
    /**
     * If the connect fails: send this to the client, then close (a SOCKS
     * or HTTP CONNECT failure reply). The error is still reported.
     */
    failReply?: RouteBytes | ((error: RelaykitError) => RouteBytes);
  }
  | {
    /**
     * Send these bytes to the client now and wait for more (a handshake
     * step, such as SOCKS5's method choice); the route is asked again with
     * everything received so far.
     */
    send: RouteBytes;
  }
  | {
    /** `true`, or bytes to send before closing. */
    close: true | RouteBytes;
  }
  | {
    /** A path, or an open file descriptor (read from its start, not its position). */
    file: string | number;
    /** Where to start. @default 0 */
    offset?: number;
    /** How many bytes. @default to the end */
    length?: number;
    /** Sent before the file. */
    reply?: RouteBytes;
  };

/**
 * Sees the bytes a client sent so far (none at first, for protocols where
 * the server speaks first) and returns where the connection goes, or
 * `undefined` to wait for more. May be async.
 *
 * @example
 * ```ts
 * import { type RouteFunction, TcpProxy } from "@relaykit/relaykit";
 * const route: RouteFunction = (data) =>
 *   data.length < 4 ? undefined : { remote: "127.0.0.1:9", data: data.subarray(4) };
 * const proxy = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 0 }, route });
 * await proxy.close();
 * ```
 */
export type RouteFunction = (
  data: Uint8Array,
  conn: RouteConnection,
) => RouteResult | undefined | null | Promise<RouteResult | undefined | null>;

/** What the front needs from its proxy. */
export interface FrontOptions {
  accept: AcceptProxyOptions | undefined;
  send: SendProxyOptions | undefined;
  /** Where connections go without a route function. */
  target: Endpoint | undefined;
  /** Or a backend's servers, balanced, with failover. */
  backend: Backend | undefined;
  /** TLS to `target`. */
  targetTls: TlsClientOptions | undefined;
  /** Decides where each connection goes (instead of `target`). */
  route: RouteFunction | undefined;
  /** Most bytes held before the route decides. */
  routeLimit: number;
  /** Most ms before the route decides (0: none). */
  routeTimeout: number;
  hooks: DataHooks;
  /** Most ms an async hook may take over one chunk (0: none). */
  hookTimeout: number;
  /** A header was accepted. */
  onOriginal(info: OriginalInfo): void;
  /** A connection was refused or failed before relaying. */
  onError(err: RelaykitError): void;
}

/** Check options up front, so a typo fails `listen`, not a connection. */
export function checkFrontOptions(
  accept: AcceptProxyOptions | undefined,
  send: SendProxyOptions | undefined,
): void {
  if (accept !== undefined) {
    const check = (what: string, f: () => unknown) => {
      try {
        f();
      } catch (err) {
        throw new TypeError(`${what}: ${(err as Error).message}`);
      }
    };
    check("acceptProxy.mode", () => settings.acceptProxyMode.parse(accept.mode));
    if (accept.untrusted !== undefined) {
      check("acceptProxy.untrusted", () => settings.untrusted.parse(accept.untrusted));
    }
    for (const t of accept.trusted ?? []) parseCidr(t);
    const timeout = accept.timeout;
    if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 0)) {
      throw new RangeError(`acceptProxy.timeout must be a non-negative integer, not ${timeout}`);
    }
  }
  if (send !== undefined && send.version !== 1 && send.version !== 2) {
    throw new TypeError(`sendProxy.version must be 1 or 2, not ${send.version}`);
  }
}

/** Runs the front of one listener's held connections. */
export class Front {
  #o: FrontOptions;
  #trusted: Cidr[];
  readonly #originals = new Map<number, OriginalInfo>();
  /** Per connection to a backend: the servers tried, the one in use. */
  readonly #picked = new Map<
    number,
    { tried: Set<Server>; attempts: number; server: Server | undefined; info: OriginalInfo }
  >();
  /** Per routed connection: what to tell the client if its connect fails. */
  readonly #failReplies = new Map<number, Uint8Array | ((error: RelaykitError) => unknown)>();
  /** Per connection in the route phase: the header's length. */
  readonly #routing = new Map<number, number>();
  #handle: ProxyHandle | undefined;
  /** Updates that came before the handle was attached. */
  #early: HeldUpdate[] = [];

  /** @param options What to accept and send, and where to report. */
  constructor(options: FrontOptions) {
    this.#o = options;
    this.#trusted = (options.accept?.trusted ?? LOOPBACK).map(parseCidr);
  }

  /** How long a connection may stay undecided (0: no limit). */
  get timeout(): number {
    const header = this.#o.accept === undefined ? 0 : this.#o.accept.timeout ?? HEADER_TIMEOUT_MS;
    const route = this.#o.route === undefined ? 0 : this.#o.routeTimeout;
    return header === 0 || route === 0 ? Math.max(header, route) : header + route;
  }

  /**
   * New connections from now on use these options; connections already
   * decided (or being decided) keep what they had.
   */
  update(
    options: Partial<Pick<FrontOptions, "accept" | "send" | "target" | "backend" | "route">>,
  ): void {
    const next = { ...this.#o, ...options };
    checkFrontOptions(next.accept, next.send);
    this.#trusted = (next.accept?.trusted ?? LOOPBACK).map(parseCidr);
    this.#o = next;
  }

  /** Attach the proxy handle, once it exists; then handle what came before it. */
  attach(handle: ProxyHandle): void {
    this.#handle = handle;
    const early = this.#early;
    this.#early = [];
    for (const u of early) this.held(u);
  }

  /** The original addresses of connection `id`, while it is open. */
  original(id: number): OriginalInfo | undefined {
    return this.#originals.get(id);
  }

  /** Connection `id` ended. */
  forget(id: number): void {
    this.#originals.delete(id);
    this.#routing.delete(id);
    this.#failReplies.delete(id);
    const picked = this.#picked.get(id);
    if (picked?.server !== undefined) picked.server.active--;
    this.#picked.delete(id);
  }

  /** The backend server connection `id` went to, while it is open. */
  serverOf(id: number): Server | undefined {
    return this.#picked.get(id)?.server;
  }

  /** Start a connection's tour of its backend's servers. */
  #toBackend(u: HeldUpdate, info: OriginalInfo, consume: number): void {
    this.#picked.set(u.conn.id, { tried: new Set(), attempts: 0, server: undefined, info });
    this.#nextServer(u, consume, undefined);
  }

  /** A connect to the server failed (the bytes are kept): the next one. */
  #failover(u: HeldUpdate, err: RelaykitError): void {
    const picked = this.#picked.get(u.conn.id);
    if (picked?.server !== undefined) {
      picked.server.active--;
      picked.server.failures++;
      picked.server = undefined;
    }
    this.#nextServer(u, 0, err);
  }

  #nextServer(u: HeldUpdate, consume: number, lastError: RelaykitError | undefined): void {
    const backend = this.#o.backend!;
    const id = u.conn.id;
    const picked = this.#picked.get(id);
    if (picked === undefined) return;
    const client = picked.info.source?.host ?? u.conn.remote?.host;
    const server = picked.attempts > backend.retries
      ? undefined
      : backend.pick(client, picked.tried);
    if (server === undefined) {
      this.#refuse(
        u.conn,
        lastError ??
          errorFor(
            `${describe(u.conn)}: backend "${backend.name}" has no server up`,
            "RK_ENOSERVER",
            {
              connectionId: id,
            },
          ),
      );
      return;
    }
    picked.tried.add(server);
    picked.attempts++;
    picked.server = server;
    server.active++;
    server.total++;
    const retry = picked.attempts <= backend.retries && backend.hasOther(picked.tried);
    const connectTimeout = backend.connectTimeout;
    if (picked.attempts === 1) {
      void this.#connect(u, picked.info, server.address, undefined, consume, {
        ...(connectTimeout !== undefined ? { connectTimeout } : {}),
        retry,
        send: backend.sendProxy,
      });
      return;
    }
    // a retry: the library (or stream engine) still has the bytes to send
    const d: HoldDecision = { action: "connect", target: server.address, retry };
    if (connectTimeout !== undefined) d.connectTimeout = connectTimeout;
    this.#handle!.decide(id, d);
  }

  /**
   * A held connection was accepted or sent more. The fault barrier of the
   * connection's front: whatever fails in here (a header, a route, a hook,
   * a callback) closes this one connection with a named error; nothing is
   * thrown to the engine that called.
   */
  held(u: HeldUpdate): void {
    // a listener can accept before its handle is attached: a connection
    // already queued on an inherited socket (socket activation) does
    if (this.#handle === undefined) return void this.#early.push(u);
    try {
      this.#held(u);
    } catch (e) {
      const code = this.#routing.has(u.conn.id) ? "RK_EROUTE" : "RK_EPROXY";
      this.#fault(u.conn, code, "failed", e);
    }
  }

  #held(u: HeldUpdate): void {
    const h = this.#handle!;
    const accept = this.#o.accept;
    const id = u.conn.id;
    if (u.retry !== undefined) {
      const failReply = this.#failReplies.get(id);
      if (failReply === undefined) return this.#failover(u, u.retry);
      // the route's own answer to a failed connect, then close
      this.#failReplies.delete(id);
      this.#o.onError(u.retry);
      let toClient: Uint8Array;
      try {
        toClient = typeof failReply === "function"
          ? routeBytes(failReply(u.retry), "failReply's result")
          : failReply;
      } catch (e) {
        return this.#fault(u.conn, "RK_EROUTE", "the route's failReply failed", e);
      }
      this.#handle!.decide(id, { action: "close", toClient });
      return;
    }
    const headerLength = this.#routing.get(id);
    if (headerLength !== undefined) return void this.#route(u, headerLength);
    if (u.first) {
      if (accept === undefined) return void this.#go(u, undefined, 0);
      const host = u.conn.remote?.host;
      // a Unix socket peer is this machine: trusted like loopback
      if (host === undefined || inRanges(host, this.#trusted)) return h.readMore(id, FIRST_READ);
      if (accept.untrusted === "no-header") return void this.#go(u, undefined, 0);
      this.#refuse(
        u.conn,
        errorFor(`${describe(u.conn)}: PROXY header not accepted`, "RK_EPROXY_UNTRUSTED", {
          connectionId: id,
        }),
      );
      return;
    }
    let r;
    let tlvs: DecodedTlvs | undefined;
    try {
      r = parseProxyHeader(u.data, accept!.mode);
      // the TLVs are checked here too: a header is good only whole
      if (r.kind === "header") tlvs = decodeTlvs(r.header.tlvs);
    } catch (e) {
      const pe = e as ProxyProtocolError;
      this.#refuse(
        u.conn,
        errorFor(`${describe(u.conn)}: bad PROXY header (${pe.code}: ${pe.message})`, "RK_EPROXY", {
          connectionId: id,
          cause: e,
        }),
      );
      return;
    }
    if (r.kind === "need") {
      if (u.eof) {
        this.#refuse(
          u.conn,
          errorFor(
            `${
              describe(u.conn)
            }: the client ended inside its PROXY header (${u.data.length} bytes)`,
            "RK_EPROXY",
            { connectionId: id },
          ),
        );
        return;
      }
      h.readMore(id, Math.min(Math.max(u.data.length + r.bytes, FIRST_READ), V2_MAX));
      return;
    }
    if (r.kind === "none") return void this.#go(u, undefined, 0);
    this.#go(u, r.header, r.length, tlvs);
  }

  /** Close a held connection, then report why. */
  #refuse(conn: HeldConnection, err: RelaykitError): void {
    this.#routing.delete(conn.id);
    try {
      this.#handle!.decide(conn.id, { action: "close" });
    } catch {
      this.#handle!.closeConnection(conn.id, "abort");
    }
    this.#o.onError(err);
  }

  /** Something failed while `what` ran: close with `code`, the failure as cause. */
  #fault(conn: HeldConnection, code: string, what: string, e: unknown): void {
    const why = e instanceof Error ? e.message : describeValue(e);
    this.#refuse(
      conn,
      new RelaykitError(`${describe(conn)}: ${what}: ${why}`, code, {
        connectionId: conn.id,
        cause: e,
      }),
    );
  }

  /** The PROXY header phase is over: route, or go to the target. */
  #go(
    u: HeldUpdate,
    header: ProxyHeader | undefined,
    consume: number,
    tlvs?: DecodedTlvs,
  ): void {
    const info = this.#original(u, header, tlvs);
    if (this.#o.route === undefined) {
      const tls = this.#o.targetTls;
      if (this.#o.backend !== undefined) return this.#toBackend(u, info, consume);
      void this.#connect(u, info, this.#o.target!, undefined, consume, tls ? { tls } : undefined);
      return;
    }
    this.#routing.set(u.conn.id, consume);
    void this.#route(u, consume);
  }

  /** Ask the route function about what the client sent after its header. */
  async #route(u: HeldUpdate, consume: number): Promise<void> {
    try {
      await this.#routeOnce(u, consume);
    } catch (e) {
      // the barrier of the route phase: nothing rejects out of here
      if (this.#routing.has(u.conn.id)) return this.#fault(u.conn, "RK_EROUTE", "bad route", e);
      // past the decision: the connection is no longer held
      this.#handle!.closeConnection(u.conn.id, "graceful");
      const why = e instanceof Error ? e.message : describeValue(e);
      this.#o.onError(
        new RelaykitError(`${describe(u.conn)}: the route failed: ${why}`, "RK_EROUTE", {
          connectionId: u.conn.id,
          cause: e,
        }),
      );
    }
  }

  async #routeOnce(u: HeldUpdate, consume: number): Promise<void> {
    const h = this.#handle!;
    const id = u.conn.id;
    const data = u.data.subarray(consume);
    const conn: RouteConnection = { id };
    if (u.conn.remote !== undefined) conn.remote = u.conn.remote;
    if (u.conn.local !== undefined) conn.local = u.conn.local;
    const info = this.#originals.get(id);
    if (info?.header !== undefined) conn.original = info;
    let d: RouteDecision;
    try {
      d = checkRouteResult(await this.#o.route!(data, conn));
    } catch (e) {
      // ended meanwhile (the decision timeout): nothing left to close
      if (!this.#routing.has(id)) return;
      const what = e instanceof TypeError && e.name === "RouteResultError"
        ? "bad route"
        : "the route function failed";
      return this.#fault(u.conn, "RK_EROUTE", what, e);
    }
    if (!this.#routing.has(id)) return; // ended while the route was deciding
    if (d.kind === "wait") {
      if (data.length >= this.#o.routeLimit) {
        return this.#refuse(
          u.conn,
          errorFor(
            `${
              describe(u.conn)
            }: no route after ${data.length} bytes (the limit is ${this.#o.routeLimit})`,
            "RK_EROUTE_LIMIT",
            { connectionId: id },
          ),
        );
      }
      if (u.eof) {
        return this.#refuse(
          u.conn,
          errorFor(`${describe(u.conn)}: the client ended before a route was found`, "RK_EROUTE", {
            connectionId: id,
          }),
        );
      }
      h.readMore(id, consume + this.#o.routeLimit);
      return;
    }
    if (d.kind === "send") {
      // a handshake step: answer, stay in the route phase, read on
      h.sendHeld(id, d.send);
      h.readMore(id, consume + this.#o.routeLimit);
      return;
    }
    this.#routing.delete(id);
    if (d.kind === "remote") {
      if (d.failReply !== undefined) this.#failReplies.set(id, d.failReply);
      const replace = d.data;
      await this.#connect(
        u,
        this.#original(u, info?.header),
        d.target,
        replace,
        replace === undefined ? consume : u.data.length,
        {
          ...(d.connectTimeout !== undefined ? { connectTimeout: d.connectTimeout } : {}),
          ...(d.idleTimeout !== undefined ? { idleTimeout: d.idleTimeout } : {}),
          ...(d.reply !== undefined ? { toClient: d.reply } : {}),
          tls: d.tls,
          retry: d.failReply !== undefined,
        },
      );
      return;
    }
    if (d.kind === "close") {
      h.decide(
        id,
        d.toClient === undefined ? { action: "close" } : { action: "close", toClient: d.toClient },
      );
      return;
    }
    const fd: HoldDecision = { action: "file", path: d.path };
    if (d.offset !== undefined) fd.offset = d.offset;
    if (d.length !== undefined) fd.length = d.length;
    if (d.reply !== undefined) fd.toClient = d.reply;
    const err = h.decide(id, fd);
    if (err !== undefined) this.#refuse(u.conn, err);
  }

  /** Who the client is: from its PROXY header, else the peer; remembered. */
  #original(
    u: HeldUpdate,
    header: ProxyHeader | undefined,
    tlvs?: DecodedTlvs,
  ): OriginalInfo {
    const id = u.conn.id;
    const known = this.#originals.get(id);
    if (known !== undefined) return known;
    const info: OriginalInfo = { id };
    const fromHeader = header?.command === "proxy" && header.source !== undefined &&
      "host" in header.source && header.destination !== undefined && "host" in header.destination;
    const source = fromHeader ? header!.source as InetEndpoint : plain(u.conn.remote);
    const destination = fromHeader ? header!.destination as InetEndpoint : plain(u.conn.local);
    if (source !== undefined) info.source = source;
    if (destination !== undefined) info.destination = destination;
    if (header !== undefined) {
      info.header = header;
      info.tlvs = tlvs ?? decodeTlvs(header.tlvs);
    }
    if (header !== undefined || this.#o.send !== undefined) {
      this.#originals.set(id, info);
    }
    if (header !== undefined) this.#o.onOriginal(info);
    return info;
  }

  /** Connect to `target`: the PROXY header to send, then `replace` or the held bytes. */
  async #connect(
    u: HeldUpdate,
    info: OriginalInfo,
    target: Endpoint,
    replace: Uint8Array | undefined,
    consume: number,
    route:
      | {
        connectTimeout?: number;
        idleTimeout?: number;
        toClient?: Uint8Array;
        tls?: TlsClientOptions | undefined;
        retry?: boolean;
        send?: SendProxyOptions | undefined;
      }
      | undefined,
  ): Promise<void> {
    const h = this.#handle!;
    const id = u.conn.id;
    let toTarget: Uint8Array = EMPTY;
    const send = route?.send ?? this.#o.send;
    if (send !== undefined) {
      try {
        toTarget = this.#build(send, info);
      } catch (e) {
        this.#refuse(
          u.conn,
          errorFor(
            `${describe(u.conn)}: cannot build the PROXY header (${(e as Error).message})`,
            "RK_EPROXY",
            { connectionId: id, cause: e },
          ),
        );
        return;
      }
    }
    // bytes read while deciding go through the client-to-target hook too
    const rest = replace ?? u.data.subarray(consume);
    const hook = this.#o.hooks.aToB;
    if (hook !== undefined && rest.length > 0) {
      try {
        const out = await runHook(hook, rest, {
          id,
          direction: "aToB",
          remote: u.conn.remote,
          original: info,
          stats: () => h.connectionStats(id),
        }, this.#o.hookTimeout);
        toTarget = concatBytes([toTarget, out]);
      } catch (e) {
        h.closeConnection(id, "abort");
        this.#o.onError(e as RelaykitError);
        return;
      }
    } else if (replace !== undefined) {
      toTarget = concatBytes([toTarget, replace]);
    }
    const d: HoldDecision = {
      action: "connect",
      target,
      toTarget,
      consume: hook !== undefined || replace !== undefined ? u.data.length : consume,
    };
    if (route?.connectTimeout !== undefined) d.connectTimeout = route.connectTimeout;
    if (route?.idleTimeout !== undefined) d.idleTimeout = route.idleTimeout;
    if (route?.toClient !== undefined) d.toClient = route.toClient;
    if (route?.tls !== undefined) d.tls = route.tls;
    if (route?.retry) d.retry = true;
    h.decide(id, d);
  }

  #build(send: SendProxyOptions, info: OriginalInfo): Uint8Array {
    const header: ProxyHeader = {
      version: send.version,
      command: "proxy",
      transport: "stream",
      tlvs: [],
    };
    if (info.source !== undefined && info.destination !== undefined) {
      header.source = info.source;
      header.destination = info.destination;
    } else if (send.version === 2) {
      header.command = "local"; // no addresses to tell (a Unix socket client)
    }
    if (send.version === 2) {
      const enc = new TextEncoder();
      const authority = typeof send.authority === "function"
        ? send.authority(info)
        : send.authority;
      if (authority !== undefined) {
        header.tlvs.push({ type: TLV.AUTHORITY, value: enc.encode(authority) });
      }
      if (send.uniqueId !== undefined && send.uniqueId !== false) {
        const v = send.uniqueId === true ? randomId() : send.uniqueId(info);
        header.tlvs.push({ type: TLV.UNIQUE_ID, value: typeof v === "string" ? enc.encode(v) : v });
      }
      const more = typeof send.tlvs === "function" ? send.tlvs(info) : send.tlvs ?? [];
      header.tlvs.push(...more);
    }
    return buildProxyHeader(header, { crc32c: send.crc32c ?? false });
  }
}
