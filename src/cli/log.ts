/**
 * The command's one logger: every line the relaykit command prints about
 * what it does goes through {@linkcode Logger.log}, and every line is made
 * by {@linkcode formatLine} (the one place where a line's text is built,
 * text or JSON, including any text a client or peer chose).
 *
 * - Levels error, warn, info, debug; a line is kept when its level is at
 *   most the chosen one (default info).
 * - To the terminal: info and debug on stdout, warn and error on stderr;
 *   colour (yellow warn, red error) only when stderr is a terminal and
 *   NO_COLOR is unset. With a log file, every line goes to the file.
 * - Lines with a cause (a dead backend's connect failures, refused clients)
 *   are rate-limited per cause: the first is printed, the others of the
 *   next `summaryMs` are counted and summed up in one line.
 * - {@linkcode Logger.reopen} reopens the file (logrotate moves it, then
 *   sends SIGUSR2 or SIGHUP).
 *
 * @module
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { escapeLogText, jsonLogLine } from "../log.ts";
import process from "node:process";
import { setTimeout as timeout } from "node:timers";
import { fileErrorReason } from "../errors.ts";

/** How important a line is. */
export type Level = "error" | "warn" | "info" | "debug";
const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** One line, before formatting. */
export interface LogRecord {
  /** When, as an ISO 8601 time. */
  time: string;
  level: Level;
  /** The process: "relaykit" or "relaykit[1]" (a worker). */
  name: string;
  /** What happened. */
  message: string;
}

/**
 * The text of one line, without its newline. Everything printed passes
 * through here: this is where a line's text is made safe to print.
 */
export function formatLine(r: LogRecord, format: "text" | "json", color: boolean): string {
  if (format === "json") {
    return jsonLogLine({ time: r.time, level: r.level, name: r.name, message: r.message });
  }
  const level = !color
    ? r.level
    : r.level === "error"
    ? `\x1b[31m${r.level}\x1b[0m`
    : r.level === "warn"
    ? `\x1b[33m${r.level}\x1b[0m`
    : r.level;
  return `${r.time} ${level} ${r.name}: ${escapeLogText(r.message)}`;
}

/** How a logger writes. */
export interface LoggerOptions {
  /** The most detailed level kept (default info). */
  level?: Level;
  /** text (default) or json. */
  format?: "text" | "json";
  /** A file that receives every line, instead of stdout and stderr. */
  file?: string | undefined;
  /** The process's name on each line (default "relaykit"). */
  name?: string;
  /** Colour warnings and errors (default: when stderr is a terminal and NO_COLOR is unset). */
  color?: boolean;
  /** How long lines of one cause are counted before a summary (default 10000 ms). */
  summaryMs?: number;
}

interface Cause {
  level: Level;
  count: number;
  last: string;
  since: number;
}

/** The relaykit command's logger. */
export class Logger {
  readonly level: Level;
  readonly format: "text" | "json";
  readonly name: string;
  readonly file: string | undefined;
  readonly #color: boolean;
  readonly #summaryMs: number;
  #fd: number | undefined;
  #causes = new Map<string, Cause>();

  /**
   * @param o Level, format, file, name.
   * @throws {Error} `cannot write FILE: no such directory` when the file cannot be opened.
   */
  constructor(o: LoggerOptions = {}) {
    this.level = o.level ?? "info";
    this.format = o.format ?? "text";
    this.name = o.name ?? "relaykit";
    this.file = o.file;
    this.#summaryMs = o.summaryMs ?? 10_000;
    this.#color = o.color ??
      (o.file === undefined && process.stderr.isTTY === true && !process.env.NO_COLOR);
    if (o.file !== undefined) this.#fd = Logger.#open(o.file);
  }

  static #open(file: string): number {
    try {
      return openSync(file, "a");
    } catch (err) {
      throw new Error(`cannot write ${file}: ${fileErrorReason(err, "write")}`);
    }
  }

  /** Whether lines of `level` are kept. */
  enabled(level: Level): boolean {
    return RANK[level] <= RANK[this.level];
  }

  /**
   * Log one line. With a `cause`, repeats within the summary interval are
   * counted rather than printed, then summed up in one line.
   */
  log(level: Level, message: string, cause?: string): void {
    if (!this.enabled(level)) return;
    if (cause === undefined) return this.#write(level, message);
    const c = this.#causes.get(cause);
    if (c !== undefined) {
      c.count++;
      c.last = message;
      return;
    }
    this.#causes.set(cause, { level, count: 0, last: message, since: Date.now() });
    this.#write(level, message);
    const t = timeout(() => this.#summary(cause), this.#summaryMs);
    t.unref();
  }

  #summary(cause: string): void {
    const c = this.#causes.get(cause);
    this.#causes.delete(cause);
    if (c === undefined || c.count === 0) return;
    const secs = Math.max(1, Math.round((Date.now() - c.since) / 1000));
    this.#write(c.level, `${c.last} (${c.count} more like this in the last ${secs} s)`);
  }

  /** Print the summaries still counting (before the process ends). */
  flush(): void {
    for (const cause of [...this.#causes.keys()]) this.#summary(cause);
  }

  /** error, warn, info, debug: shortcuts. */
  error(message: string): void {
    this.log("error", message);
  }
  /** A warning. */
  warn(message: string, cause?: string): void {
    this.log("warn", message, cause);
  }
  /** What happens. */
  info(message: string): void {
    this.log("info", message);
  }
  /** Every detail. */
  debug(message: string): void {
    this.log("debug", message);
  }

  /** Open the log file again (after logrotate moved it); a no-op without a file. */
  reopen(): void {
    if (this.file === undefined) return;
    let fd: number;
    try {
      fd = Logger.#open(this.file);
    } catch (err) {
      this.error(`reopening the log file: ${(err as Error).message}; still writing the old one`);
      return;
    }
    const old = this.#fd;
    this.#fd = fd;
    if (old !== undefined) closeSync(old);
  }

  /** Reopen the log file on each of `signals` (logrotate's convention: SIGUSR2, SIGHUP). */
  reopenOn(signals: readonly NodeJS.Signals[] = ["SIGUSR2"]): void {
    if (this.file === undefined) return;
    for (const s of signals) process.on(s, () => this.reopen());
  }

  #write(level: Level, message: string): void {
    const line = formatLine(
      { time: new Date().toISOString(), level, name: this.name, message },
      this.format,
      this.#color && this.#fd === undefined,
    ) + "\n";
    const fd = this.#fd ?? (RANK[level] <= RANK.warn ? 2 : 1);
    try {
      writeSync(fd, line);
    } catch {
      // a full non-blocking pipe: let the stream queue it
      (fd === 2 ? process.stderr : process.stdout).write(line);
    }
  }
}
