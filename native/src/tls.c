/*
 * tls.c - TLS in the worker threads, with OpenSSL loaded at run time.
 *
 * Theory of operation
 * - No header and no link-time dependency: the library is built and loads
 *   where OpenSSL is absent. The first call that needs TLS (rk_tls_load, or
 *   making a context) dlopens libssl.so.3 and libcrypto.so.3 once and
 *   resolves the few functions below by name; when that fails, every TLS
 *   call returns RK_ENOTLS and rk_tls_load gives the reason (dlerror's
 *   words), which the host shows as why native TLS is off.
 * - A context (rk_tls_server_ctx, rk_tls_client_ctx) is an SSL_CTX in a
 *   process-wide table, named by a handle like everything else. A listener
 *   that terminates TLS holds its own reference (SSL_CTX_up_ref), so the
 *   host may free the handle at once.
 * - A TLS side of a connection is an rk__tls: one SSL on one non-blocking
 *   socket, used only by the worker that owns the connection. Reads and
 *   writes return -EAGAIN with the epoll event they wait for (a read may
 *   need the socket writable during a handshake, a write may need it
 *   readable); the caller re-runs both directions of a TLS side on any of
 *   its events, so a wait in either sense is never lost. The handshake
 *   happens inside the first read or write (accept or connect state).
 * - A peer's close_notify, and a TCP FIN without one, are the end of its
 *   stream (EOF); rk__tls_shutdown sends our close_notify (half-close: the
 *   other direction goes on). Alerts, bad records and certificates that do
 *   not verify end that one connection with RK_ETLS (RK_ECERT_UNTRUSTED).
 * - kTLS is not used: OpenSSL would need it per socket and the kernel's
 *   "tls" ULP, which this code does not count on; the bulk is SSL_read and
 *   SSL_write through the worker's buffers. A relay's side reads ahead
 *   with OpenSSL's own buffer; a tunnel link (rk__tls_bulk) reads through a
 *   buffer BIO below OpenSSL and writes through another (one read(2) and
 *   one write(2) for many records).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#ifdef RK__GLIBC_BASE
/* dlopen and friends moved from libdl into libc in glibc 2.34: bind them to
 * the version every glibc of the architecture has (see internal.h). Before
 * 2.34 they are libdl.so.2's, which the library does not name: they are
 * found in the host process, which has libdl loaded to load this library
 * (Deno and Bun do; a host without it gets an unresolved dlopen). */
__asm__(".symver dlopen,dlopen@" RK__GLIBC_BASE);
__asm__(".symver dlsym,dlsym@" RK__GLIBC_BASE);
__asm__(".symver dlerror,dlerror@" RK__GLIBC_BASE);
#endif

/* ---- the part of OpenSSL 3 we use, declared here ---------------------- */

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct x509_store_st X509_STORE;
typedef struct X509_VERIFY_PARAM_st X509_VERIFY_PARAM;
typedef struct x509_store_ctx_st X509_STORE_CTX;

/* Values from OpenSSL 3's ssl.h, tls1.h, prov_ssl.h (stable ABI). */
#define RK__SSL_ERROR_SSL 1
#define RK__SSL_ERROR_WANT_READ 2
#define RK__SSL_ERROR_WANT_WRITE 3
#define RK__SSL_ERROR_SYSCALL 5
#define RK__SSL_ERROR_ZERO_RETURN 6
#define RK__SSL_CTRL_EXTRA_CHAIN_CERT 14
#define RK__SSL_CTRL_MODE 33
#define RK__SSL_CTRL_CLEAR_MODE 78
#define RK__BIO_CTRL_FLUSH 11
#define RK__BIO_CTRL_WPENDING 13
#define RK__BIO_C_SET_BUFF_SIZE 117
#define RK__BIO_FLAGS_SHOULD_RETRY 0x08
#define RK__SSL_CTRL_SET_READ_AHEAD 41
#define RK__SSL_CTRL_SET_TLSEXT_HOSTNAME 55
#define RK__SSL_CTRL_SET_MIN_PROTO_VERSION 123
#define RK__SSL_MODE_ENABLE_PARTIAL_WRITE 0x1L
#define RK__SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER 0x2L
#define RK__SSL_MODE_RELEASE_BUFFERS 0x10L
#define RK__SSL_OP_IGNORE_UNEXPECTED_EOF ((uint64_t)1 << 7)
#define RK__SSL_OP_NO_RENEGOTIATION ((uint64_t)1 << 30)
#define RK__SSL_VERIFY_NONE 0
#define RK__SSL_VERIFY_PEER 1
#define RK__TLSEXT_NAMETYPE_host_name 0
#define RK__TLS1_2_VERSION 0x0303
#define RK__X509_V_OK 0
#define RK__X509_V_ERR_INVALID_CA 79
#define RK__X509_CHECK_FLAG_NEVER_CHECK_SUBJECT 0x20
#define RK__OPENSSL_INIT_NO_ATEXIT 0x00080000L

/* Every function, as a pointer resolved by name. */
#define RK__SSL_FUNCS(XX)                                                      \
  XX(const SSL_METHOD *, TLS_server_method, (void))                           \
  XX(const SSL_METHOD *, TLS_client_method, (void))                           \
  XX(SSL_CTX *, SSL_CTX_new, (const SSL_METHOD *))                            \
  XX(void, SSL_CTX_free, (SSL_CTX *))                                         \
  XX(int, SSL_CTX_up_ref, (SSL_CTX *))                                        \
  XX(long, SSL_CTX_ctrl, (SSL_CTX *, int, long, void *))                      \
  XX(uint64_t, SSL_CTX_set_options, (SSL_CTX *, uint64_t))                    \
  XX(int, SSL_CTX_set_ciphersuites, (SSL_CTX *, const char *))                \
  XX(void, SSL_CTX_set_default_read_buffer_len, (SSL_CTX *, size_t))          \
  XX(int, SSL_CTX_use_certificate, (SSL_CTX *, X509 *))                       \
  XX(int, SSL_CTX_use_PrivateKey, (SSL_CTX *, EVP_PKEY *))                    \
  XX(int, SSL_CTX_check_private_key, (const SSL_CTX *))                       \
  XX(void, SSL_CTX_set_verify, (SSL_CTX *, int, void *))                      \
  XX(X509_STORE *, SSL_CTX_get_cert_store, (const SSL_CTX *))                 \
  XX(int, SSL_CTX_set_default_verify_paths, (SSL_CTX *))                      \
  XX(SSL *, SSL_new, (SSL_CTX *))                                             \
  XX(void, SSL_free, (SSL *))                                                 \
  XX(int, SSL_set_fd, (SSL *, int))                                           \
  XX(void, SSL_set_default_read_buffer_len, (SSL *, size_t))                  \
  XX(BIO *, SSL_get_wbio, (const SSL *))                                      \
  XX(void, SSL_set0_wbio, (SSL *, BIO *))                                     \
  XX(BIO *, SSL_get_rbio, (const SSL *))                                      \
  XX(void, SSL_set0_rbio, (SSL *, BIO *))                                     \
  XX(void, SSL_set_accept_state, (SSL *))                                     \
  XX(void, SSL_set_connect_state, (SSL *))                                    \
  XX(int, SSL_read, (SSL *, void *, int))                                     \
  XX(int, SSL_write, (SSL *, const void *, int))                              \
  XX(int, SSL_shutdown, (SSL *))                                              \
  XX(int, SSL_do_handshake, (SSL *))                                          \
  XX(int, SSL_get_error, (const SSL *, int))                                  \
  XX(int, SSL_has_pending, (const SSL *))                                     \
  XX(long, SSL_ctrl, (SSL *, int, long, void *))                              \
  XX(int, SSL_set1_host, (SSL *, const char *))                               \
  XX(X509_VERIFY_PARAM *, SSL_get0_param, (SSL *))                            \
  XX(long, SSL_get_verify_result, (const SSL *))                              \
  XX(int, SSL_is_init_finished, (const SSL *))                                \
  XX(int, SSL_set_ex_data, (SSL *, int, void *))                              \
  XX(void *, SSL_get_ex_data, (const SSL *, int))                             \
  XX(int, SSL_get_ex_data_X509_STORE_CTX_idx, (void))

#define RK__CRYPTO_FUNCS(XX)                                                   \
  XX(int, OPENSSL_init_crypto, (uint64_t, const void *))                      \
  XX(BIO *, BIO_new_mem_buf, (const void *, int))                             \
  XX(const BIO_METHOD *, BIO_f_buffer, (void))                                \
  XX(BIO *, BIO_new, (const BIO_METHOD *))                                    \
  XX(BIO *, BIO_push, (BIO *, BIO *))                                         \
  XX(long, BIO_ctrl, (BIO *, int, long, void *))                              \
  XX(int, BIO_up_ref, (BIO *))                                                \
  XX(int, BIO_test_flags, (const BIO *, int))                                 \
  XX(int, BIO_free, (BIO *))                                                  \
  XX(X509 *, PEM_read_bio_X509, (BIO *, X509 **, void *, void *))             \
  XX(EVP_PKEY *, PEM_read_bio_PrivateKey, (BIO *, EVP_PKEY **, void *,        \
                                           void *))                           \
  XX(void, X509_free, (X509 *))                                               \
  XX(void, EVP_PKEY_free, (EVP_PKEY *))                                       \
  XX(int, X509_STORE_add_cert, (X509_STORE *, X509 *))                        \
  XX(int, X509_VERIFY_PARAM_set1_ip_asc, (X509_VERIFY_PARAM *, const char *)) \
  XX(const char *, X509_verify_cert_error_string, (long))                     \
  XX(unsigned long, ERR_get_error, (void))                                    \
  XX(unsigned long, ERR_peek_last_error, (void))                              \
  XX(void, ERR_error_string_n, (unsigned long, char *, size_t))               \
  XX(void, ERR_clear_error, (void))                                           \
  XX(void *, X509_STORE_CTX_get_ex_data, (const X509_STORE_CTX *, int))       \
  XX(X509 *, X509_STORE_CTX_get0_cert, (const X509_STORE_CTX *))              \
  XX(int, X509_STORE_CTX_get_error, (const X509_STORE_CTX *))                 \
  XX(void, X509_STORE_CTX_set_error, (X509_STORE_CTX *, int))                 \
  XX(int, X509_STORE_CTX_get_error_depth, (const X509_STORE_CTX *))           \
  XX(X509 *, X509_STORE_CTX_get_current_cert, (const X509_STORE_CTX *))       \
  XX(int, X509_check_ca, (X509 *))                                            \
  XX(int, i2d_X509, (const X509 *, unsigned char **))                         \
  XX(void, X509_VERIFY_PARAM_set_hostflags, (X509_VERIFY_PARAM *, unsigned int))

static struct {
#define XX(ret, name, args) ret(*name) args;
  RK__SSL_FUNCS(XX) RK__CRYPTO_FUNCS(XX)
#undef XX
} S;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_loaded;          /* 1: every symbol resolved */
static char g_reason[512];    /* why not, when not */
static char g_path[256];      /* what to load (rk_tls_load's path) */

/* Counters of rk_tls_stats. */
static uint64_t g_handshakes, g_failures, g_sessions, g_bytes_in, g_bytes_out;

static void rk__tls_do_load(void) {
  const char *ssl_path = g_path[0] ? g_path : "libssl.so.3";
  void *ssl = dlopen(ssl_path, RTLD_NOW | RTLD_LOCAL);
  if (ssl == NULL) {
    const char *e = dlerror();
    snprintf(g_reason, sizeof g_reason, "native TLS needs libssl.so.3: %s",
             e != NULL ? e : "not found");
    return;
  }
  /* libssl pulls in its own libcrypto; look the crypto functions up there
   * (dlsym on libssl's handle searches its dependencies too). */
  void *crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (crypto == NULL)
    crypto = ssl;
  const char *missing = NULL;
#define XX(ret, name, args)                                                    \
  if (missing == NULL &&                                                       \
      (*(void **)&S.name = dlsym(ssl, #name)) == NULL &&                       \
      (*(void **)&S.name = dlsym(crypto, #name)) == NULL)                      \
    missing = #name;
  RK__SSL_FUNCS(XX) RK__CRYPTO_FUNCS(XX)
#undef XX
  if (missing != NULL) {
    snprintf(g_reason, sizeof g_reason,
             "native TLS needs libssl.so.3: %s has no %s (not OpenSSL 3?)",
             ssl_path, missing);
    return; /* the handles stay open: harmless, and dlclose is not needed */
  }
  /* No exit handler: OpenSSL's would free its global state while the
   * workers may still be in SSL_read or SSL_write (the host's process
   * exits without stopping the engines first; a Deno test run once died
   * in OpenSSL's cleanup at exit, SIGSEGV). The first init call decides,
   * and this is the first: the library was just loaded. */
  if (S.OPENSSL_init_crypto(RK__OPENSSL_INIT_NO_ATEXIT, NULL) != 1) {
    snprintf(g_reason, sizeof g_reason,
             "native TLS: OpenSSL did not initialize (%s)", ssl_path);
    return;
  }
  g_loaded = 1;
}

int32_t rk_tls_load(const char *path, char *reason, int32_t cap) {
  /* the path only counts for the first call: the one that loads */
  static pthread_mutex_t path_lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&path_lock);
  if (path != NULL && path[0] && g_path[0] == 0 && !g_loaded &&
      g_reason[0] == 0)
    snprintf(g_path, sizeof g_path, "%s", path);
  pthread_mutex_unlock(&path_lock);
  pthread_once(&g_once, rk__tls_do_load);
  if (reason != NULL && cap > 0)
    snprintf(reason, (size_t)cap, "%s", g_loaded ? "" : g_reason);
  return g_loaded ? 1 : 0;
}

static int rk__tls_ready(void) {
  pthread_once(&g_once, rk__tls_do_load);
  return g_loaded;
}

/* OpenSSL's last error in words (and clear the queue), or `dflt`. */
static void rk__tls_errtext(char *buf, int32_t cap, const char *dflt) {
  if (buf == NULL || cap <= 0)
    return;
  unsigned long e = S.ERR_peek_last_error();
  if (e != 0)
    S.ERR_error_string_n(e, buf, (size_t)cap);
  else
    snprintf(buf, (size_t)cap, "%s", dflt);
  S.ERR_clear_error();
}

/* One TLS side (see "the TLS seam" in internal.h). */
struct rk__tls {
  SSL *ssl;
  unsigned done : 1;      /* handshake finished (counted) */
  unsigned shut_sent : 1; /* our close_notify is out */
  unsigned failed : 1;    /* counted as a failure */
  unsigned batched : 1;   /* writes gather in a buffer BIO (rk__tls_flush) */
  int verify;             /* X509_V_ERR_* of a failed verify, else 0 */
  uint8_t *peer_der;      /* the peer's certificate (DER), once seen */
  int32_t peer_len;
};

/* Called by OpenSSL for each step of verifying the peer's chain: keep the
 * peer's own certificate (to say later why it failed), and refuse what the
 * verification policy refuses beyond OpenSSL (src/runtime/tls_verify.ts):
 * a certificate marked CA:TRUE as the server's own. (A name only in the
 * subject's CN is refused by the host flags of rk__tls_new.) */
static int rk__tls_verify_cb(int ok, X509_STORE_CTX *x) {
  SSL *ssl = S.X509_STORE_CTX_get_ex_data(x, S.SSL_get_ex_data_X509_STORE_CTX_idx());
  rk__tls *t = ssl != NULL ? S.SSL_get_ex_data(ssl, 0) : NULL;
  X509 *leaf = S.X509_STORE_CTX_get0_cert(x);
  if (t != NULL && t->peer_der == NULL && leaf != NULL) {
    int n = S.i2d_X509(leaf, NULL);
    if (n > 0 && (t->peer_der = malloc((size_t)n)) != NULL) {
      unsigned char *p = t->peer_der;
      t->peer_len = S.i2d_X509(leaf, &p);
    }
  }
  X509 *cur = S.X509_STORE_CTX_get_current_cert(x);
  if (ok && S.X509_STORE_CTX_get_error_depth(x) == 0 && cur != NULL &&
      S.X509_check_ca(cur) == 1) {
    S.X509_STORE_CTX_set_error(x, RK__X509_V_ERR_INVALID_CA);
    ok = 0;
  }
  if (!ok && t != NULL && t->verify == 0)
    t->verify = S.X509_STORE_CTX_get_error(x);
  return ok;
}

/* ---- contexts ---------------------------------------------------------- */

/* OpenSSL's read buffer with read-ahead: four full records. */
#define RK__TLS_READ_BUF (4 * (16384 + 2048))

/* Contexts one process may have at once; handles index the table. */
#define RK__MAX_TLS_CTX 1024

static pthread_mutex_t g_ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *g_ctx[RK__MAX_TLS_CTX];

static int32_t rk__ctx_put(SSL_CTX *ctx) {
  pthread_mutex_lock(&g_ctx_lock);
  for (int i = 1; i < RK__MAX_TLS_CTX; i++) {
    if (g_ctx[i] == NULL) {
      g_ctx[i] = ctx;
      pthread_mutex_unlock(&g_ctx_lock);
      return i;
    }
  }
  pthread_mutex_unlock(&g_ctx_lock);
  S.SSL_CTX_free(ctx);
  return -EMFILE;
}

void *rk__tls_ctx_ref(int32_t id) {
  if (!g_loaded || id <= 0 || id >= RK__MAX_TLS_CTX)
    return NULL;
  pthread_mutex_lock(&g_ctx_lock);
  SSL_CTX *ctx = g_ctx[id];
  if (ctx != NULL)
    S.SSL_CTX_up_ref(ctx);
  pthread_mutex_unlock(&g_ctx_lock);
  return ctx;
}

void rk__tls_ctx_unref(void *ctx) {
  if (ctx != NULL)
    S.SSL_CTX_free(ctx);
}

int32_t rk_tls_ctx_free(int32_t id) {
  if (!g_loaded)
    return RK_ENOTLS;
  if (id <= 0 || id >= RK__MAX_TLS_CTX)
    return -ENOENT;
  pthread_mutex_lock(&g_ctx_lock);
  SSL_CTX *ctx = g_ctx[id];
  g_ctx[id] = NULL;
  pthread_mutex_unlock(&g_ctx_lock);
  if (ctx == NULL)
    return -ENOENT;
  S.SSL_CTX_free(ctx);
  return 0;
}

static SSL_CTX *rk__ctx_new(int server) {
  SSL_CTX *ctx =
      S.SSL_CTX_new(server ? S.TLS_server_method() : S.TLS_client_method());
  if (ctx == NULL)
    return NULL;
  S.SSL_CTX_ctrl(ctx, RK__SSL_CTRL_SET_MIN_PROTO_VERSION, RK__TLS1_2_VERSION,
                 NULL);
  /* partial writes: SSL_write returns what went out, like write(2); a retry
   * may come from a buffer that moved (after a hook resumed) */
  S.SSL_CTX_ctrl(ctx, RK__SSL_CTRL_MODE,
                 RK__SSL_MODE_ENABLE_PARTIAL_WRITE |
                     RK__SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                     RK__SSL_MODE_RELEASE_BUFFERS,
                 NULL);
  /* read ahead into a buffer of several records: one read(2) for a burst
   * of records instead of two per record (header, then body) */
  S.SSL_CTX_ctrl(ctx, RK__SSL_CTRL_SET_READ_AHEAD, 1, NULL);
  S.SSL_CTX_set_default_read_buffer_len(ctx, RK__TLS_READ_BUF);
  /* a FIN without close_notify is an end, as on the runtimes' TLS; no
   * renegotiation (a client-driven CPU sink on a server) */
  S.SSL_CTX_set_options(ctx, RK__SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 RK__SSL_OP_NO_RENEGOTIATION);
  /* TLS 1.3: AES-128-GCM first (OpenSSL puts AES-256 first), as browsers,
   * Go and ssh's aes128-gcm do: four fewer AES rounds per block, and the
   * strength TLS asks of it; a server takes the client's order */
  S.SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:"
                                  "TLS_AES_256_GCM_SHA384:"
                                  "TLS_CHACHA20_POLY1305_SHA256");
  return ctx;
}

int32_t rk_tls_server_ctx(const char *cert_pem, const char *key_pem,
                          char *err, int32_t cap) {
  if (err != NULL && cap > 0)
    err[0] = '\0';
  if (!rk__tls_ready()) {
    if (err != NULL && cap > 0)
      snprintf(err, (size_t)cap, "%s", g_reason);
    return RK_ENOTLS;
  }
  if (cert_pem == NULL || key_pem == NULL)
    return -EINVAL;
  S.ERR_clear_error();
  SSL_CTX *ctx = rk__ctx_new(1);
  if (ctx == NULL) {
    rk__tls_errtext(err, cap, "cannot make a TLS context");
    return -ENOMEM;
  }
  int32_t r = RK_ETLS;
  const char *what = NULL;
  BIO *bio = S.BIO_new_mem_buf(cert_pem, -1);
  X509 *leaf = bio != NULL ? S.PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  if (leaf == NULL || S.SSL_CTX_use_certificate(ctx, leaf) != 1) {
    what = "the certificate is not PEM";
    goto out;
  }
  /* the rest of the chain, in order; the context takes each one */
  for (;;) {
    X509 *x = S.PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (x == NULL)
      break;
    if (S.SSL_CTX_ctrl(ctx, RK__SSL_CTRL_EXTRA_CHAIN_CERT, 0, x) != 1) {
      S.X509_free(x);
      what = "a chain certificate was refused";
      goto out;
    }
  }
  S.ERR_clear_error(); /* the end of the PEM text is an "error" */
  S.BIO_free(bio);
  bio = S.BIO_new_mem_buf(key_pem, -1);
  EVP_PKEY *pk =
      bio != NULL ? S.PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  if (pk == NULL) {
    what = "the key is not PEM (or is encrypted)";
    goto out;
  }
  int ok = S.SSL_CTX_use_PrivateKey(ctx, pk) == 1 &&
           S.SSL_CTX_check_private_key(ctx) == 1;
  S.EVP_PKEY_free(pk);
  if (!ok) {
    what = "the key does not match the certificate";
    goto out;
  }
  r = 0;
out:
  if (leaf != NULL)
    S.X509_free(leaf); /* the context holds its own reference */
  if (bio != NULL)
    S.BIO_free(bio);
  if (r != 0) {
    if (err != NULL && cap > 0) {
      char detail[256];
      rk__tls_errtext(detail, sizeof detail, "");
      snprintf(err, (size_t)cap, "%s%s%s", what, detail[0] ? ": " : "",
               detail);
    }
    S.SSL_CTX_free(ctx);
    return r;
  }
  return rk__ctx_put(ctx);
}

int32_t rk_tls_client_ctx(const char *ca_pem, int32_t verify, char *err,
                          int32_t cap) {
  if (err != NULL && cap > 0)
    err[0] = '\0';
  if (!rk__tls_ready()) {
    if (err != NULL && cap > 0)
      snprintf(err, (size_t)cap, "%s", g_reason);
    return RK_ENOTLS;
  }
  S.ERR_clear_error();
  SSL_CTX *ctx = rk__ctx_new(0);
  if (ctx == NULL) {
    rk__tls_errtext(err, cap, "cannot make a TLS context");
    return -ENOMEM;
  }
  if (ca_pem != NULL && ca_pem[0]) {
    X509_STORE *store = S.SSL_CTX_get_cert_store(ctx);
    BIO *bio = S.BIO_new_mem_buf(ca_pem, -1);
    int n = 0;
    for (X509 *x; bio != NULL &&
                  (x = S.PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL;) {
      n += S.X509_STORE_add_cert(store, x) == 1;
      S.X509_free(x);
    }
    if (bio != NULL)
      S.BIO_free(bio);
    S.ERR_clear_error();
    if (n == 0) {
      if (err != NULL && cap > 0)
        snprintf(err, (size_t)cap, "no certificate in the CA PEM text");
      S.SSL_CTX_free(ctx);
      return -EINVAL;
    }
  } else {
    S.SSL_CTX_set_default_verify_paths(ctx);
    S.ERR_clear_error();
  }
  S.SSL_CTX_set_verify(ctx, verify ? RK__SSL_VERIFY_PEER : RK__SSL_VERIFY_NONE,
                       (void *)rk__tls_verify_cb);
  return rk__ctx_put(ctx);
}

int32_t rk_tls_stats(double *out) {
  out[0] = (double)RK__LOAD(&g_handshakes);
  out[1] = (double)RK__LOAD(&g_failures);
  out[2] = (double)RK__LOAD(&g_sessions);
  out[3] = (double)RK__LOAD(&g_bytes_in);
  out[4] = (double)RK__LOAD(&g_bytes_out);
  out[5] = g_loaded;
  return 0;
}

/* ---- one TLS side: the transport seam ---------------------------------- */

rk__tls *rk__tls_new(void *ctx, int fd, int server, const char *servername) {
  if (ctx == NULL || !g_loaded)
    return NULL;
  rk__tls *t = calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  t->ssl = S.SSL_new(ctx);
  if (t->ssl == NULL || S.SSL_set_fd(t->ssl, fd) != 1) {
    if (t->ssl != NULL)
      S.SSL_free(t->ssl);
    S.ERR_clear_error();
    free(t);
    return NULL;
  }
  S.SSL_set_ex_data(t->ssl, 0, t); /* for rk__tls_verify_cb */
  if (server) {
    S.SSL_set_accept_state(t->ssl);
  } else {
    /* names from the subjectAltName only, as webpki (no CN fallback) */
    S.X509_VERIFY_PARAM_set_hostflags(S.SSL_get0_param(t->ssl),
                                      RK__X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    if (servername != NULL && servername[0]) {
      /* SNI for names only (RFC 6066: not for IP literals); the name or
       * address the certificate must be for */
      unsigned char tmp[16];
      int is_ip = inet_pton(AF_INET, servername, tmp) == 1 ||
                  inet_pton(AF_INET6, servername, tmp) == 1;
      if (is_ip) {
        S.X509_VERIFY_PARAM_set1_ip_asc(S.SSL_get0_param(t->ssl), servername);
      } else {
        S.SSL_ctrl(t->ssl, RK__SSL_CTRL_SET_TLSEXT_HOSTNAME,
                   RK__TLSEXT_NAMETYPE_host_name, (void *)servername);
        S.SSL_set1_host(t->ssl, servername);
      }
    }
    S.SSL_set_connect_state(t->ssl);
  }
  RK__ADD(&g_sessions, 1);
  return t;
}

void rk__tls_free(rk__tls *t) {
  if (t == NULL)
    return;
  S.SSL_free(t->ssl);
  S.ERR_clear_error();
  RK__ADD(&g_sessions, -1);
  free(t->peer_der);
  free(t);
}

static void rk__tls_check_done(rk__tls *t) {
  if (!t->done && S.SSL_is_init_finished(t->ssl)) {
    t->done = 1;
    RK__ADD(&g_handshakes, 1);
  }
}

/* What a failed SSL call (result r) means: -EAGAIN with *want set, 0 for
 * the end of the peer's stream (reads only), or a negative error. */
static int rk__tls_result(rk__tls *t, int r, uint32_t *want, int reading) {
  int e = S.SSL_get_error(t->ssl, r);
  int sys = errno;
  switch (e) {
  case RK__SSL_ERROR_WANT_READ:
    *want = EPOLLIN;
    return -EAGAIN;
  case RK__SSL_ERROR_WANT_WRITE:
    *want = EPOLLOUT;
    return -EAGAIN;
  case RK__SSL_ERROR_ZERO_RETURN:
    S.ERR_clear_error();
    return reading ? 0 : -EPIPE;
  case RK__SSL_ERROR_SYSCALL:
    S.ERR_clear_error();
    if (sys == 0 || sys == EAGAIN)
      return reading ? 0 : -EPIPE; /* a bare EOF */
    return -sys;
  default: {
    long v = S.SSL_get_verify_result(t->ssl);
    S.ERR_clear_error();
    if (!t->failed && !t->done) {
      t->failed = 1;
      RK__ADD(&g_failures, 1);
    }
    if (v != RK__X509_V_OK || t->verify != 0) {
      if (t->verify == 0)
        t->verify = (int)v; /* rk__tls_verify_text says why */
      return RK_ECERT_UNTRUSTED;
    }
    return RK_ETLS;
  }
  }
}

ssize_t rk__tls_read(rk__tls *t, void *buf, size_t len, uint32_t *want) {
  if (len > INT32_MAX)
    len = INT32_MAX;
  errno = 0; /* SSL_ERROR_SYSCALL with errno 0: a bare EOF */
  int r = S.SSL_read(t->ssl, buf, (int)len);
  rk__tls_check_done(t);
  if (r > 0) {
    RK__ADD(&g_bytes_in, (uint64_t)r);
    return r;
  }
  return rk__tls_result(t, r, want, 1);
}

ssize_t rk__tls_write(rk__tls *t, const void *buf, size_t len,
                      uint32_t *want) {
  if (len > INT32_MAX)
    len = INT32_MAX;
  errno = 0;
  int r = S.SSL_write(t->ssl, buf, (int)len);
  rk__tls_check_done(t);
  if (r > 0) {
    RK__ADD(&g_bytes_out, (uint64_t)r);
    return r;
  }
  return rk__tls_result(t, r, want, 0);
}

int rk__tls_handshake(rk__tls *t, uint32_t *want) {
  errno = 0;
  int r = S.SSL_do_handshake(t->ssl);
  rk__tls_check_done(t);
  if (r == 1)
    return 0;
  int e = rk__tls_result(t, r, want, 1);
  if (e == -EAGAIN)
    return e;
  if (!t->failed) { /* the peer went away, or its socket failed */
    t->failed = 1;
    RK__ADD(&g_failures, 1);
  }
  return e == 0 ? RK_ETLS : e; /* an EOF before the end of a handshake */
}

int rk__tls_shutdown(rk__tls *t, uint32_t *want) {
  if (t->shut_sent)
    return 0;
  if (!t->done) {
    /* no session to close (the peer never finished its handshake) */
    t->shut_sent = 1;
    return 0;
  }
  errno = 0;
  int r = S.SSL_shutdown(t->ssl);
  if (r >= 0) {
    t->shut_sent = 1;
    return 0;
  }
  int e = rk__tls_result(t, r, want, 0);
  if (e == -EAGAIN)
    return e;
  t->shut_sent = 1; /* the socket failed: its error shows elsewhere */
  return 0;
}

int rk__tls_pending(const rk__tls *t) { return S.SSL_has_pending(t->ssl); }

/* A bulk side's reads: records come whole from a buffer below OpenSSL,
 * filled with one read(2) of this size. (With OpenSSL's own read-ahead,
 * OpenSSL 3.0 moves what is left of its buffer to the front before each
 * record: with k records per read that copies each byte (k - 1) / 2 times.
 * The buffer copies each byte once.) */
#define RK__TLS_BULK_RBUF (256 * 1024)

void rk__tls_bulk(rk__tls *t) {
  S.SSL_ctrl(t->ssl, RK__SSL_CTRL_CLEAR_MODE, RK__SSL_MODE_RELEASE_BUFFERS,
             NULL);
  BIO *sock = S.SSL_get_rbio(t->ssl);
  BIO *buf = S.BIO_new(S.BIO_f_buffer());
  int which = 0; /* the read buffer's size (BIO_set_read_buffer_size) */
  if (sock == NULL || buf == NULL ||
      S.BIO_ctrl(buf, RK__BIO_C_SET_BUFF_SIZE, RK__TLS_BULK_RBUF, &which) !=
          1) {
    if (buf != NULL)
      S.BIO_free(buf);
    S.ERR_clear_error();
    /* reads stay OpenSSL's, with read-ahead into a larger buffer */
    S.SSL_set_default_read_buffer_len(t->ssl, 2 * RK__TLS_READ_BUF);
    return;
  }
  S.BIO_up_ref(sock); /* the chain's reference; SSL_set0_rbio drops the one
                         it held as the read side */
  S.BIO_push(buf, sock);
  S.SSL_set0_rbio(t->ssl, buf);
  /* OpenSSL reads a record's header, then its body, from the buffer */
  S.SSL_ctrl(t->ssl, RK__SSL_CTRL_SET_READ_AHEAD, 0, NULL);
  S.SSL_set_default_read_buffer_len(t->ssl, 0);
}

int rk__tls_batch_writes(rk__tls *t, int size) {
  BIO *sock = S.SSL_get_wbio(t->ssl);
  BIO *buf = S.BIO_new(S.BIO_f_buffer());
  int which = 1; /* the write buffer's size (BIO_set_write_buffer_size) */
  if (sock == NULL || buf == NULL ||
      S.BIO_ctrl(buf, RK__BIO_C_SET_BUFF_SIZE, size, &which) != 1) {
    if (buf != NULL)
      S.BIO_free(buf);
    S.ERR_clear_error();
    return -ENOMEM; /* writes stay unbatched */
  }
  S.BIO_up_ref(sock); /* the chain's reference; SSL_set0_wbio drops the
                         one it held as the write side */
  S.BIO_push(buf, sock);
  S.SSL_set0_wbio(t->ssl, buf);
  t->batched = 1;
  return 0;
}

int rk__tls_flush(rk__tls *t, uint32_t *want) {
  if (!t->batched)
    return 0;
  BIO *b = S.SSL_get_wbio(t->ssl);
  if (S.BIO_ctrl(b, RK__BIO_CTRL_WPENDING, 0, NULL) <= 0)
    return 0;
  errno = 0;
  if (S.BIO_ctrl(b, RK__BIO_CTRL_FLUSH, 0, NULL) > 0)
    return 0;
  if (S.BIO_test_flags(b, RK__BIO_FLAGS_SHOULD_RETRY)) {
    *want = EPOLLOUT;
    return -EAGAIN;
  }
  S.ERR_clear_error();
  return errno != 0 ? -errno : -EPIPE;
}

int rk__tls_established(const rk__tls *t) { return t->done; }

const char *rk__tls_verify_text(const rk__tls *t) {
  return t->verify != 0 ? S.X509_verify_cert_error_string(t->verify) : NULL;
}

/* ---- why a certificate failed, for the host ------------------------------ */

/* Symbolic names of the verification errors the host's policy tells apart
 * (the names Node and Bun report); others go as OpenSSL's words. */
static const struct {
  int code;
  const char *name;
} rk__x509_names[] = {
    {9, "CERT_NOT_YET_VALID"},
    {10, "CERT_HAS_EXPIRED"},
    {18, "DEPTH_ZERO_SELF_SIGNED_CERT"},
    {19, "SELF_SIGNED_CERT_IN_CHAIN"},
    {20, "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"},
    {21, "UNABLE_TO_VERIFY_LEAF_SIGNATURE"},
    {62, "HOSTNAME_MISMATCH"},
    {64, "IP_ADDRESS_MISMATCH"},
    {RK__X509_V_ERR_INVALID_CA, "INVALID_CA"},
};

/* Failures kept for the host to read once, newest over oldest: one per
 * connection that ended with RK_ECERT_UNTRUSTED (read right after its
 * RK_EV_CLOSED), so a host that never reads holds this many at most. */
#define RK__KEPT_FAILURES 32

static struct {
  int32_t engine, id;
  char said[96];
  uint8_t *der;
  int32_t len;
} g_kept[RK__KEPT_FAILURES];
static unsigned g_kept_next;
static pthread_mutex_t g_kept_lock = PTHREAD_MUTEX_INITIALIZER;

void rk__tls_keep_failure(int32_t engine, int32_t id, rk__tls *t) {
  if (t == NULL || t->verify == 0)
    return;
  const char *said = NULL;
  for (size_t i = 0; i < sizeof rk__x509_names / sizeof rk__x509_names[0]; i++)
    if (rk__x509_names[i].code == t->verify)
      said = rk__x509_names[i].name;
  if (said == NULL)
    said = S.X509_verify_cert_error_string(t->verify);
  pthread_mutex_lock(&g_kept_lock);
  unsigned k = g_kept_next++ % RK__KEPT_FAILURES;
  free(g_kept[k].der);
  g_kept[k].engine = engine;
  g_kept[k].id = id;
  snprintf(g_kept[k].said, sizeof g_kept[k].said, "%s", said);
  g_kept[k].der = t->peer_der; /* taken over */
  g_kept[k].len = t->peer_der != NULL ? t->peer_len : 0;
  t->peer_der = NULL;
  pthread_mutex_unlock(&g_kept_lock);
}

int32_t rk_tls_cert_failure(int32_t h, int32_t id, char *said, int32_t said_cap,
                            uint8_t *der, int32_t cap) {
  int32_t r = -ENOENT;
  pthread_mutex_lock(&g_kept_lock);
  for (int k = 0; k < RK__KEPT_FAILURES; k++) {
    if (g_kept[k].id != id || g_kept[k].engine != h || g_kept[k].id == 0)
      continue;
    r = g_kept[k].len;
    if (said != NULL && said_cap > 0)
      snprintf(said, (size_t)said_cap, "%s", g_kept[k].said);
    if (der != NULL && g_kept[k].der != NULL)
      memcpy(der, g_kept[k].der, (size_t)(r < cap ? r : cap));
    if (r <= cap) { /* read: forget it */
      free(g_kept[k].der);
      g_kept[k].der = NULL;
      g_kept[k].id = 0;
    }
    break;
  }
  pthread_mutex_unlock(&g_kept_lock);
  return r;
}
