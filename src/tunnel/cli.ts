/**
 * `relaykit tunnel server …` and `relaykit tunnel client …`. The flag
 * helpers come from src/cli.ts (passed in, so that this module does not
 * import the command's entry point).
 *
 * @module
 */
import { plural } from "../config/plural.ts";
import { readFileSync } from "node:fs";
import process from "node:process";
import { type Endpoint, formatEndpoint, type TlsClientOptions } from "../forward/types.ts";
import { parseEndpoint } from "../proxy/address.ts";
import type { AccessRule } from "../proxy/socks.ts";
import type { TunnelDestination } from "./frame.ts";
import { TunnelClient, type TunnelClientOptions, type TunnelListener } from "./client.ts";
import { TunnelServer, type TunnelServerOptions } from "./server.ts";

interface Parsed {
  flags: Map<string, string>;
  bools: Set<string>;
  lists: Map<string, string[]>;
}

/** What src/cli.ts lends this command. */
export interface CliHelpers {
  parseFlags(args: string[], valued: string[], bools: string[]): Parsed;
  intFlag(p: Parsed, name: string, min: number): number | undefined;
  endpointFlag(p: Parsed, name: string): Endpoint;
  parseRules(text: string, flag: string): AccessRule[];
  onStop(stop: (signal: string) => Promise<void>): void;
  /** The command's UsageError (printed as one line, exit code 2). */
  usage(message: string): Error;
}

/** A command-line mistake; src/cli.ts prints it and exits with 2. */
class TunnelUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** "NAME" (a route) or "HOST:PORT". */
export function parseDestination(text: string, what: string): TunnelDestination {
  if (/^[A-Za-z0-9_.-]+$/.test(text) && !/^\d+$/.test(text)) return { route: text };
  const e = parseEndpoint(text, what);
  if ("path" in e || e.port === 0) {
    throw new RangeError(`${what}: "${text}" is not HOST:PORT (port 1-65535) or a route NAME`);
  }
  return e;
}

/** The formatted destination. */
export function formatDestination(d: TunnelDestination): string {
  return "route" in d ? `route ${d.route}` : formatEndpoint(d);
}

function readText(path: string, flag: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new TunnelUsageError(`${flag}: cannot read "${path}": ${(err as Error).message}`);
  }
}

function secretOf(p: Parsed): string | undefined {
  const file = p.flags.get("--secret-file");
  const secret = file !== undefined
    ? readText(file, "--secret-file").trim()
    : process.env.RELAYKIT_TUNNEL_SECRET;
  if (secret !== undefined && secret === "") {
    throw new TunnelUsageError("the shared secret is empty");
  }
  return secret;
}

const COMMON = ["--secret-file", "--keepalive"];

/** Run `relaykit tunnel server|client` with `args` (after "tunnel"). */
export async function tunnelCommand(args: string[], h: CliHelpers): Promise<void> {
  const [side, ...rest] = args;
  try {
    if (side === "server") await server(rest, h);
    else if (side === "client") await client(rest, h);
    else throw new TunnelUsageError('tunnel needs "server" or "client" (see --help)');
  } catch (err) {
    if (err instanceof RangeError || err instanceof TunnelUsageError) throw h.usage(err.message);
    throw err;
  }
}

function keepalive(p: Parsed, h: CliHelpers): { keepaliveInterval?: number } {
  const k = h.intFlag(p, "--keepalive", 0);
  return k === undefined ? {} : { keepaliveInterval: k };
}

async function server(args: string[], h: CliHelpers): Promise<void> {
  const p = h.parseFlags(args, [
    ...COMMON,
    "--listen",
    "--allow",
    "--deny",
    "--route",
    "--tls-cert",
    "--tls-key",
    "--connect-timeout",
    "--window",
  ], ["--quiet", "--verbose"]);
  const listen = h.endpointFlag(p, "--listen");
  const options: TunnelServerOptions = { listen, ...keepalive(p, h) };
  const allow = p.flags.get("--allow");
  const deny = p.flags.get("--deny");
  if (allow !== undefined) options.allow = h.parseRules(allow, "--allow");
  if (deny !== undefined) options.deny = h.parseRules(deny, "--deny");
  const routes: Record<string, Endpoint> = {};
  for (const r of p.lists.get("--route") ?? []) {
    const eq = r.indexOf("=");
    if (eq <= 0) throw new TunnelUsageError(`--route: "${r}" is not NAME=HOST:PORT`);
    const name = r.slice(0, eq);
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
      throw new TunnelUsageError(`--route: "${name}" is not a NAME (letters, digits, _ . -)`);
    }
    routes[name] = parseEndpoint(r.slice(eq + 1), "--route");
  }
  if (Object.keys(routes).length > 0) options.routes = routes;
  if (allow === undefined && options.routes === undefined) {
    throw new TunnelUsageError(
      "--allow or --route is required: the tunnel server is closed to every destination without them",
    );
  }
  const cert = p.flags.get("--tls-cert"), key = p.flags.get("--tls-key");
  if ((cert === undefined) !== (key === undefined)) {
    throw new TunnelUsageError("--tls-cert and --tls-key go together");
  }
  if (cert !== undefined && key !== undefined) {
    options.tls = { cert: readText(cert, "--tls-cert"), key: readText(key, "--tls-key") };
  }
  const secret = secretOf(p);
  if (secret !== undefined) options.secret = secret;
  const ct = h.intFlag(p, "--connect-timeout", 0);
  if (ct !== undefined) options.connectTimeout = ct;
  const window = h.intFlag(p, "--window", 16 * 1024);
  if (window !== undefined) options.window = window;
  const srv = await TunnelServer.listen(options);
  const quiet = p.bools.has("--quiet");
  const verbose = p.bools.has("--verbose");
  srv.on("link", (e) => {
    if (!quiet) console.log(`relaykit: link from ${e.remote} up (version ${e.version})`);
  });
  srv.on("link-close", (e) => {
    const line = `relaykit: link from ${e.remote} closed: ${e.reason}${
      e.error ? ` (${e.error.message})` : ""
    }`;
    if (e.reason === "link-lost" || e.reason === "closed") {
      if (!quiet) console.log(line);
    } else console.error(line);
  });
  srv.on("stream-end", (e) => {
    if (verbose || (e.error !== undefined && e.reason !== "link-lost" && !quiet)) {
      console.log(
        `relaykit: ${e.remote} #${e.id} to ${formatDestination(e.destination)}: ${e.reason}${
          e.error ? ` (${e.error.message})` : ""
        }, ${e.bytesIn} bytes up, ${e.bytesOut} down`,
      );
    }
  });
  h.onStop(async (sig) => {
    if (!quiet) console.log(`relaykit: ${sig}: closing ${plural(srv.links, "link")}`);
    await srv.close();
  });
  await new Promise((r) => setTimeout(r, 0));
  if (!quiet) {
    const extras = [
      options.tls ? "TLS" : "",
      secret !== undefined ? "shared secret" : "",
      options.routes ? `routes: ${Object.keys(routes).join(", ")}` : "",
    ].filter((x) => x !== "");
    console.log(
      `relaykit: tunnel server on ${formatEndpoint(srv.address)}${
        extras.length ? ` (${extras.join(", ")})` : ""
      }`,
    );
  }
}

async function client(args: string[], h: CliHelpers): Promise<void> {
  const p = h.parseFlags(args, [
    ...COMMON,
    "--link",
    "--listen",
    "--tls-ca",
    "--tls-servername",
    "--reconnect-max",
  ], ["--tls", "--quiet", "--verbose"]);
  const linkAt = h.endpointFlag(p, "--link");
  if ("path" in linkAt) throw new TunnelUsageError("--link must be HOST:PORT");
  const listeners: TunnelListener[] = [];
  for (const l of p.lists.get("--listen") ?? []) {
    const eq = l.indexOf("=");
    if (eq <= 0) throw new TunnelUsageError(`--listen: "${l}" is not HOST:PORT=DEST`);
    listeners.push({
      listen: parseEndpoint(l.slice(0, eq), "--listen"),
      to: parseDestination(l.slice(eq + 1), "--listen"),
    });
  }
  if (listeners.length === 0) throw new TunnelUsageError("--listen HOST:PORT=DEST is required");
  const options: TunnelClientOptions = { link: linkAt, listeners, ...keepalive(p, h) };
  const ca = p.flags.get("--tls-ca");
  const servername = p.flags.get("--tls-servername");
  if (p.bools.has("--tls") || ca !== undefined || servername !== undefined) {
    const tls: TlsClientOptions = {};
    if (ca !== undefined) tls.ca = readText(ca, "--tls-ca");
    if (servername !== undefined) tls.servername = servername;
    options.tls = tls;
  }
  const secret = secretOf(p);
  if (secret !== undefined) options.secret = secret;
  const max = h.intFlag(p, "--reconnect-max", 100);
  if (max !== undefined) options.reconnectMaxDelay = max;
  const c = await TunnelClient.start(options);
  const quiet = p.bools.has("--quiet");
  const verbose = p.bools.has("--verbose");
  c.on("up", (e) => {
    if (!quiet) console.log(`relaykit: link to ${e.remote} up (version ${e.version})`);
  });
  c.on("down", (e) => {
    console.error(
      `relaykit: link to ${formatEndpoint(linkAt)} down: ${e.reason}${
        e.error ? ` (${e.error.message})` : ""
      }; retrying in ${e.retryInMs} ms`,
    );
  });
  c.on("refused", (e) => {
    if (!quiet) {
      console.error(
        `relaykit: ${e.listener}: connection from ${e.remote ?? "?"} closed: the link is down`,
      );
    }
  });
  c.on("stream-end", (e) => {
    if (verbose || (e.error !== undefined && e.reason !== "link-lost" && !quiet)) {
      console.log(
        `relaykit: ${e.listener} #${e.id} to ${formatDestination(e.destination)}: ${e.reason}${
          e.error ? ` (${e.error.message})` : ""
        }, ${e.bytesOut} bytes up, ${e.bytesIn} down`,
      );
    }
  });
  h.onStop(async (sig) => {
    if (!quiet) console.log(`relaykit: ${sig}: closing ${plural(c.streams, "stream")}`);
    await c.close();
  });
  await new Promise((r) => setTimeout(r, 0));
  if (!quiet) {
    const pairs = c.addresses.map((a, i) =>
      `${formatEndpoint(a)} -> ${formatDestination(listeners[i]!.to)}`
    );
    console.log(
      `relaykit: tunnel client: ${pairs.join(", ")} via ${formatEndpoint(linkAt)}${
        options.tls ? " (TLS)" : ""
      }`,
    );
  }
}
