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
    "sha256": "318ce02a1ecaa64874f408ad73d7af5ef52f1736274618d5bbe761d2a26a80e0",
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
      "sha256": "9b538492394314e34210ad3304f0951f36cb4cf549c330279ea3c15fb1594f74",
      "size": 150224,
    },
    "linux-arm64-glibc": {
      "sha256": "9eafe6b632c4751778c92967d54a440f95eeb98b167196ba1045fb990ed7afe9",
      "size": 199328,
    },
    "linux-x64-musl": {
      "sha256": "51e248ffe9bcf6fdd8af5a32540b52174e079e1c996e159f57964f53a9574fab",
      "size": 149992,
    },
    "linux-arm64-musl": {
      "sha256": "7a5e349511c16bbb5998228b3166115882e68276443d427b68ee991a61c88b39",
      "size": 199088,
    },
  },
};
