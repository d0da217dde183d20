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
    "sha256": "bf8b590d01168b38451e84753ff24825cbf0ed64eca58bb440ce3c2f22cd9702",
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
      "sha256": "3a52318499df03a795b5a07e1b4f7a7e8558bf5ac592c9985c6a9faeb25044e6",
      "size": 146048,
    },
    "linux-arm64-glibc": {
      "sha256": "f81929d990f0a0c0a0bd4dae9d02931441ff3b5657d5c19932cd394d8c9a2b07",
      "size": 199248,
    },
    "linux-x64-musl": {
      "sha256": "ccb6175ae97452bd80bf56e1b525c9196dd8c41647eb657dd7d72d39076eb95b",
      "size": 141720,
    },
    "linux-arm64-musl": {
      "sha256": "c896e57e2a9f4d51865ca64387e57dd0a9280ebcccbd59ec6d59b673a55d3bba",
      "size": 199000,
    },
  },
};
