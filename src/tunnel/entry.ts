/**
 * The tunnel client's entry listeners: SOCKS4/4a/5 and HTTP CONNECT in
 * front of the link. Each connection names its destination in its
 * handshake (parsed by the same parsers as the SOCKS and HTTP CONNECT
 * routers, src/protocol/); the destination travels in the stream's OPEN,
 * the server decides with its rules, and its OPEN_OK or OPEN_FAIL code
 * becomes the protocol's reply here.
 *
 * Theory of operation, per connection:
 * - handshake: bytes are gathered and parsed (the handshake replies due on
 *   the way, SOCKS5's method choice and password check, are sent once);
 *   at most `timeoutMs` for the whole handshake, and the parsers bound its
 *   size. A refusal here (no password, an unsupported command, a malformed
 *   request) sends the protocol's refusal and closes.
 * - opening: the stream is opened with the destination; the socket is
 *   handed to the link, which relays as for any listener (bytes the client
 *   sent after its request go first). The final reply waits for OPEN_OK.
 * - OPEN_OK: the success reply goes out ahead of any byte from the
 *   destination. OPEN_FAIL (or the link lost before the answer): the
 *   failure reply for its code, then FIN; the socket is destroyed if the
 *   client has not closed it within LINGER_MS.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";
import { httpConnectReply, parseHttpConnect } from "../protocol/http_connect.ts";
import {
  parseSocks,
  type RequestedDestination,
  socksReply,
  unsentReplies,
} from "../protocol/socks.ts";
import type { NetConn, NetHandlers } from "../runtime/types.ts";
import { destinationProblem } from "./frame.ts";
import type { StreamOpened } from "./stream.ts";

/** The entry protocols a tunnel client listener can speak. */
export type EntryKind = "socks" | "http-connect";

/** How long a refused connection may stay half-open for its reply to be read. */
const LINGER_MS = 2000;

/** What an entry connection asks of its tunnel client. */
export interface EntryHost {
  /**
   * Open a stream to `destination` carrying `conn`. Returns false (having
   * reported it) when the link is down.
   */
  open(destination: RequestedDestination, conn: NetConn, opened: StreamOpened): boolean;
  /** The handshake was refused or timed out: `what` says why. */
  refused(what: string): void;
}

/** How an entry listener behaves. */
export interface EntryOptions {
  kind: EntryKind;
  /** Username and password pairs; when given, clients must authenticate. */
  users: Readonly<Record<string, string>> | undefined;
  /** The whole handshake must arrive within this many ms. */
  timeoutMs: number;
}

/**
 * The socket as the link sees it once the handshake is done: the same
 * connection, its events (which this module receives first) passed on.
 */
class HandedConn implements NetConn {
  readonly #conn: NetConn;
  handlers: NetHandlers | undefined;

  constructor(conn: NetConn) {
    this.#conn = conn;
  }
  get remote(): NetConn["remote"] {
    return this.#conn.remote;
  }
  get local(): NetConn["local"] {
    return this.#conn.local;
  }
  get written(): number {
    return this.#conn.written;
  }
  start(h: NetHandlers): void {
    this.handlers = h;
  }
  write(data: Uint8Array): boolean {
    return this.#conn.write(data);
  }
  pause(): void {
    this.#conn.pause();
  }
  resume(): void {
    this.#conn.resume();
  }
  end(): void {
    this.#conn.end();
  }
  destroy(reset: boolean): void {
    this.#conn.destroy(reset);
  }
}

/**
 * Serve one accepted connection of an entry listener: its handshake, then
 * its stream.
 *
 * @param conn The accepted connection (not started).
 * @param o The listener's protocol and users.
 * @param host The tunnel client.
 */
export function serveEntry(conn: NetConn, o: EntryOptions, host: EntryHost): void {
  let phase: "handshake" | "stream" | "closing" | "closed" = "handshake";
  let buf: Uint8Array = new Uint8Array(0);
  let sent = 0; // handshake replies sent so far (SOCKS5)
  const handed = new HandedConn(conn);
  let linger: ReturnType<typeof setTimeout> | undefined;

  const timer = setTimeout(() => {
    if (phase !== "handshake") return;
    host.refused(`no complete ${o.kind} request within ${o.timeoutMs} ms`);
    phase = "closed";
    conn.destroy(false);
  }, o.timeoutMs);

  /** Send `bytes` (if any), then FIN; destroy if the client lingers. */
  const finish = (bytes: Uint8Array | string | undefined) => {
    clearTimeout(timer);
    if (phase === "closed") return;
    phase = "closing";
    if (bytes !== undefined) {
      conn.write(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
    }
    conn.end();
    linger = setTimeout(() => conn.destroy(false), LINGER_MS);
    (linger as { unref?: () => void }).unref?.();
  };

  /** The handshake named `d`: open its stream. */
  const open = (
    d: RequestedDestination,
    rest: Uint8Array,
    reply: (code: string | undefined) => Uint8Array | string,
  ) => {
    const problem = destinationProblem(d);
    if (problem !== undefined) {
      // the server could not be asked: refused, as its rules refuse a host that is not one
      host.refused(`the destination cannot be sent to the tunnel server: ${problem}`);
      finish(reply("RK_EDENIED"));
      return;
    }
    clearTimeout(timer);
    phase = "stream";
    const opened: StreamOpened = (error) => {
      if (phase === "closed") return;
      if (error === undefined) {
        const r = reply(undefined);
        conn.write(typeof r === "string" ? new TextEncoder().encode(r) : r);
      } else finish(reply(error.code));
    };
    if (!host.open(d, handed, opened)) {
      finish(reply("ENOTCONN"));
      return;
    }
    if (rest.length > 0 && phase === "stream") handed.handlers?.data(rest);
  };

  const onHandshake = (chunk: Uint8Array) => {
    buf = buf.length === 0 ? chunk : concatBytes([buf, chunk]);
    if (o.kind === "socks") {
      const step = parseSocks(buf, o.users);
      if (step.kind === "more") {
        if (step.replies.length > sent) {
          conn.write(unsentReplies(step.replies, sent));
          sent = step.replies.length;
        }
        return;
      }
      if (step.kind === "refuse") {
        host.refused(step.what ?? "not a well-formed SOCKS request");
        if (step.reply === undefined) {
          clearTimeout(timer);
          phase = "closed";
          conn.destroy(false);
        } else finish(unsentReplies(step.replies, sent, step.reply));
        return;
      }
      const { version, replies } = step;
      const done = sent;
      open(
        step.destination,
        step.rest,
        (code) => unsentReplies(replies, done, socksReply(version, code)),
      );
      return;
    }
    const step = parseHttpConnect(buf, o.users);
    if (step.kind === "more") return;
    if (step.kind === "refuse") {
      host.refused(step.what ?? "not a well-formed HTTP CONNECT request");
      finish(step.reply);
      return;
    }
    open(step.destination, step.rest, httpConnectReply);
  };

  conn.start({
    data: (chunk) => {
      if (phase === "handshake") {
        try {
          onHandshake(chunk);
        } catch (err) {
          // a fault here ends this one connection, never the process
          host.refused(`the ${o.kind} handshake failed: ${(err as Error)?.message ?? err}`);
          clearTimeout(timer);
          const was = phase as string; // onHandshake may have moved it on
          phase = "closed";
          conn.destroy(true);
          if (was === "stream") handed.handlers?.close("EIO"); // the link ends its stream
        }
      } else if (phase === "stream") handed.handlers?.data(chunk);
    },
    end: () => {
      if (phase === "handshake") {
        clearTimeout(timer);
        phase = "closed";
        conn.destroy(false);
      } else if (phase === "stream") handed.handlers?.end();
    },
    drain: () => {
      if (phase === "stream") handed.handlers?.drain();
    },
    close: (code) => {
      const was = phase;
      phase = "closed";
      clearTimeout(timer);
      clearTimeout(linger);
      if (was === "stream") handed.handlers?.close(code);
    },
  });
}
