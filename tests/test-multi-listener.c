/*
 * One server, several listeners of different kinds (tcp, unix, udp, and a
 * second tcp), with one loop and with several: every listener serves, and
 * evn_conn_listener() names the one that took each connection or datagram.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct state {
    th_counter opened, closed;
    atomic_int bad_opened_udp;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    if (evn_conn_is_udp(c))
        atomic_fetch_add(&S(c)->bad_opened_udp, 1);
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

/* Answer "L<listener>/<udp>:" and the input. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    char tag[32];
    int n = snprintf(tag, sizeof tag, "L%zu/%d:", evn_conn_listener(c), evn_conn_is_udp(c) ? 1 : 0);
    evn_write(c, tag, (size_t)n);
    evn_write(c, in, len);
    return EVN_NONE;
}

static void expect_tag(int fd, size_t listener, int udp, const char *msg)
{
    char want[64];
    snprintf(want, sizeof want, "L%zu/%d:%s", listener, udp, msg);
    EXPECT_READ_STR(fd, want);
}

static void run(int nloops)
{
    struct state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.opened);
    th_counter_init(&s.closed);
    char path[128], unixurl[160];
    th_tmppath(path, sizeof path, "multi.sock");
    snprintf(unixurl, sizeof unixurl, "unix://%s", path);
    const char *addrs[] = {"tcp://127.0.0.1:0", unixurl, "udp://127.0.0.1:0",
                           "tcp://127.0.0.1:0?reuseport=true"};
    evn_events ev = {0};
    ev.nloops = nloops;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.udata = &s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    th_server ts;
    th_server_start(&ts, &ev, addrs, 4);
    EXPECT_EQ_SIZE(evn_server_naddrs(ts.srv), 4);
    EXPECT_TRUE(strncmp(evn_server_url(ts.srv, 0), "tcp://127.0.0.1:", 16) == 0);
    EXPECT_STREQ(evn_server_url(ts.srv, 1), unixurl);
    EXPECT_TRUE(strncmp(evn_server_url(ts.srv, 2), "udp://127.0.0.1:", 16) == 0);
    EXPECT_TRUE(strncmp(evn_server_url(ts.srv, 3), "tcp://127.0.0.1:", 16) == 0);
    EXPECT_NULL(evn_server_url(ts.srv, 4));

    /* Several stream connections on each stream listener, all open at once. */
    enum { PER = 6 };
    size_t stream[] = {0, 1, 3};
    int fds[3][PER];
    for (int k = 0; k < PER; k++)
        for (int j = 0; j < 3; j++)
            fds[j][k] = th_connect_srv(&ts, stream[j]);
    TH_WAIT_COUNTER(&s.opened, 3 * PER);
    for (int k = 0; k < PER; k++) {
        for (int j = 0; j < 3; j++) {
            char msg[16];
            snprintf(msg, sizeof msg, "s%d.%d", j, k);
            th_write_str(fds[j][k], msg);
            expect_tag(fds[j][k], stream[j], 0, msg);
        }
    }

    /* Datagrams to the udp listener. */
    socklen_t len;
    const struct sockaddr *sa = evn_server_addr(ts.srv, 2, &len);
    ASSERT_NOT_NULL(sa);
    int u = th_udp_socket(AF_INET);
    for (int i = 0; i < 10; i++) {
        char msg[16], buf[64];
        int n = snprintf(msg, sizeof msg, "d%d", i);
        ASSERT_EQ_INT(sendto(u, msg, (size_t)n, 0, sa, len), n);
        ASSERT_EQ_INT(th_wait_readable(u, th_io_timeout_ms()), 1);
        ssize_t got = recv(u, buf, sizeof buf - 1, 0);
        ASSERT_GT_INT(got, 0);
        buf[got] = '\0';
        char want[32];
        snprintf(want, sizeof want, "L2/1:%s", msg);
        EXPECT_STREQ(buf, want);
    }
    close(u);

    for (int k = 0; k < PER; k++)
        for (int j = 0; j < 3; j++)
            close(fds[j][k]);
    TH_WAIT_COUNTER(&s.closed, 3 * PER);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.opened), 3 * PER);
    EXPECT_EQ_INT(atomic_load(&s.bad_opened_udp), 0);
    EXPECT_FALSE(th_path_exists(path));
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
}

static void test_one_loop(void)
{
    TH_NEED_UNIX_SOCKETS();
    TH_NEED_REUSEPORT();
    run(1);
}

static void test_three_loops(void)
{
    TH_NEED_UNIX_SOCKETS();
    TH_NEED_REUSEPORT();
    run(3);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_one_loop);
    TH_RUN(test_three_loops);
    return th_finish();
}
