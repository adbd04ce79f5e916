/*
 * evn_conn_splice: the server pairs the first and second connection a test
 * makes and splices each into the other, so whatever the client writes on
 * one comes out of the other. Checked: a big transfer arrives byte-exact in
 * both directions; a reader that does not read stops the writer with no
 * buffer growing in evn; half-closes pass through; a reset on one side closes
 * the other; output queued before the splice and input kept with evn_keep go
 * first; the data callback stays silent; the argument checks.
 */
#include "harness.h"
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MODE_PLAIN, MODE_GREET, MODE_KEEP };

struct state {
    int mode;
    evn_conn *first;
    evn_id ids[2];
    th_counter opened, closed, data, woken;
    atomic_int splice_rc, same_rc, busy_rc;
    /* Seen on a wake of the first connection while the reader is stalled. */
    atomic_long inpipe, to_pending;
    atomic_int waiting;
};

static struct state *st(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = st(c);
    long n = th_counter_get(&s->opened);
    s->ids[n < 2 ? n : 1] = evn_conn_id(c);
    if (!s->first) {
        s->first = c;
        th_counter_add(&s->opened, 1);
        return EVN_NONE;
    }
    evn_conn *a = s->first;
    if (s->mode == MODE_GREET)
        evn_write(a, "greeting:", 9);
    atomic_store(&s->same_rc, evn_conn_splice(c, c));
    int rc = evn_conn_splice(c, a);
    if (rc == 0 && s->mode != MODE_KEEP)
        rc = evn_conn_splice(a, c);
    atomic_store(&s->splice_rc, rc);
    atomic_store(&s->busy_rc, evn_conn_splice(c, a));
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = st(c);
    if (!in) {
        /* A wake: report the spliced direction's state, or close because
         * the partner is gone. */
        th_counter_add(&s->woken, 1);
        if (!c->splice || (!c->splice->to && !c->splice->from))
            return EVN_CLOSE;
        if (c->splice->to) {
            struct evn_conn *to = evn__conn_lookup(c->loop, c->splice->to);
            atomic_store(&s->inpipe, (long)c->splice->inpipe);
            atomic_store(&s->to_pending, to ? (long)evn_conn_pending(to) : -1);
            atomic_store(&s->waiting, (c->flags & EVN__C_SPLWAIT) != 0);
        }
        return EVN_NONE;
    }
    if (s->mode == MODE_KEEP && c == s->first && !(c->flags & EVN__C_SPLICE)) {
        /* Keep all of it, then splice: the kept bytes must go first. */
        evn_keep(c, len);
        struct evn_conn *b = evn__conn_lookup(c->loop, s->ids[1]);
        atomic_store(&s->splice_rc, b ? evn_conn_splice(c, b) : -ENOENT);
        return EVN_NONE;
    }
    th_counter_add(&s->data, 1);
    return EVN_NONE;
}

static evn_action on_eof(evn_conn *c)
{
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = st(c);
    if (c == s->first)
        s->first = NULL;
    /* Close the partner too, as a proxy would. */
    for (int i = 0; i < 2; i++)
        if (s->ids[i] != evn_conn_id(c))
            evn_wake(evn_conn_server(c), s->ids[i]);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static void start(th_server *ts, struct state *s, int mode, int *a, int *b)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->data);
    th_counter_init(&s->woken);
    evn_events ev = {0};
    ev.udata = s;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.eof = on_eof;
    ev.closed = on_closed;
    const char *url = "tcp://127.0.0.1:0";
    th_server_start(ts, &ev, &url, 1);
    *a = th_connect_srv(ts, 0);
    TH_WAIT_COUNTER(&s->opened, 1);
    *b = th_connect_srv(ts, 0);
    TH_WAIT_COUNTER(&s->opened, 2);
    ASSERT_EQ_ERR(atomic_load(&s->splice_rc), 0);
}

static void finish(th_server *ts, struct state *s)
{
    th_server_stop(ts);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->data);
    th_counter_destroy(&s->woken);
}

static void fill(char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)((i * 131 + seed) ^ (i >> 9));
}

struct writer {
    int fd;
    const char *buf;
    size_t len;
};

static void *write_all(void *arg)
{
    struct writer *w = arg;
    th_write_all_(w->fd, w->buf, w->len, __FILE__, __LINE__);
    return NULL;
}

/* Send len bytes into `in` on a thread and check they come out of `out`. */
static void transfer(int in, int out, size_t len, unsigned seed)
{
    char *buf = malloc(len), *got = malloc(len);
    ASSERT_NOT_NULL(buf);
    ASSERT_NOT_NULL(got);
    fill(buf, len, seed);
    struct writer w = {in, buf, len};
    pthread_t t;
    ASSERT_EQ_INT(pthread_create(&t, NULL, write_all, &w), 0);
    EXPECT_EQ_INT(th_read_exact(out, got, len), (long long)len);
    pthread_join(t, NULL);
    EXPECT_TRUE(memcmp(buf, got, len) == 0);
    free(buf);
    free(got);
}

static void test_big_both_ways(void)
{
    th_server ts;
    struct state s;
    int a, b;
    start(&ts, &s, MODE_PLAIN, &a, &b);
    EXPECT_EQ_ERR(atomic_load(&s.same_rc), -EINVAL);
    EXPECT_EQ_ERR(atomic_load(&s.busy_rc), -EBUSY);
    size_t len = th_quick() ? (4u << 20) : (20u << 20);
    transfer(a, b, len, 1);
    transfer(b, a, len, 2);
    /* And a small exchange, like a request and its reply. */
    th_write_str(a, "ping");
    EXPECT_READ_STR(b, "ping");
    th_write_str(b, "pong");
    EXPECT_READ_STR(a, "pong");
    EXPECT_EQ_INT(th_counter_get(&s.data), 0);
    close(a);
    close(b);
    TH_WAIT_COUNTER(&s.closed, 2);
    finish(&ts, &s);
}

/*
 * Nobody reads b: writes into a stop once the socket buffers and one pipe
 * are full, and evn holds nothing of its own (the pipe holds at most 64 KiB,
 * b has no queued output, a is not being read). Then b reads it all.
 */
static void test_slow_reader(void)
{
    th_server ts;
    struct state s;
    int a, b;
    start(&ts, &s, MODE_PLAIN, &a, &b);
    size_t cap = 256u << 20, sent = 0;
    char *buf = malloc(1u << 20);
    ASSERT_NOT_NULL(buf);
    fill(buf, 1u << 20, 3);
    int fl = fcntl(a, F_GETFL);
    fcntl(a, F_SETFL, fl | O_NONBLOCK);
    while (sent < cap) {
        ssize_t n = write(a, buf + (sent & ((1u << 20) - 1)),
                          (1u << 20) - (sent & ((1u << 20) - 1)));
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        /* No progress for half a second: the proxy stopped taking it. */
        struct pollfd p = {.fd = a, .events = POLLOUT};
        if (poll(&p, 1, 500) == 0)
            break;
    }
    fcntl(a, F_SETFL, fl);
    EXPECT_LT_INT(sent, 64u << 20);
    /* A wake shows the state; it may land in the moment between b's
     * writable event and the retry that stops reading a again, so ask a
     * few times. */
    for (int i = 0; i < 20; i++) {
        long woken = th_counter_get(&s.woken);
        evn_wake(ts.srv, s.ids[0]);
        TH_WAIT_COUNTER(&s.woken, woken + 1);
        if (atomic_load(&s.waiting))
            break;
    }
    EXPECT_LE_INT(atomic_load(&s.inpipe), 65536);
    EXPECT_EQ_INT(atomic_load(&s.to_pending), 0);
    EXPECT_EQ_INT(atomic_load(&s.waiting), 1);
    /* Drain b and check every byte. */
    char *got = malloc(1u << 20);
    ASSERT_NOT_NULL(got);
    for (size_t done = 0; done < sent;) {
        size_t want = sent - done < (1u << 20) ? sent - done : (1u << 20);
        size_t off = done & ((1u << 20) - 1);
        if (want > (1u << 20) - off)
            want = (1u << 20) - off;
        ssize_t n = th_read_exact(b, got, want);
        ASSERT_EQ_INT(n, (long long)want);
        ASSERT_TRUE(memcmp(got, buf + off, want) == 0);
        done += want;
    }
    free(got);
    free(buf);
    close(a);
    close(b);
    TH_WAIT_COUNTER(&s.closed, 2);
    finish(&ts, &s);
}

/* a shuts down its side: b reads the bytes then end-of-file, and b can
 * still answer a; then b shuts down and both connections close. */
static void test_halfclose(void)
{
    th_server ts;
    struct state s;
    int a, b;
    start(&ts, &s, MODE_PLAIN, &a, &b);
    th_write_str(a, "last words");
    shutdown(a, SHUT_WR);
    EXPECT_READ_STR(b, "last words");
    EXPECT_EQ_INT(th_wait_eof(b), 0);
    th_write_str(b, "reply");
    EXPECT_READ_STR(a, "reply");
    shutdown(b, SHUT_WR);
    EXPECT_EQ_INT(th_wait_eof(a), 0);
    TH_WAIT_COUNTER(&s.closed, 2);
    close(a);
    close(b);
    finish(&ts, &s);
}

/* A reset on a closes it (closed fires); the server then closes b, whose
 * client sees end-of-file. */
static void test_reset_one_side(void)
{
    th_server ts;
    struct state s;
    int a, b;
    start(&ts, &s, MODE_PLAIN, &a, &b);
    th_write_str(a, "x");
    EXPECT_READ_STR(b, "x");
    th_close_rst(a);
    TH_WAIT_COUNTER(&s.closed, 2);
    EXPECT_EQ_INT(th_wait_eof(b), 0);
    close(b);
    finish(&ts, &s);
}

/*
 * b's client closes while bytes keep coming into a: splicing into b soon
 * meets EPIPE, for which the kernel raises SIGPIPE (splice has no
 * MSG_NOSIGNAL). SIGPIPE keeps its default action here, so if evn let it
 * through this test would die. b closes with the error, and a after it.
 */
static void test_target_gone_no_sigpipe(void)
{
    th_server ts;
    struct state s;
    int a, b;
    start(&ts, &s, MODE_PLAIN, &a, &b);
    th_write_str(a, "x");
    EXPECT_READ_STR(b, "x");
    close(b);
    char buf[64 * 1024];
    memset(buf, 'y', sizeof buf);
    size_t sent = 0;
    while (th_counter_get(&s.closed) < 2 && sent < (256u << 20)) {
        ssize_t n = send(a, buf, sizeof buf, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break;
        struct pollfd p = {.fd = a, .events = POLLOUT};
        poll(&p, 1, 100);
    }
    TH_WAIT_COUNTER(&s.closed, 2);
    close(a);
    finish(&ts, &s);
}

/* Output queued on the target before the splice goes out first. */
static void test_queued_first(void)
{
    th_server ts;
    struct state s;
    int a, b;
    start(&ts, &s, MODE_GREET, &a, &b);
    th_write_str(b, "after");
    EXPECT_READ_STR(a, "greeting:after");
    close(a);
    close(b);
    TH_WAIT_COUNTER(&s.closed, 2);
    finish(&ts, &s);
}

/* Input kept with evn_keep in the data event that starts the splice goes
 * ahead of the spliced bytes. */
static void test_kept_first(void)
{
    th_server ts;
    struct state s;
    int a, b;
    start(&ts, &s, MODE_KEEP, &a, &b);
    th_write_str(a, "kept;");
    EXPECT_READ_STR(b, "kept;");
    th_write_str(a, "spliced");
    EXPECT_READ_STR(b, "spliced");
    EXPECT_EQ_ERR(atomic_load(&s.splice_rc), 0);
    EXPECT_EQ_INT(th_counter_get(&s.data), 0);
    close(a);
    close(b);
    TH_WAIT_COUNTER(&s.closed, 2);
    finish(&ts, &s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    /* A SIGPIPE must kill this test, not be ignored. */
    signal(SIGPIPE, SIG_DFL);
#ifndef __linux__
    th_skip("splice(2) is Linux only");
    return th_finish();
#endif
    TH_RUN(test_big_both_ways);
    TH_RUN(test_queued_first);
    TH_RUN(test_kept_first);
    TH_RUN(test_halfclose);
    TH_RUN(test_reset_one_side);
    TH_RUN(test_target_gone_no_sigpipe);
    TH_RUN(test_slow_reader);
    return th_finish();
}
