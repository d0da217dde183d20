/*
 * proxyhdr.c - PROXY protocol headers (v1 and v2) read and sent by the
 * engine, so that a listener whose decision needs no host code (a fixed
 * target) never waits for the host.
 *
 * Theory of operation
 * The parser is the C twin of src/protocol/proxy_protocol.ts, which owns
 * the rules: the same limits (V1_MAX, V2_MAX, the TLV limits), the same
 * refusals under the same codes, the same leniency for LOCAL headers. The
 * test suite runs one set of vectors against both (rk_proxy_parse).
 *
 * A listener with rk_listener_set_proxy holds its connections as any held
 * listener does (hold.c), but rk__pp_held intercepts the RK_EV_HOLD posts
 * of a connection's header phase:
 *   first post   the client's address against the trusted ranges:
 *                refuse it, relay it as it is, or ask hold.c to read
 *                FIRST_READ bytes (rk__hold_read_cmd; reading stops there)
 *   later posts  parse what is held: need more (read on, up to what the
 *                header needs, at most V2_MAX), a malformed header or EOF
 *                inside it (RK_EV_PROXY with the error, then a CLOSE
 *                decision), no header (detect), or a header: RK_EV_PROXY
 *                with its addresses when the listener posts originals, then
 *                a CONNECT decision to the listener's target that consumes
 *                the header and sends the one built here first.
 * A header whose TLVs or Unix paths the host must see (when it asked for
 * originals) goes to the host as an RK_HOLD_FIRST post with what is held:
 * the host's own parser then deals with it.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- limits (src/protocol/proxy_protocol.ts owns them; RK__V1_MAX,
 * RK__V2_MAX and RK__FIRST_READ are in internal.h for rk_layout) -------- */

#define RK__AUTHORITY_MAX 255
#define RK__UNIQUE_ID_MAX 128
#define RK__RANGE_BYTES 18 /* one trusted range in rk_listener_set_proxy */

/* Parser codes: the ProxyProtocolError codes of proxy_protocol.ts, and EOF
 * for a client that ended inside its header (accept_proxy.ts). */
#define RK__PP_CODES(XX)                                                       \
  XX(NO_HEADER, "Expected a PROXY protocol header")                            \
  XX(V1_NO_CRLF, "PROXY v1 header does not end with CRLF")                     \
  XX(V1_TOO_LONG, "PROXY v1 header longer than 107 bytes")                     \
  XX(V1_BAD_FORMAT, "PROXY v1 header needs 5 fields after \"PROXY\"")          \
  XX(V1_BAD_PROTOCOL, "Unknown PROXY v1 protocol")                             \
  XX(V1_BAD_ADDRESS, "Bad address in PROXY v1 header")                         \
  XX(V1_BAD_PORT, "Bad port in PROXY v1 header")                               \
  XX(V2_BAD_VERSION, "PROXY v2 header with a version other than 2")            \
  XX(V2_BAD_COMMAND, "PROXY v2 header with an unknown command")                \
  XX(V2_BAD_FAMILY, "PROXY v2 header with an unknown address family")          \
  XX(V2_BAD_TRANSPORT, "PROXY v2 header with a bad transport")                 \
  XX(V2_TOO_LONG, "PROXY v2 header longer than 16384 bytes")                   \
  XX(V2_SHORT_ADDRESS, "PROXY v2 address block shorter than its family's")     \
  XX(V2_BAD_TLV, "PROXY v2 header with a malformed TLV")                       \
  XX(CRC32C_MISMATCH, "PROXY v2 header fails its CRC32C check")                \
  XX(EOF, "the client ended inside its PROXY header")

enum {
  RK__PP_OK = 0,
#define XX(name, text) RK__PP_##name,
  RK__PP_CODES(XX)
#undef XX
  RK__PP_NCODES
};

enum { RK__PP_NEED = 0, RK__PP_NONE = 1, RK__PP_HEADER = 2 };

typedef struct {
  uint32_t n;        /* NEED: bytes more; HEADER: its length */
  uint8_t version;   /* 1 or 2 */
  uint8_t command;   /* 0 LOCAL, 1 PROXY */
  uint8_t transport; /* 0 unspec, 1 stream, 2 dgram */
  uint8_t family;    /* 0 none, 1 IPv4, 2 IPv6, 3 Unix */
  uint8_t src[16], dst[16];
  uint16_t sport, dport;
  uint32_t tlv_off, tlv_len; /* the TLVs kept (none: 0) */
} rk__pp_result;

struct rk__pp_conf {
  int32_t mode;
  uint32_t flags;
  int32_t send_version;
  uint32_t tlv_split;
  uint8_t *tlvs;
  uint32_t tlvs_len;
  uint8_t *ranges;
  int32_t nranges;
  int off; /* atomic: the host decides from now on */
};

static const uint8_t rk__v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                       0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* ---- CRC32C (Castagnoli), bitwise: headers are small ------------------- */

static uint32_t rk__crc32c(const uint8_t *p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++)
      crc = (crc & 1) ? 0x82f63b78u ^ (crc >> 1) : crc >> 1;
  }
  return crc ^ 0xffffffffu;
}

/* ---- addresses as text (ip.ts isIPv4 / ipv6Bytes / ipv6Text) ----------- */

/* "0" or 1-3 digits without a leading zero, <= 255, four of them. */
static int rk__ipv4(const char *s, size_t n, uint8_t out[4]) {
  size_t i = 0;
  for (int part = 0; part < 4; part++) {
    size_t start = i;
    unsigned v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 4) {
      v = v * 10 + (unsigned)(s[i] - '0');
      i++;
    }
    size_t len = i - start;
    if (len == 0 || len > 3 || (len > 1 && s[start] == '0') || v > 255)
      return 0;
    out[part] = (uint8_t)v;
    if (part < 3) {
      if (i >= n || s[i] != '.')
        return 0;
      i++;
    }
  }
  return i == n;
}

static int rk__hex(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Groups of s[0..n) split on ':' (n may be 0: no group), into g; -1 for
 * an empty or malformed group or more than max. */
static int rk__groups(const char *s, size_t n, uint16_t *g, int max) {
  if (n == 0)
    return 0;
  int count = 0;
  size_t i = 0;
  for (;;) {
    size_t start = i;
    unsigned v = 0;
    while (i < n && s[i] != ':') {
      int h = rk__hex(s[i]);
      if (h < 0 || i - start >= 4)
        return -1;
      v = (v << 4) | (unsigned)h;
      i++;
    }
    if (i == start || count >= max)
      return -1;
    g[count++] = (uint16_t)v;
    if (i == n)
      return count;
    i++; /* the ':' */
    if (i == n)
      return -1; /* a trailing ':' makes an empty group */
  }
}

/* ip.ts isIPv6 + ipv6Bytes: the characters, at most 45 of them, one "::",
 * an IPv4 tail after the last ':'. */
static int rk__ipv6(const char *s, size_t n, uint8_t out[16]) {
  if (n == 0 || n > 45)
    return 0;
  char t[64];
  size_t tn = n;
  int dot = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!(rk__hex(ch) >= 0 || ch == ':' || ch == '.'))
      return 0;
    dot |= ch == '.';
  }
  memcpy(t, s, n);
  if (dot) {
    size_t i = n;
    while (i > 0 && s[i - 1] != ':')
      i--;
    uint8_t q[4];
    if (i == 0 || !rk__ipv4(s + i, n - i, q))
      return 0;
    tn = i + (size_t)snprintf(t + i, sizeof t - i, "%x:%x",
                              (unsigned)(q[0] << 8 | q[1]),
                              (unsigned)(q[2] << 8 | q[3]));
  }
  /* split on "::" (JavaScript's split: each occurrence, left to right) */
  size_t dc = tn;
  int ndc = 0;
  for (size_t i = 0; i + 1 < tn; i++) {
    if (t[i] == ':' && t[i + 1] == ':') {
      if (ndc == 0)
        dc = i;
      ndc++;
      i++;
    }
  }
  if (ndc > 1)
    return 0;
  uint16_t g[8] = {0}, head[8], rest[8];
  if (ndc == 0) {
    if (rk__groups(t, tn, g, 8) != 8)
      return 0;
  } else {
    int nh = rk__groups(t, dc, head, 8);
    int nr = rk__groups(t + dc + 2, tn - dc - 2, rest, 8);
    if (nh < 0 || nr < 0 || 8 - nh - nr < 1)
      return 0;
    for (int i = 0; i < nh; i++)
      g[i] = head[i];
    for (int i = 0; i < nr; i++)
      g[8 - nr + i] = rest[i];
  }
  for (int i = 0; i < 8; i++) {
    out[2 * i] = (uint8_t)(g[i] >> 8);
    out[2 * i + 1] = (uint8_t)g[i];
  }
  return 1;
}

/* (internal.h) */
int rk__ipv6_text(const uint8_t b[16], char *out) {
  unsigned g[8];
  for (int i = 0; i < 8; i++)
    g[i] = (unsigned)(b[2 * i] << 8 | b[2 * i + 1]);
  int best = -1, best_len = 1;
  for (int i = 0; i < 8;) {
    if (g[i] != 0) {
      i++;
      continue;
    }
    int j = i;
    while (j < 8 && g[j] == 0)
      j++;
    if (j - i > best_len) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  int n = 0;
  for (int i = 0; i < 8; i++) {
    if (i == best) {
      n += sprintf(out + n, "::");
      i += best_len - 1;
      continue;
    }
    if (i > 0 && i != best + best_len)
      out[n++] = ':';
    n += sprintf(out + n, "%x", g[i]);
  }
  out[n] = 0;
  return n;
}

/* ---- the parser ---------------------------------------------------------- */

/* The TLV chain of b[0..n) is well-formed. */
static int rk__tlvs_ok(const uint8_t *b, size_t n) {
  size_t o = 0;
  while (o < n) {
    if (o + 3 > n)
      return 0;
    size_t len = (size_t)(b[o + 1] << 8 | b[o + 2]);
    if (o + 3 + len > n)
      return 0;
    o += 3 + len;
  }
  return 1;
}

/* decodeTlvs' checks of the known TLVs of a well-formed chain. */
static int rk__tlvs_decode_ok(const uint8_t *b, size_t n) {
  size_t o = 0;
  while (o < n) {
    uint8_t type = b[o];
    size_t len = (size_t)(b[o + 1] << 8 | b[o + 2]);
    const uint8_t *v = b + o + 3;
    if (type == 0x02 && len > RK__AUTHORITY_MAX)
      return 0;
    if (type == 0x03 && len != 4)
      return 0;
    if (type == 0x05 && len > RK__UNIQUE_ID_MAX)
      return 0;
    if (type == 0x20 && (len < 5 || !rk__tlvs_ok(v + 5, len - 5)))
      return 0;
    o += 3 + len;
  }
  return 1;
}

/* checkCrc: 0 or a code. h is the whole header, the chain at tlv. */
static int rk__crc_check(const uint8_t *h, size_t total, size_t tlv) {
  size_t at = 0, o = tlv;
  int count = 0;
  while (o < total) {
    size_t len = (size_t)(h[o + 1] << 8 | h[o + 2]);
    if (h[o] == 0x03) {
      if (count++ == 0)
        at = o;
    }
    o += 3 + len;
  }
  if (count == 0)
    return 0;
  if (count > 1 || (size_t)(h[at + 1] << 8 | h[at + 2]) != 4)
    return RK__PP_V2_BAD_TLV;
  at += 3;
  uint32_t want = (uint32_t)h[at] << 24 | (uint32_t)h[at + 1] << 16 |
                  (uint32_t)h[at + 2] << 8 | h[at + 3];
  /* the CRC over the header with the field zeroed, in three runs */
  static const uint8_t zero[4] = {0, 0, 0, 0};
  uint32_t crc = 0xffffffffu;
  const uint8_t *parts[3] = {h, zero, h + at + 4};
  size_t lens[3] = {at, 4, total - at - 4};
  for (int p = 0; p < 3; p++) {
    for (size_t i = 0; i < lens[p]; i++) {
      crc ^= parts[p][i];
      for (int k = 0; k < 8; k++)
        crc = (crc & 1) ? 0x82f63b78u ^ (crc >> 1) : crc >> 1;
    }
  }
  return (crc ^ 0xffffffffu) == want ? 0 : RK__PP_CRC32C_MISMATCH;
}

/* parsePort: "0" or 1-5 digits without a leading zero, <= 65535. */
static int rk__port(const char *s, size_t n, uint16_t *out) {
  if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
    return 0;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return 0;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > 65535)
    return 0;
  *out = (uint16_t)v;
  return 1;
}

static int rk__parse_v1(const uint8_t *b, size_t n, rk__pp_result *r) {
  size_t limit = n < RK__V1_MAX - 1 ? n : RK__V1_MAX - 1;
  size_t cr = 0;
  int found = 0;
  for (size_t i = 6; i < limit; i++) {
    if (b[i] == '\r') {
      cr = i;
      found = 1;
      break;
    }
    if (b[i] == '\n')
      return -RK__PP_V1_NO_CRLF;
  }
  if (!found) {
    if (n >= RK__V1_MAX - 1)
      return -RK__PP_V1_TOO_LONG;
    r->n = 1;
    return RK__PP_NEED;
  }
  if (cr + 1 >= n) {
    r->n = 1;
    return RK__PP_NEED;
  }
  if (b[cr + 1] != '\n')
    return -RK__PP_V1_NO_CRLF;
  const char *line = (const char *)b + 6;
  size_t len = cr - 6;
  r->version = 1;
  r->command = 1;
  r->n = (uint32_t)cr + 2;
  if ((len == 7 && memcmp(line, "UNKNOWN", 7) == 0) ||
      (len > 7 && memcmp(line, "UNKNOWN ", 8) == 0)) {
    r->transport = 0;
    r->family = 0;
    return RK__PP_HEADER;
  }
  /* exactly five fields separated by single spaces (split(" ")) */
  const char *f[5];
  size_t fl[5];
  int nf = 0;
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len || line[i] == ' ') {
      if (nf == 5)
        return -RK__PP_V1_BAD_FORMAT;
      f[nf] = line + start;
      fl[nf] = i - start;
      nf++;
      start = i + 1;
    }
  }
  if (nf != 5)
    return -RK__PP_V1_BAD_FORMAT;
  int v6;
  if (fl[0] == 4 && memcmp(f[0], "TCP4", 4) == 0)
    v6 = 0;
  else if (fl[0] == 4 && memcmp(f[0], "TCP6", 4) == 0)
    v6 = 1;
  else
    return -RK__PP_V1_BAD_PROTOCOL;
  memset(r->src, 0, 16);
  memset(r->dst, 0, 16);
  int ok = v6 ? rk__ipv6(f[1], fl[1], r->src) && rk__ipv6(f[2], fl[2], r->dst)
              : rk__ipv4(f[1], fl[1], r->src) && rk__ipv4(f[2], fl[2], r->dst);
  if (!ok)
    return -RK__PP_V1_BAD_ADDRESS;
  if (!rk__port(f[3], fl[3], &r->sport) || !rk__port(f[4], fl[4], &r->dport))
    return -RK__PP_V1_BAD_PORT;
  r->transport = 1;
  r->family = v6 ? 2 : 1;
  return RK__PP_HEADER;
}

static int rk__parse_v2(const uint8_t *b, size_t n, rk__pp_result *r) {
  if (n < 16) {
    r->n = (uint32_t)(16 - n);
    return RK__PP_NEED;
  }
  uint8_t ver_cmd = b[12], fam = b[13];
  size_t len = (size_t)(b[14] << 8 | b[15]);
  if (ver_cmd >> 4 != 2)
    return -RK__PP_V2_BAD_VERSION;
  int cmd = ver_cmd & 0x0f;
  if (cmd > 1)
    return -RK__PP_V2_BAD_COMMAND;
  int family = fam >> 4, proto = fam & 0x0f;
  if (family > 3)
    return -RK__PP_V2_BAD_FAMILY;
  if (proto > 2)
    return -RK__PP_V2_BAD_TRANSPORT;
  size_t total = 16 + len;
  if (total > RK__V2_MAX)
    return -RK__PP_V2_TOO_LONG;
  if (n < total) {
    r->n = (uint32_t)(total - n);
    return RK__PP_NEED;
  }
  static const size_t alens[4] = {0, 12, 36, 216};
  size_t alen = alens[family];
  r->version = 2;
  r->command = (uint8_t)cmd;
  r->transport = (uint8_t)proto;
  r->n = (uint32_t)total;
  r->family = 0;
  r->tlv_off = r->tlv_len = 0;
  if (cmd == 0) {
    /* LOCAL: addresses ignored, a tail that is not good TLVs too; a
     * CRC32C, when there is one, still checked */
    if (len < alen || !rk__tlvs_ok(b + 16 + alen, len - alen))
      return RK__PP_HEADER;
    int e = rk__crc_check(b, total, 16 + alen);
    if (e != 0)
      return -e;
    if (rk__tlvs_decode_ok(b + 16 + alen, len - alen)) {
      r->tlv_off = (uint32_t)(16 + alen);
      r->tlv_len = (uint32_t)(len - alen);
    }
    return RK__PP_HEADER;
  }
  if (proto == 2)
    return -RK__PP_V2_BAD_TRANSPORT; /* a datagram on a stream listener */
  if (len < alen)
    return -RK__PP_V2_SHORT_ADDRESS;
  if (!rk__tlvs_ok(b + 16 + alen, len - alen))
    return -RK__PP_V2_BAD_TLV;
  int e = rk__crc_check(b, total, 16 + alen);
  if (e != 0)
    return -e;
  if (!rk__tlvs_decode_ok(b + 16 + alen, len - alen))
    return -RK__PP_V2_BAD_TLV;
  r->tlv_off = (uint32_t)(16 + alen);
  r->tlv_len = (uint32_t)(len - alen);
  r->family = (uint8_t)family;
  if (family == 1 || family == 2) {
    size_t a = family == 1 ? 4 : 16;
    const uint8_t *p = b + 16;
    memset(r->src, 0, 16);
    memset(r->dst, 0, 16);
    memcpy(r->src, p, a);
    memcpy(r->dst, p + a, a);
    r->sport = (uint16_t)(p[2 * a] << 8 | p[2 * a + 1]);
    r->dport = (uint16_t)(p[2 * a + 2] << 8 | p[2 * a + 3]);
  }
  return RK__PP_HEADER;
}

/* parseProxyHeader: RK__PP_NEED/NONE/HEADER or a negative code. */
static int rk__pp_parse(const uint8_t *b, size_t n, int mode,
                        rk__pp_result *r) {
  memset(r, 0, sizeof *r);
  if (mode == RK_PROXY_NONE)
    return RK__PP_NONE;
  size_t m1 = n < 6 ? n : 6, m2 = n < 12 ? n : 12;
  int v1 = memcmp(b, "PROXY ", m1) == 0 ? (int)m1 : -1;
  int v2 = memcmp(b, rk__v2_sig, m2) == 0 ? (int)m2 : -1;
  if (mode != RK_PROXY_V2 && v1 == 6)
    return rk__parse_v1(b, n, r);
  if (mode != RK_PROXY_V1 && v2 == 12)
    return rk__parse_v2(b, n, r);
  int could1 = mode != RK_PROXY_V2 && v1 >= 0;
  int could2 = mode != RK_PROXY_V1 && v2 >= 0;
  if (could1 || could2) {
    size_t need = could1 ? 6 - n : 12 - n;
    if (could2 && 12 - n < need)
      need = 12 - n;
    r->n = (uint32_t)need;
    return RK__PP_NEED;
  }
  if (mode == RK_PROXY_DETECT)
    return RK__PP_NONE;
  return -RK__PP_NO_HEADER;
}

/* ---- the header sent on (send_proxy.ts buildSendProxy) ----------------- */

/* Source and destination of the header to send: from the accepted header
 * when it has IPv4/IPv6 addresses and says PROXY, else the connection's
 * own with IPv4-mapped addresses as IPv4. family 0: none (a Unix socket). */
typedef struct {
  int family; /* 0, 1 IPv4, 2 IPv6 */
  uint8_t src[16], dst[16];
  uint16_t sport, dport;
} rk__pp_ends;

static int rk__sock_ends(const struct sockaddr_storage *ss, uint8_t out[16],
                         uint16_t *port) {
  memset(out, 0, 16);
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    memcpy(out, &s->sin_addr, 4);
    *port = ntohs(s->sin_port);
    return 1;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    const uint8_t *a = s->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    *port = ntohs(s->sin6_port);
    if (memcmp(a, mapped, 12) == 0) {
      memcpy(out, a + 12, 4);
      return 1;
    }
    memcpy(out, a, 16);
    return 2;
  }
  return 0;
}

static void rk__pp_ends_of(rk__conn *c, const rk__pp_result *h,
                           rk__pp_ends *e) {
  memset(e, 0, sizeof *e);
  if (h != NULL && h->command == 1 && (h->family == 1 || h->family == 2)) {
    e->family = h->family;
    memcpy(e->src, h->src, 16);
    memcpy(e->dst, h->dst, 16);
    e->sport = h->sport;
    e->dport = h->dport;
    return;
  }
  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  memset(&local, 0, sizeof local);
  if (getsockname(c->side[0].rfd, (struct sockaddr *)&local, &len) != 0)
    return;
  int fs = rk__sock_ends(&c->peer, e->src, &e->sport);
  int fd = rk__sock_ends(&local, e->dst, &e->dport);
  e->family = fs == fd ? fs : 0;
}

/* 32 hex digits of 16 random bytes (send_proxy.ts randomId). */
static int rk__unique_id(uint8_t out[32]) {
  uint8_t raw[16];
  long n;
  do {
    n = syscall(SYS_getrandom, raw, sizeof raw, 0);
  } while (n < 0 && errno == EINTR);
  if (n != (long)sizeof raw)
    return -EIO;
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = (uint8_t)hex[raw[i] >> 4];
    out[2 * i + 1] = (uint8_t)hex[raw[i] & 15];
  }
  return 0;
}

static void rk__ip_text(int family, const uint8_t *a, char *out) {
  if (family == 1)
    sprintf(out, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
  else
    rk__ipv6_text(a, out);
}

/* The header to send, malloc'd into *out; its length or a negative error. */
static int32_t rk__pp_build(const struct rk__pp_conf *pp, const rk__pp_ends *e,
                            uint8_t **out) {
  if (pp->send_version == 1) {
    char *s = malloc(RK__V1_MAX + 1);
    if (s == NULL)
      return -ENOMEM;
    if (e->family == 0) {
      *out = (uint8_t *)s;
      return (int32_t)sprintf(s, "PROXY UNKNOWN\r\n");
    }
    char a[48], b[48];
    rk__ip_text(e->family, e->src, a);
    rk__ip_text(e->family, e->dst, b);
    *out = (uint8_t *)s;
    return (int32_t)snprintf(s, RK__V1_MAX + 1, "PROXY %s %s %s %u %u\r\n",
                             e->family == 1 ? "TCP4" : "TCP6", a, b, e->sport,
                             e->dport);
  }
  size_t alen = e->family == 1 ? 12 : e->family == 2 ? 36 : 0;
  int uid = (pp->flags & RK_PROXY_SEND_UNIQUE_ID) != 0;
  int crc = (pp->flags & RK_PROXY_SEND_CRC32C) != 0;
  size_t len = alen + pp->tlvs_len + (uid ? 3 + 32 : 0) + (crc ? 7 : 0);
  if (len > 0xffff)
    return -E2BIG;
  uint8_t *h = malloc(16 + len);
  if (h == NULL)
    return -ENOMEM;
  memcpy(h, rk__v2_sig, 12);
  h[12] = (uint8_t)(0x20 | (e->family != 0 ? 1 : 0)); /* PROXY, else LOCAL */
  h[13] = (uint8_t)(e->family << 4 | (e->family != 0 ? 1 : 0));
  h[14] = (uint8_t)(len >> 8);
  h[15] = (uint8_t)len;
  size_t o = 16;
  if (e->family != 0) {
    size_t a = e->family == 1 ? 4 : 16;
    memcpy(h + o, e->src, a);
    memcpy(h + o + a, e->dst, a);
    h[o + 2 * a] = (uint8_t)(e->sport >> 8);
    h[o + 2 * a + 1] = (uint8_t)e->sport;
    h[o + 2 * a + 2] = (uint8_t)(e->dport >> 8);
    h[o + 2 * a + 3] = (uint8_t)e->dport;
    o += alen;
  }
  memcpy(h + o, pp->tlvs, pp->tlv_split);
  o += pp->tlv_split;
  if (uid) {
    h[o] = 0x05;
    h[o + 1] = 0;
    h[o + 2] = 32;
    if (rk__unique_id(h + o + 3) != 0) {
      free(h);
      return -EIO;
    }
    o += 35;
  }
  memcpy(h + o, pp->tlvs + pp->tlv_split, pp->tlvs_len - pp->tlv_split);
  o += pp->tlvs_len - pp->tlv_split;
  if (crc) {
    h[o] = 0x03;
    h[o + 1] = 0;
    h[o + 2] = 4;
    memset(h + o + 3, 0, 4);
    uint32_t v = rk__crc32c(h, 16 + len);
    h[o + 3] = (uint8_t)(v >> 24);
    h[o + 4] = (uint8_t)(v >> 16);
    h[o + 5] = (uint8_t)(v >> 8);
    h[o + 6] = (uint8_t)v;
  }
  *out = h;
  return (int32_t)(16 + len);
}

/* ---- the header phase of a held connection ----------------------------- */

static int rk__trusted(const struct rk__pp_conf *pp,
                       const struct sockaddr_storage *peer) {
  uint8_t a[16];
  uint16_t port;
  int fam = rk__sock_ends(peer, a, &port);
  if (fam == 0)
    return peer->ss_family == AF_UNIX; /* this machine: like loopback */
  size_t n = fam == 1 ? 4 : 16;
  for (int32_t i = 0; i < pp->nranges; i++) {
    const uint8_t *r = pp->ranges + (size_t)i * RK__RANGE_BYTES;
    if (r[0] != n)
      continue;
    int prefix = r[1], ok = 1;
    for (size_t k = 0; k < n && ok; k++) {
      int keep = prefix - (int)k * 8;
      if (keep <= 0)
        break;
      if (keep > 8)
        keep = 8;
      uint8_t mask = (uint8_t)(0xff << (8 - keep));
      ok = (a[k] & mask) == r[2 + k];
    }
    if (ok)
      return 1;
  }
  return 0;
}

/* RK_EV_PROXY: an error (err, code) or the accepted header h (may be NULL:
 * none) with the addresses e. */
static void rk__pp_post(rk__conn *c, int32_t err, uint32_t word4,
                        uint32_t word5, const rk__pp_ends *e) {
  uint32_t rec[RK_EVENT_WORDS] = {RK_EV_PROXY, (uint32_t)c->id,
                                  (uint32_t)c->listener->id, (uint32_t)err,
                                  word4, word5};
  if (e->family != 0) {
    rec[6] = e->family == 1 ? AF_INET : AF_INET6;
    rec[7] = (uint32_t)e->sport | (uint32_t)e->dport << 16;
    memcpy(&rec[8], e->src, 16);
    memcpy(&rec[12], e->dst, 16);
  }
  rk__post(c->w->e, rec);
}

static void rk__pp_refuse(rk__conn *c, int32_t err, int code) {
  rk__pp_ends e;
  memset(&e, 0, sizeof e);
  uint16_t port;
  e.family = rk__sock_ends(&c->peer, e.src, &port);
  e.sport = port;
  rk__pp_post(c, err, (uint32_t)code, c->hold_len, &e);
  c->pp_phase = 2;
  c->pp_decided = 1;
  rk__cmd cmd;
  memset(&cmd, 0, sizeof cmd);
  cmd.type = RK__CMD_HOLD_DECIDE;
  cmd.decision.action = RK_DECIDE_CLOSE;
  cmd.decision.idle_timeout_ms = -1;
  rk__hold_decide_cmd(c, &cmd);
}

/* RK_EV_PROXY for an accepted header h (NULL: none came), when the host
 * asked for originals and there is one to tell (a header came, or one is
 * sent on), or always when the connection is handed to the host (which
 * then knows what is held is the header and what follows). */
static void rk__pp_tell(rk__conn *c, const rk__pp_result *h, int handed) {
  rk__listener *l = c->listener;
  if (!handed && !((h != NULL || l->pp->send_version != 0) &&
                   rk__listener_wants(l, RK_EVMASK_ORIGINAL)))
    return;
  rk__pp_ends e;
  rk__pp_ends_of(c, h, &e);
  uint32_t w4 = (uint32_t)handed << 13;
  if (h != NULL) {
    int own = h->command == 1 && (h->family == 1 || h->family == 2);
    w4 |= (uint32_t)h->version | (uint32_t)h->command << 4 |
          (uint32_t)h->transport << 8 | (uint32_t)own << 12;
  }
  rk__pp_post(c, 0, w4, h != NULL ? h->n : 0, &e);
}

/* Connect to the listener's target: the header to send, then what the
 * client sent after its own header (consume bytes). */
static void rk__pp_connect(rk__conn *c, uint32_t consume,
                           const rk__pp_result *h) {
  rk__listener *l = c->listener;
  const struct rk__pp_conf *pp = l->pp;
  c->pp_phase = 2;
  c->pp_decided = 1;
  rk__pp_tell(c, h, 0);
  rk__cmd *cmd = calloc(1, sizeof *cmd);
  if (cmd == NULL) {
    rk__conn_end(c, RK_END_RESET, -ENOMEM);
    return;
  }
  cmd->type = RK__CMD_HOLD_DECIDE;
  cmd->arg = -1;
  const rk__target *t = l->target;
  cmd->target = rk__copy_target(t->host, t->port, t->family, t->timeout_ms,
                                t->bind_host);
  int32_t n = 0;
  if (pp->send_version != 0) {
    rk__pp_ends e;
    rk__pp_ends_of(c, h, &e);
    n = rk__pp_build(pp, &e, &cmd->data);
  } else {
    cmd->data = malloc(1);
  }
  if (cmd->target == NULL || n < 0 || cmd->data == NULL) {
    rk__cmd_free(cmd);
    if (n < 0 && n != -ENOMEM) {
      rk__pp_refuse(c, RK_EPROXY, 0); /* cannot build the header */
      return;
    }
    rk__conn_end(c, RK_END_RESET, -ENOMEM);
    return;
  }
  cmd->len = (uint32_t)n;
  cmd->decision.action = RK_DECIDE_CONNECT;
  cmd->decision.port = t->port;
  cmd->decision.family = t->family;
  cmd->decision.connect_timeout_ms = t->timeout_ms;
  cmd->decision.idle_timeout_ms = -1;
  cmd->decision.consume = consume;
  rk__hold_decide_cmd(c, cmd);
  rk__cmd_free(cmd);
}

/* The header phase is over (h: the header, or NULL: none). With a target,
 * connect; without one, hand the connection to the host with what is held
 * (an RK_HOLD_FIRST post, after the RK_EV_PROXY that says what it is). */
static int rk__pp_done(rk__conn *c, uint32_t *flags, const rk__pp_result *h) {
  if (c->listener->target != NULL) {
    rk__pp_connect(c, h != NULL ? h->n : 0, h);
    return 1;
  }
  c->pp_phase = 2;
  rk__pp_tell(c, h, 1);
  *flags = RK_HOLD_FIRST | (*flags & RK_HOLD_EOF);
  return 0;
}

int rk__pp_held(rk__conn *c, uint32_t *flags) {
  rk__listener *l = c->listener;
  struct rk__pp_conf *pp = l == NULL ? NULL : l->pp;
  if (pp == NULL || c->pp_phase == 2)
    return 0;
  if (c->pp_phase == 0) {
    if (!(*flags & RK_HOLD_FIRST) || __atomic_load_n(&pp->off, __ATOMIC_ACQUIRE)) {
      c->pp_phase = 2; /* the host's */
      return 0;
    }
    c->pp_phase = 1;
    if (pp->mode == RK_PROXY_NONE) /* no header to read: only one to send */
      return rk__pp_done(c, flags, NULL);
    if (!rk__trusted(pp, &c->peer)) {
      if (pp->flags & RK_PROXY_UNTRUSTED_PASS)
        return rk__pp_done(c, flags, NULL);
      rk__pp_refuse(c, RK_EPROXY_UNTRUSTED, 0);
      return 1;
    }
    rk__hold_read_cmd(c, RK__FIRST_READ);
    return 1;
  }
  rk__pp_result r;
  int k = rk__pp_parse(c->hold_buf, c->hold_len, pp->mode, &r);
  if (k < 0) {
    rk__pp_refuse(c, RK_EPROXY, -k);
    return 1;
  }
  if (k == RK__PP_NEED) {
    if (*flags & RK_HOLD_EOF) {
      rk__pp_refuse(c, RK_EPROXY, RK__PP_EOF);
      return 1;
    }
    uint32_t max = c->hold_len + r.n;
    if (max < RK__FIRST_READ)
      max = RK__FIRST_READ;
    if (max > RK__V2_MAX)
      max = RK__V2_MAX;
    rk__hold_read_cmd(c, max);
    return 1;
  }
  if (k == RK__PP_NONE)
    return rk__pp_done(c, flags, NULL);
  if ((r.tlv_len > 0 || r.family == 3) &&
      (l->target == NULL || rk__listener_wants(l, RK_EVMASK_ORIGINAL))) {
    /* the host's parser gives it the whole header */
    c->pp_phase = 2;
    *flags = RK_HOLD_FIRST | (*flags & RK_HOLD_EOF);
    return 0;
  }
  return rk__pp_done(c, flags, &r);
}

/* ---- public ------------------------------------------------------------ */

int rk__pp_reads(const struct rk__pp_conf *pp) {
  return pp != NULL && pp->mode != RK_PROXY_NONE;
}

void rk__pp_conf_free(struct rk__pp_conf *pp) {
  if (pp == NULL)
    return;
  free(pp->tlvs);
  free(pp->ranges);
  free(pp);
}

int32_t rk_listener_set_proxy(int32_t h, int32_t lid,
                              const rk_proxy_opts_t *opts,
                              const uint8_t *ranges, int32_t ranges_len,
                              const uint8_t *tlvs, int32_t tlvs_len) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  if (opts == NULL)
    return -EINVAL;
  if (opts->mode < RK_PROXY_DETECT || opts->mode > RK_PROXY_NONE ||
      (opts->send_version != 0 && opts->send_version != 1 &&
       opts->send_version != 2) ||
      ranges_len < 0 || ranges_len % RK__RANGE_BYTES != 0 ||
      (ranges_len > 0 && ranges == NULL) || tlvs_len < 0 ||
      tlvs_len > 0xffff || (tlvs_len > 0 && tlvs == NULL) ||
      opts->tlv_split > (uint32_t)tlvs_len)
    return -EINVAL;
  for (int32_t i = 0; i < ranges_len; i += RK__RANGE_BYTES)
    if ((ranges[i] != 4 && ranges[i] != 16) || ranges[i + 1] > ranges[i] * 8)
      return -EINVAL;
  struct rk__pp_conf *pp = calloc(1, sizeof *pp);
  if (pp == NULL)
    return -ENOMEM;
  pp->mode = opts->mode;
  pp->flags = opts->flags;
  pp->send_version = opts->send_version;
  pp->tlv_split = opts->tlv_split;
  pp->nranges = ranges_len / RK__RANGE_BYTES;
  pp->ranges = malloc(ranges_len > 0 ? (size_t)ranges_len : 1);
  pp->tlvs = malloc(tlvs_len > 0 ? (size_t)tlvs_len : 1);
  pp->tlvs_len = (uint32_t)tlvs_len;
  if (pp->ranges == NULL || pp->tlvs == NULL) {
    rk__pp_conf_free(pp);
    return -ENOMEM;
  }
  if (ranges_len > 0)
    memcpy(pp->ranges, ranges, (size_t)ranges_len);
  if (tlvs_len > 0)
    memcpy(pp->tlvs, tlvs, (size_t)tlvs_len);
  int32_t r = 0;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  if (l == NULL) {
    r = -ENOENT;
  } else if (l->started || !l->hold ||
             (l->tls_ctx != NULL && opts->mode != RK_PROXY_NONE)) {
    r = -EINVAL; /* a header before the TLS: the TLS side reads only TLS */
  } else {
    struct rk__pp_conf *old = l->pp;
    l->pp = pp;
    pp = old;
  }
  pthread_mutex_unlock(&e->tbl_lock);
  rk__pp_conf_free(pp); /* the replaced one, or the unused copy */
  return r;
}

int32_t rk_listener_drop_proxy(int32_t h, int32_t lid) {
  rk__engine *e = rk__engine_get(h);
  if (e == NULL)
    return RK_EBADHANDLE;
  pthread_mutex_lock(&e->tbl_lock);
  rk__listener *l = rk__listener_find_locked(e, lid);
  /* workers may be reading it: it stays until the listener is freed */
  if (l != NULL && l->pp != NULL)
    __atomic_store_n(&l->pp->off, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&e->tbl_lock);
  return l == NULL ? -ENOENT : 0;
}

int32_t rk_proxy_parse(const uint8_t *buf, int32_t len, int32_t mode,
                       int32_t *out) {
  if (len < 0 || (len > 0 && buf == NULL) || out == NULL || mode < 0 ||
      mode > RK_PROXY_NONE)
    return -EINVAL;
  static const uint8_t empty[1] = {0};
  rk__pp_result r;
  int k = rk__pp_parse(len > 0 ? buf : empty, (size_t)len, mode, &r);
  memset(out, 0, 9 * sizeof *out);
  if (k < 0)
    return k;
  out[0] = (int32_t)r.n;
  if (k == RK__PP_HEADER) {
    out[1] = r.version;
    out[2] = r.command;
    out[3] = r.transport;
    out[4] = r.family;
    out[5] = r.sport;
    out[6] = r.dport;
    out[7] = (int32_t)r.tlv_off;
    out[8] = (int32_t)r.tlv_len;
  }
  return k;
}

int32_t rk_proxy_error_r(int32_t code, char *buf, int32_t len) {
  static const char *const texts[RK__PP_NCODES] = {
      "OK: no error",
#define XX(name, text) #name ": " text,
      RK__PP_CODES(XX)
#undef XX
  };
  const char *t = code >= 0 && code < RK__PP_NCODES ? texts[code] : "UNKNOWN";
  if (buf == NULL || len <= 0)
    return 0;
  int n = snprintf(buf, (size_t)len, "%s", t);
  return n < len ? n : len - 1;
}
