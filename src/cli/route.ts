/**
 * `relaykit route SCRIPT`: a routing module decides where each connection
 * goes; SIGHUP reloads it for new connections.
 *
 * @module
 */
import { ROUTE_EXPECTED } from "../decision.ts";
import process from "node:process";
import { loadRouteModule, type RouteModule } from "../proxy/route_module.ts";
import type { TcpProxyOptions } from "../proxy/tcp_proxy.ts";
import * as settings from "../settings.ts";
import { ADMIN, LISTEN, loggerOf, PROXY_OPTIONS, proxyOptions, runProxy } from "./common.ts";
import { type Command, fromSetting, UsageError } from "./options.ts";

const ROUTE_LIMIT = fromSetting(
  "--route-limit",
  settings.integer(1, 0x7fffffff, "BYTES"),
  "most bytes before the route decides (default 65536)",
);
const ROUTE_TIMEOUT = fromSetting(
  "--route-timeout",
  settings.millis,
  "most time before the route decides (default 10000)",
);

/** The command. */
export const route: Command = {
  name: "route",
  summary: "route each connection with a script",
  usage: "SCRIPT --listen HOST:PORT [options]",
  positional: ["SCRIPT"],
  about: `SCRIPT (TypeScript or JavaScript; .ts on Node needs Node 22.6 or later) exports
route(data, conn), which returns one of ${ROUTE_EXPECTED} (undefined: more
bytes); anything else closes that connection with RK_EROUTE. It may also export
onError(conn, error), rewriteRequest and rewriteResponse.
SIGHUP reloads SCRIPT for new connections; established ones go on.`,
  options: [...PROXY_OPTIONS, ROUTE_LIMIT, ROUTE_TIMEOUT],
  async run(a) {
    const script = a.positional[0]!;
    const log = loggerOf(a);
    const listen = a.need(LISTEN);
    let current: RouteModule;
    try {
      current = await loadRouteModule(script, 0);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    // Each connection keeps the module it started with, across reloads: a
    // reload pins the connections open at that moment to the module they
    // started with (and forgets the pinned ones that ended since). Nothing
    // is kept per connection between reloads, so no connection's end has to
    // cross into JavaScript for this (a close listener would make each one).
    const pinned = new Map<number, RouteModule>();
    const modOf = (id: number) => pinned.get(id) ?? current;
    const options: TcpProxyOptions = {
      listen,
      route: (data, conn) => modOf(conn.id).route(data, conn),
      onError: (conn, err) => modOf(conn.id).onError?.(conn, err),
    };
    // rewrites cost a hooked direction: only when the script has them
    if (current.rewriteRequest !== undefined) {
      options.rewriteRequest = (chunk, ctx) => modOf(ctx.id).rewriteRequest?.(chunk, ctx) ?? chunk;
    }
    if (current.rewriteResponse !== undefined) {
      options.rewriteResponse = (chunk, ctx) =>
        modOf(ctx.id).rewriteResponse?.(chunk, ctx) ?? chunk;
    }
    const limit = a.get(ROUTE_LIMIT);
    const timeout = a.get(ROUTE_TIMEOUT);
    if (limit !== undefined) options.routeLimit = limit;
    if (timeout !== undefined) options.routeTimeout = timeout;
    const threads = proxyOptions(a, options);
    const proxy = await runProxy(
      log,
      options,
      threads,
      `routing % with ${script}`,
      true,
      a.get(ADMIN),
    );
    const pin = () => {
      const snap = proxy.snapshot();
      const open = new Set<number>();
      for (let i = 0; i < snap.size; i++) open.add(snap.id(i));
      for (const id of pinned.keys()) if (!open.has(id)) pinned.delete(id);
      for (const id of open) if (!pinned.has(id)) pinned.set(id, current);
    };
    let generation = 0;
    process.on("SIGHUP", () => {
      loadRouteModule(script, ++generation).then((mod) => {
        const lost = (["rewriteRequest", "rewriteResponse"] as const).filter((k) =>
          mod[k] !== undefined && current[k] === undefined
        );
        pin();
        current = mod;
        log.info(`SIGHUP: reloaded ${script} for new connections`);
        if (lost.length > 0) log.warn(`${lost.join(" and ")} take effect only after a restart`);
      }, (err: Error) => {
        log.error(`SIGHUP: ${err.message}; still running the previous ${script}`);
      });
    });
  },
};
