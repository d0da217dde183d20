/**
 * Stream sockets on Bun's own `Bun.listen`/`Bun.connect`: no node:stream
 * layer per connection, so less memory and less work per chunk than
 * node:net on Bun. `terminate()` resets (SO_LINGER 0). `pause()`,
 * `resume()` and `close()` exist on Bun's sockets but not in bun-types, so
 * they are checked for at run time.
 *
 * @module
 */
/// <reference types="bun-types" />
import { errorFor, type RelaykitError } from "../errors.ts";
import { type Endpoint, listenFailure } from "../types.ts";
import { FdWatch } from "./fd_watch.ts";
import { codeError, codeOf, connectEach, nodeNetWith } from "./node_net.ts";
import type { Net, NetConn, NetHandlers, NetListener } from "./types.ts";

type BunSocket = Bun.Socket<BunConn | undefined>;

/** What Bun's sockets have beyond their declared type. */
interface Undeclared {
  pause(): void;
  resume(): void;
  close(): void;
}

function undeclared(s: object): Undeclared {
  const u = s as Partial<Record<keyof Undeclared, unknown>>;
  if (
    typeof u.pause !== "function" || typeof u.resume !== "function" || typeof u.close !== "function"
  ) {
    throw new TypeError("This Bun's sockets have no pause/resume/close");
  }
  return s as Undeclared;
}

// Per-connection memory counts (an idle relay is two of these): arrays and
// addresses are made only when needed.
class BunConn implements NetConn {
  readonly #s: BunSocket;
  readonly #x: Undeclared;
  readonly #tcp: boolean;
  #h: NetHandlers | undefined;
  #queue: Uint8Array[] | undefined; // what the kernel has not taken yet
  #sent = 0;
  #endWanted = false;
  #closed = false;
  #error: string | undefined;
  #early: Uint8Array[] | undefined;
  #earlyEnd = false;
  #remote: { host: string; port: number } | undefined;
  #local: { host: string; port: number } | undefined;

  constructor(s: BunSocket, tcp: boolean) {
    this.#s = s;
    this.#x = undeclared(s);
    this.#tcp = tcp;
    if (tcp) {
      // read now: Bun forgets them once the socket is closed
      this.#remote = { host: s.remoteAddress, port: s.remotePort };
    }
    s.setNoDelay(true);
    this.#x.pause(); // bytes wait in the kernel until start()
  }

  get remote(): { host: string; port: number } | undefined {
    return this.#remote;
  }

  get local(): { host: string; port: number } | undefined {
    if (this.#tcp && this.#local === undefined) {
      this.#local = { host: this.#s.localAddress, port: this.#s.localPort };
    }
    return this.#local;
  }

  get written(): number {
    return this.#sent;
  }

  onData(d: Uint8Array): void {
    if (this.#h) this.#h.data(d);
    else (this.#early ??= []).push(d);
  }

  #ended = false;

  onEnd(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#h) this.#h.end();
    else this.#earlyEnd = true;
  }

  onError(err: unknown): void {
    this.#error ??= codeOf(err);
  }

  onClose(err?: unknown): void {
    if (this.#closed) return;
    if (err !== undefined) this.onError(err);
    // Bun closes a socket whose two halves are shut without an "end"
    // event for the peer's FIN: a clean close is that EOF
    if (this.#error === undefined) this.onEnd();
    this.#closed = true;
    this.#queue = undefined;
    this.#h?.close(this.#error);
  }

  onDrain(): void {
    const q = this.#queue;
    while (q !== undefined && q.length > 0) {
      const chunk = q[0]!;
      const n = this.#s.write(chunk);
      if (n < 0) {
        this.#queue = undefined;
        return;
      }
      this.#sent += n;
      if (n < chunk.length) {
        q[0] = chunk.subarray(n);
        return;
      }
      q.shift();
    }
    if (this.#endWanted) {
      this.#endWanted = false;
      this.#s.shutdown(); // FIN; end() would close both halves
    }
    this.#h?.drain();
  }

  start(h: NetHandlers): void {
    this.#h = h;
    const early = this.#early;
    this.#early = undefined;
    for (const d of early ?? []) h.data(d);
    if (this.#earlyEnd) h.end();
    if (this.#closed) queueMicrotask(() => h.close(this.#error ?? "ECONNRESET"));
    else this.#x.resume();
  }

  write(data: Uint8Array): boolean {
    if (this.#closed) return true; // gone: its close event says so
    if (this.#queue !== undefined && this.#queue.length > 0) {
      this.#queue.push(data);
      return false;
    }
    const n = this.#s.write(data);
    if (n < 0) return true;
    this.#sent += n;
    if (n === data.length) return true;
    (this.#queue ??= []).push(data.subarray(n));
    return false;
  }

  pause(): void {
    if (!this.#closed) this.#x.pause();
  }

  resume(): void {
    if (!this.#closed) this.#x.resume();
  }

  end(): void {
    if (this.#closed) return;
    if (this.#queue !== undefined && this.#queue.length > 0) this.#endWanted = true;
    else this.#s.shutdown(); // FIN; end() would close both halves
  }

  destroy(reset: boolean): void {
    if (this.#closed) return;
    if (reset) this.#s.terminate();
    else this.#x.close();
  }
}

const handler = {
  data: (s: BunSocket, d: Uint8Array) => s.data?.onData(d),
  end: (s: BunSocket) => s.data?.onEnd(),
  drain: (s: BunSocket) => s.data?.onDrain(),
  error: (s: BunSocket, e: Error) => s.data?.onError(e),
  close: (s: BunSocket, e?: Error) => s.data?.onClose(e),
};

/** Bun's accept loops spin on EMFILE: see FdWatch. */
const watch = new FdWatch();
/** node:net on Bun, for what Bun's own sockets lack. */
const nodeNet = nodeNetWith({ watch });

/** Bun.listen / Bun.connect behind the Net contract. */
export const bunNet: Net = {
  listen(at, options, onConn): Promise<NetListener> {
    // Bun.listen has no backlog or SO_REUSEPORT setting: node:net does
    // node:tls carries TLS; node:net the options Bun.listen lacks
    if (options.reusePort || options.tls !== undefined || options.fd !== undefined) {
      return nodeNet.listen(at, options, onConn);
    }
    const tcp = !("path" in at);
    const socket = {
      ...handler,
      open: (s: BunSocket) => {
        const c = new BunConn(s, tcp);
        s.data = c;
        onConn(c);
      },
    };
    let server: { stop(closeActiveConnections?: boolean): void } | undefined;
    let port = 0;
    try {
      if ("path" in at) {
        server = Bun.listen<BunConn | undefined>({ unix: at.path, allowHalfOpen: true, socket });
      } else {
        const tcpServer = Bun.listen<BunConn | undefined>({
          hostname: at.host,
          port: at.port,
          allowHalfOpen: true,
          socket,
        });
        port = tcpServer.port;
        server = tcpServer;
      }
    } catch (err) {
      return Promise.reject(
        errorFor(listenFailure(at), codeOf(err), { cause: err }),
      );
    }
    const address: Endpoint = "path" in at ? at : { host: at.host, port };
    const unwatch = "path" in address ? undefined : watch.add({
      pause: () => {
        server?.stop(false);
        server = undefined;
      },
      resume: () => {
        try {
          server = Bun.listen<BunConn | undefined>({
            hostname: address.host,
            port: address.port,
            allowHalfOpen: true,
            socket,
          });
          return Promise.resolve();
        } catch (err) {
          return Promise.reject(err);
        }
      },
      paused: options.onAcceptError,
    });
    return Promise.resolve({
      address,
      close: () => {
        unwatch?.();
        server?.stop(false);
        server = undefined;
      },
    });
  },

  connect(to, options): Promise<NetConn> {
    // Bun.connect cannot bind a source address: node:net can
    if (options.bindAddress !== undefined || options.tls !== undefined) {
      return nodeNet.connect(to, options);
    }
    const deadline = options.timeout > 0 ? Date.now() + options.timeout : 0;
    const once = (host: string | undefined): Promise<NetConn> =>
      new Promise((resolve, reject) => {
        let done = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const settle = (f: () => void) => {
          if (done) return;
          done = true;
          if (timer !== undefined) clearTimeout(timer);
          f();
        };
        const socket = {
          ...handler,
          open: (s: BunSocket) => {
            if (done) { // gave up waiting: this one is not wanted
              s.terminate();
              return;
            }
            const c = new BunConn(s, host !== undefined);
            s.data = c;
            settle(() => resolve(c));
          },
          connectError: (_s: BunSocket, e: Error) => settle(() => reject(codeError(codeOf(e)))),
        };
        if (deadline > 0) {
          timer = setTimeout(
            () => settle(() => reject(codeError("ETIMEDOUT"))),
            Math.max(0, deadline - Date.now()),
          );
        }
        const started = "path" in to
          ? Bun.connect<BunConn | undefined>({ unix: to.path, allowHalfOpen: true, socket })
          : Bun.connect<BunConn | undefined>({
            hostname: host!,
            port: to.port,
            allowHalfOpen: true,
            socket,
          });
        started.catch((e: unknown) => settle(() => reject(codeError(codeOf(e)))));
      });
    return connectEach(to, options.family, deadline, once).catch((err: RelaykitError) => {
      watch.signal(err.code); // out of fds for the connect: stop accepting too
      throw err;
    });
  },
};
