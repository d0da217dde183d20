/**
 * Route modules: a TypeScript or JavaScript file exporting `route(data,
 * conn)` (or `proxy`, or a default export) and optionally `onError`,
 * `rewriteRequest`, `rewriteResponse`. Loaded by `relaykit route` and by
 * config files' `route:` listeners; loaded again (fresh) on reload.
 *
 * @module
 */
import { copyFileSync, rmSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import type { DataHook } from "../forward/hooks.ts";
import type { RouteFunction } from "./front.ts";

/** What a route module exports. */
export interface RouteModule {
  route: RouteFunction;
  onError?: (conn: { id: number }, error: Error) => void;
  rewriteRequest?: DataHook;
  rewriteResponse?: DataHook;
}

export async function loadRouteModule(path: string, generation: number): Promise<RouteModule> {
  // A reload imports a copy under a new name next to the script (so its
  // relative imports still resolve): runtimes cache modules by URL, and
  // not every one of them treats a query string as a new module.
  const full = resolve(path);
  const copy = generation === 0
    ? full
    : join(dirname(full), `.${basename(full)}.reload-${process.pid}-${generation}${extname(full)}`);
  let mod: Record<string, unknown>;
  try {
    if (copy !== full) copyFileSync(full, copy);
    mod = await import(pathToFileURL(copy).href);
  } catch (err) {
    throw new Error(`cannot load ${path}: ${(err as Error).message}`);
  } finally {
    if (copy !== full) rmSync(copy, { force: true });
  }
  const route = mod.route ?? mod.proxy ?? mod.default;
  if (typeof route !== "function") {
    throw new Error(`${path} exports no route function (export function route(data, conn))`);
  }
  for (const name of ["onError", "rewriteRequest", "rewriteResponse"]) {
    if (mod[name] !== undefined && typeof mod[name] !== "function") {
      throw new Error(`${path}: ${name} must be a function`);
    }
  }
  return { ...mod, route } as RouteModule;
}
