/**
 * Data hooks on both engines: observe and rewrite the bytes in transit.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "./_test.ts";
import { type DataHooks, relay, TcpProxy } from "../mod.ts";
import type { ConnectionEnd } from "../src/forward/types.ts";
import { closeFd, connectFd, openSocketPair, readFd, shutdownWriteFd, writeFd } from "../mod.ts";
import {
  concat,
  connect,
  echoServer,
  ENGINES,
  expectedHash,
  nativeEngine,
  processEcho,
  receiveAll,
  sendRandom,
  server,
  sleep,
  waitFor,
} from "./_helpers.ts";

const enc = new TextEncoder(), dec = new TextDecoder();

/** Read exactly `n` bytes from a socket (as a string). */
function readN(s: import("node:net").Socket, n: number): Promise<string> {
  return new Promise((resolve) => {
    let got = "";
    const on = (d: Uint8Array) => {
      got += dec.decode(d);
      if (got.length >= n) {
        s.off("data", on);
        resolve(got);
      }
    };
    s.on("data", on);
  });
}

for (const engine of ENGINES) {
  describe(`${engine} engine: data hooks`, () => {
    async function proxy(port: number, hooks: DataHooks) {
      if (engine === "native") nativeEngine();
      const p = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port },
        engine,
        hooks,
      });
      const ends: ConnectionEnd[] = [];
      const errors: Error[] = [];
      p.on("close", (e) => ends.push(e)).on("error", (e) => errors.push(e));
      return { p, ends, errors };
    }

    test("NosyProxy: uppercases what the client sends and reverses what the server answers", async () => {
      const seenByServer: string[] = [];
      const backend = await server((s) => {
        s.on("data", (d: Uint8Array) => {
          seenByServer.push(dec.decode(d));
          s.write(enc.encode("world"));
        });
      });
      const { p } = await proxy(backend.port, {
        aToB: (chunk) => enc.encode(dec.decode(chunk).toUpperCase()),
        bToA: (chunk) => chunk.slice().reverse(),
      });
      try {
        const c = await connect(p.port);
        const reply = readN(c, 5);
        c.write("hello");
        assert.equal(await reply, "dlrow");
        assert.deepEqual(seenByServer, ["HELLO"]);
        c.destroy();
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    test("a hook that grows every chunk: the target gets exactly what the hook returned", async () => {
      let got!: Promise<{ bytes: number; sha256: string }>;
      const backend = await server((s) => got = receiveAll(s));
      const returned: Uint8Array[] = [];
      const { p, ends } = await proxy(backend.port, {
        aToB: (chunk) => {
          const out = concat([chunk, enc.encode("<chunk>")]);
          returned.push(out);
          return out;
        },
      });
      try {
        const c = await connect(p.port);
        const size = 1024 * 1024;
        await sendRandom(c, size, 42);
        await waitFor(() => got !== undefined, 5000, "backend connection");
        const atServer = await got;
        const expected = concat(returned);
        assert.equal(atServer.bytes, expected.length);
        assert.equal(atServer.sha256, createHash("sha256").update(expected).digest("hex"));
        for (const s of backend.sockets) s.end(); // the other way ends too
        await waitFor(() => ends.length === 1, 5000, "close event");
        c.destroy();
        assert.equal(ends[0]!.aToB.read, size);
        assert.equal(ends[0]!.aToB.written, expected.length, "counters tell read from written");
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    test("a hook that drops bytes: they never reach the target", async () => {
      let got!: Promise<{ bytes: number; sha256: string }>;
      const backend = await server((s) => got = receiveAll(s));
      const { p } = await proxy(backend.port, {
        aToB: (chunk) => chunk.filter((b) => b !== 0x78), // drop every "x"
      });
      try {
        const c = await connect(p.port);
        const text = "axbxcx".repeat(50_000);
        c.end(text);
        await waitFor(() => got !== undefined, 5000, "backend connection");
        const atServer = await got;
        const kept = enc.encode(text.replaceAll("x", ""));
        assert.equal(atServer.bytes, kept.length);
        assert.equal(atServer.sha256, createHash("sha256").update(kept).digest("hex"));
        c.destroy();
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    test("an async hook with a delay keeps order and every byte", async () => {
      const backend = await echoServer();
      const { p } = await proxy(backend.port, {
        aToB: async (chunk) => {
          await sleep(2);
          return chunk;
        },
        bToA: async (_chunk) => {
          await sleep(1);
          return undefined; // pass through unchanged
        },
      });
      try {
        const c = await connect(p.port);
        const size = 300_000;
        const reply = receiveAll(c);
        await sendRandom(c, size, 9);
        const got = await reply;
        assert.equal(got.bytes, size);
        assert.equal(got.sha256, expectedHash(size, 9));
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    test("a hook that throws closes the connection and reports RK_EHOOK", async () => {
      const backend = await echoServer();
      const { p, errors } = await proxy(backend.port, {
        aToB: () => {
          throw new Error("no thanks");
        },
      });
      try {
        const c = await connect(p.port);
        const end = receiveAll(c).then(() => "end", (e: NodeJS.ErrnoException) => e.code);
        c.write("anything");
        assert.equal(await end, "ECONNRESET");
        await waitFor(() => errors.length === 1, 5000, "error event");
        const err = errors[0] as Error & { code?: string; cause?: unknown };
        assert.equal(err.code, "RK_EHOOK");
        assert.match(err.message, /Hook aToB of connection \d+ failed: no thanks/);
        await waitFor(() => p.connections === 0, 5000, "connection closed");
        // a hook that rejects does the same
        const q = await proxy(backend.port, { bToA: () => Promise.reject(new Error("later")) });
        const d = await connect(q.p.port);
        const dEnd = receiveAll(d).then(() => "end", (e: NodeJS.ErrnoException) => e.code);
        d.write("ping");
        assert.equal(await dEnd, "ECONNRESET");
        await waitFor(() => q.errors.length === 1, 5000, "error event");
        await q.p.abort();
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    test("16 MiB through a hook that returns its input arrives byte-exact; a tap sees every byte in order", async () => {
      const backend = await echoServer();
      const tapped = createHash("sha256");
      let tappedBytes = 0;
      const { p } = await proxy(backend.port, {
        aToB: (chunk) => chunk,
        bToA: (chunk, ctx) => {
          assert.equal(ctx.direction, "bToA");
          tapped.update(chunk);
          tappedBytes += chunk.length;
        },
      });
      try {
        const c = await connect(p.port);
        const size = 16 * 1024 * 1024;
        const reply = receiveAll(c);
        await sendRandom(c, size, 77);
        const got = await reply;
        assert.equal(got.bytes, size);
        assert.equal(got.sha256, expectedHash(size, 77));
        assert.equal(tappedBytes, size);
        assert.equal(tapped.digest("hex"), expectedHash(size, 77));
      } finally {
        await p.abort();
        await backend.close();
      }
    });
  });
}

// fd relays need the native library: Deno and Bun, not Node
if (ENGINES.includes("native")) {
  describe("native engine: hooks on fd relays", () => {
    test("a relay hooks one direction and splices the other", async () => {
      nativeEngine();
      const echo = await processEcho();
      try {
        const sock = await connectFd("127.0.0.1", echo.port);
        const [mine, theirs] = openSocketPair();
        const seen: string[] = [];
        const rl = relay(theirs, sock, {
          hooks: {
            aToB: (chunk, ctx) => {
              seen.push(ctx.direction);
              return enc.encode(dec.decode(chunk).toUpperCase());
            },
          },
        });
        writeFd(mine, enc.encode("quiet words"));
        // readFd blocks this thread: the hook must have run first
        await waitFor(() => seen.length === 1, 5000, "the hook");
        let back = "";
        while (back.length < 11) back += dec.decode(readFd(mine, 64));
        assert.equal(back, "QUIET WORDS");
        shutdownWriteFd(mine);
        assert.equal(readFd(mine, 16).length, 0);
        const end = await rl.done;
        assert.equal(end.reason, "done");
        assert.equal(end.aToB.read, 11);
        assert.equal(end.bToA.written, 11);
        closeFd(mine);
      } finally {
        echo.stop();
      }
    });
  });
}
