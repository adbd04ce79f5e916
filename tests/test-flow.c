/*
 * Flow control: a pipelining client that does not read cannot grow the
 * server's queued output past the high-water mark when the handler stops on
 * evn_conn_full() and keeps the rest of its input; drained fires once the
 * output is down to the low mark, the kept input comes back, and every answer
 * arrives in order. out_cap closes a connection that queues too much.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ANSWER (128u << 10)
#define HIGH (512u << 10)
#define LOW (128u << 10)
#define NREQ 100

struct state {
    th_counter opened, closed, drained, full_seen, answered;
    atomic_llong max_pending;
    atomic_int close_err;
    atomic_int bad;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    atomic_store(&S(c)->close_err, err);
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

/* Answer k: ANSWER bytes, each the request's letter. */
static void answer(evn_conn *c, char req)
{
    static char buf[ANSWER];
    memset(buf, req, sizeof buf);
    EXPECT_EQ_ERR(evn_write(c, buf, sizeof buf), 0);
}

static void note_pending(struct state *s, evn_conn *c)
{
    long long p = (long long)evn_conn_pending(c);
    long long m = atomic_load(&s->max_pending);
    while (p > m && !atomic_compare_exchange_weak(&s->max_pending, &m, p))
        ;
}

/* One request per input byte; stop while the output is full. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (in == NULL)
        return EVN_NONE;
    for (size_t i = 0; i < len; i++) {
        if (evn_conn_full(c)) {
            th_counter_add(&s->full_seen, 1);
            EXPECT_EQ_ERR(evn_keep(c, len - i), 0);
            return EVN_NONE;
        }
        answer(c, in[i]);
        note_pending(s, c);
        th_counter_add(&s->answered, 1);
    }
    return EVN_NONE;
}

static evn_action on_drained(evn_conn *c)
{
    struct state *s = S(c);
    if (evn_conn_full(c))
        atomic_fetch_add(&s->bad, 1);
    if (evn_conn_pending(c) > LOW)
        atomic_fetch_add(&s->bad, 1);
    th_counter_add(&s->drained, 1);
    return EVN_NONE;
}

static void init_state(struct state *s)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->drained);
    th_counter_init(&s->full_seen);
    th_counter_init(&s->answered);
}

static void destroy_state(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->drained);
    th_counter_destroy(&s->full_seen);
    th_counter_destroy(&s->answered);
}

static void test_pipelining_client_is_bounded(void)
{
    struct state s;
    init_state(&s);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    ev.drained = on_drained;
    ev.out_high = HIGH;
    ev.out_low = LOW;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    char reqs[NREQ];
    for (int i = 0; i < NREQ; i++)
        reqs[i] = (char)('a' + i % 26);
    th_write_all(fd, reqs, NREQ);

    /* The server stops answering once full, while we read nothing. */
    TH_WAIT_COUNTER(&s.full_seen, 1);
    long answered = th_counter_get(&s.answered);
    fprintf(stderr, "  paused after %ld of %d answers, %lld bytes queued at most\n", answered, NREQ,
            (long long)atomic_load(&s.max_pending));
    EXPECT_LT_INT(answered, NREQ);
    EXPECT_LE_INT(atomic_load(&s.max_pending), (long long)(HIGH + ANSWER));

    /* Reading lets it drain and carry on with the kept requests, in order. */
    static char buf[ANSWER];
    for (int i = 0; i < NREQ; i++) {
        ASSERT_EQ_INT(th_read_exact(fd, buf, ANSWER), (ssize_t)ANSWER);
        size_t bad = 0;
        for (size_t k = 0; k < ANSWER; k++)
            bad += buf[k] != reqs[i];
        if (bad) {
            EXPECT_EQ_SIZE(bad, 0);
            break;
        }
    }
    EXPECT_EQ_INT(th_counter_get(&s.answered), NREQ);
    EXPECT_GE_INT(th_counter_get(&s.drained), 1);
    EXPECT_EQ_INT(atomic_load(&s.bad), 0);
    EXPECT_LE_INT(atomic_load(&s.max_pending), (long long)(HIGH + ANSWER));
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    th_server_stop(&ts);
    destroy_state(&s);
}

static evn_action cap_data(evn_conn *c, const char *in, size_t len)
{
    static char big[2 << 20];
    struct state *s = S(c);
    int rc = evn_write(c, big, sizeof big);
    if (rc != -ENOBUFS)
        atomic_fetch_add(&s->bad, 1);
    return EVN_NONE;
}

/* A write past out_cap fails with -ENOBUFS and closes the connection. */
static void test_out_cap(void)
{
    struct state s;
    init_state(&s);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = cap_data;
    ev.out_cap = 1 << 20;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "go");
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ENOBUFS);
    EXPECT_EQ_INT(atomic_load(&s.bad), 0);
    char tmp[4096];
    ssize_t n;
    while ((n = th_read_some(fd, tmp, sizeof tmp)) > 0)
        ;
    EXPECT_TRUE(n == 0 || n == -ECONNRESET);
    close(fd);
    th_server_stop(&ts);
    destroy_state(&s);
}

static atomic_int wm_rc[4];

static evn_action wm_opened(evn_conn *c)
{
    atomic_store(&wm_rc[0], evn_conn_set_watermarks(c, 10, 20));
    atomic_store(&wm_rc[1], evn_conn_set_watermarks(c, 0, 0));
    atomic_store(&wm_rc[2], evn_conn_set_watermarks(c, 100, 10));
    atomic_store(&wm_rc[3], evn_conn_full(c));
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static void test_watermark_arguments(void)
{
    struct state s;
    init_state(&s);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = wm_opened;
    ev.closed = on_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    EXPECT_EQ_ERR(atomic_load(&wm_rc[0]), -EINVAL);
    EXPECT_EQ_ERR(atomic_load(&wm_rc[1]), -EINVAL);
    EXPECT_EQ_ERR(atomic_load(&wm_rc[2]), 0);
    EXPECT_EQ_INT(atomic_load(&wm_rc[3]), 0);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    th_server_stop(&ts);
    destroy_state(&s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_pipelining_client_is_bounded);
    TH_RUN(test_out_cap);
    TH_RUN(test_watermark_arguments);
    return th_finish();
}
