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
    "sha256": "2bd7ff55be93f1c87d647f70a96cf3fd54871ae3371e40d01763e918cd9c0f59",
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
      "src/listen.c",
      "src/pool.c",
      "src/relay.c",
    ],
  },
  "libraries": {
    "linux-x64-glibc": {
      "sha256": "4371ba2c14b9d291f061070ee023e36b21bd4b8a112c45c533cf27231fb300f6",
      "size": 59808,
    },
    "linux-arm64-glibc": {
      "sha256": "4dba2f7483a4745d8b7eb0c6ddfc6cb8528af3df90529b3cdc2191c5aafe6585",
      "size": 67952,
    },
    "linux-x64-musl": {
      "sha256": "6849bacfaa462b7797dc54ad7c677faea0df0268f8239c12b7798b36a68cfb0e",
      "size": 59576,
    },
    "linux-arm64-musl": {
      "sha256": "f77ea58113ec751dfe8773c0b69970344e3f9a30e60d8a7bf09fc682c50a9fc0",
      "size": 67696,
    },
  },
};
