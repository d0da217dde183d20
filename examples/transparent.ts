/**
 * Transparent forward: every connection goes to one backend, decided before
 * the client sends anything (so server-speaks-first protocols work too).
 *
 *   BACKEND=127.0.0.1:5432 relaykit route examples/transparent.ts --listen 127.0.0.1:6432
 */
import process from "node:process";
import type { RouteResult } from "../mod.ts";

/** Route every connection to $BACKEND. */
export function route(): RouteResult {
  return { remote: process.env.BACKEND ?? "127.0.0.1:8000" };
}
