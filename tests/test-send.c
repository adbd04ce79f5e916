/*
 * Writes from other threads: several threads evn_send numbered messages to
 * connections spread over two loops; every client sees each writer's
 * messages complete and in order. Sends racing with closes neither crash nor
 * leak; evn_send_owned reports 0 for bytes sent and -ENOTCONN for a
 * connection that was gone, and refuses bad ids and a stopped server.
 */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NCONN 16
#define NWRITERS 4
#define MSG_LEN 10 /* "w1:000042\n" */

struct state {
    pthread_mutex_t lock;
    evn_id ids[NCONN];
    int ports[NCONN]; /* the client's port, to match ids to client sockets */
    int nids;
    th_counter opened, closed;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    pthread_mutex_lock(&s->lock);
    struct sockaddr_storage ss;
    socklen_t len;
    if (s->nids < NCONN && evn_conn_remote_addr(c, &ss, &len) == 0) {
        s->ports[s->nids] = th_sockaddr_port((struct sockaddr *)&ss);
        s->ids[s->nids++] = evn_conn_id(c);
    }
    pthread_mutex_unlock(&s->lock);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

struct writer {
    pthread_t th;
    int index, nmsgs;
    evn_server *srv;
    struct state *s;
    atomic_int failures;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    char msg[32];
    for (int m = 0; m < w->nmsgs; m++) {
        snprintf(msg, sizeof msg, "w%d:%06d\n", w->index, m);
        for (int i = 0; i < NCONN; i++) {
            int rc = evn_send(w->srv, w->s->ids[i], msg, MSG_LEN);
            if (rc != 0 && rc != -ESHUTDOWN)
                atomic_fetch_add(&w->failures, 1);
        }
    }
    return NULL;
}

static void start_server(th_server *ts, struct state *s, int *fds)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    evn_events ev = {0};
    ev.udata = s;
    ev.nloops = 2;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.opened = on_opened;
    ev.closed = on_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server_start(ts, &ev, &addr, 1);
    for (int i = 0; i < NCONN; i++)
        fds[i] = th_connect_srv(ts, 0);
    TH_WAIT_COUNTER(&s->opened, NCONN);
}

static void stop_server(th_server *ts, struct state *s)
{
    th_server_stop(ts);
    pthread_mutex_destroy(&s->lock);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
}

/* Read every client until each has all messages; check each writer's order. */
static void check_streams(const int *fds, int nmsgs)
{
    size_t want = (size_t)NWRITERS * (size_t)nmsgs * MSG_LEN;
    char *buf[NCONN];
    size_t got[NCONN] = {0};
    for (int i = 0; i < NCONN; i++)
        buf[i] = malloc(want);
    int done = 0;
    while (done < NCONN) {
        struct pollfd p[NCONN];
        for (int i = 0; i < NCONN; i++)
            p[i] = (struct pollfd){.fd = got[i] < want ? fds[i] : -1, .events = POLLIN};
        int n = poll(p, NCONN, th_io_timeout_ms());
        ASSERT_GT_INT(n, 0);
        for (int i = 0; i < NCONN; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t r = read(fds[i], buf[i] + got[i], want - got[i]);
            ASSERT_GT_INT((int)r, 0);
            got[i] += (size_t)r;
            if (got[i] == want)
                done++;
        }
    }
    for (int i = 0; i < NCONN; i++) {
        int next[NWRITERS] = {0}, bad = 0;
        for (size_t off = 0; off < want && !bad; off += MSG_LEN) {
            int w = -1, m = -1;
            if (sscanf(buf[i] + off, "w%d:%6d", &w, &m) != 2 || w < 0 || w >= NWRITERS ||
                m != next[w] || buf[i][off + MSG_LEN - 1] != '\n')
                bad = 1;
            else
                next[w]++;
        }
        EXPECT_FALSE(bad);
        for (int w = 0; w < NWRITERS; w++)
            EXPECT_EQ_INT(next[w], nmsgs);
        free(buf[i]);
    }
}

static void test_order_per_writer(void)
{
    struct state s;
    int fds[NCONN];
    th_server ts;
    start_server(&ts, &s, fds);
    int nmsgs = th_quick() ? 300 : 2000;
    struct writer w[NWRITERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NWRITERS; i++) {
        w[i].index = i;
        w[i].nmsgs = nmsgs;
        w[i].srv = ts.srv;
        w[i].s = &s;
        pthread_create(&w[i].th, NULL, writer_main, &w[i]);
    }
    check_streams(fds, nmsgs);
    for (int i = 0; i < NWRITERS; i++) {
        pthread_join(w[i].th, NULL);
        EXPECT_EQ_INT(atomic_load(&w[i].failures), 0);
    }
    for (int i = 0; i < NCONN; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s.closed, NCONN);
    stop_server(&ts, &s);
}

/* Writers keep sending while the clients close: nothing may break. */
static void test_sends_race_closes(void)
{
    struct state s;
    int fds[NCONN];
    th_server ts;
    start_server(&ts, &s, fds);
    struct writer w[NWRITERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NWRITERS; i++) {
        w[i].index = i;
        w[i].nmsgs = th_quick() ? 200 : 1000;
        w[i].srv = ts.srv;
        w[i].s = &s;
        pthread_create(&w[i].th, NULL, writer_main, &w[i]);
    }
    for (int i = 0; i < NCONN; i++) {
        if (i % 2)
            th_close_rst(fds[i]);
        else
            close(fds[i]);
    }
    TH_WAIT_COUNTER(&s.closed, NCONN);
    for (int i = 0; i < NWRITERS; i++) {
        pthread_join(w[i].th, NULL);
        EXPECT_EQ_INT(atomic_load(&w[i].failures), 0);
    }
    stop_server(&ts, &s);
}

struct done_log {
    th_counter calls;
    atomic_int status[3];
};

static void on_done(void *buf, int status, void *arg)
{
    struct done_log *d = arg;
    int i = (int)(((char *)buf)[0] - 'a');
    if (i >= 0 && i < 3)
        atomic_store(&d->status[i], status);
    th_counter_add(&d->calls, 1);
}

/* The id of the server's end of client socket fd. */
static evn_id id_of(struct state *s, int fd)
{
    int port = th_sock_port(fd, false);
    for (int i = 0; i < s->nids; i++)
        if (s->ports[i] == port)
            return s->ids[i];
    return 0;
}

static void test_send_owned(void)
{
    struct state s;
    int fds[NCONN];
    th_server ts;
    start_server(&ts, &s, fds);
    struct done_log d;
    memset(&d, 0, sizeof d);
    th_counter_init(&d.calls);
    static char a[] = "a-owned", b[] = "b-owned", c[] = "c-owned";

    /* Sent: done with 0 once the bytes are out. */
    EXPECT_EQ_INT(evn_send_owned(ts.srv, id_of(&s, fds[0]), a, 7, on_done, &d), 0);
    TH_WAIT_COUNTER(&d.calls, 1);
    EXPECT_EQ_ERR(atomic_load(&d.status[0]), 0);
    EXPECT_READ_STR(fds[0], "a-owned");

    /* The connection is gone: done with -ENOTCONN. */
    evn_id gone = id_of(&s, fds[1]);
    ASSERT_TRUE(gone != 0);
    close(fds[1]);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(evn_send_owned(ts.srv, gone, b, 7, on_done, &d), 0);
    TH_WAIT_COUNTER(&d.calls, 2);
    EXPECT_EQ_ERR(atomic_load(&d.status[1]), -ENOTCONN);

    /* Bad ids are refused at once, and done still runs. */
    EXPECT_EQ_ERR(evn_send(ts.srv, 0, "x", 1), -EINVAL);
    EXPECT_EQ_ERR(evn_send(ts.srv, (evn_id)77 << 56 | 1, "x", 1), -EINVAL);
    EXPECT_EQ_ERR(evn_send_owned(ts.srv, 0, c, 7, on_done, &d), -EINVAL);
    TH_WAIT_COUNTER(&d.calls, 3);
    EXPECT_EQ_ERR(atomic_load(&d.status[2]), -EINVAL);
    EXPECT_EQ_INT(evn_send(ts.srv, s.ids[2], "", 0), 0);

    for (int i = 0; i < NCONN; i++)
        if (i != 1)
            close(fds[i]);
    TH_WAIT_COUNTER(&s.closed, NCONN);
    evn_server *srv = ts.srv;
    evn_shutdown(srv);
    th_server_join(&ts);
    /* Stopped: refused. */
    EXPECT_EQ_ERR(evn_send(srv, s.ids[0], "x", 1), -ESHUTDOWN);
    th_server_free(&ts);
    pthread_mutex_destroy(&s.lock);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
    th_counter_destroy(&d.calls);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_order_per_writer);
    TH_RUN(test_sends_race_closes);
    TH_RUN(test_send_owned);
    return th_finish();
}
