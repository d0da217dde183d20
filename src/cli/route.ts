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
    // each connection keeps the module it started with, across reloads
    const byConn = new Map<number, RouteModule>();
    const modOf = (id: number) => byConn.get(id) ?? current;
    const options: TcpProxyOptions = {
      listen,
      route: (data, conn) => {
        let mod = byConn.get(conn.id);
        if (mod === undefined) byConn.set(conn.id, mod = current);
        return mod.route(data, conn);
      },
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
    proxy.on("close", (e) => byConn.delete(e.id));
    let generation = 0;
    // one reload at a time: a slow load cannot finish after a later one and
    // put its older script back; the signals that come during a load make
    // one more load after it (of the script as it is then), not one each
    let loading = false, again = false;
    process.on("SIGHUP", async () => {
      again = true;
      if (loading) return;
      loading = true;
      try {
        while (again) {
          again = false;
          await reload(++generation); // (never rejects: a failed load is logged)
        }
      } finally {
        loading = false;
      }
    });
    const reload = (g: number) =>
      loadRouteModule(script, g).then((mod) => {
        const lost = (["rewriteRequest", "rewriteResponse"] as const).filter((k) =>
          mod[k] !== undefined && current[k] === undefined
        );
        current = mod;
        log.info(`SIGHUP: reloaded ${script} for new connections`);
        if (lost.length > 0) log.warn(`${lost.join(" and ")} take effect only after a restart`);
      }, (err: Error) => {
        log.error(`SIGHUP: ${err.message}; still running the previous ${script}`);
      });
  },
};
