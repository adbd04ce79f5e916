/*
 * Fairness: one loop, and on it clients that flood it in every way we could
 * think of, while a light client does 100 request/reply round trips. The
 * light client's round trips must all complete while the flood goes on (the
 * flood stops only once they have). How fast they complete is not checked:
 * a starved client shows up as a read that never returns (the harness's
 * hang guard), a slow one does not fail.
 *
 * - data floods: a client streaming data to an echo service and reading it
 *   back, a client pipelining one-byte requests that each get a 256 KB
 *   answer (the server paces itself with evn_conn_full and evn_keep), and a
 *   client that pipelines and never reads (the server stops reading it);
 * - a connect storm (connect and reset, over and over) and a wake storm
 *   (threads calling evn_wake on busy connections without pause).
 */
#include "harness.h"
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ROUNDTRIPS 100
#define AMP (256u << 10) /* answer to one amplified request */
#define BLOCK (64u << 10)

struct state {
    th_counter opened, closed;
    th_counter echo_in;   /* bytes the echo flood's connection sent us */
    th_counter amp_out;   /* amplified answers written */
    th_counter wakes;     /* data(NULL) events */
    atomic_long light_in; /* light round trips seen */
    atomic_int bad;
    atomic_llong ids[4]; /* ids of the flooding connections, for wakers */
    atomic_int nids;
};

enum { M_NONE = 0, M_ECHO, M_AMP, M_LIGHT };

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    th_counter_add(&S(c)->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

/* The first byte a client sends picks its service. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    static _Thread_local char amp[AMP];
    if (in == NULL) {
        th_counter_add(&s->wakes, 1);
        return EVN_NONE;
    }
    intptr_t mode = (intptr_t)evn_conn_udata(c);
    if (mode == M_NONE) {
        mode = in[0] == 'E' ? M_ECHO : in[0] == 'A' ? M_AMP : in[0] == 'L' ? M_LIGHT : -1;
        evn_conn_set_udata(c, (void *)mode);
        if (mode == M_ECHO || mode == M_AMP) {
            int k = atomic_fetch_add(&s->nids, 1);
            if (k < 4)
                atomic_store(&s->ids[k], (long long)evn_conn_id(c));
        }
        in++;
        len--;
    }
    switch (mode) {
    case M_ECHO:
        th_counter_add(&s->echo_in, (long)len);
        if (len && evn_write(c, in, len) != 0)
            atomic_fetch_add(&s->bad, 1);
        break;
    case M_LIGHT:
        atomic_fetch_add(&s->light_in, 1);
        if (len && evn_write(c, in, len) != 0)
            atomic_fetch_add(&s->bad, 1);
        break;
    case M_AMP:
        for (size_t i = 0; i < len; i++) {
            if (evn_conn_full(c)) {
                EXPECT_EQ_ERR(evn_keep(c, len - i), 0);
                return EVN_NONE;
            }
            memset(amp, in[i], sizeof amp);
            if (evn_write(c, amp, sizeof amp) != 0)
                atomic_fetch_add(&s->bad, 1);
            th_counter_add(&s->amp_out, 1);
        }
        break;
    default:
        atomic_fetch_add(&s->bad, 1);
        return EVN_CLOSE;
    }
    return EVN_NONE;
}

static void start(th_server *ts, struct state *s)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->echo_in);
    th_counter_init(&s->amp_out);
    th_counter_init(&s->wakes);
    evn_events ev = {0};
    ev.nloops = 1;
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    ev.out_high = 1u << 20;
    ev.out_low = 256u << 10;
    const char *addr = "tcp://127.0.0.1:0";
    th_server_start(ts, &ev, &addr, 1);
}

static void finish(th_server *ts, struct state *s)
{
    TH_WAIT_COUNTER(&s->closed, th_counter_get(&s->opened));
    th_server_stop(ts);
    EXPECT_EQ_INT(th_counter_get(&s->closed), th_counter_get(&s->opened));
    EXPECT_EQ_INT(atomic_load(&s->bad), 0);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->echo_in);
    th_counter_destroy(&s->amp_out);
    th_counter_destroy(&s->wakes);
}

/* The light client: ROUNDTRIPS small requests, each answered before the
 * next is sent. Returns how many came back right. */
static int light_roundtrips(int fd)
{
    th_write_str(fd, "L");
    for (int i = 0; i < ROUNDTRIPS; i++) {
        char req[32], got[32];
        int n = snprintf(req, sizeof req, "ping %d\n", i);
        th_write_all(fd, req, (size_t)n);
        ssize_t k = th_read_exact(fd, got, (size_t)n);
        if (k != n || memcmp(req, got, (size_t)n) != 0) {
            th_fail_(__FILE__, __LINE__, false, "round trip %d: read gave %zd (%s)", i, k,
                     k < 0 ? strerror((int)-k) : "wrong bytes");
            return i;
        }
    }
    return ROUNDTRIPS;
}

/* ---- data floods ---- */

static unsigned char pat(uint64_t off)
{
    return (unsigned char)((off * 131) ^ (off >> 11));
}

struct flood {
    int fd;
    atomic_bool *stop;
    atomic_ullong sent; /* echo: bytes; amp: requests */
    atomic_bool writer_done;
    uint64_t received;
    th_counter answers; /* amp: answers read so far */
    char err[160];
    pthread_t wth, rth;
};

/* Echo flood, writer: blocks of BLOCK bytes until told to stop, then a FIN. */
static void *echo_writer(void *arg)
{
    struct flood *f = arg;
    static _Thread_local unsigned char buf[BLOCK];
    uint64_t off = 0;
    th_write_str(f->fd, "E");
    while (!atomic_load(f->stop)) {
        for (size_t i = 0; i < BLOCK; i++)
            buf[i] = pat(off + i);
        th_write_all(f->fd, buf, BLOCK);
        off += BLOCK;
        atomic_store(&f->sent, off);
    }
    atomic_store(&f->writer_done, true);
    shutdown(f->fd, SHUT_WR);
    return NULL;
}

/* Echo flood, reader: everything back, in order, then EOF. */
static void *echo_reader(void *arg)
{
    struct flood *f = arg;
    static _Thread_local unsigned char buf[BLOCK];
    for (;;) {
        ssize_t k = th_read_some(f->fd, buf, sizeof buf);
        if (k < 0) {
            snprintf(f->err, sizeof f->err, "echo read failed at %llu: %s",
                     (unsigned long long)f->received, strerror((int)-k));
            return NULL;
        }
        if (k == 0)
            break;
        for (ssize_t i = 0; i < k; i++) {
            if (buf[i] != pat(f->received + (uint64_t)i)) {
                snprintf(f->err, sizeof f->err, "echo differs at byte %llu",
                         (unsigned long long)(f->received + (uint64_t)i));
                return NULL;
            }
        }
        f->received += (uint64_t)k;
    }
    if (f->received != atomic_load(&f->sent))
        snprintf(f->err, sizeof f->err, "echo: %llu bytes back of %llu",
                 (unsigned long long)f->received, (unsigned long long)atomic_load(&f->sent));
    return NULL;
}

/* Amplified requests: 'a'..'y' in turn; the last one is 'z'. */
static char amp_req(uint64_t k)
{
    return (char)('a' + k % 25);
}

/* Requests go out in batches of 64, each batch once the answers are at most
 * AMP_WINDOW behind: that is 16 MB of answers in flight, far above the
 * server's high-water mark, but not the millions of requests the kernel
 * would otherwise take and that would all have to be answered at the end. */
#define AMP_WINDOW 64

static void *amp_writer(void *arg)
{
    struct flood *f = arg;
    char batch[64];
    uint64_t k = 0;
    th_write_str(f->fd, "A");
    while (!atomic_load(f->stop)) {
        if (k > AMP_WINDOW)
            TH_WAIT_COUNTER(&f->answers, (long)(k - AMP_WINDOW));
        for (size_t i = 0; i < sizeof batch; i++)
            batch[i] = amp_req(k + i);
        th_write_all(f->fd, batch, sizeof batch);
        k += sizeof batch;
        atomic_store(&f->sent, k);
    }
    th_write_str(f->fd, "z");
    atomic_store(&f->writer_done, true);
    return NULL;
}

static void *amp_reader(void *arg)
{
    struct flood *f = arg;
    static _Thread_local char buf[AMP];
    for (uint64_t k = 0;; k++) {
        ssize_t n = th_read_exact(f->fd, buf, AMP);
        if (n != (ssize_t)AMP) {
            snprintf(f->err, sizeof f->err, "amplified answer %llu: read gave %zd (%s)",
                     (unsigned long long)k, n, n < 0 ? strerror((int)-n) : "short");
            return NULL;
        }
        char want = buf[0] == 'z' ? 'z' : amp_req(k);
        for (size_t i = 0; i < AMP; i++) {
            if (buf[i] != want) {
                snprintf(f->err, sizeof f->err, "amplified answer %llu, byte %zu: '%c' not '%c'",
                         (unsigned long long)k, i, buf[i], want);
                return NULL;
            }
        }
        f->received = k + 1;
        th_counter_add(&f->answers, 1);
        if (want == 'z')
            break;
    }
    if (f->received != atomic_load(&f->sent) + 1)
        snprintf(f->err, sizeof f->err, "amplified: %llu answers for %llu requests",
                 (unsigned long long)f->received, (unsigned long long)atomic_load(&f->sent) + 1);
    return NULL;
}

static void flood_start(struct flood *f, th_server *ts, atomic_bool *stop, void *(*w)(void *),
                        void *(*r)(void *))
{
    memset(f, 0, sizeof *f);
    th_counter_init(&f->answers);
    f->fd = th_connect_srv(ts, 0);
    f->stop = stop;
    ASSERT_EQ_INT(pthread_create(&f->wth, NULL, w, f), 0);
    ASSERT_EQ_INT(pthread_create(&f->rth, NULL, r, f), 0);
}

static void flood_join(struct flood *f, const char *what)
{
    pthread_join(f->wth, NULL);
    pthread_join(f->rth, NULL);
    if (f->err[0])
        th_fail_(__FILE__, __LINE__, false, "%s: %s", what, f->err);
    close(f->fd);
    th_counter_destroy(&f->answers);
}

static void test_light_client_during_data_floods(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s);
    atomic_bool stop = false;
    struct flood echo, amp;
    flood_start(&echo, &ts, &stop, echo_writer, echo_reader);
    flood_start(&amp, &ts, &stop, amp_writer, amp_reader);
    /* A third floods requests and never reads: the server stops reading it
     * at its high-water mark, with our requests left in the kernel. */
    int mute = th_connect_srv(&ts, 0);
    {
        char reqs[4096];
        memset(reqs, 'q', sizeof reqs);
        reqs[0] = 'A';
        th_write_all(mute, reqs, sizeof reqs);
    }
    /* The floods are under way before the light client starts. */
    TH_WAIT_COUNTER(&s.echo_in, 4 * BLOCK);
    TH_WAIT_COUNTER(&s.amp_out, 8);
    long echo0 = th_counter_get(&s.echo_in), amp0 = th_counter_get(&s.amp_out);

    int fd = th_connect_srv(&ts, 0);
    int done = light_roundtrips(fd);
    long echo1 = th_counter_get(&s.echo_in), amp1 = th_counter_get(&s.amp_out);
    bool flooding = !atomic_load(&echo.writer_done) && !atomic_load(&amp.writer_done);
    atomic_store(&stop, true);
    fprintf(stderr,
            "  %d/%d round trips done while the floods went on: %ld KB echoed, %ld "
            "answers of 256 KB written meanwhile\n",
            done, ROUNDTRIPS, (echo1 - echo0) >> 10, amp1 - amp0);
    EXPECT_EQ_INT(done, ROUNDTRIPS);
    EXPECT_GE_INT(atomic_load(&s.light_in), ROUNDTRIPS);
    /* The floods were going on all along, and the server went on serving
     * them meanwhile. */
    EXPECT_TRUE(flooding);
    EXPECT_GT_INT((echo1 - echo0) + (amp1 - amp0), 0);
    close(fd);
    flood_join(&echo, "echo flood");
    flood_join(&amp, "amplified flood");
    EXPECT_GT_INT(echo.received, 0);
    EXPECT_GT_INT(amp.received, 0);
    close(mute);
    finish(&ts, &s);
}

/* ---- connect and wake storms ---- */

struct storm {
    th_server *ts;
    atomic_bool *stop;
    th_counter cycles;
    atomic_long syncs; /* light connections of its own, one per STORM_AHEAD */
    pthread_t th;
};

/*
 * A round trip on a new light connection. Accepting is in order, so once
 * it is answered every connection made before it has been accepted, or
 * reported gone: a connection reset while it waited is handed to accept
 * like any other on Linux, but Windows and Wine report it without a
 * socket, and it is never opened there. (The answer may come within the
 * loop's turn that accepted it, in which one found gone after it may still
 * be counted: a second round trip, accepted in a later turn, shows that
 * turn is over.)
 */
static void sync_roundtrip(th_server *ts)
{
    int fd = th_connect_srv(ts, 0);
    char got[4];
    th_write_str(fd, "Lsync");
    EXPECT_TRUE(th_read_exact(fd, got, 4) == 4 && memcmp(got, "sync", 4) == 0);
    close(fd);
}

/*
 * Connect and reset, as fast as the server accepts: at most STORM_AHEAD
 * connections wait in the backlog at any time (a round trip after each
 * STORM_AHEAD), so the backlog never overflows (then the kernel drops SYNs
 * and connect() stalls for a second, which would stop the storm rather
 * than load the server). A reset leaves no TIME_WAIT behind.
 */
#define STORM_AHEAD 256

static void *connect_storm(void *arg)
{
    struct storm *st = arg;
    for (long k = 1; !atomic_load(st->stop); k++) {
        int fd = th_connect_srv(st->ts, 0);
        th_close_rst(fd);
        th_counter_add(&st->cycles, 1);
        if (k % STORM_AHEAD == 0) {
            sync_roundtrip(st->ts);
            atomic_fetch_add(&st->syncs, 1);
        }
    }
    return NULL;
}

struct waker {
    th_server *ts;
    struct state *s;
    atomic_bool *stop;
    atomic_long sent;
    long bad;
    pthread_t th;
};

/*
 * Wakes in bursts of WAKE_BURST, each burst once the loop has handled a
 * wake since the last: the loop finds thousands waiting at every turn, but
 * the wakers do not take the CPU from everyone else (two cores only).
 */
#define WAKE_BURST 2000

static void *wake_storm(void *arg)
{
    struct waker *w = arg;
    int n = atomic_load(&w->s->nids);
    while (!atomic_load(w->stop)) {
        long seen = th_counter_get(&w->s->wakes);
        for (int k = 0; k < WAKE_BURST; k++) {
            for (int i = 0; i < n && i < 4; i++) {
                int rc = evn_wake(w->ts->srv, (evn_id)atomic_load(&w->s->ids[i]));
                if (rc != 0)
                    w->bad++;
            }
        }
        atomic_fetch_add(&w->sent, WAKE_BURST);
        TH_WAIT_COUNTER(&w->s->wakes, seen + 1);
    }
    return NULL;
}

static void test_light_client_during_connect_and_wake_storms(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s);
    atomic_bool stop = false;
    /* Busy connections for the wakers to hit: an echo flood. */
    struct flood echo;
    flood_start(&echo, &ts, &stop, echo_writer, echo_reader);
    TH_WAIT_COUNTER(&s.echo_in, BLOCK);
    enum { NSTORM = 1, NWAKERS = 2 };
    struct storm st[NSTORM];
    struct waker wk[NWAKERS];
    for (int i = 0; i < NSTORM; i++) {
        memset(&st[i], 0, sizeof st[i]);
        th_counter_init(&st[i].cycles);
        st[i].ts = &ts;
        st[i].stop = &stop;
        ASSERT_EQ_INT(pthread_create(&st[i].th, NULL, connect_storm, &st[i]), 0);
    }
    for (int i = 0; i < NWAKERS; i++) {
        memset(&wk[i], 0, sizeof wk[i]);
        wk[i].ts = &ts;
        wk[i].s = &s;
        wk[i].stop = &stop;
        ASSERT_EQ_INT(pthread_create(&wk[i].th, NULL, wake_storm, &wk[i]), 0);
    }
    /* Both storms are under way. */
    TH_WAIT_COUNTER(&st[0].cycles, 50);
    TH_WAIT_COUNTER(&s.wakes, 50);
    long cyc0 = th_counter_get(&st[0].cycles), wakes0 = th_counter_get(&s.wakes);
    long opened0 = th_counter_get(&s.opened), gone0 = (long)th_server_stats(&ts).accept_gone;

    int fd = th_connect_srv(&ts, 0);
    int done = light_roundtrips(fd);
    long cyc1 = th_counter_get(&st[0].cycles), wakes1 = th_counter_get(&s.wakes);
    long opened1 = th_counter_get(&s.opened), gone1 = (long)th_server_stats(&ts).accept_gone;
    atomic_store(&stop, true);
    /* A waker waiting for a wake event to be handled is let go (its last
     * burst may find the connections closed). */
    th_counter_add(&s.wakes, 1);
    for (int i = 0; i < NSTORM; i++)
        pthread_join(st[i].th, NULL);
    long bad_wake = 0;
    for (int i = 0; i < NWAKERS; i++) {
        pthread_join(wk[i].th, NULL);
        bad_wake += wk[i].bad;
    }
    fprintf(stderr,
            "  %d/%d round trips done meanwhile: %ld connects (%ld accepted, %ld gone at "
            "accept), %ld wake events\n",
            done, ROUNDTRIPS, cyc1 - cyc0, opened1 - opened0, gone1 - gone0, wakes1 - wakes0);
    EXPECT_EQ_INT(done, ROUNDTRIPS);
    /* The server went on accepting storm connections or handling wakes
     * meanwhile (the light client's own connection is one of the opened). */
    EXPECT_GT_INT((opened1 - opened0 - 1) + (gone1 - gone0) + (wakes1 - wakes0), 0);
    EXPECT_EQ_INT(bad_wake, 0);
    close(fd);
    flood_join(&echo, "echo flood");
    /* Every storm connection reached the server and was closed, but those
     * reported gone at accept. */
    sync_roundtrip(&ts);
    sync_roundtrip(&ts);
    long total = th_counter_get(&st[0].cycles) + atomic_load(&st[0].syncs) + 4;
    long gone = (long)th_server_stats(&ts).accept_gone;
    for (int i = 0; i < NSTORM; i++)
        th_counter_destroy(&st[i].cycles);
    TH_WAIT_COUNTER(&s.opened, total - gone);
    EXPECT_EQ_INT(th_counter_get(&s.opened), total - gone);
    finish(&ts, &s);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_light_client_during_data_floods);
    TH_RUN(test_light_client_during_connect_and_wake_storms);
    return th_finish();
}
