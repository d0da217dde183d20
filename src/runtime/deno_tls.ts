/**
 * TLS on Deno's own sockets (Deno.listenTls, Deno.connectTls). Deno's
 * node:tls loses the end of a stream (and stalls) once a TLS socket is
 * paused for backpressure, so TLS connections use Deno's API: a read loop
 * that stops while paused, a write queue that reports backpressure, and
 * closeWrite() for half-close. Deno cannot reset a connection: destroy
 * closes it (FIN), the one difference from the node:net sockets.
 *
 * @module
 */
import { errorFor } from "../errors.ts";
import { connectFailure, type Endpoint, formatEndpoint, listenFailure } from "../types.ts";
import { codeOf } from "./node_net.ts";
import {
  certificateError,
  certificateReason,
  fetchPeerCertificate,
  reasonOf,
} from "./tls_verify.ts";
import type { Net, NetConn, NetHandlers, NetListener } from "./types.ts";

/** accept(2) errors that last until resources free up. */
const OUT_OF_RESOURCES = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** Bytes a connection queues before write() says "wait for drain". */
const HIGH_WATER = 64 * 1024;

/** How long reading a certificate that did not verify (to say why) may take. */
const PROBE_MS = 2000;

class DenoTlsConn implements NetConn {
  readonly remote: { host: string; port: number } | undefined;
  readonly local: { host: string; port: number } | undefined;
  readonly #c: Deno.TlsConn;
  #h: NetHandlers | undefined;
  #paused = true;
  #wake: (() => void) | undefined;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #sent = 0;
  #writing = false;
  #endWanted = false;
  #closed = false;
  #error: string | undefined;
  #readEnded = false;
  #writeEnded = false;

  constructor(c: Deno.TlsConn) {
    this.#c = c;
    const r = c.remoteAddr as Deno.NetAddr, l = c.localAddr as Deno.NetAddr;
    this.remote = { host: r.hostname, port: r.port };
    this.local = { host: l.hostname, port: l.port };
  }

  get written(): number {
    return this.#sent;
  }

  start(h: NetHandlers): void {
    this.#h = h;
    this.#paused = false;
    void this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        await this.#unpaused();
        if (this.#closed) return;
        const n = await this.#c.read(buf);
        // what was read while paused waits, like the end of the stream
        await this.#unpaused();
        if (this.#closed) return;
        if (n === null) {
          this.#readEnded = true;
          this.#h!.end();
          this.#closeWhenDone();
          return;
        }
        this.#h!.data(buf.slice(0, n));
      }
    } catch (err) {
      this.#fail(err);
    }
  }

  async #unpaused(): Promise<void> {
    while (this.#paused && !this.#closed) {
      await new Promise<void>((r) => this.#wake = r);
    }
  }

  write(data: Uint8Array): boolean {
    if (this.#closed) return true;
    this.#queue.push(data);
    this.#queued += data.length;
    if (!this.#writing) void this.#writeLoop();
    return this.#queued < HIGH_WATER;
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const chunk = this.#queue[0]!;
        const n = await this.#c.write(chunk);
        this.#sent += n;
        this.#queued -= n;
        if (n < chunk.length) this.#queue[0] = chunk.subarray(n);
        else this.#queue.shift();
      }
    } catch (err) {
      this.#fail(err);
      return;
    } finally {
      this.#writing = false;
    }
    if (this.#closed) return;
    if (this.#endWanted) {
      try {
        await this.#c.closeWrite();
      } catch { /* the peer is gone; its close follows */ }
      this.#writeEnded = true;
      this.#closeWhenDone();
      return;
    }
    this.#h?.drain();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#wake?.();
    this.#wake = undefined;
  }

  end(): void {
    this.#endWanted = true;
    if (!this.#writing) void this.#writeLoop();
  }

  destroy(_reset: boolean): void {
    this.#close();
  }

  /** Both ways finished: the socket closes, as a node:net one does. */
  #closeWhenDone(): void {
    if (this.#readEnded && this.#writeEnded) this.#close();
  }

  #fail(err: unknown): void {
    if (this.#closed) return;
    this.#error ??= codeOf(err);
    this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#c.close();
    } catch { /* closed already */ }
    this.#wake?.();
    const h = this.#h;
    if (h !== undefined) queueMicrotask(() => h.close(this.#error));
  }
}

/** TLS listeners and connects on Deno's API; the rest stays on node:net. */
export function withDenoTls(base: Net): Net {
  return {
    listen(at, options, onConn): Promise<NetListener> {
      if (options.tls === undefined) return base.listen(at, options, onConn);
      if (options.fd !== undefined) {
        // Deno.listenTls binds itself: it cannot take an inherited socket
        return Promise.reject(
          new TypeError(
            `TLS on an inherited socket (socket activation) is not supported on Deno: ` +
              `"${formatEndpoint(at)}" must be bound by relaykit`,
          ),
        );
      }
      if ("path" in at) {
        return Promise.reject(new TypeError("TLS on a Unix socket is not supported"));
      }
      let listener: Deno.TlsListener;
      try {
        listener = Deno.listenTls({
          hostname: at.host,
          port: at.port,
          cert: options.tls.cert,
          key: options.tls.key,
          reusePort: options.reusePort,
        });
      } catch (err) {
        return Promise.reject(
          errorFor(listenFailure(at), codeOf(err), { cause: err }),
        );
      }
      (async () => {
        for (;;) {
          let c: Deno.TlsConn;
          try {
            c = await listener.accept();
          } catch (err) {
            if (err instanceof Deno.errors.BadResource) return; // closed
            // out of fds (EMFILE...): pause instead of spinning on accept
            if (OUT_OF_RESOURCES.has(codeOf(err))) await new Promise((r) => setTimeout(r, 100));
            continue; // a failed handshake concerns that client only
          }
          // the handshake, off the accept loop
          c.handshake().then(() => onConn(new DenoTlsConn(c)), () => {
            c.close();
            options.onHandshakeError?.();
          });
        }
      })();
      const addr = listener.addr as Deno.NetAddr;
      return Promise.resolve({
        address: { host: at.host, port: addr.port },
        close: () => listener.close(),
      });
    },

    connect(to: Endpoint, options): Promise<NetConn> {
      const tls = options.tls;
      if (tls === undefined) return base.connect(to, options);
      if (tls.rejectUnauthorized === false) {
        return Promise.reject(
          errorFor(connectFailure(to), "EINVAL", {
            cause: new TypeError("Deno cannot skip certificate checks per connection"),
          }),
        );
      }
      if ("path" in to) {
        return Promise.reject(
          errorFor(connectFailure(to), "EINVAL", {
            cause: new TypeError("TLS over a Unix socket"),
          }),
        );
      }
      // the name sent and verified: the servername, else the host connected to
      const name = tls.servername ?? to.host;
      const deadline = options.timeout > 0 ? Date.now() + options.timeout : 0;
      // Deno resolves the name itself (it is also the TLS server name)
      return (async () => {
        const opts: Deno.ConnectTlsOptions = { hostname: to.host, port: to.port };
        if (tls.ca !== undefined) opts.caCerts = [tls.ca];
        // Deno.connectTls sends the host it connects to as the server name:
        // another name needs TLS started over a plain connection
        const open = name === to.host ? () => Deno.connectTls(opts) : async () => {
          const plain = await Deno.connect({ hostname: to.host, port: to.port });
          try {
            return await Deno.startTls(plain, {
              hostname: name,
              ...(tls.ca !== undefined ? { caCerts: [tls.ca] } : {}),
            });
          } catch (err) {
            plain.close();
            throw err;
          }
        };
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<never>((_, reject) => {
          if (deadline > 0) {
            timer = setTimeout(
              () => reject(Object.assign(new Error("ETIMEDOUT"), { code: "ETIMEDOUT" })),
              Math.max(0, deadline - Date.now()),
            );
          }
        });
        const attempt = (async () => {
          const c = await open();
          try {
            await c.handshake();
          } catch (err) {
            c.close();
            // a certificate that does not verify: read it (rustls does not
            // give it) to say why, in the words of every runtime
            const said = (err as Error).message;
            if (!/certificate/i.test(said)) throw err;
            // (done before the connect's deadline, so the reason is not lost to it)
            const left = deadline > 0 ? deadline - Date.now() - 100 : PROBE_MS;
            const peer = await fetchPeerCertificate(
              to.host,
              to.port,
              name,
              Math.min(left, PROBE_MS),
            );
            throw certificateError(certificateReason(peer, name, tls.ca, said), err);
          }
          return c;
        })();
        try {
          return new DenoTlsConn(await Promise.race([attempt, timeout]));
        } catch (err) {
          attempt.then((c) => c.close(), () => {}); // one that comes after a timeout
          const detail = reasonOf(err);
          if (detail !== undefined) {
            // the runtime's own error is the cause
            throw errorFor(connectFailure(to), "CERT_UNTRUSTED", {
              cause: (err as Error).cause,
              detail,
            });
          }
          throw errorFor(connectFailure(to), codeOf(err), { cause: err });
        } finally {
          if (timer !== undefined) clearTimeout(timer);
        }
      })();
    },
  };
}
