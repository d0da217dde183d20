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
    "sha256": "d135899fc2cc688b5e3b01d430e9806b5b7fb91f6d8eef2efe521b1ab4e0beef",
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
      "sha256": "c053981c3a28fd4179378e81503bf875559c41a3ff1cd2880317dffa7ce877d3",
      "size": 141936,
    },
    "linux-arm64-glibc": {
      "sha256": "45277ca78591591b5dd504cbb023ed1bb6de77e24ed04359418d505f249f07e8",
      "size": 133696,
    },
    "linux-x64-musl": {
      "sha256": "bf78d480c4415e1ff3297e191c76ed17378ea70cd14e00ffa6666db1629d6f65",
      "size": 137608,
    },
    "linux-arm64-musl": {
      "sha256": "3348bc0afad98e9dd72abea5478d3430895204c6250ce5a2fe8973150c1f2de8",
      "size": 133448,
    },
  },
};
