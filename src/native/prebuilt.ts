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
    "sha256": "a3027e6a8938619bc79cc93ccb24fb102772176313d7404d8718195281bb6db9",
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
      "sha256": "464b788490cc052841ffecc6a44ddaf205081a0c58b5a64e285d05efdfc54aa4",
      "size": 154264,
    },
    "linux-arm64-glibc": {
      "sha256": "e54f0d3edf70dd775bd5393f103c0fea90ca0cbd7b5bfec6173ad0b25e2fc7a7",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "4c53263a479ffab80aec45f01c5a1d7e95f1b2c325867d3b69266bdf54cdf35a",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "ca32aef773ed659a952c2c260282f0a03997c53f3d41a1f8fba85e2bddc831d3",
      "size": 199024,
    },
  },
};
