/**
 * The native engine: listeners, connects and relays run in the C library's
 * worker threads; JavaScript only sees one event when a connection opens
 * and one when it ends.
 *
 * @module
 */
import { callsOf, type NativeEngine } from "../native/engine.ts";
import type { NativeEvent } from "../native/events.ts";
import { X509Certificate } from "node:crypto";
import { errorFor, RelaykitError } from "../errors.ts";
import { certificateReason } from "../runtime/tls_verify.ts";
import { TlsBridge } from "./tls_bridge.ts";
import { type DataHooks, type HookContext, runHook } from "./hooks.ts";
import {
  connectFailure,
  type ConnectionEnd,
  type ConnectionStats,
  connectionTo,
  type Endpoint,
  type EndReason,
  type EventInterest,
  formatEndpoint,
  type ForwardEngine,
  type HeldConnection,
  type HeldUpdate,
  type HoldDecision,
  type ProxyCallbacks,
  type ProxyHandle,
  type ProxySpec,
  type TlsClientOptions,
  type TlsServerOptions,
} from "./types.ts";

type Closed = Extract<NativeEvent, { type: "closed" }>;
type Hook = Extract<NativeEvent, { type: "hook" }>;

/** The end of a connection from its closed event. */
export function endOf(
  engine: NativeEngine,
  ev: Closed,
  describe: (reason: EndReason) => string,
): ConnectionEnd {
  const end: ConnectionEnd = {
    id: ev.id,
    reason: ev.reason,
    durationMs: ev.durationMs,
    ...ev.counters,
  };
  if (ev.err !== 0) end.error = engine.error(ev.err, describe(ev.reason), ev.id);
  return end;
}

/** Live stats of connection `id`, or undefined once it ended. */
export function nativeStats(engine: NativeEngine, id: number): ConnectionStats | undefined {
  return callsOf(engine).connStats(id);
}

/**
 * A hooked direction posted a chunk: take it, run the hook, hand back the
 * result (which resumes the direction), or close the connection if the hook
 * failed.
 */
export function nativeHook(
  engine: NativeEngine,
  ev: Hook,
  hooks: DataHooks,
  failed: (err: RelaykitError) => void,
): void {
  const calls = callsOf(engine), id = ev.id, direction = ev.direction;
  const chunk = calls.hookTake(id, direction, ev.length);
  if (chunk === undefined) return; // the connection ended meanwhile
  const hook = hooks[direction];
  if (hook === undefined) { // cannot happen: only hooked directions post
    calls.hookResume(id, direction, chunk);
    return;
  }
  let remote: { host: string; port: number } | undefined | null = null;
  const ctx: HookContext = {
    id,
    direction,
    get remote() {
      if (remote === null) remote = calls.connPeer(id);
      return remote;
    },
    stats: () => nativeStats(engine, id),
  };
  runHook(hook, chunk, ctx).then(
    (out) => void calls.hookResume(id, direction, out),
    (err: RelaykitError) => {
      try {
        failed(err);
      } finally {
        nativeClose(engine, id, "abort"); // closed even if a listener throws
      }
    },
  );
}

/** Close connection `id` gracefully (flush, FIN) or by aborting (RST). */
export function nativeClose(engine: NativeEngine, id: number, mode: "graceful" | "abort"): void {
  // -ENOENT: it ended already, which is what the caller wanted
  callsOf(engine).connClose(id, mode);
}

/** Hand a held connection's decision to the library. */
function nativeDecide(
  engine: NativeEngine,
  id: number,
  d: HoldDecision,
  spec: ProxySpec,
): RelaykitError | undefined {
  const calls = callsOf(engine);
  if (d.action === "file") {
    const r = calls.holdDecide(id, d);
    return r < 0 ? engine.error(r, `Cannot send the file "${d.path}"`, id) : undefined;
  }
  if (d.action === "close") {
    calls.holdDecide(id, d);
    return undefined;
  }
  calls.holdDecide(id, {
    action: "connect",
    target: d.target,
    family: spec.family,
    connectTimeout: d.connectTimeout ?? spec.connectTimeout,
    bindAddress: spec.bindAddress,
    toTarget: d.toTarget,
    toClient: d.toClient,
    consume: d.consume,
    idleTimeout: d.idleTimeout,
    retry: d.retry,
  });
  return undefined;
}

/** What a proxy keeps about a held connection until it ends. */
interface HeldState {
  conn: HeldConnection;
  /** Where it was sent (for messages). */
  target?: Endpoint;
  /** TLS to the target in the library: the name verified and the CAs given. */
  tls?: { name: string; ca: string | undefined };
}

/** The engine whose relays run in the native library. */
export class NativeForwardEngine implements ForwardEngine {
  /** Always "native". */
  readonly name = "native";
  readonly #engine: NativeEngine;

  /** @param engine The native engine to run on. */
  constructor(engine: NativeEngine) {
    this.#engine = engine;
  }

  /** See {@link ForwardEngine.startProxy}. */
  startProxy(spec: ProxySpec): Promise<ProxyHandle> {
    const e = this.#engine;
    const calls = callsOf(e);
    // no per-connection events until someone asks (setInterest): a proxy
    // nobody watches costs JavaScript nothing per connection. Held
    // connections always report their end: their owner keeps state.
    const holding = spec.hold !== undefined;
    const events = (i: EventInterest) => ({ ...i, close: i.close || holding });
    const where = formatEndpoint(spec.listen);
    const lid = e.check(
      calls.listen(spec.listen, {
        backlog: spec.backlog,
        reusePort: spec.reusePort,
        hold: holding,
        maxConnections: spec.maxConnections,
        idleTimeout: spec.idleTimeout,
        holdTimeout: spec.hold?.timeout ?? 0,
        events: events({ open: false, connected: false, close: false }),
        hooks: spec.hooks,
        adoptFd: spec.fd,
      }),
      `Cannot listen on "${where}"`,
    );
    let bridge: TlsBridge | undefined; // for TLS targets, started on first use
    // client TLS contexts of the library by CA and verification, made on
    // first use and freed with the listener; undefined when TLS is not
    // available in the library (then the bridge carries TLS)
    const clientContexts = new Map<string, number | { code: string; message: string }>();
    let libraryTls: boolean | undefined;
    const clientTls = (o: TlsClientOptions) => {
      libraryTls ??= e.tlsUnavailable() === undefined;
      if (!libraryTls) return undefined;
      const verify = o.rejectUnauthorized !== false;
      const key = `${verify}\n${o.ca ?? ""}`;
      let ctx = clientContexts.get(key);
      if (ctx === undefined) {
        const r = calls.tlsClientContext(o.ca, verify);
        if (typeof r === "number") ctx = r;
        else {
          const err = e.error(r.code, "TLS");
          ctx = { code: err.code, message: r.detail === "" ? err.message : r.detail };
        }
        clientContexts.set(key, ctx);
      }
      return ctx;
    };
    const freeClientContexts = () => {
      for (const ctx of clientContexts.values()) {
        if (typeof ctx === "number") calls.tlsContextFree(ctx);
      }
      clientContexts.clear();
    };
    // per held connection: what it was, and where it was sent (for messages)
    const held = new Map<number, HeldState>();
    // where failures of TLS bridging go: the callbacks, once started (no
    // connection, hence no decision, comes before)
    let report: ((err: RelaykitError) => void) | undefined;
    try {
      if (spec.tls !== undefined) this.#terminateTls(lid, spec.tls, where);
      if (spec.hold === undefined) {
        if (spec.target === undefined) throw new TypeError("A proxy needs a target or hold");
        e.check(
          calls.listenerSetTarget(lid, {
            target: spec.target,
            family: spec.family,
            connectTimeout: spec.connectTimeout,
            bindAddress: spec.bindAddress,
          }),
          `Cannot proxy to "${formatEndpoint(spec.target)}"`,
        );
      }
    } catch (err) {
      calls.listenerClose(lid);
      throw err;
    }
    const bound = "path" in spec.listen
      ? spec.listen
      : { host: spec.listen.host, port: calls.listenerPort(lid) };
    let started = false;
    let stopping = false;
    return Promise.resolve({
      address: bound,
      start: (cb: ProxyCallbacks) => {
        if (started) throw new TypeError("A proxy handle starts once");
        started = true;
        report = (err) => cb.reject(err);
        e.onListener(lid, (ev) =>
          this.#onEvent(ev, spec, cb, lid, held, () => {
            bridge?.close();
            freeClientContexts();
          }));
        try {
          e.check(calls.listenerStart(lid), `Cannot listen on "${where}"`);
        } catch (err) {
          e.offListener(lid);
          calls.listenerClose(lid);
          throw err;
        }
        e.ref();
      },
      stopAccepting: () => {
        if (stopping) return;
        stopping = true;
        calls.listenerClose(lid);
      },
      abortAll: () => void calls.listenerAbort(lid),
      activeConnections: () => Math.max(0, calls.listenerActive(lid)),
      setInterest: (i: EventInterest) => void calls.listenerSetEvents(lid, events(i)),
      closeConnection: (id, mode) => nativeClose(e, id, mode),
      connectionStats: (id) => nativeStats(e, id),
      readMore: (id, max) => void calls.holdRead(id, max),
      sendHeld: (id, data) => void calls.holdWrite(id, data),
      decide: (id, d) => {
        const h = held.get(id);
        if (h === undefined) return undefined; // ended meanwhile, or decided already
        if (d.action === "connect") h.target = d.target;
        if (d.action === "connect" && d.tls !== undefined && clientTls(d.tls) !== undefined) {
          // TLS in the library, on the worker that relays the connection
          const ctx = clientTls(d.tls)!;
          if (typeof ctx !== "number") {
            report?.(
              new RelaykitError(`${connectFailure(d.target)}: ${ctx.message}`, ctx.code, {
                connectionId: id,
              }),
            );
            nativeClose(e, id, "abort");
            return undefined;
          }
          const t = d.target;
          const name = d.tls.servername ?? ("host" in t ? t.host.replace(/^\[(.*)\]$/, "$1") : "");
          if (calls.holdSetTls(id, ctx, name) < 0) return undefined; // it ended meanwhile
          h.tls = { name, ca: d.tls.ca };
          const { tls: _, ...plain } = d;
          return nativeDecide(e, id, plain, spec);
        }
        if (d.action === "connect" && d.tls !== undefined) {
          // no TLS in the library (OpenSSL did not load): TLS runs on the
          // runtime's sockets, and the connection connects natively to the bridge
          bridge ??= new TlsBridge((err) => report?.(err));
          const timeout = d.connectTimeout ?? spec.connectTimeout;
          bridge.prepare(id, d.target, d.tls, timeout).then(({ port, preamble }) => {
            const toTarget = new Uint8Array(preamble.length + (d.toTarget?.length ?? 0));
            toTarget.set(preamble);
            if (d.toTarget !== undefined) toTarget.set(d.toTarget, preamble.length);
            const { tls: _, ...plain } = d;
            nativeDecide(e, id, {
              ...plain,
              target: { host: "127.0.0.1", port },
              toTarget,
            }, spec);
          }, (err: RelaykitError) => {
            report?.(err);
            nativeClose(e, id, "abort");
          });
          return undefined;
        }
        return nativeDecide(e, id, d, spec);
      },
    });
  }

  /** Make listener `lid` terminate TLS in the library (OpenSSL 3 at run time). */
  #terminateTls(lid: number, tls: TlsServerOptions, where: string): void {
    const e = this.#engine, calls = callsOf(e);
    const what = `Cannot terminate TLS on "${where}"`;
    const why = e.tlsUnavailable();
    if (why !== undefined) throw new RelaykitError(`${what}: ${why}`, "RK_ENOTLS");
    const ctx = calls.tlsServerContext(tls.cert, tls.key);
    if (typeof ctx !== "number") {
      const err = e.error(ctx.code, what);
      throw new RelaykitError(
        ctx.detail === "" ? err.message : `${err.message}: ${ctx.detail}`,
        err.code,
      );
    }
    const r = calls.listenerSetTls(lid, ctx);
    calls.tlsContextFree(ctx); // the listener keeps its own reference
    e.check(r, what);
  }

  #onEvent(
    ev: NativeEvent,
    spec: ProxySpec,
    cb: ProxyCallbacks,
    lid: number,
    held: Map<number, HeldState>,
    closeBridge: () => void,
  ): void {
    const e = this.#engine;
    switch (ev.type) {
      case "hold": {
        let h = held.get(ev.id);
        if (h === undefined) {
          if (!ev.first) return; // cannot happen
          const conn: HeldConnection = { id: ev.id };
          if (ev.remote !== undefined) conn.remote = ev.remote;
          if (ev.local !== undefined) conn.local = ev.local;
          h = { conn };
          held.set(ev.id, h);
        }
        const data = callsOf(e).holdTake(ev.id, ev.held);
        if (data === undefined) return; // it ended meanwhile; its CLOSED follows
        const update: HeldUpdate = { conn: h.conn, data, first: ev.first, eof: ev.eof };
        if (ev.retry) {
          update.retry = e.error(ev.err, connectFailure(h.target ?? spec.listen), ev.id);
        }
        cb.held?.(update);
        break;
      }
      case "accept":
        cb.open(ev.remote === undefined ? { id: ev.id } : { id: ev.id, remote: ev.remote });
        break;
      case "connected":
        cb.connected(ev.id);
        break;
      case "hook":
        nativeHook(e, ev, spec.hooks, (err) => cb.hookFailed(err));
        break;
      case "closed": {
        const h = held.get(ev.id);
        const target = h?.target ?? spec.target;
        held.delete(ev.id);
        const end = endOf(
          e,
          ev,
          (reason) =>
            reason === "connect-failed"
              ? connectFailure(target!)
              : reason === "idle-timeout"
              ? `Connection ${ev.id} idle for ${spec.idleTimeout} ms`
              : reason === "decision-timeout"
              ? `Connection ${ev.id} undecided after ${spec.hold?.timeout} ms`
              : `${connectionTo(ev.id, target)} failed`,
        );
        if (end.error?.code === "CERT_UNTRUSTED" && h?.tls !== undefined) {
          // why, in the words of the one verification policy
          const f = callsOf(e).tlsCertFailure(ev.id);
          if (f !== undefined) {
            let peer: X509Certificate | undefined;
            try {
              peer = new X509Certificate(f.der);
            } catch { /* unreadable: the library's words */ }
            end.error = errorFor(connectFailure(target!), "CERT_UNTRUSTED", {
              connectionId: ev.id,
              detail: certificateReason(peer, h.tls.name, h.tls.ca, f.said),
            });
          }
        }
        cb.close(end);
        break;
      }
      case "rejected":
        cb.reject(e.error(ev.err, `Connection refused on "${formatEndpoint(spec.listen)}"`));
        break;
      case "accept-error":
        cb.reject(e.error(ev.err, `Cannot accept on "${formatEndpoint(spec.listen)}"`));
        break;
      case "listener-closed":
        cb.stopped();
        break;
      case "listener-drained":
        // the last event of this listener: its connections' CLOSED events
        // were all posted before it
        e.offListener(lid);
        closeBridge();
        cb.drained();
        e.unref();
        break;
    }
  }
}
