/**
 * The config file's sections checked one by one (listeners, backends and
 * their servers, tunnel servers and clients, admin, and the values inside
 * them), each mistake reported where it is.
 *
 * @module
 */
import { distance } from "../spelling.ts";
import { tableName } from "../protocol/first_bytes.ts";
import { isMap, isScalar, isSeq, type YAMLMap } from "yaml";
import type { Endpoint } from "../forward/types.ts";
import { BALANCE_MODES } from "../proxy/balance.ts";
import type { AcceptProxyOptions } from "../proxy/accept_proxy.ts";
import * as settings from "../settings.ts";
import type { SendProxyOptions } from "../types.ts";
import type { HealthCheckOptions } from "../proxy/health.ts";
import { Access, type AccessRule } from "../proxy/address_policy.ts";
import type { RouterOptions } from "../proxy/socks.ts";
import type {
  AdminConfig,
  BackendConfig,
  ConfigPlace,
  ListenerConfig,
  RouteEntryConfig,
  ServerConfig,
  TunnelClientConfig,
  TunnelServerConfig,
} from "./types.ts";
import type { At, Node } from "./yaml.ts";

/** Walks the YAML nodes, reporting through `at`. */
export class Validator {
  readonly at: At;
  readonly place: (node: Node, key: string) => ConfigPlace;
  constructor(at: At, place: (node: Node, key: string) => ConfigPlace) {
    this.at = at;
    this.place = place;
  }

  /** The pairs of a map, checked against known and required keys. */
  keys(node: Node, where: string, known: string[], required: string[] = []): Map<string, Node> {
    const out = new Map<string, Node>();
    if (!isMap(node)) {
      this.at(node, where, "expected a mapping (key: value)");
      return out;
    }
    for (const pair of (node as YAMLMap).items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const path = where ? `${where}.${k}` : k;
      if (!known.includes(k)) {
        const plain = k.replace(/-/g, "_").toLowerCase();
        const near = known.find((n) => n === plain || distance(n, plain) <= 2);
        this.at(
          pair.key,
          path,
          `unknown key${near ? ` (did you mean "${near}"?)` : ""}; known: ${known.join(", ")}`,
        );
        continue;
      }
      out.set(k, pair.value ?? null);
    }
    for (const r of required) {
      if (!out.has(r)) this.at(node, where ? `${where}.${r}` : r, "is required");
    }
    return out;
  }

  /** The value node of `key` in map `node`. */
  valueNode(node: Node, key: string): Node {
    if (!isMap(node)) return undefined;
    return (node as YAMLMap).items.find((p) => isScalar(p.key) && p.key.value === key)?.value;
  }

  /** Item `i` of a list node. */
  seqItem(node: Node, i: number): Node {
    return isSeq(node) ? node.items[i] : undefined;
  }

  /** A value checked by a shared setting (src/settings.ts). */
  setting<T>(node: Node, where: string, s: settings.Setting<T>): T | undefined {
    try {
      return s.parse(isScalar(node) ? node.value : isSeq(node) ? [] : isMap(node) ? {} : node);
    } catch (err) {
      this.at(node, where, (err as Error).message);
      return undefined;
    }
  }

  seq(node: Node, where: string): [number, Node][] {
    if (node === undefined) return [];
    if (!isSeq(node)) {
      this.at(node, where, "expected a list");
      return [];
    }
    return node.items.map((n, i) => [i, n]);
  }

  string(node: Node, where: string): string | undefined {
    if (isScalar(node) && typeof node.value === "string" && node.value !== "") return node.value;
    this.at(node, where, `expected a non-empty string, not ${describe(node)}`);
    return undefined;
  }

  int(node: Node, where: string, min: number, max: number): number | undefined {
    if (isScalar(node) && typeof node.value === "number" && Number.isInteger(node.value)) {
      if (node.value >= min && node.value <= max) return node.value;
    }
    this.at(node, where, `expected an integer from ${min} to ${max}, not ${describe(node)}`);
    return undefined;
  }

  oneOf<T extends string>(node: Node, where: string, values: readonly T[]): T | undefined {
    if (isScalar(node) && values.includes(node.value as T)) return node.value as T;
    this.at(node, where, `expected one of ${values.join(", ")}, not ${describe(node)}`);
    return undefined;
  }

  host(node: Node, where: string): string | undefined {
    const h = this.string(node, where);
    return h?.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
  }

  backend(node: Node, where: string): BackendConfig | undefined {
    const m = this.keys(node, where, [
      "name",
      "host",
      "port",
      "servers",
      "balance",
      "retries",
      "connect_timeout",
      "send_proxy",
      "health_check",
    ], ["name"]);
    const name = m.has("name") ? this.string(m.get("name"), `${where}.name`) : undefined;
    const servers: ServerConfig[] = [];
    if (m.has("servers")) {
      if (m.has("host") || m.has("port")) {
        this.at(node, where, "give either host and port, or servers, not both");
      }
      for (const [i, s] of this.seq(m.get("servers"), `${where}.servers`)) {
        const sw = `${where}.servers[${i}]`;
        const sm = this.keys(s, sw, ["name", "host", "port", "path", "weight"]);
        const server = this.endpoint(sm, s, sw, false);
        const weight = sm.has("weight") ? this.int(sm.get("weight"), `${sw}.weight`, 0, 256) : 1;
        const sname = sm.has("name") ? this.string(sm.get("name"), `${sw}.name`) : undefined;
        if (server !== undefined && weight !== undefined) {
          servers.push({ name: sname, address: server, weight });
        }
      }
      const list = m.get("servers");
      if (isSeq(list) && list.items.length === 0) {
        this.at(list, `${where}.servers`, "needs at least one server");
      }
    } else if (m.has("host") || m.has("port")) {
      const server = this.endpoint(m, node, where, false);
      if (server !== undefined) servers.push({ name: undefined, address: server, weight: 1 });
    } else {
      this.at(node, where, "needs host and port, or servers");
    }
    const balance = m.has("balance")
      ? this.oneOf(m.get("balance"), `${where}.balance`, BALANCE_MODES)
      : "roundrobin";
    const retries = m.has("retries")
      ? this.int(m.get("retries"), `${where}.retries`, 0, 100)
      : undefined;
    const connectTimeout = m.has("connect_timeout")
      ? this.setting(m.get("connect_timeout"), `${where}.connect_timeout`, settings.millis)
      : undefined;
    const sendProxy = m.has("send_proxy")
      ? this.sendProxy(m.get("send_proxy"), `${where}.send_proxy`)
      : undefined;
    const healthCheck = m.has("health_check")
      ? this.healthCheck(m.get("health_check"), `${where}.health_check`)
      : undefined;
    if (name === undefined || balance === undefined || servers.length === 0) return undefined;
    return { name, servers, balance, retries, connectTimeout, sendProxy, healthCheck };
  }

  healthCheck(node: Node, where: string): HealthCheckOptions | undefined {
    if (isScalar(node) && node.value === true) return {};
    const m = this.keys(node, where, ["interval", "timeout", "rise", "fall", "send", "expect"]);
    const out: HealthCheckOptions = {};
    for (const k of ["interval", "timeout", "rise", "fall"] as const) {
      if (!m.has(k)) continue;
      const min = k === "rise" || k === "fall" ? 1 : 10;
      const n = this.int(m.get(k), `${where}.${k}`, min, 0x7fffffff);
      if (n !== undefined) out[k] = n;
    }
    for (const k of ["send", "expect"] as const) {
      if (!m.has(k)) continue;
      const t = this.string(m.get(k), `${where}.${k}`);
      if (t !== undefined) out[k] = t;
    }
    return out;
  }

  /** host+port (default port: required), or path. */
  endpoint(m: Map<string, Node>, node: Node, where: string, listen: boolean): Endpoint | undefined {
    const hostKey = listen ? "address" : "host";
    if (m.has("path")) {
      if (m.has(hostKey) || m.has("port")) {
        this.at(node, where, `give either path, or ${hostKey} and port`);
      }
      const path = this.string(m.get("path"), `${where}.path`);
      return path === undefined ? undefined : { path };
    }
    if (!m.has("port")) {
      this.at(node, `${where}.port`, "is required");
      return undefined;
    }
    const port = this.int(m.get("port"), `${where}.port`, listen ? 0 : 1, 65535);
    let host: string | undefined = listen ? "0.0.0.0" : undefined;
    if (m.has(hostKey)) host = this.host(m.get(hostKey), `${where}.${hostKey}`);
    else if (!listen) this.at(node, `${where}.host`, "is required");
    if (host === undefined || port === undefined) return undefined;
    return { host, port };
  }

  sendProxy(node: Node, where: string): SendProxyOptions | undefined {
    if (isScalar(node)) {
      const v = this.setting(node, where, settings.sendProxyVersion);
      return v === undefined ? undefined : { version: v === "v1" ? 1 : 2 };
    }
    const m = this.keys(node, where, ["version", "unique_id", "authority", "crc32c"], ["version"]);
    const version = m.has("version")
      ? this.setting(m.get("version"), `${where}.version`, settings.sendProxyVersion)
      : undefined;
    if (version === undefined) return undefined;
    const out: SendProxyOptions = { version: version === "v1" ? 1 : 2 };
    if (m.has("unique_id")) {
      out.uniqueId = this.bool(m.get("unique_id"), `${where}.unique_id`) ?? false;
    }
    if (m.has("crc32c")) out.crc32c = this.bool(m.get("crc32c"), `${where}.crc32c`) ?? false;
    if (m.has("authority")) {
      const a = this.string(m.get("authority"), `${where}.authority`);
      if (a !== undefined) out.authority = a;
    }
    return out;
  }

  /** The admin endpoint: address (default 127.0.0.1) and port, or path; token or token_file. */
  admin(node: Node, where: string): AdminConfig | undefined {
    const m = this.keys(node, where, [
      "address",
      "port",
      "path",
      "token",
      "token_file",
      "read_open",
    ]);
    if (!isMap(node)) return undefined;
    const e = this.endpoint(m, node, where, true);
    // loopback unless an address is given
    const at = e !== undefined && "host" in e && !m.has("address")
      ? { host: "127.0.0.1", port: e.port }
      : e;
    const readOpen = m.has("read_open")
      ? this.bool(m.get("read_open"), `${where}.read_open`)
      : false;
    if (m.has("token") && m.has("token_file")) {
      this.at(node, where, "give either token or token_file, not both");
    }
    let token: AdminConfig["token"];
    if (m.has("token_file")) {
      const file = this.string(m.get("token_file"), `${where}.token_file`);
      if (file !== undefined) token = { file };
    } else if (m.has("token")) {
      const value = this.string(m.get("token"), `${where}.token`);
      if (value !== undefined) token = { value };
    } else if (readOpen !== true) {
      this.at(
        node,
        where,
        "needs token or token_file (or read_open: true for a read-only endpoint)",
      );
    }
    if (at === undefined || readOpen === undefined) return undefined;
    return { listen: at, token, readOpen };
  }

  /** allow, deny (lists of { cidr, host, port }), users ({ name: password }). */
  router(node: Node, where: string): RouterOptions | undefined {
    const m = this.keys(node, where, ["allow", "deny", "users"], ["allow"]);
    const options = this.rules(m, where);
    if (m.has("users")) {
      const users = this.users(m.get("users"), `${where}.users`);
      if (users !== undefined) options.users = users;
    }
    return options;
  }

  /** users: { name: password }. */
  users(node: Node, where: string): Record<string, string> | undefined {
    if (!isMap(node)) {
      this.at(node, where, "expected a mapping of user names to passwords");
      return undefined;
    }
    // no prototype: a user named "__proto__" is a user, not a lost key
    const users = Object.create(null) as Record<string, string>;
    for (const pair of (node as YAMLMap).items) {
      const user = isScalar(pair.key) ? String(pair.key.value) : "";
      const pass = this.string(pair.value, `${where}.${user}`);
      if (pass !== undefined) users[user] = pass;
    }
    return users;
  }

  /** allow and deny: lists of { cidr, host, port }. */
  rules(m: Map<string, Node>, where: string): RouterOptions {
    const rules = (key: "allow" | "deny"): AccessRule[] => {
      const out: AccessRule[] = [];
      for (const [i, r] of this.seq(m.get(key), `${where}.${key}`)) {
        const w = `${where}.${key}[${i}]`;
        const rm = this.keys(r, w, ["cidr", "host", "port"]);
        const rule: AccessRule = {};
        if (rm.has("cidr")) rule.cidr = this.string(rm.get("cidr"), `${w}.cidr`) ?? "";
        if (rm.has("host")) rule.host = this.string(rm.get("host"), `${w}.host`) ?? "";
        if (rm.has("port")) {
          const p = rm.get("port");
          rule.port = isScalar(p) ? String(p.value) : "";
        }
        try {
          new Access([rule]);
          out.push(rule);
        } catch (e) {
          this.at(r, w, (e as Error).message);
        }
      }
      return out;
    };
    const options: RouterOptions = { allow: m.has("allow") ? rules("allow") : [] };
    if (m.has("deny")) options.deny = rules("deny");
    return options;
  }

  /**
   * A routing table: a list of { host | sni | prefix | default, backend |
   * to, connect_timeout }.
   */
  routes(node: Node, where: string): RouteEntryConfig[] | undefined {
    const out: RouteEntryConfig[] = [];
    const list = this.seq(node, where);
    if (isSeq(node) && node.items.length === 0) this.at(node, where, "needs at least one entry");
    for (const [i, e] of list) {
      const w = `${where}[${i}]`;
      const em = this.keys(e, w, [
        "host",
        "sni",
        "prefix",
        "default",
        "backend",
        "to",
        "connect_timeout",
      ]);
      if (!isMap(e)) continue;
      const matches = ["host", "sni", "prefix", "default"].filter((k) => em.has(k));
      const tos = ["backend", "to"].filter((k) => em.has(k));
      if (matches.length !== 1) {
        this.at(
          e,
          w,
          matches.length === 0
            ? "needs one of host, sni, prefix or default"
            : `give one of ${matches.join(", ")}, not several`,
        );
      }
      if (tos.length !== 1) {
        this.at(
          e,
          w,
          tos.length === 0
            ? "needs backend (a backend's name) or to ({ host, port })"
            : "give one of backend or to, not both",
        );
      }
      let match: RouteEntryConfig["match"] | undefined;
      if (em.has("host") || em.has("sni")) {
        const k = em.has("host") ? "host" : "sni";
        const p = this.string(em.get(k), `${w}.${k}`);
        if (p !== undefined) {
          if (tableName(p.replace(/\*/g, "x")) === undefined) {
            this.at(
              em.get(k),
              `${w}.${k}`,
              `"${p}" is not a host name pattern (letters, digits, "-", "_", "." and "*")`,
            );
          } else match = k === "host" ? { host: p } : { sni: p };
        }
      } else if (em.has("prefix")) {
        const p = this.string(em.get("prefix"), `${w}.prefix`);
        if (p !== undefined) match = { prefix: p };
      } else if (em.has("default")) {
        if (this.bool(em.get("default"), `${w}.default`) === true) match = { default: true };
        else if (isScalar(em.get("default"))) {
          this.at(em.get("default"), `${w}.default`, "only true");
        }
      }
      let to: RouteEntryConfig["to"] | undefined;
      if (em.has("backend")) {
        const b = this.string(em.get("backend"), `${w}.backend`);
        if (b !== undefined) to = { backend: b };
      } else if (em.has("to")) {
        to = this.inet(em.get("to"), `${w}.to`, false);
      }
      const connectTimeout = em.has("connect_timeout")
        ? this.setting(em.get("connect_timeout"), `${w}.connect_timeout`, settings.millis)
        : undefined;
      if (match !== undefined && to !== undefined && matches.length === 1 && tos.length === 1) {
        out.push({ match, to, connectTimeout });
      }
    }
    return out;
  }

  bool(node: Node, where: string): boolean | undefined {
    if (isScalar(node) && typeof node.value === "boolean") return node.value;
    this.at(node, where, `expected true or false, not ${describe(node)}`);
    return undefined;
  }

  /** secret_file or secret (not both). */
  secret(m: Map<string, Node>, node: Node, where: string): TunnelServerConfig["secret"] {
    if (m.has("secret_file") && m.has("secret")) {
      this.at(node, where, "give either secret_file or secret, not both");
    }
    if (m.has("secret_file")) {
      const file = this.string(m.get("secret_file"), `${where}.secret_file`);
      return file === undefined ? undefined : { file };
    }
    if (m.has("secret")) {
      const value = this.string(m.get("secret"), `${where}.secret`);
      return value === undefined ? undefined : { value };
    }
    return undefined;
  }

  /** host and port (required, port 1-65535), or a listen address (default 0.0.0.0). */
  inet(node: Node, where: string, listen: boolean): { host: string; port: number } | undefined {
    const hostKey = listen ? "address" : "host";
    const m = this.keys(node, where, [hostKey, "port"], listen ? ["port"] : ["host", "port"]);
    const e = this.endpoint(m, node, where, listen);
    return e !== undefined && "host" in e ? e : undefined;
  }

  tunnelServer(node: Node, where: string): TunnelServerConfig | undefined {
    const m = this.keys(node, where, [
      "name",
      "address",
      "port",
      "secret_file",
      "secret",
      "tls",
      "allow",
      "deny",
      "routes",
      "connect_timeout",
      "keepalive",
      "window",
    ], ["name", "port"]);
    const name = m.has("name") ? this.string(m.get("name"), `${where}.name`) : undefined;
    const listen = this.endpoint(m, node, where, true);
    let access: RouterOptions | undefined;
    if (m.has("allow") || m.has("deny")) {
      const rules = new Map([...m].filter(([k]) => k === "allow" || k === "deny"));
      access = this.rules(rules, where);
    }
    let routes: TunnelServerConfig["routes"];
    if (m.has("routes")) {
      const rm = m.get("routes");
      if (!isMap(rm)) {
        this.at(rm, `${where}.routes`, "expected a mapping of names to { host, port }");
      } else {
        // no prototype: a route named "__proto__" or "constructor" is a route
        routes = Object.create(null) as Record<string, { host: string; port: number }>;
        for (const pair of (rm as YAMLMap).items) {
          const rname = isScalar(pair.key) ? String(pair.key.value) : "";
          const e = this.inet(pair.value, `${where}.routes.${rname}`, false);
          if (e !== undefined) routes[rname] = e;
        }
      }
    }
    if (!m.has("allow") && !m.has("routes")) {
      this.at(node, where, "needs allow or routes: a tunnel server is closed without them");
    }
    let tls: { cert: string; key: string } | undefined;
    if (m.has("tls")) {
      const tm = this.keys(m.get("tls"), `${where}.tls`, ["cert", "key"], ["cert", "key"]);
      const cert = tm.has("cert") ? this.string(tm.get("cert"), `${where}.tls.cert`) : undefined;
      const key = tm.has("key") ? this.string(tm.get("key"), `${where}.tls.key`) : undefined;
      if (cert !== undefined && key !== undefined) tls = { cert, key };
    }
    const num = (k: string, min: number) =>
      m.has(k) ? this.int(m.get(k), `${where}.${k}`, min, 0x7fffffff) : undefined;
    const secret = this.secret(m, node, where);
    const connectTimeout = num("connect_timeout", 0);
    const keepalive = num("keepalive", 0);
    const window = num("window", 16 * 1024);
    if (name === undefined || listen === undefined || "path" in listen) return undefined;
    return {
      name,
      listen,
      secret,
      tls,
      allow: access?.allow === undefined ? undefined : [...access.allow],
      deny: access?.deny === undefined ? undefined : [...access.deny],
      routes,
      connectTimeout,
      keepalive,
      window,
    };
  }

  tunnelClient(node: Node, where: string): TunnelClientConfig | undefined {
    const m = this.keys(node, where, [
      "name",
      "link",
      "secret_file",
      "secret",
      "tls",
      "keepalive",
      "reconnect_max",
      "listeners",
      "socks",
      "http_connect",
    ], ["name", "link"]);
    const name = m.has("name") ? this.string(m.get("name"), `${where}.name`) : undefined;
    const link = m.has("link") ? this.inet(m.get("link"), `${where}.link`, false) : undefined;
    let tls: TunnelClientConfig["tls"];
    if (m.has("tls")) {
      const t = m.get("tls");
      if (isScalar(t)) {
        if (this.bool(t, `${where}.tls`) === true) tls = { ca: undefined, servername: undefined };
      } else {
        const tm = this.keys(t, `${where}.tls`, ["ca", "servername"]);
        tls = {
          ca: tm.has("ca") ? this.string(tm.get("ca"), `${where}.tls.ca`) : undefined,
          servername: tm.has("servername")
            ? this.string(tm.get("servername"), `${where}.tls.servername`)
            : undefined,
        };
      }
    }
    const listeners: TunnelClientConfig["listeners"] = [];
    for (const [i, l] of this.seq(m.get("listeners"), `${where}.listeners`)) {
      const lw = `${where}.listeners[${i}]`;
      const lm = this.keys(l, lw, ["address", "port", "to", "route"], ["port"]);
      const listen = this.endpoint(lm, l, lw, true);
      let to: TunnelClientConfig["listeners"][number]["to"] | undefined;
      if (lm.has("to") && lm.has("route")) this.at(l, lw, "give one of to or route, not both");
      else if (lm.has("to")) to = this.inet(lm.get("to"), `${lw}.to`, false);
      else if (lm.has("route")) {
        const r = this.string(lm.get("route"), `${lw}.route`);
        if (r !== undefined) to = { route: r };
      } else this.at(l, lw, "needs to ({ host, port }) or route (a name the server knows)");
      if (listen !== undefined && "host" in listen && to !== undefined) {
        listeners.push({ listen, to });
      }
    }
    const list = m.get("listeners");
    if (isSeq(list) && list.items.length === 0) {
      this.at(list, `${where}.listeners`, "needs at least one listener");
    }
    const entries = (key: "socks" | "http_connect"): TunnelClientConfig["socks"] => {
      const out: TunnelClientConfig["socks"] = [];
      if (!m.has(key)) return out;
      const node = m.get(key);
      for (const [i, l] of this.seq(node, `${where}.${key}`)) {
        const lw = `${where}.${key}[${i}]`;
        const lm = this.keys(l, lw, ["address", "port", "users"], ["port"]);
        const listen = this.endpoint(lm, l, lw, true);
        const users = lm.has("users") ? this.users(lm.get("users"), `${lw}.users`) : undefined;
        if (listen !== undefined && "host" in listen) out.push({ listen, users });
      }
      if (isSeq(node) && node.items.length === 0) {
        this.at(node, `${where}.${key}`, "needs at least one listener");
      }
      return out;
    };
    const socks = entries("socks");
    const httpConnect = entries("http_connect");
    if (!m.has("listeners") && !m.has("socks") && !m.has("http_connect")) {
      this.at(node, where, "needs listeners, socks or http_connect");
    }
    const secret = this.secret(m, node, where);
    const keepalive = m.has("keepalive")
      ? this.int(m.get("keepalive"), `${where}.keepalive`, 0, 0x7fffffff)
      : undefined;
    const reconnectMax = m.has("reconnect_max")
      ? this.int(m.get("reconnect_max"), `${where}.reconnect_max`, 100, 0x7fffffff)
      : undefined;
    if (name === undefined || link === undefined) return undefined;
    return { name, link, secret, tls, keepalive, reconnectMax, listeners, socks, httpConnect };
  }

  listener(node: Node, where: string): { config: ListenerConfig } | undefined {
    const m = this.keys(node, where, [
      "name",
      "address",
      "port",
      "path",
      "backend",
      "route",
      "accept_proxy",
      "tls",
      "max_connections",
      "idle_timeout",
      "connect_timeout",
      "hooks",
      "socks",
      "http_connect",
      "routes",
    ], ["name"]);
    const name = m.has("name") ? this.string(m.get("name"), `${where}.name`) : undefined;
    const listen = this.endpoint(m, node, where, true);
    const backend = m.has("backend")
      ? this.string(m.get("backend"), `${where}.backend`)
      : undefined;
    const route = m.has("route") ? this.string(m.get("route"), `${where}.route`) : undefined;
    const kinds = ["backend", "route", "routes", "socks", "http_connect"].filter((k) => m.has(k));
    if (kinds.length !== 1) {
      this.at(
        node,
        where,
        kinds.length === 0
          ? "needs one of backend, route, routes, socks or http_connect"
          : `give one of ${kinds.join(", ")}, not several`,
      );
    }
    let router: ListenerConfig["router"];
    for (const [key, kind] of [["socks", "socks"], ["http_connect", "http-connect"]] as const) {
      if (!m.has(key)) continue;
      const options = this.router(m.get(key), `${where}.${key}`);
      if (options !== undefined) router = { kind, options };
    }
    let acceptProxy: AcceptProxyOptions | undefined;
    if (m.has("accept_proxy")) {
      const n = m.get("accept_proxy"), w = `${where}.accept_proxy`;
      if (isScalar(n)) {
        const mode = this.setting(n, w, settings.acceptProxyMode);
        if (mode !== undefined) acceptProxy = { mode };
      } else {
        const am = this.keys(n, w, ["mode", "trusted", "untrusted", "timeout"], ["mode"]);
        const mode = am.has("mode")
          ? this.setting(am.get("mode"), `${w}.mode`, settings.acceptProxyMode)
          : undefined;
        if (mode !== undefined) {
          acceptProxy = { mode };
          if (am.has("trusted")) {
            const list: string[] = [];
            for (const [i, t] of this.seq(am.get("trusted"), `${w}.trusted`)) {
              const text = this.setting(t, `${w}.trusted[${i}]`, settings.cidr);
              if (text !== undefined) list.push(text);
            }
            acceptProxy.trusted = list;
          }
          if (am.has("untrusted")) {
            const u = this.setting(am.get("untrusted"), `${w}.untrusted`, settings.untrusted);
            if (u !== undefined) acceptProxy.untrusted = u;
          }
          if (am.has("timeout")) {
            const t = this.setting(am.get("timeout"), `${w}.timeout`, settings.millis);
            if (t !== undefined) acceptProxy.timeout = t;
          }
        }
      }
    }
    let tls: { cert: string; key: string } | undefined;
    if (m.has("tls")) {
      const tm = this.keys(m.get("tls"), `${where}.tls`, ["cert", "key"], ["cert", "key"]);
      const cert = tm.has("cert") ? this.string(tm.get("cert"), `${where}.tls.cert`) : undefined;
      const key = tm.has("key") ? this.string(tm.get("key"), `${where}.tls.key`) : undefined;
      if (cert !== undefined && key !== undefined) tls = { cert, key };
    }
    const num = (k: string, s: settings.Setting<number>) =>
      m.has(k) ? this.setting(m.get(k), `${where}.${k}`, s) : undefined;
    const hooks = m.has("hooks") ? this.string(m.get("hooks"), `${where}.hooks`) : undefined;
    const modulesAt: ListenerConfig["modulesAt"] = {};
    if (route !== undefined) modulesAt.route = this.place(m.get("route"), `${where}.route`);
    if (hooks !== undefined) modulesAt.hooks = this.place(m.get("hooks"), `${where}.hooks`);
    if (name === undefined || listen === undefined) return undefined;
    return {
      config: {
        name,
        listen,
        backend,
        route,
        hooks,
        modulesAt,
        routes: m.has("routes") ? this.routes(m.get("routes"), `${where}.routes`) : undefined,
        router,
        acceptProxy,
        tls,
        maxConnections: num("max_connections", settings.maxConnections),
        idleTimeout: num("idle_timeout", settings.millis),
        connectTimeout: num("connect_timeout", settings.millis),
      },
    };
  }
}

function describe(node: Node): string {
  if (node === null || node === undefined) return "nothing";
  if (isScalar(node)) return JSON.stringify(node.value);
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  return "that";
}
