/**
 * tproxy's examples, ported (examples/), run through relaykit on both
 * engines with real clients (curl); and `relaykit route SCRIPT` with a
 * SIGHUP reload that leaves established connections alone.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, test } from "./_test.ts";
import { fileURLToPath } from "node:url";
import { TcpProxy, type TcpProxyOptions } from "../mod.ts";
import * as fileReply from "../examples/file_reply.ts";
import * as hostRouter from "../examples/host_router.ts";
import * as httpRewrite from "../examples/http_rewrite.ts";
import * as socks4 from "../examples/socks4.ts";
import * as transparent from "../examples/transparent.ts";
import {
  connect,
  curl,
  ENGINES,
  nativeEngine,
  runtimeCommand,
  server,
  startCli,
  waitFor,
} from "./_helpers.ts";

/** curl's body; a failing curl fails the test with its error. */
async function fetchWithCurl(args: string[]): Promise<string> {
  const r = await curl(args);
  assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}`);
  return r.body;
}

/** An HTTP server that answers with its name and the Host header it saw. */
async function web(name: string): Promise<{ port: number; server: Server }> {
  const srv = createServer((req, res) => res.end(`${name} saw Host ${req.headers.host}\n`));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return { port: (srv.address() as net.AddressInfo).port, server: srv };
}

async function proxyWith(engine: "native" | "stream", mod: Partial<TcpProxyOptions>) {
  if (engine === "native") nativeEngine();
  const proxy = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 0 }, engine, ...mod });
  assert.equal(proxy.engine, engine);
  return proxy;
}

describe("tproxy's examples", () => {
  let a: Awaited<ReturnType<typeof web>>, b: Awaited<ReturnType<typeof web>>;
  before(async () => {
    a = await web("a");
    b = await web("b");
    process.env.ROUTES = `a.test=127.0.0.1:${a.port},b.test=127.0.0.1:${b.port}`;
  });
  after(() => {
    a.server.close();
    b.server.close();
  });

  for (const engine of ENGINES) {
    test(`transparent forward (${engine})`, async () => {
      process.env.BACKEND = `127.0.0.1:${a.port}`;
      const proxy = await proxyWith(engine, { route: transparent.route });
      assert.equal(
        await fetchWithCurl([`http://127.0.0.1:${proxy.port}/`]),
        `a saw Host 127.0.0.1:${proxy.port}\n`,
      );
      await proxy.close();
    });

    test(`Host header router (${engine})`, async () => {
      const proxy = await proxyWith(engine, { route: hostRouter.route });
      const url = `http://127.0.0.1:${proxy.port}/`;
      assert.equal(await fetchWithCurl(["-H", "Host: a.test", url]), "a saw Host a.test\n");
      assert.equal(await fetchWithCurl(["-H", "Host: b.test", url]), "b saw Host b.test\n");
      assert.equal(await fetchWithCurl(["-H", "Host: c.test", url]), "no route for c.test\n");
      await proxy.close();
    });

    test(`SOCKS4 in a few lines, with curl --socks4 (${engine})`, async () => {
      const proxy = await proxyWith(engine, { route: socks4.route });
      const got = await fetchWithCurl([
        "--socks4",
        `127.0.0.1:${proxy.port}`,
        `http://127.0.0.1:${b.port}/x`,
      ]);
      assert.equal(got, `b saw Host 127.0.0.1:${b.port}\n`);
      // a BIND request (CD=2) is rejected with 0x5b
      const s = await connect(proxy.port);
      const reply = new Promise<Uint8Array>((r) => s.once("data", r));
      s.write(new Uint8Array([4, 2, 0, 80, 127, 0, 0, 1, 0]));
      assert.deepEqual([...(await reply)], [0, 0x5b, 0, 0, 0, 0, 0, 0]);
      s.destroy();
      await proxy.close();
    });

    test(`file reply (${engine})`, async () => {
      const proxy = await proxyWith(engine, { route: fileReply.route });
      const got = await fetchWithCurl(["-i", "--http1.0", `http://127.0.0.1:${proxy.port}/`]);
      assert.match(
        got,
        /^HTTP\/1\.0 200 OK\r\nContent-Type: text\/plain\r\n\r\nWelcome to relaykit/,
      );
      await proxy.close();
    });

    test(`HTTP Host rewrite (${engine})`, async () => {
      process.env.BACKEND = `127.0.0.1:${a.port}`;
      const proxy = await proxyWith(engine, {
        route: httpRewrite.route,
        rewriteRequest: httpRewrite.rewriteRequest,
        rewriteResponse: httpRewrite.rewriteResponse,
      });
      const got = await fetchWithCurl([
        "-i",
        "-H",
        "Host: public.example",
        `http://127.0.0.1:${proxy.port}/`,
      ]);
      assert.match(got, /^HTTP\/1\.1 200 OK\r\nVia: relaykit\r\n/);
      assert.match(got, new RegExp(`a saw Host 127\\.0\\.0\\.1:${a.port}\\n$`));
      await proxy.close();
    });
  }
});

describe("relaykit route SCRIPT", () => {
  const dir = mkdtempSync(join(tmpdir(), "relaykit-route-cli-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  /** The port `relaykit route … --listen 127.0.0.1:0` says it routes. */
  const routePort = async (cli: ReturnType<typeof startCli>) =>
    Number((await cli.line).match(/routing 127\.0\.0\.1:(\d+)/)?.[1]);

  for (const engine of ENGINES) {
    test(`SIGHUP reloads the script for new connections only (${engine})`, async () => {
      const tag = (name: string) =>
        server((s) => {
          s.write(`${name}\n`);
          s.on("data", (d: Uint8Array) => s.write(d));
          s.on("end", () => s.end());
        });
      const one = await tag("one"), two = await tag("two");
      const script = join(dir, `route-${engine}.ts`);
      const write = (port: number | string) =>
        writeFileSync(
          script,
          // each connection is decided on its first line
          `export function route(data) {
  if (!new TextDecoder().decode(data).includes("\\n")) return undefined;
  return { remote: "127.0.0.1:${port}" };
}
`,
        );
      write(one.port);
      const cli = startCli(["route", script, "--listen", "127.0.0.1:0", "--engine", engine]);
      try {
        const port = await routePort(cli);
        // what `s` reads until it has `tail`: the backend's name, then the echo
        const until = (s: net.Socket, tail: string) =>
          new Promise<string>((resolve) => {
            let got = "";
            const on = (d: Uint8Array) => {
              got += String(d);
              if (!got.endsWith(tail)) return;
              s.off("data", on);
              resolve(got);
            };
            s.on("data", on);
          });
        const line = async (s: net.Socket, text: string) => {
          const got = until(s, text);
          s.write(text);
          return await got;
        };
        const early = await connect(port);
        assert.equal(await line(early, "early\n"), "one\nearly\n");
        // undecided when the reload comes: the module it started with decides
        const undecided = await connect(port);
        undecided.write("und");
        await new Promise((r) => setTimeout(r, 200)); // (the route has seen "und")
        write(two.port);
        process.kill(cli.child.pid!, "SIGHUP"); // ChildProcess.kill: once on Deno
        await waitFor(() => /reloaded/.test(cli.output.out), 10_000, "the reload line");
        const late = await connect(port);
        assert.equal(await line(late, "late\n"), "two\nlate\n");
        assert.equal(await line(undecided, "ecided\n"), "one\nundecided\n");
        // the early connection still talks to "one"
        assert.equal(await line(early, "still here\n"), "still here\n");
        // a broken script keeps the old one running
        writeFileSync(script, "export const route = 42;\n");
        process.kill(cli.child.pid!, "SIGHUP"); // ChildProcess.kill: once on Deno
        await waitFor(
          () => /still running the previous/.test(cli.output.err),
          10_000,
          `the error (stdout: ${cli.output.out} stderr: ${cli.output.err})`,
        );
        const third = await connect(port);
        assert.equal(await line(third, "third\n"), "two\nthird\n");
        // a connection lives through a second reload
        write(two.port);
        process.kill(cli.child.pid!, "SIGHUP");
        await waitFor(
          () => (cli.output.out.match(/reloaded/g) ?? []).length === 2,
          10_000,
          "the second reload line",
        );
        assert.equal(await line(early, "again\n"), "again\n");
        for (const s of [early, undecided, late, third]) s.destroy();
      } finally {
        cli.child.kill("SIGKILL");
        await one.close();
        await two.close();
      }
    });
  }

  for (const engine of ENGINES) {
    test(`an error of a connection that ends during a reload goes to the script it started with (${engine})`, async () => {
      const accepted: net.Socket[] = [];
      const backend = await server((s) => accepted.push(s));
      const script = join(dir, `route-error-${engine}.mjs`);
      // `busy`: ms its top level runs, so that the connection ends meanwhile
      const write = (version: string, busy: number) =>
        writeFileSync(
          script,
          `const t = Date.now(); while (Date.now() - t < ${busy}) {}
export function route(data) {
  if (!new TextDecoder().decode(data).includes("\\n")) return undefined;
  return { remote: "127.0.0.1:${backend.port}" };
}
export function onError(conn, err) { console.log("onError ${version} " + err.code); }
`,
        );
      write("v1", 0);
      const cli = startCli(["route", script, "--listen", "127.0.0.1:0", "--engine", engine]);
      try {
        const port = await routePort(cli);
        const c = await connect(port);
        c.on("error", () => {});
        c.write("hi\n");
        await waitFor(() => accepted.length === 1, 5_000, "the backend's connection");
        write("v2", 1000);
        process.kill(cli.child.pid!, "SIGHUP"); // ChildProcess.kill: once on Deno
        await new Promise((r) => setTimeout(r, 400)); // v2's top level is running
        accepted[0]!.resetAndDestroy();
        await waitFor(() => /reloaded/.test(cli.output.out), 10_000, "the reload line");
        await waitFor(() => /onError/.test(cli.output.out), 5_000, "the onError line");
        assert.match(cli.output.out, /onError v1 ECONNRESET/);
        c.destroy();
      } finally {
        cli.child.kill("SIGKILL");
        await backend.close();
      }
    });
  }

  /**
   * `relaykit route` on a script that sends each connection to one of three
   * servers, each greeting with its name; `write(server, wait)` rewrites the
   * script (`wait`: ms its top level awaits before the module is ready),
   * `greet()` asks a new connection which server it reached, `hup()` sends
   * SIGHUP, `reloads()` counts the reloads logged.
   */
  async function reloadRig(
    name: string,
    body: (r: {
      write: (server: number, wait: number) => void;
      greet: () => Promise<string>;
      hup: () => void;
      reloads: () => number;
      output: () => string;
    }) => Promise<void>,
  ): Promise<void> {
    const servers = await Promise.all(
      ["one", "two", "three"].map((n) => server((s) => s.write(`${n}\n`))),
    );
    const script = join(dir, `${name}.mjs`);
    const write = (server: number, wait: number) =>
      writeFileSync(
        script,
        `await new Promise((r) => setTimeout(r, ${wait}));
export function route() { return { remote: "127.0.0.1:${servers[server]!.port}" }; }
`,
      );
    write(0, 0);
    const cli = startCli(["route", script, "--listen", "127.0.0.1:0"]);
    const conns: net.Socket[] = [];
    try {
      const port = await routePort(cli);
      await body({
        write,
        greet: async () => {
          const s = await connect(port);
          conns.push(s);
          return await new Promise<string>((r) => s.once("data", (d) => r(String(d))));
        },
        hup: () => void process.kill(cli.child.pid!, "SIGHUP"), // ChildProcess.kill: once on Deno
        reloads: () => (cli.output.out.match(/reloaded/g) ?? []).length,
        output: () => `stdout: ${cli.output.out} stderr: ${cli.output.err}`,
      });
    } finally {
      for (const s of conns) s.destroy();
      cli.child.kill("SIGKILL");
      await Promise.all(servers.map((v) => v.close()));
    }
  }

  test("reloads apply in the order of their signals: a slow load does not put its older script back", () =>
    reloadRig("route-order", async (r) => {
      assert.equal(await r.greet(), "one\n");
      r.write(1, 1500);
      r.hup();
      await new Promise((res) => setTimeout(res, 300)); // the slow load is under way
      r.write(2, 0);
      r.hup();
      await waitFor(() => r.reloads() === 2, 10_000, `both reload lines (${r.output()})`);
      assert.equal(await r.greet(), "three\n");
    }));

  test("a burst of SIGHUPs during a slow load makes one more load, of the script as it is last", () =>
    reloadRig("route-burst", async (r) => {
      assert.equal(await r.greet(), "one\n");
      r.write(1, 3000); // the burst below ends well within it
      r.hup();
      await new Promise((res) => setTimeout(res, 300)); // the slow load is under way
      r.write(2, 0);
      for (let i = 0; i < 10; i++) {
        r.hup();
        await new Promise((res) => setTimeout(res, 10));
      }
      await waitFor(() => r.reloads() >= 2, 10_000, `two reload lines (${r.output()})`);
      await new Promise((res) => setTimeout(res, 1000)); // any load still to come
      assert.equal(r.reloads(), 2, `one load per signal? ${r.output()}`);
      assert.equal(await r.greet(), "three\n");
    }));

  test("a script without a route function is a usage error", async () => {
    const script = join(dir, "empty.ts");
    writeFileSync(script, "export const nothing = 1;\n");
    const cli = startCli(["route", script, "--listen", "127.0.0.1:0"]);
    await assert.rejects(cli.line, /exited with 2: .*exports no route function/);
  });
});

test("the README's quick start for this runtime runs as shown", () => {
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === "object";
  const script = fileURLToPath(
    new URL(isDeno ? "../examples/quick_deno.ts" : "../examples/quick_bun.ts", import.meta.url)
      .href,
  );
  const [cmd, ...args] = runtimeCommand(script);
  const r = spawnSync(cmd!, args, { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    /^native engine: 200 hello from (the backend|Bun\.serve), \/through-relaykit$/m,
  );
});
