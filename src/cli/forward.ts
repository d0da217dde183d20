/**
 * `relaykit forward`: one listener, every connection to one target.
 *
 * @module
 */
import { formatEndpoint } from "../forward/types.ts";
import type { TcpProxyOptions } from "../proxy/tcp_proxy.ts";
import { ADMIN, LISTEN, loggerOf, PROXY_OPTIONS, proxyOptions, runProxy } from "./common.ts";
import { type Command, endpoint } from "./options.ts";

const TO = endpoint({
  flag: "--to",
  value: "ADDR",
  help: "where every connection goes (same forms as --listen)",
  config: "backends[].host, port",
});

/** The command. */
export const forward: Command = {
  name: "forward",
  summary: "forward one listener to one target",
  usage: "--listen HOST:PORT --to HOST:PORT [options]",
  about: "Every connection to --listen is relayed to --to. SIGINT or SIGTERM closes the " +
    "listener and every connection.",
  options: [...PROXY_OPTIONS.slice(0, 1), TO, ...PROXY_OPTIONS.slice(1)],
  async run(a) {
    const log = loggerOf(a);
    const listen = a.need(LISTEN);
    const target = a.need(TO);
    const options: TcpProxyOptions = { listen, target };
    const threads = proxyOptions(a, options);
    await runProxy(
      log,
      options,
      threads,
      `forwarding % -> ${formatEndpoint(target)}`,
      false,
      a.get(ADMIN),
    );
  },
};
