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
    "sha256": "1fcac6a5d517d02d736da238d707e50472c0b786e8901e6834411cd7c05406b5",
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
      "src/tls.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "7ce92c56ea81b43d5193810c78889b99792a942336287d390c3aa200b3c69513",
      "size": 76304,
    },
    "linux-arm64-glibc": {
      "sha256": "03f457f19a3ce21cbe26ea00c9dccca87f16954d97c32defe2caed8450e93a11",
      "size": 133600,
    },
    "linux-x64-musl": {
      "sha256": "d4b0cab92131a3d27a814ad4100efaf4e88b5b81f84e3919cc8f5bfb5e2f3fee",
      "size": 80160,
    },
    "linux-arm64-musl": {
      "sha256": "d88920dd28277ca708bf6e72fced6773ecdfb86e3795b7ae54bae7925b1bf6e0",
      "size": 133344,
    },
  },
};
