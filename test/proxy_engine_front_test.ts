/**
 * PROXY headers read and sent by the engine itself (ProxySpec.front): on
 * the native engine a forward with acceptProxy/sendProxy to a fixed target
 * decides every connection in C, and no held update reaches JavaScript; the
 * stream engine runs the same front in TypeScript. Both must behave alike,
 * also under garbage.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { describe, test } from "./_test.ts";
import { Front } from "../src/proxy/front.ts";
import { ProxyAcceptance } from "../src/proxy/accept_proxy.ts";
import {
  buildProxyHeader,
  decodeTlvs,
  parseProxyHeader,
  type ProxyHeader,
} from "../src/protocol/proxy_protocol.ts";
import {
  closed,
  connect,
  echoServer,
  ENGINES,
  server,
  sleep,
  waitFor,
  watchedProxy,
} from "./_helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Held updates that reached a Front (JavaScript deciding a connection). */
let heldUpdates = 0;
const held = Front.prototype.held;
Front.prototype.held = function (this: Front, u) {
  heldUpdates++;
  return held.call(this, u);
};

/** Header steps run by the TypeScript front (JavaScript reading a header). */
let headerSteps = 0;
const step = ProxyAcceptance.prototype.step;
ProxyAcceptance.prototype.step = function (this: ProxyAcceptance, u) {
  headerSteps++;
  return step.call(this, u);
};

/** A target that records what each connection sent, then closes. */
async function recorder() {
  const got: Promise<Uint8Array>[] = [];
  const srv = await server((s) => {
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
  return { ...srv, got };
}

/** Send `parts`, end, and return what came back (empty when refused). */
async function exchange(port: number, parts: (string | Uint8Array)[]): Promise<string> {
  const s = await connect(port);
  const chunks: Uint8Array[] = [];
  s.on("data", (d: Uint8Array) => chunks.push(d));
  s.on("error", () => {});
  for (const p of parts) s.write(typeof p === "string" ? enc.encode(p) : p);
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
const V2_V6 = buildProxyHeader({
  version: 2,
  command: "proxy",
  transport: "stream",
  source: { host: "2001:db8::7", port: 4000 },
  destination: { host: "2001:db8::1:0:0:2", port: 8443 },
  tlvs: [],
});

/** A cheap xorshift32, so a failure can be replayed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

for (const engine of ENGINES) {
  describe(`PROXY headers decided by the engine (${engine} engine)`, () => {
    test("v1 and v2 headers and a v2 header sent on: no held update reaches JavaScript on native", async () => {
      const target = await recorder();
      const { proxy, originals, ends } = await watchedProxy(engine, {
        target: { host: "127.0.0.1", port: target.port },
        acceptProxy: { mode: "detect" },
        sendProxy: { version: 2, crc32c: true, uniqueId: true, authority: "app.example" },
      }, { original: true });
      const before = heldUpdates;
      await exchange(proxy.port, [V1 + "one"]);
      await exchange(proxy.port, [V2_V6, "two"]);
      await exchange(proxy.port, ["three"]); // detect: no header
      const sent = await Promise.all(target.got.slice(0, 3));
      const [a, b, c] = sent.map(headerOf);
      assert.deepEqual(a!.header.source, { host: "192.0.2.1", port: 56324 });
      assert.deepEqual(a!.header.destination, { host: "198.51.100.2", port: 443 });
      assert.equal(a!.rest, "one");
      assert.deepEqual(b!.header.source, { host: "2001:db8::7", port: 4000 });
      assert.deepEqual(b!.header.destination, { host: "2001:db8::1:0:0:2", port: 8443 });
      assert.equal(b!.rest, "two");
      assert.equal(
        c!.header.source && "host" in c!.header.source && c!.header.source.host,
        "127.0.0.1",
      );
      assert.equal(c!.rest, "three");
      for (const { header } of [a!, b!, c!]) {
        const tlvs = decodeTlvs(header.tlvs); // the CRC32C was checked by the parser
        assert.equal(tlvs.authority, "app.example");
        assert.match(dec.decode(tlvs.uniqueId), /^[0-9a-f]{32}$/);
        assert.equal(typeof tlvs.crc32c, "number");
        assert.deepEqual(header.tlvs.map((t) => t.type), [0x02, 0x05, 0x03]);
      }
      await waitFor(() => ends.length === 3, 5000, "three ends");
      assert.equal(originals.length, 2, "an original event per header, none without");
      assert.deepEqual(originals[0]?.source, { host: "192.0.2.1", port: 56324 });
      assert.equal(originals[0]?.header?.version, 1);
      assert.deepEqual(originals[1]?.header?.source, { host: "2001:db8::7", port: 4000 });
      assert.equal(originals[1]?.header?.version, 2);
      const byId = new Map(ends.map((e) => [e.id, e]));
      assert.deepEqual(byId.get(originals[0]!.id)?.original?.source, originals[0]?.source);
      if (engine === "native") assert.equal(heldUpdates - before, 0, "held updates in JavaScript");
      else assert.ok(heldUpdates - before >= 3, "the stream engine holds in TypeScript");
      await proxy.close();
      await target.close();
    });

    test("a header with TLVs (a CRC32C too) goes to JavaScript whole when someone wants the original client", async () => {
      const target = await recorder();
      const { proxy, originals } = await watchedProxy(engine, {
        target: { host: "127.0.0.1", port: target.port },
        acceptProxy: { mode: "v2" },
      }, { original: true });
      const before = heldUpdates;
      const v2 = buildProxyHeader({
        version: 2,
        command: "proxy",
        transport: "stream",
        source: { host: "192.0.2.9", port: 9 },
        destination: { host: "192.0.2.10", port: 10 },
        tlvs: [{ type: 0x05, value: enc.encode("req-7") }],
      }, { crc32c: true });
      await exchange(proxy.port, [v2, "x"]);
      assert.equal(dec.decode(await target.got[0]!), "x");
      await waitFor(() => originals.length === 1, 5000, "original event");
      assert.equal(dec.decode(originals[0]?.tlvs?.uniqueId), "req-7");
      assert.ok(heldUpdates - before >= 1, "handed to JavaScript");
      await proxy.close();
      await target.close();
    });

    test("refusals (untrusted source, malformed header, timeout) close that client, on native without JavaScript holding", async () => {
      const target = await recorder();
      const untrusted = await watchedProxy(engine, {
        target: { host: "127.0.0.1", port: target.port },
        acceptProxy: { mode: "v1", trusted: ["10.0.0.0/8", "2001:db8::/32"] },
      });
      const strict = await watchedProxy(engine, {
        target: { host: "127.0.0.1", port: target.port },
        acceptProxy: { mode: "v2", timeout: 200 },
      });
      const before = heldUpdates;
      assert.equal(await exchange(untrusted.proxy.port, [V1 + "forged"]), "");
      assert.equal(await exchange(strict.proxy.port, [V1 + "v1 on a v2 listener"]), "");
      const slow = await connect(strict.proxy.port);
      slow.on("error", () => {});
      slow.write(V2_V6.subarray(0, 20));
      await new Promise((r) => slow.once("end", r)); // cut by the header timeout
      slow.destroy();
      await waitFor(() => untrusted.errors.length === 1, 5000, "untrusted error");
      await waitFor(() => strict.ends.length === 2, 5000, "two ends");
      assert.equal(untrusted.errors[0]?.code, "RK_EPROXY_UNTRUSTED");
      assert.match(
        untrusted.errors[0]!.message,
        /from 127\.0\.0\.1:\d+: PROXY header not accepted/,
      );
      assert.equal(strict.errors[0]?.code, "RK_EPROXY");
      assert.match(strict.errors[0]!.message, /bad PROXY header \(NO_HEADER: /);
      const late = strict.ends.find((e) => e.reason === "decision-timeout");
      assert.equal(late?.error?.code, "ETIMEDOUT");
      if (engine === "native") assert.equal(heldUpdates - before, 0, "held updates in JavaScript");
      // served afterwards
      await exchange(strict.proxy.port, [V2_V6, "after"]);
      assert.equal(dec.decode(await target.got[0]!), "after");
      await untrusted.proxy.close();
      await strict.proxy.close();
      await target.close();
    });

    test("with a route function the header is read by the engine, the route sees what follows", async () => {
      const target = await recorder();
      const seen: { data: string; source: unknown }[] = [];
      const { proxy, originals, errors } = await watchedProxy(engine, {
        route: (data, conn) => {
          const text = dec.decode(data);
          seen.push({ data: text, source: conn.original?.source });
          return text.includes("\n") ? { remote: `127.0.0.1:${target.port}` } : undefined;
        },
        acceptProxy: { mode: "detect" },
      }, { original: true });
      const before = headerSteps;
      await exchange(proxy.port, [V1 + "GET /a\n"]);
      await exchange(proxy.port, [V2_V6, "GET /b\n"]);
      await exchange(proxy.port, ["GET /c\n"]); // no header
      assert.equal(await exchange(proxy.port, ["PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n"]), "");
      const got = await Promise.all(target.got.slice(0, 3));
      assert.deepEqual(got.map((b) => dec.decode(b)).sort(), ["GET /a\n", "GET /b\n", "GET /c\n"]);
      assert.ok(seen.every((s) => !s.data.startsWith("PROXY")), JSON.stringify(seen));
      const a = seen.find((s) => s.data.startsWith("GET /a"));
      assert.deepEqual(a?.source, { host: "192.0.2.1", port: 56324 });
      await waitFor(() => originals.length === 2 && errors.length === 1, 5000, "events");
      assert.deepEqual(originals.map((o) => o.header?.version).sort(), [1, 2]);
      assert.equal(errors[0]?.code, "RK_EPROXY");
      if (engine === "native") assert.equal(headerSteps - before, 0, "header steps in JavaScript");
      else assert.ok(headerSteps - before >= 4, "the stream engine reads headers in TypeScript");
      await proxy.close();
      await target.close();
    });

    test("reconfigure takes new connections back to JavaScript's front", async () => {
      const target = await recorder();
      const { proxy, errors } = await watchedProxy(engine, {
        target: { host: "127.0.0.1", port: target.port },
        acceptProxy: { mode: "v1" },
      });
      await exchange(proxy.port, [V1 + "a"]);
      proxy.reconfigure({
        target: { host: "127.0.0.1", port: target.port },
        acceptProxy: { mode: "v2" },
      });
      const before = heldUpdates;
      await exchange(proxy.port, [V2_V6, "b"]);
      assert.equal(await exchange(proxy.port, [V1 + "c"]), "");
      assert.equal(dec.decode(await target.got[0]!), "a");
      assert.equal(dec.decode(await target.got[1]!), "b");
      await waitFor(() => errors.length === 1, 5000, "error event");
      assert.equal(errors[0]?.code, "RK_EPROXY");
      assert.ok(heldUpdates - before >= 2, "JavaScript holds after reconfigure");
      await proxy.close();
      await target.close();
    });

    test("random, truncated and mutated headers never stop the proxy; the next client is served", async () => {
      const echo = await echoServer();
      const { proxy, errors } = await watchedProxy(engine, {
        target: { host: "127.0.0.1", port: echo.port },
        acceptProxy: { mode: "detect", timeout: 300 },
      });
      const next = rng(0x70f2);
      const valid = [enc.encode(V1), V2_V6];
      const garbage = (): Uint8Array => {
        const kind = next() % 4;
        const base = valid[next() % 2]!;
        if (kind === 0) return Uint8Array.from({ length: 1 + next() % 300 }, () => next() & 0xff);
        if (kind === 1) return base.subarray(0, next() % base.length); // truncated
        const b = base.slice();
        for (let i = 0; i <= next() % 4; i++) b[next() % b.length] = next() & 0xff; // mutated
        if (kind === 3) {
          return Uint8Array.from([...b.subarray(0, 16), ...b.subarray(16 + next() % 8)]);
        }
        return b;
      };
      const one = async (bytes: Uint8Array, abort: boolean) => {
        const s: net.Socket = await connect(proxy.port);
        s.on("error", () => {});
        s.on("data", () => {});
        s.write(bytes);
        if (abort) s.resetAndDestroy();
        else s.end();
        if (!abort) await Promise.race([closed(s), sleep(2000)]);
        s.destroy();
      };
      for (let round = 0; round < 8; round++) {
        await Promise.all(Array.from({ length: 16 }, () => one(garbage(), next() % 5 === 0)));
        // a good client right after
        const reply = await exchange(proxy.port, [V1, `ping ${round}`]);
        assert.equal(reply, `ping ${round}`, `round ${round}`);
      }
      for (const e of errors) {
        assert.match(e.code ?? "", /^(RK_EPROXY|ECONNRESET|ETIMEDOUT|EPIPE)$/);
      }
      await proxy.close();
      await echo.close();
    });
  });
}
