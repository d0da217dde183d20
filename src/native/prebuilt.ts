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
    "sha256": "8bb8199bbd936b5c5791c3a96ec6b0cf48fc47ebece81ef2006f866b32e5e822",
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
      "sha256": "255697ab4d55511389335efd6899298d2a3c924dfb912d7ef6143f042124c92b",
      "size": 150168,
    },
    "linux-arm64-glibc": {
      "sha256": "c1d3351527bf554456d0f977d4ac7a30b9b6fe66aa2203c6d9a85e3f9a56ff15",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "4fd43c1326956ff80df65ae71919d7a434b17633a1ed39990b94622443d6a2ab",
      "size": 149936,
    },
    "linux-arm64-musl": {
      "sha256": "03648f5f877d997448efa499ea97556b2602dc910b6f084b0b7270bb4430f852",
      "size": 199024,
    },
  },
};
