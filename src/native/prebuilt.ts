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
    "sha256": "00ad58203438872cc4b7df54bd12dc281f48bfd84934a42f75df6e117c23d014",
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
      "src/tunnel.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "b123e951329718574fe25104dfc1304721e3fba59815eb3fafbbde735b5a0526",
      "size": 76304,
    },
    "linux-arm64-glibc": {
      "sha256": "d25a61f0e87697cb726420342032bcba51acf84db34be6ec2b04a3f8a3b9b3e6",
      "size": 133600,
    },
    "linux-x64-musl": {
      "sha256": "5fe4829c728c1cca0f0b942e37421c94f83f1bcca55f93cfa8907106e6a00643",
      "size": 80160,
    },
    "linux-arm64-musl": {
      "sha256": "b16c0d8a75855722d83f35e5fb73204d432a51a2b8b850c1d91813e2d6423d75",
      "size": 133344,
    },
  },
};
