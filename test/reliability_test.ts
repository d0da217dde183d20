/**
 * Reliability: the proxy keeps working while what is around it misbehaves.
 * fd exhaustion, slow and hostile clients, faults in the middle of a
 * stream, and many concurrent relays; on both engines where the engine
 * matters. Every case is bounded in time.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import type net from "node:net";
import { describe, test } from "node:test";
import { CLI, closed, connect, echoServer, ENGINES, runtimeCommand, sleep } from "./_helpers.ts";

/** Open fds of process `pid`. */
function fdsOf(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** CPU seconds (user + system) process `pid` has used so far. */
function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[11], [12]: utime, stime in clock ticks (100 per second on Linux)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Start the relaykit command under a file-descriptor limit; resolve once it listens. */
async function startLimited(
  args: string[],
  nofile: number,
): Promise<{ child: ChildProcess; output: { out: string; err: string } }> {
  const [cmd, ...rest] = runtimeCommand(CLI, args);
  const child = spawn("prlimit", [`--nofile=${nofile}:${nofile}`, cmd!, ...rest], {
    stdio: "pipe",
  });
  const output = { out: "", err: "" };
  child.stderr!.on("data", (d: Uint8Array) => output.err += String(d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Uint8Array) => {
      output.out += String(d);
      if (output.out.includes("\n")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`exited with ${code}: ${output.err}`)));
  });
  return { child, output };
}

/** One request through the proxy: resolve with what came back, or reject. */
async function roundTrip(port: number, text: string, ms = 2000): Promise<string> {
  const s = await connect(port);
  try {
    return await new Promise<string>((resolve, reject) => {
      let got = "";
      const timer = setTimeout(() => reject(new Error(`no echo within ${ms} ms`)), ms);
      s.on("data", (d: Uint8Array) => {
        got += String(d);
        if (got.length >= text.length) {
          clearTimeout(timer);
          resolve(got);
        }
      });
      s.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      s.on("close", () => {
        clearTimeout(timer);
        reject(new Error(`closed after ${JSON.stringify(got)}`));
      });
      s.write(text);
    });
  } finally {
    s.destroy();
  }
}

for (const engine of ENGINES) {
  describe(`reliability (${engine} engine)`, () => {
    test("fd exhaustion: no spinning, no crash, recovery once fds free up", async () => {
      const echo = await echoServer();
      const probe = await startLimited([
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--to",
        `127.0.0.1:${echo.port}`,
        "--engine",
        engine,
      ], 1024);
      const base = fdsOf(probe.child.pid!);
      probe.child.kill("SIGKILL");
      // room for a few connections beyond what the idle process holds
      const limit = base + 24;
      const { child, output } = await startLimited([
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--to",
        `127.0.0.1:${echo.port}`,
        "--engine",
        engine,
      ], limit);
      const port = Number(/:(\d+)/.exec(output.out.split("\n")[0]!)![1]);
      const pid = child.pid!;
      try {
        assert.equal(await roundTrip(port, "before"), "before");
        // far more clients than fds: the kernel queues them, the proxy runs out
        const clients: net.Socket[] = [];
        for (let i = 0; i < 60; i++) {
          const s = await connect(port);
          s.on("error", () => {});
          clients.push(s);
        }
        let most = 0;
        for (const end = Date.now() + 1000; Date.now() < end; await sleep(20)) {
          most = Math.max(most, fdsOf(pid));
        }
        assert.ok(
          most >= limit - 2 || output.err.includes("Too many open files"),
          `the proxy ran out of fds (at most ${most} of ${limit}): ${output.err}`,
        );
        // out of fds, the process must idle rather than spin on accept(2)
        const cpu0 = cpuOf(pid);
        await sleep(2000);
        const used = cpuOf(pid) - cpu0;
        assert.ok(used < 0.4, `the proxy used ${used.toFixed(2)} s of CPU in 2 s while out of fds`);
        assert.equal(child.exitCode, null, `the proxy died: ${output.err}`);
        for (const s of clients) s.destroy();
        await Promise.all(clients.map(closed));
        // recovery: a new client is served again
        let answer = "";
        const until = Date.now() + 10_000;
        while (Date.now() < until) {
          answer = await roundTrip(port, "after").catch((e) => String(e));
          if (answer === "after") break;
          await sleep(100);
        }
        assert.equal(answer, "after", `no recovery: ${output.err}`);
        assert.ok(fdsOf(pid) <= base + 4, `fds back near ${base}: ${fdsOf(pid)}`);
      } finally {
        child.kill("SIGKILL");
        await echo.close();
      }
    });
  });
}
