/**
 * systemd conventions: readiness notification (sd_notify) and socket
 * activation (LISTEN_FDS).
 *
 * sd_notify sends one datagram to the Unix socket named by NOTIFY_SOCKET.
 * Neither node:dgram nor Bun can send a Unix datagram, so the native
 * library sends it (`rk_sd_notify`); where it cannot be loaded,
 * `systemd-notify` is run instead, which systemd accepts only with
 * `NotifyAccess=all` (the message then comes from another process).
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { readFileSync, readlinkSync } from "node:fs";
import process from "node:process";
import { listeningAddress, notifySocket } from "../native/system.ts";
import type { Endpoint } from "../forward/types.ts";
import { sameEndpoint } from "../types.ts";

let warned = false;

/**
 * Tell systemd `state` ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=…")
 * when NOTIFY_SOCKET is set; nothing otherwise. Never throws: a failure is
 * reported once through `log`.
 */
export function sdNotify(state: string, log?: (line: string) => void): void {
  const path = process.env.NOTIFY_SOCKET;
  if (path === undefined || path === "") return;
  let why: string;
  try {
    const r = notifySocket(path, state);
    if (r === 0) return;
    why = `errno ${-r}`;
  } catch (err) {
    why = (err as Error).message.split("\n")[0]!;
    const r = spawnSync("systemd-notify", state.split("\n"), { stdio: "ignore" });
    if (r.error === undefined && r.status === 0) return;
    why += `; systemd-notify: ${r.error?.message ?? `exit code ${r.status}`}`;
  }
  if (!warned) {
    warned = true;
    log?.(`cannot notify systemd at "${path}" (${why})`);
  }
}

/** A listening socket inherited from systemd (socket activation). */
export interface InheritedSocket {
  /** Its fd (3 and up). */
  fd: number;
  /** Its name from LISTEN_FDNAMES (FileDescriptorName=), if any. */
  name: string | undefined;
  /** Where it listens; undefined if it is not a listening stream socket. */
  address: Endpoint | undefined;
}

let inherited: InheritedSocket[] | undefined;

/**
 * The sockets systemd passed (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), read
 * once. Empty unless LISTEN_PID is this process (or, in a worker, its
 * supervisor passed them on).
 */
export function inheritedSockets(): InheritedSocket[] {
  if (inherited !== undefined) return inherited;
  inherited = [];
  const n = Number(process.env.LISTEN_FDS);
  const pid = process.env.LISTEN_PID;
  const mine = pid === String(process.pid) ||
    (pid !== undefined && pid === process.env.RELAYKIT_SUPERVISOR_PID);
  if (!mine || !Number.isInteger(n) || n <= 0) return inherited;
  const names = (process.env.LISTEN_FDNAMES ?? "").split(":");
  for (let i = 0; i < n; i++) {
    const fd = 3 + i;
    const name = names[i] === undefined || names[i] === "" ? undefined : names[i];
    inherited.push({ fd, name, address: socketAddress(fd) });
  }
  return inherited;
}

/** The socket among `sockets` a listener named `name` at `at` adopts, if one matches. */
export function matchSocket(
  sockets: readonly InheritedSocket[],
  name: string | undefined,
  at: Endpoint,
): InheritedSocket | undefined {
  const byName = name === undefined ? undefined : sockets.find((s) => s.name === name);
  if (byName !== undefined) return byName;
  return sockets.find((s) => s.address !== undefined && sameEndpoint(s.address, at));
}

/** The address of a listening socket: through the native library, else /proc. */
function socketAddress(fd: number): Endpoint | undefined {
  try {
    return listeningAddress(fd);
  } catch {
    return procAddress(fd);
  }
}

/** Linux without the library: the socket's inode, then /proc/net/{tcp,tcp6,unix}. */
function procAddress(fd: number): Endpoint | undefined {
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
    if (m === null) return undefined;
    const inode = m[1]!;
    for (const [file, v6] of [["tcp", false], ["tcp6", true]] as const) {
      for (const line of readFileSync(`/proc/net/${file}`, "utf8").split("\n").slice(1)) {
        const f = line.trim().split(/\s+/);
        // sl local rem st ... inode (10th field); st 0A is LISTEN
        if (f[9] !== inode || f[3] !== "0A") continue;
        const [hex, ph] = f[1]!.split(":");
        return { host: v6 ? ipv6(hex!) : ipv4(hex!), port: parseInt(ph!, 16) };
      }
    }
    for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[6] === inode && f[7] !== undefined) return { path: f[7] };
    }
  } catch { /* not Linux, or no /proc */ }
  return undefined;
}

function ipv4(hex: string): string {
  // little-endian 32-bit word
  const b = hex.match(/../g)!.map((x) => parseInt(x, 16)).reverse();
  return b.join(".");
}

function ipv6(hex: string): string {
  const words: string[] = [];
  for (let i = 0; i < 4; i++) {
    const w = hex.slice(i * 8, i * 8 + 8).match(/../g)!.reverse().join("");
    words.push(w.slice(0, 4), w.slice(4));
  }
  const text = words.map((w) => parseInt(w, 16).toString(16)).join(":");
  const mapped = /^0:0:0:0:0:ffff:([0-9a-f]+):([0-9a-f]+)$/.exec(text);
  if (mapped !== null) {
    const a = parseInt(mapped[1]!, 16), b = parseInt(mapped[2]!, 16);
    return `::ffff:${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
  }
  return text.replace(/(^|:)0(:0)+(:|$)/, "::").replace(/^:::?/, "::").replace(/:::$/, "::");
}
