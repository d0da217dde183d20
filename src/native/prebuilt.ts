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
    "sha256": "d67b835b0b7123ece26dcf010b155653be44e62414745c36c328cd386967e80a",
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
      "sha256": "7511f5639477be7e2cdd79ae1d71b778e5ee089aa3e723eaabe3e2f5d352ff55",
      "size": 141936,
    },
    "linux-arm64-glibc": {
      "sha256": "38af176e953efd3c22a41e856d2c186ad6f0b4450179ca44d906ddaab1ed1ea3",
      "size": 133696,
    },
    "linux-x64-musl": {
      "sha256": "fb9aea8654dce7295f8474c0d6d1e19ba096fddfb297a8985753fad1d5817648",
      "size": 137608,
    },
    "linux-arm64-musl": {
      "sha256": "e56963d66655d61ef0d4c5fa821e836b1124f40777f79a01333648542f5a01ed",
      "size": 133448,
    },
  },
};
