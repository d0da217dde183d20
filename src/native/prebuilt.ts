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
    "sha256": "0f361f639daaa275a5c5449045782363c2b935970f17e4b09c0d4304bf2e75aa",
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
      "sha256": "52d44d7f3dfb3454e165f9a658161898528493addeba1e78e29bed7498e36c41",
      "size": 154280,
    },
    "linux-arm64-glibc": {
      "sha256": "1e203007a1834739b4f273319ba3dfaa2b133080643818504006829d33748706",
      "size": 199288,
    },
    "linux-x64-musl": {
      "sha256": "8d7dcdc9d291b2bb1f88e4f6a46dbd6205d3c095a4a9c5cce224216445c3c678",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "804152362b5c8d802793cfbd431e05dbd056268b93405fd24909708bbdb3628f",
      "size": 199024,
    },
  },
};
