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
import type { EnginePreference } from "../forward/select.ts";
import type { NativeEngine } from "../native/engine.ts";
import type { TunnelDestination } from "./frame.ts";
import {
  nativeConnect,
  type NativeHeld,
  NativeHoldListener,
  NativeLinkConn,
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
 * console.log(options.listeners.length);
 * ```
 */
export interface TunnelClientOptions {
  /** The tunnel server. */
  link: { host: string; port: number };
  /** The local listeners. */
  listeners: readonly TunnelListener[];
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
   * runs on the stream engine.
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
  /** A local connection was closed at once: the link is down. */
  refused: { listener: string; remote: string | undefined };
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
  readonly #o: TunnelClientOptions;
  readonly #listeners: NetListener[] = [];
  #link: Link | undefined;
  #closed = false;
  #delay: number;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  #stopped: RelaykitError | undefined;
  #connecting = false;
  readonly #native: NativeEngine | undefined;

  private constructor(options: TunnelClientOptions) {
    super();
    this.#o = options;
    this.#delay = options.reconnectDelay ?? 100;
    // a Unix socket listener runs on the runtime's sockets: then all of it does
    this.#native = options.listeners.some((l) => "path" in l.listen)
      ? undefined
      : tunnelEngine(options.engine, options.tls !== undefined);
  }

  /** The engine that moves the tunnel's bytes. */
  get engine(): "native" | "stream" {
    return this.#native !== undefined ? "native" : "stream";
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
    try {
      for (const l of options.listeners) {
        const named = { name: formatEndpoint(l.listen) };
        const native = c.#native;
        if (native !== undefined && !("path" in l.listen)) {
          const nl: NativeHoldListener = NativeHoldListener.listen(
            native,
            l.listen,
            (held, remote) => c.#acceptNative(nl, held, remote, l, named.name),
          );
          named.name = formatEndpoint(nl.address);
          c.#listeners.push(nl);
          continue;
        }
        const listener = await runtime.net.listen(
          l.listen,
          { backlog: 511, reusePort: false },
          (conn) => c.#accept(conn, l, named.name),
        );
        named.name = formatEndpoint(listener.address); // the port filled in
        c.#listeners.push(listener);
      }
    } catch (err) {
      for (const l of c.#listeners) l.close();
      throw err;
    }
    c.#connect();
    return c;
  }

  /** The listeners' bound addresses, in the order given. */
  get addresses(): { host: string; port: number }[] {
    return this.#listeners.map((l) => {
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

  #accept(conn: NetConn, l: TunnelListener, listener: string): void {
    const link = this.#link;
    if (this.#closed || link === undefined || !link.ready) {
      this.emit("refused", {
        listener,
        remote: conn.remote === undefined ? undefined : formatEndpoint(conn.remote),
      });
      conn.destroy(false);
      return;
    }
    const streamEnd = (e: TunnelStreamEnd) => this.emit("stream-end", { ...e, listener });
    this.#streamEnds.set(link.open(l.to, conn), streamEnd);
  }

  #acceptNative(
    nl: NativeHoldListener,
    held: NativeHeld,
    remote: { host: string; port: number } | undefined,
    l: TunnelListener,
    listener: string,
  ): void {
    const link = this.#link;
    if (this.#closed || link === undefined || !link.ready || !link.native) {
      this.emit("refused", {
        listener,
        remote: remote === undefined ? undefined : formatEndpoint(remote),
      });
      nl.refuse(held);
      return;
    }
    const streamEnd = (e: TunnelStreamEnd) => this.emit("stream-end", { ...e, listener });
    this.#streamEnds.set(link.open(l.to, held), streamEnd);
  }

  #streamEnds = new Map<number, (e: TunnelStreamEnd) => void>();

  #connect(): void {
    if (this.#closed || this.#connecting) return;
    this.#connecting = true;
    const tls = this.#o.tls === true ? {} : this.#o.tls;
    const timeout = this.#o.connectTimeout ?? 10_000;
    const native = this.#native;
    const connecting: Promise<NetConn> = native !== undefined
      ? nativeConnect(native, this.#o.link, timeout).then((fd) =>
        new NativeLinkConn(native, fd, this.#o.link)
      )
      : runtime.net.connect(this.#o.link, {
        timeout,
        family: "any",
        bindAddress: undefined,
        tls,
      });
    connecting.then((conn) => {
      this.#connecting = false;
      if (this.#closed) {
        conn.destroy(false);
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
      this.#down("connect-failed", err, false);
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
      for (const l of this.#listeners) l.close();
      this.#link?.close("the tunnel client is shutting down");
    }
    return Promise.resolve();
  }

  /** Same as close(), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
