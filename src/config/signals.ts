/**
 * What the long-running commands do on signals.
 *
 * - SIGINT/SIGTERM stop: the first one stops accepting and lets what is
 *   open finish (up to a grace period where the command has one), saying
 *   how many connections it waits for; a second one closes them now and
 *   says how many it closed.
 * - SIGHUP, on a command that has nothing to reload (settings from the
 *   command line only), is ignored with a line saying so: it never ends
 *   the process (the default action of SIGHUP would, with exit 129).
 *
 * @module
 */
import process from "node:process";
import { plural } from "./plural.ts";

/** How a command stops. */
export interface StopOptions {
  /** A line for the operator (nothing when quiet). */
  log(line: string): void;
  /** What is still open, e.g. "3 connections" (for the lines). */
  open(): string;
  /** Stop accepting and resolve once everything open has ended by itself. */
  close(): Promise<void>;
  /** Close everything open now. */
  abort(): Promise<void> | void;
  /** How long to wait for open connections before closing them (ms). 0: not at all. */
  graceMs: number;
  /** Called once, as the first stop signal arrives (before anything closes). */
  onStopping?(): void;
}

/** The signals that stop a command. */
export const STOP_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * Stop on SIGINT/SIGTERM as the module doc says. Resolves once everything is
 * closed (then the caller lets the process end).
 */
export function stopOnSignals(o: StopOptions): Promise<string> {
  return new Promise((resolve) => {
    let stopping: Promise<void> | undefined;
    let closedNow = false;
    const now = async (sig: string) => {
      if (closedNow) return;
      closedNow = true;
      const what = o.open();
      await o.abort();
      o.log(`${sig} again: closed ${what} now`);
    };
    const handler = (sig: string) => {
      if (stopping !== undefined) return void now(sig);
      o.onStopping?.();
      const what = o.open();
      const none = /^0 /.test(what);
      if (o.graceMs <= 0 || none) {
        o.log(none ? `${sig}: stopping` : `${sig}: closing ${what}`);
        closedNow = true;
        stopping = Promise.resolve(o.abort()).then(() => o.close());
      } else {
        o.log(
          `${sig}: stopping; waiting up to ${seconds(o.graceMs)} for ${what} ` +
            `(Ctrl-C again to close them now)`,
        );
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise<void>((r) => {
          timer = setTimeout(() => {
            if (closedNow) return r();
            closedNow = true;
            const left = o.open();
            void Promise.resolve(o.abort()).then(() => {
              o.log(`grace period over: closed ${left}`);
              r();
            });
          }, o.graceMs);
        });
        const closing = o.close();
        stopping = Promise.race([closing, grace]).then(() => {
          clearTimeout(timer);
          return closing;
        });
      }
      stopping.then(() => {
        for (const s of STOP_SIGNALS) process.removeAllListeners(s);
        resolve(sig);
      });
    };
    for (const sig of STOP_SIGNALS) process.on(sig, () => handler(sig));
  });
}

/** "10 s", "1.5 s", "300 ms". */
function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

/** Connections in a line: "1 connection", "3 connections". */
export function connections(n: number): string {
  return plural(n, "connection");
}

/**
 * SIGHUP on a command with nothing to reload: a line, and the process goes
 * on.
 */
export function ignoreHangup(log: (line: string) => void): void {
  process.on("SIGHUP", () => {
    log("SIGHUP: ignored (nothing to reload: the settings come from the command line)");
  });
}
