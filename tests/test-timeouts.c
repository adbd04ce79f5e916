/*
 * Timers and limits: an idle connection is closed with -ETIMEDOUT (server
 * wide or per connection); a deadline fires the timeout callback once, or
 * closes with -ETIMEDOUT without one; a cancelled deadline never fires;
 * max_conns turns the extra connection away with busy_reply and no event.
 * Only lower bounds on time are checked, which load cannot break.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct state {
    th_counter opened, closed, timeouts;
    pthread_mutex_t mu;
    int close_err[16];
    int64_t closed_at[16];
    int nclose;
    atomic_int rc_neg, rc_udp;
    int64_t idle_ms;     /* per connection, set in opened, when > 0 */
    int64_t deadline_ms; /* set in opened, when > 0 */
    long cancel_first;   /* the first this many set a 30 ms deadline and cancel it */
    atomic_int cancelled_fired;
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    long n = th_counter_get(&s->opened);
    atomic_store(&s->rc_neg, evn_conn_set_idle_timeout(c, -1));
    if (s->idle_ms > 0)
        EXPECT_EQ_ERR(evn_conn_set_idle_timeout(c, s->idle_ms), 0);
    if (n < s->cancel_first) {
        EXPECT_EQ_ERR(evn_conn_set_deadline(c, 30), 0);
        EXPECT_EQ_ERR(evn_conn_set_deadline(c, 0), 0);
        evn_conn_set_udata(c, (void *)(intptr_t)2);
    } else if (s->deadline_ms > 0) {
        EXPECT_EQ_ERR(evn_conn_set_deadline(c, s->deadline_ms), 0);
        evn_conn_set_udata(c, (void *)(intptr_t)1);
    }
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    pthread_mutex_lock(&s->mu);
    if (s->nclose < 16) {
        s->close_err[s->nclose] = err;
        s->closed_at[s->nclose] = now_ms();
        s->nclose++;
    }
    pthread_mutex_unlock(&s->mu);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static evn_action on_timeout(evn_conn *c)
{
    struct state *s = S(c);
    if ((intptr_t)evn_conn_udata(c) == 2)
        atomic_fetch_add(&s->cancelled_fired, 1);
    evn_write(c, "late\n", 5);
    th_counter_add(&s->timeouts, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (in == NULL)
        return EVN_NONE;
    if (evn_conn_is_udp(c)) {
        atomic_store(&S(c)->rc_udp, evn_conn_set_idle_timeout(c, 10) == -EINVAL &&
                                        evn_conn_set_deadline(c, 10) == -EINVAL);
    }
    evn_write(c, in, len);
    return EVN_NONE;
}

static struct state *state_new(void)
{
    struct state *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->timeouts);
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void state_free(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->timeouts);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static evn_events events(struct state *s)
{
    evn_events ev = {0};
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    return ev;
}

static const char *addr1[] = {"tcp://127.0.0.1:0"};

static void test_idle_timeout_server_wide(void)
{
    struct state *s = state_new();
    evn_events ev = events(s);
    ev.idle_timeout_ms = 60;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    /* The server hears this no earlier than now: its idle time starts later. */
    int64_t before = now_ms();
    th_write_str(fd, "hi");
    EXPECT_READ_STR(fd, "hi");
    /* Then silence: the server closes it. */
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s->closed, 1);
    EXPECT_EQ_ERR(s->close_err[0], -ETIMEDOUT);
    EXPECT_GE_INT(s->closed_at[0] - before, 59);
    EXPECT_EQ_ERR(atomic_load(&s->rc_neg), -EINVAL);
    close(fd);
    th_server_stop(&ts);
    state_free(s);
}

static void test_idle_timeout_per_connection(void)
{
    struct state *s = state_new();
    evn_events ev = events(s);
    s->idle_ms = 40;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int64_t t0 = now_ms();
    int fd = th_connect_srv(&ts, 0);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s->closed, 1);
    EXPECT_EQ_ERR(s->close_err[0], -ETIMEDOUT);
    EXPECT_GE_INT(s->closed_at[0] - t0, 39);
    close(fd);
    th_server_stop(&ts);
    state_free(s);
}

/*
 * Deadlines: connections 0-2 set 30 ms and cancel it; connection 3, opened
 * last, keeps 60 ms. When its timeout fires, a live 30 ms deadline of the
 * others would already have fired, since it was set earlier and is shorter.
 */
static void test_deadline_fires_once_and_cancels(void)
{
    struct state *s = state_new();
    evn_events ev = events(s);
    ev.timeout = on_timeout;
    s->cancel_first = 3;
    s->deadline_ms = 60;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = th_connect_srv(&ts, 0);
        TH_WAIT_COUNTER(&s->opened, i + 1);
    }
    EXPECT_READ_STR(fds[3], "late\n");
    TH_WAIT_COUNTER(&s->timeouts, 1);
    /* The connections stay open and still serve. */
    for (int i = 0; i < 4; i++) {
        th_write_str(fds[i], "ping");
        EXPECT_READ_STR(fds[i], "ping");
    }
    EXPECT_EQ_INT(th_counter_get(&s->timeouts), 1);
    EXPECT_EQ_INT(atomic_load(&s->cancelled_fired), 0);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 0);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s->closed, 4);
    th_server_stop(&ts);
    state_free(s);
}

static void test_deadline_without_callback_closes(void)
{
    struct state *s = state_new();
    evn_events ev = events(s);
    s->deadline_ms = 30;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int64_t t0 = now_ms();
    int fd = th_connect_srv(&ts, 0);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s->closed, 1);
    EXPECT_EQ_ERR(s->close_err[0], -ETIMEDOUT);
    EXPECT_GE_INT(s->closed_at[0] - t0, 29);
    close(fd);
    th_server_stop(&ts);
    state_free(s);
}

/* A connection's deadline is kept however far off the ticker's next run is:
 * with the tick asking for an hour, the 30 ms deadline still closes it. */
static evn_action slow_tick(evn_server *srv, int64_t *delay_ms)
{
    *delay_ms = 3600 * 1000;
    return EVN_NONE;
}

static void test_deadline_beats_tick(void)
{
    struct state *s = state_new();
    evn_events ev = events(s);
    ev.tick = slow_tick;
    s->deadline_ms = 30;
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int fd = th_connect_srv(&ts, 0);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s->closed, 1);
    EXPECT_EQ_ERR(s->close_err[0], -ETIMEDOUT);
    close(fd);
    th_server_stop(&ts);
    state_free(s);
}

static void test_udp_refuses_timers(void)
{
    struct state *s = state_new();
    evn_events ev = events(s);
    const char *addr = "udp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    struct sockaddr_storage to;
    socklen_t len;
    ASSERT_EQ_INT(th_make_addr("127.0.0.1", th_server_port(&ts, 0), &to, &len), 0);
    int fd = th_udp_socket(AF_INET);
    ASSERT_EQ_INT(sendto(fd, "u", 1, 0, (struct sockaddr *)&to, len), 1);
    char c;
    ASSERT_EQ_INT(th_wait_readable(fd, th_io_timeout_ms()), 1);
    EXPECT_EQ_INT(recv(fd, &c, 1, 0), 1);
    EXPECT_EQ_INT(atomic_load(&s->rc_udp), 1);
    close(fd);
    th_server_stop(&ts);
    state_free(s);
}

/* Two connections at most: the third is told so and closed unseen; once one
 * leaves, a new one is let in. */
static void test_max_conns(void)
{
    struct state *s = state_new();
    evn_events ev = events(s);
    ev.nloops = 2;
    ev.max_conns = 2;
    ev.busy_reply = "busy\r\n";
    th_server ts;
    th_server_start(&ts, &ev, addr1, 1);
    int a = th_connect_srv(&ts, 0), b = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 2);
    int c = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(c, "busy\r\n");
    EXPECT_EQ_INT(th_wait_eof(c), 0);
    close(c);
    EXPECT_EQ_INT(th_counter_get(&s->opened), 2);
    th_write_str(a, "a");
    EXPECT_READ_STR(a, "a");
    close(a);
    TH_WAIT_COUNTER(&s->closed, 1);
    int d = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s->opened, 3);
    th_write_str(d, "d");
    EXPECT_READ_STR(d, "d");
    close(b);
    close(d);
    TH_WAIT_COUNTER(&s->closed, 3);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s->opened), 3);
    EXPECT_EQ_INT(th_counter_get(&s->closed), 3);
    state_free(s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_idle_timeout_server_wide);
    TH_RUN(test_idle_timeout_per_connection);
    TH_RUN(test_deadline_fires_once_and_cancels);
    TH_RUN(test_deadline_without_callback_closes);
    TH_RUN(test_deadline_beats_tick);
    TH_RUN(test_udp_refuses_timers);
    TH_RUN(test_max_conns);
    return th_finish();
}
