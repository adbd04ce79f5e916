/*
 * Host names in evn_connect. A name from the server's hosts_file reaches a
 * listener; its addresses are tried in order: IPv6 first when listed first,
 * IPv4 next when the IPv6 one refuses or does not answer in time; when all
 * fail, closed gets the last error and evn_errmsg() names every address.
 * A name that does not resolve closes with EVN_ERESOLVE and the resolver's
 * reason. Answers are kept for their TTL (a second connect asks no DNS
 * server) and not at all with a TTL of 0. Many connects to many names at
 * once all arrive; a server stopped or freed with lookups in flight frees
 * everything (the harness counts evn's allocations per subtest). Bad
 * settings fail evn_server_new.
 *
 * The DNS parts use a small DNS server on 127.0.0.1 (a thread here) given
 * as evn_events.dns_servers, and so run only with c-ares (EVN_CARES);
 * without it they are skipped, and the concurrent part resolves
 * "localhost" through getaddrinfo instead.
 */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- a small DNS server ---- */

struct dns_rec {
    const char *name;
    int type; /* 1: A, 28: AAAA */
    const char *addr;
    int ttl;
};

#define DNS_NAMES 64

struct dns {
    int fd, port, stop[2];
    pthread_t thread;
    const struct dns_rec *recs;
    size_t nrecs;
    /* Queries for names starting with this are never answered. */
    const char *blackhole;
    th_counter received;
    /* Queries per name: the index of the name's first record. */
    atomic_int asked[DNS_NAMES];
};

static void put16(unsigned char *p, int v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void dns_answer(struct dns *d)
{
    unsigned char q[512], r[2048];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(d->fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
    if (n < 12)
        return;
    char name[256];
    size_t p = 12, nl = 0;
    while (p < (size_t)n && q[p]) {
        size_t l = q[p];
        if (l > 63 || p + 1 + l > (size_t)n || nl + l + 2 > sizeof name)
            return;
        if (nl)
            name[nl++] = '.';
        memcpy(name + nl, q + p + 1, l);
        nl += l;
        p += 1 + l;
    }
    if (p + 5 > (size_t)n)
        return;
    name[nl] = '\0';
    int qtype = q[p + 1] << 8 | q[p + 2];
    p += 5;
    th_counter_add(&d->received, 1);
    if (d->blackhole && strncasecmp(name, d->blackhole, strlen(d->blackhole)) == 0)
        return;
    memcpy(r, q, p);
    r[2] = (unsigned char)(0x80 | (q[2] & 0x01)); /* a response; RD as asked */
    r[3] = 0x80;                                  /* RA, no error */
    put16(r + 4, 1);
    memset(r + 6, 0, 6);
    size_t o = p;
    int an = 0, first = -1;
    for (size_t i = 0; i < d->nrecs; i++) {
        const struct dns_rec *rec = &d->recs[i];
        if (strcasecmp(rec->name, name) != 0)
            continue;
        if (first < 0)
            first = (int)i;
        if (rec->type != qtype)
            continue;
        r[o++] = 0xc0; /* the name: a pointer to the question's */
        r[o++] = 12;
        put16(r + o, rec->type);
        put16(r + o + 2, 1);
        put16(r + o + 4, rec->ttl >> 16);
        put16(r + o + 6, rec->ttl & 0xffff);
        int len = rec->type == 1 ? 4 : 16;
        put16(r + o + 8, len);
        inet_pton(rec->type == 1 ? AF_INET : AF_INET6, rec->addr, r + o + 10);
        o += 10 + (size_t)len;
        an++;
    }
    if (first < 0)
        r[3] |= 3; /* no such name */
    else if (first < DNS_NAMES)
        atomic_fetch_add(&d->asked[first], 1);
    put16(r + 6, an);
    sendto(d->fd, r, o, 0, (struct sockaddr *)&from, fl);
}

static void *dns_run(void *arg)
{
    struct dns *d = arg;
    for (;;) {
        struct pollfd pf[2] = {{.fd = d->fd, .events = POLLIN},
                               {.fd = d->stop[0], .events = POLLIN}};
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            break;
        if (pf[1].revents)
            break;
        if (pf[0].revents)
            dns_answer(d);
    }
    return NULL;
}

static void dns_start(struct dns *d, const struct dns_rec *recs, size_t n, const char *blackhole)
{
    memset(d, 0, sizeof *d);
    d->blackhole = blackhole;
    th_counter_init(&d->received);
    d->recs = recs;
    d->nrecs = n;
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(bind(d->fd, (struct sockaddr *)&sin, sizeof sin), 0);
    d->port = th_sock_port(d->fd, false);
    ASSERT_EQ_INT(pipe(d->stop), 0);
    ASSERT_EQ_INT(pthread_create(&d->thread, NULL, dns_run, d), 0);
}

static void dns_stop(struct dns *d)
{
    ASSERT_EQ_INT(write(d->stop[1], "x", 1), 1);
    pthread_join(d->thread, NULL);
    close(d->fd);
    close(d->stop[0]);
    close(d->stop[1]);
    th_counter_destroy(&d->received);
}

/* Queries for the name of recs[i] so far. */
static int dns_asked(struct dns *d, int i)
{
    return atomic_load(&d->asked[i]);
}

static bool have_cares(void)
{
#ifdef EVN_HAVE_CARES
    return true;
#else
    return false;
#endif
}

/* ---- the server under test ---- */

#define MAX_TARGETS 64

struct state {
    char targets[MAX_TARGETS][200];
    int ntargets, nconnects;
    int64_t timeout_ms;
    bool stop_in_serving;
    th_counter out_opened, in_opened, closed;
    atomic_int connect_rc, close_err, out_family, in_family, out_port;
    char errmsg[512];
    /* Connects to make later, from the tick: the second of a pair that
     * must come after the first has closed. */
    atomic_int more;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static void connect_all(evn_server *srv, struct state *s, int n)
{
    for (int i = 0; i < n; i++) {
        const char *t = s->targets[i % s->ntargets];
        int rc = evn_connect(srv, t, s->timeout_ms, NULL, NULL);
        if (rc < 0) {
            fprintf(stderr, "evn_connect(%s): %s: %s\n", t, evn_strerror(rc), evn_errmsg());
            atomic_store(&s->connect_rc, rc);
        }
    }
}

static evn_action on_serving(evn_server *srv)
{
    struct state *s = evn_server_udata(srv);
    connect_all(srv, s, s->nconnects);
    return s->stop_in_serving ? EVN_SHUTDOWN : EVN_NONE;
}

static int family_of(evn_conn *c, bool remote, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = remote ? evn_conn_remote_addr(c, &ss, &len) : evn_conn_local_addr(c, &ss, &len);
    if (rc < 0)
        return rc;
    if (port)
        *port = th_sockaddr_port((struct sockaddr *)&ss);
    return ss.ss_family;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    if (evn_conn_listener(c) == EVN_OUTBOUND) {
        int port = 0;
        atomic_store(&s->out_family, family_of(c, true, &port));
        atomic_store(&s->out_port, port);
        th_counter_add(&s->out_opened, 1);
        return EVN_CLOSE;
    }
    atomic_store(&s->in_family, family_of(c, false, NULL));
    th_counter_add(&s->in_opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (evn_conn_listener(c) != EVN_OUTBOUND)
        return EVN_NONE;
    if (err) {
        atomic_store(&s->close_err, err);
        snprintf(s->errmsg, sizeof s->errmsg, "%s", evn_errmsg());
    }
    /* A second connect, once the first is over: from here, on the loop. */
    if (atomic_load(&s->more) > 0) {
        atomic_fetch_sub(&s->more, 1);
        connect_all(evn_conn_server(c), s, 1);
    }
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static void init_state(struct state *s)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->out_opened);
    th_counter_init(&s->in_opened);
    th_counter_init(&s->closed);
    s->nconnects = 1;
}

static void destroy_state(struct state *s)
{
    th_counter_destroy(&s->out_opened);
    th_counter_destroy(&s->in_opened);
    th_counter_destroy(&s->closed);
}

static evn_events events(struct state *s, const char *hosts, const struct dns *dns, char *servers,
                         size_t ssize)
{
    evn_events ev = {0};
    ev.udata = s;
    ev.serving = on_serving;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.closed = on_closed;
    ev.hosts_file = hosts;
    if (dns) {
        snprintf(servers, ssize, "127.0.0.1:%d", dns->port);
        ev.dns_servers = servers;
    }
    return ev;
}

/* Write a hosts file of these lines into the test's directory. */
static void write_hosts(char *path, size_t size, const char *text)
{
    th_tmppath(path, size, "hosts");
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    ASSERT_NOT_NULL(f);
    fputs(text, f);
    fclose(f);
    ASSERT_EQ_INT(rename(tmp, path), 0);
}

/* A TCP socket on ::1 (or 127.0.0.1) at port, listening with the given
 * backlog and never accepting. */
static int raw_listener(int family, int port, int backlog)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t len;
    th_make_addr(family == AF_INET6 ? "::1" : "127.0.0.1", port, &ss, &len);
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, backlog) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the subtests ---- */

static void test_hosts_file_name(void)
{
    char hosts[256];
    write_hosts(hosts, sizeof hosts,
                "# a comment line\n"
                "10.9.9.9 other.test\n"
                "127.0.0.1\tlocalhost.test  svc.test # trailing comment\n");
    struct state s;
    init_state(&s);
    evn_events ev = events(&s, hosts, NULL, NULL, 0);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://SVC.test:%d", port);
    s.ntargets = 1;
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    TH_WAIT_COUNTER(&s.in_opened, 1);
    EXPECT_EQ_INT(atomic_load(&s.connect_rc), 0);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    EXPECT_EQ_INT(atomic_load(&s.out_family), AF_INET);
    EXPECT_EQ_INT(atomic_load(&s.out_port), port);
    th_server_stop(&ts);
    destroy_state(&s);
}

/*
 * Both addresses listen, the IPv6 one listed first: it is the one
 * connected to. Its listener is a bare socket that never accepts; the
 * kernel completes the connect all the same.
 */
static void test_ipv6_first(void)
{
    if (!th_have_ipv6()) {
        th_skip("no IPv6");
        return;
    }
    char hosts[256];
    write_hosts(hosts, sizeof hosts, "::1 dual.test\n127.0.0.1 dual.test\n");
    struct state s;
    init_state(&s);
    evn_events ev = events(&s, hosts, NULL, NULL, 0);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    int v6 = raw_listener(AF_INET6, port, 16);
    if (v6 < 0) {
        th_server_free(&ts);
        destroy_state(&s);
        th_skip("port taken on ::1");
        return;
    }
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://dual.test:%d", port);
    s.ntargets = 1;
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 1);
    EXPECT_EQ_INT(atomic_load(&s.out_family), AF_INET6);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.in_opened), 0);
    close(v6);
    destroy_state(&s);
}

/* The IPv6 address listed first refuses: the IPv4 one is tried next,
 * before closed could fire. */
static void test_ipv4_after_refused_ipv6(void)
{
    if (!th_have_ipv6()) {
        th_skip("no IPv6");
        return;
    }
    char hosts[256];
    write_hosts(hosts, sizeof hosts, "::1 dual.test\n127.0.0.1 dual.test\n");
    struct state s;
    init_state(&s);
    evn_events ev = events(&s, hosts, NULL, NULL, 0);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://dual.test:%d", port);
    s.ntargets = 1;
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    TH_WAIT_COUNTER(&s.in_opened, 1);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    EXPECT_EQ_INT(atomic_load(&s.out_family), AF_INET);
    EXPECT_EQ_INT(atomic_load(&s.in_family), AF_INET);
    th_server_stop(&ts);
    destroy_state(&s);
}

/*
 * The IPv6 address never answers (a listener whose queue is full drops the
 * SYNs): once the connect's timeout passes on it, the IPv4 one is tried,
 * with a timeout of its own.
 */
static void test_next_after_timeout(void)
{
    if (!th_have_ipv6()) {
        th_skip("no IPv6");
        return;
    }
    char hosts[256];
    write_hosts(hosts, sizeof hosts, "::1 slow6.test\n127.0.0.1 slow6.test\n");
    struct state s;
    init_state(&s);
    s.timeout_ms = 300;
    evn_events ev = events(&s, hosts, NULL, NULL, 0);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    int v6 = raw_listener(AF_INET6, port, 0);
    if (v6 < 0) {
        th_server_free(&ts);
        destroy_state(&s);
        th_skip("port taken on ::1");
        return;
    }
    int fill[4];
    struct sockaddr_storage ss;
    socklen_t len;
    th_make_addr("::1", port, &ss, &len);
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fill[i], (struct sockaddr *)&ss, len);
    }
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://slow6.test:%d", port);
    s.ntargets = 1;
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    EXPECT_EQ_INT(atomic_load(&s.out_family), AF_INET);
    th_server_stop(&ts);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(v6);
    destroy_state(&s);
}

/* Every address refuses: closed gets the error once the last is tried,
 * and evn_errmsg() names each address. */
static void test_all_refused(void)
{
    bool v6 = th_have_ipv6();
    int port = th_closed_port();
    char hosts[256];
    write_hosts(hosts, sizeof hosts,
                v6 ? "::1 gone.test\n127.0.0.1 gone.test\n" : "127.0.0.1 gone.test\n");
    struct state s;
    init_state(&s);
    evn_events ev = events(&s, hosts, NULL, NULL, 0);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://gone.test:%d", port);
    s.ntargets = 1;
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 0);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ECONNREFUSED);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    EXPECT_CONTAINS(s.errmsg, want);
    EXPECT_CONTAINS(s.errmsg, "gone.test");
    if (v6) {
        snprintf(want, sizeof want, "[::1]:%d", port);
        EXPECT_CONTAINS(s.errmsg, want);
    }
    th_server_stop(&ts);
    destroy_state(&s);
}

static const struct dns_rec records[] = {
    {"ttl.test", 1, "127.0.0.1", 300},
    {"zero.test", 1, "127.0.0.1", 0},
    {"v6.test", 28, "::1", 60},
    {"v6.test", 1, "127.0.0.1", 60},
};

/* A name no one knows closes with EVN_ERESOLVE and the resolver's reason. */
static void test_unknown_name(void)
{
    if (!have_cares()) {
        th_skip("needs c-ares (EVN_CARES): the test's DNS server is given as dns_servers");
        return;
    }
    struct dns dns;
    dns_start(&dns, records, sizeof records / sizeof records[0], NULL);
    char servers[64];
    struct state s;
    init_state(&s);
    evn_events ev = events(&s, NULL, &dns, servers, sizeof servers);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://nosuch.test:%d", th_server_port(&ts, 0));
    s.ntargets = 1;
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 0);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), EVN_ERESOLVE);
    EXPECT_STREQ(evn_strerror(EVN_ERESOLVE), "Host name did not resolve");
    EXPECT_CONTAINS(s.errmsg, "nosuch.test");
    EXPECT_CONTAINS(s.errmsg, "not found");
    th_server_stop(&ts);
    dns_stop(&dns);
    destroy_state(&s);
}

/*
 * Two connects, one after the other, to a name answered with a TTL of 300
 * seconds: the second asks no DNS server. With a TTL of 0, it does.
 */
static void ttl_case(const char *name, int rec, bool kept)
{
    struct dns dns;
    dns_start(&dns, records, sizeof records / sizeof records[0], NULL);
    char servers[64];
    struct state s;
    init_state(&s);
    evn_events ev = events(&s, NULL, &dns, servers, sizeof servers);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://%s:%d", name, th_server_port(&ts, 0));
    s.ntargets = 1;
    atomic_store(&s.more, 1);
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 2);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 2);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    th_server_stop(&ts);
    /* One query per family (A and AAAA) per lookup. */
    EXPECT_EQ_INT(dns_asked(&dns, rec), kept ? 2 : 4);
    dns_stop(&dns);
    destroy_state(&s);
}

static void test_ttl_kept(void)
{
    if (!have_cares()) {
        th_skip("needs c-ares (EVN_CARES): getaddrinfo gives no TTL, and nothing is kept");
        return;
    }
    ttl_case("ttl.test", 0, true);
}

static void test_ttl_zero_not_kept(void)
{
    if (!have_cares()) {
        th_skip("needs c-ares (EVN_CARES)");
        return;
    }
    ttl_case("zero.test", 1, false);
}

/* Many connects at once to many names (or, without c-ares, to localhost
 * through getaddrinfo): every one arrives. */
static void test_many_concurrent(void)
{
    enum { NAMES = 20, CONNECTS = 200 };
    static struct dns_rec recs[NAMES];
    static char names[NAMES][32];
    for (int i = 0; i < NAMES; i++) {
        snprintf(names[i], sizeof names[i], "n%d.test", i);
        recs[i] = (struct dns_rec){names[i], 1, "127.0.0.1", i % 2 ? 0 : 30};
    }
    struct dns dns;
    bool cares = have_cares();
    if (cares)
        dns_start(&dns, recs, NAMES, NULL);
    char servers[64];
    struct state s;
    init_state(&s);
    evn_events ev = events(&s, NULL, cares ? &dns : NULL, servers, sizeof servers);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    s.ntargets = cares ? NAMES : 1;
    for (int i = 0; i < s.ntargets; i++) {
        const char *name = cares ? names[i] : "localhost";
        snprintf(s.targets[i], sizeof s.targets[i], "tcp://%.64s:%d", name, port);
    }
    s.nconnects = th_quick() ? CONNECTS / 4 : CONNECTS;
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, s.nconnects);
    TH_WAIT_COUNTER(&s.in_opened, s.nconnects);
    EXPECT_EQ_INT(atomic_load(&s.connect_rc), 0);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), s.nconnects);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    th_server_stop(&ts);
    if (cares)
        dns_stop(&dns);
    destroy_state(&s);
}

/* Connects still looking their names up when serving stops the server:
 * each closes (err 0, as at any stop), and the server frees everything. */
static void test_stop_in_serving(void)
{
    struct state s;
    init_state(&s);
    char hosts[256];
    write_hosts(hosts, sizeof hosts, "127.0.0.1 here.test\n");
    evn_events ev = events(&s, hosts, NULL, NULL, 0);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    int port = th_server_port(&ts, 0);
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://here.test:%d", port);
    snprintf(s.targets[1], sizeof s.targets[1], "tcp://localhost:%d", port);
    s.ntargets = 2;
    s.nconnects = 40;
    s.stop_in_serving = true;
    th_server_run(&ts);
    th_server_join(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 40);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 0);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    th_server_free(&ts);
    destroy_state(&s);
}

/* Lookups the DNS server never answers, in flight when the server stops:
 * the connects close with the server, c-ares's sockets and queries go. */
static void test_stop_with_queries_in_flight(void)
{
    if (!have_cares()) {
        th_skip("needs c-ares (EVN_CARES)");
        return;
    }
    struct dns dns;
    dns_start(&dns, records, sizeof records / sizeof records[0], "black");
    char servers[64];
    struct state s;
    init_state(&s);
    evn_events ev = events(&s, NULL, &dns, servers, sizeof servers);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    s.ntargets = 10;
    for (int i = 0; i < s.ntargets; i++)
        snprintf(s.targets[i], sizeof s.targets[i], "tcp://black%d.test:80", i);
    s.nconnects = 30;
    th_server_run(&ts);
    /* Every name asked for (A and AAAA each). */
    TH_WAIT_COUNTER(&dns.received, 2 * s.ntargets);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.closed), 30);
    EXPECT_EQ_INT(th_counter_get(&s.out_opened), 0);
    dns_stop(&dns);
    destroy_state(&s);
}

/* The connect's timeout covers the lookup: an unanswered one ends with
 * -ETIMEDOUT. */
static void test_lookup_timeout(void)
{
    if (!have_cares()) {
        th_skip("needs c-ares (EVN_CARES)");
        return;
    }
    struct dns dns;
    dns_start(&dns, records, sizeof records / sizeof records[0], "black");
    char servers[64];
    struct state s;
    init_state(&s);
    s.timeout_ms = 100;
    evn_events ev = events(&s, NULL, &dns, servers, sizeof servers);
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    snprintf(s.targets[0], sizeof s.targets[0], "tcp://black.test:80");
    s.ntargets = 1;
    th_server_run(&ts);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ETIMEDOUT);
    EXPECT_CONTAINS(s.errmsg, "black.test");
    th_server_stop(&ts);
    dns_stop(&dns);
    destroy_state(&s);
}

static void test_bad_settings(void)
{
    const char *addr = "tcp://127.0.0.1:0";
    evn_server *srv = NULL;
    evn_events ev = {0};
    char path[256];
    th_tmppath(path, sizeof path, "no-such-hosts");
    ev.hosts_file = path;
    EXPECT_EQ_ERR(evn_server_new(&srv, &ev, &addr, 1), -ENOENT);
    EXPECT_CONTAINS(evn_errmsg(), "no-such-hosts");
    EXPECT_NULL(srv);
    ev.hosts_file = NULL;
    ev.dns_servers = "not an address";
    EXPECT_EQ_ERR(evn_server_new(&srv, &ev, &addr, 1), have_cares() ? -EINVAL : -ENOTSUP);
    EXPECT_CONTAINS(evn_errmsg(), "dns_servers");
    EXPECT_NULL(srv);
    ev.dns_servers = "127.0.0.1:5353,[::1]:53";
    int rc = evn_server_new(&srv, &ev, &addr, 1);
    EXPECT_EQ_ERR(rc, have_cares() ? 0 : -ENOTSUP);
    evn_server_free(srv);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_hosts_file_name);
    TH_RUN(test_ipv6_first);
    TH_RUN(test_ipv4_after_refused_ipv6);
    TH_RUN(test_next_after_timeout);
    TH_RUN(test_all_refused);
    TH_RUN(test_unknown_name);
    TH_RUN(test_ttl_kept);
    TH_RUN(test_ttl_zero_not_kept);
    TH_RUN(test_many_concurrent);
    TH_RUN(test_stop_in_serving);
    TH_RUN(test_stop_with_queries_in_flight);
    TH_RUN(test_lookup_timeout);
    TH_RUN(test_bad_settings);
    return th_finish();
}
