/**
 * The route phase of a connection: the route function, asked with what the
 * client sent after its PROXY header, and its result checked into a
 * decision (src/decision.ts).
 *
 * @module
 */
import { checkRouteResult, type RouteDecision, type RouteResult } from "../decision.ts";
import type { HeldUpdate, InetEndpoint, OriginalInfo } from "../forward/types.ts";

/**
 * Who is connecting, as a route function sees it.
 *
 * @example
 * ```ts
 * import { type RouteConnection, type RouteFunction } from "@relaykit/relaykit";
 * const byClient: RouteFunction = (_data, conn: RouteConnection) =>
 *   ({ remote: conn.remote?.host.startsWith("10.") ? "127.0.0.1:8001" : "127.0.0.1:8002" });
 * console.log(typeof byClient);
 * ```
 */
export interface RouteConnection {
  /** Connection id. */
  id: number;
  /** The peer's address (absent for Unix sockets). */
  remote?: InetEndpoint;
  /** The address it connected to. */
  local?: InetEndpoint;
  /** Who it really is, when it sent a PROXY header (acceptProxy). */
  original?: OriginalInfo;
}

/**
 * Sees the bytes a client sent so far (none at first, for protocols where
 * the server speaks first) and returns where the connection goes, or
 * `undefined` to wait for more. May be async.
 *
 * @example
 * ```ts
 * import { type RouteFunction, TcpProxy } from "@relaykit/relaykit";
 * const route: RouteFunction = (data) =>
 *   data.length < 4 ? undefined : { remote: "127.0.0.1:9", data: data.subarray(4) };
 * const proxy = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 0 }, route });
 * await proxy.close();
 * ```
 */
export type RouteFunction = (
  data: Uint8Array,
  conn: RouteConnection,
) => RouteResult | undefined | null | Promise<RouteResult | undefined | null>;

/** A route function's failure, told apart from a result that failed the check. */
export class RouteFailure {
  /** `what` failed ("bad route" or "the route function failed") with `error`. */
  constructor(readonly what: string, readonly error: unknown) {}
}

/**
 * Ask `route` about the bytes after the header (`consume` of them) and check
 * its answer.
 *
 * @returns The decision, or the failure (a throw, a rejection, a bad result).
 */
export async function askRoute(
  route: RouteFunction,
  u: HeldUpdate,
  consume: number,
  original: OriginalInfo | undefined,
): Promise<RouteDecision | RouteFailure> {
  const conn: RouteConnection = { id: u.conn.id };
  if (u.conn.remote !== undefined) conn.remote = u.conn.remote;
  if (u.conn.local !== undefined) conn.local = u.conn.local;
  if (original?.header !== undefined) conn.original = original;
  try {
    return checkRouteResult(await route(u.data.subarray(consume), conn));
  } catch (e) {
    const what = e instanceof TypeError && e.name === "RouteResultError"
      ? "bad route"
      : "the route function failed";
    return new RouteFailure(what, e);
  }
}
