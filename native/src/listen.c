/*
 * listen.c - listeners and accepting.
 *
 * Theory of operation
 * - A listening fd is added to every worker's epoll set with EPOLLEXCLUSIVE,
 *   so one worker wakes per incoming connection and accepts it itself: the
 *   accepted connection lives on that worker with no hand-off.
 * - Limits are checked right after accept(2): a connection over the engine
 *   or listener limit is closed at once and reported (RK_EV_REJECTED with
 *   RK_ELIMIT), so a client learns immediately instead of hanging in the
 *   backlog.
 * - EMFILE/ENFILE from accept pauses the listener on that worker for
 *   RK__ACCEPT_PAUSE_MS instead of spinning on a level-triggered fd that
 *   stays readable; the sweep puts it back when the pause ends
 *   (rk__listeners_resume).
 * - A listener is referenced by every worker that has it in its epoll set,
 *   by each of its connections, and once while open; the last worker to
 *   detach closes the fd, the last reference frees it.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- listeners --------------------------------------------------------- */

void rk__listener_unref(rk__listener *l) {
  if (__atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  rk__engine *e = l->e;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener **p = &e->listeners;
  while (*p != NULL && *p != l)
    p = &(*p)->next;
  if (*p == l)
    *p = l->next;
  pthread_mutex_unlock(&e->tbl_lock);
  rk__free_target(l->target);
  rk__router_unref(l->router);
  rk__pp_conf_free(l->pp);
  rk__tls_ctx_unref(l->tls_ctx);
  free(l->unix_path);
  free(l);
}

int rk__listener_wants(rk__listener *l, uint32_t what) {
  return (__atomic_load_n(&l->events, __ATOMIC_RELAXED) & what) != 0;
}

/* Send a command about l to every worker: all of them or, when memory is
 * short, none (the commands are allocated before any is sent). */
static int rk__broadcast(rk__engine *e, int type, rk__listener *l) {
  rk__cmd *cmds[e->nworkers];
  for (int i = 0; i < e->nworkers; i++) {
    cmds[i] = calloc(1, sizeof(rk__cmd));
    if (cmds[i] == NULL) {
      while (i-- > 0)
        free(cmds[i]);
      return -ENOMEM;
    }
    cmds[i]->type = type;
    cmds[i]->listener = l;
  }
  for (int i = 0; i < e->nworkers; i++)
    rk__send(&e->workers[i], cmds[i]);
  return 0;
}

rk__listener *rk__listener_find_locked(rk__engine *e, int32_t lid) {
  rk__listener *l = e->listeners;
  while (l != NULL && l->id != lid)
    l = l->next;
  return l;
}

/* Once l is closed and has no connection left, say so, exactly once.
 * Called after each of its connections ends and when its fd is closed;
 * sequentially consistent atomics make sure one of the two sees both. */
/* Its counters into words 4..12 of a record (RK_EV_LISTENER_DRAINED and
 * rk_listener_counters: the layout in relaykit.h). */
static void rk__listener_totals(rk__listener *l, uint32_t *rec) {
  rk__put_u64(rec, 4, (uint64_t)RK__LOAD(&l->n_accepted));
  rk__put_u64(rec, 6, (uint64_t)RK__LOAD(&l->n_ended));
  rk__put_u64(rec, 8, RK__LOAD(&l->bytes_up));
  rk__put_u64(rec, 10, RK__LOAD(&l->bytes_down));
  rec[12] = (uint32_t)RK__LOAD(&l->peak);
  rec[13] = (uint32_t)RK__LOAD(&l->active);
}

void rk__listener_check_drained(rk__listener *l) {
  if (__atomic_load_n(&l->closed_done, __ATOMIC_SEQ_CST) &&
      __atomic_load_n(&l->active, __ATOMIC_SEQ_CST) == 0 &&
      __atomic_exchange_n(&l->drain_posted, 1, __ATOMIC_SEQ_CST) == 0) {
    uint32_t rec[RK_EVENT_WORDS] = {RK_EV_LISTENER_DRAINED, 0, (uint32_t)l->id};
    rk__listener_totals(l, rec);
    rk__post(l->e, rec);
  }
}

int32_t rk_listener_set_events(int32_t h, int32_t lid, uint32_t mask) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (mask & ~RK_EVMASK_ALL)
    return -EINVAL;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l != NULL)
    __atomic_store_n(&l->events, mask, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&e->tbl_lock);
  return l == NULL ? -ENOENT : 0;
}

int32_t rk_listener_set_hold_wait(int32_t h, int32_t lid, int32_t on) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (on != 0 && on != 1)
    return -EINVAL;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l != NULL)
    __atomic_store_n(&l->hold_wait, on, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&e->tbl_lock);
  return l == NULL ? -ENOENT : 0;
}

int32_t rk_listener_set_hold_first(int32_t h, int32_t lid, int32_t max) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (max < 0)
    return -EINVAL;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l != NULL)
    __atomic_store_n(&l->hold_first, (uint32_t)max, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&e->tbl_lock);
  return l == NULL ? -ENOENT : 0;
}

int32_t rk_listener_active(int32_t h, int32_t lid) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  int32_t n = l == NULL ? -ENOENT : __atomic_load_n(&l->active, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&e->tbl_lock);
  return n;
}

int32_t rk_listener_counters(int32_t h, int32_t lid, uint32_t *out) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (out == NULL)
    return -EINVAL;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l != NULL) {
    memset(out, 0, RK_EVENT_WORDS * sizeof *out);
    rk__listener_totals(l, out);
  }
  pthread_mutex_unlock(&e->tbl_lock);
  return l == NULL ? -ENOENT : 0;
}

/* Records of rk_listener_conns, keyed by their word 0 (the id). */
static void rk__rec_swap(uint32_t *a, uint32_t *b) {
  uint32_t t[RK_CONN_WORDS];
  memcpy(t, a, sizeof t);
  memcpy(a, b, sizeof t);
  memcpy(b, t, sizeof t);
}

/* Restore the max-heap (by id) of the n records r below record i. */
static void rk__rec_sift(uint32_t *r, size_t n, size_t i) {
  for (;;) {
    size_t m = i, a = 2 * i + 1, b = a + 1;
    if (a < n && r[a * RK_CONN_WORDS] > r[m * RK_CONN_WORDS])
      m = a;
    if (b < n && r[b * RK_CONN_WORDS] > r[m * RK_CONN_WORDS])
      m = b;
    if (m == i)
      return;
    rk__rec_swap(r + i * RK_CONN_WORDS, r + m * RK_CONN_WORDS);
    i = m;
  }
}

static void rk__rec_heapify(uint32_t *r, size_t n) {
  for (size_t i = n / 2; i-- > 0;)
    rk__rec_sift(r, n, i);
}

static void rk__conn_record(uint32_t *r, rk__conn *c, int64_t mono,
                            int64_t real) {
  memset(r, 0, RK_CONN_WORDS * sizeof *r);
  r[0] = (uint32_t)c->id;
  r[1] = (uint32_t)RK__LOAD(&c->state);
  rk__put_u64(r, 2, (uint64_t)c->start_real_ms);
  rk__put_u64(r, 4, RK__LOAD(&c->dir[0].wr));
  r[6] = c->peer.ss_family;
  rk__put_addr(r, 7, 8, &c->peer);
  rk__put_u64(r, 12, RK__LOAD(&c->dir[1].wr));
  rk__put_u64(r, 14, RK__LOAD(&c->dir[0].rd));
  rk__put_u64(r, 16, RK__LOAD(&c->dir[1].rd));
  rk__put_u64(r, 18, (uint64_t)rk__last_real_ms(c, mono, real));
}

int32_t rk_listener_conns(int32_t h, int32_t lid, uint32_t *out, int32_t max) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (max < 0 || (max > 0 && out == NULL))
    return -EINVAL;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l == NULL) {
    pthread_mutex_unlock(&e->tbl_lock);
    return -ENOENT;
  }
  /* A connection is in the table from its accept until its end, with its
   * listener, peer and start set before it goes in; its counters and state
   * are atomics. One pass, under the lock that adds and removes, keeping
   * the max oldest: once out is full it is a max-heap by id, and a record
   * older than its root replaces it. Nothing is allocated. */
  int32_t n = 0;
  size_t kept = 0, room = (size_t)max;
  int64_t mono = rk__now_mono(), real = rk__now_real();
  for (size_t b = 0; b < RK__TABLE_BUCKETS; b++) {
    for (rk__conn *c = e->tbl[b]; c != NULL; c = c->tbl_next) {
      if (c->listener != l)
        continue;
      if (n < INT32_MAX)
        n++;
      if (kept < room) {
        rk__conn_record(out + kept * RK_CONN_WORDS, c, mono, real);
        if (++kept == room)
          rk__rec_heapify(out, kept);
      } else if (room > 0 && (uint32_t)c->id < out[0]) {
        rk__conn_record(out, c, mono, real);
        rk__rec_sift(out, kept, 0);
      }
    }
  }
  pthread_mutex_unlock(&e->tbl_lock);
  /* oldest first (ids grow as connections open): a heapsort in place,
   * outside the lock */
  if (kept < room)
    rk__rec_heapify(out, kept);
  for (size_t end = kept; end > 1; end--) {
    rk__rec_swap(out, out + (end - 1) * RK_CONN_WORDS);
    rk__rec_sift(out, end - 1, 0);
  }
  return n;
}

int32_t rk_listener_abort(int32_t h, int32_t lid) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  /* One reference per command, so l outlives them - taken only while l
   * still has references. At 0 its last rk__listener_unref (a worker's,
   * after rk_listener_close) is waiting for tbl_lock to unlink and free it:
   * taking references then would revive a listener about to be freed. It
   * has no connection left to abort, and nothing is sent. */
  int32_t refs = 0;
  if (l != NULL) {
    refs = __atomic_load_n(&l->refs, __ATOMIC_ACQUIRE);
    while (refs > 0 &&
           !__atomic_compare_exchange_n(&l->refs, &refs, refs + e->nworkers,
                                        0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    }
  }
  pthread_mutex_unlock(&e->tbl_lock);
  if (l == NULL)
    return -ENOENT;
  if (refs == 0)
    return 0;
  int r = rk__broadcast(e, RK__CMD_ABORT_LISTENER, l);
  if (r != 0) /* nothing was sent: give the references back */
    for (int i = 0; i < e->nworkers; i++)
      rk__listener_unref(l);
  return r;
}


/* Register a listening fd (owned from here on) as a listener; `unix_path`
 * (may be NULL) is unlinked when it closes. */
static int32_t rk__listener_add(rk__engine *e, int fd, const char *unix_path,
                                int32_t max_conns, int32_t idle,
                                uint32_t evmask, uint32_t hooks,
                                uint32_t flags, int32_t hold_timeout) {
  int is_unix = unix_path != NULL;

  rk__listener *l = calloc(1, sizeof *l);
  if (l == NULL) {
    close(fd);
    return -ENOMEM;
  }
  l->tag = RK__TAG_LISTENER;
  l->id = rk__new_id(e);
  l->fd = fd;
  l->e = e;
  l->max_conns = max_conns;
  l->idle_timeout_ms = idle;
  l->refs = 1;
  l->events = evmask;
  l->hooks = hooks & (RK_RELAY_HOOK_AB | RK_RELAY_HOOK_BA);
  l->hold = (flags & RK_LISTEN_HOLD) != 0;
  l->hold_timeout_ms = hold_timeout;
  if (is_unix)
    l->unix_path = strdup(unix_path);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (!is_unix && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
      ss.ss_family != AF_UNIX)
    l->port = ntohs(ss.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *)&ss)->sin6_port
                        : ((struct sockaddr_in *)&ss)->sin_port);
  /* closed_flag is checked where rk_engine_close sets it: a listener is
   * either in the list it closes, or refused */
  int32_t id = l->id; /* once listed, rk_engine_close may free it */
  pthread_mutex_lock(&e->tbl_lock);
  int closed = e->closed_flag;
  if (!closed) {
    l->next = e->listeners;
    e->listeners = l;
  }
  pthread_mutex_unlock(&e->tbl_lock);
  if (closed) {
    close(fd);
    if (l->unix_path != NULL)
      unlink(l->unix_path);
    free(l->unix_path);
    free(l);
    return RK_ECLOSED;
  }
  return id;
}

/* Adopt an inherited listening socket (socket activation): a duplicate of
 * it, so that the inherited fd stays open for a later listener. The file
 * of a Unix socket is not ours: it is not unlinked on close. */
static int32_t rk__listen_fd(rk__engine *e, int32_t fd, int32_t max_conns,
                             int32_t idle, uint32_t evmask, uint32_t hooks,
                             uint32_t flags, int32_t hold_timeout) {
  int type = 0, acc = 0;
  socklen_t tl = sizeof type, al = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
    return -errno;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0)
    return -errno;
  if (type != SOCK_STREAM || !acc)
    return -EINVAL; /* not a listening stream socket */
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0)
    return -errno;
  int fl = fcntl(dup, F_GETFL);
  if (fl < 0 || fcntl(dup, F_SETFL, fl | O_NONBLOCK) != 0) {
    int err = -errno;
    close(dup);
    return err;
  }
  int one = 1;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(dup, (struct sockaddr *)&ss, &sl) == 0 &&
      ss.ss_family != AF_UNIX)
    setsockopt(dup, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return rk__listener_add(e, dup, NULL, max_conns, idle, evmask, hooks, flags,
                          hold_timeout);
}

int32_t rk_listen(int32_t h, const char *host, int32_t port,
                  const rk_listen_opts_t *opts) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (host == NULL || port > 65535)
    return -EINVAL;
  rk_listen_opts_t o = {.events = RK_EVMASK_ALL};
  if (opts != NULL)
    o = *opts;
  int32_t backlog = o.backlog > 0 ? o.backlog : RK__BACKLOG;
  uint32_t flags = o.flags;
  int32_t max_conns = o.max_conns;
  int32_t idle = o.idle_timeout_ms;
  uint32_t evmask = o.events;
  uint32_t hooks = o.hooks;
  int32_t hold_timeout = o.hold_timeout_ms;
  int32_t adopt = (flags & RK_LISTEN_ADOPT) != 0 ? o.adopt_fd : -1;
  if (max_conns < 0 || idle < 0 || hold_timeout < 0)
    return -EINVAL;
  if (adopt >= 0)
    return rk__listen_fd(e, adopt, max_conns, idle, evmask, hooks, flags,
                         hold_timeout);

  struct addrinfo *ai = NULL;
  int r = rk__parse_numeric(host[0] ? host : "0.0.0.0", port, RK_FAMILY_ANY,
                            &ai);
  if (r == -EINVAL) {
    /* a name such as "localhost": resolve it here, the caller expects the
     * bind to have happened when we return */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0)
      return RK_ERESOLVE;
    r = 0;
  }
  if (r != 0)
    return r;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = -errno;
    rk__ai_free(ai);
    return r;
  }
  int one = 1;
  if (ai->ai_family != AF_UNIX) {
    /* accepted sockets inherit it: one setsockopt here, none per accept */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (flags & RK_LISTEN_REUSEADDR || (flags & ~RK_LISTEN_HOLD) == 0)
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (flags & RK_LISTEN_REUSEPORT)
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ai->ai_family == AF_INET6 && (flags & RK_LISTEN_V6ONLY))
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
    r = -errno;
    close(fd);
    rk__ai_free(ai);
    return r;
  }
  int is_unix = ai->ai_family == AF_UNIX;
  rk__ai_free(ai);
  return rk__listener_add(e, fd, is_unix ? host : NULL, max_conns, idle,
                          evmask, hooks, flags, hold_timeout);
}

/* The listener calls below look the listener up, check and change its
 * state (started, closing, target) and queue their commands to the workers
 * all under tbl_lock: two threads cannot both start or both close it, the
 * workers get LISTEN and UNLISTEN in the same order, and a listener that a
 * worker frees (rk__listener_unref, also under tbl_lock) is not used after
 * it left the list. */

int32_t rk_listener_port(int32_t h, int32_t lid) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  int32_t port = l == NULL ? -ENOENT : l->port;
  pthread_mutex_unlock(&e->tbl_lock);
  return port;
}

int32_t rk_listener_dup(int32_t h, int32_t lid) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  /* a closing listener's fd is closed by its last worker, without tbl_lock:
   * only one that is not closing is sure to hold it */
  int32_t r = -ENOENT;
  if (l != NULL && !l->closing && l->fd >= 0) {
    r = fcntl(l->fd, F_DUPFD_CLOEXEC, 3);
    if (r < 0)
      r = -errno;
  }
  pthread_mutex_unlock(&e->tbl_lock);
  return r;
}

int32_t rk_listener_set_target(int32_t h, int32_t lid, const char *host,
                               int32_t port, int32_t family,
                               int32_t timeout_ms, const char *bind_host) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (host == NULL || port > 65535 || timeout_ms < 0 || family < 0 ||
      family > RK_FAMILY_ONLY_V6)
    return -EINVAL;
  rk__target *t = rk__copy_target(host, port, family, timeout_ms, bind_host);
  if (t == NULL)
    return -ENOMEM;
  int32_t r = 0;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l == NULL) {
    r = -ENOENT;
  } else if (l->started) {
    r = -EINVAL; /* the workers read the target from now on */
  } else {
    rk__target *old = l->target;
    l->target = t;
    t = old;
  }
  pthread_mutex_unlock(&e->tbl_lock);
  rk__free_target(t); /* the replaced one, or the unused copy */
  return r;
}

int32_t rk_listener_set_tls(int32_t h, int32_t lid, int32_t ctx) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (!rk_tls_load(NULL, NULL, 0))
    return RK_ENOTLS;
  void *c = rk__tls_ctx_ref(ctx);
  if (c == NULL)
    return -ENOENT;
  int32_t r = 0;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l == NULL) {
    r = -ENOENT;
  } else if (l->started) {
    r = -EINVAL; /* the workers read it from now on */
  } else if (rk__pp_reads(l->pp)) {
    r = -EINVAL; /* a PROXY header read before the TLS: not in the library */
  } else {
    void *old = l->tls_ctx;
    l->tls_ctx = c;
    c = old;
  }
  pthread_mutex_unlock(&e->tbl_lock);
  rk__tls_ctx_unref(c); /* the replaced one, or the unused reference */
  return r;
}

int32_t rk_listener_start(int32_t h, int32_t lid) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  int32_t r;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l == NULL)
    r = -ENOENT;
  else if (l->started || l->closing)
    r = -EINVAL;
  else if (l->target == NULL && !l->hold)
    r = -EDESTADDRREQ;
  else if ((r = rk__broadcast(e, RK__CMD_LISTEN, l)) == 0)
    l->started = 1;
  pthread_mutex_unlock(&e->tbl_lock);
  return r;
}

int32_t rk_listener_close(int32_t h, int32_t lid) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l == NULL || l->closing) {
    pthread_mutex_unlock(&e->tbl_lock);
    return l == NULL ? -ENOENT : 0;
  }
  l->closing = 1;
  if (l->started) {
    l->detach_left = e->nworkers;
    int r = rk__broadcast(e, RK__CMD_UNLISTEN, l);
    if (r != 0)
      l->closing = 0; /* nothing was sent: still open, the caller may retry */
    pthread_mutex_unlock(&e->tbl_lock);
    return r;
  }
  pthread_mutex_unlock(&e->tbl_lock);
  /* never started: no worker knows it, and closing keeps everyone else
   * away, so this thread closes it */
  close(l->fd);
  l->fd = -1;
  if (l->unix_path != NULL)
    unlink(l->unix_path);
  uint32_t rec[RK_EVENT_WORDS] = {RK_EV_LISTENER_CLOSED, 0, (uint32_t)l->id};
  rk__post(e, rec);
  __atomic_store_n(&l->closed_done, 1, __ATOMIC_SEQ_CST);
  rk__listener_check_drained(l);
  rk__listener_unref(l);
  return 0;
}

/* ---- accepting --------------------------------------------------------- */

/* Port and address bytes of a socket address into rec (port word, first
 * address word). */
void rk__put_addr(uint32_t *rec, int port_word, int addr_word,
                  const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    rec[port_word] = ntohs(s->sin_port);
    memcpy(&rec[addr_word], &s->sin_addr, 4);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    rec[port_word] = ntohs(s->sin6_port);
    memcpy(&rec[addr_word], &s->sin6_addr, 16);
  }
}

static void rk__post_accept(rk__engine *e, rk__conn *c, int32_t lid) {
  uint32_t rec[RK_EVENT_WORDS] = {RK_EV_ACCEPT, (uint32_t)c->id,
                                  (uint32_t)lid};
  rec[6] = c->peer.ss_family;
  rk__put_addr(rec, 7, 8, &c->peer);
  rk__post(e, rec);
}

void rk__accept(rk__worker *w, rk__listener *l) {
  rk__engine *e = w->e;
  /* Accept a bounded batch per wake-up so that one busy listener does not
   * starve the relays on this worker. */
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EINTR || err == ECONNABORTED)
        return;
      uint32_t rec[RK_EVENT_WORDS] = {RK_EV_ACCEPT_ERROR, 0, (uint32_t)l->id,
                                      (uint32_t)-err};
      rk__post(e, rec);
      if ((err == EMFILE || err == ENFILE || err == ENOBUFS ||
           err == ENOMEM) &&
          w->npaused < RK__MAX_PAUSED) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->fd, NULL);
        l->paused_until = rk__now_mono() + RK__ACCEPT_PAUSE_MS;
        w->paused[w->npaused++] = l;
      }
      return;
    }
    RK__ADD(&e->accepted, 1);
    int32_t active = RK__ADD(&e->active, 1);
    int32_t lactive = RK__ADD(&l->active, 1);
    if ((e->max_conns > 0 && active > e->max_conns) ||
        (l->max_conns > 0 && lactive > l->max_conns)) {
      RK__ADD(&e->active, -1);
      __atomic_sub_fetch(&l->active, 1, __ATOMIC_SEQ_CST);
      RK__ADD(&e->rejected, 1);
      close(fd);
      uint32_t rec[RK_EVENT_WORDS] = {RK_EV_REJECTED, 0, (uint32_t)l->id,
                                      (uint32_t)RK_ELIMIT};
      rk__post(e, rec);
      continue;
    }
    rk__conn *c = rk__conn_new(e, RK__KIND_PROXY);
    if (c == NULL) {
      RK__ADD(&e->active, -1);
      RK__ADD(&l->active, -1);
      close(fd);
      continue;
    }
    RK__ADD(&l->n_accepted, 1);
    for (int32_t peak = RK__LOAD(&l->peak); lactive > peak &&
         !__atomic_compare_exchange_n(&l->peak, &peak, lactive, 1,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED);)
      ;
    memcpy(&c->peer, &ss, sizeof ss);
    __atomic_add_fetch(&l->refs, 1, __ATOMIC_ACQ_REL);
    c->listener = l;
    c->target = l->target;
    c->idle_timeout_ms = l->idle_timeout_ms;
    if (l->hooks & RK_RELAY_HOOK_AB)
      c->dir[0].hooked = c->dir[0].nosplice = 1;
    if (l->hooks & RK_RELAY_HOOK_BA)
      c->dir[1].hooked = c->dir[1].nosplice = 1;
    c->state = RK__CONNECTING;
    rk__side_init_sock(&c->side[0], fd); /* TCP_NODELAY: from the listener */
    if (l->tls_ctx != NULL) {
      /* TLS on the client's side: both directions go through buffers */
      c->side[0].tls = rk__tls_new(l->tls_ctx, fd, 1, NULL);
      c->dir[0].nosplice = c->dir[1].nosplice = 1;
    }
    c->w = w;
    rk__table_add(e, c);
    rk__conn_attach(c);
    if (rk__listener_wants(l, RK_EVMASK_ACCEPT))
      rk__post_accept(e, c, l->id);
    if (l->tls_ctx != NULL && c->side[0].tls == NULL) {
      rk__conn_end(c, RK_END_RESET, -ENOMEM);
    } else if (c->side[0].tls != NULL) {
      /* the client's handshake first: the target sees only clients that
       * speak TLS with us */
      c->tls_accepting = 1;
      int r = rk__side_register(w, c, &c->side[0]);
      if (r < 0)
        rk__conn_end(c, RK_END_RESET, r);
      else
        rk__tls_accept_step(c);
    } else if (l->hold) {
      c->state = RK__HOLDING;
      rk__hold_start(c);
    } else {
      rk__connect_start(c);
    }
  }
}

/* ---- per-worker attach, detach and pause ------------------------------ */

void rk__listener_attach(rk__worker *w, rk__listener *l) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = l};
  epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->fd, &ev);
}

void rk__listener_detach(rk__worker *w, rk__listener *l) {
  epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->fd, NULL);
  /* an event of l later in this batch must not be handled: remembered by
   * address, never read (see rk__worker_main) */
  if (w->ngone == w->gone_cap) {
    int cap = w->gone_cap > 0 ? w->gone_cap * 2 : 8;
    const void **g = realloc(w->gone, (size_t)cap * sizeof *g);
    if (g != NULL) {
      w->gone = g;
      w->gone_cap = cap;
    }
  }
  if (w->ngone < w->gone_cap)
    w->gone[w->ngone++] = l;
  for (int i = 0; i < w->npaused; i++) {
    if (w->paused[i] == l) {
      w->paused[i] = w->paused[--w->npaused];
      break;
    }
  }
  if (__atomic_sub_fetch(&l->detach_left, 1, __ATOMIC_ACQ_REL) == 0) {
    /* The last worker to let go closes the fd: no worker can be inside
     * accept(2) on it any more, so the number cannot be reused under us. */
    close(l->fd);
    l->fd = -1;
    if (l->unix_path != NULL)
      unlink(l->unix_path);
    uint32_t rec[RK_EVENT_WORDS] = {RK_EV_LISTENER_CLOSED, 0, (uint32_t)l->id};
    rk__post(l->e, rec);
    __atomic_store_n(&l->closed_done, 1, __ATOMIC_SEQ_CST);
    rk__listener_check_drained(l); /* drained already if nothing is open */
    rk__listener_unref(l);
  }
}

/* Listeners this worker paused after EMFILE/ENFILE whose pause is over go
 * back into its epoll set (called from the sweep). */
void rk__listeners_resume(rk__worker *w, int64_t now) {
  for (int i = 0; i < w->npaused; i++) {
    rk__listener *l = w->paused[i];
    if (now >= l->paused_until) {
      rk__listener_attach(w, l);
      w->paused[i--] = w->paused[--w->npaused];
    }
  }
}
