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
    "sha256": "a2a52f4b3a4a932690c7976126c6f52266163c821dc6bff7c9ec32c2145db533",
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
      "sha256": "fbda83e2702020442317b0d6b24530b3f139dc719322b288cb8aa8614ae363e8",
      "size": 146048,
    },
    "linux-arm64-glibc": {
      "sha256": "eb9d3d1597e0e0752186e6d94b6daf198e2a56706928edd3f7cbceadbde19ca0",
      "size": 199248,
    },
    "linux-x64-musl": {
      "sha256": "436c962a94fbaac5f0fffecb8f72c760edbd0f8330dec81ed838fbbb14ccf695",
      "size": 141720,
    },
    "linux-arm64-musl": {
      "sha256": "cefd65fecb35ce1dbff7e0a7dfde6027e558abf6b3980752787c90082d4f4aa1",
      "size": 199000,
    },
  },
};
