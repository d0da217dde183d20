/**
 * `relaykit ctl`'s requests and answers: each of its commands as an admin
 * API request ({@linkcode CTL_COMMANDS}), and the answers as tables for
 * people or the API's own JSON for scripts. Its command line (options,
 * help) is declared in src/cli/ctl.ts with every other command's.
 *
 * @module
 */
import type { Endpoint } from "../types.ts";
import { httpRequest } from "./http.ts";
import type { ConnPage, ListenerInfo, ProcessInfo, ServerInfo } from "./types.ts";

/** A text table: columns padded, numbers right-aligned. */
export function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const width = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const right = head.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === "number"));
  return cells.map((r) =>
    r.map((c, i) => right[i] ? c.padStart(width[i]!) : c.padEnd(width[i]!)).join("  ").trimEnd()
  ).join("\n");
}

function size(n: number): string {
  const units = ["B", "K", "M", "G", "T"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n}B` : `${n.toFixed(1)}${units[i]}`;
}

function ago(ms: number): string {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : `${Math.floor(s / 3600)}h`;
}

/** How each read is shown as a table. */
const VIEWS = {
  process: (p: ProcessInfo) =>
    table(["field", "value"], [
      ["version", p.version],
      ["runtime", `${p.runtime} ${p.runtime_version}`],
      ["pid", p.pid],
      ["engine", p.engine + (p.engine_reason === null ? "" : ` (${p.engine_reason})`)],
      ["uptime", ago(p.uptime_s * 1000)],
      ["workers", p.workers],
      ["fds", p.fds],
      ["rss", size(p.rss_bytes)],
      ["config", p.config],
      [
        "last reload",
        p.last_reload === null
          ? "-"
          : `${p.last_reload.ok ? "ok" : "refused"}: ${p.last_reload.message.split("\n")[0]}`,
      ],
    ]),
  listeners: (ls: ListenerInfo[]) =>
    table(
      [
        "NAME",
        "ADDRESS",
        "ENGINE",
        "STATE",
        "CUR",
        "MAX",
        "TOTAL",
        "IN",
        "OUT",
        "CONN/S",
        "ERRORS",
      ],
      ls.map((l) => [
        l.name,
        l.address,
        l.engine,
        l.state,
        l.current,
        l.peak,
        l.opened,
        size(l.bytes_in),
        size(l.bytes_out),
        l.rate.conn_per_s,
        Object.entries(l.errors).map(([k, v]) => `${k}:${v}`).join(",") || "-",
      ]),
    ),
  servers: (ss: ServerInfo[]) =>
    table(
      ["SERVER", "ADDRESS", "STATE", "HEALTH", "WEIGHT", "CUR", "TOTAL", "FAIL", "IN", "OUT"],
      ss.map((s) => [
        `${s.backend}/${s.name}`,
        s.address,
        s.state,
        s.health === null ? "-" : s.health.ok ? "ok" : `fail:${s.health.reason ?? ""}`,
        s.weight,
        s.current,
        s.total,
        s.connect_failures,
        size(s.bytes_in),
        size(s.bytes_out),
      ]),
    ),
  conns: (page: ConnPage) => {
    const workers = page.connections.some((c) => c.worker !== undefined);
    const head = ["ID", ...(workers ? ["WORKER"] : []), "LISTENER", "CLIENT", "ORIGINAL", "SERVER"];
    const rows = page.connections.map((c) => [
      c.id,
      ...(workers ? [c.worker ?? 0] : []),
      c.listener,
      c.client ?? "-",
      c.original_client ?? "-",
      c.server ?? "-",
      ago(c.age_ms),
      size(c.bytes_in),
      size(c.bytes_out),
      c.state,
    ]);
    const shown = page.connections.length === 0
      ? `0 of ${page.total}`
      : `${page.offset + 1}-${page.offset + page.connections.length} of ${page.total}`;
    return `${table([...head, "AGE", "IN", "OUT", "STATE"], rows)}\n(${shown})`;
  },
};

/** What a ctl command asks of the admin API. */
export interface CtlRequest {
  method: "GET" | "POST";
  /** Under /api/v1/. */
  path: string;
  body?: unknown;
  /** How a read's answer is shown to people; actions print ok/refused. */
  view?: (v: never) => string;
}

/** The filters of `ctl conns`, by their query parameter. */
export type ConnFilters = Partial<
  Record<"listener" | "server" | "client" | "offset" | "limit", string>
>;

/** One ctl command: its words after the name, its help, and its request. */
export interface CtlCommand {
  readonly name: string;
  /** Its arguments, as shown in help ("BACKEND/SERVER N"). */
  readonly args: readonly string[];
  readonly help: string;
  /** The request for these arguments; a RangeError for a malformed one. */
  request(args: readonly string[], o: { filters: ConnFilters; worker?: string }): CtlRequest;
}

function server(text: string): string {
  const slash = text.indexOf("/");
  if (slash <= 0 || slash === text.length - 1) {
    throw new RangeError(`"${text}" is not BACKEND/SERVER`);
  }
  return `${encodeURIComponent(text.slice(0, slash))}/${encodeURIComponent(text.slice(slash + 1))}`;
}

const read = (name: "process" | "listeners" | "servers", help: string): CtlCommand => ({
  name,
  args: [],
  help,
  request: () => ({ method: "GET", path: name, view: VIEWS[name] as (v: never) => string }),
});

const state = (name: "drain" | "maint" | "ready", help: string): CtlCommand => ({
  name,
  args: ["BACKEND/SERVER"],
  help,
  request: ([s]) => ({
    method: "POST",
    path: `servers/${server(s!)}/state`,
    body: { state: name },
  }),
});

const listenerSwitch = (name: "enable" | "disable", help: string): CtlCommand => ({
  name,
  args: ["LISTENER"],
  help,
  request: ([l]) => ({ method: "POST", path: `listeners/${encodeURIComponent(l!)}/${name}` }),
});

/** Every ctl command, in the order its help lists them. */
export const CTL_COMMANDS: readonly CtlCommand[] = [
  read("process", "version, runtime, engine, uptime, workers, fds, RSS"),
  read("listeners", "every listener with its counters"),
  read("servers", "every backend server with its state and counters"),
  {
    name: "conns",
    args: [],
    help: "open connections, a page of them (--listener, --server, --client, --offset, --limit)",
    request: (_, { filters }) => {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(filters)) if (v !== undefined) q.set(k, v);
      return {
        method: "GET",
        path: `connections${q.size > 0 ? `?${q}` : ""}`,
        view: VIEWS.conns as (v: never) => string,
      };
    },
  },
  state("drain", "stop new connections to a server; open ones finish"),
  state("maint", "drain a server and stop its health checks"),
  state("ready", "take new connections again"),
  {
    name: "weight",
    args: ["BACKEND/SERVER", "N"],
    help: "set a server's weight (0-256)",
    request: ([s, n]) => {
      if (!/^\d+$/.test(n!)) throw new RangeError(`weight: "${n}" is not a number`);
      return { method: "POST", path: `servers/${server(s!)}/weight`, body: { weight: Number(n) } };
    },
  },
  {
    name: "close",
    args: ["ID"],
    help: "close a connection (--worker N: on that worker)",
    request: ([id], { worker }) => {
      if (!/^\d+$/.test(id!)) throw new RangeError(`close: "${id}" is not a connection id`);
      const w = worker === undefined ? "" : `?worker=${encodeURIComponent(worker)}`;
      return { method: "POST", path: `connections/${id}/close${w}` };
    },
  },
  {
    name: "reload",
    args: [],
    help: "reload the config (as SIGHUP), with the result",
    request: () => ({ method: "POST", path: "reload" }),
  },
  listenerSwitch("enable", "start accepting on a listener again"),
  listenerSwitch("disable", "stop accepting on a listener"),
];

/**
 * Send `req` to the admin endpoint at `to` and print the answer: the JSON
 * with `json`, else a table (reads) or ok/refused lines (actions).
 *
 * @returns the exit code: 0, or 1 when the instance refuses or fails.
 */
export async function ctlSend(
  to: Endpoint,
  req: CtlRequest,
  o: { token?: string; json: boolean },
): Promise<number> {
  const headers: Record<string, string> = {};
  if (o.token !== undefined && o.token !== "") headers.Authorization = `Bearer ${o.token}`;
  const options: { headers: Record<string, string>; body?: string } = { headers };
  if (req.body !== undefined) {
    options.body = JSON.stringify(req.body);
    headers["Content-Type"] = "application/json";
  }
  const answer = await httpRequest(to, req.method, `/api/v1/${req.path}`, options);
  let value: unknown;
  try {
    value = JSON.parse(answer.body);
  } catch {
    throw new Error(`the answer (HTTP ${answer.status}) is not JSON: ${answer.body.slice(0, 200)}`);
  }
  if (o.json) console.log(JSON.stringify(value, null, 2));
  if (answer.status !== 200) {
    const error = (value as { error?: string }).error ?? `HTTP ${answer.status}`;
    if (!o.json) console.error(`relaykit ctl: ${error} (HTTP ${answer.status})`);
    return 1;
  }
  if (o.json) return (value as { ok?: boolean }).ok === false ? 1 : 0;
  if (req.view !== undefined) {
    console.log(req.view(value as never));
    return 0;
  }
  const r = value as {
    ok: boolean;
    message: string;
    per_worker?: { worker: number; ok: boolean; message: string }[];
  };
  console.log(`${r.ok ? "ok" : "refused"}: ${r.message}`);
  for (const w of r.per_worker ?? []) {
    console.log(`  worker ${w.worker}: ${w.ok ? "ok" : "refused"}: ${w.message}`);
  }
  return r.ok ? 0 : 1;
}
