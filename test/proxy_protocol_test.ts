/**
 * PROXY protocol v1/v2 parser and builder: pure functions over bytes.
 */
import assert from "node:assert/strict";
import { describe, test } from "./_test.ts";
import { parseBoth } from "./_proxy_twin.ts";
import {
  buildProxyHeader,
  crc32c,
  decodeTlvs,
  type ProxyHeader,
  ProxyProtocolError,
  TLV,
} from "../src/protocol/proxy_protocol.ts";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { differencesTable, sourceText, VECTORS } from "./fixtures/proxy_vectors.ts";

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);
const V2_SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

function header(buf: Uint8Array, mode: "detect" | "v1" | "v2" = "detect") {
  const r = parseBoth(buf, mode);
  assert.equal(r.kind, "header");
  return r as { kind: "header"; header: ProxyHeader; length: number };
}

function rejects(buf: Uint8Array, code: string, mode: "detect" | "v1" | "v2" = "detect") {
  assert.throws(() => parseBoth(buf, mode), (e: unknown) => {
    assert.ok(e instanceof ProxyProtocolError);
    assert.equal(e.code, code);
    return true;
  });
}

describe("PROXY protocol v1", () => {
  test("parses TCP4 and stops exactly at CRLF, leaving the payload alone", () => {
    const line = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    const r = header(bytes(line + "GET / HTTP/1.1\r\n"));
    assert.equal(r.length, line.length);
    assert.deepEqual(r.header.source, { host: "192.0.2.1", port: 56324 });
    assert.deepEqual(r.header.destination, { host: "198.51.100.2", port: 443 });
    assert.equal(r.header.version, 1);
  });

  test("parses TCP6 and UNKNOWN (with or without the rest of the line)", () => {
    const r = header(bytes("PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 1 65535\r\n"));
    assert.deepEqual(r.header.source, { host: "2001:db8::1", port: 1 });
    assert.deepEqual(r.header.destination, { host: "::ffff:192.0.2.1", port: 65535 });
    assert.equal(header(bytes("PROXY UNKNOWN\r\n")).header.source, undefined);
    const unknown = "PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n";
    assert.equal(header(bytes(unknown)).length, unknown.length);
  });

  test("asks for more bytes, one step at a time, until the header is complete", () => {
    const line = bytes("PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000\r\n");
    for (let n = 0; n < line.length; n++) {
      const r = parseBoth(line.subarray(0, n));
      assert.equal(r.kind, "need", `at ${n} bytes`);
    }
    assert.equal(header(line).length, line.length);
  });

  test("accepts a 107-byte header and rejects a 108-byte one", () => {
    const v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    const max = `PROXY TCP6 ${v6} ${v6} 65535 65535\r\n`;
    assert.equal(max.length, 104);
    assert.equal(header(bytes(max)).length, 104);
    const unknown107 = "PROXY UNKNOWN " + "x".repeat(107 - 16) + "\r\n";
    assert.equal(unknown107.length, 107);
    assert.equal(header(bytes(unknown107)).length, 107);
    rejects(bytes("PROXY UNKNOWN " + "x".repeat(108 - 16) + "\r\n"), "V1_TOO_LONG");
    rejects(bytes("PROXY UNKNOWN " + "x".repeat(200)), "V1_TOO_LONG");
  });

  test("rejects malformed lines with a specific error", () => {
    rejects(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), "V1_NO_CRLF");
    rejects(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), "V1_NO_CRLF");
    rejects(bytes("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), "V1_BAD_FORMAT");
    rejects(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), "V1_BAD_FORMAT");
    rejects(bytes("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), "V1_BAD_PROTOCOL");
    rejects(bytes("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), "V1_BAD_ADDRESS");
    rejects(bytes("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), "V1_BAD_ADDRESS");
    rejects(bytes("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), "V1_BAD_ADDRESS");
    rejects(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), "V1_BAD_PORT");
    rejects(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), "V1_BAD_PORT");
  });
});

describe("PROXY protocol v2", () => {
  test("round-trips IPv4, IPv6 and Unix addresses; refuses the addresses of a DGRAM connection", () => {
    const cases: ProxyHeader[] = [
      {
        version: 2,
        command: "proxy",
        transport: "stream",
        source: { host: "192.0.2.1", port: 51000 },
        destination: { host: "192.0.2.2", port: 443 },
        tlvs: [],
      },
      {
        version: 2,
        command: "proxy",
        transport: "stream",
        source: { host: "2001:db8::1", port: 53 },
        destination: { host: "2001:db8::2", port: 5353 },
        tlvs: [],
      },
      {
        version: 2,
        command: "proxy",
        transport: "stream",
        source: { path: "/run/client.sock" },
        destination: { path: "/run/server.sock" },
        tlvs: [],
      },
    ];
    for (const h of cases) {
      const b = buildProxyHeader(h);
      const r = header(b, "v2");
      assert.equal(r.length, b.length);
      assert.deepEqual(r.header, h);
      // the same addresses for a datagram: not the original of a stream connection
      rejects(buildProxyHeader({ ...h, transport: "dgram" }), "V2_BAD_TRANSPORT", "v2");
    }
  });

  test("LOCAL carries no addresses, and its address block is skipped", () => {
    const b = buildProxyHeader({
      version: 2,
      command: "local",
      transport: "unspec",
      tlvs: [],
    });
    assert.equal(b.length, 16);
    const r = header(b);
    assert.equal(r.header.command, "local");
    assert.equal(r.header.source, undefined);
  });

  test("keeps every TLV, known and unknown, zero-length ones too, past 108 bytes", () => {
    const ssl = new Uint8Array([
      0x07, // client: SSL, cert on connection, cert in session
      0,
      0,
      0,
      0, // verify: ok
      TLV.SSL_VERSION,
      0,
      7,
      ...bytes("TLSv1.3"),
      TLV.SSL_CN,
      0,
      11,
      ...bytes("example.com"),
    ]);
    const tlvs = [
      { type: TLV.ALPN, value: bytes("h2") },
      { type: TLV.AUTHORITY, value: bytes("example.com") },
      { type: TLV.UNIQUE_ID, value: new Uint8Array(128).fill(7) },
      { type: TLV.SSL, value: ssl },
      { type: TLV.NETNS, value: bytes("blue") },
      { type: TLV.NOOP, value: new Uint8Array(0) },
      { type: 0xe0, value: bytes("custom") },
    ];
    const b = buildProxyHeader({
      version: 2,
      command: "proxy",
      transport: "stream",
      source: { host: "10.0.0.1", port: 1 },
      destination: { host: "10.0.0.2", port: 2 },
      tlvs,
    }, { crc32c: true });
    assert.ok(b.length > 108);
    const r = header(b);
    assert.deepEqual(r.header.tlvs.slice(0, tlvs.length), tlvs);
    const d = decodeTlvs(r.header.tlvs);
    assert.equal(d.alpn, "h2");
    assert.equal(d.authority, "example.com");
    assert.equal(d.uniqueId?.length, 128);
    assert.equal(d.netns, "blue");
    assert.equal(d.ssl?.client, 7);
    assert.equal(d.ssl?.verify, 0);
    assert.equal(d.ssl?.version, "TLSv1.3");
    assert.equal(d.ssl?.cn, "example.com");
    assert.equal(typeof d.crc32c, "number");
  });

  test("verifies CRC32C and rejects a header whose checksum does not match", () => {
    const b = buildProxyHeader({
      version: 2,
      command: "proxy",
      transport: "stream",
      source: { host: "10.0.0.1", port: 1 },
      destination: { host: "10.0.0.2", port: 2 },
      tlvs: [],
    }, { crc32c: true });
    header(b);
    const bad = b.slice();
    bad[17] = bad[17]! ^ 1; // flip a bit of the source address
    rejects(bad, "CRC32C_MISMATCH");
    // the standard check value of CRC32C
    assert.equal(crc32c(bytes("123456789")), 0xe3069283);
  });

  test("asks for more bytes and never reads past the header", () => {
    const b = buildProxyHeader({
      version: 2,
      command: "proxy",
      transport: "stream",
      source: { host: "10.0.0.1", port: 1 },
      destination: { host: "10.0.0.2", port: 2 },
      tlvs: [{ type: TLV.AUTHORITY, value: bytes("a.example") }],
    });
    for (let n = 0; n < b.length; n++) {
      assert.equal(parseBoth(b.subarray(0, n)).kind, "need", `at ${n} bytes`);
    }
    const withPayload = new Uint8Array([...b, ...bytes("payload")]);
    assert.equal(header(withPayload).length, b.length);
  });

  test("rejects bad versions, commands, families and truncated TLVs", () => {
    const base = buildProxyHeader({
      version: 2,
      command: "proxy",
      transport: "stream",
      source: { host: "10.0.0.1", port: 1 },
      destination: { host: "10.0.0.2", port: 2 },
      tlvs: [],
    });
    const with_ = (i: number, v: number) => {
      const c = base.slice();
      c[i] = v;
      return c;
    };
    rejects(with_(12, 0x11), "V2_BAD_VERSION");
    rejects(with_(12, 0x22), "V2_BAD_COMMAND");
    rejects(with_(13, 0x41), "V2_BAD_FAMILY");
    rejects(with_(13, 0x13), "V2_BAD_TRANSPORT");
    // an INET6 family with only an INET address block
    rejects(with_(13, 0x21), "V2_SHORT_ADDRESS");
    // a TLV whose length runs past the header
    const t = new Uint8Array([
      ...V2_SIG,
      0x21,
      0x11,
      0,
      12 + 4,
      ...base.subarray(16, 28),
      0xe0,
      0,
      9,
      1,
    ]);
    rejects(t, "V2_BAD_TLV");
  });
});

describe("PROXY protocol detection", () => {
  test("the no-op mode never finds a header, even a valid one", () => {
    assert.deepEqual(parseBoth(bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "none"), {
      kind: "none",
    });
    assert.deepEqual(parseBoth(new Uint8Array(V2_SIG), "none"), { kind: "none" });
  });

  test("detect finds v1, v2 or nothing; a fixed mode requires its version", () => {
    assert.equal(header(bytes("PROXY UNKNOWN\r\n")).header.version, 1);
    assert.deepEqual(parseBoth(bytes("GET / HTTP/1.1\r\n")), { kind: "none" });
    assert.deepEqual(parseBoth(new Uint8Array([0x16, 0x03, 0x01])), { kind: "none" });
    assert.equal(parseBoth(bytes("PRO")).kind, "need");
    assert.equal(parseBoth(new Uint8Array(V2_SIG.slice(0, 5))).kind, "need");
    rejects(bytes("GET / HTTP/1.1\r\n"), "NO_HEADER", "v1");
    rejects(bytes("PROXY UNKNOWN\r\n"), "NO_HEADER", "v2");
  });

  test("builds v1 from the same header shape, UNKNOWN when it has no addresses", () => {
    const h: ProxyHeader = {
      version: 1,
      command: "proxy",
      transport: "stream",
      source: { host: "::1", port: 1234 },
      destination: { host: "::1", port: 80 },
      tlvs: [],
    };
    assert.equal(new TextDecoder().decode(buildProxyHeader(h)), "PROXY TCP6 ::1 ::1 1234 80\r\n");
    assert.equal(
      new TextDecoder().decode(
        buildProxyHeader({ version: 1, command: "local", transport: "unspec", tlvs: [] }),
      ),
      "PROXY UNKNOWN\r\n",
    );
    assert.throws(
      () => buildProxyHeader({ ...h, destination: { host: "10.0.0.1", port: 1 } }),
      RangeError,
    );
  });
});

describe("PROXY protocol vectors (test/fixtures/proxy_vectors.ts)", () => {
  for (const v of VECTORS) {
    test(`${v.name}: relaykit ${v.relaykit}s${v.code ? ` (${v.code})` : ""}`, () => {
      const payload = bytes("ping");
      const input = new Uint8Array(v.bytes.length + payload.length);
      input.set(v.bytes);
      input.set(payload, v.bytes.length);
      for (const mode of [v.mode, "detect"] as const) {
        if (v.code === "NO_HEADER" && mode === "detect") continue; // detect: payload, not a header
        let r;
        try {
          r = parseBoth(v.relaykit === "wait" ? v.bytes : input, mode);
        } catch (e) {
          assert.ok(e instanceof ProxyProtocolError, String(e));
          assert.equal(v.relaykit, "refuse", `${mode}: refused (${e.code}: ${e.message})`);
          assert.equal(e.code, v.code, mode);
          continue;
        }
        if (v.relaykit === "wait") {
          assert.equal(r.kind, "need", mode);
          continue;
        }
        assert.equal(v.relaykit, "accept", `${mode}: ${JSON.stringify(r)}`);
        assert.equal(r.kind, "header", mode);
        if (r.kind !== "header") continue;
        assert.equal(r.length, v.bytes.length, mode);
        assert.equal(sourceText(r.header), v.source, mode);
        decodeTlvs(r.header.tlvs); // a header that parses decodes
      }
    });
  }

  test("a reason is given exactly where relaykit and HAProxy differ", () => {
    for (const v of VECTORS) {
      assert.equal(v.why !== undefined, v.relaykit !== v.haproxy, v.name);
      assert.equal(v.code !== undefined, v.relaykit === "refuse", v.name);
    }
    assert.equal(new Set(VECTORS.map((v) => v.name)).size, VECTORS.length, "names are unique");
  });

  test("the README's table of differences is the one the vectors give", () => {
    const readme = readFileSync(
      fileURLToPath(new URL("../README.md", import.meta.url).href),
      "utf8",
    );
    // as `deno fmt` may lay it out: cells padded, rules of any length, lines rewrapped
    const flat = (md: string) => md.replace(/-{3,}/g, "---").replace(/\s+/g, " ");
    assert.ok(
      flat(readme).includes(flat(differencesTable())),
      "README.md is out of date: put the output of `deno run test/fixtures/proxy_vectors.ts` " +
        'under "PROXY protocol: what relaykit accepts"',
    );
  });
});

describe("decodeTlvs on TLVs that break the spec", () => {
  const cases: [string, number, number[]][] = [
    ["UNIQUE_ID of 129 bytes", TLV.UNIQUE_ID, new Array(129).fill(0x61)],
    ["AUTHORITY of 256 bytes", TLV.AUTHORITY, new Array(256).fill(0x61)],
    ["CRC32C of 3 bytes", TLV.CRC32C, [0, 0, 0]],
    ["CRC32C of 0 bytes", TLV.CRC32C, []],
    ["SSL of 0 bytes", TLV.SSL, []],
    ["SSL of 4 bytes", TLV.SSL, [1, 0, 0, 0]],
    ["SSL with a sub-TLV past its end", TLV.SSL, [1, 0, 0, 0, 0, 0x21, 0, 9, 0x54]],
    ["SSL with a cut sub-TLV header", TLV.SSL, [1, 0, 0, 0, 0, 0x21, 0]],
  ];
  for (const [what, type, value] of cases) {
    test(`${what}: a ProxyProtocolError, also when the value is a view into a larger buffer`, () => {
      // the value as a view with readable bytes after it: none of them may be read
      const big = new Uint8Array(value.length + 64).fill(0xff);
      big.set(value);
      for (const v of [Uint8Array.from(value), big.subarray(0, value.length)]) {
        assert.throws(() => decodeTlvs([{ type, value: v }]), (e: unknown) => {
          assert.ok(e instanceof ProxyProtocolError, String(e));
          assert.equal(e.code, "V2_BAD_TLV");
          return true;
        });
      }
    });
  }

  test("zero-length TLVs of every other type, NOOP included, decode", () => {
    for (let type = 0; type < 256; type++) {
      if (type === TLV.CRC32C || type === TLV.SSL) continue;
      decodeTlvs([{ type, value: new Uint8Array(0) }]);
    }
    const d = decodeTlvs([
      { type: TLV.NOOP, value: new Uint8Array(0) },
      { type: TLV.UNIQUE_ID, value: new Uint8Array(128) },
      { type: TLV.AUTHORITY, value: new Uint8Array(255).fill(0x61) },
      { type: TLV.SSL, value: Uint8Array.from([1, 0, 0, 0, 0]) },
    ]);
    assert.equal(d.uniqueId?.length, 128);
    assert.equal(d.authority?.length, 255);
    assert.deepEqual(d.ssl, { client: 1, verify: 0, tlvs: [] });
  });
});
