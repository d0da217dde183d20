/*
 * hold.c - connections held for a decision by the host.
 *
 * Theory of operation
 * A listener with RK_LISTEN_HOLD accepts as usual but connects nowhere.
 * Each connection starts in RK__HOLDING: its socket is registered, and
 * RK_EV_HOLD goes out at once with the client's and the local address (and,
 * with rk_listener_set_hold_first, what the client has already sent, up to
 * that maximum: one round trip less where clients speak first). From
 * then on the host drives it:
 *   rk_hold_read   read until at least one byte more, EOF, or the asked
 *                  maximum, then post RK_EV_HOLD again (and stop reading:
 *                  the host asks for each step, so a held connection never
 *                  holds more than the host allowed)
 *   rk_hold_take   copy the held bytes out
 *   rk_hold_decide CONNECT: the bytes to send first (a PROXY header, a
 *                  rewritten request) and the held bytes not consumed
 *                  become direction a->b's pending buffer, a reply to the
 *                  client becomes b->a's, and the ordinary connect and
 *                  relay take over - the relay writes pending bytes before
 *                  reading anything, so the order on the wire is exact.
 *                  CLOSE: the reply becomes b->a's pending buffer with EOF
 *                  behind it, and a->b reads and drops whatever the client
 *                  still sends (closing a socket with unread bytes would
 *                  reset it and could destroy the reply in flight) until
 *                  the client closes or RK__LINGER_MS passes.
 * A hold timeout, checked by the sweep like the other timeouts, ends a
 * connection that is still undecided (RK_END_HOLD_TIMEOUT).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Free bytes a direction holds from an earlier decision (always malloc'd
 * while held: no pool buffer is taken before relaying starts). */
static void rk__dir_own_release(rk__dir *d) {
  if (d->buf != NULL && d->buf_own)
    free(d->buf);
  d->buf = NULL;
  d->buf_own = 0;
  d->buf_off = d->buf_len = 0;
}

void rk__cmd_free(rk__cmd *cmd) {
  if (cmd->type == RK__CMD_HOLD_DECIDE &&
      cmd->decision.action == RK_DECIDE_FILE &&
      cmd->arg >= 0)
    close(cmd->arg); /* the file nobody took */
  rk__ai_free(cmd->ai);
  free(cmd->data);
  free(cmd->data2);
  rk__free_target(cmd->target);
  rk__tls_ctx_unref(cmd->tls_ctx);
  free(cmd);
}

/* rk_hold_set_tls reached the worker: the next CONNECT speaks TLS. */
void rk__hold_tls_cmd(rk__conn *c, rk__cmd *cmd) {
  if (c->state != RK__HOLDING)
    return; /* decided already: too late, cmd is freed by the caller */
  rk__hold_tls_drop(c);
  c->tls_ctx = cmd->tls_ctx;
  c->tls_name = (char *)cmd->data;
  cmd->tls_ctx = NULL;
  cmd->data = NULL;
}

/* Forget the TLS for the target (the connection ends, or a failed connect
 * goes back to the host, which says again what the next one speaks). */
void rk__hold_tls_drop(rk__conn *c) {
  rk__tls_ctx_unref(c->tls_ctx);
  free(c->tls_name);
  c->tls_ctx = NULL;
  c->tls_name = NULL;
}

void rk__hold_post(rk__conn *c, uint32_t flags) {
  if (c->first_due_ms != 0) { /* the first event waited for bytes */
    c->first_due_ms = 0;
    flags |= RK_HOLD_FIRST;
  }
  if (rk__pp_held(c, &flags))
    return; /* the engine read the PROXY header itself (proxyhdr.c) */
  if (c->router != NULL && !c->route_deferred) {
    rk__route_input(c, flags); /* the listener's router decides */
    return;
  }
  uint32_t rec[RK_EVENT_WORDS] = {RK_EV_HOLD, (uint32_t)c->id,
                                  (uint32_t)c->listener->id};
  rec[4] = flags;
  rec[5] = c->hold_len;
  rec[6] = c->peer.ss_family;
  if (flags & RK_HOLD_FIRST) {
    rk__put_addr(rec, 7, 8, &c->peer);
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    memset(&local, 0, sizeof local);
    if (getsockname(c->side[0].rfd, (struct sockaddr *)&local, &len) == 0 &&
        local.ss_family == c->peer.ss_family)
      rk__put_addr(rec, 3, 12, &local);
  }
  c->hold_max = 0; /* wait to be asked again */
  __atomic_store_n(&c->hold_posted, 1, __ATOMIC_RELEASE);
  rk__post(c->w->e, rec);
}

static void rk__hold_pump(rk__conn *c);
static int rk__hold_fill(rk__conn *c);
static uint32_t rk__hold_flags(rk__conn *c);

void rk__hold_start(rk__conn *c) {
  /* (registered already after a TLS handshake) */
  int r = c->side[0].r_registered ? 0 : rk__side_register(c->w, c, &c->side[0]);
  if (r < 0) {
    rk__conn_end(c, RK_END_RESET, r);
    return;
  }
  if (c->listener->hold_timeout_ms > 0)
    c->hold_deadline_ms = rk__now_mono() + c->listener->hold_timeout_ms;
  c->router = rk__router_take(c->listener);
  if (c->router != NULL) {
    rk__route_start(c);
    /* what came with the client's TLS handshake may wait inside TLS (or
     * in the socket, its edge spent on the handshake): read it now */
    if (c->side[0].tls != NULL)
      rk__hold_pump(c);
    return;
  }
  uint32_t first = __atomic_load_n(&c->listener->hold_first, __ATOMIC_RELAXED);
  uint32_t flags = 0;
  if (first > 0) { /* what the client already sent comes with the first post */
    c->hold_max = first;
    c->dir[0].can_read = 1; /* try once: EAGAIN clears it */
    if (rk__hold_fill(c) < 0)
      return;
    flags = rk__hold_flags(c);
    if (c->hold_len == 0 && flags == 0 &&
        __atomic_load_n(&c->listener->hold_wait, __ATOMIC_RELAXED)) {
      /* nothing yet: the first event waits for the first bytes (the
       * client's event pumps; hold_max stays), or for the sweep */
      c->first_due_ms = rk__now_mono() + RK__SWEEP_MS;
      return;
    }
  }
  rk__hold_post(c, RK_HOLD_FIRST | flags);
}

void rk__hold_sweep(rk__conn *c, int64_t now) {
  if (c->first_due_ms != 0 && now >= c->first_due_ms)
    rk__hold_post(c, rk__hold_flags(c)); /* FIRST, with none */
}

/* Read what was asked for, if anything was, without posting: 1 if bytes
 * came, 0 if none, -1 if the connection ended. */
static int rk__hold_fill(rk__conn *c) {
  rk__dir *dir = &c->dir[0];
  int fd = c->side[0].rfd;
  int got = 0;
  while (dir->can_read && !dir->eof && c->hold_len < c->hold_max) {
    uint32_t room = c->hold_max - c->hold_len;
    if (room > RK__BUF_SIZE)
      room = RK__BUF_SIZE;
    if (c->hold_cap < c->hold_len + room) {
      uint8_t *b = realloc(c->hold_buf, c->hold_len + room);
      if (b == NULL) {
        rk__conn_end(c, RK_END_RESET, -ENOMEM);
        return -1;
      }
      c->hold_buf = b;
      c->hold_cap = c->hold_len + room;
    }
    ssize_t n;
    if (c->side[0].tls != NULL) {
      /* records may wait inside TLS: only -EAGAIN says drained */
      uint32_t want;
      n = rk__tls_read(c->side[0].tls, c->hold_buf + c->hold_len, room, &want);
      if (n == -EAGAIN) {
        if (want == EPOLLIN)
          dir->can_read = 0;
        break; /* EPOLLOUT: the next event of the client pumps again */
      }
      if (n < 0) {
        rk__conn_end(c, RK_END_RESET, (int)n);
        return -1;
      }
    } else {
      RK__RETRY(n, read(fd, c->hold_buf + c->hold_len, room));
    }
    if (n < 0) {
      if (errno != EAGAIN) {
        rk__conn_end(c, RK_END_RESET, -errno);
        return -1;
      }
      dir->can_read = 0;
      break;
    }
    if (n == 0) {
      dir->eof = 1;
      break;
    }
    c->hold_len += (uint32_t)n;
    RK__ADD(&dir->rd, (uint64_t)n);
    RK__STORE(&c->last_mono_ms, rk__now_mono());
    got = 1;
    if ((uint32_t)n < room && !dir->rdhup && c->side[0].tls == NULL) {
      dir->can_read = 0; /* drained: the next bytes raise a new edge */
      break;
    }
  }
  return got;
}

/* EOF and FULL as they stand. */
static uint32_t rk__hold_flags(rk__conn *c) {
  return (c->dir[0].eof ? RK_HOLD_EOF : 0) |
         (c->hold_max > 0 && c->hold_len >= c->hold_max ? RK_HOLD_FULL : 0);
}

/* Read what was asked for, if anything was; post once something came. */
static void rk__hold_pump(rk__conn *c) {
  if (c->hold_max == 0)
    return; /* not asked to read */
  int got = rk__hold_fill(c);
  if (got < 0)
    return;
  uint32_t flags = rk__hold_flags(c);
  if (got || flags != 0)
    rk__hold_post(c, flags);
}

void rk__hold_event(rk__conn *c, int side, uint32_t events) {
  if (side != 0)
    return;
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->side[0].rfd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
        err != 0) {
      rk__conn_end(c, RK_END_RESET, -err);
      return;
    }
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    c->dir[0].can_read = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      c->dir[0].rdhup = 1;
  }
  rk__hold_pump(c);
}

void rk__hold_write_cmd(rk__conn *c, const uint8_t *data, uint32_t len) {
  if (c->state != RK__HOLDING)
    return;
  uint32_t off = 0;
  while (off < len) {
    ssize_t n;
    if (c->side[0].tls != NULL) {
      uint32_t want;
      n = rk__tls_write(c->side[0].tls, data + off, len - off, &want);
      if (n < 0) { /* as below: -EAGAIN is a client that does not read */
        rk__conn_end(c, RK_END_RESET, (int)n);
        return;
      }
    } else {
      RK__RETRY(n, write(c->side[0].wfd, data + off, len - off));
    }
    if (n < 0) {
      /* EAGAIN: the client does not read even a handshake reply */
      rk__conn_end(c, RK_END_RESET, -errno);
      return;
    }
    off += (uint32_t)n;
    rk__wrote(c, &c->dir[1], (uint64_t)n);
  }
}

void rk__hold_read_cmd(rk__conn *c, uint32_t max) {
  if (c->state != RK__HOLDING)
    return;
  __atomic_store_n(&c->hold_posted, 0, __ATOMIC_RELEASE);
  c->hold_max = max;
  rk__hold_pump(c);
}

void rk__hold_retry(rk__conn *c, int err) {
  rk__hold_tls_drop(c);
  rk__ai_free(c->ai_list);
  c->ai_list = c->ai_next = NULL;
  if (c->owns_target)
    rk__free_target(c->target);
  c->target = NULL;
  c->owns_target = 0;
  c->retry_ok = 0;
  c->connect_deadline_ms = 0;
  RK__STORE(&c->state, RK__HOLDING);
  if (c->listener->hold_timeout_ms > 0)
    c->hold_deadline_ms = rk__now_mono() + c->listener->hold_timeout_ms;
  if (rk__route_connect_failed(c, err))
    return; /* the router's failure reply */
  uint32_t rec[RK_EVENT_WORDS] = {RK_EV_HOLD, (uint32_t)c->id,
                                  (uint32_t)c->listener->id, (uint32_t)err,
                                  RK_HOLD_RETRY};
  rec[6] = c->peer.ss_family;
  c->hold_max = 0;
  __atomic_store_n(&c->hold_posted, 1, __ATOMIC_RELEASE);
  rk__post(c->w->e, rec);
}

void rk__hold_decide_cmd(rk__conn *c, rk__cmd *cmd) {
  if (c->state != RK__HOLDING)
    return; /* decided twice, or ended meanwhile: cmd is freed by the caller */
  __atomic_store_n(&c->hold_posted, 0, __ATOMIC_RELEASE);
  c->hold_max = 0;
  c->hold_deadline_ms = 0;
  const rk_decision_t *d = &cmd->decision;
  uint32_t consume = d->consume;
  if (consume > c->hold_len)
    consume = c->hold_len;
  uint32_t rest = c->hold_len - consume;
  int32_t action = d->action;
  if (d->idle_timeout_ms >= 0)
    c->idle_timeout_ms = d->idle_timeout_ms;

  /* b->a: the reply, written to the client before anything from b */
  if (cmd->len2 > 0) {
    rk__dir_own_release(&c->dir[1]); /* a retry's earlier reply */
    c->dir[1].buf = cmd->data2;
    c->dir[1].buf_own = 1;
    c->dir[1].buf_off = 0;
    c->dir[1].buf_len = cmd->len2;
    cmd->data2 = NULL;
  }

  if (action == RK_DECIDE_CLOSE || action == RK_DECIDE_FILE) {
    /* after a failed connect: its bytes go nowhere, its reply neither */
    rk__dir_own_release(&c->dir[0]);
    if (cmd->len2 == 0)
      rk__dir_own_release(&c->dir[1]);
    free(c->hold_buf);
    c->hold_buf = NULL;
    c->hold_len = c->hold_cap = 0;
    c->dir[1].active = 1;
    c->dir[1].hooked = 0;
    c->dir[0].active = 1;
    c->dir[0].discard = c->dir[0].nosplice = 1;
    c->dir[0].hooked = 0;
    if (action == RK_DECIDE_CLOSE) {
      c->dir[1].eof = 1; /* no source: the reply, then FIN */
      /* a client that never reads its reply is cut after the linger time */
      c->hold_deadline_ms = rk__now_mono() + RK__LINGER_MS;
      RK__STORE(&c->state, RK__CLOSING);
    } else {
      /* side b is the file, sent with sendfile(2); regular files cannot be
       * polled and are never registered */
      rk__side_init(&c->side[1], cmd->arg, -1);
      c->side[1].r_pollable = 0;
      cmd->arg = -1;
      /* to a TLS client: read and SSL_write, not sendfile(2) */
      c->dir[1].sendfile = c->side[0].tls == NULL;
      c->dir[1].limit = (uint64_t)d->length;
      RK__STORE(&c->state, RK__RELAYING);
    }
    rk__conn_run(c);
    return;
  }

  /* a->b: what the host sends first, then the held bytes it kept. After a
   * failed connect (RK_HOLD_RETRY) dir[0] still holds the earlier
   * decision's to_b with the client's bytes behind it: a new to_b replaces
   * the old one, the client's bytes stay (none was sent anywhere). */
  uint8_t *old = c->dir[0].buf_own ? c->dir[0].buf : NULL;
  uint32_t old_len = old != NULL ? c->dir[0].buf_len : 0;
  uint32_t old_skip = cmd->len > 0 ? c->to_b_len : 0;
  if (old_skip > old_len)
    old_skip = old_len;
  uint32_t kept = old_len - old_skip;
  if (cmd->len == 0 && kept == 0 && consume == 0 && rest > 0) {
    /* the held bytes as they are (the usual route): the buffer itself,
     * cut to their size (in place) while it waits for the connect */
    uint8_t *b = rest < c->hold_cap ? realloc(c->hold_buf, rest) : NULL;
    rk__dir_own_release(&c->dir[0]);
    c->dir[0].buf = b != NULL ? b : c->hold_buf;
    c->dir[0].buf_own = 1;
    c->dir[0].buf_off = 0;
    c->dir[0].buf_len = rest;
    c->hold_buf = NULL;
  } else if (cmd->len > 0 || rest > 0) {
    uint32_t blen = cmd->len + kept + rest;
    uint8_t *b = malloc(blen);
    if (b == NULL) {
      rk__conn_end(c, RK_END_RESET, -ENOMEM);
      return;
    }
    if (cmd->len > 0)
      memcpy(b, cmd->data, cmd->len);
    if (kept > 0)
      memcpy(b + cmd->len, old + old_skip, kept);
    if (rest > 0)
      memcpy(b + cmd->len + kept, c->hold_buf + consume, rest);
    rk__dir_own_release(&c->dir[0]);
    c->dir[0].buf = b;
    c->dir[0].buf_own = 1;
    c->dir[0].buf_off = 0;
    c->dir[0].buf_len = blen;
    if (cmd->len > 0)
      c->to_b_len = cmd->len;
  } /* else nothing new: the bytes of an earlier decision stay as they are */
  free(c->hold_buf);
  c->hold_buf = NULL;
  c->hold_len = c->hold_cap = 0;
  c->target = cmd->target;
  c->owns_target = 1;
  cmd->target = NULL;
  c->retry_ok = (d->flags & RK_DECISION_RETRY) != 0;
  RK__STORE(&c->state, RK__CONNECTING);
  rk__connect_start(c);
}

/* ---- public ------------------------------------------------------------ */


int32_t rk_hold_set_tls(int32_t h, int32_t id, int32_t ctx,
                        const char *servername) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (!rk_tls_load(NULL, NULL, 0))
    return RK_ENOTLS;
  void *c = rk__tls_ctx_ref(ctx); /* here: the host may free the handle */
  if (c == NULL)
    return -ENOENT;
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  char *name = strdup(servername != NULL ? servername : "");
  if (cmd == NULL || name == NULL) {
    free(cmd);
    free(name);
    rk__tls_ctx_unref(c);
    return -ENOMEM;
  }
  cmd->type = RK__CMD_HOLD_TLS;
  cmd->tls_ctx = c;
  cmd->data = (uint8_t *)name;
  return rk__send_to_conn(e, id, cmd);
}

int32_t rk_hold_read(int32_t h, int32_t id, int32_t max) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (max <= 0)
    return -EINVAL;
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  if (cmd == NULL)
    return -ENOMEM;
  cmd->type = RK__CMD_HOLD_READ;
  cmd->arg = max;
  return rk__send_to_conn(e, id, cmd);
}

static uint8_t *rk__dup_bytes(const uint8_t *data, int32_t len) {
  uint8_t *copy = malloc(len > 0 ? (size_t)len : 1);
  if (copy != NULL && len > 0)
    memcpy(copy, data, (size_t)len);
  return copy;
}

int32_t rk_hold_write(int32_t h, int32_t id, const uint8_t *data,
                      int32_t len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (len <= 0 || data == NULL)
    return -EINVAL;
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  if (cmd == NULL)
    return -ENOMEM;
  cmd->type = RK__CMD_HOLD_WRITE;
  cmd->data = rk__dup_bytes(data, len);
  cmd->len = (uint32_t)len;
  if (cmd->data == NULL) {
    free(cmd);
    return -ENOMEM;
  }
  return rk__send_to_conn(e, id, cmd);
}

int32_t rk_hold_take(int32_t h, int32_t id, uint8_t *out, int32_t cap) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (cap < 0)
    return -EINVAL;
  pthread_mutex_lock(&e->tbl_lock);
  rk__conn *c = rk__table_find_locked(e, id);
  int32_t r;
  if (c == NULL) {
    r = -ENOENT;
  } else if (!__atomic_load_n(&c->hold_posted, __ATOMIC_ACQUIRE)) {
    r = -EINVAL;
  } else {
    /* the worker leaves held bytes alone until the next rk_hold_read or
     * rk_hold_decide from this same thread, and cannot free them while we
     * hold tbl_lock (an ending connection leaves the table first) */
    r = (int32_t)c->hold_len;
    if (r > 0)
      memcpy(out, c->hold_buf, (size_t)(r < cap ? r : cap));
  }
  pthread_mutex_unlock(&e->tbl_lock);
  return r;
}

int32_t rk_engine_drain_held(int32_t h, uint32_t *out, int32_t max_events,
                             uint8_t *held, int32_t held_cap,
                             int32_t *spans) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  /* checked before any record leaves the queue */
  if (spans == NULL || held_cap < 0 || (held_cap > 0 && held == NULL))
    return -EINVAL;
  int32_t n = rk_engine_drain(h, out, max_events);
  if (n <= 0)
    return n;
  for (int32_t i = 0; i < n; i++)
    spans[2 * i] = -1, spans[2 * i + 1] = 0;
  uint32_t used = 0, cap = (uint32_t)held_cap;
  /* after q_lock is let go (a worker may post while it holds tbl_lock):
   * the host has not seen these records yet, so it has asked nothing of
   * their connections since, and the held bytes are those announced */
  pthread_mutex_lock(&e->tbl_lock);
  for (int32_t i = 0; i < n; i++) {
    const uint32_t *rec = out + (size_t)i * RK_EVENT_WORDS;
    if (rec[0] != RK_EV_HOLD)
      continue;
    rk__conn *c = rk__table_find_locked(e, (int32_t)rec[1]);
    if (c == NULL || !__atomic_load_n(&c->hold_posted, __ATOMIC_ACQUIRE))
      continue; /* rk_hold_take says so */
    uint32_t len = c->hold_len;
    if (len > cap - used)
      continue; /* too many: rk_hold_take copies them */
    if (len > 0)
      memcpy(held + used, c->hold_buf, len);
    spans[2 * i] = (int32_t)used;
    spans[2 * i + 1] = (int32_t)len;
    used += len;
  }
  pthread_mutex_unlock(&e->tbl_lock);
  return n;
}

/* Open a file for a FILE decision and seek to d->offset; the length is
 * d->length (-1: to the end), checked against the file's size. */
static int rk__open_range(const char *path, const rk_decision_t *d,
                          int *fd_out, uint64_t *length) {
  if (d->offset < 0 || d->length < -1)
    return -ERANGE;
  uint64_t offset = (uint64_t)d->offset;
  int to_end = d->length == -1;
  uint64_t want = to_end ? 0 : (uint64_t)d->length;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  if (rk__fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int err = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    close(fd);
    return err;
  }
  uint64_t size = (uint64_t)st.st_size;
  if (offset > size || (!to_end && want > size - offset) ||
      lseek(fd, (off_t)offset, SEEK_SET) < 0) {
    close(fd);
    return -ERANGE;
  }
  *fd_out = fd;
  *length = to_end ? size - offset : want;
  return 0;
}


/* Whether a decision's values make sense: 0 or -EINVAL. */
static int32_t rk__decide_check(const rk_decision_t *d) {
  int32_t action = d->action;
  if (action == RK_DECIDE_CONNECT)
    return d->port > 65535 || d->family < 0 || d->family > RK_FAMILY_ONLY_V6 ||
                   d->connect_timeout_ms < 0
               ? -EINVAL
               : 0;
  return action == RK_DECIDE_CLOSE || action == RK_DECIDE_FILE ? 0 : -EINVAL;
}

/* Check a decision and build its command (RK__CMD_HOLD_DECIDE). */
static int32_t rk__decide_cmd_new(const char *host, const char *bind_host,
                                  const rk_decision_t *decision,
                                  const uint8_t *to_b, int32_t to_b_len,
                                  const uint8_t *to_a, int32_t to_a_len,
                                  rk__cmd **out) {
  if (decision == NULL || to_b_len < 0 || to_a_len < 0 ||
      (to_b_len > 0 && to_b == NULL) || (to_a_len > 0 && to_a == NULL))
    return -EINVAL;
  const rk_decision_t *d = decision;
  int32_t action = d->action;
  if (rk__decide_check(d) < 0 || (action == RK_DECIDE_CONNECT && host == NULL))
    return -EINVAL;
  int fd = -1;
  uint64_t length = 0;
  if (action == RK_DECIDE_FILE) {
    if (host == NULL)
      return -EINVAL;
    int r = rk__open_range(host, d, &fd, &length);
    if (r < 0)
      return r;
  }
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  if (cmd == NULL) {
    if (fd >= 0)
      close(fd);
    return -ENOMEM;
  }
  cmd->type = RK__CMD_HOLD_DECIDE;
  cmd->decision = *d;
  cmd->arg = fd;
  cmd->decision.length = (int64_t)length;
  /* none: NULL (the usual decision sends nothing of its own) */
  cmd->data = to_b_len > 0 ? rk__dup_bytes(to_b, to_b_len) : NULL;
  cmd->len = (uint32_t)to_b_len;
  cmd->data2 = to_a_len > 0 ? rk__dup_bytes(to_a, to_a_len) : NULL;
  cmd->len2 = (uint32_t)to_a_len;
  if (action == RK_DECIDE_CONNECT)
    cmd->target = rk__copy_target(host, d->port, d->family,
                                  d->connect_timeout_ms, bind_host);
  if ((to_b_len > 0 && cmd->data == NULL) ||
      (to_a_len > 0 && cmd->data2 == NULL) ||
      (action == RK_DECIDE_CONNECT && cmd->target == NULL)) {
    rk__cmd_free(cmd);
    return -ENOMEM;
  }
  *out = cmd;
  return 0;
}

int32_t rk_hold_decide(int32_t h, int32_t id, const char *host,
                       const char *bind_host, const rk_decision_t *decision,
                       const uint8_t *to_b, int32_t to_b_len,
                       const uint8_t *to_a, int32_t to_a_len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  rk__cmd *cmd = NULL;
  int32_t r = rk__decide_cmd_new(host, bind_host, decision, to_b, to_b_len,
                                 to_a, to_a_len, &cmd);
  if (r < 0)
    return r;
  return rk__send_to_conn(e, id, cmd);
}

/* A NUL-terminated copy of n bytes: in `room` (room_len bytes) when it
 * fits, else malloc'd (then the caller frees it). */
static char *rk__dup_str(const uint8_t *s, uint32_t n, char *room,
                         size_t room_len) {
  char *copy = (size_t)n < room_len ? room : malloc((size_t)n + 1);
  if (copy != NULL) {
    memcpy(copy, s, n);
    copy[n] = '\0';
  }
  return copy;
}

/* Whether one rk_hold_submit record can be carried out: 0 or -EINVAL.
 * Checked on the host's thread, so that a bad record aborts its connection
 * there, as a bad call would fail. */
static int32_t rk__submit_check(const uint8_t *rec, uint32_t op, uint32_t size,
                                uint32_t arg) {
  uint32_t room = size - RK_HOLD_OP_HEAD;
  if (op == RK_HOLD_OP_READ)
    return arg == 0 || arg > INT32_MAX ? -EINVAL : 0;
  if (op == RK_HOLD_OP_WRITE)
    return arg == 0 || arg > room ? -EINVAL : 0;
  if (op != RK_HOLD_OP_DECIDE)
    return -EINVAL;
  rk_decision_t d;
  uint32_t lens[4];
  if (room < sizeof d + sizeof lens)
    return -EINVAL;
  memcpy(&d, rec + RK_HOLD_OP_HEAD, sizeof d);
  memcpy(lens, rec + RK_HOLD_OP_HEAD + sizeof d, sizeof lens);
  room -= (uint32_t)(sizeof d + sizeof lens);
  uint64_t total = (uint64_t)lens[0] + lens[1] + lens[2] + lens[3];
  if (total > room || lens[2] > INT32_MAX || lens[3] > INT32_MAX ||
      d.action == RK_DECIDE_FILE) /* FILE opens its file: rk_hold_decide */
    return -EINVAL;
  return rk__decide_check(&d);
}

/* The command of a checked DECIDE record, or -ENOMEM. */
static int32_t rk__submit_decide(const uint8_t *rec, rk__cmd **out) {
  const uint8_t *p = rec + RK_HOLD_OP_HEAD;
  rk_decision_t d;
  uint32_t lens[4];
  memcpy(&d, p, sizeof d);
  memcpy(lens, p + sizeof d, sizeof lens);
  p += sizeof d + sizeof lens;
  /* the usual names need no allocation of their own (the target copies them) */
  char host_room[256], bind_room[64];
  char *host = rk__dup_str(p, lens[0], host_room, sizeof host_room);
  char *bind = rk__dup_str(p + lens[0], lens[1], bind_room, sizeof bind_room);
  int32_t r = -ENOMEM;
  if (host != NULL && bind != NULL)
    r = rk__decide_cmd_new(host, bind, &d, p + lens[0] + lens[1],
                           (int32_t)lens[2], p + lens[0] + lens[1] + lens[2],
                           (int32_t)lens[3], out);
  if (host != host_room)
    free(host);
  if (bind != bind_room)
    free(bind);
  return r;
}

/* The records of an rk_hold_submit reached worker w (RK__CMD_HOLD_BATCH:
 * checked records, this worker's among them): carry out its connections'
 * ones in order. What a decision allocates is allocated here, on the
 * thread that frees it. */
void rk__hold_batch_run(rk__worker *w, rk__cmd *batch) {
  uint32_t off = 0;
  while (off + RK_HOLD_OP_HEAD <= batch->len) {
    const uint8_t *rec = batch->data + off;
    uint32_t head[4];
    memcpy(head, rec, sizeof head);
    off += head[2];
    rk__conn *c = rk__worker_find(w, (int32_t)head[1]);
    if (c == NULL)
      continue; /* another worker's, or it ended meanwhile */
    if (head[0] == RK_HOLD_OP_READ) {
      rk__hold_read_cmd(c, head[3]);
    } else if (head[0] == RK_HOLD_OP_WRITE) {
      rk__hold_write_cmd(c, rec + RK_HOLD_OP_HEAD, head[3]);
    } else {
      rk__cmd *cmd = NULL;
      int32_t r = rk__submit_decide(rec, &cmd);
      if (r < 0) {
        if (c->state == RK__HOLDING)
          rk__conn_end(c, RK_END_RESET, r);
        continue;
      }
      rk__hold_decide_cmd(c, cmd);
      rk__cmd_free(cmd); /* and what the connection did not take over */
    }
  }
}

int32_t rk_hold_submit(int32_t h, const uint8_t *buf, int32_t len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (len < 0 || (len > 0 && buf == NULL))
    return -EINVAL;
  if (len == 0)
    return 0;
  /* the records that can be carried out, for connections that are there,
   * copied once; each worker concerned gets them in one command and is
   * woken once (the workers marked on the stack for the usual pools) */
  uint8_t woken_room[64] = {0};
  uint8_t *woken = e->nworkers <= (int)sizeof woken_room
                       ? woken_room
                       : calloc((size_t)e->nworkers, 1);
  uint8_t *ok = malloc((size_t)len);
  if (woken == NULL || ok == NULL) {
    if (woken != woken_room)
      free(woken);
    free(ok);
    return -ENOMEM;
  }
  int32_t done = 0, bad = 0;
  uint32_t off = 0, kept = 0;
  while (off < (uint32_t)len) {
    uint32_t head[4];
    if ((uint32_t)len - off < RK_HOLD_OP_HEAD) {
      bad = -EINVAL;
      break;
    }
    memcpy(head, buf + off, sizeof head);
    uint32_t op = head[0], size = head[2], arg = head[3];
    int32_t id = (int32_t)head[1];
    if (size < RK_HOLD_OP_HEAD || size % 8 != 0 || size > (uint32_t)len - off) {
      bad = -EINVAL; /* the records after this one cannot be found */
      break;
    }
    if (rk__submit_check(buf + off, op, size, arg) < 0) {
      rk_conn_close(h, id, RK_CLOSE_ABORT); /* not left held without end */
    } else {
      rk__worker *w = rk__conn_worker(e, id);
      if (w != NULL) {
        memcpy(ok + kept, buf + off, size);
        kept += size;
        woken[w->index] = 1;
        done++;
      }
    }
    off += size;
  }
  int32_t r = bad < 0 ? bad : done;
  for (int i = 0; i < e->nworkers; i++) {
    if (!woken[i])
      continue;
    rk__cmd *cmd = calloc(1, sizeof *cmd);
    uint8_t *copy = cmd == NULL ? NULL : malloc(kept);
    if (copy == NULL) { /* their connections are not left held without end */
      free(cmd);
      for (uint32_t o = 0; o < kept;) {
        uint32_t head[4];
        memcpy(head, ok + o, sizeof head);
        rk__worker *w = rk__conn_worker(e, (int32_t)head[1]);
        if (w == &e->workers[i])
          rk_conn_close(h, (int32_t)head[1], RK_CLOSE_ABORT);
        o += head[2];
      }
      r = -ENOMEM;
      continue;
    }
    memcpy(copy, ok, kept);
    cmd->type = RK__CMD_HOLD_BATCH;
    cmd->data = copy;
    cmd->len = kept;
    rk__send(&e->workers[i], cmd);
  }
  free(ok);
  if (woken != woken_room)
    free(woken);
  return r;
}
