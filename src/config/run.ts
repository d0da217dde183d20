/**
 * `relaykit run CONFIG`: the listeners and backends of a config file, and
 * reloading it. A reload validates the new file first (an invalid one
 * changes nothing); listeners whose socket settings are unchanged keep
 * their listening socket and only switch where new connections go, so no
 * connection is refused or cut; new listeners start, removed ones stop
 * accepting and let their connections finish.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileErrorReason } from "../errors.ts";
import type { EnginePreference } from "../forward/select.ts";
import type { ConnectionEnd, Endpoint, ProxyTotals } from "../forward/types.ts";
import { formatEndpoint } from "../forward/types.ts";
import type { NativeEngine } from "../native/engine.ts";
import { Backend } from "../proxy/balance.ts";
import { loadHooksModule, loadRouteModule, type RouteModule } from "../proxy/route_module.ts";
import type { DataHooks } from "../forward/hooks.ts";
import { HealthChecker } from "../proxy/health.ts";
import { httpConnectRouter, socksRouter } from "../proxy/socks.ts";
import { routeTable, type RouteTableEntry } from "../proxy/route_table.ts";
import type { RouteFunction } from "../proxy/routing.ts";
import { TcpProxy, type TcpProxyOptions } from "../proxy/tcp_proxy.ts";
import { plural } from "./plural.ts";
import type { RouteEntryConfig } from "./types.ts";
import { type InheritedSocket, inheritedSockets, matchSocket } from "./systemd.ts";
import {
  type Config,
  ConfigError,
  type ListenerConfig,
  parseConfig,
  type TunnelClientConfig,
} from "./config.ts";
import {
  TunnelClient,
  type TunnelClientOptions,
  type TunnelEntryListener,
} from "../tunnel/client.ts";
import { formatDestination } from "../tunnel/destination.ts";
import { TunnelServer, type TunnelServerOptions } from "../tunnel/server.ts";
import { METRICS_TIMEOUT, type MetricsServer, serveMetrics } from "./metrics_server.ts";

/** Read and validate a config file. */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError([{
      file: path,
      line: 0, // the whole file
      col: 0,
      key: "",
      message: `cannot read ${path}: ${fileErrorReason(err, "read")}`,
    }]);
  }
  return parseConfig(text, path);
}

/**
 * Load the route and hooks modules of a config's listeners (by listener
 * name). A module that cannot be imported or lacks its export is a
 * ConfigError at its `route:` or `hooks:` key.
 */
export async function loadModules(
  config: Config,
  path: string,
  generation: number,
): Promise<{ routes: Map<string, RouteModule>; hooks: Map<string, DataHooks> }> {
  const base = dirname(resolve(path));
  const routes = new Map<string, RouteModule>();
  const hooks = new Map<string, DataHooks>();
  const load = async <T>(
    l: ListenerConfig,
    kind: "route" | "hooks",
    loader: (p: string, g: number) => Promise<T>,
  ): Promise<T> => {
    try {
      return await loader(resolve(base, l[kind]!), generation);
    } catch (err) {
      const at = l.modulesAt[kind] ?? { file: path, line: 1, col: 1, key: "" };
      throw new ConfigError([{ ...at, message: (err as Error).message }]);
    }
  };
  for (const l of config.listeners) {
    if (l.route !== undefined) routes.set(l.name, await load(l, "route", loadRouteModule));
    if (l.hooks !== undefined) hooks.set(l.name, await load(l, "hooks", loadHooksModule));
  }
  return { routes, hooks };
}

/**
 * How much the operator log says: failures of the process; and of backends,
 * health checks and refused clients; and what happens; and every connection.
 */
export type LogLevel = "error" | "warn" | "info" | "debug";

/** One JSON access log record per connection. */
export interface AccessRecord {
  time: string;
  listener: string;
  id: number;
  client?: string;
  original_client?: string;
  server?: string;
  duration_ms: number;
  bytes_up: number;
  bytes_down: number;
  end: string;
  error?: string;
}

/**
 * A change an operator made (through the admin API) or a health check saw,
 * as a line of the access log.
 */
export interface EventRecord {
  time: string;
  /** "admin" for an operator's action, "health" for a health check's verdict. */
  event: "admin" | "health";
  /** What was done or seen, e.g. "server-state", "up". */
  action: string;
  /** What it concerns, e.g. "app/a", "web", "#12". */
  target: string;
  /** The new value, if any (a state, a weight). */
  value?: string | number;
  /** The token's name (admin). */
  by?: string;
  /** Where the request came from (admin). */
  peer?: string;
  /** Why (a failed health check) or what went wrong (a refused action). */
  reason?: string;
}

/** A listener as the admin API sees it (see {@linkcode Runner.adminView}). */
export interface ListenerView {
  name: string;
  /** The backend's name, or the kind of router: "route", "socks", "http-connect". */
  route: string;
  /** max_connections, 0 for none. */
  limit: number;
  proxy: TcpProxy;
  /** Disabled by an operator: not accepting. */
  disabled: boolean;
  stats: ListenerStats;
  /** Its proxies whose connections are open or may be (a reload may leave an older one draining). */
  live: TcpProxy[];
}

/** What the runner reports. */
export interface RunnerOptions {
  engine: EnginePreference;
  nativeEngine: NativeEngine | undefined;
  /** Serve the config's metrics endpoint (not in a worker: its supervisor serves them all). */
  metrics: boolean;
  /**
   * How long a request to the metrics endpoint may take to arrive, in ms;
   * a slower one is answered 408 and closed.
   *
   * @default 10000
   */
  metricsTimeout?: number;
  /**
   * A line for the operator, with its level. Lines with a `cause` may
   * repeat without end (a dead backend): the log may summarise them.
   */
  log(level: LogLevel, line: string, cause?: string): void;
  /**
   * One record per ended connection, and one per health or operator change.
   * Without it, no listener reports its connections one by one: the
   * counters come from the engine.
   */
  access?(record: AccessRecord | EventRecord): void;
  /**
   * Run the config's tunnel sections (`false` in all workers but the first:
   * a tunnel is one link, and its ports are not shared).
   *
   * @default true
   */
  tunnels?: boolean;
}

/** A line about a tunnel section that started, changed or stopped. */
interface TunnelChange {
  level: LogLevel;
  line: string;
}

/** Tunnel sections staged for a start or reload (see Runner's #stageTunnels). */
interface StagedTunnels {
  commit(): TunnelChange[];
  cancel(): void;
}

interface Running {
  config: ListenerConfig;
  proxy: TcpProxy;
  /** Closed by an operator (disabled): a kept listener starts anew when enabled. */
  stopped?: boolean;
  /** Socket-level settings: a change needs a new listening socket. */
  socketKey: string;
}

/** A tunnel client's `socks` or `http_connect` entry as the client takes it. */
function entryListener(e: TunnelClientConfig["socks"][number]): TunnelEntryListener {
  return e.users === undefined ? { listen: e.listen } : { listen: e.listen, users: e.users };
}

function socketKey(l: ListenerConfig): string {
  // hooks are set when a listener starts: a change of module starts it anew
  return JSON.stringify([
    l.listen,
    l.tls,
    l.maxConnections,
    l.idleTimeout,
    l.connectTimeout,
    l.hooks,
  ]);
}

/** The counters of a listener (kept across reloads). */
export interface ListenerStats {
  /** Connections that ended. */
  total: number;
  /** Connections that opened. */
  opened: number;
  /** The most open at once. */
  peak: number;
  /** Bytes of ended connections, client to server and back. */
  up: number;
  down: number;
  failures: Map<string, number>; // connect failures by code
  /** Errors (refusals, failed connects, resets) by code. */
  errors: Map<string, number>;
}

/** A listener's counters before its first connection. */
export function newListenerStats(): ListenerStats {
  return { total: 0, opened: 0, peak: 0, up: 0, down: 0, failures: new Map(), errors: new Map() };
}

/** Add a proxy's totals to a listener's counters (the peak is the highest of one proxy). */
function addTotals(into: ListenerStats, t: ProxyTotals): void {
  into.total += t.ended;
  into.opened += t.accepted;
  into.peak = Math.max(into.peak, t.peak);
  into.up += t.bytesUp;
  into.down += t.bytesDown;
  for (const [code, n] of Object.entries(t.connectFailures)) {
    into.failures.set(code, (into.failures.get(code) ?? 0) + n);
  }
}

/**
 * A listener's counters: those of `proxies` read now, added to `retired`
 * (the totals of its earlier proxies), with its errors by code.
 */
export function statsOf(
  proxies: Iterable<TcpProxy>,
  retired: ListenerStats | undefined,
  errors: Map<string, number>,
): ListenerStats {
  const st = newListenerStats();
  if (retired !== undefined) {
    st.total = retired.total;
    st.opened = retired.opened;
    st.peak = retired.peak;
    st.up = retired.up;
    st.down = retired.down;
    for (const [code, n] of retired.failures) st.failures.set(code, n);
  }
  for (const p of proxies) addTotals(st, p.totals());
  st.errors = errors;
  return st;
}

/** A no-op listener for "original": see keepOriginals. */
const ORIGINALS = (): void => {};

/** How long a reload waits for the listeners it removed to close their sockets. */
const STOP_WAIT_MS = 2_000;

/**
 * While a proxy reads PROXY headers, listen for their originals (with a
 * no-op): `originalOf(id)` then answers for the admin's connection list.
 * Nothing is listened for otherwise (each would cost an event per connection).
 */
function keepOriginals(proxy: TcpProxy, on: boolean): void {
  if (on) proxy.on("original", ORIGINALS);
  else proxy.off("original", ORIGINALS);
}

/** A listener's proxies and counters, across reloads. */
interface Watched {
  /** Its proxies until they have drained. */
  proxies: Set<TcpProxy>;
  /** The totals of its proxies that have drained. */
  retired: ListenerStats;
  /** Errors by code ("error" events come whatever the interest). */
  errors: Map<string, number>;
}

/** Runs a config file's listeners. */
export class Runner {
  readonly #path: string;
  readonly #o: RunnerOptions;
  #running = new Map<string, Running>();
  #generation = 0;
  #backends = new Map<string, Backend>();
  #checkers: HealthChecker[] = [];
  /** Every listener name seen, with its proxies and counters. */
  #watched = new Map<string, Watched>();
  #metrics: MetricsServer | undefined;
  readonly #metricsTimeout: number;
  #stopping: TcpProxy[] = [];
  #tunnelServers = new Map<string, { server: TunnelServer }>();
  #tunnelClients = new Map<string, { config: TunnelClientConfig; client: TunnelClient }>();
  /** Listeners an operator disabled (by name). */
  #disabled = new Set<string>();
  /** Starts one listener with the options of the config applied last. */
  #make: ((l: ListenerConfig, at?: Endpoint, fd?: number) => Promise<TcpProxy>) | undefined;
  #lastReload: { ok: boolean; message: string } | undefined;
  #reloading: Promise<unknown> = Promise.resolve();

  /**
   * @param path The config file.
   * @param options Engine choice and where reports go.
   */
  constructor(path: string, options: RunnerOptions) {
    this.#path = path;
    this.#o = options;
    this.#metricsTimeout = options.metricsTimeout ?? METRICS_TIMEOUT;
  }

  /** The running listeners by name (for tests and status). */
  get listeners(): ReadonlyMap<string, TcpProxy> {
    return new Map([...this.#running].map(([k, v]) => [k, v.proxy]));
  }

  /** The backends of the config applied last, by name. */
  get backends(): ReadonlyMap<string, Backend> {
    return this.#backends;
  }

  /** The listeners with their counters and open connections, for the admin API. */
  adminView(): ListenerView[] {
    return [...this.#running].map(([name, r]) => ({
      name,
      route: r.config.backend ?? r.config.router?.kind ??
        (r.config.routes !== undefined ? "routes" : "route"),
      limit: r.config.maxConnections ?? 0,
      proxy: r.proxy,
      disabled: this.#disabled.has(name),
      stats: this.#statsOf(name),
      live: [...this.#watched.get(name)?.proxies ?? []],
    }));
  }

  /** The counters of listener `name`, read now. */
  #statsOf(name: string): ListenerStats {
    const w = this.#watched.get(name);
    return w === undefined ? newListenerStats() : statsOf(w.proxies, w.retired, w.errors);
  }

  /** How the last reload went, if there was one. */
  get lastReload(): { ok: boolean; message: string } | undefined {
    return this.#lastReload;
  }

  /**
   * Stop (`false`) or start again (`true`) accepting on a listener. A
   * disabled listener closes its socket, so new connections are refused;
   * the open ones go on; it stays disabled across reloads.
   *
   * @throws {RangeError} for a listener that does not exist.
   */
  async setListenerEnabled(name: string, enabled: boolean): Promise<void> {
    const r = this.#running.get(name);
    if (r === undefined) throw new RangeError(`no listener named "${name}"`);
    if (!enabled) {
      if (this.#disabled.has(name)) return;
      this.#disabled.add(name);
      r.stopped = true;
      void r.proxy.close();
      // answered once the socket is closed: a connection after this is refused
      await r.proxy.stopAccepting();
      return;
    }
    if (!this.#disabled.has(name)) return;
    // the same address it had (a port 0 in the file was given a port)
    const proxy = await this.#make!(
      r.config,
      r.socketKey === socketKey(r.config) ? r.proxy.address : undefined,
    );
    this.#disabled.delete(name);
    this.#running.set(name, { config: r.config, proxy, socketKey: socketKey(r.config) });
  }

  /** Load the config and start every listener; throws a ConfigError or a listen error. */
  async start(): Promise<void> {
    const config = loadConfig(this.#path);
    const tunnels = await this.#stageTunnels(config);
    try {
      await this.#apply(config);
    } catch (err) {
      tunnels.cancel();
      throw err;
    }
    for (const c of tunnels.commit()) this.#o.log(c.level, c.line);
    if (config.metrics !== undefined && this.#o.metrics) {
      this.#metrics = await serveMetrics(
        config.metrics,
        () => this.metrics(),
        this.#o.log,
        this.#metricsTimeout,
      );
    }
  }

  /** Where the metrics endpoint listens ("host:port"), if it does. */
  get metricsAddress(): string | undefined {
    return this.#metrics?.address;
  }

  /** The Prometheus text exposition of every listener and server. */
  metrics(): string {
    const lines: string[] = [];
    const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
    const metric = (name: string, help: string, type: string, rows: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of rows) lines.push(`${name}{${labels}} ${v}`);
    };
    const ls = [...this.#watched.keys()].map((n) => [n, this.#statsOf(n)] as const);
    const l = (n: string) => `listener="${esc(n)}"`;
    metric(
      "relaykit_listener_connections_active",
      "Open connections.",
      "gauge",
      ls.map(([n]) => [l(n), this.#running.get(n)?.proxy.connections ?? 0]),
    );
    metric(
      "relaykit_listener_connections_total",
      "Connections that ended.",
      "counter",
      ls.map(([n, s]) => [l(n), s.total]),
    );
    metric(
      "relaykit_listener_bytes_total",
      "Bytes relayed.",
      "counter",
      ls.flatMap(([n, s]) => [
        [`${l(n)},direction="up"`, s.up] as [string, number],
        [`${l(n)},direction="down"`, s.down] as [string, number],
      ]),
    );
    metric(
      "relaykit_listener_connect_failures_total",
      "Connects to a target that failed, by reason.",
      "counter",
      ls.flatMap(([n, s]) =>
        [...s.failures].map(([code, v]) => [`${l(n)},reason="${esc(code)}"`, v] as [string, number])
      ),
    );
    const servers = [...this.#backends.values()].flatMap((b) =>
      b.servers.map((s) => [`backend="${esc(b.name)}",server="${esc(s.name)}"`, s] as const)
    );
    metric(
      "relaykit_server_connections_active",
      "Open connections to the server.",
      "gauge",
      servers.map(([k, s]) => [k, s.active]),
    );
    metric(
      "relaykit_server_connections_total",
      "Connections sent to the server.",
      "counter",
      servers.map(([k, s]) => [k, s.total]),
    );
    metric(
      "relaykit_server_connect_failures_total",
      "Failed connects to the server.",
      "counter",
      servers.map(([k, s]) => [k, s.failures]),
    );
    metric(
      "relaykit_server_up",
      "1 if the server is up (health checks).",
      "gauge",
      servers.map(([k, s]) => [k, s.up ? 1 : 0]),
    );
    return lines.join("\n") + "\n";
  }

  /**
   * Load the file again and apply it. Returns false (and logs why) when it
   * is invalid or a listener cannot start: then nothing changed.
   */
  reload(): Promise<boolean> {
    // one at a time: a second SIGHUP waits for the first to be applied
    const next = this.#reloading.then(() => this.#reload());
    this.#reloading = next.catch(() => {});
    return next;
  }

  async #reload(): Promise<boolean> {
    let config: Config;
    try {
      config = loadConfig(this.#path);
    } catch (err) {
      this.#o.log("error", `reload: ${this.#path} is invalid, still running the previous config:`);
      for (const line of (err as Error).message.split("\n")) this.#o.log("error", `  ${line}`);
      this.#lastReload = { ok: false, message: (err as Error).message };
      return false;
    }
    let tunnels: StagedTunnels;
    try {
      // what binds first, tunnels then listeners: a failure changes nothing
      tunnels = await this.#stageTunnels(config);
      try {
        await this.#apply(config);
      } catch (err) {
        tunnels.cancel();
        throw err;
      }
    } catch (err) {
      this.#o.log("error", `reload: ${(err as Error).message}; still running the previous config`);
      this.#lastReload = { ok: false, message: (err as Error).message };
      return false;
    }
    const changes = tunnels.commit();
    for (const c of changes) this.#o.log(c.level, `reload: ${c.line}`);
    const what = changes.length === 0 ? "" : `; ${changes.map((c) => c.line).join("; ")}`;
    this.#lastReload = {
      ok: true,
      message: `${this.#path} applied (${config.listeners.length} listeners)${what}`,
    };
    this.#o.log(
      "info",
      `reload: ${this.#path} applied (${plural(config.listeners.length, "listener")})`,
    );
    return true;
  }

  /** Stop accepting everywhere; wait for connections to end, resetting them after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    const proxies = [...this.#running.values()].map((r) => r.proxy);
    this.#stopping.push(...proxies);
    this.#running.clear();
    for (const c of this.#checkers) c.stop();
    this.#checkers = [];
    this.#metrics?.close();
    for (const t of this.#tunnelServers.values()) void t.server.close();
    for (const t of this.#tunnelClients.values()) void t.client.close();
    this.#tunnelServers.clear();
    this.#tunnelClients.clear();
    const closing = Promise.all(proxies.map((p) => p.close()));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((r) => {
      timer = setTimeout(() => {
        for (const p of proxies) void p.abort();
        r();
      }, graceMs);
    });
    await Promise.race([closing, grace]);
    clearTimeout(timer);
    await closing;
  }

  /** Open connections, of running listeners and of stopping ones. */
  get connections(): number {
    let n = 0;
    for (const r of this.#running.values()) n += r.proxy.connections;
    for (const p of this.#stopping) n += p.connections;
    return n;
  }

  /** Reset every open connection now (a second Ctrl-C). */
  async abort(): Promise<void> {
    const all = [...[...this.#running.values()].map((r) => r.proxy), ...this.#stopping];
    await Promise.all(all.map((p) => p.abort()));
  }

  /**
   * Start, change and stop the tunnel sections to match `config` (at start
   * and on a reload), in two steps like the listeners: what needs a socket
   * binds now (a failure changes nothing); `commit()` applies the rest and
   * returns what changed, a line each. A section is matched by its name;
   * see TunnelServer.stage and TunnelClient.stage for what keeps the link.
   */
  async #stageTunnels(config: Config): Promise<StagedTunnels> {
    if (this.#o.tunnels === false) return { commit: () => [], cancel: () => {} };
    const base = dirname(resolve(this.#path));
    const secretOf = (s: { file: string } | { value: string } | undefined, name: string) => {
      if (s === undefined) return undefined;
      if ("value" in s) return s.value;
      try {
        const text = readFileSync(resolve(base, s.file), "utf8").trim();
        if (text === "") throw new Error("the file is empty");
        return text;
      } catch (err) {
        throw new Error(`tunnel "${name}": cannot read its secret_file: ${(err as Error).message}`);
      }
    };
    const read = (f: string) => readFileSync(resolve(base, f), "utf8");
    const steps: StagedTunnels[] = [];
    const cancel = () => {
      for (const s of steps) s.cancel();
    };
    const changed = (name: string, kind: string, changes: readonly string[], restart?: string) =>
      changes.map((c): TunnelChange => ({
        // a restart cuts the link's streams: worth a warning, with why
        level: restart !== undefined && /restarted/.test(c) ? "warn" : "info",
        line: `${name}: tunnel ${kind}: ${c}`,
      }));
    try {
      for (const t of config.tunnelServers) {
        // (no SO_REUSEPORT: on Bun it would move the link sockets off Bun.listen;
        // a TLS change on the same port closes the socket, then binds anew)
        const o: TunnelServerOptions = { listen: t.listen };
        const secret = secretOf(t.secret, t.name);
        if (secret !== undefined) o.secret = secret;
        if (t.tls !== undefined) o.tls = { cert: read(t.tls.cert), key: read(t.tls.key) };
        if (t.allow !== undefined) o.allow = t.allow;
        if (t.deny !== undefined) o.deny = t.deny;
        if (t.routes !== undefined) o.routes = t.routes;
        if (t.connectTimeout !== undefined) o.connectTimeout = t.connectTimeout;
        if (t.keepalive !== undefined) o.keepaliveInterval = t.keepalive;
        if (t.window !== undefined) o.window = t.window;
        const was = this.#tunnelServers.get(t.name);
        if (was !== undefined) {
          const staged = await was.server.stage(o);
          steps.push({
            commit: () => {
              staged.commit();
              return changed(t.name, "server", staged.changes, staged.restart);
            },
            cancel: () => staged.cancel(),
          });
          continue;
        }
        const srv = await TunnelServer.listen(o);
        steps.push({
          commit: () => {
            this.#tunnelServers.set(t.name, { server: srv });
            this.#watchTunnelServer(t.name, srv);
            return [{
              level: "info",
              line: `${t.name}: tunnel server on ${formatEndpoint(srv.address)}`,
            }];
          },
          cancel: () => void srv.close(),
        });
      }
      for (const [name, r] of this.#tunnelServers) {
        if (config.tunnelServers.some((t) => t.name === name)) continue;
        steps.push({
          commit: () => {
            this.#tunnelServers.delete(name);
            void r.server.close(); // GOAWAY on every link
            return [{ level: "info", line: `${name}: tunnel server stopped` }];
          },
          cancel: () => {},
        });
      }
      for (const t of config.tunnelClients) {
        const o: TunnelClientOptions = {
          link: t.link,
          listeners: t.listeners,
          socks: t.socks.map(entryListener),
          httpConnect: t.httpConnect.map(entryListener),
        };
        const secret = secretOf(t.secret, t.name);
        if (secret !== undefined) o.secret = secret;
        if (t.tls !== undefined) {
          o.tls = {};
          if (t.tls.ca !== undefined) o.tls.ca = read(t.tls.ca);
          if (t.tls.servername !== undefined) o.tls.servername = t.tls.servername;
        }
        if (t.keepalive !== undefined) o.keepaliveInterval = t.keepalive;
        if (t.reconnectMax !== undefined) o.reconnectMaxDelay = t.reconnectMax;
        const was = this.#tunnelClients.get(t.name);
        if (was !== undefined && was.client.stoppedBy === undefined) {
          const staged = await was.client.stage(o);
          steps.push({
            commit: () => {
              staged.commit();
              was.config = t;
              return changed(t.name, "client", staged.changes, staged.restart);
            },
            cancel: () => staged.cancel(),
          });
          continue;
        }
        // new, or stopped for good (refused by its server): start it (again)
        const c = await TunnelClient.start(o);
        steps.push({
          commit: () => {
            const ref = { config: t, client: c };
            this.#tunnelClients.set(t.name, ref);
            this.#watchTunnelClient(t.name, ref);
            return [{
              level: "info",
              line: `${t.name}: tunnel client: ${
                c.addresses.map((a, i) =>
                  `${formatEndpoint(a)} -> ${
                    i < t.listeners.length
                      ? formatDestination(t.listeners[i]!.to)
                      : i < t.listeners.length + t.socks.length
                      ? "SOCKS"
                      : "HTTP CONNECT"
                  }`
                )
                  .join(", ")
              } via ${formatEndpoint(t.link)}${was === undefined ? "" : " (started again)"}`,
            }];
          },
          cancel: () => void c.close(),
        });
      }
      for (const [name, r] of this.#tunnelClients) {
        if (config.tunnelClients.some((t) => t.name === name)) continue;
        steps.push({
          commit: () => {
            this.#tunnelClients.delete(name);
            void r.client.close(); // GOAWAY on its link
            return [{ level: "info", line: `${name}: tunnel client stopped` }];
          },
          cancel: () => {},
        });
      }
    } catch (err) {
      cancel();
      throw err;
    }
    return { commit: () => steps.flatMap((s) => s.commit()), cancel };
  }

  #watchTunnelServer(name: string, srv: TunnelServer): void {
    const log = this.#o.log;
    srv.on(
      "link",
      (e) => log("info", `${name}: link from ${e.remote} up (version ${e.version})`),
    );
    srv.on("link-close", (e) =>
      log(
        e.reason === "link-lost" || e.reason === "closed" ? "info" : "error",
        `${name}: link from ${e.remote} closed: ${e.reason}${
          e.error ? ` (${e.error.message})` : ""
        }`,
      ));
    srv.on("stream-end", (e) => {
      if (e.error !== undefined) {
        log(
          "debug",
          `${name}: ${e.remote} #${e.id} to ${
            formatDestination(e.destination)
          }: ${e.reason} (${e.error.message})`,
        );
      }
    });
  }

  /** Log a client's events; `ref.config` is the section as reloaded last. */
  #watchTunnelClient(
    name: string,
    ref: { config: TunnelClientConfig; client: TunnelClient },
  ): void {
    const log = this.#o.log;
    const c = ref.client;
    const at = () => formatEndpoint(ref.config.link);
    c.on("up", (e) => log("info", `${name}: link to ${at()} up (version ${e.version})`));
    c.on("down", (e) =>
      log(
        "error",
        `${name}: link to ${at()} down: ${e.reason}${
          e.error ? ` (${e.error.message})` : ""
        }; retrying in ${e.retryInMs} ms`,
      ));
    c.on(
      "refused",
      (e) =>
        log(
          "warn",
          `${name}: ${e.listener}: link down, connection closed`,
          `${name}: refused`,
        ),
    );
    c.on("entry-refused", (e) =>
      log(
        "warn",
        `${name}: ${e.listener}: request from ${e.remote ?? "?"} refused: ${e.what}`,
        `${name}: entry-refused`,
      ));
    c.on("stopped", (e) =>
      log(
        "error",
        `${name}: link to ${at()} refused: ${e.reason} (${e.error.message}); this tunnel client stopped`,
      ));
  }

  async #apply(config: Config): Promise<void> {
    const generation = ++this.#generation;
    const backends = new Map(config.backends.map((b) => [
      b.name,
      new Backend({
        name: b.name,
        servers: b.servers.map((s) => ({
          address: s.address,
          weight: s.weight,
          ...(s.name !== undefined ? { name: s.name } : {}),
        })),
        balance: b.balance,
        ...(b.retries !== undefined ? { retries: b.retries } : {}),
        ...(b.connectTimeout !== undefined ? { connectTimeout: b.connectTimeout } : {}),
        ...(b.sendProxy !== undefined ? { sendProxy: b.sendProxy } : {}),
      }),
    ]));
    // a checked server keeps its health across a reload, so that a change
    // is logged once, when a check sees it, not again by every reload
    for (const b of config.backends) {
      const was = this.#backends.get(b.name);
      if (b.healthCheck === undefined || was === undefined) continue;
      for (const s of backends.get(b.name)!.servers) {
        const same = was.servers.find((o) =>
          o.name === s.name && JSON.stringify(o.address) === JSON.stringify(s.address)
        );
        if (same !== undefined) s.up = same.up;
      }
    }
    // what an operator set (drain, maint) outlives a reload; weights come from the file
    for (const b of backends.values()) {
      const before = this.#backends.get(b.name);
      for (const s of b.servers) {
        const was = before?.servers.find((o) => o.name === s.name);
        if (was !== undefined) s.admin = was.admin;
      }
    }
    // modules first: a module that fails to load changes nothing
    const { routes, hooks } = await loadModules(config, this.#path, generation - 1);
    const where = (l: ListenerConfig) => {
      const r = l.router;
      const route = l.routes !== undefined
        ? { route: tableRoute(l.routes, backends) }
        : r === undefined
        ? routes.get(l.name)
        : {
          route: (r.kind === "socks" ? socksRouter : httpConnectRouter)({
            ...r.options,
            onDenied: (what, conn) =>
              this.#o.log("warn", `${l.name}: #${conn.id} refused: ${what}`, `${l.name}: refused`),
          }),
        };
      return {
        ...(l.backend !== undefined ? { backend: backends.get(l.backend)! } : {}),
        ...(route !== undefined ? { route: route.route } : {}),
        ...(l.acceptProxy !== undefined ? { acceptProxy: l.acceptProxy } : {}),
      };
    };
    const make = async (l: ListenerConfig, at?: Endpoint, fd?: number, replaces?: TcpProxy) => {
      const options: TcpProxyOptions = {
        listen: at ?? l.listen,
        engine: this.#o.engine,
        // a changed listener takes the old one's socket (native), or binds
        // beside it, before that one stops
        reusePort: true,
        ...(replaces !== undefined ? { replaces } : {}),
        ...where(l),
      };
      if (this.#o.nativeEngine !== undefined) options.nativeEngine = this.#o.nativeEngine;
      if (fd !== undefined) options.fd = fd; // inherited from systemd
      if (l.tls !== undefined) options.tls = l.tls;
      if (l.maxConnections !== undefined) options.maxConnections = l.maxConnections;
      if (l.idleTimeout !== undefined) options.idleTimeout = l.idleTimeout;
      if (l.connectTimeout !== undefined) options.connectTimeout = l.connectTimeout;
      const h = hooks.get(l.name);
      if (h !== undefined) options.hooks = h;
      const route = routes.get(l.name);
      if (route?.rewriteRequest !== undefined) options.rewriteRequest = route.rewriteRequest;
      if (route?.rewriteResponse !== undefined) options.rewriteResponse = route.rewriteResponse;
      const proxy = await TcpProxy.listen(options);
      this.#watch(l, proxy);
      return proxy;
    };
    const next = new Map<string, Running>();
    const started: TcpProxy[] = [];
    const fromSystemd = new Map<string, InheritedSocket>();
    try {
      for (const l of config.listeners) {
        const old = this.#running.get(l.name);
        if (old !== undefined && this.#disabled.has(l.name)) {
          // disabled by an operator: stays so, with the new settings for when it is enabled
          next.set(l.name, { ...old, config: l }); // socketKey: the socket it had
          continue;
        }
        if (old !== undefined && old.socketKey === socketKey(l) && old.stopped !== true) {
          next.set(l.name, old); // switched below, once everything is ready
          continue;
        }
        const inherited = matchSocket(inheritedSockets(), l.name, l.listen);
        if (inherited !== undefined) fromSystemd.set(l.name, inherited);
        const proxy = await make(
          l,
          undefined,
          inherited?.fd,
          old?.stopped === true ? undefined : old?.proxy,
        );
        started.push(proxy);
        next.set(l.name, { config: l, proxy, socketKey: socketKey(l) });
      }
    } catch (err) {
      for (const p of started) void p.abort();
      throw err;
    }
    // everything is up: health checks of the new backends, then switch the
    // kept listeners and stop the ones gone
    for (const c of this.#checkers) c.stop();
    this.#checkers = config.backends.flatMap((b) =>
      b.healthCheck === undefined ? [] : [
        new HealthChecker(backends.get(b.name)!, b.healthCheck, (c) => {
          this.#o.log(
            "warn",
            `backend "${c.backend}": server "${c.server.name}" is ${
              c.up ? "up" : `down (${c.reason})`
            }`,
          );
          this.#o.access?.({
            time: new Date().toISOString(),
            event: "health",
            action: c.up ? "up" : "down",
            target: `${c.backend}/${c.server.name}`,
            ...(c.reason !== undefined ? { reason: c.reason } : {}),
          });
        }),
      ]
    );
    this.#backends = backends;
    this.#make = make;
    for (const l of config.listeners) {
      const r = next.get(l.name)!;
      if (!started.includes(r.proxy) && !this.#disabled.has(l.name)) {
        r.proxy.reconfigure(where(l));
        keepOriginals(r.proxy, l.acceptProxy !== undefined);
        r.config = l;
      }
    }
    const gone = [...this.#running]
      .filter(([name, r]) => next.get(name)?.proxy !== r.proxy)
      .map(([, r]) => r.proxy);
    for (const p of gone) void p.close();
    for (const name of this.#disabled) if (!next.has(name)) this.#disabled.delete(name);
    this.#running = next;
    // done once the listeners gone have closed their sockets (a connection
    // after the reload's answer is refused there), but never held up for long
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(gone.map((p) => p.stopAccepting())),
      new Promise((resolve) => timer = setTimeout(resolve, STOP_WAIT_MS)),
    ]);
    clearTimeout(timer);
    for (const l of config.listeners) {
      const p = next.get(l.name)!.proxy;
      if (!started.includes(p)) continue;
      const s = fromSystemd.get(l.name);
      const from = s === undefined ? "" : `, inherited fd ${s.fd}${s.name ? ` "${s.name}"` : ""}`;
      this.#o.log("info", `listening on ${formatEndpoint(p.address)} (${p.engine} engine${from})`);
    }
  }

  #watch(l: ListenerConfig, proxy: TcpProxy): void {
    const name = l.name;
    let w = this.#watched.get(name);
    if (w === undefined) {
      this.#watched.set(
        name,
        w = { proxies: new Set(), retired: newListenerStats(), errors: new Map() },
      );
    }
    const watched = w;
    watched.proxies.add(proxy);
    // once it has drained its totals are final: they move to the retired ones
    void proxy.drained().then(() => {
      if (!watched.proxies.delete(proxy)) return;
      addTotals(watched.retired, proxy.totals());
    });
    proxy.on("error", (err) => {
      watched.errors.set(err.code, (watched.errors.get(err.code) ?? 0) + 1);
      this.#o.log("warn", `${name}: ${err.message}`, `${name}: ${err.code}`);
    });
    keepOriginals(proxy, l.acceptProxy !== undefined);
    const access = this.#o.access;
    if (access === undefined) return; // nothing per connection
    const clients = new Map<number, string>();
    proxy.on("open", (c) => {
      if (c.remote !== undefined) clients.set(c.id, formatEndpoint(c.remote));
    });
    proxy.on("close", (e: ConnectionEnd) => {
      const rec: AccessRecord = {
        time: new Date(Date.now() - e.durationMs).toISOString(),
        listener: name,
        id: e.id,
        duration_ms: e.durationMs,
        bytes_up: e.aToB.written,
        bytes_down: e.bToA.written,
        end: e.reason,
      };
      const client = clients.get(e.id);
      clients.delete(e.id);
      if (client !== undefined) rec.client = client;
      const src = e.original?.source;
      if (e.original?.header !== undefined && src !== undefined) {
        rec.original_client = formatEndpoint(src);
      }
      if (e.server !== undefined) rec.server = e.server;
      if (e.error !== undefined) rec.error = `${e.error.code}: ${e.error.message}`;
      access(rec);
    });
  }
}

/**
 * A listener's routing table as a route function. An entry with an address
 * (`to`) is decided by the native engine itself; an entry with a backend is
 * balanced per connection by its Backend (server states, counters,
 * failover), in JavaScript.
 */
function tableRoute(
  entries: readonly RouteEntryConfig[],
  backends: ReadonlyMap<string, Backend>,
): RouteFunction {
  return routeTable(entries.map((e) => {
    const out: RouteTableEntry = { ...e.match };
    if (e.connectTimeout !== undefined) out.connectTimeout = e.connectTimeout;
    if (!("backend" in e.to)) {
      out.to = { host: e.to.host, port: e.to.port };
      return out;
    }
    // a backend's servers have states the admin API changes (drain, maint),
    // counters and failover: its Backend decides each connection
    out.backend = backends.get(e.to.backend)!;
    return out;
  }));
}
