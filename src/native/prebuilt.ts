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
    "sha256": "bfe562885e6afb02b94c813a92ea0a6817484a1bd86fc507d8f0a22d2ada0659",
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
      "sha256": "5def0c94074c5bb1e440b67b23455a1188a2c1d8ec4b0ca14c9afa7c46adcf4d",
      "size": 154264,
    },
    "linux-arm64-glibc": {
      "sha256": "8e4c37f9b4c5d48d95e18733b2e3e344df8b4ad32f4c426c4c6b28b320fe0c02",
      "size": 199272,
    },
    "linux-x64-musl": {
      "sha256": "da06c70ea99f178af9f4f240680fb3a6d5aabac6f079717e61748773351132d3",
      "size": 154032,
    },
    "linux-arm64-musl": {
      "sha256": "98313bf6d8985fb261a43c79aeccf1080330db0997bce93620c69b0ee5200f83",
      "size": 199024,
    },
  },
};
