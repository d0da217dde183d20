/**
 * The settings a user writes, each validated once: the command line
 * (src/cli/), the config file (src/config/config.ts) and the library's own
 * option checks (proxy/front.ts) call the same validator, so a value is
 * accepted or refused the same way, with the same words, everywhere.
 *
 * A validator takes text from the command line or a value from the config
 * file and returns the typed value, or throws a {@linkcode SettingError}
 * whose message says what is wrong without naming where (`expected one of
 * detect, v1, v2, not "v3"`): the caller puts the flag or the
 * file:line:col and key in front.
 *
 * @module
 */
import { parseCidr } from "./protocol/cidr.ts";

/** A value that a setting refuses; the message names no flag or key. */
export class SettingError extends RangeError {
  /** @param message What is wrong with the value. */
  constructor(message: string) {
    super(message);
    this.name = "SettingError";
  }
}

/** One setting: how its values look (for help) and its validator. */
export interface Setting<T> {
  /** How its values look, for help texts: "detect|v1|v2", "MS", "N". */
  readonly values: string;
  /** Validate a command-line text or a config value; throws a SettingError. */
  parse(value: unknown): T;
}

/** A value as a message shows it. */
export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return JSON.stringify(v);
}

/** One of a fixed list of words. */
export function oneOf<T extends string>(values: readonly T[]): Setting<T> {
  return {
    values: values.join("|"),
    parse(v: unknown): T {
      if (typeof v === "string" && (values as readonly string[]).includes(v)) return v as T;
      throw new SettingError(`expected one of ${values.join(", ")}, not ${describeValue(v)}`);
    },
  };
}

/** An integer from `min` to `max`; from the command line, decimal digits. */
export function integer(min: number, max = 0x7fffffff, values = "N"): Setting<number> {
  return {
    values,
    parse(v: unknown): number {
      const n = typeof v === "string" && /^\d{1,10}$/.test(v) ? Number(v) : v;
      if (typeof n === "number" && Number.isInteger(n) && n >= min && n <= max) return n;
      throw new SettingError(`expected an integer from ${min} to ${max}, not ${describeValue(v)}`);
    },
  };
}

/** An address range ("10.0.0.0/8", "::1"), as text. */
export const cidr: Setting<string> = {
  values: "CIDR",
  parse(v: unknown): string {
    if (typeof v !== "string" || v === "") {
      throw new SettingError(`expected an address range, not ${describeValue(v)}`);
    }
    try {
      parseCidr(v);
    } catch (err) {
      throw new SettingError((err as Error).message);
    }
    return v;
  },
};

/** Which engine relays: auto (native if it loads), native, stream. */
export const engine: Setting<"auto" | "native" | "stream"> = oneOf(
  ["auto", "native", "stream"] as const,
);
/** Native worker threads. */
export const threads: Setting<number> = integer(1);
/** Concurrent connections of a listener (0: no limit). */
export const maxConnections: Setting<number> = integer(0);
/** A time in milliseconds (0: none). */
export const millis: Setting<number> = integer(0, 0x7fffffff, "MS");
/** How a listener takes PROXY headers from its clients. */
export const acceptProxyMode: Setting<"detect" | "v1" | "v2"> = oneOf(
  ["detect", "v1", "v2"] as const,
);
/** What happens to a client that may not send a PROXY header. */
export const untrusted: Setting<"refuse" | "no-header"> = oneOf(
  ["refuse", "no-header"] as const,
);
/** The PROXY protocol version sent to a backend. */
export const sendProxyVersion: Setting<"v1" | "v2"> = oneOf(["v1", "v2"] as const);
/** How much the operator log says. */
export const logLevel: Setting<"error" | "warn" | "info" | "debug"> = oneOf(
  ["error", "warn", "info", "debug"] as const,
);
/** How log lines look. */
export const logFormat: Setting<"text" | "json"> = oneOf(["text", "json"] as const);
