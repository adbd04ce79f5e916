/*
 * Faults, one connection at a time and many at once, while other clients
 * are being served:
 *
 * - peers that reset (SO_LINGER 0) while the server is sending them a large
 *   answer, while it has stopped reading them at high water, or while it is
 *   closing them with output queued: closed reports an error for each, and
 *   the other clients, on the same loop and on another, are served
 *   throughout and afterwards;
 * - a peer that half-closes (shutdown SHUT_WR) after its requests still gets
 *   every answer, then EOF: many small requests, and one request answered
 *   by a long stream that the server paces with evn_conn_full and drained;
 * - EVN_CLOSE with megabytes queued (written in many pieces; returned from
 *   data, from a wake, from a deadline's timeout; with input still arriving
 *   from the peer) delivers every byte to a slow reader before the EOF;
 * - wakes from several threads (and from the loops themselves) racing with
 *   closes on four loops, while connections churn and their fd numbers are
 *   reused: a wake never reaches a connection whose id nobody was given;
 * - connections detaching under load while others echo: each detached fd
 *   is served once, blocking, by a thread of its own, then closed.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Byte p of every long answer is a function of p alone. */
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

/*
 * Read and check total bytes of the stream, in pieces of random size with
 * short pauses now and then (load shaping: the server's queue fills), then
 * expect EOF if asked. Returns the bytes that were right.
 */
static uint64_t read_stream(int fd, uint64_t total, bool slow, bool want_eof, const char *what)
{
    th_rng r;
    th_rng_init(&r, th_seed() ^ total);
    enum { MAXREAD = 65536 };
    unsigned char *buf = malloc(MAXREAD), *want = malloc(MAXREAD);
    ASSERT_TRUE(buf && want);
    uint64_t got = 0;
    long reads = 0;
    while (got < total) {
        size_t n = (size_t)th_rng_range(&r, 1, slow ? 16384 : MAXREAD);
        if (n > total - got)
            n = (size_t)(total - got);
        ssize_t k = th_read_some(fd, buf, n);
        if (k <= 0) {
            th_fail_(__FILE__, __LINE__, false, "%s: ended after %llu of %llu bytes: %s", what,
                     (unsigned long long)got, (unsigned long long)total,
                     k < 0 ? strerror((int)-k) : "EOF");
            break;
        }
        stream_fill(got, want, (size_t)k);
        if (memcmp(buf, want, (size_t)k) != 0) {
            size_t i = 0;
            while (buf[i] == want[i])
                i++;
            th_fail_(__FILE__, __LINE__, false, "%s: differs at byte %llu", what,
                     (unsigned long long)(got + i));
            break;
        }
        got += (uint64_t)k;
        if (slow && ++reads % 4 == 0) {
            struct timespec ts = {0, (long)th_rng_range(&r, 1000, 30000)};
            nanosleep(&ts, NULL);
        }
    }
    if (got == total && want_eof) {
        int e = th_wait_eof(fd);
        if (e != 0)
            th_fail_(__FILE__, __LINE__, false, "%s: after %llu bytes, no clean EOF: %d (%s)", what,
                     (unsigned long long)total, e, e < 0 ? strerror(-e) : "more data");
    }
    free(buf);
    free(want);
    return got;
}

/* ---- one server for most tests: the first byte picks a service ---- */

#define BIG (16u << 20)
#define PIECE (256u << 10)
#define AMP (64u << 10)

enum {
    M_NONE = 0,
    M_ECHO,  /* 'E': echo */
    M_CLOSE, /* 'C': BIG bytes of stream in PIECE writes, then EVN_CLOSE */
    M_MANY,  /* 'M': the same in random-sized writes, then EVN_CLOSE */
    M_AMP,   /* 'P': every further byte is a request for AMP bytes */
    M_WAKE,  /* 'W': the stream is written, and the connection closed, on a wake */
    M_TIMEO, /* 'T': the same on a deadline */
    M_PACED, /* 'G': the stream, paced by evn_conn_full and drained */
    M_LINES, /* 'L': answer every line with its length times itself */
    M_JUNK,  /* 'J': BIG bytes of zeros (cheaper than the stream) */
    M_JUNKC  /* 'K': the same, then EVN_CLOSE */
};

struct state {
    th_counter opened, closed, closed_err, paused, started;
    atomic_int bad;
    atomic_llong last_id;
    pthread_mutex_t mu;
    int errs[64];
    int nerrs;
    atomic_long lines;
};

struct conn {
    int mode;
    uint64_t off; /* paced: bytes queued so far */
    bool paused;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct conn *k = calloc(1, sizeof *k);
    ASSERT_NOT_NULL(k);
    evn_conn_set_udata(c, k);
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    free(evn_conn_udata(c));
    if (err != 0) {
        pthread_mutex_lock(&s->mu);
        if (s->nerrs < 64)
            s->errs[s->nerrs++] = err;
        pthread_mutex_unlock(&s->mu);
        th_counter_add(&s->closed_err, 1);
    }
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

/* Queue the whole stream (or BIG zeros), in pieces of PIECE bytes or of
 * random size. */
static void write_stream(evn_conn *c, bool random_pieces, bool junk)
{
    struct state *s = S(c);
    unsigned char *buf = calloc(1, PIECE);
    ASSERT_NOT_NULL(buf);
    th_rng r;
    th_rng_init(&r, (uint64_t)evn_conn_id(c));
    for (uint64_t off = 0; off < BIG;) {
        size_t n = random_pieces ? (size_t)th_rng_range(&r, 1, PIECE) : PIECE;
        if (n > BIG - off)
            n = (size_t)(BIG - off);
        if (!junk)
            stream_fill(off, buf, n);
        int rc = evn_write(c, buf, n);
        if (rc != 0) {
            /* Only a peer that already went away may refuse. */
            if (rc != -EPIPE)
                atomic_fetch_add(&s->bad, 1);
            break;
        }
        off += n;
    }
    free(buf);
}

static evn_action paced(evn_conn *c)
{
    struct conn *k = evn_conn_udata(c);
    unsigned char buf[PIECE / 4];
    while (k->off < BIG && !evn_conn_full(c)) {
        stream_fill(k->off, buf, sizeof buf);
        if (evn_write(c, buf, sizeof buf) != 0) {
            atomic_fetch_add(&S(c)->bad, 1);
            return EVN_CLOSE;
        }
        k->off += sizeof buf;
    }
    return k->off >= BIG ? EVN_CLOSE : EVN_NONE;
}

static evn_action on_drained(evn_conn *c)
{
    struct conn *k = evn_conn_udata(c);
    return k->mode == M_PACED ? paced(c) : EVN_NONE;
}

static evn_action on_timeout(evn_conn *c)
{
    write_stream(c, false, false);
    return EVN_CLOSE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    struct conn *k = evn_conn_udata(c);
    static _Thread_local char amp[AMP];
    if (in == NULL) {
        if (k->mode == M_WAKE) {
            write_stream(c, false, false);
            return EVN_CLOSE;
        }
        return EVN_NONE;
    }
    if (k->mode == M_NONE) {
        static const char cmds[] = "ECMPWTGLJK";
        const char *p = memchr(cmds, in[0], sizeof cmds - 1);
        if (!p) {
            atomic_fetch_add(&s->bad, 1);
            return EVN_CLOSE;
        }
        k->mode = (int)(p - cmds) + 1;
        in++;
        len--;
        atomic_store(&s->last_id, (long long)evn_conn_id(c));
        th_counter_add(&s->started, 1);
        switch (k->mode) {
        case M_CLOSE:
            write_stream(c, false, false);
            return EVN_CLOSE;
        case M_MANY:
            write_stream(c, true, false);
            return EVN_CLOSE;
        case M_JUNK:
            write_stream(c, false, true);
            break;
        case M_JUNKC:
            write_stream(c, false, true);
            return EVN_CLOSE;
        case M_TIMEO:
            EXPECT_EQ_ERR(evn_conn_set_deadline(c, 1), 0);
            break;
        case M_PACED:
            return paced(c);
        default:
            break;
        }
    }
    switch (k->mode) {
    case M_ECHO:
        if (len && evn_write(c, in, len) != 0)
            atomic_fetch_add(&s->bad, 1);
        break;
    case M_AMP:
        for (size_t i = 0; i < len; i++) {
            if (evn_conn_full(c)) {
                EXPECT_EQ_ERR(evn_keep(c, len - i), 0);
                if (!k->paused) {
                    k->paused = true;
                    th_counter_add(&s->paused, 1);
                }
                return EVN_NONE;
            }
            memset(amp, in[i], sizeof amp);
            if (evn_write(c, amp, sizeof amp) != 0)
                atomic_fetch_add(&s->bad, 1);
        }
        break;
    case M_LINES: {
        /* "n\n" -> n bytes of 'a' + n % 26, then "\n". */
        size_t start = 0;
        for (size_t i = 0; i < len; i++) {
            if (in[i] != '\n')
                continue;
            long n = strtol(in + start, NULL, 10);
            char *ans = malloc((size_t)n + 1);
            ASSERT_NOT_NULL(ans);
            memset(ans, 'a' + (int)(n % 26), (size_t)n);
            ans[n] = '\n';
            if (evn_write(c, ans, (size_t)n + 1) != 0)
                atomic_fetch_add(&s->bad, 1);
            free(ans);
            atomic_fetch_add(&s->lines, 1);
            start = i + 1;
        }
        if (start < len)
            EXPECT_EQ_ERR(evn_keep(c, len - start), 0);
        /* Answers are written whatever the queue holds; just say when it
         * first passes high water. */
        if (evn_conn_full(c) && !k->paused) {
            k->paused = true;
            th_counter_add(&s->paused, 1);
        }
        break;
    }
    default:
        break;
    }
    return EVN_NONE;
}

static struct state *state_new(void)
{
    struct state *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->closed_err);
    th_counter_init(&s->paused);
    th_counter_init(&s->started);
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void state_free(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->closed_err);
    th_counter_destroy(&s->paused);
    th_counter_destroy(&s->started);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void start(th_server *ts, struct state *s, int nloops, size_t high, size_t low)
{
    evn_events ev = {0};
    ev.nloops = nloops;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    ev.drained = on_drained;
    ev.timeout = on_timeout;
    ev.out_high = high;
    ev.out_low = low;
    const char *addr = "tcp://127.0.0.1:0";
    th_server_start(ts, &ev, &addr, 1);
}

/* Wait until every connection the server opened has closed, then stop it. */
static void finish(th_server *ts, struct state *s)
{
    TH_WAIT_COUNTER(&s->closed, th_counter_get(&s->opened));
    th_server_stop(ts);
    EXPECT_EQ_INT(th_counter_get(&s->closed), th_counter_get(&s->opened));
    EXPECT_EQ_INT(atomic_load(&s->bad), 0);
}

/* ---- a client that echoes all along, to show the server still serves ---- */

struct bystander {
    int fd;
    atomic_bool stop;
    th_counter rounds;
    char err[160];
    pthread_t th;
};

static void *bystander_main(void *arg)
{
    struct bystander *b = arg;
    th_write_str(b->fd, "E");
    for (long i = 0; !atomic_load(&b->stop); i++) {
        char req[64], got[64];
        int n = snprintf(req, sizeof req, "round trip %ld\n", i);
        th_write_all(b->fd, req, (size_t)n);
        ssize_t k = th_read_exact(b->fd, got, (size_t)n);
        if (k != n || memcmp(req, got, (size_t)n) != 0) {
            snprintf(b->err, sizeof b->err, "round trip %ld: %zd (%s)", i, k,
                     k < 0 ? strerror((int)-k) : "wrong bytes");
            break;
        }
        th_counter_add(&b->rounds, 1);
    }
    return NULL;
}

static void bystander_start(struct bystander *b, th_server *ts)
{
    memset(b, 0, sizeof *b);
    th_counter_init(&b->rounds);
    b->fd = th_connect_srv(ts, 0);
    ASSERT_EQ_INT(pthread_create(&b->th, NULL, bystander_main, b), 0);
    TH_WAIT_COUNTER(&b->rounds, 1);
}

/* Stop it, after at least `more` further round trips. */
static void bystander_stop(struct bystander *b, long more)
{
    if (!b->err[0])
        TH_WAIT_COUNTER(&b->rounds, th_counter_get(&b->rounds) + more);
    atomic_store(&b->stop, true);
    pthread_join(b->th, NULL);
    if (b->err[0])
        th_fail_(__FILE__, __LINE__, false, "bystander: %s", b->err);
    close(b->fd);
    th_counter_destroy(&b->rounds);
}

/* ---- resets ---- */

/*
 * Several clients at once ask for a large answer (or pipeline requests and
 * never read, or ask for an answer and a close), read a random part of it
 * and reset. Two bystanders, one on each loop, echo throughout. Every reset
 * connection is closed with an error; the bystanders never miss a beat.
 */
static void test_resets_mid_write(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 2, 1u << 20, 256u << 10);
    struct bystander by[2];
    bystander_start(&by[0], &ts);
    bystander_start(&by[1], &ts);
    th_rng r;
    th_rng_init(&r, th_seed());
    enum { PER = 6 };
    const int ROUNDS = th_quick() ? 2 : 4;
    long resets = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[PER];
        long started = th_counter_get(&s->started), paused = th_counter_get(&s->paused);
        int npaused = 0;
        for (int i = 0; i < PER; i++) {
            fds[i] = th_connect_srv(&ts, 0);
            switch ((i + round) % 3) {
            case 0:
                th_write_str(fds[i], "J");
                break;
            case 1:
                th_write_str(fds[i], "K");
                break;
            default: {
                char reqs[256];
                memset(reqs, 'r', sizeof reqs);
                reqs[0] = 'P';
                th_write_all(fds[i], reqs, sizeof reqs);
                npaused++;
                break;
            }
            }
        }
        TH_WAIT_COUNTER(&s->started, started + PER);
        TH_WAIT_COUNTER(&s->paused, paused + npaused);
        /* Read a little or a lot, then reset. */
        for (int i = 0; i < PER; i++) {
            size_t want = (size_t)th_rng_range(&r, 0, 3u << 20);
            char buf[65536];
            for (size_t got = 0; got < want;) {
                ssize_t k =
                    th_read_some(fds[i], buf, want - got < sizeof buf ? want - got : sizeof buf);
                if (k <= 0)
                    break;
                got += (size_t)k;
            }
            th_close_rst(fds[i]);
            resets++;
        }
        TH_WAIT_COUNTER(&s->closed_err, resets);
        TH_WAIT_COUNTER(&s->closed, resets);
    }
    /* The server still serves the bystanders, and new clients. */
    bystander_stop(&by[0], 10);
    bystander_stop(&by[1], 10);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "Eafter");
    EXPECT_READ_STR(fd, "after");
    close(fd);
    finish(&ts, s);
    EXPECT_EQ_INT(th_counter_get(&s->closed_err), resets);
    for (int i = 0; i < s->nerrs; i++) {
        int e = s->errs[i];
        if (e != -ECONNRESET && e != -EPIPE)
            th_fail_(__FILE__, __LINE__, false, "reset connection closed with %d (%s)", e,
                     evn_strerror(e));
    }
    fprintf(stderr, "  %ld resets, each closed with an error\n", resets);
    state_free(s);
}

/* ---- half-close ---- */

#define LINE_BASE 100000 /* request i asks for LINE_BASE + i bytes */

/* Read answers first..last of the 'L' service and check them. */
static int read_lines(int fd, int first, int last)
{
    char *buf = malloc(LINE_BASE + (size_t)last + 2);
    ASSERT_NOT_NULL(buf);
    int good = 0;
    for (int i = first; i <= last; i++) {
        size_t n = LINE_BASE + (size_t)i;
        ssize_t k = th_read_exact(fd, buf, n + 1);
        if (k != (ssize_t)(n + 1)) {
            th_fail_(__FILE__, __LINE__, false, "answer %d: read gave %zd (%s)", i, k,
                     k < 0 ? strerror((int)-k) : "short");
            break;
        }
        bool ok = buf[n] == '\n';
        for (size_t j = 0; j < n && ok; j++)
            ok = buf[j] == 'a' + (int)(n % 26);
        if (!ok) {
            th_fail_(__FILE__, __LINE__, false, "answer %d is wrong", i);
            break;
        }
        good++;
    }
    free(buf);
    return good;
}

/*
 * Requests in many small writes, then shutdown(SHUT_WR), reading nothing
 * yet. The answers (16 MB) are more than the socket buffers hold and less
 * than the high-water mark, so the server reads the FIN while megabytes are
 * still queued. Every answer must arrive, in order, then EOF.
 */
static void test_half_close_many_requests(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1, 64u << 20, 16u << 20);
    struct bystander by;
    bystander_start(&by, &ts);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "L");
    enum { N = 160 };
    for (int i = 1; i <= N; i++) {
        char req[32];
        int n = snprintf(req, sizeof req, "%d\n", LINE_BASE + i);
        th_write_all(fd, req, (size_t)n);
    }
    ASSERT_EQ_INT(shutdown(fd, SHUT_WR), 0);
    /* All answered, and (the FIN being in the socket before the bystander
     * speaks) the FIN read in the same turn as the bystander's request. */
    while (atomic_load(&s->lines) < N)
        TH_WAIT_COUNTER(&by.rounds, th_counter_get(&by.rounds) + 1);
    bystander_stop(&by, 1);
    int good = read_lines(fd, 1, N);
    EXPECT_EQ_INT(good, N);
    if (good == N)
        EXPECT_EQ_INT(th_wait_eof(fd), 0);
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 2);
    EXPECT_EQ_INT(th_counter_get(&s->closed_err), 0);
    finish(&ts, s);
    state_free(s);
}

/*
 * One request, then shutdown(SHUT_WR), answered by a 16 MB stream that the
 * server produces a piece at a time as its queue drains (evn_conn_full and
 * drained). The FIN arrives while the producer waits for drained: the
 * stream must still be completed before the close.
 */
static void test_half_close_during_paced_stream(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1, 256u << 10, 64u << 10);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "G");
    ASSERT_EQ_INT(shutdown(fd, SHUT_WR), 0);
    uint64_t got = read_stream(fd, BIG, true, true, "paced stream after a half-close");
    EXPECT_EQ_INT(got, BIG);
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    finish(&ts, s);
    state_free(s);
}

/* ---- EVN_CLOSE with output queued ---- */

static void close_with_pending(const char *cmd)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1, 0, 0);
    struct bystander by;
    bystander_start(&by, &ts);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, cmd);
    if (cmd[0] == 'W') {
        TH_WAIT_COUNTER(&s->started, 2);
        EXPECT_EQ_ERR(evn_wake(ts.srv, (evn_id)atomic_load(&s->last_id)), 0);
    }
    EXPECT_EQ_INT(read_stream(fd, BIG, true, true, "answer before close"), BIG);
    bystander_stop(&by, 5);
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 2);
    finish(&ts, s);
    EXPECT_EQ_INT(th_counter_get(&s->closed_err), 0);
    state_free(s);
}

/* 16 MB in random-sized writes, then EVN_CLOSE from data. */
static void test_close_after_many_writes(void)
{
    close_with_pending("M");
}

/* EVN_CLOSE returned from the data event of a wake. */
static void test_close_from_wake(void)
{
    close_with_pending("W");
}

/* EVN_CLOSE returned from the timeout callback of a deadline. */
static void test_close_from_timeout(void)
{
    close_with_pending("T");
}

/*
 * The peer sends more after the request the server answers with EVN_CLOSE.
 * The server no longer reads, so that input is never consumed; the answer
 * must arrive whole all the same (a close() with unread input makes the
 * kernel send a reset, which throws away whatever is still queued).
 */
static void test_close_with_unread_input(void)
{
    struct state *s = state_new();
    th_server ts;
    start(&ts, s, 1, 0, 0);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "C");
    unsigned char first, want;
    ASSERT_EQ_INT(th_read_exact(fd, &first, 1), 1);
    stream_fill(0, &want, 1);
    EXPECT_EQ_INT(first, want);
    th_write_str(fd, "more requests that nobody will read\n");
    /* Read the rest slowly: the server finishes sending to its kernel, and
     * closes, long before we have read it all. */
    th_rng r;
    th_rng_init(&r, th_seed());
    unsigned char *buf = malloc(16384), *exp = malloc(16384);
    ASSERT_TRUE(buf && exp);
    uint64_t got = 1;
    ssize_t k = 0;
    long reads = 0;
    while (got < BIG) {
        size_t n = (size_t)th_rng_range(&r, 1, 16384);
        k = th_read_some(fd, buf, n < BIG - got ? n : (size_t)(BIG - got));
        if (k <= 0)
            break;
        stream_fill(got, exp, (size_t)k);
        if (memcmp(buf, exp, (size_t)k) != 0) {
            th_fail_(__FILE__, __LINE__, false, "answer differs near byte %llu",
                     (unsigned long long)got);
            break;
        }
        got += (uint64_t)k;
        if (++reads % 4 == 0) {
            struct timespec ts2 = {0, 20000};
            nanosleep(&ts2, NULL);
        }
    }
    if (got < BIG)
        th_fail_(
            __FILE__, __LINE__, false, "EVN_CLOSE lost output: %llu of %llu bytes arrived, then %s",
            (unsigned long long)got, (unsigned long long)BIG, k < 0 ? strerror((int)-k) : "EOF");
    else
        EXPECT_EQ_INT(th_wait_eof(fd), 0);
    free(buf);
    free(exp);
    close(fd);
    TH_WAIT_COUNTER(&s->closed, 1);
    finish(&ts, s);
    state_free(s);
}

/* ---- wakes racing closes on several loops ---- */

#define RING 512

struct wk_state {
    th_counter opened, closed;
    pthread_mutex_t mu;
    evn_id ring[RING]; /* ids handed out to wakers; old ones stay a while */
    long nring;
    long nopened;
    atomic_long wrong_target; /* a wake reached a connection nobody could name */
    atomic_long wrong_thread;
    atomic_long wakes, bad_rc;
};

struct wk_conn {
    bool target;
    pthread_t thread;
    long wakes;
};

static struct wk_state *WS(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action wk_opened(evn_conn *c)
{
    struct wk_state *s = WS(c);
    struct wk_conn *k = calloc(1, sizeof *k);
    ASSERT_NOT_NULL(k);
    k->thread = pthread_self();
    pthread_mutex_lock(&s->mu);
    /* Every other connection is a target: its id goes to the wakers. The
     * rest are never named, yet reuse the same fd numbers. */
    k->target = s->nopened++ % 2 == 0;
    if (k->target)
        s->ring[s->nring++ % RING] = evn_conn_id(c);
    pthread_mutex_unlock(&s->mu);
    evn_conn_set_udata(c, k);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action wk_closed(evn_conn *c, int err)
{
    free(evn_conn_udata(c));
    th_counter_add(&WS(c)->closed, 1);
    return EVN_NONE;
}

static evn_id ring_pick(struct wk_state *s, th_rng *r)
{
    pthread_mutex_lock(&s->mu);
    long n = s->nring < RING ? s->nring : RING;
    evn_id id = n ? s->ring[th_rng_range(r, 0, (uint64_t)n - 1)] : 0;
    pthread_mutex_unlock(&s->mu);
    return id;
}

static evn_action wk_data(evn_conn *c, const char *in, size_t len)
{
    struct wk_state *s = WS(c);
    struct wk_conn *k = evn_conn_udata(c);
    if (!pthread_equal(k->thread, pthread_self()))
        atomic_fetch_add(&s->wrong_thread, 1);
    if (in == NULL) {
        if (!k->target)
            atomic_fetch_add(&s->wrong_target, 1);
        atomic_fetch_add(&s->wakes, 1);
        /* Some wakes close their connection, racing the client's close and
         * the other wakes still queued for it. */
        return ++k->wakes % 3 == 0 ? EVN_CLOSE : EVN_NONE;
    }
    /* Wake a few others, from this loop's thread, to any loop. */
    th_rng r;
    th_rng_init(&r, (uint64_t)evn_conn_id(c) ^ (uint64_t)len);
    for (int i = 0; i < 3; i++) {
        evn_id id = ring_pick(s, &r);
        int rc = id ? evn_wake(evn_conn_server(c), id) : 0;
        if (rc != 0 && rc != -EINVAL)
            atomic_fetch_add(&s->bad_rc, 1);
    }
    evn_write(c, in, len);
    return EVN_NONE;
}

struct wk_thread {
    th_server *ts;
    struct wk_state *s;
    atomic_bool *stop;
    long cycles;
    uint64_t seed;
    long bad_rc;
    pthread_t th;
};

static void *waker_main(void *arg)
{
    struct wk_thread *w = arg;
    th_rng r;
    th_rng_init(&r, w->seed);
    while (!atomic_load(w->stop)) {
        evn_id id = ring_pick(w->s, &r);
        if (!id)
            continue;
        int rc = evn_wake(w->ts->srv, id);
        if (rc != 0 && rc != -EINVAL)
            w->bad_rc++;
    }
    return NULL;
}

/* Connect, one round trip (which the server may cut short by closing on a
 * wake), then a close or a reset. */
static void *churn_main(void *arg)
{
    struct wk_thread *w = arg;
    th_rng r;
    th_rng_init(&r, w->seed);
    for (long i = 0; i < w->cycles; i++) {
        int fd = th_connect_srv(w->ts, 0);
        char buf[8];
        if (send(fd, "ping", 4, MSG_NOSIGNAL) == 4) {
            ssize_t k = th_read_exact(fd, buf, 4);
            if (k != 4 && k != 0 && k != -ECONNRESET)
                w->bad_rc++;
        }
        if (th_rng_range(&r, 0, 3) == 0)
            th_close_rst(fd);
        else
            close(fd);
    }
    return NULL;
}

static void test_wakes_race_closes_on_many_loops(void)
{
    struct wk_state *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    pthread_mutex_init(&s->mu, NULL);
    evn_events ev = {0};
    ev.nloops = 4;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.udata = s;
    ev.opened = wk_opened;
    ev.closed = wk_closed;
    ev.data = wk_data;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    enum { NWAKERS = 3, NCHURN = 3 };
    long cycles = th_quick() ? 300 : 1500;
    atomic_bool stop = false;
    struct wk_thread wakers[NWAKERS], churn[NCHURN];
    for (int i = 0; i < NWAKERS; i++) {
        wakers[i] =
            (struct wk_thread){.ts = &ts, .s = s, .stop = &stop, .seed = th_seed() + (uint64_t)i};
        ASSERT_EQ_INT(pthread_create(&wakers[i].th, NULL, waker_main, &wakers[i]), 0);
    }
    for (int i = 0; i < NCHURN; i++) {
        churn[i] = (struct wk_thread){.ts = &ts,
                                      .s = s,
                                      .stop = &stop,
                                      .cycles = cycles,
                                      .seed = th_seed() + 100 + (uint64_t)i};
        ASSERT_EQ_INT(pthread_create(&churn[i].th, NULL, churn_main, &churn[i]), 0);
    }
    long bad = 0;
    for (int i = 0; i < NCHURN; i++) {
        pthread_join(churn[i].th, NULL);
        bad += churn[i].bad_rc;
    }
    /* Every connection was accepted and has closed; then stop the wakers,
     * whose ids are now all stale. */
    TH_WAIT_COUNTER(&s->opened, NCHURN * cycles);
    TH_WAIT_COUNTER(&s->closed, NCHURN * cycles);
    atomic_store(&stop, true);
    for (int i = 0; i < NWAKERS; i++) {
        pthread_join(wakers[i].th, NULL);
        bad += wakers[i].bad_rc;
    }
    th_server_stop(&ts);
    fprintf(stderr, "  %ld connections on 4 loops, %ld wake events\n", NCHURN * cycles,
            atomic_load(&s->wakes));
    EXPECT_EQ_INT(th_counter_get(&s->opened), NCHURN * cycles);
    EXPECT_EQ_INT(th_counter_get(&s->closed), th_counter_get(&s->opened));
    EXPECT_GT_INT(atomic_load(&s->wakes), 0);
    EXPECT_EQ_INT(atomic_load(&s->wrong_target), 0);
    EXPECT_EQ_INT(atomic_load(&s->wrong_thread), 0);
    EXPECT_EQ_INT(atomic_load(&s->bad_rc), 0);
    EXPECT_EQ_INT(bad, 0);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- detach under load ---- */

#define PREAMBLE (256u << 10)

struct dt_state {
    th_counter opened, closed, detached, served;
    pthread_mutex_t mu;
    pthread_t *threads;
    int nthreads, cap;
    atomic_int bad;
};

static struct dt_state *DS(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action dt_opened(evn_conn *c)
{
    th_counter_add(&DS(c)->opened, 1);
    return EVN_NONE;
}

static evn_action dt_closed(evn_conn *c, int err)
{
    struct dt_state *s = DS(c);
    if ((intptr_t)evn_conn_udata(c) == 'D' || err != 0)
        atomic_fetch_add(&s->bad, 1);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static evn_action dt_data(evn_conn *c, const char *in, size_t len)
{
    struct dt_state *s = DS(c);
    if (in == NULL)
        return EVN_NONE;
    if (evn_conn_udata(c) == NULL && in[0] == 'D') {
        /* Queue a preamble, then hand the socket over: it goes out first. */
        evn_conn_set_udata(c, (void *)(intptr_t)'D');
        unsigned char *buf = malloc(PREAMBLE);
        ASSERT_NOT_NULL(buf);
        stream_fill(0, buf, PREAMBLE);
        if (evn_write(c, buf, PREAMBLE) != 0)
            atomic_fetch_add(&s->bad, 1);
        free(buf);
        return EVN_DETACH;
    }
    evn_conn_set_udata(c, (void *)(intptr_t)'E');
    if (evn_write(c, in, len) != 0)
        atomic_fetch_add(&s->bad, 1);
    return EVN_NONE;
}

struct owner {
    int fd;
    struct dt_state *s;
};

/* The detached fd's new owner: one line, blocking, echoed; then close. */
static void *owner_main(void *arg)
{
    struct owner *o = arg;
    char line[128];
    size_t n = 0;
    while (n < sizeof line) {
        ssize_t k = read(o->fd, line + n, 1);
        if (k <= 0)
            break;
        if (line[n++] == '\n')
            break;
    }
    if (n == 0 || line[n - 1] != '\n')
        atomic_fetch_add(&o->s->bad, 1);
    else
        th_write_all(o->fd, line, n);
    close(o->fd);
    th_counter_add(&o->s->served, 1);
    free(o);
    return NULL;
}

static evn_action dt_detached(evn_conn *c, evn_socket_t fd)
{
    struct dt_state *s = DS(c);
    if (fcntl(fd, F_GETFL) & O_NONBLOCK)
        atomic_fetch_add(&s->bad, 1);
    struct owner *o = malloc(sizeof *o);
    ASSERT_NOT_NULL(o);
    o->fd = fd;
    o->s = s;
    pthread_mutex_lock(&s->mu);
    if (s->nthreads == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->threads = realloc(s->threads, sizeof *s->threads * (size_t)s->cap);
        ASSERT_NOT_NULL(s->threads);
    }
    ASSERT_EQ_INT(pthread_create(&s->threads[s->nthreads], NULL, owner_main, o), 0);
    s->nthreads++;
    pthread_mutex_unlock(&s->mu);
    th_counter_add(&s->detached, 1);
    return EVN_NONE;
}

struct echoer {
    th_server *ts;
    atomic_bool *stop;
    uint64_t seed;
    long rounds;
    char err[160];
    pthread_t th;
};

static void *echoer_main(void *arg)
{
    struct echoer *e = arg;
    th_rng r;
    th_rng_init(&r, e->seed);
    int fd = th_connect_srv(e->ts, 0);
    static _Thread_local unsigned char out[65536], in[65536];
    uint64_t off = 0;
    while (!atomic_load(e->stop)) {
        size_t n = (size_t)th_rng_range(&r, 1, sizeof out);
        stream_fill(off, out, n);
        out[0] = off == 0 ? 'E' : out[0]; /* not 'D' */
        ssize_t k = th_transfer(fd, out, n, in, n);
        if (k != (ssize_t)n || memcmp(in, out, n) != 0) {
            snprintf(e->err, sizeof e->err, "echo round %ld: %zd of %zu bytes", e->rounds, k, n);
            break;
        }
        off += n;
        e->rounds++;
    }
    close(fd);
    return NULL;
}

static void *detacher_main(void *arg)
{
    struct echoer *e = arg;
    unsigned char *pre = malloc(PREAMBLE), *want = malloc(PREAMBLE);
    ASSERT_TRUE(pre && want);
    stream_fill(0, want, PREAMBLE);
    for (long i = 0; i < e->rounds && !e->err[0]; i++) {
        int fd = th_connect_srv(e->ts, 0);
        th_write_str(fd, "D");
        ssize_t k = th_read_exact(fd, pre, PREAMBLE);
        if (k != (ssize_t)PREAMBLE || memcmp(pre, want, PREAMBLE) != 0) {
            snprintf(e->err, sizeof e->err, "detach %ld: preamble %zd bytes or wrong", i, k);
        } else {
            char line[64], back[64];
            int n = snprintf(line, sizeof line, "detached %ld\n", i);
            th_write_all(fd, line, (size_t)n);
            k = th_read_exact(fd, back, (size_t)n);
            if (k != n || memcmp(line, back, (size_t)n) != 0)
                snprintf(e->err, sizeof e->err, "detach %ld: echo gave %zd", i, k);
            else if (th_wait_eof(fd) != 0)
                snprintf(e->err, sizeof e->err, "detach %ld: no EOF after the echo", i);
        }
        close(fd);
    }
    free(pre);
    free(want);
    return NULL;
}

static void test_detach_under_load(void)
{
    struct dt_state *s = calloc(1, sizeof *s);
    ASSERT_NOT_NULL(s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->detached);
    th_counter_init(&s->served);
    pthread_mutex_init(&s->mu, NULL);
    evn_events ev = {0};
    ev.nloops = 3;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.udata = s;
    ev.opened = dt_opened;
    ev.closed = dt_closed;
    ev.data = dt_data;
    ev.detached = dt_detached;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    enum { NECHO = 4, NDETACH = 3 };
    long per = th_quick() ? 30 : 100;
    atomic_bool stop = false;
    struct echoer echo[NECHO], det[NDETACH];
    for (int i = 0; i < NECHO; i++) {
        echo[i] = (struct echoer){.ts = &ts, .stop = &stop, .seed = th_seed() + (uint64_t)i};
        ASSERT_EQ_INT(pthread_create(&echo[i].th, NULL, echoer_main, &echo[i]), 0);
    }
    for (int i = 0; i < NDETACH; i++) {
        det[i] = (struct echoer){.ts = &ts, .stop = &stop, .rounds = per};
        ASSERT_EQ_INT(pthread_create(&det[i].th, NULL, detacher_main, &det[i]), 0);
    }
    for (int i = 0; i < NDETACH; i++) {
        pthread_join(det[i].th, NULL);
        if (det[i].err[0])
            th_fail_(__FILE__, __LINE__, false, "detacher %d: %s", i, det[i].err);
    }
    atomic_store(&stop, true);
    long rounds = 0;
    for (int i = 0; i < NECHO; i++) {
        pthread_join(echo[i].th, NULL);
        rounds += echo[i].rounds;
        if (echo[i].err[0])
            th_fail_(__FILE__, __LINE__, false, "echoer %d: %s", i, echo[i].err);
    }
    TH_WAIT_COUNTER(&s->closed, NECHO);
    TH_WAIT_COUNTER(&s->served, NDETACH * per);
    th_server_stop(&ts);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    fprintf(stderr,
            "  %ld detached and served by threads of their own; %ld echo rounds meanwhile\n",
            th_counter_get(&s->detached), rounds);
    EXPECT_EQ_INT(th_counter_get(&s->detached), NDETACH * per);
    EXPECT_EQ_INT(th_counter_get(&s->closed), NECHO);
    EXPECT_EQ_INT(th_counter_get(&s->opened), NECHO + NDETACH * per);
    EXPECT_EQ_INT(atomic_load(&s->bad), 0);
    EXPECT_GT_INT(rounds, 0);
    free(s->threads);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->detached);
    th_counter_destroy(&s->served);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_resets_mid_write);
    TH_RUN(test_half_close_many_requests);
    TH_RUN(test_half_close_during_paced_stream);
    TH_RUN(test_close_after_many_writes);
    TH_RUN(test_close_from_wake);
    TH_RUN(test_close_from_timeout);
    TH_RUN(test_close_with_unread_input);
    TH_RUN(test_wakes_race_closes_on_many_loops);
    TH_RUN(test_detach_under_load);
    return th_finish();
}
