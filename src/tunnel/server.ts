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
import { differs, type TunnelUpdate } from "./update.ts";
import {
  nativeConnect,
  type NativeConnected,
  nativeDiscard,
  NativeHoldListener,
  NativeLinkConn,
  nativeTls,
  nativeTlsFree,
  nativeTlsServer,
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
  /** Per-stream flow-control window announced to clients, bytes. @default 1048576 */
  window?: number;
  /** PING every this many ms (0: never). @default 10000 */
  keepaliveInterval?: number;
  /** A link is dead after this many intervals without a frame. @default 3 */
  keepaliveMisses?: number;
  /** Protocol versions spoken. @default TUNNEL_VERSIONS */
  versions?: readonly number[];
  /**
   * Bind with SO_REUSEPORT, so that a {@link TunnelServer.stage} that changes
   * the TLS settings binds beside the running socket before that closes.
   * Without it such a change closes the socket first, then binds anew.
   *
   * @default false
   */
  reusePort?: boolean;
  /**
   * Where the links' and the streams' bytes move: "native" in the C
   * library's workers, "stream" on the runtime's sockets; "auto" (default,
   * or RELAYKIT_ENGINE) picks native when the library loads. A TLS server
   * needs the library's TLS too (OpenSSL 3, loaded at run time): without
   * it "auto" runs on the stream engine ({@link TunnelServer.engineReason}
   * says why) and "native" throws.
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

/** The routes as a map: own keys only, never a lookup through Object.prototype. */
function routeMap(r: TunnelServerOptions["routes"]): ReadonlyMap<string, Endpoint> {
  return r instanceof Map ? new Map(r) : new Map(Object.entries(r ?? {}));
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
  #o: TunnelServerOptions;
  #access: Access;
  #routes: ReadonlyMap<string, Endpoint>;
  #listener: NetListener | undefined;
  readonly #links = new Set<Link>();
  #closed = false;
  readonly #native: NativeEngine | undefined;
  readonly #engineReason: string | undefined;

  private constructor(options: TunnelServerOptions) {
    super();
    this.#o = options;
    const choice = "path" in options.listen
      ? { native: undefined, reason: "a Unix socket link runs on the runtime's sockets" }
      : tunnelEngine(options.engine, options.tls !== undefined);
    this.#native = choice.native;
    this.#engineReason = choice.reason;
    this.#access = new Access(options.allow ?? [], options.deny ?? []);
    this.#routes = routeMap(options.routes);
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
    s.#listener = await s.#bind(options, options.listen);
    return s;
  }

  /**
   * Bind `at` again. When its running socket was just closed (`reopen`),
   * the port may still be in use for a moment (the native engine closes a
   * listener on its workers, not at once): tried again for up to 2 s.
   */
  async #rebind(o: TunnelServerOptions, at: Endpoint, reopen: boolean): Promise<NetListener> {
    const until = Date.now() + 2000;
    for (;;) {
      try {
        return await this.#bind(o, at);
      } catch (err) {
        const inUse = err instanceof RelaykitError && err.code === "EADDRINUSE";
        if (!reopen || !inUse || Date.now() > until) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  async #bind(o: TunnelServerOptions, at: Endpoint): Promise<NetListener> {
    const native = this.#native;
    // (a server started without TLS and reloaded to TLS: in the engine too
    // when it speaks TLS, else on the runtime)
    if (
      native !== undefined && !("path" in at) && (o.tls === undefined || nativeTls(native))
    ) {
      // links accepted by the engine, their bytes (and TLS) moved by it
      const ctx = o.tls === undefined ? undefined : nativeTlsServer(native, at, o.tls);
      let l: NativeHoldListener;
      try {
        l = NativeHoldListener.listen(native, at, (held, remote) => {
          if (this.#closed) {
            l.refuse(held);
            return;
          }
          let conn: NativeLinkConn;
          try {
            conn = new NativeLinkConn(
              native,
              { connId: held.connId },
              remote,
              ctx === undefined ? undefined : { ctx, server: true },
            );
          } catch {
            return; // the connection went already
          }
          this.#accept(conn);
        }, ctx === undefined ? undefined : () => nativeTlsFree(native, ctx));
      } catch (err) {
        if (ctx !== undefined) nativeTlsFree(native, ctx);
        throw err;
      }
      return l;
    }
    return await runtime.net.listen(
      at,
      { backlog: 511, reusePort: o.reusePort ?? false, tls: o.tls },
      (conn) => this.#accept(conn),
    );
  }

  /**
   * Change a running server (a reload), in two steps: what needs a new
   * listening socket (another `listen` address, other TLS settings) is
   * bound now; {@link TunnelUpdate.commit} applies the rest. New rules,
   * routes and connect timeout decide the OPENs that come after the commit;
   * open streams stay. A new keepalive applies to the links up now, a new
   * window to links made later. Another address, TLS settings, secret or
   * versions restart the links: each one up is closed with a GOAWAY (its
   * streams end) and its client makes a new one.
   *
   * @param options The server's new options.
   * @returns The staged change.
   * @throws {RelaykitError} when a new socket cannot bind; {RangeError} for
   * a bad rule. Nothing changed then.
   */
  async stage(options: TunnelServerOptions): Promise<TunnelUpdate> {
    if (this.#closed) throw new TypeError("The tunnel server is closed");
    const was = this.#o;
    const access = differs([was.allow, was.deny], [options.allow, options.deny])
      ? new Access(options.allow ?? [], options.deny ?? [])
      : undefined;
    const routes = routeMap(options.routes);
    const routesChanged = differs([...this.#routes], [...routes]);
    const why: string[] = [];
    const moved = differs(was.listen, options.listen);
    if (moved) why.push("listen address");
    if (differs(was.tls, options.tls)) why.push("TLS");
    if (differs(was.secret, options.secret)) why.push("secret");
    if (differs(was.versions, options.versions)) why.push("versions");
    const rebind = moved || differs(was.tls, options.tls) ||
      (options.reusePort ?? false) !== (was.reusePort ?? false);
    const here = this.#listener!.address;
    let listener: NetListener | undefined;
    let reopen = false; // the running socket was closed to bind the new one
    if (rebind) {
      // the same address: its port as bound (a 0 in the options was given one)
      const at = moved ? options.listen : here;
      const beside = !moved && (was.reusePort ?? false) && (options.reusePort ?? false);
      if (!moved && !beside) {
        this.#listener!.close();
        reopen = true;
      }
      try {
        listener = await this.#rebind(options, at, reopen);
      } catch (err) {
        // the old settings on the socket again (if that fails too, the
        // first error says why; the server then no longer listens)
        if (reopen) this.#listener = await this.#bind(was, at).catch(() => this.#listener);
        throw err;
      }
    }
    const changes: string[] = [];
    if (access !== undefined) changes.push("allow/deny rules changed");
    if (routesChanged) changes.push("routes changed");
    if (differs(was.connectTimeout, options.connectTimeout)) {
      changes.push("connect timeout changed");
    }
    const keepalive = differs(
      [was.keepaliveInterval, was.keepaliveMisses],
      [options.keepaliveInterval, options.keepaliveMisses],
    );
    if (keepalive) changes.push("keepalive changed");
    if (differs(was.window, options.window)) changes.push("window changed (for new links)");
    if (moved && listener !== undefined) {
      changes.push(`listening on ${formatEndpoint(listener.address)}`);
    }
    const restart = why.length === 0 ? undefined : why.join(", ");
    if (restart !== undefined) changes.push(`links restarted (${restart} changed)`);
    let done = false;
    return {
      changes,
      restart,
      commit: () => {
        if (done) return;
        done = true;
        if (this.#closed) {
          listener?.close();
          return;
        }
        this.#o = options;
        if (access !== undefined) this.#access = access;
        if (routesChanged) this.#routes = routes;
        if (listener !== undefined) {
          if (!reopen) this.#listener?.close();
          this.#listener = listener;
        }
        if (restart !== undefined) {
          for (const l of [...this.#links]) {
            l.close(`the tunnel server's ${restart} changed: make a new link`);
          }
        } else if (keepalive) {
          for (const l of this.#links) {
            l.setKeepalive(options.keepaliveInterval ?? 10_000, options.keepaliveMisses ?? 3);
          }
        }
      },
      cancel: () => {
        if (done) return;
        done = true;
        listener?.close();
        if (reopen && !this.#closed) {
          // best effort: the old settings on the socket's address again
          this.#bind(was, here).then((l) => {
            if (this.#closed) l.close();
            else this.#listener = l;
          }, () => {});
        }
      },
    };
  }

  /** Apply new options at once: {@link TunnelServer.stage}, then commit. */
  async update(options: TunnelServerOptions): Promise<readonly string[]> {
    const staged = await this.stage(options);
    staged.commit();
    return staged.changes;
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

  /** Why the links run on the stream engine (undefined on the native one). */
  get engineReason(): string | undefined {
    return this.#engineReason;
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
    // the engine carries the streams of its own links only (a TLS link, or
    // one accepted after a reload turned to TLS, runs on the runtime)
    const native = link.native ? this.#native : undefined;
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
