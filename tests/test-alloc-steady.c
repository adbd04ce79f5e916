/*
 * Steady traffic allocates nothing: once a server has served a burst, more
 * requests of the same kinds, small answers and answers of 100 KB written in
 * one evn_write, pipelined on several connections at once, make no
 * allocation in evn. On a completion backend a connection's output stays
 * queued until its send completes, so large answers must come from and go
 * back to the loop's pool of chunks rather than to malloc each time. And
 * the pool is bounded: after a burst of 24 MB, it keeps at most 512 chunks.
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#define LARGE (100u << 10)
#define SMALL "small answer 16B"
#define BURST 240 /* large answers to the warm-up's one request: 24 MB */
#define CONNS 4
#define ROUNDS 3
#define ROUND "LsLsLLss"
#define POOL_MAX 512

struct state {
    th_counter opened, requests;
};

static char large[LARGE];

static evn_action on_opened(evn_conn *c)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

/* Each byte is a request: 'L' a large answer, 's' a small one, 'W' the
 * warm-up's burst of large answers, all written in this one callback. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    for (size_t i = 0; i < len; i++) {
        if (in[i] == 'L') {
            EXPECT_EQ_ERR(evn_write(c, large, LARGE), 0);
        } else if (in[i] == 's') {
            EXPECT_EQ_ERR(evn_write(c, SMALL, strlen(SMALL)), 0);
        } else if (in[i] == 'W') {
            for (int k = 0; k < BURST; k++)
                EXPECT_EQ_ERR(evn_write(c, large, LARGE), 0);
        }
        th_counter_add(&s->requests, 1);
    }
    return EVN_NONE;
}

/* Read and check the answers to the requests in req. */
static void read_answers(int fd, const char *req)
{
    static char buf[LARGE];
    for (const char *r = req; *r; r++) {
        int n = *r == 'W' ? BURST : 1;
        size_t size = *r == 's' ? strlen(SMALL) : LARGE;
        for (int k = 0; k < n; k++) {
            ASSERT_EQ_INT(th_read_exact(fd, buf, size), (ssize_t)size);
            if (*r == 's')
                EXPECT_MEMEQ(buf, SMALL, size);
            else if (memcmp(buf, large, size) != 0)
                th_fail_(__FILE__, __LINE__, true, "a large answer differs");
        }
    }
}

static void test_steady_traffic_allocates_nothing(void)
{
    for (size_t i = 0; i < LARGE; i++)
        large[i] = (char)(i % 251);
    struct state s;
    th_counter_init(&s.opened);
    th_counter_init(&s.requests);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = on_opened;
    ev.data = on_data;
    const char *addrs[] = {"tcp://127.0.0.1:0"};
    th_server ts;
    th_server_start(&ts, &ev, addrs, 1);

    /* Warm-up: every connection opened and served once; the first takes a
     * burst larger than any round below has in flight at once. */
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++)
        fds[i] = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, CONNS);
    long live = th_alloc_live();
    th_write_str(fds[0], "W");
    read_answers(fds[0], "W");
    /* The burst's 1,500 chunks are all given back (the small answer after
     * them has come, so their sends are reaped), and the loop keeps no more
     * than its pool's limit (conn.c's EVN__CHUNK_POOL_MAX, 512) of them,
     * plus at most the small answer's own chunk, whose send may not be. */
    th_write_str(fds[0], "s");
    read_answers(fds[0], "s");
    EXPECT_LE_INT(th_alloc_live() - live, POOL_MAX + 1);
    for (int i = 0; i < CONNS; i++) {
        th_write_str(fds[i], ROUND);
        read_answers(fds[i], ROUND);
    }
    long served = th_counter_get(&s.requests);

    th_alloc_record_sites(true);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < CONNS; i++)
            th_write_str(fds[i], ROUND);
        for (int i = 0; i < CONNS; i++)
            read_answers(fds[i], ROUND);
    }
    th_alloc_record_sites(false);
    EXPECT_EQ_INT(th_counter_get(&s.requests) - served, ROUNDS * CONNS * (long)strlen(ROUND));
    EXPECT_EQ_INT(th_alloc_recorded(), 0);

    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    th_server_stop(&ts);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.requests);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_steady_traffic_allocates_nothing);
    return th_finish();
}
