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
    "sha256": "6e6a1b0d12fdde88ef9c1720a09e847bbd6dccd01c9ca5492e63867fe7d3ab5c",
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
      "sha256": "5f10b02d808a64a227d0af9d60def97e325d0101e7d743124142da0211d86d5f",
      "size": 150168,
    },
    "linux-arm64-glibc": {
      "sha256": "0fe260eaad7ae508f946fb79fa4045c74213e292d484a926b1375f9a4ce6bdd8",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "685637b8c3e20f38aa40fd5a6c656837e255fc28860295f2928f02fc63c8bfe0",
      "size": 149936,
    },
    "linux-arm64-musl": {
      "sha256": "16107cafc985dd95bd24dfa7f213c57556abd6e352a93ecaa730464cca223cc9",
      "size": 199024,
    },
  },
};
