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
    "sha256": "45be66d47a1d313793134d2ce4a98aeec8d62b5c08260c0a01d32f6f5e4cf66f",
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
      "sha256": "3393182528659f7606e063a6f89a79f5b6063863f42e88e7f27eafd8146fa952",
      "size": 154264,
    },
    "linux-arm64-glibc": {
      "sha256": "ae0c8fa5ac0bd74b475af38d253402c7c0826dd27dfdea0f2854472d71406b63",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "fda64079f31bf347382296468d8ccfb17598361157d1ebea569a2539de38b848",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "6d3f7c24b20806b1a5c2b4ee93b7b480697a05bf0b9ea7aece3723e993cc61e4",
      "size": 199024,
    },
  },
};
