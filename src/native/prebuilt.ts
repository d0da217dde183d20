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
    "sha256": "a86c6d4ef3d557af440d5a291eaa076d852db2c82214b05370381ba8bed51707",
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
      "sha256": "61ce87d578f3ef17ee1c05cd09eddefa820995a44da50b2addbe82ef1a8b494e",
      "size": 141936,
    },
    "linux-arm64-glibc": {
      "sha256": "7ca53667b86a594b9c1d30e6ed9a29a16a2c1920924e161ba48b3d2ae226affb",
      "size": 133696,
    },
    "linux-x64-musl": {
      "sha256": "8313a25d8ca948c6f9650675d9cb055fcf3de78abef0118782bfa8efbc812d6b",
      "size": 137608,
    },
    "linux-arm64-musl": {
      "sha256": "74e823419dc060298c729aa5430292528445c7272d5691485cf071ca581361db",
      "size": 133448,
    },
  },
};
