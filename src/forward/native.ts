/**
 * The native engine: listeners, connects and relays run in the C library's
 * worker threads; JavaScript only sees one event when a connection opens
 * and one when it ends.
 *
 * @module
 */
import { callsOf, type NativeEngine } from "../native/engine.ts";
import type { NativeEvent } from "../native/events.ts";
import { RelaykitError } from "../errors.ts";
import { EMPTY } from "../bytes.ts";
import { TlsBridge } from "./tls_bridge.ts";
import { type DataHook, type DataHooks, type HookContext, runHook } from "./hooks.ts";
import {
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
  type HeldConnection,
  type HeldUpdate,
  type HoldDecision,
  type ProxyCallbacks,
  type ProxyHandle,
  type ProxySpec,
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
    runQueue(engine, queues, key, q, hook, failed);
    return;
  }
  const fail = (err: RelaykitError) => {
    q.dead = true;
    try {
      failed(err);
    } finally {
      nativeClose(engine, q.ctx.id, "abort"); // closed even if a listener throws
      runQueue(engine, queues, key, q, hook, failed); // releases the rest
    }
  };
  // a hook that transferred the lent buffer fails whatever it returned:
  // the engine's memory may live on in JavaScript
  const transferred = () =>
    new RelaykitError(
      `Hook ${q.ctx.direction} of connection ${q.ctx.id} failed: it transferred its chunk's buffer (keep chunk.slice() instead)`,
      "RK_EHOOK",
      { connectionId: q.ctx.id },
    );
  runHook(hook, chunk, q.ctx).then((out) => {
    const r = calls.hookReturn(token, out);
    if (r === "kept") return fail(transferred());
    if (r === "ended") q.dead = true;
    runQueue(engine, queues, key, q, hook, failed);
  }, (err: RelaykitError) => {
    fail(calls.hookReturn(token, EMPTY) === "kept" ? transferred() : err);
  });
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
    const where = formatEndpoint(spec.listen);
    const lid = e.check(
      calls.listen(spec.listen, {
        backlog: spec.backlog,
        reusePort: spec.reusePort,
        hold: holding,
        maxConnections: spec.maxConnections,
        idleTimeout: spec.idleTimeout,
        holdTimeout: spec.hold?.timeout ?? 0,
        events: { open: false, connected: false, close: false },
        hooks: spec.hooks,
        adoptFd: spec.fd,
      }),
      `Cannot listen on "${where}"`,
    );
    let bridge: TlsBridge | undefined; // for TLS targets, started on first use
    // per held connection: what it was, and where it was sent (for messages)
    const held = new Map<number, { conn: HeldConnection; target?: Endpoint }>();
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
    return Promise.resolve({
      address: bound,
      start: (cb: ProxyCallbacks) => {
        if (started) throw new TypeError("A proxy handle starts once");
        started = true;
        report = (err) => cb.reject(err);
        e.onListener(
          lid,
          (ev) => this.#onEvent(ev, spec, cb, lid, held, () => bridge?.close(), () => router),
        );
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
        listening = false;
        calls.listenerClose(lid);
      },
      abortAll: () => void calls.listenerAbort(lid),
      activeConnections: () => Math.max(0, calls.listenerActive(lid)),
      setInterest: (i: EventInterest) => void calls.listenerSetEvents(lid, i),
      closeConnection: (id, mode) => nativeClose(e, id, mode),
      connectionStats: (id) => nativeStats(e, id),
      setRouter,
      readMore: (id, max) => void calls.holdRead(id, max),
      sendHeld: (id, data) => void calls.holdWrite(id, data),
      decide: (id, d) => {
        const h = held.get(id);
        if (h === undefined) return undefined; // ended meanwhile, or decided already
        if (d.action === "connect") h.target = d.target;
        if (d.action === "connect" && d.tls !== undefined) {
          // TLS runs on the runtime's sockets: connect natively to the bridge
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

  #onEvent(
    ev: NativeEvent,
    spec: ProxySpec,
    cb: ProxyCallbacks,
    lid: number,
    held: Map<number, { conn: HeldConnection; target?: Endpoint }>,
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
        const data = callsOf(e).holdTake(ev.id, ev.held);
        if (data === undefined) return; // it ended meanwhile; its CLOSED follows
        const update: HeldUpdate = { conn: h.conn, data, first: ev.first, eof: ev.eof };
        // read ahead of the first update (spec.hold.first), not a router's hand-over
        if (ev.first && ev.routed === undefined && data.length > 0) update.ahead = true;
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
        const target = held.get(ev.id)?.target ?? spec.target;
        held.delete(ev.id);
        cb.close(
          endOf(
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
          ),
        );
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
