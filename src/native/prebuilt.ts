/**
 * The prebuilt native libraries: which sources they were built from and the
 * SHA-256 of each. Written by scripts/build_prebuilt.ts; do not edit. The
 * loader refuses a library whose checksum is not the one here.
 *
 * @module
 */

/** A platform with a prebuilt library. */
export type PrebuiltPlatform =
  | "linux-x64-glibc"
  | "linux-arm64-glibc"
  | "linux-x64-musl"
  | "linux-arm64-musl";

/** The sources (files under native/ and their SHA-256 together) and the libraries. */
export const PREBUILT: {
  readonly sources: { readonly sha256: string; readonly files: readonly string[] };
  readonly libraries: Readonly<
    Record<PrebuiltPlatform, { readonly sha256: string; readonly size: number }>
  >;
} = {
  "sources": {
    "sha256": "f2f6373c11235369f41b88ef6b466543422421505913e401ae85e0601b23ac3e",
    "files": [
      "Makefile",
      "include/relaykit.h",
      "relaykit.map",
      "src/connect.c",
      "src/engine.c",
      "src/errors.c",
      "src/fd.c",
      "src/hold.c",
      "src/internal.h",
      "src/listen.c",
      "src/pool.c",
      "src/relay.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "df808f5cc2b9cfec113859b60b90e68239c57f50b0bf42e74d21e56e5eb005c8",
      "size": 55704,
    },
    "linux-arm64-glibc": {
      "sha256": "a55beedb488dba37d491ee30d76a3f77e08a319f8a5b593da65b052ceeb8de27",
      "size": 67944,
    },
    "linux-x64-musl": {
      "sha256": "7dbba22003e8390a005ae813f55d722788d8d799d11e99d90a887f7cdd6cc8b8",
      "size": 55472,
    },
    "linux-arm64-musl": {
      "sha256": "831ca2db9667d27e39f06a29dfd03a1f378048f6230f7a9db9fb911f51190699",
      "size": 67688,
    },
  },
};
