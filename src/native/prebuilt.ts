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
    "sha256": "1bf0722d91f5dc6fb53d50a6ecf977c5cdc944428323f6452d8fa595e95a7f59",
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
      "sha256": "16ea1ee5df91a147f69d302d2ce062bb9cc5e499215eea9a2bad097442136e63",
      "size": 150168,
    },
    "linux-arm64-glibc": {
      "sha256": "1d2e9efa697c73e440d94ebe6d0315ecbbc0f77bfcdcb506a8f487fe1dbaf8a8",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "2874924e8db46519271f643d0abf6aa904791562bfb9f743ac7205e002802d6e",
      "size": 149936,
    },
    "linux-arm64-musl": {
      "sha256": "22ba6abe8ff8cfde0c585cdafa74868e1bd70ae3fc5b334c26e184e56af768eb",
      "size": 199024,
    },
  },
};
