/**
 * TLS: terminated on a listener (in the C library with OpenSSL on the
 * native engine, the runtime's TLS on the stream engine), and originated
 * to a target or a route's remote on both engines (in the library too on
 * the native engine; without OpenSSL it bridges that side to the runtime's
 * TLS). Certificates come from openssl.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import type net from "node:net";
import process from "node:process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "./_test.ts";
import { connect as tlsConnect } from "node:tls";
import {
  type ConnectionEnd,
  httpConnectRouter,
  type RelaykitError,
  socksRouter,
  TcpProxy,
} from "../mod.ts";
import {
  connect,
  curl,
  echoServer,
  ENGINES,
  expectedHash,
  fdCount,
  freePort,
  nativeEngine,
  receiveAll,
  runtimeCommand,
  sendRandom,
  sleep,
  waitFor,
  writeTestCertificates,
} from "./_helpers.ts";

const FIXTURE = fileURLToPath(new URL("./fixtures/tls_listener.ts", import.meta.url).href);
const dir = mkdtempSync(join(tmpdir(), "relaykit-tls-"));
let cert = "", key = "", ca = "";
let tlsEcho: ChildProcess;
let tlsPort = 0;

before(async () => {
  writeTestCertificates(dir);
  cert = readFileSync(join(dir, "cert.pem"), "utf8");
  key = readFileSync(join(dir, "key.pem"), "utf8");
  ca = readFileSync(join(dir, "ca.pem"), "utf8");
  // a TLS echo server outside this process: socat with cat behind it
  tlsPort = await freePort();
  tlsEcho = spawn("socat", [
    `OPENSSL-LISTEN:${tlsPort},bind=127.0.0.1,reuseaddr,fork,verify=0,cert=${
      join(dir, "cert.pem")
    },key=${join(dir, "key.pem")}`,
    "EXEC:cat",
  ], { stdio: "ignore" });
  await waitFor(() => listening(tlsPort), 10_000, "socat");
});
after(() => {
  tlsEcho.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  return readFileSync("/proc/net/tcp", "utf8").split("\n").some((l) =>
    l.includes(hex) && l.trim().split(/\s+/)[3] === "0A"
  );
}

/** Send `n` random bytes through `s`, expect them back. */
async function integrity(s: net.Socket, n: number, seed: number): Promise<void> {
  const got = receiveAll(s);
  const sent = await sendRandom(s, n, seed);
  assert.equal(sent, expectedHash(n, seed));
  assert.deepEqual(await got, { bytes: n, sha256: sent });
}

/** Run socat as a TLS client (outside this process) with `input` on its stdin. */
async function socatTls(port: number, input: Uint8Array): Promise<Buffer> {
  const socat = spawn("socat", [
    "-t",
    "5",
    "-",
    `OPENSSL:127.0.0.1:${port},cafile=${join(dir, "ca.pem")},verify=1`,
  ]);
  const out: Uint8Array[] = [];
  let err = "";
  socat.stdout!.on("data", (d: Uint8Array) => out.push(d));
  socat.stderr!.on("data", (d: Uint8Array) => err += String(d));
  const code = new Promise((r) => socat.once("close", r));
  socat.stdin!.end(input);
  assert.equal(await code, 0, err);
  return Buffer.concat(out);
}

/**
 * A server that answers only after the client's EOF: the byte count and
 * SHA-256 of everything it got, then its own EOF (a half-close test).
 */
async function replyAtEnd(): Promise<{ port: number; close: () => void }> {
  const srv = createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash("sha256");
    let n = 0;
    s.on("data", (d: Uint8Array) => {
      h.update(d);
      n += d.length;
    });
    s.on("end", () => s.end(`${n} ${h.digest("hex")}\n`));
    s.on("error", () => {});
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { port: (srv.address() as AddressInfo).port, close: () => srv.close() };
}

describe("TLS", () => {
  for (const engine of ENGINES) {
    test(`a TLS listener terminates TLS (${engine}); data and half-close pass`, async () => {
      const before = engine === "native" ? nativeEngine().tlsStats() : undefined;
      const echo = await echoServer();
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: echo.port },
        tls: { cert: join(dir, "cert.pem"), key: join(dir, "key.pem") },
        engine,
      });
      assert.equal(proxy.engine, engine);
      if (engine === "stream") assert.match(proxy.engineReason ?? "", /stream engine was asked/);
      else assert.equal(proxy.engineReason, undefined);
      // the client: socat (a TLS client outside this process), 1 MiB in
      // and back, its EOF passed on as a half-close
      const input = new Uint8Array(1024 * 1024).map((_, i) => (i * 31 + (i >> 8)) & 0xff);
      const out = await socatTls(proxy.port, input);
      assert.equal(out.length, input.length);
      assert.ok(new Uint8Array(out).every((v, i) => v === input[i]), "the bytes came back intact");
      if (before !== undefined) {
        // the C library did the TLS: its handshake and byte counters moved
        const now = nativeEngine().tlsStats();
        assert.ok(now.loaded);
        assert.ok(now.handshakes > before.handshakes, "a handshake in the library");
        assert.ok(now.bytesIn - before.bytesIn >= input.length, "plain bytes read in C");
        assert.ok(now.bytesOut - before.bytesOut >= input.length, "plain bytes written in C");
      }
      await proxy.close();
      await echo.close();
    });

    test(`a data hook sees the plain bytes of a TLS listener's connections (${engine})`, async () => {
      const echo = await echoServer();
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: echo.port },
        tls: { cert, key },
        rewriteResponse: (chunk) => chunk.map((b) => b >= 0x61 && b <= 0x7a ? b - 0x20 : b),
        engine,
      });
      assert.equal(proxy.engine, engine);
      const input = new TextEncoder().encode("hello, tls\n".repeat(5000));
      const out = new Uint8Array(await socatTls(proxy.port, input));
      assert.equal(new TextDecoder().decode(out), "HELLO, TLS\n".repeat(5000));
      await proxy.close();
      await echo.close();
    });

    test(`a TLS listener routes on the plain first bytes, to a file, a target or a TLS target (${engine})`, async () => {
      const echo = await echoServer();
      const before = engine === "native" ? nativeEngine().tlsStats() : undefined;
      const file = join(dir, "reply.bin");
      const body = new Uint8Array(700_000).map((_, i) => (i * 7) & 0xff);
      writeFileSync(file, body);
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        tls: { cert, key },
        route: (data) => {
          if (data.length === 0) return undefined; // the first bytes, please
          const first = String.fromCharCode(data[0]!);
          if (first === "F") return { file, reply: "FILE\n" };
          if (first === "T") return { remote: { host: "127.0.0.1", port: tlsPort }, tls: { ca } };
          return { remote: { host: "127.0.0.1", port: echo.port } };
        },
        engine,
      });
      assert.equal(proxy.engine, engine);
      const errors: RelaykitError[] = [];
      proxy.on("error", (e) => errors.push(e));
      const plain = new Uint8Array(400_000).map((_, i) => 0x41 + (i % 26)); // "ABC...": echo
      assert.deepEqual(new Uint8Array(await socatTls(proxy.port, plain)), plain);
      const viaTls = new Uint8Array(400_000).map((_, i) => 0x54 + (i % 3)); // "T..": TLS echo
      assert.deepEqual(new Uint8Array(await socatTls(proxy.port, viaTls)), viaTls);
      const got = new Uint8Array(await socatTls(proxy.port, new TextEncoder().encode("F\n")));
      assert.equal(new TextDecoder().decode(got.subarray(0, 5)), "FILE\n");
      assert.deepEqual(got.subarray(5), body);
      assert.deepEqual(errors, []);
      if (before !== undefined) {
        const now = nativeEngine().tlsStats(); // 3 clients and 1 target in C
        assert.ok(now.handshakes - before.handshakes >= 4, "handshakes in the library");
      }
      await proxy.close();
      await echo.close();
    });

    test(`TLS termination passes each half-close on and moves 24 MiB intact (${engine})`, async () => {
      const server = await replyAtEnd();
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: server.port },
        tls: { cert, key },
        engine,
      });
      assert.equal(proxy.engine, engine);
      const closes: ConnectionEnd[] = [];
      proxy.on("close", (c) => closes.push(c));
      // the client's close_notify reaches the server as EOF; the answer
      // the server sends after it, and its EOF, come back through TLS
      const input = new Uint8Array(24 * 1024 * 1024);
      for (let i = 0; i < input.length; i += 65536) {
        input.set(randomBytes(Math.min(65536, input.length - i)), i);
      }
      const want = `${input.length} ${createHash("sha256").update(input).digest("hex")}\n`;
      assert.equal(String(await socatTls(proxy.port, input)), want);
      await waitFor(() => closes.length === 1, 5000, "the close event");
      assert.equal(closes[0]!.error, undefined);
      assert.equal(closes[0]!.aToB.written, input.length);
      await proxy.close();
      server.close();
    });

    test(`a failed TLS handshake closes that one connection with a named error, before any connect (${engine})`, async () => {
      // an echo server that counts its clients
      let clients = 0;
      const echo = createServer((c) => {
        clients++;
        c.on("error", () => {});
        c.pipe(c);
      });
      await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: (echo.address() as AddressInfo).port },
        tls: { cert, key },
        engine,
      });
      const errors: RelaykitError[] = [];
      proxy.on("error", (e) => errors.push(e));
      // a good client keeps going while a bad one fails next to it
      const good = socatTls(proxy.port, new Uint8Array(256 * 1024).fill(7));
      const s = await connect(proxy.port);
      s.on("error", () => {});
      s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"); // not a ClientHello
      // closed: a reset (native), or an alert and EOF (the runtime's TLS)
      await new Promise((r) => {
        s.once("end", r);
        s.once("close", r);
        s.resume(); // (its alert is read and dropped)
      });
      s.destroy();
      assert.equal((await good).length, 256 * 1024);
      await waitFor(() => errors.length >= 1, 5000, "the error");
      assert.equal(errors.length, 1);
      assert.equal(errors[0]!.code, "RK_ETLS");
      assert.match(errors[0]!.message, /TLS handshake or record failed/);
      // the native engine knows the connection; the stream engine's
      // runtime never handed it over
      if (engine === "native") assert.equal(typeof errors[0]!.connectionId, "number");
      assert.equal(clients, 1, "the target saw only the client that spoke TLS");
      await proxy.close();
      echo.close();
    });
  }

  // (the native engine's own: where it exists)
  if (ENGINES.includes("native")) {
    test("native TLS frees every TLS side and fd after good, garbage and refused peers", async () => {
      const tls = () => nativeEngine().tlsStats();
      const echo = await echoServer();
      const terminating = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: echo.port },
        tls: { cert, key },
        engine: "native",
      });
      const refusing = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: tlsPort },
        targetTls: true, // the test certificate is not among the system's CAs
        engine: "native",
      });
      const errors: RelaykitError[] = [];
      terminating.on("error", (e) => errors.push(e));
      refusing.on("error", (e) => errors.push(e));
      await socatTls(terminating.port, new Uint8Array(1000)); // warm-up
      await waitFor(() => tls().open === 0, 5000, "no TLS side open after the warm-up");
      await sleep(200);
      const baseline = fdCount();
      const closed = (s: net.Socket) =>
        new Promise((r) => {
          s.on("error", () => {});
          s.once("close", r);
          s.resume();
        });
      await Promise.all([
        ...Array.from(
          { length: 8 },
          (_, i) => socatTls(terminating.port, new Uint8Array(i * 9999)),
        ),
        ...Array.from({ length: 20 }, async () => { // garbage instead of a ClientHello
          const s = await connect(terminating.port);
          s.end("not TLS at all\r\n");
          await closed(s);
        }),
        ...Array.from({ length: 20 }, async () => { // gone before its handshake
          const s = await connect(terminating.port);
          s.destroy();
        }),
        ...Array.from({ length: 10 }, async () => { // the target's certificate is refused
          const s = await connect(refusing.port);
          s.end("x");
          await closed(s);
        }),
      ]);
      await waitFor(() => tls().open === 0, 5000, "every TLS side freed");
      let now = fdCount();
      await waitFor(() => (now = fdCount()) <= baseline, 5000, `fd count ${baseline} (now ${now})`);
      await waitFor(() => errors.length >= 30, 5000, "the errors");
      assert.ok(
        errors.every((e) => ["RK_ETLS", "CERT_UNTRUSTED"].includes(e.code)),
        "named errors",
      );
      await terminating.close();
      await refusing.close();
      await echo.close();
    });
  }

  test("without OpenSSL, TLS termination and TLS to a target use the runtime's TLS", async () => {
    const echo = await echoServer();
    const child = spawn(
      runtimeCommand(FIXTURE)[0]!,
      runtimeCommand(FIXTURE, [
        join(dir, "cert.pem"),
        join(dir, "key.pem"),
        String(echo.port),
        String(tlsPort),
        join(dir, "ca.pem"),
      ]).slice(1),
      {
        env: { ...process.env, RELAYKIT_LIBSSL: "/nonexistent/libssl.so.3" },
        stdio: ["pipe", "pipe", "inherit"],
      },
    );
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout!.on("data", (d: Uint8Array) => {
          out += String(d);
          if (out.includes("\n")) resolve(out.slice(0, out.indexOf("\n")));
        });
        child.once("exit", (code) => reject(new Error(`the proxy exited (${code})`)));
      });
      const info = JSON.parse(line) as {
        engine: string;
        reason?: string;
        port: number;
        toTls: number;
        toTlsEngine: string;
      };
      if (ENGINES.includes("native")) {
        assert.equal(info.engine, "stream");
        assert.match(
          info.reason ?? "",
          /^native TLS needs libssl\.so\.3: \/nonexistent\/libssl\.so\.3: /,
        );
      }
      const input = new Uint8Array(300_000).map((_, i) => i & 0xff);
      assert.deepEqual(new Uint8Array(await socatTls(info.port, input)), input);
      // TLS to a target: the native engine's client side, TLS on the bridge
      assert.equal(info.toTlsEngine, ENGINES.includes("native") ? "native" : "stream");
      await integrity(await connect(info.toTls), 300_000, 9);
    } finally {
      child.stdin!.end();
      await new Promise((r) => child.exitCode === null ? child.once("exit", r) : r(0));
      await echo.close();
    }
  });

  test("engine native with a TLS listener after an accepted PROXY header is an error", async () => {
    nativeEngine();
    await assert.rejects(
      TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: 1 },
        acceptProxy: { mode: "v2" },
        engine: "native",
        tls: { cert, key },
      }),
      /TLS termination after an accepted PROXY header runs on the runtime's TLS: use engine "auto" or "stream"/,
    );
  });

  for (const engine of ENGINES) {
    test(`data hooks on both directions between a TLS client and a TLS target move 6 MiB in batches, and the half-close (${engine})`, async () => {
      if (engine === "native") nativeEngine();
      // a -> b: letters change case; b -> a: back again (the target echoes)
      const flip = (chunk: Uint8Array) =>
        chunk.map((b) => (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ? b ^ 0x20 : b);
      const seen = { aToB: 0, bToA: 0, upper: 0 };
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: tlsPort },
        targetTls: { ca },
        tls: { cert, key },
        rewriteRequest: (chunk) => {
          seen.aToB += chunk.length;
          return flip(chunk);
        },
        rewriteResponse: (chunk) => {
          seen.bToA += chunk.length;
          // what the target sent back is what the request hook made of it
          seen.upper += chunk.filter((b) => b >= 0x41 && b <= 0x5a).length;
          return flip(chunk);
        },
        engine,
      });
      assert.equal(proxy.engine, engine);
      const errors: RelaykitError[] = [];
      proxy.on("error", (e) => errors.push(e));
      const closes: ConnectionEnd[] = [];
      proxy.on("close", (c) => closes.push(c));
      const input = new Uint8Array(6 * 1024 * 1024).map((_, i) =>
        0x61 + ((i * 7 + (i >> 10)) % 26)
      );
      // socat ends after its EOF came back: the client's close_notify went
      // through both hooks' directions to the target and the target's back
      const out = new Uint8Array(await socatTls(proxy.port, input));
      assert.equal(out.length, input.length);
      assert.ok(out.every((v, i) => v === input[i]), "the bytes came back as sent");
      assert.equal(seen.aToB, input.length);
      assert.equal(seen.bToA, input.length);
      assert.equal(seen.upper, input.length, "the target got what the request hook made");
      await waitFor(() => closes.length === 1, 5000, "the close event");
      assert.equal(closes[0]!.error, undefined);
      assert.equal(closes[0]!.aToB.written, input.length);
      assert.equal(closes[0]!.bToA.written, input.length);
      assert.deepEqual(errors, []);
      await proxy.close();
    });

    test(`SOCKS5 and HTTP CONNECT inside a TLS listener (${engine}: the routers decide inside the TLS)`, async () => {
      if (engine === "native") nativeEngine();
      const echo = await echoServer();
      const rules = { allow: [{ cidr: "127.0.0.0/8", port: echo.port }] };
      // counts the calls of the route function: none when the library's
      // router decides
      const calls = { n: 0 };
      const counted = (r: ReturnType<typeof socksRouter>) =>
        new Proxy(r, {
          apply: (f, self, args: Parameters<typeof r>) => (calls.n++, Reflect.apply(f, self, args)),
        });
      const socks = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        tls: { cert, key },
        route: counted(socksRouter(rules)),
        engine,
      });
      const http = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        tls: { cert, key },
        route: counted(httpConnectRouter(rules)),
        engine,
      });
      assert.equal(socks.engine, engine);
      assert.equal(http.engine, engine);
      try {
        // SOCKS5 greeting and request in one write right after the
        // handshake (they may arrive with its last flight), then data
        const s = tlsConnect({ host: "127.0.0.1", port: socks.port, ca, servername: "localhost" });
        s.on("error", () => {});
        await new Promise<void>((r, j) => {
          s.once("secureConnect", r);
          s.once("error", j);
        });
        const got: Uint8Array[] = [];
        let n = 0;
        s.on("data", (d: Uint8Array) => {
          got.push(d);
          n += d.length;
        });
        const p = echo.port;
        s.write(new Uint8Array([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, p >> 8, p & 0xff]));
        await waitFor(() => n >= 12, 5000, "the SOCKS5 replies");
        s.write("ping through socks\n");
        await waitFor(() => n >= 12 + 19, 5000, "the echo");
        const all = Buffer.concat(got);
        assert.deepEqual([...all.subarray(0, 2)], [5, 0]);
        assert.deepEqual([...all.subarray(2, 4)], [5, 0], "SOCKS5 success");
        assert.equal(String(all.subarray(12)), "ping through socks\n");
        s.destroy();
        // HTTP CONNECT through an HTTPS proxy (curl's TLS to the proxy)
        const r = await curl([
          "-p",
          "-x",
          `https://127.0.0.1:${http.port}`,
          "--proxy-cacert",
          join(dir, "ca.pem"),
          "-o",
          "/dev/null",
          "-w",
          "%{http_connect}",
          `telnet://127.0.0.1:${echo.port + 1}`,
        ]);
        assert.equal(r.body, "403", `a port no rule allows: ${r.stderr}`);
        if (engine === "native") assert.equal(calls.n, 0, "decided in the library");
        else assert.ok(calls.n >= 2, String(calls.n));
      } finally {
        await socks.close();
        await http.close();
        await echo.close();
      }
    });

    test(`a PROXY header sent on from a TLS listener (${engine})`, async () => {
      if (engine === "native") nativeEngine();
      const server = createServer({ allowHalfOpen: true }, (c) => {
        const parts: Uint8Array[] = [];
        c.on("data", (d: Uint8Array) => parts.push(d));
        c.on("end", () => c.end(Buffer.concat(parts)));
        c.on("error", () => {});
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: (server.address() as AddressInfo).port },
        sendProxy: { version: 1 },
        tls: { cert, key },
        engine,
      });
      assert.equal(proxy.engine, engine);
      if (engine === "native") assert.equal(proxy.engineReason, undefined);
      const out = String(await socatTls(proxy.port, new TextEncoder().encode("hello\n")));
      assert.match(
        out,
        new RegExp(`^PROXY TCP4 127\\.0\\.0\\.1 127\\.0\\.0\\.1 \\d+ ${proxy.port}\r\nhello\n$`),
      );
      await proxy.close();
      server.close();
    });
  }

  test("a native TLS listener takes no PROXY header later either (reconfigure)", async () => {
    nativeEngine();
    const proxy = await TcpProxy.listen({
      listen: { host: "127.0.0.1", port: 0 },
      target: { host: "127.0.0.1", port: 1 },
      sendProxy: { version: 1 },
      engine: "native",
      tls: { cert, key },
    });
    try {
      assert.equal(proxy.engine, "native");
      assert.throws(
        () =>
          proxy.reconfigure({
            target: { host: "127.0.0.1", port: 1 },
            acceptProxy: { mode: "v1" },
          }),
        /TLS termination after an accepted PROXY header runs on the runtime's TLS/,
      );
    } finally {
      await proxy.close();
    }
  });

  for (const engine of ENGINES) {
    test(`TLS to a target, and to a route's remote (${engine})`, async () => {
      if (engine === "native") nativeEngine();
      const before = engine === "native" ? nativeEngine().tlsStats() : undefined;
      const toTarget = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: tlsPort },
        targetTls: { ca },
        engine,
      });
      assert.equal(toTarget.engine, engine);
      await integrity(await connect(toTarget.port), 2 * 1024 * 1024, 5);
      if (before !== undefined) {
        // TLS in the library (not the bridge): its counters moved
        const now = nativeEngine().tlsStats();
        assert.ok(now.handshakes > before.handshakes, "a handshake in the library");
        assert.ok(now.bytesOut - before.bytesOut >= 2 * 1024 * 1024, "plain bytes written in C");
      }
      const routed = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        route: () => ({ remote: { host: "127.0.0.1", port: tlsPort }, tls: { ca } }),
        engine,
      });
      await integrity(await connect(routed.port), 512 * 1024, 6);
      await toTarget.close();
      await routed.close();
    });

    test(`an untrusted target certificate is an error for that connection (${engine})`, async () => {
      if (engine === "native") nativeEngine();
      const proxy = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: tlsPort },
        targetTls: true, // the self-signed certificate is not trusted
        engine,
      });
      const errors: RelaykitError[] = [];
      proxy.on("error", (e) => errors.push(e));
      const s = await connect(proxy.port);
      s.on("error", () => {});
      s.end("x");
      await new Promise((r) => s.once("close", r));
      await waitFor(() => errors.length >= 1, 5000, "the error");
      assert.match(errors[0]!.message, /Cannot connect to "127\.0\.0\.1:\d+"/);
      assert.equal(errors[0]!.code, "CERT_UNTRUSTED");
      assert.equal(typeof errors[0]!.connectionId, "number");
      await proxy.close();
    });
  }
});
