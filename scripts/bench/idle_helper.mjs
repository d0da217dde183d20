// Child-process helpers for the idle-connection memory workload of
// scripts/bench.ts.  They run in their own process so that bench.ts can raise
// their file-descriptor limit (`ulimit -n`) first, which node:process cannot do
// for the running process.  Runs on node, bun and deno (node: modules only).
//
//   idle_helper.mjs hold PORT
//       Accept connections on 127.0.0.1:PORT and hold them open (reading and
//       discarding input) until the peer closes.  Prints "listening".
//   idle_helper.mjs client PORT N
//       Open 10 warm-up connections to 127.0.0.1:PORT, each sending one byte,
//       print "warm", wait for a line on stdin, then open N more the same way
//       and print "ready OK FAILED".  Holds everything until stdin closes.
import net from "node:net";
import process from "node:process";

const [mode, portArg, countArg] = process.argv.slice(2);
const port = Number(portArg);

/** Keeps every socket reachable for the lifetime of the process. */
const sockets = [];

function hold() {
  const server = net.createServer((sock) => {
    sockets.push(sock);
    sock.on("error", () => {});
    sock.on("data", () => {});
    sock.on("end", () => sock.end());
    sock.on("close", () => {
      const i = sockets.indexOf(sock);
      if (i >= 0) sockets.splice(i, 1);
    });
  });
  server.listen({ host: "127.0.0.1", port, backlog: 8192 }, () => {
    console.log("listening");
  });
}

/** Opens one connection and sends one byte; resolves true once written. */
function openOne() {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(false);
    }, 5000);
    sock.on("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
    sock.on("connect", () => {
      sock.write("x", () => {
        clearTimeout(timer);
        sockets.push(sock);
        resolve(true);
      });
    });
  });
}

/** Opens n connections, at most 64 connecting at a time. */
async function openMany(n) {
  let ok = 0;
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      if (await openOne()) ok++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(64, n) }, worker));
  return ok;
}

/** Resolves on the first line (or end) of stdin. */
function stdinLine() {
  return new Promise((resolve) => {
    const done = () => {
      process.stdin.off("data", done);
      process.stdin.off("end", done);
      resolve();
    };
    process.stdin.on("data", done);
    process.stdin.on("end", done);
  });
}

async function client() {
  const n = Number(countArg);
  await openMany(10);
  console.log("warm");
  await stdinLine();
  const ok = await openMany(n);
  console.log(`ready ${ok} ${n - ok}`);
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

if (mode === "hold" && port > 0) hold();
else if (mode === "client" && port > 0 && Number(countArg) > 0) await client();
else {
  console.error("usage: idle_helper.mjs hold PORT | client PORT N");
  process.exit(2);
}
