/*
 * How connections are shared between 4 loops: round-robin gives each loop
 * exactly a quarter; least-connections never lets two loops differ by more
 * than one while every connection stays open (also after closing some and
 * opening more); random puts every connection on a valid loop. With
 * ?reuseport=true the kernel spreads them, and they all work.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NLOOPS 4
#define NCONN 40
#define MAXPORT 65536

struct state {
    th_counter opened, closed;
    pthread_mutex_t mu;
    int live[NLOOPS];  /* open connections per loop */
    int total[NLOOPS]; /* every connection ever opened per loop */
    int bad_loop;
    int max_spread; /* largest max-min of live[] seen right after an open */
    short loop_of_port[MAXPORT];
    pthread_t thread_of_loop[NLOOPS];
    bool thread_seen[NLOOPS];
    int thread_mismatch;
};

static void spread(struct state *s)
{
    int lo = s->live[0], hi = s->live[0];
    for (int i = 1; i < NLOOPS; i++) {
        if (s->live[i] < lo)
            lo = s->live[i];
        if (s->live[i] > hi)
            hi = s->live[i];
    }
    if (hi - lo > s->max_spread)
        s->max_spread = hi - lo;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    int loop = evn_conn_loop(c);
    int port = -1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (evn_conn_remote_addr(c, &ss, &len) == 0)
        port = th_sockaddr_port((struct sockaddr *)&ss);
    pthread_mutex_lock(&s->mu);
    if (loop < 0 || loop >= NLOOPS) {
        s->bad_loop++;
    } else {
        s->live[loop]++;
        s->total[loop]++;
        if (!s->thread_seen[loop]) {
            s->thread_of_loop[loop] = pthread_self();
            s->thread_seen[loop] = true;
        } else if (!pthread_equal(s->thread_of_loop[loop], pthread_self())) {
            s->thread_mismatch++;
        }
        if (port > 0 && port < MAXPORT)
            s->loop_of_port[port] = (short)loop;
    }
    pthread_mutex_unlock(&s->mu);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    int loop = evn_conn_loop(c);
    pthread_mutex_lock(&s->mu);
    if (loop >= 0 && loop < NLOOPS)
        s->live[loop]--;
    pthread_mutex_unlock(&s->mu);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    evn_write(c, in, len);
    return EVN_NONE;
}

static struct state *state_new(void)
{
    struct state *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void state_free(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void start(th_server *ts, struct state *s, evn_balance b, const char *addr)
{
    evn_events ev = {0};
    ev.nloops = NLOOPS;
    ev.balance = b;
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    th_server_start(ts, &ev, &addr, 1);
    EXPECT_EQ_INT(evn_server_nloops(ts->srv), NLOOPS);
}

/* Connect n clients one after another; open[] gets their fds. */
static void connect_all(th_server *ts, struct state *s, int *fds, int n)
{
    long base = th_counter_get(&s->opened);
    for (int i = 0; i < n; i++)
        fds[i] = th_connect_srv(ts, 0);
    TH_WAIT_COUNTER(&s->opened, base + n);
}

static void close_all(struct state *s, int *fds, int n)
{
    long base = th_counter_get(&s->closed);
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    TH_WAIT_COUNTER(&s->closed, base + n);
}

static void print_counts(const char *what, const int *v)
{
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < NLOOPS; i++)
        fprintf(stderr, " %d", v[i]);
    fputc('\n', stderr);
}

static void test_round_robin(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, EVN_BALANCE_ROUND_ROBIN, "tcp://127.0.0.1:0");
    int fds[NCONN];
    connect_all(&ts, s, fds, NCONN);
    pthread_mutex_lock(&s->mu);
    print_counts("per loop", s->live);
    for (int i = 0; i < NLOOPS; i++)
        EXPECT_EQ_INT(s->live[i], NCONN / NLOOPS);
    EXPECT_EQ_INT(s->bad_loop, 0);
    EXPECT_EQ_INT(s->thread_mismatch, 0);
    pthread_mutex_unlock(&s->mu);
    /* Every connection works on whichever loop it landed. */
    for (int i = 0; i < NCONN; i++) {
        th_write_str(fds[i], "rr");
        EXPECT_READ_STR(fds[i], "rr");
    }
    close_all(s, fds, NCONN);
    th_server_stop(&ts);
    state_free(s);
}

static void test_least_connections(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, EVN_BALANCE_LEAST_CONNECTIONS, "tcp://127.0.0.1:0");
    int fds[NCONN];
    /* Open one at a time, so each lands knowing where the previous went. */
    for (int i = 0; i < NCONN; i++) {
        fds[i] = th_connect_srv(&ts, 0);
        TH_WAIT_COUNTER(&s->opened, i + 1);
        pthread_mutex_lock(&s->mu);
        spread(s);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_lock(&s->mu);
    print_counts("after 40 opened", s->live);
    EXPECT_LE_INT(s->max_spread, 1);
    for (int i = 0; i < NLOOPS; i++)
        EXPECT_EQ_INT(s->live[i], NCONN / NLOOPS);
    pthread_mutex_unlock(&s->mu);

    /* Close every connection of loop 0 and half of loop 1's. */
    int closing[NCONN], nclosing = 0, half = 0;
    for (int i = 0; i < NCONN; i++) {
        int port = th_sock_port(fds[i], false);
        int loop = s->loop_of_port[port];
        if (loop == 0 || (loop == 1 && half++ < NCONN / NLOOPS / 2)) {
            closing[nclosing++] = fds[i];
            fds[i] = -1;
        }
    }
    EXPECT_EQ_INT(nclosing, NCONN / NLOOPS + NCONN / NLOOPS / 2);
    close_all(s, closing, nclosing);
    pthread_mutex_lock(&s->mu);
    print_counts("after closing", s->live);
    EXPECT_EQ_INT(s->live[0], 0);
    EXPECT_EQ_INT(s->live[1], NCONN / NLOOPS / 2);
    pthread_mutex_unlock(&s->mu);

    /* Refill: the emptier loops take the new ones until all are even. */
    s->max_spread = 0;
    int k = 0;
    for (int i = 0; i < NCONN; i++) {
        if (fds[i] >= 0)
            continue;
        fds[i] = th_connect_srv(&ts, 0);
        TH_WAIT_COUNTER(&s->opened, NCONN + ++k);
    }
    pthread_mutex_lock(&s->mu);
    print_counts("after refilling", s->live);
    spread(s);
    EXPECT_LE_INT(s->max_spread, 1);
    EXPECT_EQ_INT(s->bad_loop, 0);
    pthread_mutex_unlock(&s->mu);

    /* All at once, without waiting between connects. */
    close_all(s, fds, NCONN);
    connect_all(&ts, s, fds, NCONN);
    pthread_mutex_lock(&s->mu);
    print_counts("after a burst", s->live);
    s->max_spread = 0;
    spread(s);
    EXPECT_LE_INT(s->max_spread, 1);
    pthread_mutex_unlock(&s->mu);
    close_all(s, fds, NCONN);
    th_server_stop(&ts);
    state_free(s);
}

static void test_random(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, EVN_BALANCE_RANDOM, "tcp://127.0.0.1:0");
    int fds[NCONN];
    connect_all(&ts, s, fds, NCONN);
    pthread_mutex_lock(&s->mu);
    print_counts("per loop", s->live);
    int sum = 0, used = 0;
    for (int i = 0; i < NLOOPS; i++) {
        sum += s->live[i];
        used += s->live[i] > 0;
    }
    EXPECT_EQ_INT(sum, NCONN);
    EXPECT_EQ_INT(s->bad_loop, 0);
    /* All 40 on one loop happens with probability 4^-39. */
    EXPECT_GE_INT(used, 2);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < NCONN; i++) {
        th_write_str(fds[i], "rnd");
        EXPECT_READ_STR(fds[i], "rnd");
    }
    close_all(s, fds, NCONN);
    th_server_stop(&ts);
    state_free(s);
}

static void test_reuseport(void)
{
    TH_NEED_REUSEPORT();
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, EVN_BALANCE_ROUND_ROBIN, "tcp://127.0.0.1:0?reuseport=true");
    int fds[NCONN];
    connect_all(&ts, s, fds, NCONN);
    pthread_mutex_lock(&s->mu);
    print_counts("per loop", s->live);
    int sum = 0;
    for (int i = 0; i < NLOOPS; i++)
        sum += s->live[i];
    EXPECT_EQ_INT(sum, NCONN);
    EXPECT_EQ_INT(s->bad_loop, 0);
    EXPECT_EQ_INT(s->thread_mismatch, 0);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < NCONN; i++) {
        th_write_str(fds[i], "rp");
        EXPECT_READ_STR(fds[i], "rp");
    }
    close_all(s, fds, NCONN);
    th_server_stop(&ts);
    state_free(s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_round_robin);
    TH_RUN(test_least_connections);
    TH_RUN(test_random);
    TH_RUN(test_reuseport);
    return th_finish();
}
