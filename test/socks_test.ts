/**
 * The SOCKS4/4a/5 and HTTP CONNECT routers with real clients (curl), on
 * both engines: every way in, authentication, refused destinations,
 * unreachable targets, malformed handshakes.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import net, { createServer as createNetServer } from "node:net";
import { after, before, describe, test } from "./_test.ts";
import {
  httpConnectRouter,
  type RelaykitError,
  type RouteFunction,
  socksRouter,
  TcpProxy,
} from "../mod.ts";
import {
  blackHole,
  closed,
  connect,
  curl,
  ENGINES,
  freePort,
  nativeEngine,
  waitFor,
} from "./_helpers.ts";

let web: Server;
let webPort = 0;
let deadPort = 0;
before(async () => {
  web = createServer((req, res) => res.end(`hello via ${req.headers.host}\n`));
  await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
  webPort = (web.address() as net.AddressInfo).port;
  deadPort = await freePort();
});
after(() => web.close());

for (const engine of ENGINES) {
  describe(`SOCKS and HTTP CONNECT routers (${engine} engine)`, () => {
    async function start(
      kind: "socks" | "http",
      users?: Record<string, string>,
      how: { quiet?: boolean; routeLimit?: number; routeTimeout?: number } = {},
    ) {
      if (engine === "native") nativeEngine();
      const denied: string[] = [];
      const opts = {
        allow: [{ cidr: "127.0.0.0/8", port: [webPort, deadPort] }],
        deny: [{ host: "*.blocked.test" }],
        ...(how.quiet ? {} : { onDenied: (what: string) => void denied.push(what) }),
        ...(users ? { users } : {}),
      };
      const router = kind === "socks" ? socksRouter(opts) : httpConnectRouter(opts);
      // counts the calls of the route function (the engine's router, if
      // any, is still found on it)
      const calls = { n: 0 };
      const route = new Proxy(router, {
        apply: (
          f,
          self,
          args: Parameters<RouteFunction>,
        ) => (calls.n++, Reflect.apply(f, self, args)),
      });
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        route,
        ...(how.routeLimit !== undefined ? { routeLimit: how.routeLimit } : {}),
        ...(how.routeTimeout !== undefined ? { routeTimeout: how.routeTimeout } : {}),
      });
      return { proxy, denied, calls, at: `127.0.0.1:${proxy.port}` };
    }

    /** Bytes sent in steps (after each, wait for `want` reply bytes); all replies. */
    async function talk(port: number, steps: [Uint8Array | string, number][]) {
      const s = await connect(port);
      let got = Buffer.alloc(0);
      let wake = () => {};
      s.on("data", (d: Uint8Array) => {
        got = Buffer.concat([got, d]);
        wake();
      });
      let ended = false;
      const end = () => {
        ended = true;
        wake();
      };
      s.on("error", end);
      s.on("end", end);
      s.on("close", end);
      let want = 0;
      for (const [bytes, n] of steps) {
        s.write(bytes);
        want += n;
        while (got.length < want && !ended) await new Promise<void>((r) => wake = r);
      }
      s.end();
      await closed(s);
      return got;
    }

    test("the native engine decides handshakes without the route function", async () => {
      const socks = await start("socks", undefined, { quiet: true });
      const http = await start("http", { u: "p" }, { quiet: true });
      for (const flag of ["--socks5", "--socks5-hostname", "--socks4", "--socks4a"]) {
        const r = await curl([flag, socks.at, `http://localhost:${webPort}/`]);
        assert.equal(r.body, `hello via localhost:${webPort}\n`, `${flag}: ${r.stderr}`);
      }
      // refused (a port no rule allows, a denied name), nobody listening for it
      assert.equal(
        (await curl(["--socks5", socks.at, `http://127.0.0.1:${webPort + 1}/`])).code,
        97,
      );
      assert.equal(
        (await curl(["--socks5-hostname", socks.at, `http://a.blocked.test:${webPort}/`])).code,
        97,
      );
      const ok = await curl(["-p", "-x", `http://u:p@${http.at}`, `http://localhost:${webPort}/`]);
      assert.equal(ok.body, `hello via localhost:${webPort}\n`, ok.stderr);
      const status = async (proxyUrl: string, url: string) =>
        (await curl(["-p", "-x", proxyUrl, "-o", "/dev/null", "-w", "%{http_connect}", url])).body;
      assert.equal(
        await status(`http://u:p@${http.at}`, `http://127.0.0.1:${webPort + 1}/`),
        "403",
      );
      assert.equal(await status(`http://u:x@${http.at}`, `http://127.0.0.1:${webPort}/`), "407");
      const routeCalls = socks.calls.n + http.calls.n;
      if (engine === "native") assert.equal(routeCalls, 0);
      else assert.ok(routeCalls >= 10, String(routeCalls));
      await socks.proxy.close();
      await http.proxy.close();
    });

    test("SOCKS5 replies go out once, however the client splits its handshake", async () => {
      const { proxy } = await start("socks", { al: "pw" }, { quiet: true });
      const greeting = new Uint8Array([5, 1, 2]);
      const auth = new Uint8Array([1, 2, 0x61, 0x6c, 2, 0x70, 0x77]);
      const request = (port: number) =>
        new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]);
      const ok = [5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
      const both = (a: Uint8Array, b: Uint8Array) => Buffer.concat([a, b]);
      // greeting and auth at once, then the request and an HTTP request
      const a = await talk(proxy.port, [
        [both(greeting, auth), 4],
        [request(webPort), 10],
        ["GET / HTTP/1.0\r\n\r\n", 1],
      ]);
      assert.deepEqual([...a.subarray(0, 14)], [5, 2, 1, 0, ...ok]);
      assert.match(a.subarray(14).toString(), /hello via/);
      // the greeting, then auth and request at once to a port nobody listens on
      const b = await talk(proxy.port, [[greeting, 2], [both(auth, request(deadPort)), 12]]);
      assert.deepEqual([...b], [5, 2, 1, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
      // greeting and auth at once, then a request to a port nobody listens on
      const c = await talk(proxy.port, [[both(greeting, auth), 4], [request(deadPort), 10]]);
      assert.deepEqual([...c], [5, 2, 1, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
      // a name that needs IDNA, after a two-step handshake: on the native
      // engine the router hands it to TypeScript, which must not repeat
      // the replies already sent
      const idn = Buffer.from("ｌｏｃａｌｈｏｓｔ");
      const byName = Buffer.concat([
        Buffer.from([5, 1, 0, 3, idn.length]),
        idn,
        Buffer.from([webPort >> 8, webPort & 0xff]),
      ]);
      const e = await talk(proxy.port, [
        [greeting, 2],
        [auth, 2],
        [byName, 10],
        ["GET / HTTP/1.0\r\n\r\n", 1],
      ]);
      assert.deepEqual([...e.subarray(0, 14)], [5, 2, 1, 0, ...ok]);
      assert.match(e.subarray(14).toString(), /hello via/);
      // everything at once: every reply, in order
      const d = await talk(proxy.port, [[both(both(greeting, auth), request(deadPort)), 14]]);
      assert.deepEqual([...d], [5, 2, 1, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
      // each step's reply is due as soon as its step is whole, whatever
      // part of the next came with it: greeting and part of the password
      // message, then the rest and part of the request, then the rest
      const req = request(webPort);
      const g = await talk(proxy.port, [
        [both(greeting, auth.subarray(0, 3)), 2],
        [both(auth.subarray(3), req.subarray(0, 3)), 2],
        [req.subarray(3), 10],
        ["GET / HTTP/1.0\r\n\r\n", 1],
      ]);
      assert.deepEqual([...g.subarray(0, 14)], [5, 2, 1, 0, ...ok]);
      assert.match(g.subarray(14).toString(), /hello via/);
      // greeting and a password message of the wrong version at once: the
      // method choice, then the refusal (RFC 1929 status 1)
      const badAuth = new Uint8Array([5, ...auth.subarray(1)]);
      const f = await talk(proxy.port, [[both(greeting, badAuth), 4]]);
      assert.deepEqual([...f], [5, 2, 1, 1]);
      await proxy.close();
    });

    test("a failed connect is an error naming the checked address", async () => {
      const { proxy, at } = await start("socks", undefined, { quiet: true });
      const errors: RelaykitError[] = [];
      proxy.on("error", (e) => errors.push(e));
      assert.equal(
        (await curl(["--socks5-hostname", at, `http://localhost:${deadPort}/`])).code,
        97,
      );
      await waitFor(() => errors.length > 0, 5000, "the error event");
      assert.equal(errors[0]!.code, "ECONNREFUSED");
      assert.match(
        errors[0]!.message,
        new RegExp(`^Cannot connect to "(127\\.0\\.0\\.1|::1|\\[::1\\]):${deadPort}"`),
      );
      assert.equal(typeof errors[0]!.connectionId, "number");
      await proxy.close();
    });

    test("limits: an oversized CONNECT head, the route limit, the route timeout", async () => {
      const http = await start("http", undefined, { quiet: true });
      const big = await talk(http.proxy.port, [[
        `CONNECT a:1 HTTP/1.1\r\nX: ${"x".repeat(17000)}`,
        1,
      ]]);
      assert.match(big.toString(), /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
      await http.proxy.close();
      const socks = await start("socks", undefined, { quiet: true, routeLimit: 100 });
      const errors: RelaykitError[] = [];
      socks.proxy.on("error", (e) => errors.push(e));
      // a greeting that announces 255 methods, then stops past the limit
      const long = await talk(socks.proxy.port, [[
        new Uint8Array([5, 255, ...new Array(120).fill(0)]),
        1,
      ]]);
      assert.equal(long.length, 0);
      await waitFor(() => errors.length > 0, 5000, "the route limit's error");
      assert.equal(errors[0]!.code, "RK_EROUTE_LIMIT");
      await socks.proxy.close();
      const slow = await start("socks", undefined, { quiet: true, routeTimeout: 300 });
      const late: RelaykitError[] = [];
      slow.proxy.on("error", (e) => late.push(e));
      const t0 = Date.now();
      assert.equal((await talk(slow.proxy.port, [[new Uint8Array([5, 2, 0]), 1]])).length, 0);
      assert.ok(Date.now() - t0 >= 250, `closed after ${Date.now() - t0} ms`);
      await waitFor(() => late.length > 0, 5000, "the route timeout's error");
      assert.equal(late[0]!.code, "ETIMEDOUT");
      await slow.proxy.close();
    });

    test("a connect that times out: SOCKS5 0x06 (TTL expired), SOCKS4 0x5b, CONNECT 504", async () => {
      if (engine === "native") nativeEngine();
      const hole = await blackHole();
      const p = hole.port;
      const rules = { allow: [{ cidr: "127.0.0.0/8" }] };
      const socks = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        connectTimeout: 300,
        route: socksRouter(rules),
      });
      const http = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        connectTimeout: 300,
        route: httpConnectRouter(rules),
      });
      try {
        const five = await talk(socks.port, [
          [new Uint8Array([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, p >> 8, p & 0xff]), 12],
        ]);
        assert.deepEqual([...five.subarray(0, 4)], [5, 0, 5, 6]);
        const four = await talk(socks.port, [
          [new Uint8Array([4, 1, p >> 8, p & 0xff, 127, 0, 0, 1, 0]), 8],
        ]);
        assert.deepEqual([...four.subarray(0, 2)], [0, 0x5b]);
        const c = await talk(http.port, [
          [new TextEncoder().encode(`CONNECT 127.0.0.1:${p} HTTP/1.1\r\n\r\n`), 12],
        ]);
        assert.match(new TextDecoder().decode(c), /^HTTP\/1\.1 504 /);
      } finally {
        await socks.close();
        await http.close();
        hole.stop();
      }
    });

    test("a target's reset is an error naming the target", async () => {
      if (engine === "native") nativeEngine();
      const backend = createNetServer((s) => {
        s.on("error", () => {});
        s.write("x");
        setTimeout(() => s.resetAndDestroy(), 50);
      });
      await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
      const port = (backend.address() as net.AddressInfo).port;
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        route: socksRouter({ allow: [{ cidr: "127.0.0.0/8" }] }),
      });
      const errors: RelaykitError[] = [];
      proxy.on("error", (e) => errors.push(e));
      const got = await talk(proxy.port, [
        // (more than comes: read until the reset)
        [new Uint8Array([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]), 100],
      ]);
      assert.deepEqual([...got.subarray(0, 12)], [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
      await waitFor(() => errors.length > 0, 5000, "the reset's error");
      assert.equal(errors[0]!.code, "ECONNRESET");
      assert.match(errors[0]!.message, new RegExp(`to "127\\.0\\.0\\.1:${port}"`));
      await proxy.close();
      backend.close();
    });

    test("reconfigure replaces the router for new connections", async () => {
      const { proxy, at } = await start("socks", undefined, { quiet: true });
      const through = async () =>
        (await curl(["--socks5", at, `http://127.0.0.1:${webPort}/`])).code;
      assert.equal(await through(), 0);
      proxy.reconfigure({ route: socksRouter({ allow: [{ port: webPort + 1 }] }) });
      assert.equal(await through(), 97);
      proxy.reconfigure({ route: socksRouter({ allow: [{ port: webPort }] }) });
      assert.equal(await through(), 0);
      // a route function of one's own: the engine's router steps aside
      proxy.reconfigure({ route: () => ({ close: "no\n" }) });
      assert.equal(await through(), 97);
      await proxy.close();
    });

    test("random and truncated handshakes: each closes, the next client is served", {
      timeout: 60_000,
    }, async () => {
      const socks = await start("socks", { u: "p" });
      const http = await start("http", { u: "p" });
      let seed = 23;
      const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
      const valid = [
        Buffer.from([
          5,
          1,
          2,
          1,
          1,
          0x75,
          1,
          0x70,
          5,
          1,
          0,
          3,
          9,
          ...Buffer.from("localhost"),
          webPort >> 8,
          webPort & 0xff,
        ]),
        Buffer.from([
          4,
          1,
          webPort >> 8,
          webPort & 0xff,
          0,
          0,
          0,
          1,
          0x75,
          0,
          ...Buffer.from("localhost"),
          0,
        ]),
        Buffer.from([5, 1, 0, 5, 1, 0, 4, ...new Array(15).fill(0), 1, 0, 80]),
      ];
      const httpValid = Buffer.from(
        `CONNECT localhost:${webPort} HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n`,
      );
      const one = async (port: number, bytes: Uint8Array) => {
        const s = await connect(port);
        s.on("error", () => {});
        s.on("data", () => {});
        s.write(bytes);
        if (rand(3) === 0) s.destroy();
        else s.end();
        await closed(s);
      };
      for (let i = 0; i < 150; i++) {
        const base = i % 2 === 0 ? valid[rand(valid.length)]! : httpValid;
        let bytes: Buffer;
        switch (rand(4)) {
          case 0: // truncated
            bytes = base.subarray(0, rand(base.length));
            break;
          case 1: { // one byte changed
            bytes = Buffer.from(base);
            bytes[rand(bytes.length)] = rand(256);
            break;
          }
          case 2: // random
            bytes = Buffer.from(Array.from({ length: rand(64) + 1 }, () => rand(256)));
            break;
          default: // truncated and changed
            bytes = Buffer.from(base.subarray(0, rand(base.length) + 1));
            bytes[rand(bytes.length)] = rand(256);
        }
        await one(i % 2 === 0 ? socks.proxy.port : http.proxy.port, bytes);
      }
      const r = await curl(["--socks5", `u:p@${socks.at}`, `http://127.0.0.1:${webPort}/`]);
      assert.equal(r.body, `hello via 127.0.0.1:${webPort}\n`, r.stderr);
      const h = await curl(["-p", "-x", `http://u:p@${http.at}`, `http://127.0.0.1:${webPort}/`]);
      assert.equal(h.body, `hello via 127.0.0.1:${webPort}\n`, h.stderr);
      await waitFor(
        () => socks.proxy.connections === 0 && http.proxy.connections === 0,
        10_000,
        "every connection closed",
      );
      await socks.proxy.close();
      await http.proxy.close();
    });

    test("curl --socks5, --socks5-hostname, --socks4, --socks4a reach the server", async () => {
      const { proxy, at } = await start("socks");
      for (const flag of ["--socks5", "--socks5-hostname", "--socks4", "--socks4a"]) {
        for (const host of ["127.0.0.1", "localhost"]) {
          const r = await curl([flag, at, `http://${host}:${webPort}/`]);
          assert.deepEqual(
            { code: r.code, body: r.body },
            { code: 0, body: `hello via ${host}:${webPort}\n` },
            `${flag} ${host}: ${r.stderr}`,
          );
        }
      }
      await proxy.close();
    });

    test("IPv6 destinations: SOCKS5 and HTTP CONNECT to [::1]", async () => {
      if (engine === "native") nativeEngine();
      const web6 = createServer((req, res) => res.end(`six via ${req.headers.host}\n`));
      await new Promise<void>((r) => web6.listen(0, "::1", r));
      const p6 = (web6.address() as net.AddressInfo).port;
      const opts = { allow: [{ cidr: "::1/128", port: p6 }] };
      const s = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        route: socksRouter(opts),
      });
      const h = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        route: httpConnectRouter(opts),
      });
      const url = `http://[::1]:${p6}/`;
      const six = await curl(["--socks5", `127.0.0.1:${s.port}`, url]);
      assert.deepEqual({ code: six.code, body: six.body }, {
        code: 0,
        body: `six via [::1]:${p6}\n`,
      });
      assert.equal((await curl(["-p", "-x", `http://127.0.0.1:${h.port}`, url])).code, 0);
      await s.close();
      await h.close();
      web6.close();
    });

    test("SOCKS: closed by default, refusals, unreachable targets, passwords", async () => {
      const { proxy, at, denied } = await start("socks");
      // a port that no rule allows; a name that a deny rule matches
      assert.equal((await curl(["--socks5", at, `http://127.0.0.1:${webPort + 1}/`])).code, 97);
      assert.equal(
        (await curl(["--socks5-hostname", at, `http://x.blocked.test:${webPort}/`])).code,
        97,
      );
      assert.equal((await curl(["--socks4", at, `http://127.0.0.1:22/`])).code, 97);
      assert.equal(denied.length, 3, denied.join("; "));
      assert.match(denied[0]!, /127\.0\.0\.1:\d+ is not allowed/);
      // allowed but nothing listens: the failure reply, not a hang
      assert.equal((await curl(["--socks5", at, `http://127.0.0.1:${deadPort}/`])).code, 97);
      await proxy.close();
      const auth = await start("socks", { alice: "s3cret" });
      const ok = await curl([
        "--socks5",
        `alice:s3cret@${auth.at}`,
        `http://127.0.0.1:${webPort}/`,
      ]);
      assert.equal(ok.code, 0);
      assert.equal(
        (await curl(["--socks5", `alice:wrong@${auth.at}`, `http://127.0.0.1:${webPort}/`])).code,
        97,
      );
      assert.equal((await curl(["--socks5", auth.at, `http://127.0.0.1:${webPort}/`])).code, 97);
      assert.match(auth.denied.join("; "), /wrong SOCKS5 user or password.*a password is required/);
      await auth.proxy.close();
    });

    test("HTTP CONNECT with curl -x: through, 407, 403, 502", async () => {
      const { proxy, at } = await start("http", { bob: "pw" });
      const ok = await curl(["-p", "-x", `http://bob:pw@${at}`, `http://127.0.0.1:${webPort}/`]);
      assert.deepEqual({ code: ok.code, body: ok.body }, {
        code: 0,
        body: `hello via 127.0.0.1:${webPort}\n`,
      });
      const status = async (proxyUrl: string, url: string) =>
        (await curl(["-p", "-x", proxyUrl, "-o", "/dev/null", "-w", "%{http_connect}", url])).body;
      assert.equal(await status(`http://bob:no@${at}`, `http://127.0.0.1:${webPort}/`), "407");
      assert.equal(await status(`http://${at}`, `http://127.0.0.1:${webPort}/`), "407");
      assert.equal(await status(`http://bob:pw@${at}`, `http://127.0.0.1:${webPort + 1}/`), "403");
      assert.equal(await status(`http://bob:pw@${at}`, `http://127.0.0.1:${deadPort}/`), "502");
      await proxy.close();
    });

    test("malformed handshakes get a refusal or a clean close", async () => {
      const socks = await start("socks");
      const http = await start("http");
      const exchange = async (port: number, bytes: Uint8Array | string) => {
        const s = await connect(port);
        const got: Uint8Array[] = [];
        s.on("data", (d: Uint8Array) => got.push(d));
        s.on("error", () => {});
        s.end(bytes);
        await closed(s);
        return Buffer.concat(got);
      };
      // SOCKS5 BIND (command 2): "command not supported"
      const bind = await exchange(
        socks.proxy.port,
        new Uint8Array([5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]),
      );
      assert.deepEqual([...bind], [5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
      // an unknown address type
      const atyp = await exchange(socks.proxy.port, new Uint8Array([5, 1, 0, 5, 1, 0, 9, 0, 0]));
      assert.deepEqual([...atyp.subarray(2, 4)], [5, 8]);
      // not SOCKS at all: closed without a word
      assert.equal((await exchange(socks.proxy.port, "GET / HTTP/1.0\r\n\r\n")).length, 0);
      // HTTP: a GET is 405, garbage is 400
      assert.match(
        String(await exchange(http.proxy.port, "GET / HTTP/1.1\r\n\r\n")),
        /^HTTP\/1\.1 405 /,
      );
      assert.match(
        String(await exchange(http.proxy.port, "CONNECT nonsense\r\n\r\n")),
        /^HTTP\/1\.1 400 /,
      );
      await socks.proxy.close();
      await http.proxy.close();
    });

    test(
      "malformed Basic credentials are answered 407 like wrong ones",
      { timeout: 20_000 },
      async () => {
        const { proxy, denied } = await start("http", { u: "p" });
        const ask = async (auth: string, after = "") => {
          const s = await connect(proxy.port);
          const got: Uint8Array[] = [];
          s.on("data", (d: Uint8Array) => got.push(d));
          s.on("error", () => {});
          s.end(
            `CONNECT 127.0.0.1:${webPort} HTTP/1.1\r\nProxy-Authorization: ${auth}\r\n\r\n${after}`,
          );
          await closed(s);
          return Buffer.concat(got).toString("latin1");
        };
        const b64 = (b: string | number[]) =>
          Buffer.from(typeof b === "string" ? b : new Uint8Array(b)).toString("base64");
        const forms = [
          "Basic !!!",
          "Basic =",
          "Basic Zm9v", // "foo": no colon
          `Basic ${b64(":p")}`, // no user
          `Basic ${b64([0xff, 0xfe, 0x3a, 0x70])}`, // not UTF-8
          `Basic ${b64("u:p").replace(/=+$/, "")}x`, // not base64 (its length)
          `Basic ${b64("constructor:x")}`,
          `Basic ${b64("__proto__:x")}`,
          `Basic ${b64("u:wrong")}`,
          "Bearer abc",
          "Basic",
        ];
        for (const form of forms) {
          const answer = await ask(form);
          assert.match(answer, /^HTTP\/1\.1 407 /, form);
          assert.match(answer, /\r\nProxy-Authenticate: Basic realm="relaykit"\r\n/, form);
        }
        assert.ok(
          denied.includes("malformed proxy credentials (not base64 of UTF-8 USER:PASSWORD)"),
        );
        // the proxy goes on: good credentials on the next connection
        assert.match(
          await ask(`Basic ${b64("u:p")}`, "GET / HTTP/1.0\r\n\r\n"),
          /^HTTP\/1\.1 200 Connection established\r\n\r\nHTTP\/1\.[01] 200 [^]*hello via /,
        );
        await proxy.close();
      },
    );
  });
}

describe("socksRouter's memory of replies sent", () => {
  test("a live handshake keeps it however many others are left unfinished", async () => {
    const route = socksRouter({ allow: [{ port: 80 }] });
    const greeting = new Uint8Array([5, 1, 0]);
    const request = new Uint8Array([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
    const live = { id: 1 };
    assert.deepEqual(await route(greeting, live), { send: new Uint8Array([5, 0]) });
    // more unfinished handshakes than any count-bounded memory would keep
    for (let id = 2; id < 20_002; id++) await route(greeting, { id });
    const r = await route(new Uint8Array([...greeting, ...request]), live);
    assert.ok(typeof r === "object" && r !== null && "reply" in r);
    // the method choice went out already: the success reply alone
    assert.deepEqual([...(r.reply as Uint8Array)].slice(0, 2), [5, 0]);
    assert.equal((r.reply as Uint8Array).length, 10, "no second method choice in front");
  });
});
