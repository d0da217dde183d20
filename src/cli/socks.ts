/**
 * `relaykit socks` and `relaykit http-connect`: proxies closed by default,
 * open to the destinations their --allow rules name.
 *
 * @module
 */
import { formatEndpoint } from "../forward/types.ts";
import { httpConnectRouter, type RouterOptions, socksRouter } from "../proxy/socks.ts";
import type { TcpProxyOptions } from "../proxy/tcp_proxy.ts";
import { ADMIN, LISTEN, loggerOf, PROXY_OPTIONS, proxyOptions, rules, runProxy } from "./common.ts";
import { type Command, type Opt, opt, UsageError } from "./options.ts";

const RULES_HELP = "RULES are comma-separated DEST[:PORTS] items: DEST a CIDR " +
  "(10.0.0.0/8, [::1]/128), a name pattern (*.example.com) or * for any; PORTS like 443 or " +
  "8000-8999. Names are resolved before the check.";

/** Who may go where (socks, http-connect, tunnel server). */
export const ALLOW: Opt<import("../proxy/address_policy.ts").AccessRule[]> = rules(
  "--allow",
  "destinations clients may reach (required: closed without it)",
  "listeners[].socks.allow",
);
/** Where nobody may go. */
export const DENY: Opt<import("../proxy/address_policy.ts").AccessRule[]> = rules(
  "--deny",
  "destinations refused even when allowed",
  "listeners[].socks.deny",
);
/** `--users U:P,...` (the config key it corresponds to differs per command). */
export function usersOption(config: string, help: string): Opt<Record<string, string>> {
  return opt({
    flag: "--users",
    value: "U:P,...",
    help,
    config,
    parse(text): Record<string, string> {
      // no prototype: a user named "__proto__" is a user, not a lost key
      const table = Object.create(null) as Record<string, string>;
      for (const pair of text.split(",")) {
        const colon = pair.indexOf(":");
        if (colon <= 0) throw new UsageError(`--users: "${pair}" is not USER:PASSWORD`);
        table[pair.slice(0, colon)] = pair.slice(colon + 1);
      }
      return table;
    },
  });
}
const USERS = usersOption(
  "listeners[].socks.users",
  "require authentication (SOCKS5 username/password; HTTP Basic)",
);

function routerCommand(kind: "socks" | "http-connect"): Command {
  return {
    name: kind,
    summary: kind === "socks"
      ? "a SOCKS4, 4a and 5 proxy, closed by default"
      : "an HTTP CONNECT proxy, closed by default",
    usage: "--listen HOST:PORT --allow RULES [--deny RULES] [--users U:P,...] [options]",
    about: `A destination must match an --allow rule and no --deny rule. ${RULES_HELP} ` +
      "Refusals are logged as warnings.",
    options: [...PROXY_OPTIONS, ALLOW, DENY, USERS],
    async run(a) {
      const log = loggerOf(a);
      const listen = a.need(LISTEN);
      const allow = a.get(ALLOW);
      if (allow === undefined) {
        throw new UsageError(
          "--allow is required: the proxy is closed to every destination without it",
        );
      }
      const opts: RouterOptions = { allow };
      const deny = a.get(DENY);
      if (deny !== undefined) opts.deny = deny;
      const users = a.get(USERS);
      if (users !== undefined) opts.users = users;
      opts.onDenied = (what, conn) => {
        const from = conn.remote ? formatEndpoint(conn.remote) : "unix";
        log.warn(`#${conn.id} from ${from} refused: ${what}`, "refused");
      };
      const options: TcpProxyOptions = {
        listen,
        route: kind === "socks" ? socksRouter(opts) : httpConnectRouter(opts),
      };
      const threads = proxyOptions(a, options);
      await runProxy(log, options, threads, `${kind} proxy on %`, false, a.get(ADMIN));
    },
  };
}

/** `relaykit socks`. */
export const socks: Command = routerCommand("socks");
/** `relaykit http-connect`. */
export const httpConnect: Command = routerCommand("http-connect");
