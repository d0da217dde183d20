/**
 * `relaykit run CONFIG` (the listeners, backends and tunnels of a config
 * file, with workers, reloads and graceful stops) and `relaykit check
 * CONFIG` (everything `run` would refuse, without starting anything).
 *
 * @module
 */
import { existsSync, openSync, readFileSync, writeSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { fileErrorReason } from "../errors.ts";
import { NativeEngine } from "../native/engine.ts";
import { loadHooksModule, loadRouteModule } from "../proxy/route_module.ts";
import { runtime } from "../runtime/detect.ts";
import * as settings from "../settings.ts";
import { ConfigError, formatIssue, locate } from "../config/config.ts";
import {
  type AccessRecord,
  type EventRecord,
  loadConfig,
  loadModules,
  type LogLevel,
  Runner,
} from "../config/run.ts";
import {
  type AdminPlan,
  planAdmin,
  serveRunAdmin,
  serveSupervisorAdmin,
  serveWorkerAdmin,
} from "../admin/serve.ts";
import { jsonLogLine } from "../log.ts";
import { runSupervisor, serveRunner } from "../config/service.ts";
import { ENGINE, LOG_OPTIONS, loggerOf, THREADS, writePidFile } from "./common.ts";
import { type Command, flag, fromSetting, text, UsageError } from "./options.ts";

const GRACE = fromSetting(
  "--grace",
  settings.millis,
  "on SIGTERM or SIGINT, reset the connections still open after MS (default 10000)",
);
const WORKERS = fromSetting(
  "--workers",
  settings.integer(1),
  "run N processes sharing the ports (SO_REUSEPORT); SIGTTIN/SIGTTOU add or remove one",
);
const ACCESS_LOG = text({
  flag: "--access-log",
  value: "FILE",
  help: "one JSON line per connection (- for stdout)",
});
const PID = text({ flag: "--pid", value: "FILE", help: "write the process id to FILE" });
const CHECK = flag({ flag: "--check", help: "check CONFIG as `relaykit check` does, and exit" });
const ADMIN = text({
  flag: "--admin",
  value: "HOST:PORT",
  help: "serve the admin API and stats page there (:PORT is loopback); the token from the " +
    "config's admin section or RELAYKIT_ADMIN_TOKEN",
  config: "admin.address, port, path",
});

/** The command line that runs the relaykit command again (for workers). */
function selfArgv(args: string[]): string[] {
  // the script this process was started with (src/cli.ts in a checkout, the
  // npm package's bin, which calls main() itself where import.meta.main does
  // not exist: Node); this module's own path only when there is none
  const entry = process.argv[1] ?? fileURLToPath(new URL("../cli.ts", import.meta.url).href);
  return runtime.name === "deno"
    ? [process.execPath, "run", "-A", entry, ...args]
    : [process.execPath, entry, ...args];
}

/** Whether this runtime's listeners can share a port (SO_REUSEPORT): not on Node before 22.12. */
function sharesPorts(): boolean {
  if (runtime.name !== "node") return true;
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  return major > 22 || (major === 22 && minor >= 12);
}

/** Whether `host:port` can be bound now; else why not. */
function bindProblem(host: string, port: number): Promise<string | undefined> {
  return new Promise((done) => {
    const s = createServer();
    s.once("error", (err: Error & { code?: string }) => {
      done(
        err.code === "EADDRINUSE"
          ? `${host}:${port} is in use`
          : err.code === "EACCES"
          ? `${host}:${port} needs privileges (ports below 1024: CAP_NET_BIND_SERVICE)`
          : err.code === "EADDRNOTAVAIL"
          ? `${host} is not an address of this machine`
          : `cannot listen on ${host}:${port}: ${err.message}`,
      );
    });
    s.listen({ host, port, exclusive: true }, () => s.close(() => done(undefined)));
  });
}

/**
 * Everything `run` would refuse in `file`, without starting anything: the
 * file's syntax and every value, the route and hooks modules (loaded), the
 * files it names (TLS, secrets), and whether each address it listens on is
 * free. Each problem is one `file:line:col: key: message` line; none: [].
 */
export async function checkConfig(file: string): Promise<string[]> {
  let config;
  try {
    config = loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue);
    throw err;
  }
  const text = readFileSync(file, "utf8");
  const base = dirname(resolve(file));
  const problems: { line: number; col: number; text: string }[] = [];
  const at = (key: string, message: string) => {
    const p = locate(text, key);
    problems.push({ ...p, text: `${file}:${p.line}:${p.col}: ${key}: ${message}` });
  };
  const readable = (key: string, path: string) => {
    try {
      readFileSync(resolve(base, path));
    } catch (err) {
      at(key, `cannot read ${path}: ${fileErrorReason(err, "read")}`);
    }
  };
  for (const [i, l] of config.listeners.entries()) {
    for (const [k, load] of [["route", loadRouteModule], ["hooks", loadHooksModule]] as const) {
      const path = l[k];
      if (path === undefined) continue;
      try {
        await load(resolve(base, path), 0);
      } catch (err) {
        at(`listeners[${i}].${k}`, (err as Error).message);
      }
    }
    if (l.tls !== undefined) {
      readable(`listeners[${i}].tls.cert`, l.tls.cert);
      readable(`listeners[${i}].tls.key`, l.tls.key);
    }
    if ("port" in l.listen && l.listen.port !== 0) {
      const why = await bindProblem(l.listen.host, l.listen.port);
      if (why !== undefined) at(`listeners[${i}].port`, why);
    } else if ("path" in l.listen && existsSync(l.listen.path)) {
      at(`listeners[${i}].path`, `${l.listen.path} exists (another process's socket?)`);
    }
  }
  for (const [i, t] of config.tunnelServers.entries()) {
    if (t.tls !== undefined) {
      readable(`tunnel_servers[${i}].tls.cert`, t.tls.cert);
      readable(`tunnel_servers[${i}].tls.key`, t.tls.key);
    }
    if (t.secret !== undefined && "file" in t.secret) {
      readable(`tunnel_servers[${i}].secret_file`, t.secret.file);
    }
    if (t.listen.port !== 0) {
      const why = await bindProblem(t.listen.host, t.listen.port);
      if (why !== undefined) at(`tunnel_servers[${i}].port`, why);
    }
  }
  for (const [i, t] of config.tunnelClients.entries()) {
    if (t.tls?.ca !== undefined) readable(`tunnel_clients[${i}].tls.ca`, t.tls.ca);
    if (t.secret !== undefined && "file" in t.secret) {
      readable(`tunnel_clients[${i}].secret_file`, t.secret.file);
    }
    for (const [j, l] of t.listeners.entries()) {
      if (l.listen.port === 0) continue;
      const why = await bindProblem(l.listen.host, l.listen.port);
      if (why !== undefined) at(`tunnel_clients[${i}].listeners[${j}].port`, why);
    }
    for (const [key, list] of [["socks", t.socks], ["http_connect", t.httpConnect]] as const) {
      for (const [j, l] of list.entries()) {
        if (l.listen.port === 0) continue;
        const why = await bindProblem(l.listen.host, l.listen.port);
        if (why !== undefined) at(`tunnel_clients[${i}].${key}[${j}].port`, why);
      }
    }
  }
  if (config.metrics !== undefined && config.metrics.port !== 0) {
    const why = await bindProblem(config.metrics.host, config.metrics.port);
    if (why !== undefined) at("metrics.port", why);
  }
  return problems.sort((a, b) => a.line - b.line || a.col - b.col).map((p) => p.text);
}

/** Print the problems (stderr) or "CONFIG is valid" (stdout); the exit code. */
async function reportCheck(file: string): Promise<number> {
  const problems = await checkConfig(file);
  if (problems.length === 0) {
    console.log(`${file} is valid`);
    return 0;
  }
  for (const p of problems) console.error(p);
  if (problems.length > 1) console.error(`${file}: ${problems.length} problems`);
  return 2;
}

/** `relaykit check CONFIG`. */
export const check: Command = {
  name: "check",
  summary: "check a config file without starting it (like haproxy -c)",
  usage: "CONFIG",
  positional: ["CONFIG"],
  about: "Parses and validates CONFIG, loads its route and hooks modules, reads the files it " +
    "names, and checks that every address it listens on is free and that no two things " +
    "(listeners, tunnel servers, metrics) want one port. Exit 0 when it is fine; else 2, " +
    "with one file:line:col line per problem (all of them).",
  options: [],
  run: (a) => reportCheck(a.positional[0]!),
};

/** `relaykit run CONFIG`. */
export const run: Command = {
  name: "run",
  summary: "run the listeners, backends and tunnels of a config file",
  usage: "CONFIG [options]",
  positional: ["CONFIG"],
  about: `CONFIG is YAML or JSON (see the README), validated first (each mistake with
file:line:col). SIGHUP reloads it (an invalid file changes nothing; established connections
are untouched) and reopens the log files; SIGUSR2 reopens the log files. SIGTERM/SIGINT stop
accepting and reset what is left after --grace MS; SIGQUIT waits for the last connection.`,
  options: [ENGINE, THREADS, GRACE, WORKERS, ACCESS_LOG, PID, CHECK, ADMIN, ...LOG_OPTIONS],
  async run(a) {
    const file = a.positional[0]!;
    if (a.has(CHECK)) return await reportCheck(file);
    const engine = a.get(ENGINE) ?? "auto";
    const threads = a.get(THREADS);
    const grace = a.get(GRACE) ?? 10_000;
    const workers = a.get(WORKERS);
    if (workers !== undefined && workers > 1 && !sharesPorts()) {
      throw new UsageError(
        `--workers: workers share their ports with SO_REUSEPORT, which Node has from 22.12 ` +
          `(this is Node ${process.versions.node}); run one process, or use Deno, Bun or a newer Node`,
      );
    }
    const worker = process.env.RELAYKIT_WORKER_INDEX;
    const log = loggerOf(a, worker === undefined ? "relaykit" : `relaykit[${worker}]`);
    // everything is checked before anything starts, also for the supervisor
    let admin: AdminPlan | undefined;
    try {
      const config = loadConfig(file);
      try {
        admin = planAdmin(config, file, a.get(ADMIN), workers);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      if (workers !== undefined && workers > 1 && worker === undefined) {
        await loadModules(config, file, 0); // a worker would only die of it, again and again
      }
    } catch (err) {
      if (err instanceof ConfigError) {
        throw new UsageError(
          err.issues.length === 1 && err.issues[0]!.line === 0
            ? err.message
            : `${file} is invalid:\n${err.message}`,
        );
      }
      throw err;
    }
    const pidFile = a.get(PID);
    if (pidFile !== undefined && worker === undefined) writePidFile(pidFile);
    const logPath = a.get(ACCESS_LOG);
    let accessOut: ((line: string) => void) | undefined;
    if (logPath === "-") accessOut = (line) => console.log(line);
    else if (logPath !== undefined) {
      let fd: number;
      try {
        fd = openSync(logPath, "a");
      } catch (err) {
        throw new UsageError(
          `--access-log: cannot write ${logPath}: ${fileErrorReason(err, "write")}`,
        );
      }
      accessOut = (line) => writeSync(fd, line + "\n");
    }
    if (workers !== undefined && workers > 1 && worker === undefined) {
      // the supervisor: workers are this command without --workers and --pid
      const drop = ["--workers", "--pid"];
      const rest = a.raw;
      const own = rest.filter((x, i) =>
        !drop.includes(x) && !drop.includes(rest[i - 1] ?? "") &&
        !drop.some((d) => x.startsWith(`${d}=`)) && x !== file
      );
      log.reopenOn(["SIGUSR2", "SIGHUP"]);
      const argv = () => selfArgv(["run", file, ...own]);
      const say = (l: LogLevel, line: string) => log.log(l, line);
      // the workers inherit the admin socket directory and token from here
      const adminServer = admin && await serveSupervisorAdmin(admin, { file, log: say });
      const code = await runSupervisor({ file, workers, argv, log: say });
      adminServer?.close();
      log.flush();
      setTimeout(() => process.exit(code), 200);
      return;
    }
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
      // with workers, the supervisor serves the metrics of all of them; the
      // admin listener serves them when they share its port
      metrics: worker === undefined && admin?.sharesMetrics !== true,
      // a tunnel is one link: with workers, the first one runs the tunnel sections
      tunnels: worker === undefined || worker === "0",
      log: (l, line, cause) => log.log(l, line, cause),
      // without an access log, nothing is reported per connection
      ...(accessOut !== undefined ? { access: (rec) => accessOut(jsonLogLine(rec)) } : {}),
    });
    log.reopenOn(["SIGUSR2", "SIGHUP"]);
    const adminOptions = {
      file,
      engine: nativeEngine !== undefined ? "native" : "stream",
      engineReason: nativeEngine !== undefined ? undefined : `--engine ${engine}`,
      log: (l: LogLevel, line: string) => log.log(l, line),
      access: (rec: AccessRecord | EventRecord) => accessOut?.(jsonLogLine(rec)),
    };
    // the admin endpoint is up before the process says it runs
    const startAdmin = async () => {
      if (worker === undefined) {
        if (admin !== undefined) await serveRunAdmin(runner, admin, adminOptions);
      } else {
        await serveWorkerAdmin(runner, {
          ...adminOptions,
          supervisor: Number(process.env.RELAYKIT_SUPERVISOR_PID),
          index: Number(worker),
        });
      }
    };
    try {
      await serveRunner(runner, {
        file,
        graceMs: grace,
        log: (l, line) => log.log(l, line),
        say: (line) => log.info(line),
        beforeReady: startAdmin,
      });
    } catch (err) {
      if (err instanceof ConfigError) throw new UsageError(`${file} is invalid:\n${err.message}`);
      throw err;
    }
  },
};
