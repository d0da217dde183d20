#!/usr/bin/env node
// Smoke test of the npm package as a user gets it: pack npm/, install the
// tarball into a fresh temporary project, then under Node and under Bun run
// a forward with an integrity check, the relaykit command's --help, and
// `relaykit forward` itself. Bun runs with no C compiler on PATH and an
// empty cache directory: it must get the native engine from the package's
// prebuilt library. Then TypeScript route and hooks modules: on this Node
// (older than 22.6) the command says which Node is needed or to use .mjs;
// on Nodes 22 fetched from npm (one that strips types only behind
// --experimental-strip-types, one that strips by default) `relaykit route
// r.ts` and `relaykit run` with a config's `route:` and `hooks:` .ts modules
// relay bytes to an echo server. Run scripts/build_npm.ts first.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import net from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { npmRuntime } from "./_npm_runtime.mjs";

/**
 * The Nodes 22 the TypeScript checks run on: the last that needs
 * --experimental-strip-types (the relaykit command turns it on by running
 * itself again) and one that strips types by default.
 */
const NODES_22 = ["22.17.1", "22.23.5"];

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bun = join(root, "node_modules", ".bin", "bun");
const dir = mkdtempSync(join(tmpdir(), "relaykit-smoke-"));
let failures = 0, passes = 0;

function check(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
  if (ok) passes++;
  else failures++;
}

const SMOKE = `
import net from "node:net";
import { createHash } from "node:crypto";
import { TcpProxy } from "relaykit";

const backend = net.createServer((s) => s.pipe(s));
await new Promise((r) => backend.listen(0, "127.0.0.1", r));
const proxy = await TcpProxy.listen({
  listen: { host: "127.0.0.1", port: 0 },
  target: { host: "127.0.0.1", port: backend.address().port },
});
const data = new Uint8Array(4 * 1024 * 1024);
for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
const sent = createHash("sha256").update(data).digest("hex");
const got = await new Promise((resolve, reject) => {
  const h = createHash("sha256");
  let n = 0;
  const c = net.connect(proxy.port, "127.0.0.1", () => c.end(data));
  c.on("data", (d) => { h.update(d); n += d.length; });
  c.on("end", () => resolve({ n, sha: h.digest("hex") }));
  c.on("error", reject);
});
await proxy.close();
backend.close();
console.log(JSON.stringify({
  engine: proxy.engine,
  reason: proxy.engineReason,
  bytes: got.n,
  ok: got.sha === sent,
}));
`;

try {
  const tarball = execFileSync("npm", ["pack", "--silent", "--pack-destination", dir], {
    cwd: join(root, "npm"),
    encoding: "utf8",
  }).trim().split("\n").pop();
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: "smoke", private: true, type: "module" }),
  );
  execFileSync("npm", ["install", "--no-audit", "--no-fund", join(dir, tarball)], {
    cwd: dir,
    stdio: ["ignore", "ignore", "inherit"],
  });
  writeFileSync(join(dir, "smoke.mjs"), SMOKE);
  const cli = join(dir, "node_modules", ".bin", "relaykit");

  // PATH with node alone (for the relaykit command's shebang): no cc, gcc
  // or clang; and an empty cache, so nothing can come from an earlier build.
  const bin = join(dir, "bin");
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, "node"));
  const cache = join(dir, "cache");
  mkdirSync(cache);
  const bare = { PATH: bin, HOME: dir, RELAYKIT_CACHE: cache, XDG_CACHE_HOME: join(dir, "xdg") };
  for (
    const [name, cmd, engine] of [["node", process.execPath, "stream"], ["bun", bun, "native"]]
  ) {
    let r;
    try {
      r = JSON.parse(
        execFileSync(cmd, ["smoke.mjs"], {
          cwd: dir,
          encoding: "utf8",
          timeout: 60_000,
          env: bare,
        }),
      );
    } catch (err) {
      check(`${name}: forward 4 MiB through the installed package`, false, String(err));
      continue;
    }
    check(
      `${name}: forward 4 MiB through the installed package`,
      r.ok && r.bytes === 4 * 1024 * 1024 && r.engine === engine,
      JSON.stringify(r),
    );
    if (name === "bun") {
      check(
        "bun: the native engine from the prebuilt library, no compiler, nothing built",
        r.engine === "native" && readdirSync(cache).length === 0,
        `engine ${r.engine}${r.reason ? ` (${r.reason})` : ""}, cache: ${
          readdirSync(cache).join(" ")
        }`,
      );
    }
    const help = execFileSync(cmd, [cli, "--help"], { encoding: "utf8", timeout: 30_000 });
    check(`${name}: relaykit --help`, /relaykit forward --listen HOST:PORT/.test(help));
  }

  // `relaykit forward --engine stream` on Node
  const backend = (await import("node:net")).createServer((s) => s.pipe(s));
  await new Promise((r) => backend.listen(0, "127.0.0.1", r));
  const child = spawn(process.execPath, [
    cli,
    "forward",
    "--listen",
    "127.0.0.1:0",
    "--to",
    `127.0.0.1:${backend.address().port}`,
    "--engine",
    "stream",
  ]);
  const line = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (out.includes("\n")) resolve(out.split("\n")[0]);
    });
    child.once("exit", (code) => reject(new Error(`relaykit forward exited with ${code}`)));
  });
  const port = Number(/127\.0\.0\.1:(\d+) ->/.exec(line)?.[1]);
  const echoed = await new Promise((resolve) => {
    const net = import("node:net");
    net.then(({ connect }) => {
      const c = connect(port, "127.0.0.1", () => c.end("hello from node"));
      let got = "";
      c.on("data", (d) => got += d);
      c.on("end", () => resolve(got));
      c.on("error", () => resolve(""));
    });
  });
  check(
    "node: relaykit forward --engine stream",
    /stream engine on node/.test(line) && echoed === "hello from node",
    line,
  );
  child.kill("SIGTERM");
  backend.close();
  await typeScriptModules(cli);
  await workers(cli);
} catch (err) {
  check("npm package smoke test", false, String(err));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
/** The output of `child` until it ends (or `ms` pass: then it is killed). */
function ended(child, ms) {
  return new Promise((resolve) => {
    let out = "";
    child.stdout.on("data", (d) => out += d);
    child.stderr.on("data", (d) => out += d);
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

/** Send `text` to 127.0.0.1:`port` and read as many bytes back (5 s at most). */
function roundTrip(port, text) {
  return new Promise((resolve) => {
    const c = net.connect(port, "127.0.0.1", () => c.write(text));
    let got = "";
    const timer = setTimeout(() => c.destroy(), 5_000);
    c.on("data", (d) => {
      got += d;
      if (got.length >= text.length) c.end();
    });
    c.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
    c.on("error", () => {});
  });
}

/** Whether 127.0.0.1:`port` accepts connections within `ms`. */
async function accepting(port, ms) {
  for (const end = Date.now() + ms; Date.now() < end;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** A port free on 127.0.0.1 now. */
async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Run the relaykit command on `node` with `args` until it listens on a
 * port (`port`, or the one of its first line), send `text` through it, stop
 * it with SIGTERM; returns what came back and how it ended.
 */
async function relayThrough(node, cli, args, env, port, text) {
  const child = spawn(node, [cli, ...args], { cwd: dir, env });
  const done = ended(child, 40_000);
  if (port === undefined) {
    const line = await new Promise((resolve) => {
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        if (out.includes("\n")) resolve(out.split("\n")[0]);
      });
      child.once("close", () => resolve(out));
    });
    port = Number(/127\.0\.0\.1:(\d+) with/.exec(line)?.[1]);
  }
  const got = port > 0 && await accepting(port, 20_000) ? await roundTrip(port, text) : "";
  child.kill("SIGTERM");
  const { code, signal, out } = await done;
  return { got, code, signal, out };
}

/** `.ts` route and hooks modules: refused with a hint on this Node, loaded on Node 22. */
async function typeScriptModules(cli) {
  writeFileSync(
    join(dir, "r.ts"),
    `import type { RouteFunction } from "relaykit";
const target: string = \`127.0.0.1:\${process.env.ECHO_PORT}\`;
export const route: RouteFunction = (_data: Uint8Array) => ({ remote: target });
`,
  );
  writeFileSync(
    join(dir, "upper.ts"),
    `export const aToB = (c: Uint8Array): Uint8Array =>
  new TextEncoder().encode(new TextDecoder().decode(c).toUpperCase());
`,
  );
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise((r) => echo.listen(0, "127.0.0.1", r));
  const configPort = await freePort();
  writeFileSync(
    join(dir, "ts.yaml"),
    `listeners:\n  - { name: t, address: 127.0.0.1, port: ${configPort}, ` +
      `route: ./r.ts, hooks: ./upper.ts }\n`,
  );
  const env = { PATH: process.env.PATH, HOME: dir, ECHO_PORT: String(echo.address().port) };
  try {
    // this Node: older than 22.6 (as the machine running the test must be)
    const old = process.versions.node;
    const hint = new RegExp(
      `cannot load (\\S*/)?r\\.ts: Node ${old.replaceAll(".", "\\.")} cannot load TypeScript ` +
        `modules: use Node 22\\.6 or later .*write the module as \\.mjs`,
    );
    for (const args of [["route", "r.ts", "--listen", "127.0.0.1:0"], ["run", "ts.yaml"]]) {
      const r = spawnSync(process.execPath, [cli, ...args], {
        cwd: dir,
        env,
        encoding: "utf8",
        timeout: 30_000,
      });
      check(
        `node ${old}: relaykit ${args[0]} with a .ts module says which Node or .mjs`,
        r.status === 2 && hint.test(r.stderr),
        `exit ${r.status}: ${(r.stderr ?? "").trim()}`,
      );
    }
    for (const version of NODES_22) {
      const name = `node-${process.platform}-${process.arch}`;
      let node;
      try {
        node = npmRuntime(name, version, "bin/node");
      } catch (err) {
        check(`node ${version}: fetch ${name}@${version} from npm`, false, String(err));
        continue;
      }
      const cases = [
        ["route r.ts", ["route", "r.ts", "--listen", "127.0.0.1:0"], undefined, "hello"],
        ["run with route: r.ts, hooks: upper.ts", ["run", "ts.yaml"], configPort, "HELLO"],
      ];
      for (const [what, args, port, expected] of cases) {
        const r = await relayThrough(node, cli, args, env, port, "hello");
        check(
          `node ${version}: relaykit ${what} relays to an echo server and stops on SIGTERM`,
          r.got === expected && r.code === 0,
          `got ${JSON.stringify(r.got)}, exit ${r.code ?? r.signal}` +
            (r.got === expected && r.code === 0 ? "" : `: ${r.out.trim()}`),
        );
      }
    }
  } finally {
    echo.close();
  }
}

/**
 * `relaykit run --workers 2` from the package: refused with the reason on
 * this Node (no SO_REUSEPORT before 22.12); on Node 22 the workers run the
 * package's bin and share the port.
 */
async function workers(cli) {
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise((r) => echo.listen(0, "127.0.0.1", r));
  const port = await freePort();
  writeFileSync(
    join(dir, "w.yaml"),
    `listeners:\n  - { name: w, address: 127.0.0.1, port: ${port}, backend: e }\n` +
      `backends:\n  - { name: e, host: 127.0.0.1, port: ${echo.address().port} }\n`,
  );
  const env = { PATH: process.env.PATH, HOME: dir };
  const args = ["run", "w.yaml", "--workers", "2"];
  try {
    const old = spawnSync(process.execPath, [cli, ...args], {
      cwd: dir,
      env,
      encoding: "utf8",
      timeout: 30_000,
    });
    check(
      `node ${process.versions.node}: relaykit run --workers 2 says Node 22.12 is needed`,
      old.status === 2 && /--workers: .*SO_REUSEPORT.*22\.12/.test(old.stderr),
      `exit ${old.status}: ${(old.stderr ?? "").trim()}`,
    );
    const version = NODES_22.at(-1);
    let node;
    try {
      node = npmRuntime(`node-${process.platform}-${process.arch}`, version, "bin/node");
    } catch (err) {
      check(`node ${version}: fetch node@${version} from npm`, false, String(err));
      return;
    }
    const r = await relayThrough(node, cli, args, env, port, "hello");
    check(
      `node ${version}: relaykit run --workers 2 relays through a worker and stops on SIGTERM`,
      r.got === "hello" && r.code === 0,
      `got ${JSON.stringify(r.got)}, exit ${r.code ?? r.signal}: ${r.out.trim()}`,
    );
  } finally {
    echo.close();
  }
}

console.log(`npm smoke: ${passes} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
