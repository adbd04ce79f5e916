/*
 * Listeners: turning a parsed URL into bound sockets, and accepting on them.
 * A listener shared by all loops has one socket, which loop 0 polls and
 * accepts on, handing each new connection to the loop the balancing mode
 * picks; with reuseport it has one per loop, all bound to the same address,
 * and the kernel spreads new connections between them.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int evn__set_nonblock(int fd, bool on)
{
#ifdef _WIN32
    /* Windows cannot tell a socket's mode, only set it. */
    unsigned long v = on;
    return ioctl(fd, FIONBIO, &v) < 0 ? -errno : 0;
#else
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0)
        return -errno;
    return 0;
#endif
}

int evn__pipe_nb(int p[2])
{
#if defined(_WIN32)
    /* Windows polls sockets only: a socket pair stands in for the pipe. */
    return evn__w_socketpair(p);
#elif defined(EVN_HAVE_PIPE2)
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
#else
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
        evn__set_nonblock(p[i], true);
    }
#endif
    return 0;
}

int evn_addr_str(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    int n;
    if (!sa || !buf || size == 0)
        return -EINVAL;
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        n = snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        n = snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t plen = (size_t)len > offsetof(struct sockaddr_un, sun_path)
                          ? (size_t)len - offsetof(struct sockaddr_un, sun_path)
                          : 0;
        plen = strnlen(un->sun_path, plen < sizeof un->sun_path ? plen : sizeof un->sun_path);
        n = snprintf(buf, size, "%.*s", (int)plen, un->sun_path);
        break;
    }
    default:
        return -EAFNOSUPPORT;
    }
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= size)
        return -ENOSPC;
    return n;
}

/* Fill l->addr from the URL: a wildcard, a literal or a resolved name. */
static int resolve(struct evn__listener *l, const char *url, char *err, size_t errlen)
{
    struct evn__url *u = &l->url;
    memset(&l->addr, 0, sizeof l->addr);
    if (u->proto == EVN__UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)&l->addr;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, u->path, strlen(u->path) + 1);
        l->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(u->path) + 1);
        return 0;
    }
    if (u->host[0] == '\0') {
        if (u->family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&l->addr;
            in->sin_family = AF_INET;
            in->sin_addr.s_addr = htonl(INADDR_ANY);
            in->sin_port = htons((uint16_t)u->port);
            l->addrlen = sizeof *in;
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l->addr;
            in6->sin6_family = AF_INET6;
            in6->sin6_addr = in6addr_any;
            in6->sin6_port = htons((uint16_t)u->port);
            l->addrlen = sizeof *in6;
        }
        return 0;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = u->family;
    hints.ai_socktype = u->proto == EVN__UDP ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(u->host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "%s: cannot resolve host '%s': %s", url, u->host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return rc == EAI_MEMORY ? -ENOMEM : -EINVAL;
    }
    memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
    l->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    if (l->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&l->addr)->sin_port = htons((uint16_t)u->port);
    else
        ((struct sockaddr_in6 *)&l->addr)->sin6_port = htons((uint16_t)u->port);
    return 0;
}

/*
 * A unix socket file left behind by a process that died is replaced; one that
 * a live server still accepts on, or a file that is not a socket, is not.
 */
static int clear_stale_unix(const struct evn__listener *l, const char *url, char *err,
                            size_t errlen)
{
    struct stat st;
    if (lstat(l->url.path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s: '%s' exists and is not a socket", url, l->url.path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)&l->addr, l->addrlen);
    int e = errno;
    evn__sock_close(fd);
    if (rc == 0) {
        snprintf(err, errlen, "%s: a server is already listening on '%s'", url, l->url.path);
        return -EADDRINUSE;
    }
    if (e == ECONNREFUSED)
        unlink(l->url.path);
    return 0;
}

/*
 * TCP options from the URL, set on the listening socket, from which accepted
 * sockets inherit them (Linux copies the whole socket state on accept), so
 * they cost nothing per connection. Returns the option that failed, or NULL.
 */
static const char *tcp_tuning(int fd, const struct evn__url *u)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &u->nodelay, sizeof(int)) < 0)
        return "TCP_NODELAY";
    if (u->keepalive) {
        if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0)
            return "SO_KEEPALIVE";
#if defined(TCP_KEEPIDLE)
        int intvl = u->keepalive / 3 > 0 ? u->keepalive / 3 : 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &u->keepalive, sizeof(int)) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0)
            return "TCP_KEEPIDLE";
#elif defined(TCP_KEEPALIVE)
        if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPALIVE, &u->keepalive, sizeof(int)) < 0)
            return "TCP_KEEPALIVE";
#endif
    }
    if (u->fastopen) {
#ifdef TCP_FASTOPEN
        if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &u->fastopen, sizeof(int)) < 0)
            return "TCP_FASTOPEN";
#else
        errno = ENOTSUP;
        return "fastopen (TCP_FASTOPEN is not available on this platform)";
#endif
    }
    if (u->deferaccept) {
#ifdef TCP_DEFER_ACCEPT
        if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &u->deferaccept, sizeof(int)) < 0)
            return "TCP_DEFER_ACCEPT";
#else
        errno = ENOTSUP;
        return "deferaccept (TCP_DEFER_ACCEPT is not available on this platform)";
#endif
    }
    return NULL;
}

static int open_socket(struct evn__listener *l, const char *url, char *err, size_t errlen)
{
    const struct evn__url *u = &l->url;
    int type = (u->proto == EVN__UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
    int one = 1, zero = 0;
    int fd = socket(l->addr.ss_family, type, 0);
    if (fd < 0) {
        int e = errno;
        /* Windows before 10 (1803), and Wine, have no unix sockets. */
        if (u->proto == EVN__UNIX && e == EAFNOSUPPORT)
            snprintf(err, errlen, "%s: this system has no unix sockets (AF_UNIX)", url);
        else
            snprintf(err, errlen, "%s: socket: %s", url, strerror(e));
        return -e;
    }
    const char *what = NULL;
#ifdef EVN__NEED_FCNTL
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (evn__set_nonblock(fd, true) < 0)
        what = "O_NONBLOCK";
#endif
    if (!what && u->proto != EVN__UNIX) {
        if (u->proto == EVN__TCP && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            what = "SO_REUSEADDR";
        if (!what && u->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
            what = "SO_REUSEPORT";
        if (!what && l->addr.ss_family == AF_INET6) {
            /* An empty host under tcp:// or udp:// serves IPv4 too. */
            int v6only = u->ipv6only >= 0 ? u->ipv6only : u->family == AF_INET6;
            if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof one) < 0)
                what = "IPV6_V6ONLY";
        }
        if (!what && u->proto == EVN__TCP)
            what = tcp_tuning(fd, u);
    }
    if (!what && u->sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &u->sndbuf, sizeof(int)) < 0)
        what = "SO_SNDBUF";
    if (!what && u->rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &u->rcvbuf, sizeof(int)) < 0)
        what = "SO_RCVBUF";
    if (!what && bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0)
        what = "bind";
    if (!what && u->proto != EVN__UDP && listen(fd, u->backlog) < 0)
        what = "listen";
    if (what) {
        int e = errno;
        snprintf(err, errlen, "%s: %s: %s", url, what, strerror(e));
        evn__sock_close(fd);
        return -e;
    }
    return fd;
}

static void format_url(struct evn__listener *l)
{
    static const char *names[] = {"", "tcp", "udp", "unix"};
    char addr[128];
    if (l->url.proto == EVN__UNIX) {
        snprintf(l->urlstr, sizeof l->urlstr, "%s://%s", l->url.tls ? "tls+unix" : "unix",
                 l->url.path);
        return;
    }
    if (evn_addr_str((struct sockaddr *)&l->addr, l->addrlen, addr, sizeof addr) < 0)
        addr[0] = '\0';
    snprintf(l->urlstr, sizeof l->urlstr, "%s://%s", l->url.tls ? "tls" : names[l->url.proto],
             addr);
}

/*
 * Serve l from the k inherited sockets fds[0..k), which are l's from now on
 * (closed with it); d describes fds[0]. They are used as they are, bound and
 * listening by whoever made them; only the TCP options that apply to a
 * listening socket are set. A reuseport listener with fewer of them than
 * loops binds more beside them when they allow it (SO_REUSEPORT), so each
 * loop has its own.
 */
static int adopt(struct evn__listener *l, const char *url, const int *fds, int k,
                 const struct evn__inherited *d, int nloops, char *err, size_t errlen)
{
    int n = k;
    l->origin = d->origin;
    memcpy(&l->addr, &d->addr, d->addrlen);
    l->addrlen = d->addrlen;
    /* fdname= may pick a unix socket of another path than the URL's. */
    if (d->addr.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&d->addr;
        snprintf(l->url.path, sizeof l->url.path, "%.*s", (int)sizeof un->sun_path, un->sun_path);
    }
    if (l->url.reuseport && k < nloops && d->reuseport && l->url.proto != EVN__UNIX)
        n = nloops;
    if (n == 1) {
        l->fd = fds[0];
    } else {
        if (!(l->fds = evn__malloc(sizeof(int) * (size_t)n))) {
            for (int i = 0; i < k; i++)
                evn__sock_close(fds[i]);
            return -ENOMEM;
        }
        for (int i = 0; i < n; i++)
            l->fds[i] = i < k ? fds[i] : -1;
        l->nfds = n;
        l->fd = fds[0];
    }
    for (int i = 0; i < k && l->url.proto == EVN__TCP && d->addr.ss_family != AF_UNIX; i++) {
        const char *what = tcp_tuning(fds[i], &l->url);
        if (what) {
            int e = errno;
            snprintf(err, errlen, "%s: %s on the inherited socket: %s", url, what, strerror(e));
            evn__listener_close(l);
            return -e;
        }
    }
    for (int i = k; i < n; i++) {
        int fd = open_socket(l, url, err, errlen);
        if (fd < 0) {
            evn__listener_close(l);
            return fd;
        }
        l->fds[i] = fd;
    }
    format_url(l);
    return 0;
}

/* The most inherited sockets one listener takes. */
#define EVN__INHERIT_MAX (EVN__MAX_LOOPS + 1)

int evn__listener_open(struct evn_server *srv, struct evn__listener *l, const char *url, int nloops,
                       char *err, size_t errlen)
{
    int rc = evn__url_parse(url, &l->url, err, errlen);
    if (rc < 0)
        return rc;
    l->fd = -1;
    l->fds = NULL;
    if (l->url.proto == EVN__UNIX && l->url.reuseport) {
        snprintf(err, errlen, "%s: reuseport is not supported for unix sockets", url);
        return -EINVAL;
    }
#ifndef EVN_HAVE_TLS
    if (l->url.tls) {
        snprintf(err, errlen, "%s: tls:// needs evn built with OpenSSL (EVN_TLS)", url);
        return -ENOTSUP;
    }
#else
    /* Certificate and key are read now, so that a bad one fails here. */
    if (l->url.tls && (rc = evn__tls_ctx_new(l, url, err, errlen)) < 0)
        return rc;
#endif
    if ((rc = resolve(l, url, err, errlen)) < 0)
        return rc;
    int inherited[EVN__INHERIT_MAX];
    struct evn__inherited first;
    int k = evn__inherit_claim(srv, l, inherited, EVN__INHERIT_MAX, &first);
    if (k > 0)
        return adopt(l, url, inherited, k, &first, nloops, err, errlen);
    if (l->url.proto == EVN__UNIX && (rc = clear_stale_unix(l, url, err, errlen)) < 0)
        return rc;

    int nsock = l->url.reuseport ? nloops : 1;
    if (l->url.reuseport) {
        l->fds = evn__malloc(sizeof(int) * (size_t)nsock);
        if (!l->fds)
            return -ENOMEM;
        for (int i = 0; i < nsock; i++)
            l->fds[i] = -1;
        l->nfds = nsock;
    }
    for (int i = 0; i < nsock; i++) {
        int fd = open_socket(l, url, err, errlen);
        if (fd == -EAFNOSUPPORT && i == 0 && l->url.host[0] == '\0' && l->url.family == AF_UNSPEC) {
            /* No IPv6 on this machine: an empty host falls back to IPv4. */
            struct sockaddr_in *in = (struct sockaddr_in *)&l->addr;
            memset(&l->addr, 0, sizeof l->addr);
            in->sin_family = AF_INET;
            in->sin_addr.s_addr = htonl(INADDR_ANY);
            in->sin_port = htons((uint16_t)l->url.port);
            l->addrlen = sizeof *in;
            fd = open_socket(l, url, err, errlen);
        }
        if (fd < 0) {
            evn__listener_close(l);
            return fd;
        }
        if (i == 0) {
            l->fd = fd;
            if (l->url.proto == EVN__UNIX)
                l->unlink_on_free = true;
            /* Port 0: the other reuseport sockets must join the port chosen. */
            socklen_t alen = sizeof l->addr;
            if (l->url.proto != EVN__UNIX)
                getsockname(fd, (struct sockaddr *)&l->addr, &alen), l->addrlen = alen;
        }
        if (l->fds)
            l->fds[i] = fd;
    }
    format_url(l);
    return 0;
}

void evn__listener_close(struct evn__listener *l)
{
    if (l->fds) {
        for (int i = 0; i < l->nfds; i++)
            if (l->fds[i] >= 0)
                evn__sock_close(l->fds[i]);
        evn__free(l->fds);
        l->fds = NULL;
    } else if (l->fd >= 0) {
        evn__sock_close(l->fd);
    }
    l->fd = -1;
#ifdef EVN_HAVE_TLS
    evn__tls_ctx_free(l);
#endif
    if (l->unlink_on_free) {
        unlink(l->url.path);
        l->unlink_on_free = false;
    }
}

/* ---- accepting ---- */

#define EVN__ACCEPT_BATCH 64
#define EVN__ACCEPT_RETRY_MS 100 /* evn.h says so, at evn_stats.accept_failed */

static uint32_t xorshift(atomic_uint *state)
{
    uint32_t x = atomic_load_explicit(state, memory_order_relaxed);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    atomic_store_explicit(state, x, memory_order_relaxed);
    return x;
}

static struct evn_loop *pick_loop(struct evn_server *srv)
{
    int n = srv->nloops;
    if (n == 1)
        return &srv->loops[0];
    switch (srv->ev.balance) {
    case EVN_BALANCE_ROUND_ROBIN:
        return &srv->loops[atomic_fetch_add_explicit(&srv->rr_next, 1, memory_order_relaxed) %
                           (unsigned)n];
    case EVN_BALANCE_LEAST_CONNECTIONS: {
        int best = 0;
        long least = atomic_load_explicit(&srv->loops[0].nconns, memory_order_relaxed);
        for (int i = 1; i < n; i++) {
            long k = atomic_load_explicit(&srv->loops[i].nconns, memory_order_relaxed);
            if (k < least)
                least = k, best = i;
        }
        return &srv->loops[best];
    }
    default:
        return &srv->loops[xorshift(&srv->rand_state) % (unsigned)n];
    }
}

/* Over max_conns: say so if the application gave words for it, and close. */
static void reject(struct evn_server *srv, int fd)
{
    const char *msg = srv->ev.busy_reply;
    if (msg) {
        ssize_t r = send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r;
    }
    evn__sock_close(fd);
}

static bool is_listening(const struct evn__lsock *ls)
{
    return ls->io.fd >= 0 && ls->l->url.proto != EVN__UDP;
}

/* Accept on ls (on), or stop (off): with the backend's own accepts if it
 * does the I/O, else by readiness. 0 or -errno. */
static int accepting(struct evn_loop *loop, struct evn__lsock *ls, bool on)
{
    if (loop->be->accept)
        return loop->be->accept(loop, &ls->io, on);
    if (on)
        return evn__io_add(loop, &ls->io, EVN__READ);
    evn__io_del(loop, &ls->io, EVN__READ, false);
    return 0;
}

/*
 * Out of descriptors (or kernel memory): the waiting connection cannot be
 * taken, and a level-triggered poller would report it again at once, forever.
 * Stop accepting until a connection of this loop closes or a short while
 * passes; the waiting clients stay in the backlog meanwhile.
 */
static void accept_pause(struct evn_loop *loop)
{
    if (loop->accept_paused)
        return;
    for (size_t i = 0; i < loop->nlsocks; i++)
        if (is_listening(&loop->lsocks[i]))
            accepting(loop, &loop->lsocks[i], false);
    loop->accept_paused = true;
    /* Without room for the timer, the next close of a connection resumes. */
    evn__timer_start(loop, &loop->accept_retry, evn__now_ms() + EVN__ACCEPT_RETRY_MS);
}

void evn__accept_resume(struct evn_loop *loop)
{
    if (!loop->accept_paused)
        return;
    loop->accept_paused = false;
    evn__timer_stop(loop, &loop->accept_retry);
    for (size_t i = 0; i < loop->nlsocks; i++)
        if (is_listening(&loop->lsocks[i]))
            accepting(loop, &loop->lsocks[i], true);
}

static void accept_retry(struct evn_loop *loop, struct evn__timer *t)
{
    evn__accept_resume(loop);
}

/*
 * A new connection, fd, on ls: give it to a loop, this one for a reuseport
 * socket, else the one the balancing mode picks. Only the chosen loop is
 * woken, so no loop wakes for nothing.
 */
static void take(struct evn_loop *loop, struct evn__lsock *ls, int fd,
                 const union evn__ip_addr *peer, socklen_t plen)
{
    struct evn_server *srv = loop->srv;
    uint16_t index = (uint16_t)ls->l->index;
    if ((size_t)plen > sizeof *peer)
        plen = 0;
    int max = srv->ev.max_conns;
    if (atomic_fetch_add_explicit(&srv->total_conns, 1, memory_order_relaxed) >= max && max > 0) {
        atomic_fetch_sub_explicit(&srv->total_conns, 1, memory_order_relaxed);
        evn__stat_add(&loop->stats.refused_max_conns, 1);
        reject(srv, fd);
        return;
    }
    /* A connection accepted before its listener closed (a drain) and
     * reported since, by a backend that accepts itself, was in the queue:
     * it is served here, where the drain tells it at once, rather than
     * sent to a loop that may have ended. */
    struct evn_loop *to = ls->l->fds || ls->io.fd < 0 ? loop : pick_loop(srv);
    atomic_fetch_add_explicit(&to->nconns, 1, memory_order_relaxed);
    if (to == loop) {
        evn__conn_accepted(loop, fd, index, peer, plen);
        return;
    }
    struct evn__msg m = {.type = EVN__M_CONN, .fd = fd, .arg = index, .peer = *peer};
    m.peerlen = (uint8_t)plen;
    if (evn__loop_post(to, &m) < 0) {
        atomic_fetch_sub_explicit(&to->nconns, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&srv->total_conns, 1, memory_order_relaxed);
        evn__sock_close(fd);
    }
}

/*
 * A connection the peer reset while it waited to be accepted. Linux hands
 * it to accept like any other (it is opened, then closes with ECONNRESET);
 * other systems report it at accept, without a socket, and no event fires
 * for it: ECONNABORTED on BSD and macOS, WSAECONNRESET on Windows (from
 * AcceptEx, the reset's status), WSAENOTCONN under Wine.
 */
static bool accept_gone(int err)
{
    return err == ECONNABORTED || err == ECONNRESET || err == ENOTCONN;
}

/* An accept failed: the connection was gone (counted), or for want of
 * descriptors or memory (counted, and accepting stops for a while). */
static void accept_failed(struct evn_loop *loop, int err)
{
    if (accept_gone(err)) {
        evn__stat_add(&loop->stats.accept_gone, 1);
        return;
    }
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        evn__stat_add(&loop->stats.accept_failed, 1);
        accept_pause(loop);
    }
}

/*
 * A listening socket is ready (accept what is waiting, up to a batch), or
 * the backend accepted a connection on it.
 */
static void accept_ready(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
    struct evn__lsock *ls = evn__container_of(io, struct evn__lsock, io);
    if (f->ev == EVN__RELEASED) {
        loop->lsocks_held--;
        return;
    }
    if (f->ev == EVN__ACCEPTED) {
        const struct evn__peer *p = f->buf;
        if (f->res >= 0)
            take(loop, ls, f->res, &p->addr, p->len);
        else
            accept_failed(loop, -f->res);
        return;
    }
    for (int k = 0; k < EVN__ACCEPT_BATCH; k++) {
        union evn__ip_addr peer;
        socklen_t plen = sizeof peer;
#ifdef EVN_HAVE_ACCEPT4
        int fd = accept4(io->fd, &peer.sa, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        int fd = accept(io->fd, &peer.sa, &plen);
        if (fd >= 0) {
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            evn__set_nonblock(fd, true);
        }
#endif
        if (fd < 0) {
            int err = errno;
            accept_failed(loop, err);
            if (err == EINTR || accept_gone(err))
                continue;
            return;
        }
        take(loop, ls, fd, &peer, plen);
    }
}

/* Start polling (or accepting on) fd, l's socket in slot (-1: l->fd). */
static int lsock_start(struct evn_loop *loop, struct evn__listener *l, int slot, int fd)
{
    struct evn__lsock *ls = &loop->lsocks[loop->nlsocks++];
    ls->io.fd = fd;
    ls->l = l;
    ls->slot = slot;
    if (l->url.proto == EVN__UDP) {
        ls->io.cb = evn__udp_ready;
        if (!(ls->udp = evn__udp_conn_new(loop, ls)))
            return -ENOMEM;
        if (loop->be->recv_dgram)
            return loop->be->recv_dgram(loop, &ls->io, true);
        return evn__io_add(loop, &ls->io, EVN__READ);
    }
    ls->io.cb = accept_ready;
    return accepting(loop, ls, true);
}

/* The sockets this loop polls: a shared one on loop 0, and socket i of a
 * listener with several on loop i % nloops. */
int evn__lsocks_start(struct evn_loop *loop)
{
    struct evn_server *srv = loop->srv;
    int me = loop->index, nloops = srv->nloops, rc;
    loop->accept_retry.cb = accept_retry;
    size_t n = 0;
    for (size_t i = 0; i < srv->nlisteners; i++) {
        const struct evn__listener *l = &srv->listeners[i];
        n += l->fds ? (size_t)((l->nfds - me + nloops - 1) / nloops) : 1;
    }
    loop->lsocks = evn__calloc(n ? n : 1, sizeof *loop->lsocks);
    if (!loop->lsocks)
        return -ENOMEM;
    for (size_t i = 0; i < srv->nlisteners; i++) {
        struct evn__listener *l = &srv->listeners[i];
        if (!l->fds) {
            if (me == 0 && l->fd >= 0 && (rc = lsock_start(loop, l, -1, l->fd)) < 0)
                return rc;
            continue;
        }
        for (int slot = me; slot < l->nfds; slot += nloops)
            if (l->fds[slot] >= 0 && (rc = lsock_start(loop, l, slot, l->fds[slot])) < 0)
                return rc;
    }
    return 0;
}

void evn__lsocks_close(struct evn_loop *loop)
{
    evn__timer_stop(loop, &loop->accept_retry);
    for (size_t i = 0; i < loop->nlsocks; i++) {
        struct evn__lsock *ls = &loop->lsocks[i];
        if (ls->io.fd < 0)
            continue;
        /* The listener must not close it again at free, nor a hand-off
         * offer it from now on. */
        pthread_mutex_lock(&loop->srv->lfd_lock);
        if (ls->slot >= 0)
            ls->l->fds[ls->slot] = -1;
        if (ls->slot <= 0)
            ls->l->fd = -1;
        pthread_mutex_unlock(&loop->srv->lfd_lock);
        if (loop->be->close) {
            /* Accepts still armed, or events in the batch, may come back for
             * it: its memory lives as long as the loop, and a drain waits
             * for the connections those accepts took. */
            if (loop->be->close(loop, &ls->io, false) > 0 && ls->io.cb == accept_ready)
                loop->lsocks_held++;
        } else {
            if (!loop->accept_paused || !is_listening(ls))
                evn__io_del(loop, &ls->io, EVN__READ, true);
            evn__sock_close(ls->io.fd);
        }
        ls->io.fd = -1;
    }
    loop->accept_paused = false;
}

void evn__lsocks_free(struct evn_loop *loop)
{
    for (size_t i = 0; i < loop->nlsocks; i++)
        if (loop->lsocks[i].udp)
            evn__udp_conn_free(loop->lsocks[i].udp);
    evn__free(loop->lsocks);
    loop->lsocks = NULL;
    loop->nlsocks = 0;
}
