/*
 * Connection timers: a binary min-heap per loop, one entry per connection
 * that has an idle timeout or a deadline. Activity does not touch the heap:
 * a connection only records when it was last active, and an idle entry that
 * comes due early is pushed back to its true time. So arming costs a heap
 * operation only when a timer is set or comes due, and never a system call.
 */
#include "internal.h"

#include <errno.h>

#define NEVER INT64_MAX

static int64_t due(const struct evn_conn *c)
{
    int64_t at = NEVER;
    if (c->idle_ms)
        at = c->last_active + (int64_t)c->idle_ms;
    if (c->deadline_at && c->deadline_at < at)
        at = c->deadline_at;
    return at;
}

static void place(struct evn_loop *loop, size_t i, struct evn__timer t)
{
    loop->heap[i] = t;
    t.c->heap_idx = (uint32_t)i + 1;
}

static void sift_up(struct evn_loop *loop, size_t i)
{
    struct evn__timer t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent].at <= t.at)
            break;
        place(loop, i, loop->heap[parent]);
        i = parent;
    }
    place(loop, i, t);
}

static void sift_down(struct evn_loop *loop, size_t i)
{
    struct evn__timer t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && loop->heap[child + 1].at < loop->heap[child].at)
            child++;
        if (loop->heap[child].at >= t.at)
            break;
        place(loop, i, loop->heap[child]);
        i = child;
    }
    place(loop, i, t);
}

void evn__timer_remove(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    if (!c->heap_idx)
        return;
    size_t i = c->heap_idx - 1;
    c->heap_idx = 0;
    struct evn__timer last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    place(loop, i, last);
    if (i > 0 && loop->heap[(i - 1) / 2].at > last.at)
        sift_up(loop, i);
    else
        sift_down(loop, i);
}

void evn__timer_update(struct evn_conn *c)
{
    struct evn_loop *loop = c->loop;
    int64_t at = due(c);
    if (at == NEVER) {
        evn__timer_remove(c);
        return;
    }
    if (c->heap_idx) {
        size_t i = c->heap_idx - 1;
        int64_t old = loop->heap[i].at;
        loop->heap[i].at = at;
        if (at < old)
            sift_up(loop, i);
        else
            sift_down(loop, i);
        return;
    }
    if (loop->nheap == loop->heap_cap) {
        size_t ncap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct evn__timer *nh = evn__realloc(loop->heap, sizeof *nh * ncap);
        if (!nh) {
            c->flags |= EVN__C_NOMEM;
            return;
        }
        loop->heap = nh;
        loop->heap_cap = ncap;
    }
    loop->heap[loop->nheap] = (struct evn__timer){at, c};
    c->heap_idx = (uint32_t)++loop->nheap;
    sift_up(loop, loop->nheap - 1);
}

int64_t evn__timer_next(struct evn_loop *loop)
{
    if (!loop->nheap)
        return -1;
    int64_t left = loop->heap[0].at - loop->now_ms;
    return left > 0 ? left : 0;
}

void evn__timers_run(struct evn_loop *loop)
{
    while (loop->nheap && loop->heap[0].at <= loop->now_ms) {
        struct evn_conn *c = loop->heap[0].c;
        bool idle = c->idle_ms && c->last_active + (int64_t)c->idle_ms <= loop->now_ms;
        bool deadline = c->deadline_at && c->deadline_at <= loop->now_ms;
        if (!idle && !deadline) {
            /* Active since it was filed: file it again at its real time. */
            evn__timer_update(c);
            continue;
        }
        if (deadline && !idle)
            c->deadline_at = 0;
        evn__timer_remove(c);
        evn__conn_timeout(c, idle);
    }
}
