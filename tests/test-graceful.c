/*
 * Graceful shutdown. When the drain begins, listeners close at once (a new
 * client is refused), draining fires for each open connection, a client in
 * the middle of a 50 MB response still gets every byte before its
 * connection closes, and the server returns as soon as the last connection
 * is gone. Connections still open at the deadline are closed with
 * -ETIMEDOUT. evn_server_stop_on_signals turns SIGTERM into a drain and a
 * second signal into an immediate stop.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

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
    /* New connections are refused once the listener is closed: wait for it. */
    int refused = 0;
    for (int i = 0; i < 2000 && !refused; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0 && errno == ECONNREFUSED)
            refused = 1;
        close(fd);
        if (!refused)
            usleep(1000); /* polling a condition with a bounded loop */
    }
    EXPECT_TRUE(refused);
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

/* In a child, on its main thread: SIGTERM drains and the child exits 0. */
static void test_signals(void)
{
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
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_drain_loses_nothing);
    TH_RUN(test_deadline);
    TH_RUN(test_signals);
    return th_finish();
}
