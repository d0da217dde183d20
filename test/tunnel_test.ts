/**
 * The multiplexed tunnel: the frame codec, then client and server in this
 * process on real sockets (127.0.0.1): 200 concurrent streams, a stalled
 * reader, half-close both ways, a link cut mid-transfer, authentication,
 * version negotiation, TLS, keepalive, refusals; then the command.
 */
import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "./_test.ts";
import {
  DEFAULT_WINDOW,
  TunnelClient,
  type TunnelClientEvents,
  type TunnelClientOptions,
  TunnelServer,
  type TunnelServerEvents,
  type TunnelServerOptions,
} from "../mod.ts";
import {
  decodeFrame,
  encodeFrame,
  FRAME_HEADER_SIZE,
  FrameDecoder,
  MAX_FRAME_PAYLOAD,
  TUNNEL_VERSIONS,
  type TunnelFrame,
  type TunnelProblem,
  TunnelProtocolError,
} from "../internals.ts";
import {
  allWithin,
  connect,
  curl,
  echoServer,
  ENGINES,
  fdCount,
  freePort,
  nativeEngine,
  pythonServer,
  server,
  sleep,
  startCli,
  stopChild,
  useEngine,
  waitFor,
  within,
  writeTestCertificates,
} from "./_helpers.ts";

// ---------------------------------------------------------------------------
// helpers

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(b.subarray(o, Math.min(n, o + 65536)));
  return b;
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Write `data` in chunks of up to 64 KiB, honouring backpressure; optionally end. */
async function writeAll(s: net.Socket, data: Uint8Array, end = true): Promise<void> {
  for (let o = 0; o < data.length; o += 65536) {
    if (s.destroyed) return;
    if (!s.write(data.subarray(o, Math.min(data.length, o + 65536)))) {
      await new Promise<void>((r) => {
        const done = () => {
          s.off("drain", done).off("close", done);
          r();
        };
        s.on("drain", done).on("close", done);
      });
    }
  }
  if (end && !s.destroyed) s.end();
}

/** Everything a socket receives until it ends or closes. */
/** Send `data` through `port` (to an echo behind it) and collect what comes back. */
async function echoed(
  port: number,
  data: Uint8Array,
): Promise<{ data: Uint8Array; ended: boolean; error?: string }> {
  const s = await connect(port);
  const got = collect(s);
  void writeAll(s, data);
  return await got;
}

function collect(s: net.Socket): Promise<{ data: Uint8Array; ended: boolean; error?: string }> {
  const parts: Uint8Array[] = [];
  let ended = false;
  let error: string | undefined;
  s.on("data", (d: Uint8Array) => parts.push(d));
  s.on("end", () => {
    ended = true;
    s.end(); // half-open sockets: close once the peer has ended too
  });
  s.on("error", (e: Error & { code?: string }) => error = e.code ?? e.message);
  return new Promise((resolve) => {
    s.once("close", () => {
      const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) {
        data.set(p, o);
        o += p.length;
      }
      resolve(error === undefined ? { data, ended } : { data, ended, error });
    });
  });
}

interface Pair {
  server: TunnelServer;
  client: TunnelClient;
  port: number; // the client's first listener
  serverEnds: TunnelServerEvents["stream-end"][];
  clientEnds: TunnelClientEvents["stream-end"][];
  close(): Promise<void>;
}

/** TLS on the links {@link pair} makes, while a block's {@link useLinkTls} says so. */
let pairTls: { so: Partial<TunnelServerOptions>; co: Partial<TunnelClientOptions> } | undefined;

/** A test certificate (for localhost and 127.0.0.1), its key and CA, written once. */
let testPems: { cert: string; key: string; ca: string } | undefined;
function pems(): { cert: string; key: string; ca: string } {
  if (testPems === undefined) {
    const dir = mkdtempSync(join(tmpdir(), "relaykit-tunnel-pem-"));
    try {
      writeTestCertificates(dir);
      const f = (n: string) => readFileSync(join(dir, n), "utf8");
      testPems = { cert: f("cert.pem"), key: f("key.pem"), ca: f("ca.pem") };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return testPems;
}

/** The links {@link pair} makes in the enclosing block speak TLS (verified against the test CA). */
function useLinkTls(): void {
  before(() => {
    const { cert, key, ca } = pems();
    pairTls = { so: { tls: { cert, key } }, co: { tls: { ca } } };
  });
  after(() => {
    pairTls = undefined;
  });
}

async function pair(
  destPort: number,
  so: Partial<TunnelServerOptions> = {},
  co: Partial<TunnelClientOptions> = {},
): Promise<Pair> {
  const srv = await TunnelServer.listen({
    listen: { host: "127.0.0.1", port: 0 },
    allow: [{ cidr: "127.0.0.0/8" }],
    ...pairTls?.so,
    ...so,
  });
  const client = await TunnelClient.start({
    listeners: [{
      listen: { host: "127.0.0.1", port: 0 },
      to: { host: "127.0.0.1", port: destPort },
    }],
    ...pairTls?.co,
    ...co,
    link: co.link?.host ? { host: co.link.host, port: srv.address.port } : srv.address,
  });
  const serverEnds: Pair["serverEnds"] = [];
  const clientEnds: Pair["clientEnds"] = [];
  srv.on("stream-end", (e) => serverEnds.push(e));
  client.on("stream-end", (e) => clientEnds.push(e));
  await client.waitUp(5000);
  const want = process.env.RELAYKIT_ENGINE;
  if (want === "native" || want === "stream") {
    assert.equal(srv.engine, want);
    assert.equal(client.engine, want);
  }
  return {
    server: srv,
    client,
    port: client.addresses[0]!.port,
    serverEnds,
    clientEnds,
    close: async () => {
      await client.close();
      await srv.close();
    },
  };
}

// ---------------------------------------------------------------------------

describe("tunnel frames", () => {
  const frames: TunnelFrame[] = [
    { type: "hello", versions: [1, 2], nonce: random(32) },
    { type: "hello-ack", version: 1, window: 262144 },
    {
      type: "hello-ack",
      version: 1,
      window: 65536,
      auth: { nonce: random(32) },
    },
    { type: "auth", proof: random(32) },
    { type: "ready", proof: random(32) },
    { type: "open", stream: 1, destination: { host: "db.internal", port: 5432 } },
    { type: "open", stream: 2, destination: { host: "::1", port: 1 } },
    { type: "open", stream: 0xffffffff, destination: { route: "web" } },
    { type: "open-ok", stream: 3 },
    { type: "open-fail", stream: 3, code: "ECONNREFUSED", message: "connection refused ✓" },
    { type: "data", stream: 4, data: random(MAX_FRAME_PAYLOAD) },
    { type: "data", stream: 4, data: new Uint8Array([7]) },
    { type: "window", stream: 4, credit: 0x7fffffff },
    { type: "fin", stream: 5 },
    { type: "rst", stream: 6, code: "RK_ELINK_LOST", message: "" },
    { type: "ping", data: random(8) },
    { type: "pong", data: random(8) },
    { type: "goaway", code: "RK_ESHUTDOWN", message: "bye" },
  ];

  test("every frame type round-trips, whole and split at every byte", () => {
    for (const f of frames) {
      const bytes = encodeFrame(f);
      const r = decodeFrame(bytes);
      assert.ok("frame" in r, f.type);
      assert.equal(r.size, bytes.length);
      assert.deepEqual(r.frame, f);
    }
    const all = new Uint8Array(frames.reduce((n, f) => n + encodeFrame(f).length, 0));
    let o = 0;
    for (const f of frames) {
      const b = encodeFrame(f);
      all.set(b, o);
      o += b.length;
    }
    for (const step of [1, 7, 1000, all.length]) {
      const d = new FrameDecoder();
      const out: TunnelFrame[] = [];
      for (let i = 0; i < all.length; i += step) out.push(...d.push(all.subarray(i, i + step)));
      assert.deepEqual(out, frames, `step ${step}`);
      assert.equal(d.buffered, 0);
      d.end();
    }
  });

  test("a partial frame asks for more bytes", () => {
    const b = encodeFrame({ type: "data", stream: 1, data: random(100) });
    assert.deepEqual(decodeFrame(b.subarray(0, 3)), { need: FRAME_HEADER_SIZE });
    assert.deepEqual(decodeFrame(b.subarray(0, 50)), { need: b.length });
  });

  test("malformed frames are protocol errors naming the problem", () => {
    const header = (type: number, flags: number, stream: number, length: number) => {
      const h = new Uint8Array(FRAME_HEADER_SIZE);
      const v = new DataView(h.buffer);
      h[0] = type;
      h[1] = flags;
      v.setUint32(2, stream);
      v.setUint32(6, length);
      return h;
    };
    const frame = (type: number, flags: number, stream: number, payload: Uint8Array) => {
      const out = new Uint8Array(FRAME_HEADER_SIZE + payload.length);
      out.set(header(type, flags, stream, payload.length));
      out.set(payload, FRAME_HEADER_SIZE);
      return out;
    };
    const hello = encodeFrame({ type: "hello", versions: [1], nonce: random(32) });
    const badMagic = hello.slice();
    badMagic[FRAME_HEADER_SIZE] = 0x47; // "G": an HTTP request, say
    const cases: [string, Uint8Array, TunnelProblem][] = [
      ["bad magic", badMagic, "bad-magic"],
      ["unknown type", header(0x42, 0, 0, 0), "unknown-type"],
      ["unknown type, first byte only", new Uint8Array([0xff]), "unknown-type"],
      ["oversize length", header(0x08, 0, 1, MAX_FRAME_PAYLOAD + 1), "oversize"],
      ["huge length", header(0x08, 0, 1, 0xffffffff), "oversize"],
      ["truncated window", frame(0x09, 0, 1, new Uint8Array(2)), "truncated"],
      ["truncated hello", frame(0x01, 0, 0, hello.subarray(FRAME_HEADER_SIZE, 20)), "truncated"],
      ["truncated reason", frame(0x0b, 0, 1, new Uint8Array([9, 0x41])), "truncated"],
      ["truncated open", frame(0x05, 0, 1, new Uint8Array([1])), "truncated"],
      ["oversize ping", frame(0x0c, 0, 0, new Uint8Array(9)), "malformed"],
      ["empty data", frame(0x08, 0, 1, new Uint8Array(0)), "malformed"],
      ["zero credit", frame(0x09, 0, 1, new Uint8Array(4)), "malformed"],
      ["data on stream 0", frame(0x08, 0, 0, new Uint8Array(1)), "malformed"],
      ["ping on a stream", frame(0x0c, 0, 3, new Uint8Array(8)), "malformed"],
      ["flags on data", frame(0x08, 0x80, 1, new Uint8Array(1)), "malformed"],
      ["unknown destination kind", frame(0x05, 0, 1, new Uint8Array([9, 0, 80])), "malformed"],
      ["port 0", frame(0x05, 0, 1, new Uint8Array([1, 0, 0, 0x61])), "malformed"],
      ["bad UTF-8 host", frame(0x05, 0, 1, new Uint8Array([1, 0, 80, 0xff])), "malformed"],
    ];
    for (const [name, bytes, problem] of cases) {
      assert.throws(
        () => new FrameDecoder().push(bytes),
        (err: unknown) =>
          err instanceof TunnelProtocolError && err.problem === problem &&
          err.code === "RK_ETUNNEL_PROTOCOL" && err.message.includes(problem),
        name,
      );
    }
    // a link that ends inside a frame
    const d = new FrameDecoder();
    d.push(hello.subarray(0, 12));
    assert.throws(
      () => d.end(),
      (e: unknown) => (e as TunnelProtocolError).problem === "truncated",
    );
    // what cannot be decoded cannot be encoded either
    assert.throws(
      () => encodeFrame({ type: "data", stream: 1, data: new Uint8Array(MAX_FRAME_PAYLOAD + 1) }),
      RangeError,
    );
    assert.throws(
      () => encodeFrame({ type: "data", stream: 0, data: new Uint8Array(1) }),
      RangeError,
    );
    assert.throws(
      () => encodeFrame({ type: "open", stream: 1, destination: { host: "x", port: 0 } }),
      RangeError,
    );
  });
});

/**
 * An echo server that echoes the first `limit` bytes of each connection and
 * then stops reading: its streams can never complete.
 */
async function stallingEcho(
  limit: number,
): Promise<{ port: number; dropAll(): void; close(): void }> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    let seen = 0;
    s.on("error", () => {});
    s.on("close", () => socks.delete(s));
    s.on("data", (d: Uint8Array) => {
      seen += d.length;
      s.write(d);
      if (seen >= limit) s.pause();
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    // a paused socket does not notice its peer's reset: drop them
    dropAll: () => {
      for (const s of socks) s.destroy();
    },
    close: () => {
      for (const s of socks) s.destroy();
      srv.close();
    },
  };
}

// Each engine in turn, with plain and with TLS links: every tunnel of the
// block picks it (a TLS link too: the native engine speaks TLS itself).
for (const [engine, tls] of ENGINES.flatMap((e) => [[e, false], [e, true]] as const)) {
  describe(`tunnel (${engine} engine${tls ? ", TLS links" : ""})`, () => {
    useEngine(engine);
    if (tls) useLinkTls();
    let echo: Awaited<ReturnType<typeof echoServer>>;
    before(async () => {
      echo = await echoServer();
    });
    after(() => echo.close());

    test("200 concurrent streams of 16-256 KiB come back intact through one link", async () => {
      const p = await pair(echo.port);
      const runs = Array.from({ length: 200 }, async (_, i) => {
        const data = random(16 * 1024 + Math.floor(Math.random() * 240 * 1024));
        const s = await connect(p.port);
        const got = collect(s);
        await writeAll(s, data);
        const r = await got;
        assert.equal(r.error, undefined, `stream ${i}`);
        assert.equal(r.data.length, data.length, `stream ${i} length`);
        assert.equal(sha(r.data), sha(data), `stream ${i} bytes`);
        return data.length;
      });
      const sizes = await Promise.all(runs);
      await waitFor(() => p.serverEnds.length === 200 && p.clientEnds.length === 200, 5000, "ends");
      for (const e of [...p.serverEnds, ...p.clientEnds]) assert.equal(e.reason, "done");
      const total = sizes.reduce((a, b) => a + b, 0);
      assert.equal(p.clientEnds.reduce((n, e) => n + e.bytesOut, 0), total);
      assert.equal(p.serverEnds.reduce((n, e) => n + e.bytesIn, 0), total);
      assert.equal(p.client.streams, 0);
      await p.close();
    });

    test("a stalled reader stalls only its own stream, with at most one window buffered", async () => {
      // the first connection's reader stops; the others echo
      let first = true;
      let stalled: net.Socket | undefined;
      const dest = await server((s) => {
        if (first) {
          first = false;
          stalled = s;
          s.pause();
          return;
        }
        s.pipe(s);
      });
      const p = await pair(dest.port);
      const big = random(16 * 1024 * 1024);
      const slow = await connect(p.port);
      const slowGot = collect(slow);
      const slowSent = writeAll(slow, big);
      await waitFor(() => stalled !== undefined, 5000, "the stalled connection");
      // the others, at full speed
      const t0 = Date.now();
      await Promise.all(Array.from({ length: 20 }, async () => {
        const data = random(1024 * 1024);
        const s = await connect(p.port);
        const got = collect(s);
        await writeAll(s, data);
        assert.equal(sha((await got).data), sha(data));
      }));
      const others = Date.now() - t0;
      assert.ok(others < 10_000, `the other streams took ${others} ms`);
      // the stalled stream stops sending once its window is used
      let last = -1;
      await waitFor(
        () => {
          const out = p.client.streamStats()[0]?.bytesOut ?? 0;
          const same = out === last;
          last = out;
          return same;
        },
        10_000,
        "the stalled stream to stop",
      );
      const [c] = p.client.streamStats();
      const [sv] = p.server.streamStats();
      assert.ok(c !== undefined && sv !== undefined);
      assert.ok(c.bytesOut < big.length, "the stalled stream did stall");
      assert.ok(sv.backlog <= DEFAULT_WINDOW, `server holds ${sv.backlog} bytes`);
      const taken = sv.bytesIn - sv.backlog; // by the destination socket's kernel buffers
      assert.ok(
        c.bytesOut - taken <= DEFAULT_WINDOW,
        `${c.bytesOut - taken} bytes in the tunnel for the stalled stream`,
      );
      // unstall: the destination reads it all and answers with its hash
      const hash = createHash("sha256");
      let n = 0;
      stalled!.on("data", (d: Uint8Array) => {
        hash.update(d);
        n += d.length;
      });
      stalled!.on("end", () => stalled!.end(`${n} ${hash.digest("hex")}`));
      stalled!.resume();
      await slowSent;
      const r = await slowGot;
      assert.equal(new TextDecoder().decode(r.data), `${big.length} ${sha(big)}`);
      await p.close();
      await dest.close();
    });

    test("half-close per stream: the client ends first, and the destination ends first", async () => {
      const reply = random(700 * 1024);
      const summaries: string[] = [];
      const dest = await server((s) => {
        const parts: Uint8Array[] = [];
        s.on("data", (d: Uint8Array) => parts.push(d));
        let mode: number | undefined; // chosen by the first byte the client sends
        s.once("data", (d: Uint8Array) => {
          mode = d[0];
          if (mode === 2) void writeAll(s, reply); // ends its side at once, still reads
        });
        s.on("end", () => {
          const got = parts.reduce((n, p) => n + p.length, 0);
          const digest = createHash("sha256");
          for (const p of parts) digest.update(p);
          const summary = `${got} ${digest.digest("hex")}`;
          summaries.push(summary);
          if (mode === 1) {
            // saw EOF, answers after it
            s.write(summary);
            void writeAll(s, reply);
          }
        });
      });
      const p = await pair(dest.port);
      // 1: the client ends its write side; the destination sees EOF, still replies
      {
        const up = concatOne(1, random(300 * 1024));
        const s = await connect(p.port);
        const got = collect(s);
        await writeAll(s, up);
        const r = await got;
        const head = `${up.length} ${sha(up)}`;
        assert.equal(new TextDecoder().decode(r.data.subarray(0, head.length)), head);
        assert.equal(sha(r.data.subarray(head.length)), sha(reply));
        assert.ok(r.ended);
      }
      // 2: the destination ends first; the client sees EOF and still sends
      {
        const s = await connect(p.port);
        const parts: Uint8Array[] = [];
        const ended = new Promise<void>((r) => s.once("end", () => r()));
        s.on("data", (d: Uint8Array) => parts.push(d));
        s.write(new Uint8Array([2]));
        await ended;
        const down = concatOne(-1, ...parts);
        assert.equal(sha(down), sha(reply), "the destination's bytes before its EOF");
        const more = random(500 * 1024);
        const after = collect(s);
        await writeAll(s, more);
        const r = await after;
        assert.equal(r.data.length, 0);
        assert.equal(r.error, undefined);
        const sent = concatOne(2, more);
        await waitFor(() => summaries.length === 2, 5000, "the destination's EOF");
        assert.equal(summaries[1], `${sent.length} ${sha(sent)}`);
      }
      await waitFor(() => p.serverEnds.length === 2 && p.clientEnds.length === 2, 5000, "ends");
      assert.deepEqual(p.serverEnds.map((e) => e.reason), ["done", "done"]);
      assert.deepEqual(p.clientEnds.map((e) => e.reason), ["done", "done"]);
      await p.close();
      await dest.close();
    });

    test("bytes and their FIN at once, both ways: 200 streams each carry the request and the answer, then end", async () => {
      // A destination in its own process answers and ends its side as it
      // accepts, then reads to EOF; each client sends its request and ends
      // in one go. Each end then sees bytes and the peer's FIN in one edge:
      // the EOF after them has no edge of its own.
      const dest = await pythonServer(
        "import socket, threading\n" +
          "s=socket.socket()\n" +
          "s.bind(('127.0.0.1',0))\n" +
          "s.listen(1024)\n" +
          "print(s.getsockname()[1],flush=True)\n" +
          "def serve(c):\n" +
          "  c.sendall(b'hello\\n')\n" +
          "  c.shutdown(socket.SHUT_WR)\n" +
          "  while c.recv(65536): pass\n" +
          "  c.close()\n" +
          "while True:\n" +
          "  c,_=s.accept()\n" +
          "  threading.Thread(target=serve,args=(c,),daemon=True).start()",
      );
      const p = await pair(dest.port);
      try {
        const got = await allWithin(200, 10_000, "streams had the answer and EOF", async () => {
          const s = await connect(p.port);
          const got = collect(s);
          s.end(random(100));
          return await got;
        });
        assert.deepEqual(
          got.filter((r) => r.error !== undefined || !r.ended || r.data.length !== 6),
          [],
        );
        await waitFor(
          () => p.serverEnds.length === 200 && p.clientEnds.length === 200,
          5000,
          "ends",
        );
        for (const e of [...p.serverEnds, ...p.clientEnds]) assert.equal(e.reason, "done");
        assert.equal(p.serverEnds.reduce((n, e) => n + e.bytesIn, 0), 200 * 100);
        assert.equal(p.clientEnds.reduce((n, e) => n + e.bytesIn, 0), 200 * 6);
      } finally {
        await p.close();
        dest.stop();
      }
    });

    test("a destination that resets mid-stream resets the local connection, named on both sides", async () => {
      // reads a little, then resets (RST)
      const resetting = net.createServer((c) => {
        c.on("error", () => {});
        c.once("data", () => c.resetAndDestroy());
      });
      await new Promise<void>((r) => resetting.listen(0, "127.0.0.1", r));
      const p = await pair((resetting.address() as net.AddressInfo).port);
      await sleep(50);
      const fds = fdCount();
      const s = await connect(p.port);
      const r = collect(s);
      void writeAll(s, random(4 * 1024 * 1024), false);
      const res = await r;
      // reset, not ended: no FIN came first. A client still writing learns
      // of the reset from its read (ECONNRESET) or from its next write
      // (EPIPE), whichever of the two its runtime runs first
      assert.equal(res.ended, false, "the local connection is reset, not ended");
      assert.match(res.error ?? "", /^(ECONNRESET|EPIPE)$/, "the local connection is reset");
      await waitFor(() => p.serverEnds.length === 1 && p.clientEnds.length === 1, 5000, "ends");
      for (const e of [p.serverEnds[0]!, p.clientEnds[0]!]) {
        assert.equal(e.reason, "reset");
        assert.match(e.error?.code ?? "", /^(ECONNRESET|EPIPE)$/);
      }
      await waitFor(() => fdCount() <= fds, 5000, `fds back to ${fds} (now ${fdCount()})`);
      await p.close();
      resetting.close();
    });

    test("a link cut mid-transfer ends every stream with link-lost, leaks no fd, and reconnects", async () => {
      // a destination that stops after 256 KiB: no stream can finish before the cut
      const stalling = await stallingEcho(256 * 1024);
      const p = await pair(stalling.port, {}, { reconnectDelay: 50 });
      const downs: TunnelClientEvents["down"][] = [];
      const linkCloses: TunnelServerEvents["link-close"][] = [];
      p.client.on("down", (e) => downs.push(e));
      p.server.on("link-close", (e) => linkCloses.push(e));
      await sleep(100);
      const fds = fdCount();
      const N = 20;
      const sent = Array.from({ length: N }, () => random(4 * 1024 * 1024));
      const socks = await Promise.all(sent.map(() => connect(p.port)));
      const results = socks.map((s) => collect(s));
      const received = new Array<number>(N).fill(0);
      socks.forEach((s, i) => s.on("data", (d: Uint8Array) => received[i]! += d.length));
      socks.forEach((s, i) => void writeAll(s, sent[i]!));
      await waitFor(() => received.every((n) => n >= 64 * 1024), 10_000, "bytes on every stream");
      p.server.dropLinks();
      const rs = await Promise.all(results);
      for (const [i, r] of rs.entries()) {
        // a prefix of what was sent: nothing twice, nothing out of order
        assert.ok(r.data.length < sent[i]!.length, `stream ${i} was cut`);
        assert.equal(sha(r.data), sha(sent[i]!.subarray(0, r.data.length)), `stream ${i} prefix`);
        assert.ok(!r.ended || r.error !== undefined || r.data.length < sent[i]!.length);
      }
      await waitFor(() => p.serverEnds.length === N && p.clientEnds.length === N, 5000, "ends");
      for (const e of [...p.serverEnds, ...p.clientEnds]) {
        assert.equal(e.reason, "link-lost");
        assert.equal(e.error?.code, "RK_ELINK_LOST");
      }
      assert.equal(downs[0]?.reason, "link-lost");
      assert.ok(downs[0]!.retryInMs <= 50, `first retry in ${downs[0]!.retryInMs} ms`);
      assert.equal(linkCloses[0]?.reason, "link-lost");
      await p.client.waitUp(5000);
      stalling.dropAll();
      await waitFor(() => fdCount() <= fds, 5000, `fds back to ${fds} (now ${fdCount()})`);
      // a new stream works
      const s = await connect(p.port);
      const got = collect(s);
      s.end("after the cut");
      assert.equal(new TextDecoder().decode((await got).data), "after the cut");
      await p.close();
      stalling.close();
    });

    test("reconnects back off exponentially, with jitter, up to the maximum", async () => {
      const dead = await freePort();
      const client = await TunnelClient.start({
        link: { host: "127.0.0.1", port: dead },
        listeners: [{ listen: { host: "127.0.0.1", port: 0 }, to: { route: "x" } }],
        reconnectDelay: 40,
        reconnectMaxDelay: 320,
      });
      const waits: number[] = [];
      const refused: string[] = [];
      client.on("down", (e) => {
        assert.equal(e.reason, "connect-failed");
        assert.equal(e.error?.code, "ECONNREFUSED");
        waits.push(e.retryInMs);
      });
      client.on("refused", (e) => refused.push(e.listener));
      // a local connection while the link is down is closed at once
      const s = await connect(client.addresses[0]!.port);
      const r = await collect(s);
      assert.equal(r.data.length, 0);
      assert.equal(refused.length, 1);
      await waitFor(() => waits.length >= 6, 5000, "six retries");
      await client.close();
      const bases = [40, 80, 160, 320, 320, 320];
      bases.forEach((b, i) => {
        assert.ok(waits[i]! >= b / 2 && waits[i]! <= b, `retry ${i}: ${waits[i]} ms, base ${b}`);
      });
    });

    test("a shared secret: the right one links, a wrong or missing one stops the client with the reason", async () => {
      const p = await pair(echo.port, { secret: "s3cret" }, { secret: "s3cret" });
      const s = await connect(p.port);
      const got = collect(s);
      s.end("authenticated");
      assert.equal(new TextDecoder().decode((await got).data), "authenticated");
      await p.close();

      for (
        const [clientSecret, serverSecret, clientSays, serverSays] of [
          ["wrong", "s3cret", /wrong shared secret/, /wrong shared secret/],
          [undefined, "s3cret", /requires a shared secret/, /requires a shared secret/],
          ["s3cret", undefined, /does not authenticate/, /does not authenticate/],
        ] as const
      ) {
        const srv = await TunnelServer.listen({
          listen: { host: "127.0.0.1", port: 0 },
          ...(serverSecret ? { secret: serverSecret } : {}),
        });
        const closes: TunnelServerEvents["link-close"][] = [];
        srv.on("link-close", (e) => closes.push(e));
        const client = await TunnelClient.start({
          link: srv.address,
          listeners: [],
          reconnectDelay: 50,
          ...(clientSecret ? { secret: clientSecret } : {}),
        });
        const downs: TunnelClientEvents["down"][] = [];
        client.on("down", (e) => downs.push(e));
        const waited = client.waitUp(3000).then(() => "up", (e: Error) => e);
        const stop = await new Promise<TunnelClientEvents["stopped"]>((r) =>
          client.on("stopped", r)
        );
        assert.equal(stop.reason, "auth-failed");
        assert.equal(stop.error.code, "RK_ETUNNEL_AUTH");
        assert.match(stop.error.message, clientSays);
        assert.equal(client.up, false);
        assert.equal(client.stoppedBy, stop.error);
        assert.equal(await waited, stop.error, "waitUp rejects with the reason");
        await sleep(300); // six retries' worth of time: none is made
        assert.deepEqual(downs, []);
        await waitFor(() => closes.length === 1, 3000, "the server's side");
        assert.equal(closes.length, 1, "one attempt only");
        assert.equal(closes[0]!.reason, "auth-failed");
        assert.match(closes[0]!.error!.message, serverSays);
        await client.close();
        await srv.close();
      }
    });

    test("versions: the highest common one is chosen, none in common is refused on both sides", async () => {
      const srv = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        versions: [1, 3],
      });
      const ups: number[] = [];
      srv.on("link", (e) => ups.push(e.version));
      const c1 = await TunnelClient.start({
        link: srv.address,
        listeners: [],
        versions: [1, 2, 3],
      });
      await c1.waitUp(3000);
      await waitFor(() => ups.length === 1, 3000, "link");
      assert.deepEqual(ups, [3]);
      await c1.close();

      const closes: TunnelServerEvents["link-close"][] = [];
      srv.on("link-close", (e) => closes.push(e));
      const c2 = await TunnelClient.start({
        link: srv.address,
        listeners: [],
        versions: [2],
        reconnectDelay: 5000,
      });
      const down = await new Promise<TunnelClientEvents["stopped"]>((r) => c2.on("stopped", r));
      assert.equal(down.reason, "version");
      assert.equal(down.error.code, "RK_ETUNNEL_VERSION");
      assert.match(
        down.error.message,
        /no common protocol version: the client offers 2, this server speaks 1, 3/,
      );
      await waitFor(() => closes.some((c) => c.reason === "version"), 3000, "the server's side");
      await c2.close();
      await srv.close();
    });

    test("refused and unreachable destinations reset the local connection with a reason", async () => {
      const dead = await freePort();
      const srv = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        allow: [{ cidr: "127.0.0.1/32", port: [echo.port, dead] }],
        routes: { echo: { host: "127.0.0.1", port: echo.port } },
      });
      const client = await TunnelClient.start({
        link: srv.address,
        listeners: [
          { listen: { host: "127.0.0.1", port: 0 }, to: { host: "127.0.0.2", port: echo.port } },
          { listen: { host: "127.0.0.1", port: 0 }, to: { host: "127.0.0.1", port: dead } },
          { listen: { host: "127.0.0.1", port: 0 }, to: { route: "nope" } },
          { listen: { host: "127.0.0.1", port: 0 }, to: { route: "echo" } },
        ],
      });
      const ends: TunnelClientEvents["stream-end"][] = [];
      client.on("stream-end", (e) => ends.push(e));
      // what else the client saw, named if the ends do not all come
      const seen: string[] = [];
      client.on("refused", (e) => seen.push(`refused on ${e.listener}`));
      client.on("down", (e) => seen.push(`down: ${e.reason} ${e.error?.message ?? ""}`));
      client.on("up", () => seen.push("up"));
      await client.waitUp(3000);
      for (const a of client.addresses.slice(0, 3)) {
        const t0 = Date.now();
        const r = await collect(await connect(a.port));
        assert.equal(r.data.length, 0);
        seen.push(`port ${a.port} closed after ${Date.now() - t0} ms`);
      }
      await waitFor(() => ends.length >= 3, 3000, "three ends").catch((err: Error) => {
        const got = ends.map((e) => `${e.id} ${e.reason} ${e.error?.code}`).join(", ");
        throw new Error(`${err.message}; ends: ${got}; seen: ${seen.join("; ")}`);
      });
      assert.deepEqual(
        ends.map((e) => [e.reason, e.error?.code]),
        [["refused", "RK_EDENIED"], ["connect-failed", "ECONNREFUSED"], ["refused", "RK_EROUTE"]],
      );
      const s = await connect(client.addresses[3]!.port);
      const got = collect(s);
      s.end("by route");
      assert.equal(new TextDecoder().decode((await got).data), "by route");
      await client.close();
      await srv.close();
    });

    test("a peer that breaks the protocol, or goes silent, loses its link", async () => {
      const srv = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        keepaliveInterval: 100,
        keepaliveMisses: 3,
      });
      const closes: TunnelServerEvents["link-close"][] = [];
      srv.on("link-close", (e) => closes.push(e));
      // garbage: an HTTP request
      const g = await connect(srv.address.port);
      const gr = collect(g);
      g.write("GET / HTTP/1.1\r\n\r\n");
      const answer = await gr;
      const f = decodeFrame(answer.data);
      assert.ok(
        "frame" in f && f.frame.type === "goaway" && f.frame.code === "RK_ETUNNEL_PROTOCOL",
      );
      await waitFor(() => closes.length === 1, 3000, "protocol error");
      assert.equal(closes[0]!.reason, "protocol-error");
      assert.equal((closes[0]!.error as TunnelProtocolError).problem, "unknown-type");
      // a HELLO, then silence: no PONG, no frame
      const q = await connect(srv.address.port);
      const qr = collect(q);
      q.write(encodeFrame({ type: "hello", versions: [...TUNNEL_VERSIONS], nonce: random(32) }));
      const t0 = Date.now();
      await qr;
      await waitFor(() => closes.length === 2, 3000, "keepalive");
      assert.equal(closes[1]!.reason, "keepalive-timeout");
      assert.ok(Date.now() - t0 >= 250, "not before three intervals");
      await srv.close();
    });
  });
}

describe("tunnel engines on one wire", () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  before(async () => {
    echo = await echoServer();
  });
  after(() => echo.close());

  const pairs: ["native" | "stream", "native" | "stream", boolean][] = ENGINES.includes("native")
    ? [["native", "stream", false], ["stream", "native", false], ["native", "stream", true], [
      "stream",
      "native",
      true,
    ]]
    : [];
  for (const [serverEngine, clientEngine, tls] of pairs) {
    test(
      `a ${clientEngine} client and a ${serverEngine} server carry streams intact${
        tls ? " over TLS" : ""
      }`,
      async () => {
        const { cert, key, ca } = pems();
        const p = await pair(
          echo.port,
          { engine: serverEngine, ...(tls ? { tls: { cert, key } } : {}) },
          { engine: clientEngine, ...(tls ? { tls: { ca } } : {}) },
        );
        assert.equal(p.server.engine, serverEngine);
        assert.equal(p.client.engine, clientEngine);
        const sent = Array.from({ length: 8 }, () => random(1024 * 1024));
        const rs = await Promise.all(sent.map((data) => echoed(p.port, data)));
        for (const [i, r] of rs.entries()) {
          assert.equal(r.error, undefined);
          assert.equal(sha(r.data), sha(sent[i]!), `stream ${i}`);
        }
        await waitFor(() => p.serverEnds.length === 8 && p.clientEnds.length === 8, 5000, "ends");
        assert.ok([...p.serverEnds, ...p.clientEnds].every((e) => e.reason === "done"));
        assert.ok(
          p.clientEnds.every((e) => e.bytesOut === 1024 * 1024 && e.bytesIn === 1024 * 1024),
        );
        await p.close();
      },
    );
  }

  test("without OpenSSL a TLS tunnel runs on the stream engine and says why; engine native refuses", async () => {
    const { cert, key } = pems();
    const dir = mkdtempSync(join(tmpdir(), "relaykit-tunnel-nossl-"));
    writeFileSync(join(dir, "cert.pem"), cert);
    writeFileSync(join(dir, "key.pem"), key);
    const env = { RELAYKIT_LIBSSL: "/nonexistent/libssl.so.3" };
    const args = ["tunnel", "server", "--listen", "127.0.0.1:0", "--allow", "127.0.0.1"];
    const tlsArgs = ["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")];
    try {
      const srv = startCli([...args, ...tlsArgs], env);
      const line = await srv.line;
      if (ENGINES.includes("native")) {
        assert.match(
          line,
          /stream engine: native TLS needs libssl\.so\.3: \/nonexistent\/libssl\.so\.3: /,
        );
      } else assert.match(line, /stream engine/);
      await stopChild(srv.child);
      if (ENGINES.includes("native")) {
        const refused = startCli([...args, ...tlsArgs], { ...env, RELAYKIT_ENGINE: "native" });
        refused.line.catch(() => {}); // it prints nothing: it exits
        const exit = await new Promise((r) => refused.child.once("close", r));
        assert.notEqual(exit, 0);
        assert.match(refused.output.err, /native TLS needs libssl\.so\.3/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// (the native engine only: where it does not load, the suite above covers TLS links)
if (ENGINES.includes("native")) {
  describe("tunnel TLS links in the native engine", () => {
    let echo: Awaited<ReturnType<typeof echoServer>>;
    before(async () => {
      echo = await echoServer();
    });
    after(() => echo.close());
    const tlsPair = (co: Partial<TunnelClientOptions> = {}) => {
      const { cert, key, ca } = pems();
      return pair(echo.port, { engine: "native", tls: { cert, key } }, {
        engine: "native",
        tls: { ca },
        ...co,
      });
    };

    test("both ends native: 1 and 8 streams come back intact, through OpenSSL in the engine", async () => {
      const before = nativeEngine().tlsStats();
      const p = await tlsPair();
      try {
        assert.equal(p.server.engine, "native");
        assert.equal(p.client.engine, "native");
        assert.equal(p.client.engineReason, undefined);
        // both ends of the link are TLS sides of the engine
        assert.ok(nativeEngine().tlsStats().handshakes >= before.handshakes + 2);
        for (const n of [1, 8]) {
          const sent = Array.from(
            { length: n },
            () => random(n === 1 ? 4 * 1024 * 1024 : 512 * 1024),
          );
          const rs = await Promise.all(sent.map((data) => echoed(p.port, data)));
          for (const [i, r] of rs.entries()) {
            assert.equal(r.error, undefined);
            assert.equal(sha(r.data), sha(sent[i]!), `stream ${i} of ${n}`);
          }
        }
        // every byte went through the engine's TLS, both ways, on both ends
        const after = nativeEngine().tlsStats();
        assert.ok(after.bytesOut - before.bytesOut >= 2 * 8 * 1024 * 1024, "TLS bytes written");
        assert.ok(after.bytesIn - before.bytesIn >= 2 * 8 * 1024 * 1024, "TLS bytes read");
      } finally {
        await p.close();
      }
    });

    test("half-close crosses a native TLS link both ways", async () => {
      const reply = random(300 * 1024);
      const dest = await server((s) => {
        const parts: Uint8Array[] = [];
        s.on("data", (d: Uint8Array) => parts.push(d));
        s.on("end", () => {
          // saw EOF: answers after it with what it got, then its own bytes
          s.write(sha(concatOne(-1, ...parts)));
          void writeAll(s, reply);
        });
      });
      const { cert, key, ca } = pems();
      const p = await pair(dest.port, { engine: "native", tls: { cert, key } }, {
        engine: "native",
        tls: { ca },
      });
      try {
        const up = random(200 * 1024);
        const s = await connect(p.port);
        const got = collect(s);
        await writeAll(s, up);
        const r = await got;
        const head = sha(up);
        assert.equal(new TextDecoder().decode(r.data.subarray(0, head.length)), head);
        assert.equal(sha(r.data.subarray(head.length)), sha(reply));
        assert.ok(r.ended);
      } finally {
        await p.close();
        dest.close();
      }
    });

    for (
      const [what, tls, why] of [
        ["an unknown CA", {}, /unknown CA: CN=localhost is issued by CN=relaykit test CA/],
        [
          "another server name",
          { servername: "wrong.example" },
          /name mismatch: certificate is for localhost, 127\.0\.0\.1, connected to wrong\.example/,
        ],
      ] as const
    ) {
      test(`a native client refuses a server certificate for ${what} (CERT_UNTRUSTED)`, async () => {
        const { cert, key, ca } = pems();
        const srv = await TunnelServer.listen({
          listen: { host: "127.0.0.1", port: 0 },
          tls: { cert, key },
          engine: "native",
        });
        const c = await TunnelClient.start({
          link: { host: "localhost", port: srv.address.port },
          listeners: [],
          tls: { ...("servername" in tls ? { ca } : {}), ...tls },
          engine: "native",
          reconnectDelay: 5000,
        });
        try {
          assert.equal(c.engine, "native");
          const down = await new Promise<TunnelClientEvents["down"]>((r) => c.on("down", r));
          assert.equal(down.reason, "connect-failed");
          assert.equal(down.error?.code, "CERT_UNTRUSTED");
          assert.match(down.error!.message, why);
          assert.equal(c.up, false);
        } finally {
          await c.close();
          await srv.close();
        }
      });
    }

    test("a peer that sends no TLS handshake loses just its link, with RK_ETLS", async () => {
      const p = await tlsPair();
      const closes: TunnelServerEvents["link-close"][] = [];
      p.server.on("link-close", (e) => closes.push(e));
      try {
        // a client that speaks plain bytes to the TLS server
        const raw = await connect(p.server.address.port);
        const gone = collect(raw);
        raw.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        await gone;
        await waitFor(() => closes.length === 1, 5000, "the link's close");
        assert.equal(closes[0]!.error?.code, "RK_ETLS");
        // a server that answers a native TLS client with garbage
        const liar = await server((s) => s.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
        const c = await TunnelClient.start({
          link: { host: "127.0.0.1", port: liar.port },
          listeners: [],
          tls: true,
          engine: "native",
          reconnectDelay: 5000,
        });
        const down = await new Promise<TunnelClientEvents["down"]>((r) => c.on("down", r));
        assert.equal(down.reason, "connect-failed");
        assert.equal(down.error?.code, "RK_ETLS");
        await c.close();
        liar.close();
        // the good link stayed up and still carries streams
        assert.equal(p.client.up, true);
        assert.equal(await roundTrip(p.port, "still here"), "still here");
      } finally {
        await p.close();
      }
    });
  });
}

describe("tunnel over TLS, and the command", () => {
  const dir = mkdtempSync(join(tmpdir(), "relaykit-tunnel-"));
  let web: Server;
  let webPort = 0;
  before(async () => {
    web = createServer((req, res) => res.end(`hello through the tunnel (${req.url})\n`));
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    webPort = (web.address() as net.AddressInfo).port;
    writeTestCertificates(dir);
    writeFileSync(join(dir, "secret"), "tunnel-secret\n");
  });
  after(() => {
    web.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the link runs over TLS, verified against a CA", async () => {
    const echo = await echoServer();
    const p = await pair(echo.port, {
      tls: {
        cert: readFileSync(join(dir, "cert.pem"), "utf8"),
        key: readFileSync(join(dir, "key.pem"), "utf8"),
      },
    }, {
      // verified as "localhost" (Deno verifies the name connected to)
      link: { host: "localhost", port: 0 },
      tls: { ca: readFileSync(join(dir, "ca.pem"), "utf8") },
    });
    await Promise.all(Array.from({ length: 10 }, async () => {
      const data = random(512 * 1024);
      const s = await connect(p.port);
      const got = collect(s);
      await writeAll(s, data);
      assert.equal(sha((await got).data), sha(data));
    }));
    await p.close();
    // a client that does not trust the certificate never gets a link
    const srv = await TunnelServer.listen({
      listen: { host: "127.0.0.1", port: 0 },
      tls: {
        cert: readFileSync(join(dir, "cert.pem"), "utf8"),
        key: readFileSync(join(dir, "key.pem"), "utf8"),
      },
    });
    const c = await TunnelClient.start({
      link: srv.address,
      listeners: [],
      tls: true,
      reconnectDelay: 5000,
    });
    const down = await new Promise<TunnelClientEvents["down"]>((r) => c.on("down", r));
    assert.equal(down.reason, "connect-failed");
    assert.equal(down.error?.code, "CERT_UNTRUSTED");
    await c.close();
    await srv.close();
    await echo.close();
  });

  test("relaykit tunnel server and client carry curl end to end, with TLS and a secret", async () => {
    const srv = startCli([
      "tunnel",
      "server",
      "--listen",
      "127.0.0.1:0",
      "--allow",
      `127.0.0.1:${webPort}`,
      "--secret-file",
      join(dir, "secret"),
      "--tls-cert",
      join(dir, "cert.pem"),
      "--tls-key",
      join(dir, "key.pem"),
    ]);
    const sline = await srv.line;
    const linkPort = /on 127\.0\.0\.1:(\d+)/.exec(sline)?.[1];
    assert.ok(linkPort, sline);
    const cli = startCli([
      "tunnel",
      "client",
      "--link",
      `localhost:${linkPort}`,
      "--listen",
      `127.0.0.1:0=127.0.0.1:${webPort}`,
      "--secret-file",
      join(dir, "secret"),
      "--tls-ca",
      join(dir, "ca.pem"),
    ]);
    const cline = await cli.line;
    const local = /127\.0\.0\.1:(\d+) ->/.exec(cline)?.[1];
    assert.ok(local, cline);
    await waitFor(() => cli.output.out.includes("link to"), 10_000, "the link");
    assert.match(cli.output.out, /link to localhost:\d+ up \(version 2\)/);
    const r = await curl([`http://127.0.0.1:${local}/cli`]);
    assert.equal(r.body, "hello through the tunnel (/cli)\n", r.stderr);
    // Deno's child_process reports a child that handled SIGTERM and then
    // exited with 0 as killed by SIGTERM (see cli_test)
    const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";
    for (const child of [cli, srv]) {
      const exit = await stopChild(child.child);
      assert.ok(exit === 0 || (isDeno && exit === "SIGTERM"), `exit ${exit}`);
      assert.match(child.output.out, /SIGTERM: closing \d+ (streams?|links?)/);
    }
    assert.match(srv.output.out, /link from 127\.0\.0\.1:\d+ up/);
  });

  test("relaykit run starts tunnel_servers and tunnel_clients from the config file", async () => {
    const linkPort = await freePort();
    const localPort = await freePort();
    const cfg = join(dir, "tunnel.yaml");
    writeFileSync(
      cfg,
      `tunnel_servers:
  - name: edge
    address: 127.0.0.1
    port: ${linkPort}
    secret_file: secret
    routes:
      web: { host: 127.0.0.1, port: ${webPort} }
tunnel_clients:
  - name: branch
    link: { host: 127.0.0.1, port: ${linkPort} }
    secret_file: secret
    listeners:
      - { address: 127.0.0.1, port: ${localPort}, route: web }
`,
    );
    const run = startCli(["run", cfg]);
    await run.line;
    // the client's end of the link (the server's may say "up" first, and a
    // client whose link is not up yet closes local connections at once)
    await waitFor(() => /link to \S+ up \(version 2\)/.test(run.output.out), 10_000, "the link");
    const r = await curl([`http://127.0.0.1:${localPort}/config`]);
    assert.equal(r.body, "hello through the tunnel (/config)\n", r.stderr);
    const exit = await stopChild(run.child);
    const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";
    assert.ok(exit === 0 || (isDeno && exit === "SIGTERM"), `exit ${exit}`);
    assert.match(run.output.out, /SIGTERM: stopping/);
  });

  test("a mistake in a tunnel section is reported with file:line:col", async () => {
    const cfg = join(dir, "bad.yaml");
    writeFileSync(
      cfg,
      `tunnel_clients:
  - name: branch
    link: { host: 127.0.0.1, port: 70000 }
    listeners:
      - { port: 1, to: { host: 127.0.0.1, port: 2 }, route: web }
`,
    );
    const run = startCli(["run", cfg]);
    run.line.catch(() => {}); // it exits without a line
    const code = await new Promise<number | null>((r) => run.child.once("close", r));
    assert.equal(code, 2);
    assert.match(
      run.output.err,
      /bad\.yaml:3:\d+: tunnel_clients\[0\]\.link\.port: expected an integer from 1 to 65535, not 70000/,
    );
    assert.match(
      run.output.err,
      /bad\.yaml:5:\d+: tunnel_clients\[0\]\.listeners\[0\]: give one of to or route, not both/,
    );
  });
});

// ---------------------------------------------------------------------------
// reload: the sections change under a running link

/**
 * A stream that keeps writing 8 KiB every 10 ms to an echo and counts what
 * comes back; finish() ends it and gives what was sent and what came back.
 */
async function flow(port: number) {
  const s = await connect(port);
  const got = collect(s);
  const sent: Uint8Array[] = [];
  let received = 0;
  s.on("data", (d: Uint8Array) => received += d.length);
  const timer = setInterval(() => {
    if (s.destroyed) return;
    const b = random(8192);
    sent.push(b);
    s.write(b);
  }, 10);
  return {
    get received() {
      return received;
    },
    async finish() {
      clearInterval(timer);
      if (!s.destroyed) s.end();
      const r = await within(got, 5000, "the long stream to end");
      return { r, sent: concatOne(-1, ...sent) };
    },
  };
}

const local = (port: number) => ({ host: "127.0.0.1", port });
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Four ports free now, all different (freePort may repeat itself). */
async function freePorts(): Promise<[number, number, number, number]> {
  const ports = new Set<number>();
  while (ports.size < 4) ports.add(await freePort());
  return [...ports] as [number, number, number, number];
}

/** One round trip through a local port: what came back ("" when refused). */
/**
 * Wait until `port` refuses connections: a listener closed by a reload
 * stops accepting within moments (the native engine closes its socket on
 * its worker), not necessarily at once.
 */
async function refusedSoon(port: number, what: string): Promise<void> {
  for (const end = Date.now() + 2000; Date.now() < end;) {
    const refused = await connect(port).then((c) => {
      c.destroy();
      return false;
    }, (err: NodeJS.ErrnoException) => err.code === "ECONNREFUSED");
    if (refused) return;
    await sleep(20);
  }
  assert.fail(`${what} (port ${port}) still accepts 2 s after it was closed`);
}

async function roundTrip(port: number, what: string): Promise<string> {
  const s = await within(connect(port), 3000, `a connect to ${port}`);
  const got = collect(s);
  s.end(what);
  return text((await within(got, 3000, `"${what}" through ${port}`)).data);
}

/** SIGTERM, and SIGKILL if it is not gone within 5 s (then the test fails). */
async function stopRun(child: ChildProcess): Promise<void> {
  await within(stopChild(child), 5000, "the run to stop").catch((err) => {
    child.kill("SIGKILL");
    throw err;
  });
}

/** `err` with the end of a command's output (what it logged says why). */
function withOutput(err: unknown, output: string): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  e.message += `\n--- the command's output (end):\n${output.slice(-4000)}`;
  return e;
}

/**
 * The deadline of a test that starts `relaykit run` and reloads it: above
 * the sum of its own waits, which fail first and say what they waited for.
 */
const SLOW = { timeout: 45_000 };

/**
 * A run is ready for SIGHUP once it says so: its link may be up earlier,
 * before its signal handlers are in (with workers: once all of them are).
 */
const readyLine = (workers: number | undefined) =>
  workers === undefined ? /relaykit: running / : /relaykit: \d+ workers ready/;

describe("tunnel reload", () => {
  const dir = mkdtempSync(join(tmpdir(), "relaykit-treload-"));
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let other: Awaited<ReturnType<typeof echoServer>>;
  before(async () => {
    echo = await echoServer();
    other = await echoServer();
  });
  after(() => {
    echo.close();
    other.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("update() keeps the link and its streams: listeners come and go, new rules decide new OPENs", async () => {
    const so: TunnelServerOptions = { listen: local(0), allow: [{ cidr: "127.0.0.1/32" }] };
    const srv = await TunnelServer.listen(so);
    let links = 0;
    srv.on("link", () => links++);
    const [pa, pb, pc, pd] = await freePorts();
    const A = { listen: local(pa), to: local(echo.port) };
    const B = { listen: local(pb), to: local(other.port) };
    const C = { listen: local(pc), to: local(echo.port) };
    const D = { listen: local(pd), to: local(echo.port) };
    const client = await TunnelClient.start({ link: srv.address, listeners: [A, C, D] });
    const ends: TunnelClientEvents["stream-end"][] = [];
    client.on("stream-end", (e) => ends.push(e));
    try {
      await client.waitUp(5000);
      assert.equal(await roundTrip(pc, "via C"), "via C");
      const f = await flow(pa);
      await waitFor(() => f.received > 64 * 1024, 5000, "the stream to flow");
      // echo's port is denied from now on; other's stays allowed, and is a route too
      const routes = { o: local(other.port) };
      assert.deepEqual(await srv.update({ ...so, deny: [{ port: echo.port }], routes }), [
        "allow/deny rules changed",
        "routes changed",
      ]);
      const D2 = { ...D, to: { route: "o" } };
      assert.deepEqual(await client.update({ link: srv.address, listeners: [A, D2, B] }), [
        `listener 127.0.0.1:${pc} removed`,
        `listener 127.0.0.1:${pd} now -> route o`,
        `listener 127.0.0.1:${pb} -> 127.0.0.1:${other.port} added`,
      ]);
      assert.deepEqual(client.addresses.map((a) => a.port), [pa, pd, pb]);
      const at = f.received;
      assert.equal(await roundTrip(pb, "via B"), "via B", "the added listener carries");
      // (echo is denied now: an answer can only come from other, by the new route)
      assert.equal(await roundTrip(pd, "via D"), "via D", "the retargeted listener");
      await refusedSoon(pc, "the removed listener");
      assert.equal(await roundTrip(pa, "denied now"), "", "a new stream to echo is refused");
      await waitFor(() => ends.some((e) => e.reason === "refused"), 3000, "the refusal");
      assert.equal(ends.find((e) => e.reason === "refused")?.error?.code, "RK_EDENIED");
      await waitFor(() => f.received > at + 64 * 1024, 5000, "the old stream to flow on");
      const { r, sent } = await f.finish();
      assert.equal(r.error, undefined);
      assert.equal(r.data.length, sent.length);
      assert.equal(sha(r.data), sha(sent), "every byte of the old stream, across the update");
      assert.equal(links, 1, "one link handshake: the link was kept");
      // nothing changed: nothing to say
      assert.deepEqual(await client.update({ link: srv.address, listeners: [A, D2, B] }), []);
    } finally {
      await client.close();
      await srv.close();
    }
  });

  test("update() adds and removes SOCKS and HTTP CONNECT entry listeners, and changes their users", async () => {
    const so: TunnelServerOptions = { listen: local(0), allow: [{ cidr: "127.0.0.1/32" }] };
    const srv = await TunnelServer.listen(so);
    let links = 0;
    srv.on("link", () => links++);
    const [ps, ph] = await freePorts();
    const S = { listen: local(ps) };
    const H = { listen: local(ph) };
    const client = await TunnelClient.start({ link: srv.address, socks: [S] });
    // a SOCKS5 CONNECT to echo (no auth), then a byte through it
    const socks5 = async (port: number) => {
      const s = await connect(port);
      const got: Uint8Array[] = [];
      s.on("data", (d: Uint8Array) => got.push(d));
      s.on("error", () => {});
      const req = [5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 255];
      s.write(new Uint8Array(req));
      await waitFor(() => Buffer.concat(got).length >= 2 + 10, 5000, "the SOCKS5 replies");
      const r = Buffer.concat(got);
      s.destroy();
      return [r[1], r[3]]; // the method chosen, the CONNECT reply
    };
    try {
      await client.waitUp(5000);
      assert.deepEqual(await socks5(ps), [0x00, 0x00]);
      assert.deepEqual(
        await client.update({
          link: srv.address,
          socks: [{ ...S, users: { alice: "pw" } }],
          httpConnect: [H],
        }),
        [
          `listener 127.0.0.1:${ps} (socks): users changed`,
          `listener 127.0.0.1:${ph} -> HTTP CONNECT added`,
        ],
      );
      // users now required: no acceptable method (0xff)
      const s = await connect(ps);
      const got: Uint8Array[] = [];
      s.on("data", (d: Uint8Array) => got.push(d));
      s.on("error", () => {});
      s.write(new Uint8Array([5, 1, 0]));
      await waitFor(() => Buffer.concat(got).length >= 2, 5000, "the method choice");
      assert.equal(Buffer.concat(got)[1], 0xff);
      s.destroy();
      const h = await connect(ph);
      let answer = "";
      h.on("data", (d: Uint8Array) => answer += new TextDecoder().decode(d));
      h.on("error", () => {});
      h.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\nping`);
      await waitFor(() => answer.endsWith("ping"), 5000, "the CONNECT reply and the echo");
      assert.match(answer, /^HTTP\/1\.1 200 /);
      h.destroy();
      assert.deepEqual(await client.update({ link: srv.address, httpConnect: [H] }), [
        `listener 127.0.0.1:${ps} removed`,
      ]);
      await refusedSoon(ps, "the removed SOCKS listener");
      assert.equal(links, 1, "one link handshake: the link was kept");
    } finally {
      await client.close();
      await srv.close();
    }
  });

  test("a changed secret or address restarts the link with the reason; a keepalive change does not", async () => {
    const so: TunnelServerOptions = {
      listen: local(0),
      allow: [{ cidr: "127.0.0.1/32" }],
      secret: "one",
    };
    const srv = await TunnelServer.listen(so);
    let links = 0;
    srv.on("link", () => links++);
    const co: TunnelClientOptions = {
      link: srv.address,
      secret: "one",
      listeners: [{ listen: local(0), to: local(echo.port) }],
    };
    const client = await TunnelClient.start(co);
    try {
      await client.waitUp(5000);
      const port = client.addresses[0]!.port;
      // keepalive: the running link pings at the new interval
      assert.equal(client.rttMs, undefined);
      assert.deepEqual(await client.update({ ...co, keepaliveInterval: 50 }), [
        "keepalive changed",
      ]);
      await waitFor(() => client.rttMs !== undefined, 3000, "a PING at the new interval");
      assert.equal(links, 1);
      // the secret: both sides restart, the stream on the old link ends
      const f = await flow(port);
      await waitFor(() => f.received > 16 * 1024, 5000, "the stream to flow");
      const s1 = await srv.stage({ ...so, secret: "two" });
      const c1 = await client.stage({ ...co, keepaliveInterval: 50, secret: "two" });
      assert.equal(s1.restart, "secret");
      assert.equal(c1.restart, "secret");
      assert.deepEqual(c1.changes, ["link restarted (secret changed)"]);
      s1.commit();
      c1.commit();
      const { r, sent } = await f.finish();
      assert.ok(r.data.length <= sent.length);
      assert.equal(sha(r.data), sha(sent.subarray(0, r.data.length)), "a prefix of what was sent");
      await client.waitUp(5000);
      await waitFor(() => links === 2, 3000, "a second link");
      assert.equal(await roundTrip(port, "new link"), "new link");
      // the server moves: its old port refuses, the client follows
      const old = srv.address.port;
      const moved = (await freePorts()).find((p) => p !== old)!;
      assert.deepEqual(await srv.update({ ...so, secret: "two", listen: local(moved) }), [
        `listening on 127.0.0.1:${moved}`,
        "links restarted (listen address changed)",
      ]);
      await refusedSoon(old, "the server's old port");
      assert.deepEqual(
        await client.update({ ...co, keepaliveInterval: 50, secret: "two", link: local(moved) }),
        ["link restarted (link address changed)"],
      );
      await waitFor(() => links === 3 && client.up, 5000, "a link to the new address");
      assert.equal(await roundTrip(port, "moved"), "moved");
    } finally {
      await client.close();
      await srv.close();
    }
  });

  test("new TLS settings on the same port: the server binds it anew, both ends restart their link", async () => {
    writeTestCertificates(dir);
    const pem = (f: string) => readFileSync(join(dir, f), "utf8");
    // a port 0 stays the port it was given
    const so: TunnelServerOptions = { listen: local(0), allow: [{ cidr: "127.0.0.1/32" }] };
    const srv = await TunnelServer.listen(so);
    const port = srv.address.port;
    let links = 0;
    srv.on("link", () => links++);
    const co: TunnelClientOptions = {
      // verified as "localhost" (Deno verifies the name connected to)
      link: { host: "localhost", port },
      listeners: [{ listen: local(0), to: local(echo.port) }],
      // (a native client, below)
      engine: "stream",
    };
    const client = await TunnelClient.start(co);
    try {
      await client.waitUp(5000);
      const local0 = client.addresses[0]!.port;
      assert.equal(await roundTrip(local0, "plain"), "plain");
      const s = await srv.stage({ ...so, tls: { cert: pem("cert.pem"), key: pem("key.pem") } });
      const c = await client.stage({ ...co, tls: { ca: pem("ca.pem") } });
      assert.equal(s.restart, "TLS");
      assert.deepEqual(s.changes, ["links restarted (TLS changed)"]);
      assert.equal(c.restart, "TLS");
      s.commit();
      c.commit();
      await waitFor(() => links === 2 && client.up, 5000, "a link over TLS");
      assert.equal(srv.address.port, port);
      assert.equal(await roundTrip(local0, "over TLS"), "over TLS");
      // a client without TLS no longer gets a link there
      const plain = await TunnelClient.start({ ...co, listeners: [], reconnectDelay: 5000 });
      const down = await within(
        new Promise<TunnelClientEvents["down"]>((r) => plain.on("down", r)),
        5000,
        "the plain client to fail",
      );
      assert.ok(
        ["link-lost", "protocol-error", "connect-failed"].includes(down.reason),
        down.reason,
      );
      assert.equal(plain.up, false);
      await plain.close();
      assert.equal(links, 2);
      if (ENGINES.includes("native")) {
        // a native client turns to TLS too: the engine speaks it itself
        const nco: TunnelClientOptions = { ...co, engine: "native", reconnectDelay: 50 };
        const native = await TunnelClient.start(nco);
        try {
          assert.equal(native.engine, "native");
          const u = await native.stage({ ...nco, tls: { ca: pem("ca.pem") } });
          assert.equal(u.restart, "TLS");
          u.commit();
          await native.waitUp(5000);
          assert.equal(native.engine, "native");
          const port1 = native.addresses[0]!.port;
          assert.equal(await roundTrip(port1, "native over TLS"), "native over TLS");
        } finally {
          await native.close();
        }
      }
    } finally {
      await client.close();
      await srv.close();
    }
  });

  const runConfig = (o: {
    linkPort: number;
    ports: Record<string, number>;
    allow: string;
    secret: string;
    admin?: number;
  }) =>
    `tunnel_servers:
  - name: edge
    address: 127.0.0.1
    port: ${o.linkPort}
    secret: ${o.secret}
    allow: [${o.allow}]
tunnel_clients:
  - name: branch
    link: { host: 127.0.0.1, port: ${o.linkPort} }
    secret: ${o.secret}
    listeners:
${
      Object.entries(o.ports).map(([dest, p]) =>
        `      - { address: 127.0.0.1, port: ${p}, to: { host: 127.0.0.1, port: ${dest} } }\n`
      ).join("")
    }${o.admin === undefined ? "" : `admin: { port: ${o.admin}, token: t0ken-for-tests }\n`}`;

  for (const workers of [undefined, 2]) {
    const how = workers === undefined ? "" : ` (--workers ${workers})`;
    test(
      `SIGHUP applies tunnel sections under a flowing stream, on one link${how}`,
      SLOW,
      async () => {
        const [linkPort, pa, pb, pc] = await freePorts();
        const cfg = join(dir, `sighup-${workers ?? 1}.yaml`);
        const both =
          `{ cidr: 127.0.0.1/32, port: ${echo.port} }, { cidr: 127.0.0.1/32, port: ${other.port} }`;
        writeFileSync(
          cfg,
          runConfig({
            linkPort,
            ports: { [echo.port]: pa, [other.port]: pc },
            allow: both,
            secret: "s1",
          }),
        );
        const args = workers === undefined ? [] : ["--workers", String(workers)];
        const run = startCli(["run", cfg, ...args]);
        run.line.catch(() => {});
        const out = () => run.output.out + run.output.err;
        try {
          await waitFor(
            () => /branch: link to .* up/.test(out()) && readyLine(workers).test(out()),
            15_000,
            "the link",
          );
          assert.equal(await roundTrip(pc, "via C"), "via C");
          const f = await flow(pa);
          await waitFor(() => f.received > 64 * 1024, 5000, "the stream to flow");
          // C removed, B added (to other), echo no longer allowed
          writeFileSync(
            cfg,
            runConfig({
              linkPort,
              ports: { [echo.port]: pa, [other.port]: pb },
              allow: `{ cidr: 127.0.0.1/32, port: ${other.port} }`,
              secret: "s1",
            }),
          );
          process.kill(run.child.pid!, "SIGHUP");
          await waitFor(
            () => /relaykit(\[0\])?: reload: \S+ applied/.test(out()),
            10_000,
            "the reload",
          );
          assert.match(out(), /reload: edge: tunnel server: allow\/deny rules changed/);
          assert.match(
            out(),
            new RegExp(`reload: branch: tunnel client: listener 127\\.0\\.0\\.1:${pc} removed`),
          );
          assert.match(
            out(),
            new RegExp(
              `reload: branch: tunnel client: listener 127\\.0\\.0\\.1:${pb} -> 127\\.0\\.0\\.1:${other.port} added`,
            ),
          );
          const at = f.received;
          assert.equal(await roundTrip(pb, "via B"), "via B", "the added listener carries");
          await refusedSoon(pc, "the removed listener");
          assert.equal(await roundTrip(pa, "denied"), "", "a new stream to echo is refused");
          await waitFor(() => f.received > at + 64 * 1024, 5000, "the old stream to flow on");
          const { r, sent } = await f.finish();
          assert.equal(r.error, undefined);
          assert.equal(sha(r.data), sha(sent), "every byte of the old stream, across the reload");
          assert.equal(out().match(/edge: link from \S+ up/g)?.length, 1, "one link handshake");
          assert.doesNotMatch(out(), /after a restart|links? restarted/);
        } catch (err) {
          throw withOutput(err, out());
        } finally {
          await stopRun(run.child);
        }
      },
    );
  }

  test(
    "a reload starts a new section and stops a removed one; one that cannot bind changes nothing",
    SLOW,
    async () => {
      const [linkPort, pa, pb, taken] = await freePorts();
      const cfg = join(dir, "sections.yaml");
      const allow = `{ cidr: 127.0.0.1/32, port: ${echo.port} }`;
      const first = runConfig({ linkPort, ports: { [echo.port]: pa }, allow, secret: "s" });
      writeFileSync(cfg, first);
      const run = startCli(["run", cfg]);
      run.line.catch(() => {});
      const out = () => run.output.out + run.output.err;
      const blocker = await server(() => {}, taken);
      try {
        await waitFor(
          () => /branch: link to .* up/.test(out()) && readyLine(undefined).test(out()),
          15_000,
          "the link",
        );
        // a listener on a taken port: refused, the running ones untouched
        writeFileSync(
          cfg,
          runConfig({ linkPort, ports: { [echo.port]: taken }, allow, secret: "s" }),
        );
        process.kill(run.child.pid!, "SIGHUP");
        await waitFor(() => /still running the previous config/.test(out()), 10_000, "a refusal");
        assert.match(out(), /reload: Cannot listen on "127\.0\.0\.1:\d+": Address already in use/);
        assert.equal(await roundTrip(pa, "still"), "still");
        // branch goes (GOAWAY), twig comes
        writeFileSync(
          cfg,
          first.replace(/tunnel_clients:\n {2}- name: branch/, "tunnel_clients:\n  - name: twig")
            .replace(`port: ${pa},`, `port: ${pb},`),
        );
        process.kill(run.child.pid!, "SIGHUP");
        await waitFor(() => /twig: link to .* up/.test(out()), 10_000, "the new section's link");
        assert.match(out(), /reload: branch: tunnel client stopped/);
        assert.match(
          out(),
          /edge: link from \S+ closed: goaway \(.*the tunnel client is shutting down\)/,
        );
        assert.equal(await roundTrip(pb, "twig"), "twig");
        await assert.rejects(
          connect(pa),
          /ECONNREFUSED/,
          "the removed section's listener is closed",
        );
      } catch (err) {
        throw withOutput(err, out());
      } finally {
        await blocker.close();
        await stopRun(run.child);
      }
    },
  );

  for (const workers of [undefined, 2]) {
    const how = workers === undefined ? "" : ` (--workers ${workers})`;
    test(
      `the admin API's reload restarts a link whose secret changed, and answers what changed${how}`,
      SLOW,
      async () => {
        const [linkPort, pa, adminPort] = await freePorts();
        const cfg = join(dir, `admin-${workers ?? 1}.yaml`);
        const allow = `{ cidr: 127.0.0.1/32, port: ${echo.port} }`;
        const write = (secret: string) =>
          writeFileSync(
            cfg,
            runConfig({ linkPort, ports: { [echo.port]: pa }, allow, secret, admin: adminPort }),
          );
        write("s1");
        const run = startCli([
          "run",
          cfg,
          ...(workers === undefined ? [] : ["--workers", String(workers)]),
        ]);
        run.line.catch(() => {});
        const out = () => run.output.out + run.output.err;
        const links = () => out().match(/edge: link from \S+ up/g)?.length ?? 0;
        try {
          await waitFor(
            () => /branch: link to .* up/.test(out()) && readyLine(workers).test(out()),
            15_000,
            "the link",
          );
          assert.equal(await roundTrip(pa, "first"), "first");
          write("s2");
          const r = await fetch(`http://127.0.0.1:${adminPort}/api/v1/reload`, {
            method: "POST",
            headers: { Authorization: "Bearer t0ken-for-tests" },
          });
          const body = await r.json();
          assert.equal(r.status, 200);
          assert.equal(body.ok, true);
          assert.match(body.message, /applied \(0 listeners\); /);
          assert.match(body.message, /edge: tunnel server: links restarted \(secret changed\)/);
          assert.match(body.message, /branch: tunnel client: link restarted \(secret changed\)/);
          if (workers !== undefined) {
            // worker 0 runs the tunnels; the others have no tunnel to change
            assert.equal(body.per_worker.length, workers);
            assert.equal(body.per_worker[0].message, body.message);
            assert.doesNotMatch(body.per_worker[1].message, /tunnel/);
          }
          assert.match(
            out(),
            /warn relaykit(\[0\])?: reload: branch: tunnel client: link restarted \(secret changed\)/,
          );
          await waitFor(() => links() === 2, 5000, "a new link");
          await waitFor(
            () => /branch: link to .* up[^]*branch: link to .* up/.test(out()),
            5000,
            "up",
          );
          assert.equal(await roundTrip(pa, "second"), "second");
          assert.doesNotMatch(out(), /this tunnel client stopped/);
        } catch (err) {
          throw withOutput(err, out());
        } finally {
          await stopRun(run.child);
        }
      },
    );
  }
});

function concatOne(first: number, ...parts: Uint8Array[]): Uint8Array {
  const head = first < 0 ? [] : [new Uint8Array([first])];
  const all = [...head, ...parts];
  const out = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of all) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
