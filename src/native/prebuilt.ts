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
    "sha256": "841effc87136f828a88adfa0db42c6e6c2153b1bba2b9f29f6859c8d04e0797e",
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
      "sha256": "0273d2b96a568259a956347d3804efbd3bae15612b95d245fc8a5b963a7a393c",
      "size": 80416,
    },
    "linux-arm64-glibc": {
      "sha256": "d91f1cd98c4e3211dc966991ee679c472bdef405be46228d2ff45aea5b7a5129",
      "size": 133616,
    },
    "linux-x64-musl": {
      "sha256": "f9166f67df0f49d1965cb64446db3c2ffdc63034d8f4f4ca5067b8602a0a25ab",
      "size": 80176,
    },
    "linux-arm64-musl": {
      "sha256": "8eca947b74f6273ad8a8bb31d2142fdb9df73fdafa445e01edae8926b61df1ed",
      "size": 133360,
    },
  },
};
