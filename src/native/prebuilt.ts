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
    "sha256": "979f7f8c338b92340d2257e93baf685b6c7d650af2b51cdc936b57011739a5f4",
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
      "sha256": "b0d5d8a21862784a03d321b127db96ee0b3c088e7fd91ce9374d4a2a80a4cac0",
      "size": 141936,
    },
    "linux-arm64-glibc": {
      "sha256": "2d9a40aedc241686d0179393b0861afac7c108bdb7484995ec7d4578c0f602e1",
      "size": 133696,
    },
    "linux-x64-musl": {
      "sha256": "0389af7ca5be60e490702b402c0d6144fe3c05c54ed1f490cd4e9c28f5eb3b0d",
      "size": 137608,
    },
    "linux-arm64-musl": {
      "sha256": "79466eadf116a85efdba97ceac50f220f039e0488f3b8dff9886e39fae99a8c8",
      "size": 133448,
    },
  },
};
