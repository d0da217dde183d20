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
    "sha256": "7ea2b5cbcb0be343e42a67e7d3f27dd906bcf46dbb8efcf9e7b0b9c447cc58cd",
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
      "sha256": "012adc7140c864437690a47f466d2420a27042358deeded76bd38ab82bb4aec5",
      "size": 154264,
    },
    "linux-arm64-glibc": {
      "sha256": "bb469c43a69e9210b21a424489b38c639a888a6528c63ab7c098ee497bea0494",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "7b83af987003d340937ee20e37c30a3067cf43c1d33706f476d3ab0c08606e93",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "4bd04257107cf9526d4a2dde7443814223eaa45d6836673d7bf806d10e40ba0a",
      "size": 199024,
    },
  },
};
