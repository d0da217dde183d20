/**
 * The SOCKS4, SOCKS4a and SOCKS5 (RFC 1928, RFC 1929) client handshake:
 * a pure, incremental parser over the bytes a client has sent so far, and
 * the replies. Bytes in, values out, no I/O. Shared by the SOCKS router
 * (src/proxy/socks.ts) and the tunnel client's SOCKS entry.
 *
 * The parser is given every byte received so far each time (it keeps no
 * state) and answers: need more (with the handshake replies due so far:
 * SOCKS5's method choice, the password check), refuse (with the reply to
 * send before closing), or connect to a destination (with the bytes that
 * came after the request). The caller sends each due reply once: the
 * `replies` lists always start from the first one.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";
import { ipv6Text } from "./ip.ts";

/** Where a client wants to go: an address literal or a name, as sent. */
export interface RequestedDestination {
  host: string;
  port: number;
}

/** What the SOCKS handshake calls for next. */
export type SocksStep =
  | {
    /** Incomplete: wait for more bytes. */
    readonly kind: "more";
    /** The replies due so far (from the first). */
    readonly replies: readonly Uint8Array[];
  }
  | {
    /** Refused: send `replies` then `reply`, and close. */
    readonly kind: "refuse";
    readonly replies: readonly Uint8Array[];
    /** The last reply; undefined: close without one (not SOCKS at all). */
    readonly reply: Uint8Array | undefined;
    /**
     * Why, for a log line, when it is a policy refusal (no password, a
     * command or address type not supported); undefined for bytes that
     * are not a well-formed handshake.
     */
    readonly what: string | undefined;
  }
  | {
    /** Done: connect, then send `replies` and the reply for the outcome. */
    readonly kind: "connect";
    readonly version: 4 | 5;
    readonly destination: RequestedDestination;
    readonly replies: readonly Uint8Array[];
    /** Bytes the client sent after its request: the first bytes for the destination. */
    readonly rest: Uint8Array;
  };

/** Whether `users` (own keys only) has `user` with password `pass`. */
export function knownUser(
  users: Readonly<Record<string, string>>,
  user: string,
  pass: string,
): boolean {
  return Object.hasOwn(users, user) && users[user] === pass;
}

/** SOCKS4 reply: CD 90 granted, 91 rejected or failed. */
const socks4Reply = (code: number) => new Uint8Array([0, code, 0, 0, 0, 0, 0, 0]);

/** SOCKS5 reply with a zero IPv4 bound address. */
const socks5Reply = (code: number) => new Uint8Array([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);

/**
 * The SOCKS5 reply code for an outcome: undefined is success, otherwise
 * the engine-wide error code of the refusal or failed connect.
 */
export function socks5ReplyCode(code: string | undefined): number {
  switch (code) {
    case undefined:
      return 0x00; // succeeded
    case "RK_EDENIED":
    case "RK_EROUTE":
      return 0x02; // connection not allowed by ruleset
    case "ENETUNREACH":
      return 0x03; // network unreachable
    case "EHOSTUNREACH":
    case "RK_ERESOLVE":
      return 0x04; // host unreachable
    case "ECONNREFUSED":
      return 0x05; // connection refused
    case "ETIMEDOUT":
      return 0x06; // TTL expired: the connect timed out
    default:
      return 0x01; // general failure
  }
}

/**
 * The final reply of a SOCKS handshake for an outcome (see
 * {@link socks5ReplyCode}); SOCKS4 knows only granted (90) and rejected or
 * failed (91).
 */
export function socksReply(version: 4 | 5, code: string | undefined): Uint8Array {
  if (version === 4) return socks4Reply(code === undefined ? 90 : 91);
  return socks5Reply(socks5ReplyCode(code));
}

/** A refusal of a SOCKS5 request, after the replies due. */
function refuse5(replies: Uint8Array[], code: number, what: string | undefined): SocksStep {
  return { kind: "refuse", replies, reply: socks5Reply(code), what };
}

/**
 * Parse a SOCKS4, 4a or 5 handshake from the bytes received so far.
 *
 * @param data Every byte the client sent so far.
 * @param users When given, SOCKS5 clients must authenticate (RFC 1929)
 * with one of these; SOCKS4 clients, which cannot, are refused.
 * @returns What to do next.
 */
export function parseSocks(
  data: Uint8Array,
  users: Readonly<Record<string, string>> | undefined,
): SocksStep {
  if (data.length === 0) return { kind: "more", replies: [] };
  if (data[0] === 4) return parseSocks4(data, users);
  if (data[0] === 5) return parseSocks5(data, users);
  return { kind: "refuse", replies: [], reply: undefined, what: undefined }; // not SOCKS
}

function parseSocks4(
  data: Uint8Array,
  users: Readonly<Record<string, string>> | undefined,
): SocksStep {
  const more: SocksStep = { kind: "more", replies: [] };
  const malformed: SocksStep = {
    kind: "refuse",
    replies: [],
    reply: socks4Reply(91),
    what: undefined,
  };
  // VN CD DSTPORT(2) DSTIP(4) USERID NUL [HOST NUL]
  if (data.length < 9) return more;
  const nul = data.indexOf(0, 8);
  if (nul < 0) return data.length > 8 + 255 ? malformed : more;
  const port = (data[2]! << 8) | data[3]!;
  const ipBytes = data.subarray(4, 8);
  let host = Array.from(ipBytes).join(".");
  let end = nul + 1;
  if (ipBytes[0] === 0 && ipBytes[1] === 0 && ipBytes[2] === 0 && ipBytes[3] !== 0) {
    // SOCKS4a: the name follows the user id
    const nul2 = data.indexOf(0, end);
    if (nul2 < 0) return data.length > end + 255 ? malformed : more;
    host = new TextDecoder().decode(data.subarray(end, nul2));
    end = nul2 + 1;
  }
  const refuse = (what: string): SocksStep => ({
    kind: "refuse",
    replies: [],
    reply: socks4Reply(91),
    what,
  });
  if (users !== undefined) return refuse("SOCKS4 has no passwords and users are required");
  if (data[1] !== 1) return refuse(`SOCKS4 command ${data[1]} is not supported`);
  return {
    kind: "connect",
    version: 4,
    destination: { host, port },
    replies: [],
    rest: data.subarray(end),
  };
}

function parseSocks5(
  data: Uint8Array,
  users: Readonly<Record<string, string>> | undefined,
): SocksStep {
  // greeting: VER NMETHODS METHODS...
  if (data.length < 2) return { kind: "more", replies: [] };
  const nmethods = data[1]!;
  let o = 2 + nmethods;
  if (data.length < o) return { kind: "more", replies: [] };
  const methods = data.subarray(2, o);
  const method = users === undefined ? 0 : 2;
  if (!methods.includes(method)) {
    return {
      kind: "refuse",
      replies: [],
      reply: new Uint8Array([5, 0xff]),
      what: `no acceptable SOCKS5 method (${users ? "a password is required" : "none offered"})`,
    };
  }
  const replies = [new Uint8Array([5, method])];
  if (method === 2) {
    // RFC 1929: VER(1) ULEN UNAME PLEN PASSWD
    if (data.length < o + 2) return { kind: "more", replies };
    if (data[o] !== 1) {
      return { kind: "refuse", replies, reply: new Uint8Array([1, 1]), what: undefined };
    }
    const ulen = data[o + 1]!;
    if (data.length < o + 2 + ulen + 1) return { kind: "more", replies };
    const plen = data[o + 2 + ulen]!;
    if (data.length < o + 3 + ulen + plen) return { kind: "more", replies };
    const dec = new TextDecoder();
    const user = dec.decode(data.subarray(o + 2, o + 2 + ulen));
    const pass = dec.decode(data.subarray(o + 3 + ulen, o + 3 + ulen + plen));
    o += 3 + ulen + plen;
    if (!knownUser(users!, user, pass)) {
      return {
        kind: "refuse",
        replies,
        reply: new Uint8Array([1, 1]),
        what: `wrong SOCKS5 user or password for "${user}"`,
      };
    }
    replies.push(new Uint8Array([1, 0]));
  }
  // request: VER CMD RSV ATYP DST.ADDR DST.PORT
  if (data.length < o + 5) return { kind: "more", replies };
  if (data[o] !== 5) return refuse5(replies, 1, undefined);
  const atyp = data[o + 3]!;
  let host: string;
  let p: number;
  if (atyp === 1) {
    p = o + 8;
    if (data.length < p + 2) return { kind: "more", replies };
    host = Array.from(data.subarray(o + 4, o + 8)).join(".");
  } else if (atyp === 4) {
    p = o + 20;
    if (data.length < p + 2) return { kind: "more", replies };
    host = ipv6Text(data.subarray(o + 4, o + 20));
  } else if (atyp === 3) {
    const len = data[o + 4]!;
    p = o + 5 + len;
    if (data.length < p + 2) return { kind: "more", replies };
    host = new TextDecoder().decode(data.subarray(o + 5, p));
  } else {
    return refuse5(replies, 8, `SOCKS5 address type ${atyp} is not supported`);
  }
  const port = (data[p]! << 8) | data[p + 1]!;
  if (data[o + 1] !== 1) {
    return refuse5(replies, 7, `SOCKS5 command ${data[o + 1]} is not supported`);
  }
  return {
    kind: "connect",
    version: 5,
    destination: { host, port },
    replies,
    rest: data.subarray(p + 2),
  };
}

/**
 * The replies of `replies` not sent yet (the first `sent` were), then
 * `last` if given, as one buffer.
 */
export function unsentReplies(
  replies: readonly Uint8Array[],
  sent: number,
  last?: Uint8Array,
): Uint8Array {
  const parts = replies.slice(sent);
  if (last !== undefined) parts.push(last);
  return concatBytes(parts);
}
