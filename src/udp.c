/*
 * UDP: a udp:// listener's socket on a loop, and the pseudo-connection its
 * data callbacks get. Each datagram is one data event; what the callback
 * writes goes back to the sender as one datagram. There are no opened or
 * closed events, and no ids, timers or flow control. Datagrams are read
 * and sent by readiness (recvfrom, sendmsg), or by a backend that does it
 * itself (recv_dgram, send_dgram: iocp's WSARecvFrom and WSASendTo), which
 * hands each one over in its own buffer.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Datagrams received per readiness event, so one busy socket cannot hold
 * the loop. */
#define EVN__UDP_BATCH 64
/* Pieces of one reply: what one data event writes. */
#define EVN__UDP_IOV 64

struct evn_conn *evn__udp_conn_new(struct evn_loop *loop, struct evn__lsock *ls)
{
    struct evn_conn *c = evn__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->flags = EVN__C_UDP;
    c->loop = loop;
    c->listener = (uint16_t)ls->l->index;
    c->io.fd = ls->io.fd;
    return c;
}

void evn__udp_conn_free(struct evn_conn *c)
{
    while (c->out_head) {
        struct evn__chunk *ch = c->out_head;
        c->out_head = ch->next;
        evn__chunk_release(c->loop, ch, -ECONNABORTED);
    }
    evn__free(c);
}

/* The reply to the current datagram: what the callback wrote, as one
 * datagram, sent here or by the backend on the socket's handle `by`; one
 * that cannot be sent now is dropped, as UDP would. */
static void reply(struct evn_conn *c, struct evn__io *by)
{
    struct iovec iov[EVN__UDP_IOV];
    int i = 0;
    for (struct evn__chunk *ch = c->out_head; ch && i < EVN__UDP_IOV; ch = ch->next, i++)
        iov[i] = (struct iovec){ch->buf + ch->off, ch->len - ch->off};
    ssize_t r;
    if (by) {
        r = c->loop->be->send_dgram(c->loop, by, iov, i, &c->peer.sa, c->peerlen);
    } else {
        struct msghdr mh = {.msg_name = &c->peer,
                            .msg_namelen = c->peerlen,
                            .msg_iov = iov,
                            .msg_iovlen = (size_t)i};
        r = sendmsg(c->io.fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (r > 0)
        c->loop->stats.out += (uint64_t)r;
    while (c->out_head) {
        struct evn__chunk *ch = c->out_head;
        c->out_head = ch->next;
        evn__chunk_release(c->loop, ch, 0);
    }
    c->out_tail = NULL;
    c->out_bytes = 0;
    c->flags &= (uint32_t) ~(EVN__C_NOMEM | EVN__C_NOBUFS | EVN__C_RESUMABLE);
}

/* One datagram, from c->peer: its data event, and the reply (by: see
 * reply). false if the callback shut the server down. */
static bool datagram(struct evn_loop *loop, struct evn_conn *c, const char *buf, size_t n,
                     struct evn__io *by)
{
    struct evn_server *srv = loop->srv;
    loop->stats.in += (uint64_t)n;
    evn_action a = EVN_NONE;
    if (srv->ev.data) {
        evn__conn_enter(c);
        loop->conns.cur_len = n;
        a = srv->ev.data(c, buf, n);
        evn__conn_leave(c);
    }
    if (c->out_head)
        reply(c, by);
    if (a == EVN_SHUTDOWN) {
        evn_shutdown(srv);
        return false;
    }
    return true;
}

/* A datagram the backend received (a failed receive is let pass: the
 * backend receives again). */
static void received(struct evn_loop *loop, struct evn_conn *c, const struct evn__fired *f)
{
    struct evn__io *io = f->io;
    const struct evn__dgram *d = f->buf;
    if (f->res < 0)
        return;
    size_t plen = (size_t)d->from.len <= sizeof c->peer ? (size_t)d->from.len : sizeof c->peer;
    memcpy(&c->peer, &d->from.addr, plen);
    c->peerlen = (uint8_t)plen;
    datagram(loop, c, d->data, (size_t)f->res, io);
}

/* Receive a batch of datagrams, one data event each. */
void evn__udp_ready(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
    struct evn__lsock *ls = evn__container_of(io, struct evn__lsock, io);
    struct evn_conn *c = ls->udp;
    if (f->ev == EVN__RELEASED || io->fd < 0)
        return;
    if (f->ev == EVN__DATAGRAM) {
        received(loop, c, f);
        return;
    }
    char *buf = loop->conns.rbuf;
    for (int k = 0; k < EVN__UDP_BATCH; k++) {
        socklen_t plen = sizeof c->peer;
        ssize_t n = recvfrom(io->fd, buf, loop->conns.rbuf_cap, 0, &c->peer.sa, &plen);
        c->peerlen = (uint8_t)((size_t)plen <= sizeof c->peer ? (size_t)plen : sizeof c->peer);
        if (n < 0 || !datagram(loop, c, buf, (size_t)n, NULL))
            return;
    }
}
