/**
 * Built-in routers: SOCKS4, SOCKS4a and SOCKS5 (no authentication, or
 * username/password), and HTTP CONNECT (optionally with Basic proxy
 * authentication). They are route functions: once the handshake is done,
 * the bytes move natively like any routed connection.
 *
 * Closed by default: a destination is allowed only by an `allow` rule and
 * no `deny` rule. Rules match the destination's address (CIDR; a name is
 * resolved first, so a name cannot smuggle in a denied address), its name
 * (a pattern such as `*.example.com`) and its port (`443`, `8000-8999`);
 * the address policy (./address_policy.ts) normalises and checks them.
 * A refused request gets the protocol's refusal reply.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";
import { errorFor, type RelaykitError } from "../errors.ts";
import { ipv6Text } from "../protocol/ip.ts";
import { Access, type AccessRule, accessTables, addressPort } from "./address_policy.ts";
import type { EngineRouter } from "../forward/types.ts";
import type { RouteResult } from "../decision.ts";
import type { RouteConnection, RouteFunction } from "./routing.ts";

/**
 * Who may go where, and who may use the proxy.
 *
 * @example
 * ```ts
 * import { type RouterOptions, socksRouter } from "@relaykit/relaykit";
 * const options: RouterOptions = {
 *   allow: [{ host: "*.example.com", port: 443 }],
 *   users: { alice: "s3cret" },
 *   onDenied: (what, conn) => console.log(conn.id, what),
 * };
 * console.log(typeof socksRouter(options));
 * ```
 */
export interface RouterOptions {
  /** Destinations allowed (none by default: a closed proxy). */
  allow?: readonly AccessRule[];
  /** Destinations refused even if allowed. */
  deny?: readonly AccessRule[];
  /** Username and password pairs; when given, clients must authenticate. */
  users?: Readonly<Record<string, string>>;
  /** Called for each refused request (a log line, an event). */
  onDenied?: (what: string, conn: RouteConnection) => void;
}

/** Whether `user` is one of `users` (own keys only) with password `pass`. */
function knownUser(users: Readonly<Record<string, string>>, user: string, pass: string): boolean {
  return Object.hasOwn(users, user) && users[user] === pass;
}

/** The user and password of Basic credentials; undefined unless base64 of UTF-8 "USER:PASS". */
function basicCredentials(token: string): { user: string; pass: string } | undefined {
  let plain: string;
  try {
    const bytes = Uint8Array.from(atob(token), (c) => c.charCodeAt(0));
    plain = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined; // not base64, or not UTF-8
  }
  const colon = plain.indexOf(":");
  return colon > 0 ? { user: plain.slice(0, colon), pass: plain.slice(colon + 1) } : undefined;
}

/** Where a request wants to go. */
interface Destination {
  host: string; // an address or a name
  port: number;
}

/** SOCKS4 reply: CD 90 granted, 91 rejected or failed. */
const socks4Reply = (code: number) => new Uint8Array([0, code, 0, 0, 0, 0, 0, 0]);

/** SOCKS5 reply with a zero IPv4 bound address. */
const socks5Reply = (code: number) => new Uint8Array([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);

/** The SOCKS5 reply code for a failed connect. */
function socks5Failure(err: RelaykitError): number {
  switch (err.code) {
    case "ECONNREFUSED":
      return 5;
    case "ENETUNREACH":
      return 3;
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
      return 4;
    default:
      return 1;
  }
}

/**
 * A SOCKS4/4a/5 router (CONNECT only; other commands get "not supported").
 *
 * @example
 * ```ts
 * import { socksRouter, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 }, // 1080, usually
 *   route: socksRouter({ allow: [{ host: "*.example.com", port: 443 }] }),
 * });
 * await proxy.close();
 * ```
 */
export function socksRouter(options: RouterOptions = {}): RouteFunction {
  const access = new Access(options.allow, options.deny);
  const users = options.users;
  const refuse = (conn: RouteConnection, what: string, reply: Uint8Array): RouteResult => {
    options.onDenied?.(what, conn);
    return { close: reply };
  };
  // how many SOCKS5 handshake replies (method choice, auth result) were
  // sent per connection, so that a client that sends everything at once
  // gets the others in front of the last reply instead; bounded: the
  // oldest entries of handshakes that never finished are dropped
  const sent = new Map<number, number>();
  const step = (conn: RouteConnection, replies: Uint8Array[], done: number): RouteResult => {
    sent.set(conn.id, replies.length);
    if (sent.size > 10_000) sent.delete(sent.keys().next().value!);
    return { send: concatBytes(replies.slice(done)) };
  };
  const route: RouteFunction = async (data, conn) => {
    if (data.length === 0) return undefined;
    let r: RouteResult | undefined;
    if (data[0] === 4) r = await socks4(data, conn);
    else if (data[0] === 5) r = await socks5(data, conn);
    else r = { close: true }; // not SOCKS: nothing sensible to answer
    if (r !== undefined && !("send" in r)) sent.delete(conn.id);
    return r;
  };
  return withEngineRouter(route, "socks", access, options, (id, n) => {
    if (n > 0) sent.set(id, n);
  });

  /** The handshake replies not sent yet (`done` were), then the final one. */
  function unsent(replies: Uint8Array[], done: number, last: Uint8Array): Uint8Array {
    return concatBytes([...replies.slice(done), last]);
  }

  async function connectTo(
    conn: RouteConnection,
    d: Destination,
    rest: Uint8Array,
    ok: Uint8Array,
    denied: Uint8Array,
    failed: (err: RelaykitError) => Uint8Array,
  ): Promise<RouteResult> {
    const a = await access.admit(d.host, d.port);
    if ("refused" in a) return refuse(conn, a.refused, denied);
    return { remote: addressPort(a.address, d.port), reply: ok, data: rest, failReply: failed };
  }

  async function socks4(data: Uint8Array, conn: RouteConnection): Promise<RouteResult | undefined> {
    // VN CD DSTPORT(2) DSTIP(4) USERID NUL [HOST NUL]
    if (data.length < 9) return undefined;
    const nul = data.indexOf(0, 8);
    if (nul < 0) return data.length > 8 + 255 ? { close: socks4Reply(91) } : undefined;
    const port = (data[2]! << 8) | data[3]!;
    const ipBytes = data.subarray(4, 8);
    let host = Array.from(ipBytes).join(".");
    let end = nul + 1;
    if (ipBytes[0] === 0 && ipBytes[1] === 0 && ipBytes[2] === 0 && ipBytes[3] !== 0) {
      // SOCKS4a: the name follows the user id
      const nul2 = data.indexOf(0, end);
      if (nul2 < 0) return data.length > end + 255 ? { close: socks4Reply(91) } : undefined;
      host = new TextDecoder().decode(data.subarray(end, nul2));
      end = nul2 + 1;
    }
    if (users !== undefined) {
      return refuse(conn, "SOCKS4 has no passwords and users are required", socks4Reply(91));
    }
    if (data[1] !== 1) {
      return refuse(conn, `SOCKS4 command ${data[1]} is not supported`, socks4Reply(91));
    }
    return await connectTo(
      conn,
      { host, port },
      data.subarray(end),
      socks4Reply(90),
      socks4Reply(91),
      () => socks4Reply(91),
    );
  }

  async function socks5(data: Uint8Array, conn: RouteConnection): Promise<RouteResult | undefined> {
    // greeting: VER NMETHODS METHODS...
    if (data.length < 2) return undefined;
    const nmethods = data[1]!;
    let o = 2 + nmethods;
    if (data.length < o) return undefined;
    const methods = data.subarray(2, o);
    const method = users === undefined ? 0 : 2;
    if (!methods.includes(method)) {
      return refuse(
        conn,
        `no acceptable SOCKS5 method (${users ? "a password is required" : "none offered"})`,
        new Uint8Array([5, 0xff]),
      );
    }
    const choice = new Uint8Array([5, method]);
    const replies = [choice];
    const done = sent.get(conn.id) ?? 0;
    if (method === 2) {
      // RFC 1929: VER(1) ULEN UNAME PLEN PASSWD
      if (data.length === o) return step(conn, replies, done);
      if (data.length < o + 2) return undefined;
      if (data[o] !== 1) return { close: new Uint8Array([1, 1]) };
      const ulen = data[o + 1]!;
      if (data.length < o + 2 + ulen + 1) return undefined;
      const plen = data[o + 2 + ulen]!;
      if (data.length < o + 3 + ulen + plen) return undefined;
      const dec = new TextDecoder();
      const user = dec.decode(data.subarray(o + 2, o + 2 + ulen));
      const pass = dec.decode(data.subarray(o + 3 + ulen, o + 3 + ulen + plen));
      o += 3 + ulen + plen;
      if (!knownUser(users!, user, pass)) {
        const no = unsent(replies, done, new Uint8Array([1, 1]));
        return refuse(conn, `wrong SOCKS5 user or password for "${user}"`, no);
      }
      replies.push(new Uint8Array([1, 0]));
      if (data.length === o) return step(conn, replies, done);
    } else if (data.length === o) {
      return step(conn, replies, done);
    }
    const reply = (code: number) => unsent(replies, done, socks5Reply(code));
    // request: VER CMD RSV ATYP DST.ADDR DST.PORT
    if (data.length < o + 5) return undefined;
    if (data[o] !== 5) return { close: reply(1) };
    const atyp = data[o + 3]!;
    let host: string;
    let p: number;
    if (atyp === 1) {
      p = o + 8;
      if (data.length < p + 2) return undefined;
      host = Array.from(data.subarray(o + 4, o + 8)).join(".");
    } else if (atyp === 4) {
      p = o + 20;
      if (data.length < p + 2) return undefined;
      host = ipv6Text(data.subarray(o + 4, o + 20));
    } else if (atyp === 3) {
      const len = data[o + 4]!;
      p = o + 5 + len;
      if (data.length < p + 2) return undefined;
      host = new TextDecoder().decode(data.subarray(o + 5, p));
    } else {
      return refuse(conn, `SOCKS5 address type ${atyp} is not supported`, reply(8));
    }
    const port = (data[p]! << 8) | data[p + 1]!;
    if (data[o + 1] !== 1) {
      return refuse(conn, `SOCKS5 command ${data[o + 1]} is not supported`, reply(7));
    }
    return await connectTo(
      conn,
      { host, port },
      data.subarray(p + 2),
      reply(0),
      reply(2),
      (err) => reply(socks5Failure(err)),
    );
  }
}

/** The most an HTTP CONNECT request head may take. */
const HTTP_HEAD_MAX = 16 * 1024;

/**
 * An HTTP CONNECT router (`CONNECT host:port HTTP/1.1`), with Basic proxy
 * authentication when `users` is given.
 *
 * @example
 * ```ts
 * import { httpConnectRouter, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   route: httpConnectRouter({ allow: [{ host: "*.example.com", port: 443 }], users: { me: "pw" } }),
 * });
 * await proxy.close();
 * ```
 */
export function httpConnectRouter(options: RouterOptions = {}): RouteFunction {
  const access = new Access(options.allow, options.deny);
  const users = options.users;
  const answer = (status: string, extra = "") =>
    `HTTP/1.1 ${status}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`;
  const refuse = (conn: RouteConnection, what: string, status: string, extra = ""): RouteResult => {
    options.onDenied?.(what, conn);
    return { close: answer(status, extra) };
  };
  const route: RouteFunction = async (data, conn) => {
    const text = new TextDecoder("latin1").decode(data);
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) {
      return data.length > HTTP_HEAD_MAX
        ? { close: answer("431 Request Header Fields Too Large") }
        : undefined;
    }
    const [line = "", ...headers] = text.slice(0, end).split("\r\n");
    const m = /^(\S+) (\S+) HTTP\/1\.[01]$/.exec(line);
    if (m === null) return { close: answer("400 Bad Request") };
    if (m[1] !== "CONNECT") {
      return refuse(conn, `${m[1]} is not CONNECT`, "405 Method Not Allowed", "Allow: CONNECT\r\n");
    }
    const target = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(m[2]!);
    const port = Number(target?.[3]);
    if (target === null || port < 1 || port > 65535) return { close: answer("400 Bad Request") };
    if (users !== undefined) {
      const auth = headers.find((h) => /^proxy-authorization:/i.test(h));
      const cred = /^proxy-authorization:\s*basic\s+(\S+)/i.exec(auth ?? "")?.[1];
      const pair = cred === undefined ? undefined : basicCredentials(cred);
      if (pair === undefined || !knownUser(users, pair.user, pair.pass)) {
        return refuse(
          conn,
          cred === undefined
            ? "no proxy credentials"
            : pair === undefined
            ? "malformed proxy credentials (not base64 of UTF-8 USER:PASSWORD)"
            : `wrong proxy credentials for "${pair.user}"`,
          "407 Proxy Authentication Required",
          'Proxy-Authenticate: Basic realm="relaykit"\r\n',
        );
      }
    }
    const a = await access.admit(target[1] ?? target[2]!, port);
    if ("refused" in a) return refuse(conn, a.refused, "403 Forbidden");
    return {
      remote: addressPort(a.address, port),
      reply: "HTTP/1.1 200 Connection established\r\n\r\n",
      data: data.subarray(end + 4), // bytes sent after the head, if any
      failReply: (err) =>
        answer(err.code === "ETIMEDOUT" ? "504 Gateway Timeout" : "502 Bad Gateway"),
    };
  };
  return withEngineRouter(route, "http-connect", access, options, () => {});
}

/** Where a built-in router keeps what the native engine needs to run it. */
const ENGINE_ROUTER = Symbol("relaykit.engineRouter");

/** `route`, carrying its description for the native engine. */
function withEngineRouter(
  route: RouteFunction,
  kind: EngineRouter["kind"],
  access: Access,
  options: RouterOptions,
  sent: (id: number, n: number) => void,
): RouteFunction {
  const { allow, deny } = accessTables(access);
  const router: EngineRouter = {
    kind,
    allow,
    deny,
    users: options.users,
    reports: options.onDenied !== undefined,
    sent,
  };
  Object.defineProperty(route, ENGINE_ROUTER, { value: router });
  return route;
}

/**
 * The native engine's description of `route` if it is a built-in router
 * (socksRouter, httpConnectRouter): the engine may then run the handshake
 * and the rules itself, with the same replies and the same decisions.
 */
export function engineRouterOf(route: RouteFunction | undefined): EngineRouter | undefined {
  return (route as { [ENGINE_ROUTER]?: EngineRouter } | undefined)?.[ENGINE_ROUTER];
}

/** An error for a refused request (for logs that want one). */
export function deniedError(what: string, id: number): RelaykitError {
  return errorFor(`Connection ${id}: ${what}`, "RK_EDENIED", { connectionId: id });
}
