/**
 * A headless Chromium for the browser tests: Debian's `chromium` (or
 * RELAYKIT_CHROMIUM), started here with a fresh profile and driven by
 * playwright-core over the DevTools protocol (a WebSocket: pipes on fds 3
 * and 4 are not writable from Deno). playwright-core is a devDependency;
 * RELAYKIT_PLAYWRIGHT_CORE may name another copy. Neither missing is a
 * skip: the test fails and says what to install.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

/** The few playwright-core types the tests use. */
export interface Page {
  goto(url: string): Promise<unknown>;
  fill(selector: string, value: string): Promise<void>;
  click(selector: string): Promise<void>;
  textContent(selector: string): Promise<string | null>;
  waitForSelector(selector: string, o?: { timeout?: number }): Promise<unknown>;
  /** `fn` runs in the page (a function, not a string: the page's CSP forbids eval). */
  waitForFunction<A>(fn: (arg: A) => unknown, arg: A, o?: { timeout?: number }): Promise<unknown>;
  evaluate<T, A>(fn: (arg: A) => T, arg: A): Promise<T>;
  screenshot(o: { path: string; fullPage?: boolean }): Promise<unknown>;
  setViewportSize(s: { width: number; height: number }): Promise<void>;
  on(event: "console", fn: (m: { type(): string; text(): string }) => void): void;
  on(event: "pageerror", fn: (e: Error) => void): void;
  on(event: "dialog", fn: (d: { accept(text?: string): Promise<void> }) => void): void;
  close(): Promise<void>;
}

interface Context {
  newPage(): Promise<Page>;
  addInitScript(script: string): Promise<void>;
  close(): Promise<void>;
}

interface Browser {
  newContext(): Promise<Context>;
  close(): Promise<void>;
}

/** A running Chromium. */
export interface Chromium {
  browser: Browser;
  /** A new context (its own storage) with one page; `init` runs before any page script. */
  page(init?: string): Promise<Page>;
  close(): Promise<void>;
}

/** Start Chromium and connect to it. */
export async function launchChromium(): Promise<Chromium> {
  const pwPath = process.env.RELAYKIT_PLAYWRIGHT_CORE ?? "playwright-core";
  let pw: { chromium: { connectOverCDP(ws: string): Promise<Browser> } };
  try {
    pw = createRequire(import.meta.url)(pwPath);
  } catch (err) {
    throw new Error(`playwright-core is needed for the browser tests: npm install (${err})`);
  }
  const exe = process.env.RELAYKIT_CHROMIUM ?? "chromium";
  const profile = mkdtempSync(join(tmpdir(), "relaykit-chromium-"));
  const child: ChildProcess = spawn(exe, [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    `--user-data-dir=${profile}`,
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "about:blank",
  ], { stdio: ["ignore", "ignore", "pipe"], detached: true }); // its own group: all its processes
  const ws = await new Promise<string>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => reject(new Error(`${exe} did not start: ${err}`)), 30_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${exe} (apt-get install chromium): ${e.message}`));
    });
    child.stderr!.on("data", (d: Uint8Array) => {
      err += String(d);
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${exe} exited with ${code}: ${err}`));
    });
  });
  const browser = await pw.chromium.connectOverCDP(ws);
  const contexts: Context[] = [];
  return {
    browser,
    async page(init) {
      const ctx = await browser.newContext();
      contexts.push(ctx);
      if (init !== undefined) await ctx.addInitScript(init);
      return await ctx.newPage();
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close().catch(() => {});
      const gone = new Promise((r) => child.once("exit", r));
      // the whole group: the browser's helpers (renderer, zygote, crashpad)
      // write into the profile until they are gone too
      const group = (sig: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, sig);
        } catch { /* already gone */ }
      };
      group("SIGTERM");
      const t = setTimeout(() => group("SIGKILL"), 3000);
      await gone;
      clearTimeout(t);
      group("SIGKILL");
      for (let i = 0;; i++) {
        try {
          rmSync(profile, { recursive: true, force: true });
          break;
        } catch (err) {
          if (i >= 50) throw err; // 5 s: something still writes there
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}
