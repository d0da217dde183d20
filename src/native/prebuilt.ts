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
    "sha256": "814a9411f449e2a69b3cd1515e2f4729664717e4c4143f8cbcf6783948188fc2",
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
      "sha256": "798b58103584c92736b8d70b1698bd495ea1ced0e2f01ce41299e5d8588d9a36",
      "size": 150168,
    },
    "linux-arm64-glibc": {
      "sha256": "b8bf783f4f11ddafa41b1cfc3082d2e05da7aad3e6cc6c85d4c73c62676b7279",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "45c9d498d8ae0456165c69330e22ebe7d863f0febbd22fc12299e84d705fa1c5",
      "size": 149936,
    },
    "linux-arm64-musl": {
      "sha256": "f14601258f1ad043c663f713db1a65c13118ebd5c31a83dd4465f587178d6b01",
      "size": 199024,
    },
  },
};
