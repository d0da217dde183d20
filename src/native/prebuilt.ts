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
    "sha256": "e4c8e01a3b5c3a22136a5ea718c21cfc2def655507f439115ebae39606c74a5f",
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
      "sha256": "00cc83de9fb3879541b1c3c1111174131ab665b600443adb5b3aedef0ee0f781",
      "size": 150136,
    },
    "linux-arm64-glibc": {
      "sha256": "6c7fd7298b3e0c84b3cf38e5c20a9791ed6e047aa948a2a3b56663f58cd25d52",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "5cfea26def802d21387ba4fe06cd6e4dd8c36739d58d671cf0ddbc6a8d729952",
      "size": 145808,
    },
    "linux-arm64-musl": {
      "sha256": "598a4caff3077b9637923ca7687a596cea609539e409a828fbd9177f8a094570",
      "size": 198992,
    },
  },
};
