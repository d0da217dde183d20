/**
 * Test helpers: real sockets on 127.0.0.1, deterministic pseudo-random
 * streams, fd counting. Used under `deno test` and `bun test`.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import process from "node:process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { after, before } from "./_test.ts";
import { NativeEngine } from "../src/native/engine.ts";
import { TcpProxy, type TcpProxyOptions } from "../src/proxy/tcp_proxy.ts";
import type { ConnectionEnd, OriginalInfo } from "../src/types.ts";
import { runtime } from "../src/runtime/detect.ts";
export { freePort } from "../scripts/free_port.ts";

/**
 * The engines every engine-parameterised suite runs against: both where
 * the runtime has FFI (Deno, Bun), the stream engine alone on Node.
 */
export const ENGINES: readonly ("native" | "stream")[] = runtime.ffi
  ? ["native", "stream"]
  : ["stream"];

/**
 * Make every engine choice of the enclosing describe block ("auto", as
 * tunnels and proxies without an `engine` option make it) pick `engine`:
 * RELAYKIT_ENGINE is set before its tests and restored after.
 */
export function useEngine(engine: "native" | "stream"): void {
  let saved: string | undefined;
  before(() => {
    saved = process.env.RELAYKIT_ENGINE;
    process.env.RELAYKIT_ENGINE = engine;
  });
  after(() => {
    if (saved === undefined) delete process.env.RELAYKIT_ENGINE;
    else process.env.RELAYKIT_ENGINE = saved;
  });
}

/** The native engine shared by the tests. Fails (never skips) without the library. */
export function nativeEngine(): NativeEngine {
  try {
    return NativeEngine.shared();
  } catch (err) {
    throw new Error(
      `The native library did not load; native tests fail rather than skip (CI=${
        process.env.CI ?? "unset"
      })`,
      { cause: err },
    );
  }
}

/** Open fds of this process. */
export function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

/** Wait until `cond()` holds, polling; throw after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Resolve after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A seeded xorshift32 byte stream: the same seed gives the same bytes. */
export class Stream {
  #s: number;
  /** @param seed non-zero seed */
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  /** Next `n` bytes (four per step of the generator). */
  bytes(n: number): Uint8Array {
    const words = new Uint32Array(Math.ceil(n / 4));
    let s = this.#s;
    for (let i = 0; i < words.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      words[i] = s;
    }
    this.#s = s >>> 0 || 1;
    return new Uint8Array(words.buffer, 0, n);
  }
  /** A random integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    const b = this.bytes(4);
    const v = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    return lo + (v % (hi - lo + 1));
  }
}

/**
 * Write `total` pseudo-random bytes from `seed` in random-size chunks
 * (1 byte to 64 KiB), honouring backpressure; return their sha256.
 */
export async function sendRandom(
  sock: net.Socket,
  total: number,
  seed: number,
  end = true,
): Promise<string> {
  const data = new Stream(seed);
  const sizes = new Stream(seed ^ 0x5bd1e995);
  const hash = createHash("sha256");
  let sent = 0;
  while (sent < total) {
    const n = Math.min(total - sent, sizes.int(1, 65536));
    const chunk = data.bytes(n);
    hash.update(chunk);
    sent += n;
    if (!sock.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const ok = () => {
          sock.off("error", bad);
          resolve();
        };
        const bad = (e: Error) => {
          sock.off("drain", ok);
          reject(e);
        };
        sock.once("drain", ok).once("error", bad);
      });
    }
  }
  if (end) sock.end();
  return hash.digest("hex");
}

/** Read a socket to its end; resolve with the byte count and sha256. */
export function receiveAll(sock: net.Socket): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  return new Promise((resolve, reject) => {
    sock.on("data", (d: Uint8Array) => {
      hash.update(d);
      bytes += d.length;
    });
    sock.once("end", () => resolve({ bytes, sha256: hash.digest("hex") }));
    sock.once("error", reject);
  });
}

/** sha256 of `n` bytes of the stream `seed` (what sendRandom sends). */
export function expectedHash(n: number, seed: number): string {
  const data = new Stream(seed);
  const sizes = new Stream(seed ^ 0x5bd1e995);
  const hash = createHash("sha256");
  let done = 0;
  while (done < n) {
    const k = Math.min(n - done, sizes.int(1, 65536));
    hash.update(data.bytes(k));
    done += k;
  }
  return hash.digest("hex");
}

/** A node:net server on 127.0.0.1:0 with half-open sockets allowed. */
export async function server(
  onConn: (s: net.Socket) => void,
  port = 0,
): Promise<{ port: number; close(): Promise<void>; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(port, "127.0.0.1", r));
  const addr = srv.address() as net.AddressInfo;
  return {
    port: addr.port,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

/** An echo server. */
export function echoServer(): ReturnType<typeof server> {
  return server((s) => s.pipe(s));
}

/** Connect to 127.0.0.1:port with half-open allowed. */
export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** Resolve when the socket is fully closed. */
export function closed(s: net.Socket): Promise<void> {
  return new Promise((r) => {
    if (s.destroyed) r();
    else s.once("close", () => r());
  });
}

/** The bytes of `parts`, one after another. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * A python3 peer in its own process (so that it can be killed, or given its
 * own fd limit with `nofile`): the script prints its port on its first
 * line; every line it prints is collected in `lines`.
 */
export async function pythonPeer(
  script: string,
  args: string[] = [],
  nofile = 0,
): Promise<{ child: ChildProcess; port: number; lines: string[] }> {
  const argv = ["python3", "-u", "-c", script, ...args];
  const limit = nofile > 0 ? ["prlimit", `--nofile=${nofile}:${nofile}`] : [];
  const [cmd, ...rest] = [...limit, ...argv];
  const child = spawn(cmd!, rest, { stdio: "pipe" });
  const lines: string[] = [];
  let buf = "";
  let err = "";
  child.stderr!.on("data", (d: Uint8Array) => err += String(d));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on("data", (d: Uint8Array) => {
      buf += String(d);
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (lines.length === 1) resolve(Number(lines[0]));
      }
    });
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`python exited with ${code}: ${err}`)));
  });
  return { child, port, lines };
}

/**
 * Run a python3 server script that prints its port on its first line; for
 * peers that must not share this thread or need socket options node:net
 * does not offer.
 */
export async function pythonServer(script: string): Promise<{ port: number; stop(): void }> {
  const { child, port } = await pythonPeer(script);
  return { port, stop: () => child.kill() };
}

/**
 * An echo server in a python3 child process, for tests that block this
 * thread in native reads (a server on this thread could not answer then).
 * It passes EOF on: a half-close comes back as a half-close.
 */
export function processEcho(): Promise<{ port: number; stop(): void }> {
  return pythonServer(
    "import socket,socketserver\n" +
      "class H(socketserver.BaseRequestHandler):\n" +
      "  def handle(self):\n" +
      "    while True:\n" +
      "      d=self.request.recv(65536)\n" +
      "      if not d: break\n" +
      "      self.request.sendall(d)\n" +
      "    self.request.shutdown(socket.SHUT_WR)\n" +
      "socketserver.ThreadingTCPServer.daemon_threads=True\n" +
      "s=socketserver.ThreadingTCPServer(('127.0.0.1',0),H)\n" +
      "print(s.server_address[1],flush=True)\n" +
      "s.serve_forever()",
  );
}

/** The command line that runs a script on this same runtime. */
export function runtimeCommand(script: string, args: string[] = []): string[] {
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";
  return isDeno
    ? [process.execPath, "run", "-A", script, ...args]
    : [process.execPath, script, ...args];
}

/** The relaykit command's source. */
export const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url).href);

/**
 * Start the relaykit command on this runtime; resolve with its first
 * stdout line (and the child). `prefix` runs it through another command
 * (e.g. prlimit).
 */
export function startCli(
  args: string[],
  env: Record<string, string> = {},
  prefix: string[] = [],
): { child: ChildProcess; line: Promise<string>; output: { out: string; err: string } } {
  const [cmd, ...rest] = [...prefix, ...runtimeCommand(CLI, args)];
  const child = spawn(cmd!, rest, { env: { ...process.env, ...env }, stdio: "pipe" });
  const output = { out: "", err: "" };
  const line = new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (d: Uint8Array) => {
      output.out += String(d);
      const out = output.out;
      const nl = out.indexOf("\n");
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.stderr!.on("data", (d: Uint8Array) => output.err += String(d));
    child.once("exit", (code) => reject(new Error(`exited with ${code}: ${output.err}`)));
  });
  return { child, line, output };
}

/** SIGTERM the child; resolve with its exit code (or the signal's name). */
export function stopChild(child: ChildProcess): Promise<number | string | null> {
  return new Promise((resolve) => {
    // "close", not "exit": only then has all of its output been read
    child.once("close", (code, signal) => resolve(code ?? signal));
    child.kill("SIGTERM");
  });
}

/**
 * A listener that never accepts, with its queue already full: a connect to
 * it hangs until the connector gives up. Runs in python3 so that it needs
 * neither engine.
 */
export function blackHole(): Promise<{ port: number; stop(): void }> {
  return pythonServer(
    "import socket,sys,time\n" +
      "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(0)\n" +
      "p=s.getsockname()[1]\n" +
      "fill=[socket.socket() for _ in range(3)]\n" +
      "[f.setblocking(False) or f.connect_ex(('127.0.0.1',p)) for f in fill]\n" +
      "time.sleep(0.2)\n" +
      "print(p, flush=True); time.sleep(60)",
  );
}

/** `p`, or a rejection naming `what` (asked for then, if a function) after `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const text = typeof what === "function" ? what() : what;
      reject(new Error(`Timed out after ${ms} ms: ${text}`));
    }, ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * `n` runs of `one` at once, all their results; or, after `ms`, a
 * rejection saying how many of the `n` `what` (e.g. "clients had the
 * answer") by then.
 */
export function allWithin<T>(
  n: number,
  ms: number,
  what: string,
  one: (i: number) => Promise<T>,
): Promise<T[]> {
  let done = 0;
  const all = Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const r = await one(i);
      done++;
      return r;
    }),
  );
  return within(all, ms, () => `${done} of ${n} ${what}`);
}

/**
 * Run curl (10 s at most): its exit code, body and error text. Without the
 * sanitizer library the native suites preload (curl hangs with it).
 */
export function curl(args: string[]): Promise<{ code: number; body: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, LD_PRELOAD: "" };
    execFile("curl", ["-sS", "--max-time", "10", ...args], { env }, (err, stdout, stderr) => {
      const code = err === null ? 0 : Number((err as { code?: number }).code ?? -1);
      resolve({ code, body: stdout, stderr });
    });
  });
}

/**
 * Write a test CA (ca.pem, ca.key) and a leaf certificate it signs for
 * localhost and 127.0.0.1 (cert.pem, key.pem) into `dir`, with openssl.
 * A CA and a leaf: rustls, Deno's TLS, refuses a self-signed CA
 * certificate as a server's.
 */
export function writeTestCertificates(dir: string): void {
  const ssl = (args: string[]) => {
    const r = spawnSync("openssl", args, { encoding: "utf8", cwd: dir });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  writeFileSync(
    join(dir, "leaf.ext"),
    "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
  );
  ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"]
    .concat(["-days", "2", "-subj", "/CN=relaykit test CA"]));
  ssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "leaf.csr"]
    .concat(["-subj", "/CN=localhost"]));
  ssl(["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
    .concat(["-out", "cert.pem", "-days", "2", "-extfile", "leaf.ext"]));
}

/**
 * A proxy on 127.0.0.1 (any port) on `engine` (the native one must load),
 * with what it reports collected: every connection's end, every error and,
 * with `original`, every original-address event.
 */
export async function watchedProxy(
  engine: "native" | "stream",
  options: Omit<TcpProxyOptions, "listen"> & { listen?: TcpProxyOptions["listen"] },
  watch: { original?: boolean } = {},
): Promise<{
  proxy: TcpProxy;
  ends: ConnectionEnd[];
  errors: (Error & { code?: string })[];
  originals: OriginalInfo[];
}> {
  if (engine === "native") nativeEngine(); // fail loudly if it cannot load
  const proxy = await TcpProxy.listen({
    listen: { host: "127.0.0.1", port: 0 },
    engine,
    ...options,
  } as TcpProxyOptions);
  assert.equal(proxy.engine, engine);
  const ends: ConnectionEnd[] = [];
  const errors: (Error & { code?: string })[] = [];
  const originals: OriginalInfo[] = [];
  proxy.on("close", (e) => ends.push(e)).on("error", (e) => errors.push(e));
  if (watch.original) proxy.on("original", (o) => originals.push(o));
  return { proxy, ends, errors, originals };
}
