/**
 * The decision sections of scripts/bench.ts: what deciding a connection
 * costs, relaykit against the single-purpose proxies a user would pick for
 * the job, side by side in one run.
 *
 * Each connection is one decision and one request: connload (connload.c,
 * compiled here with the system C compiler; one thread, epoll, CONNS
 * connections in flight) connects to the proxy, makes it decide, sends
 * `GET /` with `Connection: close` to nginx `return 200` behind it and reads
 * the answer. Per row: connections/s, p50/p99 latency (connect() to the
 * answer's last byte), and the CPU of the proxy's process tree
 * (utime+stime of every process, and of its reaped children, from /proc)
 * per completed connection.
 *
 *   socks        SOCKS5 (no auth) CONNECT to nginx: `relaykit socks`
 *                (native engine) on Deno and Bun, microsocks, dante
 *   connect      HTTP CONNECT to nginx: `relaykit http-connect` (native
 *                engine) on Deno and Bun, tinyproxy
 *   hostroute    the request itself, routed on its Host header: `relaykit
 *                run` with a config routing table (`routes:`, decided in C)
 *                and `relaykit route` with a JavaScript route function (a
 *                Host -> backend table) on Deno and Bun, haproxy `mode tcp`
 *                switching on req.hdr(host) after tcp-request inspect-delay
 *   acceptproxy  a PROXY v1 or v2 header before the request: `relaykit
 *                forward --accept-proxy v1|v2` against plain `relaykit
 *                forward` on the same runtime
 *
 * The proxies of a section are all started first and warmed up; then each
 * round measures every row once, in alternating order (reversed every other
 * round); a row's figures are the medians of its rounds. The targets of
 * issue 23 are ratios of CPU per connection within the run (see TARGETS),
 * printed round by round too. Many short rounds (the README's sitting:
 * --rounds 15 --duration 1) measure each row close in time to its
 * reference, where the machine's speed drifts over tens of seconds.
 */
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { median } from "./stats.ts";

/** The sections, by their --only names. */
export const DECIDE_SECTIONS = ["socks", "connect", "hostroute", "acceptproxy"] as const;
/** The --only name that selects every decision section. */
export const DECIDE_GROUP = "decide";

export type DecideSection = typeof DECIDE_SECTIONS[number];

/** Binaries the sections use (null: not found), besides the runtimes. */
export interface DecideBins {
  deno: string | null;
  bun: string | null;
  haproxy: string | null;
  microsocks: string | null;
  danted: string | null;
  tinyproxy: string | null;
  gcc: string | null;
}

/** Debian packages of the peers, for the bench's installer. */
export const DECIDE_PACKAGES: Record<string, string> = {
  microsocks: "microsocks",
  danted: "dante-server",
  tinyproxy: "tinyproxy",
  gcc: "gcc",
};

/** A running proxy under test. */
export interface DecideProcess {
  /** The PID that owns the listening socket. */
  pid: number;
  /** It and its descendants. */
  pids(): number[];
  stop(): Promise<void>;
  /** Non-null once it has exited. */
  died(): string | null;
}

/** What the sections need from scripts/bench.ts. */
export interface DecideContext {
  durationS: number;
  rounds: number;
  bins: DecideBins;
  /** nginx `return 200` on 127.0.0.1. */
  httpPort: number;
  /**
   * CPU seconds (utime+stime) of the processes from /proc, with those of
   * children they have reaped (a peer that forks per connection).
   */
  cpuSeconds(pids: number[]): number;
  /** A directory for configs and the compiled load generator. */
  tmpDir: string;
  log(line: string): void;
  freePort(): Promise<number>;
  /** Runs a command to completion (killed after timeoutMs). */
  run(
    argv: string[],
    timeoutMs: number,
  ): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }>;
  /** Starts a long-running command (cwd: the repository); resolves once something listens on `port`. */
  start(argv: string[], port: number): Promise<DecideProcess>;
}

/** Connections in flight (as the rps workload's wrk -c50). */
const CONNS = 50;
/** connload's per-connection timeout. */
const CONN_TIMEOUT_MS = 5000;

type LoadMode = "http" | "proxy1" | "proxy2" | "socks5" | "connect";

interface RowSpec {
  section: DecideSection;
  name: string;
  /** What the row is, for the report. */
  what: string;
  mode: LoadMode;
  /** Host header of the request (default 127.0.0.1). */
  host?: string;
  /** Binaries the row needs; it is skipped when one is missing. */
  needs: (keyof DecideBins)[];
  argv(ctx: DecideContext, listen: number): string[];
}

/** A target of issue 23: row's CPU per connection <= limit x peer's. */
interface TargetSpec {
  section: DecideSection;
  label: string;
  row: string;
  peer: string;
  limit: number;
  /** Also wants the row's p99 no worse than the peer's. */
  p99?: boolean;
  /** Why the target cannot be measured in this version (no row). */
  unmeasurable?: string;
}

/** One round of one row. */
export interface DecideSample {
  ok: number;
  failed: number;
  abandoned: number;
  seconds: number;
  connsPerS: number;
  p50Us: number;
  p99Us: number;
  cpuUsPerConn: number | null;
  /** The load generator's own CPU per connection. */
  loadCpuUsPerConn: number | null;
  /** The load generator's CPU seconds per second of its run (1.0: one core, saturated). */
  loadCpuShare: number;
  errors: Record<string, number>;
}

/** One row: medians over its rounds. */
export interface DecideRow {
  section: DecideSection;
  name: string;
  what: string;
  status: "ok" | "skipped" | "failed";
  reason?: string;
  argv?: string[];
  connsPerS: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  cpuUsPerConn: number | null;
  /** The load generator's CPU per connection, and its share of one core (medians). */
  loadCpuUsPerConn: number | null;
  loadCpuShare: number | null;
  /** Failed connections over all rounds, and the connections completed. */
  failed: number;
  ok: number;
  samples: DecideSample[];
  notes: string[];
}

/** A target, evaluated. */
export interface DecideTarget {
  section: DecideSection;
  label: string;
  row: string;
  peer: string;
  limit: number;
  /** CPU per connection, row / peer (medians). */
  cpuRatio: number | null;
  /** p99, row / peer (medians). */
  p99Ratio: number | null;
  wantsP99: boolean;
  /** null: not measured (see reason). */
  met: boolean | null;
  reason?: string;
}

export interface DecideResult {
  concurrency: number;
  rounds: number;
  durationS: number;
  rows: DecideRow[];
  targets: DecideTarget[];
}

const CLI = "src/cli.ts";
const RUNTIMES = ["deno", "bun"] as const;

/** `relaykit ARGS` on a runtime, one native worker thread (haproxy runs nbthread 1). */
function relaykit(ctx: DecideContext, runtime: "deno" | "bun", args: string[]): string[] {
  const bin = ctx.bins[runtime]!;
  return [
    bin,
    ...(runtime === "deno" ? ["run", "-A"] : []),
    CLI,
    ...args,
    "--engine",
    "native",
    "--threads",
    "1",
    "--quiet",
  ];
}

function write(ctx: DecideContext, name: string, text: string): string {
  const path = `${ctx.tmpDir}/${name}`;
  fs.writeFileSync(path, text);
  return path;
}

/** A route module that picks the backend from the Host header (as a user would write it). */
function hostRouteScript(ctx: DecideContext): string {
  return write(
    ctx,
    "route-host.ts",
    `const HOST = /\\r\\nHost:[ \\t]*([^\\r\\n:]+)(?::\\d+)?[ \\t]*\\r\\n/i;
const ROUTES = new Map([["a.test", "127.0.0.1:${ctx.httpPort}"]]);
const dec = new TextDecoder();
export function route(data: Uint8Array) {
  const head = dec.decode(data);
  const host = HOST.exec(head)?.[1]?.toLowerCase();
  if (host === undefined) {
    if (!head.includes("\\r\\n\\r\\n")) return undefined;
    return { close: "HTTP/1.0 400 Bad Request\\r\\n\\r\\n" };
  }
  const backend = ROUTES.get(host);
  if (backend === undefined) return { close: "HTTP/1.0 404 Not Found\\r\\n\\r\\n" };
  return { remote: backend };
}
`,
  );
}

function rowSpecs(): RowSpec[] {
  const rows: RowSpec[] = [];
  for (const rt of RUNTIMES) {
    rows.push({
      section: "socks",
      name: `relaykit-socks-${rt}`,
      what: `relaykit socks, native engine, ${rt}`,
      mode: "socks5",
      needs: [rt],
      argv: (ctx, l) =>
        relaykit(ctx, rt, ["socks", "--listen", `127.0.0.1:${l}`, "--allow", "127.0.0.1/32"]),
    });
  }
  rows.push({
    section: "socks",
    name: "microsocks",
    what: "microsocks, no auth",
    mode: "socks5",
    needs: ["microsocks"],
    argv: (ctx, l) => [ctx.bins.microsocks!, "-i", "127.0.0.1", "-p", `${l}`],
  }, {
    section: "socks",
    name: "dante",
    what: "danted, no auth",
    mode: "socks5",
    needs: ["danted"],
    argv: (ctx, l) => {
      const conf = write(
        ctx,
        `danted-${l}.conf`,
        `logoutput: ${ctx.tmpDir}/danted.log
internal: 127.0.0.1 port = ${l}
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.1/32 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.1/32 to: 127.0.0.1/32 }
`,
      );
      return [ctx.bins.danted!, "-f", conf, "-p", `${ctx.tmpDir}/danted-${l}.pid`];
    },
  });
  for (const rt of RUNTIMES) {
    rows.push({
      section: "connect",
      name: `relaykit-connect-${rt}`,
      what: `relaykit http-connect, native engine, ${rt}`,
      mode: "connect",
      needs: [rt],
      argv: (ctx, l) =>
        relaykit(ctx, rt, [
          "http-connect",
          "--listen",
          `127.0.0.1:${l}`,
          "--allow",
          "127.0.0.1/32",
        ]),
    });
  }
  rows.push({
    section: "connect",
    name: "tinyproxy",
    what: "tinyproxy, CONNECT to the backend's port only",
    mode: "connect",
    needs: ["tinyproxy"],
    argv: (ctx, l) => {
      const conf = write(
        ctx,
        `tinyproxy-${l}.conf`,
        `Port ${l}
Listen 127.0.0.1
Timeout 60
MaxClients 2000
Allow 127.0.0.1
ConnectPort ${ctx.httpPort}
LogLevel Critical
PidFile "${ctx.tmpDir}/tinyproxy-${l}.pid"
`,
      );
      return [ctx.bins.tinyproxy!, "-d", "-c", conf];
    },
  });
  for (const rt of RUNTIMES) {
    rows.push({
      section: "hostroute",
      name: `relaykit-route-table-${rt}`,
      what: `relaykit run, a config routing table by Host (decided in C), native engine, ${rt}`,
      mode: "http",
      host: "a.test",
      needs: [rt],
      argv: (ctx, l) => {
        const conf = write(
          ctx,
          `route-table-${l}.yaml`,
          `listeners:
  - name: web
    address: 127.0.0.1
    port: ${l}
    routes:
      - { host: a.test, to: { host: 127.0.0.1, port: ${ctx.httpPort} } }
`,
        );
        return relaykit(ctx, rt, ["run", conf]);
      },
    });
  }
  for (const rt of RUNTIMES) {
    rows.push({
      section: "hostroute",
      name: `relaykit-route-js-${rt}`,
      what: `relaykit route, a JavaScript route function (Host table), native engine, ${rt}`,
      mode: "http",
      host: "a.test",
      needs: [rt],
      argv: (ctx, l) =>
        relaykit(ctx, rt, ["route", hostRouteScript(ctx), "--listen", `127.0.0.1:${l}`]),
    });
  }
  rows.push({
    section: "hostroute",
    name: "haproxy-host",
    what: "haproxy mode tcp, tcp-request content, use_backend on req.hdr(host)",
    mode: "http",
    host: "a.test",
    needs: ["haproxy"],
    argv: (ctx, l) => {
      const conf = write(
        ctx,
        `haproxy-host-${l}.cfg`,
        `global
  nbthread 1
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:${l}
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.len gt 0 }
  use_backend be_web if { req.hdr(host) -m str a.test }
  default_backend be_none
backend be_web
  server s1 127.0.0.1:${ctx.httpPort}
backend be_none
  tcp-request content reject
`,
      );
      return [ctx.bins.haproxy!, "-db", "-f", conf];
    },
  });
  for (const rt of RUNTIMES) {
    const forward = (ctx: DecideContext, l: number, extra: string[]) =>
      relaykit(ctx, rt, [
        "forward",
        "--listen",
        `127.0.0.1:${l}`,
        "--to",
        `127.0.0.1:${ctx.httpPort}`,
        ...extra,
      ]);
    rows.push({
      section: "acceptproxy",
      name: `relaykit-forward-${rt}`,
      what: `relaykit forward, no decision, native engine, ${rt}`,
      mode: "http",
      needs: [rt],
      argv: (ctx, l) => forward(ctx, l, []),
    });
    for (const v of ["v1", "v2"] as const) {
      rows.push({
        section: "acceptproxy",
        name: `relaykit-accept-${v}-${rt}`,
        what: `relaykit forward --accept-proxy ${v}, native engine, ${rt}`,
        mode: v === "v1" ? "proxy1" : "proxy2",
        needs: [rt],
        argv: (ctx, l) => forward(ctx, l, ["--accept-proxy", v]),
      });
    }
  }
  return rows;
}

function targetSpecs(): TargetSpec[] {
  const out: TargetSpec[] = [];
  for (const rt of RUNTIMES) {
    out.push({
      section: "socks",
      label: `SOCKS5, ${rt}`,
      row: `relaykit-socks-${rt}`,
      peer: "microsocks",
      limit: 0.8,
    });
  }
  for (const rt of RUNTIMES) {
    out.push({
      section: "connect",
      label: `HTTP CONNECT, ${rt}`,
      row: `relaykit-connect-${rt}`,
      peer: "tinyproxy",
      limit: 0.8,
    });
  }
  for (const rt of RUNTIMES) {
    out.push({
      section: "hostroute",
      label: `Host routing, config table, ${rt}`,
      row: `relaykit-route-table-${rt}`,
      peer: "haproxy-host",
      limit: 1.0,
      p99: true,
    });
  }
  for (const rt of RUNTIMES) {
    out.push({
      section: "hostroute",
      label: `Host routing, JS route function, ${rt}`,
      row: `relaykit-route-js-${rt}`,
      peer: "haproxy-host",
      limit: 1.3,
    });
  }
  for (const rt of RUNTIMES) {
    for (const v of ["v1", "v2"]) {
      out.push({
        section: "acceptproxy",
        label: `accept PROXY ${v}, ${rt}`,
        row: `relaykit-accept-${v}-${rt}`,
        peer: `relaykit-forward-${rt}`,
        limit: 1.1,
      });
    }
  }
  return out;
}

/** Extra ratios shown without a target. */
const INFO_RATIOS: [string, string][] = RUNTIMES.flatMap((rt): [string, string][] => [
  [`relaykit-socks-${rt}`, "dante"],
  [`relaykit-socks-${rt}`, `relaykit-forward-${rt}`],
  [`relaykit-connect-${rt}`, `relaykit-forward-${rt}`],
  [`relaykit-route-js-${rt}`, `relaykit-forward-${rt}`],
]);

/** The sections --only selects (all of them when there is no --only). */
export function decideSelection(
  only: string[] | null,
  selects: (sel: string, name: string) => boolean,
): DecideSection[] {
  if (only === null) return [...DECIDE_SECTIONS];
  return DECIDE_SECTIONS.filter((s) =>
    only.some((sel) => selects(sel, s) || selects(sel, DECIDE_GROUP))
  );
}

/** The --list lines of the sections. */
export function decideListing(): string[] {
  const rows = rowSpecs();
  return DECIDE_SECTIONS.map((s) =>
    `${s.padEnd(22)} [section] ${rows.filter((r) => r.section === s).map((r) => r.name).join(", ")}`
  ).concat(`${DECIDE_GROUP.padEnd(22)} [group] ${DECIDE_SECTIONS.join(", ")}`);
}

// ---------------------------------------------------------------------------
// Load generator

const CONNLOAD_SRC = fileURLToPath(new URL("./connload.c", import.meta.url).href);

async function buildConnload(ctx: DecideContext): Promise<string> {
  const out = `${ctx.tmpDir}/connload`;
  const r = await ctx.run(
    [ctx.bins.gcc!, "-O2", "-std=gnu11", "-Wall", "-o", out, CONNLOAD_SRC],
    120_000,
  );
  if (r.code !== 0) {
    throw new Error(`cannot build connload: ${(r.stderr || r.stdout).trim().split("\n")[0]}`);
  }
  return out;
}

interface ConnloadOut {
  ok: number;
  failed: number;
  abandoned: number;
  seconds: number;
  cps: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
  cpu_s: number;
  errors: Record<string, number>;
}

async function connload(
  ctx: DecideContext,
  bin: string,
  spec: RowSpec,
  port: number,
  seconds: number,
): Promise<ConnloadOut> {
  const argv = [
    bin,
    "-m",
    spec.mode,
    "-p",
    `${port}`,
    "-t",
    `${ctx.httpPort}`,
    "-c",
    `${CONNS}`,
    "-d",
    `${seconds}`,
    "-T",
    `${CONN_TIMEOUT_MS}`,
    ...(spec.host ? ["-H", spec.host] : []),
  ];
  const r = await ctx.run(argv, (seconds + CONN_TIMEOUT_MS / 1000 + 10) * 1000);
  if (r.timedOut) throw new Error("connload timed out");
  try {
    return JSON.parse(r.stdout) as ConnloadOut;
  } catch {
    throw new Error(`connload: ${(r.stderr || r.stdout || `exit ${r.code}`).trim()}`);
  }
}

// ---------------------------------------------------------------------------
// Measuring

interface Live {
  spec: RowSpec;
  row: DecideRow;
  port: number;
  proc: DecideProcess;
}

async function measure(ctx: DecideContext, bin: string, live: Live): Promise<void> {
  const { row, proc } = live;
  const c0 = ctx.cpuSeconds(proc.pids());
  const out = await connload(ctx, bin, live.spec, live.port, ctx.durationS);
  const cpuS = ctx.cpuSeconds(proc.pids()) - c0;
  row.samples.push({
    ok: out.ok,
    failed: out.failed,
    abandoned: out.abandoned,
    seconds: out.seconds,
    connsPerS: out.cps,
    p50Us: out.p50_us,
    p99Us: out.p99_us,
    cpuUsPerConn: out.ok ? (cpuS * 1e6) / out.ok : null,
    loadCpuUsPerConn: out.ok ? (out.cpu_s * 1e6) / out.ok : null,
    loadCpuShare: out.cpu_s / out.seconds,
    errors: out.errors,
  });
  row.ok += out.ok;
  row.failed += out.failed;
  const died = proc.died();
  if (died) throw new Error(died);
}

function summarize(row: DecideRow): void {
  const ok = row.samples.filter((s) => s.ok > 0);
  row.connsPerS = median(ok.map((s) => s.connsPerS));
  const p50 = median(ok.map((s) => s.p50Us));
  const p99 = median(ok.map((s) => s.p99Us));
  row.p50Ms = p50 === null ? null : p50 / 1000;
  row.p99Ms = p99 === null ? null : p99 / 1000;
  const known = (xs: (number | null)[]) => xs.filter((v): v is number => v !== null);
  row.cpuUsPerConn = median(known(ok.map((s) => s.cpuUsPerConn)));
  row.loadCpuUsPerConn = median(known(ok.map((s) => s.loadCpuUsPerConn)));
  row.loadCpuShare = median(ok.map((s) => s.loadCpuShare));
  if (row.failed) {
    const kinds: Record<string, number> = {};
    for (const s of row.samples) {
      for (const [k, n] of Object.entries(s.errors)) kinds[k] = (kinds[k] ?? 0) + n;
    }
    row.notes.push(
      `${row.failed} of ${row.ok + row.failed} connections failed (${
        Object.entries(kinds).map(([k, n]) => `${k} ${n}`).join(", ")
      })`,
    );
  }
}

async function runSection(
  ctx: DecideContext,
  bin: string,
  section: DecideSection,
): Promise<DecideRow[]> {
  const specs = rowSpecs().filter((r) => r.section === section);
  const rows: DecideRow[] = [];
  const live: Live[] = [];
  try {
    for (const spec of specs) {
      const row: DecideRow = {
        section,
        name: spec.name,
        what: spec.what,
        status: "ok",
        connsPerS: null,
        p50Ms: null,
        p99Ms: null,
        cpuUsPerConn: null,
        loadCpuUsPerConn: null,
        loadCpuShare: null,
        failed: 0,
        ok: 0,
        samples: [],
        notes: [],
      };
      rows.push(row);
      const missing = spec.needs.filter((b) => !ctx.bins[b]);
      if (missing.length) {
        row.status = "skipped";
        row.reason = `not available: ${missing.join(", ")} not found`;
        continue;
      }
      const port = await ctx.freePort();
      row.argv = spec.argv(ctx, port);
      try {
        const proc = await ctx.start(row.argv, port);
        live.push({ spec, row, port, proc });
      } catch (e) {
        row.status = "skipped";
        row.reason = `not available: ${(e as Error).message}`;
      }
    }
    // Warm-up: JIT, thread pools, the first connects' slow paths.
    const warmS = Math.min(1, ctx.durationS / 2);
    for (const l of live) {
      try {
        const w = await connload(ctx, bin, l.spec, l.port, warmS);
        if (!w.ok) throw new Error(`no connection succeeded (${JSON.stringify(w.errors)})`);
      } catch (e) {
        l.row.status = "failed";
        l.row.reason = `warm-up: ${(e as Error).message}`;
        ctx.log(`[${section}] ${l.row.name}: ${l.row.reason}`);
      }
    }
    for (let round = 0; round < ctx.rounds; round++) {
      const order = live.filter((l) => l.row.status === "ok");
      if (round % 2) order.reverse();
      for (const l of order) {
        try {
          await measure(ctx, bin, l);
          const s = l.row.samples.at(-1)!;
          ctx.log(
            `[${section}] round ${round + 1}/${ctx.rounds} ${l.row.name}: ` +
              `${s.connsPerS.toFixed(0)} conn/s, p99 ${(s.p99Us / 1000).toFixed(2)} ms, ` +
              `CPU ${s.cpuUsPerConn?.toFixed(1) ?? "–"} µs/conn` +
              (s.failed ? `, ${s.failed} failed` : ""),
          );
        } catch (e) {
          l.row.status = "failed";
          l.row.reason = (e as Error).message;
          ctx.log(`[${section}] ${l.row.name}: ${l.row.reason}`);
        }
      }
    }
  } finally {
    await Promise.all(live.map((l) => l.proc.stop()));
  }
  for (const row of rows) summarize(row);
  return rows;
}

function evaluate(rows: DecideRow[], sections: DecideSection[]): DecideTarget[] {
  const byName = new Map(rows.map((r) => [r.name, r]));
  const ratio = (a: number | null | undefined, b: number | null | undefined) =>
    a !== null && a !== undefined && b !== null && b !== undefined && b > 0 ? a / b : null;
  return targetSpecs().filter((t) => sections.includes(t.section)).map((t) => {
    const base = {
      section: t.section,
      label: t.label,
      row: t.row,
      peer: t.peer,
      limit: t.limit,
      wantsP99: t.p99 === true,
    };
    if (t.unmeasurable) {
      return { ...base, cpuRatio: null, p99Ratio: null, met: null, reason: t.unmeasurable };
    }
    const row = byName.get(t.row);
    const peer = byName.get(t.peer);
    const cpuRatio = ratio(row?.cpuUsPerConn, peer?.cpuUsPerConn);
    const p99Ratio = ratio(row?.p99Ms, peer?.p99Ms);
    if (cpuRatio === null || (t.p99 && p99Ratio === null)) {
      const why = [row, peer].filter((r) => r && r.status !== "ok")
        .map((r) => `${r!.name} ${r!.status}`).join(", ");
      return {
        ...base,
        cpuRatio,
        p99Ratio,
        met: null,
        reason: `not measured${why ? `: ${why}` : ""}`,
      };
    }
    const met = cpuRatio <= t.limit && (!t.p99 || p99Ratio! <= 1);
    return { ...base, cpuRatio, p99Ratio, met };
  });
}

/** Runs the selected decision sections. */
export async function benchDecide(
  ctx: DecideContext,
  sections: DecideSection[],
): Promise<DecideResult> {
  const result: DecideResult = {
    concurrency: CONNS,
    rounds: ctx.rounds,
    durationS: ctx.durationS,
    rows: [],
    targets: [],
  };
  if (!ctx.bins.gcc) throw new Error("decision sections: no C compiler (gcc) for connload");
  const bin = await buildConnload(ctx);
  for (const section of sections) {
    ctx.log(`[${section}] ...`);
    result.rows.push(...await runSection(ctx, bin, section));
  }
  result.targets = evaluate(result.rows, sections);
  return result;
}

// ---------------------------------------------------------------------------
// Report

const fmt = (v: number | null, digits: number) =>
  v === null || !Number.isFinite(v) ? "–" : v.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });

/** Column titles of decideRows(). */
export const DECIDE_COLUMNS = [
  "conn/s",
  "p50 ms",
  "p99 ms",
  "CPU µs/conn",
  "failed",
  "load µs/conn",
  "load core",
];

/** The table rows, one per proxy. */
export function decideRows(r: DecideResult): string[][] {
  return r.rows.map((row) =>
    row.status !== "ok"
      ? [`${row.section}: ${row.name}`, row.status, ...DECIDE_COLUMNS.slice(1).map(() => "")]
      : [
        `${row.section}: ${row.name}`,
        fmt(row.connsPerS, 0),
        fmt(row.p50Ms, 2),
        fmt(row.p99Ms, 2),
        fmt(row.cpuUsPerConn, 1),
        `${row.failed}`,
        fmt(row.loadCpuUsPerConn, 1),
        fmt(row.loadCpuShare, 2),
      ]
  );
}

/**
 * CPU per connection, row / peer, round by round (each round measures
 * both, one soon after the other): for reading a ratio of medians on a
 * machine whose speed drifts between rounds.
 */
function roundRatios(row: DecideRow | undefined, peer: DecideRow | undefined): number[] {
  if (row === undefined || peer === undefined) return [];
  const n = Math.min(row.samples.length, peer.samples.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = row.samples[i]!.cpuUsPerConn, b = peer.samples[i]!.cpuUsPerConn;
    if (a !== null && b !== null && b > 0) out.push(a / b);
  }
  return out;
}

/** The lines under the table: targets, other ratios, notes. */
export function decideSummary(r: DecideResult): string[] {
  const byName = new Map(r.rows.map((row) => [row.name, row]));
  const out = [
    "",
    `decision targets (CPU per connection, row / peer, medians of ${r.rounds} round(s)):`,
  ];
  for (const t of r.targets) {
    const want = `want <= ${t.limit.toFixed(2)}x${t.wantsP99 ? ", p99 <= 1.00x" : ""}`;
    if (t.met === null) {
      out.push(`  ${t.label}: ${t.row} / ${t.peer}  (${want})  ${t.reason ?? "not measured"}`);
      continue;
    }
    const p99 = t.p99Ratio === null ? "–" : `${t.p99Ratio.toFixed(2)}x`;
    out.push(
      `  ${t.label}: ${t.row} / ${t.peer}  CPU ${t.cpuRatio!.toFixed(2)}x, p99 ${p99}  ` +
        `(${want})  ${t.met ? "met" : "NOT MET"}`,
    );
    const paired = roundRatios(byName.get(t.row), byName.get(t.peer));
    if (paired.length > 1) {
      out.push(
        `    by round: ${paired.map((x) => `${x.toFixed(2)}x`).join(", ")} ` +
          `(median ${median(paired)!.toFixed(2)}x)`,
      );
    }
  }
  for (const [a, b] of INFO_RATIOS) {
    const x = byName.get(a)?.cpuUsPerConn, y = byName.get(b)?.cpuUsPerConn;
    if (x && y) out.push(`  (no target) ${a} / ${b}  CPU ${(x / y).toFixed(2)}x`);
  }
  const notes = r.rows.flatMap((row) => [
    ...(row.status !== "ok" ? [`${row.name}: ${row.status}, ${row.reason ?? ""}`] : []),
    ...row.notes.map((n) => `${row.name}: ${n}`),
  ]);
  if (notes.length) out.push("", "decision notes:", ...notes.map((n) => `  ${n}`));
  return out;
}
