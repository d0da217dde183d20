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
    "sha256": "7dcc57a9e7aad9b8b7a2a092eed30177aa232d5f7c7a3ef8b4c7ef4805dbe797",
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
      "sha256": "c8688f5af5b3a54af89c7d084e894dc3cb2a6286d07114157b7958f3af99f314",
      "size": 150136,
    },
    "linux-arm64-glibc": {
      "sha256": "9dd2fe05c7c94fb7720842265c762cec000cb9151c9967ce65f9efe2dfebeedf",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "bd485ce3cedbb10ba4aee9a1b82e8e99347698d0a44e0c244ac4e6b267ce46bf",
      "size": 145808,
    },
    "linux-arm64-musl": {
      "sha256": "1da088cd712b6cbd4f7c2d5031f6c554382e6d2cb151d20a5b6d2a94aa3616ab",
      "size": 198992,
    },
  },
};
