/*
 * IPv6: tcp6://[::1]:0 serves ::1 and reports it in its URL and addresses;
 * tcp://:0 (empty host) takes both 127.0.0.1 and ::1 clients on one port;
 * tcp6 does not take IPv4 clients and tcp4 no IPv6 ones; a host name is
 * resolved at evn_server_new(). Skipped, with SKIP printed, where there is no IPv6.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct state {
    th_counter opened, closed;
    pthread_mutex_t mu;
    char remote[8][128];
    char local[8][128];
    int n;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    pthread_mutex_lock(&s->mu);
    if (s->n < 8) {
        evn_conn_remote_str(c, s->remote[s->n], sizeof s->remote[0]);
        evn_conn_local_str(c, s->local[s->n], sizeof s->local[0]);
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
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
    evn_write(c, in, len);
    return EVN_NONE;
}

static void start(th_server *ts, struct state *s, const char *addr)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    pthread_mutex_init(&s->mu, NULL);
    evn_events ev = {0};
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    th_server_start(ts, &ev, &addr, 1);
}

static void finish(th_server *ts, struct state *s)
{
    th_server_stop(ts);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    pthread_mutex_destroy(&s->mu);
}

static void echo_once(int fd, const char *msg)
{
    th_write_str(fd, msg);
    EXPECT_READ_STR(fd, msg);
}

static void test_tcp6_loopback(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, "tcp6://[::1]:0");
    int port = th_server_port(&ts, 0);
    EXPECT_GT_INT(port, 0);
    char want[64];
    /* "tcp://[::1]:port" (or tcp6://) */
    snprintf(want, sizeof want, "://[::1]:%d", port);
    EXPECT_CONTAINS(evn_server_url(ts.srv, 0), want);
    EXPECT_TRUE(strncmp(evn_server_url(ts.srv, 0), "tcp", 3) == 0);
    socklen_t len;
    const struct sockaddr *sa = evn_server_addr(ts.srv, 0, &len);
    ASSERT_NOT_NULL(sa);
    EXPECT_EQ_INT(sa->sa_family, AF_INET6);
    EXPECT_EQ_SIZE(len, sizeof(struct sockaddr_in6));

    int fd = th_connect_ip("::1", port);
    echo_once(fd, "six");
    TH_WAIT_COUNTER(&s.opened, 1);
    snprintf(want, sizeof want, "[::1]:%d", port);
    EXPECT_STREQ(s.local[0], want);
    snprintf(want, sizeof want, "[::1]:%d", th_sock_port(fd, false));
    EXPECT_STREQ(s.remote[0], want);
    close(fd);

    /* An IPv6-only listener refuses IPv4 on its port. */
    struct sockaddr_storage ss;
    ASSERT_EQ_INT(th_make_addr("127.0.0.1", port, &ss, &len), 0);
    int rc = th_try_connect_addr((struct sockaddr *)&ss, len);
    EXPECT_LT_INT(rc, 0);
    if (rc >= 0)
        close(rc);
    TH_WAIT_COUNTER(&s.closed, 1);
    finish(&ts, &s);
}

static void test_dual_stack(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, "tcp://:0");
    int port = th_server_port(&ts, 0);
    EXPECT_GT_INT(port, 0);
    char want[64];
    snprintf(want, sizeof want, "tcp://[::]:%d", port);
    EXPECT_STREQ(evn_server_url(ts.srv, 0), want);

    int v4 = th_connect_ip("127.0.0.1", port);
    echo_once(v4, "four");
    TH_WAIT_COUNTER(&s.opened, 1);
    int v6 = th_connect_ip("::1", port);
    echo_once(v6, "six");
    TH_WAIT_COUNTER(&s.opened, 2);
    /* An IPv4 client may show as 127.0.0.1 or as ::ffff:127.0.0.1. */
    char p4[16];
    snprintf(p4, sizeof p4, ":%d", th_sock_port(v4, false));
    EXPECT_CONTAINS(s.remote[0], "127.0.0.1");
    EXPECT_CONTAINS(s.remote[0], p4);
    snprintf(want, sizeof want, "[::1]:%d", th_sock_port(v6, false));
    EXPECT_STREQ(s.remote[1], want);
    close(v4);
    close(v6);
    TH_WAIT_COUNTER(&s.closed, 2);
    finish(&ts, &s);
}

static evn_action udp_echo(evn_conn *c, const char *in, size_t len)
{
    evn_write(c, in, len);
    return EVN_NONE;
}

/* udp://:0 answers IPv4 and IPv6 senders on one port. */
static void test_udp_dual_stack(void)
{
    evn_events ev = {0};
    ev.data = udp_echo;
    const char *addr = "udp://:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    const char *hosts[] = {"127.0.0.1", "::1"};
    for (int i = 0; i < 2; i++) {
        struct sockaddr_storage to;
        socklen_t len;
        ASSERT_EQ_INT(th_make_addr(hosts[i], port, &to, &len), 0);
        int fd = th_udp_socket(to.ss_family);
        ASSERT_EQ_INT(sendto(fd, hosts[i], strlen(hosts[i]), 0, (struct sockaddr *)&to, len),
                      (ssize_t)strlen(hosts[i]));
        char buf[64] = "";
        ASSERT_EQ_INT(th_wait_readable(fd, th_io_timeout_ms()), 1);
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        EXPECT_EQ_INT(n, (ssize_t)strlen(hosts[i]));
        buf[n > 0 ? n : 0] = '\0';
        EXPECT_STREQ(buf, hosts[i]);
        close(fd);
    }
    th_server_stop(&ts);
}

static void test_tcp4_only(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, "tcp4://:0");
    int port = th_server_port(&ts, 0);
    char want[64];
    snprintf(want, sizeof want, "tcp://0.0.0.0:%d", port);
    EXPECT_STREQ(evn_server_url(ts.srv, 0), want);
    int fd = th_connect_ip("127.0.0.1", port);
    echo_once(fd, "four");
    close(fd);
    struct sockaddr_storage ss;
    socklen_t len;
    ASSERT_EQ_INT(th_make_addr("::1", port, &ss, &len), 0);
    int rc = th_try_connect_addr((struct sockaddr *)&ss, len);
    EXPECT_LT_INT(rc, 0);
    if (rc >= 0)
        close(rc);
    TH_WAIT_COUNTER(&s.closed, 1);
    finish(&ts, &s);
}

/* A host name is looked up once, in evn_server_new(). Only "localhost",
 * which /etc/hosts answers: the tests send nothing to a name server. */
static void test_host_name(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, "tcp4://localhost:0");
    int port = th_server_port(&ts, 0);
    char want[64];
    snprintf(want, sizeof want, "tcp://127.0.0.1:%d", port);
    EXPECT_STREQ(evn_server_url(ts.srv, 0), want);
    int fd = th_connect_ip("127.0.0.1", port);
    echo_once(fd, "named");
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    finish(&ts, &s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    if (!th_have_ipv6()) {
        th_skip("no IPv6 on this machine");
        return th_finish();
    }
    TH_RUN(test_tcp6_loopback);
    TH_RUN(test_dual_stack);
    TH_RUN(test_udp_dual_stack);
    TH_RUN(test_tcp4_only);
    TH_RUN(test_host_name);
    return th_finish();
}
