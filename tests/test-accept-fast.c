/*
 * The accept fast path: on a TCP listener with deferaccept, a new connection's
 * first input is read and delivered before the socket is registered with the
 * poller. These tests prove it happens (the data callback runs while the
 * connection is still off the poller), that events keep their order (opened,
 * then data, then closed once), and that everything the fast path hands back
 * to the poller still works: a connection that stays open, output that does
 * not fit the socket, and a connection whose first bytes come late (the
 * kernel's deferaccept wait runs out and hands the socket over empty).
 */
#include "harness.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NCONN 200

enum { MODE_CLOSE, MODE_KEEP, MODE_BIG };

struct conn_state {
    bool opened, closed;
    int data;
};

struct state {
    int mode;
    size_t big;
    char *bigbuf;
    th_counter opened, closed, data, fast, misordered, woken;
    _Atomic evn_id last;
};

static struct state *st(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct conn_state *cs = calloc(1, sizeof *cs);
    ASSERT_NOT_NULL(cs);
    cs->opened = true;
    evn_conn_set_udata(c, cs);
    atomic_store(&st(c)->last, evn_conn_id(c));
    th_counter_add(&st(c)->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = st(c);
    struct conn_state *cs = evn_conn_udata(c);
    if (!cs || !cs->opened || cs->closed)
        th_counter_add(&s->misordered, 1);
    if (!in) {
        th_counter_add(&s->woken, 1);
        return EVN_NONE;
    }
    cs->data++;
    th_counter_add(&s->data, 1);
    /* Still off the poller: this input came through the fast path. */
    if (c->flags & EVN__C_UNREG)
        th_counter_add(&s->fast, 1);
    if (s->mode == MODE_BIG) {
        EXPECT_EQ_INT(evn_write(c, s->bigbuf, s->big), 0);
        return EVN_CLOSE;
    }
    char reply[128];
    int n = snprintf(reply, sizeof reply, "got %.*s;", (int)(len < 64 ? len : 64), in);
    EXPECT_EQ_INT(evn_write(c, reply, (size_t)n), 0);
    return s->mode == MODE_CLOSE ? EVN_CLOSE : EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = st(c);
    struct conn_state *cs = evn_conn_udata(c);
    if (!cs || cs->closed)
        th_counter_add(&s->misordered, 1);
    EXPECT_EQ_ERR(err, 0);
    free(cs);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static void start(th_server *ts, struct state *s, int mode, const char *url)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    /* The big reply is made before the loop thread starts, which reads it. */
    if (mode == MODE_BIG) {
        s->big = 8u << 20;
        s->bigbuf = malloc(s->big);
        ASSERT_NOT_NULL(s->bigbuf);
        for (size_t i = 0; i < s->big; i++)
            s->bigbuf[i] = (char)(i * 7 + (i >> 12));
    }
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->data);
    th_counter_init(&s->fast);
    th_counter_init(&s->misordered);
    th_counter_init(&s->woken);
    evn_events ev = {0};
    ev.udata = s;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.closed = on_closed;
    th_server_start(ts, &ev, &url, 1);
}

static void finish(th_server *ts, struct state *s)
{
    th_server_stop(ts);
    EXPECT_EQ_INT(th_counter_get(&s->misordered), 0);
    EXPECT_EQ_INT(th_counter_get(&s->opened), th_counter_get(&s->closed));
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->data);
    th_counter_destroy(&s->fast);
    th_counter_destroy(&s->misordered);
    th_counter_destroy(&s->woken);
    free(s->bigbuf);
}

/* 200 connections, each sending its request right after connecting: every
 * one is answered and closed without ever being registered. */
static void test_request_reply_close(void)
{
    th_server ts;
    struct state s;
    start(&ts, &s, MODE_CLOSE, "tcp://127.0.0.1:0?deferaccept=5");
    for (int i = 0; i < NCONN; i++) {
        int fd = th_connect_srv(&ts, 0);
        char req[32], want[64];
        snprintf(req, sizeof req, "req%d", i);
        snprintf(want, sizeof want, "got %s;", req);
        th_write_str(fd, req);
        EXPECT_READ_STR(fd, want);
        EXPECT_EQ_INT(th_wait_eof(fd), 0);
        close(fd);
    }
    TH_WAIT_COUNTER(&s.closed, NCONN);
    EXPECT_EQ_INT(th_counter_get(&s.opened), NCONN);
    EXPECT_EQ_INT(th_counter_get(&s.data), NCONN);
    EXPECT_EQ_INT(th_counter_get(&s.fast), NCONN);
    finish(&ts, &s);
}

/* A connection that stays open after the fast path is registered and gets
 * its later input through the poller. */
static void test_keepalive_after_fast(void)
{
    th_server ts;
    struct state s;
    start(&ts, &s, MODE_KEEP, "tcp://127.0.0.1:0?deferaccept=5");
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "one");
    EXPECT_READ_STR(fd, "got one;");
    th_write_str(fd, "two");
    EXPECT_READ_STR(fd, "got two;");
    th_write_str(fd, "three");
    EXPECT_READ_STR(fd, "got three;");
    EXPECT_EQ_INT(th_counter_get(&s.fast), 1);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    finish(&ts, &s);
}

/* A reply larger than the socket takes: the rest waits for writability
 * after the fast path registers the socket, and all of it arrives. */
static void test_big_reply(void)
{
    th_server ts;
    struct state s;
    start(&ts, &s, MODE_BIG, "tcp://127.0.0.1:0?deferaccept=5");
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "GET");
    char *got = malloc(s.big);
    ASSERT_NOT_NULL(got);
    EXPECT_EQ_INT(th_read_exact(fd, got, s.big), (long long)s.big);
    EXPECT_TRUE(memcmp(got, s.bigbuf, s.big) == 0);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    free(got);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.fast), 1);
    finish(&ts, &s);
}

/*
 * A client that connects and says nothing: once deferaccept's wait (1 s,
 * rounded by the kernel to retransmissions of the SYN-ACK) runs out, Linux
 * hands the socket over empty. The fast path's read finds nothing, the
 * socket is registered, and the request, sent once a wake has made a round
 * trip through the loop after opened (so after the fast path's read, and
 * not after a fixed sleep), is answered through the poller.
 */
static void test_late_request(void)
{
    th_server ts;
    struct state s;
    start(&ts, &s, MODE_CLOSE, "tcp://127.0.0.1:0?deferaccept=1");
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    EXPECT_EQ_INT(evn_wake(ts.srv, atomic_load(&s.last)), 0);
    TH_WAIT_COUNTER(&s.woken, 1);
    EXPECT_EQ_INT(th_counter_get(&s.data), 0);
    th_write_str(fd, "late");
    EXPECT_READ_STR(fd, "got late;");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.fast), 0);
    finish(&ts, &s);
}

/* A client that connects, sends and shuts down its side at once: the fast
 * path's read gets the request, the reply still reaches the client. */
static void test_request_then_eof(void)
{
    th_server ts;
    struct state s;
    start(&ts, &s, MODE_KEEP, "tcp://127.0.0.1:0?deferaccept=5");
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "bye");
    shutdown(fd, SHUT_WR);
    EXPECT_READ_STR(fd, "got bye;");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    finish(&ts, &s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
#ifndef TCP_DEFER_ACCEPT
    th_skip("no TCP_DEFER_ACCEPT");
    return th_finish();
#endif
    TH_RUN(test_request_reply_close);
    TH_RUN(test_keepalive_after_fast);
    TH_RUN(test_big_reply);
    TH_RUN(test_request_then_eof);
    TH_RUN(test_late_request);
    return th_finish();
}
