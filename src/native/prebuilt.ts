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
    "sha256": "63e0cfa5e7e035cb4124580da322424a752c80edf5171add23d2268db36609d7",
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
      "sha256": "d3460d607c86e29153bb42315b4795dd213d5641e6bf3f18e3279cd835ad9af4",
      "size": 146040,
    },
    "linux-arm64-glibc": {
      "sha256": "05360cb1f827b5aa05514002c31e6108a18dc12bd96a6229fbb1962e36d8405d",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "88148af52269448a9b678cb5fdcca09ba8783affacb03c64b5bc57d707eed0e2",
      "size": 141712,
    },
    "linux-arm64-musl": {
      "sha256": "c88b1699a3052467e0cee277c81cef004da10e3be4bbbebb01b46b356f0497df",
      "size": 198992,
    },
  },
};
