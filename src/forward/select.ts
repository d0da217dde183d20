/**
 * Choosing an engine: `auto` takes the native one when its library loads,
 * the stream engine otherwise, and says why. RELAYKIT_ENGINE=native|stream
 * forces one; forcing native when it cannot load is an error.
 *
 * @module
 */
import process from "node:process";
import { NativeEngine } from "../native/engine.ts";
import { NativeForwardEngine, TLS_AFTER_PROXY } from "./native.ts";
import { StreamForwardEngine } from "./stream.ts";
import type { ForwardEngine } from "./types.ts";

/**
 * Which engine to use.
 *
 * @example
 * ```ts
 * import { type EnginePreference, TcpProxy } from "@relaykit/relaykit";
 * const engine: EnginePreference = "stream"; // or "auto", "native"
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 9 },
 *   engine,
 * });
 * console.log(proxy.engine, proxy.engineReason);
 * await proxy.close();
 * ```
 */
export type EnginePreference = "auto" | "native" | "stream";

/**
 * The chosen engine and, when it is not native, why.
 *
 * @example
 * ```ts
 * import { chooseEngine, type EngineChoice } from "@relaykit/relaykit/internals";
 * const choice: EngineChoice = chooseEngine();
 * console.log(choice.engine.name, choice.reason);
 * ```
 */
export interface EngineChoice {
  /** The engine. */
  engine: ForwardEngine;
  /** Why the native engine is not in use (undefined when it is). */
  reason: string | undefined;
}

function envPreference(): EnginePreference | undefined {
  let v: string | undefined;
  try {
    v = process.env.RELAYKIT_ENGINE;
  } catch {
    return undefined; // no env permission: no override
  }
  if (v === undefined || v === "") return undefined;
  if (v === "auto" || v === "native" || v === "stream") return v;
  throw new RangeError(`RELAYKIT_ENGINE must be "auto", "native" or "stream", not "${v}"`);
}

function stream(reason: string): EngineChoice {
  return { engine: new StreamForwardEngine(), reason };
}

/**
 * Pick an engine.
 *
 * @param preference "auto" (default), "native" or "stream"; RELAYKIT_ENGINE
 * overrides "auto".
 * @param native The native engine to use instead of the shared one.
 * @throws when "native" is asked for and cannot load.
 *
 * @example
 * ```ts
 * import { chooseEngine } from "@relaykit/relaykit/internals";
 * const choice = chooseEngine("auto");
 * console.log(choice.engine.name, choice.reason ?? "native library loaded");
 * ```
 */
export function chooseEngine(
  preference: EnginePreference = "auto",
  native?: NativeEngine,
): EngineChoice {
  const pref = preference === "auto" ? envPreference() ?? "auto" : preference;
  if (pref === "stream") return stream("the stream engine was asked for");
  try {
    return { engine: new NativeForwardEngine(native ?? NativeEngine.shared()), reason: undefined };
  } catch (err) {
    if (pref === "native") throw err;
    const why = err instanceof Error ? err.message : String(err);
    return stream(`the native engine is unavailable: ${why}`);
  }
}

/**
 * Pick an engine for a listener that terminates TLS: the native engine
 * when it can speak TLS itself (OpenSSL 3 loads) and nothing comes before
 * the client's TLS (a PROXY header to accept); the stream engine
 * otherwise, saying why.
 *
 * @param preference As for {@link chooseEngine}.
 * @param native The native engine to use instead of the shared one.
 * @param proxyHeader Whether a PROXY header is accepted before the TLS.
 * @throws when "native" is asked for and cannot terminate TLS.
 *
 * @example
 * ```ts
 * import { chooseTlsEngine } from "@relaykit/relaykit/internals";
 * const choice = chooseTlsEngine("auto", undefined, false);
 * console.log(choice.engine.name, choice.reason ?? "TLS in the native engine");
 * ```
 */
export function chooseTlsEngine(
  preference: EnginePreference = "auto",
  native: NativeEngine | undefined,
  proxyHeader: boolean,
): EngineChoice {
  const pref = preference === "auto" ? envPreference() ?? "auto" : preference;
  const choice = chooseEngine(pref, native);
  if (choice.reason !== undefined) return choice; // the stream engine already
  const why = proxyHeader ? TLS_AFTER_PROXY : (native ?? NativeEngine.shared()).tlsUnavailable();
  if (why === undefined) return choice;
  if (pref === "native") throw new TypeError(`${why}: use engine "auto" or "stream"`);
  return stream(why);
}
