/**
 * TLS: terminated on a listener (the runtime's TLS), and originated to a
 * target or a route's remote on both engines (the native engine bridges
 * that side to the runtime's TLS). Certificates come from openssl.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "./_test.ts";
import { type RelaykitError, TcpProxy } from "../mod.ts";
import {
  connect,
  echoServer,
  ENGINES,
  expectedHash,
  freePort,
  nativeEngine,
  receiveAll,
  sendRandom,
  waitFor,
  writeTestCertificates,
} from "./_helpers.ts";

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

describe("TLS", () => {
  test("a TLS listener terminates TLS on the runtime's TLS; data and half-close pass", async () => {
    const echo = await echoServer();
    const proxy = await TcpProxy.listen({
      listen: { host: "127.0.0.1", port: 0 },
      target: { host: "127.0.0.1", port: echo.port },
      tls: { cert: join(dir, "cert.pem"), key: join(dir, "key.pem") },
    });
    assert.equal(proxy.engine, "stream");
    assert.match(proxy.engineReason ?? "", /TLS termination/);
    // the client: socat (a TLS client outside this process), 1 MiB in
    // and back, its EOF passed on as a half-close
    const input = new Uint8Array(1024 * 1024).map((_, i) => (i * 31 + (i >> 8)) & 0xff);
    // (spawned, not spawnSync: the proxy runs in this process)
    const socat = spawn("socat", [
      "-t",
      "5",
      "-",
      `OPENSSL:127.0.0.1:${proxy.port},cafile=${join(dir, "ca.pem")},verify=1`,
    ]);
    const out: Uint8Array[] = [];
    let err = "";
    socat.stdout!.on("data", (d: Uint8Array) => out.push(d));
    socat.stderr!.on("data", (d: Uint8Array) => err += String(d));
    const code = new Promise((r) => socat.once("close", r));
    socat.stdin!.end(input);
    assert.equal(await code, 0, err);
    const r = { stdout: Buffer.concat(out) };
    assert.equal(r.stdout.length, input.length);
    assert.ok(
      new Uint8Array(r.stdout).every((v, i) => v === input[i]),
      "the bytes came back intact",
    );
    await proxy.close();
    await echo.close();
  });

  test("engine native with a TLS listener is an error", async () => {
    await assert.rejects(
      TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: 1 },
        engine: "native",
        tls: { cert, key },
      }),
      /TLS termination runs on the runtime's TLS/,
    );
  });

  for (const engine of ENGINES) {
    test(`TLS to a target, and to a route's remote (${engine})`, async () => {
      if (engine === "native") nativeEngine();
      const toTarget = await TcpProxy.listen({
        listen: { host: "127.0.0.1", port: 0 },
        target: { host: "127.0.0.1", port: tlsPort },
        targetTls: { ca },
        engine,
      });
      assert.equal(toTarget.engine, engine);
      await integrity(await connect(toTarget.port), 2 * 1024 * 1024, 5);
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
