/*
 * relaykit.h - the whole C API of the relaykit native engine.
 *
 * The library moves bytes between file descriptors in native worker threads
 * (splice(2) where the kernel allows it, read/write otherwise) and reports
 * what happens through an event queue that the host language drains in
 * batches. It never calls into the host language except for one optional
 * wake-up callback.
 *
 * Conventions
 * - Every function returns 0 (or a non-negative value) on success and a
 *   negative errno-style code on failure; rk_strerror()/rk_err_name() name it.
 * - Engines, listeners and connections are referred to by integer handles,
 *   never by pointers: a stale handle yields -ENOENT, not a crash.
 * - Strings are NUL-terminated UTF-8.
 * - "Thread safety" is stated per function. "Any thread" means the function
 *   may be called from any thread, concurrently with the engine's workers.
 */
#ifndef RELAYKIT_H
#define RELAYKIT_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RK_EXTERN __attribute__((visibility("default")))
#else
#define RK_EXTERN
#endif

#define RK_VERSION_MAJOR 0
#define RK_VERSION_MINOR 3
#define RK_VERSION_PATCH 0

/* Error codes beyond errno. Values are negative like the errno ones. */
#define RK_ERRNO_MAP(XX)                                                       \
  XX(ERESOLVE, -4001, "name resolution failed")                                \
  XX(ELIMIT, -4002, "connection limit reached")                                \
  XX(ECLOSED, -4003, "engine is closed")                                       \
  XX(EBADHANDLE, -4004, "no such engine handle")                              \
  XX(EPROXY, -4005, "PROXY protocol error")                                    \
  XX(EPROXY_UNTRUSTED, -4006, "PROXY protocol header from an untrusted address")\
  XX(ETLS, -4007, "TLS handshake or record failed")                            \
  XX(ENOTLS, -4008, "native TLS is not available")

typedef enum {
#define XX(name, value, text) RK_##name = value,
  RK_ERRNO_MAP(XX)
#undef XX
} rk_errno_t;

/* A TLS peer's certificate did not verify. Its name is "CERT_UNTRUSTED"
 * (no RK_ prefix): the code every runtime's TLS reports for it too. */
#define RK_ECERT_UNTRUSTED (-4009)
#define RK_ECERT_UNTRUSTED_TEXT "the TLS peer's certificate does not verify"

/* Event types in the event queue (word 0 of a record). */
typedef enum {
  RK_EV_ACCEPT = 1,       /* id=conn, aux=listener; words 6..11 peer address */
  RK_EV_CONNECTED = 2,    /* id=conn: outbound connect done, relay running */
  RK_EV_CLOSED = 3,       /* id=conn, aux=listener or 0; reason, err, counters */
  RK_EV_REJECTED = 4,     /* aux=listener, err: an accepted socket refused */
  RK_EV_ACCEPT_ERROR = 5, /* aux=listener, err: accept(2) failed (EMFILE...) */
  RK_EV_LISTENER_CLOSED = 6, /* aux=listener: its fd is closed */
  RK_EV_FD_CONNECTED = 7, /* id=request; word 2 the fd (>=0) or word 3 err */
  RK_EV_LISTENER_DRAINED = 8, /* aux=listener: closed and no connection left;
                                 its final counters (rk_listener_counters) */
  RK_EV_HOOK = 9, /* id=conn, aux=listener or 0: a batch of a hooked
                     direction is lent to the host; layout below */
  RK_EV_HOLD = 10, /* id=conn, aux=listener: a held connection waits for a
                      decision; layout below */
  RK_EV_ROUTE_FAILED = 11, /* id=conn, aux=listener, err: the connect a
                              built-in router decided failed (the failure
                              reply goes to the client, then it closes);
                              6 family, 7 port, 8..11 the address */
  RK_EV_ROUTE_TARGET = 12, /* id=conn, aux=listener, err: a connection a
                              built-in router sent to this target ends with
                              an error (its RK_EV_CLOSED follows); words as
                              RK_EV_ROUTE_FAILED */
  RK_EV_PROXY = 13, /* id=conn, aux=listener: the engine read the client's
                      PROXY header (rk_listener_set_proxy); layout below */
  RK_EV_TUNNEL = 14, /* id=tunnel, word 4 RK_TEV_*; layout below */
  RK_EV_TEST = 99         /* id=thread index, aux=sequence number */
} rk_event_type_t;

/* Why a connection ended (word 4 of RK_EV_CLOSED). */
typedef enum {
  RK_END_DONE = 1,           /* both directions reached EOF and drained */
  RK_END_RESET = 2,          /* a peer reset or an I/O error; see err */
  RK_END_IDLE_TIMEOUT = 3,   /* no byte moved for idle_timeout_ms */
  RK_END_CLOSED = 4,         /* closed by rk_conn_close() */
  RK_END_CONNECT_FAILED = 5, /* outbound connect failed; see err */
  RK_END_ENGINE_CLOSED = 6,  /* the engine was freed */
  RK_END_HOLD_TIMEOUT = 7    /* no decision within the listener's hold
                                timeout (err -ETIMEDOUT) */
} rk_end_reason_t;

/*
 * Event record layout: RK_EVENT_WORDS uint32 words.
 *   0 type            1 id               2 aux (listener id / fd)
 *   3 err (int32)     4 reason           5 duration in ms
 *   6 address family (ACCEPT)            7 peer port (ACCEPT)
 *   8..15 CLOSED: four uint64 counters as (lo, hi) pairs:
 *         bytes read a->b, written a->b, read b->a, written b->a
 *   8..11 ACCEPT: peer address bytes (4 for IPv4, 16 for IPv6)
 * Side "a" is the accepted/first fd, side "b" the outbound/second.
 *
 * RK_EV_HOLD: 3 local port (RK_HOLD_FIRST) or err (RK_HOLD_RETRY),
 *   4 RK_HOLD_* flags, 5 bytes held so far, 6 address family;
 *   RK_HOLD_FIRST only: 7 peer port, 8..11 peer address, 12..15 local
 *   address (the address the client connected to).
 * RK_EV_PROXY: 3 err: 0, RK_EPROXY or RK_EPROXY_UNTRUSTED (the connection
 *   is then closed: no CONNECT follows); 4 err == RK_EPROXY: the RK_PP_*
 *   code (rk_proxy_error_r), else the header (0: none, a header is sent
 *   on from the connection's addresses): version | command << 4
 *   (0 LOCAL, 1 PROXY) | transport << 8 (0 unspec, 1 stream, 2 dgram) |
 *   1 << 12 when words 6..15 are the header's addresses (else they are the
 *   connection's own, IPv4-mapped ones as IPv4) | 1 << 13 when the
 *   connection is handed to the host next (no target: an RK_EV_HOLD with
 *   RK_HOLD_FIRST follows, the header at the front of what is held);
 *   5 bytes held (error) or
 *   the header's length; 6 address family (0: none), 7 source port |
 *   destination port << 16, 8..11 source, 12..15 destination address.
 * RK_EV_FD_CONNECTED: 2 the fd (when err is 0), 3 err.
 * RK_EV_HOOK: 6 direction (0 a->b, 1 b->a), 7 length of the batch,
 *   8 its token (for rk_hook_return), 10..11 the address of its bytes
 *   as (lo, hi).
 */
#define RK_EVENT_WORDS 16

/* RK_EV_TUNNEL (rk_tunnel_*): word 1 the tunnel, 4 one of: */
#define RK_TEV_RX 1 /* bytes for the host wait: rk_tunnel_take (posted again
                       once a take emptied them) */
#define RK_TEV_STREAM_END 2 /* 2 stream id, 3 err, 5 duration in ms, 6
                               RK_TEND_*, 8..9 bytes socket->link, 10..11
                               bytes link->socket (u64 lo, hi) */
#define RK_TEV_LINK_END 3   /* 3 err (0: the peer closed it), 6 1 when it
                               closed inside a frame; the tunnel is gone */
#define RK_TEV_PROTOCOL 4   /* 2 stream id, 6 RK_TPROB_*, 7 and 8 details:
                               the peer broke the protocol; the tunnel
                               reads no more (the host says GOAWAY and
                               closes it) */
#define RK_TEV_TLS_UP 5     /* a TLS link's handshake is done
                               (rk_tunnel_new_tls): its bytes flow */
/* How a stream ended (word 6 of RK_TEV_STREAM_END). */
#define RK_TEND_DONE 1  /* FIN both ways, every byte delivered */
#define RK_TEND_RESET 2 /* its socket failed (err): RST sent, socket reset */
/* Protocol errors (word 6 of RK_TEV_PROTOCOL; 7, 8 as noted). */
#define RK_TPROB_MALFORMED 1        /* 7 frame type, 8 length */
#define RK_TPROB_STATE 2            /* a stream frame for a stream never
                                       opened */
#define RK_TPROB_FLOW 3             /* 7 DATA length, 8 the credit left */
#define RK_TPROB_OVERSIZE 4         /* 7 length */
#define RK_TPROB_UNKNOWN_TYPE 5     /* 7 type */
#define RK_TPROB_DATA_AFTER_FIN 6
#define RK_TPROB_SECOND_FIN 7
#define RK_TPROB_CREDIT_OVERFLOW 8

/* Which per-connection events a listener posts (rk_listener_set_events).
 * A connection that ends with an error always posts RK_EV_CLOSED, and so
 * does one the host held (RK_LISTEN_HOLD: the host keeps state for it),
 * unless a built-in router decided it alone. */
#define RK_EVMASK_ACCEPT 1u
#define RK_EVMASK_CONNECTED 2u
#define RK_EVMASK_CLOSED 4u
#define RK_EVMASK_ORIGINAL 8u /* RK_EV_PROXY for each accepted header
                                (errors always post) */
#define RK_EVMASK_ALL 15u

/* Flags for rk_listen(). */
#define RK_LISTEN_REUSEADDR 1u
#define RK_LISTEN_REUSEPORT 2u
#define RK_LISTEN_V6ONLY 4u
#define RK_LISTEN_HOLD 8u /* hold each accepted connection for rk_hold_* */
/* Accept on the inherited listening socket adopt_fd instead of binding
 * (socket activation). It is duplicated (the caller's fd stays open) and
 * the file of a Unix socket is not unlinked on close; host and port then
 * only name it; -EINVAL if it is not a listening stream socket. */
#define RK_LISTEN_ADOPT 16u

/* Flags of RK_EV_HOLD (word 4). */
#define RK_HOLD_FIRST 1u /* just accepted: nothing read yet */
#define RK_HOLD_EOF 2u   /* the client finished sending */
#define RK_HOLD_FULL 4u  /* the held bytes reached the asked maximum */
#define RK_HOLD_RETRY 8u /* a CONNECT decided with RK_DECISION_RETRY failed (err
                            in word 3): decide again; nothing was lost */
#define RK_HOLD_ROUTED 16u /* with RK_HOLD_FIRST: the listener's router
                              hands the connection to the host (see
                              rk_listener_set_router); bits 8..15 of the
                              flags: the handshake replies it already sent */
#define RK_HOLD_SENT_SHIFT 8

/* Decisions for rk_hold_decide(). */
#define RK_DECIDE_CONNECT 1 /* connect, then send to_b and relay */
#define RK_DECIDE_CLOSE 2   /* send to_a to the client, then close */
#define RK_DECIDE_FILE 3    /* send to_a, then a file, then close */

/* Address family preference for outbound connects. */
#define RK_FAMILY_ANY 0
#define RK_FAMILY_PREFER_V4 1
#define RK_FAMILY_PREFER_V6 2
#define RK_FAMILY_ONLY_V4 3
#define RK_FAMILY_ONLY_V6 4

/* Modes for rk_conn_close(). */
#define RK_CLOSE_GRACEFUL 0 /* stop reading, flush what was read, then FIN */
#define RK_CLOSE_ABORT 1    /* drop everything now, reset TCP peers */

/* Flags for rk_relay_fds(). */
#define RK_RELAY_KEEP_FDS 1u /* do not close the fds when the relay ends */
#define RK_RELAY_HOOK_AB 2u  /* direction a->b goes through the host's hook */
#define RK_RELAY_HOOK_BA 4u  /* direction b->a goes through the host's hook */

/* Connection states (rk_conn_stats out[6]). */
#define RK_STATE_CONNECTING 0 /* outbound connect under way */
#define RK_STATE_RELAYING 1   /* bytes move both ways */
#define RK_STATE_CLOSING 2    /* ending: flushing what was read */
#define RK_STATE_HELD 4       /* held on a RK_LISTEN_HOLD listener, undecided */

/*
 * Options cross the API as plain structs of fixed-size integers (no
 * pointers: strings travel as separate arguments). A binding writes them
 * field by field at the offsets C gives them; rk_layout() reports those
 * offsets so that a binding's table can be checked against this header.
 */

/* Options of rk_listen(). NULL: every field's default. */
typedef struct {
  int32_t backlog;         /* listen(2) backlog; <= 0: 511 */
  uint32_t flags;          /* RK_LISTEN_* */
  int32_t max_conns;       /* concurrent connections of this listener; 0:
                              no limit */
  int32_t idle_timeout_ms; /* end a connection after this long without a
                              byte moving; 0: never */
  uint32_t events;         /* RK_EVMASK_* of per-connection events to post
                              (default RK_EVMASK_ALL) */
  uint32_t hooks;          /* RK_RELAY_HOOK_AB | RK_RELAY_HOOK_BA: hooked
                              directions of every accepted connection (a is
                              the client) */
  int32_t hold_timeout_ms; /* RK_LISTEN_HOLD: end a connection left
                              undecided this long (RK_END_HOLD_TIMEOUT);
                              0: never */
  int32_t adopt_fd;        /* RK_LISTEN_ADOPT: the inherited listening
                              socket to accept on */
} rk_listen_opts_t;

/* Options of rk_relay_fds(). NULL: every field's default. */
typedef struct {
  uint32_t flags;          /* RK_RELAY_* */
  int32_t idle_timeout_ms; /* end the relay after this long without a byte
                              moving; 0: never */
} rk_relay_opts_t;

/* Flags of rk_decision_t. */
#define RK_DECISION_RETRY 1u /* CONNECT: if the connect fails, hold the
                              connection again (an RK_EV_HOLD with
                              RK_HOLD_RETRY) instead of ending it */

/* A decision for a held connection (rk_hold_decide()). Fields marked with
 * an action are read for that action only. */
typedef struct {
  int32_t action;             /* RK_DECIDE_* */
  uint32_t flags;             /* CONNECT: RK_DECISION_RETRY */
  int32_t port;               /* CONNECT: target port (< 0: the host is a
                                 Unix socket path) */
  int32_t family;             /* CONNECT: RK_FAMILY_* */
  int32_t connect_timeout_ms; /* CONNECT: 0: no timeout */
  int32_t idle_timeout_ms;    /* idle timeout from now on; -1: the
                                 listener's */
  uint32_t consume;           /* held bytes to drop from the front (a
                                 handshake the host answered itself) */
  int32_t reserved;           /* 0 */
  int64_t offset;             /* FILE: where to start in the file */
  int64_t length;             /* FILE: how many bytes; -1: to the end */
} rk_decision_t;

/* For bindings' tests: the layout of a public struct or the value of a
 * constant a host must agree with. `name` is a struct's type name
 * ("rk_listen_opts_t", "rk_relay_opts_t", "rk_decision_t"): out[0] <-
 * sizeof, out[1..] <- each field's offset in declaration order; or the
 * name of a timing constant ("sweep_ms": how often workers check
 * deadlines, "linger_ms": how long a closed held client may keep sending):
 * out[0] <- its value; "proxy_limits": the longest v1 and v2 PROXY header
 * and the first read of one. Return the number of values (which may exceed cap),
 * or -ENOENT for an unknown name. Any thread. */
RK_EXTERN int32_t rk_layout(const char *name, int32_t *out, int32_t cap);

/* Version as (major << 16) | (minor << 8) | patch. Any thread. */
RK_EXTERN int32_t rk_version(void);

/* Fill buf (NUL-terminated, truncated to len) with the message / symbolic
 * name of an error code. Return the number of bytes written. Any thread. */
RK_EXTERN int32_t rk_strerror_r(int32_t err, char *buf, int32_t len);
RK_EXTERN int32_t rk_err_name_r(int32_t err, char *buf, int32_t len);
/* Static strings for C callers. Any thread. */
RK_EXTERN const char *rk_strerror(int32_t err);
RK_EXTERN const char *rk_err_name(int32_t err);

/* ---- engine ------------------------------------------------------------ */

/* Create an engine with `threads` workers (0: number of online CPUs) and
 * an engine-wide connection limit (0: none). Return a handle >= 0. */
RK_EXTERN int32_t rk_engine_new(int32_t threads, int32_t max_conns);
/* Close every listener and connection (each gets its CLOSED event with
 * reason RK_END_ENGINE_CLOSED, still drainable until rk_engine_free),
 * stop and join the workers. Any thread but a worker. */
RK_EXTERN int32_t rk_engine_close(int32_t h);
/* Release the engine after rk_engine_close. Waits for rk_engine_wait
 * callers to return. Any thread but a worker. */
RK_EXTERN int32_t rk_engine_free(int32_t h);
/* Number of worker threads. Any thread. */
RK_EXTERN int32_t rk_engine_threads(int32_t h);

/* Block until the event queue is non-empty, rk_engine_wake() is called or
 * timeout_ms passes (-1: forever). Return the number of queued events.
 * Meant to be called on a helper thread (Deno: a nonblocking FFI symbol). */
RK_EXTERN int32_t rk_engine_wait(int32_t h, int32_t timeout_ms);
/* Make current and the next rk_engine_wait return at once. Any thread. */
RK_EXTERN int32_t rk_engine_wake(int32_t h);
/* Register a function called (on a worker thread, never with a lock held)
 * each time the queue goes from empty to non-empty after a drain emptied it.
 * Its return value is ignored. NULL unregisters. Any thread. */
RK_EXTERN int32_t rk_engine_set_notify(int32_t h, void (*cb)(void));
/* Copy up to max_events records (RK_EVENT_WORDS words each) into out and
 * remove them from the queue. Return the number copied. Any thread. */
RK_EXTERN int32_t rk_engine_drain(int32_t h, uint32_t *out, int32_t max_events);
/* rk_engine_drain, and the bytes each RK_EV_HOLD record copied announces,
 * as rk_hold_take would copy them, carried in `held` (held_cap bytes) so
 * that they cost no call of their own: spans[2i] is the offset in `held`
 * of record i's bytes and spans[2i+1] their length, or spans[2i] is -1
 * when they are not carried (not an RK_EV_HOLD record; its connection
 * ended, or has moved on; or its bytes did not fit in what was left of
 * `held`: rk_hold_take them, which tells which). spans has room for
 * 2 * max_events. The host's draining thread, as rk_hold_take. */
RK_EXTERN int32_t rk_engine_drain_held(int32_t h, uint32_t *out,
                                       int32_t max_events, uint8_t *held,
                                       int32_t held_cap, int32_t *spans);
/* Engine counters into out[0..7] as doubles: active connections, accepted
 * total, closed total, rejected total, queued events, listeners, pipes in
 * pools, worker threads. Any thread. */
RK_EXTERN int32_t rk_engine_stats(int32_t h, double *out);

/* Spawn `threads` threads that each post `count` RK_EV_TEST events
 * (id = thread index, aux = sequence). For testing the event bridge. */
RK_EXTERN int32_t rk_test_post(int32_t h, int32_t threads, int32_t count);

/* ---- listeners --------------------------------------------------------- */

/* Bind and listen on host:port (port < 0: Unix socket at path `host`).
 * Nothing is accepted until rk_listener_start. opts may be NULL (every
 * default). Return a listener id > 0. Any thread. */
RK_EXTERN int32_t rk_listen(int32_t h, const char *host, int32_t port,
                            const rk_listen_opts_t *opts);
/* The bound port (0 for Unix sockets) or a negative error. Any thread. */
RK_EXTERN int32_t rk_listener_port(int32_t h, int32_t lid);
/* A new fd for the listener's socket (F_DUPFD_CLOEXEC), which the caller
 * owns: another listener adopting it (RK_LISTEN_ADOPT) accepts from the same
 * queue, so that closing this one afterwards resets nothing that was waiting
 * to be accepted. -ENOENT once the listener is closing. Any thread. */
RK_EXTERN int32_t rk_listener_dup(int32_t h, int32_t lid);
/* Make every accepted connection connect to the target and relay. Must be
 * called before rk_listener_start. target->host is copied. Any thread. */
RK_EXTERN int32_t rk_listener_set_target(int32_t h, int32_t lid,
                                         const char *host, int32_t port,
                                         int32_t family, int32_t timeout_ms,
                                         const char *bind_host);
/* Start accepting on every worker. Any thread. */
RK_EXTERN int32_t rk_listener_start(int32_t h, int32_t lid);
/* Stop accepting and close the listening fd (RK_EV_LISTENER_CLOSED follows,
 * then RK_EV_LISTENER_DRAINED once its last connection has ended).
 * Established connections are untouched. Any thread. */
RK_EXTERN int32_t rk_listener_close(int32_t h, int32_t lid);
/* Change which per-connection events the listener posts (RK_EVMASK_*).
 * Takes effect for events posted after the call. Any thread. */
RK_EXTERN int32_t rk_listener_set_events(int32_t h, int32_t lid, uint32_t mask);
/* RK_LISTEN_HOLD: read what a new connection's client has already sent, up
 * to max bytes, before its first RK_EV_HOLD (which then has RK_HOLD_FIRST
 * with those bytes held, and RK_HOLD_EOF or RK_HOLD_FULL as they apply).
 * Only what is there at once: a client that has sent nothing yet gets its
 * first RK_EV_HOLD at once, as with 0 (the default: read nothing before).
 * Saves the host a round trip per connection where clients speak first.
 * Takes effect for connections accepted after the call. Any thread. */
RK_EXTERN int32_t rk_listener_set_hold_first(int32_t h, int32_t lid,
                                             int32_t max);
/* With rk_listener_set_hold_first: a client that has sent nothing yet when
 * it is accepted gets its first RK_EV_HOLD once it sends (with what it
 * sent, up to that maximum) or ends, not at once - or, if it sends
 * nothing, after 100 to 200 ms (the sweep), with none. For a host whose
 * decisions wait for the client's first bytes anyway: one event, not two.
 * on: 1 or 0 (the default). Takes effect for connections accepted after
 * the call. Any thread. */
RK_EXTERN int32_t rk_listener_set_hold_wait(int32_t h, int32_t lid, int32_t on);
/* Abort every connection of the listener (reset, reason RK_END_CLOSED).
 * Any thread. */
RK_EXTERN int32_t rk_listener_abort(int32_t h, int32_t lid);
/* Number of open connections of the listener, or a negative error. */
RK_EXTERN int32_t rk_listener_active(int32_t h, int32_t lid);
/* The listener's counters into out (RK_EVENT_WORDS words, the layout of
 * RK_EV_LISTENER_DRAINED, which carries them final): 4..5 connections
 * accepted, 6..7 ended, 8..9 bytes written to the targets and 10..11 to the
 * clients by all its connections (open ones so far), 12 the most open at
 * once, 13 open now. Kept whatever rk_listener_set_events says. Any
 * thread. */
RK_EXTERN int32_t rk_listener_counters(int32_t h, int32_t lid, uint32_t *out);
/* The listener's open connections, one pass: the max oldest (lowest ids)
 * as records of RK_CONN_WORDS words into out (layout below), oldest first.
 * Return how many are open (more than max: those left out are newer), or
 * a negative error. Allocates nothing. Any thread; holds the connection
 * table's lock for the pass, not for the sort. */
RK_EXTERN int32_t rk_listener_conns(int32_t h, int32_t lid, uint32_t *out,
                                    int32_t max);
#define RK_CONN_WORDS 20
/* Record of rk_listener_conns: 0 id, 1 state (RK_STATE_*), 2..3 started (ms
 * since the epoch), 4..5 bytes written a->b, 6 the client's address family,
 * 7 its port, 8..11 its address, 12..13 bytes written b->a, 14..15 bytes
 * read a->b, 16..17 read b->a, 18..19 last activity (ms since the epoch).
 * 64-bit values: low word first. */

/* ---- connections ------------------------------------------------------- */

/* Relay between side a (read fd ra, write fd wa) and side b (rb, wb). An fd
 * of -1 means the side cannot be read or written; a direction runs only if
 * its source is readable and its destination writable. The relay owns the
 * fds (closes them when it ends) unless RK_RELAY_KEEP_FDS. idle_timeout_ms
 * 0 means none. Return a connection id > 0. Any thread. */
RK_EXTERN int32_t rk_relay_fds(int32_t h, int32_t ra, int32_t wa, int32_t rb,
                               int32_t wb, const rk_relay_opts_t *opts);
/* Close a connection (RK_CLOSE_*). Its RK_EV_CLOSED follows. Any thread. */
RK_EXTERN int32_t rk_conn_close(int32_t h, int32_t id, int32_t mode);
/* Live counters into out[0..7] as doubles: bytes read a->b, written a->b,
 * read b->a, written b->a, start time (ms since the Unix epoch), last
 * activity (ms since epoch), state (RK_STATE_*), listener id. Return 0 or -ENOENT. Any thread. */
RK_EXTERN int32_t rk_conn_stats(int32_t h, int32_t id, double *out);
/* Connect a new socket to host:port without blocking the caller; the
 * result arrives as RK_EV_FD_CONNECTED with the fd, which then belongs to
 * the caller. Return the request id > 0. Any thread. */
RK_EXTERN int32_t rk_connect_fd(int32_t h, const char *host, int32_t port,
                                int32_t family, int32_t timeout_ms,
                                const char *bind_host);

/* ---- data hooks --------------------------------------------------------
 * A hooked direction reads its source into batches of at most
 * RK_HOOK_BATCH_MAX bytes; a batch is posted when it is full or the source
 * has nothing more for now. Each is lent to the host with an
 * RK_EV_HOOK record: the record gives the batch's token, length and the
 * address of its bytes, which stay valid and unchanged (the engine neither
 * reads nor frees them) until the host hands the batch back with
 * rk_hook_return - also after the connection ended. The host may change
 * the bytes in place. At most RK_HOOK_WINDOW batches of a direction are
 * with the host or waiting to be written: then the direction stops
 * reading its source, so memory stays bounded whatever the host does.
 * Batches are written in the order they were read, whatever the order of
 * their returns. Directions without a hook are not affected. */

/* Most bytes of one batch. */
#define RK_HOOK_BATCH_MAX (512 * 1024)
/* Most batches of one direction between reading and writing. */
#define RK_HOOK_WINDOW 4

/* Flags of rk_hook_return. */
#define RK_HOOK_LENT 1u /* send bytes [off, off + len) of the batch itself
                           (a pass-through, or the part the host kept) */
#define RK_HOOK_KEPT 2u /* the host cannot give the batch's memory back
                           (something still refers to it): never reuse or
                           free it. Nothing is sent in its place: the
                           host should close the connection */

/* Hand batch `token` back and send in its place data[0..len) (copied),
 * or with RK_HOOK_LENT bytes [off, off + len) of the batch (data is not
 * read). The same, shorter, longer or empty: all are fine. The batch's
 * memory must not be touched after this call. Return 0; -ENOENT if the
 * connection ended (the batch is released all the same); -EINVAL for a
 * token that is not lent (never lent, or returned already) or a range
 * outside the batch (the batch stays lent). Any thread. */
RK_EXTERN int32_t rk_hook_return(int32_t h, uint32_t token,
                                 const uint8_t *data, int32_t len,
                                 int32_t off, uint32_t flags);
/* Give lent batch `token` to the host for good: its bytes become memory
 * the host owns (a runtime's ArrayBuffer over them, without a copy), and
 * the host's memory manager calls rk_hook_gift_free(bytes, ctx) once it
 * lets go of them, with bytes the batch's address (ctx is not read). The
 * batch is still handed back with rk_hook_return: RK_HOOK_LENT then sends
 * the given bytes themselves (the engine only reads them, until written),
 * anything else is copied. The engine never changes a given batch's bytes
 * and frees them only when both it and the host are done. Return 0;
 * -EAGAIN when RK_HOOK_GIFT_MAX bytes of the process are given and not yet
 * freed (then lend or copy as usual); -EINVAL for a token that is not lent
 * or is given already. Any thread. */
RK_EXTERN int32_t rk_hook_gift(int32_t h, uint32_t token);
/* The deallocator of given batches (see rk_hook_gift). Any thread, also
 * after the engine that gave them was freed. */
RK_EXTERN void rk_hook_gift_free(void *bytes, void *ctx);
/* The address of rk_hook_gift_free in two words, low then high, for a
 * host whose FFI takes a deallocator's address but cannot name it. */
RK_EXTERN void rk_hook_gift_free_address(uint32_t out[2]);
/* Keep the process's malloc (glibc's) from handing hook-batch-sized
 * blocks back to the system as soon as they are freed: blocks under 1 MiB
 * come from its heap, and up to 64 MiB free at the heap's top stay mapped.
 * For a host that copies each batch into memory its runtime takes from
 * malloc (Deno's ArrayBuffers): by default glibc serves a 256 KiB block
 * with mmap or trims it off the heap when freed, and the next copy faults
 * its pages in again, one by one (a garbage collector frees many copies
 * at once: under Deno 8 MiB still left most of those faults).
 * Process-wide and once: returns 1 when this call set them; 0 when an
 * earlier call did, when the environment carries the operator's own
 * malloc settings (GLIBC_TUNABLES naming glibc.malloc,
 * MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_), or where the C library
 * is not glibc. Any thread, but glibc's mallopt is
 * not safe against other threads' mallocs in the strict sense: they read
 * the two thresholds without a lock and may see the old values or the
 * new (aligned words, written once under the main arena's lock). */
RK_EXTERN int32_t rk_malloc_tune(void);
/* Most bytes of batches given and not yet freed, in the whole process:
 * past it a host that collects its garbage late gets copies instead. */
#define RK_HOOK_GIFT_MAX (64 * 1024 * 1024)

/* The peer address of an accepted connection as text ("1.2.3.4:5",
 * "[::1]:5"), written to buf. Return its length or a negative error. */
RK_EXTERN int32_t rk_conn_peer(int32_t h, int32_t id, char *buf, int32_t cap);

/* ---- held connections -------------------------------------------------
 * A listener with RK_LISTEN_HOLD connects nowhere by itself. Each accepted
 * connection posts RK_EV_HOLD (flag RK_HOLD_FIRST, nothing read) and waits:
 * the host may decide at once (a server-speaks-first protocol, or a PROXY
 * header to send), or ask for the client's first bytes with rk_hold_read,
 * look at them with rk_hold_take, and decide with rk_hold_decide. Reading
 * stops at the asked maximum, so a held connection holds at most that much.
 * Calls for one connection must come from one thread. */

/* Read the client's bytes until at least one more arrives, the client
 * ends, or max bytes are held in all; then post RK_EV_HOLD again. */
RK_EXTERN int32_t rk_hold_read(int32_t h, int32_t id, int32_t max);
/* Write bytes to a held client at once (a handshake's reply, such as a
 * SOCKS5 method choice), leaving it held. They must fit the socket's send
 * buffer (a few hundred bytes do): a client that does not take them is
 * reset. Bytes are copied. */
RK_EXTERN int32_t rk_hold_write(int32_t h, int32_t id, const uint8_t *data,
                                int32_t len);
/* Copy the held bytes into out after an RK_EV_HOLD. Return their number
 * (which may exceed cap: call again with a bigger buffer), -ENOENT if the
 * connection ended, -EINVAL if no RK_EV_HOLD is waiting. */
RK_EXTERN int32_t rk_hold_take(int32_t h, int32_t id, uint8_t *out,
                               int32_t cap);
/* Decide (rk_decision_t). FILE: `host` is the file's path (opened here,
 * so a missing file is this call's error); send to_a, then the file's
 * range with sendfile(2), end the stream, and discard what the client
 * sends as for CLOSE; reason RK_END_DONE. CONNECT: connect to host:port
 * (from bind_host, may be NULL); once connected send to_b, then the held
 * bytes not consumed, to the target and to_a to the client, then relay.
 * With RK_DECISION_RETRY a failed connect holds the connection again (an
 * RK_EV_HOLD with RK_HOLD_RETRY): a new CONNECT then sends the same bytes
 * elsewhere (its own to_b/to_a, if any, replace them). CLOSE: send to_a to
 * the client, end the stream, discard what the client still sends until
 * it closes (at most a few seconds), reason RK_END_CLOSED. Bytes are
 * copied. */
RK_EXTERN int32_t rk_hold_decide(int32_t h, int32_t id, const char *host,
                                 const char *bind_host,
                                 const rk_decision_t *decision,
                                 const uint8_t *to_b, int32_t to_b_len,
                                 const uint8_t *to_a, int32_t to_a_len);

/* Many hold commands in one call, each worker woken once: the host's
 * rk_hold_read, rk_hold_write and rk_hold_decide (CONNECT or CLOSE; FILE
 * opens its file, so it goes through rk_hold_decide) of one turn, packed
 * into buf as records, carried out in order. Each record starts with four
 * uint32 words (RK_HOLD_OP_HEAD bytes): op (RK_HOLD_OP_*), connection id,
 * size (bytes of the whole record, a multiple of 8) and arg:
 *   RK_HOLD_OP_READ    arg = max (as rk_hold_read)
 *   RK_HOLD_OP_WRITE   arg = byte count; the bytes follow the head
 *   RK_HOLD_OP_DECIDE  arg = 0; an rk_decision_t follows the head, then
 *                      four uint32 lengths (host, bind host, to_b, to_a),
 *                      then those bytes (the host names without NUL)
 * A record for a connection that has ended is skipped; one that fails
 * otherwise (a bad value, out of memory) aborts its connection (its
 * RK_EV_CLOSED follows). Return the number of records carried out, or
 * -EINVAL if a record's size is malformed (the records before it are
 * carried out, none after it). Any thread. */
RK_EXTERN int32_t rk_hold_submit(int32_t h, const uint8_t *buf, int32_t len);
#define RK_HOLD_OP_READ 1
#define RK_HOLD_OP_WRITE 2
#define RK_HOLD_OP_DECIDE 3
#define RK_HOLD_OP_HEAD 16

/* ---- built-in routers -------------------------------------------------
 * A RK_LISTEN_HOLD listener may decide its connections itself: a SOCKS4/4a/5
 * or HTTP CONNECT handshake, checked against allow/deny rules and users,
 * with names resolved off the workers (native/src/router.c). Such a
 * connection posts no RK_EV_HOLD unless the router hands it to the host
 * (RK_HOLD_ROUTED): a refusal with RK_ROUTER_REPORT, a name that needs
 * IDNA, the client's EOF or the route limit before a decision. */

/* Router kinds and flags (the description's header). */
#define RK_ROUTER_SOCKS 1u
#define RK_ROUTER_CONNECT 2u
#define RK_ROUTER_TABLE 3u /* a static routing table: Host, SNI, prefix */
#define RK_ROUTER_REPORT 1u /* hand refusals to the host (it reports them) */

/* Give the listener a router from its description (src/native/router.ts
 * writes it: kind, flags, route limit, connect timeout, family, bind
 * address, allow and deny rules, users), or none (len 0). Connections
 * accepted from then on use it. -EINVAL for a malformed description or a
 * listener without RK_LISTEN_HOLD. Any thread. */
RK_EXTERN int32_t rk_listener_set_router(int32_t h, int32_t lid,
                                         const uint8_t *desc, int32_t len);
/* For tests: classify host[0..host_len) and check it against the rules of
 * a router description at port; for a name, `resolved` lists the
 * addresses a resolver gave, comma-separated. Writes "invalid", "defer",
 * "address TEXT THISHOST allowed|refused" or "name NAME [dotted]
 * allowed ADDRESS|refused" to out. Return its length or -EINVAL. Any
 * thread. */
RK_EXTERN int32_t rk_router_check(const uint8_t *desc, int32_t len,
                                  const uint8_t *host, int32_t host_len,
                                  int32_t port, const char *resolved,
                                  char *out, int32_t cap);

/* For tests: what a routing table description (RK_ROUTER_TABLE) decides
 * for the first bytes data[0..n): writes "wait", "defer" (the host
 * decides or reports) or "connect HOST PORT TIMEOUT" to out. Return its
 * length or -EINVAL. Any thread. */
RK_EXTERN int32_t rk_router_table_check(const uint8_t *desc, int32_t len,
                                        const uint8_t *data, int32_t n,
                                        char *out, int32_t cap);

/* ---- PROXY protocol headers -------------------------------------------
 * A held listener (RK_LISTEN_HOLD) with rk_listener_set_proxy reads each
 * client's PROXY header (v1 or v2, the rules of HAProxy's
 * proxy-protocol.txt with relaykit's limits) on its worker. With a target
 * (rk_listener_set_target) it then connects without asking the host: it
 * sends a PROXY header of its own first when told to, then what the client
 * sent after its header. Without one it hands the connection to the host
 * once the header is read (RK_EV_PROXY, then RK_EV_HOLD with
 * RK_HOLD_FIRST and the bytes held, header included), so that the host
 * decides without parsing it. An accepted header (or one sent on) posts RK_EV_PROXY
 * when the listener posts RK_EVMASK_ORIGINAL; a client outside the trusted ranges, a
 * malformed header or a client that ends inside it posts RK_EV_PROXY with
 * the error and is closed (RK_END_CLOSED, as a CLOSE decision). The
 * header timeout is the listener's hold timeout. A header the host must
 * see whole (with TLVs or Unix addresses: without a target, or when
 * RK_EVMASK_ORIGINAL is posted) is handed to the host as an RK_EV_HOLD with RK_HOLD_FIRST and
 * the bytes read so far; so is every connection after
 * rk_listener_drop_proxy. */

#define RK_PROXY_DETECT 0 /* a v1 or v2 header, or none */
#define RK_PROXY_V1 1     /* a v1 header, required */
#define RK_PROXY_V2 2     /* a v2 header, required */
#define RK_PROXY_NONE 3   /* no header phase: only the header sent on */

#define RK_PROXY_UNTRUSTED_PASS 1u /* relay untrusted clients as they are
                                      (else close them) */
#define RK_PROXY_SEND_CRC32C 2u    /* send v2: append a CRC32C TLV */
#define RK_PROXY_SEND_UNIQUE_ID 4u /* send v2: a random UNIQUE_ID TLV (32
                                      hex digits) */

/* Options of rk_listener_set_proxy(). */
typedef struct {
  int32_t mode;         /* RK_PROXY_DETECT, _V1, _V2 or _NONE */
  uint32_t flags;       /* RK_PROXY_* */
  int32_t send_version; /* the header to send to the target: 0 none, 1, 2 */
  uint32_t tlv_split;   /* send v2: bytes of `tlvs` before the UNIQUE_ID */
} rk_proxy_opts_t;

/* Accept PROXY headers on a listener. ranges: the trusted sources, 18
 * bytes each (address length 4 or 16, prefix length in bits, 16 address
 * bytes masked to the prefix); a Unix socket client is always trusted.
 * tlvs: encoded TLVs to send (v2), tlv_split bytes of them before the
 * UNIQUE_ID TLV and the rest after it. Before rk_listener_start. Any
 * thread. A header to read (mode other than RK_PROXY_NONE) on a listener
 * that terminates TLS (rk_listener_set_tls): -EINVAL. */
RK_EXTERN int32_t rk_listener_set_proxy(int32_t h, int32_t lid,
                                        const rk_proxy_opts_t *opts,
                                        const uint8_t *ranges,
                                        int32_t ranges_len,
                                        const uint8_t *tlvs, int32_t tlvs_len);
/* Stop reading PROXY headers on the listener: the host decides every
 * connection accepted from now on. Any time, any thread. */
RK_EXTERN int32_t rk_listener_drop_proxy(int32_t h, int32_t lid);
/* Parse a PROXY header at the start of buf[0..len) as the engine does
 * (mode RK_PROXY_*). Return 0 (need out[0] more bytes), 1 (no
 * header), 2 (a header of out[0] bytes: out[1] version, out[2] command,
 * out[3] transport, out[4] family (0 none, 1 IPv4, 2 IPv6, 3 Unix),
 * out[5] source port, out[6] destination port, out[7] offset and out[8]
 * length of its TLVs) or a negative RK_PP_* code for a malformed header.
 * out has room for 9 values. Any thread. */
RK_EXTERN int32_t rk_proxy_parse(const uint8_t *buf, int32_t len, int32_t mode,
                                 int32_t *out);
/* The name and text of an RK_PP_* code ("V1_TOO_LONG: PROXY v1 header
 * longer than 107 bytes") into buf (NUL-terminated, truncated to len).
 * Return the number of bytes written. Any thread. */
RK_EXTERN int32_t rk_proxy_error_r(int32_t code, char *buf, int32_t len);
/* Make the next CONNECT decision of held connection id speak TLS to the
 * target with client context ctx (rk_tls_client_ctx), sending servername
 * as SNI and checking the certificate against it (a name, or an IP
 * address; NULL or "": no SNI and no name check). Call it right before
 * rk_hold_decide, from the same thread. A failed connect that holds the
 * connection again (RK_DECISION_RETRY) forgets it. A handshake that fails
 * ends the connection with RK_END_CONNECT_FAILED and RK_ETLS, or
 * RK_ECERT_UNTRUSTED when the certificate does not verify. */
RK_EXTERN int32_t rk_hold_set_tls(int32_t h, int32_t id, int32_t ctx,
                                  const char *servername);

/* ---- fd helpers (synchronous, for callers without raw fds) -------------- */

/* out[0], out[1] <- a pipe (read end, write end), close-on-exec. */
RK_EXTERN int32_t rk_fd_pipe(int32_t *out);
/* out[0], out[1] <- a connected AF_UNIX stream socket pair. */
RK_EXTERN int32_t rk_fd_socketpair(int32_t *out);
/* open(2) with O_CLOEXEC added. Return the fd. */
RK_EXTERN int32_t rk_fd_open(const char *path, int32_t flags, int32_t mode);
/* Blocking read/write loops: write all of buf (return len), or read once
 * up to len bytes (0 at EOF). */
RK_EXTERN int32_t rk_fd_write(int32_t fd, const uint8_t *buf, int32_t len);
RK_EXTERN int32_t rk_fd_read(int32_t fd, uint8_t *buf, int32_t len);
/* shutdown(fd, SHUT_WR) for sockets, close(fd) otherwise. */
RK_EXTERN int32_t rk_fd_shutdown_write(int32_t fd);
RK_EXTERN int32_t rk_fd_close(int32_t fd);
/* The local address of a listening stream socket: the address text into
 * host (len bytes) and the port into *port, or for a Unix socket its path
 * ("@name" when abstract) and *port = -1. -EINVAL if fd is not a
 * listening stream socket, -ENOTSOCK if not a socket. Any thread. */
RK_EXTERN int32_t rk_fd_sockname(int32_t fd, char *host, int32_t len,
                                 int32_t *port);

/* ---- tunnel data plane -----------------------------------------------
 * One link socket carrying the streams of the relaykit tunnel (wire format
 * in docs/tunnel.md). A tunnel starts raw: every byte read from the link is
 * for the host (RK_TEV_RX, rk_tunnel_take), which runs the handshake and
 * writes with rk_tunnel_send. rk_tunnel_attach then makes the worker parse
 * frames: DATA, WINDOW and FIN of the streams it carries move between the
 * link and the streams' sockets here, with per-stream credit; every other
 * frame reaches the host whole through RK_TEV_RX (RST after the stream's
 * socket was reset; OPEN on a server after the stream was set up to hold
 * DATA until rk_tunnel_accept or rk_tunnel_stream_close). Frames the host
 * sends are encoded by the host. Any thread, calls for one tunnel from one
 * thread. */

/* A tunnel on the link socket fd (which it then owns), or on the socket of
 * held connection conn_id (one of fd, conn_id; the connection ends, reason
 * RK_END_CLOSED, and must not have been asked to read). Return its id. */
RK_EXTERN int32_t rk_tunnel_new(int32_t h, int32_t fd, int32_t conn_id);
/* rk_tunnel_new for a link that speaks TLS in the worker: with context ctx
 * (rk_tls_server_ctx when flags bit 0 is set, the link's server side; else
 * rk_tls_client_ctx, sending and verifying servername, a name or an
 * address literal). The handshake runs first (RK_TEV_TLS_UP when done);
 * then every link byte goes through TLS, the host's handshake bytes too.
 * One that fails ends the link: RK_TEV_LINK_END with RK_ETLS, or
 * RK_ECERT_UNTRUSTED (why: rk_tls_cert_failure with the tunnel's id).
 * The tunnel holds its own reference to ctx. RK_ENOTLS without OpenSSL,
 * -ENOENT for an unknown ctx. */
RK_EXTERN int32_t rk_tunnel_new_tls(int32_t h, int32_t fd, int32_t conn_id,
                                    int32_t ctx, int32_t flags,
                                    const char *servername);
/* Copy up to cap of the bytes waiting for the host into out and drop them.
 * Return the number copied (call again while it equals cap). */
RK_EXTERN int32_t rk_tunnel_take(int32_t h, int32_t tid, uint8_t *out,
                                 int32_t cap);
/* Queue bytes (whole frames, after the handshake) on the link. */
RK_EXTERN int32_t rk_tunnel_send(int32_t h, int32_t tid, const uint8_t *data,
                                 int32_t len);
/* The handshake is done: parse frames from now on. flags bit 0: the server
 * side. window: each stream's initial credit both ways. replay: bytes the
 * host took past the handshake, parsed first (then the bytes not taken). */
RK_EXTERN int32_t rk_tunnel_attach(int32_t h, int32_t tid, int32_t flags,
                                   int32_t window, const uint8_t *replay,
                                   int32_t len);
/* The client side: send frame (the OPEN), then carry held connection
 * conn_id's socket as stream sid. If the connection went first, an RST
 * follows the OPEN and RK_TEV_STREAM_END reports it. */
RK_EXTERN int32_t rk_tunnel_open(int32_t h, int32_t tid, uint32_t sid,
                                 int32_t conn_id, const uint8_t *frame,
                                 int32_t len);
/* The server side: send frame (the OPEN_OK), then carry the connected
 * socket fd (owned from now on) as stream sid, the DATA and FIN held for
 * it first. */
RK_EXTERN int32_t rk_tunnel_accept(int32_t h, int32_t tid, uint32_t sid,
                                   int32_t fd, const uint8_t *frame,
                                   int32_t len);
/* Send frame (OPEN_FAIL, RST or nothing) and drop stream sid: its socket
 * is closed (RK_CLOSE_GRACEFUL) or reset (RK_CLOSE_ABORT). No event. */
RK_EXTERN int32_t rk_tunnel_stream_close(int32_t h, int32_t tid, uint32_t sid,
                                         int32_t mode, const uint8_t *frame,
                                         int32_t len);
/* Reset every stream (no events) and close the link: RK_CLOSE_GRACEFUL once
 * what was queued went out, RK_CLOSE_ABORT now with a reset. */
RK_EXTERN int32_t rk_tunnel_close(int32_t h, int32_t tid, int32_t mode);
/* sid 0: out[0..3] <- last link read (ms since the epoch), bytes read from
 * and written to the link, streams. sid > 0: out[0..3] <- that stream's
 * bytes socket->link, link->socket, bytes its socket has not taken, credit.
 * -ENOENT when gone. */
RK_EXTERN int32_t rk_tunnel_stats(int32_t h, int32_t tid, uint32_t sid,
                                  double *out);

/* ---- TLS ---------------------------------------------------------------
 * TLS in the worker threads with OpenSSL 3, loaded at run time: the
 * library has no link-time dependency on it and loads where it is absent;
 * then every call below returns RK_ENOTLS and rk_tls_load says why.
 * Contexts are process-wide handles (not per engine). A listener with a
 * server context terminates TLS on every accepted connection: the relay
 * reads and writes that side through TLS (plain bytes to the target,
 * counters count plain bytes); a peer's close_notify is its EOF, and our
 * EOF towards it is a close_notify then FIN (half-close both ways). A
 * failed handshake or a bad record ends that one connection (RK_EV_CLOSED,
 * reason RK_END_RESET, err RK_ETLS). Inside the library the same TLS side is a transport any module
 * can use (src/internal.h, "the TLS seam"). */

/* Load OpenSSL once per process: `path` (NULL or "": "libssl.so.3") counts
 * only on the first call. Return 1 when TLS is available, 0 when not, with
 * the reason ("native TLS needs libssl.so.3: <dlerror>") in reason (cap
 * bytes, NUL-terminated; "" when available). Any thread. */
RK_EXTERN int32_t rk_tls_load(const char *path, char *reason, int32_t cap);
/* A server context from a PEM certificate chain (leaf first) and its PEM
 * private key (unencrypted). TLS 1.2 and 1.3. Return a context handle > 0,
 * or RK_ENOTLS, RK_ETLS (unreadable or mismatched; the words in err, cap
 * bytes). Any thread. */
RK_EXTERN int32_t rk_tls_server_ctx(const char *cert_pem, const char *key_pem,
                                    char *err, int32_t cap);
/* A client context that trusts the certificates of ca_pem (NULL or "": the
 * system's roots) and verifies the peer's certificate when verify != 0
 * (its name is checked against the server name each connection gives).
 * Return a handle > 0 or a negative error (words in err). Any thread. */
RK_EXTERN int32_t rk_tls_client_ctx(const char *ca_pem, int32_t verify,
                                    char *err, int32_t cap);
/* Drop a context handle; listeners and connections using it keep their own
 * reference. Any thread. */
RK_EXTERN int32_t rk_tls_ctx_free(int32_t ctx);
/* Terminate TLS with server context ctx on every connection the listener
 * accepts from now on: the client's handshake first, then the target
 * connect (or, with RK_LISTEN_HOLD, the RK_EV_HOLD with RK_HOLD_FIRST:
 * held bytes, rk_hold_write and the decisions' to_a are plain bytes inside
 * TLS). Before rk_listener_start. Any thread. A listener that reads
 * PROXY headers (rk_listener_set_proxy with a mode other than
 * RK_PROXY_NONE) cannot: -EINVAL, either way round. The built-in routers
 * and a PROXY header only sent on work inside the TLS. */
RK_EXTERN int32_t rk_listener_set_tls(int32_t h, int32_t lid, int32_t ctx);
/* Why connection id of engine h ended with RK_ECERT_UNTRUSTED: the
 * verification error's name ("CERT_HAS_EXPIRED", "HOSTNAME_MISMATCH", ...,
 * else OpenSSL's words) into said (said_cap bytes), and the peer's
 * certificate (DER) into der. Return the DER's length (which may exceed
 * cap: then call again with a bigger buffer; the failure is forgotten once
 * read whole), or -ENOENT. The library keeps the last 32 such failures.
 * Any thread. */
RK_EXTERN int32_t rk_tls_cert_failure(int32_t h, int32_t id, char *said,
                                      int32_t said_cap, uint8_t *der,
                                      int32_t cap);
/* Process-wide TLS counters into out[0..5] as doubles: handshakes done,
 * handshakes failed, TLS sides open, plain bytes read, plain bytes written,
 * 1 if OpenSSL is loaded. Any thread. */
RK_EXTERN int32_t rk_tls_stats(double *out);

/* ---- systemd ----------------------------------------------------------- */

/* Send one sd_notify(3) datagram (e.g. "READY=1") to the Unix datagram
 * socket at path (NOTIFY_SOCKET; "@name": the abstract namespace). 0 or a
 * negative errno. Any thread. */
RK_EXTERN int32_t rk_sd_notify(const char *path, const char *state);

#ifdef __cplusplus
}
#endif
#endif /* RELAYKIT_H */
