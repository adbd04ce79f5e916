/*
 * The IOCP backend's cost per request, counted: a request and its answer
 * take one zero-byte receive, one recv, one send and one wait of the loop,
 * two operations finished (the receive's and the send's, by a completion
 * or at once), and no allocation, neither in the backend nor anywhere in
 * evn. Counted as the difference between two servers that serve the same
 * connections, one with ROUNDS more requests than the other, so that
 * setting up and closing cancel out. Windows only (registered there alone),
 * with the iocp backend.
 */
#include "harness.h"

#include "internal.h"

#include <string.h>

#define CONNS 4
#define WARM 4
#define ROUNDS 200

struct state {
    th_counter opened, closed;
};

static evn_action on_opened(evn_conn *c)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

/* Each "ping\n" gets "pong\n" (the client sends one at a time). */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (in[i] == '\n')
            EXPECT_EQ_ERR(evn_write(c, "pong\n", 5), 0);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

/* Serve CONNS connections WARM requests each, then `more` more, one at a
 * time, and return what the backend counted; *allocs: evn's allocations
 * during the `more`. */
static struct evn__iocp_counts serve(int more, long *allocs)
{
    struct state s;
    th_counter_init(&s.opened);
    th_counter_init(&s.closed);
    evn_events ev = {0};
    ev.udata = &s;
    ev.nloops = 1;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.closed = on_closed;
    const char *addrs[] = {"tcp://127.0.0.1:0"};
    th_server ts;
    th_server_start(&ts, &ev, addrs, 1);
    int fds[CONNS];
    char buf[8];
    for (int i = 0; i < CONNS; i++)
        fds[i] = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, CONNS);
    for (int r = 0; r < WARM; r++) {
        for (int i = 0; i < CONNS; i++) {
            th_write_str(fds[i], "ping\n");
            ASSERT_EQ_INT(th_read_exact(fds[i], buf, 5), 5);
        }
    }
    th_alloc_record_sites(true);
    for (int r = 0; r < more; r++) {
        for (int i = 0; i < CONNS; i++) {
            th_write_str(fds[i], "ping\n");
            ASSERT_EQ_INT(th_read_exact(fds[i], buf, 5), 5);
            EXPECT_MEMEQ(buf, "pong\n", 5);
        }
    }
    th_alloc_record_sites(false);
    *allocs = th_alloc_recorded();
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s.closed, CONNS);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    struct evn__iocp_counts n;
    evn__iocp_counts(ts.srv, &n);
    th_server_free(&ts);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
    return n;
}

static void test_cost_per_request(void)
{
    const char *b = th_backend();
    if (b && strcmp(b, "iocp") != 0) {
        th_skip("counts the iocp backend");
        return;
    }
    long allocs0, allocs1;
    struct evn__iocp_counts a = serve(0, &allocs0), z = serve(ROUNDS, &allocs1);
    long n = (long)ROUNDS * CONNS;
    fprintf(stderr,
            "  per %ld requests: %ld waits, %ld completions, %ld finished at once, "
            "%ld zero-byte receives, %ld recvs, %ld sends, %ld polls, %ld allocations\n",
            n, z.waits - a.waits, z.completions - a.completions, z.inline_done - a.inline_done,
            z.recv_posts - a.recv_posts, z.recvs - a.recvs, z.sends - a.sends,
            z.polls - a.polls, z.allocs - a.allocs);
    EXPECT_EQ_INT(allocs1, 0);
    EXPECT_EQ_INT(z.allocs - a.allocs, 0);
    EXPECT_EQ_INT(z.sends - a.sends, n);
    EXPECT_EQ_INT(z.recv_posts - a.recv_posts, n);
    EXPECT_EQ_INT(z.recvs - a.recvs, n);
    EXPECT_EQ_INT(z.polls - a.polls, 0);
    /* The receive's and the send's: no other operation per request. */
    EXPECT_EQ_INT((z.completions + z.inline_done) - (a.completions + a.inline_done), 2 * n);
    /* One wait per request; a little more where the client was quicker
     * than the loop's next turn. */
    EXPECT_LE_INT(z.waits - a.waits, n + n / 10);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_cost_per_request);
    return th_finish();
}
