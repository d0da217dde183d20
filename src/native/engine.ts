/**
 * The event bridge: owns the library handle and one native engine, drains
 * the engine's event queue in batches and hands each event to whoever
 * registered for its connection or listener.
 *
 * Worker threads never run JavaScript. They append fixed-size records to a
 * queue; the runtime adapter's waker tells us when the queue may be
 * non-empty, and one synchronous call copies up to BATCH records into a
 * Uint32Array. JavaScript answers with ordinary synchronous calls.
 *
 * @module
 */
import { RelaykitError } from "../errors.ts";
import type { NativeLibrary, Waker } from "../runtime/types.ts";
import { loadNative } from "./load.ts";
import { EV, EVENT_WORDS, type NativeSymbols } from "./symbols.ts";

/**
 * One event record, decoded.
 *
 * @example
 * ```ts
 * import { type NativeEvent } from "@relaykit/relaykit/internals";
 * const seen: NativeEvent[] = [];
 * console.log(seen.length); // what NativeEngine hands to its handlers
 * ```
 */
export interface NativeEvent {
  /** EV.* */
  type: number;
  /** Connection id (or thread index for test events). */
  id: number;
  /** Listener id, fd, or sequence number, by type. */
  aux: number;
  /** Negative error code, or 0. */
  err: number;
  /** END.* for CLOSED. */
  reason: number;
  /** Lifetime in ms for CLOSED. */
  durationMs: number;
  /** Raw record words 6..15 (address or counters). */
  words: Uint32Array;
}

/**
 * Options of a native engine.
 *
 * @example
 * ```ts
 * import { NativeEngine, type NativeEngineOptions } from "@relaykit/relaykit";
 * const options: NativeEngineOptions = { threads: 1, maxConnections: 10_000 };
 * const engine = new NativeEngine(options);
 * console.log(engine.threads);
 * engine.close();
 * ```
 */
export interface NativeEngineOptions {
  /** Worker threads. @default the number of CPUs */
  threads?: number;
  /** Engine-wide limit of concurrent connections; 0 is none. @default 0 */
  maxConnections?: number;
  /** Load the library from exactly this path. */
  libraryPath?: string;
}

/**
 * Receives events of one listener or connection.
 *
 * @example
 * ```ts
 * import { type Handler } from "@relaykit/relaykit/internals";
 * const handler: Handler = (ev) => console.log(ev.type, ev.id);
 * console.log(typeof handler);
 * ```
 */
export type Handler = (ev: NativeEvent) => void;

/** Records copied per drain call. */
const BATCH = 4096;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A string as NUL-terminated UTF-8 for the C side. */
export function cstr(s: string): Uint8Array {
  const b = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, b);
  return b;
}

/** A 64-bit counter from two record words. */
export function u64(words: Uint32Array, i: number): number {
  return (words[i] ?? 0) + (words[i + 1] ?? 0) * 2 ** 32;
}

let libCache: { lib: NativeLibrary; path: string } | undefined;

/** Load (once) the native library. Throws NativeLoadError when it cannot. */
export function nativeLibrary(path?: string): { lib: NativeLibrary; path: string } {
  if (libCache === undefined) libCache = loadNative(path === undefined ? {} : { path });
  return libCache;
}

/** Name and message of a native error code. */
export function describeError(
  sym: NativeSymbols,
  code: number,
): { name: string; message: string } {
  const buf = new Uint8Array(128);
  const n = sym.rk_err_name_r(code, buf, buf.length);
  const name = decoder.decode(buf.subarray(0, n));
  const m = sym.rk_strerror_r(code, buf, buf.length);
  return { name, message: decoder.decode(buf.subarray(0, m)) };
}

/**
 * One native engine and the bridge that carries its events to JS.
 *
 * @example
 * ```ts
 * import { NativeEngine, TcpProxy } from "@relaykit/relaykit";
 * const engine = new NativeEngine({ threads: 1 }); // an engine of its own
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 *   nativeEngine: engine,
 * });
 * await proxy.close();
 * engine.close();
 * ```
 */
export class NativeEngine {
  static #shared: NativeEngine | undefined;

  /**
   * The bound native functions (relaykit.h), for code that drives the
   * library directly.
   *
   * @ignore
   */
  readonly sym: NativeSymbols;
  /** Where the library was loaded from. */
  readonly libraryPath: string;
  readonly #h: number;
  readonly #waker: Waker;
  readonly #buf = new Uint32Array(BATCH * EVENT_WORDS);
  readonly #byConn = new Map<number, Handler>();
  readonly #byListener = new Map<number, Handler>();
  #onTest: Handler | undefined;
  #refs = 0;
  #closed = false;

  /**
   * Start an engine with its own worker threads.
   *
   * @param options Threads, limit, library path.
   */
  constructor(options: NativeEngineOptions = {}) {
    const { lib, path } = nativeLibrary(options.libraryPath);
    this.sym = lib.symbols;
    this.libraryPath = path;
    const h = this.sym.rk_engine_new(options.threads ?? 0, options.maxConnections ?? 0);
    this.#h = this.check(h, "Cannot start the native engine");
    this.#waker = lib.watch(this.#h, () => this.drain());
  }

  /** The process-wide engine that listeners and relays use by default. */
  static shared(): NativeEngine {
    NativeEngine.#shared ??= new NativeEngine();
    return NativeEngine.#shared;
  }

  /** The engine's handle for native calls. */
  get handle(): number {
    return this.#h;
  }

  /** Number of worker threads. */
  get threads(): number {
    return this.sym.rk_engine_threads(this.#h);
  }

  /**
   * Throw a RelaykitError for a negative result, return it otherwise.
   *
   * @param r The native result.
   * @param what Sentence start, e.g. `Cannot listen on "x"`.
   */
  check(r: number, what: string): number {
    if (r >= 0) return r;
    throw this.error(r, what);
  }

  /** A RelaykitError for a native error code. */
  error(code: number, what: string, connectionId?: number): RelaykitError {
    const { name, message } = describeError(this.sym, code);
    return new RelaykitError(
      `${what}: ${message}`,
      name,
      connectionId === undefined ? {} : { connectionId },
    );
  }

  /** Keep the process alive (and events flowing) while something is open. */
  ref(): void {
    if (this.#refs++ === 0) this.#waker.ref();
  }

  /** The open thing is done; at zero the process may exit. */
  unref(): void {
    if (--this.#refs === 0) this.#waker.unref();
  }

  /** Receive the events of connection `id` (relays, fd connects). */
  onConnection(id: number, h: Handler): void {
    this.#byConn.set(id, h);
  }

  /** Stop receiving events of connection `id`. */
  offConnection(id: number): void {
    this.#byConn.delete(id);
  }

  /** Receive the events of listener `id` and its connections. */
  onListener(id: number, h: Handler): void {
    this.#byListener.set(id, h);
  }

  /** Stop receiving events of listener `id`. */
  offListener(id: number): void {
    this.#byListener.delete(id);
  }

  /** Receive RK_EV_TEST events (event bridge tests). */
  onTest(h: Handler | undefined): void {
    this.#onTest = h;
  }

  /** Copy every queued event out and dispatch it. Returns the count. */
  drain(): number {
    if (this.#closed) return 0;
    let total = 0;
    const buf = this.#buf;
    for (;;) {
      const n = this.sym.rk_engine_drain(this.#h, buf, BATCH);
      if (n <= 0) break;
      total += n;
      for (let i = 0; i < n; i++) {
        const o = i * EVENT_WORDS;
        const ev: NativeEvent = {
          type: buf[o] ?? 0,
          id: buf[o + 1] ?? 0,
          aux: buf[o + 2] ?? 0,
          err: (buf[o + 3] ?? 0) | 0,
          reason: buf[o + 4] ?? 0,
          durationMs: buf[o + 5] ?? 0,
          words: buf.slice(o + 6, o + EVENT_WORDS),
        };
        this.#dispatch(ev);
      }
      if (n < BATCH) break;
    }
    return total;
  }

  #dispatch(ev: NativeEvent): void {
    let h: Handler | undefined;
    switch (ev.type) {
      case EV.TEST:
        h = this.#onTest;
        break;
      case EV.ACCEPT:
      case EV.HOLD:
      case EV.REJECTED:
      case EV.ACCEPT_ERROR:
      case EV.LISTENER_CLOSED:
      case EV.LISTENER_DRAINED:
        h = this.#byListener.get(ev.aux);
        break;
      case EV.CONNECTED:
      case EV.CLOSED:
      case EV.HOOK:
        h = ev.aux !== 0 ? this.#byListener.get(ev.aux) : this.#byConn.get(ev.id);
        break;
      case EV.FD_CONNECTED:
        h = this.#byConn.get(ev.id);
        break;
    }
    // A handler that throws must not stop the events behind it; report it
    // the way an uncaught error in a callback is reported.
    try {
      h?.(ev);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  /** Engine counters. */
  stats(): {
    active: number;
    accepted: number;
    closed: number;
    rejected: number;
    queued: number;
    listeners: number;
    pooledPipes: number;
    threads: number;
  } {
    const out = new Float64Array(8);
    this.check(this.sym.rk_engine_stats(this.#h, out), "Cannot read engine stats");
    const [active = 0, accepted = 0, closed = 0, rejected = 0] = out;
    const [, , , , queued = 0, listeners = 0, pooledPipes = 0, threads = 0] = out;
    return { active, accepted, closed, rejected, queued, listeners, pooledPipes, threads };
  }

  /**
   * Close every listener and connection and stop the workers. Their final
   * events are delivered before this returns.
   */
  close(): void {
    if (this.#closed) return;
    this.sym.rk_engine_close(this.#h);
    this.drain();
    this.#closed = true;
    this.#waker.close();
    this.sym.rk_engine_free(this.#h);
    if (NativeEngine.#shared === this) NativeEngine.#shared = undefined;
  }
}
