/**
 * What a routing table reads from a connection's first bytes: the Host
 * header of an HTTP/1.x request head, the server name (SNI) of a TLS
 * ClientHello, and name patterns. Pure and incremental: each parser is
 * given every byte so far and answers a name, "none" (no such thing in
 * these bytes: not that protocol, or no such header or extension),
 * "more" (not enough bytes to tell) or "bad" (malformed or over a limit).
 * native/src/router.c reads them by the same rules (one table of cases
 * runs against both: test/route_table_test.ts).
 *
 * @module
 */
import { indexOfCrlf, indexOfHeadEnd } from "../bytes.ts";

/** The most an HTTP request head may take before its Host is read. */
export const HEAD_MAX = 16 * 1024;
/** The most a TLS record may carry (RFC 8446 5.1). */
export const TLS_RECORD_MAX = 16 * 1024;

/** A parser's answer. */
export type FirstBytes =
  | { kind: "name"; name: string }
  | { kind: "none" }
  | { kind: "more" }
  | { kind: "bad"; why: string };

const MORE: FirstBytes = { kind: "more" };
const NONE: FirstBytes = { kind: "none" };
const bad = (why: string): FirstBytes => ({ kind: "bad", why });

/**
 * A host name as a table compares it: ASCII letters (lower-cased), digits,
 * `-`, `_` and `.`, at most 255 characters, one final dot dropped;
 * undefined if it is not one.
 */
export function tableName(text: string): string | undefined {
  if (text.length === 0 || text.length > 255) return undefined;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) out += String.fromCharCode(c | 0x20);
    else if (
      (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f ||
      c === 0x2e
    ) out += text[i];
    else return undefined;
  }
  if (out.endsWith(".")) out = out.slice(0, -1);
  return out === "" ? undefined : out;
}

/** Whether `name` matches `pattern` (lower case; `*` matches any run of characters). */
export function nameMatches(pattern: string, name: string): boolean {
  let p = 0, s = 0, star = -1, mark = 0;
  while (s < name.length) {
    if (pattern[p] === "*") {
      star = p++;
      mark = s;
    } else if (pattern[p] === name[s]) {
      p++;
      s++;
    } else if (star >= 0) {
      p = star + 1;
      s = ++mark;
    } else return false;
  }
  while (pattern[p] === "*") p++;
  return p === pattern.length;
}

const latin1 = (d: Uint8Array, from: number, to: number) => {
  let s = "";
  for (let i = from; i < to; i++) s += String.fromCharCode(d[i]!);
  return s;
};

/**
 * The name of a Host value or of an absolute-form target's authority
 * ("name", "name:port", "[v6]", "[v6]:port"); undefined if it is not one.
 */
function authorityName(text: string): string | undefined {
  const port = (p: string) => /^[0-9]{1,5}$/.test(p);
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    const after = text.slice(close + 1);
    if (close < 2 || close > 256 || !(after === "" || (after[0] === ":" && port(after.slice(1))))) {
      return undefined;
    }
    const v6 = text.slice(1, close).toLowerCase();
    return /^[0-9a-f:.]+$/.test(v6) ? v6 : undefined;
  }
  const c = text.indexOf(":");
  if (c >= 0 && !port(text.slice(c + 1))) return undefined;
  return tableName(c >= 0 ? text.slice(0, c) : text);
}

/**
 * The Host of an HTTP/1.x request head (`METHOD target HTTP/1.x`, header
 * lines, an empty line): its name without the port, lower case; for an
 * absolute-form target (`http://name:port/path`) the target's name
 * instead, as a server reads it (RFC 9112 3.2.2). "none" for bytes that
 * are not such a request (the method is upper-case letters) or a head
 * without Host; "bad" for a head over HEAD_MAX bytes, a header line without
 * a name, a bare CR or LF in a header line (a server that ends lines there
 * would read other headers), folded lines, two Host headers, a Host that
 * is not a name with an optional port, or an absolute-form target without
 * a name or with user info.
 */
export function httpHost(d: Uint8Array): FirstBytes {
  if (d.length === 0) return MORE;
  // the method: upper-case letters up to a space
  let i = 0;
  while (i < d.length && d[i]! >= 0x41 && d[i]! <= 0x5a) i++;
  if (i === d.length) return i > 32 ? NONE : MORE;
  if (i === 0 || d[i] !== 0x20) return NONE;
  const end = indexOfHeadEnd(d.length > HEAD_MAX ? d.subarray(0, HEAD_MAX) : d);
  // the request line, once whole, says whether it is HTTP/1.x at all
  const ll = indexOfCrlf(d);
  if (ll >= 0) {
    if (!/^[A-Z]+ [^\s]+ HTTP\/1\.[01]$/.test(latin1(d, 0, ll))) return NONE;
  }
  if (end < 0) return d.length >= HEAD_MAX ? bad(`request head over ${HEAD_MAX} bytes`) : MORE;
  let host: string | undefined;
  let pos = ll + 2;
  while (pos < end + 2) {
    const j = indexOfCrlf(d, pos); // found: the head's end is a CR LF at or after pos
    if (d[pos] === 0x20 || d[pos] === 0x09) return bad("folded header line");
    for (let k = pos; k < j; k++) {
      if (d[k] === 13 || d[k] === 10) return bad("bare CR or LF in a header line");
    }
    let colon = pos;
    while (colon < j && d[colon] !== 0x3a) colon++;
    if (colon === j || colon === pos) return bad("header line without a name");
    const name = latin1(d, pos, colon);
    if (/[\s]/.test(name)) return bad("header line without a name");
    if (name.toLowerCase() === "host") {
      if (host !== undefined) return bad("Host header given twice");
      let a = colon + 1, b = j;
      while (a < b && (d[a] === 0x20 || d[a] === 0x09)) a++;
      while (b > a && (d[b - 1] === 0x20 || d[b - 1] === 0x09)) b--;
      host = latin1(d, a, b);
    }
    pos = j + 2;
  }
  // an absolute-form target: "scheme://authority", then "/", "?", "#" or its end
  const target = /^[A-Z]+ ([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#\s]*)/.exec(latin1(d, 0, ll))?.[1];
  if (target !== undefined) {
    const authority = target.slice(target.indexOf("//") + 2);
    const name = authority.includes("@") ? undefined : authorityName(authority);
    return name === undefined ? bad("malformed request target") : { kind: "name", name };
  }
  if (host === undefined || host === "") return NONE;
  const name = authorityName(host);
  return name === undefined ? bad("malformed Host header") : { kind: "name", name };
}

/**
 * The server name of a TLS ClientHello (its first host_name in the
 * server_name extension), lower case. "none" for bytes that are not a TLS
 * handshake record, or a ClientHello without SNI; "bad" for a record over
 * TLS_RECORD_MAX, a ClientHello that does not fit its first record or whose
 * lengths do not add up, or a server name that is not a host name.
 */
export function tlsSni(d: Uint8Array): FirstBytes {
  if (d.length === 0) return MORE;
  if (d[0] !== 0x16) return NONE;
  if (d.length < 5) return MORE;
  const rlen = d[3]! << 8 | d[4]!;
  if (d[1] !== 3) return bad("not a TLS record");
  if (rlen < 4 || rlen > TLS_RECORD_MAX) return bad("malformed TLS record");
  if (d.length < 5 + rlen) return MORE;
  if (d[5] !== 1) return bad("not a ClientHello");
  const hlen = d[6]! << 16 | d[7]! << 8 | d[8]!;
  if (4 + hlen > rlen) return bad("ClientHello over one TLS record");
  const end = 9 + hlen;
  const malformed = bad("malformed ClientHello");
  let p = 9 + 2 + 32; // version, random
  if (p + 1 > end) return malformed;
  p += 1 + d[p]!; // session id
  if (p + 2 > end) return malformed;
  p += 2 + (d[p]! << 8 | d[p + 1]!); // cipher suites
  if (p + 1 > end) return malformed;
  p += 1 + d[p]!; // compression methods
  if (p > end) return malformed;
  if (p === end) return NONE; // no extensions
  if (p + 2 > end) return malformed;
  const xend = p + 2 + (d[p]! << 8 | d[p + 1]!);
  if (xend > end) return malformed;
  p += 2;
  while (p < xend) {
    if (p + 4 > xend) return malformed;
    const type = d[p]! << 8 | d[p + 1]!, len = d[p + 2]! << 8 | d[p + 3]!;
    p += 4;
    if (p + len > xend) return malformed;
    if (type === 0) {
      if (len < 2) return malformed;
      const lend = p + 2 + (d[p]! << 8 | d[p + 1]!);
      if (lend > p + len) return malformed;
      let q = p + 2;
      while (q < lend) {
        if (q + 3 > lend) return malformed;
        const nt = d[q]!, nl = d[q + 1]! << 8 | d[q + 2]!;
        q += 3;
        if (q + nl > lend) return malformed;
        if (nt === 0) {
          const name = tableName(latin1(d, q, q + nl));
          return name === undefined ? bad("malformed server name") : { kind: "name", name };
        }
        q += nl;
      }
      return NONE;
    }
    p += len;
  }
  return NONE;
}
