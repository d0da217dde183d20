/**
 * Quick start for a `deno run` script: an HTTP backend, a relaykit proxy in
 * front of it, one request through the proxy, then a clean stop.
 *
 *   node_modules/.bin/deno run -A examples/quick_deno.ts
 *
 * From JSR the import is `jsr:@relaykit/relaykit`; from a clone, ../mod.ts.
 */
import { TcpProxy } from "../mod.ts";

const backend = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen() {} },
  (req) => new Response(`hello from the backend, ${new URL(req.url).pathname}\n`),
);

await using proxy = await TcpProxy.listen({
  listen: { host: "127.0.0.1", port: 0 },
  target: { host: "127.0.0.1", port: backend.addr.port },
});
proxy.on(
  "close",
  (end) => console.log(`connection ${end.id}: ${end.reason}, ${end.bToA.written} bytes back`),
);

const res = await fetch(`http://127.0.0.1:${proxy.port}/through-relaykit`, {
  headers: { connection: "close" },
});
console.log(`${proxy.engine} engine: ${res.status} ${await res.text()}`.trim());
await backend.shutdown();
