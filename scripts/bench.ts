/**
 * relaykit benchmark: runs relaykit and its peers side by side, in one run, on
 * the same loopback path, and prints one row per proxy plus ratios.
 *
 *   node_modules/.bin/deno run -A scripts/bench.ts [options]
 *   node_modules/.bin/bun scripts/bench.ts [options]
 *
 * Options:
 *   --only a,b,c     run only these proxies and sections; * is a wildcard,
 *                    e.g. --only 'direct,haproxy,relaykit-*' or --only '*-bun';
 *                    --only parser runs the parser section alone, which needs
 *                    no peers (nothing is installed or started);
 *                    --only soak runs the soak section (never part of the
 *                    default run, nor of a selector not starting with soak);
 *                    --only socks, connect, hostroute or acceptproxy runs
 *                    that decision section, --only decide all four
 *   --duration S     length of each workload in seconds (default 5)
 *   --quick          shorthand for --duration 2
 *   --idle-conns N   idle connections for the memory workload (default 2000)
 *   --rounds N       rounds of the decision and tunnel sections and of the
 *                    hook rows (default 3; medians)
 *   --soak-minutes M length of the soak section per variant (default 5;
 *                    fractions for a smoke run, e.g. 0.5; whole 30 s cycles)
 *   --json FILE      also write the results as JSON to FILE
 *   --no-install     never run apt-get; fail if a peer binary is missing
 *                    (a missing peer of a decision section skips its row)
 *   --list           print the proxy table and exit
 *
 * Peers (Debian packages haproxy, nginx-light, iperf3, wrk; for the decision
 * sections microsocks, dante-server, tinyproxy and gcc; for the tunnel
 * section openssh-server, openssh-client, stunnel4, openssl) are installed
 * with apt-get when missing.  Backends, configs, keys and ports are all
 * created by this script in a temporary directory that is removed on exit.
 *
 * Workloads, for every proxy, each against a freshly started proxy process:
 *   bulk    iperf3 -c through the proxy to `iperf3 -s`          -> Gbit/s
 *   rps     wrk -t1 -c50 keep-alive, then with Connection: close, through the
 *           proxy to nginx `return 200` (one worker)            -> req/s, p99;
 *           utime+stime of the proxy process during each run    -> CPU µs per
 *           request and per (closed) connection
 *   idle    N idle connections (1 byte each) through the proxy to a hold
 *           server; VmRSS growth of the proxy                    -> bytes/conn
 *
 * Rows ending in -page (only with --only) run the native rows with the stats
 * page open: the proxy serves --admin and this script asks what the page asks
 * every second (scripts/bench/page_watch.ts); rows ending in -admin serve
 * --admin with nobody asking; compare them with the rows without it, e.g.
 * --only 'relaykit-native-deno*' (alternate runs: noise).
 *
 * The hook rows (bulk only; --only 'relaykit-*-hook'): a TcpProxy with no
 * hook, a pass-through hook and NosyProxy's rewriting hooks, per engine and
 * runtime (scripts/bench/hooks.ts), and whether the hook targets are met;
 * the rows alternate within each of --rounds rounds, medians.
 *
 * Load generator, backend and proxy share the machine's cores, so only ratios
 * taken within one run are meaningful.
 *
 * Sections, in this process (no sockets, no peers):
 *   parser  PROXY protocol parse and build of a v1 TCP4 header and of a v2
 *           IPv4 header with UNIQUE_ID, AUTHORITY and CRC32C TLVs, each for
 *           duration/5 s (1 s; 0.4 s with --quick)        -> headers/s
 *
 * Decision sections (in the default run; the proxies on Deno and Bun, each
 * with one native worker thread, against peers): connections through the
 * proxy from connload (scripts/bench/connload.c, built with gcc into the temp
 * dir: one epoll thread, 50 connections in flight, a 5 s timeout each), each
 * one decision plus `GET /` (`Connection: close`) to nginx; per row
 * connections/s, p50/p99 (connect to answer) and CPU µs per connection of
 * the proxy's process tree; rows alternate within each of --rounds rounds
 * of duration s, medians; CPU ratios against the targets, met or not met.
 * See scripts/bench/decide.ts.
 *   socks        relaykit socks vs microsocks and dante: SOCKS5 CONNECT
 *   connect      relaykit http-connect vs tinyproxy: HTTP CONNECT
 *   hostroute    relaykit run with a config routing table (decided in C)
 *                and relaykit route with a JavaScript route function vs
 *                haproxy mode tcp switching on req.hdr(host)
 *   acceptproxy  relaykit forward --accept-proxy v1 and v2 (the load
 *                generator sends the header) vs plain relaykit forward
 *
 * Sections with relaykit's own processes:
 *   tunnel  (only with --only tunnel) relaykit's tunnel (client and server
 *           processes; TCP and TLS link; on Deno and on Bun) against
 *           `ssh -L` (a throwaway sshd on loopback, aes128-gcm) and a stunnel
 *           TLS pair, with a relaykit native forward (no tunnel, on the
 *           runtime running the bench) as the reference: iperf3 with 1 and
 *           8 streams (Gbit/s), wrk keep-alive to nginx (req/s, p99), CPU of
 *           both ends' process trees (CPU s per GB, µs per request); --rounds
 *           rounds alternate between the paths, medians reported with
 *           ratios to ssh -L and stunnel and the tunnel's targets (met or
 *           not met).  Also needs openssh-server, openssh-client, stunnel4
 *           and openssl; as root it creates /run/sshd if missing.  See
 *           scripts/bench/tunnel.ts and docs/tunnel.md
 *   soak    (only with --only soak, or soak-native / soak-stream for one
 *           engine) for each engine, three relaykit processes (on the
 *           runtime running the bench) under steady mixed load for
 *           --soak-minutes: `forward` to nginx (rate-limited wrk
 *           keep-alive and Connection: close, resets mid-request),
 *           `forward` to a port nobody listens on (refused connects), and
 *           `route` with a script (close requests to nginx, bulk streams
 *           to a sink with byte counts checked, resets while held and
 *           mid-bulk, refused connects, stalled decisions timed out); a
 *           wave of 500 idle connections held 20 s in every 30 s cycle.
 *           VmRSS and fd count of each process every 5 s; first vs last
 *           minute (first vs last cycle below 2 min), fds compared in the
 *           quiet end of each cycle.  On Deno, V8's young generation is
 *           capped at 4 MiB per semi-space (its growth is no leak).  Exits 1
 *           when RSS grows by more than 15% + 8 MiB or quiet fds by more
 *           than 4; see scripts/bench/soak.ts
 *
 * Only node: modules and relaykit's own sources are used, so that the script
 * runs unchanged on Deno and Bun.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import process from "node:process";
import {
  benchTunnel,
  type TunnelBenchResult,
  type TunnelBins,
  type TunnelContext,
  tunnelReport,
} from "./bench/tunnel.ts";
import { PAGE_TOKEN, watchPage } from "./bench/page_watch.ts";
import { hookRows, hookTargets } from "./bench/hooks.ts";
import { freePort } from "./free_port.ts";
import { median } from "./bench/stats.ts";
import {
  benchSoak,
  SOAK_COLUMNS,
  SOAK_VARIANTS,
  type SoakContext,
  soakRow,
  soakSummary,
} from "./bench/soak.ts";
import {
  benchDecide,
  DECIDE_COLUMNS,
  DECIDE_GROUP,
  DECIDE_PACKAGES,
  DECIDE_SECTIONS,
  type DecideBins,
  type DecideContext,
  decideListing,
  type DecideResult,
  decideRows,
  decideSelection,
  decideSummary,
} from "./bench/decide.ts";
import {
  buildProxyHeader,
  parseProxyHeader,
  type ProxyHeader,
  TLV,
} from "../src/protocol/proxy_protocol.ts";

// ---------------------------------------------------------------------------
// Options

interface Options {
  only: string[] | null;
  durationS: number;
  idleConns: number;
  soakMinutes: number;
  rounds: number;
  json: string | null;
  install: boolean;
  list: boolean;
}

function usage(code = 2): never {
  const header = fs.readFileSync(new URL(import.meta.url).pathname, "utf8")
    .split("*/")[0] ?? "";
  console.error(header.replace(/^\/\*\*\n?|^ \* ?/gm, "").trimEnd());
  process.exit(code);
}

function parseOptions(args: string[]): Options {
  const opts: Options = {
    only: null,
    durationS: 5,
    idleConns: 2000,
    soakMinutes: 5,
    rounds: 3,
    json: null,
    install: true,
    list: false,
  };
  const value = (i: number): string => {
    const v = args[i];
    if (v === undefined) usage();
    return v;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? "";
    // Accept both "--opt value" and "--opt=value".
    const [flag, inline] = a.includes("=") ? a.split(/=(.*)/s, 2) : [a, null];
    const arg = (): string => inline ?? value(++i);
    switch (flag) {
      case "--only":
        opts.only = arg().split(",").map((s) => s.trim()).filter(Boolean);
        break;
      case "--duration":
        opts.durationS = Number(arg());
        break;
      case "--quick":
        opts.durationS = 2;
        break;
      case "--idle-conns":
        opts.idleConns = Number(arg());
        break;
      case "--rounds":
        opts.rounds = Number(arg());
        break;
      case "--soak-minutes":
        opts.soakMinutes = Number(arg());
        break;
      case "--json":
        opts.json = arg();
        break;
      case "--no-install":
        opts.install = false;
        break;
      case "--help":
      case "-h":
        usage(0);
        break;
      case "--list":
        opts.list = true;
        break;
      default:
        usage();
    }
  }
  if (!(opts.durationS >= 1) || !Number.isInteger(opts.durationS)) usage();
  if (!(opts.idleConns >= 1) || !Number.isInteger(opts.idleConns)) usage();
  if (!(opts.rounds >= 1) || !Number.isInteger(opts.rounds)) usage();
  if (!(opts.soakMinutes >= 0.5) || !Number.isFinite(opts.soakMinutes)) usage();
  return opts;
}

// ---------------------------------------------------------------------------
// Small utilities

const REPO = decodeURIComponent(new URL("..", import.meta.url).pathname)
  .replace(/\/$/, "");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => process.stderr.write(msg + "\n");

/** Finds an executable on PATH, also looking in the sbin directories. */
function findBin(name: string): string | null {
  const dirs = (process.env.PATH ?? "").split(":").concat(
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
  );
  for (const dir of dirs) {
    if (!dir) continue;
    const p = `${dir}/${name}`;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

function isElf(path: string): boolean {
  try {
    const fd = fs.openSync(path, "r");
    const buf = new Uint8Array(4);
    fs.readSync(fd, buf, 0, 4, 0);
    fs.closeSync(fd);
    return buf[0] === 0x7f && buf[1] === 0x45 && buf[2] === 0x4c &&
      buf[3] === 0x46;
  } catch {
    return false;
  }
}

/**
 * Resolves the real runtime executable.  node_modules/.bin/deno may be the npm
 * package's node wrapper (bin.cjs, which spawnSync()s the binary), and
 * node_modules/.bin/bun may be a stub: running a proxy through such a wrapper
 * would put a node process between us and the runtime, so /proc figures would
 * be read from the wrong PID.  We therefore run the ELF binary directly.
 */
function resolveRuntime(candidates: string[], pathName: string): string | null {
  for (const c of candidates) {
    const abs = c.startsWith("/") ? c : `${REPO}/${c}`;
    try {
      const real = fs.realpathSync(abs);
      if (isElf(real)) return real;
    } catch {
      // missing
    }
  }
  const onPath = findBin(pathName);
  if (onPath && isElf(fs.realpathSync(onPath))) return fs.realpathSync(onPath);
  return null;
}

/**
 * The line of a failed process's output to show: the first one that looks
 * like an error (haproxy, for one, prints NOTICE lines before its ALERT),
 * else the first non-empty one.
 */
function firstLine(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /error|alert|emerg|fatal|panic/i.test(l)) ??
    lines[0] ?? "";
}

function versionOf(cmd: string | null, args: string[], re: RegExp): string {
  if (!cmd) return "missing";
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
  const m = `${r.stdout ?? ""}\n${r.stderr ?? ""}`.match(re);
  return m?.[1] ?? "?";
}

/** The installed version of a Debian package (for peers without a version flag). */
function dpkgVersion(pkg: string): string {
  const r = spawnSync("dpkg-query", ["-W", "-f", "${Version}", pkg], {
    encoding: "utf8",
    timeout: 10_000,
  });
  return r.status === 0 && r.stdout ? r.stdout.trim() : "?";
}

// ---------------------------------------------------------------------------
// Child-process bookkeeping and cleanup

/** Every child we started; each leads its own process group (detached). */
const children = new Set<ChildProcess>();
let tmpDir = "";

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Signals the child's whole process group (covers wrappers and workers). */
function signalGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (alive(child)) {
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    signalGroup(child, "SIGTERM");
    await Promise.race([exited, sleep(3000)]);
  }
  // Also reaps any grandchild left in the group after the leader exited.
  signalGroup(child, "SIGKILL");
  children.delete(child);
}

/** Synchronous last-resort cleanup, safe to call from exit/signal handlers. */
function cleanupSync(): void {
  for (const child of children) signalGroup(child, "SIGKILL");
  children.clear();
  if (tmpDir) {
    try {
      fs.rmSync(tmpDir, { recursive: true, force: true });
    } catch {
      // best effort
    }
    tmpDir = "";
  }
}

/** Set once a signal asked us to stop: no new children may be started. */
let stopping = false;

process.on("exit", cleanupSync);
for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) {
  process.on(sig, () => {
    if (stopping) { // second Ctrl-C: don't wait any longer
      cleanupSync();
      process.exit(128 + num);
    }
    stopping = true;
    log(`\n${sig}: stopping children and removing ${tmpDir || "temp dir"}`);
    // SIGTERM first and wait, so that children are reaped by us (and nginx's
    // master by its worker) rather than left as zombies; then the backstop.
    Promise.all([...children].map(stopChild)).finally(() => {
      cleanupSync();
      process.exit(128 + num);
    });
  });
}

/**
 * Raises the fd limit as far as allowed, then execs argv.  The proxies and
 * the idle-connection helpers need a few thousand descriptors; node:process
 * cannot change rlimits, but a shell in between can (and `exec` keeps the
 * PID, so the PID we get is the program's own).
 */
function withFdLimit(argv: string[]): [string, string[]] {
  const script = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ' +
    'exec "$@"';
  return ["bash", ["-c", script, "bench", ...argv]];
}

const CHILD_ENV = {
  ...process.env,
  RELAYKIT_ADMIN_TOKEN: PAGE_TOKEN,
  NO_COLOR: "1",
  DENO_NO_UPDATE_CHECK: "1",
  DENO_NO_PROMPT: "1",
};

interface Started {
  child: ChildProcess;
  pid: number;
  /** First 64 KiB of combined stdout+stderr. */
  output(): string;
}

/** Spawns a long-running child (own process group, output captured). */
function startChild(argv: string[]): Started {
  if (stopping) throw new Error("stopping");
  const [cmd, args] = withFdLimit(argv);
  const child = spawn(cmd, args, {
    cwd: REPO,
    env: CHILD_ENV,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let out = "";
  const keep = (chunk: Uint8Array | string) => {
    if (out.length < 65536) out += chunk.toString();
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  child.on("error", (e) => keep(`spawn error: ${e.message}\n`));
  return { child, pid: child.pid ?? -1, output: () => out };
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command to completion, killing it after timeoutMs. */
function run(argv: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    if (stopping) return; // never settles; the signal handler exits
    const [cmd = "", ...args] = argv;
    const child = spawn(cmd, args, {
      cwd: REPO,
      env: CHILD_ENV,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout?.on("data", (c) => (stdout += c.toString()));
    child.stderr?.on("data", (c) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(child, "SIGKILL");
    }, timeoutMs);
    const finish = (code: number | null) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr, timedOut });
    };
    child.on("error", (e) => {
      stderr += e.message;
      finish(null);
    });
    child.on("close", (code) => finish(code));
  });
}

// ---------------------------------------------------------------------------
// /proc helpers

/** Inode of a TCP socket listening on the port (IPv4 or IPv6), if any. */
function listenInode(port: number): string | null {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      // Fields: sl, local addr:port, remote, state (0A = LISTEN), ..., inode (10th).
      const [, local = "", , state, , , , , , inode] = line.trim().split(/\s+/);
      if (state === "0A" && inode && local.endsWith(`:${hexPort}`)) return inode;
    }
  }
  return null;
}

/** Fields of /proc/PID/stat after the ")" closing comm (state is index 0). */
function statFields(pid: number): string[] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** pid plus all of its descendants. */
function processTree(root: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (!f) continue;
    const ppid = Number(f[1]);
    if (!byParent.has(ppid)) byParent.set(ppid, []);
    byParent.get(ppid)!.push(Number(name));
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...(byParent.get(p) ?? []));
  }
  return out;
}

/** Which of the pids holds the socket with this inode. */
function socketOwner(pids: number[], inode: string): number | null {
  const target = `socket:[${inode}]`;
  for (const pid of pids) {
    try {
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        try {
          if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return pid;
        } catch {
          // fd closed meanwhile
        }
      }
    } catch {
      // process gone or not ours
    }
  }
  return null;
}

const CLK_TCK = Number(
  spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim(),
) || 100;

/**
 * CPU seconds (utime+stime) of the processes.  /proc/PID/stat of a thread
 * group leader already sums all of its threads, live and exited, so reading
 * per-task files as well would double count.  With `reaped`, also the
 * cutime+cstime of children they have waited for (a peer that forks per
 * connection); a live child is counted once, from its own stat.
 */
function cpuSeconds(pids: number[], reaped = false): number {
  let ticks = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 here;
    // cutime and cstime 16 and 17.
    if (f) ticks += Number(f[11]) + Number(f[12]);
    if (f && reaped) ticks += Number(f[13]) + Number(f[14]);
  }
  return ticks / CLK_TCK;
}

/**
 * CPU seconds of the processes and all of their descendants, with the
 * children each has reaped (cutime+cstime): a child that exits between two
 * readings is still counted, once.
 */
function treeCpuSeconds(roots: number[]): number {
  return cpuSeconds([...new Set(roots.flatMap(processTree))], true);
}

/** Sum of VmRSS in bytes. */
function rssBytes(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = fs.readFileSync(`/proc/${pid}/status`, "utf8")
        .match(/^VmRSS:\s+(\d+)/m);
      if (m) kb += Number(m[1]);
    } catch {
      // gone
    }
  }
  return kb * 1024;
}

// ---------------------------------------------------------------------------
// Ports and readiness

class NotAvailable extends Error {}

/**
 * Waits until something in the child's process tree listens on the port.
 * Readiness is read from /proc/net/tcp rather than probed with a connection:
 * a probe would reach the backend (iperf3 -s treats a stray connection as a
 * failed test).  Returns the PID that owns the listening socket.
 */
async function waitListening(
  s: Started,
  port: number,
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(s.child)) {
      await sleep(100); // let the last output arrive
      const code = s.child.exitCode ?? s.child.signalCode;
      throw new NotAvailable(
        firstLine(s.output()) || `exited (${code}) without output`,
      );
    }
    const inode = listenInode(port);
    if (inode) {
      const owner = socketOwner(processTree(s.pid), inode);
      if (owner !== null) return owner;
    }
    await sleep(50);
  }
  const out = firstLine(s.output());
  throw new NotAvailable(
    `not listening on ${port} after ${timeoutMs / 1000} s` +
      (out ? `: ${out}` : ""),
  );
}

// ---------------------------------------------------------------------------
// Peer binaries

interface Bins {
  haproxy: string;
  nginx: string;
  iperf3: string;
  wrk: string;
  deno: string | null;
  bun: string | null;
  node: string | null;
}

/** Is apt-get or dpkg running right now (e.g. a background install)? */
function aptRunning(): boolean {
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const comm = fs.readFileSync(`/proc/${name}/comm`, "utf8").trim();
      if (/^(apt|apt-get|aptitude|dpkg|unattended-upgr)$/.test(comm)) {
        return true;
      }
    } catch {
      // gone
    }
  }
  return false;
}

/** Runs apt-get install (through sudo -n when not root); true on success. */
function aptInstall(pkgs: string[]): boolean {
  const prefix = process.getuid?.() === 0 ? [] : findBin("sudo") ? ["sudo", "-n"] : null;
  if (!prefix) {
    log("not root and no sudo: cannot run apt-get");
    return false;
  }
  const aptGet = (aptArgs: string[]): boolean => {
    const [cmd = "", ...args] = [...prefix, "apt-get", ...aptArgs];
    log(`running: ${[cmd, ...args].join(" ")}`);
    return spawnSync(cmd, args, {
      stdio: ["ignore", 2, 2],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      timeout: 15 * 60_000,
    }).status === 0;
  };
  if (aptGet(["install", "-y", ...pkgs])) return true;
  aptGet(["update"]);
  if (aptGet(["install", "-y", ...pkgs])) return true;
  // nginx-light is gone from newer Debian releases; plain nginx will do.
  return aptGet([
    "install",
    "-y",
    ...pkgs.map((p) => p === "nginx-light" ? "nginx" : p),
  ]);
}

/** The peers of the proxy rows, each with the Debian package that has it. */
const PEER_PACKAGES: Record<string, string> = {
  haproxy: "haproxy",
  nginx: "nginx-light",
  iperf3: "iperf3",
  wrk: "wrk",
};

/** What the tunnel section runs, each with the Debian package that has it. */
const TUNNEL_PACKAGES: Record<string, string> = {
  nginx: "nginx-light",
  iperf3: "iperf3",
  wrk: "wrk",
  sshd: "openssh-server",
  ssh: "openssh-client",
  "ssh-keygen": "openssh-client",
  stunnel: "stunnel4",
  openssl: "openssl",
};

/**
 * Installs the packages (`pkgOf`: binary -> Debian package) of the binaries
 * not on PATH, unless `install` is false; returns the binaries still missing.
 */
async function ensureBins(pkgOf: Record<string, string>, install: boolean): Promise<string[]> {
  const missing = () => Object.keys(pkgOf).filter((b) => !findBin(b));
  const packages = () => [...new Set(missing().map((b) => pkgOf[b]!))];
  if (missing().length && aptRunning()) {
    // e.g. `apt-get install ... >/tmp/apt.log` started in the background.
    log(
      `missing ${missing().join(", ")}; waiting for the running apt/dpkg ` +
        `(log: /tmp/apt.log if it was started that way)`,
    );
    const deadline = Date.now() + 15 * 60_000;
    while (aptRunning() && missing().length && Date.now() < deadline) {
      await sleep(2000);
    }
  }
  if (missing().length && install) aptInstall(packages());
  return missing();
}

/**
 * Finds the binaries (installing their packages when missing and allowed);
 * throws naming the ones still missing.
 */
async function ensureBinaries(
  pkgOf: Record<string, string>,
  install: boolean,
): Promise<Record<string, string>> {
  const missing = await ensureBins(pkgOf, install);
  if (missing.length) {
    throw new Error(
      `missing peer binaries: ${missing.join(", ")} ` +
        `(apt-get install -y ${[...new Set(missing.map((b) => pkgOf[b]))].join(" ")})`,
    );
  }
  return Object.fromEntries(Object.keys(pkgOf).map((b) => [b, findBin(b)!]));
}

/** The runtimes' ELF binaries (null where missing). */
function runtimeBins(): Pick<Bins, "deno" | "bun" | "node"> {
  return {
    deno: resolveRuntime(
      [
        "node_modules/.bin/deno",
        "node_modules/deno/deno",
        `node_modules/@deno/${process.arch === "arm64" ? "linux-arm64" : "linux-x64"}-glibc/deno`,
      ],
      "deno",
    ),
    bun: resolveRuntime(
      [
        "node_modules/.bin/bun",
        "node_modules/bun/bin/bun.exe",
        `node_modules/@oven/bun-linux-${process.arch === "arm64" ? "aarch64" : "x64"}/bin/bun`,
      ],
      "bun",
    ),
    node: findBin("node"),
  };
}

async function findPeers(install: boolean): Promise<Bins> {
  const b = await ensureBinaries(PEER_PACKAGES, install);
  return {
    haproxy: b.haproxy!,
    nginx: b.nginx!,
    iperf3: b.iperf3!,
    wrk: b.wrk!,
    ...runtimeBins(),
  };
}

/** The tunnel section's binaries, plus nginx and wrk for the backend and load. */
async function findTunnelPeers(
  install: boolean,
): Promise<TunnelBins & { nginx: string; wrk: string }> {
  const b = await ensureBinaries(TUNNEL_PACKAGES, install);
  const { deno, bun } = runtimeBins();
  return {
    nginx: b.nginx!,
    wrk: b.wrk!,
    iperf3: b.iperf3!,
    sshd: b.sshd!,
    ssh: b.ssh!,
    sshKeygen: b["ssh-keygen"]!,
    stunnel: b.stunnel!,
    openssl: b.openssl!,
    deno,
    bun,
  };
}

// ---------------------------------------------------------------------------
// Proxy table (data-driven: add a row here to benchmark another forwarder)

interface ProxySpec {
  name: string;
  /** Runtime/binary the entry needs; the row is skipped when it is missing. */
  needs?: keyof Bins;
  /** Command line for a proxy on listenPort forwarding to targetPort. null = direct. */
  argv: ((listenPort: number, targetPort: number) => string[]) | null;
  /** Peers this row is also reported as a ratio against. */
  compareTo?: string[];
  /** Only run when selected explicitly with --only. */
  optional?: boolean;
  /**
   * It serves `--admin`: "page", with the stats page open (this script asks
   * what the page asks, as often: scripts/bench/page_watch.ts); "idle",
   * with nobody asking.
   */
  admin?: "page" | "idle";
  /** The workloads of this row (default: all). */
  workloads?: ("bulk" | "rps" | "idle")[];
  /**
   * Measured in each of --rounds rounds, alternating with the other rows
   * that are, and reported as the medians (else measured once).
   */
  rounds?: boolean;
}

/** Hard RLIMIT_NOFILE, i.e. what `ulimit -n` in withFdLimit() can reach. */
const FD_HARD_LIMIT = (() => {
  const out = spawnSync("bash", ["-c", "ulimit -Hn"], { encoding: "utf8" })
    .stdout?.trim();
  return out === "unlimited" ? 1 << 20 : Number(out) || 4096;
})();

function haproxyConfig(
  listen: number,
  target: number,
  splice: boolean,
): string {
  const path = `${tmpDir}/haproxy-${listen}.cfg`;
  fs.writeFileSync(
    path,
    `global
    nbthread 1
    # haproxy refuses to start if it cannot get 2 fds per maxconn.
    maxconn ${Math.min(50_000, Math.floor((FD_HARD_LIMIT - 100) / 2))}
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
${splice ? "    option splice-auto\n" : ""}listen relay
    bind 127.0.0.1:${listen}
    server backend 127.0.0.1:${target}
`,
  );
  return path;
}

/** A route script that sends every connection to 127.0.0.1:target. */
function routeScript(target: number): string {
  const path = `${tmpDir}/route-${target}.ts`;
  fs.writeFileSync(path, `export const route = () => ({ remote: "127.0.0.1:${target}" });\n`);
  return path;
}

function proxyTable(bins: Bins): ProxySpec[] {
  const relaykit =
    (runtime: "deno" | "bun", engine: "native" | "stream", extra: string[] = []) =>
    (l: number, t: number) => [
      bins[runtime]!,
      ...(runtime === "deno" ? ["run", "-A"] : []),
      "src/cli.ts",
      "forward",
      "--listen",
      `127.0.0.1:${l}`,
      "--to",
      `127.0.0.1:${t}`,
      "--engine",
      engine,
      ...extra,
    ];
  return [
    { name: "direct", argv: null },
    {
      name: "haproxy",
      argv: (l, t) => [bins.haproxy, "-db", "-f", haproxyConfig(l, t, false)],
    },
    {
      name: "haproxy-splice",
      optional: true,
      argv: (l, t) => [bins.haproxy, "-db", "-f", haproxyConfig(l, t, true)],
    },
    // One worker thread, as haproxy runs with nbthread 1: the comparison is
    // thread for thread. The -auto rows use the default (one per CPU).
    {
      name: "relaykit-native-deno",
      needs: "deno",
      argv: relaykit("deno", "native", ["--threads", "1"]),
      compareTo: ["haproxy"],
    },
    {
      name: "relaykit-native-bun",
      needs: "bun",
      argv: relaykit("bun", "native", ["--threads", "1"]),
      compareTo: ["haproxy"],
    },
    // the same, with the stats page open (-page), and with --admin and
    // nobody asking (-admin)
    ...(["page", "idle"] as const).flatMap((admin) =>
      (["deno", "bun"] as const).map((rt): ProxySpec => ({
        name: `relaykit-native-${rt}-${admin === "page" ? "page" : "admin"}`,
        optional: true,
        admin,
        needs: rt,
        argv: relaykit(rt, "native", ["--threads", "1"]),
        compareTo: ["haproxy", `relaykit-native-${rt}`],
      }))
    ),
    {
      // every connection held and decided by a route function in JavaScript
      // (the first-bytes path of PROXY headers and routing), then native
      name: "relaykit-native-route-deno",
      optional: true,
      needs: "deno",
      argv: (l, t) => [
        bins.deno!,
        "run",
        "-A",
        "src/cli.ts",
        "route",
        routeScript(t),
        "--listen",
        `127.0.0.1:${l}`,
        "--engine",
        "native",
        "--threads",
        "1",
      ],
      compareTo: ["haproxy", "relaykit-native-deno"],
    },
    {
      name: "relaykit-native-deno-auto",
      optional: true,
      needs: "deno",
      argv: relaykit("deno", "native"),
      compareTo: ["haproxy"],
    },
    {
      name: "relaykit-native-bun-auto",
      optional: true,
      needs: "bun",
      argv: relaykit("bun", "native"),
      compareTo: ["haproxy"],
    },
    {
      name: "relaykit-stream-deno",
      needs: "deno",
      argv: relaykit("deno", "stream"),
      compareTo: ["haproxy", "naive-deno-pipeto"],
    },
    {
      name: "relaykit-stream-bun",
      needs: "bun",
      argv: relaykit("bun", "stream"),
      compareTo: ["haproxy", "naive-net-bun"],
    },
    {
      name: "naive-deno-pipeto",
      needs: "deno",
      argv: (l, t) => [
        bins.deno!,
        "run",
        "-A",
        "scripts/bench/naive_deno.ts",
        `${l}`,
        `${t}`,
      ],
    },
    {
      name: "naive-net-bun",
      needs: "bun",
      argv: (
        l,
        t,
      ) => [bins.bun!, "scripts/bench/naive_node_net.mjs", `${l}`, `${t}`],
    },
    {
      name: "naive-net-deno",
      optional: true,
      needs: "deno",
      argv: (
        l,
        t,
      ) => [bins.deno!, "run", "-A", "scripts/bench/naive_node_net.mjs", `${l}`, `${t}`],
    },
    {
      name: "naive-net-node",
      needs: "node",
      argv: (
        l,
        t,
      ) => [bins.node!, "scripts/bench/naive_node_net.mjs", `${l}`, `${t}`],
    },
    // bulk through data hooks, per engine and runtime (scripts/bench/hooks.ts)
    ...hookRows(bins),
  ];
}

/** Whether --only selector `sel` (an exact name, or a glob: * matches any run) names `name`. */
function selects(sel: string, name: string): boolean {
  const escape = (lit: string) => lit.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${sel.split("*").map(escape).join(".*")}$`).test(name);
}

/**
 * The rows --only selects (all but the optional ones without it). A selector
 * that names one of `sections` and no row is no error.
 */
function selectProxies(
  all: ProxySpec[],
  only: string[] | null,
  sections: readonly string[] = [],
): ProxySpec[] {
  if (!only) return all.filter((p) => !p.optional);
  for (const sel of only) {
    if (!all.some((p) => selects(sel, p.name)) && !sections.some((s) => selects(sel, s))) {
      throw new Error(
        `--only: no proxy or section named ${sel} (have: ${
          [...all.map((p) => p.name), ...sections].join(", ")
        })`,
      );
    }
  }
  return all.filter((p) => only.some((sel) => selects(sel, p.name)));
}

// ---------------------------------------------------------------------------
// Backends

interface Backends {
  /**
   * Starts a one-off `iperf3 -s -1` for one bulk run.  A fresh server per run
   * keeps a proxy that broke a test from leaving a shared server "busy".
   */
  iperf(): Promise<{ port: number; stop(): Promise<void> }>;
  httpPort: number;
  holdPort: number;
}

/** Command prefix that runs a JS file with the runtime running this script. */
function selfRuntime(): string[] {
  if (process.versions.deno) return [process.execPath, "run", "-A"];
  return [process.execPath];
}

function nginxConfig(nginx: string, port: number): string {
  // Temp paths: point every compiled-in one into our temp dir so that nginx
  // needs no write access to /var/lib/nginx (only directives for modules the
  // binary has, as listed by `nginx -V`, are valid).
  const v = spawnSync(nginx, ["-V"], { encoding: "utf8" });
  const temps = [...`${v.stderr}${v.stdout}`.matchAll(
    /--http-([a-z-]+)-temp-path=/g,
  )].map((m) => `    ${m[1]?.replace("-", "_")}_temp_path ${tmpDir}/nginx-${m[1]};`);
  const path = `${tmpDir}/nginx.conf`;
  fs.writeFileSync(
    path,
    `daemon off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid ${tmpDir}/nginx.pid;
error_log ${tmpDir}/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    # Keep wrk's keep-alive connections open for the whole run, so that the
    # keep-alive workload measures requests only, not reconnects.
    keepalive_requests 10000000;
${temps.join("\n")}
    server {
        listen 127.0.0.1:${port} backlog=4096;
        location / { return 200 "ok"; }
    }
}
`,
  );
  return path;
}

async function startBackend(name: string, argv: string[], port: number): Promise<Started> {
  const s = startChild(argv);
  try {
    await waitListening(s, port, 10_000);
  } catch (e) {
    await stopChild(s.child);
    throw new Error(`backend ${name} failed to start: ${(e as Error).message}`);
  }
  return s;
}

async function startBackends(bins: Pick<Bins, "nginx" | "iperf3">): Promise<Backends> {
  const httpPort = await freePort();
  const holdPort = await freePort();
  await startBackend("nginx", [
    bins.nginx,
    "-p",
    tmpDir,
    "-e",
    `${tmpDir}/nginx-error.log`,
    "-c",
    nginxConfig(bins.nginx, httpPort),
  ], httpPort);
  await startBackend("hold server", [
    ...selfRuntime(),
    `${REPO}/scripts/bench/idle_helper.mjs`,
    "hold",
    `${holdPort}`,
  ], holdPort);
  return {
    httpPort,
    holdPort,
    iperf: async () => {
      const port = await freePort();
      const s = await startBackend("iperf3 -s", [bins.iperf3, "-s", "-1", "-p", `${port}`], port);
      return { port, stop: () => stopChild(s.child) };
    },
  };
}

// ---------------------------------------------------------------------------
// Workloads

interface Result {
  name: string;
  status: "ok" | "skipped";
  reason?: string;
  /** The command line as run (after wrapper resolution). */
  argv?: string[];
  /** PID owning the listening socket in the last phase, and its comm. */
  measuredProcess?: string;
  bulkGbps: number | null;
  kaRps: number | null;
  kaP99Ms: number | null;
  closeRps: number | null;
  cpuUsPerReq: number | null;
  cpuUsPerConn: number | null;
  rssBytesPerIdleConn: number | null;
  notes: string[];
}

/** A running proxy under test (or the direct path, with no process). */
interface Target {
  port: number;
  /** PIDs whose CPU/RSS we account to the proxy (empty for direct). */
  pids(): number[];
  stop(): Promise<void>;
  /** Non-null if the proxy process died. */
  died(): string | null;
}

async function startTarget(
  spec: ProxySpec,
  backendPort: number,
  res: Result,
): Promise<Target> {
  if (!spec.argv) {
    return {
      port: backendPort,
      pids: () => [],
      stop: () => Promise.resolve(),
      died: () => null,
    };
  }
  const port = await freePort();
  const adminPort = spec.admin !== undefined ? await freePort() : 0;
  const argv = [
    ...spec.argv(port, backendPort),
    ...(spec.admin !== undefined ? ["--admin", `127.0.0.1:${adminPort}`] : []),
  ];
  res.argv = argv;
  const s = startChild(argv);
  let owner: number;
  try {
    owner = await waitListening(s, port, 5000);
  } catch (e) {
    await stopChild(s.child);
    throw e;
  }
  // Account CPU/RSS to the listener's process and anything it forks.  With
  // real binaries and `exec`, that is exactly the process we spawned; the
  // tree walk covers a wrapper or a multi-process engine if there ever is one.
  let comm = "?";
  try {
    comm = fs.readFileSync(`/proc/${owner}/comm`, "utf8").trim();
  } catch {
    // gone
  }
  res.measuredProcess = `pid ${owner} (${comm})` +
    (owner === s.pid ? "" : `, child of spawned pid ${s.pid}`);
  await sleep(200);
  const watch = spec.admin === "page" ? await watchPage(adminPort) : undefined;
  return {
    port,
    pids: () => processTree(owner),
    stop: async () => {
      if (watch !== undefined) {
        const w = watch.stop();
        res.notes.push(`page: ${w.polls} refreshes, ${w.failed} failed`);
      }
      await stopChild(s.child);
    },
    died: () =>
      alive(s.child)
        ? null
        : `proxy exited (${s.child.exitCode ?? s.child.signalCode}): ${firstLine(s.output())}`,
  };
}

async function bulk(
  iperf3: string,
  port: number,
  durationS: number,
  res: Result,
): Promise<void> {
  const r = await run(
    [
      iperf3,
      "-c",
      "127.0.0.1",
      "-p",
      `${port}`,
      "-t",
      `${durationS}`,
      "-J",
    ],
    (durationS + 20) * 1000,
  );
  try {
    const j = JSON.parse(r.stdout);
    if (j.error) throw new Error(j.error);
    res.bulkGbps = j.end.sum_received.bits_per_second / 1e9;
  } catch (e) {
    res.notes.push(
      `bulk: ${r.timedOut ? "timed out" : (e as Error).message || firstLine(r.stderr)}`,
    );
  }
}

interface WrkResult {
  rps: number;
  requests: number;
  p99Ms: number | null;
  errors: string | null;
}

/** Parses a wrk time such as 812.00us, 1.24ms, 2.01s, 1.00m into ms. */
function wrkTimeMs(s: string): number | null {
  const m = s.match(/^([\d.]+)(us|ms|s|m|h)$/);
  if (!m) return null;
  const scales: Record<string, number> = { us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
  const scale = scales[m[2] ?? ""];
  if (scale === undefined) return null;
  return Number(m[1]) * scale;
}

async function wrk(
  wrkBin: string,
  port: number,
  durationS: number,
  close: boolean,
): Promise<WrkResult> {
  const r = await run(
    [
      wrkBin,
      "-t1",
      "-c50",
      `-d${durationS}s`,
      "--latency",
      ...(close ? ["-H", "Connection: close"] : []),
      `http://127.0.0.1:${port}/`,
    ],
    (durationS + 15) * 1000,
  );
  if (r.timedOut) throw new Error("wrk timed out");
  const rps = r.stdout.match(/^Requests\/sec:\s+([\d.]+)/m);
  const requests = r.stdout.match(/^\s*(\d+) requests in/m);
  if (!rps || !requests) {
    throw new Error(
      `wrk: ${firstLine(r.stderr) || firstLine(r.stdout) || "no output"}`,
    );
  }
  const p99 = r.stdout.match(/^\s*99%\s+(\S+)/m);
  const errs = [
    r.stdout.match(/Socket errors:.*$/m)?.[0],
    r.stdout.match(/Non-2xx or 3xx responses:.*$/m)?.[0],
  ].filter(Boolean);
  return {
    rps: Number(rps[1]),
    requests: Number(requests[1]),
    p99Ms: p99?.[1] ? wrkTimeMs(p99[1]) : null,
    errors: errs.length ? errs.join("; ") : null,
  };
}

async function requestRate(
  wrkBin: string,
  t: Target,
  durationS: number,
  res: Result,
): Promise<void> {
  for (const close of [false, true]) {
    const label = close ? "close" : "keep-alive";
    const c0 = cpuSeconds(t.pids());
    try {
      const w = await wrk(wrkBin, t.port, durationS, close);
      const cpuUs = (cpuSeconds(t.pids()) - c0) * 1e6;
      const perReq = t.pids().length && w.requests ? cpuUs / w.requests : null;
      if (close) {
        res.closeRps = w.rps;
        res.cpuUsPerConn = perReq; // one request per connection
      } else {
        res.kaRps = w.rps;
        res.kaP99Ms = w.p99Ms;
        res.cpuUsPerReq = perReq;
      }
      if (w.errors) res.notes.push(`${label}: ${w.errors}`);
    } catch (e) {
      res.notes.push(`${label}: ${(e as Error).message}`);
    }
    await sleep(300);
  }
}

/** Reads lines from a child's stdout; next() waits for the next one. */
function lineReader(child: ChildProcess) {
  const lines: string[] = [];
  const waiters: ((l: string | null) => void)[] = [];
  let buf = "";
  let ended = false;
  child.stdout?.on("data", (c) => {
    buf += c.toString();
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  child.on("exit", () => {
    ended = true;
    for (const w of waiters.splice(0)) w(null);
  });
  return (timeoutMs: number): Promise<string | null> => {
    if (lines.length) return Promise.resolve(lines.shift()!);
    if (ended) return Promise.resolve(null);
    return new Promise((resolve) => {
      const w = (l: string | null) => {
        clearTimeout(timer);
        resolve(l);
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        resolve(null);
      }, timeoutMs);
      waiters.push(w);
    });
  };
}

async function idleMemory(t: Target, n: number, res: Result): Promise<void> {
  if (stopping) return;
  const [cmd, args] = withFdLimit([
    ...selfRuntime(),
    `${REPO}/scripts/bench/idle_helper.mjs`,
    "client",
    `${t.port}`,
    `${n}`,
  ]);
  const child = spawn(cmd, args, {
    cwd: REPO,
    env: CHILD_ENV,
    detached: true,
    stdio: ["pipe", "pipe", "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr?.on("data", (c) => (stderr += c.toString()));
  const next = lineReader(child);
  try {
    if ((await next(15_000)) !== "warm") {
      throw new Error(`warm-up failed ${firstLine(stderr)}`);
    }
    await sleep(500);
    const before = rssBytes(t.pids());
    child.stdin?.write("go\n");
    const ready = await next(60_000);
    const m = ready?.match(/^ready (\d+) (\d+)$/);
    if (!m) throw new Error(`client failed ${firstLine(stderr)}`);
    await sleep(1000);
    const after = rssBytes(t.pids());
    const ok = Number(m[1]);
    if (Number(m[2])) {
      res.notes.push(`idle: ${m[2]} of ${n} connections failed`);
    }
    if (ok) res.rssBytesPerIdleConn = (after - before) / ok;
  } catch (e) {
    res.notes.push(`idle: ${(e as Error).message}`);
  } finally {
    await stopChild(child);
  }
}

async function benchProxy(
  spec: ProxySpec,
  bins: Bins,
  be: Backends,
  opts: Options,
): Promise<Result> {
  const res: Result = {
    name: spec.name,
    status: "ok",
    bulkGbps: null,
    kaRps: null,
    kaP99Ms: null,
    closeRps: null,
    cpuUsPerReq: null,
    cpuUsPerConn: null,
    rssBytesPerIdleConn: null,
    notes: [],
  };
  if (spec.needs && !bins[spec.needs]) {
    return {
      ...res,
      status: "skipped",
      reason: `not available: ${spec.needs} not found`,
    };
  }
  // Each phase gets a fresh proxy process, pointed at that phase's backend.
  interface Phase {
    name: string;
    /** Backend port for this phase, and how to release the backend after it. */
    backend(): Promise<{ port: number; stop(): Promise<void> }>;
    workload(t: Target): Promise<void>;
  }
  const shared = (port: number) => () => Promise.resolve({ port, stop: () => Promise.resolve() });
  const phases: Phase[] = [
    {
      name: "bulk",
      backend: be.iperf,
      workload: (t) => bulk(bins.iperf3, t.port, opts.durationS, res),
    },
    {
      name: "rps",
      backend: shared(be.httpPort),
      workload: (t) => requestRate(bins.wrk, t, opts.durationS, res),
    },
  ];
  if (spec.argv) { // idle memory is a property of a proxy process; none for direct
    phases.push({
      name: "idle",
      backend: shared(be.holdPort),
      workload: (t) => idleMemory(t, opts.idleConns, res),
    });
  }
  for (const phase of phases) {
    if (spec.workloads && !spec.workloads.some((w) => w === phase.name)) continue;
    let backend: { port: number; stop(): Promise<void> };
    let t: Target;
    try {
      backend = await phase.backend();
    } catch (e) {
      res.notes.push(`${phase.name}: ${(e as Error).message}`);
      continue;
    }
    try {
      t = await startTarget(spec, backend.port, res);
    } catch (e) {
      await backend.stop();
      if (e instanceof NotAvailable && phase.name === "bulk") {
        return { ...res, status: "skipped", reason: `not available: ${e.message}` };
      }
      res.notes.push(`${phase.name}: ${(e as Error).message}`);
      continue;
    }
    try {
      await phase.workload(t);
      const died = t.died();
      if (died) res.notes.push(`${phase.name}: ${died}`);
    } finally {
      await t.stop();
      await backend.stop();
    }
    await sleep(300);
  }
  return res;
}

// ---------------------------------------------------------------------------
// Parser section: PROXY protocol parse and build, in this process

/** The --only name of the parser section. */
const PARSER_SECTION = "parser";

/** The --only name of the tunnel section. */
const TUNNEL_SECTION = "tunnel";

/** The --only name of the soak section (soak-native, soak-stream: one engine). */
const SOAK_SECTION = "soak";

/**
 * The engines --only selects for the soak. Only selectors that begin with
 * "soak" do: a soak runs for minutes, so `--only '*-bun'` must not start one.
 */
function soakSelection(only: string[] | null): ("native" | "stream")[] {
  const sels = (only ?? []).filter((sel) => sel.startsWith(SOAK_SECTION));
  return (["native", "stream"] as const).filter((e) =>
    sels.some((sel) => selects(sel, SOAK_SECTION) || selects(sel, `${SOAK_SECTION}-${e}`))
  );
}

/** What the soak section needs from this script: peers, backends, child processes. */
function soakContext(bins: Bins, be: Backends, minutes: number): SoakContext {
  return {
    minutes,
    wrk: bins.wrk,
    httpPort: be.httpPort,
    tmpDir,
    log,
    freePort,
    run,
    startRelaykit: async (args, port, v8Flags = []) => {
      const flags = process.versions.deno && v8Flags.length
        ? [`--v8-flags=${v8Flags.join(",")}`]
        : [];
      const s = startChild([...selfRuntime(), ...flags, "src/cli.ts", ...args]);
      let pid: number;
      try {
        pid = await waitListening(s, port, 10_000);
      } catch (e) {
        await stopChild(s.child);
        throw new Error(`relaykit ${args[0]}: ${(e as Error).message}`);
      }
      return {
        pid,
        stop: () => stopChild(s.child),
        died: () =>
          alive(s.child)
            ? null
            : `relaykit ${args[0]} exited (${s.child.exitCode ?? s.child.signalCode}): ${
              firstLine(s.output())
            }`,
      };
    },
  };
}

/** What the decision sections need from this script. */
function decideContext(
  bins: Bins,
  be: Backends,
  opts: Options,
  missing: string[],
): DecideContext {
  const find = (name: string) => (missing.includes(name) ? null : findBin(name));
  const decideBins: DecideBins = {
    deno: bins.deno,
    bun: bins.bun,
    haproxy: bins.haproxy,
    microsocks: find("microsocks"),
    danted: find("danted"),
    tinyproxy: find("tinyproxy"),
    gcc: find("gcc"),
  };
  return {
    durationS: opts.durationS,
    rounds: opts.rounds,
    bins: decideBins,
    httpPort: be.httpPort,
    cpuSeconds: (pids) => cpuSeconds(pids, true),
    tmpDir,
    log,
    freePort,
    run,
    start: async (argv, port) => {
      const s = startChild(argv);
      let pid: number;
      try {
        pid = await waitListening(s, port, 10_000);
      } catch (e) {
        await stopChild(s.child);
        throw e;
      }
      return {
        pid,
        pids: () => processTree(pid),
        stop: () => stopChild(s.child),
        died: () =>
          alive(s.child)
            ? null
            : `exited (${s.child.exitCode ?? s.child.signalCode}): ${firstLine(s.output())}`,
      };
    },
  };
}

/** What the tunnel section needs from this script: peers, backends, child processes. */
function tunnelContext(
  bins: TunnelBins & { wrk: string },
  be: Backends,
  opts: Options,
): TunnelContext {
  return {
    durationS: opts.durationS,
    rounds: opts.rounds,
    tmpDir,
    httpPort: be.httpPort,
    bins,
    selfRuntime: selfRuntime(),
    log,
    freePort,
    run,
    treeCpu: treeCpuSeconds,
    wrk: (port, durationS) => wrk(bins.wrk, port, durationS, false),
    start: async (argv, ports) => {
      const s = startChild(argv);
      const name = (argv[0] ?? "").split("/").pop();
      const died = () =>
        alive(s.child)
          ? null
          : `${name} exited (${s.child.exitCode ?? s.child.signalCode}): ${firstLine(s.output())}`;
      try {
        for (const port of ports) await waitListening(s, port, 10_000);
      } catch (e) {
        await stopChild(s.child);
        throw new Error(`${name}: ${(e as Error).message}`);
      }
      return { pid: s.pid, output: s.output, stop: () => stopChild(s.child), died };
    },
  };
}

interface ParserResult {
  name: string;
  /** Size of the header parsed or built. */
  headerBytes: number;
  iterations: number;
  seconds: number;
  headersPerS: number;
  nsPerHeader: number;
}

interface ParserWorkload {
  name: string;
  headerBytes: number;
  /** Parses or builds the header `n` times; returns the bytes seen, so nothing is optimised away. */
  batch(n: number): number;
}

function parserWorkloads(): ParserWorkload[] {
  const enc = new TextEncoder();
  const v1Header: ProxyHeader = {
    version: 1,
    command: "proxy",
    transport: "stream",
    source: { host: "192.0.2.1", port: 56324 },
    destination: { host: "198.51.100.2", port: 443 },
    tlvs: [],
  };
  const v2Header: ProxyHeader = {
    version: 2,
    command: "proxy",
    transport: "stream",
    source: { host: "192.0.2.1", port: 56324 },
    destination: { host: "198.51.100.2", port: 443 },
    tlvs: [
      { type: TLV.UNIQUE_ID, value: enc.encode("3f2b8c1e-5d4a-4f6e-9b7c-2a1d0e9f8c7b") },
      { type: TLV.AUTHORITY, value: enc.encode("www.example.com") },
    ],
  };
  const v1 = buildProxyHeader(v1Header);
  const v2 = buildProxyHeader(v2Header, { crc32c: true });
  const parse = (bytes: Uint8Array) => (n: number) => {
    let seen = 0;
    for (let i = 0; i < n; i++) {
      const r = parseProxyHeader(bytes);
      if (r.kind === "header") seen += r.length;
    }
    return seen;
  };
  const build = (h: ProxyHeader, crc32c: boolean) => (n: number) => {
    let seen = 0;
    for (let i = 0; i < n; i++) seen += buildProxyHeader(h, { crc32c }).length;
    return seen;
  };
  return [
    { name: "v1 TCP4 parse", headerBytes: v1.length, batch: parse(v1) },
    { name: "v2 IPv4+TLVs parse", headerBytes: v2.length, batch: parse(v2) },
    { name: "v1 TCP4 build", headerBytes: v1.length, batch: build(v1Header, false) },
    { name: "v2 IPv4+TLVs build", headerBytes: v2.length, batch: build(v2Header, true) },
  ];
}

/** Runs `w` for `seconds` after a short warm-up, checking the clock every batch. */
function measureParser(w: ParserWorkload, seconds: number): ParserResult {
  const BATCH = 1000;
  const fail = (seen: number, n: number) => {
    throw new Error(`parser: ${w.name} saw ${seen} bytes in ${n} headers of ${w.headerBytes}`);
  };
  const once = w.batch(1);
  if (once !== w.headerBytes) fail(once, 1);
  const warm = performance.now() + Math.min(200, seconds * 100);
  while (performance.now() < warm) w.batch(BATCH);
  let n = 0, seen = 0, t = 0;
  const t0 = performance.now(), end = t0 + seconds * 1000;
  do {
    seen += w.batch(BATCH);
    n += BATCH;
    t = performance.now();
  } while (t < end);
  if (seen !== n * w.headerBytes) fail(seen, n);
  const s = (t - t0) / 1000;
  return {
    name: w.name,
    headerBytes: w.headerBytes,
    iterations: n,
    seconds: s,
    headersPerS: n / s,
    nsPerHeader: (s * 1e9) / n,
  };
}

function benchParser(seconds: number): ParserResult[] {
  return parserWorkloads().map((w) => {
    const r = measureParser(w, seconds);
    log(
      `[${PARSER_SECTION}] ${r.name}  headers/s=${fmt(r.headersPerS, 0)}  ` +
        `ns/header=${fmt(r.nsPerHeader, 0)}`,
    );
    return r;
  });
}

const PARSER_COLUMNS = ["bytes", "headers/s", "ns/header"];

function parserRow(r: ParserResult): string[] {
  return [r.name, `${r.headerBytes}`, fmt(r.headersPerS, 0), fmt(r.nsPerHeader, 0)];
}

// ---------------------------------------------------------------------------
// Report

/** The figures of a Result. */
type FigureKey = {
  [K in keyof Result]-?: Result[K] extends number | null ? K : never;
}[keyof Result];

interface Column {
  title: string;
  key: FigureKey;
  digits: number;
}

const COLUMNS: Column[] = [
  { title: "bulk Gbit/s", key: "bulkGbps", digits: 2 },
  { title: "ka req/s", key: "kaRps", digits: 0 },
  { title: "ka p99 ms", key: "kaP99Ms", digits: 2 },
  { title: "close req/s", key: "closeRps", digits: 0 },
  { title: "CPU µs/req", key: "cpuUsPerReq", digits: 1 },
  { title: "CPU µs/conn", key: "cpuUsPerConn", digits: 1 },
  {
    title: "RSS B/idle conn",
    key: "rssBytesPerIdleConn",
    digits: 0,
  },
];

/** One row's runs as one result: the medians of its figures (a skipped run: as it is). */
function medianResult(runs: Result[]): Result {
  const first = runs[0]!;
  if (runs.length === 1 || runs.some((r) => r.status === "skipped")) return first;
  const out: Result = { ...first, notes: [...new Set(runs.flatMap((r) => r.notes))] };
  for (const c of COLUMNS) out[c.key] = median(runs.map((r) => r[c.key]));
  return out;
}

function fmt(v: number | null, digits: number): string {
  if (v === null || !Number.isFinite(v)) return "–";
  return v.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join("  ");
  return [
    line(header),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...rows.map(line),
  ]
    .join("\n");
}

interface Ratio {
  row: string;
  peer: string;
  ratios: Partial<Record<keyof Result, number | null>>;
}

function ratios(results: Result[], specs: ProxySpec[]): Ratio[] {
  const byName = new Map(results.map((r) => [r.name, r]));
  const out: Ratio[] = [];
  for (const spec of specs) {
    const row = byName.get(spec.name);
    if (!row || row.status !== "ok") continue;
    for (const peerName of spec.compareTo ?? []) {
      const peer = byName.get(peerName);
      if (!peer || peer.status !== "ok") continue;
      const r: Ratio = { row: row.name, peer: peerName, ratios: {} };
      for (const c of COLUMNS) {
        const a = row[c.key];
        const b = peer[c.key];
        r.ratios[c.key] = a !== null && b !== null && b !== 0 ? a / b : null;
      }
      out.push(r);
    }
  }
  return out;
}

function hostInfo() {
  const cpuinfo = (() => {
    try {
      return fs.readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return "";
    }
  })();
  const nproc = Number(spawnSync("nproc", { encoding: "utf8" }).stdout?.trim()) ||
    os.cpus().length;
  return {
    nproc,
    cpuModel: cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1] ??
      os.cpus()[0]?.model ?? "?",
    kernel: os.release(),
  };
}

// ---------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  tmpDir = fs.mkdtempSync(`${os.tmpdir()}/relaykit-bench-`);
  if (opts.list) {
    for (const p of proxyTable(await findPeers(opts.install))) {
      const argv = p.argv ? p.argv(10001, 10002).join(" ") : "(no proxy)";
      console.log(
        `${p.name.padEnd(22)} ${p.optional ? "[optional] " : ""}${argv}`,
      );
    }
    console.log(`${PARSER_SECTION.padEnd(22)} [section] PROXY protocol parse/build, in process`);
    console.log(
      `${TUNNEL_SECTION.padEnd(22)} [section] tunnel vs ssh -L and stunnel (--only tunnel)`,
    );
    for (const v of SOAK_VARIANTS) {
      console.log(`${v.padEnd(22)} [section] soak, this runtime (--only soak or --only ${v})`);
    }
    for (const line of decideListing()) console.log(line);
    return;
  }
  const sections = [
    PARSER_SECTION,
    TUNNEL_SECTION,
    SOAK_SECTION,
    ...SOAK_VARIANTS,
    ...DECIDE_SECTIONS,
    DECIDE_GROUP,
  ];
  // The rows' names do not depend on where the peers are (argv is only
  // called to run one): select first, so that a run of sections alone
  // (--only parser) neither needs the peers nor installs them.
  const unresolved: Bins = {
    haproxy: "haproxy",
    nginx: "nginx",
    iperf3: "iperf3",
    wrk: "wrk",
    deno: "deno",
    bun: "bun",
    node: "node",
  };
  const wantProxies = selectProxies(proxyTable(unresolved), opts.only, sections).length > 0;
  const runParser = opts.only === null || opts.only.some((sel) => selects(sel, PARSER_SECTION));
  const runTunnel = opts.only !== null && opts.only.some((sel) => selects(sel, TUNNEL_SECTION));
  const soakEngines = soakSelection(opts.only);
  const decideSections = decideSelection(opts.only, selects);
  const bins = wantProxies || soakEngines.length || decideSections.length
    ? await findPeers(opts.install)
    : null;
  const decideMissing = decideSections.length
    ? await ensureBins(DECIDE_PACKAGES, opts.install)
    : [];
  const tunnelBins = runTunnel ? await findTunnelPeers(opts.install) : null;
  const specs = bins ? selectProxies(proxyTable(bins), opts.only, sections) : [];
  const parserS = opts.durationS / 5;

  const date = new Date().toISOString();
  const host = hostInfo();
  const runner = process.versions.deno
    ? `deno ${process.versions.deno}`
    : process.versions.bun
    ? `bun ${process.versions.bun}`
    : `node ${process.versions.node}`;
  const versions = bins
    ? {
      haproxy: versionOf(bins.haproxy, ["-v"], /version (\S+)/),
      nginx: versionOf(bins.nginx, ["-v"], /nginx\/(\S+)/),
      iperf3: versionOf(bins.iperf3, ["--version"], /iperf (\S+)/),
      wrk: versionOf(bins.wrk, ["--version"], /wrk (\S+)/),
      deno: versionOf(bins.deno, ["--version"], /deno (\S+)/),
      ...(decideSections.length
        ? {
          microsocks: findBin("microsocks") ? dpkgVersion("microsocks") : "missing",
          dante: versionOf(findBin("danted"), ["-v"], /Dante v([\d.]*\d)/),
          tinyproxy: versionOf(findBin("tinyproxy"), ["-v"], /tinyproxy (\S+)/),
        }
        : {}),
      bun: versionOf(bins.bun, ["--version"], /^(\S+)/),
      node: versionOf(bins.node, ["--version"], /^v?(\S+)/),
    }
    : {};
  const header = [
    `relaykit bench  ${date}  (runner: ${runner})`,
    `host: nproc=${host.nproc}  CPU: ${host.cpuModel}  kernel ${host.kernel}`,
    ...(bins ? [`peers: ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(", ")}`] : []),
    ...(specs.length
      ? [`workloads: ${opts.durationS} s each; wrk -t1 -c50; ${opts.idleConns} idle conns`]
      : []),
    ...(runParser ? [`${PARSER_SECTION}: ${parserS} s each, in this process (${runner})`] : []),
    ...(runTunnel
      ? [
        `${TUNNEL_SECTION}: ${opts.rounds} round(s) over its paths, ${opts.durationS} s per ` +
        `workload (iperf3 -P 1, -P 8, wrk -t1 -c50 keep-alive), medians`,
      ]
      : []),
    ...(soakEngines.length
      ? [
        `${SOAK_SECTION}: ${soakEngines.join(", ")} engine, ${opts.soakMinutes} min each, ` +
        `relaykit processes on ${runner}`,
      ]
      : []),
    ...(decideSections.length
      ? [
        `decide: ${decideSections.join(", ")}; ${opts.rounds} round(s) of ${opts.durationS} s ` +
        `per row, connload -c50`,
      ]
      : []),
  ].join("\n");
  log(header + "\n");

  // First, while nothing else runs on the machine.
  const parser = runParser ? benchParser(parserS) : [];

  const results: Result[] = [];
  const backendBins = bins ?? tunnelBins;
  const be =
    backendBins && (specs.length || soakEngines.length || decideSections.length || runTunnel)
      ? await startBackends(backendBins)
      : null;
  if (be) {
    log(`backends: nginx :${be.httpPort}, hold server :${be.holdPort}, iperf3 -s -1 per run\n`);
  }
  const tunnel: TunnelBenchResult | null = tunnelBins && be
    ? await benchTunnel(tunnelContext(tunnelBins, be, opts))
    : null;
  if (bins && be) {
    // rows measured in rounds alternate within each round; the rest run once
    const runs = new Map<string, Result[]>();
    const rounded = specs.filter((s) => s.rounds === true);
    const once = specs.filter((s) => s.rounds !== true);
    const plan = [
      ...once.map((spec) => ({ spec, round: "" })),
      ...Array.from(
        { length: rounded.length ? opts.rounds : 0 },
        (_, i) => rounded.map((spec) => ({ spec, round: ` round ${i + 1}/${opts.rounds}` })),
      ).flat(),
    ];
    for (const { spec, round } of plan) {
      log(`[${spec.name}]${round} ...`);
      const r = await benchProxy(spec, bins, be, opts);
      runs.set(spec.name, [...(runs.get(spec.name) ?? []), r]);
      if (r.status === "skipped") log(`[${spec.name}] skipped: ${r.reason}`);
      else {
        log(
          `[${spec.name}]${round} ` +
            COLUMNS.map((c) => `${c.title}=${fmt(r[c.key], c.digits)}`).join(
              "  ",
            ),
        );
        if (r.measuredProcess) log(`[${spec.name}]   measured: ${r.measuredProcess}`);
        for (const n of r.notes) log(`[${spec.name}]   note: ${n}`);
      }
    }
    for (const spec of specs) results.push(medianResult(runs.get(spec.name)!));
  }
  let decide: DecideResult | null = null;
  if (bins && be && decideSections.length) {
    try {
      decide = await benchDecide(decideContext(bins, be, opts, decideMissing), decideSections);
    } catch (e) {
      log(`decide: ${(e as Error).message}`);
      process.exitCode = 1;
    }
  }
  const soak = bins && be && soakEngines.length
    ? await benchSoak(soakContext(bins, be, opts.soakMinutes), soakEngines, runner)
    : [];

  // Report
  const rows = results.map((r) =>
    r.status === "skipped"
      ? [r.name, "skipped", ...COLUMNS.slice(1).map(() => "")]
      : [r.name, ...COLUMNS.map((c) => fmt(r[c.key], c.digits))]
  );
  const out: string[] = ["", header];
  if (specs.length) out.push("", table(["proxy", ...COLUMNS.map((c) => c.title)], rows));
  const rs = ratios(results, specs);
  if (rs.length) {
    out.push(
      "",
      "ratios (row / peer; want > 1 for Gbit/s and req/s, < 1 for p99, CPU and RSS):",
      "",
      table(
        ["row / peer", ...COLUMNS.map((c) => c.title)],
        rs.map((r) => [
          `${r.row} / ${r.peer}`,
          ...COLUMNS.map((c) => {
            const v = r.ratios[c.key] ?? null;
            return v === null ? "–" : `${v.toFixed(2)}x`;
          }),
        ]),
      ),
    );
  }
  const hooks = hookTargets(results);
  if (hooks.lines.length) out.push("", ...hooks.lines);
  const notes = results.flatMap((r) =>
    r.status === "skipped"
      ? [`${r.name}: skipped, ${r.reason}`]
      : r.notes.map((n) => `${r.name}: ${n}`)
  );
  if (notes.length) out.push("", "notes:", ...notes.map((n) => `  ${n}`));
  if (parser.length) {
    out.push("", table([PARSER_SECTION, ...PARSER_COLUMNS], parser.map(parserRow)));
  }
  if (tunnel) out.push("", ...tunnelReport(tunnel, table));
  if (decide) {
    out.push(
      "",
      table(["decision section: proxy", ...DECIDE_COLUMNS], decideRows(decide)),
      ...decideSummary(decide),
    );
  }
  if (soak.length) {
    out.push(
      "",
      table(
        [SOAK_SECTION, ...SOAK_COLUMNS],
        soak.flatMap((r) => r.processes.map((p) => soakRow(r, p))),
      ),
      ...soakSummary(soak),
    );
    if (soak.some((r) => !r.pass)) process.exitCode = 1;
  }
  console.log(out.join("\n"));

  if (opts.json) {
    fs.writeFileSync(
      opts.json,
      JSON.stringify(
        {
          date,
          runner,
          host,
          versions,
          durationS: opts.durationS,
          idleConns: opts.idleConns,
          results,
          ratios: rs,
          hookTargets: hooks.targets,
          parserDurationS: runParser ? parserS : null,
          parser,
          tunnel,
          soakMinutes: soak.length ? opts.soakMinutes : null,
          soak,
          decide,
        },
        null,
        2,
      ) + "\n",
    );
    log(`\nwrote ${opts.json}`);
  }
}

try {
  await main();
} catch (e) {
  log(`bench: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  // Stop everything gracefully first; the exit handler is the backstop.
  for (const child of [...children]) await stopChild(child);
  cleanupSync();
}
