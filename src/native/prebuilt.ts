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
    "sha256": "177de997c87e03b3affa1d2bd27b31941ffd5f4c9257fcfe7314f77ce5bd17b3",
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
      "sha256": "0f3dcc885623f948d0107ac40eab5cb01cb550440f0bf0885c9a9f268b414863",
      "size": 146040,
    },
    "linux-arm64-glibc": {
      "sha256": "a870a04d290295b2abe5ebb821e9f1509fbd660cebaf45f145f90076b4e7fa46",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "127d93a54cd6db67916a806fe64a56352348794a2b1c20736a51f756164bf3a6",
      "size": 141712,
    },
    "linux-arm64-musl": {
      "sha256": "586fde93f2cc2038350ee001f3718046c0229cef30033d76ab0beecf9661c957",
      "size": 198992,
    },
  },
};
