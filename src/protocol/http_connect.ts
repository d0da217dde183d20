/**
 * The HTTP CONNECT request (`CONNECT host:port HTTP/1.1`, RFC 9110 9.3.6),
 * optionally with Basic proxy authentication: a pure parser over the bytes
 * a client has sent so far, and the answers. Bytes in, values out, no I/O.
 * Shared by the HTTP CONNECT router (src/proxy/socks.ts) and the tunnel
 * client's HTTP CONNECT entry.
 *
 * @module
 */
import { indexOfHeadEnd } from "../bytes.ts";
import { knownUser, type RequestedDestination } from "./socks.ts";

/** The most an HTTP CONNECT request head may take. */
export const HTTP_CONNECT_HEAD_MAX = 16 * 1024;

/** What an HTTP CONNECT request calls for. */
export type HttpConnectStep =
  | { readonly kind: "more" }
  | {
    /** Refused: send `reply` and close. */
    readonly kind: "refuse";
    readonly reply: string;
    /** Why, for a log line, when it is a policy refusal; undefined for a malformed head. */
    readonly what: string | undefined;
  }
  | {
    /** Done: connect, then answer with {@link httpConnectReply}. */
    readonly kind: "connect";
    readonly destination: RequestedDestination;
    /** Bytes sent after the head: the first bytes for the destination. */
    readonly rest: Uint8Array;
  };

/** A response with no body that closes the connection. */
export function httpAnswer(status: string, extra = ""): string {
  return `HTTP/1.1 ${status}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`;
}

/** The answer that opens the tunnel. */
export const HTTP_CONNECT_ESTABLISHED = "HTTP/1.1 200 Connection established\r\n\r\n";

/**
 * The answer to a CONNECT for an outcome: undefined is success, otherwise
 * the engine-wide error code of the refusal or failed connect (refused by
 * a rule 403, timed out 504, anything else 502).
 */
export function httpConnectReply(code: string | undefined): string {
  switch (code) {
    case undefined:
      return HTTP_CONNECT_ESTABLISHED;
    case "RK_EDENIED":
    case "RK_EROUTE":
      return httpAnswer("403 Forbidden");
    case "ETIMEDOUT":
      return httpAnswer("504 Gateway Timeout");
    default:
      return httpAnswer("502 Bad Gateway");
  }
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

/**
 * Parse an HTTP CONNECT request head from the bytes received so far.
 *
 * @param data Every byte the client sent so far.
 * @param users When given, the request must carry Basic proxy credentials
 * of one of these.
 * @returns What to do next.
 */
export function parseHttpConnect(
  data: Uint8Array,
  users: Readonly<Record<string, string>> | undefined,
): HttpConnectStep {
  // the end of the head first: what came so far is decoded only once whole
  const end = indexOfHeadEnd(data);
  if (end < 0) {
    return data.length > HTTP_CONNECT_HEAD_MAX
      ? {
        kind: "refuse",
        reply: httpAnswer("431 Request Header Fields Too Large"),
        what: undefined,
      }
      : { kind: "more" };
  }
  const bad: HttpConnectStep = {
    kind: "refuse",
    reply: httpAnswer("400 Bad Request"),
    what: undefined,
  };
  const head = new TextDecoder("latin1").decode(data.subarray(0, end));
  const [line = "", ...headers] = head.split("\r\n");
  const m = /^(\S+) (\S+) HTTP\/1\.[01]$/.exec(line);
  if (m === null) return bad;
  if (m[1] !== "CONNECT") {
    return {
      kind: "refuse",
      reply: httpAnswer("405 Method Not Allowed", "Allow: CONNECT\r\n"),
      what: `${m[1]} is not CONNECT`,
    };
  }
  const target = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(m[2]!);
  const port = Number(target?.[3]);
  if (target === null || port < 1 || port > 65535) return bad;
  if (users !== undefined) {
    const auth = headers.find((h) => /^proxy-authorization:/i.test(h));
    const cred = /^proxy-authorization:\s*basic\s+(\S+)/i.exec(auth ?? "")?.[1];
    const pair = cred === undefined ? undefined : basicCredentials(cred);
    if (pair === undefined || !knownUser(users, pair.user, pair.pass)) {
      return {
        kind: "refuse",
        reply: httpAnswer(
          "407 Proxy Authentication Required",
          'Proxy-Authenticate: Basic realm="relaykit"\r\n',
        ),
        what: cred === undefined
          ? "no proxy credentials"
          : pair === undefined
          ? "malformed proxy credentials (not base64 of UTF-8 USER:PASSWORD)"
          : `wrong proxy credentials for "${pair.user}"`,
      };
    }
  }
  return {
    kind: "connect",
    destination: { host: target[1] ?? target[2]!, port },
    rest: data.subarray(end + 4), // bytes sent after the head, if any
  };
}
