/*
 * evn_conn_close: any connection of the calling loop closes once its queued
 * output is sent, and closed gets the error given. Closing another
 * connection from a callback (the other half of a proxied pair) delivers
 * everything queued for it first, also megabytes waiting for a slow reader;
 * closed never runs inside the call; the connection is not read afterwards;
 * a connection may close itself the same way; misuse is refused.
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#define BIG (8u << 20)

struct state {
    th_counter opened, closed;
    pthread_mutex_t mu;
    evn_conn *conns[2];     /* the first two to open; set NULL under mu */
    bool closing[2];        /* evn_conn_close was called on it; loop thread only */
    int close_err[2];       /* under mu */
    atomic_int inside_call; /* closed ran inside evn_conn_close */
    atomic_int rc_again, rc_positive;
    atomic_int data_after_close;
};

static _Thread_local bool in_call;

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static int index_of(struct state *s, evn_conn *c)
{
    for (int i = 0; i < 2; i++)
        if (s->conns[i] == c)
            return i;
    return -1;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    long n = th_counter_get(&s->opened);
    if (n < 2)
        s->conns[n] = c;
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (in_call)
        atomic_store(&s->inside_call, 1);
    int i = index_of(s, c);
    if (i >= 0) {
        pthread_mutex_lock(&s->mu);
        s->close_err[i] = err;
        s->conns[i] = NULL; /* under mu: test_close_off_loop reads it */
        pthread_mutex_unlock(&s->mu);
    }
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

/* evn_conn_close, noting whether closed ran inside it, then the calls that
 * must be refused now that it is closing. */
static void close_checked(struct state *s, evn_conn *c, int err)
{
    int i = index_of(s, c);
    in_call = true;
    EXPECT_EQ_ERR(evn_conn_close(c, err), 0);
    in_call = false;
    if (i >= 0)
        s->closing[i] = true;
    atomic_store(&s->rc_again, evn_conn_close(c, err));
    atomic_store(&s->rc_positive, evn_conn_close(c, 5));
    EXPECT_EQ_ERR(evn_write(c, "more", 4), -EPIPE);
}

static void write_big(evn_conn *c)
{
    char *big = malloc(BIG);
    ASSERT_NOT_NULL(big);
    for (size_t k = 0; k < BIG; k++)
        big[k] = (char)(k * 7);
    EXPECT_EQ_ERR(evn_write(c, big, BIG), 0);
    free(big);
}

/*
 * One byte a command, from the first connection: 'b' writes "bye" to the
 * second and closes it with -ECONNRESET; 'B' queues BIG bytes for it first;
 * 'c' closes it with nothing queued;
 * 's' writes "x" and closes the sender itself with -EPROTO. Anything else is
 * echoed. A connection must get no input once closing.
 */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    int me = index_of(s, c);
    if (!in)
        return EVN_NONE;
    if (me >= 0 && s->closing[me])
        atomic_fetch_add(&s->data_after_close, 1);
    for (size_t i = 0; i < len; i++) {
        if (in[i] == 'c') {
            ASSERT_NOT_NULL(s->conns[1]);
            close_checked(s, s->conns[1], -ECONNRESET);
        } else if (in[i] == 'b' || in[i] == 'B') {
            evn_conn *other = s->conns[1];
            ASSERT_NOT_NULL(other);
            if (in[i] == 'B')
                write_big(other);
            EXPECT_EQ_ERR(evn_write(other, "bye", 3), 0);
            close_checked(s, other, -ECONNRESET);
        } else if (in[i] == 's') {
            EXPECT_EQ_ERR(evn_write(c, "x", 1), 0);
            close_checked(s, c, -EPROTO);
            return EVN_NONE;
        } else {
            EXPECT_EQ_ERR(evn_write(c, in + i, 1), 0);
        }
    }
    return EVN_NONE;
}

static void init(struct state *s, evn_events *ev)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    pthread_mutex_init(&s->mu, NULL);
    memset(ev, 0, sizeof *ev);
    ev->udata = s;
    ev->opened = on_opened;
    ev->closed = on_closed;
    ev->data = on_data;
}

static void fini(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    pthread_mutex_destroy(&s->mu);
}

static int err_of(struct state *s, int i)
{
    pthread_mutex_lock(&s->mu);
    int e = s->close_err[i];
    pthread_mutex_unlock(&s->mu);
    return e;
}

static void check_refusals(struct state *s)
{
    EXPECT_EQ_INT(atomic_load(&s->inside_call), 0);
    EXPECT_EQ_ERR(atomic_load(&s->rc_again), -EALREADY);
    EXPECT_EQ_ERR(atomic_load(&s->rc_positive), -EINVAL);
    EXPECT_EQ_INT(atomic_load(&s->data_after_close), 0);
}

/* Connect two clients, in order, and wait until both are open. */
static void two_clients(th_server *ts, struct state *s, int fds[2])
{
    fds[0] = th_connect_srv(ts, 0);
    TH_WAIT_COUNTER(&s->opened, 1);
    fds[1] = th_connect_srv(ts, 0);
    TH_WAIT_COUNTER(&s->opened, 2);
}

static void run_other(size_t expect_big)
{
    struct state s;
    evn_events ev;
    init(&s, &ev);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fds[2];
    two_clients(&ts, &s, fds);
    /* Input sent to the second before the close is never delivered... */
    th_write_str(fds[0], expect_big ? "B" : "b");
    /* ...and what was queued for it arrives whole, then end-of-file. */
    if (expect_big) {
        char *buf = malloc(BIG);
        ASSERT_NOT_NULL(buf);
        EXPECT_EQ_INT(th_read_exact(fds[1], buf, BIG), (ssize_t)BIG);
        int bad = 0;
        for (size_t k = 0; k < BIG && !bad; k++)
            bad = buf[k] != (char)(k * 7);
        EXPECT_FALSE(bad);
        free(buf);
    }
    EXPECT_READ_STR(fds[1], "bye");
    EXPECT_EQ_INT(th_wait_eof(fds[1]), 0);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(err_of(&s, 1), -ECONNRESET);
    /* The first is untouched. */
    th_write_str(fds[0], "ok");
    EXPECT_READ_STR(fds[0], "ok");
    check_refusals(&s);
    close(fds[0]);
    close(fds[1]);
    TH_WAIT_COUNTER(&s.closed, 2);
    EXPECT_EQ_ERR(err_of(&s, 0), 0);
    th_server_stop(&ts);
    fini(&s);
}

static void test_close_other(void)
{
    run_other(0);
}

/* 8 MB queued for a reader that has not read yet: all of it goes first. */
static void test_close_other_with_output_queued(void)
{
    run_other(BIG);
}

/* Nothing queued: the close happens before the loop next waits. */
static void test_close_other_idle(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fds[2];
    two_clients(&ts, &s, fds);
    th_write_str(fds[0], "c");
    EXPECT_EQ_INT(th_wait_eof(fds[1]), 0);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(err_of(&s, 1), -ECONNRESET);
    check_refusals(&s);
    close(fds[0]);
    close(fds[1]);
    TH_WAIT_COUNTER(&s.closed, 2);
    th_server_stop(&ts);
    fini(&s);
}

static void test_close_self(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    th_write_str(fd, "as");
    EXPECT_READ_STR(fd, "ax");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(err_of(&s, 0), -EPROTO);
    check_refusals(&s);
    close(fd);
    th_server_stop(&ts);
    fini(&s);
}

/* Called from a thread that runs no loop of the server: refused, and the
 * connection goes on. (The pointer stays valid: only the client's close
 * closes it.) */
static void test_close_off_loop(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    pthread_mutex_lock(&s.mu);
    evn_conn *c = s.conns[0];
    pthread_mutex_unlock(&s.mu);
    EXPECT_EQ_ERR(evn_conn_close(c, 0), -EPERM);
    th_write_str(fd, "hello");
    EXPECT_READ_STR(fd, "hello");
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    th_server_stop(&ts);
    fini(&s);
}

/* A UDP pseudo-connection has nothing to close. */
static atomic_int udp_rc;

static evn_action udp_data(evn_conn *c, const char *in, size_t len)
{
    atomic_store(&udp_rc, evn_conn_close(c, 0));
    evn_write(c, in, len);
    return EVN_NONE;
}

static void test_close_udp_refused(void)
{
    evn_events ev = {.data = udp_data};
    const char *addr = "udp://127.0.0.1:0";
    th_server ts;
    atomic_store(&udp_rc, 1);
    th_server_start(&ts, &ev, &addr, 1);
    struct sockaddr_storage to;
    socklen_t len;
    ASSERT_EQ_INT(th_make_addr("127.0.0.1", th_server_port(&ts, 0), &to, &len), 0);
    int fd = th_udp_socket(AF_INET);
    ASSERT_EQ_INT(sendto(fd, "u", 1, 0, (struct sockaddr *)&to, len), 1);
    char c;
    ASSERT_EQ_INT(th_wait_readable(fd, th_io_timeout_ms()), 1);
    EXPECT_EQ_INT(recv(fd, &c, 1, 0), 1);
    EXPECT_EQ_ERR(atomic_load(&udp_rc), -EINVAL);
    close(fd);
    th_server_stop(&ts);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_close_other);
    TH_RUN(test_close_other_with_output_queued);
    TH_RUN(test_close_other_idle);
    TH_RUN(test_close_self);
    TH_RUN(test_close_off_loop);
    TH_RUN(test_close_udp_refused);
    return th_finish();
}
