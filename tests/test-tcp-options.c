/*
 * TCP tuning from the URL: every option is read back with getsockopt, on the
 * listening socket and (for what a connection inherits) on an accepted one;
 * options are refused where they do not apply, with a message naming them.
 */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

struct state {
    th_counter opened;
    atomic_int nodelay, keepalive, keepidle, rcvbuf;
};

static int getopt_int(int fd, int level, int name)
{
    /* From 0: Windows writes a one-byte BOOLEAN for some options. */
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, level, name, &v, &len) < 0)
        return -errno;
    return v;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    int fd = evn_conn_fd(c);
    atomic_store(&s->nodelay, getopt_int(fd, IPPROTO_TCP, TCP_NODELAY));
    atomic_store(&s->keepalive, getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE));
#ifdef TCP_KEEPIDLE
    atomic_store(&s->keepidle, getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE));
#endif
    atomic_store(&s->rcvbuf, getopt_int(fd, SOL_SOCKET, SO_RCVBUF));
    th_counter_add(&s->opened, 1);
    return EVN_CLOSE;
}

static void run(const char *url, struct state *s, int *lfd_opts)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    evn_events ev = {0};
    ev.udata = s;
    ev.opened = on_opened;
    th_server ts;
    th_server_new(&ts, &ev, &url, 1);
    int lfd = ts.srv->listeners[0].fd;
#ifdef _WIN32
    /* Linux's own options, not read back on Windows (see test_all_options). */
    lfd_opts[0] = lfd_opts[1] = -ENOPROTOOPT;
#else
    lfd_opts[0] = getopt_int(lfd, IPPROTO_TCP, TCP_FASTOPEN);
    lfd_opts[1] = getopt_int(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT);
#endif
    lfd_opts[2] = getopt_int(lfd, SOL_SOCKET, SO_SNDBUF);
    lfd_opts[3] = getopt_int(lfd, IPPROTO_IPV6, IPV6_V6ONLY);
    th_server_run(&ts);
    int fd = th_connect_srv(&ts, 0);
    /* With deferaccept the server sees the connection once data arrives. */
    th_write_str(fd, "x");
    TH_WAIT_COUNTER(&s->opened, 1);
    close(fd);
    th_server_stop(&ts);
    th_counter_destroy(&s->opened);
}

static void test_all_options(void)
{
#ifdef _WIN32
    th_skip("fastopen, deferaccept and the keepalive idle time are Linux's TCP options");
    return;
#endif
    if (!th_have_ipv6()) {
        th_skip("no IPv6");
        return;
    }
    struct state s;
    int l[4];
    run("tcp6://[::1]:0?nodelay=true&keepalive=30&fastopen=16&deferaccept=5&sndbuf=65536&"
        "rcvbuf=131072&ipv6only=true&backlog=64",
        &s, l);
    EXPECT_EQ_INT(l[0], 16);
    EXPECT_GE_INT(l[1], 5);     /* the kernel rounds up to whole retransmissions */
    EXPECT_GE_INT(l[2], 65536); /* Linux doubles what is asked */
    EXPECT_EQ_INT(l[3], 1);
    EXPECT_EQ_INT(atomic_load(&s.nodelay), 1);
    EXPECT_EQ_INT(atomic_load(&s.keepalive), 1);
    EXPECT_EQ_INT(atomic_load(&s.keepidle), 30);
    EXPECT_GE_INT(atomic_load(&s.rcvbuf), 131072);
}

static void test_defaults(void)
{
    if (!th_have_ipv6()) {
        th_skip("no IPv6");
        return;
    }
    struct state s;
    int l[4];
    run("tcp://:0", &s, l);
#ifndef _WIN32
    EXPECT_EQ_INT(l[0], 0);
    EXPECT_EQ_INT(l[1], 0);
#endif
    EXPECT_EQ_INT(l[3], 0); /* tcp:// on every interface serves IPv4 too */
    EXPECT_EQ_INT(atomic_load(&s.nodelay), 1);
    EXPECT_EQ_INT(atomic_load(&s.keepalive), 0);
    run("tcp://[::1]:0?nodelay=false", &s, l);
    EXPECT_EQ_INT(atomic_load(&s.nodelay), 0);
}

static void test_misplaced_options(void)
{
    static const struct {
        const char *url, *part;
    } bad[] = {
        {"udp://:0?nodelay=true", "nodelay"},
        {"unix:///tmp/x.sock?keepalive=3", "keepalive"},
        {"udp://:0?deferaccept=1", "deferaccept"},
        {"tcp://:0?cert=/x.pem", "cert"},
        {"tcp://:0?keepalive=-1", "-1"},
        {"tcp://:0?fastopen=70000", "70000"},
        {"tcp://:0?nodelay=maybe", "maybe"},
        {"tls://:0?cert=/a.pem", "key="},
        {"tls://:0?cert=/a&key=/b&verify=sometimes", "sometimes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct evn__url u;
        char err[256];
        EXPECT_EQ_ERR(evn__url_parse(bad[i].url, &u, err, sizeof err), -EINVAL);
        EXPECT_CONTAINS(err, bad[i].part);
    }
    struct evn__url u;
    char err[256];
    EXPECT_EQ_INT(evn__url_parse("tls://:443?cert=/c.pem&key=/k.pem&ca=/ca.pem&verify=require&"
                                 "alpn=h2,http/1.1",
                                 &u, err, sizeof err),
                  0);
    EXPECT_TRUE(u.tls);
    EXPECT_EQ_INT(u.verify, EVN__VERIFY_REQUIRE);
    EXPECT_STREQ(u.alpn, "h2,http/1.1");
    EXPECT_STREQ(u.ca, "/ca.pem");
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_all_options);
    TH_RUN(test_defaults);
    TH_RUN(test_misplaced_options);
    return th_finish();
}
