/**
 * relaykit: a proxy toolkit for TypeScript on Deno and Bun. A C library
 * moves the bytes in native worker threads (splice(2) where the kernel
 * allows); where it cannot load, the same API runs on the runtime's sockets.
 *
 * @example Forward a port
 * ```ts
 * import { TcpProxy } from "@relaykit/relaykit";
 *
 * const proxy = await TcpProxy.listen({
 *   listen: { host: "127.0.0.1", port: 0 },
 *   target: { host: "127.0.0.1", port: 5432 },
 * });
 * console.log(`port ${proxy.port}, ${proxy.engine} engine`);
 * await proxy.close();
 * ```
 *
 * What engine authors and protocol tests need (the engine interface, held
 * connections and their decisions, native events, the tunnel's wire
 * format) is at `@relaykit/relaykit/internals`, outside this API's
 * stability promise.
 *
 * @module
 */
export { NativeLoadError, RelaykitError } from "./src/errors.ts";
export {
  type ConnectionEnd,
  type ConnectionInfo,
  type ConnectionSnapshot,
  type ConnectionStats,
  type Counters,
  type DirectionCounters,
  type Endpoint,
  type EndReason,
  type FamilyPreference,
  formatEndpoint,
  type InetEndpoint,
  type ListenerTotals,
  type OpenConnection,
  type OriginalInfo,
  type ProxyTotals,
  type TlsClientOptions,
  type TlsServerOptions,
} from "./src/forward/types.ts";
export { type AcceptProxyOptions } from "./src/proxy/accept_proxy.ts";
export { type RouteBytes, type RouteResult } from "./src/decision.ts";
export { type RouteConnection, type RouteFunction } from "./src/proxy/routing.ts";
export { type SendProxyOptions } from "./src/types.ts";
export { type Cidr, cidrContains, inRanges, parseCidr } from "./src/protocol/cidr.ts";
export {
  Access,
  type AccessRule,
  type Admission,
  classifyHost,
  type HostClass,
  type NormalAddress,
  normalizeAddress,
  type Resolver,
  systemResolver,
} from "./src/proxy/address_policy.ts";
export { httpConnectRouter, type RouterOptions, socksRouter } from "./src/proxy/socks.ts";
export { routeTable, type RouteTableEntry } from "./src/proxy/route_table.ts";
export { type EnginePreference } from "./src/forward/select.ts";
export { TcpProxy, type TcpProxyEvents, type TcpProxyOptions } from "./src/proxy/tcp_proxy.ts";
export {
  Backend,
  type BackendOptions,
  type BalanceMode,
  Server,
  type ServerAdminState,
  type ServerCheck,
  type ServerOptions,
} from "./src/proxy/balance.ts";
export { Relay, relay, type RelayOptions, type RelaySide } from "./src/proxy/relay.ts";
export { parseEndpoint } from "./src/types.ts";
export {
  type DataHook,
  type DataHooks,
  type Direction,
  type HookContext,
} from "./src/forward/hooks.ts";
export { NativeEngine, type NativeEngineOptions } from "./src/native/engine.ts";
export { type NativeEngineStats, type NativeTlsStats } from "./src/native/calls.ts";
export {
  closeFd,
  connectFd,
  type ConnectFdOptions,
  OPEN_FLAGS,
  openFile,
  openPipe,
  openSocketPair,
  readFd,
  shutdownWriteFd,
  writeFd,
} from "./src/native/fds.ts";
export {
  type BuildOptions,
  buildProxyHeader,
  crc32c,
  type DecodedTlvs,
  decodeTlvs,
  type InetAddress,
  type ParseMode,
  parseProxyHeader,
  type ParseResult,
  type ProxyHeader,
  ProxyProtocolError,
  type SslInfo,
  TLV,
  type Tlv,
} from "./src/protocol/proxy_protocol.ts";
export {
  DEFAULT_WINDOW,
  type LinkCloseReason,
  type StreamEndReason,
  type TunnelStreamEnd,
  type TunnelStreamStats,
} from "./src/tunnel/link.ts";
export {
  TunnelServer,
  type TunnelServerEvents,
  type TunnelServerOptions,
} from "./src/tunnel/server.ts";
export {
  TunnelClient,
  type TunnelClientEvents,
  type TunnelClientOptions,
  type TunnelEntryListener,
  type TunnelListener,
} from "./src/tunnel/client.ts";
export type { TunnelUpdate } from "./src/tunnel/update.ts";
export { VERSION } from "./src/version.ts";
