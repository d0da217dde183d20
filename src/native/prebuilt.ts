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
    "sha256": "5dd0fb2c3f26df271e77ffce4f0e70e2b62c133b3c3f5f5cfe841757798e0b00",
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
      "sha256": "0d87c5819266fda30368be6e9b06ac6ad4438604342115967ae398cdde364c5e",
      "size": 154264,
    },
    "linux-arm64-glibc": {
      "sha256": "709dd9c7e80ce3cc2b26b9553d601c93d24f2c3596b73fb90af7c1d382748f57",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "c239461b7b0ada12db6894a200888e1bca59858798ad526357cddb8007657dd7",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "547074c074bf93e8411705b0352eecf980e4316d477993ddaba94c4b34dae237",
      "size": 199024,
    },
  },
};
