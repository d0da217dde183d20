/**
 * The admin API's vocabulary: the JSON shapes of `/api/v1/…` (their field
 * names are stable) and what serves them — one process, or a supervisor
 * that asks its workers.
 *
 * @module
 */

/** GET /api/v1/process. */
export interface ProcessInfo {
  version: string;
  runtime: string;
  runtime_version: string;
  pid: number;
  /** The engine new listeners get ("native" or "stream"), and why not native. */
  engine: string;
  engine_reason: string | null;
  started_at: string;
  uptime_s: number;
  /** Worker processes (1 without --workers). */
  workers: number;
  /** Open file descriptors (summed over the workers). */
  fds: number;
  /** Resident memory in bytes (summed over the workers). */
  rss_bytes: number;
  config: string;
  last_reload: { ok: boolean; message: string } | null;
  /** With --workers: one entry per worker. */
  per_worker?: WorkerInfo[];
}

/** One worker in {@linkcode ProcessInfo.per_worker}. */
export interface WorkerInfo {
  worker: number;
  pid: number;
  uptime_s: number;
  fds: number;
  rss_bytes: number;
  /** Why it did not answer, when it did not. */
  error?: string;
}

/** Per-second rates over the last few seconds. */
export interface Rates {
  conn_per_s: number;
  bytes_in_per_s: number;
  bytes_out_per_s: number;
}

/** GET /api/v1/listeners (one entry). */
export interface ListenerInfo {
  name: string;
  address: string;
  engine: string;
  /** "enabled", "disabled", or "mixed" when workers differ. */
  state: string;
  /** The backend's name, or the kind of router: "route", "socks", "http-connect". */
  route: string;
  current: number;
  /** The most open at once (per worker, summed). */
  peak: number;
  /** max_connections, 0 for none. */
  limit: number;
  /** Connections that opened. */
  opened: number;
  /** Connections that ended. */
  total: number;
  /** Bytes from clients, and to clients (open connections included). */
  bytes_in: number;
  bytes_out: number;
  /** Refusals and failures by error code (RK_ELIMIT: over max_connections, …). */
  errors: Record<string, number>;
  /** Failed connects to targets, by reason. */
  connect_failures: Record<string, number>;
  rate: Rates;
}

/** A server of a backend. */
export interface ServerInfo {
  backend: string;
  name: string;
  address: string;
  /** "up", "down", "drain", "maint", or "mixed" when workers differ. */
  state: string;
  /** What an operator set: "ready", "drain", "maint". */
  admin: string;
  /** Health checks say it is up (summed over workers: how many say so). */
  up: boolean;
  /** The last health check, or null when it is not checked. */
  health: { ok: boolean; reason: string | null; at: string } | null;
  /** When its state last changed. */
  changed_at: string;
  weight: number;
  current: number;
  total: number;
  connect_failures: number;
  bytes_in: number;
  bytes_out: number;
}

/** GET /api/v1/backends (one entry). */
export interface BackendInfo {
  name: string;
  balance: string;
  current: number;
  total: number;
  servers: ServerInfo[];
}

/** An open connection. */
export interface ConnInfo {
  id: number;
  /** Which worker has it (with --workers). */
  worker?: number;
  listener: string;
  client: string | null;
  /** From the client's PROXY header. */
  original_client: string | null;
  /** "backend/server", or null before one is chosen. */
  server: string | null;
  route: string;
  age_ms: number;
  bytes_in: number;
  bytes_out: number;
  state: string;
  engine: string;
}

/** What a connection list may be narrowed to. */
export interface ConnQuery {
  listener?: string;
  /** "backend/server" or "backend". */
  server?: string;
  /** A substring of the client's (or original client's) address. */
  client?: string;
  offset: number;
  limit: number;
}

/** GET /api/v1/connections. */
export interface ConnPage {
  /** Matching connections in all. */
  total: number;
  offset: number;
  limit: number;
  connections: ConnInfo[];
}

/** Who asks for an action. */
export interface Actor {
  /** The token's name. */
  by: string;
  /** Where the request came from. */
  peer: string;
}

/** The answer to an action. */
export interface ActionResult {
  ok: boolean;
  message: string;
  /** With --workers: each worker's answer. */
  per_worker?: { worker: number; ok: boolean; message: string }[];
}

/** Thrown by a source for a request that names nothing that exists (404). */
export class NotFound extends Error {
  /** @param message What was not found. */
  constructor(message: string) {
    super(message);
    this.name = "NotFound";
  }
}

/** What serves the admin API: one process, or a supervisor and its workers. */
export interface AdminSource {
  process(): Promise<ProcessInfo>;
  listeners(): Promise<ListenerInfo[]>;
  backends(): Promise<BackendInfo[]>;
  connections(q: ConnQuery): Promise<ConnPage>;
  /** Set a server's state and/or weight; throws NotFound or RangeError. */
  setServer(
    backend: string,
    server: string,
    change: { state?: "ready" | "drain" | "maint"; weight?: number },
    who: Actor,
  ): Promise<ActionResult>;
  closeConnection(id: number, worker: number | undefined, who: Actor): Promise<ActionResult>;
  reload(who: Actor): Promise<ActionResult>;
  setListener(name: string, enabled: boolean, who: Actor): Promise<ActionResult>;
  /** The Prometheus text, when the metrics endpoint shares this listener. */
  metrics?(): Promise<string>;
}
