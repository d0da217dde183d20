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
  default:
    return err == 0 ? "OK" : "UNKNOWN";
  }
}

const char *rk_strerror(int32_t err) {
  switch (err) {
#define XX(name, value, text)                                                  \
  case value:                                                                  \
    return text;
    RK_ERRNO_MAP(XX)
#undef XX
  case -ETIMEDOUT:
    return "timed out";
  case -ECONNREFUSED:
    return "connection refused";
  case -ECONNRESET:
    return "connection reset by peer";
  case -ENETUNREACH:
  case -EHOSTUNREACH:
    return "unreachable";
  default:
    break;
  }
  if (err == 0)
    return "success";
  if (err < 0 && err > -4096) {
    /* strerror() is not thread-safe, strerrordesc_np() is: it returns a
     * static string or NULL. */
    const char *s = strerrordesc_np(-err);
    if (s != NULL)
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
