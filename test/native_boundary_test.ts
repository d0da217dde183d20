import assert from "node:assert/strict";
import { describe, test } from "./_test.ts";
import { callsOf } from "../src/native/engine.ts";
import { decodeEvent } from "../src/native/events.ts";
import { DECISION, STRUCTS } from "../src/native/structs.ts";
import { EV, EVENT_WORDS, HOLD } from "../src/native/symbols.ts";
import { ERROR_TEXT, HOST_ONLY_CODES, normalizeCode } from "../src/errors.ts";
import { V1_MAX, V2_MAX } from "../src/protocol/proxy_protocol.ts";
import { FIRST_READ } from "../src/proxy/accept_proxy.ts";
import { LINGER_MS, SWEEP_MS } from "../src/forward/stream.ts";
import { nativeEngine } from "./_helpers.ts";

/** Every code the library names: errno values and its own RK_E* range. */
function libraryCodes(): Map<string, string> {
  const calls = callsOf(nativeEngine());
  const named = new Map<string, string>();
  const codes = [];
  for (let c = -1; c >= -200; c--) codes.push(c);
  for (let c = -4001; c >= -4100; c--) codes.push(c);
  for (const code of codes) {
    const { name, message } = calls.describe(code);
    if (name !== "UNKNOWN") named.set(name, message);
  }
  return named;
}

describe("the native boundary", () => {
  test("each option struct's layout table matches relaykit.h (rk_layout)", () => {
    const calls = callsOf(nativeEngine());
    assert.ok(STRUCTS.length >= 3);
    for (const s of STRUCTS) {
      const c = calls.layout(s.name);
      assert.ok(c !== undefined, `the library does not know ${s.name}`);
      assert.deepEqual(
        { size: c[0], offsets: c.slice(1) },
        { size: s.size, offsets: s.fields.map((f) => f.offset) },
        s.name,
      );
    }
    assert.equal(calls.layout("rk_no_such_t"), undefined);
  });

  test("the struct encoder puts each field at its offset and refuses non-integers", () => {
    const bytes = DECISION.encode({
      action: 3,
      flags: 1,
      port: -1,
      family: 4,
      connect_timeout_ms: 5000,
      idle_timeout_ms: -1,
      consume: 0xffff_fffe,
      offset: 2 ** 40 + 7,
      length: -1,
    });
    assert.equal(bytes.length, DECISION.size);
    const view = new DataView(bytes.buffer);
    const at = (name: string) => DECISION.fields.find((f) => f.name === name)!.offset;
    const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
    assert.equal(view.getInt32(at("action"), le), 3);
    assert.equal(view.getInt32(at("port"), le), -1);
    assert.equal(view.getUint32(at("consume"), le), 0xffff_fffe);
    assert.equal(view.getInt32(at("reserved"), le), 0);
    assert.equal(view.getBigInt64(at("offset"), le), 2n ** 40n + 7n);
    assert.equal(view.getBigInt64(at("length"), le), -1n);
    assert.throws(
      () => DECISION.encode({ ...decisionZero(), port: 1.5 }),
      (e: unknown) => e instanceof TypeError && /rk_decision_t\.port/.test(e.message),
    );
  });

  test("every code both sides word has the same text in C (rk_strerror) and TypeScript", () => {
    const named = libraryCodes();
    assert.ok(named.has("ECONNREFUSED") && named.has("RK_ELIMIT"), "the sweep found codes");
    for (const [code, text] of Object.entries(ERROR_TEXT)) {
      if (HOST_ONLY_CODES.has(code)) {
        assert.ok(!named.has(code), `${code} is host-only but the library names it`);
        continue;
      }
      assert.ok(
        named.has(code),
        `${code} is worded in TypeScript but the library does not name it`,
      );
      assert.equal(text, named.get(code), `the text of ${code}`);
    }
  });

  test("the codes runtime errors are mapped onto are known to the library", () => {
    const named = libraryCodes();
    const runtimeCodes = ["ENOTFOUND", "EAI_AGAIN", "EAI_NONAME", "EAI_FAIL", "EHOSTUNREACH"];
    for (const c of [...runtimeCodes, "ENETDOWN", "EHOSTDOWN", "ECONNREFUSED", undefined]) {
      const to = normalizeCode(c);
      assert.ok(named.has(to), `${c} maps to ${to}, which the library does not name`);
    }
  });

  test("the PROXY header limits of the C parser are the TypeScript ones", () => {
    const calls = callsOf(nativeEngine());
    assert.deepEqual(calls.layout("proxy_limits"), [V1_MAX, V2_MAX, FIRST_READ]);
  });

  test("the stream engine's sweep and linger intervals are the library's", () => {
    const calls = callsOf(nativeEngine());
    assert.deepEqual(calls.layout("sweep_ms"), [SWEEP_MS]);
    assert.deepEqual(calls.layout("linger_ms"), [LINGER_MS]);
  });

  test("a hold record is decoded by its flags: local port when first, error on a retry", () => {
    const rec = new Uint32Array(EVENT_WORDS);
    rec.set([EV.HOLD, 7, 3, 8080, HOLD.FIRST, 5, 2, 40000, 0x0100007f, 0, 0, 0, 0x0200007f]);
    const first = decodeEvent(rec);
    assert.deepEqual(first, {
      type: "hold",
      id: 7,
      listener: 3,
      first: true,
      eof: false,
      full: false,
      retry: false,
      held: 5,
      err: 0,
      remote: { host: "127.0.0.1", port: 40000 },
      local: { host: "127.0.0.2", port: 8080 },
    });
    rec.fill(0);
    rec.set([EV.HOLD, 7, 3, -111 >>> 0, HOLD.RETRY, 0, 2]);
    const retry = decodeEvent(rec);
    assert.equal(retry?.type, "hold");
    assert.ok(retry?.type === "hold" && retry.retry && retry.err === -111);
    assert.equal("local" in retry!, false);
  });

  test("a closed record is decoded with its reason named and its 64-bit counters", () => {
    const rec = new Uint32Array(EVENT_WORDS);
    rec.set([EV.CLOSED, 9, 0, -104 >>> 0, 2, 12, 0, 0, 5, 1, 5, 1, 3, 0, 2, 0]);
    assert.deepEqual(decodeEvent(rec), {
      type: "closed",
      id: 9,
      listener: 0,
      reason: "reset",
      err: -104,
      durationMs: 12,
      counters: {
        aToB: { read: 2 ** 32 + 5, written: 2 ** 32 + 5 },
        bToA: { read: 3, written: 2 },
      },
    });
    rec[0] = 12345; // a type this table does not know
    assert.equal(decodeEvent(rec), undefined);
  });
});

function decisionZero() {
  return {
    action: 0,
    flags: 0,
    port: 0,
    family: 0,
    connect_timeout_ms: 0,
    idle_timeout_ms: 0,
    consume: 0,
    offset: 0,
    length: 0,
  };
}
