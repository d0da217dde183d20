/**
 * The multiplexed tunnel: the frame codec, then client and server in this
 * process on real sockets (127.0.0.1): 200 concurrent streams, a stalled
 * reader, half-close both ways, a link cut mid-transfer, authentication,
 * version negotiation, TLS, keepalive, refusals; then the command.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
  connect,
  curl,
  echoServer,
  ENGINES,
  fdCount,
  freePort,
  server,
  sleep,
  startCli,
  stopChild,
  useEngine,
  waitFor,
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

async function pair(
  destPort: number,
  so: Partial<TunnelServerOptions> = {},
  co: Partial<TunnelClientOptions> = {},
): Promise<Pair> {
  const srv = await TunnelServer.listen({
    listen: { host: "127.0.0.1", port: 0 },
    allow: [{ cidr: "127.0.0.0/8" }],
    ...so,
  });
  const client = await TunnelClient.start({
    listeners: [{
      listen: { host: "127.0.0.1", port: 0 },
      to: { host: "127.0.0.1", port: destPort },
    }],
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

// Each engine in turn: every tunnel of the block picks it.
for (const engine of ENGINES) {
  describe(`tunnel (${engine} engine)`, () => {
    useEngine(engine);
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
      assert.equal(res.error, "ECONNRESET", "the local connection is reset, not ended");
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
      await client.waitUp(3000);
      for (const a of client.addresses.slice(0, 3)) {
        const r = await collect(await connect(a.port));
        assert.equal(r.data.length, 0);
      }
      await waitFor(() => ends.length === 3, 3000, "three ends");
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

  const pairs: ["native" | "stream", "native" | "stream"][] = ENGINES.includes("native")
    ? [["native", "stream"], ["stream", "native"]]
    : [];
  for (const [serverEngine, clientEngine] of pairs) {
    test(`a ${clientEngine} client and a ${serverEngine} server carry streams intact`, async () => {
      const p = await pair(echo.port, { engine: serverEngine }, { engine: clientEngine });
      assert.equal(p.server.engine, serverEngine);
      assert.equal(p.client.engine, clientEngine);
      const sent = Array.from({ length: 8 }, () => random(1024 * 1024));
      const rs = await Promise.all(sent.map(async (data) => {
        const s = await connect(p.port);
        const got = collect(s);
        void writeAll(s, data);
        return await got;
      }));
      for (const [i, r] of rs.entries()) {
        assert.equal(r.error, undefined);
        assert.equal(sha(r.data), sha(sent[i]!), `stream ${i}`);
      }
      await waitFor(() => p.serverEnds.length === 8 && p.clientEnds.length === 8, 5000, "ends");
      assert.ok([...p.serverEnds, ...p.clientEnds].every((e) => e.reason === "done"));
      assert.ok(p.clientEnds.every((e) => e.bytesOut === 1024 * 1024 && e.bytesIn === 1024 * 1024));
      await p.close();
    });
  }

  test("a TLS link runs on the stream engine; the native engine refuses one", async () => {
    await assert.rejects(
      TunnelClient.start({
        link: { host: "127.0.0.1", port: 1 },
        listeners: [],
        tls: true,
        engine: "native",
      }),
      /plain TCP links/,
    );
    const c = await TunnelClient.start({
      link: { host: "127.0.0.1", port: 1 },
      listeners: [],
      tls: true,
    });
    assert.equal(c.engine, "stream");
    await c.close();
  });
});

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
    await waitFor(() => run.output.out.includes("up (version 2)"), 10_000, "the link");
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
