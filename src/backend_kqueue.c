/*
 * The kqueue backend (BSD, macOS). Read and write interest are separate
 * filters, so a mask change is applied as adds and deletes of filters.
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#define KQ_BATCH 256
/* Open addressing over a wait's events: more than twice KQ_BATCH. */
#define KQ_HASH 512

struct kq_data {
    int kq;
    struct kevent events[KQ_BATCH];
};

static int kq_init(struct evn_loop *loop)
{
    struct kq_data *d = malloc(sizeof *d);
    if (!d)
        return -ENOMEM;
    d->kq = kqueue();
    if (d->kq < 0) {
        int e = errno;
        free(d);
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
    free(d);
    loop->bdata = NULL;
}

static int kq_apply(struct evn_loop *loop, int fd, int oldmask, int newmask)
{
    struct kq_data *d = loop->bdata;
    struct kevent ch[2];
    int n = 0;
    if ((oldmask ^ newmask) & EVN__READ)
        EV_SET(&ch[n++], fd, EVFILT_READ, newmask & EVN__READ ? EV_ADD : EV_DELETE, 0, 0, NULL);
    if ((oldmask ^ newmask) & EVN__WRITE)
        EV_SET(&ch[n++], fd, EVFILT_WRITE, newmask & EVN__WRITE ? EV_ADD : EV_DELETE, 0, 0,
               NULL);
    if (n && kevent(d->kq, ch, n, NULL, 0, NULL) < 0)
        return -errno;
    return 0;
}

static int kq_add(struct evn_loop *loop, int fd, int mask)
{
    return kq_apply(loop, fd, 0, mask);
}

static int kq_mod(struct evn_loop *loop, int fd, int oldmask, int newmask)
{
    return kq_apply(loop, fd, oldmask, newmask);
}

static int kq_del(struct evn_loop *loop, int fd, int oldmask, bool closing)
{
    /* Closing an fd removes its kevents. */
    if (closing)
        return 0;
    return kq_apply(loop, fd, oldmask, 0);
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
    /*
     * Read and write readiness of one fd arrive as two events, in any order
     * and with others between. They are merged into one, as epoll and poll
     * report them: the loop handles a wait's events one by one, an earlier one
     * may close a connection and a later callback reuse its fd (evn_connect),
     * and the fd's second event would then reach the new connection (a
     * connect in progress taken for done). `at` maps an fd to 1 + its entry.
     */
    uint16_t at[KQ_HASH] = {0};
    int k = 0;
    for (int i = 0; i < n; i++) {
        int fd = (int)d->events[i].ident;
        int mask = d->events[i].filter == EVFILT_WRITE ? EVN__WRITE : EVN__READ;
        unsigned h = (unsigned)fd % KQ_HASH;
        while (at[h] && loop->fired[at[h] - 1].fd != fd)
            h = (h + 1) % KQ_HASH;
        if (at[h]) {
            loop->fired[at[h] - 1].mask |= mask;
        } else {
            loop->fired[k] = (struct evn__fired){.fd = fd, .mask = mask};
            at[h] = (uint16_t)++k;
        }
    }
    return k;
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
