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
    "sha256": "5d3c657d773378affa94fd8a7742c1a75ef1b38eeaa45f37cfce27d700571a65",
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
      "sha256": "5e1441748e625827694907e94297c9dfe5d63cddfe8fb11c04aebdca01b46b97",
      "size": 150168,
    },
    "linux-arm64-glibc": {
      "sha256": "b775e80ca13a574ae353983aad5442eab56b30e51c1cc9966f6a0a337b2af653",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "9216fd1aaaa55177b0445c3c5da4f8866431b753c17b9e3e520a75e462911164",
      "size": 149936,
    },
    "linux-arm64-musl": {
      "sha256": "69632824ba3a38bb278841d062bc531701fb66d47b31e4f1598cd16667076747",
      "size": 199024,
    },
  },
};
