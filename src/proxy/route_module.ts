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
import type { DataHook, DataHooks } from "../forward/hooks.ts";
import type { RouteFunction } from "./routing.ts";

/** What a route module exports. */
export interface RouteModule {
  route: RouteFunction;
  onError?: (conn: { id: number }, error: Error) => void;
  rewriteRequest?: DataHook;
  rewriteResponse?: DataHook;
}

/**
 * A hooks module: `aToB` and/or `bToA` (or `rewriteRequest`/`rewriteResponse`),
 * and `lend` (see DataHooks.lend).
 */
export async function loadHooksModule(path: string, generation: number): Promise<DataHooks> {
  const mod = await importFresh(path, generation);
  const aToB = mod.aToB ?? mod.rewriteRequest, bToA = mod.bToA ?? mod.rewriteResponse;
  for (const [name, f] of [["aToB", aToB], ["bToA", bToA]] as const) {
    if (f !== undefined && typeof f !== "function") {
      throw new Error(`${path}: ${name} must be a function`);
    }
  }
  if (aToB === undefined && bToA === undefined) {
    throw new Error(`${path} exports no hook (export function aToB(chunk, ctx) or bToA)`);
  }
  const hooks: DataHooks = {};
  if (aToB !== undefined) hooks.aToB = aToB as DataHook;
  if (bToA !== undefined) hooks.bToA = bToA as DataHook;
  if (mod.lend !== undefined && typeof mod.lend !== "boolean") {
    throw new Error(`${path}: lend must be true or false`);
  }
  if (mod.lend === true) hooks.lend = true;
  return hooks;
}

/**
 * Whether Node `version` strips TypeScript types: not at all (before 22.6),
 * only behind --experimental-strip-types (22.6 to 22.17, 23.0 to 23.5), or
 * by default (22.18 and 23.6 on).
 */
export function nodeTypeStripping(version: string): "none" | "flag" | "default" {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  if (major < 22 || (major === 22 && minor < 6)) return "none";
  if ((major === 22 && minor < 18) || (major === 23 && minor < 6)) return "flag";
  return "default";
}

/**
 * Why Node `version` refuses a .ts module, and what to do (the npm
 * package's `relaykit` command turns the flag on itself: src/cli/node_bin.ts).
 */
export function nodeTypeScriptHint(version: string): string {
  return nodeTypeStripping(version) !== "none"
    ? `Node ${version} runs TypeScript only with type stripping: run it with ` +
      `NODE_OPTIONS=--experimental-strip-types (on by default from Node 22.18 and 23.6), ` +
      `or write the module as .mjs`
    : `Node ${version} cannot load TypeScript modules: use Node 22.6 or later ` +
      `(with --experimental-strip-types before 22.18), Deno or Bun, or write the module as .mjs`;
}

/**
 * Import a module; a reload (generation > 0) imports a copy under a new
 * name next to it (so its relative imports still resolve): runtimes cache
 * modules by URL, and not every one of them treats a query string as a new
 * module.
 */
async function importFresh(path: string, generation: number): Promise<Record<string, unknown>> {
  const full = resolve(path);
  const copy = generation === 0
    ? full
    : join(dirname(full), `.${basename(full)}.reload-${process.pid}-${generation}${extname(full)}`);
  let mod: Record<string, unknown>;
  try {
    if (copy !== full) copyFileSync(full, copy);
    mod = await import(pathToFileURL(copy).href);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ERR_UNKNOWN_FILE_EXTENSION" && /\.[mc]?ts$/.test(full)) {
      throw new Error(`cannot load ${path}: ${nodeTypeScriptHint(process.versions.node ?? "?")}`);
    }
    throw new Error(`cannot load ${path}: ${(err as Error).message}`);
  } finally {
    if (copy !== full) rmSync(copy, { force: true });
  }
  return mod;
}

/** A route module: `route` (or `proxy`, or the default export) and optional extras. */
export async function loadRouteModule(path: string, generation: number): Promise<RouteModule> {
  const mod = await importFresh(path, generation);
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
