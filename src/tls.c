/*
 * TLS with OpenSSL: one SSL_CTX per tls:// listener, built when the server is
 * created, one client SSL_CTX per distinct set of evn_connect options, built
 * on first use and kept until the server is freed, and one SSL per
 * connection, driven without blocking by conn.c.
 *
 * OpenSSL reaches the socket through a small BIO of evn's own instead of
 * SSL_set_fd(): OpenSSL's socket BIO writes with write(2), which raises
 * SIGPIPE when the peer has gone, and evn promises never to. This one sends
 * with MSG_NOSIGNAL and otherwise behaves like the socket BIO.
 *
 * OpenSSL's per-thread error queue must be empty before each I/O call for
 * SSL_get_error() to be right, and the application may use OpenSSL on the
 * loop thread too, so every call here clears it first and leaves it empty.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef BIO_FLAGS_IN_EOF
#define BIO_FLAGS_IN_EOF 0x800
#endif

/* The alpn= option is at most 127 characters; its wire form is one longer. */
#define ALPN_SIZE 130

struct evn__tls_ctx {
    SSL_CTX *ctx;
    /* The server's ALPN list, in preference order: in wire format (each name
     * preceded by its length) for the selection, and as NUL-terminated
     * names for evn_conn_alpn(). */
    unsigned char alpn_wire[ALPN_SIZE];
    unsigned alpn_len;
    char alpn_names[ALPN_SIZE];
};

/* Returned by a read after the bytes of an earlier one: end of input. */
#define STASH_EOF 1

struct evn__tls {
    SSL *ssl;
    const struct evn__tls_ctx *tc;
    /* What a read ran into after it had bytes to return (an end of input, an
     * error, a need to write); the next read reports it. 0: nothing. */
    int stash;
    bool client; /* made by evn_connect */
    bool dead;   /* a fatal TLS or socket error: no close_notify may follow */
};

/*
 * What the TLS calls return besides byte counts and negative errno values:
 * the operation must be retried once the socket is readable or writable.
 */
#define WANT_READ (-0x10001)
#define WANT_WRITE (-0x10002)

static const struct evn__transport tls_transport;

/* ---- the socket BIO ---- */

static int bio_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = recv(bio_fd(b), buf, (size_t)len, 0);
    if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing is buffered here */
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* The SSL ex_data slot holding a client connection's struct evn__tls_dest
 * (malloc'ed, freed with the SSL). */
static int dest_index = -1;

/* Where a client connection goes, for the session cache: its loop's cache,
 * and the key "host|port|sni" within it. */
struct evn__tls_dest {
    int loop;
    char key[];
};

static void dest_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    evn__free(ptr);
}

/* Made once per process and kept: every SSL of every server shares them. */
static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "evn socket");
    if (m && (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
              !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create))) {
        BIO_meth_free(m);
        m = NULL;
    }
    bio_method = m;
    dest_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, dest_free);
}

/* ---- contexts ---- */

/* err := "url: what 'path': OpenSSL's first reason"; returns rc. */
static int ssl_fail(char *err, size_t errlen, const char *url, const char *what, const char *path,
                    int rc)
{
    char reason[256];
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    else
        snprintf(reason, sizeof reason, "unknown OpenSSL error");
    ERR_clear_error();
    /* A message longer than err is cut short, which is fine (the reason's
     * length is given at run time so that the compiler does not warn). */
    int rlen = (int)strlen(reason);
    if (path)
        snprintf(err, errlen, "%s: %s '%s': %.*s", url, what, path, rlen, reason);
    else
        snprintf(err, errlen, "%s: %s: %.*s", url, what, rlen, reason);
    return rc;
}

/* A file named in the URL must exist and be readable; OpenSSL's own message
 * for a missing file is less plain than the system's. */
static int check_file(const char *url, const char *what, const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) == 0)
        return 0;
    int e = errno;
    snprintf(err, errlen, "%s: %s '%s': %s", url, what, path, strerror(e));
    return -e;
}

/*
 * Trust the CA certificates in the PEM file path (ca=). OpenSSL fills in a
 * certificate's cached extension data the first time it is checked, under a
 * lock of that certificate, but reads it later without one; the loops of a
 * server verifying peers at once would race on that. So it is filled in
 * here, before the context is shared.
 */
static int load_ca(SSL_CTX *ctx, const char *url, const char *path, char *err, size_t errlen)
{
    int rc = check_file(url, "ca", path, err, errlen);
    if (rc < 0)
        return rc;
    if (SSL_CTX_load_verify_locations(ctx, path, NULL) != 1)
        return ssl_fail(err, errlen, url, "cannot use ca", path, -EINVAL);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (x)
            X509_get_extension_flags(x);
    }
    return 0;
}

/* "h2,http/1.1" -> wire format and NUL-separated names. */
static int parse_alpn(struct evn__tls_ctx *tc, const char *list, const char *url, char *err,
                      size_t errlen)
{
    size_t n = strlen(list);
    if (n == 0)
        return 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && list[i] != ',')
            continue;
        size_t len = i - start;
        if (len == 0 || len > 255) {
            snprintf(err, errlen, "%s: empty protocol name in alpn list '%s'", url, list);
            return -EINVAL;
        }
        tc->alpn_wire[tc->alpn_len] = (unsigned char)len;
        memcpy(tc->alpn_wire + tc->alpn_len + 1, list + start, len);
        memcpy(tc->alpn_names + tc->alpn_len, list + start, len);
        tc->alpn_names[tc->alpn_len + len] = '\0';
        tc->alpn_len += (unsigned)len + 1;
        start = i + 1;
    }
    return 0;
}

/*
 * The server's preference wins: the first protocol of its list that the
 * client also offers. A client that offers none of them gets no protocol
 * (rather than a failed handshake), and the application sees NULL.
 */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct evn__tls_ctx *tc = arg;
    for (unsigned i = 0; i < tc->alpn_len; i += 1u + tc->alpn_wire[i]) {
        const unsigned char *name = tc->alpn_wire + i + 1;
        unsigned nlen = tc->alpn_wire[i];
        for (unsigned j = 0; j < inlen && j + 1u + in[j] <= inlen; j += 1u + in[j]) {
            if (in[j] == nlen && memcmp(in + j + 1, name, nlen) == 0) {
                *out = name;
                *outlen = (unsigned char)nlen;
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* The certificate chain and private key u names, for a server or a client. */
static int use_cert_key(SSL_CTX *ctx, const struct evn__url *u, const char *url, char *err,
                        size_t errlen)
{
    int rc;
    if ((rc = check_file(url, "cert", u->cert, err, errlen)) < 0 ||
        (rc = check_file(url, "key", u->key, err, errlen)) < 0)
        return rc;
    if (SSL_CTX_use_certificate_chain_file(ctx, u->cert) != 1)
        return ssl_fail(err, errlen, url, "cannot use cert", u->cert, -EINVAL);
    if (SSL_CTX_use_PrivateKey_file(ctx, u->key, SSL_FILETYPE_PEM) != 1)
        return ssl_fail(err, errlen, url, "cannot use key", u->key, -EINVAL);
    if (SSL_CTX_check_private_key(ctx) != 1) {
        char what[300];
        snprintf(what, sizeof what, "cert '%s' and key", u->cert);
        ssl_fail(err, errlen, url, what, u->key, -EINVAL);
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (the key does not match the certificate)");
        return -EINVAL;
    }
    return 0;
}

/*
 * TLS 1.3 suites, AES-128-GCM first (OpenSSL's own order starts with
 * AES-256-GCM). Both are strong; the 128-bit suite with its SHA-256 key
 * schedule costs 4% fewer instructions per resumed handshake (callgrind,
 * 2.35M against 2.46M) and less per byte. The server's order decides.
 */
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

static int setup_ctx(struct evn__tls_ctx *tc, const struct evn__url *u, const char *url, char *err,
                     size_t errlen)
{
    SSL_CTX *ctx = tc->ctx;
    int rc;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_ciphersuites(ctx, tls13_suites);
    /* A peer that closes the TCP connection without close_notify ends the
     * input as a plain socket would; many clients do. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Take whole bursts of records per read(2), not a header and a body each;
     * evn__tls_pending() covers what this leaves inside OpenSSL. */
    SSL_CTX_set_read_ahead(ctx, 1);
    static const unsigned char sid[] = "evn";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);

    if ((rc = use_cert_key(ctx, u, url, err, errlen)) < 0)
        return rc;

    if (u->verify != EVN__VERIFY_NONE && !u->ca[0]) {
        snprintf(err, errlen, "%s: verify=%s needs ca= (the CAs to check client certificates)", url,
                 u->verify == EVN__VERIFY_REQUIRE ? "require" : "optional");
        return -EINVAL;
    }
    if (u->ca[0]) {
        if ((rc = load_ca(ctx, url, u->ca, err, errlen)) < 0)
            return rc;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(u->ca);
        if (!names)
            return ssl_fail(err, errlen, url, "no CA names in ca", u->ca, -EINVAL);
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (u->verify == EVN__VERIFY_OPTIONAL)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    else if (u->verify == EVN__VERIFY_REQUIRE)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);

    if (tc->alpn_len)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, tc);
    return 0;
}

int evn__tls_ctx_new(struct evn__listener *l, const char *url, char *err, size_t errlen)
{
    pthread_once(&bio_once, bio_method_init);
    if (!bio_method) {
        snprintf(err, errlen, "%s: cannot set up OpenSSL", url);
        return -ENOMEM;
    }
    struct evn__tls_ctx *tc = evn__calloc(1, sizeof *tc);
    if (!tc)
        return -ENOMEM;
    int rc = parse_alpn(tc, l->url.alpn, url, err, errlen);
    if (rc == 0) {
        ERR_clear_error();
        tc->ctx = SSL_CTX_new(TLS_server_method());
        rc = tc->ctx ? setup_ctx(tc, &l->url, url, err, errlen)
                     : ssl_fail(err, errlen, url, "SSL_CTX_new", NULL, -ENOMEM);
    }
    if (rc < 0) {
        ERR_clear_error();
        SSL_CTX_free(tc->ctx);
        evn__free(tc);
        return rc;
    }
    l->tls = tc;
    return 0;
}

void evn__tls_ctx_free(struct evn__listener *l)
{
    if (!l->tls)
        return;
    SSL_CTX_free(l->tls->ctx);
    evn__free(l->tls);
    l->tls = NULL;
}

/* ---- sessions ---- */

static struct evn__tls *tls_of(const struct evn_conn *c)
{
    return c->x->tls;
}

static int tls_new(struct evn_conn *c, struct evn__listener *l)
{
    struct evn__tls *t = evn__calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    ERR_clear_error();
    SSL *ssl = SSL_new(l->tls->ctx);
    BIO *b = ssl ? BIO_new(bio_method) : NULL;
    if (!b) {
        SSL_free(ssl);
        evn__free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_data(b, (void *)(intptr_t)c->io.fd);
    SSL_set_bio(ssl, b, b);
    SSL_set_accept_state(ssl);
    t->ssl = ssl;
    t->tc = l->tls;
    evn__tls_attach(c, t);
    return 0;
}

void evn__tls_attach(struct evn_conn *c, struct evn__tls *t)
{
    c->x->tls = t;
    c->x->tp = &tls_transport;
    c->flags |= EVN__C_XTP;
}

/*
 * Classify a failed OpenSSL call; e is errno as the call left it. A fatal
 * error marks the session so that no close_notify follows (OpenSSL forbids
 * SSL_shutdown after one).
 */
static int failure(struct evn__tls *t, int r, int e)
{
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        t->dead = true;
        return e && e != EAGAIN ? -e : -ECONNRESET;
    default:
        ERR_clear_error();
        t->dead = true;
        return -EPROTO;
    }
}

/*
 * A client handshake failed with rc: say why in evn_errmsg(), which the
 * closed callback that follows can read, and report a certificate that did
 * not verify as -EACCES rather than as a protocol error. reason is OpenSSL's
 * first queued error, 0 if none.
 */
static int client_failure(struct evn_conn *c, int rc, unsigned long reason)
{
    SSL *ssl = tls_of(c)->ssl;
    char peer[64], why[256];
    if (evn_addr_str(&c->peer.sa, c->peerlen, peer, sizeof peer) < 0)
        snprintf(peer, sizeof peer, "the server");
    long v = SSL_get_verify_result(ssl);
    if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) && v != X509_V_OK) {
        evn__set_errmsg("TLS handshake with %s: certificate verify failed: %s", peer,
                        X509_verify_cert_error_string(v));
        return -EACCES;
    }
    if (reason)
        ERR_error_string_n(reason, why, sizeof why);
    else
        snprintf(why, sizeof why, "%s", evn_strerror(rc));
    evn__set_errmsg("TLS handshake with %s: %s", peer, why);
    return rc;
}

/* One handshake step: 1 when complete, WANT_*, or -errno. */
static int handshake_step(struct evn_conn *c)
{
    struct evn__tls *t = tls_of(c);
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 1;
    int e = errno;
    unsigned long reason = ERR_peek_error();
    int rc = failure(t, r, e);
    /* The peer left before the handshake was through. */
    if (rc == 0)
        rc = -ECONNABORTED;
    if (t->client && rc != WANT_READ && rc != WANT_WRITE)
        rc = client_failure(c, rc, reason);
    return rc;
}

static bool tls_pending(const struct evn_conn *c)
{
    const struct evn__tls *t = tls_of(c);
    return t->stash != 0 || SSL_has_pending(t->ssl);
}

/*
 * A handshake step. When it completes, the handshake deadline is cleared
 * and opened fires; input that came with the handshake's last flight may
 * already sit decrypted inside OpenSSL, so it is read at the end of the
 * turn. A handshake that fails closes the connection: silently if it was
 * accepted, with closed and the reason if evn_connect made it.
 */
static void handshake(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    int rc = handshake_step(c);
    if (rc == WANT_READ || rc == WANT_WRITE) {
        evn__conn_tpwait(c, rc == WANT_READ ? EVN__READ : EVN__WRITE);
        return;
    }
    if (rc < 0) {
        evn__conn_close(c, rc);
        return;
    }
    evn_id id = evn_conn_id(c);
    evn__conn_deadline(c, 0);
    c->flags &= ~(uint32_t)EVN__C_OPENING;
    evn__conn_tpwait(c, 0);
    evn__conn_opened(c);
    c = evn__conn_lookup(loop, id);
    if (c && !(c->flags & (EVN__C_CLOSING | EVN__C_DETACHING)) && tls_pending(c))
        evn__conn_reread(c);
}

/* The handshake, until opened; after it, a read that had to write first
 * and now can: the connection goes on as the socket allows. */
static void tls_ready(struct evn_conn *c, int mask)
{
    if (c->flags & EVN__C_OPENING) {
        handshake(c);
        return;
    }
    evn__conn_tpwait(c, 0);
    evn__conn_ready(c, EVN__READ | EVN__WRITE);
}

void evn__tls_accept(struct evn_conn *c, struct evn__listener *l)
{
    /* Not opened until the handshake is done: a failure before is silent. */
    c->flags |= EVN__C_OPENING;
    evn__conn_tpwait(c, EVN__READ);
    if (!evn__conn_ext(c) || tls_new(c, l) < 0 ||
        evn__conn_deadline(c, evn__tls_handshake_ms(c->loop->srv)) < 0) {
        evn__conn_close(c, -ENOMEM);
        return;
    }
    /* The ClientHello has often arrived with the connection: try at once. */
    handshake(c);
}

void evn__tls_connected(struct evn_conn *c)
{
    c->flags |= EVN__C_OPENING;
    evn__conn_set_flags(c, 0, EVN__C_CONNECTING);
    evn__conn_tpwait(c, EVN__WRITE);
    handshake(c);
}

/*
 * Read plaintext into buf, as much as OpenSSL has or the socket gives without
 * blocking, up to len: bytes read, 0 at end of input, WANT_*, or -errno. A
 * condition met after some bytes were read is reported by the next call;
 * tls_pending() is then true.
 */
static ssize_t read_plain(struct evn__tls *t, char *buf, size_t len)
{
    if (t->stash) {
        int s = t->stash;
        t->stash = 0;
        return s == STASH_EOF ? 0 : s;
    }
    size_t total = 0;
    for (;;) {
        size_t want = len - total < INT_MAX ? len - total : INT_MAX;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read(t->ssl, buf + total, (int)want);
        if (r > 0) {
            total += (size_t)r;
            /* Another record may already be inside OpenSSL, where the poller
             * cannot see it: take it now while there is room. */
            if (total == len || !SSL_has_pending(t->ssl))
                return (ssize_t)total;
            continue;
        }
        int rc = failure(t, r, errno);
        if (total == 0)
            return rc;
        if (rc != WANT_READ)
            t->stash = rc == 0 ? STASH_EOF : rc;
        return (ssize_t)total;
    }
}

/* The transport's read, as read(2) reports. */
static ssize_t tls_read(struct evn_conn *c, char *buf, size_t len)
{
    ssize_t n = read_plain(tls_of(c), buf, len);
    if (n > 0) {
        /* The buffer filled with more inside OpenSSL, or the read ran into
         * the end after these bytes: go on at the end of the turn. */
        if (tls_pending(c))
            evn__conn_reread(c);
        return n;
    }
    if (n == 0)
        return 0;
    /* Reading before the socket takes the write would only spin. */
    if (n == WANT_WRITE)
        evn__conn_tpwait(c, EVN__WRITE);
    errno = n == WANT_READ || n == WANT_WRITE ? EAGAIN : (int)-n;
    return -1;
}

/*
 * Encrypt and send the first piece, as one or more records. A partial write
 * means records went out, not that the socket is full, so *want is what was
 * taken; a retry after the socket was full offers the same bytes again, at
 * least as many (clamping the same way each time keeps that). SSL_write
 * cannot want to read with renegotiation off; if it ever did, waiting for
 * writability would spin, so it is an error.
 */
static ssize_t tls_writev(struct evn_conn *c, const struct iovec *iov, int n, size_t *want)
{
    struct evn__tls *t = tls_of(c);
    int len = iov[0].iov_len < INT_MAX ? (int)iov[0].iov_len : INT_MAX;
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(t->ssl, iov[0].iov_base, len);
    if (r > 0) {
        *want = (size_t)r;
        return r;
    }
    int rc = failure(t, r, errno);
    errno = rc == WANT_WRITE ? EAGAIN : rc == WANT_READ ? EPROTO : rc == 0 ? EPIPE : -rc;
    return -1;
}

/* close_notify, once, without blocking (best effort). */
static void tls_shutdown(struct evn_conn *c)
{
    struct evn__tls *t = tls_of(c);
    if (t->dead || (c->flags & EVN__C_OPENING) || (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
        return;
    /* One try: a socket too full to take the alert gets none. */
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

static void tls_release(struct evn_conn *c, bool notify)
{
    if (notify)
        tls_shutdown(c);
    SSL_free(tls_of(c)->ssl);
    evn__free(c->x->tls);
    c->x->tls = NULL;
    evn__conn_set_tp(c, &evn__plain_transport);
}

static const struct evn__transport tls_transport = {
    .read = tls_read,
    .writev = tls_writev,
    .ready = tls_ready,
    .pending = tls_pending,
    .shutdown = tls_shutdown,
    .release = tls_release,
};

bool evn__tls_resumed(const struct evn_conn *c)
{
    return SSL_session_reused(tls_of(c)->ssl) == 1;
}

const char *evn__tls_alpn(const struct evn_conn *c)
{
    const unsigned char *p;
    unsigned int len;
    SSL_get0_alpn_selected(tls_of(c)->ssl, &p, &len);
    if (!p || !len)
        return NULL;
    const struct evn__tls_ctx *tc = tls_of(c)->tc;
    for (unsigned i = 0; i < tc->alpn_len; i += 1u + tc->alpn_wire[i])
        if (tc->alpn_wire[i] == len && memcmp(tc->alpn_wire + i + 1, p, len) == 0)
            return tc->alpn_names + i;
    return NULL;
}

/* ---- clients (evn_connect) ---- */

/*
 * Sessions to resume, per client context and per loop: the last one each
 * destination (address, port and sni=) gave, for up to EVN__TLS_SESSIONS
 * destinations, the oldest replaced first. A full handshake costs the client
 * a key exchange and a certificate check; a resumed one neither.
 *
 * Each loop has a cache of its own, used only on its thread, so an
 * SSL_SESSION never passes between threads and the cache needs no lock. The
 * price is one full handshake per loop and destination.
 */
#define EVN__TLS_SESSIONS 32

struct evn__tls_session {
    char *dest; /* "host|port|sni", or NULL for a free slot */
    SSL_SESSION *sess;
};

/* One loop's cache, and the slot the next new destination takes. */
struct evn__tls_cache {
    unsigned next;
    struct evn__tls_session e[EVN__TLS_SESSIONS];
};

/*
 * A client context, shared by every connection of the server made with the
 * same CA, certificate, key, verify and ALPN options. Loading a CA file (or
 * the system's store) costs milliseconds, so it happens once per option set,
 * not once per connection. The server name is per connection (SSL_set1_host),
 * and so is the session cache's key, since a session is only as good as the
 * name it was verified for.
 */
struct evn__tls_client {
    struct evn__tls_client *next;
    int verify;
    char ca[256], cert[256], key[256], alpn[128];
    struct evn__tls_ctx tc;
    /* One cache per loop of the server (NULL: no memory for them, so no
     * resumption). */
    struct evn__tls_cache *caches;
};

/* Guards every server's list: loops of one server may connect at once. */
static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER;

/* The entry for d in its loop's cache, or NULL. Loop thread only. */
static struct evn__tls_session *session_find(struct evn__tls_client *k,
                                             const struct evn__tls_dest *d)
{
    struct evn__tls_cache *cache = &k->caches[d->loop];
    for (int i = 0; i < EVN__TLS_SESSIONS; i++)
        if (cache->e[i].dest && strcmp(cache->e[i].dest, d->key) == 0)
            return &cache->e[i];
    return NULL;
}

/*
 * OpenSSL has a new session for a client connection: after the handshake
 * under TLS 1.2, and for each ticket the server sends under TLS 1.3. Keep it
 * for the connection's destination, in place of the one kept before. Returns
 * 1 when the reference is kept, as OpenSSL asks.
 */
static int session_new(SSL *ssl, SSL_SESSION *sess)
{
    struct evn__tls_client *k = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    const struct evn__tls_dest *d = SSL_get_ex_data(ssl, dest_index);
    if (!k || !k->caches || !d || !SSL_SESSION_is_resumable(sess))
        return 0;
    struct evn__tls_session *e = session_find(k, d);
    if (!e) {
        struct evn__tls_cache *cache = &k->caches[d->loop];
        e = &cache->e[cache->next];
        cache->next = (cache->next + 1) % EVN__TLS_SESSIONS;
        char *copy = evn__strdup(d->key);
        if (!copy)
            return 0;
        evn__free(e->dest);
        e->dest = copy;
    }
    SSL_SESSION_free(e->sess);
    e->sess = sess;
    return 1;
}

/*
 * Offer ssl the session kept for dest, if any. A TLS 1.3 ticket is used once
 * (RFC 8446 asks clients not to reuse one, so that connections cannot be
 * linked by it): it leaves the cache, and the server's next ticket takes its
 * place. A TLS 1.2 session stays for the next connection too.
 */
static void session_offer(struct evn__tls_client *k, SSL *ssl, const struct evn__tls_dest *d)
{
    struct evn__tls_session *e = k->caches ? session_find(k, d) : NULL;
    if (e && e->sess && SSL_set_session(ssl, e->sess) == 1 &&
        SSL_SESSION_get_protocol_version(e->sess) >= TLS1_3_VERSION) {
        SSL_SESSION_free(e->sess);
        e->sess = NULL;
    }
}

static bool same_options(const struct evn__tls_client *k, const struct evn__url *u)
{
    return k->verify == u->verify && strcmp(k->ca, u->ca) == 0 && strcmp(k->cert, u->cert) == 0 &&
           strcmp(k->key, u->key) == 0 && strcmp(k->alpn, u->alpn) == 0;
}

static int setup_client_ctx(struct evn__tls_ctx *tc, const struct evn__url *u, const char *url,
                            char *err, size_t errlen)
{
    SSL_CTX *ctx = tc->ctx;
    int rc;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    /* A CA given with verify=none is still read, so that a bad path is an
     * error whatever the verify mode. */
    if (u->ca[0]) {
        if ((rc = load_ca(ctx, url, u->ca, err, errlen)) < 0)
            return rc;
    } else if (u->verify == EVN__VERIFY_REQUIRE && SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return ssl_fail(err, errlen, url, "cannot load the system's CA certificates", NULL,
                        -EINVAL);
    }
    SSL_CTX_set_verify(ctx, u->verify == EVN__VERIFY_REQUIRE ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       NULL);
    if (u->cert[0] && (rc = use_cert_key(ctx, u, url, err, errlen)) < 0)
        return rc;
    /* Unlike most of OpenSSL, this one returns 0 on success. */
    if (tc->alpn_len && SSL_CTX_set_alpn_protos(ctx, tc->alpn_wire, tc->alpn_len) != 0)
        return ssl_fail(err, errlen, url, "cannot set alpn", u->alpn, -ENOMEM);
    /* Sessions are kept by evn (session_new), per destination; OpenSSL's
     * own client cache would not know which server one came from. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, session_new);
    return 0;
}

/* The server's context for u's options, made now if it is the first; NULL
 * with err set on failure (*rc the error). Called with clients_lock held. */
static struct evn__tls_client *client_ctx(struct evn_server *srv, const struct evn__url *u,
                                          const char *url, char *err, size_t errlen, int *rc)
{
    for (struct evn__tls_client *k = srv->tls_clients; k; k = k->next)
        if (same_options(k, u))
            return k;
    struct evn__tls_client *k = evn__calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "%s: out of memory", url);
        *rc = -ENOMEM;
        return NULL;
    }
    k->verify = u->verify;
    memcpy(k->ca, u->ca, sizeof k->ca);
    memcpy(k->cert, u->cert, sizeof k->cert);
    memcpy(k->key, u->key, sizeof k->key);
    memcpy(k->alpn, u->alpn, sizeof k->alpn);
    *rc = parse_alpn(&k->tc, u->alpn, url, err, errlen);
    if (*rc == 0) {
        ERR_clear_error();
        k->tc.ctx = SSL_CTX_new(TLS_client_method());
        *rc = k->tc.ctx ? setup_client_ctx(&k->tc, u, url, err, errlen)
                        : ssl_fail(err, errlen, url, "SSL_CTX_new", NULL, -ENOMEM);
        if (*rc == 0) {
            SSL_CTX_set_app_data(k->tc.ctx, k);
            /* No memory for the caches only means no resumption. */
            k->caches = evn__calloc((size_t)srv->nloops, sizeof *k->caches);
        }
    }
    if (*rc < 0) {
        ERR_clear_error();
        SSL_CTX_free(k->tc.ctx);
        evn__free(k);
        return NULL;
    }
    k->next = srv->tls_clients;
    srv->tls_clients = k;
    return k;
}

static bool is_ip(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int evn__tls_client_new(struct evn_server *srv, int loop, int fd, const struct evn__url *u,
                        const char *url, struct evn__tls **tp)
{
    char err[512];
    int rc = 0;
    pthread_once(&bio_once, bio_method_init);
    if (!bio_method || dest_index < 0) {
        evn__set_errmsg("%s: cannot set up OpenSSL", url);
        return -ENOMEM;
    }
    pthread_mutex_lock(&clients_lock);
    struct evn__tls_client *k = client_ctx(srv, u, url, err, sizeof err, &rc);
    pthread_mutex_unlock(&clients_lock);
    if (!k) {
        evn__set_errmsg("%s", err);
        return rc;
    }
    struct evn__tls *t = evn__calloc(1, sizeof *t);
    if (!t) {
        evn__set_errmsg("%s: out of memory", url);
        return -ENOMEM;
    }
    ERR_clear_error();
    SSL *ssl = SSL_new(k->tc.ctx);
    BIO *b = ssl ? BIO_new(bio_method) : NULL;
    if (!b) {
        SSL_free(ssl);
        evn__free(t);
        ERR_clear_error();
        evn__set_errmsg("%s: out of memory", url);
        return -ENOMEM;
    }
    BIO_set_data(b, (void *)(intptr_t)fd);
    SSL_set_bio(ssl, b, b);
    SSL_set_connect_state(ssl);
    /* SNI carries names only, never an address. The certificate must match
     * sni= if given, else the host of the URL: the address connected to,
     * or the host name looked up. */
    const char *name = u->sni[0] ? u->sni : u->host;
    bool ip = is_ip(name);
    bool ok = true;
    if (!ip && name[0])
        ok = SSL_set_tlsext_host_name(ssl, name) == 1;
    if (ok && u->verify == EVN__VERIFY_REQUIRE) {
        if (ip) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(ssl, name) == 1;
        }
    }
    if (!ok) {
        ssl_fail(err, sizeof err, url, "cannot use server name", name, -EINVAL);
        evn__set_errmsg("%s", err);
        SSL_free(ssl);
        evn__free(t);
        return -EINVAL;
    }
    /* Resume the last session this loop had with this destination, if
     * any. No memory for the key only means no resumption. */
    const char *where = u->proto == EVN__UNIX ? u->path : u->host;
    size_t klen = strlen(where) + strlen(u->sni) + 16;
    struct evn__tls_dest *d = evn__malloc(sizeof *d + klen);
    if (d) {
        d->loop = loop;
        snprintf(d->key, klen, "%s|%d|%s", where, u->port, u->sni);
        if (SSL_set_ex_data(ssl, dest_index, d) == 1) {
            session_offer(k, ssl, d);
        } else {
            evn__free(d);
            ERR_clear_error();
        }
    }
    t->ssl = ssl;
    t->tc = &k->tc;
    t->client = true;
    *tp = t;
    return 0;
}

void evn__tls_client_set_fd(struct evn__tls *t, int fd)
{
    BIO_set_data(SSL_get_rbio(t->ssl), (void *)(intptr_t)fd);
}

void evn__tls_client_discard(struct evn__tls *t)
{
    SSL_free(t->ssl);
    evn__free(t);
}

size_t evn__tls_clients_count(struct evn_server *srv)
{
    size_t n = 0;
    pthread_mutex_lock(&clients_lock);
    for (struct evn__tls_client *k = srv->tls_clients; k; k = k->next)
        n++;
    pthread_mutex_unlock(&clients_lock);
    return n;
}

void evn__tls_clients_free(struct evn_server *srv)
{
    struct evn__tls_client *k = srv->tls_clients;
    while (k) {
        struct evn__tls_client *next = k->next;
        for (int l = 0; k->caches && l < srv->nloops; l++)
            for (int i = 0; i < EVN__TLS_SESSIONS; i++) {
                SSL_SESSION_free(k->caches[l].e[i].sess);
                evn__free(k->caches[l].e[i].dest);
            }
        evn__free(k->caches);
        SSL_CTX_free(k->tc.ctx);
        evn__free(k);
        k = next;
    }
    srv->tls_clients = NULL;
}
