/* layout.c - the layout of the public option structs, and the timing
 * constants a host engine must agree with, for bindings to check theirs
 * against (rk_layout). */
#include "internal.h"

#include <stddef.h>
#include <string.h>

/* The sizes bindings are written for. A change here is a change of the
 * ABI: bump the version and every binding's layout table with it. */
_Static_assert(sizeof(rk_listen_opts_t) == 32, "rk_listen_opts_t changed");
_Static_assert(sizeof(rk_relay_opts_t) == 8, "rk_relay_opts_t changed");
_Static_assert(sizeof(rk_decision_t) == 48, "rk_decision_t changed");
_Static_assert(sizeof(rk_proxy_opts_t) == 16, "rk_proxy_opts_t changed");
_Static_assert(offsetof(rk_decision_t, offset) % 8 == 0,
               "rk_decision_t: 64-bit fields must be aligned on every ABI");

#define RK__OFF(type, field) (int32_t) offsetof(type, field)

static const int32_t rk__listen_layout[] = {
    (int32_t)sizeof(rk_listen_opts_t),
    RK__OFF(rk_listen_opts_t, backlog),
    RK__OFF(rk_listen_opts_t, flags),
    RK__OFF(rk_listen_opts_t, max_conns),
    RK__OFF(rk_listen_opts_t, idle_timeout_ms),
    RK__OFF(rk_listen_opts_t, events),
    RK__OFF(rk_listen_opts_t, hooks),
    RK__OFF(rk_listen_opts_t, hold_timeout_ms),
    RK__OFF(rk_listen_opts_t, adopt_fd),
};

static const int32_t rk__relay_layout[] = {
    (int32_t)sizeof(rk_relay_opts_t),
    RK__OFF(rk_relay_opts_t, flags),
    RK__OFF(rk_relay_opts_t, idle_timeout_ms),
};

static const int32_t rk__decision_layout[] = {
    (int32_t)sizeof(rk_decision_t),
    RK__OFF(rk_decision_t, action),
    RK__OFF(rk_decision_t, flags),
    RK__OFF(rk_decision_t, port),
    RK__OFF(rk_decision_t, family),
    RK__OFF(rk_decision_t, connect_timeout_ms),
    RK__OFF(rk_decision_t, idle_timeout_ms),
    RK__OFF(rk_decision_t, consume),
    RK__OFF(rk_decision_t, reserved),
    RK__OFF(rk_decision_t, offset),
    RK__OFF(rk_decision_t, length),
};

static const int32_t rk__proxy_layout[] = {
    (int32_t)sizeof(rk_proxy_opts_t),
    RK__OFF(rk_proxy_opts_t, mode),
    RK__OFF(rk_proxy_opts_t, flags),
    RK__OFF(rk_proxy_opts_t, send_version),
    RK__OFF(rk_proxy_opts_t, tlv_split),
};

static const int32_t rk__sweep_ms[] = {RK__SWEEP_MS};
/* proxyhdr.c's limits: v1 and v2 maximum, first read */
static const int32_t rk__proxy_limits[] = {RK__V1_MAX, RK__V2_MAX,
                                           RK__FIRST_READ};
static const int32_t rk__linger_ms[] = {RK__LINGER_MS};

#define RK__ENTRY(name, table)                                                 \
  {name, table, (int32_t)(sizeof table / sizeof table[0])}

static const struct {
  const char *name;
  const int32_t *values;
  int32_t n;
} rk__layouts[] = {
    RK__ENTRY("rk_listen_opts_t", rk__listen_layout),
    RK__ENTRY("rk_relay_opts_t", rk__relay_layout),
    RK__ENTRY("rk_decision_t", rk__decision_layout),
    RK__ENTRY("rk_proxy_opts_t", rk__proxy_layout),
    RK__ENTRY("sweep_ms", rk__sweep_ms),
    RK__ENTRY("proxy_limits", rk__proxy_limits),
    RK__ENTRY("linger_ms", rk__linger_ms),
};

int32_t rk_layout(const char *name, int32_t *out, int32_t cap) {
  if (name == NULL)
    return -EINVAL;
  for (size_t i = 0; i < sizeof rk__layouts / sizeof rk__layouts[0]; i++) {
    if (strcmp(rk__layouts[i].name, name) != 0)
      continue;
    int32_t n = rk__layouts[i].n;
    for (int32_t j = 0; out != NULL && j < n && j < cap; j++)
      out[j] = rk__layouts[i].values[j];
    return n;
  }
  return -ENOENT;
}
