/*
 * floor-proto.h - what the two floor servers (floor.c on epoll, floor-uring.c
 * on io_uring) share: the byte buffer, the ping and HTTP request parsers
 * with their fixed answers, the listening sockets and the command line, so
 * that the two differ only in how they wait and do I/O.
 *
 * Included by one source file each; everything here is static.
 */
#ifndef EVN_BENCH_FLOOR_PROTO_H
#define EVN_BENCH_FLOOR_PROTO_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum mode { MODE_ECHO, MODE_PING, MODE_HTTP };

/* Bytes kept between wake-ups: unparsed input and unsent output. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* The program's name, for messages. */
static const char *prog;
static enum mode mode;

static const char hello[] = "Hello World!\r\n";
/* The fixed responses, built at start from --body. */
static struct buf http_response, http_response_close;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data)
        die("realloc");
    b->cap = cap;
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_consume(struct buf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

static void buf_free(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/*
 * The per-connection table both floors index by descriptor: grown (doubling,
 * the new entries zeroed) until fd fits. Returns the table, which may have
 * moved; *n is its length in entries of `size` bytes.
 */
static void *fd_table_grow(void *table, size_t *n, size_t size, int fd)
{
    if ((size_t)fd < *n)
        return table;
    size_t m = *n ? *n : 1024;
    while (m <= (size_t)fd)
        m *= 2;
    char *t = realloc(table, m * size);
    if (!t)
        die("realloc");
    memset(t + *n * size, 0, (m - *n) * size);
    *n = m;
    return t;
}

static void buf_printf(struct buf *b, const char *fmt, long v)
{
    char tmp[128];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    buf_append(b, tmp, (size_t)n);
}

/* The fixed answers: a body of `size` bytes of "Hello World!\r\n" repeated. */
static void make_http_responses(long size)
{
    for (int close = 0; close < 2; close++) {
        struct buf *b = close ? &http_response_close : &http_response;
        buf_printf(b, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n", size);
        if (close)
            buf_append(b, "Connection: close\r\n", 19);
        buf_append(b, "\r\n", 2);
        for (long i = 0; i < size; i++)
            buf_append(b, &hello[i % (sizeof hello - 1)], 1);
    }
}

static int ascii_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z')
            y += 'a' - 'A';
        if (x != y)
            return 0;
    }
    return 1;
}

static void ping_reply(struct buf *out, const char *arg, size_t arglen, int nargs, const char *cmd,
                       size_t cmdlen)
{
    char head[32];
    if (cmdlen == 4 && ascii_ieq(cmd, "ping", 4) && nargs == 1) {
        buf_append(out, "+PONG\r\n", 7);
    } else if (cmdlen == 4 && ascii_ieq(cmd, "ping", 4) && nargs == 2) {
        int n = snprintf(head, sizeof head, "$%zu\r\n", arglen);
        buf_append(out, head, (size_t)n);
        buf_append(out, arg, arglen);
        buf_append(out, "\r\n", 2);
    } else if (nargs > 0) {
        static const char err[] = "-ERR unknown command\r\n";
        buf_append(out, err, sizeof err - 1);
    }
}

/* Reads a "<c>123\r\n" line at p; returns its length, 0 if incomplete, -1 if bad. */
static long parse_count_line(const char *p, size_t n, char c, long *value)
{
    const char *nl = memchr(p, '\n', n);
    if (!nl)
        return n > 64 ? -1 : 0;
    if (p[0] != c || nl - p < 3 || nl[-1] != '\r')
        return -1;
    long v = 0;
    for (const char *q = p + 1; q < nl - 1; q++) {
        if (*q < '0' || *q > '9' || v > 512L * 1024 * 1024)
            return -1;
        v = v * 10 + (*q - '0');
    }
    *value = v;
    return nl - p + 1;
}

/*
 * One multibulk command at p: its length, 0 if incomplete, -1 if malformed.
 * Up to two arguments are remembered, enough to tell PING from the rest.
 */
static long parse_multibulk(struct buf *out, const char *p, size_t n)
{
    long nargs, used, len;
    const char *arg[2] = {NULL, NULL};
    size_t arglen[2] = {0, 0};
    long l = parse_count_line(p, n, '*', &nargs);
    if (l <= 0)
        return l;
    used = l;
    if (nargs > 1024 * 1024)
        return -1;
    for (long i = 0; i < nargs; i++) {
        if ((size_t)used >= n)
            return 0;
        l = parse_count_line(p + used, n - (size_t)used, '$', &len);
        if (l <= 0)
            return l;
        used += l;
        if ((size_t)(used + len + 2) > n)
            return 0;
        if (p[used + len] != '\r' || p[used + len + 1] != '\n')
            return -1;
        if (i < 2) {
            arg[i] = p + used;
            arglen[i] = (size_t)len;
        }
        used += len + 2;
    }
    ping_reply(out, arg[1], arglen[1], (int)nargs, arg[0], arglen[0]);
    return used;
}

/* One inline command (a line of space-separated words) at p, as above. */
static long parse_inline(struct buf *out, const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    if (!nl)
        return n > 64 * 1024 ? -1 : 0;
    const char *end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    const char *word[2] = {NULL, NULL};
    size_t wordlen[2] = {0, 0};
    int nwords = 0;
    for (const char *q = p; q < end;) {
        while (q < end && *q == ' ')
            q++;
        if (q == end)
            break;
        const char *w = q;
        while (q < end && *q != ' ')
            q++;
        if (nwords < 2) {
            word[nwords] = w;
            wordlen[nwords] = (size_t)(q - w);
        }
        nwords++;
    }
    ping_reply(out, word[1], wordlen[1], nwords, word[0], wordlen[0]);
    return nl - p + 1;
}

static long parse_ping(struct buf *out, const char *p, size_t n)
{
    return p[0] == '*' ? parse_multibulk(out, p, n) : parse_inline(out, p, n);
}

static const char *find_crlf(const char *p, const char *end)
{
    while (p + 1 < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p - 1));
        if (!cr)
            return NULL;
        if (cr[1] == '\n')
            return cr;
        p = cr + 1;
    }
    return NULL;
}

/*
 * One HTTP request at p: its length (head and body), 0 if incomplete, -1 if
 * malformed. Every header line is split into name and value so that
 * Content-Length and Connection are honoured.
 */
static long parse_http(struct buf *out, int *close_after, const char *p, size_t n)
{
    const char *end = p + n;
    const char *line_end = find_crlf(p, end);
    if (!line_end)
        return n > 8192 ? -1 : 0;
    const char *sp1 = memchr(p, ' ', (size_t)(line_end - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || line_end - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return -1;
    int keep_alive = sp2[8] == '1';
    long body = 0;
    const char *q = line_end + 2;
    for (;;) {
        line_end = find_crlf(q, end);
        if (!line_end)
            return n > 8192 ? -1 : 0;
        if (line_end == q)
            break;
        const char *colon = memchr(q, ':', (size_t)(line_end - q));
        if (!colon)
            return -1;
        size_t name_len = (size_t)(colon - q);
        const char *v = colon + 1;
        while (v < line_end && (*v == ' ' || *v == '\t'))
            v++;
        size_t vlen = (size_t)(line_end - v);
        if (name_len == 14 && ascii_ieq(q, "content-length", 14)) {
            body = 0;
            for (const char *d = v; d < line_end; d++) {
                if (*d < '0' || *d > '9' || body > 1L << 40)
                    return -1;
                body = body * 10 + (*d - '0');
            }
        } else if (name_len == 10 && ascii_ieq(q, "connection", 10)) {
            if (vlen == 5 && ascii_ieq(v, "close", 5))
                keep_alive = 0;
            else if (vlen == 10 && ascii_ieq(v, "keep-alive", 10))
                keep_alive = 1;
        }
        q = line_end + 2;
    }
    long head = line_end + 2 - p;
    if ((size_t)(head + body) > n)
        return 0;
    if (sp1 - p == 4 && memcmp(p, "POST", 4) == 0 && sp2 - sp1 == 6 &&
        memcmp(sp1 + 1, "/echo", 5) == 0) {
        buf_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n", body);
        if (!keep_alive)
            buf_append(out, "Connection: close\r\n", 19);
        buf_append(out, "\r\n", 2);
        buf_append(out, p + head, (size_t)body);
    } else if (keep_alive) {
        buf_append(out, http_response.data, http_response.len);
    } else {
        buf_append(out, http_response_close.data, http_response_close.len);
    }
    if (!keep_alive)
        *close_after = 1;
    return head + body;
}

/*
 * Answers every complete request in p[0..n), appending the responses to out,
 * and returns the bytes used, or -1 if the input is malformed. *close_after
 * is set once a response that must close the connection has been added;
 * nothing after that request is answered.
 */
static long parse_requests(struct buf *out, int *close_after, const char *p, size_t n)
{
    size_t used = 0;
    while (used < n && !*close_after) {
        long l = mode == MODE_PING ? parse_ping(out, p + used, n - used)
                                   : parse_http(out, close_after, p + used, n - used);
        if (l < 0)
            return -1;
        if (l == 0)
            break;
        used += (size_t)l;
    }
    return (long)used;
}

/* host is a numeric IPv4 or IPv6 address; "::" also takes IPv4 (dual stack). */
static int listen_tcp(const char *host, int port, int *bound_port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        len = sizeof *sin;
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        len = sizeof *sin6;
    } else {
        fprintf(stderr, "%s: bad address %s\n", prog, host);
        exit(2);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        die("bind");
    if (listen(fd, 4096) < 0)
        die("listen");
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        die("getsockname");
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? sin6->sin6_port : sin->sin_port);
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        fprintf(stderr, "%s: unix path too long\n", prog);
        exit(2);
    }
    strcpy(sun.sun_path, path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0)
        die("bind");
    if (listen(fd, 4096) < 0)
        die("listen");
    return fd;
}

struct floor_opts {
    const char *host;
    const char *unix_path;
    int port;
    long body_size;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: %s --mode echo|ping|http [--host ADDR] [--port N] [--unix PATH] "
            "[--body N]\n",
            prog);
    exit(2);
}

/* Reads the command line into o and mode, and builds the HTTP answers. */
static void floor_args(int argc, char **argv, struct floor_opts *o)
{
    const char *mode_name = "echo";
    o->host = "127.0.0.1";
    o->unix_path = NULL;
    o->port = 0;
    o->body_size = sizeof hello - 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--mode"))
            mode_name = argv[++i];
        else if (!strcmp(argv[i], "--host"))
            o->host = argv[++i];
        else if (!strcmp(argv[i], "--port"))
            o->port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--unix"))
            o->unix_path = argv[++i];
        else if (!strcmp(argv[i], "--body"))
            o->body_size = atol(argv[++i]);
        else
            usage();
    }
    if (!strcmp(mode_name, "echo"))
        mode = MODE_ECHO;
    else if (!strcmp(mode_name, "ping"))
        mode = MODE_PING;
    else if (!strcmp(mode_name, "http"))
        mode = MODE_HTTP;
    else
        usage();
    if (o->body_size < 0 || o->body_size > 64L * 1024 * 1024)
        usage();
    make_http_responses(o->body_size);
}

/* Raises the fd limit for idle-connection memory runs. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * Opens the listening socket o asks for, prints "port N" (the port in use)
 * or "unix PATH" on stdout, and returns it; *is_tcp tells which.
 */
static int floor_listen(const struct floor_opts *o, int *is_tcp)
{
    int lfd;
    *is_tcp = o->unix_path == NULL;
    if (o->unix_path) {
        lfd = listen_unix(o->unix_path);
        printf("unix %s\n", o->unix_path);
    } else {
        int bound;
        lfd = listen_tcp(o->host, o->port, &bound);
        printf("port %d\n", bound);
    }
    fflush(stdout);
    return lfd;
}

#endif
