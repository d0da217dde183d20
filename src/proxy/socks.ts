/**
 * Built-in routers: SOCKS4, SOCKS4a and SOCKS5 (no authentication, or
 * username/password), and HTTP CONNECT (optionally with Basic proxy
 * authentication). They are route functions: once the handshake is done,
 * the bytes move natively like any routed connection.
 *
 * Closed by default: a destination is allowed only by an `allow` rule and
 * no `deny` rule. Rules match the destination's address (CIDR; a name is
 * resolved first, so a name cannot smuggle in a denied address), its name
 * (a pattern such as `*.example.com`) and its port (`443`, `8000-8999`);
 * the address policy (./address_policy.ts) normalises and checks them.
 * A refused request gets the protocol's refusal reply.
 *
 * @module
 */
import { errorFor, type RelaykitError } from "../errors.ts";
import {
  HTTP_CONNECT_ESTABLISHED,
  httpConnectReply,
  parseHttpConnect,
} from "../protocol/http_connect.ts";
import { parseSocks, socksReply, unsentReplies } from "../protocol/socks.ts";
import { Access, type AccessRule, accessTables, addressPort } from "./address_policy.ts";
import type { EngineRouter } from "../forward/types.ts";
import type { RouteConnection, RouteFunction } from "./routing.ts";

/**
 * Who may go where, and who may use the proxy.
 *
 * @example
 * ```ts
 * import { type RouterOptions, socksRouter } from "@relaykit/relaykit";
 * const options: RouterOptions = {
 *   allow: [{ host: "*.example.com", port: 443 }],
 *   users: { alice: "s3cret" },
 *   onDenied: (what, conn) => console.log(conn.id, what),
 * };
 * console.log(typeof socksRouter(options));
 * ```
 */
export interface RouterOptions {
  /** Destinations allowed (none by default: a closed proxy). */
  allow?: readonly AccessRule[];
  /** Destinations refused even if allowed. */
  deny?: readonly AccessRule[];
  /** Username and password pairs; when given, clients must authenticate. */
  users?: Readonly<Record<string, string>>;
  /** Called for each refused request (a log line, an event). */
  onDenied?: (what: string, conn: RouteConnection) => void;
}

/**
 * A SOCKS4/4a/5 router (CONNECT only; other commands get "not supported").
 *
 * @example
 * ```ts
 * import { socksRouter, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 }, // 1080, usually
 *   route: socksRouter({ allow: [{ host: "*.example.com", port: 443 }] }),
 * });
 * await proxy.close();
 * ```
 */
export function socksRouter(options: RouterOptions = {}): RouteFunction {
  const access = new Access(options.allow, options.deny);
  const users = options.users;
  // SOCKS5 replies already sent per connection (method choice, auth), so a
  // client that sends everything at once gets them in front of the last
  // reply instead. Keyed by the connection's object (the same for every
  // call of one connection): an entry goes with its connection, however
  // many handshakes are left unfinished.
  const sent = new WeakMap<RouteConnection, number>();
  // what the native engine sent before it handed a connection over, until
  // the route's first call for it (bounded: the oldest are dropped)
  const handed = new Map<number, number>();
  const route: RouteFunction = async (data, conn) => {
    if (data.length === 0) return undefined;
    const step = parseSocks(data, users);
    let done = sent.get(conn);
    if (done === undefined) {
      done = handed.get(conn.id) ?? 0;
      handed.delete(conn.id);
    }
    if (step.kind === "more") {
      if (step.replies.length <= done) return undefined;
      sent.set(conn, step.replies.length);
      return { send: unsentReplies(step.replies, done) };
    }
    sent.delete(conn);
    if (step.kind === "refuse") {
      if (step.what !== undefined) options.onDenied?.(step.what, conn);
      return {
        close: step.reply === undefined ? true : unsentReplies(step.replies, done, step.reply),
      };
    }
    const { version, destination: d, replies } = step;
    const a = await access.admit(d.host, d.port);
    if ("refused" in a) {
      // every refusal of the address policy, a name that does not resolve
      // included, is "not allowed" here
      options.onDenied?.(a.refused, conn);
      return { close: unsentReplies(replies, done, socksReply(version, "RK_EDENIED")) };
    }
    return {
      remote: addressPort(a.address, d.port),
      reply: unsentReplies(replies, done, socksReply(version, undefined)),
      data: step.rest,
      failReply: (err: RelaykitError) =>
        unsentReplies(replies, done, socksReply(version, err.code)),
    };
  };
  // the native engine tells how many handshake replies it sent before it
  // handed a connection over
  return withAccessRouter(route, "socks", access, options, (id, n) => {
    if (n <= 0) return;
    handed.set(id, n);
    if (handed.size > 10_000) handed.delete(handed.keys().next().value!);
  });
}

/**
 * An HTTP CONNECT router (`CONNECT host:port HTTP/1.1`), with Basic proxy
 * authentication when `users` is given.
 *
 * @example
 * ```ts
 * import { httpConnectRouter, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   route: httpConnectRouter({ allow: [{ host: "*.example.com", port: 443 }], users: { me: "pw" } }),
 * });
 * await proxy.close();
 * ```
 */
export function httpConnectRouter(options: RouterOptions = {}): RouteFunction {
  const access = new Access(options.allow, options.deny);
  const users = options.users;
  const route: RouteFunction = async (data, conn) => {
    const step = parseHttpConnect(data, users);
    if (step.kind === "more") return undefined;
    if (step.kind === "refuse") {
      if (step.what !== undefined) options.onDenied?.(step.what, conn);
      return { close: step.reply };
    }
    const d = step.destination;
    const a = await access.admit(d.host, d.port);
    if ("refused" in a) {
      options.onDenied?.(a.refused, conn); // any refusal of the address policy: 403
      return { close: httpConnectReply("RK_EDENIED") };
    }
    return {
      remote: addressPort(a.address, d.port),
      reply: HTTP_CONNECT_ESTABLISHED,
      data: step.rest,
      failReply: (err: RelaykitError) => httpConnectReply(err.code),
    };
  };
  return withAccessRouter(route, "http-connect", access, options, () => {});
}

/** Where a built-in router keeps what the native engine needs to run it. */
const ENGINE_ROUTER = Symbol("relaykit.engineRouter");

/** `route`, carrying its description for the native engine. */
function withAccessRouter(
  route: RouteFunction,
  kind: EngineRouter["kind"],
  access: Access,
  options: RouterOptions,
  sent: (id: number, n: number) => void,
): RouteFunction {
  const { allow, deny } = accessTables(access);
  return withEngineRouter(route, {
    kind,
    allow,
    deny,
    users: options.users,
    reports: options.onDenied !== undefined,
    sent,
  });
}

/** `route`, carrying `router`: the description the native engine runs instead of it. */
export function withEngineRouter(route: RouteFunction, router: EngineRouter): RouteFunction {
  Object.defineProperty(route, ENGINE_ROUTER, { value: router });
  return route;
}

/**
 * The native engine's description of `route` if it is a built-in router
 * (socksRouter, httpConnectRouter): the engine may then run the handshake
 * and the rules itself, with the same replies and the same decisions.
 */
export function engineRouterOf(route: RouteFunction | undefined): EngineRouter | undefined {
  return (route as { [ENGINE_ROUTER]?: EngineRouter } | undefined)?.[ENGINE_ROUTER];
}

/** An error for a refused request (for logs that want one). */
export function deniedError(what: string, id: number): RelaykitError {
  return errorFor(`Connection ${id}: ${what}`, "RK_EDENIED", { connectionId: id });
}
