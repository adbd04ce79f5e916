/*
 * Out of memory in evn's own allocations (the harness's allocator, th_alloc_fail_nth:
 * set to N, the Nth allocation from then on fails). Each test makes exactly
 * one allocation fail, chosen so that the failing one is known, and checks
 * that only the connection concerned is closed, with -ENOMEM, that the
 * others keep being served, and that the server's books (max_conns) stay
 * right. The ASan build checks that nothing leaks on these paths.
 *
 * - a write that needs a new chunk (from the connection's own callback, and
 *   after part of it went into the last chunk; to another connection, a
 *   large write and a small one whose queueing needs memory);
 * - kept input: copying it, and growing it when more arrives;
 * - the flow-control resume queue, when output drains after a pause;
 * - accepting: a new page of the connections' pool, on the accepting loop
 *   and on the loop it is handed to, and the hand-over itself: the
 *   connection is dropped (its client sees EOF) and nothing fires for it;
 * - evn_wake's queue: -ENOMEM to the caller, and the next wake works.
 */
#include "harness.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define BIGW (1u << 20)
#define AMP 2048u /* small: the first flush sends everything */

struct state {
    th_counter opened, closed, data, armed_c;
    atomic_int victim_err; /* closed's err for the victim */
    atomic_int victim_closed;
    atomic_int others_bad; /* any other connection closed with an error */
    atomic_int write_rc;   /* what the failing call returned */
    evn_conn *victim;      /* loop thread only */
    atomic_llong victim_id;
    atomic_long answered;
    bool armed; /* 'P': the hook was set once */
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static void fail_nth(int n)
{
    th_alloc_fail_nth(n);
}

static evn_action on_opened(evn_conn *c)
{
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (evn_conn_id(c) == (evn_id)atomic_load(&s->victim_id)) {
        atomic_store(&s->victim_err, err);
        atomic_store(&s->victim_closed, 1);
        s->victim = NULL;
    } else if (err != 0) {
        atomic_fetch_add(&s->others_bad, 1);
    }
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static void mark_victim(evn_conn *c)
{
    struct state *s = S(c);
    evn_conn_set_udata(c, (void *)1);
    s->victim = c;
    atomic_store(&s->victim_id, (long long)evn_conn_id(c));
}

/*
 * The first byte of each input is a command:
 *   E... echo the rest          V    become the victim (answers "v")
 *   N    1 MB write, a new chunk fails
 *   H    100 bytes, then 1 MB whose new chunk fails
 *   X    1 MB written to the victim; that chunk fails
 *   Y    1 byte written to the victim (pooled chunk); the next allocation,
 *        the one that queues the victim for flushing, fails
 *   K... keep the rest; copying it fails
 *   G... keep the rest; growing it when more comes fails
 *   P... a request per byte for 2 KB each, paced with evn_keep (high
 *        water 4 KB); the resume queue's allocation fails
 */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    static char big[BIGW];
    th_counter_add(&s->data, 1);
    if (in == NULL)
        return EVN_NONE;
    if (evn_conn_udata(c) == (void *)2) {
        /* Pipelining ('P' earlier): kept input comes back here. */
        goto pipelined;
    }
    switch (in[0]) {
    case 'E':
        if (len > 1 && evn_write(c, in + 1, len - 1) != 0)
            atomic_fetch_add(&s->others_bad, 1);
        return EVN_NONE;
    case 'V':
        mark_victim(c);
        evn_write(c, "v", 1);
        return EVN_NONE;
    case 'N':
        mark_victim(c);
        fail_nth(1);
        atomic_store(&s->write_rc, evn_write(c, big, sizeof big));
        return EVN_NONE;
    case 'H':
        mark_victim(c);
        EXPECT_EQ_ERR(evn_write(c, big, 100), 0);
        fail_nth(1);
        atomic_store(&s->write_rc, evn_write(c, big, sizeof big));
        return EVN_NONE;
    case 'X':
        ASSERT_NOT_NULL(s->victim);
        fail_nth(1);
        atomic_store(&s->write_rc, evn_write(s->victim, big, sizeof big));
        evn_write(c, "x", 1);
        return EVN_NONE;
    case 'Y':
        ASSERT_NOT_NULL(s->victim);
        fail_nth(1);
        atomic_store(&s->write_rc, evn_write(s->victim, "y", 1));
        evn_write(c, "x", 1);
        return EVN_NONE;
    case 'K':
        mark_victim(c);
        fail_nth(1);
        EXPECT_EQ_ERR(evn_keep(c, len), 0);
        return EVN_NONE;
    case 'G':
        /* The 1st allocation from here is the connection's extension, the
         * 2nd the kept input's copy, the 3rd its growth. */
        if (evn_conn_udata(c) == NULL) {
            mark_victim(c);
            fail_nth(3);
        }
        EXPECT_EQ_ERR(evn_keep(c, len), 0);
        return EVN_NONE;
    case 'P':
        evn_conn_set_udata(c, (void *)2);
        EXPECT_EQ_ERR(evn_conn_set_watermarks(c, 2 * AMP, 0), 0);
        in++;
        len--;
        goto pipelined;
    default:
        atomic_fetch_add(&s->others_bad, 1);
        return EVN_CLOSE;
    }
pipelined:
    for (size_t i = 0; i < len; i++) {
        if (evn_conn_full(c)) {
            EXPECT_EQ_ERR(evn_keep(c, len - i), 0);
            if (!s->armed) {
                /* The 1st allocation from here copies the kept input; the
                 * 2nd is the resume queue's, once the output drains. */
                s->armed = true;
                s->victim = c;
                atomic_store(&s->victim_id, (long long)evn_conn_id(c));
                fail_nth(2);
                th_counter_add(&s->armed_c, 1);
            }
            return EVN_NONE;
        }
        memset(big, in[i], AMP);
        if (evn_write(c, big, AMP) != 0)
            atomic_fetch_add(&s->others_bad, 1);
        atomic_fetch_add(&s->answered, 1);
    }
    return EVN_NONE;
}

static void start(th_server *ts, struct state *s, int nloops, int max_conns)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->data);
    th_counter_init(&s->armed_c);
    fail_nth(0);
    evn_events ev = {0};
    ev.nloops = nloops;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    ev.out_high = 256u << 10;
    ev.out_low = 0;
    ev.max_conns = max_conns;
    ev.busy_reply = "busy";
    const char *addr = "tcp://127.0.0.1:0";
    th_server_start(ts, &ev, &addr, 1);
}

/* Wait until all but `stuck` connections have closed, then stop (which
 * closes the stuck ones). */
static void finish_but(th_server *ts, struct state *s, long stuck)
{
    TH_WAIT_COUNTER(&s->closed, th_counter_get(&s->opened) - stuck);
    th_server_stop(ts);
    /* The one allocation meant to fail did fail. */
    EXPECT_EQ_INT(th_alloc_fail_pending(), 0);
    fail_nth(0);
    EXPECT_EQ_INT(th_counter_get(&s->closed), th_counter_get(&s->opened));
    EXPECT_EQ_INT(atomic_load(&s->others_bad), 0);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->data);
    th_counter_destroy(&s->armed_c);
}

static void finish(th_server *ts, struct state *s)
{
    finish_but(ts, s, 0);
}

static bool echo(int fd, const char *msg)
{
    char req[64], got[64];
    int n = snprintf(req, sizeof req, "E%s", msg);
    th_write_all(fd, req, (size_t)n);
    return th_read_exact(fd, got, (size_t)n - 1) == n - 1 && memcmp(got, msg, (size_t)n - 1) == 0;
}

/* The victim's client sees its connection end: EOF or a reset. */
static void expect_dropped(int fd)
{
    char buf[4096];
    ssize_t k;
    while ((k = th_read_some(fd, buf, sizeof buf)) > 0)
        ;
    EXPECT_TRUE(k == 0 || k == -ECONNRESET);
}

/* The victim asks for a write whose new chunk cannot be had. */
static void write_fails(const char *cmd)
{
    struct state s;
    th_server ts;
    start(&ts, &s, 1, 0);
    int other = th_connect_srv(&ts, 0);
    EXPECT_TRUE(echo(other, "before"));
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, cmd);
    expect_dropped(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.write_rc), -ENOMEM);
    EXPECT_EQ_INT(atomic_load(&s.victim_closed), 1);
    EXPECT_EQ_ERR(atomic_load(&s.victim_err), -ENOMEM);
    /* The others are fine, and memory is to be had again. */
    EXPECT_TRUE(echo(other, "after"));
    int again = th_connect_srv(&ts, 0);
    th_write_str(again, "Ebig enough");
    EXPECT_READ_STR(again, "big enough");
    close(fd);
    close(again);
    close(other);
    finish(&ts, &s);
}

static void test_write_new_chunk_fails(void)
{
    write_fails("N");
}

static void test_write_fails_after_partial_copy(void)
{
    write_fails("H");
}

/*
 * Another connection's callback writes to the victim (same loop) and that
 * fails. By the contract of evn_write, -ENOMEM closes the victim with
 * -ENOMEM "once the callback returns", so by the time the writer has its
 * answer and a further round trip, the victim is closed.
 */
static void write_to_other_fails(const char *cmd)
{
    struct state s;
    th_server ts;
    start(&ts, &s, 1, 0);
    int victim = th_connect_srv(&ts, 0);
    th_write_str(victim, "V");
    EXPECT_READ_STR(victim, "v");
    int writer = th_connect_srv(&ts, 0);
    /* A round trip each way: the loop's chunk pool is no longer empty. */
    EXPECT_TRUE(echo(writer, "warm"));
    th_write_str(writer, cmd);
    EXPECT_READ_STR(writer, "x");
    EXPECT_TRUE(echo(writer, "a later turn of the loop"));
    EXPECT_EQ_ERR(atomic_load(&s.write_rc), -ENOMEM);
    int closed = atomic_load(&s.victim_closed);
    EXPECT_EQ_INT(closed, 1);
    if (closed) {
        EXPECT_EQ_ERR(atomic_load(&s.victim_err), -ENOMEM);
        expect_dropped(victim);
    } else {
        struct pollfd p = {.fd = victim, .events = POLLIN};
        int r = poll(&p, 1, 0);
        fprintf(stderr, "  the victim is still open%s\n",
                r > 0 ? ", and the write reported as failed was delivered"
                      : ", with the write's bytes queued and never sent");
    }
    EXPECT_TRUE(echo(writer, "after"));
    close(victim);
    close(writer);
    /* Left open, the victim never notices its peer's close either (nothing
     * will flush it, and it no longer reads): the shutdown closes it. */
    finish_but(&ts, &s, closed ? 0 : 1);
}

static void test_write_to_other_connection_fails(void)
{
    write_to_other_fails("X");
}

static void test_queueing_other_connection_fails(void)
{
    write_to_other_fails("Y");
}

/* Copying kept input fails: the victim is closed, the others are fine. */
static void test_keep_fails(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, 1, 0);
    int other = th_connect_srv(&ts, 0);
    EXPECT_TRUE(echo(other, "before"));
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "Kpartial frame");
    expect_dropped(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.victim_err), -ENOMEM);
    EXPECT_TRUE(echo(other, "after"));
    close(fd);
    close(other);
    finish(&ts, &s);
}

/* Kept input is copied, then more arrives and growing it fails. */
static void test_keep_grow_fails(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, 1, 0);
    int other = th_connect_srv(&ts, 0);
    EXPECT_TRUE(echo(other, "before"));
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "Gfirst part");
    /* The keep is done once the server has seen it and served a later
     * turn for someone else. */
    TH_WAIT_COUNTER(&s.data, 2);
    EXPECT_TRUE(echo(other, "between"));
    EXPECT_EQ_INT(atomic_load(&s.victim_closed), 0);
    /* More than the kept copy has room for, however the backend reads. */
    static char second[32 * 1024];
    memset(second, 's', sizeof second);
    th_write_all(fd, second, sizeof second);
    expect_dropped(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.victim_err), -ENOMEM);
    EXPECT_TRUE(echo(other, "after"));
    close(fd);
    close(other);
    finish(&ts, &s);
}

/*
 * Pipelined requests, paced with evn_keep; the allocation that queues the
 * connection to be resumed when its output drains fails. The connection
 * must then be closed with -ENOMEM; what it must not do is sit there with
 * its kept requests and never answer them.
 */
static void test_resume_queue_fails(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, 1, 0);
    int other = th_connect_srv(&ts, 0);
    EXPECT_TRUE(echo(other, "before"));
    int fd = th_connect_srv(&ts, 0);
    char reqs[200];
    memset(reqs, 'r', sizeof reqs);
    reqs[0] = 'P';
    th_write_all(fd, reqs, sizeof reqs);
    TH_WAIT_COUNTER(&s.armed_c, 1);
    /* Read every answer the server has queued... */
    long got = 0;
    char *buf = malloc(AMP);
    ASSERT_NOT_NULL(buf);
    for (;;) {
        /* ...which, once the hook is armed, is all it will queue unless
         * it resumes; a round trip on the other connection shows the loop
         * has moved on. */
        EXPECT_TRUE(echo(other, "tick"));
        long answered = atomic_load(&s.answered);
        if (got >= answered)
            break;
        ssize_t k = th_read_exact(fd, buf, AMP);
        if (k != (ssize_t)AMP)
            break;
        got++;
    }
    free(buf);
    EXPECT_TRUE(echo(other, "a later turn of the loop"));
    long answered = atomic_load(&s.answered);
    int closed = atomic_load(&s.victim_closed);
    fprintf(stderr, "  %ld answers read of %ld written for %zu requests; victim %s\n", got,
            answered, sizeof reqs - 1, closed ? "closed" : "still open");
    /* Not a hang: closed with -ENOMEM. */
    EXPECT_EQ_INT(closed, 1);
    if (closed)
        EXPECT_EQ_ERR(atomic_load(&s.victim_err), -ENOMEM);
    EXPECT_TRUE(echo(other, "after"));
    close(fd);
    close(other);
    finish(&ts, &s);
}

/* ---- accepting ---- */

/* Connect; expect to be served ("E" round trip) or dropped (EOF). */
static int connect_served(th_server *ts, struct state *s, long opened_before)
{
    int fd = th_connect_srv(ts, 0);
    TH_WAIT_COUNTER(&s->opened, opened_before + 1);
    EXPECT_TRUE(echo(fd, "hello"));
    return fd;
}

static void connect_dropped(th_server *ts, struct state *s)
{
    int fd = th_connect_srv(ts, 0);
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    close(fd);
}

/*
 * Two loops, round-robin: connection k goes to loop k % 2. Connections live
 * in pages of a pool, so a new one allocates only when its loop's pages are
 * all taken: with PAGE connections on each loop, the next one on loop 0
 * (the accepting loop) and the next on loop 1 (handed over) each need a new
 * page, which fails once for each: both are dropped unseen, the rest are
 * served, and max_conns counts exactly the live ones.
 */
#define PAGE 64

static void test_accept_conn_alloc_fails(void)
{
    struct state s;
    th_server ts;
    enum { LIVE = 2 * PAGE + 2 };
    start(&ts, &s, 2, LIVE);
    static int fds[LIVE];
    int n = 0;
    for (int k = 0; k < 2 * PAGE; k++, n++)
        fds[n] = connect_served(&ts, &s, n);
    fail_nth(1);
    connect_dropped(&ts, &s); /* loop 0 */
    EXPECT_EQ_INT(th_alloc_fail_pending(), 0);
    fail_nth(1);
    connect_dropped(&ts, &s); /* loop 1 */
    EXPECT_EQ_INT(th_alloc_fail_pending(), 0);
    fds[n] = connect_served(&ts, &s, n); /* loop 0 */
    n++;
    fds[n] = connect_served(&ts, &s, n); /* loop 1 */
    n++;
    EXPECT_EQ_INT(th_counter_get(&s.opened), LIVE);
    /* The two dropped ones hold no slot: the next is over the cap. */
    int busy = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(busy, "busy");
    EXPECT_EQ_INT(th_wait_eof(busy), 0);
    close(busy);
    for (int i = 0; i < n; i++)
        EXPECT_TRUE(echo(fds[i], "still"));
    for (int i = 0; i < n; i++)
        close(fds[i]);
    EXPECT_EQ_INT(th_counter_get(&s.opened), LIVE);
    finish(&ts, &s);
}

/* The hand-over to loop 1 itself cannot get memory for its message. */
static void test_accept_handover_fails(void)
{
    struct state s;
    th_server ts;
    enum { LIVE = 3 };
    start(&ts, &s, 2, LIVE);
    int fds[LIVE], n = 0;
    fds[n++] = connect_served(&ts, &s, 0); /* k = 0, loop 0 */
    fail_nth(1);
    connect_dropped(&ts, &s); /* k = 1: loop 1's first message */
    EXPECT_EQ_INT(th_alloc_fail_pending(), 0);
    fds[n++] = connect_served(&ts, &s, 1); /* k = 2, loop 0 */
    fds[n++] = connect_served(&ts, &s, 2); /* k = 3, loop 1 */
    int busy = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(busy, "busy");
    close(busy);
    for (int i = 0; i < n; i++) {
        EXPECT_TRUE(echo(fds[i], "still"));
        close(fds[i]);
    }
    EXPECT_EQ_INT(th_counter_get(&s.opened), LIVE);
    finish(&ts, &s);
}

/* evn_wake cannot queue its message: -ENOMEM, and nothing else changes. */
static void test_wake_queue_fails(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, 1, 0);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "V");
    EXPECT_READ_STR(fd, "v");
    evn_id id = (evn_id)atomic_load(&s.victim_id);
    long data0 = th_counter_get(&s.data);
    fail_nth(1);
    EXPECT_EQ_ERR(evn_wake(ts.srv, id), -ENOMEM);
    EXPECT_EQ_ERR(evn_wake(ts.srv, id), 0);
    TH_WAIT_COUNTER(&s.data, data0 + 1);
    EXPECT_TRUE(echo(fd, "after"));
    EXPECT_EQ_INT(atomic_load(&s.victim_closed), 0);
    close(fd);
    finish(&ts, &s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_write_new_chunk_fails);
    TH_RUN(test_write_fails_after_partial_copy);
    TH_RUN(test_write_to_other_connection_fails);
    TH_RUN(test_queueing_other_connection_fails);
    TH_RUN(test_keep_fails);
    TH_RUN(test_keep_grow_fails);
    TH_RUN(test_resume_queue_fails);
    TH_RUN(test_accept_conn_alloc_fails);
    TH_RUN(test_accept_handover_fails);
    TH_RUN(test_wake_queue_fails);
    return th_finish();
}
