/**
 * The admin API of the one-proxy commands (`relaykit forward`, `route`,
 * `socks`, `http-connect` with `--admin`): its listener, its open
 * connections and closing them. They have no config file and no backends:
 * reload answers that, and a listener is not switched off and on here.
 *
 * Its counters and open connections are read from the proxy when a
 * request asks ({@linkcode TcpProxy.totals}, {@linkcode TcpProxy.openConnections}):
 * nothing is reported per connection while nobody asks.
 *
 * @module
 */
import { type ListenerView, statsOf } from "../config/run.ts";
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
  /** Errors by code: "error" events come whatever the interest. */
  readonly #errors = new Map<string, number>();
  readonly backends: ReadonlyMap<string, Backend> = new Map();
  #lastReload: { ok: boolean; message: string } | undefined;

  /**
   * @param proxy The proxy.
   * @param o Its name in the API, where it sends connections ("forward",
   *   "socks", "route"…), its connection limit, the command's name, and
   *   whether it reads PROXY headers (then the original client of each
   *   connection is kept for the connection list).
   */
  constructor(
    proxy: TcpProxy,
    o: { name: string; route: string; limit: number; command: string; original?: boolean },
  ) {
    this.#proxy = proxy;
    this.#name = o.name;
    this.#route = o.route;
    this.#limit = o.limit;
    this.#command = o.command;
    proxy.on("error", (err) => this.#errors.set(err.code, (this.#errors.get(err.code) ?? 0) + 1));
    // originalOf(id) answers while someone listens for originals
    if (o.original === true) proxy.on("original", () => {});
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
      stats: statsOf([this.#proxy], undefined, this.#errors),
      live: [this.#proxy],
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
