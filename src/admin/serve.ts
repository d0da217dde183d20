/**
 * Starting the admin endpoint of `relaykit run`: from the config's `admin:`
 * section and the `--admin HOST:PORT` flag (which sets or overrides where
 * it listens; its token then comes from the section or RELAYKIT_ADMIN_TOKEN).
 *
 * @module
 */
import { dirname, resolve } from "node:path";
import process from "node:process";
import type { Config } from "../config/config.ts";
import type { AccessRecord, EventRecord, LogLevel, Runner } from "../config/run.ts";
import { type Endpoint, formatEndpoint } from "../forward/types.ts";
import { parseEndpoint } from "../types.ts";
import { type AdminToken, readTokens, startAdmin } from "./api.ts";
import type { HttpServer } from "./http.ts";
import { LocalSource } from "./local.ts";
import { ProxyTarget } from "./proxy_target.ts";
import type { TcpProxy } from "../proxy/tcp_proxy.ts";
import { FanoutSource, makeWorkerSocketDir, WORKER_TOKEN_ENV, workerSocket } from "./fanout.ts";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";

/** The environment variable that holds the token when only --admin is given. */
export const TOKEN_ENV = "RELAYKIT_ADMIN_TOKEN";

/** Where and how the admin endpoint of a run is served, or undefined when it is not. */
export interface AdminPlan {
  listen: Endpoint;
  tokens: AdminToken[];
  readOpen: boolean;
  /** The metrics endpoint is on the same address: the admin listener serves it. */
  sharesMetrics: boolean;
}

/**
 * Work out the admin endpoint of a run.
 *
 * @throws {Error} for a bad --admin, an unreadable token file, or no token at all.
 */
export function planAdmin(
  config: Config,
  file: string,
  flag: string | undefined,
  workers = 1,
): AdminPlan | undefined {
  const a = config.admin;
  if (a === undefined && flag === undefined) return undefined;
  let listen = a?.listen;
  if (flag !== undefined) {
    // ":PORT" is loopback here, not every interface
    listen = parseEndpoint(flag.startsWith(":") ? `127.0.0.1${flag}` : flag, "--admin");
  }
  const tokens = readTokens(a?.token, dirname(resolve(file)));
  const env = process.env[TOKEN_ENV];
  if (tokens.length === 0 && env !== undefined && env !== "") {
    tokens.push({ name: "admin", token: env });
  }
  const readOpen = a?.readOpen ?? false;
  if (tokens.length === 0 && !readOpen) {
    throw new Error(
      `the admin endpoint needs a token: admin.token or admin.token_file in the config, or ${TOKEN_ENV}`,
    );
  }
  const m = config.metrics;
  const sharesMetrics = m !== undefined && listen !== undefined && "host" in listen &&
    m.host === listen.host && m.port === listen.port && m.port !== 0;
  if (sharesMetrics && workers > 1) {
    throw new Error(
      "with --workers, the metrics endpoint needs a port of its own (not the admin's)",
    );
  }
  return { listen: listen!, tokens, readOpen, sharesMetrics };
}

/** Serve the admin endpoint of one process running `runner`. */
export async function serveRunAdmin(
  runner: Runner,
  plan: AdminPlan,
  o: {
    file: string;
    engine: string;
    engineReason: string | undefined;
    log(level: LogLevel, line: string): void;
    access(record: AccessRecord | EventRecord): void;
  },
): Promise<HttpServer> {
  const source = new LocalSource(runner, {
    config: o.file,
    engine: o.engine,
    engineReason: o.engineReason,
    log: o.log,
    access: o.access,
    metrics: plan.sharesMetrics,
  });
  const server = await startAdmin(source, {
    listen: plan.listen,
    tokens: plan.tokens,
    readOpen: plan.readOpen,
    metrics: plan.sharesMetrics,
    log: o.log,
  });
  o.log(
    "info",
    `admin on ${
      "path" in server.address ? server.address.path : `http://${formatEndpoint(server.address)}/`
    }${plan.sharesMetrics ? " (and /metrics)" : ""}`,
  );
  return server;
}

/**
 * In a worker of `relaykit run --workers N`: serve this worker's admin API
 * on its private socket, for the supervisor (see fanout.ts).
 */
export async function serveWorkerAdmin(
  runner: Runner,
  o: {
    supervisor: number;
    index: number;
    file: string;
    engine: string;
    engineReason: string | undefined;
    log(level: LogLevel, line: string): void;
    access(record: AccessRecord | EventRecord): void;
  },
): Promise<HttpServer | undefined> {
  const token = process.env[WORKER_TOKEN_ENV];
  if (token === undefined || token === "") return undefined;
  const path = workerSocket(o.supervisor, o.index);
  rmSync(path, { force: true }); // a dead worker's
  const source = new LocalSource(runner, { ...o, config: o.file, metrics: false });
  const server = await startAdmin(source, {
    listen: { path },
    tokens: [{ name: "supervisor", token, relayed: true }],
    log: o.log,
  });
  process.on("exit", () => rmSync(path, { force: true }));
  return {
    address: server.address,
    close() {
      server.close();
      rmSync(path, { force: true });
    },
  };
}

/**
 * In the supervisor of `relaykit run --workers N`: make the workers'
 * socket directory and token (they inherit it), and serve the admin
 * endpoint over all of them.
 */
export async function serveSupervisorAdmin(
  plan: AdminPlan,
  o: { file: string; log(level: LogLevel, line: string): void },
): Promise<HttpServer> {
  const token = randomBytes(24).toString("base64url");
  process.env[WORKER_TOKEN_ENV] = token; // the workers' environment
  const removeDir = makeWorkerSocketDir(process.pid);
  process.on("exit", removeDir);
  const source = new FanoutSource({ pid: process.pid, token, config: o.file });
  const server = await startAdmin(source, {
    listen: plan.listen,
    tokens: plan.tokens,
    readOpen: plan.readOpen,
    log: o.log,
  });
  o.log(
    "info",
    `admin on ${
      "path" in server.address ? server.address.path : `http://${formatEndpoint(server.address)}/`
    } (all workers)`,
  );
  return {
    address: server.address,
    close() {
      server.close();
      removeDir();
    },
  };
}

/**
 * `--admin HOST:PORT` on a one-proxy command (forward, route, socks,
 * http-connect): serve the admin API of `proxy`, its token from
 * RELAYKIT_ADMIN_TOKEN. Undefined when `flag` is.
 *
 * @param command The command's name ("forward", "socks", …): the listener's name in the API.
 * @throws {Error} for a bad address or no token.
 */
export async function serveProxyAdmin(
  proxy: TcpProxy,
  flag: string | undefined,
  o: {
    command: string;
    route: string;
    limit: number;
    /** The proxy reads PROXY headers: the connection list shows who sent them. */
    original: boolean;
    log(level: LogLevel, line: string): void;
  },
): Promise<HttpServer | undefined> {
  if (flag === undefined) return undefined;
  const token = process.env[TOKEN_ENV];
  if (token === undefined || token === "") {
    throw new Error(`--admin needs a token in ${TOKEN_ENV}`);
  }
  const listen = parseEndpoint(flag.startsWith(":") ? `127.0.0.1${flag}` : flag, "--admin");
  const target = new ProxyTarget(proxy, { name: o.command, ...o });
  const source = new LocalSource(target, {
    config: "",
    engine: proxy.engine,
    engineReason: proxy.engineReason,
    log: o.log,
    access: () => {},
    metrics: false,
  });
  const server = await startAdmin(source, {
    listen,
    tokens: [{ name: "admin", token }],
    log: o.log,
  });
  o.log("info", `admin on ${adminUrl(server)}`);
  return server;
}

function adminUrl(server: HttpServer): string {
  return "path" in server.address
    ? server.address.path
    : `http://${formatEndpoint(server.address)}/`;
}
