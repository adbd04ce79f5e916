/*
 * PROXY protocol headers on real connections: listeners with proxy= read
 * the header before anything else and give the client it names as the
 * remote address; evn_connect_proxy_header sends one.
 *
 * Every server here answers a new connection with the remote address it
 * sees ("1.2.3.4:5\n", from evn_conn_remote_str in opened), then echoes.
 * What is proved: v1 and v2 headers over TCP4 and TCP6 give their client,
 * on TCP and unix listeners; v1 UNKNOWN and v2 LOCAL leave the socket's
 * peer; a header written a byte
 * at a time (each byte taken by the server before the next is sent) is
 * read whole; a header and data in one write give data exactly the data;
 * bad, too long, missing, cut-short and late headers, a header of the
 * version not accepted and peers outside proxy_from close only their own
 * connection, silently (no opened, no closed), and are counted in the
 * server's refused_proxy statistic, while another connection on the same server is
 * served; a peer that leaves before a byte is not counted; every
 * allocation on the way can fail without harm beyond its connection; a tls://
 * listener reads the header before the handshake; a header sent by
 * evn_connect_proxy_header, plain and before TLS, reaches a proxy=
 * listener intact; the function's errors.
 */
#include "harness.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef EVN_HAVE_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* ---- the server ---- */

struct state {
    th_counter opened, closed, relayed;
    atomic_long data_bytes;
    /* The relay test: evn_connect goes to listener 0's URL with these
     * options, and asks for this header. */
    bool relay;
    char target_opts[64];
    int version;
    bool local;
    struct sockaddr_storage src, dst;
    /* The errors of evn_connect_proxy_header seen inside the callbacks. */
    atomic_int rc_first, rc_again, rc_after_open;
};

/* A relayed pair: the client's connection and the outbound one. */
struct pair {
    evn_id other;
};

static struct state *st(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static void relay_open(evn_conn *c)
{
    struct state *s = st(c);
    evn_server *srv = evn_conn_server(c);
    struct pair *p = calloc(1, sizeof *p);
    ASSERT_NOT_NULL(p);
    struct pair *q = calloc(1, sizeof *q);
    ASSERT_NOT_NULL(q);
    q->other = evn_conn_id(c);
    char url[256];
    snprintf(url, sizeof url, "%s%s", evn_server_url(srv, 0), s->target_opts);
    evn_id id;
    ASSERT_EQ_ERR(evn_connect(srv, url, 0, q, &id), 0);
    p->other = id;
    evn_conn_set_udata(c, p);
    const struct sockaddr *src = s->local ? NULL : (const struct sockaddr *)&s->src;
    const struct sockaddr *dst = s->local ? NULL : (const struct sockaddr *)&s->dst;
    atomic_store(&s->rc_first, evn_connect_proxy_header(srv, id, s->version, src, dst));
    atomic_store(&s->rc_again, evn_connect_proxy_header(srv, id, s->version, src, dst));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = st(c);
    size_t l = evn_conn_listener(c);
    if (l == EVN_OUTBOUND) {
        atomic_store(&s->rc_after_open, evn_connect_proxy_header(evn_conn_server(c), evn_conn_id(c),
                                                                 EVN_PROXY_V2, NULL, NULL));
    } else if (l == 1 && s->relay) {
        /* The relay's entry: nothing written, the target answers. */
        relay_open(c);
    } else {
        char buf[128];
        int n = evn_conn_remote_str(c, buf, sizeof buf - 1);
        EXPECT_GE_INT(n, 0);
        if (n >= 0) {
            buf[n++] = '\n';
            /* Out of memory only in test_alloc_faults, and then the
             * connection closes. */
            int rc = evn_write(c, buf, (size_t)n);
            EXPECT_TRUE(rc == 0 || rc == -ENOMEM);
        }
    }
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = st(c);
    struct pair *p = evn_conn_udata(c);
    if (!in)
        return EVN_NONE;
    atomic_fetch_add(&s->data_bytes, (long)len);
    if (p) {
        /* Relayed, either way, to the other connection of the pair. */
        int rc = evn_send(evn_conn_server(c), p->other, in, len);
        EXPECT_EQ_ERR(rc, 0);
        th_counter_add(&s->relayed, 1);
        return EVN_NONE;
    }
    int rc = evn_write(c, in, len);
    EXPECT_TRUE(rc == 0 || rc == -ENOMEM);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct pair *p = evn_conn_udata(c);
    free(p);
    th_counter_add(&st(c)->closed, 1);
    return EVN_NONE;
}

static void state_init(struct state *s)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->relayed);
}

/* Start a server with s, made with state_init and set up since. */
static void start_with(th_server *ts, struct state *s, const char *const *addrs, size_t n)
{
    evn_events ev = {0};
    ev.udata = s;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.closed = on_closed;
    th_server_start(ts, &ev, addrs, n);
}

static void start(th_server *ts, struct state *s, const char *const *addrs, size_t n)
{
    state_init(s);
    start_with(ts, s, addrs, n);
}

/* Stop the server and return its refused_proxy count (evn_server_stats),
 * read once the loops are done. */
static uint64_t finish(th_server *ts, struct state *s)
{
    evn_shutdown(ts->srv);
    th_server_join(ts);
    evn_stats st;
    EXPECT_EQ_ERR(evn_server_stats(ts->srv, EVN_STATS_ALL, &st), 0);
    uint64_t errors = st.refused_proxy;
    th_server_free(ts);
    EXPECT_EQ_INT(th_counter_get(&s->opened), th_counter_get(&s->closed));
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->relayed);
    return errors;
}

/* ---- headers, written by hand ---- */

static const unsigned char sig2[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A v2 header: PROXY over TCP from src to dst (both IPv4 or both IPv6,
 * as text), or LOCAL with src NULL. Returns its length. */
static size_t v2(unsigned char *out, const char *src, int sport, const char *dst, int dport)
{
    memcpy(out, sig2, 12);
    if (!src) {
        out[12] = 0x20;
        out[13] = 0x00;
        out[14] = out[15] = 0;
        return 16;
    }
    bool six = strchr(src, ':') != NULL;
    size_t alen = six ? 16 : 4;
    out[12] = 0x21;
    out[13] = six ? 0x21 : 0x11;
    size_t len = 2 * alen + 4;
    out[14] = 0;
    out[15] = (unsigned char)len;
    ASSERT_EQ_INT(inet_pton(six ? AF_INET6 : AF_INET, src, out + 16), 1);
    ASSERT_EQ_INT(inet_pton(six ? AF_INET6 : AF_INET, dst, out + 16 + alen), 1);
    out[16 + 2 * alen] = (unsigned char)(sport >> 8);
    out[17 + 2 * alen] = (unsigned char)sport;
    out[18 + 2 * alen] = (unsigned char)(dport >> 8);
    out[19 + 2 * alen] = (unsigned char)dport;
    return 16 + len;
}

/* The server's first line on fd: the remote address it sees. */
static void expect_remote(int fd, const char *want)
{
    char line[160];
    snprintf(line, sizeof line, "%s\n", want);
    EXPECT_READ_STR(fd, line);
}

/* "127.0.0.1:PORT" of fd's own end: the socket's peer as the server sees it. */
static void own_addr(int fd, char *buf, size_t size)
{
    snprintf(buf, size, "127.0.0.1:%d", th_sock_port(fd, false));
}

static void echo_check(int fd, const char *msg)
{
    th_write_str(fd, msg);
    EXPECT_READ_STR(fd, msg);
}

/* ---- header kinds ---- */

static const char *const any_addr[] = {"tcp://127.0.0.1:0?proxy=any"};

/* Each kind of header gives its client, or the socket's peer. */
static void test_header_kinds(void)
{
    th_server ts;
    struct state s;
    start(&ts, &s, any_addr, 1);
    unsigned char h[64];
    char own[64];
    struct {
        const char *text; /* v1, or NULL for the v2 below */
        const char *src, *dst;
        int sport, dport;
        const char *want; /* NULL: the socket's peer */
    } cases[] = {
        {"PROXY TCP4 192.0.2.10 198.51.100.1 40000 443\r\n", 0, 0, 0, 0, "192.0.2.10:40000"},
        {"PROXY TCP6 2001:db8::7 2001:db8::1 65535 80\r\n", 0, 0, 0, 0, "[2001:db8::7]:65535"},
        {"PROXY UNKNOWN\r\n", 0, 0, 0, 0, NULL},
        {"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", 0, 0, 0, 0, NULL},
        {NULL, "203.0.113.5", "203.0.113.200", 1234, 8080, "203.0.113.5:1234"},
        {NULL, "2001:db8:1::42", "2001:db8:2::1", 1, 443, "[2001:db8:1::42]:1"},
        {NULL, "::ffff:192.0.2.33", "::ffff:192.0.2.1", 2222, 80, "[::ffff:192.0.2.33]:2222"},
        {NULL, NULL, NULL, 0, 0, NULL}, /* LOCAL */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = th_connect_srv(&ts, 0);
        if (cases[i].text)
            th_write_str(fd, cases[i].text);
        else
            th_write_all(fd, h, v2(h, cases[i].src, cases[i].sport, cases[i].dst, cases[i].dport));
        own_addr(fd, own, sizeof own);
        expect_remote(fd, cases[i].want ? cases[i].want : own);
        echo_check(fd, "after the header");
        close(fd);
    }
    EXPECT_EQ_INT(finish(&ts, &s), 0);
}

/*
 * Round trips on another connection of the same server (one loop), so that
 * a byte written before them has been taken by the server: the first echo
 * comes from a turn whose events include the byte's (loopback delivers in
 * order) or a later one, though maybe before the byte's within that turn;
 * the second comes from a later turn still.
 */
static void barrier(int probe)
{
    echo_check(probe, ".");
    echo_check(probe, ":");
}

static int probe_conn(th_server *ts, size_t i)
{
    int fd = th_connect_srv(ts, i);
    th_write_str(fd, "PROXY TCP4 10.9.9.9 10.0.0.1 9999 80\r\n");
    expect_remote(fd, "10.9.9.9:9999");
    return fd;
}

/* A unix listener: the header's TCP client, or (LOCAL) the socket's own
 * peer, an unnamed unix socket, "". */
static void test_unix_listener(void)
{
    TH_NEED_UNIX_SOCKETS();
    char path[256], url[300];
    th_tmppath(path, sizeof path, "proxy.sock");
    snprintf(url, sizeof url, "unix://%s?proxy=any", path);
    const char *addr = url;
    th_server ts;
    struct state s;
    start(&ts, &s, &addr, 1);
    unsigned char h[64];
    int fd = th_connect_srv(&ts, 0);
    th_write_all(fd, h, v2(h, "192.0.2.61", 6161, "192.0.2.1", 80));
    expect_remote(fd, "192.0.2.61:6161");
    echo_check(fd, "over unix");
    close(fd);
    fd = th_connect_srv(&ts, 0);
    th_write_all(fd, h, v2(h, NULL, 0, NULL, 0));
    expect_remote(fd, "");
    echo_check(fd, "local");
    close(fd);
    EXPECT_EQ_INT(finish(&ts, &s), 0);
}

/* A header a byte at a time, v1 and v2, then data: read whole. */
static void test_split_header(void)
{
    th_server ts;
    struct state s;
    start(&ts, &s, any_addr, 1);
    int probe = probe_conn(&ts, 0);
    unsigned char h[64];
    const char *v1 = "PROXY TCP4 192.0.2.77 192.0.2.1 1001 2002\r\n";
    size_t v2len = v2(h, "2001:db8::77", 3003, "2001:db8::1", 4004);
    for (int k = 0; k < 2; k++) {
        const unsigned char *p = k == 0 ? (const unsigned char *)v1 : h;
        size_t n = k == 0 ? strlen(v1) : v2len;
        int fd = th_connect_srv(&ts, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (size_t i = 0; i < n; i++) {
            th_write_all(fd, p + i, 1);
            barrier(probe);
        }
        expect_remote(fd, k == 0 ? "192.0.2.77:1001" : "[2001:db8::77]:3003");
        echo_check(fd, "whole");
        close(fd);
    }
    close(probe);
    EXPECT_EQ_INT(finish(&ts, &s), 0);
}

/* A header and data in one write, and a header and a large burst: data
 * gets exactly the bytes after the header. */
static void test_header_and_data(void)
{
    th_server ts;
    struct state s;
    start(&ts, &s, any_addr, 1);
    unsigned char buf[64 + 100000];
    for (int k = 0; k < 2; k++) {
        size_t hl;
        if (k == 0) {
            const char *v1 = "PROXY TCP4 192.0.2.1 192.0.2.2 5 6\r\n";
            hl = strlen(v1);
            memcpy(buf, v1, hl);
        } else {
            hl = v2(buf, "192.0.2.1", 5, "192.0.2.2", 6);
        }
        size_t dl = k == 0 ? 5 : 100000;
        for (size_t i = 0; i < dl; i++)
            buf[hl + i] = (unsigned char)('a' + i % 26);
        atomic_store(&s.data_bytes, 0);
        int fd = th_connect_srv(&ts, 0);
        char line[64];
        unsigned char *back = malloc(dl);
        ASSERT_NOT_NULL(back);
        /* The server's line and the echo come back while we write. */
        ssize_t got = th_transfer(fd, buf, hl + dl, line, strlen("192.0.2.1:5\n"));
        EXPECT_EQ_INT(got, (long)strlen("192.0.2.1:5\n"));
        EXPECT_MEMEQ(line, "192.0.2.1:5\n", strlen("192.0.2.1:5\n"));
        EXPECT_EQ_INT(th_read_exact(fd, back, dl), (long)dl);
        EXPECT_MEMEQ(back, buf + hl, dl);
        EXPECT_EQ_INT(atomic_load(&s.data_bytes), (long)dl);
        free(back);
        close(fd);
    }
    EXPECT_EQ_INT(finish(&ts, &s), 0);
}

/* ---- refusals ---- */

/* fd is closed by the server without a byte sent to it. */
static void expect_refused(int fd)
{
    char b[16];
    ssize_t n = th_read_some(fd, b, sizeof b);
    /* An end of input, or a reset for the bytes the server did not read. */
    EXPECT_TRUE(n == 0 || n == -ECONNRESET);
    close(fd);
}

/* Each bad header closes its connection only, silently, and counts. */
static void test_bad_headers(void)
{
    const char *addrs[] = {"tcp://127.0.0.1:0?proxy=any", "tcp://127.0.0.1:0?proxy=v1",
                           "tcp://127.0.0.1:0?proxy=v2&proxy_timeout=50"};
    th_server ts;
    struct state s;
    start(&ts, &s, addrs, 3);
    int probe = probe_conn(&ts, 0);
    long opened = th_counter_get(&s.opened);
    unsigned char h[64];
    uint64_t want = 0;

    /* Not a header: a client speaking to the listener directly. */
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_refused(fd);
    want++;
    /* Malformed v1: a port out of range; v2: version 3. */
    fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "PROXY TCP4 1.2.3.4 5.6.7.8 70000 80\r\n");
    expect_refused(fd);
    want++;
    fd = th_connect_srv(&ts, 0);
    size_t n = v2(h, "1.2.3.4", 1, "5.6.7.8", 2);
    h[12] = 0x31;
    th_write_all(fd, h, n);
    expect_refused(fd);
    want++;
    /* Too long: a v1 line with no end within 107 bytes, a v2 header
     * announcing more than 4096. */
    fd = th_connect_srv(&ts, 0);
    char longline[200];
    memset(longline, '1', sizeof longline);
    memcpy(longline, "PROXY TCP4 ", 11);
    th_write_all(fd, longline, sizeof longline);
    expect_refused(fd);
    want++;
    fd = th_connect_srv(&ts, 0);
    n = v2(h, "1.2.3.4", 1, "5.6.7.8", 2);
    h[14] = 0x10;
    h[15] = 0x00;
    th_write_all(fd, h, n);
    expect_refused(fd);
    want++;
    /* A v2 header where only v1 is accepted. */
    fd = th_connect_srv(&ts, 1);
    th_write_all(fd, h, v2(h, "1.2.3.4", 1, "5.6.7.8", 2));
    expect_refused(fd);
    want++;
    /* Cut short: the peer ends its input in the middle. */
    fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "PROXY TCP4 1.2.3");
    shutdown(fd, SHUT_WR);
    expect_refused(fd);
    want++;
    /* Late: half a header, then nothing (proxy_timeout=50). */
    fd = th_connect_srv(&ts, 2);
    th_write_all(fd, sig2, 8);
    expect_refused(fd);
    want++;
    /* Nothing at all, then late. */
    fd = th_connect_srv(&ts, 2);
    expect_refused(fd);
    want++;
    /* Gone before a byte: not counted. */
    fd = th_connect_srv(&ts, 0);
    close(fd);
    /* The probe connected before all this is still served. */
    echo_check(probe, "still here");
    /* And a new good one. */
    fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "PROXY TCP4 10.1.1.1 10.0.0.1 1 2\r\n");
    expect_remote(fd, "10.1.1.1:1");
    close(fd);
    close(probe);
    /* None of the refused connections was opened. */
    TH_WAIT_COUNTER(&s.closed, opened + 1);
    EXPECT_EQ_INT(th_counter_get(&s.opened), opened + 1);
    EXPECT_EQ_INT(finish(&ts, &s), want);
}

/* proxy_from: a peer outside the list is refused (counted) before it
 * sends anything; one inside is served. */
static void test_proxy_from(void)
{
    const char *addrs[] = {"tcp://127.0.0.1:0?proxy=v1&proxy_from=10.0.0.0/8,::1",
                           "tcp://127.0.0.1:0?proxy=v1&proxy_from=192.0.2.1,127.0.0.0/8"};
    th_server ts;
    struct state s;
    start(&ts, &s, addrs, 2);
    int fd = th_connect_srv(&ts, 0);
    expect_refused(fd);
    fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "PROXY TCP4 10.1.1.1 10.0.0.1 1 2\r\n");
    expect_refused(fd);
    fd = th_connect_srv(&ts, 1);
    th_write_str(fd, "PROXY TCP4 10.1.1.1 10.0.0.1 1 2\r\n");
    expect_remote(fd, "10.1.1.1:1");
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(finish(&ts, &s), 2);
}

/* ---- memory ---- */

/* Read want, or up to the server's close: true if all of want came. */
static bool served(int fd, const char *want)
{
    char buf[128];
    size_t got = 0, n = strlen(want);
    while (got < n) {
        ssize_t r = th_read_some(fd, buf + got, n - got);
        if (r <= 0) {
            EXPECT_TRUE(r == 0 || r == -ECONNRESET);
            return false;
        }
        got += (size_t)r;
    }
    EXPECT_MEMEQ(buf, want, n);
    return true;
}

/* Every allocation made while headers arrive (a start, then the rest, then
 * data) can fail: the connection concerned is served or closed, and
 * nothing leaks (the harness counts). Run with the k-th allocation failing,
 * for k = 1, 2, ... until a run makes fewer than k. */
static void test_alloc_faults(void)
{
    unsigned char h[64];
    size_t n = v2(h, "192.0.2.5", 55, "192.0.2.1", 80);
    long k;
    for (k = 1; k < 500; k++) {
        th_server ts;
        struct state s;
        start(&ts, &s, any_addr, 1);
        th_alloc_fail_nth(k);
        int ok = 0;
        for (int i = 0; i < 3; i++) {
            int fd = th_connect_srv(&ts, 0);
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            /* The server may close at any point: no write may fail the
             * test, the reads tell. */
            (void)!send(fd, h, 5, MSG_NOSIGNAL);
            (void)!send(fd, h + 5, n - 5, MSG_NOSIGNAL);
            (void)!send(fd, "ping", 4, MSG_NOSIGNAL);
            ok += served(fd, "192.0.2.5:55\nping");
            close(fd);
        }
        bool over = th_alloc_fail_pending() > 0;
        th_alloc_fail_nth(0);
        EXPECT_EQ_INT(finish(&ts, &s), 0);
        /* One failure closes one connection at most. */
        EXPECT_GE_INT(ok, 2);
        if (over)
            break;
    }
    EXPECT_LT_INT(k, 500);
}

/* ---- outbound ---- */

/* A client connects to listener 1, whose opened connects to listener 0
 * (proxy=...) with a header; listener 0's answer, the remote address it
 * sees, comes back to the client through the pair. */
static void relay_case(const char *target_opts, int version, const char *src, int sport,
                       const char *dst, int dport, const char *want)
{
    char target[160];
    snprintf(target, sizeof target, "tcp://127.0.0.1:0?%s", target_opts);
    const char *addrs[] = {target, "tcp://127.0.0.1:0"};
    th_server ts;
    struct state s;
    state_init(&s);
    s.relay = true;
    s.version = version;
    s.local = src == NULL;
    if (src) {
        socklen_t len;
        ASSERT_EQ_INT(th_make_addr(src, sport, &s.src, &len), 0);
        ASSERT_EQ_INT(th_make_addr(dst, dport, &s.dst, &len), 0);
    }
    start_with(&ts, &s, addrs, 2);
    int fd = th_connect_srv(&ts, 1);
    if (want) {
        expect_remote(fd, want);
    } else {
        /* LOCAL: the target sees the outbound socket itself. */
        char line[64];
        ssize_t n = th_read_some(fd, line, sizeof line - 1);
        ASSERT_GT_INT(n, 0);
        line[n] = '\0';
        EXPECT_CONTAINS(line, "127.0.0.1:");
    }
    echo_check(fd, "through the pair");
    EXPECT_EQ_ERR(atomic_load(&s.rc_first), 0);
    EXPECT_EQ_ERR(atomic_load(&s.rc_again), -EALREADY);
    EXPECT_EQ_ERR(atomic_load(&s.rc_after_open), -EISCONN);
    close(fd);
    EXPECT_EQ_INT(finish(&ts, &s), 0);
}

static void test_outbound_v2(void)
{
    relay_case("proxy=v2", EVN_PROXY_V2, "198.51.100.7", 4242, "192.0.2.80", 80,
               "198.51.100.7:4242");
    relay_case("proxy=v2", EVN_PROXY_V2, "2001:db8::9", 65000, "2001:db8::1", 443,
               "[2001:db8::9]:65000");
    /* Mixed families: IPv6, the IPv4 one mapped. */
    relay_case("proxy=v2", EVN_PROXY_V2, "192.0.2.9", 9, "2001:db8::1", 443,
               "[::ffff:192.0.2.9]:9");
    relay_case("proxy=v2", EVN_PROXY_V2, NULL, 0, NULL, 0, NULL);
}

static void test_outbound_v1(void)
{
    relay_case("proxy=v1", EVN_PROXY_V1, "198.51.100.8", 1, "192.0.2.80", 80, "198.51.100.8:1");
    relay_case("proxy=any", EVN_PROXY_V1, "2001:db8::8", 2, "2001:db8::1", 80, "[2001:db8::8]:2");
    relay_case("proxy=v1", EVN_PROXY_V1, NULL, 0, NULL, 0, NULL);
}

/* The function's refusals, from a tick on the loop thread. */
static struct {
    int bad_version, one_addr, unix_addr, bad_id;
} errs;

static evn_action errs_tick(evn_server *srv, int64_t *delay_ms)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    const struct sockaddr *a = (const struct sockaddr *)&in;
    evn_id id;
    ASSERT_EQ_ERR(evn_connect(srv, evn_server_url(srv, 0), 0, NULL, &id), 0);
    errs.bad_version = evn_connect_proxy_header(srv, id, 3, NULL, NULL);
    errs.one_addr = evn_connect_proxy_header(srv, id, EVN_PROXY_V2, a, NULL);
    errs.unix_addr =
        evn_connect_proxy_header(srv, id, EVN_PROXY_V2, a, (const struct sockaddr *)&un);
    errs.bad_id = evn_connect_proxy_header(srv, id ^ 1, EVN_PROXY_V2, NULL, NULL);
    return EVN_SHUTDOWN;
}

static void test_outbound_errors(void)
{
    const char *addr = "tcp://127.0.0.1:0";
    evn_events ev = {0};
    ev.tick = errs_tick;
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    th_server_join(&ts);
    EXPECT_EQ_ERR(errs.bad_version, -EINVAL);
    EXPECT_EQ_ERR(errs.one_addr, -EINVAL);
    EXPECT_EQ_ERR(errs.unix_addr, -EAFNOSUPPORT);
    EXPECT_EQ_ERR(errs.bad_id, -EINVAL);
    /* Not on a loop thread. */
    EXPECT_EQ_ERR(evn_connect_proxy_header(ts.srv, 1, EVN_PROXY_V2, NULL, NULL), -EPERM);
    th_server_free(&ts);
}

/* ---- TLS ---- */

#ifdef EVN_HAVE_TLS
static char cert[256], key[256];

/* Read a line through TLS. */
static void ssl_expect(SSL *ssl, const char *want)
{
    char buf[128];
    size_t got = 0, n = strlen(want);
    while (got < n) {
        int r = SSL_read(ssl, buf + got, (int)(n - got));
        ASSERT_GT_INT(r, 0);
        got += (size_t)r;
    }
    EXPECT_MEMEQ(buf, want, n);
}

/* A tls:// listener with proxy=v2: the header, in the clear, then the
 * handshake; the application sees the header's client. */
static void test_tls_listener(void)
{
    if (!th_make_cert(cert, key, sizeof cert))
        return;
    char url[700];
    snprintf(url, sizeof url, "tls://127.0.0.1:0?cert=%s&key=%s&proxy=v2", cert, key);
    const char *addr = url;
    th_server ts;
    struct state s;
    start(&ts, &s, &addr, 1);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_NOT_NULL(ctx);
    for (int k = 0; k < 2; k++) {
        int fd = th_connect_srv(&ts, 0);
        unsigned char h[64];
        th_write_all(fd, h,
                     k == 0 ? v2(h, "192.0.2.44", 4444, "192.0.2.1", 443) : v2(h, 0, 0, 0, 0));
        SSL *ssl = SSL_new(ctx);
        ASSERT_NOT_NULL(ssl);
        SSL_set_fd(ssl, fd);
        ASSERT_EQ_INT(SSL_connect(ssl), 1);
        char own[64], line[80];
        own_addr(fd, own, sizeof own);
        snprintf(line, sizeof line, "%s\n", k == 0 ? "192.0.2.44:4444" : own);
        ssl_expect(ssl, line);
        ASSERT_EQ_INT(SSL_write(ssl, "secret", 6), 6);
        ssl_expect(ssl, "secret");
        SSL_free(ssl);
        close(fd);
    }
    /* A handshake without a header is refused and counted. */
    int fd = th_connect_srv(&ts, 0);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    EXPECT_TRUE(SSL_connect(ssl) != 1);
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    TH_WAIT_COUNTER(&s.closed, 2);
    EXPECT_EQ_INT(finish(&ts, &s), 1);
}

/* evn_connect to a tls:// proxy= listener: the header goes before the
 * handshake. */
static void test_outbound_tls(void)
{
    if (!th_make_cert(cert, key, sizeof cert))
        return;
    char target[700];
    snprintf(target, sizeof target, "tls://127.0.0.1:0?cert=%s&key=%s&proxy=v2", cert, key);
    const char *addrs[] = {target, "tcp://127.0.0.1:0"};
    th_server ts;
    struct state s;
    state_init(&s);
    s.relay = true;
    snprintf(s.target_opts, sizeof s.target_opts, "?verify=none");
    s.version = EVN_PROXY_V2;
    socklen_t len;
    ASSERT_EQ_INT(th_make_addr("203.0.113.99", 5555, &s.src, &len), 0);
    ASSERT_EQ_INT(th_make_addr("203.0.113.1", 443, &s.dst, &len), 0);
    start_with(&ts, &s, addrs, 2);
    int fd = th_connect_srv(&ts, 1);
    expect_remote(fd, "203.0.113.99:5555");
    echo_check(fd, "over tls");
    close(fd);
    EXPECT_EQ_INT(finish(&ts, &s), 0);
}
#endif

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_header_kinds);
    TH_RUN(test_unix_listener);
    TH_RUN(test_split_header);
    TH_RUN(test_header_and_data);
    TH_RUN(test_bad_headers);
    TH_RUN(test_proxy_from);
    TH_RUN(test_alloc_faults);
    TH_RUN(test_outbound_v2);
    TH_RUN(test_outbound_v1);
    TH_RUN(test_outbound_errors);
#ifdef EVN_HAVE_TLS
    TH_RUN(test_tls_listener);
    TH_RUN(test_outbound_tls);
#endif
    return th_finish();
}
