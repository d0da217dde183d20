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
    "sha256": "1337d812a86c7ae3e7a3a2af73d4985eafc4cc6296717b890d3ec7c71cad4b39",
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
      "sha256": "e22dfd3de2c27be5de8614ee161d6e722e30cc432a475c6b489dc63defa455cf",
      "size": 76288,
    },
    "linux-arm64-glibc": {
      "sha256": "42ba2f18b14ef48c146fe246d42e03a90ac01d0409890f8176daa9ca0446a02c",
      "size": 133584,
    },
    "linux-x64-musl": {
      "sha256": "3b2b64b50cf40bfb609a1b53d955288c8db2eaf67f4c41c533ee8f306a89d113",
      "size": 80144,
    },
    "linux-arm64-musl": {
      "sha256": "ce9572f783d19121e4abb07e8176e2a39ce3d6dfba192700821c41ccc46706ef",
      "size": 133328,
    },
  },
};
