/**
 * HTTP Host rewrite (tproxy's httprewrite.py): forward to $BACKEND and make
 * the request's Host header name the backend, so a virtual-hosting server
 * knows what to do; responses get a Via header.
 *
 *   BACKEND=127.0.0.1:8080 relaykit route examples/http_rewrite.ts --listen 127.0.0.1:8000
 */
import process from "node:process";
import type { DataHook, RouteResult } from "../mod.ts";

const backend = () => process.env.BACKEND ?? "127.0.0.1:8080";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Connect once the request line is in. */
export function route(data: Uint8Array): RouteResult | undefined {
  return dec.decode(data).includes("\r\n") ? { remote: backend() } : undefined;
}

/** Rewrite Host headers in what the client sends (a chunk at a time). */
export const rewriteRequest: DataHook = (chunk: Uint8Array): Uint8Array =>
  enc.encode(dec.decode(chunk).replace(/\r\nHost:[^\r\n]*/gi, `\r\nHost: ${backend()}`));

/** Mark responses as having passed through relaykit. */
export const rewriteResponse: DataHook = (chunk: Uint8Array): Uint8Array =>
  enc.encode(dec.decode(chunk).replace(/^(HTTP\/1\.[01] [^\r\n]*\r\n)/, "$1Via: relaykit\r\n"));
