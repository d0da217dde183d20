/**
 * A small HTTP/1.1 server and client on the runtime's own sockets, for the
 * admin endpoint and `relaykit ctl`: one request per connection
 * (`Connection: close`), a bounded head and body, a deadline per request.
 * Nothing a peer sends can do more than get that one connection answered
 * 4xx and closed.
 *
 * @module
 */
import { concatBytes, EMPTY } from "../bytes.ts";
import { RelaykitError } from "../errors.ts";
import type { Endpoint } from "../forward/types.ts";
import { runtime } from "../runtime/detect.ts";
import type { NetConn, NetListener } from "../runtime/types.ts";

/** The most bytes a request head may take. */
export const HEAD_MAX = 8 * 1024;
/** The most requests served at once; more connections are closed at once. */
export const MAX_CONNS = 256;
/** The most bytes a request body may take. */
export const BODY_MAX = 64 * 1024;

/** A request, read in full. */
export interface HttpRequest {
  method: string;
  /** The path without the query string, as sent (percent-encoded). */
  path: string;
  query: URLSearchParams;
  /** Header names in lower case. */
  headers: Map<string, string>;
  body: Uint8Array;
  /** The peer ("host:port"), or "unix" for a Unix socket. */
  peer: string;
}

/** An answer. */
export interface HttpResponse {
  status: number;
  headers?: Record<string, string>;
  body: string | Uint8Array;
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
};

/** A JSON answer. */
export function json(status: number, value: unknown): HttpResponse {
  return {
    status,
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(value) + "\n",
  };
}

function encode(r: HttpResponse, withBody: boolean): Uint8Array {
  const body = typeof r.body === "string" ? new TextEncoder().encode(r.body) : r.body;
  const headers = { "Content-Type": "text/plain; charset=utf-8", ...r.headers };
  let head = `HTTP/1.1 ${r.status} ${REASONS[r.status] ?? "Status"}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  head += `Content-Length: ${body.length}\r\nCache-Control: no-store\r\n` +
    `X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n`;
  return concatBytes([new TextEncoder().encode(head), withBody ? body : EMPTY]);
}

/** Options of {@linkcode serveHttp}. */
export interface HttpServerOptions {
  /** ms a request may take to arrive; then 408. @default 10000 */
  timeout?: number;
  /** Let other sockets bind the port (workers share nothing here). @default false */
  reusePort?: boolean;
}

/** A running HTTP server. */
export interface HttpServer {
  /** The bound address. */
  readonly address: Endpoint;
  /** Stop accepting and cut open requests. */
  close(): void;
}

/**
 * Serve `handler` on `at`. A handler that throws is answered 500; a
 * malformed, oversized or slow request 400, 413 or 408.
 */
export async function serveHttp(
  at: Endpoint,
  handler: (req: HttpRequest) => HttpResponse | Promise<HttpResponse>,
  options: HttpServerOptions = {},
): Promise<HttpServer> {
  const timeout = options.timeout ?? 10_000;
  const conns = new Set<NetConn>();
  const listener: NetListener = await runtime.net.listen(
    at,
    { backlog: 128, reusePort: options.reusePort ?? false },
    (conn) => {
      // a bound on what idle or slow peers can hold open
      if (conns.size >= MAX_CONNS) return conn.destroy(false);
      conns.add(conn);
      serveOne(conn, handler, timeout, () => conns.delete(conn));
    },
  );
  return {
    address: listener.address,
    close() {
      listener.close();
      for (const c of conns) c.destroy(false);
    },
  };
}

function serveOne(
  conn: NetConn,
  handler: (req: HttpRequest) => HttpResponse | Promise<HttpResponse>,
  timeout: number,
  gone: () => void,
): void {
  let buf = EMPTY;
  let answered = false;
  let closed = false;
  let timer: ReturnType<typeof setTimeout>;
  const answer = (r: HttpResponse, withBody = true) => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    conn.write(encode(r, withBody));
    conn.end();
    // a peer that never closes its side is cut after one more timeout
    timer = setTimeout(() => conn.destroy(false), timeout);
  };
  const fail = (status: number, text: string) => answer({ status, body: text + "\n" });
  timer = setTimeout(() => fail(408, "the request was not complete in time"), timeout);
  let head: { req: HttpRequest; bodyAt: number; length: number } | undefined;
  const peer = conn.remote === undefined ? "unix" : `${conn.remote.host}:${conn.remote.port}`;
  const dispatch = (req: HttpRequest) => {
    answered = true; // no 408 while the handler runs
    clearTimeout(timer);
    Promise.resolve()
      .then(() => handler(req))
      .catch((err: unknown) => ({
        status: 500,
        body: `${err instanceof Error ? err.message : String(err)}\n`,
      }))
      .then((r) => {
        if (closed) return; // the peer went away meanwhile
        answered = false;
        answer(r, req.method !== "HEAD");
      });
  };
  conn.start({
    data: (chunk) => {
      if (answered) return;
      buf = concatBytes([buf, chunk]);
      if (head === undefined) {
        const text = new TextDecoder("latin1").decode(buf.subarray(0, HEAD_MAX + 4));
        const end = text.indexOf("\r\n\r\n");
        if (end < 0) {
          if (buf.length > HEAD_MAX) fail(400, `the request head is over ${HEAD_MAX} bytes`);
          return;
        }
        const lines = text.slice(0, end).split("\r\n");
        const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\/\S*) HTTP\/1\.[01]$/.exec(lines[0]!);
        if (m === null) return fail(400, "not an HTTP/1.x request line");
        const headers = new Map<string, string>();
        for (const line of lines.slice(1)) {
          const c = line.indexOf(":");
          if (c <= 0) return fail(400, "a malformed header line");
          headers.set(line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim());
        }
        if (headers.has("transfer-encoding")) {
          return fail(501, "chunked bodies are not taken: send Content-Length");
        }
        const cl = headers.get("content-length") ?? "0";
        if (!/^\d{1,9}$/.test(cl)) return fail(400, "a malformed Content-Length");
        const length = Number(cl);
        if (length > BODY_MAX) return fail(413, `the body is over ${BODY_MAX} bytes`);
        const target = m[2]!;
        const q = target.indexOf("?");
        const path = q < 0 ? target : target.slice(0, q);
        head = {
          req: {
            method: m[1]!,
            path,
            query: new URLSearchParams(q < 0 ? "" : target.slice(q + 1)),
            headers,
            body: EMPTY,
            peer,
          },
          bodyAt: end + 4,
          length,
        };
      }
      if (buf.length - head.bodyAt >= head.length) {
        head.req.body = buf.slice(head.bodyAt, head.bodyAt + head.length);
        dispatch(head.req);
      }
    },
    end: () => fail(400, "the request ended before it was complete"),
    drain: () => {},
    close: () => {
      answered = closed = true;
      clearTimeout(timer);
      gone();
    },
  });
}

/** An answer read by {@linkcode httpRequest}. */
export interface HttpAnswer {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** The most bytes of an answer {@linkcode httpRequest} reads. */
export const ANSWER_MAX = 64 * 1024 * 1024;

/**
 * One request to `to` (TCP or a Unix socket), read to the end.
 *
 * @throws {RelaykitError} when it cannot connect, or the answer is not HTTP,
 * too large, or not complete within `timeout` ms.
 */
export async function httpRequest(
  to: Endpoint,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: string; timeout?: number } = {},
): Promise<HttpAnswer> {
  const timeout = options.timeout ?? 10_000;
  const conn = await runtime.net.connect(to, { timeout, family: "any", bindAddress: undefined });
  const body = new TextEncoder().encode(options.body ?? "");
  const host = "host" in to
    ? `${to.host.includes(":") ? `[${to.host}]` : to.host}:${to.port}`
    : "localhost";
  let head = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n`;
  for (const [k, v] of Object.entries(options.headers ?? {})) head += `${k}: ${v}\r\n`;
  if (body.length > 0 || method === "POST") head += `Content-Length: ${body.length}\r\n`;
  return await new Promise<HttpAnswer>((resolve, reject) => {
    const parts: Uint8Array[] = [];
    let size = 0;
    let settled = false;
    const settle = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy(false);
      if (err !== undefined) return reject(err);
      const all = concatBytes(parts);
      const text = new TextDecoder().decode(all);
      const end = text.indexOf("\r\n\r\n");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (end < 0 || m === null) {
        return reject(new RelaykitError(`Not an HTTP answer from ${fmt(to)}`, "EPROTO"));
      }
      const headers = new Map<string, string>();
      for (const line of text.slice(0, end).split("\r\n").slice(1)) {
        const c = line.indexOf(":");
        if (c > 0) headers.set(line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim());
      }
      resolve({ status: Number(m[1]), headers, body: text.slice(end + 4) });
    };
    const timer = setTimeout(
      () => settle(new RelaykitError(`No answer from ${fmt(to)} in ${timeout} ms`, "ETIMEDOUT")),
      timeout,
    );
    conn.start({
      data: (chunk) => {
        size += chunk.length;
        if (size > ANSWER_MAX) {
          return settle(new RelaykitError(`The answer from ${fmt(to)} is too large`, "EMSGSIZE"));
        }
        parts.push(chunk.slice());
      },
      end: () => settle(undefined),
      drain: () => {},
      close: () => settle(undefined),
    });
    conn.write(concatBytes([new TextEncoder().encode(head + "\r\n"), body]));
  });
}

function fmt(e: Endpoint): string {
  return "path" in e ? e.path : `${e.host}:${e.port}`;
}
