/**
 * The admin API of `relaykit run --workers N`. The supervisor serves the
 * admin endpoint; each worker serves its own API on a Unix socket in a
 * directory only the supervisor's user can enter, with a token made for
 * this run. Every read asks every worker and merges the answers (sums of
 * counters; a state the workers disagree on is "mixed"); every action goes
 * to every worker (closing a connection to the worker that has it).
 *
 * Why sockets rather than the supervisor's pipes to its workers: the same
 * HTTP code serves both, a worker needs no second protocol, and it works
 * the same with Deno or Bun on either side (a child's fd 3 pipe cannot be
 * written from Deno; stdin/stdout stay free for the operator).
 *
 * @module
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { RelaykitError } from "../errors.ts";
import { type HttpAnswer, httpRequest } from "./http.ts";
import { openFds } from "./local.ts";
import { VERSION } from "../version.ts";
import { runtime } from "../runtime/detect.ts";
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
  type ServerInfo,
  type WorkerInfo,
} from "./types.ts";

/** The environment variable with the token of the workers' own endpoints. */
export const WORKER_TOKEN_ENV = "RELAYKIT_ADMIN_WORKER_TOKEN";
/** Headers that carry who asked, from the supervisor to a worker. */
export const BY_HEADER = "x-relaykit-by";
export const PEER_HEADER = "x-relaykit-peer";

/** The directory of the workers' admin sockets of supervisor `pid`. */
export function workerSocketDir(pid: number): string {
  return join(tmpdir(), `relaykit-admin-${pid}`);
}

/** The admin socket of worker `index` of supervisor `pid`. */
export function workerSocket(pid: number, index: number): string {
  return join(workerSocketDir(pid), `w${index}.sock`);
}

/** Make the (private) socket directory; returns a remover. */
export function makeWorkerSocketDir(pid: number): () => void {
  const dir = workerSocketDir(pid);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  return () => rmSync(dir, { recursive: true, force: true });
}

/** Sum the numbers of two records key by key. */
function addCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function agree(a: string, b: string): string {
  return a === b ? a : "mixed";
}

/** Options of {@linkcode FanoutSource}. */
export interface FanoutOptions {
  /** The supervisor's pid (names the socket directory). */
  pid: number;
  /** The workers' token. */
  token: string;
  /** The config file's path. */
  config: string;
  /** ms a worker may take to answer. @default 5000 */
  timeout?: number;
}

interface Answer {
  worker: number;
  status: number;
  value: unknown;
  error?: string;
}

/** The admin API over the workers of a supervisor. */
export class FanoutSource implements AdminSource {
  readonly #o: FanoutOptions;
  readonly #started = Date.now();

  /** @param options Where the workers are and how to reach them. */
  constructor(options: FanoutOptions) {
    this.#o = options;
  }

  /** The workers that have a socket, by index. */
  #workers(): number[] {
    let names: string[];
    try {
      names = readdirSync(workerSocketDir(this.#o.pid));
    } catch {
      return [];
    }
    return names.map((n) => /^w(\d+)\.sock$/.exec(n)).filter((m) => m !== null)
      .map((m) => Number(m![1])).sort((a, b) => a - b);
  }

  async #ask(worker: number, method: string, path: string, who?: Actor): Promise<Answer> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.#o.token}` };
    if (who !== undefined) {
      headers[BY_HEADER] = encodeURIComponent(who.by);
      headers[PEER_HEADER] = encodeURIComponent(who.peer);
    }
    let a: HttpAnswer;
    try {
      a = await httpRequest(
        { path: workerSocket(this.#o.pid, worker) },
        method,
        `/api/v1/${path}`,
        { headers, timeout: this.#o.timeout ?? 5000 },
      );
    } catch (err) {
      const why = err instanceof RelaykitError ? `${err.code}: ${err.message}` : String(err);
      return { worker, status: 0, value: undefined, error: why };
    }
    let value: unknown;
    try {
      value = JSON.parse(a.body);
    } catch {
      return { worker, status: 0, value: undefined, error: `not JSON (HTTP ${a.status})` };
    }
    const error = a.status === 200 ? undefined : (value as { error?: string }).error;
    return error === undefined
      ? { worker, status: a.status, value }
      : { worker, status: a.status, value, error };
  }

  /** Ask every worker; the answers of those that answered 200. */
  async #all<T>(method: string, path: string): Promise<{ ok: [number, T][]; failed: Answer[] }> {
    const answers = await Promise.all(this.#workers().map((w) => this.#ask(w, method, path)));
    return {
      ok: answers.filter((a) => a.status === 200).map((a) => [a.worker, a.value as T]),
      failed: answers.filter((a) => a.status !== 200),
    };
  }

  async process(): Promise<ProcessInfo> {
    const { ok, failed } = await this.#all<ProcessInfo>("GET", "process");
    const per: WorkerInfo[] = [
      ...ok.map(([worker, p]) => ({
        worker,
        pid: p.pid,
        uptime_s: p.uptime_s,
        fds: p.fds,
        rss_bytes: p.rss_bytes,
      })),
      ...failed.map((f) => ({
        worker: f.worker,
        pid: 0,
        uptime_s: 0,
        fds: 0,
        rss_bytes: 0,
        error: f.error ?? `HTTP ${f.status}`,
      })),
    ].sort((a, b) => a.worker - b.worker);
    const first = ok[0]?.[1];
    const reloads = ok.map(([, p]) => p.last_reload).filter((r) => r !== null);
    return {
      version: VERSION,
      runtime: runtime.name,
      runtime_version: runtime.version,
      pid: process.pid,
      engine: first?.engine ?? "unknown",
      engine_reason: first?.engine_reason ?? null,
      started_at: new Date(this.#started).toISOString(),
      uptime_s: Math.round((Date.now() - this.#started) / 1000),
      workers: per.length,
      // the supervisor's own, and its workers'
      fds: openFds() + per.reduce((n, w) => n + w.fds, 0),
      rss_bytes: process.memoryUsage().rss + per.reduce((n, w) => n + w.rss_bytes, 0),
      config: this.#o.config,
      last_reload: reloads.length === 0 ? null : {
        ok: reloads.every((r) => r!.ok),
        message: reloads[0]!.message,
      },
      per_worker: per,
    };
  }

  async listeners(): Promise<ListenerInfo[]> {
    const { ok } = await this.#all<ListenerInfo[]>("GET", "listeners");
    const merged = new Map<string, ListenerInfo>();
    for (const [, ls] of ok) {
      for (const l of ls) {
        const m = merged.get(l.name);
        if (m === undefined) {
          merged.set(l.name, structuredClone(l));
          continue;
        }
        m.state = agree(m.state, l.state);
        for (const k of ["current", "peak", "opened", "total", "bytes_in", "bytes_out"] as const) {
          m[k] += l[k];
        }
        m.errors = addCounts(m.errors, l.errors);
        m.connect_failures = addCounts(m.connect_failures, l.connect_failures);
        m.rate = {
          conn_per_s: Math.round((m.rate.conn_per_s + l.rate.conn_per_s) * 10) / 10,
          bytes_in_per_s: m.rate.bytes_in_per_s + l.rate.bytes_in_per_s,
          bytes_out_per_s: m.rate.bytes_out_per_s + l.rate.bytes_out_per_s,
        };
      }
    }
    return [...merged.values()];
  }

  async backends(): Promise<BackendInfo[]> {
    const { ok } = await this.#all<BackendInfo[]>("GET", "backends");
    const merged = new Map<string, BackendInfo>();
    for (const [, bs] of ok) {
      for (const b of bs) {
        const m = merged.get(b.name);
        if (m === undefined) {
          merged.set(b.name, structuredClone(b));
          continue;
        }
        m.current += b.current;
        m.total += b.total;
        for (const s of b.servers) {
          const ms = m.servers.find((x) => x.name === s.name);
          if (ms === undefined) m.servers.push(structuredClone(s));
          else mergeServer(ms, s);
        }
      }
    }
    return [...merged.values()];
  }

  async connections(q: ConnQuery): Promise<ConnPage> {
    const filter = new URLSearchParams();
    if (q.listener !== undefined) filter.set("listener", q.listener);
    if (q.server !== undefined) filter.set("server", q.server);
    if (q.client !== undefined) filter.set("client", q.client);
    // first how many each has, then each its slice of the page (worker order, then id)
    const counts = await this.#all<ConnPage>("GET", `connections?${filter}&limit=0`);
    let skip = q.offset, want = q.limit, total = 0;
    const asks: Promise<Answer>[] = [];
    for (const [worker, page] of counts.ok) {
      total += page.total;
      const offset = Math.min(skip, page.total);
      skip -= offset;
      const limit = Math.min(want, page.total - offset);
      if (limit <= 0) continue;
      want -= limit;
      asks.push(this.#ask(worker, "GET", `connections?${filter}&offset=${offset}&limit=${limit}`));
    }
    const out: ConnInfo[] = [];
    for (const a of await Promise.all(asks)) {
      if (a.status !== 200) continue;
      for (const c of (a.value as ConnPage).connections) out.push({ ...c, worker: a.worker });
    }
    return { total, offset: q.offset, limit: q.limit, connections: out };
  }

  /** Send an action to `workers` (default all) and combine the answers. */
  async #act(path: string, who: Actor, workers = this.#workers()): Promise<ActionResult> {
    if (workers.length === 0) throw new Error("no worker answers (are they starting?)");
    const answers = await Promise.all(workers.map((w) => this.#ask(w, "POST", path, who)));
    const per = answers.map((a) => ({
      worker: a.worker,
      ok: a.status === 200 && (a.value as ActionResult).ok,
      message: a.status === 200 ? (a.value as ActionResult).message : a.error ?? `HTTP ${a.status}`,
    }));
    if (answers.every((a) => a.status === 404)) throw new NotFound(per[0]!.message);
    if (answers.every((a) => a.status === 400)) throw new RangeError(per[0]!.message);
    const ok = per.every((p) => p.ok);
    const first = per.find((p) => p.ok === ok) ?? per[0]!;
    return { ok, message: first.message, per_worker: per };
  }

  setServer(
    backend: string,
    server: string,
    change: { state?: "ready" | "drain" | "maint"; weight?: number },
    who: Actor,
  ): Promise<ActionResult> {
    const at = `servers/${encodeURIComponent(backend)}/${encodeURIComponent(server)}`;
    if (change.weight !== undefined && change.state !== undefined) {
      throw new TypeError("set the state and the weight one at a time");
    }
    return change.weight !== undefined
      ? this.#act(`${at}/weight?weight=${change.weight}`, who)
      : this.#act(`${at}/state?state=${change.state}`, who);
  }

  async closeConnection(id: number, worker: number | undefined, who: Actor): Promise<ActionResult> {
    if (worker !== undefined) {
      if (!this.#workers().includes(worker)) throw new NotFound(`no worker ${worker}`);
      return await this.#act(`connections/${id}/close`, who, [worker]);
    }
    const workers = this.#workers();
    // ids are per worker: several may have an open connection #id
    if (workers.length > 1) throw new RangeError("give the connection's worker (?worker=N)");
    return await this.#act(`connections/${id}/close`, who, workers);
  }

  reload(who: Actor): Promise<ActionResult> {
    return this.#act("reload", who);
  }

  setListener(name: string, enabled: boolean, who: Actor): Promise<ActionResult> {
    return this.#act(
      `listeners/${encodeURIComponent(name)}/${enabled ? "enable" : "disable"}`,
      who,
    );
  }
}

function mergeServer(m: ServerInfo, s: ServerInfo): void {
  m.state = agree(m.state, s.state);
  m.admin = agree(m.admin, s.admin);
  m.up = m.up && s.up;
  for (const k of ["current", "total", "connect_failures", "bytes_in", "bytes_out"] as const) {
    m[k] += s[k];
  }
  if (s.health !== null && (m.health === null || s.health.at > m.health.at)) m.health = s.health;
  if (s.changed_at > m.changed_at) m.changed_at = s.changed_at;
}
