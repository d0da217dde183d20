// deno-lint-ignore-file no-explicit-any -- JSON answers of the API under test
/**
 * The admin endpoint of `relaykit run`: every read route, the token rules
 * (401 for a wrong one, logged; reads open only with read_open; no action
 * over GET), and the actions end to end on both engines: drain stops new
 * connections while an open one finishes, maint pauses health checks,
 * ready, weight, close a connection, reload, disable and enable a listener.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import process from "node:process";
import { join } from "node:path";
import { after, describe, test } from "./_test.ts";
import { ConfigError, formatIssue, parseConfig } from "../src/config/config.ts";
import { execFile } from "node:child_process";
import {
  CLI,
  connect,
  ENGINES,
  freePort,
  runtimeCommand,
  startCli,
  stopChild,
  waitFor,
} from "./_helpers.ts";
import { echo, greeter, greeting, startRun, TOKEN } from "./_admin.ts";
import { Backend, BALANCE_MODES, type Server } from "../src/proxy/balance.ts";

const dir = mkdtempSync(join(tmpdir(), "relaykit-admintest-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function issuesOf(text: string): string[] {
  try {
    parseConfig(text, "relaykit.yaml");
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues.map(formatIssue);
  }
  assert.fail("expected a ConfigError");
}

describe("admin config", () => {
  test("the admin section: loopback by default, a token required unless read_open", () => {
    const base = "listeners:\n  - { name: l, port: 1, backend: b }\n" +
      "backends:\n  - { name: b, host: 127.0.0.1, port: 2 }\n";
    const c = parseConfig(base + "admin: { port: 9901, token: x }\n", "r.yaml");
    assert.deepEqual(c.admin, {
      listen: { host: "127.0.0.1", port: 9901 },
      token: { value: "x" },
      readOpen: false,
    });
    const open = parseConfig(base + "admin: { path: /tmp/a.sock, read_open: true }\n", "r.yaml");
    assert.deepEqual(open.admin, {
      listen: { path: "/tmp/a.sock" },
      token: undefined,
      readOpen: true,
    });
    assert.deepEqual(issuesOf(base + "admin: { port: 9901 }\n"), [
      "relaykit.yaml:5:8: admin: needs token or token_file (or read_open: true for a read-only endpoint)",
    ]);
    assert.deepEqual(issuesOf(base + "admin: { port: 9901, token: a, token_file: b, tokn: c }\n"), [
      "relaykit.yaml:5:8: admin: give either token or token_file, not both",
      `relaykit.yaml:5:47: admin.tokn: unknown key (did you mean "token"?); known: address, port, path, token, token_file, read_open`,
    ]);
  });
});

describe("admin API routes", () => {
  test("every read route, tokens, 401 logged, 405 for an action over GET, shared /metrics", async () => {
    const [a, b] = [await greeter("a"), await greeter("b")];
    writeFileSync(join(dir, "tokens"), `# operators\nops:${TOKEN}\nviewer:v1ew\n`);
    const run = await startRun(
      dir,
      "routes",
      (port, adminPort) =>
        `listeners:
  - { name: web, address: 127.0.0.1, port: ${port}, backend: app, max_connections: 3 }
backends:
  - name: app
    servers:
      - { host: 127.0.0.1, port: ${a.port}, name: a }
      - { host: 127.0.0.1, port: ${b.port}, name: b }
admin: { port: ${adminPort}, token_file: ./tokens }
metrics: { address: 127.0.0.1, port: ${adminPort} }
`,
      [],
      { accessLog: false },
    ); // the counters without per-connection reports
    const open: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) open.push((await greeting(run.port)).s);
      await echo(open[0]!, "hello");
      // one over max_connections: refused, counted by reason
      const over = await connect(run.port);
      over.on("error", () => {});
      await new Promise((r) => {
        over.once("end", r);
        over.once("close", r);
      });
      over.destroy();
      const proc = await run.get("/api/v1/process");
      assert.equal(proc.status, 200);
      assert.equal(proc.body.workers, 1);
      assert.ok(proc.body.fds > 0 && proc.body.rss_bytes > 0 && proc.body.pid > 0);
      assert.match(proc.body.version, /^\d+\.\d+\.\d+/);
      const ls = (await run.get("/api/v1/listeners")).body;
      assert.equal(ls.length, 1);
      assert.equal(ls[0].name, "web");
      assert.equal(ls[0].address, `127.0.0.1:${run.port}`);
      assert.equal(ls[0].state, "enabled");
      assert.equal(ls[0].current, 3);
      assert.equal(ls[0].opened, 3);
      assert.equal(ls[0].bytes_in, 5, "bytes of open connections count");
      assert.deepEqual([ls[0].limit, ls[0].errors], [3, { RK_ELIMIT: 1 }]);
      const bs = (await run.get("/api/v1/backends")).body;
      assert.deepEqual(bs.map((x: any) => [x.name, x.current, x.servers.length]), [["app", 3, 2]]);
      const servers = (await run.get("/api/v1/servers")).body;
      assert.deepEqual(
        servers.map((s: any) => [s.backend, s.name, s.state, s.weight]),
        [["app", "a", "up", 1], ["app", "b", "up", 1]],
      );
      assert.equal(servers[0].current + servers[1].current, 3);
      const conns = (await run.get("/api/v1/connections")).body;
      assert.equal(conns.total, 3);
      const c0 = conns.connections[0];
      assert.equal(c0.listener, "web");
      assert.match(c0.client, /^127\.0\.0\.1:\d+$/);
      assert.match(c0.server, /^app\/[ab]$/);
      assert.equal(c0.route, "app");
      assert.ok(c0.age_ms >= 0 && c0.engine.length > 0);
      const page = (await run.get("/api/v1/connections?offset=1&limit=1")).body;
      assert.equal(page.total, 3);
      assert.equal(page.connections.length, 1);
      assert.equal(page.connections[0].id, conns.connections[1].id);
      const toA = (await run.get("/api/v1/connections?server=app/a")).body;
      assert.ok(toA.connections.every((c: any) => c.server === "app/a"));
      assert.equal((await run.get("/api/v1/connections?listener=nope")).body.total, 0);
      // a page far past the end: empty, with the count (nothing sized by the offset)
      const far = await run.get("/api/v1/connections?offset=999999999&limit=50");
      assert.equal(far.status, 200);
      assert.deepEqual([far.body.total, far.body.connections.length], [3, 0]);
      const stats = (await run.get("/api/v1/stats")).body;
      assert.deepEqual(Object.keys(stats).sort(), ["backends", "listeners", "process", "time"]);
      // tokens
      assert.equal((await run.get("/api/v1/listeners", null)).status, 401);
      assert.equal((await run.get("/api/v1/listeners", "wrong")).status, 401);
      assert.equal((await run.get("/api/v1/listeners", "v1ew")).status, 200);
      await waitFor(
        () => /admin: 401 .* wrong token/.test(run.cli.output.out + run.cli.output.err),
        5000,
        "the log",
      );
      assert.equal((await run.post("/api/v1/reload", undefined, "wrong")).status, 401);
      // no action over GET; unknown routes
      const viaGet = await run.get("/api/v1/servers/app/a/state?state=drain");
      assert.equal(viaGet.status, 405);
      assert.equal((await run.get("/api/v1/servers")).body[0].state, "up", "GET changed nothing");
      assert.equal((await run.get("/api/v1/nope")).status, 404);
      assert.equal(
        (await run.post("/api/v1/servers/app/zz/state", { state: "drain" })).status,
        404,
      );
      assert.equal((await run.post("/api/v1/servers/app/a/state", { state: "off" })).status, 400);
      assert.equal((await run.post("/api/v1/servers/app/a/weight", { weight: 999 })).status, 400);
      // the page and the metrics share the listener
      const html = await fetch(`http://127.0.0.1:${run.adminPort}/`);
      assert.equal(html.status, 200);
      assert.match(await html.text(), /<title>relaykit/);
      const metrics = await (await fetch(`http://127.0.0.1:${run.adminPort}/metrics`)).text();
      assert.match(metrics, /relaykit_listener_connections_active\{listener="web"\} 3/);
      // an ended connection's bytes stay counted
      open.shift()!.end();
      let l0: any;
      for (const t0 = Date.now(); Date.now() - t0 < 5_000;) {
        l0 = (await run.get("/api/v1/listeners")).body[0];
        if (l0.total === 1) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(
        [l0.total, l0.current, l0.opened, l0.bytes_in],
        [1, 2, 3, 5],
        "after one end",
      );
      assert.ok(l0.bytes_out >= 2 + 5, `bytes_out ${l0.bytes_out}: a greeting and the echo`);
      assert.equal((await run.get("/api/v1/connections")).body.total, 2);
    } finally {
      for (const s of open) s.destroy();
      run.cli.child.kill("SIGKILL");
      await a.close();
      await b.close();
    }
  });

  test("a health check's verdict is in the log and the access log; the API shows it", async () => {
    const a = await greeter("a");
    const deadPort = await freePort();
    const run = await startRun(dir, "health", (port, adminPort) =>
      `listeners:
  - { name: web, address: 127.0.0.1, port: ${port}, backend: app }
backends:
  - name: app
    servers:
      - { host: 127.0.0.1, port: ${a.port}, name: a }
      - { host: 127.0.0.1, port: ${deadPort}, name: dead }
    health_check: { interval: 50, timeout: 300, rise: 1, fall: 1 }
admin: { port: ${adminPort}, token: ${TOKEN} }
`);
    try {
      await waitFor(
        () => /"event":"health"/.test(readFileSync(run.accessLog, "utf8")),
        10_000,
        "the health event",
      );
      const ev = JSON.parse(
        readFileSync(run.accessLog, "utf8").split("\n").find((l) => l.includes('"health"'))!,
      );
      assert.deepEqual([ev.action, ev.target, ev.reason], ["down", "app/dead", "ECONNREFUSED"]);
      // the log line comes through a pipe: maybe after the access log's write
      await waitFor(
        () =>
          /server "dead" is down \(ECONNREFUSED\)/.test(run.cli.output.out + run.cli.output.err),
        5_000,
        "the log line",
      );
      const dead = (await run.get("/api/v1/servers")).body[1];
      assert.deepEqual([dead.state, dead.up, dead.health.ok, dead.health.reason], [
        "down",
        false,
        false,
        "ECONNREFUSED",
      ]);
    } finally {
      run.cli.child.kill("SIGKILL");
      await a.close();
    }
  });

  test("read_open: reads without a token, actions still refused", async () => {
    const a = await greeter("a");
    const run = await startRun(dir, "open", (port, adminPort) =>
      `listeners:
  - { name: web, address: 127.0.0.1, port: ${port}, backend: app }
backends:
  - { name: app, host: 127.0.0.1, port: ${a.port} }
admin: { port: ${adminPort}, token: ${TOKEN}, read_open: true }
`);
    try {
      assert.equal((await run.get("/api/v1/listeners", null)).status, 200);
      assert.equal((await run.post("/api/v1/reload", undefined, null)).status, 401);
      assert.equal((await run.post("/api/v1/reload")).status, 200);
    } finally {
      run.cli.child.kill("SIGKILL");
      await a.close();
    }
  });
});

for (const engine of ENGINES) {
  describe(`admin actions (${engine} engine)`, () => {
    test("drain, maint, ready and weight; close a connection; all in the access log", async () => {
      const [a, b] = [await greeter("a"), await greeter("b")];
      const run = await startRun(dir, `actions-${engine}`, (port, adminPort) =>
        `listeners:
  - { name: web, address: 127.0.0.1, port: ${port}, backend: app }
backends:
  - name: app
    servers:
      - { host: 127.0.0.1, port: ${a.port}, name: a }
      - { host: 127.0.0.1, port: ${b.port}, name: b }
    health_check: { interval: 50, timeout: 500, rise: 1, fall: 1 }
admin: { port: ${adminPort}, token: ${TOKEN} }
`, ["--engine", engine]);
      const held: net.Socket[] = [];
      try {
        // one connection to a stays open through the drain
        let onA: net.Socket | undefined;
        for (let i = 0; i < 2; i++) {
          const g = await greeting(run.port);
          held.push(g.s);
          if (g.name === "a") onA = g.s;
        }
        assert.ok(onA !== undefined, "roundrobin sent one to a");
        const drain = await run.post("/api/v1/servers/app/a/state", { state: "drain" });
        assert.deepEqual(drain.body, { ok: true, message: 'server "app/a": state drain' });
        for (let i = 0; i < 4; i++) {
          const g = await greeting(run.port);
          assert.equal(g.name, "b", "a draining takes no new connection");
          g.s.destroy();
        }
        assert.equal(await echo(onA, "still"), "still", "the open one goes on");
        let a1 = (await run.get("/api/v1/servers")).body[0];
        assert.deepEqual([a1.name, a1.state, a1.admin, a1.current], ["a", "drain", "drain", 1]);
        onA.end();
        await waitFor(() => a.sockets.size === 0, 5000, "a's connection to finish");
        // maint: health checks of a stop
        const checkedBefore = (await run.get("/api/v1/servers")).body[0].health;
        assert.equal(checkedBefore.ok, true);
        assert.equal(
          (await run.post("/api/v1/servers/app/a/state", { state: "maint" })).status,
          200,
        );
        await new Promise((r) => setTimeout(r, 150)); // a check in flight may finish
        const frozen = (await run.get("/api/v1/servers")).body[0].health.at;
        await new Promise((r) => setTimeout(r, 400)); // eight intervals
        a1 = (await run.get("/api/v1/servers")).body[0];
        assert.equal(a1.state, "maint");
        assert.equal(a1.health.at, frozen, "no health check ran in maint");
        assert.equal((await greeting(run.port)).name, "b");
        // ready: a takes connections again, and is checked again
        assert.equal((await run.post("/api/v1/servers/app/a/state?state=ready")).status, 200);
        const names = new Set<string>();
        for (let i = 0; i < 4; i++) {
          const g = await greeting(run.port);
          names.add(g.name);
          g.s.destroy();
        }
        assert.deepEqual([...names].sort(), ["a", "b"]);
        // weight 0 on b: everything to a
        assert.equal((await run.post("/api/v1/servers/app/b/weight", { weight: 0 })).status, 200);
        for (let i = 0; i < 3; i++) {
          const g = await greeting(run.port);
          assert.equal(g.name, "a");
          g.s.destroy();
        }
        assert.equal((await run.get("/api/v1/servers")).body[1].weight, 0);
        // close a connection
        const victim = await greeting(run.port);
        const gone = new Promise((r) => victim.s.once("close", r));
        const list = (await run.get(`/api/v1/connections?server=app/a`)).body.connections;
        const mine = list.find((c: any) =>
          c.client === `${victim.s.localAddress}:${victim.s.localPort}`
        );
        assert.ok(mine !== undefined, "the connection is listed");
        const closed = await run.post(`/api/v1/connections/${mine.id}/close`);
        assert.equal(closed.status, 200);
        await gone;
        assert.equal((await run.post(`/api/v1/connections/${mine.id}/close`)).status, 404);
        // who did what
        await waitFor(
          () => /"action":"close-connection"/.test(readFileSync(run.accessLog, "utf8")),
          5000,
          "the access log",
        );
        const events = readFileSync(run.accessLog, "utf8").split("\n").filter((l) =>
          l.includes('"event":"admin"')
        ).map((l) => JSON.parse(l));
        assert.deepEqual(events.map((e) => [e.action, e.target, e.value, e.by]), [
          ["server-state", "app/a", "drain", "admin"],
          ["server-state", "app/a", "maint", "admin"],
          ["server-state", "app/a", "ready", "admin"],
          ["server-weight", "app/b", 0, "admin"],
          ["close-connection", `web#${mine.id}`, undefined, "admin"],
        ]);
        await waitFor(
          () =>
            /admin: server "app\/a": state drain \(by "admin" from 127\.0\.0\.1:\d+\)/.test(
              run.cli.output.out + run.cli.output.err,
            ),
          5_000,
          "the log line",
        );
      } finally {
        for (const s of held) s.destroy();
        run.cli.child.kill("SIGKILL");
        await a.close();
        await b.close();
      }
    });

    test("reload with its result; disable and enable a listener", async () => {
      const a = await greeter("a");
      const body = (port: number, adminPort: number, name: string) =>
        `listeners:
  - { name: ${name}, address: 127.0.0.1, port: ${port}, backend: app }
backends:
  - { name: app, host: 127.0.0.1, port: ${a.port} }
admin: { port: ${adminPort}, token: ${TOKEN} }
`;
      const run = await startRun(dir, `reload-${engine}`, (p, ap) => body(p, ap, "web"), [
        "--engine",
        engine,
      ]);
      try {
        const open = await greeting(run.port);
        assert.equal((await run.post("/api/v1/listeners/web/disable")).status, 200);
        await assert.rejects(connect(run.port), "a disabled listener refuses");
        assert.equal(await echo(open.s, "on"), "on", "its open connection goes on");
        assert.equal((await run.get("/api/v1/listeners")).body[0].state, "disabled");
        assert.equal((await run.post("/api/v1/listeners/web/enable")).status, 200);
        const again = await greeting(run.port);
        assert.equal(again.name, "a");
        again.s.destroy();
        open.s.destroy();
        assert.equal((await run.post("/api/v1/listeners/nope/enable")).status, 404);
        // reload: applied, then refused with the reason
        writeFileSync(run.file, body(run.port, run.adminPort, "web2"));
        const ok = await run.post("/api/v1/reload");
        assert.equal(ok.status, 200);
        assert.equal(ok.body.ok, true);
        assert.match(ok.body.message, /applied \(1 listeners\)/);
        assert.deepEqual((await run.get("/api/v1/listeners")).body.map((l: any) => l.name), [
          "web2",
        ]);
        writeFileSync(run.file, "listeners: 3\n");
        const bad = await run.post("/api/v1/reload");
        assert.equal(bad.body.ok, false);
        assert.match(bad.body.message, /listeners/);
        assert.equal((await run.get("/api/v1/process")).body.last_reload.ok, false);
      } finally {
        await stopChild(run.cli.child);
        await a.close();
      }
    });
  });
}

/** Run `relaykit ctl` on this runtime. */
function ctl(args: string[], env: Record<string, string> = {}) {
  const [cmd, ...rest] = runtimeCommand(CLI, ["ctl", ...args]);
  return new Promise<{ code: number; out: string; err: string }>((resolve) => {
    execFile(cmd!, rest, { env: { ...process.env, ...env }, timeout: 15_000 }, (e, out, err) => {
      resolve({ code: e === null ? 0 : (e as { code?: number }).code ?? -1, out, err });
    });
  });
}

describe("relaykit ctl", () => {
  test("its options are the schema's: usage mistakes exit 2 before any request", async () => {
    const cases: [string[], RegExp][] = [
      [
        ["--admin", ":1", "--lmit", "3", "conns"],
        /unknown option "--lmit" \(did you mean --limit\?\)/,
      ],
      [["--admin", ":1", "servers", "--limit", "3"], /ctl servers takes no --limit/],
      [["--admin", ":1", "weight", "app/a"], /usage: relaykit ctl weight BACKEND\/SERVER N/],
      [["--admin", ":1", "stats"], /ctl: unknown command "stats"/],
      [["servers"], /--admin is required/],
    ];
    for (const [args, message] of cases) {
      const r = await ctl(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assert.match(r.err, message);
    }
    const help = await ctl(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.out, /^ {2}weight BACKEND\/SERVER N +set a server's weight/m);
    assert.match(help.out, /^ {2}--limit N +conns: at most N/m);
  });

  test(
    "tables for people, --json for scripts, actions, exit codes",
    { timeout: 60_000 },
    async () => {
      const [a, b] = [await greeter("a"), await greeter("b")];
      const run = await startRun(dir, "ctl", (port, adminPort) =>
        `listeners:
  - { name: web, address: 127.0.0.1, port: ${port}, backend: app }
backends:
  - name: app
    servers:
      - { host: 127.0.0.1, port: ${a.port}, name: a }
      - { host: 127.0.0.1, port: ${b.port}, name: b }
admin: { port: ${adminPort}, token: ${TOKEN} }
`);
      const held = await greeting(run.port);
      try {
        const at = ["--admin", `127.0.0.1:${run.adminPort}`];
        const env = { RELAYKIT_ADMIN_TOKEN: TOKEN };
        const servers = await ctl([...at, "servers"], env);
        assert.equal(servers.code, 0, servers.err);
        const lines = servers.out.trimEnd().split("\n");
        assert.match(lines[0]!, /^SERVER\s+ADDRESS\s+STATE\s+HEALTH\s+WEIGHT\s+CUR\s+TOTAL/);
        assert.match(
          lines[1]!,
          new RegExp(`^app/a\\s+127\\.0\\.0\\.1:${a.port}\\s+up\\s+-\\s+1\\s+1\\s+1`),
        );
        assert.match(lines[2]!, /^app\/b\s+\S+\s+up\s+-\s+1\s+0\s+0/);
        const drain = await ctl([...at, "--token", TOKEN, "drain", "app/a"]);
        assert.deepEqual([drain.code, drain.out], [0, 'ok: server "app/a": state drain\n']);
        const json = await ctl([...at, "--json", "servers"], env);
        const parsed = JSON.parse(json.out);
        assert.deepEqual(parsed.map((s: any) => [s.name, s.state]), [["a", "drain"], ["b", "up"]]);
        const conns = await ctl([...at, "conns", "--listener", "web"], env);
        assert.match(
          conns.out,
          /^ID\s+LISTENER\s+CLIENT\s+ORIGINAL\s+SERVER\s+AGE\s+IN\s+OUT\s+STATE\n/,
        );
        assert.match(
          conns.out,
          new RegExp(`web\\s+127\\.0\\.0\\.1:${held.s.localPort}\\s+-\\s+app/a`),
        );
        assert.match(conns.out, /\(1-1 of 1\)\n$/);
        const jconns = JSON.parse((await ctl([...at, "--json", "conns"], env)).out);
        assert.equal(jconns.total, 1);
        const weight = await ctl([...at, "weight", "app/b", "5"], env);
        assert.equal(weight.out, 'ok: server "app/b": weight 5\n');
        const gone = new Promise((r) => held.s.once("close", r));
        const close = await ctl([...at, "close", String(jconns.connections[0].id)], env);
        assert.equal(close.code, 0, close.err);
        await gone;
        const missing = await ctl([...at, "close", "999999"], env);
        assert.equal(missing.code, 1);
        assert.match(missing.err, /no open connection #999999 \(HTTP 404\)/);
        const wrong = await ctl([...at, "--token", "nope", "servers"]);
        assert.equal(wrong.code, 1);
        assert.match(wrong.err, /wrong token \(HTTP 401\)/);
        const usage = await ctl([...at, "drain", "no-slash"], env);
        assert.equal(usage.code, 2);
        assert.match(usage.err, /"no-slash" is not BACKEND\/SERVER/);
        const reload = await ctl([...at, "reload"], env);
        assert.match(reload.out, /^ok: .*applied \(1 listeners\)\n$/);
      } finally {
        held.s.destroy();
        run.cli.child.kill("SIGKILL");
        await a.close();
        await b.close();
      }
    },
  );
});

for (const engine of ENGINES) {
  describe(`admin with --workers 2 (${engine} engine)`, () => {
    test("reads cover every worker, actions reach every worker", { timeout: 60_000 }, async () => {
      const [a, b] = [await greeter("a"), await greeter("b")];
      const run = await startRun(
        dir,
        `workers-${engine}`,
        (port, adminPort) =>
          `listeners:
  - { name: web, address: 127.0.0.1, port: ${port}, backend: app }
backends:
  - name: app
    servers:
      - { host: 127.0.0.1, port: ${a.port}, name: a }
      - { host: 127.0.0.1, port: ${b.port}, name: b }
admin: { port: ${adminPort}, token: ${TOKEN} }
`,
        ["--workers", "2", "--engine", engine],
        { accessLog: false },
      );
      const held: net.Socket[] = [];
      try {
        await waitFor(
          () => (run.cli.output.out.match(/\]: running /g) ?? []).length === 2,
          15_000,
          "2 workers",
        );
        const proc = (await run.get("/api/v1/process")).body;
        assert.equal(proc.workers, 2);
        assert.deepEqual(proc.per_worker.map((w: any) => w.worker), [0, 1]);
        assert.ok(proc.per_worker.every((w: any) => w.pid > 0 && w.error === undefined));
        for (let i = 0; i < 16; i++) held.push((await greeting(run.port)).s);
        const ls = (await run.get("/api/v1/listeners")).body;
        assert.deepEqual([ls.length, ls[0].current, ls[0].opened], [1, 16, 16]);
        const all = (await run.get("/api/v1/connections?limit=100")).body;
        assert.equal(all.total, 16);
        assert.deepEqual(
          [...new Set(all.connections.map((c: any) => c.worker))].sort(),
          [0, 1],
          "the kernel spread the connections over both workers",
        );
        // a page across the workers' boundary is the same slice of the whole list
        const page = (await run.get("/api/v1/connections?offset=5&limit=7")).body;
        const key = (c: any) => `${c.worker}.${c.id}`;
        assert.deepEqual(page.connections.map(key), all.connections.slice(5, 12).map(key));
        const servers = (await run.get("/api/v1/servers")).body;
        assert.equal(servers[0].current + servers[1].current, 16);
        // actions reach both
        const drain = (await run.post("/api/v1/servers/app/a/state", { state: "drain" })).body;
        assert.equal(drain.ok, true);
        assert.deepEqual(drain.per_worker.map((w: any) => [w.worker, w.ok]), [[0, true], [
          1,
          true,
        ]]);
        for (let i = 0; i < 8; i++) {
          const g = await greeting(run.port);
          assert.equal(g.name, "b", "no worker sends a new connection to a");
          g.s.destroy();
        }
        assert.equal((await run.get("/api/v1/servers")).body[0].state, "drain");
        // closing needs the worker (ids are per worker)
        const victim = all.connections[0];
        assert.equal((await run.post(`/api/v1/connections/${victim.id}/close`)).status, 400);
        const closed = await run.post(
          `/api/v1/connections/${victim.id}/close?worker=${victim.worker}`,
        );
        assert.equal(closed.status, 200);
        await waitFor(
          () => held.some((s) => s.destroyed || s.readableEnded),
          5000,
          "the connection to close",
        );
        const reload = (await run.post("/api/v1/reload")).body;
        assert.equal(reload.ok, true);
        assert.equal(reload.per_worker.length, 2);
        assert.equal(
          (await run.get("/api/v1/servers")).body[0].state,
          "drain",
          "kept across reload",
        );
        // each worker's line comes through its pipe and the supervisor's
        for (const w of [0, 1]) {
          const line = new RegExp(
            `relaykit\\[${w}\\]: admin: server "app/a": state drain \\(by "admin"`,
          );
          await waitFor(
            () => line.test(run.cli.output.out + run.cli.output.err),
            5_000,
            `worker ${w}'s line`,
          );
        }
      } finally {
        for (const s of held) s.destroy();
        await stopChild(run.cli.child);
        await a.close();
        await b.close();
      }
    });
  });
}

describe("--admin on a one-proxy command", () => {
  test("relaykit forward --admin: its listener, connections and close; no reload", async () => {
    const a = await greeter("a");
    const [port, adminPort] = [await freePort(), await freePort()];
    const cli = startCli([
      "forward",
      "--listen",
      `127.0.0.1:${port}`,
      "--to",
      `127.0.0.1:${a.port}`,
      "--admin",
      `127.0.0.1:${adminPort}`,
    ], { RELAYKIT_ADMIN_TOKEN: TOKEN });
    try {
      await waitFor(() => /forwarding /.test(cli.output.out), 10_000, "the proxy");
      const g = await greeting(port);
      await echo(g.s, "abc");
      const get = async (path: string, method = "GET", token = TOKEN) => {
        const r = await fetch(`http://127.0.0.1:${adminPort}/api/v1/${path}`, {
          method,
          headers: { Authorization: `Bearer ${token}` },
        });
        return { status: r.status, body: await r.json() as any };
      };
      const ls = (await get("listeners")).body;
      assert.deepEqual(
        [ls[0].name, ls[0].route, ls[0].current, ls[0].bytes_in],
        ["forward", `127.0.0.1:${a.port}`, 1, 3],
      );
      assert.deepEqual((await get("backends")).body, []);
      const conns = (await get("connections")).body;
      assert.equal(conns.total, 1);
      assert.equal(conns.connections[0].client, `127.0.0.1:${g.s.localPort}`);
      const gone = new Promise((r) => g.s.once("close", r));
      assert.equal((await get(`connections/${conns.connections[0].id}/close`, "POST")).status, 200);
      await gone;
      const reload = await get("reload", "POST");
      assert.deepEqual([reload.status, reload.body.ok], [200, false]);
      assert.match(reload.body.message, /relaykit forward has no config file/);
      assert.equal((await get("listeners/forward/disable", "POST")).status, 400);
      assert.equal((await get("listeners", "GET", "wrong")).status, 401);
      await waitFor(
        () => /admin: 401 .*wrong token/.test(cli.output.out + cli.output.err),
        5000,
        "the log",
      );
    } finally {
      cli.child.kill("SIGKILL");
      await a.close();
    }
  });
});

describe("server states in balancing", () => {
  test("drain, maint and weight 0 take a server out of every mode; setWeight re-weighs", () => {
    const servers = ["a", "b", "c"].map((name, i) => ({
      name,
      address: { host: "127.0.0.1", port: 1000 + i },
    }));
    for (const balance of BALANCE_MODES) {
      const backend = new Backend({ name: "x", balance, servers });
      const [a, b, c] = backend.servers as [Server, Server, Server];
      a.admin = "drain";
      b.admin = "maint";
      for (let i = 0; i < 20; i++) {
        assert.equal(backend.pick(`10.0.0.${i}:1`)?.name, "c", `${balance}: only c is ready`);
      }
      assert.equal(backend.hasOther(new Set([c])), false);
      assert.deepEqual([a.state, b.state, c.state], ["drain", "maint", "up"]);
      backend.setWeight(c, 0);
      assert.equal(backend.pick("10.0.0.1:1"), undefined, `${balance}: none left`);
      a.admin = "ready";
      assert.equal(backend.pick("10.0.0.1:1")?.name, "a");
    }
    const rr = new Backend({ name: "rr", servers: servers.slice(0, 2) });
    rr.setWeight(rr.servers[0]!, 3);
    const picks = Array.from({ length: 8 }, () => rr.pick(undefined)!.name);
    assert.deepEqual(picks.filter((n) => n === "a").length, 6, picks.join(""));
    assert.throws(() => rr.setWeight(rr.servers[0]!, 257), RangeError);
  });
});
