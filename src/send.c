/*
 * Writes from any thread: the bytes travel to the connection's loop in its
 * inbox as a ready-made output chunk, which the loop links onto the
 * connection's queue without copying again. The inbox is FIFO, so one
 * thread's writes arrive in the order made.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

static int post_chunk(evn_server *srv, evn_id id, struct evn__chunk *ch)
{
    unsigned li = (unsigned)(id >> 56);
    int rc = 0;
    if (id == 0 || (uint32_t)id == 0 || li >= (unsigned)srv->nloops)
        rc = -EINVAL;
    else if (atomic_load_explicit(&srv->stopping, memory_order_acquire))
        rc = -ESHUTDOWN;
    if (rc == 0 && evn__cur_loop == &srv->loops[li]) {
        /* On the connection's own loop: queue it now, so it keeps its place
         * among this thread's evn_write calls. */
        struct evn_conn *c = evn__conn_lookup(evn__cur_loop, id);
        if (c)
            evn__conn_queue_chunk(c, ch);
        else
            evn__chunk_release(evn__cur_loop, ch, -ENOTCONN);
        return 0;
    }
    if (rc == 0) {
        struct evn__msg m = {.type = EVN__M_WRITE, .fd = -1, .arg = id, .chunk = ch};
        rc = evn__loop_post(&srv->loops[li], &m);
    }
    if (rc < 0) {
        if (ch->done)
            ch->done(ch->buf, rc, ch->arg);
        evn__free(ch);
    }
    return rc;
}

int evn_send(evn_server *srv, evn_id id, const void *buf, size_t len)
{
    if (!srv || (!buf && len))
        return -EINVAL;
    if (len == 0)
        return 0;
    struct evn__chunk *ch = evn__malloc(sizeof *ch + len);
    if (!ch)
        return -ENOMEM;
    memset(ch, 0, sizeof *ch);
    ch->buf = ch->data;
    ch->len = ch->cap = len;
    memcpy(ch->data, buf, len);
    return post_chunk(srv, id, ch);
}

int evn_send_owned(evn_server *srv, evn_id id, void *buf, size_t len,
                   void (*done)(void *buf, int status, void *arg), void *arg)
{
    if (!srv || (!buf && len)) {
        if (done)
            done(buf, -EINVAL, arg);
        return -EINVAL;
    }
    if (len == 0) {
        if (done)
            done(buf, 0, arg);
        return 0;
    }
    struct evn__chunk *ch = evn__malloc(sizeof *ch);
    if (!ch) {
        if (done)
            done(buf, -ENOMEM, arg);
        return -ENOMEM;
    }
    memset(ch, 0, sizeof *ch);
    ch->buf = buf;
    ch->len = len;
    /* cap 0 keeps evn_write from appending into the application's buffer. */
    ch->done = done;
    ch->arg = arg;
    return post_chunk(srv, id, ch);
}
