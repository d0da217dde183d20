/**
 * Data hooks: a function sees each chunk of one direction and says what to
 * send on instead. Both engines run hooks through here, so a hook behaves
 * the same on either.
 *
 * @module
 */
import { plainBytes } from "../bytes.ts";
import { describeValue, RelaykitError } from "../errors.ts";
import type { ConnectionStats, OriginalInfo } from "../types.ts";

/**
 * A direction of a connection: a is the client (or the first fd).
 *
 * @example
 * ```ts
 * import { type Direction } from "@relaykit/relaykit";
 * const both: Direction[] = ["aToB", "bToA"];
 * console.log(both);
 * ```
 */
export type Direction = "aToB" | "bToA";

/**
 * What a hook knows about the chunk in its hands.
 *
 * @example
 * ```ts
 * import { type DataHook, type HookContext } from "@relaykit/relaykit";
 * const log: DataHook = (chunk, ctx: HookContext) => {
 *   console.log(ctx.id, ctx.direction, ctx.remote, ctx.original?.source, chunk.length);
 * };
 * console.log(typeof log);
 * ```
 */
export interface HookContext {
  /** Connection id. */
  readonly id: number;
  /** Which way the chunk goes. */
  readonly direction: Direction;
  /** The client's address (proxies), when known. */
  readonly remote: { host: string; port: number } | undefined;
  /** Live counters of the connection. */
  stats(): ConnectionStats | undefined;
  /** Who the client really was, when its proxy accepts or sends PROXY headers. */
  readonly original?: OriginalInfo;
}

/**
 * Sees a chunk and returns the bytes to send instead: the same, shorter,
 * longer or empty (drop), or nothing to pass the chunk on unchanged. It is
 * called for one chunk of a direction at a time, in order. May be async:
 * the direction's next chunk waits until it settles, and its source is read
 * at most a bounded amount ahead (the native engine: 4 chunks of at most
 * 512 KiB; the stream engine: none), so order is kept and memory stays
 * bounded. A hook that throws or rejects closes the connection.
 *
 * The chunk is the hook's to keep, change or hold on to, unless its hooks
 * ask for lent chunks ({@linkcode DataHooks.lend}). A chunk it passes on
 * (returns, or returns nothing for) is sent from its own memory: change
 * it only before the hook returns (or its promise settles).
 *
 * @example
 * ```ts
 * import { type DataHook } from "@relaykit/relaykit";
 * const upper: DataHook = (chunk) => new TextEncoder().encode(new TextDecoder().decode(chunk).toUpperCase());
 * console.log(new TextDecoder().decode(upper(new TextEncoder().encode("hi"), {} as never) as Uint8Array));
 * ```
 */
export type DataHook = (
  chunk: Uint8Array,
  ctx: HookContext,
) => Uint8Array | undefined | void | Promise<Uint8Array | undefined | void>;

/**
 * Hooks per direction.
 *
 * @example
 * ```ts
 * import { type DataHooks, TcpProxy } from "@relaykit/relaykit";
 * const hooks: DataHooks = { bToA: (chunk, ctx) => void console.log(ctx.id, chunk.length) };
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 *   hooks,
 * });
 * await proxy.close();
 * ```
 */
export interface DataHooks {
  /** Bytes from a (the client) to b (the target). */
  aToB?: DataHook;
  /** Bytes from b to a. */
  bToA?: DataHook;
  /**
   * Lend the hooks their chunks instead of giving them: on the native
   * engine a chunk is then the engine's own memory, without a copy, which
   * the hook may read and change until it returns (or its promise settles)
   * and which reads as empty after that: keep `chunk.slice()` to hold on to
   * bytes. Transferring its buffer (`chunk.buffer.transfer()`,
   * `structuredClone` with `transfer`, `postMessage`) closes the connection
   * with `RK_EHOOK`. For hooks that only read their chunks, or change and
   * return them in place; the stream engine gives chunks either way.
   *
   * @default false: every chunk is the hook's to keep (on the native engine
   * a copy, or on Bun the engine's memory handed over without one)
   */
  lend?: boolean;
}

/** What a hook may return, for messages. */
export const HOOK_EXPECTED = "undefined or a Uint8Array";

/**
 * Run `hook` on `chunk` and settle with the bytes to send, or with a
 * RelaykitError (code "RK_EHOOK", the hook's error as cause): when it
 * throws, rejects, returns anything but a Uint8Array or nothing, or (with
 * `timeout` > 0) has not settled after `timeout` ms. Never throws, and the
 * bytes it settles with are a plain Uint8Array (a Buffer, a subclass or
 * a typed array with odd own properties is read through its internal slots).
 */
export function runHook(
  hook: DataHook,
  chunk: Uint8Array,
  ctx: HookContext,
  timeout = 0,
): Promise<Uint8Array> {
  const out = callHook(hook, chunk, ctx, timeout);
  return out instanceof Promise ? out : Promise.resolve(out);
}

/**
 * {@linkcode runHook}, but the bytes to send come back at once (not in a
 * promise) when the hook returned them without a promise: a synchronous
 * hook costs no promise and no turn of the microtask queue per chunk. A
 * failure, even a synchronous one, is always a rejected promise. Never
 * throws.
 */
export function callHook(
  hook: DataHook,
  chunk: Uint8Array,
  ctx: HookContext,
  timeout = 0,
): Uint8Array | Promise<Uint8Array> {
  const name = () => `Hook ${ctx.direction} of connection ${ctx.id}`;
  const fail = (err: unknown) =>
    Promise.reject(
      err instanceof RelaykitError && err.code === "RK_EHOOK" ? err : new RelaykitError(
        `${name()} failed: ${err instanceof Error ? err.message : describeValue(err)}`,
        "RK_EHOOK",
        { cause: err, connectionId: ctx.id },
      ),
    );
  const check = (out: unknown): Uint8Array => {
    if (out === undefined) return chunk;
    const bytes = plainBytes(out);
    if (bytes === undefined) {
      throw new RelaykitError(
        `${name()} returned ${describeValue(out)}; expected ${HOOK_EXPECTED}`,
        "RK_EHOOK",
        { connectionId: ctx.id },
      );
    }
    return bytes;
  };
  try {
    const out: unknown = hook(chunk, ctx);
    if (!isThenable(out)) return check(out);
    const settled = Promise.resolve(out).then(check);
    if (timeout <= 0) return settled.catch(fail);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new RelaykitError(`${name()} did not settle within ${timeout} ms`, "RK_EHOOK", {
              connectionId: ctx.id,
            }),
          ),
        timeout,
      );
    });
    return Promise.race([settled, late]).catch(fail).finally(() => clearTimeout(timer));
  } catch (err) {
    return fail(err);
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  if (v instanceof Promise) return true;
  return typeof v === "object" && v !== null &&
    typeof (v as { then?: unknown }).then === "function";
}
