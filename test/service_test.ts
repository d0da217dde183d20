/**
 * relaykit as a service: the --workers supervisor (a failed start, a crash
 * loop, metrics of every worker), systemd readiness (a Unix datagram socket
 * stands in for systemd) and socket activation (a python3 launcher binds
 * and passes the sockets as systemd does), signals and shutdown lines.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { after, test } from "./_test.ts";
import { mergeMetrics } from "../src/config/supervisor.ts";
import {
  closed,
  connect,
  ENGINES,
  freePort,
  runtimeCommand,
  server,
  sleep,
  startCli,
  stopChild,
  waitFor,
} from "./_helpers.ts";

/**
 * Everything a command printed: its info lines go to stdout, warnings and
 * errors to stderr (with timestamps, so one stream's order is enough).
 */
const both = (c: { output: { out: string; err: string } }) => c.output.out + c.output.err;

const dir = mkdtempSync(join(tmpdir(), "relaykit-service-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A server that greets with its name, then echoes. */
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

function config(name: string, port: number, backendPort: number, extra = ""): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `listeners:\n  - { name: w, address: 127.0.0.1, port: ${port}, backend: b }\n` +
      `backends:\n  - { name: b, host: 127.0.0.1, port: ${backendPort} }\n` + extra,
  );
  return file;
}

/** Every worker pid a supervisor's output names. */
function workerPids(err: string): number[] {
  return [...err.matchAll(/worker \d+ started \(pid (\d+)\)/g)].map((m) => Number(m[1]));
}

/** SIGKILL the supervisor and every worker it started. */
function killAll(cli: ReturnType<typeof startCli>): void {
  for (const pid of workerPids(both(cli))) {
    try {
      process.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }
  cli.child.kill("SIGKILL");
}

function exitOf(child: ReturnType<typeof startCli>["child"]): Promise<number | string | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once("close", (code, signal) => resolve(code ?? signal));
  });
}

test("--workers: a worker that cannot listen stops the start with its message and exit 1", async () => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
  const port = (taken.address() as net.AddressInfo).port;
  const file = config("taken", port, 1);
  const cli = startCli(["run", file, "--workers", "2"]);
  try {
    const code = await exitOf(cli.child);
    assert.equal(code, 1, both(cli));
    assert.match(
      both(cli),
      new RegExp(`worker \\d could not start: Cannot listen on "127\\.0\\.0\\.1:${port}"`),
    );
    assert.doesNotMatch(both(cli), /starting another/);
    assert.equal(workerPids(both(cli)).length, 2, "no worker was started again");
  } finally {
    killAll(cli);
    taken.close();
  }
});

test("--workers: deaths are replaced with backoff; a crash loop ends the supervisor", {
  timeout: 45_000,
}, async () => {
  const backend = await greeter("b");
  const file = config("loop", await freePort(), backend.port);
  const cli = startCli(["run", file, "--workers", "2"]);
  const ready = () => both(cli).match(/relaykit\[0\]: running/g)?.length ?? 0;
  const pidOf0 = () =>
    Number([...both(cli).matchAll(/worker 0 started \(pid (\d+)\)/g)].at(-1)?.[1]);
  try {
    await waitFor(() => /2 workers ready/.test(both(cli)), 15_000, "ready");
    for (let death = 1; death <= 5; death++) {
      await waitFor(() => ready() >= death, 15_000, `worker 0 up (${death})`);
      process.kill(pidOf0(), "SIGKILL");
      if (death < 5) {
        await waitFor(
          () =>
            new RegExp(`worker 0 died \\(SIGKILL\\); starting another in \\d`).test(
              both(cli).split("\n").filter((l) => /died/.test(l))[death - 1] ?? "",
            ),
          10_000,
          `replaced (${death})`,
        );
      }
    }
    assert.equal(await exitOf(cli.child), 1, both(cli));
    assert.match(both(cli), /5 deaths within 60 s, a crash loop; stopping/);
    const waits = [...both(cli).matchAll(/starting another in ([\d.]+) s/g)].map((m) =>
      Number(m[1])
    );
    assert.deepEqual(waits, [0.25, 0.5, 1, 2]);
  } finally {
    killAll(cli);
    await backend.close();
  }
});

test("--workers: /metrics sums every worker, with the series one process has", async () => {
  const backend = await greeter("b");
  const [port, metricsPort] = [await freePort(), await freePort()];
  const file = config(
    "metrics",
    port,
    backend.port,
    `metrics: { address: 127.0.0.1, port: ${metricsPort} }\n`,
  );
  const series = (text: string) =>
    text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) =>
      l.replace(/ \S+$/, "")
    )
      .sort();
  const single = startCli(["run", file]);
  let one: string;
  try {
    await single.line;
    const g = await greeting(port);
    g.s.end();
    await closed(g.s);
    do {
      one = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    } while (!/connections_total\{listener="w"\} 1\n/.test(one) && await sleep(50) === undefined);
  } finally {
    single.child.kill("SIGKILL");
  }
  await exitOf(single.child);
  const cli = startCli(["run", file, "--workers", "2"]);
  try {
    await waitFor(() => /2 workers ready/.test(both(cli)), 15_000, "ready");
    for (let i = 0; i < 8; i++) {
      const g = await greeting(port);
      g.s.end();
      await closed(g.s);
    }
    // a connection is counted once relaykit has seen both sides end
    let text = "";
    const deadline = Date.now() + 5000;
    while (!/connections_total\{listener="w"\} 8\n/.test(text) && Date.now() < deadline) {
      text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      await sleep(50);
    }
    assert.match(text, /relaykit_listener_connections_total\{listener="w"\} 8\n/);
    assert.match(text, /relaykit_server_connections_total\{backend="b",server="[^"]+"\} 8\n/);
    assert.match(text, /relaykit_server_up\{backend="b",server="[^"]+"\} 1\n/);
    assert.deepEqual(series(text), series(one));
    assert.equal(text.match(/^# TYPE relaykit_listener_connections_total /gm)?.length, 1);
  } finally {
    killAll(cli);
    await backend.close();
  }
});

test("mergeMetrics sums samples, keeps *_up at the smallest, and keeps counters of the gone", () => {
  const a = '# HELP x_total X.\n# TYPE x_total counter\nx_total{l="a"} 2\n' +
    '# HELP s_up Up.\n# TYPE s_up gauge\ns_up{s="1"} 1\n';
  const b = '# HELP x_total X.\n# TYPE x_total counter\nx_total{l="a"} 3\nx_total{l="b"} 1\n' +
    '# HELP s_up Up.\n# TYPE s_up gauge\ns_up{s="1"} 0\n';
  assert.equal(
    mergeMetrics([a, b]),
    '# HELP x_total X.\n# TYPE x_total counter\nx_total{l="a"} 5\nx_total{l="b"} 1\n' +
      '# HELP s_up Up.\n# TYPE s_up gauge\ns_up{s="1"} 0\n',
  );
  assert.equal(
    mergeMetrics([a], true),
    '# HELP x_total X.\n# TYPE x_total counter\nx_total{l="a"} 2\n',
  );
});

/** A Unix datagram socket that stands in for systemd's notify socket. */
async function notifySocket(): Promise<{ path: string; got: string[]; stop(): void }> {
  const path = join(dir, `notify-${Math.random().toString(36).slice(2)}.sock`);
  const py = spawn("python3", [
    "-u",
    "-c",
    "import socket,sys\n" +
    "s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind(sys.argv[1]); print('bound')\n" +
    "while True:\n  print(repr(s.recv(4096).decode()))\n",
    path,
  ], { stdio: ["ignore", "pipe", "inherit"] });
  const got: string[] = [];
  let buf = "";
  await new Promise<void>((resolve, reject) => {
    py.once("exit", (c) => reject(new Error(`python3 exited with ${c}`)));
    py.stdout!.on("data", (d: Uint8Array) => {
      buf += String(d);
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === "bound") resolve();
        else got.push(line.slice(1, -1).replace(/\\n/g, "\n"));
      }
    });
  });
  return { path, got, stop: () => py.kill("SIGKILL") };
}

test("systemd: READY=1 once listening, RELOADING=1/READY=1 around SIGHUP, STOPPING=1", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = config("notify", port, backend.port);
  const sd = await notifySocket();
  const cli = startCli(["run", file], { NOTIFY_SOCKET: sd.path });
  try {
    await waitFor(() => sd.got.some((m) => m.startsWith("READY=1")), 10_000, "READY=1");
    // ready means serving
    const g = await greeting(port);
    assert.equal(g.name, "b");
    g.s.destroy();
    process.kill(cli.child.pid!, "SIGHUP");
    await waitFor(() => sd.got.length >= 3, 10_000, "reload notified");
    assert.deepEqual(sd.got.slice(1, 3), ["RELOADING=1", "READY=1"]);
    await stopChild(cli.child);
    await waitFor(() => sd.got.includes("STOPPING=1"), 5000, "STOPPING=1");
  } finally {
    cli.child.kill("SIGKILL");
    sd.stop();
    await backend.close();
  }
});

test("systemd: with --workers the supervisor says READY=1 once every worker is ready", async () => {
  const backend = await greeter("b");
  const file = config("notify-workers", await freePort(), backend.port);
  const sd = await notifySocket();
  const cli = startCli(["run", file, "--workers", "2"], { NOTIFY_SOCKET: sd.path });
  try {
    await waitFor(() => sd.got.some((m) => m.startsWith("READY=1")), 15_000, "READY=1");
    assert.match(both(cli), /relaykit\[0\]: running/);
    assert.match(both(cli), /relaykit\[1\]: running/);
    assert.equal(sd.got.length, 1, "only the supervisor notifies");
    assert.match(sd.got[0]!, /^READY=1\nSTATUS=2 workers running /);
    process.kill(cli.child.pid!, "SIGHUP");
    await waitFor(() => sd.got.length >= 3, 10_000, "reload notified");
    assert.deepEqual(sd.got.slice(1, 3), ["RELOADING=1", "READY=1"]);
    process.kill(cli.child.pid!, "SIGTERM");
    await exitOf(cli.child);
    assert.ok(sd.got.includes("STOPPING=1"));
  } finally {
    killAll(cli);
    sd.stop();
    await backend.close();
  }
});

/** A python3 launcher that binds what systemd would, then execs the command with LISTEN_FDS. */
const LAUNCHER = "import os,socket,sys\n" +
  "ports=sys.argv[1].split(','); names=sys.argv[2]; keep=[]\n" +
  "for p in ports:\n" +
  "  s=socket.socket(); s.bind(('127.0.0.1',int(p))); s.listen(64); keep.append(s)\n" +
  "fds=[os.dup(s.fileno()) for s in keep]\n" +
  "for i,fd in enumerate(fds):\n" +
  "  os.dup2(fd,3+i); os.set_inheritable(3+i,True)\n" +
  "os.environ['LISTEN_FDS']=str(len(ports)); os.environ['LISTEN_PID']=str(os.getpid())\n" +
  "os.environ['LISTEN_FDNAMES']=names\n" +
  "print('bound', flush=True)\n" +
  "os.execvp(sys.argv[3],sys.argv[3:])\n";

for (const engine of ENGINES) {
  test(`socket activation (${engine} engine): listeners adopt the inherited sockets by address and by name`, async () => {
    const backend = await greeter("b");
    const [p1, p2, other] = [await freePort(), await freePort(), await freePort()];
    const file = join(dir, `activation-${engine}.yaml`);
    // "named" asks for another port: the socket named "named" wins
    writeFileSync(
      file,
      `listeners:\n  - { name: w, address: 127.0.0.1, port: ${p1}, backend: b }\n` +
        `  - { name: named, address: 127.0.0.1, port: ${other}, backend: b }\n` +
        `backends:\n  - { name: b, host: 127.0.0.1, port: ${backend.port} }\n`,
    );
    const cli = startCli(
      ["run", file, "--engine", engine],
      {},
      ["python3", "-c", LAUNCHER, `${p1},${p2}`, "first:named"],
    );
    try {
      assert.equal(await cli.line, "bound");
      // a connection made before relaykit runs waits in the inherited backlog
      const early = await greeting(p1);
      assert.equal(early.name, "b");
      early.s.destroy();
      await waitFor(() => /running/.test(both(cli)), 10_000, "running");
      assert.match(
        both(cli),
        new RegExp(
          `listening on 127\\.0\\.0\\.1:${p1} \\(${engine} engine, inherited fd 3 "first"\\)`,
        ),
      );
      assert.match(both(cli), new RegExp(`\\(${engine} engine, inherited fd 4 "named"\\)`));
      for (const port of [p1, p2]) {
        const g = await greeting(port);
        assert.equal(g.name, "b");
        g.s.destroy();
      }
      // a reload keeps the adopted sockets
      process.kill(cli.child.pid!, "SIGHUP");
      await waitFor(() => /reload: .* applied/.test(both(cli)), 10_000, "reloaded");
      const g = await greeting(p1);
      assert.equal(g.name, "b");
      g.s.destroy();
    } finally {
      cli.child.kill("SIGKILL");
      await backend.close();
    }
  });
}

test("socket activation with --workers: every worker accepts on the inherited socket", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = config("activation-workers", port, backend.port);
  const cli = startCli(
    ["run", file, "--workers", "2"],
    {},
    ["python3", "-c", LAUNCHER, String(port), ""],
  );
  try {
    await waitFor(() => /2 workers ready/.test(both(cli)), 15_000, "ready");
    assert.equal(both(cli).match(/inherited fd 3\)/g)?.length, 2, both(cli));
    for (let i = 0; i < 4; i++) {
      const g = await greeting(port);
      assert.equal(g.name, "b");
      g.s.destroy();
    }
  } finally {
    killAll(cli);
    await backend.close();
  }
});

const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";

const HANGUP: [string, string[]][] = [
  ["forward", ["--listen", "127.0.0.1:0", "--to", "127.0.0.1:1"]],
  ["socks", ["--listen", "127.0.0.1:0", "--allow", "127.0.0.1"]],
  ["http-connect", ["--listen", "127.0.0.1:0", "--allow", "127.0.0.1"]],
  ["echo", ["--listen", "127.0.0.1:0"]],
  ["tunnel", ["server", "--listen", "127.0.0.1:0", "--allow", "127.0.0.1"]],
];

for (const [cmd, args] of HANGUP) {
  test(`${cmd}: SIGHUP is ignored with a line, the process goes on`, async () => {
    const cli = startCli([cmd, ...args]);
    try {
      const first = await cli.line;
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(first)?.[1]);
      process.kill(cli.child.pid!, "SIGHUP");
      await waitFor(() => /SIGHUP: ignored/.test(both(cli)), 5000, "the line");
      await sleep(100);
      assert.equal(cli.child.exitCode, null, "still running");
      const s = await connect(port); // still accepting
      s.destroy();
      const exit = await stopChild(cli.child);
      assert.ok(exit === 0 || (isDeno && exit === "SIGTERM"), `exit ${exit}`);
    } finally {
      cli.child.kill("SIGKILL");
    }
  });
}

test("run: a SIGHUP while starting is applied once running, not lost", async () => {
  const [a, b] = [await greeter("a"), await greeter("b")];
  const port = await freePort();
  const file = config("hup-start", port, a.port);
  const [cmd, ...rest] = runtimeCommand(
    fileURLToPath(new URL("./fixtures/slow_start.ts", import.meta.url).href),
    [file],
  );
  const child = spawn(cmd!, rest, { stdio: "pipe" });
  let out = "";
  child.stdout!.on("data", (d: Uint8Array) => out += String(d));
  child.stderr!.on("data", (d: Uint8Array) => out += String(d));
  try {
    await waitFor(() => out.includes("starting"), 10_000, "the start");
    config("hup-start", port, b.port); // the file changes while starting
    process.kill(child.pid!, "SIGHUP");
    await sleep(200);
    child.stdin!.write("go\n");
    await waitFor(() => /SIGHUP while starting: reloading now/.test(out), 5000, "the reload");
    await waitFor(() => /reload: .* applied \(1 listener\)/.test(out), 5000, "its result");
    const g = await greeting(port);
    g.s.destroy();
    assert.equal(g.name, "b", "the file as changed while starting");
  } finally {
    child.kill("SIGKILL");
    await a.close();
    await b.close();
  }
});

test("run: Ctrl-C says what it waits for; a second one says what it closed", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = config("ctrlc", port, backend.port);
  const cli = startCli(["run", file]);
  try {
    await waitFor(() => /running .* \(1 listener\)/.test(both(cli)), 10_000, "running");
    const g = await greeting(port);
    g.s.on("error", () => {});
    const cut = new Promise((r) => g.s.once("close", r));
    process.kill(cli.child.pid!, "SIGINT");
    await waitFor(
      () =>
        /SIGINT: stopping; waiting up to 10 s for 1 connection \(Ctrl-C again to close them now\)/
          .test(both(cli)),
      5000,
      "the waiting line",
    );
    await sleep(200);
    assert.equal(cli.child.exitCode, null, "waits for the connection");
    const t0 = Date.now();
    process.kill(cli.child.pid!, "SIGINT");
    await cut;
    await exitOf(cli.child);
    assert.ok(Date.now() - t0 < 3000, "the second Ctrl-C closes at once");
    assert.match(both(cli), /SIGINT again: closed 1 connection now/);
  } finally {
    cli.child.kill("SIGKILL");
    await backend.close();
  }
});

test("a health change is logged once, not again by each reload", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const dead = await freePort();
  const file = join(dir, "health.yaml");
  writeFileSync(
    file,
    `listeners:\n  - { name: w, address: 127.0.0.1, port: ${port}, backend: b }\n` +
      `backends:\n  - name: b\n` +
      `    servers:\n      - { name: live, host: 127.0.0.1, port: ${backend.port} }\n` +
      `      - { name: dead, host: 127.0.0.1, port: ${dead} }\n` +
      `    health_check: { interval: 100, timeout: 500, fall: 1, rise: 1 }\n`,
  );
  const cli = startCli(["run", file]);
  const downs = () => both(cli).match(/server "dead" is down/g)?.length ?? 0;
  try {
    await cli.line;
    await waitFor(() => downs() === 1, 5000, "down");
    for (let i = 1; i <= 2; i++) {
      process.kill(cli.child.pid!, "SIGHUP");
      await waitFor(
        () => (both(cli).match(/reload: .* applied/g)?.length ?? 0) === i,
        5000,
        "reloaded",
      );
      await sleep(400); // several checks of the dead server
    }
    assert.equal(downs(), 1, both(cli));
  } finally {
    cli.child.kill("SIGKILL");
    await backend.close();
  }
});

test("socket activation without the native library: addresses read from /proc (IPv4, IPv6, Unix)", async () => {
  const script = join(dir, "inherited.ts");
  const mod = new URL("../src/config/systemd.ts", import.meta.url).href;
  writeFileSync(
    script,
    `import { inheritedSockets } from ${JSON.stringify(mod)};\n` +
      `console.log(JSON.stringify(inheritedSockets()));\n`,
  );
  const path = join(dir, "activated.sock");
  const launcher = "import os,socket,sys\n" +
    "a=socket.socket(); a.bind(('127.0.0.1',0)); a.listen(1)\n" +
    "b=socket.socket(socket.AF_INET6); b.bind(('::1',0)); b.listen(1)\n" +
    "u=socket.socket(socket.AF_UNIX); u.bind(sys.argv[1]); u.listen(1)\n" +
    "print(a.getsockname()[1], b.getsockname()[1], flush=True)\n" +
    "fds=[os.dup(s.fileno()) for s in (a,b,u)]\n" +
    "for i,fd in enumerate(fds): os.dup2(fd,3+i); os.set_inheritable(3+i,True)\n" +
    "os.environ['LISTEN_FDS']='3'; os.environ['LISTEN_PID']=str(os.getpid())\n" +
    "os.environ['LISTEN_FDNAMES']='v4::unix'\n" +
    "os.execvp(sys.argv[2],sys.argv[2:])\n";
  const isDenoHere = typeof (globalThis as { Deno?: unknown }).Deno === "object";
  const run = isDenoHere ? [process.execPath, "run", "-A", script] : [process.execPath, script];
  const child = spawn("python3", ["-c", launcher, path, ...run], {
    env: { ...process.env, RELAYKIT_LIB: "/nonexistent" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    let out = "";
    child.stdout!.on("data", (d: Uint8Array) => out += String(d));
    await new Promise((r) => child.once("close", r));
    const [ports, json] = out.trim().split("\n");
    const [p4, p6] = ports!.split(" ").map(Number);
    assert.deepEqual(JSON.parse(json!), [
      { fd: 3, name: "v4", address: { host: "127.0.0.1", port: p4 } },
      { fd: 4, address: { host: "::1", port: p6 } },
      { fd: 5, name: "unix", address: { path } },
    ]);
  } finally {
    child.kill("SIGKILL");
  }
});

test("systemd: a notify that cannot be sent is reported once and changes nothing else", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = config("notify-fails", port, backend.port);
  const cli = startCli(["run", file, "--engine", "stream"], {
    RELAYKIT_LIB: "/nonexistent",
    NOTIFY_SOCKET: join(dir, "nobody-listens.sock"),
  });
  try {
    await cli.line;
    const g = await greeting(port);
    assert.equal(g.name, "b");
    g.s.destroy();
    process.kill(cli.child.pid!, "SIGHUP");
    await waitFor(() => /reload: .* applied/.test(both(cli)), 5000, "reloaded");
    await sleep(200);
    assert.equal(both(cli).match(/cannot notify systemd at/g)?.length, 1, both(cli));
  } finally {
    cli.child.kill("SIGKILL");
    await backend.close();
  }
});

test("run --workers: a second Ctrl-C to the supervisor reaches the workers, which close now", async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = config("ctrlc-workers", port, backend.port);
  const cli = startCli(["run", file, "--workers", "2"]);
  try {
    await waitFor(() => /2 workers ready/.test(both(cli)), 15_000, "ready");
    const g = await greeting(port);
    g.s.on("error", () => {});
    const cut = new Promise((r) => g.s.once("close", r));
    process.kill(cli.child.pid!, "SIGINT");
    await waitFor(
      () =>
        /relaykit\[\d\]: SIGINT: stopping; waiting up to 10 s for 1 connection/.test(
          both(cli),
        ),
      5000,
      "a worker waits",
    );
    await sleep(200);
    assert.equal(cli.child.exitCode, null, "waits for the connection");
    process.kill(cli.child.pid!, "SIGINT");
    await cut;
    assert.equal(await exitOf(cli.child), 0);
    assert.match(both(cli), /relaykit\[\d\]: SIGINT again: closed 1 connection now/);
  } finally {
    killAll(cli);
    await backend.close();
  }
});

test("systemd: forward says READY=1 once listening and STOPPING=1 on SIGTERM", async () => {
  const sd = await notifySocket();
  const cli = startCli(["forward", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:1"], {
    NOTIFY_SOCKET: sd.path,
  });
  try {
    await cli.line;
    await waitFor(() => sd.got.includes("READY=1"), 5000, "READY=1");
    await stopChild(cli.child);
    await waitFor(() => sd.got.includes("STOPPING=1"), 5000, "STOPPING=1");
    assert.deepEqual(sd.got, ["READY=1", "STOPPING=1"]);
  } finally {
    cli.child.kill("SIGKILL");
    sd.stop();
  }
});

const socketActivate = ["/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate"].find(
  (p) => existsSync(p),
);

test("socket activation by systemd-socket-activate: the first connection starts relaykit", {
  skip: socketActivate === undefined ? "systemd-socket-activate is not installed" : false,
}, async () => {
  const backend = await greeter("b");
  const port = await freePort();
  const file = config("socket-activate", port, backend.port);
  const pidFile = join(dir, "socket-activate.pid");
  const cli = startCli(["run", file, "--pid", pidFile], {}, [
    socketActivate!,
    "-l",
    `127.0.0.1:${port}`,
    "--fdname",
    "w",
  ]);
  try {
    await waitFor(() => /Listening on 127\.0\.0\.1:/.test(both(cli)), 5000, "listening");
    assert.doesNotMatch(both(cli), /running/, "nothing runs before a connection");
    // the connection waits in the backlog while relaykit starts, then it is relayed
    const g = await greeting(port);
    assert.equal(g.name, "b");
    g.s.destroy();
    await waitFor(() => /inherited fd 3 "w"\)/.test(both(cli)), 5000, "adopted");
  } finally {
    // the activator execs relaykit when the first connection comes (same pid)
    try {
      process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL");
    } catch { /* not started, or gone */ }
    cli.child.kill("SIGKILL");
    await backend.close();
  }
});
