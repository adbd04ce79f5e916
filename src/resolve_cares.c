/*
 * Looking names up with c-ares, driven by the loop itself: one channel per
 * loop, made on the first lookup. Its sockets are the loop's handles,
 * registered for the readiness c-ares asks for (its socket-state callback),
 * and its timeouts one loop timer, armed at the end of every turn that
 * touched the channel. Nothing blocks but reading /etc/resolv.conf and the
 * hosts file, which c-ares does when the channel is made and at each
 * lookup.
 *
 * A socket's handle lives as long as the loop, so that a stale event names
 * memory still there; on a completion backend a handle is reused only once
 * the backend has let go of it (EVN__RELEASED).
 */
#include "internal.h"

#include <ares.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

struct csock {
    struct evn__io io; /* io.fd: the socket, -1 when free */
    struct cares *ca;
    struct csock *next; /* every handle, and the free ones */
    struct csock *next_free;
    int mask;
    bool held; /* closed, and the backend still refers to it */
};

struct cares {
    ares_channel ch;
    struct evn__resolver *r;
    struct csock *socks, *free;
    struct evn__timer timer;
    struct evn__defer settle;
    bool destroying;
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_rc;

static void lib_init(void)
{
    lib_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

static struct csock *sock_find(struct cares *ca, int fd)
{
    for (struct csock *s = ca->socks; s; s = s->next)
        if (s->io.fd == fd && !s->held)
            return s;
    return NULL;
}

static void sock_io(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f);

static struct csock *sock_get(struct cares *ca, int fd)
{
    struct csock *s = ca->free;
    if (s) {
        ca->free = s->next_free;
    } else {
        if (!(s = evn__calloc(1, sizeof *s)))
            return NULL;
        s->ca = ca;
        s->io.cb = sock_io;
        s->next = ca->socks;
        ca->socks = s;
    }
    s->io.fd = fd;
    s->mask = 0;
    return s;
}

static void sock_put(struct cares *ca, struct csock *s)
{
    s->io.fd = -1;
    s->next_free = ca->free;
    ca->free = s;
}

/* Work out the timer once the turn is over, whatever touched the channel. */
static void touched(struct cares *ca)
{
    evn__defer(ca->r->loop, &ca->settle);
}

/*
 * c-ares wants readiness of fd, or (neither) is about to close it: then the
 * handle leaves the backend, and returns to the free list once the backend
 * no longer refers to it.
 */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct cares *ca = data;
    struct evn_loop *loop = ca->r->loop;
    int mask = (readable ? EVN__READ : 0) | (writable ? EVN__WRITE : 0);
    struct csock *s = sock_find(ca, fd);
    if (!s && !mask)
        return;
    if (!s && !(s = sock_get(ca, fd)))
        return; /* out of memory: the query times out */
    if (mask) {
        int rc =
            s->mask ? evn__io_mod(loop, &s->io, s->mask, mask) : evn__io_add(loop, &s->io, mask);
        s->mask = rc == 0 ? mask : 0;
        return;
    }
    if (s->mask && !loop->be->close)
        evn__io_del(loop, &s->io, s->mask, true);
    s->mask = 0;
    if (loop->be->close && loop->be->close(loop, &s->io, true) > 0)
        s->held = true;
    else
        sock_put(ca, s);
}

static void sock_io(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
    struct csock *s = evn__container_of(io, struct csock, io);
    if (f->ev == EVN__RELEASED) {
        s->held = false;
        sock_put(s->ca, s);
        return;
    }
    /* A stale event, of a socket closed since: nothing to do. */
    if (s->held || io->fd < 0 || !s->mask)
        return;
    ares_socket_t rfd = (f->ev & EVN__READ) ? io->fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = (f->ev & EVN__WRITE) ? io->fd : ARES_SOCKET_BAD;
    ares_process_fd(s->ca->ch, rfd, wfd);
    touched(s->ca);
}

static void timer_fired(struct evn_loop *loop, struct evn__timer *t)
{
    struct cares *ca = evn__container_of(t, struct cares, timer);
    ares_process_fd(ca->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    touched(ca);
}

static void settle(struct evn_loop *loop, struct evn__defer *d)
{
    struct cares *ca = evn__container_of(d, struct cares, settle);
    struct timeval tv;
    if (!ares_timeout(ca->ch, NULL, &tv)) {
        evn__timer_stop(loop, &ca->timer);
        return;
    }
    int64_t ms = (int64_t)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
    /* Out of memory for the timer heap: try again next turn. */
    if (evn__timer_start(loop, &ca->timer, evn__loop_now(loop) + ms) < 0)
        evn__defer(loop, d);
}

/* The server's DNS servers, if set: for evn_server_new to check, and for
 * each channel. */
static int set_servers(ares_channel ch, const char *servers, char *why, size_t whylen)
{
    int st = ares_set_servers_ports_csv(ch, servers);
    if (st != ARES_SUCCESS) {
        snprintf(why, whylen, "dns_servers \"%s\": %s", servers,
                 st == ARES_ENODATA ? "no server given" : ares_strerror(st));
        return st == ARES_ENOMEM ? -ENOMEM : -EINVAL;
    }
    return 0;
}

static int channel_new(struct evn__resolver *r, struct cares **out, char *why, size_t whylen)
{
    pthread_once(&lib_once, lib_init);
    if (lib_rc != ARES_SUCCESS) {
        snprintf(why, whylen, "c-ares: %s", ares_strerror(lib_rc));
        return -ENOMEM;
    }
    struct cares *ca = evn__calloc(1, sizeof *ca);
    if (!ca) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    ca->r = r;
    ca->timer.cb = timer_fired;
    ca->settle.cb = settle;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = ca;
    int st = ares_init_options(&ca->ch, &o, ARES_OPT_SOCK_STATE_CB);
    if (st != ARES_SUCCESS) {
        snprintf(why, whylen, "c-ares: %s", ares_strerror(st));
        evn__free(ca);
        return st == ARES_ENOMEM ? -ENOMEM : -EIO;
    }
    const char *servers = r->loop->srv->dns_servers;
    int rc = servers ? set_servers(ca->ch, servers, why, whylen) : 0;
    if (rc < 0) {
        ares_destroy(ca->ch);
        evn__free(ca);
        return rc;
    }
    *out = ca;
    return 0;
}

/* A c-ares lookup under way: the name's entry, and the channel. */
struct job {
    struct cares *ca;
    struct evn__lookup *lk;
};

static void answered(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct job *j = arg;
    struct cares *ca = j->ca;
    struct evn__lookup *lk = j->lk;
    evn__free(j);
    if (ca->destroying) {
        ares_freeaddrinfo(res);
        return;
    }
    size_t n = 0;
    int ttl = -1;
    for (struct ares_addrinfo_node *a = res ? res->nodes : NULL; a; a = a->ai_next)
        if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) && n < EVN__ADDRS_MAX) {
            n++;
            if (ttl < 0 || a->ai_ttl < ttl)
                ttl = a->ai_ttl;
        }
    struct evn__addrs *addrs = NULL;
    char why[200];
    if (status == ARES_SUCCESS && n == 0)
        status = ARES_ENODATA;
    if (status == ARES_SUCCESS && !(addrs = evn__addrs_new(n)))
        status = ARES_ENOMEM;
    if (status != ARES_SUCCESS) {
        snprintf(why, sizeof why, "%s", ares_strerror(status));
    } else {
        for (struct ares_addrinfo_node *a = res->nodes; a && addrs->n < n; a = a->ai_next) {
            if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
                continue;
            size_t len =
                a->ai_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
            memcpy(&addrs->a[addrs->n++], a->ai_addr, len);
        }
        addrs->ttl = ttl > 0 ? ttl : 0;
    }
    ares_freeaddrinfo(res);
    evn__lookup_done(ca->r, lk, addrs ? 0 : EVN_ERESOLVE, addrs, why);
}

int evn__mech_lookup(struct evn__resolver *r, struct evn__lookup *lk, const char *host, int family)
{
    struct cares *ca = r->mech;
    char why[200];
    if (!ca) {
        int rc = channel_new(r, &ca, why, sizeof why);
        if (rc < 0) {
            evn__set_errmsg("%s", why);
            return rc;
        }
        r->mech = ca;
    }
    struct job *j = evn__malloc(sizeof *j);
    if (!j)
        return -ENOMEM;
    j->ca = ca;
    j->lk = lk;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    /* An answer from the hosts file may come at once, inside this call:
     * evn__lookup_done hands it on at the end of the turn only. */
    ares_getaddrinfo(ca->ch, host, NULL, &hints, answered, j);
    touched(ca);
    return 0;
}

void evn__mech_free(struct evn__resolver *r)
{
    struct cares *ca = r->mech;
    if (!ca)
        return;
    struct evn_loop *loop = r->loop;
    /* The lookups under way end here (their jobs freed, nothing told), and
     * c-ares closes its sockets, through sock_state. */
    ca->destroying = true;
    ares_destroy(ca->ch);
    evn__timer_stop(loop, &ca->timer);
    while (ca->socks) {
        struct csock *s = ca->socks;
        ca->socks = s->next;
        evn__free(s);
    }
    evn__free(ca);
    r->mech = NULL;
}

int evn__mech_check(struct evn_server *srv)
{
    if (!srv->dns_servers)
        return 0;
    pthread_once(&lib_once, lib_init);
    ares_channel ch;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    if (lib_rc != ARES_SUCCESS || ares_init_options(&ch, &o, 0) != ARES_SUCCESS) {
        evn__set_errmsg("c-ares cannot be set up");
        return -ENOMEM;
    }
    char why[200];
    int rc = set_servers(ch, srv->dns_servers, why, sizeof why);
    ares_destroy(ch);
    if (rc < 0)
        evn__set_errmsg("%s", why);
    return rc;
}
