/**
 * The relaykit command and the engine choice, run as a user runs them: a
 * child process of this same runtime.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { describe, test } from "./_test.ts";
import { buildProxyHeader, TLV } from "../mod.ts";
import { chooseEngine } from "../internals.ts";
import {
  CLI,
  connect,
  curl,
  echoServer,
  freePort,
  receiveAll,
  runtimeCommand,
  startCli,
  stopChild,
  waitFor,
} from "./_helpers.ts";

const cli = CLI;

function run(args: string[], env: Record<string, string> = {}) {
  const [cmd, ...rest] = runtimeCommand(cli, args);
  return spawnSync(cmd!, rest, {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 20_000,
  });
}

describe("relaykit command", () => {
  for (const engine of ["native", "stream"] as const) {
    test(`forward --engine ${engine} relays bytes and says which engine runs`, async () => {
      const backend = await echoServer();
      const { child, line, output } = startCli([
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--to",
        `127.0.0.1:${backend.port}`,
        "--engine",
        engine,
      ]);
      try {
        const first = await line;
        assert.match(first, new RegExp(`\\(${engine} engine`));
        if (engine === "stream") assert.match(first, /the stream engine was asked for/);
        const port = Number(first.match(/127\.0\.0\.1:(\d+) ->/)?.[1]);
        const c = await connect(port);
        const reply = receiveAll(c);
        c.end("through the command");
        assert.equal((await reply).bytes, "through the command".length);
        const exit = await stopChild(child);
        assert.match(output.out, /relaykit: SIGTERM: closing \d+ connections?$/m);
        // Deno's child_process reports a child that handled SIGTERM and
        // then exited with 0 as killed by SIGTERM; Node and Bun report 0.
        const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";
        assert.ok(exit === 0 || (isDeno && exit === "SIGTERM"), `exit ${exit}`);
      } finally {
        child.kill("SIGKILL");
        await backend.close();
      }
    });
  }

  test("auto falls back to the stream engine and says why when the library cannot load", async () => {
    const backend = await echoServer();
    const { child, line } = startCli(
      ["forward", "--listen", "127.0.0.1:0", "--to", `127.0.0.1:${backend.port}`],
      { RELAYKIT_LIB: "/nonexistent" },
    );
    try {
      const first = await line;
      assert.match(
        first,
        /stream engine on \w+: the native engine is unavailable: .*"\/nonexistent"/,
      );
    } finally {
      child.kill("SIGKILL");
      await backend.close();
    }
  });

  test("forcing the native engine when it cannot load is an error, not a fallback", () => {
    const r = run(["forward", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9"], {
      RELAYKIT_ENGINE: "native",
      RELAYKIT_LIB: "/nonexistent",
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /"\/nonexistent" \(set by RELAYKIT_LIB\): file not found/);
  });

  test("RELAYKIT_ENGINE=stream forces the stream engine", () => {
    const old = process.env.RELAYKIT_ENGINE;
    process.env.RELAYKIT_ENGINE = "stream";
    try {
      const choice = chooseEngine("auto");
      assert.equal(choice.engine.name, "stream");
      assert.match(choice.reason ?? "", /asked for/);
      process.env.RELAYKIT_ENGINE = "fast";
      assert.throws(() => chooseEngine("auto"), /RELAYKIT_ENGINE must be/);
    } finally {
      if (old === undefined) delete process.env.RELAYKIT_ENGINE;
      else process.env.RELAYKIT_ENGINE = old;
    }
  });

  for (
    const [args, message] of [
      [["forward", "--listen", "127.0.0.1"], /--listen: "127.0.0.1" has no port/],
      [["forward", "--listen", ":0"], /--to is required/],
      [
        ["forward", "--listen", ":0", "--to", ":1", "--threads", "x"],
        /--threads: expected an integer from 1/,
      ],
      [
        ["forward", "--listen", ":0", "--to", ":1", "--engine", "fast"],
        /--engine: expected one of auto, native, stream, not "fast"/,
      ],
      [["forward", "--bogus"], /unknown option "--bogus"/],
      [
        ["forward", "--listen", ":0", "--to", ":1", "--accept-proxy", "v3"],
        /--accept-proxy: expected one of detect, v1, v2, not "v3"/,
      ],
      [
        ["forward", "--listen", ":0", "--to", ":1", "--trusted", "10.0.0.0/8"],
        /needs --accept-proxy/,
      ],
      [
        [
          "forward",
          "--listen",
          ":0",
          "--to",
          ":1",
          "--accept-proxy",
          "v1",
          "--trusted",
          "10.0.0/8",
        ],
        /--trusted: "10.0.0\/8" is not an address range/,
      ],
      [
        ["forward", "--listen", ":0", "--to", ":1", "--send-proxy", "v9"],
        /--send-proxy: expected one of v1, v2, not "v9"/,
      ],
      [
        [
          "forward",
          "--listen",
          ":0",
          "--to",
          ":1",
          "--send-proxy",
          "v2",
          "--proxy-v2-options",
          "x",
        ],
        /unknown option "x"/,
      ],
      [["frobnicate"], /unknown command "frobnicate"/],
    ] as const
  ) {
    test(`bad arguments (${args.join(" ")}) get one line and exit code 2`, () => {
      const r = run([...args]);
      assert.equal(r.status, 2);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split("\n").length, 1);
    });
  }

  test("echo --accept-proxy detect prints the original addresses and echoes only what follows", async () => {
    const { child, line, output } = startCli([
      "echo",
      "--listen",
      "127.0.0.1:0",
      "--accept-proxy",
      "detect",
    ]);
    try {
      const first = await line;
      const port = Number(first.match(/echo on 127\.0\.0\.1:(\d+)/)?.[1]);
      const roundTrip = async (payload: Uint8Array) => {
        const c = await connect(port);
        const reply = new Promise<string>((resolve) => {
          let got = "";
          c.on("data", (d: Uint8Array) => got += new TextDecoder().decode(d));
          c.on("close", () => resolve(got));
        });
        c.end(payload);
        return reply;
      };
      const enc = new TextEncoder();
      const v1 = enc.encode("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nhello");
      assert.equal(await roundTrip(v1), "hello");
      const v2 = buildProxyHeader({
        version: 2,
        command: "proxy",
        transport: "stream",
        source: { host: "2001:db8::1", port: 1000 },
        destination: { host: "2001:db8::2", port: 443 },
        tlvs: [{ type: TLV.AUTHORITY, value: enc.encode("example.com") }],
      });
      assert.equal(await roundTrip(new Uint8Array([...v2, ...enc.encode("world")])), "world");
      assert.equal(await roundTrip(enc.encode("plain bytes")), "plain bytes");
      assert.equal(await roundTrip(enc.encode("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nx")), "");
      await waitFor(() => output.out.split("\n").length >= 6, 5000, "four connection lines");
      assert.match(output.out, /PROXY v1 stream 192\.0\.2\.1:56324 -> 198\.51\.100\.2:443/);
      assert.match(
        output.out,
        /PROXY v2 stream \[2001:db8::1\]:1000 -> \[2001:db8::2\]:443 \[authority=example\.com\]/,
      );
      assert.match(output.out, /no PROXY header/);
      assert.match(output.out, /ends with LF without CR; closing/);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("forward --accept-proxy v1 --send-proxy v2 carries the original client to echo", async () => {
    const echo = startCli(["echo", "--listen", "127.0.0.1:0", "--accept-proxy", "v2"]);
    let fwd: ReturnType<typeof startCli> | undefined;
    try {
      const echoPort = Number((await echo.line).match(/echo on 127\.0\.0\.1:(\d+)/)?.[1]);
      fwd = startCli([
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--to",
        `127.0.0.1:${echoPort}`,
        "--accept-proxy",
        "v1",
        "--send-proxy",
        "v2",
        "--proxy-v2-options",
        "unique-id,crc32c,authority=db.example",
        "--verbose",
      ]);
      const port = Number((await fwd.line).match(/forwarding 127\.0\.0\.1:(\d+)/)?.[1]);
      const c = await connect(port);
      let got = "";
      c.on("data", (d: Uint8Array) => got += new TextDecoder().decode(d));
      c.end("PROXY TCP6 2001:db8::7 2001:db8::8 4000 5432\r\nquery");
      await new Promise((r) => c.once("close", r));
      assert.equal(got, "query");
      await waitFor(() => /authority=db\.example/.test(echo.output.out), 5000, "echo line");
      assert.match(
        echo.output.out,
        /PROXY v2 stream \[2001:db8::7\]:4000 -> \[2001:db8::8\]:5432 \[authority=db\.example unique_id=[0-9a-f]{32}\]/,
      );
      await waitFor(() => /client \[2001:db8::7\]:4000/.test(fwd!.output.out), 5000, "close line")
        .catch((err: Error) => {
          throw new Error(
            `${err.message}; the forward printed:\n${fwd!.output.out}${fwd!.output.err}`,
          );
        });
      assert.match(fwd.output.out, /PROXY v1 stream \[2001:db8::7\]:4000 -> \[2001:db8::8\]:5432/);
    } finally {
      echo.child.kill("SIGKILL");
      fwd?.child.kill("SIGKILL");
    }
  });

  test("--help lists the commands", () => {
    const r = run(["--help"]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /relaykit forward --listen HOST:PORT --to HOST:PORT/);
  });
});

test("relaykit socks and http-connect, and socks from a config file", async () => {
  const web = createServer((_req, res) => res.end("hi\n"));
  await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
  const webPort = (web.address() as AddressInfo).port;
  const deadPort = await freePort();
  const socks = startCli([
    "socks",
    "--listen",
    "127.0.0.1:0",
    "--allow",
    `127.0.0.1/32:${webPort}`,
  ]);
  const http = startCli([
    "http-connect",
    "--listen",
    "127.0.0.1:0",
    "--allow",
    `*:${webPort}`,
    "--users",
    "u:p",
  ]);
  const dir = mkdtempSync(join(tmpdir(), "relaykit-socks-"));
  const port = await freePort();
  const file = `${dir}/socks.yaml`;
  writeFileSync(
    file,
    `listeners:\n  - name: s\n    address: 127.0.0.1\n    port: ${port}\n    socks:\n` +
      `      allow: [{ cidr: 127.0.0.0/8, port: ${webPort} }]\n      users: { carol: pw }\n`,
  );
  const run = startCli(["run", file]);
  try {
    const sp = (await socks.line).match(/on 127\.0\.0\.1:(\d+)/)?.[1];
    const hp = (await http.line).match(/on 127\.0\.0\.1:(\d+)/)?.[1];
    await run.line;
    const url = `http://127.0.0.1:${webPort}/`;
    assert.equal((await curl(["--socks5", `127.0.0.1:${sp}`, url])).code, 0);
    assert.equal(
      (await curl(["--socks5", `127.0.0.1:${sp}`, `http://127.0.0.1:${deadPort}/`])).code,
      97,
    );
    assert.equal((await curl(["-p", "-x", `http://u:p@127.0.0.1:${hp}`, url])).code, 0);
    assert.equal((await curl(["--socks5", `carol:pw@127.0.0.1:${port}`, url])).code, 0);
    assert.equal((await curl(["--socks5", `carol:no@127.0.0.1:${port}`, url])).code, 97);
    assert.match(
      socks.output.err,
      /warn relaykit: #\d+ from [^ ]+ refused: 127\.0\.0\.1:\d+ is not allowed/,
    );
  } finally {
    for (const c of [socks, http, run]) c.child.kill("SIGKILL");
    web.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const bare = startCli(["socks", "--listen", "127.0.0.1:0"]);
  await assert.rejects(bare.line, /exited with 2: .*--allow is required/);
});
