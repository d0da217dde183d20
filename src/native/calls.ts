/**
 * Every call into the C library, typed: strings become NUL-terminated
 * bytes, options become the structs of relaykit.h (structs.ts), out
 * arrays become values. Nothing outside src/native sees the symbol table;
 * code above reaches these calls through `callsOf(engine)` (engine.ts).
 *
 * Calls return the library's result as it is (a negative code on failure)
 * unless they say otherwise; NativeEngine.check turns one into an error.
 *
 * @module
 */
import type { EngineWakeCalls, NativeLibrary } from "../runtime/types.ts";
import type {
  ConnectionStats,
  Endpoint,
  FamilyPreference,
  InetEndpoint,
  ListenerTotals,
} from "../types.ts";
import { EMPTY } from "../bytes.ts";
import {
  DECIDE,
  DECISION_FLAGS,
  EVENT_WORDS,
  EVMASK,
  FAMILY,
  HOOK_RETURN,
  LISTEN_FLAGS,
  type NativeSymbols,
  PROXY,
  RELAY_FLAGS,
  STATE_NAMES,
} from "./symbols.ts";
import { CONN_WORDS, listenerTotals, RecordSnapshot } from "./events.ts";
import { DECISION, LISTEN_OPTS, PROXY_OPTS, RELAY_OPTS } from "./structs.ts";
import { encodeRouter, type EngineRouter, type RouterConnect } from "./router.ts";
import { type DecisionFields, HoldBatch } from "./_hold_batch.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The NUL-terminated text C wrote into `buf`. */
function cText(buf: Uint8Array): string {
  const n = buf.indexOf(0);
  return decoder.decode(n < 0 ? buf : buf.subarray(0, n));
}

/** A string as NUL-terminated UTF-8 for the C side. */
export function cstr(s: string): Uint8Array {
  const b = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, b);
  return b;
}

/** RK_FAMILY_* by preference. */
const FAMILIES: Record<FamilyPreference, number> = {
  "any": FAMILY.any,
  "prefer-v4": FAMILY.preferV4,
  "prefer-v6": FAMILY.preferV6,
  "only-v4": FAMILY.onlyV4,
  "only-v6": FAMILY.onlyV6,
};

/** RK_FAMILY_* for a preference (TypeError for an unknown one). */
function familyCode(f: FamilyPreference): number {
  const code = FAMILIES[f];
  if (code === undefined) throw new TypeError(`Unknown address family preference "${f}"`);
  return code;
}

/** The decision fields only a CONNECT sets. */
const NOT_CONNECT = { port: 0, family: 0, connect_timeout_ms: 0, consume: 0, flags: 0 } as const;

/** Host and port as C takes them: a Unix path has port -1. */
function hostPort(e: Endpoint): [string, number] {
  return "path" in e ? [e.path, -1] : [e.host, e.port];
}

/** Which directions go through the host's hook. */
export interface HookedDirections {
  /** Client (or first fd) to target (second fd). */
  aToB?: unknown;
  /** The reverse. */
  bToA?: unknown;
}

/** Which per-connection events a listener posts. */
export interface ListenerEvents {
  /** Each accepted connection. */
  open: boolean;
  /** Each connection whose target connected. */
  connected: boolean;
  /** Each connection that ended, also cleanly (errors always post). */
  close: boolean;
  /** Each PROXY header the engine read itself (refusals always post). */
  original?: boolean;
}

/**
 * A PROXY header phase the library runs itself (rk_listener_set_proxy):
 * what to accept from whom, and the header to send on.
 */
export interface ProxyFront {
  /**
   * The library connects to the listener's target itself after the header;
   * else it hands each connection to the host once the header is read.
   */
  decides: boolean;
  /** Which header to accept ("none": no header phase, only the one sent on). */
  mode: "detect" | "v1" | "v2" | "none";
  /** The trusted source ranges: 4 or 16 address bytes masked to the prefix. */
  trusted: readonly { bytes: Uint8Array; prefix: number }[];
  /** A client outside `trusted`: closed, or relayed as it is. */
  untrusted: "refuse" | "no-header";
  /** The header to send to the target, if any. */
  send?: {
    version: 1 | 2;
    /** v2: append a CRC32C TLV. */
    crc32c: boolean;
    /** v2: a random UNIQUE_ID TLV between `tlvsBefore` and `tlvsAfter`. */
    uniqueId: boolean;
    /** v2: encoded TLVs before the UNIQUE_ID. */
    tlvsBefore: Uint8Array;
    /** v2: encoded TLVs after it. */
    tlvsAfter: Uint8Array;
  } | undefined;
}

/** What rk_proxy_parse found (the native parser, for tests against the TypeScript one). */
export type NativeParse =
  | { kind: "need"; bytes: number }
  | { kind: "none" }
  | {
    kind: "header";
    length: number;
    version: number;
    command: number;
    transport: number;
    family: number;
    sourcePort: number;
    destinationPort: number;
    tlvOffset: number;
    tlvLength: number;
  }
  | { kind: "error"; code: string };

/** RK_PROXY_* by mode. */
const PROXY_MODES = {
  detect: PROXY.DETECT,
  v1: PROXY.V1,
  v2: PROXY.V2,
  none: PROXY.NONE,
} as const;

/** Size of one trusted range in rk_listener_set_proxy. */
const RANGE_BYTES = 18;

/** Options of {@link NativeCalls.listen} (rk_listen_opts_t). */
export interface ListenOptions {
  /** listen(2) backlog; 0: the library's. */
  backlog: number;
  /** SO_REUSEPORT. */
  reusePort: boolean;
  /** Hold each accepted connection for a decision. */
  hold: boolean;
  /** Concurrent connections; 0: no limit. */
  maxConnections: number;
  /** Idle timeout in ms; 0: none. */
  idleTimeout: number;
  /** A held connection undecided this long ends; 0: never. */
  holdTimeout: number;
  /** Per-connection events to post. */
  events: ListenerEvents;
  /** Hooked directions of every accepted connection. */
  hooks: HookedDirections;
  /** An inherited listening socket to accept on instead of binding (socket activation). */
  adoptFd?: number | undefined;
}

/** Where a connect goes (rk_listener_set_target, rk_connect_fd). */
export interface ConnectTarget {
  /** Host and port, or a Unix socket path. */
  target: Endpoint;
  /** Which family to try first for a name. */
  family: FamilyPreference;
  /** Connect timeout in ms; 0: none. */
  connectTimeout: number;
  /** Source address; undefined: any. */
  bindAddress?: string | undefined;
}

/** A held connection's decision (rk_decision_t and its bytes). */
export type NativeDecision =
  | (ConnectTarget & {
    action: "connect";
    /** Bytes for the target before the client's. */
    toTarget?: Uint8Array | undefined;
    /** Bytes for the client once connected. */
    toClient?: Uint8Array | undefined;
    /** Held bytes to drop from the front. */
    consume?: number | undefined;
    /** Idle timeout from now on; undefined: the listener's. */
    idleTimeout?: number | undefined;
    /** On a failed connect, hold the connection again. */
    retry?: boolean | undefined;
  })
  | { action: "close"; toClient?: Uint8Array | undefined }
  | {
    action: "file";
    path: string;
    /** Where to start. */
    offset?: number | undefined;
    /** How many bytes; undefined: to the end. */
    length?: number | undefined;
    toClient?: Uint8Array | undefined;
  };

/** Engine counters (rk_engine_stats). */
export interface NativeEngineStats {
  /** Open connections. */
  active: number;
  /** Connections accepted so far. */
  accepted: number;
  /** Connections ended so far. */
  closed: number;
  /** Connections refused at once (over a limit). */
  rejected: number;
  /** Event records waiting for JavaScript. */
  queued: number;
  /** Open listeners. */
  listeners: number;
  /** Pipes kept for reuse by the workers. */
  pooledPipes: number;
  /** Worker threads. */
  threads: number;
}

/**
 * A tunnel link that speaks TLS in the engine (rk_tunnel_new_tls): the
 * server side with a server context, or the client side with a client
 * context and the name to send and verify.
 */
export type NativeTunnelTls =
  | { ctx: number; server: true }
  | { ctx: number; servername: string };

/** Process-wide TLS counters (rk_tls_stats). */
export interface NativeTlsStats {
  /** Handshakes completed. */
  handshakes: number;
  /** Handshakes that failed. */
  failures: number;
  /** TLS sides open now. */
  open: number;
  /** Plain bytes read from TLS peers. */
  bytesIn: number;
  /** Plain bytes written to TLS peers. */
  bytesOut: number;
  /** Whether OpenSSL is loaded. */
  loaded: boolean;
}

/** Room for OpenSSL's words about a failure. */
const TLS_TEXT = 512;

function hookBits(hooks: HookedDirections): number {
  return (hooks.aToB ? RELAY_FLAGS.HOOK_AB : 0) | (hooks.bToA ? RELAY_FLAGS.HOOK_BA : 0);
}

/** RK_EVMASK_* for the events asked for. */
function eventBits(e: ListenerEvents): number {
  return (e.open ? EVMASK.ACCEPT : 0) | (e.connected ? EVMASK.CONNECTED : 0) |
    (e.close ? EVMASK.CLOSED : 0) | (e.original ? EVMASK.ORIGINAL : 0);
}

// The intrinsics that detach a lent ArrayBuffer and tell whether something
// else did, read once: user code cannot redefine them on a lent buffer.
const abProto = ArrayBuffer.prototype as ArrayBuffer & {
  transfer?: (this: ArrayBuffer, length?: number) => ArrayBuffer;
};
const transferAb = abProto.transfer;
const detachedOf = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, "detached")?.get;
const bufferOfView = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype) as object,
  "buffer",
)!.get!;
/**
 * Lending needs a way to take the memory back from JavaScript: detaching
 * the ArrayBuffer (transfer), and seeing whether someone else did.
 */
const CAN_LEND = typeof transferAb === "function" && detachedOf !== undefined;

function isDetached(ab: ArrayBuffer): boolean {
  return detachedOf!.call(ab) as boolean;
}

/** What became of a returned hook batch. */
export type HookReturned =
  /** The library has the result. */
  | "ok"
  /** The connection ended meanwhile: the result went nowhere. */
  | "ended"
  /**
   * Something detached (transferred) the lent buffer, so JavaScript may
   * still refer to the batch's memory: the library keeps it for good and
   * sends nothing in its place. The connection must be closed.
   */
  | "kept";

/** Whether a hook batch was copied in this process (rk_malloc_tune ran). */
let mallocTuned = false;

/** The bytes a NUL-terminated name needs in the library's error calls. */
const ERR_BUF = 128;

/**
 * The calls of one engine handle. Made by NativeEngine; the library's
 * global calls (fd helpers, errors) need no handle but go through here too.
 */
export class NativeCalls {
  /** The symbols as they are: only for calls that may overtake the batch. */
  readonly #raw: NativeSymbols;
  /** Hold commands of this turn, not yet submitted. */
  readonly #batch = new HoldBatch();
  #flushQueued = false;
  readonly #lend: NativeLibrary["lend"];
  readonly #copy: NativeLibrary["copy"];
  readonly #give: NativeLibrary["give"];
  /** The address of rk_hook_gift_free, once asked for. */
  #deallocator: number | undefined;
  readonly #h: number;
  /** Hook batches lent to JavaScript, by token. */
  readonly #lent = new Map<number, ArrayBuffer>();
  /** Hook batches given to JavaScript (rk_hook_gift), by token. */
  readonly #given = new Map<number, ArrayBuffer>();
  /** Hook batches given to JavaScript as copies, by token. */
  readonly #copied = new Set<number>();
  /** Where rk_listener_conns writes (grown to the most asked for). */
  #connBuf = new Uint32Array(64 * CONN_WORDS);

  /**
   * @param lib The loaded library.
   * @param h The engine handle (rk_engine_new).
   */
  private constructor(lib: Pick<NativeLibrary, "symbols" | "lend" | "copy" | "give">, h: number) {
    this.#raw = lib.symbols;
    this.#lend = lib.lend;
    this.#copy = lib.copy;
    this.#give = lib.give;
    this.#h = h;
  }

  /**
   * The symbols, for every call but the batched ones: the hold commands
   * waiting in the batch go first, so the library sees all calls in the
   * order JavaScript made them.
   */
  get #sym(): NativeSymbols {
    if (this.#batch.pending) this.flush();
    return this.#raw;
  }

  /**
   * Submit the hold commands of this turn (rk_hold_submit): one call, one
   * wake of each worker concerned. Runs by itself at the end of the turn
   * (a microtask), after the drain, and before any other call.
   */
  flush(): void {
    const batch = this.#batch;
    if (!batch.pending) return;
    const bytes = batch.bytes();
    batch.clear(); // before the call: a failure must not submit them twice
    // a record for a connection that ended is skipped by the library; one
    // it cannot carry out aborts its connection (whose CLOSED event tells)
    this.#raw.rk_hold_submit(this.#h, bytes, bytes.length);
  }

  /** Queue the flush for the end of this turn once there is something. */
  #queued(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.flush();
    });
  }

  /** A new engine (rk_engine_new): its calls, or a negative code. */
  static engineNew(
    lib: Pick<NativeLibrary, "symbols" | "lend" | "copy" | "give">,
    threads: number,
    maxConnections: number,
  ): NativeCalls | number {
    const h = lib.symbols.rk_engine_new(threads, maxConnections);
    return h < 0 ? h : new NativeCalls(lib, h);
  }

  /** The engine handle. */
  get handle(): number {
    return this.#h;
  }

  /** The calls a runtime's waker makes (rk_engine_wait, _wake, _set_notify). */
  wakeCalls(): EngineWakeCalls {
    const sym = this.#sym, h = this.#h;
    return {
      wait: (ms) => sym.rk_engine_wait(h, ms),
      wake: () => void sym.rk_engine_wake(h),
      // a "function" parameter is a runtime's own pointer type (Bun's JSCallback.ptr)
      setNotify: (callback) =>
        void (sym.rk_engine_set_notify as unknown as (h: number, cb: unknown) => number)(
          h,
          callback,
        ),
    };
  }

  // ---- errors and introspection ----------------------------------------

  /** Symbolic name (rk_err_name) and message (rk_strerror) of a code. */
  static describe(sym: NativeSymbols, code: number): { name: string; message: string } {
    const buf = new Uint8Array(ERR_BUF);
    const n = sym.rk_err_name_r(code, buf, buf.length);
    const name = decoder.decode(buf.subarray(0, n));
    const m = sym.rk_strerror_r(code, buf, buf.length);
    return { name, message: decoder.decode(buf.subarray(0, m)) };
  }

  /** Symbolic name and message of a code. */
  describe(code: number): { name: string; message: string } {
    return NativeCalls.describe(this.#sym, code);
  }

  /** rk_layout: a struct's size and field offsets, or a constant; undefined if unknown. */
  layout(name: string): number[] | undefined {
    let out = new Int32Array(16);
    let n = this.#sym.rk_layout(cstr(name), out, out.length);
    if (n < 0) return undefined;
    if (n > out.length) {
      out = new Int32Array(n);
      n = this.#sym.rk_layout(cstr(name), out, out.length);
    }
    return Array.from(out.subarray(0, n));
  }

  // ---- TLS (process-wide) -----------------------------------------------

  /**
   * rk_tls_load: load OpenSSL once (`path` counts on the first call only;
   * "" is libssl.so.3). Undefined when TLS is available, else why not.
   */
  tlsLoad(path: string): string | undefined {
    const buf = new Uint8Array(TLS_TEXT);
    const r = this.#sym.rk_tls_load(cstr(path), buf, buf.length);
    return r === 1 ? undefined : cText(buf);
  }

  /** A server context from PEM text: its handle, or a negative code and OpenSSL's words. */
  tlsServerContext(cert: string, key: string): number | { code: number; detail: string } {
    const buf = new Uint8Array(TLS_TEXT);
    const r = this.#sym.rk_tls_server_ctx(cstr(cert), cstr(key), buf, buf.length);
    return r > 0 ? r : { code: r, detail: cText(buf) };
  }

  /**
   * A client context: trust `ca` (PEM; undefined: the system's roots), and
   * verify the peer's certificate unless `verify` is false. Its handle, or
   * a negative code and OpenSSL's words.
   */
  tlsClientContext(
    ca: string | undefined,
    verify: boolean,
  ): number | { code: number; detail: string } {
    const buf = new Uint8Array(TLS_TEXT);
    const r = this.#sym.rk_tls_client_ctx(cstr(ca ?? ""), verify ? 1 : 0, buf, buf.length);
    return r > 0 ? r : { code: r, detail: cText(buf) };
  }

  /**
   * Why connection `id` ended with CERT_UNTRUSTED: the verification
   * error's name and the peer's certificate (DER), once; undefined when
   * the library kept nothing.
   */
  tlsCertFailure(id: number): { said: string; der: Uint8Array } | undefined {
    const said = new Uint8Array(ERR_BUF);
    let der = new Uint8Array(4096);
    let n = this.#sym.rk_tls_cert_failure(this.#h, id, said, said.length, der, der.length);
    if (n > der.length) {
      der = new Uint8Array(n);
      n = this.#sym.rk_tls_cert_failure(this.#h, id, said, said.length, der, der.length);
    }
    return n < 0 ? undefined : { said: cText(said), der: der.slice(0, n) };
  }

  /** The next CONNECT decision of held connection `id` speaks TLS (rk_hold_set_tls). */
  holdSetTls(id: number, ctx: number, servername: string): number {
    return this.#sym.rk_hold_set_tls(this.#h, id, ctx, cstr(servername));
  }

  /** Drop a context handle (listeners keep their own reference). */
  tlsContextFree(ctx: number): number {
    return this.#sym.rk_tls_ctx_free(ctx);
  }

  /** Process-wide TLS counters. */
  tlsStats(): NativeTlsStats {
    const out = new Float64Array(6);
    this.#sym.rk_tls_stats(out);
    const [handshakes = 0, failures = 0, open = 0, bytesIn = 0, bytesOut = 0, loaded = 0] = out;
    return { handshakes, failures, open, bytesIn, bytesOut, loaded: loaded === 1 };
  }

  // ---- engine ------------------------------------------------------------

  /** Number of worker threads. */
  threads(): number {
    return this.#sym.rk_engine_threads(this.#h);
  }

  /**
   * Copy up to `max` records into `buf`, and the bytes of their hold events
   * into `held` as they fit (rk_engine_drain_held: record i's at
   * `spans[2i]`, `spans[2i + 1]` long, or `spans[2i]` is -1 and holdTake
   * has them); the number copied.
   */
  drain(buf: Uint32Array, max: number, held: Uint8Array, spans: Int32Array): number {
    if (buf.length < max * EVENT_WORDS || spans.length < 2 * max) {
      throw new RangeError("Event buffer too small");
    }
    return this.#sym.rk_engine_drain_held(this.#h, buf, max, held, held.length, spans);
  }

  /** Engine counters, or a negative code. */
  stats(): NativeEngineStats | number {
    const out = new Float64Array(8);
    const r = this.#sym.rk_engine_stats(this.#h, out);
    if (r < 0) return r;
    const [active = 0, accepted = 0, closed = 0, rejected = 0] = out;
    const [, , , , queued = 0, listeners = 0, pooledPipes = 0, threads = 0] = out;
    return { active, accepted, closed, rejected, queued, listeners, pooledPipes, threads };
  }

  /** rk_engine_close. */
  close(): number {
    return this.#sym.rk_engine_close(this.#h);
  }

  /** rk_engine_free. */
  free(): number {
    return this.#sym.rk_engine_free(this.#h);
  }

  /** rk_test_post: `threads` threads post `count` test events each. */
  testPost(threads: number, count: number): number {
    return this.#sym.rk_test_post(this.#h, threads, count);
  }

  // ---- listeners ---------------------------------------------------------

  /** rk_listen with its options struct: a listener id or a negative code. */
  listen(at: Endpoint, o: ListenOptions): number {
    const [host, port] = hostPort(at);
    const adopt = o.adoptFd !== undefined && o.adoptFd >= 0;
    const flags = LISTEN_FLAGS.REUSEADDR | (o.reusePort ? LISTEN_FLAGS.REUSEPORT : 0) |
      (o.hold ? LISTEN_FLAGS.HOLD : 0) | (adopt ? LISTEN_FLAGS.ADOPT : 0);
    const opts = LISTEN_OPTS.encode({
      backlog: o.backlog,
      flags,
      max_conns: o.maxConnections,
      idle_timeout_ms: o.idleTimeout,
      events: eventBits(o.events),
      hooks: hookBits(o.hooks),
      hold_timeout_ms: o.holdTimeout,
      adopt_fd: adopt ? o.adoptFd! : -1,
    });
    return this.#sym.rk_listen(this.#h, cstr(host), port, opts);
  }

  /** The bound port, or a negative code. */
  listenerPort(lid: number): number {
    return this.#sym.rk_listener_port(this.#h, lid);
  }

  /** A new fd for the listener's socket, owned by the caller, or a negative code. */
  listenerDup(lid: number): number {
    return this.#sym.rk_listener_dup(this.#h, lid);
  }

  /** Make every accepted connection connect to `t`. */
  listenerSetTarget(lid: number, t: ConnectTarget): number {
    const [host, port] = hostPort(t.target);
    return this.#sym.rk_listener_set_target(
      this.#h,
      lid,
      cstr(host),
      port,
      familyCode(t.family),
      t.connectTimeout,
      cstr(t.bindAddress ?? ""),
    );
  }

  /** Stop reading PROXY headers in the library: the host decides from now on. */
  listenerDropProxy(lid: number): number {
    return this.#sym.rk_listener_drop_proxy(this.#h, lid);
  }

  /** Read PROXY headers in the library (before listenerStart). */
  listenerSetProxy(lid: number, front: ProxyFront): number {
    const ranges = new Uint8Array(front.trusted.length * RANGE_BYTES);
    front.trusted.forEach((r, i) => {
      ranges[i * RANGE_BYTES] = r.bytes.length;
      ranges[i * RANGE_BYTES + 1] = r.prefix;
      ranges.set(r.bytes, i * RANGE_BYTES + 2);
    });
    const send = front.send;
    const tlvs = new Uint8Array((send?.tlvsBefore.length ?? 0) + (send?.tlvsAfter.length ?? 0));
    if (send !== undefined) {
      tlvs.set(send.tlvsBefore);
      tlvs.set(send.tlvsAfter, send.tlvsBefore.length);
    }
    const opts = PROXY_OPTS.encode({
      mode: PROXY_MODES[front.mode],
      flags: (front.untrusted === "no-header" ? PROXY.UNTRUSTED_PASS : 0) |
        (send?.crc32c ? PROXY.SEND_CRC32C : 0) | (send?.uniqueId ? PROXY.SEND_UNIQUE_ID : 0),
      send_version: send?.version ?? 0,
      tlv_split: send?.tlvsBefore.length ?? 0,
    });
    return this.#sym.rk_listener_set_proxy(
      this.#h,
      lid,
      opts,
      ranges,
      ranges.length,
      tlvs,
      tlvs.length,
    );
  }

  /** The native PROXY header parser (rk_proxy_parse) over `buf`. */
  proxyParse(buf: Uint8Array, mode: "detect" | "v1" | "v2" | "none"): NativeParse {
    const out = new Int32Array(9);
    const k = this.#sym.rk_proxy_parse(
      buf.length > 0 ? buf : new Uint8Array(1),
      buf.length,
      PROXY_MODES[mode],
      out,
    );
    if (k < 0) return { kind: "error", code: this.proxyError(-k).split(":")[0] ?? "" };
    if (k === 0) return { kind: "need", bytes: out[0] ?? 0 };
    if (k === 1) return { kind: "none" };
    const [length = 0, version = 0, command = 0, transport = 0, family = 0] = out;
    const [, , , , , sourcePort = 0, destinationPort = 0, tlvOffset = 0, tlvLength = 0] = out;
    return {
      kind: "header",
      length,
      version,
      command,
      transport,
      family,
      sourcePort,
      destinationPort,
      tlvOffset,
      tlvLength,
    };
  }

  /** "CODE: text" of a native PROXY parser code (an RK_EV_PROXY refusal's). */
  proxyError(code: number): string {
    const buf = new Uint8Array(ERR_BUF);
    const n = this.#sym.rk_proxy_error_r(code, buf, buf.length);
    return decoder.decode(buf.subarray(0, n));
  }

  /** Terminate TLS with server context `ctx` on every accepted connection. */
  listenerSetTls(lid: number, ctx: number): number {
    return this.#sym.rk_listener_set_tls(this.#h, lid, ctx);
  }

  /** Start accepting. */
  listenerStart(lid: number): number {
    return this.#sym.rk_listener_start(this.#h, lid);
  }

  /** Stop accepting and close the listening fd. */
  listenerClose(lid: number): number {
    return this.#sym.rk_listener_close(this.#h, lid);
  }

  /** Change which per-connection events are posted. */
  listenerSetEvents(lid: number, events: ListenerEvents): number {
    return this.#sym.rk_listener_set_events(this.#h, lid, eventBits(events));
  }

  /** Read up to `max` bytes a held client already sent before its first hold event. */
  listenerSetHoldFirst(lid: number, max: number): number {
    return this.#sym.rk_listener_set_hold_first(
      this.#h,
      lid,
      Math.max(0, Math.min(max, 0x7fffffff)),
    );
  }

  /**
   * Whether a client that has sent nothing at its accept gets its first
   * hold event only with its first bytes (or its EOF, or after the sweep).
   */
  listenerSetHoldWait(lid: number, on: boolean): number {
    return this.#sym.rk_listener_set_hold_wait(this.#h, lid, on ? 1 : 0);
  }

  /** Abort every connection of the listener. */
  listenerAbort(lid: number): number {
    return this.#sym.rk_listener_abort(this.#h, lid);
  }

  /** Open connections of the listener, or a negative code. */
  listenerActive(lid: number): number {
    return this.#sym.rk_listener_active(this.#h, lid);
  }

  /** The listener's counters, or undefined once it is gone. */
  listenerCounters(lid: number): ListenerTotals | undefined {
    const out = new Uint32Array(EVENT_WORDS);
    return this.#sym.rk_listener_counters(this.#h, lid, out) < 0 ? undefined : listenerTotals(out);
  }

  /**
   * The listener's open connections, oldest first, in one pass (none once
   * it is gone): all of them, or the `first` oldest. Over one buffer of
   * this engine: valid until the next call (read it at once). Nothing is
   * allocated per connection.
   */
  listenerConns(lid: number, first?: number): RecordSnapshot {
    // never room for more than are open (and some opening meanwhile): a
    // page far past the end must not size the buffer
    const open = Math.max(0, this.#sym.rk_listener_active(this.#h, lid));
    const want = first === undefined
      ? undefined
      : Math.max(0, Math.min(first, open + (open >> 3) + 16));
    if (want !== undefined && this.#connBuf.length < want * CONN_WORDS) {
      this.#connBuf = new Uint32Array(want * CONN_WORDS);
    }
    for (;;) {
      const buf = this.#connBuf;
      const room = want ?? buf.length / CONN_WORDS;
      const n = this.#sym.rk_listener_conns(this.#h, lid, buf, room);
      if (n < 0) return new RecordSnapshot(buf.subarray(0, 0), 0, 0);
      if (want !== undefined || n <= room) {
        const got = Math.min(n, room);
        return new RecordSnapshot(buf.subarray(0, got * CONN_WORDS), got, n);
      }
      // all were asked for, and more are open than there is room for: room
      // for them and some more opening meanwhile
      this.#connBuf = new Uint32Array((n + (n >> 3) + 16) * CONN_WORDS);
    }
  }

  // ---- connections ---------------------------------------------------------

  /** rk_relay_fds with its options struct: a connection id or a negative code. */
  relayFds(
    fds: { ra: number; wa: number; rb: number; wb: number },
    o: { keepFds: boolean; idleTimeout: number; hooks: HookedDirections },
  ): number {
    const opts = RELAY_OPTS.encode({
      flags: (o.keepFds ? RELAY_FLAGS.KEEP_FDS : 0) | hookBits(o.hooks),
      idle_timeout_ms: o.idleTimeout,
    });
    return this.#sym.rk_relay_fds(this.#h, fds.ra, fds.wa, fds.rb, fds.wb, opts);
  }

  /** Close a connection; -ENOENT if it ended already. */
  connClose(id: number, mode: "graceful" | "abort"): number {
    return this.#sym.rk_conn_close(this.#h, id, mode === "abort" ? 1 : 0);
  }

  /** Live stats of a connection, or undefined once it ended. */
  connStats(id: number): ConnectionStats | undefined {
    const out = new Float64Array(8);
    if (this.#sym.rk_conn_stats(this.#h, id, out) < 0) return undefined;
    const [ar = 0, aw = 0, br = 0, bw = 0, startedAt = 0, lastActivityAt = 0, s = 0] = out;
    return {
      aToB: { read: ar, written: aw },
      bToA: { read: br, written: bw },
      startedAt,
      lastActivityAt,
      state: STATE_NAMES[s] ?? "closing",
    };
  }

  /** The peer address of side a, or undefined. */
  connPeer(id: number): InetEndpoint | undefined {
    const buf = new Uint8Array(64);
    const n = this.#sym.rk_conn_peer(this.#h, id, buf, buf.length);
    if (n <= 0) return undefined;
    const text = decoder.decode(buf.subarray(0, n));
    const colon = text.lastIndexOf(":");
    return {
      host: text.slice(0, colon).replace(/^\[|\]$/g, ""),
      port: Number(text.slice(colon + 1)),
    };
  }

  /** Start a nonblocking connect: a request id (its fd-connected event follows). */
  connectFd(t: ConnectTarget): number {
    const [host, port] = hostPort(t.target);
    return this.#sym.rk_connect_fd(
      this.#h,
      cstr(host),
      port,
      familyCode(t.family),
      t.connectTimeout,
      cstr(t.bindAddress ?? ""),
    );
  }

  // ---- hooks ---------------------------------------------------------------

  /**
   * The bytes of a hook batch (`token`, `length` bytes at `address`): with
   * `lend`, a view of the library's memory where the runtime lets it be
   * taken back (valid until {@link hookReturn}); else the hook's to keep:
   * the library's memory itself where the runtime can take it over
   * (rk_hook_gift: Bun's collector frees it), or a copy.
   */
  hookLend(token: number, address: number, length: number, lend: boolean): Uint8Array {
    if (!lend || !CAN_LEND) {
      // -EAGAIN: the process holds RK_HOOK_GIFT_MAX of them, not yet collected
      if (this.#give !== undefined && this.#sym.rk_hook_gift(this.#h, token) === 0) {
        const ab = this.#give(address, length, this.#deallocator ??= this.#giftFree());
        this.#given.set(token, ab);
        return new Uint8Array(ab);
      }
      this.#copied.add(token);
      // the copies come from the process's malloc on Deno: keep glibc
      // from mapping and unmapping a block per batch (rk_malloc_tune)
      if (!mallocTuned) {
        this.#sym.rk_malloc_tune();
        mallocTuned = true;
      }
      return this.#copy(address, length);
    }
    const ab = this.#lend(address, length);
    this.#lent.set(token, ab);
    return new Uint8Array(ab);
  }

  /**
   * Hand a hook batch back with what to send in its place (`out` may be
   * the lent bytes or part of them: then nothing is copied). The lent view
   * is detached, so nothing in JavaScript can reach the memory afterwards.
   */
  hookReturn(token: number, out: Uint8Array): HookReturned {
    const ab = this.#lent.get(token);
    let r: number;
    const given = this.#given.get(token);
    if (given !== undefined) {
      // the bytes stay JavaScript's: the library only reads them
      this.#given.delete(token);
      r = this.#returnFrom(token, out, given);
    } else if (ab === undefined) {
      // a copy was given; or released already (the engine closed)
      if (!this.#copied.delete(token)) return "ended";
      r = this.#sym.rk_hook_return(this.#h, token, out, out.length, -1, 0);
    } else {
      this.#lent.delete(token);
      if (isDetached(ab)) {
        // transferred by someone else: the memory may live on in JavaScript
        this.#sym.rk_hook_return(this.#h, token, EMPTY, 0, 0, HOOK_RETURN.KEPT);
        return "kept";
      }
      r = this.#returnFrom(token, out, ab);
      transferAb!.call(ab, 0); // detach: no view of it reaches the memory now
    }
    return r === 0 ? "ok" : "ended"; // -ENOENT (or -ENOMEM: the library reset it)
  }

  /**
   * Hand batch `token` back with `out`: sent from the batch's own memory
   * (`ab`, lent or given) when `out` is a view of it, else copied.
   */
  #returnFrom(token: number, out: Uint8Array, ab: ArrayBuffer): number {
    return bufferOfView.call(out) === ab
      ? this.#sym.rk_hook_return(
        this.#h,
        token,
        EMPTY,
        out.byteLength,
        out.byteOffset,
        HOOK_RETURN.LENT,
      )
      : this.#sym.rk_hook_return(this.#h, token, out, out.length, -1, 0);
  }

  /**
   * Take back every batch still lent (the engine is closing, before
   * rk_engine_free releases them).
   */
  hookReleaseAll(): void {
    for (const token of [...this.#lent.keys(), ...this.#given.keys(), ...this.#copied]) {
      this.hookReturn(token, EMPTY);
    }
  }

  /** The address of the library's deallocator of given batches. */
  #giftFree(): number {
    const words = new Uint32Array(2);
    this.#sym.rk_hook_gift_free_address(words);
    return words[0]! + words[1]! * 2 ** 32;
  }

  // ---- held connections ----------------------------------------------------

  /** Read up to `max` more bytes from a held client. */
  holdRead(id: number, max: number): void {
    this.#batch.read(id, Math.max(1, Math.min(max, 0x7fffffff)));
    this.#queued();
  }

  /** Write bytes to a held client at once. */
  holdWrite(id: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.#batch.write(id, data);
    this.#queued();
  }

  /**
   * Let the listener decide its connections with a built-in router
   * (undefined: no longer).
   */
  listenerSetRouter(
    lid: number,
    router: EngineRouter | undefined,
    how: Omit<RouterConnect, "family" | "bindAddress"> & {
      family: FamilyPreference;
      bindAddress: string | undefined;
    },
  ): number {
    if (router === undefined) return this.#sym.rk_listener_set_router(this.#h, lid, EMPTY, 0);
    const desc = encodeRouter(router, {
      ...how,
      family: familyCode(how.family),
      bindAddress: how.bindAddress ?? "",
    });
    return this.#sym.rk_listener_set_router(this.#h, lid, desc, desc.length);
  }

  /**
   * How the C router classifies `host` and checks it at `port` against the
   * router's rules, `resolved` standing for a resolver's answer (tests).
   */
  routerCheck(
    router: EngineRouter,
    host: string,
    port: number,
    resolved: readonly string[],
  ): string {
    const desc = encodeRouter(router, {
      routeLimit: 65536,
      connectTimeout: 0,
      family: 0,
      bindAddress: "",
    });
    const h = new TextEncoder().encode(host);
    const out = new Uint8Array(512);
    const n = this.#sym.rk_router_check(
      desc,
      desc.length,
      h,
      h.length,
      port,
      cstr(resolved.join(",")),
      out,
      out.length,
    );
    if (n < 0) throw new RangeError(`rk_router_check: ${n}`);
    return new TextDecoder().decode(out.subarray(0, Math.min(n, out.length - 1)));
  }

  /**
   * What the C routing table of `router` decides for the first bytes
   * `data`: "wait", "defer" or "connect HOST PORT TIMEOUT" (tests).
   */
  routerTableCheck(router: EngineRouter, data: Uint8Array): string {
    const desc = encodeRouter(router, {
      routeLimit: 65536,
      connectTimeout: 0,
      family: 0,
      bindAddress: "",
    });
    const out = new Uint8Array(512);
    const n = this.#sym.rk_router_table_check(
      desc,
      desc.length,
      data,
      data.length,
      out,
      out.length,
    );
    if (n < 0) throw new RangeError(`rk_router_table_check: ${n}`);
    return new TextDecoder().decode(out.subarray(0, Math.min(n, out.length - 1)));
  }

  /**
   * The held bytes a hold event announced, or undefined if the connection
   * ended: for an event whose bytes the drain did not carry.
   */
  holdTake(id: number, length: number): Uint8Array | undefined {
    let data = new Uint8Array(length);
    if (length === 0) return data;
    // not after the batch: the bytes are those the hold event announced,
    // whatever this turn asked of the connection since
    const n = this.#raw.rk_hold_take(this.#h, id, data, data.length);
    if (n < 0) return undefined;
    if (n > data.length) {
      data = new Uint8Array(n);
      this.#raw.rk_hold_take(this.#h, id, data, n);
    }
    return data.subarray(0, n);
  }

  /**
   * A held connection's decision: CONNECT and CLOSE join this turn's batch
   * (0; a connection that cannot carry one out is aborted, and its CLOSED
   * event tells), FILE opens its file now (rk_hold_decide: a negative code
   * if it cannot).
   */
  holdDecide(id: number, d: NativeDecision): number {
    const toA = d.toClient ?? EMPTY;
    let host = "", bind = "", toB = EMPTY;
    let fields: DecisionFields;
    if (d.action === "connect") {
      let port;
      [host, port] = hostPort(d.target);
      bind = d.bindAddress ?? "";
      toB = d.toTarget ?? EMPTY;
      fields = {
        action: DECIDE.CONNECT,
        flags: d.retry ? DECISION_FLAGS.RETRY : 0,
        port,
        family: familyCode(d.family),
        connect_timeout_ms: d.connectTimeout,
        idle_timeout_ms: d.idleTimeout ?? -1,
        consume: d.consume ?? 0,
        offset: 0,
        length: 0,
      };
    } else if (d.action === "file") {
      host = d.path;
      fields = {
        ...NOT_CONNECT,
        action: DECIDE.FILE,
        idle_timeout_ms: -1,
        offset: d.offset ?? 0,
        length: d.length ?? -1,
      };
    } else {
      fields = { ...NOT_CONNECT, action: DECIDE.CLOSE, idle_timeout_ms: -1, offset: 0, length: 0 };
    }
    if (d.action !== "file") {
      this.#batch.decide(id, fields, host, bind, toB, toA);
      this.#queued();
      return 0;
    }
    return this.#sym.rk_hold_decide(
      this.#h,
      id,
      cstr(host),
      cstr(bind),
      DECISION.encode(fields),
      toB,
      toB.length,
      toA,
      toA.length,
    );
  }

  // ---- tunnels ---------------------------------------------------------------

  /** rk_tunnel_new on a link socket `fd` or held connection `connId`: a tunnel id or a negative code. */
  tunnelNew(from: { fd: number } | { connId: number }, tls?: NativeTunnelTls): number {
    const fd = "fd" in from ? from.fd : -1;
    const conn = "fd" in from ? 0 : from.connId;
    if (tls === undefined) return this.#sym.rk_tunnel_new(this.#h, fd, conn);
    const name = "server" in tls ? "" : tls.servername;
    const flags = "server" in tls ? 1 : 0;
    return this.#sym.rk_tunnel_new_tls(this.#h, fd, conn, tls.ctx, flags, cstr(name));
  }

  /** The bytes tunnel `tid` holds for the host, or a negative code. */
  tunnelTake(tid: number): Uint8Array | number {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const buf = new Uint8Array(64 * 1024);
      const n = this.#sym.rk_tunnel_take(this.#h, tid, buf, buf.length);
      if (n < 0) return total > 0 ? concat(parts, total) : n;
      parts.push(buf.subarray(0, n));
      total += n;
      if (n < buf.length) break;
    }
    return concat(parts, total);
  }

  /** Queue bytes on tunnel `tid`'s link. */
  tunnelSend(tid: number, data: Uint8Array): number {
    return data.length > 0 ? this.#sym.rk_tunnel_send(this.#h, tid, data, data.length) : 0;
  }

  /** rk_tunnel_attach: frames from now on. */
  tunnelAttach(tid: number, server: boolean, window: number, replay: Uint8Array): number {
    return this.#sym.rk_tunnel_attach(this.#h, tid, server ? 1 : 0, window, replay, replay.length);
  }

  /** rk_tunnel_open: send `frame`, carry held connection `connId` as stream `sid`. */
  tunnelOpen(tid: number, sid: number, connId: number, frame: Uint8Array): number {
    return this.#sym.rk_tunnel_open(this.#h, tid, sid, connId, frame, frame.length);
  }

  /** rk_tunnel_accept: send `frame`, carry connected socket `fd` as stream `sid`. */
  tunnelAccept(tid: number, sid: number, fd: number, frame: Uint8Array): number {
    return this.#sym.rk_tunnel_accept(this.#h, tid, sid, fd, frame, frame.length);
  }

  /** rk_tunnel_stream_close: send `frame` (may be empty), drop stream `sid`. */
  tunnelStreamClose(tid: number, sid: number, reset: boolean, frame: Uint8Array): number {
    return this.#sym.rk_tunnel_stream_close(this.#h, tid, sid, reset ? 1 : 0, frame, frame.length);
  }

  /** rk_tunnel_close. */
  tunnelClose(tid: number, mode: "graceful" | "abort"): number {
    return this.#sym.rk_tunnel_close(this.#h, tid, mode === "abort" ? 1 : 0);
  }

  /** Link counters (sid 0) or a stream's, or undefined once gone. */
  tunnelStats(tid: number, sid: number): [number, number, number, number] | undefined {
    const out = new Float64Array(4);
    if (this.#sym.rk_tunnel_stats(this.#h, tid, sid, out) < 0) return undefined;
    return [out[0] ?? 0, out[1] ?? 0, out[2] ?? 0, out[3] ?? 0];
  }

  // ---- fd helpers (no engine) ----------------------------------------------

  /** [read end, write end] of a new pipe, or a negative code. */
  fdPipe(): [number, number] | number {
    return this.#pair((out) => this.#sym.rk_fd_pipe(out));
  }

  /** Two connected Unix stream sockets, or a negative code. */
  fdSocketPair(): [number, number] | number {
    return this.#pair((out) => this.#sym.rk_fd_socketpair(out));
  }

  #pair(f: (out: Int32Array) => number): [number, number] | number {
    const out = new Int32Array(2);
    const r = f(out);
    return r < 0 ? r : [out[0] ?? -1, out[1] ?? -1];
  }

  /** open(2) (close-on-exec): the fd or a negative code. */
  fdOpen(path: string, flags: number, mode: number): number {
    return this.#sym.rk_fd_open(cstr(path), flags, mode);
  }

  /** Write all of `data` (blocking). */
  fdWrite(fd: number, data: Uint8Array): number {
    return this.#sym.rk_fd_write(fd, data, data.length);
  }

  /** Read once into `buf` (blocking): the count, 0 at EOF. */
  fdRead(fd: number, buf: Uint8Array): number {
    return this.#sym.rk_fd_read(fd, buf, buf.length);
  }

  /** shutdown(SHUT_WR) for a socket, close otherwise. */
  fdShutdownWrite(fd: number): number {
    return this.#sym.rk_fd_shutdown_write(fd);
  }

  /** close(2). */
  fdClose(fd: number): number {
    return this.#sym.rk_fd_close(fd);
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
