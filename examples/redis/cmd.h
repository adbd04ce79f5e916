/*
 * What the command files (cmd_*.c) share: the context a command runs in,
 * argument parsing and Redis's error replies, and the functions of each
 * file that the command table (commands.c) names.
 */
#ifndef EVN_EXAMPLES_CMD_H
#define EVN_EXAMPLES_CMD_H

#include "commands.h"
#include "pack.h"
#include "reply.h"
#include "resp.h"
#include "store.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct ctx {
    struct store *st;
    evn_conn *c;
    struct reply *r;
    const struct resp_arg *argv;
    size_t argc;
    evn_action action;
    struct loop_stats *stats;
};

/* The limits below which a hash, set or sorted set stays packed (as
 * Redis's *-max-listpack-entries and -value defaults). */
#define PACK_MAX_ENTRIES 128
#define PACK_MAX_VALUE 64

/* Redis's error texts. */
#define ERR_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define ERR_NOT_INT "value is not an integer or out of range"
#define ERR_NOT_FLOAT "value is not a valid float"
#define ERR_SYNTAX "syntax error"
#define ERR_OVERFLOW "increment or decrement would overflow"
#define ERR_OOM "out of memory"

/* v in decimal at buf (24 bytes hold any); returns the length. Much
 * cheaper than snprintf, which INCR and HINCRBY would otherwise spend most
 * of their time in. */
static inline size_t ll_to_str(char *buf, long long v)
{
    return reply_format_ll(buf, v);
}

/* Case-insensitive match of an argument against a lower-case word. */
bool arg_is(const struct resp_arg *a, const char *word);
/* Redis's strict integer; false if the argument is not one. */
bool arg_ll(const struct resp_arg *a, long long *v);
/* An integer argument, or false after replying "value is not an integer". */
bool arg_ll_or_reply(struct ctx *x, const struct resp_arg *a, long long *v);
/* A double as Redis reads one (strtod, no NaN, "inf" allowed); false if not. */
bool arg_double(const struct resp_arg *a, double *v);

void reply_wrong_arity(struct ctx *x, const char *name, const char *sub);
void reply_err(struct ctx *x, const char *msg);
void reply_errf(struct ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A NULL-terminated list of lines as an array of status replies (HELP). */
void reply_help(struct ctx *x, const char *const *lines);
void reply_wrongtype(struct ctx *x);
/* "out of memory": the reply, and the connection is closed after it. */
void reply_oom(struct ctx *x);
/* A double as Redis 7.0 writes one in a bulk reply ("%.17g", inf, -inf). */
void reply_double(struct reply *r, double v);
/* An array element that is the i-th element of a packed blob. */
void reply_packed(struct reply *r, unsigned char *p);

/*
 * Open the key named by argument i: lock, look up, and check its type. On a
 * wrong type the WRONGTYPE error is sent, the shard is unlocked and false is
 * returned; otherwise the caller has r (r->e NULL if absent) and must call
 * store_close().
 */
bool open_typed(struct ctx *x, size_t i, int type, struct kref *r);

/* Counters a loop keeps for INFO: its own thread writes them, any reads. */
struct loop_stats {
    _Atomic uint64_t commands;
    _Atomic uint64_t hits, misses;
} __attribute__((aligned(64)));

static inline void stat_add(_Atomic uint64_t *v, uint64_t n)
{
    /* One writer per counter: a relaxed load and store, no locked add. */
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void count_lookup(struct ctx *x, bool hit)
{
    if (x->stats)
        stat_add(hit ? &x->stats->hits : &x->stats->misses, 1);
}

/* The server as a whole, for INFO (redis-server.c). */
struct server_stats {
    uint64_t conns_received, conns_now, rejected;
    uint64_t commands, net_in, net_out, hits, misses;
    uint64_t expire_capped, expire_us;
    uint64_t ops_per_sec;     /* over the last couple of seconds */
    double in_kbps, out_kbps; /* the same */
};
struct server_conf {
    const char *backend;
    int nloops, port, maxclients;
    int64_t start_ms;
    char run_id[41];
    char executable[256];
};
void server_stats_get(struct server_stats *st);
const struct server_conf *server_conf_get(void);

/* The command functions, by file. */
void cmd_get(struct ctx *x);
void cmd_set(struct ctx *x);
void cmd_incr(struct ctx *x);
void cmd_decr(struct ctx *x);
void cmd_incrby(struct ctx *x);
void cmd_decrby(struct ctx *x);
void cmd_mget(struct ctx *x);
void cmd_mset(struct ctx *x);
void cmd_append(struct ctx *x);
void cmd_strlen(struct ctx *x);

void cmd_del(struct ctx *x);
void cmd_exists(struct ctx *x);
void cmd_expire(struct ctx *x);
void cmd_pexpire(struct ctx *x);
void cmd_expireat(struct ctx *x);
void cmd_pexpireat(struct ctx *x);
void cmd_ttl(struct ctx *x);
void cmd_pttl(struct ctx *x);
void cmd_persist(struct ctx *x);
void cmd_type(struct ctx *x);
void cmd_keys(struct ctx *x);
void cmd_scan(struct ctx *x);
void cmd_rename(struct ctx *x);
void cmd_dbsize(struct ctx *x);
void cmd_flush(struct ctx *x);

void cmd_lpush(struct ctx *x);
void cmd_rpush(struct ctx *x);
void cmd_lpop(struct ctx *x);
void cmd_rpop(struct ctx *x);
void cmd_lrange(struct ctx *x);
void cmd_llen(struct ctx *x);
void cmd_lindex(struct ctx *x);

void cmd_hset(struct ctx *x);
void cmd_hget(struct ctx *x);
void cmd_hdel(struct ctx *x);
void cmd_hgetall(struct ctx *x);
void cmd_hlen(struct ctx *x);
void cmd_hexists(struct ctx *x);
void cmd_hincrby(struct ctx *x);
void cmd_hmset(struct ctx *x);
void cmd_hmget(struct ctx *x);
void cmd_hkeys(struct ctx *x);
void cmd_hvals(struct ctx *x);

void cmd_sadd(struct ctx *x);
void cmd_srem(struct ctx *x);
void cmd_smembers(struct ctx *x);
void cmd_sismember(struct ctx *x);
void cmd_scard(struct ctx *x);
void cmd_spop(struct ctx *x);

void cmd_zadd(struct ctx *x);
void cmd_zrem(struct ctx *x);
void cmd_zrange(struct ctx *x);
void cmd_zscore(struct ctx *x);
void cmd_zcard(struct ctx *x);
void cmd_zincrby(struct ctx *x);
void cmd_zpopmin(struct ctx *x);
void cmd_zrank(struct ctx *x);
void cmd_zrevrank(struct ctx *x);
void cmd_zrevrange(struct ctx *x);
void cmd_zrangebyscore(struct ctx *x);
void cmd_zrevrangebyscore(struct ctx *x);

void cmd_info(struct ctx *x);

void cmd_ping(struct ctx *x);
void cmd_echo(struct ctx *x);
void cmd_select(struct ctx *x);
void cmd_quit(struct ctx *x);
void cmd_shutdown(struct ctx *x);
void cmd_client_setname(struct ctx *x);
void cmd_client_getname(struct ctx *x);
void cmd_client_id(struct ctx *x);
void cmd_client_help(struct ctx *x);
void cmd_config_get(struct ctx *x);
void cmd_config_help(struct ctx *x);

/* Glob matching as Redis's KEYS, SCAN MATCH and CONFIG GET do it. */
bool glob_match(const char *p, size_t plen, const char *s, size_t slen, bool nocase);

#endif
