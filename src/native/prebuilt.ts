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
    "sha256": "3551e74c35b9a878216b921a384a4745d8f44c99816017ebfcfdd65b870e7293",
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
      "sha256": "0a00d76945931ca075872fe3365737cb816631bf9cdaacebc1ec1c8bd250ae44",
      "size": 88616,
    },
    "linux-arm64-glibc": {
      "sha256": "04541dc3e0aa4311bf27d1136a56bb8175f5ba4f5625b39aea1632b764d053b6",
      "size": 133624,
    },
    "linux-x64-musl": {
      "sha256": "f5f38b8b0f106b40743a435bc0d58c86462e62121fa64fc2b86623f5e4ea3730",
      "size": 88376,
    },
    "linux-arm64-musl": {
      "sha256": "5df46a46fd6bb522ecff985b3ba55b2e31b0c62f50d3e105d63aad96a94cb3fb",
      "size": 133368,
    },
  },
};
