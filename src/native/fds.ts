/**
 * File descriptors for relays. Deno and Bun do not hand out the fds of
 * their sockets, so these helpers make fds natively: pipes, socket pairs,
 * files, and outbound sockets connected without blocking. 0, 1 and 2 are
 * stdin, stdout and stderr as usual. Native engine only.
 *
 * @module
 */
import { callsOf, NativeEngine } from "./engine.ts";
import type { FamilyPreference } from "../types.ts";

/**
 * open(2) flags of {@link openFile} (Linux values), by mode.
 *
 * @example
 * ```ts
 * import { OPEN_FLAGS } from "@relaykit/relaykit/internals";
 * console.log(Object.keys(OPEN_FLAGS)); // the modes openFile takes
 * ```
 */
export const OPEN_FLAGS = {
  r: 0, // O_RDONLY
  w: 0o1 | 0o100 | 0o1000, // O_WRONLY | O_CREAT | O_TRUNC
  a: 0o1 | 0o100 | 0o2000, // O_WRONLY | O_CREAT | O_APPEND
  "r+": 0o2, // O_RDWR
} as const;

function engineOf(engine?: NativeEngine): NativeEngine {
  return engine ?? NativeEngine.shared();
}

function pair(what: string, r: [number, number] | number, e: NativeEngine): [number, number] {
  if (typeof r === "number") throw e.error(r, `Cannot create a ${what}`);
  return r;
}

/**
 * Create a pipe.
 *
 * @returns [read end, write end]
 * @example
 * ```ts
 * import { closeFd, openPipe, readFd, writeFd } from "@relaykit/relaykit";
 * const [r, w] = openPipe();
 * writeFd(w, new TextEncoder().encode("hi"));
 * console.log(new TextDecoder().decode(readFd(r, 16)));
 * closeFd(r); closeFd(w);
 * ```
 */
export function openPipe(engine?: NativeEngine): [number, number] {
  const e = engineOf(engine);
  return pair("pipe", callsOf(e).fdPipe(), e);
}

/**
 * Create a connected pair of Unix stream sockets.
 *
 * @returns two fds; what one writes the other reads.
 * @example
 * ```ts
 * import { closeFd, openSocketPair } from "@relaykit/relaykit";
 * const [a, b] = openSocketPair();
 * closeFd(a); closeFd(b);
 * ```
 */
export function openSocketPair(engine?: NativeEngine): [number, number] {
  const e = engineOf(engine);
  return pair("socket pair", callsOf(e).fdSocketPair(), e);
}

/**
 * Open a file: "r" read, "w" write (create, truncate), "a" append, "r+"
 * read and write.
 *
 * @returns the fd.
 * @example
 * ```ts
 * import { closeFd, openFile } from "@relaykit/relaykit";
 * const fd = openFile("/etc/hostname", "r");
 * closeFd(fd);
 * ```
 */
export function openFile(
  path: string,
  mode: keyof typeof OPEN_FLAGS = "r",
  engine?: NativeEngine,
): number {
  const e = engineOf(engine);
  const flags = OPEN_FLAGS[mode];
  if (flags === undefined) throw new TypeError(`Unknown file mode "${mode}"`);
  return e.check(callsOf(e).fdOpen(path, flags, 0o644), `Cannot open "${path}"`);
}

/**
 * Options of {@link connectFd}.
 *
 * @example
 * ```ts
 * import { type ConnectFdOptions } from "@relaykit/relaykit";
 * const options: ConnectFdOptions = { timeout: 2000, family: "only-v4", bindAddress: "127.0.0.1" };
 * console.log(options.timeout);
 * ```
 */
export interface ConnectFdOptions {
  /** Give up after this many ms; 0 is never. @default 10000 */
  timeout?: number;
  /** Which family to try first for a name. @default "any" */
  family?: FamilyPreference;
  /** Source address to bind. */
  bindAddress?: string;
  /** The native engine to connect on. @default the shared one */
  engine?: NativeEngine;
}

/**
 * Connect a TCP socket (or a Unix socket, when port is omitted) without
 * blocking, and hand over its fd, e.g. for {@link relay}.
 *
 * @param host Name, address, or Unix socket path.
 * @param port TCP port; omit for a Unix socket.
 * @returns the connected fd, which the caller then owns.
 * @example
 * ```ts
 * import { closeFd, connectFd } from "@relaykit/relaykit";
 * const fd = await connectFd("127.0.0.1", 5432).catch(() => -1);
 * if (fd >= 0) closeFd(fd);
 * ```
 */
export function connectFd(
  host: string,
  port?: number,
  options: ConnectFdOptions = {},
): Promise<number> {
  const e = engineOf(options.engine);
  const where = port === undefined ? host : `${host}:${port}`;
  const id = e.check(
    callsOf(e).connectFd({
      target: port === undefined ? { path: host } : { host, port },
      family: options.family ?? "any",
      connectTimeout: options.timeout ?? 10_000,
      bindAddress: options.bindAddress,
    }),
    `Cannot connect to "${where}"`,
  );
  e.ref();
  return new Promise((resolve, reject) => {
    e.onConnection(id, (ev) => {
      if (ev.type !== "fd-connected") return;
      e.offConnection(id);
      e.unref();
      if (ev.err !== 0) reject(e.error(ev.err, `Cannot connect to "${where}"`));
      else resolve(ev.fd);
    });
  });
}

/**
 * Write all of `data` to `fd`, blocking until done.
 *
 * @returns the number of bytes written.
 *
 * @example
 * ```ts
 * import { closeFd, openPipe, readFd, writeFd } from "@relaykit/relaykit";
 * const [r, w] = openPipe();
 * writeFd(w, new TextEncoder().encode("ping"));
 * console.log(new TextDecoder().decode(readFd(r))); // ping
 * closeFd(r);
 * closeFd(w);
 * ```
 */
export function writeFd(fd: number, data: Uint8Array, engine?: NativeEngine): number {
  const e = engineOf(engine);
  return e.check(callsOf(e).fdWrite(fd, data), `Cannot write to fd ${fd}`);
}

/**
 * Read once from `fd`, up to `max` bytes, blocking until something comes.
 *
 * @returns the bytes (empty at end of file).
 *
 * @example
 * ```ts
 * import { closeFd, openPipe, readFd, shutdownWriteFd, writeFd } from "@relaykit/relaykit";
 * const [r, w] = openPipe();
 * writeFd(w, new TextEncoder().encode("last words"));
 * shutdownWriteFd(w); // a pipe's write end is closed: the reader sees EOF next
 * console.log(readFd(r).length, readFd(r).length); // 10 0
 * closeFd(r);
 * ```
 */
export function readFd(fd: number, max = 65536, engine?: NativeEngine): Uint8Array {
  const e = engineOf(engine);
  const buf = new Uint8Array(max);
  const n = e.check(callsOf(e).fdRead(fd, buf), `Cannot read from fd ${fd}`);
  return buf.subarray(0, n);
}

/**
 * Shut a socket for writing (the peer reads EOF); close any other fd.
 *
 * @example
 * ```ts
 * import { closeFd, openSocketPair, readFd, shutdownWriteFd } from "@relaykit/relaykit";
 * const [a, b] = openSocketPair();
 * shutdownWriteFd(a); // half-close: b reads EOF, a can still read
 * console.log(readFd(b).length); // 0
 * closeFd(a);
 * closeFd(b);
 * ```
 */
export function shutdownWriteFd(fd: number, engine?: NativeEngine): void {
  const e = engineOf(engine);
  e.check(callsOf(e).fdShutdownWrite(fd), `Cannot shut down fd ${fd}`);
}

/**
 * Close an fd made by these helpers (and not given to a relay).
 *
 * @example
 * ```ts
 * import { closeFd, openFile } from "@relaykit/relaykit";
 * const fd = openFile("/dev/null", "r");
 * closeFd(fd);
 * ```
 */
export function closeFd(fd: number, engine?: NativeEngine): void {
  const e = engineOf(engine);
  e.check(callsOf(e).fdClose(fd), `Cannot close fd ${fd}`);
}
