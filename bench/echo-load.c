/*
 * echo-load - a closed-loop load client for echo servers.
 *
 *   echo-load (--host ADDR --port N | --unix PATH) [--conns 50] [--depth 1]
 *             [--size 16] [--seconds 5] [--messages N]
 *
 * Each of the connections keeps `depth` messages of `size` bytes in flight:
 * a new message goes out for every one that comes back. Every echoed byte is
 * checked against what was sent; the content of message k on connection c is
 * derived from (c, k), so a lost, repeated, reordered or corrupted byte is
 * found. On a mismatch it prints where and exits 1.
 *
 * The run ends after --seconds, or once --messages messages in total have
 * come back (then no more than that are sent, so a run is repeatable), or at
 * whichever comes first when both are given. It prints, one per line:
 *   messages N        messages echoed back completely
 *   seconds T         time from the first send to the end
 *   msgs_per_sec X
 *   cpu_seconds C     this client's own CPU time (user + system)
 *   latency_p50_us L  round-trip time of a message, median
 *   latency_p99_us L  ... 99th percentile
 *   latency_max_us L  ... the longest
 *   latency_mean_us L ... the mean (with --conns C and --depth D in flight,
 *                     C * D / msgs_per_sec by Little's law, whatever the
 *                     spread of the times around it)
 * A message's round trip runs from the write that carries its first byte to
 * the read that brings back its last (both clocked once per call, with
 * CLOCK_MONOTONIC); with --depth above 1 it includes the wait behind the
 * messages ahead of it. The times are kept in a histogram of 128 buckets a
 * power of two, so a percentile is within 0.4% of the true value.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define IO_SIZE 65536
/* The latency histogram: values below LAT_SUB ns exactly, above that
 * LAT_SUB buckets for each power of two. */
#define LAT_SUB_BITS 7
#define LAT_SUB (1u << LAT_SUB_BITS)
#define LAT_BUCKETS ((64 - LAT_SUB_BITS + 1) * LAT_SUB)

struct conn {
    int fd;
    uint32_t index;
    /* Stream offsets: bytes written, bytes allowed to be written, bytes echoed back. */
    uint64_t sent;
    uint64_t limit;
    uint64_t received;
    int want_out;
    /* When message k went out, at stamp[k % depth]: no more than depth
     * messages of a connection are in flight. */
    uint64_t *stamp;
};

static size_t msg_size = 16;
static uint64_t depth = 1;
static uint64_t max_messages;
/* Messages handed out to connections so far (each counted once, when allowed). */
static uint64_t allotted;
static uint64_t completed;
static int epfd;
static unsigned char io[IO_SIZE];
static unsigned char expect[IO_SIZE];
static uint64_t lat_hist[LAT_BUCKETS];
static uint64_t lat_sum_ns, lat_n; /* for the mean */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned lat_bucket(uint64_t ns)
{
    if (ns < LAT_SUB)
        return (unsigned)ns;
    unsigned shift = (unsigned)(63 - __builtin_clzll(ns)) - LAT_SUB_BITS;
    return (shift + 1) * LAT_SUB + (unsigned)((ns >> shift) & (LAT_SUB - 1));
}

/* The middle of a bucket's range of nanoseconds. */
static double lat_value(unsigned b)
{
    if (b < LAT_SUB)
        return b;
    unsigned shift = b / LAT_SUB - 1;
    uint64_t low = (uint64_t)(LAT_SUB + b % LAT_SUB) << shift;
    return (double)low + (double)((1ull << shift) - 1) / 2;
}

/* The q-quantile (0 < q <= 1) of the recorded round trips, in microseconds. */
static double lat_quantile(double q)
{
    uint64_t total = 0, seen = 0;
    for (unsigned b = 0; b < LAT_BUCKETS; b++)
        total += lat_hist[b];
    if (!total)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if ((double)rank < q * (double)total)
        rank++;
    if (rank < 1)
        rank = 1;
    for (unsigned b = 0; b < LAT_BUCKETS; b++) {
        seen += lat_hist[b];
        if (seen >= rank)
            return lat_value(b) / 1e3;
    }
    return 0;
}

/*
 * The bytes at stream offsets [off, off+len) of connection c: message k is an
 * 8-byte value mixed from (c, k) and repeated, each byte offset by its
 * position so shifted data does not match either.
 */
static void fill(const struct conn *c, uint64_t off, unsigned char *out, size_t len)
{
    while (len) {
        uint64_t k = off / msg_size;
        size_t i = (size_t)(off % msg_size);
        uint64_t v = (k + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)c->index << 40);
        size_t n = msg_size - i < len ? msg_size - i : len;
        for (size_t j = 0; j < n; j++, i++)
            out[j] = (unsigned char)((v >> ((i & 7) * 8)) + (i >> 3));
        out += n;
        off += n;
        len -= n;
    }
}

/* Lets the connection have n more messages in flight, within --messages. */
static void allot(struct conn *c, uint64_t n)
{
    if (max_messages) {
        uint64_t left = max_messages - allotted;
        if (n > left)
            n = left;
    }
    allotted += n;
    c->limit += n * msg_size;
}

static void set_out(struct conn *c, int on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        perror("epoll_ctl");
        exit(1);
    }
    c->want_out = on;
}

static void flush(struct conn *c, uint64_t t)
{
    uint64_t first = c->sent;
    while (c->sent < c->limit) {
        size_t n = c->limit - c->sent < IO_SIZE ? (size_t)(c->limit - c->sent) : IO_SIZE;
        fill(c, c->sent, io, n);
        ssize_t w = write(c->fd, io, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            fprintf(stderr, "echo-load: conn %u: write: %s\n", c->index, strerror(errno));
            exit(1);
        }
        c->sent += (uint64_t)w;
        if ((size_t)w < n)
            break;
    }
    /* The messages whose first byte went out now. */
    for (uint64_t k = (first + msg_size - 1) / msg_size; k * msg_size < c->sent; k++)
        c->stamp[k % depth] = t;
    set_out(c, c->sent < c->limit);
}

static void on_readable(struct conn *c)
{
    ssize_t r = read(c->fd, io, sizeof io);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        fprintf(stderr, "echo-load: conn %u: read: %s\n", c->index, strerror(errno));
        exit(1);
    }
    if (r == 0) {
        fprintf(stderr, "echo-load: conn %u: closed by server after %llu bytes\n", c->index,
                (unsigned long long)c->received);
        exit(1);
    }
    if (c->received + (uint64_t)r > c->sent) {
        fprintf(stderr, "echo-load: conn %u: got %llu bytes, only %llu were sent\n", c->index,
                (unsigned long long)(c->received + (uint64_t)r), (unsigned long long)c->sent);
        exit(1);
    }
    fill(c, c->received, expect, (size_t)r);
    if (memcmp(io, expect, (size_t)r) != 0) {
        size_t i = 0;
        while (io[i] == expect[i])
            i++;
        uint64_t off = c->received + i;
        fprintf(stderr,
                "echo-load: conn %u: mismatch at stream offset %llu (message %llu, byte %llu): "
                "got 0x%02x, expected 0x%02x\n",
                c->index, (unsigned long long)off, (unsigned long long)(off / msg_size),
                (unsigned long long)(off % msg_size), io[i], expect[i]);
        exit(1);
    }
    uint64_t before = c->received / msg_size;
    c->received += (uint64_t)r;
    uint64_t done = c->received / msg_size - before;
    if (done) {
        uint64_t t = now_ns();
        for (uint64_t k = before; k < before + done; k++) {
            lat_hist[lat_bucket(t - c->stamp[k % depth])]++;
            lat_sum_ns += t - c->stamp[k % depth];
        }
        lat_n += done;
        completed += done;
        allot(c, done);
        flush(c, t);
    }
}

static int connect_to(const char *host, const char *port, const char *unix_path)
{
    int fd;
    if (unix_path) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(unix_path) >= sizeof sun.sun_path) {
            fprintf(stderr, "echo-load: unix path too long\n");
            exit(2);
        }
        strcpy(sun.sun_path, unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
            fprintf(stderr, "echo-load: connect %s: %s\n", unix_path, strerror(errno));
            exit(1);
        }
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
        int err = getaddrinfo(host, port, &hints, &ai);
        if (err) {
            fprintf(stderr, "echo-load: %s:%s: %s\n", host, port, gai_strerror(err));
            exit(1);
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            fprintf(stderr, "echo-load: connect %s:%s: %s\n", host, port, strerror(errno));
            exit(1);
        }
        freeaddrinfo(ai);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        perror("nonblock");
        exit(1);
    }
    return fd;
}

static void usage(void)
{
    fprintf(stderr, "usage: echo-load (--host ADDR --port N | --unix PATH) [--conns N] "
                    "[--depth D] [--size S] [--seconds T] [--messages N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = NULL, *unix_path = NULL;
    long nconns = 50;
    double seconds = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *opt = argv[i], *val = argv[++i];
        if (!strcmp(opt, "--host"))
            host = val;
        else if (!strcmp(opt, "--port"))
            port = val;
        else if (!strcmp(opt, "--unix"))
            unix_path = val;
        else if (!strcmp(opt, "--conns"))
            nconns = atol(val);
        else if (!strcmp(opt, "--depth"))
            depth = strtoull(val, NULL, 10);
        else if (!strcmp(opt, "--size"))
            msg_size = strtoull(val, NULL, 10);
        else if (!strcmp(opt, "--seconds"))
            seconds = atof(val);
        else if (!strcmp(opt, "--messages"))
            max_messages = strtoull(val, NULL, 10);
        else
            usage();
    }
    if ((!port && !unix_path) || nconns < 1 || depth < 1 || msg_size < 1)
        usage();
    if (seconds <= 0 && !max_messages)
        seconds = 5;
    signal(SIGPIPE, SIG_IGN);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("epoll_create1");
        return 1;
    }
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) {
        perror("calloc");
        return 1;
    }
    for (long i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->index = (uint32_t)i;
        c->stamp = calloc(depth, sizeof *c->stamp);
        if (!c->stamp) {
            perror("calloc");
            return 1;
        }
        c->fd = connect_to(host, port, unix_path);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            perror("epoll_ctl");
            return 1;
        }
    }

    double start = now(), deadline = seconds > 0 ? start + seconds : 0;
    for (long i = 0; i < nconns; i++) {
        allot(&conns[i], depth);
        flush(&conns[i], now_ns());
    }
    struct epoll_event events[256];
    for (;;) {
        if (max_messages && completed >= max_messages)
            break;
        int timeout = -1;
        if (deadline) {
            double left = deadline - now();
            if (left <= 0)
                break;
            timeout = (int)(left * 1000) + 1;
        }
        int n = epoll_wait(epfd, events, 256, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
            if (events[i].events & EPOLLOUT)
                flush(c, now_ns());
        }
    }
    double elapsed = now() - start;
    printf("messages %llu\n", (unsigned long long)completed);
    printf("seconds %.6f\n", elapsed);
    printf("msgs_per_sec %.1f\n", (double)completed / elapsed);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        printf("cpu_seconds %.6f\n", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    printf("latency_p50_us %.3f\n", lat_quantile(0.5));
    printf("latency_p99_us %.3f\n", lat_quantile(0.99));
    printf("latency_max_us %.3f\n", lat_quantile(1.0));
    printf("latency_mean_us %.3f\n", lat_n ? (double)lat_sum_ns / (double)lat_n / 1e3 : 0.0);
    for (long i = 0; i < nconns; i++) {
        close(conns[i].fd);
        free(conns[i].stamp);
    }
    free(conns);
    close(epfd);
    return 0;
}
