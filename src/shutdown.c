/*
 * Graceful shutdown and stopping on signals.
 *
 * A drain closes every listener at once (so new clients are refused, not
 * left hanging in a backlog), tells each open connection, and lets loops end
 * as their connections do. Loop 0 stays until the whole server is done, since
 * it holds the ticker and reads the signals; the other loops wake it as they
 * finish.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/signalfd.h>
#endif

int evn_shutdown_graceful(evn_server *srv, int64_t drain_ms)
{
    if (!srv)
        return -EINVAL;
    if (drain_ms <= 0)
        return evn_shutdown(srv);
    if (atomic_load(&srv->stopping) || atomic_load(&srv->draining))
        return 0;
    atomic_store(&srv->drain_deadline_ms, (long long)(evn__now_ms() + drain_ms));
    if (atomic_exchange(&srv->draining, true))
        return 0;
    for (int i = 0; i < srv->nloops; i++)
        evn__loop_signal(&srv->loops[i]);
    return 0;
}

int evn_server_draining(const evn_server *srv)
{
    return atomic_load(&srv->draining);
}

int64_t evn__drain_left_ms(struct evn_server *srv)
{
    int64_t left = (int64_t)atomic_load(&srv->drain_deadline_ms) - evn__now_ms();
    return left > 0 ? left : 0;
}

/* Fire draining for c and act on its answer. */
static void tell_draining(struct evn_conn *c)
{
    evn__conn_enter(c);
    evn_action a = c->loop->srv->ev.draining(c);
    evn__conn_leave(c);
    evn__conn_act(c, a);
}

/* Not yet opened (TLS handshake, outbound connect): told when it opens
 * (evn__conn_opened_draining). */
static void tell_if_open(struct evn_conn *c, void *arg)
{
    if (!(c->flags & (EVN__C_CLOSING | EVN__C_DETACHING | EVN__C_OPENING | EVN__C_CONNECTING)))
        tell_draining(c);
}

void evn__loop_drain_start(struct evn_loop *loop)
{
    struct evn_server *srv = loop->srv;
    loop->drain_started = true;
    evn__lsocks_close(loop);
    /* Wake up at the deadline, whatever else the loop waits for. */
    evn__timer_start(loop, &loop->drain_timer, (int64_t)atomic_load(&srv->drain_deadline_ms));
    /* Loop 0 accepts for the shared listeners and hands connections over:
     * until it has closed them, another loop with no connections left may
     * still be sent one, so it must not end yet. Now it may: tell them. */
    if (loop->index == 0) {
        atomic_store_explicit(&srv->handoffs_over, true, memory_order_release);
        for (int i = 1; i < srv->nloops; i++)
            evn__loop_signal(&srv->loops[i]);
    }
    if (srv->ev.draining)
        evn__conns_each(loop, tell_if_open, NULL);
}

void evn__conn_opened_draining(struct evn_conn *c)
{
    if (c->loop->srv->ev.draining && !(c->flags & (EVN__C_CLOSING | EVN__C_DETACHING)))
        tell_draining(c);
}

bool evn__loop_drain_done(struct evn_loop *loop)
{
    struct evn_server *srv = loop->srv;
    /* Connections a completion backend accepted before the listeners
     * closed are still to be reported: they were in the queue, so they are
     * served, not dropped when the loop ends. */
    if (loop->lsocks_held > 0 && evn__drain_left_ms(srv) > 0)
        return false;
    long left = loop->index == 0 ? atomic_load(&srv->total_conns) : atomic_load(&loop->nconns);
    /* A connection loop 0 accepted may still be on its way here (counted
     * in nconns only once loop 0 has picked this loop). */
    if (loop->index != 0 && !atomic_load_explicit(&srv->handoffs_over, memory_order_acquire) &&
        left == 0)
        left = 1;
    if (left > 0 && evn__drain_left_ms(srv) == 0) {
        evn__conn_close_all(loop, -ETIMEDOUT);
        if (loop->index != 0)
            left = 0;
        else
            left = atomic_load(&srv->total_conns);
    }
    /* Loop 0 ends last, at the deadline at the latest. */
    if (loop->index == 0 && left > 0 && evn__drain_left_ms(srv) == 0)
        left = 0;
    if (left == 0 && loop->index != 0)
        evn__loop_signal(&srv->loops[0]);
    return left == 0;
}

#if !defined(__linux__) && !defined(_WIN32)
/* Elsewhere a self-pipe: the handler only writes the signal number. */
static volatile sig_atomic_t sig_pipe_wfd = -1;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (sig_pipe_wfd >= 0) {
        ssize_t r = write(sig_pipe_wfd, &b, 1);
        (void)r;
    }
    errno = saved;
}
#endif

static void signals_ready(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f);

static void signals_gone(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
}

int evn_server_stop_on_signals(evn_server *srv, int64_t drain_ms)
{
    if (!srv)
        return -EINVAL;
    if (srv->ran || srv->sig_on)
        return -EALREADY;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
#ifdef __linux__
    pthread_sigmask(SIG_BLOCK, &set, &srv->sig_oldmask);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &srv->sig_oldmask, NULL);
        evn__set_errmsg("signalfd: %s", evn_strerror(e));
        return -e;
    }
    srv->sig_io.fd = srv->sig_wfd = fd;
#else
    int p[2];
    int prc = evn__pipe_nb(p);
    if (prc < 0)
        return prc;
    srv->sig_io.fd = p[0];
    srv->sig_wfd = p[1];
#ifdef _WIN32
    /* Windows has no SIGTERM to send and delivers Ctrl-C, Ctrl-Break and
     * the console's close as console events, on a thread of its own,
     * which writes them to the socket pair (win.c). */
    evn__console_stop_to(p[1]);
#else
    sig_pipe_wfd = p[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
#endif
    pthread_sigmask(SIG_BLOCK, NULL, &srv->sig_oldmask);
#endif
    struct evn_loop *loop0 = &srv->loops[0];
    srv->sig_io.cb = signals_ready;
    int rc = evn__io_add(loop0, &srv->sig_io, EVN__READ);
    srv->sig_on = true;
    srv->sig_drain_ms = drain_ms;
    if (rc < 0)
        evn__signals_detach(srv);
    return rc;
}

static void signals_ready(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
    struct evn_server *srv = loop->srv;
    for (;;) {
#ifdef __linux__
        struct signalfd_siginfo si;
        if (read(srv->sig_io.fd, &si, sizeof si) != (ssize_t)sizeof si)
            return;
#else
        unsigned char b;
        if (evn__sock_read(srv->sig_io.fd, &b, 1) != 1)
            return;
#endif
        if (++srv->nsignals == 1)
            evn_shutdown_graceful(srv, srv->sig_drain_ms);
        else
            evn_shutdown(srv);
    }
}

void evn__signals_detach(struct evn_server *srv)
{
    if (!srv->sig_on)
        return;
    struct evn_loop *loop0 = &srv->loops[0];
    evn__io_del(loop0, &srv->sig_io, EVN__READ, true);
    /* An event for it still in this turn's batch finds nothing to do. */
    srv->sig_io.cb = signals_gone;
#if defined(_WIN32)
    evn__console_stop_to(-1);
    evn__sock_close(srv->sig_wfd);
#elif !defined(__linux__)
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sig_pipe_wfd = -1;
    close(srv->sig_wfd);
#endif
    evn__sock_close(srv->sig_io.fd);
    srv->sig_io.fd = srv->sig_wfd = -1;
    srv->sig_on = false;
    pthread_sigmask(SIG_SETMASK, &srv->sig_oldmask, NULL);
}
