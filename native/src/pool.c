/*
 * pool.c - each worker's pools of pipes and buffers.
 *
 * A relay takes a pipe (splice mode) or a buffer (read/write mode) per
 * direction while bytes are in flight and gives it back when the direction
 * is drained, so an idle relay holds neither. A worker keeps up to
 * RK__POOL_MAX of each for reuse; the sweep empties pools that were not
 * drawn from during a whole interval (rk__worker_release_pools).
 */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- pools ------------------------------------------------------------- */

int rk__pipe_get(rk__worker *w, int p[2]) {
  if (w->npipes > 0) {
    w->pool_uses++;
    /* only this worker writes npipes, but rk_engine_stats reads it from
     * any thread: every write is an atomic store */
    int n = w->npipes - 1;
    p[0] = w->pipes[n][0];
    p[1] = w->pipes[n][1];
    RK__STORE(&w->npipes, n);
    return 0;
  }
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
    return -errno;
  /* pages are taken as bytes come, not up front: the size bounds what one
   * direction has in flight */
  if (w->big_pipes < RK__PIPE_BIG_MAX &&
      fcntl(p[1], F_SETPIPE_SZ, RK__PIPE_CHUNK) >= RK__PIPE_CHUNK)
    w->big_pipes++;
  return 0;
}

/* Close a pipe for good (one that holds bytes, or one the pool has no room
 * for), counting the big ones out. */
void rk__pipe_close(rk__worker *w, int p[2]) {
  if (w->big_pipes > 0 && fcntl(p[1], F_GETPIPE_SZ) >= RK__PIPE_CHUNK)
    w->big_pipes--;
  close(p[0]);
  close(p[1]);
  p[0] = p[1] = -1;
}

void rk__pipe_put(rk__worker *w, int p[2]) {
  if (w->npipes < RK__POOL_MAX) {
    w->pipes[w->npipes][0] = p[0];
    w->pipes[w->npipes][1] = p[1];
    RK__STORE(&w->npipes, w->npipes + 1);
  } else {
    rk__pipe_close(w, p);
  }
  p[0] = p[1] = -1;
}

uint8_t *rk__buf_get(rk__worker *w) {
  if (w->nbufs > 0) {
    w->pool_uses++;
    return w->bufs[--w->nbufs];
  }
  return malloc(RK__BUF_SIZE);
}

void rk__buf_put(rk__worker *w, uint8_t *b) {
  if (w->nbufs < RK__POOL_MAX)
    w->bufs[w->nbufs++] = b;
  else
    free(b);
}

/* Give back what a direction's buffer is: a pool buffer or a hook result. */
void rk__dir_buf_release(rk__worker *w, rk__dir *dir) {
  if (dir->buf != NULL) {
    if (dir->buf_own)
      free(dir->buf);
    else
      rk__buf_put(w, dir->buf);
  }
  dir->buf = NULL;
  dir->buf_own = 0;
  dir->buf_off = dir->buf_len = 0;
}

void rk__worker_release_pools(rk__worker *w) {
  while (w->npipes > 0) {
    int n = w->npipes - 1;
    rk__pipe_close(w, w->pipes[n]);
    RK__STORE(&w->npipes, n);
  }
  while (w->nbufs > 0)
    free(w->bufs[--w->nbufs]);
  rk__batch_pool_release(w);
}
