/**
 * One held connection on its way to a relay: its PROXY header (accepted
 * through ProxyAcceptance), its route (asked through askRoute), its backend
 * tour (a Tour leasing one server at a time), the header sent on, and the
 * client-to-target hook over bytes read while deciding. Whatever fails in
 * here closes this one connection with a named error.
 *
 * @module
 */
import { concatBytes, EMPTY } from "../bytes.ts";
import { type ConnectDecision, routeBytes, type RouteDecision } from "../decision.ts";
import { describeValue, errorFor, RelaykitError } from "../errors.ts";
import { type DataHooks, runHook } from "../forward/hooks.ts";
import type {
  ConnectionEnd,
  Endpoint,
  HeldConnection,
  HeldUpdate,
  InetEndpoint,
  OriginalInfo,
  ProxyHandle,
  TlsClientOptions,
} from "../forward/types.ts";
import { addressBytes } from "../protocol/cidr.ts";
import { type DecodedTlvs, decodeTlvs, type ProxyHeader } from "../protocol/proxy_protocol.ts";
import type { SendProxyOptions } from "../types.ts";
import { describeConn, type ProxyAcceptance } from "./accept_proxy.ts";
import { type Backend, type Server, Tour } from "./balance.ts";
import {
  askRoute,
  type RouteConnection,
  routeConnection,
  RouteFailure,
  type RouteFunction,
} from "./routing.ts";
import { buildSendProxy } from "./send_proxy.ts";

/** What a listener's sessions are started with: its configuration at that moment. */
export interface SessionSetup {
  /** The header phase. */
  acceptance: ProxyAcceptance;
  /** The header to send to targets. */
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
  /** The user's hooks (the aToB one runs over bytes read while deciding). */
  hooks: DataHooks;
  /** Most ms an async hook may take over one chunk (0: none). */
  hookTimeout: number;
  /** Where the session reports. */
  report: {
    /** A header was accepted. */
    original(info: OriginalInfo): void;
    /** The connection was refused or failed before relaying. */
    error(err: RelaykitError): void;
  };
}

/** How a connect goes out: the route's or the backend's options. */
interface ConnectOptions {
  connectTimeout?: number;
  idleTimeout?: number;
  toClient?: Uint8Array;
  tls?: TlsClientOptions | undefined;
  retry?: boolean;
  send?: SendProxyOptions | undefined;
}

/** "::ffff:10.1.2.3" -> "10.1.2.3"; anything else unchanged. */
function plain(e: InetEndpoint | undefined): InetEndpoint | undefined {
  // only an IPv4-mapped or -compatible IPv6 address changes (the engines
  // give IPv4 addresses as dotted quads already)
  if (e === undefined || !e.host.includes(":")) return e;
  const b = addressBytes(e.host);
  return b?.length === 4 ? { host: b.join("."), port: e.port } : e;
}

/** A PROXY header the engine read before the session began (none came: undefined). */
export interface HeaderRead {
  header: ProxyHeader | undefined;
  /** Its length: the held bytes it takes up. */
  length: number;
}

/** One held connection, from its first update until it ends. */
export class Session {
  readonly #s: SessionSetup;
  readonly #h: ProxyHandle;
  readonly #conn: HeldConnection;
  /** header: reading a PROXY header; routing: asking the route; decided; ended. */
  #phase: "header" | "routing" | "decided" | "ended" = "header";
  /** The header's length, once the header phase is over. */
  #consume = 0;
  /** Who the client is (the header's addresses, else the peer's). */
  #info: OriginalInfo | undefined;
  /** What to tell the client if the route's connect fails. */
  #failReply: Uint8Array | ((error: RelaykitError) => unknown) | undefined;
  /** The backend's servers tried, and the one leased. */
  #tour: Tour | undefined;

  /** The header the engine read, until the first update uses it. */
  #read: HeaderRead | undefined;
  /** What the route is told of this connection: one object for every call. */
  #routeConn: RouteConnection | undefined;

  /**
   * @param setup The listener's configuration when the connection came.
   * @param handle The engine's proxy.
   * @param conn The connection.
   * @param read The PROXY header the engine read itself, if it did.
   */
  constructor(setup: SessionSetup, handle: ProxyHandle, conn: HeldConnection, read?: HeaderRead) {
    this.#s = setup;
    this.#h = handle;
    this.#conn = conn;
    this.#read = read;
  }

  /** Who the client is, when it sent a header or one is sent on. */
  get original(): OriginalInfo | undefined {
    const info = this.#info;
    return info !== undefined && (info.header !== undefined || this.#s.send !== undefined)
      ? info
      : undefined;
  }

  /** The backend server it went to, while it has one. */
  get server(): Server | undefined {
    return this.#tour?.server;
  }

  /** It ended: give back what it holds (its server's lease). */
  end(): void {
    this.#phase = "ended";
    this.#tour?.release();
  }

  /**
   * The engine reports an update. The fault barrier of the connection's
   * front: whatever fails in here (a header, a route, a hook, a callback)
   * closes this one connection with a named error; nothing is thrown to
   * the engine that called.
   */
  held(u: HeldUpdate): void {
    try {
      this.#held(u);
    } catch (e) {
      this.#fault(this.#phase === "routing" ? "RK_EROUTE" : "RK_EPROXY", "failed", e);
    }
  }

  #held(u: HeldUpdate): void {
    if (u.retry !== undefined) return this.#retry(u, u.retry);
    if (this.#phase === "routing") return void this.#route(u);
    if (this.#phase !== "header") return;
    const read = this.#read;
    if (read !== undefined) {
      // the engine read (and checked) the header: it is at the front of u.data
      this.#read = undefined;
      const h = read.header;
      return this.#headerDone(u, h, read.length, h === undefined ? undefined : {});
    }
    const step = this.#s.acceptance.step(u);
    switch (step.step) {
      case "read":
        return this.#h.readMore(this.#conn.id, step.max);
      case "refuse":
        return this.#refuse(step.error);
      case "done":
        return this.#headerDone(u, step.header, step.length, step.tlvs);
    }
  }

  /** A connect decided with `retry` failed. */
  #retry(u: HeldUpdate, err: RelaykitError): void {
    const failReply = this.#failReply;
    if (failReply === undefined) return this.#nextServer(u, 0, err);
    // the route's own answer to a failed connect, then close
    this.#failReply = undefined;
    this.#s.report.error(err);
    let toClient: Uint8Array;
    try {
      toClient = typeof failReply === "function"
        ? routeBytes(failReply(err), "failReply's result")
        : failReply;
    } catch (e) {
      return this.#fault("RK_EROUTE", "the route's failReply failed", e);
    }
    this.#h.decide(this.#conn.id, { action: "close", toClient });
  }

  /** The PROXY header phase is over: route, or go to the target. */
  #headerDone(
    u: HeldUpdate,
    header: ProxyHeader | undefined,
    consume: number,
    tlvs: DecodedTlvs | undefined,
  ): void {
    const info = this.#original(header, tlvs);
    const s = this.#s;
    this.#consume = consume;
    if (s.route !== undefined) {
      this.#phase = "routing";
      return void this.#route(u);
    }
    this.#phase = "decided";
    if (s.backend !== undefined) {
      this.#tour = new Tour(s.backend, info.source?.host ?? this.#conn.remote?.host);
      return this.#nextServer(u, consume, undefined);
    }
    const tls = s.targetTls;
    if (s.target === undefined) throw new TypeError("A proxy needs a target, a backend or a route");
    void this.#connect(u, s.target, undefined, consume, tls ? { tls } : undefined);
  }

  /** Who the client is: from its PROXY header, else the peer. */
  #original(header: ProxyHeader | undefined, tlvs: DecodedTlvs | undefined): OriginalInfo {
    const conn = this.#conn;
    const info: OriginalInfo = { id: conn.id };
    const fromHeader = header?.command === "proxy" && header.source !== undefined &&
      "host" in header.source && header.destination !== undefined && "host" in header.destination;
    const source = fromHeader ? header.source as InetEndpoint : plain(conn.remote);
    const destination = fromHeader ? header.destination as InetEndpoint : plain(conn.local);
    if (source !== undefined) info.source = source;
    if (destination !== undefined) info.destination = destination;
    if (header !== undefined) {
      info.header = header;
      info.tlvs = tlvs ?? decodeTlvs(header.tlvs);
    }
    this.#info = info;
    if (header !== undefined) this.#s.report.original(info);
    return info;
  }

  /** The next server of the backend (the first, or after `lastError`). */
  #nextServer(u: HeldUpdate, consume: number, lastError: RelaykitError | undefined): void {
    const tour = this.#tour;
    if (tour === undefined || this.#phase === "ended") return;
    if (lastError !== undefined) tour.failed();
    const next = tour.next();
    if (next === undefined) {
      const b = tour.backend;
      return this.#refuse(
        lastError ??
          errorFor(
            `${describeConn(this.#conn)}: backend "${b.name}" has no server up`,
            "RK_ENOSERVER",
            { connectionId: this.#conn.id },
          ),
      );
    }
    const { server, retry } = next;
    const connectTimeout = tour.backend.connectTimeout;
    if (tour.attempts === 1) {
      void this.#connect(u, server.address, undefined, consume, {
        ...(connectTimeout !== undefined ? { connectTimeout } : {}),
        retry,
        send: tour.backend.sendProxy,
      });
      return;
    }
    // a retry: the library (or stream engine) still has the bytes to send
    const d: ConnectDecision = { action: "connect", target: server.address, retry };
    if (connectTimeout !== undefined) d.connectTimeout = connectTimeout;
    this.#h.decide(this.#conn.id, d);
  }

  /**
   * Ask the route function about what the client sent after its header: a
   * route that answers at once is carried out at once, with no promise.
   */
  #route(u: HeldUpdate): void {
    let p: void | Promise<void>;
    try {
      p = this.#routeOnce(u);
    } catch (e) {
      return this.#routeFailed(e);
    }
    if (p !== undefined) p.catch((e) => this.#routeFailed(e));
  }

  /** The barrier of the route phase: nothing throws or rejects out of it. */
  #routeFailed(e: unknown): void {
    if (this.#phase === "routing") return this.#fault("RK_EROUTE", "bad route", e);
    // past the decision: the connection is no longer held
    this.#h.closeConnection(this.#conn.id, "graceful");
    const why = e instanceof Error ? e.message : describeValue(e);
    this.#s.report.error(
      new RelaykitError(`${describeConn(this.#conn)}: the route failed: ${why}`, "RK_EROUTE", {
        connectionId: this.#conn.id,
        cause: e,
      }),
    );
  }

  #routeOnce(u: HeldUpdate): void | Promise<void> {
    const s = this.#s, consume = this.#consume;
    if (s.route === undefined) return; // cannot happen: no route phase without one
    if (u.ahead && u.data.length > consume) {
      // the engine read what the client had already sent along with the
      // first update: the route is still asked first with none of it
      const none: HeldUpdate = {
        conn: u.conn,
        data: consume === 0 ? new Uint8Array(0) : u.data.subarray(0, consume),
        first: u.first,
        eof: false,
      };
      if (u.retry !== undefined) none.retry = u.retry;
      const d = askRoute(s.route, none, consume, this.#routeConnection());
      if (d instanceof Promise) return d.then((d) => this.#answeredNone(u, none, d));
      return this.#answeredNone(u, none, d);
    }
    return this.#ask(u);
  }

  /** The route answered `d` about none of the bytes read ahead (`none`). */
  #answeredNone(
    u: HeldUpdate,
    none: HeldUpdate,
    d: RouteDecision | RouteFailure,
  ): void | Promise<void> {
    if (this.#phase !== "routing") return;
    this.#firstAnswered(d);
    if (d instanceof RouteFailure || (d.action !== "wait" && d.action !== "send")) {
      return this.#act(none, d);
    }
    // a step: answer, then ask again at once with the bytes already here
    if (d.action === "send") this.#h.sendHeld(this.#conn.id, d.send);
    return this.#ask(u);
  }

  /** What the route is told of this connection (its header is read by now). */
  #routeConnection(): RouteConnection {
    return this.#routeConn ??= routeConnection(this.#conn, this.#info);
  }

  /** Ask the route about update `u`. */
  #ask(u: HeldUpdate): void | Promise<void> {
    const d = askRoute(this.#s.route!, u, this.#consume, this.#routeConnection());
    // a route that answers at once decides at once
    if (d instanceof Promise) return d.then((d) => this.#answered(u, d));
    return this.#answered(u, d);
  }

  /** The route answered `d` about update `u`. */
  #answered(u: HeldUpdate, d: RouteDecision | RouteFailure): void | Promise<void> {
    // ended or refused meanwhile (the decision timeout): nothing left to do
    if (this.#phase !== "routing") return;
    if (u.first && u.data.length === this.#consume && !u.eof) this.#firstAnswered(d);
    return this.#act(u, d);
  }

  /** Tell the engine how the route answered a first update with no bytes. */
  #firstAnswered(d: RouteDecision | RouteFailure): void {
    if (d instanceof RouteFailure) return; // says nothing of what it needs
    this.#h.firstAnswered?.(d.action === "wait");
  }

  /** Carry out the route's answer `d` to update `u`. */
  #act(u: HeldUpdate, d: RouteDecision | RouteFailure): void | Promise<void> {
    const s = this.#s, h = this.#h, id = this.#conn.id, consume = this.#consume;
    if (d instanceof RouteFailure) return this.#fault("RK_EROUTE", d.what, d.error);
    switch (d.action) {
      case "wait":
      case "send": {
        // past the limit or the client's EOF no more bytes can come: asked
        // again, the route would see the same ones, without end (and a step
        // that cannot go on is not sent)
        const length = u.data.length - consume;
        if (length >= s.routeLimit) {
          return this.#refuse(
            errorFor(
              `${
                describeConn(this.#conn)
              }: no route after ${length} bytes (the limit is ${s.routeLimit})`,
              "RK_EROUTE_LIMIT",
              { connectionId: id },
            ),
          );
        }
        if (u.eof) {
          return this.#refuse(
            errorFor(
              `${describeConn(this.#conn)}: the client ended before a route was found`,
              "RK_EROUTE",
              { connectionId: id },
            ),
          );
        }
        // a handshake step: answer, stay in the route phase, read on
        if (d.action === "send") h.sendHeld(id, d.send);
        return h.readMore(id, consume + s.routeLimit);
      }
      case "remote": {
        this.#phase = "decided";
        this.#failReply = d.failReply;
        const replace = d.data;
        const how: ConnectOptions = { tls: d.tls, retry: d.failReply !== undefined };
        if (d.connectTimeout !== undefined) how.connectTimeout = d.connectTimeout;
        if (d.idleTimeout !== undefined) how.idleTimeout = d.idleTimeout;
        if (d.reply !== undefined) how.toClient = d.reply;
        return this.#connect(
          u,
          d.target,
          replace,
          replace === undefined ? consume : u.data.length,
          how,
        );
      }
      default: {
        // a decision the engine carries out as it is
        this.#phase = "decided";
        const err = h.decide(id, d);
        if (err !== undefined) this.#refuse(err);
      }
    }
  }

  /** Connect to `target`: the PROXY header to send, then `replace` or the held bytes. */
  #connect(
    u: HeldUpdate,
    target: Endpoint,
    replace: Uint8Array | undefined,
    consume: number,
    how: ConnectOptions | undefined,
  ): void | Promise<void> {
    const s = this.#s, h = this.#h, id = this.#conn.id;
    const info = this.#info ?? { id };
    let toTarget: Uint8Array = EMPTY;
    const send = how?.send ?? s.send;
    if (send !== undefined) {
      try {
        toTarget = buildSendProxy(send, info);
      } catch (e) {
        this.#refuse(
          errorFor(
            `${describeConn(this.#conn)}: cannot build the PROXY header (${(e as Error).message})`,
            "RK_EPROXY",
            { connectionId: id, cause: e },
          ),
        );
        return;
      }
    }
    // bytes read while deciding go through the client-to-target hook too
    const hook = s.hooks.aToB;
    const rest = hook === undefined ? EMPTY : replace ?? u.data.subarray(consume);
    if (hook !== undefined && rest.length > 0) {
      return runHook(hook, rest, {
        id,
        direction: "aToB",
        remote: this.#conn.remote,
        original: info,
        stats: () => h.connectionStats(id),
      }, s.hookTimeout).then(
        (out) => this.#connectNow(target, concatBytes([toTarget, out]), u.data.length, how),
        (e) => {
          h.closeConnection(id, "abort");
          s.report.error(e as RelaykitError);
        },
      );
    }
    if (replace !== undefined) toTarget = concatBytes([toTarget, replace]);
    this.#connectNow(target, toTarget, replace !== undefined ? u.data.length : consume, how);
  }

  /** Decide the connect: `toTarget` first, then the held bytes past `consume`. */
  #connectNow(
    target: Endpoint,
    toTarget: Uint8Array,
    consume: number,
    how: ConnectOptions | undefined,
  ): void {
    const d: ConnectDecision = { action: "connect", target, toTarget, consume };
    if (how?.connectTimeout !== undefined) d.connectTimeout = how.connectTimeout;
    if (how?.idleTimeout !== undefined) d.idleTimeout = how.idleTimeout;
    if (how?.toClient !== undefined) d.toClient = how.toClient;
    if (how?.tls !== undefined) d.tls = how.tls;
    if (how?.retry) d.retry = true;
    this.#h.decide(this.#conn.id, d);
  }

  /** Close the held connection, then report why. */
  #refuse(err: RelaykitError): void {
    if (this.#phase !== "ended") this.#phase = "decided";
    const id = this.#conn.id;
    try {
      this.#h.decide(id, { action: "close" });
    } catch {
      this.#h.closeConnection(id, "abort");
    }
    this.#s.report.error(err);
  }

  /** Something failed while `what` ran: close with `code`, the failure as cause. */
  #fault(code: string, what: string, e: unknown): void {
    const why = e instanceof Error ? e.message : describeValue(e);
    this.#refuse(
      new RelaykitError(`${describeConn(this.#conn)}: ${what}: ${why}`, code, {
        connectionId: this.#conn.id,
        cause: e,
      }),
    );
  }
}

/** A listener's sessions by connection id, from the first update until the end. */
export class Sessions {
  readonly #byId = new Map<number, Session>();
  /** Who the clients are whose PROXY headers the engine read itself. */
  readonly #originals = new Map<number, OriginalInfo>();

  /** Headers the engine read of connections whose first held update is next. */
  readonly #read = new Map<number, HeaderRead>();

  /** The engine read connection `id`'s header; its session starts with it. */
  addRead(id: number, read: HeaderRead): void {
    this.#read.set(id, read);
  }

  /** The header the engine read of connection `id`, once. */
  takeRead(id: number): HeaderRead | undefined {
    const r = this.#read.get(id);
    this.#read.delete(id);
    return r;
  }

  /** Connection `id` (no session: the engine read its header) is `info`. */
  addOriginal(id: number, info: OriginalInfo): void {
    this.#originals.set(id, info);
  }

  /** The session of connection `id`, while it is open. */
  get(id: number): Session | undefined {
    return this.#byId.get(id);
  }

  /** Keep `s` as connection `id`'s session. */
  add(id: number, s: Session): void {
    this.#byId.set(id, s);
  }

  /** The original addresses of connection `id`, while it is open. */
  original(id: number): OriginalInfo | undefined {
    return this.#byId.get(id)?.original ?? this.#originals.get(id);
  }

  /**
   * Connection `id` ended: its end tells who it was and which server it
   * had, and its session gives back what it holds.
   */
  ended(end: ConnectionEnd): void {
    this.#read.delete(end.id); // ended before its session began
    const s = this.#byId.get(end.id);
    if (s === undefined) {
      const original = this.#originals.get(end.id);
      if (original === undefined) return;
      this.#originals.delete(end.id);
      end.original = original;
      return;
    }
    this.#byId.delete(end.id);
    const original = s.original;
    if (original !== undefined) end.original = original;
    const server = s.server;
    if (server !== undefined) {
      end.server = server.name;
      server.bytesUp += end.aToB.written;
      server.bytesDown += end.bToA.written;
    }
    s.end();
  }
}
