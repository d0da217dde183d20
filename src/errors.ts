/**
 * Errors that callers are expected to catch.
 *
 * @module
 */
import { typedArrayTag } from "./bytes.ts";

/**
 * An operation of a relay, listener or connect failed. `code` is the
 * symbolic name of the cause as the native library names it ("ECONNREFUSED",
 * "ETIMEDOUT", "RK_ELIMIT", ...), the same on both engines.
 *
 * @example Telling a refused backend apart
 * ```ts
 * import { RelaykitError } from "@relaykit/relaykit";
 * const err = new RelaykitError('Cannot connect to "127.0.0.1:1": connection refused', "ECONNREFUSED");
 * if (err.code === "ECONNREFUSED") console.log("backend is down");
 * ```
 */
export class RelaykitError extends Error {
  /** Symbolic name of the cause, e.g. "ECONNREFUSED". */
  readonly code: string;
  /** Connection id the error belongs to, if any. */
  readonly connectionId: number | undefined;

  /**
   * Make one.
   *
   * @param message Sentence-case description with values quoted.
   * @param code Symbolic name of the cause.
   * @param options `cause` and the connection id.
   */
  constructor(
    message: string,
    code: string,
    options: { cause?: unknown; connectionId?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "RelaykitError";
    this.code = code;
    this.connectionId = options.connectionId;
  }
}

/**
 * The native library could not be loaded; `attempts` says where and why.
 *
 * @example
 * ```ts
 * import { NativeEngine, NativeLoadError } from "@relaykit/relaykit";
 * try {
 *   new NativeEngine({ libraryPath: "/nonexistent/librelaykit.so" }).close();
 * } catch (err) {
 *   if (err instanceof NativeLoadError) console.log(err.attempts.map((a) => a.reason));
 * }
 * ```
 */
export class NativeLoadError extends Error {
  /** Every path tried, in order, with the reason it failed. */
  readonly attempts: readonly { path: string; reason: string }[];

  /**
   * Make one.
   *
   * @param message What failed.
   * @param attempts Paths tried and why each failed.
   * @param cause The underlying error, if one.
   */
  constructor(
    message: string,
    attempts: readonly { path: string; reason: string }[],
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "NativeLoadError";
    this.attempts = attempts;
  }
}

/**
 * The text of each error code: for a code the native library names, the
 * text it gives (rk_strerror), so that both engines say the same thing for
 * the same failure; test/native_boundary_test.ts compares them.
 */
export const ERROR_TEXT: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ETIMEDOUT: "timed out",
  ECONNRESET: "connection reset by peer",
  ENETUNREACH: "unreachable",
  RK_ERESOLVE: "name resolution failed",
  RK_ELIMIT: "connection limit reached",
  RK_ETLS: "TLS handshake or record failed",
  RK_ENOTLS: "native TLS is not available",
  RK_EPROXY: "PROXY protocol error",
  RK_EPROXY_UNTRUSTED: "PROXY protocol header from an untrusted address",
  RK_EROUTE: "no route",
  RK_EHOOK: "hook failed",
  CERT_UNTRUSTED: "the TLS peer's certificate does not verify",
  RK_EROUTE_LIMIT: "too many bytes before a route",
  EPIPE: "Broken pipe",
  EADDRINUSE: "Address already in use",
  EADDRNOTAVAIL: "Cannot assign requested address",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  ENOENT: "No such file or directory",
  EMFILE: "Too many open files",
  ENFILE: "Too many open files in system",
  EINVAL: "Invalid argument",
  EAFNOSUPPORT: "Address family not supported by protocol",
  ENOTCONN: "Transport endpoint is not connected",
  ECONNABORTED: "Software caused connection abort",
};

/**
 * Codes that only the TypeScript side raises: the native library never
 * reports them (and must not name them with another meaning).
 */
export const HOST_ONLY_CODES: ReadonlySet<string> = new Set([
  "RK_EROUTE",
  "RK_EHOOK",
  "RK_EROUTE_LIMIT",
]);

/**
 * The relaykit code for a runtime error code: what the native engine would
 * report for the same failure (resolver errors become RK_ERESOLVE, host and
 * network unreachable become ENETUNREACH).
 */
export function normalizeCode(code: string | undefined): string {
  switch (code) {
    case undefined:
      return "EIO";
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_NONAME":
    case "EAI_FAIL":
      return "RK_ERESOLVE";
    case "EHOSTUNREACH":
    case "ENETDOWN":
    case "EHOSTDOWN":
      return "ENETUNREACH";
    default:
      // a TLS peer certificate that does not verify: one code on every
      // runtime (the runtime's own reason stays in the error's cause)
      if (/CERT|SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code)) return "CERT_UNTRUSTED";
      return code;
  }
}

/**
 * "what: text" for a code, as the native engine words it; "what: text:
 * detail" with a detail (why a certificate does not verify, say).
 */
export function errorFor(
  what: string,
  code: string,
  options: { cause?: unknown; connectionId?: number; detail?: string | undefined } = {},
): RelaykitError {
  const text = ERROR_TEXT[code] ?? code;
  const { detail, ...rest } = options;
  return new RelaykitError(
    detail === undefined ? `${what}: ${text}` : `${what}: ${text}: ${detail}`,
    code,
    rest,
  );
}

/** The longest string quoted in full by {@link describeValue}. */
const QUOTE_MAX = 40;

/**
 * What a value is, in words, for a message about a result of the wrong
 * shape: "a number (42)", "a string of 9 characters ("127.0.0.1")",
 * "{ remote, data }", "an array of 3 items". Never throws (a Proxy or a
 * throwing getter is named, not read), never long, and control characters
 * are escaped (the value may hold what a client sent).
 */
export function describeValue(v: unknown): string {
  try {
    if (v === null) return "null";
    switch (typeof v) {
      case "undefined":
        return "undefined";
      case "number":
      case "boolean":
        return `a ${typeof v} (${String(v)})`;
      case "bigint":
        return "a bigint";
      case "symbol":
        return "a symbol";
      case "function":
        return "a function";
      case "string": {
        const q = JSON.stringify(v.length > QUOTE_MAX ? v.slice(0, QUOTE_MAX) : v);
        return v.length > QUOTE_MAX
          ? `a string of ${v.length} characters (${q.slice(0, -1)}...")`
          : `a string (${q})`;
      }
    }
    const o = v as object;
    if (ArrayBuffer.isView(o)) {
      const tag = typedArrayTag(o) ?? "DataView";
      return `a ${tag} of ${(o as ArrayBufferView).byteLength} bytes`;
    }
    if (o instanceof ArrayBuffer) return "an ArrayBuffer";
    if (Array.isArray(o)) return `an array of ${o.length} items`;
    if (typeof (o as { then?: unknown }).then === "function") return "a promise";
    const keys = Object.keys(o);
    if (keys.length === 0) return "{}";
    const shown = keys.slice(0, 6).map((k) =>
      /^[\w$]{1,40}$/.test(k) ? k : JSON.stringify(k.slice(0, 40))
    );
    return `{ ${shown.join(", ")}${keys.length > 6 ? ", ..." : ""} }`;
  } catch {
    return "an object that cannot be inspected (its properties throw)";
  }
}

/**
 * Why a file could not be read or written, in words: "no such file", "no
 * such directory", "permission denied", "is a directory", else the
 * runtime's message. For messages like `--pid: cannot write /x.pid: no
 * such directory`.
 */
export function fileErrorReason(err: unknown, op: "read" | "write"): string {
  const code = (err as { code?: string } | null)?.code;
  switch (code) {
    case "ENOENT":
      return op === "read" ? "no such file" : "no such directory";
    case "ENOTDIR":
      return "a part of the path is not a directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    case "EROFS":
      return "read-only file system";
    case "ENOSPC":
      return "no space left on the device";
  }
  return err instanceof Error ? err.message : String(err);
}
