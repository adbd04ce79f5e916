/*
 * An event loop: one poller, the handles registered with it, timers, and
 * work deferred to the end of each turn. It calls each handle's, timer's and
 * hook's own function and knows nothing else of them. Each loop runs on one
 * thread and owns everything registered with it, so nothing here locks.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t evn__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t evn__now_ms(void)
{
    return evn__now_ns() / 1000000;
}

void evn__defer(struct evn_loop *loop, struct evn__defer *d)
{
    if (d->queued)
        return;
    d->queued = true;
    d->next = NULL;
    *loop->defer_tail = d;
    loop->defer_tail = &d->next;
}

/* The hooks queued so far; those they queue wait for the next turn. */
static void run_deferred(struct evn_loop *loop)
{
    struct evn__defer *d = loop->defer_head;
    loop->defer_head = NULL;
    loop->defer_tail = &loop->defer_head;
    while (d) {
        struct evn__defer *next = d->next;
        d->queued = false;
        d->cb(loop, d);
        d = next;
    }
}

static void tick_fired(struct evn_loop *loop, struct evn__timer *t)
{
    struct evn_server *srv = loop->srv;
    int64_t delay = loop->tick_delay_ms;
    evn_action a = srv->ev.tick(srv, &delay);
    if (delay >= 0) {
        loop->tick_delay_ms = delay;
        /* Out of memory for the heap: the ticker stops rather than the loop. */
        evn__timer_start(loop, t, evn__now_ms() + delay);
    }
    if (a == EVN_SHUTDOWN)
        evn_shutdown(srv);
}

/* The drain's deadline: waking the loop is all it takes (evn__loop_run
 * checks the drain at the top of every turn). */
static void drain_fired(struct evn_loop *loop, struct evn__timer *t)
{
}

int evn__loop_init(struct evn_loop *loop, struct evn_server *srv, int index)
{
    loop->srv = srv;
    loop->index = index;
    loop->be = srv->be;
    loop->defer_tail = &loop->defer_head;
    loop->tick_timer.cb = tick_fired;
    loop->drain_timer.cb = drain_fired;
    atomic_init(&loop->nconns, 0);
    loop->fired = evn__malloc(sizeof *loop->fired * EVN__FIRED_MIN);
    if (!loop->fired)
        return -ENOMEM;
    loop->nfired_cap = EVN__FIRED_MIN;
    int rc = evn__conns_init(loop);
    if (rc == 0)
        rc = loop->be->init(loop);
    if (rc == 0)
        rc = evn__inbox_init(loop);
    if (rc == 0)
        rc = evn__lsocks_start(loop);
    return rc;
}

void evn__loop_destroy(struct evn_loop *loop)
{
    /* First: the resolver's sockets leave the backend, and its threads
     * stop posting to the inbox. */
    evn__resolver_free(loop);
    evn__inbox_free(loop);
    evn__lsocks_free(loop);
    if (loop->bdata)
        loop->be->destroy(loop);
    evn__conns_free(loop);
    evn__free(loop->heap);
    evn__free(loop->fired);
}

/* How long the poller may sleep: until the first timer is due; not at all
 * when work is deferred to the end of a turn. now_ns: the clock just read. */
static int next_timeout(struct evn_loop *loop, int64_t now_ns)
{
    if (loop->defer_head)
        return 0;
    if (!loop->nheap)
        return -1;
    loop->now_ms = now_ns / 1000000;
    int64_t left = evn__timer_next(loop);
    return left > 1000000 ? 1000000 : (int)left;
}

#ifdef __linux__
/*
 * Unlike send(), splice() and sendfile() into a socket whose peer is gone
 * raise SIGPIPE, and no flag prevents it. evn promises the process never gets
 * one, so a loop that uses them keeps SIGPIPE blocked on its thread: such a
 * SIGPIPE, directed at the thread, then stays pending there, and is taken
 * back with sigtimedwait when the call reports EPIPE. One mask change per
 * loop, none per call.
 */
void evn__sigpipe_block(struct evn_loop *loop)
{
    if (loop->sigpipe_blocked)
        return;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &s, &loop->sigpipe_old) == 0)
        loop->sigpipe_blocked = true;
}

void evn__sigpipe_take(void)
{
    sigset_t s;
    struct timespec zero = {0, 0};
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    while (sigtimedwait(&s, NULL, &zero) == SIGPIPE)
        ;
}

void evn__sigpipe_restore(struct evn_loop *loop)
{
    evn__sigpipe_take();
    if (!sigismember(&loop->sigpipe_old, SIGPIPE)) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGPIPE);
        pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    }
    loop->sigpipe_blocked = false;
}
#endif

_Thread_local struct evn_loop *evn__cur_loop;

int evn__loop_run(struct evn_loop *loop)
{
    struct evn_server *srv = loop->srv;
    int rc = 0;
    evn__cur_loop = loop;
    /* The ticker's first run is right after serving. */
    if (loop->index == 0 && srv->ev.tick) {
        loop->tick_delay_ms = 1000;
        evn__timer_start(loop, &loop->tick_timer, evn__now_ms());
    }
    /*
     * The clock is read twice a turn, around the wait: the time spent in it
     * and the time spent working between waits go to the statistics, and
     * the readings serve the timers too (now_ms), so a loop with timers
     * reads it no more often than it needs to for them. Nothing is read per
     * event.
     */
    struct evn__stats *st = &loop->stats;
    int64_t woke = evn__now_ns();
    while (!atomic_load_explicit(&srv->stopping, memory_order_acquire)) {
        if (atomic_load_explicit(&srv->draining, memory_order_acquire)) {
            if (!loop->drain_started)
                evn__loop_drain_start(loop);
            if (evn__loop_drain_done(loop))
                break;
        }
        int64_t sleeps = evn__now_ns();
        evn__stat_add(&st->work_ns, (uint64_t)(sleeps - woke));
        evn__stat_publish(st);
        int n = loop->be->wait(loop, next_timeout(loop, sleeps));
        woke = evn__now_ns();
        loop->now_ms = woke / 1000000;
        evn__stat_add(&st->wait_ns, (uint64_t)(woke - sleeps));
        if (n < 0) {
            rc = n;
            evn_shutdown(srv);
            break;
        }
        evn__stat_add(&st->turns, 1);
        evn__stat_add(&st->events, (uint64_t)n);
        for (int i = 0; i < n; i++) {
            struct evn__io *io = loop->fired[i].io;
            io->cb(loop, io, &loop->fired[i]);
        }
        if (loop->nheap)
            evn__timers_run(loop);
        if (loop->defer_head)
            run_deferred(loop);
    }
    evn__conn_close_all(loop, 0);
    if (loop->be->stop)
        loop->be->stop(loop);
#ifdef __linux__
    if (loop->sigpipe_blocked)
        evn__sigpipe_restore(loop);
#endif
    evn__stat_add(&st->work_ns, (uint64_t)(evn__now_ns() - woke));
    evn__stat_publish(st);
    evn__cur_loop = NULL;
    return rc;
}
