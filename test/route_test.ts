/**
 * Routing on the first bytes (tproxy's results), on both engines: remote
 * (with data and reply), close, file; need-more, the byte limit and the
 * routing timeout, route errors, onError, rewrites, and PROXY headers.
 */
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "./_test.ts";
import { type RouteFunction, TcpProxy, type TcpProxyOptions } from "../mod.ts";
import {
  blackHole,
  closed,
  connect,
  echoServer,
  ENGINES,
  expectedHash,
  receiveAll,
  sendRandom,
  server,
  sleep,
  waitFor,
  watchedProxy,
} from "./_helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const dir = mkdtempSync(join(tmpdir(), "relaykit-route-"));
const FILE = join(dir, "welcome.txt");
const BIG = join(dir, "big.bin");
writeFileSync(FILE, "welcome to relaykit\n");
const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 7 + (i >> 9)) & 0xff);
writeFileSync(BIG, big);
after(() => rmSync(dir, { recursive: true, force: true }));

async function start(
  engine: "native" | "stream",
  route: RouteFunction,
  extra: Partial<TcpProxyOptions> = {},
) {
  const onError: { id: number }[] = [];
  const watched = await watchedProxy(engine, {
    route,
    onError: (conn, err) => {
      onError.push(conn);
      assert.equal(err.connectionId, conn.id);
    },
    ...extra,
  });
  return { ...watched, onError };
}

/** Write `parts` with a pause between them, end, and collect the reply bytes. */
async function exchange(
  port: number,
  parts: (string | Uint8Array)[],
  gap = 0,
): Promise<Uint8Array> {
  const s = await connect(port);
  const chunks: Uint8Array[] = [];
  s.on("data", (d: Uint8Array) => chunks.push(d));
  s.on("error", () => {});
  for (const p of parts) {
    s.write(typeof p === "string" ? enc.encode(p) : p);
    if (gap > 0) await sleep(gap);
  }
  s.end();
  await closed(s);
  return new Uint8Array(Buffer.concat(chunks));
}

/** A target that answers "<name>:" + everything it got, at the client's EOF. */
async function named(name: string) {
  return await server((s: net.Socket) => {
    const parts: Uint8Array[] = [];
    s.on("data", (d: Uint8Array) => parts.push(d));
    s.on("end", () => s.end(`${name}:${Buffer.concat(parts)}`));
  });
}

for (const engine of ENGINES) {
  describe(`routing on the first bytes (${engine} engine)`, () => {
    test("a Host header router waits for the header, then picks the backend", async () => {
      const a = await named("a"), b = await named("b");
      const calls: number[] = [];
      const { proxy } = await start(engine, (data) => {
        calls.push(data.length);
        const host = /\r\nHost:\s*([^\r]*)\r\n/i.exec(dec.decode(data))?.[1];
        if (host === undefined) return undefined;
        return { remote: `127.0.0.1:${host === "a.test" ? a.port : b.port}` };
      });
      const req = (host: string) => `GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`;
      assert.equal(dec.decode(await exchange(proxy.port, [req("a.test")])), `a:${req("a.test")}`);
      const split = req("b.test");
      assert.equal(
        dec.decode(
          await exchange(
            proxy.port,
            [split.slice(0, 10), split.slice(10, 25), split.slice(25)],
            30,
          ),
        ),
        `b:${split}`,
      );
      assert.equal(calls[0], 0, "called first with no bytes");
      assert.ok(calls.length >= 5, `called again as bytes came: ${calls}`);
      await proxy.close();
      await a.close();
      await b.close();
    });

    test("the route sees each client's bytes intact, kept as given: small, larger than a drain carries, in two pieces", async () => {
      const t = await named("t");
      // what each client sends: a tag byte, then a pattern of its own (ASCII:
      // the target answers with a string)
      const payload = (tag: number, n: number) =>
        new Uint8Array(n).map((_, i) => i === 0 ? tag : 33 + (i * 31 + tag * 7 + (i >> 8)) % 90);
      const sent = new Map<number, Uint8Array>([
        [1, payload(1, 300)],
        [2, payload(2, 100 * 1024)], // more than one drain carries (64 KiB)
        [3, payload(3, 5000)],
        [4, payload(4, 2000)],
      ]);
      const seen: { tag: number; data: Uint8Array; copy: Uint8Array }[] = [];
      const { proxy } = await start(engine, async (data) => {
        if (data.length === 0) return undefined;
        const want = sent.get(data[0]!)!;
        seen.push({ tag: data[0]!, data, copy: data.slice() });
        await sleep(1); // others' events are drained meanwhile
        if (data.length < want.length) return undefined;
        return { remote: { host: "127.0.0.1", port: t.port } };
      }, { routeLimit: 200_000 });
      const replies = await Promise.all([
        exchange(proxy.port, [sent.get(1)!]),
        exchange(proxy.port, [sent.get(2)!]),
        exchange(proxy.port, [sent.get(3)!.subarray(0, 1000), sent.get(3)!.subarray(1000)], 50),
        exchange(proxy.port, [sent.get(4)!.subarray(0, 1), sent.get(4)!.subarray(1)], 50),
      ]);
      for (const [i, tag] of [1, 2, 3, 4].entries()) {
        const want = sent.get(tag)!;
        const got = replies[i]!;
        assert.equal(dec.decode(got.subarray(0, 2)), "t:");
        assert.equal(got.length - 2, want.length, `client ${tag}: all bytes reached the target`);
        assert.ok(
          got.subarray(2).every((v, j) => v === want[j]),
          `client ${tag}: intact at the target`,
        );
      }
      for (const s of seen) {
        const want = sent.get(s.tag)!;
        assert.ok(s.data.length <= want.length);
        assert.ok(
          s.copy.every((v, j) => v === want[j]),
          `client ${s.tag}: the route saw its bytes`,
        );
        assert.ok(
          s.data.every((v, j) => v === s.copy[j]),
          `client ${s.tag}: what it kept is unchanged`,
        );
      }
      const calls = (tag: number) => seen.filter((s) => s.tag === tag).length;
      assert.ok(
        calls(3) >= 2 && calls(4) >= 2,
        `two pieces: asked again (${calls(3)}, ${calls(4)})`,
      );
      assert.ok(seen.some((s) => s.tag === 2 && s.data.length > 64 * 1024), "a big first read");
      await proxy.close();
      await t.close();
    });

    test("a route that waits for the client is asked with none first, and one that then answers before the client speaks is still asked", async () => {
      const t = await named("t");
      let serverFirst = false;
      const calls = new Map<number, number[]>();
      const { proxy } = await start(engine, (data, conn) => {
        calls.set(conn.id, [...(calls.get(conn.id) ?? []), data.length]);
        if (data.length === 0) return serverFirst ? { close: "hello\n" } : undefined;
        return { remote: { host: "127.0.0.1", port: t.port } };
      });
      // clients that speak a little after they connect: nothing is there at
      // the accept (after the first wait the engine may wait for their bytes)
      const late = async () => {
        const s = await connect(proxy.port);
        const chunks: Uint8Array[] = [];
        s.on("data", (d: Uint8Array) => chunks.push(d));
        await sleep(30);
        s.end("abc");
        await closed(s);
        return dec.decode(Buffer.concat(chunks));
      };
      for (let i = 0; i < 3; i++) assert.equal(await late(), "t:abc");
      for (const [id, lengths] of calls) {
        assert.equal(lengths[0], 0, `connection ${id} asked first with none: ${lengths}`);
        assert.equal(lengths.at(-1), 3, `then with the bytes: ${lengths}`);
      }
      // now the route answers before the client speaks: a client that sends
      // nothing still gets its greeting, and the ones after it too
      serverFirst = true;
      for (let i = 0; i < 2; i++) {
        const s = await connect(proxy.port);
        const chunks: Uint8Array[] = [];
        s.on("data", (d: Uint8Array) => chunks.push(d));
        s.on("error", () => {});
        s.on("end", () => s.end()); // the greeting, then the proxy's FIN
        await closed(s);
        assert.equal(dec.decode(Buffer.concat(chunks)), "hello\n");
      }
      await proxy.close();
      await t.close();
    });

    test("remote with data and reply (SOCKS4-style), async route", async () => {
      const t = await named("t");
      const { proxy } = await start(engine, async (data) => {
        await sleep(5);
        if (data.length < 4) return undefined;
        return {
          remote: { host: "127.0.0.1", port: t.port },
          data: data.subarray(3),
          reply: "OK\n",
        };
      });
      assert.equal(dec.decode(await exchange(proxy.port, ["HI:payload"])), "OK\nt:payload");
      await proxy.close();
      await t.close();
    });

    test("close, with and without bytes", async () => {
      const { proxy, ends } = await start(
        engine,
        (data) =>
          data.length === 0
            ? undefined
            : data[0] === 0x78
            ? { close: true }
            : { close: "go away\n" },
      );
      assert.equal(dec.decode(await exchange(proxy.port, ["x"])), "");
      assert.equal(dec.decode(await exchange(proxy.port, ["y and more"])), "go away\n");
      await waitFor(() => ends.length === 2, 5000, "two ends");
      assert.deepEqual(ends.map((e) => e.reason), ["closed", "closed"]);
      await proxy.close();
    });

    test("file by path with a reply, by fd with offset and length, and a big one", async () => {
      const fd = openSync(FILE, "r");
      const { proxy, ends } = await start(engine, (data) => {
        const cmd = dec.decode(data);
        if (cmd === "") return undefined;
        if (cmd.startsWith("path")) return { file: FILE, reply: "HTTP/1.0 200 OK\r\n\r\n" };
        if (cmd.startsWith("fd")) return { file: fd, offset: 11, length: 8 };
        return { file: BIG };
      });
      assert.equal(
        dec.decode(await exchange(proxy.port, ["path"])),
        "HTTP/1.0 200 OK\r\n\r\nwelcome to relaykit\n",
      );
      assert.equal(dec.decode(await exchange(proxy.port, ["fd"])), "relaykit");
      const got = await exchange(proxy.port, ["big"]);
      assert.equal(got.length, big.length);
      assert.ok(got.every((v, i) => v === big[i]), "the big file arrives intact");
      await waitFor(() => ends.length === 3, 5000, "three ends");
      assert.deepEqual(ends.map((e) => e.reason), ["done", "done", "done"]);
      assert.equal(ends[2]!.bToA.written, big.length);
      closeSync(fd);
      await proxy.close();
    });

    test("a file that cannot be sent is an error, and the client is closed", async () => {
      const { proxy, errors, onError } = await start(
        engine,
        () => ({ file: join(dir, "missing") }),
      );
      assert.equal(dec.decode(await exchange(proxy.port, [])), "");
      await waitFor(() => errors.length === 1, 5000, "error");
      assert.equal(errors[0]?.code, "ENOENT");
      assert.match(errors[0]!.message, /Cannot send the file/);
      assert.equal(onError.length, 1);
      await proxy.close();
    });

    test("the byte limit and the routing timeout close the connection with a reason", async () => {
      const { proxy, errors, ends, onError } = await start(engine, () => undefined, {
        routeLimit: 1000,
        routeTimeout: 300,
      });
      await exchange(proxy.port, ["x".repeat(3000)]);
      await waitFor(() => errors.length === 1, 5000, "limit error");
      assert.equal(errors[0]?.code, "RK_EROUTE_LIMIT");
      const slow = await connect(proxy.port);
      slow.on("error", () => {});
      slow.write("a");
      const t0 = Date.now();
      await new Promise((r) => slow.once("end", r));
      slow.destroy();
      assert.ok(Date.now() - t0 >= 250, "cut at the routing timeout");
      await waitFor(() => ends.length === 2, 5000, "two ends");
      assert.equal(ends[1]?.reason, "decision-timeout");
      assert.equal(errors[1]?.code, "ETIMEDOUT", errors.map((e) => e.message).join("; "));
      assert.equal(onError.length, 2, errors.map((e) => e.message).join("; "));
      await proxy.close();
    });

    test("a route that throws or returns nonsense closes the client with an error", async () => {
      const { proxy, errors } = await start(engine, (data) => {
        if (data.length === 0) return undefined;
        if (data[0] === 0x74) throw new Error("boom");
        return { nonsense: 1 } as never;
      });
      await exchange(proxy.port, ["throw"]);
      await exchange(proxy.port, ["other"]);
      await waitFor(() => errors.length === 2, 5000, "two errors");
      assert.match(errors[0]!.message, /the route function failed: boom/);
      assert.match(errors[1]!.message, /bad route/);
      assert.deepEqual(errors.map((e) => e.code), ["RK_EROUTE", "RK_EROUTE"]);
      await proxy.close();
    });

    test("a refused remote is an error with the remote's name", async () => {
      const { proxy, errors, ends } = await start(engine, () => ({ remote: "127.0.0.1:1" }));
      await exchange(proxy.port, ["x"]);
      await waitFor(() => ends.length === 1, 5000, "end");
      assert.equal(ends[0]?.reason, "connect-failed");
      assert.equal(errors[0]?.code, "ECONNREFUSED");
      assert.match(errors[0]!.message, /127\.0\.0\.1:1/);
      await proxy.close();
    });

    test("rewriteRequest and rewriteResponse stream both ways; bulk stays intact", async () => {
      const t = await named("t");
      const { proxy } = await start(
        engine,
        (d) => d.length < 3 ? undefined : { remote: `127.0.0.1:${t.port}` },
        {
          rewriteRequest: (chunk) =>
            enc.encode(dec.decode(chunk).replaceAll("Host: old", "Host: new")),
          rewriteResponse: (chunk) => enc.encode(dec.decode(chunk).toUpperCase()),
        },
      );
      const got = dec.decode(
        await exchange(proxy.port, ["GET / HTTP/1.0\r\n", "Host: old\r\n\r\n"], 30),
      );
      assert.equal(got, "T:GET / HTTP/1.0\r\nHOST: NEW\r\n\r\n");
      await proxy.close();
      await t.close();
      const echo = await echoServer();
      const bulk = await start(engine, () => ({ remote: `127.0.0.1:${echo.port}` }));
      const s = await connect(bulk.proxy.port);
      const r = receiveAll(s);
      const sent = await sendRandom(s, 2 * 1024 * 1024, 9);
      assert.deepEqual(await r, { bytes: 2 * 1024 * 1024, sha256: sent });
      assert.equal(sent, expectedHash(2 * 1024 * 1024, 9));
      await bulk.proxy.close();
      await echo.close();
    });

    test("per-route connect and idle timeouts", async () => {
      const hole = await blackHole();
      const echo = await echoServer();
      const { proxy, ends, errors } = await start(
        engine,
        (data) =>
          data.length === 0 ? undefined : data[0] === 0x68 // "h"
            ? { remote: `127.0.0.1:${hole.port}`, connectTimeout: 200 }
            : { remote: `127.0.0.1:${echo.port}`, idleTimeout: 200 },
      );
      const t0 = Date.now();
      await exchange(proxy.port, ["hole"]);
      await waitFor(() => ends.length === 1, 5000, "the connect timeout");
      assert.equal(ends[0]?.reason, "connect-failed");
      assert.equal(errors[0]?.code, "ETIMEDOUT");
      assert.ok(Date.now() - t0 < 3000, "the route's timeout, not the default 10 s");
      const s = await connect(proxy.port);
      s.on("error", () => {});
      s.write("idle");
      await waitFor(() => ends.length === 2, 5000, "the idle timeout");
      assert.equal(ends[1]?.reason, "idle-timeout");
      s.destroy();
      hole.stop();
      await proxy.close();
      await echo.close();
    });

    test("the route sees the original client from a PROXY header", async () => {
      const t = await named("t");
      const seen: string[] = [];
      const { proxy } = await start(engine, (data, conn) => {
        seen.push(`${conn.original?.source?.host}:${data.length}`);
        return data.length === 0 ? undefined : { remote: `127.0.0.1:${t.port}` };
      }, { acceptProxy: { mode: "v1" } });
      const got = await exchange(proxy.port, ["PROXY TCP4 192.0.2.9 192.0.2.10 1 2\r\nbody"]);
      assert.equal(dec.decode(got), "t:body");
      assert.deepEqual(seen, ["192.0.2.9:4"]);
      await proxy.close();
      await t.close();
    });
  });
}

test("a proxy needs a target, a backend or a route", async () => {
  await assert.rejects(
    TcpProxy.listen({ listen: { host: "127.0.0.1", port: 0 } }),
    /needs a target, a backend or a route/,
  );
});
