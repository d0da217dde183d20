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
    "sha256": "3b39553a27ea7510511cec0f158cbfff81b71a28f9eb4d83a99a1655dda9b7d4",
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
      "sha256": "c3c301027b7601af6488880fbc44016101391aa350069d027d23a383e2c1e661",
      "size": 141944,
    },
    "linux-arm64-glibc": {
      "sha256": "e9462b971f13448ba40a8a865f2d0d7013357a3bbd4e5b7f153db289f8c52837",
      "size": 133704,
    },
    "linux-x64-musl": {
      "sha256": "3d1a4649458013d56219b4b081cceb66a77b648694df84e09e04f8c24c26c9d5",
      "size": 137616,
    },
    "linux-arm64-musl": {
      "sha256": "8e8d0008f23577aeb5e2cdfa7c4f80fda33a315371bcdcc481c22023bd5c917f",
      "size": 133456,
    },
  },
};
