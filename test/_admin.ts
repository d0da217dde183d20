// deno-lint-ignore-file no-explicit-any -- JSON answers of the API under test
/**
 * Helpers of the admin tests: greeting servers, a `relaykit run` with an
 * admin endpoint, and calls to its API.
 */
import { writeFileSync } from "node:fs";
import type net from "node:net";
import { join } from "node:path";
import { connect, freePort, server, startCli, waitFor } from "./_helpers.ts";

export const TOKEN = "t0ken-for-tests";

/** A server that greets with its name, then echoes. */
export function greeter(name: string): ReturnType<typeof server> {
  return server((s: net.Socket) => {
    s.write(`${name}\n`);
    s.on("data", (d: Uint8Array) => s.write(d));
    s.on("end", () => s.end());
  });
}

export async function greeting(port: number): Promise<{ name: string; s: net.Socket }> {
  const s = await connect(port);
  s.on("error", () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const name = await new Promise<string>((r, j) => {
      s.once("data", (d) => r(String(d).trim()));
      s.once("close", () => j(new Error("closed before a greeting")));
      timer = setTimeout(() => {
        s.destroy();
        j(new Error(`no greeting through port ${port} in ${IO_MS} ms`));
      }, IO_MS);
    });
    return { name, s };
  } finally {
    clearTimeout(timer);
  }
}

/** How long a greeting or an echo may take before the test says which hung. */
const IO_MS = 10_000;

/** Send `text` and read it echoed back (its first chunk). */
export async function echo(s: net.Socket, text: string): Promise<string> {
  s.write(text);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await new Promise<string>((r, j) => {
      s.once("data", (d) => r(String(d)));
      timer = setTimeout(
        () => j(new Error(`no echo of ${text.length} bytes in ${IO_MS} ms`)),
        IO_MS,
      );
    });
  } finally {
    clearTimeout(timer);
  }
}

export interface Run {
  cli: ReturnType<typeof startCli>;
  port: number;
  adminPort: number;
  file: string;
  accessLog: string;
  get(path: string, token?: string | null): Promise<{ status: number; body: any }>;
  post(path: string, body?: unknown, token?: string | null): Promise<{ status: number; body: any }>;
}

async function call(
  adminPort: number,
  method: string,
  path: string,
  body: unknown,
  token: string | null | undefined,
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.Authorization = `Bearer ${token ?? TOKEN}`;
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const r = await fetch(`http://127.0.0.1:${adminPort}${path}`, init);
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: r.status, body: parsed };
}

export async function startRun(
  dir: string,
  name: string,
  config: (port: number, adminPort: number) => string,
  args: string[] = [],
  o: { accessLog?: boolean } = {},
): Promise<Run> {
  // two ports that are free now, and not the same one twice
  const port = await freePort();
  let adminPort = await freePort();
  while (adminPort === port) adminPort = await freePort();
  const file = join(dir, `${name}.yaml`);
  const accessLog = join(dir, `${name}.access.log`);
  writeFileSync(file, config(port, adminPort));
  writeFileSync(accessLog, "");
  // without an access log the listeners report nothing per connection:
  // the counters come from the engines
  const cli = startCli([
    "run",
    file,
    ...(o.accessLog === false ? [] : ["--access-log", accessLog]),
    ...args,
  ]);
  // a run that ends at once (a mistake) fails here, with its message
  let exited: string | undefined;
  cli.line.catch((err: Error) => exited = err.message);
  // "running" comes once the listeners and the admin endpoint are up (a
  // supervisor says "workers ready")
  await waitFor(
    () => exited !== undefined || /: running |workers? ready/.test(cli.output.out + cli.output.err),
    15_000,
    "the run to be up",
  );
  if (exited !== undefined) throw new Error(`relaykit run ${exited}`);
  return {
    cli,
    port,
    adminPort,
    file,
    accessLog,
    get: (path, token) => call(adminPort, "GET", path, undefined, token),
    post: (path, body, token) => call(adminPort, "POST", path, body, token),
  };
}
