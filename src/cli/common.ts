/**
 * What several commands share: the options of a proxy (forward, route,
 * socks, http-connect), the logging options of every serving command, the
 * access rules, starting a proxy and stopping on a signal.
 *
 * @module
 */
import { serveProxyAdmin } from "../admin/serve.ts";
import { connections, ignoreHangup } from "../config/signals.ts";
import { sdNotify } from "../config/systemd.ts";
import { rmSync, writeFileSync } from "node:fs";
import process from "node:process";
import { fileErrorReason } from "../errors.ts";
import { formatEndpoint } from "../forward/types.ts";
import { NativeEngine } from "../native/engine.ts";
import { decodeTlvs, type ProxyHeader } from "../protocol/proxy_protocol.ts";
import { Access, type AccessRule } from "../proxy/address_policy.ts";
import { TcpProxy, type TcpProxyOptions } from "../proxy/tcp_proxy.ts";
import { runtime } from "../runtime/detect.ts";
import * as settings from "../settings.ts";
import { Logger } from "./log.ts";
import {
  type Args,
  endpoint,
  flag,
  fromSetting,
  type Opt,
  opt,
  text,
  UsageError,
} from "./options.ts";

// --- options ---------------------------------------------------------------

/** Where a proxy listens. */
export const LISTEN: Opt<import("../types.ts").Endpoint> = endpoint({
  flag: "--listen",
  value: "ADDR",
  help: "where to listen: HOST:PORT, :PORT (every interface), [V6]:PORT, unix:/path",
  config: "listeners[].address, port, path",
});
/** The engine. */
export const ENGINE: Opt<"auto" | "native" | "stream"> = fromSetting(
  "--engine",
  settings.engine,
  "which engine relays: auto (native when the library loads), native or stream",
);
/** Native worker threads. */
export const THREADS: Opt<number> = fromSetting(
  "--threads",
  settings.threads,
  "native worker threads (default: the number of CPUs)",
);
/** Options of a proxy's connections. */
export const MAX_CONNECTIONS: Opt<number> = fromSetting(
  "--max-connections",
  settings.maxConnections,
  "concurrent connections; more are closed at once (0: no limit)",
  "listeners[].max_connections",
);
/** Connect timeout. */
export const CONNECT_TIMEOUT: Opt<number> = fromSetting(
  "--connect-timeout",
  settings.millis,
  "give up connecting to the target after MS (default 10000)",
  "listeners[].connect_timeout",
);
/** Idle timeout. */
export const IDLE_TIMEOUT: Opt<number> = fromSetting(
  "--idle-timeout",
  settings.millis,
  "close connections idle for MS (default 0: never)",
  "listeners[].idle_timeout",
);
/** PROXY headers from clients. */
export const ACCEPT_PROXY: Opt<"detect" | "v1" | "v2"> = fromSetting(
  "--accept-proxy",
  settings.acceptProxyMode,
  "take a PROXY header from clients",
  "listeners[].accept_proxy.mode",
);
/** Who may send one. */
export const TRUSTED: Opt<string[]> = opt({
  flag: "--trusted",
  value: "CIDRS",
  help: "who may send a PROXY header, comma-separated (default 127.0.0.0/8,::1); " +
    "anyone else is refused",
  config: "listeners[].accept_proxy.trusted",
  parse: (t) => t.split(",").map((x) => x.trim()).filter((x) => x !== "").map(settings.cidr.parse),
});
/** What happens to anyone else. */
export const UNTRUSTED: Opt<"refuse" | "no-header"> = fromSetting(
  "--untrusted",
  settings.untrusted,
  "refuse untrusted clients (default), or relay them as they are, header or not",
  "listeners[].accept_proxy.untrusted",
);
/** PROXY headers to the target. */
export const SEND_PROXY: Opt<"v1" | "v2"> = fromSetting(
  "--send-proxy",
  settings.sendProxyVersion,
  "send a PROXY header to the target",
  "backends[].send_proxy",
);
/** v2 TLVs. */
export const PROXY_V2_OPTIONS: Opt<string> = text({
  flag: "--proxy-v2-options",
  value: "LIST",
  help: "v2 TLVs, comma-separated: unique-id, crc32c, authority=NAME",
  config: "backends[].send_proxy.unique_id, crc32c, authority",
});
/** Fewer lines. */
export const QUIET: Opt<true> = flag({
  flag: "--quiet",
  help: "print only warnings and errors (--log-level warn)",
});
/** More lines. */
export const VERBOSE: Opt<true> = flag({
  flag: "--verbose",
  help: "print every connection (--log-level debug)",
});
/** The log level. */
export const LOG_LEVEL: Opt<"error" | "warn" | "info" | "debug"> = fromSetting(
  "--log-level",
  settings.logLevel,
  "how much to log (default info); backend failures, health changes and refusals are warnings",
);
/** The log format. */
export const LOG_FORMAT: Opt<"text" | "json"> = fromSetting(
  "--log-format",
  settings.logFormat,
  "text (default): TIME LEVEL relaykit: MESSAGE; json: one object a line",
);
/** The log file. */
export const LOG_FILE: Opt<string> = text({
  flag: "--log-file",
  value: "FILE",
  help: "write every line to FILE (default: info and debug to stdout, warnings and errors " +
    "to stderr); reopened on SIGUSR2 and SIGHUP (logrotate)",
});

/** The logging options of every serving command. */
export const LOG_OPTIONS: readonly Opt[] = [QUIET, VERBOSE, LOG_LEVEL, LOG_FORMAT, LOG_FILE];

/** The admin endpoint of a one-proxy command. */
export const ADMIN: Opt<string> = text({
  flag: "--admin",
  value: "HOST:PORT",
  help: "serve the admin API and stats page of this proxy there (:PORT is loopback); the " +
    "token from RELAYKIT_ADMIN_TOKEN",
});

/** The options forward, route, socks and http-connect share. */
export const PROXY_OPTIONS: readonly Opt[] = [
  LISTEN,
  ENGINE,
  THREADS,
  MAX_CONNECTIONS,
  CONNECT_TIMEOUT,
  IDLE_TIMEOUT,
  ACCEPT_PROXY,
  TRUSTED,
  UNTRUSTED,
  SEND_PROXY,
  PROXY_V2_OPTIONS,
  ADMIN,
  ...LOG_OPTIONS,
];

// --- helpers ---------------------------------------------------------------

/** The logger the logging options ask for. */
export function loggerOf(a: Args, name = "relaykit"): Logger {
  const level = a.get(LOG_LEVEL) ??
    (a.has(VERBOSE) ? "debug" : a.has(QUIET) ? "warn" : "info");
  const file = a.get(LOG_FILE);
  try {
    return new Logger({ level, format: a.get(LOG_FORMAT) ?? "text", file, name });
  } catch (err) {
    throw new UsageError(`--log-file: ${(err as Error).message}`);
  }
}

/** Write `pid` to the --pid file (removed at exit). */
export function writePidFile(path: string): void {
  try {
    writeFileSync(path, `${process.pid}\n`);
  } catch (err) {
    throw new UsageError(`--pid: cannot write ${path}: ${fileErrorReason(err, "write")}`);
  }
  process.on("exit", () => rmSync(path, { force: true }));
}

/** "10.0.0.0/8:80,*.example.com:443,[::1]/128" -> access rules. */
export function parseRules(textValue: string, flagName: string): AccessRule[] {
  return textValue.split(",").map((t) => t.trim()).filter((t) => t !== "").map((item) => {
    const m = /^(\[[^\]]+\](?:\/\d+)?|[^:]*)(?::([\d-]+))?$/.exec(item);
    if (m === null) throw new UsageError(`${flagName}: "${item}" is not DEST[:PORTS]`);
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
      throw new UsageError(`${flagName}: ${(err as Error).message}`);
    }
    return rule;
  });
}

/** Access rules as an option. */
export function rules(flagName: string, help: string, config?: string): Opt<AccessRule[]> {
  return opt({
    flag: flagName,
    value: "RULES",
    help,
    ...(config !== undefined ? { config } : {}),
    parse: parseRules,
  });
}

/**
 * Run `stop` on SIGINT or SIGTERM; a second one exits at once. The process
 * then ends by itself once everything is closed.
 */
export function onStop(
  stop: (signal: string) => Promise<void>,
  log: Logger,
  hangup = true,
): void {
  let stopping = false;
  const signals = ["SIGINT", "SIGTERM"] as const;
  const handler = (sig: string) => {
    if (stopping) {
      log.info(`${sig} again: exiting now`);
      log.flush();
      setTimeout(() => process.exit(130), 50); // a second Ctrl-C: now
      return;
    }
    stopping = true;
    sdNotify("STOPPING=1", (line) => log.error(line));
    // Let the process end by itself rather than with process.exit(): that
    // way what was printed reaches a piped stdout (Bun drops output still
    // buffered at process.exit()). The timer is a backstop.
    stop(sig).then(() => {
      for (const s of signals) process.removeAllListeners(s);
      process.removeAllListeners("SIGHUP");
      process.exitCode = 0;
      setTimeout(() => process.exit(0), 2000).unref();
    });
  };
  for (const sig of signals) process.on(sig, () => handler(sig));
  // SIGHUP would end the process (exit 129): a command whose settings come
  // from its command line has nothing to reload but its log file
  if (hangup) ignoreHangup((line) => log.info(line));
}

/** "native engine, 4 threads" or "stream engine on deno: why". */
export function engineLine(proxy: TcpProxy, threads: number | undefined): string {
  if (proxy.engine === "native") {
    return `native engine, ${threads ?? NativeEngine.shared().threads} threads`;
  }
  return `stream engine on ${runtime.name}: ${proxy.engineReason}`;
}

/** The engine, threads, timeouts and PROXY options into `options`; returns the threads. */
export function proxyOptions(a: Args, options: TcpProxyOptions): number | undefined {
  options.engine = a.get(ENGINE) ?? "auto";
  const maxConnections = a.get(MAX_CONNECTIONS);
  const connectTimeout = a.get(CONNECT_TIMEOUT);
  const idleTimeout = a.get(IDLE_TIMEOUT);
  if (maxConnections !== undefined) options.maxConnections = maxConnections;
  if (connectTimeout !== undefined) options.connectTimeout = connectTimeout;
  if (idleTimeout !== undefined) options.idleTimeout = idleTimeout;
  const accept = a.get(ACCEPT_PROXY);
  const trusted = a.get(TRUSTED);
  const untrusted = a.get(UNTRUSTED);
  if (accept !== undefined) {
    options.acceptProxy = { mode: accept };
    if (untrusted !== undefined) options.acceptProxy.untrusted = untrusted;
    if (trusted !== undefined) options.acceptProxy.trusted = trusted;
  } else if (trusted !== undefined || untrusted !== undefined) {
    throw new UsageError(
      `${trusted !== undefined ? "--trusted" : "--untrusted"} needs --accept-proxy`,
    );
  }
  const send = a.get(SEND_PROXY);
  const v2 = a.get(PROXY_V2_OPTIONS);
  if (send !== undefined) {
    options.sendProxy = { version: send === "v1" ? 1 : 2 };
    if (v2 !== undefined) {
      if (send !== "v2") throw new UsageError("--proxy-v2-options needs --send-proxy v2");
      for (const o of v2.split(",").map((x) => x.trim()).filter((x) => x !== "")) {
        if (o === "unique-id") options.sendProxy.uniqueId = true;
        else if (o === "crc32c") options.sendProxy.crc32c = true;
        else if (o.startsWith("authority=") && o.length > 10) {
          options.sendProxy.authority = o.slice(10);
        } else {
          throw new UsageError(
            `--proxy-v2-options: unknown option "${o}" (unique-id, crc32c, authority=NAME)`,
          );
        }
      }
    }
  } else if (v2 !== undefined) {
    throw new UsageError("--proxy-v2-options needs --send-proxy v2");
  }
  return a.get(THREADS);
}

/** Bytes as text when they are printable ASCII, else as hex. */
function printable(b: Uint8Array): string {
  return b.every((x) => x >= 0x20 && x < 0x7f)
    ? new TextDecoder().decode(b)
    : Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A PROXY header in one line. */
export function describeHeader(h: ProxyHeader): string {
  const addr = (x: ProxyHeader["source"]) =>
    x === undefined ? "?" : "path" in x ? x.path : formatEndpoint(x);
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

/**
 * Start the proxy, the signal handlers, and its log lines: the start line
 * (`what` with % for the address), warnings for refused and failed
 * connections (rate-limited per cause), each connection at debug.
 */
export async function runProxy(
  log: Logger,
  options: TcpProxyOptions,
  threads: number | undefined,
  what: string,
  reloads = false,
  admin?: string,
): Promise<TcpProxy> {
  if (threads !== undefined && options.engine !== "stream") {
    try {
      options.nativeEngine = new NativeEngine({ threads });
    } catch (err) {
      if (options.engine === "native") throw err;
    }
  }
  const proxy = await TcpProxy.listen(options);
  const command = what.split(" ")[0]!;
  const adminServer = await serveProxyAdmin(proxy, admin, {
    command: { forwarding: "forward", routing: "route" }[command] ?? command,
    route: options.target !== undefined ? formatEndpoint(options.target) : command,
    limit: options.maxConnections ?? 0,
    original: options.acceptProxy !== undefined,
    log: (l, line) => log.log(l, line),
  }).catch(async (err: Error) => {
    await proxy.abort();
    throw new UsageError(err.message);
  });
  log.reopenOn(["SIGUSR2", "SIGHUP"]);
  onStop(
    async (sig) => {
      adminServer?.close();
      log.info(`${sig}: closing ${connections(proxy.connections)}`);
      await proxy.abort();
      log.flush();
    },
    log,
    !reloads,
  );
  // Signal handlers are installed by the event loop: give it a turn, so
  // that once the line below is out, SIGTERM is handled (not fatal).
  await new Promise((r) => setTimeout(r, 0));
  // listened for before the line that says it is ready: a connection that
  // comes at once is reported like the others (the engine accepts already)
  proxy.on("error", (err) => log.warn(err.message, err.code));
  if (log.enabled("debug")) {
    proxy.on(
      "open",
      (c) => log.debug(`#${c.id} open from ${c.remote ? formatEndpoint(c.remote) : "unix"}`),
    );
    proxy.on("original", (o) => log.debug(`#${o.id} ${describeHeader(o.header!)}`));
    proxy.on("close", (e) =>
      log.debug(
        `#${e.id} ${e.reason} after ${e.durationMs} ms, ${e.aToB.written} bytes up, ${e.bToA.written} down${
          e.original?.source ? `, client ${formatEndpoint(e.original.source)}` : ""
        }`,
      ));
  }
  log.info(`${what.replace("%", formatEndpoint(proxy.address))} (${engineLine(proxy, threads)})`);
  sdNotify("READY=1", (line) => log.error(line));
  return proxy;
}
