/**
 * One conformance suite for every engine: the same behaviour on native and
 * stream, on Deno and Bun. A difference between engines is a failing test.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "./_test.ts";
import { TcpProxy, type TcpProxyOptions } from "../mod.ts";
import {
  allWithin,
  blackHole,
  closed,
  connect,
  echoServer,
  ENGINES,
  expectedHash,
  fdCount,
  freePort,
  nativeEngine,
  pythonServer,
  receiveAll,
  sendRandom,
  server,
  sleep,
  waitFor,
  watchedProxy,
} from "./_helpers.ts";

/** A proxy on `engine` to 127.0.0.1:`port`, its ends and errors collected. */
function proxyTo(engine: "native" | "stream", port: number, extra: Partial<TcpProxyOptions> = {}) {
  return watchedProxy(engine, { target: { host: "127.0.0.1", port }, ...extra });
}

for (const engine of ENGINES) {
  describe(`${engine} engine: TCP proxy`, () => {
    const cleanups: (() => Promise<void> | void)[] = [];
    after(async () => {
      for (const c of cleanups.reverse()) await c();
    });

    test("relays 64 MiB each way at once, byte-exact, in random chunk sizes", async () => {
      // Each connection: the client sends an 8-byte header (seed, size),
      // then `size` random bytes; the backend answers with its own `size`
      // random bytes from seed+1. Both ends hash what they receive.
      const received = new Map<number, Promise<{ bytes: number; sha256: string }>>();
      const backend = await server((s) => {
        s.once("readable", function first() {
          const head = s.read(8) as Uint8Array | null;
          if (head === null) return s.once("readable", first);
          const dv = new DataView(head.buffer, head.byteOffset, 8);
          const seed = dv.getUint32(0), size = dv.getUint32(4);
          received.set(seed, receiveAll(s));
          void sendRandom(s, size, seed + 1);
        });
      });
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      cleanups.push(() => proxy.abort());
      const conns = 4, size = 16 * 1024 * 1024;
      await Promise.all(Array.from({ length: conns }, async (_, i) => {
        const seed = 1000 + i * 17;
        const c = await connect(proxy.port);
        const head = new Uint8Array(8);
        new DataView(head.buffer).setUint32(0, seed);
        new DataView(head.buffer).setUint32(4, size);
        c.write(head);
        const [sent, got] = await Promise.all([sendRandom(c, size, seed), receiveAll(c)]);
        assert.equal(got.bytes, size, "bytes from backend to client");
        assert.equal(got.sha256, expectedHash(size, seed + 1), "backend to client content");
        await waitFor(() => received.has(seed), 5000, "backend connection");
        const atBackend = await received.get(seed)!;
        assert.equal(atBackend.bytes, size, "bytes from client to backend");
        assert.equal(atBackend.sha256, sent, "client to backend content");
        c.destroy();
      }));
      await waitFor(() => ends.length === conns, 5000, "close events");
      for (const e of ends) {
        assert.equal(e.reason, "done");
        assert.equal(e.aToB.written, size + 8);
        assert.equal(e.aToB.read, size + 8);
        assert.equal(e.bToA.written, size);
      }
    });

    test("a client that shuts down its write side still receives the whole response", async () => {
      const response = new Uint8Array(1024 * 1024).fill(0x61);
      const backend = await server((s) => {
        let got = 0;
        s.on("data", (d: Uint8Array) => got += d.length);
        s.on("end", () => {
          assert.equal(got, 7);
          s.end(response);
        });
      });
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      cleanups.push(() => proxy.abort());
      const c = await connect(proxy.port);
      c.end("request");
      const got = await receiveAll(c);
      assert.equal(got.bytes, response.length);
      await waitFor(() => ends.length === 1, 5000, "close event");
      assert.equal(ends[0]!.reason, "done");
      assert.equal(ends[0]!.bToA.written, response.length);
    });

    test("a backend that shuts down first still receives what the client sends after", async () => {
      let late: Promise<{ bytes: number }> | undefined;
      const backend = await server((s) => {
        late = receiveAll(s);
        s.end("banner\n");
      });
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      cleanups.push(() => proxy.abort());
      const c = await connect(proxy.port);
      const banner = await receiveAll(c);
      assert.equal(banner.bytes, 7);
      c.end(new Uint8Array(300_000).fill(1)); // after the backend's FIN
      await waitFor(() => late !== undefined, 5000, "backend connection");
      assert.equal((await late!).bytes, 300_000);
      await waitFor(() => ends.length === 1, 5000, "close event");
      assert.equal(ends[0]!.reason, "done");
    });

    test("backends that answer and close at once: 300 silent clients each get the answer, then EOF", async () => {
      // A backend in its own process, answering and closing as it accepts:
      // the answer and its FIN often come before the proxy has seen its
      // connect done, and that EOF has no edge of its own later.
      const backend = await pythonServer(
        "import socket\n" +
          "s=socket.socket()\n" +
          "s.bind(('127.0.0.1',0))\n" +
          "s.listen(1024)\n" +
          "print(s.getsockname()[1],flush=True)\n" +
          "while True:\n" +
          "  c,_=s.accept()\n" +
          "  c.sendall(b'hello\\n')\n" +
          "  c.close()",
      );
      cleanups.push(() => backend.stop());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      cleanups.push(() => proxy.abort());
      const got = await allWithin(300, 5000, "clients had the answer and EOF", async () => {
        const c = await connect(proxy.port);
        const r = await receiveAll(c); // the answer, then the backend's EOF
        c.end();
        return r;
      });
      assert.deepEqual(got.filter((g) => g.bytes !== 6), []);
      await waitFor(() => ends.length === 300, 10_000, "300 close events");
      assert.deepEqual(ends.filter((e) => e.reason !== "done").map((e) => e.reason), []);
    });

    test("a refused backend closes the client and reports ECONNREFUSED", async () => {
      const port = await freePort();
      const { proxy, ends, errors } = await proxyTo(engine, port);
      cleanups.push(() => proxy.abort());
      const c = await connect(proxy.port);
      const got = await receiveAll(c);
      assert.equal(got.bytes, 0);
      await waitFor(() => ends.length === 1, 5000, "close event");
      assert.equal(ends[0]!.reason, "connect-failed");
      assert.equal(ends[0]!.error?.code, "ECONNREFUSED");
      assert.match(
        ends[0]!.error!.message,
        new RegExp(`Cannot connect to "127.0.0.1:${port}": connection refused`),
      );
      assert.equal(errors.length, 1);
    });

    test("a backend that never answers times out with ETIMEDOUT", async () => {
      const hole = await blackHole();
      cleanups.push(() => hole.stop());
      const { proxy, ends } = await proxyTo(engine, hole.port, { connectTimeout: 300 });
      cleanups.push(() => proxy.abort());
      const t0 = Date.now();
      const c = await connect(proxy.port);
      await receiveAll(c).catch(() => ({ bytes: 0 }));
      await waitFor(() => ends.length === 1, 5000, "close event");
      const took = Date.now() - t0;
      assert.equal(ends[0]!.reason, "connect-failed");
      assert.equal(ends[0]!.error?.code, "ETIMEDOUT");
      assert.ok(took >= 250 && took < 3000, `timed out after ${took} ms`);
    });

    test("a client reset mid-stream resets the backend and ends the relay as reset", async () => {
      let backendSock: net.Socket | undefined;
      const backend = await server((s) => {
        backendSock = s;
        s.on("data", () => {});
      });
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      cleanups.push(() => proxy.abort());
      const c = await connect(proxy.port);
      c.write(new Uint8Array(100_000));
      await waitFor(() => backendSock !== undefined, 5000, "backend connection");
      await sleep(50);
      c.resetAndDestroy();
      await closed(backendSock!);
      await waitFor(() => ends.length === 1, 5000, "close event");
      assert.equal(ends[0]!.reason, "reset");
      assert.equal(ends[0]!.error?.code, "ECONNRESET");
    });

    test("a backend reset mid-stream reaches the client as a reset", async () => {
      const backend = await server((s) => {
        s.write(new Uint8Array(10_000));
        setTimeout(() => s.resetAndDestroy(), 50);
      });
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      cleanups.push(() => proxy.abort());
      const c = await connect(proxy.port);
      const err = await receiveAll(c).then(() => undefined, (e: NodeJS.ErrnoException) => e);
      assert.equal(err?.code, "ECONNRESET");
      await waitFor(() => ends.length === 1, 5000, "close event");
      assert.equal(ends[0]!.reason, "reset");
    });

    test("serves 500 concurrent connections", async () => {
      const backend = await echoServer();
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      cleanups.push(() => proxy.abort());
      const socks = await Promise.all(Array.from({ length: 500 }, () => connect(proxy.port)));
      await waitFor(() => proxy.connections === 500, 5000, "500 open connections");
      const replies = await Promise.all(socks.map((s, i) => {
        const p = receiveAll(s);
        s.end(`hello ${i}`);
        return p;
      }));
      replies.forEach((r, i) => assert.equal(r.bytes, `hello ${i}`.length));
      await waitFor(() => ends.length === 500, 10_000, "500 close events");
      assert.ok(ends.every((e) => e.reason === "done"));
      assert.equal(proxy.connections, 0);
    });

    test("after 1,000 connections the fd count is back to its baseline", async () => {
      const backend = await echoServer();
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      cleanups.push(() => proxy.abort());
      // one connection first, so lazily created runtime resources exist
      const w = await connect(proxy.port);
      w.end("x");
      await receiveAll(w);
      await waitFor(() => ends.length === 1 && backend.sockets.size === 0, 5000, "warm-up");
      await sleep(300);
      const baseline = fdCount();
      for (let batch = 0; batch < 10; batch++) {
        const socks = await Promise.all(Array.from({ length: 100 }, () => connect(proxy.port)));
        await Promise.all(socks.map((s) => {
          const p = receiveAll(s);
          s.end("ping");
          return p.then(() => s.destroy());
        }));
      }
      await waitFor(() => ends.length === 1001, 10_000, "1,000 close events");
      await waitFor(() => backend.sockets.size === 0, 5000, "backend sockets closed");
      let now = fdCount();
      await waitFor(() => (now = fdCount()) <= baseline, 5000, `fd count ${baseline} (now ${now})`);
      assert.ok(now <= baseline);
    });

    test("connections over maxConnections are closed at once and reported", async () => {
      const backend = await echoServer();
      cleanups.push(() => backend.close());
      const { proxy, errors } = await proxyTo(engine, backend.port, { maxConnections: 2 });
      cleanups.push(() => proxy.abort());
      const a = await connect(proxy.port), b = await connect(proxy.port);
      await waitFor(() => proxy.connections === 2, 5000, "2 connections");
      const c = await connect(proxy.port);
      const got = await receiveAll(c).catch(() => ({ bytes: -1 }));
      assert.ok(got.bytes <= 0);
      await waitFor(() => errors.length === 1, 5000, "limit error");
      assert.equal((errors[0] as { code?: string }).code, "RK_ELIMIT");
      a.destroy();
      b.destroy();
    });

    test("an idle connection is closed after idleTimeout", async () => {
      const backend = await echoServer();
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port, { idleTimeout: 200 });
      cleanups.push(() => proxy.abort());
      const t0 = Date.now();
      const c = await connect(proxy.port);
      c.write("one");
      await receiveAll(c).catch(() => {});
      await waitFor(() => ends.length === 1, 5000, "close event");
      const took = Date.now() - t0;
      assert.equal(ends[0]!.reason, "idle-timeout");
      assert.ok(took >= 180 && took < 2000, `closed after ${took} ms`);
    });

    test("listens on IPv6 and on a Unix socket, and proxies to a Unix socket target", async () => {
      const dir = mkdtempSync(join(tmpdir(), "relaykit-unix-"));
      const backendPath = join(dir, "backend.sock");
      const backend = net.createServer((s) => s.pipe(s));
      await new Promise<void>((r) => backend.listen(backendPath, r));
      if (engine === "native") nativeEngine();
      const v6 = await TcpProxy.listen({
        listen: { host: "::1", port: 0 },
        target: { path: backendPath },
        engine,
      });
      const opened: { host: string; port: number }[] = [];
      v6.on("open", (info) => info.remote && opened.push(info.remote));
      const tcpEcho = await echoServer();
      const unixListen = join(dir, "proxy.sock");
      const unix = await TcpProxy.listen({
        listen: { path: unixListen },
        target: { host: "127.0.0.1", port: tcpEcho.port },
        engine,
      });
      try {
        assert.deepEqual(unix.address, { path: unixListen });
        const through = async (opts: net.NetConnectOpts, text: string) => {
          const c = net.connect(opts);
          const reply = receiveAll(c);
          c.end(text);
          return (await reply).bytes;
        };
        assert.equal(await through({ host: "::1", port: v6.port }, "over IPv6"), 9);
        // the engine's open event may come after the reply (the native
        // engine posts it through its event queue)
        await waitFor(() => opened.length > 0, 5000, "the open event");
        assert.equal(opened[0]?.host, "::1");
        assert.equal(await through({ path: unixListen }, "over a Unix socket"), 18);
      } finally {
        await v6.abort();
        await unix.abort();
        await tcpEcho.close();
        await new Promise<void>((r) => backend.close(() => r()));
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test("close() stops accepting and waits for open connections; abort() resets them", async () => {
      const backend = await echoServer();
      cleanups.push(() => backend.close());
      const { proxy, ends } = await proxyTo(engine, backend.port);
      const c = await connect(proxy.port);
      await waitFor(() => proxy.connections === 1, 5000, "connection");
      let closedDone = false;
      const closing = proxy.close().then(() => closedDone = true);
      // the listening socket closes on the engine's own time (the native
      // engine's workers let go of it one by one): within a bound, not at once
      const refusedBy = Date.now() + 5000;
      let late = 0; // connects that got in before it closed
      for (;;) {
        const s = await connect(proxy.port).then((s) => s, () => undefined);
        if (s === undefined) break;
        late++;
        s.destroy();
        assert.ok(Date.now() < refusedBy, "the listener still accepts 5 s after close()");
        await sleep(20);
      }
      assert.equal(closedDone, false, "close() waits for the open connection");
      c.end();
      await closing;
      assert.ok(ends.length >= 1 && ends.length <= 1 + late, `${ends.length} ends, ${late} late`);

      const second = await proxyTo(engine, backend.port);
      const d = await connect(second.proxy.port);
      const dEnd = receiveAll(d).then(() => "end", (e: NodeJS.ErrnoException) => e.code);
      await waitFor(() => second.proxy.connections === 1, 5000, "connection");
      await second.proxy.abort();
      assert.equal(await dEnd, "ECONNRESET");
      assert.equal(second.ends[0]?.reason, "closed");
    });

    test("stopAccepting() resolves once the socket is closed: the next connect is refused, open ones go on", async () => {
      const backend = await echoServer();
      cleanups.push(() => backend.close());
      for (let i = 0; i < 20; i++) {
        const { proxy } = await proxyTo(engine, backend.port);
        const c = await connect(proxy.port);
        await waitFor(() => proxy.connections === 1, 5000, "connection");
        await proxy.stopAccepting();
        await assert.rejects(connect(proxy.port), `round ${i}: a connect after stopAccepting()`);
        const echoed = new Promise<Buffer>((r) => c.once("data", r));
        c.write("on");
        assert.equal((await echoed).toString(), "on", "the open connection goes on");
        await proxy.stopAccepting(); // twice: the same answer
        c.end();
        await proxy.drained();
      }
    });
  });
}

/** Sockets in LISTEN state on TCP `port` (this network namespace, IPv4). */
function listeningSockets(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)
    .filter((line) => {
      const f = line.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hex}`) === true && f[3] === "0A";
    }).length;
}

// (native only: the stream engine has no socket to give, and binds beside;
// Node has no FFI)
if (ENGINES.includes("native")) {
  describe("native engine: a proxy that replaces another", () => {
    test("takes its socket: clients connecting all through the switch are served, none reset", async () => {
      nativeEngine();
      const backend = await echoServer();
      const options = (extra: Partial<TcpProxyOptions>): TcpProxyOptions => ({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: backend.port },
        engine: "native",
        reusePort: true,
        ...extra,
      });
      const old = await TcpProxy.listen(options({}));
      let next: TcpProxy | undefined;
      let stop = false, served = 0;
      const failed: string[] = [];
      const load = (async () => {
        while (!stop) {
          await Promise.all(Array.from({ length: 8 }, async () => {
            try {
              const s = await connect(old.port);
              const reply = receiveAll(s);
              s.end("ping");
              const got = await reply;
              if (got.bytes === 4) served++;
              else failed.push(`${got.bytes} bytes back`);
            } catch (err) {
              failed.push((err as NodeJS.ErrnoException).code ?? String(err));
            }
          }));
        }
      })();
      try {
        await waitFor(() => served >= 40, 5000, "clients served by the old proxy");
        next = await TcpProxy.listen(options({ listen: old.address, replaces: old }));
        assert.equal(next.engine, "native");
        assert.equal(listeningSockets(old.port), 1, "one socket listens on the port, not two");
        const before = served;
        await old.close();
        await waitFor(() => served >= before + 80, 5000, "clients served after the switch");
      } finally {
        stop = true;
        await load;
        await next?.close();
        await old.abort();
        await backend.close();
      }
      assert.deepEqual(failed, [], "every client got its echo");
    });
  });
}
