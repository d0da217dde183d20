/**
 * PROXY protocol on listeners (accept, from trusted sources only) and
 * towards targets (send, v1 and v2 with TLVs), on both engines.
 */
import assert from "node:assert/strict";
import { describe, test } from "./_test.ts";
import { TcpProxy, type TcpProxyOptions } from "../mod.ts";
import { decodeTlvs, parseProxyHeader, type ProxyHeader } from "../src/protocol/proxy_protocol.ts";
import {
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

/** A target that records everything each connection sends, then closes. */
async function recorder() {
  const got: Promise<Uint8Array>[] = [];
  let count = 0;
  const srv = await server((s) => {
    count++;
    got.push(
      new Promise((resolve) => {
        const parts: Uint8Array[] = [];
        s.on("data", (d: Uint8Array) => parts.push(d));
        s.on("end", () => {
          s.end();
          resolve(new Uint8Array(Buffer.concat(parts)));
        });
      }),
    );
  });
  return { ...srv, got, connections: () => count };
}

function start(engine: "native" | "stream", port: number, extra: Partial<TcpProxyOptions>) {
  return watchedProxy(engine, { target: { host: "127.0.0.1", port }, ...extra }, {
    original: true,
  });
}

/** Send `parts` (with a pause between them), end, and return what came back. */
async function exchange(port: number, parts: (string | Uint8Array)[], gap = 0): Promise<string> {
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
  return dec.decode(Buffer.concat(chunks));
}

function headerOf(bytes: Uint8Array): { header: ProxyHeader; rest: string } {
  const r = parseProxyHeader(bytes, "detect");
  assert.equal(r.kind, "header", `no header in ${JSON.stringify(dec.decode(bytes))}`);
  const h = r as { kind: "header"; header: ProxyHeader; length: number };
  return { header: h.header, rest: dec.decode(bytes.subarray(h.length)) };
}

const V1 = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";

for (const engine of ENGINES) {
  describe(`PROXY protocol on listeners (${engine} engine)`, () => {
    test("send-proxy v1 tells the target the true client and local address", async () => {
      const target = await recorder();
      const { proxy } = await start(engine, target.port, { sendProxy: { version: 1 } });
      const s = await connect(proxy.port);
      const clientPort = s.localPort!;
      s.end("hello");
      await closed(s);
      const { header, rest } = headerOf(await target.got[0]!);
      assert.equal(header.version, 1);
      assert.deepEqual(header.source, { host: "127.0.0.1", port: clientPort });
      assert.deepEqual(header.destination, { host: "127.0.0.1", port: proxy.port });
      assert.equal(rest, "hello");
      await proxy.close();
      await target.close();
    });

    test("send-proxy v2 with UNIQUE_ID, AUTHORITY and CRC32C", async () => {
      const target = await recorder();
      const { proxy } = await start(engine, target.port, {
        sendProxy: { version: 2, uniqueId: true, authority: "db.example", crc32c: true },
      });
      await exchange(proxy.port, ["ping"]);
      await exchange(proxy.port, ["pong"]);
      const a = headerOf(await target.got[0]!), b = headerOf(await target.got[1]!);
      for (const [h, body] of [[a, "ping"], [b, "pong"]] as const) {
        assert.equal(h.header.version, 2);
        assert.equal(h.header.command, "proxy");
        assert.equal((h.header.source as { host: string }).host, "127.0.0.1");
        assert.equal(h.rest, body);
        const tlvs = decodeTlvs(h.header.tlvs);
        assert.equal(tlvs.authority, "db.example");
        assert.match(dec.decode(tlvs.uniqueId), /^[0-9a-f]{32}$/);
        assert.equal(typeof tlvs.crc32c, "number"); // verified by the parser
      }
      const ids = [a, b].map((h) => dec.decode(decodeTlvs(h.header.tlvs).uniqueId));
      assert.notEqual(ids[0], ids[1]);
      await proxy.close();
      await target.close();
    });

    test("accept-proxy passes the original client on (event, close, v2 header)", async () => {
      const target = await recorder();
      const { proxy, originals, ends } = await start(engine, target.port, {
        acceptProxy: { mode: "v1" },
        sendProxy: { version: 2 },
      });
      await exchange(proxy.port, [V1 + "payload"]);
      const { header, rest } = headerOf(await target.got[0]!);
      assert.deepEqual(header.source, { host: "192.0.2.1", port: 56324 });
      assert.deepEqual(header.destination, { host: "198.51.100.2", port: 443 });
      assert.equal(rest, "payload");
      await waitFor(() => ends.length === 1, 5000, "close event");
      assert.deepEqual(originals[0]?.source, { host: "192.0.2.1", port: 56324 });
      assert.equal(originals[0]?.header?.version, 1);
      assert.deepEqual(ends[0]?.original?.source, { host: "192.0.2.1", port: 56324 });
      await proxy.close();
      await target.close();
    });

    test("a header split into single bytes, and v2 with TLVs, in detect mode", async () => {
      const target = await recorder();
      const { proxy, originals } = await start(engine, target.port, {
        acceptProxy: { mode: "detect" },
      });
      await exchange(proxy.port, [...V1].concat(["x"]), 2);
      const v2 = (await import("../src/protocol/proxy_protocol.ts")).buildProxyHeader({
        version: 2,
        command: "proxy",
        transport: "stream",
        source: { host: "2001:db8::1", port: 1234 },
        destination: { host: "2001:db8::2", port: 80 },
        tlvs: [{ type: 0x05, value: enc.encode("req-42") }, {
          type: 0xe0,
          value: new Uint8Array(),
        }],
      }, { crc32c: true });
      await exchange(proxy.port, [v2, "y"]);
      assert.equal(dec.decode(await target.got[0]!), "x");
      assert.equal(dec.decode(await target.got[1]!), "y");
      assert.equal(originals.length, 2);
      assert.deepEqual(originals[1]?.source, { host: "2001:db8::1", port: 1234 });
      assert.equal(dec.decode(originals[1]?.tlvs?.uniqueId), "req-42");
      assert.deepEqual(originals[1]?.header?.tlvs[1], { type: 0xe0, value: new Uint8Array() });
      await proxy.close();
      await target.close();
    });

    test("detect mode passes a connection without a header unchanged", async () => {
      const target = await recorder();
      const { proxy, originals } = await start(engine, target.port, {
        acceptProxy: { mode: "detect" },
      });
      await exchange(proxy.port, ["GET / HTTP/1.0\r\n\r\n"]);
      assert.equal(dec.decode(await target.got[0]!), "GET / HTTP/1.0\r\n\r\n");
      assert.equal(originals.length, 0);
      await proxy.close();
      await target.close();
    });

    test("untrusted sources are refused, or passed on as they are", async () => {
      const target = await recorder();
      const refused = await start(engine, target.port, {
        acceptProxy: { mode: "v1", trusted: ["10.0.0.0/8"] },
      });
      assert.equal(await exchange(refused.proxy.port, [V1 + "forged"]), "");
      await waitFor(() => refused.errors.length === 1, 5000, "error event");
      assert.equal(refused.errors[0]?.code, "RK_EPROXY_UNTRUSTED");
      assert.equal(target.connections(), 0);
      const passed = await start(engine, target.port, {
        acceptProxy: { mode: "v1", trusted: ["10.0.0.0/8"], untrusted: "no-header" },
      });
      await exchange(passed.proxy.port, [V1 + "as-is"]);
      assert.equal(dec.decode(await target.got[0]!), V1 + "as-is");
      assert.equal(passed.originals.length, 0);
      await refused.proxy.close();
      await passed.proxy.close();
      await target.close();
    });

    test("malformed, truncated and late headers close the client with a reason", async () => {
      const target = await recorder();
      const { proxy, errors, ends } = await start(engine, target.port, {
        acceptProxy: { mode: "v1", timeout: 300 },
      });
      // 107 bytes without CRLF
      await exchange(proxy.port, ["PROXY TCP4 " + "1".repeat(120)]);
      await exchange(proxy.port, ["PROXY TCP4 192.0.2.1"]); // then EOF
      const slow = await connect(proxy.port);
      slow.on("error", () => {});
      slow.write("PROX");
      await new Promise((r) => slow.once("end", r)); // cut by the timeout
      slow.destroy();
      await waitFor(() => ends.length === 3, 5000, "three ends");
      assert.deepEqual(errors.slice(0, 2).map((e) => e.code), ["RK_EPROXY", "RK_EPROXY"]);
      assert.match(errors[0]!.message, /V1_TOO_LONG/);
      assert.match(errors[1]!.message, /ended inside its PROXY header/);
      assert.equal(ends[2]?.reason, "decision-timeout");
      assert.equal(ends[2]?.error?.code, "ETIMEDOUT");
      assert.equal(target.connections(), 0);
      await proxy.close();
      await target.close();
    });

    test("bulk data after an accepted header arrives intact both ways", async () => {
      const echo = await echoServer();
      const { proxy } = await start(engine, echo.port, { acceptProxy: { mode: "v1" } });
      const s = await connect(proxy.port);
      const got = receiveAll(s);
      s.write(V1);
      const n = 3 * 1024 * 1024;
      const sent = await sendRandom(s, n, 61);
      const r = await got;
      assert.equal(r.bytes, n);
      assert.equal(r.sha256, sent);
      assert.equal(sent, expectedHash(n, 61));
      await proxy.close();
      await echo.close();
    });

    test("hooks see the original client and the bytes read with the header", async () => {
      const target = await recorder();
      const seen: string[] = [];
      const { proxy } = await start(engine, target.port, {
        acceptProxy: { mode: "v1" },
        hooks: {
          aToB: (chunk, ctx) => {
            seen.push(`${ctx.original?.source?.host}`);
            return enc.encode(dec.decode(chunk).toUpperCase());
          },
        },
      });
      await exchange(proxy.port, [V1 + "first", "second"], 50);
      assert.equal(dec.decode(await target.got[0]!), "FIRSTSECOND");
      assert.ok(seen.length >= 2 && seen.every((h) => h === "192.0.2.1"), seen.join());
      await proxy.close();
      await target.close();
    });

    test("a server-speaks-first target works with send-proxy (nothing waits for the client)", async () => {
      const banner = await server((s) => {
        s.write("220 ready\r\n");
        s.on("data", () => {});
        s.on("end", () => s.end());
      });
      const { proxy } = await start(engine, banner.port, { sendProxy: { version: 1 } });
      const s = await connect(proxy.port);
      const first = await new Promise<string>((r) => s.once("data", (d) => r(String(d))));
      assert.equal(first, "220 ready\r\n");
      s.end();
      await closed(s);
      await proxy.close();
      await banner.close();
    });
  });
}

test("bad front options fail listen", async () => {
  await assert.rejects(
    TcpProxy.listen({
      listen: { host: "127.0.0.1", port: 0 },
      target: { host: "127.0.0.1", port: 1 },
      acceptProxy: { mode: "v1", trusted: ["10.0.0.0/33"] },
    }),
    /prefix length must be 0 to 32/,
  );
  await assert.rejects(
    TcpProxy.listen({
      listen: { host: "127.0.0.1", port: 0 },
      target: { host: "127.0.0.1", port: 1 },
      sendProxy: { version: 3 as 1 },
    }),
    /sendProxy.version must be 1 or 2/,
  );
});
