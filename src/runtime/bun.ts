/**
 * The Bun adapter. bun:ffi is imported through a string variable so that
 * Deno never tries to resolve "bun:" while type-checking; its types come
 * from the bun-types package.
 *
 * @module
 */
/// <reference types="bun-types" />
import { Buffer } from "node:buffer";
import process from "node:process";
import type { NativeSymbols, SymbolTable } from "../native/symbols.ts";
import { bunNet } from "./bun_net.ts";
import { processLibc } from "./libc.ts";
import type { EngineWakeCalls, NativeLibrary, Runtime, Waker } from "./types.ts";

type BunFfi = typeof import("bun:ffi");

/** The symbol table in bun:ffi's shape: parameters -> args, result -> returns. */
type BunTable = {
  [K in keyof SymbolTable]: {
    args: SymbolTable[K]["parameters"];
    returns: SymbolTable[K]["result"];
  };
};

const BUN_FFI_SPECIFIER: string = "bun:ffi";
const ffi: BunFfi = await import(BUN_FFI_SPECIFIER);

/** The native type names bun:ffi understands, mapped from the table's. */
const BUN_TYPES: Record<string, string> = {
  i32: "i32",
  u32: "u32",
  f64: "f64",
  buffer: "buffer",
  function: "function",
  void: "void",
};

function bunType(t: string, symbol: string): string {
  const mapped = BUN_TYPES[t];
  // Fail at load, not at the first call, if the table grows a type we do
  // not know how to pass.
  if (mapped === undefined) {
    throw new TypeError(`Cannot bind "${symbol}": no bun:ffi type for "${t}"`);
  }
  return mapped;
}

/** Translate the shared table for bun:ffi, in this one place. */
function translate(table: SymbolTable): BunTable {
  const out: Record<string, { args: string[]; returns: string }> = {};
  for (const [name, def] of Object.entries(table)) {
    out[name] = {
      args: def.parameters.map((t) => bunType(t, name)),
      returns: bunType(def.result, name),
    };
  }
  return out as unknown as BunTable;
}

function bunWaker(engine: EngineWakeCalls, onWake: () => void): Waker {
  // A thread-safe JSCallback runs later on the JS thread and its return
  // value is ignored: it is used only as a wake-up. The C side calls it once
  // per empty -> non-empty transition of the queue, re-armed by the drain
  // that empties it (onWake drains).
  const cb = new ffi.JSCallback(onWake, {
    args: [],
    returns: "void",
    threadsafe: true,
  });
  engine.setNotify(cb.ptr);
  // The callback does not keep the event loop alive; a timer does, while
  // anything native is open.
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  return {
    ref() {
      keepAlive ??= setInterval(() => {}, 1 << 30);
    },
    unref() {
      if (keepAlive !== undefined) clearInterval(keepAlive);
      keepAlive = undefined;
    },
    close() {
      // The engine has stopped posting (see Waker.close), so nothing calls
      // the callback any more; bun:ffi cannot pass NULL to unregister it.
      this.unref();
      // A wake-up already queued on the JS thread may still be pending:
      // free the callback only after it had its turn.
      setTimeout(() => cb.close(), 0);
    },
  };
}

/** Bun: FFI through bun:ffi. */
export const bunRuntime: Runtime = {
  name: "bun",
  version: process.versions.bun ?? "unknown",
  ffi: true,
  libc: processLibc(),
  granted: () => true,
  net: bunNet,
  dlopen(path: string, table: SymbolTable): NativeLibrary {
    const lib = ffi.dlopen(path, translate(table));
    const symbols: NativeSymbols = lib.symbols;
    const lend = (address: number, length: number) =>
      ffi.toArrayBuffer(address as import("bun:ffi").Pointer, 0, length) as ArrayBuffer;
    return {
      symbols,
      watch: (engine, onWake) => bunWaker(engine, onWake),
      lend,
      copy: (address, length) => {
        // Memory left uninitialized, as every byte is written at once: a
        // slice() of the lent bytes or a new Uint8Array costs Bun about a
        // fifth more per 256 KiB batch. Slow means not from Buffer's
        // shared pool: the ArrayBuffer is the copy's alone.
        const own = Buffer.allocUnsafeSlow(length);
        const out = own.byteOffset === 0 && own.buffer.byteLength === length
          ? new Uint8Array(own.buffer, 0, length)
          : new Uint8Array(length);
        out.set(new Uint8Array(lend(address, length)));
        return out;
      },
      // bun:ffi's deallocator form (its types do not declare it): the
      // fourth argument is the context passed back, which may not be 0
      give: (address, length, deallocator) =>
        (ffi.toArrayBuffer as unknown as (
          ptr: number,
          byteOffset: number,
          byteLength: number,
          context: number,
          deallocator: number,
        ) => ArrayBuffer)(address, 0, length, address, deallocator),
      close: () => lib.close(),
    };
  },
};
