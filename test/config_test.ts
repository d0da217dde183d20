/**
 * `relaykit run CONFIG`: validation with file, line and column; porxy's
 * config unchanged; SIGHUP reload under load that drops nothing; an invalid
 * reload that changes nothing; SIGQUIT drain; the access log.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, test } from "./_test.ts";
import { ConfigError, formatIssue, parseConfig } from "../src/config/config.ts";
import { Runner } from "../src/config/run.ts";
import {
  closed,
  connect,
  echoServer,
  ENGINES,
  expectedHash,
  freePort,
  receiveAll,
  sendRandom,
  server,
  startCli,
  stopChild,
  waitFor,
} from "./_helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "relaykit-config-"));
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

/** A server that greets with its name, then echoes. */
/** Once `run` says it runs (its signal handlers are in). */
function running(cli: { output: { out: string } }): Promise<void> {
  return waitFor(() => /running .* \(\d+ listeners?\)/.test(cli.output.out), 10_000, "running");
}

/** Once something accepts on `port`. */
async function listening(port: number): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      (await connect(port)).destroy();
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function greeter(name: string) {
  return server((s: net.Socket) => {
    s.write(`${name}\n`);
    s.on("data", (d: Uint8Array) => s.write(d));
    s.on("end", () => s.end());
  });
}

async function greeting(port: number): Promise<{ name: string; s: net.Socket }> {
  const s = await connect(port);
  const name = await new Promise<string>((r) => s.once("data", (d) => r(String(d).trim())));
  return { name, s };
}

describe("config validation", () => {
  test("every mistake, with file, line, column and key", () => {
    assert.deepEqual(
      issuesOf(`listeners:
  - name: moo
    backend: foo
    adress: 0.0.0.0
    port: 8000
  - name: roo
    backend: nope
    port: "7000"
  - name: zoo
    backend: foo
    port: 8000
backends:
  - name: foo
    host: localhost
    port: 1234
    balance: fastest
`),
      [
        `relaykit.yaml:4:5: listeners[0].adress: unknown key (did you mean "address"?); known: name, address, port, path, backend, route, accept_proxy, tls, max_connections, idle_timeout, connect_timeout, hooks, socks, http_connect, routes`,
        `relaykit.yaml:7:14: listeners[1].backend: no backend named "nope" (backends: "foo")`,
        `relaykit.yaml:8:11: listeners[1].port: expected an integer from 0 to 65535, not "7000"`,
        `relaykit.yaml:11:11: listeners[2].port: "0.0.0.0:8000" is also listener "moo"'s address`,
        `relaykit.yaml:16:14: backends[0].balance: expected one of roundrobin, leastconn, random, source-hash, not "fastest"`,
      ],
    );
  });

  test("syntax errors, missing keys, bad ranges, JSON", () => {
    assert.match(issuesOf("listeners: [\n")[0]!, /^relaykit\.yaml:2:1: /);
    assert.deepEqual(
      issuesOf("listeners:\n  - port: 1\n    backend: b\nbackends:\n  - name: b\n"),
      [
        "relaykit.yaml:2:5: listeners[0].name: is required",
        "relaykit.yaml:5:5: backends[0]: needs host and port, or servers",
      ],
    );
    assert.deepEqual(
      issuesOf(
        '{"listeners": [{"name": "a", "port": 1, "backend": "b", "accept_proxy": {"mode": "v1", "trusted": ["10.0.0.0/40"]}}], "backends": [{"name": "b", "servers": []}]}',
      ),
      [
        `relaykit.yaml:1:100: listeners[0].accept_proxy.trusted[0]: "10.0.0.0/40": the prefix length must be 0 to 32`,
        "relaykit.yaml:1:157: backends[0].servers: needs at least one server",
      ],
    );
  });

  test("porxy's config parses as it is", () => {
    const c = parseConfig(
      `---
listeners:
  - name: moo
    backend: foo
    address: 0.0.0.0
    port: 8000
  - name: roo
    backend: bar
    address: 0.0.0.0
    port: 7000

backends:
  - name: foo
    host: localhost
    port: 1234
  - name: bar
    host: localhost
    port: 5555
`,
      "config.yaml",
    );
    assert.deepEqual(c.listeners.map((l) => [l.name, l.listen, l.backend]), [
      ["moo", { host: "0.0.0.0", port: 8000 }, "foo"],
      ["roo", { host: "0.0.0.0", port: 7000 }, "bar"],
    ]);
    assert.deepEqual(c.backends.map((b) => [b.name, b.servers[0]!.address, b.balance]), [
      ["foo", { host: "localhost", port: 1234 }, "roundrobin"],
      ["bar", { host: "localhost", port: 5555 }, "roundrobin"],
    ]);
  });
});

test("health checks take a dead server out and bring it back; metrics show it", async () => {
  const live = await greeter("live");
  const deadPort = await freePort();
  const [port, metricsPort] = [await freePort(), await freePort()];
  const file = join(dir, "health.yaml");
  writeFileSync(
    file,
    `listeners:
  - { name: front, address: 127.0.0.1, port: ${port}, backend: b }
backends:
  - name: b
    servers:
      - { host: 127.0.0.1, port: ${deadPort}, name: flaky }
      - { host: 127.0.0.1, port: ${live.port}, name: live }
    health_check: { interval: 50, timeout: 300, rise: 1, fall: 1 }
metrics: { address: 127.0.0.1, port: ${metricsPort} }
`,
  );
  const cli = startCli(["run", file]);
  let revived: Awaited<ReturnType<typeof greeter>> | undefined;
  try {
    await running(cli);
    await waitFor(
      () => /server "flaky" is down \(ECONNREFUSED\)/.test(cli.output.err),
      10_000,
      "down",
    );
    for (let i = 0; i < 4; i++) {
      const g = await greeting(port);
      assert.equal(g.name, "live");
      g.s.destroy();
    }
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /relaykit_server_up\{backend="b",server="flaky"\} 0/);
    assert.match(metrics, /relaykit_server_up\{backend="b",server="live"\} 1/);
    assert.match(metrics, /relaykit_server_connections_total\{backend="b",server="live"\} 4/);
    // no connect was tried against the dead server: balancing skipped it
    assert.match(metrics, /relaykit_server_connect_failures_total\{backend="b",server="flaky"\} 0/);
    // the server comes back on its port: up again
    revived = await server((s: net.Socket) => s.end("flaky\n"), deadPort);
    await waitFor(() => /server "flaky" is up/.test(cli.output.err), 10_000, "up");
  } finally {
    cli.child.kill("SIGKILL");
    await live.close();
    await revived?.close();
  }
});

test("a hooks module; --log-level error and --log-file", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = join(dir, "hooks.yaml");
  const logFile = join(dir, "relaykit.log");
  writeFileSync(
    join(dir, "upper.ts"),
    "export const aToB = (c: Uint8Array) => new TextEncoder().encode(new TextDecoder().decode(c).toUpperCase());\n",
  );
  writeFileSync(
    file,
    `listeners:\n  - { name: h, address: 127.0.0.1, port: ${port}, backend: b, hooks: ./upper.ts }\n` +
      `backends:\n  - { name: b, host: 127.0.0.1, port: ${backend.port} }\n`,
  );
  const cli = startCli(["run", file, "--log-level", "error", "--log-file", logFile]);
  try {
    cli.line.catch(() => {}); // every line goes to the log file
    await listening(port);
    const g = await greeting(port);
    g.s.write("shout");
    assert.equal(await new Promise<string>((r) => g.s.once("data", (d) => r(String(d)))), "SHOUT");
    g.s.destroy();
    writeFileSync(file, "listeners: 3\n");
    process.kill(cli.child.pid!, "SIGHUP");
    await waitFor(
      () => /still running the previous/.test(readFileSync(logFile, "utf8")),
      10_000,
      "the error in the log file",
    );
    const logged = readFileSync(logFile, "utf8");
    assert.match(logged, /^\d{4}-\d\d-\d\dT[\d:.]+Z error relaykit: reload: /m);
    assert.doesNotMatch(logged, / info /, "info lines are below --log-level error");
    assert.equal(cli.output.err, "", "nothing on stderr with --log-file");
  } finally {
    cli.child.kill("SIGKILL");
    await backend.close();
  }
});

test("SIGTERM: connections still open after --grace are reset; listener metrics", async () => {
  const backend = await greeter("b");
  const [port, metricsPort] = [await freePort(), await freePort()];
  const file = join(dir, "grace.yaml");
  writeFileSync(
    file,
    `listeners:\n  - { name: g, address: 127.0.0.1, port: ${port}, backend: b }\n` +
      `backends:\n  - { name: b, host: 127.0.0.1, port: ${backend.port} }\n` +
      `metrics: { address: 127.0.0.1, port: ${metricsPort} }\n`,
  );
  const cli = startCli(["run", file, "--grace", "300"]);
  try {
    await running(cli);
    const done = await greeting(port);
    done.s.end("12345");
    await closed(done.s);
    const open = await greeting(port);
    await waitFor(() => backend.sockets.size === 1, 5000, "one open connection");
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /relaykit_listener_connections_active\{listener="g"\} 1/);
    assert.match(metrics, /relaykit_listener_connections_total\{listener="g"\} 1/);
    assert.match(metrics, /relaykit_listener_bytes_total\{listener="g",direction="up"\} 5/);
    const t0 = Date.now();
    open.s.on("error", () => {});
    const cut = new Promise((r) => open.s.once("close", r));
    process.kill(cli.child.pid!, "SIGTERM");
    await cut;
    const waited = Date.now() - t0;
    assert.ok(waited >= 250, `cut after the grace period, not at once (${waited} ms)`);
    await new Promise((r) => cli.child.once("close", r));
  } finally {
    cli.child.kill("SIGKILL");
    await backend.close();
  }
});

test("--workers: processes share the port, a dead one is replaced, TTIN/TTOU add and remove", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = join(dir, "workers.yaml");
  const pidFile = join(dir, "relaykit.pid");
  writeFileSync(
    file,
    `listeners:\n  - { name: w, address: 127.0.0.1, port: ${port}, backend: b }\n` +
      `backends:\n  - { name: b, host: 127.0.0.1, port: ${backend.port} }\n`,
  );
  const cli = startCli(["run", file, "--workers", "2", "--pid", pidFile]);
  const pidOf = (i: number) => {
    const all = [
      ...cli.output.out.matchAll(new RegExp(`worker ${i} started \\(pid (\\d+)\\)`, "g")),
    ];
    return Number(all.at(-1)?.[1]);
  };
  try {
    await waitFor(() => /supervising 2 workers/.test(cli.output.out), 10_000, "supervising");
    assert.equal(Number(readFileSync(pidFile, "utf8")), cli.child.pid);
    await waitFor(() => /relaykit\[1\]: listening/.test(cli.output.out), 10_000, "two workers");
    for (let i = 0; i < 6; i++) {
      const g = await greeting(port);
      assert.equal(g.name, "b");
      g.s.destroy();
    }
    const first = pidOf(1);
    process.kill(first, "SIGKILL");
    await waitFor(
      () => /worker 1 died \(SIGKILL\); starting another/.test(cli.output.err),
      10_000,
      "died",
    );
    await waitFor(
      () => pidOf(1) !== first && /relaykit\[1\]: listening/.test(cli.output.out),
      10_000,
      "replaced",
    );
    process.kill(cli.child.pid!, "SIGTTIN");
    await waitFor(() => /relaykit\[2\]: listening/.test(cli.output.out), 10_000, "a third");
    process.kill(cli.child.pid!, "SIGTTOU");
    await waitFor(() => /worker 2 ended/.test(cli.output.out), 10_000, "the third retired");
    const g = await greeting(port);
    assert.equal(g.name, "b");
    g.s.destroy();
    process.kill(cli.child.pid!, "SIGTERM");
    await new Promise((r) => cli.child.once("close", r));
    assert.match(cli.output.out, /worker 0 ended/);
    assert.match(cli.output.out, /worker 1 ended/);
  } finally {
    // every worker this run started, not only the supervisor: a worker
    // outlives a SIGKILLed supervisor by up to half a second
    for (const m of cli.output.out.matchAll(/worker \d+ started \(pid (\d+)\)/g)) {
      try {
        process.kill(Number(m[1]), "SIGKILL");
      } catch { /* already gone */ }
    }
    cli.child.kill("SIGKILL");
    await backend.close();
  }
});

test("--workers: a worker stops by itself once its supervisor is killed", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = join(dir, "orphans.yaml");
  writeFileSync(
    file,
    `listeners:\n  - { name: w, address: 127.0.0.1, port: ${port}, backend: b }\n` +
      `backends:\n  - { name: b, host: 127.0.0.1, port: ${backend.port} }\n`,
  );
  const cli = startCli(["run", file, "--workers", "2"]);
  const pids = () =>
    [...cli.output.out.matchAll(/worker \d+ started \(pid (\d+)\)/g)].map((m) => Number(m[1]));
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    await waitFor(() => /relaykit\[1\]: listening/.test(cli.output.out), 10_000, "two workers");
    assert.equal(pids().length, 2);
    cli.child.kill("SIGKILL");
    await waitFor(() => pids().every((p) => !alive(p)), 5_000, "workers gone");
    // written by a worker before it exits, read from the pipe after
    await waitFor(
      () => /the supervisor \(pid \d+\) is gone: stopping/.test(cli.output.err),
      5_000,
      "the workers' line",
    );
  } finally {
    for (const p of pids()) {
      try {
        process.kill(p, "SIGKILL");
      } catch { /* already gone */ }
    }
    cli.child.kill("SIGKILL");
    await backend.close();
  }
});

for (const engine of ENGINES) {
  describe(`relaykit run (${engine} engine)`, () => {
    test("a reload that removes a listener answers once that port refuses", async () => {
      const echo = await echoServer();
      const [keep, drop] = [await freePort(), await freePort()];
      const file = join(dir, `removed-${engine}.yaml`);
      const listener = (name: string, port: number) =>
        `  - { name: ${name}, address: 127.0.0.1, port: ${port}, ` +
        `routes: [{ default: true, to: { host: 127.0.0.1, port: ${echo.port} } }] }\n`;
      writeFileSync(file, "listeners:\n" + listener("keep", keep) + listener("drop", drop));
      const runner = new Runner(file, {
        engine,
        nativeEngine: undefined,
        metrics: false,
        log: () => {},
      });
      await runner.start();
      try {
        // (the closing is asynchronous on both engines: a few rounds make a
        // reload that answers early fail here)
        for (let round = 0; round < 10; round++) {
          (await connect(drop)).destroy();
          writeFileSync(file, "listeners:\n" + listener("keep", keep));
          assert.equal(await runner.reload(), true, runner.lastReload?.message ?? "");
          await assert.rejects(connect(drop), `round ${round}: the removed listener still accepts`);
          (await connect(keep)).destroy();
          writeFileSync(file, "listeners:\n" + listener("keep", keep) + listener("drop", drop));
          assert.equal(await runner.reload(), true, runner.lastReload?.message ?? "");
        }
      } finally {
        await runner.stop(1_000);
        await echo.close();
      }
    });

    test("porxy's config runs unchanged, and a mistake is one message and exit code 2", async () => {
      const foo = await greeter("foo"), bar = await greeter("bar");
      const [p1, p2] = [await freePort(), await freePort()];
      const file = join(dir, `porxy-${engine}.yaml`);
      writeFileSync(
        file,
        `---
listeners:
  - name: moo
    backend: foo
    address: 127.0.0.1
    port: ${p1}
  - name: roo
    backend: bar
    address: 127.0.0.1
    port: ${p2}

backends:
  - name: foo
    host: localhost
    port: ${foo.port}
  - name: bar
    host: localhost
    port: ${bar.port}
`,
      );
      const cli = startCli(["run", file, "--engine", engine]);
      try {
        await running(cli);
        assert.match(cli.output.out, /running .* \(2 listeners\)/);
        for (const [port, name] of [[p1, "foo"], [p2, "bar"]] as const) {
          const g = await greeting(port);
          assert.equal(g.name, name);
          g.s.destroy();
        }
      } finally {
        const exit = await stopChild(cli.child);
        assert.match(cli.output.out, /SIGTERM: stopping/);
        // Deno's child_process reports a child that handled SIGTERM and then
        // exited with 0 as killed by SIGTERM (see cli_test)
        const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";
        assert.ok(exit === 0 || (isDeno && exit === "SIGTERM"), `exit ${exit}`);
        await foo.close();
        await bar.close();
      }
      const bad = join(dir, "bad.yaml");
      writeFileSync(bad, "listeners:\n  - name: x\n    port: 1\n    backend: none\n");
      const r = startCli(["run", bad]);
      await assert.rejects(
        r.line,
        /exited with 2: .*bad\.yaml:4:14: listeners\[0\]\.backend: no backend/s,
      );
    });

    test("SIGHUP reload under load drops nothing; an invalid file changes nothing; SIGQUIT drains", async () => {
      const one = await greeter("one"), two = await greeter("two");
      const port = await freePort();
      const file = join(dir, `reload-${engine}.yaml`);
      const log = join(dir, `access-${engine}.log`);
      const write = (backend: string) =>
        writeFileSync(
          file,
          `listeners:
  - { name: front, address: 127.0.0.1, port: ${port}, backend: ${backend} }
backends:
  - { name: one, host: 127.0.0.1, port: ${one.port} }
  - { name: two, servers: [{ host: 127.0.0.1, port: ${two.port}, name: second }] }
`,
        );
      write("one");
      const cli = startCli(["run", file, "--engine", engine, "--access-log", log]);
      try {
        await running(cli);
        // 20 connections open and moving bytes across the reload
        const early = await Promise.all(Array.from({ length: 20 }, () => greeting(port)));
        assert.ok(early.every((g) => g.name === "one"));
        const transfers = early.map(async (g, i) => {
          const got = receiveAll(g.s);
          const sent = await sendRandom(g.s, 256 * 1024, 100 + i);
          return { got: await got, sent };
        });
        write("two");
        process.kill(cli.child.pid!, "SIGHUP");
        await waitFor(() => /reload: .* applied/.test(cli.output.out), 10_000, "the reload");
        const late = await greeting(port);
        assert.equal(late.name, "two");
        for (const t of await Promise.all(transfers)) {
          // after the greeting line (read before), every byte sent comes back
          assert.equal(t.got.bytes, 256 * 1024);
          assert.equal(t.got.sha256, t.sent, "every byte back, in order");
        }
        assert.equal((await transfers[0]!).sent, expectedHash(256 * 1024, 100));
        // an invalid file: an error, and new connections still go to "two"
        writeFileSync(file, "listeners:\n  - name: front\n    prot: 1\n");
        process.kill(cli.child.pid!, "SIGHUP");
        await waitFor(
          () => /still running the previous config/.test(cli.output.err),
          10_000,
          "the error",
        );
        assert.match(
          cli.output.err,
          /3:5: listeners\[0\]\.prot: unknown key \(did you mean "port"\?\)/,
        );
        const still = await greeting(port);
        assert.equal(still.name, "two");
        still.s.destroy();
        // SIGQUIT: no new connections; the open one goes on until it ends
        process.kill(cli.child.pid!, "SIGQUIT");
        await waitFor(() => /SIGQUIT: stopping/.test(cli.output.out), 10_000, "the stop");
        late.s.write("still talking");
        const echoed = await new Promise<string>((r) => late.s.once("data", (d) => r(String(d))));
        assert.equal(echoed, "still talking");
        assert.equal(cli.child.exitCode, null, "waits for the last connection");
        late.s.end();
        await closed(late.s);
        const code = await new Promise((r) => cli.child.once("close", r));
        assert.equal(code, 0);
        const records = readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l));
        const second = records.find((r) => r.server === "second" && r.bytes_up > 0);
        assert.ok(second, "a record of a connection to the new backend");
        assert.equal(second.listener, "front");
        assert.match(second.client, /^127\.0\.0\.1:\d+$/);
        assert.equal(records.filter((r) => r.server === `127.0.0.1:${one.port}`).length, 20);
      } finally {
        cli.child.kill("SIGKILL");
        await one.close();
        await two.close();
      }
    });
  });
}
