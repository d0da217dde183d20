/**
 * A proxy's counters and open connections, read from its engine
 * (TcpProxy.totals, openConnections) on both engines; and on the native
 * engine, that watching a proxy through the admin API, and `relaykit run`
 * without an access log, cost no event per connection: the counters come
 * from the library when asked.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "./_test.ts";
import {
  closed,
  connect,
  echoServer,
  ENGINES,
  freePort,
  nativeEngine,
  waitFor,
} from "./_helpers.ts";
import { TcpProxy } from "../mod.ts";
import { NativeEngine } from "../src/native/engine.ts";
import { ProxyTarget } from "../src/admin/proxy_target.ts";
import { LocalSource } from "../src/admin/local.ts";
import { Runner } from "../src/config/run.ts";

const dir = mkdtempSync(join(tmpdir(), "relaykit-totals-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Send `text` and wait for it to come back (an echo behind the proxy). */
function roundTrip(s: net.Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = "";
    const timer = setTimeout(() => reject(new Error(`no echo of ${text.length} bytes`)), 5_000);
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.length < text.length) return;
      clearTimeout(timer);
      s.off("data", onData);
      resolve();
    };
    s.on("data", onData);
    s.write(text);
  });
}

/** One connection through `port`: `text` there and back, then closed by the client. */
async function oneExchange(port: number, text: string): Promise<void> {
  const s = await connect(port);
  await roundTrip(s, text);
  s.end();
  await closed(s);
}

function source(proxy: TcpProxy): LocalSource {
  const target = new ProxyTarget(proxy, {
    name: "forward",
    route: "echo",
    limit: 0,
    command: "forward",
  });
  return new LocalSource(target, {
    config: "",
    engine: proxy.engine,
    engineReason: undefined,
    log: () => {},
    access: () => {},
    metrics: false,
  });
}

for (const engine of ENGINES) {
  describe(`TcpProxy.totals and openConnections (${engine} engine)`, () => {
    test("counts, bytes, peak and the open list; final once drained", async () => {
      const echo = await echoServer();
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: echo.port },
        engine,
        ...(engine === "native" ? { nativeEngine: nativeEngine() } : {}),
      });
      const socks: net.Socket[] = [];
      try {
        for (let i = 0; i < 3; i++) {
          const s = await connect(proxy.port);
          socks.push(s);
          await roundTrip(s, "x".repeat(i + 1));
        }
        // a worker counts what it wrote once its write returned, and the
        // echo may be here before that: the counters settle, then all agree
        const settled = (c: ReturnType<typeof proxy.openConnections>[number], i: number) =>
          [c.aToB.read, c.aToB.written, c.bToA.read, c.bToA.written].every((n) => n === i + 1);
        await waitFor(
          () => proxy.openConnections().every(settled),
          5000,
          "each connection's counters at its bytes",
        );
        const open = proxy.openConnections();
        assert.deepEqual(
          open.map((c) => c.id),
          open.map((c) => c.id).sort((a, b) => a - b),
          "oldest first",
        );
        assert.equal(open.length, 3);
        for (const [i, c] of open.entries()) {
          assert.deepEqual(c.remote, { host: "127.0.0.1", port: socks[i]!.localPort });
          assert.deepEqual([c.aToB.written, c.bToA.written], [i + 1, i + 1], `connection ${i}`);
          assert.deepEqual([c.aToB.read, c.bToA.read], [i + 1, i + 1], `connection ${i}`);
          assert.equal(c.state, "relaying");
          assert.ok(Math.abs(Date.now() - c.startedAt) < 10_000, `startedAt ${c.startedAt}`);
          assert.ok(c.lastActivityAt >= c.startedAt, "last activity after the start");
          assert.deepEqual(proxy.stats(c.id)?.aToB, c.aToB, "the same counters as stats(id)");
        }
        // the oldest only, with how many are open
        const two = proxy.snapshot(2);
        assert.deepEqual([two.size, two.total], [2, 3]);
        assert.deepEqual([two.id(0), two.id(1)], [open[0]!.id, open[1]!.id]);
        assert.deepEqual([two.up(1), two.down(1)], [2, 2]);
        const none = proxy.snapshot(0);
        assert.deepEqual([none.size, none.total], [0, 3]);
        assert.equal(proxy.snapshot(10).size, 3);
        // a count far past what is open sizes nothing by it
        const far = proxy.snapshot(1e9 + 50);
        assert.deepEqual([far.size, far.total], [3, 3]);
        let t = proxy.totals();
        assert.deepEqual([t.accepted, t.open, t.ended, t.peak], [3, 3, 0, 3]);
        assert.deepEqual([t.bytesUp, t.bytesDown], [6, 6], "the open connections' bytes so far");
        socks[0]!.end();
        socks[1]!.end();
        await Promise.all([closed(socks[0]!), closed(socks[1]!)]);
        await waitFor(() => proxy.totals().ended === 2, 5_000, "two connections to end");
        t = proxy.totals();
        assert.deepEqual([t.accepted, t.open, t.peak, t.bytesUp, t.bytesDown], [3, 1, 3, 6, 6]);
        assert.deepEqual(proxy.openConnections().map((c) => c.id), [open[2]!.id]);
        await roundTrip(socks[2]!, "more");
        t = proxy.totals();
        assert.deepEqual([t.bytesUp, t.bytesDown], [10, 10], "counted as they move");
        socks[2]!.end();
        await closed(socks[2]!);
      } finally {
        for (const s of socks) s.destroy();
        await proxy.close();
        await echo.close();
      }
      // drained: the counters are final, and nothing is open
      const t = proxy.totals();
      assert.deepEqual([t.accepted, t.ended, t.open, t.bytesUp, t.bytesDown], [3, 3, 0, 10, 10]);
      assert.deepEqual(proxy.openConnections(), []);
    });

    test("connect failures by code, and what the admin API makes of the counters", async () => {
      const dead = await freePort(); // nobody listens there
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: dead },
        engine,
        ...(engine === "native" ? { nativeEngine: nativeEngine() } : {}),
      });
      const api = source(proxy);
      try {
        for (let i = 0; i < 2; i++) {
          const s = await connect(proxy.port);
          s.on("error", () => {});
          // closed by the proxy once its connect failed
          await new Promise((r) => {
            s.once("end", r);
            s.once("close", r);
          });
          s.destroy();
        }
        // (failures are counted as their ends reach JavaScript, a moment
        // after the engine counted the ends)
        await waitFor(
          () => proxy.totals().connectFailures.ECONNREFUSED === 2,
          5_000,
          "two refused connects to be counted",
        );
        assert.deepEqual(proxy.totals().connectFailures, { ECONNREFUSED: 2 });
        assert.equal(proxy.totals().ended, 2);
        const [l] = await api.listeners();
        assert.deepEqual(
          [l!.opened, l!.total, l!.current, l!.connect_failures],
          [2, 2, 0, { ECONNREFUSED: 2 }],
        );
      } finally {
        await proxy.close();
      }
    });
  });
}

if (ENGINES.includes("native")) {
  describe("what crosses into JavaScript per connection (native engine)", () => {
    test("a proxy watched by the admin API: no event per connection, counters all there", async () => {
      const engine = new NativeEngine({ threads: 1 }); // its events are this test's alone
      const echo = await echoServer();
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: echo.port },
        engine: "native",
        nativeEngine: engine,
      });
      const api = source(proxy);
      try {
        const before = engine.delivered;
        for (let i = 0; i < 40; i++) {
          await oneExchange(proxy.port, "ping");
          // ended in the engine too before the next opens: one open at most
          await waitFor(() => proxy.totals().ended === i + 1, 5_000, `connection ${i} to end`);
        }
        const [l] = await api.listeners();
        assert.deepEqual(
          [l!.opened, l!.total, l!.current, l!.peak, l!.bytes_in, l!.bytes_out],
          [40, 40, 0, 1, 160, 160],
        );
        assert.equal((await api.connections({ offset: 0, limit: 10 })).total, 0);
        assert.equal(engine.delivered - before, 0, "events delivered for 40 connections");
        // the measure itself: a listener for ends makes each connection report
        proxy.on("close", () => {});
        const with0 = engine.delivered;
        for (let i = 0; i < 10; i++) await oneExchange(proxy.port, "ping");
        await waitFor(() => engine.delivered - with0 >= 10, 5_000, "10 close events");
      } finally {
        await proxy.close();
        await echo.close();
        engine.close();
      }
    });

    test("relaykit run without an access log: no event per connection, counters in the metrics", async () => {
      // (a table entry with an address is decided in the library: a backend's
      // connections are held for JavaScript, which balances each)
      const engine = new NativeEngine({ threads: 1 });
      const echo = await echoServer();
      const port = await freePort();
      const file = join(dir, "run.yaml");
      writeFileSync(
        file,
        `listeners:\n  - { name: web, address: 127.0.0.1, port: ${port}, ` +
          `routes: [{ default: true, to: { host: 127.0.0.1, port: ${echo.port} } }] }\n`,
      );
      const runner = new Runner(file, {
        engine: "native",
        nativeEngine: engine,
        metrics: false,
        log: () => {},
      });
      await runner.start();
      try {
        const before = engine.delivered;
        for (let i = 0; i < 30; i++) await oneExchange(port, "hello");
        await waitFor(
          () => /relaykit_listener_connections_total\{listener="web"\} 30\n/.test(runner.metrics()),
          5_000,
          "30 ended connections in the metrics",
        );
        assert.match(
          runner.metrics(),
          /relaykit_listener_bytes_total\{listener="web",direction="up"\} 150\n/,
        );
        assert.equal(engine.delivered - before, 0, "events delivered for 30 connections");
        const [view] = runner.adminView();
        assert.deepEqual([view!.stats.opened, view!.stats.total], [30, 30]);
        // a reload that starts the listener anew keeps its counters
        writeFileSync(
          file,
          `listeners:\n  - { name: web, address: 127.0.0.1, port: ${port}, idle_timeout: 60000, ` +
            `routes: [{ default: true, to: { host: 127.0.0.1, port: ${echo.port} } }] }\n`,
        );
        assert.equal(await runner.reload(), true, runner.lastReload?.message ?? "");
        await oneExchange(port, "again");
        await waitFor(
          () => runner.adminView()[0]!.stats.total === 31,
          5_000,
          "the counters to go on across the reload",
        );
        assert.equal(runner.adminView()[0]!.stats.up, 155);
      } finally {
        await runner.stop(1_000);
        await echo.close();
        engine.close();
      }
    });
  });
}
