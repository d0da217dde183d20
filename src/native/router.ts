/**
 * The description of a built-in router (SOCKS4/4a/5, HTTP CONNECT) as the
 * C library takes it (rk_listener_set_router): its kind, whether refusals
 * go to the host, its limits, its compiled allow/deny rules and its users,
 * written in the one layout native/src/router.c reads. The rules arrive
 * already normalised by the address policy (src/proxy/address_policy.ts):
 * CIDRs masked to their prefix, name patterns in lower case ASCII.
 *
 * @module
 */

/** One entry of a routing table (src/proxy/route_table.ts). */
export interface TableRule {
  /** What it matches on. */
  readonly match: "prefix" | "host" | "sni" | "default";
  /** The prefix's bytes, or the name pattern's (lower case ASCII). */
  readonly pattern: Uint8Array;
  /** A fixed address the engine connects to itself, or undefined (the host decides). */
  readonly to: { readonly host: string; readonly port: number } | undefined;
  /** Connect timeout in ms, or undefined for the listener's. */
  readonly connectTimeout: number | undefined;
}

/** One compiled access rule: each part given must match. */
export interface RuleTable {
  /** Address ranges (4 or 16 bytes, masked) and their prefix lengths. */
  readonly cidrs?: readonly { readonly bytes: Uint8Array; readonly prefix: number }[];
  /** Name patterns ("*" matches any run of characters), normalised. */
  readonly hosts?: readonly string[];
  /** Port ranges, inclusive. */
  readonly ports?: readonly (readonly [number, number])[];
}

/** A built-in router that the native engine may run itself. */
export interface EngineRouter {
  /** Which handshake, or a routing table. */
  readonly kind: "socks" | "http-connect" | "table";
  /** Destinations allowed. */
  readonly allow: readonly RuleTable[];
  /** Destinations refused even if allowed. */
  readonly deny: readonly RuleTable[];
  /** Username and password pairs; when given, clients must authenticate. */
  readonly users: Readonly<Record<string, string>> | undefined;
  /** A routing table's entries (kind "table"). */
  readonly table?: readonly TableRule[];
  /** Someone listens for refusals: the engine hands them to the router. */
  readonly reports: boolean;
  /**
   * The engine hands connection `id` over after sending `n` handshake
   * replies itself: the router must not send them again.
   */
  sent(id: number, n: number): void;
}

/** The description's first word (RK__ROUTER_MAGIC, "RKR1"). */
const MAGIC = 0x524b5231;
/** RK_ROUTER_SOCKS, RK_ROUTER_CONNECT, RK_ROUTER_TABLE. */
const KINDS = { socks: 1, "http-connect": 2, table: 3 } as const;
/** A table entry's match kinds (router.c RK__MATCH_*). */
const MATCHES = { prefix: 1, host: 2, sni: 3, default: 4 } as const;
/** RK_ROUTER_REPORT. */
const REPORT = 1;
/** A part a rule does not have. */
const ABSENT = 0xffffffff;

/** How a connection of the router goes out. */
export interface RouterConnect {
  /** Most bytes held before a decision. */
  routeLimit: number;
  /** Connect timeout in ms (0: none). */
  connectTimeout: number;
  /** RK_FAMILY_* code. */
  family: number;
  /** Source address of outbound connects ("" for none). */
  bindAddress: string;
}

/** The bytes of rk_listener_set_router's description. */
export function encodeRouter(r: EngineRouter, how: RouterConnect): Uint8Array {
  const enc = new TextEncoder();
  const parts: number[] = [];
  const u32 = (v: number) => parts.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
  const bytes = (b: Uint8Array) => {
    u32(b.length);
    for (const x of b) parts.push(x);
  };
  const text = (s: string) => bytes(enc.encode(s));
  const rules = (list: readonly RuleTable[]) => {
    u32(list.length);
    for (const rule of list) {
      if (rule.cidrs === undefined) u32(ABSENT);
      else {
        u32(rule.cidrs.length);
        for (const c of rule.cidrs) {
          u32(c.bytes.length);
          u32(c.prefix);
          for (const x of c.bytes) parts.push(x);
        }
      }
      if (rule.hosts === undefined) u32(ABSENT);
      else {
        u32(rule.hosts.length);
        rule.hosts.forEach(text);
      }
      if (rule.ports === undefined) u32(ABSENT);
      else {
        u32(rule.ports.length);
        for (const [lo, hi] of rule.ports) u32(lo), u32(hi);
      }
    }
  };
  u32(MAGIC);
  u32(KINDS[r.kind]);
  u32(r.reports ? REPORT : 0);
  u32(how.routeLimit);
  u32(how.connectTimeout);
  u32(how.family);
  text(how.bindAddress);
  rules(r.allow);
  rules(r.deny);
  if (r.users === undefined) u32(ABSENT);
  else {
    const names = Object.keys(r.users);
    u32(names.length);
    for (const name of names) text(name), text(r.users[name]!);
  }
  if (r.kind === "table") {
    const table = r.table ?? [];
    u32(table.length);
    for (const e of table) {
      u32(MATCHES[e.match]);
      bytes(e.pattern);
      // a fixed address: the engine connects itself; else the host decides
      u32(e.to === undefined ? 0 : 1);
      text(e.to?.host ?? "");
      u32(e.to?.port ?? 0);
      u32(e.connectTimeout ?? ABSENT);
    }
  }
  return new Uint8Array(parts);
}
