/**
 * The Node adapter: Node has no FFI, so only the stream engine runs here.
 *
 * @module
 */
import process from "node:process";
import { processLibc } from "./libc.ts";
import { nodeNet } from "./node_net.ts";
import type { NativeLibrary, Runtime } from "./types.ts";

/** Node.js: no FFI; the stream engine runs on node:net. */
export const nodeRuntime: Runtime = {
  name: "node",
  version: process.versions.node ?? "unknown",
  ffi: false,
  libc: processLibc(),
  granted: () => true,
  net: nodeNet,
  dlopen(): NativeLibrary {
    throw new Error(
      "Node.js cannot load native libraries without an addon: the native engine runs on Deno and Bun",
    );
  },
};
