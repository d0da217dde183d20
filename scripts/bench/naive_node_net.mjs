// Naive node:net forwarder used as a baseline by scripts/bench.ts: two
// stream.pipe() calls per connection, i.e. what most users would write.  It
// runs unchanged on node, bun and deno.
//
// Usage: node|bun scripts/bench/naive_node_net.mjs LISTEN_PORT TARGET_PORT
//        deno run -A scripts/bench/naive_node_net.mjs LISTEN_PORT TARGET_PORT
import net from "node:net";
import process from "node:process";

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
if (!(listenPort > 0) || !(targetPort > 0)) {
  console.error("usage: naive_node_net.mjs LISTEN_PORT TARGET_PORT");
  process.exit(2);
}

net
  .createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    client.pipe(upstream);
    upstream.pipe(client);
    const destroy = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", destroy);
    upstream.on("error", destroy);
  })
  .listen({ host: "127.0.0.1", port: listenPort, backlog: 4096 });
