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
import { RelaykitError } from "../errors.ts";
import { chooseEngine, type EnginePreference } from "../forward/select.ts";
import type { Endpoint } from "../forward/types.ts";
import { callsOf, NativeEngine, type NativeEvent } from "../native/engine.ts";
import type { NativeCalls } from "../native/calls.ts";
import type { NetConn, NetHandlers, NetListener } from "../runtime/types.ts";
import { type InetEndpoint, listenFailure } from "../types.ts";

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

/**
 * The native engine for a tunnel, or undefined for the stream engine: as
 * `preference` asks ("auto": native when the library loads), never for a
 * TLS link (the native tunnel carries plain TCP links).
 */
export function tunnelEngine(
  preference: EnginePreference | undefined,
  tls: boolean,
): NativeEngine | undefined {
  if (tls) {
    if (preference === "native") {
      throw new RelaykitError(
        "The native tunnel carries plain TCP links; a TLS link runs on the stream engine",
        "EINVAL",
      );
    }
    return undefined;
  }
  const choice = chooseEngine(preference ?? "auto");
  return choice.engine.name === "native" ? NativeEngine.shared() : undefined;
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

  /**
   * A tunnel on a connected link socket `fd` or a held connection.
   *
   * @throws {RelaykitError} when the engine refuses it.
   */
  constructor(
    engine: NativeEngine,
    from: { fd: number } | { connId: number },
    remote: InetEndpoint | undefined,
  ) {
    this.#engine = engine;
    this.#calls = callsOf(engine);
    this.remote = remote;
    const id = this.#calls.tunnelNew(from);
    if (id < 0) {
      if ("fd" in from) this.#calls.fdClose(from.fd);
      throw engine.error(id, "Cannot start the tunnel link");
    }
    this.id = id;
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
      case "tunnel-link-end": {
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
