/*
 * The poll() backend: portable, O(n) per wait. A dense pollfd array plus an
 * fd -> slot map keeps add and delete O(1).
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct poll_data {
    struct pollfd *pfds;
    struct evn__io **ios; /* the handle of each pfds entry */
    int n, cap;
    int *slot; /* fd -> index in pfds, or -1 */
    int slot_cap;
};

static int pl_init(struct evn_loop *loop)
{
    struct poll_data *d = evn__calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    loop->bdata = d;
    return 0;
}

static void pl_destroy(struct evn_loop *loop)
{
    struct poll_data *d = loop->bdata;
    if (!d)
        return;
    evn__free(d->pfds);
    evn__free(d->ios);
    evn__free(d->slot);
    evn__free(d);
    loop->bdata = NULL;
}

static short pl_events(int mask)
{
    return (short)((mask & EVN__READ ? POLLIN : 0) | (mask & EVN__WRITE ? POLLOUT : 0));
}

static int pl_add(struct evn_loop *loop, struct evn__io *io, int mask)
{
    struct poll_data *d = loop->bdata;
    int fd = io->fd;
    if (fd >= d->slot_cap) {
        int ncap = d->slot_cap ? d->slot_cap : 64;
        while (ncap <= fd)
            ncap *= 2;
        int *ns = evn__realloc(d->slot, sizeof(int) * (size_t)ncap);
        if (!ns)
            return -ENOMEM;
        for (int i = d->slot_cap; i < ncap; i++)
            ns[i] = -1;
        d->slot = ns;
        d->slot_cap = ncap;
    }
    if (d->slot[fd] >= 0)
        return -EEXIST;
    if (d->n == d->cap) {
        int ncap = d->cap ? d->cap * 2 : 64;
        struct pollfd *np = evn__realloc(d->pfds, sizeof *np * (size_t)ncap);
        if (!np)
            return -ENOMEM;
        d->pfds = np;
        struct evn__io **ni = evn__realloc(d->ios, sizeof *ni * (size_t)ncap);
        if (!ni)
            return -ENOMEM;
        d->ios = ni;
        d->cap = ncap;
    }
    /* Every registered fd may fire at once: the loop's list of fired ones
     * grows here, where failing costs this registration only, not in wait,
     * where it would stop the loop. */
    if (loop->nfired_cap < d->cap) {
        struct evn__fired *nf = evn__realloc(loop->fired, sizeof *nf * (size_t)d->cap);
        if (!nf)
            return -ENOMEM;
        loop->fired = nf;
        loop->nfired_cap = d->cap;
    }
    d->pfds[d->n] = (struct pollfd){.fd = fd, .events = pl_events(mask)};
    d->ios[d->n] = io;
    d->slot[fd] = d->n++;
    return 0;
}

static int pl_mod(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask)
{
    struct poll_data *d = loop->bdata;
    int fd = io->fd;
    if (fd >= d->slot_cap || d->slot[fd] < 0)
        return -ENOENT;
    d->pfds[d->slot[fd]].events = pl_events(newmask);
    return 0;
}

static int pl_del(struct evn_loop *loop, struct evn__io *io, int oldmask, bool closing)
{
    struct poll_data *d = loop->bdata;
    int fd = io->fd;
    if (fd >= d->slot_cap || d->slot[fd] < 0)
        return -ENOENT;
    int i = d->slot[fd];
    d->pfds[i] = d->pfds[--d->n];
    d->ios[i] = d->ios[d->n];
    d->slot[d->pfds[i].fd] = i;
    d->slot[fd] = -1;
    return 0;
}

static int pl_wait(struct evn_loop *loop, int timeout_ms)
{
    struct poll_data *d = loop->bdata;
    int n = poll(d->pfds, (nfds_t)d->n, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int k = 0;
    for (int i = 0; i < d->n && k < n; i++) {
        short re = d->pfds[i].revents;
        if (!re)
            continue;
        loop->fired[k].io = d->ios[i];
        loop->fired[k].ev = (re & (POLLIN | POLLERR | POLLHUP | POLLNVAL) ? EVN__READ : 0) |
                            (re & POLLOUT ? EVN__WRITE : 0);
        k++;
    }
    return k;
}

const struct evn__backend evn__backend_poll = {
    .name = "poll",
    .init = pl_init,
    .destroy = pl_destroy,
    .add = pl_add,
    .mod = pl_mod,
    .del = pl_del,
    .wait = pl_wait,
};
