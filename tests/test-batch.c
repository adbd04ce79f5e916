/*
 * evn_events.batch_us: on io_uring (with a kernel that has a minimum wait,
 * Linux 6.12), a loop that has just run a turn collects completions for
 * batch_us before running the next. Shown from the server's side, without a
 * timing threshold that load could break: the client answers the echo of a
 * message on one connection with a message on another, which then reaches
 * its data callback no sooner than batch_us after the first callback ran
 * (the wait that collects it began after that callback). Every backend
 * serves the same traffic correctly with the setting; on the others it has
 * no effect. An out-of-range value is refused.
 */
#include "harness.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define BATCH_US 200000u

struct state {
    th_counter opened;
    atomic_llong stamp_ns[2]; /* data callbacks of the connections, by first byte */
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    if (in[0] == 'a' || in[0] == 'b')
        atomic_store(&s->stamp_ns[in[0] - 'a'], now_ns());
    EXPECT_EQ_ERR(evn_write(c, in, len), 0);
    return EVN_NONE;
}

static void test_batch_waits(void)
{
    struct state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.opened);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.batch_us = BATCH_US;
    const char *addrs[] = {"tcp://127.0.0.1:0"};
    th_server ts;
    th_server_start(&ts, &ev, addrs, 1);
#ifdef EVN_HAVE_URING
    unsigned batch = evn__uring_batch_us(ts.srv);
#else
    unsigned batch = 0;
#endif
    int a = th_connect_srv(&ts, 0), b = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 2);

    /* Some traffic first, each connection's answer awaited (each round trip
     * waits out a batch on io_uring). */
    for (int i = 0; i < 2; i++) {
        th_write_str(a, "x1");
        EXPECT_READ_STR(a, "x1");
        th_write_str(b, "x2");
        EXPECT_READ_STR(b, "x2");
    }
    th_write_str(a, "a");
    EXPECT_READ_STR(a, "a");
    th_write_str(b, "b");
    EXPECT_READ_STR(b, "b");
    long long gap_us = (atomic_load(&s.stamp_ns[1]) - atomic_load(&s.stamp_ns[0])) / 1000;
    close(a);
    close(b);
    th_server_stop(&ts);
    th_counter_destroy(&s.opened);

    const char *be = th_backend();
    if (be && strcmp(be, "io_uring") == 0) {
        if (!batch) {
            th_skip("this kernel has no minimum wait for io_uring (Linux 6.12)");
            return;
        }
        EXPECT_EQ_INT(batch, BATCH_US);
        fprintf(stderr, "second callback %lld us after the first\n", gap_us);
        EXPECT_GE_INT(gap_us, BATCH_US);
    } else {
        EXPECT_EQ_INT(batch, 0);
    }
}

static void test_batch_range(void)
{
    evn_events ev = {0};
    ev.batch_us = 1000001;
    const char *addrs[] = {"tcp://127.0.0.1:0"};
    evn_server *srv = NULL;
    EXPECT_EQ_ERR(evn_server_new(&srv, &ev, addrs, 1), -EINVAL);
    EXPECT_NULL(srv);
    EXPECT_CONTAINS(evn_errmsg(), "batch_us");
    ev.batch_us = 1000000;
    EXPECT_EQ_ERR(evn_server_new(&srv, &ev, addrs, 1), 0);
    evn_server_free(srv);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_batch_waits);
    TH_RUN(test_batch_range);
    return th_finish();
}
