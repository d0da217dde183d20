/*
 * harness.c - the native library's relay, routing, hook and event-bridge
 * tests in C, for ThreadSanitizer, ASan + UBSan and a plain build.
 *
 * Deno and Bun cannot run under TSan (preloaded into them it reports races
 * inside the runtimes), so this program drives the C API of relaykit.h
 * directly, the way the TypeScript side does but with more threads: real
 * sockets on 127.0.0.1, engines with two workers, echo backends on their own
 * threads, clients on several threads, and host threads that drain events,
 * decide held connections and answer hooks concurrently with the workers.
 *
 *   harness [substring]   run every test, or those whose name contains it
 *
 * It prints "ok <test> (<ms> ms)" per test and ends with
 * "harness: N passed, M failed". A failing check prints the test, the check
 * and what was seen, and exits 1 at once (other threads may be mid-flight,
 * so nothing after a failure would be trustworthy). A test that runs longer
 * than HARNESS_TIMEOUT_S (default 120) seconds fails the same way.
 * HARNESS_SEED fixes the random data (the seed is printed at the start).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "relaykit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <dlfcn.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Blocking socket calls give up after this long: a stuck relay fails a
 * check instead of hanging (TSan makes everything 5-20x slower). */
#define IO_TIMEOUT_S 60
/* How long a test waits for an expected event. */
#define EVENT_TIMEOUT_MS 60000

/* ---- checks ------------------------------------------------------------ */

static _Atomic(const char *) g_test = "(setup)";
static atomic_int g_passed;

__attribute__((format(printf, 4, 5), noreturn)) static void
fail(const char *file, int line, const char *expr, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "FAIL %s\n  %s:%d: check `%s` failed: %s\n",
          atomic_load(&g_test), file, line, expr, msg);
  fflush(stderr);
  printf("harness: %d passed, 1 failed\n", atomic_load(&g_passed));
  fflush(stdout);
  _exit(1);
}

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond))                                                               \
      fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                            \
  } while (0)

/* A check on a return code: 0 (or >= 0) expected, the error named if not. */
#define CHECK_RC(expr, what)                                                   \
  do {                                                                         \
    int32_t rc_ = (expr);                                                      \
    CHECK(rc_ >= 0, "%s: %d %s", what, rc_, rk_err_name(rc_));                 \
  } while (0)

/* ---- time, randomness -------------------------------------------------- */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static uint64_t g_seed;

static uint64_t rnd(uint64_t *s) { /* xorshift64 */
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static uint32_t rnd_below(uint64_t *s, uint32_t n) {
  return (uint32_t)(rnd(s) % n);
}

static uint64_t seed_for(uint64_t salt) {
  uint64_t s = g_seed ^ (salt * 0x9e3779b97f4a7c15ull);
  return s != 0 ? s : 1;
}

/* n random bytes, or random lowercase letters */
static uint8_t *random_bytes(size_t n, uint64_t *s, int letters) {
  uint8_t *b = malloc(n > 0 ? n : 1);
  CHECK(b != NULL, "out of memory");
  for (size_t i = 0; i < n; i++)
    b[i] = letters ? (uint8_t)('a' + rnd_below(s, 26)) : (uint8_t)rnd(s);
  return b;
}

/* ---- threads ----------------------------------------------------------- */

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  int r = pthread_create(&t, NULL, fn, arg);
  CHECK(r == 0, "pthread_create: %s", strerror(r));
  return t;
}

static void join(pthread_t t) {
  int r = pthread_join(t, NULL);
  CHECK(r == 0, "pthread_join: %s", strerror(r));
}

/* A queue of event records handed from the draining thread to a host
 * thread (a decider, a hook handler). */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint32_t (*recs)[RK_EVENT_WORDS];
  size_t head, len, cap;
  int stop;
} wq_t;

static void wq_init(wq_t *q) {
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
}

static void wq_push(wq_t *q, const uint32_t *rec) {
  pthread_mutex_lock(&q->mu);
  if (q->head + q->len == q->cap) {
    if (q->head > 0) {
      memmove(q->recs, q->recs + q->head, q->len * sizeof *q->recs);
      q->head = 0;
    } else {
      q->cap = q->cap ? q->cap * 2 : 64;
      q->recs = realloc(q->recs, q->cap * sizeof *q->recs);
      CHECK(q->recs != NULL, "out of memory");
    }
  }
  memcpy(q->recs[q->head + q->len], rec, sizeof *q->recs);
  q->len++;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

/* Pop into rec; 0 once stopped and empty. */
static int wq_pop(wq_t *q, uint32_t *rec) {
  pthread_mutex_lock(&q->mu);
  while (q->len == 0 && !q->stop)
    pthread_cond_wait(&q->cv, &q->mu);
  int ok = q->len > 0;
  if (ok) {
    memcpy(rec, q->recs[q->head], sizeof *q->recs);
    q->head++;
    q->len--;
  }
  pthread_mutex_unlock(&q->mu);
  return ok;
}

static void wq_stop(wq_t *q) {
  pthread_mutex_lock(&q->mu);
  q->stop = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

static void wq_free(wq_t *q) {
  free(q->recs);
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
}

/* ---- the event pump: a thread that waits and drains -------------------- */

typedef void (*event_fn)(void *ctx, const uint32_t *rec);

typedef struct {
  int32_t h;
  pthread_t thr;
  int running;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint32_t (*recs)[RK_EVENT_WORDS]; /* every event drained, in order */
  size_t n, cap;
  atomic_int stop;
  event_fn fn; /* called on the pump thread for each event, if set */
  void *ctx;
} pump_t;

static void pump_add(pump_t *p, const uint32_t *recs, int n) {
  for (int i = 0; i < n; i++)
    if (p->fn != NULL)
      p->fn(p->ctx, recs + i * RK_EVENT_WORDS);
  pthread_mutex_lock(&p->mu);
  if (p->n + (size_t)n > p->cap) {
    while (p->n + (size_t)n > p->cap)
      p->cap = p->cap ? p->cap * 2 : 256;
    p->recs = realloc(p->recs, p->cap * sizeof *p->recs);
    CHECK(p->recs != NULL, "out of memory");
  }
  memcpy(p->recs + p->n, recs, (size_t)n * sizeof *p->recs);
  p->n += (size_t)n;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Drain whatever is queued now, on the calling thread. */
static int pump_drain_now(pump_t *p) {
  uint32_t buf[64 * RK_EVENT_WORDS];
  int total = 0, n;
  while ((n = rk_engine_drain(p->h, buf, 64)) > 0) {
    pump_add(p, buf, n);
    total += n;
  }
  CHECK(n == 0, "rk_engine_drain: %d %s", n, rk_err_name(n));
  return total;
}

static void *pump_main(void *arg) {
  pump_t *p = arg;
  while (!atomic_load(&p->stop)) {
    int r = rk_engine_wait(p->h, 200);
    CHECK(r >= 0, "rk_engine_wait: %d %s", r, rk_err_name(r));
    pump_drain_now(p);
  }
  return NULL;
}

static void pump_init(pump_t *p, int32_t h, event_fn fn, void *ctx) {
  memset(p, 0, sizeof *p);
  p->h = h;
  p->fn = fn;
  p->ctx = ctx;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
}

static void pump_start(pump_t *p) {
  p->running = 1;
  p->thr = spawn(pump_main, p);
}

static void pump_stop(pump_t *p) {
  if (!p->running)
    return;
  atomic_store(&p->stop, 1);
  rk_engine_wake(p->h);
  join(p->thr);
  p->running = 0;
}

static void pump_free(pump_t *p) {
  free(p->recs);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
}

/* The first event of type (with id, unless id < 0) - with the lock held. */
static const uint32_t *pump_find_locked(pump_t *p, uint32_t type, int32_t id) {
  for (size_t i = 0; i < p->n; i++)
    if (p->recs[i][0] == type && (id < 0 || p->recs[i][1] == (uint32_t)id))
      return p->recs[i];
  return NULL;
}

static size_t pump_count_locked(pump_t *p, uint32_t type, int32_t id,
                                int32_t aux) {
  size_t k = 0;
  for (size_t i = 0; i < p->n; i++)
    k += p->recs[i][0] == type &&
         (id < 0 || p->recs[i][1] == (uint32_t)id) &&
         (aux < 0 || p->recs[i][2] == (uint32_t)aux);
  return k;
}

static int pump_timedwait(pump_t *p, int64_t deadline) {
  if (now_ms() >= deadline)
    return 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += 50 * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(&p->cv, &p->mu, &ts);
  return 1;
}

/* Wait for the event and copy it to out. */
static void pump_get(pump_t *p, uint32_t type, int32_t id, uint32_t *out) {
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  pthread_mutex_lock(&p->mu);
  const uint32_t *r;
  while ((r = pump_find_locked(p, type, id)) == NULL) {
    if (!pump_timedwait(p, deadline)) {
      pthread_mutex_unlock(&p->mu);
      CHECK(0, "no event of type %u for id %d", type, id);
    }
  }
  memcpy(out, r, RK_EVENT_WORDS * sizeof(uint32_t));
  pthread_mutex_unlock(&p->mu);
}

static void pump_wait_count(pump_t *p, uint32_t type, int32_t aux, size_t n) {
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  pthread_mutex_lock(&p->mu);
  size_t k;
  while ((k = pump_count_locked(p, type, -1, aux)) < n) {
    if (!pump_timedwait(p, deadline)) {
      pthread_mutex_unlock(&p->mu);
      CHECK(0, "%zu events of type %u (aux %d), expected %zu", k, type, aux,
            n);
    }
  }
  pthread_mutex_unlock(&p->mu);
}

/* Connection ids of the ACCEPT events of listener lid, in order. */
static size_t pump_accepted(pump_t *p, int32_t lid, int32_t *ids,
                            int *ports, size_t max) {
  size_t k = 0;
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < p->n && k < max; i++) {
    if (p->recs[i][0] == RK_EV_ACCEPT && p->recs[i][2] == (uint32_t)lid) {
      ids[k] = (int32_t)p->recs[i][1];
      if (ports != NULL)
        ports[k] = (int)p->recs[i][7];
      k++;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return k;
}

static uint64_t rec_u64(const uint32_t *rec, int word) {
  return (uint64_t)rec[word] | ((uint64_t)rec[word + 1] << 32);
}

/* Wait for the connection's RK_EV_CLOSED and check its reason. */
static void expect_closed(pump_t *p, int32_t id, int reason, uint32_t *out) {
  uint32_t rec[RK_EVENT_WORDS];
  pump_get(p, RK_EV_CLOSED, id, rec);
  CHECK(rec[4] == (uint32_t)reason,
        "connection %d ended with reason %u (err %d %s), expected %d", id,
        rec[4], (int32_t)rec[3], rk_err_name((int32_t)rec[3]), reason);
  pthread_mutex_lock(&p->mu);
  size_t k = pump_count_locked(p, RK_EV_CLOSED, id, -1);
  pthread_mutex_unlock(&p->mu);
  CHECK(k == 1, "connection %d has %zu RK_EV_CLOSED events", id, k);
  if (out != NULL)
    memcpy(out, rec, sizeof rec);
}

/* Engine with 2 workers and a pump. */
static int32_t engine_new(pump_t *p, event_fn fn, void *ctx) {
  int32_t h = rk_engine_new(2, 0);
  CHECK(h >= 0, "rk_engine_new: %d %s", h, rk_err_name(h));
  CHECK(rk_engine_threads(h) == 2, "threads %d", rk_engine_threads(h));
  pump_init(p, h, fn, ctx);
  pump_start(p);
  return h;
}

/* Stop the pump, close the engine (its last events drained into the
 * pump), free it. */
static void engine_end(pump_t *p) {
  pump_stop(p);
  CHECK_RC(rk_engine_close(p->h), "rk_engine_close");
  pump_drain_now(p);
  CHECK_RC(rk_engine_free(p->h), "rk_engine_free");
  CHECK(rk_engine_threads(p->h) == RK_EBADHANDLE, "freed engine still there");
  pump_free(p);
}

/* Wait until the engine has no connection left. */
static void engine_wait_idle(int32_t h) {
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  double st[8];
  for (;;) {
    CHECK_RC(rk_engine_stats(h, st), "rk_engine_stats");
    if (st[0] == 0)
      return;
    CHECK(now_ms() < deadline, "%g connections still active", st[0]);
    sleep_ms(5);
  }
}

/* ---- sockets ----------------------------------------------------------- */

static void set_timeouts(int fd) {
  struct timeval tv = {IO_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  CHECK(fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0, "fcntl: %s",
        strerror(errno));
}

static int local_port(int fd) {
  struct sockaddr_in sin;
  socklen_t len = sizeof sin;
  CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0,
        "getsockname: %s", strerror(errno));
  return ntohs(sin.sin_port);
}

static int listen_tcp(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0, "socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
            listen(fd, 512) == 0,
        "bind/listen: %s", strerror(errno));
  *port = local_port(fd);
  return fd;
}

static int connect_tcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0, "socket: %s", strerror(errno));
  set_timeouts(fd);
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int r;
  do
    r = connect(fd, (struct sockaddr *)&sin, sizeof sin);
  while (r != 0 && errno == EINTR);
  CHECK(r == 0, "connect to port %d: %s", port, strerror(errno));
  return fd;
}

/* A port that refuses connections: bound, never listening, kept open for
 * the whole run so that nothing else takes it. */
static int g_dead_fd = -1, g_dead_port;

static void dead_port_init(void) {
  g_dead_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(g_dead_fd >= 0 &&
            bind(g_dead_fd, (struct sockaddr *)&sin, sizeof sin) == 0,
        "bind: %s", strerror(errno));
  g_dead_port = local_port(g_dead_fd);
}

static void socketpair_or_die(int sv[2]) {
  int32_t p[2];
  CHECK_RC(rk_fd_socketpair(p), "rk_fd_socketpair");
  sv[0] = p[0];
  sv[1] = p[1];
}

/* Blocking write of all of buf; 0 if the fd failed. */
static int write_full(int fd, const void *buf, size_t n) {
  const uint8_t *b = buf;
  while (n > 0) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w < 0 && errno == ENOTSOCK)
      w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return 0;
    b += w;
    n -= (size_t)w;
  }
  return 1;
}

static void write_all(int fd, const void *buf, size_t n) {
  CHECK(write_full(fd, buf, n), "write %zu bytes to fd %d: %s", n, fd,
        strerror(errno));
}

/* Read until EOF or an error (into *err, 0 at EOF) or cap bytes. */
static size_t read_to_end(int fd, uint8_t *buf, size_t cap, int *err) {
  size_t n = 0;
  *err = 0;
  for (;;) {
    uint8_t scratch[1];
    ssize_t r = n < cap ? read(fd, buf + n, cap - n) : read(fd, scratch, 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      *err = errno;
      return n;
    }
    if (r == 0)
      return n;
    if (n >= cap) {
      *err = EOVERFLOW; /* more than expected */
      return n;
    }
    n += (size_t)r;
  }
}

static void read_exact(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    CHECK(r > 0, "read %zu of %zu bytes: %s", got, n,
          r == 0 ? "EOF" : strerror(errno));
    got += (size_t)r;
  }
}

/* ---- backends: a server thread, one thread per connection -------------- */

typedef void (*conn_fn)(int fd);

typedef struct {
  int fd, port;
  pthread_t thr;
  atomic_int stop, live;
  conn_fn fn;
} server_t;

typedef struct {
  server_t *s;
  int fd;
  conn_fn fn;
} sconn_t;

static void *sconn_main(void *arg) {
  sconn_t a = *(sconn_t *)arg;
  free(arg);
  a.fn(a.fd);
  close(a.fd);
  atomic_fetch_sub(&a.s->live, 1);
  return NULL;
}

/* Run fn(fd) on a thread of its own, counted in s->live; fd is closed
 * after it. */
static void server_adopt(server_t *s, int fd, conn_fn fn) {
  sconn_t *a = malloc(sizeof *a);
  CHECK(a != NULL, "out of memory");
  a->s = s;
  a->fd = fd;
  a->fn = fn;
  atomic_fetch_add(&s->live, 1);
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int r = pthread_create(&t, &at, sconn_main, a);
  pthread_attr_destroy(&at);
  CHECK(r == 0, "pthread_create: %s", strerror(r));
}

static void *server_main(void *arg) {
  server_t *s = arg;
  while (!atomic_load(&s->stop)) {
    struct pollfd pf = {.fd = s->fd, .events = POLLIN};
    if (poll(&pf, 1, 50) <= 0)
      continue;
    int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    set_timeouts(fd);
    server_adopt(s, fd, s->fn);
  }
  return NULL;
}

/* A pool of connection threads without a listening socket. */
static void server_pool(server_t *s) {
  memset(s, 0, sizeof *s);
  s->fd = -1;
}

static void server_start(server_t *s, conn_fn fn) {
  server_pool(s);
  s->fn = fn;
  s->fd = listen_tcp(&s->port);
  s->thr = spawn(server_main, s);
}

static void server_stop(server_t *s) {
  if (s->fd >= 0) {
    atomic_store(&s->stop, 1);
    join(s->thr);
    close(s->fd);
    s->fd = -1;
  }
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (atomic_load(&s->live) > 0) {
    CHECK(now_ms() < deadline, "%d backend connections still open",
          atomic_load(&s->live));
    sleep_ms(5);
  }
}

/* Echo everything; on EOF, end the stream too. */
static void echo_fn(int fd) {
  uint8_t buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0)
      shutdown(fd, SHUT_WR);
    if (n <= 0 || !write_full(fd, buf, (size_t)n))
      return;
  }
}

/* Read one chunk, then reset the connection. */
static void reset_fn(int fd) {
  uint8_t buf[256];
  if (read(fd, buf, sizeof buf) <= 0)
    return;
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Read to EOF, then answer how much came: "got <n>\n". */
static void halfclose_fn(int fd) {
  uint8_t buf[16384];
  size_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return;
    if (n == 0)
      break;
    total += (size_t)n;
  }
  char msg[64];
  int len = snprintf(msg, sizeof msg, "got %zu\n", total);
  write_full(fd, msg, (size_t)len);
}

/* ---- streams: clients that send and check in random chunks ------------- */

typedef struct {
  int fd;
  int port;                  /* local port, to match RK_EV_ACCEPT */
  int32_t id;                /* connection id when known */
  const uint8_t *out;        /* what to send */
  size_t out_len, sent;
  const uint8_t *exp;        /* what must come back */
  size_t exp_len, got;
  uint64_t rng;
  uint32_t max_chunk;        /* writes are 1..max_chunk bytes */
  int endless;               /* never half-close: run until cut off */
  int shut, eof, err;        /* how it ended: eof, or an errno */
  int done;
  uint8_t *own_out, *own_exp; /* buffers to free */
} stream_t;

/* A random payload and chunk size for stream i. */
static void stream_random(stream_t *s, uint64_t salt, int letters) {
  uint64_t r = seed_for(salt);
  static const uint32_t sizes[4] = {2048, 32768, 262144, 262144};
  static const uint32_t chunks[4] = {64, 1500, 16384, 65536};
  int cls = (int)rnd_below(&r, 4);
  s->out_len = 1 + rnd_below(&r, sizes[cls]);
  s->max_chunk = chunks[cls];
  s->rng = r;
  s->own_out = random_bytes(s->out_len, &r, letters);
  s->out = s->own_out;
  s->exp = s->out; /* an echo, unless told otherwise */
  s->exp_len = s->out_len;
  s->fd = -1;
}

static void stream_free(stream_t *s) {
  free(s->own_out);
  free(s->own_exp);
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
}

static void stream_end(stream_t *s, int err) {
  s->done = 1;
  s->err = err;
  s->eof = err == 0;
  close(s->fd);
  s->fd = -1;
}

/* Run the streams until each has ended: sent everything, half-closed
 * (unless endless) and read to EOF, or was cut off by an error. Every byte
 * that arrives is compared with what was expected. */
static void streams_run(stream_t *ss, int n) {
  struct pollfd *pf = calloc((size_t)n, sizeof *pf);
  uint8_t *buf = malloc(65536);
  CHECK(pf != NULL && buf != NULL, "out of memory");
  int left = 0;
  for (int i = 0; i < n; i++) {
    set_nonblock(ss[i].fd);
    left += !ss[i].done;
  }
  int64_t deadline = now_ms() + IO_TIMEOUT_S * 1000;
  while (left > 0) {
    for (int i = 0; i < n; i++) {
      stream_t *s = &ss[i];
      pf[i].fd = s->done ? -1 : s->fd;
      pf[i].events = POLLIN | (s->sent < s->out_len ? POLLOUT : 0);
      pf[i].revents = 0;
    }
    int r = poll(pf, (nfds_t)n, 1000);
    CHECK(r >= 0 || errno == EINTR, "poll: %s", strerror(errno));
    CHECK(now_ms() < deadline, "streams stalled (%d of %d left)", left, n);
    for (int i = 0; i < n; i++) {
      stream_t *s = &ss[i];
      if (s->done || pf[i].revents == 0)
        continue;
      if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t k = read(s->fd, buf, 65536);
        if (k > 0) {
          CHECK(s->got + (size_t)k <= s->exp_len,
                "stream %d: %zu bytes came, only %zu expected", i,
                s->got + (size_t)k, s->exp_len);
          CHECK(memcmp(s->exp + s->got, buf, (size_t)k) == 0,
                "stream %d: bytes %zu..%zu differ from what was expected", i,
                s->got, s->got + (size_t)k);
          s->got += (size_t)k;
        } else if (k == 0 || errno != EAGAIN) {
          stream_end(s, k == 0 ? 0 : errno);
          left--;
          continue;
        }
      }
      if ((pf[i].revents & POLLOUT) && s->sent < s->out_len) {
        size_t chunk = 1 + rnd_below(&s->rng, s->max_chunk);
        if (chunk > s->out_len - s->sent)
          chunk = s->out_len - s->sent;
        ssize_t w = send(s->fd, s->out + s->sent, chunk, MSG_NOSIGNAL);
        if (w > 0) {
          s->sent += (size_t)w;
        } else if (errno != EAGAIN) {
          stream_end(s, errno);
          left--;
          continue;
        }
      }
      if (s->sent == s->out_len && !s->shut && !s->endless) {
        shutdown(s->fd, SHUT_WR); /* half-close: the answer still comes */
        s->shut = 1;
      }
    }
  }
  free(pf);
  free(buf);
}

/* A client thread: connect its streams (port > 0) and run them. */
typedef struct {
  stream_t *ss;
  int n;
  int port;
} client_t;

static void *client_main(void *arg) {
  client_t *c = arg;
  for (int i = 0; i < c->n; i++) {
    if (c->port > 0) {
      c->ss[i].fd = connect_tcp(c->port);
      c->ss[i].port = local_port(c->ss[i].fd);
    }
  }
  streams_run(c->ss, c->n);
  return NULL;
}

/* Run n streams on nthreads client threads, connecting to port (or on the
 * fds already set when port is 0). */
static void clients_run(stream_t *ss, int n, int nthreads, int port) {
  client_t cs[16];
  pthread_t ts[16];
  CHECK(nthreads <= 16 && n % nthreads == 0, "bad split");
  for (int t = 0; t < nthreads; t++) {
    cs[t] = (client_t){ss + t * (n / nthreads), n / nthreads, port};
    ts[t] = spawn(client_main, &cs[t]);
  }
  for (int t = 0; t < nthreads; t++)
    join(ts[t]);
}

static stream_t *stream_by_port(stream_t *ss, int n, int port) {
  for (int i = 0; i < n; i++)
    if (ss[i].port == port)
      return &ss[i];
  CHECK(0, "no client with local port %d", port);
}

/* ---- a stats poller: reads counters concurrently with everything ------- */

typedef struct {
  int32_t h, lid;
  pump_t *pump;
  atomic_int stop;
  long rounds;
} poller_t;

static void *poller_main(void *arg) {
  poller_t *p = arg;
  double st[8];
  char peer[64];
  int32_t ids[256];
  while (!atomic_load(&p->stop)) {
    CHECK_RC(rk_engine_stats(p->h, st), "rk_engine_stats");
    if (p->lid > 0)
      CHECK_RC(rk_listener_active(p->h, p->lid), "rk_listener_active");
    size_t n = pump_accepted(p->pump, p->lid, ids, NULL, 256);
    for (size_t i = 0; i < n; i++) {
      int r = rk_conn_stats(p->h, ids[i], st);
      CHECK(r == 0 || r == -ENOENT, "rk_conn_stats: %d", r);
      if (r == 0)
        CHECK(st[1] <= st[0] && st[3] <= st[2] && st[7] == p->lid,
              "conn %d: counters %g %g %g %g, listener %g", ids[i], st[0],
              st[1], st[2], st[3], st[7]);
      r = rk_conn_peer(p->h, ids[i], peer, sizeof peer);
      CHECK(r == -ENOENT || (r > 0 && strncmp(peer, "127.0.0.1:", 10) == 0),
            "rk_conn_peer: %d", r);
    }
    p->rounds++;
    sleep_ms(1);
  }
  return NULL;
}

/* ======================================================================== */
/* relay                                                                    */
/* ======================================================================== */

static int32_t listen_to(int32_t h, int target_port,
                         const rk_listen_opts_t *opts) {
  int32_t lid = rk_listen(h, "127.0.0.1", 0, opts);
  CHECK(lid > 0, "rk_listen: %d %s", lid, rk_err_name(lid));
  if (target_port > 0)
    CHECK_RC(rk_listener_set_target(h, lid, "127.0.0.1", target_port,
                                    RK_FAMILY_ANY, 5000, NULL),
             "rk_listener_set_target");
  CHECK_RC(rk_listener_start(h, lid), "rk_listener_start");
  int port = rk_listener_port(h, lid);
  CHECK(port > 0, "rk_listener_port: %d", port);
  return lid;
}

/* Wait until the engine has at most n connections open. */
static void engine_wait_below(int32_t h, double n) {
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  double st[8];
  for (;;) {
    CHECK_RC(rk_engine_stats(h, st), "rk_engine_stats");
    if (st[0] <= n)
      return;
    CHECK(now_ms() < deadline, "%g connections still active", st[0]);
    sleep_ms(1);
  }
}

/* rk_listener_conns keeps the oldest, also when the table walk meets newer
 * connections before older ones: ids sit in buckets by id % 16384, so a
 * connection 16,383 ids after another is walked first. Ids are used up
 * with relays that end at once (a pipe at its end, to /dev/null). */
static void t_listener_conns_oldest(void) {
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  int32_t lid = listen_to(h, echo.port, NULL);
  int port = rk_listener_port(h, lid);
  uint32_t rec[3 * RK_CONN_WORDS];
  int fa = connect_tcp(port);
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (rk_listener_conns(h, lid, rec, 1) < 1) {
    CHECK(now_ms() < deadline, "the first connection is never listed");
    sleep_ms(2);
  }
  uint32_t a = rec[0];
  for (int i = 0;; i++) {
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
    close(p[1]);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CHECK(null >= 0, "/dev/null: %s", strerror(errno));
    int32_t id = rk_relay_fds(h, p[0], -1, -1, null, NULL);
    CHECK(id > 0, "rk_relay_fds: %d %s", id, rk_err_name(id));
    if ((uint32_t)id >= a + 16382)
      break;
    if (i % 256 == 255)
      engine_wait_below(h, 64); /* their fds back before more */
  }
  engine_wait_below(h, 1);
  int fb = connect_tcp(port), fc = connect_tcp(port);
  deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (rk_listener_conns(h, lid, NULL, 0) < 3) {
    CHECK(now_ms() < deadline, "three connections are never listed");
    sleep_ms(2);
  }
  uint32_t all[3];
  CHECK(rk_listener_conns(h, lid, rec, 3) == 3, "three open");
  for (int i = 0; i < 3; i++)
    all[i] = rec[i * RK_CONN_WORDS];
  CHECK(all[0] == a && all[1] > a + 16000 && all[2] > all[1],
        "oldest first: %u %u %u (the first %u)", all[0], all[1], all[2], a);
  CHECK((all[1] % 16384) < (a % 16384) || (all[1] % 16384) == (a % 16384),
        "the second is walked before the first: bucket %u, the first's %u",
        all[1] % 16384, a % 16384);
  for (int max = 1; max <= 2; max++) {
    memset(rec, 0xff, sizeof rec);
    CHECK(rk_listener_conns(h, lid, rec, max) == 3, "three open (max %d)", max);
    for (int i = 0; i < max; i++)
      CHECK(rec[i * RK_CONN_WORDS] == all[i], "max %d: record %d is %u, not %u",
            max, i, rec[i * RK_CONN_WORDS], all[i]);
    CHECK(rec[max * RK_CONN_WORDS] == 0xffffffffu, "max %d: wrote past it", max);
  }
  close(fa);
  close(fb);
  close(fc);
  engine_wait_idle(h);
  engine_end(&pump);
  server_stop(&echo);
}

/* rk_listener_dup: a second listener adopts the first one's socket, the
 * first closes, and clients that queue on the socket before the second
 * starts accepting are all served (none is reset with the first's close). */
static void t_listener_dup(void) {
  enum { N = 8 };
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  int32_t old = listen_to(h, echo.port, NULL);
  int port = rk_listener_port(h, old);
  int fd = rk_listener_dup(h, old);
  CHECK(fd > 2, "rk_listener_dup: %d %s", fd, rk_err_name(fd));
  CHECK(local_port(fd) == port, "the duplicate is bound to %d, not %d",
        local_port(fd), port);
  rk_listen_opts_t o = {.events = RK_EVMASK_ALL, .flags = RK_LISTEN_ADOPT,
                        .adopt_fd = fd};
  int32_t lid = rk_listen(h, "127.0.0.1", port, &o);
  CHECK(lid > 0, "rk_listen (adopt): %d %s", lid, rk_err_name(lid));
  close(fd); /* the new listener holds its own */
  CHECK_RC(rk_listener_set_target(h, lid, "127.0.0.1", echo.port,
                                  RK_FAMILY_ANY, 5000, NULL),
           "rk_listener_set_target");
  CHECK_RC(rk_listener_close(h, old), "rk_listener_close");
  CHECK(rk_listener_dup(h, old) == -ENOENT, "a closing listener gives no fd");
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (rk_listener_port(h, old) != -ENOENT) { /* its fd closed, freed */
    CHECK(now_ms() < deadline, "the old listener is never freed");
    sleep_ms(2);
  }
  int c[N];
  for (int i = 0; i < N; i++) { /* queued: nobody accepts yet */
    c[i] = connect_tcp(port);
    write_all(c[i], "hello", 5);
  }
  CHECK_RC(rk_listener_start(h, lid), "rk_listener_start");
  for (int i = 0; i < N; i++) {
    uint8_t got[5];
    read_exact(c[i], got, 5);
    CHECK(memcmp(got, "hello", 5) == 0, "client %d: echo differs", i);
    close(c[i]);
  }
  CHECK(rk_listener_dup(RK_EBADHANDLE, lid) == RK_EBADHANDLE, "bad handle");
  CHECK_RC(rk_listener_close(h, lid), "rk_listener_close");
  engine_wait_idle(h);
  engine_end(&pump);
  server_stop(&echo);
}

/* A child forked by the host process holds a copy of every fd until it
 * execs or exits, so the worker's close() of a connection's socket does not
 * take it out of the epoll set: the bytes and FIN that reach a freed
 * connection's sockets afterwards must find no registration naming it
 * (under ASan, a use-after-free otherwise). */
static void t_fork_holds_fds(void) {
  enum { N = 16 };
  int bport = 0;
  int bl = listen_tcp(&bport); /* the backend: this thread, by hand */
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  rk_listen_opts_t o = {.events = RK_EVMASK_ALL, .idle_timeout_ms = 100};
  int32_t lid = listen_to(h, bport, &o);
  int port = rk_listener_port(h, lid);
  int c[N], b[N];
  for (int i = 0; i < N; i++) {
    c[i] = connect_tcp(port);
    write_all(c[i], "hello", 5);
    b[i] = accept4(bl, NULL, NULL, SOCK_CLOEXEC);
    CHECK(b[i] >= 0, "accept: %s", strerror(errno));
    set_timeouts(b[i]);
    uint8_t got[5];
    read_exact(b[i], got, 5);
  }
  pid_t child = fork();
  CHECK(child >= 0, "fork: %s", strerror(errno));
  if (child == 0) { /* holds the copies, as a spawn does until its exec */
    struct timespec ts = {0, 600 * 1000000L};
    nanosleep(&ts, NULL);
    _exit(0);
  }
  /* idle: the worker ends each connection and closes both its sockets,
   * which the child keeps alive (no FIN goes out) */
  engine_wait_idle(h);
  sleep_ms(50); /* freed by now */
  for (int i = 0; i < N; i++) { /* bytes and a FIN to the freed ones */
    write_all(b[i], "late", 4);
    write_all(c[i], "late", 4);
    close(b[i]);
    close(c[i]);
  }
  sleep_ms(200);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
  close(bl);
  /* the engine still works */
  int32_t lid2 = listen_to(h, echo.port, NULL);
  int d = connect_tcp(rk_listener_port(h, lid2));
  write_all(d, "again", 5);
  uint8_t got[5];
  read_exact(d, got, 5);
  CHECK(memcmp(got, "again", 5) == 0, "echo after the child");
  close(d);
  engine_wait_idle(h);
  engine_end(&pump);
  server_stop(&echo);
}

/* OpenSSL's exit handler would free its global state while the workers may
 * still be in SSL_read or SSL_write (a host exits without stopping its
 * engines): the library loads OpenSSL without one. The harness runs itself
 * again as a fresh process (HARNESS_TLS_EXIT_CHILD: see main, before any
 * thread starts), which registers its own exit handler, loads OpenSSL
 * through the library and exits; handlers run last registered first, so
 * OpenSSL's cleanup, if it had one, would have run before ours, and
 * OPENSSL_init_crypto says 0 once it has. (A forked child of this
 * threaded process could hang in dlopen: it must exec.) */
#define TLS_EXIT_CHILD_ENV "HARNESS_TLS_EXIT_CHILD"

static void tls_exit_check(void) {
  void *crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_NOLOAD);
  if (crypto == NULL)
    _exit(4); /* loaded by the library: it must still be here */
  int (*init)(uint64_t, const void *) = NULL;
  *(void **)&init = dlsym(crypto, "OPENSSL_init_crypto");
  /* OPENSSL_INIT_BASE_ONLY: after a cleanup, 0 and no error raised */
  _exit(init != NULL && init(0x00040000L, NULL) == 1 ? 0 : 3);
}

/* The fresh process's part: exits through exit(), so the handlers run. */
static int tls_exit_child(void) {
  atexit(tls_exit_check);
  if (!rk_tls_load(NULL, NULL, 0))
    _exit(6);
  char err[256];
  if (rk_tls_client_ctx(NULL, 1, err, sizeof err) <= 0)
    _exit(5);
  exit(0);
}

extern char **environ;

/* Run `fn` in a forked child, with `extra` (a "NAME=value" entry, or
 * NULL) put into its environment first; or with `fn` NULL, this harness
 * again as a fresh process (exec: its own libraries and exit handlers; not
 * under qemu-user without binfmt), with `extra` added to its environment.
 * The child's exit status (or 256 + the signal that ended it). */
static int run_child(int (*fn)(void), const char *extra) {
  char self[4096];
  char **envp = NULL;
  if (fn == NULL) { /* what execve needs, made before the fork */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
    self[n] = '\0';
    size_t count = 0;
    while (environ[count] != NULL)
      count++;
    envp = calloc(count + 2, sizeof *envp);
    CHECK(envp != NULL, "calloc");
    memcpy(envp, environ, count * sizeof *envp);
    envp[count] = (char *)extra;
  }
  pid_t child = fork();
  CHECK(child >= 0, "fork: %s", strerror(errno));
  if (child == 0) {
    if (fn != NULL) {
      if (extra != NULL)
        putenv((char *)extra);
      _exit(fn());
    }
    char *argv[] = {self, NULL};
    execve(self, argv, envp);
    _exit(127);
  }
  free(envp);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 256 + WTERMSIG(status);
}

static void t_tls_no_exit_cleanup(void) {
  if (!rk_tls_load(NULL, NULL, 0))
    return; /* no OpenSSL here: nothing to check */
  int st = run_child(NULL, TLS_EXIT_CHILD_ENV "=1");
  CHECK(st < 256, "the child died (signal %d)", st - 256);
  CHECK(st != 3, "OpenSSL cleaned itself up at exit");
  CHECK(st == 0, "the child exited with %d", st);
}

/* Whether malloc is glibc's own (a sanitizer brings its own allocator). */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define HARNESS_GLIBC_MALLOC 1
#endif

/* t_malloc_tune's child (the harness itself never calls rk_malloc_tune):
 * rk_malloc_tune twice, then (where it took effect) what glibc's malloc
 * does with hook-batch-sized blocks. Exits with 10 * the first call's
 * result + the second's, or 50 + what went wrong. */
static int malloc_tune_child(void) {
  int first = rk_malloc_tune(), second = rk_malloc_tune();
#ifdef HARNESS_GLIBC_MALLOC
  if (first == 1) {
    enum { BLOCK = 256 * 1024, BLOCKS = 64 };
    struct mallinfo2 before = mallinfo2();
    void *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++)
      if ((blocks[i] = malloc(BLOCK)) == NULL)
        return 51;
    for (int i = 0; i < BLOCK; i += 4096) /* touched, as a copy would */
      ((volatile char *)blocks[0])[i] = 1;
    struct mallinfo2 used = mallinfo2();
    if (used.hblks != before.hblks)
      return 52; /* a block was mapped on its own */
    for (int i = BLOCKS - 1; i >= 0; i--)
      free(blocks[i]);
    struct mallinfo2 after = mallinfo2();
    if (after.arena < (size_t)BLOCK * BLOCKS)
      return 53; /* the freed top went back to the system */
  }
#endif
  return 10 * first + second;
}

static void t_malloc_tune(void) {
  int plain = run_child(malloc_tune_child, NULL);
  int kept = run_child(malloc_tune_child, "GLIBC_TUNABLES=glibc.malloc.perturb=0");
#ifdef HARNESS_GLIBC_MALLOC
  CHECK(plain == 10, "a child: exit %d, want 10 (set, then once only)",
        plain);
#elif defined(__GLIBC__) /* a sanitizer's malloc: glibc's settings, unused */
  CHECK(plain == 0 || plain == 10, "a child: exit %d", plain);
#else /* musl: nothing to set */
  CHECK(plain == 0, "a child: exit %d, want 0", plain);
#endif
  CHECK(kept == 0, "with the operator's GLIBC_TUNABLES: exit %d, want 0", kept);
}

/* 64 clients on 8 threads through a listener to an echo backend; every
 * byte checked, every connection's events and counters checked. */
static void t_relay_many_clients(void) {
  enum { N = 64, THREADS = 8 };
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  int32_t lid = listen_to(h, echo.port, NULL);
  poller_t poller = {.h = h, .lid = lid, .pump = &pump};
  pthread_t pt = spawn(poller_main, &poller);

  stream_t ss[N];
  memset(ss, 0, sizeof ss);
  for (int i = 0; i < N; i++)
    stream_random(&ss[i], 100 + (uint64_t)i, 0);
  clients_run(ss, N, THREADS, rk_listener_port(h, lid));
  for (int i = 0; i < N; i++)
    CHECK(ss[i].eof && ss[i].got == ss[i].exp_len,
          "client %d: got %zu of %zu bytes, err %s", i, ss[i].got,
          ss[i].exp_len, strerror(ss[i].err));

  pump_wait_count(&pump, RK_EV_CLOSED, lid, N);
  atomic_store(&poller.stop, 1);
  join(pt);
  int32_t ids[N];
  int ports[N];
  CHECK(pump_accepted(&pump, lid, ids, ports, N) == N, "accept events");
  for (int i = 0; i < N; i++) {
    stream_t *s = stream_by_port(ss, N, ports[i]);
    uint32_t rec[RK_EVENT_WORDS];
    pump_get(&pump, RK_EV_CONNECTED, ids[i], rec);
    expect_closed(&pump, ids[i], RK_END_DONE, rec);
    CHECK(rec[3] == 0 && rec[2] == (uint32_t)lid, "err %d aux %u",
          (int32_t)rec[3], rec[2]);
    for (int w = 8; w < 16; w += 2)
      CHECK(rec_u64(rec, w) == s->out_len,
            "conn %d counter %d is %llu, sent %zu", ids[i], (w - 8) / 2,
            (unsigned long long)rec_u64(rec, w), s->out_len);
  }
  engine_wait_idle(h);
  CHECK(rk_listener_active(h, lid) == 0, "listener still has connections");
  double st[8];
  CHECK_RC(rk_engine_stats(h, st), "rk_engine_stats");
  CHECK(st[1] == N && st[2] == N && st[3] == 0, "accepted %g closed %g "
        "rejected %g", st[1], st[2], st[3]);
  /* the listener's own counters: every byte of every ended connection */
  uint64_t sent = 0;
  for (int i = 0; i < N; i++)
    sent += ss[i].out_len;
  uint32_t tot[RK_EVENT_WORDS];
  CHECK_RC(rk_listener_counters(h, lid, tot), "rk_listener_counters");
  CHECK(rec_u64(tot, 4) == N && rec_u64(tot, 6) == N &&
            rec_u64(tot, 8) == sent && rec_u64(tot, 10) == sent &&
            tot[12] >= 1 && tot[12] <= N && tot[13] == 0,
        "counters: accepted %llu ended %llu up %llu down %llu (sent %llu) "
        "peak %u open %u", (unsigned long long)rec_u64(tot, 4),
        (unsigned long long)rec_u64(tot, 6),
        (unsigned long long)rec_u64(tot, 8),
        (unsigned long long)rec_u64(tot, 10), (unsigned long long)sent,
        tot[12], tot[13]);
  CHECK(rk_listener_conns(h, lid, NULL, 0) == 0, "open connections listed");
  CHECK(rk_listener_conns(h, lid, NULL, -1) == -EINVAL, "max < 0");
  CHECK(rk_listener_conns(h, lid, NULL, 1) == -EINVAL, "no room");
  CHECK(rk_listener_conns(h, lid + 1000, NULL, 0) == -ENOENT, "no listener");
  CHECK(rk_listener_counters(h, lid + 1000, tot) == -ENOENT, "no listener");
  CHECK_RC(rk_listener_close(h, lid), "rk_listener_close");
  uint32_t drained[RK_EVENT_WORDS];
  pump_get(&pump, RK_EV_LISTENER_DRAINED, -1, drained);
  CHECK(drained[2] == (uint32_t)lid, "drained listener %u", drained[2]);
  CHECK(memcmp(drained + 4, tot + 4, 10 * sizeof *tot) == 0,
        "the drained record carries the final counters");
  engine_end(&pump);
  server_stop(&echo);
  for (int i = 0; i < N; i++)
    stream_free(&ss[i]);
  printf("  (stats poller: %ld rounds)\n", poller.rounds);
}

/* Relays to a backend that answers only after EOF, resets, or is not
 * there: each case is one row, run by t_relay_backend. The clients all
 * connect and send first, then each reads to the end; then every
 * connection's RK_EV_CLOSED is checked. */
enum {
  SEND_NOTHING,
  SEND_HELLO,          /* "hello" */
  SEND_AND_HALF_CLOSE, /* random bytes, shutdown(SHUT_WR), "got <n>\n" back */
};

typedef struct {
  const char *name;
  conn_fn backend;    /* NULL: the refused port */
  int clients;
  int send;           /* SEND_* */
  uint64_t salt;      /* of the random bytes */
  int client_errs[2]; /* the client's read ends with one of these */
  int reason;         /* RK_EV_CLOSED reason, */
  int32_t errs[2];    /* and its error: one of these */
  int connects;       /* 0: no RK_EV_CONNECTED may come */
} backend_case_t;

static const backend_case_t backend_cases[] = {
    /* the answer is sent after the backend saw EOF */
    {"relay propagates half-close and delivers the answer after it",
     halfclose_fn, 4, SEND_AND_HALF_CLOSE, 200, {0, 0}, RK_END_DONE, {0, 0},
     1},
    /* the relay ends as a reset and resets the client */
    {"relay ends as a reset when the backend resets", reset_fn, 6, SEND_HELLO,
     0, {ECONNRESET, 0}, RK_END_RESET, {-ECONNRESET, -EPIPE}, 1},
    /* the client's connection ends */
    {"relay reports a refused backend as CONNECT_FAILED", NULL, 6,
     SEND_NOTHING, 0, {0, ECONNRESET}, RK_END_CONNECT_FAILED,
     {-ECONNREFUSED, -ECONNREFUSED}, 0},
};

static void t_relay_backend(const void *row) {
  const backend_case_t *c = row;
  enum { MAX = 8 };
  const int n = c->clients;
  CHECK(n <= MAX, "%d clients, at most %d", n, MAX);
  server_t back;
  if (c->backend != NULL)
    server_start(&back, c->backend);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  int32_t lid = listen_to(h, c->backend != NULL ? back.port : g_dead_port,
                          NULL);
  int fds[MAX];
  char want[MAX][64];
  int wl[MAX];
  for (int i = 0; i < n; i++) {
    fds[i] = connect_tcp(rk_listener_port(h, lid));
    wl[i] = 0;
    if (c->send == SEND_HELLO)
      write_all(fds[i], "hello", 5);
    if (c->send == SEND_AND_HALF_CLOSE) {
      uint64_t r = seed_for(c->salt + (uint64_t)i);
      size_t len = 1 + rnd_below(&r, 100000);
      uint8_t *data = random_bytes(len, &r, 0);
      write_all(fds[i], data, len);
      free(data);
      CHECK(shutdown(fds[i], SHUT_WR) == 0, "shutdown: %s", strerror(errno));
      wl[i] = snprintf(want[i], sizeof want[i], "got %zu\n", len);
    }
  }
  for (int i = 0; i < n; i++) {
    char got[64];
    int err;
    size_t gl = read_to_end(fds[i], (uint8_t *)got, sizeof got, &err);
    CHECK(gl == (size_t)wl[i] && memcmp(got, want[i], gl) == 0 &&
              (err == c->client_errs[0] || err == c->client_errs[1]),
          "client %d: %zu bytes \"%.*s\", expected \"%.*s\", err %s", i, gl,
          (int)gl, got, wl[i], want[i], strerror(err));
    close(fds[i]);
  }
  pump_wait_count(&pump, RK_EV_CLOSED, lid, (size_t)n);
  int32_t ids[MAX];
  CHECK(pump_accepted(&pump, lid, ids, NULL, MAX) == (size_t)n,
        "accept events");
  for (int i = 0; i < n; i++) {
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&pump, ids[i], c->reason, rec);
    int32_t e = (int32_t)rec[3];
    CHECK(e == c->errs[0] || e == c->errs[1], "err %s", rk_err_name(e));
    if (!c->connects) {
      pthread_mutex_lock(&pump.mu);
      CHECK(pump_find_locked(&pump, RK_EV_CONNECTED, ids[i]) == NULL,
            "RK_EV_CONNECTED for a refused connect");
      pthread_mutex_unlock(&pump.mu);
    }
  }
  engine_end(&pump);
  if (c->backend != NULL)
    server_stop(&back);
}

/* A relay where no byte moves for the listener's idle timeout ends with
 * RK_END_IDLE_TIMEOUT; one that keeps moving does not. */
static void t_relay_idle_timeout(void) {
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  rk_listen_opts_t opts = {.idle_timeout_ms = 300, .events = RK_EVMASK_ALL};
  int32_t lid = listen_to(h, echo.port, &opts);
  int port = rk_listener_port(h, lid);
  int idle = connect_tcp(port), busy = connect_tcp(port);
  int64_t t0 = now_ms();
  uint8_t buf[8];
  write_all(idle, "ping", 4);
  read_exact(idle, buf, 4);
  /* the busy one moves a byte every 50 ms for 600 ms */
  for (int i = 0; i < 12; i++) {
    write_all(busy, "x", 1);
    read_exact(busy, buf, 1);
    sleep_ms(50);
  }
  int err;
  size_t n = read_to_end(idle, buf, sizeof buf, &err);
  int64_t took = now_ms() - t0;
  CHECK(n == 0 && err == 0, "idle client: %zu bytes, %s", n, strerror(err));
  CHECK(took >= 250, "idle connection ended after %lld ms", (long long)took);
  int32_t ids[2];
  int ports[2];
  CHECK(pump_accepted(&pump, lid, ids, ports, 2) == 2, "accept events");
  int32_t idle_id = ports[0] == local_port(busy) ? ids[1] : ids[0];
  int32_t busy_id = idle_id == ids[0] ? ids[1] : ids[0];
  uint32_t rec[RK_EVENT_WORDS];
  expect_closed(&pump, idle_id, RK_END_IDLE_TIMEOUT, rec);
  CHECK((int32_t)rec[3] == -ETIMEDOUT && rec_u64(rec, 8) == 4 &&
            rec_u64(rec, 14) == 4,
        "err %d, counters %llu %llu", (int32_t)rec[3],
        (unsigned long long)rec_u64(rec, 8),
        (unsigned long long)rec_u64(rec, 14));
  double st[8];
  CHECK(rk_conn_stats(h, busy_id, st) == 0 && st[6] == 1,
        "the busy connection is gone or not relaying");
  close(idle);
  close(busy);
  expect_closed(&pump, busy_id, RK_END_DONE, NULL);
  engine_end(&pump);
  server_stop(&echo);
}

/* rk_conn_close from a thread of its own while data flows both ways:
 * graceful closes flush everything read, aborts cut at once; every
 * connection ends exactly once with RK_END_CLOSED. */
typedef struct {
  int32_t h, lid;
  pump_t *pump;
  int n;
} closer_t;

static void *closer_main(void *arg) {
  closer_t *c = arg;
  int32_t ids[64];
  pump_wait_count(c->pump, RK_EV_ACCEPT, c->lid, (size_t)c->n);
  CHECK(pump_accepted(c->pump, c->lid, ids, NULL, 64) == (size_t)c->n,
        "accept events");
  for (int i = 0; i < c->n; i++) {
    /* wait until bytes flow both ways */
    int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
    double st[8];
    do {
      CHECK(now_ms() < deadline, "no bytes through connection %d", ids[i]);
      CHECK_RC(rk_conn_stats(c->h, ids[i], st), "rk_conn_stats");
      sleep_ms(1);
    } while (st[1] == 0 || st[3] == 0);
    CHECK_RC(rk_conn_close(c->h, ids[i],
                           i % 2 ? RK_CLOSE_ABORT : RK_CLOSE_GRACEFUL),
             "rk_conn_close");
  }
  return NULL;
}

static void t_relay_close_while_flowing(void) {
  enum { N = 12 };
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  int32_t lid = listen_to(h, echo.port, NULL);
  poller_t poller = {.h = h, .lid = lid, .pump = &pump};
  pthread_t pt = spawn(poller_main, &poller);
  closer_t closer = {h, lid, &pump, N};
  pthread_t ct = spawn(closer_main, &closer);
  uint64_t r = seed_for(300);
  size_t len = 2 << 20;
  uint8_t *data = random_bytes(len, &r, 0);
  stream_t ss[N];
  memset(ss, 0, sizeof ss);
  for (int i = 0; i < N; i++)
    ss[i] = (stream_t){.fd = -1, .out = data, .out_len = len, .exp = data,
                       .exp_len = len, .rng = seed_for(301 + (uint64_t)i),
                       .max_chunk = 32768, .endless = 1};
  clients_run(ss, N, 2, rk_listener_port(h, lid));
  join(ct);
  pump_wait_count(&pump, RK_EV_CLOSED, lid, N);
  atomic_store(&poller.stop, 1);
  join(pt);
  int32_t ids[N];
  CHECK(pump_accepted(&pump, lid, ids, NULL, N) == N, "accept events");
  for (int i = 0; i < N; i++) {
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&pump, ids[i], RK_END_CLOSED, rec);
    CHECK(rec[3] == 0, "err %d", (int32_t)rec[3]);
    if (i % 2 == 0) /* graceful: what was read was written */
      CHECK(rec_u64(rec, 8) == rec_u64(rec, 10) &&
                rec_u64(rec, 12) == rec_u64(rec, 14),
            "graceful close of %d lost bytes: %llu/%llu %llu/%llu", ids[i],
            (unsigned long long)rec_u64(rec, 8),
            (unsigned long long)rec_u64(rec, 10),
            (unsigned long long)rec_u64(rec, 12),
            (unsigned long long)rec_u64(rec, 14));
  }
  engine_end(&pump);
  server_stop(&echo);
  free(data);
}

/* rk_relay_fds on socketpairs (both ways, 8 relays made from 2 threads),
 * on pipes (one way), with RK_RELAY_KEEP_FDS, and with an idle timeout. */
typedef struct {
  int32_t h;
  stream_t *ss;
  int n;
  server_t *pool;
} fdrelay_t;

static void *fdrelay_main(void *arg) {
  fdrelay_t *f = arg;
  for (int i = 0; i < f->n; i++) {
    int a[2], b[2];
    socketpair_or_die(a);
    socketpair_or_die(b);
    int32_t id = rk_relay_fds(f->h, a[1], a[1], b[0], b[0], NULL);
    CHECK(id > 0, "rk_relay_fds: %d %s", id, rk_err_name(id));
    f->ss[i].id = id;
    f->ss[i].fd = a[0];
    server_adopt(f->pool, b[1], echo_fn);
  }
  streams_run(f->ss, f->n);
  return NULL;
}

typedef struct {
  int fd;
  const uint8_t *data;
  size_t len;
} pipe_writer_t;

static void *pipe_writer_main(void *arg) {
  pipe_writer_t *w = arg;
  uint64_t r = seed_for((uint64_t)w->fd);
  for (size_t off = 0; off < w->len;) {
    size_t n = 1 + rnd_below(&r, 40000);
    if (n > w->len - off)
      n = w->len - off;
    CHECK(rk_fd_write(w->fd, w->data + off, (int32_t)n) == (int32_t)n,
          "rk_fd_write");
    off += n;
  }
  CHECK_RC(rk_fd_close(w->fd), "rk_fd_close");
  return NULL;
}

static void t_relay_fds(void) {
  enum { N = 8 };
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  server_t pool;
  server_pool(&pool);

  /* socketpairs, both ways, echo on the far side */
  stream_t ss[N];
  memset(ss, 0, sizeof ss);
  for (int i = 0; i < N; i++)
    stream_random(&ss[i], 400 + (uint64_t)i, 0);
  fdrelay_t fr[2] = {{h, ss, N / 2, &pool}, {h, ss + N / 2, N / 2, &pool}};
  pthread_t ft[2] = {spawn(fdrelay_main, &fr[0]), spawn(fdrelay_main, &fr[1])};
  join(ft[0]);
  join(ft[1]);
  for (int i = 0; i < N; i++) {
    CHECK(ss[i].eof && ss[i].got == ss[i].exp_len, "relay %d: %zu of %zu, %s",
          i, ss[i].got, ss[i].exp_len, strerror(ss[i].err));
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&pump, ss[i].id, RK_END_DONE, rec);
    for (int w = 8; w < 16; w += 2)
      CHECK(rec_u64(rec, w) == ss[i].out_len, "counter %d: %llu of %zu",
            (w - 8) / 2, (unsigned long long)rec_u64(rec, w), ss[i].out_len);
  }

  /* pipes: a writer thread -> pipe -> relay -> pipe -> this thread */
  for (int i = 0; i < 3; i++) {
    int32_t in[2], out[2];
    CHECK_RC(rk_fd_pipe(in), "rk_fd_pipe");
    CHECK_RC(rk_fd_pipe(out), "rk_fd_pipe");
    int32_t id = rk_relay_fds(h, in[0], -1, -1, out[1], NULL);
    CHECK(id > 0, "rk_relay_fds(pipes): %d %s", id, rk_err_name(id));
    uint64_t r = seed_for(450 + (uint64_t)i);
    size_t len = 1 + rnd_below(&r, 400000);
    uint8_t *data = random_bytes(len, &r, 0);
    pipe_writer_t pw = {in[1], data, len};
    pthread_t wt = spawn(pipe_writer_main, &pw);
    uint8_t *got = malloc(len + 1);
    int err;
    size_t n = read_to_end(out[0], got, len + 1, &err);
    join(wt);
    CHECK(err == 0 && n == len && memcmp(got, data, len) == 0,
          "pipe relay: %zu of %zu bytes, %s", n, len, strerror(err));
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&pump, id, RK_END_DONE, rec);
    CHECK(rec_u64(rec, 8) == len && rec_u64(rec, 10) == len &&
              rec_u64(rec, 12) == 0,
          "pipe counters");
    close(out[0]);
    free(got);
    free(data);
  }

  /* RK_RELAY_KEEP_FDS: the fds stay open and blocking again */
  {
    int a[2], b[2];
    socketpair_or_die(a);
    socketpair_or_die(b);
    int32_t id = rk_relay_fds(h, a[1], a[1], b[0], b[0],
                              &(rk_relay_opts_t){.flags = RK_RELAY_KEEP_FDS});
    CHECK(id > 0, "rk_relay_fds(keep): %d", id);
    write_all(a[0], "abc", 3);
    uint8_t buf[4];
    read_exact(b[1], buf, 3);
    write_all(b[1], "defg", 4);
    read_exact(a[0], buf, 4);
    CHECK(memcmp(buf, "defg", 4) == 0, "keep relay data");
    shutdown(a[0], SHUT_WR);
    shutdown(b[1], SHUT_WR);
    expect_closed(&pump, id, RK_END_DONE, NULL);
    for (int k = 0; k < 2; k++) {
      int fd = k ? b[0] : a[1];
      int fl = fcntl(fd, F_GETFL);
      CHECK(fl >= 0 && !(fl & O_NONBLOCK), "kept fd %d: flags %d", fd, fl);
    }
    int err;
    CHECK(read_to_end(a[0], buf, sizeof buf, &err) == 0 && err == 0,
          "kept relay end");
    for (int k = 0; k < 2; k++) {
      close(a[k]);
      close(b[k]);
    }
  }

  /* an idle timeout of its own */
  {
    int a[2], b[2];
    socketpair_or_die(a);
    socketpair_or_die(b);
    int32_t id = rk_relay_fds(h, a[1], a[1], b[0], b[0],
                              &(rk_relay_opts_t){.idle_timeout_ms = 200});
    CHECK(id > 0, "rk_relay_fds(idle): %d", id);
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&pump, id, RK_END_IDLE_TIMEOUT, rec);
    uint8_t buf[4];
    int err;
    CHECK(read_to_end(a[0], buf, sizeof buf, &err) == 0 && err == 0,
          "idle relay end");
    close(a[0]);
    close(b[1]);
  }

  /* arguments that cannot relay */
  CHECK(rk_relay_fds(h, -1, -1, -1, -1, NULL) == -EINVAL, "no fds");
  CHECK(rk_relay_fds(h, 100000, -1, -1, 100001, NULL) == -EBADF, "bad fds");
  CHECK(rk_conn_close(h, 0x7ffffff0, RK_CLOSE_ABORT) == -ENOENT, "no conn");
  engine_end(&pump);
  server_stop(&pool);
  for (int i = 0; i < N; i++)
    stream_free(&ss[i]);
}

/* Every call a host may make on a connection id, made at once after
 * rk_relay_fds returns, from 4 threads at a time: the worker that takes
 * the new relay over must not race them. */
typedef struct {
  int32_t h;
  int n;
} quick_t;

static void *quick_main(void *arg) {
  quick_t *q = arg;
  for (int i = 0; i < q->n; i++) {
    int a[2], b[2];
    socketpair_or_die(a);
    socketpair_or_die(b);
    int32_t id = rk_relay_fds(
        q->h, a[1], a[1], b[0], b[0],
        &(rk_relay_opts_t){.flags = i % 3 == 0 ? RK_RELAY_HOOK_AB : 0});
    CHECK(id > 0, "rk_relay_fds: %d", id);
    double st[8];
    uint8_t buf[8];
    int r = rk_conn_stats(q->h, id, st);
    CHECK(r == 0 || r == -ENOENT, "rk_conn_stats: %d", r);
    r = rk_hook_return(q->h, 0, buf, 1, -1, 0); /* 0 is never a token */
    CHECK(r == -EINVAL, "rk_hook_return of no batch: %d", r);
    CHECK(rk_conn_peer(q->h, id, (char *)buf, sizeof buf) == -EAFNOSUPPORT,
          "rk_conn_peer of a socketpair");
    CHECK_RC(rk_conn_close(q->h, id, i % 2 ? RK_CLOSE_ABORT
                                           : RK_CLOSE_GRACEFUL),
             "rk_conn_close");
    close(a[0]);
    close(b[1]);
  }
  return NULL;
}

/* Pipe fds open in this process: *big those of 256 KiB (the size a
 * worker gives at most 32 of its pipes). Each pipe counts once (by its
 * write end). */
static int count_pipes(int *big) {
  int n = 0;
  *big = 0;
  DIR *d = opendir("/proc/self/fd");
  CHECK(d != NULL, "opendir /proc/self/fd: %s", strerror(errno));
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    int fd = atoi(de->d_name);
    char path[64], link[64];
    /* by name, not fstat: the fds are the workers' (no race to report) */
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(path, link, sizeof link - 1);
    if (de->d_name[0] == '.' || fd == dirfd(d) || k < 5 ||
        memcmp(link, "pipe:", 5) != 0 ||
        (fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY)
      continue;
    n++;
    if (fcntl(fd, F_GETPIPE_SZ) >= 256 * 1024)
      (*big)++;
  }
  closedir(d);
  return n;
}

/* N relays from a socketpair we fill to one nobody reads: each holds a
 * full pipe. Return how many pipes, big ones in *big. */
static int relays_holding_pipes(int32_t h, int n, int32_t *ids, int *ends,
                                int *big) {
  int before_big, before = count_pipes(&before_big);
  static uint8_t chunk[64 * 1024];
  for (int i = 0; i < n; i++) {
    int in[2], out[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) == 0 &&
              socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) == 0,
          "socketpair: %s", strerror(errno));
    ids[i] = rk_relay_fds(h, in[1], -1, -1, out[1], NULL);
    CHECK(ids[i] > 0, "rk_relay_fds: %d %s", ids[i], rk_err_name(ids[i]));
    fcntl(in[0], F_SETFL, O_NONBLOCK);
    ends[2 * i] = in[0];
    ends[2 * i + 1] = out[0]; /* never read */
  }
  /* keep writing until every relay's pipe is full and the sources too */
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  int pipes = 0;
  for (;;) {
    int more = 0;
    for (int i = 0; i < n; i++)
      if (write(ends[2 * i], chunk, sizeof chunk) > 0)
        more = 1;
    pipes = count_pipes(big) - before;
    *big -= before_big;
    if (!more && pipes >= n)
      return pipes;
    CHECK(now_ms() < deadline, "%d relays hold %d pipes", n, pipes);
    sleep_ms(5);
  }
}

static void t_relay_pipe_sizes(void) {
  enum { N = 80, M = 40 };
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL); /* two workers */
  int32_t ids[N];
  int ends[2 * N];
  int big;
  int pipes = relays_holding_pipes(h, N, ids, ends, &big);
  CHECK(pipes == N && big > 0 && big <= 2 * 32,
        "%d relays: %d pipes, %d of 256 KiB (want %d, at most 64)", N, pipes,
        big, N);
  /* their pipes still hold bytes: closed, not pooled - counted out */
  for (int i = 0; i < N; i++)
    CHECK_RC(rk_conn_close(h, ids[i], RK_CLOSE_ABORT), "rk_conn_close");
  for (int i = 0; i < N; i++)
    expect_closed(&pump, ids[i], RK_END_CLOSED, NULL);
  for (int i = 0; i < 2 * N; i++)
    close(ends[i]);
  int left_big, left = count_pipes(&left_big);
  /* a new wave gets big pipes again */
  int big2;
  int pipes2 = relays_holding_pipes(h, M, ids, ends, &big2);
  CHECK(pipes2 == M && big2 >= M / 2,
        "after %d closed (%d pipes left open): %d relays hold %d pipes, "
        "%d of 256 KiB",
        N, left, M, pipes2, big2);
  for (int i = 0; i < M; i++)
    CHECK_RC(rk_conn_close(h, ids[i], RK_CLOSE_ABORT), "rk_conn_close");
  for (int i = 0; i < M; i++)
    expect_closed(&pump, ids[i], RK_END_CLOSED, NULL);
  for (int i = 0; i < 2 * M; i++)
    close(ends[i]);
  engine_end(&pump);
  (void)left_big;
}

static void t_relay_calls_right_after_create(void) {
  enum { T = 4, PER = 25 };
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  quick_t q = {h, PER};
  pthread_t ts[T];
  for (int i = 0; i < T; i++)
    ts[i] = spawn(quick_main, &q);
  for (int i = 0; i < T; i++)
    join(ts[i]);
  pump_wait_count(&pump, RK_EV_CLOSED, -1, T * PER);
  engine_wait_idle(h);
  engine_end(&pump);
}

/* Listeners made, started, counted and closed from several threads while
 * the engine closes: each listener closes once (one RK_EV_LISTENER_CLOSED)
 * and rk_listen after the close fails with RK_ECLOSED. */
typedef struct {
  int32_t h;
  pthread_barrier_t *bar;
  int32_t *lids;
  int n;
  atomic_int *made;
} lcloser_t;

static void *lcloser_main(void *arg) {
  lcloser_t *c = arg;
  pthread_barrier_wait(c->bar);
  for (int i = 0; i < c->n; i++) {
    int32_t r = rk_listener_close(c->h, c->lids[i]);
    CHECK(r == 0 || r == -ENOENT, "rk_listener_close: %d", r);
    double st[8];
    CHECK_RC(rk_engine_stats(c->h, st), "rk_engine_stats");
    r = rk_listener_active(c->h, c->lids[i]);
    CHECK(r == 0 || r == -ENOENT, "rk_listener_active: %d", r);
  }
  /* and new ones, until the engine is closed */
  for (;;) {
    int32_t lid = rk_listen(c->h, "127.0.0.1", 0, NULL);
    if (lid == RK_ECLOSED)
      return NULL;
    CHECK(lid > 0, "rk_listen: %d", lid);
    atomic_fetch_add(c->made, 1);
    int32_t r = rk_listener_set_target(c->h, lid, "127.0.0.1", 9, 0, 0, NULL);
    CHECK(r == 0 || r == -ENOENT, "rk_listener_set_target: %d", r);
    r = rk_listener_start(c->h, lid);
    CHECK(r == 0 || r == -ENOENT || r == -EINVAL, "rk_listener_start: %d", r);
    sleep_ms(1);
  }
}

static void t_listeners_close_concurrently(void) {
  enum { L = 24, T = 3 };
  int32_t h = rk_engine_new(2, 0);
  CHECK(h >= 0, "rk_engine_new");
  int32_t lids[L];
  for (int i = 0; i < L; i++) {
    lids[i] = rk_listen(h, "127.0.0.1", 0, NULL);
    CHECK(lids[i] > 0, "rk_listen");
    CHECK_RC(rk_listener_set_target(h, lids[i], "127.0.0.1", 9, 0, 0, NULL),
             "set_target");
    if (i % 2 == 0)
      CHECK_RC(rk_listener_start(h, lids[i]), "rk_listener_start");
  }
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, T + 1);
  atomic_int made = 0;
  lcloser_t cs[T];
  pthread_t ts[T];
  for (int i = 0; i < T; i++) {
    cs[i] = (lcloser_t){h, &bar, lids, L, &made};
    ts[i] = spawn(lcloser_main, &cs[i]);
  }
  pthread_barrier_wait(&bar);
  sleep_ms(5);
  CHECK_RC(rk_engine_close(h), "rk_engine_close");
  for (int i = 0; i < T; i++)
    join(ts[i]);
  pthread_barrier_destroy(&bar);
  pump_t pump;
  pump_init(&pump, h, NULL, NULL);
  pump_drain_now(&pump);
  pthread_mutex_lock(&pump.mu);
  for (int i = 0; i < L; i++) {
    size_t k = 0;
    for (size_t j = 0; j < pump.n; j++)
      k += pump.recs[j][0] == RK_EV_LISTENER_CLOSED &&
           pump.recs[j][2] == (uint32_t)lids[i];
    CHECK(k == 1, "listener %d closed %zu times", lids[i], k);
  }
  pthread_mutex_unlock(&pump.mu);
  CHECK_RC(rk_engine_free(h), "rk_engine_free");
  pump_free(&pump);
  printf("  (%d listeners made meanwhile)\n", atomic_load(&made));
}

/* What TcpProxy.abort() does: rk_listener_close, then rk_listener_abort
 * at once, while the workers detach. The abort must not revive a listener
 * whose last reference is being dropped. */
static void t_listener_close_then_abort(void) {
  enum { L = 150 };
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  for (int i = 0; i < L; i++) {
    int32_t lid = listen_to(h, echo.port, NULL);
    int fd = -1;
    if (i % 10 == 0) { /* some with a live connection */
      fd = connect_tcp(rk_listener_port(h, lid));
      pump_get(&pump, RK_EV_CONNECTED, -1, (uint32_t[RK_EVENT_WORDS]){0});
    }
    CHECK_RC(rk_listener_close(h, lid), "rk_listener_close");
    int32_t r = rk_listener_abort(h, lid);
    CHECK(r == 0 || r == -ENOENT, "rk_listener_abort: %d", r);
    if (fd >= 0)
      close(fd);
    uint32_t rec[RK_EVENT_WORDS];
    pump_get(&pump, RK_EV_LISTENER_DRAINED, -1, rec);
    pthread_mutex_lock(&pump.mu);
    pump.n = 0; /* forget this listener's events */
    pthread_mutex_unlock(&pump.mu);
    CHECK(rec[2] == (uint32_t)lid, "drained %u, expected %d", rec[2], lid);
  }
  engine_end(&pump);
  server_stop(&echo);
}

/* rk_connect_fd to a numeric address, to a name (the resolver thread) and
 * to a refused port, from several threads; a listener whose target is a
 * name. */
typedef struct {
  int32_t h;
  int port;
  const char *host;
  int32_t id;
} connector_t;

static void *connector_main(void *arg) {
  connector_t *c = arg;
  c->id = rk_connect_fd(c->h, c->host, c->port, RK_FAMILY_ONLY_V4, 5000, NULL);
  CHECK(c->id > 0, "rk_connect_fd: %d %s", c->id, rk_err_name(c->id));
  return NULL;
}

static void t_connect_fd_and_names(void) {
  enum { N = 8 };
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  connector_t cs[N];
  pthread_t ts[N];
  for (int i = 0; i < N; i++) {
    cs[i] = (connector_t){h, i % 4 == 3 ? g_dead_port : echo.port,
                          i % 2 ? "localhost" : "127.0.0.1", 0};
    ts[i] = spawn(connector_main, &cs[i]);
  }
  for (int i = 0; i < N; i++)
    join(ts[i]);
  for (int i = 0; i < N; i++) {
    uint32_t rec[RK_EVENT_WORDS];
    pump_get(&pump, RK_EV_FD_CONNECTED, cs[i].id, rec);
    if (cs[i].port == g_dead_port) {
      CHECK((int32_t)rec[2] == -1 && (int32_t)rec[3] == -ECONNREFUSED,
            "refused connect_fd: fd %d err %d", (int32_t)rec[2],
            (int32_t)rec[3]);
      continue;
    }
    int fd = (int)rec[2];
    CHECK(fd >= 0, "connect_fd %d: err %s", cs[i].id,
          rk_err_name((int32_t)rec[3]));
    uint8_t buf[8];
    CHECK(rk_fd_write(fd, (const uint8_t *)"hi", 2) == 2, "write");
    /* the fd is non-blocking: rk_fd_read waits for it */
    for (int got = 0; got < 2;) {
      int32_t k = rk_fd_read(fd, buf + got, 2 - got);
      CHECK(k > 0, "rk_fd_read: %d", k);
      got += k;
    }
    CHECK(memcmp(buf, "hi", 2) == 0, "echo through connect_fd");
    CHECK_RC(rk_fd_shutdown_write(fd), "rk_fd_shutdown_write");
    CHECK(rk_fd_read(fd, buf, sizeof buf) == 0, "EOF");
    CHECK_RC(rk_fd_close(fd), "rk_fd_close");
  }
  /* a listener whose target is a name */
  int32_t lid = rk_listen(h, "127.0.0.1", 0, NULL);
  CHECK(lid > 0, "rk_listen");
  CHECK_RC(rk_listener_set_target(h, lid, "localhost", echo.port,
                                  RK_FAMILY_ONLY_V4, 5000, NULL),
           "rk_listener_set_target");
  CHECK_RC(rk_listener_start(h, lid), "rk_listener_start");
  stream_t ss[4];
  memset(ss, 0, sizeof ss);
  for (int i = 0; i < 4; i++)
    stream_random(&ss[i], 500 + (uint64_t)i, 0);
  clients_run(ss, 4, 2, rk_listener_port(h, lid));
  for (int i = 0; i < 4; i++) {
    CHECK(ss[i].eof && ss[i].got == ss[i].exp_len, "client %d", i);
    stream_free(&ss[i]);
  }
  pump_wait_count(&pump, RK_EV_CLOSED, lid, 4);
  engine_end(&pump);
  server_stop(&echo);
}

/* ======================================================================== */
/* the event bridge                                                         */
/* ======================================================================== */

static void check_test_events(pump_t *p, int threads, int count) {
  pthread_mutex_lock(&p->mu);
  int next[64] = {0};
  for (size_t i = 0; i < p->n; i++) {
    if (p->recs[i][0] != RK_EV_TEST)
      continue;
    uint32_t t = p->recs[i][1], seq = p->recs[i][2];
    CHECK(t < (uint32_t)threads && seq == (uint32_t)next[t],
          "thread %u: event %u after %d", t, seq, next[t] - 1);
    next[t]++;
  }
  pthread_mutex_unlock(&p->mu);
  for (int t = 0; t < threads; t++)
    CHECK(next[t] == count, "thread %d: %d of %d events", t, next[t], count);
}

/* rk_test_post from 8 threads while another thread waits and drains:
 * every event arrives once, in order per posting thread. */
static void t_bridge_wait_drain(void) {
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  CHECK_RC(rk_test_post(h, 8, 2000), "rk_test_post");
  pump_wait_count(&pump, RK_EV_TEST, -1, 8 * 2000);
  check_test_events(&pump, 8, 2000);
  engine_end(&pump);
}

/* The notify callback fires on a posting thread after a drain emptied the
 * queue; a host thread woken by it drains everything. */
static atomic_int g_notify_calls, g_notify_on_main;
static pthread_mutex_t g_notify_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_notify_cv = PTHREAD_COND_INITIALIZER;
static int g_notify_flag;
static __thread int t_is_main;

static void notify_cb(void) {
  atomic_fetch_add(&g_notify_calls, 1);
  if (t_is_main)
    atomic_store(&g_notify_on_main, 1);
  pthread_mutex_lock(&g_notify_mu);
  g_notify_flag = 1;
  pthread_cond_signal(&g_notify_cv);
  pthread_mutex_unlock(&g_notify_mu);
}

typedef struct {
  pump_t *pump;
  size_t want;
} notified_t;

static void *notified_main(void *arg) {
  notified_t *n = arg;
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  for (;;) {
    pthread_mutex_lock(&n->pump->mu);
    size_t have = n->pump->n;
    pthread_mutex_unlock(&n->pump->mu);
    if (have >= n->want)
      return NULL;
    pthread_mutex_lock(&g_notify_mu);
    while (!g_notify_flag) {
      CHECK(now_ms() < deadline, "notify: %zu of %zu events", have, n->want);
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += 1;
      pthread_cond_timedwait(&g_notify_cv, &g_notify_mu, &ts);
    }
    g_notify_flag = 0;
    pthread_mutex_unlock(&g_notify_mu);
    pump_drain_now(n->pump); /* until empty: that re-arms the callback */
  }
}

static void t_bridge_notify(void) {
  int32_t h = rk_engine_new(2, 0);
  CHECK(h >= 0, "rk_engine_new");
  pump_t pump;
  pump_init(&pump, h, NULL, NULL);
  CHECK_RC(rk_engine_set_notify(h, notify_cb), "rk_engine_set_notify");
  notified_t nt = {&pump, 6 * 1500 * 2};
  pthread_t t = spawn(notified_main, &nt);
  CHECK_RC(rk_test_post(h, 6, 1500), "rk_test_post");
  sleep_ms(20);
  CHECK_RC(rk_test_post(h, 6, 1500), "rk_test_post"); /* joins the first */
  join(t);
  CHECK(pump.n == nt.want, "%zu events, expected %zu", pump.n, nt.want);
  int calls = atomic_load(&g_notify_calls);
  CHECK(calls >= 1 && !atomic_load(&g_notify_on_main),
        "notify calls %d, on main %d", calls, atomic_load(&g_notify_on_main));
  /* unregistered: no more calls */
  CHECK_RC(rk_engine_set_notify(h, NULL), "rk_engine_set_notify(NULL)");
  int before = atomic_load(&g_notify_calls);
  CHECK_RC(rk_test_post(h, 2, 100), "rk_test_post");
  CHECK_RC(rk_engine_close(h), "rk_engine_close"); /* joins the posters */
  CHECK(atomic_load(&g_notify_calls) == before, "notify after unregister");
  CHECK(pump_drain_now(&pump) == 200, "events after unregister");
  CHECK_RC(rk_engine_free(h), "rk_engine_free");
  pump_free(&pump);
  printf("  (notify: %d calls for %zu events)\n", calls, nt.want);
}

/* rk_engine_wake makes a blocked rk_engine_wait return at once. */
typedef struct {
  int32_t h;
  atomic_int returned;
  int32_t r;
} waiter_t;

static void *waiter_main(void *arg) {
  waiter_t *w = arg;
  w->r = rk_engine_wait(w->h, -1);
  atomic_store(&w->returned, 1);
  return NULL;
}

static void t_bridge_wake(void) {
  int32_t h = rk_engine_new(1, 0);
  CHECK(h >= 0, "rk_engine_new");
  waiter_t w = {.h = h};
  pthread_t t = spawn(waiter_main, &w);
  sleep_ms(50);
  CHECK(!atomic_load(&w.returned), "rk_engine_wait returned on its own");
  CHECK_RC(rk_engine_wake(h), "rk_engine_wake");
  join(t);
  CHECK(w.r == 0, "rk_engine_wait: %d", w.r);
  CHECK(rk_engine_wait(h, 10) == 0, "timed wait on an empty queue");
  CHECK_RC(rk_engine_close(h), "rk_engine_close");
  CHECK_RC(rk_engine_free(h), "rk_engine_free");
}

/* ======================================================================== */
/* closing an engine that is busy                                           */
/* ======================================================================== */

typedef struct {
  int32_t h;
  atomic_int made;
  int32_t ids[200];
  int keep[200][2]; /* our ends */
  int n;
} creator_t;

static void *creator_main(void *arg) {
  creator_t *c = arg;
  for (c->n = 0; c->n < 200;) {
    int a[2], b[2];
    socketpair_or_die(a);
    socketpair_or_die(b);
    int32_t id = rk_relay_fds(c->h, a[1], a[1], b[0], b[0], NULL);
    if (id == RK_ECLOSED) {
      for (int k = 0; k < 2; k++) {
        close(a[k]);
        close(b[k]);
      }
      break;
    }
    CHECK(id > 0, "rk_relay_fds: %d %s", id, rk_err_name(id));
    c->ids[c->n] = id;
    c->keep[c->n][0] = a[0];
    c->keep[c->n][1] = b[1];
    c->n++;
    atomic_store(&c->made, c->n);
    sleep_ms(1);
  }
  return NULL;
}

typedef struct {
  int32_t h;
  atomic_int rounds;
} spin_waiter_t;

/* rk_engine_wait in a loop until the handle is gone. */
static void *spin_waiter_main(void *arg) {
  spin_waiter_t *w = arg;
  for (;;) {
    int32_t r = rk_engine_wait(w->h, -1);
    if (r < 0) {
      CHECK(r == RK_EBADHANDLE, "rk_engine_wait: %d", r);
      return NULL;
    }
    atomic_fetch_add(&w->rounds, 1);
    sleep_ms(1);
  }
}

/* rk_engine_close while relays flow, relays are being made on another
 * thread and another blocks in rk_engine_wait: every connection posts
 * exactly one RK_EV_CLOSED (RK_END_ENGINE_CLOSED), every rk_relay_fds
 * either fails with RK_ECLOSED or made a relay that got its event, and
 * rk_engine_free returns the waiter. */
static void t_engine_close_while_busy(void) {
  enum { N = 8 };
  server_t echo, pool;
  server_start(&echo, echo_fn);
  server_pool(&pool);
  int32_t h = rk_engine_new(2, 0);
  CHECK(h >= 0, "rk_engine_new");
  spin_waiter_t sw = {.h = h};
  pthread_t wt = spawn(spin_waiter_main, &sw);
  int32_t lid = rk_listen(h, "127.0.0.1", 0, NULL);
  CHECK(lid > 0, "rk_listen");
  CHECK_RC(rk_listener_set_target(h, lid, "127.0.0.1", echo.port, 0, 5000,
                                  NULL),
           "set_target");
  CHECK_RC(rk_listener_start(h, lid), "rk_listener_start");

  /* endless streams (no half-close) of 1 MiB each: still flowing or
   * waiting for an end when the engine closes */
  uint64_t r = seed_for(600);
  size_t len = 1 << 20;
  uint8_t *data = random_bytes(len, &r, 0);
  stream_t ss[N + 4];
  memset(ss, 0, sizeof ss);
  for (int i = 0; i < N + 4; i++)
    ss[i] = (stream_t){.fd = -1, .out = data, .out_len = len, .exp = data,
                       .exp_len = len, .rng = seed_for(601 + (uint64_t)i),
                       .max_chunk = 16384, .endless = 1};
  client_t cl[3] = {{ss, N / 2, rk_listener_port(h, lid)},
                    {ss + N / 2, N / 2, rk_listener_port(h, lid)},
                    {ss + N, 4, 0}};
  int32_t relay_ids[4];
  for (int i = 0; i < 4; i++) {
    int a[2], b[2];
    socketpair_or_die(a);
    socketpair_or_die(b);
    relay_ids[i] = rk_relay_fds(h, a[1], a[1], b[0], b[0], NULL);
    CHECK(relay_ids[i] > 0, "rk_relay_fds");
    ss[N + i].fd = a[0];
    server_adopt(&pool, b[1], echo_fn);
  }
  pthread_t ct[3];
  for (int i = 0; i < 3; i++)
    ct[i] = spawn(client_main, &cl[i]);
  creator_t *cr = calloc(1, sizeof *cr);
  CHECK(cr != NULL, "out of memory");
  cr->h = h;
  pthread_t crt = spawn(creator_main, cr);

  /* close once bytes flow on every accepted connection */
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  for (;;) {
    double st[8];
    CHECK_RC(rk_engine_stats(h, st), "rk_engine_stats");
    if (st[1] >= N && atomic_load(&cr->made) >= 20)
      break;
    CHECK(now_ms() < deadline, "clients did not connect (%g)", st[1]);
    sleep_ms(5);
  }
  sleep_ms(50);
  CHECK_RC(rk_engine_close(h), "rk_engine_close");
  join(crt);
  {
    int a[2];
    socketpair_or_die(a);
    CHECK(rk_relay_fds(h, a[0], a[0], a[1], a[1], NULL) == RK_ECLOSED,
          "relay after close");
    for (int k = 0; k < 2; k++) { /* still the caller's, and blocking */
      int fl = fcntl(a[k], F_GETFL);
      CHECK(fl >= 0 && !(fl & O_NONBLOCK), "refused fd flags %d", fl);
      close(a[k]);
    }
  }
  CHECK(rk_connect_fd(h, "127.0.0.1", echo.port, 0, 0, NULL) == RK_ECLOSED,
        "connect_fd after close");
  CHECK(rk_listen(h, "127.0.0.1", 0, NULL) == RK_ECLOSED,
        "listen after close");

  /* every event is still there to drain */
  pump_t pump;
  pump_init(&pump, h, NULL, NULL);
  pump_drain_now(&pump);
  int32_t ids[N];
  CHECK(pump_accepted(&pump, lid, ids, NULL, N) == N, "accept events");
  for (int i = 0; i < N; i++)
    expect_closed(&pump, ids[i], RK_END_ENGINE_CLOSED, NULL);
  for (int i = 0; i < 4; i++)
    expect_closed(&pump, relay_ids[i], RK_END_ENGINE_CLOSED, NULL);
  for (int i = 0; i < cr->n; i++)
    expect_closed(&pump, cr->ids[i], RK_END_ENGINE_CLOSED, NULL);
  pthread_mutex_lock(&pump.mu);
  size_t total = pump_count_locked(&pump, RK_EV_CLOSED, -1, -1);
  pthread_mutex_unlock(&pump.mu);
  CHECK(total == (size_t)(N + 4 + cr->n), "%zu RK_EV_CLOSED, expected %d",
        total, N + 4 + cr->n);
  pump_get(&pump, RK_EV_LISTENER_CLOSED, -1, (uint32_t[RK_EVENT_WORDS]){0});
  CHECK_RC(rk_engine_free(h), "rk_engine_free");
  join(wt);
  CHECK(rk_engine_stats(h, (double[8]){0}) == RK_EBADHANDLE, "freed");
  for (int i = 0; i < 3; i++)
    join(ct[i]);
  for (int i = 0; i < cr->n; i++) {
    close(cr->keep[i][0]);
    close(cr->keep[i][1]);
  }
  printf("  (%d relays made before the close, waiter woke %d times)\n", cr->n,
         atomic_load(&sw.rounds));
  free(cr);
  pump_free(&pump);
  server_stop(&echo);
  server_stop(&pool);
  for (int i = 0; i < N + 4; i++)
    stream_free(&ss[i]);
  free(data);
}

/* ======================================================================== */
/* routing: held connections                                                */
/* ======================================================================== */

/* A client's first byte says what the decider does with it:
 *   C  CONNECT to the echo backend, to_b "PFX:", to_a "HELLO", consume 1
 *   R  CONNECT (RK_DECISION_RETRY) to a refused port, to_b "R1:", then on
 *      RK_HOLD_RETRY CONNECT to the echo backend, to_b "R2:", consume 1
 *   X  CLOSE with the reply "BYE\n"
 *   F  FILE: "FILE\n", then 50000 bytes of a file from offset 1000
 *   W  rk_hold_write "ACK", read on to "WHELLO", CONNECT consume 6, "W:" */
#define HOLD_DECIDERS 3

typedef struct {
  int32_t h, lid;
  int echo_port;
  const char *path;
  wq_t q[HOLD_DECIDERS];
  atomic_int decisions, retries, writes;
} router_t;

typedef struct {
  router_t *rt;
  int index;
} decider_t;

typedef struct {
  int32_t id;
  int stage;
} hstate_t;

static void router_event(void *ctx, const uint32_t *rec) {
  router_t *rt = ctx;
  if (rec[0] == RK_EV_HOLD) /* one connection, one decider thread */
    wq_push(&rt->q[rec[1] % HOLD_DECIDERS], rec);
}

static void decide(router_t *rt, int32_t id, int32_t action, int port,
                   int32_t consume, int retry, const char *to_b,
                   const char *to_a) {
  rk_decision_t o = {.action = action,
                     .flags = retry ? RK_DECISION_RETRY : 0,
                     .port = port,
                     .family = RK_FAMILY_ANY,
                     .connect_timeout_ms = 5000,
                     .idle_timeout_ms = -1,
                     .consume = (uint32_t)consume};
  if (id & 1) { /* every other one through rk_hold_submit */
    uint8_t buf[512] = {0};
    uint32_t lens[4] = {9, 0, (uint32_t)strlen(to_b), (uint32_t)strlen(to_a)};
    uint32_t size = RK_HOLD_OP_HEAD + sizeof o + sizeof lens + lens[0] +
                    lens[2] + lens[3];
    size = (size + 7) & ~7u;
    CHECK(size <= sizeof buf, "decision record of %u bytes", size);
    uint32_t head[4] = {RK_HOLD_OP_DECIDE, (uint32_t)id, size, 0};
    uint8_t *p = buf;
    memcpy(p, head, sizeof head);
    p += sizeof head;
    memcpy(p, &o, sizeof o);
    p += sizeof o;
    memcpy(p, lens, sizeof lens);
    p += sizeof lens;
    memcpy(p, "127.0.0.1", 9);
    p += 9;
    memcpy(p, to_b, lens[2]);
    p += lens[2];
    memcpy(p, to_a, lens[3]);
    /* a record for no connection first: skipped, the next one runs */
    uint8_t two[16 + sizeof buf];
    uint32_t none[4] = {RK_HOLD_OP_READ, 0x7ffffff0u, 16, 64};
    memcpy(two, none, sizeof none);
    memcpy(two + 16, buf, size);
    int32_t r = rk_hold_submit(rt->h, two, (int32_t)(16 + size));
    CHECK(r == 1, "rk_hold_submit carried out %d records, not 1", r);
  } else {
    CHECK_RC(rk_hold_decide(rt->h, id, "127.0.0.1", NULL, &o,
                            (const uint8_t *)to_b, (int32_t)strlen(to_b),
                            (const uint8_t *)to_a, (int32_t)strlen(to_a)),
             "rk_hold_decide");
  }
  atomic_fetch_add(&rt->decisions, 1);
}

static void *decider_main(void *arg) {
  decider_t *d = arg;
  router_t *rt = d->rt;
  hstate_t st[256];
  int nst = 0;
  uint32_t rec[RK_EVENT_WORDS];
  while (wq_pop(&rt->q[d->index], rec)) {
    int32_t id = (int32_t)rec[1];
    uint32_t flags = rec[4];
    CHECK(rec[2] == (uint32_t)rt->lid, "hold event of listener %u", rec[2]);
    hstate_t *s = NULL;
    for (int i = 0; i < nst && s == NULL; i++)
      if (st[i].id == id)
        s = &st[i];
    if (s == NULL) {
      CHECK(nst < 256, "too many held connections");
      s = &st[nst++];
      *s = (hstate_t){id, 0};
    }
    if (flags & RK_HOLD_FIRST) {
      static const uint8_t lo[4] = {127, 0, 0, 1};
      CHECK(rec[6] == AF_INET && rec[7] != 0 &&
                rec[3] == (uint32_t)rk_listener_port(rt->h, rt->lid) &&
                memcmp(&rec[12], lo, 4) == 0 && memcmp(&rec[8], lo, 4) == 0,
            "RK_HOLD_FIRST addresses: family %u port %u local port %u",
            rec[6], rec[7], rec[3]);
      CHECK_RC(rk_hold_read(rt->h, id, 64), "rk_hold_read");
      continue;
    }
    if (flags & RK_HOLD_RETRY) {
      CHECK(s->stage == 1, "retry in stage %d", s->stage);
      CHECK((int32_t)rec[3] == -ECONNREFUSED, "retry err %d",
            (int32_t)rec[3]);
      s->stage = 2;
      atomic_fetch_add(&rt->retries, 1);
      decide(rt, id, RK_DECIDE_CONNECT, rt->echo_port, 1, 0, "R2:", "");
      continue;
    }
    uint8_t small[2], buf[128];
    int32_t n = rk_hold_take(rt->h, id, small, sizeof small);
    CHECK(n == (int32_t)rec[5], "rk_hold_take: %d, event says %u", n, rec[5]);
    CHECK(rk_hold_take(rt->h, id, buf, sizeof buf) == n, "second take");
    CHECK(n >= 1 && n <= 64 && small[0] == buf[0], "held %d bytes", n);
    switch (buf[0]) {
    case 'C':
      decide(rt, id, RK_DECIDE_CONNECT, rt->echo_port, 1, 0, "PFX:", "HELLO");
      break;
    case 'R':
      CHECK(s->stage == 0, "R decided twice");
      s->stage = 1;
      decide(rt, id, RK_DECIDE_CONNECT, g_dead_port, 1, 1, "R1:", "");
      break;
    case 'X':
      decide(rt, id, RK_DECIDE_CLOSE, 0, 0, 0, "", "BYE\n");
      break;
    case 'F': {
      rk_decision_t o = {.action = RK_DECIDE_FILE, .idle_timeout_ms = -1,
                         .offset = 1000, .length = 50000};
      CHECK_RC(rk_hold_decide(rt->h, id, rt->path, NULL, &o, NULL, 0,
                              (const uint8_t *)"FILE\n", 5),
               "rk_hold_decide(FILE)");
      atomic_fetch_add(&rt->decisions, 1);
      break;
    }
    case 'W':
      if (s->stage == 0) {
        CHECK(n == 1, "W sent %d bytes before its ACK", n);
        CHECK_RC(rk_hold_write(rt->h, id, (const uint8_t *)"ACK", 3),
                 "rk_hold_write");
        atomic_fetch_add(&rt->writes, 1);
        s->stage = 1;
        CHECK_RC(rk_hold_read(rt->h, id, 6), "rk_hold_read");
      } else if (n < 6) {
        CHECK_RC(rk_hold_read(rt->h, id, 6), "rk_hold_read");
      } else {
        CHECK(n == 6 && (flags & RK_HOLD_FULL) &&
                  memcmp(buf, "WHELLO", 6) == 0,
              "W held %d bytes, flags %u", n, flags);
        decide(rt, id, RK_DECIDE_CONNECT, rt->echo_port, 6, 0, "W:", "");
      }
      break;
    default:
      CHECK(0, "unexpected first byte %d", buf[0]);
    }
  }
  return NULL;
}

typedef struct {
  int port;
  char kind;
  int index;
  const uint8_t *file; /* the file's bytes from offset 1000 */
  int local;
} hclient_t;

static void *hclient_main(void *arg) {
  hclient_t *c = arg;
  uint64_t r = seed_for(700 + (uint64_t)c->index);
  size_t plen = 1 + rnd_below(&r, c->index % 3 ? 20000 : 40);
  uint8_t *payload = random_bytes(plen, &r, 0);
  size_t cap = plen + 60000;
  uint8_t *want = malloc(cap), *got = malloc(cap);
  CHECK(want != NULL && got != NULL, "out of memory");
  size_t wl = 0;
  int fd = connect_tcp(c->port);
  c->local = local_port(fd);
  switch (c->kind) {
  case 'C':
  case 'R':
    write_all(fd, &c->kind, 1);
    write_all(fd, payload, plen);
    shutdown(fd, SHUT_WR);
    if (c->kind == 'C') {
      memcpy(want, "HELLOPFX:", 9);
      wl = 9;
    } else {
      memcpy(want, "R2:", 3);
      wl = 3;
    }
    memcpy(want + wl, payload, plen);
    wl += plen;
    break;
  case 'X':
    write_all(fd, "Xjunk", 5);
    memcpy(want, "BYE\n", 4);
    wl = 4;
    break;
  case 'F':
    write_all(fd, "F", 1);
    memcpy(want, "FILE\n", 5);
    memcpy(want + 5, c->file, 50000);
    wl = 50005;
    break;
  case 'W': {
    uint8_t ack[3];
    write_all(fd, "W", 1);
    read_exact(fd, ack, 3);
    CHECK(memcmp(ack, "ACK", 3) == 0, "hold_write reply");
    write_all(fd, "HELLO", 5);
    write_all(fd, payload, plen);
    shutdown(fd, SHUT_WR);
    memcpy(want, "W:", 2);
    memcpy(want + 2, payload, plen);
    wl = 2 + plen;
    break;
  }
  }
  int err;
  size_t gl = read_to_end(fd, got, cap, &err);
  CHECK(err == 0 && gl == wl && memcmp(got, want, wl) == 0,
        "%c client %d: %zu bytes (want %zu), first difference at %zu, err %s",
        c->kind, c->index, gl, wl,
        (size_t)({
          size_t k = 0;
          while (k < gl && k < wl && got[k] == want[k])
            k++;
          k;
        }),
        strerror(err));
  close(fd);
  free(payload);
  free(want);
  free(got);
  return NULL;
}

static void t_hold_routing(void) {
  enum { PER_KIND = 8, KINDS = 5, N = PER_KIND * KINDS };
  static const char kinds[KINDS] = {'C', 'R', 'X', 'F', 'W'};
  server_t echo;
  server_start(&echo, echo_fn);
  char path[] = "/tmp/relaykit-harness-XXXXXX";
  int ffd = mkstemp(path);
  CHECK(ffd >= 0, "mkstemp: %s", strerror(errno));
  uint64_t r = seed_for(650);
  uint8_t *file = random_bytes(200000, &r, 0);
  write_all(ffd, file, 200000);
  close(ffd);

  router_t *rt = calloc(1, sizeof *rt);
  CHECK(rt != NULL, "out of memory");
  for (int i = 0; i < HOLD_DECIDERS; i++)
    wq_init(&rt->q[i]);
  rt->echo_port = echo.port;
  rt->path = path;
  pump_t pump;
  int32_t h = engine_new(&pump, router_event, rt);
  rt->h = h;
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL,
                           .hold_timeout_ms = 10000};
  rt->lid = listen_to(h, 0, &opts);
  decider_t ds[HOLD_DECIDERS];
  pthread_t dt[HOLD_DECIDERS];
  for (int i = 0; i < HOLD_DECIDERS; i++) {
    ds[i] = (decider_t){rt, i};
    dt[i] = spawn(decider_main, &ds[i]);
  }
  hclient_t cs[N];
  pthread_t ct[N];
  for (int i = 0; i < N; i++) {
    cs[i] = (hclient_t){rk_listener_port(h, rt->lid), kinds[i % KINDS], i,
                        file + 1000, 0};
    ct[i] = spawn(hclient_main, &cs[i]);
  }
  for (int i = 0; i < N; i++)
    join(ct[i]);
  pump_wait_count(&pump, RK_EV_CLOSED, rt->lid, N);
  int32_t ids[N];
  int ports[N];
  CHECK(pump_accepted(&pump, rt->lid, ids, ports, N) == N, "accept events");
  for (int i = 0; i < N; i++) {
    hclient_t *c = NULL;
    for (int k = 0; k < N && c == NULL; k++)
      if (cs[k].local == ports[i])
        c = &cs[k];
    CHECK(c != NULL, "no client for port %d", ports[i]);
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&pump, ids[i], c->kind == 'X' ? RK_END_CLOSED : RK_END_DONE,
                  rec);
    CHECK(rec[3] == 0, "%c: err %d", c->kind, (int32_t)rec[3]);
    if (c->kind == 'F')
      CHECK(rec_u64(rec, 14) == 50005, "file bytes %llu",
            (unsigned long long)rec_u64(rec, 14));
  }
  CHECK(atomic_load(&rt->retries) == PER_KIND &&
            atomic_load(&rt->writes) == PER_KIND,
        "retries %d writes %d", atomic_load(&rt->retries),
        atomic_load(&rt->writes));
  /* the deciders first: a decider may still be returning from its last
   * call when the connection it decided has already ended */
  for (int i = 0; i < HOLD_DECIDERS; i++) {
    wq_stop(&rt->q[i]);
    join(dt[i]);
  }
  engine_end(&pump);
  for (int i = 0; i < HOLD_DECIDERS; i++)
    wq_free(&rt->q[i]);
  printf("  (%d decisions)\n", atomic_load(&rt->decisions));
  free(rt);
  unlink(path);
  free(file);
  server_stop(&echo);
}

/* An undecided connection ends after the listener's hold timeout; one
 * closed by the host while held ends with RK_END_CLOSED. */
/* TLS without a peer: loading, contexts and where a listener refuses TLS.
 * (TLS relays themselves are tested from TypeScript, with real clients.) */
static void t_tls_api(void) {
  /* (TLS on held listeners: t_tls_relay) */
  char why[512];
  int loaded = rk_tls_load(NULL, why, sizeof why);
  CHECK(loaded == 0 || loaded == 1, "rk_tls_load: %d", loaded);
  CHECK(rk_tls_load("/ignored/after/the/first/call", NULL, 0) == loaded,
        "the first load is final");
  char err[256];
  if (!loaded) {
    CHECK(strncmp(why, "native TLS needs libssl.so.3: ", 30) == 0, "%s", why);
    CHECK(rk_tls_server_ctx("x", "y", err, sizeof err) == RK_ENOTLS, "no TLS");
    CHECK(rk_tls_client_ctx(NULL, 1, err, sizeof err) == RK_ENOTLS, "no TLS");
    return;
  }
  CHECK(why[0] == '\0', "no reason when loaded: %s", why);
  int32_t r = rk_tls_server_ctx("not a certificate", "no key", err, sizeof err);
  CHECK(r == RK_ETLS, "garbage PEM: %d %s", r, rk_err_name(r));
  CHECK(strstr(err, "certificate is not PEM") != NULL, "%s", err);
  r = rk_tls_client_ctx("not a CA", 1, err, sizeof err);
  CHECK(r == -EINVAL && strstr(err, "no certificate") != NULL, "%d %s", r, err);
  int32_t ctx = rk_tls_client_ctx(NULL, 1, err, sizeof err); /* system roots */
  CHECK(ctx > 0, "client context: %d %s", ctx, err);
  double st[6];
  CHECK_RC(rk_tls_stats(st), "rk_tls_stats");
  CHECK(st[5] == 1, "loaded in the stats");

  int32_t h = rk_engine_new(1, 0);
  CHECK_RC(h, "rk_engine_new");
  int32_t l = rk_listen(h, "127.0.0.1", 0, NULL);
  CHECK_RC(l, "rk_listen");
  CHECK(rk_listener_set_tls(h, l, 999) == -ENOENT, "unknown context");
  CHECK(rk_listener_set_tls(h, 12345, ctx) == -ENOENT, "unknown listener");
  CHECK_RC(rk_listener_set_tls(h, l, ctx), "rk_listener_set_tls");
  /* the listener holds its own reference: the handle may go at once */
  CHECK_RC(rk_tls_ctx_free(ctx), "rk_tls_ctx_free");
  CHECK(rk_tls_ctx_free(ctx) == -ENOENT, "freed twice");
  CHECK_RC(rk_listener_set_target(h, l, "127.0.0.1", 9, 0, 1000, NULL),
           "set target");
  CHECK_RC(rk_listener_start(h, l), "rk_listener_start");
  CHECK(rk_listener_set_tls(h, l, 1) != 0, "not after start");
  CHECK_RC(rk_engine_close(h), "rk_engine_close");
  CHECK_RC(rk_engine_free(h), "rk_engine_free");
}

/* Read a whole small file into a NUL-terminated malloc'd string. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL, "%s: %s", path, strerror(errno));
  char *b = calloc(1, 65536);
  size_t n = fread(b, 1, 65535, f);
  fclose(f);
  CHECK(n > 0, "%s is empty", path);
  return b;
}

typedef struct {
  int fd;
  const uint8_t *buf;
  size_t n;
} tls_writer_t;

static void *tls_writer_main(void *arg) {
  tls_writer_t *w = arg;
  write_all(w->fd, w->buf, w->n);
  shutdown(w->fd, SHUT_WR);
  return NULL;
}

/* Both TLS ends in the library, with data: plain clients -> a held
 * listener whose CONNECTs speak TLS (rk_hold_set_tls) -> a listener that
 * terminates TLS -> an echo backend. Every byte and half-close checked,
 * then a name that the certificate does not have. Needs the openssl
 * command for a certificate. */
/* A self-signed certificate for localhost and 127.0.0.1, and its key (PEM,
 * malloc'd). Needs the openssl command. */
static void tls_test_cert(char **cert, char **key) {
  char dir[] = "/tmp/rk-harness-tls-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
  char cmd[1024], path[256];
  snprintf(cmd, sizeof cmd,
           "cd %s && openssl req -x509 -newkey ec -pkeyopt "
           "ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem "
           "-days 2 -subj /CN=localhost -addext basicConstraints=CA:FALSE "
           "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null",
           dir);
  CHECK(system(cmd) == 0, "openssl req failed (the openssl command is needed)");
  snprintf(path, sizeof path, "%s/cert.pem", dir);
  *cert = slurp(path);
  unlink(path);
  snprintf(path, sizeof path, "%s/key.pem", dir);
  *key = slurp(path);
  unlink(path);
  rmdir(dir);
}

static void t_tls_relay(void) {
  if (!rk_tls_load(NULL, NULL, 0))
    return; /* t_tls_api checks the unloaded branch */
  char *cert, *key;
  tls_test_cert(&cert, &key);

  char err[256];
  int32_t sctx = rk_tls_server_ctx(cert, key, err, sizeof err);
  CHECK(sctx > 0, "server context: %d %s", sctx, err);
  int32_t cctx = rk_tls_client_ctx(cert, 1, err, sizeof err);
  CHECK(cctx > 0, "client context: %d %s", cctx, err);
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  int32_t tl = rk_listen(h, "127.0.0.1", 0, NULL);
  CHECK_RC(tl, "rk_listen");
  CHECK_RC(rk_listener_set_tls(h, tl, sctx), "rk_listener_set_tls");
  CHECK_RC(rk_listener_set_target(h, tl, "127.0.0.1", echo.port, 0, 5000, NULL),
           "rk_listener_set_target");
  CHECK_RC(rk_listener_start(h, tl), "rk_listener_start");
  int tls_port = rk_listener_port(h, tl);
  rk_listen_opts_t held = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL};
  int32_t hl = listen_to(h, 0, &held);
  int hold_port = rk_listener_port(h, hl);
  double st0[6], st1[6];
  rk_tls_stats(st0);

  enum { N = 4, BYTES = 3 * 1024 * 1024 + 17 };
  uint8_t *data = malloc(BYTES), *back = malloc(BYTES + 1);
  uint64_t seed = g_seed;
  for (size_t i = 0; i < BYTES; i++)
    data[i] = (uint8_t)rnd(&seed);
  for (int k = 0; k < N + 1; k++) {
    int fd = connect_tcp(hold_port);
    pump_wait_count(&pump, RK_EV_HOLD, hl, (size_t)k + 1);
    int32_t ids[N + 1];
    CHECK(pump_accepted(&pump, hl, ids, NULL, N + 1) == (size_t)k + 1, "ids");
    int32_t id = ids[k];
    const char *name = k < N ? "localhost" : "other.test"; /* last: refused */
    CHECK_RC(rk_hold_set_tls(h, id, cctx, name), "rk_hold_set_tls");
    rk_decision_t d = {.action = RK_DECIDE_CONNECT, .port = tls_port,
                       .connect_timeout_ms = 5000, .idle_timeout_ms = -1,
                       .length = -1};
    CHECK_RC(rk_hold_decide(h, id, "127.0.0.1", NULL, &d, NULL, 0, NULL, 0),
             "rk_hold_decide");
    if (k == N) {
      uint32_t rec[RK_EVENT_WORDS];
      expect_closed(&pump, id, RK_END_CONNECT_FAILED, rec);
      CHECK((int32_t)rec[3] == RK_ECERT_UNTRUSTED, "err %d %s",
            (int32_t)rec[3], rk_err_name((int32_t)rec[3]));
      CHECK(strcmp(rk_err_name(RK_ECERT_UNTRUSTED), "CERT_UNTRUSTED") == 0,
            "the name");
      char said[96];
      uint8_t der[4096];
      int32_t n = rk_tls_cert_failure(h, id, said, sizeof said, der, sizeof der);
      CHECK(n > 100 && strcmp(said, "HOSTNAME_MISMATCH") == 0, "%d %s", n, said);
      CHECK(rk_tls_cert_failure(h, id, said, sizeof said, der, sizeof der) ==
                -ENOENT, "read once");
      close(fd);
      break;
    }
    tls_writer_t w = {fd, data, BYTES};
    pthread_t t = spawn(tls_writer_main, &w);
    int rerr;
    size_t got = read_to_end(fd, back, BYTES + 1, &rerr);
    join(t);
    CHECK(got == BYTES && memcmp(back, data, BYTES) == 0,
          "connection %d: %zu of %d bytes came back intact", k, got, BYTES);
    close(fd);
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&pump, id, RK_END_DONE, rec);
    CHECK(rec_u64(rec, 8) == BYTES && rec_u64(rec, 14) == BYTES,
          "counters %llu %llu", (unsigned long long)rec_u64(rec, 8),
          (unsigned long long)rec_u64(rec, 14));
  }
  engine_wait_idle(h);
  rk_tls_stats(st1);
  CHECK(st1[0] - st0[0] >= 2 * N, "handshakes: %g", st1[0] - st0[0]);
  CHECK(st1[1] - st0[1] >= 1, "failures: %g", st1[1] - st0[1]);
  CHECK(st1[2] == 0, "TLS sides still open: %g", st1[2]);
  CHECK_RC(rk_tls_ctx_free(sctx), "free server context");
  CHECK_RC(rk_tls_ctx_free(cctx), "free client context");
  engine_end(&pump);
  server_stop(&echo);
  free(data);
  free(back);
  free(cert);
  free(key);
}

/* rk_listener_set_hold_first: what clients sent before they were accepted
 * comes with the first RK_EV_HOLD (up to the maximum, with FULL);
 * a client that sent nothing gets its first event at once, with none. */
static void t_hold_first(void) {
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL,
                           .hold_timeout_ms = 5000};
  int32_t lid = rk_listen(h, "127.0.0.1", 0, &opts);
  CHECK(lid > 0, "rk_listen: %d", lid);
  CHECK(rk_listener_set_hold_first(h, lid, -1) == -EINVAL, "negative max");
  CHECK(rk_listener_set_hold_first(h, 0x7ffffff0, 8) == -ENOENT, "no listener");
  CHECK_RC(rk_listener_set_hold_first(h, lid, 8), "rk_listener_set_hold_first");
  int port = rk_listener_port(h, lid);
  /* in the backlog before the listener accepts: 0 sent "hello", 1 nothing,
   * 2 "bye" and EOF, 3 more than the maximum */
  int fds[4];
  for (int i = 0; i < 4; i++)
    fds[i] = connect_tcp(port);
  write_all(fds[0], "hello", 5);
  write_all(fds[2], "bye", 3);
  shutdown(fds[2], SHUT_WR);
  write_all(fds[3], "0123456789abcdef", 16);
  usleep(50 * 1000);
  CHECK_RC(rk_listener_start(h, lid), "rk_listener_start");
  pump_wait_count(&pump, RK_EV_HOLD, lid, 4);
  int32_t acc[4], ids[4];
  int ports[4];
  CHECK(pump_accepted(&pump, lid, acc, ports, 4) == 4, "accept events");
  for (int i = 0; i < 4; i++) { /* workers post in their own order */
    ids[i] = 0;
    for (int j = 0; j < 4; j++)
      if (ports[j] == local_port(fds[i]))
        ids[i] = acc[j];
    CHECK(ids[i] != 0, "client %d accepted", i);
  }
  static const struct {
    const char *held;
    uint32_t flags;
  } want[4] = {{"hello", 0}, {"", 0}, {"bye", 0}, {"01234567", RK_HOLD_FULL}};
  for (int i = 0; i < 4; i++) {
    uint32_t rec[RK_EVENT_WORDS];
    pump_get(&pump, RK_EV_HOLD, ids[i], rec);
    uint32_t n = (uint32_t)strlen(want[i].held);
    /* (EOF may come with the bytes or with the next read) */
    CHECK((rec[4] & (RK_HOLD_FIRST | RK_HOLD_FULL)) ==
                  (RK_HOLD_FIRST | want[i].flags) && rec[5] == n,
          "client %d: flags %#x, %u held", i, rec[4], rec[5]);
    uint8_t buf[16];
    CHECK(rk_hold_take(h, ids[i], buf, sizeof buf) == (int32_t)n &&
              memcmp(buf, want[i].held, n) == 0,
          "client %d: held bytes", i);
  }
  /* the one that sent nothing reads on as asked */
  write_all(fds[1], "late", 4);
  CHECK_RC(rk_hold_read(h, ids[1], 8), "rk_hold_read");
  pump_wait_count(&pump, RK_EV_HOLD, lid, 5);
  for (int i = 0; i < 4; i++) {
    CHECK_RC(rk_conn_close(h, ids[i], RK_CLOSE_ABORT), "rk_conn_close");
    close(fds[i]);
  }
  for (int i = 0; i < 4; i++) {
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&pump, ids[i], RK_END_CLOSED, rec);
  }
  engine_end(&pump);
}

/* rk_listener_set_hold_wait: clients that sent nothing at their accept get
 * their first RK_EV_HOLD with their first bytes, or at their EOF, or - if
 * they stay silent - with none after the sweep. */
static void t_hold_wait(void) {
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL,
                           .hold_timeout_ms = 5000};
  int32_t lid = rk_listen(h, "127.0.0.1", 0, &opts);
  CHECK(lid > 0, "rk_listen: %d", lid);
  CHECK(rk_listener_set_hold_wait(h, lid, 2) == -EINVAL, "on is 0 or 1");
  CHECK(rk_listener_set_hold_wait(h, 0x7ffffff0, 1) == -ENOENT, "no listener");
  CHECK(rk_listener_set_hold_wait(-1, lid, 1) == RK_EBADHANDLE, "bad handle");
  CHECK_RC(rk_listener_set_hold_first(h, lid, 64), "hold first");
  CHECK_RC(rk_listener_set_hold_wait(h, lid, 1), "hold wait");
  CHECK_RC(rk_listener_start(h, lid), "rk_listener_start");
  int port = rk_listener_port(h, lid);
  int fds[3];
  for (int i = 0; i < 3; i++)
    fds[i] = connect_tcp(port);
  pump_wait_count(&pump, RK_EV_ACCEPT, lid, 3);
  int64_t accepted = now_ms();
  int32_t acc[3], ids[3];
  int ports[3];
  CHECK(pump_accepted(&pump, lid, acc, ports, 3) == 3, "accept events");
  for (int i = 0; i < 3; i++) {
    ids[i] = 0;
    for (int j = 0; j < 3; j++)
      if (ports[j] == local_port(fds[i]))
        ids[i] = acc[j];
    CHECK(ids[i] != 0, "client %d accepted", i);
  }
  usleep(30 * 1000);
  pthread_mutex_lock(&pump.mu);
  size_t early = pump_count_locked(&pump, RK_EV_HOLD, -1, lid);
  pthread_mutex_unlock(&pump.mu);
  CHECK(early == 0, "no hold event before bytes: %zu", early);
  write_all(fds[0], "hello", 5); /* 0: bytes */
  shutdown(fds[1], SHUT_WR);     /* 1: EOF; 2: silent */
  uint32_t rec[RK_EVENT_WORDS];
  pump_get(&pump, RK_EV_HOLD, ids[0], rec);
  CHECK(rec[4] == RK_HOLD_FIRST && rec[5] == 5, "bytes: flags %#x, %u held",
        rec[4], rec[5]);
  uint8_t buf[16];
  CHECK(rk_hold_take(h, ids[0], buf, sizeof buf) == 5 &&
            memcmp(buf, "hello", 5) == 0,
        "the first bytes");
  CHECK(rec[7] == (uint32_t)local_port(fds[0]), "with the client's address");
  pump_get(&pump, RK_EV_HOLD, ids[1], rec);
  CHECK((rec[4] & (RK_HOLD_FIRST | RK_HOLD_EOF)) ==
                (RK_HOLD_FIRST | RK_HOLD_EOF) && rec[5] == 0,
        "EOF: flags %#x, %u held", rec[4], rec[5]);
  pump_get(&pump, RK_EV_HOLD, ids[2], rec);
  int64_t waited = now_ms() - accepted;
  CHECK(rec[4] == RK_HOLD_FIRST && rec[5] == 0 && waited >= 60,
        "silent: flags %#x, %u held, after %lld ms", rec[4], rec[5],
        (long long)waited);
  pthread_mutex_lock(&pump.mu);
  size_t holds = pump_count_locked(&pump, RK_EV_HOLD, -1, lid);
  pthread_mutex_unlock(&pump.mu);
  CHECK(holds == 3, "one hold event each: %zu", holds);
  /* the silent one reads on as asked, as any held connection */
  write_all(fds[2], "late", 4);
  CHECK_RC(rk_hold_read(h, ids[2], 8), "rk_hold_read");
  pump_wait_count(&pump, RK_EV_HOLD, lid, 4);
  for (int i = 0; i < 3; i++) {
    CHECK_RC(rk_conn_close(h, ids[i], RK_CLOSE_ABORT), "rk_conn_close");
    close(fds[i]);
  }
  for (int i = 0; i < 3; i++)
    expect_closed(&pump, ids[i], RK_END_CLOSED, rec);
  engine_end(&pump);
}

/* rk_engine_drain_held: the bytes of each RK_EV_HOLD come with the drain,
 * as long as they fit; those that do not (and an ended connection's) are
 * left to rk_hold_take. Drained here, on this thread (no pump). */
static void t_drain_held(void) {
  int32_t h = rk_engine_new(1, 0);
  CHECK(h >= 0, "rk_engine_new: %d", h);
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL,
                           .hold_timeout_ms = 5000};
  int32_t lid = rk_listen(h, "127.0.0.1", 0, &opts);
  CHECK(lid > 0, "rk_listen: %d", lid);
  CHECK_RC(rk_listener_set_hold_first(h, lid, 4096), "hold first");
  int port = rk_listener_port(h, lid);
  /* 0 sends "hello", 1 nothing, 2 more than the area holds, 3 "bye" */
  enum { BIG = 3000, AREA = 64 };
  static uint8_t big[BIG];
  for (int i = 0; i < BIG; i++)
    big[i] = (uint8_t)(i * 7 + 1);
  int fds[4];
  for (int i = 0; i < 4; i++)
    fds[i] = connect_tcp(port);
  write_all(fds[0], "hello", 5);
  write_all(fds[2], big, BIG);
  write_all(fds[3], "bye", 3);
  usleep(50 * 1000);
  uint32_t out[64 * RK_EVENT_WORDS];
  uint8_t held[AREA];
  int32_t spans[2 * 64];
  CHECK(rk_engine_drain_held(h, out, 64, held, AREA, NULL) == -EINVAL,
        "no spans");
  CHECK(rk_engine_drain_held(h, out, 64, NULL, AREA, spans) == -EINVAL,
        "no area");
  CHECK(rk_engine_drain_held(-1, out, 64, held, AREA, spans) == RK_EBADHANDLE,
        "bad handle");
  CHECK_RC(rk_listener_start(h, lid), "rk_listener_start");
  int32_t ids[4] = {0};
  int holds = 0, accepts = 0;
  int32_t accepted[4];
  int accepted_port[4];
  int64_t deadline = now_ms() + 5000;
  while (holds < 4 && now_ms() < deadline) {
    rk_engine_wait(h, 100);
    /* a small area: "hello" and "bye" fit, the big one does not */
    int32_t n = rk_engine_drain_held(h, out, 64, held, AREA, spans);
    CHECK(n >= 0, "rk_engine_drain_held: %d", n);
    for (int32_t i = 0; i < n; i++) {
      const uint32_t *rec = out + (size_t)i * RK_EVENT_WORDS;
      if (rec[0] == RK_EV_ACCEPT) {
        CHECK(spans[2 * i] == -1, "an accept carries nothing");
        CHECK(accepts < 4, "accepts");
        accepted[accepts] = (int32_t)rec[1];
        accepted_port[accepts++] = (int)rec[7];
        continue;
      }
      if (rec[0] != RK_EV_HOLD)
        continue;
      int k = -1;
      for (int j = 0; j < accepts; j++)
        if (accepted[j] == (int32_t)rec[1])
          for (int m = 0; m < 4; m++)
            if (local_port(fds[m]) == accepted_port[j])
              k = m;
      CHECK(k >= 0, "hold of a known client");
      ids[k] = (int32_t)rec[1];
      holds++;
      if (k == 2) {
        CHECK(rec[5] > AREA && spans[2 * i] == -1,
              "%u bytes do not fit: not carried (%d)", rec[5], spans[2 * i]);
        uint8_t *b = malloc(rec[5]);
        CHECK(rk_hold_take(h, ids[k], b, (int32_t)rec[5]) == (int32_t)rec[5] &&
                  memcmp(b, big, rec[5]) == 0,
              "rk_hold_take has them");
        free(b);
        continue;
      }
      static const char *const want[4] = {"hello", "", NULL, "bye"};
      uint32_t wn = (uint32_t)strlen(want[k]);
      CHECK(spans[2 * i] >= 0 && spans[2 * i + 1] == (int32_t)wn &&
                rec[5] == wn &&
                spans[2 * i] + spans[2 * i + 1] <= AREA &&
                memcmp(held + spans[2 * i], want[k], wn) == 0,
            "client %d: carried %d at %d, %u announced", k, spans[2 * i + 1],
            spans[2 * i], rec[5]);
    }
  }
  CHECK(holds == 4, "4 hold events: %d", holds);
  /* a connection that ended before its event was drained: not carried */
  write_all(fds[1], "late", 4);
  CHECK_RC(rk_hold_read(h, ids[1], 8), "rk_hold_read");
  int got = 0;
  deadline = now_ms() + 5000;
  while (!got && now_ms() < deadline) {
    rk_engine_wait(h, 100);
    int32_t n = rk_engine_drain_held(h, out, 64, held, AREA, spans);
    for (int32_t i = 0; i < n; i++) {
      const uint32_t *rec = out + (size_t)i * RK_EVENT_WORDS;
      if (rec[0] == RK_EV_HOLD && (int32_t)rec[1] == ids[1]) {
        CHECK(spans[2 * i] >= 0 && spans[2 * i + 1] == 4 &&
                  memcmp(held + spans[2 * i], "late", 4) == 0,
              "the second read carried");
        got = 1;
      }
    }
  }
  CHECK(got, "second hold event");
  CHECK_RC(rk_hold_read(h, ids[3], 8), "rk_hold_read");
  write_all(fds[3], "!", 1);
  usleep(50 * 1000); /* its event is queued: end it before the drain */
  CHECK_RC(rk_conn_close(h, ids[3], RK_CLOSE_ABORT), "rk_conn_close");
  usleep(50 * 1000);
  got = 0;
  int seen = 0;
  deadline = now_ms() + 5000;
  while (!got && now_ms() < deadline) {
    rk_engine_wait(h, 100);
    int32_t n = rk_engine_drain_held(h, out, 64, held, AREA, spans);
    for (int32_t i = 0; i < n; i++) {
      const uint32_t *rec = out + (size_t)i * RK_EVENT_WORDS;
      if (rec[0] == RK_EV_HOLD && (int32_t)rec[1] == ids[3]) {
        CHECK(spans[2 * i] == -1, "an ended connection's bytes: not carried");
        seen = 1;
      }
      if (rec[0] == RK_EV_CLOSED && (int32_t)rec[1] == ids[3])
        got = 1;
    }
  }
  CHECK(got && seen, "hold event (%d) and closed event (%d)", seen, got);
  for (int i = 0; i < 4; i++)
    close(fds[i]);
  CHECK_RC(rk_engine_close(h), "rk_engine_close");
  CHECK_RC(rk_engine_free(h), "rk_engine_free");
}

static void t_hold_timeout(void) {
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL,
                           .hold_timeout_ms = 300};
  int32_t lid = listen_to(h, 0, &opts);
  int port = rk_listener_port(h, lid);
  int fds[3];
  int64_t t0 = now_ms();
  for (int i = 0; i < 3; i++)
    fds[i] = connect_tcp(port);
  write_all(fds[1], "some bytes nobody asks for", 26);
  pump_wait_count(&pump, RK_EV_HOLD, lid, 3);
  int32_t ids[3];
  int ports[3];
  CHECK(pump_accepted(&pump, lid, ids, ports, 3) == 3, "accept events");
  int32_t closed_id = ids[2];
  CHECK_RC(rk_conn_close(h, closed_id, RK_CLOSE_GRACEFUL), "rk_conn_close");
  for (int i = 0; i < 3; i++) {
    uint8_t buf[8];
    int err;
    size_t n = read_to_end(fds[i], buf, sizeof buf, &err);
    CHECK(n == 0, "held client %d got bytes", i);
    close(fds[i]);
  }
  for (int i = 0; i < 3; i++) {
    uint32_t rec[RK_EVENT_WORDS];
    if (ids[i] == closed_id) {
      expect_closed(&pump, ids[i], RK_END_CLOSED, rec);
      continue;
    }
    expect_closed(&pump, ids[i], RK_END_HOLD_TIMEOUT, rec);
    CHECK((int32_t)rec[3] == -ETIMEDOUT, "err %d", (int32_t)rec[3]);
  }
  CHECK(now_ms() - t0 >= 250, "hold timeout too early");
  CHECK(rk_hold_read(h, ids[0], 10) == -ENOENT, "hold_read after the end");
  uint8_t b[4];
  CHECK(rk_hold_take(h, ids[0], b, 4) == -ENOENT, "hold_take after the end");
  /* rk_hold_submit: records for ended connections are skipped; a size that
   * is not a record's stops the batch */
  uint32_t recs[8] = {RK_HOLD_OP_READ, (uint32_t)ids[0], 16, 10,
                      RK_HOLD_OP_READ, (uint32_t)ids[1], 16, 10};
  CHECK(rk_hold_submit(h, (const uint8_t *)recs, 32) == 0, "ended: skipped");
  CHECK(rk_hold_submit(h, (const uint8_t *)recs, 0) == 0, "empty batch");
  CHECK(rk_hold_submit(h, (const uint8_t *)recs, 24) == -EINVAL, "cut record");
  recs[2] = 12;
  CHECK(rk_hold_submit(h, (const uint8_t *)recs, 32) == -EINVAL, "size 12");
  recs[2] = 0;
  CHECK(rk_hold_submit(h, (const uint8_t *)recs, 32) == -EINVAL, "size 0");
  recs[2] = 0xfffffff8u;
  CHECK(rk_hold_submit(h, (const uint8_t *)recs, 32) == -EINVAL, "size huge");
  CHECK(rk_hold_submit(-1, (const uint8_t *)recs, 32) == RK_EBADHANDLE,
        "bad handle");
  engine_end(&pump);
}

/* ======================================================================== */
/* PROXY headers read by the engine (proxyhdr.c)                           */

/* Send `len` bytes, end, and read the answer to the end. */
static size_t proxy_exchange(int port, const void *msg, size_t len,
                             uint8_t *out, size_t cap) {
  int fd = connect_tcp(port);
  write_all(fd, msg, len);
  shutdown(fd, SHUT_WR);
  int err;
  size_t n = read_to_end(fd, out, cap, &err);
  close(fd);
  return n;
}

/* A listener with a PROXY front: v1 and v2 headers are read and a v1 one
 * sent on with the original addresses; a malformed header, an untrusted
 * source and a late header are refused; no RK_EV_HOLD goes out but for a
 * listener without a target, whose connection is handed over after its
 * header. */
static void t_proxy_headers(void) {
  server_t echo;
  server_start(&echo, echo_fn);
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL,
                           .hold_timeout_ms = 300};
  int32_t lids[2];
  for (int k = 0; k < 2; k++) {
    lids[k] = rk_listen(h, "127.0.0.1", 0, &opts);
    CHECK(lids[k] > 0, "rk_listen: %d", lids[k]);
    CHECK_RC(rk_listener_set_target(h, lids[k], "127.0.0.1", echo.port,
                                    RK_FAMILY_ANY, 5000, NULL),
             "rk_listener_set_target");
    /* trusted: 127.0.0.0/8 (first listener), 10.0.0.0/8 (second) */
    uint8_t range[18] = {4, 8, k == 0 ? 127 : 10};
    rk_proxy_opts_t po = {.mode = RK_PROXY_DETECT, .send_version = 1};
    CHECK_RC(rk_listener_set_proxy(h, lids[k], &po, range, 18, NULL, 0),
             "rk_listener_set_proxy");
    CHECK_RC(rk_listener_start(h, lids[k]), "rk_listener_start");
    CHECK(rk_listener_set_proxy(h, lids[k], &po, range, 18, NULL, 0) ==
              -EINVAL,
          "set_proxy after start");
  }
  int port = rk_listener_port(h, lids[0]);
  uint8_t buf[512];
  static const char v1[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
  size_t n = proxy_exchange(port, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 "
                                  "443\r\nhello",
                            sizeof v1 - 1 + 5, buf, sizeof buf);
  CHECK(n == sizeof v1 - 1 + 5 && memcmp(buf, v1, sizeof v1 - 1) == 0 &&
            memcmp(buf + n - 5, "hello", 5) == 0,
        "v1 through: %zu bytes", n);
  uint8_t v2[16 + 36 + 1] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
                             0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x21,
                             0x00, 36};
  v2[16] = 0x20, v2[17] = 0x01, v2[18] = 0x0d, v2[19] = 0xb8, v2[31] = 7;
  v2[32] = 0x20, v2[33] = 0x01, v2[34] = 0x0d, v2[35] = 0xb8, v2[47] = 1;
  v2[48] = 0x0f, v2[49] = 0xa0, v2[50] = 0, v2[51] = 80, v2[52] = 'x';
  static const char want2[] = "PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\nx";
  n = proxy_exchange(port, v2, sizeof v2, buf, sizeof buf);
  CHECK(n == sizeof want2 - 1 && memcmp(buf, want2, n) == 0,
        "v2 through: %zu bytes \"%.*s\"", n, (int)n, buf);
  n = proxy_exchange(port, "PROXY TCP4 1.2.3 4.5.6.7 1 2\r\nx", 31, buf,
                     sizeof buf);
  CHECK(n == 0, "malformed header answered with %zu bytes", n);
  n = proxy_exchange(rk_listener_port(h, lids[1]), v1, sizeof v1 - 1, buf,
                     sizeof buf);
  CHECK(n == 0, "untrusted source answered with %zu bytes", n);
  int late = connect_tcp(port);
  write_all(late, "PROX", 4);
  int err;
  n = read_to_end(late, buf, sizeof buf, &err);
  close(late);
  CHECK(n == 0, "late header answered with %zu bytes", n);
  /* without a target: the header read, the connection handed over */
  int32_t lh = rk_listen(h, "127.0.0.1", 0, &opts);
  CHECK(lh > 0, "rk_listen: %d", lh);
  uint8_t loop[18] = {4, 8, 127};
  rk_proxy_opts_t ph = {.mode = RK_PROXY_V1};
  CHECK_RC(rk_listener_set_proxy(h, lh, &ph, loop, 18, NULL, 0),
           "rk_listener_set_proxy");
  CHECK_RC(rk_listener_start(h, lh), "rk_listener_start");
  int hc = connect_tcp(rk_listener_port(h, lh));
  write_all(hc, "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET", 48);
  uint32_t pr[RK_EVENT_WORDS], hr[RK_EVENT_WORDS];
  pump_wait_count(&pump, RK_EV_HOLD, lh, 1);
  pthread_mutex_lock(&pump.mu);
  const uint32_t *p1 = NULL;
  for (size_t i = 0; i < pump.n; i++)
    if (pump.recs[i][2] == (uint32_t)lh && pump.recs[i][0] == RK_EV_PROXY)
      p1 = pump.recs[i];
  CHECK(p1 != NULL, "no RK_EV_PROXY of the listener without a target");
  memcpy(pr, p1, sizeof pr);
  memcpy(hr, pump_find_locked(&pump, RK_EV_HOLD, (int32_t)pr[1]), sizeof hr);
  pthread_mutex_unlock(&pump.mu);
  CHECK(pr[2] == (uint32_t)lh && pr[3] == 0 && (pr[4] & 0x2000) && pr[5] == 45 &&
            pr[7] == (56324u | 443u << 16),
        "handed header: listener %u err %d word4 %x length %u", pr[2],
        (int32_t)pr[3], pr[4], pr[5]);
  CHECK((hr[4] & RK_HOLD_FIRST) && hr[5] >= 45, "hold after the header: %x %u",
        hr[4], hr[5]);
  uint8_t held[64];
  CHECK(rk_hold_take(h, (int32_t)hr[1], held, sizeof held) == (int32_t)hr[5] &&
            memcmp(held + 45, "GET", hr[5] - 45) == 0,
        "held bytes");
  CHECK_RC(rk_conn_close(h, (int32_t)hr[1], RK_CLOSE_ABORT), "rk_conn_close");
  close(hc);
  pump_wait_count(&pump, RK_EV_PROXY, lids[0], 3);
  pump_wait_count(&pump, RK_EV_PROXY, lids[1], 1);
  pump_wait_count(&pump, RK_EV_CLOSED, lids[0], 4);
  pthread_mutex_lock(&pump.mu);
  size_t holds = pump_count_locked(&pump, RK_EV_HOLD, -1, -1);
  size_t bad = 0, untrusted = 0, timeouts = 0, origins = 0;
  for (size_t i = 0; i < pump.n; i++) {
    const uint32_t *r = pump.recs[i];
    if (r[0] == RK_EV_PROXY && (int32_t)r[3] == RK_EPROXY) {
      char text[128];
      rk_proxy_error_r((int32_t)r[4], text, sizeof text);
      bad += strncmp(text, "V1_BAD_ADDRESS: ", 16) == 0;
    }
    untrusted += r[0] == RK_EV_PROXY && (int32_t)r[3] == RK_EPROXY_UNTRUSTED;
    origins += r[0] == RK_EV_PROXY && r[2] == (uint32_t)lids[0] && r[3] == 0 &&
               r[7] == (56324u | 443u << 16);
    timeouts += r[0] == RK_EV_CLOSED && r[4] == RK_END_HOLD_TIMEOUT;
  }
  pthread_mutex_unlock(&pump.mu);
  CHECK(holds == 1, "%zu hold events", holds); /* the handed one */
  CHECK(bad == 1 && untrusted == 1 && timeouts == 1 && origins == 1,
        "bad %zu untrusted %zu timeouts %zu origins %zu", bad, untrusted,
        timeouts, origins);
  engine_end(&pump);
  server_stop(&echo);
}

/* The parser on random bytes and on every prefix of good headers: a result
 * or a code, never a read past the input (ASan watches). */
static void t_proxy_parse_fuzz(void) {
  uint64_t r = seed_for(811);
  int32_t out[9];
  for (int i = 0; i < 20000; i++) {
    size_t len = (size_t)rnd_below(&r, 300);
    uint8_t *b = random_bytes(len, &r, 0);
    if (len > 12 && i % 2 == 0)
      memcpy(b, i % 4 == 0 ? "PROXY TCP6 " : "\r\n\r\n\0\r\nQUIT\n", 12);
    int32_t k = rk_proxy_parse(b, (int32_t)len, i % 4, out);
    CHECK(k >= -16 && k <= 2, "result %d", k);
    free(b);
  }
  static const char v1[] = "PROXY TCP6 ::1 2001:db8::1 1 65535\r\n";
  for (size_t n = 0; n < sizeof v1 - 1; n++) {
    uint8_t *b = malloc(n + 1);
    memcpy(b, v1, n);
    CHECK(rk_proxy_parse(b, (int32_t)n, RK_PROXY_DETECT, out) == 0,
          "prefix of %zu bytes", n);
    free(b);
  }
  CHECK(rk_proxy_parse((const uint8_t *)v1, sizeof v1 - 1, RK_PROXY_V1, out) ==
                2 &&
            out[0] == (int32_t)sizeof v1 - 1 && out[4] == 2 && out[6] == 65535,
        "v1 TCP6 header");
}

/* ======================================================================== */
/* hooks                                                                    */
/* ======================================================================== */

enum { HOOK_SAME, HOOK_UPPER, HOOK_DOUBLE, HOOK_DROP_X, HOOK_PARK };
#define HOOK_THREADS 2

typedef struct {
  int32_t h;
  atomic_int mode[2]; /* per direction */
  wq_t q[HOOK_THREADS];
  atomic_int chunks, empties, larger;
  /* take each batch as a gift (rk_hook_gift) and let go of it later */
  atomic_int gift;
  /* HOOK_PARK: batches kept (their records), not returned */
  pthread_mutex_t mu;
  uint32_t parked[64][RK_EVENT_WORDS];
  int nparked;
} hooker_t;

typedef struct {
  hooker_t *hk;
  int index;
} hook_thread_t;

static void hook_event(void *ctx, const uint32_t *rec) {
  hooker_t *hk = ctx;
  if (rec[0] == RK_EV_HOOK)
    wq_push(&hk->q[rec[1] % HOOK_THREADS], rec);
}

static size_t transform(int mode, const uint8_t *in, size_t n, uint8_t *out) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = in[i];
    switch (mode) {
    case HOOK_UPPER:
      out[k++] = c >= 'a' && c <= 'z' ? (uint8_t)(c - 32) : c;
      break;
    case HOOK_DOUBLE:
      out[k++] = c;
      out[k++] = c;
      break;
    case HOOK_DROP_X:
      if (c != 'x')
        out[k++] = c;
      break;
    default:
      out[k++] = c;
    }
  }
  return k;
}

/* The bytes a hook record lends. */
static uint8_t *hook_bytes(const uint32_t *rec) {
  return (uint8_t *)(uintptr_t)((uint64_t)rec[10] | (uint64_t)rec[11] << 32);
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
  uint64_t x = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    x = (x ^ p[i]) * 1099511628211ull;
  return x;
}

/* Given batches a host holds on to, as a runtime's garbage collector
 * would: each is checked unchanged when it lets go (rk_hook_gift_free),
 * the oldest first once GIFTS_HELD are held. */
enum { GIFTS_HELD = 16 };
typedef struct {
  uint8_t *bytes[GIFTS_HELD];
  size_t len[GIFTS_HELD];
  uint64_t sum[GIFTS_HELD];
  int n;
} gifts_t;

static void gift_let_go(gifts_t *g, int i) {
  CHECK(fnv1a(g->bytes[i], g->len[i]) == g->sum[i],
        "a given batch changed while its host held it");
  rk_hook_gift_free(g->bytes[i], NULL);
  g->bytes[i] = g->bytes[--g->n];
  g->len[i] = g->len[g->n];
  g->sum[i] = g->sum[g->n];
}

static void gift_hold(gifts_t *g, uint8_t *bytes, size_t len) {
  if (g->n == GIFTS_HELD)
    gift_let_go(g, 0);
  g->bytes[g->n] = bytes;
  g->len[g->n] = len;
  g->sum[g->n++] = fnv1a(bytes, len);
}

static void *hook_main(void *arg) {
  hook_thread_t *t = arg;
  hooker_t *hk = t->hk;
  uint8_t *out = malloc(2 * RK_HOOK_BATCH_MAX);
  CHECK(out != NULL, "out of memory");
  gifts_t gifts = {0};
  uint32_t rec[RK_EVENT_WORDS];
  while (wq_pop(&hk->q[t->index], rec)) {
    int32_t dir = (int32_t)rec[6];
    int32_t len = (int32_t)rec[7];
    CHECK(dir == 0 || dir == 1, "hook direction %d", dir);
    CHECK(len > 0 && len <= RK_HOOK_BATCH_MAX, "hook batch of %d bytes", len);
    CHECK(rec[8] != 0, "hook batch without a token");
    int mode = atomic_load(&hk->mode[dir]);
    if (mode == HOOK_PARK) {
      pthread_mutex_lock(&hk->mu);
      CHECK(hk->nparked < 64, "too many parked");
      memcpy(hk->parked[hk->nparked++], rec, sizeof rec);
      pthread_mutex_unlock(&hk->mu);
      continue;
    }
    uint8_t *in = hook_bytes(rec);
    atomic_fetch_add(&hk->chunks, 1);
    int gift = atomic_load(&hk->gift);
    int32_t r;
    if (gift)
      CHECK_RC(rk_hook_gift(hk->h, rec[8]), "rk_hook_gift");
    if (mode == HOOK_SAME || mode == HOOK_UPPER) {
      /* in place, sent from the lent (or given) batch itself */
      transform(mode, in, (size_t)len, in);
      r = rk_hook_return(hk->h, rec[8], NULL, len, 0, RK_HOOK_LENT);
    } else {
      size_t k = transform(mode, in, (size_t)len, out);
      if (k == 0)
        atomic_fetch_add(&hk->empties, 1);
      if (k > (size_t)len)
        atomic_fetch_add(&hk->larger, 1);
      r = rk_hook_return(hk->h, rec[8], out, (int32_t)k, -1, 0);
    }
    CHECK(r == 0, "rk_hook_return: %d", r);
    if (gift)
      gift_hold(&gifts, in, (size_t)len);
  }
  while (gifts.n > 0)
    gift_let_go(&gifts, gifts.n - 1);
  free(out);
  return NULL;
}

typedef struct {
  hooker_t hk;
  hook_thread_t ht[HOOK_THREADS];
  pthread_t thr[HOOK_THREADS];
  pump_t pump;
} hookenv_t;

static hookenv_t *hookenv_new(void) {
  hookenv_t *e = calloc(1, sizeof *e);
  CHECK(e != NULL, "out of memory");
  pthread_mutex_init(&e->hk.mu, NULL);
  for (int i = 0; i < HOOK_THREADS; i++)
    wq_init(&e->hk.q[i]);
  e->hk.h = engine_new(&e->pump, hook_event, &e->hk);
  for (int i = 0; i < HOOK_THREADS; i++) {
    e->ht[i] = (hook_thread_t){&e->hk, i};
    e->thr[i] = spawn(hook_main, &e->ht[i]);
  }
  return e;
}

/* The hook threads finish before the engine is freed: the batches they
 * hold are lent memory that rk_engine_free releases. */
static void hookenv_end(hookenv_t *e) {
  pump_stop(&e->pump);
  for (int i = 0; i < HOOK_THREADS; i++) {
    wq_stop(&e->hk.q[i]);
    join(e->thr[i]);
  }
  engine_end(&e->pump);
  for (int i = 0; i < HOOK_THREADS; i++)
    wq_free(&e->hk.q[i]);
  pthread_mutex_destroy(&e->hk.mu);
  free(e);
}

/* Expected bytes back through an echo: a->b transformed, echoed, b->a
 * transformed. */
static void stream_expect(stream_t *s, int mode_ab, int mode_ba) {
  uint8_t *mid = malloc(s->out_len * 2 + 1);
  s->own_exp = malloc(s->out_len * 4 + 1);
  CHECK(mid != NULL && s->own_exp != NULL, "out of memory");
  size_t m = transform(mode_ab, s->out, s->out_len, mid);
  s->exp_len = transform(mode_ba, mid, m, s->own_exp);
  s->exp = s->own_exp;
  free(mid);
}

/* Hooked relays, one row each, run by t_hook_streams: random letters go
 * through an echo, the host rewrites the hooked directions' chunks on its
 * own threads, and every byte that comes back is the data rewritten both
 * ways. A direction that is not hooked is set to HOOK_PARK: a chunk of it
 * reaching the host would be kept (its stream stalls) and counted. */
typedef struct {
  const char *name;
  int listener;   /* through a listener (rk_listen_opts_t.hooks), or
                   * rk_relay_fds */
  uint32_t hooks; /* RK_RELAY_HOOK_AB | RK_RELAY_HOOK_BA */
  int ab, ba;     /* what the host does to the hooked directions' chunks */
  int n, threads; /* streams, client threads */
  uint64_t salt;
  int xs;         /* runs of 'x' in the data: HOOK_DROP_X empties chunks */
  int gift;       /* the host takes every batch as a gift (rk_hook_gift) */
} hook_case_t;

static const hook_case_t hook_cases[] = {
    {"hooks on a listener rewrite a->b on host threads while b->a flows", 1,
     RK_RELAY_HOOK_AB, HOOK_UPPER, HOOK_PARK, 16, 4, 800, 0, 0},
    {"hooks on rk_relay_fds, both directions: uppercase, then longer", 0,
     RK_RELAY_HOOK_AB | RK_RELAY_HOOK_BA, HOOK_UPPER, HOOK_DOUBLE, 6, 2, 900,
     0, 0},
    {"hooks on rk_relay_fds, a->b only: shorter, and empty", 0,
     RK_RELAY_HOOK_AB, HOOK_DROP_X, HOOK_PARK, 6, 2, 906, 1, 0},
    {"hooks on rk_relay_fds, b->a only: longer", 0, RK_RELAY_HOOK_BA,
     HOOK_PARK, HOOK_DOUBLE, 6, 2, 912, 0, 0},
    {"given batches (rk_hook_gift), both directions: uppercase sent from "
     "the host's memory, doubled into new bytes; the host lets go later",
     0, RK_RELAY_HOOK_AB | RK_RELAY_HOOK_BA, HOOK_UPPER, HOOK_DOUBLE, 6, 2,
     918, 0, 1},
    {"given batches on a listener, a->b: shorter and empty", 1,
     RK_RELAY_HOOK_AB, HOOK_DROP_X, HOOK_PARK, 8, 4, 924, 1, 1},
};

static void t_hook_streams(const void *row) {
  const hook_case_t *c = row;
  enum { MAX = 16 };
  const int n = c->n;
  CHECK(n <= MAX, "%d streams, at most %d", n, MAX);
  int ab = c->hooks & RK_RELAY_HOOK_AB ? c->ab : HOOK_PARK;
  int ba = c->hooks & RK_RELAY_HOOK_BA ? c->ba : HOOK_PARK;
  hookenv_t *he = hookenv_new();
  int32_t h = he->hk.h;
  atomic_store(&he->hk.mode[0], ab);
  atomic_store(&he->hk.mode[1], ba);
  atomic_store(&he->hk.gift, c->gift);
  server_t back;
  int32_t lid = 0;
  if (c->listener) {
    server_start(&back, echo_fn);
    rk_listen_opts_t opts = {.events = RK_EVMASK_ALL, .hooks = c->hooks};
    lid = listen_to(h, back.port, &opts);
  } else {
    server_pool(&back);
  }
  stream_t ss[MAX];
  memset(ss, 0, sizeof ss);
  for (int i = 0; i < n; i++) {
    stream_random(&ss[i], c->salt + (uint64_t)i, 1);
    if (c->xs && ss[i].out_len > 40000)
      memset(ss[i].own_out + ss[i].out_len / 4, 'x',
             40000 < ss[i].out_len / 2 ? 40000 : ss[i].out_len / 2);
    stream_expect(&ss[i], ab == HOOK_PARK ? HOOK_SAME : ab,
                  ba == HOOK_PARK ? HOOK_SAME : ba);
    if (c->listener)
      continue;
    int a[2], b[2];
    socketpair_or_die(a);
    socketpair_or_die(b);
    ss[i].id = rk_relay_fds(h, a[1], a[1], b[0], b[0],
                            &(rk_relay_opts_t){.flags = c->hooks});
    CHECK(ss[i].id > 0, "rk_relay_fds(hooked): %d", ss[i].id);
    ss[i].fd = a[0];
    server_adopt(&back, b[1], echo_fn);
  }
  clients_run(ss, n, c->threads, c->listener ? rk_listener_port(h, lid) : 0);
  if (c->listener) {
    pump_wait_count(&he->pump, RK_EV_CLOSED, lid, (size_t)n);
    int32_t ids[MAX];
    int ports[MAX];
    CHECK(pump_accepted(&he->pump, lid, ids, ports, MAX) == (size_t)n,
          "accept events");
    for (int i = 0; i < n; i++)
      stream_by_port(ss, n, ports[i])->id = ids[i];
  }
  for (int i = 0; i < n; i++) {
    CHECK(ss[i].eof && ss[i].got == ss[i].exp_len, "stream %d: %zu of %zu, %s",
          i, ss[i].got, ss[i].exp_len, strerror(ss[i].err));
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&he->pump, ss[i].id, RK_END_DONE, rec);
    CHECK(rec_u64(rec, 8) == ss[i].out_len, "a->b read %llu of %zu",
          (unsigned long long)rec_u64(rec, 8), ss[i].out_len);
  }
  pthread_mutex_lock(&he->hk.mu);
  int parked = he->hk.nparked;
  pthread_mutex_unlock(&he->hk.mu);
  CHECK(parked == 0, "%d chunks of a direction without a hook", parked);
  printf("  (%d chunks, %d made longer, %d dropped whole)\n",
         atomic_load(&he->hk.chunks), atomic_load(&he->hk.larger),
         atomic_load(&he->hk.empties));
  hookenv_end(he);
  server_stop(&back);
  for (int i = 0; i < n; i++)
    stream_free(&ss[i]);
}

/* TLS sides on hooked directions: plain clients -> a held listener whose
 * CONNECTs speak TLS -> a TLS listener with both directions hooked (a->b
 * upper-cased in place, b->a doubled into new bytes, on host threads) ->
 * an echo. Batches are read from and written to the TLS side through
 * rk__tls_read/rk__tls_write; each client's half-close goes on as
 * close_notify then FIN, and the echo's end comes back the same way. */
static void t_tls_hooked(void) {
  if (!rk_tls_load(NULL, NULL, 0))
    return; /* t_tls_api checks the unloaded branch */
  char *cert, *key;
  tls_test_cert(&cert, &key);
  char err[256];
  int32_t sctx = rk_tls_server_ctx(cert, key, err, sizeof err);
  CHECK(sctx > 0, "server context: %d %s", sctx, err);
  int32_t cctx = rk_tls_client_ctx(cert, 1, err, sizeof err);
  CHECK(cctx > 0, "client context: %d %s", cctx, err);
  hookenv_t *he = hookenv_new();
  int32_t h = he->hk.h;
  atomic_store(&he->hk.mode[0], HOOK_UPPER);
  atomic_store(&he->hk.mode[1], HOOK_DOUBLE);
  server_t echo;
  server_start(&echo, echo_fn);
  rk_listen_opts_t topts = {.events = RK_EVMASK_ALL,
                            .hooks = RK_RELAY_HOOK_AB | RK_RELAY_HOOK_BA};
  int32_t tl = rk_listen(h, "127.0.0.1", 0, &topts);
  CHECK_RC(tl, "rk_listen");
  CHECK_RC(rk_listener_set_tls(h, tl, sctx), "rk_listener_set_tls");
  CHECK_RC(rk_listener_set_target(h, tl, "127.0.0.1", echo.port, 0, 5000, NULL),
           "rk_listener_set_target");
  CHECK_RC(rk_listener_start(h, tl), "rk_listener_start");
  int tls_port = rk_listener_port(h, tl);
  rk_listen_opts_t held = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL};
  int32_t hl = listen_to(h, 0, &held);
  int hold_port = rk_listener_port(h, hl);

  enum { N = 3, BYTES = 1024 * 1024 + 4099 };
  uint8_t *data = malloc(BYTES), *mid = malloc(BYTES);
  uint8_t *want = malloc(2 * BYTES), *back = malloc(2 * BYTES + 1);
  CHECK(data && mid && want && back, "out of memory");
  uint64_t seed = g_seed ^ 0x7154;
  for (size_t i = 0; i < BYTES; i++)
    data[i] = (uint8_t)('a' + rnd(&seed) % 30); /* letters, and a few more */
  size_t m = transform(HOOK_UPPER, data, BYTES, mid);
  size_t want_len = transform(HOOK_DOUBLE, mid, m, want);
  int chunks0 = atomic_load(&he->hk.chunks);
  for (int k = 0; k < N; k++) {
    int fd = connect_tcp(hold_port);
    pump_wait_count(&he->pump, RK_EV_HOLD, hl, (size_t)k + 1);
    int32_t ids[N];
    CHECK(pump_accepted(&he->pump, hl, ids, NULL, N) == (size_t)k + 1, "ids");
    int32_t id = ids[k];
    CHECK_RC(rk_hold_set_tls(h, id, cctx, "localhost"), "rk_hold_set_tls");
    rk_decision_t d = {.action = RK_DECIDE_CONNECT, .port = tls_port,
                       .connect_timeout_ms = 5000, .idle_timeout_ms = -1,
                       .length = -1};
    CHECK_RC(rk_hold_decide(h, id, "127.0.0.1", NULL, &d, NULL, 0, NULL, 0),
             "rk_hold_decide");
    tls_writer_t w = {fd, data, BYTES};
    pthread_t t = spawn(tls_writer_main, &w);
    int rerr;
    size_t got = read_to_end(fd, back, 2 * BYTES + 1, &rerr);
    join(t);
    CHECK(got == want_len && memcmp(back, want, want_len) == 0,
          "connection %d: %zu of %zu bytes came back as the hooks made them",
          k, got, want_len);
    close(fd);
    uint32_t rec[RK_EVENT_WORDS];
    expect_closed(&he->pump, id, RK_END_DONE, rec);
    CHECK(rec_u64(rec, 8) == BYTES && rec_u64(rec, 14) == want_len,
          "counters %llu %llu", (unsigned long long)rec_u64(rec, 8),
          (unsigned long long)rec_u64(rec, 14));
  }
  /* the TLS listener's connections ended cleanly too (hooked, both ways) */
  pump_wait_count(&he->pump, RK_EV_CLOSED, tl, N);
  engine_wait_idle(h);
  int chunks = atomic_load(&he->hk.chunks) - chunks0;
  CHECK(chunks >= 2 * N * (BYTES / RK_HOOK_BATCH_MAX + 1),
        "%d batches for %d x %d bytes both ways", chunks, N, BYTES);
  double st[6];
  rk_tls_stats(st);
  CHECK(st[2] == 0, "TLS sides still open: %g", st[2]);
  CHECK_RC(rk_tls_ctx_free(sctx), "free server context");
  CHECK_RC(rk_tls_ctx_free(cctx), "free client context");
  printf("  (%d batches)\n", chunks);
  hookenv_end(he);
  server_stop(&echo);
  free(data);
  free(mid);
  free(want);
  free(back);
  free(cert);
  free(key);
}

/* A connection that ends while its chunk is with the host: take and
 * resume say -ENOENT; an abort racing a resume ends it exactly once; a
 * graceful close waits for the chunk and still delivers it. */
static int32_t parked_relay(hookenv_t *he, int a[2], int b[2],
                            uint32_t *token) {
  socketpair_or_die(a);
  socketpair_or_die(b);
  int32_t id = rk_relay_fds(he->hk.h, a[1], a[1], b[0], b[0],
                            &(rk_relay_opts_t){.flags = RK_RELAY_HOOK_AB});
  CHECK(id > 0, "rk_relay_fds: %d", id);
  write_all(a[0], "abc", 3);
  uint32_t rec[RK_EVENT_WORDS];
  pump_get(&he->pump, RK_EV_HOOK, id, rec);
  CHECK(rec[6] == 0 && rec[7] == 3, "hook event dir %u len %u", rec[6],
        rec[7]);
  CHECK(memcmp(hook_bytes(rec), "abc", 3) == 0, "the lent bytes");
  *token = rec[8];
  return id;
}

typedef struct {
  int32_t h;
  int32_t *ids;
  uint32_t *tokens;
  int n, resume;
  pthread_barrier_t *bar;
} racer_t;

static void *racer_main(void *arg) {
  racer_t *r = arg;
  pthread_barrier_wait(r->bar);
  for (int i = 0; i < r->n; i++) {
    int32_t rc = r->resume
                     ? rk_hook_return(r->h, r->tokens[i],
                                      (const uint8_t *)"Z", 1, -1, 0)
                     : rk_conn_close(r->h, r->ids[i], RK_CLOSE_ABORT);
    CHECK(rc == 0 || rc == -ENOENT, "%s: %d",
          r->resume ? "rk_hook_return" : "rk_conn_close", rc);
  }
  return NULL;
}

/* A hook host that keeps every batch (HOOK_PARK both ways) for the test
 * to hand back. */
static hookenv_t *hookenv_parked(void) {
  hookenv_t *he = hookenv_new();
  atomic_store(&he->hk.mode[0], HOOK_PARK);
  atomic_store(&he->hk.mode[1], HOOK_PARK);
  return he;
}

static void t_hook_conn_ends_with_chunk_out(void) {
  hookenv_t *he = hookenv_parked();
  int32_t h = he->hk.h;
  uint8_t buf[16];
  int err;
  uint32_t token;

  /* aborted from this thread while the batch is lent: it stays valid
   * until it is returned, which frees it */
  int a[2], b[2];
  int32_t id = parked_relay(he, a, b, &token);
  uint32_t rec[RK_EVENT_WORDS];
  pump_get(&he->pump, RK_EV_HOOK, id, rec);
  CHECK(rk_hook_return(h, token, NULL, 4, 0, RK_HOOK_LENT) == -EINVAL,
        "a range outside the batch");
  CHECK_RC(rk_conn_close(h, id, RK_CLOSE_ABORT), "rk_conn_close");
  expect_closed(&he->pump, id, RK_END_CLOSED, NULL);
  CHECK(memcmp(hook_bytes(rec), "abc", 3) == 0, "lent bytes after the end");
  CHECK(rk_hook_return(h, token, buf, 3, -1, 0) == -ENOENT,
        "return after the end");
  CHECK(rk_hook_return(h, token, buf, 3, -1, 0) == -EINVAL,
        "a second return");
  CHECK(read_to_end(b[1], buf, sizeof buf, &err) == 0, "b got bytes");
  close(a[0]);
  close(b[1]);

  /* graceful close: the batch is still delivered, then FIN */
  id = parked_relay(he, a, b, &token);
  CHECK_RC(rk_conn_close(h, id, RK_CLOSE_GRACEFUL), "rk_conn_close");
  CHECK(read_to_end(a[0], buf, sizeof buf, &err) == 0 && err == 0,
        "a: FIN after a graceful close");
  sleep_ms(20);
  double st[8];
  CHECK(rk_conn_stats(h, id, st) == 0, "ended before the batch came back");
  CHECK_RC(rk_hook_return(h, token, (const uint8_t *)"XYZW", 4, -1, 0),
           "rk_hook_return");
  size_t n = read_to_end(b[1], buf, sizeof buf, &err);
  CHECK(n == 4 && err == 0 && memcmp(buf, "XYZW", 4) == 0,
        "b after graceful close: %zu bytes, %s", n, strerror(err));
  expect_closed(&he->pump, id, RK_END_CLOSED, NULL);
  close(a[0]);
  close(b[1]);

  /* an empty result sends nothing; the next batch goes on */
  id = parked_relay(he, a, b, &token);
  CHECK_RC(rk_hook_return(h, token, NULL, 0, -1, 0), "rk_hook_return(empty)");
  write_all(a[0], "def", 3);
  for (int64_t until = now_ms() + EVENT_TIMEOUT_MS;;) {
    pthread_mutex_lock(&he->hk.mu);
    int k = he->hk.nparked;
    uint32_t last[RK_EVENT_WORDS];
    if (k > 0)
      memcpy(last, he->hk.parked[k - 1], sizeof last);
    pthread_mutex_unlock(&he->hk.mu);
    if (k > 0 && last[1] == (uint32_t)id && last[8] != token) {
      CHECK(last[7] == 3 && memcmp(hook_bytes(last), "def", 3) == 0,
            "the batch after an empty result");
      CHECK_RC(rk_hook_return(h, last[8], (const uint8_t *)"D", 1, -1, 0),
               "rk_hook_return");
      break;
    }
    CHECK(now_ms() < until, "no batch after an empty result");
    sleep_ms(2);
  }
  read_exact(b[1], buf, 1);
  CHECK(buf[0] == 'D', "b got '%c' after an empty result", buf[0]);
  CHECK_RC(rk_conn_close(h, id, RK_CLOSE_ABORT), "rk_conn_close");
  expect_closed(&he->pump, id, RK_END_CLOSED, NULL);
  close(a[0]);
  close(b[1]);

  /* a batch the host cannot give back: never reused, nothing sent */
  id = parked_relay(he, a, b, &token);
  CHECK_RC(rk_hook_return(h, token, NULL, 0, 0, RK_HOOK_KEPT | RK_HOOK_LENT),
           "rk_hook_return(KEPT)");
  CHECK_RC(rk_conn_close(h, id, RK_CLOSE_ABORT), "rk_conn_close");
  expect_closed(&he->pump, id, RK_END_CLOSED, NULL);
  close(a[0]);
  close(b[1]);

  /* return and abort race from two threads, 16 times over */
  enum { R = 16 };
  int32_t ids[R];
  uint32_t tokens[R];
  int ends[R][2];
  for (int i = 0; i < R; i++) {
    ids[i] = parked_relay(he, a, b, &tokens[i]);
    ends[i][0] = a[0];
    ends[i][1] = b[1];
  }
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, 2);
  racer_t ra = {h, ids, tokens, R, 1, &bar}, rb = {h, ids, tokens, R, 0, &bar};
  pthread_t t1 = spawn(racer_main, &ra), t2 = spawn(racer_main, &rb);
  join(t1);
  join(t2);
  pthread_barrier_destroy(&bar);
  for (int i = 0; i < R; i++) {
    expect_closed(&he->pump, ids[i], RK_END_CLOSED, rec);
    close(ends[i][0]);
    close(ends[i][1]);
  }
  hookenv_end(he);
}

/* Given batches (rk_hook_gift): the engine never changes or frees what
 * the host holds; the host may let go before the bytes went out, after
 * the connection ended, or after the engine was freed; past
 * RK_HOOK_GIFT_MAX outstanding bytes the engine says -EAGAIN. */
static void t_hook_gift(void) {
  hookenv_t *he = hookenv_parked();
  int32_t h = he->hk.h;
  uint8_t buf[16];
  int err;
  uint32_t token;
  int a[2], b[2];

  /* changed in place and sent from the host's memory, which the host
   * lets go of at once, before the worker wrote it */
  int32_t id = parked_relay(he, a, b, &token);
  CHECK(rk_hook_gift(h, 0) == -EINVAL, "a gift of no batch");
  CHECK_RC(rk_hook_gift(h, token), "rk_hook_gift");
  CHECK(rk_hook_gift(h, token) == -EINVAL, "a second gift");
  uint32_t rec[RK_EVENT_WORDS];
  pump_get(&he->pump, RK_EV_HOOK, id, rec);
  uint8_t *given = hook_bytes(rec);
  memcpy(given, "ABC", 3);
  CHECK_RC(rk_hook_return(h, token, NULL, 3, 0, RK_HOOK_LENT), "rk_hook_return");
  rk_hook_gift_free(given, NULL);
  read_exact(b[1], buf, 3);
  CHECK(memcmp(buf, "ABC", 3) == 0, "b got %.3s", buf);

  /* something else sent in its place: copied, the gift left as it is */
  write_all(a[0], "defgh", 5);
  for (int64_t until = now_ms() + EVENT_TIMEOUT_MS;;) {
    pthread_mutex_lock(&he->hk.mu);
    int k = he->hk.nparked;
    if (k > 0)
      memcpy(rec, he->hk.parked[k - 1], sizeof rec);
    pthread_mutex_unlock(&he->hk.mu);
    if (k > 0 && rec[8] != token)
      break;
    CHECK(now_ms() < until, "no second batch");
    sleep_ms(2);
  }
  token = rec[8];
  given = hook_bytes(rec);
  CHECK(rec[7] == 5 && memcmp(given, "defgh", 5) == 0, "the second batch");
  CHECK_RC(rk_hook_gift(h, token), "rk_hook_gift");
  CHECK_RC(rk_hook_return(h, token, (const uint8_t *)"XY", 2, -1, 0),
           "rk_hook_return");
  read_exact(b[1], buf, 2);
  CHECK(memcmp(buf, "XY", 2) == 0, "b got %.2s", buf);
  CHECK(memcmp(given, "defgh", 5) == 0, "the gift after a copied result");
  rk_hook_gift_free(given, NULL);
  CHECK_RC(rk_conn_close(h, id, RK_CLOSE_ABORT), "rk_conn_close");
  expect_closed(&he->pump, id, RK_END_CLOSED, NULL);
  close(a[0]);
  close(b[1]);

  /* the connection ends while a given batch is with the host */
  id = parked_relay(he, a, b, &token);
  pump_get(&he->pump, RK_EV_HOOK, id, rec);
  given = hook_bytes(rec);
  CHECK_RC(rk_hook_gift(h, token), "rk_hook_gift");
  CHECK_RC(rk_conn_close(h, id, RK_CLOSE_ABORT), "rk_conn_close");
  expect_closed(&he->pump, id, RK_END_CLOSED, NULL);
  CHECK(rk_hook_return(h, token, NULL, 3, 0, RK_HOOK_LENT) == -ENOENT,
        "return after the end");
  CHECK(memcmp(given, "abc", 3) == 0, "the gift after its connection ended");
  rk_hook_gift_free(given, NULL);
  CHECK(read_to_end(b[1], buf, sizeof buf, &err) == 0, "b got bytes");
  close(a[0]);
  close(b[1]);

  /* the budget: gifts the host holds count until it lets go */
  enum { MAXGIFTS = 300 };
  static uint8_t *held[MAXGIFTS];
  int nheld = 0, refused = 0;
  while (nheld < MAXGIFTS) {
    id = parked_relay(he, a, b, &token);
    pump_get(&he->pump, RK_EV_HOOK, id, rec);
    pthread_mutex_lock(&he->hk.mu);
    he->hk.nparked = 0; /* its record is rec: the parked list stays short */
    pthread_mutex_unlock(&he->hk.mu);
    int32_t r = rk_hook_gift(h, token);
    if (r == 0)
      held[nheld++] = hook_bytes(rec);
    CHECK_RC(rk_hook_return(h, token, NULL, 3, 0, RK_HOOK_LENT),
             "rk_hook_return");
    read_exact(b[1], buf, 3);
    CHECK(memcmp(buf, "abc", 3) == 0, "b got %.3s", buf);
    CHECK_RC(rk_conn_close(h, id, RK_CLOSE_ABORT), "rk_conn_close");
    expect_closed(&he->pump, id, RK_END_CLOSED, NULL);
    close(a[0]);
    close(b[1]);
    if (r == -EAGAIN) {
      refused = 1;
      break;
    }
    CHECK_RC(r, "rk_hook_gift");
  }
  /* a batch is RK_HOOK_BATCH_MAX bytes and a header */
  const int fit = RK_HOOK_GIFT_MAX / RK_HOOK_BATCH_MAX;
  CHECK(refused && nheld < fit && nheld >= fit - 2,
        "%d gifts before -EAGAIN (refused: %d)", nheld, refused);
  /* one let go: one more fits; a gift may outlive its engine */
  rk_hook_gift_free(held[--nheld], NULL);
  id = parked_relay(he, a, b, &token);
  pump_get(&he->pump, RK_EV_HOOK, id, rec);
  CHECK_RC(rk_hook_gift(h, token), "rk_hook_gift after one was let go");
  held[nheld++] = hook_bytes(rec);
  CHECK_RC(rk_hook_return(h, token, NULL, 3, 0, RK_HOOK_LENT), "rk_hook_return");
  read_exact(b[1], buf, 3);
  CHECK_RC(rk_conn_close(h, id, RK_CLOSE_ABORT), "rk_conn_close");
  expect_closed(&he->pump, id, RK_END_CLOSED, NULL);
  close(a[0]);
  close(b[1]);
  hookenv_end(he);
  for (int i = 0; i < nheld; i++) {
    CHECK(memcmp(held[i], "abc", 3) == 0, "gift %d after its engine", i);
    rk_hook_gift_free(held[i], NULL);
  }
}

/* A hooked direction reads at most RK_HOOK_WINDOW batches ahead of the
 * host, and writes batches in the order it read them, whatever the order
 * of their returns. */
typedef struct {
  int fd;
  size_t n;
} writer_t;

static uint8_t pattern_at(size_t i) { return (uint8_t)(i * 7 + i / 251); }

/* got[0..n) is the whole of pattern_writer's `total` bytes, in order. */
static void expect_pattern(const uint8_t *got, size_t n, size_t total,
                           int err) {
  CHECK(n == total && err == 0, "b got %zu of %zu bytes: %s", n, total,
        strerror(err));
  for (size_t i = 0; i < total; i++)
    CHECK(got[i] == pattern_at(i), "byte %zu out of order", i);
}

static void *pattern_writer(void *arg) {
  writer_t *wr = arg;
  uint8_t chunk[8192];
  for (size_t off = 0; off < wr->n; off += sizeof chunk) {
    size_t k = wr->n - off < sizeof chunk ? wr->n - off : sizeof chunk;
    for (size_t i = 0; i < k; i++)
      chunk[i] = pattern_at(off + i);
    write_all(wr->fd, chunk, k);
  }
  shutdown(wr->fd, SHUT_WR);
  return NULL;
}

static void t_hook_window(void) {
  hookenv_t *he = hookenv_parked();
  int32_t h = he->hk.h;
  int a[2], b[2];
  socketpair_or_die(a);
  socketpair_or_die(b);
  int32_t id = rk_relay_fds(h, a[1], a[1], b[0], b[0],
                            &(rk_relay_opts_t){.flags = RK_RELAY_HOOK_AB});
  CHECK(id > 0, "rk_relay_fds: %d", id);
  const size_t total = 8u * RK_HOOK_BATCH_MAX + 12345;
  writer_t wr = {a[0], total};
  pthread_t wt = spawn(pattern_writer, &wr);
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  for (;;) {
    pthread_mutex_lock(&he->hk.mu);
    int k = he->hk.nparked;
    pthread_mutex_unlock(&he->hk.mu);
    if (k >= RK_HOOK_WINDOW)
      break;
    CHECK(now_ms() < deadline, "%d batches lent, expected %d", k,
          RK_HOOK_WINDOW);
    sleep_ms(5);
  }
  sleep_ms(100); /* the engine must not read on */
  double st[8];
  CHECK_RC(rk_conn_stats(h, id, st), "rk_conn_stats");
  pthread_mutex_lock(&he->hk.mu);
  int parked = he->hk.nparked;
  uint32_t recs[RK_HOOK_WINDOW][RK_EVENT_WORDS];
  memcpy(recs, he->hk.parked, sizeof recs);
  he->hk.nparked = 0;
  pthread_mutex_unlock(&he->hk.mu);
  CHECK(parked == RK_HOOK_WINDOW, "%d batches lent with a full window",
        parked);
  uint64_t lent = 0;
  for (int i = 0; i < RK_HOOK_WINDOW; i++)
    lent += recs[i][7];
  CHECK(st[0] == (double)lent && lent <= RK_HOOK_WINDOW * RK_HOOK_BATCH_MAX,
        "read %.0f bytes, lent %llu", st[0], (unsigned long long)lent);
  /* the rest goes through the hook threads; the parked ones come back
   * newest first */
  atomic_store(&he->hk.mode[0], HOOK_SAME);
  for (int i = RK_HOOK_WINDOW - 1; i >= 0; i--)
    CHECK_RC(rk_hook_return(h, recs[i][8], NULL, (int32_t)recs[i][7], 0,
                            RK_HOOK_LENT),
             "rk_hook_return");
  uint8_t *got = malloc(total + 1);
  CHECK(got != NULL, "out of memory");
  int err;
  size_t n = read_to_end(b[1], got, total, &err);
  expect_pattern(got, n, total, err);
  free(got);
  join(wt);
  shutdown(b[1], SHUT_WR);
  uint32_t rec[RK_EVENT_WORDS];
  expect_closed(&he->pump, id, RK_END_DONE, rec);
  CHECK(rec_u64(rec, 8) == total && rec_u64(rec, 10) == total,
        "counters %llu/%llu", (unsigned long long)rec_u64(rec, 8),
        (unsigned long long)rec_u64(rec, 10));
  close(a[0]);
  close(b[1]);
  hookenv_end(he);
}

/* A hooked direction's batches fill up to RK_HOOK_BATCH_MAX bytes whether
 * its host copies them back or hands them back RK_HOOK_LENT (no copy); the
 * bytes arrive whole and in order throughout. */
typedef struct {
  int fd;
  uint8_t *buf;
  size_t cap, n;
  int err;
} reader_t;

static void *reader_main(void *arg) {
  reader_t *rd = arg;
  rd->n = read_to_end(rd->fd, rd->buf, rd->cap, &rd->err);
  return NULL;
}

static void t_hook_batch_size(void) {
  hookenv_t *he = hookenv_parked();
  int32_t h = he->hk.h;
  /* the source is a pipe that holds two batches: with the window full the
   * writer fills it, so the read after each batch comes back finds a
   * whole batch's bytes waiting, however slow the threads run */
  int p[2], b[2];
  CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
  CHECK(fcntl(p[1], F_SETPIPE_SZ, 2 * RK_HOOK_BATCH_MAX) >= 2 * RK_HOOK_BATCH_MAX,
        "F_SETPIPE_SZ %d: %s (see /proc/sys/fs/pipe-max-size)",
        2 * RK_HOOK_BATCH_MAX, strerror(errno));
  socketpair_or_die(b);
  int32_t id = rk_relay_fds(h, p[0], -1, -1, b[0],
                            &(rk_relay_opts_t){.flags = RK_RELAY_HOOK_AB});
  CHECK(id > 0, "rk_relay_fds: %d", id);
  const size_t total = 48u * RK_HOOK_BATCH_MAX;
  writer_t wr = {p[1], total};
  reader_t rd = {b[1], malloc(total + 1), total, 0, 0};
  CHECK(rd.buf != NULL, "out of memory");
  pthread_t wt = spawn(pattern_writer, &wr), rt = spawn(reader_main, &rd);
  /* the first COPY batches copied back, the rest lent back: the largest
   * of each */
  enum { COPY = 16 };
  uint32_t most[2] = {0, 0};
  int k = 0;
  size_t through = 0;
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (through < total) {
    uint32_t rec[RK_EVENT_WORDS];
    pthread_mutex_lock(&he->hk.mu);
    int have = he->hk.nparked > 0;
    if (have) {
      memcpy(rec, he->hk.parked[0], sizeof rec);
      memmove(he->hk.parked[0], he->hk.parked[1],
              (size_t)(--he->hk.nparked) * sizeof rec);
    }
    pthread_mutex_unlock(&he->hk.mu);
    if (!have) {
      CHECK(now_ms() < deadline, "batch %d: none in %d ms (%zu bytes through)",
            k, EVENT_TIMEOUT_MS, through);
      sleep_ms(1);
      continue;
    }
    uint32_t len = rec[7];
    CHECK(len > 0 && len <= RK_HOOK_BATCH_MAX, "batch %d of %u bytes", k, len);
    int lent = k >= COPY;
    if (len > most[lent])
      most[lent] = len;
    through += len;
    /* while more than the window's worth is still to come: hand the batch
     * back once a whole batch waits in the pipe */
    if (through + (RK_HOOK_WINDOW + 1) * (size_t)RK_HOOK_BATCH_MAX < total) {
      int avail = 0;
      while (ioctl(p[0], FIONREAD, &avail) == 0 && avail < RK_HOOK_BATCH_MAX) {
        CHECK(now_ms() < deadline, "batch %d: %d bytes in the pipe after %d ms",
              k, avail, EVENT_TIMEOUT_MS);
        sleep_ms(1);
      }
    }
    int32_t r = lent ? rk_hook_return(h, rec[8], NULL, (int32_t)len, 0,
                                      RK_HOOK_LENT)
                     : rk_hook_return(h, rec[8], hook_bytes(rec),
                                      (int32_t)len, -1, 0);
    CHECK_RC(r, "rk_hook_return");
    k++;
  }
  CHECK(most[0] == RK_HOOK_BATCH_MAX && most[1] == RK_HOOK_BATCH_MAX,
        "%d batches: the largest copied back %u bytes, lent back %u (want "
        "%u)",
        k, most[0], most[1], RK_HOOK_BATCH_MAX);
  join(wt);
  close(p[1]); /* the pipe's EOF: the relay ends once it is written */
  join(rt);
  expect_pattern(rd.buf, rd.n, total, rd.err);
  free(rd.buf);
  expect_closed(&he->pump, id, RK_END_DONE, NULL);
  close(b[1]);
  hookenv_end(he);
}

/* ======================================================================== */

/* A test is one function, or a table: a runner and its rows, each row a
 * test of its own (named, filtered, timed and counted as one). A row's
 * first member is its name. */
typedef struct {
  const char *name;
  void (*fn)(void);
  void (*run)(const void *row);
  const void *rows;
  size_t nrows, row_size;
} test_t;

#define TEST(title, test) {.name = title, .fn = test}
#define TABLE(runner, cases)                                                   \
  {                                                                            \
    .run = runner, .rows = cases, .nrows = sizeof cases / sizeof cases[0],     \
    .row_size = sizeof cases[0]                                                \
  }


/* ---- built-in routers -------------------------------------------------- */

/* A router description as src/native/router.ts writes it: words little
 * endian, strings counted. */
typedef struct {
  uint8_t b[512];
  size_t n;
} desc_t;

static void d_u32(desc_t *d, uint32_t v) {
  for (int i = 0; i < 4; i++)
    d->b[d->n++] = (uint8_t)(v >> (8 * i));
}

static void d_str(desc_t *d, const char *s) {
  d_u32(d, (uint32_t)strlen(s));
  memcpy(d->b + d->n, s, strlen(s));
  d->n += strlen(s);
}

/* kind; allow 127.0.0.0/8 on ports lo..hi; deny names "*.blocked";
 * users: "u" with password "p" if `users`. */
static void router_desc(desc_t *d, uint32_t kind, int lo, int hi, int users) {
  d->n = 0;
  d_u32(d, 0x524b5231u);
  d_u32(d, kind);
  d_u32(d, 0);     /* flags: decide refusals here */
  d_u32(d, 65536); /* route limit */
  d_u32(d, 5000);  /* connect timeout */
  d_u32(d, RK_FAMILY_ANY);
  d_str(d, "");
  d_u32(d, 1); /* allow: one rule */
  d_u32(d, 1);
  d_u32(d, 4);
  d_u32(d, 8);
  const uint8_t net[4] = {127, 0, 0, 0};
  memcpy(d->b + d->n, net, 4);
  d->n += 4;
  d_u32(d, UINT32_MAX); /* no host part */
  d_u32(d, 1);
  d_u32(d, (uint32_t)lo);
  d_u32(d, (uint32_t)hi);
  d_u32(d, 1); /* deny: one rule */
  d_u32(d, UINT32_MAX);
  d_u32(d, 1);
  d_str(d, "*.blocked");
  d_u32(d, UINT32_MAX);
  if (users) {
    d_u32(d, 1);
    d_str(d, "u");
    d_str(d, "p");
  } else {
    d_u32(d, UINT32_MAX);
  }
}

/* Handed-over connections (RK_HOLD_ROUTED) are closed at once, as a host
 * that refuses them would. */
typedef struct {
  int32_t h;
  atomic_int handed;
} routed_t;

static void routed_event(void *ctx, const uint32_t *rec) {
  routed_t *r = ctx;
  if (rec[0] == RK_EV_HOLD && (rec[4] & RK_HOLD_ROUTED)) {
    atomic_fetch_add(&r->handed, 1);
    rk_decision_t d = {.action = RK_DECIDE_CLOSE, .idle_timeout_ms = -1};
    rk_hold_decide(r->h, (int32_t)rec[1], NULL, NULL, &d, NULL, 0, NULL, 0);
  }
}

/* Send `req` (with `more` after the reply), expect `want` back, then the
 * echo of `more`. */
static void route_exchange(int port, const uint8_t *req, size_t n,
                           const uint8_t *want, size_t wn) {
  int fd = connect_tcp(port);
  write_all(fd, req, n);
  uint8_t got[256];
  read_exact(fd, got, wn);
  CHECK(memcmp(got, want, wn) == 0, "reply differs (byte 1: %d)", got[1]);
  write_all(fd, "ping", 4);
  read_exact(fd, got, 4);
  CHECK(memcmp(got, "ping", 4) == 0, "echo");
  close(fd);
}

typedef struct {
  int port;
  int seed;
  int n;
} fuzz_t;

static void *fuzz_main(void *arg) {
  fuzz_t *f = arg;
  uint64_t r = seed_for((uint64_t)f->seed);
  static const uint8_t socks5[] = {5, 2, 0, 2, 1, 1, 'u', 1, 'p', 5, 1, 0,
                                   3, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o',
                                   's', 't', 0, 80};
  static const uint8_t socks4a[] = {4, 1, 0, 80, 0, 0, 0, 1, 'u', 0,
                                    'l', 'o', 'c', 'a', 'l', 'h', 'o', 's',
                                    't', 0};
  static const char http[] = "CONNECT [::1]:80 HTTP/1.1\r\n"
                             "Proxy-Authorization: Basic dTpw\r\n\r\n";
  for (int i = 0; i < f->n; i++) {
    uint8_t buf[128];
    size_t n;
    const uint8_t *base = i % 3 == 0   ? socks5
                          : i % 3 == 1 ? socks4a
                                       : (const uint8_t *)http;
    size_t bn = i % 3 == 0   ? sizeof socks5
                : i % 3 == 1 ? sizeof socks4a
                             : sizeof http - 1;
    switch (rnd_below(&r, 4)) {
    case 0: /* truncated */
      n = rnd_below(&r, (uint32_t)bn);
      memcpy(buf, base, n);
      break;
    case 1: /* one byte changed */
      n = bn;
      memcpy(buf, base, n);
      buf[rnd_below(&r, (uint32_t)n)] = (uint8_t)rnd(&r);
      break;
    case 2: /* random */
      n = 1 + rnd_below(&r, 64);
      for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)rnd(&r);
      break;
    default: /* truncated and changed */
      n = 1 + rnd_below(&r, (uint32_t)bn);
      memcpy(buf, base, n);
      buf[rnd_below(&r, (uint32_t)n)] = (uint8_t)rnd(&r);
    }
    int fd = connect_tcp(f->port);
    write_full(fd, buf, n);
    if (rnd_below(&r, 3) == 0) {
      struct linger lg = {1, 0}; /* a reset */
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else {
      shutdown(fd, SHUT_WR);
      uint8_t out[512];
      int err;
      read_to_end(fd, out, sizeof out, &err);
    }
    close(fd);
  }
  return NULL;
}

static void t_router(void) {
  server_t echo;
  server_start(&echo, echo_fn);
  routed_t routed = {.h = -1};
  pump_t pump;
  int32_t h = engine_new(&pump, routed_event, &routed);
  routed.h = h; /* before any listener starts: no event before this */
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = 0,
                           .hold_timeout_ms = 5000};
  int32_t lids[3];
  int ports[3];
  desc_t d;
  for (int k = 0; k < 3; k++) {
    lids[k] = rk_listen(h, "127.0.0.1", 0, &opts);
    CHECK(lids[k] > 0, "rk_listen %d", lids[k]);
    router_desc(&d, k == 2 ? RK_ROUTER_CONNECT : RK_ROUTER_SOCKS,
                k == 1 ? 1 : echo.port, k == 1 ? 65535 : echo.port, k != 0);
    CHECK_RC(rk_listener_set_router(h, lids[k], d.b, (int32_t)d.n),
             "rk_listener_set_router");
    CHECK_RC(rk_listener_start(h, lids[k]), "rk_listener_start");
    ports[k] = rk_listener_port(h, lids[k]);
  }
  CHECK(rk_listener_set_router(h, lids[0], d.b, (int32_t)d.n - 1) == -EINVAL,
        "a truncated description is refused");
  const uint8_t ok5[12] = {5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  const uint8_t ep[2] = {(uint8_t)(echo.port >> 8), (uint8_t)echo.port};
  /* SOCKS5, no auth: greeting and request at once */
  uint8_t req[64] = {5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, ep[0], ep[1]};
  route_exchange(ports[0], req, 13, ok5, 12);
  /* SOCKS4a by name */
  uint8_t r4[32] = {4, 1, ep[0], ep[1], 0, 0, 0, 1, 'x', 0};
  memcpy(r4 + 10, "localhost", 10);
  const uint8_t ok4[8] = {0, 90, 0, 0, 0, 0, 0, 0};
  route_exchange(ports[0], r4, 20, ok4, 8);
  /* SOCKS5 with a password, a name */
  uint8_t r5[64] = {5, 1, 2, 1, 1, 'u', 1, 'p', 5, 1, 0, 3, 9};
  memcpy(r5 + 13, "localhost", 9);
  r5[22] = ep[0];
  r5[23] = ep[1];
  const uint8_t ok5a[14] = {5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  route_exchange(ports[1], r5, 24, ok5a, 14);
  /* HTTP CONNECT */
  char hr[128];
  int hn = snprintf(hr, sizeof hr,
                    "CONNECT 127.0.0.1:%d HTTP/1.1\r\nProxy-Authorization: "
                    "basic  dTpw\r\n\r\n",
                    echo.port);
  const char *ok = "HTTP/1.1 200 Connection established\r\n\r\n";
  route_exchange(ports[2], (const uint8_t *)hr, (size_t)hn,
                 (const uint8_t *)ok, strlen(ok));
  /* refusals: a port no rule allows, a denied name, a wrong password, a
   * failed connect */
  struct {
    int port;
    uint8_t req[64];
    size_t n;
    uint8_t want[16];
    size_t wn;
  } no[] = {
      {ports[0], {5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 1}, 13,
       {5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0}, 12},
      {ports[0],
       {5, 1, 0, 5, 1, 0, 3, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0,
        1},
       19, {5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0}, 12}, /* a name, resolved */
      {ports[0], {5, 1, 0, 5, 1, 0, 3, 0, 0, 80}, 10, /* an empty name */
       {5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0}, 12},
      {ports[0], {4, 1, 0, 80, 0, 0, 0, 1, 'u', 0, 0}, 11, /* SOCKS4a, "" */
       {0, 91, 0, 0, 0, 0, 0, 0}, 8},
      {ports[1], {5, 1, 2, 1, 1, 'u', 1, 'x'}, 8, {5, 2, 1, 1}, 4},
      {ports[1],
       {5, 1, 2, 1, 1, 'u', 1, 'p', 5, 1, 0, 1, 127, 0, 0, 1,
        (uint8_t)(g_dead_port >> 8), (uint8_t)g_dead_port},
       18, {5, 2, 1, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0}, 14},
  };
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
    int fd = connect_tcp(no[i].port);
    write_all(fd, no[i].req, no[i].n);
    uint8_t got[64];
    int err;
    size_t n = read_to_end(fd, got, sizeof got, &err);
    CHECK(n == no[i].wn && memcmp(got, no[i].want, n) == 0,
          "refusal %zu: %zu bytes (byte 3: %d)", i, n, n > 3 ? got[3] : -1);
    close(fd);
  }
  pump_wait_count(&pump, RK_EV_ROUTE_FAILED, lids[1], 1);
  /* random and truncated handshakes from 4 threads */
  fuzz_t fz[4];
  pthread_t ft[4];
  for (int i = 0; i < 4; i++) {
    fz[i] = (fuzz_t){ports[i % 3], 700 + i, 150};
    ft[i] = spawn(fuzz_main, &fz[i]);
  }
  for (int i = 0; i < 4; i++)
    join(ft[i]);
  /* routers replaced 200 times while connections start with them */
  for (int i = 0; i < 4; i++) {
    fz[i] = (fuzz_t){ports[0], 800 + i, 60};
    ft[i] = spawn(fuzz_main, &fz[i]);
  }
  router_desc(&d, RK_ROUTER_SOCKS, echo.port, echo.port, 0);
  for (int i = 0; i < 200; i++) {
    CHECK_RC(rk_listener_set_router(h, lids[0], d.b, (int32_t)d.n),
             "rk_listener_set_router");
    sleep_ms(1);
  }
  for (int i = 0; i < 4; i++)
    join(ft[i]);
  /* still serving */
  route_exchange(ports[0], req, 13, ok5, 12);
  CHECK(atomic_load(&routed.handed) > 0, "no connection was handed over");
  /* without a router the listener holds connections for the host again */
  CHECK_RC(rk_listener_set_router(h, lids[0], NULL, 0), "unset the router");
  int fd = connect_tcp(ports[0]); /* now held for the host: a plain RK_EV_HOLD */
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  int plain = 0;
  pthread_mutex_lock(&pump.mu);
  while (!plain) {
    for (size_t i = 0; i < pump.n && !plain; i++)
      plain = pump.recs[i][0] == RK_EV_HOLD &&
              pump.recs[i][2] == (uint32_t)lids[0] &&
              (pump.recs[i][4] & (RK_HOLD_FIRST | RK_HOLD_ROUTED)) == RK_HOLD_FIRST;
    if (!plain && !pump_timedwait(&pump, deadline))
      break;
  }
  pthread_mutex_unlock(&pump.mu);
  CHECK(plain, "no plain RK_EV_HOLD without the router");
  close(fd);
  printf("  (%d handed over)\n", atomic_load(&routed.handed));
  engine_end(&pump);
  server_stop(&echo);
}

/* ---- routing tables ---------------------------------------------------- */

static void d_bytes(desc_t *d, const void *b, size_t n) {
  d_u32(d, (uint32_t)n);
  memcpy(d->b + d->n, b, n);
  d->n += n;
}

/* A table: prefix "SSH-", Host "a.test", SNI "*.x.test" to 127.0.0.1:port;
 * Host "b.test" for the host to decide; no default. */
static void table_desc(desc_t *d, int port) {
  d->n = 0;
  d_u32(d, 0x524b5231u);
  d_u32(d, RK_ROUTER_TABLE);
  d_u32(d, 0);
  d_u32(d, 65536);
  d_u32(d, 5000);
  d_u32(d, RK_FAMILY_ANY);
  d_str(d, "");
  d_u32(d, 0); /* no allow rules */
  d_u32(d, 0); /* no deny rules */
  d_u32(d, UINT32_MAX);
  d_u32(d, 4);
  const char *pat[4] = {"SSH-", "a.test", "*.x.test", "b.test"};
  const uint32_t match[4] = {1, 2, 3, 2};
  for (int i = 0; i < 4; i++) {
    d_u32(d, match[i]);
    d_bytes(d, pat[i], strlen(pat[i]));
    d_u32(d, i < 3);
    d_str(d, i < 3 ? "127.0.0.1" : "");
    d_u32(d, i < 3 ? (uint32_t)port : 0);
    d_u32(d, UINT32_MAX);
  }
}

/* A TLS record with a ClientHello naming `sni`. */
static size_t client_hello(uint8_t *out, const char *sni) {
  size_t nl = strlen(sni), o = 0;
  uint8_t body[300];
  size_t b = 0;
  body[b++] = 3;
  body[b++] = 3;
  memset(body + b, 7, 32);
  b += 32;
  body[b++] = 0;
  body[b++] = 0;
  body[b++] = 2;
  body[b++] = 0x13;
  body[b++] = 1;
  body[b++] = 1;
  body[b++] = 0;
  size_t ext = 9 + nl;
  body[b++] = (uint8_t)(ext >> 8);
  body[b++] = (uint8_t)ext;
  const uint8_t head[9] = {0, 0, (uint8_t)((nl + 5) >> 8), (uint8_t)(nl + 5),
                           (uint8_t)((nl + 3) >> 8), (uint8_t)(nl + 3), 0,
                           (uint8_t)(nl >> 8), (uint8_t)nl};
  memcpy(body + b, head, 9);
  b += 9;
  memcpy(body + b, sni, nl);
  b += nl;
  size_t hs = b + 4;
  const uint8_t rec[9] = {0x16, 3, 1, (uint8_t)(hs >> 8), (uint8_t)hs, 1, 0,
                          (uint8_t)(b >> 8), (uint8_t)b};
  memcpy(out, rec, 9);
  o = 9;
  memcpy(out + o, body, b);
  return o + b;
}

typedef struct {
  int port;
  int seed;
  int n;
} table_fuzz_t;

static void *table_fuzz_main(void *arg) {
  table_fuzz_t *f = arg;
  uint64_t r = seed_for((uint64_t)f->seed);
  static const char http[] = "GET / HTTP/1.1\r\nUser-Agent: x\r\nHost: a.test:80"
                             "\r\nAccept: */*\r\n\r\n";
  uint8_t tls[300];
  size_t tn = client_hello(tls, "w.x.test");
  for (int i = 0; i < f->n; i++) {
    uint8_t buf[400];
    const uint8_t *base = i % 2 ? tls : (const uint8_t *)http;
    size_t bn = i % 2 ? tn : sizeof http - 1, n = bn;
    memcpy(buf, base, bn);
    switch (rnd_below(&r, 3)) {
    case 0:
      n = rnd_below(&r, (uint32_t)bn);
      break;
    case 1:
      for (int k = 0; k < 3; k++)
        buf[rnd_below(&r, (uint32_t)bn)] = (uint8_t)rnd(&r);
      break;
    default:
      n = 1 + rnd_below(&r, (uint32_t)bn);
      buf[rnd_below(&r, (uint32_t)n)] = (uint8_t)rnd(&r);
    }
    int fd = connect_tcp(f->port);
    write_full(fd, buf, n);
    shutdown(fd, SHUT_WR);
    uint8_t out[512];
    int err;
    read_to_end(fd, out, sizeof out, &err);
    close(fd);
  }
  return NULL;
}

static void t_table(void) {
  server_t echo;
  server_start(&echo, echo_fn);
  routed_t routed = {.h = -1};
  pump_t pump;
  int32_t h = engine_new(&pump, routed_event, &routed);
  routed.h = h;
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = 0,
                           .hold_timeout_ms = 5000};
  int32_t lid = rk_listen(h, "127.0.0.1", 0, &opts);
  CHECK(lid > 0, "rk_listen %d", lid);
  desc_t d;
  table_desc(&d, echo.port);
  CHECK_RC(rk_listener_set_router(h, lid, d.b, (int32_t)d.n),
           "rk_listener_set_router");
  CHECK(rk_listener_set_router(h, lid, d.b, (int32_t)d.n - 3) == -EINVAL,
        "a truncated table is refused");
  CHECK_RC(rk_listener_start(h, lid), "rk_listener_start");
  int port = rk_listener_port(h, lid);
  /* decided here: the whole head goes to the echo server and comes back */
  static const char req[] = "GET / HTTP/1.1\r\nHOST: A.test:8080\r\n\r\n";
  uint8_t tls[300];
  size_t tn = client_hello(tls, "w.X.test");
  const struct {
    const uint8_t *b;
    size_t n;
    size_t split;
  } ok[] = {{(const uint8_t *)req, sizeof req - 1, 20},
            {tls, tn, 7},
            {(const uint8_t *)"SSH-2.0-x\r\n", 11, 2}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int fd = connect_tcp(port);
    write_all(fd, ok[i].b, ok[i].split);
    sleep_ms(20);
    write_all(fd, ok[i].b + ok[i].split, ok[i].n - ok[i].split);
    uint8_t got[400];
    read_exact(fd, got, ok[i].n);
    CHECK(memcmp(got, ok[i].b, ok[i].n) == 0, "table case %zu: echo differs",
          i);
    close(fd);
  }
  /* handed to the host: a backend entry, no entry matching, Host twice */
  int before = atomic_load(&routed.handed);
  const char *host[] = {"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n",
                        "GET / HTTP/1.1\r\nHost: c.test\r\n\r\n",
                        "GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n"};
  for (int i = 0; i < 3; i++) {
    int fd = connect_tcp(port);
    write_all(fd, host[i], strlen(host[i]));
    uint8_t got[16];
    int err;
    size_t n = read_to_end(fd, got, sizeof got, &err);
    CHECK(n == 0, "handed-over case %d answered %zu bytes", i, n);
    close(fd);
  }
  CHECK(atomic_load(&routed.handed) - before == 3, "%d handed over",
        atomic_load(&routed.handed) - before);
  table_fuzz_t fz[4];
  pthread_t ft[4];
  for (int i = 0; i < 4; i++) {
    fz[i] = (table_fuzz_t){port, 900 + i, 150};
    ft[i] = spawn(table_fuzz_main, &fz[i]);
  }
  for (int i = 0; i < 4; i++)
    join(ft[i]);
  /* still serving */
  int fd = connect_tcp(port);
  write_all(fd, req, sizeof req - 1);
  uint8_t got[64];
  read_exact(fd, got, sizeof req - 1);
  CHECK(memcmp(got, req, sizeof req - 1) == 0, "still serving");
  close(fd);
  printf("  (%d handed over)\n", atomic_load(&routed.handed));
  engine_end(&pump);
  server_stop(&echo);
}

/* ======================================================================== */
/* tunnel data plane                                                        */

/* The first RK_EV_TUNNEL of kind sub for tunnel tid and stream sid. */
static int tun_find(pump_t *p, int32_t tid, uint32_t sub, uint32_t sid,
                    uint32_t *out) {
  int found = 0;
  pthread_mutex_lock(&p->mu);
  for (size_t i = 0; i < p->n && !found; i++) {
    const uint32_t *r = p->recs[i];
    if (r[0] == RK_EV_TUNNEL && r[1] == (uint32_t)tid && r[4] == sub &&
        r[2] == sid) {
      memcpy(out, r, RK_EVENT_WORDS * sizeof(uint32_t));
      found = 1;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return found;
}

static void tun_wait(pump_t *p, int32_t tid, uint32_t sub, uint32_t sid,
                     uint32_t *out) {
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (!tun_find(p, tid, sub, sid, out)) {
    CHECK(now_ms() < deadline, "no tunnel event %u for stream %u", sub, sid);
    sleep_ms(5);
  }
}

/* Take exactly len bytes the host is given by tunnel tid (what: for the
 * failure). */
static void tun_take_all(int32_t h, int32_t tid, uint8_t *buf, size_t len,
                         const char *what) {
  size_t have = 0;
  int64_t deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (have < len) {
    int32_t n = rk_tunnel_take(h, tid, buf + have, (int32_t)(len - have));
    CHECK(n >= 0, "rk_tunnel_take: %d", n);
    have += (size_t)n;
    CHECK(now_ms() < deadline, "%s: %zu bytes", what, have);
    if (n == 0)
      sleep_ms(5);
  }
}

static void tun_hdr(uint8_t *f, int type, uint32_t sid, uint32_t len) {
  f[0] = (uint8_t)type;
  f[1] = 0;
  for (int i = 0; i < 4; i++) {
    f[2 + i] = (uint8_t)(sid >> (24 - 8 * i));
    f[6 + i] = (uint8_t)(len >> (24 - 8 * i));
  }
}

/* Two tunnels on a socketpair (no handshake: attached at once); held
 * connections carried as streams to an echo server: every byte comes back,
 * each stream ends DONE on both sides, control frames reach the host.
 * tls: the link speaks TLS (rk_tunnel_new_tls), verified as "localhost". */
static void tunnel_streams(int tls) {
  enum { N = 12 };
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  server_t echo;
  server_start(&echo, echo_fn);
  int sv[2];
  socketpair_or_die(sv);
  int32_t a, b, sctx = 0, cctx = 0;
  double tls0[6];
  rk_tls_stats(tls0);
  if (tls) {
    char *cert, *key, err[256];
    tls_test_cert(&cert, &key);
    sctx = rk_tls_server_ctx(cert, key, err, sizeof err);
    cctx = rk_tls_client_ctx(cert, 1, err, sizeof err);
    CHECK(sctx > 0 && cctx > 0, "contexts: %d %d %s", sctx, cctx, err);
    free(cert);
    free(key);
    a = rk_tunnel_new_tls(h, sv[0], 0, cctx, 0, "localhost");
    b = rk_tunnel_new_tls(h, sv[1], 0, sctx, 1, NULL);
    CHECK_RC(rk_tls_ctx_free(sctx), "the tunnels hold their own");
    CHECK_RC(rk_tls_ctx_free(cctx), "the tunnels hold their own");
  } else {
    a = rk_tunnel_new(h, sv[0], 0);
    b = rk_tunnel_new(h, sv[1], 0);
  }
  CHECK(a > 0 && b > 0, "rk_tunnel_new: %d %d", a, b);
  if (tls) {
    uint32_t up[RK_EVENT_WORDS];
    tun_wait(&pump, a, RK_TEV_TLS_UP, 0, up);
    tun_wait(&pump, b, RK_TEV_TLS_UP, 0, up);
  }
  CHECK_RC(rk_tunnel_attach(h, a, 0, 65536, NULL, 0), "attach a");
  CHECK_RC(rk_tunnel_attach(h, b, 1, 65536, NULL, 0), "attach b");
  rk_listen_opts_t opts = {.flags = RK_LISTEN_HOLD, .events = RK_EVMASK_ALL};
  int32_t lid = listen_to(h, 0, &opts);
  int port = rk_listener_port(h, lid);
  stream_t ss[N];
  memset(ss, 0, sizeof ss);
  for (int i = 0; i < N; i++) {
    stream_random(&ss[i], 900 + (uint64_t)i, 0);
    ss[i].fd = connect_tcp(port);
  }
  pump_wait_count(&pump, RK_EV_HOLD, lid, N);
  int32_t accepted[N];
  int ports[N];
  CHECK(pump_accepted(&pump, lid, accepted, ports, N) == N, "accept events");
  /* stream i+1 carries ss[i]'s connection (the workers may accept them in
   * another order): matched by the client's port */
  int32_t ids[N];
  for (int i = 0; i < N; i++) {
    int port_i = local_port(ss[i].fd);
    ids[i] = -1;
    for (int k = 0; k < N; k++)
      if (ports[k] == port_i)
        ids[i] = accepted[k];
    CHECK(ids[i] > 0, "no accept event from port %d", port_i);
  }
  for (int i = 0; i < N; i++) {
    uint8_t open[12];
    tun_hdr(open, 5, (uint32_t)i + 1, 2);
    open[10] = 2;
    open[11] = 'e';
    CHECK_RC(rk_tunnel_open(h, a, (uint32_t)i + 1, ids[i], open, 12),
             "rk_tunnel_open");
  }
  /* the server side: N OPENs, in order */
  uint8_t got[N * 12];
  tun_take_all(h, b, got, sizeof got, "OPENs");
  for (int i = 0; i < N; i++) {
    const uint8_t *f = got + i * 12;
    CHECK(f[0] == 5 && f[5] == i + 1, "frame %d: type %u stream %u", i, f[0],
          f[5]);
    uint8_t ok[10];
    tun_hdr(ok, 6, (uint32_t)i + 1, 0);
    CHECK_RC(rk_tunnel_accept(h, b, (uint32_t)i + 1, connect_tcp(echo.port), ok,
                              10),
             "rk_tunnel_accept");
  }
  double st[4];
  for (int i = 0; i < N; i++) { /* from this thread while workers move bytes */
    int32_t r = rk_tunnel_stats(h, a, (uint32_t)i + 1, st);
    CHECK(r == 0 || r == -ENOENT, "rk_tunnel_stats: %d", r);
    CHECK(r < 0 || (st[2] <= 65536 && st[3] <= 65536), "backlog %g credit %g",
          st[2], st[3]);
  }
  streams_run(ss, N);
  for (int i = 0; i < N; i++) {
    CHECK(ss[i].eof && ss[i].got == ss[i].exp_len, "stream %d: %zu of %zu", i,
          ss[i].got, ss[i].exp_len);
    uint32_t rec[RK_EVENT_WORDS];
    tun_wait(&pump, a, RK_TEV_STREAM_END, (uint32_t)i + 1, rec);
    CHECK(rec[6] == RK_TEND_DONE, "client stream %d ended %u", i, rec[6]);
    CHECK(rec_u64(rec, 8) == ss[i].out_len && rec_u64(rec, 10) == ss[i].out_len,
          "client stream %d counters: out %llu in %llu, sent %zu", i,
          (unsigned long long)rec_u64(rec, 8),
          (unsigned long long)rec_u64(rec, 10), ss[i].out_len);
    tun_wait(&pump, b, RK_TEV_STREAM_END, (uint32_t)i + 1, rec);
    CHECK(rec[6] == RK_TEND_DONE, "server stream %d ended %u", i, rec[6]);
    stream_free(&ss[i]);
  }
  CHECK_RC(rk_tunnel_stats(h, a, 0, st), "rk_tunnel_stats (link)");
  CHECK(st[1] > 0 && st[2] > 0 && st[3] == 0, "link counters %g %g %g", st[1],
        st[2], st[3]);
  if (tls) { /* every link byte went through TLS, both ways */
    double tls1[6];
    rk_tls_stats(tls1);
    CHECK(tls1[0] - tls0[0] >= 2 && tls1[3] - tls0[3] >= st[1] &&
              tls1[4] - tls0[4] >= st[2],
          "TLS counters: handshakes %g, in %g, out %g; link in %g out %g",
          tls1[0] - tls0[0], tls1[3] - tls0[3], tls1[4] - tls0[4], st[1], st[2]);
  }
  /* the client side got N OPEN_OKs */
  tun_take_all(h, a, got, N * 10, "OPEN_OKs");
  /* a protocol error: DATA for a stream never opened */
  uint8_t bad[11];
  tun_hdr(bad, 8, 999, 1);
  bad[10] = 'x';
  CHECK_RC(rk_tunnel_send(h, a, bad, 11), "rk_tunnel_send");
  uint32_t rec[RK_EVENT_WORDS];
  tun_wait(&pump, b, RK_TEV_PROTOCOL, 999, rec);
  CHECK(rec[6] == RK_TPROB_STATE, "problem %u", rec[6]);
  /* the host closes b; a sees its link end */
  CHECK_RC(rk_tunnel_close(h, b, RK_CLOSE_ABORT), "close b");
  tun_wait(&pump, a, RK_TEV_LINK_END, 0, rec);
  CHECK_RC(rk_tunnel_close(h, a, RK_CLOSE_ABORT), "close a");
  engine_end(&pump);
  server_stop(&echo);
}

static void t_tunnel_streams(void) { tunnel_streams(0); }

/* A link whose streams' sockets take nothing: the streams hold what the
 * peer sends within their windows, the link stops being read once they
 * hold RK__TUN_HELD_MAX (64 MiB) in all, and once the sockets take their
 * bytes the rest comes, every byte of every stream whole and in order. */
static void t_tunnel_held_max(void) {
  enum { K = 96, WIN = 1 << 20, PAY = 16 * 1024 };
  const size_t held_max = 64u << 20, in_cap = 1u << 20;
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  int link[2];
  socketpair_or_die(link);
  int32_t b = rk_tunnel_new(h, link[1], 0);
  CHECK(b > 0, "rk_tunnel_new: %d", b);
  CHECK_RC(rk_tunnel_attach(h, b, 1, WIN, NULL, 0), "attach");
  uint8_t open[K][12];
  for (int k = 0; k < K; k++) {
    tun_hdr(open[k], 5, (uint32_t)k + 1, 2);
    open[k][10] = 2;
    open[k][11] = 'e';
  }
  write_all(link[0], open, sizeof open);
  uint8_t got[sizeof open];
  tun_take_all(h, b, got, sizeof got, "OPENs");
  int64_t deadline;
  int peer[K];
  for (int k = 0; k < K; k++) {
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0,
          "socketpair: %s", strerror(errno));
    int small = 4096;
    setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sp[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    set_nonblock(sp[1]);
    peer[k] = sp[1];
    uint8_t ok[10];
    tun_hdr(ok, 6, (uint32_t)k + 1, 0);
    CHECK_RC(rk_tunnel_accept(h, b, (uint32_t)k + 1, sp[0], ok, 10),
             "rk_tunnel_accept");
  }
  /* every stream's window in DATA frames, the streams taking turns */
  const size_t per = WIN / PAY, flen = 10 + PAY;
  size_t total = (size_t)K * per * flen;
  uint8_t *wire = malloc(total);
  CHECK(wire != NULL, "malloc");
  for (size_t i = 0; i < per; i++)
    for (int k = 0; k < K; k++) {
      uint8_t *f = wire + (i * K + (size_t)k) * flen;
      tun_hdr(f, 8, (uint32_t)k + 1, PAY);
      for (size_t j = 0; j < PAY; j++)
        f[10 + j] = (uint8_t)(k * 131 + (i * PAY + j) * 7 + ((i * PAY + j) >> 13));
    }
  set_nonblock(link[0]);
  size_t sent = 0;
  uint8_t sink[4096];
  int64_t quiet_since = now_ms();
  deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (sent < total && now_ms() - quiet_since < 500) {
    ssize_t w = send(link[0], wire + sent, total - sent, MSG_NOSIGNAL);
    if (w > 0) {
      sent += (size_t)w;
      quiet_since = now_ms();
    } else {
      CHECK(errno == EAGAIN, "link write: %s", strerror(errno));
      sleep_ms(2);
    }
    while (recv(link[0], sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
    CHECK(now_ms() < deadline, "link writes");
  }
  double st[4], held = 0;
  for (int k = 0; k < K; k++) {
    CHECK_RC(rk_tunnel_stats(h, b, (uint32_t)k + 1, st), "rk_tunnel_stats");
    CHECK(st[2] <= WIN, "stream %d holds %g, its window is %d", k + 1, st[2],
          WIN);
    held += st[2];
  }
  printf("  (%zu of %zu link bytes written before the link stopped; %.0f "
         "held)\n",
         sent, total, held);
  CHECK(sent < total, "the link was read to the end: %zu bytes", sent);
  CHECK(held >= (double)held_max && held <= (double)(held_max + in_cap),
        "the streams hold %.0f bytes (bound %zu)", held, held_max);
  /* the sockets take their bytes: the rest comes, whole and in order */
  size_t recvd[K] = {0};
  size_t done = 0;
  uint8_t *buf = malloc(WIN);
  CHECK(buf != NULL, "malloc");
  deadline = now_ms() + EVENT_TIMEOUT_MS;
  while (done < (size_t)K) {
    if (sent < total) {
      ssize_t w = send(link[0], wire + sent, total - sent, MSG_NOSIGNAL);
      if (w > 0)
        sent += (size_t)w;
      else
        CHECK(errno == EAGAIN, "link write: %s", strerror(errno));
    }
    while (recv(link[0], sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
    for (int k = 0; k < K; k++) {
      if (recvd[k] == WIN)
        continue;
      ssize_t n = read(peer[k], buf, WIN - recvd[k]);
      if (n < 0) {
        CHECK(errno == EAGAIN, "stream %d: %s", k + 1, strerror(errno));
        continue;
      }
      CHECK(n > 0, "stream %d: EOF after %zu", k + 1, recvd[k]);
      for (ssize_t j = 0; j < n; j++) {
        size_t at = recvd[k] + (size_t)j;
        CHECK(buf[j] == (uint8_t)(k * 131 + at * 7 + (at >> 13)),
              "stream %d: byte %zu differs", k + 1, at);
      }
      recvd[k] += (size_t)n;
      if (recvd[k] == WIN)
        done++;
    }
    CHECK(now_ms() < deadline, "%zu of %d streams got their bytes", done, K);
  }
  free(buf);
  free(wire);
  CHECK_RC(rk_tunnel_close(h, b, RK_CLOSE_ABORT), "close");
  for (int k = 0; k < K; k++)
    close(peer[k]);
  close(link[0]);
  engine_end(&pump);
}

static void t_tunnel_streams_tls(void) {
  if (!rk_tls_load(NULL, NULL, 0))
    return; /* t_tls_api checks the unloaded branch */
  tunnel_streams(1);
}

/* A TLS link that cannot be: a certificate for another name ends the
 * client's link with RK_ECERT_UNTRUSTED (why kept for the host); a peer
 * that sends no TLS handshake ends the server's with RK_ETLS, after a TLS
 * alert that tells it so. */
static void t_tunnel_tls_refused(void) {
  if (!rk_tls_load(NULL, NULL, 0)) {
    pump_t pump;
    int32_t h = engine_new(&pump, NULL, NULL);
    int sv[2];
    socketpair_or_die(sv);
    CHECK(rk_tunnel_new_tls(h, sv[0], 0, 1, 1, NULL) == RK_ENOTLS, "no TLS");
    close(sv[0]);
    close(sv[1]);
    engine_end(&pump);
    return;
  }
  pump_t pump;
  int32_t h = engine_new(&pump, NULL, NULL);
  char *cert, *key, err[256];
  tls_test_cert(&cert, &key);
  int32_t sctx = rk_tls_server_ctx(cert, key, err, sizeof err);
  int32_t cctx = rk_tls_client_ctx(cert, 1, err, sizeof err);
  CHECK(sctx > 0 && cctx > 0, "contexts: %d %d %s", sctx, cctx, err);
  free(cert);
  free(key);
  int sv[2];
  socketpair_or_die(sv);
  CHECK(rk_tunnel_new_tls(h, sv[0], 0, 0, 0, "x") == -EINVAL, "no context");
  CHECK(rk_tunnel_new_tls(h, sv[0], 0, 999, 0, "x") == -ENOENT, "unknown");
  int32_t a = rk_tunnel_new_tls(h, sv[0], 0, cctx, 0, "other.test");
  int32_t b = rk_tunnel_new_tls(h, sv[1], 0, sctx, 1, NULL);
  CHECK(a > 0 && b > 0, "rk_tunnel_new_tls: %d %d", a, b);
  uint32_t rec[RK_EVENT_WORDS];
  tun_wait(&pump, a, RK_TEV_LINK_END, 0, rec);
  CHECK((int32_t)rec[3] == RK_ECERT_UNTRUSTED, "client: %d %s",
        (int32_t)rec[3], rk_err_name((int32_t)rec[3]));
  char said[96];
  uint8_t der[4096];
  int32_t n = rk_tls_cert_failure(h, a, said, sizeof said, der, sizeof der);
  CHECK(n > 100 && strcmp(said, "HOSTNAME_MISMATCH") == 0, "%d %s", n, said);
  tun_wait(&pump, b, RK_TEV_LINK_END, 0, rec);
  CHECK((int32_t)rec[3] != 0, "server: %d", (int32_t)rec[3]);
  CHECK(!tun_find(&pump, a, RK_TEV_TLS_UP, 0, rec), "never up");
  CHECK_RC(rk_tunnel_close(h, a, RK_CLOSE_ABORT), "close a");
  CHECK_RC(rk_tunnel_close(h, b, RK_CLOSE_ABORT), "close b");
  /* plain bytes to a TLS server side */
  socketpair_or_die(sv);
  int32_t c = rk_tunnel_new_tls(h, sv[1], 0, sctx, 1, NULL);
  CHECK(c > 0, "rk_tunnel_new_tls: %d", c);
  const char hello[] = "GET / HTTP/1.1\r\n\r\n";
  CHECK(write(sv[0], hello, sizeof hello - 1) == (ssize_t)(sizeof hello - 1),
        "write");
  tun_wait(&pump, c, RK_TEV_LINK_END, 0, rec);
  CHECK((int32_t)rec[3] == RK_ETLS, "garbage: %d %s", (int32_t)rec[3],
        rk_err_name((int32_t)rec[3]));
  uint8_t alert[16];
  ssize_t got = 0, r;
  while ((r = read(sv[0], alert + got, sizeof alert - (size_t)got)) > 0)
    got += r;
  CHECK(got == 7 && alert[0] == 0x15 && alert[1] == 3 && alert[5] == 2,
        "the alert: %zd bytes, first %u", got, got > 0 ? alert[0] : 0);
  close(sv[0]);
  CHECK_RC(rk_tunnel_close(h, c, RK_CLOSE_ABORT), "close c");
  CHECK_RC(rk_tls_ctx_free(sctx), "free");
  CHECK_RC(rk_tls_ctx_free(cctx), "free");
  engine_end(&pump);
}

static const test_t tests[] = {
    TEST("tls: OpenSSL is loaded without an exit handler (no cleanup under "
         "running workers)",
         t_tls_no_exit_cleanup),
    TEST("rk_malloc_tune: hook-batch-sized blocks stay in glibc's heap, "
         "once per process, never over the operator's settings",
         t_malloc_tune),
    TEST("relay moves random data intact for 64 clients on 8 threads",
         t_relay_many_clients),
    TEST("rk_listener_conns keeps the oldest, whatever order the walk meets them",
         t_listener_conns_oldest),
    TABLE(t_relay_backend, backend_cases),
    TEST("rk_listener_dup: an adopting listener serves the clients queued "
         "when the old one closed",
         t_listener_dup),
    TEST("a forked child holding copies of the fds: no event reaches a freed "
         "connection",
         t_fork_holds_fds),
    TEST("relay ends an idle connection after the idle timeout",
         t_relay_idle_timeout),
    TEST("rk_conn_close from another thread while data flows",
         t_relay_close_while_flowing),
    TEST("rk_relay_fds relays socketpairs and pipes, keeps fds, times out",
         t_relay_fds),
    TEST("a worker's pipes are 256 KiB up to 32 of them, counted out when "
         "closed",
         t_relay_pipe_sizes),
    TEST("a relay's id works at once in every call, from 4 threads",
         t_relay_calls_right_after_create),
    TEST("listeners close once when closed from several threads and the engine",
         t_listeners_close_concurrently),
    TEST("rk_listener_abort right after rk_listener_close, 150 times",
         t_listener_close_then_abort),
    TEST("rk_connect_fd and name targets go through the resolver",
         t_connect_fd_and_names),
    TEST("event bridge: rk_test_post from 8 threads, waited and drained",
         t_bridge_wait_drain),
    TEST("event bridge: the notify callback wakes a draining thread",
         t_bridge_notify),
    TEST("event bridge: rk_engine_wake returns a blocked wait", t_bridge_wake),
    TEST("rk_engine_close and rk_engine_free while connections are live",
         t_engine_close_while_busy),
    TEST("held connections: read, take, write, decide CONNECT/CLOSE/FILE/retry "
         "from decider threads",
         t_hold_routing),
    TEST("held connections end after the hold timeout", t_hold_timeout),
    TEST("PROXY headers read by the engine: through, refused, late, handed "
         "over",
         t_proxy_headers),
    TEST("PROXY parser on random bytes and prefixes", t_proxy_parse_fuzz),
    TEST("TLS: loading, contexts, and listeners that take TLS", t_tls_api),
    TEST("TLS both ways in the library: 4 x 3 MiB echoed through TLS, "
         "half-close, a refused name",
         t_tls_relay),
    TEST("TLS sides on hooked directions: 3 x 1 MiB upper-cased and doubled "
         "in batches, both ways through TLS, half-close",
         t_tls_hooked),
    TEST("held connections: what the client sent before its accept comes "
         "with the first hold event",
         t_hold_first),
    TEST("held connections: with rk_listener_set_hold_wait the first hold "
         "event waits for the client's first bytes, its EOF or the sweep",
         t_hold_wait),
    TEST("held connections: the drain carries each hold event's bytes when "
         "they fit, rk_hold_take has the rest",
         t_drain_held),
    TABLE(t_hook_streams, hook_cases),
    TEST("hooks: a connection ends while its batch is lent to the host",
         t_hook_conn_ends_with_chunk_out),
    TEST("hooks: a direction reads at most a window ahead and writes in "
         "order",
         t_hook_window),
    TEST("hooks: batches fill up to RK_HOOK_BATCH_MAX whether the host copies "
         "them back or not",
         t_hook_batch_size),
    TEST("hooks: given batches are never changed or freed under their host; "
         "a budget bounds them",
         t_hook_gift),
    TEST("built-in routers: SOCKS4a/5 and CONNECT decided in the engine, "
         "refusals, 840 random handshakes, routers replaced under load",
         t_router),
    TEST("a routing table decides Host, SNI and prefix in C, hands the rest "
         "over, and survives mutated first bytes",
         t_table),
    TEST("tunnel: held connections carried as streams over a socketpair link",
         t_tunnel_streams),
    TEST("tunnel: the same over a TLS link (rk_tunnel_new_tls)",
         t_tunnel_streams_tls),
    TEST("tunnel: a TLS link refuses a wrong name and a peer without TLS",
         t_tunnel_tls_refused),
    TEST("tunnel: a link is not read while its streams hold 64 MiB their "
         "sockets have not taken, and nothing is lost",
         t_tunnel_held_max),
};

static atomic_llong g_deadline;

static void *watchdog_main(void *arg) {
  (void)arg;
  for (;;) {
    sleep_ms(200);
    long long d = atomic_load(&g_deadline);
    if (d != 0 && now_ms() > d) {
      fprintf(stderr, "FAIL %s\n  timed out\n", atomic_load(&g_test));
      printf("harness: %d passed, 1 failed\n", atomic_load(&g_passed));
      fflush(stdout);
      fflush(stderr);
      _exit(1);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (getenv(TLS_EXIT_CHILD_ENV) != NULL)
    return tls_exit_child(); /* t_tls_no_exit_cleanup's fresh process */
  t_is_main = 1;
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN); /* like Deno and Bun: EPIPE, not a signal */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  const char *seed = getenv("HARNESS_SEED");
  g_seed = seed != NULL ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL);
  const char *to = getenv("HARNESS_TIMEOUT_S");
  long timeout_s = to != NULL ? atol(to) : 120;
  const char *filter = argc > 1 ? argv[1] : NULL;
  printf("harness: relaykit %d.%d.%d, seed %llu\n", rk_version() >> 16,
         (rk_version() >> 8) & 0xff, rk_version() & 0xff,
         (unsigned long long)g_seed);
  dead_port_init();
  pthread_t wd = spawn(watchdog_main, NULL);
  pthread_detach(wd);
  int64_t t_all = now_ms();
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    const test_t *t = &tests[i];
    for (size_t k = 0; k < (t->fn != NULL ? 1 : t->nrows); k++) {
      const void *row = (const char *)t->rows + k * t->row_size;
      const char *name = t->fn != NULL ? t->name : *(const char *const *)row;
      if (filter != NULL && strstr(name, filter) == NULL)
        continue;
      atomic_store(&g_test, name);
      int64_t t0 = now_ms();
      atomic_store(&g_deadline, t0 + timeout_s * 1000);
      if (t->fn != NULL)
        t->fn();
      else
        t->run(row);
      atomic_store(&g_deadline, 0);
      atomic_fetch_add(&g_passed, 1);
      printf("ok %s (%lld ms)\n", name, (long long)(now_ms() - t0));
    }
  }
  close(g_dead_fd);
  printf("harness: %d passed, 0 failed (%lld ms)\n", atomic_load(&g_passed),
         (long long)(now_ms() - t_all));
  return 0;
}
