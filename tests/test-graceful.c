/*
 * Graceful shutdown. When the drain begins, listeners close at once (a new
 * client is refused), draining fires for each open connection, a client in
 * the middle of a 50 MB response still gets every byte before its
 * connection closes, and the server returns as soon as the last connection
 * is gone. Connections still open at the deadline are closed with
 * -ETIMEDOUT. A connection that opens after the drain began is told when it
 * opens. evn_server_stop_on_signals turns SIGTERM into a drain and a second
 * signal into an immediate stop.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifndef _WIN32
#include <signal.h>
#include <sys/wait.h>
#endif

#define BIG (50u << 20)

struct state {
    th_counter opened, closed, draining, started;
    atomic_int timeouts, clean;
    atomic_int streaming; /* fd of the connection that streams */
};

struct stream {
    size_t sent;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

/* Produce the big response in pieces, pacing on evn_conn_full/drained. */
static evn_action produce(evn_conn *c)
{
    struct stream *st = evn_conn_udata(c);
    static char block[64 * 1024];
    while (st->sent < BIG && !evn_conn_full(c)) {
        size_t n = BIG - st->sent < sizeof block ? BIG - st->sent : sizeof block;
        for (size_t i = 0; i < n; i++)
            block[i] = (char)((st->sent + i) * 131 >> 3);
        evn_write(c, block, n);
        st->sent += n;
    }
    return st->sent == BIG ? EVN_CLOSE : EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (len && in[0] == 'B') {
        struct stream *st = calloc(1, sizeof *st);
        evn_conn_set_udata(c, st);
        th_counter_add(&S(c)->started, 1);
        return produce(c);
    }
    evn_write(c, in, len);
    return EVN_NONE;
}

static evn_action on_drained(evn_conn *c)
{
    return evn_conn_udata(c) ? produce(c) : EVN_NONE;
}

static evn_action on_opened(evn_conn *c)
{
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

/* Idle connections go at once; the streaming one finishes. */
static evn_action on_draining(evn_conn *c)
{
    th_counter_add(&S(c)->draining, 1);
    EXPECT_TRUE(evn_server_draining(evn_conn_server(c)));
    return evn_conn_udata(c) ? EVN_NONE : EVN_CLOSE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (err == -ETIMEDOUT)
        atomic_fetch_add(&s->timeouts, 1);
    else if (err == 0)
        atomic_fetch_add(&s->clean, 1);
    free(evn_conn_udata(c));
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static void init(struct state *s, evn_events *ev)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->draining);
    th_counter_init(&s->started);
    memset(ev, 0, sizeof *ev);
    ev->udata = s;
    ev->opened = on_opened;
    ev->data = on_data;
    ev->drained = on_drained;
    ev->draining = on_draining;
    ev->closed = on_closed;
}

static void fini(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->draining);
    th_counter_destroy(&s->started);
}

static long long mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Wait until a connect to port is refused: the drain has closed the
 * listener. Nothing outside the server can wait for that event itself, so
 * this probes, for as long as any one event may take (th_io_timeout_ms): a
 * count of probes would be a time limit that a loaded machine can exceed. */
static void wait_refused(int port)
{
    long long deadline = mono_ms() + th_io_timeout_ms();
    int refused = 0;
    while (!refused && mono_ms() <= deadline) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0 && errno == ECONNREFUSED)
            refused = 1;
        close(fd);
        if (!refused)
            usleep(1000);
    }
    EXPECT_TRUE(refused);
}

static void test_drain_loses_nothing(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev);
    ev.nloops = 2;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    int big = th_connect_srv(&ts, 0);
    int idle = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 2);
    th_write_str(big, "B");
    TH_WAIT_COUNTER(&s.started, 1);
    /* Read a little, so the drain starts with most of it still to come. */
    char *buf = malloc(BIG);
    size_t got = 0;
    while (got < 1024 * 1024) {
        ssize_t r = read(big, buf + got, BIG - got);
        ASSERT_GT_INT((int)r, 0);
        got += (size_t)r;
    }
    EXPECT_EQ_INT(evn_shutdown_graceful(ts.srv, 60000), 0);
    /* The idle connection is told and closed. */
    EXPECT_EQ_INT(th_wait_eof(idle), 0);
    close(idle);
    /* New connections are refused once the listener is closed: wait for it.
     * (The probes made before then were accepted, some by loop 1 after its
     * own connection had gone: it must not have ended before loop 0 closed
     * the listener, or such a probe would hang the drain.) */
    wait_refused(port);
    /* Every byte of the response, then end-of-file. */
    for (;;) {
        ssize_t r = read(big, buf + got, BIG - got > 0 ? BIG - got : 1);
        ASSERT_TRUE(r >= 0);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    EXPECT_EQ_SIZE(got, (size_t)BIG);
    int bad = 0;
    for (size_t i = 0; i < got && !bad; i++)
        bad = buf[i] != (char)(i * 131 >> 3);
    EXPECT_FALSE(bad);
    free(buf);
    close(big);
    th_server_join(&ts);
    /* Probes made before the listener closed were accepted: more than our
     * two connections may have been told, and all closed cleanly. */
    EXPECT_GE_INT(th_counter_get(&s.draining), 2);
    EXPECT_EQ_INT(atomic_load(&s.clean), (int)th_counter_get(&s.closed));
    EXPECT_EQ_INT(atomic_load(&s.timeouts), 0);
    th_server_free(&ts);
    fini(&s);
}

/*
 * A connection that opens after the drain began is told once it opens. Here
 * an outbound connect is still under way when the drain begins: its SYN is
 * dropped because the target's accept queue is full, and it completes only
 * when the test makes room there and the SYN is sent again.
 */
static int late_port;

static evn_action late_serving(evn_server *srv)
{
    struct state *s = evn_server_udata(srv);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", late_port);
    EXPECT_EQ_ERR(evn_connect(srv, url, 0, NULL, NULL), 0);
    th_counter_add(&s->started, 1);
    return EVN_NONE;
}

/* Only the outbound connection counts here: wait_refused's probes may be
 * accepted, opened and told too. */
static evn_action late_opened(evn_conn *c)
{
    if (evn_conn_listener(c) == EVN_OUTBOUND)
        th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action late_draining(evn_conn *c)
{
    if (evn_conn_listener(c) == EVN_OUTBOUND)
        th_counter_add(&S(c)->draining, 1);
    return EVN_CLOSE;
}

static void test_opened_during_drain(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev);
    ev.serving = late_serving;
    ev.opened = late_opened;
    ev.draining = late_draining;
    /* A listener with room for one connection, taken by a blocker. */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    ASSERT_EQ_INT(listen(lfd, 0), 0);
    late_port = th_sock_port(lfd, false);
    sin.sin_port = htons((uint16_t)late_port);
    int blocker = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ_INT(connect(blocker, (struct sockaddr *)&sin, sizeof sin), 0);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    TH_WAIT_COUNTER(&s.started, 1);
    EXPECT_EQ_INT(evn_shutdown_graceful(ts.srv, 60000), 0);
    wait_refused(th_server_port(&ts, 0));
    EXPECT_EQ_INT(th_counter_get(&s.opened), 0);
    EXPECT_EQ_INT(th_counter_get(&s.draining), 0);
    /* Room for it now: it opens, is told, and closes (on_draining), and
     * with it the server ends. */
    int first = accept(lfd, NULL, NULL);
    EXPECT_GE_INT(first, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    TH_WAIT_COUNTER(&s.draining, 1);
    th_server_join(&ts);
    EXPECT_EQ_INT(atomic_load(&s.timeouts), 0);
    int second = accept(lfd, NULL, NULL);
    EXPECT_GE_INT(second, 0);
    close(second);
    close(first);
    close(blocker);
    close(lfd);
    th_server_free(&ts);
    fini(&s);
}

static evn_action keep_draining(evn_conn *c)
{
    th_counter_add(&S(c)->draining, 1);
    return EVN_NONE;
}

static void test_deadline(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev);
    ev.draining = keep_draining;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    EXPECT_EQ_INT(evn_shutdown_graceful(ts.srv, 100), 0);
    th_server_join(&ts);
    EXPECT_EQ_INT(atomic_load(&s.timeouts), 1);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    close(fd);
    th_server_free(&ts);
    fini(&s);
}

/*
 * The drain's deadline is kept however far off the ticker's next run is: a
 * tick that asks for an hour must not keep the loop asleep past a 300 ms
 * drain. If it did, the busy connection would not be closed until the hang
 * guard fails the wait.
 */
static evn_action slow_tick(evn_server *srv, int64_t *delay_ms)
{
    *delay_ms = 3600 * 1000;
    return EVN_NONE;
}

static void test_deadline_beats_tick(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev);
    ev.draining = keep_draining;
    ev.tick = slow_tick;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    EXPECT_EQ_INT(evn_shutdown_graceful(ts.srv, 300), 0);
    TH_WAIT_COUNTER(&s.draining, 1);
    TH_WAIT_COUNTER(&s.closed, 1);
    th_server_join(&ts);
    EXPECT_EQ_INT(atomic_load(&s.timeouts), 1);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    close(fd);
    th_server_free(&ts);
    fini(&s);
}

/* In a child, on its main thread: SIGTERM drains and the child exits 0. */
static void test_signals(void)
{
#ifdef _WIN32
    th_skip("needs fork() and SIGTERM, which Windows does not have");
#else
    int ready[2];
    ASSERT_EQ_INT(pipe(ready), 0);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        evn_events ev = {0};
        evn_server *srv;
        const char *addr = "tcp://127.0.0.1:0";
        if (evn_server_new(&srv, &ev, &addr, 1) < 0 || evn_server_stop_on_signals(srv, 5000) < 0)
            _exit(3);
        if (write(ready[1], "r", 1) != 1)
            _exit(4);
        int rc = evn_server_run(srv);
        evn_server_free(srv);
        _exit(rc == 0 ? 0 : 5);
    }
    close(ready[1]);
    char b;
    ASSERT_EQ_INT((int)read(ready[0], &b, 1), 1);
    close(ready[0]);
    kill(pid, SIGTERM);
    int status = 0;
    ASSERT_EQ_INT(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ_INT(WEXITSTATUS(status), 0);
#endif
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_drain_loses_nothing);
    TH_RUN(test_opened_during_drain);
    TH_RUN(test_deadline);
    TH_RUN(test_deadline_beats_tick);
    TH_RUN(test_signals);
    return th_finish();
}
