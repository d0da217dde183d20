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
    "sha256": "a42fb20268baec98b3c7360264f97847907427fe095cb8f6d8ef5fbe96e5b6f2",
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
      "sha256": "4686447fd17850028ef4b2ba84e8fe6d41dfcca835dad7633a4afe9691d5d0dc",
      "size": 150224,
    },
    "linux-arm64-glibc": {
      "sha256": "d8ee6f4af775aa124e942fca6ab2a1090d1b2643c20f35c23324a741fc5198e0",
      "size": 199328,
    },
    "linux-x64-musl": {
      "sha256": "16d6022a9b36c769836086a6f11afa600703b1c14db50a6274cd5d0d8f014373",
      "size": 149992,
    },
    "linux-arm64-musl": {
      "sha256": "a1fdadaea598119f54a5f7d03206fdae1d653620be7c9efb1dc0812946a5aab1",
      "size": 199088,
    },
  },
};
