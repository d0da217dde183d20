/**
 * The configuration file of `relaykit run`: YAML or JSON (JSON is YAML),
 * validated in full before anything starts. Every mistake is reported with
 * file, line and column and the key it concerns; a config mistake is never
 * a stack trace. porxy's config files run unchanged.
 *
 * ```yaml
 * listeners:
 *   - name: web            # required, unique
 *     address: 0.0.0.0     # default 0.0.0.0; or path: /run/web.sock
 *     port: 8000
 *     backend: app         # a backend's name (or route: ./router.ts)
 *     accept_proxy: { mode: detect, trusted: [10.0.0.0/8], untrusted: refuse }
 *     max_connections: 10000
 *     idle_timeout: 60000
 * backends:
 *   - name: app
 *     balance: leastconn   # roundrobin (default), leastconn, random, source-hash
 *     servers:
 *       - { host: 10.0.0.7, port: 8080, weight: 2 }
 *       - { host: 10.0.0.8, port: 8080 }
 *     retries: 1
 *     connect_timeout: 3000
 *     send_proxy: v2
 *   - name: db             # porxy's form: one server
 *     host: localhost
 *     port: 5432
 * ```
 *
 * @module
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Endpoint } from "../forward/types.ts";
import type {
  Config,
  ConfigIssue,
  ConfigPlace,
  TunnelClientConfig,
  TunnelServerConfig,
} from "./types.ts";
import { Validator } from "./validate.ts";
import { distance } from "../spelling.ts";
import { type Node, resolveAliases } from "./yaml.ts";

export type {
  AdminConfig,
  BackendConfig,
  Config,
  ConfigIssue,
  ConfigPlace,
  ListenerConfig,
  ServerConfig,
  TunnelClientConfig,
  TunnelServerConfig,
} from "./types.ts";
export { locate, MAX_ALIAS_NODES } from "./yaml.ts";

/** A config file that cannot be used: every issue found in it. */
export class ConfigError extends Error {
  /** Each mistake, in file order. */
  readonly issues: readonly ConfigIssue[];
  /** @param issues What is wrong. */
  constructor(issues: readonly ConfigIssue[]) {
    super(issues.map(formatIssue).join("\n"));
    this.name = "ConfigError";
    this.issues = issues;
  }
}

/** "file:line:col: key: message"; an issue of the whole file (line 0) is its message alone. */
export function formatIssue(i: ConfigIssue): string {
  if (i.line === 0) return i.message;
  return `${i.file}:${i.line}:${i.col}: ${i.key ? `${i.key}: ` : ""}${i.message}`;
}

/** Parse and validate `text` (from `file`); throws a ConfigError listing every mistake. */
export function parseConfig(text: string, file: string): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, merge: true });
  const issues: ConfigIssue[] = [];
  const place = (node: Node, key: string): ConfigPlace => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    const pos = lc.linePos(range?.[0] ?? 0);
    return { file, line: pos.line, col: pos.col, key };
  };
  const at = (node: Node, key: string, message: string) => {
    issues.push({ ...place(node, key), message });
  };
  for (const e of doc.errors) {
    const pos = e.linePos?.[0] ?? { line: 1, col: 1 };
    issues.push({
      file,
      line: pos.line,
      col: pos.col,
      key: "",
      message: e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, ""),
    });
  }
  if (issues.length > 0) throw new ConfigError(issues);
  const root = resolveAliases(doc.contents, at);
  if (issues.length > 0) throw new ConfigError(issues);

  const v = new Validator(at, place);
  const config: Config = {
    listeners: [],
    backends: [],
    tunnelServers: [],
    tunnelClients: [],
    metrics: undefined,
    admin: undefined,
  };
  if (!isMap(root)) {
    at(root, "", "expected a mapping with listeners and backends");
    throw new ConfigError(issues);
  }
  const top = v.keys(root, "", [
    "listeners",
    "backends",
    "metrics",
    "admin",
    "tunnel_servers",
    "tunnel_clients",
  ]);
  if (!top.has("listeners") && !top.has("tunnel_servers") && !top.has("tunnel_clients")) {
    at(root, "listeners", "is required (or tunnel_servers, tunnel_clients)");
  }
  const tunnelNames = new Set<string>();
  for (const [key, kind] of [["tunnel_servers", "server"], ["tunnel_clients", "client"]] as const) {
    for (const [i, node] of v.seq(top.get(key), key)) {
      const where = `${key}[${i}]`;
      const t = kind === "server" ? v.tunnelServer(node, where) : v.tunnelClient(node, where);
      if (t === undefined) continue;
      if (tunnelNames.has(t.name)) at(node, `${where}.name`, `tunnel "${t.name}" is defined twice`);
      tunnelNames.add(t.name);
      if (kind === "server") config.tunnelServers.push(t as TunnelServerConfig);
      else config.tunnelClients.push(t as TunnelClientConfig);
    }
  }
  if (top.has("metrics")) {
    const mm = v.keys(top.get("metrics"), "metrics", ["address", "port"], ["port"]);
    const e = v.endpoint(mm, top.get("metrics"), "metrics", true);
    if (e !== undefined && "host" in e) config.metrics = e;
  }
  if (top.has("admin")) config.admin = v.admin(top.get("admin"), "admin");
  // no two things on one port: listeners, tunnel servers, metrics
  const ports: { what: string; host: string; port: number; node: Node; key: string }[] = [];
  const claim = (what: string, at_: Endpoint, node: Node, key: string) => {
    if (!("port" in at_) || at_.port === 0) return;
    const wild = (h: string) => h === "0.0.0.0" || h === "::" || h === "";
    const clash = ports.find((o) =>
      o.port === at_.port && (o.host === at_.host || wild(o.host) || wild(at_.host))
    );
    if (clash !== undefined) {
      at(node, key, `port ${at_.port} is also ${clash.what}'s (${clash.host}:${clash.port})`);
    } else ports.push({ what, host: at_.host, port: at_.port, node, key });
  };
  const backendSeq = top.get("backends");
  const listenerSeq = top.get("listeners");
  if (listenerSeq !== undefined && isSeq(listenerSeq) && listenerSeq.items.length === 0) {
    at(listenerSeq, "listeners", "needs at least one listener");
  }
  // names unique, backends that exist, no two listeners on one address
  const seen = new Map<string, string>();
  const names = new Set<string>(); // every backend named, valid or not
  for (const [i, item] of v.seq(backendSeq, "backends")) {
    const nameNode = v.valueNode(item, "name");
    const name = isScalar(nameNode) ? String(nameNode.value) : undefined;
    if (name !== undefined && names.has(name)) {
      at(nameNode, `backends[${i}].name`, `backend "${name}" is defined twice`);
    }
    if (name !== undefined) names.add(name);
    const b = v.backend(item, `backends[${i}]`);
    if (b !== undefined) config.backends.push(b);
  }
  for (const [i, node] of v.seq(listenerSeq, "listeners")) {
    const where = `listeners[${i}]`;
    const backendNode = v.valueNode(node, "backend");
    if (isScalar(backendNode) && typeof backendNode.value === "string") {
      if (!names.has(backendNode.value)) {
        const known = [...names].map((n) => `"${n}"`).join(", ") || "none";
        at(
          backendNode,
          `${where}.backend`,
          `no backend named "${backendNode.value}" (backends: ${known})`,
        );
      }
    }
    const routesNode = v.valueNode(node, "routes");
    for (const [j, e] of isSeq(routesNode) ? v.seq(routesNode, "") : []) {
      const b = v.valueNode(e, "backend");
      if (!isScalar(b) || typeof b.value !== "string") continue;
      if (config.backends.find((x) => x.name === b.value)?.sendProxy !== undefined) {
        at(
          b,
          `${where}.routes[${j}].backend`,
          `backend "${b.value}" sends a PROXY header, which a routing table cannot (yet)`,
        );
      }
      if (names.has(b.value)) continue;
      const near = [...names].find((n) => distance(n, String(b.value)) <= 2);
      const known = [...names].map((n) => `"${n}"`).join(", ") || "none";
      at(
        b,
        `${where}.routes[${j}].backend`,
        `no backend named "${b.value}"${
          near === undefined ? "" : ` (did you mean "${near}"?)`
        } (backends: ${known})`,
      );
    }
    const l = v.listener(node, where)?.config;
    if (l === undefined) continue;
    config.listeners.push(l);
    if (seen.has(`l:${l.name}`)) at(node, `${where}.name`, `listener "${l.name}" is defined twice`);
    seen.set(`l:${l.name}`, "");
    const addr = "path" in l.listen ? l.listen.path : `${l.listen.host}:${l.listen.port}`;
    const clash = seen.get(`a:${addr}`);
    if (clash !== undefined && !("port" in l.listen && l.listen.port === 0)) {
      at(
        v.valueNode(node, "port") ?? node,
        `${where}.port`,
        `"${addr}" is also listener "${clash}"'s address`,
      );
    } else {claim(
        `listener "${l.name}"`,
        l.listen,
        v.valueNode(node, "port") ?? node,
        `${where}.port`,
      );}
    seen.set(`a:${addr}`, l.name);
  }
  for (const [i, t] of config.tunnelServers.entries()) {
    const node = v.valueNode(v.seqItem(top.get("tunnel_servers"), i), "port");
    claim(`tunnel server "${t.name}"`, t.listen, node, `tunnel_servers[${i}].port`);
  }
  if (config.metrics !== undefined) {
    claim("metrics", config.metrics, v.valueNode(top.get("metrics"), "port"), "metrics.port");
  }
  // the admin endpoint may share the metrics listener (same address and port), nothing else
  const admin = config.admin?.listen;
  if (admin !== undefined && "port" in admin) {
    const m = config.metrics;
    const shared = m !== undefined && m.port === admin.port && m.host === admin.host;
    if (!shared) claim("admin", admin, v.valueNode(top.get("admin"), "port"), "admin.port");
  }
  if (issues.length > 0) {
    throw new ConfigError(issues.sort((a, b) => a.line - b.line || a.col - b.col));
  }
  return config;
}
