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
    "sha256": "582fc0f5435a019a07f0e80422b117628ba8199bd34f70663ae3c252fa8af0f2",
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
      "sha256": "ed615816407d3d0f1f46229f621487f58ed3d7e5c9360d01b43e3c071e21064b",
      "size": 150168,
    },
    "linux-arm64-glibc": {
      "sha256": "966a5d68a64884abe646458aef7026b471b34c16b2782831ed2bd685c42fc55f",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "cc18a3dd58cb181efa757b33066e39151bbb26cb8f5263ab3c3480df60d1719c",
      "size": 149936,
    },
    "linux-arm64-musl": {
      "sha256": "bcdb14c99af6642fa51cdeade04f3f1e3e2d22385d7b6a391ab3598d7d2f3e70",
      "size": 199024,
    },
  },
};
