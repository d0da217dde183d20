/*
 * engine.c - engines, worker threads, the command queues into workers and
 * the event queue out of them.
 *
 * Theory of operation
 * - An engine is a fixed pool of workers. Each worker owns one epoll set and
 *   every connection it is given, for the connection's whole life: nothing on
 *   the data path takes a lock.
 * - Other threads talk to a worker only through its command queue (a mutex-
 *   protected list) and its eventfd, which wakes the worker's epoll_wait.
 * - Workers talk to the host only through the event queue: fixed-size
 *   records appended under q_lock. The host drains them in batches
 *   (rk_engine_drain). It learns that there is something to drain either by
 *   blocking in rk_engine_wait on a helper thread, or through the notify
 *   callback, which fires once per empty->non-empty transition after a drain
 *   has emptied the queue (so a burst of events costs one wake-up).
 * - An id table (engine-wide, under tbl_lock) maps connection ids to
 *   connections so that rk_conn_stats and rk_conn_close work from any thread.
 *   A worker removes a connection from the table before freeing it.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static rk__engine *g_engines[RK__MAX_ENGINES];

int64_t rk__now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rk__now_real(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

rk__engine *rk__engine_get(int32_t h) {
  if (h < 0 || h >= RK__MAX_ENGINES)
    return NULL;
  pthread_mutex_lock(&g_lock);
  rk__engine *e = g_engines[h];
  pthread_mutex_unlock(&g_lock);
  return e;
}

int32_t rk__new_id(rk__engine *e) {
  int32_t id;
  do {
    id = RK__ADD(&e->next_id, 1) & 0x7fffffff;
  } while (id == 0);
  return id;
}

rk__worker *rk__pick_worker(rk__engine *e) {
  uint32_t n = __atomic_fetch_add(&e->rr, 1, __ATOMIC_RELAXED);
  return &e->workers[n % (uint32_t)e->nworkers];
}

/* ---- event queue ------------------------------------------------------- */

/* The engine whose worker runs on this thread, while the worker handles a
 * batch of epoll events: what it posts meanwhile wakes the host once, at
 * the batch's end, not at the first record (the host would drain that one
 * while the worker posts the next ones, and be woken again for them). A
 * pthread key, not __thread: the library then needs no ld.so of its own
 * (__tls_get_addr), which test/prebuilt_test.ts holds it to. */
static pthread_key_t rk__batching;
static pthread_once_t rk__batching_once = PTHREAD_ONCE_INIT;
static int rk__batching_ok;

static void rk__batching_make(void) {
  rk__batching_ok = pthread_key_create(&rk__batching, NULL) == 0;
}

/* Tell the host that the queue holds events (q_lock held): wake the waiters,
 * and return the notify callback to call once the lock is released, if it
 * is armed (NULL otherwise). */
static void (*rk__tell_locked(rk__engine *e))(void) {
  pthread_cond_broadcast(&e->q_cond);
  if (!e->q_armed || e->notify == NULL)
    return NULL;
  e->q_armed = 0;
  return e->notify;
}

void rk__post(rk__engine *e, const uint32_t *rec) {
  void (*cb)(void) = NULL;
  pthread_mutex_lock(&e->q_lock);
  if (e->q_len == e->q_cap) {
    /* Grow: the queue holds at most a few events per live connection, so
     * it is bounded by the connection limit. */
    size_t ncap = e->q_cap * 2;
    uint32_t *nq = malloc(ncap * RK_EVENT_WORDS * sizeof(uint32_t));
    if (nq == NULL) {
      pthread_mutex_unlock(&e->q_lock);
      return; /* out of memory: the event is lost, the engine goes on */
    }
    for (size_t i = 0; i < e->q_len; i++)
      memcpy(nq + i * RK_EVENT_WORDS,
             e->q + ((e->q_head + i) % e->q_cap) * RK_EVENT_WORDS,
             RK_EVENT_WORDS * sizeof(uint32_t));
    free(e->q);
    e->q = nq;
    e->q_cap = ncap;
    e->q_head = 0;
  }
  size_t slot = (e->q_head + e->q_len) % e->q_cap;
  memcpy(e->q + slot * RK_EVENT_WORDS, rec, RK_EVENT_WORDS * sizeof(uint32_t));
  e->q_len++;
  if (e->q_len == 1) {
    if (rk__batching_ok && pthread_getspecific(rk__batching) == (void *)e)
      e->q_deferred = 1; /* told once, at the end of the worker's batch */
    else
      cb = rk__tell_locked(e);
  }
  pthread_mutex_unlock(&e->q_lock);
  if (cb != NULL)
    cb();
}

void rk__post_flush(rk__engine *e) {
  void (*cb)(void) = NULL;
  pthread_mutex_lock(&e->q_lock);
  if (e->q_deferred) {
    e->q_deferred = 0;
    /* (a drain may have emptied the queue since: nothing to tell then) */
    if (e->q_len > 0)
      cb = rk__tell_locked(e);
  }
  pthread_mutex_unlock(&e->q_lock);
  if (cb != NULL)
    cb();
}

int32_t rk_engine_drain(int32_t h, uint32_t *out, int32_t max_events) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (out == NULL || max_events <= 0)
    return -EINVAL;
  pthread_mutex_lock(&e->q_lock);
  size_t n = e->q_len < (size_t)max_events ? e->q_len : (size_t)max_events;
  for (size_t i = 0; i < n; i++) {
    memcpy(out + i * RK_EVENT_WORDS,
           e->q + ((e->q_head + i) % e->q_cap) * RK_EVENT_WORDS,
           RK_EVENT_WORDS * sizeof(uint32_t));
  }
  e->q_head = (e->q_head + n) % e->q_cap;
  e->q_len -= n;
  if (e->q_len == 0)
    e->q_armed = 1;
  pthread_mutex_unlock(&e->q_lock);
  return (int32_t)n;
}

int32_t rk_engine_wait(int32_t h, int32_t timeout_ms) {
  struct timespec dl;
  if (timeout_ms >= 0) {
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
      dl.tv_sec++;
      dl.tv_nsec -= 1000000000L;
    }
  }
  /* Look the engine up and count this waiter in one step under g_lock:
   * rk_engine_free takes the engine out of g_engines under g_lock before it
   * waits for the waiters, so it either waits for this one or this one does
   * not find the engine - a waiter cannot come in between and use the
   * engine after it was freed. (Lock order: g_lock, then q_lock.) */
  rk__engine *e = NULL;
  pthread_mutex_lock(&g_lock);
  if (h >= 0 && h < RK__MAX_ENGINES && (e = g_engines[h]) != NULL) {
    pthread_mutex_lock(&e->q_lock);
    e->waiters++;
  }
  pthread_mutex_unlock(&g_lock);
  if (e == NULL)
    return RK_EBADHANDLE;
  int r = 0;
  while (e->q_len == 0 && !e->q_woken && r == 0) {
    if (timeout_ms >= 0)
      r = pthread_cond_timedwait(&e->q_cond, &e->q_lock, &dl);
    else
      pthread_cond_wait(&e->q_cond, &e->q_lock);
  }
  e->q_woken = 0;
  int32_t n = (int32_t)e->q_len;
  e->waiters--;
  pthread_cond_broadcast(&e->q_cond); /* rk_engine_free may wait on us */
  pthread_mutex_unlock(&e->q_lock);
  return n;
}

int32_t rk_engine_wake(int32_t h) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->q_lock);
  e->q_woken = 1;
  pthread_cond_broadcast(&e->q_cond);
  pthread_mutex_unlock(&e->q_lock);
  return 0;
}

int32_t rk_engine_set_notify(int32_t h, void (*cb)(void)) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->q_lock);
  e->notify = cb;
  e->q_armed = 1;
  int fire = cb != NULL && e->q_len > 0;
  if (fire)
    e->q_armed = 0;
  pthread_mutex_unlock(&e->q_lock);
  if (fire)
    cb();
  return 0;
}

/* ---- id table ---------------------------------------------------------- */

static void rk__table_add_locked(rk__engine *e, rk__conn *c) {
  rk__conn **b = &e->tbl[(uint32_t)c->id % RK__TABLE_BUCKETS];
  c->tbl_next = *b;
  *b = c;
}

void rk__table_add(rk__engine *e, rk__conn *c) {
  pthread_mutex_lock(&e->tbl_lock);
  rk__table_add_locked(e, c);
  pthread_mutex_unlock(&e->tbl_lock);
}

void rk__table_del(rk__engine *e, rk__conn *c) {
  pthread_mutex_lock(&e->tbl_lock);
  rk__conn **p = &e->tbl[(uint32_t)c->id % RK__TABLE_BUCKETS];
  while (*p != NULL && *p != c)
    p = &(*p)->tbl_next;
  if (*p == c)
    *p = c->tbl_next;
  pthread_mutex_unlock(&e->tbl_lock);
}

rk__conn *rk__table_find_locked(rk__engine *e, int32_t id) {
  rk__conn *c = e->tbl[(uint32_t)id % RK__TABLE_BUCKETS];
  while (c != NULL && c->id != id)
    c = c->tbl_next;
  return c;
}

/* ---- commands ---------------------------------------------------------- */

/* Append c to w's command list without waking w (rk__wake follows). */
static void rk__enqueue(rk__worker *w, rk__cmd *c) {
  c->next = NULL;
  pthread_mutex_lock(&w->cmd_lock);
  if (w->cmd_tail != NULL)
    w->cmd_tail->next = c;
  else
    w->cmd_head = c;
  w->cmd_tail = c;
  pthread_mutex_unlock(&w->cmd_lock);
}

void rk__wake(rk__worker *w) {
  uint64_t one = 1;
  ssize_t r;
  RK__RETRY(r, write(w->evfd, &one, sizeof one));
  (void)r; /* EAGAIN: the counter is already non-zero, the worker wakes */
}

void rk__send(rk__worker *w, rk__cmd *c) {
  rk__enqueue(w, c);
  rk__wake(w);
}

/* Hand a connection made on a host thread to a worker: pick the worker,
 * enter the connection in the id table and send cmd - unless the engine is
 * closing (RK_ECLOSED; c and cmd stay the caller's). All of it under
 * tbl_lock, where rk_engine_close sets closed_flag before it queues
 * RK__CMD_STOP: a command sent here is ahead of the worker's STOP, so the
 * worker takes the connection and ends it with the engine; none is left on
 * a worker that has stopped. */
int32_t rk__conn_publish(rk__engine *e, rk__conn *c, rk__cmd *cmd) {
  pthread_mutex_lock(&e->tbl_lock);
  if (e->closed_flag) {
    pthread_mutex_unlock(&e->tbl_lock);
    return RK_ECLOSED;
  }
  c->w = rk__pick_worker(e);
  rk__table_add_locked(e, c);
  cmd->conn = c;
  rk__send(c->w, cmd);
  pthread_mutex_unlock(&e->tbl_lock);
  return 0;
}

/* Find connection id and send it cmd; frees cmd when there is none. */
/* The worker of connection id, or NULL when there is none. */
rk__worker *rk__conn_worker(rk__engine *e, int32_t id) {
  pthread_mutex_lock(&e->tbl_lock);
  rk__conn *c = rk__table_find_locked(e, id);
  rk__worker *w = c != NULL ? c->w : NULL;
  pthread_mutex_unlock(&e->tbl_lock);
  return w;
}

int32_t rk__send_to_conn(rk__engine *e, int32_t id, rk__cmd *cmd) {
  rk__worker *w = rk__conn_worker(e, id);
  if (w == NULL) {
    rk__cmd_free(cmd);
    return -ENOENT;
  }
  cmd->id = id;
  rk__send(w, cmd);
  return 0;
}

/* The live connection `id` of this worker, or NULL. The pointer stays valid
 * on this thread: only the owning worker frees its connections. */
rk__conn *rk__worker_find(rk__worker *w, int32_t id) {
  pthread_mutex_lock(&w->e->tbl_lock);
  rk__conn *c = rk__table_find_locked(w->e, id);
  if (c != NULL && c->w != w)
    c = NULL; /* another worker's: it may free it as soon as we unlock */
  pthread_mutex_unlock(&w->e->tbl_lock);
  return c != NULL && c->state != RK__DEAD ? c : NULL;
}

static void rk__run_cmds(rk__worker *w) {
  uint64_t v;
  ssize_t r;
  RK__RETRY(r, read(w->evfd, &v, sizeof v));
  pthread_mutex_lock(&w->cmd_lock);
  rk__cmd *c = w->cmd_head;
  w->cmd_head = w->cmd_tail = NULL;
  pthread_mutex_unlock(&w->cmd_lock);
  while (c != NULL) {
    rk__cmd *next = c->next;
    switch (c->type) {
    case RK__CMD_ADD_RELAY: {
      rk__conn *conn = c->conn;
      rk__conn_attach(conn);
      int r = rk__side_register(w, conn, &conn->side[0]);
      if (r == 0)
        r = rk__side_register(w, conn, &conn->side[1]);
      if (r < 0)
        rk__conn_end(conn, RK_END_RESET, r);
      else
        rk__conn_run(conn);
      break;
    }
    case RK__CMD_START_CONNECT:
      rk__conn_attach(c->conn);
      rk__connect_start(c->conn);
      break;
    case RK__CMD_CLOSE: {
      rk__conn *conn = rk__worker_find(w, c->id);
      if (conn != NULL)
        rk__conn_close_cmd(conn, c->arg);
      break;
    }
    case RK__CMD_LISTEN:
      rk__listener_attach(w, c->listener);
      break;
    case RK__CMD_UNLISTEN:
      rk__listener_detach(w, c->listener);
      break;
    case RK__CMD_RESOLVED: {
      rk__conn *conn = rk__worker_find(w, c->id);
      if (conn != NULL)
        rk__connect_resolved(conn, c->ai, c->err);
      else
        rk__ai_free(c->ai);
      c->ai = NULL;
      break;
    }
    case RK__CMD_ROUTE_RESOLVED: {
      rk__conn *conn = rk__worker_find(w, c->id);
      if (conn != NULL)
        rk__route_resolved(conn, c->ai, c->err);
      else
        rk__ai_free(c->ai);
      c->ai = NULL;
      break;
    }
    case RK__CMD_STOP:
      w->stop = 1;
      break;
    case RK__CMD_CALL:
      c->fn(w, c);
      break;
    case RK__CMD_HOLD_READ: {
      rk__conn *conn = rk__worker_find(w, c->id);
      if (conn != NULL)
        rk__hold_read_cmd(conn, (uint32_t)c->arg);
      break;
    }
    case RK__CMD_HOLD_WRITE: {
      rk__conn *conn = rk__worker_find(w, c->id);
      if (conn != NULL)
        rk__hold_write_cmd(conn, c->data, c->len);
      break;
    }
    case RK__CMD_HOLD_TLS: {
      rk__conn *conn = rk__worker_find(w, c->id);
      if (conn != NULL)
        rk__hold_tls_cmd(conn, c);
      break;
    }
    case RK__CMD_HOLD_BATCH:
      rk__hold_batch_run(w, c);
      break;
    case RK__CMD_HOLD_DECIDE: {
      rk__conn *conn = rk__worker_find(w, c->id);
      if (conn != NULL)
        rk__hold_decide_cmd(conn, c);
      break;
    }
    case RK__CMD_HOOK_RETURN: {
      rk__conn *conn = rk__worker_find(w, c->id);
      if (conn != NULL)
        rk__hook_returned(conn, c->arg);
      break;
    }
    case RK__CMD_ABORT_LISTENER: {
      rk__conn *it = w->conns;
      while (it != NULL) {
        rk__conn *next = it->next;
        if (it->listener == c->listener) {
          it->abort_rst = 1;
          rk__conn_end(it, RK_END_CLOSED, 0);
        }
        it = next;
      }
      rk__listener_unref(c->listener);
      break;
    }
    }
    rk__cmd_free(c); /* and what no connection took over */
    c = next;
  }
}

/* ---- workers ----------------------------------------------------------- */

static void rk__free_dead(rk__worker *w) {
  while (w->dead != NULL) {
    rk__conn *c = w->dead;
    w->dead = c->next;
    free(c);
  }
}

/* Whether this worker let listener p go (RK__CMD_UNLISTEN) in the batch
 * being handled: its event, later in the same batch, is stale, and another
 * worker may have freed it since. */
static int rk__worker_let_go(rk__worker *w, const void *p) {
  for (int i = 0; i < w->ngone; i++)
    if (w->gone[i] == p)
      return 1;
  return 0;
}

static void *rk__worker_main(void *arg) {
  rk__worker *w = arg;
  struct epoll_event evs[RK__EPOLL_BATCH];
  w->next_sweep = rk__now_mono() + RK__SWEEP_MS;
  while (!w->stop) {
    int timeout = w->ready != NULL ? 0 : RK__SWEEP_MS;
    int n = epoll_wait(w->epfd, evs, RK__EPOLL_BATCH, timeout);
    if (rk__batching_ok)
      pthread_setspecific(rk__batching, w->e);
    w->ngone = 0;
    for (int i = 0; i < n; i++) {
      void *p = (void *)(uintptr_t)(evs[i].data.u64 & ~(uint64_t)1);
      if (w->ngone > 0 && rk__worker_let_go(w, p))
        continue; /* a listener let go earlier in this batch: maybe freed */
      int tag = *(int *)p;
      if (tag == RK__TAG_CONN)
        rk__conn_event(p, (int)(evs[i].data.u64 & 1), evs[i].events);
      else if (tag == RK__TAG_LISTENER)
        rk__accept(w, p);
      else if (tag == RK__TAG_TUNNEL)
        rk__tunnel_event(p, evs[i].events);
      else
        rk__run_cmds(w);
    }
    /* Relays that used up their turn get another, after everyone else. */
    rk__conn *ready = w->ready;
    w->ready = NULL;
    while (ready != NULL) {
      rk__conn *c = ready;
      ready = c->ready_next;
      c->ready = 0;
      if (c->state != RK__DEAD)
        rk__conn_run(c);
    }
    rk__tunnel_flush(w);
    rk__free_dead(w);
    rk__tunnel_reap(w);
    int64_t now = rk__now_mono();
    if (now >= w->next_sweep) {
      rk__sweep(w, now);
      rk__listeners_resume(w, now);
      w->next_sweep = now + RK__SWEEP_MS;
    }
    rk__free_dead(w);
    if (rk__batching_ok)
      pthread_setspecific(rk__batching, NULL);
    rk__post_flush(w->e);
  }
  /* Engine closing: end every tunnel and connection still here. */
  rk__tunnel_worker_stop(w);
  while (w->conns != NULL)
    rk__conn_end(w->conns, RK_END_ENGINE_CLOSED, 0);
  rk__free_dead(w);
  return NULL;
}

int32_t rk_engine_new(int32_t threads, int32_t max_conns) {
  if (threads < 0 || threads > 1024 || max_conns < 0)
    return -EINVAL;
  if (threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int32_t)n : 1;
  }
  /* before any worker posts (without the key, every post wakes the host) */
  pthread_once(&rk__batching_once, rk__batching_make);
  rk__engine *e = calloc(1, sizeof *e);
  if (e == NULL)
    return -ENOMEM;
  e->max_conns = max_conns;
  e->q_cap = 1024;
  e->q = malloc(e->q_cap * RK_EVENT_WORDS * sizeof(uint32_t));
  e->q_armed = 1;
  e->workers = calloc((size_t)threads, sizeof(rk__worker));
  if (e->q == NULL || e->workers == NULL) {
    free(e->q);
    free(e->workers);
    free(e);
    return -ENOMEM;
  }
  pthread_mutex_init(&e->q_lock, NULL);
  pthread_cond_init(&e->q_cond, NULL);
  pthread_mutex_init(&e->tbl_lock, NULL);
  rk__lend_init(e);
  pthread_mutex_init(&e->res_lock, NULL);
  pthread_cond_init(&e->res_cond, NULL);

  int32_t h = -1;
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < RK__MAX_ENGINES; i++) {
    if (g_engines[i] == NULL) {
      h = i;
      g_engines[i] = e;
      break;
    }
  }
  pthread_mutex_unlock(&g_lock);
  if (h < 0) {
    free(e->q);
    free(e->workers);
    free(e);
    return -EMFILE;
  }
  e->handle = h;

  int err = 0;
  for (int i = 0; i < threads; i++) {
    rk__worker *w = &e->workers[i];
    w->tag = RK__TAG_WAKE;
    w->index = i;
    w->e = e;
    pthread_mutex_init(&w->cmd_lock, NULL);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->epfd < 0 || w->evfd < 0) {
      err = -errno;
      if (w->epfd >= 0)
        close(w->epfd);
      if (w->evfd >= 0)
        close(w->evfd);
      break;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev);
    if (pthread_create(&w->thread, NULL, rk__worker_main, w) != 0) {
      err = -EAGAIN;
      close(w->epfd);
      close(w->evfd);
      break;
    }
    e->nworkers++;
  }
  if (err != 0) {
    rk_engine_close(h);
    rk_engine_free(h);
    return err;
  }
  return h;
}

int32_t rk_engine_threads(int32_t h) {
  rk__engine *e = rk__engine_get(h);
  return e == NULL ? RK_EBADHANDLE : e->nworkers;
}

int32_t rk_engine_close(int32_t h) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->tbl_lock);
  if (e->closed_flag) {
    pthread_mutex_unlock(&e->tbl_lock);
    return 0;
  }
  e->closed_flag = 1;
  pthread_mutex_unlock(&e->tbl_lock);

  /* collect ids first: a worker may free a listener while we go */
  int32_t ids[RK__CLOSE_BATCH];
  int nids;
  do {
    nids = 0;
    pthread_mutex_lock(&e->tbl_lock);
    for (rk__listener *l = e->listeners; l != NULL && nids < RK__CLOSE_BATCH; l = l->next)
      if (!l->closing)
        ids[nids++] = l->id;
    pthread_mutex_unlock(&e->tbl_lock);
    for (int i = 0; i < nids; i++)
      rk_listener_close(h, ids[i]);
  } while (nids == RK__CLOSE_BATCH);
  for (int i = 0; i < e->nworkers; i++) {
    rk__cmd *c = calloc(1, sizeof *c);
    if (c == NULL)
      abort(); /* cannot stop the worker otherwise */
    c->type = RK__CMD_STOP;
    rk__send(&e->workers[i], c);
  }
  for (int i = 0; i < e->nworkers; i++)
    pthread_join(e->workers[i].thread, NULL);
  rk__resolver_stop(e);
  for (int i = 0; i < e->ntest; i++)
    pthread_join(e->test_threads[i], NULL);
  e->ntest = 0;
  rk_engine_wake(h);
  return 0;
}

int32_t rk_engine_free(int32_t h) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  rk_engine_close(h);
  pthread_mutex_lock(&g_lock);
  g_engines[h] = NULL;
  pthread_mutex_unlock(&g_lock);
  /* Nobody can find the engine now; wait out anyone already inside wait. */
  pthread_mutex_lock(&e->q_lock);
  while (e->waiters > 0) {
    e->q_woken = 1;
    pthread_cond_broadcast(&e->q_cond);
    pthread_cond_wait(&e->q_cond, &e->q_lock);
  }
  pthread_mutex_unlock(&e->q_lock);
  for (int i = 0; i < e->nworkers; i++) {
    rk__worker *w = &e->workers[i];
    rk__worker_release_pools(w);
    rk__cmd *c = w->cmd_head;
    while (c != NULL) {
      rk__cmd *next = c->next;
      rk__cmd_free(c);
      c = next;
    }
    close(w->epfd);
    close(w->evfd);
    free(w->gone);
    pthread_mutex_destroy(&w->cmd_lock);
  }
  rk__listener *l = e->listeners;
  while (l != NULL) {
    rk__listener *next = l->next;
    if (l->fd >= 0)
      close(l->fd);
    rk__free_target(l->target);
    rk__tls_ctx_unref(l->tls_ctx);
    free(l->unix_path);
    free(l);
    l = next;
  }
  rk__lend_free(e);
  free(e->workers);
  free(e->q);
  free(e->test_threads);
  pthread_mutex_destroy(&e->q_lock);
  pthread_cond_destroy(&e->q_cond);
  pthread_mutex_destroy(&e->tbl_lock);
  pthread_mutex_destroy(&e->res_lock);
  pthread_cond_destroy(&e->res_cond);
  free(e);
  return 0;
}

int32_t rk_engine_stats(int32_t h, double *out) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  out[0] = RK__LOAD(&e->active);
  out[1] = (double)RK__LOAD(&e->accepted);
  out[2] = (double)RK__LOAD(&e->closed);
  out[3] = (double)RK__LOAD(&e->rejected);
  pthread_mutex_lock(&e->q_lock);
  out[4] = (double)e->q_len;
  pthread_mutex_unlock(&e->q_lock);
  int nl = 0;
  pthread_mutex_lock(&e->tbl_lock);
  for (rk__listener *l = e->listeners; l != NULL; l = l->next)
    nl += !l->closing;
  pthread_mutex_unlock(&e->tbl_lock);
  out[5] = nl;
  int np = 0;
  for (int i = 0; i < e->nworkers; i++)
    np += RK__LOAD(&e->workers[i].npipes);
  out[6] = np;
  out[7] = e->nworkers;
  return 0;
}

/* ---- test posters ------------------------------------------------------ */

typedef struct {
  rk__engine *e;
  uint32_t index, count;
} rk__test_arg;

static void *rk__test_main(void *p) {
  rk__test_arg a = *(rk__test_arg *)p;
  free(p);
  for (uint32_t i = 0; i < a.count; i++) {
    uint32_t rec[RK_EVENT_WORDS] = {RK_EV_TEST, a.index, i};
    rk__post(a.e, rec);
  }
  return NULL;
}

int32_t rk_test_post(int32_t h, int32_t threads, int32_t count) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (threads <= 0 || threads > 64 || count < 0)
    return -EINVAL;
  for (int i = 0; i < e->ntest; i++)
    pthread_join(e->test_threads[i], NULL);
  free(e->test_threads);
  e->ntest = 0;
  e->test_threads = calloc((size_t)threads, sizeof(pthread_t));
  if (e->test_threads == NULL)
    return -ENOMEM;
  for (int i = 0; i < threads; i++) {
    rk__test_arg *a = malloc(sizeof *a);
    if (a == NULL)
      return -ENOMEM;
    a->e = e;
    a->index = (uint32_t)i;
    a->count = (uint32_t)count;
    if (pthread_create(&e->test_threads[i], NULL, rk__test_main, a) != 0) {
      free(a);
      return -EAGAIN;
    }
    e->ntest++;
  }
  return 0;
}
