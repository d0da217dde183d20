/*
 * connload: a connection-rate load generator for the decision sections of
 * scripts/bench.ts (scripts/bench/decide.ts compiles it with the system C
 * compiler into the bench's temp directory).
 *
 * One thread, one epoll set, C connections in flight at all times.  Each
 * connection, from connect() to the complete answer:
 *
 *   http     GET / with a Host header and `Connection: close`
 *   proxy1   a PROXY v1 header, then the GET (one write)
 *   proxy2   a PROXY v2 header, then the GET (one write)
 *   socks5   SOCKS5 greeting (no auth), wait for the method; CONNECT to
 *            127.0.0.1:TARGET, wait for the reply; then the GET
 *   connect  HTTP CONNECT 127.0.0.1:TARGET, wait for "200"; then the GET
 *
 * then reads the answer: an HTTP response whose status must be 200, complete
 * by its Content-Length (or at EOF when it has none), and closes.  A failure
 * (refused, reset, early EOF, a wrong reply, no answer within the timeout)
 * is counted by kind and the slot starts a new connection: the run never
 * hangs.  After SECONDS no new connection starts; those in flight may finish
 * within the timeout (they count), then the rest are abandoned.
 *
 * Output, one JSON line on stdout:
 *   {"ok":N,"failed":N,"abandoned":N,"seconds":S,"cps":R,
 *    "p50_us":U,"p99_us":U,"max_us":U,"cpu_s":S,"errors":{"KIND":N,...}}
 * latency being per connection, connect() to the answer's last byte, and
 * cpu_s connload's own CPU time (user+system), to show it is no bottleneck.
 *
 * usage: connload -m MODE -p PORT [-t TARGET] [-c CONNS] [-d SECONDS]
 *                 [-T TIMEOUT_MS] [-H HOST]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_HTTP, M_PROXY1, M_PROXY2, M_SOCKS5, M_CONNECT };

enum state {
  S_IDLE,
  S_CONNECTING,
  S_SOCKS_METHOD, /* greeting sent, want 05 00 */
  S_SOCKS_REPLY,  /* CONNECT sent, want 05 00 00 ATYP ADDR PORT */
  S_CONNECT_REPLY, /* CONNECT sent, want "HTTP/1.x 200 ...\r\n\r\n" */
  S_RESPONSE,     /* GET sent, want the whole response */
};

/* Failure kinds, in the order of the JSON "errors" object. */
enum kind { K_CONNECT, K_RESET, K_EOF, K_PROTO, K_STATUS, K_TIMEOUT, K_OVERFLOW, K_COUNT };
static const char *const kind_names[K_COUNT] = {
    "connect", "reset", "eof", "protocol", "status", "timeout", "overflow",
};

/* Room for a handshake reply or an HTTP response head; nginx's answer to
 * the GET is about 150 bytes, a CONNECT reply under 100. */
#define BUF_SIZE 4096
#define OUT_SIZE 512

struct conn {
  int fd;
  enum state state;
  uint64_t start_ns;
  size_t in_len;
  char in[BUF_SIZE];
  size_t out_len, out_off;
  char out[OUT_SIZE];
};

static enum mode mode = M_HTTP;
static int port = 0, target = 0, nconns = 50, timeout_ms = 5000;
static double seconds = 5;
static const char *host = "127.0.0.1";
static int epfd;
static struct conn *conns;
static uint64_t ok, failed, abandoned, errors[K_COUNT];
static uint32_t *lat;
static size_t lat_len, lat_cap;
static char get_req[256];
static int get_len;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

static void finish(struct conn *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
  c->state = S_IDLE;
}

static void fail(struct conn *c, enum kind k) {
  failed++;
  errors[k]++;
  finish(c);
}

static void succeed(struct conn *c) {
  uint64_t us = (now_ns() - c->start_ns) / 1000u;
  if (lat_len == lat_cap) {
    lat_cap = lat_cap ? lat_cap * 2 : 65536;
    lat = realloc(lat, lat_cap * sizeof *lat);
    if (!lat) die("realloc");
  }
  lat[lat_len++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
  ok++;
  finish(c);
}

static void start(struct conn *c) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c->start_ns = now_ns();
  c->in_len = c->out_len = c->out_off = 0;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->state = S_CONNECTING;
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    fail(c, K_CONNECT);
  }
}

/* Writes what is queued; arms EPOLLOUT for the rest.  0, or -1 after fail(). */
static int flush(struct conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      fail(c, K_RESET);
      return -1;
    }
    c->out_off += (size_t)n;
  }
  struct epoll_event ev = {
      .events = c->out_off < c->out_len ? EPOLLIN | EPOLLOUT : EPOLLIN,
      .data.ptr = c,
  };
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  return 0;
}

static int send_bytes(struct conn *c, const void *p, size_t n) {
  if (c->out_len + n > OUT_SIZE) {
    fail(c, K_OVERFLOW);
    return -1;
  }
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
  return flush(c);
}

static void send_get(struct conn *c, enum state next) {
  c->in_len = 0;
  c->state = next;
  send_bytes(c, get_req, (size_t)get_len);
}

/* The source and destination a PROXY header names (fixed: the proxy under
 * test parses it, nothing checks the addresses). */
static const char proxy_v1[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
static const unsigned char proxy_v2[28] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
    0x21, 0x11, 0x00, 0x0c,                                                 /* v2 PROXY, TCP4, 12 bytes */
    192, 0, 2, 1, 198, 51, 100, 2,                                          /* addresses */
    0xdc, 0x04, 0x01, 0xbb,                                                 /* ports 56324, 443 */
};

static void connected(struct conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
    fail(c, K_CONNECT);
    return;
  }
  char req[256];
  int n;
  switch (mode) {
  case M_SOCKS5:
    c->state = S_SOCKS_METHOD;
    send_bytes(c, "\x05\x01\x00", 3);
    break;
  case M_CONNECT:
    c->state = S_CONNECT_REPLY;
    n = snprintf(req, sizeof req, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
                 target, target);
    send_bytes(c, req, (size_t)n);
    break;
  case M_PROXY1:
    c->out_len = sizeof proxy_v1 - 1;
    memcpy(c->out, proxy_v1, c->out_len);
    send_get(c, S_RESPONSE);
    break;
  case M_PROXY2:
    c->out_len = sizeof proxy_v2;
    memcpy(c->out, proxy_v2, c->out_len);
    send_get(c, S_RESPONSE);
    break;
  case M_HTTP:
    send_get(c, S_RESPONSE);
    break;
  }
}

/* Content-Length of a response head (-1 if none). */
static long content_length(const char *head, size_t len) {
  static const char name[] = "\r\ncontent-length:";
  size_t nl = sizeof name - 1;
  for (size_t i = 0; i + nl <= len; i++) {
    if (strncasecmp(head + i, name, nl) == 0) return strtol(head + i + nl, NULL, 10);
  }
  return -1;
}

/* Reacts to the bytes in c->in; called after each read and at EOF. */
static void progress(struct conn *c, int eof) {
  const unsigned char *in = (const unsigned char *)c->in;
  const char *end;
  size_t want;
  switch (c->state) {
  case S_SOCKS_METHOD:
    if (c->in_len < 2) break;
    if (in[0] != 5 || in[1] != 0 || c->in_len > 2) { fail(c, K_PROTO); return; }
    c->in_len = 0;
    c->out_len = c->out_off = 0;
    c->state = S_SOCKS_REPLY;
    {
      unsigned char req[10] = {5, 1, 0, 1, 127, 0, 0, 1, (unsigned char)(target >> 8),
                               (unsigned char)target};
      send_bytes(c, req, sizeof req);
    }
    return;
  case S_SOCKS_REPLY:
    if (c->in_len < 5) break;
    if (in[0] != 5 || in[1] != 0) { fail(c, K_PROTO); return; }
    want = in[3] == 1 ? 10 : in[3] == 4 ? 22 : in[3] == 3 ? 7u + in[4] : 0;
    if (want == 0) { fail(c, K_PROTO); return; }
    if (c->in_len < want) break;
    if (c->in_len > want) { fail(c, K_PROTO); return; }
    c->out_len = c->out_off = 0;
    { send_get(c, S_RESPONSE); return; }
  case S_CONNECT_REPLY:
    end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) break;
    if (c->in_len < 12 || memcmp(c->in, "HTTP/1.", 7) != 0 || memcmp(c->in + 9, "200", 3) != 0) {
      { fail(c, K_STATUS); return; }
    }
    if ((size_t)(end + 4 - c->in) != c->in_len) { fail(c, K_PROTO); return; }
    c->out_len = c->out_off = 0;
    { send_get(c, S_RESPONSE); return; }
  case S_RESPONSE:
    end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) break;
    if (c->in_len < 12 || memcmp(c->in, "HTTP/1.", 7) != 0 || memcmp(c->in + 9, "200", 3) != 0) {
      { fail(c, K_STATUS); return; }
    }
    {
      size_t head = (size_t)(end + 4 - c->in);
      long cl = content_length(c->in, head);
      if (cl >= 0 && c->in_len >= head + (size_t)cl) { succeed(c); return; }
      if (cl < 0 && eof) { succeed(c); return; }
    }
    break;
  default:
    return;
  }
  if (eof) fail(c, K_EOF);
  else if (c->in_len == BUF_SIZE) fail(c, K_OVERFLOW);
}

static void readable(struct conn *c) {
  for (;;) {
    ssize_t n = recv(c->fd, c->in + c->in_len, BUF_SIZE - c->in_len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) { fail(c, K_RESET); return; }
    c->in_len += (size_t)n;
    progress(c, n == 0);
    /* Else a handshake step may have consumed the buffer: read on. */
    if (n == 0 || c->state == S_IDLE) return;
  }
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static uint32_t pct(double p) {
  if (!lat_len) return 0;
  size_t i = (size_t)(p * (double)(lat_len - 1) + 0.5);
  return lat[i];
}

static void usage(void) {
  fprintf(stderr, "usage: connload -m http|proxy1|proxy2|socks5|connect -p PORT [-t TARGET] "
                  "[-c CONNS] [-d SECONDS] [-T TIMEOUT_MS] [-H HOST]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "m:p:t:c:d:T:H:")) != -1) {
    switch (opt) {
    case 'm':
      if (!strcmp(optarg, "http")) mode = M_HTTP;
      else if (!strcmp(optarg, "proxy1")) mode = M_PROXY1;
      else if (!strcmp(optarg, "proxy2")) mode = M_PROXY2;
      else if (!strcmp(optarg, "socks5")) mode = M_SOCKS5;
      else if (!strcmp(optarg, "connect")) mode = M_CONNECT;
      else usage();
      break;
    case 'p': port = atoi(optarg); break;
    case 't': target = atoi(optarg); break;
    case 'c': nconns = atoi(optarg); break;
    case 'd': seconds = atof(optarg); break;
    case 'T': timeout_ms = atoi(optarg); break;
    case 'H': host = optarg; break;
    default: usage();
    }
  }
  if (port <= 0 || port > 65535 || nconns <= 0 || seconds <= 0 || timeout_ms <= 0) usage();
  if ((mode == M_SOCKS5 || mode == M_CONNECT) && (target <= 0 || target > 65535)) usage();
  get_len = snprintf(get_req, sizeof get_req,
                     "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
  if (get_len <= 0 || (size_t)get_len >= sizeof get_req) usage();

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!conns) die("calloc");
  struct epoll_event *evs = calloc((size_t)nconns, sizeof *evs);
  if (!evs) die("calloc");

  const uint64_t t0 = now_ns();
  const uint64_t stop_at = t0 + (uint64_t)(seconds * 1e9);
  const uint64_t timeout_ns = (uint64_t)timeout_ms * 1000000u;
  uint64_t last_scan = t0;
  for (int i = 0; i < nconns; i++) {
    conns[i].fd = -1;
    start(&conns[i]);
  }
  for (;;) {
    int n = epoll_wait(epfd, evs, nconns, 10);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c->state == S_IDLE) continue;
      if (c->state == S_CONNECTING) {
        connected(c);
      } else {
        if ((evs[i].events & EPOLLOUT) && flush(c) < 0) continue;
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(c);
      }
    }
    uint64_t now = now_ns();
    int running = now < stop_at;
    int busy = 0;
    /* Timeouts: a scan every 10 ms is plenty against a timeout of seconds. */
    int scan = now - last_scan >= 10000000u;
    if (scan) last_scan = now;
    for (int i = 0; i < nconns; i++) {
      struct conn *c = &conns[i];
      if (c->state != S_IDLE && scan && now - c->start_ns > timeout_ns) fail(c, K_TIMEOUT);
      if (c->state == S_IDLE && running) start(c);
      if (c->state != S_IDLE) busy++;
    }
    if (!running && (!busy || now - stop_at > timeout_ns)) {
      for (int i = 0; i < nconns; i++) {
        if (conns[i].state != S_IDLE) {
          abandoned++;
          finish(&conns[i]);
        }
      }
      break;
    }
  }
  double el = (double)(now_ns() - t0) / 1e9;
  qsort(lat, lat_len, sizeof *lat, cmp_u32);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  printf("{\"ok\":%llu,\"failed\":%llu,\"abandoned\":%llu,\"seconds\":%.3f,\"cps\":%.1f,"
         "\"p50_us\":%u,\"p99_us\":%u,\"max_us\":%u,\"cpu_s\":%.3f,\"errors\":{",
         (unsigned long long)ok, (unsigned long long)failed, (unsigned long long)abandoned, el,
         (double)ok / el, pct(0.50), pct(0.99), lat_len ? lat[lat_len - 1] : 0, cpu);
  int first = 1;
  for (int k = 0; k < K_COUNT; k++) {
    if (!errors[k]) continue;
    printf("%s\"%s\":%llu", first ? "" : ",", kind_names[k], (unsigned long long)errors[k]);
    first = 0;
  }
  printf("}}\n");
  return 0;
}
