/**
 * The Runtime contract: everything relaykit needs from Deno, Bun or Node
 * that their shared `node:` modules do not give. One adapter per runtime is
 * typed against it (deno.ts, bun.ts, node.ts), so drift is a compile error.
 *
 * @module
 */
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

/** A loaded native library. */
export interface NativeLibrary {
  /** The bound functions, typed from the one symbol table. */
  readonly symbols: NativeSymbols;
  /**
   * Call `onWake` on the JavaScript thread whenever engine `engine` may have
   * queued events (Deno: a nonblocking wait symbol; Bun: a thread-safe
   * callback used only as a wake-up).
   */
  watch(engine: number, onWake: () => void): Waker;
  /** Unload. Only when no engine is left. */
  close(): void;
}

/** What relaykit asks of the runtime it runs on. */
export interface Runtime {
  /** Which runtime this is. */
  readonly name: RuntimeName;
  /** Its version, e.g. "2.9.6". */
  readonly version: string;
  /** Whether it can load native libraries at all. */
  readonly ffi: boolean;
  /**
   * Load the library at `path` with the given symbol table. Throws the
   * runtime's own error when it cannot (a permission error passes through
   * unchanged, so its message names the missing flag).
   */
  dlopen(path: string, symbols: SymbolTable): NativeLibrary;
}
