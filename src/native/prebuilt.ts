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
    "sha256": "471250358335643bd8257cf82964dbc20ef3117adcc43baff6710433f13c861c",
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
      "src/proxyhdr.c",
      "src/relay.c",
      "src/router.c",
      "src/tls.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "3fa745896e6cee8c8e84bc08bd9ca8aae8029d2ef46f8d7127931d702a67b594",
      "size": 117328,
    },
    "linux-arm64-glibc": {
      "sha256": "22528a56dae0b48f23d0c1163497d80c94646753f816fc9dc5f4a085e2940adf",
      "size": 133664,
    },
    "linux-x64-musl": {
      "sha256": "b6a72a38d271239fe009ac9daaa0aacd84c4ed80f705e7e29dc78f4abddaba9e",
      "size": 113000,
    },
    "linux-arm64-musl": {
      "sha256": "4bd60eaab87d2f10686e7a323a45aff5086f175464cacf9b6b08948839017876",
      "size": 133416,
    },
  },
};
