/**
 * The relaykit command: its commands, the global help, and `main`.
 *
 * @module
 */
import { VERSION } from "../version.ts";
import { ctl } from "./ctl.ts";
import { check, run } from "./run.ts";
import { demo } from "./demo.ts";
import { echo } from "./echo.ts";
import { forward } from "./forward.ts";
import { type Command, helpText, parseArgs, suggest, UsageError, wantsHelp } from "./options.ts";
import { route } from "./route.ts";
import { httpConnect, socks } from "./socks.ts";
import { tunnel } from "./tunnel.ts";

/** Every command, in the order the help lists them. */
export const COMMANDS: readonly Command[] = [
  forward,
  route,
  run,
  check,
  socks,
  httpConnect,
  tunnel,
  echo,
  demo,
  ctl,
];

/** The global help page. */
export function globalHelp(): string {
  const lines = [`relaykit ${VERSION} - a TCP proxy toolkit with a native splice engine`, ""];
  lines.push("Usage:");
  for (const c of COMMANDS) {
    if (c.subcommands) {
      for (const s of c.subcommands) lines.push(`  relaykit ${s.name} ${s.usage}`);
    } else lines.push(`  relaykit ${c.name} ${c.usage}`.trimEnd());
  }
  lines.push("  relaykit help [COMMAND] | --help | --version", "", "Commands:");
  for (const c of COMMANDS) lines.push(`  ${c.name.padEnd(14)}${c.summary}`);
  lines.push(
    "",
    "relaykit COMMAND --help (or relaykit help COMMAND) shows a command's options.",
    "Every serving command logs through one logger: --log-level error|warn|info|debug,",
    "--log-format text|json, --log-file FILE (reopened on SIGUSR2 and SIGHUP).",
  );
  return lines.join("\n");
}

/** The short usage printed when relaykit runs without a command. */
function usage(): string {
  return `relaykit ${VERSION}: a command is needed (${
    COMMANDS.map((c) => c.name).join(", ")
  }).\nTry: relaykit demo   More: relaykit --help`;
}

/** The command (or subcommand) that `words` names; the words left over. */
function find(words: string[]): { cmd: Command; rest: string[] } {
  const [name, ...rest] = words;
  const cmd = COMMANDS.find((c) => c.name === name);
  if (cmd === undefined) {
    const near = suggest(name ?? "", COMMANDS.map((c) => c.name));
    throw new UsageError(
      `unknown command "${name}" ${near ? `(did you mean ${near}?)` : "(see relaykit --help)"}`,
    );
  }
  if (cmd.subcommands === undefined) return { cmd, rest };
  const [sub, ...subRest] = rest;
  if (sub === undefined || sub.startsWith("-")) return { cmd, rest };
  const s = cmd.subcommands.find((x) => x.name === `${cmd.name} ${sub}`);
  if (s === undefined) {
    const names = cmd.subcommands.map((x) => x.name.slice(cmd.name.length + 1));
    const near = suggest(sub, names);
    throw new UsageError(
      `unknown command "${cmd.name} ${sub}"${
        near ? ` (did you mean ${cmd.name} ${near}?)` : ""
      } (see relaykit ${cmd.name} --help)`,
    );
  }
  return { cmd: s, rest: subRest };
}

/**
 * Run the command with `args` (without the program name).
 *
 * @returns the exit code (the process keeps running while a proxy does).
 */
export async function main(args: string[]): Promise<number> {
  try {
    const [first] = args;
    if (first === undefined) {
      console.error(usage());
      return 2;
    }
    if (first === "--help" || first === "-h" || first === "help") {
      const topic = args.slice(1).filter((x) => !x.startsWith("-"));
      console.log(topic.length === 0 ? globalHelp() : helpText(find(topic).cmd));
      return 0;
    }
    if (first === "--version" || first === "version") {
      console.log(`relaykit ${VERSION}`);
      return 0;
    }
    const { cmd, rest } = find(args);
    if (wantsHelp(rest)) {
      console.log(helpText(cmd));
      return 0;
    }
    if (cmd.run === undefined) {
      const names = cmd.subcommands?.map((s) => s.name.slice(cmd.name.length + 1)).join(" or ");
      throw new UsageError(`${cmd.name} needs ${names} (see relaykit ${cmd.name} --help)`);
    }
    return (await cmd.run(parseArgs(cmd, rest))) ?? 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`relaykit: ${message}`);
    return err instanceof UsageError ? 2 : 1;
  }
}
