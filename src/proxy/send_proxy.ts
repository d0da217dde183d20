/**
 * Sending a PROXY protocol header to a target: who the client is, as v1 or
 * v2 (with TLVs).
 *
 * @module
 */
import { EMPTY } from "../bytes.ts";
import type { OriginalInfo, ProxyFront } from "../forward/types.ts";
import { buildProxyHeader, type ProxyHeader, TLV, type Tlv } from "../protocol/proxy_protocol.ts";
import type { SendProxyOptions } from "../types.ts";

/** Check sendProxy options up front, so a typo fails `listen`, not a connection. */
export function checkSendProxy(send: SendProxyOptions): void {
  if (send.version !== 1 && send.version !== 2) {
    throw new TypeError(`sendProxy.version must be 1 or 2, not ${send.version}`);
  }
}

function randomId(): Uint8Array {
  const raw = crypto.getRandomValues(new Uint8Array(16));
  const hex = Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
  return new TextEncoder().encode(hex);
}

/**
 * The header that tells a target who `info` is.
 *
 * @throws what the user's TLV functions throw, or a header that cannot be built.
 */
export function buildSendProxy(send: SendProxyOptions, info: OriginalInfo): Uint8Array {
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
    const authority = typeof send.authority === "function" ? send.authority(info) : send.authority;
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

/** The encoded TLVs of `tlvs`, by the one builder (a LOCAL v2 header's tail). */
function tlvBytes(tlvs: Tlv[]): Uint8Array {
  if (tlvs.length === 0) return EMPTY;
  return buildProxyHeader({ version: 2, command: "local", transport: "stream", tlvs }).subarray(16);
}

/**
 * The header of `send` as an engine builds it itself for each connection
 * (ProxySpec.front): the same bytes as {@link buildSendProxy}, the UNIQUE_ID
 * drawn per connection. Undefined when a function of the connection
 * decides a part of it, or a TLV cannot be encoded.
 */
export function engineSendProxy(send: SendProxyOptions): ProxyFront["send"] {
  const { authority, uniqueId, tlvs } = send;
  if (
    typeof authority === "function" || typeof uniqueId === "function" ||
    typeof tlvs === "function"
  ) return undefined;
  const crc32c = send.version === 2 && (send.crc32c ?? false);
  const plain = {
    version: send.version,
    crc32c,
    uniqueId: false,
    tlvsBefore: EMPTY,
    tlvsAfter: EMPTY,
  };
  if (send.version === 1) return plain;
  try {
    const before = authority === undefined
      ? []
      : [{ type: TLV.AUTHORITY, value: new TextEncoder().encode(authority) }];
    // buildProxyHeader drops the caller's CRC32C TLVs when it adds its own
    const after = (tlvs ?? []).filter((t) => !(crc32c && t.type === TLV.CRC32C));
    return {
      ...plain,
      uniqueId: uniqueId === true,
      tlvsBefore: tlvBytes(before),
      tlvsAfter: tlvBytes(after),
    };
  } catch {
    return undefined;
  }
}
