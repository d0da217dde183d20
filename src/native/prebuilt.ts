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
    "sha256": "627d9e6725558389ac2185cb9fa84a04217cf4a48797c1e936ca1c492eed8862",
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
      "sha256": "e3eaceddfce0d7b2a4025dad4ac4dea47045b08172fc98c5bef524611e5b9a58",
      "size": 146040,
    },
    "linux-arm64-glibc": {
      "sha256": "bda743e928cdad98ef6eaac12a09b05543ea12a31e7569d7fb1eb3b5b9b7999a",
      "size": 199240,
    },
    "linux-x64-musl": {
      "sha256": "0567909f9686f8cd8f351ed769a4e1ca699b1b25bd7a842f9b90f3b77bbf02f6",
      "size": 141712,
    },
    "linux-arm64-musl": {
      "sha256": "3ce42619c02e62b70dea33323a9a9a0932d6675e21fe86ef7f5417ab8aa0b63b",
      "size": 198992,
    },
  },
};
