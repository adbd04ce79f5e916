/*
 * Outbound TLS: evn_connect to tls:// URLs, against tls:// listeners of the
 * same server, with a throwaway CA, a server certificate it signed (for
 * localhost, 127.0.0.1 and ::1), a client certificate it signed, and a second
 * CA that signed nothing, all made by the openssl command at start.
 *
 * opened fires only after the handshake; 1 MB goes out and comes back byte
 * for byte (part of it queued before the connection was up); ALPN is
 * negotiated. The server's certificate is checked by default: against ca=,
 * else against the system's store (which does not know the test CA), with the
 * name from sni= or the address connected to; verify=none skips the check. A
 * certificate that does not verify, a wrong name, a refused port and a server
 * that never answers the handshake each fire closed with an error (-EACCES,
 * -ECONNREFUSED, -ETIMEDOUT) and never opened; evn_errmsg() in closed says
 * why. A client certificate satisfies a listener with verify=require. Bad
 * files and options fail at evn_connect, naming the problem, and client
 * contexts are shared between connections with the same options. A later
 * connection to the same place resumes the session of the one before.
 */
#include "harness.h"

#include <stdio.h>

#ifndef EVN_HAVE_TLS
#include <errno.h>
#include <string.h>

static evn_action notls_serving(evn_server *srv)
{
    int *rc = evn_server_udata(srv);
    *rc = evn_connect(srv, "tls://127.0.0.1:1?verify=none", 0, NULL, NULL);
    return EVN_SHUTDOWN;
}

/* Without OpenSSL, tls:// is refused at once, and plainly. */
static void test_no_tls(void)
{
    int rc = 0;
    evn_events ev = {0};
    ev.udata = &rc;
    ev.serving = notls_serving;
    const char *addr = "tcp://127.0.0.1:0";
    EXPECT_EQ_ERR(evn_serve(&ev, &addr, 1), 0);
    EXPECT_EQ_ERR(rc, -ENOTSUP);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_no_tls);
    return th_finish();
}
#else

#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- files made at start ---- */

static char ca_cert[256], srv_cert[256], srv_key[256], cli_cert[256], cli_key[256], rogue_ca[256],
    junk_file[256], missing_file[256], unix_path[256];

/* Run the openssl command with the arguments fmt makes, its output thrown
 * away; true if it succeeded. */
static bool openssl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool openssl(const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "openssl %s >/dev/null 2>&1", args);
    return system(cmd) == 0;
}

static bool make_files(void)
{
    char ca_key[256], csr[256], serial[256], ext[256], rogue_key[256];
    th_tmppath(ca_cert, sizeof ca_cert, "ca.pem");
    th_tmppath(ca_key, sizeof ca_key, "ca.key");
    th_tmppath(srv_cert, sizeof srv_cert, "srv.pem");
    th_tmppath(srv_key, sizeof srv_key, "srv.key");
    th_tmppath(cli_cert, sizeof cli_cert, "cli.pem");
    th_tmppath(cli_key, sizeof cli_key, "cli.key");
    th_tmppath(rogue_ca, sizeof rogue_ca, "rogue.pem");
    th_tmppath(rogue_key, sizeof rogue_key, "rogue.key");
    th_tmppath(junk_file, sizeof junk_file, "junk.pem");
    th_tmppath(missing_file, sizeof missing_file, "missing.pem");
    th_tmppath(csr, sizeof csr, "req.csr");
    th_tmppath(serial, sizeof serial, "ca.srl");
    th_tmppath(ext, sizeof ext, "san.cnf");
    th_tmppath(unix_path, sizeof unix_path, "tls.sock");
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

    FILE *f = fopen(ext, "w");
    if (!f)
        return false;
    fputs("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n", f);
    fclose(f);
    if (!(f = fopen(junk_file, "w")))
        return false;
    fputs("no certificate here\n", f);
    fclose(f);

    return openssl("req -x509 %s -keyout %s -out %s -days 1 -subj /CN=evn-ca", ec, ca_key,
                   ca_cert) &&
           openssl("req -x509 %s -keyout %s -out %s -days 1 -subj /CN=evn-rogue-ca", ec, rogue_key,
                   rogue_ca) &&
           openssl("req %s -keyout %s -out %s -subj /CN=localhost", ec, srv_key, csr) &&
           openssl("x509 -req -in %s -CA %s -CAkey %s -CAserial %s -CAcreateserial -out %s "
                   "-days 1 -extfile %s",
                   csr, ca_cert, ca_key, serial, srv_cert, ext) &&
           openssl("req %s -keyout %s -out %s -subj /CN=client", ec, cli_key, csr) &&
           openssl("x509 -req -in %s -CA %s -CAkey %s -CAserial %s -out %s -days 1", csr, ca_cert,
                   ca_key, serial, cli_cert);
}

/* ---- the server: three listeners and one outbound connection ---- */

/* Listener 0: TLS echo. 1: TLS echo that requires a client certificate.
 * 2: plain TCP that reads and never answers. 3: TLS echo on a unix socket. */
enum { L_TLS, L_MTLS, L_SILENT, L_UNIX };

/* The i-th byte of the payload. */
static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 11));
}

#define EARLY 4096 /* bytes sent with evn_send before the connection is up */

struct state {
    char target[1300];
    int64_t timeout_ms;
    size_t payload; /* bytes to send and expect back; 0: just open and close */
    int connect_rc;
    evn_id id;
    th_counter out_opened, out_closed, in_opened, in_closed;
    atomic_int close_err, out_is_tls, mismatch;
    atomic_size_t got, echoed;
    char errmsg[512];
    char alpn_out[32], alpn_in[32];
    unsigned char *buf; /* the payload */
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_serving(evn_server *srv)
{
    struct state *s = evn_server_udata(srv);
    s->connect_rc = evn_connect(srv, s->target, s->timeout_ms, s, &s->id);
    if (s->connect_rc < 0)
        snprintf(s->errmsg, sizeof s->errmsg, "%s", evn_errmsg());
    /* Queued while connecting: must go out, encrypted, once the handshake is
     * through, and before what opened writes. */
    if (s->connect_rc == 0 && s->payload > EARLY)
        evn_send(srv, s->id, s->buf, EARLY);
    return EVN_NONE;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    const char *alpn = evn_conn_alpn(c);
    if (evn_conn_listener(c) != EVN_OUTBOUND) {
        if (evn_conn_listener(c) != L_SILENT)
            snprintf(s->alpn_in, sizeof s->alpn_in, "%s", alpn ? alpn : "(none)");
        th_counter_add(&s->in_opened, 1);
        return EVN_NONE;
    }
    snprintf(s->alpn_out, sizeof s->alpn_out, "%s", alpn ? alpn : "(none)");
    atomic_store(&s->out_is_tls, evn_conn_is_tls(c));
    th_counter_add(&s->out_opened, 1);
    if (s->payload == 0)
        return EVN_CLOSE;
    size_t from = s->payload > EARLY ? EARLY : 0;
    evn_write(c, s->buf + from, s->payload - from);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (!in)
        return EVN_NONE;
    if (evn_conn_listener(c) == L_SILENT)
        return EVN_NONE;
    if (evn_conn_listener(c) != EVN_OUTBOUND) {
        atomic_fetch_add(&s->echoed, len);
        evn_write(c, in, len);
        return EVN_NONE;
    }
    size_t at = atomic_load(&s->got);
    for (size_t i = 0; i < len; i++)
        if (at + i >= s->payload || (unsigned char)in[i] != pattern(at + i)) {
            atomic_store(&s->mismatch, 1);
            return EVN_CLOSE;
        }
    atomic_store(&s->got, at + len);
    return at + len == s->payload ? EVN_CLOSE : EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (evn_conn_listener(c) != EVN_OUTBOUND) {
        th_counter_add(&s->in_closed, 1);
        return EVN_NONE;
    }
    if (err)
        snprintf(s->errmsg, sizeof s->errmsg, "%s", evn_errmsg());
    atomic_store(&s->close_err, err);
    th_counter_add(&s->out_closed, 1);
    return EVN_NONE;
}

static void state_init(struct state *s, size_t payload)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->out_opened);
    th_counter_init(&s->out_closed);
    th_counter_init(&s->in_opened);
    th_counter_init(&s->in_closed);
    s->payload = payload;
    if (payload) {
        s->buf = malloc(payload);
        ASSERT_NOT_NULL(s->buf);
        for (size_t i = 0; i < payload; i++)
            s->buf[i] = pattern(i);
    }
}

static void state_destroy(struct state *s)
{
    th_counter_destroy(&s->out_opened);
    th_counter_destroy(&s->out_closed);
    th_counter_destroy(&s->in_opened);
    th_counter_destroy(&s->in_closed);
    free(s->buf);
}

/* A server with the three listeners and ev's callbacks, not yet running. */
static void server_new_ev(th_server *ts, struct state *s, evn_events *ev)
{
    static char urls[4][1024];
    snprintf(urls[L_TLS], sizeof urls[0], "tls://127.0.0.1:0?cert=%s&key=%s&alpn=http/1.1",
             srv_cert, srv_key);
    snprintf(urls[L_MTLS], sizeof urls[0], "tls://127.0.0.1:0?cert=%s&key=%s&ca=%s&verify=require",
             srv_cert, srv_key, ca_cert);
    snprintf(urls[L_SILENT], sizeof urls[0], "tcp://127.0.0.1:0");
    snprintf(urls[L_UNIX], sizeof urls[0], "tls+unix://%s?cert=%s&key=%s", unix_path, srv_cert,
             srv_key);
    const char *addrs[4] = {urls[0], urls[1], urls[2], urls[3]};
    ev->udata = s;
    th_server_new(ts, ev, addrs, 4);
}

/* For run_case's to: a port nobody listens on instead of a listener's. */
#define DEAD (-1)

/* The fixture of one case: s made ready to send and expect back payload
 * bytes, the three listeners started, and serving's evn_connect to
 * tls://127.0.0.1:PORT?QUERY run until that connection has closed, where
 * PORT is listener to's (or a refusing one, for DEAD) and QUERY is what fmt
 * makes. evn_connect itself must succeed. The case then checks s and calls
 * state_destroy. */
static void run_case(struct state *s, size_t payload, int to, int64_t timeout_ms, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
static void run_case(struct state *s, size_t payload, int to, int64_t timeout_ms, const char *fmt,
                     ...)
{
    state_init(s, payload);
    th_server ts;
    evn_events ev = {0};
    ev.serving = on_serving;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.closed = on_closed;
    server_new_ev(&ts, s, &ev);
    s->timeout_ms = timeout_ms;
    char q[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    if (to == L_UNIX) {
        snprintf(s->target, sizeof s->target, "tls+unix://%s?%s", unix_path, q);
    } else {
        int port = to == DEAD ? th_closed_port() : th_server_port(&ts, (size_t)to);
        snprintf(s->target, sizeof s->target, "tls://127.0.0.1:%d?%s", port, q);
    }
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s->out_closed, 1);
    EXPECT_EQ_ERR(s->connect_rc, 0);
    th_server_stop(&ts);
}

/* The outcome of a case that went through: opened, every byte back. */
static void expect_echoed(struct state *s, size_t n)
{
    EXPECT_EQ_INT(th_counter_get(&s->out_opened), 1);
    EXPECT_EQ_ERR(atomic_load(&s->close_err), 0);
    EXPECT_EQ_SIZE(atomic_load(&s->got), n);
}

/* ... and of one refused at the handshake: never opened, closed with err,
 * and evn_errmsg() in closed saying msg. */
static void expect_rejected(struct state *s, int err, const char *msg)
{
    EXPECT_EQ_INT(th_counter_get(&s->out_opened), 0);
    EXPECT_EQ_ERR(atomic_load(&s->close_err), err);
    EXPECT_CONTAINS(s->errmsg, msg);
}

/* ---- the tests ---- */

/* 1 MB out and back, byte for byte, verified against ca= by address. */
static void test_echo_1mb(void)
{
    struct state s;
    size_t n = (size_t)1 << 20;
    run_case(&s, n, L_TLS, 5000, "ca=%s&alpn=h2,http/1.1", ca_cert);
    expect_echoed(&s, n);
    EXPECT_FALSE(atomic_load(&s.mismatch));
    EXPECT_EQ_SIZE(atomic_load(&s.echoed), n);
    EXPECT_TRUE(atomic_load(&s.out_is_tls));
    EXPECT_STREQ(s.alpn_out, "http/1.1");
    EXPECT_STREQ(s.alpn_in, "http/1.1");
    state_destroy(&s);
}

/* verify=require with the right CA and the certificate's DNS name. */
static void test_verify_sni(void)
{
    struct state s;
    run_case(&s, 100, L_TLS, 5000, "ca=%s&sni=localhost&verify=require", ca_cert);
    expect_echoed(&s, 100);
    EXPECT_STREQ(s.alpn_out, "(none)");
    state_destroy(&s);
}

/* A CA that did not sign the server's certificate. */
static void test_wrong_ca(void)
{
    struct state s;
    run_case(&s, 100, L_TLS, 5000, "ca=%s", rogue_ca);
    expect_rejected(&s, -EACCES, "certificate verify failed");
    /* The listener's side of it fails its handshake: no event there. */
    EXPECT_EQ_INT(th_counter_get(&s.in_opened), 0);
    state_destroy(&s);
}

/* The right CA, but a name the certificate is not for. */
static void test_wrong_sni(void)
{
    struct state s;
    run_case(&s, 100, L_TLS, 5000, "ca=%s&sni=www.example.com", ca_cert);
    expect_rejected(&s, -EACCES, "hostname mismatch");
    state_destroy(&s);
}

/* An address the certificate is not for (it has 127.0.0.1, not 127.0.0.2). */
static void test_wrong_ip(void)
{
    struct state s;
    run_case(&s, 100, L_TLS, 5000, "ca=%s&sni=127.0.0.2", ca_cert);
    expect_rejected(&s, -EACCES, "IP address mismatch");
    state_destroy(&s);
}

/* No ca=: the system's store, which has never heard of the test CA. */
static void test_default_verifies(void)
{
    struct state s;
    run_case(&s, 100, L_TLS, 5000, "sni=localhost");
    expect_rejected(&s, -EACCES, "certificate verify failed");
    state_destroy(&s);
}

/* verify=none: anything goes, even with a wrong CA and name. */
static void test_verify_none(void)
{
    struct state s;
    run_case(&s, 100000, L_TLS, 5000, "ca=%s&verify=none&sni=www.example.com", rogue_ca);
    expect_echoed(&s, 100000);
    state_destroy(&s);
}

/* A plain TCP server that takes the ClientHello and never answers. */
static void test_handshake_timeout(void)
{
    struct state s;
    int64_t t0 = evn__now_ms();
    run_case(&s, 100, L_SILENT, 300, "verify=none");
    int64_t took = evn__now_ms() - t0;
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 0);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ETIMEDOUT);
    EXPECT_EQ_INT(th_counter_get(&s.in_opened), 1); /* the connect itself worked */
    EXPECT_GE_INT(took, 250);
    state_destroy(&s);
}

/* A port nobody listens on, and no timeout (0) but the refusal. */
static void test_refused(void)
{
    struct state s;
    run_case(&s, 100, DEAD, 0, "ca=%s", ca_cert);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 0);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ECONNREFUSED);
    state_destroy(&s);
}

/* A listener with verify=require takes the CA's client certificate. */
static void test_client_cert(void)
{
    struct state s;
    run_case(&s, 300000, L_MTLS, 5000, "ca=%s&cert=%s&key=%s", ca_cert, cli_cert, cli_key);
    expect_echoed(&s, 300000);
    EXPECT_EQ_INT(th_counter_get(&s.in_opened), 1);
    state_destroy(&s);
}

/* ... and refuses a client without one: under TLS 1.3 the client's side of
 * the handshake ends first, so opened may fire, but closed brings an error
 * and no byte comes back. */
static void test_client_cert_missing(void)
{
    struct state s;
    run_case(&s, 100, L_MTLS, 5000, "ca=%s", ca_cert);
    EXPECT_LT_INT(atomic_load(&s.close_err), 0);
    EXPECT_EQ_SIZE(atomic_load(&s.got), 0);
    EXPECT_EQ_INT(th_counter_get(&s.in_opened), 0);
    state_destroy(&s);
}

/* tls+unix://: the certificate checked against sni=, as there is no
 * address to check it against; with verify=none, no name is needed. */
static void test_unix(void)
{
    struct state s;
    size_t n = (size_t)256 << 10;
    run_case(&s, n, L_UNIX, 5000, "ca=%s&sni=localhost", ca_cert);
    expect_echoed(&s, n);
    EXPECT_FALSE(atomic_load(&s.mismatch));
    EXPECT_TRUE(atomic_load(&s.out_is_tls));
    state_destroy(&s);
    run_case(&s, 100, L_UNIX, 5000, "verify=none");
    expect_echoed(&s, 100);
    state_destroy(&s);
    run_case(&s, 100, L_UNIX, 5000, "ca=%s&sni=evn.invalid", ca_cert);
    expect_rejected(&s, -EACCES, "certificate verify failed");
    state_destroy(&s);
}

/* ---- several loops connecting at once ---- */

/* Every connection accepted on the plain listener makes its loop open a TLS
 * connection to listener 0, so that loops build and share one client
 * context at the same time (ThreadSanitizer watches). */
#define NMULTI 12

static evn_action multi_opened(evn_conn *c)
{
    struct state *s = S(c);
    if (evn_conn_listener(c) == L_SILENT) {
        if (evn_connect(evn_conn_server(c), s->target, 5000, NULL, NULL) != 0)
            atomic_store(&s->mismatch, 1);
    } else if (evn_conn_listener(c) == EVN_OUTBOUND) {
        evn_write(c, "hello", 5);
        th_counter_add(&s->out_opened, 1);
    }
    return EVN_NONE;
}

static evn_action multi_data(evn_conn *c, const char *in, size_t len)
{
    if (!in || evn_conn_listener(c) == L_SILENT)
        return EVN_NONE;
    if (evn_conn_listener(c) != EVN_OUTBOUND) {
        evn_write(c, in, len);
        return EVN_NONE;
    }
    if (len < 5) {
        evn_keep(c, len);
        return EVN_NONE;
    }
    if (len != 5 || memcmp(in, "hello", 5) != 0)
        atomic_store(&S(c)->mismatch, 1);
    return EVN_CLOSE;
}

static evn_action multi_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (evn_conn_listener(c) == EVN_OUTBOUND) {
        if (err)
            atomic_store(&s->close_err, err);
        th_counter_add(&s->out_closed, 1);
    }
    return EVN_NONE;
}

static void test_many_loops(void)
{
    struct state s;
    state_init(&s, 0);
    th_server ts;
    evn_events ev = {0};
    ev.nloops = 3;
    ev.opened = multi_opened;
    ev.data = multi_data;
    ev.closed = multi_closed;
    server_new_ev(&ts, &s, &ev);
    snprintf(s.target, sizeof s.target, "tls://127.0.0.1:%d?ca=%s&sni=localhost",
             th_server_port(&ts, L_TLS), ca_cert);
    th_server_run(&ts);
    int fds[NMULTI];
    for (int i = 0; i < NMULTI; i++)
        fds[i] = th_connect_srv(&ts, L_SILENT);
    TH_WAIT_COUNTER(&s.out_closed, NMULTI);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), NMULTI);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    EXPECT_FALSE(atomic_load(&s.mismatch));
    EXPECT_EQ_SIZE(evn__tls_clients_count(ts.srv), 1);
    for (int i = 0; i < NMULTI; i++)
        close(fds[i]);
    th_server_stop(&ts);
    state_destroy(&s);
}

/* ---- session resumption ---- */

/* Connections made one after another, each to targets[k]: which of them
 * resumed, as the client and as the listener saw it. */
#define NRESUME 36
static struct {
    char targets[NRESUME][700];
    atomic_int k; /* the connection under way */
    atomic_int out_resumed[NRESUME], in_resumed[NRESUME], plain_says[NRESUME];
} rs;

static evn_action resume_opened(evn_conn *c)
{
    struct state *s = S(c);
    int k = atomic_load(&rs.k);
    if (evn_conn_listener(c) == L_SILENT) {
        atomic_store(&rs.plain_says[k], evn_conn_tls_resumed(c));
        if (evn_connect(evn_conn_server(c), rs.targets[k], 5000, NULL, NULL) != 0)
            atomic_store(&s->mismatch, 1);
    } else if (evn_conn_listener(c) == EVN_OUTBOUND) {
        atomic_store(&rs.out_resumed[k], evn_conn_tls_resumed(c));
        evn_write(c, "hello", 5);
        th_counter_add(&s->out_opened, 1);
    } else {
        atomic_store(&rs.in_resumed[k], evn_conn_tls_resumed(c));
    }
    return EVN_NONE;
}

/* A server whose plain listener makes its loop connect to rs.targets[k]. */
static void resume_server(th_server *ts, struct state *s)
{
    state_init(s, 0);
    evn_events ev = {0};
    ev.opened = resume_opened;
    ev.data = multi_data;
    ev.closed = multi_closed;
    server_new_ev(ts, s, &ev);
}

/* Connect to the first n targets one after another; want[k]: whether the
 * k-th resumes, as the client and as the listener see it. */
static void resume_run(th_server *ts, struct state *s, int n, const int *want)
{
    th_server_run(ts);
    for (int k = 0; k < n; k++) {
        atomic_store(&rs.k, k);
        int fd = th_connect_srv(ts, L_SILENT);
        TH_WAIT_COUNTER(&s->out_closed, k + 1);
        close(fd);
    }
    EXPECT_EQ_INT(th_counter_get(&s->out_opened), n);
    EXPECT_EQ_ERR(atomic_load(&s->close_err), 0);
    EXPECT_FALSE(atomic_load(&s->mismatch));
    for (int k = 0; k < n; k++) {
        if (atomic_load(&rs.out_resumed[k]) != want[k] || atomic_load(&rs.in_resumed[k]) != want[k])
            th_fail_(__FILE__, __LINE__, false, "connection %d (%s): resumed %d/%d, want %d", k,
                     rs.targets[k], atomic_load(&rs.out_resumed[k]), atomic_load(&rs.in_resumed[k]),
                     want[k]);
        EXPECT_EQ_INT(atomic_load(&rs.plain_says[k]), 0); /* not TLS at all */
    }
    th_server_stop(ts);
    state_destroy(s);
}

/*
 * A connection resumes the session the last one to the same address, port
 * and sni= (with the same options) was given; the listener sees the same.
 * Under TLS 1.3 each ticket is used once, and the resumed connection's own
 * ticket serves the next. Another sni= or another option set starts afresh.
 */
static void test_resumes(void)
{
    struct state s;
    th_server ts;
    resume_server(&ts, &s);
    int port = th_server_port(&ts, L_TLS);
    /* The last two go to the unix listener: another destination. */
    enum { N = 8 };
    const char *q[N] = {"sni=localhost",         "sni=localhost", "sni=localhost", "",
                        "sni=localhost&alpn=h2", "sni=localhost", "sni=localhost", "sni=localhost"};
    const int want[N] = {0, 1, 1, 0, 0, 1, 0, 1};
    for (int k = 0; k < N - 2; k++)
        snprintf(rs.targets[k], sizeof rs.targets[k], "tls://127.0.0.1:%d?ca=%s%s%s", port, ca_cert,
                 *q[k] ? "&" : "", q[k]);
    for (int k = N - 2; k < N; k++)
        snprintf(rs.targets[k], sizeof rs.targets[k], "tls+unix://%s?ca=%s&%s", unix_path, ca_cert,
                 q[k]);
    resume_run(&ts, &s, N, want);
}

/*
 * A loop keeps sessions for 32 destinations: after 32 others, the first is
 * gone (a full handshake again), while the last ones are still there.
 * Destinations differ by sni= here (verify=none, as the certificate is for
 * localhost only).
 */
static void test_resume_evicts(void)
{
    struct state s;
    th_server ts;
    resume_server(&ts, &s);
    int port = th_server_port(&ts, L_TLS);
    /* h0, h1 .. h32 (full), h0 again (evicted: full, evicting h1), h32 and
     * h2 (still kept). */
    const int name[NRESUME] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                               12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                               24, 25, 26, 27, 28, 29, 30, 31, 32, 0,  32, 2};
    int want[NRESUME] = {0};
    want[34] = want[35] = 1;
    for (int k = 0; k < NRESUME; k++)
        snprintf(rs.targets[k], sizeof rs.targets[k], "tls://127.0.0.1:%d?verify=none&sni=h%d",
                 port, name[k]);
    resume_run(&ts, &s, NRESUME, want);
}

/* Bad files and options: refused by evn_connect itself, with no event. */
static evn_action bad_serving(evn_server *srv)
{
    int *all_ok = evn_server_udata(srv);
    struct {
        char url[800];
        int rc;
        const char *msg;
    } cases[12];
    size_t n = 0;
#define CASE(rc_, msg_, ...)                                                                       \
    do {                                                                                           \
        snprintf(cases[n].url, sizeof cases[n].url, __VA_ARGS__);                                  \
        cases[n].rc = rc_;                                                                         \
        cases[n].msg = msg_;                                                                       \
        n++;                                                                                       \
    } while (0)
    CASE(-ENOENT, missing_file, "tls://127.0.0.1:1?ca=%s", missing_file);
    CASE(-EINVAL, junk_file, "tls://127.0.0.1:1?ca=%s", junk_file);
    CASE(-EINVAL, "cannot use cert", "tls://127.0.0.1:1?cert=%s&key=%s", junk_file, cli_key);
    CASE(-EINVAL, "cannot use key", "tls://127.0.0.1:1?cert=%s&key=%s", cli_cert, srv_key);
    CASE(-ENOENT, missing_file, "tls://127.0.0.1:1?cert=%s&key=%s", cli_cert, missing_file);
    CASE(-EINVAL, "both cert= and key=", "tls://127.0.0.1:1?cert=%s", cli_cert);
    CASE(-EINVAL, "verify=require or verify=none", "tls://127.0.0.1:1?verify=optional");
    CASE(-EINVAL, "listeners", "tls://127.0.0.1:1?reuseport=true");
    CASE(-EINVAL, "only for tls://", "tcp://127.0.0.1:1?ca=%s", ca_cert);
    CASE(-EINVAL, "host name", "tls://bad!name:1?verify=none");
    CASE(-EINVAL, "empty protocol name", "tls://127.0.0.1:1?alpn=h2,,x");
    CASE(-EINVAL, "needs sni=", "tls+unix://%s?ca=%s", unix_path, ca_cert);
#undef CASE
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        int rc = evn_connect(srv, cases[i].url, 0, NULL, NULL);
        if (rc != cases[i].rc || !strstr(evn_errmsg(), cases[i].msg)) {
            fprintf(stderr, "evn_connect(%s) = %d, \"%s\"\n", cases[i].url, rc, evn_errmsg());
            ok = 0;
        }
    }
    /* Only the good option sets are kept, one context each however many
     * connections use them. */
    char good[600], other[600];
    snprintf(good, sizeof good, "tls://127.0.0.1:%d?ca=%s", th_closed_port(), ca_cert);
    snprintf(other, sizeof other, "tls://127.0.0.1:%d?ca=%s&sni=localhost&alpn=h2",
             th_closed_port(), ca_cert);
    for (int i = 0; i < 3; i++)
        if (evn_connect(srv, good, 0, NULL, NULL) != 0)
            ok = 0;
    if (evn_connect(srv, other, 0, NULL, NULL) != 0)
        ok = 0;
    size_t nctx = evn__tls_clients_count(srv);
    if (nctx != 2) {
        fprintf(stderr, "%zu client contexts, want 2\n", nctx);
        ok = 0;
    }
    *all_ok = ok;
    return EVN_SHUTDOWN;
}

static void test_bad_options(void)
{
    int all_ok = 0;
    th_server ts;
    evn_events ev = {0};
    ev.udata = &all_ok;
    ev.serving = bad_serving;
    const char *addr = "tcp://127.0.0.1:0";
    th_server_new(&ts, &ev, &addr, 1);
    th_server_run(&ts);
    th_server_join(&ts);
    EXPECT_EQ_INT(all_ok, 1);
    th_server_free(&ts);
    /* sni= is for evn_connect only. */
    char url[700];
    snprintf(url, sizeof url, "tls://127.0.0.1:0?cert=%s&key=%s&sni=x", srv_cert, srv_key);
    const char *a = url;
    evn_server *srv;
    EXPECT_EQ_ERR(evn_server_new(&srv, &ev, &a, 1), -EINVAL);
    EXPECT_CONTAINS(evn_errmsg(), "only for evn_connect");
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    if (!th_have_command("openssl")) {
        th_missing_tool("openssl", "openssl");
        return th_finish();
    }
    if (!make_files())
        th_fail_(__FILE__, __LINE__, true, "the openssl command could not make the certificates");
    TH_RUN(test_echo_1mb);
    TH_RUN(test_verify_sni);
    TH_RUN(test_wrong_ca);
    TH_RUN(test_wrong_sni);
    TH_RUN(test_wrong_ip);
    TH_RUN(test_default_verifies);
    TH_RUN(test_verify_none);
    TH_RUN(test_handshake_timeout);
    TH_RUN(test_refused);
    TH_RUN(test_unix);
    TH_RUN(test_client_cert);
    TH_RUN(test_client_cert_missing);
    TH_RUN(test_many_loops);
    TH_RUN(test_resumes);
    TH_RUN(test_resume_evicts);
    TH_RUN(test_bad_options);
    return th_finish();
}
#endif
