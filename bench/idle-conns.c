/*
 * idle-conns - opens many connections, makes one request on each, and keeps
 * them open and idle, for measuring a server's memory per idle connection.
 *
 *   idle-conns --port N [--host ADDR] [--conns 10000] [--proto http|redis|echo]
 *              [--window 256] [--timeout 60] [--exit]
 *
 * Every connection sends one request (http: "GET / HTTP/1.1" with a Host
 * header; redis: "PING\r\n"; echo: 16 bytes) and waits until the first bytes
 * of the answer arrive (the whole of it for echo). At most --window
 * connections are being set up at a time, so that a listen backlog never
 * overflows. Once all are answered it prints "open N" and then waits, holding
 * them, until it is killed; with --exit it closes them and exits instead.
 * A connection that fails or is closed by the server is an error: it prints
 * what happened and exits 1. The soft fd limit is raised to the hard one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    int state; /* 0 connecting, 1 request sent, 2 answered */
    size_t got;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: idle-conns --port N [--host ADDR] [--conns N] "
                    "[--proto http|redis|echo] [--window N] [--timeout S] [--exit]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = NULL, *proto = "http";
    long nconns = 10000, window = 256;
    double timeout = 60;
    int exit_after = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--exit")) {
            exit_after = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "--host"))
            host = v;
        else if (!strcmp(argv[i - 1], "--port"))
            port = v;
        else if (!strcmp(argv[i - 1], "--conns"))
            nconns = atol(v);
        else if (!strcmp(argv[i - 1], "--proto"))
            proto = v;
        else if (!strcmp(argv[i - 1], "--window"))
            window = atol(v);
        else if (!strcmp(argv[i - 1], "--timeout"))
            timeout = atof(v);
        else
            usage();
    }
    if (!port || nconns <= 0 || window <= 0)
        usage();
    const char *req;
    size_t want; /* bytes of answer that count as "answered" */
    if (!strcmp(proto, "http")) {
        req = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        want = 1;
    } else if (!strcmp(proto, "redis")) {
        req = "PING\r\n";
        want = 1;
    } else if (!strcmp(proto, "echo")) {
        req = "0123456789abcdef";
        want = 16;
    } else {
        usage();
        return 2;
    }
    size_t reqlen = strlen(req);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)nconns + 16 > rl.rlim_cur) {
        fprintf(stderr, "idle-conns: %ld connections need more fds than the limit %llu\n", nconns,
                (unsigned long long)rl.rlim_cur);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int err = getaddrinfo(host, port, &hints, &ai);
    if (err) {
        fprintf(stderr, "idle-conns: %s:%s: %s\n", host, port, gai_strerror(err));
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (ep < 0 || !conns) {
        perror("idle-conns");
        return 1;
    }
    long opened = 0, answered = 0, pending = 0;
    double deadline = now() + timeout;
    struct epoll_event evs[256];
    char buf[4096];
    while (answered < nconns) {
        while (opened < nconns && pending < window) {
            struct conn *c = &conns[opened];
            c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->fd < 0) {
                perror("idle-conns: socket");
                return 1;
            }
            if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
                fprintf(stderr, "idle-conns: connect (connection %ld): %s\n", opened,
                        strerror(errno));
                return 1;
            }
            struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)opened};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            opened++;
            pending++;
        }
        if (now() > deadline) {
            fprintf(stderr, "idle-conns: only %ld of %ld answered after %.0fs\n", answered, nconns,
                    timeout);
            return 1;
        }
        int n = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            struct conn *c = &conns[evs[i].data.u64];
            if (c->state == 0) {
                int so = 0;
                socklen_t sl = sizeof so;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &sl);
                if (so) {
                    fprintf(stderr, "idle-conns: connect (connection %llu): %s\n",
                            (unsigned long long)evs[i].data.u64, strerror(so));
                    return 1;
                }
                if (write(c->fd, req, reqlen) != (ssize_t)reqlen) {
                    perror("idle-conns: write");
                    return 1;
                }
                c->state = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = evs[i].data.u64};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            } else if (c->state == 1) {
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN)
                        continue;
                    fprintf(stderr, "idle-conns: connection %llu %s before an answer\n",
                            (unsigned long long)evs[i].data.u64,
                            r == 0 ? "closed by the server" : strerror(errno));
                    return 1;
                }
                c->got += (size_t)r;
                if (c->got >= want) {
                    c->state = 2;
                    /* Answered: no longer watched, just held. */
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    answered++;
                    pending--;
                }
            }
        }
    }
    printf("open %ld\n", answered);
    fflush(stdout);
    if (exit_after)
        return 0;
    for (;;)
        pause();
}
