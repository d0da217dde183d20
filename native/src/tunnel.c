/* tunnel.c - the data plane of the relaykit tunnel (docs/tunnel.md, wire
 * version 2): one link socket carrying many streams, each a local socket.
 *
 * A tunnel lives on one worker with all its sockets (no locks on the hot
 * path). It starts raw: every byte read from the link goes to the host,
 * which runs the handshake and writes its answers with rk_tunnel_send. After
 * rk_tunnel_attach the worker parses frames: DATA, WINDOW and FIN of the
 * streams it carries move here, between the link and the stream sockets,
 * with per-stream credit; every other frame (OPEN, OPEN_OK, OPEN_FAIL, RST,
 * PING, PONG, GOAWAY) is handed to the host whole, which decides and
 * answers with frames of its own. Memory is bounded: a stream holds at most
 * the credit it granted, the link's write queue stops stream reads past
 * RK__TUN_LINK_HIGH and ends the link past RK__TUN_LINK_MAX, and the bytes
 * waiting for the host stop link reads past RK__TUN_RX_MAX.
 *
 * A link may speak TLS (rk_tunnel_new_tls): the worker runs the handshake
 * on the link socket first (non-blocking, on the socket's events), posts
 * RK_TEV_TLS_UP, and from then on every link byte, the host's handshake
 * bytes as well as the frames, goes through the TLS seam of tls.c. A TLS
 * read drains what OpenSSL buffered (it reads until the socket has no
 * more), a TLS write may be partial and is retried from the write queue;
 * a read that needs the socket writable, or a write that needs it
 * readable, is retried on that event. A handshake or record that fails
 * ends the link with RK_ETLS (RK_ECERT_UNTRUSTED, the reason kept for
 * rk_tls_cert_failure); a graceful close sends close_notify before the
 * FIN. */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#define RK__TUN_HDR 10
#define RK__TUN_MAXPAY (16 * 1024)
#define RK__TUN_LINK_HIGH (256 * 1024)
#define RK__TUN_LINK_MAX (16 * 1024 * 1024)
#define RK__TUN_RX_MAX (1024 * 1024)
/* Bytes all of a link's streams may hold that their sockets have not taken
 * (each at most its window): past this the link is not read until they
 * take some, so a peer that fills the windows of many streams whose
 * destinations do not read costs this side at most this much. */
#define RK__TUN_HELD_MAX (64 * 1024 * 1024)
#define RK__TUN_IN_CAP (1024 * 1024)
#define RK__TUN_BUCKETS 1024
/* Frames one read of a stream's socket fills (readv, 512 KiB), and reads
 * a stream may do before the others get a turn (one). Fewer, larger reads
 * and writes: on a VM where every system call is dear, 512 KiB reads with
 * 512 KiB parse batches (below) and a 1 MiB window moved a stream 1.3x
 * as fast as 64 KiB ones at 0.8x the CPU per GB. */
#define RK__TUN_READ_FRAMES 32
#define RK__TUN_TURN 1
/* DATA frames for one stream written with one sendmsg (a parse batch). */
#define RK__TUN_WRITEV 32
/* A TLS link's records gather up to this before a write(2) (eight full
 * records and their overhead), and what is left once the write queue is
 * empty goes at once: fewer, larger writes on the link. */
#define RK__TUN_TLS_WBUF (128 * 1024 + 8 * 64)
/* On a TLS link a DATA frame is at most one record's plaintext with its
 * header, so a burst of frames fills whole records and no short record
 * carries a frame's tail. */
#define RK__TUN_TLS_PAY (RK__TLS_RECORD - RK__TUN_HDR)
/* Link bytes gathered before they are parsed: a TLS read returns one
 * record, and DATA for a stream goes to its socket in one write per parse
 * (fewer writes, fewer wakeups of its reader). */
#define RK__TUN_GATHER (512 * 1024)

enum { RK__TK_LINK = 1, RK__TK_STREAM = 2 };
enum {
  FT_OPEN = 5,
  FT_DATA = 8,
  FT_WINDOW = 9,
  FT_FIN = 10,
  FT_RST = 11,
  FT_LAST = 14
};

typedef struct rk__tun rk__tun;

/* The link's transport, the seam for an encrypted link: plain TCP here. A
 * TLS module gives a tunnel its own pair (same contract as read(2) and
 * send(2): a count, 0 at EOF, -1 with errno, EAGAIN when it must wait; a
 * TLS read that needs the socket writable, or the reverse, reports EAGAIN
 * and the worker retries on the next event, as both are watched). */
typedef struct {
  ssize_t (*recv)(void *ctx, int fd, uint8_t *buf, size_t len);
  ssize_t (*send)(void *ctx, int fd, const uint8_t *buf, size_t len);
  void *ctx;
} rk__tun_transport;

static ssize_t rk__plain_recv(void *ctx, int fd, uint8_t *buf, size_t len) {
  (void)ctx;
  return read(fd, buf, len);
}

static ssize_t rk__plain_send(void *ctx, int fd, const uint8_t *buf,
                              size_t len) {
  (void)ctx;
  return send(fd, buf, len, MSG_NOSIGNAL);
}

typedef struct rk__tstream {
  int tag;  /* RK__TAG_TUNNEL; first field, see the worker's dispatch */
  int kind; /* RK__TK_STREAM */
  rk__tun *t;
  uint32_t sid;
  int fd; /* -1: not attached yet (the server before rk_tunnel_accept) */
  /* link -> socket: DATA the socket has not taken yet */
  uint8_t *ibuf;
  uint32_t ioff, ilen, icap;
  uint32_t allowed;  /* credit the peer still has */
  /* ilen and credit are stored atomically (RK__STORE): rk_tunnel_stats
   * reads them from the host's thread */
  uint32_t consumed; /* taken by the socket, not granted back yet */
  /* socket -> link */
  uint32_t credit;
  unsigned fin_recv : 1, fin_sent : 1, eof : 1, shut : 1, can_read : 1,
      can_write : 1, ended : 1, rst : 1; /* rst: its socket is gone (reset
                                             by the peer, or the link lost);
                                             late frames are dropped */
  /* its peer closed (an EPOLLRDHUP, HUP or ERR edge came): read to EOF,
   * a short read no longer means drained */
  unsigned rdhup : 1;
  uint64_t bytes_in, bytes_out; /* atomics: read by rk_tunnel_stream_stats */
  int64_t start_mono;
  struct rk__tstream *hnext; /* bucket chain */
  struct rk__tstream *dnext; /* worker's dead list */
  /* in the link's queue of streams with more to read (rk__uncongest) */
  struct rk__tstream *qnext, *qprev;
  int queued;
} rk__tstream;

struct rk__tun {
  int tag;  /* RK__TAG_TUNNEL */
  int kind; /* RK__TK_LINK */
  int32_t id;
  rk__engine *e;
  rk__worker *w;
  int fd;
  rk__tun_transport tp;
  /* TLS (rk_tunnel_new_tls): the context until the worker starts the
   * link, then the session; tls_up once its handshake is done */
  void *tls_ctx;
  char *tls_name;
  rk__tls *tls;
  int tls_server, tls_up, tls_peeked;
  int rd_wants_out, wr_wants_in; /* a TLS read waits for EPOLLOUT, a write
                                    for EPOLLIN */
  int attached, server, closing, dead, freed, can_read, can_write;
  int rdhup; /* the link's peer closed: read to EOF (as a stream's) */
  /* streams stopped by a full link or at the end of their turn, with more
   * to read: served in turn by rk__uncongest (first in, first out) */
  rk__tstream *qhead, *qtail;
  /* DATA being gathered for one stream's socket (rk__ts_deliver) */
  rk__tstream *pend_s;
  struct iovec pend_iov[RK__TUN_WRITEV];
  int pend_n;
  size_t pend_len;
  uint32_t window;
  uint8_t *in;
  uint32_t in_off, in_len;
  uint8_t *out;
  size_t out_off, out_len, out_cap;
  /* bytes for the host (raw mode: everything; attached: control frames) */
  pthread_mutex_t lock; /* rx*, the stream table (for the host's lookups) */
  uint8_t *rx;
  size_t rx_len, rx_cap;
  int rx_posted, rx_paused;
  rk__tstream *tbl[RK__TUN_BUCKETS];
  int32_t nstreams;     /* atomic */
  uint32_t max_sid;     /* the highest stream id opened */
  int64_t last_rx_real; /* atomic: ms since the epoch of the last link read */
  uint64_t link_in, link_out; /* atomics */
  size_t held; /* the streams' ilen, summed (rk__ts_set_ilen) */
  rk__tun *gnext;   /* global list */
  rk__tun *wnext;   /* worker's list */
  rk__tun *dnext;   /* worker's dead list */
  rk__tun *pnext;   /* worker's pending list (pending: on it) */
  int pending;
};

/* The TLS transport: the rk__tls seam as read(2)/send(2) (ctx: the
 * tunnel). What a call waits for, when not its own direction, is noted for
 * rk__tunnel_event. */
static ssize_t rk__tls_recv(void *ctx, int fd, uint8_t *buf, size_t len) {
  rk__tun *t = ctx;
  (void)fd;
  uint32_t want = 0;
  ssize_t r = rk__tls_read(t->tls, buf, len, &want);
  t->rd_wants_out = r == -EAGAIN && want == EPOLLOUT;
  if (r >= 0)
    return r;
  errno = (int)-r;
  return -1;
}

static ssize_t rk__tls_send(void *ctx, int fd, const uint8_t *buf,
                            size_t len) {
  rk__tun *t = ctx;
  (void)fd;
  uint32_t want = 0;
  ssize_t r = rk__tls_write(t->tls, buf, len, &want);
  t->wr_wants_in = r == -EAGAIN && want == EPOLLIN;
  if (r >= 0)
    return r;
  errno = (int)-r;
  return -1;
}

/* Every tunnel of every engine, for the host's calls (found by engine and
 * id). Entries are removed by their worker before it frees them. */
static pthread_mutex_t g_tun_lock = PTHREAD_MUTEX_INITIALIZER;
static rk__tun *g_tuns;

/* Worker-local lists hang off rk__worker's tunnel fields. */
typedef struct {
  rk__tun *live;
  rk__tun *dead;
  rk__tstream *dead_streams;
  /* links whose streams had events in this batch: run once at its end
   * (rk__tunnel_flush), so what several streams read goes out in one
   * write of the link */
  rk__tun *pending;
} rk__tun_wstate;

static rk__tun_wstate *rk__wstate(rk__worker *w) {
  if (w->tunnels == NULL)
    w->tunnels = calloc(1, sizeof(rk__tun_wstate));
  return w->tunnels;
}

/* ---- helpers ------------------------------------------------------------ */

static void rk__put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t rk__get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

static void rk__hdr(uint8_t *p, int type, uint32_t sid, uint32_t len) {
  p[0] = (uint8_t)type;
  p[1] = 0;
  rk__put32(p + 2, sid);
  rk__put32(p + 6, len);
}

static rk__tstream *rk__ts_find(rk__tun *t, uint32_t sid) {
  rk__tstream *s = t->tbl[sid % RK__TUN_BUCKETS];
  while (s != NULL && s->sid != sid)
    s = s->hnext;
  return s;
}

static void rk__ts_del(rk__tun *t, rk__tstream *s) {
  pthread_mutex_lock(&t->lock);
  rk__tstream **p = &t->tbl[s->sid % RK__TUN_BUCKETS];
  while (*p != NULL && *p != s)
    p = &(*p)->hnext;
  if (*p == s)
    *p = s->hnext;
  pthread_mutex_unlock(&t->lock);
  RK__ADD(&t->nstreams, -1);
}

static void rk__ts_add(rk__tun *t, rk__tstream *s) {
  pthread_mutex_lock(&t->lock);
  rk__tstream **b = &t->tbl[s->sid % RK__TUN_BUCKETS];
  s->hnext = *b;
  *b = s;
  pthread_mutex_unlock(&t->lock);
  RK__ADD(&t->nstreams, 1);
}

static void rk__tun_post(rk__tun *t, uint32_t sub, uint32_t sid, int err,
                         uint32_t w6, uint32_t w7, uint32_t w8) {
  uint32_t rec[RK_EVENT_WORDS] = {0};
  rec[0] = RK_EV_TUNNEL;
  rec[1] = (uint32_t)t->id;
  rec[2] = sid;
  rec[3] = (uint32_t)err;
  rec[4] = sub;
  rec[6] = w6;
  rec[7] = w7;
  rec[8] = w8;
  rk__post(t->e, rec);
}

/* Room for `need` more bytes at the end of the link's write queue. */
static int rk__out_room(rk__tun *t, size_t need) {
  if (t->out_off + t->out_len + need <= t->out_cap)
    return 1;
  if (t->out_off > 0) {
    memmove(t->out, t->out + t->out_off, t->out_len);
    t->out_off = 0;
    if (t->out_len + need <= t->out_cap)
      return 1;
  }
  size_t cap = t->out_cap * 2;
  while (cap < t->out_len + need)
    cap *= 2;
  if (t->out_len + need > RK__TUN_LINK_MAX + RK__TUN_LINK_HIGH)
    return 0;
  uint8_t *b = realloc(t->out, cap);
  if (b == NULL)
    return 0;
  t->out = b;
  t->out_cap = cap;
  return 1;
}

static void rk__link_fail(rk__tun *t, int err, int midframe);

/* Queue bytes on the link (a frame the host encoded, or one of ours). */
static int rk__out_put(rk__tun *t, const uint8_t *p, size_t n) {
  if (t->dead)
    return -1;
  if (!rk__out_room(t, n) || t->out_len + n > RK__TUN_LINK_MAX) {
    rk__link_fail(t, -ENOBUFS, 0);
    return -1;
  }
  memcpy(t->out + t->out_off + t->out_len, p, n);
  t->out_len += n;
  return 0;
}

static int rk__out_frame(rk__tun *t, int type, uint32_t sid,
                         const uint8_t *p, uint32_t n) {
  uint8_t h[RK__TUN_HDR];
  rk__hdr(h, type, sid, n);
  if (rk__out_put(t, h, RK__TUN_HDR) < 0)
    return -1;
  return n > 0 ? rk__out_put(t, p, n) : 0;
}

static int rk__reg_fd(rk__worker *w, int fd, void *p) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                           .data.u64 = (uint64_t)(uintptr_t)p};
  return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

/* Queue a stream with more to read for its next turn (once). */
static void rk__q_add(rk__tun *t, rk__tstream *s) {
  if (s->queued)
    return;
  s->queued = 1;
  s->qnext = NULL;
  s->qprev = t->qtail;
  if (t->qtail != NULL)
    t->qtail->qnext = s;
  else
    t->qhead = s;
  t->qtail = s;
}

static void rk__q_del(rk__tun *t, rk__tstream *s) {
  if (!s->queued)
    return;
  s->queued = 0;
  if (s->qprev != NULL)
    s->qprev->qnext = s->qnext;
  else
    t->qhead = s->qnext;
  if (s->qnext != NULL)
    s->qnext->qprev = s->qprev;
  else
    t->qtail = s->qprev;
  s->qnext = s->qprev = NULL;
}

static void rk__abort_fd(int fd) {
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* ---- streams ------------------------------------------------------------ */

/* The bytes a stream holds for its socket, and its link's sum of them. */
static void rk__ts_set_ilen(rk__tstream *s, uint32_t n) {
  s->t->held = s->t->held - s->ilen + n;
  RK__STORE(&s->ilen, n); /* read by stats */
}

/* Close (rst: reset) the stream's socket but keep the stream: its counters
 * stay readable until the host drops it. */
static void rk__ts_drop_socket(rk__tstream *s, int rst) {
  if (s->fd >= 0) {
    if (rst)
      rk__abort_fd(s->fd);
    epoll_ctl(s->t->w->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
  }
  free(s->ibuf);
  s->ibuf = NULL;
  rk__ts_set_ilen(s, 0);
  s->ioff = s->icap = 0;
  s->rst = 1;
}

/* Free a stream (after the epoll batch: an event may still name it).
 * rst: reset its socket rather than close it. */
static void rk__ts_free(rk__tstream *s, int rst) {
  if (s->ended)
    return;
  s->ended = 1;
  rk__tun *t = s->t;
  rk__ts_del(t, s);
  rk__q_del(t, s);
  if (s->fd >= 0) {
    if (rst)
      rk__abort_fd(s->fd);
    epoll_ctl(t->w->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->fd = -1;
  }
  free(s->ibuf);
  s->ibuf = NULL;
  rk__ts_set_ilen(s, 0);
  rk__tun_wstate *ws = rk__wstate(t->w);
  s->dnext = ws->dead_streams;
  ws->dead_streams = s;
}

/* The stream ended here: tell the host (RK_TEND_*), then free it. */
static void rk__ts_end(rk__tstream *s, int how, int err) {
  if (s->ended)
    return;
  rk__tun *t = s->t;
  uint32_t rec[RK_EVENT_WORDS] = {0};
  rec[0] = RK_EV_TUNNEL;
  rec[1] = (uint32_t)t->id;
  rec[2] = s->sid;
  rec[3] = (uint32_t)err;
  rec[4] = RK_TEV_STREAM_END;
  rec[5] = (uint32_t)(rk__now_mono() - s->start_mono);
  rec[6] = (uint32_t)how;
  uint64_t out = RK__LOAD(&s->bytes_out), in = RK__LOAD(&s->bytes_in);
  rec[8] = (uint32_t)out;
  rec[9] = (uint32_t)(out >> 32);
  rec[10] = (uint32_t)in;
  rec[11] = (uint32_t)(in >> 32);
  rk__ts_free(s, how != RK_TEND_DONE); /* gone from stats before the news */
  rk__post(t->e, rec);
}

/* The stream's socket failed: RST to the peer, the host told, a reset. */
static void rk__ts_fail(rk__tstream *s, int err) {
  if (s->ended)
    return;
  char msg[160];
  const char *code = rk_err_name(err);
  size_t cl = strlen(code);
  if (cl > 255)
    cl = 255;
  int ml = snprintf(msg, sizeof msg, "Stream %u's socket failed (%s)", s->sid,
                    code);
  uint8_t p[1 + 255 + sizeof msg];
  p[0] = (uint8_t)cl;
  memcpy(p + 1, code, cl);
  memcpy(p + 1 + cl, msg, (size_t)ml);
  rk__out_frame(s->t, FT_RST, s->sid, p, (uint32_t)(1 + cl + (size_t)ml));
  rk__ts_end(s, RK_TEND_RESET, err);
}

static void rk__ts_maybe_done(rk__tstream *s) {
  if (!s->ended && s->fin_sent && s->fin_recv && s->shut)
    rk__ts_end(s, RK_TEND_DONE, 0);
}

static void rk__ts_grant(rk__tstream *s) {
  rk__tun *t = s->t;
  uint32_t batch = t->window / 4;
  if (batch > 64 * 1024)
    batch = 64 * 1024;
  if (s->fin_recv || s->consumed < batch || s->consumed == 0)
    return;
  uint8_t p[4];
  rk__put32(p, s->consumed);
  if (rk__out_frame(t, FT_WINDOW, s->sid, p, 4) < 0)
    return;
  s->allowed += s->consumed;
  s->consumed = 0;
}

/* Write what the stream holds to its socket. 0, or a negative errno. */
static int rk__ts_flush_in(rk__tstream *s) {
  while (s->ilen > 0 && s->can_write) {
    ssize_t n;
    RK__RETRY(n, send(s->fd, s->ibuf + s->ioff, s->ilen, MSG_NOSIGNAL));
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        s->can_write = 0;
        break;
      }
      return -errno;
    }
    s->ioff += (uint32_t)n;
    rk__ts_set_ilen(s, s->ilen - (uint32_t)n);
    s->consumed += (uint32_t)n;
  }
  if (s->ilen == 0)
    s->ioff = 0;
  rk__ts_grant(s);
  if (s->ilen == 0 && s->fin_recv && !s->shut && s->fd >= 0) {
    shutdown(s->fd, SHUT_WR);
    s->shut = 1;
  }
  return 0;
}

static int rk__ts_hold(rk__tstream *s, const uint8_t *p, uint32_t n) {
  if (s->ioff + s->ilen + n > s->icap) {
    if (s->ioff > 0) {
      memmove(s->ibuf, s->ibuf + s->ioff, s->ilen);
      s->ioff = 0;
    }
    if (s->ilen + n > s->icap) {
      uint32_t cap = s->icap ? s->icap : 16 * 1024;
      while (cap < s->ilen + n)
        cap *= 2;
      uint8_t *b = realloc(s->ibuf, cap);
      if (b == NULL)
        return -ENOMEM;
      s->ibuf = b;
      s->icap = cap;
    }
  }
  memcpy(s->ibuf + s->ioff + s->ilen, p, n);
  rk__ts_set_ilen(s, s->ilen + n);
  return 0;
}

/* Write the DATA gathered for one stream (views into the link's read
 * buffer) with one sendmsg; what the socket does not take is held. */
static void rk__pend_flush(rk__tun *t) {
  rk__tstream *s = t->pend_s;
  if (s == NULL)
    return;
  int cnt = t->pend_n;
  size_t total = t->pend_len;
  t->pend_s = NULL;
  t->pend_n = 0;
  t->pend_len = 0;
  if (s->ended || s->fd < 0)
    return;
  struct msghdr mh = {.msg_iov = t->pend_iov, .msg_iovlen = (size_t)cnt};
  ssize_t r;
  RK__RETRY(r, sendmsg(s->fd, &mh, MSG_NOSIGNAL));
  if (r < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      rk__ts_fail(s, -errno);
      return;
    }
    s->can_write = 0;
    r = 0;
  } else if ((size_t)r < total) {
    s->can_write = 0;
  }
  s->consumed += (uint32_t)r;
  size_t skip = (size_t)r;
  for (int i = 0; i < cnt; i++) {
    size_t l = t->pend_iov[i].iov_len;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    if (rk__ts_hold(s, (const uint8_t *)t->pend_iov[i].iov_base + skip,
                    (uint32_t)(l - skip)) < 0) {
      rk__ts_fail(s, -ENOMEM);
      return;
    }
    skip = 0;
  }
  rk__ts_grant(s);
}

/* DATA from the link for the stream's socket: gathered while consecutive
 * frames are for the same writable stream, held when its socket is full. */
static void rk__ts_deliver(rk__tstream *s, const uint8_t *p, uint32_t n) {
  rk__tun *t = s->t;
  if (t->pend_s != NULL && t->pend_s != s)
    rk__pend_flush(t);
  if (s->ended)
    return;
  if (s->fd >= 0 && s->ilen == 0 && s->can_write) {
    t->pend_s = s;
    t->pend_iov[t->pend_n].iov_base = (void *)(uintptr_t)p;
    t->pend_iov[t->pend_n].iov_len = n;
    t->pend_n++;
    t->pend_len += n;
    if (t->pend_n == RK__TUN_WRITEV)
      rk__pend_flush(t);
    return;
  }
  if (rk__ts_hold(s, p, n) < 0) {
    rk__ts_fail(s, -ENOMEM);
    return;
  }
  rk__ts_grant(s);
}

/* Read the stream's socket into DATA frames, as credit and the link allow. */
static void rk__ts_pump_out(rk__tstream *s) {
  rk__tun *t = s->t;
  int budget = RK__TUN_TURN;
  while (!s->ended && s->fd >= 0 && s->can_read && !s->eof && s->credit > 0 &&
         !t->dead) {
    if (t->out_len >= RK__TUN_LINK_HIGH || budget-- == 0) {
      rk__q_add(t, s); /* more to read: rk__uncongest comes back */
      return;
    }
    /* one readv fills up to RK__TUN_READ_FRAMES frames in place, a gap
     * left before each payload for its header */
    uint32_t pay = t->tls != NULL ? RK__TUN_TLS_PAY : RK__TUN_MAXPAY;
    uint32_t want = s->credit < RK__TUN_READ_FRAMES * pay
                        ? s->credit
                        : RK__TUN_READ_FRAMES * pay;
    uint32_t nframes = (want + pay - 1) / pay;
    if (!rk__out_room(t, nframes * RK__TUN_HDR + want)) {
      rk__link_fail(t, -ENOBUFS, 0);
      return;
    }
    uint8_t *base = t->out + t->out_off + t->out_len;
    struct iovec iov[RK__TUN_READ_FRAMES];
    uint32_t left = want;
    for (uint32_t k = 0; k < nframes; k++) {
      uint32_t part = left < pay ? left : pay;
      iov[k].iov_base = base + k * (RK__TUN_HDR + pay) + RK__TUN_HDR;
      iov[k].iov_len = part;
      left -= part;
    }
    ssize_t n;
    RK__RETRY(n, readv(s->fd, iov, (int)nframes));
    if (n > 0) {
      size_t got = (size_t)n;
      for (uint32_t k = 0; k < nframes && got > 0; k++) {
        uint32_t part = got < iov[k].iov_len ? (uint32_t)got
                                               : (uint32_t)iov[k].iov_len;
        rk__hdr(base + k * (RK__TUN_HDR + pay), FT_DATA, s->sid, part);
        t->out_len += RK__TUN_HDR + part;
        got -= part;
      }
      RK__STORE(&s->credit, s->credit - (uint32_t)n);
      RK__ADD(&s->bytes_out, (uint64_t)n);
      /* a short read took all there was: the next edge says when there
       * is more (no read that can only say EAGAIN); after the peer's FIN
       * (rdhup) no edge is left to come, so on to EOF */
      if ((size_t)n < want && !s->rdhup) {
        s->can_read = 0;
        return;
      }
      continue;
    }
    if (n == 0) {
      s->eof = 1;
      s->fin_sent = 1;
      rk__out_frame(t, FT_FIN, s->sid, NULL, 0);
      rk__ts_maybe_done(s);
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      s->can_read = 0;
      return;
    }
    rk__ts_fail(s, -errno);
    return;
  }
}

/* ---- the link ----------------------------------------------------------- */

static void rk__tun_free(rk__tun *t) {
  if (t->freed)
    return;
  t->freed = 1;
  for (int b = 0; b < RK__TUN_BUCKETS; b++)
    while (t->tbl[b] != NULL)
      rk__ts_free(t->tbl[b], 1);
  pthread_mutex_lock(&g_tun_lock);
  rk__tun **p = &g_tuns;
  while (*p != NULL && *p != t)
    p = &(*p)->gnext;
  if (*p == t)
    *p = t->gnext;
  pthread_mutex_unlock(&g_tun_lock);
  rk__tun_wstate *ws = rk__wstate(t->w);
  rk__tun **q = &ws->live;
  while (*q != NULL && *q != t)
    q = &(*q)->wnext;
  if (*q == t)
    *q = t->wnext;
  t->dnext = ws->dead;
  ws->dead = t;
}

/* Reset every stream and close the link socket (reset: rst). The tunnel
 * stays findable, its bytes for the host takeable, until rk__tun_free (the
 * host's rk_tunnel_close, or the worker's end). */
static void rk__tun_destroy(rk__tun *t, int rst) {
  if (t->dead)
    return;
  t->dead = 1;
  for (int b = 0; b < RK__TUN_BUCKETS; b++)
    for (rk__tstream *s = t->tbl[b]; s != NULL; s = s->hnext)
      rk__ts_drop_socket(s, 1); /* counters readable until rk__tun_free */
  rk__tls_free(t->tls); /* sends nothing: a reset or a closed socket */
  t->tls = NULL;
  if (t->fd >= 0) {
    if (rst)
      rk__abort_fd(t->fd);
    epoll_ctl(t->w->epfd, EPOLL_CTL_DEL, t->fd, NULL);
    close(t->fd);
    t->fd = -1;
  }
}

/* The link ended (err): the host told, the socket reset (rst) or closed. */
static void rk__link_end(rk__tun *t, int err, int midframe, int rst) {
  if (t->dead)
    return;
  if (err == RK_ECERT_UNTRUSTED) /* why, for rk_tls_cert_failure */
    rk__tls_keep_failure(t->e->handle, t->id, t->tls);
  if (!t->closing)
    rk__tun_post(t, RK_TEV_LINK_END, 0, err, (uint32_t)midframe, 0, 0);
  rk__tun_destroy(t, rst);
}

static void rk__link_fail(rk__tun *t, int err, int midframe) {
  rk__link_end(t, err, midframe, 1);
}

static void rk__protocol(rk__tun *t, int problem, uint32_t sid, uint32_t a,
                         uint32_t b) {
  if (t->dead)
    return;
  rk__tun_post(t, RK_TEV_PROTOCOL, sid, 0, (uint32_t)problem, a, b);
  /* the host sends GOAWAY and closes; until then nothing more is read */
  t->closing = 1;
}

/* Hand bytes to the host; pause link reads past RK__TUN_RX_MAX. */
static int rk__to_host(rk__tun *t, const uint8_t *p, size_t n) {
  int post = 0;
  pthread_mutex_lock(&t->lock);
  if (t->rx_len + n > t->rx_cap) {
    size_t cap = t->rx_cap ? t->rx_cap : 4096;
    while (cap < t->rx_len + n)
      cap *= 2;
    uint8_t *b = realloc(t->rx, cap);
    if (b == NULL) {
      pthread_mutex_unlock(&t->lock);
      return -ENOMEM;
    }
    t->rx = b;
    t->rx_cap = cap;
  }
  memcpy(t->rx + t->rx_len, p, n);
  t->rx_len += n;
  if (!t->rx_posted) {
    t->rx_posted = 1;
    post = 1;
  }
  if (t->rx_len >= RK__TUN_RX_MAX)
    t->rx_paused = 1;
  pthread_mutex_unlock(&t->lock);
  if (post)
    rk__tun_post(t, RK_TEV_RX, 0, 0, 0, 0, 0);
  return 0;
}

/* A stream frame for an id with no stream: a protocol error if the id was
 * never opened, else a late frame (dropped). */
static int rk__unknown(rk__tun *t, uint32_t sid) {
  if (sid > t->max_sid) {
    rk__protocol(t, RK_TPROB_STATE, sid, 0, 0);
    return -1;
  }
  return 0;
}

/* One whole frame (attached). Return -1 to stop parsing. */
static int rk__frame(rk__tun *t, const uint8_t *f, uint32_t len) {
  int type = f[0], flags = f[1];
  uint32_t sid = rk__get32(f + 2);
  /* DATA gathered for a stream goes before any other frame is acted on */
  if (t->pend_s != NULL && !(type == FT_DATA && sid == t->pend_s->sid))
    rk__pend_flush(t);
  const uint8_t *p = f + RK__TUN_HDR;
  if (type == FT_DATA || type == FT_WINDOW || type == FT_FIN) {
    if (flags != 0 || sid == 0 || (type == FT_DATA && len == 0) ||
        (type == FT_WINDOW && len != 4) || (type == FT_FIN && len != 0)) {
      rk__protocol(t, RK_TPROB_MALFORMED, sid, (uint32_t)type, len);
      return -1;
    }
    rk__tstream *s = rk__ts_find(t, sid);
    if (s == NULL)
      return rk__unknown(t, sid);
    if (s->rst)
      return 0; /* its socket is gone: late frames */
    if (type == FT_DATA) {
      if (s->fin_recv) {
        rk__protocol(t, RK_TPROB_DATA_AFTER_FIN, sid, 0, 0);
        return -1;
      }
      if (len > s->allowed) {
        rk__protocol(t, RK_TPROB_FLOW, sid, len, s->allowed);
        return -1;
      }
      s->allowed -= len;
      RK__ADD(&s->bytes_in, len);
      rk__ts_deliver(s, p, len);
    } else if (type == FT_WINDOW) {
      uint32_t c = rk__get32(p);
      if (c < 1 || c > 0x7fffffffu) {
        rk__protocol(t, RK_TPROB_MALFORMED, sid, (uint32_t)type, len);
        return -1;
      }
      if ((uint64_t)s->credit + c > 0x7fffffffu) {
        rk__protocol(t, RK_TPROB_CREDIT_OVERFLOW, sid, 0, 0);
        return -1;
      }
      RK__STORE(&s->credit, s->credit + c);
      rk__ts_pump_out(s);
    } else {
      if (s->fin_recv) {
        rk__protocol(t, RK_TPROB_SECOND_FIN, sid, 0, 0);
        return -1;
      }
      s->fin_recv = 1;
      if (s->fd >= 0 && s->ilen == 0 && !s->shut) {
        shutdown(s->fd, SHUT_WR);
        s->shut = 1;
      }
      rk__ts_maybe_done(s);
    }
    return 0;
  }
  if (type < 1 || type > FT_LAST) {
    rk__protocol(t, RK_TPROB_UNKNOWN_TYPE, sid, (uint32_t)type, 0);
    return -1;
  }
  if (type == FT_OPEN && t->server && sid > t->max_sid &&
      (t->max_sid = sid, RK__LOAD(&t->nstreams) < 65536)) {
    /* held until the host decides: DATA within the window waits here */
    rk__tstream *s = calloc(1, sizeof *s);
    if (s == NULL) {
      rk__link_fail(t, -ENOMEM, 0);
      return -1;
    }
    s->tag = RK__TAG_TUNNEL;
    s->kind = RK__TK_STREAM;
    s->t = t;
    s->sid = sid;
    s->fd = -1;
    s->allowed = s->credit = t->window;
    s->start_mono = rk__now_mono();
    rk__ts_add(t, s);
  } else if (type == FT_RST) {
    rk__tstream *s = rk__ts_find(t, sid);
    if (s != NULL) /* the host reports it from the frame, then drops it */
      rk__ts_drop_socket(s, 1);
  }
  if (rk__to_host(t, f, RK__TUN_HDR + len) < 0) {
    rk__link_fail(t, -ENOMEM, 0);
    return -1;
  }
  return 0;
}

/* Parse what the link buffer holds. */
static void rk__parse(rk__tun *t) {
  while (!t->dead && !t->closing && t->in_len >= RK__TUN_HDR) {
    const uint8_t *f = t->in + t->in_off;
    uint32_t len = rk__get32(f + 6);
    if (len > RK__TUN_MAXPAY) {
      rk__protocol(t, RK_TPROB_OVERSIZE, rk__get32(f + 2), len, 0);
      break;
    }
    if (t->in_len < RK__TUN_HDR + len)
      break;
    t->in_off += RK__TUN_HDR + len;
    t->in_len -= RK__TUN_HDR + len;
    if (rk__frame(t, f, len) < 0)
      break;
  }
  rk__pend_flush(t); /* before the buffer moves */
  if (t->dead)
    return;
  if (t->in_len == 0)
    t->in_off = 0;
  else if (t->in_off > RK__TUN_IN_CAP / 2) {
    memmove(t->in, t->in + t->in_off, t->in_len);
    t->in_off = 0;
  }
}

/* Write the queue to the link. more: more is about to be queued (the
 * records a TLS link gathered wait for it, and a graceful close too). */
static void rk__link_flush(rk__tun *t, int more) {
  while (!t->dead && t->out_len > 0 && t->can_write) {
    ssize_t n;
    RK__RETRY(n, t->tp.send(t->tp.ctx, t->fd, t->out + t->out_off, t->out_len));
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        t->can_write = 0;
        break;
      }
      rk__link_fail(t, -errno, 0);
      return;
    }
    t->out_off += (size_t)n;
    t->out_len -= (size_t)n;
    RK__ADD(&t->link_out, (uint64_t)n);
  }
  if (t->out_len == 0)
    t->out_off = 0;
  if (t->dead)
    return;
  if (more)
    return;
  if (t->tls != NULL && t->tls_up && t->can_write && t->out_len == 0) {
    /* the records gathered go out now (rk__tls_batch_writes) */
    uint32_t want = 0;
    int r = rk__tls_flush(t->tls, &want);
    if (r == -EAGAIN) {
      t->can_write = 0;
      t->wr_wants_in = want == EPOLLIN;
      return;
    }
    if (r < 0) {
      rk__link_fail(t, r, 0);
      return;
    }
  }
  if (t->closing == 2 && t->out_len == 0) {
    /* graceful close asked: everything went out, close_notify (TLS) and
     * FIN now */
    if (t->tls != NULL && t->tls_up) {
      uint32_t want = 0;
      if (rk__tls_shutdown(t->tls, &want) == -EAGAIN ||
          rk__tls_flush(t->tls, &want) == -EAGAIN) {
        t->can_write = 0; /* again on the next event */
        t->wr_wants_in = want == EPOLLIN;
        return;
      }
    }
    shutdown(t->fd, SHUT_WR);
    rk__tun_destroy(t, 0);
    rk__tun_free(t); /* the host closed it: nobody takes anything */
  }
}

static void rk__link_read(rk__tun *t) {
  uint32_t fresh = 0; /* bytes read and not parsed yet (attached) */
  while (!t->dead && t->can_read && !t->closing) {
    if (t->attached) {
      pthread_mutex_lock(&t->lock);
      int paused = t->rx_paused;
      pthread_mutex_unlock(&t->lock);
      if (paused)
        return; /* (set only by a parse: nothing is left unparsed) */
      if (t->held >= RK__TUN_HELD_MAX)
        return; /* can_read stays: a stream's socket that takes some
                   runs the link again (rk__tunnel_event) */
      if (t->in_off + t->in_len >= RK__TUN_IN_CAP) {
        memmove(t->in, t->in + t->in_off, t->in_len);
        t->in_off = 0;
      }
      ssize_t n;
      size_t room = RK__TUN_IN_CAP - t->in_off - t->in_len;
      RK__RETRY(n, t->tp.recv(t->tp.ctx, t->fd, t->in + t->in_off + t->in_len,
                              room));
      if (n > 0) {
        if (fresh == 0) /* (once per batch: the clock is not free) */
          RK__STORE(&t->last_rx_real, rk__now_real());
        RK__ADD(&t->link_in, (uint64_t)n);
        t->in_len += (uint32_t)n;
        fresh += (uint32_t)n;
        if ((size_t)n < room && !t->rdhup && t->tls == NULL) {
          /* a short read drained the socket (as a stream's, above) */
          t->can_read = 0;
          rk__parse(t);
          return;
        }
        /* parse once a batch is in, or when the buffer is nearly full */
        if (fresh >= RK__TUN_GATHER ||
            room - (size_t)n < RK__TUN_HDR + RK__TUN_MAXPAY) {
          fresh = 0;
          rk__parse(t);
          if (t->out_len > 0 && !t->dead) /* credit back before more reads */
            rk__link_flush(t, 0);
        }
        continue;
      }
      if (fresh > 0) { /* what came before the end, error or wait first */
        int e = errno;
        fresh = 0;
        rk__parse(t);
        if (t->dead || t->closing)
          return;
        errno = e;
      }
      if (n == 0) {
        rk__link_fail(t, 0, t->in_len > 0);
        return;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        t->can_read = 0;
        return;
      }
      rk__link_fail(t, -errno, 0);
      return;
    }
    /* raw: to the host as read */
    pthread_mutex_lock(&t->lock);
    int paused = t->rx_paused;
    pthread_mutex_unlock(&t->lock);
    if (paused)
      return;
    uint8_t buf[16 * 1024];
    ssize_t n;
    RK__RETRY(n, t->tp.recv(t->tp.ctx, t->fd, buf, sizeof buf));
    if (n > 0) {
      RK__STORE(&t->last_rx_real, rk__now_real());
      RK__ADD(&t->link_in, (uint64_t)n);
      if (rk__to_host(t, buf, (size_t)n) < 0) {
        rk__link_fail(t, -ENOMEM, 0);
        return;
      }
      continue;
    }
    if (n == 0) {
      rk__link_fail(t, 0, 0);
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      t->can_read = 0;
      return;
    }
    rk__link_fail(t, -errno, 0);
    return;
  }
}

/* Streams stopped by a full link get their turn once it drained, in the
 * order they stopped (one that reads its turn again goes to the end). */
static void rk__uncongest(rk__tun *t) {
  while (t->qhead != NULL && !t->dead && t->out_len < RK__TUN_LINK_HIGH) {
    rk__tstream *s = t->qhead;
    rk__q_del(t, s);
    rk__ts_pump_out(s);
  }
}

/* Drive a TLS link's handshake: 1 once done (or no TLS), else 0 (it
 * waits for the socket, or failed and the link ended). */
static int rk__tun_tls_step(rk__tun *t) {
  if (t->tls == NULL || t->tls_up)
    return !t->dead;
  if (t->tls_server && !t->tls_peeked) {
    /* OpenSSL answers bytes that are not TLS with no alert at all: a
     * client that does not speak TLS would see only a close. What does
     * not start like a handshake record (0x16) gets a fatal
     * protocol_version alert instead (RFC 8446, 6.2), after its bytes
     * were read (so the close is a FIN, not a reset that could overtake
     * the alert). */
    uint8_t b;
    ssize_t n;
    RK__RETRY(n, recv(t->fd, &b, 1, MSG_PEEK));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 0;
    if (n == 1 && b != 0x16) {
      static const uint8_t alert[7] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70};
      uint8_t sink[4096];
      for (int i = 0; i < 16; i++) { /* at most 64 KiB */
        RK__RETRY(n, read(t->fd, sink, sizeof sink));
        if (n <= 0)
          break;
      }
      RK__RETRY(n, send(t->fd, alert, sizeof alert, MSG_NOSIGNAL));
      rk__link_end(t, RK_ETLS, 0, 0);
      return 0;
    }
    t->tls_peeked = 1; /* a handshake, an EOF or an error: OpenSSL's */
  }
  uint32_t want = 0;
  int r = rk__tls_handshake(t->tls, &want);
  if (r == -EAGAIN)
    return 0;
  if (r < 0) {
    /* closed, not reset: the alert OpenSSL wrote reaches the peer (a
     * client without TLS learns from it that this side speaks TLS) */
    rk__link_end(t, r, 0, 0);
    return 0;
  }
  t->tls_up = 1;
  t->can_read = t->can_write = 1;
  rk__tun_post(t, RK_TEV_TLS_UP, 0, 0, 0, 0, 0);
  return 1;
}

static void rk__tun_run(rk__tun *t) {
  if (!rk__tun_tls_step(t))
    return;
  rk__link_flush(t, 1);
  if (t->dead)
    return;
  rk__link_read(t);
  for (;;) {
    int more = !t->dead && t->qhead != NULL;
    rk__link_flush(t, more);
    if (t->dead || t->qhead == NULL || t->out_len >= RK__TUN_LINK_HIGH) {
      if (more)
        rk__link_flush(t, 0);
      return;
    }
    rk__uncongest(t);
  }
}

/* Run the link at the end of the worker's batch (rk__tunnel_flush). */
static void rk__tun_defer(rk__tun *t) {
  if (t->pending)
    return;
  rk__tun_wstate *ws = rk__wstate(t->w);
  t->pending = 1;
  t->pnext = ws->pending;
  ws->pending = t;
}

void rk__tunnel_event(void *p, uint32_t events) {
  int kind = ((int *)p)[1];
  if (kind == RK__TK_LINK) {
    rk__tun *t = p;
    if (t->dead)
      return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      t->can_read = 1;
      if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        t->rdhup = 1;
      if (t->wr_wants_in)
        t->can_write = 1;
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
      t->can_write = 1;
      if (t->rd_wants_out)
        t->can_read = 1;
    }
    rk__tun_run(t);
    return;
  }
  rk__tstream *s = p;
  if (s->ended)
    return;
  rk__tun *t = s->t;
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err != 0) {
      rk__ts_fail(s, -err);
      rk__tun_defer(t);
      return;
    }
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    s->can_write = 1;
    int r = rk__ts_flush_in(s);
    if (r < 0)
      rk__ts_fail(s, r);
    else
      rk__ts_maybe_done(s);
  }
  if (!s->ended && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    s->can_read = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      s->rdhup = 1;
    rk__ts_pump_out(s);
  }
  rk__tun_defer(t);
}

/* ---- commands from the host --------------------------------------------- */

enum {
  RK__TOP_NEW = 1,
  RK__TOP_SEND,
  RK__TOP_ATTACH,
  RK__TOP_OPEN,
  RK__TOP_ACCEPT,
  RK__TOP_STREAM_CLOSE,
  RK__TOP_CLOSE,
  RK__TOP_RESUME,
  RK__TOP_TAKE
};

static rk__cmd *rk__tcmd(int op, int32_t tid, int32_t arg, int32_t err,
                         const uint8_t *data, int32_t len);

static rk__tun *rk__tun_find_w(rk__worker *w, int32_t id) {
  rk__tun_wstate *ws = rk__wstate(w);
  rk__tun *t = ws->live;
  while (t != NULL && t->id != id)
    t = t->wnext;
  return t;
}

/* Take the socket of held connection `id` of this worker out of it (the
 * connection ends, reason RK_END_CLOSED). Return the fd or a negative
 * error. */
static int rk__take_held(rk__worker *w, int32_t id) {
  rk__engine *e = w->e;
  pthread_mutex_lock(&e->tbl_lock);
  rk__conn *c = rk__table_find_locked(e, id);
  if (c != NULL && c->w != w)
    c = NULL;
  pthread_mutex_unlock(&e->tbl_lock);
  if (c == NULL || c->state != RK__HOLDING)
    return -ENOENT;
  int fd = c->side[0].rfd;
  if (fd < 0 || c->hold_len > 0)
    return -EINVAL; /* bytes were read: they would be lost */
  epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
  c->side[0].rfd = c->side[0].wfd = -1;
  c->side[0].r_registered = c->side[0].w_registered = 0;
  rk__conn_end(c, RK_END_CLOSED, 0);
  return fd;
}

static void rk__tun_start(rk__worker *w, rk__tun *t, int fd) {
  t->fd = fd;
  rk__tun_wstate *ws = rk__wstate(w);
  t->wnext = ws->live;
  ws->live = t;
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  int r = rk__reg_fd(w, fd, t);
  t->can_read = t->can_write = 1;
  if (r < 0) {
    rk__link_fail(t, r, 0);
    return;
  }
  if (t->tls_ctx != NULL) {
    t->tls = rk__tls_new(t->tls_ctx, fd, t->tls_server, t->tls_name);
    rk__tls_ctx_unref(t->tls_ctx); /* the session holds its own */
    t->tls_ctx = NULL;
    if (t->tls == NULL) {
      rk__link_fail(t, -ENOMEM, 0);
      return;
    }
    rk__tls_bulk(t->tls); /* one link, bytes all the time */
    rk__tls_batch_writes(t->tls, RK__TUN_TLS_WBUF);
    t->tp.recv = rk__tls_recv;
    t->tp.send = rk__tls_send;
    t->tp.ctx = t;
  }
  rk__tun_run(t);
}

static void rk__ts_start(rk__tun *t, rk__tstream *s, int fd) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  s->fd = fd;
  int r = rk__reg_fd(t->w, fd, s);
  if (r < 0) {
    rk__ts_fail(s, r);
    return;
  }
  s->can_read = s->can_write = 1;
  r = rk__ts_flush_in(s);
  if (r < 0) {
    rk__ts_fail(s, r);
    return;
  }
  rk__ts_pump_out(s);
  rk__ts_maybe_done(s);
}

/* cmd: decision.port tunnel, arg stream id, err fd / conn id / mode, data frame bytes,
 * len2 window (ATTACH) */
static void rk__tun_cmd(rk__worker *w, rk__cmd *c) {
  int op = (int)c->decision.action;
  if (op == RK__TOP_NEW) {
    rk__tun *t = (rk__tun *)(uintptr_t)c->decision.offset;
    int fd = c->err;
    if (c->arg > 0) {
      fd = rk__take_held(w, c->arg);
      if (fd < 0) {
        rk__tun_wstate *ws = rk__wstate(w);
        t->wnext = ws->live;
        ws->live = t;
        rk__link_fail(t, fd, 0);
        return;
      }
    }
    rk__tun_start(w, t, fd);
    return;
  }
  if (op == RK__TOP_TAKE) {
    /* on the held connection's worker: take its socket, then on to the
     * tunnel's worker (after the OPEN, which went there directly) */
    int fd = rk__take_held(w, c->err);
    rk__worker *tw = (rk__worker *)(uintptr_t)c->decision.offset;
    rk__cmd *next = rk__tcmd(RK__TOP_ACCEPT, c->decision.port, c->arg, fd, NULL,
                             0);
    if (next == NULL) {
      if (fd >= 0)
        close(fd);
      return;
    }
    rk__send(tw, next);
    return;
  }
  rk__tun *t = rk__tun_find_w(w, c->decision.port);
  if (op == RK__TOP_OPEN) {
    if (t == NULL || t->dead)
      return;
    uint32_t sid = (uint32_t)c->arg;
    if (sid > t->max_sid)
      t->max_sid = sid;
    if (rk__ts_find(t, sid) == NULL) {
      rk__tstream *s = calloc(1, sizeof *s);
      if (s == NULL) {
        rk__link_fail(t, -ENOMEM, 0);
        return;
      }
      s->tag = RK__TAG_TUNNEL;
      s->kind = RK__TK_STREAM;
      s->t = t;
      s->sid = sid;
      s->fd = -1; /* until its socket comes (RK__TOP_ACCEPT) */
      s->allowed = s->credit = t->window;
      s->start_mono = rk__now_mono();
      rk__ts_add(t, s);
    }
    if (c->len > 0)
      rk__out_put(t, c->data, c->len); /* OPEN, before any DATA */
    rk__tun_run(t);
    return;
  }
  if (t == NULL || t->dead) {
    if (op == RK__TOP_ACCEPT && c->err >= 0)
      close(c->err);
    if (op == RK__TOP_CLOSE && t != NULL)
      rk__tun_free(t); /* the host is done with a tunnel that ended */
    return;
  }
  switch (op) {
  case RK__TOP_SEND:
    rk__out_put(t, c->data, c->len);
    break;
  case RK__TOP_ATTACH:
    if (!t->attached) {
      t->attached = 1;
      t->server = c->err & 1;
      t->window = c->len2;
      t->in = malloc(RK__TUN_IN_CAP);
      if (t->in == NULL) {
        rk__link_fail(t, -ENOMEM, 0);
        return;
      }
      /* the bytes the host had read past the handshake, then those it did
       * not take yet: parsed before anything read from now on */
      pthread_mutex_lock(&t->lock);
      size_t pend = t->rx_len;
      uint8_t *rx = t->rx;
      t->rx = NULL;
      t->rx_len = t->rx_cap = 0;
      t->rx_paused = 0;
      pthread_mutex_unlock(&t->lock);
      if (c->len + pend > RK__TUN_IN_CAP) {
        free(rx);
        rk__protocol(t, RK_TPROB_OVERSIZE, 0, (uint32_t)(c->len + pend), 0);
        break;
      }
      if (c->len > 0)
        memcpy(t->in, c->data, c->len);
      if (pend > 0)
        memcpy(t->in + c->len, rx, pend);
      free(rx);
      t->in_len = (uint32_t)(c->len + pend);
      rk__parse(t);
      t->can_read = 1;
    }
    break;
  case RK__TOP_ACCEPT: {
    rk__tstream *s = rk__ts_find(t, (uint32_t)c->arg);
    if (s == NULL || s->fd >= 0 || s->rst) {
      if (c->err >= 0) {
        rk__abort_fd(c->err);
        close(c->err);
      }
      break;
    }
    if (c->err < 0) {
      /* the local connection went before it could be carried */
      rk__ts_fail(s, c->err);
      break;
    }
    if (c->len > 0)
      rk__out_put(t, c->data, c->len); /* OPEN_OK, before any DATA */
    rk__ts_start(t, s, c->err);
    break;
  }
  case RK__TOP_STREAM_CLOSE: {
    rk__tstream *s = rk__ts_find(t, (uint32_t)c->arg);
    if (c->len > 0)
      rk__out_put(t, c->data, c->len); /* OPEN_FAIL or RST */
    if (s != NULL)
      rk__ts_free(s, c->err == RK_CLOSE_ABORT);
    break;
  }
  case RK__TOP_CLOSE:
    /* (a TLS link whose handshake is not done has nothing to finish) */
    if (c->err == RK_CLOSE_ABORT || (t->tls != NULL && !t->tls_up)) {
      t->closing = 1;
      rk__tun_destroy(t, 1);
      rk__tun_free(t);
      return;
    }
    t->closing = 2;
    for (int b = 0; b < RK__TUN_BUCKETS; b++)
      while (t->tbl[b] != NULL)
        rk__ts_free(t->tbl[b], 1);
    break;
  case RK__TOP_RESUME:
    t->can_read = 1;
    break;
  }
  rk__tun_run(t);
}

/* ---- worker hooks ------------------------------------------------------- */

void rk__tunnel_flush(rk__worker *w) {
  rk__tun_wstate *ws = w->tunnels;
  if (ws == NULL)
    return;
  while (ws->pending != NULL) {
    rk__tun *t = ws->pending;
    ws->pending = t->pnext;
    t->pending = 0;
    if (!t->freed) /* (its memory stays until rk__tunnel_reap) */
      rk__tun_run(t);
  }
}

void rk__tunnel_reap(rk__worker *w) {
  rk__tun_wstate *ws = w->tunnels;
  if (ws == NULL)
    return;
  while (ws->dead_streams != NULL) {
    rk__tstream *s = ws->dead_streams;
    ws->dead_streams = s->dnext;
    free(s);
  }
  while (ws->dead != NULL) {
    rk__tun *t = ws->dead;
    ws->dead = t->dnext;
    pthread_mutex_destroy(&t->lock);
    rk__tls_ctx_unref(t->tls_ctx); /* a link that never started */
    free(t->tls_name);
    free(t->in);
    free(t->out);
    free(t->rx);
    free(t);
  }
}

void rk__tunnel_worker_stop(rk__worker *w) {
  rk__tun_wstate *ws = w->tunnels;
  if (ws == NULL)
    return;
  while (ws->live != NULL) {
    rk__tun *t = ws->live;
    t->closing = 1; /* no LINK_END: the engine's closing is the news */
    rk__tun_destroy(t, 1);
    rk__tun_free(t);
  }
  rk__tunnel_reap(w);
  free(ws);
  w->tunnels = NULL;
}

/* ---- public ------------------------------------------------------------- */

static rk__tun *rk__tun_lookup(rk__engine *e, int32_t id, rk__worker **w) {
  pthread_mutex_lock(&g_tun_lock);
  rk__tun *t = g_tuns;
  while (t != NULL && !(t->e == e && t->id == id))
    t = t->gnext;
  if (t != NULL && w != NULL)
    *w = t->w;
  pthread_mutex_unlock(&g_tun_lock);
  return t;
}

static rk__cmd *rk__tcmd(int op, int32_t tid, int32_t arg, int32_t err,
                         const uint8_t *data, int32_t len) {
  rk__cmd *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->type = RK__CMD_CALL;
  c->fn = rk__tun_cmd;
  c->decision.action = op;
  c->decision.port = tid; /* not id: rk__send_to_conn sets that */
  c->arg = arg;
  c->err = err;
  if (len > 0) {
    c->data = malloc((size_t)len);
    if (c->data == NULL) {
      free(c);
      return NULL;
    }
    memcpy(c->data, data, (size_t)len);
    c->len = (uint32_t)len;
  }
  return c;
}

/* Send a command to tunnel tid's worker. */
static int32_t rk__tun_send(rk__engine *e, int32_t tid, rk__cmd *c) {
  if (c == NULL)
    return -ENOMEM;
  rk__worker *w = NULL;
  pthread_mutex_lock(&e->tbl_lock);
  int closed = e->closed_flag;
  pthread_mutex_unlock(&e->tbl_lock);
  if (closed || rk__tun_lookup(e, tid, &w) == NULL || w == NULL) {
    rk__cmd_free(c);
    return closed ? RK_ECLOSED : -ENOENT;
  }
  rk__send(w, c);
  return 0;
}

static int32_t rk__tunnel_new(int32_t h, int32_t fd, int32_t conn_id,
                              int32_t ctx, int server, const char *name) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if ((fd < 0) == (conn_id <= 0))
    return -EINVAL;
  if (fd >= 0 && fcntl(fd, F_GETFD) < 0)
    return -EBADF;
  rk__worker *w = NULL;
  if (conn_id > 0) {
    pthread_mutex_lock(&e->tbl_lock);
    rk__conn *c = rk__table_find_locked(e, conn_id);
    w = c != NULL ? c->w : NULL;
    pthread_mutex_unlock(&e->tbl_lock);
    if (w == NULL)
      return -ENOENT;
  }
  void *tls_ctx = NULL;
  char *tls_name = NULL;
  if (ctx != 0) {
    if (rk_tls_load(NULL, NULL, 0) != 1)
      return RK_ENOTLS;
    if ((tls_ctx = rk__tls_ctx_ref(ctx)) == NULL)
      return -ENOENT;
    if (!server && name != NULL && name[0] &&
        (tls_name = strdup(name)) == NULL) {
      rk__tls_ctx_unref(tls_ctx);
      return -ENOMEM;
    }
  }
  rk__tun *t = calloc(1, sizeof *t);
  rk__cmd *c = calloc(1, sizeof *c);
  uint8_t *out = malloc(64 * 1024);
  if (t == NULL || c == NULL || out == NULL) {
    free(t);
    free(c);
    free(out);
    free(tls_name);
    rk__tls_ctx_unref(tls_ctx);
    return -ENOMEM;
  }
  t->tls_ctx = tls_ctx;
  t->tls_name = tls_name;
  t->tls_server = server;
  t->tag = RK__TAG_TUNNEL;
  t->kind = RK__TK_LINK;
  t->id = rk__new_id(e);
  t->e = e;
  t->fd = -1;
  t->tp.recv = rk__plain_recv;
  t->tp.send = rk__plain_send;
  t->out = out;
  t->out_cap = 64 * 1024;
  t->window = 256 * 1024;
  t->last_rx_real = rk__now_real();
  pthread_mutex_init(&t->lock, NULL);
  c->type = RK__CMD_CALL;
  c->fn = rk__tun_cmd;
  c->decision.action = RK__TOP_NEW;
  c->decision.offset = (int64_t)(uintptr_t)t;
  c->err = fd;
  c->arg = conn_id;
  pthread_mutex_lock(&e->tbl_lock);
  if (e->closed_flag) {
    pthread_mutex_unlock(&e->tbl_lock);
    pthread_mutex_destroy(&t->lock);
    rk__tls_ctx_unref(tls_ctx);
    free(tls_name);
    free(t);
    free(c);
    free(out);
    return RK_ECLOSED;
  }
  if (w == NULL)
    w = rk__pick_worker(e);
  t->w = w; /* never changes: the host's calls read it */
  pthread_mutex_lock(&g_tun_lock);
  t->gnext = g_tuns;
  g_tuns = t;
  pthread_mutex_unlock(&g_tun_lock);
  rk__send(w, c);
  pthread_mutex_unlock(&e->tbl_lock);
  return t->id;
}

int32_t rk_tunnel_new(int32_t h, int32_t fd, int32_t conn_id) {
  return rk__tunnel_new(h, fd, conn_id, 0, 0, NULL);
}

int32_t rk_tunnel_new_tls(int32_t h, int32_t fd, int32_t conn_id, int32_t ctx,
                          int32_t flags, const char *servername) {
  if (ctx <= 0)
    return -EINVAL;
  return rk__tunnel_new(h, fd, conn_id, ctx, flags & 1, servername);
}

int32_t rk_tunnel_take(int32_t h, int32_t tid, uint8_t *out, int32_t cap) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (cap < 0)
    return -EINVAL;
  pthread_mutex_lock(&g_tun_lock);
  rk__tun *t = g_tuns;
  while (t != NULL && !(t->e == e && t->id == tid))
    t = t->gnext;
  if (t == NULL) {
    pthread_mutex_unlock(&g_tun_lock);
    return -ENOENT;
  }
  /* t cannot be freed while g_tun_lock is held (rk__tun_free takes it) */
  pthread_mutex_lock(&t->lock);
  size_t n = t->rx_len < (size_t)cap ? t->rx_len : (size_t)cap;
  if (n > 0) {
    memcpy(out, t->rx, n);
    memmove(t->rx, t->rx + n, t->rx_len - n);
    t->rx_len -= n;
  }
  int resume = 0;
  if (t->rx_len == 0)
    t->rx_posted = 0;
  if (t->rx_paused && t->rx_len < RK__TUN_RX_MAX / 2) {
    t->rx_paused = 0;
    resume = 1;
  }
  pthread_mutex_unlock(&t->lock);
  pthread_mutex_unlock(&g_tun_lock);
  if (resume)
    rk__tun_send(e, tid, rk__tcmd(RK__TOP_RESUME, tid, 0, 0, NULL, 0));
  return (int32_t)n;
}

int32_t rk_tunnel_send(int32_t h, int32_t tid, const uint8_t *data,
                       int32_t len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (len <= 0)
    return len < 0 ? -EINVAL : 0;
  return rk__tun_send(e, tid, rk__tcmd(RK__TOP_SEND, tid, 0, 0, data, len));
}

int32_t rk_tunnel_attach(int32_t h, int32_t tid, int32_t flags,
                         int32_t window, const uint8_t *replay, int32_t len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (window < 1 || len < 0 || len > RK__TUN_IN_CAP / 2)
    return -EINVAL;
  rk__cmd *c = rk__tcmd(RK__TOP_ATTACH, tid, 0, flags, replay, len);
  if (c != NULL)
    c->len2 = (uint32_t)window;
  return rk__tun_send(e, tid, c);
}

int32_t rk_tunnel_open(int32_t h, int32_t tid, uint32_t sid, int32_t conn_id,
                       const uint8_t *frame, int32_t len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (sid == 0 || conn_id <= 0 || len < 0)
    return -EINVAL;
  rk__worker *tw = NULL;
  if (rk__tun_lookup(e, tid, &tw) == NULL)
    return -ENOENT;
  /* the OPEN and the stream, in the order streams are opened */
  int32_t r = rk__tun_send(e, tid, rk__tcmd(RK__TOP_OPEN, tid, sid, -1, frame,
                                            len));
  if (r < 0)
    return r;
  /* then the socket, from the held connection's worker */
  rk__cmd *c = rk__tcmd(RK__TOP_TAKE, tid, sid, conn_id, NULL, 0);
  if (c != NULL)
    c->decision.offset = (int64_t)(uintptr_t)tw;
  r = c == NULL ? -ENOMEM : rk__send_to_conn(e, conn_id, c);
  if (r < 0) /* the stream fails on its worker: RST, RK_TEV_STREAM_END */
    rk__tun_send(e, tid, rk__tcmd(RK__TOP_ACCEPT, tid, sid, r, NULL, 0));
  return 0;
}

int32_t rk_tunnel_accept(int32_t h, int32_t tid, uint32_t sid, int32_t fd,
                         const uint8_t *frame, int32_t len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (sid == 0 || fd < 0 || len < 0)
    return -EINVAL;
  return rk__tun_send(e, tid, rk__tcmd(RK__TOP_ACCEPT, tid, sid, fd, frame,
                                       len));
}

int32_t rk_tunnel_stream_close(int32_t h, int32_t tid, uint32_t sid,
                               int32_t mode, const uint8_t *frame,
                               int32_t len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (sid == 0 || len < 0)
    return -EINVAL;
  return rk__tun_send(e, tid, rk__tcmd(RK__TOP_STREAM_CLOSE, tid, sid,
                                       mode & 1, frame, len));
}

int32_t rk_tunnel_close(int32_t h, int32_t tid, int32_t mode) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  return rk__tun_send(e, tid, rk__tcmd(RK__TOP_CLOSE, tid, 0, mode, NULL, 0));
}

int32_t rk_tunnel_stats(int32_t h, int32_t tid, uint32_t sid, double *out) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&g_tun_lock);
  rk__tun *t = g_tuns;
  while (t != NULL && !(t->e == e && t->id == tid))
    t = t->gnext;
  if (t == NULL) {
    pthread_mutex_unlock(&g_tun_lock);
    return -ENOENT;
  }
  int32_t r = 0;
  if (sid == 0) {
    out[0] = (double)RK__LOAD(&t->last_rx_real);
    out[1] = (double)RK__LOAD(&t->link_in);
    out[2] = (double)RK__LOAD(&t->link_out);
    out[3] = (double)RK__LOAD(&t->nstreams);
  } else {
    pthread_mutex_lock(&t->lock);
    rk__tstream *s = rk__ts_find(t, (uint32_t)sid);
    if (s == NULL) {
      r = -ENOENT;
    } else {
      out[0] = (double)RK__LOAD(&s->bytes_out);
      out[1] = (double)RK__LOAD(&s->bytes_in);
      out[2] = (double)RK__LOAD(&s->ilen);
      out[3] = (double)RK__LOAD(&s->credit);
    }
    pthread_mutex_unlock(&t->lock);
  }
  pthread_mutex_unlock(&g_tun_lock);
  return r;
}
