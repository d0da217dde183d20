#!/usr/bin/env node
// Smoke test of the npm package as a user gets it: pack npm/, install the
// tarball into a fresh temporary project, then under Node and under Bun run
// a forward with an integrity check, the relaykit command's --help, and
// `relaykit forward` itself. Bun runs with no C compiler on PATH and an
// empty cache directory: it must get the native engine from the package's
// prebuilt library. Run scripts/build_npm.ts first.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

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
} catch (err) {
  check("npm package smoke test", false, String(err));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`npm smoke: ${passes} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
