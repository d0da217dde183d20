// Naive Deno forwarder used as a baseline by scripts/bench.ts: Deno.listen and
// ReadableStream.pipeTo in both directions, i.e. what a Deno user would write
// without relaykit.  relaykit's stream engine on Deno has to beat this.
//
// Usage: deno run -A scripts/bench/naive_deno.ts LISTEN_PORT TARGET_PORT
const [listenPort = 0, targetPort = 0] = Deno.args.map(Number);
if (!(listenPort > 0) || !(targetPort > 0)) {
  console.error("usage: naive_deno.ts LISTEN_PORT TARGET_PORT");
  Deno.exit(2);
}

function closeQuietly(conn: Deno.Conn | undefined): void {
  try {
    conn?.close();
  } catch {
    // already closed by pipeTo
  }
}

async function relay(client: Deno.Conn): Promise<void> {
  let upstream: Deno.Conn | undefined;
  try {
    upstream = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
    await Promise.allSettled([
      client.readable.pipeTo(upstream.writable),
      upstream.readable.pipeTo(client.writable),
    ]);
  } catch {
    // upstream connect failed: drop the client
  } finally {
    closeQuietly(client);
    closeQuietly(upstream);
  }
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: listenPort });
for await (const conn of listener) relay(conn);
