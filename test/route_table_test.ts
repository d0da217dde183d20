/**
 * Static routing tables (routeTable, a listener's `routes:`): one table of
 * first bytes — Host headers, TLS ClientHellos, prefixes, hostile ones —
 * run against both engines and through `relaykit run`. On the native
 * engine the entries that go to a fixed address are decided in C: the
 * route function is not called for them.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "./_test.ts";
import { Backend, type RelaykitError, type RouteFunction, routeTable, TcpProxy } from "../mod.ts";
import { httpHost, tlsSni } from "../src/protocol/first_bytes.ts";
import { indexOfCrlf, indexOfHeadEnd } from "../src/bytes.ts";
import { ConfigError, formatIssue, parseConfig } from "../src/config/config.ts";
import { engineRouterOf } from "../src/proxy/socks.ts";
import { callsOf } from "../src/native/engine.ts";
import { ENGINES, freePort, nativeEngine, startCli, stopChild, waitFor } from "./_helpers.ts";

const enc = new TextEncoder();

/** Servers that answer their tag to the first bytes they get, then close. */
const tags = ["A", "W", "T", "M", "S", "D"] as const;
type Tag = typeof tags[number];
const servers = new Map<Tag, net.Server>();
const ports = {} as Record<Tag, number>;
before(async () => {
  for (const tag of tags) {
    const s = net.createServer((c) => {
      c.on("error", () => {});
      c.once("data", () => c.end(tag));
    });
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    servers.set(tag, s);
    ports[tag] = (s.address() as net.AddressInfo).port;
  }
});
after(() => {
  for (const s of servers.values()) s.close();
});

/** A TLS record with a ClientHello, with a server_name extension for `sni`. */
function clientHello(sni: string | undefined, how: { badExtLength?: boolean } = {}): Uint8Array {
  const u16 = (n: number) => [n >> 8, n & 0xff];
  const ext: number[] = [];
  if (sni !== undefined) {
    const name = [...enc.encode(sni)];
    const entry = [0, ...u16(name.length), ...name];
    const list = [...u16(entry.length), ...entry];
    ext.push(...u16(0), ...u16(list.length), ...list);
  }
  // a supported_versions extension after it, as real clients send
  ext.push(...u16(43), ...u16(3), 2, 3, 4);
  const body = [
    3,
    3,
    ...new Array(32).fill(7),
    0, // session id
    ...u16(2),
    0x13,
    0x01,
    1,
    0, // compression
    ...u16(ext.length + (how.badExtLength ? 40 : 0)),
    ...ext,
  ];
  const hs = [1, 0, ...u16(body.length), ...body];
  return new Uint8Array([0x16, 3, 1, ...u16(hs.length), ...hs]);
}

const get = (headers: string) => enc.encode(`GET / HTTP/1.1\r\n${headers}\r\n`);

/** One case: the bytes, in the reads they come in, and where they must go (or the error). */
interface Case {
  name: string;
  send: (Uint8Array | string)[];
  want: Tag | RegExp;
  /** Decided in C on the native engine (the route function not called). */
  native?: boolean;
}

const CASES: Case[] = [
  { name: "Host", send: [get("Host: a.test\r\n")], want: "A", native: true },
  { name: "Host in upper case", send: [get("HOST: A.TEST\r\n")], want: "A", native: true },
  { name: "Host with a port", send: [get("Host: a.test:8080\r\n")], want: "A", native: true },
  { name: "Host with a final dot", send: [get("host:a.test.  \r\n")], want: "A", native: true },
  { name: "Host by pattern", send: [get("Host: x.wild.test\r\n")], want: "W", native: true },
  {
    name: "Host after other headers, split across reads",
    send: ["GET /x HTTP/1.0\r\nAccept: */*\r\nHo", "st: a.test\r\n\r\n"],
    want: "A",
    native: true,
  },
  { name: "no Host: the default", send: [get("Accept: */*\r\n")], want: "D", native: true },
  { name: "unknown Host: the default", send: [get("Host: c.test\r\n")], want: "D", native: true },
  {
    name: "Host given twice",
    send: [get("Host: a.test\r\nHost: b.test\r\n")],
    want: /Host header given twice/,
  },
  { name: "Host that is not a name", send: [get("Host: a/b\r\n")], want: /malformed Host/ },
  // a server reads the name of an absolute-form target, not Host (RFC 9112 3.2.2)
  {
    name: "absolute-form target: its name, not Host's",
    send: ["GET http://A.test:8080/x?y HTTP/1.1\r\nHost: c.test\r\n\r\n"],
    want: "A",
    native: true,
  },
  {
    name: "absolute-form target to another name than Host: routed by the target",
    send: ["GET https://c.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"],
    want: "D",
    native: true,
  },
  {
    name: "absolute-form target without a path",
    send: ["GET http://a.test HTTP/1.1\r\nHost: c.test\r\n\r\n"],
    want: "A",
    native: true,
  },
  {
    name: "absolute-form target with user info",
    send: ["GET http://a.test@c.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"],
    want: /malformed request target/,
  },
  {
    name: "absolute-form target without a name",
    send: ["GET http:///x HTTP/1.1\r\nHost: a.test\r\n\r\n"],
    want: /malformed request target/,
  },
  // a server that ends lines at a bare LF would see another Host than this one
  {
    name: "bare LF inside a header line",
    send: ["GET / HTTP/1.1\r\nX: y\nHost: c.test\r\nHost: a.test\r\n\r\n"],
    want: /bare CR or LF in a header line/,
  },
  {
    name: "bare CR inside a header line",
    send: ["GET / HTTP/1.1\r\nX: y\rHost: c.test\r\nHost: a.test\r\n\r\n"],
    want: /bare CR or LF in a header line/,
  },
  { name: "Host with a bad port", send: [get("Host: a.test:80x\r\n")], want: /malformed Host/ },
  {
    name: "oversized request head",
    send: [`GET / HTTP/1.1\r\nX-Pad: ${"a".repeat(17 * 1024)}\r\n`],
    want: /request head over 16384 bytes/,
  },
  { name: "SNI", send: [clientHello("tls.test")], want: "T", native: true },
  { name: "SNI in upper case", send: [clientHello("TLS.Test")], want: "T", native: true },
  {
    name: "SNI split across reads",
    send: [
      clientHello("tls.test").subarray(0, 3),
      clientHello("tls.test").subarray(3, 30),
      clientHello("tls.test").subarray(30),
    ],
    want: "T",
    native: true,
  },
  { name: "SNI to a balanced backend", send: [clientHello("x.tls.test")], want: "M" },
  {
    name: "ClientHello without SNI: the default",
    send: [clientHello(undefined)],
    want: "D",
    native: true,
  },
  {
    name: "malformed ClientHello",
    send: [clientHello("tls.test", { badExtLength: true })],
    want: /malformed ClientHello/,
  },
  {
    name: "TLS record over 16 KiB",
    send: [new Uint8Array([0x16, 3, 1, 0x40, 0x01, 1, 0, 0, 0])],
    want: /malformed TLS record/,
  },
  { name: "prefix", send: ["SSH-2.0-OpenSSH_9.6\r\n"], want: "S", native: true },
  { name: "prefix split across reads", send: ["SS", "H-2.0-x\r\n"], want: "S", native: true },
  {
    name: "neither HTTP, TLS nor the prefix: the default",
    send: ["SSX\r\n"],
    want: "D",
    native: true,
  },
];

/** Send the reads (a pause between them), collect what comes back until the close. */
async function exchange(port: number, reads: (Uint8Array | string)[]): Promise<string> {
  const s = net.connect(port, "127.0.0.1");
  let got = "";
  s.on("data", (d: Uint8Array) => got += new TextDecoder().decode(d));
  const done = new Promise<void>((r) => {
    s.on("close", () => r());
    s.on("error", () => r());
  });
  await new Promise<void>((r, j) => (s.once("connect", r), s.once("error", j)));
  for (const [i, b] of reads.entries()) {
    if (i > 0) await new Promise((r) => setTimeout(r, 30));
    s.write(typeof b === "string" ? enc.encode(b) : b);
  }
  await done;
  return got;
}

function table(): RouteFunction {
  const to = (tag: Tag) => ({ host: "127.0.0.1", port: ports[tag] });
  const multi = new Backend({
    name: "multi",
    servers: [{ address: to("M") }, { address: to("M") }],
  });
  return routeTable([
    { prefix: "SSH-", to: to("S") },
    { host: "a.test", to: to("A") },
    { host: "*.wild.test", to: to("W") },
    { sni: "tls.test", to: to("T") },
    { sni: "*.tls.test", backend: multi },
    { default: true, to: to("D") },
  ]);
}

describe("first bytes parsers", () => {
  test("CR LF and the end of a head are found where they are, and only there", () => {
    const b = (s: string) => new TextEncoder().encode(s);
    assert.equal(indexOfCrlf(b("")), -1);
    assert.equal(indexOfCrlf(b("\r")), -1);
    assert.equal(indexOfCrlf(b("a\rb\r")), -1);
    assert.equal(indexOfCrlf(b("a\r\r\n")), 2);
    assert.equal(indexOfCrlf(b("\r\nx\r\n"), 1), 3);
    assert.equal(indexOfHeadEnd(b("GET / HTTP/1.1\r\nHost: a\r\n")), -1);
    assert.equal(indexOfHeadEnd(b("GET / HTTP/1.1\r\nHost: a\r\n\r")), -1);
    assert.equal(indexOfHeadEnd(b("GET / HTTP/1.1\r\n\r\n")), 14);
    assert.equal(indexOfHeadEnd(b("a\r\r\n\r\n")), 2);
    assert.equal(indexOfHeadEnd(b("a\r\n\n\r\n\r\n")), 4);
    assert.equal(indexOfHeadEnd(b("\r\n\r\n")), 0);
  });

  test("Host and SNI parsers answer more, none, a name or bad", () => {
    assert.deepEqual(httpHost(enc.encode("GE")), { kind: "more" });
    assert.deepEqual(httpHost(enc.encode("GET / HTTP/1.1\r\nHost: a")), { kind: "more" });
    assert.deepEqual(httpHost(enc.encode("\x16\x03")), { kind: "none" });
    assert.deepEqual(httpHost(enc.encode("GET / FTP\r\n")), { kind: "none" });
    assert.deepEqual(httpHost(get("Host: [::1]:80\r\n")), { kind: "name", name: "::1" });
    assert.deepEqual(tlsSni(clientHello("a.b").subarray(0, 4)), { kind: "more" });
    assert.deepEqual(tlsSni(clientHello("a.b")), { kind: "name", name: "a.b" });
    assert.deepEqual(tlsSni(enc.encode("GET")), { kind: "none" });
    assert.equal(tlsSni(clientHello("a b")).kind, "bad");
  });
});

/** A small deterministic generator (xorshift32). */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

if (ENGINES.includes("native")) {
  describe("routing table: the C matcher against the TypeScript one", () => {
    test("every case, cut at every length and mutated, decides the same in C and in TypeScript", () => {
      const route = table();
      const engineRouter = engineRouterOf(route)!;
      const calls = callsOf(nativeEngine());
      const ts = (d: Uint8Array): string => {
        let r;
        try {
          r = route(d, { id: 1 });
        } catch {
          return "defer";
        }
        if (r === undefined || r === null) return "wait";
        const remote = (r as { remote: { host: string; port: number } }).remote;
        return remote.port === ports.M ? "defer" : `connect ${remote.host} ${remote.port} 0`;
      };
      const join = (parts: (Uint8Array | string)[]) => {
        const bufs = parts.map((p) => typeof p === "string" ? enc.encode(p) : p);
        const out = new Uint8Array(bufs.reduce((n, b) => n + b.length, 0));
        let o = 0;
        for (const b of bufs) out.set(b, o), o += b.length;
        return out;
      };
      const inputs = CASES.map((c) => join(c.send));
      inputs.push(
        get("Host: [::1]:80\r\n"),
        get("Host: [::1\r\n"),
        get("Host:\r\n"),
        get(" Host: a.test\r\n"),
        get("Ho st: a.test\r\n"),
        enc.encode("GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        enc.encode("GET / HTTP/2\r\nHost: a.test\r\n\r\n"),
        enc.encode("G".repeat(40)),
      );
      const rnd = random(23);
      let checked = 0;
      const same = (d: Uint8Array, how: string) => {
        const c = calls.routerTableCheck(engineRouter, d);
        const t = ts(d);
        checked++;
        if (c !== t) {
          assert.fail(
            `${how}: C says ${c}, TypeScript ${t} for ${
              JSON.stringify(new TextDecoder("latin1").decode(d.subarray(0, 200)))
            }`,
          );
        }
      };
      for (const [i, input] of inputs.entries()) {
        const step = input.length > 2048 ? 509 : 1;
        for (let n = 0; n <= input.length; n += step) {
          same(input.subarray(0, n), `input ${i} cut at ${n}`);
        }
        for (let k = 0; k < 300; k++) {
          const d = input.slice();
          const flips = 1 + Math.floor(rnd() * 3);
          for (let f = 0; f < flips && d.length > 0; f++) {
            const at = Math.floor(rnd() * Math.min(d.length, 600));
            d[at] = rnd() < 0.5
              ? Math.floor(rnd() * 256)
              : [0, 10, 13, 32, 58, 0xff][Math.floor(rnd() * 6)]!;
          }
          same(d, `input ${i} mutation ${k}`);
        }
      }
      assert.ok(checked > 5000, `${checked} checked`);
    });
  });
}

for (const engine of ENGINES) {
  describe(`routing table (${engine} engine)`, () => {
    async function start(route: RouteFunction) {
      if (engine === "native") nativeEngine();
      const calls = { n: 0 };
      const counted = new Proxy(route, {
        apply: (
          f,
          self,
          args: Parameters<RouteFunction>,
        ) => (calls.n++, Reflect.apply(f, self, args)),
      });
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        engine,
        route: counted,
      });
      const errors: RelaykitError[] = [];
      proxy.on("error", (e) => errors.push(e));
      return { proxy, calls, errors };
    }

    for (const c of CASES) {
      test(`${c.name}: ${typeof c.want === "string" ? `to ${c.want}` : "closed with RK_EROUTE"}`, async () => {
        const { proxy, calls, errors } = await start(table());
        try {
          const got = await exchange(proxy.port, c.send);
          if (typeof c.want === "string") {
            assert.equal(got, c.want);
            if (engine === "native" && c.native) assert.equal(calls.n, 0, "decided in C");
          } else {
            assert.equal(got, "");
            await waitFor(() => errors.length > 0, 5000, "the error");
            assert.equal(errors[0]!.code, "RK_EROUTE");
            assert.match(
              String(errors[0]!.message) + String((errors[0]!.cause as Error)?.message),
              c.want,
            );
          }
        } finally {
          await proxy.close();
        }
      });
    }

    test("no entry matches: closed with RK_EROUTE", async () => {
      const { proxy, errors } = await start(
        routeTable([{ host: "a.test", to: { host: "127.0.0.1", port: ports.A } }]),
      );
      try {
        assert.equal(await exchange(proxy.port, [get("Host: b.test\r\n")]), "");
        await waitFor(() => errors.length > 0, 5000, "the error");
        assert.equal(errors[0]!.code, "RK_EROUTE");
        assert.match(
          String(errors[0]!.message) + String((errors[0]!.cause as Error)?.message),
          /no routing table entry matches/,
        );
      } finally {
        await proxy.close();
      }
    });

    test("a default entry first decides before the client sends anything", async () => {
      const { proxy } = await start(
        routeTable([{ default: true, to: { host: "127.0.0.1", port: ports.D } }]),
      );
      try {
        assert.equal(await exchange(proxy.port, ["x"]), "D");
      } finally {
        await proxy.close();
      }
    });

    test("a refused target is an error naming it", async () => {
      const dead = await freePort();
      const { proxy, errors } = await start(
        routeTable([{ default: true, to: { host: "127.0.0.1", port: dead } }]),
      );
      try {
        assert.equal(await exchange(proxy.port, ["x"]), "");
        await waitFor(() => errors.length > 0, 5000, "the error");
        assert.match(errors[0]!.message, new RegExp(`127\\.0\\.0\\.1:${dead}`));
      } finally {
        await proxy.close();
      }
    });
  });
}

describe("routing table in a config file", () => {
  test("mistakes are reported at their place, with suggestions", () => {
    const text = `listeners:
  - name: web
    port: 8000
    routes:
      - { host: a.test, backend: ap }
      - { hots: b.test, to: { host: 127.0.0.1, port: 1 } }
      - { sni: "a b", to: { host: 127.0.0.1, port: 1 } }
      - { default: true }
backends:
  - { name: app, host: 127.0.0.1, port: 9 }
`;
    let err: unknown;
    try {
      parseConfig(text, "relaykit.yaml");
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError);
    const lines = err.issues.map(formatIssue);
    assert.ok(
      lines.some((l) =>
        /^relaykit\.yaml:5:34: listeners\[0\]\.routes\[0\]\.backend: no backend named "ap" \(did you mean "app"\?\)/
          .test(l)
      ),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) =>
        /^relaykit\.yaml:6:11: listeners\[0\]\.routes\[1\]\.hots: unknown key \(did you mean "host"\?\)/
          .test(l)
      ),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) =>
        /^relaykit\.yaml:7:16: listeners\[0\]\.routes\[2\]\.sni: "a b" is not a host name pattern/
          .test(l)
      ),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) => /^relaykit\.yaml:8:9: listeners\[0\]\.routes\[3\]: needs backend/.test(l)),
      lines.join("\n"),
    );
  });

  test("relaykit run routes by Host, SNI and prefix", { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "relaykit-table-"));
    const port = await freePort();
    const file = join(dir, "relaykit.yaml");
    writeFileSync(
      file,
      `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { prefix: "SSH-", to: { host: 127.0.0.1, port: ${ports.S} } }
      - { host: a.test, backend: app }
      - { sni: "*.tls.test", backend: pair }
backends:
  - { name: app, host: 127.0.0.1, port: ${ports.A} }
  - name: pair
    servers: [{ host: 127.0.0.1, port: ${ports.M} }, { host: 127.0.0.1, port: ${ports.M} }]
`,
    );
    const cli = startCli(["run", file]);
    try {
      await waitFor(() => /running/.test(cli.output.out + cli.output.err), 15_000, "running");
      assert.equal(await exchange(port, [get("Host: A.test:80\r\n")]), "A");
      assert.equal(await exchange(port, [clientHello("x.tls.test")]), "M");
      assert.equal(await exchange(port, ["SSH-2.0-x\r\n"]), "S");
      // (one line per listener and error code: the first one's)
      assert.equal(await exchange(port, [get("Host: a.test\r\nHost: a.test\r\n")]), "");
      assert.equal(await exchange(port, [get("Host: nowhere.test\r\n")]), "");
      await waitFor(
        () => /Host header given twice/.test(cli.output.out + cli.output.err),
        5000,
        "the error logged",
      );
      // a reload switches the table of the running listener (the engine's too)
      writeFileSync(
        file,
        `listeners:
  - name: web
    address: 127.0.0.1
    port: ${port}
    routes:
      - { host: a.test, to: { host: 127.0.0.1, port: ${ports.W} } }
`,
      );
      // process.kill: Deno's ChildProcess.kill sends one signal in a child's life
      process.kill(cli.child.pid!, "SIGHUP");
      await waitFor(() => /reload: .* applied/.test(cli.output.out), 10_000, "the reload");
      assert.equal(await exchange(port, [get("Host: a.test\r\n")]), "W");
      assert.equal(await exchange(port, ["SSH-2.0-x\r\n"]), "");
    } finally {
      await stopChild(cli.child);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
