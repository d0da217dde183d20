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
    "sha256": "b34804d3cc23685038f59d965eb6c7e47b2d2c11fc585237ff3f5fac60b5f01b",
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
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "c791b24dba2c70418fb61124743ccd3ec330c099b7a10f836bbce068e870f4ce",
      "size": 76288,
    },
    "linux-arm64-glibc": {
      "sha256": "39efad9a707f47784beedffa26efd0af95a0560c51fc087e2b9a94c7ddb8bfb5",
      "size": 68048,
    },
    "linux-x64-musl": {
      "sha256": "e3234fbfe83e9bb64cfd5d9457b2518b666227aa39d425d5b1e9c7f498384734",
      "size": 76056,
    },
    "linux-arm64-musl": {
      "sha256": "616f64c03ebac8702db5efc8155f50089cdf14a3874dbc093e84529b85cb5d6a",
      "size": 67800,
    },
  },
};
