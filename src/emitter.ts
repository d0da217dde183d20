/**
 * A minimal typed event emitter shared by proxies and relays.
 *
 * @module
 */

/**
 * Subscribe to typed events.
 *
 * @example
 * ```ts
 * import { Emitter } from "@relaykit/relaykit/internals";
 * class Clock extends Emitter<{ tick: number }> {
 *   tick(n: number): void {
 *     this.emit("tick", n); // emit is for the class itself
 *   }
 * }
 * const clock = new Clock();
 * clock.on("tick", (n) => console.log("tick", n));
 * clock.tick(1);
 * ```
 */
export class Emitter<E extends { [K in keyof E]: unknown }> {
  readonly #handlers = new Map<keyof E, Set<(arg: never) => void>>();

  /**
   * Call `fn` for every `event`.
   *
   * @param event Event name.
   * @param fn Handler.
   * @returns this, for chaining.
   */
  on<K extends keyof E>(event: K, fn: (arg: E[K]) => void): this {
    let set = this.#handlers.get(event);
    if (set === undefined) this.#handlers.set(event, set = new Set());
    set.add(fn);
    return this;
  }

  /**
   * Stop calling `fn` for `event`.
   *
   * @param event Event name.
   * @param fn Handler given to on().
   * @returns this, for chaining.
   */
  off<K extends keyof E>(event: K, fn: (arg: E[K]) => void): this {
    this.#handlers.get(event)?.delete(fn);
    return this;
  }

  /** Whether anyone listens to `event`. */
  protected hasListeners(event: keyof E): boolean {
    return (this.#handlers.get(event)?.size ?? 0) > 0;
  }

  /** Call every handler of `event` with `arg`. */
  protected emit<K extends keyof E>(event: K, arg: E[K]): void {
    const set = this.#handlers.get(event);
    if (set === undefined) return;
    for (const fn of set) (fn as (arg: E[K]) => void)(arg);
  }
}
