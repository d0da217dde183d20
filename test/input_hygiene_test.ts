/**
 * What a client or a config file chooses cannot forge log lines, get odd
 * answers or blow up the config loader: control characters are escaped in
 * logs, the metrics endpoint answers only GET and HEAD and closes malformed
 * or slow requests, YAML anchors work with a bound on alias expansion, and
 * a route or hooks module that cannot load is reported with file:line:col.
 * (Malformed Basic credentials: test/socks_test.ts.)
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, test } from "./_test.ts";
import { ConfigError, formatIssue, MAX_ALIAS_NODES, parseConfig } from "../src/config/config.ts";
import { Runner } from "../src/config/run.ts";
import { escapeLogText, jsonLogLine } from "../src/log.ts";
import { socksRouter } from "../src/proxy/socks.ts";
import {
  CLI,
  connect,
  ENGINES,
  freePort,
  runtimeCommand,
  sleep,
  startCli,
  waitFor,
} from "./_helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "relaykit-hygiene-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const T = { timeout: 20_000 };

/** Send `bytes`, read until the peer closes; the whole answer as latin1 text. */
async function exchange(port: number, bytes: string | Uint8Array): Promise<string> {
  const s = await connect(port);
  const chunks: Uint8Array[] = [];
  s.on("data", (d: Uint8Array) => chunks.push(d));
  s.on("error", () => {});
  s.on("end", () => s.end());
  const done = new Promise<void>((r) => s.once("close", () => r()));
  s.write(bytes);
  await done;
  return Buffer.concat(chunks).toString("latin1");
}

/** A SOCKS5 greeting with username/password, then CONNECT to `name`:80. */
function socks5(user: string, pass: string, name: string): Uint8Array {
  const enc = (t: string) => [...new TextEncoder().encode(t)];
  const u = enc(user), p = enc(pass), n = enc(name);
  return new Uint8Array([
    5,
    1,
    2,
    1,
    u.length,
    ...u,
    p.length,
    ...p,
    5,
    1,
    0,
    3,
    n.length,
    ...n,
    0,
    80,
  ]);
}

describe("log lines escape what a client chose", () => {
  test("escapeLogText: C0, DEL, C1, line separators and bidi controls as escapes", () => {
    assert.equal(
      escapeLogText("a\nb\r\x1b[31mc\x7f\x85\u2028\u2029\u202e\u2066\td ok é"),
      "a\\x0ab\\x0d\\x1b[31mc\\x7f\\x85\\u{2028}\\u{2029}\\u{202e}\\u{2066}\\x09d ok é",
    );
  });

  test("jsonLogLine: the same value, every unsafe character a \\u escape", () => {
    const rec = { server: "x\u2028y\x85\x7f\u202e\n\x1b" };
    const line = jsonLogLine(rec);
    assert.equal(line, '{"server":"x\\u2028y\\u0085\\u007f\\u202e\\n\\u001b"}');
    assert.deepEqual(JSON.parse(line), rec);
  });

  for (const engine of ENGINES) {
    test(
      `a SOCKS5 user and name with a newline and an escape sequence (${engine} engine)`,
      T,
      async () => {
        const evil = "ev\nil\x1b[31m";
        const socks = startCli([
          "socks",
          "--listen",
          "127.0.0.1:0",
          "--engine",
          engine,
          "--allow",
          "127.0.0.1/32:80",
          "--users",
          "u:p",
        ]);
        const port = await freePort();
        const file = join(dir, `socks-${engine}.yaml`);
        writeFileSync(
          file,
          `listeners:\n  - name: s\n    address: 127.0.0.1\n    port: ${port}\n    socks:\n` +
            `      allow: [{ cidr: 127.0.0.0/8, port: 80 }]\n      users: { u: p }\n`,
        );
        const run = startCli(["run", file, "--engine", engine]);
        try {
          const sp = Number((await socks.line).match(/on 127\.0\.0\.1:(\d+)/)?.[1]);
          await run.line;
          for (const at of [sp, port]) {
            // a wrong password for an evil user name; a good one, then an evil destination name
            assert.deepEqual(
              [...Buffer.from(await exchange(at, socks5(evil, "x", "a")), "latin1")],
              [
                5,
                2,
                1,
                1,
              ],
            );
            const ok = Buffer.from(
              await exchange(at, socks5("u", "p", `a${evil}.invalid`)),
              "latin1",
            );
            assert.deepEqual([...ok.subarray(0, 4)], [5, 2, 1, 0]);
            assert.equal(ok[5], 2, "the name's refusal: not allowed by the ruleset");
          }
          // refusals are warnings: on stderr
          const out = { socks: () => socks.output.err, run: () => run.output.err };
          for (const [what, text] of Object.entries(out)) {
            await waitFor(
              () => (text().match(/refused: /g) ?? []).length >= 2,
              10_000,
              `${what}: two refusals`,
            );
            assert.match(text(), /wrong SOCKS5 user or password for "ev\\x0ail\\x1b\[31m"/, what);
            assert.match(text(), /"aev\\x0ail\\x1b\[31m\.invalid":80 is not allowed/, what);
            assert.ok(
              !text().includes("\x1b") && !text().includes("ev\nil"),
              `${what}: nothing raw`,
            );
          }
        } finally {
          socks.child.kill("SIGKILL");
          run.child.kill("SIGKILL");
        }
      },
    );
  }
  for (const engine of ENGINES) {
    test(
      `a name from a route result, in the run log and the JSON access log (${engine} engine)`,
      T,
      async () => {
        writeFileSync(
          join(dir, "echo_name.ts"),
          "export function route(data: Uint8Array) {\n" +
            "  const t = new TextDecoder().decode(data);\n" +
            '  return t.endsWith("!") ? { remote: `${t.slice(0, -1)}.invalid:1` } : undefined;\n' +
            "}\n",
        );
        const port = await freePort();
        const file = join(dir, `route-${engine}.yaml`);
        const access = join(dir, `access-${engine}.log`);
        writeFileSync(
          file,
          `listeners:\n  - { name: r, address: 127.0.0.1, port: ${port}, route: ./echo_name.ts }\n`,
        );
        const run = startCli([
          "run",
          file,
          "--engine",
          engine,
          "--log-level",
          "debug",
          "--access-log",
          access,
        ]);
        try {
          await run.line;
          await exchange(port, "a\nb\u2028c\x1b[31m\x85\u202e!");
          await waitFor(
            () => existsSync(access) && readFileSync(access, "utf8") !== "",
            10_000,
            "a record",
          );
          const line = readFileSync(access, "utf8");
          assert.equal(line.split("\n").length, 2, "one line");
          assert.ok(line.includes("a\\nb\\u2028c\\u001b[31m\\u0085\\u202e.invalid:1"), line);
          const rec = JSON.parse(line) as { error: string };
          assert.ok(
            rec.error.includes("a\nb\u2028c\x1b[31m\x85\u202e.invalid:1"),
            "the same value",
          );
          await waitFor(() => /Cannot connect/.test(run.output.err), 10_000, "the debug line");
          assert.ok(
            run.output.err.includes("a\\x0ab\\u{2028}c\\x1b[31m\\x85\\u{202e}.invalid:1"),
            run.output.err,
          );
        } finally {
          run.child.kill("SIGKILL");
        }
      },
    );
  }
});

describe("proxy users named like Object.prototype's keys", () => {
  test("--users and a config's users: __proto__ is a user, toString is not", T, async () => {
    // a good password for __proto__: the method, then auth ok, then the name refused
    const good = [5, 2, 1, 0, 5, 2];
    const config = parseConfig(
      "listeners:\n  - name: s\n    port: 1080\n    socks:\n" +
        "      allow: [{ cidr: 127.0.0.0/8, port: 80 }]\n" +
        "      users: { __proto__: pw, constructor: c }\n",
      "relaykit.yaml",
    );
    const router = config.listeners[0]!.router;
    assert.ok(router !== undefined);
    const users = router.options.users!;
    assert.deepEqual(Object.keys(users).sort(), ["__proto__", "constructor"]);
    const route = socksRouter(router.options);
    const reply = async (user: string, pass: string) => {
      const r = await route(socks5(user, pass, "x.invalid"), { id: 1 });
      assert.ok(r !== undefined && r !== null && "close" in r, JSON.stringify(r));
      return [...(r.close as Uint8Array).subarray(0, 6)];
    };
    assert.deepEqual(await reply("__proto__", "pw"), good);
    assert.deepEqual(await reply("constructor", "c"), good);
    assert.deepEqual((await reply("toString", "x")).slice(0, 4), [5, 2, 1, 1]);
    const socks = startCli([
      "socks",
      "--listen",
      "127.0.0.1:0",
      "--allow",
      "127.0.0.1/32:80",
      "--users",
      "__proto__:pw",
    ]);
    try {
      const sp = Number((await socks.line).match(/on 127\.0\.0\.1:(\d+)/)?.[1]);
      const got = Buffer.from(await exchange(sp, socks5("__proto__", "pw", "x.invalid")), "latin1");
      assert.deepEqual([...got.subarray(0, 6)], good);
    } finally {
      socks.child.kill("SIGKILL");
    }
  });
});

describe("the metrics endpoint", () => {
  test(
    "GET and HEAD /metrics only; 404, 405, and 400/408 for malformed or slow requests",
    T,
    async () => {
      const [port, metricsPort] = [await freePort(), await freePort()];
      const file = join(dir, "metrics.yaml");
      writeFileSync(
        file,
        `listeners:\n  - { name: m, address: 127.0.0.1, port: ${port}, backend: b }\n` +
          `backends:\n  - { name: b, host: 127.0.0.1, port: 9 }\n` +
          `metrics: { address: 127.0.0.1, port: ${metricsPort} }\n`,
      );
      const runner = new Runner(file, {
        engine: "stream",
        nativeEngine: undefined,
        metrics: true,
        metricsTimeout: 400,
        log: () => {},
        access: () => {},
      });
      await runner.start();
      const ask = (head: string) => exchange(metricsPort, head);
      try {
        const get = await ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert.match(get, /^HTTP\/1\.1 200 OK\r\n/);
        assert.match(get, /relaykit_listener_connections_total/);
        assert.match(await ask("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), /^HTTP\/1\.1 200 /);
        const head = await ask("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert.match(head, /^HTTP\/1\.1 200 OK\r\n[^]*Content-Length: [1-9]\d*\r\n/);
        assert.ok(head.endsWith("\r\n\r\n"), "HEAD: no body");
        for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
          const r = await ask(`${method} /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc`);
          assert.match(r, /^HTTP\/1\.1 405 Method Not Allowed\r\n/, method);
          assert.match(r, /\r\nAllow: GET, HEAD\r\n/, method);
        }
        assert.match(await ask("GET / HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 404 /);
        assert.match(await ask("GET /metricsx HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 404 /);
        for (
          const bad of ["\x16\x03\x01\x00\x05hello\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n"]
        ) {
          assert.match(await ask(bad), /^HTTP\/1\.1 400 /, JSON.stringify(bad));
        }
        const t0 = Date.now();
        assert.match(
          await ask(`GET /metrics HTTP/1.1\r\nX: ${"a".repeat(9000)}`),
          /^HTTP\/1\.1 400 /,
        );
        assert.ok(Date.now() - t0 < 300, "an oversized head is refused at once");
        const slow = await ask("GET /metrics HTTP/1.1\r\n");
        assert.match(slow, /^HTTP\/1\.1 408 /);
        assert.ok(Date.now() - t0 >= 350, "a slow request is given its time");
        // a request cut short: 400 at once
        const s = await connect(metricsPort);
        const got: Uint8Array[] = [];
        s.on("data", (d: Uint8Array) => got.push(d));
        s.end("GET /metr");
        await new Promise((r) => s.once("close", r));
        assert.match(Buffer.concat(got).toString(), /^HTTP\/1\.1 400 /);
        // still serving
        assert.match(await ask("GET /metrics HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 /);
      } finally {
        await runner.stop(0);
      }
    },
  );
});

describe("the metrics endpoint under many idle connections", () => {
  test(
    "past 64 open at once a new connection is closed at once; then it serves again",
    T,
    async () => {
      const [port, metricsPort] = [await freePort(), await freePort()];
      const file = join(dir, "metrics-idle.yaml");
      writeFileSync(
        file,
        `listeners:\n  - { name: m, address: 127.0.0.1, port: ${port}, backend: b }\n` +
          `backends:\n  - { name: b, host: 127.0.0.1, port: 9 }\n` +
          `metrics: { address: 127.0.0.1, port: ${metricsPort} }\n`,
      );
      const runner = new Runner(file, {
        engine: "stream",
        nativeEngine: undefined,
        metrics: true,
        metricsTimeout: 8000,
        log: () => {},
        access: () => {},
      });
      await runner.start();
      const idle: Awaited<ReturnType<typeof connect>>[] = [];
      try {
        let closed = 0;
        for (let i = 0; i < 72; i++) {
          const s = await connect(metricsPort);
          s.on("error", () => {});
          let gone = false;
          const count = () => {
            if (!gone) closed++;
            gone = true;
          };
          s.once("end", count); // the server's FIN, or
          s.once("close", count); // a reset
          idle.push(s);
          await sleep(5); // accepted in order
        }
        // the 8 past the bound are closed at once, the others wait for their timeout
        await waitFor(() => closed >= 8, 2000, "the connections past the bound to close");
        await sleep(200);
        assert.equal(closed, 8);
        for (const s of idle) s.destroy();
        await waitFor(() => closed === 72, 2000, "the idle connections to close");
        await sleep(200); // the server sees them go
        assert.match(
          await exchange(metricsPort, "GET /metrics HTTP/1.1\r\n\r\n"),
          /^HTTP\/1\.1 200 /,
        );
      } finally {
        for (const s of idle) s.destroy();
        await runner.stop(0);
      }
    },
  );
});

function issuesOf(text: string): string[] {
  try {
    parseConfig(text, "relaykit.yaml");
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues.map(formatIssue);
  }
  assert.fail("expected a ConfigError");
}

describe("YAML anchors and aliases", () => {
  test("anchors, aliases and merge keys work", () => {
    const c = parseConfig(
      `backends:
  - &app { name: app, host: 127.0.0.1, port: 9000, connect_timeout: &ct 700 }
  - { <<: *app, name: app2 }
listeners:
  - &web
    name: web
    address: 127.0.0.1
    port: &port 8080
    backend: app
    idle_timeout: 5000
    connect_timeout: *ct
  - <<: [*web]
    name: web2
    address: 127.0.0.2
    port: *port
    connect_timeout: 1
`,
      "relaykit.yaml",
    );
    assert.deepEqual(
      c.listeners.map((l) => [l.name, l.listen, l.backend, l.idleTimeout, l.connectTimeout]),
      [
        ["web", { host: "127.0.0.1", port: 8080 }, "app", 5000, 700],
        ["web2", { host: "127.0.0.2", port: 8080 }, "app", 5000, 1],
      ],
    );
    assert.deepEqual(
      c.backends.map((b) => [b.name, b.servers[0]!.address, b.connectTimeout]),
      [
        ["app", { host: "127.0.0.1", port: 9000 }, 700],
        ["app2", { host: "127.0.0.1", port: 9000 }, 700],
      ],
    );
  });

  test("an alias bomb is refused at the alias where it passes the bound, at once", () => {
    const rows = ["a", "b", "c", "d", "e", "f", "g", "h", "i"].map((k, i, all) =>
      i === 0
        ? `  - &a [${Array(9).fill('"lol"').join(",")}]`
        : `  - &${k} [${Array(9).fill(`*${all[i - 1]}`).join(",")}]`
    );
    const t0 = Date.now();
    const issues = issuesOf(`listeners:\n${rows.join("\n")}\n`);
    assert.ok(Date.now() - t0 < 2000, `refused in ${Date.now() - t0} ms`);
    // 1 + 9 nodes each for *a; 1 + 9 * 10 for *b; ... past the bound within row e
    assert.deepEqual(issues, [
      `relaykit.yaml:6:9: listeners[4][0]: aliases stand for more than ${MAX_ALIAS_NODES} nodes by alias *d; refused as a resource exhaustion attack`,
    ]);
  });

  test("an alias without an anchor, or inside its own anchor, is reported where it is", () => {
    assert.deepEqual(issuesOf("listeners:\n  - { name: x, port: 1, backend: *b }\n"), [
      "relaykit.yaml:2:34: listeners[0].backend: alias *b has no anchor &b before it",
    ]);
    assert.deepEqual(issuesOf("listeners: &l\n  - *l\n"), [
      "relaykit.yaml:2:5: listeners[0]: alias *l is inside its own anchor",
    ]);
    assert.deepEqual(issuesOf("listeners:\n  - { <<: 3, name: x }\n"), [
      "relaykit.yaml:2:11: listeners[0].<<: a merge key (<<) takes a mapping or a list of mappings",
    ]);
  });
});

describe("route and hooks modules that cannot load", () => {
  function runCli(args: string[]) {
    const [cmd, ...rest] = runtimeCommand(CLI, args);
    return spawnSync(cmd!, rest, { env: process.env, encoding: "utf8", timeout: 20_000 });
  }

  test("exit 2 with file:line:col of the key and the reason", T, () => {
    writeFileSync(join(dir, "noexport.ts"), "export const x = 1;\n");
    writeFileSync(join(dir, "throws.ts"), 'throw new Error("boom at import");\n');
    const cases: [string, string, RegExp][] = [
      ["hooks", "./nope.ts", /:8:12: listeners\[0\]\.hooks: cannot load .*nope\.ts: /],
      ["hooks", "./noexport.ts", /:8:12: listeners\[0\]\.hooks: .*noexport\.ts exports no hook/],
      ["route", "./nope.ts", /:7:12: listeners\[0\]\.route: cannot load .*nope\.ts: /],
      ["route", "./noexport.ts", /:7:12: listeners\[0\]\.route: .*noexport\.ts exports no route/],
      [
        "route",
        "./throws.ts",
        /:7:12: listeners\[0\]\.route: cannot load .*throws\.ts: .*boom at import/,
      ],
    ];
    for (const [key, module, expected] of cases) {
      const file = join(dir, `module-${key}.yaml`);
      writeFileSync(
        file,
        `backends:\n  - { name: b, host: 127.0.0.1, port: 9 }\nlisteners:\n  - name: l\n` +
          `    address: 127.0.0.1\n    port: 0\n` +
          (key === "hooks" ? `    backend: b\n    hooks: ${module}\n` : `    route: ${module}\n`),
      );
      for (const extra of [[], ["--workers", "2"]]) {
        const r = runCli(["run", file, ...extra]);
        assert.equal(r.status, 2, `${key} ${module} ${extra}: ${r.stderr}`);
        assert.match(r.stderr, /is invalid:\n/);
        assert.match(r.stderr, expected, `${key} ${module} ${extra}`);
        assert.ok(r.stderr.includes(`${file}:`), r.stderr);
      }
    }
  });
});
