/**
 * The PROXY header parser and its C twin (native/src/proxyhdr.c, which the
 * native engine runs on its listeners), checked against each other on every
 * input a parser test gives: `parseBoth` returns (or throws) what the
 * TypeScript parser does, after asserting that the native one found the
 * same (kind, length, bytes needed, error code, version, command,
 * transport, address family, ports, TLV bytes). Where the runtime has no
 * FFI (Node), the TypeScript parser alone.
 */
import assert from "node:assert/strict";
import { callsOf } from "../src/native/engine.ts";
import type { NativeParse } from "../src/native/calls.ts";
import {
  type ParseMode,
  parseProxyHeader,
  type ParseResult,
  ProxyProtocolError,
} from "../src/protocol/proxy_protocol.ts";
import { isIPv4 } from "../src/protocol/ip.ts";
import { ENGINES, nativeEngine } from "./_helpers.ts";

/** Native parses compared so far (a test can check that its cases reached C). */
export let nativeParses = 0;

/** The C parser's view of `buf`. */
export function parseNative(buf: Uint8Array, mode: ParseMode): NativeParse {
  return callsOf(nativeEngine()).proxyParse(buf, mode);
}

const TRANSPORT = { unspec: 0, stream: 1, dgram: 2 } as const;

/** What the TypeScript result says, in the native parser's terms. */
function expected(r: ParseResult | ProxyProtocolError): NativeParse {
  if (r instanceof ProxyProtocolError) return { kind: "error", code: r.code };
  if (r.kind !== "header") return r;
  const h = r.header, s = h.source, d = h.destination;
  const family = s === undefined ? 0 : "path" in s ? 3 : isIPv4(s.host) ? 1 : 2;
  return {
    kind: "header",
    length: r.length,
    version: h.version,
    command: h.command === "proxy" ? 1 : 0,
    transport: TRANSPORT[h.transport],
    family,
    sourcePort: s !== undefined && "port" in s ? s.port : 0,
    destinationPort: d !== undefined && "port" in d ? d.port : 0,
    tlvOffset: 0,
    tlvLength: h.tlvs.reduce((n, t) => n + 3 + t.value.length, 0),
  };
}

/**
 * parseProxyHeader, with the native parser's result on the same bytes
 * asserted equal to it.
 */
export function parseBoth(buf: Uint8Array, mode: ParseMode = "detect"): ParseResult {
  let r: ParseResult | ProxyProtocolError;
  try {
    r = parseProxyHeader(buf, mode);
  } catch (e) {
    if (!(e instanceof ProxyProtocolError)) throw e;
    r = e;
  }
  if (ENGINES.includes("native")) {
    const n = parseNative(buf, mode);
    if (n.kind === "header") n.tlvOffset = 0; // where they are: C's own business
    nativeParses++;
    assert.deepEqual(
      n,
      expected(r),
      `the native parser differs (mode ${mode}, ${buf.length} bytes: ${
        Array.from(buf.subarray(0, 64), (b) => b.toString(16).padStart(2, "0")).join("")
      })`,
    );
  }
  if (r instanceof ProxyProtocolError) throw r;
  return r;
}
