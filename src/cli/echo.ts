/**
 * `relaykit echo`: an echo server that prints each connection's original
 * addresses from its PROXY protocol header, then echoes what follows.
 *
 * @module
 */
import { HEADER_TIMEOUT_MS } from "../proxy/accept_proxy.ts";
import { sdNotify } from "../config/systemd.ts";
import { concatBytes } from "../bytes.ts";
import { formatEndpoint } from "../forward/types.ts";
import { type ParseMode, parseProxyHeader } from "../protocol/proxy_protocol.ts";
import { runtime } from "../runtime/detect.ts";
import { oneOf } from "../settings.ts";
import { describeHeader, LISTEN, LOG_OPTIONS, loggerOf, onStop } from "./common.ts";
import { type Command, fromSetting } from "./options.ts";

const MODE = fromSetting(
  "--accept-proxy",
  oneOf(["detect", "v1", "v2", "none"] as const),
  "which PROXY headers to read (default none)",
);

/** The command. */
export const echo: Command = {
  name: "echo",
  summary: "an echo server that prints the PROXY header of each connection",
  usage: "--listen HOST:PORT [--accept-proxy detect|v1|v2|none]",
  about: "Prints each connection's original addresses from its PROXY protocol header (v1 or " +
    "v2, with TLVs), then echoes what follows the header.",
  options: [LISTEN, MODE, ...LOG_OPTIONS],
  async run(a) {
    const log = loggerOf(a);
    const at = a.need(LISTEN);
    const mode = a.get(MODE) ?? "none";
    let n = 0;
    const listener = await runtime.net.listen(at, { backlog: 511, reusePort: false }, (conn) => {
      const id = ++n;
      const from = conn.remote ? formatEndpoint(conn.remote) : "unix";
      let pending: Uint8Array | undefined = mode === "none" ? undefined : new Uint8Array(0);
      if (mode === "none") log.info(`#${id} from ${from}`);
      // a header that does not come whole in time closes the connection,
      // as a listener's accept_proxy does
      const headerTimer = pending === undefined ? undefined : setTimeout(() => {
        log.info(
          `#${id} from ${from}: no complete PROXY header in ${HEADER_TIMEOUT_MS} ms; closing`,
        );
        conn.destroy(false);
      }, HEADER_TIMEOUT_MS);
      const send = (b: Uint8Array) => {
        if (b.length > 0 && !conn.write(b)) conn.pause();
      };
      conn.start({
        data(chunk) {
          if (pending === undefined) return send(chunk);
          const buf = concatBytes([pending, chunk]);
          let r: ReturnType<typeof parseProxyHeader>;
          try {
            r = parseProxyHeader(buf, mode as ParseMode);
          } catch (err) {
            log.info(`#${id} from ${from}: ${(err as Error).message}; closing`);
            clearTimeout(headerTimer);
            conn.destroy(false);
            return;
          }
          if (r.kind === "need") {
            pending = buf;
            return;
          }
          pending = undefined;
          clearTimeout(headerTimer);
          if (r.kind === "none") {
            log.info(`#${id} from ${from}: no PROXY header`);
            return send(buf);
          }
          log.info(`#${id} from ${from}: ${describeHeader(r.header)}`);
          send(buf.subarray(r.length)); // only what follows the header
        },
        end: () => conn.end(),
        drain: () => conn.resume(),
        close: () => clearTimeout(headerTimer),
      });
    });
    log.reopenOn(["SIGUSR2", "SIGHUP"]);
    onStop(() => {
      listener.close();
      return Promise.resolve();
    }, log);
    await new Promise((r) => setTimeout(r, 0)); // handlers are in before the line below
    log.info(`echo on ${formatEndpoint(listener.address)} (PROXY headers: ${mode})`);
    sdNotify("READY=1", (line) => log.error(line));
  },
};
