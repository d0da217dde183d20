/**
 * The fault barrier of a connection, on both engines: a route result of the
 * wrong shape, a route, hook or onError that throws or never settles, and a
 * PROXY v2 header with broken TLVs each close that one connection with a
 * named error (an "error" event with its code), nothing reaches the process,
 * and the next client through the same listener is served. The relaykit
 * command (echo, run) survives the same headers and route results.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, describe, test } from "./_test.ts";
import { type DataHook, type RouteFunction, TcpProxy, type TcpProxyOptions } from "../mod.ts";
import { ROUTE_EXPECTED } from "../src/decision.ts";
import { runtime } from "../src/runtime/detect.ts";
import {
  closed,
  concat,
  connect,
  echoServer,
  ENGINES,
  fdCount,
  freePort,
  nativeEngine,
  sleep,
  startCli,
  waitFor,
  within,
} from "./_helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Anything that reaches the process instead of a connection's barrier. */
const escaped: unknown[] = [];
const onEscape = (e: unknown) => void escaped.push(e);
process.on("unhandledRejection", onEscape);
process.on("uncaughtException", onEscape);
after(() => {
  process.off("unhandledRejection", onEscape);
  process.off("uncaughtException", onEscape);
});

const dir = mkdtempSync(join(tmpdir(), "relaykit-hostile-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Send `bytes`, collect what comes back until the proxy closes (bounded). */
async function refused(port: number, bytes: Uint8Array, ms = 4000): Promise<Uint8Array> {
  const s = await connect(port);
  const got: Uint8Array[] = [];
  s.on("data", (d: Uint8Array) => got.push(d));
  s.on("error", () => {});
  s.on("end", () => s.end()); // half-open allowed: close our side once the proxy closed its
  s.write(bytes);
  await within(closed(s), ms, "the proxy to close the connection");
  return new Uint8Array(Buffer.concat(got));
}

/** Send `bytes` then "ping"; resolve with what came back once it holds "ping". */
async function served(port: number, bytes: Uint8Array, ms = 4000): Promise<string> {
  const s = await connect(port);
  s.on("error", () => {});
  let got = "";
  const done = new Promise<void>((resolve) =>
    s.on("data", (d: Uint8Array) => {
      got += dec.decode(d);
      if (got.includes("ping")) resolve();
    })
  );
  s.write(bytes);
  s.write("ping");
  try {
    await within(done, ms, `an echo of "ping" (got ${JSON.stringify(got)})`);
  } finally {
    s.destroy();
  }
  return got;
}

/** A PROXY v2 header, TCP4 127.0.0.1:1111 -> 127.0.0.1:2222, with `tlvs` as they are. */
function v2Header(tlvs: Uint8Array): Uint8Array {
  const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
  const len = 12 + tlvs.length;
  const addr = [127, 0, 0, 1, 127, 0, 0, 1, 1111 >> 8, 1111 & 0xff, 2222 >> 8, 2222 & 0xff];
  return new Uint8Array([...sig, 0x21, 0x11, len >> 8, len & 0xff, ...addr, ...tlvs]);
}

function tlv(type: number, value: Uint8Array | number[]): number[] {
  return [type, value.length >> 8, value.length & 0xff, ...value];
}

/** TLVs that break the spec, each of which once ended the process. */
const BAD_TLVS: [string, Uint8Array][] = [
  ["a UNIQUE_ID of 129 bytes", new Uint8Array(tlv(0x05, new Array(129).fill(0x41)))],
  ["an SSL TLV of 3 bytes", new Uint8Array(tlv(0x20, [1, 0, 0]))],
  // client, verify (5 bytes), then a VERSION sub-TLV claiming 200 bytes with 3 there
  [
    "an SSL sub-TLV overflowing its parent",
    new Uint8Array(tlv(0x20, [1, 0, 0, 0, 0, 0x21, 0, 200, 0x54, 0x4c, 0x53])),
  ],
];
const GOOD_V2 = v2Header(new Uint8Array(tlv(0x05, enc.encode("id-1"))));

/** A value whose every read throws. */
const trap = new Proxy({}, {
  get: () => {
    throw new Error("trap: get");
  },
  ownKeys: () => {
    throw new Error("trap: ownKeys");
  },
  has: () => {
    throw new Error("trap: has");
  },
  getPrototypeOf: () => {
    throw new Error("trap: getPrototypeOf");
  },
});

for (const engine of ENGINES) {
  describe(`${engine} engine: the fault barrier of a connection`, () => {
    async function start(extra: Partial<TcpProxyOptions>) {
      if (engine === "native") nativeEngine();
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        ...extra,
      } as TcpProxyOptions);
      assert.equal(proxy.engine, engine);
      const errors: (Error & { code?: string })[] = [];
      proxy.on("error", (e) => errors.push(e));
      return { proxy, errors };
    }

    /** Wait for an "error" event with `code`; return it. */
    async function errorWith(errors: (Error & { code?: string })[], code: string) {
      await waitFor(
        () => errors.some((e) => e.code === code),
        4000,
        `an error with code ${code} (got ${errors.map((e) => `${e.code}: ${e.message}`)})`,
      );
      return errors.find((e) => e.code === code)!;
    }

    test("route results of the wrong shape close that connection with RK_EROUTE; the next client is served", async () => {
      const echo = await echoServer();
      const remote = `127.0.0.1:${echo.port}`;
      // each case: what the route returns, and what the message must say
      const cases: [string, () => unknown, RegExp][] = [
        ["42", () => 42, /route returned a number \(42\); expected undefined, \{ remote \}/],
        ["string", () => "127.0.0.1:9200", /route returned a string \("127\.0\.0\.1:9200"\)/],
        ["data-number", () => ({ remote, data: 123 }), /data is a number \(123\)/],
        ["close-number", () => ({ close: 5 }), /close is a number \(5\); expected true/],
        ["array", () => [remote], /route returned an array of 1 items/],
        ["extra-key", () => ({ remote, colour: "red" }), /\{ remote \} takes data, .*not "colour"/],
        ["two-kinds", () => ({ remote, close: true }), /more than one of remote, close/],
        ["no-kind", () => ({ nonsense: 1 }), /bad route: route returned \{ nonsense \}/],
        ["host-number", () => ({ remote: { host: 5, port: 1 } }), /remote host is a number/],
        ["bad-port", () => ({ remote: { host: "127.0.0.1", port: 70000 } }), /remote\.port/],
        ["no-port", () => ({ remote: "localhost" }), /remote is a string \("localhost"\)/],
        ["timeout", () => ({ remote, connectTimeout: -1 }), /connectTimeout is a number \(-1\)/],
        ["tls", () => ({ remote, tls: "yes" }), /tls is a string/],
        ["file", () => ({ file: {} }), /file is \{\}; expected a path/],
        ["send", () => ({ send: 7 }), /send is a number \(7\)/],
        ["bytes-proxy", () => ({ close: new Proxy(new Uint8Array(3), {}) }), /close is \{/],
        ["getter", () => ({
          get remote() {
            throw new Error("getter boom");
          },
        }), /could not be read \(getter boom\)/],
        ["trap", () => trap, /trap: get/],
        ["huge", () => "x".repeat(20_000_000), /a string of 20000000 characters/],
        ["throw-value", () => {
          // deno-lint-ignore no-throw-literal -- a route may throw anything
          throw 5;
        }, /the route function failed: a number \(5\)/],
        ["reject", () => Promise.reject("no"), /the route function failed: a string \("no"\)/],
        ["then-throws", () => ({
          then() {
            throw new Error("then boom");
          },
        }), /then boom/],
      ];
      const byName = new Map(cases.map(([name, f]) => [name, f]));
      const route: RouteFunction = (data) => {
        const text = dec.decode(data);
        const nl = text.indexOf("\n");
        if (nl < 0) return undefined;
        const name = text.slice(0, nl);
        if (name === "ok") return { remote, data: data.subarray(nl + 1) };
        return byName.get(name)!() as never;
      };
      const { proxy, errors } = await start({ route });
      try {
        for (const [name, , message] of cases) {
          errors.length = 0;
          await refused(proxy.port, enc.encode(`${name}\n`));
          const err = await errorWith(errors, "RK_EROUTE");
          assert.match(err.message, message, `case ${name}`);
          assert.ok(
            err.message.length < 400,
            `case ${name}: a short message (${err.message.length})`,
          );
          assert.equal(typeof (err as { connectionId?: number }).connectionId, "number");
          assert.match(await served(proxy.port, enc.encode("ok\n")), /ping/, `after ${name}`);
        }
        assert.deepEqual(escaped, []);
      } finally {
        await proxy.abort();
        await echo.close();
      }
    });

    test("the expected results are listed in the message in the README's order", () => {
      assert.equal(ROUTE_EXPECTED, "undefined, { remote }, { close }, { file }, { send }");
    });

    test("a { send } step after the client's EOF or at the route limit closes that connection; the route is not asked again and again", async () => {
      const echo = await echoServer();
      const remote = `127.0.0.1:${echo.port}`;
      // Asked again with the same bytes (no more can come), a route that
      // answers a step each time would loop without end, starving the event
      // loop (stream engine) or a core until the decision timeout (native):
      // past LOOPED calls for one connection the route gives up itself, so
      // a regression fails here in milliseconds instead of hanging.
      const LOOPED = 50;
      /** Per connection: how many steps the route answered. */
      const calls = new Map<number, number>();
      const { proxy, errors } = await start({
        routeLimit: 16,
        routeTimeout: 10_000, // far away: it is not what closes these
        route: (data, conn) => {
          const t = dec.decode(data);
          if (t.startsWith("ok")) return { remote, data: data.subarray(2) };
          if (!t.startsWith("empty") && !t.startsWith("step")) return undefined;
          const n = (calls.get(conn.id) ?? 0) + 1;
          calls.set(conn.id, n);
          if (n > LOOPED) return { close: true };
          return { send: t.startsWith("empty") ? "" : "S" };
        },
      });
      /** The most steps the route answered for one connection. */
      const most = () => Math.max(0, ...calls.values());
      try {
        for (const [name, reply] of [["empty", ""], ["step", "S"]] as const) {
          errors.length = 0;
          calls.clear();
          // the whole input, then FIN: the step's bytes once, then the close
          const s = await connect(proxy.port);
          const got: Uint8Array[] = [];
          s.on("data", (d: Uint8Array) => got.push(d));
          s.on("error", () => {});
          s.end(name);
          const t0 = Date.now();
          await within(closed(s), 3000, `the proxy to close the connection (${name})`);
          assert.ok(Date.now() - t0 < 2000, `${name}: closed at once, not by a timeout`);
          // the step's bytes once at most: asked with the bytes, then (if
          // apart) with the EOF, when the step is not sent
          assert.ok(most() <= 2, `${name}: the route answered ${most()} steps`);
          assert.equal(dec.decode(Buffer.concat(got)), reply.repeat(most() - 1), name);
          const err = await errorWith(errors, "RK_EROUTE");
          assert.match(err.message, /the client ended before a route was found/, name);
          assert.match(await served(proxy.port, enc.encode("ok")), /ping/, `after ${name}`);
        }
        // at the limit (16 bytes here), without EOF: no more bytes may come either
        errors.length = 0;
        calls.clear();
        const got = await refused(proxy.port, enc.encode("step".padEnd(32, "-")));
        assert.ok(most() <= 2, `at the limit: the route answered ${most()} steps`);
        assert.equal(dec.decode(got), "S".repeat(most() - 1));
        const err = await errorWith(errors, "RK_EROUTE_LIMIT");
        assert.match(err.message, /no route after \d+ bytes \(the limit is 16\)/);
        assert.match(await served(proxy.port, enc.encode("ok")), /ping/, "after the limit");
        assert.deepEqual(escaped, []);
      } finally {
        await proxy.abort();
        await echo.close();
      }
    });

    test("an abort right after the front closed a connection (its FIN on the way) closes it, fd and all", async () => {
      const echo = await echoServer();
      const made: { proxy?: TcpProxy } = {};
      const { proxy, errors } = await start({
        route: (data) => {
          const t = dec.decode(data);
          if (t.startsWith("ok")) {
            return { remote: `127.0.0.1:${echo.port}`, data: data.subarray(2) };
          }
          return t.startsWith("bad") ? 42 as never : undefined;
        },
        // called right after the front's "close" decision, in the same tick
        onError: (conn) => made.proxy!.closeConnection(conn.id, "abort"),
      });
      made.proxy = proxy;
      try {
        const baseline = fdCount();
        for (let i = 0; i < 3; i++) {
          const s = await connect(proxy.port);
          s.on("error", () => {}); // a reset is an answer too
          s.on("end", () => s.end());
          s.write("bad");
          await within(closed(s), 3000, "the proxy to close the connection");
        }
        await errorWith(errors, "RK_EROUTE");
        // the proxy's side is closed too (Node's sockets could not be reset
        // while their FIN was going out: they were never closed)
        let now = fdCount();
        await waitFor(
          () => (now = fdCount()) <= baseline,
          3000,
          `fd count ${baseline} (now ${now})`,
        );
        assert.match(await served(proxy.port, enc.encode("ok")), /ping/);
        assert.deepEqual(escaped, []);
      } finally {
        await proxy.abort();
        await echo.close();
      }
    });

    test("a route that never settles is cut by the decision timeout; failReply and onError that throw are contained", async () => {
      const echo = await echoServer();
      const remote = `127.0.0.1:${echo.port}`;
      const onErrorCalls: string[] = [];
      const { proxy, errors } = await start({
        routeTimeout: 600,
        route: (data) => {
          const t = dec.decode(data);
          if (t.startsWith("hang")) return new Promise(() => {});
          if (t.startsWith("fail-throws")) {
            return {
              remote: "127.0.0.1:1",
              failReply: () => {
                throw new Error("failReply boom");
              },
            };
          }
          if (t.startsWith("fail-number")) {
            return { remote: "127.0.0.1:1", failReply: () => 7 as never };
          }
          if (t.startsWith("bad")) return 42 as never;
          if (t.startsWith("ok")) return { remote, data: data.subarray(2) };
          return undefined;
        },
        onError: (_conn, err) => {
          onErrorCalls.push(err.code);
          if (err.code === "RK_EROUTE") throw new Error("onError boom");
          if (err.code === "ECONNREFUSED") return Promise.reject(new Error("async onError boom"));
        },
      });
      try {
        const t0 = Date.now();
        await refused(proxy.port, enc.encode("hang"));
        assert.ok(Date.now() - t0 < 3000, "cut at the decision timeout");
        await errorWith(errors, "ETIMEDOUT");
        assert.match(await served(proxy.port, enc.encode("ok")), /ping/);

        errors.length = 0;
        await refused(proxy.port, enc.encode("fail-throws"));
        assert.match(
          (await errorWith(errors, "RK_EROUTE")).message,
          /failReply failed: failReply boom/,
        );
        assert.equal((await errorWith(errors, "ECONNREFUSED")).code, "ECONNREFUSED");
        // onError rejected for ECONNREFUSED and threw for RK_EROUTE: both reported
        await waitFor(
          () => errors.filter((e) => e.code === "RK_EHOOK").length === 2,
          4000,
          "two RK_EHOOK",
        );
        assert.ok(
          errors.some((e) =>
            /onError of connection \d+ failed: async onError boom/.test(e.message)
          ),
        );
        assert.ok(
          errors.some((e) => /onError of connection \d+ failed: onError boom/.test(e.message)),
        );

        errors.length = 0;
        await refused(proxy.port, enc.encode("fail-number"));
        assert.match(
          (await errorWith(errors, "RK_EROUTE")).message,
          /failReply's result is a number \(7\)/,
        );

        errors.length = 0;
        await refused(proxy.port, enc.encode("bad"));
        await errorWith(errors, "RK_EROUTE");
        assert.ok(onErrorCalls.includes("RK_EROUTE"));
        assert.match(await served(proxy.port, enc.encode("ok")), /ping/);
        assert.deepEqual(escaped, []);
      } finally {
        await proxy.abort();
        await echo.close();
      }
    });

    test("hooks that throw, reject, return the wrong thing or never settle close that connection with RK_EHOOK", async () => {
      const echo = await echoServer();
      const cases: [string, DataHook, RegExp][] = [
        [
          "string",
          () => "text" as never,
          /returned a string \("text"\); expected undefined or a Uint8Array/,
        ],
        ["number", () => 42 as never, /returned a number \(42\)/],
        ["null", () => null as never, /returned null/],
        ["array", () => [1, 2] as never, /returned an array of 2 items/],
        ["proxy", () => new Proxy(new Uint8Array(2), {}) as never, /returned \{/],
        ["throws", () => {
          throw new Error("hook boom");
        }, /failed: hook boom/],
        ["rejects", () => Promise.reject(7), /failed: a number \(7\)/],
        ["then-throws", () =>
          ({
            then() {
              throw new Error("then boom");
            },
          }) as never, /then boom/],
        ["never", () => new Promise<undefined>(() => {}), /did not settle within 500 ms/],
      ];
      const byName = new Map(cases.map(([name, f]) => [name, f]));
      const aToB: DataHook = (chunk, ctx) => {
        const name = dec.decode(chunk).split("\n")[0]!;
        const f = byName.get(name);
        if (f !== undefined) return f(chunk, ctx);
        if (name === "odd") {
          // a Uint8Array whose own length lies and throws: read through its slots
          const out = enc.encode("odd\nping");
          Object.defineProperty(out, "length", {
            get() {
              throw new Error("length");
            },
          });
          return out;
        }
        return undefined;
      };
      const { proxy, errors } = await start({
        target: { host: "127.0.0.1", port: echo.port },
        hooks: { aToB },
        hookTimeout: 500,
      });
      try {
        for (const [name, , message] of cases) {
          errors.length = 0;
          await refused(proxy.port, enc.encode(`${name}\n`));
          const err = await errorWith(errors, "RK_EHOOK");
          assert.match(err.message, message, `case ${name}`);
          assert.match(await served(proxy.port, enc.encode("ok\n")), /ping/, `after ${name}`);
        }
        assert.match(await served(proxy.port, enc.encode("odd\n")), /odd\nping/);
        assert.deepEqual(escaped, []);
      } finally {
        await proxy.abort();
        await echo.close();
      }
    });

    test("hooks over bytes read while routing are bounded and checked the same way", async () => {
      const echo = await echoServer();
      const { proxy, errors } = await start({
        route: (data) => data.length < 3 ? undefined : { remote: `127.0.0.1:${echo.port}` },
        hooks: {
          aToB: (chunk) => {
            const t = dec.decode(chunk);
            if (t.startsWith("never")) return new Promise<undefined>(() => {});
            if (t.startsWith("bad")) return "bad" as never;
            return undefined;
          },
        },
        hookTimeout: 500,
      });
      try {
        await refused(proxy.port, enc.encode("never"));
        assert.match((await errorWith(errors, "RK_EHOOK")).message, /did not settle within 500 ms/);
        errors.length = 0;
        await refused(proxy.port, enc.encode("bad"));
        assert.match((await errorWith(errors, "RK_EHOOK")).message, /returned a string/);
        assert.match(await served(proxy.port, enc.encode("ok!")), /ping/);
        assert.deepEqual(escaped, []);
      } finally {
        await proxy.abort();
        await echo.close();
      }
    });

    for (const mode of ["v2", "detect"] as const) {
      test(`PROXY v2 headers with broken TLVs (accept ${mode}) close that connection with RK_EPROXY`, async () => {
        const echo = await echoServer();
        const originals: unknown[] = [];
        const { proxy, errors } = await start({
          target: { host: "127.0.0.1", port: echo.port },
          acceptProxy: { mode },
        });
        proxy.on("original", (o) => originals.push(o));
        try {
          for (const [what, tlvs] of BAD_TLVS) {
            errors.length = 0;
            const got = await refused(proxy.port, concat([v2Header(tlvs), enc.encode("hello")]));
            assert.equal(got.length, 0, `${what}: nothing relayed`);
            const err = await errorWith(errors, "RK_EPROXY");
            assert.match(err.message, /bad PROXY header/, what);
            assert.match(await served(proxy.port, GOOD_V2), /ping/, `after ${what}`);
          }
          assert.equal(originals.length, BAD_TLVS.length, "only the good headers were accepted");
          assert.deepEqual(escaped, []);
        } finally {
          await proxy.abort();
          await echo.close();
        }
      });
    }

    test("a route listener with acceptProxy refuses broken TLVs before the route runs", async () => {
      const echo = await echoServer();
      let routed = 0;
      const { proxy, errors } = await start({
        acceptProxy: { mode: "v2" },
        route: (data) => {
          routed++;
          return data.length === 0 ? undefined : { remote: `127.0.0.1:${echo.port}` };
        },
      });
      try {
        for (const [what, tlvs] of BAD_TLVS) {
          errors.length = 0;
          await refused(proxy.port, v2Header(tlvs));
          await errorWith(errors, "RK_EPROXY");
          assert.equal(routed, 0, what);
        }
        assert.match(await served(proxy.port, GOOD_V2), /ping/);
        assert.deepEqual(escaped, []);
      } finally {
        await proxy.abort();
        await echo.close();
      }
    });
  });

  // the command runs from its TypeScript source: on Deno and Bun (Node runs
  // the compiled library suites only)
  if (runtime.name === "node") continue;
  describe(`${engine} engine: the relaykit command survives hostile headers and results`, () => {
    const env = { RELAYKIT_ENGINE: engine };

    test("echo --accept-proxy v2 closes a header with broken TLVs and serves the next client", async () => {
      const echo = startCli(["echo", "--listen", "127.0.0.1:0", "--accept-proxy", "v2"], env);
      try {
        const port = Number(
          (await within(echo.line, 20_000, "echo to start")).match(/:(\d+) /)?.[1],
        );
        assert.ok(port > 0);
        for (const [what, tlvs] of BAD_TLVS) {
          await refused(port, v2Header(tlvs));
          assert.match(await served(port, GOOD_V2), /ping/, `after ${what}`);
        }
        await waitFor(() => /; closing/.test(echo.output.out), 4000, "the log line");
        assert.equal(echo.child.exitCode, null, echo.output.err);
      } finally {
        echo.child.kill("SIGKILL");
      }
    });

    test("run with accept_proxy survives broken TLVs and a route script's bad results", async () => {
      const echo = await echoServer();
      const [fwdPort, routePort] = [await freePort(), await freePort()];
      const script = join(dir, `route_${engine}.ts`);
      writeFileSync(
        script,
        `export function route(data) {\n` +
          `  const t = new TextDecoder().decode(data);\n` +
          `  if (t.startsWith("42")) return 42;\n` +
          `  if (t.startsWith("str")) return "127.0.0.1:9200";\n` +
          `  if (t.startsWith("close5")) return { close: 5 };\n` +
          `  if (t.startsWith("ok")) return { remote: "127.0.0.1:${echo.port}", data: data.subarray(2) };\n` +
          `  return undefined;\n}\n` +
          `export function onError() { throw new Error("onError boom"); }\n`,
      );
      const file = join(dir, `run_${engine}.yaml`);
      writeFileSync(
        file,
        `listeners:\n` +
          `  - { name: fwd, address: 127.0.0.1, port: ${fwdPort}, backend: echo, accept_proxy: { mode: v2 } }\n` +
          `  - { name: routed, address: 127.0.0.1, port: ${routePort}, route: ${script}, accept_proxy: { mode: detect } }\n` +
          `backends:\n` +
          `  - { name: echo, host: 127.0.0.1, port: ${echo.port} }\n`,
      );
      const run = startCli(["run", file], env);
      try {
        await within(run.line, 20_000, "run to start");
        for (const [what, tlvs] of BAD_TLVS) {
          await refused(fwdPort, v2Header(tlvs));
          assert.match(await served(fwdPort, GOOD_V2), /ping/, `fwd after ${what}`);
          await refused(routePort, v2Header(tlvs));
          assert.match(await served(routePort, enc.encode("ok")), /ping/, `routed after ${what}`);
        }
        for (const bad of ["42", "str", "close5"]) {
          await refused(routePort, enc.encode(bad));
          assert.match(await served(routePort, enc.encode("ok")), /ping/, `after ${bad}`);
        }
        await sleep(100);
        assert.equal(run.child.exitCode, null, run.output.err);
        assert.doesNotMatch(run.output.err, /Uncaught|TypeError: Cannot use 'in'/);
      } finally {
        run.child.kill("SIGKILL");
        await echo.close();
      }
    });
  });
}
