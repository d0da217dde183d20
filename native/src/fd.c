/* fd.c - small synchronous fd helpers for hosts that cannot make raw fds
 * themselves (Deno and Bun do not hand out the fds of their sockets). */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int32_t rk_fd_pipe(int32_t *out) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    return -errno;
  out[0] = p[0];
  out[1] = p[1];
  return 0;
}

int32_t rk_fd_socketpair(int32_t *out) {
  int p[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0)
    return -errno;
  out[0] = p[0];
  out[1] = p[1];
  return 0;
}

int32_t rk_fd_open(const char *path, int32_t flags, int32_t mode) {
  int fd;
  RK__RETRY(fd, open(path, flags | O_CLOEXEC, (mode_t)mode));
  return fd < 0 ? -errno : fd;
}

/* The fds given here may have been made non-blocking by a relay that kept
 * them; wait for readiness instead of failing with EAGAIN. */
#include <poll.h>
static int rk__wait_fd(int fd, short ev) {
  struct pollfd p = {.fd = fd, .events = ev};
  int r;
  RK__RETRY(r, poll(&p, 1, -1));
  return r < 0 ? -errno : 0;
}

int32_t rk_fd_write(int32_t fd, const uint8_t *buf, int32_t len) {
  if (len < 0)
    return -EINVAL;
  int32_t off = 0;
  while (off < len) {
    ssize_t n;
    RK__RETRY(n, write(fd, buf + off, (size_t)(len - off)));
    if (n < 0) {
      if (errno == EAGAIN) {
        int r = rk__wait_fd(fd, POLLOUT);
        if (r < 0)
          return r;
        continue;
      }
      return -errno;
    }
    off += (int32_t)n;
  }
  return off;
}

int32_t rk_fd_read(int32_t fd, uint8_t *buf, int32_t len) {
  if (len < 0)
    return -EINVAL;
  for (;;) {
    ssize_t n;
    RK__RETRY(n, read(fd, buf, (size_t)len));
    if (n >= 0)
      return (int32_t)n;
    if (errno != EAGAIN)
      return -errno;
    int r = rk__wait_fd(fd, POLLIN);
    if (r < 0)
      return r;
  }
}

int32_t rk_fd_shutdown_write(int32_t fd) {
  struct stat st;
  if (rk__fstat(fd, &st) != 0)
    return -errno;
  if (S_ISSOCK(st.st_mode))
    return shutdown(fd, SHUT_WR) == 0 ? 0 : -errno;
  return close(fd) == 0 ? 0 : -errno;
}

int32_t rk_fd_close(int32_t fd) { return close(fd) == 0 ? 0 : -errno; }

/* ---- systemd -------------------------------------------------------------- */


int32_t rk_sd_notify(const char *path, const char *state) {
  if (path == NULL || state == NULL || path[0] == 0)
    return -EINVAL;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if (n >= sizeof sa.sun_path)
    return -ENAMETOOLONG;
  memcpy(sa.sun_path, path, n);
  if (sa.sun_path[0] == '@') /* the abstract namespace */
    sa.sun_path[0] = 0;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  ssize_t w;
  RK__RETRY(w, sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                      (struct sockaddr *)&sa,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)));
  int err = w < 0 ? -errno : 0;
  close(fd);
  return err;
}

int32_t rk_fd_sockname(int32_t fd, char *host, int32_t len, int32_t *port) {
  if (host == NULL || len <= 0 || port == NULL)
    return -EINVAL;
  int type = 0, acc = 0;
  socklen_t tl = sizeof type, al = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
    return -errno;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0)
    return -errno;
  if (type != SOCK_STREAM || !acc)
    return -EINVAL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
    return -errno;
  host[0] = 0;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    if (inet_ntop(AF_INET, &a->sin_addr, host, (socklen_t)len) == NULL)
      return -errno;
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    if (inet_ntop(AF_INET6, &a->sin6_addr, host, (socklen_t)len) == NULL)
      return -errno;
    *port = ntohs(a->sin6_port);
  } else if (ss.ss_family == AF_UNIX) {
    struct sockaddr_un *a = (struct sockaddr_un *)&ss;
    size_t n = sl > offsetof(struct sockaddr_un, sun_path)
                   ? sl - offsetof(struct sockaddr_un, sun_path)
                   : 0;
    if (n > 0 && a->sun_path[0] == 0) /* abstract: "@name" */
      a->sun_path[0] = '@';
    while (n > 0 && a->sun_path[n - 1] == 0)
      n--;
    if ((int32_t)n >= len)
      return -ENAMETOOLONG;
    memcpy(host, a->sun_path, n);
    host[n] = 0;
    *port = -1;
  } else {
    return -EAFNOSUPPORT;
  }
  return 0;
}
