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
    "sha256": "a15c5251d70b900d0e79ea89bded8ac0225cf1db2504673b38bb227318a1e34c",
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
      "sha256": "b6307e1aa1718a407619e36a08c897a55455cc969edd4c12795305650c9b1825",
      "size": 146040,
    },
    "linux-arm64-glibc": {
      "sha256": "7308eb3b2a7c86ad9849d80ab073655cc21483b2804c0dd290cfdae7d7651ec1",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "676848a9ca4b88dc98a1079a3c8e5cddaae7e6382e48babe4d762678beef1c88",
      "size": 141712,
    },
    "linux-arm64-musl": {
      "sha256": "255334b5ec774215fad8b428979649b60913d6bbc6168f94bd40f525d4da32c2",
      "size": 133456,
    },
  },
};
