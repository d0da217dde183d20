/**
 * A static routing table: each entry matches a connection's first bytes
 * (the Host header of an HTTP/1.x request, the server name of a TLS
 * ClientHello, a prefix of bytes, or anything) and names where it goes.
 * The first entry that matches decides; bytes are awaited while an entry
 * before it cannot tell yet. A route function like any other, carrying a
 * description the native engine runs itself (native/src/router.c) for the
 * entries that go to a fixed address; the others (a backend with several
 * servers, a name to resolve) are decided here.
 *
 * @module
 */
import { errorFor } from "../errors.ts";
import {
  type FirstBytes,
  httpHost,
  nameMatches,
  tableName,
  tlsSni,
} from "../protocol/first_bytes.ts";
import type { InetEndpoint } from "../forward/types.ts";
import type { TableRule } from "../native/router.ts";
import type { Backend } from "./balance.ts";
import type { RouteFunction } from "./routing.ts";
import { ipv6Bytes, isIPv4 } from "../protocol/ip.ts";
import { withEngineRouter } from "./socks.ts";

/**
 * One entry of a routing table: one of `host`, `sni`, `prefix` or
 * `default`, and one of `to` or `backend`.
 *
 * @example
 * ```ts
 * import { type RouteTableEntry, routeTable } from "@relaykit/relaykit";
 * const table: RouteTableEntry[] = [
 *   { host: "a.example.com", to: { host: "127.0.0.1", port: 8001 } },
 *   { sni: "*.example.org", to: { host: "127.0.0.1", port: 8443 } },
 *   { prefix: "SSH-", to: { host: "127.0.0.1", port: 22 } },
 *   { default: true, to: { host: "127.0.0.1", port: 8000 } },
 * ];
 * console.log(typeof routeTable(table));
 * ```
 */
export interface RouteTableEntry {
  /** The Host header's name (port dropped), a pattern: `*` matches any run of characters. */
  host?: string;
  /** A TLS ClientHello's server name, a pattern like `host`. */
  sni?: string;
  /** The first bytes (a string is UTF-8). */
  prefix?: string | Uint8Array;
  /** Matches every connection. */
  default?: true;
  /** Where matching connections go. */
  to?: InetEndpoint;
  /** Or a backend: its balancing picks a server per connection. */
  backend?: Backend;
  /** Connect timeout in ms for this entry. @default the proxy's */
  connectTimeout?: number;
}

/** Where a table entry sends a connection, when the native engine may go there itself. */
function fixedTarget(e: RouteTableEntry): InetEndpoint | undefined {
  return e.to !== undefined && isIpLiteral(e.to.host) ? e.to : undefined;
}

function isIpLiteral(host: string): boolean {
  if (isIPv4(host)) return true;
  try {
    ipv6Bytes(host);
    return true;
  } catch {
    return false;
  }
}

const patternOf = (what: string, p: string): string => {
  const name = p === "*" ? "*" : tableName(p.replace(/\*/g, "x"));
  if (name === undefined) {
    throw new TypeError(`Routing table: ${what} "${p}" is not a host name pattern`);
  }
  return p.toLowerCase().replace(/\.$/, "");
};

/**
 * A route function for a static routing table (see RouteTableEntry): the
 * first entry that matches decides. A connection no entry matches, or
 * whose first bytes are malformed where an entry must read them (a Host
 * header given twice, a head over 16 KiB, a ClientHello whose lengths do
 * not add up), closes with `RK_EROUTE` and a message that says why.
 *
 * @example
 * ```ts
 * import { routeTable, TcpProxy } from "@relaykit/relaykit";
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   route: routeTable([
 *     { host: "api.test", to: { host: "127.0.0.1", port: 8001 } },
 *     { default: true, to: { host: "127.0.0.1", port: 8000 } },
 *   ]),
 * });
 * await proxy.close();
 * ```
 * @throws {TypeError} for an entry without exactly one match and one destination.
 */
export function routeTable(entries: readonly RouteTableEntry[]): RouteFunction {
  const enc = new TextEncoder();
  const rules: TableRule[] = [];
  const names: string[] = []; // the name patterns, as text
  for (const e of entries) {
    const kinds = (["host", "sni", "prefix", "default"] as const).filter((k) => e[k] !== undefined);
    if (kinds.length !== 1) {
      throw new TypeError("Routing table: an entry needs one of host, sni, prefix or default");
    }
    if ((e.to === undefined) === (e.backend === undefined)) {
      throw new TypeError("Routing table: an entry needs one of to or backend");
    }
    const match = kinds[0]!;
    const pattern = match === "default"
      ? new Uint8Array(0)
      : match === "prefix"
      ? (typeof e.prefix === "string" ? enc.encode(e.prefix) : e.prefix!.slice())
      : enc.encode(patternOf(match, e[match]!));
    if (match === "prefix" && pattern.length === 0) {
      throw new TypeError("Routing table: a prefix needs at least one byte");
    }
    rules.push({ match, pattern, to: fixedTarget(e), connectTimeout: e.connectTimeout });
    names.push(new TextDecoder().decode(pattern));
  }
  const route: RouteFunction = (data, conn) => {
    let http: FirstBytes | undefined, tls: FirstBytes | undefined;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      let hit: boolean;
      if (r.match === "default") hit = true;
      else if (r.match === "prefix") {
        const p = r.pattern;
        const n = Math.min(p.length, data.length);
        let same = true;
        for (let k = 0; k < n && same; k++) same = p[k] === data[k];
        if (same && data.length < p.length) return undefined;
        hit = same;
      } else {
        const f = r.match === "host" ? (http ??= httpHost(data)) : (tls ??= tlsSni(data));
        if (f.kind === "more") return undefined;
        if (f.kind === "bad") {
          throw errorFor(f.why, "RK_EROUTE", {
            connectionId: conn.id,
          });
        }
        hit = f.kind === "name" && nameMatches(names[i]!, f.name);
      }
      if (!hit) continue;
      const e = entries[i]!;
      const timeout = e.connectTimeout ?? e.backend?.connectTimeout;
      const at = (remote: InetEndpoint) =>
        timeout === undefined ? { remote } : { remote, connectTimeout: timeout };
      if (e.to !== undefined) return at(e.to);
      const server = e.backend!.pick(conn.remote?.host);
      if (server === undefined) {
        throw errorFor(
          `backend "${e.backend!.name}" has no server up`,
          "RK_EROUTE",
          { connectionId: conn.id },
        );
      }
      if (!("host" in server.address)) return { remote: server.address };
      return at(server.address);
    }
    throw errorFor("no routing table entry matches", "RK_EROUTE", {
      connectionId: conn.id,
    });
  };
  return withEngineRouter(route, {
    kind: "table",
    allow: [],
    deny: [],
    users: undefined,
    reports: false,
    table: rules.map((r, i) => ({
      ...r,
      connectTimeout: r.connectTimeout ?? entries[i]!.backend?.connectTimeout,
    })),
    sent: () => {},
  });
}
