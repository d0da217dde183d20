/**
 * The stream engine: the same proxy as the native engine, on the runtime's
 * own sockets (the Runtime contract's `net`). It keeps the native engine's
 * rules: a direction holds at most what its destination has not taken yet
 * (the source is paused until the destination drains), EOF becomes a
 * half-close after everything read has been written, a reset is passed on
 * as a reset, and counters, timeouts, limits, reasons and error codes are
 * the same.
 *
 * @module
 */
import { closeSync, createReadStream, fstatSync, openSync, type ReadStream } from "node:fs";
import { concatBytes, EMPTY } from "../bytes.ts";
import { connectBytes, type FileDecision, fileRange, type KeptBytes } from "../decision.ts";
import { errorFor, normalizeCode, RelaykitError } from "../errors.ts";
import { type Direction as HookDirection, type HookContext, runHook } from "./hooks.ts";
import { runtime } from "../runtime/detect.ts";
import type { NetConn, NetListener } from "../runtime/types.ts";
import {
  ArraySnapshot,
  type ConnectionSnapshot,
  type ConnectionStats,
  connectionTo,
  type Counters,
  type Endpoint,
  type EndReason,
  type EventInterest,
  formatEndpoint,
  type ForwardEngine,
  type HeldConnection,
  type HeldUpdate,
  type HoldDecision,
  type ListenerTotals,
  type OpenConnection,
  type ProxyCallbacks,
  type ProxyHandle,
  type ProxySpec,
  type TlsClientOptions,
} from "./types.ts";

/** How often idle and connect timeouts are checked: RK__SWEEP_MS (a test compares). */
export const SWEEP_MS = 100;

/** Connection ids, engine-wide (the native engine numbers its own). */
let nextId = 1;

/** How long a client may go on sending after a "close" decision: RK__LINGER_MS. */
export const LINGER_MS = 2000;

interface Direction {
  hookPending: boolean; // a chunk is with the hook: the source stays paused
  read: number;
  eof: boolean; // the source ended
  done: boolean; // and the destination was shut
}

class StreamConnection {
  readonly id: number;
  readonly startedAt = Date.now();
  lastActivityAt = this.startedAt;
  state: "held" | "connecting" | "relaying" | "closing" = "connecting";
  readonly a: NetConn;
  b: NetConn | undefined;
  readonly dirs: [Direction, Direction] = [
    { hookPending: false, read: 0, eof: false, done: false },
    { hookPending: false, read: 0, eof: false, done: false },
  ];
  closed = 0; // sockets closed so far
  ended = false;
  reason: EndReason = "done";
  error: RelaykitError | undefined;
  final: Counters | undefined; // taken before the sockets are destroyed
  lastWritten = 0; // for the idle check: writes are activity too
  // held connections (ProxySpec.hold)
  held: Uint8Array[] = [];
  heldLength = 0;
  holdMax = 0; // > 0: reading was asked for
  deadline = 0; // undecided by then: "decision-timeout"; after "close": cut
  discard = false; // after a "close" decision: drop what the client sends
  target: Endpoint | undefined; // where it was sent
  idleTimeout: number | undefined; // the decision's own
  file: ReadStream | undefined; // a "file" decision's source
  kept: KeptBytes | undefined; // after a failed connect: what to send

  constructor(id: number, a: NetConn) {
    this.id = id;
    this.a = a;
  }

  counters(): Counters {
    const [x, y] = this.dirs;
    return {
      aToB: { read: x.read, written: this.b?.written ?? 0 },
      bToA: { read: y.read, written: this.a.written },
    };
  }
}

/** The callbacks of a proxy not started yet: nothing is accepted, nothing reported. */
const UNSTARTED: ProxyCallbacks = {
  open() {},
  connected() {},
  close() {},
  reject() {},
  hookFailed() {},
  stopped() {},
  drained() {},
};

class StreamProxy implements ProxyHandle {
  readonly #spec: ProxySpec;
  readonly #listener: NetListener;
  /** Where events go: nowhere until `start`. */
  #cb: ProxyCallbacks = UNSTARTED;
  #started = false;
  readonly #conns = new Map<number, StreamConnection>();
  /** Connections accepted and ended, the most open at once, bytes of those that ended. */
  readonly #totals = { accepted: 0, ended: 0, peak: 0, bytesUp: 0, bytesDown: 0 };
  #interest: EventInterest = { open: false, connected: false, close: false };
  #stopped = false;
  #drainedSent = false;
  #sweeper: ReturnType<typeof setInterval> | undefined;

  /** Bind to `spec.listen`; connections are taken from `start` on. */
  static async listen(spec: ProxySpec): Promise<StreamProxy> {
    const door: { proxy?: StreamProxy } = {};
    const listener = await runtime.net.listen(
      spec.listen,
      {
        backlog: spec.backlog,
        reusePort: spec.reusePort,
        fd: spec.fd,
        tls: spec.tls,
        onAcceptError: (code) => {
          if (door.proxy !== undefined) door.proxy.#acceptError(code);
        },
        onHandshakeError: () => {
          if (door.proxy !== undefined) door.proxy.#handshakeError();
        },
      },
      (conn) => door.proxy === undefined ? conn.destroy(true) : door.proxy.#accept(conn),
    );
    return door.proxy = new StreamProxy(spec, listener);
  }

  /** Connections accepted before start (from an inherited socket's queue). */
  #early: NetConn[] = [];

  private constructor(spec: ProxySpec, listener: NetListener) {
    this.#spec = spec;
    this.#listener = listener;
  }

  get address(): Endpoint {
    return this.#listener.address;
  }

  start(cb: ProxyCallbacks): void {
    if (this.#started) throw new TypeError("A proxy handle starts once");
    this.#started = true;
    this.#cb = cb;
    if (!this.#stopped && (this.#spec.idleTimeout > 0 || this.#spec.hold !== undefined)) {
      this.#sweeper = setInterval(() => this.#sweep(), SWEEP_MS);
    }
    const early = this.#early;
    this.#early = [];
    for (const a of early) this.#accept(a);
  }

  #conn(c: StreamConnection): HeldConnection {
    const conn: HeldConnection = { id: c.id };
    if (c.a.remote !== undefined) conn.remote = c.a.remote;
    if (c.a.local !== undefined) conn.local = c.a.local;
    return conn;
  }

  #heldInfo = new Map<number, HeldConnection>();

  /** Tell the owner what a held connection has sent so far. */
  #post(c: StreamConnection, first: boolean, retry?: RelaykitError): void {
    c.holdMax = 0;
    c.a.pause();
    let conn = this.#heldInfo.get(c.id);
    if (conn === undefined) this.#heldInfo.set(c.id, conn = this.#conn(c));
    const data = c.held.length === 0 ? EMPTY : concatBytes(c.held);
    c.held = data.length === 0 ? [] : [data];
    const update: HeldUpdate = { conn, data, first, eof: c.dirs[0].eof };
    if (retry !== undefined) update.retry = retry;
    this.#cb.held?.(update);
  }

  #holdData(c: StreamConnection, chunk: Uint8Array): void {
    if (c.ended) return;
    if (c.discard) {
      c.dirs[0].read += chunk.length;
      return;
    }
    // a plain Uint8Array view (node:net gives Buffers): what users see
    c.held.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
    c.heldLength += chunk.length;
    c.dirs[0].read += chunk.length;
    c.lastActivityAt = Date.now();
    if (c.holdMax > 0) this.#post(c, false);
    else c.a.pause(); // cannot happen: paused while not asked
  }

  #holdEof(c: StreamConnection): void {
    c.dirs[0].eof = true;
    if (c.ended) return;
    if (c.discard) {
      if (!c.dirs[1].done) return; // a file is still going out
      this.#finish(c, c.reason);
      c.a.destroy(false);
      return;
    }
    if (c.holdMax > 0) this.#post(c, false);
  }

  sendHeld(id: number, data: Uint8Array): void {
    const c = this.#conns.get(id);
    if (c === undefined || c.ended || c.state !== "held" || data.length === 0) return;
    c.a.write(data);
  }

  setRouter(): void {
    // the owner's route function decides every connection here
  }

  readMore(id: number, max: number): void {
    const c = this.#conns.get(id);
    if (c === undefined || c.ended || c.state !== "held") return;
    c.holdMax = Math.max(1, max);
    if (c.heldLength >= c.holdMax || c.dirs[0].eof) {
      queueMicrotask(() => {
        if (!c.ended && c.state === "held" && c.holdMax > 0) this.#post(c, false);
      });
      return;
    }
    c.a.resume();
  }

  decide(id: number, d: HoldDecision): RelaykitError | undefined {
    const c = this.#conns.get(id);
    if (c === undefined || c.ended || c.state !== "held") return undefined;
    if (d.action === "file") return this.#sendFile(c, d);
    c.holdMax = 0;
    c.a.pause();
    const held = concatBytes(c.held);
    c.held = [];
    if (d.action === "close") {
      c.state = "closing";
      c.discard = true;
      c.deadline = Date.now() + LINGER_MS;
      if (d.toClient !== undefined && d.toClient.length > 0) c.a.write(d.toClient);
      c.dirs[1].eof = c.dirs[1].done = true;
      c.a.end();
      this.#linger(c, "closed");
      return undefined;
    }
    c.state = "connecting";
    c.deadline = 0;
    c.target = d.target;
    if (d.idleTimeout !== undefined) c.idleTimeout = d.idleTimeout;
    // after a failed connect (retry), its bytes and reply unless replaced
    const { first, reply } = connectBytes(d, held, c.kept);
    c.kept = undefined;
    this.#connect(
      c,
      d.target,
      d.connectTimeout ?? this.#spec.connectTimeout,
      d.tls,
      (b) => {
        if (reply !== undefined && reply.length > 0) c.a.write(reply);
        if (first.length > 0) b.write(first);
      },
      d.retry ? { first, reply } : undefined,
    );
    return undefined;
  }

  /** After a reply: drop what the client sends until it closes, or for a while. */
  #linger(c: StreamConnection, reason: EndReason): void {
    c.discard = true;
    c.reason = reason;
    c.deadline = Date.now() + LINGER_MS;
    if (c.dirs[0].eof) {
      this.#finish(c, reason);
      c.a.destroy(false);
    } else {
      c.a.resume();
    }
  }

  #sendFile(c: StreamConnection, d: FileDecision): RelaykitError | undefined {
    let fd: number;
    let range: { offset: number; length: number } | undefined;
    try {
      fd = openSync(d.path, "r");
    } catch (err) {
      return errorFor(
        `Cannot send the file "${d.path}"`,
        normalizeCode((err as { code?: string }).code),
        {
          connectionId: c.id,
          cause: err,
        },
      );
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) {
        throw Object.assign(new Error("not a file"), {
          code: st.isDirectory() ? "EISDIR" : "EINVAL",
        });
      }
      range = fileRange(d, st.size);
      if (range === undefined) {
        throw Object.assign(new Error("out of range"), { code: "ERANGE" });
      }
    } catch (err) {
      closeSync(fd);
      return errorFor(
        `Cannot send the file "${d.path}"`,
        normalizeCode((err as { code?: string }).code),
        {
          connectionId: c.id,
          cause: err,
        },
      );
    }
    c.holdMax = 0;
    c.held = [];
    c.state = "relaying";
    c.deadline = 0;
    c.discard = true; // the client's bytes are dropped from now on
    if (d.toClient !== undefined && d.toClient.length > 0) c.a.write(d.toClient);
    const { offset, length } = range;
    if (length === 0) {
      closeSync(fd);
      c.dirs[1].eof = c.dirs[1].done = true;
      c.a.end();
      this.#linger(c, "done");
      return undefined;
    }
    const file = c.file = createReadStream("", {
      fd,
      start: offset,
      end: offset + length - 1,
      highWaterMark: 64 * 1024,
    });
    file.on("data", (chunk) => {
      const b = chunk as Uint8Array;
      c.dirs[1].read += b.length;
      c.lastActivityAt = Date.now();
      if (!c.a.write(b)) file.pause();
    });
    file.on("end", () => {
      c.dirs[1].eof = c.dirs[1].done = true;
      c.a.end();
      this.#linger(c, "done");
    });
    file.on("error", (err) => {
      this.#end(
        c,
        "reset",
        errorFor(
          `Cannot send the file "${d.path}"`,
          normalizeCode((err as { code?: string }).code),
          {
            connectionId: c.id,
            cause: err,
          },
        ),
      );
    });
    c.a.resume(); // the client's bytes are read and dropped
    return undefined;
  }

  #connect(
    c: StreamConnection,
    target: Endpoint,
    timeout: number,
    tls?: TlsClientOptions,
    before?: (b: NetConn) => void,
    retry?: KeptBytes,
  ): void {
    const spec = this.#spec;
    runtime.net.connect(target, {
      timeout,
      family: spec.family,
      bindAddress: spec.bindAddress,
      tls,
    }).then((b) => {
      if (!c.ended) before?.(b);
      this.#connected(c, b);
    }, (err: RelaykitError) => {
      if (c.ended) return;
      if (retry !== undefined) {
        // held again, with what it was to send: the owner decides anew
        c.state = "held";
        c.kept = retry;
        const timeout = this.#spec.hold?.timeout ?? 0;
        if (timeout > 0) c.deadline = Date.now() + timeout;
        this.#post(
          c,
          false,
          new RelaykitError(err.message, err.code, {
            connectionId: c.id,
            cause: err,
          }),
        );
        return;
      }
      // name the connection the failure belongs to
      this.#end(
        c,
        "connect-failed",
        new RelaykitError(err.message, err.code, { connectionId: c.id, cause: err }),
      );
    });
  }

  /** A client's TLS handshake failed (the runtime closed that client). */
  #handshakeError(): void {
    this.#cb.reject(
      errorFor(
        `TLS handshake with a client on "${formatEndpoint(this.#listener.address)}"`,
        "RK_ETLS",
      ),
    );
  }

  #acceptError(code: string): void {
    this.#cb.reject(errorFor(`Cannot accept on "${formatEndpoint(this.#spec.listen)}"`, code));
  }

  #accept(a: NetConn): void {
    const spec = this.#spec;
    if (!this.#started) {
      // a connection already queued on an inherited listening socket
      // (socket activation) is accepted before start: it waits for it
      this.#early.push(a);
      return;
    }
    if (this.#stopped) {
      a.destroy(false);
      return;
    }
    if (spec.maxConnections > 0 && this.#conns.size >= spec.maxConnections) {
      a.destroy(false);
      this.#cb.reject(
        errorFor(`Connection refused on "${formatEndpoint(spec.listen)}"`, "RK_ELIMIT"),
      );
      return;
    }
    const c = new StreamConnection(nextId++, a);
    this.#conns.set(c.id, c);
    this.#totals.accepted++;
    if (this.#conns.size > this.#totals.peak) this.#totals.peak = this.#conns.size;
    if (this.#interest.open) {
      this.#cb.open(a.remote === undefined ? { id: c.id } : { id: c.id, remote: a.remote });
    }
    // Watch the client while connecting: a reset ends it, its bytes wait
    // (paused) until the target is there.
    a.start({
      data: (chunk) =>
        c.state === "held" || c.discard ? this.#holdData(c, chunk) : this.#data(c, 0, chunk),
      end: () => c.state === "held" || c.discard ? this.#holdEof(c) : this.#eof(c, 0),
      drain: () => this.#resume(c, 1),
      close: (code) => this.#sideClosed(c, code),
    });
    a.pause();
    if (spec.hold !== undefined) {
      c.state = "held";
      if (spec.hold.timeout > 0) c.deadline = Date.now() + spec.hold.timeout;
      this.#post(c, true);
      return;
    }
    if (spec.target === undefined) throw new TypeError("A proxy needs a target or hold");
    this.#connect(c, spec.target, spec.connectTimeout);
  }

  #connected(c: StreamConnection, b: NetConn): void {
    if (c.ended) {
      b.destroy(false);
      return;
    }
    c.b = b;
    c.state = c.state === "closing" ? "closing" : "relaying";
    b.start({
      data: (chunk) => this.#data(c, 1, chunk),
      end: () => this.#eof(c, 1),
      drain: () => this.#resume(c, 0),
      close: (code) => this.#sideClosed(c, code),
    });
    if (this.#interest.connected) this.#cb.connected(c.id);
    if (c.state === "closing") {
      this.#graceful(c);
      return;
    }
    // a held client may have ended already (its EOF came while deciding)
    if (c.dirs[0].eof) this.#shut(c, 0);
    else c.a.resume();
  }

  /** Read from side `d` again, unless its chunk is with a hook. */
  #resume(c: StreamConnection, d: 0 | 1): void {
    if (d === 1 && c.file !== undefined) return void c.file.resume();
    if (c.dirs[d].hookPending || c.state === "closing") return;
    (d === 0 ? c.a : c.b)?.resume();
  }

  /** Bytes read from side `d` go to side `!d`. */
  #data(c: StreamConnection, d: 0 | 1, chunk: Uint8Array): void {
    const dir = c.dirs[d];
    dir.read += chunk.length;
    c.lastActivityAt = Date.now();
    const src = d === 0 ? c.a : c.b!;
    const dst = d === 0 ? c.b : c.a;
    if (dst === undefined || c.state === "closing") return; // cannot happen: paused
    const hook = d === 0 ? this.#spec.hooks.aToB : this.#spec.hooks.bToA;
    if (hook !== undefined) {
      // one chunk at a time through the hook: the source waits
      src.pause();
      dir.hookPending = true;
      runHook(hook, chunk, this.#hookContext(c, d)).then((out) => {
        dir.hookPending = false;
        if (c.ended) return;
        const more = out.length === 0 || dst.write(out);
        if (dir.eof) this.#shut(c, d);
        else if (more) this.#resume(c, d);
      }, (err: RelaykitError) => {
        dir.hookPending = false;
        try {
          this.#cb.hookFailed(err);
        } finally {
          this.#end(c, "closed", undefined, true); // closed even if a listener throws
        }
      });
      return;
    }
    // Backpressure: a destination that holds bytes back pauses the source
    // until it drains, so a direction never buffers more than one chunk.
    if (!dst.write(chunk)) src.pause();
  }

  #hookContext(c: StreamConnection, d: 0 | 1): HookContext {
    const direction: HookDirection = d === 0 ? "aToB" : "bToA";
    return {
      id: c.id,
      direction,
      remote: c.a.remote,
      stats: () => this.connectionStats(c.id),
    };
  }

  /** Side `d` reached EOF: shut the other side once its writes are out. */
  #eof(c: StreamConnection, d: 0 | 1): void {
    const dir = c.dirs[d];
    dir.eof = true;
    const dst = d === 0 ? c.b : c.a;
    if (dst === undefined) return; // still connecting: passed on once connected
    if (dir.hookPending) return; // shut once the hook's bytes are written
    this.#shut(c, d);
  }

  #shut(c: StreamConnection, d: 0 | 1): void {
    const dir = c.dirs[d];
    if (dir.done) return;
    dir.done = true;
    (d === 0 ? c.b : c.a)?.end();
    if (c.dirs[0].done && c.dirs[1].done) {
      // both ways finished: the sockets close once their FINs are out
      this.#finish(c, c.state === "closing" ? "closed" : "done");
    }
  }

  /** A socket closed: on its own that means an error or the peer's reset. */
  #sideClosed(c: StreamConnection, code: string | undefined): void {
    c.closed++;
    if (c.ended) {
      this.#maybeGone(c);
      return;
    }
    if (c.discard && c.dirs[1].done) {
      // a client going away after its whole reply: the expected end
      this.#finish(c, c.reason);
      this.#maybeGone(c);
      return;
    }
    const target = connectionTo(c.id, c.target ?? this.#spec.target);
    // A socket closes on its own after EOF both ways (a hook may still be
    // writing its last bytes to the other one); before that, or with an
    // error, it was a reset.
    if (code !== undefined || !(c.dirs[0].eof && c.dirs[1].eof)) {
      this.#end(
        c,
        "reset",
        errorFor(`${target} failed`, code ?? "ECONNRESET", {
          connectionId: c.id,
        }),
      );
    }
  }

  /** Finish cleanly: both directions are done; wait for both sockets. */
  #finish(c: StreamConnection, reason: EndReason): void {
    if (c.ended) return;
    c.ended = true;
    c.reason = reason;
    this.#maybeGone(c);
  }

  /** End now: close both sockets (reset the peers on a reset). */
  #end(c: StreamConnection, reason: EndReason, error?: RelaykitError, reset = false): void {
    if (c.ended) return;
    c.ended = true;
    c.reason = reason;
    c.error = error;
    c.final = c.counters();
    const rst = reset || reason === "reset";
    c.file?.destroy();
    c.a.destroy(rst);
    c.b?.destroy(rst);
    this.#report(c);
  }

  #maybeGone(c: StreamConnection): void {
    const sockets = c.b === undefined ? 1 : 2;
    if (c.closed >= sockets) this.#report(c);
  }

  #report(c: StreamConnection): void {
    if (!this.#conns.delete(c.id)) return;
    this.#heldInfo.delete(c.id);
    const counters = c.final ?? c.counters();
    const t = this.#totals;
    t.ended++;
    t.bytesUp += counters.aToB.written;
    t.bytesDown += counters.bToA.written;
    if (c.error !== undefined || this.#interest.close || this.#spec.hold !== undefined) {
      const end = {
        id: c.id,
        reason: c.reason,
        durationMs: Date.now() - c.startedAt,
        ...counters,
      };
      this.#cb.close(c.error === undefined ? end : { ...end, error: c.error });
    }
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (this.#stopped && this.#conns.size === 0 && !this.#drainedSent) {
      this.#drainedSent = true;
      if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
      this.#cb.drained();
    }
  }

  #graceful(c: StreamConnection): void {
    // stop reading, let what was read go out, then FIN both ways
    c.a.pause();
    c.b?.pause();
    if (c.b === undefined) {
      this.#end(c, "closed");
      return;
    }
    for (const d of [0, 1] as const) {
      c.dirs[d].eof = true;
      if (!c.dirs[d].hookPending) this.#shut(c, d); // else once the hook's bytes are out
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const c of this.#conns.values()) {
      if (c.ended) continue;
      if (c.state === "held" || c.discard) {
        if (c.deadline === 0 || now < c.deadline) continue;
        if (c.discard) {
          this.#end(c, c.reason);
        } else {
          const timeout = this.#spec.hold?.timeout;
          this.#end(
            c,
            "decision-timeout",
            errorFor(`Connection ${c.id} undecided after ${timeout} ms`, "ETIMEDOUT", {
              connectionId: c.id,
            }),
          );
        }
        continue;
      }
      const idle = c.idleTimeout ?? this.#spec.idleTimeout;
      if (c.state === "connecting" || idle === 0) continue;
      const written = c.a.written + (c.b?.written ?? 0);
      if (written !== c.lastWritten) {
        c.lastWritten = written;
        c.lastActivityAt = now;
      }
      if (now - c.lastActivityAt >= idle) {
        this.#end(
          c,
          "idle-timeout",
          errorFor(`Connection ${c.id} idle for ${idle} ms`, "ETIMEDOUT", { connectionId: c.id }),
        );
      }
    }
  }

  stopAccepting(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#listener.close();
    queueMicrotask(() => {
      this.#cb.stopped();
      this.#checkDrained();
    });
  }

  abortAll(): void {
    for (const c of [...this.#conns.values()]) this.#end(c, "closed", undefined, true);
  }

  activeConnections(): number {
    return this.#conns.size;
  }

  setInterest(interest: EventInterest): void {
    this.#interest = interest;
  }

  closeConnection(id: number, mode: "graceful" | "abort"): void {
    const c = this.#conns.get(id);
    if (c === undefined || c.ended) return;
    if (mode === "abort") {
      this.#end(c, "closed", undefined, true);
      return;
    }
    if (c.state === "connecting" || c.state === "held") {
      this.#end(c, "closed");
      return;
    }
    c.state = "closing";
    this.#graceful(c);
  }

  connectionStats(id: number): ConnectionStats | undefined {
    const c = this.#conns.get(id);
    if (c === undefined || c.ended) return undefined;
    return StreamProxy.#statsOf(c);
  }

  static #statsOf(c: StreamConnection): ConnectionStats {
    return {
      ...c.counters(),
      startedAt: c.startedAt,
      lastActivityAt: c.lastActivityAt,
      state: c.state,
    };
  }

  totals(): ListenerTotals {
    // the ended connections' bytes, and the open ones' so far
    const t = { ...this.#totals, open: this.#conns.size };
    for (const c of this.#conns.values()) {
      const n = c.final ?? c.counters();
      t.bytesUp += n.aToB.written;
      t.bytesDown += n.bToA.written;
    }
    return t;
  }

  snapshot(first = Infinity): ConnectionSnapshot {
    const out: OpenConnection[] = [];
    let total = 0;
    for (const c of this.#conns.values()) {
      if (c.ended) continue;
      if (total++ >= first) continue; // (in the order they opened)
      const o: OpenConnection = { id: c.id, ...StreamProxy.#statsOf(c) };
      if (c.a.remote !== undefined) o.remote = c.a.remote;
      out.push(o);
    }
    return new ArraySnapshot(out, total);
  }
}

/** The engine whose relays run on the runtime's sockets. */
export class StreamForwardEngine implements ForwardEngine {
  /** Always "stream". */
  readonly name = "stream";

  /** See {@link ForwardEngine.startProxy}. */
  startProxy(spec: ProxySpec): Promise<ProxyHandle> {
    return StreamProxy.listen(spec);
  }
}
