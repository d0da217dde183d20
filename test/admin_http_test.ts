/**
 * The admin endpoint's HTTP layer: one request per connection, bounded
 * head and body, malformed, oversized, chunked and slow requests answered
 * 4xx/5xx and closed, a handler that throws answered 500, a peer that
 * leaves while its answer is computed costs nothing; the client over TCP
 * and over a Unix socket.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "./_test.ts";
import { httpRequest, json, serveHttp } from "../src/admin/http.ts";

const dir = mkdtempSync(join(tmpdir(), "relaykit-admintest-http-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Send raw bytes; resolve with everything the server answered before it closed. */
function raw(port: number, data: string | Uint8Array, end = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.write(data);
      if (end) s.end();
    });
    let got = "";
    s.on("data", (d) => got += String(d));
    s.on("close", () => resolve(got));
    s.on("end", () => s.end());
    s.on("error", reject);
  });
}

describe("admin HTTP layer", () => {
  test("malformed, oversized, chunked, slow and failing requests", async () => {
    let slowGone = false;
    const srv = await serveHttp({ host: "127.0.0.1", port: 0 }, async (req) => {
      if (req.path === "/throw") throw new Error("boom");
      if (req.path === "/slow") {
        await new Promise((r) => setTimeout(r, 300));
        slowGone = true;
        return json(200, { late: true });
      }
      return json(200, {
        method: req.method,
        path: req.path,
        q: req.query.get("q"),
        body: String(req.body.length),
      });
    }, { timeout: 300 });
    const port = "port" in srv.address ? srv.address.port : 0;
    try {
      const ok = await raw(port, "POST /a%2Fb?q=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
      assert.match(ok, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(ok, /Connection: close\r\n/);
      assert.match(ok, /\{"method":"POST","path":"\/a%2Fb","q":"1","body":"3"\}/);
      assert.match(await raw(port, "NOT HTTP\r\n\r\n"), /^HTTP\/1\.1 400 /);
      assert.match(await raw(port, "GET / HTTP/1.1\r\nbad header\r\n\r\n"), /^HTTP\/1\.1 400 /);
      assert.match(
        await raw(port, "GET / HTTP/1.1\r\nX: " + "a".repeat(9000)),
        /^HTTP\/1\.1 400 .*\r\n[^]*over 8192 bytes/,
      );
      assert.match(
        await raw(port, "POST / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n"),
        /^HTTP\/1\.1 413 /,
      );
      assert.match(
        await raw(port, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        /^HTTP\/1\.1 501 /,
      );
      assert.match(
        await raw(port, "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
        /^HTTP\/1\.1 400 /,
      );
      assert.match(
        await raw(port, "GET / HTTP/1.1\r\n", true),
        /^HTTP\/1\.1 400 .*\r\n[^]*ended before/,
      );
      assert.match(await raw(port, "GET / HTTP/1.1\r\n"), /^HTTP\/1\.1 408 /);
      assert.match(await raw(port, "GET /throw HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 500 [^]*boom/);
      const head = await raw(port, "HEAD /x HTTP/1.1\r\n\r\n");
      assert.match(head, /Content-Length: \d+\r\n/);
      assert.ok(head.endsWith("\r\n\r\n"), "HEAD has no body");
      // a peer that leaves before its answer: the server goes on serving
      const s = net.connect(port, "127.0.0.1", () => s.write("GET /slow HTTP/1.1\r\n\r\n"));
      s.on("error", () => {});
      await new Promise((r) => setTimeout(r, 100));
      s.destroy();
      await new Promise((r) => setTimeout(r, 400));
      assert.ok(slowGone);
      assert.match(await raw(port, "GET /after HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 /);
    } finally {
      srv.close();
    }
  });

  test("the client, over TCP and over a Unix socket", async () => {
    const path = join(dir, "a.sock");
    const handler = (req: { method: string; headers: Map<string, string>; body: Uint8Array }) =>
      json(200, { m: req.method, auth: req.headers.get("authorization"), n: req.body.length });
    const tcp = await serveHttp({ host: "127.0.0.1", port: 0 }, handler);
    const unix = await serveHttp({ path }, handler);
    try {
      for (const at of [tcp.address, { path }]) {
        const a = await httpRequest(at, "POST", "/x", {
          headers: { Authorization: "Bearer t" },
          body: "12345",
        });
        assert.equal(a.status, 200);
        assert.deepEqual(JSON.parse(a.body), { m: "POST", auth: "Bearer t", n: 5 });
        assert.equal(a.headers.get("content-type"), "application/json");
      }
      await assert.rejects(httpRequest({ path: join(dir, "none.sock") }, "GET", "/"));
    } finally {
      tcp.close();
      unix.close();
    }
  });
});
