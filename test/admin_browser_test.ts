/**
 * The stats page in a real browser (headless Chromium, see _browser.ts):
 * it loads with no console errors, shows the listeners and servers of a
 * running config, its counters move while traffic flows, drain on a server
 * stops new connections to it while an open one finishes, the close button
 * ends a connection, and a wrong token is refused. A screenshot of the page
 * under load is kept in test/artifacts/.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "./_test.ts";
import { ENGINES, sleep, stopChild, waitFor } from "./_helpers.ts";
import { echo, greeter, greeting, startRun, TOKEN } from "./_admin.ts";
import { launchChromium } from "./_browser.ts";

/** The page's document, as the functions that run in the page see it. */
interface El {
  textContent: string | null;
  dispatchEvent(e: Event): boolean;
}
declare const document: {
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El> & Iterable<El>;
  getElementById(id: string): El | null;
};

const dir = mkdtempSync(join(tmpdir(), "relaykit-admintest-browser-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const ARTIFACTS = fileURLToPath(new URL("./artifacts/", import.meta.url).href);

for (const engine of ENGINES) {
  describe(`the stats page (${engine} engine)`, () => {
    test(
      "live tables and charts; drain and close from the page; a wrong token is refused",
      { timeout: 120_000 },
      async () => {
        const [a, b] = [await greeter("a"), await greeter("b")];
        const run = await startRun(dir, `page-${engine}`, (port, adminPort) =>
          `listeners:
  - { name: web, address: 127.0.0.1, port: ${port}, backend: app, max_connections: 1000 }
backends:
  - name: app
    balance: roundrobin
    servers:
      - { host: 127.0.0.1, port: ${a.port}, name: a }
      - { host: 127.0.0.1, port: ${b.port}, name: b }
    health_check: { interval: 500, timeout: 500 }
admin: { port: ${adminPort}, token: ${TOKEN} }
`, ["--engine", engine]);
        const chromium = await launchChromium();
        const sockets: net.Socket[] = [];
        let loading = true;
        // traffic: short connections, and a few long ones that keep sending
        const load = (async () => {
          for (let i = 0; i < 8; i++) sockets.push((await greeting(run.port)).s);
          while (loading) {
            const g = await greeting(run.port).catch(() => undefined);
            if (g !== undefined) {
              await echo(g.s, "x".repeat(2000)).catch(() => "");
              g.s.destroy();
            }
            for (const s of sockets.slice(0, 8)) if (!s.destroyed) s.write("y".repeat(8000));
            await new Promise((r) => setTimeout(r, 50));
          }
        })();
        try {
          const errors: string[] = [];
          const page = await chromium.page(
            `sessionStorage.setItem("relaykit-token", ${JSON.stringify(TOKEN)});`,
          );
          page.on("console", (m) => {
            if (m.type() === "error") errors.push(m.text());
          });
          page.on("pageerror", (e) => errors.push(e.message));
          await page.setViewportSize({ width: 1280, height: 1000 });
          await page.goto(`http://127.0.0.1:${run.adminPort}/`);
          await page.waitForSelector('#listeners tr[data-listener="web"]', { timeout: 15_000 });
          await page.waitForSelector('tr[data-server="app/a"]');
          await page.waitForSelector('tr[data-server="app/b"]');
          assert.equal(await page.textContent('tr[data-server="app/a"] td.state'), "up");
          // the counters move
          const total = async () =>
            Number(await page.textContent('#listeners tr[data-listener="web"] td.total'));
          const first = await total();
          await page.waitForFunction(
            (n) =>
              Number(
                document.querySelector('#listeners tr[data-listener="web"] td.total')!.textContent,
              ) > n,
            first + 3,
            { timeout: 10_000 },
          );
          // charts have points; a screenshot under load
          await page.waitForFunction(
            () => document.querySelectorAll(".chart canvas").length === 2,
            undefined,
            { timeout: 10_000 },
          );
          await new Promise((r) => setTimeout(r, 6000)); // some points on the charts
          mkdirSync(ARTIFACTS, { recursive: true });
          await page.screenshot({
            path: join(ARTIFACTS, `admin-page-${engine}.png`),
            fullPage: true,
          });
          // drain a from the page: an open connection to a goes on, new ones go to b
          let onA: net.Socket | undefined;
          for (let i = 0; i < 4 && onA === undefined; i++) {
            const g = await greeting(run.port);
            if (g.name === "a") onA = g.s;
            else g.s.destroy();
          }
          assert.ok(onA !== undefined);
          await page.click('tr[data-server="app/a"] button[data-action="drain"]');
          await page.waitForFunction(
            () =>
              document.querySelector('tr[data-server="app/a"] td.state')!.textContent === "drain",
            undefined,
          );
          for (let i = 0; i < 4; i++) {
            const g = await greeting(run.port);
            assert.equal(g.name, "b", "a is draining");
            g.s.destroy();
          }
          assert.equal(await echo(onA, "still here"), "still here");
          onA.destroy();
          // a weight from the page's prompt
          page.on("dialog", (d) => void d.accept("7"));
          await page.click('tr[data-server="app/b"] button[data-action="weight"]');
          await page.waitForFunction(
            () => document.querySelector('tr[data-server="app/b"] td.weight')!.textContent === "7",
            undefined,
          );
          // the close button ends a connection
          const victim = await greeting(run.port);
          const client = `127.0.0.1:${victim.s.localPort}`;
          await page.fill("#conn-client", client);
          await page.evaluate(
            () => document.getElementById("conn-client")!.dispatchEvent(new Event("change")),
            undefined,
          );
          const row = `#connections tr:has(td:text-is("${client}"))`;
          await page.waitForSelector(row, { timeout: 10_000 });
          const gone = new Promise((r) => victim.s.once("close", r));
          await page.click(`${row} button[data-action="close"]`);
          await Promise.race([
            gone,
            sleep(10_000).then(() => {
              throw new Error("the close button did not end the connection in 10 s");
            }),
          ]);
          assert.deepEqual(errors, [], "no console errors");
          await page.close();
          // a wrong token: refused, nothing shown, logged
          const wrong = await chromium.page(
            'sessionStorage.setItem("relaykit-token", "not-the-token");',
          );
          await wrong.goto(`http://127.0.0.1:${run.adminPort}/`);
          await wrong.waitForFunction(
            () => document.getElementById("banner")!.textContent!.includes("401"),
            undefined,
            { timeout: 10_000 },
          );
          assert.match((await wrong.textContent("#banner"))!, /refused \(401\): wrong token/);
          assert.equal(
            await wrong.evaluate(() => document.querySelectorAll("#listeners tbody tr").length, 0),
            0,
          );
          await waitFor(
            () =>
              /admin: 401 for GET \/api\/v1\/stats .*: wrong token/.test(
                run.cli.output.out + run.cli.output.err,
              ),
            5000,
            "the 401 in the log",
          );
        } finally {
          loading = false;
          // (bounded: a hung load must not hide the failure above)
          await Promise.race([load.catch(() => {}), sleep(15_000)]);
          for (const s of sockets) s.destroy();
          await chromium.close();
          run.cli.child.kill("SIGKILL");
          await a.close();
          await b.close();
        }
      },
    );
  });
}

for (const engine of ENGINES) {
  describe(`the stats page with --workers 2 (${engine} engine)`, () => {
    test("connections of both workers listed; drain and close reach them", {
      timeout: 120_000,
    }, async () => {
      const [a, b] = [await greeter("a"), await greeter("b")];
      const run = await startRun(dir, `page-workers-${engine}`, (port, adminPort) =>
        `listeners:
  - { name: web, address: 127.0.0.1, port: ${port}, backend: app }
backends:
  - name: app
    servers:
      - { host: 127.0.0.1, port: ${a.port}, name: a }
      - { host: 127.0.0.1, port: ${b.port}, name: b }
admin: { port: ${adminPort}, token: ${TOKEN} }
`, ["--workers", "2", "--engine", engine]);
      const chromium = await launchChromium();
      const held: net.Socket[] = [];
      try {
        await waitFor(
          () => (run.cli.output.out.match(/\]: running /g) ?? []).length === 2,
          15_000,
          "2 workers",
        );
        for (let i = 0; i < 16; i++) held.push((await greeting(run.port)).s);
        const errors: string[] = [];
        const page = await chromium.page(
          `sessionStorage.setItem("relaykit-token", ${JSON.stringify(TOKEN)});`,
        );
        page.on("console", (m) => {
          if (m.type() === "error") errors.push(m.text());
        });
        page.on("pageerror", (e) => errors.push(e.message));
        await page.goto(`http://127.0.0.1:${run.adminPort}/`);
        await page.waitForSelector("#connections tbody tr", { timeout: 15_000 });
        assert.match((await page.textContent("#meta"))!, /2 workers/);
        const workers = await page.evaluate(
          () =>
            [...document.querySelectorAll("#connections tbody tr td:nth-child(2)")].map((t) =>
              t.textContent
            ),
          undefined,
        );
        assert.deepEqual([...new Set(workers)].sort(), ["0", "1"]);
        // close the first listed connection (whichever worker has it)
        const closedOne = Promise.race(held.map((s) => new Promise((r) => s.once("close", r))));
        await page.click("#connections tbody tr button[data-action=close]");
        await closedOne;
        // drain from the page reaches both workers
        await page.click('tr[data-server="app/a"] button[data-action="drain"]');
        await page.waitForFunction(
          () => document.querySelector('tr[data-server="app/a"] td.state')!.textContent === "drain",
          undefined,
        );
        for (let i = 0; i < 6; i++) {
          const g = await greeting(run.port);
          assert.equal(g.name, "b");
          g.s.destroy();
        }
        assert.deepEqual(errors, []);
      } finally {
        for (const s of held) s.destroy();
        await chromium.close();
        await stopChild(run.cli.child);
        await a.close();
        await b.close();
      }
    });
  });
}
