/**
 * The tunnel handshake, one side of it: version negotiation, optional
 * HMAC-SHA256 proofs of a shared secret in both directions (the client's
 * first), and the budget of frames a peer may send before it is done. The
 * link (link.ts) owns the socket and the timers and feeds the handshake its
 * frames until it says ready.
 *
 * Theory of operation (docs/tunnel.md has the threat model):
 * - client: HELLO (versions, nonce) -> server: HELLO_ACK (version, window,
 *   and with a secret the server's nonce: nothing that depends on the
 *   secret) -> client: AUTH (its proof) -> server checks it, and only then
 *   READY (its own proof), or GOAWAY "wrong shared secret".
 * - Both proofs are HMAC-SHA256 under the secret of a label naming the
 *   direction and the transcript (the HELLO and HELLO_ACK frames as sent),
 *   so both nonces, the versions and the window are bound into both, and a
 *   proof of one direction is never valid for the other.
 * - A client that has no proof to give learns one bit per connection: it
 *   cannot test guesses of the secret without a round trip per guess.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";
import { encodeFrame, NONCE_SIZE, type TunnelFrame, TunnelProtocolError } from "./frame.ts";

/** What each side's proof is a MAC of, before the transcript. */
const PROOF_LABELS = {
  client: "relaykit-tunnel/2 client proof\0",
  server: "relaykit-tunnel/2 server proof\0",
} as const;

/**
 * The most frames a peer may send before the handshake is done. The
 * handshake takes one or two (HELLO and AUTH, or HELLO_ACK and READY); the
 * rest is room for a PING or two. A peer that has proven nothing gets no
 * more work and no more memory than this: a flood of PINGs before the
 * handshake would otherwise queue a PONG each, unbounded but by the link's
 * limit of bytes held.
 */
const HANDSHAKE_FRAMES = 8;

/** What one side of a handshake knows before it starts. */
export interface HandshakeOptions {
  /** Shared secret; when set, both sides prove they know it. */
  secret: string | undefined;
  /** Versions offered (client) or spoken (server). */
  versions: readonly number[];
  /** Per-stream window the server announces. */
  window: number;
}

/** What the handshake needs of its link. */
export interface HandshakeHost {
  /** "host:port" of the peer, for messages. */
  peer(): string;
  /** Whether the link closed (while a proof was being computed). */
  closed(): boolean;
  /** Send a frame on the link. */
  send(f: TunnelFrame): void;
  /** Refuse the peer: tell it why (GOAWAY), then close. */
  refuse(code: "RK_ETUNNEL_AUTH" | "RK_ETUNNEL_VERSION", message: string): void;
  /** The peer refused this side (its GOAWAY): close with `message`. */
  refused(code: string, message: string): void;
  /** The handshake is done: `version` and `window` hold what was agreed. */
  ready(): void;
}

const te = new TextEncoder();

/**
 * A side's proof: HMAC-SHA256(secret, label of that side ‖ transcript), the
 * transcript being the HELLO and HELLO_ACK frames, headers included.
 */
async function proofOf(
  secret: string,
  side: "client" | "server",
  transcript: Uint8Array,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    te.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const label = te.encode(PROOF_LABELS[side]);
  const msg = new Uint8Array(label.length + transcript.length);
  msg.set(label);
  msg.set(transcript, label.length);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, msg));
}

/** The first bytes of a TLS record (handshake or alert, version 3.x). */
export function looksLikeTls(b: Uint8Array): boolean {
  return (b[0] === 0x16 || b[0] === 0x15) && (b.length < 2 || b[1] === 0x03);
}

/** Compare two proofs in time that does not depend on where they differ. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * The server's refusal of a client with no version in common; it names both
 * sides' versions, and which side is older when one is.
 */
function versionMismatch(client: readonly number[], server: readonly number[]): string {
  const older = Math.max(...client) < Math.min(...server)
    ? " (the client is older: upgrade it)"
    : Math.min(...client) > Math.max(...server)
    ? " (the server is older: upgrade it)"
    : "";
  return `no common protocol version: the client offers ${client.join(", ")}, this server speaks ${
    server.join(", ")
  }${older}`;
}

/** One side's handshake, from its first frame to READY (or a refusal). */
export class Handshake {
  readonly #role: "client" | "server";
  readonly #host: HandshakeHost;
  readonly #secret: string | undefined;
  readonly #versions: readonly number[];
  readonly #window: number;
  #state: "hello" | "auth" = "hello";
  #version = 0;
  #streamWindow: number; // the initial credit each way, once agreed
  #nonce: Uint8Array = new Uint8Array(NONCE_SIZE);
  #hello: Uint8Array = new Uint8Array(0); // the HELLO frame, as sent
  #transcript: Uint8Array = new Uint8Array(0); // HELLO ‖ HELLO_ACK
  #frames = 0; // frames received so far

  constructor(role: "client" | "server", options: HandshakeOptions, host: HandshakeHost) {
    this.#role = role;
    this.#host = host;
    this.#secret = options.secret;
    this.#versions = options.versions;
    this.#window = options.window;
    this.#streamWindow = options.window;
  }

  /** The protocol version agreed (0 before). */
  get version(): number {
    return this.#version;
  }

  /** The per-stream window agreed: the initial credit each way. */
  get window(): number {
    return this.#streamWindow;
  }

  /** The client side: send HELLO. */
  start(): void {
    if (this.#role !== "client") return;
    crypto.getRandomValues(this.#nonce);
    const hello: TunnelFrame = {
      type: "hello",
      versions: [...this.#versions],
      nonce: this.#nonce,
    };
    this.#hello = encodeFrame(hello);
    this.#host.send(hello);
  }

  /**
   * Count `n` more frames received before the handshake was done; the error
   * to close with once the peer sent more than its budget.
   */
  admit(n: number): TunnelProtocolError | undefined {
    this.#frames += n;
    if (this.#frames <= HANDSHAKE_FRAMES) return undefined;
    return new TunnelProtocolError(
      "state",
      `more than ${HANDSHAKE_FRAMES} frames before the handshake was done`,
    );
  }

  /** Take one frame; throws TunnelProtocolError for one out of place. */
  async step(f: TunnelFrame): Promise<void> {
    const host = this.#host;
    const peerSide = this.#role === "client" ? "server" : "client";
    if (f.type === "goaway") {
      host.refused(f.code, `Tunnel ${peerSide} ${host.peer()} refused the link: ${f.message}`);
      return;
    }
    if (f.type === "ping") {
      host.send({ type: "pong", data: f.data });
      return;
    }
    if (f.type === "pong") return;
    const unexpected = () => {
      throw new TunnelProtocolError(
        "state",
        `a ${f.type} frame during the handshake (state ${this.#state}, ${this.#role} side)`,
      );
    };
    if (this.#role === "server") {
      if (this.#state === "hello" && f.type === "hello") {
        const common = f.versions.filter((v) => this.#versions.includes(v));
        if (common.length === 0) {
          host.refuse("RK_ETUNNEL_VERSION", versionMismatch(f.versions, this.#versions));
          return;
        }
        this.#version = Math.max(...common);
        const ack: TunnelFrame = {
          type: "hello-ack",
          version: this.#version,
          window: this.#window,
        };
        if (this.#secret === undefined) {
          host.send(ack);
          host.ready();
          return;
        }
        // the server's nonce and nothing else: no proof before the client's
        crypto.getRandomValues(this.#nonce);
        ack.auth = { nonce: this.#nonce };
        this.#transcript = concatBytes([encodeFrame(f), encodeFrame(ack)]);
        host.send(ack);
        this.#state = "auth";
        return;
      }
      if (this.#state === "auth" && f.type === "auth") {
        const want = await proofOf(this.#secret!, "client", this.#transcript);
        if (host.closed()) return;
        if (!sameBytes(want, f.proof)) {
          host.refuse("RK_ETUNNEL_AUTH", "wrong shared secret");
          return;
        }
        const proof = await proofOf(this.#secret!, "server", this.#transcript);
        if (host.closed()) return;
        host.send({ type: "ready", proof });
        host.ready();
        return;
      }
      return unexpected();
    }
    // the client
    if (this.#state === "hello" && f.type === "hello-ack") {
      if (!this.#versions.includes(f.version)) {
        host.refuse(
          "RK_ETUNNEL_VERSION",
          `the server chose protocol version ${f.version}, this client offers ${
            this.#versions.join(", ")
          }`,
        );
        return;
      }
      this.#version = f.version;
      this.#streamWindow = f.window;
      if (f.auth === undefined) {
        if (this.#secret !== undefined) {
          const msg = "the server does not authenticate, and this client has a shared secret";
          host.refuse("RK_ETUNNEL_AUTH", msg);
          return;
        }
        host.ready();
        return;
      }
      if (this.#secret === undefined) {
        const msg = "the server requires a shared secret, and this client has none";
        host.refuse("RK_ETUNNEL_AUTH", msg);
        return;
      }
      this.#transcript = concatBytes([this.#hello, encodeFrame(f)]);
      const proof = await proofOf(this.#secret, "client", this.#transcript);
      if (host.closed()) return;
      host.send({ type: "auth", proof });
      this.#state = "auth";
      return;
    }
    if (this.#state === "auth" && f.type === "ready") {
      const want = await proofOf(this.#secret!, "server", this.#transcript);
      if (host.closed()) return;
      if (!sameBytes(want, f.proof)) {
        const msg = "wrong shared secret (the server's proof does not match)";
        host.refuse("RK_ETUNNEL_AUTH", msg);
        return;
      }
      host.ready();
      return;
    }
    return unexpected();
  }
}
