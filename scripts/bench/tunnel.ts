/**
 * The tunnel section of scripts/bench.ts: relaykit's tunnel against `ssh -L`
 * and stunnel, with a relaykit native forward (no tunnel) as the reference,
 * side by side in one run.
 *
 * Paths (each from a local port to iperf3 -s and to nginx `return 200`):
 *   forward-native   relaykit forward --engine native (one process per
 *                    destination), on the runtime running the bench
 *   ssh-L            a throwaway sshd (host and user keys generated per run,
 *                    its own config, a free loopback port, the current user)
 *                    and `ssh -N -L … -c aes128-gcm@openssh.com`
 *   stunnel          a TLS pair: stunnel client -> stunnel server (a
 *                    self-signed certificate made with openssl)
 *   tunnel-{tcp,tls}-{deno,bun}
 *                    relaykit tunnel client -> tunnel server (CLI, shared
 *                    secret; tls: --tls-cert/--tls-key, and --tls-ca with
 *                    the link named localhost)
 *
 * Workloads, per path and round, against freshly started processes (after a
 * 1 s unmeasured iperf3 warm-up):
 *   iperf3 -P 1 and -P 8 for duration s              -> Gbit/s
 *   wrk -t1 -c50 keep-alive for duration s           -> req/s, p99
 *   utime+stime (+ that of reaped children) of the process trees of both
 *   ends during each run                             -> CPU s per GB, µs
 *                                                       per request
 * Rounds run every path once, in an order rotated by one each round; the
 * report gives medians over rounds, ratios of the tunnel rows to ssh -L and
 * stunnel, and the targets of the tunnel's native data plane, each met or
 * not met.
 */
import fs from "node:fs";
import os from "node:os";
import process from "node:process";
import { median } from "./stats.ts";

/** What the section needs from scripts/bench.ts. */
export interface TunnelContext {
  durationS: number;
  rounds: number;
  tmpDir: string;
  /** nginx `return 200` on 127.0.0.1. */
  httpPort: number;
  bins: TunnelBins;
  /** Command prefix that runs a JS file with the runtime running the bench. */
  selfRuntime: string[];
  log(line: string): void;
  freePort(): Promise<number>;
  /** Runs a command to completion (killed after timeoutMs). */
  run(
    argv: string[],
    timeoutMs: number,
  ): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Starts a long-running command; resolves once its process tree listens on every port. */
  start(argv: string[], ports: number[]): Promise<TunnelProcess>;
  /** wrk -t1 -c50 keep-alive against the port for durationS. */
  wrk(
    port: number,
    durationS: number,
  ): Promise<{ rps: number; requests: number; p99Ms: number | null; errors: string | null }>;
  /** CPU seconds of the processes and their descendants, reaped children included. */
  treeCpu(pids: number[]): number;
}

/** Binaries the section runs (null: not found, the rows that need it are skipped). */
export interface TunnelBins {
  iperf3: string;
  sshd: string;
  ssh: string;
  sshKeygen: string;
  stunnel: string;
  openssl: string;
  deno: string | null;
  bun: string | null;
}

/** A started process. */
export interface TunnelProcess {
  pid: number;
  /** The first 64 KiB of its output. */
  output(): string;
  stop(): Promise<void>;
  /** Non-null once the process has exited. */
  died(): string | null;
}

/** The figures of one path in one round (or their medians). */
export interface TunnelFigures {
  gbps1: number | null;
  gbps8: number | null;
  cpuSPerGB1: number | null;
  cpuSPerGB8: number | null;
  kaRps: number | null;
  kaP99Ms: number | null;
  cpuUsPerReq: number | null;
}

type Metric = keyof TunnelFigures;

/** One path: its rounds and their medians. */
export interface TunnelRow {
  name: string;
  label: string;
  status: "ok" | "skipped";
  reason?: string;
  rounds: TunnelFigures[];
  median: TunnelFigures;
  notes: string[];
}

/** A tunnel row against a peer, metric by metric (row / peer). */
export interface TunnelRatio {
  row: string;
  peer: string;
  ratios: Partial<Record<Metric, number | null>>;
}

/** A target of issue 22, checked on the medians of this run. */
export interface TunnelTarget {
  text: string;
  row: string;
  peer: string;
  metric: Metric;
  /** at-least: ratio ≥ bound; at-most: ratio ≤ bound; within: max/min ≤ 1 + bound. */
  kind: "at-least" | "at-most" | "within";
  bound: number;
  ratio: number | null;
  /** null when a figure is missing. */
  met: boolean | null;
}

/** The whole section's result (also its part of --json). */
export interface TunnelBenchResult {
  durationS: number;
  rounds: number;
  versions: Record<string, string>;
  rows: TunnelRow[];
  ratios: TunnelRatio[];
  targets: TunnelTarget[];
}

export const TUNNEL_COLUMNS: { title: string; key: Metric; digits: number }[] = [
  { title: "1 stream Gbit/s", key: "gbps1", digits: 2 },
  { title: "8 streams Gbit/s", key: "gbps8", digits: 2 },
  { title: "CPU s/GB (1)", key: "cpuSPerGB1", digits: 2 },
  { title: "CPU s/GB (8)", key: "cpuSPerGB8", digits: 2 },
  { title: "ka req/s", key: "kaRps", digits: 0 },
  { title: "ka p99 ms", key: "kaP99Ms", digits: 2 },
  { title: "CPU µs/req", key: "cpuUsPerReq", digits: 1 },
];

const EMPTY: TunnelFigures = {
  gbps1: null,
  gbps8: null,
  cpuSPerGB1: null,
  cpuSPerGB8: null,
  kaRps: null,
  kaP99Ms: null,
  cpuUsPerReq: null,
};

/** Where a started path takes connections, and its processes (both ends). */
interface Running {
  iperfPort: number;
  httpPort: number;
  procs: TunnelProcess[];
}

interface PathSpec {
  name: string;
  label: string;
  /** Why the row cannot run here, or null. */
  missing(): string | null;
  start(iperfPort: number, httpPort: number, procs: TunnelProcess[]): Promise<Running>;
}

const TUNNEL_ROWS = ["tunnel-tcp-deno", "tunnel-tls-deno", "tunnel-tcp-bun", "tunnel-tls-bun"];
const SSH = "ssh-L", STUNNEL = "stunnel";

function paths(ctx: TunnelContext, files: Files): PathSpec[] {
  const b = ctx.bins;
  const selfName = process.versions.deno ? "deno" : process.versions.bun ? "bun" : "node";
  const relaykit = (runtime: "deno" | "bun") => {
    const bin = b[runtime];
    return bin === null ? [] : [bin, ...(runtime === "deno" ? ["run", "-A"] : []), "src/cli.ts"];
  };
  const tunnel = (runtime: "deno" | "bun", tls: boolean): PathSpec => ({
    name: `tunnel-${tls ? "tls" : "tcp"}-${runtime}`,
    label: `relaykit tunnel, ${tls ? "TLS" : "TCP"}, ${runtime === "deno" ? "Deno" : "Bun"}`,
    missing: () => b[runtime] === null ? `${runtime} not found` : null,
    async start(iperf, http, procs) {
      const link = await ctx.freePort();
      const p1 = await ctx.freePort(), p2 = await ctx.freePort();
      procs.push(
        await ctx.start([
          ...relaykit(runtime),
          "tunnel",
          "server",
          "--listen",
          `127.0.0.1:${link}`,
          "--allow",
          "127.0.0.1/32",
          "--secret-file",
          files.secret,
          ...(tls ? ["--tls-cert", files.cert, "--tls-key", files.key] : []),
        ], [link]),
      );
      const client = await ctx.start([
        ...relaykit(runtime),
        "tunnel",
        "client",
        "--link",
        // over TLS by name: Deno verifies the name it connects to
        `${tls ? "localhost" : "127.0.0.1"}:${link}`,
        "--listen",
        `127.0.0.1:${p1}=127.0.0.1:${iperf}`,
        "--listen",
        `127.0.0.1:${p2}=127.0.0.1:${http}`,
        "--secret-file",
        files.secret,
        ...(tls ? ["--tls-ca", files.cert] : []),
      ], [p1, p2]);
      procs.push(client);
      // its listeners are up before the link is: a connection then is refused
      await waitOutput(client, /link to \S+ up/, 10_000);
      return { iperfPort: p1, httpPort: p2, procs };
    },
  });
  return [
    {
      name: "forward-native",
      label: `relaykit forward, native (no tunnel), ${selfName}`,
      missing: () => null,
      async start(iperf, http, procs) {
        const ports: number[] = [];
        for (const to of [iperf, http]) {
          const port = await ctx.freePort();
          procs.push(
            await ctx.start([
              ...ctx.selfRuntime,
              "src/cli.ts",
              "forward",
              "--listen",
              `127.0.0.1:${port}`,
              "--to",
              `127.0.0.1:${to}`,
              "--engine",
              "native",
            ], [port]),
          );
          ports.push(port);
        }
        return { iperfPort: ports[0]!, httpPort: ports[1]!, procs };
      },
    },
    {
      name: SSH,
      label: "ssh -L (aes128-gcm)",
      missing: () => null,
      async start(iperf, http, procs) {
        const sshPort = await ctx.freePort();
        const p1 = await ctx.freePort(), p2 = await ctx.freePort();
        procs.push(
          await ctx.start([b.sshd, "-D", "-e", "-f", sshdConfig(files, sshPort)], [sshPort]),
        );
        procs.push(
          await ctx.start([
            b.ssh,
            "-F",
            "/dev/null",
            "-N",
            "-p",
            `${sshPort}`,
            "-i",
            files.userKey,
            "-c",
            "aes128-gcm@openssh.com",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            `UserKnownHostsFile=${files.knownHosts}`,
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "LogLevel=ERROR",
            "-L",
            `127.0.0.1:${p1}:127.0.0.1:${iperf}`,
            "-L",
            `127.0.0.1:${p2}:127.0.0.1:${http}`,
            `${files.user}@127.0.0.1`,
          ], [p1, p2]),
        );
        return { iperfPort: p1, httpPort: p2, procs };
      },
    },
    {
      name: STUNNEL,
      label: "stunnel (TLS pair)",
      missing: () => null,
      async start(iperf, http, procs) {
        const s1 = await ctx.freePort(), s2 = await ctx.freePort();
        const p1 = await ctx.freePort(), p2 = await ctx.freePort();
        const conf = (name: string, client: boolean, pairs: [number, number][]) => {
          const path = `${ctx.tmpDir}/stunnel-${name}.conf`;
          fs.writeFileSync(
            path,
            `foreground = yes\npid =\nsyslog = no\ndebug = 3\noutput = ${ctx.tmpDir}/stunnel-${name}.log\n` +
              pairs.map(([accept, connect], i) =>
                `[s${i}]\n${
                  client ? "client = yes\n" : `cert = ${files.cert}\nkey = ${files.key}\n`
                }` +
                `accept = 127.0.0.1:${accept}\nconnect = 127.0.0.1:${connect}\n`
              ).join(""),
          );
          return path;
        };
        procs.push(
          await ctx.start([b.stunnel, conf("server", false, [[s1, iperf], [s2, http]])], [s1, s2]),
        );
        procs.push(
          await ctx.start([b.stunnel, conf("client", true, [[p1, s1], [p2, s2]])], [p1, p2]),
        );
        return { iperfPort: p1, httpPort: p2, procs };
      },
    },
    tunnel("deno", false),
    tunnel("deno", true),
    tunnel("bun", false),
    tunnel("bun", true),
  ];
}

/** Keys, certificate and secret, made once per run in the temp dir. */
interface Files {
  hostKey: string;
  userKey: string;
  authorizedKeys: string;
  knownHosts: string;
  cert: string;
  key: string;
  secret: string;
  /** The current user's name (ssh logs in as it). */
  user: string;
}

async function makeFiles(ctx: TunnelContext): Promise<Files> {
  const d = ctx.tmpDir;
  const f: Files = {
    hostKey: `${d}/ssh_host_ed25519_key`,
    userKey: `${d}/ssh_user_ed25519_key`,
    authorizedKeys: `${d}/ssh_authorized_keys`,
    knownHosts: `${d}/ssh_known_hosts`,
    cert: `${d}/tunnel-cert.pem`,
    key: `${d}/tunnel-key.pem`,
    secret: `${d}/tunnel-secret`,
    // `id -un`: os.userInfo() says "unknown" on Bun
    user: (await ctx.run(["id", "-un"], 10_000)).stdout.trim() || os.userInfo().username,
  };
  const must = async (argv: string[]) => {
    const r = await ctx.run(argv, 30_000);
    if (r.code !== 0) throw new Error(`${argv[0]} failed: ${(r.stderr || r.stdout).trim()}`);
  };
  for (const key of [f.hostKey, f.userKey]) {
    await must([
      ctx.bins.sshKeygen,
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      "relaykit-bench",
      "-f",
      key,
    ]);
  }
  fs.copyFileSync(`${f.userKey}.pub`, f.authorizedKeys);
  // CA:FALSE: a self-signed certificate that is its own trust anchor
  await must([
    ctx.bins.openssl,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-keyout",
    f.key,
    "-out",
    f.cert,
  ]);
  fs.writeFileSync(f.secret, `${crypto.randomUUID()}\n`, { mode: 0o600 });
  // sshd running as root needs its privilege separation directory, which the
  // service manager would otherwise create
  if (process.getuid?.() === 0 && !fs.existsSync("/run/sshd")) {
    ctx.log("[tunnel] creating /run/sshd (sshd's privilege separation directory)");
    fs.mkdirSync("/run/sshd", { mode: 0o755 });
  }
  return f;
}

function sshdConfig(f: Files, port: number): string {
  const path = `${f.hostKey}.sshd_config-${port}`;
  fs.writeFileSync(
    path,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${f.hostKey}`,
      `AuthorizedKeysFile ${f.authorizedKeys}`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      "PidFile none",
      "AllowTcpForwarding yes",
      "Ciphers aes128-gcm@openssh.com",
      "LogLevel ERROR",
      "",
    ].join("\n"),
  );
  return path;
}

async function waitOutput(p: TunnelProcess, re: RegExp, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!re.test(p.output())) {
    const died = p.died();
    if (died) throw new Error(died);
    if (Date.now() > deadline) {
      const last = p.output().trim().split("\n").pop() ?? "";
      throw new Error(`no ${re.source} after ${ms / 1000} s${last ? `: ${last}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** iperf3 through the path; Gbit/s and bytes received. */
async function iperf(
  ctx: TunnelContext,
  port: number,
  streams: number,
  seconds: number,
): Promise<{ gbps: number; bytes: number }> {
  for (let attempt = 1;; attempt++) {
    const r = await ctx.run(
      [
        ctx.bins.iperf3,
        "-c",
        "127.0.0.1",
        "-p",
        `${port}`,
        "-t",
        `${seconds}`,
        "-P",
        `${streams}`,
        "-J",
      ],
      (seconds + 20) * 1000,
    );
    let j;
    try {
      j = JSON.parse(r.stdout);
    } catch {
      throw new Error((r.stderr || r.stdout).trim().split("\n")[0] || "no output");
    }
    // the server may still be finishing the previous test
    if (j.error && /busy/.test(j.error) && attempt < 3) {
      await new Promise((res) => setTimeout(res, 1000));
      continue;
    }
    if (j.error) throw new Error(j.error);
    return { gbps: j.end.sum_received.bits_per_second / 1e9, bytes: j.end.sum_received.bytes };
  }
}

/** One round of one path: a fresh iperf3 server and path, three measured runs. */
async function measure(
  ctx: TunnelContext,
  spec: PathSpec,
  notes: string[],
): Promise<TunnelFigures> {
  const fig: TunnelFigures = { ...EMPTY };
  const procs: TunnelProcess[] = [];
  try {
    const iperfPort = await ctx.freePort();
    const server = await ctx.start([ctx.bins.iperf3, "-s", "-p", `${iperfPort}`], [iperfPort]);
    const path = await (async () => {
      try {
        return await spec.start(iperfPort, ctx.httpPort, procs);
      } finally {
        procs.push(server); // stopped with the path, not measured
      }
    })();
    const pids = () => path.procs.filter((p) => p !== server).map((p) => p.pid);
    const step = async (what: string, f: () => Promise<void>) => {
      try {
        await f();
      } catch (e) {
        notes.push(`${what}: ${(e as Error).message}`);
      }
      const died = path.procs.map((p) => p.died()).find((d) => d !== null);
      if (died) throw new Error(`after ${what}: ${died}`);
      await new Promise((r) => setTimeout(r, 300)); // let the path settle
    };
    await step("warm-up", async () => void await iperf(ctx, path.iperfPort, 2, 1));
    for (const streams of [1, 8]) {
      await step(`iperf3 -P ${streams}`, async () => {
        const c0 = ctx.treeCpu(pids());
        const r = await iperf(ctx, path.iperfPort, streams, ctx.durationS);
        const cpu = ctx.treeCpu(pids()) - c0;
        fig[streams === 1 ? "gbps1" : "gbps8"] = r.gbps;
        fig[streams === 1 ? "cpuSPerGB1" : "cpuSPerGB8"] = r.bytes > 0
          ? cpu / (r.bytes / 1e9)
          : null;
      });
    }
    await step("wrk keep-alive", async () => {
      const c0 = ctx.treeCpu(pids());
      const w = await ctx.wrk(path.httpPort, ctx.durationS);
      const cpu = ctx.treeCpu(pids()) - c0;
      fig.kaRps = w.rps;
      fig.kaP99Ms = w.p99Ms;
      fig.cpuUsPerReq = w.requests > 0 ? (cpu * 1e6) / w.requests : null;
      if (w.errors) notes.push(`wrk: ${w.errors}`);
    });
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
  return fig;
}

function ratioOf(
  rows: Map<string, TunnelRow>,
  row: string,
  peer: string,
  m: Metric,
): number | null {
  const a = rows.get(row)?.median[m] ?? null;
  const b = rows.get(peer)?.median[m] ?? null;
  return a !== null && b !== null && b !== 0 ? a / b : null;
}

/** The targets of issue 22 (plain TCP and TLS tunnel against ssh -L and stunnel; runtimes alike). */
function targets(rows: Map<string, TunnelRow>): TunnelTarget[] {
  const out: TunnelTarget[] = [];
  const add = (
    text: string,
    row: string,
    peer: string,
    metric: Metric,
    kind: TunnelTarget["kind"],
    bound: number,
  ) => {
    const ratio = ratioOf(rows, row, peer, metric);
    const met = ratio === null
      ? null
      : kind === "at-least"
      ? ratio >= bound
      : kind === "at-most"
      ? ratio <= bound
      : Math.max(ratio, 1 / ratio) <= 1 + bound;
    out.push({ text, row, peer, metric, kind, bound, ratio, met });
  };
  for (const rt of ["deno", "bun"]) {
    const tcp = `tunnel-tcp-${rt}`, tls = `tunnel-tls-${rt}`;
    add("1 stream ≥ 1.5× ssh -L", tcp, SSH, "gbps1", "at-least", 1.5);
    add("8 streams ≥ 1.5× ssh -L", tcp, SSH, "gbps8", "at-least", 1.5);
    add("CPU per GB (1 stream) ≤ 0.5× ssh -L", tcp, SSH, "cpuSPerGB1", "at-most", 0.5);
    add("keep-alive req/s ≥ 1.2× ssh -L", tcp, SSH, "kaRps", "at-least", 1.2);
    add("keep-alive p99 no worse than ssh -L", tcp, SSH, "kaP99Ms", "at-most", 1);
    add("1 stream ≥ 1.0× ssh -L", tls, SSH, "gbps1", "at-least", 1);
    add("8 streams ≥ 1.0× ssh -L", tls, SSH, "gbps8", "at-least", 1);
    add("CPU per GB (1 stream) ≤ 1.0× ssh -L", tls, SSH, "cpuSPerGB1", "at-most", 1);
    add("1 stream ≥ 1.5× stunnel", tls, STUNNEL, "gbps1", "at-least", 1.5);
    add("8 streams ≥ 1.5× stunnel", tls, STUNNEL, "gbps8", "at-least", 1.5);
  }
  for (const kind of ["tcp", "tls"]) {
    const deno = `tunnel-${kind}-deno`, bun = `tunnel-${kind}-bun`;
    add("Deno and Bun within 10%: 1 stream", deno, bun, "gbps1", "within", 0.1);
    add("Deno and Bun within 10%: 8 streams", deno, bun, "gbps8", "within", 0.1);
    add("Deno and Bun within 10%: keep-alive req/s", deno, bun, "kaRps", "within", 0.1);
  }
  return out;
}

/**
 * Runs the section: `rounds` rounds over every path, each about
 * 3 × duration + 3 s plus start-up.
 */
export async function benchTunnel(ctx: TunnelContext): Promise<TunnelBenchResult> {
  const files = await makeFiles(ctx);
  const specs = paths(ctx, files);
  const rows = new Map<string, TunnelRow>();
  for (const s of specs) {
    const reason = s.missing();
    rows.set(s.name, {
      name: s.name,
      label: s.label,
      status: reason ? "skipped" : "ok",
      ...(reason ? { reason: `not available: ${reason}` } : {}),
      rounds: [],
      median: { ...EMPTY },
      notes: [],
    });
  }
  for (let round = 0; round < ctx.rounds; round++) {
    // rotate the order, so that no path always runs first or after the same one
    const order = specs.map((_, i) => specs[(i + round) % specs.length]!);
    for (const spec of order) {
      const row = rows.get(spec.name)!;
      if (row.status === "skipped") continue;
      const notes: string[] = [];
      let fig: TunnelFigures;
      try {
        fig = await measure(ctx, spec, notes);
      } catch (e) {
        fig = { ...EMPTY };
        notes.push((e as Error).message);
      }
      row.rounds.push(fig);
      row.notes.push(...notes.map((n) => `round ${round + 1}: ${n}`));
      ctx.log(
        `[tunnel] round ${round + 1} ${spec.name}  ` +
          TUNNEL_COLUMNS.map((c) => `${c.title}=${fmtNum(fig[c.key], c.digits)}`).join("  "),
      );
      for (const n of notes) ctx.log(`[tunnel]   note: ${n}`);
    }
  }
  for (const row of rows.values()) {
    for (const c of TUNNEL_COLUMNS) row.median[c.key] = median(row.rounds.map((r) => r[c.key]));
  }
  const ratios: TunnelRatio[] = [];
  for (const row of TUNNEL_ROWS) {
    if (rows.get(row)?.status !== "ok") continue;
    for (const peer of [SSH, STUNNEL]) {
      const r: TunnelRatio = { row, peer, ratios: {} };
      for (const c of TUNNEL_COLUMNS) r.ratios[c.key] = ratioOf(rows, row, peer, c.key);
      ratios.push(r);
    }
  }
  const version = async (argv: string[], re: RegExp) => {
    const r = await ctx.run(argv, 10_000);
    return `${r.stdout}\n${r.stderr}`.match(re)?.[1] ?? "?";
  };
  return {
    durationS: ctx.durationS,
    rounds: ctx.rounds,
    versions: {
      openssh: await version([ctx.bins.ssh, "-V"], /OpenSSH_([^\s,]+)/),
      stunnel: await version([ctx.bins.stunnel, "-version"], /stunnel (\S+)/),
      openssl: await version([ctx.bins.openssl, "version"], /OpenSSL (\S+)/),
    },
    rows: [...rows.values()],
    ratios,
    targets: targets(rows),
  };
}

function fmtNum(v: number | null, digits: number): string {
  if (v === null || !Number.isFinite(v)) return "–";
  return v.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const KIND_SIGN = { "at-least": "≥", "at-most": "≤", "within": "within" } as const;

/** The section's report: medians, ratios, targets. */
export function tunnelReport(
  r: TunnelBenchResult,
  table: (header: string[], rows: string[][]) => string,
): string[] {
  const out = [
    `tunnel peers: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(", ")}; ` +
    `${r.rounds} round(s), ${r.durationS} s per workload`,
    "",
    table(
      ["tunnel (medians)", ...TUNNEL_COLUMNS.map((c) => c.title)],
      r.rows.map((row) =>
        row.status === "skipped"
          ? [row.label, "skipped", ...TUNNEL_COLUMNS.slice(1).map(() => "")]
          : [row.label, ...TUNNEL_COLUMNS.map((c) => fmtNum(row.median[c.key], c.digits))]
      ),
    ),
  ];
  if (r.ratios.length) {
    out.push(
      "",
      "tunnel ratios (row / peer; want > 1 for Gbit/s and req/s, < 1 for CPU and p99):",
      "",
      table(
        ["row / peer", ...TUNNEL_COLUMNS.map((c) => c.title)],
        r.ratios.map((x) => [
          `${x.row} / ${x.peer}`,
          ...TUNNEL_COLUMNS.map((c) => {
            const v = x.ratios[c.key] ?? null;
            return v === null ? "–" : `${v.toFixed(2)}x`;
          }),
        ]),
      ),
    );
  }
  out.push("", "tunnel targets (issue 22, on the medians):", "");
  out.push(
    table(
      ["target", "row", "ratio", "bound", "status"],
      r.targets.map((t) => [
        t.text,
        t.kind === "within" ? `${t.row} / ${t.peer}` : t.row,
        t.ratio === null ? "–" : `${t.ratio.toFixed(2)}x`,
        t.kind === "within"
          ? `${((1 + t.bound) ** -1).toFixed(2)}–${(1 + t.bound).toFixed(2)}x`
          : `${KIND_SIGN[t.kind]} ${t.bound.toFixed(1)}x`,
        t.met === null ? "no data" : t.met ? "met" : "not met",
      ]),
    ),
  );
  const met = r.targets.filter((t) => t.met === true).length;
  out.push("", `tunnel targets met: ${met} of ${r.targets.length}`);
  const notes = r.rows.flatMap((row) =>
    row.status === "skipped"
      ? [`${row.name}: skipped, ${row.reason}`]
      : row.notes.map((n) => `${row.name}: ${n}`)
  );
  if (notes.length) out.push("", "tunnel notes:", ...notes.map((n) => `  ${n}`));
  return out;
}
