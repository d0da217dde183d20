/* internal.h - structures shared by the engine's translation units, and
 * each unit's internal functions listed under it. The units: engine.c
 * (engines, workers, commands, event queue), listen.c (listeners and
 * accept), connect.c (targets, resolver, connect), relay.c (relaying),
 * pool.c (pipes and buffers), hold.c (held connections), tunnel.c (the
 * tunnel's data plane), fd.c, errors.c
 * and layout.c (public helpers only: rk_layout reports the option structs'
 * layout and the timing constants hosts must agree with). */
#ifndef RK_INTERNAL_H
#define RK_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "../include/relaykit.h"

/* The prebuilt glibc libraries promise to load on glibc 2.17 and later
 * (scripts/build_prebuilt.ts checks no symbol needs a newer version). Two
 * kinds of symbol that newer glibc headers bind to newer versions:
 * - pthread_create, pthread_join, pthread_once and the pthread_key calls
 *   moved into libc in 2.34:
 *   bind them to the version every glibc of the architecture has
 *   (libpthread's before 2.34);
 * - fstat is a libc symbol only since 2.33 (before, an inline call of
 *   __fxstat): call the system call, whose struct stat is glibc's own on
 *   x86_64 and aarch64. */
#if defined(__GLIBC__) && defined(__x86_64__)
#define RK__GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__GLIBC__) && defined(__aarch64__)
#define RK__GLIBC_BASE "GLIBC_2.17"
#endif
#ifdef RK__GLIBC_BASE
__asm__(".symver pthread_create,pthread_create@" RK__GLIBC_BASE);
__asm__(".symver pthread_join,pthread_join@" RK__GLIBC_BASE);
__asm__(".symver pthread_once,pthread_once@" RK__GLIBC_BASE);
__asm__(".symver pthread_key_create,pthread_key_create@" RK__GLIBC_BASE);
__asm__(".symver pthread_getspecific,pthread_getspecific@" RK__GLIBC_BASE);
__asm__(".symver pthread_setspecific,pthread_setspecific@" RK__GLIBC_BASE);
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
static inline int rk__fstat(int fd, struct stat *st) {
  return (int)syscall(SYS_fstat, fd, st);
}
#else
#include <sys/stat.h>
#define rk__fstat fstat
#endif

/* epoll data of a connection's fd: the conn pointer with the side (0/1) in
 * its lowest bit (allocations are at least 8-aligned). */
#define RK__EPDATA(c, side) ((uint64_t)(uintptr_t)(c) | (uint64_t)(side))

/* Retry a syscall expression while it fails with EINTR. */
#define RK__RETRY(r, expr)                                                     \
  do {                                                                         \
    (r) = (expr);                                                              \
  } while ((r) == -1 && errno == EINTR)

#define RK__LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define RK__STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define RK__ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)

/* A read/write buffer of this size is the unit of the non-splice path: big
 * enough that a request/response fits in one read, small enough that 10,000
 * busy relays hold at most 160 MiB. A read that fills it marks the direction
 * as bulk and moves it to splice. */
#define RK__BUF_SIZE (16 * 1024)
/* One splice moves at most this much: the capacity a worker's pipes are
 * given (rk__pipe_get), four times the default 16 pages - each splice call
 * costs the same whatever it moves. At most RK__PIPE_BIG_MAX pipes of a
 * worker are that big (a user's pipe capacity is limited system-wide, see
 * pipe(7)); the others, and any the system refuses, keep the default, and
 * a splice then moves at most that. */
#define RK__PIPE_CHUNK (256 * 1024)
#define RK__PIPE_BIG_MAX 32
/* Free pipes and buffers a worker keeps for reuse; beyond that they are
 * released, so an idle engine holds at most 64 pipes and 1 MiB per worker. */
#define RK__POOL_MAX 64
/* Reads a direction may do in one turn before yielding to other relays. */
#define RK__PUMP_BUDGET 16
/* Batches of hooked directions a worker keeps for reuse (RK_HOOK_BATCH_MAX
 * bytes each): enough for two busy hooked directions' windows. */
#define RK__BATCH_POOL_MAX 8
/* Buckets of the token -> lent batch table: a power of two. */
#define RK__LEND_BUCKETS 4096
/* Pools not drawn from during a whole sweep interval are emptied, so an
 * idle engine holds no pipes or buffers (and its fd count returns to what
 * it was before any relay ran). */
/* How often timeouts are checked. Timeouts are accurate to this much. */
#define RK__SWEEP_MS 100
/* After EMFILE/ENFILE a listener pauses this long instead of spinning. */
#define RK__ACCEPT_PAUSE_MS 100
/* Engines one process may have open at once (handles index a fixed table). */
#define RK__MAX_ENGINES 64
/* Buckets of the id -> connection table: a power of two, sized so that
 * 10,000 connections make chains of about one. */
#define RK__TABLE_BUCKETS 16384
/* Events a worker takes from epoll_wait per call. */
#define RK__EPOLL_BATCH 256
/* Listeners one worker can hold paused after EMFILE at once; a listener
 * beyond that keeps being polled (and reports each failed accept). */
#define RK__MAX_PAUSED 64
/* Listener ids rk_engine_close collects per pass while closing them. */
#define RK__CLOSE_BATCH 256
/* Resolver threads an engine starts at most: names looked up at once
 * (SOCKS names and CONNECT hosts, target names). */
#define RK__RESOLVERS 4
/* listen(2) backlog when rk_listen is given none (nginx's and libuv's). */
#define RK__BACKLOG 511

enum { RK__TAG_CONN = 1, RK__TAG_LISTENER, RK__TAG_WAKE, RK__TAG_TUNNEL };

typedef struct rk__engine rk__engine;
typedef struct rk__worker rk__worker;
typedef struct rk__conn rk__conn;
typedef struct rk__listener rk__listener;
typedef struct rk__batch rk__batch;

/* States of a hooked direction's batch (rk__batch.state, atomic). */
enum {
  RK__BATCH_LENT = 1,  /* with the host: nobody else touches its bytes */
  RK__BATCH_RETURNING, /* rk_hook_return is filling in its result */
  RK__BATCH_BACK,      /* result in: the worker writes it */
  RK__BATCH_ORPHAN     /* its connection ended while lent: whoever returns
                          it frees it */
};

/* A batch of a hooked direction: bytes read from the source, lent to the
 * host, then what the host gave back, written to the destination. The
 * bytes follow the struct. While LENT or RETURNING it is in the engine's
 * lend table (by token) and in its direction's queue; the worker owns it
 * otherwise. */
struct rk__batch {
  uint32_t token;
  int state;      /* atomic, RK__BATCH_*; LENT -> ORPHAN under lend_lock */
  int32_t conn_id;
  int dir;
  uint32_t len;   /* bytes read into data */
  uint8_t *out;   /* BACK: what to write (data + something, or malloc'd) */
  uint32_t out_len, out_off;
  unsigned out_own : 1; /* out is malloc'd */
  unsigned kept : 1;    /* the host still refers to data: never free it */
  /* Given to the host (rk_hook_gift): data is shared with the host's
   * memory manager, which calls rk_hook_gift_free when it lets go. refs
   * (atomic) counts the two owners; the last one frees the batch. The
   * engine never writes data again, and never puts it in a pool. */
  int gifted;
  int refs;
  rk__batch *next;      /* the direction's queue */
  rk__batch *lend_next; /* the lend table's chain */
  uint8_t data[];       /* RK_HOOK_BATCH_MAX bytes */
};

typedef struct rk__router rk__router;

/* A destination address, normalised (router.c). */
typedef struct {
  uint8_t len; /* 4 or 16 */
  uint8_t b[16];
  int this_host;
} rk__addr;
typedef struct rk__tls rk__tls;

typedef struct rk__target {
  char *host;
  int32_t port; /* < 0: Unix socket path in host */
  int32_t family;
  int32_t timeout_ms;
  char *bind_host;
} rk__target;

/* One side of a connection: the fd we read from and the fd we write to
 * (the same fd for sockets and ttys). */
typedef struct {
  int rfd, wfd;
  int orig_rflags, orig_wflags; /* O_NONBLOCK restored for kept fds */
  unsigned is_sock : 1;
  unsigned r_pollable : 1; /* 0: a regular file, always readable */
  unsigned r_registered : 1, w_registered : 1;
  unsigned owned : 1; /* a socket we made: its close() sends the FIN (a
                        * child forked by the host holds a copy only until
                        * its exec) */
  rk__tls *tls;       /* non-NULL: this side speaks TLS (tls.c) */
} rk__side;

/* One direction: bytes read from side d and written to side !d. */
typedef struct {
  int pipe[2];        /* -1 when not holding a pipe */
  uint32_t pipe_bytes; /* bytes sitting in the pipe */
  uint8_t *buf;        /* NULL when not holding a buffer */
  uint32_t buf_off, buf_len;
  unsigned active : 1;  /* the direction exists */
  unsigned splice : 1;  /* splice mode (else read/write) */
  unsigned nosplice : 1; /* splice refused once: never again */
  unsigned eof : 1;     /* source finished (or graceful close) */
  unsigned done : 1;    /* eof and drained and destination shut */
  unsigned can_read : 1; /* the source may have bytes (or EOF) for us */
  unsigned rdhup : 1;    /* the source's peer closed: read to EOF/EAGAIN */
  unsigned blocked : 1;  /* the destination was full: wait for EPOLLOUT */
  unsigned hooked : 1;   /* chunks go through the host's hook */
  unsigned buf_own : 1;  /* buf is malloc'd (hook result, held bytes), not
                            a pool buffer */
  unsigned discard : 1;  /* read and drop (a client after a CLOSE decision) */
  unsigned sendfile : 1; /* the source is a file sent with sendfile(2) */
  uint64_t limit;        /* bytes still to read; UINT64_MAX: no limit */
  rk__batch *hq_head, *hq_tail; /* hooked: batches posted, oldest first */
  uint32_t hq_n;                 /* hooked: batches in that queue */
  uint64_t rd, wr;      /* atomics: bytes read / written */
} rk__dir;

/* The public RK_STATE_* values, and one more nobody outside sees. */
enum {
  RK__CONNECTING = RK_STATE_CONNECTING,
  RK__RELAYING = RK_STATE_RELAYING,
  RK__CLOSING = RK_STATE_CLOSING,
  RK__DEAD = 3,
  RK__HOLDING = RK_STATE_HELD /* accepted on a RK_LISTEN_HOLD listener */
};
/* How long a client may go on sending after a CLOSE decision before it is
 * cut off (its bytes are read and dropped, so the reply is not lost to a
 * reset caused by unread data). */
#define RK__LINGER_MS 2000
enum { RK__KIND_RELAY = 0, RK__KIND_PROXY = 1, RK__KIND_CONNECT_FD = 2 };

struct rk__conn {
  int tag; /* RK__TAG_CONN; first field, see epoll data */
  int32_t id;
  int kind;
  int state; /* atomic: read by rk_conn_stats */
  rk__worker *w;
  rk__listener *listener; /* holds a reference, or NULL */
  rk__side side[2];
  rk__dir dir[2];
  uint32_t flags;
  int32_t idle_timeout_ms;
  int64_t start_real_ms;
  int64_t last_mono_ms; /* atomic */
  int64_t start_mono_ms;
  int64_t connect_deadline_ms; /* 0: none */
  struct addrinfo *ai_list, *ai_next; /* outbound candidates */
  rk__target *target; /* borrowed from the listener or owned (connect_fd) */
  int owns_target;
  int end_reason, end_err;
  unsigned ready : 1; /* on the worker's ready list */
  unsigned user_closed : 1; /* rk_conn_close(GRACEFUL) stopped reading */
  unsigned abort_rst : 1;   /* rk_conn_close(ABORT): reset the TCP peers */
  rk__conn *next, *prev; /* worker's list of live conns */
  rk__conn *ready_next;
  rk__conn *tbl_next; /* engine id table chain */
  /* peer address for RK_EV_ACCEPT */
  struct sockaddr_storage peer;
  /* RK__HOLDING: the client's first bytes */
  uint8_t *hold_buf;
  uint32_t hold_len, hold_cap;
  uint32_t hold_max;       /* > 0: reading was asked for, up to this many */
  int hold_posted;         /* atomic: an RK_EV_HOLD waits for the host */
  int64_t hold_deadline_ms; /* 0: none */
  int64_t first_due_ms; /* > 0: the first RK_EV_HOLD waits for the client's
                           first bytes until then (rk_listener_set_hold_wait) */
  unsigned retry_ok : 1;   /* a failed connect goes back to the host */
  unsigned tls_accepting : 1; /* RK__CONNECTING: the client's TLS handshake
                                 runs; the target connect starts after */
  uint32_t to_b_len;       /* the host's to_b at the front of dir[0]'s
                              bytes, replaced by a retry's own to_b */
  /* a built-in router's connection (router.c) */
  rk__router *router;      /* the listener's router when accepted (a
                              reference), or NULL */
  uint8_t route_sent;      /* handshake replies already sent */
  uint8_t route_fail;      /* which failure reply a failed connect gets */
  uint8_t route_fail_prefix; /* unsent handshake replies before it */
  uint8_t route_deferred;  /* handed to the host: an ordinary held conn */
  uint8_t route_resolving; /* a name is with the resolver */
  uint16_t route_port;
  rk__addr route_addr;     /* the checked address connected to */
  uint8_t pp_phase;        /* proxyhdr.c: 0 not begun, 1 reading the
                              header, 2 over (decided, or the host's) */
  uint8_t pp_decided;      /* proxyhdr.c decided it (connected or
                              refused): never held for the host */
  void *tls_ctx;           /* rk_hold_set_tls: the target side speaks TLS
                              with this client SSL_CTX (a reference) */
  char *tls_name;          /* and this server name (or NULL) */
};

struct rk__listener {
  int tag; /* RK__TAG_LISTENER */
  int32_t id;
  int fd;
  int32_t port;
  int32_t max_conns;
  int32_t idle_timeout_ms;
  uint32_t hooks; /* RK_RELAY_HOOK_* for its connections */
  int hold;       /* RK_LISTEN_HOLD */
  int32_t hold_timeout_ms;
  uint32_t hold_first; /* atomic: bytes to read before the first RK_EV_HOLD
                         (rk_listener_set_hold_first) */
  int hold_wait; /* atomic: rk_listener_set_hold_wait */
  int32_t active; /* atomic */
  int32_t peak;   /* atomic: the most open at once */
  /* atomics: connections accepted and ended, bytes written to the targets
   * and to the clients by all its connections (rk_listener_counters) */
  int64_t n_accepted, n_ended;
  uint64_t bytes_up, bytes_down;
  int32_t refs;   /* atomic: workers holding it + 1 while open + conns */
  int32_t detach_left; /* atomic: workers still to detach on close */
  int started, closing;
  uint32_t events;   /* atomic: RK_EVMASK_* */
  int closed_done;   /* atomic: the fd is closed */
  int drain_posted;  /* atomic: RK_EV_LISTENER_DRAINED went out */
  rk__target *target; /* NULL: accept and post only (not used yet) */
  rk__router *router;  /* the router new connections use (a reference),
                          or NULL; under the engine's tbl_lock */
  void *tls_ctx;      /* server SSL_CTX (a reference), or NULL */
  rk__engine *e;
  char *unix_path;
  rk__listener *next; /* engine list */
  int64_t paused_until; /* per-worker pause is approximated engine-wide */
  struct rk__pp_conf *pp; /* rk_listener_set_proxy, or NULL */
};

enum {
  RK__CMD_ADD_RELAY = 1,
  RK__CMD_CLOSE,
  RK__CMD_LISTEN,
  RK__CMD_UNLISTEN,
  RK__CMD_RESOLVED,
  RK__CMD_START_CONNECT,
  RK__CMD_STOP,
  RK__CMD_ABORT_LISTENER,
  RK__CMD_HOOK_RETURN,
  RK__CMD_HOLD_READ,
  RK__CMD_HOLD_DECIDE,
  RK__CMD_HOLD_WRITE,
  RK__CMD_ROUTE_RESOLVED,
  RK__CMD_HOLD_TLS,
  RK__CMD_CALL, /* fn(worker, cmd): a unit's own command (tunnel.c) */
  RK__CMD_HOLD_BATCH /* rk_hold_submit's checked records (data, len) */
};

typedef struct rk__cmd {
  int type;
  int32_t id;
  int32_t arg;
  rk__conn *conn;
  rk__listener *listener;
  struct addrinfo *ai;
  int err;
  uint8_t *data; /* HOOK_RESUME, HOLD_DECIDE (to b): malloc'd bytes */
  uint32_t len;
  uint8_t *data2; /* HOLD_DECIDE: malloc'd bytes to a */
  uint32_t len2;
  rk__target *target; /* HOLD_DECIDE: where to connect (owned) */
  void *tls_ctx;      /* HOLD_TLS: a client SSL_CTX reference (owned) */
  rk_decision_t decision; /* HOLD_DECIDE: what rk_hold_decide was given,
                             length resolved for FILE */
  void (*fn)(rk__worker *w, struct rk__cmd *cmd); /* CALL; must not free
                                                     cmd */
  struct rk__cmd *next;
} rk__cmd;

struct rk__worker {
  int tag; /* RK__TAG_WAKE: the eventfd's epoll data points here */
  int index;
  rk__engine *e;
  pthread_t thread;
  int epfd, evfd;
  pthread_mutex_t cmd_lock;
  rk__cmd *cmd_head, *cmd_tail;
  rk__conn *conns; /* live conns on this worker */
  rk__conn *ready; /* conns with work left over */
  rk__conn *dead;  /* freed after the current epoll batch */
  int pipes[RK__POOL_MAX][2];
  int npipes;    /* atomic: read by stats */
  int big_pipes; /* open pipes of RK__PIPE_CHUNK (pooled or in use) */
  uint8_t *bufs[RK__POOL_MAX];
  int nbufs;
  rk__batch *batches[RK__BATCH_POOL_MAX]; /* free hook batches */
  int nbatches;
  int pool_uses; /* pool takes since the last sweep */
  rk__listener *paused[RK__MAX_PAUSED];
  int npaused;
  /* listeners let go in the epoll batch being handled (their later events
   * in it are skipped); grown as needed, emptied at each batch */
  const void **gone;
  int ngone, gone_cap;
  int64_t next_sweep;
  int stop;
  void *tunnels; /* tunnel.c's state of this worker, or NULL */
};

typedef struct rk__resolve_req {
  int32_t conn_id;
  int worker;
  char *host;
  int32_t port;
  int32_t family;
  int route; /* for a router (RK__CMD_ROUTE_RESOLVED), not a connect */
  struct rk__resolve_req *next;
} rk__resolve_req;

struct rk__engine {
  int32_t handle;
  int nworkers;
  rk__worker *workers;
  int32_t max_conns;
  int32_t active; /* atomic */
  uint64_t accepted, closed, rejected; /* atomics */
  int32_t next_id; /* atomic */
  uint32_t rr;     /* atomic: round-robin worker choice */
  int closed_flag;

  /* event queue */
  pthread_mutex_t q_lock;
  pthread_cond_t q_cond;
  uint32_t *q; /* ring of records */
  size_t q_cap, q_head, q_len; /* in records */
  int q_armed;
  int q_woken;
  int q_deferred; /* a worker's batch made the queue non-empty: it tells
                     the host at the batch's end (rk__post_flush) */
  int waiters;
  void (*notify)(void);

  /* id -> conn table */
  pthread_mutex_t tbl_lock;
  rk__conn *tbl[RK__TABLE_BUCKETS];
  rk__listener *listeners;

  /* batches lent to the host, by token (relay.c) */
  pthread_mutex_t lend_lock;
  rk__batch *lend[RK__LEND_BUCKETS];
  uint32_t next_token; /* under lend_lock */

  /* resolver threads (getaddrinfo blocks): started on demand, up to
   * RK__RESOLVERS, so one slow name does not hold up the others */
  pthread_mutex_t res_lock;
  pthread_cond_t res_cond;
  rk__resolve_req *res_head, *res_tail;
  int res_started, res_stop, res_idle;
  pthread_t res_threads[RK__RESOLVERS];

  /* test posters */
  pthread_t *test_threads;
  int ntest;
};

/* ---- functions, by the unit that defines them ------------------------- */

/* engine.c: engines, workers and their command queues, the event queue,
 * the id table, clocks. */
rk__engine *rk__engine_get(int32_t h);
int64_t rk__now_mono(void);
int64_t rk__now_real(void);
int32_t rk__new_id(rk__engine *e);
rk__worker *rk__pick_worker(rk__engine *e);
void rk__post(rk__engine *e, const uint32_t *rec);
/* The calling worker's batch is over: tell the host of what it posted. */
void rk__post_flush(rk__engine *e);
void rk__send(rk__worker *w, rk__cmd *c);
/* The worker of connection id, or NULL when there is none. Any thread. */
rk__worker *rk__conn_worker(rk__engine *e, int32_t id);
/* Worker w's live connection id, or NULL. On w's thread. */
rk__conn *rk__worker_find(rk__worker *w, int32_t id);
void rk__wake(rk__worker *w);
int32_t rk__send_to_conn(rk__engine *e, int32_t id, rk__cmd *cmd);
int32_t rk__conn_publish(rk__engine *e, rk__conn *c, rk__cmd *cmd);
void rk__table_add(rk__engine *e, rk__conn *c);
void rk__table_del(rk__engine *e, rk__conn *c);
rk__conn *rk__table_find_locked(rk__engine *e, int32_t id);

/* listen.c: listeners, accepting, per-worker attach and pause. */
void rk__accept(rk__worker *w, rk__listener *l);
void rk__listener_attach(rk__worker *w, rk__listener *l);
void rk__listener_detach(rk__worker *w, rk__listener *l);
void rk__listeners_resume(rk__worker *w, int64_t now);
void rk__listener_unref(rk__listener *l);
void rk__listener_check_drained(rk__listener *l);
int rk__listener_wants(rk__listener *l, uint32_t what);
/* Listener lid of e, or NULL; the caller holds e->tbl_lock. */
rk__listener *rk__listener_find_locked(rk__engine *e, int32_t lid);
/* A 64-bit value into two record words (low, high). */
static inline void rk__put_u64(uint32_t *rec, int word, uint64_t v) {
  rec[word] = (uint32_t)v;
  rec[word + 1] = (uint32_t)(v >> 32);
}
void rk__put_addr(uint32_t *rec, int port_word, int addr_word,
                  const struct sockaddr_storage *ss);

/* connect.c: targets, the resolver threads, outbound connects. */
rk__target *rk__copy_target(const char *host, int32_t port, int32_t family,
                            int32_t timeout_ms, const char *bind_host);
void rk__free_target(rk__target *t);
void rk__ai_free(struct addrinfo *ai);
int rk__parse_numeric(const char *host, int32_t port, int family,
                      struct addrinfo **out);
void rk__resolve_submit(rk__engine *e, rk__conn *c);
void rk__resolve_name(rk__engine *e, rk__conn *c, const char *name);
void rk__resolver_stop(rk__engine *e);
void rk__connect_start(rk__conn *c);
void rk__connect_resolved(rk__conn *c, struct addrinfo *ai, int err);
void rk__connect_event(rk__conn *c, int side, uint32_t events);

/* relay.c: connections, sides, pumping both directions, hooks, the sweep. */
rk__conn *rk__conn_new(rk__engine *e, int kind);
void rk__conn_attach(rk__conn *c);
void rk__conn_run(rk__conn *c);
void rk__conn_event(rk__conn *c, int side, uint32_t events);
void rk__conn_end(rk__conn *c, int reason, int err);
void rk__conn_close_cmd(rk__conn *c, int mode);
void rk__side_init(rk__side *s, int rfd, int wfd);
void rk__side_init_sock(rk__side *s, int fd);
int rk__side_register(rk__worker *w, rk__conn *c, rk__side *s);
void rk__sweep(rk__worker *w, int64_t now);
void rk__mark_ready(rk__conn *c);
void rk__hook_returned(rk__conn *c, int d);
void rk__lend_init(rk__engine *e);
void rk__lend_free(rk__engine *e);
void rk__batch_pool_release(rk__worker *w);
void rk__tls_accept_step(rk__conn *c);

/* pool.c: each worker's pipes and buffers. */
int rk__pipe_get(rk__worker *w, int p[2]);
void rk__pipe_put(rk__worker *w, int p[2]);
void rk__pipe_close(rk__worker *w, int p[2]);
uint8_t *rk__buf_get(rk__worker *w);
void rk__buf_put(rk__worker *w, uint8_t *b);
void rk__dir_buf_release(rk__worker *w, rk__dir *dir);
void rk__worker_release_pools(rk__worker *w);

/* hold.c: held connections (RK_LISTEN_HOLD) and their decisions. */
void rk__hold_start(rk__conn *c);
void rk__hold_event(rk__conn *c, int side, uint32_t events);
void rk__hold_read_cmd(rk__conn *c, uint32_t max);
void rk__hold_decide_cmd(rk__conn *c, rk__cmd *cmd);
void rk__hold_batch_run(rk__worker *w, rk__cmd *batch);
/* The sweep: a first RK_EV_HOLD that waited long enough for bytes goes out. */
void rk__hold_sweep(rk__conn *c, int64_t now);
void rk__hold_retry(rk__conn *c, int err);
void rk__hold_write_cmd(rk__conn *c, const uint8_t *data, uint32_t len);
void rk__hold_tls_cmd(rk__conn *c, rk__cmd *cmd);
void rk__hold_tls_drop(rk__conn *c);
void rk__cmd_free(rk__cmd *cmd);
void rk__hold_post(rk__conn *c, uint32_t flags);

/* router.c: the built-in routers (rk_listener_set_router). */
void rk__route_start(rk__conn *c);
void rk__route_input(rk__conn *c, uint32_t flags);
void rk__route_resolved(rk__conn *c, struct addrinfo *ai, int err);
int rk__route_connect_failed(rk__conn *c, int err);
void rk__route_end(rk__conn *c, int err);
rk__router *rk__router_take(rk__listener *l);
void rk__router_unref(rk__router *rt);

/* proxyhdr.c: PROXY headers read (and sent) by the engine. rk__pp_held
 * is called where a held connection would post RK_EV_HOLD: non-zero when
 * it dealt with the connection itself (nothing is posted); it may turn
 * *flags into RK_HOLD_FIRST to hand the connection to the host. */
int rk__pp_held(rk__conn *c, uint32_t *flags);
/* Its limits, as src/protocol/proxy_protocol.ts (V1_MAX, V2_MAX) and
 * src/proxy/accept_proxy.ts (FIRST_READ) give them (rk_layout
 * "proxy_limits"; a test compares). */
#define RK__V1_MAX 107     /* the longest v1 header, CRLF included */
#define RK__V2_MAX 16384   /* the longest v2 header buffered */
#define RK__FIRST_READ 536 /* the first read of a header */
void rk__pp_conf_free(struct rk__pp_conf *pp);
/* An IPv6 address as text (src/protocol/ip.ts ipv6Text: lowercase groups,
 * the first longest run of two or more zero groups as "::"), into out (at
 * least 40 bytes). Return its length. The routers use it too. */
int rk__ipv6_text(const uint8_t b[16], char *out);
/* Non-zero when pp reads a header from the client (a mode other than
 * RK_PROXY_NONE): then the listener cannot terminate TLS. */
int rk__pp_reads(const struct rk__pp_conf *pp);

/* tls.c: OpenSSL loaded at run time; contexts; the TLS seam.
 *
 * The TLS seam: a transport over one connected non-blocking socket, for
 * any module of the library (the relay uses it for a TLS side; a tunnel
 * link can use it the same way). All calls for one rk__tls come from one
 * thread (the worker that owns the socket); different ones may run on
 * different threads at once.
 * - rk__tls_ctx_ref(handle): a reference to a context of rk_tls_*_ctx
 *   (NULL if there is none or TLS is not loaded); rk__tls_ctx_unref drops
 *   it. rk__tls_new takes its own reference to the context.
 * - rk__tls_new(ctx, fd, server, servername): wrap fd (not owned: the
 *   caller closes it after rk__tls_free). server: accept; else connect,
 *   with servername (a name: SNI and the certificate's name; an address:
 *   the certificate's IP) - may be NULL. NULL on failure (out of memory).
 * - rk__tls_read / rk__tls_write: like read(2)/write(2) on plaintext, but
 *   -EAGAIN comes with *want = EPOLLIN or EPOLLOUT: the socket event to
 *   wait for (a read may need to write during a handshake and vice versa).
 *   A read returns 0 at the peer's close_notify or a bare FIN; at most one
 *   record (16 KiB) per read, and more may be buffered inside: read again
 *   until -EAGAIN, or check rk__tls_pending after a write. Writes may be
 *   partial; retry with the rest (the buffer may move). Errors: RK_ETLS,
 *   RK_ECERT_UNTRUSTED (the peer's certificate did not verify;
 *   rk__tls_verify_text says why), or a negative errno of the socket.
 * - rk__tls_handshake: drive the handshake alone (0 when done, -EAGAIN
 *   with *want, or an error: RK_ETLS also for an EOF before its end); the
 *   first read or write does it too.
 * - rk__tls_shutdown: send close_notify once (0, or -EAGAIN with *want);
 *   reading goes on (half-close). Then shutdown(SHUT_WR)/close the fd.
 * - rk__tls_free: release the session (sends nothing). */
int32_t rk_tls_load(const char *path, char *reason, int32_t cap);
void *rk__tls_ctx_ref(int32_t id);
void rk__tls_ctx_unref(void *ctx);
rk__tls *rk__tls_new(void *ctx, int fd, int server, const char *servername);
void rk__tls_free(rk__tls *t);
ssize_t rk__tls_read(rk__tls *t, void *buf, size_t len, uint32_t *want);
ssize_t rk__tls_write(rk__tls *t, const void *buf, size_t len,
                      uint32_t *want);
int rk__tls_handshake(rk__tls *t, uint32_t *want);
int rk__tls_shutdown(rk__tls *t, uint32_t *want);
int rk__tls_pending(const rk__tls *t);
/* t is a long-lived bulk side (a tunnel link): it keeps its record buffers
 * between reads and writes (no malloc and free per burst; a side that may
 * sit idle releases them, the default) and reads through a buffer of many
 * records filled with one read(2). Before its first read. (Not for a side
 * that counts on rk__tls_pending: bytes in that buffer are not pending.) */
void rk__tls_bulk(rk__tls *t);
/* The plaintext of a full TLS record (what one SSL_write puts in each). */
#define RK__TLS_RECORD 16384
/* Gather t's records in a buffer of size bytes, written to the socket when
 * full or on rk__tls_flush (a bulk side: one write(2) for several records
 * instead of one each). Then the caller must rk__tls_flush once it has no
 * more to write now (0, -EAGAIN with *want, or an error); a handshake and
 * a close_notify flush themselves. 0, or -ENOMEM (writes stay as they were). */
int rk__tls_batch_writes(rk__tls *t, int size);
int rk__tls_flush(rk__tls *t, uint32_t *want);
int rk__tls_established(const rk__tls *t);
const char *rk__tls_verify_text(const rk__tls *t);
/* Keep why t's peer certificate failed for rk_tls_cert_failure(engine, id). */
void rk__tls_keep_failure(int32_t engine, int32_t id, rk__tls *t);

/* tunnel.c: the tunnel's data plane (rk_tunnel_*). */
void rk__tunnel_event(void *p, uint32_t events);
/* Run the links whose streams had events in this batch (before reap). */
void rk__tunnel_flush(rk__worker *w);
void rk__tunnel_reap(rk__worker *w);
void rk__tunnel_worker_stop(rk__worker *w);

/* n bytes of direction dir of c were written: its counter and its
 * listener's (rk_listener_counters). */
static inline void rk__wrote(rk__conn *c, rk__dir *dir, uint64_t n) {
  /* release: a reader that sees this count sees the reads before it (the
   * bytes were counted in rd first), so it never finds more written than
   * read (rk_conn_stats reads wr first) */
  __atomic_add_fetch(&dir->wr, n, __ATOMIC_RELEASE);
  rk__listener *l = c->listener;
  if (l != NULL)
    RK__ADD(dir == &c->dir[0] ? &l->bytes_up : &l->bytes_down, n);
}

/* When c last moved a byte, in ms since the epoch, from the monotonic time
 * it keeps (never before it started: the two clocks are read apart). */
static inline int64_t rk__last_real_ms(rk__conn *c, int64_t mono, int64_t real) {
  int64_t t = real - (mono - RK__LOAD(&c->last_mono_ms));
  return t < c->start_real_ms ? c->start_real_ms : t;
}

#endif
