/**
 * `relaykit run --workers N`: N worker processes, each running the config
 * on its own sockets, sharing the ports with SO_REUSEPORT (the kernel
 * spreads connections over them). The supervisor listens on nothing: it
 * replaces a worker that dies, adds one on SIGTTIN, retires one on SIGTTOU
 * (gracefully, with SIGQUIT), and passes SIGHUP, SIGTERM, SIGINT and
 * SIGQUIT on to every worker. A worker whose supervisor is gone (killed
 * with SIGKILL, so it could not pass anything on) stops by itself: see
 * {@linkcode watchSupervisor}.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";

/** How to start one worker and where lines go. */
export interface SupervisorOptions {
  /** The command line of a worker, given its index. */
  argv(index: number): string[];
  /** How many to run. */
  workers: number;
  /** A line for the operator. */
  log(level: "error" | "info", line: string): void;
}

/** Run and supervise the workers; resolves once all of them are gone after a stop. */
export function supervise(o: SupervisorOptions): Promise<void> {
  const workers = new Map<number, ChildProcess>(); // by index
  let stopping: string | undefined;
  let wanted = o.workers;
  let finish!: () => void;
  const done = new Promise<void>((r) => finish = r);

  const start = (index: number) => {
    const [cmd, ...args] = o.argv(index);
    const started = Date.now();
    const child = spawn(cmd!, args, {
      stdio: ["ignore", "inherit", "inherit"],
      env: {
        ...process.env,
        RELAYKIT_WORKER_INDEX: String(index),
        RELAYKIT_SUPERVISOR_PID: String(process.pid),
      },
    });
    workers.set(index, child);
    o.log("info", `worker ${index} started (pid ${child.pid})`);
    child.once("exit", (code, signal) => {
      if (workers.get(index) === child) workers.delete(index);
      const how = signal ?? `exit code ${code}`;
      if (stopping !== undefined || index >= wanted) {
        o.log("info", `worker ${index} ended (${how})`);
        if (stopping !== undefined && workers.size === 0) finish();
        return;
      }
      // a dead worker is replaced; one that dies at once waits a second
      o.log("error", `worker ${index} died (${how}); starting another`);
      const wait = Date.now() - started < 1000 ? 1000 : 0;
      setTimeout(() => stopping === undefined && index < wanted && start(index), wait);
    });
  };
  for (let i = 0; i < wanted; i++) start(i);

  const forward = (sig: NodeJS.Signals) => {
    for (const w of workers.values()) w.kill(sig);
  };
  process.on("SIGHUP", () => forward("SIGHUP"));
  for (const sig of ["SIGTERM", "SIGINT", "SIGQUIT"] as const) {
    process.on(sig, () => {
      if (stopping !== undefined) return;
      stopping = sig;
      o.log("info", `${sig}: stopping ${workers.size} workers`);
      forward(sig);
      if (workers.size === 0) finish();
    });
  }
  process.on("SIGTTIN", () => {
    if (stopping !== undefined) return;
    start(wanted++);
    o.log("info", `SIGTTIN: ${wanted} workers`);
  });
  process.on("SIGTTOU", () => {
    if (stopping !== undefined || wanted <= 1) return;
    const last = --wanted;
    o.log("info", `SIGTTOU: ${wanted} workers`);
    workers.get(last)?.kill("SIGQUIT"); // drains, then ends
  });
  return done;
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
