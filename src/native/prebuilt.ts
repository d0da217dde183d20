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
    "sha256": "fff3c46f69a44262ec133f7f537d4aa0a7f083803533843e974794794f3a8f68",
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
      "sha256": "38b1802c7ef40fe3936fe151e17a5c8fd41f1f61b5fcae6f9e950b12d9fc7aa6",
      "size": 146048,
    },
    "linux-arm64-glibc": {
      "sha256": "24f046c19bbf9c5539b4b195b459afe114706442edd41ecfaefa339a7707147c",
      "size": 199248,
    },
    "linux-x64-musl": {
      "sha256": "7818ce466f91ed0b2864c4d8922d760632e6d501bb40a3f96e44e82ebd73df4c",
      "size": 141720,
    },
    "linux-arm64-musl": {
      "sha256": "e0c3ece7326ff00fe2ee12f9f08bee0d336190d17568827bebf1a639c2b9a1f2",
      "size": 199000,
    },
  },
};
