/**
 * SOCKS4/4a/5 and HTTP CONNECT in front of the tunnel client: curl through
 * both to an allowed service; destinations the server's rules refuse (a
 * deny rule, a port outside the allow list, loopback spelt other ways)
 * answered with the protocol's refusal while the service sees no
 * connection; unreachable and slow destinations; passwords; a link that is
 * down; then the command and the config file.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "./_test.ts";
import { TunnelClient, type TunnelClientEvents, TunnelServer } from "../mod.ts";
import { parseConfig } from "../src/config/config.ts";
import { httpConnectReply, parseHttpConnect } from "../src/protocol/http_connect.ts";
import { parseSocks, socksReply } from "../src/protocol/socks.ts";
import { blackHole, concat, curl, freePort, startCli, stopChild, waitFor } from "./_helpers.ts";

/** Send `bytes` to 127.0.0.1:port; everything that comes back until the peer closes. */
function exchange(port: number, bytes: Uint8Array | string, ms = 8000): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    const parts: Uint8Array[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close from ${port} within ${ms} ms`));
    }, ms);
    s.on("data", (d: Uint8Array) => parts.push(d));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve(Uint8Array.from(parts.flatMap((p) => [...p])));
    });
    s.on("connect", () => s.write(bytes));
  });
}

/** A SOCKS5 CONNECT (no authentication) to a name or IPv4 address: the bytes. */
function socks5Request(host: string, port: number): Uint8Array {
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(host);
  const addr = v4
    ? [1, ...v4.slice(1).map(Number)]
    : [3, host.length, ...new TextEncoder().encode(host)];
  return new Uint8Array([5, 1, 0, 5, 1, 0, ...addr, port >> 8, port & 255]);
}

/** A SOCKS4a CONNECT to a name: the bytes. */
function socks4aRequest(host: string, port: number): Uint8Array {
  return new Uint8Array([
    4,
    1,
    port >> 8,
    port & 255,
    0,
    0,
    0,
    1,
    0,
    ...new TextEncoder().encode(host),
    0,
  ]);
}

/** The reply code of a SOCKS5 answer to socks5Request (after the method choice). */
async function socks5Code(port: number, host: string, dest: number): Promise<number | undefined> {
  const r = await exchange(port, socks5Request(host, dest));
  assert.deepEqual([...r.subarray(0, 2)], [5, 0], `method choice, got ${[...r]}`);
  return r[3];
}

/** The HTTP status curl saw from the proxy's answer to CONNECT (0: none). */
async function connectStatus(proxyPort: number, dest: string, extra: string[] = []) {
  const r = await curl([
    "-p",
    "-x",
    `http://127.0.0.1:${proxyPort}`,
    "-o",
    "/dev/null",
    "-w",
    "%{http_connect}",
    ...extra,
    `http://${dest}/`,
  ]);
  return Number(r.body);
}

describe("tunnel client SOCKS and HTTP CONNECT entry", () => {
  let web: Server;
  let webPort = 0;
  let webHits = 0;
  let secret: net.Server; // a service the server's deny rule protects
  let secretPort = 0;
  let secretHits = 0;
  let outside: net.Server; // a service on a port the allow list does not name
  let outsidePort = 0;
  let outsideHits = 0;
  let deadPort = 0; // nothing listens
  let hole: { port: number; stop(): void }; // a connect there hangs
  let srv: TunnelServer;
  let client: TunnelClient;
  let socksPort = 0;
  let httpPort = 0;
  let authSocksPort = 0;
  let authHttpPort = 0;
  const ends: TunnelClientEvents["stream-end"][] = [];
  const entryRefused: TunnelClientEvents["entry-refused"][] = [];
  const dir = mkdtempSync(join(tmpdir(), "relaykit-entry-"));

  const tcpService = async (onConn: () => void) => {
    const s = net.createServer((c) => {
      onConn();
      c.end("secret\n");
    });
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    return { s, port: (s.address() as net.AddressInfo).port };
  };

  before(async () => {
    web = createServer((req, res) => res.end(`hello through the entry (${req.url})\n`));
    web.on("connection", () => webHits++);
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    webPort = (web.address() as net.AddressInfo).port;
    ({ s: secret, port: secretPort } = await tcpService(() => secretHits++));
    ({ s: outside, port: outsidePort } = await tcpService(() => outsideHits++));
    deadPort = await freePort();
    hole = await blackHole();
    srv = await TunnelServer.listen({
      listen: { host: "127.0.0.1", port: 0 },
      allow: [{ cidr: "127.0.0.0/8", port: [webPort, secretPort, deadPort, hole.port] }],
      deny: [{ cidr: "127.0.0.1/32", port: secretPort }],
      connectTimeout: 700,
    });
    client = await TunnelClient.start({
      link: srv.address,
      socks: [
        { listen: { host: "127.0.0.1", port: 0 } },
        { listen: { host: "127.0.0.1", port: 0 }, users: { alice: "s3cret" } },
      ],
      httpConnect: [
        { listen: { host: "127.0.0.1", port: 0 } },
        { listen: { host: "127.0.0.1", port: 0 }, users: { alice: "s3cret" } },
      ],
      entryTimeout: 1000,
    });
    client.on("stream-end", (e) => ends.push(e));
    client.on("entry-refused", (e) => entryRefused.push(e));
    [socksPort, authSocksPort, httpPort, authHttpPort] = client.addresses.map((a) => a.port) as [
      number,
      number,
      number,
      number,
    ];
    await client.waitUp(5000);
  });

  after(async () => {
    await client?.close();
    await srv?.close();
    web?.close();
    secret?.close();
    outside?.close();
    hole?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("curl reaches an allowed service through --socks (socks5h, socks5, socks4a, socks4)", {
    timeout: 15_000,
  }, async () => {
    for (const scheme of ["socks5h", "socks5", "socks4a", "socks4"]) {
      // a name goes to the server with socks5h and socks4a; curl resolves it itself otherwise
      const remote = scheme === "socks5h" || scheme === "socks4a";
      for (const host of remote ? ["127.0.0.1", "localhost"] : ["127.0.0.1"]) {
        const r = await curl([
          "-x",
          `${scheme}://127.0.0.1:${socksPort}`,
          `http://${host}:${webPort}/${scheme}`,
        ]);
        assert.equal(r.code, 0, `${scheme} ${host}: ${r.stderr}`);
        assert.equal(r.body, `hello through the entry (/${scheme})\n`);
      }
    }
    assert.ok(ends.some((e) => e.reason === "done" && "host" in e.destination));
  });

  test("curl reaches an allowed service through --http-connect (curl -p -x)", async () => {
    const r = await curl([
      "-p",
      "-x",
      `http://127.0.0.1:${httpPort}`,
      `http://127.0.0.1:${webPort}/http`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.body, "hello through the entry (/http)\n");
    assert.equal(await connectStatus(httpPort, `127.0.0.1:${webPort}`), 200);
  });

  test("destinations the server refuses get SOCKS5 0x02, SOCKS4 0x5B, HTTP 403; the service sees nothing", async () => {
    const hits = secretHits + outsideHits;
    // the deny rule, and loopback spelt other ways (normalised by the server's address policy)
    for (
      const host of ["127.0.0.1", "0x7f.1", "2130706433", "127.1", "017700000001", "localhost"]
    ) {
      assert.equal(await socks5Code(socksPort, host, secretPort), 0x02, host);
    }
    // a port the allow list does not name
    assert.equal(await socks5Code(socksPort, "127.0.0.1", outsidePort), 0x02);
    // SOCKS4a: one refusal code
    const four = await exchange(socksPort, socks4aRequest("0x7f.1", secretPort));
    assert.deepEqual([...four.subarray(0, 2)], [0, 0x5b]);
    // curl sees the refusal too
    const c = await curl([
      "-x",
      `socks5h://127.0.0.1:${socksPort}`,
      `http://0x7f.1:${secretPort}/`,
    ]);
    assert.equal(c.code, 97, c.stderr);
    assert.equal(await connectStatus(httpPort, `127.0.0.1:${secretPort}`), 403);
    assert.equal(await connectStatus(httpPort, `0x7f.1:${secretPort}`), 403);
    assert.equal(await connectStatus(httpPort, `127.0.0.1:${outsidePort}`), 403);
    assert.equal(await connectStatus(httpPort, `[::ffff:127.0.0.1]:${secretPort}`), 403);
    assert.equal(secretHits + outsideHits, hits, "a refused destination saw a connection");
    const refused = ends.filter((e) => e.reason === "refused");
    assert.ok(refused.length >= 10, `${refused.length} refused streams`);
    assert.ok(refused.every((e) => e.error?.code === "RK_EDENIED"));
  });

  test("an unreachable port: SOCKS5 0x05, SOCKS4 0x5B, HTTP 502", async () => {
    assert.equal(await socks5Code(socksPort, "127.0.0.1", deadPort), 0x05);
    const four = await exchange(socksPort, socks4aRequest("127.0.0.1", deadPort));
    assert.deepEqual([...four.subarray(0, 2)], [0, 0x5b]);
    assert.equal(await connectStatus(httpPort, `127.0.0.1:${deadPort}`), 502);
  });

  test("a connect that times out: SOCKS5 0x06, HTTP 504", async () => {
    assert.equal(await socks5Code(socksPort, "127.0.0.1", hole.port), 0x06);
    assert.equal(await connectStatus(httpPort, `127.0.0.1:${hole.port}`), 504);
    assert.ok(ends.some((e) => e.error?.code === "ETIMEDOUT"));
  });

  test("passwords: SOCKS5 username/password and HTTP Basic; SOCKS4 refused", async () => {
    const ok = await curl([
      "-x",
      `socks5h://alice:s3cret@127.0.0.1:${authSocksPort}`,
      `http://127.0.0.1:${webPort}/auth`,
    ]);
    assert.equal(ok.body, "hello through the entry (/auth)\n", ok.stderr);
    const before = entryRefused.length;
    const wrong = await curl([
      "-x",
      `socks5h://alice:nope@127.0.0.1:${authSocksPort}`,
      `http://127.0.0.1:${webPort}/`,
    ]);
    assert.notEqual(wrong.code, 0);
    // no password offered: no acceptable method
    const none = await exchange(authSocksPort, new Uint8Array([5, 1, 0]));
    assert.deepEqual([...none], [5, 0xff]);
    const four = await exchange(authSocksPort, socks4aRequest("127.0.0.1", webPort));
    assert.deepEqual([...four.subarray(0, 2)], [0, 0x5b]);
    assert.equal(
      await connectStatus(authHttpPort, `127.0.0.1:${webPort}`, ["--proxy-user", "alice:s3cret"]),
      200,
    );
    assert.equal(await connectStatus(authHttpPort, `127.0.0.1:${webPort}`), 407);
    assert.equal(
      await connectStatus(authHttpPort, `127.0.0.1:${webPort}`, ["--proxy-user", "alice:x"]),
      407,
    );
    assert.ok(entryRefused.length >= before + 5, JSON.stringify(entryRefused.slice(before)));
    assert.ok(entryRefused.some((e) => /wrong SOCKS5 user or password for "alice"/.test(e.what)));
  });

  test("malformed, unsupported and slow requests are refused without a stream", async () => {
    const streams = ends.length;
    // SOCKS5 BIND: command not supported (7)
    const bind = await exchange(
      socksPort,
      new Uint8Array([5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]),
    );
    assert.deepEqual([...bind.subarray(0, 4)], [5, 0, 5, 7]);
    // not SOCKS at all: closed without a word
    assert.equal((await exchange(socksPort, "GET / HTTP/1.0\r\n\r\n")).length, 0);
    const get = new TextDecoder().decode(await exchange(httpPort, "GET / HTTP/1.1\r\n\r\n"));
    assert.match(get, /^HTTP\/1\.1 405 /);
    const bad = new TextDecoder().decode(
      await exchange(httpPort, "CONNECT nowhere HTTP/1.1\r\n\r\n"),
    );
    assert.match(bad, /^HTTP\/1\.1 400 /);
    // half a request, then nothing: closed after entryTimeout (1 s)
    const t0 = Date.now();
    assert.equal((await exchange(httpPort, "CONNECT 127.0.0.1:80 HTTP/1.1\r\n", 5000)).length, 0);
    assert.ok(Date.now() - t0 >= 900, `closed after ${Date.now() - t0} ms`);
    assert.equal(ends.length, streams, "a refused request opened a stream");
  });

  test("destinations an OPEN cannot carry (port 0, an empty or 256-byte host) get the refusal; no stream is left behind", async () => {
    const before = entryRefused.length;
    const streams = client.streams;
    const long = "a".repeat(256);
    // SOCKS5: port 0, an empty name, a 255-byte name that is fine on the wire (refused by the server)
    for (const req of [socks5Request("127.0.0.1", 0), socks5Request("", webPort)]) {
      const r = await exchange(socksPort, req);
      assert.deepEqual([...r.subarray(0, 4)], [5, 0, 5, 2], `${[...req]} got ${[...r]}`);
    }
    // SOCKS4 port 0, SOCKS4a with an empty name: 91
    for (const req of [[4, 1, 0, 0, 127, 0, 0, 1, 0], [4, 1, 0, 80, 0, 0, 0, 1, 0, 0]]) {
      const r = await exchange(socksPort, new Uint8Array(req));
      assert.deepEqual([...r], [0, 91, 0, 0, 0, 0, 0, 0], `${req} got ${[...r]}`);
    }
    // HTTP CONNECT to a host longer than an OPEN carries (in bytes: 128 x "é" is 256)
    for (const host of [long, "é".repeat(128)]) {
      const r = await exchange(httpPort, `CONNECT ${host}:${webPort} HTTP/1.1\r\n\r\n`);
      assert.match(new TextDecoder().decode(r), /^HTTP\/1\.1 403 /);
    }
    assert.equal(entryRefused.length, before + 6, JSON.stringify(entryRefused.slice(before)));
    for (const e of entryRefused.slice(before)) {
      assert.match(e.what, /cannot be sent to the tunnel server/, e.what);
    }
    assert.equal(client.streams, streams, "a refused destination left a stream on the link");
    // the link still carries the next client
    const req = new TextEncoder().encode("GET /next HTTP/1.0\r\n\r\n");
    const r = await exchange(socksPort, concat([socks5Request("127.0.0.1", webPort), req]));
    assert.deepEqual([...r.subarray(0, 4)], [5, 0, 5, 0]);
    assert.match(new TextDecoder().decode(r.subarray(12)), /hello through the entry \(\/next\)/);
  });

  test("a SOCKS client whose request arrives with its first bytes gets the reply first", async () => {
    const req = "GET /pipelined HTTP/1.0\r\nHost: x\r\n\r\n";
    const r = await exchange(
      socksPort,
      new Uint8Array([...socks5Request("127.0.0.1", webPort), ...new TextEncoder().encode(req)]),
    );
    assert.deepEqual([...r.subarray(0, 4)], [5, 0, 5, 0]);
    assert.match(
      new TextDecoder().decode(r.subarray(12)),
      /hello through the entry \(\/pipelined\)/,
    );
  });

  test("with the link down, SOCKS5 gets 0x01 and HTTP CONNECT 502", async () => {
    const c = await TunnelClient.start({
      link: { host: "127.0.0.1", port: deadPort },
      socks: [{ listen: { host: "127.0.0.1", port: 0 } }],
      httpConnect: [{ listen: { host: "127.0.0.1", port: 0 } }],
      reconnectMaxDelay: 1000,
    });
    try {
      const [s, h] = c.addresses.map((a) => a.port) as [number, number];
      assert.equal(await socks5Code(s, "127.0.0.1", webPort), 0x01);
      assert.equal(await connectStatus(h, `127.0.0.1:${webPort}`), 502);
    } finally {
      await c.close();
    }
  });

  test("relaykit tunnel client --socks and --http-connect carry curl; refusals logged", {
    timeout: 25_000,
  }, async () => {
    const server = startCli([
      "tunnel",
      "server",
      "--listen",
      "127.0.0.1:0",
      "--allow",
      `127.0.0.1:${webPort}`,
    ]);
    const sline = await server.line;
    const linkPort = /on 127\.0\.0\.1:(\d+)/.exec(sline)?.[1];
    assert.ok(linkPort, sline);
    const cli = startCli([
      "tunnel",
      "client",
      "--link",
      `127.0.0.1:${linkPort}`,
      "--socks",
      "127.0.0.1:0",
      "--http-connect",
      "127.0.0.1:0",
    ]);
    try {
      const cline = await cli.line;
      const s = /127\.0\.0\.1:(\d+) -> SOCKS/.exec(cline)?.[1];
      const h = /127\.0\.0\.1:(\d+) -> HTTP CONNECT/.exec(cline)?.[1];
      assert.ok(s && h, cline);
      await waitFor(() => cli.output.out.includes("up (version"), 10_000, "the link");
      const r = await curl(["-x", `socks5h://127.0.0.1:${s}`, `http://localhost:${webPort}/cli`]);
      assert.equal(r.body, "hello through the entry (/cli)\n", r.stderr);
      const r4 = await curl(["-x", `socks4a://127.0.0.1:${s}`, `http://127.0.0.1:${webPort}/4a`]);
      assert.equal(r4.body, "hello through the entry (/4a)\n", r4.stderr);
      const rh = await curl(["-p", "-x", `http://127.0.0.1:${h}`, `http://127.0.0.1:${webPort}/h`]);
      assert.equal(rh.body, "hello through the entry (/h)\n", rh.stderr);
      const hits = secretHits;
      assert.equal(await socks5Code(Number(s), "0x7f.1", secretPort), 0x02);
      assert.equal(await connectStatus(Number(h), `127.0.0.1:${secretPort}`), 403);
      assert.equal(secretHits, hits);
      await waitFor(
        () => /to 127\.0\.0\.1:\d+: refused \(.*is not allowed/.test(cli.output.out),
        5000,
        "the refusal in the client's log",
      );
    } finally {
      await stopChild(cli.child);
      await stopChild(server.child);
    }
  });

  test("relaykit run: tunnel_clients[].socks and http_connect from the config file", {
    timeout: 25_000,
  }, async () => {
    const linkPort = await freePort();
    const s = await freePort();
    const h = await freePort();
    const cfg = join(dir, "entry.yaml");
    writeFileSync(
      cfg,
      `tunnel_servers:
  - name: edge
    address: 127.0.0.1
    port: ${linkPort}
    allow: [{ cidr: 127.0.0.1/32, port: ${webPort} }]
tunnel_clients:
  - name: branch
    link: { host: 127.0.0.1, port: ${linkPort} }
    socks:
      - { address: 127.0.0.1, port: ${s}, users: { bob: pw } }
    http_connect:
      - { address: 127.0.0.1, port: ${h} }
`,
    );
    const run = startCli(["run", cfg]);
    try {
      await run.line;
      // the client's end (the server may log its end up first)
      await waitFor(() => /link to \S+ up \(version/.test(run.output.out), 10_000, "the link");
      const r = await curl([
        "-x",
        `socks5h://bob:pw@127.0.0.1:${s}`,
        `http://127.0.0.1:${webPort}/config`,
      ]);
      assert.equal(r.body, "hello through the entry (/config)\n", r.stderr);
      const rh = await curl(["-p", "-x", `http://127.0.0.1:${h}`, `http://127.0.0.1:${webPort}/c`]);
      assert.equal(rh.body, "hello through the entry (/c)\n", rh.stderr);
      assert.equal(await connectStatus(h, `127.0.0.1:${secretPort}`), 403);
      const wrong = await curl([
        "-x",
        `socks5h://bob:nope@127.0.0.1:${s}`,
        `http://127.0.0.1:${webPort}/`,
      ]);
      assert.notEqual(wrong.code, 0);
      await waitFor(
        () =>
          /branch: 127\.0\.0\.1:\d+: request from .* refused: wrong SOCKS5 user or password for "bob"/
            .test(run.output.out + run.output.err),
        5000,
        "the refusal in the log",
      );
    } finally {
      await stopChild(run.child);
    }
  });

  test("config mistakes in socks and http_connect have a place and a suggestion", () => {
    const text = `tunnel_clients:
  - name: branch
    link: { host: 127.0.0.1, port: 7000 }
    sokcs:
      - { address: 127.0.0.1, port: 1080 }
    http_connect:
      - { adress: 127.0.0.1, port: 3128, users: [bob] }
`;
    assert.throws(() => parseConfig(text, "relaykit.yaml"), (err: Error) => {
      assert.match(
        err.message,
        /relaykit\.yaml:4:5: tunnel_clients\[0\]\.sokcs: unknown key \(did you mean "socks"\?\)/,
      );
      assert.match(
        err.message,
        /relaykit\.yaml:7:11: tunnel_clients\[0\]\.http_connect\[0\]\.adress: unknown key \(did you mean "address"\?\)/,
      );
      assert.match(
        err.message,
        /tunnel_clients\[0\]\.http_connect\[0\]\.users: expected a mapping of user names to passwords/,
      );
      return true;
    });
    assert.throws(
      () => parseConfig(`tunnel_clients:\n  - name: b\n    link: { host: h, port: 1 }\n`, "r.yaml"),
      /r\.yaml:2:5: tunnel_clients\[0\]: needs listeners, socks or http_connect/,
    );
  });
});

describe("SOCKS and HTTP CONNECT handshake parsers (shared by the routers and the tunnel entry)", () => {
  const enc = new TextEncoder();

  test("a SOCKS5 handshake with a password: every prefix asks for more, with the replies due", () => {
    const users = { alice: "s3cret" };
    const greeting = [5, 2, 0, 2];
    const auth = [1, 5, ...enc.encode("alice"), 6, ...enc.encode("s3cret")];
    const request = [5, 1, 0, 3, 9, ...enc.encode("localhost"), 0x1f, 0x90];
    const all = new Uint8Array([...greeting, ...auth, ...request, ...enc.encode("GET")]);
    const end = greeting.length + auth.length + request.length;
    let replies = 0;
    for (let n = 0; n < end; n++) {
      const step = parseSocks(all.subarray(0, n), users);
      assert.equal(step.kind, "more", `prefix ${n}`);
      if (step.kind !== "more") return;
      assert.ok(step.replies.length >= replies, `replies shrank at ${n}`);
      replies = step.replies.length;
      if (n >= greeting.length) assert.deepEqual([...step.replies[0]!], [5, 2]);
      if (n >= greeting.length + auth.length) assert.deepEqual([...step.replies[1]!], [1, 0]);
    }
    const done = parseSocks(all, users);
    assert.equal(done.kind, "connect");
    if (done.kind !== "connect") return;
    assert.deepEqual(done.destination, { host: "localhost", port: 8080 });
    assert.equal(done.version, 5);
    assert.equal(new TextDecoder().decode(done.rest), "GET");
    // a wrong password: refused after the method choice
    const wrong = parseSocks(
      new Uint8Array([...greeting, 1, 5, ...enc.encode("alice"), 1, 120]),
      users,
    );
    assert.equal(wrong.kind, "refuse");
    if (wrong.kind === "refuse") assert.deepEqual([...wrong.reply!], [1, 1]);
  });

  test("SOCKS4a and HTTP CONNECT name their destination; the rest is kept", () => {
    const four = parseSocks(
      new Uint8Array([
        4,
        1,
        0,
        80,
        0,
        0,
        0,
        9,
        ...enc.encode("me"),
        0,
        ...enc.encode("0x7f.1"),
        0,
        42,
      ]),
      undefined,
    );
    assert.equal(four.kind, "connect");
    if (four.kind === "connect") {
      assert.deepEqual(four.destination, { host: "0x7f.1", port: 80 });
      assert.deepEqual([...four.rest], [42]);
    }
    const head = "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n";
    for (let n = 0; n < head.length; n++) {
      assert.equal(parseHttpConnect(enc.encode(head.slice(0, n)), undefined).kind, "more");
    }
    const c = parseHttpConnect(enc.encode(`${head}hello`), undefined);
    assert.equal(c.kind, "connect");
    if (c.kind === "connect") {
      assert.deepEqual(c.destination, { host: "::1", port: 443 });
      assert.equal(new TextDecoder().decode(c.rest), "hello");
    }
    const auth = parseHttpConnect(enc.encode(head), { bob: "pw" });
    assert.equal(auth.kind, "refuse");
    if (auth.kind === "refuse") assert.match(auth.reply, /^HTTP\/1\.1 407 /);
  });

  test("one table from an outcome's code to the SOCKS reply and the HTTP status", () => {
    const cases: [string | undefined, number, RegExp][] = [
      [undefined, 0x00, / 200 /],
      ["RK_EDENIED", 0x02, / 403 /],
      ["RK_EROUTE", 0x02, / 403 /],
      ["ENETUNREACH", 0x03, / 502 /],
      ["EHOSTUNREACH", 0x04, / 502 /],
      ["RK_ERESOLVE", 0x04, / 502 /],
      ["ECONNREFUSED", 0x05, / 502 /],
      ["ETIMEDOUT", 0x06, / 504 /],
      ["RK_ELINK_LOST", 0x01, / 502 /],
    ];
    for (const [code, five, http] of cases) {
      assert.equal(socksReply(5, code)[1], five, String(code));
      assert.equal(socksReply(4, code)[1], code === undefined ? 0x5a : 0x5b, String(code));
      assert.match(httpConnectReply(code), http, String(code));
    }
  });
});
