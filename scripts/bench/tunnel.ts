/**
 * The tunnel section of scripts/bench.ts: throughput and per-stream latency
 * through a relaykit tunnel (client and server, two processes) against a
 * direct relay (`relaykit forward --engine stream`, one process), to the
 * same echo server (`relaykit echo`), side by side in one run. Every
 * process runs on the runtime that runs the bench; the load generator is
 * the bench process itself.
 *
 *   bulk     N parallel streams each send as fast as they can for S seconds
 *            and read the echo back                  -> MB/s (echoed bytes)
 *   latency  one stream, 64-byte ping-pong, R round trips   -> p50, p99 µs
 */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** One row: a path through which bytes go. */
export interface TunnelBenchResult {
  name: string;
  streams: number;
  bulkMBps: number;
  rttP50Us: number;
  rttP99Us: number;
  roundTrips: number;
}

const CLI = fileURLToPath(new URL("../../src/cli.ts", import.meta.url).href);

function start(args: string[]): { child: ChildProcess; line: Promise<string> } {
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";
  const argv = isDeno ? ["run", "-A", CLI, ...args] : [CLI, ...args];
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const line = new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (d: Uint8Array) => {
      out += String(d);
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.stderr!.on("data", () => {});
    child.once("exit", (code) => reject(new Error(`relaykit ${args[0]} exited with ${code}`)));
  });
  return { child, line };
}

function portOf(line: string, re: RegExp): number {
  const m = re.exec(line);
  if (m === null) throw new Error(`no port in "${line}"`);
  return Number(m[1]);
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    s.setNoDelay(true);
    s.once("connect", () => resolve(s)).once("error", reject);
  });
}

/** N streams, each writing 64 KiB chunks as fast as the path takes them, for `ms`. */
async function bulk(port: number, streams: number, ms: number): Promise<number> {
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  let echoed = 0;
  const socks = await Promise.all(Array.from({ length: streams }, () => connect(port)));
  const end = Date.now() + ms;
  const t0 = performance.now();
  await Promise.all(socks.map((s) =>
    new Promise<void>((resolve) => {
      s.on("data", (d: Uint8Array) => echoed += d.length);
      const pump = () => {
        while (Date.now() < end) {
          if (!s.write(chunk)) return void s.once("drain", pump);
        }
        s.end();
      };
      s.once("close", () => resolve());
      s.on("end", () => s.destroy());
      s.on("error", () => resolve());
      pump();
    })
  ));
  const seconds = (performance.now() - t0) / 1000;
  return echoed / seconds / 1e6;
}

/** One stream, `n` round trips of 64 bytes; round-trip times in µs. */
async function pingPong(port: number, n: number): Promise<number[]> {
  const s = await connect(port);
  const msg = new Uint8Array(64).fill(0x62);
  const times: number[] = [];
  let got = 0;
  let t = 0;
  await new Promise<void>((resolve) => {
    s.on("data", (d: Uint8Array) => {
      got += d.length;
      if (got < msg.length) return;
      got -= msg.length;
      times.push((performance.now() - t) * 1000);
      if (times.length >= n) return resolve();
      t = performance.now();
      s.write(msg);
    });
    t = performance.now();
    s.write(msg);
  });
  s.destroy();
  return times;
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;

/**
 * Run the section: `seconds` of bulk per path (and a warm-up), then the
 * ping-pong; about 2 × (seconds + 2) s in all.
 */
export async function benchTunnel(
  seconds: number,
  log: (line: string) => void,
): Promise<TunnelBenchResult[]> {
  const children: ChildProcess[] = [];
  const run = (args: string[]) => {
    const c = start(args);
    children.push(c.child);
    return c.line;
  };
  try {
    const echoPort = portOf(await run(["echo", "--listen", "127.0.0.1:0"]), /:(\d+) \(/);
    const to = `127.0.0.1:${echoPort}`;
    const directPort = portOf(
      await run(["forward", "--listen", "127.0.0.1:0", "--to", to, "--engine", "stream"]),
      /127\.0\.0\.1:(\d+) ->/,
    );
    const linkPort = portOf(
      await run(["tunnel", "server", "--listen", "127.0.0.1:0", "--allow", to]),
      /on 127\.0\.0\.1:(\d+)/,
    );
    const tunnelPort = portOf(
      await run([
        "tunnel",
        "client",
        "--link",
        `127.0.0.1:${linkPort}`,
        "--listen",
        `127.0.0.1:0=${to}`,
      ]),
      /127\.0\.0\.1:(\d+) ->/,
    );
    await new Promise((r) => setTimeout(r, 500)); // the link
    const paths = [
      { name: "direct (relaykit forward, stream engine)", port: directPort },
      { name: "tunnel (relaykit tunnel client -> server)", port: tunnelPort },
    ];
    const results: TunnelBenchResult[] = [];
    const streams = 8, roundTrips = 2000;
    for (const p of paths) {
      await bulk(p.port, streams, 300); // warm-up
      const mbps = await bulk(p.port, streams, seconds * 1000);
      await pingPong(p.port, 200); // warm-up
      const rtts = (await pingPong(p.port, roundTrips)).sort((a, b) => a - b);
      const r = {
        name: p.name,
        streams,
        bulkMBps: mbps,
        rttP50Us: pct(rtts, 0.5),
        rttP99Us: pct(rtts, 0.99),
        roundTrips,
      };
      log(
        `[tunnel] ${r.name}  bulk=${r.bulkMBps.toFixed(1)} MB/s  rtt p50=${
          r.rttP50Us.toFixed(0)
        } µs p99=${r.rttP99Us.toFixed(0)} µs`,
      );
      results.push(r);
    }
    return results;
  } finally {
    for (const c of children) c.kill("SIGKILL");
  }
}
