/*
 * Outbound connections: evn_connect from a callback reaches a listener (here
 * the server's own), gets opened with its udata and EVN_OUTBOUND as listener,
 * exchanges data, and output sent before the connection is up goes out once
 * it is. A refused connect fires closed with -ECONNREFUSED and never opened;
 * one that cannot complete times out with -ETIMEDOUT. Bad URLs, malformed
 * host names and calls from outside a loop are refused at once (host names
 * themselves: test-resolve.c).
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct state {
    char target[160];
    int64_t timeout_ms;
    int marker;
    th_counter out_opened, in_opened, closed, done;
    atomic_int connect_rc, close_err, listener_ok, udata_ok, got_reply;
    evn_id id;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_serving(evn_server *srv)
{
    struct state *s = evn_server_udata(srv);
    atomic_store(&s->connect_rc, evn_connect(srv, s->target, s->timeout_ms, &s->marker, &s->id));
    /* Queued before the connection is up: must arrive after it is. */
    if (atomic_load(&s->connect_rc) == 0)
        evn_send(srv, s->id, "early:", 6);
    return EVN_NONE;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    if (evn_conn_listener(c) == EVN_OUTBOUND) {
        atomic_store(&s->listener_ok, evn_conn_id(c) == s->id);
        atomic_store(&s->udata_ok, evn_conn_udata(c) == &s->marker);
        evn_write(c, "ping", 4);
        th_counter_add(&s->out_opened, 1);
    } else {
        th_counter_add(&s->in_opened, 1);
    }
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (evn_conn_listener(c) != EVN_OUTBOUND) {
        evn_write(c, in, len);
        return EVN_NONE;
    }
    /* The echo of "early:ping" may arrive in pieces. */
    if (len < 10) {
        evn_keep(c, len);
        return EVN_NONE;
    }
    atomic_store(&s->got_reply, len == 10 && memcmp(in, "early:ping", 10) == 0);
    th_counter_add(&s->done, 1);
    return EVN_CLOSE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (evn_conn_listener(c) == EVN_OUTBOUND) {
        atomic_store(&s->close_err, err);
        th_counter_add(&s->closed, 1);
    }
    return EVN_NONE;
}

static void init_state(struct state *s)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->out_opened);
    th_counter_init(&s->in_opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->done);
}

static void destroy_state(struct state *s)
{
    th_counter_destroy(&s->out_opened);
    th_counter_destroy(&s->in_opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->done);
}

static evn_events events(struct state *s)
{
    evn_events ev = {0};
    ev.udata = s;
    ev.serving = on_serving;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.closed = on_closed;
    return ev;
}

/* Connect to the server's own listener at `host`. */
static void self_connect(const char *listen, const char *fmt)
{
    struct state s;
    init_state(&s);
    evn_events ev = events(&s);
    th_server ts;
    th_server_new(&ts, &ev, &listen, 1);
    snprintf(s.target, sizeof s.target, fmt, th_server_port(&ts, 0));
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.done, 1);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(atomic_load(&s.connect_rc), 0);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 1);
    EXPECT_EQ_INT(th_counter_get(&s.in_opened), 1);
    EXPECT_TRUE(atomic_load(&s.listener_ok));
    EXPECT_TRUE(atomic_load(&s.udata_ok));
    EXPECT_TRUE(atomic_load(&s.got_reply));
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    th_server_stop(&ts);
    destroy_state(&s);
}

static void test_connect_tcp4(void)
{
    self_connect("tcp://127.0.0.1:0", "tcp://127.0.0.1:%d");
}

static void test_connect_tcp6(void)
{
    if (!th_have_ipv6()) {
        th_skip("no IPv6");
        return;
    }
    self_connect("tcp6://[::1]:0", "tcp6://[::1]:%d");
}

static void test_connect_unix(void)
{
    TH_NEED_UNIX_SOCKETS();
    char path[128], listen[160];
    th_tmppath(path, sizeof path, "connect.sock");
    snprintf(listen, sizeof listen, "unix://%s", path);
    struct state s;
    init_state(&s);
    evn_events ev = events(&s);
    const char *addr = listen;
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    snprintf(s.target, sizeof s.target, "unix://%s", path);
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.done, 1);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_TRUE(atomic_load(&s.got_reply));
    th_server_stop(&ts);
    destroy_state(&s);
}

static void test_refused(void)
{
    struct state s;
    init_state(&s);
    evn_events ev = events(&s);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    snprintf(s.target, sizeof s.target, "tcp://127.0.0.1:%d", th_closed_port());
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(atomic_load(&s.connect_rc), 0);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ECONNREFUSED);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 0);
    th_server_stop(&ts);
    destroy_state(&s);
}

/*
 * A listener whose accept queue is full and never drained: the kernel drops
 * further SYNs, so a connect can only time out.
 */
static void test_timeout(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    ASSERT_EQ_INT(listen(lfd, 0), 0);
    int port = th_sock_port(lfd, false);
    /* Fill the queue: with backlog 0 Linux holds one; take a few to be sure. */
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        sin.sin_port = htons((uint16_t)port);
        connect(fill[i], (struct sockaddr *)&sin, sizeof sin);
    }
    struct state s;
    init_state(&s);
    s.timeout_ms = 200;
    evn_events ev = events(&s);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    snprintf(s.target, sizeof s.target, "tcp://127.0.0.1:%d", port);
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ETIMEDOUT);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 0);
    th_server_stop(&ts);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
    destroy_state(&s);
}

static evn_action bad_serving(evn_server *srv)
{
    struct state *s = evn_server_udata(srv);
    static const struct {
        const char *url;
        int rc;
        const char *msg;
    } cases[] = {
        {"tcp://bad!name:80", -EINVAL, "host name"},
        {"tcp://a..b:80", -EINVAL, "host name"},
        {"udp://127.0.0.1:53", -EINVAL, "tcp://"},
        {"tcp://127.0.0.1:80?reuseport=true", -EINVAL, "listeners"},
        {"tcp4://[::1]:80", -EINVAL, "IPv4"},
        {"tcp://:80", -EINVAL, "host name"},
        {"bogus://x:1", -EINVAL, "scheme"},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = evn_connect(srv, cases[i].url, 0, NULL, NULL);
        if (rc != cases[i].rc || !strstr(evn_errmsg(), cases[i].msg)) {
            fprintf(stderr, "evn_connect(%s) = %d, \"%s\"\n", cases[i].url, rc, evn_errmsg());
            ok = 0;
        }
    }
    if (evn_connect(srv, "tcp://127.0.0.1:1", -1, NULL, NULL) != -EINVAL)
        ok = 0;
    atomic_store(&s->got_reply, ok);
    return EVN_SHUTDOWN;
}

static void test_bad_urls(void)
{
    struct state s;
    init_state(&s);
    evn_events ev = events(&s);
    ev.serving = bad_serving;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    /* Not on a loop thread: refused. */
    EXPECT_EQ_ERR(evn_connect(ts.srv, "tcp://127.0.0.1:1", 0, NULL, NULL), -EPERM);
    th_server_run(&ts);
    th_server_join(&ts);
    EXPECT_TRUE(atomic_load(&s.got_reply));
    th_server_free(&ts);
    destroy_state(&s);
}

static void test_unix_missing(void)
{
    TH_NEED_UNIX_SOCKETS();
    struct state s;
    init_state(&s);
    evn_events ev = events(&s);
    const char *addr = "tcp://127.0.0.1:0";
    char path[128];
    th_tmppath(path, sizeof path, "nobody.sock");
    snprintf(s.target, sizeof s.target, "unix://%s", path);
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    th_server_run(&ts);
    /* A unix connect fails at once: reported by the call, no event. */
    while (atomic_load(&s.connect_rc) == 0 && th_counter_get(&s.closed) == 0)
        usleep(1000);
    EXPECT_EQ_ERR(atomic_load(&s.connect_rc), -ENOENT);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 0);
    destroy_state(&s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_connect_tcp4);
    TH_RUN(test_connect_tcp6);
    TH_RUN(test_connect_unix);
    TH_RUN(test_refused);
    TH_RUN(test_timeout);
    TH_RUN(test_bad_urls);
    TH_RUN(test_unix_missing);
    return th_finish();
}
