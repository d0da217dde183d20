/**
 * Parsing addresses as users write them on command lines and in configs.
 *
 * @module
 */
import type { Endpoint } from "../forward/types.ts";

/**
 * Parse "HOST:PORT", "[V6]:PORT", ":PORT" (all IPv4 interfaces),
 * "unix:/path" or "/path" into an endpoint.
 *
 * @param text What the user wrote.
 * @param what Its name, for the error message ("--listen").
 * @throws {RangeError} with a message naming `what` and the text.
 * @example
 * ```ts
 * import { parseEndpoint } from "@relaykit/relaykit";
 * console.log(parseEndpoint("[::1]:8080")); // { host: "::1", port: 8080 }
 * ```
 */
export function parseEndpoint(text: string, what = "address"): Endpoint {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (path === "") throw new RangeError(`${what}: "${text}" has no path after "unix:"`);
    return { path };
  }
  if (text.startsWith("/") || text.startsWith("./")) return { path: text };
  let host: string, portText: string;
  if (text.startsWith("[")) {
    const end = text.indexOf("]");
    if (end < 0 || text[end + 1] !== ":") {
      throw new RangeError(`${what}: "${text}" is not [IPV6]:PORT`);
    }
    host = text.slice(1, end);
    portText = text.slice(end + 2);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) throw new RangeError(`${what}: "${text}" has no port (HOST:PORT)`);
    host = text.slice(0, colon);
    if (host.includes(":")) {
      throw new RangeError(`${what}: "${text}" looks like IPv6; write it as [${host}]:PORT`);
    }
    portText = text.slice(colon + 1);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new RangeError(`${what}: "${portText}" in "${text}" is not a port from 0 to 65535`);
  }
  return { host: host === "" ? "0.0.0.0" : host, port: Number(portText) };
}
