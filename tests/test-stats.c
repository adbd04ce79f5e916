/*
 * evn_server_stats: the counters are exact after a known workload, read
 * from any thread while the loops run, and from callbacks.
 *
 * - before the server runs every counter is 0; a loop out of range or a
 *   NULL argument is -EINVAL; a caller's smaller struct gets only the bytes
 *   it has, a larger one 0 past the fields this library knows; after
 *   evn_server_run has returned the final counts are still there;
 * - echo traffic on N connections, one after another, some of them large
 *   enough to take several reads and sends: exactly N accepted and closed,
 *   none open, and bytes in and out exactly what the clients sent;
 * - another thread sees a connection's bytes by the time its closed
 *   callback runs, before the loop's turn is over;
 * - on 3 loops round-robin: each loop took its third, and every per-loop
 *   field sums to the total;
 * - max_conns: the connection over it is refused, counted once, on the
 *   accepting loop, and not as accepted;
 * - TLS: a client that sends no TLS at all and one that sends nothing
 *   (the handshake times out) are refused_tls, accepted and closed, with no
 *   byte of input counted (only plaintext counts);
 * - evn_connect: counted as outbound, and its bytes too;
 * - UDP: bytes of datagrams and replies, no connection;
 * - from inside a data callback: the loop's own counters already hold the
 *   input being handed over, and one connection is open;
 * - turns and events grow with traffic, wait and work time never go back
 *   and are not 0 once the loop has waited and worked;
 * - a thread reading every loop's counters and the totals in a tight loop
 *   while clients come and go on 2 loops sees no counter go back (the
 *   ThreadSanitizer build checks that this is race-free).
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct state {
    th_counter opened, closed;
    /* With hold set, closed waits until released reaches the closes so far:
     * the loop's turn cannot end while the test reads. */
    bool hold;
    th_counter released;
    atomic_int opened_any; /* opened fired at all (TLS refusals: never) */
    /* From inside data callbacks (test_from_callback). */
    atomic_int in_cb_checks, in_cb_bad;
    uint64_t seen_in; /* input delivered so far, on the loop's thread only */
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    atomic_store(&S(c)->opened_any, 1);
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    th_counter_add(&s->closed, 1);
    if (s->hold)
        TH_WAIT_COUNTER(&s->released, th_counter_get(&s->closed));
    return EVN_NONE;
}

static evn_action on_echo(evn_conn *c, const char *in, size_t len)
{
    if (in)
        evn_write(c, in, len);
    return EVN_NONE;
}

static void state_init(struct state *s)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->released);
}

static void state_destroy(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->released);
}

static evn_events echo_events(struct state *s, int nloops)
{
    evn_events ev = {0};
    ev.nloops = nloops;
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_echo;
    return ev;
}

static evn_stats stats_of(const th_server *ts, int loop)
{
    evn_stats s;
    memset(&s, 0xab, sizeof s);
    ASSERT_EQ_INT(evn_server_stats(ts->srv, loop, &s), 0);
    return s;
}

/* Send n bytes of a pattern on a new connection, read the echo back, close,
 * and wait for the server to have closed it too. */
static void echo_once(th_server *ts, struct state *st, size_t n)
{
    long closed = th_counter_get(&st->closed);
    char *out = malloc(n), *in = malloc(n);
    ASSERT_TRUE(out && in);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)('a' + (i * 7 + n) % 26);
    int fd = th_connect_srv(ts, 0);
    EXPECT_EQ_INT(th_transfer(fd, out, n, in, n), (long long)n);
    EXPECT_MEMEQ(in, out, n);
    close(fd);
    TH_WAIT_COUNTER(&st->closed, closed + 1);
    free(out);
    free(in);
}

static void expect_no_refusals(const evn_stats *s)
{
    EXPECT_EQ_SIZE(s->refused_max_conns, 0);
    EXPECT_EQ_SIZE(s->refused_tls, 0);
    EXPECT_EQ_SIZE(s->refused_proxy, 0);
    EXPECT_EQ_SIZE(s->accept_gone, 0);
    EXPECT_EQ_SIZE(s->accept_failed, 0);
}

/* ---- the call itself ---- */

static void test_before_and_after_run(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, 2);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);

    /* Made, not run: all zero, for the server and each loop. */
    for (int loop = EVN_STATS_ALL; loop < 2; loop++) {
        evn_stats s = stats_of(&ts, loop);
        evn_stats zero;
        memset(&zero, 0, sizeof zero);
        EXPECT_MEMEQ(&s, &zero, sizeof s);
    }
    evn_stats s;
    EXPECT_EQ_ERR(evn_server_stats(ts.srv, 2, &s), -EINVAL);
    EXPECT_EQ_ERR(evn_server_stats(ts.srv, -2, &s), -EINVAL);
    EXPECT_EQ_ERR(evn_server_stats_sized(ts.srv, 0, NULL, sizeof s), -EINVAL);
    EXPECT_EQ_ERR(evn_server_stats_sized(NULL, 0, &s, sizeof s), -EINVAL);

    th_server_run(&ts);
    echo_once(&ts, &st, 100);

    /* A caller built against an evn.h whose evn_stats ended after
     * conns_accepted: nothing past it is written. */
    unsigned char small[sizeof(evn_stats)];
    size_t small_size = offsetof(evn_stats, conns_accepted) + sizeof(uint64_t);
    memset(small, 0xab, sizeof small);
    EXPECT_EQ_INT(evn_server_stats_sized(ts.srv, EVN_STATS_ALL, (evn_stats *)small, small_size), 0);
    EXPECT_EQ_SIZE(((evn_stats *)small)->conns_accepted, 1);
    for (size_t i = small_size; i < sizeof small; i++)
        if (small[i] != 0xab) {
            th_fail_(__FILE__, __LINE__, false, "byte %zu past the caller's size was written", i);
            break;
        }

    /* One built against a newer evn.h: what this library does not know is 0. */
    unsigned char big[sizeof(evn_stats) + 24];
    memset(big, 0xab, sizeof big);
    EXPECT_EQ_INT(evn_server_stats_sized(ts.srv, EVN_STATS_ALL, (evn_stats *)big, sizeof big), 0);
    EXPECT_EQ_SIZE(((evn_stats *)big)->bytes_in, 100);
    for (size_t i = sizeof(evn_stats); i < sizeof big; i++)
        if (big[i] != 0) {
            th_fail_(__FILE__, __LINE__, false, "byte %zu of a newer struct is not 0", i);
            break;
        }

    /* A connection still open when the server stops is closed by the stop,
     * and counted. */
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&st.opened, 2);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.conns_accepted, 2);
    EXPECT_EQ_SIZE(s.conns_closed, 2);
    EXPECT_EQ_SIZE(s.conns_open, 0);
    EXPECT_EQ_SIZE(s.bytes_in, 100);
    EXPECT_EQ_SIZE(s.bytes_out, 100);
    close(fd);
    th_server_free(&ts);
    state_destroy(&st);
}

/* ---- exact counts ---- */

static void test_echo_exact(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, 1);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);

    /* Small exchanges, and large ones that take many reads and sends. */
    static const size_t sizes[] = {1, 17, 1000, 4096, 65536 + 3, 1 << 20, 3 * (1 << 20) + 11, 5};
    const int n = (int)(sizeof sizes / sizeof sizes[0]);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        echo_once(&ts, &st, sizes[i]);
        total += sizes[i];
    }
    evn_stats s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.conns_accepted, n);
    EXPECT_EQ_SIZE(s.conns_outbound, 0);
    EXPECT_EQ_SIZE(s.conns_closed, n);
    EXPECT_EQ_SIZE(s.conns_open, 0);
    EXPECT_EQ_SIZE(s.bytes_in, total);
    EXPECT_EQ_SIZE(s.bytes_out, total);
    expect_no_refusals(&s);
    /* One loop: its counters are the server's. */
    evn_stats l0 = stats_of(&ts, 0);
    EXPECT_EQ_SIZE(l0.conns_accepted, s.conns_accepted);
    EXPECT_EQ_SIZE(l0.bytes_out, s.bytes_out);

    /* Open connections count while open. */
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&st.opened, n + 3);
    s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.conns_open, 3);
    EXPECT_EQ_SIZE(s.conns_accepted, n + 3);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&st.closed, n + 3);
    s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.conns_open, 0);
    EXPECT_EQ_SIZE(s.conns_closed, n + 3);

    th_server_stop(&ts);
    state_destroy(&st);
}

/* Echo, and close after a piece that ends with '!': the last output and
 * the close in one turn. */
static evn_action on_echo_close(evn_conn *c, const char *in, size_t len)
{
    on_echo(c, in, len);
    return in && len && in[len - 1] == '!' ? EVN_CLOSE : EVN_NONE;
}

/* Bytes show to other threads by the time closed runs, before the loop's
 * turn is over (closed is held here until the test has read them), also
 * those sent in that same turn. */
static void test_bytes_at_close(void)
{
    struct state st;
    state_init(&st);
    st.hold = true;
    evn_events ev = echo_events(&st, 1);
    ev.data = on_echo_close;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    char out[3000], in[3000];
    memset(out, 'b', sizeof out);
    uint64_t total = 0;
    for (int i = 1; i <= 3; i++) {
        size_t n = (size_t)i * 1000;
        out[n - 1] = '!';
        int fd = th_connect_srv(&ts, 0);
        EXPECT_EQ_INT(th_transfer(fd, out, n, in, n), (long long)n);
        out[n - 1] = 'b';
        close(fd);
        total += n;
        TH_WAIT_COUNTER(&st.closed, i);
        evn_stats s = stats_of(&ts, EVN_STATS_ALL);
        th_counter_add(&st.released, 1);
        EXPECT_EQ_SIZE(s.bytes_in, total);
        EXPECT_EQ_SIZE(s.bytes_out, total);
        EXPECT_EQ_SIZE(s.conns_closed, i);
    }
    th_server_stop(&ts);
    state_destroy(&st);
}

#define SUM_LOOPS 3

static void test_loops_sum(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, SUM_LOOPS);
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    uint64_t total = 0;
    for (int i = 0; i < 3 * SUM_LOOPS; i++) {
        echo_once(&ts, &st, 100 + (size_t)i * 31);
        total += 100 + (uint64_t)i * 31;
    }
    for (int loop = 0; loop < SUM_LOOPS; loop++) {
        evn_stats l = stats_of(&ts, loop);
        EXPECT_EQ_SIZE(l.conns_accepted, 3);
        EXPECT_EQ_SIZE(l.conns_closed, 3);
        EXPECT_GE_SIZE(l.turns, 1);
    }
    /* Stopped, nothing moves: each field of the total is the sum of the
     * loops' own. */
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    evn_stats all = stats_of(&ts, EVN_STATS_ALL), sum;
    memset(&sum, 0, sizeof sum);
    for (int loop = 0; loop < SUM_LOOPS; loop++) {
        evn_stats l = stats_of(&ts, loop);
        const uint64_t *f = (const uint64_t *)&l;
        uint64_t *t = (uint64_t *)&sum;
        for (size_t k = 0; k < sizeof l / sizeof *f; k++)
            t[k] += f[k];
    }
    const uint64_t *a = (const uint64_t *)&all, *b = (const uint64_t *)&sum;
    for (size_t k = 0; k < sizeof all / sizeof *a; k++)
        if (a[k] != b[k])
            th_fail_(__FILE__, __LINE__, false, "field %zu: total %llu, loops' sum %llu", k,
                     (unsigned long long)a[k], (unsigned long long)b[k]);
    EXPECT_EQ_SIZE(all.bytes_in, total);
    EXPECT_EQ_SIZE(all.bytes_out, total);
    EXPECT_EQ_SIZE(all.conns_accepted, 3 * SUM_LOOPS);
    th_server_free(&ts);
    state_destroy(&st);
}

/* ---- refusals ---- */

static void test_max_conns(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, 2);
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.max_conns = 2;
    ev.busy_reply = "busy\r\n";
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int a = th_connect_srv(&ts, 0), b = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&st.opened, 2);
    int c = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(c, "busy\r\n");
    EXPECT_EQ_INT(th_wait_eof(c), 0);
    close(c);

    evn_stats s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.refused_max_conns, 1);
    EXPECT_EQ_SIZE(s.conns_accepted, 2);
    EXPECT_EQ_SIZE(s.conns_open, 2);
    EXPECT_EQ_SIZE(s.bytes_out, 0); /* a busy_reply is not a connection's output */
    /* Loop 0 accepts for both loops, so the refusal is its. */
    EXPECT_EQ_SIZE(stats_of(&ts, 0).refused_max_conns, 1);
    EXPECT_EQ_SIZE(stats_of(&ts, 1).refused_max_conns, 0);
    EXPECT_EQ_SIZE(stats_of(&ts, 1).conns_accepted, 1);

    close(a);
    close(b);
    TH_WAIT_COUNTER(&st.closed, 2);
    s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.conns_open, 0);
    EXPECT_EQ_SIZE(s.conns_closed, 2);
    EXPECT_EQ_SIZE(s.refused_tls, 0);
    th_server_stop(&ts);
    state_destroy(&st);
}

static void test_tls_refused(void)
{
#ifndef EVN_HAVE_TLS
    th_skip("evn was built without TLS");
#else
    char cert[256], key[256], url[700];
    if (!th_make_cert(cert, key, sizeof cert))
        return;
    snprintf(url, sizeof url, "tls://127.0.0.1:0?cert=%s&key=%s", cert, key);
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, 1);
    ev.tls_handshake_timeout_ms = 100;
    const char *addr = url;
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);

    /* Not TLS at all: the handshake fails at its first record. */
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    int rc = th_wait_eof(fd);
    EXPECT_TRUE(rc == 0 || rc == -ECONNRESET);
    close(fd);
    evn_stats s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.refused_tls, 1);

    /* Silent: the handshake times out. */
    fd = th_connect_srv(&ts, 0);
    rc = th_wait_eof(fd);
    EXPECT_TRUE(rc == 0 || rc == -ECONNRESET);
    close(fd);

    s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.refused_tls, 2);
    EXPECT_EQ_SIZE(s.conns_accepted, 2);
    EXPECT_EQ_SIZE(s.conns_closed, 2);
    EXPECT_EQ_SIZE(s.conns_open, 0);
    EXPECT_EQ_SIZE(s.refused_max_conns, 0);
    /* What the first client sent was never plaintext. */
    EXPECT_EQ_SIZE(s.bytes_in, 0);
    EXPECT_EQ_SIZE(s.bytes_out, 0);
    EXPECT_EQ_INT(atomic_load(&st.opened_any), 0);
    th_server_stop(&ts);
    state_destroy(&st);
#endif
}

/* ---- outbound connections and UDP ---- */

static evn_action out_serving(evn_server *srv)
{
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d",
             th_sockaddr_port(evn_server_addr(srv, 0, NULL)));
    if (evn_connect(srv, url, 0, NULL, NULL) < 0)
        th_fail_(__FILE__, __LINE__, false, "evn_connect(%s) failed", url);
    return EVN_NONE;
}

/* The outbound side says ping and closes once it hears it back; the
 * accepted side echoes. */
static evn_action out_opened(evn_conn *c)
{
    if (evn_conn_listener(c) == EVN_OUTBOUND)
        evn_write(c, "ping", 4);
    return on_opened(c);
}

static evn_action out_data(evn_conn *c, const char *in, size_t len)
{
    if (evn_conn_listener(c) == EVN_OUTBOUND)
        return len ? EVN_CLOSE : EVN_NONE;
    return on_echo(c, in, len);
}

static void test_outbound(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, 1);
    ev.serving = out_serving;
    ev.opened = out_opened;
    ev.data = out_data;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    TH_WAIT_COUNTER(&st.closed, 2);
    /* And a client of our own, so that accepted and outbound differ. */
    echo_once(&ts, &st, 10);
    evn_stats s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.conns_outbound, 1);
    EXPECT_EQ_SIZE(s.conns_accepted, 2);
    EXPECT_EQ_SIZE(s.conns_closed, 3);
    EXPECT_EQ_SIZE(s.conns_open, 0);
    EXPECT_EQ_SIZE(s.bytes_in, 8 + 10);
    EXPECT_EQ_SIZE(s.bytes_out, 8 + 10);
    th_server_stop(&ts);
    state_destroy(&st);
}

static void test_udp(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, 1);
    const char *addr = "udp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_udp_socket(AF_INET);
    socklen_t len;
    const struct sockaddr *sa = evn_server_addr(ts.srv, 0, &len);
    uint64_t total = 0;
    for (int i = 1; i <= 5; i++) {
        char buf[600], back[600];
        memset(buf, 'u', sizeof buf);
        size_t n = (size_t)i * 100;
        ASSERT_EQ_INT(sendto(fd, buf, n, 0, sa, len), (long long)n);
        ASSERT_EQ_INT(th_wait_readable(fd, th_io_timeout_ms()), 1);
        EXPECT_EQ_INT(recv(fd, back, sizeof back, 0), (long long)n);
        total += n;
    }
    close(fd);
    /* The last reply can reach us before its sendmsg has returned on the
     * loop's thread: read once the loop has stopped. */
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    evn_stats s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.bytes_in, total);
    EXPECT_EQ_SIZE(s.bytes_out, total);
    EXPECT_EQ_SIZE(s.conns_accepted, 0);
    EXPECT_EQ_SIZE(s.conns_open, 0);
    th_server_free(&ts);
    state_destroy(&st);
}

/* ---- from a callback ---- */

static evn_action cb_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    evn_stats mine, all;
    s->seen_in += len;
    /* The loop's own counters, read on its thread, are exact: they already
     * hold the input being handed over now. */
    if (evn_server_stats(evn_conn_server(c), evn_conn_loop(c), &mine) != 0 ||
        evn_server_stats(evn_conn_server(c), EVN_STATS_ALL, &all) != 0 ||
        mine.bytes_in != s->seen_in || mine.conns_open != 1 || all.conns_open != 1 ||
        mine.conns_accepted != 1)
        atomic_fetch_add(&s->in_cb_bad, 1);
    atomic_fetch_add(&s->in_cb_checks, 1);
    return on_echo(c, in, len);
}

static void test_from_callback(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, 1);
    ev.data = cb_data;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    static const char *const msgs[] = {"one", "two two", "three three three"};
    for (int i = 0; i < 3; i++) {
        th_write_str(fd, msgs[i]);
        EXPECT_READ_STR(fd, msgs[i]);
    }
    close(fd);
    TH_WAIT_COUNTER(&st.closed, 1);
    EXPECT_GE_INT(atomic_load(&st.in_cb_checks), 3);
    EXPECT_EQ_INT(atomic_load(&st.in_cb_bad), 0);
    th_server_stop(&ts);
    state_destroy(&st);
}

/* ---- turns, events and time ---- */

static void test_turns_and_time(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, 1);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&st.opened, 1);
    evn_stats prev = stats_of(&ts, 0);
    EXPECT_GE_SIZE(prev.turns, 1);
    EXPECT_GE_SIZE(prev.events, 1); /* the accept, at least */
    const int rounds = 20;
    for (int i = 0; i < rounds; i++) {
        th_write_str(fd, "ping");
        EXPECT_READ_STR(fd, "ping");
        evn_stats s = stats_of(&ts, 0);
        /* Each ping needs a wait that returns its input. */
        EXPECT_GE_SIZE(s.turns, prev.turns + 1);
        EXPECT_GE_SIZE(s.events, prev.events + 1);
        EXPECT_GE_SIZE(s.wait_ns, prev.wait_ns);
        EXPECT_GE_SIZE(s.work_ns, prev.work_ns);
        EXPECT_GE_SIZE(s.wait_ns + s.work_ns, prev.wait_ns + prev.work_ns);
        prev = s;
    }
    /* The loop slept waiting for every ping, and worked on each. */
    EXPECT_GE_SIZE(prev.wait_ns, 1);
    EXPECT_GE_SIZE(prev.work_ns, 1);
    close(fd);
    TH_WAIT_COUNTER(&st.closed, 1);
    th_server_stop(&ts);
    state_destroy(&st);
}

/* ---- reading from another thread ---- */

#define RACE_LOOPS 2

struct reader {
    th_server *ts;
    atomic_bool stop;
    long reads;
    th_counter passes; /* reads, for the test thread to wait on */
    int backwards;
};

/* Every counter but conns_open only grows: a later read of the same
 * counter must never see less. */
static void check_growing(struct reader *r, const evn_stats *prev, const evn_stats *s)
{
    const uint64_t *a = (const uint64_t *)prev, *b = (const uint64_t *)s;
    for (size_t k = 0; k < sizeof *s / sizeof *a; k++) {
        if (k == offsetof(evn_stats, conns_open) / sizeof *a)
            continue;
        if (b[k] < a[k]) {
            if (r->backwards++ == 0)
                th_fail_(__FILE__, __LINE__, false, "field %zu went from %llu back to %llu", k,
                         (unsigned long long)a[k], (unsigned long long)b[k]);
        }
    }
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    evn_stats prev[RACE_LOOPS + 1];
    memset(prev, 0, sizeof prev);
    while (!atomic_load(&r->stop)) {
        for (int loop = EVN_STATS_ALL; loop < RACE_LOOPS; loop++) {
            evn_stats s;
            if (evn_server_stats(r->ts->srv, loop, &s) != 0) {
                th_fail_(__FILE__, __LINE__, false, "evn_server_stats(%d) failed", loop);
                return NULL;
            }
            check_growing(r, &prev[loop + 1], &s);
            prev[loop + 1] = s;
        }
        r->reads++;
        th_counter_add(&r->passes, 1);
    }
    return NULL;
}

static void test_read_while_running(void)
{
    struct state st;
    state_init(&st);
    evn_events ev = echo_events(&st, RACE_LOOPS);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    struct reader r = {.ts = &ts};
    atomic_init(&r.stop, false);
    th_counter_init(&r.passes);
    pthread_t t;
    ASSERT_EQ_INT(pthread_create(&t, NULL, reader_main, &r), 0);
    /* The reader is reading before the traffic starts, and reads once more
     * after it: a thread the scheduler had not yet run when the (quick)
     * traffic was over read nothing at all. */
    TH_WAIT_COUNTER(&r.passes, 1);
    const int n = th_quick() ? 40 : 300;
    for (int i = 0; i < n; i++)
        echo_once(&ts, &st, 1 + (size_t)i * 13);
    TH_WAIT_COUNTER(&r.passes, th_counter_get(&r.passes) + 1);
    atomic_store(&r.stop, true);
    pthread_join(t, NULL);
    th_counter_destroy(&r.passes);
    EXPECT_GT_INT(r.reads, 0);
    EXPECT_EQ_INT(r.backwards, 0);
    evn_stats s = stats_of(&ts, EVN_STATS_ALL);
    EXPECT_EQ_SIZE(s.conns_accepted, n);
    EXPECT_EQ_SIZE(s.conns_closed, n);
    th_server_stop(&ts);
    state_destroy(&st);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_before_and_after_run);
    TH_RUN(test_echo_exact);
    TH_RUN(test_bytes_at_close);
    TH_RUN(test_loops_sum);
    TH_RUN(test_max_conns);
    TH_RUN(test_tls_refused);
    TH_RUN(test_outbound);
    TH_RUN(test_udp);
    TH_RUN(test_from_callback);
    TH_RUN(test_turns_and_time);
    TH_RUN(test_read_while_running);
    return th_finish();
}
