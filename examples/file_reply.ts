/**
 * Answer every connection with a file (sent with sendfile(2) on the native
 * engine), after an HTTP status line.
 *
 *   relaykit route examples/file_reply.ts --listen 127.0.0.1:8000
 */
import { fileURLToPath } from "node:url";
import type { RouteResult } from "../mod.ts";

const WELCOME = fileURLToPath(new URL("./welcome.txt", import.meta.url).href);

/** Reply with welcome.txt once the request's headers are in. */
export function route(data: Uint8Array): RouteResult | undefined {
  if (!new TextDecoder().decode(data).includes("\r\n\r\n")) return undefined;
  return { file: WELCOME, reply: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" };
}
