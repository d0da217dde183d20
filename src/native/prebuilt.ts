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
    "sha256": "7478f1dca0651a2df82f26f5e94e8e1a0d6dbbcaf6399e90a92263b4d42e305f",
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
      "src/relay.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "8fe949392db5dcf5c52afcfcdd0a828e432e1ce2e63891da13cb60e103f1dbb5",
      "size": 55704,
    },
    "linux-arm64-glibc": {
      "sha256": "f7eb06ea657922a4d12b1d9850735b49b5080341338e7f80a83bbb76660631e8",
      "size": 67944,
    },
    "linux-x64-musl": {
      "sha256": "b537d56b4764233a7b1a1c7bdb86ebd0907159aeeb73a0733a0d26e83552762f",
      "size": 59568,
    },
    "linux-arm64-musl": {
      "sha256": "2903a5bbd3ce9670396c3213bd8827a7baf94c194ec01d9026857b6f6dda527e",
      "size": 67688,
    },
  },
};
