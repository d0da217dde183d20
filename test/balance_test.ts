/**
 * Backends: balancing (roundrobin with weights, leastconn, random,
 * source-hash) and failover to the next server, on both engines.
 */
import assert from "node:assert/strict";
import type net from "node:net";
import { after, describe, test } from "./_test.ts";
import { Backend, type ConnectionEnd, type RelaykitError, TcpProxy } from "../mod.ts";
import { closed, connect, ENGINES, freePort, nativeEngine, server, waitFor } from "./_helpers.ts";

/** Servers that greet with their name. */
async function named(...names: string[]) {
  return await Promise.all(names.map((name) =>
    server((s: net.Socket) => {
      s.write(name);
      s.on("data", () => {});
      s.on("end", () => s.end());
    }).then((srv) => ({ name, ...srv }))
  ));
}

async function greeting(port: number): Promise<{ name: string; s: net.Socket }> {
  const s = await connect(port);
  const name = await new Promise<string>((r, j) => {
    s.once("data", (d) => r(String(d)));
    s.once("close", () => j(new Error("closed without a greeting")));
  });
  return { name, s };
}

for (const engine of ENGINES) {
  describe(`backends (${engine} engine)`, () => {
    const cleanup: (() => Promise<void>)[] = [];
    after(async () => {
      for (const c of cleanup) await c();
    });

    async function proxy(backend: ConstructorParameters<typeof Backend>[0] | Backend) {
      if (engine === "native") nativeEngine();
      const p = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 0 }, engine, backend });
      const ends: ConnectionEnd[] = [];
      const errors: RelaykitError[] = [];
      p.on("close", (e) => ends.push(e)).on("error", (e) => errors.push(e));
      cleanup.push(() => p.close());
      return { p, ends, errors };
    }

    test("roundrobin follows the weights, interleaved", async () => {
      const servers = await named("a", "b", "c");
      cleanup.push(...servers.map((s) => () => s.close()));
      const { p, ends } = await proxy({
        name: "web",
        servers: servers.map((s, i) => ({
          address: { host: "127.0.0.1", port: s.port },
          name: s.name,
          weight: i === 2 ? 2 : 1,
        })),
      });
      const seen: string[] = [];
      for (let i = 0; i < 8; i++) {
        const { name, s } = await greeting(p.port);
        seen.push(name);
        s.end();
        await closed(s);
      }
      assert.deepEqual(seen.slice().sort(), ["a", "a", "b", "b", "c", "c", "c", "c"]);
      assert.notEqual(seen.slice(0, 4).join(""), "ccaa", "interleaved, not in blocks");
      await waitFor(() => ends.length === 8, 5000, "ends");
      assert.deepEqual(ends.map((e) => e.server).sort(), seen.slice().sort());
    });

    test("leastconn, random (weight 0 takes none) and source-hash", async () => {
      const servers = await named("x", "y");
      cleanup.push(...servers.map((s) => () => s.close()));
      const list = (weights: number[]) =>
        servers.map((s, i) => ({
          address: { host: "127.0.0.1", port: s.port },
          name: s.name,
          weight: weights[i]!,
        }));
      const least = await proxy({ name: "l", servers: list([1, 1]), balance: "leastconn" });
      const first = await greeting(least.p.port);
      const second = await greeting(least.p.port);
      assert.deepEqual([first.name, second.name], ["x", "y"]);
      second.s.end();
      await closed(second.s);
      await waitFor(() => least.ends.length === 1, 5000, "the end");
      const third = await greeting(least.p.port);
      assert.equal(third.name, "y", "x still has one");
      first.s.destroy();
      third.s.destroy();
      const random = await proxy({ name: "r", servers: list([0, 3]), balance: "random" });
      const hashed = await proxy({ name: "h", servers: list([1, 1]), balance: "source-hash" });
      const picks = { random: new Set<string>(), hashed: new Set<string>() };
      for (let i = 0; i < 6; i++) {
        for (const [k, port] of [["random", random.p.port], ["hashed", hashed.p.port]] as const) {
          const g = await greeting(port);
          picks[k].add(g.name);
          g.s.destroy();
        }
      }
      assert.deepEqual([...picks.random], ["y"]);
      assert.equal(picks.hashed.size, 1, "one client address, one server");
    });

    test("a refused connect fails over to the next server, within the retry budget", async () => {
      const [live] = await named("live");
      cleanup.push(() => live!.close());
      const d1 = await freePort(), d2 = await freePort();
      const addr = (port: number) => ({ address: { host: "127.0.0.1", port } });
      const backend = new Backend({
        name: "db",
        servers: [addr(d1), addr(d2), { ...addr(live!.port), name: "live" }],
        retries: 2,
      });
      const ok = await proxy(backend);
      const g = await greeting(ok.p.port);
      assert.equal(g.name, "live");
      g.s.write("after failover");
      g.s.end();
      await closed(g.s);
      await waitFor(() => ok.ends.length === 1, 5000, "the end");
      assert.equal(ok.ends[0]!.server, "live");
      assert.deepEqual(backend.servers.map((s) => s.failures), [1, 1, 0]);
      assert.deepEqual(ok.errors, []);
      // a server that dies: the next connections go on to the others
      const [mortal] = await named("mortal");
      const dies = await proxy({
        name: "pair",
        servers: [{ ...addr(mortal!.port), name: "mortal" }, { ...addr(live!.port), name: "live" }],
      });
      const before = await greeting(dies.p.port);
      assert.equal(before.name, "mortal");
      before.s.destroy();
      await mortal!.close();
      for (let i = 0; i < 3; i++) {
        const after = await greeting(dies.p.port);
        assert.equal(after.name, "live");
        after.s.destroy();
      }
      assert.deepEqual(dies.errors, [], "failover hides the dead server from clients");
      // one retry only: both dead servers are tried, then the client is closed
      const short = await proxy({
        name: "db2",
        servers: [addr(d1), addr(d2), addr(live!.port)],
        retries: 1,
      });
      const s = await connect(short.p.port);
      s.on("error", () => {});
      s.resume();
      await new Promise((r) => s.once("end", r)); // the client is closed (FIN)
      s.destroy();
      await waitFor(() => short.errors.length === 1, 5000, "the error");
      assert.equal(short.errors[0]!.code, "ECONNREFUSED");
    });

    test("each connection's server lease is given back once, however it ends", async () => {
      const [live] = await named("live");
      cleanup.push(() => live!.close());
      const dead = await freePort();
      const addr = (port: number) => ({ address: { host: "127.0.0.1", port } });
      const backend = new Backend({
        name: "lease",
        servers: [{ ...addr(dead), name: "dead" }, { ...addr(live!.port), name: "live" }],
        balance: "leastconn",
      });
      const { p, ends } = await proxy(backend);
      const open = [await greeting(p.port), await greeting(p.port)];
      assert.deepEqual(open.map((g) => g.name), ["live", "live"]);
      assert.deepEqual(backend.servers.map((s) => s.active), [0, 2], "held while open");
      open[0]!.s.end(); // a clean end
      await closed(open[0]!.s);
      open[1]!.s.destroy(); // a reset
      await waitFor(() => ends.length === 2, 5000, "both ends");
      assert.deepEqual(backend.servers.map((s) => s.active), [0, 0], "given back once each");
      assert.deepEqual(backend.servers.map((s) => s.total), [2, 2]);
      assert.deepEqual(backend.servers.map((s) => s.failures), [2, 0]);
    });
  });
}
