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
 * Who is connecting, as a route function sees it: the same object for
 * every call about one connection (a WeakMap keyed by it keeps what a route
 * knows of a connection, and lets it go with the connection).
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

/**
 * What a route is told of connection `c` (with `original` when it sent a
 * PROXY header). Made once per connection, so that every call of the route
 * for one connection gets the same object (a router may keep what it knows
 * of a connection in a WeakMap keyed by it, gone with the connection).
 */
export function routeConnection(
  c: { id: number; remote?: InetEndpoint; local?: InetEndpoint },
  original: OriginalInfo | undefined,
): RouteConnection {
  const conn: RouteConnection = { id: c.id };
  if (c.remote !== undefined) conn.remote = c.remote;
  if (c.local !== undefined) conn.local = c.local;
  if (original?.header !== undefined) conn.original = original;
  return conn;
}

/** A route function's failure, told apart from a result that failed the check. */
export class RouteFailure {
  /** `what` failed ("bad route" or "the route function failed") with `error`. */
  constructor(readonly what: string, readonly error: unknown) {}
}

/**
 * Ask `route` about the bytes after the header (`consume` of them) and check
 * its answer: at once when the route answers at once (no promise turn
 * between a synchronous route and its decision), else when its promise or
 * other thenable settles (its `then` is read once, as `await` does).
 *
 * @returns The decision, or the failure (a throw, a rejection, a bad result).
 */
export function askRoute(
  route: RouteFunction,
  u: HeldUpdate,
  consume: number,
  conn: RouteConnection,
): RouteDecision | RouteFailure | Promise<RouteDecision | RouteFailure> {
  let result: unknown;
  let then: unknown;
  try {
    // (no view when there is no header to skip: a view costs Bun dearly)
    result = route(consume === 0 ? u.data : u.data.subarray(consume), conn);
    if ((typeof result === "object" && result !== null) || typeof result === "function") {
      then = (result as { then?: unknown }).then;
    }
  } catch (e) {
    return failure(e);
  }
  if (typeof then !== "function") return checked(result);
  const thenable = result;
  return new Promise<unknown>((resolve, reject) =>
    (then as (ok: (v: unknown) => void, no: (e: unknown) => void) => void).call(
      thenable,
      resolve,
      reject,
    )
  ).then(checked, failure);
}

/** The decision a result stands for, or why it is none. */
function checked(result: unknown): RouteDecision | RouteFailure {
  try {
    return checkRouteResult(result);
  } catch (e) {
    return failure(e);
  }
}

function failure(e: unknown): RouteFailure {
  const what = e instanceof TypeError && e.name === "RouteResultError"
    ? "bad route"
    : "the route function failed";
  return new RouteFailure(what, e);
}
