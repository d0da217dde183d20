/**
 * The address policy: who may be sent where by the listeners that open
 * destinations a client names (`socks`, `http-connect`, the tunnel server's
 * OPEN, and their config sections).
 *
 * A destination is normalised before any rule sees it, and the rules are
 * checked on the address that is actually connected to:
 *
 * - A name is checked in one canonical form: IDNA to ASCII, lower case, one
 *   trailing dot dropped. A name that is a number in any form the C resolver
 *   accepts (`127.1`, `0x7f.1`, `2130706433`, `017700000001`) is that IPv4
 *   address, on every runtime. Anything else that is not a host name
 *   (control bytes, spaces, `%`, an IPv6 zone id, a last label that is a
 *   number but not an address) is refused without a lookup.
 * - IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6
 *   addresses are IPv4 addresses, in rules too: a range written inside
 *   `::/96` (`::127.0.0.2`, `::7f00:0/104`) also holds the IPv4 addresses
 *   it spells, as a destination spelt so is checked as IPv4 (not those in
 *   `0.0.0.0/8`, which only a rule naming them reaches).
 * - The unspecified addresses (`0.0.0.0/8`, `::`) land on this host when
 *   connected to. A deny rule that covers a loopback address (127.0.0.1 or
 *   ::1) covers them, and only an allow rule whose range lies inside
 *   `0.0.0.0/8` or is `::/128` reaches them.
 * - A `host:` pattern of digits, dots and stars (`192.0.2.*`), or one with
 *   a colon, is an address pattern: it matches the address (a literal, or
 *   each one a name resolves to), never a name that starts with digits.
 * - A name is resolved once; every address it resolves to is checked. If a
 *   deny rule matches any of them the request is refused: the name points at
 *   a denied place, and which of its addresses a resolver lists first is no
 *   reason to let it through sometimes. Otherwise the first address an allow
 *   rule admits is used, and the connect goes to that address literal, so
 *   nothing resolves the name a second time between the check and the
 *   connect.
 *
 * @module
 */
import { lookup } from "node:dns/promises";
import { domainToASCII } from "node:url";
import { type Cidr, cidrContains, parseCidr } from "../protocol/cidr.ts";
import { ipv6Bytes, ipv6Text } from "../protocol/ip.ts";
import type { RuleTable } from "../forward/types.ts";

/**
 * One access rule: every part given must match.
 *
 * @example
 * ```ts
 * import { Access, type AccessRule } from "@relaykit/relaykit";
 * const rules: AccessRule[] = [{ cidr: "10.0.0.0/8", port: ["5432", "6379"] }, { host: "*.example.com", port: 443 }];
 * console.log(new Access(rules).allows("www.example.com", "93.184.216.34", 443)); // true
 * ```
 */
export interface AccessRule {
  /** Address ranges, e.g. "10.0.0.0/8". */
  cidr?: string | readonly string[];
  /**
   * Name patterns, e.g. "*.example.com" ("*" matches any labels); one of
   * digits, dots and stars ("192.0.2.*") or with a colon matches addresses.
   */
  host?: string | readonly string[];
  /** Ports: 443, "8000-8999", or a list. */
  port?: number | string | readonly (number | string)[];
}

/**
 * A destination address in its one canonical form.
 *
 * @example
 * ```ts
 * import { normalizeAddress } from "@relaykit/relaykit";
 * console.log(normalizeAddress("::FFFF:127.0.0.1")?.text); // 127.0.0.1
 * ```
 */
export interface NormalAddress {
  /** 4 bytes (IPv4, including mapped and compatible IPv6) or 16. */
  readonly bytes: Uint8Array;
  /** Dotted quad or RFC 5952 text: what is connected to. */
  readonly text: string;
  /** An unspecified address (0.0.0.0/8 or ::): a connect to it lands on this host. */
  readonly thisHost: boolean;
}

/**
 * What a client asked for, once normalised: an address, a name to resolve,
 * or something that is neither (refused without a lookup).
 *
 * @example
 * ```ts
 * import { classifyHost } from "@relaykit/relaykit";
 * console.log(classifyHost("0x7f.1")); // { address: { bytes: ..., text: "127.0.0.1", thisHost: false } }
 * console.log(classifyHost("WWW.Example.COM.")); // { name: "www.example.com", query: "www.example.com." }
 * ```
 */
export type HostClass =
  | { readonly address: NormalAddress }
  | {
    /** Lower case ASCII, no trailing dot: what name rules match. */
    readonly name: string;
    /** What is resolved: the name, with its trailing dot if it had one. */
    readonly query: string;
  }
  | { readonly invalid: string };

/** The canonical form of 4 or 16 address bytes. */
function fromBytes(b: Uint8Array): NormalAddress {
  if (b.length === 16 && b.subarray(0, 10).every((x) => x === 0)) {
    const mapped = b[10] === 0xff && b[11] === 0xff;
    // ::a.b.c.d, but not :: and ::1, which are IPv6's own
    const compatible = b[10] === 0 && b[11] === 0 && (b[12]! + b[13]! + b[14]! !== 0 || b[15]! > 1);
    if (mapped || compatible) b = b.slice(12);
  }
  if (b.length === 4) {
    return { bytes: b, text: Array.from(b).join("."), thisHost: b[0] === 0 };
  }
  return { bytes: b, text: ipv6Text(b), thisHost: b.every((x) => x === 0) };
}

/** One part of an inet_aton address: decimal, 0x hex or 0 octal; NaN if none. */
function atonPart(p: string): number {
  if (/^0x[0-9a-f]+$/.test(p)) return parseInt(p.slice(2), 16);
  if (/^0[0-7]*$/.test(p)) return parseInt(p, 8);
  if (/^[1-9][0-9]*$/.test(p)) return Number(p);
  return NaN;
}

/**
 * The IPv4 address of `text` read as inet_aton(3) reads it (what
 * getaddrinfo accepts for a name): 1 to 4 parts, the last filling the
 * remaining bytes ("127.1" is 127.0.0.1, "2130706433" too). Lower case input.
 */
function inetAton(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length > 4) return undefined;
  const nums = parts.map(atonPart);
  if (nums.some((n) => Number.isNaN(n))) return undefined;
  const last = nums.pop()!;
  if (nums.some((n) => n > 255) || last >= 2 ** (8 * (4 - nums.length))) return undefined;
  let v = last;
  nums.forEach((n, i) => (v += n * 2 ** (8 * (3 - i))));
  return new Uint8Array([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}

/**
 * The canonical form of an address literal, or undefined if `text` is not
 * one. Accepts a dotted quad, the other inet_aton forms ("127.1", "0x7f.1",
 * "2130706433", "017700000001"), and IPv6 in any case, bracketed or not;
 * maps IPv4-mapped and IPv4-compatible IPv6 to IPv4. A zone id ("%eth0")
 * is not an address here.
 *
 * @example
 * ```ts
 * import { normalizeAddress } from "@relaykit/relaykit";
 * console.log(normalizeAddress("0")); // { bytes: ..., text: "0.0.0.0", thisHost: true }
 * ```
 */
export function normalizeAddress(text: string): NormalAddress | undefined {
  const c = classifyHost(text);
  return "address" in c ? c.address : undefined;
}

/**
 * Normalise a destination host as a client sent it (see the module doc).
 *
 * @param host An address literal or a name, from SOCKS, CONNECT or a tunnel OPEN.
 * @returns An address, a name to resolve, or why it is neither.
 */
export function classifyHost(host: string): HostClass {
  let h = host;
  if (h.length === 0 || h.length > 255) return { invalid: "not a host name or an address" };
  const bracketed = h.startsWith("[") && h.endsWith("]");
  if (bracketed) h = h.slice(1, -1);
  if (h.includes("%")) return { invalid: "a zone id or % is not accepted in a destination" };
  if (bracketed || h.includes(":")) {
    try {
      return { address: fromBytes(ipv6Bytes(h)) };
    } catch {
      return { invalid: "not an IPv6 address" };
    }
  }
  // deno-lint-ignore no-control-regex -- ASCII test
  if (/[^\x00-\x7f]/.test(h)) {
    h = domainToASCII(h);
    if (h === "") return { invalid: "not a host name (IDNA)" };
  }
  h = h.toLowerCase();
  const dotted = h.endsWith(".");
  const name = dotted ? h.slice(0, -1) : h;
  const labels = name.split(".");
  if (
    name.length === 0 || name.length > 253 ||
    labels.some((l) => !/^[a-z0-9_-]{1,63}$/.test(l))
  ) {
    return { invalid: "not a host name" };
  }
  const v4 = inetAton(name);
  if (v4 !== undefined) return { address: fromBytes(v4) };
  if (/^(0x[0-9a-f]*|[0-9]+)$/.test(labels[labels.length - 1]!)) {
    // a resolver may read it as a number, or may not: neither is safe to guess
    return { invalid: "a number that is not an IPv4 address" };
  }
  return { name, query: dotted ? `${name}.` : name };
}

/** A name resolver: every address of `name`, in the order to try them. */
export type Resolver = (name: string) => Promise<readonly string[]>;

/**
 * The system resolver (getaddrinfo through the runtime's node:dns).
 *
 * @example
 * ```ts
 * import { systemResolver } from "@relaykit/relaykit";
 * console.log((await systemResolver("localhost")).length > 0); // true
 * ```
 */
export async function systemResolver(name: string): Promise<readonly string[]> {
  return (await lookup(name, { all: true })).map((a) => a.address);
}

/**
 * The outcome of {@link Access.admit}: the address literal to connect to,
 * or a refusal with its code (`RK_EDENIED`, `RK_ERESOLVE`) and reason.
 */
export type Admission =
  | {
    /** The checked address: connect to exactly this. */
    readonly address: NormalAddress;
    /** The name asked for, normalised, if a name was. */
    readonly name: string | undefined;
  }
  | { readonly refused: string; readonly code: "RK_EDENIED" | "RK_ERESOLVE" };

interface CompiledRule {
  cidrs: Cidr[] | undefined;
  hosts: RegExp[] | undefined;
  /** Per pattern: an address pattern (matched against the address only). */
  addressOnly: boolean[] | undefined;
  /** The name patterns the regular expressions were made from, normalised. */
  patterns: string[] | undefined;
  ports: [number, number][] | undefined;
}

const list = <T>(v: T | readonly T[] | undefined): T[] | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? [...v] : [v as T];

/**
 * Whether a normalised `host:` pattern is an address pattern: digits, dots
 * and stars with a digit among them (`192.0.2.*`), or anything with a colon
 * (`2001:db8::*`). It matches the address, a literal or what a name
 * resolves to, never the name: `192.0.2.*` must not admit a name such as
 * `192.0.2.attacker.example` that points anywhere.
 */
function isAddressPattern(p: string): boolean {
  return /^[0-9.*]*[0-9][0-9.*]*$/.test(p) || p.includes(":");
}

/** A name pattern in the form names are matched in (lower case ASCII, no trailing dot). */
function normalPattern(p: string): string {
  return p.toLowerCase().replace(/\.$/, "").split(".").map((l) =>
    // deno-lint-ignore no-control-regex -- ASCII test
    /[^\x00-\x7f]/.test(l) && !l.includes("*") ? domainToASCII(l) || l : l
  ).join(".");
}

function compile(rule: AccessRule): CompiledRule {
  const ports = list(rule.port)?.map((p): [number, number] => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(String(p));
    const lo = Number(m?.[1]), hi = Number(m?.[2] ?? m?.[1]);
    if (m === null || lo < 1 || hi > 65535 || lo > hi) {
      throw new RangeError(`"${p}" is not a port or a port range (like 443 or 8000-8999)`);
    }
    return [lo, hi];
  });
  const patterns = list(rule.host)?.map(normalPattern);
  const hosts = patterns?.map((p) =>
    new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`)
  );
  const addressOnly = patterns?.map(isAddressPattern);
  return { cidrs: list(rule.cidr)?.flatMap(ruleRanges), hosts, addressOnly, patterns, ports };
}

/**
 * The ranges of a rule's CIDR text as destinations are normalised: a range
 * inside the IPv4-compatible block `::/96` also holds its IPv4 twin
 * (`::7f00:2/128` is `127.0.0.2/32` too), unless the twin lies in
 * `0.0.0.0/8` (`::/128`, `::1/128`: IPv6's own, and this host's
 * addresses, which only a rule naming them reaches).
 */
function ruleRanges(text: string): Cidr[] {
  const c = parseCidr(text);
  if (c.bytes.length !== 16 || c.prefix < 96 || c.bytes.subarray(0, 12).some((x) => x !== 0)) {
    return [c];
  }
  const twin: Cidr = { text, bytes: c.bytes.slice(12), prefix: c.prefix - 96 };
  return twin.prefix >= 8 && twin.bytes[0] === 0 ? [c] : [c, twin];
}

const LOOPBACK = [new Uint8Array([127, 0, 0, 1]), ipv6Bytes("::1")];

/** Whether range `r` lies inside the unspecified addresses: it names them. */
const namesThisHost = (r: Cidr) =>
  r.bytes.length === 4 ? r.prefix >= 8 && r.bytes[0] === 0 : r.prefix === 128 &&
    r.bytes.every((x) => x === 0);

/**
 * Allow/deny checks over destinations, and the one place a destination a
 * client names is normalised, resolved and checked.
 *
 * @example
 * ```ts
 * import { Access } from "@relaykit/relaykit";
 * const access = new Access([{ cidr: "10.0.0.0/8", port: "5432" }], [{ host: "*.internal" }]);
 * console.log(access.allows(undefined, "10.1.2.3", 5432)); // true
 * console.log(access.allows("db.internal", "10.1.2.3", 5432)); // false
 * ```
 */
export class Access {
  readonly #allow: CompiledRule[];
  readonly #deny: CompiledRule[];

  /**
   * Compile the rules.
   *
   * @throws {RangeError} for a bad CIDR or port.
   */
  constructor(allow: readonly AccessRule[] = [], deny: readonly AccessRule[] = []) {
    this.#allow = allow.map(compile);
    this.#deny = deny.map(compile);
    TABLES.set(this, { allow: this.#allow.map(table), deny: this.#deny.map(table) });
  }

  /** Whether rule `r` matches; `addressOk` decides its CIDR part. */
  static #matches(
    r: CompiledRule,
    name: string | undefined,
    a: NormalAddress,
    port: number,
    addressOk: (c: Cidr) => boolean,
  ): boolean {
    if (r.ports !== undefined && !r.ports.some(([lo, hi]) => port >= lo && port <= hi)) {
      return false;
    }
    if (r.cidrs !== undefined && !r.cidrs.some(addressOk)) return false;
    if (
      r.hosts !== undefined &&
      !r.hosts.some((h, i) => h.test(r.addressOnly?.[i] ? a.text : name ?? a.text))
    ) return false;
    return true;
  }

  #denied(name: string | undefined, a: NormalAddress, port: number): boolean {
    const hit = (c: Cidr) =>
      cidrContains(c, a.bytes) || (a.thisHost && LOOPBACK.some((l) => cidrContains(c, l)));
    return this.#deny.some((r) => Access.#matches(r, name, a, port, hit));
  }

  #allowed(name: string | undefined, a: NormalAddress, port: number): boolean {
    if (a.thisHost) {
      // only a rule that names the unspecified addresses reaches them
      const named = (c: Cidr) => namesThisHost(c) && cidrContains(c, a.bytes);
      return this.#allow.some((r) =>
        r.cidrs !== undefined && Access.#matches(r, name, a, port, named)
      );
    }
    return this.#allow.some((r) =>
      Access.#matches(r, name, a, port, (c) => cidrContains(c, a.bytes))
    );
  }

  /**
   * Whether `name` (if a name was asked for) at `ip`:`port` may be reached.
   * Both are normalised first; an `ip` that is not an address literal is
   * never allowed.
   */
  allows(name: string | undefined, ip: string, port: number): boolean {
    const a = normalizeAddress(ip);
    if (a === undefined) return false;
    let n: string | undefined;
    if (name !== undefined) {
      const c = classifyHost(name);
      if ("invalid" in c) return false;
      n = "name" in c ? c.name : undefined;
    }
    return !this.#denied(n, a, port) && this.#allowed(n, a, port);
  }

  /**
   * Normalise the destination `host`:`port` a client asked for, resolve it
   * once if it is a name, and check every address (see the module doc).
   *
   * @param host An address literal or a name, as the client sent it.
   * @param port The destination port.
   * @param resolve The resolver. @default systemResolver
   * @returns The address to connect to, or why not.
   */
  async admit(host: string, port: number, resolve: Resolver = systemResolver): Promise<Admission> {
    const c = classifyHost(host);
    const shown = (what: string) => `${what.includes(":") ? `[${what}]` : what}:${port}`;
    if ("invalid" in c) {
      return {
        refused: `"${host}":${port} is not allowed (${c.invalid})`,
        code: "RK_EDENIED",
      };
    }
    if ("address" in c) {
      const a = c.address;
      if (this.#denied(undefined, a, port) || !this.#allowed(undefined, a, port)) {
        return { refused: `${shown(a.text)} is not allowed${why(a)}`, code: "RK_EDENIED" };
      }
      return { address: a, name: undefined };
    }
    let found: readonly string[];
    try {
      found = await resolve(c.query);
    } catch {
      return { refused: `cannot resolve "${c.name}"`, code: "RK_ERESOLVE" };
    }
    if (found.length === 0) return { refused: `cannot resolve "${c.name}"`, code: "RK_ERESOLVE" };
    let pick: NormalAddress | undefined;
    for (const text of found) {
      // the resolver's own answer: a zone id does not change which host it is
      const a = normalizeAddress(text.replace(/%.*$/, ""));
      if (a === undefined || this.#denied(c.name, a, port)) {
        return {
          refused: `${shown(c.name)} is not allowed (it resolves to ${text}${
            a === undefined ? ", not an address" : ", which is denied"
          })`,
          code: "RK_EDENIED",
        };
      }
      if (pick === undefined && this.#allowed(c.name, a, port)) pick = a;
    }
    if (pick === undefined) {
      return {
        refused: `${shown(c.name)} is not allowed (it resolves to ${found.join(", ")})`,
        code: "RK_EDENIED",
      };
    }
    return { address: pick, name: c.name };
  }
}

/** A compiled rule as the native engine's router takes it. */
function table(r: CompiledRule): RuleTable {
  const t: { -readonly [K in keyof RuleTable]: RuleTable[K] } = {};
  if (r.cidrs !== undefined) t.cidrs = r.cidrs.map((c) => ({ bytes: c.bytes, prefix: c.prefix }));
  if (r.patterns !== undefined) t.hosts = r.patterns;
  if (r.ports !== undefined) t.ports = r.ports;
  return t;
}

const TABLES = new WeakMap<Access, { allow: RuleTable[]; deny: RuleTable[] }>();

/**
 * The compiled rules of `access`, normalised (CIDRs masked, name patterns
 * in lower case ASCII): what the native engine's routers check against,
 * with the semantics of this module (native/src/router.c).
 */
export function accessTables(access: Access): { allow: RuleTable[]; deny: RuleTable[] } {
  return TABLES.get(access)!;
}

/** The reason shown after "is not allowed" for an address literal. */
const why = (a: NormalAddress) => a.thisHost ? " (an unspecified address is this host)" : "";

/** "host:port" of an admitted address, bracketed for IPv6: what engines connect to. */
export function addressPort(a: NormalAddress, port: number): string {
  return a.bytes.length === 16 ? `[${a.text}]:${port}` : `${a.text}:${port}`;
}
