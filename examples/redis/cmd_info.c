/*
 * INFO: the sections that clients and monitoring tools read (server,
 * clients, memory, stats, keyspace), with Redis's field names and formats.
 * Fields about features this server does not have (replication, modules,
 * persistence, eviction) are left out, or 0 where tools expect them.
 *
 * The counters come from server_stats_get() (redis-server.c): connections
 * and bytes are evn's own statistics (evn_server_stats), commands and key
 * hits the example's per-loop counters.
 */
#include "cmd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include "../compat.h"
#else
#include <sys/utsname.h>
#endif
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* The INFO text, built in a growing buffer and sent as one bulk reply. */
struct text {
    char *p;
    size_t len, cap;
    bool failed;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *np = realloc(t->p, cap);
        if (!np) {
            t->failed = true;
            return;
        }
        t->p = np;
        t->cap = cap;
    }
}

/* Bytes as Redis shows them: 512B, 1.50K, 2.00M, ... */
static void human(char *buf, size_t size, uint64_t n)
{
    static const char units[] = "KMGTP";
    if (n < 1024) {
        snprintf(buf, size, "%lluB", (unsigned long long)n);
        return;
    }
    double d = (double)n;
    int u = -1;
    while (d >= 1024 && u < 4) {
        d /= 1024;
        u++;
    }
    snprintf(buf, size, "%.2f%c", d, units[u]);
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Bytes malloc has handed out (glibc); the RSS elsewhere. */
static uint64_t used_bytes(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return rss_bytes();
#endif
}

static void section_server(struct text *t)
{
    const struct server_conf *conf = server_conf_get();
    struct utsname u;
    if (uname(&u) != 0)
        memset(&u, 0, sizeof u);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t up = (store_now_ms() - conf->start_ms) / 1000;
    add(t, "# Server\r\nredis_version:7.0.0\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\n"
           "redis_build_id:0\r\nredis_mode:standalone\r\n");
    add(t, "os:%s %s %s\r\narch_bits:%d\r\n", u.sysname, u.release, u.machine,
        (int)(sizeof(void *) * 8));
    add(t,
        "monotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:%s\r\n"
        "atomicvar_api:c11-builtin\r\n",
        conf->backend);
#ifdef __GNUC__
    add(t, "gcc_version:%d.%d.%d\r\n", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
    add(t, "gcc_version:0.0.0\r\n");
#endif
    add(t, "process_id:%ld\r\nprocess_supervised:no\r\nrun_id:%s\r\ntcp_port:%d\r\n",
        (long)getpid(), conf->run_id, conf->port);
    add(t, "server_time_usec:%lld\r\nuptime_in_seconds:%lld\r\nuptime_in_days:%lld\r\n",
        (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000, (long long)up, (long long)up / 86400);
    add(t,
        "hz:10\r\nconfigured_hz:10\r\nlru_clock:%lld\r\nexecutable:%s\r\nconfig_file:\r\n"
        "io_threads_active:0\r\n",
        (long long)(now.tv_sec & ((1 << 24) - 1)), conf->executable);
}

static void section_clients(struct text *t, const struct server_stats *st)
{
    const struct server_conf *conf = server_conf_get();
    add(t, "# Clients\r\nconnected_clients:%llu\r\ncluster_connections:0\r\nmaxclients:%d\r\n",
        (unsigned long long)st->conns_now, conf->maxclients);
    add(t, "client_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\n"
           "blocked_clients:0\r\ntracking_clients:0\r\nclients_in_timeout_table:0\r\n");
}

static void section_memory(struct text *t, struct store *s)
{
    static _Atomic uint64_t peak;
    uint64_t used = used_bytes(), rss = rss_bytes(), tables = store_table_bytes(s);
    uint64_t p = atomic_load_explicit(&peak, memory_order_relaxed);
    if (used > p) {
        p = used;
        atomic_store_explicit(&peak, p, memory_order_relaxed);
    }
    long long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t total = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    char h1[32], h2[32], h3[32], h4[32];
    human(h1, sizeof h1, used);
    human(h2, sizeof h2, rss);
    human(h3, sizeof h3, p);
    human(h4, sizeof h4, total);
    add(t,
        "# Memory\r\nused_memory:%llu\r\nused_memory_human:%s\r\nused_memory_rss:%llu\r\n"
        "used_memory_rss_human:%s\r\nused_memory_peak:%llu\r\nused_memory_peak_human:%s\r\n",
        (unsigned long long)used, h1, (unsigned long long)rss, h2, (unsigned long long)p, h3);
    add(t,
        "used_memory_peak_perc:%.2f%%\r\nused_memory_overhead:%llu\r\n"
        "used_memory_dataset:%llu\r\n",
        p ? 100.0 * (double)used / (double)p : 0.0, (unsigned long long)tables,
        (unsigned long long)(used > tables ? used - tables : 0));
    add(t,
        "total_system_memory:%llu\r\ntotal_system_memory_human:%s\r\nmaxmemory:0\r\n"
        "maxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n",
        (unsigned long long)total, h4);
    add(t,
        "mem_fragmentation_ratio:%.2f\r\nmem_fragmentation_bytes:%lld\r\n"
        "mem_allocator:libc\r\nlazyfree_pending_objects:0\r\n",
        used ? (double)rss / (double)used : 0.0, (long long)rss - (long long)used);
}

static void section_stats(struct text *t, const struct server_stats *st, struct store *s)
{
    add(t,
        "# Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
        "instantaneous_ops_per_sec:%llu\r\n",
        (unsigned long long)st->conns_received, (unsigned long long)st->commands,
        (unsigned long long)st->ops_per_sec);
    add(t,
        "total_net_input_bytes:%llu\r\ntotal_net_output_bytes:%llu\r\n"
        "instantaneous_input_kbps:%.2f\r\ninstantaneous_output_kbps:%.2f\r\n",
        (unsigned long long)st->net_in, (unsigned long long)st->net_out, st->in_kbps, st->out_kbps);
    add(t,
        "rejected_connections:%llu\r\nexpired_keys:%llu\r\nexpired_stale_perc:0.00\r\n"
        "expired_time_cap_reached_count:%llu\r\nexpire_cycle_cpu_milliseconds:%llu\r\n",
        (unsigned long long)st->rejected, (unsigned long long)store_expired(s),
        (unsigned long long)st->expire_capped, (unsigned long long)st->expire_us / 1000);
    add(t,
        "evicted_keys:0\r\nkeyspace_hits:%llu\r\nkeyspace_misses:%llu\r\n"
        "pubsub_channels:0\r\npubsub_patterns:0\r\nlatest_fork_usec:0\r\ntotal_forks:0\r\n",
        (unsigned long long)st->hits, (unsigned long long)st->misses);
}

static void section_keyspace(struct text *t, struct store *s)
{
    add(t, "# Keyspace\r\n");
    size_t keys = store_size(s);
    if (keys)
        add(t, "db0:keys=%zu,expires=%zu,avg_ttl=%lld\r\n", keys, store_volatile(s),
            (long long)store_avg_ttl(s));
}

enum { S_SERVER = 1, S_CLIENTS = 2, S_MEMORY = 4, S_STATS = 8, S_KEYSPACE = 16, S_ALL = 31 };

static int sections_asked(struct ctx *x)
{
    static const char *const names[] = {"server", "clients", "memory", "stats", "keyspace"};
    if (x->argc == 1)
        return S_ALL;
    int want = 0;
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (arg_is(a, "default") || arg_is(a, "all") || arg_is(a, "everything"))
            want = S_ALL;
        for (int j = 0; j < 5; j++) {
            if (arg_is(a, names[j]))
                want |= 1 << j;
        }
    }
    return want;
}

void cmd_info(struct ctx *x)
{
    int want = sections_asked(x);
    struct server_stats st;
    server_stats_get(&st);
    struct text t = {malloc(4096), 0, 4096, false};
    if (!t.p) {
        reply_oom(x);
        return;
    }
    bool first = true;
    for (int j = 0; j < 5 && !t.failed; j++) {
        if (!(want & (1 << j)))
            continue;
        if (!first)
            add(&t, "\r\n");
        first = false;
        switch (1 << j) {
        case S_SERVER:
            section_server(&t);
            break;
        case S_CLIENTS:
            section_clients(&t, &st);
            break;
        case S_MEMORY:
            section_memory(&t, x->st);
            break;
        case S_STATS:
            section_stats(&t, &st, x->st);
            break;
        case S_KEYSPACE:
            section_keyspace(&t, x->st);
            break;
        }
    }
    if (t.failed)
        reply_oom(x);
    else
        reply_bulk(x->r, t.p, t.len);
    free(t.p);
}
