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
        evn_id to_id = 0, from_id = 0;
        size_t inpipe = 0;
        if (!evn__splice_info(c, &to_id, &from_id, &inpipe) || (!to_id && !from_id))
            return EVN_CLOSE;
        if (to_id) {
            struct evn_conn *to = evn__conn_lookup(c->loop, to_id);
            atomic_store(&s->inpipe, (long)inpipe);
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

static void counters(struct state *s, bool init)
{
    th_counter *all[] = {&s->opened, &s->closed, &s->data, &s->woken};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (init)
            th_counter_init(all[i]);
        else
            th_counter_destroy(all[i]);
    }
}

/* A server running with the two client sockets whose connections it has
 * spliced together. */
struct pair {
    th_server ts;
    struct state s;
    int a, b;
};

static void start(struct pair *p, int mode)
{
    memset(p, 0, sizeof *p);
    p->s.mode = mode;
    counters(&p->s, true);
    evn_events ev = {
        .udata = &p->s, .opened = on_opened, .data = on_data, .eof = on_eof, .closed = on_closed};
    const char *url = "tcp://127.0.0.1:0";
    th_server_start(&p->ts, &ev, &url, 1);
    p->a = th_connect_srv(&p->ts, 0);
    TH_WAIT_COUNTER(&p->s.opened, 1);
    p->b = th_connect_srv(&p->ts, 0);
    TH_WAIT_COUNTER(&p->s.opened, 2);
    ASSERT_EQ_ERR(atomic_load(&p->s.splice_rc), 0);
}

/* Close the client sockets a test has not closed itself (it sets those to
 * -1), wait for both connections to close, stop the server. */
static void finish(struct pair *p)
{
    if (p->a >= 0)
        close(p->a);
    if (p->b >= 0)
        close(p->b);
    TH_WAIT_COUNTER(&p->s.closed, 2);
    th_server_stop(&p->ts);
    counters(&p->s, false);
}

/* Write str into one client and expect it to come out of the other. */
static void pass_(int from, int to, const char *str, const char *file, int line)
{
    th_write_all_(from, str, strlen(str), file, line);
    th_expect_read_(to, str, file, line);
}
#define PASS(from, to, str) pass_((from), (to), (str), __FILE__, __LINE__)

/* Start a plain pair and see a byte through it from a to b. */
static void start_flowing(struct pair *p)
{
    start(p, MODE_PLAIN);
    PASS(p->a, p->b, "x");
}

enum { CHUNK = 1 << 20 };

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
    struct pair p;
    start(&p, MODE_PLAIN);
    EXPECT_EQ_ERR(atomic_load(&p.s.same_rc), -EINVAL);
    EXPECT_EQ_ERR(atomic_load(&p.s.busy_rc), -EBUSY);
    size_t len = th_quick() ? (4u << 20) : (20u << 20);
    transfer(p.a, p.b, len, 1);
    transfer(p.b, p.a, len, 2);
    /* And a small exchange, like a request and its reply. */
    PASS(p.a, p.b, "ping");
    PASS(p.b, p.a, "pong");
    EXPECT_EQ_INT(th_counter_get(&p.s.data), 0);
    finish(&p);
}

/* Write the repeating CHUNK of buf into the non-blocking fd until half a
 * second passes with no room (the proxy stopped taking it) or cap bytes are
 * in; returns the bytes written. */
static size_t write_until_stalled(int fd, const char *buf, size_t cap)
{
    size_t sent = 0;
    while (sent < cap) {
        size_t off = sent & (CHUNK - 1);
        ssize_t n = write(fd, buf + off, CHUNK - off);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, 500) == 0)
            break;
    }
    return sent;
}

/* Read len bytes from fd and check they are the repeating CHUNK of buf. */
static void expect_chunks(int fd, const char *buf, size_t len)
{
    char *got = malloc(CHUNK);
    ASSERT_NOT_NULL(got);
    for (size_t done = 0; done < len;) {
        size_t off = done & (CHUNK - 1);
        size_t want = len - done < CHUNK - off ? len - done : CHUNK - off;
        ssize_t n = th_read_exact(fd, got, want);
        ASSERT_EQ_INT(n, (long long)want);
        ASSERT_TRUE(memcmp(got, buf + off, want) == 0);
        done += want;
    }
    free(got);
}

/*
 * Nobody reads b: writes into a stop once the socket buffers and one pipe
 * are full, and evn holds nothing of its own (the pipe holds at most 64 KiB,
 * b has no queued output, a is not being read). Then b reads it all.
 */
static void test_slow_reader(void)
{
    struct pair p;
    start(&p, MODE_PLAIN);
    char *buf = malloc(CHUNK);
    ASSERT_NOT_NULL(buf);
    fill(buf, CHUNK, 3);
    int fl = fcntl(p.a, F_GETFL);
    fcntl(p.a, F_SETFL, fl | O_NONBLOCK);
    size_t sent = write_until_stalled(p.a, buf, 256u << 20);
    fcntl(p.a, F_SETFL, fl);
    EXPECT_LT_INT(sent, 64u << 20);
    /* A wake shows the state; it may land in the moment between b's
     * writable event and the retry that stops reading a again, so ask a
     * few times. */
    for (int i = 0; i < 20; i++) {
        long woken = th_counter_get(&p.s.woken);
        evn_wake(p.ts.srv, p.s.ids[0]);
        TH_WAIT_COUNTER(&p.s.woken, woken + 1);
        if (atomic_load(&p.s.waiting))
            break;
    }
    EXPECT_LE_INT(atomic_load(&p.s.inpipe), 65536);
    EXPECT_EQ_INT(atomic_load(&p.s.to_pending), 0);
    EXPECT_EQ_INT(atomic_load(&p.s.waiting), 1);
    /* Drain b and check every byte. */
    expect_chunks(p.b, buf, sent);
    free(buf);
    finish(&p);
}

/* a shuts down its side: b reads the bytes then end-of-file, and b can
 * still answer a; then b shuts down and both connections close. */
static void test_halfclose(void)
{
    struct pair p;
    start(&p, MODE_PLAIN);
    th_write_str(p.a, "last words");
    shutdown(p.a, SHUT_WR);
    EXPECT_READ_STR(p.b, "last words");
    EXPECT_EQ_INT(th_wait_eof(p.b), 0);
    PASS(p.b, p.a, "reply");
    shutdown(p.b, SHUT_WR);
    EXPECT_EQ_INT(th_wait_eof(p.a), 0);
    /* Both close on their own, before finish closes the sockets. */
    TH_WAIT_COUNTER(&p.s.closed, 2);
    finish(&p);
}

/* A reset on a closes it (closed fires); the server then closes b, whose
 * client sees end-of-file. */
static void test_reset_one_side(void)
{
    struct pair p;
    start_flowing(&p);
    th_close_rst(p.a);
    p.a = -1;
    TH_WAIT_COUNTER(&p.s.closed, 2);
    EXPECT_EQ_INT(th_wait_eof(p.b), 0);
    finish(&p);
}

/*
 * b's client closes while bytes keep coming into a: splicing into b soon
 * meets EPIPE, for which the kernel raises SIGPIPE (splice has no
 * MSG_NOSIGNAL). SIGPIPE keeps its default action here, so if evn let it
 * through this test would die. b closes with the error, and a after it.
 */
static void test_target_gone_no_sigpipe(void)
{
    struct pair p;
    start_flowing(&p);
    close(p.b);
    p.b = -1;
    char buf[64 * 1024];
    memset(buf, 'y', sizeof buf);
    size_t sent = 0;
    while (th_counter_get(&p.s.closed) < 2 && sent < (256u << 20)) {
        ssize_t n = send(p.a, buf, sizeof buf, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break;
        struct pollfd pfd = {.fd = p.a, .events = POLLOUT};
        poll(&pfd, 1, 100);
    }
    /* Both close with a still open: the server closes it, not finish. */
    TH_WAIT_COUNTER(&p.s.closed, 2);
    finish(&p);
}

/* Output queued on the target before the splice goes out first. */
static void test_queued_first(void)
{
    struct pair p;
    start(&p, MODE_GREET);
    th_write_str(p.b, "after");
    EXPECT_READ_STR(p.a, "greeting:after");
    finish(&p);
}

/* Input kept with evn_keep in the data event that starts the splice goes
 * ahead of the spliced bytes. */
static void test_kept_first(void)
{
    struct pair p;
    start(&p, MODE_KEEP);
    PASS(p.a, p.b, "kept;");
    PASS(p.a, p.b, "spliced");
    EXPECT_EQ_ERR(atomic_load(&p.s.splice_rc), 0);
    EXPECT_EQ_INT(th_counter_get(&p.s.data), 0);
    finish(&p);
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
