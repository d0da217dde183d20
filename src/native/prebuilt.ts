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
    "sha256": "5c8e415d4d319b5efb9ee0fb3b5995d784871ddf5a95e50a64d1c9f7916e4aca",
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
      "sha256": "f8403850ab5048a96a3967b4e28ba557a96a355e3cbd3d89b274c9eaced32784",
      "size": 76304,
    },
    "linux-arm64-glibc": {
      "sha256": "447b44fd6d4dba74a8455b1aeabb1c60e43d0bf7c0f060d3d18b8ba764968eda",
      "size": 133600,
    },
    "linux-x64-musl": {
      "sha256": "5261379c5a40c80eb6c911d595cf3fde9b624f27cf8bc28ae84c5f70a2531aac",
      "size": 80160,
    },
    "linux-arm64-musl": {
      "sha256": "3d7aeab4220ac5cf2d3228229f8af61b6db009b5694318d09d471ec136da3437",
      "size": 133344,
    },
  },
};
