/**
 * The command line's option schema. Each option is declared once, as an
 * {@linkcode Opt}: its flag, the form of its value, its help text, the
 * config file key it corresponds to, and its validator (for most, a shared
 * setting from src/settings.ts that the config file uses too). Parsing
 * ({@linkcode parseArgs}), each command's `--help` ({@linkcode helpText})
 * and the did-you-mean suggestions ({@linkcode suggest}) all derive from
 * the declarations.
 *
 * @module
 */
import { distance } from "../spelling.ts";
import { parseEndpoint } from "../types.ts";
import { type Setting, SettingError } from "../settings.ts";
import type { Endpoint } from "../types.ts";

/** A command-line mistake: printed as one line, exit code 2. */
export class UsageError extends Error {
  /** @param message What is wrong. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One option of a command. */
export interface Opt<T = unknown> {
  /** "--listen". */
  readonly flag: string;
  /** The form of its value ("HOST:PORT"); none for a switch. */
  readonly value?: string;
  /** One line (or a few) for --help. */
  readonly help: string;
  /** The config file key that sets the same thing, shown in --help. */
  readonly config?: string;
  /** May be given more than once. */
  readonly repeat?: boolean;
  /**
   * The validator: the value from its text. A SettingError's message is
   * put after the flag; other errors are shown as they are.
   */
  readonly parse?: (text: string, flag: string) => T;
}

/** A valued option. */
export function opt<T>(
  o: Opt<T> & { value: string; parse: (text: string, flag: string) => T },
): Opt<T> {
  return o;
}

/** A switch (no value). */
export function flag(o: { flag: string; help: string; config?: string }): Opt<true> {
  return o;
}

/** An option validated by a shared setting (src/settings.ts). */
export function fromSetting<T>(
  flagName: string,
  setting: Setting<T>,
  help: string,
  config?: string,
): Opt<T> {
  return {
    flag: flagName,
    value: setting.values,
    help,
    ...(config !== undefined ? { config } : {}),
    parse: (text) => setting.parse(text),
  };
}

/** A plain text value. */
export function text(
  o: { flag: string; value: string; help: string; config?: string; repeat?: boolean },
): Opt<string> {
  return { ...o, parse: (t) => t };
}

/**
 * An address: HOST:PORT, [V6]:PORT, :PORT, unix:/path. A bare port gets a
 * hint (`write ":18017" or "127.0.0.1:18017"`).
 */
export function endpoint(
  o: { flag: string; value?: string; help: string; config?: string },
): Opt<Endpoint> {
  return { value: "HOST:PORT", ...o, parse: parseAddress };
}

/** parseEndpoint, with a hint for a bare port. */
export function parseAddress(text: string, flagName: string): Endpoint {
  if (/^\d{1,5}$/.test(text)) {
    throw new UsageError(
      `${flagName}: "${text}" has no host: write ":${text}" (every interface) or "127.0.0.1:${text}"`,
    );
  }
  return parseEndpoint(text, flagName);
}

/** A command: its options, positional arguments, help, and what it does. */
export interface Command {
  /** "forward", or "tunnel server". */
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** What follows the name in the usage line: "--listen HOST:PORT --to HOST:PORT [options]". */
  readonly usage: string;
  /** Paragraphs for its --help. */
  readonly about?: string;
  /** Print `about` as written (it holds a table), not wrapped. */
  readonly preformatted?: boolean;
  /** Names of its positional arguments, required ones first ("CONFIG"). */
  readonly positional?: readonly string[];
  readonly options: readonly Opt[];
  /** Subcommands ("tunnel server"). */
  readonly subcommands?: readonly Command[];
  /** Run it; the process keeps running while it serves. A number is the exit code. */
  run?(args: Args): Promise<number | void>;
}

/** The parsed command line of a command. */
export class Args {
  readonly command: Command;
  readonly positional: string[];
  readonly #values: Map<Opt, unknown[]>;
  /** The arguments as given (after the command's name). */
  readonly raw: readonly string[];

  constructor(command: Command, positional: string[], values: Map<Opt, unknown[]>, raw: string[]) {
    this.command = command;
    this.positional = positional;
    this.#values = values;
    this.raw = raw;
  }

  /** The option's (last) value, if given. */
  get<T>(o: Opt<T>): T | undefined {
    const v = this.#values.get(o);
    return v === undefined ? undefined : v[v.length - 1] as T;
  }

  /** Every value of a repeatable option. */
  all<T>(o: Opt<T>): T[] {
    return (this.#values.get(o) ?? []) as T[];
  }

  /** Whether it was given. */
  has(o: Opt): boolean {
    return this.#values.has(o);
  }

  /** The value; a UsageError when it is missing. */
  need<T>(o: Opt<T>): T {
    const v = this.get(o);
    if (v === undefined) throw new UsageError(`${o.flag} is required`);
    return v;
  }
}

/** The known word nearest to `word`, if one is near: a prefix, or two edits at most. */
export function suggest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const k of known) {
    const d = k.startsWith(word) && word.length >= 3 ? 1 : distance(word, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= Math.max(1, Math.min(2, Math.floor(word.length / 3))) ? best : undefined;
}

/** Whether the arguments ask for help (--help or -h anywhere). */
export function wantsHelp(args: readonly string[]): boolean {
  return args.includes("--help") || args.includes("-h");
}

/** Parse `args` (after the command's name) against `command`'s options. */
export function parseArgs(command: Command, args: string[]): Args {
  const values = new Map<Opt, unknown[]>();
  const positional: string[] = [];
  const byFlag = new Map(command.options.map((o) => [o.flag, o]));
  const max = command.positional?.length ?? 0;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("-") || arg === "-") {
      if (positional.length >= max) {
        throw new UsageError(
          `${command.name}: unexpected argument "${arg}" (see relaykit ${command.name} --help)`,
        );
      }
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const o = byFlag.get(name);
    if (o === undefined) {
      const near = suggest(name, [...byFlag.keys()]);
      throw new UsageError(
        `${command.name}: unknown option "${name}"${
          near ? ` (did you mean ${near}?)` : ` (see relaykit ${command.name} --help)`
        }`,
      );
    }
    if (o.parse === undefined) {
      if (eq > 0) throw new UsageError(`${name} takes no value`);
      values.set(o, [true]);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined) throw new UsageError(`${name} needs a value (${o.value})`);
    let parsed: unknown;
    try {
      parsed = o.parse(value, name);
    } catch (err) {
      if (err instanceof SettingError) throw new UsageError(`${name}: ${err.message}`);
      throw new UsageError((err as Error).message);
    }
    if (values.has(o) && !o.repeat) {
      throw new UsageError(`${name} is given twice`);
    }
    values.set(o, [...values.get(o) ?? [], parsed]);
  }
  const needed = command.positional?.filter((p) => !p.startsWith("[")) ?? [];
  if (positional.length < needed.length) {
    throw new UsageError(
      `${command.name} needs ${
        needed[positional.length]
      }: relaykit ${command.name} ${command.usage}`,
    );
  }
  return new Args(command, positional, values, args);
}

/** Wrap `text` at `width` columns, each line after the first indented by `indent`. */
function wrap(text: string, width: number, indent: number): string {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line !== "" && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") out.push(line);
  return out.join("\n" + " ".repeat(indent));
}

/** The --help page of a command, from its declaration. */
export function helpText(c: Command): string {
  const lines = [`Usage: relaykit ${c.name} ${c.usage}`, "", c.summary];
  if (c.about !== undefined) {
    lines.push(
      "",
      c.preformatted
        ? c.about.trim()
        : c.about.trim().split(/\n\s*\n/).map((p) => wrap(p, 92, 0)).join("\n\n"),
    );
  }
  if (c.subcommands !== undefined) {
    lines.push("", "Commands:");
    for (const s of c.subcommands) {
      lines.push(`  relaykit ${s.name} ${s.usage}`, `      ${s.summary}`);
    }
    lines.push("", `relaykit ${c.name} COMMAND --help shows a command's options.`);
  }
  if (c.options.length > 0) {
    lines.push("", "Options:");
    for (const o of c.options) {
      const head = `  ${o.flag}${o.value !== undefined ? ` ${o.value}` : ""}`;
      const help = o.help + (o.repeat ? " (repeatable)" : "") +
        (o.config !== undefined ? ` [config: ${o.config}]` : "");
      const pad = 27;
      lines.push(
        head.length < pad - 1
          ? head.padEnd(pad) + wrap(help, 100 - pad, pad)
          : `${head}\n${" ".repeat(pad)}${wrap(help, 100 - pad, pad)}`,
      );
    }
  }
  return lines.join("\n");
}
