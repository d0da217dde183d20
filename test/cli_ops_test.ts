/**
 * The relaykit command as an operator meets it: per-command help derived
 * from the option schema, suggestions for mistakes, `relaykit check`, the
 * one logger (levels, timestamps, json, log files and their reopening,
 * rate-limited warnings), and errors that name the flag or the file.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, test } from "./_test.ts";
import { COMMANDS } from "../src/cli/main.ts";
import { formatLine, Logger } from "../src/cli/log.ts";
import { helpText, suggest } from "../src/cli/options.ts";
import { ConfigError, parseConfig } from "../src/config/config.ts";
import { nodeTypeScriptHint } from "../src/proxy/route_module.ts";
import { stripTypesNodeOptions } from "../src/cli/node_bin.ts";
import {
  CLI,
  connect,
  freePort,
  runtimeCommand,
  startCli,
  stopChild,
  waitFor,
} from "./_helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "relaykit-ops-"));
after(() => {
  spawnSync("rm", ["-rf", dir]);
});

function run(args: string[], env: Record<string, string> = {}) {
  const [cmd, ...rest] = runtimeCommand(CLI, args);
  return spawnSync(cmd!, rest, {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 20_000,
  });
}

/** A line of the text log format: ISO time, level, name. */
const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) relaykit(\[\d+\])?: /;

function listenOn(port: number): Promise<Server> {
  const s = createServer();
  return new Promise((r) => s.listen(port, "127.0.0.1", () => r(s)));
}

describe("help and suggestions", () => {
  test("relaykit alone prints its usage on stderr and exits with 2", () => {
    const r = run([]);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /a command is needed .*forward.*demo/);
  });

  const names = COMMANDS.flatMap((c) => c.subcommands?.map((s) => s.name) ?? [c.name]);
  test("every command and subcommand has its own --help, the same as relaykit help COMMAND", () => {
    assert.ok(names.includes("tunnel server") && names.includes("demo"), names.join());
    for (const name of ["forward", "run", "tunnel server", "echo", "socks"]) {
      const a = run([...name.split(" "), "--help"]);
      const b = run(["help", ...name.split(" ")]);
      assert.equal(a.status, 0, a.stderr);
      assert.equal(b.status, 0, b.stderr);
      assert.ok(a.stdout.startsWith(`Usage: relaykit ${name} `), a.stdout);
      assert.equal(a.stdout, b.stdout);
    }
    const t = run(["tunnel", "--help"]);
    assert.match(t.stdout, /relaykit tunnel server .*\n.*\n {2}relaykit tunnel client/);
  });

  test("each help page lists every option its command declares, with its config key", () => {
    for (const c of COMMANDS.flatMap((c) => c.subcommands ?? [c])) {
      const page = helpText(c);
      for (const o of c.options) {
        assert.match(page, new RegExp(`\\n  ${o.flag}\\b`), `${c.name} ${o.flag}`);
        const flat = page.replace(/\s+/g, " ");
        if (o.config !== undefined) assert.ok(flat.includes(`[config: ${o.config}]`), o.flag);
      }
    }
  });

  for (
    const [args, message] of [
      [
        ["forward", "--listen", ":0", "--to", ":1", "--thread", "2"],
        /unknown option "--thread" \(did you mean --threads\?\)/,
      ],
      [["run", "x.yaml", "--log-levl", "debug"], /did you mean --log-level\?/],
      [["foward"], /unknown command "foward" \(did you mean forward\?\)/],
      [["tunnel", "sever"], /unknown command "tunnel sever" \(did you mean tunnel server\?\)/],
      [
        ["forward", "--listen", "18017", "--to", ":1"],
        /--listen: "18017" has no host: write ":18017" \(every interface\) or "127\.0\.0\.1:18017"/,
      ],
      [["forward", "--listen", ":0", "--to", "80"], /--to: "80" has no host/],
      [["run"], /run needs CONFIG/],
      [["forward", "--listen", ":0", "--listen", ":1"], /--listen is given twice/],
    ] as const
  ) {
    test(`${args.join(" ")}: one line that says what to write, exit code 2`, () => {
      const r = run([...args]);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    });
  }

  test("suggest: prefixes and small typos, nothing for far-off words", () => {
    assert.equal(suggest("--thread", ["--threads", "--to"]), "--threads");
    assert.equal(suggest("--lsten", ["--listen", "--to"]), "--listen");
    assert.equal(suggest("--zzz", ["--listen", "--to"]), undefined);
  });

  test("relaykit demo runs the demo", async () => {
    const d = startCli(["demo"]);
    try {
      assert.match(await d.line, /^relaykit [\d.]+ demo on /);
    } finally {
      d.child.kill("SIGKILL");
    }
  });
});

describe("one validator per setting", () => {
  test("--accept-proxy and the config file's accept_proxy refuse a value with the same words", () => {
    const r = run(["forward", "--listen", ":0", "--to", ":1", "--accept-proxy", "v3"]);
    const cliWords = /--accept-proxy: (.*)$/m.exec(r.stderr)?.[1];
    let configWords: string | undefined;
    try {
      parseConfig(
        "listeners:\n  - { name: a, port: 1, backend: b, accept_proxy: v3 }\nbackends:\n  - { name: b, host: h, port: 1 }\n",
        "c.yaml",
      );
    } catch (err) {
      configWords = /accept_proxy: (.*)$/m.exec((err as ConfigError).message)?.[1];
    }
    assert.equal(cliWords, 'expected one of detect, v1, v2, not "v3"');
    assert.equal(configWords, cliWords);
  });

  test("a metrics port equal to a listener's is a config error, with its position", () => {
    assert.throws(
      () =>
        parseConfig(
          "listeners:\n  - { name: a, address: 127.0.0.1, port: 9100, backend: b }\n" +
            "backends:\n  - { name: b, host: h, port: 1 }\nmetrics: { port: 9100 }\n",
          "m.yaml",
        ),
      /m\.yaml:5:18: metrics\.port: port 9100 is also listener "a"'s \(127\.0\.0\.1:9100\)/,
    );
  });
});

describe("relaykit check", () => {
  test("a good config: exit 0", async () => {
    const port = await freePort();
    const file = join(dir, "good.yaml");
    writeFileSync(
      file,
      `listeners:\n  - { name: a, address: 127.0.0.1, port: ${port}, backend: b }\n` +
        `backends:\n  - { name: b, host: 127.0.0.1, port: 1 }\n`,
    );
    for (const args of [["check", file], ["run", file, "--check"]]) {
      const r = run(args);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /good\.yaml is valid/);
    }
  });

  test("every problem, each with file:line:col: a port in use, a broken module, a missing file", async () => {
    const held = await listenOn(0);
    const taken = (held.address() as { port: number }).port;
    const free = await freePort();
    writeFileSync(join(dir, "broken.ts"), "export const nothing = 1;\n");
    const file = join(dir, "problems.yaml");
    writeFileSync(
      file,
      `listeners:
  - name: a
    address: 127.0.0.1
    port: ${taken}
    backend: b
  - name: r
    address: 127.0.0.1
    port: ${free}
    route: ./broken.ts
    tls: { cert: ./nope.pem, key: ./nope.key }
backends:
  - { name: b, host: 127.0.0.1, port: 1 }
`,
    );
    try {
      for (const args of [["check", file], ["run", file, "--check"]]) {
        const r = run(args);
        assert.equal(r.status, 2, r.stderr);
        const lines = r.stderr.trim().split("\n");
        assert.match(
          lines[0]!,
          new RegExp(
            `problems\\.yaml:4:11: listeners\\[0\\]\\.port: 127\\.0\\.0\\.1:${taken} is in use`,
          ),
        );
        assert.match(
          lines[1]!,
          /problems\.yaml:9:12: listeners\[1\]\.route: .*broken\.ts exports no route function/,
        );
        assert.match(
          lines[2]!,
          /problems\.yaml:10:18: listeners\[1\]\.tls\.cert: cannot read \.\/nope\.pem: no such file/,
        );
        assert.match(
          lines[3]!,
          /problems\.yaml:10:35: listeners\[1\]\.tls\.key: cannot read \.\/nope\.key: no such file/,
        );
        assert.match(lines[4]!, /problems\.yaml: 4 problems/);
      }
    } finally {
      held.close();
    }
  });

  test("a syntax or value error: every one, with file:line:col; a missing file: its name", () => {
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "listeners:\n  - name: x\n    port: 99999\n    backend: none\n");
    const r = run(["check", file]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /bad\.yaml:3:11: listeners\[0\]\.port: expected an integer/);
    assert.match(r.stderr, /bad\.yaml:4:14: listeners\[0\]\.backend: no backend named "none"/);
    const m = run(["check", "nope.yaml"]);
    assert.equal(m.status, 2);
    assert.equal(m.stderr.trim(), "cannot read nope.yaml: no such file");
    const n = run(["run", "nope.yaml"]);
    assert.equal(n.status, 2);
    assert.equal(n.stderr.trim(), "relaykit: cannot read nope.yaml: no such file");
  });
});

describe("errors name the flag and the file", () => {
  const cfg = join(dir, "plain.yaml");
  writeFileSync(
    cfg,
    "listeners:\n  - { name: a, address: 127.0.0.1, port: 0, backend: b }\n" +
      "backends:\n  - { name: b, host: 127.0.0.1, port: 1 }\n",
  );
  for (const f of ["--pid", "--log-file", "--access-log"]) {
    test(`${f} in a directory that does not exist`, () => {
      const r = run(["run", cfg, f, "/nodir/x.file"]);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(
        r.stderr.trim(),
        `relaykit: ${f}: cannot write /nodir/x.file: no such directory`,
      );
    });
  }
  test("--log-file of forward too", () => {
    const r = run(["forward", "--listen", ":0", "--to", ":1", "--log-file", "/nodir/f.log"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--log-file: cannot write \/nodir\/f\.log: no such directory/);
  });
});

describe("the logger", () => {
  test("text and json lines; levels; colour only for warnings and errors", () => {
    const rec = {
      time: "2026-12-02T10:00:00.000Z",
      level: "warn" as const,
      name: "relaykit",
      message: "m",
    };
    assert.equal(formatLine(rec, "text", false), "2026-12-02T10:00:00.000Z warn relaykit: m");
    assert.equal(
      formatLine(rec, "text", true),
      "2026-12-02T10:00:00.000Z \x1b[33mwarn\x1b[0m relaykit: m",
    );
    assert.equal(
      formatLine({ ...rec, level: "info" }, "text", true),
      "2026-12-02T10:00:00.000Z info relaykit: m",
    );
    assert.deepEqual(JSON.parse(formatLine(rec, "json", false)), rec);
  });

  test("lines of one cause: the first, then one summary; other causes apart; the file reopens", async () => {
    const file = join(dir, "rate.log");
    const log = new Logger({ file, summaryMs: 200, level: "warn" });
    for (let i = 0; i < 50; i++) log.warn(`backend down ${i}`, "ECONNREFUSED");
    log.warn("other", "ETIMEDOUT");
    log.info("below the level");
    await waitFor(() => /49 more/.test(readFileSync(file, "utf8")), 3000, "the summary");
    const lines = readFileSync(file, "utf8").trim().split("\n");
    assert.equal(lines.length, 3, lines.join("\n"));
    assert.match(lines[0]!, /warn relaykit: backend down 0$/);
    assert.match(lines[1]!, /warn relaykit: other$/);
    assert.match(
      lines[2]!,
      /warn relaykit: backend down 49 \(49 more like this in the last \d+ s\)$/,
    );
    renameSync(file, `${file}.1`);
    log.reopen();
    log.error("after the rotation");
    assert.match(readFileSync(file, "utf8"), /^\S+ error relaykit: after the rotation\n$/);
    assert.doesNotMatch(readFileSync(`${file}.1`, "utf8"), /after the rotation/);
  });

  test("forward: a dead backend is a warning, once per cause, with time and level, no colour off a TTY", async () => {
    const dead = await freePort();
    const fwd = startCli(["forward", "--listen", "127.0.0.1:0", "--to", `127.0.0.1:${dead}`], {
      NO_COLOR: "",
    });
    try {
      const first = await fwd.line;
      assert.match(first, LINE);
      const port = Number(first.match(/127\.0\.0\.1:(\d+) ->/)?.[1]);
      for (let i = 0; i < 5; i++) {
        const c = await connect(port);
        c.end();
        await new Promise((r) => c.once("close", r));
      }
      await waitFor(() => /Cannot connect/.test(fwd.output.err), 5000, "the warning");
      const warned = fwd.output.err.trim().split("\n");
      assert.equal(warned.length, 1, fwd.output.err);
      assert.match(warned[0]!, LINE);
      assert.match(
        warned[0]!,
        / warn relaykit: .*Cannot connect to "127\.0\.0\.1:\d+": connection refused/,
      );
      assert.ok(!fwd.output.err.includes("\x1b["), "no colour off a terminal");
    } finally {
      fwd.child.kill("SIGKILL");
    }
  });

  test("run: a dead backend is a warning at the default level; --log-file gets every line; SIGUSR2 reopens it", async () => {
    const [port, dead] = [await freePort(), await freePort()];
    const file = join(dir, "dead.yaml");
    const logFile = join(dir, "run.log");
    writeFileSync(
      file,
      `listeners:\n  - { name: web, address: 127.0.0.1, port: ${port}, backend: b }\n` +
        `backends:\n  - { name: b, host: 127.0.0.1, port: ${dead} }\n`,
    );
    const cli = startCli(["run", file, "--log-file", logFile]);
    cli.line.catch(() => {}); // every line goes to the log file
    const logged = () => {
      try {
        return readFileSync(logFile, "utf8");
      } catch {
        return "";
      }
    };
    try {
      await waitFor(() => /running .* \(1 listener\)/.test(logged()), 10_000, "running");
      const c = await connect(port);
      c.end();
      await new Promise((r) => c.once("close", r));
      await waitFor(() => /Cannot connect/.test(logged()), 5000, "the warning");
      assert.match(
        logged(),
        /warn relaykit: web: Cannot connect to "127\.0\.0\.1:\d+": connection refused/,
      );
      renameSync(logFile, `${logFile}.1`);
      process.kill(cli.child.pid!, "SIGUSR2");
      await waitFor(
        () => {
          try {
            return readFileSync(logFile, "utf8") === "";
          } catch {
            return false;
          }
        },
        5000,
        "the new file",
      );
      await stopChild(cli.child);
      assert.match(logged(), /info relaykit: SIGTERM: stopping/);
      for (const line of readFileSync(`${logFile}.1`, "utf8").trim().split("\n")) {
        assert.match(line, LINE);
      }
      assert.equal(cli.output.out + cli.output.err, "", "nothing on stdout or stderr");
    } finally {
      cli.child.kill("SIGKILL");
    }
  });

  test("--log-format json: one object a line", async () => {
    const cli = startCli(["echo", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    try {
      const rec = JSON.parse(await cli.line);
      assert.equal(rec.level, "info");
      assert.equal(rec.name, "relaykit");
      assert.match(rec.message, /^echo on 127\.0\.0\.1:\d+/);
      assert.ok(!Number.isNaN(Date.parse(rec.time)));
    } finally {
      cli.child.kill("SIGKILL");
    }
  });

  test("an open tunnel server (--allow '*', no secret, no TLS) is warned about", async () => {
    const srv = startCli(["tunnel", "server", "--listen", "127.0.0.1:0", "--allow", "*"]);
    try {
      await srv.line;
      await waitFor(
        () => /warn relaykit: this tunnel server is open/.test(srv.output.err),
        5000,
        "warning",
      );
    } finally {
      srv.child.kill("SIGKILL");
    }
  });
});

test("Node: a .ts module on a Node without type stripping says which Node or .mjs", () => {
  assert.match(
    nodeTypeScriptHint("20.20.2"),
    /Node 20\.20\.2 cannot load TypeScript modules: use Node 22\.6 or later.*\.mjs/,
  );
  assert.match(nodeTypeScriptHint("22.6.0"), /NODE_OPTIONS=--experimental-strip-types/);
});

test("Node: the npm command adds --experimental-strip-types only where Node needs it", () => {
  const flag = "--experimental-strip-types";
  for (const v of ["22.6.0", "22.17.1", "23.0.0", "23.5.0"]) {
    assert.equal(stripTypesNodeOptions(v, [], undefined), flag, v);
  }
  for (const v of ["20.20.2", "22.5.1", "22.18.0", "23.6.0", "24.1.0"]) {
    assert.equal(stripTypesNodeOptions(v, [], undefined), undefined, v);
  }
  assert.equal(
    stripTypesNodeOptions("22.17.1", [], "--max-old-space-size=64"),
    `--max-old-space-size=64 ${flag}`,
  );
  assert.equal(stripTypesNodeOptions("22.17.1", [flag], undefined), undefined);
  assert.equal(stripTypesNodeOptions("22.17.1", [], "--no-experimental-strip-types"), undefined);
  assert.equal(stripTypesNodeOptions("22.17.1", [], "--experimental-transform-types"), undefined);
});
