/**
 * A tunnel stream's destination as people write it: "NAME" (a route of the
 * server) or "HOST:PORT". Shared by the command line and the config file.
 *
 * @module
 */
import { formatEndpoint, parseEndpoint } from "../types.ts";
import type { TunnelDestination } from "./frame.ts";

/** "NAME" (a route) or "HOST:PORT". */
export function parseDestination(text: string, what: string): TunnelDestination {
  if (/^[A-Za-z0-9_.-]+$/.test(text) && !/^\d+$/.test(text)) return { route: text };
  const e = parseEndpoint(text, what);
  if ("path" in e || e.port === 0) {
    throw new RangeError(`${what}: "${text}" is not HOST:PORT (port 1-65535) or a route NAME`);
  }
  return e;
}

/** The formatted destination. */
export function formatDestination(d: TunnelDestination): string {
  return "route" in d ? `route ${d.route}` : formatEndpoint(d);
}
