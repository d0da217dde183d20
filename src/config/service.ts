/**
 * `relaykit run` as a service: the supervisor of `--workers N`, and what a
 * process that runs the config does around its Runner (readiness, reload
 * and stop, for its supervisor and for systemd).
 *
 * @module
 */
import process from "node:process";
import { loadConfig, type LogLevel, type Runner } from "./run.ts";
import { serveMetrics } from "./metrics_server.ts";
import { connections, stopOnSignals } from "./signals.ts";
import { answerMetrics, supervise, tellSupervisor, watchSupervisor } from "./supervisor.ts";
import { sdNotify } from "./systemd.ts";
import { plural } from "./plural.ts";

/** What the supervisor needs. */
export interface SupervisorRun {
  /** The config file (for its metrics address). */
  file: string;
  /** How many workers. */
  workers: number;
  /** A worker's command line. */
  argv(index: number): string[];
  /** The operator log. */
  log(level: LogLevel, line: string): void;
}

/**
 * Supervise the workers until they are all gone; resolves with the exit
 * code (0 after a stop signal, non-zero after a failed start or a crash loop).
 */
export async function runSupervisor(o: SupervisorRun): Promise<number> {
  const at = loadConfig(o.file).metrics;
  const notify = (s: string) => sdNotify(s, (l) => o.log("error", l));
  let metricsServer: { close(): void } | undefined;
  const sup = supervise({
    workers: o.workers,
    argv: o.argv,
    log: o.log,
    onReady: () => notify(`READY=1\nSTATUS=${plural(o.workers, "worker")} running ${o.file}`),
    onReload: (done) => notify(done ? "READY=1" : "RELOADING=1"),
    onStopping: () => {
      notify("STOPPING=1");
      metricsServer?.close();
    },
  });
  if (at !== undefined) {
    try {
      // the workers' counters, summed: the same series as one process has
      metricsServer = await serveMetrics(at, () => sup.metrics(), o.log);
    } catch (err) {
      o.log("error", (err as Error).message);
      process.kill(process.pid, "SIGTERM"); // stop the workers it started
      await sup.done;
      return 1;
    }
  }
  await new Promise((r) => setTimeout(r, 0));
  o.log("info", `supervising ${plural(o.workers, "worker")} running ${o.file}`);
  return await sup.done;
}

/** What a process running the config does besides its Runner. */
export interface ServeRun {
  /** The config file (for lines). */
  file: string;
  /** ms to wait for connections on SIGINT/SIGTERM before closing them. */
  graceMs: number;
  /** The operator log. */
  log(level: LogLevel, line: string): void;
  /** Lines on stdout (nothing when quiet), with the process tag. */
  say(line: string): void;
  /**
   * What else must be up before the process says it runs (an admin
   * endpoint): called once the runner has started, before the line and
   * before readiness is reported.
   */
  beforeReady?(): Promise<void>;
}

/**
 * Start `runner`, then handle signals: SIGHUP reloads, SIGINT/SIGTERM stop
 * (see {@linkcode stopOnSignals}), SIGQUIT drains until the last
 * connection ends. Tells the supervisor (a worker) and systemd (one
 * process) when it is ready, reloading and stopping. Throws what
 * `runner.start()` throws, after telling the supervisor.
 */
export async function serveRunner(runner: Runner, o: ServeRun): Promise<void> {
  const notify = (s: string) => sdNotify(s, (l) => o.log("error", l));
  // a SIGHUP while starting (the file may have changed since it was read)
  // is applied once running, not lost
  let running = false, pending = false;
  const reload = () => {
    notify("RELOADING=1");
    void runner.reload().then((ok) => {
      notify("READY=1");
      void tellSupervisor({ t: "reloaded", ok });
    });
  };
  process.on("SIGHUP", () => {
    if (running) reload();
    else pending = true;
  });
  try {
    await runner.start();
    await o.beforeReady?.();
  } catch (err) {
    await tellSupervisor({ t: "failed", message: (err as Error).message.split("\n")[0]! });
    throw err;
  }
  let exiting = false;
  const exit = () => {
    if (exiting) return;
    exiting = true;
    // the signal listeners keep the process alive: exit once the output
    // has had a moment to drain (Bun drops what is still buffered at exit)
    setTimeout(() => process.exit(0), 200);
  };
  void stopOnSignals({
    log: o.say,
    open: () => connections(runner.connections),
    close: () => runner.stop(0x7fffffff),
    abort: () => runner.abort(),
    graceMs: o.graceMs,
    onStopping: () => notify("STOPPING=1"),
  }).then(exit);
  process.on("SIGQUIT", () => {
    o.say("SIGQUIT: stopping; waiting for every connection to end");
    notify("STOPPING=1");
    void runner.stop(0x7fffffff).then(exit);
  });
  watchSupervisor((pid) => {
    o.log("error", `the supervisor (pid ${pid}) is gone: stopping`);
    void runner.abort().then(() => runner.stop(0)).then(exit);
  });
  answerMetrics(() => runner.metrics());
  await new Promise((r) => setTimeout(r, 0)); // handlers are in before the line below
  o.say(`running ${o.file} (${plural(runner.listeners.size, "listener")})`);
  await tellSupervisor({ t: "ready" });
  notify(`READY=1\nSTATUS=running ${o.file}`);
  running = true;
  if (pending) {
    o.say("SIGHUP while starting: reloading now");
    reload();
  }
}
