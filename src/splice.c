/*
 * Splicing one connection's input into another connection's socket
 * (evn_conn_splice): the bytes go socket -> pipe -> socket with splice(2),
 * never through user memory.
 *
 * Each spliced direction owns a pipe, made when the splice starts and closed
 * with its source connection. The pump (evn__splice_pump, run where a plain
 * connection would read) first empties the pipe into the target, then takes
 * one read's worth from the source into the pipe and pushes it on. Only one
 * pipeful is ever in flight, so memory per direction is bounded by the pipe
 * plus the two socket buffers. When the target cannot take it all (its own
 * queued output is not sent yet, or its socket is full) the source stops
 * being read (EVN__C_SPLWAIT) and the target waits for writability; once the
 * target's output is empty again, evn__splice_drained queues the source to
 * be pumped at the end of the turn.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

/* evn_conn_splice's state, on both connections of a spliced direction. */
struct evn__splice {
    evn_id to;     /* this connection's input goes to it; 0: none */
    evn_id from;   /* that connection's input comes here; 0: none */
    int pipe[2];   /* the direction's pipe (with `to`), -1 when none */
    size_t inpipe; /* bytes in it */
    bool eof;      /* the source's input ended; passed on once the pipe is empty */
};

bool evn__splice_info(const struct evn_conn *c, evn_id *to, evn_id *from, size_t *inpipe)
{
    const struct evn__splice *sp = evn__conn_splice(c);
    if (!sp)
        return false;
    *to = sp->to;
    *from = sp->from;
    *inpipe = sp->inpipe;
    return true;
}

#ifdef __linux__

/* One splice(2) from the source moves at most this much: a default pipe. */
#define EVN__SPLICE_CHUNK (64 * 1024)
/* Fairness: at most this much is moved for one connection per pump. */
#define EVN__SPLICE_TURN (1u << 20)

static struct evn__splice *splice_get(struct evn_conn *c)
{
    struct evn__conn_ext *x = evn__conn_ext(c);
    if (!x)
        return NULL;
    if (!x->splice) {
        x->splice = evn__calloc(1, sizeof *x->splice);
        if (x->splice)
            x->splice->pipe[0] = x->splice->pipe[1] = -1;
    }
    return x->splice;
}

static void pipe_close(struct evn__splice *sp)
{
    for (int i = 0; i < 2; i++) {
        if (sp->pipe[i] >= 0)
            close(sp->pipe[i]);
        sp->pipe[i] = -1;
    }
    sp->inpipe = 0;
    sp->eof = false;
}

/* The target cannot take more now: stop reading the source until it can. */
static void block(struct evn_conn *from)
{
    evn__conn_set_flags(from, EVN__C_SPLWAIT, 0);
}

int evn_conn_splice(evn_conn *from, evn_conn *to)
{
    if (!from || !to || from == to || from->loop != to->loop ||
        ((from->flags | to->flags) & EVN__C_UDP))
        return -EINVAL;
    if ((from->flags | to->flags) & (EVN__C_XTP | EVN__C_OPENING))
        return -ENOTSUP;
    if ((from->flags | to->flags) & EVN__C_CONNECTING)
        return -ENOTCONN;
    if ((from->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_LINGER)) ||
        (to->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_LINGER | EVN__C_WSHUT)))
        return -EPIPE;
    struct evn__splice *fsp = evn__conn_splice(from), *tsp = evn__conn_splice(to);
    if ((fsp && fsp->to) || (tsp && tsp->from))
        return -EBUSY;
    struct evn__splice *fs = splice_get(from), *ts = splice_get(to);
    if (!fs || !ts)
        return -ENOMEM;
    int rc = evn__pipe_nb(fs->pipe);
    if (rc < 0)
        return rc;
    evn__sigpipe_block(from->loop);
    fs->to = evn_conn_id(to);
    ts->from = evn_conn_id(from);
    /* On a completion backend from's input now comes by readiness. */
    evn__conn_set_flags(from, EVN__C_SPLICE, 0);
    /* Input kept from an earlier data event goes first. Inside from's own
     * data callback the keep is not applied yet: deliver() moves it after. */
    if (from->x->in_len && from->loop->conns.cur != from) {
        rc = evn_write(to, from->x->in, from->x->in_len);
        evn__conn_drop_input(from);
        if (rc < 0)
            return rc;
    }
    /* Bytes may already wait in the socket, where a level-triggered poller
     * reports them anyway; an edge-triggered one would not: look now. */
    evn__conn_reread(from);
    return 0;
}

/* from is at end of input and the pipe is empty: pass the half-close on,
 * then let from's own end-of-input handling run (eof callback or close). */
static void finish_eof(struct evn_conn *from, struct evn_conn *to)
{
    struct evn__splice *sp = from->x->splice;
    sp->eof = false;
    if (to && !(to->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_WSHUT)))
        evn_conn_shutdown_write(to);
    evn__conn_input_end(from);
}

void evn__splice_pump(struct evn_conn *from)
{
    struct evn_loop *loop = from->loop;
    struct evn__splice *sp = from->x->splice;
    size_t budget = EVN__SPLICE_TURN;
    bool more = true;
    for (;;) {
        struct evn_conn *to = evn__conn_lookup(loop, sp->to);
        if (!to)
            return;
        if (sp->inpipe) {
            /* What was queued on to before goes first. */
            if (to->out_head) {
                block(from);
                return;
            }
            ssize_t n = splice(sp->pipe[0], NULL, to->io.fd, NULL, sp->inpipe,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    evn__conn_set_flags(to, EVN__C_WANTW, 0);
                    block(from);
                    return;
                }
                /* The target failed; closing it ends this splice. */
                int err = errno;
                if (err == EPIPE)
                    evn__sigpipe_take();
                evn__conn_close(to, -err);
                return;
            }
            sp->inpipe -= (size_t)n;
            loop->stats.out += (uint64_t)n;
            if (to->x)
                to->x->last_active = loop->now_ms;
            if (sp->inpipe) {
                /* A short move: the target's socket is full. */
                evn__conn_set_flags(to, EVN__C_WANTW, 0);
                block(from);
                return;
            }
        }
        if (sp->eof) {
            finish_eof(from, to);
            return;
        }
        /* A short read last time emptied the socket: wait for the poller
         * rather than spend a call to learn it. */
        if (!more || budget == 0)
            return;
        ssize_t n = splice(from->io.fd, NULL, sp->pipe[1], NULL, EVN__SPLICE_CHUNK,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            sp->inpipe = (size_t)n;
            loop->stats.in += (uint64_t)n;
            from->x->last_active = loop->now_ms;
            budget = (size_t)n < budget ? budget - (size_t)n : 0;
            more = n == EVN__SPLICE_CHUNK;
            continue;
        }
        if (n == 0) {
            sp->eof = true;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        evn__conn_close(from, -errno);
        return;
    }
}

void evn__splice_drained(struct evn_conn *to)
{
    struct evn_conn *from = evn__conn_lookup(to->loop, to->x->splice->from);
    if (from && (from->flags & EVN__C_SPLWAIT)) {
        evn__conn_set_flags(from, 0, EVN__C_SPLWAIT);
        evn__conn_reread(from);
    }
}

int evn__splice_pass(struct evn_conn *from, const char *buf, size_t n)
{
    struct evn_conn *to = evn__conn_lookup(from->loop, from->x->splice->to);
    return to && evn_write(to, buf, n) == -ENOMEM ? -ENOMEM : 0;
}

void evn__splice_write_kept(struct evn_conn *from)
{
    struct evn_conn *to = evn__conn_lookup(from->loop, from->x->splice->to);
    if (to && evn_write(to, from->x->in, from->x->in_len) < 0)
        evn__conn_close(to, -EPIPE);
}

void evn__splice_drop(struct evn_conn *c)
{
    struct evn__splice *sp = evn__conn_splice(c);
    struct evn_loop *loop = c->loop;
    if (!sp)
        return;
    struct evn_conn *o;
    /* c's input went to o: o no longer has a source. */
    if (sp->to && (o = evn__conn_lookup(loop, sp->to)) && evn__conn_splice(o))
        o->x->splice->from = 0;
    /* o's input came to c: o goes back to its data callback; bytes still in
     * its pipe had nowhere to go and are dropped. */
    if (sp->from && (o = evn__conn_lookup(loop, sp->from)) && evn__conn_splice(o)) {
        o->x->splice->to = 0;
        pipe_close(o->x->splice);
        evn__conn_set_flags(o, 0, EVN__C_SPLICE | EVN__C_SPLWAIT);
    }
    pipe_close(sp);
    evn__free(sp);
    c->x->splice = NULL;
    c->flags &= (uint32_t) ~(EVN__C_SPLICE | EVN__C_SPLWAIT);
}

#else /* !__linux__ */

int evn_conn_splice(evn_conn *from, evn_conn *to)
{
    (void)from;
    (void)to;
    return -ENOTSUP;
}

void evn__splice_pump(struct evn_conn *from)
{
    (void)from;
}

void evn__splice_drained(struct evn_conn *to)
{
    (void)to;
}

void evn__splice_write_kept(struct evn_conn *from)
{
    (void)from;
}

int evn__splice_pass(struct evn_conn *from, const char *buf, size_t n)
{
    (void)from, (void)buf, (void)n;
    return 0;
}

void evn__splice_drop(struct evn_conn *c)
{
    if (c->x) {
        evn__free(c->x->splice);
        c->x->splice = NULL;
    }
}

#endif
