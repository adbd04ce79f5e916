/*
 * Flow control under pressure (test-flow has the basics: one client, 100
 * requests, the handler stopping on evn_conn_full and keeping its input).
 *
 * - A producer that paces itself with evn_conn_full() and drained (no kept
 *   input: it streams one long answer) delivers every byte of a 64 MB stream,
 *   in order, to a reader that reads in small pieces with pauses, with the
 *   queue never above the high-water mark plus one chunk: with explicit
 *   watermarks, with the defaults, and with per-connection watermarks.
 * - Several clients that pipeline requests and never read cannot make the
 *   server hold more than high water plus one answer each: the queue is
 *   checked after every write, and the process's resident memory stays
 *   within a bound far below what the answers would take if they were
 *   queued. Reading afterwards gets every answer, in order.
 * - A client that pipelines requests and then half-closes (shutdown
 *   SHUT_WR) still gets an answer to every request, then EOF: the kept
 *   requests are not dropped when the FIN is read.
 *
 * The reader's pauses are load shaping (to make the server hit its high
 * water over and over), not synchronisation: nothing waits on them.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define CHUNK (16u << 10)

/* Resident memory of this process, in bytes (0 if unknown). */
static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    unsigned long size = 0, res = 0;
    int n = fscanf(f, "%lu %lu", &size, &res);
    fclose(f);
    return n == 2 ? (size_t)res * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Byte p of the stream is a function of p alone, so any stretch can be
 * checked without keeping what was sent, and a lost, repeated or reordered
 * piece shows at once. */
static void stream_fill(uint64_t off, unsigned char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint64_t p = off + i;
        uint64_t w = mix((p >> 3) + 1);
        unsigned k = (unsigned)(p & 7);
        if (k == 0 && n - i >= 8) {
            /* A whole word (the common case, and 8 times faster). */
            for (unsigned j = 0; j < 8; j++)
                buf[i + j] = (unsigned char)(w >> (8 * j));
            i += 8;
            continue;
        }
        for (; k < 8 && i < n; k++)
            buf[i++] = (unsigned char)(w >> (8 * k));
    }
}

static void max_store(atomic_llong *m, long long v)
{
    long long cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v))
        ;
}

/* ---- a long stream, paced by evn_conn_full and drained ---- */

struct stream_state {
    th_counter opened, closed, drained;
    atomic_int close_err;
    atomic_int bad;
    atomic_llong max_pending;
    uint64_t total;
    size_t high, low; /* per connection, set in opened when high > 0 */
};

struct stream {
    uint64_t off;
    bool started;
};

static struct stream_state *SS(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action st_opened(evn_conn *c)
{
    struct stream_state *s = SS(c);
    struct stream *st = calloc(1, sizeof *st);
    ASSERT_NOT_NULL(st);
    evn_conn_set_udata(c, st);
    if (s->high)
        EXPECT_EQ_ERR(evn_conn_set_watermarks(c, s->high, s->low), 0);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action st_closed(evn_conn *c, int err)
{
    struct stream_state *s = SS(c);
    free(evn_conn_udata(c));
    atomic_store(&s->close_err, err);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

/* Write chunks until the queue is full or the stream is done. */
static evn_action produce(evn_conn *c)
{
    struct stream_state *s = SS(c);
    struct stream *st = evn_conn_udata(c);
    unsigned char buf[CHUNK];
    while (st->off < s->total && !evn_conn_full(c)) {
        size_t n = s->total - st->off < CHUNK ? (size_t)(s->total - st->off) : CHUNK;
        stream_fill(st->off, buf, n);
        int rc = evn_write(c, buf, n);
        if (rc != 0) {
            EXPECT_EQ_ERR(rc, 0);
            atomic_fetch_add(&s->bad, 1);
            return EVN_CLOSE;
        }
        st->off += n;
        max_store(&s->max_pending, (long long)evn_conn_pending(c));
    }
    /* All queued: EVN_CLOSE sends it all, then closes. */
    return st->off >= s->total ? EVN_CLOSE : EVN_NONE;
}

static evn_action st_data(evn_conn *c, const char *in, size_t len)
{
    struct stream *st = evn_conn_udata(c);
    if (in == NULL || st->started)
        return EVN_NONE;
    st->started = true;
    return produce(c);
}

static evn_action st_drained(evn_conn *c)
{
    struct stream_state *s = SS(c);
    struct stream *st = evn_conn_udata(c);
    /* drained means: at or below low water, so not full. */
    if (evn_conn_full(c))
        atomic_fetch_add(&s->bad, 1);
    th_counter_add(&s->drained, 1);
    if (!st->started)
        return EVN_NONE;
    return produce(c);
}

/*
 * Read the whole stream in small pieces, checking every byte; sleep now and
 * then so that the server's queue fills up to its high-water mark.
 */
static void slow_read_stream(int fd, uint64_t total, uint64_t seed)
{
    th_rng r;
    th_rng_init(&r, seed);
    enum { MAXREAD = 16384 };
    unsigned char buf[MAXREAD], want[MAXREAD];
    uint64_t got = 0;
    long reads = 0;
    while (got < total) {
        size_t n = (size_t)th_rng_range(&r, 1, MAXREAD);
        ssize_t k = th_read_some(fd, buf, n);
        if (k <= 0) {
            th_fail_(__FILE__, __LINE__, false,
                     "stream ended after %llu of %llu bytes: read gave %zd (%s)",
                     (unsigned long long)got, (unsigned long long)total, k,
                     k < 0 ? strerror((int)-k) : "EOF");
            return;
        }
        stream_fill(got, want, (size_t)k);
        if (memcmp(buf, want, (size_t)k) != 0) {
            size_t i = 0;
            while (buf[i] == want[i])
                i++;
            th_fail_(__FILE__, __LINE__, false,
                     "stream differs at byte %llu: got 0x%02x, want 0x%02x",
                     (unsigned long long)(got + i), buf[i], want[i]);
            return;
        }
        got += (uint64_t)k;
        reads++;
        /* Pauses: short ones often, a longer one now and then. */
        if (reads % 4 == 0) {
            struct timespec ts = {0, (long)th_rng_range(&r, 1000, 50000)};
            nanosleep(&ts, NULL);
        }
        if (reads % 2048 == 0) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
}

static void run_stream(size_t srv_high, size_t srv_low, size_t conn_high, size_t conn_low)
{
    struct stream_state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.opened);
    th_counter_init(&s.closed);
    th_counter_init(&s.drained);
    s.total = th_quick() ? (16ull << 20) : (64ull << 20);
    s.high = conn_high;
    s.low = conn_low;
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = st_opened;
    ev.closed = st_closed;
    ev.data = st_data;
    ev.drained = st_drained;
    ev.out_high = srv_high;
    ev.out_low = srv_low;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "G");
    slow_read_stream(fd, s.total, th_seed());
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    th_server_stop(&ts);
    size_t high = conn_high ? conn_high : srv_high ? srv_high : (4u << 20);
    fprintf(stderr, "  %llu MB streamed, %ld drained events, %lld bytes queued at most\n",
            (unsigned long long)(s.total >> 20), th_counter_get(&s.drained),
            (long long)atomic_load(&s.max_pending));
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    EXPECT_EQ_INT(atomic_load(&s.bad), 0);
    EXPECT_GE_INT(th_counter_get(&s.drained), 1);
    EXPECT_LE_INT(atomic_load(&s.max_pending), (long long)(high + CHUNK));
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
    th_counter_destroy(&s.drained);
}

/* Server-wide watermarks much smaller than the socket buffers. */
static void test_stream_small_watermarks(void)
{
    run_stream(256u << 10, 64u << 10, 0, 0);
}

/* The defaults, 4 MiB and 1 MiB. */
static void test_stream_default_watermarks(void)
{
    run_stream(0, 0, 0, 0);
}

/* evn_conn_set_watermarks in opened overrides the server's. */
static void test_stream_per_connection_watermarks(void)
{
    run_stream(16u << 20, 8u << 20, 128u << 10, 32u << 10);
}

/* ---- pipelining clients that never read ---- */

#define ANSWER (32u << 10)
#define HIGH (256u << 10)
#define LOW (64u << 10)
#define NCLIENTS 4

struct pipe_state {
    th_counter opened, closed, paused;
    long nreq; /* requests per connection */
    atomic_llong max_pending;
    atomic_long answered;
    atomic_int bad;
};

struct pconn {
    bool paused_once;
    long answered;
};

static struct pipe_state *PS(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action pp_opened(evn_conn *c)
{
    struct pconn *pc = calloc(1, sizeof *pc);
    ASSERT_NOT_NULL(pc);
    evn_conn_set_udata(c, pc);
    th_counter_add(&PS(c)->opened, 1);
    return EVN_NONE;
}

static evn_action pp_closed(evn_conn *c, int err)
{
    struct pipe_state *s = PS(c);
    if (err != 0)
        atomic_fetch_add(&s->bad, 1);
    free(evn_conn_udata(c));
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

/* One request per input byte; the answer is ANSWER copies of it. */
static evn_action pp_data(evn_conn *c, const char *in, size_t len)
{
    struct pipe_state *s = PS(c);
    struct pconn *pc = evn_conn_udata(c);
    static _Thread_local char buf[ANSWER];
    if (in == NULL)
        return EVN_NONE;
    for (size_t i = 0; i < len; i++) {
        if (evn_conn_full(c)) {
            EXPECT_EQ_ERR(evn_keep(c, len - i), 0);
            if (!pc->paused_once) {
                pc->paused_once = true;
                th_counter_add(&s->paused, 1);
            }
            return EVN_NONE;
        }
        memset(buf, in[i], sizeof buf);
        if (evn_write(c, buf, sizeof buf) != 0)
            atomic_fetch_add(&s->bad, 1);
        max_store(&s->max_pending, (long long)evn_conn_pending(c));
        atomic_fetch_add(&s->answered, 1);
        /* All answered without ever stopping: as settled as a pause. */
        if (++pc->answered == s->nreq && !pc->paused_once) {
            pc->paused_once = true;
            th_counter_add(&s->paused, 1);
        }
    }
    return EVN_NONE;
}

static char req_byte(long i)
{
    return (char)('A' + i % 53);
}

/* Read answers first .. first+n-1 and check each is ANSWER copies of its
 * request's byte. Returns how many were right. */
static long read_answers(int fd, long first, long n)
{
    static _Thread_local char buf[ANSWER];
    for (long i = first; i < first + n; i++) {
        ssize_t k = th_read_exact(fd, buf, ANSWER);
        if (k != (ssize_t)ANSWER) {
            th_fail_(__FILE__, __LINE__, false, "answer %ld of %ld: read gave %zd (%s)", i, n, k,
                     k < 0 ? strerror((int)-k) : "short");
            return i - first;
        }
        for (size_t j = 0; j < ANSWER; j++) {
            if (buf[j] != req_byte(i)) {
                th_fail_(__FILE__, __LINE__, false, "answer %ld, byte %zu: got '%c', want '%c'", i,
                         j, buf[j], req_byte(i));
                return i - first;
            }
        }
    }
    return n;
}

struct reader {
    int fd;
    long first, n, got;
    pthread_t th;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    r->got = read_answers(r->fd, r->first, r->n);
    return NULL;
}

static void test_nonreading_pipeliners_are_bounded(void)
{
    struct pipe_state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.opened);
    th_counter_init(&s.closed);
    th_counter_init(&s.paused);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = pp_opened;
    ev.closed = pp_closed;
    ev.data = pp_data;
    ev.out_high = HIGH;
    ev.out_low = LOW;
    /* Per client, unbounded queueing would hold NREQ * ANSWER: 32 MB. */
    const long nreq = th_quick() ? 256 : 1024;
    s.nreq = nreq; /* read by the loop thread: set before it starts */
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    char *reqs = malloc((size_t)nreq);
    ASSERT_NOT_NULL(reqs);
    for (long i = 0; i < nreq; i++)
        reqs[i] = req_byte(i);
    int fds[NCLIENTS];
    fds[0] = th_connect_srv(&ts, 0);
    /* One round first, so the loop's buffers and pool exist before the
     * baseline is taken. */
    th_write_all(fds[0], reqs, 1);
    EXPECT_EQ_INT(read_answers(fds[0], 0, 1), 1);
    size_t rss0 = rss_bytes();
    for (int i = 1; i < NCLIENTS; i++)
        fds[i] = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, NCLIENTS);
    /* 1-byte requests: the kernel takes them all without anyone reading. */
    th_write_all(fds[0], reqs + 1, (size_t)nreq - 1);
    for (int i = 1; i < NCLIENTS; i++)
        th_write_all(fds[i], reqs, (size_t)nreq);
    /* Every connection reaches its high-water mark and stops (or, were
     * flow control broken, answers everything). */
    TH_WAIT_COUNTER(&s.paused, NCLIENTS);
    size_t rss1 = rss_bytes();
    long answered = atomic_load(&s.answered);
    size_t bound = NCLIENTS * (HIGH + ANSWER) * 2 + (16u << 20);
    size_t unbounded = (size_t)NCLIENTS * (size_t)nreq * ANSWER;
    fprintf(stderr,
            "  %d clients paused after %ld of %ld answers; at most %lld bytes queued per "
            "connection; RSS grew by %zd KB (bound %zu KB, %zu KB if unbounded)\n",
            NCLIENTS, answered, NCLIENTS * nreq, (long long)atomic_load(&s.max_pending),
            ((ssize_t)rss1 - (ssize_t)rss0) / 1024, bound / 1024, unbounded / 1024);
    EXPECT_LT_INT(answered, NCLIENTS * nreq);
    EXPECT_LE_INT(atomic_load(&s.max_pending), (long long)(HIGH + ANSWER));
    /* Said, not silently left out: the rest of the subtest still holds. */
    if (SANITIZED || !rss0 || !rss1)
        fprintf(stderr, "  RSS not checked: %s\n",
                SANITIZED ? "a sanitizer build" : "this system does not tell it");
    else
        EXPECT_LE_SIZE(rss1 > rss0 ? rss1 - rss0 : 0, bound);

    /* Reading resumes them all: every answer, in order, on every client. */
    struct reader rd[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        rd[i] = (struct reader){.fd = fds[i], .first = i == 0, .n = i == 0 ? nreq - 1 : nreq};
        ASSERT_EQ_INT(pthread_create(&rd[i].th, NULL, reader_main, &rd[i]), 0);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        pthread_join(rd[i].th, NULL);
        EXPECT_EQ_INT(rd[i].got, rd[i].n);
    }
    EXPECT_EQ_INT(atomic_load(&s.answered), NCLIENTS * nreq);
    EXPECT_LE_INT(atomic_load(&s.max_pending), (long long)(HIGH + ANSWER));
    for (int i = 0; i < NCLIENTS; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s.closed, NCLIENTS);
    th_server_stop(&ts);
    EXPECT_EQ_INT(atomic_load(&s.bad), 0);
    free(reqs);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
    th_counter_destroy(&s.paused);
}

/*
 * Pipelined requests, then shutdown(SHUT_WR): the FIN arrives while most
 * requests are still kept (the handler stopped on evn_conn_full). Every
 * request must still be answered, in order, before the server closes.
 */
static void half_close_pipelined(long nreq, bool read_first)
{
    struct pipe_state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.opened);
    th_counter_init(&s.closed);
    th_counter_init(&s.paused);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = pp_opened;
    ev.closed = pp_closed;
    ev.data = pp_data;
    ev.out_high = HIGH;
    ev.out_low = LOW;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    char *reqs = malloc((size_t)nreq);
    ASSERT_NOT_NULL(reqs);
    for (long i = 0; i < nreq; i++)
        reqs[i] = req_byte(i);
    int fd = th_connect_srv(&ts, 0);
    th_write_all(fd, reqs, (size_t)nreq);
    if (read_first)
        TH_WAIT_COUNTER(&s.paused, 1);
    ASSERT_EQ_INT(shutdown(fd, SHUT_WR), 0);
    long got = read_answers(fd, 0, nreq);
    EXPECT_EQ_INT(got, nreq);
    if (got == nreq)
        EXPECT_EQ_INT(th_wait_eof(fd), 0);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    th_server_stop(&ts);
    fprintf(stderr, "  %ld of %ld requests answered\n", atomic_load(&s.answered), nreq);
    EXPECT_EQ_INT(atomic_load(&s.answered), nreq);
    EXPECT_EQ_INT(atomic_load(&s.bad), 0);
    free(reqs);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.closed);
    th_counter_destroy(&s.paused);
}

/* The FIN follows the requests at once. */
static void test_half_close_after_pipelining(void)
{
    half_close_pipelined(th_quick() ? 200 : 600, false);
}

/* The FIN comes once the server has stopped on its high-water mark. */
static void test_half_close_while_paused(void)
{
    half_close_pipelined(th_quick() ? 200 : 600, true);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_stream_small_watermarks);
    TH_RUN(test_stream_default_watermarks);
    TH_RUN(test_stream_per_connection_watermarks);
    TH_RUN(test_nonreading_pipeliners_are_bounded);
    TH_RUN(test_half_close_after_pipelining);
    TH_RUN(test_half_close_while_paused);
    return th_finish();
}
