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
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>

#include "floor-proto.h"

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

static int epfd;
static struct conn *conns;
static size_t nconns;
static char rbuf[READ_SIZE];
/* Responses for one read; grows to whatever a read full of requests needs. */
static struct buf wbuf;
static int spare_fd = -1;
static volatile sig_atomic_t stopping;

static struct conn *conn_get(int fd)
{
    conns = fd_table_grow(conns, &nconns, sizeof *conns, fd);
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
    long used = parse_requests(&wbuf, &c->close_after, p, n);
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
        long used = parse_requests(&wbuf, &c->close_after, c->in.data, c->in.len);
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

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    struct floor_opts o;
    prog = "floor";
    floor_args(argc, argv, &o);
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    /* No SA_RESTART: epoll_wait returns EINTR and the loop ends cleanly,
     * which lets profilers such as callgrind write their output. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    int is_tcp, lfd = floor_listen(&o, &is_tcp);

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
    if (o.unix_path)
        unlink(o.unix_path);
    return 0;
}
