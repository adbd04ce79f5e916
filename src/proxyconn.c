/*
 * The PROXY protocol on connections (the parser and encoder are
 * proxyproto.c's).
 *
 * Inbound: a connection of a proxy= listener starts in a stage of its own,
 * a transport that reads nothing for the application. Until its header is
 * read it is not opened, and the backend only tells of readability, also on
 * a completion backend: the header is taken with recv() here, so that
 * whatever follows it stays in the socket for the next reader, the TLS
 * handshake or the connection's own input (by completions there, once the
 * stage is over). Each time the socket is readable the stage peeks at what
 * has come, as much as a header can be long; the parser says whether it is
 * a header, the start of one, or not one. A start is taken off the socket
 * and kept (in the extension's kept-input buffer, unused before opened);
 * a whole header is taken off exactly, not a byte further. So a header
 * that comes in one piece, the usual case, costs a peek and a read into the
 * loop's buffer, and no allocation.
 *
 * A header that names a TCP client (v1 TCP4/TCP6, v2 PROXY over IPv4 or
 * IPv6, stream or datagram) replaces the socket's peer as the connection's
 * remote address; one without (v2 LOCAL or UNSPEC, v1 UNKNOWN, unix
 * addresses) leaves the socket's peer. The local address stays the socket's.
 *
 * Connections refused here are closed without any event, like an accepted
 * TLS connection whose handshake fails, and counted in the loop's
 * refused_proxy: bytes that are not a header of an accepted version, a
 * header that breaks the specification or is longer than the cap, one cut
 * short by the peer's end of input, one not complete within the listener's
 * proxy_timeout (the check is in conn.c's timer), and any connection from a
 * peer outside proxy_from, which is refused before anything is read. A peer
 * that closes before sending a byte is not counted: load balancers' health
 * checks and port scanners do that.
 *
 * Outbound: evn_connect_proxy_header puts a header at the head of an
 * outbound connection's output, marked EVN__C_PROXYHDR; once connected, it
 * goes out first with a plain send(), ahead of a TLS handshake and of
 * anything the application wrote.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The stage's transport: the connection code calls read and writev only
 * for an opened connection, which one in this stage never is. */
static ssize_t stage_read(struct evn_conn *c, char *buf, size_t len)
{
    errno = EAGAIN;
    return -1;
}

static ssize_t stage_writev(struct evn_conn *c, const struct iovec *iov, int n, size_t *want)
{
    *want = 0;
    errno = EAGAIN;
    return -1;
}

static void take_header(struct evn_conn *c);

static void stage_ready(struct evn_conn *c, int mask)
{
    take_header(c);
}

/* The bytes kept so far are in the extension's kept input, which the
 * connection's close frees. */
static void stage_release(struct evn_conn *c, bool notify)
{
}

const struct evn__transport evn__proxy_transport = {
    .read = stage_read,
    .writev = stage_writev,
    .ready = stage_ready,
    .release = stage_release,
};

static struct evn__listener *listener_of(const struct evn_conn *c)
{
    return &c->loop->srv->listeners[c->listener];
}

/* c did not give a header it may give: count it, close it. */
static void refuse(struct evn_conn *c)
{
    evn__stat_add(&c->loop->stats.refused_proxy, 1);
    evn__conn_close(c, -EPROTO);
}

/* The header is taken: c becomes what its listener makes. more: bytes
 * that came after it are already in the socket. */
static void stage_done(struct evn_conn *c, const struct evn__proxy_hdr *h, bool more)
{
    struct evn_loop *loop = c->loop;
    struct evn__listener *l = listener_of(c);
    int fam = h->src.ss_family;
    if (h->command == EVN__PROXY_CMD_PROXY && (fam == AF_INET || fam == AF_INET6)) {
        size_t n = fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        memcpy(&c->peer, &h->src, n);
        c->peerlen = (uint8_t)n;
    }
    evn__conn_drop_input(c);
    evn__conn_set_tp(c, &evn__plain_transport);
    evn__conn_deadline(c, 0);
#ifdef EVN_HAVE_TLS
    if (l->tls) {
        /* On the poller for the handshake's first read, then TLS as usual,
         * under its own deadline from now on. */
        evn__conn_set_flags(c, 0, EVN__C_UNREG);
        evn__tls_accept(c, l);
        return;
    }
#endif
    (void)l;
    /* Not reading any more by readiness: a completion backend receives the
     * rest, starting with what followed the header. */
    uint32_t cq = evn__loop_completes(loop) ? EVN__C_CQ : 0;
    c->flags &= ~(uint32_t)EVN__C_OPENING;
    evn__conn_tpwait(c, 0);
    evn__conn_set_flags(c, cq, EVN__C_UNREG);
    evn_id id = evn_conn_id(c);
    evn__conn_opened(c);
    /* The bytes after the header are read now, as the accept fast path
     * reads a connection's first bytes, rather than on the poller's word. */
    if (more && !cq && (c = evn__conn_lookup(loop, id)))
        evn__conn_ready(c, EVN__READ);
}

/* recv() retried on EINTR. */
static ssize_t recv_some(int fd, void *buf, size_t len, int flags)
{
    ssize_t n;
    do
        n = recv(fd, buf, len, flags);
    while (n < 0 && errno == EINTR);
    return n;
}

/*
 * The socket is readable: look at what has come after the bytes kept so
 * far, and take the header, or the start of one, off the socket.
 */
static void take_header(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    struct evn__conn_ext *x = c->x;
    size_t have = x->in_len;
    char *buf = have ? x->in : loop->conns.rbuf;
    ssize_t n = recv_some(c->io.fd, buf + have, EVN__PROXY_MAX - have, MSG_PEEK);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            evn__conn_close(c, -errno);
        return;
    }
    if (n == 0) {
        /* Gone before a byte (a health check), or in the middle of one. */
        if (have)
            refuse(c);
        else
            evn__conn_close(c, 0);
        return;
    }
    struct evn__proxy_hdr h;
    ssize_t len = evn__proxy_parse(buf, have + (size_t)n, listener_of(c)->url.proxy, &h, NULL);
    /* The parser refuses a start that cannot fit under the cap; all of
     * it here without an end would be a header too long all the same. */
    if (len < 0 || (len == 0 && have + (size_t)n >= EVN__PROXY_MAX)) {
        refuse(c);
        return;
    }
    /* Incomplete: every byte seen is the header's; complete: exactly its
     * bytes. The read takes the very bytes the peek saw, into the same
     * place. */
    size_t take = len == 0 ? (size_t)n : (size_t)len - have;
    char *to = buf + have;
    if (len == 0 && !have) {
        if (!(x->in = evn__malloc(EVN__PROXY_MAX))) {
            evn__conn_close(c, -ENOMEM);
            return;
        }
        x->in_cap = EVN__PROXY_MAX;
        to = x->in;
    }
    ssize_t got = recv_some(c->io.fd, to, take, 0);
    if (got != (ssize_t)take) {
        evn__conn_close(c, got < 0 ? -errno : -EIO);
        return;
    }
    if (len == 0) {
        x->in_len += (uint32_t)take;
        return;
    }
    stage_done(c, &h, have + (size_t)n > (size_t)len);
}

void evn__proxy_accept(struct evn_conn *c, struct evn__listener *l)
{
    int ms = l->url.proxy_timeout > 0 ? l->url.proxy_timeout : EVN__PROXY_TIMEOUT_MS;
    c->flags |= EVN__C_OPENING;
    /* The header's transport lives in the ext, as the deadline below does. */
    if (evn__conn_set_tp(c, &evn__proxy_transport) < 0) {
        evn__conn_close(c, -ENOMEM);
        return;
    }
    evn__conn_tpwait(c, EVN__READ);
    /* Only the balancers may name a client; anyone else could pose as any
     * address. The list is for TCP listeners, whose peers are kept. */
    if (l->url.proxy_from.n &&
        (!c->peerlen || !evn__proxy_cidrs_match(&l->url.proxy_from, &c->peer.sa))) {
        refuse(c);
        return;
    }
    if (evn__conn_deadline(c, ms) < 0) {
        evn__conn_close(c, -ENOMEM);
        return;
    }
    struct evn_loop *loop = c->loop;
    evn_id id = evn_conn_id(c);
    /* The header usually comes with the connection: try at once, and only
     * then, if it is still awaited, put the socket on the poller. */
    take_header(c);
    if ((c = evn__conn_lookup(loop, id)) && evn__conn_tp(c) == &evn__proxy_transport)
        evn__conn_set_flags(c, 0, EVN__C_UNREG);
}

/* ---- outbound ---- */

static bool is_ip(const struct sockaddr *sa)
{
    return sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

int evn_connect_proxy_header(evn_server *srv, evn_id id, int version, const struct sockaddr *src,
                             const struct sockaddr *dst)
{
    struct evn_loop *loop = evn__cur_loop;
    if (!srv || !loop || loop->srv != srv) {
        evn__set_errmsg("evn_connect_proxy_header: call it from a callback of this server");
        return -EPERM;
    }
    if (version != EVN_PROXY_V1 && version != EVN_PROXY_V2) {
        evn__set_errmsg("evn_connect_proxy_header: version %d is neither EVN_PROXY_V1 nor "
                        "EVN_PROXY_V2",
                        version);
        return -EINVAL;
    }
    if ((src == NULL) != (dst == NULL)) {
        evn__set_errmsg("evn_connect_proxy_header: give both addresses or neither");
        return -EINVAL;
    }
    if (src && (!is_ip(src) || !is_ip(dst))) {
        evn__set_errmsg("evn_connect_proxy_header: the addresses must be IPv4 or IPv6");
        return -EAFNOSUPPORT;
    }
    struct evn_conn *c = evn__conn_lookup(loop, id);
    if (!c || c->listener != EVN__LISTENER_OUTBOUND) {
        evn__set_errmsg("evn_connect_proxy_header: no outbound connection of this loop has "
                        "that id");
        return -EINVAL;
    }
    if (!(c->flags & EVN__C_CONNECTING)) {
        evn__set_errmsg("evn_connect_proxy_header: the connection is already connected");
        return -EISCONN;
    }
    if (c->flags & EVN__C_PROXYHDR) {
        evn__set_errmsg("evn_connect_proxy_header: the connection has a header already");
        return -EALREADY;
    }
    char hdr[EVN__PROXY_ENCODE_MAX];
    ssize_t n = evn__proxy_encode(hdr, sizeof hdr, version, src == NULL, src, dst);
    if (n < 0)
        return (int)n;
    /* A chunk of its own, exactly full, so that no later write joins it. */
    struct evn__chunk *ch = evn__malloc(sizeof *ch + (size_t)n);
    if (!ch) {
        evn__set_errmsg("evn_connect_proxy_header: out of memory");
        return -ENOMEM;
    }
    memset(ch, 0, sizeof *ch);
    ch->buf = ch->data;
    ch->len = ch->cap = (size_t)n;
    memcpy(ch->data, hdr, (size_t)n);
    ch->next = c->out_head;
    c->out_head = ch;
    if (!c->out_tail)
        c->out_tail = ch;
    c->out_bytes += (size_t)n;
    c->flags |= EVN__C_PROXYHDR;
    return 0;
}

bool evn__proxy_send_header(struct evn_conn *c)
{
    struct evn__chunk *ch = c->out_head;
    ssize_t n;
    c->flags &= ~(uint32_t)EVN__C_PROXYHDR;
    do
        n = send(c->io.fd, ch->buf, ch->len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    /* A socket just connected has room for a few hundred bytes: a short
     * send would mean something is badly wrong with it. */
    if (n != (ssize_t)ch->len) {
        evn__conn_close(c, n < 0 ? -errno : -ENOBUFS);
        return false;
    }
    c->out_head = ch->next;
    if (!c->out_head)
        c->out_tail = NULL;
    c->out_bytes -= ch->len;
    evn__chunk_release(c->loop, ch, 0);
    return true;
}
