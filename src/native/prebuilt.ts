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
    "sha256": "15c8404c5cae8d8a0a9634e7c1bd421ba7fc3c3f3237b8d5631267da2fbcda3c",
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
      "sha256": "d77e2ae32ff3701337e4a17ca7a6bb53680eff312ac74a7428f5f3d873ea0b46",
      "size": 150136,
    },
    "linux-arm64-glibc": {
      "sha256": "9444f1156d384dea07df86451885ba29e72fabed64bf6cd53b20789cb38f47c2",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "644616720f4f2d7fe03d2c021e2107e8725ce047cd9a2d8a0d9f849a3850e0cd",
      "size": 145808,
    },
    "linux-arm64-musl": {
      "sha256": "b8981ea0930084625a6ea8c456a7e5910b6f88cd1865a0f765fe9d256e336316",
      "size": 198992,
    },
  },
};
