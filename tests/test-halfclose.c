/*
 * Half-close and application-paused reading. With an eof callback the
 * server can still answer after the client has shut down its sending side;
 * evn_conn_shutdown_write sends end-of-file after the pending output while
 * input keeps arriving; the connection closes once both directions are done.
 * evn_conn_read(c, 0) stops data events until reading is resumed, and the
 * bytes that waited are delivered then.
 */
#include "harness.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

struct state {
    int mode;
    th_counter opened, closed, eofs, datas, wakes;
    atomic_int close_err, data_while_held, bytes;
    evn_id id;
};

enum { ECHO_THEN_BYE, SHUT_FIRST, HOLD };

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    s->id = evn_conn_id(c);
    if (s->mode == SHUT_FIRST) {
        evn_write(c, "hello", 5);
        EXPECT_EQ_INT(evn_conn_shutdown_write(c), 0);
        EXPECT_EQ_ERR(evn_write(c, "x", 1), -EPIPE);
    } else if (s->mode == HOLD) {
        EXPECT_EQ_INT(evn_conn_read(c, 0), 0);
    }
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (!in) {
        /* A wake: the first one only proves a loop turn has passed; the
         * second checks nothing was read meanwhile, then resumes reading. */
        long n = th_counter_get(&s->wakes) + 1;
        if (n == 2) {
            atomic_store(&s->data_while_held, (int)th_counter_get(&s->datas));
            evn_conn_read(c, 1);
        }
        th_counter_add(&s->wakes, 1);
        return EVN_NONE;
    }
    atomic_fetch_add(&s->bytes, (int)len);
    if (s->mode == ECHO_THEN_BYE)
        evn_write(c, in, len);
    th_counter_add(&s->datas, 1);
    return EVN_NONE;
}

static evn_action on_eof(evn_conn *c)
{
    struct state *s = S(c);
    th_counter_add(&s->eofs, 1);
    if (s->mode == ECHO_THEN_BYE) {
        evn_write(c, "bye", 3);
        evn_conn_shutdown_write(c);
    }
    /* HOLD: nothing more to say. */
    return s->mode == HOLD ? EVN_CLOSE : EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    atomic_store(&S(c)->close_err, err);
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

static void start(th_server *ts, struct state *s, int mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->eofs);
    th_counter_init(&s->datas);
    th_counter_init(&s->wakes);
    evn_events ev = {0};
    ev.udata = s;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.eof = on_eof;
    ev.closed = on_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server_start(ts, &ev, &addr, 1);
}

static void stop(th_server *ts, struct state *s)
{
    th_server_stop(ts);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->eofs);
    th_counter_destroy(&s->datas);
    th_counter_destroy(&s->wakes);
}

/* The client half-closes; the server still answers, then half-closes too. */
static void test_answer_after_client_eof(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, ECHO_THEN_BYE);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "abc");
    shutdown(fd, SHUT_WR);
    EXPECT_READ_STR(fd, "abcbye");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.eofs), 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    close(fd);
    stop(&ts, &s);
}

/* The server half-closes first; the client's later input still arrives. */
static void test_server_shuts_first(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, SHUT_FIRST);
    int fd = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(fd, "hello");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    th_write_str(fd, "still here");
    TH_WAIT_COUNTER(&s.datas, 1);
    while (atomic_load(&s.bytes) < 10)
        TH_WAIT_COUNTER(&s.datas, th_counter_get(&s.datas) + 1);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 0);
    shutdown(fd, SHUT_WR);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    close(fd);
    stop(&ts, &s);
}

static void test_read_paused(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, HOLD);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    th_write_str(fd, "waiting");
    /* The bytes are in the server's socket buffer once the client's send
     * queue is empty (acknowledged); then two wakes, a turn apart. */
    for (int i = 0; i < 2; i++) {
        EXPECT_EQ_INT(evn_wake(ts.srv, s.id), 0);
        TH_WAIT_COUNTER(&s.wakes, i + 1);
    }
    EXPECT_EQ_INT(atomic_load(&s.data_while_held), 0);
    TH_WAIT_COUNTER(&s.datas, 1);
    while (atomic_load(&s.bytes) < 7)
        TH_WAIT_COUNTER(&s.datas, th_counter_get(&s.datas) + 1);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    stop(&ts, &s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_answer_after_client_eof);
    TH_RUN(test_server_shuts_first);
    TH_RUN(test_read_paused);
    return th_finish();
}
