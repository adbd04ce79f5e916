/*
 * More input waiting than the io_uring backend has receive buffers (256 of
 * 16 KiB): every byte still arrives, in order, on each connection. The loop
 * is held in a callback while 50 clients each fill their socket's buffers
 * (megabytes each), so that the next wait finds far more input than the
 * ring holds; on io_uring the receives that find the ring empty end with
 * ENOBUFS and are armed again (counted, and checked to have happened),
 * never taken for an end of input. On the other backends the same traffic
 * must simply come back whole.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define NCONNS 50
#define MAXLEN (4 << 20)

struct state {
    th_counter written;
    atomic_bool held;
    atomic_int closed_early;
};

static struct state S;

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (!in)
        return EVN_NONE;
    /* The first input holds the loop until every client has written. */
    if (!atomic_exchange(&S.held, true))
        TH_WAIT_COUNTER(&S.written, NCONNS);
    evn_write(c, in, len);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    (void)c;
    if (err)
        atomic_fetch_add(&S.closed_early, 1);
    return EVN_NONE;
}

static char byte_at(int k, size_t i)
{
    return (char)(k * 31 + (int)(i % 251) * 7);
}

static void test_more_readers_than_buffers(void)
{
    th_counter_init(&S.written);
    atomic_store(&S.held, false);
    atomic_store(&S.closed_early, 0);
    evn_events ev = {.data = on_data, .closed = on_closed};
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    static int fds[NCONNS];
    static size_t sent[NCONNS];
    char *buf = malloc(MAXLEN), *got = malloc(MAXLEN);
    ASSERT_TRUE(buf && got);
    for (int k = 0; k < NCONNS; k++)
        fds[k] = th_connect_srv(&ts, 0);
    /* Each client sends what its socket takes without waiting: the server
     * is held, so that is all its buffers can hold. */
    for (int k = 0; k < NCONNS; k++) {
        for (size_t i = 0; i < MAXLEN; i++)
            buf[i] = byte_at(k, i);
        sent[k] = 0;
        while (sent[k] < MAXLEN) {
            ssize_t n = send(fds[k], buf + sent[k], MAXLEN - sent[k], MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n <= 0)
                break;
            sent[k] += (size_t)n;
        }
        ASSERT_GT_INT(sent[k], 0);
        th_counter_add(&S.written, 1);
    }
    for (int k = 0; k < NCONNS; k++) {
        ASSERT_EQ_INT(th_read_exact(fds[k], got, sent[k]), (long long)sent[k]);
        size_t bad = sent[k];
        for (size_t i = 0; i < sent[k] && bad == sent[k]; i++)
            if (got[i] != byte_at(k, i))
                bad = i;
        EXPECT_EQ_SIZE(bad, sent[k]);
        close(fds[k]);
    }
    free(buf);
    free(got);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    EXPECT_EQ_INT(atomic_load(&S.closed_early), 0);
#ifdef EVN_HAVE_URING
    if (strcmp(evn_server_backend(ts.srv), "io_uring") == 0) {
        long n = evn__uring_nobufs(ts.srv);
        fprintf(stderr, "  %ld receives ended for want of a buffer, and were armed again\n", n);
        EXPECT_GT_INT(n, 0);
    }
#endif
    th_server_free(&ts);
    th_counter_destroy(&S.written);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_more_readers_than_buffers);
    return th_finish();
}
