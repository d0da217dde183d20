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
    "sha256": "42a67c3e810755c853e9cb0a0fa562d919d663e559e39a84eac520fcef23d431",
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
      "sha256": "6703236fcf08e7e6b2ba5377fc2a62eac0fb6a9bd3fda9d3e8c7e964da62dacd",
      "size": 141928,
    },
    "linux-arm64-glibc": {
      "sha256": "e5e374d839d40f815ba13f76b2c6d7dfe1675b56eece1d19363f00e344923262",
      "size": 133688,
    },
    "linux-x64-musl": {
      "sha256": "5aed09c20be53f74a76edcd838fa951a5d73af21b00aaab1bef18e8519cb85c8",
      "size": 137600,
    },
    "linux-arm64-musl": {
      "sha256": "c1593299ac63bd28b60c5d1686f8e3772c15be4263cedeb7ea9edd9c0c422d0e",
      "size": 133440,
    },
  },
};
