/**
 * Active health checks of a backend's servers: a TCP connect (and
 * optionally bytes to send and bytes to expect back) every interval. A
 * server is marked down after `fall` failed checks in a row and up again
 * after `rise` good ones; balancing skips servers that are down. A server
 * an operator put in `maint` is not checked until it leaves it.
 *
 * @module
 */
import { RelaykitError } from "../errors.ts";
import { runtime } from "../runtime/detect.ts";
import type { NetConn } from "../runtime/types.ts";
import type { Backend, Server } from "./balance.ts";

/** How to check a backend's servers. */
export interface HealthCheckOptions {
  /** ms between checks of a server. @default 2000 */
  interval?: number;
  /** ms a check may take. @default 1000 */
  timeout?: number;
  /** Good checks in a row that bring a server up. @default 2 */
  rise?: number;
  /** Failed checks in a row that take a server down. @default 3 */
  fall?: number;
  /** Bytes to send once connected. */
  send?: string;
  /** Bytes the answer must contain (checked up to the timeout). */
  expect?: string;
}

/** A server going down or up. */
export interface HealthChange {
  backend: string;
  server: Server;
  up: boolean;
  /** Why the last check failed (down only). */
  reason?: string;
}

/** One check: resolves with undefined when good, or why not. */
function check(
  server: Server,
  o: Required<Omit<HealthCheckOptions, "send" | "expect">> & HealthCheckOptions,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let conn: NetConn | undefined;
    let got = "";
    let settled = false;
    const done = (why: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn?.destroy(false);
      resolve(why);
    };
    const timer = setTimeout(
      () =>
        done(
          o.expect !== undefined && got !== "" ? `"${o.expect}" not in the answer` : "timed out",
        ),
      o.timeout,
    );
    // the runtime's own sockets, as the stream engine uses them
    runtime.net.connect(server.address, {
      timeout: o.timeout,
      family: "any",
      bindAddress: undefined,
    }).then((c) => {
      conn = c;
      if (settled) return c.destroy(false);
      const decoder = new TextDecoder();
      c.start({
        data(chunk) {
          got += decoder.decode(chunk, { stream: true });
          if (o.expect !== undefined && got.includes(o.expect)) done(undefined);
        },
        end: () => done(o.expect === undefined ? undefined : `"${o.expect}" not in the answer`),
        drain() {},
        close: (code) => done(code ?? (o.expect === undefined ? undefined : "closed")),
      });
      if (o.send !== undefined) c.write(new TextEncoder().encode(o.send));
      if (o.expect === undefined) done(undefined);
    }, (err: unknown) => done(err instanceof RelaykitError ? err.code : String(err)));
  });
}

/** Checks every server of a backend until stopped. */
export class HealthChecker {
  readonly #backend: Backend;
  readonly #o: Required<Omit<HealthCheckOptions, "send" | "expect">> & HealthCheckOptions;
  readonly #onChange: (c: HealthChange) => void;
  readonly #timers: ReturnType<typeof setTimeout>[] = [];
  #stopped = false;

  /**
   * @param backend Whose servers to check.
   * @param options How.
   * @param onChange Called when a server goes down or up.
   */
  constructor(backend: Backend, options: HealthCheckOptions, onChange: (c: HealthChange) => void) {
    this.#backend = backend;
    this.#o = { interval: 2000, timeout: 1000, rise: 2, fall: 3, ...options };
    this.#onChange = onChange;
    backend.servers.forEach((s, i) => {
      // spread the first checks over one interval
      this.#schedule(s, { good: 0, bad: 0 }, (this.#o.interval * i) / backend.servers.length);
    });
  }

  #schedule(server: Server, run: { good: number; bad: number }, delay: number): void {
    if (this.#stopped) return;
    const t = setTimeout(async () => {
      this.#timers.splice(this.#timers.indexOf(t), 1);
      // a server in maintenance is not checked; checks resume where they were
      if (server.admin === "maint") return this.#schedule(server, run, this.#o.interval);
      const why = await check(server, this.#o);
      if (this.#stopped) return;
      server.lastCheck = why === undefined
        ? { ok: true, at: Date.now() }
        : { ok: false, reason: why, at: Date.now() };
      if (why === undefined) {
        run.good++;
        run.bad = 0;
        if (!server.up && run.good >= this.#o.rise) {
          server.up = true;
          server.changedAt = Date.now();
          this.#onChange({ backend: this.#backend.name, server, up: true });
        }
      } else {
        run.bad++;
        run.good = 0;
        if (server.up && run.bad >= this.#o.fall) {
          server.up = false;
          server.changedAt = Date.now();
          this.#onChange({ backend: this.#backend.name, server, up: false, reason: why });
        }
      }
      this.#schedule(server, run, this.#o.interval);
    }, delay);
    // checks alone do not keep a process alive
    (t as { unref?: () => void }).unref?.();
    this.#timers.push(t);
  }

  /** Stop checking. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
  }
}
