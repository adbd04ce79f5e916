/*
 * Connections: the events and actions of the API over a transport. Reading
 * into the loop's buffer and the data callback, kept input, queued output and
 * its flushing, flow control, close, linger and detach; the connections'
 * pool; and the plain socket transport.
 *
 * The hot path for a request that fits one read is: one read into the loop's
 * buffer, the callback, its output copied into a pooled chunk, one send. No
 * allocation, no poller change; the poller hears of a connection again only
 * when its socket is full.
 *
 * What only some connections need lives elsewhere: TLS is a transport of
 * its own (tls.c), file regions are a kind of output chunk (sendfile.c),
 * splicing replaces reading (splice.c), and rarely used state (kept input,
 * timers, TLS, splicing) sits in an extension made on first use, so an idle
 * connection costs its slot in the pool and nothing more.
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

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define EVN__RBUF_SIZE (64 * 1024)
#define EVN__CHUNK_SIZE (16 * 1024 - sizeof(struct evn__chunk))
/* Spare chunks a loop keeps: no more than it once had in use at the same
 * time, and at most this many (8 MiB). A completion backend holds each
 * connection's output until its send completes, so under pipelined large
 * replies hundreds are in use at once; a pool smaller than that hands the
 * rest to malloc and back every turn, and the allocator returning them to
 * the system costs a page fault per page on the next turn. */
#define EVN__CHUNK_POOL_MAX 512
/* A write up to this size is copied into pool-sized chunks; larger, into
 * one chunk of its own. */
#define EVN__CHUNK_SPLIT_MAX (16 * EVN__CHUNK_SIZE)
#define EVN__OUT_HIGH (4u << 20)
#define EVN__OUT_LOW (1u << 20)
/* Fairness: at most this much is sent to one connection per loop turn. */
#define EVN__WRITE_PER_TURN (1u << 20)
/* How long a lingering close waits for the peer's end-of-file. */
#define EVN__LINGER_MS 2000
/* Connections per page of the pool. */
#define EVN__POOL_PAGE 64

_Static_assert(EVN__IOV_MAX <= 1024, "one sendmsg takes at most IOV_MAX (1024) pieces");
_Static_assert(EVN__CHUNK_SIZE > 0, "a chunk holds data");

static void conn_io(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f);
static void zombie_io(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f);
static void ready(struct evn_conn *c, int mask);
static void received(struct evn_conn *c, const char *buf, int n);
static void sent(struct evn_conn *c, int n);
static bool flush_cq(struct evn_conn *c);
static bool wait_writable(struct evn_conn *c);
static bool out_empty(struct evn_conn *c);
static void out_sent(struct evn_conn *c, size_t n);
static void out_clear(struct evn_conn *c, int status);
static void conn_free(struct evn_conn *c);
static void read_ready(struct evn_conn *c);
static bool flush(struct evn_conn *c);
static void queue_reread(struct evn_conn *c);
static int mark_dirty(struct evn_conn *c);
static void later(struct evn_loop *loop, struct evn__defer *d);
static void conn_timer(struct evn_loop *loop, struct evn__timer *t);

/* ---- the pool ---- */

/* A free slot's handle: an event for a connection closed earlier in the
 * same batch lands here and is dropped. */
static void free_slot_io(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
}

static struct evn_conn *slot_at(const struct evn__conns *cs, uint32_t slot)
{
    return &cs->pages[slot / EVN__POOL_PAGE][slot % EVN__POOL_PAGE];
}

/* The part of a free slot nothing may read. */
#define FREE_PART(c) ((char *)(c) + offsetof(struct evn_conn, loop))
#define FREE_LEN (sizeof(struct evn_conn) - offsetof(struct evn_conn, loop))

static void slot_put(struct evn__conns *cs, struct evn_conn *c, uint32_t *list)
{
    uint32_t slot = c->slot;
    c->io.cb = free_slot_io;
    c->io.fd = -1;
    c->flags = *list;
    *list = slot + 1;
    POISON(FREE_PART(c), FREE_LEN);
}

/*
 * A connection closed during a turn leaves its slot in limbo until the turn
 * is over: an event of this turn's batch may still name it (or, on kqueue,
 * the other filter's event for its socket), and must find a free slot that
 * ignores it, not a connection made since (an evn_connect from a callback
 * would take the same slot first, and would take a stale "writable" for
 * its connect being done).
 */
static void slot_free(struct evn_loop *loop, struct evn_conn *c)
{
    struct evn__conns *cs = &loop->conns;
    slot_put(cs, c, &cs->limbo);
    evn__defer(loop, &cs->later);
}

/* The turn is over: the slots in limbo are free. */
static void limbo_end(struct evn__conns *cs)
{
    while (cs->limbo) {
        /* Only io and flags are readable in a free slot: the number comes
         * from the list, not from c->slot. */
        uint32_t slot = cs->limbo - 1;
        struct evn_conn *c = slot_at(cs, slot);
        uint32_t next = c->flags;
        c->flags = cs->free;
        cs->free = slot + 1;
        cs->limbo = next;
    }
}

/* A zeroed connection in a free slot, growing the pool by a page if none
 * is free; NULL when out of memory. */
static struct evn_conn *slot_get(struct evn__conns *cs)
{
    if (!cs->free) {
        if (cs->nslots + EVN__POOL_PAGE > EVN__MAX_SLOTS)
            return NULL;
        struct evn_conn **np = evn__realloc(cs->pages, sizeof *np * (cs->npages + 1));
        if (!np)
            return NULL;
        cs->pages = np;
        struct evn_conn *page = evn__calloc(EVN__POOL_PAGE, sizeof *page);
        if (!page)
            return NULL;
        cs->pages[cs->npages++] = page;
        for (uint32_t i = EVN__POOL_PAGE; i-- > 0;) {
            page[i].slot = cs->nslots + i;
            slot_put(cs, &page[i], &cs->free);
        }
        cs->nslots += EVN__POOL_PAGE;
    }
    uint32_t slot = cs->free - 1;
    struct evn_conn *c = slot_at(cs, slot);
    cs->free = c->flags;
    UNPOISON(FREE_PART(c), FREE_LEN);
    memset(c, 0, sizeof *c);
    c->slot = slot;
    return c;
}

struct evn_conn *evn__conn_lookup(struct evn_loop *loop, evn_id id)
{
    const struct evn__conns *cs = &loop->conns;
    uint32_t slot = evn__id_slot(id);
    if (slot >= cs->nslots)
        return NULL;
    struct evn_conn *c = slot_at(cs, slot);
    return c->io.cb == conn_io && c->seq == evn__id_seq(id) ? c : NULL;
}

void evn__conns_each(struct evn_loop *loop, void (*fn)(struct evn_conn *c, void *arg), void *arg)
{
    struct evn__conns *cs = &loop->conns;
    for (uint32_t i = 0; i < cs->nslots; i++) {
        struct evn_conn *c = slot_at(cs, i);
        if (c->io.cb == conn_io)
            fn(c, arg);
    }
}

int evn__conns_init(struct evn_loop *loop)
{
    struct evn__conns *cs = &loop->conns;
    const evn_events *ev = &loop->srv->ev;
    /* Sequence numbers start anywhere, so that a small number, or an id of
     * another server or an earlier run, is unlikely to name a connection. */
    cs->next_seq = (uint32_t)(evn__now_ms() * 2654435761u) ^ ((uint32_t)loop->index << 24) ^
                   (uint32_t)(uintptr_t)cs;
    if (cs->next_seq == 0)
        cs->next_seq = 1;
    cs->later.cb = later;
    cs->out_high = ev->out_high ? ev->out_high : EVN__OUT_HIGH;
    cs->out_low = ev->out_high ? ev->out_low : EVN__OUT_LOW;
    cs->rbuf = evn__malloc(EVN__RBUF_SIZE);
    if (!cs->rbuf)
        return -ENOMEM;
    cs->rbuf_cap = EVN__RBUF_SIZE;
    return 0;
}

/* A closed connection whose send was still in flight when the loop ended:
 * its chunks go now. */
static void free_zombie(struct evn_conn *c)
{
    if (c->io.cb == zombie_io)
        out_clear(c, -ECONNABORTED);
}

void evn__conns_free(struct evn_loop *loop)
{
    struct evn__conns *cs = &loop->conns;
    for (uint32_t i = 0; i < cs->nslots; i++)
        free_zombie(slot_at(cs, i));
    while (cs->chunks) {
        struct evn__chunk *ch = cs->chunks;
        cs->chunks = ch->next;
        evn__free(ch);
    }
    for (uint32_t i = 0; i < cs->npages; i++) {
        UNPOISON(cs->pages[i], sizeof(struct evn_conn) * EVN__POOL_PAGE);
        evn__free(cs->pages[i]);
    }
    evn__free(cs->pages);
    evn__free(cs->dirty);
    evn__free(cs->resume);
    evn__free(cs->rbuf);
    memset(cs, 0, sizeof *cs);
}

int evn__conn_set_tp(struct evn_conn *c, const struct evn__transport *tp)
{
    if (tp == &evn__plain_transport) {
        c->flags &= ~(uint32_t)EVN__C_XTP;
        return 0;
    }
    if (!evn__conn_ext(c))
        return -ENOMEM;
    c->x->tp = tp;
    c->flags |= EVN__C_XTP;
    return 0;
}

struct evn__conn_ext *evn__conn_ext(struct evn_conn *c)
{
    if (!c->x) {
        struct evn__conn_ext *x = evn__calloc(1, sizeof *x);
        if (!x)
            return NULL;
        x->c = c;
        x->timer.cb = conn_timer;
        c->x = x;
    }
    return c->x;
}

/* ---- output chunks ---- */

/* Done with a chunk: status is 0 if all of it was sent, else why not. */
void evn__chunk_release(struct evn_loop *loop, struct evn__chunk *ch, int status)
{
    struct evn__conns *cs = &loop->conns;
    if (ch->done) {
        ch->done(ch->buf, status, ch->arg);
        evn__free(ch);
    } else if (ch->cap == EVN__CHUNK_SIZE && cs->nchunks < EVN__CHUNK_POOL_MAX) {
        ch->next = cs->chunks;
        cs->chunks = ch;
        cs->nchunks++;
    } else {
        evn__free(ch);
    }
}

static struct evn__chunk *chunk_get(struct evn_loop *loop, size_t want)
{
    struct evn__conns *cs = &loop->conns;
    struct evn__chunk *ch;
    if (want <= EVN__CHUNK_SIZE && cs->chunks) {
        ch = cs->chunks;
        cs->chunks = ch->next;
        cs->nchunks--;
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
    if (c->x && c->x->in) {
        evn__free(c->x->in);
        c->x->in = NULL;
        c->x->in_len = c->x->in_cap = 0;
    }
}

static inline size_t in_len(const struct evn_conn *c)
{
    return c->x ? c->x->in_len : 0;
}

static size_t out_high(const struct evn_conn *c)
{
    return c->x && c->x->out_high ? c->x->out_high : c->loop->conns.out_high;
}

static size_t out_low(const struct evn_conn *c)
{
    return c->x && c->x->out_high ? c->x->out_low : c->loop->conns.out_low;
}

/* ---- interest ---- */

int evn__conn_interest(const struct evn_conn *c)
{
    if (c->flags & (EVN__C_CONNECTING | EVN__C_TPWAIT | EVN__C_UNREG)) {
        /* Not registered (the accept fast path, a PROXY header read at
         * once, a connect between addresses): nothing to change there. */
        if (c->flags & EVN__C_UNREG)
            return 0;
        /* Connecting: reading before the connect is done would only spin. */
        if (c->flags & EVN__C_CONNECTING)
            return EVN__WRITE;
        return c->tpmask;
    }
    return (c->flags & (EVN__C_RDOFF | EVN__C_PAUSED | EVN__C_HOLD | EVN__C_SPLWAIT) ? 0
                                                                                     : EVN__READ) |
           (c->flags & EVN__C_WANTW ? EVN__WRITE : 0);
}

/*
 * What c has registered with the backend for the interest its flags give:
 * readiness (poll), and on a completion backend, receiving. There a
 * connection's input comes by completions unless it is spliced (splice(2)
 * reads the socket itself), and readiness is only asked for writing, by
 * the output that does not go by completions (file regions, splicing into
 * it) when the socket is full.
 */
struct reg {
    int poll;
    bool recv;
};

static struct reg reg_of(const struct evn_conn *c)
{
    int m = evn__conn_interest(c);
    if (!(c->flags & EVN__C_CQ))
        return (struct reg){m, false};
    if (c->flags & EVN__C_SPLICE)
        return (struct reg){m, false};
    return (struct reg){m & EVN__WRITE, (m & EVN__READ) != 0};
}

/* Register with the backend what c's flags ask for now, where before is
 * what they asked for until now; 0 or -errno. */
static int apply(struct evn_conn *c, struct reg before)
{
    struct evn_loop *loop = c->loop;
    struct reg after = reg_of(c);
    int rc = 0;
    /* With no interest at all the socket leaves the poller: pollers report
     * hang-ups whatever the mask, which would wake a held connection, or
     * spin a level-triggered loop. */
    if (before.poll != after.poll) {
        if (!after.poll)
            evn__io_del(loop, &c->io, before.poll, false);
        else if (!before.poll)
            rc = evn__io_add(loop, &c->io, after.poll);
        else
            rc = evn__io_mod(loop, &c->io, before.poll, after.poll);
    }
    if (before.recv != after.recv)
        loop->be->recv(loop, &c->io, after.recv);
    /* Reading resumes: input the transport decrypted earlier may be waiting
     * inside it, where the poller cannot see it, or input received while
     * reading was off may be kept. */
    bool reads = (after.poll & EVN__READ) || after.recv;
    bool read = (before.poll & EVN__READ) || before.recv;
    if (reads && !read && !(c->flags & EVN__C_OPENING) &&
        ((evn__conn_tp(c)->pending && evn__conn_tp(c)->pending(c)) ||
         ((c->flags & EVN__C_CQ) && (in_len(c) || (c->flags & EVN__C_INEND)))))
        queue_reread(c);
    return rc;
}

static int set_flags(struct evn_conn *c, uint32_t set, uint32_t clear)
{
    struct reg before = reg_of(c);
    c->flags = (c->flags | set) & ~clear;
    return apply(c, before);
}

void evn__conn_tpwait(struct evn_conn *c, int mask)
{
    struct reg before = reg_of(c);
    c->tpmask = (uint8_t)mask;
    if (mask)
        c->flags |= EVN__C_TPWAIT;
    else
        c->flags &= ~(uint32_t)EVN__C_TPWAIT;
    apply(c, before);
}

int evn__conn_set_flags(struct evn_conn *c, uint32_t set, uint32_t clear)
{
    return set_flags(c, set, clear);
}

/* ---- the plain socket transport ---- */

static ssize_t plain_read(struct evn_conn *c, char *buf, size_t len)
{
    return evn__sock_read(c->io.fd, buf, len);
}

static ssize_t plain_writev(struct evn_conn *c, const struct iovec *iov, int n, size_t *want)
{
    if (n == 1) {
        *want = iov[0].iov_len;
        return send(c->io.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    }
    *want = 0;
    for (int i = 0; i < n; i++)
        *want += iov[i].iov_len;
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    return sendmsg(c->io.fd, &mh, MSG_NOSIGNAL);
}

static void plain_release(struct evn_conn *c, bool notify)
{
}

const struct evn__transport evn__plain_transport = {
    .read = plain_read,
    .writev = plain_writev,
    .release = plain_release,
};

/* ---- making and opening connections ---- */

struct evn_conn *evn__conn_new(struct evn_loop *loop, int fd, uint16_t listener,
                               const union evn__ip_addr *peer, socklen_t peerlen, uint32_t flags)
{
    struct evn_server *srv = loop->srv;
    struct evn_conn *c = slot_get(&loop->conns);
    int rc = c ? 0 : -ENOMEM;
#ifndef __linux__
    /* Linux copies TCP_NODELAY from the listener; elsewhere set it here,
     * as the listener's nodelay= asks (an accepted socket starts without). */
    int one = 1;
    if (c && listener != EVN__LISTENER_OUTBOUND && srv->listeners[listener].url.proto == EVN__TCP &&
        srv->listeners[listener].url.nodelay)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
#endif
    if (c) {
        c->io.cb = conn_io;
        c->io.fd = fd;
        c->loop = loop;
        c->listener = listener;
        if ((size_t)peerlen <= sizeof c->peer && (size_t)peerlen > sizeof(sa_family_t) &&
            peer->sa.sa_family != AF_UNIX) {
            memcpy(&c->peer, peer, peerlen);
            c->peerlen = (uint8_t)peerlen;
        }
        c->seq = loop->conns.next_seq++;
        if (c->seq == 0)
            c->seq = loop->conns.next_seq++;
        c->flags = flags | (srv->ev.flow == EVN_FLOW_MANUAL ? EVN__C_MANUAL : 0);
        /* Whatever can fail before the backend hears of it. */
        if (srv->ev.idle_timeout_ms > 0)
            rc = evn_conn_set_idle_timeout(c, srv->ev.idle_timeout_ms);
        if (rc == 0)
            rc = apply(c, (struct reg){0, false});
        if (rc < 0)
            conn_free(c);
    }
    if (rc < 0) {
        /* Give the slot back before the client can see the close: it may
         * connect again at once and must not find the server full. */
        atomic_fetch_sub_explicit(&loop->nconns, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&srv->total_conns, 1, memory_order_relaxed);
        if (fd >= 0)
            evn__sock_close(fd);
        return NULL;
    }
    loop->conns.open++;
    evn__stat_add(
        listener == EVN__LISTENER_OUTBOUND ? &loop->stats.outbound : &loop->stats.accepted, 1);
    evn__stat_add(&loop->stats.open, 1);
    return c;
}

void evn__conn_opened(struct evn_conn *c)
{
    struct evn_server *srv = c->loop->srv;
    bool alive = true;
    if (srv->ev.opened) {
        evn__conn_enter(c);
        evn_action a = srv->ev.opened(c);
        evn__conn_leave(c);
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
 * The accept fast path, for a plain TCP listener with deferaccept: the kernel
 * hands over a connection only once its first bytes have arrived, so they are
 * read at once, before the socket is ever registered with the poller. A
 * request answered in full by a connection that then closes costs accept4,
 * read, send and close, and no poller call at all (on a completion backend,
 * the read is a plain one: no receive is armed, nor a turn waited for,
 * before the answer). Whatever is left (the connection stays open, output is
 * pending, the read found nothing because deferaccept gave up waiting) is
 * registered at the end with the interest the connection has by then; until
 * that, evn__conn_interest() is 0, so set_flags leaves the backend alone.
 */
static void accept_fast(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    evn_id id = evn_conn_id(c);
    evn__conn_opened(c);
    if (!(c = evn__conn_lookup(loop, id)))
        return;
    if (!(c->flags & (EVN__C_RDOFF | EVN__C_HOLD | EVN__C_PAUSED | EVN__C_SPLICE)))
        read_ready(c);
    if (!(c = evn__conn_lookup(loop, id)))
        return;
    set_flags(c, 0, EVN__C_UNREG | EVN__C_FRESH);
}

int evn__conn_accepted(struct evn_loop *loop, int fd, uint16_t listener,
                       const union evn__ip_addr *peer, socklen_t peerlen)
{
    struct evn__listener *l = &loop->srv->listeners[listener];
    struct evn_conn *c;
    /* proxy=: the header first, read by readiness, before TLS and opened. */
    if (l->url.proxy) {
        if (!(c = evn__conn_new(loop, fd, listener, peer, peerlen, EVN__C_UNREG)))
            return -ENOMEM;
        evn__proxy_accept(c, l);
        return 0;
    }
    /* A backend that does the I/O does it for plain connections; TLS reads
     * and writes the socket itself. */
    uint32_t cq = !l->tls && evn__loop_completes(loop) ? EVN__C_CQ : 0;
    bool fast = !l->tls && l->url.proto == EVN__TCP && l->url.deferaccept > 0;
    c = evn__conn_new(loop, fd, listener, peer, peerlen, cq | (fast ? EVN__C_UNREG : 0));
    if (!c)
        return -ENOMEM;
#ifdef EVN_HAVE_TLS
    if (l->tls) {
        evn__tls_accept(c, l);
        return 0;
    }
#endif
    if (fast)
        accept_fast(c);
    else
        evn__conn_opened(c);
    return 0;
}

/*
 * An outbound connection's connect is over, with err (0 or -errno): told
 * by the poller (finish_connect) or by a backend that connects itself
 * (EVN__CONNECTED), whose connection waits unregistered (EVN__C_UNREG)
 * until then.
 */
static void connected(struct evn_conn *c, int err)
{
    /* A host name's: on to its next address, if this one failed. */
    if (evn__conn_dial(c) && evn__dial_connected(c, &err))
        return;
    if (err) {
        evn__conn_close(c, err);
        return;
    }
    /* evn_connect_proxy_header: the header goes first, in the clear. */
    if ((c->flags & EVN__C_PROXYHDR) && !evn__proxy_send_header(c))
        return;
#ifdef EVN_HAVE_TLS
    if (evn__conn_tls(c)) {
        /* tls://: the handshake comes next, under the same deadline, by
         * readiness. */
        if (c->flags & EVN__C_UNREG)
            set_flags(c, 0, EVN__C_UNREG);
        evn__tls_connected(c);
        return;
    }
#endif
    evn__conn_deadline(c, 0);
    /* Connected: a backend that does the I/O takes over from here. */
    set_flags(c, evn__loop_completes(c->loop) ? EVN__C_CQ : 0, EVN__C_CONNECTING | EVN__C_UNREG);
    evn__conn_opened(c);
}

/* An outbound connection's socket became writable (or failed). */
static void finish_connect(struct evn_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    connected(c, -err);
}

/* ---- closing and detaching ---- */

/* Remove c from the loop's bookkeeping (not from the poller); output still
 * queued is dropped with `status` (for the done callbacks of evn_send_owned). */
static void forget(struct evn_conn *c, int status)
{
    struct evn_loop *loop = c->loop;
    loop->conns.open--;
    evn__stat_add(&loop->stats.closed, 1);
    evn__stat_add(&loop->stats.open, (uint64_t)-1);
    /* Whoever learns of the close (closed, the peer) sees its bytes too. */
    evn__stat_publish(&loop->stats);
    atomic_fetch_sub_explicit(&loop->nconns, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&loop->srv->total_conns, 1, memory_order_relaxed);
    if (c->x) {
        evn__timer_stop(loop, &c->x->timer);
        if (c->x->splice)
            evn__splice_drop(c);
        if (evn__conn_dial(c))
            evn__dial_free(c);
    }
    /* A send in flight still reads its chunks: they go when it is over. */
    if (!(c->flags & EVN__C_SENDING))
        out_clear(c, status);
    in_clear(c);
    /* A descriptor is free again: listeners paused on EMFILE may resume. */
    if (loop->accept_paused)
        evn__accept_resume(loop);
}

/* A connection the backend never heard of goes back to the pool. */
static void conn_free(struct evn_conn *c)
{
    if (c->x)
        evn__timer_stop(c->loop, &c->x->timer);
    evn__free(c->x);
    c->x = NULL;
    slot_free(c->loop, c);
}

/*
 * Have the backend let go of c's socket, closing it, or, keep_fd, leaving
 * it to the application: true if the backend still refers to c, whose
 * memory must then wait for EVN__RELEASED (conn_put).
 */
static bool conn_unhook(struct evn_conn *c, bool keep_fd)
{
    struct evn_loop *loop = c->loop;
    /* A host name's connect that had no socket yet. */
    if (c->io.fd < 0)
        return false;
    if (loop->be->close)
        return loop->be->close(loop, &c->io, keep_fd) > 0;
    if (!keep_fd)
        evn__sock_close(c->io.fd);
    return false;
}

/* c's memory goes back to the pool, now or, held, once the backend lets go. */
static void conn_put(struct evn_conn *c, bool held)
{
    evn__free(c->x);
    c->x = NULL;
    if (held)
        c->io.cb = zombie_io;
    else
        zombie_io(c->loop, &c->io, &(struct evn__fired){.io = &c->io, .ev = EVN__RELEASED});
}

/* A closed connection the backend still refers to: nothing it reports
 * matters now, until it lets go; then the chunks a send still had go, and
 * the slot. */
static void zombie_io(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
    struct evn_conn *c = evn__container_of(io, struct evn_conn, io);
    if (f->ev != EVN__RELEASED)
        return;
    out_clear(c, -ECONNABORTED);
    slot_free(loop, c);
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
        (c->flags & (EVN__C_LINGER | EVN__C_EOF | EVN__C_UDP | EVN__C_OPENING | EVN__C_FRESH)) ||
        atomic_load_explicit(&c->loop->srv->stopping, memory_order_relaxed))
        return false;
    return ioctl(c->io.fd, FIONREAD, &unread) == 0 && unread > 0;
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

/* Linger, if the timer for it can be armed (else close at once). */
static bool linger(struct evn_conn *c)
{
    if (!evn__conn_ext(c))
        return false;
    c->flags |= EVN__C_CLOSING;
    if (c->x->splice)
        evn__splice_drop(c);
    out_clear(c, -ECONNABORTED);
    in_clear(c);
    /* closed fires now, before forget() publishes the bytes. */
    evn__stat_publish(&c->loop->stats);
    fire_closed(c, 0);
    /* TLS ends here: close_notify, then the rest is discarded unread. */
    evn__conn_tp(c)->release(c, true);
    evn__conn_set_tp(c, &evn__plain_transport);
    shutdown(c->io.fd, SHUT_WR);
    set_flags(c, EVN__C_LINGER,
              EVN__C_RDOFF | EVN__C_PAUSED | EVN__C_HOLD | EVN__C_WANTW | EVN__C_RESUMABLE |
                  EVN__C_TPWAIT);
    c->x->idle_ms = 0;
    if (evn__conn_deadline(c, EVN__LINGER_MS) < 0)
        evn__conn_close(c, 0);
    return true;
}

void evn__conn_close(struct evn_conn *c, int err)
{
    struct evn_loop *loop = c->loop;
    if (should_linger(c, err) && linger(c))
        return;
    /* Already told (lingering), or never opened (an accepted connection's
     * TLS handshake; evn_connect's own caller does hear of its failure). */
    bool silent = (c->flags & EVN__C_LINGER) ||
                  ((c->flags & EVN__C_OPENING) && c->listener != EVN__LISTENER_OUTBOUND);
    /* An accepted TLS connection whose handshake failed or timed out (not
     * one closed by a stop, which gives no error). */
    if (silent && err && !(c->flags & EVN__C_LINGER) && evn__conn_tls(c) &&
        evn__conn_tp(c) != &evn__proxy_transport)
        evn__stat_add(&loop->stats.refused_tls, 1);
    struct reg r = reg_of(c);
    if (r.poll && !loop->be->close)
        evn__io_del(loop, &c->io, r.poll, true);
    forget(c, err ? err : -ECONNABORTED);
    c->flags |= EVN__C_CLOSING;
    /* The callback runs before the close so that address queries still see
     * this socket, not another that reused its number. */
    if (!silent)
        fire_closed(c, err);
    evn__conn_tp(c)->release(c, true);
    conn_put(c, conn_unhook(c, false));
}

void evn__conn_discard(struct evn_conn *c)
{
    /* As for a lingering connection, whose closed has fired already. */
    c->flags |= EVN__C_LINGER;
    evn__conn_close(c, -ECONNABORTED);
}

static void detach(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    struct evn_server *srv = loop->srv;
    int fd = c->io.fd;
    struct reg r = reg_of(c);
    if (r.poll && !loop->be->close)
        evn__io_del(loop, &c->io, r.poll, false);
    forget(c, -ECONNABORTED);
    /* The backend lets go of the socket before the application has it. */
    bool held = conn_unhook(c, true);
    evn__set_nonblock(fd, false);
    if (srv->ev.detached) {
        evn_action a = srv->ev.detached(c, fd);
        if (a == EVN_SHUTDOWN)
            evn_shutdown(srv);
    } else {
        evn__sock_close(fd);
    }
    conn_put(c, held);
}

/* ---- work for the end of the turn ---- */

/*
 * Put c on the resume list, served at the end of this turn, unless it is on
 * it already: for drained (EVN__C_RESUME) or to read input waiting inside
 * the transport (EVN__C_REREAD). false if the list could not grow.
 */
static bool resume_push(struct evn_conn *c)
{
    struct evn__conns *cs = &c->loop->conns;
    if (c->flags & (EVN__C_RESUME | EVN__C_REREAD))
        return true;
    if (cs->nresume == cs->resume_cap) {
        size_t ncap = cs->resume_cap ? cs->resume_cap * 2 : 64;
        evn_id *nr = evn__realloc(cs->resume, sizeof *nr * ncap);
        if (!nr)
            return false;
        cs->resume = nr;
        cs->resume_cap = ncap;
    }
    cs->resume[cs->nresume++] = evn_conn_id(c);
    if (!cs->in_later)
        evn__defer(c->loop, &cs->later);
    return true;
}

/*
 * A list that would bring c back to the loop could not grow, and without it
 * c might never be looked at again: close it with -ENOMEM, at the end of this
 * turn if the resume list has room, else once the socket is writable, which
 * needs no memory at all. Either way flush() does the closing.
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

static void queue_reread(struct evn_conn *c)
{
    if (c->flags & EVN__C_REREAD)
        return;
    if (resume_push(c))
        c->flags |= EVN__C_REREAD;
    else
        out_of_memory(c);
}

void evn__conn_reread(struct evn_conn *c)
{
    queue_reread(c);
}

static int mark_dirty(struct evn_conn *c)
{
    struct evn__conns *cs = &c->loop->conns;
    if (cs->ndirty == cs->dirty_cap) {
        size_t ncap = cs->dirty_cap ? cs->dirty_cap * 2 : 64;
        evn_id *nd = evn__realloc(cs->dirty, sizeof *nd * ncap);
        if (!nd) {
            out_of_memory(c);
            return -ENOMEM;
        }
        cs->dirty = nd;
        cs->dirty_cap = ncap;
    }
    cs->dirty[cs->ndirty++] = evn_conn_id(c);
    c->flags |= EVN__C_DIRTY;
    if (!cs->in_later)
        evn__defer(c->loop, &cs->later);
    return 0;
}

/* ---- output ---- */

/*
 * Output is left queued: wait for writability, and past the high-water mark
 * stop reading until it drains to the low-water mark.
 */
static bool wait_writable(struct evn_conn *c)
{
    if (c->out_bytes > out_high(c)) {
        uint32_t pause = c->flags & EVN__C_MANUAL ? 0 : EVN__C_PAUSED;
        set_flags(c, EVN__C_WANTW | pause | EVN__C_RESUMABLE, 0);
    } else if ((c->flags & EVN__C_RESUMABLE) && c->out_bytes <= out_low(c)) {
        set_flags(c, EVN__C_WANTW, EVN__C_PAUSED);
        queue_resume(c);
    } else {
        set_flags(c, EVN__C_WANTW, 0);
    }
    return true;
}

/* The memory chunks at the head of c's output, up to the next file region
 * and EVN__IOV_MAX of them at most, as pieces for one send: how many. */
static int out_iov(const struct evn_conn *c, struct iovec *iov)
{
    int k = 0;
    for (struct evn__chunk *ch = c->out_head; ch && ch->buf && k < EVN__IOV_MAX;
         ch = ch->next, k++) {
        iov[k].iov_base = ch->buf + ch->off;
        iov[k].iov_len = ch->len - ch->off;
    }
    return k;
}

/*
 * Send from the head of the queue: a file region with evn__file_send, or
 * the memory chunks up to the next file region (EVN__IOV_MAX of them at
 * most) through the transport. Returns the bytes sent, with *want what was
 * offered (so that a short count means a full socket), or -1 with errno.
 *
 * A file region may take a whole turn's budget, not just what is left of
 * it, so that one after a short header goes out in one sendfile; a turn
 * moves at most twice the budget.
 */
static ssize_t send_head(struct evn_conn *c, size_t *want)
{
    struct evn__chunk *ch = c->out_head;
    if (!ch->buf)
        return evn__file_send(c, ch, EVN__WRITE_PER_TURN, want);
    struct iovec iov[EVN__IOV_MAX];
    int k = out_iov(c, iov);
    /* The plain socket's called directly: the common case, and no pointer. */
    return (c->flags & EVN__C_XTP) ? c->x->tp->writev(c, iov, k, want)
                                   : plain_writev(c, iov, k, want);
}

/* n bytes went: advance the queue past them. (Its callers count them in the
 * loop's statistics, which kept here would stop it being inlined into
 * flush, at a dozen instructions a send.) */
static void out_sent(struct evn_conn *c, size_t n)
{
    c->out_bytes -= n;
    if (c->x)
        c->x->last_active = c->loop->now_ms;
    while (n > 0) {
        struct evn__chunk *ch = c->out_head;
        size_t avail = ch->len - ch->off;
        if (n < avail) {
            ch->off += n;
            break;
        }
        n -= avail;
        c->out_head = ch->next;
        evn__chunk_release(c->loop, ch, 0);
    }
    if (!c->out_head)
        c->out_tail = NULL;
}

/* The queue is empty: what was waiting for that happens. false if c is gone. */
static bool out_empty(struct evn_conn *c)
{
    if (c->flags & (EVN__C_WANTW | EVN__C_PAUSED))
        set_flags(c, 0, EVN__C_WANTW | EVN__C_PAUSED);
    /* A connection spliced into this one waits for its output to be sent. */
    struct evn__splice *sp = evn__conn_splice(c);
    if (sp)
        evn__splice_drained(c);
    if (c->flags & EVN__C_RESUMABLE)
        queue_resume(c);
    if (c->flags & EVN__C_DETACHING) {
        detach(c);
        return false;
    }
    if (c->flags & EVN__C_CLOSING) {
        evn__conn_close(c, c->x ? c->x->close_err : 0);
        return false;
    }
    if ((c->flags & (EVN__C_WSHUT | EVN__C_WSHUT_DONE)) == EVN__C_WSHUT) {
        if (evn__conn_tp(c)->shutdown)
            evn__conn_tp(c)->shutdown(c);
        shutdown(c->io.fd, SHUT_WR);
        c->flags |= EVN__C_WSHUT_DONE;
    }
    /* Both directions finished: nothing more can happen on it. */
    if ((c->flags & (EVN__C_EOF | EVN__C_WSHUT_DONE)) == (EVN__C_EOF | EVN__C_WSHUT_DONE)) {
        evn__conn_close(c, 0);
        return false;
    }
    return true;
}

/* The send just handed to the backend is in flight: nothing more goes
 * until it is over (sent). */
static void sending(struct evn_conn *c)
{
    c->flags |= EVN__C_SENDING;
    if (c->flags & EVN__C_WANTW)
        set_flags(c, 0, EVN__C_WANTW);
}

/*
 * Send queued output on a completion backend: one send at a time, of the
 * memory chunks at the head of the queue (the chunks stay until it is
 * over, see sent). A file region goes as the backend sends files, if it
 * does, on an IP connection (not a unix socket's, whose peer is not kept);
 * else with sendfile(2) as on a readiness backend, waiting for writability
 * when the socket is full. Returns false if c is gone.
 */
static bool flush_cq(struct evn_conn *c)
{
    if (c->flags & EVN__C_SENDING)
        return true;
    while (c->out_head && !c->out_head->buf) {
        if (c->loop->be->send_file && c->peerlen) {
            int rc = evn__file_send_by_backend(c, c->out_head);
            if (rc < 0) {
                evn__conn_close(c, rc);
                return false;
            }
            sending(c);
            return true;
        }
        size_t want;
        ssize_t n = evn__file_send(c, c->out_head, EVN__WRITE_PER_TURN, &want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return wait_writable(c);
            evn__conn_close(c, -errno);
            return false;
        }
        c->loop->stats.out += (size_t)n;
        out_sent(c, (size_t)n);
        if ((size_t)n < want)
            return wait_writable(c);
    }
    if (!c->out_head)
        return out_empty(c);
    struct iovec iov[EVN__IOV_MAX];
    int k = out_iov(c, iov);
    int rc = c->loop->be->send(c->loop, &c->io, iov, k);
    if (rc < 0) {
        evn__conn_close(c, rc);
        return false;
    }
    sending(c);
    return true;
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
    if (c->flags & (EVN__C_CONNECTING | EVN__C_OPENING))
        return true;
    if (c->flags & EVN__C_CQ)
        return flush_cq(c);
    size_t budget = EVN__WRITE_PER_TURN;
    while (c->out_head) {
        size_t want;
        ssize_t n;
        struct evn__chunk *ch = c->out_head;
        if (!ch->next && ch->buf && !(c->flags & EVN__C_XTP)) {
            /* The usual case, a reply in one chunk on a plain socket. */
            want = ch->len - ch->off;
            n = send(c->io.fd, ch->buf + ch->off, want, MSG_NOSIGNAL);
        } else {
            n = send_head(c, &want);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return wait_writable(c);
            evn__conn_close(c, -errno);
            return false;
        }
        c->loop->stats.out += (size_t)n;
        out_sent(c, (size_t)n);
        if (!c->out_head)
            break;
        /* A short send means the socket is full; a spent budget lets the
         * loop serve others first. Either way, carry on when writable. */
        if ((size_t)n < want || (size_t)n >= budget)
            return wait_writable(c);
        budget -= (size_t)n;
    }
    return out_empty(c);
}

/* evn__conn_act, inlined where a data event ends. */
static inline bool act(struct evn_conn *c, evn_action a)
{
    /* A callback that left output above high water gets drained once it is
     * down to low water, however fast it then goes out. */
    size_t high = out_high(c);
    if (c->out_bytes > high)
        c->flags |= EVN__C_RESUMABLE;
    switch (a) {
    case EVN_CLOSE:
        if (!c->out_head) {
            evn__conn_close(c, c->x ? c->x->close_err : 0);
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
        /* A transport's state (a TLS session) cannot go with the socket, and
         * the socket alone is no use to anyone: refuse, loudly. */
        if (c->flags & EVN__C_XTP) {
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
    if ((c->flags & (EVN__C_WANTW | EVN__C_SENDING)) &&
        !(c->flags & (EVN__C_NOMEM | EVN__C_NOBUFS))) {
        /* Still queued: if this callback pushed output past high water,
         * stop reading now rather than at the next writable event. */
        if (c->out_bytes > high && !(c->flags & (EVN__C_PAUSED | EVN__C_MANUAL)))
            set_flags(c, EVN__C_PAUSED | EVN__C_RESUMABLE, 0);
        return true;
    }
    return flush(c);
}

bool evn__conn_act(struct evn_conn *c, evn_action a)
{
    return act(c, a);
}

/* ---- input ---- */

/* Keep the last keep bytes of in[0..len) for the next data event. */
static bool keep_input(struct evn_conn *c, const char *in, size_t len, size_t keep, bool from_stash)
{
    if (from_stash) {
        if (keep != len)
            memmove(c->x->in, c->x->in + len - keep, keep);
        c->x->in_len = (uint32_t)keep;
        return true;
    }
    size_t cap = keep > 4096 ? keep : 4096;
    char *nb = evn__conn_ext(c) ? evn__malloc(cap) : NULL;
    if (!nb)
        return false;
    memcpy(nb, in + len - keep, keep);
    c->x->in = nb;
    c->x->in_len = (uint32_t)keep;
    c->x->in_cap = (uint32_t)cap;
    return true;
}

/* Run the data callback for c over in[0..len), then handle kept input. */
static void deliver(struct evn_conn *c, const char *in, size_t len, bool from_stash)
{
    struct evn_loop *loop = c->loop;
    struct evn__conns *cs = &loop->conns;
    evn_action a = EVN_NONE;
    c->flags &= (uint32_t)~EVN__C_KEPT;
    cs->cur_len = len;
    if (loop->srv->ev.data) {
        evn__conn_enter(c);
        a = loop->srv->ev.data(c, in, len);
        evn__conn_leave(c);
    }
    /* Stopped because its output is full, the kept rest is handed back once
     * the output drains (evn__conn_act arms that), even if no more input
     * ever arrives. */
    size_t keep = (c->flags & EVN__C_KEPT) ? cs->keep : 0;
    if (keep == 0)
        in_clear(c);
    else if (!keep_input(c, in, len, keep, from_stash)) {
        evn__conn_close(c, -ENOMEM);
        return;
    }
    /* Spliced during this event: what it kept goes ahead of the splice. */
    if ((c->flags & EVN__C_SPLICE) && in_len(c)) {
        evn__splice_write_kept(c);
        in_clear(c);
    }
    act(c, a);
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

/* Room for need more bytes of kept input: 0, -ENOMEM, or -ENOBUFS past
 * EVN__KEPT_MAX. It grows by at least 64 KiB, and at least doubles. */
static int in_reserve(struct evn__conn_ext *x, size_t need)
{
    if (x->in_cap - x->in_len >= need)
        return 0;
    size_t ncap = (size_t)x->in_len + (need > 65536 ? need : 65536);
    if (ncap < (size_t)x->in_cap * 2)
        ncap = (size_t)x->in_cap * 2;
    if (ncap > EVN__KEPT_MAX)
        return -ENOBUFS;
    char *nb = evn__realloc(x->in, ncap);
    if (!nb)
        return -ENOMEM;
    x->in = nb;
    x->in_cap = (uint32_t)ncap;
    return 0;
}

/* Where the next read goes: after the kept input, so the callback sees one
 * contiguous run, or into the loop's buffer. NULL with *err when the kept
 * input cannot grow: -ENOMEM, or -ENOBUFS past EVN__KEPT_MAX. */
static char *read_buffer(struct evn_conn *c, size_t *room, int *err)
{
    struct evn__conn_ext *x = c->x;
    if (!x || !x->in_len) {
        *room = c->loop->conns.rbuf_cap;
        return c->loop->conns.rbuf;
    }
    if ((*err = in_reserve(x, 16384)) < 0)
        return NULL;
    *room = x->in_cap - x->in_len;
    return x->in + x->in_len;
}

/*
 * A connection whose input comes by completions reads again (it was not
 * reading, or its callback kept input): what was received meanwhile is
 * handed over, then the end of input if it came too.
 */
static void read_kept(struct evn_conn *c)
{
    evn_id id = evn_conn_id(c);
    if (in_len(c)) {
        deliver(c, c->x->in, c->x->in_len, true);
        if (!(c = evn__conn_lookup(c->loop, id)))
            return;
    }
    /* What is still kept now is the application's partial input: the end
     * comes after it, as a read of 0 after it would. */
    if ((c->flags & EVN__C_INEND) && (evn__conn_interest(c) & EVN__READ)) {
        c->flags &= ~(uint32_t)EVN__C_INEND;
        evn__conn_input_end(c);
    }
}

static void read_ready(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    /* Input by completions, unless the accept fast path reads it first. */
    if ((c->flags & (EVN__C_CQ | EVN__C_SPLICE | EVN__C_LINGER | EVN__C_UNREG)) == EVN__C_CQ) {
        read_kept(c);
        return;
    }
    if (c->flags & (EVN__C_LINGER | EVN__C_SPLICE)) {
        if (!(c->flags & EVN__C_LINGER)) {
            evn__splice_pump(c);
            return;
        }
        ssize_t n = evn__sock_read(c->io.fd, loop->conns.rbuf, loop->conns.rbuf_cap);
        if (n > 0)
            loop->stats.in += (uint64_t)n;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            evn__conn_close(c, 0);
        return;
    }
    size_t room;
    int err = 0;
    char *buf = read_buffer(c, &room, &err);
    if (!buf) {
        evn__conn_close(c, err);
        return;
    }
    ssize_t n = (c->flags & EVN__C_XTP) ? c->x->tp->read(c, buf, room) : plain_read(c, buf, room);
    if (c->x)
        c->x->last_active = loop->now_ms;
    if (n > 0) {
        loop->stats.in += (uint64_t)n;
        if ((c->flags & EVN__C_UNREG) && (size_t)n < room)
            c->flags |= EVN__C_FRESH;
        if (buf != loop->conns.rbuf) {
            c->x->in_len += (uint32_t)n;
            deliver(c, c->x->in, c->x->in_len, true);
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

/* Append n bytes to c's kept input: false, with *err, if it cannot grow. */
static bool keep_more(struct evn_conn *c, const char *buf, size_t n, int *err)
{
    *err = -ENOMEM;
    if (!c->x || !c->x->in_len)
        return keep_input(c, buf, n, n, false);
    struct evn__conn_ext *x = c->x;
    if ((*err = in_reserve(x, n)) < 0)
        return false;
    memcpy(x->in + x->in_len, buf, n);
    x->in_len += (uint32_t)n;
    return true;
}

/*
 * Input the backend received, in its buffer, or the end of it (n 0) or an
 * error. A connection not reading now (its output is full, the application
 * holds it, or it is closing) keeps what came until it reads again, as a
 * socket would hold it; one that is spliced passes it on to its target
 * ahead of what splice(2) moves next.
 */
static void received(struct evn_conn *c, const char *buf, int n)
{
    if (n < 0) {
        evn__conn_close(c, n);
        return;
    }
    c->loop->stats.in += (uint64_t)n;
    if (c->flags & EVN__C_LINGER) {
        if (n == 0)
            evn__conn_close(c, 0);
        return;
    }
    if (n == 0) {
        /* Not reading now, or about to hand over what was received while
         * it was not (EVN__C_REREAD), the end waits until that is done
         * (read_kept), as a paused socket's end would wait on a readiness
         * backend. Otherwise what is kept is the application's own partial
         * input, and the end comes now, as a read of 0 would find it. */
        if (!(c->flags & (EVN__C_CLOSING | EVN__C_DETACHING)) &&
            (!(evn__conn_interest(c) & EVN__READ) || (in_len(c) && (c->flags & EVN__C_REREAD))))
            c->flags |= EVN__C_INEND;
        else
            evn__conn_input_end(c);
        return;
    }
    if (c->x)
        c->x->last_active = c->loop->now_ms;
    int err = 0;
    if (c->flags & (EVN__C_CLOSING | EVN__C_DETACHING))
        return;
    if (c->flags & EVN__C_SPLICE) {
        if (evn__splice_pass(c, buf, (size_t)n) < 0)
            evn__conn_close(c, -ENOMEM);
        return;
    }
    if (!(evn__conn_interest(c) & EVN__READ) || in_len(c)) {
        if (!keep_more(c, buf, (size_t)n, &err)) {
            evn__conn_close(c, err);
            return;
        }
        if (evn__conn_interest(c) & EVN__READ)
            deliver(c, c->x->in, c->x->in_len, true);
        return;
    }
    deliver(c, buf, (size_t)n, false);
}

/* The send in flight is over: it took n bytes, or failed. */
static void sent(struct evn_conn *c, int n)
{
    c->flags &= ~(uint32_t)EVN__C_SENDING;
    /* The socket is full (the kernel does not wait on a non-blocking one):
     * as for a short send, go on when it is writable. */
    if (n == -EAGAIN) {
        wait_writable(c);
        return;
    }
    if (n < 0) {
        evn__conn_close(c, n);
        return;
    }
    c->loop->stats.out += (size_t)n;
    out_sent(c, (size_t)n);
    if (c->out_bytes > out_high(c)) {
        if (!(c->flags & (EVN__C_PAUSED | EVN__C_MANUAL)))
            set_flags(c, EVN__C_PAUSED | EVN__C_RESUMABLE, 0);
    } else if ((c->flags & EVN__C_RESUMABLE) && c->out_bytes <= out_low(c)) {
        set_flags(c, 0, EVN__C_PAUSED);
        queue_resume(c);
    }
    flush(c);
}

void evn__conn_input_end(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    /* End of input. An application that handles eof decides what follows
     * (half-close); otherwise what is queued still goes out, then the close. */
    set_flags(c, EVN__C_EOF | EVN__C_RDOFF, 0);
    if (loop->srv->ev.eof) {
        evn__conn_enter(c);
        evn_action a = loop->srv->ev.eof(c);
        evn__conn_leave(c);
        evn__conn_act(c, a);
        return;
    }
    eof_close(c);
}

void evn__conn_drop_input(struct evn_conn *c)
{
    in_clear(c);
}

/* Readiness of c's socket. */
static void ready(struct evn_conn *c, int mask)
{
    if (c->flags & (EVN__C_CONNECTING | EVN__C_TPWAIT)) {
        if (c->flags & EVN__C_CONNECTING)
            finish_connect(c);
        else
            evn__conn_tp(c)->ready(c, mask);
        return;
    }
    if ((mask & EVN__WRITE) && (c->flags & EVN__C_WANTW) && !flush(c))
        return;
    if ((mask & EVN__READ) &&
        !(c->flags & (EVN__C_RDOFF | EVN__C_HOLD | EVN__C_PAUSED | EVN__C_SPLWAIT)))
        read_ready(c);
}

/* The loop's callback for a connection's socket. */
static void conn_io(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
    struct evn_conn *c = evn__container_of(io, struct evn_conn, io);
    /* Readiness first: a readiness backend's only kind, tested once. */
    if (f->ev <= (EVN__READ | EVN__WRITE))
        ready(c, f->ev);
    else if (f->ev == EVN__RECEIVED)
        received(c, f->buf, f->res);
    else if (f->ev == EVN__SENT)
        sent(c, f->res);
    else if (f->ev == EVN__CONNECTED && (c->flags & EVN__C_CONNECTING))
        connected(c, f->res);
}

void evn__conn_ready(struct evn_conn *c, int mask)
{
    ready(c, mask);
}

void evn__conn_wake(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    if (c->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_CONNECTING | EVN__C_OPENING))
        return;
    evn_action a = EVN_NONE;
    if (loop->srv->ev.data) {
        evn__conn_enter(c);
        loop->conns.cur_len = 0;
        a = loop->srv->ev.data(c, NULL, 0);
        evn__conn_leave(c);
    }
    evn__conn_act(c, a);
}

/* The drained half of the resume list; returns c, or NULL if it is gone. */
static struct evn_conn *resume_drained(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    struct evn_server *srv = loop->srv;
    evn_id id = evn_conn_id(c);
    if (c->flags & (EVN__C_PAUSED | EVN__C_CLOSING | EVN__C_DETACHING))
        return c;
    if (srv->ev.drained) {
        evn__conn_enter(c);
        evn_action a = srv->ev.drained(c);
        evn__conn_leave(c);
        if (!evn__conn_act(c, a))
            return NULL;
    }
    if (in_len(c) && !(c->flags & (EVN__C_PAUSED | EVN__C_CLOSING | EVN__C_DETACHING))) {
        deliver(c, c->x->in, c->x->in_len, true);
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
 * hand back the input it kept. And connections with input waiting inside the
 * transport: read it, if reading is on. And connections that must close for
 * want of memory (out_of_memory). Only those queued before this call are
 * served now; any queued meanwhile wait for the next turn.
 */
static void resume_all(struct evn_loop *loop)
{
    struct evn__conns *cs = &loop->conns;
    size_t n = cs->nresume;
    for (size_t i = 0; i < n; i++) {
        struct evn_conn *c = evn__conn_lookup(loop, cs->resume[i]);
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
        if ((f & EVN__C_REREAD) && (evn__conn_interest(c) & EVN__READ) &&
            !(c->flags & (EVN__C_OPENING | EVN__C_CONNECTING)))
            read_ready(c);
    }
    memmove(cs->resume, cs->resume + n, sizeof *cs->resume * (cs->nresume - n));
    cs->nresume -= n;
}

/* Output queued outside its connection's own callbacks (by another
 * connection's, by tick, from another thread) goes out before the loop
 * sleeps. Flushing can queue more (a closed callback that writes elsewhere),
 * so walk by index and let the array grow underneath. */
static void flush_dirty(struct evn_loop *loop)
{
    struct evn__conns *cs = &loop->conns;
    for (size_t i = 0; i < cs->ndirty; i++) {
        struct evn_conn *c = evn__conn_lookup(loop, cs->dirty[i]);
        if (!c)
            continue;
        c->flags &= (uint32_t)~EVN__C_DIRTY;
        if (!(c->flags & EVN__C_WANTW) || (c->flags & (EVN__C_NOMEM | EVN__C_NOBUFS)))
            flush(c);
    }
    cs->ndirty = 0;
}

/* The end of the turn: the resume list, then the flushes; what the resume
 * list gained meanwhile waits for the next turn. */
static void later(struct evn_loop *loop, struct evn__defer *d)
{
    struct evn__conns *cs = &loop->conns;
    limbo_end(cs);
    cs->in_later = true;
    if (cs->nresume)
        resume_all(loop);
    if (cs->ndirty)
        flush_dirty(loop);
    cs->in_later = false;
    if (cs->nresume || cs->ndirty || cs->limbo)
        evn__defer(loop, d);
}

/* ---- timers ---- */

static int64_t due(const struct evn__conn_ext *x)
{
    int64_t at = EVN__NEVER;
    if (x->idle_ms)
        at = x->last_active + (int64_t)x->idle_ms;
    if (x->deadline_at && x->deadline_at < at)
        at = x->deadline_at;
    return at;
}

void evn__conn_timer_update(struct evn_conn *c)
{
    if (c->x && evn__timer_start(c->loop, &c->x->timer, due(c->x)) < 0)
        out_of_memory(c);
}

int evn__conn_deadline(struct evn_conn *c, int64_t ms)
{
    if (!ms && !c->x)
        return 0;
    if (!evn__conn_ext(c))
        return -ENOMEM;
    c->x->deadline_at = ms ? evn__loop_now(c->loop) + ms : 0;
    return evn__timer_start(c->loop, &c->x->timer, due(c->x));
}

/*
 * c's timer came due: its idle timeout, its deadline, or neither any more
 * (activity since it was armed only stamps last_active), in which case it is
 * armed again for its real time.
 */
static void conn_timer(struct evn_loop *loop, struct evn__timer *t)
{
    struct evn__conn_ext *x = evn__container_of(t, struct evn__conn_ext, timer);
    struct evn_conn *c = x->c;
    struct evn_server *srv = loop->srv;
    bool idle = x->idle_ms && x->last_active + (int64_t)x->idle_ms <= loop->now_ms;
    bool deadline = x->deadline_at && x->deadline_at <= loop->now_ms;
    if (!idle && !deadline) {
        evn__conn_timer_update(c);
        return;
    }
    if (deadline && !idle)
        x->deadline_at = 0;
    if (c->flags & EVN__C_LINGER) {
        evn__conn_close(c, 0);
        return;
    }
    if (idle || !srv->ev.timeout || (c->flags & (EVN__C_CONNECTING | EVN__C_OPENING))) {
        /* A PROXY header not complete in time counts as a bad one. */
        if (evn__conn_tp(c) == &evn__proxy_transport)
            evn__stat_add(&loop->stats.refused_proxy, 1);
        if (!idle && evn__conn_dial(c) && evn__dial_timeout(c))
            return;
        evn__conn_close(c, -ETIMEDOUT);
        return;
    }
    evn__conn_enter(c);
    evn_action a = srv->ev.timeout(c);
    evn__conn_leave(c);
    if (evn__conn_act(c, a))
        evn__conn_timer_update(c);
}

/* ---- writing ---- */

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
    if (c->out_bytes > out_high(c))
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

/*
 * Output that could not be queued would leave a hole in the stream: the
 * connection closes with flag's error (EVN__C_NOMEM or EVN__C_NOBUFS) once
 * its callback returns, or at the end of this turn when written from
 * elsewhere.
 */
static void output_failed(struct evn_conn *c, uint32_t flag)
{
    c->flags |= flag;
    if (c != c->loop->conns.cur && !(c->flags & (EVN__C_DIRTY | EVN__C_UDP)))
        mark_dirty(c);
}

/*
 * More than a chunk's worth of evn_write: p[0..n) copied into new chunks
 * linked at the tail of c's output (counted by the caller); 0, or -ENOMEM
 * with nothing linked. Pool-sized chunks up to EVN__CHUNK_SPLIT_MAX, so
 * that they go back to the pool when sent; beyond, one chunk of its own.
 */
static int link_chunks(struct evn_conn *c, const char *p, size_t n)
{
    struct evn__chunk *head = NULL, **link = &head, *ch = NULL;
    for (size_t left = n; left > 0;) {
        size_t k = left > EVN__CHUNK_SIZE && n <= EVN__CHUNK_SPLIT_MAX ? EVN__CHUNK_SIZE : left;
        if (!(ch = chunk_get(c->loop, k))) {
            while (head) {
                struct evn__chunk *next = head->next;
                evn__chunk_release(c->loop, head, 0);
                head = next;
            }
            return -ENOMEM;
        }
        memcpy(ch->buf, p, k);
        ch->len = k;
        p += k;
        left -= k;
        *link = ch;
        link = &ch->next;
    }
    out_append(c, head, 0);
    c->out_tail = ch;
    return 0;
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
    if (left > EVN__CHUNK_SIZE) {
        if (link_chunks(c, p, left) < 0)
            goto nomem;
    } else if (left) {
        if (!(ch = chunk_get(c->loop, left)))
            goto nomem;
        memcpy(ch->buf, p, left);
        ch->len = left;
    }
    out_append(c, ch, len);
    if (c != c->loop->conns.cur && !(c->flags & (EVN__C_DIRTY | EVN__C_WANTW | EVN__C_UDP)))
        return mark_dirty(c);
    return 0;
nomem:
    c->out_bytes += len - left;
    output_failed(c, EVN__C_NOMEM);
    return -ENOMEM;
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
    if (c != c->loop->conns.cur && !(c->flags & (EVN__C_DIRTY | EVN__C_WANTW)))
        return mark_dirty(c);
    return 0;
}

int evn_sendfile(evn_conn *c, int fd, evn_off_t offset, size_t length)
{
    return queue_file(c, fd, offset, length, false);
}

int evn_sendfile_owned(evn_conn *c, int fd, evn_off_t offset, size_t length)
{
    return queue_file(c, fd, offset, length, true);
}

int evn_keep(evn_conn *c, size_t n)
{
    struct evn__conns *cs = &c->loop->conns;
    if (cs->cur != c || (c->flags & EVN__C_UDP) || n > cs->cur_len)
        return -EINVAL;
    cs->keep = n;
    c->flags |= EVN__C_KEPT;
    return 0;
}

int evn_conn_shutdown_write(evn_conn *c)
{
    if (c->flags & (EVN__C_UDP | EVN__C_CLOSING | EVN__C_DETACHING))
        return -EINVAL;
    c->flags |= EVN__C_WSHUT;
    if (c != c->loop->conns.cur && !(c->flags & (EVN__C_DIRTY | EVN__C_WANTW)))
        return mark_dirty(c);
    return 0;
}

int evn_conn_close(evn_conn *c, int err)
{
    if (c->loop != evn__cur_loop)
        return -EPERM;
    if ((c->flags & EVN__C_UDP) || err > 0)
        return -EINVAL;
    if (c->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_LINGER))
        return -EALREADY;
    if (err && !evn__conn_ext(c))
        err = -ENOMEM;
    if (c->x)
        c->x->close_err = err;
    /* As EVN_CLOSE: no more input is wanted. The close itself happens when
     * the running callback returns (c's own) or with this turn's flush of
     * the connections written from elsewhere, never inside this call. */
    set_flags(c, EVN__C_CLOSING | EVN__C_RDOFF, 0);
    if (c != c->loop->conns.cur && !(c->flags & (EVN__C_DIRTY | EVN__C_WANTW)))
        mark_dirty(c); /* failing, it closes c with -ENOMEM instead */
    return 0;
}

int evn_conn_set_flow(evn_conn *c, evn_flow flow)
{
    if ((c->flags & EVN__C_UDP) || (flow != EVN_FLOW_AUTO && flow != EVN_FLOW_MANUAL))
        return -EINVAL;
    if (flow == EVN_FLOW_MANUAL)
        set_flags(c, EVN__C_MANUAL, EVN__C_PAUSED);
    else if (c->out_bytes > out_high(c) && !(c->flags & EVN__C_CLOSING))
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
    return c->out_bytes > out_high(c);
}

int evn_conn_set_watermarks(evn_conn *c, size_t high, size_t low)
{
    if (high == 0 || low > high)
        return -EINVAL;
    if (!evn__conn_ext(c))
        return -ENOMEM;
    c->x->out_high = high < UINT32_MAX ? (uint32_t)high : UINT32_MAX;
    c->x->out_low = low < UINT32_MAX ? (uint32_t)low : UINT32_MAX;
    return 0;
}

int evn_conn_set_idle_timeout(evn_conn *c, int64_t ms)
{
    if (ms < 0 || ms > UINT32_MAX || (c->flags & EVN__C_UDP))
        return -EINVAL;
    if (!ms && !c->x)
        return 0;
    if (!evn__conn_ext(c))
        return -ENOMEM;
    c->x->idle_ms = (uint32_t)ms;
    c->x->last_active = evn__loop_now(c->loop);
    return evn__timer_start(c->loop, &c->x->timer, due(c->x));
}

int evn_conn_set_deadline(evn_conn *c, int64_t ms)
{
    if (ms < 0 || (c->flags & EVN__C_UDP))
        return -EINVAL;
    return evn__conn_deadline(c, ms);
}

/* ---- accessors ---- */

evn_server *evn_conn_server(const evn_conn *c)
{
    return c->loop->srv;
}

evn_id evn_conn_id(const evn_conn *c)
{
    if (c->flags & EVN__C_UDP)
        return 0;
    return evn__id_make(c->loop->index, c->slot, c->seq);
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

evn_socket_t evn_conn_fd(const evn_conn *c)
{
    /* Windows: -1 becomes INVALID_SOCKET. */
    return (evn_socket_t)c->io.fd;
}

int evn_conn_is_udp(const evn_conn *c)
{
    return (c->flags & EVN__C_UDP) != 0;
}

int evn_conn_is_tls(const evn_conn *c)
{
    return evn__conn_tls(c) != NULL;
}

const char *evn_conn_alpn(const evn_conn *c)
{
    return evn__conn_tls(c) ? evn__tls_alpn(c) : NULL;
}

int evn_conn_tls_resumed(const evn_conn *c)
{
    return evn__conn_tls(c) && !(c->flags & EVN__C_OPENING) && evn__tls_resumed(c);
}

size_t evn_conn_pending(const evn_conn *c)
{
    return c->out_bytes;
}

int evn_conn_local_addr(const evn_conn *c, struct sockaddr_storage *ss, socklen_t *len)
{
    socklen_t l = sizeof *ss;
    if (getsockname(c->io.fd, (struct sockaddr *)ss, &l) < 0)
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
    } else if (getpeername(c->io.fd, (struct sockaddr *)ss, &l) < 0) {
        return -errno;
    }
    if (len)
        *len = l;
    return 0;
}

int evn_conn_local_str(const evn_conn *c, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int rc = evn_conn_local_addr(c, &ss, &len);
    return rc < 0 ? rc : evn_addr_str((struct sockaddr *)&ss, len, buf, size);
}

int evn_conn_remote_str(const evn_conn *c, char *buf, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int rc = evn_conn_remote_addr(c, &ss, &len);
    return rc < 0 ? rc : evn_addr_str((struct sockaddr *)&ss, len, buf, size);
}

static void close_one(struct evn_conn *c, void *arg)
{
    evn__conn_close(c, *(int *)arg);
}

void evn__conn_close_all(struct evn_loop *loop, int err)
{
    evn__conns_each(loop, close_one, &err);
}
