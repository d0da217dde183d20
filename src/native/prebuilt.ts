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
    "sha256": "df07c86836be1265c85cac1a3c4b1a5e000c369c5248697fa42e86a5eb71b0cb",
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
      "sha256": "1de723e32808e8a43f222a7200db51386f51b07140a0eafd552bca2255c1b98c",
      "size": 84520,
    },
    "linux-arm64-glibc": {
      "sha256": "1131e78608c26bab75fb3d7b6e9435a718c66f939fcf52b2c559bc476c86be2d",
      "size": 133624,
    },
    "linux-x64-musl": {
      "sha256": "42c65ae6f978f1ac628fb24c78960032897fc27ab94f8f566fb3ff024c51b8d4",
      "size": 84280,
    },
    "linux-arm64-musl": {
      "sha256": "4191397c0c31bff9e136e203a4285b5e682b4ccec5f9522d86c45b2ce63b1648",
      "size": 133368,
    },
  },
};
