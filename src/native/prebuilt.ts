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
    "sha256": "6e7359f01089f5c654c0417fc3db567b3852736284d53732661d01adc7c46e72",
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
      "sha256": "b3d0fdd58aea2ea0b8c610c510fb1ca68ee736ae34954c22b9b978c04461559f",
      "size": 80416,
    },
    "linux-arm64-glibc": {
      "sha256": "22a1e868e9696e71df4b6f0bfec48bea43308c68690423aee6b17b6bbcb1e2bf",
      "size": 133616,
    },
    "linux-x64-musl": {
      "sha256": "88b2cf601a5937de499077ba9d5c9f7471d37730f2b61d05e5703cfcfeffd0f3",
      "size": 80176,
    },
    "linux-arm64-musl": {
      "sha256": "784f526c21cffc58d1146b44bc4a852d1c77e8bd9e0291c7f9d4bee2f07489fa",
      "size": 133360,
    },
  },
};
