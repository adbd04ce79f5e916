/*
 * Listening sockets the process inherits instead of binding: those systemd
 * passes by socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), and
 * those a running evn process hands over (handoff.c). A listener whose
 * address matches an inherited socket's (family, address, port, type; or
 * its fdname= option, a LISTEN_FDNAMES entry) uses that socket, and every
 * other inherited socket of the same address too, one per loop as with
 * reuseport.
 *
 * systemd's sockets are read once, on the first evn_server_new that finds
 * them, and kept in a process-wide list until a listener takes them; one
 * that none takes stays open and the application's. The LISTEN_* variables
 * are removed then, so that a process started later does not read them.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef _WIN32

#define SD_LISTEN_FDS_START 3

static pthread_mutex_t sd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct evn__inherited *sd_socks;
static size_t sd_nsocks;

bool evn__inherited_describe(int fd, int origin, struct evn__inherited *in)
{
    memset(in, 0, sizeof *in);
    in->fd = fd;
    in->origin = origin;
    socklen_t len = sizeof in->type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &in->type, &len) < 0)
        return false;
    int on = 0;
    len = sizeof on;
#ifdef SO_ACCEPTCONN
    if (in->type == SOCK_STREAM && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0)
        in->listening = on != 0;
#else
    in->listening = in->type == SOCK_STREAM;
#endif
    on = 0;
    len = sizeof on;
#ifdef SO_REUSEPORT
    if (getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0)
        in->reuseport = on != 0;
#endif
    in->addrlen = sizeof in->addr;
    if (getsockname(fd, (struct sockaddr *)&in->addr, &in->addrlen) < 0)
        return false;
    return true;
}

/* The n-th name in a colon-separated list, into out ("" if none). */
static void nth_name(const char *names, int n, char *out, size_t size)
{
    out[0] = '\0';
    if (!names)
        return;
    for (int i = 0; i < n; i++) {
        names = strchr(names, ':');
        if (!names)
            return;
        names++;
    }
    size_t len = strcspn(names, ":");
    if (len >= size)
        len = size - 1;
    memcpy(out, names, len);
    out[len] = '\0';
}

/* Read systemd's sockets, if it passed this process any (sd_lock held). */
static void sd_load(void)
{
    const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
    if (!pid || !nfds)
        return;
    char *end;
    long p = strtol(pid, &end, 10), n;
    bool ours = *pid && !*end && p == (long)getpid();
    n = strtol(nfds, &end, 10);
    if (!*nfds || *end || n <= 0 || n > 4096)
        ours = false;
    if (ours) {
        const char *names = getenv("LISTEN_FDNAMES");
        /* The C library's memory: the list may outlive every server, and
         * evn_set_allocator may change evn's meanwhile. */
        struct evn__inherited *more = realloc(sd_socks, (sd_nsocks + (size_t)n) * sizeof *sd_socks);
        if (!more)
            return; /* the variables stay: a later server may try again */
        sd_socks = more;
        for (int i = 0; i < (int)n; i++) {
            int fd = SD_LISTEN_FDS_START + i;
            struct evn__inherited *in = &sd_socks[sd_nsocks];
            if (!evn__inherited_describe(fd, EVN__FROM_SYSTEMD, in))
                continue; /* not a socket: not ours to touch */
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            nth_name(names, i, in->name, sizeof in->name);
            sd_nsocks++;
        }
        if (!sd_nsocks) {
            free(sd_socks);
            sd_socks = NULL;
        }
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static int port_of(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)a)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
}

static bool is_wildcard(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
    return a->ss_family == AF_INET6 && memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                                              &in6addr_any, sizeof in6addr_any) == 0;
}

/*
 * Whether in can serve l. Port 0 in the URL takes any port (the first such
 * socket found); an empty host under tcp:// or udp:// takes the IPv6 or the
 * IPv4 wildcard.
 */
static bool matches(const struct evn__listener *l, const struct evn__inherited *in)
{
    const struct evn__url *u = &l->url;
    int type = u->proto == EVN__UDP ? SOCK_DGRAM : SOCK_STREAM;
    if (in->type != type || (type == SOCK_STREAM && !in->listening))
        return false;
    if (u->fdname[0])
        return strcmp(u->fdname, in->name) == 0;
    if (u->proto == EVN__UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&in->addr;
        size_t max = in->addrlen > offsetof(struct sockaddr_un, sun_path)
                         ? in->addrlen - offsetof(struct sockaddr_un, sun_path)
                         : 0;
        return in->addr.ss_family == AF_UNIX && max > 0 && un->sun_path[0] &&
               strnlen(un->sun_path, max) == strlen(u->path) &&
               memcmp(un->sun_path, u->path, strlen(u->path)) == 0;
    }
    if (in->addr.ss_family != AF_INET && in->addr.ss_family != AF_INET6)
        return false;
    if (u->port && port_of(&in->addr) != u->port)
        return false;
    if (u->host[0] == '\0' && u->family == AF_UNSPEC)
        return is_wildcard(&in->addr);
    return same_ip(&l->addr, &in->addr);
}

/*
 * Move the sockets of list[0..*n) that serve l (and, after the first, have
 * its address and port) to fds, up to max; returns how many.
 */
static int take_from(const struct evn__listener *l, struct evn__inherited *list, size_t *n,
                     int *fds, int max, struct evn__inherited *first)
{
    int k = 0;
    for (size_t i = 0; i < *n && k < max;) {
        struct evn__inherited *in = &list[i];
        bool ok = matches(l, in);
        if (ok && k > 0)
            ok = in->addrlen == first->addrlen &&
                 memcmp(&in->addr, &first->addr, first->addrlen) == 0;
        if (!ok) {
            i++;
            continue;
        }
        if (k == 0)
            *first = *in;
        evn__set_nonblock(in->fd, true);
        fds[k++] = in->fd;
        list[i] = list[--*n];
    }
    return k;
}

int evn__inherit_claim(struct evn_server *srv, const struct evn__listener *l, int *fds, int max,
                       struct evn__inherited *first)
{
    pthread_mutex_lock(&sd_lock);
    int k = take_from(l, srv->inh, &srv->ninh, fds, max, first);
    if (k == 0) {
        sd_load();
        k = take_from(l, sd_socks, &sd_nsocks, fds, max, first);
        if (sd_nsocks == 0) {
            free(sd_socks);
            sd_socks = NULL;
        }
    }
    pthread_mutex_unlock(&sd_lock);
    return k;
}

void evn__inherit_release(struct evn_server *srv)
{
    for (size_t i = 0; i < srv->ninh; i++)
        close(srv->inh[i].fd);
    evn__free(srv->inh);
    srv->inh = NULL;
    srv->ninh = 0;
}

#else /* _WIN32 */

/* Windows has neither systemd nor descriptors a process inherits by
 * number: there are never inherited sockets, every listener binds. */
bool evn__inherited_describe(int fd, int origin, struct evn__inherited *in)
{
    (void)fd, (void)origin, (void)in;
    return false;
}

int evn__inherit_claim(struct evn_server *srv, const struct evn__listener *l, int *fds, int max,
                       struct evn__inherited *first)
{
    (void)srv, (void)l, (void)fds, (void)max, (void)first;
    return 0;
}

void evn__inherit_release(struct evn_server *srv)
{
    evn__free(srv->inh);
    srv->inh = NULL;
    srv->ninh = 0;
}

#endif
