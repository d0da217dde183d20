/**
 * The npm package's `relaykit` command on a Node that strips TypeScript
 * types only behind `--experimental-strip-types` (22.6 to 22.17, 23.0 to
 * 23.5): the command runs again in a child Node with that flag added to
 * NODE_OPTIONS (which its own child processes inherit), so that `.ts`
 * route and hooks modules load. This process forwards the signals the
 * command acts on and ends as the child ends. Nothing is re-run on other Nodes, on Bun, or
 * when NODE_OPTIONS or the node flags already say
 * `--experimental-strip-types` or `--no-experimental-strip-types`.
 *
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { nodeTypeStripping } from "../proxy/route_module.ts";

const STRIP_FLAG = "--experimental-strip-types";

/**
 * The signals the command acts on (src/config/signals.ts, service.ts and
 * supervisor.ts), passed on to the child.
 */
const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGTTIN", "SIGTTOU"] as const;

/**
 * The NODE_OPTIONS under which Node `version` strips types, or undefined
 * when nothing is to be added: it has no type stripping, strips by default,
 * or `execArgv` or `nodeOptions` already turn it on or off.
 *
 * @param version `process.versions.node`
 * @param execArgv the node flags of this process
 * @param nodeOptions NODE_OPTIONS of this process
 * @returns NODE_OPTIONS for the child, or undefined
 */
export function stripTypesNodeOptions(
  version: string,
  execArgv: readonly string[],
  nodeOptions: string | undefined,
): string | undefined {
  if (nodeTypeStripping(version) !== "flag") return undefined;
  const given = [...execArgv, ...(nodeOptions ?? "").split(/\s+/)];
  if (given.some((f) => /^--(no-)?experimental-(strip|transform)-types$/.test(f))) {
    return undefined;
  }
  return nodeOptions?.trim() ? `${nodeOptions} ${STRIP_FLAG}` : STRIP_FLAG;
}

/**
 * On a Node that needs the flag, run this command again in a child Node
 * with it, and end this process as the child ends.
 *
 * @returns whether the command runs in a child (then this process only waits)
 */
export function rerunWithTypeStripping(): boolean {
  if (process.versions.bun !== undefined || process.versions.deno !== undefined) return false;
  const nodeOptions = stripTypesNodeOptions(
    process.versions.node,
    process.execArgv,
    process.env.NODE_OPTIONS,
  );
  if (nodeOptions === undefined) return false;
  // its own process group, as the supervisor's workers: a Ctrl-C at a
  // terminal reaches this process alone, which passes it on once
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, NODE_OPTIONS: nodeOptions },
    detached: true,
  });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  for (const sig of FORWARDED) process.on(sig, forward);
  child.once("error", (err) => {
    process.stderr.write(
      `relaykit: cannot run ${process.execPath} ${STRIP_FLAG}: ${err.message}\n`,
    );
    process.exit(1);
  });
  child.once("exit", (code, signal) => {
    for (const sig of FORWARDED) process.off(sig, forward);
    if (signal !== null) process.kill(process.pid, signal); // end as it did
    else process.exit(code ?? 1);
  });
  return true;
}
