/*
 * connect.c - targets, name resolution and outbound connects.
 *
 * Theory of operation
 * - Outbound connects are non-blocking. A numeric address is connected at
 *   once; a name goes to the engine's resolver threads (getaddrinfo blocks;
 *   up to RK__RESOLVERS of them, started when a name finds none idle)
 *   and the connect starts when the answer comes back to the worker. Each
 *   resolved address is tried in order of the family preference until one
 *   connects or the connect deadline passes.
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

/* ---- targets ----------------------------------------------------------- */

rk__target *rk__copy_target(const char *host, int32_t port, int32_t family,
                            int32_t timeout_ms, const char *bind_host) {
  rk__target *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  t->host = strdup(host);
  t->bind_host = bind_host != NULL && bind_host[0] ? strdup(bind_host) : NULL;
  t->port = port;
  t->family = family;
  t->timeout_ms = timeout_ms;
  if (t->host == NULL) {
    rk__free_target(t);
    return NULL;
  }
  return t;
}

void rk__free_target(rk__target *t) {
  if (t == NULL)
    return;
  free(t->host);
  free(t->bind_host);
  free(t);
}

static struct addrinfo *rk__ai_new(int family, const void *sa, socklen_t len) {
  struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_storage));
  if (ai == NULL)
    return NULL;
  ai->ai_family = family;
  ai->ai_socktype = SOCK_STREAM;
  ai->ai_addr = (struct sockaddr *)(ai + 1);
  ai->ai_addrlen = len;
  memcpy(ai->ai_addr, sa, len);
  return ai;
}

/* Our own addrinfo lists (numeric and Unix) are one calloc per node and
 * marked with ai_flags = -1 so that they are freed with free(), not
 * freeaddrinfo(). */
#define RK__OWN_AI (-1)

void rk__ai_free(struct addrinfo *ai) {
  if (ai == NULL)
    return;
  if (ai->ai_flags == RK__OWN_AI) {
    free(ai);
    return;
  }
  freeaddrinfo(ai);
}

/* Parse a numeric IPv4/IPv6 address or a Unix path (port < 0) without
 * blocking. Return 0 with *out set, or -EINVAL if host is a name. */
int rk__parse_numeric(const char *host, int32_t port, int family,
                      struct addrinfo **out) {
  struct addrinfo *ai = NULL;
  if (port < 0) {
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(host) >= sizeof sun.sun_path)
      return -ENAMETOOLONG;
    strcpy(sun.sun_path, host);
    ai = rk__ai_new(AF_UNIX, &sun, sizeof sun);
  } else {
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port)};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6,
                                .sin6_port = htons((uint16_t)port)};
    const char *h = host;
    char tmp[INET6_ADDRSTRLEN + 2];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof tmp) {
      memcpy(tmp, host + 1, hl - 2);
      tmp[hl - 2] = '\0';
      h = tmp;
    }
    if (inet_pton(AF_INET, h, &sin.sin_addr) == 1) {
      if (family == RK_FAMILY_ONLY_V6)
        return -EAFNOSUPPORT;
      ai = rk__ai_new(AF_INET, &sin, sizeof sin);
    } else if (inet_pton(AF_INET6, h, &sin6.sin6_addr) == 1) {
      if (family == RK_FAMILY_ONLY_V4)
        return -EAFNOSUPPORT;
      ai = rk__ai_new(AF_INET6, &sin6, sizeof sin6);
    } else {
      return -EINVAL;
    }
  }
  if (ai == NULL)
    return -ENOMEM;
  ai->ai_flags = RK__OWN_AI;
  *out = ai;
  return 0;
}

/* ---- resolver threads ------------------------------------------------ */

/* Put the preferred family first, keeping the resolver's order within each
 * family. ONLY_V4/ONLY_V6 are applied by getaddrinfo's hints already.
 * Relinking is safe: glibc frees a list node by node along ai_next. */
static struct addrinfo *rk__order(struct addrinfo *list, int family) {
  if (family != RK_FAMILY_PREFER_V4 && family != RK_FAMILY_PREFER_V6)
    return list;
  int want = family == RK_FAMILY_PREFER_V4 ? AF_INET : AF_INET6;
  struct addrinfo *first = NULL, **ft = &first, *rest = NULL, **rt = &rest;
  for (struct addrinfo *ai = list; ai != NULL;) {
    struct addrinfo *next = ai->ai_next;
    ai->ai_next = NULL;
    if (ai->ai_family == want) {
      *ft = ai;
      ft = &ai->ai_next;
    } else {
      *rt = ai;
      rt = &ai->ai_next;
    }
    ai = next;
  }
  *ft = rest;
  return first;
}

static void *rk__resolver_main(void *arg) {
  rk__engine *e = arg;
  pthread_mutex_lock(&e->res_lock);
  for (;;) {
    e->res_idle++;
    while (e->res_head == NULL && !e->res_stop)
      pthread_cond_wait(&e->res_cond, &e->res_lock);
    e->res_idle--;
    if (e->res_stop)
      break;
    rk__resolve_req *r = e->res_head;
    e->res_head = r->next;
    if (e->res_head == NULL)
      e->res_tail = NULL;
    pthread_mutex_unlock(&e->res_lock);

    /* a router's name: every address it has, as the host's lookup lists
     * them (no AI_ADDRCONFIG: each one is checked, whatever this host
     * can reach) */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = r->route ? AI_NUMERICSERV
                                                  : AI_ADDRCONFIG | AI_NUMERICSERV};
    if (r->family == RK_FAMILY_ONLY_V4)
      hints.ai_family = AF_INET;
    else if (r->family == RK_FAMILY_ONLY_V6)
      hints.ai_family = AF_INET6;
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    struct addrinfo *ai = NULL;
    int err = getaddrinfo(r->host, port, &hints, &ai) == 0 ? 0 : RK_ERESOLVE;
    if (err == 0)
      ai = rk__order(ai, r->family);
    rk__cmd *c = calloc(1, sizeof *c);
    if (c != NULL) {
      c->type = r->route ? RK__CMD_ROUTE_RESOLVED : RK__CMD_RESOLVED;
      c->id = r->conn_id;
      c->ai = ai;
      c->err = err;
      rk__send(&e->workers[r->worker], c);
    } else {
      rk__ai_free(ai);
    }
    free(r->host);
    free(r);
    pthread_mutex_lock(&e->res_lock);
  }
  pthread_mutex_unlock(&e->res_lock);
  return NULL;
}

/* Queue a request for the resolver threads (one more started if none is
 * idle); 0 or a negative error (then r is freed). */
static int rk__resolve_queue(rk__engine *e, rk__resolve_req *r) {
  pthread_mutex_lock(&e->res_lock);
  /* one more thread when none waits for work (each request then has one,
   * up to the limit; beyond it requests queue) */
  if (e->res_idle == 0 && e->res_started < RK__RESOLVERS) {
    if (pthread_create(&e->res_threads[e->res_started], NULL,
                       rk__resolver_main, e) == 0)
      e->res_started++;
    else if (e->res_started == 0) {
      pthread_mutex_unlock(&e->res_lock);
      free(r->host);
      free(r);
      return -EAGAIN;
    }
  }
  if (e->res_tail != NULL)
    e->res_tail->next = r;
  else
    e->res_head = r;
  e->res_tail = r;
  pthread_cond_signal(&e->res_cond);
  pthread_mutex_unlock(&e->res_lock);
  return 0;
}

void rk__resolve_name(rk__engine *e, rk__conn *c, const char *name) {
  rk__resolve_req *r = calloc(1, sizeof *r);
  if (r != NULL)
    r->host = strdup(name);
  if (r == NULL || r->host == NULL) {
    free(r);
    rk__route_resolved(c, NULL, -ENOMEM);
    return;
  }
  r->conn_id = c->id;
  r->worker = c->w->index;
  r->route = 1;
  int err = rk__resolve_queue(e, r);
  if (err != 0)
    rk__route_resolved(c, NULL, err);
}

void rk__resolve_submit(rk__engine *e, rk__conn *c) {
  rk__resolve_req *r = calloc(1, sizeof *r);
  if (r != NULL)
    r->host = strdup(c->target->host);
  if (r == NULL || r->host == NULL) {
    free(r);
    rk__connect_resolved(c, NULL, -ENOMEM);
    return;
  }
  r->conn_id = c->id;
  r->worker = c->w->index;
  r->port = c->target->port;
  r->family = c->target->family;
  int err = rk__resolve_queue(e, r);
  if (err != 0)
    rk__connect_resolved(c, NULL, err);
}

void rk__resolver_stop(rk__engine *e) {
  pthread_mutex_lock(&e->res_lock);
  int started = e->res_started;
  e->res_stop = 1;
  pthread_cond_broadcast(&e->res_cond);
  pthread_mutex_unlock(&e->res_lock);
  for (int i = 0; i < started; i++)
    pthread_join(e->res_threads[i], NULL);
  while (e->res_head != NULL) {
    rk__resolve_req *r = e->res_head;
    e->res_head = r->next;
    free(r->host);
    free(r);
  }
  e->res_tail = NULL;
}

/* ---- outbound connects ------------------------------------------------- */

static int rk__errno_reason(int err) {
  /* the errno itself is the reason; unreachable kinds collapse into one */
  if (err == -EHOSTUNREACH || err == -ENETDOWN || err == -EHOSTDOWN)
    return -ENETUNREACH;
  return err;
}

static void rk__connect_fail(rk__conn *c, int err) {
  if (c->retry_ok) { /* the host may send it elsewhere: held again */
    rk__hold_retry(c, rk__errno_reason(err));
    return;
  }
  rk__conn_end(c, RK_END_CONNECT_FAILED, rk__errno_reason(err));
}

static void rk__set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* The outbound side is connected: start relaying (or hand the fd over). */
static void rk__connect_done(rk__conn *c) {
  rk__worker *w = c->w;
  int fd = c->side[1].rfd;
  if (c->ai_list != NULL)
    rk__ai_free(c->ai_list);
  c->ai_list = c->ai_next = NULL;
  if (c->kind == RK__KIND_CONNECT_FD) {
    uint32_t rec[RK_EVENT_WORDS] = {RK_EV_FD_CONNECTED, (uint32_t)c->id,
                                    (uint32_t)fd};
    if (c->side[1].r_registered)
      epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
    c->side[1].r_registered = c->side[1].w_registered = 0;
    c->side[1].rfd = c->side[1].wfd = -1; /* now the caller's */
    c->state = RK__RELAYING;                 /* not "connecting": no event */
    rk__post(w->e, rec);
    rk__conn_end(c, RK_END_DONE, 0);
    return;
  }
  if (c->tls_ctx != NULL) {
    /* TLS to the target: both directions through buffers; the handshake
     * starts with the first read or write of the relay */
    const char *name = c->tls_name != NULL && c->tls_name[0] ? c->tls_name
                                                              : NULL;
    c->side[1].tls = rk__tls_new(c->tls_ctx, fd, 0, name);
    if (c->side[1].tls == NULL) {
      rk__conn_end(c, RK_END_RESET, -ENOMEM);
      return;
    }
    for (int d = 0; d < 2; d++) {
      c->dir[d].nosplice = 1;
      c->dir[d].splice = 0;
    }
    c->dir[1].can_read = 1; /* a first read starts the handshake, even
                               where the client has nothing to send */
  }
  c->dir[0].active = c->dir[1].active = 1;
  /* What the client sent while we connected (or while it was held) waits
   * in the kernel: its edges were remembered (rk__connect_event, and
   * rk__hold_event while held), so a client the hold drained is not read
   * again for an EAGAIN. Bytes that came with its TLS handshake may wait
   * inside TLS, where no edge tells of them. */
  if (c->side[0].tls != NULL)
    c->dir[0].can_read = 1;
  int r = 0; /* side 1 stays registered from the connect */
  if (!c->side[0].r_registered)
    r = rk__side_register(w, c, &c->side[0]);
  if (r < 0) {
    rk__conn_end(c, RK_END_RESET, r);
    return;
  }
  RK__STORE(&c->state, RK__RELAYING);
  if (c->listener == NULL || rk__listener_wants(c->listener, RK_EVMASK_CONNECTED)) {
    uint32_t rec[RK_EVENT_WORDS] = {
        RK_EV_CONNECTED, (uint32_t)c->id,
        c->listener != NULL ? (uint32_t)c->listener->id : 0};
    rk__post(w->e, rec);
  }
  rk__conn_run(c);
}

/* Try the next candidate address. */
static void rk__connect_next(rk__conn *c, int last_err) {
  rk__worker *w = c->w;
  rk__target *t = c->target;
  while (c->ai_next != NULL) {
    struct addrinfo *ai = c->ai_next;
    c->ai_next = ai->ai_next;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0) {
      last_err = -errno;
      continue;
    }
    if (t->bind_host != NULL && ai->ai_family != AF_UNIX) {
      struct addrinfo *bai = NULL;
      int r = rk__parse_numeric(t->bind_host, 0, RK_FAMILY_ANY, &bai);
      if (r == 0 && bai->ai_family != ai->ai_family)
        r = -EAFNOSUPPORT;
      if (r == 0) {
        int one = 1;
        setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, bai->ai_addr, bai->ai_addrlen) != 0)
          r = -errno;
      }
      rk__ai_free(bai);
      if (r != 0) {
        close(fd);
        last_err = r;
        continue;
      }
    }
    int r;
    RK__RETRY(r, connect(fd, ai->ai_addr, ai->ai_addrlen));
    if (r != 0 && errno != EINPROGRESS) {
      last_err = -errno;
      close(fd);
      continue;
    }
    rk__side_init_sock(&c->side[1], fd);
    /* a new socket has nothing to read until an input edge says so
     * (rk__connect_event remembers one that comes while connecting) */
    c->dir[1].can_read = r != 0 ? 0 : 1;
    c->dir[1].rdhup = 0; /* (an earlier address's failure set it) */
    if (ai->ai_family != AF_UNIX)
      rk__set_nodelay(fd);
    /* registered once for good: the relay uses the same registration */
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP | EPOLLET,
                             .data.u64 = RK__EPDATA(c, 1)};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      last_err = -errno;
      close(fd);
      c->side[1].rfd = c->side[1].wfd = -1;
      continue;
    }
    c->side[1].r_registered = c->side[1].w_registered = 1;
    if (r == 0) /* connected at once (Unix sockets, mostly) */
      rk__connect_done(c);
    return;
  }
  rk__connect_fail(c, last_err);
}

void rk__connect_resolved(rk__conn *c, struct addrinfo *ai, int err) {
  if (c->state != RK__CONNECTING) {
    rk__ai_free(ai);
    return;
  }
  if (err != 0 || ai == NULL) {
    rk__connect_fail(c, err != 0 ? err : RK_ERESOLVE);
    return;
  }
  c->ai_list = c->ai_next = ai;
  rk__connect_next(c, RK_ERESOLVE);
}

void rk__connect_start(rk__conn *c) {
  rk__target *t = c->target;
  if (t->timeout_ms > 0)
    c->connect_deadline_ms = rk__now_mono() + t->timeout_ms;
  /* The client side is watched while connecting, so that a client reset
   * is noticed; its data waits in the kernel until the relay starts. */
  if (c->side[0].rfd >= 0 && !c->side[0].r_registered) {
    int r = rk__side_register(c->w, c, &c->side[0]);
    if (r < 0) {
      rk__connect_fail(c, r);
      return;
    }
  }
  struct addrinfo *ai = NULL;
  int r = rk__parse_numeric(t->host, t->port, t->family, &ai);
  if (r == -EINVAL) {
    rk__resolve_submit(c->w->e, c);
    return;
  }
  rk__connect_resolved(c, ai, r);
}

void rk__connect_event(rk__conn *c, int side, uint32_t events) {
  int fd = c->side[1].rfd;
  if (events == 0) { /* deadline */
    if (fd >= 0) {
      epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, fd, NULL);
      close(fd);
      c->side[1].rfd = c->side[1].wfd = -1;
      c->side[1].r_registered = c->side[1].w_registered = 0;
    }
    rk__connect_fail(c, -ETIMEDOUT);
    return;
  }
  /* An edge will not come again: remember it for the relay (bytes to
   * read; an EOF that only a read to the end will find - a target may
   * answer and close before its connect is seen done). */
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    c->dir[side].can_read = 1;
  if (events & (EPOLLRDHUP | EPOLLHUP))
    c->dir[side].rdhup = 1;
  if (side == 0) {
    /* The client while we connect: only an error matters (its data waits
     * in the kernel until the relay runs). */
    if (events & (EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t len = sizeof err;
      if (getsockopt(c->side[0].rfd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
          err != 0)
        rk__conn_end(c, RK_END_RESET, -err);
    }
    return;
  }
  if (fd < 0)
    return;
  int err = 0;
  if (events & (EPOLLERR | EPOLLHUP)) {
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
    if (err == 0)
      err = ECONNREFUSED; /* HUP without a pending error */
  } else if (!(events & EPOLLOUT)) {
    return; /* not writable yet: still connecting */
  }
  if (err == 0) {
    rk__connect_done(c);
    return;
  }
  epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  c->side[1].rfd = c->side[1].wfd = -1;
  c->side[1].r_registered = c->side[1].w_registered = 0;
  rk__connect_next(c, -err);
}

int32_t rk_connect_fd(int32_t h, const char *host, int32_t port,
                      int32_t family, int32_t timeout_ms,
                      const char *bind_host) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (host == NULL || port > 65535 || timeout_ms < 0 || family < 0 ||
      family > RK_FAMILY_ONLY_V6)
    return -EINVAL;
  rk__conn *c = rk__conn_new(e, RK__KIND_CONNECT_FD);
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  rk__target *t = rk__copy_target(host, port, family, timeout_ms, bind_host);
  if (c == NULL || cmd == NULL || t == NULL) {
    free(c);
    free(cmd);
    rk__free_target(t);
    return -ENOMEM;
  }
  c->target = t;
  c->owns_target = 1;
  c->state = RK__CONNECTING;
  cmd->type = RK__CMD_START_CONNECT;
  int32_t id = c->id;
  int32_t r = rk__conn_publish(e, c, cmd);
  if (r < 0) { /* the engine is closing */
    rk__free_target(t);
    free(c);
    free(cmd);
    return r;
  }
  return id;
}
