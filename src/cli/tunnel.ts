/**
 * `relaykit tunnel server …` and `relaykit tunnel client …`: many
 * connections over one link between two relaykit instances.
 *
 * @module
 */
import { plural } from "../config/plural.ts";
import { readFileSync } from "node:fs";
import process from "node:process";
import { fileErrorReason } from "../errors.ts";
import { type Endpoint, formatEndpoint, type TlsClientOptions } from "../forward/types.ts";
import { parseEndpoint } from "../types.ts";
import * as settings from "../settings.ts";
import { formatDestination, parseDestination } from "../tunnel/destination.ts";
import {
  TunnelClient,
  type TunnelClientOptions,
  type TunnelEntryListener,
  type TunnelListener,
} from "../tunnel/client.ts";
import { TunnelServer, type TunnelServerOptions } from "../tunnel/server.ts";
import { LISTEN, LOG_OPTIONS, loggerOf, onStop } from "./common.ts";
import {
  type Args,
  type Command,
  endpoint,
  flag,
  fromSetting,
  opt,
  parseAddress,
  text,
  UsageError,
} from "./options.ts";
import { ALLOW, DENY, usersOption } from "./socks.ts";

function readText(path: string, flagName: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`${flagName}: cannot read ${path}: ${fileErrorReason(err, "read")}`);
  }
}

/** A RangeError of the tunnel's options is a command-line mistake. */
async function usageOnRange<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(err.message);
    throw err;
  }
}

const SECRET_FILE = text({
  flag: "--secret-file",
  value: "FILE",
  help: "the shared secret (default: RELAYKIT_TUNNEL_SECRET), proven with HMAC-SHA256 both " +
    "ways and never sent",
  config: "tunnel_servers[].secret_file, tunnel_clients[].secret_file",
});
const KEEPALIVE = fromSetting(
  "--keepalive",
  settings.millis,
  "ping the link every MS (default 10000; dead after 3 missed)",
  "tunnel_*[].keepalive",
);

function secretOf(a: Args): string | undefined {
  const file = a.get(SECRET_FILE);
  const secret = file !== undefined
    ? readText(file, "--secret-file").trim()
    : process.env.RELAYKIT_TUNNEL_SECRET;
  if (secret !== undefined && secret === "") throw new UsageError("the shared secret is empty");
  return secret;
}

function keepalive(a: Args): { keepaliveInterval?: number } {
  const k = a.get(KEEPALIVE);
  return k === undefined ? {} : { keepaliveInterval: k };
}

const ROUTE = opt({
  flag: "--route",
  value: "NAME=HOST:PORT",
  help: "a destination clients may name",
  config: "tunnel_servers[].routes",
  repeat: true,
  parse(r): [string, Endpoint] {
    const eq = r.indexOf("=");
    if (eq <= 0) throw new UsageError(`--route: "${r}" is not NAME=HOST:PORT`);
    const name = r.slice(0, eq);
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
      throw new UsageError(`--route: "${name}" is not a NAME (letters, digits, _ . -)`);
    }
    return [name, parseEndpoint(r.slice(eq + 1), "--route")];
  },
});
const TLS_CERT = text({
  flag: "--tls-cert",
  value: "FILE",
  help: "serve the link over TLS with this certificate (with --tls-key)",
  config: "tunnel_servers[].tls.cert",
});
const TLS_KEY = text({
  flag: "--tls-key",
  value: "FILE",
  help: "the certificate's key",
  config: "tunnel_servers[].tls.key",
});
const CONNECT_TIMEOUT = fromSetting(
  "--connect-timeout",
  settings.millis,
  "give up connecting to a destination after MS",
  "tunnel_servers[].connect_timeout",
);
const WINDOW = fromSetting(
  "--window",
  settings.integer(16 * 1024, 0x7fffffff, "BYTES"),
  "flow-control window per stream",
  "tunnel_servers[].window",
);

/** `relaykit tunnel server`. */
export const tunnelServer: Command = {
  name: "tunnel server",
  summary: "the far end of a tunnel: opens the destinations clients ask for",
  usage: "--listen HOST:PORT [--allow RULES] [--route NAME=HOST:PORT]... [options]",
  about: "Clients name a destination HOST:PORT (it must match --allow and no --deny; closed " +
    "by default) or the NAME of a --route. A server open to everyone (--allow '*') without a " +
    "secret or TLS is warned about.",
  options: [
    LISTEN,
    ALLOW,
    DENY,
    ROUTE,
    SECRET_FILE,
    TLS_CERT,
    TLS_KEY,
    KEEPALIVE,
    CONNECT_TIMEOUT,
    WINDOW,
    ...LOG_OPTIONS,
  ],
  async run(a) {
    const log = loggerOf(a);
    const listen = a.need(LISTEN);
    const options: TunnelServerOptions = { listen, ...keepalive(a) };
    const allow = a.get(ALLOW);
    const deny = a.get(DENY);
    if (allow !== undefined) options.allow = allow;
    if (deny !== undefined) options.deny = deny;
    // own keys only: a route named "constructor" or "__proto__" is a route
    const routes = new Map(a.all(ROUTE));
    if (routes.size > 0) options.routes = routes;
    if (allow === undefined && options.routes === undefined) {
      throw new UsageError(
        "--allow or --route is required: the tunnel server is closed to every destination without them",
      );
    }
    const cert = a.get(TLS_CERT), key = a.get(TLS_KEY);
    if ((cert === undefined) !== (key === undefined)) {
      throw new UsageError("--tls-cert and --tls-key go together");
    }
    if (cert !== undefined && key !== undefined) {
      options.tls = { cert: readText(cert, "--tls-cert"), key: readText(key, "--tls-key") };
    }
    const secret = secretOf(a);
    if (secret !== undefined) options.secret = secret;
    const ct = a.get(CONNECT_TIMEOUT);
    if (ct !== undefined) options.connectTimeout = ct;
    const window = a.get(WINDOW);
    if (window !== undefined) options.window = window;
    const srv = await usageOnRange(() => TunnelServer.listen(options));
    srv.on("link", (e) => log.info(`link from ${e.remote} up (version ${e.version})`));
    srv.on("link-close", (e) => {
      const line = `link from ${e.remote} closed: ${e.reason}${
        e.error ? ` (${e.error.message})` : ""
      }`;
      if (e.reason === "link-lost" || e.reason === "closed") log.info(line);
      else log.warn(line, `link-close: ${e.reason}`);
    });
    srv.on("stream-end", (e) => {
      const line = `${e.remote} #${e.id} to ${formatDestination(e.destination)}: ${e.reason}${
        e.error ? ` (${e.error.message})` : ""
      }, ${e.bytesIn} bytes up, ${e.bytesOut} down`;
      if (e.error !== undefined && e.reason !== "link-lost") log.info(line);
      else log.debug(line);
    });
    log.reopenOn(["SIGUSR2", "SIGHUP"]);
    onStop(async (sig) => {
      log.info(`${sig}: closing ${plural(srv.links, "link")}`);
      await srv.close();
    }, log);
    await new Promise((r) => setTimeout(r, 0));
    const extras = [
      srv.engineReason === undefined
        ? `${srv.engine} engine`
        : `stream engine: ${srv.engineReason}`,
      options.tls ? "TLS" : "",
      secret !== undefined ? "shared secret" : "",
      options.routes ? `routes: ${[...routes.keys()].join(", ")}` : "",
    ].filter((x) => x !== "");
    log.info(
      `tunnel server on ${formatEndpoint(srv.address)}${
        extras.length ? ` (${extras.join(", ")})` : ""
      }`,
    );
    if (
      (allow ?? []).some((r) => r.cidr === undefined && r.host === undefined) &&
      secret === undefined && options.tls === undefined
    ) {
      log.warn(
        "this tunnel server is open: --allow lets any client reach any host, with no shared " +
          "secret and no TLS (set --secret-file or RELAYKIT_TUNNEL_SECRET, or narrow --allow)",
      );
    }
  },
};

const LINK = endpoint({
  flag: "--link",
  help: "the tunnel server",
  config: "tunnel_clients[].link",
});
const CLIENT_LISTEN = opt({
  flag: "--listen",
  value: "HOST:PORT=DEST",
  help: "a listener whose connections go through the link to DEST (HOST:PORT, or a server " +
    "--route NAME)",
  config: "tunnel_clients[].listeners",
  repeat: true,
  parse(l): TunnelListener {
    const eq = l.indexOf("=");
    if (eq <= 0) throw new UsageError(`--listen: "${l}" is not HOST:PORT=DEST`);
    return {
      listen: parseEndpoint(l.slice(0, eq), "--listen") as TunnelListener["listen"],
      to: parseDestination(l.slice(eq + 1), "--listen"),
    };
  },
});
/** `--socks` and `--http-connect`: HOST:PORT of an entry listener. */
function entryOption(f: "--socks" | "--http-connect", help: string, config: string) {
  return opt({
    flag: f,
    value: "HOST:PORT",
    help,
    config,
    repeat: true,
    parse(text, flagName): { host: string; port: number } {
      const e = parseAddress(text, flagName);
      if ("path" in e) throw new UsageError(`${flagName}: "${text}" is not HOST:PORT`);
      return e;
    },
  });
}
const SOCKS = entryOption(
  "--socks",
  "a SOCKS4, 4a and 5 listener: each connection names its destination, which the server's " +
    "--allow/--deny decide",
  "tunnel_clients[].socks",
);
const HTTP_CONNECT = entryOption(
  "--http-connect",
  "an HTTP CONNECT listener: each CONNECT names its destination, which the server's " +
    "--allow/--deny decide",
  "tunnel_clients[].http_connect",
);
const ENTRY_USERS = usersOption(
  "tunnel_clients[].socks[].users, tunnel_clients[].http_connect[].users",
  "require authentication on the --socks (SOCKS5 username/password) and --http-connect " +
    "(Basic) listeners",
);
const TLS = flag({
  flag: "--tls",
  help: "the link is TLS, verified with the system's CAs",
  config: "tunnel_clients[].tls",
});
const TLS_CA = text({
  flag: "--tls-ca",
  value: "FILE",
  help: "verify the link's TLS with this CA (implies --tls)",
  config: "tunnel_clients[].tls.ca",
});
const TLS_SERVERNAME = text({
  flag: "--tls-servername",
  value: "NAME",
  help: "the name to verify (implies --tls)",
  config: "tunnel_clients[].tls.servername",
});
const RECONNECT_MAX = fromSetting(
  "--reconnect-max",
  settings.integer(100, 0x7fffffff, "MS"),
  "longest wait between reconnects (default 5000)",
  "tunnel_clients[].reconnect_max",
);

/** `relaykit tunnel client`. */
export const tunnelClient: Command = {
  name: "tunnel client",
  summary: "the near end of a tunnel: listeners whose connections go through the link",
  usage: "--link HOST:PORT (--listen HOST:PORT=DEST | --socks HOST:PORT | --http-connect " +
    "HOST:PORT)... [options]",
  about: "Reconnects with backoff while the link is down; a connection that arrives then is " +
    "closed (a warning; SOCKS and HTTP CONNECT clients get a failure reply). A --socks or " +
    "--http-connect client names its destination; the server's rules refuse it (SOCKS5 reply " +
    "0x02, SOCKS4 0x5b, HTTP 403) or its connect fails (SOCKS5 0x03-0x06, HTTP 502, or 504 " +
    "when it timed out).",
  options: [
    LINK,
    CLIENT_LISTEN,
    SOCKS,
    HTTP_CONNECT,
    ENTRY_USERS,
    SECRET_FILE,
    TLS,
    TLS_CA,
    TLS_SERVERNAME,
    KEEPALIVE,
    RECONNECT_MAX,
    ...LOG_OPTIONS,
  ],
  async run(a) {
    const log = loggerOf(a);
    const linkAt = a.need(LINK);
    if ("path" in linkAt) throw new UsageError("--link must be HOST:PORT");
    const listeners = a.all(CLIENT_LISTEN);
    const users = a.get(ENTRY_USERS);
    const entry = (listen: { host: string; port: number }): TunnelEntryListener =>
      users === undefined ? { listen } : { listen, users };
    const socks = a.all(SOCKS).map(entry);
    const httpConnect = a.all(HTTP_CONNECT).map(entry);
    if (listeners.length + socks.length + httpConnect.length === 0) {
      throw new UsageError(
        "--listen HOST:PORT=DEST, --socks HOST:PORT or --http-connect HOST:PORT is required",
      );
    }
    if (users !== undefined && socks.length + httpConnect.length === 0) {
      throw new UsageError("--users goes with --socks or --http-connect");
    }
    const options: TunnelClientOptions = {
      link: linkAt,
      listeners,
      socks,
      httpConnect,
      ...keepalive(a),
    };
    const ca = a.get(TLS_CA);
    const servername = a.get(TLS_SERVERNAME);
    if (a.has(TLS) || ca !== undefined || servername !== undefined) {
      const tls: TlsClientOptions = {};
      if (ca !== undefined) tls.ca = readText(ca, "--tls-ca");
      if (servername !== undefined) tls.servername = servername;
      options.tls = tls;
    }
    const secret = secretOf(a);
    if (secret !== undefined) options.secret = secret;
    const max = a.get(RECONNECT_MAX);
    if (max !== undefined) options.reconnectMaxDelay = max;
    const c = await usageOnRange(() => TunnelClient.start(options));
    c.on("up", (e) => log.info(`link to ${e.remote} up (version ${e.version})`));
    c.on("down", (e) =>
      log.warn(
        `link to ${formatEndpoint(linkAt)} down: ${e.reason}${
          e.error ? ` (${e.error.message})` : ""
        }; retrying in ${e.retryInMs} ms`,
        `down: ${e.reason}`,
      ));
    c.on("stopped", (e) => {
      // a refused secret or version: no retry can cure it
      log.error(
        `link to ${formatEndpoint(linkAt)} refused: ${e.reason} (${e.error.message}); stopping`,
      );
      log.flush();
      process.exitCode = 1;
      // the signal listeners keep the process alive: exit once the output
      // has had a moment to drain (Bun drops what is still buffered at exit)
      setTimeout(() => process.exit(1), 200);
    });
    c.on("refused", (e) =>
      log.warn(
        `${e.listener}: connection from ${e.remote ?? "?"} closed: the link is down`,
        "refused",
      ));
    c.on(
      "entry-refused",
      (e) =>
        log.warn(`${e.listener}: request from ${e.remote ?? "?"} refused: ${e.what}`, "refused"),
    );
    c.on("stream-end", (e) => {
      const line = `${e.listener} #${e.id} to ${formatDestination(e.destination)}: ${e.reason}${
        e.error ? ` (${e.error.message})` : ""
      }, ${e.bytesOut} bytes up, ${e.bytesIn} down`;
      if (e.error !== undefined && e.reason !== "link-lost") log.info(line);
      else log.debug(line);
    });
    log.reopenOn(["SIGUSR2", "SIGHUP"]);
    onStop(async (sig) => {
      log.info(`${sig}: closing ${plural(c.streams, "stream")}`);
      await c.close();
    }, log);
    await new Promise((r) => setTimeout(r, 0));
    const kinds = [
      ...listeners.map((l) => formatDestination(l.to)),
      ...socks.map(() => "SOCKS"),
      ...httpConnect.map(() => "HTTP CONNECT"),
    ];
    const pairs = c.addresses.map((x, i) => `${formatEndpoint(x)} -> ${kinds[i]}`);
    log.info(
      `tunnel client: ${pairs.join(", ")} via ${formatEndpoint(linkAt)} (${
        options.tls ? "TLS, " : ""
      }${
        c.engineReason === undefined ? `${c.engine} engine` : `stream engine: ${c.engineReason}`
      })`,
    );
  },
};

/** `relaykit tunnel`: its two subcommands. */
export const tunnel: Command = {
  name: "tunnel",
  summary: "many connections over one link between two relaykit instances (docs/tunnel.md)",
  usage: "server|client [options]",
  about: "The client's listeners send each connection through the link as a stream; the " +
    "server opens its destination. The shared secret (--secret-file, or " +
    "RELAYKIT_TUNNEL_SECRET) is proven with HMAC-SHA256 both ways and never sent.",
  options: [],
  subcommands: [tunnelServer, tunnelClient],
};
