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
    "sha256": "cbb6070f7f375651599644d21ee4ea59d13037b451eb956c4f7d23138e70ecd1",
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
      "sha256": "eb49beddeb9b06bff7996ffb748d010e52bee1fae2ae6f69c9bea0f626bd4515",
      "size": 150224,
    },
    "linux-arm64-glibc": {
      "sha256": "8f17476416dc7b480a338ce669c5234131ef0f2a99156c1b3191df59bdbc7f63",
      "size": 199328,
    },
    "linux-x64-musl": {
      "sha256": "c0e2911627d75775d8786017553ad6a02d594cdf4996a6e55b49c67c357ecc0c",
      "size": 149992,
    },
    "linux-arm64-musl": {
      "sha256": "953deb8259364651daac105534f247957af7090af8358701d17523cc8c89e5b3",
      "size": 199088,
    },
  },
};
