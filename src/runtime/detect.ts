/**
 * Which runtime is this? Decided once, here and nowhere else.
 *
 * @module
 */
import type { Runtime, RuntimeName } from "./types.ts";

/** The name of the runtime this process runs on. */
export function detectRuntime(): RuntimeName {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (typeof g.Deno === "object" && g.Deno !== null) return "deno";
  if (typeof g.Bun === "object" && g.Bun !== null) return "bun";
  return "node";
}

async function loadAdapter(name: RuntimeName): Promise<Runtime> {
  switch (name) {
    case "deno":
      return (await import("./deno.ts")).denoRuntime;
    case "bun":
      return (await import("./bun.ts")).bunRuntime;
    case "node":
      return (await import("./node.ts")).nodeRuntime;
  }
}

/** The adapter of the runtime this process runs on. */
export const runtime: Runtime = await loadAdapter(detectRuntime());
