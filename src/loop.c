/*
 * An event loop: one poller, the sockets registered with it, a cross-thread
 * inbox, and the ticker on loop 0. Each loop runs on one thread and owns its
 * connections outright, so nothing here locks except the inbox.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef EVN_HAVE_EVENTFD
#include <sys/eventfd.h>
#endif

#define EVN__RBUF_SIZE (64 * 1024)
#define EVN__FIRED_MIN 256
#define EVN__ACCEPT_BATCH 64
#define EVN__ACCEPT_RETRY_MS 100

int64_t evn__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int evn__loop_track(struct evn_loop *loop, int fd, struct evn__handle *h)
{
    if (fd >= loop->table_cap) {
        int ncap = loop->table_cap ? loop->table_cap : 256;
        while (ncap <= fd)
            ncap *= 2;
        struct evn__handle **nt = evn__realloc(loop->table, sizeof *nt * (size_t)ncap);
        if (!nt)
            return -ENOMEM;
        memset(nt + loop->table_cap, 0, sizeof *nt * (size_t)(ncap - loop->table_cap));
        loop->table = nt;
        loop->table_cap = ncap;
    }
    loop->table[fd] = h;
    return 0;
}

static int open_wakefd(struct evn_loop *loop)
{
#ifdef EVN_HAVE_EVENTFD
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    loop->wake_rfd = loop->wake_wfd = fd;
#else
    int p[2];
    int rc = evn__pipe_nb(p);
    if (rc < 0)
        return rc;
    loop->wake_rfd = p[0];
    loop->wake_wfd = p[1];
#endif
    return 0;
}

void evn__loop_signal(struct evn_loop *loop)
{
#ifdef EVN_HAVE_EVENTFD
    uint64_t one = 1;
    ssize_t r = write(loop->wake_wfd, &one, sizeof one);
#else
    char one = 1;
    ssize_t r = write(loop->wake_wfd, &one, 1);
#endif
    /* A full pipe or counter already means "wake up". */
    (void)r;
}

static void clear_wakefd(struct evn_loop *loop)
{
    char buf[64];
#ifdef EVN_HAVE_EVENTFD
    ssize_t r = read(loop->wake_rfd, buf, sizeof(uint64_t));
    (void)r;
#else
    while (read(loop->wake_rfd, buf, sizeof buf) > 0)
        ;
#endif
}

/* Register the listening sockets this loop accepts or receives on. */
static int add_lsocks(struct evn_loop *loop)
{
    struct evn_server *srv = loop->srv;
    loop->lsocks = evn__calloc(srv->nlisteners ? srv->nlisteners : 1, sizeof *loop->lsocks);
    if (!loop->lsocks)
        return -ENOMEM;
    for (size_t i = 0; i < srv->nlisteners; i++) {
        struct evn__listener *l = &srv->listeners[i];
        int fd = l->fds ? l->fds[loop->index] : (loop->index == 0 ? l->fd : -1);
        if (fd < 0)
            continue;
        struct evn__lsock *ls = &loop->lsocks[loop->nlsocks++];
        ls->fd = fd;
        ls->l = l;
        ls->h.kind = l->url.proto == EVN__UDP ? EVN__H_UDP : EVN__H_LISTENER;
        if (ls->h.kind == EVN__H_UDP && !(ls->udp = evn__udp_conn_new(loop, (uint32_t)i)))
            return -ENOMEM;
        int rc = evn__loop_track(loop, fd, &ls->h);
        if (rc == 0)
            rc = loop->be->add(loop, fd, EVN__READ);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int evn__loop_init(struct evn_loop *loop, struct evn_server *srv, int index)
{
    loop->srv = srv;
    loop->index = index;
    loop->be = srv->be;
    loop->wake_rfd = loop->wake_wfd = -1;
    loop->next_seq = 1;
    atomic_init(&loop->nconns, 0);
    atomic_init(&loop->inbox_signalled, false);
    pthread_mutex_init(&loop->inbox_lock, NULL);
    loop->inbox_h.kind = EVN__H_INBOX;
    loop->fired = evn__malloc(sizeof *loop->fired * EVN__FIRED_MIN);
    loop->rbuf = evn__malloc(EVN__RBUF_SIZE);
    if (!loop->fired || !loop->rbuf)
        return -ENOMEM;
    loop->nfired_cap = EVN__FIRED_MIN;
    loop->rbuf_cap = EVN__RBUF_SIZE;
    int rc = loop->be->init(loop);
    if (rc < 0)
        return rc;
    if ((rc = open_wakefd(loop)) < 0)
        return rc;
    if ((rc = evn__loop_track(loop, loop->wake_rfd, &loop->inbox_h)) < 0 ||
        (rc = loop->be->add(loop, loop->wake_rfd, EVN__READ)) < 0)
        return rc;
    return add_lsocks(loop);
}

void evn__loop_destroy(struct evn_loop *loop)
{
    /* Connections handed over but never opened are closed unseen. */
    for (size_t i = 0; i < loop->ninbox; i++) {
        if (loop->inbox[i].type == EVN__M_CONN)
            close(loop->inbox[i].fd);
        else if (loop->inbox[i].type == EVN__M_WRITE)
            evn__chunk_release(loop, loop->inbox[i].chunk, -ENOTCONN);
    }
    for (size_t i = 0; i < loop->nlsocks; i++)
        if (loop->lsocks[i].udp) {
            evn__free(loop->lsocks[i].udp);
        }
    evn__free(loop->lsocks);
    if (loop->bdata)
        loop->be->destroy(loop);
    if (loop->wake_rfd >= 0)
        close(loop->wake_rfd);
    if (loop->wake_wfd >= 0 && loop->wake_wfd != loop->wake_rfd)
        close(loop->wake_wfd);
    evn__chunk_pool_free(loop);
    pthread_mutex_destroy(&loop->inbox_lock);
    evn__free(loop->inbox);
    evn__free(loop->inbox_spare);
    evn__free(loop->dirty);
    evn__free(loop->resume);
    evn__free(loop->heap);
    evn__free(loop->table);
    evn__free(loop->rbuf);
    evn__free(loop->fired);
}

int evn__loop_post(struct evn_loop *loop, const struct evn__msg *msg)
{
    bool signal = false;
    pthread_mutex_lock(&loop->inbox_lock);
    if (loop->ninbox == loop->inbox_cap) {
        size_t ncap = loop->inbox_cap ? loop->inbox_cap * 2 : 64;
        struct evn__msg *nb = evn__realloc(loop->inbox, sizeof *nb * ncap);
        if (!nb) {
            pthread_mutex_unlock(&loop->inbox_lock);
            return -ENOMEM;
        }
        loop->inbox = nb;
        loop->inbox_cap = ncap;
    }
    loop->inbox[loop->ninbox++] = *msg;
    if (!atomic_load_explicit(&loop->inbox_signalled, memory_order_relaxed)) {
        atomic_store_explicit(&loop->inbox_signalled, true, memory_order_relaxed);
        signal = true;
    }
    pthread_mutex_unlock(&loop->inbox_lock);
    if (signal)
        evn__loop_signal(loop);
    return 0;
}

static struct evn_conn *lookup(struct evn_loop *loop, evn_id id)
{
    int fd = (int)((id >> 32) & 0xffffff);
    if (fd >= loop->table_cap || !loop->table[fd] || loop->table[fd]->kind != EVN__H_CONN)
        return NULL;
    struct evn_conn *c = (struct evn_conn *)loop->table[fd];
    return c->seq == (uint32_t)id ? c : NULL;
}

/*
 * Take the whole queue at once (swapping in the spare array, so the lock is
 * held for a moment only), then act on it. Wakes for one connection that
 * arrive in one batch merge into one data event.
 */
static void drain_inbox(struct evn_loop *loop)
{
    clear_wakefd(loop);
    pthread_mutex_lock(&loop->inbox_lock);
    struct evn__msg *msgs = loop->inbox;
    size_t n = loop->ninbox, cap = loop->inbox_cap;
    loop->inbox = loop->inbox_spare;
    loop->inbox_cap = loop->spare_cap;
    loop->ninbox = 0;
    atomic_store_explicit(&loop->inbox_signalled, false, memory_order_relaxed);
    pthread_mutex_unlock(&loop->inbox_lock);
    loop->inbox_spare = msgs;
    loop->spare_cap = cap;

    for (size_t i = 0; i < n; i++) {
        struct evn_conn *c;
        if (msgs[i].type == EVN__M_WAKE && (c = lookup(loop, msgs[i].arg)))
            c->flags |= EVN__C_WOKEN;
    }
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].type == EVN__M_CONN) {
            evn__conn_open(loop, msgs[i].fd, (uint32_t)msgs[i].arg, &msgs[i].peer, msgs[i].peerlen);
            continue;
        }
        if (msgs[i].type == EVN__M_WRITE) {
            struct evn_conn *wc = lookup(loop, msgs[i].arg);
            if (wc)
                evn__conn_queue_chunk(wc, msgs[i].chunk);
            else
                evn__chunk_release(loop, msgs[i].chunk, -ENOTCONN);
            continue;
        }
        struct evn_conn *c = lookup(loop, msgs[i].arg);
        if (c && (c->flags & EVN__C_WOKEN)) {
            c->flags &= (uint32_t)~EVN__C_WOKEN;
            evn__conn_wake(c);
        }
    }
}

static uint32_t xorshift(atomic_uint *state)
{
    uint32_t x = atomic_load_explicit(state, memory_order_relaxed);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    atomic_store_explicit(state, x, memory_order_relaxed);
    return x;
}

static struct evn_loop *pick_loop(struct evn_server *srv)
{
    int n = srv->nloops;
    if (n == 1)
        return &srv->loops[0];
    switch (srv->ev.balance) {
    case EVN_BALANCE_ROUND_ROBIN:
        return &srv->loops[atomic_fetch_add_explicit(&srv->rr_next, 1, memory_order_relaxed) %
                           (unsigned)n];
    case EVN_BALANCE_LEAST_CONNECTIONS: {
        int best = 0;
        long least = atomic_load_explicit(&srv->loops[0].nconns, memory_order_relaxed);
        for (int i = 1; i < n; i++) {
            long k = atomic_load_explicit(&srv->loops[i].nconns, memory_order_relaxed);
            if (k < least)
                least = k, best = i;
        }
        return &srv->loops[best];
    }
    default:
        return &srv->loops[xorshift(&srv->rand_state) % (unsigned)n];
    }
}

/* Over max_conns: say so if the application gave words for it, and close. */
static void reject(struct evn_server *srv, int fd)
{
    const char *msg = srv->ev.busy_reply;
    if (msg) {
        ssize_t r = send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r;
    }
    close(fd);
}

/*
 * Out of descriptors (or kernel memory): the waiting connection cannot be
 * taken, and a level-triggered poller would report it again at once, forever.
 * Take the listeners off the poller until a connection of this loop closes or
 * a short while passes; the waiting clients stay in the backlog meanwhile.
 */
static void accept_pause(struct evn_loop *loop)
{
    if (loop->accept_paused)
        return;
    for (size_t i = 0; i < loop->nlsocks; i++)
        if (loop->lsocks[i].h.kind == EVN__H_LISTENER && loop->lsocks[i].fd >= 0)
            loop->be->del(loop, loop->lsocks[i].fd, EVN__READ, false);
    loop->accept_paused = true;
    loop->accept_retry_ms = evn__now_ms() + EVN__ACCEPT_RETRY_MS;
}

void evn__loop_accept_resume(struct evn_loop *loop)
{
    if (!loop->accept_paused)
        return;
    loop->accept_paused = false;
    for (size_t i = 0; i < loop->nlsocks; i++)
        if (loop->lsocks[i].h.kind == EVN__H_LISTENER && loop->lsocks[i].fd >= 0)
            loop->be->add(loop, loop->lsocks[i].fd, EVN__READ);
}

/*
 * Accept what is waiting, up to a batch, and give each connection to a loop:
 * this one for a reuseport socket, else the one the balancing mode picks. Only
 * the chosen loop is woken, so no loop wakes for nothing.
 */
static void accept_ready(struct evn_loop *loop, struct evn__lsock *ls)
{
    struct evn_server *srv = loop->srv;
    for (int k = 0; k < EVN__ACCEPT_BATCH; k++) {
        union evn__ip_addr peer;
        socklen_t plen = sizeof peer;
#ifdef EVN_HAVE_ACCEPT4
        int fd = accept4(ls->fd, &peer.sa, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        int fd = accept(ls->fd, &peer.sa, &plen);
        if (fd >= 0) {
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            evn__set_nonblock(fd, true);
        }
#endif
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause(loop);
            return;
        }
        int max = srv->ev.max_conns;
        if (atomic_fetch_add_explicit(&srv->total_conns, 1, memory_order_relaxed) >= max &&
            max > 0) {
            atomic_fetch_sub_explicit(&srv->total_conns, 1, memory_order_relaxed);
            reject(srv, fd);
            continue;
        }
        struct evn_loop *to = ls->l->fds ? loop : pick_loop(srv);
        atomic_fetch_add_explicit(&to->nconns, 1, memory_order_relaxed);
        if (to == loop) {
            evn__conn_open(loop, fd, (uint32_t)ls->l->index, &peer, plen);
            continue;
        }
        struct evn__msg m = {.type = EVN__M_CONN, .fd = fd, .arg = ls->l->index, .peer = peer};
        m.peerlen = (uint8_t)(plen <= sizeof peer ? plen : 0);
        if (evn__loop_post(to, &m) < 0) {
            atomic_fetch_sub_explicit(&to->nconns, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&srv->total_conns, 1, memory_order_relaxed);
            close(fd);
        }
    }
}

static void dispatch(struct evn_loop *loop, const struct evn__fired *f)
{
    if (f->fd < 0 || f->fd >= loop->table_cap)
        return;
    struct evn__handle *h = loop->table[f->fd];
    if (!h)
        return;
    switch (h->kind) {
    case EVN__H_CONN:
        evn__conn_ready((struct evn_conn *)h, f->mask);
        break;
    case EVN__H_LISTENER:
        accept_ready(loop, (struct evn__lsock *)h);
        break;
    case EVN__H_UDP:
        evn__udp_ready((struct evn__lsock *)h);
        break;
    case EVN__H_INBOX:
        drain_inbox(loop);
        break;
    case EVN__H_SIGNAL:
        evn__signals_ready(loop->srv);
        break;
    }
}

static void run_tick(struct evn_loop *loop)
{
    struct evn_server *srv = loop->srv;
    int64_t now = evn__now_ms();
    if (now < loop->tick_at_ms)
        return;
    int64_t delay = loop->tick_delay_ms;
    evn_action a = srv->ev.tick(srv, &delay);
    if (delay < 0) {
        loop->tick_on = false;
    } else {
        loop->tick_delay_ms = delay;
        loop->tick_at_ms = evn__now_ms() + delay;
    }
    if (a == EVN_SHUTDOWN)
        evn_shutdown(srv);
}

/* How long the poller may sleep: until the earliest of the ticker, a
 * timer, an accept retry and the drain's deadline; not at all if
 * connections wait to be resumed. */
static int next_timeout(struct evn_loop *loop)
{
    if (loop->nresume)
        return 0;
    if (!loop->tick_on && !loop->nheap && !loop->accept_paused && !loop->drain_started)
        return -1;
    int64_t now = evn__now_ms(), left = INT64_MAX;
    if (loop->drain_started)
        left = evn__drain_left_ms(loop->srv);
    if (loop->tick_on && loop->tick_at_ms - now < left)
        left = loop->tick_at_ms - now;
    if (loop->nheap) {
        loop->now_ms = now;
        int64_t t = evn__timer_next(loop);
        if (t < left)
            left = t;
    }
    if (loop->accept_paused && loop->accept_retry_ms - now < left)
        left = loop->accept_retry_ms - now;
    if (left <= 0)
        return 0;
    return left > 1000000 ? 1000000 : (int)left;
}

/* Close every connection this loop still has, firing closed for each. */
void evn__conn_close_all(struct evn_loop *loop, int err)
{
    for (int fd = 0; fd < loop->table_cap; fd++) {
        struct evn__handle *h = loop->table[fd];
        if (h && h->kind == EVN__H_CONN)
            evn__conn_close((struct evn_conn *)h, err);
    }
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
    if (loop->index == 0 && srv->ev.tick) {
        loop->tick_on = true;
        loop->tick_delay_ms = 1000;
        loop->tick_at_ms = evn__now_ms();
    }
    while (!atomic_load_explicit(&srv->stopping, memory_order_acquire)) {
        if (atomic_load_explicit(&srv->draining, memory_order_acquire)) {
            if (!loop->drain_started)
                evn__loop_drain_start(loop);
            if (evn__loop_drain_done(loop))
                break;
        }
        int n = loop->be->wait(loop, next_timeout(loop));
        if (n < 0) {
            rc = n;
            evn_shutdown(srv);
            break;
        }
        if (loop->nheap || loop->accept_paused)
            loop->now_ms = evn__now_ms();
        for (int i = 0; i < n; i++)
            dispatch(loop, &loop->fired[i]);
        if (loop->nheap)
            evn__timers_run(loop);
        if (loop->accept_paused && loop->now_ms >= loop->accept_retry_ms)
            evn__loop_accept_resume(loop);
        if (loop->nresume)
            evn__conn_resume_all(loop);
        if (loop->tick_on)
            run_tick(loop);
        /* Output queued outside its connection's own callbacks (by another
         * connection's, or by tick) goes out before the loop sleeps. */
        if (loop->ndirty)
            evn__conn_flush_dirty(loop);
    }
    evn__conn_close_all(loop, 0);
#ifdef __linux__
    if (loop->sigpipe_blocked)
        evn__sigpipe_restore(loop);
#endif
    evn__cur_loop = NULL;
    return rc;
}
