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
    "sha256": "7bb39eb17693cb47dc5f98e965dc5cdf4a391b319d635ca1579560e32b28ec0a",
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
      "src/layout.c",
      "src/listen.c",
      "src/pool.c",
      "src/relay.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "1ce25e6d246143316d206b58c9e78ba6c0de0a9983b803daa789e28d3994cfb3",
      "size": 59888,
    },
    "linux-arm64-glibc": {
      "sha256": "f3326f8ba5de878f284ca7713408b2e86571a78ebad0f484dbaaadedf30be9a1",
      "size": 68032,
    },
    "linux-x64-musl": {
      "sha256": "cdbfaae751ae956ec0a2c1ed847a3ce8a366897cbd65112f4934abc29a60c854",
      "size": 59648,
    },
    "linux-arm64-musl": {
      "sha256": "834a597658a4acfd84cc1a1cb468abacffd940a2e393685a92783a9ae146e6e6",
      "size": 67776,
    },
  },
};
