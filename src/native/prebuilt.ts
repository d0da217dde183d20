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
    "sha256": "cbd69cc63dee3cdde0ef77f54124b88cd8055c600956b1d5652f89b663764e79",
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
      "src/router.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "64b3a44b923dd22f94915fe7a074122d1b50a1908fb8a520ec96d65c81e0a3d2",
      "size": 80416,
    },
    "linux-arm64-glibc": {
      "sha256": "d2545c9835cc49e01fef04d1e100f3b219e088ec109f1419fb73f8698d98cc64",
      "size": 133616,
    },
    "linux-x64-musl": {
      "sha256": "b821c4bac97b480d30e1bf7e5bfcfd17f50073063211173e813023d433e25b11",
      "size": 80176,
    },
    "linux-arm64-musl": {
      "sha256": "07ad9d7bd9fef5ddc5ab4022cfe2e1338fd41a29853cdc1a0fd2c6578dfe404d",
      "size": 133360,
    },
  },
};
