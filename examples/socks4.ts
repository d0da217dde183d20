/**
 * A SOCKS4 proxy in a few lines (tproxy's example): parse the CONNECT
 * request, connect, reply "granted" once connected; anything else is
 * "rejected". No access control: bind it to localhost only.
 *
 *   relaykit route examples/socks4.ts --listen 127.0.0.1:1080
 *   curl --socks4 127.0.0.1:1080 http://127.0.0.1:8000/
 */
import type { RouteResult } from "../mod.ts";

/** SOCKS4 CONNECT: VN=4 CD=1 DSTPORT DSTIP USERID NUL. */
export function route(data: Uint8Array): RouteResult | undefined {
  const nul = data.indexOf(0, 8);
  if (data.length < 9 || nul < 0) return undefined; // need more bytes
  const port = (data[2]! << 8) | data[3]!;
  const ip = Array.from(data.subarray(4, 8)).join(".");
  if (data[0] === 4 && data[1] === 1) {
    return {
      remote: `${ip}:${port}`,
      reply: new Uint8Array([0, 0x5a, 0, 0, 0, 0, 0, 0]),
      data: data.subarray(nul + 1), // whatever came after the request
    };
  }
  return { close: new Uint8Array([0, 0x5b, 0, 0, 0, 0, 0, 0]) };
}
