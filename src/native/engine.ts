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
import { NativeCalls, type NativeEngineStats, type NativeTlsStats } from "./calls.ts";
import { decodeEvent, type NativeEvent } from "./events.ts";
import { libsslOverride, loadNative } from "./load.ts";
import { EVENT_WORDS } from "./symbols.ts";

export type { NativeEvent } from "./events.ts";

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
 * const handler: Handler = (ev) => console.log(ev.type);
 * console.log(typeof handler);
 * ```
 */
export type Handler = (ev: NativeEvent) => void;

/** Records copied per drain call. */
const BATCH = 4096;
/**
 * Bytes of hold events carried per drain call (a route's usual first
 * request; more held bytes are taken with a call of their own).
 */
const HELD_BYTES = 64 * 1024;

let callsOfEngine: (e: NativeEngine) => NativeCalls;

/**
 * The typed calls of an engine, for the engines and helpers built on it
 * (src/forward/native.ts, src/proxy/relay.ts, src/native/fds.ts). Not
 * part of the public API.
 */
export function callsOf(engine: NativeEngine): NativeCalls {
  return callsOfEngine(engine);
}

let libCache: { lib: NativeLibrary; path: string } | undefined;

/** Load (once) the native library. Throws NativeLoadError when it cannot. */
export function nativeLibrary(path?: string): { lib: NativeLibrary; path: string } {
  if (libCache === undefined) libCache = loadNative(path === undefined ? {} : { path });
  return libCache;
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

  /** Where the library was loaded from. */
  readonly libraryPath: string;
  readonly #calls: NativeCalls;
  readonly #waker: Waker;
  readonly #buf = new Uint32Array(BATCH * EVENT_WORDS);
  readonly #held = new Uint8Array(HELD_BYTES);
  readonly #spans = new Int32Array(2 * BATCH);
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
    this.libraryPath = path;
    const calls = NativeCalls.engineNew(
      lib,
      options.threads ?? 0,
      options.maxConnections ?? 0,
    );
    if (typeof calls === "number") {
      throw NativeEngine.#errorOf(lib, calls, "Cannot start the native engine");
    }
    this.#calls = calls;
    this.#waker = lib.watch(calls.wakeCalls(), () => this.drain());
  }

  static #errorOf(lib: NativeLibrary, code: number, what: string): RelaykitError {
    const { name, message } = NativeCalls.describe(lib.symbols, code);
    return new RelaykitError(`${what}: ${message}`, name);
  }

  static {
    // the one way in for code above src/native (see callsOf)
    callsOfEngine = (e) => e.#calls;
  }

  /** The process-wide engine that listeners and relays use by default. */
  static shared(): NativeEngine {
    NativeEngine.#shared ??= new NativeEngine();
    return NativeEngine.#shared;
  }

  /** Number of worker threads. */
  get threads(): number {
    return this.#calls.threads();
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
    const { name, message } = this.#calls.describe(code);
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

  /** Receive test events (rk_test_post; event bridge tests). */
  onTest(h: Handler | undefined): void {
    this.#onTest = h;
  }

  #delivered = 0;

  /** Copy every queued event out and dispatch it. Returns the count. */
  drain(): number {
    if (this.#closed) return 0;
    let total = 0;
    const buf = this.#buf, held = this.#held, spans = this.#spans;
    for (;;) {
      const n = this.#calls.drain(buf, BATCH, held, spans);
      if (n <= 0) break;
      total += n;
      for (let i = 0; i < n; i++) {
        const ev = decodeEvent(buf, i * EVENT_WORDS);
        const at = spans[2 * i] ?? -1;
        if (at >= 0 && ev?.type === "hold") {
          // a copy of its own: whoever gets it may keep it
          ev.data = held.slice(at, at + (spans[2 * i + 1] ?? 0));
        }
        if (ev !== undefined) this.#dispatch(ev);
      }
      if (n < BATCH) break;
    }
    // what the handlers asked of held connections, in one call
    this.#calls.flush();
    this.#delivered += total;
    return total;
  }

  /**
   * Event records delivered to JavaScript so far: what crossed from the
   * workers (a proxy nobody watches adds none per connection).
   */
  get delivered(): number {
    return this.#delivered;
  }

  #dispatch(ev: NativeEvent): void {
    let h: Handler | undefined;
    switch (ev.type) {
      case "test":
        h = this.#onTest;
        break;
      case "accept":
      case "hold":
      case "route-failed":
      case "route-target":
      case "proxy":
      case "rejected":
      case "accept-error":
      case "listener-closed":
      case "listener-drained":
        h = this.#byListener.get(ev.listener);
        break;
      case "connected":
      case "closed":
      case "hook":
        h = ev.listener !== 0 ? this.#byListener.get(ev.listener) : this.#byConn.get(ev.id);
        break;
      case "fd-connected":
      case "tunnel-rx":
      case "tunnel-stream-end":
      case "tunnel-link-end":
      case "tunnel-protocol":
      case "tunnel-tls-up":
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
  stats(): NativeEngineStats {
    const s = this.#calls.stats();
    if (typeof s === "number") throw this.error(s, "Cannot read engine stats");
    return s;
  }

  /**
   * Why this engine cannot speak TLS itself, or undefined when it can: it
   * loads OpenSSL 3 (libssl.so.3, or RELAYKIT_LIBSSL) once per process, at
   * the first call.
   */
  tlsUnavailable(): string | undefined {
    return this.#calls.tlsLoad(libsslOverride() ?? "");
  }

  /** Process-wide counters of the native TLS (handshakes, bytes). */
  tlsStats(): NativeTlsStats {
    return this.#calls.tlsStats();
  }

  /**
   * Close every listener and connection and stop the workers. Their final
   * events are delivered before this returns.
   */
  close(): void {
    if (this.#closed) return;
    this.#calls.close();
    this.drain();
    this.#closed = true;
    this.#waker.close();
    this.#calls.hookReleaseAll(); // before the library frees what it lent
    this.#calls.free();
    if (NativeEngine.#shared === this) NativeEngine.#shared = undefined;
  }
}
