/*
 * tcp-proxy: a TCP (layer 4) proxy on evn.
 *
 *   tcp-proxy --listen tcp://:9000 --backend tcp://127.0.0.1:6380 [--backend ...]
 *
 * Each accepted client is paired with a new connection to the next backend,
 * round-robin, made with evn_connect from the client's opened callback, so
 * both ends of a pair live on the same loop and every callback of the pair
 * runs on that one thread: the pair's state needs no lock.
 *
 * A backend may be given by host name (tcp://cache-1.internal:6380): each
 * new client's evn_connect looks the name up again once the TTL of the last
 * answer has passed (at once for a name from a hosts file), and tries each
 * of its addresses in order, so a backend host replaced behind its name
 * (a rolling update, a failover) gets new clients without a restart of the
 * proxy; pairs already open stay where they are. --hosts-file and
 * --dns-servers choose where names come from.
 *
 * Bytes are relayed both ways as they come, each read written once to the
 * other end with evn_write. Backpressure, per direction: every connection's
 * high-water mark is --buffer bytes, and when a write takes the other end's
 * queued output over it (evn_conn_full), the proxy stops reading this end
 * (evn_conn_read(c, 0)) until the other end's output has drained (its
 * drained callback). So a slow reader on either side holds at most --buffer
 * bytes plus one read of the proxy's memory per direction, and TCP slows the
 * sender down.
 *
 * The two directions must stay independent, so the connections run with
 * EVN_FLOW_MANUAL: evn's own flow control would stop reading a connection
 * whose own output is full, which for a proxy's backend connection means not
 * taking the backend's answers while the backend is not taking the client's
 * input. A backend that does the same (as the echo example does) would then
 * wait on the proxy while the proxy waits on it, for good, even though the
 * client reads. In the manual mode evn leaves reading to the proxy and still
 * tells it when output drains.
 *
 * Half-close is passed through: end-of-file from one end (the eof callback)
 * becomes evn_conn_shutdown_write on the other, after what is queued for it;
 * evn closes a connection once both its directions are finished. When one
 * end fails (a refused or timed-out connect, a reset, an idle timeout), the
 * other is closed with evn_conn_close once its queued output is sent; no
 * other pair is touched.
 *
 * What a client sends before its backend is connected is queued on the
 * backend connection at once with evn_send on its id (evn sends it once
 * connected); past --buffer of it the client is not read until the backend
 * connection has drained it.
 *
 * Bulk directions are handed to evn_conn_splice: from then on the kernel
 * moves their bytes socket to socket through a pipe, and backpressure and
 * half-close for them are evn's (the proxy's eof callback still runs, after
 * the pipe is empty). By default (--splice auto) a direction switches once
 * it has relayed 256 KiB and a single read brought 16 KiB or more: small
 * request-reply traffic (Redis commands, a 16-byte echo) costs as many
 * system calls either way and stays relayed, while a transfer in bulk loses
 * its copies through user memory. --splice on splices from the start,
 * --splice BYTES after BYTES (and a read of min(BYTES, 16 KiB)), --splice
 * off never. If the splice cannot be made (no descriptors left for the pipe)
 * the direction goes on being relayed.
 *
 * --send-proxy v1|v2 has each backend connection begin with a PROXY protocol
 * header (evn_connect_proxy_header) naming the client and the address it
 * reached, so a backend listening with proxy= sees the client instead of
 * the proxy. A client that came through a balancer to a --listen URL with
 * proxy= is itself the one the balancer named (evn_conn_remote_addr gives
 * that), so a chain of proxies passes the first client on. A client with
 * no IP address (a unix socket) is sent as a header without addresses, and
 * the backend sees the proxy.
 */
#include "common.h"

#ifndef _WIN32
#include <arpa/inet.h>
#endif
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BACKENDS 64
#define MAX_LISTEN 8

enum { CLIENT, BACKEND };

/*
 * One client and its backend connection. Both connections' user data point
 * here. end[i] is the evn_conn of side i while it is open (the backend's only
 * from its opened callback on); each side's closed callback clears its own
 * pointer, so the other side never follows a dangling one. Every field is
 * touched only on the pair's loop thread. The pair is freed by the last of
 * its connections to close.
 */
struct pair {
    evn_conn *end[2];
    evn_id id[2];
    /* Side i has closed (or, for the backend, could not be started). */
    bool gone[2];
    /* Side i is not being read because the other side's output is full. */
    bool held[2];
    /* The client sent end-of-file before its backend was connected. */
    bool client_eof;
    /* Bytes sent to the backend before it was connected. */
    size_t early;
    /* Bytes relayed by hand from side i, and whether side i is spliced (or
     * will never be: the attempt failed). */
    uint64_t relayed[2];
    bool spliced[2];
    /* Which backend, for messages. */
    unsigned backend;
    int refs;
};

static const char *backends[MAX_BACKENDS];
static size_t nbackends;
static atomic_uint next_backend;
static int64_t connect_timeout_ms = 5000;
static int64_t idle_timeout_ms;
static size_t high_water = 4u << 20;
/* --splice: splice a direction after this many bytes, once a read of at
 * least splice_read bytes shows bulk traffic; -1: never. */
#define SPLICE_AUTO_BYTES (256 * 1024)
#define SPLICE_BULK_READ (16 * 1024)
static int64_t splice_after = SPLICE_AUTO_BYTES;
static size_t splice_read = SPLICE_BULK_READ;
/* --send-proxy: EVN_PROXY_V1 or EVN_PROXY_V2, 0 for none. */
static int send_proxy;

static int side_of(const evn_conn *c)
{
    return evn_conn_listener(c) == EVN_OUTBOUND ? BACKEND : CLIENT;
}

static void pair_unref(struct pair *p)
{
    if (--p->refs == 0)
        free(p);
}

static bool is_ip(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET || ss->ss_family == AF_INET6;
}

/* --send-proxy: the backend connection id tells the backend of client c. */
static int proxy_header(evn_conn *c, evn_id id)
{
    struct sockaddr_storage src, dst;
    socklen_t len;
    bool ip = evn_conn_remote_addr(c, &src, &len) == 0 && evn_conn_local_addr(c, &dst, &len) == 0 &&
              is_ip(&src) && is_ip(&dst);
    return evn_connect_proxy_header(evn_conn_server(c), id, send_proxy,
                                    ip ? (struct sockaddr *)&src : NULL,
                                    ip ? (struct sockaddr *)&dst : NULL);
}

/* A new client: start its backend connection. */
static evn_action client_opened(evn_conn *c)
{
    struct pair *p = calloc(1, sizeof *p);
    if (!p)
        return EVN_CLOSE;
    unsigned i = atomic_fetch_add_explicit(&next_backend, 1, memory_order_relaxed);
    p->backend = i % nbackends;
    const char *url = backends[p->backend];
    p->end[CLIENT] = c;
    p->id[CLIENT] = evn_conn_id(c);
    p->refs = 2;
    int rc = evn_connect(evn_conn_server(c), url, connect_timeout_ms, p, &p->id[BACKEND]);
    if (rc < 0) {
        fprintf(stderr, "tcp-proxy: %s: %s\n", evn_errmsg(), evn_strerror(rc));
        free(p);
        return EVN_CLOSE;
    }
    evn_conn_set_udata(c, p);
    /* On failure the client closes, and the backend connection once
     * connected (backend_opened sees the client gone). */
    if (send_proxy && (rc = proxy_header(c, p->id[BACKEND])) < 0) {
        fprintf(stderr, "tcp-proxy: %s: %s\n", evn_errmsg(), evn_strerror(rc));
        return EVN_CLOSE;
    }
    return EVN_NONE;
}

/* Hand side me's direction to the kernel (see the top of this file). */
static void try_splice(struct pair *p, int me)
{
    p->spliced[me] = true;
    evn_conn_splice(p->end[me], p->end[!me]);
}

/* The backend is connected: link it, and pass on what the client did
 * meanwhile. */
static evn_action backend_opened(evn_conn *c)
{
    struct pair *p = evn_conn_udata(c);
    p->end[BACKEND] = c;
    if (p->gone[CLIENT])
        return EVN_CLOSE;
    if (p->client_eof) {
        evn_conn_shutdown_write(c);
        p->spliced[CLIENT] = true; /* nothing more to move that way */
    }
    if (splice_after == 0) {
        if (!p->spliced[CLIENT])
            try_splice(p, CLIENT);
        try_splice(p, BACKEND);
    }
    return EVN_NONE;
}

static evn_action on_opened(evn_conn *c)
{
    if (idle_timeout_ms > 0)
        evn_conn_set_idle_timeout(c, idle_timeout_ms);
    return side_of(c) == CLIENT ? client_opened(c) : backend_opened(c);
}

/*
 * Pass in[0..len) to the other side: with evn_write once it is connected;
 * before, by id with evn_send, which queues it on the backend connection to
 * go out once the connect is done.
 */
static evn_action relay(evn_conn *c, struct pair *p, int me, const char *in, size_t len)
{
    evn_conn *peer = p->end[!me];
    int rc;
    if (peer) {
        rc = evn_write(peer, in, len);
    } else {
        rc = evn_send(evn_conn_server(c), p->id[BACKEND], in, len);
        p->early += len;
    }
    if (rc < 0)
        return EVN_CLOSE;
    /* The other end is full: hold this one until that one drains. */
    if (peer ? evn_conn_full(peer) : p->early > high_water) {
        p->held[me] = true;
        evn_conn_read(c, 0);
    }
    p->relayed[me] += len;
    /* Queued before the splice starts, this read's bytes still go first. */
    if (splice_after >= 0 && peer && !p->spliced[me] && !p->held[me] &&
        p->relayed[me] >= (uint64_t)splice_after && len >= splice_read)
        try_splice(p, me);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct pair *p = evn_conn_udata(c);
    int me = side_of(c), other = !me;
    if (!p || p->gone[other])
        return EVN_CLOSE;
    return relay(c, p, me, in, len);
}

/* c's queued output has drained: the other end, held because c was full,
 * is read again. */
static evn_action on_drained(evn_conn *c)
{
    struct pair *p = evn_conn_udata(c);
    int writer = !side_of(c);
    if (p && p->held[writer] && p->end[writer]) {
        p->held[writer] = false;
        evn_conn_read(p->end[writer], 1);
    }
    return EVN_NONE;
}

/* This side sent end-of-file: so does the proxy to the other side, after
 * what is queued for it. Each connection closes once both its directions are
 * done. */
static evn_action on_eof(evn_conn *c)
{
    struct pair *p = evn_conn_udata(c);
    int me = side_of(c), other = !me;
    if (!p || p->gone[other])
        return EVN_CLOSE;
    if (p->end[other])
        evn_conn_shutdown_write(p->end[other]);
    else
        p->client_eof = true;
    return EVN_NONE;
}

/*
 * One side is gone. Unlink it, and close the other side once its queued
 * output is sent, passing on the error. A backend still connecting has no
 * evn_conn yet: its opened callback sees the client gone and closes it.
 */
static evn_action on_closed(evn_conn *c, int err)
{
    struct pair *p = evn_conn_udata(c);
    if (!p)
        return EVN_NONE;
    int me = side_of(c), other = !me;
    /* Never connected: evn_errmsg() says why (the resolver's reason for a
     * name that did not resolve, each address's error when none took). */
    if (me == BACKEND && !p->end[BACKEND] && err)
        fprintf(stderr, "tcp-proxy: %s: %s (%s)\n", backends[p->backend], evn_strerror(err),
                evn_errmsg());
    p->end[me] = NULL;
    p->gone[me] = true;
    if (p->end[other])
        evn_conn_close(p->end[other], err);
    pair_unref(p);
    return EVN_NONE;
}

/*
 * A backend URL must be one evn_connect takes: tcp://, tcp4:// or tcp6://
 * with a numeric address or a host name and a port, or unix://PATH.
 * Checked at start so a typo is a usage error, not a failure on the first
 * client.
 */
/* A host name: letters, digits, '-', '_' and dots. evn_connect checks it
 * again, fully. */
static bool name_ok(const char *h)
{
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && *h != '-' && *h != '_' && *h != '.')
            return false;
    return true;
}

static bool backend_ok(const char *url)
{
    static const char *const schemes[] = {"tcp://", "tcp4://", "tcp6://"};
    if (strncmp(url, "unix://", 7) == 0)
        return url[7] != '\0';
    const char *hp = NULL;
    for (size_t i = 0; i < 3; i++) {
        if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
            hp = url + strlen(schemes[i]);
    }
    if (!hp)
        return false;
    char host[256];
    const char *colon;
    size_t hl;
    if (*hp == '[') {
        const char *close = strchr(hp, ']');
        if (!close || close[1] != ':')
            return false;
        hl = (size_t)(close - hp - 1);
        if (hl >= sizeof host)
            return false;
        memcpy(host, hp + 1, hl);
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon)
            return false;
        hl = (size_t)(colon - hp);
        if (hl >= sizeof host)
            return false;
        memcpy(host, hp, hl);
    }
    host[hl] = '\0';
    unsigned char addr[16];
    if (hl == 0 || (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1 &&
                    !name_ok(host)))
        return false;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    return !errno && end != colon + 1 && *end == '\0' && port > 0 && port <= 65535;
}

/* "--backend URL" names a server; "--backend auto|epoll|io_uring|kqueue|poll" picks the
 * event backend, as in the other examples. */
static const char *poller;

static int add_backend(const char *v)
{
    if (strcmp(v, "auto") == 0 || strcmp(v, "epoll") == 0 || strcmp(v, "io_uring") == 0 ||
        strcmp(v, "kqueue") == 0 || strcmp(v, "poll") == 0) {
        poller = v;
        return 0;
    }
    if (nbackends == MAX_BACKENDS || !backend_ok(v)) {
        fprintf(stderr,
                "tcp-proxy: bad backend '%s': want tcp://HOST:PORT (an IP address or a "
                "host name), tcp6://[IP]:PORT or unix://PATH\n",
                v);
        return -1;
    }
    backends[nbackends++] = v;
    return 0;
}

static const char *listen_urls[MAX_LISTEN];
static size_t nlisten;

static int add_listen(const char *v)
{
    if (nlisten == MAX_LISTEN)
        return -1;
    listen_urls[nlisten++] = v;
    return 0;
}

static int parse_ms(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0)
        return -1;
    *out = n;
    return 0;
}

static int set_connect_timeout(const char *v)
{
    return parse_ms(v, &connect_timeout_ms);
}

static int set_idle_timeout(const char *v)
{
    return parse_ms(v, &idle_timeout_ms);
}

static const char *hosts_file, *dns_servers;

static int set_hosts_file(const char *v)
{
    hosts_file = v;
    return 0;
}

static int set_dns_servers(const char *v)
{
    dns_servers = v;
    return 0;
}

static int set_splice(const char *v)
{
    if (strcmp(v, "off") == 0) {
        splice_after = -1;
        return 0;
    }
    if (strcmp(v, "auto") == 0) {
        splice_after = SPLICE_AUTO_BYTES;
        splice_read = SPLICE_BULK_READ;
        return 0;
    }
    if (strcmp(v, "on") == 0) {
        splice_after = 0;
        splice_read = 0;
        return 0;
    }
    if (parse_ms(v, &splice_after) < 0)
        return -1;
    splice_read = splice_after < SPLICE_BULK_READ ? (size_t)splice_after : SPLICE_BULK_READ;
    return 0;
}

static int set_send_proxy(const char *v)
{
    if (strcmp(v, "v1") == 0)
        send_proxy = EVN_PROXY_V1;
    else if (strcmp(v, "v2") == 0)
        send_proxy = EVN_PROXY_V2;
    else
        return -1;
    return 0;
}

static int set_buffer(const char *v)
{
    int64_t n;
    if (parse_ms(v, &n) < 0 || n < 4096 || (uint64_t)n > SIZE_MAX / 4)
        return -1;
    high_water = (size_t)n;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct ex_option more[] = {
        {"--listen",
         "--listen URL      serve on URL (tcp://:9000, unix:///path; may repeat;\n"
         "                    default tcp://:9000 unless --port is given)",
         add_listen},
        {"--backend",
         "--backend URL     a server to relay to, tcp://HOST:PORT, tcp6://[IP]:PORT\n"
         "                    or unix://PATH. HOST is an IP address or a host name,\n"
         "                    looked up again for new clients once its TTL has passed\n"
         "                    (every time, for one from a hosts file), its addresses\n"
         "                    tried in order: a backend replaced behind its name needs\n"
         "                    no restart. Repeat it: clients go to the backends\n"
         "                    round-robin",
         add_backend},
        {"--hosts-file",
         "--hosts-file PATH a hosts file (as /etc/hosts) read first for backend names",
         set_hosts_file},
        {"--dns-servers",
         "--dns-servers LIST  DNS servers for backend names instead of those of\n"
         "                    /etc/resolv.conf: IP[:PORT],... (needs evn with c-ares)",
         set_dns_servers},
        {"--backend-timeout",
         "--backend-timeout MS  connect timeout (default 5000; 0: the kernel's)",
         set_connect_timeout},
        {"--idle-timeout", "--idle-timeout MS close a connection idle this long (default 0: never)",
         set_idle_timeout},
        {"--buffer",
         "--buffer BYTES    output queued per connection before the other end is\n"
         "                    no longer read (default 4194304)",
         set_buffer},
        {"--splice",
         "--splice auto|on|off|BYTES  move a direction's bytes with splice(2),\n"
         "                    socket to socket: once it is bulk (auto, the default:\n"
         "                    256 KiB relayed and a 16 KiB read), from the start (on),\n"
         "                    after BYTES, or never (off); see README.md",
         set_splice},
        {"--send-proxy",
         "--send-proxy v1|v2  begin each backend connection with a PROXY protocol\n"
         "                    header naming the client (for a backend listening with\n"
         "                    proxy=, see README.md)",
         set_send_proxy},
    };
    struct ex_opts o = {.port = -1, .udp_port = -1, .loops = 1};
    ex_parse_more(argc, argv, &o, "tcp-proxy", 0, more, sizeof more / sizeof more[0]);
    if (nbackends == 0) {
        fprintf(stderr, "tcp-proxy: at least one --backend URL is needed (see --help)\n");
        return 2;
    }
    if (poller)
        o.backend = poller;
    static const char *const default_listen[] = {"tcp://:9000"};
    const char *const *urls = listen_urls;
    size_t nurls = nlisten;
    if (nlisten == 0 && o.port < 0 && !o.unixsock) {
        urls = default_listen;
        nurls = 1;
    }
    evn_events ev = {
        .opened = on_opened,
        .data = on_data,
        .eof = on_eof,
        .closed = on_closed,
        .drained = on_drained,
        /* The proxy holds and resumes reading itself: see the top of this
         * file. */
        .flow = EVN_FLOW_MANUAL,
        .out_high = high_water,
        .out_low = high_water / 4,
        .hosts_file = hosts_file,
        .dns_servers = dns_servers,
    };
    return ex_run_ext("tcp-proxy", &ev, &o, urls, nurls, NULL);
}
