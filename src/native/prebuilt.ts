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
    "sha256": "0a4f3bb3063ab42f7e30e7943385507cc2cf1a4ce5dc3cc5b534cdda1ccaf0f6",
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
      "sha256": "fbd04cc1631aaa4d0503ab55a56b48ed591b59f043a10f9e8608d8101d21e43b",
      "size": 154264,
    },
    "linux-arm64-glibc": {
      "sha256": "3e5dab63de2adadc85501b21ab01f256fc0a590791157fadc34bebb66f27614f",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "9dab98139093b2c568c9fea4f211ac1809802915c98c28dbe63a9095a9f0c832",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "8824cd66deb8b409e6274fc3faa9c5776193340a130fc837074235c6a312fef1",
      "size": 199024,
    },
  },
};
