/*
 * evn_conn_read(c, 0) holds a connection's input until evn_conn_read(c, 1),
 * also once its socket is shut down both ways, when the poller reports a
 * hang-up whatever the interest mask.
 *
 * A proxy holds a client this way while the backend's output is full. If the
 * backend had already sent end-of-file (so the proxy shut down its writing
 * side to the client) and the client then sends its last bytes and shuts
 * down too, the client's socket reports POLLHUP / EPOLLHUP with the bytes and
 * the end-of-file still unread. Neither a data nor an eof event may come
 * while the connection is held; both come once it is resumed.
 */
#include "harness.h"

#include <string.h>
#include <unistd.h>

struct state {
    /* progress counts wakes and the close, so a wait ends on either. */
    th_counter opened, progress, datas;
    atomic_int wakes, closed, while_held, hup_seen;
    bool held; /* loop thread only */
    evn_id id;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    s->id = evn_conn_id(c);
    s->held = true;
    EXPECT_EQ_INT(evn_conn_read(c, 0), 0);
    EXPECT_EQ_INT(evn_conn_shutdown_write(c), 0);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

/*
 * Three wakes, each sent once the one before has been handled. The first
 * waits until the hang-up is on the socket (poll with no events asked for
 * returns on an error or a hang-up only), so the poller reports it on the
 * loop's next turn at the latest. The second runs on that turn or a later
 * one, so by the third, which resumes reading, any event delivered despite
 * the hold has been counted.
 */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (!in) {
        int n = atomic_fetch_add(&s->wakes, 1) + 1;
        if (n == 1) {
            struct pollfd pfd = {.fd = evn_conn_fd(c), .events = 0};
            if (poll(&pfd, 1, th_io_timeout_ms()) == 1 && (pfd.revents & POLLHUP))
                atomic_store(&s->hup_seen, 1);
        } else if (n == 3) {
            s->held = false;
            EXPECT_EQ_INT(evn_conn_read(c, 1), 0);
        }
        th_counter_add(&s->progress, 1);
        return EVN_NONE;
    }
    if (s->held)
        atomic_fetch_add(&s->while_held, 1);
    th_counter_add(&s->datas, 1);
    return EVN_NONE;
}

static evn_action on_eof(evn_conn *c)
{
    struct state *s = S(c);
    if (s->held)
        atomic_fetch_add(&s->while_held, 1);
    return EVN_CLOSE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    atomic_store(&s->closed, 1);
    th_counter_add(&s->progress, 100);
    return EVN_NONE;
}

static void test_hold_survives_hup(void)
{
    struct state s = {0};
    th_counter_init(&s.opened);
    th_counter_init(&s.progress);
    th_counter_init(&s.datas);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.eof = on_eof;
    ev.closed = on_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);

    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    /* The server's end-of-file arrives; then ours goes the other way. */
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    th_write_str(fd, "last words");
    shutdown(fd, SHUT_WR);
    for (long n = 1; n <= 3; n++) {
        EXPECT_EQ_INT(evn_wake(ts.srv, s.id), 0);
        TH_WAIT_COUNTER(&s.progress, n);
        /* A close means the hold was broken; the check below says so. */
        if (atomic_load(&s.closed))
            break;
    }
    EXPECT_EQ_INT(atomic_load(&s.hup_seen), 1);
    EXPECT_EQ_INT(atomic_load(&s.while_held), 0);
    /* Resumed: the bytes, then the end-of-file and the close. */
    TH_WAIT_COUNTER(&s.datas, 1);
    TH_WAIT_COUNTER(&s.progress, 100);
    close(fd);
    th_server_stop(&ts);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.progress);
    th_counter_destroy(&s.datas);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_hold_survives_hup);
    return th_finish();
}
