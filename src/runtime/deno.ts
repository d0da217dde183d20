/**
 * The Deno adapter.
 *
 * @module
 */
import type { NativeSymbols, SymbolTable } from "../native/symbols.ts";
import { FdWatch } from "./fd_watch.ts";
import { nodeNetWith } from "./node_net.ts";
import { withDenoTls } from "./deno_tls.ts";
import type { Access, EngineWakeCalls, NativeLibrary, Runtime, Waker } from "./types.ts";

function denoWaker(engine: EngineWakeCalls, onWake: () => void): Waker {
  let wanted = false;
  let looping = false;
  let closed = false;
  // One pending nonblocking wait at a time: it keeps the process alive,
  // resolves when the queue is non-empty (or on rk_engine_wake), and we
  // drain synchronously before waiting again.
  const loop = async () => {
    looping = true;
    try {
      while (wanted && !closed) {
        await engine.wait(-1); // a nonblocking symbol: a Promise
        if (closed) break;
        onWake();
      }
    } finally {
      looping = false;
    }
  };
  return {
    ref() {
      if (closed) return;
      wanted = true;
      if (!looping) void loop();
    },
    unref() {
      if (!wanted) return;
      wanted = false;
      if (looping) engine.wake();
    },
    close() {
      closed = true;
      wanted = false;
    },
  };
}

/** Deno: FFI through Deno.dlopen. */
export const denoRuntime: Runtime = {
  name: "deno",
  version: Deno.version.deno,
  ffi: true,
  // the target Deno was built for: a glibc Deno needs the glibc library
  // even on a musl system with a glibc compatibility layer
  libc: Deno.build.os !== "linux"
    ? undefined
    : Deno.build.target.endsWith("-musl")
    ? "musl"
    : Deno.build.target.endsWith("-gnu")
    ? "glibc"
    : undefined,
  granted(access: Access): boolean {
    return Deno.permissions.querySync(access).state === "granted";
  },
  net: withDenoTls(nodeNetWith({ watch: new FdWatch() })),
  dlopen(path: string, table: SymbolTable): NativeLibrary {
    const lib = Deno.dlopen(path, table);
    // Deno infers the bound types from the table itself; assigning them to
    // the shared NativeSymbols type checks that both views agree.
    const symbols: NativeSymbols = lib.symbols;
    const lend = (address: number, length: number) =>
      Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(BigInt(address))!, length);
    return {
      symbols,
      watch: (engine, onWake) => denoWaker(engine, onWake),
      lend,
      copy: (address, length) => {
        // copied straight from the address: an ArrayBuffer over the batch
        // to slice() from counts against V8's external memory as much as
        // the copy, and with it V8 ran nine times as many full collections
        const out = new Uint8Array(length);
        Deno.UnsafePointerView.copyInto(Deno.UnsafePointer.create(BigInt(address))!, out);
        return out;
      },
      close: () => lib.close(),
    };
  },
};
