/*
 * Start and stop a server 50 times with connections still open at shutdown
 * (tcp and unix, several loops, pending output and kept input), and create
 * and free 50 that never run: afterwards exactly the fds of the start are
 * open. Memory leaks show up under the ASan build of this test.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ROUNDS 50
#define NCONN 6

struct state {
    th_counter opened, closed, data;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    /* Per-connection memory that closed must get a chance to free. */
    char *u = malloc(32);
    ASSERT_NOT_NULL(u);
    evn_conn_set_udata(c, u);
    /* Output that may still be queued when the server stops. */
    static char big[256 << 10];
    evn_write(c, big, sizeof big);
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    /* Keep some input so shutdown finds kept bytes to free. */
    if (in && len > 1)
        evn_keep(c, len - 1);
    th_counter_add(&S(c)->data, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    free(evn_conn_udata(c));
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

static void test_start_stop_with_open_connections(void)
{
    TH_NEED_UNIX_SOCKETS();
    int fds_at_start = th_fd_count();
    char path[128], unixurl[160];
    th_tmppath(path, sizeof path, "leaks.sock");
    snprintf(unixurl, sizeof unixurl, "unix://%s", path);
    const char *addrs[] = {"tcp://127.0.0.1:0", unixurl, "udp://127.0.0.1:0"};
    for (int round = 0; round < ROUNDS; round++) {
        struct state s;
        th_counter_init(&s.opened);
        th_counter_init(&s.closed);
        th_counter_init(&s.data);
        evn_events ev = {0};
        ev.nloops = 1 + round % 3;
        ev.balance = (evn_balance)(round % 3);
        ev.udata = &s;
        ev.opened = on_opened;
        ev.data = on_data;
        ev.closed = on_closed;
        th_server ts;
        th_server_start(&ts, &ev, addrs, 3);
        int fds[NCONN];
        for (int i = 0; i < NCONN; i++) {
            fds[i] = th_connect_srv(&ts, (size_t)(i % 2));
            th_write_str(fds[i], "kept bytes");
        }
        TH_WAIT_COUNTER(&s.opened, NCONN);
        TH_WAIT_COUNTER(&s.data, NCONN);
        th_server_stop(&ts);
        EXPECT_EQ_INT(th_counter_get(&s.closed), NCONN);
        for (int i = 0; i < NCONN; i++)
            close(fds[i]);
        EXPECT_FALSE(th_path_exists(path));
        EXPECT_EQ_INT(th_fd_count(), fds_at_start);
        th_counter_destroy(&s.opened);
        th_counter_destroy(&s.closed);
        th_counter_destroy(&s.data);
        if (th_failures())
            break;
    }
}

static void test_new_free_without_run(void)
{
    TH_NEED_UNIX_SOCKETS();
    TH_NEED_REUSEPORT();
    int fds_at_start = th_fd_count();
    char path[128], unixurl[160];
    th_tmppath(path, sizeof path, "norun.sock");
    snprintf(unixurl, sizeof unixurl, "unix://%s", path);
    const char *addrs[] = {"tcp://127.0.0.1:0?reuseport=true", unixurl, "udp://127.0.0.1:0"};
    for (int round = 0; round < ROUNDS; round++) {
        evn_events ev = {0};
        ev.nloops = 1 + round % 4;
        evn_server *srv = NULL;
        ASSERT_EQ_ERR(evn_server_new(&srv, &ev, addrs, 3), 0);
        /* Connections waiting in the backlog are closed with the server. */
        int fd = -1;
        if (round % 5 == 0)
            fd = th_connect_srv(&(th_server){.srv = srv}, 0);
        evn_server_free(srv);
        if (fd >= 0) {
            EXPECT_EQ_INT(th_wait_eof(fd) <= 0, 1);
            close(fd);
        }
        EXPECT_FALSE(th_path_exists(path));
        EXPECT_EQ_INT(th_fd_count(), fds_at_start);
        if (th_failures())
            break;
    }
}

/* Shutdown that arrives while loops are busy accepting. */
static void test_shutdown_during_connects(void)
{
    for (int round = 0; round < 10; round++) {
        struct state s;
        th_counter_init(&s.opened);
        th_counter_init(&s.closed);
        th_counter_init(&s.data);
        evn_events ev = {0};
        ev.nloops = 3;
        ev.balance = EVN_BALANCE_ROUND_ROBIN;
        ev.udata = &s;
        ev.opened = on_opened;
        ev.data = on_data;
        ev.closed = on_closed;
        const char *addr = "tcp://127.0.0.1:0";
        th_server ts;
        th_server_start(&ts, &ev, &addr, 1);
        int fds[20];
        for (int i = 0; i < 20; i++) {
            fds[i] = th_connect_srv(&ts, 0);
            if (i == 10)
                evn_shutdown(ts.srv);
        }
        th_server_free(&ts);
        /* Every connection that opened was closed. */
        EXPECT_EQ_INT(th_counter_get(&s.closed), th_counter_get(&s.opened));
        for (int i = 0; i < 20; i++)
            close(fds[i]);
        th_counter_destroy(&s.opened);
        th_counter_destroy(&s.closed);
        th_counter_destroy(&s.data);
    }
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_start_stop_with_open_connections);
    TH_RUN(test_new_free_without_run);
    TH_RUN(test_shutdown_during_connects);
    return th_finish();
}
