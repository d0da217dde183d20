/**
 * A staged change of a running tunnel server or client (a reload): what
 * needs new sockets is bound when it is staged, so that committing cannot
 * fail, and cancelling leaves the running one as it was.
 *
 * @module
 */

/**
 * A change staged by `TunnelServer.stage()` or `TunnelClient.stage()`:
 * new listening sockets are already bound; nothing else has changed yet.
 * Call exactly one of `commit()` and `cancel()`.
 *
 * @example
 * ```ts
 * import { TunnelServer } from "@relaykit/relaykit";
 * const options = { listen: { host: "127.0.0.1", port: 0 }, allow: [{ cidr: "127.0.0.0/8" }] };
 * const server = await TunnelServer.listen(options);
 * const staged = await server.stage({ ...options, allow: [{ cidr: "127.0.0.1/32", port: "80" }] });
 * staged.commit();
 * console.log(staged.changes); // [ "allow/deny rules changed" ]
 * await server.close();
 * ```
 */
export interface TunnelUpdate {
  /**
   * What the change does, one line each (e.g. `listener 127.0.0.1:8080 ->
   * route web added`, `link restarted (secret changed)`); empty when
   * nothing changes.
   */
  readonly changes: readonly string[];
  /**
   * Why the link (the client's) or the links (the server's) restart, e.g.
   * "secret, TLS"; undefined when they stay up.
   */
  readonly restart: string | undefined;
  /** Apply it. */
  commit(): void;
  /** Drop it: close what was bound for it. */
  cancel(): void;
}

/** Whether two option values differ (plain data: compared as JSON). */
export function differs(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) !== JSON.stringify(b);
}
