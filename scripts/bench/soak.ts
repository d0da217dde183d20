/**
 * The soak section of scripts/bench.ts: relaykit proxy processes under a
 * steady mixed load for several minutes, with their memory (VmRSS) and open
 * file descriptors sampled every 5 s. A leak shows up as RSS or fds that
 * grow from the first minute to the last; the section then fails.
 *
 * Per variant (engine native or stream, on the runtime running the bench),
 * three relaykit processes run side by side and each is measured:
 *
 *   forward  `relaykit forward` to nginx (`return 200`)
 *   refused  `relaykit forward` to a port nobody listens on
 *   route    `relaykit route` with a script deciding on the first 4 bytes:
 *            "SINK" to a byte-counting sink, "DEAD" to the port nobody
 *            listens on, anything else to nginx
 *
 * The load runs in cycles of 30 s (CYCLE_MS); the first 22 s carry load,
 * the rest is quiet so that each cycle ends at the same point:
 *
 *   keep-alive  wrk -t1 -c20, 4 ms between requests on each connection
 *               (at most 5,000 req/s), through forward
 *   close       wrk -t1 -c4 with `Connection: close`, 10 ms between
 *               requests (at most 400 connections/s), through forward;
 *               and -c2 (at most 200/s) through route
 *   bulk        2 loops, each: "SINK" + 4 MiB up through route, the sink
 *               answers with the count it saw and 1 MiB down; both counts
 *               are checked; 250 ms between streams
 *   idle        a wave of 400 connections through forward and 100 through
 *               route (relayed to the sink), held 20 s, then closed (half
 *               with FIN, half with RST)
 *   resets      every 50 ms one client resets (RST) a half-sent HTTP
 *               request through forward, one resets while route still
 *               holds its first bytes, one resets mid-bulk through route
 *   refused     2 loops every 20 ms through refused, and one every 50 ms
 *               through route ("DEAD"): the connect behind the proxy is
 *               refused and the proxy must close the client
 *   stalled     50 connections a cycle send 2 bytes and stop; route must
 *               close them after --route-timeout (3 s)
 *
 * Samples at 2.5 s, 7.5 s, ... of each cycle: four while the idle wave is
 * held, one at the end of the load and one in the quiet (27.5 s), when the
 * only descriptors left are the process's own. RSS is compared over all
 * samples of the first and the last minute (each covering the same two
 * cycles of load); fds over the quiet samples, which are exact.
 */
import net from "node:net";
import fs from "node:fs";

/** What the soak needs from bench.ts (its process bookkeeping and peers). */
export interface SoakContext {
  /** Soak length in minutes (rounded to whole 30 s cycles, at least one). */
  minutes: number;
  wrk: string;
  /** nginx `return 200` on 127.0.0.1. */
  httpPort: number;
  /** A directory for the route script and wrk's Lua script. */
  tmpDir: string;
  log(line: string): void;
  freePort(): Promise<number>;
  /** Runs a command to completion (killed after timeoutMs). */
  run(argv: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string }>;
  /**
   * Starts `relaykit ARGS` on the runtime running the bench; resolves once
   * something listens on `port`, with the PID that owns that socket.
   * `v8Flags` go to Deno's `--v8-flags` (Bun, on JavaScriptCore, has none).
   */
  startRelaykit(args: string[], port: number, v8Flags?: string[]): Promise<SoakProcess>;
}

/** A started relaykit process. */
export interface SoakProcess {
  pid: number;
  stop(): Promise<void>;
  /** Non-null once the process has exited. */
  died(): string | null;
}

/** One /proc reading of a process. */
export interface SoakSample {
  /** Seconds since the load started. */
  t: number;
  /**
   * Where in the cycle: the idle wave held, load without it, or quiet; or
   * the one sample before any load (t = 0), for information.
   */
  phase: "idle" | "load" | "quiet" | "baseline";
  rssBytes: number;
  fds: number;
}

/** The figures of one measured process. */
export interface SoakProcessResult {
  /** "forward", "refused" or "route". */
  role: string;
  argv: string[];
  samples: SoakSample[];
  /** Mean RSS of all samples in the first / last window. */
  rssFirst: number;
  rssLast: number;
  rssMax: number;
  /** Mean fds of the quiet samples in the first / last window. */
  fdsFirst: number;
  fdsLast: number;
  fdsMax: number;
  /** Before any load (information: a runtime opens some fds lazily). */
  rssBaseline: number;
  fdsBaseline: number;
  /** Mean fds while the idle wave is held, first / last window (information). */
  fdsIdleFirst: number;
  fdsIdleLast: number;
  /** Least-squares RSS slope over the samples after the first window, MiB per minute. */
  rssSlopeMiBPerMin: number;
  /** Connections the process handled (from the load generators' counts). */
  connections: number;
  /**
   * The smallest leak per connection the RSS check catches: the tolerance
   * over the connections between the middles of the two windows.
   */
  leakFloorBytesPerConn: number;
  died: string | null;
  failures: string[];
}

/** What the load generators did and saw. */
export interface SoakLoad {
  kaRequests: number;
  closeRequests: number;
  /** wrk's socket errors and non-2xx lines, if any. */
  wrkErrors: string[];
  bulkStreams: number;
  bulkBytesUp: number;
  bulkBytesDown: number;
  /** Idle connections opened through forward / route. */
  idleForward: number;
  idleRoute: number;
  /** Deliberate resets (RST): of a half-sent request through forward. */
  resetsForward: number;
  /** Deliberate resets: while route holds the first bytes, and mid-bulk through route. */
  resetsRoute: number;
  /** Deliberate: connects refused behind the refused forward / route, closed by it. */
  refusedForward: number;
  refusedRoute: number;
  /** `Connection: close` requests through route (to nginx). */
  routeCloseRequests: number;
  /** Deliberate: stalled connections that route closed after its timeout. */
  stalledClosed: number;
  /** Anything else that went wrong, by kind (none expected). */
  unexpected: Record<string, number>;
  /** The first few unexpected errors, as text. */
  unexpectedExamples: string[];
}

/** One variant: an engine on this runtime. */
export interface SoakResult {
  name: string;
  engine: "native" | "stream";
  runtime: string;
  minutes: number;
  cycles: number;
  /** Which samples were compared: "first/last minute" or "first/last quarter". */
  window: string;
  processes: SoakProcessResult[];
  load: SoakLoad;
  pass: boolean;
}

/**
 * On Deno, V8's young generation is capped at 4 MiB per semi-space (the
 * default cap on 64-bit is 32 MiB: 64 MiB of new space). It starts at
 * 1 MiB and doubles whenever scavenges find enough survivors, which under
 * this load takes minutes: uncapped, a Deno stream-engine forward to a
 * refused port went from 79 to 141 MiB between the first and last minute
 * of a 3-minute soak while its old space stayed at 8-11 MiB and its heap
 * after a full GC at 6.7 MiB (the new space had grown from 3.5 to 45 MiB).
 * That growth is bounded and no leak, but it would swamp one. Pinning the
 * new space at its maximum instead does not help: a process that
 * allocates little touches those pages over minutes, and V8 gives them
 * back after GCs, so its RSS wanders by 20 MiB. Capped, the new space
 * stays within the RSS tolerance; a leak, which accumulates in old space
 * or in native memory, is what remains. The old space is not limited.
 */
const V8_FLAGS = ["--max-semi-space-size=4"];

/** The measured processes of a variant. */
const ROLES = ["forward", "refused", "route"] as const;
type Role = typeof ROLES[number];

/** The soak's variants; --only soak selects every one of them. */
export const SOAK_VARIANTS = ["soak-native", "soak-stream"] as const;

const CYCLE_MS = 30_000;
/** Load runs this long at the start of each cycle; then quiet. */
const LOAD_MS = 22_000;
/** The idle wave is opened and closed at these offsets. */
const IDLE_OPEN_MS = 500;
const IDLE_CLOSE_MS = 20_500;
const SAMPLE_EVERY_MS = 5_000;
const SAMPLE_OFFSET_MS = 2_500;
const IDLE_FORWARD = 400;
const IDLE_ROUTE = 100;
const STALLED = 50;
const ROUTE_TIMEOUT_MS = 3_000;
const BULK_UP = 4 << 20;
const BULK_DOWN = 1 << 20;
const MIB = 1 << 20;

/**
 * RSS tolerance: the last window may be this much above the first. A
 * runtime's RSS is not a counter: V8 sizes its heap ahead of need and
 * grows it in steps (in a test of 700,000 refused connections through a
 * Deno native forward printing each error, heapTotal went from 12 to 40 MiB
 * and settled there, with heapUsed flat at 8-25 MiB), and malloc keeps
 * freed memory in per-thread arenas, so a process with no leak moves by
 * several MiB between minutes, most in the first ones. 8 MiB covers such a
 * step; 15% covers heap headroom that scales with the live size.
 * A leak per connection is caught once it adds more than that between the
 * two windows: per cycle forward takes about 9,000 connections, route
 * 5,000 and refused 2,000, so over a 5-minute soak (8 cycles between the
 * windows' middles) forward fails from about 250-350 B per connection,
 * route from about 500 B, refused from about 1 KB; each result states its
 * own figure (leakFloorBytesPerConn). A leak per request or per byte shows
 * up far sooner: keep-alive requests (~100,000 a cycle) and bulk bytes
 * (~800 MiB a cycle) are much more numerous.
 */
export const RSS_TOLERANCE = { ratio: 0.15, bytes: 8 * MIB };
/**
 * Fd tolerance in the quiet samples, where every connection is closed: the
 * runtime may hold a descriptor or two for a while (a timer fd, a resolver
 * socket), but one leaked per thousand connections is 80 or more.
 */
export const FD_TOLERANCE = 4;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sleepUntil = (at: number) => sleep(Math.max(0, at - Date.now()));
const mean = (xs: number[]) => xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;

function readProc(pid: number): { rssBytes: number; fds: number } | null {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+)/m);
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    return m ? { rssBytes: Number(m[1]) * 1024, fds } : null;
  } catch {
    return null;
  }
}

function phaseAt(offsetMs: number): SoakSample["phase"] {
  if (offsetMs >= IDLE_OPEN_MS + 1000 && offsetMs < IDLE_CLOSE_MS) return "idle";
  if (offsetMs < LOAD_MS + 2000) return "load";
  return "quiet";
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const mx = mean(xs), my = mean(ys);
  let num = 0, den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den ? num / den : NaN;
}

// ---------------------------------------------------------------------------
// Load generators (in the bench process)

class Load {
  readonly figures: SoakLoad = {
    kaRequests: 0,
    closeRequests: 0,
    wrkErrors: [],
    bulkStreams: 0,
    bulkBytesUp: 0,
    bulkBytesDown: 0,
    idleForward: 0,
    idleRoute: 0,
    resetsForward: 0,
    resetsRoute: 0,
    refusedForward: 0,
    refusedRoute: 0,
    routeCloseRequests: 0,
    stalledClosed: 0,
    unexpected: {},
    unexpectedExamples: [],
  };

  unexpected(kind: string, detail: string): void {
    this.figures.unexpected[kind] = (this.figures.unexpected[kind] ?? 0) + 1;
    if (this.figures.unexpectedExamples.length < 10) {
      this.figures.unexpectedExamples.push(`${kind}: ${detail}`);
    }
  }
}

/** Connects; resolves once connected (rejects on error or after 5 s). */
function open(port: number, first?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("connect timed out"));
    }, 5000);
    s.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.once("connect", () => {
      clearTimeout(timer);
      if (first !== undefined) s.write(first);
      resolve(s);
    });
  });
}

/** Resolves when the socket is closed (by either side), or false after ms. */
function closedWithin(s: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    s.on("error", () => {});
    s.on("data", () => {});
    s.on("end", () => s.destroy());
    s.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Writes `n` bytes in 64 KiB chunks, honouring backpressure. */
async function writeBytes(s: net.Socket, n: number, chunk: Uint8Array): Promise<void> {
  for (let sent = 0; sent < n; sent += chunk.length) {
    const part = n - sent < chunk.length ? chunk.subarray(0, n - sent) : chunk;
    if (!s.write(part)) {
      await new Promise<void>((resolve, reject) => {
        s.once("drain", resolve);
        s.once("close", () => reject(new Error("closed while writing")));
      });
    }
  }
}

/**
 * The sink behind route: counts what a "SINK" connection sends until its
 * end, then answers "<count>\n" and BULK_DOWN bytes. A connection that sent
 * only the 4 routing bytes (an idle one) is just closed.
 */
function startSink(): Promise<net.Server> {
  const down = new Uint8Array(64 * 1024).fill(0x64);
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on("error", () => {}); // resets are part of the load
    s.on("data", (d: Uint8Array) => n += d.length);
    s.on("end", () => {
      if (n <= 4) return void s.end();
      s.write(`${n}\n`);
      writeBytes(s, BULK_DOWN, down).then(() => s.end(), () => s.destroy());
    });
  });
  return new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen({ port: 0, host: "127.0.0.1", backlog: 1024 }, () => resolve(srv));
  });
}

/** One bulk stream through route to the sink; checks both byte counts. */
async function bulkOnce(port: number, load: Load, up: Uint8Array): Promise<void> {
  const f = load.figures;
  let s: net.Socket;
  try {
    s = await open(port, "SINK");
  } catch (e) {
    return load.unexpected("bulk connect", (e as Error).message);
  }
  const done = new Promise<void>((resolve) => {
    let head = "";
    let body = 0;
    const timer = setTimeout(() => {
      load.unexpected("bulk timeout", "no answer in 30 s");
      s.destroy();
    }, 30_000);
    s.on("data", (d: Uint8Array) => {
      if (!head.includes("\n")) {
        const text = new TextDecoder().decode(d.subarray(0, 16));
        const nl = text.indexOf("\n");
        if (nl < 0) {
          head += text;
          return;
        }
        head += text.slice(0, nl + 1);
        body += d.length - (nl + 1);
      } else body += d.length;
    });
    s.on("error", (e) => load.unexpected("bulk error", e.message));
    s.on("end", () => s.destroy());
    s.once("close", () => {
      clearTimeout(timer);
      const counted = Number(head.trim());
      if (counted !== 4 + BULK_UP || body !== BULK_DOWN) {
        load.unexpected(
          "bulk count",
          `sink saw ${head.trim() || "nothing"} of ${4 + BULK_UP}, got ${body} of ${BULK_DOWN}`,
        );
      } else {
        f.bulkStreams++;
        f.bulkBytesUp += 4 + BULK_UP;
        f.bulkBytesDown += BULK_DOWN + head.length;
      }
      resolve();
    });
  });
  try {
    await writeBytes(s, BULK_UP, up);
    s.end();
  } catch {
    // the close handler reports it
  }
  await done;
}

/** Connects, sends `first`, waits `ms`, then resets the connection. */
async function resetOnce(
  port: number,
  first: string,
  ms: number,
  load: Load,
  role: "forward" | "route",
): Promise<void> {
  try {
    const s = await open(port, first);
    s.on("error", () => {});
    await sleep(ms);
    s.resetAndDestroy();
    if (role === "forward") load.figures.resetsForward++;
    else load.figures.resetsRoute++;
  } catch (e) {
    load.unexpected("reset connect", (e as Error).message);
  }
}

/** A bulk stream through route that resets after 256 KiB. */
async function resetMidBulk(port: number, up: Uint8Array, load: Load): Promise<void> {
  try {
    const s = await open(port, "SINK");
    s.on("error", () => {});
    await writeBytes(s, 256 * 1024, up);
    await sleep(5);
    s.resetAndDestroy();
    load.figures.resetsRoute++;
  } catch (e) {
    load.unexpected("reset connect", (e as Error).message);
  }
}

/** A connection whose connect behind the proxy is refused: the proxy must close it. */
async function refusedOnce(port: number, load: Load, role: "refused" | "route"): Promise<void> {
  try {
    const s = await open(port, "DEAD");
    if (await closedWithin(s, 5000)) {
      if (role === "refused") load.figures.refusedForward++;
      else load.figures.refusedRoute++;
    } else {
      load.unexpected("refused left open", "still open after 5 s");
      s.destroy();
    }
  } catch (e) {
    load.unexpected("refused connect", (e as Error).message);
  }
}

/** Stalled connections: 2 bytes, then nothing; route must time them out. */
async function stalledWave(port: number, n: number, load: Load): Promise<void> {
  await Promise.all(Array.from({ length: n }, async () => {
    try {
      const s = await open(port, "SI");
      if (await closedWithin(s, ROUTE_TIMEOUT_MS + 5000)) load.figures.stalledClosed++;
      else {
        load.unexpected("stalled left open", `still open after ${ROUTE_TIMEOUT_MS + 5000} ms`);
        s.destroy();
      }
    } catch (e) {
      load.unexpected("stalled connect", (e as Error).message);
    }
  }));
}

/** Opens idle connections (64 connecting at a time); returns them. */
async function idleWave(
  targets: { port: number; first?: string; n: number; role: "forward" | "route" }[],
  load: Load,
): Promise<net.Socket[]> {
  const jobs = targets.flatMap((t) => Array.from({ length: t.n }, () => t));
  const socks: net.Socket[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < jobs.length) {
      const t = jobs[next++]!;
      try {
        const s = await open(t.port, t.first);
        s.on("error", (e) => load.unexpected("idle error", e.message));
        s.on("data", () => {});
        socks.push(s);
        if (t.role === "forward") load.figures.idleForward++;
        else load.figures.idleRoute++;
      } catch (e) {
        load.unexpected("idle connect", (e as Error).message);
      }
    }
  }));
  return socks;
}

/** Calls `once` back to back (with `gapMs` between) until `end`. */
async function loop(end: number, gapMs: number, once: () => Promise<void>): Promise<void> {
  while (Date.now() < end) {
    await once();
    await sleep(gapMs);
  }
}

interface WrkFigures {
  requests: number;
  errors: string | null;
}

async function wrk(
  ctx: SoakContext,
  args: string[],
  seconds: number,
  port: number,
): Promise<WrkFigures> {
  const r = await ctx.run(
    [ctx.wrk, "-t1", ...args, `-d${seconds}s`, `http://127.0.0.1:${port}/`],
    (seconds + 15) * 1000,
  );
  const requests = r.stdout.match(/^\s*(\d+) requests in/m);
  if (!requests) return { requests: 0, errors: `wrk: no result (exit ${r.code})` };
  const errs = [
    r.stdout.match(/Socket errors:.*$/m)?.[0],
    r.stdout.match(/Non-2xx or 3xx responses:.*$/m)?.[0],
  ].filter(Boolean);
  return { requests: Number(requests[1]), errors: errs.length ? errs.join("; ") : null };
}

// ---------------------------------------------------------------------------
// One variant

/**
 * The windows compared: whole cycles, so that both hold the same phases of
 * the load: the first and last minute (two cycles each) from 2 minutes on,
 * else the first and last cycle (the same one in a one-cycle smoke run).
 */
function windows(samples: SoakSample[], totalS: number) {
  const cycleS = CYCLE_MS / 1000;
  const span = totalS >= 120 ? 60 : cycleS;
  return {
    label: totalS >= 120
      ? "first/last minute"
      : totalS > cycleS
      ? "first/last 30 s cycle"
      : "one 30 s cycle: smoke run, nothing to compare",
    first: samples.filter((s) => s.phase !== "baseline" && s.t < span),
    last: samples.filter((s) => s.phase !== "baseline" && s.t >= totalS - span),
    span,
  };
}

function summarise(
  role: string,
  argv: string[],
  samples: SoakSample[],
  totalS: number,
  connections: number,
  died: string | null,
): SoakProcessResult {
  const w = windows(samples, totalS);
  const quiet = (xs: SoakSample[]) => xs.filter((s) => s.phase === "quiet").map((s) => s.fds);
  const idle = (xs: SoakSample[]) => xs.filter((s) => s.phase === "idle").map((s) => s.fds);
  const after = samples.filter((s) => s.t >= w.span && s.phase !== "baseline");
  const r: SoakProcessResult = {
    role,
    argv,
    samples,
    rssFirst: mean(w.first.map((s) => s.rssBytes)),
    rssLast: mean(w.last.map((s) => s.rssBytes)),
    rssMax: Math.max(...samples.map((s) => s.rssBytes)),
    fdsFirst: mean(quiet(w.first)),
    fdsLast: mean(quiet(w.last)),
    fdsMax: Math.max(...samples.map((s) => s.fds)),
    rssBaseline: samples.find((s) => s.phase === "baseline")?.rssBytes ?? NaN,
    fdsBaseline: samples.find((s) => s.phase === "baseline")?.fds ?? NaN,
    fdsIdleFirst: mean(idle(w.first)),
    fdsIdleLast: mean(idle(w.last)),
    rssSlopeMiBPerMin: slope(after.map((s) => s.t / 60), after.map((s) => s.rssBytes / MIB)),
    connections,
    leakFloorBytesPerConn: NaN,
    died,
    failures: [],
  };
  const rssLimit = r.rssFirst * (1 + RSS_TOLERANCE.ratio) + RSS_TOLERANCE.bytes;
  r.leakFloorBytesPerConn = (rssLimit - r.rssFirst) / (connections * (totalS - w.span) / totalS);
  if (!(r.rssLast <= rssLimit)) {
    r.failures.push(
      `RSS grew from ${(r.rssFirst / MIB).toFixed(1)} to ${(r.rssLast / MIB).toFixed(1)} MiB ` +
        `(limit ${(rssLimit / MIB).toFixed(1)} MiB)`,
    );
  }
  if (!(r.fdsLast - r.fdsFirst <= FD_TOLERANCE)) {
    r.failures.push(
      `quiet fds grew from ${r.fdsFirst.toFixed(1)} to ${r.fdsLast.toFixed(1)} ` +
        `(limit +${FD_TOLERANCE})`,
    );
  }
  if (died !== null) r.failures.push(died);
  return r;
}

async function soakVariant(
  ctx: SoakContext,
  engine: "native" | "stream",
  runtimeName: string,
): Promise<SoakResult> {
  const cycles = Math.max(1, Math.round((ctx.minutes * 60_000) / CYCLE_MS));
  const totalS = (cycles * CYCLE_MS) / 1000;
  const load = new Load();
  const sink = await startSink();
  const sinkPort = (sink.address() as net.AddressInfo).port;
  const deadPort = await ctx.freePort(); // bound once, then released: refused
  const script = `${ctx.tmpDir}/soak-route.ts`;
  fs.writeFileSync(
    script,
    `// relaykit soak: routes on the first 4 bytes
const td = new TextDecoder();
export function route(data: Uint8Array) {
  if (data.length < 4) return undefined;
  const head = td.decode(data.subarray(0, 4));
  if (head === "SINK") return { remote: "127.0.0.1:${sinkPort}" };
  if (head === "DEAD") return { remote: "127.0.0.1:${deadPort}" };
  return { remote: "127.0.0.1:${ctx.httpPort}" };
}
`,
  );
  const lua = `${ctx.tmpDir}/soak-delay.lua`;
  const [fwdPort, refusedPort, routePort] = [
    await ctx.freePort(),
    await ctx.freePort(),
    await ctx.freePort(),
  ];
  const ports: Record<Role, number> = { forward: fwdPort, refused: refusedPort, route: routePort };
  const argvs: Record<Role, string[]> = {
    forward: [
      "forward",
      "--listen",
      `127.0.0.1:${fwdPort}`,
      "--to",
      `127.0.0.1:${ctx.httpPort}`,
      "--engine",
      engine,
      "--quiet",
    ],
    refused: [
      "forward",
      "--listen",
      `127.0.0.1:${refusedPort}`,
      "--to",
      `127.0.0.1:${deadPort}`,
      "--engine",
      engine,
      "--quiet",
    ],
    route: [
      "route",
      script,
      "--listen",
      `127.0.0.1:${routePort}`,
      "--route-timeout",
      `${ROUTE_TIMEOUT_MS}`,
      "--engine",
      engine,
      "--quiet",
    ],
  };
  const procs: { role: Role; p: SoakProcess }[] = [];
  const samples: Record<Role, SoakSample[]> = { forward: [], refused: [], route: [] };
  try {
    for (const role of ROLES) {
      procs.push({ role, p: await ctx.startRelaykit(argvs[role], ports[role], V8_FLAGS) });
    }
    const name = `${engine}, ${runtimeName}`;
    ctx.log(
      `[soak ${name}] ${procs.map(({ role, p }) => `${role} pid ${p.pid}`).join(", ")}; ` +
        `${cycles} cycles of ${CYCLE_MS / 1000} s`,
    );
    await sleep(1000);
    for (const { role, p } of procs) {
      const r = readProc(p.pid);
      if (r) samples[role].push({ t: 0, phase: "baseline", ...r });
    }
    const start = Date.now();
    // Sampler: every 5 s from 2.5 s on, at the same offsets in every cycle.
    const sampler = (async () => {
      for (let i = 0;; i++) {
        const at = SAMPLE_OFFSET_MS + i * SAMPLE_EVERY_MS;
        if (at >= cycles * CYCLE_MS) return;
        await sleepUntil(start + at);
        const phase = phaseAt(at % CYCLE_MS);
        for (const { role, p } of procs) {
          const r = readProc(p.pid);
          if (r) samples[role].push({ t: at / 1000, phase, ...r });
        }
        if (phase === "quiet") {
          ctx.log(
            `[soak ${name}] ${(at / 1000).toFixed(1)} s ` + ROLES.map((role) => {
              const x = samples[role].at(-1);
              return ` ${role} ${((x?.rssBytes ?? 0) / MIB).toFixed(1)} MiB ${x?.fds} fds`;
            }).join(" "),
          );
        }
      }
    })();
    const up = new Uint8Array(64 * 1024).fill(0x75);
    fs.writeFileSync(lua, "function delay() return 4 end\n");
    const luaClose = `${ctx.tmpDir}/soak-delay-close.lua`;
    fs.writeFileSync(luaClose, "function delay() return 10 end\n");
    const f = load.figures;
    for (let c = 0; c < cycles; c++) {
      const t0 = start + c * CYCLE_MS;
      const end = t0 + LOAD_MS;
      await sleepUntil(t0);
      if (procs.some((x) => x.p.died() !== null)) break;
      const seconds = LOAD_MS / 1000;
      const jobs: Promise<void>[] = [
        wrk(ctx, ["-c20", "-s", lua], seconds, fwdPort).then((w) => {
          f.kaRequests += w.requests;
          if (w.errors) f.wrkErrors.push(`keep-alive, cycle ${c + 1}: ${w.errors}`);
        }),
        wrk(ctx, ["-c4", "-s", luaClose, "-H", "Connection: close"], seconds, fwdPort).then(
          (w) => {
            f.closeRequests += w.requests;
            if (w.errors) f.wrkErrors.push(`close, cycle ${c + 1}: ${w.errors}`);
          },
        ),
        loop(end, 250, () => bulkOnce(routePort, load, up)),
        loop(end, 250, () => bulkOnce(routePort, load, up)),
        loop(
          end,
          50,
          () => resetOnce(fwdPort, "GET / HTTP/1.1\r\nHost: soak\r\nX-", 20, load, "forward"),
        ),
        loop(end, 50, () => resetOnce(routePort, "SI", 20, load, "route")),
        loop(end, 50, () => resetMidBulk(routePort, up, load)),
        wrk(ctx, ["-c2", "-s", luaClose, "-H", "Connection: close"], seconds, routePort).then(
          (w) => {
            f.routeCloseRequests += w.requests;
            if (w.errors) f.wrkErrors.push(`close through route, cycle ${c + 1}: ${w.errors}`);
          },
        ),
        loop(end, 50, () => refusedOnce(routePort, load, "route")),
        loop(end, 20, () => refusedOnce(refusedPort, load, "refused")),
        loop(end, 20, () => refusedOnce(refusedPort, load, "refused")),
        sleep(1000).then(() => stalledWave(routePort, STALLED, load)),
        (async () => {
          await sleepUntil(t0 + IDLE_OPEN_MS);
          const socks = await idleWave([
            { port: fwdPort, n: IDLE_FORWARD, role: "forward" },
            { port: routePort, first: "SINK", n: IDLE_ROUTE, role: "route" },
          ], load);
          await sleepUntil(t0 + IDLE_CLOSE_MS);
          // half close gracefully (FIN), half reset
          socks.forEach((s, i) => i % 2 ? s.end() : s.resetAndDestroy());
          await sleep(500);
          for (const s of socks) s.destroy();
        })(),
      ];
      await Promise.all(jobs);
    }
    await sampler;
    const connections: Record<Role, number> = {
      // wrk's keep-alive connections are opened once per cycle
      forward: f.closeRequests + 20 * cycles + f.resetsForward + f.idleForward,
      refused: f.refusedForward,
      route: f.routeCloseRequests + f.bulkStreams + f.resetsRoute + f.refusedRoute +
        f.stalledClosed + f.idleRoute,
    };
    const processes = procs.map(({ role, p }) =>
      summarise(
        role,
        [
          "relaykit",
          ...(runtimeName.startsWith("deno") ? [`(--v8-flags=${V8_FLAGS.join(",")})`] : []),
          ...argvs[role],
        ],
        samples[role],
        totalS,
        connections[role],
        p.died(),
      )
    );
    const w = windows([], totalS);
    return {
      name: `soak-${engine}`,
      engine,
      runtime: runtimeName,
      minutes: totalS / 60,
      cycles,
      window: w.label,
      processes,
      load: load.figures,
      pass: processes.every((p) => p.failures.length === 0),
    };
  } finally {
    for (const { p } of procs) await p.stop();
    await new Promise<void>((r) => sink.close(() => r()));
  }
}

/**
 * Runs the soak for each selected engine, one after the other.
 *
 * @param ctx What bench.ts provides.
 * @param engines The engines to soak on this runtime.
 * @param runtimeName The runtime running the bench, e.g. "deno 2.9.6".
 * @returns One result per engine.
 */
export async function benchSoak(
  ctx: SoakContext,
  engines: ("native" | "stream")[],
  runtimeName: string,
): Promise<SoakResult[]> {
  const out: SoakResult[] = [];
  for (const engine of engines) {
    const r = await soakVariant(ctx, engine, runtimeName);
    out.push(r);
    for (const p of r.processes) {
      ctx.log(
        `[soak ${engine}, ${runtimeName}] ${p.role}: RSS ${fmtMiB(p.rssFirst)} -> ${
          fmtMiB(p.rssLast)
        } MiB, quiet fds ${p.fdsFirst.toFixed(1)} -> ${p.fdsLast.toFixed(1)}` +
          (p.failures.length ? `  FAIL: ${p.failures.join("; ")}` : "  ok"),
      );
    }
  }
  return out;
}

const fmtMiB = (b: number) => (b / MIB).toFixed(1);

/** The soak's rows: one per measured process. */
export const SOAK_COLUMNS = [
  "RSS first MiB",
  "RSS last MiB",
  "ratio",
  "RSS max MiB",
  "slope MiB/min",
  "fds first",
  "fds last",
  "Δ fds",
  "fds max",
  "result",
];

/** Table cells of one measured process (the first cell names it). */
export function soakRow(r: SoakResult, p: SoakProcessResult): string[] {
  return [
    `${r.engine} ${p.role}, ${r.runtime}`,
    fmtMiB(p.rssFirst),
    fmtMiB(p.rssLast),
    `${(p.rssLast / p.rssFirst).toFixed(3)}x`,
    fmtMiB(p.rssMax),
    p.rssSlopeMiBPerMin.toFixed(2),
    p.fdsFirst.toFixed(1),
    p.fdsLast.toFixed(1),
    `${p.fdsLast - p.fdsFirst >= 0 ? "+" : ""}${(p.fdsLast - p.fdsFirst).toFixed(1)}`,
    `${p.fdsMax}`,
    p.failures.length ? "FAIL" : "ok",
  ];
}

/** Lines describing the load of each variant, and the thresholds. */
export function soakSummary(results: SoakResult[]): string[] {
  const lines: string[] = [];
  for (const r of results) {
    const l = r.load;
    const unexpected = Object.entries(l.unexpected).map(([k, v]) => `${k} ${v}`);
    const n = (x: number) => x.toLocaleString("en-US");
    lines.push(
      `${r.engine}, ${r.runtime}: ${r.cycles} cycles (${r.minutes} min, ${r.window})` +
        (r.runtime.startsWith("deno")
          ? `; V8 young generation capped (${V8_FLAGS.join(" ")})`
          : ""),
      `  forward: ${n(l.kaRequests)} keep-alive + ${n(l.closeRequests)} close requests, ` +
        `${n(l.idleForward)} idle, ${n(l.resetsForward)} resets mid-request`,
      `  refused: ${n(l.refusedForward)} connects refused behind it`,
      `  route: ${n(l.routeCloseRequests)} close requests, ${n(l.bulkStreams)} bulk streams ` +
        `(${fmtMiB(l.bulkBytesUp)} MiB up, ${fmtMiB(l.bulkBytesDown)} MiB down), ` +
        `${n(l.idleRoute)} idle, ${n(l.resetsRoute)} resets (held or mid-bulk), ` +
        `${n(l.refusedRoute)} refused, ${n(l.stalledClosed)} stalled and timed out`,
      `  unexpected errors: ${unexpected.length ? unexpected.join(", ") : "none"}` +
        (l.wrkErrors.length ? `; wrk: ${l.wrkErrors.join(" | ")}` : ""),
      ...l.unexpectedExamples.map((e) => `    ${e}`),
    );
    for (const p of r.processes) {
      lines.push(
        `  ${p.role}: ${p.connections.toLocaleString("en-US")} connections; the RSS check ` +
          `catches a leak of ${
            Number.isFinite(p.leakFloorBytesPerConn) ? p.leakFloorBytesPerConn.toFixed(0) : "–"
          } B per connection or more; ` +
          `fds with the idle wave held ${p.fdsIdleFirst.toFixed(0)} -> ${p.fdsIdleLast.toFixed(0)}`,
      );
      for (const f of p.failures) lines.push(`  FAIL ${p.role}: ${f}`);
    }
  }
  lines.push(
    `pass: last-window RSS <= first × ${1 + RSS_TOLERANCE.ratio} + ` +
      `${RSS_TOLERANCE.bytes / MIB} MiB (all samples), and quiet fds grow by <= ${FD_TOLERANCE}`,
  );
  return lines;
}
