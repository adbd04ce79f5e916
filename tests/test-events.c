/*
 * Every event and every action: serving, opened, data, closed, detached and
 * tick, and what each of EVN_NONE, EVN_CLOSE, EVN_DETACH and EVN_SHUTDOWN does
 * from the callbacks that may return it; evn_shutdown() from another thread;
 * listener index, addresses and user data as seen from callbacks; evn_keep()
 * reassembling a framed protocol.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAXC 16

/* What the callbacks saw; one per subtest, reached through evn_server_udata. */
struct state {
    th_counter serving, opened, closed, data, detached, ticks;
    pthread_mutex_t mu;
    /* serving */
    pthread_t serving_thread;
    int serving_nloops;
    size_t serving_naddrs;
    char urls[3][160];
    bool url2_null;
    long events_before_serving;
    /* tick */
    pthread_t tick_thread;
    int64_t tick_delay_in[16];
    long tick_stop_at;
    long tick_shutdown_at;
    long serving_at_first_tick;
    /* closed */
    int close_err[MAXC];
    int nclose;
    int write_in_closed_rc;
    /* opened */
    evn_action opened_action;
    long shutdown_on_open_n;
    const char *greeting;
    size_t big_reply;
    /* echo only: random input could spell a keyword by chance */
    bool plain_echo;
    /* per-connection records, in the order opened fired */
    struct rec {
        size_t listener;
        int loop;
        evn_id id;
        int fd;
        int is_udp;
        char local[128], remote[128];
        int local_rc, remote_rc;
        struct sockaddr_storage lss, rss;
        socklen_t llen, rlen;
        int small_rc;
        evn_server *srv;
        void *udata_at_open;
    } recs[MAXC];
    int nrecs;
    /* keep */
    int keep_inval_rc;
    long keep_bad_calls;
    /* relay: connections of the single loop, by open order */
    evn_conn *conns[MAXC];
    int detached_fd;
    int detached_fl;
    size_t pending_after_write;
};

static struct state *st_new(void)
{
    struct state *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    th_counter_init(&s->serving);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->data);
    th_counter_init(&s->detached);
    th_counter_init(&s->ticks);
    pthread_mutex_init(&s->mu, NULL);
    s->detached_fd = -1;
    return s;
}

static void st_free(struct state *s)
{
    th_counter_destroy(&s->serving);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->data);
    th_counter_destroy(&s->detached);
    th_counter_destroy(&s->ticks);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static long other_events(struct state *s)
{
    return th_counter_get(&s->opened) + th_counter_get(&s->data) + th_counter_get(&s->closed) +
           th_counter_get(&s->ticks);
}

static evn_action on_serving(evn_server *srv)
{
    struct state *s = evn_server_udata(srv);
    s->events_before_serving = other_events(s);
    s->serving_thread = pthread_self();
    s->serving_nloops = evn_server_nloops(srv);
    s->serving_naddrs = evn_server_naddrs(srv);
    for (size_t i = 0; i < 2 && i < s->serving_naddrs; i++) {
        const char *u = evn_server_url(srv, i);
        snprintf(s->urls[i], sizeof s->urls[i], "%s", u ? u : "(null)");
    }
    s->url2_null = evn_server_url(srv, s->serving_naddrs) == NULL;
    th_counter_add(&s->serving, 1);
    return EVN_NONE;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    pthread_mutex_lock(&s->mu);
    int i = s->nrecs < MAXC ? s->nrecs++ : MAXC - 1;
    struct rec *r = &s->recs[i];
    r->udata_at_open = evn_conn_udata(c);
    r->listener = evn_conn_listener(c);
    r->loop = evn_conn_loop(c);
    r->id = evn_conn_id(c);
    r->fd = evn_conn_fd(c);
    r->is_udp = evn_conn_is_udp(c);
    r->srv = evn_conn_server(c);
    r->local_rc = evn_conn_local_str(c, r->local, sizeof r->local);
    r->remote_rc = evn_conn_remote_str(c, r->remote, sizeof r->remote);
    r->llen = sizeof r->lss;
    r->rlen = sizeof r->rss;
    EXPECT_EQ_ERR(evn_conn_local_addr(c, &r->lss, &r->llen), 0);
    EXPECT_EQ_ERR(evn_conn_remote_addr(c, &r->rss, &r->rlen), 0);
    char tiny[4];
    r->small_rc = evn_conn_local_str(c, tiny, sizeof tiny);
    s->conns[i] = c;
    pthread_mutex_unlock(&s->mu);

    evn_conn_set_udata(c, (void *)(intptr_t)(i + 1));
    if (s->greeting)
        EXPECT_EQ_ERR(evn_write(c, s->greeting, strlen(s->greeting)), 0);
    evn_action a = s->opened_action;
    if (s->shutdown_on_open_n && th_counter_get(&s->opened) + 1 == s->shutdown_on_open_n)
        a = EVN_SHUTDOWN;
    th_counter_add(&s->opened, 1);
    return a;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    int wrc = evn_write(c, "x", 1);
    pthread_mutex_lock(&s->mu);
    if (s->nclose < MAXC)
        s->close_err[s->nclose++] = err;
    int idx = (int)(intptr_t)evn_conn_udata(c) - 1;
    if (idx >= 0 && idx < MAXC)
        s->conns[idx] = NULL;
    s->write_in_closed_rc = wrc;
    pthread_mutex_unlock(&s->mu);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static evn_action on_detached(evn_conn *c, evn_socket_t fd)
{
    struct state *s = S(c);
    s->detached_fd = fd;
    s->detached_fl = fcntl(fd, F_GETFL);
    th_write_str(fd, "detached\n");
    close(fd);
    th_counter_add(&s->detached, 1);
    return EVN_NONE;
}

static bool has(const char *in, size_t len, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(in + i, word, n) == 0)
            return true;
    return false;
}

/* Echo, with a few words that trigger the actions. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    evn_action a = EVN_NONE;
    if (s->plain_echo) {
        EXPECT_EQ_ERR(evn_write(c, in, len), 0);
    } else if (has(in, len, "quit")) {
        a = EVN_SHUTDOWN;
    } else if (has(in, len, "bye")) {
        char *big = malloc(s->big_reply);
        ASSERT_NOT_NULL(big);
        for (size_t i = 0; i < s->big_reply; i++)
            big[i] = (char)(i * 7 + 3);
        EXPECT_EQ_ERR(evn_write(c, big, s->big_reply), 0);
        s->pending_after_write = evn_conn_pending(c);
        free(big);
        a = EVN_CLOSE;
    } else if (has(in, len, "big")) {
        char *big = malloc(s->big_reply);
        ASSERT_NOT_NULL(big);
        for (size_t i = 0; i < s->big_reply; i++)
            big[i] = (char)(i * 7 + 3);
        EXPECT_EQ_ERR(evn_write(c, big, s->big_reply), 0);
        free(big);
    } else if (has(in, len, "detach")) {
        EXPECT_EQ_ERR(evn_write(c, "before-", 7), 0);
        a = EVN_DETACH;
    } else {
        EXPECT_EQ_ERR(evn_write(c, in, len), 0);
    }
    th_counter_add(&s->data, 1);
    return a;
}

static evn_events base_events(struct state *s)
{
    evn_events ev = {0};
    ev.udata = s;
    ev.serving = on_serving;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.detached = on_detached;
    ev.data = on_data;
    return ev;
}

static const char *addr1[] = {"tcp://127.0.0.1:0"};

static void test_serving(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.nloops = 3;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    const char *addrs[] = {"tcp://127.0.0.1:0", "tcp://127.0.0.1:0"};
    th_server ts;
    th_server_new(&ts, &ev, addrs, 2);
    /* Connections already waiting when the loops start still come after
     * serving, whichever loop they land on. */
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = th_connect_srv(&ts, (size_t)i % 2);
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s->serving, 1);
    TH_WAIT_COUNTER(&s->opened, 3);
    EXPECT_EQ_INT(s->events_before_serving, 0);
    EXPECT_TRUE(pthread_equal(s->serving_thread, ts.thread));
    EXPECT_EQ_INT(s->serving_nloops, 3);
    EXPECT_EQ_SIZE(s->serving_naddrs, 2);
    EXPECT_TRUE(s->url2_null);
    for (size_t i = 0; i < 2; i++) {
        char want[64];
        int port = th_server_port(&ts, i);
        EXPECT_GT_INT(port, 0);
        snprintf(want, sizeof want, "tcp://127.0.0.1:%d", port);
        EXPECT_STREQ(s->urls[i], want);
        EXPECT_STREQ(evn_server_url(ts.srv, i), want);
        socklen_t len = 0;
        const struct sockaddr *sa = evn_server_addr(ts.srv, i, &len);
        ASSERT_NOT_NULL(sa);
        EXPECT_EQ_INT(sa->sa_family, AF_INET);
        EXPECT_EQ_SIZE(len, sizeof(struct sockaddr_in));
    }
    EXPECT_NE_INT(th_server_port(&ts, 0), th_server_port(&ts, 1));
    EXPECT_NULL(evn_server_addr(ts.srv, 2, NULL));
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s->closed, 3);
    EXPECT_TRUE(evn_server_udata(ts.srv) == s);
    if (th_backend())
        EXPECT_STREQ(evn_server_backend(ts.srv), th_backend());
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->serving), 1);
    st_free(s);
}

static void test_backend_choice(void)
{
    evn_events ev = {0};
    evn_server *srv = NULL;
    ev.backend = "poll";
    ASSERT_EQ_ERR(evn_server_new(&srv, &ev, addr1, 1), 0);
    EXPECT_STREQ(evn_server_backend(srv), "poll");
    evn_server_free(srv);
    ev.backend = NULL;
    ASSERT_EQ_ERR(evn_server_new(&srv, &ev, addr1, 1), 0);
    const char *b = evn_server_backend(srv);
    EXPECT_TRUE(strcmp(b, "epoll") == 0 || strcmp(b, "poll") == 0 || strcmp(b, "kqueue") == 0 ||
                strcmp(b, "io_uring") == 0 || strcmp(b, "iocp") == 0);
    if (th_backend())
        EXPECT_STREQ(b, th_backend());
    evn_server_free(srv);
    evn_server_free(NULL);
}

static void test_greeting_and_echo(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    s->greeting = "hello\r\n";
    s->plain_echo = true;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(fd, "hello\r\n");
    th_write_str(fd, "ping");
    EXPECT_READ_STR(fd, "ping");

    size_t n = 1 << 20;
    char *out = malloc(n), *in = malloc(n);
    ASSERT_TRUE(out && in);
    th_rng r;
    th_rng_init(&r, th_seed());
    for (size_t i = 0; i < n; i++)
        out[i] = (char)th_rng_next(&r);
    EXPECT_EQ_INT(th_transfer(fd, out, n, in, n), (ssize_t)n);
    EXPECT_MEMEQ(in, out, n);
    free(out);
    free(in);
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    th_server_stop(&ts);
    EXPECT_EQ_INT(s->close_err[0], 0);
    st_free(s);
}

static void test_closed_on_peer_close(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "x");
    EXPECT_READ_STR(fd, "x");
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    EXPECT_EQ_INT(s->nclose, 1);
    EXPECT_EQ_ERR(s->close_err[0], 0);
    /* The connection is gone: writing to it from closed is refused. */
    EXPECT_EQ_ERR(s->write_in_closed_rc, -EPIPE);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 1);
    st_free(s);
}

static void test_close_action_flushes_output(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    s->big_reply = 4 << 20;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "bye");
    char *buf = malloc(s->big_reply);
    ASSERT_NOT_NULL(buf);
    EXPECT_EQ_INT(th_read_exact(fd, buf, s->big_reply), (ssize_t)s->big_reply);
    size_t bad = 0;
    for (size_t i = 0; i < s->big_reply; i++)
        if (buf[i] != (char)(i * 7 + 3))
            bad++;
    EXPECT_EQ_SIZE(bad, 0);
    free(buf);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s->closed, 1);
    EXPECT_EQ_ERR(s->close_err[0], 0);
    /* Output written in a callback is still queued when it returns. */
    EXPECT_EQ_SIZE(s->pending_after_write, s->big_reply);
    close(fd);
    th_server_stop(&ts);
    st_free(s);
}

static void test_close_from_opened(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    s->greeting = "go away\n";
    s->opened_action = EVN_CLOSE;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(fd, "go away\n");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s->closed, 1);
    EXPECT_EQ_ERR(s->close_err[0], 0);
    EXPECT_EQ_INT(th_counter_get(&s->data), 0);
    close(fd);
    th_server_stop(&ts);
    st_free(s);
}

static void test_detach_from_data(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "detach");
    EXPECT_READ_STR(fd, "before-detached\n");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s->detached, 1);
    EXPECT_GE_INT(s->detached_fd, 0);
#ifndef _WIN32
    /* Windows cannot read a socket's mode back (test-detach's blocking
     * read checks it there). */
    EXPECT_EQ_INT(s->detached_fl & O_NONBLOCK, 0);
#endif
    close(fd);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 0);
    EXPECT_EQ_INT(th_counter_get(&s->detached), 1);
    st_free(s);
}

static evn_action on_tick(evn_server *srv, int64_t *delay_ms)
{
    struct state *s = evn_server_udata(srv);
    long n = th_counter_get(&s->ticks);
    if (n == 0) {
        s->tick_thread = pthread_self();
        s->serving_at_first_tick = th_counter_get(&s->serving);
    }
    if (n < 16)
        s->tick_delay_in[n] = *delay_ms;
    *delay_ms = 1;
    if (s->tick_stop_at && n + 1 == s->tick_stop_at)
        *delay_ms = -1;
    evn_action a = EVN_NONE;
    if (s->tick_shutdown_at && n + 1 == s->tick_shutdown_at)
        a = EVN_SHUTDOWN;
    th_counter_add(&s->ticks, 1);
    return a;
}

static void test_tick(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.tick = on_tick;
    ev.nloops = 2;
    s->tick_stop_at = 5;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    TH_WAIT_COUNTER(&s->ticks, 5);
    /* The first tick came right after serving, on loop 0's thread. */
    EXPECT_EQ_INT(s->serving_at_first_tick, 1);
    EXPECT_TRUE(pthread_equal(s->tick_thread, ts.thread));
    EXPECT_EQ_INT(s->tick_delay_in[0], 1000);
    for (int i = 1; i < 5; i++)
        EXPECT_EQ_INT(s->tick_delay_in[i], 1);
    /* Round trips through loop 0 after the ticker stopped; it stays stopped. */
    int fd = th_connect_srv(&ts, 0);
    for (int i = 0; i < 20; i++) {
        th_write_str(fd, "tock");
        EXPECT_READ_STR(fd, "tock");
    }
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->ticks), 5);
    st_free(s);
}

static void connect_n(th_server *ts, struct state *s, int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        fds[i] = th_connect_srv(ts, 0);
        TH_WAIT_COUNTER(&s->opened, i + 1);
    }
}

static void expect_all_closed(struct state *s, int *fds, int n)
{
    EXPECT_EQ_INT(th_counter_get(&s->closed), n);
    for (int i = 0; i < s->nclose; i++)
        EXPECT_EQ_ERR(s->close_err[i], 0);
    for (int i = 0; i < n; i++) {
        EXPECT_EQ_INT(th_wait_eof(fds[i]), 0);
        close(fds[i]);
    }
}

static void test_shutdown_from_data(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.nloops = 2;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fds[3];
    connect_n(&ts, s, fds, 3);
    th_write_str(fds[1], "quit");
    th_server_join(&ts);
    expect_all_closed(s, fds, 3);
    th_server_free(&ts);
    st_free(s);
}

static void test_shutdown_from_tick(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.tick = on_tick;
    th_server ts;
    th_server_new(&ts, &ev, addr1, 1);
    /* Connected (queued in the backlog) before the loop runs. */
    int fd = th_connect_srv(&ts, 0);
    s->tick_shutdown_at = 3;
    th_server_run(&ts);
    th_server_join(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->ticks), 3);
    /* Whether it was accepted before the shutdown is up to the loop, but
     * every connection that opened was closed. */
    EXPECT_EQ_INT(th_counter_get(&s->closed), th_counter_get(&s->opened));
    close(fd);
    th_server_free(&ts);
    st_free(s);
}

static void test_shutdown_from_opened(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    s->shutdown_on_open_n = 2;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fds[2];
    fds[0] = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 1);
    fds[1] = th_connect_srv(&ts, 0);
    th_server_join(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->opened), 2);
    expect_all_closed(s, fds, 2);
    th_server_free(&ts);
    st_free(s);
}

static void test_shutdown_from_other_thread(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.nloops = 3;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fds[6];
    connect_n(&ts, s, fds, 6);
    for (int i = 0; i < 6; i++) {
        th_write_str(fds[i], "hi");
        EXPECT_READ_STR(fds[i], "hi");
    }
    EXPECT_EQ_INT(evn_shutdown(ts.srv), 0);
    EXPECT_EQ_INT(evn_shutdown(ts.srv), 0);
    th_server_join(&ts);
    expect_all_closed(s, fds, 6);
    EXPECT_EQ_INT(evn_shutdown(ts.srv), 0);
    th_server_free(&ts);
    st_free(s);
}

static void test_shutdown_before_run(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.nloops = 2;
    evn_server *srv = NULL;
    ASSERT_EQ_ERR(evn_server_new(&srv, &ev, addr1, 1), 0);
    EXPECT_EQ_INT(evn_shutdown(srv), 0);
    EXPECT_EQ_INT(evn_shutdown(srv), 0);
    EXPECT_EQ_ERR(evn_server_run(srv), 0);
    evn_server_free(srv);
    st_free(s);
}

static evn_action tick_stop_now(evn_server *srv, int64_t *delay_ms)
{
    struct state *s = evn_server_udata(srv);
    th_counter_add(&s->ticks, 1);
    return EVN_SHUTDOWN;
}

static void test_serve(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.tick = tick_stop_now;
    EXPECT_EQ_ERR(evn_serve(&ev, addr1, 1), 0);
    EXPECT_EQ_INT(th_counter_get(&s->serving), 1);
    EXPECT_EQ_INT(th_counter_get(&s->ticks), 1);
    st_free(s);
}

static void check_tcp_rec(const struct rec *r, int fd, int port)
{
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    EXPECT_STREQ(r->local, want);
    EXPECT_EQ_INT(r->local_rc, (int)strlen(want));
    EXPECT_EQ_INT(th_sockaddr_port((struct sockaddr *)&r->lss), port);
    EXPECT_EQ_INT(r->lss.ss_family, AF_INET);
    EXPECT_EQ_SIZE(r->llen, sizeof(struct sockaddr_in));
    int cport = th_sock_port(fd, false);
    snprintf(want, sizeof want, "127.0.0.1:%d", cport);
    EXPECT_STREQ(r->remote, want);
    EXPECT_EQ_INT(r->remote_rc, (int)strlen(want));
    EXPECT_EQ_INT(th_sockaddr_port((struct sockaddr *)&r->rss), cport);
    EXPECT_EQ_ERR(r->small_rc, -ENOSPC);
}

static void test_listener_and_addresses(void)
{
    TH_NEED_UNIX_SOCKETS();
    struct state *s = st_new();
    evn_events ev = base_events(s);
    char path[128], unixurl[160];
    th_tmppath(path, sizeof path, "events.sock");
    snprintf(unixurl, sizeof unixurl, "unix://%s", path);
    const char *addrs[] = {"tcp://127.0.0.1:0", unixurl, "tcp://127.0.0.1:0"};
    th_server ts;
    th_server_start(&ts, &ev, addrs, 3);
    int fds[4];
    size_t order[4] = {2, 0, 1, 2};
    for (int i = 0; i < 4; i++) {
        fds[i] = th_connect_srv(&ts, order[i]);
        TH_WAIT_COUNTER(&s->opened, i + 1);
    }
    evn_id ids[4];
    for (int i = 0; i < 4; i++) {
        struct rec *r = &s->recs[i];
        EXPECT_EQ_SIZE(r->listener, order[i]);
        EXPECT_EQ_INT(r->loop, 0);
        EXPECT_EQ_INT(r->is_udp, 0);
        EXPECT_GE_INT(r->fd, 0);
        EXPECT_TRUE(r->srv == ts.srv);
        EXPECT_NULL(r->udata_at_open);
        EXPECT_NE_INT(r->id, 0);
        ids[i] = r->id;
        for (int j = 0; j < i; j++)
            EXPECT_NE_INT(ids[i], ids[j]);
        if (order[i] != 1) {
            check_tcp_rec(r, fds[i], th_server_port(&ts, order[i]));
        } else {
            EXPECT_STREQ(r->local, path);
            EXPECT_EQ_INT(r->local_rc, (int)strlen(path));
            EXPECT_STREQ(r->remote, "");
            EXPECT_EQ_INT(r->remote_rc, 0);
            EXPECT_EQ_INT(r->lss.ss_family, AF_UNIX);
            EXPECT_EQ_INT(r->rss.ss_family, AF_UNIX);
        }
    }
    char buf[128];
    socklen_t len;
    const struct sockaddr *sa = evn_server_addr(ts.srv, 1, &len);
    ASSERT_NOT_NULL(sa);
    EXPECT_EQ_INT(evn_addr_str(sa, len, buf, sizeof buf), (int)strlen(path));
    EXPECT_STREQ(buf, path);
    EXPECT_STREQ(evn_server_url(ts.srv, 1), unixurl);
    sa = evn_server_addr(ts.srv, 0, &len);
    EXPECT_EQ_ERR(evn_addr_str(sa, len, buf, 5), -ENOSPC);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s->closed, 4);
    th_server_stop(&ts);
    st_free(s);
}

/* Each connection's udata counts its own messages; closed frees it. */
static evn_action udata_opened(evn_conn *c)
{
    EXPECT_NULL(evn_conn_udata(c));
    int *n = calloc(1, sizeof *n);
    ASSERT_NOT_NULL(n);
    evn_conn_set_udata(c, n);
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action udata_data(evn_conn *c, const char *in, size_t len)
{
    int *n = evn_conn_udata(c);
    char buf[16];
    int k = snprintf(buf, sizeof buf, "%d", ++*n);
    evn_write(c, buf, (size_t)k);
    return EVN_NONE;
}

static evn_action udata_closed(evn_conn *c, int err)
{
    int *n = evn_conn_udata(c);
    struct state *s = S(c);
    pthread_mutex_lock(&s->mu);
    if (s->nclose < MAXC)
        s->close_err[s->nclose++] = n ? *n : -1;
    pthread_mutex_unlock(&s->mu);
    free(n);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static void test_conn_udata(void)
{
    struct state *s = st_new();
    evn_events ev = {0};
    ev.udata = s;
    ev.nloops = 2;
    ev.opened = udata_opened;
    ev.data = udata_data;
    ev.closed = udata_closed;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int a = th_connect_srv(&ts, 0), b = th_connect_srv(&ts, 0);
    th_write_str(a, ".");
    EXPECT_READ_STR(a, "1");
    th_write_str(a, ".");
    EXPECT_READ_STR(a, "2");
    th_write_str(b, ".");
    EXPECT_READ_STR(b, "1");
    th_write_str(a, ".");
    EXPECT_READ_STR(a, "3");
    close(a);
    TH_WAIT_COUNTER(&s->closed, 1);
    close(b);
    TH_WAIT_COUNTER(&s->closed, 2);
    EXPECT_EQ_INT(s->close_err[0], 3);
    EXPECT_EQ_INT(s->close_err[1], 1);
    th_server_stop(&ts);
    st_free(s);
}

/*
 * A framed protocol: a 2-byte big-endian length, then the payload. The server
 * answers each frame with "[payload]" and keeps an incomplete tail.
 */
static evn_action frame_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (in == NULL)
        return EVN_NONE;
    int rc = evn_keep(c, len + 1);
    if (rc != -EINVAL) {
        s->keep_inval_rc = rc;
        s->keep_bad_calls++;
    }
    size_t off = 0;
    while (len - off >= 2) {
        size_t n = ((size_t)(unsigned char)in[off] << 8) | (unsigned char)in[off + 1];
        if (len - off - 2 < n)
            break;
        evn_write(c, "[", 1);
        evn_write(c, in + off + 2, n);
        evn_write(c, "]", 1);
        off += 2 + n;
    }
    if (off < len)
        EXPECT_EQ_ERR(evn_keep(c, len - off), 0);
    th_counter_add(&s->data, 1);
    return EVN_NONE;
}

/* Send one piece and wait until the server has had a data event for it. */
static void send_piece(int fd, struct state *s, const char *p, size_t n)
{
    long before = th_counter_get(&s->data);
    th_write_all(fd, p, n);
    TH_WAIT_COUNTER(&s->data, before + 1);
}

static void test_keep_framing(void)
{
    struct state *s = st_new();
    evn_events ev = {0};
    ev.udata = s;
    ev.data = frame_data;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);

    static const char stream[] = "\x00\x05hello"
                                 "\x00\x03"
                                 "abc"
                                 "\x00\x00"
                                 "\x00\x0bsplit frame"
                                 "\x00\x01z";
    size_t total = sizeof stream - 1;
    /* Cut inside a header, between header and payload, inside a payload,
     * and between frames; each piece reaches the server on its own. */
    size_t cuts[] = {1, 2, 4, 7, 9, 12, 14, 15, 16, 20, total};
    size_t prev = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        send_piece(fd, s, stream + prev, cuts[i] - prev);
        prev = cuts[i];
    }
    EXPECT_READ_STR(fd, "[hello][abc][][split frame][z]");

    /* Many frames in one write, and one frame larger than any read. */
    size_t big = 60000;
    char *msg = malloc(big + 2 + 8);
    ASSERT_NOT_NULL(msg);
    msg[0] = (char)(big >> 8);
    msg[1] = (char)(big & 0xff);
    for (size_t i = 0; i < big; i++)
        msg[2 + i] = (char)('a' + i % 26);
    memcpy(msg + 2 + big, "\x00\x02ok\x00\x01!", 7);
    char *reply = malloc(big + 2 + 7);
    ASSERT_NOT_NULL(reply);
    size_t want = big + 2 + 4 + 3;
    EXPECT_EQ_INT(th_transfer(fd, msg, big + 2 + 7, reply, want), (ssize_t)want);
    EXPECT_EQ_INT(reply[0], '[');
    EXPECT_MEMEQ(reply + 1, msg + 2, big);
    EXPECT_MEMEQ(reply + 1 + big, "][ok][!]", 8);
    free(msg);
    free(reply);

    EXPECT_EQ_INT(s->keep_bad_calls, 0);
    EXPECT_EQ_ERR(s->keep_inval_rc, 0);
    close(fd);
    th_server_stop(&ts);
    st_free(s);
}

/* Output for another connection of the same loop is sent too. */
static evn_action relay_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    pthread_mutex_lock(&s->mu);
    int me = (int)(intptr_t)evn_conn_udata(c) - 1;
    evn_conn *other = s->conns[me ^ 1];
    pthread_mutex_unlock(&s->mu);
    if (other)
        EXPECT_EQ_ERR(evn_write(other, in, len), 0);
    return EVN_NONE;
}

static void test_write_to_other_conn(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.data = relay_data;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int a = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 1);
    int b = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 2);
    th_write_str(a, "to b");
    EXPECT_READ_STR(b, "to b");
    th_write_str(b, "to a");
    EXPECT_READ_STR(a, "to a");
    close(a);
    close(b);
    TH_WAIT_COUNTER(&s->closed, 2);
    th_server_stop(&ts);
    st_free(s);
}

/* Read the big reply's pattern, then expect EOF. */
static void expect_big_then_eof(int fd, size_t n)
{
    char *buf = malloc(n);
    ASSERT_NOT_NULL(buf);
    EXPECT_EQ_INT(th_read_exact(fd, buf, n), (ssize_t)n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i] != (char)(i * 7 + 3))
            bad++;
    EXPECT_EQ_SIZE(bad, 0);
    free(buf);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
}

/* The peer half-closes right after its request: the answer, queued when the
 * FIN arrives, is still delivered, then the connection closes cleanly. */
static void test_half_close_gets_pending_output(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    s->big_reply = 4 << 20;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "big");
    ASSERT_EQ_INT(shutdown(fd, SHUT_WR), 0);
    expect_big_then_eof(fd, s->big_reply);
    TH_WAIT_COUNTER(&s->closed, 1);
    EXPECT_EQ_ERR(s->close_err[0], 0);
    close(fd);
    th_server_stop(&ts);
    st_free(s);
}

/* A connection closing with output the peer never reads is closed once,
 * with closed fired once, by the shutdown. */
static void test_shutdown_while_closing(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    s->big_reply = 16 << 20;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "bye");
    TH_WAIT_COUNTER(&s->data, 1);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 1);
    EXPECT_EQ_INT(th_counter_get(&s->opened), 1);
    close(fd);
    th_server_free(&ts);
    st_free(s);
}

static evn_action closed_then_shutdown(evn_conn *c, int err)
{
    on_closed(c, err);
    return EVN_SHUTDOWN;
}

static void test_shutdown_from_closed(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.closed = closed_then_shutdown;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "x");
    EXPECT_READ_STR(fd, "x");
    close(fd);
    th_server_join(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 1);
    th_server_free(&ts);
    st_free(s);
}

static evn_action detached_then_shutdown(evn_conn *c, evn_socket_t fd)
{
    on_detached(c, fd);
    return EVN_SHUTDOWN;
}

static void test_shutdown_from_detached(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.detached = detached_then_shutdown;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "detach");
    EXPECT_READ_STR(fd, "before-detached\n");
    th_server_join(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->detached), 1);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 0);
    close(fd);
    th_server_free(&ts);
    st_free(s);
}

static evn_action serving_then_shutdown(evn_server *srv)
{
    on_serving(srv);
    return EVN_SHUTDOWN;
}

static void test_shutdown_from_serving(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.serving = serving_then_shutdown;
    ev.tick = on_tick;
    ev.nloops = 2;
    th_server ts;
    th_server_new(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_server_run(&ts);
    th_server_join(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->serving), 1);
    /* Whatever else fired, every opened connection was closed. */
    EXPECT_EQ_INT(th_counter_get(&s->closed), th_counter_get(&s->opened));
    close(fd);
    th_server_free(&ts);
    st_free(s);
}

static atomic_bool zero_tick_stop;

static evn_action zero_tick(evn_server *srv, int64_t *delay_ms)
{
    struct state *s = evn_server_udata(srv);
    *delay_ms = atomic_load(&zero_tick_stop) ? -1 : 0;
    th_counter_add(&s->ticks, 1);
    return EVN_NONE;
}

/* A ticker with no delay runs over and over, and connections on its loop
 * are still served. */
static void test_zero_delay_tick(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.tick = zero_tick;
    atomic_store(&zero_tick_stop, false);
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    TH_WAIT_COUNTER(&s->ticks, 100);
    int fd = th_connect_srv(&ts, 0);
    for (int i = 0; i < 50; i++) {
        th_write_str(fd, "busy");
        EXPECT_READ_STR(fd, "busy");
    }
    long before = th_counter_get(&s->ticks);
    TH_WAIT_COUNTER(&s->ticks, before + 100);
    atomic_store(&zero_tick_stop, true);
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    th_server_stop(&ts);
    st_free(s);
}

/* Writing nothing and keeping nothing are no-ops. */
static evn_action zero_data(evn_conn *c, const char *in, size_t len)
{
    EXPECT_EQ_ERR(evn_write(c, "", 0), 0);
    EXPECT_EQ_ERR(evn_keep(c, 0), 0);
    EXPECT_EQ_SIZE(evn_conn_pending(c), 0);
    evn_write(c, in, len);
    th_counter_add(&S(c)->data, 1);
    return EVN_NONE;
}

static void test_zero_sized_write_and_keep(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.data = zero_data;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "abc");
    EXPECT_READ_STR(fd, "abc");
    th_write_str(fd, "def");
    EXPECT_READ_STR(fd, "def");
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    th_server_stop(&ts);
    st_free(s);
}

static atomic_llong tick_ms[8];
static _Atomic(evn_conn *) tick_target;

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Ticks every 30 ms, recording when; the fifth stops the ticker. */
static evn_action timed_tick(evn_server *srv, int64_t *delay_ms)
{
    struct state *s = evn_server_udata(srv);
    long n = th_counter_get(&s->ticks);
    if (n < 8)
        atomic_store(&tick_ms[n], mono_ms());
    *delay_ms = n + 1 < 5 ? 30 : -1;
    th_counter_add(&s->ticks, 1);
    return EVN_NONE;
}

/* A tick never comes earlier than its delay (a lower bound, so no load can
 * make this flaky; 1 ms is allowed for millisecond rounding). */
static void test_tick_delay_is_honoured(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.tick = timed_tick;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    TH_WAIT_COUNTER(&s->ticks, 5);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->ticks), 5);
    for (int i = 1; i < 5; i++)
        EXPECT_GE_INT(atomic_load(&tick_ms[i]) - atomic_load(&tick_ms[i - 1]), 29);
    st_free(s);
}

static evn_action push_opened(evn_conn *c)
{
    atomic_store(&tick_target, c);
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action push_closed(evn_conn *c, int err)
{
    atomic_store(&tick_target, NULL);
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

/* The ticker pushes to a connection of loop 0 without any input from it. */
static evn_action push_tick(evn_server *srv, int64_t *delay_ms)
{
    struct state *s = evn_server_udata(srv);
    evn_conn *c = atomic_load(&tick_target);
    *delay_ms = 1;
    if (c && th_counter_get(&s->ticks) == 0) {
        EXPECT_EQ_ERR(evn_write(c, "pushed by tick\n", 15), 0);
        th_counter_add(&s->ticks, 1);
        *delay_ms = -1;
    }
    return EVN_NONE;
}

static void test_write_from_tick(void)
{
    struct state *s = st_new();
    evn_events ev = base_events(s);
    ev.opened = push_opened;
    ev.closed = push_closed;
    ev.tick = push_tick;
    atomic_store(&tick_target, NULL);
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(fd, "pushed by tick\n");
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    th_server_stop(&ts);
    st_free(s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_serving);
    TH_RUN(test_backend_choice);
    TH_RUN(test_greeting_and_echo);
    TH_RUN(test_closed_on_peer_close);
    TH_RUN(test_close_action_flushes_output);
    TH_RUN(test_close_from_opened);
    TH_RUN(test_detach_from_data);
    TH_RUN(test_tick);
    TH_RUN(test_shutdown_from_data);
    TH_RUN(test_shutdown_from_tick);
    TH_RUN(test_shutdown_from_opened);
    TH_RUN(test_shutdown_from_other_thread);
    TH_RUN(test_shutdown_before_run);
    TH_RUN(test_serve);
    TH_RUN(test_listener_and_addresses);
    TH_RUN(test_conn_udata);
    TH_RUN(test_keep_framing);
    TH_RUN(test_write_to_other_conn);
    TH_RUN(test_half_close_gets_pending_output);
    TH_RUN(test_shutdown_while_closing);
    TH_RUN(test_shutdown_from_closed);
    TH_RUN(test_shutdown_from_detached);
    TH_RUN(test_shutdown_from_serving);
    TH_RUN(test_zero_delay_tick);
    TH_RUN(test_zero_sized_write_and_keep);
    TH_RUN(test_tick_delay_is_honoured);
    TH_RUN(test_write_from_tick);
    return th_finish();
}
