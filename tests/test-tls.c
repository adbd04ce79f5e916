/*
 * TLS listeners: real OpenSSL clients (and the openssl s_client command)
 * against tls:// listeners, with a throwaway certificate, key and client CA
 * made by the openssl command at start. Echo, including 20 MB both ways at
 * once; opened only after the handshake; ALPN; client certificates required
 * and optional; garbage, plain HTTP, hang-ups and silence during the
 * handshake close that connection only, without any event; bad certificate
 * and key files are errors at evn_server_new naming the file; half-close,
 * detach refused, no SIGPIPE, many connections without an fd left over.
 */
#include "harness.h"

#include <stdio.h>

#ifndef EVN_HAVE_TLS
int main(int argc, char **argv)
{
    th_init(argc, argv);
    th_skip("evn was built without TLS");
    return th_finish();
}
#else

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- files made at start ---- */

static char srv_cert[256], srv_key[256], other_key[256], other_rsa_key[256], ca_cert[256],
    cli_cert[256], cli_key[256], rogue_cert[256], rogue_key[256], junk_file[256];

static bool run_quiet(const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof full, "%s >/dev/null 2>&1", cmd);
    return system(full) == 0;
}

/* A server certificate (RSA, as most servers have), two keys that do not match
 * it (EC and RSA), a client CA with a client certificate, a self-signed client certificate
 * the CA never signed, and a file that is no PEM at all. */
static bool make_files(void)
{
    char cmd[2048], csr[256], serial[256];
    th_tmppath(srv_cert, sizeof srv_cert, "srv.pem");
    th_tmppath(srv_key, sizeof srv_key, "srv.key");
    th_tmppath(other_key, sizeof other_key, "other.key");
    th_tmppath(other_rsa_key, sizeof other_rsa_key, "other-rsa.key");
    th_tmppath(ca_cert, sizeof ca_cert, "ca.pem");
    th_tmppath(cli_cert, sizeof cli_cert, "client.pem");
    th_tmppath(cli_key, sizeof cli_key, "client.key");
    th_tmppath(rogue_cert, sizeof rogue_cert, "rogue.pem");
    th_tmppath(rogue_key, sizeof rogue_key, "rogue.key");
    th_tmppath(junk_file, sizeof junk_file, "junk.pem");
    th_tmppath(csr, sizeof csr, "client.csr");
    th_tmppath(serial, sizeof serial, "ca.srl");
    char ca_key[256];
    th_tmppath(ca_key, sizeof ca_key, "ca.key");
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
             "-subj /CN=localhost",
             srv_key, srv_cert);
    if (!run_quiet(cmd))
        return false;
    snprintf(cmd, sizeof cmd,
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s", other_key);
    if (!run_quiet(cmd))
        return false;
    snprintf(cmd, sizeof cmd,
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s", other_rsa_key);
    if (!run_quiet(cmd))
        return false;
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 %s -keyout %s -out %s -days 1 -subj /CN=evn-test-ca", ec, ca_key,
             ca_cert);
    if (!run_quiet(cmd))
        return false;
    snprintf(cmd, sizeof cmd, "openssl req %s -keyout %s -out %s -subj /CN=client", ec, cli_key,
             csr);
    if (!run_quiet(cmd))
        return false;
    snprintf(cmd, sizeof cmd,
             "openssl x509 -req -in %s -CA %s -CAkey %s -CAserial %s -CAcreateserial -out %s "
             "-days 1",
             csr, ca_cert, ca_key, serial, cli_cert);
    if (!run_quiet(cmd))
        return false;
    snprintf(cmd, sizeof cmd, "openssl req -x509 %s -keyout %s -out %s -days 1 -subj /CN=rogue", ec,
             rogue_key, rogue_cert);
    if (!run_quiet(cmd))
        return false;
    FILE *f = fopen(junk_file, "w");
    if (!f)
        return false;
    fputs("this is not a certificate\n", f);
    fclose(f);
    return true;
}

/* ---- SIGPIPE ---- */

/*
 * evn promises never to raise SIGPIPE. The clients here use OpenSSL's socket
 * BIO, whose write() raises one on the test's own thread when a server has
 * already closed (a close_notify after a reset, say): that one is not evn's,
 * and must not kill the test. One on any other thread (an evn loop's) is
 * counted; every subtest's server checks the count when it stops.
 */
static pthread_t main_thread;
static atomic_int loop_sigpipes;

static void on_sigpipe(int sig)
{
    (void)sig;
    if (!pthread_equal(pthread_self(), main_thread))
        atomic_fetch_add(&loop_sigpipes, 1);
}

static void catch_sigpipes(void)
{
    main_thread = pthread_self();
    struct sigaction sa = {.sa_handler = on_sigpipe};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

/* ---- the server ---- */

enum { ECHO, GREET, ECHO_CLOSE5, DETACH, BLAST, LINES, SHUT_FIRST };

struct state {
    int mode;
    th_counter opened, closed, datas, eofs;
    atomic_int close_err, is_tls, bytes, detached;
    atomic_int tls_during_closed;
    atomic_uint_fast64_t conn_id;
    int sigpipes_at_start;
    pthread_mutex_t mu; /* guards alpn: several loops may open connections */
    char alpn[32];
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    const char *alpn = evn_conn_alpn(c);
    pthread_mutex_lock(&s->mu);
    snprintf(s->alpn, sizeof s->alpn, "%s", alpn ? alpn : "(none)");
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->is_tls, evn_conn_is_tls(c));
    if (s->mode == GREET)
        evn_write(c, "greeting", 8);
    if (s->mode == SHUT_FIRST) {
        evn_write(c, "hello", 5);
        EXPECT_EQ_INT(evn_conn_shutdown_write(c), 0);
    }
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

/* LINES: echo whole lines only, keeping a partial one for the next event, and
 * pause reading after every event until a wake (sent to itself) resumes it,
 * so that input left inside OpenSSL must be found when reading resumes. */
static evn_action lines_data(evn_conn *c, const char *in, size_t len)
{
    if (!in) {
        evn_conn_read(c, 1);
        return EVN_NONE;
    }
    size_t end = len;
    while (end > 0 && in[end - 1] != '\n')
        end--;
    if (end)
        evn_write(c, in, end);
    if (end < len)
        evn_keep(c, len - end);
    evn_conn_read(c, 0);
    evn_wake(evn_conn_server(c), evn_conn_id(c));
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (s->mode == LINES)
        return lines_data(c, in, len);
    if (!in)
        return EVN_NONE;
    int total = atomic_fetch_add(&s->bytes, (int)len) + (int)len;
    th_counter_add(&s->datas, 1);
    switch (s->mode) {
    case DETACH:
        return EVN_DETACH;
    case BLAST: {
        static char big[1 << 20];
        for (int i = 0; i < 16; i++)
            evn_write(c, big, sizeof big);
        return EVN_NONE;
    }
    case ECHO_CLOSE5:
        evn_write(c, in, len);
        return total >= 5 ? EVN_CLOSE : EVN_NONE;
    default:
        evn_write(c, in, len);
        return EVN_NONE;
    }
}

static evn_action on_eof(evn_conn *c)
{
    struct state *s = S(c);
    th_counter_add(&s->eofs, 1);
    if (s->mode == SHUT_FIRST)
        return EVN_CLOSE;
    evn_write(c, "bye", 3);
    evn_conn_shutdown_write(c);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    atomic_store(&s->close_err, err);
    atomic_store(&s->tls_during_closed, evn_conn_is_tls(c));
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static evn_action on_detached(evn_conn *c, int fd)
{
    atomic_fetch_add(&S(c)->detached, 1);
    close(fd);
    return EVN_NONE;
}

static void state_init(struct state *s, int mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->sigpipes_at_start = atomic_load(&loop_sigpipes);
    pthread_mutex_init(&s->mu, NULL);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->datas);
    th_counter_init(&s->eofs);
}

/* The ALPN protocol the last opened connection got. */
static void expect_alpn(struct state *s, const char *want)
{
    char got[32];
    pthread_mutex_lock(&s->mu);
    memcpy(got, s->alpn, sizeof got);
    pthread_mutex_unlock(&s->mu);
    EXPECT_STREQ(got, want);
}

static void state_destroy(struct state *s)
{
    if (atomic_load(&loop_sigpipes) != s->sigpipes_at_start)
        th_fail_(__FILE__, __LINE__, false, "an evn loop's thread got %d SIGPIPE",
                 atomic_load(&loop_sigpipes) - s->sigpipes_at_start);
    pthread_mutex_destroy(&s->mu);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->datas);
    th_counter_destroy(&s->eofs);
}

/* Start a server on tls://127.0.0.1:0 with the server certificate and the
 * given extra options ("" or "&alpn=..."). */
static void start_ev(th_server *ts, struct state *s, evn_events *ev, const char *extra)
{
    char url[2048];
    snprintf(url, sizeof url, "tls://127.0.0.1:0?cert=%s&key=%s%s", srv_cert, srv_key, extra);
    ev->udata = s;
    ev->opened = on_opened;
    ev->data = on_data;
    ev->closed = on_closed;
    ev->detached = on_detached;
    if (s->mode == SHUT_FIRST || s->mode == ECHO)
        ev->eof = on_eof;
    const char *addr = url;
    th_server_start(ts, ev, &addr, 1);
}

static void start(th_server *ts, struct state *s, int mode, const char *extra)
{
    state_init(s, mode);
    evn_events ev = {0};
    start_ev(ts, s, &ev, extra);
}

static void stop(th_server *ts, struct state *s)
{
    th_server_stop(ts);
    state_destroy(s);
}

/* ---- the client ---- */

struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

/* alpn: comma-separated, or NULL. cert/key: a client certificate, or NULL.
 * The server's certificate is checked against itself (it is self-signed). */
static SSL_CTX *client_ctx(const char *alpn, const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_NOT_NULL(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    EXPECT_EQ_INT(SSL_CTX_load_verify_locations(ctx, srv_cert, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (alpn) {
        unsigned char wire[128];
        size_t n = 0, start = 0, len = strlen(alpn);
        for (size_t i = 0; i <= len; i++) {
            if (i < len && alpn[i] != ',')
                continue;
            wire[n++] = (unsigned char)(i - start);
            memcpy(wire + n, alpn + start, i - start);
            n += i - start;
            start = i + 1;
        }
        EXPECT_EQ_INT(SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)n), 0);
    }
    if (cert) {
        EXPECT_EQ_INT(SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM), 1);
        EXPECT_EQ_INT(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    }
    return ctx;
}

/* Connect and handshake (blocking, with receive timeouts as a hang guard).
 * Returns SSL_connect's result; the client is set up either way. */
static int client_open(struct client *cl, const th_server *ts, const char *alpn, const char *cert,
                       const char *key)
{
    cl->fd = th_connect_srv(ts, 0);
    struct timeval tv = {th_io_timeout_ms() / 1000, 0};
    setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    cl->ctx = client_ctx(alpn, cert, key);
    cl->ssl = SSL_new(cl->ctx);
    ASSERT_NOT_NULL(cl->ssl);
    SSL_set_fd(cl->ssl, cl->fd);
    int rc = SSL_connect(cl->ssl);
    ERR_clear_error();
    return rc;
}

static void client_close(struct client *cl, bool notify)
{
    if (notify)
        SSL_shutdown(cl->ssl);
    SSL_free(cl->ssl);
    SSL_CTX_free(cl->ctx);
    close(cl->fd);
    ERR_clear_error();
}

static void ssl_write_all(SSL *ssl, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        int n = SSL_write(ssl, p, (int)(len < 65536 ? len : 65536));
        ASSERT_GT_INT(n, 0);
        p += n;
        len -= (size_t)n;
    }
}

/* Read exactly len plaintext bytes: len, fewer at the end, or -1. */
static ssize_t ssl_read_exact(SSL *ssl, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        int n = SSL_read(ssl, (char *)buf + got, (int)(len - got));
        if (n <= 0) {
            ERR_clear_error();
            return got ? (ssize_t)got : (SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static void expect_ssl_read(SSL *ssl, const char *s)
{
    char buf[256];
    size_t n = strlen(s);
    ASSERT_TRUE(n < sizeof buf);
    EXPECT_EQ_INT(ssl_read_exact(ssl, buf, n), (long long)n);
    buf[n] = '\0';
    EXPECT_STREQ(buf, s);
}

/* ssl_transfer asks for a TLS 1.3 key update once this much is sent (0: never):
 * the server must answer it with one of its own in the middle of its output. */
static size_t key_update_at;

/*
 * Send out while reading inlen bytes, both at once, without blocking, so
 * that an echoing server cannot deadlock us: non-blocking SSL calls and
 * poll() for whichever direction OpenSSL waits on. Returns the bytes read.
 */
static ssize_t ssl_transfer(SSL *ssl, int fd, const char *out, size_t outlen, char *in,
                            size_t inlen, th_rng *rng)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t sent = 0, got = 0, piece = 0;
    ssize_t rc = 0;
    while (got < inlen) {
        bool progress = false;
        short events = 0;
        if (sent < outlen) {
            /* Record sizes vary; a retry offers the same piece again. */
            if (!piece)
                piece = rng ? th_rng_range(rng, 1, 40000) : 16384;
            size_t n = outlen - sent < piece ? outlen - sent : piece;
            int r = SSL_write(ssl, out + sent, (int)n);
            if (r > 0) {
                sent += (size_t)r;
                piece = 0;
                progress = true;
                if (key_update_at && sent >= key_update_at) {
                    key_update_at = 0;
                    EXPECT_EQ_INT(SSL_version(ssl), TLS1_3_VERSION);
                    EXPECT_EQ_INT(SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED), 1);
                }
            } else {
                int e = SSL_get_error(ssl, r);
                if (e == SSL_ERROR_WANT_WRITE)
                    events |= POLLOUT;
                else if (e == SSL_ERROR_WANT_READ)
                    events |= POLLIN;
                else {
                    rc = -EPROTO;
                    break;
                }
            }
        }
        int r = SSL_read(ssl, in + got, (int)(inlen - got < 1 << 20 ? inlen - got : 1 << 20));
        if (r > 0) {
            got += (size_t)r;
            progress = true;
        } else {
            int e = SSL_get_error(ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN)
                break;
            if (e == SSL_ERROR_WANT_READ)
                events |= POLLIN;
            else if (e == SSL_ERROR_WANT_WRITE)
                events |= POLLOUT;
            else {
                rc = -EPROTO;
                break;
            }
        }
        if (progress)
            continue;
        struct pollfd pfd = {.fd = fd, .events = events};
        int pr = poll(&pfd, 1, th_io_timeout_ms());
        if (pr == 0) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    ERR_clear_error();
    fcntl(fd, F_SETFL, fl);
    return rc < 0 ? rc : (ssize_t)got;
}

/* Read and throw away until the server closes: 0 at EOF, or -errno. */
static int drain_to_eof(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = th_read_some(fd, buf, sizeof buf);
        if (n == 0 || n == -ECONNRESET)
            return 0;
        if (n < 0)
            return (int)n;
    }
}

/* ---- tests ---- */

static void test_echo(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, ECHO, "");
    EXPECT_TRUE(strncmp(evn_server_url(ts.srv, 0), "tls://127.0.0.1:", 16) == 0);
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    /* OpenSSL's client lists AES-256 first; the server's order wins. */
    EXPECT_TRUE(strcmp(SSL_get_version(cl.ssl), "TLSv1.3") == 0);
    EXPECT_TRUE(strcmp(SSL_get_cipher_name(cl.ssl), "TLS_AES_128_GCM_SHA256") == 0);
    ssl_write_all(cl.ssl, "hello", 5);
    expect_ssl_read(cl.ssl, "hello");
    TH_WAIT_COUNTER(&s.opened, 1);
    EXPECT_EQ_INT(atomic_load(&s.is_tls), 1);
    expect_alpn(&s, "(none)");
    /* The client ends TLS first: close_notify, then its TCP side. The
     * server's eof callback still answers, then ends its side too. */
    SSL_shutdown(cl.ssl);
    shutdown(cl.fd, SHUT_WR);
    expect_ssl_read(cl.ssl, "bye");
    char c;
    EXPECT_EQ_INT(ssl_read_exact(cl.ssl, &c, 1), 0);
    EXPECT_TRUE(SSL_get_shutdown(cl.ssl) & SSL_RECEIVED_SHUTDOWN);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    EXPECT_EQ_INT(atomic_load(&s.tls_during_closed), 1);
    client_close(&cl, false);
    stop(&ts, &s);
}

static void test_echo_ipv6(void)
{
    if (!th_have_ipv6()) {
        th_skip("no IPv6");
        return;
    }
    struct state s;
    state_init(&s, ECHO);
    evn_events ev = {0};
    ev.udata = &s;
    ev.data = on_data;
    char url[1024];
    snprintf(url, sizeof url, "tls6://[::1]:0?cert=%s&key=%s", srv_cert, srv_key);
    const char *addr = url;
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    EXPECT_TRUE(strncmp(evn_server_url(ts.srv, 0), "tls://[::1]:", 12) == 0);
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    ssl_write_all(cl.ssl, "six", 3);
    expect_ssl_read(cl.ssl, "six");
    client_close(&cl, true);
    stop(&ts, &s);
}

/* tls+unix://: the same over a unix socket, whose URL reads back as given. */
static void test_echo_unix(void)
{
    struct state s;
    state_init(&s, ECHO);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = on_opened;
    ev.data = on_data;
    char path[256], url[1024], want[512];
    th_tmppath(path, sizeof path, "tls.sock");
    snprintf(url, sizeof url, "tls+unix://%s?cert=%s&key=%s", path, srv_cert, srv_key);
    snprintf(want, sizeof want, "tls+unix://%s", path);
    const char *addr = url;
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    EXPECT_STREQ(evn_server_url(ts.srv, 0), want);
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    EXPECT_EQ_INT(getsockname(cl.fd, (struct sockaddr *)&ss, &sl), 0);
    EXPECT_EQ_INT(ss.ss_family, AF_UNIX);
    ssl_write_all(cl.ssl, "over unix", 9);
    expect_ssl_read(cl.ssl, "over unix");
    TH_WAIT_COUNTER(&s.opened, 1);
    EXPECT_EQ_INT(atomic_load(&s.is_tls), 1);
    client_close(&cl, true);
    stop(&ts, &s);
}

/* Output written in opened goes out encrypted, after the handshake. */
static void test_greeting(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, GREET, "");
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    expect_ssl_read(cl.ssl, "greeting");
    client_close(&cl, true);
    TH_WAIT_COUNTER(&s.closed, 1);
    stop(&ts, &s);
}

static char *random_bytes(size_t n, th_rng *rng)
{
    char *p = malloc(n);
    ASSERT_NOT_NULL(p);
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = th_rng_next(rng);
        memcpy(p + i, &v, n - i < 8 ? n - i : 8);
    }
    return p;
}

/* 20 MB each way at once, in records of random sizes: partial SSL_write
 * on the server, and input left inside OpenSSL; half way, the client asks
 * for new keys both ways (a TLS 1.3 KeyUpdate). */
static void test_big_both_ways(void)
{
    const size_t n = 20u << 20;
    struct state s;
    th_server ts;
    start(&ts, &s, ECHO, "");
    th_rng rng;
    th_rng_init(&rng, th_seed());
    char *out = random_bytes(n, &rng), *in = malloc(n);
    ASSERT_NOT_NULL(in);
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    key_update_at = n / 2;
    EXPECT_EQ_INT(ssl_transfer(cl.ssl, cl.fd, out, n, in, n, &rng), (long long)n);
    EXPECT_EQ_SIZE(key_update_at, 0);
    EXPECT_TRUE(memcmp(out, in, n) == 0);
    client_close(&cl, true);
    TH_WAIT_COUNTER(&s.closed, 1);
    free(out);
    free(in);
    stop(&ts, &s);
}

/*
 * Lines of random length echoed by a server that keeps partial lines
 * (evn_keep: reads land in the kept buffer, whose room is not a multiple of
 * a record) and pauses reading after every event until a wake, with small
 * watermarks (flow control pauses it too): the input OpenSSL holds when
 * reading pauses must be read when it resumes, with nothing from the socket
 * to announce it.
 */
static void test_kept_and_paused(void)
{
    const size_t n = th_quick() ? 2u << 20 : 6u << 20;
    struct state s;
    state_init(&s, LINES);
    evn_events ev = {0};
    ev.out_high = 64 * 1024;
    ev.out_low = 16 * 1024;
    th_server ts;
    start_ev(&ts, &s, &ev, "");
    th_rng rng;
    th_rng_init(&rng, th_seed());
    char *out = random_bytes(n, &rng), *in = malloc(n);
    ASSERT_NOT_NULL(in);
    for (size_t i = 0; i < n; i++)
        if (out[i] == '\n')
            out[i] = 'x';
    for (size_t i = th_rng_range(&rng, 1, 30000); i < n; i += th_rng_range(&rng, 1, 30000))
        out[i] = '\n';
    out[n - 1] = '\n';
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    EXPECT_EQ_INT(ssl_transfer(cl.ssl, cl.fd, out, n, in, n, &rng), (long long)n);
    EXPECT_TRUE(memcmp(out, in, n) == 0);
    client_close(&cl, true);
    TH_WAIT_COUNTER(&s.closed, 1);
    free(out);
    free(in);
    stop(&ts, &s);
}

static void alpn_case(const th_server *ts, struct state *s, const char *offer, const char *want)
{
    struct client cl;
    long before = th_counter_get(&s->opened);
    ASSERT_EQ_INT(client_open(&cl, ts, offer, NULL, NULL), 1);
    ssl_write_all(cl.ssl, "x", 1);
    expect_ssl_read(cl.ssl, "x");
    TH_WAIT_COUNTER(&s->opened, before + 1);
    expect_alpn(s, want);
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(cl.ssl, &p, &len);
    char got[32];
    snprintf(got, sizeof got, "%.*s", len ? (int)len : 6, len ? (const char *)p : "(none)");
    EXPECT_STREQ(got, want);
    client_close(&cl, true);
}

/* The server's order wins; a client with nothing in common gets nothing. */
static void test_alpn(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, ECHO, "&alpn=h2,http/1.1");
    alpn_case(&ts, &s, "http/1.1,h2", "h2");
    alpn_case(&ts, &s, "http/1.1", "http/1.1");
    alpn_case(&ts, &s, "h2", "h2");
    alpn_case(&ts, &s, NULL, "(none)");
    alpn_case(&ts, &s, "spdy/3,h3", "(none)");
    stop(&ts, &s);
}

/* A handshake the server refuses: the client learns it at the handshake or,
 * with TLS 1.3 (the server checks the client's certificate after the client
 * has finished), at its first read. */
static void expect_refused(const th_server *ts, const char *cert, const char *key)
{
    struct client cl;
    int rc = client_open(&cl, ts, NULL, cert, key);
    if (rc == 1) {
        char c;
        EXPECT_TRUE(ssl_read_exact(cl.ssl, &c, 1) <= 0);
    }
    client_close(&cl, false);
}

static void expect_echo(const th_server *ts, const char *cert, const char *key)
{
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, ts, NULL, cert, key), 1);
    ssl_write_all(cl.ssl, "ping", 4);
    expect_ssl_read(cl.ssl, "ping");
    client_close(&cl, true);
}

static void test_client_cert_required(void)
{
    struct state s;
    th_server ts;
    char extra[512];
    snprintf(extra, sizeof extra, "&ca=%s&verify=require", ca_cert);
    start(&ts, &s, ECHO, extra);
    expect_refused(&ts, NULL, NULL);
    expect_refused(&ts, rogue_cert, rogue_key);
    expect_echo(&ts, cli_cert, cli_key);
    TH_WAIT_COUNTER(&s.closed, 1);
    /* Only the one that was let in was ever opened (or closed). */
    EXPECT_EQ_INT(th_counter_get(&s.opened), 1);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 1);
    stop(&ts, &s);
}

static void test_client_cert_optional(void)
{
    struct state s;
    th_server ts;
    char extra[512];
    snprintf(extra, sizeof extra, "&ca=%s&verify=optional", ca_cert);
    start(&ts, &s, ECHO, extra);
    expect_echo(&ts, NULL, NULL);
    expect_echo(&ts, cli_cert, cli_key);
    /* Optional, but a certificate that is sent must be good. */
    expect_refused(&ts, rogue_cert, rogue_key);
    expect_echo(&ts, NULL, NULL);
    TH_WAIT_COUNTER(&s.closed, 3);
    EXPECT_EQ_INT(th_counter_get(&s.opened), 3);
    stop(&ts, &s);
}

/* Not TLS at all: closed, and the server carries on. */
static void test_garbage_and_plain_http(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, ECHO, "");
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    EXPECT_EQ_INT(drain_to_eof(fd), 0);
    close(fd);

    th_rng rng;
    th_rng_init(&rng, th_seed());
    char *junk = random_bytes(4096, &rng);
    fd = th_connect_srv(&ts, 0);
    th_write_all(fd, junk, 4096);
    EXPECT_EQ_INT(drain_to_eof(fd), 0);
    close(fd);
    /* A TLS record header announcing a handshake, then nonsense. */
    fd = th_connect_srv(&ts, 0);
    memcpy(junk, "\x16\x03\x01\x00\x40", 5);
    th_write_all(fd, junk, 69);
    EXPECT_EQ_INT(drain_to_eof(fd), 0);
    close(fd);
    free(junk);

    expect_echo(&ts, NULL, NULL);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.opened), 1);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 1);
    EXPECT_EQ_INT(th_counter_get(&s.datas), 1);
    stop(&ts, &s);
}

/* A real ClientHello, made with memory BIOs so that the test can send part
 * of it. Returns its length. */
static size_t client_hello(unsigned char *buf, size_t size)
{
    SSL_CTX *ctx = client_ctx(NULL, NULL, NULL);
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    EXPECT_TRUE(SSL_connect(ssl) <= 0);
    int n = BIO_read(wb, buf, (int)size);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    ASSERT_GT_INT(n, 10);
    return (size_t)n;
}

static void test_hangup_mid_handshake(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, ECHO, "");
    unsigned char hello[4096];
    size_t n = client_hello(hello, sizeof hello);

    /* Half a ClientHello, then end of input: the server gives up and closes. */
    int fd = th_connect_srv(&ts, 0);
    th_write_all(fd, hello, n / 2);
    shutdown(fd, SHUT_WR);
    EXPECT_EQ_INT(drain_to_eof(fd), 0);
    close(fd);

    /* A whole ClientHello, the server's answer read, then a reset. */
    fd = th_connect_srv(&ts, 0);
    th_write_all(fd, hello, n);
    char buf[256];
    EXPECT_GT_INT(th_read_some(fd, buf, sizeof buf), 0);
    th_close_rst(fd);

    /* And one that just goes away after connecting. */
    fd = th_connect_srv(&ts, 0);
    close(fd);

    expect_echo(&ts, NULL, NULL);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.opened), 1);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 1);
    stop(&ts, &s);
}

/*
 * A client that connects and says nothing is closed once the handshake
 * timeout passes, with no event, and its descriptor is freed (the server's
 * FIN comes from close()). A connection whose handshake completed first is
 * not affected: its handshake deadline was cleared.
 */
static void test_handshake_timeout(void)
{
    struct state s;
    state_init(&s, ECHO);
    evn_events ev = {0};
    ev.tls_handshake_timeout_ms = 100;
    th_server ts;
    start_ev(&ts, &s, &ev, "");
    /* A handshake the client finishes more than 100 ms after its accept (a
     * loaded machine, a sanitizer's slow key exchange) is rightly timed out:
     * then try again, until one is served. */
    struct client done;
    for (int tries = 0;; tries++) {
        ASSERT_TRUE(tries < 50);
        if (client_open(&done, &ts, NULL, NULL, NULL) == 1 && SSL_write(done.ssl, "a", 1) == 1) {
            char c;
            if (ssl_read_exact(done.ssl, &c, 1) == 1 && c == 'a')
                break;
        }
        client_close(&done, false);
    }

    int before = th_fd_count();
    int fd = th_connect_srv(&ts, 0);
    EXPECT_EQ_INT(drain_to_eof(fd), 0);
    close(fd);
    EXPECT_EQ_INT(th_fd_count(), before);

    /* Stalled half way through its ClientHello: the same. */
    unsigned char hello[4096];
    size_t n = client_hello(hello, sizeof hello);
    fd = th_connect_srv(&ts, 0);
    th_write_all(fd, hello, n / 2);
    EXPECT_EQ_INT(drain_to_eof(fd), 0);
    close(fd);
    EXPECT_EQ_INT(th_fd_count(), before);

    /* More than 100 ms after its handshake the first one still works. */
    ssl_write_all(done.ssl, "b", 1);
    expect_ssl_read(done.ssl, "b");
    EXPECT_EQ_INT(th_counter_get(&s.opened), 1);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 0);
    client_close(&done, true);
    TH_WAIT_COUNTER(&s.closed, 1);
    stop(&ts, &s);
}

static void expect_new_fails(const char *extra, const char *cert, const char *key, int want_rc,
                             const char *needle, const char *needle2)
{
    char url[1200];
    snprintf(url, sizeof url, "tls://127.0.0.1:0?cert=%s&key=%s%s", cert, key, extra);
    const char *addr = url;
    evn_events ev = {0};
    evn_server *srv = (evn_server *)1;
    int rc = evn_server_new(&srv, &ev, &addr, 1);
    EXPECT_EQ_ERR(rc, want_rc);
    EXPECT_NULL(srv);
    EXPECT_CONTAINS(evn_errmsg(), needle);
    if (needle2)
        EXPECT_CONTAINS(evn_errmsg(), needle2);
}

static void test_bad_files(void)
{
    char missing[300];
    th_tmppath(missing, sizeof missing, "missing.pem");
    expect_new_fails("", missing, srv_key, -ENOENT, missing, "No such file");
    expect_new_fails("", srv_cert, missing, -ENOENT, missing, "No such file");
    expect_new_fails("", junk_file, srv_key, -EINVAL, junk_file, "error:");
    expect_new_fails("", srv_cert, junk_file, -EINVAL, junk_file, "error:");
    /* A key that is not the certificate's (of another type, or of the same
     * type): named, with OpenSSL's reason. */
    expect_new_fails("", srv_cert, other_key, -EINVAL, other_key, "does not match");
    expect_new_fails("", srv_cert, other_rsa_key, -EINVAL, other_rsa_key, "mismatch");
    char extra[600];
    snprintf(extra, sizeof extra, "&ca=%s&verify=require", missing);
    expect_new_fails(extra, srv_cert, srv_key, -ENOENT, missing, "ca");
    snprintf(extra, sizeof extra, "&ca=%s&verify=require", junk_file);
    expect_new_fails(extra, srv_cert, srv_key, -EINVAL, junk_file, "ca");
    expect_new_fails("&verify=require", srv_cert, srv_key, -EINVAL, "needs ca=", NULL);
    expect_new_fails("&alpn=h2,,http/1.1", srv_cert, srv_key, -EINVAL, "alpn", NULL);
    /* And a good one still works after all that. */
    char url[1200];
    snprintf(url, sizeof url, "tls://127.0.0.1:0?cert=%s&key=%s", srv_cert, srv_key);
    const char *addr = url;
    evn_events ev = {0};
    evn_server *srv = NULL;
    EXPECT_EQ_INT(evn_server_new(&srv, &ev, &addr, 1), 0);
    evn_server_free(srv);
}

/* printf hello | openssl s_client: the real command-line client. */
static void test_s_client(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, ECHO_CLOSE5, "&alpn=http/1.1");
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "printf hello | openssl s_client -connect 127.0.0.1:%d -alpn http/1.1 -quiet "
             "2>/dev/null",
             th_server_port(&ts, 0));
    FILE *p = popen(cmd, "r");
    ASSERT_NOT_NULL(p);
    char out[64] = {0};
    size_t n = fread(out, 1, sizeof out - 1, p);
    pclose(p);
    out[n] = '\0';
    EXPECT_STREQ(out, "hello");
    TH_WAIT_COUNTER(&s.closed, 1);
    expect_alpn(&s, "http/1.1");
    stop(&ts, &s);
}

/* The server ends its sending side first (close_notify, then FIN); it still
 * reads what the client sends afterwards. */
static void test_server_shuts_first(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, SHUT_FIRST, "");
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    expect_ssl_read(cl.ssl, "hello");
    char c;
    EXPECT_EQ_INT(ssl_read_exact(cl.ssl, &c, 1), 0);
    ssl_write_all(cl.ssl, "still here", 10);
    while (atomic_load(&s.bytes) < 10)
        TH_WAIT_COUNTER(&s.datas, th_counter_get(&s.datas) + 1);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 0);
    SSL_shutdown(cl.ssl);
    shutdown(cl.fd, SHUT_WR);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    client_close(&cl, false);
    stop(&ts, &s);
}

static void test_detach_refused(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, DETACH, "");
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    ssl_write_all(cl.ssl, "x", 1);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -EPROTONOSUPPORT);
    EXPECT_EQ_INT(atomic_load(&s.detached), 0);
    EXPECT_EQ_INT(drain_to_eof(cl.fd), 0);
    client_close(&cl, false);
    stop(&ts, &s);
}

/* The peer resets while the server has megabytes to send: an error for that
 * connection, and no SIGPIPE for the process (OpenSSL's own socket BIO would
 * raise one). */
static void test_no_sigpipe(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, BLAST, "");
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    ssl_write_all(cl.ssl, "go", 2);
    char buf[4096];
    EXPECT_EQ_INT(ssl_read_exact(cl.ssl, buf, sizeof buf), (long long)sizeof buf);
    SSL_free(cl.ssl);
    SSL_CTX_free(cl.ctx);
    th_close_rst(cl.fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_LT_INT(atomic_load(&s.close_err), 0);
    stop(&ts, &s);
}

/* Many handshakes on two loops, closed every way a client closes: nothing
 * left open afterwards (the runner counts descriptors). */
static void test_many_connections(void)
{
    enum { SEQ = 60, PAR = 40 };
    struct state s;
    state_init(&s, ECHO);
    evn_events ev = {0};
    ev.nloops = 2;
    th_server ts;
    start_ev(&ts, &s, &ev, "");
    for (int i = 0; i < SEQ; i++) {
        struct client cl;
        ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
        ssl_write_all(cl.ssl, "abc", 3);
        expect_ssl_read(cl.ssl, "abc");
        if (i % 3 == 2) {
            SSL_free(cl.ssl);
            SSL_CTX_free(cl.ctx);
            th_close_rst(cl.fd);
        } else {
            client_close(&cl, i % 3 == 0);
        }
    }
    static struct client par[PAR];
    for (int i = 0; i < PAR; i++)
        ASSERT_EQ_INT(client_open(&par[i], &ts, NULL, NULL, NULL), 1);
    for (int i = 0; i < PAR; i++) {
        ssl_write_all(par[i].ssl, "xyz", 3);
        expect_ssl_read(par[i].ssl, "xyz");
    }
    for (int i = 0; i < PAR; i++)
        client_close(&par[i], i % 2 == 0);
    TH_WAIT_COUNTER(&s.closed, SEQ + PAR);
    EXPECT_EQ_INT(th_counter_get(&s.opened), SEQ + PAR);
    stop(&ts, &s);
}

/*
 * A write into a connection the peer has already dropped: the client sends
 * FIN, then a reset, so that the server's socket records EPIPE, the error
 * for which the kernel raises SIGPIPE unless the sender passes MSG_NOSIGNAL
 * (OpenSSL's own socket BIO does not). The server holds its input until the
 * reset has arrived and only then writes, so the write meets EPIPE every
 * time: the connection must close with -EPIPE, and no SIGPIPE may reach the
 * loop's thread.
 */
static evn_action dead_opened(evn_conn *c)
{
    struct state *s = S(c);
    atomic_store(&s->conn_id, evn_conn_id(c));
    evn_conn_read(c, 0);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action dead_data(evn_conn *c, const char *in, size_t len)
{
    (void)len;
    if (in)
        return EVN_NONE;
    /* The wake comes once the client has reset: wait for the reset to be on
     * the socket (with no events asked for, poll returns on an error or a
     * hang-up only), then write into it. */
    struct pollfd pfd = {.fd = evn_conn_fd(c), .events = 0};
    EXPECT_EQ_INT(poll(&pfd, 1, th_io_timeout_ms()), 1);
    EXPECT_TRUE(pfd.revents & POLLHUP);
    evn_write(c, "too late", 8);
    return EVN_NONE;
}

static void test_no_loop_sigpipe(void)
{
    catch_sigpipes();
    struct state s;
    state_init(&s, ECHO);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = dead_opened;
    ev.data = dead_data;
    ev.closed = on_closed;
    char url[1024];
    snprintf(url, sizeof url, "tls://127.0.0.1:0?cert=%s&key=%s", srv_cert, srv_key);
    const char *addr = url;
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    struct client cl;
    ASSERT_EQ_INT(client_open(&cl, &ts, NULL, NULL, NULL), 1);
    TH_WAIT_COUNTER(&s.opened, 1);
    shutdown(cl.fd, SHUT_WR);
    SSL_free(cl.ssl);
    SSL_CTX_free(cl.ctx);
    th_close_rst(cl.fd);
    EXPECT_EQ_INT(evn_wake(ts.srv, atomic_load(&s.conn_id)), 0);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -EPIPE);
    EXPECT_EQ_INT(atomic_load(&loop_sigpipes), s.sigpipes_at_start);
    stop(&ts, &s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    catch_sigpipes();
    if (!th_have_command("openssl")) {
        th_missing_tool("openssl", "openssl");
        return th_finish();
    }
    if (!make_files())
        th_fail_(__FILE__, __LINE__, true, "the openssl command could not make the certificates");
    TH_RUN(test_echo);
    TH_RUN(test_echo_ipv6);
    TH_RUN(test_echo_unix);
    TH_RUN(test_greeting);
    TH_RUN(test_big_both_ways);
    TH_RUN(test_kept_and_paused);
    TH_RUN(test_alpn);
    TH_RUN(test_client_cert_required);
    TH_RUN(test_client_cert_optional);
    TH_RUN(test_garbage_and_plain_http);
    TH_RUN(test_hangup_mid_handshake);
    TH_RUN(test_handshake_timeout);
    TH_RUN(test_bad_files);
    TH_RUN(test_s_client);
    TH_RUN(test_server_shuts_first);
    TH_RUN(test_detach_refused);
    TH_RUN(test_no_sigpipe);
    TH_RUN(test_many_connections);
    TH_RUN(test_no_loop_sigpipe);
    return th_finish();
}

#endif
