/**
 * Data hooks: a function sees each chunk of one direction and says what to
 * send on instead. Both engines run hooks through here, so a hook behaves
 * the same on either.
 *
 * @module
 */
import { RelaykitError } from "../errors.ts";
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
 * longer or empty (drop), or nothing to pass the chunk on unchanged. May be
 * async: the direction waits (its source is not read) until it settles, so
 * order is kept and memory stays bounded. A hook that throws or rejects
 * closes the connection.
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
}

/**
 * Run `hook` on `chunk` and settle with the bytes to send, or with a
 * RelaykitError (code "RK_EHOOK", the hook's error as cause).
 */
export function runHook(
  hook: DataHook,
  chunk: Uint8Array,
  ctx: HookContext,
): Promise<Uint8Array> {
  const fail = (err: unknown) =>
    Promise.reject(
      new RelaykitError(
        `Hook ${ctx.direction} of connection ${ctx.id} failed: ${
          err instanceof Error ? err.message : String(err)
        }`,
        "RK_EHOOK",
        { cause: err, connectionId: ctx.id },
      ),
    );
  const check = (out: Uint8Array | undefined | void): Uint8Array => {
    if (out === undefined) return chunk;
    if (!(out instanceof Uint8Array)) {
      throw new TypeError(`a hook must return a Uint8Array or nothing, not ${typeof out}`);
    }
    return out;
  };
  try {
    const out = hook(chunk, ctx);
    if (out instanceof Promise) return out.then(check).catch(fail);
    return Promise.resolve(check(out));
  } catch (err) {
    return fail(err);
  }
}
