/**
 * Many held connections decided together: on the native engine the
 * decisions of one turn reach the library in one batch. 500 concurrent
 * connections whose route answers all at once (connect with a reply, close
 * with a reply, a file, undecided until the timeout, and clients that leave
 * while their decision is on its way), each client's bytes checked, on both
 * engines.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "./_test.ts";
import { closed, connect, ENGINES, server, waitFor, watchedProxy } from "./_helpers.ts";
import { HoldBatch } from "../src/native/_hold_batch.ts";
import { DECISION } from "../src/native/structs.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const dir = mkdtempSync(join(tmpdir(), "relaykit-route-batch-"));
const FILE = join(dir, "page.txt");
const PAGE = "a page from a file\n".repeat(40);
writeFileSync(FILE, PAGE);
after(() => rmSync(dir, { recursive: true, force: true }));

/** What each connection's route decides, by the first byte it sends. */
type Kind = "connect" | "close" | "file" | "undecided" | "leaves";
const KIND: Record<string, Kind> = {
  C: "connect",
  X: "close",
  F: "file",
  U: "undecided",
  L: "leaves",
};
const N = 500;

/** Kinds in a mixed order: 200 connect, 150 close, 100 file, 25 undecided, 25 leave. */
function kindOf(i: number): string {
  const r = i % 20;
  return r < 8 ? "C" : r < 14 ? "X" : r < 18 ? "F" : r === 18 ? "U" : "L";
}

/** A target that answers "t:" + everything it got, at the client's EOF. */
function target() {
  return server((s: net.Socket) => {
    const parts: Uint8Array[] = [];
    s.on("data", (d: Uint8Array) => parts.push(d));
    s.on("end", () => s.end(`t:${Buffer.concat(parts)}`));
  });
}

for (const engine of ENGINES) {
  describe(`many held connections decided together (${engine} engine)`, () => {
    test(
      "500 concurrent held connections with mixed decisions get exactly their bytes",
      { timeout: 60_000 },
      async () => {
        const t = await target();
        // every route call with bytes waits here until all clients are held
        let open!: () => void;
        const gate = new Promise<void>((r) => open = r);
        const asked = new Set<string>();
        const { proxy, ends } = await watchedProxy(engine, {
          routeTimeout: 4000,
          route: async (data) => {
            if (data.length === 0) return undefined;
            const text = dec.decode(data);
            const end = text.indexOf("\n");
            if (end < 0) return undefined; // more bytes, please
            const name = text.slice(0, end);
            asked.add(name);
            await gate;
            const kind = KIND[name[0] ?? ""];
            if (kind === "connect") {
              return { remote: `127.0.0.1:${t.port}`, reply: `R${name}|` };
            }
            if (kind === "close") return { close: `bye ${name}\n` };
            if (kind === "file") return { file: FILE, reply: `F${name}|` };
            if (kind === "leaves") return { remote: `127.0.0.1:${t.port}`, reply: "late" };
            return undefined; // undecided: the routing timeout ends it
          },
        });
        const clients = await Promise.all(
          Array.from({ length: N }, async (_, i) => {
            const name = `${kindOf(i)}${i}`;
            const s = await connect(proxy.port);
            const got: Uint8Array[] = [];
            s.on("data", (d: Uint8Array) => got.push(d));
            s.on("error", () => {});
            s.write(`${name}\npayload of ${name}`);
            return { name, s, got };
          }),
        );
        await waitFor(() => asked.size === N, 20_000, `all ${N} routes asked (${asked.size})`);
        // the leaving clients reset while their decisions are on the way
        for (const c of clients) if (c.name[0] === "L") c.s.resetAndDestroy();
        open();
        // half-open clients: each ends its side (a connect's target answers then)
        // (an undecided one stays open until the routing timeout ends it)
        for (const c of clients) {
          if (c.name[0] === "U") c.s.once("end", () => c.s.end());
          else if (c.name[0] !== "L") c.s.end();
        }
        await Promise.all(clients.map((c) => closed(c.s)));
        for (const { name, got } of clients) {
          const text = dec.decode(Buffer.concat(got));
          const body = `${name}\npayload of ${name}`;
          switch (KIND[name[0] ?? ""]) {
            case "connect":
              assert.equal(text, `R${name}|t:${body}`, name);
              break;
            case "close":
              assert.equal(text, `bye ${name}\n`, name);
              break;
            case "file":
              assert.equal(text, `F${name}|${PAGE}`, name);
              break;
            default:
              assert.equal(text, "", name); // undecided or gone: nothing
          }
        }
        await waitFor(() => ends.length === N, 20_000, `all ${N} ends (${ends.length})`);
        const reasons = new Map<string, number>();
        for (const e of ends) reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1);
        assert.equal(reasons.get("decision-timeout"), N / 20, JSON.stringify([...reasons]));
        assert.equal(proxy.connections, 0);
        await proxy.close();
        await t.close();
      },
    );

    test("a client that speaks at once: the route is still asked first with none", async () => {
      const t = await target();
      const seen: string[] = [];
      const { proxy } = await watchedProxy(engine, {
        route: (data) => {
          const text = dec.decode(data);
          seen.push(text);
          if (text === "") return { send: "banner|" }; // a server that speaks first
          if (text.startsWith("close")) return { close: `got ${text}|` };
          return undefined;
        },
      });
      const s = await connect(proxy.port);
      const got: Uint8Array[] = [];
      s.on("data", (d: Uint8Array) => got.push(d));
      s.end(enc.encode("close me"));
      await closed(s);
      assert.equal(dec.decode(Buffer.concat(got)), "banner|got close me|");
      assert.equal(seen[0], "", "asked first with none");
      assert.equal(seen.at(-1), "close me");
      // a decision on none: what came already is sent after the route's data
      const replace = await watchedProxy(engine, {
        route: (data) =>
          data.length === 0 ? { remote: `127.0.0.1:${t.port}`, data: "first|" } : undefined,
      });
      const r = await connect(replace.proxy.port);
      const back: Uint8Array[] = [];
      r.on("data", (d: Uint8Array) => back.push(d));
      r.end(enc.encode("then the client"));
      await closed(r);
      assert.equal(dec.decode(Buffer.concat(back)), "t:first|then the client");
      await replace.proxy.close();
      await proxy.close();
      await t.close();
    });

    test("a decision for a connection that ended meanwhile is dropped, the next ones run", async () => {
      const t = await target();
      let release!: () => void;
      const later = new Promise<void>((r) => release = r);
      const asked: string[] = [];
      const { proxy, ends } = await watchedProxy(engine, {
        route: async (data) => {
          if (data.length === 0) return undefined;
          asked.push(dec.decode(data));
          await later; // both decided in one turn, after the first client left
          return { remote: `127.0.0.1:${t.port}`, reply: "R|" };
        },
      });
      const gone = await connect(proxy.port);
      gone.on("error", () => {});
      gone.write("gone");
      await waitFor(() => asked.length === 1, 5000, "the first route asked");
      gone.resetAndDestroy();
      await waitFor(() => ends.length === 1, 5000, "the gone client's end");
      const live = await connect(proxy.port);
      const got: Uint8Array[] = [];
      live.on("data", (d: Uint8Array) => got.push(d));
      live.write(enc.encode("here"));
      await waitFor(() => asked.length === 2, 5000, "the second route asked");
      release();
      live.end();
      await closed(live);
      assert.equal(dec.decode(Buffer.concat(got)), "R|t:here");
      await waitFor(() => ends.length === 2, 5000, "two ends");
      assert.equal(proxy.connections, 0);
      await proxy.close();
      await t.close();
    });
  });
}

describe("the decision batch's records", () => {
  test("carry each name as UTF-8, ASCII or not, with its length", () => {
    const names = ["127.0.0.1", "b\u00fccher.test", "a.test", "\u{1F600}.test", ""];
    const b = new HoldBatch();
    const fields = {
      action: 1,
      flags: 0,
      port: 80,
      family: 0,
      connect_timeout_ms: 0,
      idle_timeout_ms: -1,
      consume: 0,
      offset: 0,
      length: 0,
    };
    for (const [i, host] of names.entries()) {
      b.decide(
        i + 1,
        fields,
        host,
        i % 2 === 0 ? "" : "127.0.0.1",
        enc.encode("to"),
        new Uint8Array(),
      );
    }
    const bytes = b.bytes();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    let at = 0;
    for (const [i, host] of names.entries()) {
      assert.equal(view.getInt32(at + 4, true), i + 1);
      const lens = at + 16 + DECISION.size;
      const hostLen = view.getUint32(lens, true), bindLen = view.getUint32(lens + 4, true);
      const toB = view.getUint32(lens + 8, true);
      let p = lens + 16;
      assert.equal(dec.decode(bytes.subarray(p, p + hostLen)), host);
      assert.equal(hostLen, enc.encode(host).length);
      p += hostLen;
      assert.equal(dec.decode(bytes.subarray(p, p + bindLen)), i % 2 === 0 ? "" : "127.0.0.1");
      p += bindLen;
      assert.equal(dec.decode(bytes.subarray(p, p + toB)), "to");
      at += view.getUint32(at + 8, true);
    }
    assert.equal(at, bytes.length);
  });
});
