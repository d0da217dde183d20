/**
 * A TcpProxy with a data hook, for the hook rows of scripts/bench.ts:
 *
 *   deno run -A scripts/bench/hook_proxy.ts LISTEN_PORT TARGET_PORT ENGINE HOOK
 *   bun scripts/bench/hook_proxy.ts LISTEN_PORT TARGET_PORT ENGINE HOOK
 *
 * ENGINE is native (one worker thread, as the no-hook native rows) or
 * stream. HOOK is one of
 *   none     no hook (the reference)
 *   pass     a pass-through hook on both directions (returns nothing)
 *   pass-lent the same with lend: true (chunks lent, not copied, on the
 *            native engine)
 *   rewrite  NosyProxy's hooks (libasyncproxy's example): what the client
 *            sends is uppercased, what the target answers is reversed, and
 *            each chunk loses its last byte - a new, shorter buffer per
 *            chunk. The first 64 KiB of each direction of a connection pass
 *            unchanged, so that iperf3's control exchange (cookie, JSON
 *            parameters and results) stays intact while its data
 *            connection is rewritten.
 *
 * @module
 */
import process from "node:process";
import { type DataHook, type DataHooks, NativeEngine, TcpProxy } from "../../mod.ts";

const [listen, target, engine, mode] = process.argv.slice(2);
if (
  listen === undefined || target === undefined ||
  (engine !== "native" && engine !== "stream") ||
  (mode !== "none" && mode !== "pass" && mode !== "pass-lent" && mode !== "rewrite")
) {
  console.error(
    "usage: hook_proxy.ts LISTEN_PORT TARGET_PORT native|stream none|pass|pass-lent|rewrite",
  );
  process.exit(2);
}

/** Bytes of each direction of a connection left to pass unchanged. */
const INTACT = 64 * 1024;

/** Pass the first INTACT bytes of a direction, then rewrite with `f`. */
function afterIntact(f: (chunk: Uint8Array) => Uint8Array): DataHook {
  const seen = new Map<number, number>();
  return (chunk, ctx) => {
    const before = seen.get(ctx.id) ?? 0;
    if (before >= INTACT) return f(chunk);
    seen.set(ctx.id, before + chunk.length);
    return undefined;
  };
}

const A = 0x61, Z = 0x7a;
const hooks: DataHooks = mode === "pass"
  ? { aToB: () => {}, bToA: () => {} }
  : mode === "pass-lent"
  ? { aToB: () => {}, bToA: () => {}, lend: true }
  : mode === "rewrite"
  ? {
    // in2out: uppercase, one byte shorter
    aToB: afterIntact((chunk) => {
      const out = new Uint8Array(chunk.length - 1);
      for (let i = 0; i < out.length; i++) {
        const c = chunk[i]!;
        out[i] = c >= A && c <= Z ? c - 32 : c;
      }
      return out;
    }),
    // out2in: reversed, one byte shorter
    bToA: afterIntact((chunk) => chunk.slice(0, chunk.length - 1).reverse()),
  }
  : {};

const proxy = await TcpProxy.listen({
  listen: { host: "127.0.0.1", port: Number(listen) },
  target: { host: "127.0.0.1", port: Number(target) },
  engine,
  hooks,
  ...(engine === "native" ? { nativeEngine: new NativeEngine({ threads: 1 }) } : {}),
});
const stop = () => void proxy.close().then(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
