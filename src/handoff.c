/*
 * Handing listening sockets from a running evn process to a new one, for a
 * restart that drops nothing: a connection waiting in a socket's accept
 * queue belongs to the socket, not to the process, so while one of the two
 * processes holds the socket the connection waits to be accepted.
 *
 * The two talk over a connected unix socket, the channel, which the new
 * process finds in EVN_HANDOFF_FD. The offering side sends every listening
 * and bound socket it has, in batches, each a header and the descriptors
 * (SCM_RIGHTS); the taking side answers one line once its server runs
 * ("ok") or will not ("fail WHY"). Only on "ok" does the offering side stop
 * accepting and drain; on a failure, or the channel closing first (the new
 * process died), it carries on serving.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef _WIN32

/* Descriptors per message: well below the kernel's limit (253 on Linux). */
#define BATCH 64

struct hdr {
    char magic[8];  /* "EVNHOFF1": the protocol and its version */
    uint32_t count; /* descriptors attached */
    uint32_t last;  /* 1 on the final batch */
};

static const char MAGIC[8] = {'E', 'V', 'N', 'H', 'O', 'F', 'F', '1'};

/* ---- the offering side ---- */

/* Duplicates of every socket the listeners still have, into *fdsp. */
static int copy_sockets(struct evn_server *srv, int **fdsp, size_t *np)
{
    size_t cap = 0, n = 0;
    for (size_t i = 0; i < srv->nlisteners; i++)
        cap += srv->listeners[i].fds ? (size_t)srv->listeners[i].nfds : 1;
    int *fds = evn__malloc((cap ? cap : 1) * sizeof *fds);
    if (!fds)
        return -ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&srv->lfd_lock);
    for (size_t i = 0; i < srv->nlisteners && rc == 0; i++) {
        const struct evn__listener *l = &srv->listeners[i];
        int k = l->fds ? l->nfds : 1;
        for (int j = 0; j < k && rc == 0; j++) {
            int fd = l->fds ? l->fds[j] : l->fd;
            if (fd < 0)
                continue;
            int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
            if (d < 0) {
                rc = -errno;
                evn__set_errmsg("hand-off: cannot copy the socket of %s: %s", l->urlstr,
                                evn_strerror(rc));
            } else {
                fds[n++] = d;
            }
        }
    }
    pthread_mutex_unlock(&srv->lfd_lock);
    *fdsp = fds;
    *np = n;
    return rc;
}

/* The other end of the channel is closed. */
static int gone(void)
{
    evn__set_errmsg("hand-off: the new process closed the channel without taking the sockets "
                    "(it exited, or is not an evn server)");
    return -EPIPE;
}

static int send_batch(int sock, const int *fds, size_t n, bool last)
{
    struct hdr h = {.count = (uint32_t)n, .last = last};
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    union {
        struct cmsghdr c;
        char buf[CMSG_SPACE(sizeof(int) * BATCH)];
    } ctl;
    struct iovec iov = {.iov_base = &h, .iov_len = sizeof h};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    ssize_t r;
    do
        r = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        struct pollfd p = {.fd = sock, .events = POLLOUT};
        poll(&p, 1, -1);
        return send_batch(sock, fds, n, last);
    }
    if (r < 0 && (errno == EPIPE || errno == ECONNRESET))
        return gone();
    if (r < 0) {
        int e = errno;
        evn__set_errmsg("hand-off: cannot send the sockets: %s", evn_strerror(-e));
        return -e;
    }
    /* A unix socket takes a message whole or not at all; a stream socket
     * could in theory take part of one, which the other side cannot use. */
    if ((size_t)r != sizeof h) {
        evn__set_errmsg("hand-off: the channel took %zd of %zu bytes", r, sizeof h);
        return -EPROTO;
    }
    return 0;
}

/* Wait for the taker's one line: 0 for "ok", else a failure it explains. */
static int read_answer(int sock)
{
    char line[600];
    size_t n = 0;
    for (;;) {
        struct pollfd p = {.fd = sock, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return -errno;
        ssize_t r = recv(sock, line + n, sizeof line - 1 - n, MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        /* A reset: it closed with sockets it had not read yet. */
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return gone();
        if (r < 0) {
            int e = errno;
            evn__set_errmsg("hand-off: reading the new process's answer: %s", evn_strerror(-e));
            return -e;
        }
        n += (size_t)r;
        line[n] = '\0';
        char *nl = strchr(line, '\n');
        if (!nl && n < sizeof line - 1)
            continue;
        if (nl)
            *nl = '\0';
        if (strcmp(line, "ok") == 0)
            return 0;
        evn__set_errmsg("hand-off: the new process did not take the sockets: %s",
                        strncmp(line, "fail ", 5) == 0 ? line + 5 : line);
        return -ECANCELED;
    }
}

int evn_server_handoff(evn_server *srv, int sock, int64_t drain_ms)
{
    if (!srv || sock < 0) {
        evn__set_errmsg("evn_server_handoff: missing argument");
        return -EINVAL;
    }
    if (evn__cur_loop) {
        evn__set_errmsg("evn_server_handoff waits for the new process: call it from a thread "
                        "that runs no loop");
        return -EDEADLK;
    }
    if (atomic_load(&srv->stopping) || atomic_load(&srv->draining)) {
        evn__set_errmsg("hand-off: the server is already stopping");
        return -ESHUTDOWN;
    }
    if (atomic_exchange(&srv->handing_off, true)) {
        evn__set_errmsg("hand-off: one is already under way");
        return -EALREADY;
    }
    int *fds = NULL;
    size_t n = 0;
    int rc = copy_sockets(srv, &fds, &n);
    for (size_t i = 0; rc == 0 && (i < n || i == 0); i += BATCH) {
        size_t k = n - i < BATCH ? n - i : BATCH;
        rc = send_batch(sock, fds + i, k, i + k >= n);
    }
    /* The taker has its own copies now (or none, on a failure); the
     * originals stay this server's until it drains. */
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    evn__free(fds);
    if (rc == 0)
        rc = read_answer(sock);
    if (rc < 0) {
        atomic_store(&srv->handing_off, false);
        return rc;
    }
    /* The new process serves the unix sockets' files now: they stay. */
    pthread_mutex_lock(&srv->lfd_lock);
    for (size_t i = 0; i < srv->nlisteners; i++)
        srv->listeners[i].unlink_on_free = false;
    pthread_mutex_unlock(&srv->lfd_lock);
    evn_shutdown_graceful(srv, drain_ms);
    return 0;
}

/* ---- the taking side ---- */

static int add_offered(struct evn_server *srv, int fd)
{
    struct evn__inherited in;
    if (!evn__inherited_describe(fd, EVN__FROM_HANDOFF, &in)) {
        close(fd);
        return 0;
    }
    struct evn__inherited *more = evn__realloc(srv->inh, (srv->ninh + 1) * sizeof *more);
    if (!more) {
        close(fd);
        return -ENOMEM;
    }
    srv->inh = more;
    srv->inh[srv->ninh++] = in;
    return 0;
}

/* One batch: 1 after the last, 0 for more, -errno on failure. */
static int recv_batch(struct evn_server *srv, int ch)
{
    struct hdr h;
    union {
        struct cmsghdr c;
        char buf[CMSG_SPACE(sizeof(int) * BATCH)];
    } ctl;
    struct iovec iov = {.iov_base = &h, .iov_len = sizeof h};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    int flags = MSG_WAITALL;
#ifdef MSG_CMSG_CLOEXEC
    flags |= MSG_CMSG_CLOEXEC;
#endif
    ssize_t r;
    do
        r = recvmsg(ch, &mh, flags);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    int rc = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
#ifndef MSG_CMSG_CLOEXEC
            fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
            if (rc < 0)
                close(fd);
            else
                rc = add_offered(srv, fd);
        }
    }
    if (rc < 0)
        return rc;
    if (r == 0)
        return -EPIPE;
    if ((size_t)r != sizeof h || memcmp(h.magic, MAGIC, sizeof MAGIC) != 0)
        return -EPROTO;
    if (mh.msg_flags & MSG_CTRUNC)
        return -EMFILE;
    return h.last ? 1 : 0;
}

int evn__handoff_take(struct evn_server *srv)
{
    const char *v = getenv("EVN_HANDOFF_FD"), *pid = getenv("EVN_HANDOFF_PID");
    if (!v)
        return 0;
    char *end;
    long fd = strtol(v, &end, 10);
    bool ours = *v && !*end && fd >= 0 && fd <= INT32_MAX;
    if (pid && (strtol(pid, &end, 10) != (long)getpid() || *end))
        ours = false;
    /* Read once: a process this one starts must not take them for its own. */
    unsetenv("EVN_HANDOFF_FD");
    unsetenv("EVN_HANDOFF_PID");
    if (!ours)
        return 0;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return 0;
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    evn__set_nonblock((int)fd, false);
    srv->handoff_fd = (int)fd;
    int rc;
    while ((rc = recv_batch(srv, (int)fd)) == 0)
        ;
    if (rc == 1)
        return 0;
    if (rc == -EPIPE) {
        /* The offering process went away before it was done: it holds
         * nothing any more, so this server binds as a first one would. */
        evn__inherit_release(srv);
        close(srv->handoff_fd);
        srv->handoff_fd = -1;
        return 0;
    }
    evn__set_errmsg("hand-off from EVN_HANDOFF_FD=%ld: %s", fd,
                    rc == -EPROTO ? "not an evn hand-off (or another version of it)"
                                  : evn_strerror(rc));
    return rc;
}

void evn__handoff_answer(struct evn_server *srv, const char *why)
{
    char msg[600];
    int n = why ? snprintf(msg, sizeof msg, "fail %s\n", why) : snprintf(msg, sizeof msg, "ok\n");
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = (int)sizeof msg - 1, msg[n - 1] = '\n';
    /* One line: a newline inside the reason would end it early. */
    for (int i = 0; i < n - 1; i++)
        if (msg[i] == '\n')
            msg[i] = ' ';
    ssize_t r = send(srv->handoff_fd, msg, (size_t)n, MSG_NOSIGNAL);
    (void)r;
    close(srv->handoff_fd);
    srv->handoff_fd = -1;
}

#else /* _WIN32 */

/* The hand-off passes sockets over a unix socket with SCM_RIGHTS, which
 * Windows has not (WSADuplicateSocket would need the new process's id
 * beforehand): refused, and a server never takes sockets offered. */
int evn_server_handoff(evn_server *srv, int sock, int64_t drain_ms)
{
    (void)srv, (void)sock, (void)drain_ms;
    evn__set_errmsg("evn_server_handoff: not available on Windows (no SCM_RIGHTS)");
    return -ENOTSUP;
}

int evn__handoff_take(struct evn_server *srv)
{
    (void)srv;
    return 0;
}

void evn__handoff_answer(struct evn_server *srv, const char *why)
{
    (void)srv, (void)why;
}

#endif
