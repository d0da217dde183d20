/**
 * Accepting a PROXY protocol header from a listener's clients: who may send
 * one (trusted ranges), how much to read, how long to wait, and what the
 * bytes say. One step per update of a held connection.
 *
 * @module
 */
import { errorFor, type RelaykitError } from "../errors.ts";
import type { HeldConnection, HeldUpdate, ProxyFront } from "../forward/types.ts";
import { type Cidr, inRanges, parseCidr } from "../protocol/cidr.ts";
import {
  type DecodedTlvs,
  decodeTlvs,
  parseProxyHeader,
  type ProxyHeader,
  type ProxyProtocolError,
  V2_MAX,
} from "../protocol/proxy_protocol.ts";
import * as settings from "../settings.ts";

/**
 * Accepting a PROXY protocol header from the clients of a listener.
 *
 * @example
 * ```ts
 * import { type AcceptProxyOptions } from "@relaykit/relaykit";
 * const fromLoadBalancers: AcceptProxyOptions = {
 *   mode: "v2",
 *   trusted: ["10.0.0.0/8"],
 *   untrusted: "refuse",
 *   timeout: 3000,
 * };
 * console.log(fromLoadBalancers.mode);
 * ```
 */
export interface AcceptProxyOptions {
  /** "detect": v1, v2 or no header; "v1" or "v2": that header, required. */
  mode: "detect" | "v1" | "v2";
  /**
   * Source ranges allowed to send a header ("10.0.0.0/8", "::1"). Anyone
   * else could forge their address with one. @default ["127.0.0.0/8", "::1"]
   */
  trusted?: readonly string[];
  /**
   * A client outside `trusted`: "refuse" closes it; "no-header" relays its
   * bytes as they are, header or not. @default "refuse"
   */
  untrusted?: "refuse" | "no-header";
  /** Close a connection whose header is incomplete after this many ms. @default 5000 */
  timeout?: number;
}

/** The default trusted sources: this machine only. */
export const LOOPBACK = ["127.0.0.0/8", "::1"] as const;

/** The default header timeout in ms. */
export const HEADER_TIMEOUT_MS = 5000;

/** The first read: what the spec suggests a receiver reads at once. Bytes
 * past the header are not lost: they go to the target after it. */
export const FIRST_READ = 536;

/** "Connection 5 from 10.0.0.1:4000", for messages. */
export function describeConn(conn: HeldConnection): string {
  const r = conn.remote;
  if (r === undefined) return `Connection ${conn.id}`;
  const host = r.host.includes(":") ? `[${r.host}]` : r.host;
  return `Connection ${conn.id} from ${host}:${r.port}`;
}

/** Check acceptProxy options up front, so a typo fails `listen`, not a connection. */
export function checkAcceptProxy(accept: AcceptProxyOptions): void {
  const check = (what: string, f: () => unknown) => {
    try {
      f();
    } catch (err) {
      throw new TypeError(`${what}: ${(err as Error).message}`);
    }
  };
  check("acceptProxy.mode", () => settings.acceptProxyMode.parse(accept.mode));
  if (accept.untrusted !== undefined) {
    check("acceptProxy.untrusted", () => settings.untrusted.parse(accept.untrusted));
  }
  for (const t of accept.trusted ?? []) parseCidr(t);
  const timeout = accept.timeout;
  if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 0)) {
    throw new RangeError(`acceptProxy.timeout must be a non-negative integer, not ${timeout}`);
  }
}

/** The error of a client outside the trusted ranges. */
export function untrustedError(conn: HeldConnection): RelaykitError {
  return errorFor(
    `${describeConn(conn)}: PROXY header not accepted`,
    "RK_EPROXY_UNTRUSTED",
    { connectionId: conn.id },
  );
}

/** The error of a malformed header (`code` and `message` of a ProxyProtocolError). */
export function malformedError(conn: HeldConnection, e: ProxyProtocolError): RelaykitError {
  return errorFor(
    `${describeConn(conn)}: bad PROXY header (${e.code}: ${e.message})`,
    "RK_EPROXY",
    { connectionId: conn.id, cause: e },
  );
}

/** The error of a client that ended after `length` bytes, inside its header. */
export function endedError(conn: HeldConnection, length: number): RelaykitError {
  return errorFor(
    `${describeConn(conn)}: the client ended inside its PROXY header (${length} bytes)`,
    "RK_EPROXY",
    { connectionId: conn.id },
  );
}

/**
 * The header phase as an engine runs it itself (ProxySpec.front): what to
 * accept from whom, `send` (built by the caller) and whether the engine
 * then connects by itself (`decides`).
 */
export function engineAccept(
  accept: AcceptProxyOptions | undefined,
  send: ProxyFront["send"],
  decides: boolean,
): ProxyFront {
  const trusted = (accept?.trusted ?? LOOPBACK).map(parseCidr);
  return {
    decides,
    mode: accept?.mode ?? "none",
    trusted: trusted.map((c) => ({ bytes: c.bytes, prefix: c.prefix })),
    untrusted: accept?.untrusted ?? "refuse",
    send,
  };
}

/** What to do after one update of a connection in its header phase. */
export type HeaderStep =
  /** Read on, up to `max` bytes in all. */
  | { step: "read"; max: number }
  /** Close it, reporting `error`. */
  | { step: "refuse"; error: RelaykitError }
  /** The header phase is over: `length` bytes were the header (none: 0). */
  | {
    step: "done";
    header: ProxyHeader | undefined;
    length: number;
    tlvs: DecodedTlvs | undefined;
  };

/** No header to read (none expected, or from an untrusted client passed through). */
const NONE: HeaderStep = { step: "done", header: undefined, length: 0, tlvs: undefined };

/** The header phase of a listener's connections (one instance per configuration). */
export class ProxyAcceptance {
  readonly #accept: AcceptProxyOptions | undefined;
  readonly #trusted: Cidr[];

  /** @param accept What to accept (undefined: no header is read). */
  constructor(accept: AcceptProxyOptions | undefined) {
    this.#accept = accept;
    this.#trusted = (accept?.trusted ?? LOOPBACK).map(parseCidr);
  }

  /** How long the header may take in ms (0: no header phase). */
  get timeout(): number {
    return this.#accept === undefined ? 0 : this.#accept.timeout ?? HEADER_TIMEOUT_MS;
  }

  /** What the bytes of update `u` mean for the header. */
  step(u: HeldUpdate): HeaderStep {
    const accept = this.#accept;
    if (accept === undefined) return NONE;
    if (u.first) {
      const host = u.conn.remote?.host;
      // a Unix socket peer is this machine: trusted like loopback
      if (host === undefined || inRanges(host, this.#trusted)) {
        // bytes already read: an engine handed over a header it read
        if (u.data.length === 0) return { step: "read", max: FIRST_READ };
      } else if (accept.untrusted === "no-header") {
        return NONE;
      } else {
        return { step: "refuse", error: untrustedError(u.conn) };
      }
    }
    let r;
    let tlvs: DecodedTlvs | undefined;
    try {
      r = parseProxyHeader(u.data, accept.mode);
      // the TLVs are checked here too: a header is good only whole
      if (r.kind === "header") tlvs = decodeTlvs(r.header.tlvs);
    } catch (e) {
      return { step: "refuse", error: malformedError(u.conn, e as ProxyProtocolError) };
    }
    if (r.kind === "need") {
      if (u.eof) return { step: "refuse", error: endedError(u.conn, u.data.length) };
      return { step: "read", max: Math.min(Math.max(u.data.length + r.bytes, FIRST_READ), V2_MAX) };
    }
    if (r.kind === "none") return NONE;
    return { step: "done", header: r.header, length: r.length, tlvs };
  }
}
