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
    "sha256": "4a1b81d845215ad844ec0729cd62074094d18015496e255aa5f711532f2b08c6",
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
      "sha256": "ee4f139262bafe4014449de019077eac4982d5cb9afc1473454acd1cd17cb54e",
      "size": 80416,
    },
    "linux-arm64-glibc": {
      "sha256": "bda65691b7cdc33bebe666d95718da4a8144d33e532603fcd05ae8f482e422b9",
      "size": 133616,
    },
    "linux-x64-musl": {
      "sha256": "bafe49751356bba59504a383ef3ef92a21f416499fe19cd5e249f358260043e1",
      "size": 80176,
    },
    "linux-arm64-musl": {
      "sha256": "c40eacc66597381010444e8223cbcdf256e58e2271a8ceebc82051a6ced5c61f",
      "size": 133360,
    },
  },
};
