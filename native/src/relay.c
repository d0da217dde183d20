/*
 * relay.c - moving bytes between the two sides of a connection.
 *
 * Theory of operation
 * A connection has two sides (0 = "a", the accepted or first fd; 1 = "b",
 * the outbound or second fd) and two directions: direction d reads side d
 * and writes side !d. Each direction is in one of these states:
 *
 *   EMPTY    nothing held; read the source when it is readable
 *   PENDING  bytes held (in a pipe, or in a buffer); write them to the
 *            destination before reading anything else - this is the whole
 *            of backpressure: a direction never holds more than one chunk
 *            (a hooked one: at most RK_HOOK_WINDOW batches, see below)
 *   EOF      the source ended (or a graceful close); once PENDING is
 *            flushed, the destination is shut for writing -> DONE
 *   DONE     nothing more will move this way
 *
 * Bytes move with splice(2) source -> pipe -> destination when the
 * direction is in splice mode, and with read(2)/write(2) through a 16 KiB
 * buffer otherwise. Every direction starts with read/write, which costs
 * the same two syscalls per chunk as splice for small messages and needs
 * no pipe; a read that fills the whole buffer shows a bulk transfer and
 * switches the direction to splice (the idea of haproxy's splice-auto).
 * EINVAL/ENOSYS from splice (files opened O_APPEND, some devices) means
 * "splice unsupported here": bytes already in the pipe are read back into
 * the buffer and the direction stays on read/write for good.
 *
 * Pipes and buffers come from per-worker pools and go back as soon as the
 * direction is EMPTY, so idle relays hold neither.
 *
 * Every fd is registered once, edge-triggered, for all the events it can
 * produce, with the side in the event data. Readiness is remembered per
 * direction: an input event on side s marks direction s readable
 * (can_read); an output event on side s matters only if direction !s is
 * blocked on a full destination. A direction runs until its source is
 * drained or its destination is full, or until it has used its budget of
 * RK__PUMP_BUDGET reads (then the connection goes on the worker's ready
 * list for another turn). A read from a pollable source that returns less
 * than asked means the source is drained: new bytes raise a new edge, so
 * the extra read that would only say EAGAIN is skipped - unless the peer
 * has already closed (RDHUP/HUP), when only EOF itself ends the reading.
 * Regular files cannot be polled: they are always readable.
 *
 * A hooked direction does not use the pipe or the buffer: it reads its
 * source into batches of up to RK_HOOK_BATCH_MAX bytes and lends each to
 * the host (RK_EV_HOOK with the batch's address and token). Its queue
 * holds the batches between reading and writing, oldest first; a batch
 * the host handed back (BACK) is written when every older one has been.
 * It reads only while the queue holds fewer than RK_HOOK_WINDOW batches -
 * its backpressure - and stays EOF (not DONE) until the queue is empty.
 * A batch lent when its connection ends is left to the host (ORPHAN):
 * rk_hook_return frees it, so the host's view of it never dangles.
 *
 * A TLS side (rk__tls, tls.c) is read and written through rk__tls_read
 * and rk__tls_write, on both paths, plain and hooked: its directions never
 * splice, a read from it is short by nature (one record) so only -EAGAIN
 * says it is drained, and any event of the side runs both directions (a
 * TLS read may wait for output, a write for input). A direction whose
 * destination is a TLS side ends with its close_notify, then the FIN.
 *
 * A connection ends when every active direction is DONE (reason DONE), on
 * an I/O error (RESET: the other TCP peer is reset too, so it learns the
 * stream was cut), on idle timeout, on rk_conn_close, or when the engine
 * closes. No byte that was read is dropped except by an error or ABORT.
 */
#include "internal.h"

#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static void rk__hook_queue_release(rk__conn *c, rk__dir *dir);

/* ---- connection lifecycle ---------------------------------------------- */

rk__conn *rk__conn_new(rk__engine *e, int kind) {
  rk__conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->tag = RK__TAG_CONN;
  c->id = rk__new_id(e);
  c->kind = kind;
  for (int s = 0; s < 2; s++) {
    c->side[s].rfd = c->side[s].wfd = -1;
    c->dir[s].pipe[0] = c->dir[s].pipe[1] = -1;
    c->dir[s].can_read = 1; /* bytes may be waiting from before we watched */
    c->dir[s].limit = UINT64_MAX;
  }
  c->start_real_ms = rk__now_real();
  c->start_mono_ms = rk__now_mono();
  c->last_mono_ms = c->start_mono_ms;
  return c;
}

void rk__side_init(rk__side *s, int rfd, int wfd) {
  s->rfd = rfd;
  s->wfd = wfd;
  s->r_pollable = 1;
  int fd = rfd >= 0 ? rfd : wfd;
  struct stat st;
  s->is_sock = fd >= 0 && rk__fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  if (rfd >= 0) {
    s->orig_rflags = fcntl(rfd, F_GETFL);
    fcntl(rfd, F_SETFL, s->orig_rflags | O_NONBLOCK);
  }
  if (wfd >= 0 && wfd != rfd) {
    s->orig_wflags = fcntl(wfd, F_GETFL);
    fcntl(wfd, F_SETFL, s->orig_wflags | O_NONBLOCK);
  }
}

void rk__side_init_sock(rk__side *s, int fd) {
  s->rfd = s->wfd = fd;
  s->is_sock = 1;
  s->owned = 1;
  s->r_pollable = 1;
  s->orig_rflags = s->orig_wflags = O_RDWR; /* created non-blocking by us */
}

static int rk__reg(rk__worker *w, rk__conn *c, int fd, uint32_t events,
                   int side) {
  struct epoll_event ev = {.events = events | EPOLLET,
                           .data.u64 = RK__EPDATA(c, side)};
  if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
    return 1;
  return errno == EPERM ? 0 : -errno; /* EPERM: a regular file */
}

int rk__side_register(rk__worker *w, rk__conn *c, rk__side *s) {
  int side = s == &c->side[1];
  if (s->rfd >= 0 && s->rfd == s->wfd) {
    int r = rk__reg(w, c, s->rfd, EPOLLIN | EPOLLOUT | EPOLLRDHUP, side);
    if (r < 0)
      return r;
    s->r_registered = s->w_registered = (unsigned)r;
    s->r_pollable = (unsigned)r;
    return 0;
  }
  if (s->rfd >= 0) {
    int r = rk__reg(w, c, s->rfd, EPOLLIN | EPOLLRDHUP, side);
    if (r < 0)
      return r;
    s->r_registered = s->r_pollable = (unsigned)r;
  }
  if (s->wfd >= 0) {
    int r = rk__reg(w, c, s->wfd, EPOLLOUT, side);
    if (r < 0)
      return r;
    s->w_registered = (unsigned)r;
  }
  return 0;
}

/* Link c into its worker's list, on that worker. c->w itself is set by
 * whoever creates the connection, before it enters the id table: other
 * threads read it from there (rk__send_to_conn), so it never changes. */
void rk__conn_attach(rk__conn *c) {
  rk__worker *w = c->w;
  c->next = w->conns;
  c->prev = NULL;
  if (w->conns != NULL)
    w->conns->prev = c;
  w->conns = c;
}

void rk__mark_ready(rk__conn *c) {
  if (!c->ready) {
    c->ready = 1;
    c->ready_next = c->w->ready;
    c->w->ready = c;
  }
}

static void rk__abort_sock(int fd) {
  struct linger lg = {1, 0}; /* close() sends RST */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static void rk__side_close(rk__worker *w, rk__conn *c, rk__side *s, int rst) {
  int keep = (c->flags & RK_RELAY_KEEP_FDS) != 0;
  rk__tls_free(s->tls); /* before its fd goes */
  s->tls = NULL;
  /* Removed from the epoll set before close(): close() removes it only when
   * no other fd names the same socket, and one may: an fd we were given,
   * or any socket of ours while the host process forks (a child spawned by
   * the runtime holds a copy of every fd until its exec). An event must
   * never name a freed connection. */
  if (s->r_registered)
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, s->rfd, NULL);
  if (s->w_registered && s->wfd != s->rfd)
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, s->wfd, NULL);
  if (keep) {
    if (s->rfd >= 0)
      fcntl(s->rfd, F_SETFL, s->orig_rflags);
    if (s->wfd >= 0 && s->wfd != s->rfd)
      fcntl(s->wfd, F_SETFL, s->orig_wflags);
  } else {
    if (rst && s->is_sock && s->rfd >= 0)
      rk__abort_sock(s->rfd);
    if (s->rfd >= 0)
      close(s->rfd);
    if (s->wfd >= 0 && s->wfd != s->rfd)
      close(s->wfd);
  }
  s->rfd = s->wfd = -1;
}

void rk__conn_end(rk__conn *c, int reason, int err) {
  rk__worker *w = c->w;
  rk__engine *e = w->e;
  if (c->state == RK__DEAD)
    return;
  int was_connecting = c->state == RK__CONNECTING;
  RK__STORE(&c->state, RK__DEAD);
  rk__table_del(e, c);

  if (err == RK_ECERT_UNTRUSTED) /* why, for the host to read */
    for (int s = 0; s < 2; s++)
      rk__tls_keep_failure(e->handle, c->id, c->side[s].tls);
  /* Side a of an accepted connection whose peer was reset, or any abort,
   * resets the TCP peers; a clean end closes normally. */
  int rst = reason == RK_END_RESET || c->abort_rst;
  for (int s = 0; s < 2; s++)
    rk__side_close(w, c, &c->side[s], rst);
  for (int d = 0; d < 2; d++) {
    rk__dir *dir = &c->dir[d];
    if (dir->pipe[0] >= 0) {
      if (dir->pipe_bytes == 0) {
        rk__pipe_put(w, dir->pipe);
      } else { /* not empty: cannot be reused */
        rk__pipe_close(w, dir->pipe);
      }
    }
    rk__dir_buf_release(w, dir);
    rk__hook_queue_release(c, dir);
  }
  rk__ai_free(c->ai_list);
  c->ai_list = c->ai_next = NULL;
  free(c->hold_buf);
  c->hold_buf = NULL;
  rk__hold_tls_drop(c);
  if (c->owns_target)
    rk__free_target(c->target);
  c->target = NULL;

  int post = c->kind != RK__KIND_CONNECT_FD || was_connecting;
  if (c->listener != NULL && err == 0 &&
      !(c->listener->hold && (c->router == NULL || c->route_deferred) &&
        !c->pp_decided) &&
      !rk__listener_wants(c->listener, RK_EVMASK_CLOSED))
    post = 0; /* nobody asked, and nothing went wrong (the host keeps state
                 for each connection it held: those always report their
                 end; those a built-in router or the PROXY header phase
                 decided alone do not) */
  if (c->router != NULL) /* its target (for messages), and its reference */
    rk__route_end(c, post ? err : 0);
  if (post) {
    uint32_t rec[RK_EVENT_WORDS] = {0};
    rec[0] = c->kind == RK__KIND_CONNECT_FD ? RK_EV_FD_CONNECTED : RK_EV_CLOSED;
    rec[1] = (uint32_t)c->id;
    rec[2] = c->kind == RK__KIND_CONNECT_FD
                 ? (uint32_t)-1
                 : (c->listener != NULL ? (uint32_t)c->listener->id : 0);
    rec[3] = (uint32_t)err;
    rec[4] = (uint32_t)reason;
    rec[5] = (uint32_t)(rk__now_mono() - c->start_mono_ms);
    rk__put_u64(rec, 8, RK__LOAD(&c->dir[0].rd));
    rk__put_u64(rec, 10, RK__LOAD(&c->dir[0].wr));
    rk__put_u64(rec, 12, RK__LOAD(&c->dir[1].rd));
    rk__put_u64(rec, 14, RK__LOAD(&c->dir[1].wr));
    rk__post(e, rec);
  }

  if (c->kind != RK__KIND_CONNECT_FD) {
    RK__ADD(&e->active, -1);
    RK__ADD(&e->closed, 1);
  }
  if (c->listener != NULL) {
    /* counted before active drops: a drained listener's counters are final */
    RK__ADD(&c->listener->n_ended, 1);
    __atomic_sub_fetch(&c->listener->active, 1, __ATOMIC_SEQ_CST);
    rk__listener_check_drained(c->listener);
    rk__listener_unref(c->listener);
    c->listener = NULL;
  }
  /* unlink from the worker's list; free after the epoll batch */
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->next = w->dead;
  w->dead = c;
}

/* ---- pumping ----------------------------------------------------------- */

static void rk__touch(rk__conn *c) {
  RK__STORE(&c->last_mono_ms, rk__now_mono());
}

static int rk__is_unsupported(int err) {
  return err == EINVAL || err == ENOSYS || err == EOPNOTSUPP;
}

static void rk__shut_dst(rk__side *dst) {
  if (dst->wfd < 0)
    return;
  if (dst->is_sock)
    shutdown(dst->wfd, SHUT_WR);
  /* A separate write-only fd (a pipe or file) is closed by the end of the
   * relay; a pipe reader sees EOF then. Closing it here would let the fd
   * number be reused while it is still registered. */
}

/* Flush what direction d holds. Return 1 when all flushed, 0 when the
 * destination is full, or a negative errno. */
static int rk__flush(rk__conn *c, int d) {
  rk__dir *dir = &c->dir[d];
  rk__side *dst = &c->side[!d];
  rk__worker *w = c->w;
  ssize_t n;
  for (;;) {
    if (dir->buf != NULL && dir->buf_off < dir->buf_len) {
      if (dst->tls != NULL) {
        uint32_t want;
        n = rk__tls_write(dst->tls, dir->buf + dir->buf_off,
                          dir->buf_len - dir->buf_off, &want);
        if (n < 0) {
          if (n != -EAGAIN)
            return (int)n;
          dir->blocked = 1; /* any event of the TLS side runs us again */
          return 0;
        }
      } else {
        RK__RETRY(n, write(dst->wfd, dir->buf + dir->buf_off,
                           dir->buf_len - dir->buf_off));
      }
      if (n < 0) {
        if (errno != EAGAIN)
          return -errno;
        dir->blocked = 1;
        return 0;
      }
      dir->buf_off += (uint32_t)n;
      rk__wrote(c, dir, (uint64_t)n);
      rk__touch(c);
      continue;
    }
    if (dir->pipe_bytes > 0 && dir->splice) {
      RK__RETRY(n, splice(dir->pipe[0], NULL, dst->wfd, NULL, dir->pipe_bytes,
                          SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
      if (n < 0) {
        if (errno == EAGAIN) {
          dir->blocked = 1;
          return 0;
        }
        if (!rk__is_unsupported(errno))
          return -errno;
        dir->splice = 0;
        dir->nosplice = 1;
        continue; /* drained through the buffer below */
      }
      dir->pipe_bytes -= (uint32_t)n;
      rk__wrote(c, dir, (uint64_t)n);
      rk__touch(c);
      continue;
    }
    if (dir->pipe_bytes > 0) {
      /* read/write mode with bytes left in the pipe: move them into the
       * (empty) buffer, oldest first, and write them from there */
      if (dir->buf == NULL && (dir->buf = rk__buf_get(w)) == NULL)
        return -ENOMEM;
      uint32_t want = dir->pipe_bytes < RK__BUF_SIZE ? dir->pipe_bytes
                                                     : RK__BUF_SIZE;
      RK__RETRY(n, read(dir->pipe[0], dir->buf, want));
      if (n <= 0)
        return n < 0 ? -errno : -EIO;
      dir->pipe_bytes -= (uint32_t)n;
      dir->buf_off = 0;
      dir->buf_len = (uint32_t)n;
      continue;
    }
    break;
  }
  /* everything is out: give back what we hold */
  dir->blocked = 0;
  rk__dir_buf_release(w, dir);
  if (dir->pipe[0] >= 0)
    rk__pipe_put(w, dir->pipe);
  return 1;
}

/* Direction d is at EOF and everything it read is out: end its
 * destination (a TLS one's close_notify first, then the FIN) and mark it
 * DONE - unless the close_notify waits for room (dir->blocked: the side's
 * next event runs it again). */
static void rk__dir_finish(rk__conn *c, int d) {
  rk__dir *dir = &c->dir[d];
  /* a graceful close of a relay that keeps its fds leaves them as they
   * are: the owner goes on using them */
  /* The last direction to finish needs no shutdown on a socket we own:
   * the relay ends now and close(2) sends the FIN (both sources are at
   * EOF, so nothing unread turns it into a reset). */
  rk__side *dst = &c->side[!d];
  int last = !c->dir[!d].active || c->dir[!d].done;
  if (dst->tls != NULL) {
    /* the end of this direction is a close_notify first */
    uint32_t want;
    if (rk__tls_shutdown(dst->tls, &want) == -EAGAIN) {
      dir->blocked = 1;
      return;
    }
  }
  if (!(c->user_closed && (c->flags & RK_RELAY_KEEP_FDS)) &&
      !(last && dst->owned))
    rk__shut_dst(dst);
  dir->done = 1;
  if (c->dir[!d].discard) /* a reply went out: the client has a while */
    c->hold_deadline_ms = rk__now_mono() + RK__LINGER_MS;
}

/* ---- hooked directions --------------------------------------------------- */

/* Given batches their host let go of, kept for any worker to take: their
 * memory stays mapped, where a free and a new malloc would fault it in
 * again page by page (Bun's allocator returns freed memory to the
 * system). At most RK__SPARE_MAX (16 MiB). */
#define RK__SPARE_MAX 32
/* Bytes of one batch: its header and room for RK_HOOK_BATCH_MAX bytes. */
#define RK__BATCH_SIZE (sizeof(rk__batch) + RK_HOOK_BATCH_MAX)
static rk__batch *g_spare[RK__SPARE_MAX];
static int g_nspare;
static pthread_mutex_t g_spare_lock = PTHREAD_MUTEX_INITIALIZER;

static rk__batch *rk__batch_get(rk__worker *w) {
  w->pool_uses++;
  if (w->nbatches > 0)
    return w->batches[--w->nbatches];
  rk__batch *b = NULL;
  if (__atomic_load_n(&g_nspare, __ATOMIC_RELAXED) > 0) {
    pthread_mutex_lock(&g_spare_lock);
    if (g_nspare > 0) {
      b = g_spare[g_nspare - 1];
      __atomic_store_n(&g_nspare, g_nspare - 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&g_spare_lock);
  }
  if (b == NULL)
    b = malloc(RK__BATCH_SIZE);
  if (b != NULL) {
    b->out = NULL;
    b->out_own = b->kept = 0;
    b->gifted = 0; /* a pool never holds a given batch */
  }
  return b;
}

/* Bytes of given batches not yet freed, in the process (atomic). */
static int64_t g_gift_bytes;

/* One owner of given batch b is done with it; the last frees it. */
static void rk__gift_unref(rk__batch *b) {
  if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  __atomic_sub_fetch(&g_gift_bytes, (int64_t)RK__BATCH_SIZE, __ATOMIC_RELAXED);
  pthread_mutex_lock(&g_spare_lock);
  if (g_nspare < RK__SPARE_MAX) {
    g_spare[g_nspare] = b;
    __atomic_store_n(&g_nspare, g_nspare + 1, __ATOMIC_RELAXED);
    b = NULL;
  }
  pthread_mutex_unlock(&g_spare_lock);
  free(b);
}

/* The engine lets go of a batch it does not pool: freed, or for a given
 * one, its owner count dropped. */
static void rk__batch_drop(rk__batch *b) {
  if (b->gifted)
    rk__gift_unref(b);
  else
    free(b);
}

/* Batches whose memory a host still refers to (RK_HOOK_KEPT): never
 * reused or freed, kept here for the life of the process. */
static rk__batch *g_kept;
static pthread_mutex_t g_kept_lock = PTHREAD_MUTEX_INITIALIZER;

static void rk__batch_keep(rk__batch *b) {
  if (b->gifted) { /* the host's own reference keeps it: no more is needed */
    rk__gift_unref(b);
    return;
  }
  pthread_mutex_lock(&g_kept_lock);
  b->next = g_kept;
  g_kept = b;
  pthread_mutex_unlock(&g_kept_lock);
}

/* A batch the worker owns goes back to the pool (with its result freed);
 * one the host still refers to is kept for good. */
static void rk__batch_put(rk__worker *w, rk__batch *b) {
  if (b->out_own)
    free(b->out);
  b->out_own = 0;
  if (b->kept || b->gifted) { /* rk__batch_keep knows a given one */
    rk__batch_keep(b);
    return;
  }
  if (w->nbatches < RK__BATCH_POOL_MAX)
    w->batches[w->nbatches++] = b;
  else
    free(b);
}

void rk__batch_pool_release(rk__worker *w) {
  while (w->nbatches > 0)
    free(w->batches[--w->nbatches]);
}

void rk__lend_init(rk__engine *e) { pthread_mutex_init(&e->lend_lock, NULL); }

/* Where batch `token` is (or would be) linked in the lend table: *slot is
 * the batch, or NULL. Under lend_lock. */
static rk__batch **rk__lend_slot(rk__engine *e, uint32_t token) {
  rk__batch **p = &e->lend[token & (RK__LEND_BUCKETS - 1)];
  while (*p != NULL && (*p)->token != token)
    p = &(*p)->lend_next;
  return p;
}

/* The engine is closed: every connection ended, so what is left in the
 * table is ORPHAN or still LENT to a host that will not return it. */
void rk__lend_free(rk__engine *e) {
  for (int i = 0; i < RK__LEND_BUCKETS; i++) {
    rk__batch *b = e->lend[i];
    while (b != NULL) {
      rk__batch *next = b->lend_next;
      if (!b->kept) /* a given one: the host frees its part when it lets go */
        rk__batch_drop(b);
      b = next;
    }
    e->lend[i] = NULL;
  }
  pthread_mutex_destroy(&e->lend_lock);
}

/* Lend batch b (b->len bytes) of direction d to the host. */
static void rk__hook_post(rk__conn *c, int d, rk__batch *b) {
  rk__engine *e = c->w->e;
  rk__dir *dir = &c->dir[d];
  b->conn_id = c->id;
  b->dir = d;
  b->out = NULL;
  b->out_len = b->out_off = 0;
  b->out_own = b->kept = 0;
  b->gifted = b->refs = 0;
  b->next = NULL;
  __atomic_store_n(&b->state, RK__BATCH_LENT, __ATOMIC_RELAXED);
  pthread_mutex_lock(&e->lend_lock);
  do { /* 0 is never a token; a live one is never reused */
    b->token = ++e->next_token;
  } while (b->token == 0);
  rk__batch **slot = &e->lend[b->token & (RK__LEND_BUCKETS - 1)];
  b->lend_next = *slot;
  *slot = b;
  pthread_mutex_unlock(&e->lend_lock);
  if (dir->hq_tail != NULL)
    dir->hq_tail->next = b;
  else
    dir->hq_head = b;
  dir->hq_tail = b;
  dir->hq_n++;
  uint32_t rec[RK_EVENT_WORDS] = {
      RK_EV_HOOK, (uint32_t)c->id,
      c->listener != NULL ? (uint32_t)c->listener->id : 0};
  rec[6] = (uint32_t)d;
  rec[7] = b->len;
  rec[8] = b->token;
  uint64_t addr = (uint64_t)(uintptr_t)b->data;
  rec[10] = (uint32_t)addr;
  rec[11] = (uint32_t)(addr >> 32);
  rk__post(e, rec);
}

/* The connection ends: batches back from the host are freed, lent ones are
 * left to rk_hook_return. */
static void rk__hook_queue_release(rk__conn *c, rk__dir *dir) {
  if (dir->hq_head == NULL)
    return;
  rk__worker *w = c->w;
  rk__batch *back = NULL;
  pthread_mutex_lock(&w->e->lend_lock);
  for (rk__batch *b = dir->hq_head, *next; b != NULL; b = next) {
    next = b->next;
    int st = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
    if (st == RK__BATCH_LENT || st == RK__BATCH_RETURNING) {
      __atomic_store_n(&b->state, RK__BATCH_ORPHAN, __ATOMIC_RELEASE);
    } else {
      b->next = back;
      back = b;
    }
  }
  pthread_mutex_unlock(&w->e->lend_lock);
  while (back != NULL) {
    rk__batch *next = back->next;
    rk__batch_put(w, back);
    back = next;
  }
  dir->hq_head = dir->hq_tail = NULL;
  dir->hq_n = 0;
}

/* Run hooked direction d: write the batches that came back, in order, and
 * read the source into new batches while the window has room. Return 0,
 * or a negative errno. */
static int rk__pump_hooked(rk__conn *c, int d) {
  rk__dir *dir = &c->dir[d];
  rk__side *src = &c->side[d], *dst = &c->side[!d];
  rk__worker *w = c->w;
  int full = 0; /* the destination said EAGAIN in this turn */
  ssize_t n;
  for (int budget = RK__PUMP_BUDGET;;) {
    rk__batch *b;
    if (!full && (dir->buf != NULL || dir->pipe_bytes > 0)) {
      /* bytes that go out before any batch: a held connection's decided
       * bytes (the host ran its hook over them already) */
      int r = rk__flush(c, d);
      if (r < 0)
        return r;
      full = r == 0;
    }
    while (!full && (b = dir->hq_head) != NULL &&
           __atomic_load_n(&b->state, __ATOMIC_ACQUIRE) == RK__BATCH_BACK) {
      while (b->out_off < b->out_len) {
        if (dst->tls != NULL) {
          uint32_t want;
          n = rk__tls_write(dst->tls, b->out + b->out_off,
                            b->out_len - b->out_off, &want);
          if (n < 0) {
            if (n != -EAGAIN)
              return (int)n;
            full = 1; /* any event of the TLS side runs us again */
            break;
          }
        } else {
          RK__RETRY(n, write(dst->wfd, b->out + b->out_off,
                             b->out_len - b->out_off));
          if (n < 0) {
            if (errno != EAGAIN)
              return -errno;
            full = 1;
            break;
          }
        }
        b->out_off += (uint32_t)n;
        rk__wrote(c, dir, (uint64_t)n);
        rk__touch(c);
      }
      if (full)
        break;
      dir->hq_head = b->next;
      if (dir->hq_head == NULL)
        dir->hq_tail = NULL;
      dir->hq_n--;
      rk__batch_put(w, b);
    }
    dir->blocked = (unsigned)full;
    if (dir->eof) {
      if (dir->hq_head == NULL && !full)
        rk__dir_finish(c, d);
      return 0; /* else the host still has some */
    }
    if (!dir->can_read || dir->hq_n >= RK_HOOK_WINDOW)
      return 0; /* wait for input, or for a batch to go out */
    if (budget-- == 0) {
      rk__mark_ready(c);
      return 0;
    }
    if (dir->limit == 0) {
      dir->eof = 1;
      continue;
    }
    /* fill one batch: until it is full, the source is drained or ends */
    if ((b = rk__batch_get(w)) == NULL)
      return -ENOMEM;
    b->len = 0;
    int wait_out = 0; /* a TLS read waits for the side to be writable */
    for (;;) {
      size_t want = RK_HOOK_BATCH_MAX - b->len;
      if (dir->limit < want)
        want = (size_t)dir->limit;
      if (src->tls != NULL) {
        /* one record at most per read, and more may wait inside TLS:
         * only -EAGAIN says the source is drained */
        uint32_t wait;
        n = rk__tls_read(src->tls, b->data + b->len, want, &wait);
        if (n < 0) {
          if (n != -EAGAIN) {
            rk__batch_put(w, b);
            return (int)n;
          }
          if (wait == EPOLLIN)
            dir->can_read = 0;
          else
            wait_out = 1; /* the side's next event runs us again */
          break;
        }
      } else {
        RK__RETRY(n, read(src->rfd, b->data + b->len, want));
        if (n < 0) {
          int err = errno;
          if (err != EAGAIN) {
            rk__batch_put(w, b);
            return -err;
          }
          dir->can_read = !src->r_pollable;
          break;
        }
      }
      if (n == 0) {
        dir->eof = 1;
        break;
      }
      RK__ADD(&dir->rd, (uint64_t)n);
      if (dir->limit != UINT64_MAX)
        dir->limit -= (uint64_t)n;
      rk__touch(c);
      if (dir->discard) /* read and drop */
        continue;
      b->len += (uint32_t)n;
      if ((size_t)n < want && src->r_pollable && !dir->rdhup &&
          src->tls == NULL) {
        dir->can_read = 0; /* a short read drains it (see the top) */
        break;
      }
      if (b->len == RK_HOOK_BATCH_MAX || dir->limit == 0)
        break;
    }
    if (b->len > 0)
      rk__hook_post(c, d, b);
    else
      rk__batch_put(w, b);
    if (wait_out)
      return 0;
  }
}

/* Run direction d until it blocks. Return 0, or a negative errno. */
static int rk__pump(rk__conn *c, int d) {
  rk__dir *dir = &c->dir[d];
  rk__side *src = &c->side[d];
  rk__worker *w = c->w;
  if (!dir->active || dir->done)
    return 0;
  if (dir->hooked && !dir->sendfile) /* a decided file goes out as it is */
    return rk__pump_hooked(c, d);
  for (int budget = RK__PUMP_BUDGET;; budget--) {
    int r = rk__flush(c, d);
    if (r <= 0)
      return r;
    if (dir->eof) {
      rk__dir_finish(c, d);
      return 0;
    }
    if (!dir->can_read)
      return 0; /* wait for the source's next input event */
    if (budget == 0) {
      rk__mark_ready(c);
      return 0;
    }
    if (dir->limit == 0) {
      dir->eof = 1;
      continue;
    }
    if (dir->sendfile) {
      /* a file straight into the socket: no buffer, no pipe */
      size_t chunk = dir->limit < (1u << 20) ? (size_t)dir->limit : (1u << 20);
      ssize_t n;
      RK__RETRY(n, sendfile(c->side[!d].wfd, src->rfd, NULL, chunk));
      if (n < 0) {
        if (errno != EAGAIN)
          return -errno;
        dir->blocked = 1;
        return 0;
      }
      if (n == 0) {
        dir->eof = 1; /* the file is shorter than asked */
        continue;
      }
      dir->limit -= (uint64_t)n;
      RK__ADD(&dir->rd, (uint64_t)n);
      rk__wrote(c, dir, (uint64_t)n);
      rk__touch(c);
      continue;
    }
    /* a short read from a pollable source drains it (see the top) */
    size_t want = dir->splice ? RK__PIPE_CHUNK : RK__BUF_SIZE;
    if (dir->limit < want)
      want = (size_t)dir->limit;
    ssize_t n;
    if (src->tls != NULL) {
      /* one record at most per read, and more may wait inside TLS: only
       * -EAGAIN says the source is drained */
      if (dir->buf == NULL && (dir->buf = rk__buf_get(w)) == NULL)
        return -ENOMEM;
      uint32_t wait;
      n = rk__tls_read(src->tls, dir->buf, want, &wait);
      if (n < 0) {
        rk__buf_put(w, dir->buf);
        dir->buf = NULL;
        if (n != -EAGAIN)
          return (int)n;
        if (wait == EPOLLIN)
          dir->can_read = 0;
        return 0; /* EPOLLOUT: the side's next event runs us again */
      }
      if (n == 0) {
        rk__buf_put(w, dir->buf);
        dir->buf = NULL;
        dir->eof = 1;
        continue;
      }
      dir->buf_off = 0;
      dir->buf_len = (uint32_t)n;
    } else if (dir->splice) {
      if (dir->pipe[0] < 0 && rk__pipe_get(w, dir->pipe) < 0) {
        dir->splice = 0; /* out of fds for pipes: read/write still works */
        continue;
      }
      RK__RETRY(n, splice(src->rfd, NULL, dir->pipe[1], NULL, want,
                          SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
      if (n < 0) {
        int err = errno;
        rk__pipe_put(w, dir->pipe); /* empty */
        if (err == EAGAIN) {
          dir->can_read = !src->r_pollable;
          return 0;
        }
        if (!rk__is_unsupported(err))
          return -err;
        dir->splice = 0;
        dir->nosplice = 1;
        continue;
      }
      if (n == 0) {
        rk__pipe_put(w, dir->pipe);
        dir->eof = 1;
        continue;
      }
      dir->pipe_bytes = (uint32_t)n;
    } else {
      if (dir->buf == NULL && (dir->buf = rk__buf_get(w)) == NULL)
        return -ENOMEM;
      RK__RETRY(n, read(src->rfd, dir->buf, want));
      if (n < 0) {
        int err = errno;
        rk__buf_put(w, dir->buf);
        dir->buf = NULL;
        if (err != EAGAIN)
          return -err;
        dir->can_read = !src->r_pollable;
        return 0;
      }
      if (n == 0) {
        rk__buf_put(w, dir->buf);
        dir->buf = NULL;
        dir->eof = 1;
        continue;
      }
      dir->buf_off = 0;
      dir->buf_len = (uint32_t)n;
      if (n == RK__BUF_SIZE && !dir->nosplice)
        dir->splice = 1; /* bulk: the next read goes through a pipe */
    }
    RK__ADD(&dir->rd, (uint64_t)n);
    if (dir->limit != UINT64_MAX)
      dir->limit -= (uint64_t)n;
    rk__touch(c);
    if (dir->discard) {
      rk__dir_buf_release(w, dir);
      goto next_read;
    }
  next_read:
    if ((size_t)n < want && src->r_pollable && !dir->rdhup && !src->tls)
      dir->can_read = 0;
  }
}

/* An I/O error ends the connection as a reset - except a client's after
 * its whole reply (CLOSE or FILE decision) went out: then it was only
 * lingering, and its going away is the expected end. */
static void rk__conn_fail(rk__conn *c, int err) {
  if (c->side[1].tls != NULL && !rk__tls_established(c->side[1].tls)) {
    /* TLS to the target failed before its handshake was done: the
     * connect failed (a certificate that does not verify, say) */
    rk__conn_end(c, RK_END_CONNECT_FAILED, err);
    return;
  }
  if (c->dir[0].discard && c->dir[1].done) {
    rk__conn_end(c, c->state == RK__CLOSING ? RK_END_CLOSED : RK_END_DONE, 0);
    return;
  }
  rk__conn_end(c, RK_END_RESET, err);
}

/* Run the directions in mask (bit d: direction d). */
static void rk__conn_run_dirs(rk__conn *c, int mask) {
  if (c->state != RK__RELAYING && c->state != RK__CLOSING)
    return;
  for (int d = 0; d < 2; d++) {
    if (!(mask & (1 << d)))
      continue;
    int r = rk__pump(c, d);
    if (r < 0) {
      rk__conn_fail(c, r);
      return;
    }
  }
  if ((!c->dir[0].active || c->dir[0].done) &&
      (!c->dir[1].active || c->dir[1].done)) {
    rk__conn_end(c, c->state == RK__CLOSING ? RK_END_CLOSED : RK_END_DONE, 0);
    return;
  }
  /* A TLS write (handshake, or a key update) may have read records that
   * now wait inside TLS with no socket edge to come for them. */
  for (int s = 0; s < 2; s++) {
    rk__dir *dir = &c->dir[s];
    if (c->side[s].tls != NULL && !dir->can_read && dir->active &&
        !dir->eof && rk__tls_pending(c->side[s].tls)) {
      dir->can_read = 1;
      rk__mark_ready(c);
    }
  }
}

void rk__conn_run(rk__conn *c) { rk__conn_run_dirs(c, 3); }

void rk__conn_event(rk__conn *c, int side, uint32_t events) {
  if (c->state == RK__DEAD)
    return;
  if (c->state == RK__CONNECTING) {
    if (c->tls_accepting)
      rk__tls_accept_step(c);
    else
      rk__connect_event(c, side, events);
    return;
  }
  if (c->state == RK__HOLDING) {
    rk__hold_event(c, side, events);
    return;
  }
  rk__side *s = &c->side[side];
  if ((events & EPOLLERR) && s->is_sock) {
    /* An error on a socket whose direction is paused would otherwise go
     * unseen until the other side drains. */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->rfd >= 0 ? s->rfd : s->wfd, SOL_SOCKET, SO_ERROR, &err,
                   &len) == 0 &&
        err != 0) {
      rk__conn_fail(c, -err);
      return;
    }
  }
  int mask = 0;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    c->dir[side].can_read = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      c->dir[side].rdhup = 1;
    mask |= 1 << side;
  }
  if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && c->dir[!side].blocked)
    mask |= 1 << !side;
  if (s->tls != NULL)
    mask = 3; /* TLS reads may wait for output, writes for input */
  if (mask != 0)
    rk__conn_run_dirs(c, mask);
}

void rk__conn_close_cmd(rk__conn *c, int mode) {
  if (mode == RK_CLOSE_ABORT || c->state == RK__CONNECTING ||
      c->state == RK__HOLDING) {
    /* asked for: an end, not an error */
    c->abort_rst = mode == RK_CLOSE_ABORT;
    rk__conn_end(c, RK_END_CLOSED, 0);
    return;
  }
  RK__STORE(&c->state, RK__CLOSING);
  c->user_closed = 1;
  c->dir[0].eof = c->dir[1].eof = 1; /* stop reading, flush, then FIN */
  rk__conn_run(c);
}

void rk__hook_returned(rk__conn *c, int d) {
  rk__touch(c);
  rk__conn_run_dirs(c, 1 << d);
}

/* The client's TLS handshake on a TLS listener, before any connect: go on
 * with it on each event of the client; once done, connect to the target
 * (the client side stays registered; what the client sent after its
 * handshake waits inside TLS or in the kernel until the relay reads it). */
void rk__tls_accept_step(rk__conn *c) {
  uint32_t want;
  int r = rk__tls_handshake(c->side[0].tls, &want);
  if (r == -EAGAIN)
    return;
  if (r < 0) {
    rk__conn_end(c, RK_END_RESET, r);
    return;
  }
  c->tls_accepting = 0;
  rk__touch(c);
  if (c->listener != NULL && c->listener->hold) {
    RK__STORE(&c->state, RK__HOLDING);
    rk__hold_start(c);
    return;
  }
  rk__connect_start(c);
}

void rk__sweep(rk__worker *w, int64_t now) {
  if (w->pool_uses == 0)
    rk__worker_release_pools(w);
  w->pool_uses = 0;
  rk__conn *c = w->conns;
  while (c != NULL) {
    rk__conn *next = c->next;
    if (c->state == RK__CONNECTING && c->tls_accepting) {
      if (c->idle_timeout_ms > 0 &&
          now - RK__LOAD(&c->last_mono_ms) >= c->idle_timeout_ms)
        rk__conn_end(c, RK_END_IDLE_TIMEOUT, -ETIMEDOUT);
    } else if (c->state == RK__CONNECTING) {
      if (c->connect_deadline_ms != 0 && now >= c->connect_deadline_ms)
        rk__connect_event(c, 1, 0); /* 0 events: the deadline passed */
    } else if (c->state == RK__HOLDING) {
      if (c->hold_deadline_ms != 0 && now >= c->hold_deadline_ms)
        rk__conn_end(c, RK_END_HOLD_TIMEOUT, -ETIMEDOUT);
      else
        rk__hold_sweep(c, now);
    } else if (c->dir[0].discard && c->hold_deadline_ms != 0 &&
               now >= c->hold_deadline_ms) {
      /* after a CLOSE or FILE decision: the client had its reply and its
       * time to close */
      rk__conn_end(c, c->state == RK__CLOSING ? RK_END_CLOSED : RK_END_DONE,
                   0);
    } else if (c->idle_timeout_ms > 0 &&
               now - RK__LOAD(&c->last_mono_ms) >= c->idle_timeout_ms) {
      rk__conn_end(c, RK_END_IDLE_TIMEOUT, -ETIMEDOUT);
    }
    c = next;
  }
}

/* ---- public ------------------------------------------------------------ */

int32_t rk_relay_fds(int32_t h, int32_t ra, int32_t wa, int32_t rb,
                     int32_t wb, const rk_relay_opts_t *opts) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  uint32_t flags = opts != NULL ? opts->flags : 0;
  int32_t idle_timeout_ms = opts != NULL ? opts->idle_timeout_ms : 0;
  int32_t fds[4] = {ra, wa, rb, wb};
  for (int i = 0; i < 4; i++)
    if (fds[i] >= 0 && fcntl(fds[i], F_GETFD) < 0)
      return -EBADF;
  int dir0 = ra >= 0 && wb >= 0, dir1 = rb >= 0 && wa >= 0;
  if (!dir0 && !dir1)
    return -EINVAL; /* nothing could ever move */
  if (idle_timeout_ms < 0)
    return -EINVAL;
  if (e->max_conns > 0 && RK__LOAD(&e->active) >= e->max_conns)
    return RK_ELIMIT;
  rk__conn *c = rk__conn_new(e, RK__KIND_RELAY);
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  if (c == NULL || cmd == NULL) {
    free(c);
    free(cmd);
    return -ENOMEM;
  }
  c->flags = flags;
  c->idle_timeout_ms = idle_timeout_ms;
  rk__side_init(&c->side[0], ra, wa);
  rk__side_init(&c->side[1], rb, wb);
  c->dir[0].active = (unsigned)dir0;
  c->dir[1].active = (unsigned)dir1;
  if (flags & RK_RELAY_HOOK_AB)
    c->dir[0].hooked = c->dir[0].nosplice = 1;
  if (flags & RK_RELAY_HOOK_BA)
    c->dir[1].hooked = c->dir[1].nosplice = 1;
  c->state = RK__RELAYING;
  RK__ADD(&e->active, 1);
  cmd->type = RK__CMD_ADD_RELAY;
  int32_t id = c->id; /* c may be gone once the worker has it */
  int32_t r = rk__conn_publish(e, c, cmd);
  if (r < 0) { /* the engine is closing: the fds stay the caller's */
    RK__ADD(&e->active, -1);
    for (int s = 0; s < 2; s++) {
      rk__side *sd = &c->side[s];
      if (sd->rfd >= 0)
        fcntl(sd->rfd, F_SETFL, sd->orig_rflags);
      if (sd->wfd >= 0 && sd->wfd != sd->rfd)
        fcntl(sd->wfd, F_SETFL, sd->orig_wflags);
    }
    free(c);
    free(cmd);
    return r;
  }
  return id;
}

int32_t rk_conn_close(int32_t h, int32_t id, int32_t mode) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (mode != RK_CLOSE_GRACEFUL && mode != RK_CLOSE_ABORT)
    return -EINVAL;
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  if (cmd == NULL)
    return -ENOMEM;
  cmd->type = RK__CMD_CLOSE;
  cmd->arg = mode;
  return rk__send_to_conn(e, id, cmd);
}

int32_t rk_conn_stats(int32_t h, int32_t id, double *out) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->tbl_lock);
  rk__conn *c = rk__table_find_locked(e, id);
  if (c == NULL) {
    pthread_mutex_unlock(&e->tbl_lock);
    return -ENOENT;
  }
  /* written before read, with acquire (rk__wrote): the read count is then
   * at least the written one, where reading them the other way round could
   * see both grow in between and report more written than read */
  for (int d = 0; d < 2; d++) {
    out[2 * d + 1] = (double)__atomic_load_n(&c->dir[d].wr, __ATOMIC_ACQUIRE);
    out[2 * d] = (double)RK__LOAD(&c->dir[d].rd);
  }
  out[4] = (double)c->start_real_ms;
  out[5] = (double)rk__last_real_ms(c, rk__now_mono(), rk__now_real());
  out[6] = RK__LOAD(&c->state);
  out[7] = c->listener != NULL ? c->listener->id : 0;
  pthread_mutex_unlock(&e->tbl_lock);
  return 0;
}

int32_t rk_hook_return(int32_t h, uint32_t token, const uint8_t *data,
                       int32_t len, int32_t off, uint32_t flags) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (len < 0 || (flags & ~(RK_HOOK_LENT | RK_HOOK_KEPT)) != 0 ||
      (len > 0 && data == NULL && !(flags & RK_HOOK_LENT)))
    return -EINVAL;
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  if (cmd == NULL)
    return -ENOMEM;
  /* take the batch out of the table: from now on only this call may free
   * it, and only if the connection ends meanwhile (ORPHAN) */
  pthread_mutex_lock(&e->lend_lock);
  rk__batch **p = rk__lend_slot(e, token);
  rk__batch *b = *p;
  int st = b != NULL ? __atomic_load_n(&b->state, __ATOMIC_ACQUIRE) : 0;
  if (b == NULL || (st != RK__BATCH_LENT && st != RK__BATCH_ORPHAN) ||
      ((flags & RK_HOOK_LENT) && !(flags & RK_HOOK_KEPT) &&
       (off < 0 || (uint64_t)off + (uint64_t)len > b->len))) {
    pthread_mutex_unlock(&e->lend_lock);
    free(cmd);
    return -EINVAL;
  }
  *p = b->lend_next;
  if (st == RK__BATCH_ORPHAN) {
    pthread_mutex_unlock(&e->lend_lock);
    if (flags & RK_HOOK_KEPT)
      rk__batch_keep(b);
    else
      rk__batch_drop(b);
    free(cmd);
    return -ENOENT;
  }
  __atomic_store_n(&b->state, RK__BATCH_RETURNING, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&e->lend_lock);

  /* the worker does not touch a RETURNING batch: fill in its result */
  int r = 0;
  if (flags & RK_HOOK_KEPT) {
    b->kept = 1;
    b->out_len = 0;
  } else if (flags & RK_HOOK_LENT) {
    b->out = b->data + off;
    b->out_len = (uint32_t)len;
  } else if (len == 0) {
    b->out = b->data;
    b->out_len = 0;
  } else if ((uint32_t)len <= RK_HOOK_BATCH_MAX && !b->gifted) {
    memmove(b->data, data, (size_t)len); /* in place: no allocation */
    b->out = b->data;
    b->out_len = (uint32_t)len;
  } else if ((b->out = malloc((size_t)len)) != NULL) {
    memcpy(b->out, data, (size_t)len);
    b->out_own = 1;
    b->out_len = (uint32_t)len;
  } else {
    r = -ENOMEM; /* nothing to send: the connection cannot go on */
    b->out_len = 0;
  }
  b->out_off = 0;

  pthread_mutex_lock(&e->lend_lock);
  if (__atomic_load_n(&b->state, __ATOMIC_ACQUIRE) == RK__BATCH_ORPHAN) {
    pthread_mutex_unlock(&e->lend_lock);
    if (b->out_own)
      free(b->out);
    if (b->kept)
      rk__batch_keep(b);
    else
      rk__batch_drop(b);
    free(cmd);
    return -ENOENT;
  }
  /* once BACK, the worker may write and recycle it at any moment */
  int32_t id = b->conn_id, dir = b->dir;
  __atomic_store_n(&b->state, RK__BATCH_BACK, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&e->lend_lock);
  cmd->type = RK__CMD_HOOK_RETURN;
  cmd->arg = dir;
  if (r < 0) { /* lost bytes must not pass silently: reset */
    cmd->type = RK__CMD_CLOSE;
    cmd->arg = RK_CLOSE_ABORT;
  }
  int32_t s = rk__send_to_conn(e, id, cmd);
  return r < 0 ? r : s;
}

int32_t rk_hook_gift(int32_t h, uint32_t token) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  const int64_t size = (int64_t)RK__BATCH_SIZE;
  pthread_mutex_lock(&e->lend_lock);
  rk__batch *b = *rk__lend_slot(e, token);
  int st = b != NULL ? __atomic_load_n(&b->state, __ATOMIC_ACQUIRE) : 0;
  int32_t r = 0;
  if (b == NULL || (st != RK__BATCH_LENT && st != RK__BATCH_ORPHAN) || b->gifted) {
    r = -EINVAL;
  } else if (__atomic_add_fetch(&g_gift_bytes, size, __ATOMIC_RELAXED) > RK_HOOK_GIFT_MAX) {
    __atomic_sub_fetch(&g_gift_bytes, size, __ATOMIC_RELAXED);
    r = -EAGAIN;
  } else {
    /* the worker reads these once the batch is BACK (rk_hook_return's
     * release), or never: it does not touch a lent batch */
    __atomic_store_n(&b->refs, 2, __ATOMIC_RELAXED);
    b->gifted = 1;
  }
  pthread_mutex_unlock(&e->lend_lock);
  return r;
}

void rk_hook_gift_free(void *bytes, void *ctx) {
  (void)ctx;
  if (bytes == NULL)
    return;
  rk__gift_unref((rk__batch *)((uint8_t *)bytes - offsetof(rk__batch, data)));
}

void rk_hook_gift_free_address(uint32_t out[2]) {
  uint64_t a = (uint64_t)(uintptr_t)&rk_hook_gift_free;
  out[0] = (uint32_t)a;
  out[1] = (uint32_t)(a >> 32);
}

/* What rk_malloc_tune sets: blocks below RK__MMAP_MIN come from the heap,
 * and up to RK__TRIM_MIN bytes free at its top stay mapped. */
#define RK__MMAP_MIN (1024 * 1024)
#define RK__TRIM_MIN (64 * 1024 * 1024)

int32_t rk_malloc_tune(void) {
#ifdef __GLIBC__
  static int done;
  if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
    return 0;
  /* the operator's own settings win */
  const char *t = getenv("GLIBC_TUNABLES");
  if ((t != NULL && strstr(t, "glibc.malloc.") != NULL) ||
      getenv("MALLOC_MMAP_THRESHOLD_") != NULL ||
      getenv("MALLOC_TRIM_THRESHOLD_") != NULL)
    return 0;
  return mallopt(M_MMAP_THRESHOLD, RK__MMAP_MIN) == 1 &&
                 mallopt(M_TRIM_THRESHOLD, RK__TRIM_MIN) == 1
             ? 1
             : 0;
#else
  return 0;
#endif
}

int32_t rk_conn_peer(int32_t h, int32_t id, char *buf, int32_t cap) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  char host[INET6_ADDRSTRLEN] = "";
  int port = 0, family = 0;
  pthread_mutex_lock(&e->tbl_lock);
  rk__conn *c = rk__table_find_locked(e, id);
  if (c != NULL) {
    family = c->peer.ss_family;
    if (family == AF_INET) {
      struct sockaddr_in *s = (struct sockaddr_in *)&c->peer;
      inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
      port = ntohs(s->sin_port);
    } else if (family == AF_INET6) {
      struct sockaddr_in6 *s = (struct sockaddr_in6 *)&c->peer;
      inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
      port = ntohs(s->sin6_port);
    }
  }
  pthread_mutex_unlock(&e->tbl_lock);
  if (c == NULL)
    return -ENOENT;
  if (family != AF_INET && family != AF_INET6)
    return -EAFNOSUPPORT;
  int n = snprintf(buf, (size_t)cap, family == AF_INET6 ? "[%s]:%d" : "%s:%d",
                   host, port);
  return n < 0 ? -EINVAL : n;
}
