/**
 * The admin API of one process: reads come from the engines' counters and
 * their lists of open connections (TcpProxy.totals, openConnections), read
 * when a request asks, so nothing runs per connection while nobody asks.
 *
 * @module
 */
import process from "node:process";
import { readdirSync, statSync } from "node:fs";
import { formatEndpoint } from "../forward/types.ts";
import type { AccessRecord, EventRecord, ListenerView, LogLevel } from "../config/run.ts";
import type { Backend, Server } from "../proxy/balance.ts";
import type { TcpProxy } from "../proxy/tcp_proxy.ts";
import type { OpenConnection } from "../types.ts";
import { runtime } from "../runtime/detect.ts";
import { VERSION } from "../version.ts";
import {
  type ActionResult,
  type Actor,
  type AdminSource,
  type BackendInfo,
  type ConnInfo,
  type ConnPage,
  type ConnQuery,
  type ListenerInfo,
  NotFound,
  type ProcessInfo,
  type Rates,
  type ServerInfo,
} from "./types.ts";

/**
 * How long one pass over the open connections' counters (for the servers'
 * bytes) serves later reads, in ms: 250, and half a millisecond per open
 * connection above 500.
 */
function liveCacheMs(open: number): number {
  return Math.max(250, open / 2);
}

/** Bytes of the open connections, by server. */
type LiveBytes = Map<Server, [number, number]>;

/** The window over which rates are computed, in ms. */
const RATE_WINDOW = 5_000;

let fdsAt = 0, fdsCount = 0;

/**
 * Open fds of this process (0 where /proc is not there). Linux 6.2 and
 * later give their number as the size of /proc/self/fd, without listing it;
 * elsewhere the listing, which takes time and memory with many connections
 * open, is kept for a second per 1,000 fds.
 */
export function openFds(): number {
  try {
    const n = statSync("/proc/self/fd").size;
    if (n > 0) return n;
  } catch {
    return 0;
  }
  const now = Date.now();
  if (now - fdsAt < Math.max(200, fdsCount)) return fdsCount;
  try {
    fdsCount = readdirSync("/proc/self/fd").length;
  } catch {
    fdsCount = 0;
  }
  fdsAt = now;
  return fdsCount;
}

/** Open connections of a listener, on all its proxies. */
function current(v: ListenerView): number {
  return v.live.reduce((n, p) => n + p.connections, 0);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function serverInfo(backend: string, s: Server, live: Map<Server, [number, number]>): ServerInfo {
  const [liveIn, liveOut] = live.get(s) ?? [0, 0];
  return {
    backend,
    name: s.name,
    address: formatEndpoint(s.address),
    state: s.state,
    admin: s.admin,
    up: s.up,
    health: s.lastCheck === undefined ? null : {
      ok: s.lastCheck.ok,
      reason: s.lastCheck.reason ?? null,
      at: iso(s.lastCheck.at),
    },
    changed_at: iso(s.changedAt),
    weight: s.weight,
    current: s.active,
    total: s.total,
    connect_failures: s.failures,
    bytes_in: s.bytesUp + liveIn,
    bytes_out: s.bytesDown + liveOut,
  };
}

/**
 * What {@linkcode LocalSource} reads and acts on: a `Runner` (relaykit run),
 * or the one proxy of a command such as `relaykit forward` (see proxy_target.ts).
 */
export interface AdminTarget {
  /** The listeners with their counters and open connections. */
  adminView(): ListenerView[];
  /** The running proxies by listener name. */
  readonly listeners: ReadonlyMap<string, TcpProxy>;
  readonly backends: ReadonlyMap<string, Backend>;
  readonly lastReload: { ok: boolean; message: string } | undefined;
  /** Reload the config; false when it was refused (`lastReload` says why). */
  reload(): Promise<boolean>;
  /** @throws {RangeError} for no such listener, or where listeners cannot be switched. */
  setListenerEnabled(name: string, enabled: boolean): Promise<void>;
  metrics(): string;
}

/** Options of {@linkcode LocalSource}. */
export interface LocalSourceOptions {
  /** The config file's path. */
  config: string;
  /** The engine the runner was asked for, and the reason when native is not in use. */
  engine: string;
  engineReason: string | undefined;
  log(level: LogLevel, line: string): void;
  access(record: AccessRecord | EventRecord): void;
  /** Whether the metrics endpoint shares the admin listener. */
  metrics: boolean;
}

/** The admin API of one process. */
export class LocalSource implements AdminSource {
  readonly #runner: AdminTarget;
  readonly #o: LocalSourceOptions;
  readonly #started = Date.now();
  /** Totals at earlier requests, for rates (only while someone asks). */
  #samples: { at: number; totals: Map<string, [number, number, number]> }[] = [];
  #liveCache: { at: number; value: LiveBytes; open: number; ended: number } | undefined;

  /**
   * @param runner The running config.
   * @param options Where reports go, and what to say about the process.
   */
  constructor(runner: AdminTarget, options: LocalSourceOptions) {
    this.#runner = runner;
    this.#o = options;
  }

  process(): Promise<ProcessInfo> {
    const now = Date.now();
    const first = [...this.#runner.listeners.values()][0];
    return Promise.resolve({
      version: VERSION,
      runtime: runtime.name,
      runtime_version: runtime.version,
      pid: process.pid,
      engine: first?.engine ?? this.#o.engine,
      engine_reason: (first === undefined ? this.#o.engineReason : first.engineReason) ?? null,
      started_at: iso(this.#started),
      uptime_s: Math.round((now - this.#started) / 1000),
      workers: 1,
      fds: openFds(),
      rss_bytes: process.memoryUsage().rss,
      config: this.#o.config,
      last_reload: this.#runner.lastReload ?? null,
    });
  }

  /**
   * Bytes of every open connection by server (one pass serves a /stats;
   * none without backends: a listener's bytes come with its totals).
   */
  #liveBytes(views: ListenerView[]): LiveBytes {
    if (this.#runner.backends.size === 0) return new Map();
    const now = Date.now();
    const c = this.#liveCache;
    // a connection that ended since the pass has its bytes in the totals
    // now: the pass is redone, or they would count twice (with many open,
    // for a while: they then count twice until the pass is redone)
    const ended = views.reduce((n, v) => n + v.stats.total, 0);
    if (
      c !== undefined && now - c.at < liveCacheMs(c.open) &&
      (c.ended === ended || c.open > 1_000)
    ) return c.value;
    const value = this.#sumLive(views);
    const open = views.reduce((n, v) => n + current(v), 0);
    this.#liveCache = { at: now, value, open, ended };
    return value;
  }

  #sumLive(views: ListenerView[]): LiveBytes {
    const servers: LiveBytes = new Map();
    for (const v of views) {
      for (const proxy of v.live) {
        // one pass, no object per connection
        const snap = proxy.snapshot();
        for (let i = 0; i < snap.size; i++) {
          const s = proxy.serverOf(snap.id(i));
          if (s === undefined) continue;
          const t = servers.get(s) ?? [0, 0];
          t[0] += snap.up(i);
          t[1] += snap.down(i);
          servers.set(s, t);
        }
      }
    }
    return servers;
  }

  #rates(now: number, totals: Map<string, [number, number, number]>): Map<string, Rates> {
    this.#samples = this.#samples.filter((s) => now - s.at <= RATE_WINDOW);
    const oldest = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (last === undefined || now - last.at >= 500) this.#samples.push({ at: now, totals });
    const out = new Map<string, Rates>();
    for (const [name, [c, i, o]] of totals) {
      const before = oldest?.totals.get(name);
      const dt = oldest === undefined ? 0 : (now - oldest.at) / 1000;
      out.set(
        name,
        before === undefined || dt <= 0
          ? { conn_per_s: 0, bytes_in_per_s: 0, bytes_out_per_s: 0 }
          : {
            conn_per_s: Math.round(Math.max(0, c - before[0]) / dt * 10) / 10,
            bytes_in_per_s: Math.round(Math.max(0, i - before[1]) / dt),
            bytes_out_per_s: Math.round(Math.max(0, o - before[2]) / dt),
          },
      );
    }
    return out;
  }

  listeners(): Promise<ListenerInfo[]> {
    const views = this.#runner.adminView();
    const now = Date.now();
    const totals = new Map<string, [number, number, number]>();
    for (const v of views) totals.set(v.name, [v.stats.opened, v.stats.up, v.stats.down]);
    const rates = this.#rates(now, totals);
    return Promise.resolve(views.map((v): ListenerInfo => {
      const [, bytesIn, bytesOut] = totals.get(v.name)!;
      return {
        name: v.name,
        address: formatEndpoint(v.proxy.address),
        engine: v.proxy.engine,
        state: v.disabled ? "disabled" : "enabled",
        route: v.route,
        current: current(v),
        peak: v.stats.peak,
        limit: v.limit,
        opened: v.stats.opened,
        total: v.stats.total,
        bytes_in: bytesIn,
        bytes_out: bytesOut,
        errors: Object.fromEntries(v.stats.errors),
        connect_failures: Object.fromEntries(v.stats.failures),
        rate: rates.get(v.name)!,
      };
    }));
  }

  backends(): Promise<BackendInfo[]> {
    const live = this.#liveBytes(this.#runner.adminView());
    return Promise.resolve([...this.#runner.backends.values()].map((b) => {
      const servers = b.servers.map((s) => serverInfo(b.name, s, live));
      return {
        name: b.name,
        balance: b.balance,
        current: servers.reduce((n, s) => n + s.current, 0),
        total: servers.reduce((n, s) => n + s.total, 0),
        servers,
      };
    }));
  }

  connections(q: ConnQuery): Promise<ConnPage> {
    const now = Date.now();
    const out: ConnInfo[] = [];
    let total = 0;
    for (const v of this.#runner.adminView()) {
      if (q.listener !== undefined && v.name !== q.listener) continue;
      const route = v.route;
      const info = (proxy: TcpProxy, c: OpenConnection): ConnInfo => {
        const original = proxy.originalOf(c.id);
        const server = proxy.serverOf(c.id);
        return {
          id: c.id,
          listener: v.name,
          client: c.remote === undefined ? null : formatEndpoint(c.remote),
          original_client: original?.header !== undefined && original.source !== undefined
            ? formatEndpoint(original.source)
            : null,
          server: server === undefined ? null : `${route}/${server.name}`,
          route,
          age_ms: Math.max(0, now - c.startedAt),
          bytes_in: c.aToB.written,
          bytes_out: c.bToA.written,
          state: c.state,
          engine: proxy.engine,
        };
      };
      for (const proxy of v.live) {
        // oldest first: pages stay put while more open
        if (q.server === undefined && q.client === undefined) {
          // no filter: only as many as the page reaches are read, and only
          // the page's connections in full
          if (out.length >= q.limit) {
            total += proxy.connections;
            continue;
          }
          const from = Math.max(0, q.offset - total);
          const snap = proxy.snapshot(from + q.limit - out.length);
          for (let i = from; i < snap.size && out.length < q.limit; i++) {
            out.push(info(proxy, snap.at(i)));
          }
          total += snap.total;
          continue;
        }
        const snap = proxy.snapshot();
        for (let i = 0; i < snap.size; i++) {
          const id = snap.id(i);
          const s = proxy.serverOf(id);
          if (q.server !== undefined) {
            const full = s === undefined ? "" : `${route}/${s.name}`;
            if (full !== q.server && route !== q.server) continue;
            if (s === undefined) continue;
          }
          let c: ConnInfo | undefined;
          if (q.client !== undefined) {
            c = info(proxy, snap.at(i));
            if (
              !(c.client ?? "").includes(q.client) && !(c.original_client ?? "").includes(q.client)
            ) {
              continue;
            }
          }
          total++;
          if (total <= q.offset || out.length >= q.limit) continue;
          out.push(c ?? info(proxy, snap.at(i)));
        }
      }
    }
    return Promise.resolve({ total, offset: q.offset, limit: q.limit, connections: out });
  }

  #record(action: string, target: string, who: Actor, value?: string | number): void {
    const rec: EventRecord = {
      time: new Date().toISOString(),
      event: "admin",
      action,
      target,
      by: who.by,
      peer: who.peer,
    };
    if (value !== undefined) rec.value = value;
    this.#o.access(rec);
  }

  setServer(
    backend: string,
    server: string,
    change: { state?: "ready" | "drain" | "maint"; weight?: number },
    who: Actor,
  ): Promise<ActionResult> {
    const b = this.#runner.backends.get(backend);
    if (b === undefined) throw new NotFound(`no backend named "${backend}"`);
    const s = b.servers.find((s) => s.name === server);
    if (s === undefined) throw new NotFound(`backend "${backend}" has no server "${server}"`);
    const said: string[] = [];
    if (change.weight !== undefined) {
      b.setWeight(s, change.weight); // RangeError for a bad one
      said.push(`weight ${change.weight}`);
      this.#record("server-weight", `${backend}/${server}`, who, change.weight);
    }
    if (change.state !== undefined) {
      if (s.admin !== change.state) s.changedAt = Date.now();
      s.admin = change.state;
      said.push(`state ${change.state}`);
      this.#record("server-state", `${backend}/${server}`, who, change.state);
    }
    const message = `server "${backend}/${server}": ${said.join(", ")}`;
    this.#o.log("info", `admin: ${message} (by "${who.by}" from ${who.peer})`);
    return Promise.resolve({ ok: true, message });
  }

  closeConnection(id: number, _worker: number | undefined, who: Actor): Promise<ActionResult> {
    for (const v of this.#runner.adminView()) {
      for (const proxy of v.live) {
        // (ids are engine-wide: ask each proxy for its own)
        const snap = proxy.snapshot();
        let has = false;
        for (let i = 0; i < snap.size && !has; i++) has = snap.id(i) === id;
        if (!has) continue;
        proxy.closeConnection(id, "abort");
        const message = `connection #${id} of listener "${v.name}" closed`;
        this.#record("close-connection", `${v.name}#${id}`, who);
        this.#o.log("info", `admin: ${message} (by "${who.by}" from ${who.peer})`);
        return Promise.resolve({ ok: true, message });
      }
    }
    throw new NotFound(`no open connection #${id}`);
  }

  async reload(who: Actor): Promise<ActionResult> {
    this.#o.log("info", `admin: reload (by "${who.by}" from ${who.peer})`);
    const ok = await this.#runner.reload();
    const r = this.#runner.lastReload!;
    this.#record("reload", this.#o.config, who, ok ? "applied" : "refused");
    return { ok, message: r.message };
  }

  async setListener(name: string, enabled: boolean, who: Actor): Promise<ActionResult> {
    if (!this.#runner.listeners.has(name)) throw new NotFound(`no listener named "${name}"`);
    await this.#runner.setListenerEnabled(name, enabled);
    const message = `listener "${name}" ${enabled ? "enabled" : "disabled"}`;
    this.#record(enabled ? "listener-enable" : "listener-disable", name, who);
    this.#o.log("info", `admin: ${message} (by "${who.by}" from ${who.peer})`);
    return { ok: true, message };
  }

  metrics(): Promise<string> {
    return Promise.resolve(this.#runner.metrics());
  }
}
