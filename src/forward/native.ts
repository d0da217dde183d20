/**
 * The native engine: listeners, connects and relays run in the C library's
 * worker threads; JavaScript only sees one event when a connection opens
 * and one when it ends.
 *
 * @module
 */
import { cstr, type NativeEngine, type NativeEvent, u64 } from "../native/engine.ts";
import type { RelaykitError } from "../errors.ts";
import {
  DECIDE,
  END,
  EV,
  EVMASK,
  FAMILY,
  HOLD,
  LISTEN_FLAGS,
  RELAY_FLAGS,
} from "../native/symbols.ts";
import { EMPTY } from "../bytes.ts";
import { ipv6Text } from "../protocol/ip.ts";
import { TlsBridge } from "./tls_bridge.ts";
import { type DataHooks, type Direction, type HookContext, runHook } from "./hooks.ts";
import {
  connectFailure,
  type ConnectionEnd,
  type ConnectionStats,
  connectionTo,
  type Counters,
  type Endpoint,
  type EndReason,
  type EventInterest,
  type FamilyPreference,
  formatEndpoint,
  type ForwardEngine,
  type HeldConnection,
  type HeldUpdate,
  type HoldDecision,
  type InetEndpoint,
  type ProxyCallbacks,
  type ProxyHandle,
  type ProxySpec,
} from "./types.ts";

const REASONS: Record<number, EndReason> = {
  [END.DONE]: "done",
  [END.RESET]: "reset",
  [END.IDLE_TIMEOUT]: "idle-timeout",
  [END.CLOSED]: "closed",
  [END.CONNECT_FAILED]: "connect-failed",
  [END.ENGINE_CLOSED]: "engine-closed",
  [END.HOLD_TIMEOUT]: "decision-timeout",
};

/** rk_target family codes (RK_FAMILY_*) by preference. */
export const FAMILIES: Record<FamilyPreference, number> = {
  "any": FAMILY.any,
  "prefer-v4": FAMILY.preferV4,
  "prefer-v6": FAMILY.preferV6,
  "only-v4": FAMILY.onlyV4,
  "only-v6": FAMILY.onlyV6,
};

/** Counters from the words of a CLOSED record. */
function countersOf(ev: NativeEvent): Counters {
  return {
    aToB: { read: u64(ev.words, 2), written: u64(ev.words, 4) },
    bToA: { read: u64(ev.words, 6), written: u64(ev.words, 8) },
  };
}

/** An address of family `family` from 16 record bytes at `offset`. */
function inetAt(
  ev: NativeEvent,
  family: number,
  offset: number,
  port: number,
): InetEndpoint | undefined {
  const bytes = new Uint8Array(ev.words.buffer, ev.words.byteOffset + offset, 16);
  if (family === 2) return { host: bytes.subarray(0, 4).join("."), port };
  if (family === 10) return { host: ipv6Text(bytes), port };
  return undefined;
}

/** The host and port of an ACCEPT record. */
function peerOf(ev: NativeEvent): InetEndpoint | undefined {
  return inetAt(ev, ev.words[0] ?? 0, 8, ev.words[1] ?? 0);
}

/** The connection of a first RK_EV_HOLD record: client and local address. */
function heldOf(ev: NativeEvent): HeldConnection {
  const family = ev.words[0] ?? 0;
  const conn: HeldConnection = { id: ev.id };
  const remote = inetAt(ev, family, 8, ev.words[1] ?? 0);
  const local = inetAt(ev, family, 24, ev.err);
  if (remote !== undefined) conn.remote = remote;
  if (local !== undefined) conn.local = local;
  return conn;
}

/** The end of a connection from its CLOSED record. */
export function endOf(
  engine: NativeEngine,
  ev: NativeEvent,
  describe: (reason: EndReason) => string,
): ConnectionEnd {
  const reason = REASONS[ev.reason] ?? "reset";
  const end: ConnectionEnd = {
    id: ev.id,
    reason,
    durationMs: ev.durationMs,
    ...countersOf(ev),
  };
  if (ev.err !== 0) end.error = engine.error(ev.err, describe(reason), ev.id);
  return end;
}

/** Live stats of connection `id`, or undefined once it ended. */
export function nativeStats(engine: NativeEngine, id: number): ConnectionStats | undefined {
  const out = new Float64Array(8);
  if (engine.sym.rk_conn_stats(engine.handle, id, out) < 0) return undefined;
  const [ar = 0, aw = 0, br = 0, bw = 0, startedAt = 0, lastActivityAt = 0, state = 0] = out;
  return {
    aToB: { read: ar, written: aw },
    bToA: { read: br, written: bw },
    startedAt,
    lastActivityAt,
    state: state === 0 ? "connecting" : state === 1 ? "relaying" : state === 4 ? "held" : "closing",
  };
}

/** The RK_RELAY_HOOK_* bits for the hooked directions. */
export function hookFlags(hooks: DataHooks): number {
  return (hooks.aToB ? RELAY_FLAGS.HOOK_AB : 0) | (hooks.bToA ? RELAY_FLAGS.HOOK_BA : 0);
}

function peerOfConn(engine: NativeEngine, id: number): { host: string; port: number } | undefined {
  const buf = new Uint8Array(64);
  const n = engine.sym.rk_conn_peer(engine.handle, id, buf, buf.length);
  if (n <= 0) return undefined;
  const text = new TextDecoder().decode(buf.subarray(0, n));
  const colon = text.lastIndexOf(":");
  return {
    host: text.slice(0, colon).replace(/^\[|\]$/g, ""),
    port: Number(text.slice(colon + 1)),
  };
}

/**
 * A hooked direction posted a chunk: take it, run the hook, hand back the
 * result (which resumes the direction), or close the connection if the hook
 * failed.
 */
export function nativeHook(
  engine: NativeEngine,
  ev: NativeEvent,
  hooks: DataHooks,
  failed: (err: RelaykitError) => void,
): void {
  const sym = engine.sym, h = engine.handle, id = ev.id;
  const d = ev.words[0] === 1 ? 1 : 0;
  const direction: Direction = d === 0 ? "aToB" : "bToA";
  let chunk = new Uint8Array(ev.words[1] ?? 0);
  const n = sym.rk_hook_take(h, id, d, chunk, chunk.length);
  if (n < 0) return; // the connection ended meanwhile
  if (n > chunk.length) {
    chunk = new Uint8Array(n);
    sym.rk_hook_take(h, id, d, chunk, n);
  }
  const hook = hooks[direction];
  if (hook === undefined) { // cannot happen: only hooked directions post
    sym.rk_hook_resume(h, id, d, chunk, chunk.length);
    return;
  }
  let remote: { host: string; port: number } | undefined | null = null;
  const ctx: HookContext = {
    id,
    direction,
    get remote() {
      if (remote === null) remote = peerOfConn(engine, id);
      return remote;
    },
    stats: () => nativeStats(engine, id),
  };
  runHook(hook, chunk, ctx).then(
    (out) => void sym.rk_hook_resume(h, id, d, out, out.length),
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
  engine.sym.rk_conn_close(engine.handle, id, mode === "abort" ? 1 : 0);
}

/** Hand a held connection's decision to the library. */
function nativeDecide(
  engine: NativeEngine,
  id: number,
  d: HoldDecision,
  spec: ProxySpec,
): RelaykitError | undefined {
  const sym = engine.sym;
  if (d.action === "file") {
    const toA = d.toClient ?? EMPTY;
    const offset = d.offset ?? 0, length = d.length ?? -1;
    const split = (n: number) => n < 0 ? [-1, -1] : [n % 2 ** 32 | 0, Math.floor(n / 2 ** 32)];
    const opts = new Int32Array([DECIDE.FILE, 0, 0, 0, -1, 0, ...split(offset), ...split(length)]);
    const r = sym.rk_hold_decide(
      engine.handle,
      id,
      cstr(d.path),
      cstr(""),
      opts,
      opts.length,
      EMPTY,
      0,
      toA,
      toA.length,
    );
    return r < 0 ? engine.error(r, `Cannot send the file "${d.path}"`, id) : undefined;
  }
  if (d.action === "close") {
    const toA = d.toClient ?? EMPTY;
    const opts = new Int32Array([DECIDE.CLOSE, 0, 0, 0, -1, 0]);
    sym.rk_hold_decide(engine.handle, id, cstr(""), cstr(""), opts, 6, EMPTY, 0, toA, toA.length);
    return undefined;
  }
  const [host, port] = hostPort(d.target);
  const toB = d.toTarget ?? EMPTY, toA = d.toClient ?? EMPTY;
  const opts = new Int32Array([
    DECIDE.CONNECT,
    port,
    FAMILIES[spec.family],
    d.connectTimeout ?? spec.connectTimeout,
    d.idleTimeout ?? -1,
    d.consume ?? 0,
    d.retry ? 1 : 0,
  ]);
  sym.rk_hold_decide(
    engine.handle,
    id,
    cstr(host),
    cstr(spec.bindAddress ?? ""),
    opts,
    opts.length,
    toB,
    toB.length,
    toA,
    toA.length,
  );
  return undefined;
}

function hostPort(e: Endpoint): [string, number] {
  return "path" in e ? [e.path, -1] : [e.host, e.port];
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
    const sym = e.sym;
    const [host, port] = hostPort(spec.listen);
    const flags = LISTEN_FLAGS.REUSEADDR | (spec.reusePort ? LISTEN_FLAGS.REUSEPORT : 0) |
      (spec.hold !== undefined ? LISTEN_FLAGS.HOLD : 0);
    // no per-connection events until someone asks (setInterest): a proxy
    // nobody watches costs JavaScript nothing per connection. Held
    // connections always report their end: their owner keeps state.
    const holdMask = spec.hold !== undefined ? EVMASK.CLOSED : 0;
    const opts = new Int32Array([
      spec.backlog,
      flags,
      spec.maxConnections,
      spec.idleTimeout,
      holdMask,
      hookFlags(spec.hooks),
      spec.hold?.timeout ?? 0,
      spec.fd ?? -1,
    ]);
    const where = formatEndpoint(spec.listen);
    const lid = e.check(
      sym.rk_listen(e.handle, cstr(host), port, opts, opts.length),
      `Cannot listen on "${where}"`,
    );
    let bridge: TlsBridge | undefined; // for TLS targets, started on first use
    // per held connection: what it was, and where it was sent (for messages)
    const held = new Map<number, { conn: HeldConnection; target?: Endpoint }>();
    // where failures of TLS bridging go: the callbacks, once started (no
    // connection, hence no decision, comes before)
    let report: ((err: RelaykitError) => void) | undefined;
    try {
      if (spec.hold === undefined) {
        if (spec.target === undefined) throw new TypeError("A proxy needs a target or hold");
        const [thost, tport] = hostPort(spec.target);
        e.check(
          sym.rk_listener_set_target(
            e.handle,
            lid,
            cstr(thost),
            tport,
            FAMILIES[spec.family],
            spec.connectTimeout,
            cstr(spec.bindAddress ?? ""),
          ),
          `Cannot proxy to "${formatEndpoint(spec.target)}"`,
        );
      }
    } catch (err) {
      sym.rk_listener_close(e.handle, lid);
      throw err;
    }
    const bound = "path" in spec.listen
      ? spec.listen
      : { host: spec.listen.host, port: sym.rk_listener_port(e.handle, lid) };
    let started = false;
    let stopping = false;
    return Promise.resolve({
      address: bound,
      start: (cb: ProxyCallbacks) => {
        if (started) throw new TypeError("A proxy handle starts once");
        started = true;
        report = (err) => cb.reject(err);
        e.onListener(lid, (ev) => this.#onEvent(ev, spec, cb, lid, held, () => bridge?.close()));
        try {
          e.check(sym.rk_listener_start(e.handle, lid), `Cannot listen on "${where}"`);
        } catch (err) {
          e.offListener(lid);
          sym.rk_listener_close(e.handle, lid);
          throw err;
        }
        e.ref();
      },
      stopAccepting: () => {
        if (stopping) return;
        stopping = true;
        sym.rk_listener_close(e.handle, lid);
      },
      abortAll: () => void sym.rk_listener_abort(e.handle, lid),
      activeConnections: () => Math.max(0, sym.rk_listener_active(e.handle, lid)),
      setInterest: (i: EventInterest) =>
        void sym.rk_listener_set_events(
          e.handle,
          lid,
          (i.open ? EVMASK.ACCEPT : 0) | (i.connected ? EVMASK.CONNECTED : 0) |
            (i.close ? EVMASK.CLOSED : 0) | holdMask,
        ),
      closeConnection: (id, mode) => nativeClose(e, id, mode),
      connectionStats: (id) => nativeStats(e, id),
      readMore: (id, max) => void sym.rk_hold_read(e.handle, id, Math.max(1, max)),
      sendHeld: (id, data) => {
        if (data.length > 0) sym.rk_hold_write(e.handle, id, data, data.length);
      },
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
  ): void {
    const e = this.#engine;
    switch (ev.type) {
      case EV.HOLD: {
        const flags = ev.reason;
        let h = held.get(ev.id);
        if (h === undefined) {
          if (!(flags & HOLD.FIRST)) return; // cannot happen
          h = { conn: heldOf(ev) };
          held.set(ev.id, h);
        }
        let data = new Uint8Array(ev.durationMs);
        if (data.length > 0) {
          const n = e.sym.rk_hold_take(e.handle, ev.id, data, data.length);
          if (n < 0) return; // it ended meanwhile; its CLOSED follows
          if (n > data.length) {
            data = new Uint8Array(n);
            e.sym.rk_hold_take(e.handle, ev.id, data, n);
          }
        }
        const update: HeldUpdate = {
          conn: h.conn,
          data,
          first: (flags & HOLD.FIRST) !== 0,
          eof: (flags & HOLD.EOF) !== 0,
        };
        if (flags & HOLD.RETRY) {
          update.retry = e.error(ev.err, connectFailure(h.target ?? spec.listen), ev.id);
        }
        cb.held?.(update);
        break;
      }
      case EV.ACCEPT: {
        const remote = peerOf(ev);
        cb.open(remote === undefined ? { id: ev.id } : { id: ev.id, remote });
        break;
      }
      case EV.CONNECTED:
        cb.connected(ev.id);
        break;
      case EV.HOOK:
        nativeHook(e, ev, spec.hooks, (err) => cb.hookFailed(err));
        break;
      case EV.CLOSED: {
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
      case EV.REJECTED:
        cb.reject(e.error(ev.err, `Connection refused on "${formatEndpoint(spec.listen)}"`));
        break;
      case EV.ACCEPT_ERROR:
        cb.reject(e.error(ev.err, `Cannot accept on "${formatEndpoint(spec.listen)}"`));
        break;
      case EV.LISTENER_CLOSED:
        cb.stopped();
        break;
      case EV.LISTENER_DRAINED:
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
