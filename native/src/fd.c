/* fd.c - small synchronous fd helpers for hosts that cannot make raw fds
 * themselves (Deno and Bun do not hand out the fds of their sockets). */
#include "internal.h"

#include <fcntl.h>
#include <sys/stat.h>
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
