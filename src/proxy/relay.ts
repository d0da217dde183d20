/**
 * Relaying two file descriptors that already exist: sockets, pipes, files,
 * ttys, character devices (libasyncproxy's AsyncProxy2FD). Native engine
 * only: the stream engine has no fds to relay, because Deno and Bun do not
 * expose them.
 *
 * @module
 */
import type { RelaykitError } from "../errors.ts";
import type { DataHooks } from "../forward/hooks.ts";
import { endOf, nativeClose, nativeHook, nativeStats } from "../forward/native.ts";
import type { ConnectionEnd, ConnectionStats } from "../types.ts";
import { callsOf, NativeEngine } from "../native/engine.ts";

/**
 * One side of a relay: an fd that is read and written (a socket, a tty), or
 * separate fds to read from and write to (a pipe's two ends, a file). A side
 * with no `read` sends nothing; with no `write` it receives nothing.
 *
 * @example
 * ```ts
 * import { closeFd, openPipe, type RelaySide } from "@relaykit/relaykit";
 * const [r, w] = openPipe();
 * const sides: RelaySide[] = [3, { read: r }, { write: w }, { read: r, write: w }];
 * console.log(sides.length);
 * closeFd(r);
 * closeFd(w);
 * ```
 */
export type RelaySide = number | { read?: number; write?: number };

/**
 * Options of {@link relay}.
 *
 * @example
 * ```ts
 * import { closeFd, openSocketPair, relay, type RelayOptions } from "@relaykit/relaykit";
 * const [a, x] = openSocketPair(), [y, b] = openSocketPair();
 * const options: RelayOptions = { idleTimeout: 5_000 };
 * const r = relay(x, y, options);
 * r.close("abort");
 * await r.done;
 * closeFd(a);
 * closeFd(b);
 * ```
 */
export interface RelayOptions {
  /** End the relay after this many ms without a byte moving; 0 is never. @default 0 */
  idleTimeout?: number;
  /** Leave the fds open when the relay ends (default: the relay closes them). */
  keepFds?: boolean;
  /** The native engine to run on. @default the shared one */
  engine?: NativeEngine;
  /**
   * Data hooks per direction: `aToB` sees what a sends to b, `bToA` the
   * reverse. A hooked direction lends its bytes to JavaScript in chunks of
   * at most 512 KiB, up to 4 at a time (as DataHook says); the other
   * keeps splicing natively.
   */
  hooks?: DataHooks;
}

function fdsOf(name: string, s: RelaySide): [number, number] {
  if (typeof s === "number") {
    if (!Number.isInteger(s) || s < 0) throw new RangeError(`${name} must be an fd, not ${s}`);
    return [s, s];
  }
  if (typeof s !== "object" || s === null) {
    throw new TypeError(`${name} must be an fd or { read, write }`);
  }
  const r = s.read ?? -1, w = s.write ?? -1;
  for (const fd of [r, w]) {
    if (!Number.isInteger(fd) || fd < -1) throw new RangeError(`${name} has a bad fd: ${fd}`);
  }
  return [r, w];
}

/**
 * A running relay between two fds.
 *
 * @example
 * ```ts
 * import { closeFd, openSocketPair, relay } from "@relaykit/relaykit";
 * const [a1, a2] = openSocketPair(), [b1, b2] = openSocketPair();
 * const r = relay(a2, b1); // a Relay: bytes between a2 and b1, natively
 * console.log(r.id > 0);
 * r.close("abort");
 * await r.done;
 * for (const fd of [a1, b2]) closeFd(fd);
 * ```
 */
export class Relay {
  /** Engine-wide connection id. */
  readonly id: number;
  /** Resolves with the final counters and the reason when the relay ends. */
  readonly done: Promise<ConnectionEnd>;
  readonly #engine: NativeEngine;

  /** @internal use {@link relay} */
  constructor(engine: NativeEngine, id: number, done: Promise<ConnectionEnd>) {
    this.#engine = engine;
    this.id = id;
    this.done = done;
  }

  /** Live counters, or undefined once the relay ended. */
  stats(): ConnectionStats | undefined {
    return nativeStats(this.#engine, this.id);
  }

  /**
   * End the relay: "graceful" stops reading, writes out what was read, then
   * shuts the sides; "abort" drops everything now.
   *
   * @returns the same promise as {@link Relay.done}.
   */
  close(mode: "graceful" | "abort" = "graceful"): Promise<ConnectionEnd> {
    nativeClose(this.#engine, this.id, mode);
    return this.done;
  }

  /** `await using` aborts a relay that is still running and waits for it. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close("abort").then(() => {});
  }
}

/**
 * Relay bytes both ways between side `a` and side `b` in native worker
 * threads, with splice(2) where the kernel allows it. EOF on one side is
 * passed on as a half-close once everything read has been written.
 *
 * @param a First side: an fd, or `{ read, write }` fds.
 * @param b Second side.
 * @returns the running relay.
 * @throws {RelaykitError} for a bad fd; NativeLoadError without the library.
 * @example Copy a file into a pipe
 * ```ts
 * import { closeFd, openFile, openPipe, readFd, relay } from "@relaykit/relaykit";
 * const [r, w] = openPipe();
 * const rl = relay({ read: openFile("/etc/hostname") }, { write: w });
 * console.log(new TextDecoder().decode(readFd(r)));
 * console.log((await rl.done).reason); // "done"
 * closeFd(r);
 * ```
 */
export function relay(a: RelaySide, b: RelaySide, options: RelayOptions = {}): Relay {
  const e = options.engine ?? NativeEngine.shared();
  const [ra, wa] = fdsOf("a", a);
  const [rb, wb] = fdsOf("b", b);
  const idle = options.idleTimeout ?? 0;
  if (!Number.isInteger(idle) || idle < 0) {
    throw new RangeError(`idleTimeout must be a non-negative integer, not ${idle}`);
  }
  const hooks = options.hooks ?? {};
  const id = e.check(
    callsOf(e).relayFds({ ra, wa, rb, wb }, {
      keepFds: options.keepFds ?? false,
      idleTimeout: idle,
      hooks,
    }),
    "Cannot start the relay",
  );
  e.ref();
  let hookError: RelaykitError | undefined;
  const done = new Promise<ConnectionEnd>((resolve) => {
    e.onConnection(id, (ev) => {
      if (ev.type === "hook") {
        nativeHook(e, ev, hooks, (err) => hookError ??= err);
        return;
      }
      if (ev.type !== "closed") return;
      e.offConnection(id);
      e.unref();
      const end = endOf(e, ev, (reason) => `Relay ${id} ended (${reason})`);
      resolve(hookError === undefined ? end : { ...end, error: hookError });
    });
  });
  return new Relay(e, id, done);
}
