/*
 * The kqueue backend (BSD, macOS). Read and write interest are separate
 * filters, so a mask change is applied as adds and deletes of filters.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#define KQ_BATCH 256
_Static_assert(KQ_BATCH <= EVN__FIRED_MIN, "a wait's events fit the loop's fired list");

struct kq_data {
    int kq;
    struct kevent events[KQ_BATCH];
};

static int kq_init(struct evn_loop *loop)
{
    struct kq_data *d = evn__malloc(sizeof *d);
    if (!d)
        return -ENOMEM;
    d->kq = kqueue();
    if (d->kq < 0) {
        int e = errno;
        evn__free(d);
        return -e;
    }
    loop->bdata = d;
    return 0;
}

static void kq_destroy(struct evn_loop *loop)
{
    struct kq_data *d = loop->bdata;
    if (!d)
        return;
    close(d->kq);
    evn__free(d);
    loop->bdata = NULL;
}

static int kq_apply(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask)
{
    struct kq_data *d = loop->bdata;
    struct kevent ch[2];
    int n = 0;
    if ((oldmask ^ newmask) & EVN__READ)
        EV_SET(&ch[n++], io->fd, EVFILT_READ, newmask & EVN__READ ? EV_ADD : EV_DELETE, 0, 0, io);
    if ((oldmask ^ newmask) & EVN__WRITE)
        EV_SET(&ch[n++], io->fd, EVFILT_WRITE, newmask & EVN__WRITE ? EV_ADD : EV_DELETE, 0, 0, io);
    if (n && kevent(d->kq, ch, n, NULL, 0, NULL) < 0)
        return -errno;
    return 0;
}

static int kq_add(struct evn_loop *loop, struct evn__io *io, int mask)
{
    return kq_apply(loop, io, 0, mask);
}

static int kq_mod(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask)
{
    return kq_apply(loop, io, oldmask, newmask);
}

static int kq_del(struct evn_loop *loop, struct evn__io *io, int oldmask, bool closing)
{
    /* Closing an fd removes its kevents. */
    if (closing)
        return 0;
    return kq_apply(loop, io, oldmask, 0);
}

static int kq_wait(struct evn_loop *loop, int timeout_ms)
{
    struct kq_data *d = loop->bdata;
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    int n = kevent(d->kq, NULL, 0, d->events, KQ_BATCH, tsp);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    /* Read and write readiness of one fd arrive as two events; the loop
     * handles each on its own, which is correct if not merged. */
    for (int i = 0; i < n; i++) {
        loop->fired[i].io = d->events[i].udata;
        loop->fired[i].ev = d->events[i].filter == EVFILT_WRITE ? EVN__WRITE : EVN__READ;
    }
    return n;
}

const struct evn__backend evn__backend_kqueue = {
    .name = "kqueue",
    .init = kq_init,
    .destroy = kq_destroy,
    .add = kq_add,
    .mod = kq_mod,
    .del = kq_del,
    .wait = kq_wait,
};
