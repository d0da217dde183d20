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
    "sha256": "a2c45764bacdcb25f0f62c18afb1dd6af6b63d3ce9bde24deebba859667c6db0",
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
      "sha256": "398f074f97c303de76ac67bd33bc9ea02b6802f7fc551e79c286b065ff251d29",
      "size": 150168,
    },
    "linux-arm64-glibc": {
      "sha256": "3c01e4cb471de4427cbcfbd85550037ab03cd62b8ffd0bf299e602c8c3906b9e",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "4dd1b3cfe89d5d8907894108be02aa273e09519ce46bf7a9ab0899205cbc1e30",
      "size": 149936,
    },
    "linux-arm64-musl": {
      "sha256": "706d5141eb330dfa48b41c8f3dcd399f8dc9c5bd8fff6ac7d39ddb0bf0d68f67",
      "size": 199024,
    },
  },
};
