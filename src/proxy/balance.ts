/**
 * Backends: a named group of servers, the balancing that picks one per
 * connection, and the retry budget that moves a refused or timed-out
 * connect to the next server (failover).
 *
 * @module
 */
import type { Endpoint } from "../forward/types.ts";
import { formatEndpoint } from "../forward/types.ts";
import type { SendProxyOptions } from "../types.ts";

/**
 * How a backend picks a server for each connection.
 *
 * @example
 * ```ts
 * import { Backend, type BalanceMode } from "@relaykit/relaykit";
 * const balance: BalanceMode = "source-hash"; // the same client, the same server
 * const b = new Backend({ name: "sticky", balance, servers: [{ address: { host: "127.0.0.1", port: 1 } }] });
 * console.log(b.pick("192.0.2.1")?.name);
 * ```
 */
export type BalanceMode = "roundrobin" | "leastconn" | "random" | "source-hash";

/** The balancing modes, for validation. */
export const BALANCE_MODES: readonly BalanceMode[] = [
  "roundrobin",
  "leastconn",
  "random",
  "source-hash",
];

/**
 * One server of a backend.
 *
 * @example
 * ```ts
 * import { type ServerOptions } from "@relaykit/relaykit";
 * const server: ServerOptions = { address: { host: "10.0.0.7", port: 8080 }, weight: 3, name: "big" };
 * console.log(server.weight);
 * ```
 */
export interface ServerOptions {
  /** Where it listens. */
  address: Endpoint;
  /** Relative share of connections (0 takes none). @default 1 */
  weight?: number;
  /** Its name in events and logs. @default its address */
  name?: string;
}

/**
 * A backend's configuration.
 *
 * @example
 * ```ts
 * import { Backend, type BackendOptions } from "@relaykit/relaykit";
 * const options: BackendOptions = {
 *   name: "web",
 *   balance: "roundrobin",
 *   servers: [{ address: { host: "127.0.0.1", port: 8001 } }, { address: { host: "127.0.0.1", port: 8002 } }],
 *   retries: 1,
 * };
 * console.log(new Backend(options).servers.length);
 * ```
 */
export interface BackendOptions {
  /** Its name. */
  name: string;
  /** Its servers (at least one). */
  servers: readonly ServerOptions[];
  /** How it picks a server. @default "roundrobin" */
  balance?: BalanceMode;
  /** More servers to try after a failed connect. @default servers - 1 */
  retries?: number;
  /** Connect timeout in ms. @default the proxy's */
  connectTimeout?: number;
  /** A PROXY header to send to its servers. */
  sendProxy?: SendProxyOptions;
}

/**
 * What an operator set for a server: `ready` takes connections; `drain`
 * takes no new ones and lets those it has finish; `maint` is drain and
 * also pauses its health checks.
 *
 * @example
 * ```ts
 * import { Backend, type ServerAdminState } from "@relaykit/relaykit";
 * const b = new Backend({ name: "app", servers: [{ address: { host: "127.0.0.1", port: 8001 } }] });
 * const state: ServerAdminState = "drain";
 * b.servers[0]!.admin = state; // no new connections go to it
 * console.log(b.pick(undefined)); // undefined
 * ```
 */
export type ServerAdminState = "ready" | "drain" | "maint";

/** The operator states, for validation. */
export const SERVER_ADMIN_STATES: readonly ServerAdminState[] = ["ready", "drain", "maint"];

/**
 * The last health check of a server.
 *
 * @example
 * ```ts
 * import { type ServerCheck } from "@relaykit/relaykit";
 * const check: ServerCheck = { ok: false, reason: "ECONNREFUSED", at: Date.now() };
 * console.log(check.ok);
 * ```
 */
export interface ServerCheck {
  /** Whether it passed. */
  ok: boolean;
  /** Why it failed. */
  reason?: string;
  /** When it ran, ms since the Unix epoch. */
  at: number;
}

/**
 * A server, with its live state.
 *
 * @example
 * ```ts
 * import { Backend } from "@relaykit/relaykit";
 * const b = new Backend({ name: "db", servers: [{ address: { host: "127.0.0.1", port: 5432 } }] });
 * const s = b.servers[0]!;
 * console.log(s.name, s.up, s.active, s.failures);
 * ```
 */
export class Server {
  /** Its name. */
  readonly name: string;
  /** Where it listens. */
  readonly address: Endpoint;
  /** Its weight (change it with {@linkcode Backend.setWeight}). */
  weight: number;
  /** What an operator set: only a `ready` server gets new connections. */
  admin: ServerAdminState = "ready";
  /** Bytes from clients to it, of its connections that ended. */
  bytesUp = 0;
  /** Bytes from it back to clients, likewise. */
  bytesDown = 0;
  /** The last health check, if it is checked. */
  lastCheck: ServerCheck | undefined;
  /** When `up` or `admin` last changed, ms since the Unix epoch. */
  changedAt: number = Date.now();
  /** Connections it has now. */
  active = 0;
  /** Connections it has had. */
  total = 0;
  /** Connects to it that failed. */
  failures = 0;
  /** false while health checks say it is down. */
  up = true;

  /**
   * A server with no connections yet, up.
   *
   * @param o Its configuration.
   */
  constructor(o: ServerOptions) {
    this.address = o.address;
    this.weight = o.weight ?? 1;
    this.name = o.name ?? formatEndpoint(o.address);
  }

  /** `up`, `down` (health checks), or the operator's `drain` or `maint`. */
  get state(): "up" | "down" | "drain" | "maint" {
    return this.admin !== "ready" ? this.admin : this.up ? "up" : "down";
  }

  /** Whether it may take a new connection. */
  get usable(): boolean {
    return this.up && this.admin === "ready" && this.weight > 0;
  }
}

/** FNV-1a of a string: a stable hash for source-hash balancing. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * A group of servers and how to pick among them.
 *
 * @example
 * ```ts
 * import { Backend, TcpProxy } from "@relaykit/relaykit";
 * const backend = new Backend({
 *   name: "replicas",
 *   balance: "leastconn",
 *   servers: [
 *     { address: { host: "127.0.0.1", port: 5433 }, weight: 2 },
 *     { address: { host: "127.0.0.1", port: 5434 } },
 *   ],
 *   retries: 1,
 * });
 * const proxy = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 0 }, backend });
 * await proxy.close();
 * ```
 */
export class Backend {
  /** Its name. */
  readonly name: string;
  /** Its servers, in configuration order. */
  readonly servers: readonly Server[];
  /** How it picks. */
  readonly balance: BalanceMode;
  /** Servers to try after a failed connect. */
  readonly retries: number;
  /** Connect timeout in ms, if its own. */
  readonly connectTimeout: number | undefined;
  /** PROXY header to send, if any. */
  readonly sendProxy: SendProxyOptions | undefined;
  #next = 0; // roundrobin position, in weighted slots
  #slots: number[]; // server index per slot (weights expanded)

  /**
   * A backend, its servers all up.
   *
   * @param o Its configuration.
   * @throws {RangeError} for no servers, a bad weight or a bad mode.
   */
  constructor(o: BackendOptions) {
    if (o.servers.length === 0) throw new RangeError(`backend "${o.name}" has no servers`);
    this.name = o.name;
    this.servers = o.servers.map((s) => new Server(s));
    for (const s of this.servers) {
      if (!Number.isInteger(s.weight) || s.weight < 0 || s.weight > 256) {
        throw new RangeError(
          `server "${s.name}": weight must be an integer 0-256, not ${s.weight}`,
        );
      }
    }
    this.balance = o.balance ?? "roundrobin";
    if (!BALANCE_MODES.includes(this.balance)) {
      throw new RangeError(`balance must be one of ${BALANCE_MODES.join(", ")}`);
    }
    this.retries = o.retries ?? this.servers.length - 1;
    this.connectTimeout = o.connectTimeout;
    this.sendProxy = o.sendProxy;
    this.#slots = this.#weighSlots();
  }

  /**
   * Change a server's weight (0-256; 0 takes no new connections).
   *
   * @throws {RangeError} for a weight out of range.
   */
  setWeight(server: Server, weight: number): void {
    if (!Number.isInteger(weight) || weight < 0 || weight > 256) {
      throw new RangeError(
        `server "${server.name}": weight must be an integer 0-256, not ${weight}`,
      );
    }
    server.weight = weight;
    this.#slots = this.#weighSlots();
    this.#next = 0;
  }

  /** Smooth weighted round robin: the weighted slots, interleaved. */
  #weighSlots(): number[] {
    const slots: number[] = [];
    const credit = this.servers.map(() => 0);
    const total = this.servers.reduce((n, s) => n + s.weight, 0);
    for (let n = 0; n < total; n++) {
      let best = -1;
      this.servers.forEach((s, i) => {
        credit[i]! += s.weight;
        if (s.weight > 0 && (best < 0 || credit[i]! > credit[best]!)) best = i;
      });
      credit[best]! -= total;
      slots.push(best);
    }
    return slots;
  }

  /** Whether a server is left that is up, weighted and not in `tried`. */
  hasOther(tried: ReadonlySet<Server>): boolean {
    return this.servers.some((s) => s.usable && !tried.has(s));
  }

  /**
   * The server for a new connection from `client` (its address), skipping
   * `tried` ones and those that are down; undefined when none is left.
   */
  pick(client: string | undefined, tried: ReadonlySet<Server> = new Set()): Server | undefined {
    const ok = (s: Server) => s.usable && !tried.has(s);
    const candidates = this.servers.filter(ok);
    if (candidates.length === 0) return undefined;
    switch (this.balance) {
      case "leastconn": {
        // fewest connections per unit of weight; ties in configuration order
        let best = candidates[0]!;
        for (const s of candidates) if (s.active * best.weight < best.active * s.weight) best = s;
        return best;
      }
      case "random": {
        const total = candidates.reduce((n, s) => n + s.weight, 0);
        let r = Math.random() * total;
        for (const s of candidates) if ((r -= s.weight) < 0) return s;
        return candidates[candidates.length - 1];
      }
      case "source-hash": {
        // the same client goes to the same server while the set is the same
        const slots = this.#slots.filter((i) => ok(this.servers[i]!));
        if (slots.length === 0) return candidates[0];
        const h = client === undefined ? 0 : fnv1a(client);
        return this.servers[slots[h % slots.length]!];
      }
      default: {
        for (let n = 0; n < this.#slots.length; n++) {
          const s = this.servers[this.#slots[this.#next++ % this.#slots.length]!]!;
          if (ok(s)) return s;
        }
        return candidates[0];
      }
    }
  }
}

/**
 * One connection's claim on a server: counted in the server's `active` (and
 * `total`) from the moment it is taken until it is released, exactly once,
 * whichever way the connection ends. Only a lease changes those counters.
 */
export class Lease {
  /** The server held. */
  readonly server: Server;
  #held = true;

  /** @param server The server chosen for a connection. */
  constructor(server: Server) {
    this.server = server;
    server.active++;
    server.total++;
  }

  /** The connect to the server failed: counted against it, and released. */
  fail(): void {
    if (this.#held) this.server.failures++;
    this.release();
  }

  /** The connection is done with the server. Safe to call again. */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    this.server.active--;
  }
}

/**
 * One connection's tour of a backend's servers: each attempt leases the
 * next server the balancing picks, skipping those tried, within the retry
 * budget (failover).
 */
export class Tour {
  readonly #backend: Backend;
  readonly #client: string | undefined;
  readonly #tried = new Set<Server>();
  #attempts = 0;
  #lease: Lease | undefined;

  /**
   * @param backend Whose servers.
   * @param client The client's address, for source-hash balancing.
   */
  constructor(backend: Backend, client: string | undefined) {
    this.#backend = backend;
    this.#client = client;
  }

  /** The backend toured. */
  get backend(): Backend {
    return this.#backend;
  }

  /** How many servers were leased so far. */
  get attempts(): number {
    return this.#attempts;
  }

  /** The server leased now, if any. */
  get server(): Server | undefined {
    return this.#lease?.server;
  }

  /**
   * Lease the next server; `retry` says whether another may follow if its
   * connect fails. Undefined when the budget is spent or no server is left.
   */
  next(): { server: Server; retry: boolean } | undefined {
    const b = this.#backend;
    if (this.#attempts > b.retries) return undefined;
    const server = b.pick(this.#client, this.#tried);
    if (server === undefined) return undefined;
    this.#tried.add(server);
    this.#attempts++;
    this.#lease = new Lease(server);
    return { server, retry: this.#attempts <= b.retries && b.hasOther(this.#tried) };
  }

  /** The connect to the leased server failed. */
  failed(): void {
    this.#lease?.fail();
    this.#lease = undefined;
  }

  /** The connection ended: give the server back. */
  release(): void {
    this.#lease?.release();
  }
}
