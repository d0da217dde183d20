/**
 * The tunnel's client side: local listeners whose connections enter the
 * tunnel, one stream each, over one link that is kept up (reconnecting
 * with exponential backoff and jitter).
 *
 * @module
 */
import { Emitter } from "../emitter.ts";
import { RelaykitError } from "../errors.ts";
import { type Endpoint, formatEndpoint, type TlsClientOptions } from "../forward/types.ts";
import { runtime } from "../runtime/detect.ts";
import type { NetConn, NetListener } from "../runtime/types.ts";
import { type EntryKind, serveEntry } from "./entry.ts";
import { formatDestination } from "./destination.ts";
import type { EnginePreference } from "../forward/select.ts";
import type { NativeEngine } from "../native/engine.ts";
import type { TunnelDestination } from "./frame.ts";
import { differs, type TunnelUpdate } from "./update.ts";
import {
  nativeConnect,
  type NativeHeld,
  NativeHoldListener,
  NativeLinkConn,
  nativeTls,
  nativeTlsLink,
  tunnelEngine,
} from "./native.ts";
import {
  Link,
  type LinkCloseReason,
  type TunnelStreamEnd,
  type TunnelStreamStats,
} from "./link.ts";

/**
 * A local listener of a tunnel client: every connection to `listen` is a
 * stream to `to` at the other end.
 *
 * @example
 * ```ts
 * import type { TunnelListener } from "@relaykit/relaykit";
 * const db: TunnelListener = { listen: { host: "127.0.0.1", port: 15432 }, to: { host: "10.0.0.5", port: 5432 } };
 * const web: TunnelListener = { listen: { host: "127.0.0.1", port: 8080 }, to: { route: "web" } };
 * console.log(db.to, web.to);
 * ```
 */
export interface TunnelListener {
  /** Where to listen. */
  listen: Endpoint;
  /** Where its streams go: an address the server may reach, or a route it names. */
  to: TunnelDestination;
}

/** A local listener as asked for: a fixed destination, or an entry protocol. */
type EntrySpec =
  | { kind: "listen"; l: TunnelListener }
  | { kind: EntryKind; l: TunnelEntryListener };

/** A bound local listener and what its connections ask for (changed by a reload). */
interface Entry {
  spec: EntrySpec;
  /** Its bound address, formatted. */
  name: string;
  listener: NetListener;
}

/**
 * Whether a client with these listeners runs on the runtime's sockets
 * whatever the engine: a Unix socket listener, and the SOCKS and HTTP
 * CONNECT entries (their handshakes are read there), keep the whole client
 * there, since a native link carries native connections only.
 */
function runtimeOnly(o: TunnelClientOptions): boolean {
  return (o.listeners ?? []).some((l) => "path" in l.listen) ||
    (o.socks?.length ?? 0) > 0 || (o.httpConnect?.length ?? 0) > 0;
}

/** Where a listener's connections go, for the log. */
function describeSpec(spec: EntrySpec): string {
  return spec.kind === "listen"
    ? formatDestination(spec.l.to)
    : spec.kind === "socks"
    ? "SOCKS"
    : "HTTP CONNECT";
}

/**
 * Each listener under the key a reload matches it by: its kind and address
 * as given (so a port 0 matches itself); a repeated address gets "#n".
 * In the order `listeners`, `socks`, `httpConnect`.
 */
function entryKeys(o: TunnelClientOptions): Map<string, EntrySpec> {
  const keys = new Map<string, EntrySpec>();
  const all: EntrySpec[] = [
    ...(o.listeners ?? []).map((l) => ({ kind: "listen" as const, l })),
    ...(o.socks ?? []).map((l) => ({ kind: "socks" as const, l })),
    ...(o.httpConnect ?? []).map((l) => ({ kind: "http-connect" as const, l })),
  ];
  for (const spec of all) {
    const base = `${spec.kind} ${formatEndpoint(spec.l.listen)}`;
    let key = base;
    for (let n = 2; keys.has(key); n++) key = `${base}#${n}`;
    keys.set(key, spec);
  }
  return keys;
}

/**
 * A SOCKS or HTTP CONNECT listener of a tunnel client: each connection
 * names its destination in its request (SOCKS4, 4a or 5; or
 * `CONNECT host:port`), which the server allows or refuses with its rules.
 *
 * @example
 * ```ts
 * import type { TunnelEntryListener } from "@relaykit/relaykit";
 * const socks: TunnelEntryListener = { listen: { host: "127.0.0.1", port: 1080 } };
 * const withPasswords: TunnelEntryListener = {
 *   listen: { host: "127.0.0.1", port: 3128 },
 *   users: { alice: "s3cret" },
 * };
 * console.log(socks.listen, Object.keys(withPasswords.users ?? {}));
 * ```
 */
export interface TunnelEntryListener {
  /** Where to listen. */
  listen: Endpoint;
  /**
   * Username and password pairs; when given, clients must authenticate
   * (SOCKS5 username/password, which SOCKS4 cannot: refused; HTTP Basic
   * proxy credentials). @default none: no authentication
   */
  users?: Readonly<Record<string, string>>;
}

/**
 * How a tunnel client reaches its server.
 *
 * @example
 * ```ts
 * import type { TunnelClientOptions } from "@relaykit/relaykit";
 * const options: TunnelClientOptions = {
 *   link: { host: "edge.example.com", port: 7000 },
 *   tls: { servername: "edge.example.com" },
 *   secret: "correct horse battery staple",
 *   listeners: [{ listen: { host: "127.0.0.1", port: 15432 }, to: { host: "10.0.0.5", port: 5432 } }],
 * };
 * console.log(options.listeners?.length);
 * ```
 */
export interface TunnelClientOptions {
  /** The tunnel server. */
  link: { host: string; port: number };
  /** The local listeners with a fixed destination. @default none */
  listeners?: readonly TunnelListener[];
  /**
   * SOCKS4, 4a and 5 listeners: each connection names its destination,
   * which the server's rules allow or refuse. @default none
   */
  socks?: readonly TunnelEntryListener[];
  /**
   * HTTP CONNECT listeners: each `CONNECT host:port` names its destination,
   * which the server's rules allow or refuse. @default none
   */
  httpConnect?: readonly TunnelEntryListener[];
  /**
   * A SOCKS or HTTP CONNECT client must send its whole request within this
   * many ms. @default 10000
   */
  entryTimeout?: number;
  /**
   * A stream whose OPEN the server has answered neither way after this many
   * ms ends as "connect-failed" (ETIMEDOUT; a SOCKS client gets 0x06, an
   * HTTP CONNECT client 504) and is reset at the server (0: never). Longer
   * than the server's own connect timeout, so that its answer comes first.
   * @default 30000
   */
  openTimeout?: number;
  /** Shared secret; the server must prove it knows it too. */
  secret?: string;
  /** Make the link over TLS (`true`: verify against the system's CAs). */
  tls?: TlsClientOptions | true;
  /** Give up one link connect after this many ms. @default 10000 */
  connectTimeout?: number;
  /** First reconnect delay, ms; it doubles (with jitter) up to maxDelay. @default 100 */
  reconnectDelay?: number;
  /** Longest reconnect delay, ms. @default 5000 */
  reconnectMaxDelay?: number;
  /** PING every this many ms (0: never). @default 10000 */
  keepaliveInterval?: number;
  /** The link is dead after this many intervals without a frame. @default 3 */
  keepaliveMisses?: number;
  /** Protocol versions offered. @default TUNNEL_VERSIONS */
  versions?: readonly number[];
  /**
   * Where the link's and the streams' bytes move: "native" in the C
   * library's workers, "stream" on the runtime's sockets; "auto" (default,
   * or RELAYKIT_ENGINE) picks native when the library loads. A TLS link
   * needs the library's TLS too (OpenSSL 3, loaded at run time): without
   * it "auto" runs on the stream engine ({@link TunnelClient.engineReason}
   * says why) and "native" throws.
   */
  engine?: EnginePreference;
}

/**
 * What a tunnel client reports.
 *
 * @example
 * ```ts
 * import type { TunnelClientEvents } from "@relaykit/relaykit";
 * const onDown = (e: TunnelClientEvents["down"]) => console.log(`${e.reason}, again in ${e.retryInMs} ms`);
 * onDown({ reason: "link-lost", error: undefined, retryInMs: 100 });
 * ```
 */
export interface TunnelClientEvents {
  /** The link is up. */
  up: { remote: string; version: number };
  /**
   * The link is down (or could not be made); the next try is in `retryInMs`.
   * A TLS certificate that does not verify is one of these ("connect-failed",
   * code CERT_UNTRUSTED, the reason in the message): the server's certificate
   * may be replaced, so the client keeps trying.
   */
  down: {
    reason: LinkCloseReason | "connect-failed";
    error: RelaykitError | undefined;
    retryInMs: number;
  };
  /**
   * The server refused this client for its shared secret or its protocol
   * version (or this client refused the server for the same reasons): the
   * client has stopped for good (listeners closed, no retry).
   * `error.code` is "RK_ETUNNEL_AUTH" or "RK_ETUNNEL_VERSION".
   */
  stopped: { reason: "auth-failed" | "version"; error: RelaykitError };
  /**
   * A local connection was closed at once (or, on a SOCKS or HTTP CONNECT
   * listener, answered with a failure): the link is down.
   */
  refused: { listener: string; remote: string | undefined };
  /**
   * A SOCKS or HTTP CONNECT request was refused before it reached the
   * server (a wrong password, an unsupported command, a malformed or slow
   * request): `what` says why. Destinations the server refuses end as
   * streams (`stream-end`, reason "refused").
   */
  "entry-refused": { listener: string; remote: string | undefined; what: string };
  /** A stream ended. */
  "stream-end": TunnelStreamEnd & { listener: string };
}

/**
 * Local listeners whose connections go through one tunnel link.
 *
 * @example
 * ```ts
 * import { TunnelClient } from "@relaykit/relaykit";
 * const client = await TunnelClient.start({
 *   link: { host: "127.0.0.1", port: 9 }, // nothing there: it keeps retrying
 *   listeners: [{ listen: { host: "127.0.0.1", port: 0 }, to: { route: "web" } }],
 *   reconnectMaxDelay: 1000,
 * });
 * client.on("down", (e) => console.log(`link down (${e.reason}), retry in ${e.retryInMs} ms`));
 * // refused for its secret or version: no retry, the reason in e.error
 * client.on("stopped", (e) => console.error(`tunnel client stopped: ${e.error.message}`));
 * await client.close();
 * ```
 */
export class TunnelClient extends Emitter<TunnelClientEvents> {
  #o: TunnelClientOptions;
  /** The local listeners by key (see {@linkcode entryKeys}), in the order given. */
  #entries = new Map<string, Entry>();
  #link: Link | undefined;
  /** Bumped when the link restarts: what an older link or connect reports is ignored. */
  #gen = 0;
  #closed = false;
  #delay: number;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  #stopped: RelaykitError | undefined;
  #connecting = false;
  readonly #native: NativeEngine | undefined;
  readonly #engineReason: string | undefined;

  private constructor(options: TunnelClientOptions) {
    super();
    this.#o = options;
    this.#delay = options.reconnectDelay ?? 100;
    const choice = runtimeOnly(options)
      ? {
        native: undefined,
        reason: "SOCKS, HTTP CONNECT and Unix socket listeners run on the runtime's sockets",
      }
      : tunnelEngine(options.engine, options.tls !== undefined);
    this.#native = choice.native;
    this.#engineReason = choice.reason;
  }

  /** The engine that moves the tunnel's bytes. */
  get engine(): "native" | "stream" {
    return this.#native !== undefined ? "native" : "stream";
  }

  /** Why the tunnel runs on the stream engine (undefined on the native one). */
  get engineReason(): string | undefined {
    return this.#engineReason;
  }

  /**
   * Bind the listeners and start making the link (without waiting for it;
   * see {@link TunnelClient.waitUp}).
   *
   * @param options Where the server is and what to listen on.
   * @returns The running client.
   * @throws {RelaykitError} when a listener cannot bind.
   */
  static async start(options: TunnelClientOptions): Promise<TunnelClient> {
    const c = new TunnelClient(options);
    c.#entries = await c.#bindAll(entryKeys(options));
    c.#connect();
    return c;
  }

  /** Bind a listener for each entry (all or none). */
  async #bindAll(specs: Map<string, EntrySpec>): Promise<Map<string, Entry>> {
    const bound = new Map<string, Entry>();
    try {
      for (const [key, spec] of specs) {
        const e: Entry = { spec, name: formatEndpoint(spec.l.listen), listener: undefined! };
        const native = this.#native;
        if (native !== undefined && spec.kind === "listen" && !("path" in spec.l.listen)) {
          const nl: NativeHoldListener = NativeHoldListener.listen(
            native,
            spec.l.listen,
            (held, remote) => this.#acceptNative(nl, held, remote, e),
          );
          e.listener = nl;
        } else {
          e.listener = await runtime.net.listen(
            spec.l.listen,
            { backlog: 511, reusePort: false },
            (conn) => this.#accept(conn, e),
          );
        }
        e.name = formatEndpoint(e.listener.address); // the port filled in
        bound.set(key, e);
      }
    } catch (err) {
      for (const e of bound.values()) e.listener.close();
      throw err;
    }
    return bound;
  }

  /**
   * Change a running client (a reload), in two steps: new listeners are
   * bound now; {@link TunnelUpdate.commit} applies the rest. Listeners are
   * matched by their address: a new one starts, a removed one stops
   * accepting (its streams go on), one whose destination changed sends its
   * next connections there. Another link address, secret, TLS settings or
   * versions restart the link (its streams end, a new one is made at once);
   * anything else keeps it and its streams up (a new keepalive applies to
   * it at once).
   *
   * @param options The client's new options.
   * @returns The staged change.
   * @throws {RelaykitError} when a new listener cannot bind (nothing changed then).
   */
  async stage(options: TunnelClientOptions): Promise<TunnelUpdate> {
    if (this.#closed) throw new TypeError("The tunnel client is closed");
    const was = this.#o;
    const native = this.#native;
    if (
      native !== undefined &&
      (runtimeOnly(options) || (options.tls !== undefined && !nativeTls(native)))
    ) {
      // (its listeners hand their sockets to the engine; a TLS link there
      // needs the engine's TLS)
      throw new RangeError(
        "this tunnel client runs on the native engine, which takes no SOCKS, HTTP CONNECT or " +
          "Unix socket listeners (and no TLS link without OpenSSL 3): restart it to use them",
      );
    }
    const specs = entryKeys(options);
    const fresh = new Map([...specs].filter(([k]) => !this.#entries.has(k)));
    const added = await this.#bindAll(fresh);
    const why: string[] = [];
    if (differs(was.link, options.link)) why.push("link address");
    if (differs(was.secret, options.secret)) why.push("secret");
    if (differs(was.tls, options.tls)) why.push("TLS");
    if (differs(was.versions, options.versions)) why.push("versions");
    const keepalive = differs(
      [was.keepaliveInterval, was.keepaliveMisses],
      [options.keepaliveInterval, options.keepaliveMisses],
    );
    const changes: string[] = [];
    for (const [key, e] of this.#entries) {
      const spec = specs.get(key);
      if (spec === undefined) changes.push(`listener ${e.name} removed`);
      else if (spec.kind === "listen" && e.spec.kind === "listen") {
        if (differs(spec.l.to, e.spec.l.to)) {
          changes.push(`listener ${e.name} now -> ${formatDestination(spec.l.to)}`);
        }
      } else if (
        spec.kind !== "listen" && e.spec.kind !== "listen" && differs(spec.l.users, e.spec.l.users)
      ) {
        changes.push(`listener ${e.name} (${spec.kind}): users changed`);
      }
    }
    for (const e of added.values()) {
      changes.push(`listener ${e.name} -> ${describeSpec(e.spec)} added`);
    }
    if (keepalive) changes.push("keepalive changed");
    const later = [
      ["connectTimeout", "connect timeout"],
      ["reconnectDelay", "reconnect delay"],
      ["reconnectMaxDelay", "reconnect maximum"],
    ] as const; // apply to the connects that follow
    for (const [k, what] of later) if (differs(was[k], options[k])) changes.push(`${what} changed`);
    const restart = why.length === 0 ? undefined : why.join(", ");
    if (restart !== undefined) changes.push(`link restarted (${restart} changed)`);
    let done = false;
    return {
      changes,
      restart,
      commit: () => {
        if (done) return;
        done = true;
        if (this.#closed) {
          for (const e of added.values()) e.listener.close();
          return;
        }
        const next = new Map<string, Entry>();
        for (const [key, spec] of specs) {
          const e = this.#entries.get(key) ?? added.get(key)!;
          e.spec = spec; // kept: its next connections go to the new destination
          next.set(key, e);
        }
        for (const [key, e] of this.#entries) if (!next.has(key)) e.listener.close();
        this.#entries = next;
        this.#o = options;
        if (restart !== undefined) this.#restartLink(restart);
        else if (keepalive) {
          this.#link?.setKeepalive(
            options.keepaliveInterval ?? 10_000,
            options.keepaliveMisses ?? 3,
          );
        }
      },
      cancel: () => {
        if (done) return;
        done = true;
        for (const e of added.values()) e.listener.close();
      },
    };
  }

  /** Apply new options at once: {@link TunnelClient.stage}, then commit. */
  async update(options: TunnelClientOptions): Promise<readonly string[]> {
    const staged = await this.stage(options);
    staged.commit();
    return staged.changes;
  }

  /** Close the link (GOAWAY, its streams end) and make a new one now. */
  #restartLink(why: string): void {
    this.#gen++;
    clearTimeout(this.#retry);
    const old = this.#link;
    this.#link = undefined;
    old?.close(`the tunnel client's ${why} changed: making a new link`);
    this.#delay = this.#o.reconnectDelay ?? 100;
    this.#connect(); // (a connect under way for the old settings makes it when it ends)
  }

  /**
   * The listeners' bound addresses: `listeners`, then `socks`, then
   * `httpConnect`, each in the order given.
   */
  get addresses(): { host: string; port: number }[] {
    return [...this.#entries.values()].map(({ listener: l }) => {
      if ("path" in l.address) throw new TypeError("Tunnel client listeners are TCP");
      return l.address;
    });
  }

  /**
   * Why the client stopped for good (a refused secret or version; see the
   * `stopped` event), or undefined while it runs.
   */
  get stoppedBy(): RelaykitError | undefined {
    return this.#stopped;
  }

  /** Whether the link is up. */
  get up(): boolean {
    return this.#link?.ready ?? false;
  }

  /** Streams open now. */
  get streams(): number {
    return this.#link?.streams ?? 0;
  }

  /** Counters of every open stream. */
  streamStats(): TunnelStreamStats[] {
    return this.#link?.streamStats() ?? [];
  }

  /** Round-trip time of the link's last PING, ms. */
  get rttMs(): number | undefined {
    return this.#link?.rttMs;
  }

  /**
   * Resolve once the link is up.
   *
   * @param timeoutMs Reject after this long.
   * @throws {RelaykitError} (the promise rejects) when the client stops for
   * good: the server refused its secret or version.
   */
  waitUp(timeoutMs = 10_000): Promise<void> {
    if (this.up) return Promise.resolve();
    if (this.#stopped !== undefined) return Promise.reject(this.#stopped);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`The tunnel link to ${this.#where()} is not up after ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  #where(): string {
    return formatEndpoint(this.#o.link);
  }

  #accept(conn: NetConn, e: Entry): void {
    const spec = e.spec;
    if (spec.kind !== "listen") return this.#acceptEntry(conn, spec.kind, spec.l, e.name);
    const link = this.#link;
    const listener = e.name;
    if (this.#closed || link === undefined || !link.ready) {
      this.emit("refused", {
        listener,
        remote: conn.remote === undefined ? undefined : formatEndpoint(conn.remote),
      });
      conn.destroy(false);
      return;
    }
    const streamEnd = (e: TunnelStreamEnd) => this.emit("stream-end", { ...e, listener });
    this.#streamEnds.set(link.open(spec.l.to, conn), streamEnd);
  }

  #acceptNative(
    nl: NativeHoldListener,
    held: NativeHeld,
    remote: { host: string; port: number } | undefined,
    e: Entry,
  ): void {
    const spec = e.spec;
    if (spec.kind !== "listen") return nl.refuse(held); // cannot happen: bound on the runtime
    const listener = e.name;
    const link = this.#link;
    if (this.#closed || link === undefined || !link.ready || !link.native) {
      this.emit("refused", {
        listener,
        remote: remote === undefined ? undefined : formatEndpoint(remote),
      });
      nl.refuse(held);
      return;
    }
    const streamEnd = (end: TunnelStreamEnd) => this.emit("stream-end", { ...end, listener });
    this.#streamEnds.set(link.open(spec.l.to, held), streamEnd);
  }

  #streamEnds = new Map<number, (e: TunnelStreamEnd) => void>();

  #acceptEntry(conn: NetConn, kind: EntryKind, l: TunnelEntryListener, listener: string): void {
    const remote = conn.remote === undefined ? undefined : formatEndpoint(conn.remote);
    if (this.#closed) {
      conn.destroy(false);
      return;
    }
    serveEntry(conn, {
      kind,
      users: l.users,
      timeoutMs: this.#o.entryTimeout ?? 10_000,
    }, {
      open: (destination, c, opened) => {
        const link = this.#link;
        if (this.#closed || link === undefined || !link.ready) {
          this.emit("refused", { listener, remote });
          return false;
        }
        const streamEnd = (e: TunnelStreamEnd) => this.emit("stream-end", { ...e, listener });
        this.#streamEnds.set(link.open(destination, c, opened), streamEnd);
        return true;
      },
      refused: (what) => this.emit("entry-refused", { listener, remote, what }),
    });
  }

  #connect(): void {
    if (this.#closed || this.#connecting) return;
    this.#connecting = true;
    const gen = this.#gen;
    const tls = this.#o.tls === true ? {} : this.#o.tls;
    const timeout = this.#o.connectTimeout ?? 10_000;
    const native = this.#native;
    const deadline = timeout > 0 ? Date.now() + timeout : 0;
    const link = this.#o.link;
    const connecting: Promise<NetConn> = native !== undefined
      ? nativeConnect(native, link, timeout).then((fd) =>
        tls === undefined
          ? new NativeLinkConn(native, fd, link)
          : nativeTlsLink(native, fd, link, tls, deadline)
      )
      : runtime.net.connect(this.#o.link, {
        timeout,
        family: "any",
        bindAddress: undefined,
        tls,
      });
    connecting.then((conn) => {
      this.#connecting = false;
      if (this.#closed || gen !== this.#gen) {
        conn.destroy(false);
        this.#connect(); // the settings changed meanwhile (a no-op once closed)
        return;
      }
      const remote = this.#where();
      this.#streamEnds = new Map();
      const ends = this.#streamEnds;
      let wasReady = false;
      this.#link = new Link("client", conn, {
        secret: this.#o.secret,
        versions: this.#o.versions,
        keepaliveInterval: this.#o.keepaliveInterval,
        keepaliveMisses: this.#o.keepaliveMisses,
        openTimeout: this.#o.openTimeout,
      }, {
        ready: (version) => {
          wasReady = true;
          this.#delay = this.#o.reconnectDelay ?? 100;
          this.emit("up", { remote, version });
          const waiters = this.#waiters;
          this.#waiters = [];
          for (const w of waiters) w.resolve();
        },
        streamEnd: (e) => {
          const f = ends.get(e.id);
          ends.delete(e.id);
          f?.(e);
        },
        close: (reason, error) => {
          if (gen !== this.#gen) return; // replaced by a restart
          if (reason === "closed" && this.#closed) return;
          if ((reason === "auth-failed" || reason === "version") && !wasReady) {
            this.#stop(
              reason,
              error ?? new RelaykitError("The tunnel handshake was refused", "RK_ETUNNEL_AUTH"),
            );
            return;
          }
          this.#down(reason, error, wasReady);
        },
      });
    }, (err: RelaykitError) => {
      this.#connecting = false;
      if (gen !== this.#gen) this.#connect();
      else this.#down("connect-failed", err, false);
    });
  }

  #down(
    reason: TunnelClientEvents["down"]["reason"],
    error: RelaykitError | undefined,
    wasReady: boolean,
  ): void {
    if (this.#closed) return;
    // after a link that was up, try again soon; else back off further
    if (wasReady) this.#delay = this.#o.reconnectDelay ?? 100;
    const max = this.#o.reconnectMaxDelay ?? 5000;
    const base = Math.min(this.#delay, max);
    const wait = Math.round(base / 2 + Math.random() * base / 2); // jitter: 50-100 %
    this.#delay = Math.min(base * 2, max);
    this.emit("down", { reason, error, retryInMs: wait });
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.#connect(), wait);
  }

  /** A refusal no retry can cure: stop for good and say why. */
  #stop(reason: "auth-failed" | "version", error: RelaykitError): void {
    if (this.#closed) return;
    this.#stopped = error;
    void this.close();
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
    this.emit("stopped", { reason, error });
  }

  /** Cut the link at once, as a network failure would (for tests and drills). */
  dropLink(): void {
    this.#link?.destroy();
  }

  /** Stop listening, close the link; open streams end with "closed". */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      clearTimeout(this.#retry);
      for (const e of this.#entries.values()) e.listener.close();
      this.#link?.close("the tunnel client is shutting down");
    }
    return Promise.resolve();
  }

  /** Same as close(), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
