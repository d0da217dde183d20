/**
 * The metrics endpoint: Prometheus text at http://HOST:PORT/metrics, on the
 * runtime's own sockets (so Deno, Bun and Node answer alike), for one
 * process (its Runner) and for a supervisor (the sum of its workers).
 *
 * One request per connection, answered and closed: GET or HEAD /metrics (a
 * query string is ignored) is 200; another method 405; another path 404; a
 * head that is malformed, larger than {@linkcode METRICS_HEAD_MAX} or cut
 * short 400; one not complete within the timeout 408. Past
 * {@linkcode METRICS_CONNECTIONS} open at once, a new one is closed
 * unanswered.
 *
 * @module
 */
import { concatBytes, EMPTY } from "../bytes.ts";
import { runtime } from "../runtime/detect.ts";
import type { NetConn } from "../runtime/types.ts";

/** The most bytes a request head to the metrics endpoint may take. */
export const METRICS_HEAD_MAX = 8 * 1024;
/** How long a metrics request may take to arrive, in ms, by default. */
export const METRICS_TIMEOUT = 10_000;
/**
 * The most metrics connections open at once; one more is closed at once.
 * Without a bound, clients that open connections and send nothing would
 * each hold a descriptor for two timeouts, until the process has none left
 * for the proxy's own listeners.
 */
export const METRICS_CONNECTIONS = 64;

/** A metrics endpoint that is listening. */
export interface MetricsServer {
  /** "host:port" it listens on (the port filled in). */
  readonly address: string;
  /** Stop listening and close every open request. */
  close(): void;
}

/**
 * Serve `text()` at http://`at`/metrics.
 *
 * @param at Where to listen.
 * @param text The metrics, read at each request.
 * @param log Where the "metrics on ..." line goes.
 * @param timeoutMs How long a request may take to arrive.
 * @returns The server, once it listens.
 * @throws a RelaykitError naming the address when it cannot listen.
 */
export async function serveMetrics(
  at: { host: string; port: number },
  text: () => string | Promise<string>,
  log: (level: "info", line: string) => void,
  timeoutMs: number = METRICS_TIMEOUT,
): Promise<MetricsServer> {
  const open = new Set<NetConn>();
  const listener = await runtime.net.listen(
    at,
    { backlog: 128, reusePort: false },
    (conn) => request(conn, open, text, timeoutMs),
  );
  const bound = listener.address;
  const address = `${at.host}:${"port" in bound ? bound.port : at.port}`;
  log("info", `metrics on http://${address}/metrics`);
  return {
    address,
    close() {
      listener.close();
      for (const c of open) c.destroy(false);
    },
  };
}

function request(
  conn: NetConn,
  open: Set<NetConn>,
  text: () => string | Promise<string>,
  timeoutMs: number,
): void {
  if (open.size >= METRICS_CONNECTIONS) {
    conn.destroy(false);
    return;
  }
  open.add(conn);
  let head = EMPTY;
  let answered = false;
  const answer = (status: string, body: string, extra = "", withBody = true) => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    const b = new TextEncoder().encode(body);
    conn.write(
      new TextEncoder().encode(
        `HTTP/1.1 ${status}\r\nContent-Type: text/plain; version=0.0.4\r\n` +
          `Content-Length: ${b.length}\r\n${extra}Connection: close\r\n\r\n`,
      ),
    );
    if (withBody) conn.write(b);
    conn.end();
    // a peer that never closes its side is cut after one more timeout
    timer = setTimeout(() => conn.destroy(false), timeoutMs);
  };
  let timer = setTimeout(
    () => answer("408 Request Timeout", "the request was not complete in time\n"),
    timeoutMs,
  );
  let asked = false;
  conn.start({
    data: (chunk) => {
      if (answered || asked) return;
      head = concatBytes([head, chunk]);
      const t = new TextDecoder("latin1").decode(head);
      const end = t.indexOf("\r\n\r\n");
      if (end < 0 ? head.length > METRICS_HEAD_MAX : end + 4 > METRICS_HEAD_MAX) {
        return answer("400 Bad Request", `the request head is over ${METRICS_HEAD_MAX} bytes\n`);
      }
      if (end < 0) return;
      const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\/\S*) HTTP\/1\.[01]$/.exec(
        t.slice(0, t.indexOf("\r\n")),
      );
      if (m === null) return answer("400 Bad Request", "not an HTTP/1.x request line\n");
      if (m[2]!.split("?")[0] !== "/metrics") return answer("404 Not Found", "try /metrics\n");
      if (m[1] !== "GET" && m[1] !== "HEAD") {
        return answer("405 Method Not Allowed", "use GET\n", "Allow: GET, HEAD\r\n");
      }
      asked = true;
      Promise.resolve().then(text).then(
        (body) => answer("200 OK", body, "", m[1] === "GET"),
        (err: unknown) =>
          answer("500 Internal Server Error", `${err instanceof Error ? err.message : err}\n`),
      );
    },
    end: () => {
      if (!asked) answer("400 Bad Request", "the request ended before its head did\n");
    },
    drain: () => {},
    close: () => {
      answered = true;
      clearTimeout(timer);
      open.delete(conn);
    },
  });
}
