/**
 * What a route function may return, checked in one place. The result table
 * of the README is this module: every kind, every key, every type. A result
 * is read once (each key exactly once, so a getter cannot answer one thing
 * to the check and another to the use) into a plain decision; anything that
 * does not match, or that throws while being read, is a `RouteResultError`
 * whose message says what came back and what was expected.
 *
 * @module
 */
import { plainBytes } from "../bytes.ts";
import { describeValue, type RelaykitError } from "../errors.ts";
import type { Endpoint, TlsClientOptions } from "../forward/types.ts";
import { parseEndpoint } from "./address.ts";

/**
 * The kinds of route result, each with the keys it may carry besides its
 * own. Help texts and messages are made from this table.
 */
export const ROUTE_KINDS = {
  remote: ["data", "reply", "connectTimeout", "idleTimeout", "tls", "failReply"],
  close: [],
  file: ["offset", "length", "reply"],
  send: [],
} as const satisfies Record<string, readonly string[]>;

/** A kind of route result: "remote", "close", "file" or "send". */
export type RouteKind = keyof typeof ROUTE_KINDS;

const KINDS = Object.keys(ROUTE_KINDS) as RouteKind[];

/** "undefined, { remote }, { close }, { file }, { send }": what a route may return. */
export const ROUTE_EXPECTED = `undefined, ${KINDS.map((k) => `{ ${k} }`).join(", ")}`;

/** The longest host name a `remote` may name (a DNS name is at most 253). */
const HOST_MAX = 255;
/** The longest path a `remote` or `file` may name (PATH_MAX). */
const PATH_MAX = 4096;
/** The largest timeout in ms (what an int32 holds). */
const MS_MAX = 0x7fffffff;

/** A route result that does not match the table. */
export class RouteResultError extends TypeError {
  /** @param message What came back and what was expected. */
  constructor(message: string) {
    super(message);
    this.name = "RouteResultError";
  }
}

/** Where a connection goes, as checked: bytes as plain Uint8Arrays. */
export type RouteDecision =
  | { kind: "wait" }
  | { kind: "send"; send: Uint8Array }
  | { kind: "close"; toClient: Uint8Array | undefined }
  | {
    kind: "file";
    path: string;
    offset: number | undefined;
    length: number | undefined;
    reply: Uint8Array | undefined;
  }
  | {
    kind: "remote";
    target: Endpoint;
    data: Uint8Array | undefined;
    reply: Uint8Array | undefined;
    connectTimeout: number | undefined;
    idleTimeout: number | undefined;
    tls: TlsClientOptions | undefined;
    failReply: Uint8Array | ((error: RelaykitError) => unknown) | undefined;
  };

const enc = new TextEncoder();

function bad(message: string): never {
  throw new RouteResultError(message);
}

/** A string or a Uint8Array, as bytes; `what` names it in the message. */
export function routeBytes(v: unknown, what: string): Uint8Array {
  if (typeof v === "string") return enc.encode(v);
  return plainBytes(v) ?? bad(`${what} is ${describeValue(v)}; expected a string or a Uint8Array`);
}

function optionalBytes(v: unknown, what: string): Uint8Array | undefined {
  return v === undefined ? undefined : routeBytes(v, what);
}

function integer(v: unknown, what: string, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
    bad(`${what} is ${describeValue(v)}; expected an integer from 0 to ${max}`);
  }
  return v;
}

function endpoint(v: unknown): Endpoint {
  if (typeof v === "string") {
    if (v.length > PATH_MAX + 5) {
      bad(`remote is ${describeValue(v)}; expected at most ${PATH_MAX + 5} characters`);
    }
    let e: Endpoint;
    try {
      e = parseEndpoint(v, "remote");
    } catch {
      bad(`remote is ${describeValue(v)}; expected "host:port", "[v6]:port" or "unix:/path"`);
    }
    return "path" in e ? { path: path(e.path, "remote") } : { host: host(e.host), port: e.port };
  }
  if (typeof v !== "object" || v === null || plainBytes(v) !== undefined || Array.isArray(v)) {
    bad(
      `remote is ${
        describeValue(v)
      }; expected "host:port", "[v6]:port", "unix:/path", { host, port } or { path }`,
    );
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.includes("path")) {
    if (keys.length !== 1) bad(`remote is ${describeValue(v)}; expected { path } alone`);
    return { path: path(o.path, "remote.path") };
  }
  const extra = keys.filter((k) => k !== "host" && k !== "port");
  if (extra.length > 0) {
    bad(`remote has an unknown key ${JSON.stringify(extra[0])}; expected { host, port }`);
  }
  const port = o.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    bad(`remote.port is ${describeValue(port)}; expected an integer from 0 to 65535`);
  }
  return { host: host(o.host), port };
}

function host(v: unknown): string {
  if (typeof v !== "string" || v === "" || v.length > HOST_MAX || v.includes("\0")) {
    bad(
      `remote host is ${
        describeValue(v)
      }; expected a name or an address of 1 to ${HOST_MAX} characters`,
    );
  }
  return v;
}

function path(v: unknown, what: string): string {
  if (typeof v !== "string" || v === "" || v.length > PATH_MAX || v.includes("\0")) {
    bad(`${what} is ${describeValue(v)}; expected a path of 1 to ${PATH_MAX} characters`);
  }
  return v;
}

function tls(v: unknown): TlsClientOptions | undefined {
  if (v === undefined || v === false) return undefined;
  if (v === true) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    bad(
      `tls is ${describeValue(v)}; expected true, false or { servername, ca, rejectUnauthorized }`,
    );
  }
  const o = v as Record<string, unknown>;
  const out: TlsClientOptions = {};
  for (const k of Object.keys(o)) {
    const x = o[k];
    if (k === "servername" || k === "ca") {
      if (typeof x !== "string") bad(`tls.${k} is ${describeValue(x)}; expected a string`);
      out[k] = x;
    } else if (k === "rejectUnauthorized") {
      if (typeof x !== "boolean") bad(`tls.${k} is ${describeValue(x)}; expected a boolean`);
      out[k] = x;
    } else {
      bad(
        `tls has an unknown key ${JSON.stringify(k)}; expected servername, ca, rejectUnauthorized`,
      );
    }
  }
  return out;
}

/**
 * Check what a route function returned (after awaiting it) against the
 * result table.
 *
 * @param result What the route function returned.
 * @returns The decision, with its bytes as plain Uint8Arrays.
 * @throws {RouteResultError} naming what came back and what was expected.
 */
export function checkRouteResult(result: unknown): RouteDecision {
  if (result === undefined || result === null) return { kind: "wait" };
  try {
    return check(result);
  } catch (e) {
    if (e instanceof RouteResultError) throw e;
    // a throwing getter or Proxy trap, a string too long to encode...
    const why = e instanceof Error ? e.message : describeValue(e);
    throw new RouteResultError(
      `route returned ${describeValue(result)}, which could not be read (${why})`,
    );
  }
}

function check(result: unknown): RouteDecision {
  const shape = () => `route returned ${describeValue(result)}; expected ${ROUTE_EXPECTED}`;
  if (typeof result !== "object" || Array.isArray(result) || plainBytes(result) !== undefined) {
    bad(shape());
  }
  const r = result as Record<string, unknown>;
  const keys = Object.keys(r);
  const kinds = KINDS.filter((k) => keys.includes(k));
  if (kinds.length !== 1) {
    bad(
      kinds.length === 0
        ? shape()
        : `route returned ${describeValue(result)}, more than one of ${
          kinds.join(", ")
        }; expected ${ROUTE_EXPECTED}`,
    );
  }
  const kind = kinds[0]!;
  const allowed: readonly string[] = ROUTE_KINDS[kind];
  const unknown = keys.find((k) => k !== kind && !allowed.includes(k));
  if (unknown !== undefined) {
    bad(
      `route returned ${describeValue(result)}: { ${kind} } takes ${
        allowed.length === 0 ? "no other key" : allowed.join(", ")
      }, not ${JSON.stringify(unknown.slice(0, 40))}`,
    );
  }
  // each key read once, in the table's order
  const v: Record<string, unknown> = {};
  for (const k of [kind, ...allowed]) v[k] = keys.includes(k) ? r[k] : undefined;
  switch (kind) {
    case "send":
      return { kind, send: routeBytes(v.send, "send") };
    case "close": {
      if (v.close === true) return { kind, toClient: undefined };
      if (typeof v.close !== "string" && plainBytes(v.close) === undefined) {
        bad(`close is ${describeValue(v.close)}; expected true, a string or a Uint8Array`);
      }
      return { kind, toClient: routeBytes(v.close, "close") };
    }
    case "file": {
      const f = v.file;
      const p = typeof f === "number"
        ? `/proc/self/fd/${integer(f, "file", MS_MAX)}`
        : typeof f === "string"
        ? path(f, "file")
        : bad(`file is ${describeValue(f)}; expected a path or a file descriptor`);
      return {
        kind,
        path: p,
        offset: integer(v.offset, "offset", Number.MAX_SAFE_INTEGER),
        length: integer(v.length, "length", Number.MAX_SAFE_INTEGER),
        reply: optionalBytes(v.reply, "reply"),
      };
    }
    case "remote": {
      const fr = v.failReply;
      return {
        kind,
        target: endpoint(v.remote),
        data: optionalBytes(v.data, "data"),
        reply: optionalBytes(v.reply, "reply"),
        connectTimeout: integer(v.connectTimeout, "connectTimeout", MS_MAX),
        idleTimeout: integer(v.idleTimeout, "idleTimeout", MS_MAX),
        tls: tls(v.tls),
        failReply: typeof fr === "function"
          ? fr as (error: RelaykitError) => unknown
          : optionalBytes(fr, "failReply"),
      };
    }
  }
}
