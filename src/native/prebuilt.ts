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
    "sha256": "773c342e237cbd9863481e74d4dd2eb12ea86efc2b233ebb59f86b3633ee1bf9",
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
      "sha256": "2cf12407f83c1e7c44a5765ff7e0dc5283761b3215cc0a0add1c2c7c99b9b41b",
      "size": 76304,
    },
    "linux-arm64-glibc": {
      "sha256": "d48a1bb144f2d2440b8b971d102aa7e0c104a2cebad737b5535514cab5c3b741",
      "size": 133600,
    },
    "linux-x64-musl": {
      "sha256": "1cca345bf6e32337958184e88a5c868f4be70518e23ba0b19cf4d686cc0730ce",
      "size": 80160,
    },
    "linux-arm64-musl": {
      "sha256": "9a1fa4cc60b6c5122ed1249a77e13b98614b83c92943a372902d1050060154ba",
      "size": 133344,
    },
  },
};
