/*
 * redis-server: a Redis-compatible key-value server on evn, speaking RESP2
 * (multibulk and inline requests, pipelined) to redis-cli, redis-benchmark
 * and client libraries: strings, lists, hashes, sets and sorted sets, with
 * expiry; no persistence. The commands are in cmd_*.c (see commands.c).
 *
 *   redis-server [--port 6380] [--loops N] [--max-bulk BYTES] ...
 *
 * Every loop serves its own connections and all share one store (store.h:
 * sharded, a mutex per shard, unused with one loop). Loop 0's ticker runs
 * active expiry, a bounded slice at a time (see on_tick). Input is parsed in
 * place, in the loop's read buffer, by a parser that belongs to the loop:
 * each complete command is run as soon as it is parsed, the replies to one
 * read are gathered in one per-loop buffer and written at once, and a
 * command cut off at the end of a read is left to evn with evn_keep(), which
 * hands it back, completed by the next read, at the start of the next input;
 * only then does the connection get a parser (a struct client) of its own,
 * to resume where it stopped, freed again once the command is complete. An
 * idle connection costs the server nothing beyond evn's own state: its
 * user data is its CLIENT ID, not a pointer.
 * Once a connection's queued output passes evn's high-water mark, the rest of
 * its input is kept the same way and handed back when the output drains.
 */
#include "cmd.h"
#include "common.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include "../compat.h"
#else
#include <netinet/in.h>
#include <sys/random.h>
#endif
#include <unistd.h>

/* Replies to one input event gather here before evn_write(). */
#define REPLY_BUF (64 * 1024)
/*
 * Active expiry runs on loop 0's ticker every EXPIRE_EVERY_MS, for at most
 * EXPIRE_BUDGET_US each time; when a run stops at its budget with expired
 * keys still being found (a million keys that expire together), the next
 * one comes after EXPIRE_BUSY_MS instead, so the backlog goes quickly while
 * the loop still serves its connections between runs.
 */
#define EXPIRE_EVERY_MS 100
#define EXPIRE_BUSY_MS 1
#define EXPIRE_BUDGET_US 1000

/* One per loop, each on its own cache lines. */
struct loop_state {
    struct reply out;
    /* Parses every connection's input except a command cut off earlier. */
    struct resp_parser parser;
    struct loop_stats stats;
} __attribute__((aligned(64)));

/* Set up by the serving callback, before any loop thread exists. */
static struct store *store;
static struct loop_state *loops;
static int nloops;
static bool setup_failed;
static struct server_conf conf;
/* For evn_server_stats, from INFO on any loop. */
static evn_server *the_srv;

/* Written by loop 0's ticker, read by INFO on any loop. */
static struct expire_stats expire_st;
static _Atomic uint64_t expire_capped, expire_us, ops_per_sec, in_bps, out_bps;

static size_t max_bulk = (size_t)512 * 1024 * 1024;
static atomic_uint_fast64_t next_client_id = 1;

/* What INFO's server section says that does not change. */
static void conf_init(evn_server *srv)
{
    conf.backend = evn_server_backend(srv);
    conf.nloops = nloops;
    conf.start_ms = store_now_ms();
    socklen_t len;
    const struct sockaddr *sa = evn_server_addr(srv, 0, &len);
    if (sa && sa->sa_family == AF_INET)
        conf.port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    else if (sa && sa->sa_family == AF_INET6)
        conf.port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    unsigned char id[20];
    if (getrandom(id, sizeof id, 0) != (ssize_t)sizeof id)
        memset(id, 0, sizeof id);
    for (size_t i = 0; i < sizeof id; i++)
        snprintf(conf.run_id + 2 * i, 3, "%02x", id[i]);
    ssize_t n = readlink("/proc/self/exe", conf.executable, sizeof conf.executable - 1);
    conf.executable[n > 0 ? n : 0] = '\0';
}

const struct server_conf *server_conf_get(void)
{
    return &conf;
}

static uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* The connection and byte counts are evn's (evn_server_stats), the
 * commands and key hits the loops' own, summed. */
void server_stats_get(struct server_stats *st)
{
    memset(st, 0, sizeof *st);
    evn_stats es;
    if (the_srv && evn_server_stats(the_srv, EVN_STATS_ALL, &es) == 0) {
        st->conns_received = es.conns_accepted;
        st->conns_now = es.conns_open;
        st->rejected = es.refused_max_conns;
        st->net_in = es.bytes_in;
        st->net_out = es.bytes_out;
    }
    for (int i = 0; i < nloops; i++) {
        struct loop_stats *ls = &loops[i].stats;
        st->commands += load(&ls->commands);
        st->hits += load(&ls->hits);
        st->misses += load(&ls->misses);
    }
    st->expire_capped = load(&expire_capped);
    st->expire_us = load(&expire_us);
    st->ops_per_sec = load(&ops_per_sec);
    st->in_kbps = (double)load(&in_bps) / 1024;
    st->out_kbps = (double)load(&out_bps) / 1024;
}

static evn_action on_serving(evn_server *srv)
{
    the_srv = srv;
    nloops = evn_server_nloops(srv);
    commands_init();
    store = store_new(nloops > 1);
    /* aligned_alloc: each loop's state is on cache lines of its own. */
    loops = aligned_alloc(_Alignof(struct loop_state), (size_t)nloops * sizeof *loops);
    if (loops)
        memset(loops, 0, (size_t)nloops * sizeof *loops);
    bool ok = store && loops;
    for (int i = 0; ok && i < nloops; i++) {
        ok = reply_init(&loops[i].out, REPLY_BUF) == 0;
        resp_init(&loops[i].parser, max_bulk);
    }
    if (!ok) {
        fprintf(stderr, "redis-server: out of memory\n");
        setup_failed = true;
        return EVN_SHUTDOWN;
    }
    conf_init(srv);
    return ex_print_serving(srv);
}

/*
 * A connection's user data is either its struct client or, while it has
 * none, its id shifted left by one with the low bit set (a struct client is
 * aligned, so its address never has that bit).
 */
static bool is_bare(void *u)
{
    return (uintptr_t)u & 1;
}

static bool id_fits(uint64_t id)
{
    return id <= (uint64_t)(UINTPTR_MAX >> 1);
}

static void *bare(uint64_t id)
{
    return (void *)(uintptr_t)(id << 1 | 1);
}

struct client *client_get(evn_conn *c)
{
    void *u = evn_conn_udata(c);
    return is_bare(u) ? NULL : u;
}

uint64_t client_id(evn_conn *c)
{
    void *u = evn_conn_udata(c);
    if (is_bare(u))
        return (uint64_t)((uintptr_t)u >> 1);
    return u ? ((struct client *)u)->id : 0;
}

static struct client *client_new(uint64_t id)
{
    struct client *cl = calloc(1, sizeof *cl);
    if (cl) {
        cl->id = id;
        resp_init(&cl->parser, max_bulk);
    }
    return cl;
}

struct client *client_make(evn_conn *c)
{
    void *u = evn_conn_udata(c);
    if (!is_bare(u))
        return u;
    struct client *cl = client_new((uint64_t)((uintptr_t)u >> 1));
    if (cl)
        evn_conn_set_udata(c, cl);
    return cl;
}

static void client_free(struct client *cl)
{
    resp_free(&cl->parser);
    free(cl->name);
    free(cl);
}

/* Back to a bare id once the state holds nothing worth keeping. */
static void client_trim(evn_conn *c)
{
    struct client *cl = client_get(c);
    if (cl && !cl->parsing && !cl->name && id_fits(cl->id)) {
        evn_conn_set_udata(c, bare(cl->id));
        client_free(cl);
    }
}

/*
 * The loop's parser stopped inside a command: hand its state to the
 * connection's own parser (argument array included), so that the loop's can
 * serve the next connection, and the command resumes where it stopped.
 */
static void parser_move(struct resp_parser *to, struct resp_parser *from)
{
    resp_free(to);
    *to = *from;
    to->scratch = NULL; /* only used within one call: the loop keeps it */
    to->scratch_cap = 0;
    if (from->argv == from->small) {
        to->argv = to->small;
    } else {
        from->argv = from->small;
        from->cap = RESP_SMALL_ARGS;
    }
    resp_reset(from);
}

static evn_action on_opened(evn_conn *c)
{
    uint64_t id = atomic_fetch_add(&next_client_id, 1);
    if (id_fits(id)) {
        evn_conn_set_udata(c, bare(id));
        return EVN_NONE;
    }
    struct client *cl = client_new(id);
    if (!cl)
        return EVN_CLOSE;
    evn_conn_set_udata(c, cl);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    (void)err;
    /* closed fires exactly for the connections opened fired for. */
    struct client *cl = client_get(c);
    if (cl)
        client_free(cl);
    evn_conn_set_udata(c, NULL);
    return EVN_NONE;
}

/*
 * Run every complete command in in[0..len). A protocol error gets Redis's
 * error reply and closes this connection only, after the replies to the
 * commands before it; QUIT closes it too, and SHUTDOWN stops the server.
 */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (!evn_conn_udata(c) || !in)
        return EVN_NONE;
    struct loop_state *ls = &loops[evn_conn_loop(c)];
    struct reply *r = &ls->out;
    struct client *cl = client_get(c);
    struct resp_parser *p = cl && cl->parsing ? &cl->parser : &ls->parser;
    evn_action act = EVN_NONE;
    size_t off = 0;
    /* Output only grows full when replies are handed to evn: ask then. */
    unsigned writes = r->writes - 1;
    reply_begin(r, c);
    while (off < len && act == EVN_NONE) {
        size_t used;
        int rc = resp_parse(p, in + off, len - off, &used);
        if (rc == RESP_INCOMPLETE) {
            if (p == &ls->parser) {
                cl = client_make(c);
                if (!cl) {
                    resp_reset(p);
                    act = EVN_CLOSE;
                    break;
                }
                parser_move(&cl->parser, p);
                cl->parsing = true;
            }
            break;
        }
        if (rc == RESP_ERROR) {
            reply_error(r, "%s", p->error);
            resp_reset(p);
            if (p != &ls->parser)
                cl->parsing = false;
            act = EVN_CLOSE;
            break;
        }
        off += used;
        if (p->argc > 0)
            act = redis_execute(store, c, r, &ls->stats, p->argv, p->argc);
        if (p != &ls->parser) {
            /* The cut-off command is done: back to the loop's parser. */
            cl->parsing = false;
            p = &ls->parser;
        }
        /* Output past the high-water mark (a client pipelining more than it
         * reads): stop and keep the rest, which evn hands back once the
         * output has drained. */
        if (act == EVN_NONE && r->writes != writes) {
            writes = r->writes;
            if (evn_conn_full(c))
                break;
        }
    }
    reply_flush(r);
    client_trim(c);
    if (r->failed)
        return EVN_CLOSE;
    if (act == EVN_NONE && off < len && evn_keep(c, len - off) < 0)
        return EVN_CLOSE;
    return act;
}

/* Samples of the counters behind INFO's instantaneous figures. */
#define RATE_SAMPLES 16
#define RATE_EVERY_MS 100

struct rate_sample {
    int64_t ms;
    uint64_t commands, in, out;
};

/* Every RATE_EVERY_MS, the rates over the last RATE_SAMPLES samples. */
static void sample_rates(void)
{
    static struct rate_sample ring[RATE_SAMPLES];
    static unsigned next;
    static int64_t last;
    int64_t now = store_now_ms();
    if (now - last < RATE_EVERY_MS)
        return;
    last = now;
    struct server_stats st;
    server_stats_get(&st);
    struct rate_sample *oldest = &ring[next % RATE_SAMPLES];
    if (next >= RATE_SAMPLES && now > oldest->ms) {
        uint64_t dt = (uint64_t)(now - oldest->ms);
        atomic_store_explicit(&ops_per_sec, (st.commands - oldest->commands) * 1000 / dt,
                              memory_order_relaxed);
        atomic_store_explicit(&in_bps, (st.net_in - oldest->in) * 1000 / dt, memory_order_relaxed);
        atomic_store_explicit(&out_bps, (st.net_out - oldest->out) * 1000 / dt,
                              memory_order_relaxed);
    }
    *oldest = (struct rate_sample){now, st.commands, st.net_in, st.net_out};
    next++;
}

static evn_action on_tick(evn_server *srv, int64_t *delay_ms)
{
    (void)srv;
    bool busy = store_expire_cycle(store, EXPIRE_BUDGET_US, &expire_st);
    atomic_store_explicit(&expire_capped, expire_st.cycles_capped, memory_order_relaxed);
    atomic_store_explicit(&expire_us, expire_st.cpu_us, memory_order_relaxed);
    sample_rates();
    *delay_ms = busy ? EXPIRE_BUSY_MS : EXPIRE_EVERY_MS;
    return EVN_NONE;
}

static int set_max_bulk(const char *v)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || *v == '-' || n == 0 || n > SIZE_MAX / 4)
        return -1;
    max_bulk = (size_t)n;
    return 0;
}

/* As Redis: past this many clients a new one is told so and closed. */
static int max_clients = 10000;

static int set_max_clients(const char *v)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > 1000000)
        return -1;
    max_clients = (int)n;
    conf.maxclients = max_clients;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct ex_option more[] = {
        {"--max-bulk", "--max-bulk BYTES  largest bulk argument taken (default 536870912, 512 MB)",
         set_max_bulk},
        {"--maxclients", "--maxclients N    clients served at once (default 10000)",
         set_max_clients},
    };
    struct ex_opts o = {.port = 6380, .udp_port = -1, .loops = 1};
    conf.maxclients = max_clients;
    ex_parse_more(argc, argv, &o, "redis-server", 0, more, sizeof more / sizeof more[0]);

    evn_events ev = {.serving = on_serving,
                     .opened = on_opened,
                     .closed = on_closed,
                     .data = on_data,
                     .tick = on_tick,
                     .max_conns = max_clients,
                     .busy_reply = "-ERR max number of clients reached\r\n"};
    int rc = ex_run("redis-server", &ev, &o);
    for (int i = 0; loops && i < nloops; i++) {
        reply_free(&loops[i].out);
        resp_free(&loops[i].parser);
    }
    free(loops);
    store_free(store);
    return setup_failed ? 1 : rc;
}
