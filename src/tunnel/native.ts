/**
 * The tunnel on the native engine (native/src/tunnel.c): the link socket,
 * the client's listeners and the server's connects belong to the C library,
 * and after the handshake the workers move DATA, WINDOW and FIN between
 * the link and the streams' sockets. JavaScript keeps the handshake, the
 * OPEN decisions and every other frame: a {@link NativeLinkConn} is the
 * link as a NetConn until the handshake is done, then the data plane's
 * handle.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import { errorFor, RelaykitError } from "../errors.ts";
import { chooseEngine, chooseTlsEngine, type EnginePreference } from "../forward/select.ts";
import type { Endpoint, TlsClientOptions, TlsServerOptions } from "../forward/types.ts";
import { callsOf, NativeEngine, type NativeEvent } from "../native/engine.ts";
import type { NativeCalls, NativeTunnelTls } from "../native/calls.ts";
import { certificateReason } from "../runtime/tls_verify.ts";
import type { NetConn, NetHandlers, NetListener } from "../runtime/types.ts";
import { connectFailure, formatEndpoint, type InetEndpoint, listenFailure } from "../types.ts";

/** A local connection held by a native listener, to be carried as a stream. */
export interface NativeHeld {
  readonly native: "held";
  readonly connId: number;
}

/** A destination socket connected by the native engine, to be carried as a stream. */
export interface NativeConnected {
  readonly native: "fd";
  readonly fd: number;
}

/** What the data plane reports to the link's owner. */
export interface NativeLinkHandlers {
  /** A stream ended in the engine: FIN both ways, or its socket failed (`code`). */
  streamEnd(
    id: number,
    how: "done" | "reset",
    code: string | undefined,
    bytesOut: number,
    bytesIn: number,
  ): void;
  /** The peer broke the protocol (the link reads no more). */
  protocol(
    problem: "malformed" | "state" | "flow-control" | "oversize" | "unknown-type",
    message: string,
  ): void;
}

const EMPTY = new Uint8Array(0);

/** The engine a tunnel runs on, and why not the native one. */
export interface TunnelEngineChoice {
  /** The native engine, or undefined for the stream engine. */
  native: NativeEngine | undefined;
  /** Why the stream engine (undefined on the native one). */
  reason: string | undefined;
}

/**
 * The engine for a tunnel, as `preference` asks ("auto": native when the
 * library loads). A TLS link needs the library's TLS too (OpenSSL 3, loaded
 * at run time): without it "auto" gives the stream engine (the reason says
 * why) and "native" throws.
 *
 * @throws when "native" is asked for and the library (or its TLS) cannot load.
 */
export function tunnelEngine(
  preference: EnginePreference | undefined,
  tls: boolean,
): TunnelEngineChoice {
  const choice = tls
    ? chooseTlsEngine(preference ?? "auto", undefined, false)
    : chooseEngine(preference ?? "auto");
  return choice.engine.name === "native"
    ? { native: NativeEngine.shared(), reason: undefined }
    : { native: undefined, reason: choice.reason };
}

/** Whether the native engine speaks TLS itself (OpenSSL 3 loaded). */
export function nativeTls(engine: NativeEngine): boolean {
  return engine.tlsUnavailable() === undefined;
}

/** How a TLS link ended before its handshake was done. */
interface TlsFailure {
  /** The code (CERT_UNTRUSTED, RK_ETLS, an errno name). */
  code: string;
  /** The engine's words for it. */
  message: string;
  /** For CERT_UNTRUSTED: OpenSSL's verdict and the peer's certificate. */
  cert?: { said: string; der: Uint8Array } | undefined;
}

/** A link socket whose data plane runs in the native engine. */
export class NativeLinkConn implements NetConn {
  readonly remote: { host: string; port: number } | undefined;
  readonly local: { host: string; port: number } | undefined = undefined;
  readonly #engine: NativeEngine;
  readonly #calls: NativeCalls;
  /** The tunnel id (rk_tunnel_new). */
  readonly id: number;
  #h: NetHandlers | undefined;
  #early: Uint8Array[] = [];
  #native: NativeLinkHandlers | undefined;
  #done = false;
  #written = 0;
  /** A TLS link whose handshake is not done yet: settles {@link secured}. */
  #secure: { resolve: () => void; reject: (f: TlsFailure) => void } | undefined;
  /**
   * Settled once the link's TLS handshake is done (at once without TLS);
   * rejected with the {@link TlsFailure} when the link ends first.
   */
  readonly secured: Promise<void>;

  /**
   * A tunnel on a connected link socket `fd` or a held connection; with
   * `tls`, the engine runs a TLS handshake on it first and every link byte
   * goes through that TLS.
   *
   * @throws {RelaykitError} when the engine refuses it.
   */
  constructor(
    engine: NativeEngine,
    from: { fd: number } | { connId: number },
    remote: InetEndpoint | undefined,
    tls?: NativeTunnelTls,
  ) {
    this.#engine = engine;
    this.#calls = callsOf(engine);
    this.remote = remote;
    const id = this.#calls.tunnelNew(from, tls);
    if (id < 0) {
      if ("fd" in from) this.#calls.fdClose(from.fd);
      throw engine.error(id, "Cannot start the tunnel link");
    }
    this.id = id;
    if (tls === undefined) this.secured = Promise.resolve();
    else {
      this.secured = new Promise((resolve, reject) => this.#secure = { resolve, reject });
      this.secured.catch(() => {}); // a server's link: its owner hears of it by close
    }
    engine.onConnection(id, (ev) => this.#event(ev));
    engine.ref();
  }

  get written(): number {
    return this.#written;
  }

  start(h: NetHandlers): void {
    this.#h = h;
    const early = this.#early;
    this.#early = [];
    for (const b of early) h.data(b);
  }

  write(data: Uint8Array): boolean {
    if (this.#done) return true;
    this.#calls.tunnelSend(this.id, data);
    this.#written += data.length;
    return true; // the engine's queue (bounded: it ends the link past 16 MiB)
  }

  pause(): void {}
  resume(): void {}

  end(): void {
    this.#calls.tunnelClose(this.id, "graceful");
    this.#finish();
  }

  destroy(_reset: boolean): void {
    const was = this.#done;
    this.#calls.tunnelClose(this.id, "abort");
    this.#finish();
    // as a runtime socket does: the owner hears of it
    if (!was) queueMicrotask(() => this.#h?.close(undefined));
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#secure?.reject({ code: "ECANCELED", message: "the link was closed" });
    this.#secure = undefined;
    this.#engine.offConnection(this.id);
    this.#engine.unref();
  }

  // ---- the data plane ------------------------------------------------------

  /**
   * The handshake is done: the engine parses frames from now on, `replay`
   * first (what was read past the handshake).
   */
  attach(server: boolean, window: number, replay: Uint8Array, h: NativeLinkHandlers): void {
    this.#native = h;
    this.#calls.tunnelAttach(this.id, server, window, replay);
  }

  /** The client side: send `frame` (OPEN) and carry `held` as stream `sid`. 0 or a negative code. */
  open(sid: number, held: NativeHeld, frame: Uint8Array): number {
    return this.#calls.tunnelOpen(this.id, sid, held.connId, frame);
  }

  /** The server side: send `frame` (OPEN_OK) and carry `conn` as stream `sid`. */
  accept(sid: number, conn: NativeConnected, frame: Uint8Array): number {
    const r = this.#calls.tunnelAccept(this.id, sid, conn.fd, frame);
    if (r < 0) this.#calls.fdClose(conn.fd);
    return r;
  }

  /** Send `frame` (OPEN_FAIL, RST, or nothing) and drop stream `sid` (its socket reset or closed). */
  closeStream(sid: number, reset: boolean, frame: Uint8Array = EMPTY): void {
    if (!this.#done) this.#calls.tunnelStreamClose(this.id, sid, reset, frame);
  }

  /** When the link last brought bytes (ms since the epoch), or undefined once gone. */
  lastRx(): number | undefined {
    return this.#calls.tunnelStats(this.id, 0)?.[0];
  }

  /** A stream's counters: bytes socket->link, link->socket, not taken by its socket, credit. */
  streamStats(sid: number): [number, number, number, number] | undefined {
    return this.#calls.tunnelStats(this.id, sid);
  }

  #event(ev: NativeEvent): void {
    try {
      this.#handle(ev);
    } catch (err) {
      // nothing a peer sends may end the process: this link goes instead
      if (this.#done) return;
      this.#calls.tunnelClose(this.id, "abort");
      this.#finish();
      this.#h?.close(err instanceof RelaykitError ? err.code : "EIO");
    }
  }

  #handle(ev: NativeEvent): void {
    switch (ev.type) {
      case "tunnel-rx": {
        const bytes = this.#calls.tunnelTake(this.id);
        if (typeof bytes === "number" || bytes.length === 0) return;
        if (this.#h === undefined) this.#early.push(bytes);
        else this.#h.data(bytes);
        return;
      }
      case "tunnel-tls-up":
        this.#secure?.resolve();
        this.#secure = undefined;
        return;
      case "tunnel-link-end": {
        if (this.#secure !== undefined) {
          // the TLS handshake failed (or the peer went before its end)
          const { name, message } = this.#calls.describe(ev.err || -104);
          this.#secure.reject({
            code: name,
            message,
            cert: name === "CERT_UNTRUSTED" ? this.#calls.tlsCertFailure(this.id) : undefined,
          });
          this.#secure = undefined;
        }
        // the owner reads the streams' last counters, then what is left goes
        if (ev.err === 0 && !ev.midFrame) this.#h?.end();
        else this.#h?.close(ev.err === 0 ? "ECONNRESET" : this.#calls.describe(ev.err).name);
        this.#calls.tunnelClose(this.id, "abort");
        this.#finish();
        return;
      }
      case "tunnel-stream-end":
        this.#native?.streamEnd(
          ev.stream,
          ev.how,
          ev.how === "reset" ? this.#calls.describe(ev.err).name : undefined,
          ev.bytesOut,
          ev.bytesIn,
        );
        return;
      case "tunnel-protocol": {
        const [problem, message] = problemOf(ev.problem, ev.stream, ev.a, ev.b);
        this.#native?.protocol(problem, message);
        return;
      }
      default:
        return;
    }
  }
}

function problemOf(
  p: number,
  stream: number,
  a: number,
  b: number,
): ["malformed" | "state" | "flow-control" | "oversize" | "unknown-type", string] {
  switch (p) {
    case 2:
      return ["state", `a frame for stream ${stream}, never opened`];
    case 3:
      return ["flow-control", `stream ${stream} sent ${a} bytes with ${b} of credit`];
    case 4:
      return ["oversize", `a frame of ${a} bytes (the most is 16384)`];
    case 5:
      return ["unknown-type", `frame type 0x${a.toString(16)} is unknown`];
    case 6:
      return ["state", `data after FIN on stream ${stream}`];
    case 7:
      return ["state", `a second FIN on stream ${stream}`];
    case 8:
      return ["flow-control", `stream ${stream}'s credit overflows`];
    default:
      return ["malformed", `a malformed frame of type 0x${a.toString(16)} (${b} bytes)`];
  }
}

/**
 * A native listener whose connections are held until the tunnel carries
 * them (or refuses them).
 */
export class NativeHoldListener implements NetListener {
  readonly address: Endpoint;
  readonly #engine: NativeEngine;
  readonly #calls: NativeCalls;
  readonly #id: number;
  #closed = false;
  #release: (() => void) | undefined;

  private constructor(engine: NativeEngine, id: number, address: Endpoint) {
    this.#engine = engine;
    this.#calls = callsOf(engine);
    this.#id = id;
    this.address = address;
  }

  /**
   * Bind `at` and hand each accepted connection to `accept`.
   *
   * @throws {RelaykitError} when it cannot bind.
   */
  static listen(
    engine: NativeEngine,
    at: { host: string; port: number },
    accept: (held: NativeHeld, remote: InetEndpoint | undefined) => void,
    release?: () => void,
  ): NativeHoldListener {
    const calls = callsOf(engine);
    const id = calls.listen(at, {
      backlog: 511,
      reusePort: false,
      hold: true,
      maxConnections: 0,
      idleTimeout: 0,
      holdTimeout: 0,
      events: { open: false, connected: false, close: false },
      hooks: {},
    });
    if (id < 0) throw engine.error(id, listenFailure(at));
    const port = calls.listenerPort(id);
    const l = new NativeHoldListener(engine, id, { host: at.host, port });
    engine.onListener(id, (ev) => {
      if (ev.type === "hold" && ev.first) {
        // one accepted just before the close is refused, never left held
        if (l.#closed) calls.holdDecide(ev.id, { action: "close" });
        else accept({ native: "held", connId: ev.id }, ev.remote);
      } else if (ev.type === "listener-drained") engine.offListener(id);
    });
    const r = calls.listenerStart(id);
    if (r < 0) {
      calls.listenerClose(id);
      engine.offListener(id);
      throw engine.error(r, listenFailure(at));
    }
    l.#release = release;
    engine.ref();
    return l;
  }

  /** Refuse a held connection (closed at once). */
  refuse(held: NativeHeld): void {
    this.#calls.holdDecide(held.connId, { action: "close" });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // its handler stays until the listener drained (see listen)
    this.#calls.listenerClose(this.#id);
    this.#engine.unref();
    this.#release?.();
    this.#release = undefined;
  }
}

/**
 * Connect `target` (an address literal) on the native engine: the connected
 * socket, or a RelaykitError with the engine's code.
 */
export function nativeConnect(
  engine: NativeEngine,
  target: Endpoint,
  timeout: number,
): Promise<NativeConnected> {
  const calls = callsOf(engine);
  const req = calls.connectFd({ target, family: "any", connectTimeout: timeout });
  if (req < 0) return Promise.reject(engine.error(req, "Cannot connect"));
  engine.ref();
  return new Promise((resolve, reject) => {
    engine.onConnection(req, (ev) => {
      if (ev.type !== "fd-connected") return;
      engine.offConnection(req);
      engine.unref();
      if (ev.err === 0 && ev.fd >= 0) resolve({ native: "fd", fd: ev.fd });
      else {
        const where = "path" in target ? target.path : `${target.host}:${target.port}`;
        reject(engine.error(ev.err || -5, `Cannot connect to ${where}`));
      }
    });
  });
}

/** Close a connected socket nobody will carry. */
export function nativeDiscard(engine: NativeEngine, conn: NativeConnected): void {
  callsOf(engine).fdClose(conn.fd);
}

/**
 * A server TLS context of the engine for links accepted on `at`, from the
 * tunnel server's TLS options (free it with {@link nativeTlsFree}).
 *
 * @throws {RelaykitError} when the certificate or key is refused.
 */
export function nativeTlsServer(
  engine: NativeEngine,
  at: Endpoint,
  tls: TlsServerOptions,
): number {
  const r = callsOf(engine).tlsServerContext(tls.cert, tls.key);
  if (typeof r === "number") return r;
  const err = engine.error(r.code, `Cannot serve TLS on "${formatEndpoint(at)}"`);
  throw r.detail === ""
    ? err
    : new RelaykitError(`Cannot serve TLS on "${formatEndpoint(at)}": ${r.detail}`, err.code);
}

/** Free a TLS context of the engine (links made with it keep their own). */
export function nativeTlsFree(engine: NativeEngine, ctx: number): void {
  callsOf(engine).tlsContextFree(ctx);
}

/**
 * The client side of a TLS link in the engine, on the connected socket
 * `conn` to `link`: the handshake done by `deadline` (ms since the epoch,
 * 0: none), the server's certificate verified as the runtime's TLS does
 * (the name: `servername`, else the link's host; the CAs given, else the
 * system's; no check with `rejectUnauthorized: false`).
 *
 * @throws {RelaykitError} CERT_UNTRUSTED (why, in the message), RK_ETLS,
 * ETIMEDOUT, or the socket's error.
 */
export async function nativeTlsLink(
  engine: NativeEngine,
  conn: NativeConnected,
  link: Endpoint,
  tls: TlsClientOptions,
  deadline: number,
): Promise<NativeLinkConn> {
  const calls = callsOf(engine);
  const what = connectFailure(link);
  const verify = tls.rejectUnauthorized !== false;
  const name = tls.servername ?? ("host" in link ? link.host.replace(/^\[(.*)\]$/, "$1") : "");
  if (verify && name === "") {
    calls.fdClose(conn.fd);
    throw errorFor(what, "EINVAL", { detail: "TLS over a Unix socket needs a servername" });
  }
  const ctx = calls.tlsClientContext(tls.ca, verify);
  if (typeof ctx !== "number") {
    calls.fdClose(conn.fd);
    const err = engine.error(ctx.code, what);
    throw ctx.detail === "" ? err : new RelaykitError(`${what}: ${ctx.detail}`, err.code);
  }
  let c: NativeLinkConn;
  try {
    c = new NativeLinkConn(engine, conn, "host" in link ? link : undefined, {
      ctx,
      servername: name,
    });
  } finally {
    calls.tlsContextFree(ctx); // the link holds its own reference
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      if (deadline > 0) {
        timer = setTimeout(
          () => reject({ code: "ETIMEDOUT", message: "the TLS handshake timed out" }),
          Math.max(0, deadline - Date.now()),
        );
      }
      c.secured.then(resolve, reject);
    });
  } catch (f) {
    c.destroy(true);
    const { code, message, cert } = f as TlsFailure;
    if (code === "CERT_UNTRUSTED") {
      let peer: X509Certificate | undefined;
      try {
        if (cert !== undefined) peer = new X509Certificate(cert.der);
      } catch { /* unreadable: OpenSSL's words */ }
      throw errorFor(what, code, {
        detail: certificateReason(peer, name, tls.ca, cert?.said ?? message),
      });
    }
    throw code === "ETIMEDOUT"
      ? errorFor(what, code, { detail: message })
      : new RelaykitError(`${what}: ${message}`, code);
  } finally {
    clearTimeout(timer);
  }
  return c;
}
