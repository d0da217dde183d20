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
    "sha256": "2aff803240aa894ee24b14fb2af98821088991ad547930ee51f7c0900cbe2210",
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
      "src/relay.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "19aff128904de565a38581e6b569ba9736c60a141481013939e1ae7fef64bd4c",
      "size": 55784,
    },
    "linux-arm64-glibc": {
      "sha256": "614364d727314137bceb6befaa3c979692fe274cd7bb10030f8050160e4784c4",
      "size": 68024,
    },
    "linux-x64-musl": {
      "sha256": "11992edeb98fa87b6427eb04131d3a1287a7f9d46c130f9f8fdb29799505e77c",
      "size": 55544,
    },
    "linux-arm64-musl": {
      "sha256": "5fe929efa7a08b07f30a678a89ae1d9a4acb8819215eea3463a7053e4687c09a",
      "size": 67768,
    },
  },
};
