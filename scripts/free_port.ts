/**
 * Free TCP ports for something started later to listen on: the tests, the
 * fuzzer and the benchmarks all take theirs from here.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import net from "node:net";

/** The first port the kernel hands out to outgoing connections and to port 0. */
const EPHEMERAL_LOW = (() => {
  try {
    return Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0]);
  } catch {
    return 32768;
  }
})();

/** Ports {@link freePort} gave out in this process (never given twice). */
const givenPorts = new Set<number>();

/**
 * A free TCP port on `host` (bound, then released), for something started
 * later to listen on. Picked below the kernel's ephemeral range where it
 * can: a port from that range may be taken by any outgoing connection
 * between this check and the listen (seen as EADDRINUSE in a reload test
 * and in a fuzzer's process start).
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const listen = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const s = net.createServer();
      s.once("error", () => resolve(undefined));
      s.listen(port, host, () => {
        const got = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(got));
      });
    });
  const low = 20_000, high = EPHEMERAL_LOW - 1;
  for (let i = 0; high - low > 1000 && i < 50; i++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (givenPorts.has(port)) continue;
    if (await listen(port) === port) {
      givenPorts.add(port);
      return port;
    }
  }
  const port = await listen(0);
  if (port === undefined) throw new Error(`No free port on ${host}`);
  return port;
}
