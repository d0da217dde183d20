/**
 * The library's calls that need no engine: a systemd notification and the
 * address of an inherited listening socket. Like every `rk_*` call, they
 * live in src/native; src/config/systemd.ts uses them.
 *
 * @module
 */
import type { Endpoint } from "../types.ts";
import { cstr } from "./calls.ts";
import { nativeLibrary } from "./engine.ts";

/**
 * Send one sd_notify(3) datagram `state` to the Unix datagram socket at
 * `path` (NOTIFY_SOCKET). Returns 0 or a negative errno.
 *
 * @throws NativeLoadError when the library cannot be loaded.
 */
export function notifySocket(path: string, state: string): number {
  const { lib } = nativeLibrary();
  return lib.symbols.rk_sd_notify(cstr(path), cstr(state)) as number;
}

/**
 * Where the listening stream socket `fd` listens; undefined when `fd` is
 * not one.
 *
 * @throws NativeLoadError when the library cannot be loaded.
 */
export function listeningAddress(fd: number): Endpoint | undefined {
  const { lib } = nativeLibrary();
  const host = new Uint8Array(256);
  const port = new Int32Array(1);
  const r = lib.symbols.rk_fd_sockname(fd, host, host.length, port) as number;
  if (r !== 0) return undefined;
  const text = new TextDecoder().decode(host.subarray(0, host.indexOf(0)));
  return port[0]! < 0 ? { path: text } : { host: text, port: port[0]! };
}
