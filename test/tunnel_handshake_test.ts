/**
 * The tunnel handshake (protocol 2) and hostile peers, with raw sockets on
 * one side: a client without the secret gets nothing that depends on it
 * before it proves; proofs follow docs/tunnel.md (checked here with
 * node:crypto, not the link's code); a refused secret or version stops the
 * client (and the command, with exit code 1); old peers are told both
 * versions; route names from Object.prototype are unknown routes; hostile
 * frame sequences close one link with a named error and the next link
 * works.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "./_test.ts";
import {
  DEFAULT_WINDOW,
  TunnelClient,
  type TunnelClientEvents,
  TunnelServer,
  type TunnelServerEvents,
} from "../mod.ts";
import {
  encodeFrame,
  FRAME_HEADER_SIZE,
  FrameDecoder,
  LINK_HELD_MAX,
  NONCE_SIZE,
  TUNNEL_VERSIONS,
  type TunnelFrame,
  TunnelProtocolError,
} from "../internals.ts";
import { parseConfig } from "../src/config/config.ts";
import {
  blackHole,
  concat,
  connect,
  echoServer,
  ENGINES,
  sleep,
  startCli,
  stopChild,
  useEngine,
  waitFor,
  writeTestCertificates,
} from "./_helpers.ts";

function random(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

const cat = (...parts: Uint8Array[]): Uint8Array => concat(parts);

/** HMAC-SHA256 as docs/tunnel.md defines the proofs, by node:crypto. */
function mac(secret: string, label: string, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac("sha256", secret);
  h.update(label);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}
const CLIENT_LABEL = "relaykit-tunnel/2 client proof\0";
const SERVER_LABEL = "relaykit-tunnel/2 server proof\0";

/** Whether `needle` occurs anywhere in `hay`. */
function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** A tunnel peer written by hand on a raw socket: every byte it gets is kept. */
class Raw {
  readonly rx: Uint8Array[] = [];
  closed = false;
  readonly done: Promise<void>;
  constructor(readonly sock: net.Socket) {
    sock.on("data", (d: Uint8Array) => this.rx.push(new Uint8Array(d)));
    sock.on("error", () => {});
    sock.on("end", () => sock.end()); // the peer closed: close our side too
    this.done = new Promise((r) =>
      sock.once("close", () => {
        this.closed = true;
        r();
      })
    );
  }
  static async to(port: number): Promise<Raw> {
    return new Raw(await connect(port));
  }
  get bytes(): Uint8Array {
    return cat(...this.rx);
  }
  /** The whole frames received so far (throws on bytes that are no frame). */
  frames(): TunnelFrame[] {
    return new FrameDecoder().push(this.bytes);
  }
  async frame(n: number, what: string, ms = 3000): Promise<TunnelFrame> {
    await waitFor(() => this.frames().length >= n, ms, what);
    return this.frames()[n - 1]!;
  }
  send(...frames: TunnelFrame[]): void {
    this.sock.write(cat(...frames.map(encodeFrame)));
  }
  async closedWithin(ms: number, what = "the link"): Promise<void> {
    await waitFor(() => this.closed, ms, `${what} to close`);
  }
}

/** A hand-written server: `on` is called with each accepted peer. */
async function rawServer(on: (p: Raw) => void): Promise<{ port: number; close(): void }> {
  const srv = net.createServer({ allowHalfOpen: true }, (s) => on(new Raw(s)));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => srv.close(),
  };
}

const SECRET = "handshake-s3cret";
const hello = (nonce = random(NONCE_SIZE), versions = [...TUNNEL_VERSIONS]): TunnelFrame => ({
  type: "hello",
  versions,
  nonce,
});

for (const engine of ENGINES) {
  describe(`tunnel handshake, protocol 2 (${engine} engine)`, () => {
    useEngine(engine);
    let echo: Awaited<ReturnType<typeof echoServer>>;
    let srv: TunnelServer;
    const closes: TunnelServerEvents["link-close"][] = [];
    before(async () => {
      echo = await echoServer();
      srv = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        secret: SECRET,
        routes: { web: { host: "127.0.0.1", port: echo.port } },
      });
      srv.on("link-close", (e) => closes.push(e));
    });
    after(async () => {
      await srv.close();
      await echo.close();
    });

    test(
      "a client without the secret gets a nonce and nothing that depends on the secret, then one bit per guess",
      async () => {
        const nonces: Uint8Array[] = [];
        for (let i = 0; i < 2; i++) {
          const p = await Raw.to(srv.address.port);
          const nc = random(NONCE_SIZE);
          const h = hello(nc);
          p.send(h);
          const ack = await p.frame(1, "HELLO_ACK");
          await sleep(200); // nothing more comes before a proof
          const before = p.bytes;
          // exactly one HELLO_ACK: version, window and a nonce, nothing else
          assert.equal(before.length, FRAME_HEADER_SIZE + 6 + NONCE_SIZE);
          assert.equal(before[1], 0x01, "the auth flag");
          assert.ok(ack.type === "hello-ack" && ack.auth !== undefined);
          assert.equal(ack.version, TUNNEL_VERSIONS.at(-1));
          assert.equal(ack.window, DEFAULT_WINDOW);
          const ns = ack.auth.nonce;
          nonces.push(ns);
          // no MAC under the secret of anything this exchange holds: not the
          // version 1 server proof, not either proof of protocol 2
          const transcript = cat(encodeFrame(h), encodeFrame(ack));
          for (
            const m of [
              mac(SECRET, "relaykit-tunnel server", nc, ns),
              mac(SECRET, "relaykit-tunnel client", ns, nc),
              mac(SECRET, CLIENT_LABEL, transcript),
              mac(SECRET, SERVER_LABEL, transcript),
              mac(SECRET, "", nc),
              mac(SECRET, "", ns),
              mac(SECRET, "", nc, ns),
            ]
          ) {
            assert.equal(contains(before, m), false);
          }
          // a guess costs a round trip and gets one answer: no
          p.send({ type: "auth", proof: mac("guess", CLIENT_LABEL, transcript) });
          await p.closedWithin(3000);
          const after = p.bytes.subarray(before.length);
          const frames = new FrameDecoder().push(after);
          assert.equal(frames.length, 1);
          assert.ok(frames[0]!.type === "goaway");
          assert.equal(frames[0]!.code, "RK_ETUNNEL_AUTH");
          assert.equal(frames[0]!.message, "wrong shared secret");
        }
        assert.notDeepEqual(nonces[0], nonces[1], "a fresh server nonce per link");
        await waitFor(
          () => closes.filter((c) => c.reason === "auth-failed").length >= 2,
          3000,
          "logs",
        );
      },
    );

    test("a wrong proof sent with the client's FIN ends that link as refused, not as lost", async () => {
      const seen = closes.length;
      const p = await Raw.to(srv.address.port);
      const h = hello();
      p.send(h);
      const ack = await p.frame(1, "HELLO_ACK");
      const transcript = cat(encodeFrame(h), encodeFrame(ack));
      // the proof is checked while the end is already read: the end waits
      p.sock.end(encodeFrame({ type: "auth", proof: mac("guess", CLIENT_LABEL, transcript) }));
      await waitFor(() => closes.length > seen, 3000, "the link's end");
      assert.deepEqual(
        closes.slice(seen).map((c) => [c.reason, c.error?.code]),
        [["auth-failed", "RK_ETUNNEL_AUTH"]],
      );
    });

    test(
      "proofs are as docs/tunnel.md says; the server's comes only after the client's, and a proof replayed on another link fails",
      async () => {
        const p = await Raw.to(srv.address.port);
        const h = hello();
        p.send(h);
        const ack = await p.frame(1, "HELLO_ACK");
        const transcript = cat(encodeFrame(h), encodeFrame(ack));
        const proof = mac(SECRET, CLIENT_LABEL, transcript);
        p.send({ type: "auth", proof });
        const ready = await p.frame(2, "READY");
        assert.ok(ready.type === "ready");
        assert.deepEqual(ready.proof, mac(SECRET, SERVER_LABEL, transcript));
        assert.notDeepEqual(ready.proof, proof, "a proof is never the other direction's");
        // the link works: a stream by route
        p.send({ type: "open", stream: 1, destination: { route: "web" } });
        const ok = await p.frame(3, "OPEN_OK");
        assert.deepEqual(ok, { type: "open-ok", stream: 1 });
        p.sock.destroy();

        // the same proof on a new link (a new server nonce) is refused
        const q = await Raw.to(srv.address.port);
        q.send(h);
        await q.frame(1, "HELLO_ACK");
        q.send({ type: "auth", proof });
        await q.closedWithin(3000);
        const last = q.frames().at(-1)!;
        assert.ok(last.type === "goaway" && last.code === "RK_ETUNNEL_AUTH");
      },
    );

    test(
      "a server that reflects the client's proof, or proves wrong, is refused and the client stops",
      async () => {
        let links = 0;
        const fake = await rawServer(async (p) => {
          links++;
          const h = await p.frame(1, "HELLO");
          assert.ok(h.type === "hello");
          p.send({
            type: "hello-ack",
            version: h.versions.at(-1)!,
            window: DEFAULT_WINDOW,
            auth: { nonce: random(NONCE_SIZE) },
          });
          const auth = await p.frame(2, "AUTH");
          assert.ok(auth.type === "auth");
          p.send({ type: "ready", proof: auth.proof }); // its own proof, reflected
        });
        const client = await TunnelClient.start({
          link: { host: "127.0.0.1", port: fake.port },
          listeners: [],
          secret: SECRET,
          reconnectDelay: 20,
        });
        const downs: TunnelClientEvents["down"][] = [];
        client.on("down", (e) => downs.push(e));
        const stop = await new Promise<TunnelClientEvents["stopped"]>((r) =>
          client.on("stopped", r)
        );
        assert.equal(stop.reason, "auth-failed");
        assert.equal(stop.error.code, "RK_ETUNNEL_AUTH");
        assert.match(stop.error.message, /the server's proof does not match/);
        await sleep(300);
        assert.equal(links, 1, "no second try");
        assert.deepEqual(downs, []);
        await client.close();
        fake.close();
      },
    );

    test("an OPEN the server never answers ends its stream after openTimeout, reset at both ends", async () => {
      const frames: TunnelFrame[][] = [];
      const fake = await rawServer(async (p) => {
        const h = await p.frame(1, "HELLO");
        assert.ok(h.type === "hello");
        p.send({ type: "hello-ack", version: h.versions.at(-1)!, window: DEFAULT_WINDOW });
        frames.push([]);
        const mine = frames.at(-1)!;
        const poll = setInterval(() => mine.splice(0, mine.length, ...p.frames().slice(1)), 20);
        await p.done;
        clearInterval(poll);
      });
      const client = await TunnelClient.start({
        link: { host: "127.0.0.1", port: fake.port },
        listeners: [{ listen: { host: "127.0.0.1", port: 0 }, to: { host: "127.0.0.1", port: 9 } }],
        httpConnect: [{ listen: { host: "127.0.0.1", port: 0 } }],
        openTimeout: 300,
      });
      const ends: TunnelClientEvents["stream-end"][] = [];
      client.on("stream-end", (e) => ends.push(e));
      try {
        await client.waitUp(3000);
        // a fixed destination: the local connection is reset
        const t0 = Date.now();
        const s = await connect(client.addresses[0]!.port);
        const reset = await Promise.race([
          new Promise<string>((r) => {
            s.on("error", (e: NodeJS.ErrnoException) => r(e.code ?? "error"));
            s.on("close", () => r("closed"));
          }),
          sleep(3000).then(() => "still open after 3 s"),
        ]);
        assert.ok(Date.now() - t0 >= 250, "not before the timeout");
        assert.match(reset, /ECONNRESET|closed/);
        // an HTTP CONNECT client: 504, as for the server's own connect timeout
        const c = await connect(client.addresses[1]!.port);
        const answer = new Promise<string>((r) => {
          let text = "";
          c.on("data", (d: Uint8Array) => text += new TextDecoder().decode(d));
          c.on("end", () => r(text)); // the reply, then FIN
          c.on("error", () => {});
        });
        c.write("CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n");
        assert.match(
          await Promise.race([answer, sleep(3000).then(() => "no answer in 3 s")]),
          /^HTTP\/1\.1 504 /,
        );
        await waitFor(() => ends.length === 2, 3000, "two stream ends");
        for (const e of ends) {
          assert.equal(e.reason, "connect-failed");
          assert.equal(e.error?.code, "ETIMEDOUT");
          assert.match(e.error!.message, /did not answer stream \d+'s OPEN in 300 ms/);
        }
        // the server is told: OPEN, then RST, for each stream
        await waitFor(() => frames[0]!.filter((f) => f.type === "rst").length === 2, 3000, "RSTs");
        assert.deepEqual(
          frames[0]!.filter((f) => f.type === "open" || f.type === "rst").map((f) =>
            f.type === "rst"
              ? `rst ${f.stream} ${f.code}`
              : `${f.type} ${(f as { stream: number }).stream}`
          ),
          ["open 1", "rst 1 ETIMEDOUT", "open 2", "rst 2 ETIMEDOUT"],
        );
        assert.equal(client.up, true, "the link stays up");
      } finally {
        await client.close();
        fake.close();
      }
    });

    test(
      "a version 1 client is refused with both versions named, before anything about the secret",
      async () => {
        const p = await Raw.to(srv.address.port);
        // a version 1 HELLO has the same bytes as a version 2 one offering 1
        p.send(hello(random(NONCE_SIZE), [1]));
        await p.closedWithin(3000);
        const frames = p.frames();
        assert.equal(frames.length, 1, "a GOAWAY only: no HELLO_ACK, no nonce, no proof");
        const g = frames[0]!;
        assert.ok(g.type === "goaway");
        assert.equal(g.code, "RK_ETUNNEL_VERSION");
        assert.equal(
          g.message,
          "no common protocol version: the client offers 1, this server speaks 2 (the client is older: upgrade it)",
        );
        await waitFor(() => closes.some((c) => c.reason === "version"), 3000, "the server's log");
        const c = closes.find((c) => c.reason === "version")!;
        assert.match(c.error!.message, /the client offers 1, this server speaks 2/);
      },
    );

    test("a version 1 server's refusal stops the client, both versions named", async () => {
      let links = 0;
      const offered: number[][] = [];
      const old = await rawServer(async (p) => {
        links++;
        const h = await p.frame(1, "HELLO");
        assert.ok(h.type === "hello");
        offered.push(h.versions);
        // what a version 1 server answers (its text, unchanged)
        p.send({
          type: "goaway",
          code: "RK_ETUNNEL_VERSION",
          message: `no common protocol version: the client offers ${
            h.versions.join(", ")
          }, this server speaks 1`,
        });
        p.sock.end();
      });
      const client = await TunnelClient.start({
        link: { host: "127.0.0.1", port: old.port },
        listeners: [],
        reconnectDelay: 20,
      });
      const stop = await new Promise<TunnelClientEvents["stopped"]>((r) => client.on("stopped", r));
      assert.equal(stop.reason, "version");
      assert.equal(stop.error.code, "RK_ETUNNEL_VERSION");
      assert.match(stop.error.message, /the client offers 2, this server speaks 1/);
      assert.deepEqual(offered, [[2]]);
      await sleep(300);
      assert.equal(links, 1, "no second try");
      await client.close();
      old.close();
    });
  });
}

describe("the tunnel command stops when refused", () => {
  const dir = mkdtempSync(join(tmpdir(), "relaykit-tunnel-hs-"));
  before(() => {
    writeFileSync(join(dir, "right"), "right-secret\n");
    writeFileSync(join(dir, "wrong"), "wrong-secret\n");
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function exitOf(c: ReturnType<typeof startCli>): Promise<number | string | null> {
    c.line.catch(() => {}); // it may exit before or after its first line
    return new Promise((r) => c.child.once("close", (code, sig) => r(code ?? sig)));
  }

  test(
    "relaykit tunnel client with a wrong secret exits 1 with the reason, after one try",
    async () => {
      const srv = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        secret: "right-secret",
        routes: { x: { host: "127.0.0.1", port: 9 } },
      });
      const closes: TunnelServerEvents["link-close"][] = [];
      srv.on("link-close", (e) => closes.push(e));
      const cli = startCli([
        "tunnel",
        "client",
        "--link",
        `127.0.0.1:${srv.address.port}`,
        "--listen",
        "127.0.0.1:0=x",
        "--secret-file",
        join(dir, "wrong"),
        "--reconnect-max",
        "100",
      ]);
      const code = await exitOf(cli);
      assert.equal(code, 1, cli.output.err);
      assert.match(
        cli.output.err,
        /link to 127\.0\.0\.1:\d+ refused: auth-failed \(.*wrong shared secret\); stopping/,
      );
      assert.doesNotMatch(cli.output.err, /retrying/);
      assert.equal(closes.length, 1, "one link attempt");
      assert.equal(closes[0]!.reason, "auth-failed");
      await srv.close();
    },
  );

  test(
    "relaykit tunnel client against a version 1 server exits 1 naming both versions",
    async () => {
      const old = await rawServer(async (p) => {
        const h = await p.frame(1, "HELLO");
        assert.ok(h.type === "hello");
        p.send({
          type: "goaway",
          code: "RK_ETUNNEL_VERSION",
          message: `no common protocol version: the client offers ${
            h.versions.join(", ")
          }, this server speaks 1`,
        });
        p.sock.end();
      });
      const cli = startCli([
        "tunnel",
        "client",
        "--link",
        `127.0.0.1:${old.port}`,
        "--listen",
        "127.0.0.1:0=x",
      ]);
      const code = await exitOf(cli);
      assert.equal(code, 1, cli.output.err);
      assert.match(
        cli.output.err,
        /refused: version \(.*the client offers 2, this server speaks 1\); stopping/,
      );
      old.close();
    },
  );
});

for (const engine of ENGINES) {
  describe(`tunnel route names (${engine} engine)`, () => {
    useEngine(engine);
    let echo: Awaited<ReturnType<typeof echoServer>>;
    before(async () => {
      echo = await echoServer();
    });
    after(() => echo.close());

    const PROTO_NAMES = [
      "constructor",
      "__proto__",
      "toString",
      "hasOwnProperty",
      "valueOf",
      "isPrototypeOf",
      "__defineGetter__",
    ];

    /** Open a stream to `route` on a raw, ready link; the server's answer. */
    async function openRoute(port: number, route: string): Promise<TunnelFrame> {
      const p = await Raw.to(port);
      p.send(hello());
      await p.frame(1, "HELLO_ACK");
      p.send({ type: "open", stream: 1, destination: { route } });
      const f = await p.frame(2, "OPEN_OK or OPEN_FAIL");
      p.sock.destroy();
      return f;
    }

    test("names of Object.prototype are unknown routes, unless they are given", async () => {
      const srv = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        routes: { web: { host: "127.0.0.1", port: echo.port } },
      });
      for (const name of PROTO_NAMES) {
        const f = await openRoute(srv.address.port, name);
        assert.ok(f.type === "open-fail", `${name}: ${f.type}`);
        assert.equal(f.code, "RK_EROUTE", name);
        assert.match(f.message, new RegExp(`^No route named "${name}"`));
      }
      assert.equal((await openRoute(srv.address.port, "web")).type, "open-ok");
      await srv.close();

      // given as own keys (as JSON or a config file would), they are routes
      const given = JSON.parse(
        `{"__proto__": {"host": "127.0.0.1", "port": ${echo.port}}, "constructor": {"host": "127.0.0.1", "port": ${echo.port}}}`,
      );
      const srv2 = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        routes: given,
      });
      assert.equal((await openRoute(srv2.address.port, "__proto__")).type, "open-ok");
      assert.equal((await openRoute(srv2.address.port, "constructor")).type, "open-ok");
      const f = await openRoute(srv2.address.port, "toString");
      assert.ok(f.type === "open-fail" && f.code === "RK_EROUTE");
      await srv2.close();
    });

    test("relaykit tunnel server --route __proto__=... is a route; constructor is not", async () => {
      const srv = startCli([
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--route",
        `__proto__=127.0.0.1:${echo.port}`,
      ]);
      const line = await srv.line;
      const port = Number(/on 127\.0\.0\.1:(\d+)/.exec(line)?.[1]);
      assert.ok(port > 0, line);
      assert.match(line, /routes: __proto__\)/);
      assert.equal((await openRoute(port, "__proto__")).type, "open-ok");
      for (const name of ["constructor", "toString"]) {
        const f = await openRoute(port, name);
        assert.ok(f.type === "open-fail" && f.code === "RK_EROUTE", name);
      }
      await stopChild(srv.child);
    });

    test("a config file's routes named __proto__ and constructor are own routes", () => {
      const config = parseConfig(
        `tunnel_servers:
  - name: edge
    port: 7000
    routes:
      __proto__: { host: 127.0.0.1, port: 1 }
      constructor: { host: 127.0.0.1, port: 2 }
`,
        "routes.yaml",
      );
      const routes = config.tunnelServers[0]!.routes!;
      assert.deepEqual(Object.keys(routes).sort(), ["__proto__", "constructor"]);
      assert.ok(Object.hasOwn(routes, "__proto__"));
      assert.deepEqual(routes["__proto__"], { host: "127.0.0.1", port: 1 });
      assert.equal(Object.hasOwn(routes, "toString"), false);
    });
  });
}

for (const engine of ENGINES) {
  describe(`hostile tunnel peers (${engine} engine)`, () => {
    useEngine(engine);
    let echo: Awaited<ReturnType<typeof echoServer>>;
    let hole: Awaited<ReturnType<typeof blackHole>>;
    before(async () => {
      echo = await echoServer();
      hole = await blackHole();
    });
    after(async () => {
      hole.stop();
      await echo.close();
    });

    const h = (type: number, flags: number, stream: number, payload: Uint8Array) => {
      const out = new Uint8Array(FRAME_HEADER_SIZE + payload.length);
      const v = new DataView(out.buffer);
      out[0] = type;
      out[1] = flags;
      v.setUint32(2, stream);
      v.setUint32(6, payload.length);
      out.set(payload, FRAME_HEADER_SIZE);
      return out;
    };
    const F = (...f: TunnelFrame[]) => cat(...f.map(encodeFrame));
    const open1 = (): TunnelFrame => ({ type: "open", stream: 1, destination: { route: "web" } });
    const big = new Uint8Array(16 * 1024);
    const pings = (n: number) =>
      Array.from({ length: n }, (): TunnelFrame => ({ type: "ping", data: random(8) }));

    // [name, when: at the start, after HELLO_ACK (a server with a secret only) or on a
    // link that is up, the bytes, the problem]
    const cases: [string, "start" | "hello" | "up", () => Uint8Array, string][] = [
      ["OPEN before HELLO", "start", () => F(open1()), "state"],
      ["DATA before HELLO", "start", () => F({ type: "data", stream: 1, data: big }), "state"],
      ["OPEN before AUTH", "hello", () => F(open1()), "state"],
      ["READY from the client", "hello", () => F({ type: "ready", proof: random(32) }), "state"],
      [
        "DATA on a stream never opened",
        "up",
        () => F({ type: "data", stream: 7, data: new Uint8Array(5) }),
        "state",
      ],
      [
        "WINDOW past 2^31 - 1",
        "up",
        () => F(open1(), { type: "window", stream: 1, credit: 0x7fffffff }),
        "flow-control",
      ],
      // to a destination whose connect never completes: no credit comes back
      ["DATA past the window", "up", () =>
        F(
          { type: "open", stream: 1, destination: { route: "hole" } },
          ...Array.from(
            { length: DEFAULT_WINDOW / big.length + 1 },
            () => ({ type: "data", stream: 1, data: big }) as TunnelFrame,
          ),
        ), "flow-control"],
      ["an OPEN id reused", "up", () => F(open1(), open1()), "state"],
      // ids past 2^31 cross the native boundary unsigned
      [
        "FIN twice on the highest stream id",
        "up",
        () =>
          F(
            { type: "open", stream: 0xffffffff, destination: { route: "web" } },
            { type: "data", stream: 0xffffffff, data: new Uint8Array(5) },
            { type: "fin", stream: 0xffffffff },
            { type: "fin", stream: 0xffffffff },
          ),
        "state",
      ],
      ["a second HELLO", "up", () => F(hello()), "state"],
      ["OPEN_OK from the client", "up", () => F({ type: "open-ok", stream: 1 }), "state"],
      [
        "FIN twice",
        "up",
        () => F(open1(), { type: "fin", stream: 1 }, { type: "fin", stream: 1 }),
        "state",
      ],
      ["an unknown frame type", "up", () => h(0x7f, 0, 0, new Uint8Array(0)), "unknown-type"],
      [
        "a 4 GiB length",
        "up",
        () => h(0x08, 0, 1, new Uint8Array(0)).fill(0xff, 6, 10),
        "oversize",
      ],
      ["OPEN on stream 0", "up", () => h(0x05, 0, 0, new Uint8Array([2, 0x61])), "malformed"],
      // a peer that has proven nothing gets a bounded handshake, not a PONG per PING
      ["PINGs instead of a HELLO", "start", () => F(...pings(100)), "state"],
      ["PINGs instead of an AUTH", "hello", () => F(...pings(100)), "state"],
      [
        "a TLS ClientHello",
        "start",
        () => new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x05]),
        "tls",
      ],
    ];

    test(
      "hostile frame sequences close that link with a named error, and the next link works",
      async () => {
        for (const secret of [undefined, SECRET]) {
          const srv = await TunnelServer.listen({
            listen: { host: "127.0.0.1", port: 0 },
            routes: {
              web: { host: "127.0.0.1", port: echo.port },
              hole: { host: "127.0.0.1", port: hole.port },
            },
            connectTimeout: 1000, // the hole's streams end soon after the test
            ...(secret ? { secret } : {}),
          });
          const closes: TunnelServerEvents["link-close"][] = [];
          srv.on("link-close", (e) => closes.push(e));
          for (const [name, when, bytes, problem] of cases) {
            if (when === "hello" && secret === undefined) continue;
            const before = closes.length;
            const p = await Raw.to(srv.address.port);
            if (when !== "start") {
              const hh = hello();
              p.send(hh);
              const ack = await p.frame(1, "HELLO_ACK");
              if (when === "up" && secret !== undefined) {
                const transcript = cat(encodeFrame(hh), encodeFrame(ack));
                p.send({ type: "auth", proof: mac(secret, CLIENT_LABEL, transcript) });
                await p.frame(2, "READY");
              }
            }
            p.sock.write(bytes());
            await p.closedWithin(3000, name);
            const last = p.frames().at(-1);
            assert.ok(last?.type === "goaway", `${name}: ${JSON.stringify(last)}`);
            assert.equal(last.code, "RK_ETUNNEL_PROTOCOL", name);
            assert.match(last.message, new RegExp(`\\(${problem}\\)`), `${name}: ${last.message}`);
            await waitFor(() => closes.length > before, 3000, `${name}: the server's close`);
            const c = closes.at(-1)!;
            assert.equal(c.reason, "protocol-error", name);
            assert.ok(c.error instanceof TunnelProtocolError, name);
            assert.equal(c.error.problem, problem, name);
          }
          // the process is alive and the next link carries bytes
          const client = await TunnelClient.start({
            link: srv.address,
            listeners: [{ listen: { host: "127.0.0.1", port: 0 }, to: { route: "web" } }],
            ...(secret ? { secret } : {}),
          });
          await client.waitUp(5000);
          const s = await connect(client.addresses[0]!.port);
          const got: Uint8Array[] = [];
          s.on("data", (d: Uint8Array) => got.push(d));
          s.end("still serving");
          await new Promise((r) => s.once("close", r));
          assert.equal(new TextDecoder().decode(cat(...got)), "still serving");
          await client.close();
          await srv.close();
        }
      },
    );

    test(
      "a peer that fills the windows of many streams whose destinations take nothing: the server holds at most LINK_HELD_MAX and stops reading the link",
      async () => {
        const srv = await TunnelServer.listen({
          listen: { host: "127.0.0.1", port: 0 },
          routes: { hole: { host: "127.0.0.1", port: hole.port } },
          connectTimeout: 30_000, // the streams wait for the hole throughout
        });
        const p = await Raw.to(srv.address.port);
        try {
          p.send(hello());
          const ack = await p.frame(1, "HELLO_ACK");
          assert.ok(ack.type === "hello-ack");
          // twice the bound in windows: OPENs, then DATA round the streams
          const n = Math.ceil((2 * LINK_HELD_MAX) / ack.window);
          p.send(
            ...Array.from({ length: n }, (_, i): TunnelFrame => ({
              type: "open",
              stream: i + 1,
              destination: { route: "hole" },
            })),
          );
          const round = F(
            ...Array.from({ length: n }, (_, i): TunnelFrame => ({
              type: "data",
              stream: i + 1,
              data: big,
            })),
          );
          const rounds = ack.window / big.length;
          let sent = 0;
          for (; sent < rounds; sent++) {
            if (p.sock.write(round)) continue;
            const drained = await new Promise<boolean>((r) => {
              const t = setTimeout(() => r(false), 1500);
              p.sock.once("drain", () => {
                clearTimeout(t);
                r(true);
              });
            });
            if (!drained) break;
          }
          assert.ok(sent < rounds, `the server read all ${rounds} rounds of DATA`);
          const held = () => srv.streamStats().reduce((a, s) => a + s.backlog, 0);
          await waitFor(() => held() >= LINK_HELD_MAX, 5000, "the streams to hold LINK_HELD_MAX");
          await new Promise((r) => setTimeout(r, 300));
          assert.ok(
            held() <= LINK_HELD_MAX + 2 * 1024 * 1024,
            `the streams hold ${held()} bytes (bound ${LINK_HELD_MAX})`,
          );
          assert.ok(!p.closed, "the link is still up");
        } finally {
          p.sock.destroy();
          await srv.close();
        }
      },
    );

    test(
      "a hostile server's frames close the client's link (it retries), and the next link works",
      async () => {
        const hostile = [
          F({ type: "open", stream: 1, destination: { route: "x" } }),
          F({ type: "data", stream: 3, data: new Uint8Array(4) }),
          F({ type: "window", stream: 9, credit: 1 }),
          F({ type: "open-ok", stream: 1 }),
          h(0x7f, 0, 0, new Uint8Array(0)),
        ];
        let n = 0;
        const fake = await rawServer(async (p) => {
          const i = n++;
          const hh = await p.frame(1, "HELLO");
          assert.ok(hh.type === "hello");
          p.send({ type: "hello-ack", version: hh.versions.at(-1)!, window: DEFAULT_WINDOW });
          if (i < hostile.length) p.sock.write(hostile[i]!);
        });
        const client = await TunnelClient.start({
          link: { host: "127.0.0.1", port: fake.port },
          listeners: [],
          reconnectDelay: 10,
          reconnectMaxDelay: 20,
        });
        const downs: TunnelClientEvents["down"][] = [];
        client.on("down", (e) => downs.push(e));
        await waitFor(
          () => n > hostile.length && client.up,
          10_000,
          "a link after the hostile ones",
        );
        const problems = downs.filter((d) => d.reason === "protocol-error").map((d) =>
          (d.error as TunnelProtocolError).problem
        );
        assert.deepEqual(problems, ["state", "state", "state", "state", "unknown-type"]);
        await client.close();
        fake.close();
      },
    );
  });
}

for (const engine of ENGINES) {
  describe(`a tunnel link without TLS to a TLS server (${engine} engine)`, () => {
    useEngine(engine);
    const dir = mkdtempSync(join(tmpdir(), "relaykit-tunnel-tls-"));
    before(() => writeTestCertificates(dir));
    after(() => rmSync(dir, { recursive: true, force: true }));

    test("is told that the server speaks TLS", async () => {
      const srv = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        routes: { x: { host: "127.0.0.1", port: 9 } },
        tls: {
          cert: readFileSync(join(dir, "cert.pem"), "utf8"),
          key: readFileSync(join(dir, "key.pem"), "utf8"),
        },
      });
      const client = await TunnelClient.start({
        link: srv.address,
        listeners: [],
        reconnectDelay: 5000,
      });
      const down = await new Promise<TunnelClientEvents["down"]>((r) => client.on("down", r));
      assert.equal(down.reason, "protocol-error", String(down.error?.message));
      assert.equal((down.error as TunnelProtocolError).problem, "tls");
      assert.match(down.error!.message, /the server speaks TLS; connect with TLS \(--tls/);
      await client.close();
      await srv.close();
    });
  });
}
