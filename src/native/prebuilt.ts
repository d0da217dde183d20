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
    "sha256": "81fbba7429796d5ccac44fdd055bd2002637ce276d43e528bcc288f2dbc4ec87",
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
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "f1d1730d3963dff296665457ff3c7cf009815f5c403ff3c3abb801005ef75d42",
      "size": 59896,
    },
    "linux-arm64-glibc": {
      "sha256": "52dd57b59877b271ed9c9e81045c957f3d40f6dff8d0bfb8604f7031e14a0074",
      "size": 68040,
    },
    "linux-x64-musl": {
      "sha256": "a6ec5154629628a1063e85ae8535b8e63a9be1c4238cb1aca02449738b977353",
      "size": 59656,
    },
    "linux-arm64-musl": {
      "sha256": "d41332653cf8f3f1950f01045ae9b435874cdcdbadcebbea87f0da7c800d35ba",
      "size": 67784,
    },
  },
};
