/**
 * The config file's vocabulary: a validated config, its sections, and
 * where a value stands in the file.
 *
 * @module
 */
import type { Endpoint } from "../forward/types.ts";
import type { BalanceMode } from "../proxy/balance.ts";
import type { AcceptProxyOptions } from "../proxy/accept_proxy.ts";
import type { SendProxyOptions } from "../types.ts";
import type { HealthCheckOptions } from "../proxy/health.ts";
import type { AccessRule } from "../proxy/address_policy.ts";
import type { RouterOptions } from "../proxy/socks.ts";

/** Where a value stands in a config file (for mistakes found once the file is in use). */
export interface ConfigPlace {
  /** The file. */
  file: string;
  /** 1-based line and column. */
  line: number;
  col: number;
  /** The key path, like "listeners[0].port". */
  key: string;
}

/** One mistake in a config file. */
export interface ConfigIssue extends ConfigPlace {
  /** What is wrong. */
  message: string;
}

/** A listener, validated. */
export interface ListenerConfig {
  name: string;
  listen: Endpoint;
  /** A backend's name, or undefined with `route`. */
  backend: string | undefined;
  /** A route module's path (relative to the config file's directory). */
  route: string | undefined;
  /** A hooks module's path: it exports aToB and/or bToA (data hooks). */
  hooks: string | undefined;
  /** Where `route` and `hooks` are in the file (a module that cannot load is reported there). */
  modulesAt: { route?: ConfigPlace; hooks?: ConfigPlace };
  /** A static routing table instead of a backend or route (`routes:`). */
  routes: RouteEntryConfig[] | undefined;
  /** A built-in router instead of a backend or route. */
  router: { kind: "socks" | "http-connect"; options: RouterOptions } | undefined;
  acceptProxy: AcceptProxyOptions | undefined;
  tls: { cert: string; key: string } | undefined;
  maxConnections: number | undefined;
  idleTimeout: number | undefined;
  connectTimeout: number | undefined;
}

/** One entry of a listener's routing table, validated. */
export interface RouteEntryConfig {
  /** What it matches: a Host or SNI name pattern, a prefix of bytes, or anything. */
  match: { host: string } | { sni: string } | { prefix: string } | { default: true };
  /** Where it goes: a backend's name, or an address. */
  to: { backend: string } | { host: string; port: number };
  connectTimeout: number | undefined;
}

/** A server of a backend, validated. */
export interface ServerConfig {
  name: string | undefined;
  address: Endpoint;
  weight: number;
}

/** A backend, validated. */
export interface BackendConfig {
  name: string;
  servers: ServerConfig[];
  balance: BalanceMode;
  retries: number | undefined;
  connectTimeout: number | undefined;
  sendProxy: SendProxyOptions | undefined;
  healthCheck: HealthCheckOptions | undefined;
}

/** A tunnel server of the config (tunnel_servers), validated. */
export interface TunnelServerConfig {
  name: string;
  listen: { host: string; port: number };
  /** Path of the shared secret's file (relative to the config file), or the secret. */
  secret: { file: string } | { value: string } | undefined;
  tls: { cert: string; key: string } | undefined;
  allow: AccessRule[] | undefined;
  deny: AccessRule[] | undefined;
  routes: Record<string, { host: string; port: number }> | undefined;
  connectTimeout: number | undefined;
  keepalive: number | undefined;
  window: number | undefined;
}

/** A tunnel client of the config (tunnel_clients), validated. */
export interface TunnelClientConfig {
  name: string;
  link: { host: string; port: number };
  secret: { file: string } | { value: string } | undefined;
  /** true: verify with the system's CAs; ca: a CA file (relative to the config file). */
  tls: { ca: string | undefined; servername: string | undefined } | undefined;
  keepalive: number | undefined;
  reconnectMax: number | undefined;
  listeners: {
    listen: { host: string; port: number };
    to: { host: string; port: number } | { route: string };
  }[];
  /** SOCKS4/4a/5 listeners: each connection names its destination. */
  socks: {
    listen: { host: string; port: number };
    users: Record<string, string> | undefined;
  }[];
  /** HTTP CONNECT listeners: each CONNECT names its destination. */
  httpConnect: TunnelClientConfig["socks"];
}

/** A whole config, validated. */
export interface Config {
  listeners: ListenerConfig[];
  backends: BackendConfig[];
  /** Tunnel servers (relaykit tunnel server). */
  tunnelServers: TunnelServerConfig[];
  /** Tunnel clients (relaykit tunnel client). */
  tunnelClients: TunnelClientConfig[];
  /** Where to serve Prometheus metrics (GET /metrics), if anywhere. */
  metrics: { host: string; port: number } | undefined;
  /** The admin endpoint (JSON API, stats page), if enabled. */
  admin: AdminConfig | undefined;
}

/** The admin section, validated. */
export interface AdminConfig {
  /** Where it listens: loopback by default, or a Unix socket. */
  listen: Endpoint;
  /**
   * The token (named "admin"), or a file of tokens relative to the config
   * file: one a line, `NAME:TOKEN` or just `TOKEN`.
   */
  token: { file: string } | { value: string } | undefined;
  /** Reads without a token (actions always need one). */
  readOpen: boolean;
}
