/**
 * `relaykit ctl`: the admin API from the command line, against a running
 * instance. Tables for people, `--json` for scripts (the API's own JSON).
 *
 *   relaykit ctl --admin 127.0.0.1:9901 servers
 *   relaykit ctl --admin 127.0.0.1:9901 drain app/a
 *   relaykit ctl --admin /run/relaykit-admin.sock conns --listener web --json
 *
 * The token comes from --token or RELAYKIT_ADMIN_TOKEN.
 *
 * @module
 */
import process from "node:process";
import { parseEndpoint } from "../types.ts";
import { httpRequest } from "./http.ts";
import { TOKEN_ENV } from "./serve.ts";
import type { ConnPage, ListenerInfo, ProcessInfo, ServerInfo } from "./types.ts";

/** The help of `relaykit ctl`. */
export const CTL_HELP = `relaykit ctl --admin HOST:PORT|SOCKET [--token T] [--json] COMMAND

Commands:
  process                      version, runtime, engine, uptime, workers, fds, RSS
  listeners                    every listener with its counters
  servers                      every backend server with its state and counters
  conns [--listener L] [--server B/S] [--client TEXT] [--offset N] [--limit N]
                               open connections (a page of them)
  drain B/S | maint B/S | ready B/S
                               set a server's state (drain: no new connections;
                               maint: drain and no health checks; ready)
  weight B/S N                 set a server's weight (0-256)
  close ID [--worker N]        close a connection
  reload                       reload the config (as SIGHUP), with the result
  enable L | disable L         start or stop accepting on a listener

The token comes from --token or ${TOKEN_ENV}. Exit code 1 when the instance
refuses or fails an action, 2 for a usage mistake.`;

class CtlUsage extends Error {}

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

/**
 * Run `relaykit ctl` with `args`; prints the answer.
 *
 * @returns the exit code: 0, 1 when the instance refuses or fails, 2 for a usage mistake.
 */
export async function ctlCommand(args: string[]): Promise<number> {
  try {
    return await ctl(args);
  } catch (err) {
    console.error(`relaykit ctl: ${(err as Error).message}`);
    return err instanceof CtlUsage ? 2 : 1;
  }
}

async function ctl(args: string[]): Promise<number> {
  const flags = new Map<string, string>();
  const words: string[] = [];
  let json = false;
  const valued = [
    "--admin",
    "--token",
    "--listener",
    "--server",
    "--client",
    "--offset",
    "--limit",
    "--worker",
  ];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--json") json = true;
    else if (a === "--help" || a === "-h") {
      console.log(CTL_HELP);
      return 0;
    } else if (valued.includes(a)) {
      const v = args[++i];
      if (v === undefined) throw new CtlUsage(`${a} needs a value`);
      flags.set(a, v);
    } else if (a.startsWith("--")) throw new CtlUsage(`unknown option "${a}" (see ctl --help)`);
    else words.push(a);
  }
  const at = flags.get("--admin");
  if (at === undefined) throw new CtlUsage("--admin HOST:PORT (or a socket path) is required");
  let to;
  try {
    to = parseEndpoint(at.startsWith(":") ? `127.0.0.1${at}` : at, "--admin");
  } catch (err) {
    throw new CtlUsage((err as Error).message);
  }
  const token = flags.get("--token") ?? process.env[TOKEN_ENV];
  const [cmd, ...rest] = words;
  const arity = (n: number, usage: string) => {
    if (rest.length !== n) throw new CtlUsage(`usage: relaykit ctl ${usage}`);
  };
  const server = (text: string) => {
    const slash = text.indexOf("/");
    if (slash <= 0 || slash === text.length - 1) {
      throw new CtlUsage(`"${text}" is not BACKEND/SERVER`);
    }
    return `${encodeURIComponent(text.slice(0, slash))}/${
      encodeURIComponent(text.slice(slash + 1))
    }`;
  };
  let method = "GET", path: string, view: ((v: never) => string) | undefined;
  let body: unknown;
  switch (cmd) {
    case "process":
    case "listeners":
    case "servers":
      arity(0, cmd);
      path = cmd;
      view = VIEWS[cmd] as (v: never) => string;
      break;
    case "conns": {
      arity(0, "conns [--listener L] [--server B/S] [--client TEXT] [--offset N] [--limit N]");
      const q = new URLSearchParams();
      for (const k of ["listener", "server", "client", "offset", "limit"]) {
        const v = flags.get(`--${k}`);
        if (v !== undefined) q.set(k, v);
      }
      path = `connections${q.size > 0 ? `?${q}` : ""}`;
      view = VIEWS.conns as (v: never) => string;
      break;
    }
    case "drain":
    case "maint":
    case "ready":
      arity(1, `${cmd} BACKEND/SERVER`);
      [method, path, body] = ["POST", `servers/${server(rest[0]!)}/state`, { state: cmd }];
      break;
    case "weight":
      arity(2, "weight BACKEND/SERVER N");
      if (!/^\d+$/.test(rest[1]!)) throw new CtlUsage(`weight: "${rest[1]}" is not a number`);
      [method, path, body] = ["POST", `servers/${server(rest[0]!)}/weight`, {
        weight: Number(rest[1]),
      }];
      break;
    case "close": {
      arity(1, "close ID [--worker N]");
      if (!/^\d+$/.test(rest[0]!)) throw new CtlUsage(`close: "${rest[0]}" is not a connection id`);
      const w = flags.get("--worker");
      [method, path] = [
        "POST",
        `connections/${rest[0]}/close${w === undefined ? "" : `?worker=${encodeURIComponent(w)}`}`,
      ];
      break;
    }
    case "reload":
      arity(0, "reload");
      [method, path] = ["POST", "reload"];
      break;
    case "enable":
    case "disable":
      arity(1, `${cmd} LISTENER`);
      [method, path] = ["POST", `listeners/${encodeURIComponent(rest[0]!)}/${cmd}`];
      break;
    case undefined:
      throw new CtlUsage("which command? (see relaykit ctl --help)");
    default:
      throw new CtlUsage(`unknown command "${cmd}" (see relaykit ctl --help)`);
  }
  const headers: Record<string, string> = {};
  if (token !== undefined && token !== "") headers.Authorization = `Bearer ${token}`;
  const options: { headers: Record<string, string>; body?: string } = { headers };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const answer = await httpRequest(to, method, `/api/v1/${path}`, options);
  let value: unknown;
  try {
    value = JSON.parse(answer.body);
  } catch {
    throw new Error(`the answer (HTTP ${answer.status}) is not JSON: ${answer.body.slice(0, 200)}`);
  }
  if (json) console.log(JSON.stringify(value, null, 2));
  if (answer.status !== 200) {
    const error = (value as { error?: string }).error ?? `HTTP ${answer.status}`;
    if (!json) console.error(`relaykit ctl: ${error} (HTTP ${answer.status})`);
    return 1;
  }
  if (json) return (value as { ok?: boolean }).ok === false ? 1 : 0;
  if (view !== undefined) {
    console.log(view(value as never));
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
