/**
 * The admin API with many open connections: `relaykit run` (native engine)
 * relays N idle connections, then /api/v1/stats and pages of
 * /api/v1/connections are timed, as the stats page asks them (once a
 * second).
 *
 *   deno run -A scripts/bench/admin_scale.ts [--runtime deno|bun] [--conns 9500]
 *
 * Each relayed connection holds two fds of the proxy and the hard fd limit
 * may be low (20,000 here): N is capped below half of it.
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { freePort } from "../free_port.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url).href).replace(/\/$/, "");
const HELPER = `${REPO}/scripts/bench/idle_helper.mjs`;
const TOKEN = "admin-scale";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] ?? fallback : fallback;
}

const hardFds = Number(spawnSync("bash", ["-c", "ulimit -Hn"], { encoding: "utf8" }).stdout) ||
  20_000;
const runtime = arg("runtime", "deno");
const conns = Math.min(Number(arg("conns", "9500")), Math.floor(hardFds / 2) - 250);

/** `argv` with the fd limit raised to the hard one. */
function withFds(argv: string[]): ChildProcess {
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
  return spawn("bash", ["-c", `ulimit -n "$(ulimit -Hn)"; exec ${quoted}`], {
    stdio: ["pipe", "pipe", "inherit"],
  });
}

function line(child: ChildProcess, re: RegExp, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no ${re} in ${ms} ms: ${out}`)), ms);
    child.stdout!.on("data", (d: Uint8Array) => {
      out += String(d);
      const m = out.match(re);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
  });
}

async function timed(url: string): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(url, { headers: { Authorization: `Bearer ${TOKEN}` } });
  await r.text();
  if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
  return performance.now() - t0;
}

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(1);
  return `median ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms (${s.length} requests)`;
}

const dir = mkdtempSync(join(tmpdir(), "relaykit-admin-scale-"));
const children: ChildProcess[] = [];
try {
  const [holdPort, port, adminPort] = [await freePort(), await freePort(), await freePort()];
  const hold = withFds(["node", HELPER, "hold", String(holdPort)]);
  children.push(hold);
  await line(hold, /listening/, 10_000);
  const file = join(dir, "scale.yaml");
  writeFileSync(
    file,
    `listeners:\n  - { name: web, address: 127.0.0.1, port: ${port}, ` +
      `routes: [{ default: true, to: { host: 127.0.0.1, port: ${holdPort} } }] }\n` +
      `admin: { port: ${adminPort}, token: ${TOKEN} }\n`,
  );
  const bin = `${REPO}/node_modules/.bin/${runtime}`;
  const cli = `${REPO}/src/cli.ts`;
  const proxy = withFds(
    runtime === "bun" ? [bin, cli, "run", file] : [bin, "run", "-A", cli, "run", file],
  );
  children.push(proxy);
  await line(proxy, /running /, 20_000);
  const client = withFds(["node", HELPER, "client", String(port), String(conns)]);
  children.push(client);
  await line(client, /warm/, 20_000);
  client.stdin!.write("go\n");
  const ready = await line(client, /ready \d+ \d+/, 120_000);
  const api = `http://127.0.0.1:${adminPort}/api/v1`;
  const stats: number[] = [], pages: number[] = [];
  let open = 0;
  for (let i = 0; i < 40; i++) {
    stats.push(await timed(`${api}/stats`));
    const offset = Math.floor((i / 40) * conns);
    pages.push(await timed(`${api}/connections?offset=${offset}&limit=50`));
    await new Promise((r) => setTimeout(r, 250));
  }
  const l = await (await fetch(`${api}/listeners`, {
    headers: { Authorization: `Bearer ${TOKEN}` },
  })).json();
  open = l[0].current;
  console.log(`relaykit run on ${runtime}, native engine: ${ready} (${open} open on the listener)`);
  console.log(`/api/v1/stats: ${summary(stats)}`);
  console.log(`/api/v1/connections, a page of 50 at offsets 0..${conns}: ${summary(pages)}`);
} finally {
  for (const c of children.reverse()) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
