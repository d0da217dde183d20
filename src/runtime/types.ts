/**
 * The Runtime contract: everything relaykit needs from Deno, Bun or Node
 * that their shared `node:` modules do not give. One adapter per runtime is
 * typed against it (deno.ts, bun.ts, node.ts), so drift is a compile error.
 *
 * @module
 */
import type { Endpoint, FamilyPreference, TlsClientOptions, TlsServerOptions } from "../types.ts";
import type { NativeSymbols, SymbolTable } from "../native/symbols.ts";

/** The runtimes relaykit knows. */
export type RuntimeName = "deno" | "bun" | "node";

/** Delivers "the engine may have events" to the JavaScript thread. */
export interface Waker {
  /** Keep the process alive and deliver wake-ups. Idempotent. */
  ref(): void;
  /** Let the process exit; wake-ups stop until ref(). Idempotent. */
  unref(): void;
  /** Stop for good. Call only after the engine has stopped posting. */
  close(): void;
}

/** What a waker may ask of one native engine (closures made by src/native). */
export interface EngineWakeCalls {
  /** Wait until the queue is non-empty or `wake` is called (Deno: a Promise). */
  wait(timeoutMs: number): unknown;
  /** End a pending `wait`. */
  wake(): void;
  /** Have the engine call `callback` (a native function pointer) on each wake-up. */
  setNotify(callback: unknown): void;
}

/** A loaded native library. */
export interface NativeLibrary {
  /** The bound functions, typed from the one symbol table. */
  readonly symbols: NativeSymbols;
  /**
   * Call `onWake` on the JavaScript thread whenever an engine may have
   * queued events (Deno: its nonblocking wait; Bun: a thread-safe callback
   * used only as a wake-up). The engine's calls come from src/native: the
   * adapter never names a library function.
   */
  watch(engine: EngineWakeCalls, onWake: () => void): Waker;
  /**
   * An ArrayBuffer over `length` bytes of native memory at `address`,
   * without a copy (a hook batch the library lends). It is valid only while
   * the library keeps that memory: src/native detaches it before.
   */
  lend(address: number, length: number): ArrayBuffer;
  /**
   * A copy of `length` bytes of native memory at `address` (a hook batch
   * the library lends), in a Uint8Array whose ArrayBuffer holds nothing
   * else: the caller's to keep.
   */
  copy(address: number, length: number): Uint8Array;
  /**
   * An ArrayBuffer that takes over `length` bytes of native memory at
   * `address` without a copy (a hook batch the library gives): the
   * runtime's garbage collector calls the C function at `deallocator`
   * with `address` once nothing refers to it any more. Only where the
   * runtime's FFI takes a deallocator (Bun); absent elsewhere.
   */
  give?(address: number, length: number, deallocator: number): ArrayBuffer;
  /** Unload. Only when no engine is left, and never once a hook batch was given. */
  close(): void;
}

/** What a stream socket reports, on the JavaScript thread. */
export interface NetHandlers {
  /** Bytes arrived. The chunk is the handler's to keep. */
  data(chunk: Uint8Array): void;
  /** The peer shut its write side (EOF). */
  end(): void;
  /** Everything written so far has gone to the kernel. */
  drain(): void;
  /** The socket is closed; `code` says why when it was an error. */
  close(code: string | undefined): void;
}

/** A connected stream socket of the runtime. */
export interface NetConn {
  /** The peer's address, when it is a TCP peer. */
  readonly remote: { host: string; port: number } | undefined;
  /** The address the peer connected to, when it is a TCP peer. */
  readonly local: { host: string; port: number } | undefined;
  /** Start delivering events to `h`. */
  start(h: NetHandlers): void;
  /** Bytes handed to the kernel so far (not counting any still queued). */
  readonly written: number;
  /**
   * Queue bytes. Returns false when the runtime holds bytes back: wait for
   * `drain` before writing more. Bytes are never dropped.
   */
  write(data: Uint8Array): boolean;
  /** Stop delivering data (backpressure). */
  pause(): void;
  /** Deliver data again. */
  resume(): void;
  /** Send FIN once everything written has gone out. */
  end(): void;
  /** Close now; `reset` sends RST instead of FIN. */
  destroy(reset: boolean): void;
}

/** A listening stream socket of the runtime. */
export interface NetListener {
  /** The bound address (port filled in). */
  readonly address: Endpoint;
  /** Stop accepting. */
  close(): void;
}

/** Listening and connecting on the runtime's own sockets. */
export interface Net {
  /** Bind and accept (TLS with `tls`); throws a RelaykitError when it cannot bind. */
  listen(
    at: Endpoint,
    options: {
      backlog: number;
      reusePort: boolean;
      tls?: TlsServerOptions | undefined;
      /** accept(2) failed (EMFILE...): the listener waits until it can go on. */
      onAcceptError?: ((code: string) => void) | undefined;
      /** `tls`: a client's handshake failed (that client is closed). */
      onHandshakeError?: (() => void) | undefined;
      /**
       * An inherited listening socket (socket activation) to accept on
       * instead of binding `at`; it is closed with the listener.
       */
      fd?: number | undefined;
    },
    onConn: (c: NetConn) => void,
  ): Promise<NetListener>;
  /** Connect; rejects with a RelaykitError whose code is the engine-wide one. */
  connect(
    to: Endpoint,
    options: {
      timeout: number;
      family: FamilyPreference;
      bindAddress: string | undefined;
      tls?: TlsClientOptions | undefined;
    },
  ): Promise<NetConn>;
}

/** An access the runtime may have to grant (Deno's permissions). */
export type Access =
  | { name: "net"; host: string }
  | { name: "read" | "write" | "ffi"; path: string }
  | { name: "env"; variable: string }
  | { name: "run"; command: string };

/** The C library a Linux process runs on. */
export type Libc = "glibc" | "musl";

/** What relaykit asks of the runtime it runs on. */
export interface Runtime {
  /** Which runtime this is. */
  readonly name: RuntimeName;
  /** Its version, e.g. "2.9.6". */
  readonly version: string;
  /** Whether it can load native libraries at all. */
  readonly ffi: boolean;
  /**
   * The C library this process runs on, on Linux; undefined elsewhere or when
   * it cannot be told (a library built for the other one does not load).
   */
  readonly libc: Libc | undefined;
  /**
   * Whether `access` is granted now. Asks nobody: a Deno run without the
   * flag gets false, never a prompt. Always true on Bun and Node.
   */
  granted(access: Access): boolean;
  /**
   * Load the library at `path` with the given symbol table. Throws the
   * runtime's own error when it cannot (a permission error passes through
   * unchanged, so its message names the missing flag).
   */
  dlopen(path: string, symbols: SymbolTable): NativeLibrary;
  /** Sockets for the stream engine. */
  readonly net: Net;
}
