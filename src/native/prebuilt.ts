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
    "sha256": "0e3cc8527be0bebe5165ae54a3a900e48c3129e77ac54ac89d0098af3eb37d91",
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
      "sha256": "9e6314ffaf20c1c94b761710fcf8a68e5a778a325cdb7e50637d8a147635e667",
      "size": 154280,
    },
    "linux-arm64-glibc": {
      "sha256": "c40a30cd89c2ff0c5622ad20f45b315a0c4994cc9aea498aef8b404b3da7ef27",
      "size": 199288,
    },
    "linux-x64-musl": {
      "sha256": "cad2aabd897d48c3bac6a5eb736e4fef5aa7d9cc84d3b14240c7b57817cba0d6",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "4394a015da1aa2e0bbac01bbff003fdbddb6296ee1a98fb8859cb613af975193",
      "size": 199024,
    },
  },
};
