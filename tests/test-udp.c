/*
 * UDP: udp:// on 127.0.0.1 and udp6:// on ::1. Each datagram fires data once,
 * with its boundaries kept, on a pseudo-connection (id 0, is_udp) whose
 * remote address is the sender; the reply goes back to that sender. opened
 * and closed never fire.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct state {
    th_counter opened, closed, data;
    atomic_int bad;
    atomic_int last_remote_port;
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
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

/* Reply "re:" + the datagram + ":" + the sender as text. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (!evn_conn_is_udp(c) || evn_conn_id(c) != 0 || in == NULL)
        atomic_fetch_add(&s->bad, 1);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char from[128];
    if (evn_conn_remote_addr(c, &ss, &sl) != 0 || evn_conn_remote_str(c, from, sizeof from) < 0) {
        atomic_fetch_add(&s->bad, 1);
        from[0] = '\0';
    }
    atomic_store(&s->last_remote_port, th_sockaddr_port((struct sockaddr *)&ss));
    /* One write, one reply datagram. */
    char reply[2048];
    int n = snprintf(reply, sizeof reply, "re:%.*s:%s", (int)len, in ? in : "", from);
    EXPECT_EQ_ERR(evn_write(c, reply, (size_t)n < sizeof reply ? (size_t)n : sizeof reply), 0);
    th_counter_add(&s->data, 1);
    return EVN_NONE;
}

static evn_action echo_data(evn_conn *c, const char *in, size_t len)
{
    EXPECT_EQ_ERR(evn_write(c, in, len), 0);
    th_counter_add(&S(c)->data, 1);
    return EVN_NONE;
}

static void roundtrip(int fd, const struct sockaddr *to, socklen_t tolen, const char *msg,
                      size_t len)
{
    ASSERT_EQ_INT(sendto(fd, msg, len, 0, to, tolen), (ssize_t)len);
    char buf[2048], want[2048];
    ASSERT_EQ_INT(th_wait_readable(fd, th_io_timeout_ms()), 1);
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    /* The socket is bound to the wildcard; the server sees loopback. */
    char from[128];
    snprintf(from, sizeof from, to->sa_family == AF_INET6 ? "[::1]:%d" : "127.0.0.1:%d",
             th_sock_port(fd, false));
    int wl = snprintf(want, sizeof want, "re:%.*s:%s", (int)len, msg, from);
    EXPECT_EQ_INT(n, wl);
    if (n == wl)
        EXPECT_MEMEQ(buf, want, (size_t)wl);
}

static void run(const char *addr, int family, const char *loopback)
{
    struct state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.opened);
    th_counter_init(&s.closed);
    th_counter_init(&s.data);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    EXPECT_GT_INT(port, 0);
    char want_url[64];
    snprintf(want_url, sizeof want_url, family == AF_INET6 ? "udp://[%s]:%d" : "udp://%s:%d",
             loopback, port);
    EXPECT_STREQ(evn_server_url(ts.srv, 0), want_url);

    struct sockaddr_storage to;
    socklen_t tolen;
    ASSERT_EQ_INT(th_make_addr(loopback, port, &to, &tolen), 0);
    int a = th_udp_socket(family), b = th_udp_socket(family);
    char msg[1400];
    th_rng r;
    th_rng_init(&r, th_seed());
    int n = 0;
    for (int i = 0; i < 20; i++) {
        size_t len = (size_t)th_rng_range(&r, 1, sizeof msg);
        for (size_t k = 0; k < len; k++)
            msg[k] = (char)('a' + th_rng_range(&r, 0, 25));
        roundtrip(i % 3 ? a : b, (struct sockaddr *)&to, tolen, msg, len);
        n++;
        EXPECT_EQ_INT(atomic_load(&s.last_remote_port), th_sock_port(i % 3 ? a : b, false));
    }
    /* Several datagrams in flight at once keep their boundaries. */
    for (int i = 0; i < 5; i++) {
        char m[8];
        int ml = snprintf(m, sizeof m, "m%d", i);
        ASSERT_EQ_INT(sendto(a, m, (size_t)ml, 0, (struct sockaddr *)&to, tolen), ml);
    }
    for (int i = 0; i < 5; i++) {
        char buf[256];
        ASSERT_EQ_INT(th_wait_readable(a, th_io_timeout_ms()), 1);
        ssize_t got = recv(a, buf, sizeof buf, 0);
        char m[8];
        snprintf(m, sizeof m, "re:m%d:", i);
        EXPECT_GT_INT(got, 0);
        buf[got > 0 ? got : 0] = '\0';
        EXPECT_TRUE(strncmp(buf, m, strlen(m)) == 0);
    }
    n += 5;
    TH_WAIT_COUNTER(&s.data, n);
    close(a);
    close(b);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.data), n);
    EXPECT_EQ_INT(th_counter_get(&s.opened), 0);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 0);
    EXPECT_EQ_INT(atomic_load(&s.bad), 0);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
    th_counter_destroy(&s.data);
}

static void test_udp4(void)
{
    run("udp://127.0.0.1:0", AF_INET, "127.0.0.1");
}

static void test_udp4_explicit(void)
{
    run("udp4://127.0.0.1:0", AF_INET, "127.0.0.1");
}

static void test_udp6(void)
{
    if (!th_have_ipv6()) {
        th_skip("no IPv6 on this machine");
        return;
    }
    run("udp6://[::1]:0", AF_INET6, "::1");
}

/* Several loops: the datagrams still each get exactly one reply, from a
 * socket shared by the loops or, with reuseport, one socket per loop. */
static void udp_several_loops(const char *addr)
{
    struct state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.opened);
    th_counter_init(&s.closed);
    th_counter_init(&s.data);
    evn_events ev = {0};
    ev.nloops = 3;
    ev.udata = &s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    struct sockaddr_storage to;
    socklen_t tolen;
    ASSERT_EQ_INT(th_make_addr("127.0.0.1", th_server_port(&ts, 0), &to, &tolen), 0);
    int fd = th_udp_socket(AF_INET);
    for (int i = 0; i < 30; i++) {
        char m[16];
        int ml = snprintf(m, sizeof m, "n%d", i);
        roundtrip(fd, (struct sockaddr *)&to, tolen, m, (size_t)ml);
    }
    close(fd);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.data), 30);
    EXPECT_EQ_INT(th_counter_get(&s.opened), 0);
    EXPECT_EQ_INT(atomic_load(&s.bad), 0);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
    th_counter_destroy(&s.data);
}

static void test_udp_several_loops(void)
{
    udp_several_loops("udp://127.0.0.1:0");
}

static void test_udp_reuseport(void)
{
    TH_NEED_REUSEPORT();
    udp_several_loops("udp://127.0.0.1:0?reuseport=true");
}

/* The largest IPv4 datagram arrives whole and goes back whole. */
static void test_largest_datagram(void)
{
    struct state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.opened);
    th_counter_init(&s.closed);
    th_counter_init(&s.data);
    evn_events ev = {0};
    ev.udata = &s;
    ev.data = echo_data;
    th_server ts;
    const char *addr = "udp://127.0.0.1:0";
    th_server_start(&ts, &ev, &addr, 1);
    struct sockaddr_storage to;
    socklen_t tolen;
    ASSERT_EQ_INT(th_make_addr("127.0.0.1", th_server_port(&ts, 0), &to, &tolen), 0);
    int fd = th_udp_socket(AF_INET);
    int sz = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    size_t lens[] = {65507, 1, 40000, 65507};
    static char out[65536], in[65536];
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (size_t k = 0; k < lens[i]; k++)
            out[k] = (char)(k * 13 + i);
        ASSERT_EQ_INT(sendto(fd, out, lens[i], 0, (struct sockaddr *)&to, tolen), (ssize_t)lens[i]);
        ASSERT_EQ_INT(th_wait_readable(fd, th_io_timeout_ms()), 1);
        ssize_t n = recv(fd, in, sizeof in, 0);
        EXPECT_EQ_INT(n, (ssize_t)lens[i]);
        if (n == (ssize_t)lens[i])
            EXPECT_MEMEQ(in, out, lens[i]);
    }
    close(fd);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.data), 4);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
    th_counter_destroy(&s.data);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_udp4);
    TH_RUN(test_udp4_explicit);
    TH_RUN(test_udp6);
    TH_RUN(test_udp_several_loops);
    TH_RUN(test_udp_reuseport);
    TH_RUN(test_largest_datagram);
    return th_finish();
}
