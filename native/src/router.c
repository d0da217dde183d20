/*
 * router.c - the built-in routers (SOCKS4/4a/5, HTTP CONNECT) and their
 * address policy, decided on the worker that holds the connection.
 *
 * Theory of operation
 * A listener with RK_LISTEN_HOLD may carry a router (rk_listener_set_router):
 * its kind, its allow/deny rules, its users and the connect options, as a
 * description the host compiled (src/native/router.ts writes it; the rules
 * arrive normalised: CIDRs masked, name patterns lower case ASCII). A held
 * connection of such a listener does not post RK_EV_HOLD: each time bytes
 * come, the handshake is parsed from the start of the held bytes (the
 * parser is pure, so re-parsing gives the same answer, and nothing is kept
 * between steps but the number of handshake replies already sent):
 *   wait          read on (up to the route limit)
 *   send          a handshake step (SOCKS5 method choice, auth result):
 *                 write it, read on
 *   close         a refusal or a malformed request: the reply, then close
 *                 (the CLOSE decision of hold.c)
 *   destination   normalise the host as src/proxy/address_policy.ts does;
 *                 an address is checked at once, a name goes to the
 *                 engine's resolver threads and comes back as
 *                 RK__CMD_ROUTE_RESOLVED, then every address is checked and
 *                 the first allowed one is connected to (the literal, never
 *                 the name again), with the protocol's success reply to the
 *                 client and the bytes after the handshake to the target.
 *                 A failed connect posts RK_EV_ROUTE_FAILED and sends the
 *                 protocol's failure reply; a connection that ends with
 *                 an error later posts RK_EV_ROUTE_TARGET before its
 *                 RK_EV_CLOSED (the host names the target in messages).
 *   defer         whatever the host must see: a refusal when the host
 *                 listens for them (RK_ROUTER_REPORT: its router says why),
 *                 a name that is not ASCII (IDNA), a credential that is not
 *                 UTF-8, the client's EOF or the route limit before a
 *                 decision. The connection then posts RK_EV_HOLD with
 *                 RK_HOLD_FIRST | RK_HOLD_ROUTED and the number of replies
 *                 sent, and from then on is an ordinary held connection.
 * The replies, limits and rules are the TypeScript routers' (src/proxy/
 * socks.ts, address_policy.ts); one conformance suite runs both.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The description's format version (src/native/router.ts writes the same). */
#define RK__ROUTER_MAGIC 0x524b5231u /* "RKR1" */
/* The most an HTTP CONNECT request head may take (socks.ts HTTP_HEAD_MAX). */
#define RK__HTTP_HEAD_MAX (16 * 1024)

typedef struct {
  uint8_t len, prefix;
  uint8_t b[16];
} rk__cidr;

typedef struct {
  int32_t ncidr, nhost, nport; /* -1: the rule has no such part */
  rk__cidr *cidr;
  char **host;
  uint32_t (*port)[2];
} rk__rule;

typedef struct {
  uint8_t *u, *p;
  uint32_t ulen, plen;
} rk__user;

/* A routing table's entry (RK_ROUTER_TABLE). */
enum { RK__MATCH_PREFIX = 1, RK__MATCH_HOST, RK__MATCH_SNI, RK__MATCH_DEFAULT };

typedef struct {
  uint32_t match;
  uint8_t *pattern; /* prefix bytes, or a lower case name pattern (NUL after) */
  uint32_t pattern_len;
  int fixed;        /* connect to host:port here; else the host decides */
  char *host;
  uint32_t port;
  int32_t connect_timeout; /* -1: the router's */
} rk__entry;

struct rk__router {
  uint32_t kind, flags, limit;
  int32_t connect_timeout, family;
  char *bind_host;
  int32_t nallow, ndeny, nusers;
  rk__rule *allow, *deny;
  rk__user *users;
  int32_t nentries; /* RK_ROUTER_TABLE */
  rk__entry *entries;
  int32_t refs; /* atomic: the listener while it has it, each connection
                   that started with it */
};

/* ---- the description --------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t left;
  int bad;
} rk__rd;

static uint32_t rk__u32(rk__rd *r) {
  if (r->left < 4) {
    r->bad = 1;
    return 0;
  }
  uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 |
               (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
  r->p += 4;
  r->left -= 4;
  return v;
}

/* A counted byte string, copied with a NUL after it. */
static uint8_t *rk__bytes(rk__rd *r, uint32_t *len) {
  uint32_t n = rk__u32(r);
  if (r->bad || n > r->left || n > 65536) {
    r->bad = 1;
    return NULL;
  }
  uint8_t *s = malloc(n + 1);
  if (s == NULL) {
    r->bad = 1;
    return NULL;
  }
  memcpy(s, r->p, n);
  s[n] = 0;
  r->p += n;
  r->left -= n;
  if (len != NULL)
    *len = n;
  return s;
}

/* A count of at most max items (UINT32_MAX: absent, as -1). */
static int32_t rk__count(rk__rd *r, uint32_t max) {
  uint32_t n = rk__u32(r);
  if (n == UINT32_MAX)
    return -1;
  if (n > max)
    r->bad = 1;
  return r->bad ? 0 : (int32_t)n;
}

static void rk__rules_free(rk__rule *rules, int32_t n) {
  for (int32_t i = 0; rules != NULL && i < n; i++) {
    free(rules[i].cidr);
    for (int32_t j = 0; rules[i].host != NULL && j < rules[i].nhost; j++)
      free(rules[i].host[j]);
    free(rules[i].host);
    free(rules[i].port);
  }
  free(rules);
}

static void rk__router_free(rk__router *rt) {
  rk__rules_free(rt->allow, rt->nallow);
  rk__rules_free(rt->deny, rt->ndeny);
  for (int32_t i = 0; rt->users != NULL && i < rt->nusers; i++) {
    free(rt->users[i].u);
    free(rt->users[i].p);
  }
  free(rt->users);
  for (int32_t i = 0; rt->entries != NULL && i < rt->nentries; i++) {
    free(rt->entries[i].pattern);
    free(rt->entries[i].host);
  }
  free(rt->entries);
  free(rt->bind_host);
  free(rt);
}

void rk__router_unref(rk__router *rt) {
  if (rt != NULL && __atomic_sub_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL) == 0)
    rk__router_free(rt);
}

/* The listener's router for a new connection, with a reference: taken
 * under tbl_lock, where rk_listener_set_router swaps it, so the listener's
 * own reference keeps it alive until ours is counted. */
rk__router *rk__router_take(rk__listener *l) {
  pthread_mutex_lock(&l->e->tbl_lock);
  rk__router *rt = l->router;
  if (rt != NULL)
    __atomic_add_fetch(&rt->refs, 1, __ATOMIC_ACQ_REL);
  pthread_mutex_unlock(&l->e->tbl_lock);
  return rt;
}

static rk__rule *rk__rules_read(rk__rd *r, int32_t *count) {
  int32_t n = rk__count(r, 100000);
  if (n < 0)
    r->bad = 1;
  if (r->bad)
    return NULL;
  rk__rule *rules = calloc((size_t)n + 1, sizeof *rules);
  if (rules == NULL) {
    r->bad = 1;
    return NULL;
  }
  *count = n;
  for (int32_t i = 0; i < n && !r->bad; i++) {
    rk__rule *ru = &rules[i];
    ru->ncidr = rk__count(r, 100000);
    if (ru->ncidr > 0 && !r->bad) {
      ru->cidr = calloc((size_t)ru->ncidr, sizeof *ru->cidr);
      if (ru->cidr == NULL)
        r->bad = 1;
      for (int32_t j = 0; j < ru->ncidr && !r->bad; j++) {
        uint32_t len = rk__u32(r), prefix = rk__u32(r);
        if ((len != 4 && len != 16) || prefix > len * 8 || r->left < len) {
          r->bad = 1;
          break;
        }
        ru->cidr[j].len = (uint8_t)len;
        ru->cidr[j].prefix = (uint8_t)prefix;
        memcpy(ru->cidr[j].b, r->p, len);
        r->p += len;
        r->left -= len;
      }
    }
    ru->nhost = rk__count(r, 100000);
    if (ru->nhost > 0 && !r->bad) {
      ru->host = calloc((size_t)ru->nhost, sizeof *ru->host);
      if (ru->host == NULL)
        r->bad = 1;
      for (int32_t j = 0; j < ru->nhost && !r->bad; j++)
        ru->host[j] = (char *)rk__bytes(r, NULL);
    }
    ru->nport = rk__count(r, 100000);
    if (ru->nport > 0 && !r->bad) {
      ru->port = calloc((size_t)ru->nport, sizeof *ru->port);
      if (ru->port == NULL)
        r->bad = 1;
      for (int32_t j = 0; j < ru->nport && !r->bad; j++) {
        ru->port[j][0] = rk__u32(r);
        ru->port[j][1] = rk__u32(r);
      }
    }
  }
  return rules;
}

/* Compile a description (see src/native/router.ts): NULL if malformed. */
static rk__router *rk__router_parse(const uint8_t *data, int32_t len) {
  rk__rd r = {data, (size_t)len, 0};
  rk__router *rt = calloc(1, sizeof *rt);
  if (rt == NULL)
    return NULL;
  rt->refs = 1;
  if (rk__u32(&r) != RK__ROUTER_MAGIC)
    r.bad = 1;
  rt->kind = rk__u32(&r);
  rt->flags = rk__u32(&r);
  rt->limit = rk__u32(&r);
  rt->connect_timeout = (int32_t)rk__u32(&r);
  rt->family = (int32_t)rk__u32(&r);
  uint32_t blen = 0;
  rt->bind_host = (char *)rk__bytes(&r, &blen);
  if (!r.bad && blen == 0) {
    free(rt->bind_host);
    rt->bind_host = NULL;
  }
  if ((rt->kind != RK_ROUTER_SOCKS && rt->kind != RK_ROUTER_CONNECT &&
       rt->kind != RK_ROUTER_TABLE) ||
      rt->limit == 0 || rt->connect_timeout < 0 || rt->family < 0 ||
      rt->family > RK_FAMILY_ONLY_V6)
    r.bad = 1;
  rt->allow = rk__rules_read(&r, &rt->nallow);
  rt->deny = rk__rules_read(&r, &rt->ndeny);
  int32_t nu = rk__count(&r, 100000);
  if (nu >= 0 && !r.bad) {
    rt->users = calloc((size_t)nu + 1, sizeof *rt->users);
    if (rt->users == NULL)
      r.bad = 1;
    else
      rt->nusers = nu;
    for (int32_t i = 0; i < rt->nusers && !r.bad; i++) {
      rt->users[i].u = rk__bytes(&r, &rt->users[i].ulen);
      rt->users[i].p = rk__bytes(&r, &rt->users[i].plen);
    }
  } else {
    rt->nusers = -1; /* no users: no authentication */
  }
  if (rt->kind == RK_ROUTER_TABLE && !r.bad) {
    int32_t ne = rk__count(&r, 100000);
    if (ne < 0)
      r.bad = 1;
    if (!r.bad && (rt->entries = calloc((size_t)ne + 1, sizeof *rt->entries)) == NULL)
      r.bad = 1;
    if (!r.bad)
      rt->nentries = ne;
    for (int32_t i = 0; i < rt->nentries && !r.bad; i++) {
      rk__entry *en = &rt->entries[i];
      en->match = rk__u32(&r);
      en->pattern = rk__bytes(&r, &en->pattern_len);
      en->fixed = (int)rk__u32(&r);
      uint32_t hl = 0;
      en->host = (char *)rk__bytes(&r, &hl);
      en->port = rk__u32(&r);
      uint32_t t = rk__u32(&r);
      en->connect_timeout = t == UINT32_MAX ? -1 : (int32_t)t;
      if (en->match < RK__MATCH_PREFIX || en->match > RK__MATCH_DEFAULT ||
          (en->match == RK__MATCH_PREFIX && en->pattern_len == 0) ||
          (en->fixed != 0 && en->fixed != 1) ||
          (en->fixed && (hl == 0 || en->port == 0 || en->port > 65535)) ||
          en->connect_timeout < -1)
        r.bad = 1;
    }
  }
  if (r.bad || r.left != 0) {
    rk__router_free(rt);
    return NULL;
  }
  return rt;
}

/* ---- addresses (address_policy.ts: fromBytes, inetAton, ipv6Bytes) ----- */

static void rk__addr_from(rk__addr *a, const uint8_t *b, int len) {
  if (len == 16) {
    int zero10 = 1;
    for (int i = 0; i < 10; i++)
      zero10 &= b[i] == 0;
    int mapped = zero10 && b[10] == 0xff && b[11] == 0xff;
    /* ::a.b.c.d, but not :: and ::1, which are IPv6's own */
    int compat = zero10 && b[10] == 0 && b[11] == 0 &&
                 (b[12] + b[13] + b[14] != 0 || b[15] > 1);
    if (mapped || compat) {
      b += 12;
      len = 4;
    }
  }
  a->len = (uint8_t)len;
  memcpy(a->b, b, (size_t)len);
  if (len == 4) {
    a->this_host = b[0] == 0;
  } else {
    a->this_host = 1;
    for (int i = 0; i < 16; i++)
      a->this_host &= b[i] == 0;
  }
}

/* RFC 5952 text (ip.ts ipv6Text) or a dotted quad. */
static void rk__addr_text(const rk__addr *a, char *out, size_t cap) {
  if (a->len == 4) {
    snprintf(out, cap, "%u.%u.%u.%u", a->b[0], a->b[1], a->b[2], a->b[3]);
    return;
  }
  char text[48];
  rk__ipv6_text(a->b, text);
  snprintf(out, cap, "%s", text);
}

static int rk__is_digit(int c) { return c >= '0' && c <= '9'; }
static int rk__is_hex(int c) {
  return rk__is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static int rk__hexval(int c) {
  return rk__is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* ip.ts isIPv4: four decimal parts 0..255 without leading zeros. */
static int rk__is_ipv4(const char *s, size_t n, uint8_t out[4]) {
  int part = 0;
  size_t i = 0;
  while (part < 4) {
    size_t st = i;
    unsigned v = 0;
    while (i < n && rk__is_digit(s[i]) && i - st < 4)
      v = v * 10 + (unsigned)(s[i++] - '0');
    size_t dl = i - st;
    if (dl == 0 || dl > 3 || (dl > 1 && s[st] == '0') || v > 255)
      return 0;
    out[part++] = (uint8_t)v;
    if (part < 4) {
      if (i >= n || s[i] != '.')
        return 0;
      i++;
    }
  }
  return i == n;
}

/* ip.ts ipv6Bytes, step by step. */
static int rk__ipv6(const char *text, size_t n, uint8_t out[16]) {
  char t[300];
  if (n >= sizeof t - 16)
    return 0;
  memcpy(t, text, n);
  t[n] = 0;
  if (memchr(t, '.', n) != NULL) {
    char *colon = NULL;
    for (size_t i = 0; i < n; i++)
      if (t[i] == ':')
        colon = &t[i];
    uint8_t q[4];
    if (colon == NULL ||
        !rk__is_ipv4(colon + 1, n - (size_t)(colon + 1 - t), q))
      return 0;
    n = (size_t)(colon + 1 - t);
    n += (size_t)snprintf(t + n, sizeof t - n, "%x:%x",
                          (unsigned)(q[0] << 8 | q[1]),
                          (unsigned)(q[2] << 8 | q[3]));
  }
  /* split on "::": at most one */
  char *dc = strstr(t, "::");
  if (dc != NULL && strstr(dc + 2, "::") != NULL)
    return 0;
  const char *parts[2] = {t, dc != NULL ? dc + 2 : NULL};
  size_t plen[2] = {dc != NULL ? (size_t)(dc - t) : n,
                    dc != NULL ? n - (size_t)(dc + 2 - t) : 0};
  unsigned g[2][9];
  int ng[2] = {0, 0};
  for (int h = 0; h < 2; h++) {
    if (parts[h] == NULL || plen[h] == 0)
      continue; /* "" splits into nothing here */
    const char *s = parts[h];
    size_t i = 0;
    for (;;) {
      size_t st = i;
      unsigned v = 0;
      while (i < plen[h] && s[i] != ':') {
        if (!rk__is_hex(s[i]) || i - st >= 4)
          return 0;
        v = v * 16 + (unsigned)rk__hexval(s[i]);
        i++;
      }
      if (i == st || ng[h] >= 9)
        return 0;
      g[h][ng[h]++] = v;
      if (i >= plen[h])
        break;
      i++; /* ':' */
    }
  }
  unsigned all[8];
  int k = 0;
  if (dc != NULL) {
    int fill = 8 - ng[0] - ng[1];
    if (fill < 1)
      return 0;
    for (int i = 0; i < ng[0]; i++)
      all[k++] = g[0][i];
    while (fill-- > 0)
      all[k++] = 0;
    for (int i = 0; i < ng[1]; i++)
      all[k++] = g[1][i];
  } else {
    if (ng[0] != 8)
      return 0;
    for (int i = 0; i < 8; i++)
      all[k++] = g[0][i];
  }
  for (int i = 0; i < 8; i++) {
    out[2 * i] = (uint8_t)(all[i] >> 8);
    out[2 * i + 1] = (uint8_t)all[i];
  }
  return 1;
}

/* One inet_aton part: 0x hex, 0 octal, decimal; -1 if none. Saturates
 * at 2^40 (anything that large is out of every range). */
static int64_t rk__aton_part(const char *p, size_t n) {
  const int64_t sat = (int64_t)1 << 40;
  int64_t v = 0;
  if (n >= 3 && p[0] == '0' && p[1] == 'x') {
    for (size_t i = 2; i < n; i++) {
      if (!rk__is_hex(p[i]) || (p[i] >= 'A' && p[i] <= 'F'))
        return -1;
      v = v >= sat ? sat : v * 16 + rk__hexval(p[i]);
    }
    return v;
  }
  if (n >= 1 && p[0] == '0') {
    for (size_t i = 1; i < n; i++) {
      if (p[i] < '0' || p[i] > '7')
        return -1;
      v = v >= sat ? sat : v * 8 + (p[i] - '0');
    }
    return v;
  }
  if (n == 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (!rk__is_digit(p[i]))
      return -1;
    v = v >= sat ? sat : v * 10 + (p[i] - '0');
  }
  return v;
}

/* inetAton of a lower case name: 1 and the address, or 0. */
static int rk__inet_aton(const char *s, size_t n, uint8_t out[4]) {
  int64_t nums[4];
  int k = 0;
  size_t st = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '.')
      continue;
    if (k == 4)
      return 0;
    nums[k] = rk__aton_part(s + st, i - st);
    if (nums[k] < 0)
      return 0;
    k++;
    st = i + 1;
  }
  int64_t last = nums[k - 1];
  for (int i = 0; i < k - 1; i++)
    if (nums[i] > 255)
      return 0;
  if (last >= ((int64_t)1 << (8 * (4 - (k - 1)))))
    return 0;
  int64_t v = last;
  for (int i = 0; i < k - 1; i++)
    v += nums[i] << (8 * (3 - i));
  out[0] = (uint8_t)(v >> 24);
  out[1] = (uint8_t)(v >> 16);
  out[2] = (uint8_t)(v >> 8);
  out[3] = (uint8_t)v;
  return 1;
}

enum { RK__HOST_INVALID = 0, RK__HOST_ADDRESS, RK__HOST_NAME, RK__HOST_DEFER };

typedef struct {
  rk__addr addr;  /* RK__HOST_ADDRESS */
  char name[256]; /* RK__HOST_NAME: lower case, no trailing dot */
  int dotted;     /* the query keeps its trailing dot */
} rk__host;

/* address_policy.ts classifyHost for host[0..n): a host that is not ASCII
 * needs IDNA, which the host's runtime does (RK__HOST_DEFER). */
static int rk__classify(const uint8_t *host, size_t n, rk__host *out) {
  for (size_t i = 0; i < n; i++)
    if (host[i] >= 0x80)
      return RK__HOST_DEFER;
  const char *h = (const char *)host;
  if (n == 0 || n > 255)
    return RK__HOST_INVALID;
  if (h[0] == '[' && h[n - 1] == ']' && n >= 2) {
    uint8_t b[16];
    h++;
    n -= 2;
    if (memchr(h, '%', n) != NULL || !rk__ipv6(h, n, b))
      return RK__HOST_INVALID;
    rk__addr_from(&out->addr, b, 16);
    return RK__HOST_ADDRESS;
  }
  if (memchr(h, '%', n) != NULL)
    return RK__HOST_INVALID;
  if (memchr(h, ':', n) != NULL) {
    uint8_t b[16];
    if (!rk__ipv6(h, n, b))
      return RK__HOST_INVALID;
    rk__addr_from(&out->addr, b, 16);
    return RK__HOST_ADDRESS;
  }
  char *name = out->name;
  for (size_t i = 0; i < n; i++)
    name[i] = (char)(h[i] >= 'A' && h[i] <= 'Z' ? h[i] | 0x20 : h[i]);
  out->dotted = name[n - 1] == '.';
  if (out->dotted)
    n--;
  name[n] = 0;
  if (n == 0 || n > 253)
    return RK__HOST_INVALID;
  size_t st = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && name[i] != '.') {
      char c = name[i];
      if (!((c >= 'a' && c <= 'z') || rk__is_digit(c) || c == '_' || c == '-'))
        return RK__HOST_INVALID;
      continue;
    }
    if (i == st || i - st > 63)
      return RK__HOST_INVALID;
    st = i + 1;
  }
  uint8_t v4[4];
  if (rk__inet_aton(name, n, v4)) {
    rk__addr_from(&out->addr, v4, 4);
    return RK__HOST_ADDRESS;
  }
  /* a last label that is a number: a resolver may read it as one */
  const char *last = strrchr(name, '.');
  last = last == NULL ? name : last + 1;
  size_t ll = strlen(last), i = 0;
  if (ll >= 2 && last[0] == '0' && last[1] == 'x') {
    for (i = 2; i < ll && rk__is_hex(last[i]); i++) {
    }
  } else {
    for (i = 0; i < ll && rk__is_digit(last[i]); i++) {
    }
    if (ll == 0)
      i = 1; /* cannot happen: labels are not empty */
  }
  if (i == ll)
    return RK__HOST_INVALID;
  return RK__HOST_NAME;
}

/* ---- rules (address_policy.ts Access) ---------------------------------- */

static int rk__cidr_contains(const rk__cidr *c, const uint8_t *b, int len) {
  if (c->len != len)
    return 0;
  for (int i = 0; i < len; i++) {
    int keep = c->prefix - i * 8;
    if (keep <= 0)
      return 1;
    if (keep > 8)
      keep = 8;
    uint8_t mask = (uint8_t)(0xff << (8 - keep));
    if ((b[i] & mask) != c->b[i])
      return 0;
  }
  return 1;
}

/* A name pattern: "*" matches any run of characters (".*"). */
static int rk__glob(const char *p, const char *s) {
  const char *star = NULL, *mark = NULL;
  while (*s) {
    if (*p == '*') {
      star = p++;
      mark = s;
    } else if (*p == *s) {
      p++;
      s++;
    } else if (star != NULL) {
      p = star + 1;
      s = ++mark;
    } else {
      return 0;
    }
  }
  while (*p == '*')
    p++;
  return *p == 0;
}

static const uint8_t rk__lo4[4] = {127, 0, 0, 1};
static const uint8_t rk__lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0, 1};

enum { RK__CIDR_PLAIN, RK__CIDR_DENY, RK__CIDR_NAMED };

static int rk__cidr_ok(const rk__cidr *c, const rk__addr *a, int how) {
  if (how == RK__CIDR_DENY)
    return rk__cidr_contains(c, a->b, a->len) ||
           (a->this_host && (rk__cidr_contains(c, rk__lo4, 4) ||
                             rk__cidr_contains(c, rk__lo6, 16)));
  if (how == RK__CIDR_NAMED) {
    /* the range lies inside the unspecified addresses: it names them */
    int names;
    if (c->len == 4) {
      names = c->prefix >= 8 && c->b[0] == 0;
    } else {
      names = c->prefix == 128;
      for (int i = 0; i < 16; i++)
        names &= c->b[i] == 0;
    }
    return names && rk__cidr_contains(c, a->b, a->len);
  }
  return rk__cidr_contains(c, a->b, a->len);
}

/* address_policy.ts isAddressPattern: digits, dots and stars with a digit,
 * or a colon anywhere; matched against the address, never a name. */
static int rk__address_pattern(const char *p) {
  int digit = 0, other = 0;
  for (; *p; p++) {
    if (*p == ':')
      return 1;
    if (rk__is_digit(*p))
      digit = 1;
    else if (*p != '.' && *p != '*')
      other = 1;
  }
  return digit && !other;
}

static int rk__rule_matches(const rk__rule *r, const char *name,
                            const rk__addr *a, uint32_t port, int how) {
  if (r->nport >= 0) {
    int hit = 0;
    for (int32_t i = 0; i < r->nport && !hit; i++)
      hit = port >= r->port[i][0] && port <= r->port[i][1];
    if (!hit)
      return 0;
  }
  if (r->ncidr >= 0) {
    int hit = 0;
    for (int32_t i = 0; i < r->ncidr && !hit; i++)
      hit = rk__cidr_ok(&r->cidr[i], a, how);
    if (!hit)
      return 0;
  }
  if (r->nhost >= 0) {
    char text[64];
    text[0] = '\0'; /* the address as text, made when a pattern needs it */
    int hit = 0;
    for (int32_t i = 0; i < r->nhost && !hit; i++) {
      const char *subject = name;
      if (name == NULL || rk__address_pattern(r->host[i])) {
        if (text[0] == '\0')
          rk__addr_text(a, text, sizeof text);
        subject = text;
      }
      hit = rk__glob(r->host[i], subject);
    }
    if (!hit)
      return 0;
  }
  return 1;
}

static int rk__denied(const rk__router *rt, const char *name,
                      const rk__addr *a, uint32_t port) {
  for (int32_t i = 0; i < rt->ndeny; i++)
    if (rk__rule_matches(&rt->deny[i], name, a, port, RK__CIDR_DENY))
      return 1;
  return 0;
}

static int rk__allowed(const rk__router *rt, const char *name,
                       const rk__addr *a, uint32_t port) {
  for (int32_t i = 0; i < rt->nallow; i++) {
    const rk__rule *r = &rt->allow[i];
    if (a->this_host) {
      /* only a rule that names the unspecified addresses reaches them */
      if (r->ncidr >= 0 && rk__rule_matches(r, name, a, port, RK__CIDR_NAMED))
        return 1;
    } else if (rk__rule_matches(r, name, a, port, RK__CIDR_PLAIN)) {
      return 1;
    }
  }
  return 0;
}

/* ---- the handshakes (socks.ts) ----------------------------------------- */

enum {
  RK__R_WAIT = 1, /* read on */
  RK__R_SEND,     /* a handshake step: out, then read on */
  RK__R_CLOSE,    /* out, then close (not a refusal) */
  RK__R_REFUSE,   /* out, then close: a refusal (reported if asked) */
  RK__R_DEST,     /* a destination to check and connect to */
  RK__R_DEFER     /* the host decides */
};

/* Failure replies for a failed connect. */
enum { RK__FAIL_SOCKS4 = 1, RK__FAIL_SOCKS5, RK__FAIL_HTTP };

typedef struct {
  int what;
  uint8_t out[600]; /* the reply (a few unsent handshake replies + one) */
  uint32_t out_len;
  int sent_after;   /* RK__R_SEND: replies sent once out is */
  /* RK__R_DEST */
  const uint8_t *host;
  uint32_t host_len;
  int host_bytes; /* 4 or 16: host is that many address bytes, not a name */
  uint32_t port;
  uint32_t rest; /* offset of the bytes for the target */
  uint8_t denied[600];
  uint32_t denied_len;
  int fail;
  uint8_t fail_prefix[64]; /* SOCKS5: the unsent replies before the code */
  uint32_t fail_prefix_len;
} rk__step;

static void rk__out(rk__step *s, const void *b, size_t n) {
  if (s->out_len + n <= sizeof s->out) {
    memcpy(s->out + s->out_len, b, n);
    s->out_len += (uint32_t)n;
  }
}

static void rk__out_str(rk__step *s, const char *t) { rk__out(s, t, strlen(t)); }

static const uint8_t *rk__find(const uint8_t *d, size_t n, size_t from,
                               uint8_t b) {
  return from < n ? memchr(d + from, b, n - from) : NULL;
}

/* Whether b[0..n) is valid UTF-8 (TextDecoder would keep it as it is). */
static int rk__utf8_ok(const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t c = b[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      k = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      k = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      k = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    for (size_t j = 1; j <= k; j++) {
      if (i + j >= n || (b[i + j] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (b[i + j] & 0x3f);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
        (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += k + 1;
  }
  return 1;
}

/* Whether user:pass is one of the router's users (bytes compared; both
 * valid UTF-8, so equal bytes are equal strings). */
static int rk__known_user(const rk__router *rt, const uint8_t *u, size_t ul,
                          const uint8_t *p, size_t pl) {
  for (int32_t i = 0; i < rt->nusers; i++) {
    const rk__user *x = &rt->users[i];
    if (x->ulen == ul && memcmp(x->u, u, ul) == 0)
      return x->plen == pl && memcmp(x->p, p, pl) == 0;
  }
  return 0;
}

static void rk__socks4_reply(uint8_t *out, uint8_t code) {
  memset(out, 0, 8);
  out[1] = code;
}

static void rk__socks5_reply(uint8_t *out, uint8_t code) {
  const uint8_t r[10] = {5, code, 0, 1, 0, 0, 0, 0, 0, 0};
  memcpy(out, r, 10);
}

static void rk__socks4(const rk__router *rt, const uint8_t *d, size_t n,
                       rk__step *s) {
  /* VN CD DSTPORT(2) DSTIP(4) USERID NUL [HOST NUL] */
  uint8_t r91[8], r90[8];
  rk__socks4_reply(r91, 91);
  rk__socks4_reply(r90, 90);
  if (n < 9) {
    s->what = RK__R_WAIT;
    return;
  }
  const uint8_t *nul = rk__find(d, n, 8, 0);
  if (nul == NULL) {
    s->what = n > 8 + 255 ? RK__R_CLOSE : RK__R_WAIT;
    if (s->what == RK__R_CLOSE)
      rk__out(s, r91, 8);
    return;
  }
  s->port = (uint32_t)d[2] << 8 | d[3];
  size_t end = (size_t)(nul - d) + 1;
  if (d[4] == 0 && d[5] == 0 && d[6] == 0 && d[7] != 0) {
    /* SOCKS4a: the name follows the user id */
    const uint8_t *nul2 = rk__find(d, n, end, 0);
    if (nul2 == NULL) {
      s->what = n > end + 255 ? RK__R_CLOSE : RK__R_WAIT;
      if (s->what == RK__R_CLOSE)
        rk__out(s, r91, 8);
      return;
    }
    s->host = d + end;
    s->host_len = (uint32_t)(nul2 - (d + end));
    end = (size_t)(nul2 - d) + 1;
  } else {
    s->host = d + 4;
    s->host_bytes = 4;
  }
  if (rt->nusers >= 0 || d[1] != 1) {
    s->what = RK__R_REFUSE;
    rk__out(s, r91, 8);
    return;
  }
  s->what = RK__R_DEST;
  s->rest = (uint32_t)end;
  rk__out(s, r90, 8);
  memcpy(s->denied, r91, 8);
  s->denied_len = 8;
  s->fail = RK__FAIL_SOCKS4;
}

/* Read on, with the handshake replies due so far (the first `due`) that
 * are not sent yet, as socks.ts's "more" step carries them. */
static void rk__socks5_more(rk__step *s, const uint8_t (*replies)[2],
                            int done, int due) {
  s->what = RK__R_WAIT;
  if (done >= due)
    return;
  s->what = RK__R_SEND;
  for (int i = done; i < due; i++)
    rk__out(s, replies[i], 2);
  s->sent_after = due;
}

static void rk__socks5(const rk__router *rt, const uint8_t *d, size_t n,
                       int done, rk__step *s) {
  /* greeting: VER NMETHODS METHODS... */
  if (n < 2) {
    s->what = RK__R_WAIT;
    return;
  }
  size_t o = 2 + (size_t)d[1];
  if (n < o) {
    s->what = RK__R_WAIT;
    return;
  }
  uint8_t method = rt->nusers >= 0 ? 2 : 0;
  if (memchr(d + 2, method, o - 2) == NULL) {
    const uint8_t no[2] = {5, 0xff};
    s->what = RK__R_REFUSE;
    rk__out(s, no, 2);
    return;
  }
  /* the handshake's replies so far; those not sent yet go in front */
  uint8_t replies[2][2] = {{5, method}, {1, 0}};
  int nreplies = 1;
  if (method == 2) {
    /* RFC 1929: VER(1) ULEN UNAME PLEN PASSWD */
    if (n < o + 2) {
      rk__socks5_more(s, replies, done, 1);
      return;
    }
    if (d[o] != 1) {
      const uint8_t bad[2] = {1, 1};
      s->what = RK__R_CLOSE;
      for (int i = done; i < 1; i++)
        rk__out(s, replies[i], 2); /* the method choice, if not sent yet */
      rk__out(s, bad, 2);
      return;
    }
    size_t ulen = d[o + 1];
    if (n < o + 2 + ulen + 1) {
      rk__socks5_more(s, replies, done, 1);
      return;
    }
    size_t plen = d[o + 2 + ulen];
    if (n < o + 3 + ulen + plen) {
      rk__socks5_more(s, replies, done, 1);
      return;
    }
    const uint8_t *u = d + o + 2, *p = d + o + 3 + ulen;
    if (!rk__utf8_ok(u, ulen) || !rk__utf8_ok(p, plen)) {
      s->what = RK__R_DEFER; /* TextDecoder's replacement characters */
      return;
    }
    o += 3 + ulen + plen;
    if (!rk__known_user(rt, u, ulen, p, plen)) {
      const uint8_t no[2] = {1, 1};
      s->what = RK__R_REFUSE;
      for (int i = done; i < 1; i++)
        rk__out(s, replies[i], 2);
      rk__out(s, no, 2);
      return;
    }
    nreplies = 2;
  }
  /* reply(code): the unsent replies, then the code's */
  uint8_t pre[4];
  uint32_t pre_len = 0;
  for (int i = done; i < nreplies; i++) {
    memcpy(pre + pre_len, replies[i], 2);
    pre_len += 2;
  }
  uint8_t r[10];
  /* request: VER CMD RSV ATYP DST.ADDR DST.PORT */
  if (n < o + 5) {
    rk__socks5_more(s, replies, done, nreplies);
    return;
  }
  if (d[o] != 5) {
    s->what = RK__R_CLOSE;
    rk__out(s, pre, pre_len);
    rk__socks5_reply(r, 1);
    rk__out(s, r, 10);
    return;
  }
  uint8_t atyp = d[o + 3];
  size_t p;
  if (atyp == 1) {
    p = o + 8;
    s->host = d + o + 4;
    s->host_bytes = 4;
  } else if (atyp == 4) {
    p = o + 20;
    s->host = d + o + 4;
    s->host_bytes = 16;
  } else if (atyp == 3) {
    p = o + 5 + d[o + 4];
    s->host = d + o + 5;
    s->host_len = d[o + 4];
  } else {
    s->what = RK__R_REFUSE;
    rk__out(s, pre, pre_len);
    rk__socks5_reply(r, 8);
    rk__out(s, r, 10);
    return;
  }
  if (n < p + 2) {
    rk__socks5_more(s, replies, done, nreplies);
    return;
  }
  s->port = (uint32_t)d[p] << 8 | d[p + 1];
  if (d[o + 1] != 1) {
    s->what = RK__R_REFUSE;
    rk__out(s, pre, pre_len);
    rk__socks5_reply(r, 7);
    rk__out(s, r, 10);
    return;
  }
  s->what = RK__R_DEST;
  s->rest = (uint32_t)(p + 2);
  rk__out(s, pre, pre_len);
  rk__socks5_reply(r, 0);
  rk__out(s, r, 10);
  memcpy(s->denied, pre, pre_len);
  rk__socks5_reply(r, 2);
  memcpy(s->denied + pre_len, r, 10);
  s->denied_len = pre_len + 10;
  s->fail = RK__FAIL_SOCKS5;
  memcpy(s->fail_prefix, pre, pre_len);
  s->fail_prefix_len = pre_len;
}

/* JavaScript's \s over latin1 text. */
static int rk__ws(uint8_t c) {
  return c == ' ' || (c >= 9 && c <= 13) || c == 0xa0;
}

static void rk__http_answer(rk__step *s, const char *status,
                            const char *extra) {
  rk__out_str(s, "HTTP/1.1 ");
  rk__out_str(s, status);
  rk__out_str(s, "\r\n");
  rk__out_str(s, extra);
  rk__out_str(s, "Content-Length: 0\r\nConnection: close\r\n\r\n");
}

static int rk__b64val(uint8_t c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (rk__is_digit(c))
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

/* atob (forgiving base64) of a token without white space: the byte count,
 * or -1. */
static long rk__atob(const uint8_t *t, size_t n, uint8_t *out) {
  if (n % 4 == 0 && n > 0 && t[n - 1] == '=') {
    n--;
    if (t[n - 1] == '=')
      n--;
  }
  if (n % 4 == 1)
    return -1;
  uint32_t acc = 0;
  int bits = 0;
  long o = 0;
  for (size_t i = 0; i < n; i++) {
    int v = rk__b64val(t[i]);
    if (v < 0)
      return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  return o;
}

static int rk__prefix_ci(const uint8_t *s, size_t n, const char *p) {
  size_t pl = strlen(p);
  if (n < pl)
    return 0;
  for (size_t i = 0; i < pl; i++) {
    uint8_t c = s[i];
    if (c >= 'A' && c <= 'Z')
      c |= 0x20;
    if (c != (uint8_t)p[i])
      return 0;
  }
  return 1;
}

/* Whether the head's Proxy-Authorization names a known user. */
static int rk__http_auth(const rk__router *rt, const uint8_t *head,
                         size_t end) {
  /* the header lines: what follows the request line, split on CRLF */
  const uint8_t *line = NULL;
  size_t ll = 0, pos = 0;
  while (pos < end && !(pos + 1 < end && head[pos] == '\r' && head[pos + 1] == '\n'))
    pos++;
  while (pos < end) {
    size_t st = pos + 2, j = st;
    while (j < end && !(j + 1 < end && head[j] == '\r' && head[j + 1] == '\n'))
      j++;
    if (rk__prefix_ci(head + st, j - st, "proxy-authorization:")) {
      line = head + st;
      ll = j - st;
      break;
    }
    pos = j;
  }
  if (line == NULL)
    return 0;
  /* ^proxy-authorization:\s*basic\s+(\S+) */
  size_t k = strlen("proxy-authorization:");
  while (k < ll && rk__ws(line[k]))
    k++;
  if (!rk__prefix_ci(line + k, ll - k, "basic"))
    return 0;
  k += 5;
  size_t ws = k;
  while (k < ll && rk__ws(line[k]))
    k++;
  if (k == ws)
    return 0;
  size_t st = k;
  while (k < ll && !rk__ws(line[k]))
    k++;
  if (k == st)
    return 0;
  uint8_t *plain = calloc(1, (k - st) * 3 / 4 + 4);
  if (plain == NULL)
    return 0;
  long pn = rk__atob(line + st, k - st, plain);
  int ok = 0;
  /* not base64, or not UTF-8: no user */
  if (pn >= 0 && rk__utf8_ok(plain, (size_t)pn)) {
    const uint8_t *colon = memchr(plain, ':', (size_t)pn);
    if (colon != NULL && colon != plain) {
      size_t ul = (size_t)(colon - plain);
      ok = rk__known_user(rt, plain, ul, colon + 1, (size_t)pn - ul - 1);
    }
  }
  free(plain);
  return ok;
}

static void rk__http(const rk__router *rt, const uint8_t *d, size_t n,
                     rk__step *s) {
  size_t end = 0;
  int found = 0;
  for (size_t i = 0; i + 3 < n; i++) {
    if (d[i] == '\r' && d[i + 1] == '\n' && d[i + 2] == '\r' &&
        d[i + 3] == '\n') {
      end = i;
      found = 1;
      break;
    }
  }
  if (!found) {
    if (n > RK__HTTP_HEAD_MAX) {
      s->what = RK__R_CLOSE;
      rk__http_answer(s, "431 Request Header Fields Too Large", "");
    } else {
      s->what = RK__R_WAIT;
    }
    return;
  }
  size_t ll = 0;
  while (ll + 1 < end + 2 && !(d[ll] == '\r' && d[ll + 1] == '\n'))
    ll++;
  if (ll > end)
    ll = end;
  /* ^(\S+) (\S+) HTTP\/1\.[01]$ */
  static const char v10[] = " HTTP/1.0", v11[] = " HTTP/1.1";
  size_t sl = sizeof v10 - 1;
  int ok = ll > sl && (memcmp(d + ll - sl, v10, sl) == 0 ||
                       memcmp(d + ll - sl, v11, sl) == 0);
  size_t sp = 0, mid = ok ? ll - sl : 0;
  if (ok) {
    int spaces = 0;
    for (size_t i = 0; i < mid; i++) {
      if (rk__ws(d[i])) {
        spaces++;
        sp = i;
      }
    }
    ok = spaces == 1 && d[sp] == ' ' && sp > 0 && sp + 1 < mid;
  }
  if (!ok) {
    s->what = RK__R_CLOSE;
    rk__http_answer(s, "400 Bad Request", "");
    return;
  }
  if (sp != 7 || memcmp(d, "CONNECT", 7) != 0) {
    s->what = RK__R_REFUSE;
    rk__http_answer(s, "405 Method Not Allowed", "Allow: CONNECT\r\n");
    return;
  }
  /* ^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$ */
  const uint8_t *t = d + sp + 1;
  size_t tn = mid - sp - 1;
  const uint8_t *host = NULL;
  size_t hn = 0, pd = 0;
  const uint8_t *close_b = t[0] == '[' ? memchr(t, ']', tn) : NULL;
  if (close_b != NULL && close_b - t >= 2 && (size_t)(close_b - t) + 1 < tn &&
      close_b[1] == ':') {
    pd = (size_t)(close_b - t) + 2;
    size_t digits = tn - pd, i;
    for (i = pd; i < tn && rk__is_digit(t[i]); i++) {
    }
    if (i == tn && digits >= 1 && digits <= 5) {
      host = t + 1;
      hn = (size_t)(close_b - t) - 1;
    }
  }
  if (host == NULL) {
    const uint8_t *c = memchr(t, ':', tn);
    if (c != NULL && c > t && memchr(c + 1, ':', tn - (size_t)(c + 1 - t)) == NULL) {
      pd = (size_t)(c - t) + 1;
      size_t digits = tn - pd, i;
      for (i = pd; i < tn && rk__is_digit(t[i]); i++) {
      }
      if (i == tn && digits >= 1 && digits <= 5) {
        host = t;
        hn = (size_t)(c - t);
      }
    }
  }
  uint32_t port = 0;
  for (size_t i = pd; host != NULL && i < tn; i++)
    port = port * 10 + (uint32_t)(t[i] - '0');
  if (host == NULL || port < 1 || port > 65535) {
    s->what = RK__R_CLOSE;
    rk__http_answer(s, "400 Bad Request", "");
    return;
  }
  if (rt->nusers >= 0 && !rk__http_auth(rt, d, end)) {
    s->what = RK__R_REFUSE;
    rk__http_answer(s, "407 Proxy Authentication Required",
                    "Proxy-Authenticate: Basic realm=\"relaykit\"\r\n");
    return;
  }
  s->what = RK__R_DEST;
  s->host = host;
  s->host_len = (uint32_t)hn;
  s->port = port;
  s->rest = (uint32_t)(end + 4);
  rk__out_str(s, "HTTP/1.1 200 Connection established\r\n\r\n");
  rk__step tmp;
  tmp.out_len = 0;
  rk__http_answer(&tmp, "403 Forbidden", "");
  memcpy(s->denied, tmp.out, tmp.out_len);
  s->denied_len = tmp.out_len;
  s->fail = RK__FAIL_HTTP;
}

/* Parse the held bytes into the next step. */
static void rk__parse(const rk__router *rt, const uint8_t *d, size_t n,
                      int done, rk__step *s) {
  s->what = RK__R_WAIT;
  s->out_len = 0;
  s->denied_len = 0;
  s->fail_prefix_len = 0;
  s->host = NULL;
  s->host_len = 0;
  s->host_bytes = 0;
  if (rt->kind == RK_ROUTER_CONNECT) {
    rk__http(rt, d, n, s);
    return;
  }
  if (n == 0)
    return;
  if (d[0] == 4)
    rk__socks4(rt, d, n, s);
  else if (d[0] == 5)
    rk__socks5(rt, d, n, done, s);
  else
    s->what = RK__R_CLOSE; /* not SOCKS: nothing sensible to answer */
}

/* The destination of a DEST step, classified. */
static int rk__dest_host(const rk__step *s, rk__host *h) {
  if (s->host_bytes != 0) {
    rk__addr_from(&h->addr, s->host, s->host_bytes);
    return RK__HOST_ADDRESS;
  }
  /* SOCKS names are decoded as UTF-8 (a NUL stays a NUL); CONNECT hosts as
   * latin1: either way ASCII is ASCII, and anything else is deferred */
  return rk__classify(s->host, s->host_len, h);
}

/* ---- the connection's side --------------------------------------------- */

/* Hand the connection to the host: an ordinary held connection from now. */
static void rk__route_defer(rk__conn *c, uint32_t flags) {
  c->route_deferred = 1;
  rk__hold_post(c, flags | RK_HOLD_FIRST | RK_HOLD_ROUTED |
                       (uint32_t)c->route_sent << RK_HOLD_SENT_SHIFT);
}

/* Decide as the host would with rk_hold_decide. */
static void rk__route_decide(rk__conn *c, int action, const char *host,
                             uint32_t port, int32_t timeout,
                             const uint8_t *to_b, uint32_t to_b_len,
                             const uint8_t *to_a, uint32_t to_a_len) {
  const rk__router *rt = c->router;
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  if (cmd == NULL) {
    rk__conn_end(c, RK_END_RESET, -ENOMEM);
    return;
  }
  cmd->type = RK__CMD_HOLD_DECIDE;
  cmd->arg = -1;
  cmd->decision.action = action;
  cmd->decision.idle_timeout_ms = -1;
  cmd->decision.consume = c->hold_len;
  cmd->data = malloc(to_b_len > 0 ? to_b_len : 1);
  cmd->data2 = malloc(to_a_len > 0 ? to_a_len : 1);
  if (cmd->data != NULL && to_b_len > 0)
    memcpy(cmd->data, to_b, to_b_len);
  if (cmd->data2 != NULL && to_a_len > 0)
    memcpy(cmd->data2, to_a, to_a_len);
  cmd->len = to_b_len;
  cmd->len2 = to_a_len;
  if (action == RK_DECIDE_CONNECT) {
    cmd->decision.flags = RK_DECISION_RETRY;
    cmd->decision.port = (int32_t)port;
    cmd->target = rk__copy_target(host, (int32_t)port, rt->family, timeout,
                                  rt->bind_host);
  }
  if (cmd->data == NULL || cmd->data2 == NULL ||
      (action == RK_DECIDE_CONNECT && cmd->target == NULL)) {
    rk__cmd_free(cmd);
    rk__conn_end(c, RK_END_RESET, -ENOMEM);
    return;
  }
  rk__hold_decide_cmd(c, cmd);
  rk__cmd_free(cmd);
}

static void rk__route_refuse(rk__conn *c, const uint8_t *reply, uint32_t len) {
  if (c->router->flags & RK_ROUTER_REPORT) {
    rk__route_defer(c, 0); /* the host's router says why */
    return;
  }
  rk__route_decide(c, RK_DECIDE_CLOSE, NULL, 0, 0, NULL, 0, reply, len);
}

/* Connect to the checked address a. */
static void rk__route_connect(rk__conn *c, const rk__step *s,
                              const rk__addr *a) {
  char text[64];
  rk__addr_text(a, text, sizeof text);
  c->route_addr = *a;
  c->route_port = (uint16_t)s->port;
  c->route_fail = (uint8_t)s->fail;
  c->route_fail_prefix = (uint8_t)(s->fail_prefix_len / 2);
  rk__route_decide(c, RK_DECIDE_CONNECT, text, s->port,
                   c->router->connect_timeout, c->hold_buf + s->rest,
                   c->hold_len - s->rest, s->out, s->out_len);
}

/* The step for the held bytes, parsed again from the start. */
static void rk__route_step(rk__conn *c, rk__step *s) {
  rk__parse(c->router, c->hold_buf, c->hold_len, c->route_sent, s);
}


/* ---- routing tables (src/protocol/first_bytes.ts, route_table.ts) ------ */

/* The most an HTTP request head may take before its Host is read, and a
 * TLS record (first_bytes.ts HEAD_MAX, TLS_RECORD_MAX). */
#define RK__TABLE_HEAD_MAX (16 * 1024)
#define RK__TLS_RECORD_MAX (16 * 1024)

/* A first-bytes parser's answer (first_bytes.ts FirstBytes). */
enum { RK__FB_NAME = 1, RK__FB_NONE, RK__FB_MORE, RK__FB_BAD };

typedef struct {
  int kind;
  char name[256];
} rk__fb;

/* first_bytes.ts tableName: 1 and the lower case name in out, or 0. */
static int rk__table_name(const uint8_t *t, size_t n, char out[256]) {
  if (n == 0 || n > 255)
    return 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = t[i];
    if (c >= 'A' && c <= 'Z')
      c |= 0x20;
    else if (!((c >= 'a' && c <= 'z') || rk__is_digit(c) || c == '-' ||
               c == '_' || c == '.'))
      return 0;
    out[i] = (char)c;
  }
  if (out[n - 1] == '.')
    n--;
  out[n] = 0;
  return n > 0;
}

static int rk__digits_1_5(const uint8_t *t, size_t n) {
  if (n < 1 || n > 5)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!rk__is_digit(t[i]))
      return 0;
  return 1;
}

/* The Host's name from its value t[0..n) (first_bytes.ts httpHost). */
static void rk__host_value(const uint8_t *t, size_t n, rk__fb *f) {
  f->kind = RK__FB_BAD;
  if (n == 0) {
    f->kind = RK__FB_NONE;
    return;
  }
  if (t[0] == '[') {
    const uint8_t *close = memchr(t, ']', n);
    if (close == NULL)
      return;
    size_t ci = (size_t)(close - t);
    const uint8_t *after = close + 1;
    size_t an = n - ci - 1;
    if (ci < 2 || ci > 256 ||
        !(an == 0 || (after[0] == ':' && rk__digits_1_5(after + 1, an - 1))))
      return;
    for (size_t i = 1; i < ci; i++) {
      uint8_t c = t[i];
      if (c >= 'A' && c <= 'F')
        c |= 0x20;
      if (!(rk__is_digit(c) || (c >= 'a' && c <= 'f') || c == ':' || c == '.'))
        return;
      f->name[i - 1] = (char)c;
    }
    f->name[ci - 1] = 0;
    f->kind = RK__FB_NAME;
    return;
  }
  const uint8_t *colon = memchr(t, ':', n);
  if (colon != NULL) {
    size_t ci = (size_t)(colon - t);
    if (!rk__digits_1_5(colon + 1, n - ci - 1))
      return;
    n = ci;
  }
  if (rk__table_name(t, n, f->name))
    f->kind = RK__FB_NAME;
}

static void rk__http_host(const uint8_t *d, size_t n, rk__fb *f) {
  f->kind = RK__FB_MORE;
  if (n == 0)
    return;
  size_t i = 0;
  while (i < n && d[i] >= 'A' && d[i] <= 'Z')
    i++;
  if (i == n) {
    f->kind = i > 32 ? RK__FB_NONE : RK__FB_MORE;
    return;
  }
  if (i == 0 || d[i] != ' ') {
    f->kind = RK__FB_NONE;
    return;
  }
  size_t scan = n < RK__TABLE_HEAD_MAX ? n : RK__TABLE_HEAD_MAX;
  size_t end = 0;
  int found = 0;
  for (size_t k = 0; k + 3 < scan; k++) {
    if (d[k] == '\r' && d[k + 1] == '\n' && d[k + 2] == '\r' && d[k + 3] == '\n') {
      end = k;
      found = 1;
      break;
    }
  }
  size_t ll = 0;
  while (ll + 1 < n && !(d[ll] == '\r' && d[ll + 1] == '\n'))
    ll++;
  if (ll + 1 < n) {
    /* ^[A-Z]+ [^\s]+ HTTP\/1\.[01]$ */
    static const char v10[] = " HTTP/1.0", v11[] = " HTTP/1.1";
    size_t sl = sizeof v10 - 1;
    int ok = ll > i + 1 + sl && (memcmp(d + ll - sl, v10, sl) == 0 ||
                                 memcmp(d + ll - sl, v11, sl) == 0);
    for (size_t k = i + 1; ok && k < ll - sl; k++)
      ok = !rk__ws(d[k]);
    if (!ok) {
      f->kind = RK__FB_NONE;
      return;
    }
  }
  if (!found) {
    f->kind = n >= RK__TABLE_HEAD_MAX ? RK__FB_BAD : RK__FB_MORE;
    return;
  }
  const uint8_t *host = NULL;
  size_t host_len = 0;
  size_t pos = ll + 2;
  while (pos < end + 2) {
    size_t j = pos;
    while (!(d[j] == '\r' && d[j + 1] == '\n'))
      j++;
    if (d[pos] == ' ' || d[pos] == '\t') {
      f->kind = RK__FB_BAD; /* folded header line */
      return;
    }
    for (size_t k = pos; k < j; k++) {
      if (d[k] == '\r' || d[k] == '\n') {
        f->kind = RK__FB_BAD; /* a bare CR or LF in a header line */
        return;
      }
    }
    size_t colon = pos;
    while (colon < j && d[colon] != ':')
      colon++;
    if (colon == j || colon == pos) {
      f->kind = RK__FB_BAD; /* a header line without a name */
      return;
    }
    for (size_t k = pos; k < colon; k++) {
      if (rk__ws(d[k])) {
        f->kind = RK__FB_BAD;
        return;
      }
    }
    if (colon - pos == 4 && rk__prefix_ci(d + pos, 4, "host")) {
      if (host != NULL) {
        f->kind = RK__FB_BAD; /* Host given twice */
        return;
      }
      size_t a = colon + 1, b = j;
      while (a < b && (d[a] == ' ' || d[a] == '\t'))
        a++;
      while (b > a && (d[b - 1] == ' ' || d[b - 1] == '\t'))
        b--;
      host = d + a;
      host_len = b - a;
    }
    pos = j + 2;
  }
  /* an absolute-form target ("scheme://authority", then '/', '?', '#' or
   * its end): a server reads its name, not Host's (RFC 9112 3.2.2) */
  size_t t = i + 1, te = t;
  while (te < ll && d[te] != ' ')
    te++;
  size_t k = t;
  if (k < te && ((d[k] | 0x20) >= 'a' && (d[k] | 0x20) <= 'z')) {
    k++;
    while (k < te && (((d[k] | 0x20) >= 'a' && (d[k] | 0x20) <= 'z') ||
                      rk__is_digit(d[k]) || d[k] == '+' || d[k] == '.' ||
                      d[k] == '-'))
      k++;
    if (k + 3 <= te && d[k] == ':' && d[k + 1] == '/' && d[k + 2] == '/') {
      size_t a = k + 3, b = a;
      while (b < te && d[b] != '/' && d[b] != '?' && d[b] != '#')
        b++;
      if (memchr(d + a, '@', b - a) != NULL) {
        f->kind = RK__FB_BAD; /* user info in the target */
        return;
      }
      rk__host_value(d + a, b - a, f);
      if (f->kind != RK__FB_NAME)
        f->kind = RK__FB_BAD;
      return;
    }
  }
  if (host == NULL) {
    f->kind = RK__FB_NONE;
    return;
  }
  rk__host_value(host, host_len, f);
}

/* first_bytes.ts tlsSni. */
static void rk__tls_sni(const uint8_t *d, size_t n, rk__fb *f) {
  f->kind = RK__FB_MORE;
  if (n == 0)
    return;
  if (d[0] != 0x16) {
    f->kind = RK__FB_NONE;
    return;
  }
  if (n < 5)
    return;
  size_t rlen = (size_t)d[3] << 8 | d[4];
  f->kind = RK__FB_BAD;
  if (d[1] != 3 || rlen < 4 || rlen > RK__TLS_RECORD_MAX)
    return;
  if (n < 5 + rlen) {
    f->kind = RK__FB_MORE;
    return;
  }
  if (d[5] != 1)
    return;
  size_t hlen = (size_t)d[6] << 16 | (size_t)d[7] << 8 | d[8];
  if (4 + hlen > rlen)
    return;
  size_t end = 9 + hlen, p = 9 + 2 + 32;
  if (p + 1 > end)
    return;
  p += 1 + (size_t)d[p];
  if (p + 2 > end)
    return;
  p += 2 + ((size_t)d[p] << 8 | d[p + 1]);
  if (p + 1 > end)
    return;
  p += 1 + (size_t)d[p];
  if (p > end)
    return;
  if (p == end) {
    f->kind = RK__FB_NONE;
    return;
  }
  if (p + 2 > end)
    return;
  size_t xend = p + 2 + ((size_t)d[p] << 8 | d[p + 1]);
  if (xend > end)
    return;
  p += 2;
  while (p < xend) {
    if (p + 4 > xend)
      return;
    size_t type = (size_t)d[p] << 8 | d[p + 1];
    size_t len = (size_t)d[p + 2] << 8 | d[p + 3];
    p += 4;
    if (p + len > xend)
      return;
    if (type == 0) {
      if (len < 2)
        return;
      size_t lend = p + 2 + ((size_t)d[p] << 8 | d[p + 1]);
      if (lend > p + len)
        return;
      size_t q = p + 2;
      while (q < lend) {
        if (q + 3 > lend)
          return;
        uint8_t nt = d[q];
        size_t nl = (size_t)d[q + 1] << 8 | d[q + 2];
        q += 3;
        if (q + nl > lend)
          return;
        if (nt == 0) {
          if (rk__table_name(d + q, nl, f->name))
            f->kind = RK__FB_NAME;
          return;
        }
        q += nl;
      }
      f->kind = RK__FB_NONE;
      return;
    }
    p += len;
  }
  f->kind = RK__FB_NONE;
}

enum { RK__T_WAIT = 1, RK__T_DEFER, RK__T_CONNECT };

/* The first entry that matches d[0..n) (route_table.ts routeTable):
 * RK__T_WAIT while an entry before it cannot tell yet, RK__T_CONNECT for
 * a fixed address (*hit), RK__T_DEFER for everything the host decides or
 * reports (a backend, malformed first bytes, no entry matching). */
static int rk__table_decide(const rk__router *rt, const uint8_t *d, size_t n,
                            const rk__entry **hit) {
  rk__fb http, tls;
  int have_http = 0, have_tls = 0;
  for (int32_t i = 0; i < rt->nentries; i++) {
    const rk__entry *en = &rt->entries[i];
    int matched = 0;
    if (en->match == RK__MATCH_DEFAULT) {
      matched = 1;
    } else if (en->match == RK__MATCH_PREFIX) {
      size_t m = en->pattern_len < n ? en->pattern_len : n;
      int same = m == 0 || memcmp(en->pattern, d, m) == 0;
      if (same && n < en->pattern_len)
        return RK__T_WAIT;
      matched = same;
    } else {
      rk__fb *f = en->match == RK__MATCH_HOST ? &http : &tls;
      int *have = en->match == RK__MATCH_HOST ? &have_http : &have_tls;
      if (!*have) {
        if (en->match == RK__MATCH_HOST)
          rk__http_host(d, n, f);
        else
          rk__tls_sni(d, n, f);
        *have = 1;
      }
      if (f->kind == RK__FB_MORE)
        return RK__T_WAIT;
      if (f->kind == RK__FB_BAD)
        return RK__T_DEFER; /* the host's table names the error */
      matched = f->kind == RK__FB_NAME &&
                rk__glob((const char *)en->pattern, f->name);
    }
    if (matched) {
      *hit = en;
      return en->fixed ? RK__T_CONNECT : RK__T_DEFER;
    }
  }
  return RK__T_DEFER; /* no entry matches: the host's table says so */
}

static void rk__table_input(rk__conn *c, uint32_t flags) {
  const rk__router *rt = c->router;
  const rk__entry *en = NULL;
  int what = rk__table_decide(rt, c->hold_buf, c->hold_len, &en);
  if (what == RK__T_WAIT) {
    if (c->hold_len >= rt->limit || (flags & RK_HOLD_EOF)) {
      rk__route_defer(c, flags);
      return;
    }
    c->hold_max = rt->limit;
    return;
  }
  rk__host h;
  if (what == RK__T_DEFER ||
      rk__classify((const uint8_t *)en->host, strlen(en->host), &h) !=
          RK__HOST_ADDRESS) {
    rk__route_defer(c, flags);
    return;
  }
  c->route_addr = h.addr;
  c->route_port = (uint16_t)en->port;
  c->route_fail = 0;
  rk__route_decide(c, RK_DECIDE_CONNECT, en->host, en->port,
                   en->connect_timeout >= 0 ? en->connect_timeout
                                            : rt->connect_timeout,
                   c->hold_buf, c->hold_len, NULL, 0);
}

void rk__route_input(rk__conn *c, uint32_t flags) {
  const rk__router *rt = c->router;
  if (rt->kind == RK_ROUTER_TABLE) {
    rk__table_input(c, flags);
    return;
  }
  rk__step *s = malloc(sizeof *s);
  if (s == NULL) {
    rk__conn_end(c, RK_END_RESET, -ENOMEM);
    return;
  }
  rk__route_step(c, s);
  int eof = (flags & RK_HOLD_EOF) != 0;
  switch (s->what) {
  case RK__R_WAIT:
  case RK__R_SEND:
    /* past the limit or the client's EOF no more bytes can come: the
     * host reports that (Session's RK_EROUTE_LIMIT, RK_EROUTE) */
    if (c->hold_len >= rt->limit || eof) {
      rk__route_defer(c, flags);
      break;
    }
    if (s->what == RK__R_SEND) {
      rk__hold_write_cmd(c, s->out, s->out_len);
      if (c->state != RK__HOLDING)
        break; /* the client did not take it */
      c->route_sent = (uint8_t)s->sent_after;
    }
    c->hold_max = rt->limit;
    break;
  case RK__R_CLOSE:
    rk__route_decide(c, RK_DECIDE_CLOSE, NULL, 0, 0, NULL, 0, s->out, s->out_len);
    break;
  case RK__R_REFUSE:
    rk__route_refuse(c, s->out, s->out_len);
    break;
  case RK__R_DEFER:
    rk__route_defer(c, flags);
    break;
  case RK__R_DEST: {
    rk__host h;
    int kind = rk__dest_host(s, &h);
    if (kind == RK__HOST_DEFER) {
      rk__route_defer(c, flags);
    } else if (kind == RK__HOST_INVALID) {
      rk__route_refuse(c, s->denied, s->denied_len);
    } else if (kind == RK__HOST_ADDRESS) {
      if (rk__denied(rt, NULL, &h.addr, s->port) ||
          !rk__allowed(rt, NULL, &h.addr, s->port))
        rk__route_refuse(c, s->denied, s->denied_len);
      else
        rk__route_connect(c, s, &h.addr);
    } else {
      /* a name: resolved off the worker, checked when it comes back */
      char q[258];
      snprintf(q, sizeof q, "%s%s", h.name, h.dotted ? "." : "");
      c->hold_max = 0; /* nothing more is read meanwhile */
      c->route_resolving = 1;
      rk__resolve_name(c->w->e, c, q);
    }
    break;
  }
  }
  free(s);
}

void rk__route_resolved(rk__conn *c, struct addrinfo *ai, int err) {
  if (c->state != RK__HOLDING || !c->route_resolving) {
    rk__ai_free(ai);
    return;
  }
  c->route_resolving = 0;
  const rk__router *rt = c->router;
  rk__step *s = malloc(sizeof *s);
  if (s == NULL) {
    rk__ai_free(ai);
    rk__conn_end(c, RK_END_RESET, -ENOMEM);
    return;
  }
  rk__route_step(c, s);
  rk__host h;
  if (s->what != RK__R_DEST || rk__dest_host(s, &h) != RK__HOST_NAME) {
    /* cannot happen: the same bytes parse the same way */
    rk__ai_free(ai);
    free(s);
    rk__conn_end(c, RK_END_RESET, -EINVAL);
    return;
  }
  int refused = err != 0 || ai == NULL, picked = 0;
  rk__addr pick;
  for (struct addrinfo *p = ai; p != NULL && !refused; p = p->ai_next) {
    rk__addr a;
    if (p->ai_family == AF_INET)
      rk__addr_from(&a, (const uint8_t *)&((struct sockaddr_in *)p->ai_addr)->sin_addr, 4);
    else if (p->ai_family == AF_INET6)
      rk__addr_from(&a, ((struct sockaddr_in6 *)p->ai_addr)->sin6_addr.s6_addr, 16);
    else
      continue;
    /* any address denied refuses; else the first allowed is used */
    if (rk__denied(rt, h.name, &a, s->port)) {
      refused = 1;
    } else if (!picked && rk__allowed(rt, h.name, &a, s->port)) {
      pick = a;
      picked = 1;
    }
  }
  rk__ai_free(ai);
  if (refused || !picked)
    rk__route_refuse(c, s->denied, s->denied_len);
  else
    rk__route_connect(c, s, &pick);
  free(s);
}

/* Post the target of a connection the router sent somewhere. */
static void rk__route_post_target(rk__conn *c, uint32_t type, int err) {
  uint32_t rec[RK_EVENT_WORDS] = {type, (uint32_t)c->id,
                                  (uint32_t)c->listener->id, (uint32_t)err};
  rec[6] = c->route_addr.len == 4 ? AF_INET : AF_INET6;
  rec[7] = c->route_port;
  memcpy(&rec[8], c->route_addr.b, c->route_addr.len);
  rk__post(c->w->e, rec);
}

void rk__route_end(rk__conn *c, int err) {
  if (err != 0 && !c->route_deferred && c->route_addr.len != 0)
    rk__route_post_target(c, RK_EV_ROUTE_TARGET, err);
  rk__router_unref(c->router);
  c->router = NULL;
}

int rk__route_connect_failed(rk__conn *c, int err) {
  if (c->router == NULL || c->route_deferred)
    return 0;
  rk__route_post_target(c, RK_EV_ROUTE_FAILED, err);
  uint8_t out[64];
  uint32_t n = 0;
  if (c->router->kind == RK_ROUTER_TABLE) {
    /* no reply: the connection closes, the host reports the failure */
  } else if (c->route_fail == RK__FAIL_SOCKS4) {
    rk__socks4_reply(out, 91);
    n = 8;
  } else if (c->route_fail == RK__FAIL_SOCKS5) {
    /* the unsent handshake replies (a client that sent it all at once) */
    const uint8_t replies[2][2] = {{5, c->router->nusers >= 0 ? 2 : 0}, {1, 0}};
    int total = c->router->nusers >= 0 ? 2 : 1;
    for (int i = total - c->route_fail_prefix; i < total; i++) {
      memcpy(out + n, replies[i], 2);
      n += 2;
    }
    /* as socks5ReplyCode (src/protocol/socks.ts) */
    uint8_t code = err == -ECONNREFUSED   ? 5
                   : err == -ENETUNREACH  ? 3
                   : err == -EHOSTUNREACH ? 4
                   : err == -ETIMEDOUT    ? 6
                                          : 1;
    rk__socks5_reply(out + n, code);
    n += 10;
  } else {
    rk__step tmp;
    tmp.out_len = 0;
    rk__http_answer(&tmp, err == -ETIMEDOUT ? "504 Gateway Timeout"
                                            : "502 Bad Gateway", "");
    memcpy(out, tmp.out, tmp.out_len < sizeof out ? tmp.out_len : sizeof out);
    n = tmp.out_len < sizeof out ? tmp.out_len : (uint32_t)sizeof out;
  }
  rk__route_decide(c, RK_DECIDE_CLOSE, NULL, 0, 0, NULL, 0, out, n);
  return 1;
}

void rk__route_start(rk__conn *c) {
  c->hold_max = c->router->limit;
  if (c->router->kind == RK_ROUTER_TABLE)
    rk__table_input(c, 0); /* a table may decide on no bytes (default) */
}

/* ---- public ------------------------------------------------------------ */

int32_t rk_listener_set_router(int32_t h, int32_t lid, const uint8_t *desc,
                               int32_t len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (len < 0 || (len > 0 && desc == NULL))
    return -EINVAL;
  rk__router *rt = NULL;
  if (len > 0 && (rt = rk__router_parse(desc, len)) == NULL)
    return -EINVAL;
  int32_t r = 0;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l == NULL) {
    r = -ENOENT;
  } else if (!l->hold) {
    r = -EINVAL;
  } else {
    /* the old one lives on while connections that started with it do */
    rk__router *old = l->router;
    l->router = rt;
    rt = old;
  }
  pthread_mutex_unlock(&e->tbl_lock);
  rk__router_unref(rt); /* the replaced one, or the unused new one */
  return r;
}

int32_t rk_router_check(const uint8_t *desc, int32_t len, const uint8_t *host,
                        int32_t host_len, int32_t port, const char *resolved,
                        char *out, int32_t cap) {
  if (desc == NULL || len <= 0 || host_len < 0 || out == NULL || cap <= 0)
    return -EINVAL;
  rk__router *rt = rk__router_parse(desc, len);
  if (rt == NULL)
    return -EINVAL;
  rk__host h;
  int kind = rk__classify(host, (size_t)host_len, &h);
  char text[64];
  int n;
  if (kind == RK__HOST_DEFER) {
    n = snprintf(out, (size_t)cap, "defer");
  } else if (kind == RK__HOST_INVALID) {
    n = snprintf(out, (size_t)cap, "invalid");
  } else if (kind == RK__HOST_ADDRESS) {
    rk__addr_text(&h.addr, text, sizeof text);
    int ok = !rk__denied(rt, NULL, &h.addr, (uint32_t)port) &&
             rk__allowed(rt, NULL, &h.addr, (uint32_t)port);
    n = snprintf(out, (size_t)cap, "address %s %d %s", text, h.addr.this_host,
                 ok ? "allowed" : "refused");
  } else {
    /* resolved: the addresses a resolver gave, comma-separated */
    int refused = 0, picked = 0;
    char pick[64] = "";
    const char *p = resolved != NULL ? resolved : "";
    if (*p == 0)
      refused = 1;
    while (*p != 0 && !refused) {
      const char *comma = strchr(p, ',');
      size_t l = comma != NULL ? (size_t)(comma - p) : strlen(p);
      rk__host a;
      if (rk__classify((const uint8_t *)p, l, &a) != RK__HOST_ADDRESS ||
          rk__denied(rt, h.name, &a.addr, (uint32_t)port)) {
        refused = 1;
      } else if (!picked && rk__allowed(rt, h.name, &a.addr, (uint32_t)port)) {
        rk__addr_text(&a.addr, pick, sizeof pick);
        picked = 1;
      }
      p += l + (comma != NULL);
    }
    n = refused || !picked
            ? snprintf(out, (size_t)cap, "name %s%s refused", h.name,
                       h.dotted ? " dotted" : "")
            : snprintf(out, (size_t)cap, "name %s%s allowed %s", h.name,
                       h.dotted ? " dotted" : "", pick);
  }
  rk__router_free(rt);
  return n;
}

int32_t rk_router_table_check(const uint8_t *desc, int32_t len,
                              const uint8_t *data, int32_t n, char *out,
                              int32_t cap) {
  if (desc == NULL || len <= 0 || n < 0 || (n > 0 && data == NULL) ||
      out == NULL || cap <= 0)
    return -EINVAL;
  rk__router *rt = rk__router_parse(desc, len);
  if (rt == NULL || rt->kind != RK_ROUTER_TABLE) {
    if (rt != NULL)
      rk__router_free(rt);
    return -EINVAL;
  }
  const rk__entry *en = NULL;
  int what = rk__table_decide(rt, data, (size_t)n, &en);
  rk__host h;
  int r;
  if (what == RK__T_WAIT)
    r = snprintf(out, (size_t)cap, "wait");
  else if (what == RK__T_DEFER ||
           rk__classify((const uint8_t *)en->host, strlen(en->host), &h) !=
               RK__HOST_ADDRESS)
    r = snprintf(out, (size_t)cap, "defer");
  else
    r = snprintf(out, (size_t)cap, "connect %s %u %d", en->host, en->port,
                 en->connect_timeout >= 0 ? en->connect_timeout
                                          : rt->connect_timeout);
  rk__router_free(rt);
  return r;
}
