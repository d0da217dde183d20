/**
 * `relaykit run --workers N`: N worker processes, each running the config
 * on its own sockets, sharing the ports with SO_REUSEPORT (the kernel
 * spreads connections over them). The supervisor listens on nothing but
 * the metrics endpoint (which sums the workers' counters, see
 * {@linkcode mergeMetrics}). It passes SIGHUP, SIGTERM, SIGINT and SIGQUIT
 * on to every worker, adds one on SIGTTIN and retires one on SIGTTOU
 * (gracefully, with SIGQUIT).
 *
 * Workers talk to it over the IPC channel of node:child_process (which
 * Deno and Bun both provide): "ready" once every listener is up, "failed"
 * with the error when they cannot start, "reloaded" after a SIGHUP, and
 * their metrics text when asked.
 *
 * Deaths:
 * - a worker that ends before it was ever ready during the first start
 *   (its listeners never came up: a port taken, a module that throws)
 *   stops the whole start: the other workers are stopped and the
 *   supervisor ends with that worker's message and exit code;
 * - a worker that dies later is replaced after a backoff (0.25 s, doubling
 *   up to 8 s, while deaths are recent);
 * - {@linkcode CRASH_LOOP}.deaths deaths within {@linkcode CRASH_LOOP}.seconds
 *   is a crash loop: the supervisor stops the rest and ends with an error.
 *
 * Sockets passed by systemd (LISTEN_FDS) are passed on to every worker at
 * the same fds, and LISTEN_PID names the supervisor: the workers all accept
 * on them.
 *
 * A worker whose supervisor is gone (killed with SIGKILL, so it could not
 * pass anything on) stops by itself: see {@linkcode watchSupervisor}.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { plural } from "./plural.ts";

/** Deaths of ready workers within a window that end the supervisor. */
export const CRASH_LOOP = { deaths: 5, seconds: 60 } as const;

/** The first and the largest wait before a dead worker is replaced (ms). */
const BACKOFF = { first: 250, max: 8000 } as const;

/** A message from a worker to its supervisor. */
export type WorkerMessage =
  | { t: "ready" }
  | { t: "failed"; message: string }
  | { t: "reloaded"; ok: boolean }
  | { t: "metrics"; id: number; text: string };

/** How to start one worker and where lines go. */
export interface SupervisorOptions {
  /** The command line of a worker, given its index. */
  argv(index: number): string[];
  /** How many to run. */
  workers: number;
  /** A line for the operator. */
  log(level: "error" | "info", line: string): void;
  /** Every worker of the first start is ready. */
  onReady?(): void;
  /** A SIGHUP was passed on (`done` false) / every worker has answered it (`done` true). */
  onReload?(done: boolean): void;
  /** Stopping (a signal, a failed start or a crash loop). */
  onStopping?(): void;
}

/** The supervisor's handle. */
export interface Supervisor {
  /** Resolves with the exit code once every worker is gone after a stop. */
  readonly done: Promise<number>;
  /** The metrics text of every worker, summed (see {@linkcode mergeMetrics}). */
  metrics(timeoutMs?: number): Promise<string>;
}

interface Worker {
  child: ChildProcess;
  ready: boolean;
  failure?: string;
  /** The last metrics text it sent. */
  metrics?: string;
}

/** Run and supervise the workers. */
export function supervise(o: SupervisorOptions): Supervisor {
  const workers = new Map<number, Worker>(); // by index
  let stopping: string | undefined;
  let exitCode = 0;
  let wanted = o.workers;
  let starting = true; // until every worker of the first start is ready
  const deaths: number[] = []; // times of recent deaths
  let finish!: (code: number) => void;
  const done = new Promise<number>((r) => finish = r);
  let asked = 0;
  const answers = new Map<number, (text: string) => void>();
  let retired = ""; // counters of workers that are gone, summed
  let reloading: Set<ChildProcess> | undefined;
  const passed = Number(process.env.LISTEN_FDS);
  const inherit = process.env.LISTEN_PID === String(process.pid) && passed > 0
    ? Array.from({ length: passed }, (_, i) => 3 + i)
    : [];

  const stopAll = (why: string, sig: NodeJS.Signals, code: number) => {
    if (stopping !== undefined) return;
    stopping = why;
    exitCode = code;
    o.onStopping?.();
    for (const w of workers.values()) signal(w.child, sig);
    if (workers.size === 0) finish(exitCode);
  };

  const start = (index: number) => {
    const [cmd, ...args] = o.argv(index);
    const env: Record<string, string | undefined> = {
      ...process.env,
      RELAYKIT_WORKER_INDEX: String(index),
      RELAYKIT_SUPERVISOR_PID: String(process.pid),
    };
    delete env.NOTIFY_SOCKET; // the supervisor is the service's main process
    // sockets from systemd: every worker accepts on them, at the same fds
    const stdio = ["ignore", "inherit", "inherit", ...inherit, "ipc"] as const;
    // in a process group of its own (detached): Ctrl-C in a terminal
    // reaches the supervisor only, which passes it on once, so a worker
    // tells a first Ctrl-C (drain) from a second one (close now)
    const child = spawn(cmd!, args, { stdio: [...stdio], env, detached: true });
    const w: Worker = { child, ready: false };
    workers.set(index, w);
    // a worker that cannot be spawned at all ends as one that could not start
    child.on("error", (err) => w.failure ??= err.message);
    o.log("info", `worker ${index} started (pid ${child.pid})`);
    child.on("message", (m: WorkerMessage) => {
      if (m.t === "ready") {
        w.ready = true;
        if (starting && [...workers.values()].every((x) => x.ready) && workers.size >= wanted) {
          starting = false;
          o.log("info", `${plural(workers.size, "worker")} ready`);
          o.onReady?.();
        }
      } else if (m.t === "failed") {
        w.failure = m.message;
      } else if (m.t === "reloaded") {
        if (reloading?.delete(child) && reloading.size === 0) {
          reloading = undefined;
          o.onReload?.(true);
        }
      } else if (m.t === "metrics") {
        w.metrics = m.text;
        answers.get(m.id)?.(m.text);
      }
    });
    // "close", not "exit": by then its last messages (a "failed") are in
    child.once("close", (code, signal) => {
      if (workers.get(index) === w) workers.delete(index);
      if (w.metrics !== undefined) retired = mergeMetrics([retired, w.metrics], true);
      if (reloading?.delete(child) && reloading.size === 0) {
        reloading = undefined;
        o.onReload?.(true);
      }
      const how = signal ?? `exit code ${code}`;
      if (stopping !== undefined || index >= wanted) {
        o.log("info", `worker ${index} ended (${how})`);
        if (stopping !== undefined && workers.size === 0) finish(exitCode);
        return;
      }
      if (starting && !w.ready) {
        // its listeners never came up: the others would fail the same way
        o.log(
          "error",
          `worker ${index} could not start${w.failure ? `: ${w.failure}` : ` (${how})`}; stopping`,
        );
        stopAll("failed start", "SIGTERM", typeof code === "number" && code > 0 ? code : 1);
        return;
      }
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && deaths[0]! <= now - CRASH_LOOP.seconds * 1000) deaths.shift();
      if (deaths.length >= CRASH_LOOP.deaths) {
        o.log(
          "error",
          `worker ${index} died (${how}): ${deaths.length} deaths within ${CRASH_LOOP.seconds} s, ` +
            `a crash loop; stopping`,
        );
        stopAll("crash loop", "SIGTERM", 1);
        return;
      }
      const wait = Math.min(BACKOFF.max, BACKOFF.first * 2 ** (deaths.length - 1));
      o.log("error", `worker ${index} died (${how}); starting another in ${wait / 1000} s`);
      setTimeout(() => stopping === undefined && index < wanted && start(index), wait);
    });
  };
  for (let i = 0; i < wanted; i++) start(i);

  process.on("SIGHUP", () => {
    if (stopping !== undefined) return;
    reloading = new Set([...workers.values()].map((w) => w.child));
    o.onReload?.(false);
    for (const w of workers.values()) signal(w.child, "SIGHUP");
    if (reloading.size === 0) {
      reloading = undefined;
      o.onReload?.(true);
    }
  });
  for (const sig of ["SIGTERM", "SIGINT", "SIGQUIT"] as const) {
    process.on(sig, () => {
      if (stopping === undefined) {
        o.log("info", `${sig}: stopping ${plural(workers.size, "worker")}`);
        stopAll(sig, sig, 0);
      } else if (sig !== "SIGQUIT") {
        // again: the workers close what is still open now
        for (const w of workers.values()) signal(w.child, sig);
      }
    });
  }
  process.on("SIGTTIN", () => {
    if (stopping !== undefined) return;
    start(wanted++);
    o.log("info", `SIGTTIN: ${plural(wanted, "worker")}`);
  });
  process.on("SIGTTOU", () => {
    if (stopping !== undefined || wanted <= 1) return;
    const last = --wanted;
    o.log("info", `SIGTTOU: ${plural(wanted, "worker")}`);
    const w = workers.get(last);
    if (w !== undefined) signal(w.child, "SIGQUIT"); // drains, then ends
  });

  const metrics = async (timeoutMs = 2000): Promise<string> => {
    const texts = await Promise.all(
      [...workers.values()].map((w) =>
        new Promise<string>((resolve) => {
          const id = ++asked;
          const timer = setTimeout(() => {
            answers.delete(id);
            resolve(w.metrics ?? ""); // the last it sent, if it does not answer
          }, timeoutMs);
          answers.set(id, (text) => {
            clearTimeout(timer);
            answers.delete(id);
            resolve(text);
          });
          try {
            w.child.send({ t: "metrics", id });
          } catch {
            answers.get(id)?.(w.metrics ?? "");
          }
        })
      ),
    );
    return mergeMetrics([retired, ...texts]);
  };
  return { done, metrics };
}

/**
 * Send a worker a signal with process.kill, not ChildProcess.kill: Deno's
 * ChildProcess.kill reports the child as ended and closes its IPC channel
 * even when the child handles the signal and goes on.
 */
function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(child.pid, sig);
  } catch { /* already gone: its "close" follows */ }
}

/**
 * Sum Prometheus text expositions sample by sample (same name and labels).
 * Gauges named `*_up` take the smallest value (up only where every worker
 * sees it up). With `countersOnly`, only counters are kept (what a worker
 * that is gone leaves behind).
 */
export function mergeMetrics(texts: string[], countersOnly = false): string {
  const meta = new Map<string, string[]>(); // name -> HELP/TYPE lines
  const types = new Map<string, string>();
  const samples = new Map<string, Map<string, number>>(); // name -> series -> value
  for (const text of texts) {
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (m !== null) {
        const name = m[2]!;
        if (!meta.has(name)) meta.set(name, []);
        if (!samples.has(name)) samples.set(name, new Map());
        const lines = meta.get(name)!;
        if (!lines.some((l) => l.startsWith(`# ${m[1]} `))) lines.push(line);
        if (m[1] === "TYPE") types.set(name, m[3] ?? "untyped");
        continue;
      }
      const s = /^([A-Za-z_:][\w:]*)(\{.*\})? (\S+)$/.exec(line);
      if (s === null) continue;
      const name = s[1]!;
      const series = s[2] ?? "";
      const v = Number(s[3]);
      if (!samples.has(name)) samples.set(name, new Map());
      const of = samples.get(name)!;
      const old = of.get(series);
      of.set(
        series,
        old === undefined ? v : name.endsWith("_up") ? Math.min(old, v) : old + v,
      );
    }
  }
  const out: string[] = [];
  for (const [name, of] of samples) {
    if (countersOnly && types.get(name) !== "counter") continue;
    out.push(...meta.get(name) ?? []);
    for (const [series, v] of of) out.push(`${name}${series} ${v}`);
  }
  return out.length === 0 ? "" : out.join("\n") + "\n";
}

/**
 * In a worker: tell the supervisor something, if there is one (a no-op
 * otherwise). Resolves once the message is sent.
 */
export function tellSupervisor(m: WorkerMessage): Promise<void> {
  // (message, sendHandle, options, callback), as node:child_process has it
  const send = process.send as
    | ((m: unknown, h: undefined, o: object, cb: (err: Error | null) => void) => boolean)
    | undefined;
  if (send === undefined || process.env.RELAYKIT_SUPERVISOR_PID === undefined) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    try {
      send.call(process, m, undefined, {}, () => resolve());
    } catch {
      resolve(); // the supervisor is gone: watchSupervisor stops this worker
    }
  });
}

/** In a worker: answer the supervisor's requests for metrics with `text()`. */
export function answerMetrics(text: () => string): void {
  if (process.send === undefined || process.env.RELAYKIT_SUPERVISOR_PID === undefined) return;
  process.on("message", (m: { t?: string; id?: number }) => {
    if (m.t === "metrics" && typeof m.id === "number") {
      void tellSupervisor({ t: "metrics", id: m.id, text: text() });
    }
  });
}

/**
 * In a worker: stop once the supervisor that started it is gone. Its parent
 * pid then changes (the orphan is re-parented), which a cheap timer sees
 * within `everyMs`; the timer does not keep the process alive.
 */
export function watchSupervisor(onGone: (pid: number) => void, everyMs = 500): void {
  const pid = Number(process.env.RELAYKIT_SUPERVISOR_PID);
  if (!Number.isInteger(pid) || pid <= 0) return;
  const timer = setInterval(() => {
    if (process.ppid === pid) return;
    clearInterval(timer);
    onGone(pid);
  }, everyMs);
  (timer as { unref?: () => void }).unref?.();
}
