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
    "sha256": "e2d82158a8cea50686df79e9f5b7c9f3638bb3f075b8d3df8da4fb8ba76346da",
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
      "sha256": "8edf60a7d9d8478d294752c22ba71e5ff3d80e3fc275b1e96cd5fbfb20d5f3d1",
      "size": 154264,
    },
    "linux-arm64-glibc": {
      "sha256": "700f1e1c03801964df545f97548eefabbf3ef26e9307214a56c28c269099aa96",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "066af8ff00e740feb10fa45ca5f484a0b303044875a77496f4e588e1dbf45756",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "a6074ecec1fedf6680f1a878dcf203e44914dbcbe21e7e700912864c0290b346",
      "size": 199024,
    },
  },
};
