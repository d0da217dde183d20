/**
 * Quick start for a Bun server: `Bun.serve` behind a relaykit proxy (the
 * native engine through bun:ffi), one request through it, then a clean stop.
 *
 *   node_modules/.bin/bun examples/quick_bun.ts
 */
import { TcpProxy } from "../mod.ts";

const bun = (globalThis as unknown as {
  Bun: {
    serve(o: { hostname: string; port: number; fetch(req: Request): Response }): {
      port: number;
      stop(): void;
    };
  };
}).Bun;
const backend = bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: (req) => new Response(`hello from Bun.serve, ${new URL(req.url).pathname}\n`),
});

const proxy = await TcpProxy.listen({
  listen: { host: "127.0.0.1", port: 0 },
  target: { host: "127.0.0.1", port: backend.port },
});
const res = await fetch(`http://127.0.0.1:${proxy.port}/through-relaykit`, {
  headers: { connection: "close" },
});
console.log(`${proxy.engine} engine: ${res.status} ${await res.text()}`.trim());
await proxy.close();
backend.stop();
