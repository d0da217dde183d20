/**
 * Relaying fds that already exist (native engine only: the stream engine
 * has no fds to relay).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "./_test.ts";
import {
  closeFd,
  connectFd,
  NativeEngine,
  openFile,
  openPipe,
  openSocketPair,
  readFd,
  relay,
  RelaykitError,
  shutdownWriteFd,
  TcpProxy,
  writeFd,
} from "../mod.ts";
import {
  concat,
  connect,
  nativeEngine,
  processEcho,
  receiveAll,
  server,
  Stream,
  waitFor,
} from "./_helpers.ts";

function sha(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Read an fd to EOF (blocking reads; the relay writes from its worker). */
function readAll(fd: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (;;) {
    const b = readFd(fd, 65536);
    if (b.length === 0) break;
    parts.push(b.slice());
  }
  return concat(parts);
}

describe("native relay of existing fds", () => {
  test("pipe to socket: every byte written to the pipe reaches the server, then EOF", async () => {
    nativeEngine();
    const got = new Promise<{ bytes: number; sha256: string }>((resolve) => {
      void server((s) => receiveAll(s).then(resolve)).then((srv) => {
        ports.resolve(srv.port);
        closers.push(srv.close);
      });
    });
    const closers: (() => Promise<void>)[] = [];
    const ports = Promise.withResolvers<number>();
    const sock = await connectFd("127.0.0.1", await ports.promise);
    const [r, w] = openPipe();
    const rl = relay({ read: r }, sock);
    const data = new Stream(7).bytes(1024 * 1024);
    for (let o = 0; o < data.length; o += 100_000) writeFd(w, data.subarray(o, o + 100_000));
    closeFd(w); // EOF on the pipe -> FIN to the server
    const end = await rl.done;
    assert.equal(end.reason, "done");
    assert.equal(end.aToB.read, data.length);
    assert.equal(end.aToB.written, data.length);
    const atServer = await got;
    assert.equal(atServer.bytes, data.length);
    assert.equal(atServer.sha256, sha(data));
    for (const c of closers) await c();
  });

  test("socket to pipe: what the server sends comes out of the pipe, then EOF", async () => {
    nativeEngine();
    const data = new Stream(11).bytes(200_000);
    const flushed = Promise.withResolvers<void>();
    const srv = await server((s) => s.end(data, () => flushed.resolve()));
    const sock = await connectFd("127.0.0.1", srv.port);
    const [r, w] = openPipe();
    const rl = relay(sock, { write: w });
    // readAll blocks this thread, so the server (on this thread too) must
    // have handed everything to the kernel first
    await flushed.promise;
    const out = readAll(r);
    closeFd(r);
    assert.equal(out.length, data.length);
    assert.equal(sha(out), sha(data));
    const end = await rl.done;
    assert.equal(end.reason, "done");
    assert.equal(end.aToB.written, data.length);
    await srv.close();
  });

  test("file to socket: a 3 MiB file arrives byte-exact", async () => {
    nativeEngine();
    const dir = mkdtempSync(join(tmpdir(), "relaykit-"));
    try {
      const path = join(dir, "data.bin");
      const data = new Stream(3).bytes(3 * 1024 * 1024);
      writeFileSync(path, data);
      let got!: Promise<{ bytes: number; sha256: string }>;
      const srv = await server((s) => got = receiveAll(s));
      const sock = await connectFd("127.0.0.1", srv.port);
      const rl = relay({ read: openFile(path) }, sock);
      const end = await rl.done;
      assert.equal(end.reason, "done");
      assert.equal(end.aToB.written, data.length);
      await waitFor(() => got !== undefined, 5000, "server connection");
      const atServer = await got;
      assert.equal(atServer.bytes, data.length);
      assert.equal(atServer.sha256, sha(data));
      await srv.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("character device to socket: /dev/zero streams until the relay is closed", async () => {
    nativeEngine();
    let got = 0;
    const srv = await server((s) => s.on("data", (d: Uint8Array) => got += d.length));
    const sock = await connectFd("127.0.0.1", srv.port);
    const rl = relay({ read: openFile("/dev/zero") }, sock);
    await waitFor(() => got >= 4 * 1024 * 1024, 10_000, "4 MiB from /dev/zero");
    const live = rl.stats();
    assert.ok(live !== undefined && live.aToB.read >= 4 * 1024 * 1024);
    const end = await rl.close("abort");
    assert.equal(end.reason, "closed");
    assert.ok(end.aToB.written >= 4 * 1024 * 1024);
    await srv.close();
  });

  test("socket pair to TCP both ways, with live counters and half-close", async () => {
    nativeEngine();
    const srv = await processEcho(); // passes EOF on
    const sock = await connectFd("127.0.0.1", srv.port);
    const [mine, theirs] = openSocketPair();
    const rl = relay(theirs, sock);
    const msg = new TextEncoder().encode("hello through a socket pair");
    writeFd(mine, msg);
    let echoed = new Uint8Array(0);
    while (echoed.length < msg.length) {
      const b = readFd(mine, 1024);
      assert.ok(b.length > 0, "unexpected EOF");
      echoed = new Uint8Array([...echoed, ...b]);
    }
    assert.deepEqual(echoed, msg);
    const live = rl.stats();
    assert.ok(live !== undefined);
    assert.equal(live.aToB.written, msg.length);
    assert.equal(live.state, "relaying");
    assert.ok(live.lastActivityAt >= live.startedAt);
    shutdownWriteFd(mine); // half-close -> server sees EOF -> echoes EOF back
    assert.equal(readFd(mine, 16).length, 0);
    const end = await rl.done;
    assert.equal(end.reason, "done");
    assert.equal(rl.stats(), undefined);
    closeFd(mine);
    srv.stop();
  });

  test("close('abort') ends a running relay with reason closed", async () => {
    nativeEngine();
    const [a1, a2] = openSocketPair();
    const [b1, b2] = openSocketPair();
    const rl = relay(a2, b2);
    const end = await rl.close("abort");
    assert.equal(end.reason, "closed");
    // the relay owned a2 and b2: their peers see the end
    assert.equal(readFd(a1, 16).length, 0);
    assert.equal(readFd(b1, 16).length, 0);
    closeFd(a1);
    closeFd(b1);
  });

  test("an idle relay ends after idleTimeout", async () => {
    nativeEngine();
    const [a1, a2] = openSocketPair();
    const [b1, b2] = openSocketPair();
    const t0 = Date.now();
    const end = await relay(a2, b2, { idleTimeout: 150 }).done;
    assert.equal(end.reason, "idle-timeout");
    assert.ok(Date.now() - t0 >= 140);
    closeFd(a1);
    closeFd(b1);
  });

  test("keepFds leaves the fds open when the relay ends", async () => {
    nativeEngine();
    const [a1, a2] = openSocketPair();
    const [b1, b2] = openSocketPair();
    const rl = relay(a2, b2, { keepFds: true });
    await rl.close("graceful");
    writeFd(a2, new Uint8Array([1, 2, 3])); // still open: a1 reads it
    assert.deepEqual(readFd(a1, 16), new Uint8Array([1, 2, 3]));
    for (const fd of [a1, a2, b1, b2]) closeFd(fd);
  });

  test("await using aborts a relay when its block ends", async () => {
    nativeEngine();
    const [a1, a2] = openSocketPair();
    const [b1, b2] = openSocketPair();
    let id = 0;
    {
      await using rl = relay(a2, b2);
      id = rl.id;
      assert.equal(rl.stats()?.state, "relaying");
    }
    assert.ok(id > 0);
    // the relay closed a2 and b2 on its way out: their peers read EOF
    assert.equal(readFd(a1, 16).length, 0);
    assert.equal(readFd(b1, 16).length, 0);
    closeFd(a1);
    closeFd(b1);
  });

  test("a bad fd is refused with EBADF and a side with nothing to move with EINVAL", () => {
    nativeEngine();
    assert.throws(
      () => relay(987654, 987655),
      (e: unknown) => e instanceof RelaykitError && e.code === "EBADF",
    );
    const [p, q] = openPipe();
    assert.throws(
      () => relay({ write: q }, { write: p }),
      (e: unknown) => e instanceof RelaykitError && e.code === "EINVAL",
    );
    assert.throws(() => relay(-1, 0), RangeError);
    closeFd(p);
    closeFd(q);
  });

  test("an engine-wide connection limit covers proxies and relays alike", async () => {
    nativeEngine();
    const engine = new NativeEngine({ threads: 1, maxConnections: 1 });
    const backend = await server((s) => s.on("data", () => {}));
    const proxy = await TcpProxy.listen({
      listen: { host: "127.0.0.1", port: 0 },
      target: { host: "127.0.0.1", port: backend.port },
      engine: "native",
      nativeEngine: engine,
    });
    const errors: { code?: string }[] = [];
    proxy.on("error", (e) => errors.push(e));
    try {
      const first = await connect(proxy.port);
      await waitFor(() => proxy.connections === 1, 5000, "first connection");
      const second = await connect(proxy.port);
      await waitFor(() => errors.length === 1, 5000, "limit error");
      assert.equal(errors[0]?.code, "RK_ELIMIT");
      const [x, y] = openSocketPair(engine);
      assert.throws(
        () => relay(x, y, { engine }),
        (e: unknown) => e instanceof RelaykitError && e.code === "RK_ELIMIT",
      );
      closeFd(x, engine);
      closeFd(y, engine);
      first.destroy();
      second.destroy();
    } finally {
      await proxy.abort();
      await backend.close();
      engine.close();
    }
  });

  test("connectFd reports a refused connect with the address", async () => {
    nativeEngine();
    await assert.rejects(
      connectFd("127.0.0.1", 1),
      (e: unknown) =>
        e instanceof RelaykitError && e.code === "ECONNREFUSED" &&
        e.message === 'Cannot connect to "127.0.0.1:1": connection refused',
    );
    await assert.rejects(
      connectFd("no-such-host.invalid", 80),
      (e: unknown) => e instanceof RelaykitError && e.code === "RK_ERESOLVE",
    );
  });
});
