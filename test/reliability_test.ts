/**
 * Reliability: the proxy keeps working while what is around it misbehaves.
 * fd exhaustion, slow and hostile clients, faults in the middle of a
 * stream, and many concurrent relays; on both engines where the engine
 * matters. Every case is bounded in time.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "./_test.ts";
import { TcpProxy, type TcpProxyOptions } from "../mod.ts";
import type { ConnectionEnd } from "../src/forward/types.ts";
import {
  closed,
  connect,
  echoServer,
  ENGINES,
  freePort,
  nativeEngine,
  pythonPeer,
  server,
  sleep,
  startCli,
  Stream,
  waitFor,
} from "./_helpers.ts";

/** Open fds of process `pid`. */
function fdsOf(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** CPU seconds (user + system) process `pid` has used so far. */
function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[11], [12]: utime, stime in clock ticks (100 per second on Linux)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Start the relaykit command under a file-descriptor limit; resolve once it listens. */
async function startLimited(
  args: string[],
  nofile: number,
): Promise<{ child: ChildProcess; output: { out: string; err: string } }> {
  const { child, line, output } = startCli(args, {}, ["prlimit", `--nofile=${nofile}:${nofile}`]);
  await line;
  return { child, output };
}

/** One request through the proxy: resolve with what came back, or reject. */
async function roundTrip(port: number, text: string, ms = 2000): Promise<string> {
  const s = await connect(port);
  try {
    return await new Promise<string>((resolve, reject) => {
      let got = "";
      const timer = setTimeout(() => reject(new Error(`no echo within ${ms} ms`)), ms);
      s.on("data", (d: Uint8Array) => {
        got += String(d);
        if (got.length >= text.length) {
          clearTimeout(timer);
          resolve(got);
        }
      });
      s.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      s.on("close", () => {
        clearTimeout(timer);
        reject(new Error(`closed after ${JSON.stringify(got)}`));
      });
      s.write(text);
    });
  } finally {
    s.destroy();
  }
}

for (const engine of ENGINES) {
  describe(`reliability (${engine} engine)`, () => {
    test("fd exhaustion: no spinning, no crash, recovery once fds free up", async () => {
      const echo = await echoServer();
      const probe = await startLimited([
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--to",
        `127.0.0.1:${echo.port}`,
        "--engine",
        engine,
      ], 1024);
      let base = 0;
      try {
        base = fdsOf(probe.child.pid!);
      } catch (err) {
        throw new Error(`the proxy is gone (${probe.child.exitCode}): ${probe.output.err}`, {
          cause: err,
        });
      }
      probe.child.kill("SIGKILL");
      // room for a few connections beyond what the idle process holds
      const limit = base + 24;
      const { child, output } = await startLimited([
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--to",
        `127.0.0.1:${echo.port}`,
        "--engine",
        engine,
      ], limit);
      const port = Number(/127\.0\.0\.1:(\d+)/.exec(output.out.split("\n")[0]!)![1]);
      const pid = child.pid!;
      try {
        assert.equal(await roundTrip(port, "before"), "before");
        // far more clients than fds: the kernel queues them, the proxy runs out
        const clients: net.Socket[] = [];
        // (on Deno and Bun the stream engine closes its listening socket while
        // out of fds, so later ones are refused or reset: that is fine)
        for (let i = 0; i < 60; i++) {
          const s = await connect(port).catch(() => undefined);
          s?.on("error", () => {});
          if (s) clients.push(s);
        }
        let most = 0;
        for (const end = Date.now() + 1000; Date.now() < end; await sleep(20)) {
          if (child.exitCode !== null || child.signalCode !== null) break;
          most = Math.max(most, fdsOf(pid));
        }
        assert.ok(
          child.exitCode === null && child.signalCode === null,
          `the proxy died (${child.exitCode ?? child.signalCode}): ${output.err.slice(-1500)}`,
        );
        assert.ok(
          most >= limit - 2 || output.err.includes("Too many open files"),
          `the proxy ran out of fds (at most ${most} of ${limit}): ${output.err}`,
        );
        // out of fds, the process must idle rather than spin on accept(2)
        const cpu0 = cpuOf(pid);
        await sleep(2000);
        const used = cpuOf(pid) - cpu0;
        assert.ok(used < 0.4, `the proxy used ${used.toFixed(2)} s of CPU in 2 s while out of fds`);
        const t0 = Date.now();
        assert.equal(
          child.exitCode,
          null,
          `the proxy died (${child.signalCode}): ${output.err.slice(-1500)}`,
        );
        for (const s of clients) s.destroy();
        await Promise.all(clients.map(closed));
        // recovery: a new client is served again
        let answer = "";
        const until = Date.now() + 10_000;
        while (Date.now() < until) {
          answer = await roundTrip(port, "after").catch((e) => String(e));
          if (answer === "after") break;
          await sleep(100);
        }
        assert.equal(
          answer,
          "after",
          `no recovery (${fdsOf(pid)} of ${limit} fds open): ${output.err}`,
        );
        console.log(
          `out of fds (${engine}): ${
            used.toFixed(2)
          } s CPU in 2 s; served again ${(Date.now() - t0)} ms after the clients left`,
        );
        await waitFd(pid, base + 4);
      } finally {
        child.kill("SIGKILL");
        await echo.close();
      }
    });
  });
}

/** The relaykit command forwarding to `to` (with --verbose): its port and output. */
async function forwardCli(engine: string, to: number, nofile = 4096) {
  const proxy = await startLimited([
    "forward",
    "--listen",
    "127.0.0.1:0",
    "--to",
    `127.0.0.1:${to}`,
    "--engine",
    engine,
    "--verbose",
  ], nofile);
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(proxy.output.out.split("\n")[0]!)![1]);
  return { ...proxy, port, pid: proxy.child.pid! };
}

/** VmRSS of process `pid` in bytes. */
function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

/** Wait for `re` to appear in the proxy's output; resolve with its match. */
async function outputLine(
  output: { out: string },
  re: RegExp,
  ms = 5000,
): Promise<RegExpExecArray> {
  const end = Date.now() + ms;
  for (;;) {
    const m = re.exec(output.out);
    if (m) return m;
    if (Date.now() > end) throw new Error(`no ${re} in ${JSON.stringify(output.out)}`);
    await sleep(20);
  }
}

/** Write `chunk` until the socket stops taking bytes for `stallMs`; the bytes taken. */
async function writeUntilStalled(s: net.Socket, chunk: Uint8Array, stallMs: number, max: number) {
  let taken = 0;
  while (taken < max) {
    if (s.write(chunk)) {
      taken += chunk.length;
      continue;
    }
    const drained = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), stallMs);
      s.once("drain", () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    taken += chunk.length;
    if (!drained) return { taken, stalled: true };
  }
  return { taken, stalled: false };
}

// Accept one connection, read 64 KiB, then stop reading (bytes pile up unread).
const STOPS_READING = "import socket,time\n" +
  "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(8)\n" +
  "print(s.getsockname()[1])\n" +
  "c,_=s.accept(); c.recv(65536); print('reading stopped')\n" +
  "time.sleep(120)";

// Connect to the port given, send a line, then never read again.
const CLIENT_STOPS_READING = "import socket,sys,time\n" +
  "c=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n" +
  "c.sendall(b'hello\\n'); print(c.getsockname()[1])\n" +
  "time.sleep(120)";

for (const engine of ENGINES) {
  describe(`faults mid-stream (${engine} engine)`, () => {
    test("backend killed: the relay ends as reset, the client is closed, no fd is left", async () => {
      const backend = await pythonPeer(STOPS_READING);
      const proxy = await forwardCli(engine, backend.port);
      const base = fdsOf(proxy.pid);
      try {
        const client = await connect(proxy.port);
        let clientError = "";
        client.on("error", (e: Error & { code?: string }) => clientError = e.code ?? e.message);
        const sent = await writeUntilStalled(client, new Uint8Array(65536), 500, 64 << 20);
        assert.ok(sent.stalled, "the backend's unread bytes stall the client");
        backend.child.kill("SIGKILL");
        await closed(client);
        const m = await outputLine(proxy.output, /#\d+ (\w[\w-]*) after/);
        assert.equal(m[1], "reset", proxy.output.out);
        assert.equal(clientError, "ECONNRESET", "the reset reaches the client");
        await waitFd(proxy.pid, base);
      } finally {
        proxy.child.kill("SIGKILL");
        backend.child.kill("SIGKILL");
      }
    });

    test("client killed: the relay ends as reset, the backend is closed, no fd is left", async () => {
      let backendSock: net.Socket | undefined;
      const backend = await server((s) => backendSock = s);
      const proxy = await forwardCli(engine, backend.port);
      const base = fdsOf(proxy.pid);
      const client = await pythonPeer(CLIENT_STOPS_READING, [String(proxy.port)]);
      try {
        await waitFor(() => backendSock !== undefined, 5000, "the backend's connection");
        let backendError = "";
        backendSock!.on("error", (e: Error & { code?: string }) => backendError = e.code ?? "");
        const sent = await writeUntilStalled(backendSock!, new Uint8Array(65536), 500, 64 << 20);
        assert.ok(sent.stalled, "the client's unread bytes stall the backend");
        client.child.kill("SIGKILL");
        await closed(backendSock!);
        const m = await outputLine(proxy.output, /#\d+ (\w[\w-]*) after/);
        assert.equal(m[1], "reset", proxy.output.out);
        assert.equal(backendError, "ECONNRESET", "the reset reaches the backend");
        await waitFd(proxy.pid, base);
      } finally {
        proxy.child.kill("SIGKILL");
        client.child.kill("SIGKILL");
        await backend.close();
      }
    });

    test("backend stops reading: the client is held back, memory stays flat, nothing is lost", async () => {
      let backendSock: net.Socket | undefined;
      const backend = await server((s) => {
        backendSock = s;
        s.pause();
      });
      const proxy = await forwardCli(engine, backend.port);
      try {
        const client = await connect(proxy.port);
        client.on("error", () => {});
        await waitFor(() => backendSock !== undefined, 5000, "the backend's connection");
        const rss0 = rssOf(proxy.pid);
        const data = new Stream(7);
        const chunk = data.bytes(65536);
        const sent = await writeUntilStalled(client, chunk, 1000, 256 << 20);
        assert.ok(sent.stalled, `the client is held back (took ${sent.taken} bytes)`);
        // what the kernels and the proxy hold between them is bounded
        assert.ok(sent.taken < 48 << 20, `only ${sent.taken >> 20} MiB taken of 256 MiB offered`);
        const grew = rssOf(proxy.pid) - rss0;
        console.log(
          `backend not reading (${engine}): client held back after ${
            (sent.taken / 2 ** 20).toFixed(1)
          } MiB; proxy RSS +${(grew / 2 ** 20).toFixed(1)} MiB`,
        );
        assert.ok(grew < 16 << 20, `the proxy's RSS grew by ${grew >> 20} MiB`);
        // the backend reads again: every byte arrives, in order
        const got = createHash("sha256");
        let n = 0;
        backendSock!.on("data", (d: Uint8Array) => {
          got.update(d);
          n += d.length;
        });
        const end = new Promise((r) => backendSock!.once("end", r));
        backendSock!.resume();
        client.end();
        await end;
        backendSock!.end();
        const want = createHash("sha256");
        for (let i = 0; i < sent.taken / chunk.length; i++) want.update(chunk);
        assert.equal(n, sent.taken);
        assert.equal(got.digest("hex"), want.digest("hex"));
        await outputLine(proxy.output, /#\d+ done after/);
      } finally {
        proxy.child.kill("SIGKILL");
        await backend.close();
      }
    });
  });
}

/** Wait until process `pid` is back to `base` fds (or fewer). */
async function waitFd(pid: number, base: number): Promise<void> {
  await waitFor(() => fdsOf(pid) <= base, 5000, `fds of the proxy back to ${base} (${fdsOf(pid)})`);
}

/** Send one byte of `text` every `gapMs` until it is all sent or the socket closes. */
function trickle(s: net.Socket, text: string, gapMs: number): Promise<number> {
  return new Promise((resolve) => {
    let i = 0;
    const t0 = Date.now();
    const timer = setInterval(() => {
      if (s.destroyed || s.writableEnded || i >= text.length) return;
      s.write(text[i++]!);
    }, gapMs);
    s.once("close", () => {
      clearInterval(timer);
      resolve(Date.now() - t0);
    });
  });
}

for (const engine of ENGINES) {
  describe(`slow and hostile clients (${engine} engine)`, () => {
    async function routed(extra: Partial<TcpProxyOptions>) {
      if (engine === "native") nativeEngine();
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        ...extra,
      });
      const ends: ConnectionEnd[] = [];
      const errors: string[] = [];
      proxy.on("close", (e) => ends.push(e)).on("error", (e) => errors.push(e.code));
      // a normal client: a line, echoed back
      const normal = async () => {
        const t0 = Date.now();
        assert.equal(await roundTrip(proxy.port, "GET /\n", 5000), "GET /\n");
        return Date.now() - t0;
      };
      return { proxy, ends, errors, normal };
    }
    const lineRoute = (to: number) => (data: Uint8Array) =>
      data.includes(10) ? { remote: { host: "127.0.0.1", port: to } } : undefined;

    const trickled: [string, (echo: number) => Partial<TcpProxyOptions>, string][] = [
      [
        "a client sending a byte at a time while routing is cut at the routing timeout",
        (echo) => ({ route: lineRoute(echo), routeTimeout: 1000 }),
        "GET /slow HTTP/1.1 and never a newline",
      ],
      [
        "a client sending its PROXY header a byte at a time is cut at the header timeout",
        (echo) => ({
          target: { host: "127.0.0.1", port: echo },
          acceptProxy: { mode: "v1", timeout: 1000 },
        }),
        "PROXY TCP4 10.1.2.3 10.0.0.1 40000 80\r\n",
      ],
    ];
    for (const [title, options, text] of trickled) {
      test(title, async () => {
        const echo = await echoServer();
        const { proxy, ends } = await routed(options(echo.port));
        try {
          const s = await connect(proxy.port);
          s.on("error", () => {});
          const lasted = await trickle(s, text, 100);
          assert.ok(lasted >= 900 && lasted < 2500, `cut after ${lasted} ms, not at 1000`);
          await waitFor(() => ends.length === 1, 3000, "the end");
          assert.equal(ends[0]!.reason, "decision-timeout");
        } finally {
          await proxy.close();
          await echo.close();
        }
      });
    }

    test("1,000 slow clients do not keep normal clients from being served", {
      timeout: 30_000,
    }, async () => {
      const echo = await echoServer();
      const { proxy, ends, normal } = await routed(
        { route: lineRoute(echo.port), routeTimeout: 6000 },
      );
      try {
        const slow: net.Socket[] = [];
        for (let i = 0; i < 1000; i += 100) {
          const batch = await Promise.all(
            Array.from({ length: 100 }, () => connect(proxy.port)),
          );
          for (const s of batch) s.on("error", () => {});
          slow.push(...batch);
        }
        // each slow client sends a byte a second
        const cut = slow.map((s) => trickle(s, "x".repeat(60), 1000));
        const waits: number[] = [];
        for (let round = 0; round < 10; round++) {
          waits.push(...await Promise.all(Array.from({ length: 5 }, normal)));
          await sleep(100);
        }
        waits.sort((a, b) => a - b);
        console.log(
          `normal clients beside 1,000 slow ones (${engine}): median ${
            waits[waits.length >> 1]
          } ms, max ${waits[waits.length - 1]} ms`,
        );
        assert.equal(waits.length, 50);
        assert.ok(waits[waits.length - 1]! < 3000, `served within 3 s (max ${waits.at(-1)} ms)`);
        // and every slow client is cut at the routing timeout
        const lasted = await Promise.all(cut);
        assert.ok(Math.max(...lasted) < 12_000, `slow clients cut (${Math.max(...lasted)} ms)`);
        await waitFor(() => ends.length >= 1050, 5000, "every end");
        assert.equal(ends.filter((e) => e.reason === "decision-timeout").length, 1000);
      } finally {
        await proxy.close();
        await echo.close();
      }
    });

    test("first bytes over the routing limit are refused at the limit", async () => {
      const echo = await echoServer();
      const { proxy, ends, errors } = await routed({
        route: lineRoute(echo.port),
        routeLimit: 64 * 1024,
      });
      try {
        const s = await connect(proxy.port);
        s.on("error", () => {}).on("data", () => {});
        // up to 64 MiB without a newline, until the proxy refuses them
        const chunk = new Uint8Array(65536).fill(0x41);
        let sent = 0;
        while (errors.length === 0 && !s.destroyed && sent < 64 << 20) {
          if (!s.write(chunk)) await new Promise((r) => setTimeout(r, 5));
          sent += chunk.length;
          await new Promise((r) => setImmediate(r));
        }
        assert.deepEqual(errors, ["RK_EROUTE_LIMIT"]);
        assert.ok(sent < 8 << 20, `refused after ${sent >> 10} KiB, not 64 MiB`);
        s.destroy();
        await waitFor(() => ends.length === 1, 5000, "the end");
      } finally {
        await proxy.close();
        await echo.close();
      }
    });
  });
}

// An asyncio echo server for many connections (its fd limit raised by prlimit).
const MANY_ECHO = "import asyncio\n" +
  "async def h(r,w):\n" +
  "  try:\n" +
  "    while True:\n" +
  "      d=await r.read(65536)\n" +
  "      if not d: break\n" +
  "      w.write(d); await w.drain()\n" +
  "    w.write_eof(); await w.drain()\n" +
  "  except Exception: pass\n" +
  "  w.close()\n" +
  "async def main():\n" +
  "  s=await asyncio.start_server(h,'127.0.0.1',0,backlog=4096)\n" +
  "  print(s.sockets[0].getsockname()[1],flush=True)\n" +
  "  await s.serve_forever()\n" +
  "asyncio.run(main())";

// N clients through the proxy at argv[1], all open at once: each sends its
// own 1 KiB and checks the echo; prints "open" and waits for a line on
// stdin; then each sends 1 KiB more, checks it, half-closes, expects EOF.
const MANY_CLIENTS = "import asyncio,hashlib,sys\n" +
  "port=int(sys.argv[1]); n=int(sys.argv[2])\n" +
  "print(0,flush=True)\n" +
  "async def main():\n" +
  "  gate=asyncio.Semaphore(256); go=asyncio.Event(); bad=[]; opened=[0]\n" +
  "  async def one(i):\n" +
  "    async with gate:\n" +
  "      r,w=await asyncio.open_connection('127.0.0.1',port)\n" +
  "      a=hashlib.sha256(b'a%d'%i).digest()*32\n" +
  "      w.write(a); await w.drain()\n" +
  "      if await r.readexactly(len(a))!=a: bad.append(i)\n" +
  "    opened[0]+=1\n" +
  "    await go.wait()\n" +
  "    b=hashlib.sha256(b'b%d'%i).digest()*32\n" +
  "    w.write(b); await w.drain(); w.write_eof()\n" +
  "    if await r.readexactly(len(b))!=b or await r.read()!=b'': bad.append(i)\n" +
  "    w.close()\n" +
  "  tasks=[asyncio.create_task(one(i)) for i in range(n)]\n" +
  "  while opened[0]<n:\n" +
  "    await asyncio.sleep(0.05)\n" +
  "    if any(t.done() and t.exception() for t in tasks): break\n" +
  "  print('open',opened[0],flush=True)\n" +
  "  await asyncio.get_running_loop().run_in_executor(None,sys.stdin.readline)\n" +
  "  go.set()\n" +
  "  res=await asyncio.gather(*tasks,return_exceptions=True)\n" +
  "  errs=[r for r in res if isinstance(r,Exception)]\n" +
  "  print('done',n-len(bad)-len(errs),len(bad),len(errs),repr(errs[:1]),flush=True)\n" +
  "asyncio.run(main())";

/** The hard RLIMIT_NOFILE of this process: what prlimit can give a child. */
function hardFdLimit(): number {
  const m = /^Max open files\s+\d+\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  return m ? Number(m[1]) : 1024;
}

/** The relaykit processes to measure: the workers of a supervisor, or itself. */
function proxyPids(pid: number): number[] {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
  return kids === "" ? [pid] : kids.split(" ").map(Number);
}

describe("scale (native engine)", () => {
  test("10,000 concurrent relays, each byte-exact", { timeout: 120_000 }, async () => {
    const N = 10_000;
    // a relay holds two fds; above the hard limit (20,000 here, and only a
    // privileged process may raise it) two workers share the port
    const hard = hardFdLimit();
    const workers = hard >= 2 * N + 256 ? 1 : 2;
    const nofile = Math.min(hard, 4 * N);
    const echo = await pythonPeer(MANY_ECHO, [], nofile);
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "relaykit-scale-"));
    const file = join(dir, "scale.yaml");
    writeFileSync(
      file,
      `listeners:\n  - { name: many, address: 127.0.0.1, port: ${port}, backend: echo }\n` +
        `backends:\n  - { name: echo, host: 127.0.0.1, port: ${echo.port} }\n`,
    );
    const proxy = await startLimited(
      ["run", file, "--engine", "native", ...(workers > 1 ? ["--workers", String(workers)] : [])],
      nofile,
    );
    const sum = (f: (pid: number) => number) =>
      proxyPids(proxy.child.pid!).reduce((n, pid) => n + f(pid), 0);
    try {
      await waitFor(
        () => (proxy.output.out + proxy.output.err).split("listening").length > workers,
        10_000,
        "listening",
      );
      assert.equal(proxyPids(proxy.child.pid!).length, workers);
      const idleRss = sum(rssOf);
      const base = sum(fdsOf);
      const clients = await pythonPeer(MANY_CLIENTS, [String(port), String(N)], nofile);
      try {
        await waitFor(() => clients.lines.length >= 2, 90_000, "all clients connected");
        assert.equal(clients.lines[1], `open ${N}`);
        const fds = sum(fdsOf) - base;
        const rss = sum(rssOf) - idleRss;
        console.log(
          `10,000 relays in ${workers} process(es): ${fds} fds, RSS +${
            (rss / 2 ** 20).toFixed(1)
          } MiB (${Math.round(rss / N)} B per relay)`,
        );
        assert.ok(fds >= 2 * N, `all ${N} relays open at once (${fds} fds)`);
        clients.child.stdin!.write("go\n");
        await waitFor(() => clients.lines.length >= 3, 60_000, "all clients done");
        assert.equal(clients.lines[2], `done ${N} 0 0 []`);
        await waitFor(() => sum(fdsOf) <= base, 10_000, `fds back to ${base} (${sum(fdsOf)})`);
      } finally {
        clients.child.kill("SIGKILL");
      }
    } finally {
      proxy.child.kill("SIGTERM");
      echo.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
