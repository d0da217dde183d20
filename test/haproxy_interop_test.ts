/**
 * PROXY protocol against a real HAProxy, both ways, IPv4 and IPv6:
 * - HAProxy `send-proxy` / `send-proxy-v2` (unique-id, crc32c) into a
 *   relaykit listener, which must report the true client and the TLVs;
 * - relaykit `--send-proxy v1|v2` into HAProxy `accept-proxy`, which passes
 *   the header on to `relaykit echo`, which must print the true client.
 * HAProxy comes from Debian (.ci/run installs it); without it this fails.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "./_test.ts";
import { parseProxyHeader, type ProxyProtocolError, type RelaykitError, TcpProxy } from "../mod.ts";
import type { OriginalInfo } from "../src/forward/types.ts";
import { sourceText, type Vector, VECTORS } from "./fixtures/proxy_vectors.ts";
import {
  closed,
  concat,
  echoServer,
  ENGINES,
  freePort,
  nativeEngine,
  startCli,
  waitFor,
} from "./_helpers.ts";

const HAPROXY = spawnSync("sh", ["-c", "command -v haproxy || ls /usr/sbin/haproxy"], {
  encoding: "utf8",
}).stdout.trim().split("\n")[0] ?? "";

/** Connect from `host` to host:port; resolve once connected. */
function dial(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    s.once("connect", () => resolve(s)).once("error", reject);
  });
}

/** Send `text`, end, and return what comes back. */
async function roundTrip(s: net.Socket, text: string): Promise<string> {
  let got = "";
  s.on("data", (d: Uint8Array) => got += new TextDecoder().decode(d));
  s.end(text);
  await closed(s);
  return got;
}

/** Whether a TCP socket listens on host:port (from /proc/net/tcp or tcp6). */
function listening(host: string, port: number): boolean {
  const table = readFileSync(host.includes(":") ? "/proc/net/tcp6" : "/proc/net/tcp", "utf8");
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")} `;
  // columns: sl local_address rem_address st ...; st 0A is LISTEN
  return table.split("\n").some((l) => l.includes(hex) && l.trim().split(/\s+/)[3] === "0A");
}

/** Start HAProxy on `config`; resolve once every port in `ports` accepts. */
async function haproxy(
  dir: string,
  config: string,
  ports: [string, number][],
): Promise<ChildProcess> {
  const file = join(dir, `haproxy-${ports[0]![1]}.cfg`);
  writeFileSync(file, config);
  const check = spawnSync(HAPROXY, ["-c", "-f", file], { encoding: "utf8" });
  assert.equal(check.status, 0, `haproxy -c: ${check.stdout}${check.stderr}`);
  const child = spawn(HAPROXY, ["-db", "-f", file], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (d) => log += String(d));
  child.stderr!.on("data", (d) => log += String(d));
  // Wait for the listening sockets in /proc: a test connection would go
  // through HAProxy to the backend and show up in what the test checks.
  const deadline = Date.now() + 10_000;
  while (!ports.every(([host, port]) => listening(host, port))) {
    if (child.exitCode !== null) throw new Error(`haproxy exited: ${log}`);
    if (Date.now() > deadline) throw new Error(`haproxy is not listening: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

const DEFAULTS = `global
  maxconn 200
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
`;

describe("PROXY protocol interoperability with HAProxy", () => {
  let dir = "";
  const children: ChildProcess[] = [];
  before(() => {
    assert.ok(
      HAPROXY !== "",
      "haproxy is not installed: apt-get install haproxy (.ci/run does)",
    );
    dir = mkdtempSync(join(tmpdir(), "relaykit-haproxy-"));
  });
  after(() => {
    for (const c of children) c.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  for (const engine of ENGINES) {
    for (
      const [version, server] of [
        ["v1", "send-proxy"],
        ["v2", "send-proxy-v2 proxy-v2-options unique-id,crc32c"],
      ] as const
    ) {
      test(`HAProxy ${server.split(" ")[0]} into relaykit accept-proxy ${version} (${engine})`, async () => {
        if (engine === "native") nativeEngine();
        const echo = await echoServer();
        const proxy = await TcpProxy.listen({
          listen: { host: "127.0.0.1", port: 0 },
          target: { host: "127.0.0.1", port: echo.port },
          engine,
          acceptProxy: { mode: version },
        });
        const originals: OriginalInfo[] = [];
        const errors: Error[] = [];
        proxy.on("original", (o) => originals.push(o)).on("error", (e) => errors.push(e));
        const p4 = await freePort("127.0.0.1"), p6 = await freePort("::1");
        children.push(
          await haproxy(
            dir,
            `${DEFAULTS}
frontend fe
  bind 127.0.0.1:${p4}
  bind [::1]:${p6}
  unique-id-format %ci_%cp
  default_backend be
backend be
  server rk 127.0.0.1:${proxy.port} ${server}
`,
            [["127.0.0.1", p4], ["::1", p6]],
          ),
        );
        const c4 = await dial("127.0.0.1", p4);
        const port4 = c4.localPort!;
        assert.equal(await roundTrip(c4, "over IPv4"), "over IPv4");
        const c6 = await dial("::1", p6);
        const port6 = c6.localPort!;
        assert.equal(await roundTrip(c6, "over IPv6"), "over IPv6");
        assert.deepEqual(errors, []);
        assert.equal(originals.length, 2);
        assert.deepEqual(originals[0]!.source, { host: "127.0.0.1", port: port4 });
        assert.deepEqual(originals[0]!.destination, { host: "127.0.0.1", port: p4 });
        assert.deepEqual(originals[1]!.source, { host: "::1", port: port6 });
        assert.deepEqual(originals[1]!.destination, { host: "::1", port: p6 });
        if (version === "v2") {
          const text = (o: OriginalInfo) => new TextDecoder().decode(o.tlvs?.uniqueId);
          assert.equal(text(originals[0]!), `127.0.0.1_${port4}`);
          assert.equal(text(originals[1]!), `::1_${port6}`);
          // present, and verified by the parser (a mismatch is an error)
          assert.equal(typeof originals[0]!.tlvs?.crc32c, "number");
        }
        await proxy.close();
        await echo.close();
      });
    }

    for (const version of ["v1", "v2"] as const) {
      test(`relaykit send-proxy ${version} through HAProxy accept-proxy to relaykit echo (${engine})`, async () => {
        if (engine === "native") nativeEngine();
        const echo = startCli(["echo", "--listen", "127.0.0.1:0", "--accept-proxy", "detect"]);
        children.push(echo.child);
        const echoPort = Number((await echo.line).match(/echo on 127\.0\.0\.1:(\d+)/)?.[1]);
        const h4 = await freePort("127.0.0.1"), h6 = await freePort("::1");
        children.push(
          await haproxy(
            dir,
            `${DEFAULTS}
frontend fe
  bind 127.0.0.1:${h4} accept-proxy
  bind [::1]:${h6} accept-proxy
  default_backend be
backend be
  server echo 127.0.0.1:${echoPort} send-proxy-v2
`,
            [["127.0.0.1", h4], ["::1", h6]],
          ),
        );
        const sendProxy = { version: version === "v1" ? 1 : 2 } as const;
        const to4 = await TcpProxy.listen({
          listen: { host: "127.0.0.1", port: 0 },
          target: { host: "127.0.0.1", port: h4 },
          engine,
          sendProxy,
        });
        const to6 = await TcpProxy.listen({
          listen: { host: "::1", port: 0 },
          target: { host: "::1", port: h6 },
          engine,
          sendProxy,
        });
        const c4 = await dial("127.0.0.1", to4.port);
        const port4 = c4.localPort!;
        assert.equal(await roundTrip(c4, "ping4"), "ping4");
        const c6 = await dial("::1", to6.port);
        const port6 = c6.localPort!;
        assert.equal(await roundTrip(c6, "ping6"), "ping6");
        await waitFor(() => /\[::1\]:\d+ ->/.test(echo.output.out), 5000, "the echo's lines");
        // the echo saw the client of relaykit, not HAProxy's address
        assert.match(
          echo.output.out,
          new RegExp(`PROXY v2 stream 127\\.0\\.0\\.1:${port4} -> 127\\.0\\.0\\.1:${to4.port}`),
        );
        assert.match(
          echo.output.out,
          new RegExp(`PROXY v2 stream \\[::1\\]:${port6} -> \\[::1\\]:${to6.port}`),
        );
        await to4.close();
        await to6.close();
      });
    }
  }
});

/** What a listener did with a vector followed by "ping". */
type Seen = { kind: "accept"; source: string | undefined } | { kind: "refuse" } | {
  kind: "wait";
};

/**
 * Send `bytes` and "ping" in one write to 127.0.0.1:`port`, whose listener
 * forwards to the reporter with a v2 header. Accepted: the reporter answers
 * with the client that header names ("real" when it is this socket).
 * Refused: closed without an answer. Waiting: nothing within `waitMs`.
 */
function probe(port: number, bytes: Uint8Array, waitMs: number): Promise<Seen> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    let got = "", self = "";
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ kind: "wait" });
    }, waitMs);
    const done = () => {
      clearTimeout(timer);
      if (got === "") return resolve({ kind: "refuse" });
      const { source } = JSON.parse(got) as { source?: string };
      resolve({
        kind: "accept",
        source: source === self ? undefined : source,
      });
    };
    s.on("data", (d: Uint8Array) => got += new TextDecoder().decode(d));
    s.once("connect", () => {
      self = `127.0.0.1:${s.localPort}`;
      s.write(concat([bytes, new TextEncoder().encode("ping")]));
    });
    s.once("close", done).on("error", () => {});
  });
}

/** A server that reads a v2 header and "ping", answers with the header's client, and closes. */
async function reporter(): Promise<{ port: number; close(): void }> {
  const srv = net.createServer((c) => {
    let buf: Uint8Array = new Uint8Array(0);
    c.on("data", (d: Uint8Array) => {
      buf = concat([buf, d]);
      const r = parseProxyHeader(buf, "v2");
      if (r.kind !== "header" || buf.length < r.length + 4) return;
      const source = sourceText(r.header) ?? (r.header.command === "local" ? "local" : "none");
      c.end(JSON.stringify({ source }));
    }).on("error", () => {});
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close() };
}

/** "accept" / "refuse" / "wait" and the client, as a line a failure can list. */
const line = (v: Vector, who: string, seen: Seen) =>
  `${v.name}: ${who} ${seen.kind}${seen.kind === "accept" ? ` ${seen.source ?? "real"}` : ""}`;

describe("PROXY protocol vectors: relaykit and HAProxy accept-proxy, live", () => {
  let dir = "";
  let rep: Awaited<ReturnType<typeof reporter>>;
  const children: ChildProcess[] = [];
  before(async () => {
    assert.ok(HAPROXY !== "", "haproxy is not installed: apt-get install haproxy (.ci/run does)");
    dir = mkdtempSync(join(tmpdir(), "relaykit-haproxy-"));
    rep = await reporter();
  });
  after(() => {
    for (const c of children) c.kill("SIGKILL");
    rep?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("HAProxy 2.6 decides each vector as test/fixtures/proxy_vectors.ts says", {
    timeout: 60_000,
  }, async () => {
    const port = await freePort("127.0.0.1");
    children.push(
      await haproxy(
        dir,
        `${DEFAULTS}
frontend fe
  bind 127.0.0.1:${port} accept-proxy
  default_backend be
backend be
  server rep 127.0.0.1:${rep.port} send-proxy-v2
`,
        [["127.0.0.1", port]],
      ),
    );
    const wrong: string[] = [];
    for (const v of VECTORS) {
      const seen = await probe(port, v.bytes, 2000);
      // where both accept, both name the same client
      const source = v.relaykit === "accept" ? v.source : seen.kind === "accept" && seen.source;
      if (seen.kind !== v.haproxy || (seen.kind === "accept" && seen.source !== source)) {
        wrong.push(line(v, "HAProxy", seen));
      }
    }
    assert.deepEqual(wrong, [], "HAProxy does not decide as the table says");
  });

  for (const engine of ENGINES) {
    test(`relaykit decides each vector as test/fixtures/proxy_vectors.ts says (${engine})`, {
      timeout: 60_000,
    }, async () => {
      if (engine === "native") nativeEngine();
      const errors: Error[] = [];
      const proxies = new Map<string, TcpProxy>();
      for (const mode of ["v1", "v2"] as const) {
        const p = await TcpProxy.listen({
          listen: { host: "127.0.0.1", port: 0 },
          target: { host: "127.0.0.1", port: rep.port },
          engine,
          acceptProxy: { mode, timeout: 5000 },
          sendProxy: { version: 2 },
        });
        p.on("error", (e) => errors.push(e));
        proxies.set(mode, p);
      }
      const wrong: string[] = [];
      for (const v of VECTORS) {
        errors.length = 0;
        const seen = await probe(
          proxies.get(v.mode)!.port,
          v.bytes,
          v.relaykit === "wait" ? 700 : 3000,
        );
        if (seen.kind !== v.relaykit || (seen.kind === "accept" && seen.source !== v.source)) {
          wrong.push(line(v, "relaykit", seen));
        }
        // a header still incomplete when the client goes: closed, with the error
        if (seen.kind === "refuse" || seen.kind === "wait") {
          await waitFor(() => errors.length > 0, 2000, `the error event of "${v.name}"`);
          const e = errors[0] as RelaykitError;
          const cause = (e.cause as ProxyProtocolError | undefined)?.code;
          if (e.code !== "RK_EPROXY" || cause !== (seen.kind === "wait" ? undefined : v.code)) {
            wrong.push(`${v.name}: relaykit refused with ${e.code} (${cause}: ${e.message})`);
          }
        }
      }
      for (const p of proxies.values()) await p.close();
      assert.deepEqual(wrong, [], "relaykit does not decide as the table says");
    });
  }
});
