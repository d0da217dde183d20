/**
 * Stream sockets on node:net, which Deno, Bun and Node all provide. It is
 * the one socket API that can reset a connection (RST) on all three, which
 * the engines' shared behaviour needs.
 *
 * @module
 */
import type { X509Certificate } from "node:crypto";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import net from "node:net";
import tls from "node:tls";
import { errorFor, normalizeCode, type RelaykitError } from "../errors.ts";
import { connectFailure, type Endpoint, type FamilyPreference, listenFailure } from "../types.ts";
import { FdWatch } from "./fd_watch.ts";
import { certificateError, certificateReason, extraFault, reasonOf } from "./tls_verify.ts";
import type { Net, NetConn, NetHandlers, NetListener } from "./types.ts";

/** The engine-wide code of a runtime socket error. */
export function codeOf(err: unknown): string {
  return normalizeCode((err as { code?: string } | undefined)?.code);
}

class NodeConn implements NetConn {
  readonly remote: { host: string; port: number } | undefined;
  readonly local: { host: string; port: number } | undefined;
  readonly #s: net.Socket;
  readonly #libuv: boolean;
  #error: string | undefined;

  constructor(s: net.Socket, libuv: boolean) {
    this.#s = s;
    this.#libuv = libuv;
    this.remote = s.remoteAddress !== undefined && s.remotePort !== undefined
      ? { host: s.remoteAddress, port: s.remotePort }
      : undefined;
    this.local = this.remote !== undefined && s.localAddress !== undefined &&
        s.localPort !== undefined
      ? { host: s.localAddress, port: s.localPort }
      : undefined;
    s.setNoDelay(true);
    // Until start(), nothing is read: bytes wait in the kernel.
    s.pause();
    s.on("error", (e) => this.#error ??= codeOf(e));
  }

  start(h: NetHandlers): void {
    const s = this.#s;
    s.on("data", (d: Uint8Array) => h.data(d));
    s.on("end", () => h.end());
    s.on("drain", () => h.drain());
    s.on("close", () => h.close(this.#error));
    if (s.destroyed) queueMicrotask(() => h.close(this.#error ?? "ECONNRESET"));
    else s.resume();
  }

  #queued = 0;

  get written(): number {
    // queued minus what node still holds; no callback per write (they cost)
    return this.#queued - (this.#s.destroyed ? 0 : this.#s.writableLength);
  }

  write(data: Uint8Array): boolean {
    this.#queued += data.length;
    return this.#s.write(data);
  }

  pause(): void {
    this.#s.pause();
  }

  resume(): void {
    this.#s.resume();
  }

  end(): void {
    this.#s.end();
  }

  destroy(reset: boolean): void {
    const s = this.#s;
    if (s.destroyed) return;
    // libuv cannot reset a socket while its FIN is being sent (EINVAL), and
    // Node then never closes it: the fd leaks and the loop spins on it. On
    // Node a reset asked for then is a close (its FIN is on the way).
    const shutting = this.#libuv && s.writableEnded && !s.writableFinished;
    if (reset && !shutting) s.resetAndDestroy();
    else s.destroy();
  }
}

/** Candidate addresses of `host`, preferred family first (numeric: itself). */
export async function candidateAddresses(
  host: string,
  family: FamilyPreference,
): Promise<string[]> {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const kind = isIP(h);
  if (kind !== 0) {
    if ((family === "only-v4" && kind === 6) || (family === "only-v6" && kind === 4)) {
      throw codeError("EAFNOSUPPORT");
    }
    return [h];
  }
  const fam = family === "only-v4" ? 4 : family === "only-v6" ? 6 : 0;
  const found = await lookup(h, { all: true, family: fam });
  const want = family === "prefer-v4" ? 4 : family === "prefer-v6" ? 6 : 0;
  if (want !== 0) found.sort((a, b) => (a.family === want ? 0 : 1) - (b.family === want ? 0 : 1));
  return found.map((a) => a.address);
}

/** An Error carrying a code, as runtime socket errors do. */
export function codeError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/**
 * Connect to `to`: a Unix path once, a host by trying each of its
 * addresses (preferred family first) until one connects or the deadline
 * passes. `once(host)` makes one attempt (host undefined for a path).
 * Failures become one RelaykitError with the engine-wide code.
 */
export async function connectEach(
  to: Endpoint,
  family: FamilyPreference,
  deadline: number,
  once: (host: string | undefined) => Promise<NetConn>,
): Promise<NetConn> {
  const what = connectFailure(to);
  let candidates: (string | undefined)[];
  try {
    candidates = "path" in to ? [undefined] : await candidateAddresses(to.host, family);
  } catch (err) {
    throw errorFor(what, codeOf(err), { cause: err });
  }
  let last: unknown;
  for (const host of candidates) {
    if (deadline > 0 && Date.now() >= deadline) {
      last = codeError("ETIMEDOUT");
      break;
    }
    try {
      return await once(host);
    } catch (err) {
      last = err;
      // the server answered with a certificate that does not verify: no
      // other address of the name is tried (as curl does)
      if (reasonOf(err) !== undefined) break;
    }
  }
  // a certificate that does not verify: its reason, the runtime's error as the cause
  const detail = reasonOf(last);
  const cause = detail === undefined ? last : (last as Error).cause;
  throw errorFor(what, codeOf(last), { cause, detail });
}

/** TLS for one connect: node:tls's options, and what to verify. */
interface Secure {
  options: tls.ConnectionOptions;
  /** Verify the certificate, for this name (the server name or host). */
  verify: { name: string; ca: string | undefined } | undefined;
}

/**
 * Why the peer's certificate does not pass (see tls_verify.ts: OpenSSL's
 * verdict, then what webpki refuses beyond it), or undefined when it does.
 */
function peerFault(s: tls.TLSSocket, name: string, ca: string | undefined): Error | undefined {
  let peer: X509Certificate | undefined;
  try {
    peer = s.getPeerX509Certificate();
  } catch { /* none: said below */ }
  if (!s.authorized) {
    const said = String(s.authorizationError ?? "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    // the runtime's own verdict, as its error would have carried it
    const cause = Object.assign(new Error(said), { code: said });
    return certificateError(certificateReason(peer, name, ca, said), cause);
  }
  if (peer === undefined) return certificateError("the TLS peer sent no certificate", undefined);
  const extra = extraFault(peer, name);
  if (extra === undefined) return undefined;
  return certificateError(certificateReason(peer, name, ca, extra, extra), undefined);
}

function connectOnce(
  opts: net.NetConnectOpts,
  deadline: number,
  secure?: Secure,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // TLS: the socket is ready once the handshake is done; a certificate
    // is judged here (one policy on every runtime), not by node:tls
    const s = secure === undefined ? net.connect({ ...opts, allowHalfOpen: true }) : tls.connect(
      {
        ...opts,
        ...secure.options,
        ...(secure.verify === undefined ? {} : {
          rejectUnauthorized: false,
          checkServerIdentity: () => undefined,
        }),
        allowHalfOpen: true,
      } as unknown as tls.ConnectionOptions,
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const fail = (code: string) => {
      if (timer !== undefined) clearTimeout(timer);
      s.destroy();
      reject(codeError(code));
    };
    if (deadline > 0) {
      timer = setTimeout(() => fail("ETIMEDOUT"), Math.max(0, deadline - Date.now()));
    }
    s.once("error", (e) => fail(codeOf(e)));
    s.once(secure === undefined ? "connect" : "secureConnect", () => {
      if (timer !== undefined) clearTimeout(timer);
      const v = secure?.verify;
      const fault = v === undefined ? undefined : peerFault(s as tls.TLSSocket, v.name, v.ca);
      if (fault !== undefined) {
        s.destroy();
        reject(fault);
        return;
      }
      s.removeAllListeners("error");
      resolve(s);
    });
  });
}

/**
 * node:net behind the Net contract. With `watch`, TCP listeners close
 * while the process is out of fds and reopen once fds are free (see
 * FdWatch: Deno's and Bun's own accept loops cannot handle EMFILE). With
 * `libuv` (Node's sockets), a reset while a FIN is being sent is a close.
 */
export function nodeNetWith(opts: { watch: FdWatch | undefined; libuv?: boolean }): Net {
  const watch = opts.watch;
  const libuv = opts.libuv ?? false;
  const self: Net = {
    async listen(at, options, onConn): Promise<NetListener> {
      const create = () => {
        const server = options.tls === undefined
          ? net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
            onConn(new NodeConn(s, libuv));
          })
          : tls.createServer(
            { ...options.tls, allowHalfOpen: true },
            (s) => onConn(new NodeConn(s, libuv)),
          );
        // a failed handshake concerns that client only
        server.on("tlsClientError", (_err: Error, s: net.Socket) => {
          s.destroy();
          options.onHandshakeError?.();
        });
        return server;
      };
      const start = (server: net.Server, port: number) =>
        new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          const common = { backlog: options.backlog, exclusive: !options.reusePort };
          if (options.fd !== undefined) {
            server.listen({ fd: options.fd, ...common }, () => resolve());
          } else if ("path" in at) server.listen({ path: at.path, ...common }, () => resolve());
          else {
            server.listen(
              { host: at.host, port, ...common, reusePort: options.reusePort },
              () => resolve(),
            );
          }
        }).then(() => {
          server.removeAllListeners("error");
          // accept(2) errors (EMFILE...) must not kill the process
          server.on("error", (e) => watch?.signal(codeOf(e)));
        });
      let server: net.Server | undefined = create();
      await start(server, "path" in at ? 0 : at.port).catch((e) => {
        throw errorFor(listenFailure(at), codeOf(e), { cause: e });
      });
      const addr = server.address();
      const address: Endpoint = "path" in at
        ? at
        : { host: at.host, port: typeof addr === "object" && addr !== null ? addr.port : at.port };
      // an inherited socket cannot be closed and opened again
      const unwatch = watch === undefined || "path" in address || options.fd !== undefined
        ? undefined
        : watch.add({
          pause: () => {
            server?.close();
            server = undefined;
          },
          resume: async () => {
            const next = create();
            await start(next, address.port);
            server = next;
          },
          paused: options.onAcceptError,
        });
      return {
        address,
        close: () => {
          unwatch?.();
          server?.close();
          server = undefined;
        },
      };
    },

    connect(to, options): Promise<NetConn> {
      const deadline = options.timeout > 0 ? Date.now() + options.timeout : 0;
      const conn = connectEach(to, options.family, deadline, async (host) => {
        if ("path" in to) {
          return new NodeConn(await connectOnce({ path: to.path }, deadline), libuv);
        }
        const opts: net.TcpNetConnectOpts = { host: host!, port: to.port };
        if (options.bindAddress !== undefined) opts.localAddress = options.bindAddress;
        const t = options.tls;
        const secure: Secure | undefined = t === undefined ? undefined : {
          options: {
            ...t,
            // verify against the name asked for, not the address it resolved to
            servername: t.servername ?? (isIP(to.host) ? undefined : to.host),
          },
          verify: t.rejectUnauthorized === false
            ? undefined
            : { name: t.servername ?? to.host, ca: t.ca },
        };
        return new NodeConn(await connectOnce(opts, deadline, secure), libuv);
      });
      // out of fds for the connect: stop accepting too
      return watch === undefined ? conn : conn.catch((err: RelaykitError) => {
        watch.signal(err.code);
        throw err;
      });
    },
  };
  return self;
}

/** node:net behind the Net contract, as Node uses it (libuv handles EMFILE itself). */
export const nodeNet: Net = nodeNetWith({ watch: undefined, libuv: true });
