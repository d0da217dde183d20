/**
 * The admin API of the one-proxy commands (`relaykit forward`, `route`,
 * `socks`, `http-connect` with `--admin`): its listener, its open
 * connections and closing them. They have no config file and no backends:
 * reload answers that, and a listener is not switched off and on here.
 *
 * @module
 */
import { formatEndpoint } from "../forward/types.ts";
import {
  type ListenerStats,
  type ListenerView,
  type LiveConnection,
  newListenerStats,
} from "../config/run.ts";
import type { Backend } from "../proxy/balance.ts";
import type { TcpProxy } from "../proxy/tcp_proxy.ts";
import type { AdminTarget } from "./local.ts";

/** One proxy, watched for the admin API (from when it is made). */
export class ProxyTarget implements AdminTarget {
  readonly #name: string;
  readonly #proxy: TcpProxy;
  readonly #route: string;
  readonly #limit: number;
  readonly #command: string;
  readonly #conns = new Map<number, LiveConnection>();
  readonly #stats: ListenerStats = newListenerStats();
  readonly backends: ReadonlyMap<string, Backend> = new Map();
  #lastReload: { ok: boolean; message: string } | undefined;

  /**
   * @param proxy The proxy.
   * @param o Its name in the API, where it sends connections ("forward",
   *   "socks", "route"…), its connection limit, and the command's name.
   */
  constructor(
    proxy: TcpProxy,
    o: { name: string; route: string; limit: number; command: string },
  ) {
    this.#proxy = proxy;
    this.#name = o.name;
    this.#route = o.route;
    this.#limit = o.limit;
    this.#command = o.command;
    const st = this.#stats;
    proxy.on("open", (c) => {
      this.#conns.set(c.id, {
        opened: Date.now(),
        client: c.remote === undefined ? undefined : formatEndpoint(c.remote),
      });
      st.opened++;
      if (this.#conns.size > st.peak) st.peak = this.#conns.size;
    });
    proxy.on("close", (e) => {
      this.#conns.delete(e.id);
      st.total++;
      st.up += e.aToB.written;
      st.down += e.bToA.written;
      if (e.reason === "connect-failed" && e.error !== undefined) {
        st.failures.set(e.error.code, (st.failures.get(e.error.code) ?? 0) + 1);
      }
    });
    proxy.on("error", (err) => st.errors.set(err.code, (st.errors.get(err.code) ?? 0) + 1));
  }

  get listeners(): ReadonlyMap<string, TcpProxy> {
    return new Map([[this.#name, this.#proxy]]);
  }

  adminView(): ListenerView[] {
    return [{
      name: this.#name,
      route: this.#route,
      limit: this.#limit,
      proxy: this.#proxy,
      disabled: false,
      stats: this.#stats,
      live: [{ proxy: this.#proxy, conns: this.#conns }],
    }];
  }

  get lastReload(): { ok: boolean; message: string } | undefined {
    return this.#lastReload;
  }

  reload(): Promise<boolean> {
    this.#lastReload = {
      ok: false,
      message: `relaykit ${this.#command} has no config file to reload (relaykit run has)`,
    };
    return Promise.resolve(false);
  }

  setListenerEnabled(_name: string, _enabled: boolean): Promise<void> {
    return Promise.reject(
      new RangeError(`relaykit ${this.#command} does not switch its listener (relaykit run does)`),
    );
  }

  metrics(): string {
    return "";
  }
}
