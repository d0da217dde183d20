/**
 * Data hooks on both engines: observe and rewrite the bytes in transit.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "./_test.ts";
import { type DataHook, type DataHooks, relay, TcpProxy } from "../mod.ts";
import { callHook } from "../src/forward/hooks.ts";
import type { ConnectionEnd } from "../src/forward/types.ts";
import { concatBytes } from "../src/bytes.ts";
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

describe("callHook", () => {
  const ctx = { id: 7, direction: "aToB", remote: undefined, stats: () => undefined } as const;
  const chunk = enc.encode("abc");

  test("a synchronous hook's bytes come back at once, not in a promise", () => {
    assert.equal(callHook(() => {}, chunk, ctx), chunk);
    const out = callHook(() => enc.encode("xyz"), chunk, ctx, 1000);
    assert.ok(out instanceof Uint8Array);
    assert.equal(dec.decode(out), "xyz");
  });

  test("an async hook settles in a promise; a failure is a rejected promise with RK_EHOOK, never a throw", async () => {
    const later = callHook(() => Promise.resolve(enc.encode("later")), chunk, ctx);
    assert.ok(later instanceof Promise);
    assert.equal(dec.decode(await later), "later");
    const cases: DataHook[] = [
      () => {
        throw new Error("boom");
      },
      () => "not bytes" as never,
      () => Promise.reject(new Error("late boom")),
    ];
    for (const hook of cases) {
      const out = callHook(hook, chunk, ctx);
      assert.ok(out instanceof Promise);
      await assert.rejects(out, (e: unknown) => (e as { code?: string }).code === "RK_EHOOK");
    }
  });
});

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

    /** Send `text` through a proxy with `aToB` and check the target got exactly `expected`. */
    async function arrivesAs(aToB: DataHook, text: string, expected: string) {
      let got!: Promise<{ bytes: number; sha256: string }>;
      const backend = await server((s) => got = receiveAll(s));
      const { p } = await proxy(backend.port, { aToB });
      try {
        const c = await connect(p.port);
        c.end(text);
        await waitFor(() => got !== undefined, 5000, "backend connection");
        const atServer = await got;
        const want = enc.encode(expected);
        assert.equal(atServer.bytes, want.length);
        assert.equal(atServer.sha256, createHash("sha256").update(want).digest("hex"));
        c.destroy();
      } finally {
        await p.abort();
        await backend.close();
      }
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

    test("a hook that changes its chunk in place and returns nothing: the target gets the changed bytes", async () => {
      const text = "axbxcx".repeat(100_000);
      await arrivesAs(
        (chunk) => {
          for (let i = 0; i < chunk.length; i++) if (chunk[i] === 0x78) chunk[i] = 0x79; // x -> y
        },
        text,
        text.replaceAll("x", "y"),
      );
    });

    test("a hook that drops bytes: they never reach the target", async () => {
      const text = "axbxcx".repeat(50_000);
      await arrivesAs(
        (chunk) => chunk.filter((b) => b !== 0x78), // drop every "x"
        text,
        text.replaceAll("x", ""),
      );
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

    test("NosyProxy's rewrite over 8 MiB: the hook sees every byte in order, once, one call at a time; the target gets exactly its results", async () => {
      let got!: Promise<{ bytes: number; sha256: string }>;
      const backend = await server((s) => got = receiveAll(s));
      const seen = createHash("sha256"), returned = createHash("sha256");
      let seenBytes = 0, returnedBytes = 0, inFlight = 0, most = 0, calls = 0;
      const { p, ends } = await proxy(backend.port, {
        // in2out of libasyncproxy's NosyProxy: uppercase, one byte shorter
        aToB: async (chunk) => {
          most = Math.max(most, ++inFlight);
          calls++;
          seen.update(chunk);
          seenBytes += chunk.length;
          if (calls % 7 === 0) await sleep(1); // now and then a slow one
          const out = new Uint8Array(chunk.length - 1);
          for (let i = 0; i < out.length; i++) {
            const c = chunk[i]!;
            out[i] = c >= 0x61 && c <= 0x7a ? c - 32 : c;
          }
          returned.update(out);
          returnedBytes += out.length;
          inFlight--;
          return out;
        },
      });
      try {
        const c = await connect(p.port);
        const size = 8 * 1024 * 1024;
        await sendRandom(c, size, 23);
        await waitFor(() => got !== undefined, 5000, "backend connection");
        await waitFor(() => seenBytes === size, 15_000, "every byte through the hook");
        for (const s of backend.sockets) s.end();
        const atServer = await got;
        assert.equal(most, 1, "one call at a time per direction");
        assert.equal(
          seen.digest("hex"),
          expectedHash(size, 23),
          "the hook saw the stream in order",
        );
        assert.equal(atServer.bytes, returnedBytes);
        assert.equal(atServer.sha256, returned.digest("hex"));
        await waitFor(() => ends.length === 1, 5000, "close event");
        assert.equal(ends[0]!.aToB.read, size);
        assert.equal(ends[0]!.aToB.written, returnedBytes);
        c.destroy();
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    test("a hook that holds its chunk: the proxy stops reading (bounded), then every byte arrives", async () => {
      const backend = await echoServer();
      let release!: () => void;
      const gate = new Promise<void>((r) => release = r);
      let id = -1;
      const { p } = await proxy(backend.port, {
        aToB: async (_chunk, ctx) => {
          id = ctx.id;
          await gate; // every call waits until the test opens the gate
        },
      });
      try {
        const c = await connect(p.port);
        const size = 24 * 1024 * 1024;
        const reply = receiveAll(c);
        const sent = sendRandom(c, size, 31);
        await waitFor(() => id !== -1, 5000, "the first chunk");
        await sleep(500);
        const held = p.stats(id)!.aToB.read;
        await sleep(200);
        const later = p.stats(id)!.aToB.read;
        assert.equal(later, held, "no reading while the hook holds a chunk and the window is full");
        assert.ok(held <= 2 * 1024 * 1024, `read ${held} bytes ahead of the hook`);
        release();
        await sent;
        const got = await reply;
        assert.equal(got.bytes, size);
        assert.equal(got.sha256, expectedHash(size, 31));
      } finally {
        release();
        await p.abort();
        await backend.close();
      }
    });

    test("half-close with batches in flight: the target gets every byte, then the FIN; its answer comes back", async () => {
      let got!: Promise<{ bytes: number; sha256: string }>;
      const backend = await server((s) => {
        got = receiveAll(s);
        void got.then(() => s.end("done"));
      });
      const { p, ends } = await proxy(backend.port, {
        aToB: async () => {
          await sleep(1);
        },
      });
      try {
        const c = await connect(p.port);
        const size = 6 * 1024 * 1024;
        const reply = readN(c, 4);
        await sendRandom(c, size, 47); // and end(): the FIN follows the last byte
        await waitFor(() => got !== undefined, 5000, "backend connection");
        const atServer = await got;
        assert.equal(atServer.bytes, size);
        assert.equal(atServer.sha256, expectedHash(size, 47));
        assert.equal(await reply, "done");
        await waitFor(() => ends.length === 1, 5000, "close event");
        assert.equal(ends[0]!.reason, "done");
        assert.equal(ends[0]!.aToB.read, size);
        assert.equal(ends[0]!.aToB.written, size);
        assert.equal(ends[0]!.bToA.written, 4);
        c.destroy();
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    test("a hook that throws mid-stream closes that connection with RK_EHOOK; the next one is served", async () => {
      const backend = await echoServer();
      let calls = 0, failOn = 3;
      const { p, errors } = await proxy(backend.port, {
        aToB: (chunk, ctx) => {
          if (++calls === failOn) throw new Error(`no more for ${ctx.id}`);
          return chunk;
        },
      });
      try {
        const c = await connect(p.port);
        const end = receiveAll(c).then(() => "end", (e: NodeJS.ErrnoException) => e.code);
        void sendRandom(c, 16 * 1024 * 1024, 5).catch(() => {}); // cut off mid-way
        // reset while still sending: the client's next write or read fails
        assert.ok(["ECONNRESET", "EPIPE"].includes(String(await end)), "the connection is cut");
        await waitFor(() => errors.length === 1, 5000, "error event");
        const err = errors[0] as Error & { code?: string };
        assert.equal(err.code, "RK_EHOOK");
        assert.match(err.message, /Hook aToB of connection \d+ failed: no more for \d+/);
        await waitFor(() => p.connections === 0, 5000, "connection closed");
        failOn = -1;
        const d = await connect(p.port);
        const size = 3 * 1024 * 1024;
        const reply = receiveAll(d);
        await sendRandom(d, size, 6);
        const got = await reply;
        assert.equal(got.bytes, size);
        assert.equal(got.sha256, expectedHash(size, 6));
        assert.equal(errors.length, 1);
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    test("a chunk is the hook's to keep: held past its return, and bytes held back and sent later, arrive whole", async () => {
      const backend = await echoServer();
      const kept: Uint8Array[] = [];
      let held: Uint8Array[] = [];
      const { p } = await proxy(backend.port, {
        // holds every chunk back until a newline, then sends them all
        aToB: (chunk) => {
          kept.push(chunk);
          held.push(chunk);
          if (!chunk.includes(10)) return new Uint8Array(0);
          const out = concatBytes(held);
          held = [];
          return out;
        },
      });
      try {
        const c = await connect(p.port);
        const reply = readN(c, 12);
        c.write("hello");
        await waitFor(() => kept.length === 1, 5000, "the first chunk");
        await sleep(50);
        c.write(" world\n");
        assert.equal(await reply, "hello world\n");
        assert.equal(dec.decode(kept[0]!), "hello", "a chunk kept past its hook's return");
        c.destroy();
      } finally {
        await p.abort();
        await backend.close();
      }
    });

    if (engine === "native") {
      /**
       * `size` random bytes (from `seed`) echoed through a proxy whose hook
       * keeps every chunk of a->b; the echo is checked, and so is what the
       * hook kept, byte for byte. Returns the kept chunks.
       */
      const keptThrough = async (size: number, seed: number): Promise<Uint8Array[]> => {
        const backend = await echoServer();
        const seen: Uint8Array[] = [];
        const { p } = await proxy(backend.port, { aToB: (chunk) => void seen.push(chunk) });
        try {
          const c = await connect(p.port);
          const reply = receiveAll(c);
          await sendRandom(c, size, seed);
          const got = await reply;
          assert.equal(got.bytes, size);
          assert.equal(got.sha256, expectedHash(size, seed));
          const hash = createHash("sha256");
          for (const chunk of seen) hash.update(chunk);
          assert.equal(hash.digest("hex"), expectedHash(size, seed), "what the hook kept");
          return seen;
        } finally {
          await p.abort();
          await backend.close();
        }
      };

      test("a copied chunk is a plain Uint8Array whose buffer holds its bytes and nothing else", async () => {
        const seen = await keptThrough(2 * 1024 * 1024, 31);
        assert.ok(seen.length > 0);
        for (const chunk of seen) {
          assert.equal(Object.getPrototypeOf(chunk), Uint8Array.prototype);
          assert.equal(chunk.byteOffset, 0);
          assert.equal(chunk.buffer.byteLength, chunk.length);
        }
      });

      test("80 MiB of chunks kept by the hook (past what the engine gives before it copies): each intact, all of them what went through", async () => {
        await keptThrough(80 * 1024 * 1024, 37);
      });

      test("lent chunks (lend: true): a hook that transfers its chunk's buffer closes the connection with RK_EHOOK; the next one is served", async () => {
        const backend = await echoServer();
        let transfer = true;
        const kept: ArrayBuffer[] = [];
        const { p, errors } = await proxy(backend.port, {
          lend: true,
          aToB: (chunk) => {
            if (transfer) kept.push((chunk.buffer as ArrayBuffer).transfer());
          },
        });
        try {
          const c = await connect(p.port);
          const end = receiveAll(c).then(() => "end", (e: NodeJS.ErrnoException) => e.code);
          c.write("mine now");
          assert.equal(await end, "ECONNRESET");
          await waitFor(() => errors.length === 1, 5000, "error event");
          const err = errors[0] as Error & { code?: string };
          assert.equal(err.code, "RK_EHOOK");
          assert.match(err.message, /transferred its chunk's buffer/);
          assert.equal(dec.decode(new Uint8Array(kept[0]!)), "mine now", "the memory stays valid");
          transfer = false;
          const d = await connect(p.port);
          const reply = readN(d, 5);
          d.write("hello");
          assert.equal(await reply, "hello");
          d.destroy();
        } finally {
          await p.abort();
          await backend.close();
        }
      });

      test("lent chunks (lend: true): one kept past its hook's return reads as empty, never as other bytes", async () => {
        const backend = await echoServer();
        const kept: Uint8Array[] = [];
        const { p } = await proxy(backend.port, {
          lend: true,
          aToB: (chunk) => void kept.push(chunk),
        });
        try {
          const c = await connect(p.port);
          const reply = readN(c, 5);
          c.write("hello");
          assert.equal(await reply, "hello");
          await waitFor(() => kept.length === 1, 5000, "the hook");
          assert.equal(kept[0]!.length, 0);
          c.destroy();
        } finally {
          await p.abort();
          await backend.close();
        }
      });
    }
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
