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
    "sha256": "d76e6d6da7d992ad08d648b5ea43ae1deb00432aa683afb8b282b4e9c6de4fb2",
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
      "sha256": "95ea230b61b9a9014131df2349587818e6edd7780052ba937ac96c04937d63bc",
      "size": 72208,
    },
    "linux-arm64-glibc": {
      "sha256": "05601120a07bddd02b0e1eaa211382f98a8f9c19e834e74ddb160289b13729b9",
      "size": 68064,
    },
    "linux-x64-musl": {
      "sha256": "5dbcc54a1bcdc0d4c6f65e35853295df8ad8b03c295beffa3b508e7b23d835ea",
      "size": 71968,
    },
    "linux-arm64-musl": {
      "sha256": "e97c733c593fd73a8928d494807d9c4d9072f07e7445e2bc5a6bbdb4f41b4d99",
      "size": 67808,
    },
  },
};
