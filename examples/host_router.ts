/**
 * HTTP Host-header router (tproxy's CouchDB router): wait until the Host
 * header has arrived, then pick the backend for that name.
 *
 *   ROUTES="a.test=127.0.0.1:8001,b.test=127.0.0.1:8002" \
 *     relaykit route examples/host_router.ts --listen 127.0.0.1:8000
 */
import process from "node:process";
import type { RouteResult } from "../mod.ts";

const HOST = /\r\nHost:[ \t]*([^\r\n:]+)(?::\d+)?[ \t]*\r\n/i;

function table(): Map<string, string> {
  const routes = new Map<string, string>();
  for (const pair of (process.env.ROUTES ?? "").split(",")) {
    const [name, backend] = pair.split("=");
    if (name && backend) routes.set(name.trim().toLowerCase(), backend.trim());
  }
  return routes;
}

/** The backend for the request's Host, or a 404 once the headers are complete. */
export function route(data: Uint8Array): RouteResult | undefined {
  const head = new TextDecoder().decode(data);
  const host = HOST.exec(head)?.[1]?.toLowerCase();
  if (host === undefined) {
    if (!head.includes("\r\n\r\n")) return undefined; // need more bytes
    return { close: "HTTP/1.0 400 Bad Request\r\n\r\nno Host header\n" };
  }
  const backend = table().get(host);
  if (backend === undefined) {
    return { close: `HTTP/1.0 404 Not Found\r\n\r\nno route for ${host}\n` };
  }
  return { remote: backend };
}
