/*
 * Outbound connections. A numeric address (or a unix path) is connected to
 * at once; the connect is non-blocking and finishes when the socket turns
 * writable (conn.c, finish_connect), or, on a backend that connects itself
 * (connect_to: ConnectEx on iocp), when it says so (EVN__CONNECTED), the
 * connection unregistered until then. A host name is a dial: the connection
 * is made at once, without a socket, and waits for the name's addresses
 * (resolve.c), then tries them in order, each with a socket of its own,
 * until one connects; only then is it as a numeric connect would be. A
 * tls:// connection gets its client session here (tls.c) and its handshake
 * runs in the loop once connected, under the same deadline, before opened
 * fires.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/*
 * Whether s can be a host name: labels of letters, digits, '-' and '_'
 * (found in service names) separated by dots, at most 253 characters. An
 * address of the other family (tcp4://[::1]) is not one.
 */
static bool is_name(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253 || inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 && i + 1 < n)
                return false;
            label = 0;
        } else if (isalnum((unsigned char)ch) || ch == '-' || ch == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

/* Fill sa from a parsed URL: 0, 1 for a host name, or -EINVAL with a
 * message for what cannot be. */
static int numeric_addr(const char *url, const struct evn__url *u, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (u->proto == EVN__UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, u->path, strlen(u->path) + 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(u->path) + 1);
        return 0;
    }
    if (u->proto != EVN__TCP) {
        evn__set_errmsg("%s: evn_connect takes tcp://, tcp4://, tcp6://, tls://, tls4://, "
                        "tls6://, unix:// or tls+unix:// URLs",
                        url);
        return -EINVAL;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (u->family != AF_INET6 && inet_pton(AF_INET, u->host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)u->port);
        *len = sizeof *in;
        return 0;
    }
    if (u->family != AF_INET && inet_pton(AF_INET6, u->host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)u->port);
        *len = sizeof *in6;
        return 0;
    }
    if (is_name(u->host))
        return 1;
    evn__set_errmsg("%s: '%s' is neither an %s address nor a host name", url, u->host,
                    u->family == AF_INET    ? "IPv4"
                    : u->family == AF_INET6 ? "IPv6"
                                            : "IP");
    return -EINVAL;
}

/* A non-blocking, close-on-exec stream socket for a connect, with
 * TCP_NODELAY if nodelay: the descriptor, or -errno. */
static int stream_socket(int family, bool nodelay)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
#ifdef EVN__NEED_FCNTL
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    evn__set_nonblock(fd, true);
#endif
    if (nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/* ---- host names ---- */

/* Add "ADDRESS: reason" to what the dial tells evn_errmsg() at the end. */
static void note(struct evn__dial *d, const union evn__ip_addr *a, int err)
{
    char as[64];
    socklen_t len = a->sa.sa_family == AF_INET ? sizeof a->in : sizeof a->in6;
    if (evn_addr_str(&a->sa, len, as, sizeof as) < 0)
        snprintf(as, sizeof as, "?");
    size_t used = strlen(d->why);
    snprintf(d->why + used, sizeof d->why - used, "%s%s: %s", used ? "; " : "", as,
             evn_strerror(err));
}

/* Close c, which has tried its last address, with err. */
static void dial_fail(struct evn_conn *c, struct evn__dial *d, int err)
{
    evn__set_errmsg("%s: %s", d->url, d->why);
    evn__conn_close(c, err);
}

/*
 * Connect c to the next of its addresses that can be tried: a socket of
 * its own for each, registered for the end of the connect as a numeric
 * connect's is. An address whose connect fails at once (no route to it) is
 * noted and the next one tried; after the last, c closes with its error.
 */
static void try_next(struct evn_conn *c, struct evn__dial *d)
{
    int err = -EHOSTUNREACH;
    while (d->tried < d->addrs->n) {
        union evn__ip_addr a = d->addrs->a[d->tried++];
        socklen_t len;
        if (a.sa.sa_family == AF_INET) {
            a.in.sin_port = htons((uint16_t)d->port);
            len = sizeof a.in;
        } else {
            a.in6.sin6_port = htons((uint16_t)d->port);
            len = sizeof a.in6;
        }
        int fd = stream_socket(a.sa.sa_family, true);
        if (fd < 0) {
            note(d, &a, err = fd);
            continue;
        }
        bool by_backend = c->loop->be->connect_to != NULL;
        if (!by_backend && connect(fd, &a.sa, len) < 0 && errno != EINPROGRESS) {
            note(d, &a, err = -errno);
            evn__sock_close(fd);
            continue;
        }
        c->io.fd = fd;
        if (by_backend && (err = c->loop->be->connect_to(c->loop, &c->io, &a.sa, len)) < 0) {
            note(d, &a, err);
            evn__sock_close(fd);
            c->io.fd = -1;
            continue;
        }
        memcpy(&c->peer, &a, len);
        c->peerlen = (uint8_t)len;
#ifdef EVN_HAVE_TLS
        if (evn__conn_tls(c))
            evn__tls_client_set_fd(c->x->tls, fd);
#endif
        d->timed_out = false;
        if ((d->timeout_ms > 0 && evn__conn_deadline(c, d->timeout_ms) < 0) ||
            (!by_backend && (err = evn__conn_set_flags(c, 0, EVN__C_UNREG)) < 0)) {
            note(d, &a, err = err < 0 ? err : -ENOMEM);
            dial_fail(c, d, err);
            return;
        }
        return;
    }
    dial_fail(c, d, err);
}

void evn__dial_answered(struct evn__dial *d)
{
    struct evn_conn *c = d->c;
    /* Closed with evn_conn_close while its name was looked up. */
    if (c->flags & EVN__C_CLOSING) {
        evn__conn_close(c, c->x->close_err);
        return;
    }
    if (d->status < 0) {
        evn__set_errmsg("%s: %s: %s", d->url, d->host, d->why);
        evn__conn_close(c, d->status);
        return;
    }
    d->why[0] = '\0';
    try_next(c, d);
}

bool evn__dial_connected(struct evn_conn *c, int *err)
{
    struct evn__dial *d = c->x->dial;
    if (!*err && !d->timed_out) {
        evn__dial_free(c);
        return false;
    }
    if (d->timed_out)
        *err = -ETIMEDOUT;
    note(d, &c->peer, *err);
    /*
     * Off the poller, and the socket closed: the next address has its own,
     * made while this one is still open. Otherwise the new socket could have
     * the old one's number (Windows hands a closed socket's handle value out
     * again at once), and the iocp backend, which tells a handle's new
     * socket from its old one by that number, would take it for the old
     * one, never tied to its completion port.
     */
    int old = c->io.fd;
    evn__conn_set_flags(c, EVN__C_UNREG, 0);
    c->io.fd = -1;
    c->peerlen = 0;
    if (d->tried < d->addrs->n) {
        try_next(c, d);
        evn__sock_close(old);
        return true;
    }
    evn__sock_close(old);
    evn__set_errmsg("%s: %s", d->url, d->why);
    return false;
}

bool evn__dial_timeout(struct evn_conn *c)
{
    struct evn__dial *d = c->x->dial;
    if (c->io.fd < 0) {
        evn__set_errmsg("%s: %s: no answer from the resolver within the timeout", d->url, d->host);
        return false;
    }
    if (d->timed_out || d->tried >= d->addrs->n) {
        note(d, &c->peer, -ETIMEDOUT);
        evn__set_errmsg("%s: %s", d->url, d->why);
        return false;
    }
#ifdef _WIN32
    /*
     * Winsock's shutdown does not end a connect in progress (it fails with
     * WSAENOTCONN and the connect goes on), so no event would come and the
     * guard below would end the whole dial. The socket leaves the poller
     * as one about to be closed, which cancels the iocp backend's poll on
     * it (closing the socket does not end that poll under Wine, and the
     * loop would wait for it when it stops), and the next address is tried
     * now, as after a failed connect.
     */
    int err = -ETIMEDOUT;
    d->timed_out = true;
    evn__io_del(c->loop, &c->io, evn__conn_interest(c), true);
    return evn__dial_connected(c, &err);
#else
    /*
     * On to the next address, through the socket's own event: shutting down
     * a connect in progress ends it, and the poller reports that (a
     * completion backend's poll included, which must end before the
     * connection's handle can wait on another socket). The deadline is a
     * guard should that event not come. (Only Windows has a backend that
     * connects itself, connect_to, and it takes the branch above.)
     */
    d->timed_out = true;
    shutdown(c->io.fd, SHUT_RDWR);
    evn__conn_deadline(c, d->timeout_ms);
    return true;
#endif
}

void evn__dial_free(struct evn_conn *c)
{
    struct evn__dial *d = c->x->dial;
    evn__resolve_drop(d);
    evn__addrs_unref(d->addrs);
    evn__free(d->url);
    evn__free(d);
    c->x->dial = NULL;
}

/* evn_connect to a host name: the connection is made now, without a
 * socket, and the lookup started; see try_next for what follows. */
static int dial(evn_server *srv, struct evn_loop *loop, const char *url, const struct evn__url *u,
                int64_t timeout_ms, void *udata, evn_id *id)
{
    struct evn__tls *tls = NULL;
#ifdef EVN_HAVE_TLS
    int rc;
    if (u->tls && (rc = evn__tls_client_new(srv, loop->index, -1, u, url, &tls)) < 0)
        return rc;
#endif
    size_t hl = strlen(u->host) + 1;
    struct evn__dial *d = evn__calloc(1, sizeof *d + hl);
    char *durl = d ? evn__strdup(url) : NULL;
    struct evn_conn *c = NULL;
    if (durl) {
        atomic_fetch_add_explicit(&loop->nconns, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv->total_conns, 1, memory_order_relaxed);
        c = evn__conn_new(loop, -1, EVN__LISTENER_OUTBOUND, NULL, 0,
                          EVN__C_CONNECTING | EVN__C_UNREG);
        if (c && !evn__conn_ext(c)) {
            evn__conn_discard(c);
            c = NULL;
        }
    }
    if (!c) {
#ifdef EVN_HAVE_TLS
        if (tls)
            evn__tls_client_discard(tls);
#endif
        evn__free(durl);
        evn__free(d);
        evn__set_errmsg("%s: out of memory", url);
        return -ENOMEM;
    }
    c->udata = udata;
    memcpy(d->host, u->host, hl);
    d->url = durl;
    d->c = c;
    d->port = u->port;
    d->family = u->family;
    /* A handshake must not wait forever (see evn_connect). */
    if (tls && timeout_ms == 0)
        timeout_ms = evn__tls_handshake_ms(srv);
    d->timeout_ms = timeout_ms;
    c->x->dial = d;
#ifdef EVN_HAVE_TLS
    if (tls)
        evn__tls_attach(c, tls);
#endif
    int err = 0;
    if (timeout_ms > 0 && evn__conn_deadline(c, timeout_ms) < 0)
        err = -ENOMEM;
    if (!err && (err = evn__resolve(loop, d)) < 0 && err != -ENOMEM)
        evn__set_errmsg("%s: cannot look %s up: %s", url, d->host, evn_strerror(err));
    if (err < 0) {
        if (err == -ENOMEM)
            evn__set_errmsg("%s: out of memory", url);
        evn__conn_discard(c);
        return err;
    }
    if (id)
        *id = evn_conn_id(c);
    return 0;
}

int evn_connect(evn_server *srv, const char *url, int64_t timeout_ms, void *udata, evn_id *id)
{
    struct evn_loop *loop = evn__cur_loop;
    char err[256];
    if (!srv || !loop || loop->srv != srv) {
        evn__set_errmsg("evn_connect: call it from a callback of this server");
        return -EPERM;
    }
    if (timeout_ms < 0) {
        evn__set_errmsg("evn_connect: negative timeout");
        return -EINVAL;
    }
    struct evn__url u;
    int rc = evn__url_parse_outbound(url, &u, err, sizeof err);
    if (rc < 0) {
        evn__set_errmsg("%s", err);
        return rc;
    }
#ifndef EVN_HAVE_TLS
    if (u.tls) {
        evn__set_errmsg("%s: tls:// needs evn built with OpenSSL (EVN_TLS)", url);
        return -ENOTSUP;
    }
#endif
    struct sockaddr_storage ss;
    socklen_t len;
    if ((rc = numeric_addr(url, &u, &ss, &len)) < 0)
        return rc;
    if (rc == 1)
        return dial(srv, loop, url, &u, timeout_ms, udata, id);

    int fd = stream_socket(ss.ss_family, u.proto == EVN__TCP);
    if (fd < 0) {
        evn__set_errmsg("%s: socket: %s", url, evn_strerror(fd));
        return fd;
    }
    /* The session first: a bad CA or certificate file is reported before
     * any packet leaves. */
    struct evn__tls *tls = NULL;
#ifdef EVN_HAVE_TLS
    if (u.tls && (rc = evn__tls_client_new(srv, loop->index, fd, &u, url, &tls)) < 0) {
        evn__sock_close(fd);
        return rc;
    }
#endif
    /* A backend that connects itself starts once the connection exists. */
    bool by_backend = loop->be->connect_to && u.proto == EVN__TCP;
    if (!by_backend && connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
        rc = -errno;
        evn__set_errmsg("%s: connect: %s", url, evn_strerror(rc));
#ifdef EVN_HAVE_TLS
        if (tls)
            evn__tls_client_discard(tls);
#endif
        evn__sock_close(fd);
        return rc;
    }
    atomic_fetch_add_explicit(&loop->nconns, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->total_conns, 1, memory_order_relaxed);
    struct evn_conn *c =
        evn__conn_new(loop, fd, EVN__LISTENER_OUTBOUND, (const union evn__ip_addr *)&ss, len,
                      EVN__C_CONNECTING | (by_backend ? EVN__C_UNREG : 0));
    if (c)
        c->udata = udata;
    if (c && tls) {
        /* A handshake must not wait forever: with no timeout given, the
         * server's handshake timeout bounds it all. */
        if (!evn__conn_ext(c)) {
            evn__conn_discard(c);
            c = NULL;
        } else {
#ifdef EVN_HAVE_TLS
            evn__tls_attach(c, tls);
#endif
            tls = NULL;
            if (timeout_ms == 0)
                timeout_ms = evn__tls_handshake_ms(srv);
        }
    }
    if (c && timeout_ms > 0 && evn__conn_deadline(c, timeout_ms) < 0) {
        evn__conn_discard(c);
        c = NULL;
    }
    if (!c) {
#ifdef EVN_HAVE_TLS
        if (tls)
            evn__tls_client_discard(tls);
#endif
        evn__set_errmsg("%s: out of memory", url);
        return -ENOMEM;
    }
    if (by_backend && (rc = loop->be->connect_to(loop, &c->io, (struct sockaddr *)&ss, len)) < 0) {
        evn__set_errmsg("%s: connect: %s", url, evn_strerror(rc));
        evn__conn_discard(c);
        return rc;
    }
    if (id)
        *id = evn_conn_id(c);
    return 0;
}
