/**
 * Listeners that survive running out of file descriptors on Deno and Bun.
 *
 * When accept(2) fails with EMFILE/ENFILE, Deno's node:net server stops
 * accepting for good (no error event), and Bun's accept loops (Bun.listen
 * and node:net) retry at once, spinning a core until fds free up. Neither
 * can pause accepting. So the adapters register their TCP listeners here:
 * while the process is out of fds, each listener's socket is closed (new
 * clients are refused instead of spinning the CPU or hanging), and once
 * fds are free again it is opened again on the same address.
 *
 * Out of fds means: a cheap check, run every FD_CHECK_MS, cannot open
 * /dev/null or gets an fd within FD_HEADROOM of the soft limit; or a
 * socket operation reported EMFILE/ENFILE (signal()).
 *
 * @module
 */
import { closeSync, openSync, readFileSync } from "node:fs";
import { normalizeCode } from "../errors.ts";

/** Free fds below the soft limit that still count as out of fds. */
const FD_HEADROOM = 4;
/** How often a watched process checks whether it can open an fd. */
const FD_CHECK_MS = 100;

/** The soft RLIMIT_NOFILE of this process (Infinity when unknown). */
function softFdLimit(): number {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

/** One watched listener. */
export interface Watched {
  /** Close the listening socket (established connections stay). */
  pause(): void;
  /** Listen again on the same address. */
  resume(): Promise<void>;
  /** Told once per pause, with the code that caused it. */
  paused?: ((code: string) => void) | undefined;
}

interface Entry {
  w: Watched;
  state: "open" | "paused" | "resuming" | "gone";
}

/** See the module documentation. */
export class FdWatch {
  #limit = softFdLimit();
  #out = false;
  #entries = new Set<Entry>();
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Watch a listener; the function returned stops watching it. */
  add(w: Watched): () => void {
    const entry: Entry = { w, state: "open" };
    this.#entries.add(entry);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#check(), FD_CHECK_MS);
      (this.#timer as { unref?: () => void }).unref?.();
    }
    return () => {
      entry.state = "gone";
      this.#entries.delete(entry);
      if (this.#entries.size === 0 && this.#timer !== undefined) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  /** A socket operation failed with `code`: EMFILE/ENFILE mean out of fds. */
  signal(code: string | undefined): void {
    const c = normalizeCode(code);
    if (c === "EMFILE" || c === "ENFILE") this.#exhausted(c);
  }

  /** While a listener is closed, the check keeps the process alive. */
  #hold(on: boolean): void {
    const t = this.#timer as { ref?: () => void; unref?: () => void } | undefined;
    if (on) t?.ref?.();
    else t?.unref?.();
  }

  #exhausted(code: string): void {
    this.#out = true;
    this.#hold(true);
    for (const e of this.#entries) {
      if (e.state !== "open") continue;
      e.state = "paused";
      e.w.pause();
      e.w.paused?.(code);
    }
  }

  #check(): void {
    let fd = -1;
    try {
      fd = openSync("/dev/null", "r");
    } catch (err) {
      this.signal((err as { code?: string }).code);
      return;
    }
    closeSync(fd);
    if (fd >= this.#limit - FD_HEADROOM) return this.#exhausted("EMFILE");
    if (!this.#out) return;
    this.#out = false;
    for (const e of this.#entries) {
      if (e.state !== "paused") continue;
      e.state = "resuming";
      e.w.resume().then(() => {
        if (e.state === "gone") e.w.pause();
        else e.state = "open";
        if ([...this.#entries].every((x) => x.state === "open")) this.#hold(false);
      }, (err) => {
        // not yet (no fd for the socket, or the port is busy): next check
        if (e.state === "gone") return;
        e.state = "paused";
        this.#out = true;
        this.signal((err as { code?: string }).code);
      });
    }
  }
}
