/**
 * The relaykit command.
 *
 *   relaykit                       a demo: an HTTP backend behind a proxy
 *   relaykit forward --listen HOST:PORT --to HOST:PORT [options]
 *   relaykit route SCRIPT --listen HOST:PORT [options]
 *   relaykit echo --listen HOST:PORT [--accept-proxy MODE]
 *   relaykit --help | --version
 *
 * Runs as `deno run -A src/cli.ts …`, `bun src/cli.ts …`, and as
 * `relaykit …` from the npm package.
 *
 * @module
 */
import { createServer } from "node:http";
import process from "node:process";
import { concatBytes } from "./bytes.ts";
import { formatEndpoint } from "./forward/types.ts";
import { NativeEngine } from "./native/engine.ts";
import { parseEndpoint } from "./proxy/address.ts";
import { parseCidr } from "./protocol/cidr.ts";
import {
  decodeTlvs,
  type ParseMode,
  parseProxyHeader,
  type ProxyHeader,
} from "./protocol/proxy_protocol.ts";
import { loadRouteModule, type RouteModule } from "./proxy/route_module.ts";
import { TcpProxy, type TcpProxyOptions } from "./proxy/tcp_proxy.ts";
import { ConfigError } from "./config/config.ts";
import {
  type AccessRecord,
  type EventRecord,
  loadConfig,
  loadModules,
  Runner,
} from "./config/run.ts";
import { Access, type AccessRule } from "./proxy/address_policy.ts";
import { httpConnectRouter, type RouterOptions, socksRouter } from "./proxy/socks.ts";
import { supervise, watchSupervisor } from "./config/supervisor.ts";
import { openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { runtime } from "./runtime/detect.ts";
import { VERSION } from "./version.ts";
import { escapeLogText, jsonLogLine, logErr, logOut } from "./log.ts";
import { tunnelCommand } from "./tunnel/cli.ts";
import {
  type AdminPlan,
  planAdmin,
  serveProxyAdmin,
  serveRunAdmin,
  serveSupervisorAdmin,
  serveWorkerAdmin,
} from "./admin/serve.ts";
import { ctlCommand } from "./admin/ctl.ts";

/** A command-line mistake: printed as one line, exit code 2. */
export class UsageError extends Error {
  /** @param message What is wrong. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const HELP = `relaykit ${VERSION} - a TCP proxy toolkit with a native splice engine

Usage:
  relaykit                         run a demo: an HTTP backend behind a proxy
  relaykit forward --listen HOST:PORT --to HOST:PORT [options]
  relaykit route SCRIPT --listen HOST:PORT [options]
  relaykit run CONFIG [--workers N] [--engine E] [--threads N] [--grace MS]
               [--access-log FILE] [--pid FILE] [--log-level L] [--log-file FILE] [--quiet]
               [--admin HOST:PORT]
  relaykit ctl --admin HOST:PORT [--token T] [--json] COMMAND   (relaykit ctl --help)
  relaykit echo --listen HOST:PORT [--accept-proxy detect|v1|v2|none]
  relaykit socks --listen HOST:PORT --allow RULES [--deny RULES] [--users U:P,...]
  relaykit http-connect --listen HOST:PORT --allow RULES [--deny RULES] [--users U:P,...]
  relaykit tunnel server --listen HOST:PORT [--allow RULES] [--route NAME=HOST:PORT]...
               [--secret-file FILE] [--tls-cert FILE --tls-key FILE]
  relaykit tunnel client --link HOST:PORT --listen HOST:PORT=DEST...
               [--secret-file FILE] [--tls | --tls-ca FILE]
  relaykit --help | --version

tunnel: many connections over one link between two relaykit instances
(docs/tunnel.md). The client's listeners send each connection through the
link as a stream; the server opens its destination. DEST is HOST:PORT (the
server must --allow it; closed by default) or the NAME of a server --route.
The shared secret (--secret-file, or RELAYKIT_TUNNEL_SECRET) is proven with
HMAC-SHA256 both ways and never sent. --tls-cert/--tls-key serve the link
over TLS; the client's --tls verifies it with the system's CAs, --tls-ca
FILE with that CA (--tls-servername NAME: the name to verify). Both take
--keepalive MS (default 10000; dead after 3 missed), the server
--connect-timeout MS and --window BYTES; the client reconnects with
backoff (--reconnect-max MS, default 5000). --verbose prints every stream.

socks (SOCKS4, 4a, 5) and http-connect are closed by default: a destination
must match an --allow rule and no --deny rule. RULES are comma-separated
DEST[:PORTS] items: DEST a CIDR (10.0.0.0/8, [::1]/128), a name pattern
(*.example.com) or * for any; PORTS like 443 or 8000-8999. Names are
resolved before the check. --users requires authentication (SOCKS5
username/password; HTTP Basic); refusals are logged.

run: the listeners and backends of a YAML or JSON file (see the README),
validated first (each mistake with file:line:col). SIGHUP reloads it (an
invalid file changes nothing; established connections are untouched);
SIGTERM/SIGINT stop accepting and reset what is left after --grace MS
(default 10000); SIGQUIT waits for the last connection. --access-log FILE
writes one JSON line per connection (- for stdout). --workers N runs N
processes sharing the ports (SO_REUSEPORT), replacing any that dies;
SIGTTIN/SIGTTOU add/remove one. --log-level error|info|debug (default
info), --log-file FILE (default stderr), --pid FILE. --admin HOST:PORT
serves the admin API and stats page there (loopback by default; the token
from the config's admin section or RELAYKIT_ADMIN_TOKEN).

route: SCRIPT (TypeScript or JavaScript) exports route(data, conn), which
returns { remote }, { close }, { file } or undefined for more bytes; it may
also export onError(conn, error), rewriteRequest and rewriteResponse.
SIGHUP reloads SCRIPT for new connections; established ones go on. Options
are forward's (without --to), and:
  --route-limit BYTES      most bytes before the route decides (default 65536)
  --route-timeout MS       most time before the route decides (default 10000)

echo: an echo server that prints each connection's original addresses from
its PROXY protocol header (v1 or v2, with TLVs), then echoes what follows.

forward options:
  --listen ADDR            where to listen: HOST:PORT, [V6]:PORT, unix:/path
  --to ADDR                where every connection goes (same forms)
  --engine E               auto (default), native or stream
  --threads N              native worker threads (default: number of CPUs)
  --max-connections N      concurrent connections; more are closed at once (0: none)
  --connect-timeout MS     give up connecting to the target after MS (default 10000)
  --idle-timeout MS        close connections idle for MS (default 0: never)
  --accept-proxy M         take a PROXY header from clients: detect, v1 or v2
  --trusted CIDRS          who may send one, comma-separated (default
                           127.0.0.0/8,::1); anyone else is refused
  --untrusted refuse|no-header
                           or relayed as is, header or not (default refuse)
  --send-proxy V           send a PROXY header to the target: v1 or v2
  --proxy-v2-options LIST  v2 TLVs, comma-separated: unique-id, crc32c,
                           authority=NAME
  --admin ADDR             serve the admin API and stats page (its listener and
                           connections) there; the token from RELAYKIT_ADMIN_TOKEN
  --quiet                  print only errors
  --verbose                print every connection
`;

interface Parsed {
  flags: Map<string, string>;
  bools: Set<string>;
  /** Every value of each flag, for flags that may be repeated. */
  lists: Map<string, string[]>;
}

function parseFlags(args: string[], valued: string[], bools: string[]): Parsed {
  const flags = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const set = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (bools.includes(name)) {
      set.add(name);
      continue;
    }
    if (!valued.includes(name)) throw new UsageError(`unknown option "${arg}" (see --help)`);
    const value = eq > 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined) throw new UsageError(`${name} needs a value`);
    flags.set(name, value);
    lists.set(name, [...lists.get(name) ?? [], value]);
  }
  return { flags, bools: set, lists };
}

function intFlag(p: Parsed, name: string, min: number): number | undefined {
  const v = p.flags.get(name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > 0x7fffffff) {
    throw new UsageError(`${name} must be an integer >= ${min}, not "${v}"`);
  }
  return Number(v);
}

function endpointFlag(p: Parsed, name: string) {
  const v = p.flags.get(name);
  if (v === undefined) throw new UsageError(`${name} is required`);
  try {
    return parseEndpoint(v, name);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function engineLine(proxy: TcpProxy, threads: number | undefined): string {
  if (proxy.engine === "native") {
    return `native engine, ${threads ?? NativeEngine.shared().threads} threads`;
  }
  return `stream engine on ${runtime.name}: ${proxy.engineReason}`;
}

function onStop(stop: (signal: string) => Promise<void>): void {
  let stopping = false;
  const signals = ["SIGINT", "SIGTERM"] as const;
  const handler = (sig: string) => {
    if (stopping) process.exit(130); // a second Ctrl-C: now
    stopping = true;
    // Once everything is closed, let the process end by itself rather than
    // with process.exit(): that way what was printed reaches a piped stdout
    // (Bun drops output still buffered at process.exit()). The timer is a
    // backstop for anything that would keep it alive.
    stop(sig).then(() => {
      for (const s of signals) process.removeAllListeners(s);
      process.exitCode = 0;
      setTimeout(() => process.exit(0), 2000).unref();
    });
  };
  for (const sig of signals) process.on(sig, () => handler(sig));
}

const FORWARD_FLAGS = [
  "--listen",
  "--engine",
  "--threads",
  "--max-connections",
  "--connect-timeout",
  "--idle-timeout",
  "--accept-proxy",
  "--trusted",
  "--untrusted",
  "--send-proxy",
  "--proxy-v2-options",
  "--admin",
];

/** The options forward and route share. */
function commonOptions(p: Parsed, options: TcpProxyOptions): number | undefined {
  const engine = p.flags.get("--engine") ?? "auto";
  if (engine !== "auto" && engine !== "native" && engine !== "stream") {
    throw new UsageError(`--engine must be auto, native or stream, not "${engine}"`);
  }
  options.engine = engine;
  const threads = intFlag(p, "--threads", 1);
  const maxConnections = intFlag(p, "--max-connections", 0);
  const connectTimeout = intFlag(p, "--connect-timeout", 0);
  const idleTimeout = intFlag(p, "--idle-timeout", 0);
  if (maxConnections !== undefined) options.maxConnections = maxConnections;
  if (connectTimeout !== undefined) options.connectTimeout = connectTimeout;
  if (idleTimeout !== undefined) options.idleTimeout = idleTimeout;
  frontFlags(p, options);
  return threads;
}

/** Start the proxy, the signal handlers, and the per-connection log lines. */
async function runProxy(
  p: Parsed,
  options: TcpProxyOptions,
  threads: number | undefined,
  what: string,
): Promise<TcpProxy> {
  if (threads !== undefined && options.engine !== "stream") {
    try {
      options.nativeEngine = new NativeEngine({ threads });
    } catch (err) {
      if (options.engine === "native") throw err;
    }
  }
  const proxy = await TcpProxy.listen(options);
  const quiet = p.bools.has("--quiet");
  const command = { forwarding: "forward", routing: "route" }[what.split(" ")[0]!] ??
    what.split(" ")[0]!;
  const admin = await serveProxyAdmin(proxy, p.flags.get("--admin"), {
    command,
    route: options.target !== undefined ? formatEndpoint(options.target) : command,
    limit: options.maxConnections ?? 0,
    log: (l, line) => {
      if (l === "error") logErr(`relaykit: ${line}`);
      else if (!quiet) logOut(`relaykit: ${line}`);
    },
  }).catch(async (err: Error) => {
    await proxy.abort();
    throw new UsageError(err.message);
  });
  onStop(async (sig) => {
    admin?.close();
    if (!quiet) logOut(`relaykit: ${sig}: closing ${proxy.connections} connections`);
    await proxy.abort();
  });
  // Signal handlers are installed by the event loop: give it a turn, so
  // that once the line below is out, SIGTERM is handled (not fatal).
  await new Promise((r) => setTimeout(r, 0));
  if (!quiet) {
    logOut(
      `relaykit: ${what.replace("%", formatEndpoint(proxy.address))} (${
        engineLine(proxy, threads)
      })`,
    );
  }
  proxy.on("error", (err) => logErr(`relaykit: ${err.message}`));
  if (p.bools.has("--verbose")) {
    proxy.on(
      "open",
      (c) => logOut(`relaykit: #${c.id} open from ${c.remote ? formatEndpoint(c.remote) : "unix"}`),
    );
    proxy.on("original", (o) => logOut(`relaykit: #${o.id} ${describeHeader(o.header!)}`));
    proxy.on("close", (e) =>
      logOut(
        `relaykit: #${e.id} ${e.reason} after ${e.durationMs} ms, ${e.aToB.written} bytes up, ${e.bToA.written} down${
          e.original?.source ? `, client ${formatEndpoint(e.original.source)}` : ""
        }`,
      ));
  }
  return proxy;
}

async function routeCommand(args: string[]): Promise<void> {
  const [script, ...rest] = args;
  if (script === undefined || script.startsWith("--")) {
    throw new UsageError("route needs a SCRIPT: relaykit route SCRIPT --listen HOST:PORT");
  }
  const p = parseFlags(rest, [...FORWARD_FLAGS, "--route-limit", "--route-timeout"], [
    "--quiet",
    "--verbose",
  ]);
  const listen = endpointFlag(p, "--listen");
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
    options.rewriteResponse = (chunk, ctx) => modOf(ctx.id).rewriteResponse?.(chunk, ctx) ?? chunk;
  }
  const limit = intFlag(p, "--route-limit", 1);
  const timeout = intFlag(p, "--route-timeout", 0);
  if (limit !== undefined) options.routeLimit = limit;
  if (timeout !== undefined) options.routeTimeout = timeout;
  const threads = commonOptions(p, options);
  const proxy = await runProxy(p, options, threads, `routing % with ${script}`);
  proxy.on("close", (e) => byConn.delete(e.id));
  let generation = 0;
  process.on("SIGHUP", () => {
    loadRouteModule(script, ++generation).then((mod) => {
      const lost = (["rewriteRequest", "rewriteResponse"] as const).filter((k) =>
        mod[k] !== undefined && current[k] === undefined
      );
      current = mod;
      logOut(`relaykit: SIGHUP: reloaded ${script} for new connections`);
      if (lost.length > 0) {
        logErr(`relaykit: ${lost.join(" and ")} take effect only after a restart`);
      }
    }, (err: Error) => {
      logErr(`relaykit: SIGHUP: ${err.message}; still running the previous ${script}`);
    });
  });
}

/** This command's own command line, to start a worker with. */
function selfArgv(args: string[]): string[] {
  const cli = fileURLToPath(import.meta.url);
  return runtime.name === "deno"
    ? [process.execPath, "run", "-A", cli, ...args]
    : [process.execPath, cli, ...args];
}

async function runCommand(args: string[]): Promise<void> {
  const [file, ...rest] = args;
  if (file === undefined || file.startsWith("--")) {
    throw new UsageError("run needs a CONFIG file: relaykit run CONFIG");
  }
  const p = parseFlags(rest, [
    "--engine",
    "--threads",
    "--grace",
    "--access-log",
    "--workers",
    "--pid",
    "--log-level",
    "--log-file",
    "--admin",
  ], ["--quiet"]);
  const engine = p.flags.get("--engine") ?? "auto";
  if (engine !== "auto" && engine !== "native" && engine !== "stream") {
    throw new UsageError(`--engine must be auto, native or stream, not "${engine}"`);
  }
  const level = p.flags.get("--log-level") ?? "info";
  if (level !== "error" && level !== "info" && level !== "debug") {
    throw new UsageError(`--log-level must be error, info or debug, not "${level}"`);
  }
  const threads = intFlag(p, "--threads", 1);
  const grace = intFlag(p, "--grace", 0) ?? 10_000;
  const workers = intFlag(p, "--workers", 1);
  const quiet = p.bools.has("--quiet");
  const logFile = p.flags.get("--log-file");
  const logFd = logFile === undefined ? undefined : openSync(logFile, "a");
  const rank = { error: 0, info: 1, debug: 2 };
  const worker = process.env.RELAYKIT_WORKER_INDEX;
  const tag = worker === undefined ? "relaykit" : `relaykit[${worker}]`;
  const log = (l: "error" | "info" | "debug", line: string) => {
    if (rank[l] > rank[level]) return;
    const text = escapeLogText(`${tag}: ${line}`);
    if (logFd !== undefined) writeSync(logFd, `${new Date().toISOString()} ${l} ${text}\n`);
    else console.error(text);
  };
  // everything is checked before anything starts, also for the supervisor
  let admin: AdminPlan | undefined;
  try {
    const config = loadConfig(file);
    admin = adminPlan(config, file, p.flags.get("--admin"), workers);
    if (workers !== undefined && workers > 1 && worker === undefined) {
      await loadModules(config, file, 0); // a worker would only die of it, again and again
    }
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`${file} is invalid:\n${err.message}`);
    throw err;
  }
  const pidFile = p.flags.get("--pid");
  if (pidFile !== undefined && worker === undefined) {
    writeFileSync(pidFile, `${process.pid}\n`);
    process.on("exit", () => rmSync(pidFile, { force: true }));
  }
  if (workers !== undefined && workers > 1 && worker === undefined) {
    // the supervisor: workers are this command without --workers and --pid
    const own = rest.filter((a, i) =>
      !["--workers", "--pid"].includes(a) && !["--workers", "--pid"].includes(rest[i - 1] ?? "")
    );
    const adminServer = admin && await serveSupervisorAdmin(admin, { file, log });
    const done = supervise({ workers, argv: () => selfArgv(["run", file, ...own]), log });
    await new Promise((r) => setTimeout(r, 0));
    if (!quiet) logOut(`relaykit: supervising ${workers} workers running ${file}`);
    await done;
    adminServer?.close();
    setTimeout(() => process.exit(0), 200);
    return;
  }
  const logPath = p.flags.get("--access-log");
  const accessOut = logPath === undefined
    ? undefined
    : logPath === "-"
    ? (line: string) => console.log(line)
    : (() => {
      const fd = openSync(logPath, "a");
      return (line: string) => writeSync(fd, line + "\n");
    })();
  let nativeEngine: NativeEngine | undefined;
  if (threads !== undefined && engine !== "stream") {
    try {
      nativeEngine = new NativeEngine({ threads });
    } catch (err) {
      if (engine === "native") throw err;
    }
  }
  const runner = new Runner(file, {
    engine,
    nativeEngine,
    // with workers, the first one serves the metrics; the admin listener may serve them
    metrics: (worker === undefined || worker === "0") && admin?.sharesMetrics !== true,
    log,
    access: (rec) => accessOut?.(jsonLogLine(rec)),
  });
  try {
    await runner.start();
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`${file} is invalid:\n${err.message}`);
    throw err;
  }
  const adminOptions = {
    file,
    engine: nativeEngine !== undefined ? "native" : "stream",
    engineReason: nativeEngine !== undefined ? undefined : `--engine ${engine}`,
    log,
    access: (rec: AccessRecord | EventRecord) => accessOut?.(jsonLogLine(rec)),
  };
  const adminServer = admin === undefined
    ? undefined
    : worker === undefined
    ? await serveRunAdmin(runner, admin, adminOptions)
    : await serveWorkerAdmin(runner, {
      ...adminOptions,
      supervisor: Number(process.env.RELAYKIT_SUPERVISOR_PID),
      index: Number(worker),
    });
  let stopping = false;
  const stop = (sig: string, ms: number) => {
    if (stopping) process.exit(130);
    stopping = true;
    adminServer?.close();
    if (!quiet) logOut(`${tag}: ${sig}: stopping`);
    // the signal listeners keep the process alive: exit once the output
    // has had a moment to drain (Bun drops what is still buffered at exit)
    runner.stop(ms).then(() => setTimeout(() => process.exit(0), 200));
  };
  process.on("SIGTERM", () => stop("SIGTERM", grace));
  process.on("SIGINT", () => stop("SIGINT", grace));
  process.on("SIGQUIT", () => stop("SIGQUIT", 0x7fffffff)); // until the last one ends
  process.on("SIGHUP", () => void runner.reload());
  watchSupervisor((pid) => {
    log("error", `the supervisor (pid ${pid}) is gone: stopping`);
    stop("supervisor gone", 0);
  });
  await new Promise((r) => setTimeout(r, 0)); // handlers are in before the line below
  if (!quiet) logOut(`${tag}: running ${file} (${runner.listeners.size} listeners)`);
}

/** The admin endpoint of a run; its mistakes are usage errors. */
function adminPlan(...args: Parameters<typeof planAdmin>): AdminPlan | undefined {
  try {
    return planAdmin(...args);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** "10.0.0.0/8:80,*.example.com:443,[::1]/128" -> access rules. */
function parseRules(text: string, flag: string): AccessRule[] {
  return text.split(",").map((t) => t.trim()).filter((t) => t !== "").map((item) => {
    const m = /^(\[[^\]]+\](?:\/\d+)?|[^:]*)(?::([\d-]+))?$/.exec(item);
    if (m === null) throw new UsageError(`${flag}: "${item}" is not DEST[:PORTS]`);
    const dest = m[1]!.replace(/^\[([^\]]+)\]/, "$1");
    const rule: AccessRule = {};
    if (dest !== "" && dest !== "*") {
      if (/^[\d.]+(\/\d+)?$/.test(dest) || dest.includes(":")) rule.cidr = dest;
      else rule.host = dest;
    }
    if (m[2] !== undefined) rule.port = m[2];
    try {
      new Access([rule]);
    } catch (err) {
      throw new UsageError(`${flag}: ${(err as Error).message}`);
    }
    return rule;
  });
}

async function routerCommand(kind: "socks" | "http-connect", args: string[]): Promise<void> {
  const p = parseFlags(args, [...FORWARD_FLAGS, "--allow", "--deny", "--users"], [
    "--quiet",
    "--verbose",
  ]);
  const listen = endpointFlag(p, "--listen");
  const allow = p.flags.get("--allow");
  if (allow === undefined) {
    throw new UsageError(
      "--allow is required: the proxy is closed to every destination without it",
    );
  }
  const opts: RouterOptions = { allow: parseRules(allow, "--allow") };
  const deny = p.flags.get("--deny");
  if (deny !== undefined) opts.deny = parseRules(deny, "--deny");
  const users = p.flags.get("--users");
  if (users !== undefined) {
    const table: Record<string, string> = {};
    for (const pair of users.split(",")) {
      const colon = pair.indexOf(":");
      if (colon <= 0) throw new UsageError(`--users: "${pair}" is not USER:PASSWORD`);
      table[pair.slice(0, colon)] = pair.slice(colon + 1);
    }
    opts.users = table;
  }
  const quiet = p.bools.has("--quiet");
  opts.onDenied = (what, conn) => {
    if (!quiet) {
      const from = conn.remote ? formatEndpoint(conn.remote) : "unix";
      logOut(`relaykit: #${conn.id} from ${from} refused: ${what}`);
    }
  };
  const options: TcpProxyOptions = {
    listen,
    route: kind === "socks" ? socksRouter(opts) : httpConnectRouter(opts),
  };
  const threads = commonOptions(p, options);
  await runProxy(p, options, threads, `${kind} proxy on %`);
}

async function forward(args: string[]): Promise<void> {
  const p = parseFlags(args, [...FORWARD_FLAGS, "--to"], ["--quiet", "--verbose"]);
  const listen = endpointFlag(p, "--listen");
  const target = endpointFlag(p, "--to");
  const options: TcpProxyOptions = { listen, target };
  const threads = commonOptions(p, options);
  await runProxy(p, options, threads, `forwarding % -> ${formatEndpoint(target)}`);
}

/** --accept-proxy, --trusted, --untrusted, --send-proxy, --proxy-v2-options. */
function frontFlags(p: Parsed, options: TcpProxyOptions): void {
  const accept = p.flags.get("--accept-proxy");
  const trusted = p.flags.get("--trusted");
  const untrusted = p.flags.get("--untrusted");
  if (accept !== undefined) {
    if (accept !== "detect" && accept !== "v1" && accept !== "v2") {
      throw new UsageError(`--accept-proxy must be detect, v1 or v2, not "${accept}"`);
    }
    if (untrusted !== undefined && untrusted !== "refuse" && untrusted !== "no-header") {
      throw new UsageError(`--untrusted must be refuse or no-header, not "${untrusted}"`);
    }
    options.acceptProxy = { mode: accept };
    if (untrusted !== undefined) options.acceptProxy.untrusted = untrusted;
    if (trusted !== undefined) {
      const list = trusted.split(",").map((t) => t.trim()).filter((t) => t !== "");
      try {
        for (const t of list) parseCidr(t);
      } catch (err) {
        throw new UsageError(`--trusted: ${(err as Error).message}`);
      }
      options.acceptProxy.trusted = list;
    }
  } else if (trusted !== undefined || untrusted !== undefined) {
    throw new UsageError(
      `${trusted !== undefined ? "--trusted" : "--untrusted"} needs --accept-proxy`,
    );
  }
  const send = p.flags.get("--send-proxy");
  const v2 = p.flags.get("--proxy-v2-options");
  if (send !== undefined) {
    if (send !== "v1" && send !== "v2") {
      throw new UsageError(`--send-proxy must be v1 or v2, not "${send}"`);
    }
    options.sendProxy = { version: send === "v1" ? 1 : 2 };
    if (v2 !== undefined) {
      if (send !== "v2") throw new UsageError("--proxy-v2-options needs --send-proxy v2");
      for (const opt of v2.split(",").map((o) => o.trim()).filter((o) => o !== "")) {
        if (opt === "unique-id") options.sendProxy.uniqueId = true;
        else if (opt === "crc32c") options.sendProxy.crc32c = true;
        else if (opt.startsWith("authority=") && opt.length > 10) {
          options.sendProxy.authority = opt.slice(10);
        } else {
          throw new UsageError(
            `--proxy-v2-options: unknown option "${opt}" (unique-id, crc32c, authority=NAME)`,
          );
        }
      }
    }
  } else if (v2 !== undefined) {
    throw new UsageError("--proxy-v2-options needs --send-proxy v2");
  }
}

/** Bytes as text when they are printable ASCII, else as hex. */
function printable(b: Uint8Array): string {
  return b.every((x) => x >= 0x20 && x < 0x7f)
    ? new TextDecoder().decode(b)
    : Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function describeHeader(h: ProxyHeader): string {
  const addr = (a: ProxyHeader["source"]) =>
    a === undefined ? "?" : "path" in a ? a.path : formatEndpoint(a);
  const head = h.command === "local"
    ? `PROXY v${h.version} LOCAL`
    : h.source === undefined
    ? `PROXY v${h.version} UNKNOWN`
    : `PROXY v${h.version} ${h.transport} ${addr(h.source)} -> ${addr(h.destination)}`;
  const t = decodeTlvs(h.tlvs);
  const extras = [
    t.alpn !== undefined ? `alpn=${t.alpn}` : "",
    t.authority !== undefined ? `authority=${t.authority}` : "",
    t.uniqueId !== undefined ? `unique_id=${printable(t.uniqueId)}` : "",
    t.ssl !== undefined ? `ssl=${t.ssl.version ?? "yes"}${t.ssl.cn ? ` cn=${t.ssl.cn}` : ""}` : "",
    t.netns !== undefined ? `netns=${t.netns}` : "",
    ...h.tlvs.filter((x) => ![1, 2, 3, 4, 5, 0x20, 0x30].includes(x.type)).map((x) =>
      `tlv 0x${x.type.toString(16)} (${x.value.length} bytes)`
    ),
  ].filter((x) => x !== "");
  return extras.length ? `${head} [${extras.join(" ")}]` : head;
}

async function echo(args: string[]): Promise<void> {
  const p = parseFlags(args, ["--listen", "--accept-proxy"], ["--quiet"]);
  const at = endpointFlag(p, "--listen");
  const mode = p.flags.get("--accept-proxy") ?? "none";
  if (mode !== "detect" && mode !== "v1" && mode !== "v2" && mode !== "none") {
    throw new UsageError(`--accept-proxy must be detect, v1, v2 or none, not "${mode}"`);
  }
  let n = 0;
  const listener = await runtime.net.listen(at, { backlog: 511, reusePort: false }, (conn) => {
    const id = ++n;
    const from = conn.remote ? formatEndpoint(conn.remote) : "unix";
    let pending: Uint8Array | undefined = mode === "none" ? undefined : new Uint8Array(0);
    if (mode === "none") logOut(`relaykit: #${id} from ${from}`);
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
          logOut(`relaykit: #${id} from ${from}: ${(err as Error).message}; closing`);
          conn.destroy(false);
          return;
        }
        if (r.kind === "need") {
          pending = buf;
          return;
        }
        pending = undefined;
        if (r.kind === "none") {
          logOut(`relaykit: #${id} from ${from}: no PROXY header`);
          return send(buf);
        }
        logOut(`relaykit: #${id} from ${from}: ${describeHeader(r.header)}`);
        send(buf.subarray(r.length)); // only what follows the header
      },
      end: () => conn.end(),
      drain: () => conn.resume(),
      close: () => {},
    });
  });
  logOut(
    `relaykit: echo on ${formatEndpoint(listener.address)} (PROXY headers: ${mode})`,
  );
  onStop(() => {
    listener.close();
    return Promise.resolve();
  });
}

async function demo(): Promise<void> {
  const backend = createServer((req, res) => {
    res.end(`hello from the demo backend, through relaykit (${req.method} ${req.url})\n`);
  });
  await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
  const addr = backend.address();
  const backendPort = typeof addr === "object" && addr !== null ? addr.port : 0;
  const target = { host: "127.0.0.1", port: backendPort };
  let proxy: TcpProxy;
  try {
    proxy = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 8080 }, target });
  } catch {
    // 8080 is taken: any free port will do for a demo
    proxy = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 0 }, target });
  }
  logOut(`relaykit ${VERSION} demo on ${runtime.name} ${runtime.version}`);
  logOut(`  backend: an HTTP server on 127.0.0.1:${backendPort}`);
  logOut(
    `  proxy:   listening on 127.0.0.1:${proxy.port} -> 127.0.0.1:${backendPort} (${
      engineLine(proxy, undefined)
    })`,
  );
  logOut(`Try it:   curl http://127.0.0.1:${proxy.port}/`);
  logOut(`Stop:     Ctrl-C.  More: relaykit --help`);
  proxy.on("close", (e) =>
    logOut(
      `  connection #${e.id}: ${e.reason}, ${e.aToB.written} bytes in, ${e.bToA.written} bytes out`,
    ));
  onStop(async () => {
    await proxy.abort();
    backend.close();
  });
}

/**
 * Run the command with `args` (without the program name).
 *
 * @returns the exit code (the process keeps running while a proxy does).
 */
export async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  try {
    switch (cmd) {
      case undefined:
        await demo();
        return 0;
      case "--help":
      case "-h":
      case "help":
        console.log(HELP);
        return 0;
      case "--version":
      case "version":
        console.log(`relaykit ${VERSION}`);
        return 0;
      case "forward":
        await forward(rest);
        return 0;
      case "echo":
        await echo(rest);
        return 0;
      case "route":
        await routeCommand(rest);
        return 0;
      case "run":
        await runCommand(rest);
        return 0;
      case "ctl":
        return await ctlCommand(rest);
      case "socks":
      case "http-connect":
        await routerCommand(cmd, rest);
        return 0;
      case "tunnel":
        await tunnelCommand(rest, {
          parseFlags,
          intFlag,
          endpointFlag,
          parseRules,
          onStop,
          usage: (m) => new UsageError(m),
        });
        return 0;
      default:
        throw new UsageError(`unknown command "${cmd}" (see --help)`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`relaykit: ${err.message}`);
      return 2;
    }
    console.error(`relaykit: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  if (code !== 0) process.exit(code);
}
