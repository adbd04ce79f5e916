/*
 * EVN_DETACH: the detached callback gets the fd in blocking mode; a thread of
 * the application then owns it (blocking reads and writes, and the close),
 * even after the server is gone; output queued before the detach arrives
 * first; closed never fires for it; kept input is dropped; a wake for its id
 * is ignored.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PENDING (512u << 10)

struct state {
    th_counter opened, closed, detached, data, go, wakes;
    atomic_int fd;
    atomic_int flags;
    atomic_int fd_matches;
    atomic_llong id;
    bool detach_from_opened;
    bool keep_before_detach;
    pthread_t owner;
    bool owner_started;
    atomic_int owner_err;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static char pattern(size_t i)
{
    return (char)('A' + i % 23);
}

static void write_pending(evn_conn *c)
{
    char *buf = malloc(PENDING);
    ASSERT_NOT_NULL(buf);
    for (size_t i = 0; i < PENDING; i++)
        buf[i] = pattern(i);
    EXPECT_EQ_ERR(evn_write(c, buf, PENDING), 0);
    free(buf);
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    atomic_store(&s->id, (long long)evn_conn_id(c));
    th_counter_add(&s->opened, 1);
    if (s->detach_from_opened) {
        EXPECT_EQ_ERR(evn_write(c, "hi+", 3), 0);
        return EVN_DETACH;
    }
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (in == NULL) {
        th_counter_add(&s->wakes, 1);
        return EVN_NONE;
    }
    th_counter_add(&s->data, 1);
    if (len >= 6 && memcmp(in, "detach", 6) == 0) {
        write_pending(c);
        /* Input after the command stays unread: evn_keep'd bytes are dropped. */
        if (s->keep_before_detach && len > 6)
            EXPECT_EQ_ERR(evn_keep(c, len - 6), 0);
        return EVN_DETACH;
    }
    evn_write(c, in, len);
    return EVN_NONE;
}

/* The application's side: blocking I/O on the detached fd, then close. */
static void *owner_main(void *arg)
{
    struct state *s = arg;
    int fd = atomic_load(&s->fd);
    TH_WAIT_COUNTER(&s->go, 1);
    th_write_str(fd, "from the thread\n");
    char buf[5];
    /* A plain blocking read: nothing would wake us if fd were non-blocking. */
    ssize_t n = read(fd, buf, 4);
    if (n != 4 || memcmp(buf, "ping", 4) != 0)
        atomic_store(&s->owner_err, n < 0 ? errno : 1000 + (int)n);
    else
        th_write_str(fd, "pong");
    close(fd);
    return NULL;
}

static evn_action on_detached(evn_conn *c, evn_socket_t fd)
{
    struct state *s = S(c);
    atomic_store(&s->fd, fd);
    atomic_store(&s->flags, fcntl(fd, F_GETFL));
    atomic_store(&s->fd_matches, evn_conn_fd(c) == fd);
    if (pthread_create(&s->owner, NULL, owner_main, s) == 0)
        s->owner_started = true;
    th_counter_add(&s->detached, 1);
    return EVN_NONE;
}

static struct state *state_new(void)
{
    struct state *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->detached);
    th_counter_init(&s->data);
    th_counter_init(&s->go);
    th_counter_init(&s->wakes);
    atomic_store(&s->fd, -1);
    return s;
}

static void state_free(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->detached);
    th_counter_destroy(&s->data);
    th_counter_destroy(&s->go);
    th_counter_destroy(&s->wakes);
    free(s);
}

static void start(th_server *ts, struct state *s, int nloops)
{
    evn_events ev = {0};
    ev.nloops = nloops;
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    ev.detached = on_detached;
    static const char *addr[] = {"tcp://127.0.0.1:0"};
    th_server_start(ts, &ev, addr, 1);
}

static void check_detached_fd(struct state *s)
{
    EXPECT_GE_INT(atomic_load(&s->fd), 0);
    EXPECT_GE_INT(atomic_load(&s->flags), 0);
#ifndef _WIN32
    /* Windows cannot read a socket's mode back: there owner_main's plain
     * blocking read is the check. */
    EXPECT_EQ_INT(atomic_load(&s->flags) & O_NONBLOCK, 0);
#endif
    EXPECT_EQ_INT(atomic_load(&s->fd_matches), 1);
    ASSERT_TRUE(s->owner_started);
}

static void read_pending(int fd)
{
    char *buf = malloc(PENDING);
    ASSERT_NOT_NULL(buf);
    EXPECT_EQ_INT(th_read_exact(fd, buf, PENDING), (ssize_t)PENDING);
    size_t bad = 0;
    for (size_t i = 0; i < PENDING; i++)
        bad += buf[i] != pattern(i);
    EXPECT_EQ_SIZE(bad, 0);
    free(buf);
}

static void finish_owner(struct state *s, int fd)
{
    th_counter_add(&s->go, 1);
    EXPECT_READ_STR(fd, "from the thread\n");
    th_write_str(fd, "ping");
    EXPECT_READ_STR(fd, "pong");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    pthread_join(s->owner, NULL);
    EXPECT_EQ_INT(atomic_load(&s->owner_err), 0);
}

static void test_detach_from_data(void)
{
    struct state *s = state_new();
    s->keep_before_detach = true;
    th_server ts;
    start(&ts, s, 2);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "echo");
    EXPECT_READ_STR(fd, "echo");
    th_write_str(fd, "detach+kept");
    /* Everything queued before the detach comes first (read it before
     * waiting: the detach waits for it to drain). */
    read_pending(fd);
    TH_WAIT_COUNTER(&s->detached, 1);
    check_detached_fd(s);
    finish_owner(s, fd);
    close(fd);
    /* A wake for the detached connection's id goes nowhere. */
    int rc = evn_wake(ts.srv, (evn_id)atomic_load(&s->id));
    EXPECT_TRUE(rc == 0 || rc == -EINVAL);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 0);
    EXPECT_EQ_INT(th_counter_get(&s->detached), 1);
    EXPECT_EQ_INT(th_counter_get(&s->wakes), 0);
    state_free(s);
}

static void test_detach_from_opened(void)
{
    struct state *s = state_new();
    s->detach_from_opened = true;
    th_server ts;
    start(&ts, s, 1);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->detached, 1);
    check_detached_fd(s);
    EXPECT_READ_STR(fd, "hi+");
    finish_owner(s, fd);
    close(fd);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 0);
    EXPECT_EQ_INT(th_counter_get(&s->data), 0);
    state_free(s);
}

/* The detached fd outlives the server: shutdown neither closes it nor fires
 * closed for it. */
static void test_detached_fd_outlives_server(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1);
    int fd = th_connect_srv(&ts, 0);
    int other = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 2);
    th_write_str(fd, "detach");
    read_pending(fd);
    TH_WAIT_COUNTER(&s->detached, 1);
    check_detached_fd(s);
    th_server_stop(&ts);
    /* Only the other connection was closed by the shutdown. */
    EXPECT_EQ_INT(th_counter_get(&s->closed), 1);
    EXPECT_EQ_INT(th_wait_eof(other), 0);
    close(other);
    finish_owner(s, fd);
    close(fd);
    state_free(s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_detach_from_data);
    TH_RUN(test_detach_from_opened);
    TH_RUN(test_detached_fd_outlives_server);
    return th_finish();
}
