/**
 * The stats page's requests, without a browser: what src/admin/page/app.js
 * asks of the admin API while its tab is visible. Once the page and its
 * script, then every second the stats and the first page of connections,
 * both at once, the next round only after both answered.
 *
 * @module
 */
import http from "node:http";

/** The admin token the bench gives the proxies it watches. */
export const PAGE_TOKEN = "bench-page-token";

/** What one page of the connection list asks for (app.js's PAGE). */
const PAGE = 50;

function get(port: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({
      host: "127.0.0.1",
      port,
      path,
      headers: { Authorization: `Bearer ${PAGE_TOKEN}` },
      timeout: 5000,
    }, (res) => {
      res.resume();
      res.on(
        "end",
        () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`${path}: HTTP ${res.statusCode}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error(`${path}: no answer in 5 s`)));
    req.on("error", reject);
  });
}

/**
 * Open the page on the admin endpoint at `port` and keep it open until
 * `stop()`, which tells how many refreshes ran and how many failed.
 */
export async function watchPage(
  port: number,
): Promise<{ stop(): { polls: number; failed: number } }> {
  await get(port, "/");
  await get(port, "/app.js");
  let polls = 0, failed = 0, busy = false;
  const refresh = async () => {
    if (busy) return;
    busy = true;
    try {
      await Promise.all([
        get(port, "/api/v1/stats"),
        get(port, `/api/v1/connections?offset=0&limit=${PAGE}`),
      ]);
      polls++;
    } catch {
      failed++;
    } finally {
      busy = false;
    }
  };
  void refresh();
  const timer = setInterval(refresh, 1000);
  return {
    stop() {
      clearInterval(timer);
      return { polls, failed };
    },
  };
}
