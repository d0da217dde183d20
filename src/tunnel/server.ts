/**
 * The tunnel's server side: accepts links from tunnel clients and opens
 * each stream's destination on the runtime's sockets.
 *
 * @module
 */
import { Emitter } from "../emitter.ts";
import { errorFor, RelaykitError } from "../errors.ts";
import { type Endpoint, formatEndpoint, type TlsServerOptions } from "../forward/types.ts";
import { Access, type AccessRule } from "../proxy/address_policy.ts";
import { runtime } from "../runtime/detect.ts";
import type { NetConn, NetListener } from "../runtime/types.ts";
import type { EnginePreference } from "../forward/select.ts";
import type { NativeEngine } from "../native/engine.ts";
import type { TunnelDestination } from "./frame.ts";
import {
  nativeConnect,
  type NativeConnected,
  nativeDiscard,
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
 * How a tunnel server listens and where its streams may go.
 *
 * @example
 * ```ts
 * import type { TunnelServerOptions } from "@relaykit/relaykit";
 * const options: TunnelServerOptions = {
 *   listen: { host: "0.0.0.0", port: 7000 },
 *   secret: "correct horse battery staple",
 *   allow: [{ cidr: "10.0.0.0/8", port: "5432" }],
 *   routes: { web: { host: "10.0.0.7", port: 80 } },
 * };
 * console.log(Object.keys(options));
 * ```
 */
export interface TunnelServerOptions {
  /** Where tunnel clients connect. */
  listen: Endpoint;
  /** Shared secret the clients must prove they know. @default none: any client */
  secret?: string;
  /** Serve the link over TLS (PEM text). */
  tls?: TlsServerOptions;
  /** Destinations (host:port) streams may open; none by default (closed). */
  allow?: readonly AccessRule[];
  /** Destinations refused even if allowed. */
  deny?: readonly AccessRule[];
  /**
   * Named destinations a stream can ask for by name (always allowed). Only
   * the object's own keys are routes: a name such as "constructor" or
   * "__proto__" is unknown unless it is given here.
   */
  routes?: Readonly<Record<string, Endpoint>> | ReadonlyMap<string, Endpoint>;
  /** Give up connecting to a destination after this many ms. @default 10000 */
  connectTimeout?: number;
  /** Per-stream flow-control window announced to clients, bytes. @default 262144 */
  window?: number;
  /** PING every this many ms (0: never). @default 10000 */
  keepaliveInterval?: number;
  /** A link is dead after this many intervals without a frame. @default 3 */
  keepaliveMisses?: number;
  /** Protocol versions spoken. @default TUNNEL_VERSIONS */
  versions?: readonly number[];
  /**
   * Where the links' and the streams' bytes move: "native" in the C
   * library's workers, "stream" on the runtime's sockets; "auto" (default,
   * or RELAYKIT_ENGINE) picks native when the library loads. A TLS server
   * runs on the stream engine.
   */
  engine?: EnginePreference;
}

/**
 * What a tunnel server reports.
 *
 * @example
 * ```ts
 * import type { TunnelServerEvents } from "@relaykit/relaykit";
 * const onClose = (e: TunnelServerEvents["link-close"]) => console.log(e.remote, e.reason);
 * onClose({ remote: "127.0.0.1:40000", reason: "link-lost", error: undefined });
 * ```
 */
export interface TunnelServerEvents {
  /** A link finished its handshake. */
  link: { remote: string; version: number };
  /** A link closed (after its handshake, or a refused one). */
  "link-close": { remote: string; reason: LinkCloseReason; error: RelaykitError | undefined };
  /** A stream ended. */
  "stream-end": TunnelStreamEnd & { remote: string };
}

/**
 * Accepts tunnel links; opens the destinations their streams ask for.
 *
 * @example A server and a client, one stream through them
 * ```ts
 * import { TunnelClient, TunnelServer } from "@relaykit/relaykit";
 * const server = await TunnelServer.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   secret: "s3cret",
 *   allow: [{ cidr: "127.0.0.0/8" }],
 * });
 * const client = await TunnelClient.start({
 *   link: server.address,
 *   secret: "s3cret",
 *   listeners: [{ listen: { host: "127.0.0.1", port: 0 }, to: { host: "127.0.0.1", port: 9 } }],
 * });
 * await client.waitUp(5000);
 * console.log(`tunnel up, local port ${client.addresses[0]!.port}`);
 * await client.close();
 * await server.close();
 * ```
 */
export class TunnelServer extends Emitter<TunnelServerEvents> {
  readonly #o: TunnelServerOptions;
  readonly #access: Access;
  readonly #routes: ReadonlyMap<string, Endpoint>;
  #listener: NetListener | undefined;
  readonly #links = new Set<Link>();
  #closed = false;
  readonly #native: NativeEngine | undefined;

  private constructor(options: TunnelServerOptions) {
    super();
    this.#o = options;
    this.#native = "path" in options.listen
      ? undefined
      : tunnelEngine(options.engine, options.tls !== undefined);
    this.#access = new Access(options.allow ?? [], options.deny ?? []);
    const r = options.routes;
    // own keys only, never a lookup through Object.prototype
    this.#routes = r instanceof Map ? new Map(r) : new Map(Object.entries(r ?? {}));
  }

  /**
   * Start listening.
   *
   * @param options Where and how.
   * @returns The running server.
   * @throws {RelaykitError} when it cannot bind.
   */
  static async listen(options: TunnelServerOptions): Promise<TunnelServer> {
    const s = new TunnelServer(options);
    const native = s.#native;
    if (native !== undefined && !("path" in options.listen)) {
      s.#listener = NativeHoldListener.listen(native, options.listen, (held, remote) => {
        if (s.#closed) {
          (s.#listener as NativeHoldListener).refuse(held);
          return;
        }
        let conn: NativeLinkConn;
        try {
          conn = new NativeLinkConn(native, { connId: held.connId }, remote);
        } catch {
          return; // the connection went already
        }
        s.#accept(conn);
      });
      return s;
    }
    s.#listener = await runtime.net.listen(
      options.listen,
      { backlog: 511, reusePort: false, tls: options.tls },
      (conn) => s.#accept(conn),
    );
    return s;
  }

  /** The bound address (port filled in). */
  get address(): { host: string; port: number } {
    const a = this.#listener!.address;
    if ("path" in a) throw new TypeError("A tunnel server listens on TCP");
    return a;
  }

  /** The engine that moves the tunnel's bytes. */
  get engine(): "native" | "stream" {
    return this.#native !== undefined ? "native" : "stream";
  }

  /** Links up now. */
  get links(): number {
    return [...this.#links].filter((l) => l.ready).length;
  }

  /** Streams open now, over every link. */
  get streams(): number {
    let n = 0;
    for (const l of this.#links) n += l.streams;
    return n;
  }

  /** Counters of every open stream, over every link. */
  streamStats(): TunnelStreamStats[] {
    return [...this.#links].flatMap((l) => l.streamStats());
  }

  /** Cut every link at once, as a network failure would (for tests and drills). */
  dropLinks(): void {
    for (const l of this.#links) l.destroy();
  }

  #accept(conn: NetConn): void {
    if (this.#closed) {
      conn.destroy(false);
      return;
    }
    const remote = conn.remote === undefined ? "unix" : formatEndpoint(conn.remote);
    let wasReady = false;
    const link: Link = new Link("server", conn, {
      secret: this.#o.secret,
      versions: this.#o.versions,
      window: this.#o.window,
      keepaliveInterval: this.#o.keepaliveInterval,
      keepaliveMisses: this.#o.keepaliveMisses,
    }, {
      ready: (version) => {
        wasReady = true;
        this.emit("link", { remote, version });
      },
      open: (id, destination) => {
        this.#open(link, id, destination).catch((err) => {
          link.refuse(
            id,
            new RelaykitError(`Cannot open the stream: ${(err as Error)?.message ?? err}`, "EIO", {
              cause: err,
            }),
            "connect-failed",
          );
        });
      },
      streamEnd: (end) => this.emit("stream-end", { ...end, remote }),
      close: (reason, error) => {
        this.#links.delete(link);
        if (wasReady || error !== undefined) this.emit("link-close", { remote, reason, error });
      },
    });
    this.#links.add(link);
  }

  async #open(link: Link, id: number, d: TunnelDestination): Promise<void> {
    let target: Endpoint;
    if ("route" in d) {
      const r = this.#routes.get(d.route);
      if (r === undefined) {
        link.refuse(id, errorFor(`No route named "${d.route}"`, "RK_EROUTE"), "refused");
        return;
      }
      target = r;
    } else {
      const a = await this.#access.admit(d.host, d.port);
      if ("refused" in a) {
        if (a.code === "RK_ERESOLVE") {
          link.refuse(id, errorFor(a.refused, a.code), "connect-failed");
        } else link.refuse(id, new RelaykitError(a.refused, a.code), "refused");
        return;
      }
      // the checked address literal: nothing resolves the name again
      target = { host: a.address.text, port: d.port };
    }
    let conn: NetConn | NativeConnected;
    const native = this.#native;
    try {
      const timeout = this.#o.connectTimeout ?? 10_000;
      conn = native !== undefined
        ? await nativeConnect(native, target, timeout)
        : await runtime.net.connect(target, { timeout, family: "any", bindAddress: undefined });
    } catch (err) {
      const e = err instanceof RelaykitError
        ? err
        : errorFor("Cannot connect", "EIO", { cause: err });
      link.refuse(id, e, "connect-failed");
      return;
    }
    if (!link.attach(id, conn)) {
      if ("native" in conn) {
        if (native !== undefined) nativeDiscard(native, conn);
      } else conn.destroy(true);
    }
  }

  /** Stop accepting and close every link (its streams end with "closed"). */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#listener?.close();
      for (const l of [...this.#links]) l.close("the tunnel server is shutting down");
    }
    return Promise.resolve();
  }

  /** Same as close(), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
