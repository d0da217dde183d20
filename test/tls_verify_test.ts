/**
 * Certificate verification: the same certificate verifies or fails the
 * same way on Deno, Bun and Node, through a TcpProxy's TLS target (both
 * engines) and through a tunnel client's TLS link, and a failure says why
 * in the same words. Certificates come from openssl, made here.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import net from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "./_test.ts";
import {
  type RelaykitError,
  TcpProxy,
  TunnelClient,
  type TunnelClientEvents,
  TunnelServer,
} from "../mod.ts";
import { runtime } from "../src/runtime/detect.ts";
import { certificateReason, faultOf } from "../src/runtime/tls_verify.ts";
import {
  connect,
  echoServer,
  ENGINES,
  nativeEngine,
  server as tcpServer,
  startCli,
  stopChild,
  waitFor,
} from "./_helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "relaykit-tls-verify-"));

function ssl(args: string[]): void {
  const r = spawnSync("openssl", args, { encoding: "utf8", cwd: dir });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
const LEAF_EXT = "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";

/** A CA (self-signed, CA:TRUE) as NAME.pem and NAME.key. */
function makeCa(name: string, cn: string): void {
  ssl(["req", "-x509", ...EC, "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2"]
    .concat(["-subj", `/CN=${cn}`]));
}

/** A server certificate NAME.pem signed by CA, for the names in `ext`. */
function makeLeaf(name: string, ca: string, cn: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  ssl(["req", "-new", "-key", "leaf.key", "-out", `${name}.csr`, "-subj", `/CN=${cn}`]);
  ssl(["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`]
    .concat(["-CAcreateserial", "-out", `${name}.pem`, "-days", "2", "-extfile", `${name}.ext`]));
}

/** A server certificate signed by the CA, valid only between two dates (openssl ca). */
function makeDated(name: string, start: string, end: string): void {
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    [
      "[ca]",
      "default_ca = d",
      "[d]",
      "database = index.txt",
      "new_certs_dir = .",
      "serial = serial",
      "default_md = sha256",
      "policy = p",
      "x509_extensions = ext",
      "unique_subject = no",
      "[p]",
      "commonName = supplied",
      "[ext]",
      LEAF_EXT,
    ].join("\n"),
  );
  ssl(["req", "-new", "-key", "leaf.key", "-out", `${name}.csr`, "-subj", "/CN=localhost"]);
  ssl(["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-notext"]
    .concat(["-in", `${name}.csr`, "-out", `${name}.pem`, "-startdate", start, "-enddate", end]));
}

/** A self-signed certificate for localhost (OpenSSL 3 marks it CA:TRUE unless told). */
function makeSelf(name: string, extra: string[]): void {
  ssl(
    ["req", "-x509", "-key", "leaf.key", "-out", `${name}.pem`, "-days", "2"]
      .concat(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
      .concat(extra),
  );
}

const pem = (name: string) => readFileSync(join(dir, `${name}.pem`), "utf8");

interface Case {
  title: string;
  /** The server's certificate (its key is leaf.key). */
  cert: string;
  /** The CA bundle the client is given. */
  ca: string;
  /** The host connected to. @default "localhost" */
  host?: string;
  /** The server name sent and verified (default: the host connected to). */
  servername?: string;
  /** Why it fails, or undefined: it verifies. */
  reason: string | undefined;
  /** Whether the runtime itself refuses it (so its error is the cause) on every runtime. */
  runtimeRefuses?: boolean;
}

const CASES: Case[] = [
  { title: "a leaf signed by the CA verifies", cert: "good", ca: "ca", reason: undefined },
  {
    title: "a self-signed certificate marked CA:FALSE, given as its own CA, verifies",
    cert: "selfleaf",
    ca: "selfleaf",
    reason: undefined,
  },
  {
    title: "a self-signed CA:TRUE certificate given as its own CA is refused",
    cert: "self",
    ca: "self",
    reason: "self-signed certificate used as its own CA: CN=localhost is marked CA:TRUE, " +
      "so it cannot also be the server's certificate (make it with basicConstraints=CA:FALSE, " +
      "or sign a server certificate with it)",
  },
  {
    title: "a self-signed certificate that is not a given CA is not trusted",
    cert: "self",
    ca: "ca",
    reason: "self-signed certificate not trusted: CN=localhost is not among the CAs given",
    runtimeRefuses: true,
  },
  {
    title: "a leaf of another CA: unknown CA",
    cert: "unknown",
    ca: "ca",
    reason:
      "unknown CA: CN=localhost is issued by CN=relaykit other CA, which is not among the CAs given",
    runtimeRefuses: true,
  },
  {
    title: "a certificate for another name: name mismatch",
    cert: "atest",
    ca: "ca",
    reason: "name mismatch: certificate is for a.test, connected to localhost",
  },
  {
    title: "a leaf for 127.0.0.1 verifies when connected to by address",
    cert: "good",
    ca: "ca",
    host: "127.0.0.1",
    reason: undefined,
  },
  {
    title: "a certificate without the address connected to: name mismatch",
    cert: "atest",
    ca: "ca",
    host: "127.0.0.1",
    reason: "name mismatch: certificate is for a.test, connected to 127.0.0.1",
  },
  {
    title: "connected to by address, a servername is the name verified",
    cert: "atest",
    ca: "ca",
    host: "127.0.0.1",
    servername: "a.test",
    reason: undefined,
  },
  {
    title: "a servername the certificate is not for: name mismatch",
    cert: "good",
    ca: "ca",
    host: "127.0.0.1",
    servername: "a.test",
    reason: "name mismatch: certificate is for localhost, 127.0.0.1, connected to a.test",
  },
  {
    title: "an expired certificate: the date it expired",
    cert: "expired",
    ca: "ca",
    reason: "expired on 2020-01-02T00:00:00Z",
    runtimeRefuses: true,
  },
  {
    title: "a certificate not valid yet: the date it starts",
    cert: "future",
    ca: "ca",
    reason: "not valid before 2099-01-01T00:00:00Z",
    runtimeRefuses: true,
  },
];

before(() => {
  makeCa("ca", "relaykit test CA");
  makeCa("other", "relaykit other CA");
  ssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    .concat(["-out", "leaf.key"]));
  makeLeaf("good", "ca", "localhost", LEAF_EXT);
  makeLeaf("unknown", "other", "localhost", LEAF_EXT);
  makeLeaf("atest", "ca", "a.test", "basicConstraints=CA:FALSE\nsubjectAltName=DNS:a.test\n");
  makeSelf("self", []);
  makeSelf("selfleaf", ["-addext", "basicConstraints=critical,CA:FALSE"]);
  makeDated("expired", "20200101000000Z", "20200102000000Z");
  makeDated("future", "20990101000000Z", "20990102000000Z");
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** The message of a connect to HOST:PORT that fails for `reason`. */
function failure(port: number, reason: string, host = "localhost"): string {
  return `Cannot connect to "${host}:${port}": the TLS peer's certificate does not verify: ${reason}`;
}

/** A TLS server with `cert` in front of an echo server. */
async function tlsServer(cert: string) {
  const echo = await echoServer();
  const proxy = await TcpProxy.listen({
    listen: { host: "127.0.0.1", port: 0 },
    target: { host: "127.0.0.1", port: echo.port },
    tls: { cert: pem(cert), key: readFileSync(join(dir, "leaf.key"), "utf8") },
  });
  return {
    port: proxy.port,
    close: async () => {
      await proxy.close();
      await echo.close();
    },
  };
}

/** Send "ping" through a local port; resolves with what came back before the end. */
async function pingThrough(port: number): Promise<string> {
  const s = await connect(port);
  s.on("error", () => {});
  let got = "", ended = false;
  s.on("data", (d: Uint8Array) => got += new TextDecoder().decode(d));
  s.on("end", () => ended = true);
  s.on("close", () => ended = true);
  s.write("ping");
  await waitFor(() => got.length >= 4 || ended, 5000, "the echo or the end");
  s.destroy();
  return got;
}

describe("TLS certificate verification", () => {
  test("the certificates are what the cases say they are", () => {
    assert.equal(new X509Certificate(pem("self")).ca, true, "OpenSSL 3 marks req -x509 CA:TRUE");
    assert.equal(new X509Certificate(pem("selfleaf")).ca, false);
    assert.equal(new X509Certificate(pem("good")).ca, false);
    assert.match(new X509Certificate(pem("expired")).validTo, /2020/);
  });

  test("without the certificate (Deno could not read it), the runtime's kind of fault is named", () => {
    // what rustls (Deno) and OpenSSL (Bun, Node) say, as they say it
    const said: [string, string][] = [
      ["invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))", "ca-as-leaf"],
      ['invalid peer certificate: certificate not valid for name "localhost"', "name"],
      ["invalid peer certificate: certificate expired: verification time 1", "expired"],
      ["invalid peer certificate: certificate not valid yet: verification time 1", "not-yet-valid"],
      ["invalid peer certificate: UnknownIssuer", "untrusted"],
      ["DEPTH_ZERO_SELF_SIGNED_CERT", "untrusted"],
      ["SELF_SIGNED_CERT_IN_CHAIN", "untrusted"],
      ["UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "untrusted"],
      ["CERT_HAS_EXPIRED", "expired"],
      ["CERT_NOT_YET_VALID", "not-yet-valid"],
      ["ERR_TLS_CERT_ALTNAME_INVALID", "name"],
      ["CERT_SIGNATURE_FAILURE", "other"],
    ];
    assert.deepEqual(said.map(([s]) => [s, faultOf(s)]), said);
    const reason = (s: string) => certificateReason(undefined, "localhost", "x", s);
    assert.equal(
      reason("invalid peer certificate: UnknownIssuer"),
      "unknown CA: the certificate is not issued by the CAs given",
    );
    assert.equal(
      reason('invalid peer certificate: certificate not valid for name "localhost"'),
      "name mismatch: the certificate is not for localhost",
    );
    assert.equal(reason("CERT_SIGNATURE_FAILURE"), "CERT_SIGNATURE_FAILURE");
  });

  for (const c of CASES) {
    for (const engine of ENGINES) {
      test(`${c.title}: through a TcpProxy's TLS target (${engine})`, async () => {
        if (engine === "native") nativeEngine();
        const srv = await tlsServer(c.cert);
        const proxy = await TcpProxy.listen({
          listen: { host: "127.0.0.1", port: 0 },
          target: { host: c.host ?? "localhost", port: srv.port },
          targetTls: { ca: pem(c.ca), ...(c.servername ? { servername: c.servername } : {}) },
          engine,
        });
        const errors: RelaykitError[] = [];
        proxy.on("error", (e) => errors.push(e));
        try {
          const got = await pingThrough(proxy.port);
          if (c.reason === undefined) {
            assert.equal(got, "ping");
            assert.deepEqual(errors.map((e) => e.message), []);
          } else {
            assert.equal(got, "", "nothing passes a certificate that does not verify");
            await waitFor(() => errors.length >= 1, 5000, "the error");
            assert.equal(errors[0]!.code, "CERT_UNTRUSTED");
            assert.equal(errors[0]!.message, failure(srv.port, c.reason, c.host));
          }
        } finally {
          await proxy.close();
          await srv.close();
        }
      });
    }

    for (const engine of ENGINES) {
      test(`${c.title}: through a tunnel client's TLS link (${engine} engine)`, async () => {
        const echo = await echoServer();
        const server = await TunnelServer.listen({
          engine,
          listen: { host: "127.0.0.1", port: 0 },
          allow: [{ cidr: "127.0.0.0/8" }],
          tls: { cert: pem(c.cert), key: readFileSync(join(dir, "leaf.key"), "utf8") },
        });
        const client = await TunnelClient.start({
          engine,
          link: { host: c.host ?? "localhost", port: server.address.port },
          listeners: [{
            listen: { host: "127.0.0.1", port: 0 },
            to: { host: "127.0.0.1", port: echo.port },
          }],
          tls: { ca: pem(c.ca), ...(c.servername ? { servername: c.servername } : {}) },
          reconnectDelay: 50,
          reconnectMaxDelay: 100,
        });
        const downs: TunnelClientEvents["down"][] = [];
        client.on("down", (e) => downs.push(e));
        try {
          if (c.reason === undefined) {
            await client.waitUp(5000);
            assert.equal(await pingThrough(client.addresses[0]!.port), "ping");
          } else {
            // it retries (the server's certificate may be replaced), each
            // time saying why
            await waitFor(() => downs.length >= 2, 5000, "two failed tries");
            for (const d of downs.slice(0, 2)) {
              assert.equal(d.reason, "connect-failed");
              assert.equal(d.error?.code, "CERT_UNTRUSTED");
              assert.equal(d.error?.message, failure(server.address.port, c.reason, c.host));
              // (a link in the native engine verifies in the library: no runtime error then)
              assert.equal(client.engine, engine);
              if (c.runtimeRefuses && engine === "stream") {
                assert.ok(d.error?.cause instanceof Error, "the runtime's own error is the cause");
              }
            }
            assert.equal(client.up, false);
            assert.equal(client.stoppedBy, undefined);
          }
        } finally {
          await client.close();
          await server.close();
          await echo.close();
        }
      });
    }
  }

  // the command runs from the sources: Deno and Bun (Node runs the built package)
  if (runtime.name !== "node") {
    test("relaykit tunnel client logs why the certificate does not verify, and keeps trying", async () => {
      const server = await TunnelServer.listen({
        listen: { host: "127.0.0.1", port: 0 },
        allow: [{ cidr: "127.0.0.0/8" }],
        tls: { cert: pem("atest"), key: readFileSync(join(dir, "leaf.key"), "utf8") },
      });
      // in front of the server: counts the client's tries
      let tries = 0;
      const front = await tcpServer((s) => {
        tries++;
        const up = net.connect(server.address.port, "127.0.0.1");
        up.on("error", () => s.destroy());
        s.pipe(up).pipe(s);
      });
      const cli = startCli([
        "tunnel",
        "client",
        "--link",
        `localhost:${front.port}`,
        "--tls-ca",
        join(dir, "ca.pem"),
        "--listen",
        "127.0.0.1:0=127.0.0.1:1",
        "--reconnect-max",
        "200",
      ]);
      let exited = false;
      cli.child.once("exit", () => exited = true);
      const reason = failure(
        front.port,
        "name mismatch: certificate is for a.test, connected to localhost",
      );
      try {
        // the first failure is logged with its reason (the next ones of
        // the same cause are summed up later: the log is rate-limited)
        await waitFor(() => cli.output.err.includes(reason) || exited, 10_000, "the logged reason");
        assert.equal(exited, false, cli.output.err);
        assert.match(cli.output.err, /warn relaykit: link to localhost:\d+ down: connect-failed/);
        const seen = tries;
        await waitFor(() => tries >= seen + 3 || exited, 10_000, "more tries");
        assert.equal(exited, false, cli.output.err);
      } finally {
        await stopChild(cli.child);
        await front.close();
        await server.close();
      }
    });
  }
});
