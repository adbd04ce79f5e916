/*
 * Resources running out, and coming back:
 *
 * - 20000 connect/close cycles (closed by the client, reset by the client,
 *   closed by the server, reset before a byte was sent) on two loops: at
 *   the end every connection has been opened and closed, or else was
 *   reported gone at accept (reset while it waited: Linux hands such a
 *   connection to accept like any other, Windows and Wine report it without
 *   a socket, and no event is due for it), this process has exactly the
 *   fds it had before the cycles, and its resident memory is within 8 MB of
 *   where it was (memory, not time: ASan builds check for leaks instead,
 *   their quarantine keeps freed memory resident);
 * - out of fds (test-errors holds the loop while the table fills; here the
 *   server runs into RLIMIT_NOFILE by itself, with clients waiting in its
 *   backlog): the connections it has keep being served; while it can
 *   accept nothing it does not spin (accept calls, counted by wrapping
 *   accept4, and CPU time over an idle stretch); the waiting clients are not
 *   dropped; once fds are freed it accepts and serves them.
 */
#include "harness.h"
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#ifndef _WIN32
#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/time.h>
#endif

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

/* Windows has no fd limit to run into (RLIMIT_NOFILE) and no RTLD_NEXT:
 * there only the connect/close cycles run. */
#ifndef _WIN32
/* ---- counting the server's accept calls ---- */

/*
 * The library is linked statically into this executable, so these
 * definitions are the accept4/accept it calls; the real ones (or a
 * sanitizer's wrappers) are found with RTLD_NEXT before any thread starts.
 */
typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef int (*accept_fn)(int, struct sockaddr *, socklen_t *);
static accept4_fn real_accept4;
static accept_fn real_accept;
static atomic_long n_accepts, n_emfile;
static th_counter emfile_seen = TH_COUNTER_INIT;

static int count_accept(int rc, int e)
{
    atomic_fetch_add(&n_accepts, 1);
    if (rc < 0 && (e == EMFILE || e == ENFILE)) {
        atomic_fetch_add(&n_emfile, 1);
        th_counter_add(&emfile_seen, 1);
    }
    errno = e;
    return rc;
}

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    int rc = real_accept4(fd, sa, len, flags);
    return count_accept(rc, errno);
}

int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    int rc = real_accept(fd, sa, len);
    return count_accept(rc, errno);
}

#endif

/* ---- helpers ---- */

/* 0 where it cannot be read (Windows): the cycles then check fds only. */
static size_t rss_bytes(void)
{
#ifdef _WIN32
    return 0;
#endif
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    unsigned long size = 0, res = 0;
    int n = fscanf(f, "%lu %lu", &size, &res);
    fclose(f);
    return n == 2 ? (size_t)res * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

#ifndef _WIN32
static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}
#endif

struct state {
    th_counter opened, closed;
    atomic_int bad;
};

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

/* Echo; a 'q' anywhere makes the server close the connection. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (in == NULL)
        return EVN_NONE;
    if (memchr(in, 'q', len))
        return EVN_CLOSE;
    if (evn_write(c, in, len) != 0)
        atomic_fetch_add(&S(c)->bad, 1);
    return EVN_NONE;
}

static void start(th_server *ts, struct state *s, int nloops)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    evn_events ev = {0};
    ev.nloops = nloops;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.udata = s;
    ev.opened = on_opened;
    ev.closed = on_closed;
    ev.data = on_data;
    const char *addr = "tcp://127.0.0.1:0";
    th_server_start(ts, &ev, &addr, 1);
}

/* Stop once all have closed; expect `opened` connections in all. */
static void stop(th_server *ts, struct state *s, long opened)
{
    TH_WAIT_COUNTER(&s->closed, th_counter_get(&s->opened));
    th_server_stop(ts);
    EXPECT_EQ_INT(th_counter_get(&s->opened), opened);
    EXPECT_EQ_INT(th_counter_get(&s->closed), th_counter_get(&s->opened));
    EXPECT_EQ_INT(atomic_load(&s->bad), 0);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
}

static bool roundtrip(int fd, const char *msg)
{
    size_t n = strlen(msg);
    char buf[64];
    th_write_all(fd, msg, n);
    return th_read_exact(fd, buf, n) == (ssize_t)n && memcmp(buf, msg, n) == 0;
}

/* ---- connect/close cycles ---- */

/*
 * Round trips on two new connections, one after the other. Accepting is in
 * order, so once the first is served every connection made before it has
 * been accepted or reported gone; but it may be served by the other loop
 * before the accepting one is done with the turn that took it, in which a
 * gone one may still be counted. The second is accepted in a later turn.
 * Returns the number of connections made (and opened).
 */
static long settle(th_server *ts)
{
    for (int i = 0; i < 2; i++) {
        int fd = th_connect_srv(ts, 0);
        EXPECT_TRUE(roundtrip(fd, "sync"));
        close(fd);
    }
    return 2;
}

/* One cycle, in one of four ways. Returns false if the server misbehaved. */
static bool cycle(th_server *ts, long i)
{
    int fd = th_connect_srv(ts, 0);
    bool ok = true;
    switch (i % 4) {
    case 0: /* round trip, close */
        ok = roundtrip(fd, "ping");
        close(fd);
        break;
    case 1: /* round trip, reset */
        ok = roundtrip(fd, "ping");
        th_close_rst(fd);
        break;
    case 2: /* the server closes first */
        th_write_str(fd, "q");
        ok = th_wait_eof(fd) == 0;
        close(fd);
        break;
    default: /* gone before saying anything */
        th_close_rst(fd);
        break;
    }
    return ok;
}

static void test_connect_close_cycles(void)
{
    struct state s;
    th_server ts;
    start(&ts, &s, 2);
    const long warm = 500, n = th_quick() ? 4000 : 20000;
    long bad = 0;
    /* Warm up: the loops' tables, pools and the allocator reach their
     * working size. */
    for (long i = 0; i < warm; i++)
        bad += !cycle(&ts, i);
    long synced = settle(&ts);
    TH_WAIT_COUNTER(&s.closed, warm + synced - (long)th_server_stats(&ts).accept_gone);
    /* One probe per loop (round-robin puts consecutive ones on both): closed
     * fires just before the server's close(), so a round trip on each loop
     * afterwards is what shows every close has happened. */
    int probe[2];
    for (int i = 0; i < 2; i++) {
        probe[i] = th_connect_srv(&ts, 0);
        EXPECT_TRUE(roundtrip(probe[i], "probe"));
    }
    int fds0 = th_fd_count();
    size_t rss0 = rss_bytes();
    for (long i = 0; i < n; i++) {
        if (!cycle(&ts, i)) {
            if (++bad == 1)
                th_fail_(__FILE__, __LINE__, false, "cycle %ld went wrong", i);
        }
    }
    synced += settle(&ts);
    long gone = (long)th_server_stats(&ts).accept_gone;
    long total = warm + synced + 2 + n - gone;
    TH_WAIT_COUNTER(&s.opened, total);
    TH_WAIT_COUNTER(&s.closed, total - 2);
    for (int i = 0; i < 2; i++)
        EXPECT_TRUE(roundtrip(probe[i], "probe"));
    int fds1 = th_fd_count();
    size_t rss1 = rss_bytes();
    bool rss_known = !SANITIZED && rss0 && rss1;
    fprintf(stderr,
            "  %ld cycles, %ld connections gone at accept: fds %d -> %d, RSS %zu KB -> %zu KB%s\n",
            n, gone, fds0, fds1, rss0 >> 10, rss1 >> 10,
            rss_known   ? ""
            : SANITIZED ? " (a sanitizer build: RSS not checked)"
                        : " (this system does not tell RSS: not checked)");
    EXPECT_EQ_INT(bad, 0);
#ifdef __linux__
    /* Linux hands a connection reset in the backlog to accept (evn.h). */
    EXPECT_EQ_INT(gone, 0);
#endif
    EXPECT_EQ_INT(fds1, fds0);
    if (rss_known)
        EXPECT_LE_SIZE(rss1, rss0 + (8u << 20));
    close(probe[0]);
    close(probe[1]);
    stop(&ts, &s, total);
}

/* ---- out of fds ---- */

#ifdef _WIN32
static void test_emfile_one_loop(void)
{
    th_skip("Windows has no limit on a process's sockets to run into (RLIMIT_NOFILE)");
}

static void test_emfile_two_loops(void)
{
    th_skip("Windows has no limit on a process's sockets to run into (RLIMIT_NOFILE)");
}
#else

/* The limit that leaves exactly n fd numbers free below it. */
static rlim_t limit_leaving(int n)
{
    int fd = 0;
    for (int free_seen = 0;; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && ++free_seen == n)
            break;
    }
    return (rlim_t)fd + 1;
}

/* Read whatever echoes have arrived on the waiting clients; returns how
 * many have now had their whole echo. */
static int collect_echoes(int *fds, int n, int *got, const char *const *msgs)
{
    struct pollfd pfd[64];
    int done = 0;
    for (int i = 0; i < n; i++)
        pfd[i] = (struct pollfd){.fd = got[i] < 0 ? -1 : fds[i], .events = POLLIN};
    for (int i = 0; i < n; i++)
        done += got[i] < 0;
    if (poll(pfd, (nfds_t)n, th_io_timeout_ms()) <= 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (got[i] < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        char buf[64];
        size_t len = strlen(msgs[i]);
        ssize_t k = recv(fds[i], buf, len - (size_t)got[i], MSG_DONTWAIT);
        if (k <= 0) {
            th_fail_(__FILE__, __LINE__, false,
                     "waiting client %d was dropped (%s) instead of served", i,
                     k < 0 ? strerror(errno) : "EOF");
            got[i] = -2;
            continue;
        }
        if (memcmp(buf, msgs[i] + got[i], (size_t)k) != 0)
            th_fail_(__FILE__, __LINE__, false, "waiting client %d got a wrong echo", i);
        got[i] += (int)k;
        if ((size_t)got[i] == len) {
            got[i] = -1;
            done++;
        }
    }
    return done;
}

static void emfile(int nloops)
{
    enum { F = 8, W = 2 * F };
    struct state s;
    th_server ts;
    start(&ts, &s, nloops);
    /* The wrapper sees the server's accepts, or this test proves nothing.
     * (This client stays: were it closed, the server's fd might still be
     * open when the limit is computed, closed returning before the close.) */
    long a0 = atomic_load(&n_accepts);
    int warm = th_connect_srv(&ts, 0);
    EXPECT_TRUE(roundtrip(warm, "warm"));
    /* io_uring accepts with no accept(2) call to see: its failures are
     * counted by the server (evn_stats.accept_failed), and it cannot spin,
     * since a failed accept is not asked for again until a descriptor
     * frees or a retry is due. */
    bool uring = strcmp(evn_server_backend(ts.srv), "io_uring") == 0;
    if (!uring)
        ASSERT_GT_INT(atomic_load(&n_accepts), a0);

    socklen_t alen = 0;
    const struct sockaddr *sa = evn_server_addr(ts.srv, 0, &alen);
    struct sockaddr_storage ss;
    memcpy(&ss, sa, alen);
    /* Every client socket exists before the limit comes down. */
    int served[F], waiting[W];
    for (int i = 0; i < F; i++)
        ASSERT_GE_INT(served[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);
    for (int i = 0; i < W; i++)
        ASSERT_GE_INT(waiting[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);

    struct rlimit old, low;
    ASSERT_EQ_INT(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = limit_leaving(F);
    ASSERT_EQ_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
    long emfile0 = th_counter_get(&emfile_seen);

    /* F clients take the server's last F fds. */
    for (int i = 0; i < F; i++) {
        ASSERT_EQ_INT(connect(served[i], (struct sockaddr *)&ss, alen), 0);
        char msg[16];
        snprintf(msg, sizeof msg, "s%d", i);
        EXPECT_TRUE(roundtrip(served[i], msg));
    }
    /* W more get through the handshake into the backlog, their requests
     * queued; the server's accept fails. */
    char wmsg[W][16];
    const char *wmsgs[W];
    for (int i = 0; i < W; i++) {
        ASSERT_EQ_INT(connect(waiting[i], (struct sockaddr *)&ss, alen), 0);
        snprintf(wmsg[i], sizeof wmsg[i], "w%d", i);
        wmsgs[i] = wmsg[i];
        th_write_str(waiting[i], wmsg[i]);
    }
    if (!uring)
        TH_WAIT_COUNTER(&emfile_seen, emfile0 + 1);
    /* Until the server has counted a failed accept (evn_stats.accept_failed;
     * bounded, and no sleep stands in for the event). */
    for (int i = 0; i < th_io_timeout_ms() && th_server_stats(&ts).accept_failed == 0; i++)
        usleep(1000);
    EXPECT_GT_INT((long)th_server_stats(&ts).accept_failed, 0);

    /* The connections it has are still served. */
    for (int i = 0; i < F; i++)
        EXPECT_TRUE(roundtrip(served[i], "still"));

    /* An idle stretch with the backlog full of connections it cannot take:
     * the server must not spin. A poll that nothing answers marks it out. */
    long acc0 = atomic_load(&n_accepts);
    int64_t cpu0 = cpu_us(), t0 = now_us();
    struct pollfd idle = {.fd = served[0], .events = POLLIN};
    EXPECT_EQ_INT(poll(&idle, 1, 400), 0);
    int64_t cpu1 = cpu_us(), t1 = now_us();
    long acc1 = atomic_load(&n_accepts);
    int64_t wall = t1 - t0, cpu = cpu1 - cpu0;
    fprintf(stderr,
            "  out of fds: %ld failed accepts so far; idle for %lld ms: %ld accept calls, "
            "%lld ms of CPU\n",
            atomic_load(&n_emfile), (long long)(wall / 1000), acc1 - acc0, (long long)(cpu / 1000));
    /* Generous: a spinning loop makes hundreds of thousands of calls and
     * burns a whole core. */
    if (uring)
        EXPECT_LE_INT((long)th_server_stats(&ts).accept_failed, 10 + wall / 1000);
    else
        EXPECT_LE_INT(acc1 - acc0, 10 + wall / 1000);
    EXPECT_LT_INT(cpu, wall / 2);
    /* Nobody was dropped: no waiting client has data or EOF. */
    int wgot[W];
    for (int i = 0; i < W; i++) {
        struct pollfd p = {.fd = waiting[i], .events = POLLIN};
        EXPECT_EQ_INT(poll(&p, 1, 0), 0);
        wgot[i] = 0;
    }
    EXPECT_EQ_INT(th_counter_get(&s.opened), 1 + F);

    /* Free half the served clients' fds (theirs and the server's): the
     * server takes waiting clients in and serves them. */
    for (int i = 0; i < F / 2; i++)
        close(served[i]);
    int done = 0;
    while (done >= 0 && done < F / 2)
        done = collect_echoes(waiting, W, wgot, wmsgs);
    EXPECT_GE_INT(done, F / 2);

    /* With the limit back, every one of them is served. */
    ASSERT_EQ_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
    while (done >= 0 && done < W)
        done = collect_echoes(waiting, W, wgot, wmsgs);
    EXPECT_EQ_INT(done, W);
    for (int i = F / 2; i < F; i++)
        EXPECT_TRUE(roundtrip(served[i], "end"));
    for (int i = F / 2; i < F; i++)
        close(served[i]);
    for (int i = 0; i < W; i++)
        close(waiting[i]);
    EXPECT_TRUE(roundtrip(warm, "end"));
    close(warm);
    TH_WAIT_COUNTER(&s.opened, 1 + F + W);
    stop(&ts, &s, 1 + F + W);
}

static void test_emfile_one_loop(void)
{
    emfile(1);
}

/* Loop 0 accepts, loop 1 gets half the connections: a close on loop 1
 * frees an fd that loop 0 must notice by itself. */
static void test_emfile_two_loops(void)
{
    emfile(2);
}
#endif

int main(int argc, char **argv)
{
#ifndef _WIN32
    real_accept4 = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
    real_accept = (accept_fn)dlsym(RTLD_NEXT, "accept");
    if (!real_accept4 || !real_accept) {
        fprintf(stderr, "cannot find accept4/accept: %s\n", dlerror());
        return 1;
    }
#endif
    th_init(argc, argv);
    TH_RUN(test_connect_close_cycles);
    TH_RUN(test_emfile_one_loop);
    TH_RUN(test_emfile_two_loops);
    return th_finish();
}
