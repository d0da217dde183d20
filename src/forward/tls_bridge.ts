/**
 * TLS for the native engine's connections where the C library cannot speak
 * it (OpenSSL 3 did not load). A connection routed to a TLS target is then
 * connected natively to this
 * bridge instead: a stream-engine listener on loopback that reads a one-line
 * preamble with a one-time token, then connects to the real target with the
 * runtime's TLS and relays. The client side of the connection stays native;
 * the TLS side runs on the runtime's sockets, transparently.
 *
 * @module
 */
import { RelaykitError } from "../errors.ts";
import { StreamForwardEngine } from "./stream.ts";
import type { Endpoint, HeldUpdate, ProxyHandle, TlsClientOptions } from "./types.ts";

interface Pending {
  target: Endpoint;
  tls: TlsClientOptions;
  connectTimeout: number;
  /** The native connection it belongs to, for error reports. */
  id: number;
}

/** The longest preamble: "RKTLS " + 32 hex digits + "\n". */
const PREAMBLE_MAX = 64;

/** One bridge per native engine user, started on first use. */
export class TlsBridge {
  readonly #report: (err: RelaykitError) => void;
  readonly #pending = new Map<string, Pending>();
  readonly #active = new Map<number, Pending>(); // by bridge connection id
  #handle: Promise<ProxyHandle> | undefined;

  /** @param report Where failures of bridged connections go. */
  constructor(report: (err: RelaykitError) => void) {
    this.#report = report;
  }

  /**
   * Register a TLS connect for native connection `id`; resolves with the
   * bridge's port and the preamble to send it first.
   */
  async prepare(
    id: number,
    target: Endpoint,
    tls: TlsClientOptions,
    connectTimeout: number,
  ): Promise<{ port: number; preamble: Uint8Array }> {
    const handle = await (this.#handle ??= this.#start());
    const raw = crypto.getRandomValues(new Uint8Array(16));
    const token = Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
    this.#pending.set(token, { target, tls, connectTimeout, id });
    const port = "port" in handle.address ? handle.address.port : 0;
    return { port, preamble: new TextEncoder().encode(`RKTLS ${token}\n`) };
  }

  /** Stop accepting; bridged connections go on until they end. */
  close(): void {
    this.#handle?.then((h) => h.stopAccepting());
  }

  /** Forget a registration whose native connect never happened. */
  cancel(preamble: Uint8Array): void {
    this.#pending.delete(new TextDecoder().decode(preamble).slice(6, -1));
  }

  async #start(): Promise<ProxyHandle> {
    const handle = await new StreamForwardEngine().startProxy({
      listen: { host: "127.0.0.1", port: 0 },
      target: undefined,
      backlog: 511,
      reusePort: false,
      maxConnections: 0,
      idleTimeout: 0, // the native side keeps the idle timeout
      connectTimeout: 10_000,
      family: "any",
      bindAddress: undefined,
      hooks: {},
      hold: { timeout: 10_000 },
    });
    handle.start({
      open: () => {},
      connected: () => {},
      close: (end) => {
        const p = this.#active.get(end.id);
        this.#active.delete(end.id);
        if (p !== undefined && end.error !== undefined) {
          this.#report(
            new RelaykitError(end.error.message, end.error.code, {
              connectionId: p.id,
              cause: end.error,
            }),
          );
        }
      },
      reject: () => {},
      hookFailed: () => {},
      stopped: () => {},
      drained: () => {},
      held: (u: HeldUpdate) => this.#held(handle, u),
    });
    return handle;
  }

  #held(h: ProxyHandle, u: HeldUpdate): void {
    const nl = u.data.indexOf(0x0a);
    if (nl < 0) {
      if (u.data.length >= PREAMBLE_MAX || u.eof) h.decide(u.conn.id, { action: "close" });
      else h.readMore(u.conn.id, PREAMBLE_MAX);
      return;
    }
    const line = new TextDecoder().decode(u.data.subarray(0, nl));
    const p = line.startsWith("RKTLS ") ? this.#pending.get(line.slice(6)) : undefined;
    if (p === undefined) return void h.decide(u.conn.id, { action: "close" });
    this.#pending.delete(line.slice(6));
    this.#active.set(u.conn.id, p);
    h.decide(u.conn.id, {
      action: "connect",
      target: p.target,
      tls: p.tls,
      consume: nl + 1,
      connectTimeout: p.connectTimeout,
    });
  }
}
