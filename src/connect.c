/*
 * Outbound connections. The address must be numeric (or a unix path), so
 * nothing here can block the loop; the connect itself is non-blocking and
 * finishes when the socket turns writable (conn.c, finish_connect). A tls://
 * connection gets its client session here (tls.c) and its handshake runs in
 * the loop once connected, under the same deadline, before opened fires.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Fill sa from a parsed URL; -EINVAL with a message for what cannot be. */
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
    evn__set_errmsg("%s: '%s' is not a numeric %s address (evn_connect resolves no names)", url,
                    u->host,
                    u->family == AF_INET    ? "IPv4"
                    : u->family == AF_INET6 ? "IPv6"
                                            : "IP");
    return -EINVAL;
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

    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        evn__set_errmsg("%s: socket: %s", url, evn_strerror(rc));
        return rc;
    }
#ifdef EVN__NEED_FCNTL
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    evn__set_nonblock(fd, true);
#endif
    int one = 1;
    if (u.proto == EVN__TCP)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* The session first: a bad CA or certificate file is reported before
     * any packet leaves. */
    struct evn__tls *tls = NULL;
#ifdef EVN_HAVE_TLS
    if (u.tls && (rc = evn__tls_client_new(srv, loop->index, fd, &u, url, &tls)) < 0) {
        close(fd);
        return rc;
    }
#endif
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
        rc = -errno;
        evn__set_errmsg("%s: connect: %s", url, evn_strerror(rc));
#ifdef EVN_HAVE_TLS
        if (tls)
            evn__tls_client_discard(tls);
#endif
        close(fd);
        return rc;
    }
    atomic_fetch_add_explicit(&loop->nconns, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->total_conns, 1, memory_order_relaxed);
    struct evn_conn *c = evn__conn_new(loop, fd, EVN__LISTENER_OUTBOUND,
                                       (const union evn__ip_addr *)&ss, len, EVN__WRITE);
    if (c) {
        c->flags |= EVN__C_CONNECTING;
        c->udata = udata;
    }
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
                timeout_ms = srv->ev.tls_handshake_timeout_ms > 0
                                 ? srv->ev.tls_handshake_timeout_ms
                                 : EVN__TLS_HANDSHAKE_MS;
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
    if (id)
        *id = evn_conn_id(c);
    return 0;
}
