/**
 * The front of a proxy listener: what happens to a connection before its
 * bytes start moving. Accepting a PROXY protocol header (from trusted
 * sources only), sending one to the target, and running the client-to-
 * target hook over bytes that were read while deciding. It works on held
 * connections (ProxySpec.hold) through the engine-neutral ProxyHandle, so
 * both engines behave the same; on the native engine the relay that
 * follows is native again.
 *
 * @module
 */
import { errorFor, type RelaykitError } from "../errors.ts";
import type { DataHooks } from "../forward/hooks.ts";
import { runHook } from "../forward/hooks.ts";
import type {
  Endpoint,
  HeldConnection,
  HeldUpdate,
  InetEndpoint,
  OriginalInfo,
  ProxyHandle,
} from "../forward/types.ts";
import { addressBytes, type Cidr, inRanges, parseCidr } from "../protocol/cidr.ts";
import {
  buildProxyHeader,
  decodeTlvs,
  parseProxyHeader,
  type ProxyHeader,
  ProxyProtocolError,
  TLV,
  type Tlv,
} from "../protocol/proxy_protocol.ts";

/** Accepting a PROXY protocol header from the clients of a listener. */
export interface AcceptProxyOptions {
  /** "detect": v1, v2 or no header; "v1" or "v2": that header, required. */
  mode: "detect" | "v1" | "v2";
  /**
   * Source ranges allowed to send a header ("10.0.0.0/8", "::1"). Anyone
   * else could forge their address with one. @default ["127.0.0.0/8", "::1"]
   */
  trusted?: readonly string[];
  /**
   * A client outside `trusted`: "refuse" closes it; "no-header" relays its
   * bytes as they are, header or not. @default "refuse"
   */
  untrusted?: "refuse" | "no-header";
  /** Close a connection whose header is incomplete after this many ms. @default 5000 */
  timeout?: number;
}

/** Sending a PROXY protocol header to the target before any client byte. */
export interface SendProxyOptions {
  /** Header version. */
  version: 1 | 2;
  /** v2: a UNIQUE_ID TLV: `true` for a random 32-character id, or one per connection. */
  uniqueId?: boolean | ((conn: OriginalInfo) => string | Uint8Array);
  /** v2: an AUTHORITY TLV (the host name the client asked for). */
  authority?: string | ((conn: OriginalInfo) => string | undefined);
  /** v2: more TLVs, as they are. */
  tlvs?: readonly Tlv[] | ((conn: OriginalInfo) => readonly Tlv[]);
  /** v2: a CRC32C TLV over the header. @default false */
  crc32c?: boolean;
}

/** The default trusted sources: this machine only. */
export const LOOPBACK = ["127.0.0.0/8", "::1"] as const;

/** The first read: what the spec suggests a receiver reads at once. Bytes
 * past the header are not lost: they go to the target after it. */
const FIRST_READ = 536;
/** The longest v2 header (16 bytes + a 65535-byte body). */
const V2_MAX = 16 + 65535;

const EMPTY = new Uint8Array(0);

/** "::ffff:10.1.2.3" -> "10.1.2.3"; anything else unchanged. */
function plain(e: InetEndpoint | undefined): InetEndpoint | undefined {
  if (e === undefined) return undefined;
  const b = addressBytes(e.host);
  return b?.length === 4 ? { host: b.join("."), port: e.port } : e;
}

function describe(conn: HeldConnection): string {
  const r = conn.remote;
  if (r === undefined) return `Connection ${conn.id}`;
  const host = r.host.includes(":") ? `[${r.host}]` : r.host;
  return `Connection ${conn.id} from ${host}:${r.port}`;
}

function randomId(): Uint8Array {
  const raw = crypto.getRandomValues(new Uint8Array(16));
  const hex = Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
  return new TextEncoder().encode(hex);
}

/** What the front needs from its proxy. */
export interface FrontOptions {
  accept: AcceptProxyOptions | undefined;
  send: SendProxyOptions | undefined;
  target: Endpoint;
  hooks: DataHooks;
  /** A header was accepted. */
  onOriginal(info: OriginalInfo): void;
  /** A connection was refused or failed before relaying. */
  onError(err: RelaykitError): void;
}

/** Check options up front, so a typo fails `listen`, not a connection. */
export function checkFrontOptions(
  accept: AcceptProxyOptions | undefined,
  send: SendProxyOptions | undefined,
): void {
  if (accept !== undefined) {
    if (!["detect", "v1", "v2"].includes(accept.mode)) {
      throw new TypeError(`acceptProxy.mode must be "detect", "v1" or "v2", not "${accept.mode}"`);
    }
    if (accept.untrusted !== undefined && !["refuse", "no-header"].includes(accept.untrusted)) {
      throw new TypeError(
        `acceptProxy.untrusted must be "refuse" or "no-header", not "${accept.untrusted}"`,
      );
    }
    for (const t of accept.trusted ?? []) parseCidr(t);
    const timeout = accept.timeout;
    if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 0)) {
      throw new RangeError(`acceptProxy.timeout must be a non-negative integer, not ${timeout}`);
    }
  }
  if (send !== undefined && send.version !== 1 && send.version !== 2) {
    throw new TypeError(`sendProxy.version must be 1 or 2, not ${send.version}`);
  }
}

/** Runs the front of one listener's held connections. */
export class Front {
  readonly #o: FrontOptions;
  readonly #trusted: Cidr[];
  readonly #originals = new Map<number, OriginalInfo>();
  #handle: ProxyHandle | undefined;

  /** @param options What to accept and send, and where to report. */
  constructor(options: FrontOptions) {
    this.#o = options;
    this.#trusted = (options.accept?.trusted ?? LOOPBACK).map(parseCidr);
  }

  /** How long a connection may stay undecided (0: no limit). */
  get timeout(): number {
    return this.#o.accept === undefined ? 0 : this.#o.accept.timeout ?? 5000;
  }

  /** Attach the proxy handle, once it exists. */
  attach(handle: ProxyHandle): void {
    this.#handle = handle;
  }

  /** The original addresses of connection `id`, while it is open. */
  original(id: number): OriginalInfo | undefined {
    return this.#originals.get(id);
  }

  /** Connection `id` ended. */
  forget(id: number): void {
    this.#originals.delete(id);
  }

  /** A held connection was accepted or sent more. */
  held(u: HeldUpdate): void {
    const h = this.#handle!;
    const accept = this.#o.accept;
    const id = u.conn.id;
    if (u.first) {
      if (accept === undefined) return void this.#go(u, undefined, 0);
      const host = u.conn.remote?.host;
      // a Unix socket peer is this machine: trusted like loopback
      if (host === undefined || inRanges(host, this.#trusted)) return h.readMore(id, FIRST_READ);
      if (accept.untrusted === "no-header") return void this.#go(u, undefined, 0);
      this.#refuse(
        u.conn,
        errorFor(`${describe(u.conn)}: PROXY header not accepted`, "RK_EPROXY_UNTRUSTED", {
          connectionId: id,
        }),
      );
      return;
    }
    let r;
    try {
      r = parseProxyHeader(u.data, accept!.mode);
    } catch (e) {
      const pe = e as ProxyProtocolError;
      this.#refuse(
        u.conn,
        errorFor(`${describe(u.conn)}: bad PROXY header (${pe.code}: ${pe.message})`, "RK_EPROXY", {
          connectionId: id,
          cause: e,
        }),
      );
      return;
    }
    if (r.kind === "need") {
      if (u.eof) {
        this.#refuse(
          u.conn,
          errorFor(
            `${
              describe(u.conn)
            }: the client ended inside its PROXY header (${u.data.length} bytes)`,
            "RK_EPROXY",
            { connectionId: id },
          ),
        );
        return;
      }
      h.readMore(id, Math.min(Math.max(u.data.length + r.bytes, FIRST_READ), V2_MAX));
      return;
    }
    if (r.kind === "none") return void this.#go(u, undefined, 0);
    this.#go(u, r.header, r.length);
  }

  #refuse(conn: HeldConnection, err: RelaykitError): void {
    this.#o.onError(err);
    this.#handle!.decide(conn.id, { action: "close" });
  }

  async #go(u: HeldUpdate, header: ProxyHeader | undefined, consume: number): Promise<void> {
    const h = this.#handle!;
    const id = u.conn.id;
    const info: OriginalInfo = { id };
    const fromHeader = header?.command === "proxy" && header.source !== undefined &&
      "host" in header.source && header.destination !== undefined && "host" in header.destination;
    const source = fromHeader ? header!.source as InetEndpoint : plain(u.conn.remote);
    const destination = fromHeader ? header!.destination as InetEndpoint : plain(u.conn.local);
    if (source !== undefined) info.source = source;
    if (destination !== undefined) info.destination = destination;
    if (header !== undefined) {
      info.header = header;
      info.tlvs = decodeTlvs(header.tlvs);
    }
    if (header !== undefined || this.#o.send !== undefined) this.#originals.set(id, info);
    if (header !== undefined) this.#o.onOriginal(info);
    let toTarget: Uint8Array = EMPTY;
    const send = this.#o.send;
    if (send !== undefined) {
      try {
        toTarget = this.#build(send, info);
      } catch (e) {
        this.#refuse(
          u.conn,
          errorFor(
            `${describe(u.conn)}: cannot build the PROXY header (${(e as Error).message})`,
            "RK_EPROXY",
            { connectionId: id, cause: e },
          ),
        );
        return;
      }
    }
    // bytes read while deciding go through the client-to-target hook too
    const rest = u.data.subarray(consume);
    const hook = this.#o.hooks.aToB;
    if (hook !== undefined && rest.length > 0) {
      try {
        const out = await runHook(hook, rest, {
          id,
          direction: "aToB",
          remote: u.conn.remote,
          original: info,
          stats: () => h.connectionStats(id),
        });
        const both = new Uint8Array(toTarget.length + out.length);
        both.set(toTarget);
        both.set(out, toTarget.length);
        toTarget = both;
        consume = u.data.length;
      } catch (e) {
        this.#o.onError(e as RelaykitError);
        h.closeConnection(id, "abort");
        return;
      }
    }
    h.decide(id, { action: "connect", target: this.#o.target, toTarget, consume });
  }

  #build(send: SendProxyOptions, info: OriginalInfo): Uint8Array {
    const header: ProxyHeader = {
      version: send.version,
      command: "proxy",
      transport: "stream",
      tlvs: [],
    };
    if (info.source !== undefined && info.destination !== undefined) {
      header.source = info.source;
      header.destination = info.destination;
    } else if (send.version === 2) {
      header.command = "local"; // no addresses to tell (a Unix socket client)
    }
    if (send.version === 2) {
      const enc = new TextEncoder();
      const authority = typeof send.authority === "function"
        ? send.authority(info)
        : send.authority;
      if (authority !== undefined) {
        header.tlvs.push({ type: TLV.AUTHORITY, value: enc.encode(authority) });
      }
      if (send.uniqueId !== undefined && send.uniqueId !== false) {
        const v = send.uniqueId === true ? randomId() : send.uniqueId(info);
        header.tlvs.push({ type: TLV.UNIQUE_ID, value: typeof v === "string" ? enc.encode(v) : v });
      }
      const more = typeof send.tlvs === "function" ? send.tlvs(info) : send.tlvs ?? [];
      header.tlvs.push(...more);
    }
    return buildProxyHeader(header, { crc32c: send.crc32c ?? false });
  }
}
