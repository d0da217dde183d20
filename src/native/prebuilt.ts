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
    "sha256": "518dd02894667692eea9efe401f148f028b3eba1cd44a9678287f48957984569",
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
      "sha256": "f80aa4d43d844b4b9891bdbe49a72b7d73172b9165d26c9fe1322e70e5d7807e",
      "size": 150168,
    },
    "linux-arm64-glibc": {
      "sha256": "0fe46c76a4c54d4ceb5888ed9ce03e64198acd7d41db5aec40e32a55d9048bcc",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "bf330cec1bb346e4794b1b111f98b527cd0687dc2027a619aa23565eb09d7331",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "911adfde26bc81d387ef908439658886603e7a693216ba8ba7b8cf36d98f7920",
      "size": 199024,
    },
  },
};
