/**
 * `relaykit demo` (and `npm start`): an HTTP backend behind a proxy.
 *
 * @module
 */
import { createServer } from "node:http";
import { TcpProxy } from "../proxy/tcp_proxy.ts";
import { runtime } from "../runtime/detect.ts";
import { VERSION } from "../version.ts";
import { Logger } from "./log.ts";
import { engineLine, onStop } from "./common.ts";
import type { Command } from "./options.ts";

/** The command. */
export const demo: Command = {
  name: "demo",
  summary: "a demo: an HTTP backend behind a proxy on 127.0.0.1:8080 (or any free port)",
  usage: "",
  options: [],
  async run() {
    const backend = createServer((req, res) => {
      res.end(`hello from the demo backend, through relaykit (${req.method} ${req.url})\n`);
    });
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
    const addr = backend.address();
    const backendPort = typeof addr === "object" && addr !== null ? addr.port : 0;
    const target = { host: "127.0.0.1", port: backendPort };
    let proxy: TcpProxy;
    try {
      proxy = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 8080 }, target });
    } catch {
      // 8080 is taken: any free port will do for a demo
      proxy = await TcpProxy.listen({ listen: { host: "127.0.0.1", port: 0 }, target });
    }
    console.log(`relaykit ${VERSION} demo on ${runtime.name} ${runtime.version}`);
    console.log(`  backend: an HTTP server on 127.0.0.1:${backendPort}`);
    console.log(
      `  proxy:   listening on 127.0.0.1:${proxy.port} -> 127.0.0.1:${backendPort} (${
        engineLine(proxy, undefined)
      })`,
    );
    console.log(`Try it:   curl http://127.0.0.1:${proxy.port}/`);
    console.log(`Stop:     Ctrl-C.  More: relaykit --help`);
    proxy.on("close", (e) =>
      console.log(
        `  connection #${e.id}: ${e.reason}, ${e.aToB.written} bytes in, ${e.bToA.written} bytes out`,
      ));
    onStop(async () => {
      await proxy.abort();
      backend.close();
    }, new Logger());
  },
};
