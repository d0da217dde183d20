/**
 * The admin endpoint: the JSON API under `/api/v1/`, the stats page at `/`
 * and, when they share the listener, `/metrics`.
 *
 * Reading needs a bearer token unless `readOpen`; every action needs one and
 * is a POST (an action asked for with GET is 405, so a link or a prefetch
 * changes nothing). A wrong token is 401 and logged.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash, timingSafeEqual } from "node:crypto";
import type { Endpoint } from "../forward/types.ts";
import type { LogLevel } from "../config/run.ts";
import { type HttpRequest, type HttpResponse, type HttpServer, json, serveHttp } from "./http.ts";
import { type Actor, type AdminSource, NotFound } from "./types.ts";
import { BY_HEADER, PEER_HEADER } from "./fanout.ts";
import { SERVER_ADMIN_STATES, type ServerAdminState } from "../proxy/balance.ts";

/** A token and the name its actions are logged under. */
export interface AdminToken {
  name: string;
  token: string;
  /**
   * A supervisor's token for its workers: the request then says who asked
   * (the x-relaykit-by and x-relaykit-peer headers).
   */
  relayed?: boolean;
}

/** Options of {@linkcode startAdmin}. */
export interface AdminOptions {
  /** Where to listen. */
  listen: Endpoint;
  /** The tokens that may act (and read). */
  tokens: readonly AdminToken[];
  /** Reads without a token. @default false */
  readOpen?: boolean;
  /** Serve /metrics too (the metrics endpoint shares this listener). @default false */
  metrics?: boolean;
  log(level: LogLevel, line: string): void;
}

/** The most connections one page may list. */
export const PAGE_MAX = 1000;

/**
 * Read the tokens of an admin section: `{ value }` is one token named
 * "admin"; `{ file }` (relative to `base`) has one a line, `NAME:TOKEN` or
 * `TOKEN` (named "admin"); blank lines and `#` comments are skipped.
 *
 * @throws {Error} when the file cannot be read or holds no token.
 */
export function readTokens(
  token: { file: string } | { value: string } | undefined,
  base: string,
): AdminToken[] {
  if (token === undefined) return [];
  if ("value" in token) return [{ name: "admin", token: token.value }];
  let text: string;
  try {
    text = readFileSync(resolve(base, token.file), "utf8");
  } catch (err) {
    throw new Error(`admin: cannot read token_file "${token.file}": ${(err as Error).message}`);
  }
  const out: AdminToken[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const c = line.indexOf(":");
    out.push(
      c > 0 ? { name: line.slice(0, c), token: line.slice(c + 1) } : { name: "admin", token: line },
    );
  }
  if (out.length === 0) throw new Error(`admin: token_file "${token.file}" holds no token`);
  return out;
}

const PAGE_FILES: Record<string, [string, string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/vendor/uPlot.iife.min.js": ["vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"],
  "/vendor/uPlot.min.css": ["vendor/uPlot.min.css", "text/css; charset=utf-8"],
  "/vendor/uPlot.LICENSE": ["vendor/uPlot.LICENSE", "text/plain; charset=utf-8"],
};
const pageCache = new Map<string, Uint8Array>();

/** A file of the stats page, from the package (a file, or fetched when imported by URL). */
async function pageFile(name: string): Promise<Uint8Array> {
  let body = pageCache.get(name);
  if (body !== undefined) return body;
  const url = new URL(`./page/${name}`, import.meta.url).href;
  body = url.startsWith("file:")
    ? new Uint8Array(readFileSync(fileURLToPath(url)))
    : new Uint8Array(await (await fetch(url)).arrayBuffer());
  pageCache.set(name, body);
  return body;
}

function tokenOf(req: HttpRequest): string | undefined {
  const h = req.headers.get("authorization");
  const m = h === undefined ? null : /^Bearer\s+(\S+)$/i.exec(h);
  return m?.[1];
}

/** Whether two tokens are equal, in time that depends on neither (digests of the same length). */
function same(a: string, b: string): boolean {
  const digest = (t: string) => createHash("sha256").update(t).digest();
  return timingSafeEqual(digest(a), digest(b));
}

function int(text: string | null | undefined, dflt: number, min: number, max: number): number {
  if (text === null || text === undefined || text === "") return dflt;
  if (!/^\d{1,9}$/.test(text)) throw new RangeError(`expected an integer, not "${text}"`);
  return Math.min(max, Math.max(min, Number(text)));
}

/** The fields of an action: the JSON body's, else the query string's. */
function fields(req: HttpRequest): Record<string, unknown> {
  if (req.body.length > 0) {
    let v: unknown;
    try {
      v = JSON.parse(new TextDecoder().decode(req.body));
    } catch {
      throw new TypeError("the body is not JSON");
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new TypeError("the body must be a JSON object");
    }
    return v as Record<string, unknown>;
  }
  return Object.fromEntries(req.query);
}

/**
 * Answer one request of the admin endpoint.
 *
 * @param source What the API reads and acts on.
 * @param options Tokens and logging.
 * @param req The request.
 */
export async function handleAdmin(
  source: AdminSource,
  options: Omit<AdminOptions, "listen">,
  req: HttpRequest,
): Promise<HttpResponse> {
  const { method } = req;
  const file = PAGE_FILES[req.path];
  if (file !== undefined) {
    if (method !== "GET" && method !== "HEAD") return notAllowed("GET, HEAD");
    return {
      status: 200,
      headers: {
        "Content-Type": file[1],
        "Content-Security-Policy":
          "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY",
      },
      body: await pageFile(file[0]),
    };
  }
  if (req.path === "/metrics" && options.metrics === true && source.metrics !== undefined) {
    if (method !== "GET" && method !== "HEAD") return notAllowed("GET, HEAD");
    return {
      status: 200,
      headers: { "Content-Type": "text/plain; version=0.0.4" },
      body: await source.metrics(),
    };
  }
  if (!req.path.startsWith("/api/v1/")) return json(404, { error: `no such path "${req.path}"` });
  let parts: string[];
  try {
    parts = req.path.slice("/api/v1/".length).split("/").map(decodeURIComponent);
  } catch {
    return json(400, { error: "a malformed path" });
  }
  const route = matchRoute(parts);
  if (route === undefined) return json(404, { error: `no such route "${req.path}"` });
  const allowed = route.action ? "POST" : "GET, HEAD";
  if (!allowed.split(", ").includes(method)) return notAllowed(allowed);
  // who asks
  const given = tokenOf(req);
  const known = given === undefined ? undefined : options.tokens.find((t) => same(t.token, given));
  if (given !== undefined && known === undefined) {
    options.log("error", `admin: 401 for ${method} ${req.path} from ${req.peer}: wrong token`);
    return unauthorized("wrong token");
  }
  if (known === undefined && (route.action || options.readOpen !== true)) {
    options.log("info", `admin: 401 for ${method} ${req.path} from ${req.peer}: no token`);
    return unauthorized("this needs a token: Authorization: Bearer TOKEN");
  }
  const who: Actor = known?.relayed === true
    ? {
      by: safeDecode(req.headers.get(BY_HEADER) ?? "") || known.name,
      peer: safeDecode(req.headers.get(PEER_HEADER) ?? "") || req.peer,
    }
    : { by: known?.name ?? "", peer: req.peer };
  try {
    return json(200, await route.run(req, who, source));
  } catch (err) {
    if (err instanceof NotFound) return json(404, { error: err.message });
    if (err instanceof RangeError || err instanceof TypeError) {
      return json(400, { error: err.message });
    }
    throw err;
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return "";
  }
}

function notAllowed(allow: string): HttpResponse {
  return {
    ...json(405, { error: `use ${allow}` }),
    headers: { Allow: allow, "Content-Type": "application/json" },
  };
}

function unauthorized(why: string): HttpResponse {
  return {
    ...json(401, { error: why }),
    headers: { "WWW-Authenticate": 'Bearer realm="relaykit"', "Content-Type": "application/json" },
  };
}

interface Route {
  action: boolean;
  run(req: HttpRequest, who: Actor, source: AdminSource): Promise<unknown>;
}

function matchRoute(p: string[]): Route | undefined {
  const read = (run: Route["run"]): Route => ({ action: false, run });
  const act = (run: Route["run"]): Route => ({ action: true, run });
  const [a, b, c, d] = p;
  switch (p.length) {
    case 1:
      if (a === "process") return read((_r, _w, s) => s.process());
      if (a === "listeners") return read((_r, _w, s) => s.listeners());
      if (a === "backends") return read((_r, _w, s) => s.backends());
      if (a === "servers") {
        return read(async (_r, _w, s) => (await s.backends()).flatMap((b) => b.servers));
      }
      if (a === "stats") {
        return read(async (_r, _w, s) => {
          const [process, listeners, backends] = await Promise.all([
            s.process(),
            s.listeners(),
            s.backends(),
          ]);
          return { time: new Date().toISOString(), process, listeners, backends };
        });
      }
      if (a === "connections") {
        return read((req, _w, s) => {
          const q = req.query;
          const opt = (k: string) => {
            const v = q.get(k);
            return v === null || v === "" ? {} : { [k]: v };
          };
          return s.connections({
            ...opt("listener"),
            ...opt("server"),
            ...opt("client"),
            offset: int(q.get("offset"), 0, 0, 1e9),
            limit: int(q.get("limit"), 100, 0, PAGE_MAX),
          });
        });
      }
      if (a === "reload") return act((_r, who, s) => s.reload(who));
      return undefined;
    case 3:
      // connections/ID/close, listeners/NAME/enable|disable
      if (a === "connections" && c === "close" && /^\d{1,15}$/.test(b!)) {
        return act((req, who, s) => {
          const w = req.query.get("worker") ?? fields(req).worker;
          const worker = w === undefined || w === null ? undefined : int(String(w), 0, 0, 1e6);
          return s.closeConnection(Number(b), worker, who);
        });
      }
      if (a === "listeners" && (c === "enable" || c === "disable")) {
        return act((_r, who, s) => s.setListener(b!, c === "enable", who));
      }
      return undefined;
    case 4:
      // servers/BACKEND/SERVER/state|weight
      if (a === "servers" && d === "state") {
        return act((req, who, s) => {
          const state = fields(req).state;
          if (!SERVER_ADMIN_STATES.includes(state as ServerAdminState)) {
            throw new RangeError(`state must be one of ${SERVER_ADMIN_STATES.join(", ")}`);
          }
          return s.setServer(b!, c!, { state: state as ServerAdminState }, who);
        });
      }
      if (a === "servers" && d === "weight") {
        return act((req, who, s) => {
          const w = fields(req).weight;
          const weight = typeof w === "number"
            ? w
            : typeof w === "string" && /^\d+$/.test(w)
            ? Number(w)
            : NaN;
          if (!Number.isInteger(weight) || weight < 0 || weight > 256) {
            throw new RangeError("weight must be an integer 0-256");
          }
          return s.setServer(b!, c!, { weight }, who);
        });
      }
      return undefined;
  }
  return undefined;
}

/** Serve the admin endpoint of `source`. */
export function startAdmin(source: AdminSource, options: AdminOptions): Promise<HttpServer> {
  return serveHttp(options.listen, (req) => handleAdmin(source, options, req));
}
