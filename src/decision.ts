/**
 * The decision protocol, defined once: what a route function may return
 * (the result table of the README is this module: every kind, every key,
 * every type), how a result is checked, and what the engines are told to do
 * with a held connection. A result is read once (each key exactly once, so
 * a getter cannot answer one thing to the check and another to the use)
 * into a plain decision; anything that does not match, or that throws while
 * being read, is a `RouteResultError` whose message says what came back and
 * what was expected.
 *
 * The kinds that end the decision on their own (`close`, `file`) are checked
 * straight into the engines' `HoldDecision`: the front passes them on as
 * they are, and both engines read their defaults and ranges from here. A
 * new kind of that sort is a new entry in `ROUTE_KINDS`, a case in `check`,
 * a member of `EngineKind`, and its implementation in each engine.
 *
 * @module
 */
import { concatBytes, EMPTY, plainBytes } from "./bytes.ts";
import { describeValue, type RelaykitError } from "./errors.ts";
import { type Endpoint, parseEndpoint, type TlsClientOptions } from "./types.ts";

/**
 * Bytes as a route function may give them.
 *
 * @example
 * ```ts
 * import { type RouteBytes } from "@relaykit/relaykit";
 * const replies: RouteBytes[] = ["HTTP/1.0 200 OK\r\n\r\n", new Uint8Array([0, 0x5a, 0, 0, 0, 0, 0, 0])];
 * console.log(replies.length);
 * ```
 */
export type RouteBytes = string | Uint8Array;

/**
 * Where a connection goes, as a route function returns it (tproxy's
 * results): connect to `remote` (sending `data` instead of what the client
 * sent so far, and `reply` to the client once connected), `close` (after
 * sending the bytes given), or send a `file` (after `reply`) and close.
 *
 * @example
 * ```ts
 * import { type RouteResult } from "@relaykit/relaykit";
 * const results: RouteResult[] = [
 *   { remote: "127.0.0.1:8080", reply: "OK\n", failReply: "FAIL\n" },
 *   { close: "go away\n" },
 *   { file: "/etc/hostname", reply: "HTTP/1.0 200 OK\r\n\r\n" },
 *   { send: new Uint8Array([5, 0]) },
 * ];
 * console.log(results.length);
 * ```
 */
export type RouteResult =
  | {
    /** "host:port", "[v6]:port", "unix:/path", or an endpoint. */
    remote: string | Endpoint;
    /** Sent to the remote instead of the bytes received so far. */
    data?: RouteBytes;
    /** Sent to the client once the remote is connected. */
    reply?: RouteBytes;
    /** Connect timeout in ms for this route. */
    connectTimeout?: number;
    /** Idle timeout in ms for this route. */
    idleTimeout?: number;
    /**
     * Speak TLS to the remote. On the native engine the library speaks it
     * when OpenSSL 3 loads, else the runtime's TLS carries those bytes.
     */
    tls?: boolean | TlsClientOptions;
    /**
     * If the connect fails: send this to the client, then close (a SOCKS
     * or HTTP CONNECT failure reply). The error is still reported.
     */
    failReply?: RouteBytes | ((error: RelaykitError) => RouteBytes);
  }
  | {
    /**
     * Send these bytes to the client now and wait for more (a handshake
     * step, such as SOCKS5's method choice); the route is asked again with
     * everything received so far.
     */
    send: RouteBytes;
  }
  | {
    /** `true`, or bytes to send before closing. */
    close: true | RouteBytes;
  }
  | {
    /** A path, or an open file descriptor (read from its start, not its position). */
    file: string | number;
    /** Where to start. @default 0 */
    offset?: number;
    /** How many bytes. @default to the end */
    length?: number;
    /** Sent before the file. */
    reply?: RouteBytes;
  };

/** Connect a held connection to a target, then relay (made by the front from `remote`). */
export interface ConnectDecision {
  /** Connect to `target`, send `toTarget` and the unconsumed held bytes, then relay. */
  action: "connect";
  /** Where to go. */
  target: Endpoint;
  /** Bytes sent to the target before anything from the client. */
  toTarget?: Uint8Array;
  /** Bytes sent to the client once the target is connected. */
  toClient?: Uint8Array;
  /** How many held bytes to drop from the front. @default 0 */
  consume?: number;
  /** Connect timeout in ms (0: none). @default the proxy's */
  connectTimeout?: number;
  /** Idle timeout in ms (0: none). @default the proxy's */
  idleTimeout?: number;
  /** Speak TLS to the target (the library's TLS, or the runtime's). */
  tls?: TlsClientOptions;
  /** If the connect fails, hold the connection again (`HeldUpdate.retry`). */
  retry?: boolean;
}

/** Send `toClient`, then close (the `close` route result). */
export interface CloseDecision {
  /** Send `toClient`, then close. */
  action: "close";
  /** Bytes for the client before the close. */
  toClient?: Uint8Array;
}

/** Send `toClient`, then a file, then close (the `file` route result). */
export interface FileDecision {
  /** Send `toClient`, then the file (with sendfile(2) on the native engine), then close. */
  action: "file";
  /** The file's path. */
  path: string;
  /** Where to start. @default 0 */
  offset?: number;
  /** How many bytes. @default to the end */
  length?: number;
  /** Bytes for the client before the file. */
  toClient?: Uint8Array;
}

/**
 * The route results that the engines carry out as they are checked: the
 * front passes them on untouched.
 */
export type EngineKind = CloseDecision | FileDecision;

/**
 * What to do with a held connection: what an engine's `decide` carries out.
 *
 * @example
 * ```ts
 * import { type HoldDecision } from "@relaykit/relaykit/internals";
 * const decisions: HoldDecision[] = [
 *   { action: "connect", target: { host: "127.0.0.1", port: 8080 }, consume: 0 },
 *   { action: "close", toClient: new TextEncoder().encode("bye\n") },
 *   { action: "file", path: "/etc/hostname" },
 * ];
 * console.log(decisions.map((d) => d.action));
 * ```
 */
export type HoldDecision = ConnectDecision | EngineKind;

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

/**
 * Where a connection goes, as checked: bytes as plain Uint8Arrays. `wait`,
 * `send` and `remote` are the front's to carry out (read more, a handshake
 * step, the connect with its PROXY header, hook and failover); the others
 * are engine decisions already.
 */
export type RouteDecision =
  | { action: "wait" }
  | { action: "send"; send: Uint8Array }
  | {
    action: "remote";
    target: Endpoint;
    data: Uint8Array | undefined;
    reply: Uint8Array | undefined;
    connectTimeout: number | undefined;
    idleTimeout: number | undefined;
    tls: TlsClientOptions | undefined;
    failReply: Uint8Array | ((error: RelaykitError) => unknown) | undefined;
  }
  | EngineKind;

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

/** Checked `remote` strings, frozen (a route names the same few again and again). */
const parsed = new Map<string, Endpoint>();
/** How many checked strings are kept; past it the cache starts over. */
const PARSED_MAX = 1024;

function endpoint(v: unknown): Endpoint {
  if (typeof v === "string") {
    const known = parsed.get(v);
    if (known !== undefined) return known;
    const e = Object.freeze(endpointOfString(v));
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(v, e);
    return e;
  }
  return endpointOfObject(v);
}

function endpointOfString(v: string): Endpoint {
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

function endpointOfObject(v: unknown): Endpoint {
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
  if (result === undefined || result === null) return { action: "wait" };
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
      return { action: kind, send: routeBytes(v.send, "send") };
    case "close": {
      if (v.close === true) return { action: kind };
      if (typeof v.close !== "string" && plainBytes(v.close) === undefined) {
        bad(`close is ${describeValue(v.close)}; expected true, a string or a Uint8Array`);
      }
      return { action: kind, toClient: routeBytes(v.close, "close") };
    }
    case "file": {
      const f = v.file;
      const p = typeof f === "number"
        ? `/proc/self/fd/${integer(f, "file", MS_MAX)}`
        : typeof f === "string"
        ? path(f, "file")
        : bad(`file is ${describeValue(f)}; expected a path or a file descriptor`);
      const d: FileDecision = { action: kind, path: p };
      const offset = integer(v.offset, "offset", Number.MAX_SAFE_INTEGER);
      const length = integer(v.length, "length", Number.MAX_SAFE_INTEGER);
      const reply = optionalBytes(v.reply, "reply");
      if (offset !== undefined) d.offset = offset;
      if (length !== undefined) d.length = length;
      if (reply !== undefined) d.toClient = reply;
      return d;
    }
    case "remote": {
      const fr = v.failReply;
      return {
        action: kind,
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

/** What a connect that failed with `retry` keeps for the next attempt. */
export interface KeptBytes {
  /** The bytes for the target. */
  first: Uint8Array;
  /** The reply for the client. */
  reply: Uint8Array | undefined;
}

/**
 * What a connect decision sends first to the target and replies to the
 * client: `toTarget` and the held bytes after `consume` (clamped to what is
 * held); after a failed attempt (`kept`), a decision without `toTarget` or
 * `toClient` sends what that attempt would have.
 *
 * @param d The decision.
 * @param held Every byte held so far.
 * @param kept What the failed attempt kept, if this is a retry.
 */
export function connectBytes(
  d: ConnectDecision,
  held: Uint8Array,
  kept: KeptBytes | undefined,
): KeptBytes {
  const consume = Math.min(Math.max(0, d.consume ?? 0), held.length);
  const first = d.toTarget === undefined && kept !== undefined
    ? kept.first
    : concatBytes([d.toTarget ?? EMPTY, held.subarray(consume)]);
  return { first, reply: d.toClient ?? kept?.reply };
}

/**
 * The byte range a file decision sends from a file of `size` bytes, or
 * undefined when it lies outside the file (ERANGE).
 *
 * @param d The decision.
 * @param size The file's size.
 */
export function fileRange(
  d: FileDecision,
  size: number,
): { offset: number; length: number } | undefined {
  const offset = d.offset ?? 0;
  if (offset > size || (d.length !== undefined && d.length > size - offset)) return undefined;
  return { offset, length: d.length ?? size - offset };
}
