/*
 * Connections: reading into the loop's buffer, the data callback, queued
 * output and its flushing, kept input, close and detach, and UDP.
 *
 * The hot path for a request that fits one read is: one read into the loop's
 * buffer, the callback, its output copied into a pooled chunk, one send. No
 * allocation, no poller change; the poller hears of a connection again only
 * when its socket is full.
 *
 * TLS connections (tls.c does the OpenSSL calls) and queues holding file
 * regions (evn_sendfile, sendfile.c) take the same path with one test more:
 * the EVN__C_SLOWOUT flag sends their output through write_general(), and a
 * TLS connection's reads go through read_tls(). The states a plain
 * connection never has (connecting, handshaking, a TLS read waiting to write)
 * share one flag test in interest() and evn__conn_ready().
 */
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define EVN__CHUNK_SIZE (16 * 1024 - sizeof(struct evn__chunk))
#define EVN__POOL_MAX 64
#define EVN__IOV_MAX 64
#define EVN__UDP_BATCH 64
#define EVN__OUT_HIGH (4u << 20)
#define EVN__OUT_LOW (1u << 20)
/* Fairness: at most this much is sent to one connection per loop turn. */
#define EVN__WRITE_PER_TURN (1u << 20)
/* How long a lingering close waits for the peer's end-of-file. */
#define EVN__LINGER_MS 2000

/* Done with a chunk: status is 0 if all of it was sent, else why not. */
void evn__chunk_release(struct evn_loop *loop, struct evn__chunk *ch, int status)
{
    if (ch->done) {
        ch->done(ch->buf, status, ch->arg);
        evn__free(ch);
    } else if (ch->cap == EVN__CHUNK_SIZE && loop->npool < EVN__POOL_MAX) {
        ch->next = loop->pool;
        loop->pool = ch;
        loop->npool++;
    } else {
        evn__free(ch);
    }
}

static struct evn__chunk *chunk_get(struct evn_loop *loop, size_t want)
{
    struct evn__chunk *ch;
    if (want <= EVN__CHUNK_SIZE && loop->pool) {
        ch = loop->pool;
        loop->pool = ch->next;
        loop->npool--;
    } else {
        size_t cap = want <= EVN__CHUNK_SIZE ? EVN__CHUNK_SIZE : want;
        ch = evn__malloc(sizeof *ch + cap);
        if (!ch)
            return NULL;
        ch->cap = cap;
    }
    ch->next = NULL;
    ch->buf = ch->data;
    ch->done = NULL;
    ch->off = ch->len = 0;
    return ch;
}

void evn__chunk_pool_free(struct evn_loop *loop)
{
    while (loop->pool) {
        struct evn__chunk *ch = loop->pool;
        loop->pool = ch->next;
        evn__free(ch);
    }
    loop->npool = 0;
}

static void out_clear(struct evn_conn *c, int status)
{
    while (c->out_head) {
        struct evn__chunk *ch = c->out_head;
        c->out_head = ch->next;
        evn__chunk_release(c->loop, ch, status);
    }
    c->out_tail = NULL;
    c->out_bytes = 0;
}

static void in_clear(struct evn_conn *c)
{
    evn__free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

static int interest(const struct evn_conn *c)
{
    if (c->flags & (EVN__C_CONNECTING | EVN__C_HANDSHAKE | EVN__C_TLS_RWANTW | EVN__C_UNREG)) {
        /* Not on the poller yet (accept_fast): nothing to change there. */
        if (c->flags & EVN__C_UNREG)
            return 0;
        if (c->flags & EVN__C_HANDSHAKE)
            return c->flags & EVN__C_TLS_HSW ? EVN__WRITE : EVN__READ;
        /* Connecting, or a TLS read that must write first: reading before the
         * socket takes the write would only spin. */
        return EVN__WRITE;
    }
    return (c->flags & (EVN__C_RDOFF | EVN__C_PAUSED | EVN__C_HOLD | EVN__C_SPLWAIT) ? 0
                                                                                     : EVN__READ) |
           (c->flags & EVN__C_WANTW ? EVN__WRITE : 0);
}

static void queue_reread(struct evn_conn *c);

static void set_flags(struct evn_conn *c, uint32_t set, uint32_t clear)
{
    int before = interest(c);
    c->flags = (c->flags | set) & ~clear;
    int after = interest(c);
    if (before != after) {
        /* With no interest at all the socket leaves the poller: pollers report
         * hang-ups whatever the mask, which would wake a held connection, or
         * spin a level-triggered loop. */
        if (!after)
            c->loop->be->del(c->loop, c->fd, before, false);
        else if (!before)
            c->loop->be->add(c->loop, c->fd, after);
        else
            c->loop->be->mod(c->loop, c->fd, before, after);
        /* Reading resumes: input TLS decrypted earlier may be waiting inside
         * it, where the poller cannot see it. */
        if (c->tls && (after & ~before & EVN__READ) && !(c->flags & EVN__C_HANDSHAKE) &&
            evn__tls_pending(c))
            queue_reread(c);
    }
}

struct evn_conn *evn__conn_new(struct evn_loop *loop, int fd, uint32_t listener,
                               const union evn__ip_addr *peer, socklen_t peerlen, int mask)
{
    struct evn_server *srv = loop->srv;
    struct evn_conn *c = evn__calloc(1, sizeof *c);
    int rc = c ? 0 : -ENOMEM;
#ifndef __linux__
    /* Linux copies TCP_NODELAY from the listener; elsewhere set it here. */
    int one = 1;
    if (c && listener != EVN__LISTENER_OUTBOUND && srv->listeners[listener].url.proto == EVN__TCP)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
#endif
    if (c) {
        c->h.kind = EVN__H_CONN;
        c->fd = fd;
        c->loop = loop;
        c->listener = listener;
        if (peerlen <= sizeof c->peer && peerlen > sizeof(sa_family_t) &&
            peer->sa.sa_family != AF_UNIX) {
            memcpy(&c->peer, peer, peerlen);
            c->peerlen = (uint8_t)peerlen;
        }
        c->seq = loop->next_seq++;
        if (c->seq == 0)
            c->seq = loop->next_seq++;
        if (srv->ev.flow == EVN_FLOW_MANUAL)
            c->flags |= EVN__C_MANUAL;
        c->out_high = srv->ev.out_high ? srv->ev.out_high : EVN__OUT_HIGH;
        c->out_low = srv->ev.out_high ? srv->ev.out_low : EVN__OUT_LOW;
        rc = evn__loop_track(loop, fd, &c->h);
        if (rc == 0 && mask && (rc = loop->be->add(loop, fd, mask)) < 0)
            loop->table[fd] = NULL;
    }
    if (rc < 0) {
        /* Give the slot back before the client can see the close: it may
         * connect again at once and must not find the server full. */
        evn__free(c);
        atomic_fetch_sub_explicit(&loop->nconns, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&srv->total_conns, 1, memory_order_relaxed);
        close(fd);
        return NULL;
    }
    loop->nconns_local++;
    if (srv->ev.idle_timeout_ms > 0)
        evn_conn_set_idle_timeout(c, srv->ev.idle_timeout_ms);
    return c;
}

static void fire_opened(struct evn_conn *c)
{
    struct evn_server *srv = c->loop->srv;
    bool alive = true;
    if (srv->ev.opened) {
        c->loop->cur = c;
        evn_action a = srv->ev.opened(c);
        c->loop->cur = NULL;
        alive = evn__conn_act(c, a);
    } else if (c->out_head) {
        alive = evn__conn_act(c, EVN_NONE);
    }
    /* Handed over after the drain began, or its handshake or connect ended
     * since: it has not been told yet. */
    if (alive && c->loop->drain_started)
        evn__conn_opened_draining(c);
}

/*
 * One step of a TLS handshake. When it completes, the handshake deadline is
 * cleared and opened fires; input that came with the handshake's last flight
 * may already sit decrypted inside OpenSSL, so it is read at the end of the
 * turn. A handshake that fails closes the connection without any event.
 */
static void handshake(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    int rc = evn__tls_handshake(c);
    if (rc == EVN__TLS_WANT_READ) {
        set_flags(c, 0, EVN__C_TLS_HSW);
        return;
    }
    if (rc == EVN__TLS_WANT_WRITE) {
        set_flags(c, EVN__C_TLS_HSW, 0);
        return;
    }
    if (rc < 0) {
        evn__conn_close(c, rc);
        return;
    }
    evn_id id = evn_conn_id(c);
    c->deadline_at = 0;
    evn__timer_update(c);
    set_flags(c, 0, EVN__C_HANDSHAKE | EVN__C_TLS_HSW);
    fire_opened(c);
    c = evn__conn_lookup(loop, id);
    if (c && c->tls && !(c->flags & (EVN__C_CLOSING | EVN__C_DETACHING)) && evn__tls_pending(c))
        queue_reread(c);
}

/* A connection accepted on a tls:// listener: handshake first, within the
 * handshake timeout; opened fires after. */
static void tls_start(struct evn_conn *c, struct evn__listener *l)
{
    struct evn_loop *loop = c->loop;
    int64_t ms = loop->srv->ev.tls_handshake_timeout_ms;
    c->flags |= EVN__C_HANDSHAKE | EVN__C_SLOWOUT;
    int rc = evn__tls_new(c, l);
    if (rc < 0) {
        evn__conn_close(c, rc);
        return;
    }
    loop->now_ms = evn__now_ms();
    c->deadline_at = loop->now_ms + (ms > 0 ? ms : EVN__TLS_HANDSHAKE_MS);
    evn__timer_update(c);
    /* The ClientHello has often arrived with the connection: try at once. */
    handshake(c);
}

static void read_ready(struct evn_conn *c);

/*
 * The accept fast path, for a plain TCP listener with deferaccept: the kernel
 * hands over a connection only once its first bytes have arrived, so they are
 * read at once, before the socket is ever registered with the poller. A
 * request answered in full by a connection that then closes costs accept4,
 * read, send and close, and no poller call at all. Whatever is left (the
 * connection stays open, output is pending, the read found nothing because
 * deferaccept gave up waiting) is registered at the end with the interest
 * the connection has by then; until that, interest() is 0, so set_flags
 * leaves the poller alone.
 */
static void accept_fast(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    evn_id id = evn_conn_id(c);
    c->flags |= EVN__C_UNREG;
    fire_opened(c);
    if (!(c = evn__conn_lookup(loop, id)))
        return;
    if (!(c->flags & (EVN__C_RDOFF | EVN__C_HOLD | EVN__C_PAUSED | EVN__C_SPLICE)))
        read_ready(c);
    if (!(c = evn__conn_lookup(loop, id)))
        return;
    set_flags(c, 0, EVN__C_UNREG | EVN__C_FRESH);
}

int evn__conn_open(struct evn_loop *loop, int fd, uint32_t listener, const union evn__ip_addr *peer,
                   socklen_t peerlen)
{
    struct evn__listener *l =
        listener != EVN__LISTENER_OUTBOUND ? &loop->srv->listeners[listener] : NULL;
    bool fast = l && !l->tls && l->url.proto == EVN__TCP && l->url.deferaccept > 0;
    struct evn_conn *c = evn__conn_new(loop, fd, listener, peer, peerlen, fast ? 0 : EVN__READ);
    if (!c)
        return -ENOMEM;
    if (l && l->tls) {
        tls_start(c, l);
        return 0;
    }
    if (fast)
        accept_fast(c);
    else
        fire_opened(c);
    return 0;
}

/* An outbound connection's socket became writable (or failed). */
static void finish_connect(struct evn_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        evn__conn_close(c, -err);
        return;
    }
    if (c->tls) {
        /* tls://: the handshake comes next, under the same deadline. */
        set_flags(c, EVN__C_HANDSHAKE, EVN__C_CONNECTING);
        handshake(c);
        return;
    }
    c->deadline_at = 0;
    evn__timer_update(c);
    set_flags(c, 0, EVN__C_CONNECTING);
    fire_opened(c);
}

/* Remove c from the loop's bookkeeping (not from the poller); output still
 * queued is dropped with `status` (for the done callbacks of evn_send_owned). */
static void forget(struct evn_conn *c, int status)
{
    struct evn_loop *loop = c->loop;
    loop->table[c->fd] = NULL;
    loop->nconns_local--;
    atomic_fetch_sub_explicit(&loop->nconns, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&loop->srv->total_conns, 1, memory_order_relaxed);
    evn__timer_remove(c);
    if (c->splice)
        evn__splice_drop(c);
    out_clear(c, status);
    in_clear(c);
    /* A descriptor is free again: listeners paused on EMFILE may resume. */
    if (loop->accept_paused)
        evn__loop_accept_resume(loop);
}

/*
 * Closing a socket that still holds unread input makes the kernel answer with
 * a reset, which also throws away whatever output it had not yet sent. So a
 * clean close with input pending lingers: the application sees closed now,
 * evn sends end-of-file after the output and reads and discards input until
 * the peer's end-of-file or EVN__LINGER_MS, then closes.
 */
static bool should_linger(struct evn_conn *c, int err)
{
    int unread = 0;
    /* EVN__C_FRESH: the read a moment ago, in this same call, found no more
     * input; asking the kernel again now would only narrow the same window. */
    if (err != 0 ||
        (c->flags & (EVN__C_LINGER | EVN__C_EOF | EVN__C_UDP | EVN__C_HANDSHAKE | EVN__C_FRESH)) ||
        atomic_load_explicit(&c->loop->srv->stopping, memory_order_relaxed))
        return false;
    return ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0;
}

static void fire_closed(struct evn_conn *c, int err)
{
    struct evn_server *srv = c->loop->srv;
    if (srv->ev.closed) {
        evn_action a = srv->ev.closed(c, err);
        if (a == EVN_SHUTDOWN)
            evn_shutdown(srv);
    }
}

static void linger(struct evn_conn *c)
{
    c->flags |= EVN__C_CLOSING;
    if (c->splice)
        evn__splice_drop(c);
    out_clear(c, -ECONNABORTED);
    in_clear(c);
    fire_closed(c, 0);
    /* TLS ends here: close_notify, then the rest is discarded unread. */
    if (c->tls)
        evn__tls_free(c, true);
    shutdown(c->fd, SHUT_WR);
    set_flags(c, EVN__C_LINGER,
              EVN__C_RDOFF | EVN__C_PAUSED | EVN__C_HOLD | EVN__C_WANTW | EVN__C_RESUMABLE |
                  EVN__C_TLS_RWANTW);
    c->idle_ms = 0;
    c->loop->now_ms = evn__now_ms();
    c->deadline_at = c->loop->now_ms + EVN__LINGER_MS;
    evn__timer_update(c);
}

void evn__conn_close(struct evn_conn *c, int err)
{
    struct evn_loop *loop = c->loop;
    if (should_linger(c, err)) {
        linger(c);
        return;
    }
    /* Already told (lingering), or never opened (an accepted connection's
     * TLS handshake; evn_connect's own caller does hear of its failure). */
    bool silent = (c->flags & EVN__C_LINGER) ||
                  ((c->flags & EVN__C_HANDSHAKE) && c->listener != EVN__LISTENER_OUTBOUND);
    int mask = interest(c);
    if (mask)
        loop->be->del(loop, c->fd, mask, true);
    forget(c, err ? err : -ECONNABORTED);
    c->flags |= EVN__C_CLOSING;
    /* The callback runs before the close so that address queries still see
     * this socket, not another that reused its number. */
    if (!silent)
        fire_closed(c, err);
    if (c->tls)
        evn__tls_free(c, true);
    close(c->fd);
    evn__free(c);
}

static void detach(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    struct evn_server *srv = loop->srv;
    int mask = interest(c);
    if (mask)
        loop->be->del(loop, c->fd, mask, false);
    forget(c, -ECONNABORTED);
    evn__set_nonblock(c->fd, false);
    if (srv->ev.detached) {
        evn_action a = srv->ev.detached(c, c->fd);
        if (a == EVN_SHUTDOWN)
            evn_shutdown(srv);
    } else {
        close(c->fd);
    }
    evn__free(c);
}

/*
 * Put c on the loop's resume list, served at the end of this turn, unless it
 * is on it already: for drained (EVN__C_RESUME) or to read input waiting
 * inside TLS (EVN__C_REREAD). false if the list could not grow.
 */
static bool resume_push(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    if (c->flags & (EVN__C_RESUME | EVN__C_REREAD))
        return true;
    if (loop->nresume == loop->resume_cap) {
        size_t ncap = loop->resume_cap ? loop->resume_cap * 2 : 64;
        evn_id *nr = evn__realloc(loop->resume, sizeof *nr * ncap);
        if (!nr)
            return false;
        loop->resume = nr;
        loop->resume_cap = ncap;
    }
    loop->resume[loop->nresume++] = evn_conn_id(c);
    return true;
}

/*
 * A list that would bring c back to the loop could not grow, and without it
 * c might never be looked at again: close it with -ENOMEM, at the end of this
 * turn if the resume list has room (evn__conn_resume_all), else once the
 * socket is writable, which needs no memory at all. Either way flush() does
 * the closing.
 */
static void out_of_memory(struct evn_conn *c)
{
    c->flags |= EVN__C_NOMEM;
    set_flags(c, EVN__C_WANTW, 0);
    resume_push(c);
}

static void queue_resume(struct evn_conn *c)
{
    c->flags &= (uint32_t)~EVN__C_RESUMABLE;
    if (c->flags & EVN__C_RESUME)
        return;
    if (resume_push(c))
        c->flags |= EVN__C_RESUME;
    else
        out_of_memory(c);
}

/* Read c again at the end of this turn without waiting for the poller. */
static void queue_reread(struct evn_conn *c)
{
    if (c->flags & EVN__C_REREAD)
        return;
    if (resume_push(c))
        c->flags |= EVN__C_REREAD;
    else
        out_of_memory(c);
}

/*
 * Output is left queued: wait for writability, and past the high-water mark
 * stop reading until it drains to the low-water mark.
 */
static bool wait_writable(struct evn_conn *c)
{
    if (c->out_bytes > c->out_high) {
        uint32_t pause = c->flags & EVN__C_MANUAL ? 0 : EVN__C_PAUSED;
        set_flags(c, EVN__C_WANTW | pause | EVN__C_RESUMABLE, 0);
    } else if ((c->flags & EVN__C_RESUMABLE) && c->out_bytes <= c->out_low) {
        set_flags(c, EVN__C_WANTW, EVN__C_PAUSED);
        queue_resume(c);
    } else {
        set_flags(c, EVN__C_WANTW, 0);
    }
    return true;
}

/*
 * The memory chunks from the head of the queue, up to the first file region
 * or EVN__IOV_MAX of them, in one sendmsg; *want is what was offered.
 */
static ssize_t send_chunks(struct evn_conn *c, size_t *want)
{
    struct iovec iov[EVN__IOV_MAX];
    int k = 0;
    *want = 0;
    for (struct evn__chunk *ch = c->out_head; ch && ch->buf && k < EVN__IOV_MAX; ch = ch->next) {
        iov[k].iov_base = ch->buf + ch->off;
        iov[k].iov_len = ch->len - ch->off;
        *want += iov[k++].iov_len;
    }
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
    return sendmsg(c->fd, &mh, MSG_NOSIGNAL);
}

/*
 * The general output path, for TLS connections and for queues that hold file
 * regions. It sends from the head of the queue: through TLS one chunk at a
 * time, a file region with evn__file_send, or else the memory chunks up to
 * the next file region in one sendmsg. Like the plain sends in flush it
 * returns the bytes sent, with *want what was offered (so that a short count
 * means a full socket), or -1 with errno set.
 */
static ssize_t write_general(struct evn_conn *c, size_t budget, size_t *want)
{
    struct evn__chunk *ch = c->out_head;
    if (!ch->buf)
        return evn__file_send(c, ch, budget, want);
    if (c->tls)
        return evn__tls_sent(evn__tls_write(c, ch->buf + ch->off, ch->len - ch->off), want);
    return send_chunks(c, want);
}

/*
 * Send queued output. Returns false if c is gone (closed, detached). A short
 * send means the socket buffer is full, so it waits for writability at once
 * rather than spend a system call to learn the same.
 */
static bool flush(struct evn_conn *c)
{
    if (c->flags & (EVN__C_NOMEM | EVN__C_NOBUFS)) {
        evn__conn_close(c, c->flags & EVN__C_NOMEM ? -ENOMEM : -ENOBUFS);
        return false;
    }
    if (c->flags & (EVN__C_CONNECTING | EVN__C_HANDSHAKE))
        return true;
    size_t budget = EVN__WRITE_PER_TURN;
    while (c->out_head) {
        ssize_t n;
        size_t want;
        if (c->flags & EVN__C_SLOWOUT) {
            /* Each write may take a whole turn's budget, not just what is
             * left of it, so that a file region after a short header goes
             * out in one sendfile; a turn moves at most twice the budget. */
            n = write_general(c, EVN__WRITE_PER_TURN, &want);
        } else if (!c->out_head->next) {
            struct evn__chunk *ch = c->out_head;
            want = ch->len - ch->off;
            n = send(c->fd, ch->buf + ch->off, want, MSG_NOSIGNAL);
        } else {
            n = send_chunks(c, &want);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return wait_writable(c);
            evn__conn_close(c, -errno);
            return false;
        }
        c->out_bytes -= (size_t)n;
        c->last_active = c->loop->now_ms;
        size_t left = (size_t)n;
        while (left > 0) {
            struct evn__chunk *ch = c->out_head;
            size_t avail = ch->len - ch->off;
            if (left < avail) {
                ch->off += left;
                break;
            }
            left -= avail;
            c->out_head = ch->next;
            evn__chunk_release(c->loop, ch, 0);
        }
        if (!c->out_head) {
            c->out_tail = NULL;
            break;
        }
        /* A short send means the socket is full; a spent budget lets the
         * loop serve others first. Either way, carry on when writable. */
        if ((size_t)n < want || (size_t)n >= budget)
            return wait_writable(c);
        budget -= (size_t)n;
    }
    if (c->flags & (EVN__C_WANTW | EVN__C_PAUSED))
        set_flags(c, 0, EVN__C_WANTW | EVN__C_PAUSED);
    /* A connection spliced into this one waits for its output to be sent. */
    if (c->splice && c->splice->from)
        evn__splice_drained(c);
    if (c->flags & EVN__C_RESUMABLE)
        queue_resume(c);
    if (c->flags & EVN__C_DETACHING) {
        detach(c);
        return false;
    }
    if (c->flags & EVN__C_CLOSING) {
        evn__conn_close(c, c->close_err);
        return false;
    }
    if ((c->flags & (EVN__C_WSHUT | EVN__C_WSHUT_DONE)) == EVN__C_WSHUT) {
        if (c->tls)
            evn__tls_notify(c);
        shutdown(c->fd, SHUT_WR);
        c->flags |= EVN__C_WSHUT_DONE;
    }
    /* Both directions finished: nothing more can happen on it. */
    if ((c->flags & (EVN__C_EOF | EVN__C_WSHUT_DONE)) == (EVN__C_EOF | EVN__C_WSHUT_DONE)) {
        evn__conn_close(c, 0);
        return false;
    }
    return true;
}

bool evn__conn_act(struct evn_conn *c, evn_action a)
{
    /* A callback that left output above high water gets drained once it is
     * down to low water, however fast it then goes out. */
    if (c->out_bytes > c->out_high)
        c->flags |= EVN__C_RESUMABLE;
    switch (a) {
    case EVN_CLOSE:
        if (!c->out_head) {
            evn__conn_close(c, c->close_err);
            return false;
        }
        /* Send first: if it all goes (the usual case for a reply), the
         * connection closes without a poller call to stop reading it. */
        if (!(c->flags & (EVN__C_WANTW | EVN__C_NOMEM | EVN__C_NOBUFS))) {
            c->flags |= EVN__C_CLOSING;
            if (!flush(c))
                return false;
        }
        /* Stop reading: the input is no longer wanted, and a peer's EOF would
         * otherwise keep a level-triggered poller waking while output drains. */
        set_flags(c, EVN__C_CLOSING | EVN__C_RDOFF, 0);
        break;
    case EVN_DETACH:
        /* The TLS session cannot go with the socket, and the socket alone is
         * no use to anyone: refuse, loudly. */
        if (c->tls) {
            evn__conn_close(c, -EPROTONOSUPPORT);
            return false;
        }
        if (!c->out_head) {
            detach(c);
            return false;
        }
        set_flags(c, EVN__C_DETACHING | EVN__C_RDOFF, 0);
        break;
    case EVN_SHUTDOWN:
        evn_shutdown(c->loop->srv);
        break;
    default:
        break;
    }
    if ((c->flags & EVN__C_WANTW) && !(c->flags & (EVN__C_NOMEM | EVN__C_NOBUFS))) {
        /* Still queued: if this callback pushed output past high water,
         * stop reading now rather than at the next writable event. */
        if (c->out_bytes > c->out_high && !(c->flags & (EVN__C_PAUSED | EVN__C_MANUAL)))
            set_flags(c, EVN__C_PAUSED | EVN__C_RESUMABLE, 0);
        return true;
    }
    return flush(c);
}

/* Run the data callback for c over in[0..len), then handle kept input. */
static void deliver(struct evn_conn *c, const char *in, size_t len, bool from_stash)
{
    struct evn_loop *loop = c->loop;
    evn_action a = EVN_NONE;
    c->flags &= (uint32_t)~EVN__C_KEPT;
    c->cur_len = len;
    if (loop->srv->ev.data) {
        loop->cur = c;
        a = loop->srv->ev.data(c, in, len);
        loop->cur = NULL;
    }
    /* Stopped because its output is full, the kept rest is handed back once
     * the output drains (evn__conn_act arms that), even if no more input
     * ever arrives. */
    size_t keep = (c->flags & EVN__C_KEPT) ? c->keep : 0;
    if (keep == 0) {
        if (c->in)
            in_clear(c);
    } else if (from_stash) {
        if (keep != len)
            memmove(c->in, c->in + len - keep, keep);
        c->in_len = keep;
    } else {
        char *nb = evn__malloc(keep > 4096 ? keep : 4096);
        if (!nb) {
            evn__conn_close(c, -ENOMEM);
            return;
        }
        memcpy(nb, in + len - keep, keep);
        c->in = nb;
        c->in_len = keep;
        c->in_cap = keep > 4096 ? keep : 4096;
    }
    /* Spliced during this event: what it kept goes ahead of the splice. */
    if ((c->flags & EVN__C_SPLICE) && c->in_len) {
        evn__splice_write_kept(c);
        in_clear(c);
    }
    evn__conn_act(c, a);
}

/*
 * After end of input, with no eof callback: close once the output is sent,
 * unless the application is waiting for its output to drain (to go on
 * producing, or to take back input it kept), in which case this runs again
 * after that.
 */
static void eof_close(struct evn_conn *c)
{
    if (c->flags & (EVN__C_RESUMABLE | EVN__C_RESUME))
        return;
    if (c->out_head) {
        set_flags(c, EVN__C_CLOSING, 0);
        return;
    }
    evn__conn_close(c, 0);
}

/* read(2) for a TLS connection: the same results, errno included. */
static ssize_t read_tls(struct evn_conn *c, char *buf, size_t room)
{
    ssize_t n = evn__tls_read(c, buf, room);
    if (n > 0) {
        /* The buffer filled with more inside OpenSSL, or the read ran into
         * the end after these bytes: go on at the end of the turn. */
        if (evn__tls_pending(c))
            queue_reread(c);
        return n;
    }
    if (n == 0)
        return 0;
    if (n == EVN__TLS_WANT_WRITE)
        set_flags(c, EVN__C_TLS_RWANTW, 0);
    errno = n == EVN__TLS_WANT_READ || n == EVN__TLS_WANT_WRITE ? EAGAIN : (int)-n;
    return -1;
}

static void read_ready(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    if (c->flags & (EVN__C_LINGER | EVN__C_SPLICE)) {
        if (!(c->flags & EVN__C_LINGER)) {
            evn__splice_pump(c);
            return;
        }
        ssize_t n = read(c->fd, loop->rbuf, loop->rbuf_cap);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            evn__conn_close(c, 0);
        return;
    }
    char *buf;
    size_t room;
    if (c->in_len) {
        /* Append to the kept input, so the callback sees one contiguous run. */
        if (c->in_cap - c->in_len < 16384) {
            size_t ncap = c->in_cap * 2 > c->in_len + 65536 ? c->in_cap * 2 : c->in_len + 65536;
            char *nb = evn__realloc(c->in, ncap);
            if (!nb) {
                evn__conn_close(c, -ENOMEM);
                return;
            }
            c->in = nb;
            c->in_cap = ncap;
        }
        buf = c->in + c->in_len;
        room = c->in_cap - c->in_len;
    } else {
        buf = loop->rbuf;
        room = loop->rbuf_cap;
    }
    ssize_t n = c->tls ? read_tls(c, buf, room) : read(c->fd, buf, room);
    c->last_active = loop->now_ms;
    if (n > 0) {
        if ((c->flags & EVN__C_UNREG) && (size_t)n < room)
            c->flags |= EVN__C_FRESH;
        if (c->in_len) {
            c->in_len += (size_t)n;
            deliver(c, c->in, c->in_len, true);
        } else {
            deliver(c, buf, (size_t)n, false);
        }
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        evn__conn_close(c, -errno);
        return;
    }
    evn__conn_input_end(c);
}

void evn__conn_input_end(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    /* End of input. An application that handles eof decides what follows
     * (half-close); otherwise what is queued still goes out, then the close. */
    set_flags(c, EVN__C_EOF | EVN__C_RDOFF, 0);
    if (loop->srv->ev.eof) {
        loop->cur = c;
        evn_action a = loop->srv->ev.eof(c);
        loop->cur = NULL;
        evn__conn_act(c, a);
        return;
    }
    eof_close(c);
}

/* The states a plain, established connection is never in. */
static void ready_slow(struct evn_conn *c, int mask)
{
    if (c->flags & EVN__C_CONNECTING) {
        finish_connect(c);
        return;
    }
    if (c->flags & EVN__C_HANDSHAKE) {
        handshake(c);
        return;
    }
    /* A TLS read had to write first, and now the socket can take it. */
    set_flags(c, 0, EVN__C_TLS_RWANTW);
    if ((c->flags & EVN__C_WANTW) && !flush(c))
        return;
    if (interest(c) & EVN__READ)
        read_ready(c);
}

void evn__conn_ready(struct evn_conn *c, int mask)
{
    if (c->flags & (EVN__C_CONNECTING | EVN__C_HANDSHAKE | EVN__C_TLS_RWANTW)) {
        ready_slow(c, mask);
        return;
    }
    if ((mask & EVN__WRITE) && (c->flags & EVN__C_WANTW) && !flush(c))
        return;
    if ((mask & EVN__READ) &&
        !(c->flags & (EVN__C_RDOFF | EVN__C_HOLD | EVN__C_PAUSED | EVN__C_SPLWAIT)))
        read_ready(c);
}

void evn__conn_set_flags(struct evn_conn *c, uint32_t set, uint32_t clear)
{
    set_flags(c, set, clear);
}

void evn__conn_reread(struct evn_conn *c)
{
    queue_reread(c);
}

void evn__conn_drop_input(struct evn_conn *c)
{
    in_clear(c);
}

void evn__conn_wake(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    if (c->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_CONNECTING | EVN__C_HANDSHAKE))
        return;
    evn_action a = EVN_NONE;
    if (loop->srv->ev.data) {
        loop->cur = c;
        c->cur_len = 0;
        a = loop->srv->ev.data(c, NULL, 0);
        loop->cur = NULL;
    }
    evn__conn_act(c, a);
}

struct evn_conn *evn__conn_lookup(struct evn_loop *loop, evn_id id)
{
    int fd = (int)((id >> 32) & 0xffffff);
    struct evn__handle *h = fd < loop->table_cap ? loop->table[fd] : NULL;
    if (!h || h->kind != EVN__H_CONN || ((struct evn_conn *)h)->seq != (uint32_t)id)
        return NULL;
    return (struct evn_conn *)h;
}

void evn__conn_flush_dirty(struct evn_loop *loop)
{
    /* Flushing can queue more (a closed callback that writes elsewhere), so
     * walk by index and let the array grow underneath. */
    for (size_t i = 0; i < loop->ndirty; i++) {
        struct evn_conn *c = evn__conn_lookup(loop, loop->dirty[i]);
        if (!c)
            continue;
        c->flags &= (uint32_t)~EVN__C_DIRTY;
        if (!(c->flags & EVN__C_WANTW) || (c->flags & (EVN__C_NOMEM | EVN__C_NOBUFS)))
            flush(c);
    }
    loop->ndirty = 0;
}

static int mark_dirty(struct evn_conn *c);

/*
 * Link ch (if not NULL) at the tail of the output queue and count len more
 * bytes queued. Past high water, from anywhere, drained is owed once the
 * queue drains.
 */
static void out_append(struct evn_conn *c, struct evn__chunk *ch, size_t len)
{
    if (ch) {
        if (c->out_tail)
            c->out_tail->next = ch;
        else
            c->out_head = ch;
        c->out_tail = ch;
    }
    c->out_bytes += len;
    if (c->out_bytes > c->out_high)
        c->flags |= EVN__C_RESUMABLE;
}

void evn__conn_queue_chunk(struct evn_conn *c, struct evn__chunk *ch)
{
    struct evn_server *srv = c->loop->srv;
    if (c->flags & (EVN__C_CLOSING | EVN__C_DETACHING)) {
        evn__chunk_release(c->loop, ch, -ENOTCONN);
        return;
    }
    if (srv->ev.out_cap && c->out_bytes + ch->len > srv->ev.out_cap)
        c->flags |= EVN__C_NOBUFS;
    ch->next = NULL;
    out_append(c, ch, ch->len);
    /* Sent with everything else queued this turn, in one sendmsg. */
    if (!(c->flags & EVN__C_DIRTY) && (!(c->flags & EVN__C_WANTW) || (c->flags & EVN__C_NOBUFS)))
        mark_dirty(c);
}

static int mark_dirty(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    if (loop->ndirty == loop->dirty_cap) {
        size_t ncap = loop->dirty_cap ? loop->dirty_cap * 2 : 64;
        evn_id *nd = evn__realloc(loop->dirty, sizeof *nd * ncap);
        if (!nd) {
            out_of_memory(c);
            return -ENOMEM;
        }
        loop->dirty = nd;
        loop->dirty_cap = ncap;
    }
    loop->dirty[loop->ndirty++] = evn_conn_id(c);
    c->flags |= EVN__C_DIRTY;
    return 0;
}

/*
 * Output that could not be queued would leave a hole in the stream: the
 * connection closes with flag's error (EVN__C_NOMEM or EVN__C_NOBUFS) once
 * its callback returns, or at the end of this turn when written from
 * elsewhere.
 */
static void output_failed(struct evn_conn *c, uint32_t flag)
{
    c->flags |= flag;
    if (c != c->loop->cur && !(c->flags & (EVN__C_DIRTY | EVN__C_UDP)))
        mark_dirty(c);
}

int evn_write(evn_conn *c, const void *buf, size_t len)
{
    if (c->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_WSHUT))
        return -EPIPE;
    if (len == 0)
        return 0;
    struct evn_server *srv = c->loop->srv;
    if (srv->ev.out_cap && c->out_bytes + len > srv->ev.out_cap && !(c->flags & EVN__C_UDP)) {
        output_failed(c, EVN__C_NOBUFS);
        return -ENOBUFS;
    }
    const char *p = buf;
    size_t left = len;
    struct evn__chunk *t = c->out_tail;
    if (t && t->cap > t->len) {
        size_t n = t->cap - t->len < left ? t->cap - t->len : left;
        memcpy(t->buf + t->len, p, n);
        t->len += n;
        p += n;
        left -= n;
    }
    struct evn__chunk *ch = NULL;
    if (left) {
        if (!(ch = chunk_get(c->loop, left))) {
            c->out_bytes += len - left;
            output_failed(c, EVN__C_NOMEM);
            return -ENOMEM;
        }
        memcpy(ch->buf, p, left);
        ch->len = left;
    }
    out_append(c, ch, len);
    if (c != c->loop->cur && !(c->flags & (EVN__C_DIRTY | EVN__C_WANTW | EVN__C_UDP)))
        return mark_dirty(c);
    return 0;
}

/* evn_sendfile and evn_sendfile_owned: with owned, fd is evn's from the
 * call on, so every return that queues no region closes it. */
static int queue_file(evn_conn *c, int fd, off_t offset, size_t length, bool owned)
{
    int rc = 0;
    if (c->flags & EVN__C_UDP)
        rc = -EINVAL;
    else if (c->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_WSHUT))
        rc = -EPIPE;
    if (rc < 0) {
        if (owned && fd >= 0)
            close(fd);
        return rc;
    }
    struct evn__chunk *ch;
    rc = evn__file_chunk(fd, offset, &length, owned, &ch);
    struct evn_server *srv = c->loop->srv;
    if (rc == 0 && ch && srv->ev.out_cap && c->out_bytes + length > srv->ev.out_cap) {
        evn__chunk_release(c->loop, ch, -ENOBUFS);
        rc = -ENOBUFS;
    }
    if (rc == -ENOMEM || rc == -ENOBUFS) {
        output_failed(c, rc == -ENOMEM ? EVN__C_NOMEM : EVN__C_NOBUFS);
        return rc;
    }
    if (rc < 0 || !ch)
        return rc;
    out_append(c, ch, length);
    c->flags |= EVN__C_SLOWOUT;
    if (c != c->loop->cur && !(c->flags & (EVN__C_DIRTY | EVN__C_WANTW)))
        return mark_dirty(c);
    return 0;
}

int evn_sendfile(evn_conn *c, int fd, off_t offset, size_t length)
{
    return queue_file(c, fd, offset, length, false);
}

int evn_sendfile_owned(evn_conn *c, int fd, off_t offset, size_t length)
{
    return queue_file(c, fd, offset, length, true);
}

int evn_keep(evn_conn *c, size_t n)
{
    if (c->loop->cur != c || (c->flags & EVN__C_UDP) || n > c->cur_len)
        return -EINVAL;
    c->keep = n;
    c->flags |= EVN__C_KEPT;
    return 0;
}

struct evn_conn *evn__udp_conn_new(struct evn_loop *loop, uint32_t listener)
{
    struct evn_conn *c = evn__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->h.kind = EVN__H_CONN;
    c->flags = EVN__C_UDP;
    c->loop = loop;
    c->listener = listener;
    c->fd = -1;
    return c;
}

/* Receive a batch of datagrams, one data event each, replying to each sender
 * with what that event wrote, as one datagram. */
void evn__udp_ready(struct evn__lsock *ls)
{
    struct evn_loop *loop = ls->udp->loop;
    struct evn_server *srv = loop->srv;
    struct evn_conn *c = ls->udp;
    c->fd = ls->fd;
    for (int k = 0; k < EVN__UDP_BATCH; k++) {
        socklen_t plen = sizeof c->peer;
        ssize_t n = recvfrom(ls->fd, loop->rbuf, loop->rbuf_cap, 0, &c->peer.sa, &plen);
        c->peerlen = (uint8_t)(plen <= sizeof c->peer ? plen : sizeof c->peer);
        if (n < 0)
            return;
        evn_action a = EVN_NONE;
        if (srv->ev.data) {
            loop->cur = c;
            c->cur_len = (size_t)n;
            a = srv->ev.data(c, loop->rbuf, (size_t)n);
            loop->cur = NULL;
        }
        if (c->out_head) {
            struct iovec iov[EVN__IOV_MAX];
            int i = 0;
            for (struct evn__chunk *ch = c->out_head; ch && i < EVN__IOV_MAX; ch = ch->next, i++)
                iov[i] = (struct iovec){ch->buf + ch->off, ch->len - ch->off};
            struct msghdr mh = {.msg_name = &c->peer,
                                .msg_namelen = c->peerlen,
                                .msg_iov = iov,
                                .msg_iovlen = (size_t)i};
            /* A datagram that cannot be sent now is dropped, as UDP would. */
            ssize_t r = sendmsg(ls->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)r;
            out_clear(c, 0);
        }
        if (a == EVN_SHUTDOWN) {
            evn_shutdown(srv);
            return;
        }
    }
}

void evn__conn_timeout(struct evn_conn *c, bool idle)
{
    struct evn_server *srv = c->loop->srv;
    if (c->flags & EVN__C_LINGER) {
        evn__conn_close(c, 0);
        return;
    }
    if (idle || !srv->ev.timeout || (c->flags & (EVN__C_CONNECTING | EVN__C_HANDSHAKE))) {
        evn__conn_close(c, -ETIMEDOUT);
        return;
    }
    c->loop->cur = c;
    evn_action a = srv->ev.timeout(c);
    c->loop->cur = NULL;
    if (evn__conn_act(c, a))
        evn__timer_update(c);
}

/* The drained half of evn__conn_resume_all; returns c, or NULL if it is gone. */
static struct evn_conn *resume_drained(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    struct evn_server *srv = loop->srv;
    evn_id id = evn_conn_id(c);
    if (c->flags & (EVN__C_PAUSED | EVN__C_CLOSING | EVN__C_DETACHING))
        return c;
    if (srv->ev.drained) {
        loop->cur = c;
        evn_action a = srv->ev.drained(c);
        loop->cur = NULL;
        if (!evn__conn_act(c, a))
            return NULL;
    }
    if (c->in_len && !(c->flags & (EVN__C_PAUSED | EVN__C_CLOSING | EVN__C_DETACHING))) {
        deliver(c, c->in, c->in_len, true);
        c = evn__conn_lookup(loop, id);
    }
    if (c && (c->flags & EVN__C_EOF) && !srv->ev.eof &&
        !(c->flags & (EVN__C_CLOSING | EVN__C_DETACHING))) {
        eof_close(c);
        c = evn__conn_lookup(loop, id);
    }
    return c;
}

/*
 * Connections whose output drained after a pause: tell the application, then
 * hand back the input it kept. And TLS connections with input waiting inside
 * OpenSSL: read it, if reading is on. And connections that must close for
 * want of memory (out_of_memory). Only those queued before this call are
 * served now; any queued meanwhile wait for the next turn.
 */
void evn__conn_resume_all(struct evn_loop *loop)
{
    size_t n = loop->nresume;
    for (size_t i = 0; i < n; i++) {
        struct evn_conn *c = evn__conn_lookup(loop, loop->resume[i]);
        if (!c)
            continue;
        uint32_t f = c->flags;
        c->flags &= (uint32_t) ~(EVN__C_RESUME | EVN__C_REREAD);
        if (f & (EVN__C_NOMEM | EVN__C_NOBUFS)) {
            flush(c);
            continue;
        }
        if ((f & EVN__C_RESUME) && !(c = resume_drained(c)))
            continue;
        if ((f & EVN__C_REREAD) && (interest(c) & EVN__READ) &&
            !(c->flags & (EVN__C_HANDSHAKE | EVN__C_CONNECTING)))
            read_ready(c);
    }
    memmove(loop->resume, loop->resume + n, sizeof *loop->resume * (loop->nresume - n));
    loop->nresume -= n;
}

int evn_conn_shutdown_write(evn_conn *c)
{
    if (c->flags & (EVN__C_UDP | EVN__C_CLOSING | EVN__C_DETACHING))
        return -EINVAL;
    c->flags |= EVN__C_WSHUT;
    if (c != c->loop->cur && !(c->flags & (EVN__C_DIRTY | EVN__C_WANTW)))
        return mark_dirty(c);
    return 0;
}

int evn_conn_close(evn_conn *c, int err)
{
    if ((c->flags & EVN__C_UDP) || err > 0)
        return -EINVAL;
    if (c->loop != evn__cur_loop)
        return -EPERM;
    if (c->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_LINGER))
        return -EALREADY;
    c->close_err = err;
    /* As EVN_CLOSE: no more input is wanted. The close itself happens when
     * the running callback returns (c's own) or with this turn's flush of
     * the connections written from elsewhere, never inside this call. */
    set_flags(c, EVN__C_CLOSING | EVN__C_RDOFF, 0);
    if (c != c->loop->cur && !(c->flags & (EVN__C_DIRTY | EVN__C_WANTW)))
        mark_dirty(c); /* failing, it closes c with -ENOMEM instead */
    return 0;
}

int evn_conn_set_flow(evn_conn *c, evn_flow flow)
{
    if ((c->flags & EVN__C_UDP) || (flow != EVN_FLOW_AUTO && flow != EVN_FLOW_MANUAL))
        return -EINVAL;
    if (flow == EVN_FLOW_MANUAL)
        set_flags(c, EVN__C_MANUAL, EVN__C_PAUSED);
    else if (c->out_bytes > c->out_high && !(c->flags & EVN__C_CLOSING))
        set_flags(c, EVN__C_PAUSED | EVN__C_RESUMABLE, EVN__C_MANUAL);
    else
        set_flags(c, 0, EVN__C_MANUAL);
    return 0;
}

int evn_conn_read(evn_conn *c, int on)
{
    if (c->flags & EVN__C_UDP)
        return -EINVAL;
    set_flags(c, on ? 0 : EVN__C_HOLD, on ? EVN__C_HOLD : 0);
    return 0;
}

int evn_conn_full(const evn_conn *c)
{
    return c->out_bytes > c->out_high;
}

int evn_conn_set_watermarks(evn_conn *c, size_t high, size_t low)
{
    if (high == 0 || low > high)
        return -EINVAL;
    c->out_high = high;
    c->out_low = low;
    return 0;
}

int evn_conn_set_idle_timeout(evn_conn *c, int64_t ms)
{
    if (ms < 0 || ms > UINT32_MAX || (c->flags & EVN__C_UDP))
        return -EINVAL;
    c->loop->now_ms = evn__now_ms();
    c->idle_ms = (uint32_t)ms;
    c->last_active = c->loop->now_ms;
    evn__timer_update(c);
    return 0;
}

int evn_conn_set_deadline(evn_conn *c, int64_t ms)
{
    if (ms < 0 || (c->flags & EVN__C_UDP))
        return -EINVAL;
    c->loop->now_ms = evn__now_ms();
    c->deadline_at = ms ? c->loop->now_ms + ms : 0;
    evn__timer_update(c);
    return 0;
}

evn_server *evn_conn_server(const evn_conn *c)
{
    return c->loop->srv;
}

evn_id evn_conn_id(const evn_conn *c)
{
    if (c->flags & EVN__C_UDP)
        return 0;
    return evn__make_id(c->loop->index, c->fd, c->seq);
}

void *evn_conn_udata(const evn_conn *c)
{
    return c->udata;
}

void evn_conn_set_udata(evn_conn *c, void *udata)
{
    c->udata = udata;
}

size_t evn_conn_listener(const evn_conn *c)
{
    return c->listener == EVN__LISTENER_OUTBOUND ? EVN_OUTBOUND : c->listener;
}

int evn_conn_loop(const evn_conn *c)
{
    return c->loop->index;
}

int evn_conn_fd(const evn_conn *c)
{
    return c->fd;
}

int evn_conn_is_udp(const evn_conn *c)
{
    return (c->flags & EVN__C_UDP) != 0;
}

int evn_conn_is_tls(const evn_conn *c)
{
    return c->tls != NULL;
}

const char *evn_conn_alpn(const evn_conn *c)
{
    return c->tls ? evn__tls_alpn(c) : NULL;
}

int evn_conn_tls_resumed(const evn_conn *c)
{
    return c->tls && !(c->flags & EVN__C_HANDSHAKE) && evn__tls_resumed(c);
}

size_t evn_conn_pending(const evn_conn *c)
{
    return c->out_bytes;
}

int evn_conn_local_addr(const evn_conn *c, struct sockaddr_storage *ss, socklen_t *len)
{
    socklen_t l = sizeof *ss;
    if (getsockname(c->fd, (struct sockaddr *)ss, &l) < 0)
        return -errno;
    if (len)
        *len = l;
    return 0;
}

int evn_conn_remote_addr(const evn_conn *c, struct sockaddr_storage *ss, socklen_t *len)
{
    socklen_t l = sizeof *ss;
    if (c->peerlen) {
        memcpy(ss, &c->peer, c->peerlen);
        l = c->peerlen;
    } else if (getpeername(c->fd, (struct sockaddr *)ss, &l) < 0) {
        return -errno;
    }
    if (len)
        *len = l;
    return 0;
}

int evn_conn_local_str(const evn_conn *c, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = evn_conn_local_addr(c, &ss, &len);
    return rc < 0 ? rc : evn_addr_str((struct sockaddr *)&ss, len, buf, size);
}

int evn_conn_remote_str(const evn_conn *c, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = evn_conn_remote_addr(c, &ss, &len);
    return rc < 0 ? rc : evn_addr_str((struct sockaddr *)&ss, len, buf, size);
}
