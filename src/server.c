/*
 * The server: listeners, loops and their threads, shutdown and wake-ups from
 * any thread, and the backend registry.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The backends this build has, the default first. */
static const struct evn__backend *const backends[] = {
#ifdef _WIN32
    &evn__backend_iocp,
#endif
#ifdef EVN_HAVE_EPOLL
    &evn__backend_epoll,
#endif
#ifdef EVN_HAVE_KQUEUE
    &evn__backend_kqueue,
#endif
#ifdef EVN_HAVE_URING
    &evn__backend_uring,
#endif
    &evn__backend_poll,
};

const struct evn__backend *evn__backend_find(const char *name, int *err)
{
    if (!name || !*name)
        name = getenv("EVN_BACKEND");
    if (!name || !*name)
        return backends[0];
    if (strcmp(name, "auto") == 0) {
        /* The fastest that works here: io_uring if it can be set up (it
         * may be disabled by sysctl or a container's seccomp filter), else
         * the default. Decided once for the server. */
#ifdef EVN_HAVE_URING
        if (evn__uring_probe(false) == 0)
            return &evn__backend_uring;
#endif
        return backends[0];
    }
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (strcmp(backends[i]->name, name) != 0)
            continue;
#ifdef EVN_HAVE_URING
        /* Asked for by name, io_uring must work, or the server is not made;
         * evn_errmsg() says why not. */
        if (backends[i] == &evn__backend_uring && (*err = evn__uring_probe(true)) < 0)
            return NULL;
#endif
        return backends[i];
    }
    if (strcmp(name, "epoll") == 0 || strcmp(name, "kqueue") == 0 ||
        strcmp(name, "io_uring") == 0 || strcmp(name, "iocp") == 0) {
        evn__set_errmsg("backend '%s' is not available in this build or on this platform", name);
        *err = -ENOTSUP;
    } else {
        evn__set_errmsg("unknown backend '%s' (auto, epoll, io_uring, iocp, kqueue or poll)", name);
        *err = -EINVAL;
    }
    return NULL;
}

static int resolve_nloops(int n)
{
    if (n == -1) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    if (n == 0)
        n = 1;
    return n > EVN__MAX_LOOPS ? EVN__MAX_LOOPS : n;
}

static void server_destroy(struct evn_server *srv)
{
    evn__signals_detach(srv);
    /* Sockets handed over to a server that never ran stay with the process
     * that offered them, which is told why (once evn_server_new failed, the
     * reason is this thread's evn_errmsg()). */
    if (srv->handoff_fd >= 0)
        evn__handoff_answer(srv, srv->ran        ? "the server stopped at serving"
                                 : *evn_errmsg() ? evn_errmsg()
                                                 : "the server was freed without running");
    evn__inherit_release(srv);
    /* Only loops that evn__loop_init touched: a zeroed one holds fd 0. */
    if (srv->loops)
        for (int i = 0; i < srv->nloops_init; i++)
            evn__loop_destroy(&srv->loops[i]);
    if (srv->listeners)
        for (size_t i = 0; i < srv->nlisteners; i++)
            evn__listener_close(&srv->listeners[i]);
    evn__tls_clients_free(srv);
    evn__free(srv->hosts_file);
    evn__free(srv->dns_servers);
    evn__free(srv->loops);
    evn__free(srv->listeners);
    pthread_mutex_destroy(&srv->lfd_lock);
    evn__free(srv);
    evn__servers_add(-1);
}

/*
 * The size of evn_events in evn 0.1, the last release whose callers did not
 * pass it: the smallest a caller can have.
 */
#define EVENTS_0_1_SIZE (offsetof(evn_events, tls_handshake_timeout_ms) + sizeof(int64_t))

/*
 * Copy the caller's evn_events, which is ev_size bytes as its evn.h had it,
 * into *out: what it lacks stays zero, the default of every field.
 */
static int copy_events(evn_events *out, const evn_events *ev, size_t ev_size)
{
    memset(out, 0, sizeof *out);
    if (ev_size < EVENTS_0_1_SIZE) {
        evn__set_errmsg("evn_events of %zu bytes is smaller than any evn's (%zu)", ev_size,
                        (size_t)EVENTS_0_1_SIZE);
        return -EINVAL;
    }
    if (ev_size > sizeof *out) {
        const unsigned char *extra = (const unsigned char *)ev + sizeof *out;
        for (size_t i = 0; i < ev_size - sizeof *out; i++)
            if (extra[i]) {
                evn__set_errmsg("this program sets evn_events fields that libevn %s does not "
                                "know: it was built against a newer evn.h",
                                EVN__VERSION_STRING);
                return -ENOTSUP;
            }
        ev_size = sizeof *out;
    }
    memcpy(out, ev, ev_size);
    return 0;
}

/* Copy the settings for host names, and check them now rather than at the
 * first evn_connect. */
static int names_setup(struct evn_server *srv)
{
    evn_events *ev = &srv->ev;
    if ((ev->hosts_file && !(srv->hosts_file = evn__strdup(ev->hosts_file))) ||
        (ev->dns_servers && !(srv->dns_servers = evn__strdup(ev->dns_servers))))
        return -ENOMEM;
    ev->hosts_file = srv->hosts_file;
    ev->dns_servers = srv->dns_servers;
    if (srv->hosts_file && access(srv->hosts_file, R_OK) < 0) {
        int rc = -errno;
        evn__set_errmsg("hosts_file %s: %s", srv->hosts_file, evn_strerror(rc));
        return rc;
    }
    return evn__mech_check(srv);
}

int evn_server_new_sized(evn_server **srvp, const evn_events *user_ev, size_t ev_size,
                         const char *const *addrs, size_t naddrs)
{
    char err[256];
    int rc = 0;
    evn_events evs, *ev = &evs;
    if (!srvp || !user_ev || (naddrs && !addrs)) {
        evn__set_errmsg("evn_server_new: missing argument");
        return -EINVAL;
    }
    *srvp = NULL;
    /* Windows: Winsock started before any name is looked up. */
    if ((rc = evn__platform_init()) < 0)
        return rc;
    if ((rc = copy_events(ev, user_ev, ev_size)) < 0)
        return rc;
    if (ev->flow != EVN_FLOW_AUTO && ev->flow != EVN_FLOW_MANUAL) {
        evn__set_errmsg("unknown flow mode %d", (int)ev->flow);
        return -EINVAL;
    }
    if (ev->nloops < -1 || ev->balance < EVN_BALANCE_RANDOM ||
        ev->balance > EVN_BALANCE_LEAST_CONNECTIONS) {
        evn__set_errmsg(ev->nloops < -1 ? "nloops must be -1 or more, not %d"
                                        : "unknown balance mode %d",
                        ev->nloops < -1 ? ev->nloops : (int)ev->balance);
        return -EINVAL;
    }
    if (ev->out_high && ev->out_low > ev->out_high) {
        evn__set_errmsg("out_low (%zu) must not be above out_high (%zu)", ev->out_low,
                        ev->out_high);
        return -EINVAL;
    }
    if (naddrs > EVN__MAX_LISTENERS) {
        evn__set_errmsg("at most %d addresses, not %zu", EVN__MAX_LISTENERS, naddrs);
        return -EINVAL;
    }
    if (ev->idle_timeout_ms < 0 || ev->max_conns < 0) {
        evn__set_errmsg("idle_timeout_ms and max_conns must not be negative");
        return -EINVAL;
    }
    if (ev->batch_us > 1000000) {
        evn__set_errmsg("batch_us must be at most 1000000, not %u", (unsigned)ev->batch_us);
        return -EINVAL;
    }
    const struct evn__backend *be = evn__backend_find(ev->backend, &rc);
    if (!be)
        return rc;

    evn__servers_add(1);
    struct evn_server *srv = evn__calloc(1, sizeof *srv);
    if (!srv) {
        evn__servers_add(-1);
        return -ENOMEM;
    }
    srv->ev = *ev;
    srv->be = be;
    srv->nloops = resolve_nloops(ev->nloops);
    atomic_init(&srv->stopping, false);
    atomic_init(&srv->draining, false);
    atomic_init(&srv->handoffs_over, false);
    srv->sig_io.fd = srv->sig_wfd = -1;
    srv->handoff_fd = -1;
    pthread_mutex_init(&srv->lfd_lock, NULL);
    atomic_init(&srv->handing_off, false);
    atomic_init(&srv->rr_next, 0);
    atomic_init(&srv->rand_state, (unsigned)time(NULL) ^ ((unsigned)getpid() << 16) ^ 0x9e3779b9u);
    if (atomic_load(&srv->rand_state) == 0)
        atomic_store(&srv->rand_state, 1);

    if ((rc = names_setup(srv)) < 0)
        goto fail;
    /* A running evn process offering its listening sockets: take them
     * first, so that the listeners below use them instead of binding. */
    evn__set_errmsg("%s", "");
    if ((rc = evn__handoff_take(srv)) < 0)
        goto fail;
    srv->listeners = evn__calloc(naddrs ? naddrs : 1, sizeof *srv->listeners);
    srv->loops = evn__calloc((size_t)srv->nloops, sizeof *srv->loops);
    if (!srv->listeners || !srv->loops) {
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < naddrs; i++) {
        srv->listeners[i].index = i;
        srv->listeners[i].fd = -1;
        srv->nlisteners = i + 1;
        if (!addrs[i]) {
            snprintf(err, sizeof err, "address %zu is NULL", i);
            rc = -EINVAL;
        } else {
            rc =
                evn__listener_open(srv, &srv->listeners[i], addrs[i], srv->nloops, err, sizeof err);
        }
        if (rc < 0) {
            evn__set_errmsg("%s", err);
            goto fail;
        }
    }
    /* Offered sockets no address asked for: the offering process keeps
     * its own copies of them. */
    evn__inherit_release(srv);
    for (int i = 0; i < srv->nloops; i++) {
        srv->nloops_init = i + 1;
        rc = evn__loop_init(&srv->loops[i], srv, i);
        if (rc < 0) {
            evn__set_errmsg("cannot set up event loop %d (%s): %s", i, be->name, evn_strerror(rc));
            goto fail;
        }
    }
    *srvp = srv;
    return 0;
fail:
    server_destroy(srv);
    return rc;
}

static void *loop_thread(void *arg)
{
    struct evn_loop *loop = arg;
    evn__loop_run(loop);
    return NULL;
}

int evn_server_run(evn_server *srv)
{
    if (!srv)
        return -EINVAL;
    if (srv->ran)
        return -EALREADY;
    srv->ran = true;
    if (atomic_load(&srv->stopping)) {
        evn__signals_detach(srv);
        return 0;
    }
    if (srv->ev.serving) {
        /* serving runs on loop 0's thread, so it may call evn_connect. */
        evn__cur_loop = &srv->loops[0];
        evn_action a = srv->ev.serving(srv);
        if (a == EVN_SHUTDOWN) {
            /* What serving opened with evn_connect closes as at any stop. */
            evn__conn_close_all(&srv->loops[0], 0);
            if (srv->be->stop)
                srv->be->stop(&srv->loops[0]);
        }
        evn__cur_loop = NULL;
        if (a == EVN_SHUTDOWN) {
            evn__signals_detach(srv);
            return 0;
        }
    }
    /* The loops are ready and their listeners registered: the process that
     * handed them over may stop accepting now. A unix socket's file is
     * this server's to remove from now on. */
    if (srv->handoff_fd >= 0) {
        evn__handoff_answer(srv, NULL);
        for (size_t i = 0; i < srv->nlisteners; i++)
            if (srv->listeners[i].origin == EVN__FROM_HANDOFF &&
                srv->listeners[i].url.proto == EVN__UNIX)
                srv->listeners[i].unlink_on_free = true;
    }

    /* Loop threads take no signals: the application's thread handles them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (int i = 1; i < srv->nloops; i++) {
        int e = pthread_create(&srv->loops[i].thread, NULL, loop_thread, &srv->loops[i]);
        if (e != 0) {
            evn__set_errmsg("cannot start the thread of loop %d: %s", i, evn_strerror(e));
            rc = -e;
            evn_shutdown(srv);
            break;
        }
        srv->loops[i].started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    int rc0 = evn__loop_run(&srv->loops[0]);
    for (int i = 1; i < srv->nloops; i++)
        if (srv->loops[i].started)
            pthread_join(srv->loops[i].thread, NULL);
    evn__signals_detach(srv);
    return rc < 0 ? rc : rc0;
}

void evn_server_free(evn_server *srv)
{
    if (srv)
        server_destroy(srv);
}

int evn_serve_sized(const evn_events *ev, size_t ev_size, const char *const *addrs, size_t naddrs)
{
    evn_server *srv;
    int rc = evn_server_new_sized(&srv, ev, ev_size, addrs, naddrs);
    if (rc < 0)
        return rc;
    rc = evn_server_run(srv);
    evn_server_free(srv);
    return rc;
}

int evn_shutdown(evn_server *srv)
{
    if (!srv)
        return -EINVAL;
    if (atomic_exchange_explicit(&srv->stopping, true, memory_order_acq_rel))
        return 0;
    for (int i = 0; i < srv->nloops; i++)
        evn__loop_signal(&srv->loops[i]);
    return 0;
}

void *evn_server_udata(const evn_server *srv)
{
    return srv->ev.udata;
}

int evn_server_nloops(const evn_server *srv)
{
    return srv->nloops;
}

const char *evn_server_backend(const evn_server *srv)
{
    return srv->be->name;
}

size_t evn_server_naddrs(const evn_server *srv)
{
    return srv->nlisteners;
}

const char *evn_server_url(const evn_server *srv, size_t i)
{
    return i < srv->nlisteners ? srv->listeners[i].urlstr : NULL;
}

const struct sockaddr *evn_server_addr(const evn_server *srv, size_t i, socklen_t *len)
{
    if (i >= srv->nlisteners)
        return NULL;
    if (len)
        *len = srv->listeners[i].addrlen;
    return (const struct sockaddr *)&srv->listeners[i].addr;
}

int evn_version(void)
{
    return EVN_VERSION;
}

const char *evn_version_string(void)
{
    return EVN__VERSION_STRING;
}

/*
 * The entry points of evn 0.1, whose evn.h declared them as functions and
 * whose callers pass the 0.1 evn_events without its size. Binaries built
 * then keep working; evn.h now maps both names to the sized calls.
 */
#undef evn_server_new
#undef evn_serve
EVN_API int evn_server_new(evn_server **srvp, const evn_events *ev, const char *const *addrs,
                           size_t naddrs);
EVN_API int evn_serve(const evn_events *ev, const char *const *addrs, size_t naddrs);

int evn_server_new(evn_server **srvp, const evn_events *ev, const char *const *addrs, size_t naddrs)
{
    return evn_server_new_sized(srvp, ev, EVENTS_0_1_SIZE, addrs, naddrs);
}

int evn_serve(const evn_events *ev, const char *const *addrs, size_t naddrs)
{
    return evn_serve_sized(ev, EVENTS_0_1_SIZE, addrs, naddrs);
}
