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
    "sha256": "d0c8412c42ad6fddf868e04b62d2907196130a68186ef9cff3cc83dcd0130cbf",
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
      "sha256": "feb8de64d350bc8e87161973e7378ef15828fb7d414611386ae399e63b2e7911",
      "size": 150136,
    },
    "linux-arm64-glibc": {
      "sha256": "48dcd9eca297bd3b4579baa89cb1b2b24747ec6612749ea354941cc370720c02",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "0b9b615fde5eff79d43195eb41ff3484ed3a107e4beb74deb173604e1329277a",
      "size": 145808,
    },
    "linux-arm64-musl": {
      "sha256": "a33da0b60a2504d8a8765afaf5e8b6b3a77af4bdcf4df0972dd217625e20b4ad",
      "size": 198992,
    },
  },
};
