/*
 * Timers: a binary min-heap per loop of struct evn__timer, which callers
 * embed in their own objects, so arming one allocates nothing once the heap
 * has room. The heap holds each timer's due time beside its pointer, so
 * sifting reads no timer; the timer holds its place in the heap, so
 * changing or removing one is O(log n) with no search. The loop sleeps until
 * the first is due (evn__timer_next) and runs every due one after each wait.
 */
#include "internal.h"

#include <errno.h>

static void place(struct evn_loop *loop, size_t i, struct evn__timer_slot s)
{
    loop->heap[i] = s;
    s.t->heap_idx = (uint32_t)i + 1;
}

static void sift_up(struct evn_loop *loop, size_t i)
{
    struct evn__timer_slot s = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent].at <= s.at)
            break;
        place(loop, i, loop->heap[parent]);
        i = parent;
    }
    place(loop, i, s);
}

static void sift_down(struct evn_loop *loop, size_t i)
{
    struct evn__timer_slot s = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && loop->heap[child + 1].at < loop->heap[child].at)
            child++;
        if (loop->heap[child].at >= s.at)
            break;
        place(loop, i, loop->heap[child]);
        i = child;
    }
    place(loop, i, s);
}

void evn__timer_stop(struct evn_loop *loop, struct evn__timer *t)
{
    if (!t->heap_idx)
        return;
    size_t i = t->heap_idx - 1;
    t->heap_idx = 0;
    struct evn__timer_slot last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    place(loop, i, last);
    if (i > 0 && loop->heap[(i - 1) / 2].at > last.at)
        sift_up(loop, i);
    else
        sift_down(loop, i);
}

int evn__timer_start(struct evn_loop *loop, struct evn__timer *t, int64_t at)
{
    if (at == EVN__NEVER) {
        evn__timer_stop(loop, t);
        return 0;
    }
    if (t->heap_idx) {
        size_t i = t->heap_idx - 1;
        int64_t old = loop->heap[i].at;
        loop->heap[i].at = at;
        if (at < old)
            sift_up(loop, i);
        else
            sift_down(loop, i);
        return 0;
    }
    if (loop->nheap == loop->heap_cap) {
        size_t ncap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct evn__timer_slot *nh = evn__realloc(loop->heap, sizeof *nh * ncap);
        if (!nh)
            return -ENOMEM;
        loop->heap = nh;
        loop->heap_cap = ncap;
    }
    loop->heap[loop->nheap] = (struct evn__timer_slot){at, t};
    t->heap_idx = (uint32_t)++loop->nheap;
    sift_up(loop, loop->nheap - 1);
    return 0;
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
        struct evn__timer *t = loop->heap[0].t;
        evn__timer_stop(loop, t);
        t->cb(loop, t);
    }
}
