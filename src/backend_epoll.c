/* The epoll backend (Linux): level-triggered, one registration per fd. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct ep_state {
    int epfd;
    int cap;
    struct epoll_event events[];
};

#define EPOLL_BATCH 256
_Static_assert(EPOLL_BATCH <= EVN__FIRED_MIN, "a wait's events fit the loop's fired list");

static int ep_init(struct evn_loop *loop)
{
    struct ep_state *d = evn__malloc(sizeof *d + EPOLL_BATCH * sizeof(struct epoll_event));
    if (!d)
        return -ENOMEM;
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (d->epfd < 0) {
        int e = errno;
        evn__free(d);
        return -e;
    }
    d->cap = EPOLL_BATCH;
    loop->bdata = d;
    return 0;
}

static void ep_destroy(struct evn_loop *loop)
{
    struct ep_state *d = loop->bdata;
    if (!d)
        return;
    close(d->epfd);
    evn__free(d);
    loop->bdata = NULL;
}

static uint32_t ep_mask(int mask)
{
    return (mask & EVN__READ ? EPOLLIN : 0) | (mask & EVN__WRITE ? EPOLLOUT : 0);
}

static int ep_ctl(struct evn_loop *loop, int op, struct evn__io *io, int mask)
{
    struct ep_state *d = loop->bdata;
    struct epoll_event ev = {.events = ep_mask(mask), .data.ptr = io};
    return epoll_ctl(d->epfd, op, io->fd, &ev) < 0 ? -errno : 0;
}

static int ep_add(struct evn_loop *loop, struct evn__io *io, int mask)
{
    return ep_ctl(loop, EPOLL_CTL_ADD, io, mask);
}

static int ep_mod(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask)
{
    return ep_ctl(loop, EPOLL_CTL_MOD, io, newmask);
}

static int ep_del(struct evn_loop *loop, struct evn__io *io, int oldmask, bool closing)
{
    /* Closing the last reference to a file removes it from every epoll set;
     * evn never duplicates its sockets, so a close needs no call here. */
    if (closing)
        return 0;
    return ep_ctl(loop, EPOLL_CTL_DEL, io, 0);
}

static int ep_wait(struct evn_loop *loop, int timeout_ms)
{
    struct ep_state *d = loop->bdata;
    int n = epoll_wait(d->epfd, d->events, d->cap, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = d->events[i].events;
        loop->fired[i].io = d->events[i].data.ptr;
        loop->fired[i].ev = (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP) ? EVN__READ : 0) |
                            (e & EPOLLOUT ? EVN__WRITE : 0);
    }
    return n;
}

const struct evn__backend evn__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .destroy = ep_destroy,
    .add = ep_add,
    .mod = ep_mod,
    .del = ep_del,
    .wait = ep_wait,
};
