/**
 * The front of a proxy listener: what happens to a connection before its
 * bytes start moving. Each held connection (ProxySpec.hold) gets a Session
 * (./session.ts) that accepts its PROXY header, routes it, leases its
 * backend server, sends a header on and runs the client-to-target hook over
 * bytes read while deciding, all through the engine-neutral ProxyHandle, so
 * both engines behave the same; on the native engine the relay that follows
 * is native again.
 *
 * @module
 */
import type { RelaykitError } from "../errors.ts";
import type { DataHooks } from "../forward/hooks.ts";
import type {
  Endpoint,
  FrontResult,
  HeldUpdate,
  OriginalInfo,
  ProxyFront,
  ProxyHandle,
  TlsClientOptions,
} from "../forward/types.ts";
import { ProxyProtocolError } from "../protocol/proxy_protocol.ts";
import type { SendProxyOptions } from "../types.ts";
import {
  type AcceptProxyOptions,
  checkAcceptProxy,
  endedError,
  engineAccept,
  malformedError,
  ProxyAcceptance,
  untrustedError,
} from "./accept_proxy.ts";
import type { Backend } from "./balance.ts";
import type { RouteFunction } from "./routing.ts";
import { checkSendProxy, engineSendProxy } from "./send_proxy.ts";
import { Session, type Sessions, type SessionSetup } from "./session.ts";

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
}

/** Where the front reports. */
export interface FrontReports {
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
  if (accept !== undefined) checkAcceptProxy(accept);
  if (send !== undefined) checkSendProxy(send);
}

/** How long a connection of a front with `options` may stay undecided (0: no limit). */
export function decisionTimeout(options: FrontOptions): number {
  const header = new ProxyAcceptance(options.accept).timeout;
  const route = options.route === undefined ? 0 : options.routeTimeout;
  return header === 0 || route === 0 ? Math.max(header, route) : header + route;
}

/**
 * The front of `options` as an engine may run it itself (ProxySpec.front):
 * all of it (`decides`) when it is only a PROXY header to accept and/or
 * send on the way to a fixed target, where nothing the user wrote runs
 * before the relay; else the header to accept, after which the sessions
 * decide; undefined without a header to accept.
 */
export function engineFront(options: FrontOptions): ProxyFront | undefined {
  const o = options;
  const send = o.send === undefined ? undefined : engineSendProxy(o.send);
  if (
    o.target !== undefined && o.route === undefined && o.backend === undefined &&
    o.targetTls === undefined && o.hooks.aToB === undefined &&
    (o.accept !== undefined || o.send !== undefined) &&
    (o.send === undefined || send !== undefined)
  ) return engineAccept(o.accept, send, true);
  // the engine reads the header; the sessions decide with it read
  return o.accept === undefined ? undefined : engineAccept(o.accept, undefined, false);
}

/** The held connections of one listener, a Session each. */
export class Front {
  #o: FrontOptions;
  #setup: SessionSetup;
  readonly #handle: ProxyHandle;
  readonly #report: FrontReports;
  readonly #sessions: Sessions;

  /**
   * @param options What to accept and send, and where connections go.
   * @param handle The engine's proxy whose held connections these are.
   * @param sessions Where its sessions are kept until they end.
   * @param report Where to report.
   */
  constructor(
    options: FrontOptions,
    handle: ProxyHandle,
    sessions: Sessions,
    report: FrontReports,
  ) {
    this.#o = options;
    this.#handle = handle;
    this.#sessions = sessions;
    this.#report = report;
    this.#setup = this.#setupOf(options);
  }

  #setupOf(o: FrontOptions): SessionSetup {
    const report = this.#report;
    return {
      acceptance: new ProxyAcceptance(o.accept),
      send: o.send,
      target: o.target,
      backend: o.backend,
      targetTls: o.targetTls,
      route: o.route,
      routeLimit: o.routeLimit,
      hooks: o.hooks,
      hookTimeout: o.hookTimeout,
      report: { original: (info) => report.onOriginal(info), error: (err) => report.onError(err) },
    };
  }

  /** The options new connections use. */
  get options(): FrontOptions {
    return this.#o;
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
    // new connections are held for the new options' sessions from now on
    this.#handle.dropFront?.();
    this.#setup = this.#setupOf(next);
    this.#o = next;
  }

  /** The engine read a client's PROXY header itself (engineFront), or refused the client. */
  proxied(r: FrontResult): void {
    if ("original" in r) {
      if (r.handed) {
        // its session starts with the header read (held is called next)
        this.#sessions.addRead(r.id, { header: r.original.header, length: r.length });
        return;
      }
      this.#sessions.addOriginal(r.id, r.original);
      if (r.original.header !== undefined) this.#report.onOriginal(r.original);
      return;
    }
    const conn = r.remote === undefined ? { id: r.id } : { id: r.id, remote: r.remote };
    this.#report.onError(
      r.refused === "untrusted"
        ? untrustedError(conn)
        : r.refused === "eof"
        ? endedError(conn, r.held)
        : malformedError(conn, new ProxyProtocolError(r.code, r.message)),
    );
  }

  /** A held connection was accepted or sent more. */
  held(u: HeldUpdate): void {
    let s = this.#sessions.get(u.conn.id);
    if (s === undefined) {
      if (!u.first) return; // cannot happen: it ended already
      s = new Session(this.#setup, this.#handle, u.conn, this.#sessions.takeRead(u.conn.id));
      this.#sessions.add(u.conn.id, s);
    }
    s.held(u);
  }
}
