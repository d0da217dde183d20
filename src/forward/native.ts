/**
 * The native engine: listeners, connects and relays run in the C library's
 * worker threads; JavaScript only sees one event when a connection opens
 * and one when it ends.
 *
 * @module
 */
import { callsOf, type NativeEngine } from "../native/engine.ts";
import type { NativeEvent } from "../native/events.ts";
import { EMPTY } from "../bytes.ts";
import type { NativeCalls } from "../native/calls.ts";
import type { ProxyHeader } from "../protocol/proxy_protocol.ts";
import { X509Certificate } from "node:crypto";
import { errorFor, RelaykitError } from "../errors.ts";
import { certificateReason } from "../runtime/tls_verify.ts";
import { TlsBridge } from "./tls_bridge.ts";
import { callHook, type DataHook, type DataHooks, type HookContext } from "./hooks.ts";
import {
  ArraySnapshot,
  connectFailure,
  type ConnectionEnd,
  type ConnectionStats,
  connectionTo,
  type Endpoint,
  type EndReason,
  type EngineRouter,
  type EventInterest,
  formatEndpoint,
  type ForwardEngine,
  type FrontResult,
  type HeldConnection,
  type HeldUpdate,
  type HoldDecision,
  type ListenerTotals,
  listenFailure,
  type OriginalInfo,
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
    aToB: ev.counters.aToB,
    bToA: ev.counters.bToA,
  };
  if (ev.err !== 0) end.error = engine.error(ev.err, describe(ev.reason), ev.id);
  return end;
}

/** Live stats of connection `id`, or undefined once it ended. */
export function nativeStats(engine: NativeEngine, id: number): ConnectionStats | undefined {
  return callsOf(engine).connStats(id);
}

/** The batches of one hooked direction waiting for its hook, oldest first. */
interface HookQueue {
  readonly batches: { token: number; chunk: Uint8Array }[];
  readonly ctx: HookContext;
  running: boolean;
  /** The connection failed or ended: release what comes, run nothing. */
  dead: boolean;
}

/** Per engine: hooked directions with batches in JavaScript, by id * 2 + direction. */
const hookQueues = new WeakMap<NativeEngine, Map<number, HookQueue>>();

/**
 * A hooked direction lent a batch: run the hook over it (after the
 * direction's earlier batches: a hook sees its direction's bytes in order,
 * one call at a time), hand back the result, or close the connection if the
 * hook failed. The library reads ahead while batches are here, up to its
 * window.
 */
export function nativeHook(
  engine: NativeEngine,
  ev: Hook,
  hooks: DataHooks,
  failed: (err: RelaykitError) => void,
): void {
  const calls = callsOf(engine), id = ev.id, direction = ev.direction;
  const chunk = calls.hookLend(ev.token, ev.address, ev.length, hooks.lend === true);
  const hook = hooks[direction];
  if (hook === undefined) { // cannot happen: only hooked directions post
    calls.hookReturn(ev.token, chunk);
    return;
  }
  let queues = hookQueues.get(engine);
  if (queues === undefined) hookQueues.set(engine, queues = new Map());
  const key = id * 2 + (direction === "aToB" ? 0 : 1);
  let q = queues.get(key);
  if (q === undefined) {
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
    q = { batches: [], ctx, running: false, dead: false };
    queues.set(key, q);
  }
  q.batches.push({ token: ev.token, chunk });
  if (!q.running) runQueue(engine, queues, key, q, hook, failed);
}

function runQueue(
  engine: NativeEngine,
  queues: Map<number, HookQueue>,
  key: number,
  q: HookQueue,
  hook: DataHook,
  failed: (err: RelaykitError) => void,
): void {
  const calls = callsOf(engine);
  // a hook that transferred the lent buffer fails whatever it returned:
  // the engine's memory may live on in JavaScript
  const transferred = () =>
    new RelaykitError(
      `Hook ${q.ctx.direction} of connection ${q.ctx.id} failed: it transferred its chunk's buffer (keep chunk.slice() instead)`,
      "RK_EHOOK",
      { connectionId: q.ctx.id },
    );
  const fail = (err: RelaykitError) => {
    q.dead = true;
    try {
      failed(err);
    } finally {
      nativeClose(engine, q.ctx.id, "abort"); // closed even if a listener throws
      runQueue(engine, queues, key, q, hook, failed); // releases the rest
    }
  };
  // batches whose hook returns at once go back in this loop: no promise,
  // no turn of the microtask queue per batch
  for (;;) {
    const next = q.batches.shift();
    if (next === undefined) {
      q.running = false;
      queues.delete(key);
      return;
    }
    q.running = true;
    const { token, chunk } = next;
    if (q.dead) {
      calls.hookReturn(token, EMPTY);
      continue;
    }
    const out = callHook(hook, chunk, q.ctx);
    if (!(out instanceof Promise)) {
      const r = calls.hookReturn(token, out);
      if (r === "kept") return fail(transferred());
      if (r === "ended") q.dead = true;
      continue;
    }
    out.then((out) => {
      const r = calls.hookReturn(token, out);
      if (r === "kept") return fail(transferred());
      if (r === "ended") q.dead = true;
      runQueue(engine, queues, key, q, hook, failed);
    }, (err: RelaykitError) => {
      fail(calls.hookReturn(token, EMPTY) === "kept" ? transferred() : err);
    });
    return;
  }
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

/** What an RK_EV_PROXY record says, for the proxy's front. */
function frontResult(ev: Extract<NativeEvent, { type: "proxy" }>, calls: NativeCalls): FrontResult {
  const id = ev.id;
  if (ev.err !== 0) {
    const at = ev.source === undefined ? { id } : { id, remote: ev.source };
    if (calls.describe(ev.err).name !== "RK_EPROXY") return { ...at, refused: "untrusted" };
    const text = calls.proxyError(ev.code);
    const colon = text.indexOf(": ");
    const code = text.slice(0, colon), message = text.slice(colon + 2);
    if (code === "EOF") return { ...at, refused: "eof", held: ev.length };
    return { ...at, refused: "malformed", code, message };
  }
  const original: OriginalInfo = { id };
  if (ev.source !== undefined) original.source = ev.source;
  if (ev.destination !== undefined) original.destination = ev.destination;
  const length = ev.length, handed = ev.handed;
  if (!ev.header) return { id, original, length, handed }; // none came
  const header: ProxyHeader = {
    version: ev.version,
    command: ev.command,
    transport: ev.transport,
    tlvs: [],
  };
  original.header = header;
  original.tlvs = {};
  if (ev.fromHeader && ev.source !== undefined && ev.destination !== undefined) {
    header.source = ev.source;
    header.destination = ev.destination;
  }
  return { id, original, length, handed };
}

/**
 * Why a listener that reads PROXY headers does not terminate TLS in the
 * library: the header comes before the TLS, and the library's TLS side reads
 * only TLS.
 */
export const TLS_AFTER_PROXY =
  "TLS termination after an accepted PROXY header runs on the runtime's TLS";

/** What a proxy keeps about a held connection until it ends. */
interface HeldState {
  conn: HeldConnection;
  /** Where it was sent (for messages). */
  target?: Endpoint;
  /** TLS to the target in the library: the name verified and the CAs given. */
  tls?: { name: string; ca: string | undefined };
}

/** The counters of a listener the library no longer knows (cannot be read). */
const NO_TOTALS: ListenerTotals = {
  accepted: 0,
  ended: 0,
  open: 0,
  peak: 0,
  bytesUp: 0,
  bytesDown: 0,
};

/** The open connections of a listener that has drained. */
const NO_CONNECTIONS = new ArraySnapshot([]);

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
    // nobody watches costs JavaScript nothing per connection. (The library
    // reports the end of each connection it held for us whatever this
    // says: we keep state for it; not of those a built-in router decided
    // alone.)
    const holding = spec.hold !== undefined;
    // a PROXY header phase the library runs itself: its connections reach
    // JavaScript only when someone wants their original client
    let front = holding && spec.front !== undefined;
    // ... and connects to the target itself: JavaScript holds nothing
    const decides = front && spec.front!.decides && spec.target !== undefined;
    let interest: EventInterest = { open: false, connected: false, close: false };
    // the stored originals are let go at each end
    const events = (i: EventInterest) => ({ ...i, close: i.close || i.original === true });
    const where = formatEndpoint(spec.listen);
    // the socket of the proxy this one replaces: adopted (the library
    // accepts on its own duplicate), so this one is closed again at once
    const taken = spec.fd === undefined ? spec.replaces?.dupListener?.() : undefined;
    let lid: number;
    try {
      lid = e.check(
        calls.listen(spec.listen, {
          backlog: spec.backlog,
          reusePort: spec.reusePort,
          hold: holding,
          maxConnections: spec.maxConnections,
          idleTimeout: spec.idleTimeout,
          holdTimeout: spec.hold?.timeout ?? 0,
          events: events(interest),
          hooks: spec.hooks,
          adoptFd: spec.fd ?? taken,
        }),
        listenFailure(spec.listen),
      );
    } finally {
      if (taken !== undefined) calls.fdClose(taken);
    }
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
    // the built-in router the library runs, for connections it hands over
    let router = spec.router?.router;
    let listening = true; // until stopAccepting: then there is no listener to change
    const setRouter = (r: ProxySpec["router"]) => {
      if (!holding || !listening) return;
      e.check(
        calls.listenerSetRouter(lid, r?.router, {
          routeLimit: r?.routeLimit ?? 0,
          connectTimeout: spec.connectTimeout,
          family: spec.family,
          bindAddress: spec.bindAddress,
        }),
        `Cannot route on "${where}"`,
      );
      router = r?.router;
    };
    try {
      if (spec.tls !== undefined) {
        if (spec.front !== undefined && spec.front.mode !== "none") {
          throw new RelaykitError(
            `Cannot terminate TLS on "${where}": ${TLS_AFTER_PROXY}`,
            "RK_ENOTLS",
          );
        }
        this.#terminateTls(lid, spec.tls, where);
      }
      if (decides) {
        e.check(
          calls.listenerSetTarget(lid, {
            target: spec.target!,
            family: spec.family,
            connectTimeout: spec.connectTimeout,
            bindAddress: spec.bindAddress,
          }),
          `Cannot proxy to "${formatEndpoint(spec.target!)}"`,
        );
      }
      if (front) {
        e.check(calls.listenerSetProxy(lid, spec.front!), listenFailure(spec.listen));
      } else if (spec.hold === undefined) {
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
      if (spec.router !== undefined) setRouter(spec.router);
      if (spec.hold?.first) {
        e.check(calls.listenerSetHoldFirst(lid, spec.hold.first), `Cannot listen on "${where}"`);
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
    /** Whether first updates wait for the client's bytes (firstAnswered). */
    let firstWait: "unknown" | "on" | "off" = "unknown";
    let final: ListenerTotals | undefined;
    return Promise.resolve({
      address: bound,
      start: (cb: ProxyCallbacks) => {
        if (started) throw new TypeError("A proxy handle starts once");
        started = true;
        report = (err) => cb.reject(err);
        e.onListener(lid, (ev) => {
          // the last event of the listener, with its counters final
          if (ev.type === "listener-drained") final = ev.totals;
          this.#onEvent(ev, spec, cb, lid, held, () => {
            bridge?.close();
            freeClientContexts();
          }, () => router);
        });
        try {
          e.check(calls.listenerStart(lid), listenFailure(spec.listen));
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
        listening = false;
        calls.listenerClose(lid);
      },
      abortAll: () => void calls.listenerAbort(lid),
      dupListener: () => {
        if (!listening || "path" in spec.listen) return undefined;
        const fd = calls.listenerDup(lid);
        return fd >= 0 ? fd : undefined;
      },
      activeConnections: () => Math.max(0, calls.listenerActive(lid)),
      totals: () => final ?? calls.listenerCounters(lid) ?? NO_TOTALS,
      snapshot: (first) => final !== undefined ? NO_CONNECTIONS : calls.listenerConns(lid, first),
      setInterest: (i: EventInterest) => {
        interest = i;
        calls.listenerSetEvents(lid, events(i));
      },
      dropFront: () => {
        if (!front) return;
        front = false;
        // ends reported before the first connection the host holds
        calls.listenerSetEvents(lid, events(interest));
        calls.listenerDropProxy(lid);
      },
      closeConnection: (id, mode) => nativeClose(e, id, mode),
      connectionStats: (id) => nativeStats(e, id),
      setRouter,
      readMore: (id, max) => void calls.holdRead(id, max),
      firstAnswered: (waited) => {
        // on at the first wait, off for good at the first other answer
        if (firstWait === "off" || (waited && firstWait === "on")) return;
        if ((spec.hold?.first ?? 0) === 0) return; // nothing read ahead: nothing to wait for
        firstWait = waited ? "on" : "off";
        calls.listenerSetHoldWait(lid, waited);
      },
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
    router: () => EngineRouter | undefined,
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
          // handed over by the built-in router, after its replies so far
          if (ev.routed !== undefined) router()?.sent(ev.id, ev.routed);
        }
        const data = ev.data ?? callsOf(e).holdTake(ev.id, ev.held);
        if (data === undefined) return; // it ended meanwhile; its CLOSED follows
        const update: HeldUpdate = { conn: h.conn, data, first: ev.first, eof: ev.eof };
        // read ahead of the first update (spec.hold.first), not a router's
        // hand-over, nor the bytes around a PROXY header the engine read
        if (
          ev.first && ev.routed === undefined && data.length > 0 && (spec.hold?.first ?? 0) > 0
        ) update.ahead = true;
        if (ev.retry) {
          update.retry = e.error(ev.err, connectFailure(h.target ?? spec.listen), ev.id);
        }
        cb.held?.(update);
        break;
      }
      case "route-failed":
        // the router's failure reply went to the client; it closes
        cb.reject(e.error(ev.err, connectFailure(ev.target), ev.id));
        break;
      case "route-target":
        // for the message of the closed event that follows
        if (!held.has(ev.id)) held.set(ev.id, { conn: { id: ev.id }, target: ev.target });
        break;
      case "proxy":
        cb.proxied?.(frontResult(ev, callsOf(e)));
        break;
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
