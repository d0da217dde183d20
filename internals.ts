/**
 * relaykit's internals, for engine authors and protocol tests: the
 * interface both engines implement, held connections and their decisions,
 * the native engine's events, engine selection, and the tunnel's wire
 * format. Not covered by the stability promise of the main entry point
 * (`@relaykit/relaykit`); applications should not need anything here.
 *
 * @example Frame a tunnel PING
 * ```ts
 * import { decodeFrame, encodeFrame } from "@relaykit/relaykit/internals";
 *
 * const r = decodeFrame(encodeFrame({ type: "window", stream: 7, credit: 65536 }));
 * console.log("frame" in r && r.frame.type); // "window"
 * ```
 *
 * @module
 */
export {
  ArraySnapshot,
  type EventInterest,
  type ForwardEngine,
  type FrontResult,
  type HeldConnection,
  type HeldUpdate,
  type HoldDecision,
  type ProxyCallbacks,
  type ProxyFront,
  type ProxyHandle,
  type ProxySpec,
} from "./src/forward/types.ts";
export {
  type CloseDecision,
  type ConnectDecision,
  type EngineKind,
  type FileDecision,
} from "./src/decision.ts";
export { chooseEngine, chooseTlsEngine, type EngineChoice } from "./src/forward/select.ts";
export { type Handler, type NativeEvent } from "./src/native/engine.ts";
export { type HookDirection } from "./src/native/events.ts";
export { type EngineRouter, type RuleTable, type TableRule } from "./src/native/router.ts";
export { OPEN_FLAGS } from "./src/native/fds.ts";
export { Emitter } from "./src/emitter.ts";
export {
  decodeFrame,
  destinationProblem,
  encodeFrame,
  FRAME_HEADER_SIZE,
  FRAME_TYPES,
  FrameDecoder,
  MAX_FRAME_PAYLOAD,
  NONCE_SIZE,
  TUNNEL_MAGIC,
  TUNNEL_VERSIONS,
  type TunnelDestination,
  type TunnelFrame,
  type TunnelProblem,
  TunnelProtocolError,
} from "./src/tunnel/frame.ts";
export { LINK_HELD_MAX } from "./src/tunnel/link.ts";
