/*
 * evn_wake(): from another thread it makes data fire with NULL/0 on the
 * connection's own loop thread; many wakes merge but at least one fires;
 * wakes for connections that close meanwhile (even when a new connection
 * gets the same fd number) are dropped and never reach the new connection;
 * garbage ids are refused or ignored; kept input survives a wake.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAXC 64

struct rec {
    evn_id id;
    int fd;
    int loop;
    int port;
    int phase;
    bool close_on_wake;
    pthread_t thread;
    atomic_long wakes;
    atomic_int wrong_thread;
};

struct state {
    th_counter opened, closed, data, wakes;
    pthread_mutex_t mu;
    struct rec recs[MAXC];
    int nrecs;
    atomic_int phase;
    atomic_int bad_wake; /* data(NULL) with len != 0, or a wake for a late phase */
    atomic_bool done;
    th_counter done_seen;
    atomic_bool keep_mode;
    atomic_int close_on_wake_every;
};

static struct state *state_new(void)
{
    struct state *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->data);
    th_counter_init(&s->wakes);
    th_counter_init(&s->done_seen);
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void state_free(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->data);
    th_counter_destroy(&s->wakes);
    th_counter_destroy(&s->done_seen);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    pthread_mutex_lock(&s->mu);
    ASSERT_TRUE(s->nrecs < MAXC);
    struct rec *r = &s->recs[s->nrecs];
    r->id = evn_conn_id(c);
    r->fd = evn_conn_fd(c);
    r->loop = evn_conn_loop(c);
    r->thread = pthread_self();
    r->phase = atomic_load(&s->phase);
    int every = atomic_load(&s->close_on_wake_every);
    r->close_on_wake = every > 0 && s->nrecs % every == 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    r->port =
        evn_conn_remote_addr(c, &ss, &len) == 0 ? th_sockaddr_port((struct sockaddr *)&ss) : -1;
    s->nrecs++;
    pthread_mutex_unlock(&s->mu);
    evn_conn_set_udata(c, r);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    struct rec *r = evn_conn_udata(c);
    if (in == NULL) {
        if (len != 0)
            atomic_fetch_add(&s->bad_wake, 1);
        if (!pthread_equal(r->thread, pthread_self()))
            atomic_fetch_add(&r->wrong_thread, 1);
        if (r->phase > 0)
            atomic_fetch_add(&s->bad_wake, 1);
        atomic_fetch_add(&r->wakes, 1);
        if (atomic_load(&s->done))
            th_counter_add(&s->done_seen, 1);
        evn_write(c, "W", 1);
        th_counter_add(&s->wakes, 1);
        return r->close_on_wake ? EVN_CLOSE : EVN_NONE;
    }
    if (atomic_load(&s->keep_mode)) {
        /* A line protocol: keep everything up to a newline. */
        if (in[len - 1] != '\n')
            EXPECT_EQ_ERR(evn_keep(c, len), 0);
        else
            evn_write(c, in, len);
    } else if (len >= 2 && memcmp(in, "go", 2) == 0) {
        /* Wake ourselves and every other connection, from the loop thread. */
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < s->nrecs; i++)
            EXPECT_EQ_ERR(evn_wake(evn_conn_server(c), s->recs[i].id), 0);
        pthread_mutex_unlock(&s->mu);
    } else {
        evn_write(c, in, len);
    }
    th_counter_add(&s->data, 1);
    return EVN_NONE;
}

static void start(th_server *ts, struct state *s, int nloops)
{
    evn_events ev = {0};
    ev.nloops = nloops;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    static const char *addr[] = {"tcp://127.0.0.1:0"};
    th_server_start(ts, &ev, addr, 1);
}

static void test_wake_fires_data_on_loop_thread(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 3);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = th_connect_srv(&ts, 0);
        TH_WAIT_COUNTER(&s->opened, i + 1);
    }
    /* Round-robin put one on each loop. */
    EXPECT_EQ_INT((1 << s->recs[0].loop) | (1 << s->recs[1].loop) | (1 << s->recs[2].loop), 7);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ_ERR(evn_wake(ts.srv, s->recs[i].id), 0);
        EXPECT_READ_STR(fds[i], "W");
    }
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ_INT(atomic_load(&s->recs[i].wakes), 1);
        EXPECT_EQ_INT(atomic_load(&s->recs[i].wrong_thread), 0);
        close(fds[i]);
    }
    EXPECT_EQ_INT(atomic_load(&s->bad_wake), 0);
    EXPECT_EQ_INT(th_counter_get(&s->data), 0);
    TH_WAIT_COUNTER(&s->closed, 3);
    th_server_stop(&ts);
    state_free(s);
}

static void test_wakes_merge(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 1);
    evn_id id = s->recs[0].id;
    const long n = 20000;
    long bad_rc = 0;
    for (long i = 0; i < n; i++)
        if (evn_wake(ts.srv, id) != 0)
            bad_rc++;
    /* A wake queued after done is set is seen by a data event that sees done. */
    atomic_store(&s->done, true);
    EXPECT_EQ_ERR(evn_wake(ts.srv, id), 0);
    TH_WAIT_COUNTER(&s->done_seen, 1);
    EXPECT_EQ_INT(bad_rc, 0);
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    th_server_stop(&ts);
    long got = atomic_load(&s->recs[0].wakes);
    fprintf(stderr, "  %ld wakes gave %ld data events\n", n + 1, got);
    EXPECT_GE_INT(got, 1);
    EXPECT_LE_INT(got, n + 1);
    EXPECT_EQ_INT(atomic_load(&s->bad_wake), 0);
    state_free(s);
}

struct waker {
    th_server *ts;
    evn_id ids[MAXC];
    int nids;
    uint64_t seed;
    atomic_bool *stop;
    th_counter *progress; /* thousands of wakes sent */
    long bad_rc;
};

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    th_rng r;
    th_rng_init(&r, w->seed);
    long k = 0;
    while (!atomic_load(w->stop)) {
        evn_id id = w->ids[th_rng_range(&r, 0, (uint64_t)w->nids - 1)];
        int rc = evn_wake(w->ts->srv, id);
        if (rc != 0 && rc != -EINVAL)
            w->bad_rc++;
        if (++k % 1000 == 0)
            th_counter_add(w->progress, 1);
    }
    return NULL;
}

/*
 * Several threads wake a first set of connections while they close (some by
 * the client, some by the server in answer to a wake), then keep waking their
 * now-stale ids while a second set of connections opens on the same fd
 * numbers. None of those wakes may reach the second set.
 */
static void test_wake_races_close(void)
{
    enum { K = 24, NW = 3 };
    struct state *s = state_new();
    atomic_store(&s->close_on_wake_every, 2);
    th_server ts;
    start(&ts, s, 2);
    int fds[K];
    for (int i = 0; i < K; i++)
        fds[i] = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, K);

    atomic_bool stop = false;
    th_counter progress = TH_COUNTER_INIT;
    struct waker w[NW];
    pthread_t th[NW];
    for (int i = 0; i < NW; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].ts = &ts;
        w[i].nids = K;
        for (int j = 0; j < K; j++)
            w[i].ids[j] = s->recs[j].id;
        w[i].seed = th_seed() + (uint64_t)i;
        w[i].stop = &stop;
        w[i].progress = &progress;
        ASSERT_EQ_INT(pthread_create(&th[i], NULL, waker_main, &w[i]), 0);
    }
    /* Let the wakes land on live connections first. */
    TH_WAIT_COUNTER(&progress, 30);
    for (int i = 0; i < K; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s->closed, K);
    long after_close = th_counter_get(&progress);

    atomic_store(&s->phase, 1);
    atomic_store(&s->close_on_wake_every, 0);
    for (int i = 0; i < K; i++)
        fds[i] = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 2 * K);
    /* Enough stale wakes after the new connections are in place. */
    TH_WAIT_COUNTER(&progress, th_counter_get(&progress) + 60);
    atomic_store(&stop, true);
    long bad_rc = 0;
    for (int i = 0; i < NW; i++) {
        pthread_join(th[i], NULL);
        bad_rc += w[i].bad_rc;
    }
    EXPECT_EQ_INT(bad_rc, 0);

    int reused = 0;
    for (int i = K; i < 2 * K; i++) {
        for (int j = 0; j < K; j++) {
            EXPECT_NE_INT(s->recs[i].id, s->recs[j].id);
            if (s->recs[i].fd == s->recs[j].fd)
                reused++;
        }
    }
    long first_wakes = 0;
    for (int i = 0; i < K; i++)
        first_wakes += atomic_load(&s->recs[i].wakes);
    fprintf(stderr,
            "  %ld thousand wakes (%ld after the first set closed); %ld reached it; "
            "%d fds reused\n",
            th_counter_get(&progress), after_close, first_wakes, reused);
    EXPECT_GT_INT(reused, 0);
    EXPECT_GT_INT(first_wakes, 0);
    for (int i = K; i < 2 * K; i++)
        EXPECT_EQ_INT(atomic_load(&s->recs[i].wakes), 0);
    EXPECT_EQ_INT(atomic_load(&s->bad_wake), 0);

    /* The new connections' own ids do work. */
    int port = th_sock_port(fds[0], false);
    struct rec *r0 = NULL;
    for (int i = K; i < 2 * K; i++)
        if (s->recs[i].port == port)
            r0 = &s->recs[i];
    ASSERT_NOT_NULL(r0);
    r0->phase = 0;
    EXPECT_EQ_ERR(evn_wake(ts.srv, r0->id), 0);
    EXPECT_READ_STR(fds[0], "W");
    for (int i = 0; i < K; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s->closed, 2 * K);
    th_server_stop(&ts);
    th_counter_destroy(&progress);
    state_free(s);
}

/*
 * Ids that are not a live connection's: refused with -EINVAL or ignored. Ids
 * one bit away from a real one (same fd, other sequence number; other fd;
 * other loop) must not reach it. A wake for a second connection of the same
 * loop, sent after them all, tells when they have all been handled.
 */
static void test_wake_garbage_ids(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 1);
    int sync = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 2);
    evn_id real = s->recs[0].id;
    evn_id garbage[] = {
        0,
        1,
        UINT64_MAX,
        real ^ 1, /* same fd, other sequence number */
        real + 1,
        real - 1,
        real ^ ((evn_id)1 << 32),    /* other fd */
        real | ((evn_id)0x7f << 56), /* a loop that does not exist */
        real + ((evn_id)1 << 56),
        (evn_id)0x00ff00ff00ff00ffull,
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        if (garbage[i] == s->recs[1].id)
            continue;
        int rc = evn_wake(ts.srv, garbage[i]);
        if (rc != 0 && rc != -EINVAL)
            th_fail_(__FILE__, __LINE__, false, "evn_wake(0x%llx) gave %d (%s)",
                     (unsigned long long)garbage[i], rc, evn_strerror(rc));
    }
    th_rng r;
    th_rng_init(&r, th_seed());
    for (int i = 0; i < 10000; i++) {
        evn_id id = th_rng_next(&r);
        if (id == real || id == s->recs[1].id)
            continue;
        int rc = evn_wake(ts.srv, id);
        if (rc != 0 && rc != -EINVAL) {
            EXPECT_EQ_ERR(rc, -EINVAL);
            break;
        }
    }
    EXPECT_EQ_ERR(evn_wake(ts.srv, s->recs[1].id), 0);
    EXPECT_READ_STR(sync, "W");
    EXPECT_EQ_INT(atomic_load(&s->recs[0].wakes), 0);
    /* The real id still works, and the connection still serves. */
    EXPECT_EQ_ERR(evn_wake(ts.srv, real), 0);
    EXPECT_READ_STR(fd, "W");
    th_write_str(fd, "still here");
    EXPECT_READ_STR(fd, "still here");
    EXPECT_EQ_INT(atomic_load(&s->recs[0].wakes), 1);
    close(fd);
    close(sync);
    TH_WAIT_COUNTER(&s->closed, 2);
    th_server_stop(&ts);
    state_free(s);
}

static void test_wake_after_shutdown(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 1);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    EXPECT_EQ_ERR(evn_wake(ts.srv, s->recs[0].id), -ESHUTDOWN);
    th_server_free(&ts);
    close(fd);
    state_free(s);
}

static void test_wake_from_loop_thread(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1);
    int a = th_connect_srv(&ts, 0);
    int b = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 2);
    th_write_str(a, "go");
    EXPECT_READ_STR(a, "W");
    EXPECT_READ_STR(b, "W");
    close(a);
    close(b);
    TH_WAIT_COUNTER(&s->closed, 2);
    th_server_stop(&ts);
    state_free(s);
}

static void test_wake_keeps_input(void)
{
    struct state *s = state_new();
    atomic_store(&s->keep_mode, true);
    th_server ts;
    start(&ts, s, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 1);
    th_write_str(fd, "abc");
    TH_WAIT_COUNTER(&s->data, 1);
    EXPECT_EQ_ERR(evn_wake(ts.srv, s->recs[0].id), 0);
    EXPECT_READ_STR(fd, "W");
    th_write_str(fd, "def\n");
    EXPECT_READ_STR(fd, "abcdef\n");
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    th_server_stop(&ts);
    state_free(s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_wake_fires_data_on_loop_thread);
    TH_RUN(test_wakes_merge);
    TH_RUN(test_wake_races_close);
    TH_RUN(test_wake_garbage_ids);
    TH_RUN(test_wake_after_shutdown);
    TH_RUN(test_wake_from_loop_thread);
    TH_RUN(test_wake_keeps_input);
    return th_finish();
}
