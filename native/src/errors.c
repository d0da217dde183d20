/* errors.c - names and messages for error codes (errno and RK_E*). */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define RK__ERRNO_NAMES(XX)                                                    \
  XX(EPERM) XX(ENOENT) XX(EINTR) XX(EIO) XX(EBADF) XX(EAGAIN) XX(ENOMEM)     \
  XX(EACCES) XX(EFAULT) XX(EBUSY) XX(EEXIST) XX(ENODEV) XX(ENOTDIR)          \
  XX(EISDIR) XX(EINVAL) XX(ENFILE) XX(EMFILE) XX(ENOSPC) XX(ESPIPE)          \
  XX(EPIPE) XX(ERANGE) XX(ENAMETOOLONG) XX(ENOSYS) XX(ENOTSOCK)              \
  XX(EADDRINUSE) XX(EADDRNOTAVAIL) XX(ENETDOWN) XX(ENETUNREACH)              \
  XX(ECONNABORTED) XX(ECONNRESET) XX(ENOBUFS) XX(EISCONN) XX(ENOTCONN)       \
  XX(ETIMEDOUT) XX(ECONNREFUSED) XX(EHOSTDOWN) XX(EHOSTUNREACH)              \
  XX(EALREADY) XX(EINPROGRESS) XX(EAFNOSUPPORT) XX(EPROTONOSUPPORT)          \
  XX(EOPNOTSUPP) XX(ECANCELED)

/* Messages the library words itself instead of taking libc's, so that they
 * are the same with glibc and musl (whose texts differ) and the same as the
 * TypeScript engine's (src/errors.ts ERROR_TEXT; a test compares them). */
#define RK__ERRNO_TEXTS(XX)                                                    \
  XX(ETIMEDOUT, "timed out")                                                   \
  XX(ECONNREFUSED, "connection refused")                                       \
  XX(ECONNRESET, "connection reset by peer")                                   \
  XX(ENETUNREACH, "unreachable")                                               \
  XX(EHOSTUNREACH, "unreachable")                                              \
  XX(EPIPE, "Broken pipe")                                                     \
  XX(EADDRINUSE, "Address already in use")                                     \
  XX(EADDRNOTAVAIL, "Cannot assign requested address")                         \
  XX(EACCES, "Permission denied")                                              \
  XX(EPERM, "Operation not permitted")                                         \
  XX(ENOENT, "No such file or directory")                                      \
  XX(EMFILE, "Too many open files")                                            \
  XX(ENFILE, "Too many open files in system")                                  \
  XX(EINVAL, "Invalid argument")                                               \
  XX(EAFNOSUPPORT, "Address family not supported by protocol")                 \
  XX(ENOTCONN, "Transport endpoint is not connected")                          \
  XX(ECONNABORTED, "Software caused connection abort")

const char *rk_err_name(int32_t err) {
  switch (err) {
#define XX(name, value, text)                                                  \
  case value:                                                                  \
    return "RK_" #name;
    RK_ERRNO_MAP(XX)
#undef XX
#define XX(name)                                                               \
  case -name:                                                                  \
    return #name;
    RK__ERRNO_NAMES(XX)
#undef XX
  case RK_ECERT_UNTRUSTED:
    return "CERT_UNTRUSTED";
  default:
    return err == 0 ? "OK" : "UNKNOWN";
  }
}

/* Messages of errno values, made once: strerror() is not thread-safe, and
 * strerrordesc_np() is neither in musl nor in glibc before 2.32. Linux errno
 * values stay below 134; the longest message is 50 bytes. */
#define RK__ERRNO_MAX 134
static char rk__errno_text[RK__ERRNO_MAX][64];
static pthread_once_t rk__errno_once = PTHREAD_ONCE_INIT;

static void rk__errno_fill(void) {
  for (int e = 1; e < RK__ERRNO_MAX; e++) {
    char *t = rk__errno_text[e];
#ifdef __GLIBC__
    /* the GNU strerror_r: a static string, or the message written into t */
    const char *s = strerror_r(e, t, sizeof rk__errno_text[e]);
    if (s != t)
      snprintf(t, sizeof rk__errno_text[e], "%s", s);
#else
    if (strerror_r(e, t, sizeof rk__errno_text[e]) != 0)
      t[0] = '\0';
#endif
    /* a number with no meaning gets "unknown error", as before */
    if (strncmp(t, "Unknown error", 13) == 0 || strcmp(t, "No error information") == 0)
      t[0] = '\0';
  }
}

const char *rk_strerror(int32_t err) {
  switch (err) {
#define XX(name, value, text)                                                  \
  case value:                                                                  \
    return text;
    RK_ERRNO_MAP(XX)
#undef XX
#define XX(name, text)                                                         \
  case -name:                                                                  \
    return text;
    RK__ERRNO_TEXTS(XX)
#undef XX
  case RK_ECERT_UNTRUSTED:
    return RK_ECERT_UNTRUSTED_TEXT;
  default:
    break;
  }
  if (err == 0)
    return "success";
  if (err < 0 && err > -RK__ERRNO_MAX) {
    pthread_once(&rk__errno_once, rk__errno_fill);
    const char *s = rk__errno_text[-err];
    if (s[0] != '\0')
      return s;
  }
  return "unknown error";
}

static int32_t rk__copy(const char *s, char *buf, int32_t len) {
  if (buf == NULL || len <= 0)
    return 0;
  int32_t n = (int32_t)strnlen(s, (size_t)len - 1);
  memcpy(buf, s, (size_t)n);
  buf[n] = '\0';
  return n;
}

int32_t rk_strerror_r(int32_t err, char *buf, int32_t len) {
  return rk__copy(rk_strerror(err), buf, len);
}

int32_t rk_err_name_r(int32_t err, char *buf, int32_t len) {
  return rk__copy(rk_err_name(err), buf, len);
}

int32_t rk_version(void) {
  return (RK_VERSION_MAJOR << 16) | (RK_VERSION_MINOR << 8) | RK_VERSION_PATCH;
}
