/**
 * Errors that callers are expected to catch.
 *
 * @module
 */

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

/** The native library could not be loaded; `attempts` says where and why. */
export class NativeLoadError extends Error {
  /** Every path tried, in order, with the reason it failed. */
  readonly attempts: readonly { path: string; reason: string }[];

  /**
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
