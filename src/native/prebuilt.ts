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
    "sha256": "5a875dc77bcc92a4159415676f6bb14032aa0e3abd3727a6d9547633bba53a3c",
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
      "src/tunnel.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "6d409f1461171c80c73d307290c567c1b8a64d468b14af8c3d5f5795f7447c46",
      "size": 146040,
    },
    "linux-arm64-glibc": {
      "sha256": "7efbc9a9773b851bf94da8896aba9c2bcbabb924e75c1e2e53d3ffa2b945c9be",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "7bd3da8e1c20dafdd23240c315acfd94f6d24ac29c39edd777b77d551a2c78e1",
      "size": 141712,
    },
    "linux-arm64-musl": {
      "sha256": "4f3296463328efb8411d6ea7a571ee1d48a1631ca110477356b11c9a315aed5b",
      "size": 198992,
    },
  },
};
