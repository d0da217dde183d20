/**
 * The one symbol table of the native library, shared by Deno.dlopen and
 * bun:ffi. Each entry carries the C prototype from native/include/relaykit.h
 * beside it. The names of the types are Deno's; src/runtime/bun.ts
 * translates them for bun:ffi in one place.
 *
 * Strings travel as NUL-terminated UTF-8 in a Uint8Array ("buffer"), out
 * values as typed arrays ("buffer"), handles as int32. The one address
 * that reaches JavaScript is a hook batch's, in its event record: the
 * runtime adapter turns it into an ArrayBuffer (NativeLibrary.lend).
 *
 * @module
 */

/** The native types the table uses. */
export type NativeType = "i32" | "u32" | "f64" | "buffer" | "function" | "void";

/** One entry of the table. */
export interface SymbolDef {
  readonly parameters: readonly NativeType[];
  readonly result: NativeType;
  /** Deno only: run on a helper thread and return a Promise. */
  readonly nonblocking?: boolean;
}

/** The relaykit C API as seen from TypeScript. */
export const SYMBOLS = {
  // int32_t rk_version(void)
  rk_version: { parameters: [], result: "i32" },
  // int32_t rk_strerror_r(int32_t err, char *buf, int32_t len)
  rk_strerror_r: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_err_name_r(int32_t err, char *buf, int32_t len)
  rk_err_name_r: { parameters: ["i32", "buffer", "i32"], result: "i32" },

  // int32_t rk_layout(const char *name, int32_t *out, int32_t cap)
  rk_layout: { parameters: ["buffer", "buffer", "i32"], result: "i32" },

  // int32_t rk_engine_new(int32_t threads, int32_t max_conns)
  rk_engine_new: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t rk_engine_close(int32_t h)
  rk_engine_close: { parameters: ["i32"], result: "i32" },
  // int32_t rk_engine_free(int32_t h)
  rk_engine_free: { parameters: ["i32"], result: "i32" },
  // int32_t rk_engine_threads(int32_t h)
  rk_engine_threads: { parameters: ["i32"], result: "i32" },
  // int32_t rk_engine_wait(int32_t h, int32_t timeout_ms) -- blocks
  rk_engine_wait: {
    parameters: ["i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // int32_t rk_engine_wake(int32_t h)
  rk_engine_wake: { parameters: ["i32"], result: "i32" },
  // int32_t rk_engine_set_notify(int32_t h, void (*cb)(void))
  rk_engine_set_notify: { parameters: ["i32", "function"], result: "i32" },
  // int32_t rk_engine_drain_held(int32_t h, uint32_t *out, int32_t max_events,
  //                              uint8_t *held, int32_t held_cap, int32_t *spans)
  rk_engine_drain_held: {
    parameters: ["i32", "buffer", "i32", "buffer", "i32", "buffer"],
    result: "i32",
  },
  // int32_t rk_engine_stats(int32_t h, double *out)
  rk_engine_stats: { parameters: ["i32", "buffer"], result: "i32" },
  // int32_t rk_test_post(int32_t h, int32_t threads, int32_t count)
  rk_test_post: { parameters: ["i32", "i32", "i32"], result: "i32" },

  // int32_t rk_listen(int32_t h, const char *host, int32_t port,
  //                   const rk_listen_opts_t *opts)
  rk_listen: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  // int32_t rk_listener_port(int32_t h, int32_t lid)
  rk_listener_port: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t rk_listener_dup(int32_t h, int32_t lid)
  rk_listener_dup: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t rk_listener_set_target(int32_t h, int32_t lid, const char *host,
  //   int32_t port, int32_t family, int32_t timeout_ms, const char *bind_host)
  rk_listener_set_target: {
    parameters: ["i32", "i32", "buffer", "i32", "i32", "i32", "buffer"],
    result: "i32",
  },
  // int32_t rk_listener_start(int32_t h, int32_t lid)
  rk_listener_start: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t rk_listener_close(int32_t h, int32_t lid)
  rk_listener_close: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t rk_listener_set_events(int32_t h, int32_t lid, uint32_t mask)
  rk_listener_set_events: { parameters: ["i32", "i32", "u32"], result: "i32" },
  // int32_t rk_listener_set_hold_first(int32_t h, int32_t lid, int32_t max)
  rk_listener_set_hold_first: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int32_t rk_listener_set_hold_wait(int32_t h, int32_t lid, int32_t on)
  rk_listener_set_hold_wait: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int32_t rk_listener_abort(int32_t h, int32_t lid)
  rk_listener_abort: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t rk_listener_active(int32_t h, int32_t lid)
  rk_listener_active: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t rk_listener_counters(int32_t h, int32_t lid, uint32_t *out)
  rk_listener_counters: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  // int32_t rk_listener_conns(int32_t h, int32_t lid, uint32_t *out, int32_t max)
  rk_listener_conns: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },

  // int32_t rk_relay_fds(int32_t h, int32_t ra, int32_t wa, int32_t rb,
  //                      int32_t wb, const rk_relay_opts_t *opts)
  rk_relay_fds: {
    parameters: ["i32", "i32", "i32", "i32", "i32", "buffer"],
    result: "i32",
  },
  // int32_t rk_conn_close(int32_t h, int32_t id, int32_t mode)
  rk_conn_close: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int32_t rk_conn_stats(int32_t h, int32_t id, double *out)
  rk_conn_stats: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  // int32_t rk_connect_fd(int32_t h, const char *host, int32_t port,
  //   int32_t family, int32_t timeout_ms, const char *bind_host)
  rk_connect_fd: {
    parameters: ["i32", "buffer", "i32", "i32", "i32", "buffer"],
    result: "i32",
  },

  // int32_t rk_hook_return(int32_t h, uint32_t token, const uint8_t *data,
  //                        int32_t len, int32_t off, uint32_t flags)
  rk_hook_return: {
    parameters: ["i32", "u32", "buffer", "i32", "i32", "u32"],
    result: "i32",
  },
  // int32_t rk_hook_gift(int32_t h, uint32_t token)
  rk_hook_gift: { parameters: ["i32", "u32"], result: "i32" },
  // void rk_hook_gift_free_address(uint32_t out[2])
  rk_hook_gift_free_address: { parameters: ["buffer"], result: "void" },
  // int32_t rk_malloc_tune(void)
  rk_malloc_tune: { parameters: [], result: "i32" },
  // int32_t rk_conn_peer(int32_t h, int32_t id, char *buf, int32_t cap)
  rk_conn_peer: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },

  // int32_t rk_hold_read(int32_t h, int32_t id, int32_t max)
  rk_hold_read: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int32_t rk_hold_write(int32_t h, int32_t id, const uint8_t *data, int32_t len)
  rk_hold_write: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_hold_take(int32_t h, int32_t id, uint8_t *out, int32_t cap)
  rk_hold_take: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_hold_decide(int32_t h, int32_t id, const char *host,
  //   const char *bind_host, const rk_decision_t *decision,
  //   const uint8_t *to_b, int32_t to_b_len, const uint8_t *to_a,
  //   int32_t to_a_len)
  rk_hold_decide: {
    parameters: ["i32", "i32", "buffer", "buffer", "buffer", "buffer", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_hold_submit(int32_t h, const uint8_t *buf, int32_t len)
  rk_hold_submit: { parameters: ["i32", "buffer", "i32"], result: "i32" },

  // int32_t rk_listener_set_router(int32_t h, int32_t lid,
  //   const uint8_t *desc, int32_t len)
  rk_listener_set_router: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_router_check(const uint8_t *desc, int32_t len,
  //   const uint8_t *host, int32_t host_len, int32_t port,
  //   const char *resolved, char *out, int32_t cap)
  rk_router_check: {
    parameters: ["buffer", "i32", "buffer", "i32", "i32", "buffer", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_listener_set_proxy(int32_t h, int32_t lid,
  //   const rk_proxy_opts_t *opts, const uint8_t *ranges, int32_t ranges_len,
  //   const uint8_t *tlvs, int32_t tlvs_len)
  rk_listener_set_proxy: {
    parameters: ["i32", "i32", "buffer", "buffer", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_listener_drop_proxy(int32_t h, int32_t lid)
  rk_listener_drop_proxy: { parameters: ["i32", "i32"], result: "i32" },
  // int32_t rk_proxy_parse(const uint8_t *buf, int32_t len, int32_t mode,
  //                        int32_t *out)
  rk_proxy_parse: { parameters: ["buffer", "i32", "i32", "buffer"], result: "i32" },
  // int32_t rk_proxy_error_r(int32_t code, char *buf, int32_t len)
  rk_proxy_error_r: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_router_table_check(const uint8_t *desc, int32_t len,
  //   const uint8_t *data, int32_t n, char *out, int32_t cap)
  rk_router_table_check: {
    parameters: ["buffer", "i32", "buffer", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_tunnel_new(int32_t h, int32_t fd, int32_t conn_id)
  rk_tunnel_new: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int32_t rk_tunnel_new_tls(int32_t h, int32_t fd, int32_t conn_id,
  //   int32_t ctx, int32_t flags, const char *servername)
  rk_tunnel_new_tls: {
    parameters: ["i32", "i32", "i32", "i32", "i32", "buffer"],
    result: "i32",
  },
  // int32_t rk_tunnel_take(int32_t h, int32_t tid, uint8_t *out, int32_t cap)
  rk_tunnel_take: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_tunnel_send(int32_t h, int32_t tid, const uint8_t *data, int32_t len)
  rk_tunnel_send: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_tunnel_attach(int32_t h, int32_t tid, int32_t flags,
  //   int32_t window, const uint8_t *replay, int32_t len)
  rk_tunnel_attach: {
    parameters: ["i32", "i32", "i32", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_tunnel_open(int32_t h, int32_t tid, uint32_t sid,
  //   int32_t conn_id, const uint8_t *frame, int32_t len)
  rk_tunnel_open: {
    parameters: ["i32", "i32", "u32", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_tunnel_accept(int32_t h, int32_t tid, uint32_t sid, int32_t fd,
  //   const uint8_t *frame, int32_t len)
  rk_tunnel_accept: {
    parameters: ["i32", "i32", "u32", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_tunnel_stream_close(int32_t h, int32_t tid, uint32_t sid,
  //   int32_t mode, const uint8_t *frame, int32_t len)
  rk_tunnel_stream_close: {
    parameters: ["i32", "i32", "u32", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_tunnel_close(int32_t h, int32_t tid, int32_t mode)
  rk_tunnel_close: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int32_t rk_tunnel_stats(int32_t h, int32_t tid, uint32_t sid, double *out)
  rk_tunnel_stats: { parameters: ["i32", "i32", "u32", "buffer"], result: "i32" },

  // int32_t rk_fd_pipe(int32_t *out)
  rk_fd_pipe: { parameters: ["buffer"], result: "i32" },
  // int32_t rk_fd_socketpair(int32_t *out)
  rk_fd_socketpair: { parameters: ["buffer"], result: "i32" },
  // int32_t rk_fd_open(const char *path, int32_t flags, int32_t mode)
  rk_fd_open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  // int32_t rk_fd_write(int32_t fd, const uint8_t *buf, int32_t len)
  rk_fd_write: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_fd_read(int32_t fd, uint8_t *buf, int32_t len)
  rk_fd_read: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_fd_shutdown_write(int32_t fd)
  rk_fd_shutdown_write: { parameters: ["i32"], result: "i32" },
  // int32_t rk_fd_close(int32_t fd)
  rk_fd_close: { parameters: ["i32"], result: "i32" },
  // int32_t rk_fd_sockname(int32_t fd, char *host, int32_t len, int32_t *port)
  rk_fd_sockname: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  // int32_t rk_sd_notify(const char *path, const char *state)
  rk_sd_notify: { parameters: ["buffer", "buffer"], result: "i32" },

  // int32_t rk_tls_load(const char *path, char *reason, int32_t cap)
  rk_tls_load: { parameters: ["buffer", "buffer", "i32"], result: "i32" },
  // int32_t rk_tls_server_ctx(const char *cert_pem, const char *key_pem,
  //                           char *err, int32_t cap)
  rk_tls_server_ctx: { parameters: ["buffer", "buffer", "buffer", "i32"], result: "i32" },
  // int32_t rk_tls_client_ctx(const char *ca_pem, int32_t verify, char *err,
  //                           int32_t cap)
  rk_tls_client_ctx: { parameters: ["buffer", "i32", "buffer", "i32"], result: "i32" },
  // int32_t rk_tls_ctx_free(int32_t ctx)
  rk_tls_ctx_free: { parameters: ["i32"], result: "i32" },
  // int32_t rk_listener_set_tls(int32_t h, int32_t lid, int32_t ctx)
  rk_listener_set_tls: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int32_t rk_hold_set_tls(int32_t h, int32_t id, int32_t ctx,
  //                         const char *servername)
  rk_hold_set_tls: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // int32_t rk_tls_cert_failure(int32_t h, int32_t id, char *said,
  //   int32_t said_cap, uint8_t *der, int32_t cap)
  rk_tls_cert_failure: {
    parameters: ["i32", "i32", "buffer", "i32", "buffer", "i32"],
    result: "i32",
  },
  // int32_t rk_tls_stats(double *out)
  rk_tls_stats: { parameters: ["buffer"], result: "i32" },
} as const satisfies Record<string, SymbolDef>;

/** The table's type. */
export type SymbolTable = typeof SYMBOLS;

/** The typed arrays passed where the C side takes a pointer. */
export type NativeBuffer = Uint8Array | Int32Array | Uint32Array | Float64Array;

/** What a parameter or result of a native type is in JavaScript. */
type JsType<T extends NativeType> = T extends "buffer" ? NativeBuffer
  // callbacks are registered by the runtime adapters only
  : T extends "function" ? never
  : T extends "void" ? void
  : number;

type JsParams<P extends readonly NativeType[]> = {
  -readonly [K in keyof P]: JsType<P[K]>;
};

type JsFunction<D extends SymbolDef> = (
  ...args: JsParams<D["parameters"]>
) => D["nonblocking"] extends true
  // a Promise on Deno; a plain (blocking) call where nonblocking is unknown
  ? Promise<JsType<D["result"]>> | JsType<D["result"]>
  : JsType<D["result"]>;

/** The bound functions of a loaded library, typed from the table. */
export type NativeSymbols = {
  readonly [K in keyof SymbolTable]: JsFunction<SymbolTable[K]>;
};

/** Size in 32-bit words of one event record (RK_EVENT_WORDS). */
export const EVENT_WORDS = 16;

/** Event types (rk_event_type_t). */
export const EV = {
  ACCEPT: 1,
  CONNECTED: 2,
  CLOSED: 3,
  REJECTED: 4,
  ACCEPT_ERROR: 5,
  LISTENER_CLOSED: 6,
  FD_CONNECTED: 7,
  LISTENER_DRAINED: 8,
  HOOK: 9,
  HOLD: 10,
  ROUTE_FAILED: 11,
  ROUTE_TARGET: 12,
  PROXY: 13,
  TUNNEL: 14,
  TEST: 99,
} as const;

/** Kinds of RK_EV_TUNNEL record (RK_TEV_*, word 4). */
export const TEV = { RX: 1, STREAM_END: 2, LINK_END: 3, PROTOCOL: 4, TLS_UP: 5 } as const;

/** How a tunnel stream ended (RK_TEND_*). */
export const TEND = { DONE: 1, RESET: 2 } as const;

/** Protocol errors a tunnel found (RK_TPROB_*). */
export const TPROB = {
  MALFORMED: 1,
  STATE: 2,
  FLOW: 3,
  OVERSIZE: 4,
  UNKNOWN_TYPE: 5,
  DATA_AFTER_FIN: 6,
  SECOND_FIN: 7,
  CREDIT_OVERFLOW: 8,
} as const;

/** Why a connection ended (rk_end_reason_t). */
export const END = {
  DONE: 1,
  RESET: 2,
  IDLE_TIMEOUT: 3,
  CLOSED: 4,
  CONNECT_FAILED: 5,
  ENGINE_CLOSED: 6,
  HOLD_TIMEOUT: 7,
} as const;

/** Flags of an RK_EV_HOLD record (RK_HOLD_*). */
export const HOLD = { FIRST: 1, EOF: 2, FULL: 4, RETRY: 8, ROUTED: 16 } as const;
/** Where the replies a router sent sit in RK_EV_HOLD's flags (RK_HOLD_SENT_SHIFT). */
export const HOLD_SENT_SHIFT = 8;

/** Decisions of rk_hold_decide (RK_DECIDE_*). */
export const DECIDE = { CONNECT: 1, CLOSE: 2, FILE: 3 } as const;

/** Record types of rk_hold_submit (RK_HOLD_OP_*). */
export const HOLD_OP = { READ: 1, WRITE: 2, DECIDE: 3 } as const;

/** Flags of rk_decision_t (RK_DECISION_*). */
export const DECISION_FLAGS = { RETRY: 1 } as const;

/** Connection states of rk_conn_stats (RK_STATE_*). */
export const STATE = { CONNECTING: 0, RELAYING: 1, CLOSING: 2, HELD: 4 } as const;

/** The name of each RK_STATE_* value (anything else: "closing"). */
export const STATE_NAMES: Readonly<Record<number, "connecting" | "relaying" | "closing" | "held">> =
  { 0: "connecting", 1: "relaying", 2: "closing", 4: "held" };

/** Per-connection events a listener posts (RK_EVMASK_*). */
export const EVMASK = { ACCEPT: 1, CONNECTED: 2, CLOSED: 4, ORIGINAL: 8 } as const;

/** PROXY header modes and flags of rk_listener_set_proxy (RK_PROXY_*). */
export const PROXY = {
  DETECT: 0,
  V1: 1,
  V2: 2,
  /** rk_proxy_parse only: never a header. */
  NONE: 3,
  UNTRUSTED_PASS: 1,
  SEND_CRC32C: 2,
  SEND_UNIQUE_ID: 4,
} as const;

/** Flags of rk_hook_return (RK_HOOK_*): send part of the lent batch; its memory is kept. */
export const HOOK_RETURN = { LENT: 1, KEPT: 2 } as const;

/** Relay flags (RK_RELAY_*): keep fds, hooked directions. */
export const RELAY_FLAGS = { KEEP_FDS: 1, HOOK_AB: 2, HOOK_BA: 4 } as const;

/** Flags of rk_listen. */
export const LISTEN_FLAGS = { REUSEADDR: 1, REUSEPORT: 2, V6ONLY: 4, HOLD: 8, ADOPT: 16 } as const;

/** Address family preferences of outbound connects. */
export const FAMILY = {
  any: 0,
  preferV4: 1,
  preferV6: 2,
  onlyV4: 3,
  onlyV6: 4,
} as const;

/** The library version this table was written for, as rk_version() gives. */
export const NATIVE_VERSION = (0 << 16) | (3 << 8) | 0;
