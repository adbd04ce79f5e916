/*
 * The command table: each command's name, arity and what COMMAND INFO and
 * COMMAND DOCS say about it, and the function that runs it (in cmd_*.c);
 * looking a request up; the helpers every command uses. Replies and error
 * messages are those of Redis 7.0, checked by the tests against a real
 * redis-server.
 */
#include "cmd.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct command {
    const char *name; /* lower-case letters only (see arg_is) */
    int arity;        /* n: exactly n arguments with the name; -n: at least n */
    void (*run)(struct ctx *x);
    /* For COMMAND INFO: flags and ACL categories (space-separated), keys. */
    const char *flags;
    int first_key, last_key, key_step;
    const char *acl;
    const struct command *subs; /* for a container such as CLIENT */
    size_t nsubs;
    /* For COMMAND DOCS. */
    const char *summary, *since, *group, *complexity;
};

bool arg_is(const struct resp_arg *a, const char *word)
{
    /* OR-ing 0x20 lowers a letter and can only make a letter match a letter;
     * it never gives the NUL that ends a shorter word, so this stops there. */
    for (size_t i = 0; i < a->len; i++) {
        if ((a->ptr[i] | 0x20) != word[i])
            return false;
    }
    return word[a->len] == '\0';
}

bool arg_ll(const struct resp_arg *a, long long *v)
{
    return resp_strtoll(a->ptr, a->len, v) != 0;
}

bool arg_ll_or_reply(struct ctx *x, const struct resp_arg *a, long long *v)
{
    if (arg_ll(a, v))
        return true;
    reply_err(x, ERR_NOT_INT);
    return false;
}

bool arg_double(const struct resp_arg *a, double *v)
{
    /* A plain integer (ZADD's usual score) exactly as strtod would read it:
     * any integer below 2^53 is a double as it is. */
    long long i;
    if (a->len <= 15 && resp_strtoll(a->ptr, a->len, &i)) {
        *v = (double)i;
        return true;
    }
    /* strtod needs a terminated string; a longer one cannot be a number
     * Redis takes anyway (it would need 5000 digits to matter). */
    char buf[128];
    if (a->len == 0 || a->len >= sizeof buf || a->ptr[0] == ' ' ||
        (a->ptr[0] >= '\t' && a->ptr[0] <= '\r'))
        return false;
    memcpy(buf, a->ptr, a->len);
    buf[a->len] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if ((size_t)(end - buf) != a->len || isnan(d))
        return false;
    /* Out of range: Redis refuses what overflows and what underflows to 0. */
    if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL || d == 0))
        return false;
    *v = d;
    return true;
}

void reply_err(struct ctx *x, const char *msg)
{
    /* "WRONGTYPE ..." and other codes of their own; "ERR ..." otherwise. */
    if (msg[0] == 'W' && strncmp(msg, "WRONGTYPE ", 10) == 0) {
        reply_raw(x->r, "-", 1);
        reply_raw(x->r, msg, strlen(msg));
        reply_raw(x->r, "\r\n", 2);
        return;
    }
    reply_error_len(x->r, msg, strlen(msg));
}

void reply_errf(struct ctx *x, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    reply_error_len(x->r, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

void reply_wrong_arity(struct ctx *x, const char *name, const char *sub)
{
    if (sub)
        reply_errf(x, "wrong number of arguments for '%s|%s' command", name, sub);
    else
        reply_errf(x, "wrong number of arguments for '%s' command", name);
}

void reply_wrongtype(struct ctx *x)
{
    reply_err(x, ERR_WRONGTYPE);
}

void reply_oom(struct ctx *x)
{
    reply_err(x, ERR_OOM);
    x->action = EVN_CLOSE;
}

void reply_double(struct reply *r, double v)
{
    char buf[32];
    int n;
    if (isinf(v))
        n = snprintf(buf, sizeof buf, "%s", v > 0 ? "inf" : "-inf");
    else
        n = snprintf(buf, sizeof buf, "%.17g", v);
    reply_bulk(r, buf, (size_t)n);
}

void reply_packed(struct reply *r, unsigned char *p)
{
    unsigned char *data;
    size_t len;
    pk_read(p, &data, &len);
    reply_bulk(r, (const char *)data, len);
}

bool open_typed(struct ctx *x, size_t i, int type, struct kref *r)
{
    store_open(x->st, x->argv[i].ptr, x->argv[i].len, r);
    if (r->e && entry_type(r->e) != type) {
        store_close(x->st, r);
        reply_wrongtype(x);
        return false;
    }
    return true;
}

/* How much of an argument printf's "%.*s" (limit bytes) would show: up to a NUL. */
static int shown(const struct resp_arg *a, size_t limit)
{
    size_t n = a->len < limit ? a->len : limit;
    const char *nul = memchr(a->ptr, '\0', n);
    return (int)(nul ? (size_t)(nul - a->ptr) : n);
}

static void cmd_command(struct ctx *x);
static void cmd_command_count(struct ctx *x);
static void cmd_command_info(struct ctx *x);
static void cmd_command_docs(struct ctx *x);
static void cmd_command_list(struct ctx *x);
static void cmd_command_help(struct ctx *x);

#define CONN_CMD "@slow @connection"

static const struct command client_subs[] = {
    {"setname", 3, cmd_client_setname, "noscript loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Set the current connection name", "2.6.9", "connection", "O(1)"},
    {"getname", 2, cmd_client_getname, "noscript loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Get the current connection name", "2.6.9", "connection", "O(1)"},
    {"id", 2, cmd_client_id, "noscript loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Returns the client ID for the current connection", "5.0.0", "connection", "O(1)"},
    {"help", 2, cmd_client_help, "loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Show helpful text about the different subcommands", "5.0.0", "connection", "O(1)"},
};

static const struct command config_subs[] = {
    {"get", -3, cmd_config_get, "admin noscript loading stale", 0, 0, 0, "@admin @slow @dangerous",
     NULL, 0, "Get the values of configuration parameters", "2.0.0", "server",
     "O(N) when N is the number of configuration parameters provided"},
    {"help", 2, cmd_config_help, "loading stale", 0, 0, 0, "@slow", NULL, 0,
     "Show helpful text about the different subcommands", "5.0.0", "server", "O(1)"},
};

static const struct command command_subs[] = {
    {"count", 2, cmd_command_count, "loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Get total number of commands", "2.8.13", "server", "O(1)"},
    {"docs", -2, cmd_command_docs, "loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Get documentary information about commands", "7.0.0", "server",
     "O(N) where N is the number of commands to look up"},
    {"info", -2, cmd_command_info, "loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Get information about specific commands", "2.8.13", "server",
     "O(N) where N is the number of commands to look up"},
    {"list", -2, cmd_command_list, "loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Get an array of command names", "7.0.0", "server", "O(N) where N is the number of commands"},
    {"help", 2, cmd_command_help, "loading stale", 0, 0, 0, CONN_CMD, NULL, 0,
     "Show helpful text about the different subcommands", "5.0.0", "server", "O(1)"},
};

#define NSUBS(a) (sizeof(a) / sizeof((a)[0]))
#define STR_W "@write @string"
#define KEY_R "@keyspace @read @fast"
#define KEY_W "@keyspace @write @fast"
#define LIST_W "@write @list @fast"
#define HASH_R "@read @hash @fast"
#define HASH_W "@write @hash @fast"
#define SET_R "@read @set @fast"
#define SET_W "@write @set @fast"
#define ZSET_R "@read @sortedset @fast"
#define ZSET_W "@write @sortedset @fast"
#define W_FAST "write denyoom fast"
#define R_FAST "readonly fast"
#define PER_ARG "O(1) for each argument, O(N) for N of them"

static const struct command commands[] = {
    {"get", 2, cmd_get, R_FAST, 1, 1, 1, "@read @string @fast", NULL, 0, "Get the value of a key",
     "1.0.0", "string", "O(1)"},
    {"set", -3, cmd_set, "write denyoom", 1, 1, 1, STR_W " @slow", NULL, 0,
     "Set the string value of a key, with an optional expiry time", "1.0.0", "string", "O(1)"},
    {"ping", -1, cmd_ping, "fast", 0, 0, 0, "@fast @connection", NULL, 0, "Ping the server",
     "1.0.0", "connection", "O(1)"},
    {"incr", 2, cmd_incr, W_FAST, 1, 1, 1, STR_W " @fast", NULL, 0,
     "Increment the integer value of a key by one", "1.0.0", "string", "O(1)"},
    {"decr", 2, cmd_decr, W_FAST, 1, 1, 1, STR_W " @fast", NULL, 0,
     "Decrement the integer value of a key by one", "1.0.0", "string", "O(1)"},
    {"incrby", 3, cmd_incrby, W_FAST, 1, 1, 1, STR_W " @fast", NULL, 0,
     "Increment the integer value of a key by the given amount", "1.0.0", "string", "O(1)"},
    {"decrby", 3, cmd_decrby, W_FAST, 1, 1, 1, STR_W " @fast", NULL, 0,
     "Decrement the integer value of a key by the given number", "1.0.0", "string", "O(1)"},
    {"mget", -2, cmd_mget, R_FAST, 1, -1, 1, "@read @string @fast", NULL, 0,
     "Get the values of all the given keys", "1.0.0", "string",
     "O(N) where N is the number of keys to retrieve"},
    {"mset", -3, cmd_mset, "write denyoom", 1, -1, 2, STR_W " @slow", NULL, 0,
     "Set multiple keys to multiple values", "1.0.1", "string",
     "O(N) where N is the number of keys to set"},
    {"append", 3, cmd_append, W_FAST, 1, 1, 1, STR_W " @fast", NULL, 0,
     "Add bytes to the end of a string value", "2.0.0", "string",
     "O(1) amortised, the value is copied once"},
    {"strlen", 2, cmd_strlen, R_FAST, 1, 1, 1, "@read @string @fast", NULL, 0,
     "Get the length in bytes of a string value", "2.2.0", "string", "O(1)"},
    {"del", -2, cmd_del, "write", 1, -1, 1, "@keyspace @write @slow", NULL, 0, "Delete keys",
     "1.0.0", "generic", "O(N) for N keys, plus the size of each value deleted"},
    {"unlink", -2, cmd_del, "write fast", 1, -1, 1, KEY_W, NULL, 0,
     "Delete keys (as DEL: memory is freed at once here)", "4.0.0", "generic",
     "O(N) for N keys, plus the size of each value deleted"},
    {"exists", -2, cmd_exists, R_FAST, 1, -1, 1, KEY_R, NULL, 0,
     "Count how many of the given keys exist", "1.0.0", "generic",
     "O(N) where N is the number of keys to check"},
    {"expire", -3, cmd_expire, "write fast", 1, 1, 1, KEY_W, NULL, 0,
     "Set a key's time to live in seconds", "1.0.0", "generic", "O(1)"},
    {"pexpire", -3, cmd_pexpire, "write fast", 1, 1, 1, KEY_W, NULL, 0,
     "Set a key's time to live in milliseconds", "2.6.0", "generic", "O(1)"},
    {"expireat", -3, cmd_expireat, "write fast", 1, 1, 1, KEY_W, NULL, 0,
     "Make a key expire at a Unix time in seconds", "1.2.0", "generic", "O(1)"},
    {"pexpireat", -3, cmd_pexpireat, "write fast", 1, 1, 1, KEY_W, NULL, 0,
     "Make a key expire at a Unix time in milliseconds", "2.6.0", "generic", "O(1)"},
    {"ttl", 2, cmd_ttl, R_FAST, 1, 1, 1, KEY_R, NULL, 0,
     "Get the time to live for a key in seconds", "1.0.0", "generic", "O(1)"},
    {"pttl", 2, cmd_pttl, R_FAST, 1, 1, 1, KEY_R, NULL, 0,
     "Get the time to live for a key in milliseconds", "2.6.0", "generic", "O(1)"},
    {"persist", 2, cmd_persist, "write fast", 1, 1, 1, KEY_W, NULL, 0,
     "Make a key with a time to live permanent", "2.2.0", "generic", "O(1)"},
    {"type", 2, cmd_type, R_FAST, 1, 1, 1, KEY_R, NULL, 0, "Name the type of a key's value",
     "1.0.0", "generic", "O(1)"},
    {"keys", 2, cmd_keys, "readonly", 0, 0, 0, "@keyspace @read @slow @dangerous", NULL, 0,
     "List the keys that match a glob pattern", "1.0.0", "generic",
     "O(N) for N keys in the database"},
    {"scan", -2, cmd_scan, "readonly", 0, 0, 0, "@keyspace @read @slow", NULL, 0,
     "Walk the key space a few keys at a time", "2.8.0", "generic",
     "O(1) a call, O(N) for a whole walk over N keys"},
    {"rename", 3, cmd_rename, "write", 1, 2, 1, "@keyspace @write @slow", NULL, 0,
     "Give a key a new name", "1.0.0", "generic", "O(1)"},
    {"dbsize", 1, cmd_dbsize, R_FAST, 0, 0, 0, KEY_R, NULL, 0,
     "Return the number of keys in the selected database", "1.0.0", "server", "O(1)"},
    {"flushdb", -1, cmd_flush, "write", 0, 0, 0, "@keyspace @write @slow @dangerous", NULL, 0,
     "Remove all keys from the current database", "1.0.0", "server",
     "O(N) where N is the number of keys in the selected database"},
    {"flushall", -1, cmd_flush, "write", 0, 0, 0, "@keyspace @write @slow @dangerous", NULL, 0,
     "Remove all keys from all databases", "1.0.0", "server",
     "O(N) where N is the total number of keys in all databases"},
    {"lpush", -3, cmd_lpush, W_FAST, 1, 1, 1, LIST_W, NULL, 0, "Add elements at the head of a list",
     "1.0.0", "list", PER_ARG},
    {"rpush", -3, cmd_rpush, W_FAST, 1, 1, 1, LIST_W, NULL, 0, "Add elements at the tail of a list",
     "1.0.0", "list", PER_ARG},
    {"lpop", -2, cmd_lpop, "write fast", 1, 1, 1, LIST_W, NULL, 0,
     "Remove and return elements from the head of a list", "1.0.0", "list",
     "O(N) for N elements returned"},
    {"rpop", -2, cmd_rpop, "write fast", 1, 1, 1, LIST_W, NULL, 0,
     "Remove and return elements from the tail of a list", "1.0.0", "list",
     "O(N) for N elements returned"},
    {"lrange", 4, cmd_lrange, "readonly", 1, 1, 1, "@read @list @slow", NULL, 0,
     "Get the elements of a list between two indexes", "1.0.0", "list",
     "O(S+N): S to reach the start from the nearer end, N elements returned"},
    {"llen", 2, cmd_llen, R_FAST, 1, 1, 1, "@read @list @fast", NULL, 0,
     "Get the number of elements in a list", "1.0.0", "list", "O(1)"},
    {"lindex", 3, cmd_lindex, "readonly", 1, 1, 1, "@read @list @slow", NULL, 0,
     "Get the element of a list at an index", "1.0.0", "list",
     "O(N) for N elements between the index and the nearer end"},
    {"hset", -4, cmd_hset, W_FAST, 1, 1, 1, HASH_W, NULL, 0, "Set fields of a hash", "2.0.0",
     "hash", PER_ARG},
    {"hget", 3, cmd_hget, R_FAST, 1, 1, 1, HASH_R, NULL, 0, "Get the value of a field of a hash",
     "2.0.0", "hash", "O(1)"},
    {"hdel", -3, cmd_hdel, "write fast", 1, 1, 1, HASH_W, NULL, 0, "Delete fields of a hash",
     "2.0.0", "hash", PER_ARG},
    {"hgetall", 2, cmd_hgetall, "readonly", 1, 1, 1, "@read @hash @slow", NULL, 0,
     "Get every field and value of a hash", "2.0.0", "hash", "O(N) for N fields"},
    {"hlen", 2, cmd_hlen, R_FAST, 1, 1, 1, HASH_R, NULL, 0, "Get the number of fields of a hash",
     "2.0.0", "hash", "O(1)"},
    {"hexists", 3, cmd_hexists, R_FAST, 1, 1, 1, HASH_R, NULL, 0, "Tell whether a hash has a field",
     "2.0.0", "hash", "O(1)"},
    {"hincrby", 4, cmd_hincrby, W_FAST, 1, 1, 1, HASH_W, NULL, 0,
     "Add an integer to the integer value of a field of a hash", "2.0.0", "hash", "O(1)"},
    {"hmset", -4, cmd_hmset, W_FAST, 1, 1, 1, HASH_W, NULL, 0,
     "Set fields of a hash (as HSET, answering OK)", "2.0.0", "hash", PER_ARG},
    {"hmget", -3, cmd_hmget, R_FAST, 1, 1, 1, HASH_R, NULL, 0, "Get the values of fields of a hash",
     "2.0.0", "hash", PER_ARG},
    {"hkeys", 2, cmd_hkeys, "readonly", 1, 1, 1, "@read @hash @slow", NULL, 0,
     "Get every field of a hash", "2.0.0", "hash", "O(N) for N fields"},
    {"hvals", 2, cmd_hvals, "readonly", 1, 1, 1, "@read @hash @slow", NULL, 0,
     "Get every value of a hash", "2.0.0", "hash", "O(N) for N fields"},
    {"sadd", -3, cmd_sadd, W_FAST, 1, 1, 1, SET_W, NULL, 0, "Add members to a set", "1.0.0", "set",
     PER_ARG},
    {"srem", -3, cmd_srem, "write fast", 1, 1, 1, SET_W, NULL, 0, "Remove members from a set",
     "1.0.0", "set", PER_ARG},
    {"smembers", 2, cmd_smembers, "readonly", 1, 1, 1, "@read @set @slow", NULL, 0,
     "Get every member of a set", "1.0.0", "set", "O(N) for N members"},
    {"sismember", 3, cmd_sismember, R_FAST, 1, 1, 1, SET_R, NULL, 0,
     "Tell whether a set has a member", "1.0.0", "set", "O(1)"},
    {"scard", 2, cmd_scard, R_FAST, 1, 1, 1, SET_R, NULL, 0, "Get the number of members of a set",
     "1.0.0", "set", "O(1)"},
    {"spop", -2, cmd_spop, "write fast", 1, 1, 1, SET_W, NULL, 0,
     "Remove and return random members of a set", "1.0.0", "set", "O(1), or O(N) for a count of N"},
    {"zadd", -4, cmd_zadd, W_FAST, 1, 1, 1, ZSET_W, NULL, 0,
     "Add members to a sorted set, or change their scores", "1.2.0", "sorted-set",
     "O(log(N)) for each member, N the size of the set"},
    {"zrem", -3, cmd_zrem, "write fast", 1, 1, 1, ZSET_W, NULL, 0,
     "Remove members from a sorted set", "1.2.0", "sorted-set",
     "O(M*log(N)) for M members removed from N"},
    {"zrange", -4, cmd_zrange, "readonly", 1, 1, 1, "@read @sortedset @slow", NULL, 0,
     "Get the members of a sorted set in a range of ranks, scores or names", "1.2.0", "sorted-set",
     "O(log(N)+M) by rank, O(N) by score or name here"},
    {"zscore", 3, cmd_zscore, R_FAST, 1, 1, 1, ZSET_R, NULL, 0,
     "Get the score of a member of a sorted set", "1.2.0", "sorted-set", "O(1)"},
    {"zcard", 2, cmd_zcard, R_FAST, 1, 1, 1, ZSET_R, NULL, 0,
     "Get the number of members of a sorted set", "1.2.0", "sorted-set", "O(1)"},
    {"zincrby", 4, cmd_zincrby, W_FAST, 1, 1, 1, ZSET_W, NULL, 0,
     "Add to the score of a member of a sorted set", "1.2.0", "sorted-set", "O(log(N))"},
    {"zpopmin", -2, cmd_zpopmin, "write fast", 1, 1, 1, ZSET_W, NULL, 0,
     "Remove and return the members with the lowest scores", "5.0.0", "sorted-set",
     "O(M*log(N)) for M members popped from N"},
    {"zrank", 3, cmd_zrank, R_FAST, 1, 1, 1, ZSET_R, NULL, 0,
     "Get the rank of a member of a sorted set, from the lowest score", "2.0.0", "sorted-set",
     "O(log(N))"},
    {"zrevrank", 3, cmd_zrevrank, R_FAST, 1, 1, 1, ZSET_R, NULL, 0,
     "Get the rank of a member of a sorted set, from the highest score", "2.0.0", "sorted-set",
     "O(log(N))"},
    {"zrevrange", -4, cmd_zrevrange, "readonly", 1, 1, 1, "@read @sortedset @slow", NULL, 0,
     "Get the members of a sorted set in a range of ranks, from the highest score", "1.2.0",
     "sorted-set", "O(log(N)+M) for M members returned"},
    {"zrangebyscore", -4, cmd_zrangebyscore, "readonly", 1, 1, 1, "@read @sortedset @slow", NULL, 0,
     "Get the members of a sorted set in a range of scores", "1.0.5", "sorted-set",
     "O(N) here, N the size of the set"},
    {"zrevrangebyscore", -4, cmd_zrevrangebyscore, "readonly", 1, 1, 1, "@read @sortedset @slow",
     NULL, 0, "Get the members of a sorted set in a range of scores, from the highest", "2.2.0",
     "sorted-set", "O(N) here, N the size of the set"},
    {"info", -1, cmd_info, "loading stale", 0, 0, 0, "@slow @dangerous", NULL, 0,
     "Get information and statistics about the server", "1.0.0", "server", "O(1)"},
    {"echo", 2, cmd_echo, "loading stale fast", 0, 0, 0, "@fast @connection", NULL, 0,
     "Echo the given string", "1.0.0", "connection", "O(1)"},
    {"select", 2, cmd_select, "loading stale fast", 0, 0, 0, "@fast @connection", NULL, 0,
     "Change the selected database for the current connection", "1.0.0", "connection", "O(1)"},
    {"quit", -1, cmd_quit, "noscript loading stale fast no_auth allow_busy", 0, 0, 0,
     "@fast @connection", NULL, 0, "Close the connection", "1.0.0", "connection", "O(1)"},
    {"shutdown", -1, cmd_shutdown, "admin noscript loading stale no_multi allow_busy", 0, 0, 0,
     "@admin @slow @dangerous", NULL, 0, "Stop the server", "1.0.0", "server", "O(1)"},
    {"command", -1, cmd_command, "loading stale", 0, 0, 0, CONN_CMD, command_subs,
     NSUBS(command_subs), "Get array of Redis command details", "2.8.13", "server",
     "O(N) where N is the total number of Redis commands"},
    {"client", -2, NULL, "", 0, 0, 0, "@slow", client_subs, NSUBS(client_subs),
     "A container for client connection commands", "2.4.0", "connection", "Depends on subcommand."},
    {"config", -2, NULL, "", 0, 0, 0, "@slow", config_subs, NSUBS(config_subs),
     "A container for server configuration commands", "2.0.0", "server", "Depends on subcommand."},
};

#define NCOMMANDS NSUBS(commands)

/*
 * The lookup: a name of up to 16 bytes is folded to lower case into two
 * 64-bit words (OR-ing 0x20 into each byte, which maps a letter of either
 * case to the lower one and can make no other byte equal a letter, so equal
 * words mean equal names); an open-addressing index, built once, maps a
 * hash of the words to the command. About 30 instructions for "GET", where
 * comparing the name with each command's would take hundreds.
 */
#define INDEX_SLOTS 256
#define NAME_MAX_LEN 16
static unsigned char index_of[INDEX_SLOTS]; /* command number + 1, 0 for none */
static uint64_t folded[sizeof commands / sizeof commands[0]][2];

static bool fold_name(const char *p, size_t n, uint64_t w[2])
{
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    w[0] = w[1] = 0;
    for (size_t i = 0; i < n; i++)
        w[i / 8] |= (uint64_t)((unsigned char)p[i] | 0x20) << (8 * (i % 8));
    return true;
}

static unsigned name_hash(const uint64_t w[2], size_t n)
{
    return (unsigned)(((w[0] * 0x9e3779b97f4a7c15ULL) ^ (w[1] * 0xc2b2ae3d27d4eb4fULL) ^ n) >> 56);
}

void commands_init(void)
{
    memset(index_of, 0, sizeof index_of);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        size_t n = strlen(commands[i].name);
        fold_name(commands[i].name, n, folded[i]);
        unsigned h = name_hash(folded[i], n);
        while (index_of[h])
            h = (h + 1) % INDEX_SLOTS;
        index_of[h] = (unsigned char)(i + 1);
    }
}

static const struct command *find_top(const struct resp_arg *name)
{
    uint64_t w[2];
    if (!fold_name(name->ptr, name->len, w))
        return NULL;
    for (unsigned h = name_hash(w, name->len); index_of[h]; h = (h + 1) % INDEX_SLOTS) {
        size_t i = index_of[h] - 1u;
        /* Names shorter than 16 bytes end in zero bytes, so the words alone
         * also tell lengths apart. */
        if (folded[i][0] == w[0] && folded[i][1] == w[1])
            return &commands[i];
    }
    return NULL;
}

static const struct command *find(const struct command *table, size_t n,
                                  const struct resp_arg *name)
{
    if (table == commands)
        return find_top(name);
    for (size_t i = 0; i < n; i++) {
        if (arg_is(name, table[i].name))
            return &table[i];
    }
    return NULL;
}

/* A space-separated list as an array of status replies: "+readonly", "+fast". */
static void reply_words(struct reply *r, const char *list)
{
    size_t n = 0;
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        n++;
        while (*p && *p != ' ')
            p++;
    }
    reply_array(r, n);
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p && *p != ' ')
            p++;
        if (p > w) {
            reply_raw(r, "+", 1);
            reply_raw(r, w, (size_t)(p - w));
            reply_raw(r, "\r\n", 2);
        }
    }
}

/* A command's full name: "get", or "client|setname" for a subcommand. */
static void reply_full_name(struct reply *r, const struct command *parent, const struct command *c)
{
    char name[64];
    int n = parent ? snprintf(name, sizeof name, "%s|%s", parent->name, c->name)
                   : snprintf(name, sizeof name, "%s", c->name);
    reply_bulk(r, name, (size_t)n);
}

/*
 * COMMAND INFO's ten fields for one command: name, arity, flags, first and
 * last key and step, ACL categories, tips, key specifications (these two
 * left empty here), subcommands.
 */
static void reply_info(struct reply *r, const struct command *parent, const struct command *c)
{
    reply_array(r, 10);
    reply_full_name(r, parent, c);
    reply_int(r, c->arity);
    reply_words(r, c->flags);
    reply_int(r, c->first_key);
    reply_int(r, c->last_key);
    reply_int(r, c->key_step);
    reply_words(r, c->acl);
    reply_array(r, 0);
    reply_array(r, 0);
    reply_array(r, c->nsubs);
    for (size_t i = 0; i < c->nsubs; i++)
        reply_info(r, c, &c->subs[i]);
}

/* COMMAND DOCS's map for one command, as a flat array in RESP2. */
static void reply_docs(struct reply *r, const struct command *c)
{
    reply_array(r, c->nsubs ? 10 : 8);
    reply_bulk_str(r, "summary");
    reply_bulk_str(r, c->summary);
    reply_bulk_str(r, "since");
    reply_bulk_str(r, c->since);
    reply_bulk_str(r, "group");
    reply_bulk_str(r, c->group);
    reply_bulk_str(r, "complexity");
    reply_bulk_str(r, c->complexity);
    if (c->nsubs) {
        reply_bulk_str(r, "subcommands");
        reply_array(r, 2 * c->nsubs);
        for (size_t i = 0; i < c->nsubs; i++) {
            reply_full_name(r, c, &c->subs[i]);
            reply_docs(r, &c->subs[i]);
        }
    }
}

static void cmd_command(struct ctx *x)
{
    reply_array(x->r, NCOMMANDS);
    for (size_t i = 0; i < NCOMMANDS; i++)
        reply_info(x->r, NULL, &commands[i]);
}

static void cmd_command_count(struct ctx *x)
{
    reply_int(x->r, (long long)NCOMMANDS);
}

/* A command named "name" or "container|sub", as COMMAND INFO and DOCS take them. */
static const struct command *find_full(const struct resp_arg *a, const struct command **parent)
{
    const char *bar = memchr(a->ptr, '|', a->len);
    *parent = NULL;
    if (!bar)
        return find_top(a);
    struct resp_arg head = {a->ptr, (size_t)(bar - a->ptr), 0};
    struct resp_arg tail = {bar + 1, a->len - head.len - 1, 0};
    const struct command *c = find_top(&head);
    if (!c || !c->nsubs)
        return NULL;
    *parent = c;
    return find(c->subs, c->nsubs, &tail);
}

static void cmd_command_info(struct ctx *x)
{
    if (x->argc == 2) {
        cmd_command(x);
        return;
    }
    reply_array(x->r, x->argc - 2);
    for (size_t i = 2; i < x->argc; i++) {
        const struct command *parent;
        const struct command *c = find_full(&x->argv[i], &parent);
        if (c)
            reply_info(x->r, parent, c);
        else
            reply_nil(x->r);
    }
}

static void cmd_command_docs(struct ctx *x)
{
    if (x->argc == 2) {
        reply_array(x->r, 2 * NCOMMANDS);
        for (size_t i = 0; i < NCOMMANDS; i++) {
            reply_bulk_str(x->r, commands[i].name);
            reply_docs(x->r, &commands[i]);
        }
        return;
    }
    size_t n = 0;
    const struct command *parent;
    for (size_t i = 2; i < x->argc; i++)
        n += find_full(&x->argv[i], &parent) != NULL;
    reply_array(x->r, 2 * n);
    for (size_t i = 2; i < x->argc; i++) {
        const struct command *c = find_full(&x->argv[i], &parent);
        if (c) {
            reply_full_name(x->r, parent, c);
            reply_docs(x->r, c);
        }
    }
}

static void cmd_command_list(struct ctx *x)
{
    if (x->argc > 2) {
        reply_err(x, ERR_SYNTAX);
        return;
    }
    reply_array(x->r, NCOMMANDS);
    for (size_t i = 0; i < NCOMMANDS; i++)
        reply_bulk_str(x->r, commands[i].name);
}

static void cmd_command_help(struct ctx *x)
{
    static const char *const lines[] = {
        "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "(no subcommand)",
        "    Return details about all commands.",
        "COUNT",
        "    Return the total number of commands in this server.",
        "LIST",
        "    Return a list of all commands in this server.",
        "INFO [<command-name> ...]",
        "    Return details about multiple commands.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple commands.",
        "HELP",
        "    Print this help.",
        NULL};
    reply_help(x, lines);
}

static bool arity_ok(const struct command *c, size_t argc)
{
    return c->arity > 0 ? argc == (size_t)c->arity : argc >= (size_t)-c->arity;
}

static void unknown_command(struct ctx *x)
{
    /* Redis shows the name and then arguments until 128 characters are shown. */
    char args[160];
    size_t n = 0;
    for (size_t i = 1; i < x->argc && n < 128; i++) {
        int len = shown(&x->argv[i], 128 - n);
        args[n++] = '\'';
        memcpy(args + n, x->argv[i].ptr, (size_t)len);
        n += (size_t)len;
        args[n++] = '\'';
        args[n++] = ' ';
    }
    reply_errf(x, "unknown command '%.*s', with args beginning with: %.*s", shown(&x->argv[0], 128),
               x->argv[0].ptr, (int)n, args);
}

static void unknown_subcommand(struct ctx *x, const struct command *c)
{
    char upper[16];
    size_t i = 0;
    for (; c->name[i] && i < sizeof upper - 1; i++)
        upper[i] = (char)(c->name[i] - 'a' + 'A');
    upper[i] = '\0';
    reply_errf(x, "unknown subcommand '%.*s'. Try %s HELP.", shown(&x->argv[1], 128),
               x->argv[1].ptr, upper);
}

evn_action redis_execute(struct store *st, evn_conn *conn, struct reply *r,
                         struct loop_stats *stats, const struct resp_arg *argv, size_t argc)
{
    struct ctx x = {st, conn, r, argv, argc, EVN_NONE, stats};
    const struct command *c = find_top(&argv[0]);
    if (stats)
        stat_add(&stats->commands, 1);
    if (!c) {
        unknown_command(&x);
        return x.action;
    }
    if (c->nsubs && argc >= 2) {
        const struct command *sub = find(c->subs, c->nsubs, &argv[1]);
        if (!sub)
            unknown_subcommand(&x, c);
        else if (!arity_ok(sub, argc))
            reply_wrong_arity(&x, c->name, sub->name);
        else
            sub->run(&x);
        return x.action;
    }
    if (!arity_ok(c, argc) || !c->run)
        reply_wrong_arity(&x, c->name, NULL);
    else
        c->run(&x);
    return x.action;
}
