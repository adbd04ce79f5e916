/*
 * floor - the least a user-space server can do, as a yardstick for evn.
 *
 * One thread, level-triggered epoll, one read and one write per wake-up, no
 * framework. Its CPU time per request is the floor that evn's own figure is
 * divided by (see BENCHMARKING.md).
 *
 *   floor --mode echo|ping|http [--host ADDR] [--port N] [--unix PATH] [--body N]
 *
 * ADDR is a numeric IPv4 or IPv6 address (default 127.0.0.1); "::" listens
 * on every interface for IPv6 and IPv4, as evn's examples do.
 *
 * echo  sends every byte back.
 * ping  answers each Redis PING, inline ("PING\r\n") or multibulk
 *       ("*1\r\n$4\r\nPING\r\n"), with "+PONG\r\n"; PING with an argument
 *       gets the argument back as a bulk string, anything else an error.
 * http  finds the end of each request (request line and headers up to the
 *       blank line, then Content-Length bytes of body) and answers each with
 *       a fixed 200 "Hello World!" response (--body N: N bytes of that text
 *       repeated instead), except POST /echo, which gets its body back, as
 *       evn's http example answers it; "Connection: close" (or HTTP/1.0
 *       without keep-alive) closes after the response.
 *
 * Pipelined requests are answered together with one write, and a request
 * split across reads is kept and completed by the next read. --port 0 picks
 * a free port; the port in use is printed as "port N" on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

enum mode { MODE_ECHO, MODE_PING, MODE_HTTP };

/* Bytes kept between wake-ups: unparsed input and unsent output. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

struct conn {
    int fd;
    int open;
    /* Set once a response that must close the connection has been queued. */
    int close_after;
    struct buf in;
    struct buf out;
};

#define READ_SIZE 65536
#define MAX_EVENTS 512

static enum mode mode;
static int epfd;
static struct conn *conns;
static size_t nconns;
static char rbuf[READ_SIZE];
/* Responses for one read; grows to whatever a read full of requests needs. */
static struct buf wbuf;
static int spare_fd = -1;
static volatile sig_atomic_t stopping;

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

static struct conn *conn_get(int fd)
{
    if ((size_t)fd >= nconns) {
        size_t n = nconns ? nconns : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        conns = realloc(conns, n * sizeof *conns);
        if (!conns)
            die("realloc");
        memset(conns + nconns, 0, (n - nconns) * sizeof *conns);
        nconns = n;
    }
    return &conns[fd];
}

static void conn_close(struct conn *c)
{
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    c->open = 0;
}

static void set_interest(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = c->fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
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

static void ping_reply(const char *arg, size_t arglen, int nargs, const char *cmd, size_t cmdlen)
{
    char head[32];
    if (cmdlen == 4 && ascii_ieq(cmd, "ping", 4) && nargs == 1) {
        buf_append(&wbuf, "+PONG\r\n", 7);
    } else if (cmdlen == 4 && ascii_ieq(cmd, "ping", 4) && nargs == 2) {
        int n = snprintf(head, sizeof head, "$%zu\r\n", arglen);
        buf_append(&wbuf, head, (size_t)n);
        buf_append(&wbuf, arg, arglen);
        buf_append(&wbuf, "\r\n", 2);
    } else if (nargs > 0) {
        static const char err[] = "-ERR unknown command\r\n";
        buf_append(&wbuf, err, sizeof err - 1);
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
static long parse_multibulk(const char *p, size_t n)
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
    ping_reply(arg[1], arglen[1], (int)nargs, arg[0], arglen[0]);
    return used;
}

/* One inline command (a line of space-separated words) at p, as above. */
static long parse_inline(const char *p, size_t n)
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
    ping_reply(word[1], wordlen[1], nwords, word[0], wordlen[0]);
    return nl - p + 1;
}

static long parse_ping(const char *p, size_t n)
{
    return p[0] == '*' ? parse_multibulk(p, n) : parse_inline(p, n);
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
static long parse_http(struct conn *c, const char *p, size_t n)
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
    if (sp1 - p == 4 && memcmp(p, "POST", 4) == 0 && sp2 - sp1 == 6 && memcmp(sp1 + 1, "/echo", 5) == 0) {
        buf_printf(&wbuf, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n", body);
        if (!keep_alive)
            buf_append(&wbuf, "Connection: close\r\n", 19);
        buf_append(&wbuf, "\r\n", 2);
        buf_append(&wbuf, p + head, (size_t)body);
    } else if (keep_alive) {
        buf_append(&wbuf, http_response.data, http_response.len);
    } else {
        buf_append(&wbuf, http_response_close.data, http_response_close.len);
    }
    if (!keep_alive)
        c->close_after = 1;
    return head + body;
}

/*
 * Answers every complete request in p[0..n) into wbuf and returns the bytes
 * used, or -1 if the input is malformed.
 */
static long parse_requests(struct conn *c, const char *p, size_t n)
{
    size_t used = 0;
    while (used < n && !c->close_after) {
        long l = mode == MODE_PING ? parse_ping(p + used, n - used) : parse_http(c, p + used, n - used);
        if (l < 0)
            return -1;
        if (l == 0)
            break;
        used += (size_t)l;
    }
    return (long)used;
}

/*
 * Sends what is queued; the unsent rest waits for EPOLLOUT, and reading stops
 * until it is gone so a client that does not read cannot grow it without
 * bound.
 */
static void conn_send(struct conn *c, const char *p, size_t n)
{
    ssize_t w = n ? write(c->fd, p, n) : 0;
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_close(c);
            return;
        }
        w = 0;
    }
    if ((size_t)w < n) {
        buf_append(&c->out, p + w, n - (size_t)w);
        set_interest(c, EPOLLOUT);
    } else if (c->close_after) {
        conn_close(c);
    }
}

static void on_readable(struct conn *c)
{
    ssize_t r = read(c->fd, rbuf, sizeof rbuf);
    if (r <= 0) {
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            conn_close(c);
        return;
    }
    if (mode == MODE_ECHO) {
        conn_send(c, rbuf, (size_t)r);
        return;
    }
    const char *p = rbuf;
    size_t n = (size_t)r;
    if (c->in.len) {
        buf_append(&c->in, rbuf, n);
        p = c->in.data;
        n = c->in.len;
    }
    wbuf.len = 0;
    long used = parse_requests(c, p, n);
    if (used < 0) {
        conn_close(c);
        return;
    }
    if (c->in.len)
        buf_consume(&c->in, (size_t)used);
    else if ((size_t)used < n)
        buf_append(&c->in, p + used, n - (size_t)used);
    conn_send(c, wbuf.data, wbuf.len);
}

static void on_writable(struct conn *c)
{
    ssize_t w = write(c->fd, c->out.data, c->out.len);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_close(c);
        return;
    }
    buf_consume(&c->out, (size_t)w);
    if (c->out.len)
        return;
    if (c->close_after) {
        conn_close(c);
        return;
    }
    set_interest(c, EPOLLIN);
    /* Requests that arrived while output was blocked are still kept. */
    if (c->in.len && mode != MODE_ECHO) {
        wbuf.len = 0;
        long used = parse_requests(c, c->in.data, c->in.len);
        if (used < 0) {
            conn_close(c);
            return;
        }
        buf_consume(&c->in, (size_t)used);
        conn_send(c, wbuf.data, wbuf.len);
    }
}

static void on_accept(int lfd, int is_tcp)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* Out of fds: drop one waiting client rather than spin on it. */
            if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
                close(spare_fd);
                fd = accept(lfd, NULL, NULL);
                if (fd >= 0)
                    close(fd);
                spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            return;
        }
        if (is_tcp) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        struct conn *c = conn_get(fd);
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->open = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
    }
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
        fprintf(stderr, "floor: bad address %s\n", host);
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
        fprintf(stderr, "floor: unix path too long\n");
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

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: floor --mode echo|ping|http [--host ADDR] [--port N] [--unix PATH] "
                    "[--body N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *unix_path = NULL, *mode_name = "echo";
    int port = 0;
    long body_size = sizeof hello - 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--mode"))
            mode_name = argv[++i];
        else if (!strcmp(argv[i], "--host"))
            host = argv[++i];
        else if (!strcmp(argv[i], "--port"))
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--unix"))
            unix_path = argv[++i];
        else if (!strcmp(argv[i], "--body"))
            body_size = atol(argv[++i]);
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
    if (body_size < 0 || body_size > 64L * 1024 * 1024)
        usage();
    make_http_responses(body_size);

    /* Raise the fd limit for idle-connection memory runs. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    /* No SA_RESTART: epoll_wait returns EINTR and the loop ends cleanly,
     * which lets profilers such as callgrind write their output. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    int lfd, is_tcp = unix_path == NULL;
    if (unix_path) {
        lfd = listen_unix(unix_path);
        printf("unix %s\n", unix_path);
    } else {
        int bound;
        lfd = listen_tcp(host, port, &bound);
        printf("port %d\n", bound);
    }
    fflush(stdout);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
        die("epoll_ctl");

    struct epoll_event events[MAX_EVENTS];
    while (!stopping) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                on_accept(lfd, is_tcp);
                continue;
            }
            struct conn *c = &conns[fd];
            if (!c->open)
                continue;
            if (c->out.len)
                on_writable(c);
            else
                on_readable(c);
        }
    }
    for (size_t fd = 0; fd < nconns; fd++)
        if (conns[fd].open)
            conn_close(&conns[fd]);
    free(conns);
    buf_free(&wbuf);
    buf_free(&http_response);
    buf_free(&http_response_close);
    close(epfd);
    close(lfd);
    if (unix_path)
        unlink(unix_path);
    return 0;
}
