/**
 * The command buffer of rk_hold_submit: the hold reads, writes and
 * decisions JavaScript makes in one turn, packed as relaykit.h's records
 * and handed to the library in one call (each worker woken once).
 *
 * @module
 */
import { DECISION } from "./structs.ts";
import { HOLD_OP } from "./symbols.ts";

const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const encoder = new TextEncoder();

/** Bytes of a record's head (RK_HOLD_OP_HEAD). */
const HEAD = 16;
/** A decision record's fixed part: head, rk_decision_t, four lengths. */
const DECIDE_FIXED = HEAD + DECISION.size + 16;
/** The buffer a batch starts with; it grows as needed, and shrinks back. */
const START = 16 * 1024;

/** Decision fields as rk_decision_t takes them. */
export type DecisionFields = Parameters<typeof DECISION.encode>[0];

/** Records waiting for rk_hold_submit. */
export class HoldBatch {
  #buf = new Uint8Array(START);
  #view = new DataView(this.#buf.buffer);
  #len = 0;

  /** Records are waiting. */
  get pending(): boolean {
    return this.#len > 0;
  }

  /** rk_hold_read of up to `max` more bytes. */
  read(id: number, max: number): void {
    this.#head(HOLD_OP.READ, id, HEAD, max);
  }

  /** rk_hold_write of `data` (not empty). */
  write(id: number, data: Uint8Array): void {
    const at = this.#head(HOLD_OP.WRITE, id, pad(HEAD + data.length), data.length);
    this.#buf.set(data, at + HEAD);
  }

  /** rk_hold_decide (CONNECT or CLOSE). */
  decide(
    id: number,
    fields: DecisionFields,
    host: string,
    bind: string,
    toB: Uint8Array,
    toA: Uint8Array,
  ): void {
    // room for the worst case of the names' UTF-8, then the real size
    const most = DECIDE_FIXED + 3 * (host.length + bind.length) + toB.length + toA.length;
    this.#room(pad(most));
    const at = this.#len, buf = this.#buf, view = this.#view;
    DECISION.encodeInto(view, at + HEAD, fields);
    let p = at + DECIDE_FIXED;
    const hostLen = utf8Into(host, buf, p);
    p += hostLen;
    const bindLen = utf8Into(bind, buf, p);
    p += bindLen;
    if (toB.length > 0) buf.set(toB, p);
    p += toB.length;
    if (toA.length > 0) buf.set(toA, p);
    p += toA.length;
    const lens = at + HEAD + DECISION.size;
    view.setUint32(lens, hostLen, LITTLE);
    view.setUint32(lens + 4, bindLen, LITTLE);
    view.setUint32(lens + 8, toB.length, LITTLE);
    view.setUint32(lens + 12, toA.length, LITTLE);
    const size = pad(p - at);
    buf.fill(0, p, at + size);
    this.#head(HOLD_OP.DECIDE, id, size, 0);
  }

  /** The records so far (a view until `clear`). */
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  /** Forget the records (after rk_hold_submit). */
  clear(): void {
    this.#len = 0;
    if (this.#buf.length > START) { // a burst's big buffer is not kept
      this.#buf = new Uint8Array(START);
      this.#view = new DataView(this.#buf.buffer);
    }
  }

  /** Write a head at the end (the body, if any, is already there) and count the record. */
  #head(op: number, id: number, size: number, arg: number): number {
    this.#room(size);
    const at = this.#len, view = this.#view;
    view.setUint32(at, op, LITTLE);
    view.setInt32(at + 4, id, LITTLE);
    view.setUint32(at + 8, size, LITTLE);
    view.setUint32(at + 12, arg >>> 0, LITTLE);
    this.#len = at + size;
    return at;
  }

  #room(size: number): void {
    if (this.#len + size <= this.#buf.length) return;
    let cap = this.#buf.length * 2;
    while (cap < this.#len + size) cap *= 2;
    const bigger = new Uint8Array(cap);
    bigger.set(this.#buf.subarray(0, this.#len));
    this.#buf = bigger;
    this.#view = new DataView(bigger.buffer);
  }
}

/**
 * Write `s` as UTF-8 at `at` of `buf` (room for 3 bytes per code unit):
 * the bytes written. An ASCII name (the usual host) is copied here, without
 * the encoder's call and view.
 */
function utf8Into(s: string, buf: Uint8Array, at: number): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return encoder.encodeInto(s, buf.subarray(at)).written;
    buf[at + i] = c;
  }
  return n;
}

/** A record's size: a multiple of 8. */
function pad(n: number): number {
  return (n + 7) & ~7;
}
