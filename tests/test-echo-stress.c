/*
 * evio's acceptance test in C: an echo server, and 10 clients that each
 * stream random-sized writes (0 to 1 MB) of random data for a random 1-3
 * seconds while reading the echo at the same time, checking every byte.
 * Run for nloops 1, 5 and -1, every balance mode, over TCP and over a unix
 * socket. EVN_TEST_QUICK=1 shortens each client's run to 0.2-0.5 s.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NCLIENTS 10
#define MAX_WRITE (1u << 20)
#define RBUF (256u << 10)

struct server_state {
    th_counter closed;
    atomic_int bad_close;
    atomic_long bytes;
};

static evn_action echo_data(evn_conn *c, const char *in, size_t len)
{
    struct server_state *s = evn_server_udata(evn_conn_server(c));
    if (len > 0 && evn_write(c, in, len) != 0)
        atomic_fetch_add(&s->bad_close, 1);
    atomic_fetch_add(&s->bytes, (long)len);
    return EVN_NONE;
}

static evn_action echo_closed(evn_conn *c, int err)
{
    struct server_state *s = evn_server_udata(evn_conn_server(c));
    if (err != 0) {
        fprintf(stderr, "  server: connection closed with %d (%s)\n", err, evn_strerror(err));
        atomic_fetch_add(&s->bad_close, 1);
    }
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

/* The stream a client sends: byte p is a pure function of (seed, p), so the
 * reader can check any stretch without keeping what was written. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint64_t p = off + i;
        uint64_t w = mix(seed + (p >> 3) * 0x9e3779b97f4a7c15ull);
        for (unsigned k = (unsigned)(p & 7); k < 8 && i < n; k++)
            buf[i++] = (unsigned char)(w >> (8 * k));
    }
}

struct client {
    const th_server *ts;
    uint64_t seed;
    int64_t duration_ms;
    uint64_t sent, received, writes;
    char err[200];
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Check a stretch of echoed bytes against the stream. */
static bool verify(struct client *cl, const unsigned char *got, size_t n, unsigned char *want)
{
    fill(cl->seed, cl->received, want, n);
    if (memcmp(got, want, n) == 0)
        return true;
    size_t i = 0;
    while (got[i] == want[i])
        i++;
    snprintf(cl->err, sizeof cl->err, "byte %llu of the echo is 0x%02x, sent 0x%02x",
             (unsigned long long)(cl->received + i), got[i], want[i]);
    return false;
}

/* One poll loop both writes and reads, so neither side can block the other. */
static void *client_main(void *arg)
{
    struct client *cl = arg;
    th_rng rng;
    th_rng_init(&rng, cl->seed ^ 0x5555);
    unsigned char *wbuf = malloc(MAX_WRITE), *rbuf = malloc(RBUF), *want = malloc(RBUF);
    if (!wbuf || !rbuf || !want) {
        snprintf(cl->err, sizeof cl->err, "out of memory");
        goto out;
    }
    int fd = th_connect_srv(cl->ts, 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int64_t deadline = now_ms() + cl->duration_ms;
    size_t wlen = 0, woff = 0;
    bool writing = true;
    for (;;) {
        if (writing && woff == wlen) {
            if (now_ms() >= deadline) {
                writing = false;
            } else {
                wlen = (size_t)th_rng_range(&rng, 0, MAX_WRITE);
                woff = 0;
                fill(cl->seed, cl->sent, wbuf, wlen);
                cl->writes++;
                if (wlen == 0)
                    continue;
            }
        }
        if (!writing && cl->received == cl->sent)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (woff < wlen)
            pfd.events |= POLLOUT;
        int rc = poll(&pfd, 1, th_io_timeout_ms());
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0) {
            snprintf(cl->err, sizeof cl->err, "%s after %llu of %llu bytes echoed",
                     rc == 0 ? "no progress" : strerror(errno), (unsigned long long)cl->received,
                     (unsigned long long)cl->sent);
            break;
        }
        if (pfd.revents & POLLIN || pfd.revents & (POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, rbuf, RBUF, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                snprintf(cl->err, sizeof cl->err, "%s after %llu of %llu bytes echoed",
                         n == 0 ? "EOF" : strerror(errno), (unsigned long long)cl->received,
                         (unsigned long long)cl->sent);
                break;
            }
            if (n > 0) {
                if (cl->received + (uint64_t)n > cl->sent) {
                    snprintf(cl->err, sizeof cl->err, "echo has more bytes than were sent");
                    break;
                }
                if (!verify(cl, rbuf, (size_t)n, want))
                    break;
                cl->received += (uint64_t)n;
            }
        }
        if (woff < wlen && (pfd.revents & POLLOUT)) {
            ssize_t n = send(fd, wbuf + woff, wlen - woff, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                snprintf(cl->err, sizeof cl->err, "send: %s", strerror(errno));
                break;
            }
            if (n > 0) {
                woff += (size_t)n;
                cl->sent += (uint64_t)n;
            }
        }
    }
    close(fd);
out:
    free(wbuf);
    free(rbuf);
    free(want);
    return NULL;
}

static void run_config(const char *addr, int nloops, evn_balance balance, th_rng *rng)
{
    static const char *bnames[] = {"random", "round-robin", "least-connections"};
    struct server_state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.closed);
    evn_events ev = {0};
    ev.nloops = nloops;
    ev.balance = balance;
    ev.udata = &s;
    ev.data = echo_data;
    ev.closed = echo_closed;
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int want_loops = nloops;
    if (nloops == -1) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        want_loops = cpus > 0 ? (int)cpus : 1;
    }
    EXPECT_EQ_INT(evn_server_nloops(ts.srv), want_loops);

    struct client cl[NCLIENTS];
    pthread_t th[NCLIENTS];
    int64_t lo = th_quick() ? 200 : 1000, hi = th_quick() ? 500 : 3000;
    int64_t start = now_ms();
    for (int i = 0; i < NCLIENTS; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].ts = &ts;
        cl[i].seed = th_rng_next(rng);
        cl[i].duration_ms = (int64_t)th_rng_range(rng, (uint64_t)lo, (uint64_t)hi);
        ASSERT_EQ_INT(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    }
    uint64_t total = 0, writes = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        pthread_join(th[i], NULL);
        if (cl[i].err[0])
            th_fail_(__FILE__, __LINE__, false, "%s nloops=%d %s client %d: %s", addr, nloops,
                     bnames[balance], i, cl[i].err);
        EXPECT_EQ_SIZE(cl[i].received, cl[i].sent);
        EXPECT_GT_INT(cl[i].writes, 0);
        total += cl[i].received;
        writes += cl[i].writes;
    }
    TH_WAIT_COUNTER(&s.closed, NCLIENTS);
    th_server_stop(&ts);
    EXPECT_EQ_INT(atomic_load(&s.bad_close), 0);
    EXPECT_EQ_INT(th_counter_get(&s.closed), NCLIENTS);
    EXPECT_EQ_INT(atomic_load(&s.bytes), (long)total);
    fprintf(stderr, "  %-8s nloops=%-2d %-17s %6.1f MB echoed in %llu writes, %.1f s\n",
            strncmp(addr, "unix", 4) == 0 ? "unix" : "tcp", nloops, bnames[balance],
            (double)total / 1e6, (unsigned long long)writes, (double)(now_ms() - start) / 1e3);
    th_counter_destroy(&s.closed);
}

static void run_all(const char *addr)
{
    th_rng rng;
    th_rng_init(&rng, th_seed() ^ (uint64_t)addr[0]);
    static const int nloops[] = {1, 5, -1};
    for (size_t i = 0; i < 3; i++) {
        for (int b = EVN_BALANCE_RANDOM; b <= EVN_BALANCE_LEAST_CONNECTIONS; b++) {
            /* With one loop there is nothing to balance. */
            if (nloops[i] == 1 && b != EVN_BALANCE_RANDOM)
                continue;
            run_config(addr, nloops[i], (evn_balance)b, &rng);
        }
    }
}

static void test_echo_tcp(void)
{
    run_all("tcp://127.0.0.1:0");
}

static void test_echo_unix(void)
{
    TH_NEED_UNIX_SOCKETS();
    char path[128], url[160];
    th_tmppath(path, sizeof path, "stress.sock");
    snprintf(url, sizeof url, "unix://%s", path);
    run_all(url);
    EXPECT_FALSE(th_path_exists(path));
}

/* Hundreds of connections open at once: the loops' fd tables grow, and every
 * connection is served and closed. */
static void test_many_connections(void)
{
    enum { N = 400 };
    struct server_state s;
    memset(&s, 0, sizeof s);
    th_counter_init(&s.closed);
    evn_events ev = {0};
    ev.nloops = 2;
    ev.balance = EVN_BALANCE_ROUND_ROBIN;
    ev.udata = &s;
    ev.data = echo_data;
    ev.closed = echo_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    static int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = th_connect_srv(&ts, 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            char msg[32];
            snprintf(msg, sizeof msg, "conn %d round %d;", i, round);
            th_write_str(fds[i], msg);
        }
        for (int i = 0; i < N; i++) {
            char msg[32];
            snprintf(msg, sizeof msg, "conn %d round %d;", i, round);
            EXPECT_READ_STR(fds[i], msg);
        }
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s.closed, N);
    th_server_stop(&ts);
    EXPECT_EQ_INT(atomic_load(&s.bad_close), 0);
    th_counter_destroy(&s.closed);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_many_connections);
    TH_RUN(test_echo_tcp);
    TH_RUN(test_echo_unix);
    return th_finish();
}
