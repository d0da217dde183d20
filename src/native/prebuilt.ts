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
    "sha256": "fc58bce86d218581b920e1465d96e7dcc6bc17b483ef2dd221a22d630d46229e",
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
      "src/router.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "1c8d099816c8d210ee7fe0b09ad01240de0bee72ef829300ac722cf090631920",
      "size": 84528,
    },
    "linux-arm64-glibc": {
      "sha256": "e4d44bf349ceb50909f19ef863aa5a2a045c2ec359f4f80a1758c74b691624b5",
      "size": 133632,
    },
    "linux-x64-musl": {
      "sha256": "fa94e87383c5ba75d40aa628abedeb2286372afb1e68dee791d891348dde33dd",
      "size": 88384,
    },
    "linux-arm64-musl": {
      "sha256": "a5f01d01266be5e65af059990c08d9ac980bef208ba8f05ea324348a73c27313",
      "size": 133376,
    },
  },
};
