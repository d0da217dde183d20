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
    "sha256": "747f6a88f44984845ea51ce199a85a194140e12507b389670b85eba32499ccd1",
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
      "sha256": "e6c8f1952b413c0202d69773e93b1a3b814992e61ae633e9424fa49f4df164f8",
      "size": 141936,
    },
    "linux-arm64-glibc": {
      "sha256": "902089d161ddfaceb1f2edde4d2251a728f363ae8026743b18c2720645299cfc",
      "size": 133696,
    },
    "linux-x64-musl": {
      "sha256": "01b631a6e434ed85ab408cbe74f16ef51f84ef36be6a8dc6edffb275b9288070",
      "size": 137608,
    },
    "linux-arm64-musl": {
      "sha256": "48cbd9fea6ec714ad8e152a795b6b73562aa6701162eec05cba342895c156e8e",
      "size": 133448,
    },
  },
};
