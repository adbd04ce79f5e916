/*
 * The commands. Each is a row of one table: its name, arity and what
 * COMMAND INFO and COMMAND DOCS say about it, and the function that runs it.
 * Replies and error messages are those of Redis 7.0, checked by the tests
 * against a real redis-server.
 */
#include "commands.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ctx {
    struct store *st;
    evn_conn *c;
    struct reply *r;
    const struct resp_arg *argv;
    size_t argc;
    evn_action action;
};

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

/* Case-insensitive match of an argument against a lower-case word. */
static bool arg_is(const struct resp_arg *a, const char *word)
{
    /* OR-ing 0x20 lowers a letter and can only make a letter match a letter;
     * it never gives the NUL that ends a shorter word, so this stops there. */
    for (size_t i = 0; i < a->len; i++) {
        if ((a->ptr[i] | 0x20) != word[i])
            return false;
    }
    return word[a->len] == '\0';
}

/* How much of an argument printf's "%.*s" (limit bytes) would show: up to a NUL. */
static int shown(const struct resp_arg *a, size_t limit)
{
    size_t n = a->len < limit ? a->len : limit;
    const char *nul = memchr(a->ptr, '\0', n);
    return (int)(nul ? (size_t)(nul - a->ptr) : n);
}

static void wrong_arity(struct ctx *x, const char *name, const char *sub)
{
    if (sub)
        reply_error(x->r, "wrong number of arguments for '%s|%s' command", name, sub);
    else
        reply_error(x->r, "wrong number of arguments for '%s' command", name);
}

static void not_integer(struct ctx *x)
{
    reply_error(x->r, "value is not an integer or out of range");
}

static void syntax_error(struct ctx *x)
{
    reply_error(x->r, "syntax error");
}

static bool arg_ll(const struct resp_arg *a, long long *v)
{
    return resp_strtoll(a->ptr, a->len, v) != 0;
}

static void emit_bulk(void *arg, const char *v, size_t n)
{
    reply_bulk(arg, v, n);
}

static void emit_nil(void *arg)
{
    reply_nil(arg);
}

static void cmd_get(struct ctx *x)
{
    if (!store_get(x->st, x->argv[1].ptr, x->argv[1].len, emit_bulk, x->r))
        reply_nil(x->r);
}

enum { SET_EX = 16, SET_PX = 32, SET_EXAT = 64, SET_PXAT = 128 };
#define SET_ANY_TTL (SET_EX | SET_PX | SET_EXAT | SET_PXAT)

/*
 * SET's options, as Redis 7.0 takes them: NX and XX exclude each other, the
 * expiry options and KEEPTTL exclude each other, but an option may repeat
 * (the last value counts). Returns the flags, or -1 for a syntax error.
 */
static int set_options(struct ctx *x, const struct resp_arg **when)
{
    int flags = 0;
    for (size_t i = 3; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        bool more = i + 1 < x->argc;
        int ttl = 0;
        if (arg_is(a, "nx") && !(flags & STORE_XX))
            flags |= STORE_NX;
        else if (arg_is(a, "xx") && !(flags & STORE_NX))
            flags |= STORE_XX;
        else if (arg_is(a, "get"))
            flags |= STORE_GET;
        else if (arg_is(a, "keepttl") && !(flags & SET_ANY_TTL))
            flags |= STORE_KEEPTTL;
        else if (arg_is(a, "ex"))
            ttl = SET_EX;
        else if (arg_is(a, "px"))
            ttl = SET_PX;
        else if (arg_is(a, "exat"))
            ttl = SET_EXAT;
        else if (arg_is(a, "pxat"))
            ttl = SET_PXAT;
        else
            return -1;
        if (ttl) {
            if (!more || (flags & STORE_KEEPTTL) || (flags & SET_ANY_TTL & ~ttl))
                return -1;
            flags |= ttl;
            *when = &x->argv[++i];
        }
    }
    return flags;
}

/* The absolute expiry time that SET's option asks for; false after replying an error. */
static bool set_expiry(struct ctx *x, int flags, const struct resp_arg *arg, int64_t *when)
{
    long long v;
    if (!arg_ll(arg, &v)) {
        not_integer(x);
        return false;
    }
    bool seconds = flags & (SET_EX | SET_EXAT);
    if (v <= 0 || (seconds && v > LLONG_MAX / 1000)) {
        reply_error(x->r, "invalid expire time in 'set' command");
        return false;
    }
    if (seconds)
        v *= 1000;
    if (flags & (SET_EX | SET_PX)) {
        int64_t now = store_now_ms();
        if (v > LLONG_MAX - now) {
            reply_error(x->r, "invalid expire time in 'set' command");
            return false;
        }
        v += now;
    }
    *when = v;
    return true;
}

static void cmd_set(struct ctx *x)
{
    const struct resp_arg *ttl_arg = NULL;
    int64_t when = 0;
    int flags = set_options(x, &ttl_arg);
    if (flags < 0) {
        syntax_error(x);
        return;
    }
    if ((flags & SET_ANY_TTL) && !set_expiry(x, flags, ttl_arg, &when))
        return;
    const struct resp_arg *k = &x->argv[1], *v = &x->argv[2];
    bool had_old = false;
    int rc = store_set(x->st, k->ptr, k->len, v->ptr, v->len, when, flags & 15, emit_bulk, x->r,
                       &had_old);
    if (rc < 0) {
        reply_error(x->r, "out of memory");
        x->action = EVN_CLOSE;
        return;
    }
    /* A time already past (EXAT 1) sets the key and deletes it at once, as Redis does. */
    if (rc == 1 && when && when <= store_now_ms())
        store_del(x->st, k->ptr, k->len);
    if (flags & STORE_GET) {
        if (!had_old)
            reply_nil(x->r);
    } else if (rc == 1) {
        reply_raw(x->r, "+OK\r\n", 5);
    } else {
        reply_nil(x->r);
    }
}

static void cmd_ping(struct ctx *x)
{
    if (x->argc > 2)
        wrong_arity(x, "ping", NULL);
    else if (x->argc == 2)
        reply_bulk(x->r, x->argv[1].ptr, x->argv[1].len);
    else
        reply_raw(x->r, "+PONG\r\n", 7);
}

static void cmd_echo(struct ctx *x)
{
    reply_bulk(x->r, x->argv[1].ptr, x->argv[1].len);
}

static void incr_by(struct ctx *x, long long delta)
{
    long long v = 0;
    switch (store_incrby(x->st, x->argv[1].ptr, x->argv[1].len, delta, &v)) {
    case STORE_INCR_OK:
        reply_int(x->r, v);
        break;
    case STORE_NOT_INT:
        not_integer(x);
        break;
    case STORE_OVERFLOW:
        reply_error(x->r, "increment or decrement would overflow");
        break;
    case STORE_NOMEM:
        reply_error(x->r, "out of memory");
        x->action = EVN_CLOSE;
        break;
    }
}

static void cmd_incr(struct ctx *x)
{
    incr_by(x, 1);
}

static void cmd_decr(struct ctx *x)
{
    incr_by(x, -1);
}

static void cmd_incrby(struct ctx *x)
{
    long long d;
    if (!arg_ll(&x->argv[2], &d))
        not_integer(x);
    else
        incr_by(x, d);
}

static void cmd_decrby(struct ctx *x)
{
    long long d;
    if (!arg_ll(&x->argv[2], &d))
        not_integer(x);
    else if (d == LLONG_MIN)
        reply_error(x->r, "decrement would overflow");
    else
        incr_by(x, -d);
}

static void cmd_mget(struct ctx *x)
{
    reply_array(x->r, x->argc - 1);
    store_mget(x->st, &x->argv[1], x->argc - 1, emit_bulk, emit_nil, x->r);
}

static void cmd_mset(struct ctx *x)
{
    if (x->argc % 2 == 0) {
        wrong_arity(x, "mset", NULL);
        return;
    }
    if (store_mset(x->st, &x->argv[1], (x->argc - 1) / 2) < 0) {
        reply_error(x->r, "out of memory");
        x->action = EVN_CLOSE;
        return;
    }
    reply_raw(x->r, "+OK\r\n", 5);
}

static void cmd_del(struct ctx *x)
{
    long long n = 0;
    for (size_t i = 1; i < x->argc; i++)
        n += store_del(x->st, x->argv[i].ptr, x->argv[i].len);
    reply_int(x->r, n);
}

static void cmd_exists(struct ctx *x)
{
    long long n = 0;
    for (size_t i = 1; i < x->argc; i++)
        n += store_exists(x->st, x->argv[i].ptr, x->argv[i].len);
    reply_int(x->r, n);
}

static void cmd_pttl(struct ctx *x)
{
    reply_int(x->r, store_pttl(x->st, x->argv[1].ptr, x->argv[1].len));
}

static void cmd_ttl(struct ctx *x)
{
    int64_t ms = store_pttl(x->st, x->argv[1].ptr, x->argv[1].len);
    reply_int(x->r, ms < 0 ? ms : (ms + 500) / 1000);
}

static void cmd_dbsize(struct ctx *x)
{
    reply_int(x->r, (long long)store_size(x->st));
}

/* FLUSHDB and FLUSHALL: there is one database, and flushing is synchronous. */
static void cmd_flush(struct ctx *x)
{
    if (x->argc > 2 ||
        (x->argc == 2 && !arg_is(&x->argv[1], "async") && !arg_is(&x->argv[1], "sync"))) {
        syntax_error(x);
        return;
    }
    store_flush(x->st);
    reply_raw(x->r, "+OK\r\n", 5);
}

/* One database: SELECT 0 works, any other index is out of range. */
static void cmd_select(struct ctx *x)
{
    long long db;
    if (!arg_ll(&x->argv[1], &db))
        not_integer(x);
    else if (db < INT_MIN || db > INT_MAX)
        reply_error(x->r, "value is out of range, value must between %d and %d", INT_MIN, INT_MAX);
    else if (db != 0)
        reply_error(x->r, "DB index is out of range");
    else
        reply_raw(x->r, "+OK\r\n", 5);
}

static void cmd_quit(struct ctx *x)
{
    reply_raw(x->r, "+OK\r\n", 5);
    x->action = EVN_CLOSE;
}

/* As Redis (which has nothing to save here): no reply, the server stops. */
static void cmd_shutdown(struct ctx *x)
{
    bool save = false, nosave = false, abort_ = false;
    for (size_t i = 1; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (arg_is(a, "nosave"))
            nosave = true;
        else if (arg_is(a, "save"))
            save = true;
        else if (arg_is(a, "abort"))
            abort_ = true;
        else if (!arg_is(a, "now") && !arg_is(a, "force")) {
            syntax_error(x);
            return;
        }
    }
    if ((save && nosave) || (abort_ && x->argc > 2)) {
        syntax_error(x);
        return;
    }
    if (abort_) {
        reply_error(x->r, "No shutdown in progress.");
        return;
    }
    x->action = EVN_SHUTDOWN;
}

static void help(struct ctx *x, const char *const *lines)
{
    size_t n = 0;
    while (lines[n])
        n++;
    reply_array(x->r, n);
    for (size_t i = 0; i < n; i++)
        reply_status(x->r, lines[i]);
}

static void cmd_client_setname(struct ctx *x)
{
    const struct resp_arg *a = &x->argv[2];
    for (size_t i = 0; i < a->len; i++) {
        if (a->ptr[i] < '!' || a->ptr[i] > '~') {
            reply_error(x->r,
                        "Client names cannot contain spaces, newlines or special characters.");
            return;
        }
    }
    struct client *cl = a->len ? client_make(x->c) : client_get(x->c);
    char *name = NULL;
    if (a->len && cl)
        name = malloc(a->len);
    if (a->len && !name) {
        reply_error(x->r, "out of memory");
        return;
    }
    if (name)
        memcpy(name, a->ptr, a->len);
    if (cl) {
        free(cl->name);
        cl->name = name;
        cl->name_len = a->len;
    }
    reply_raw(x->r, "+OK\r\n", 5);
}

static void cmd_client_getname(struct ctx *x)
{
    struct client *cl = client_get(x->c);
    if (cl && cl->name)
        reply_bulk(x->r, cl->name, cl->name_len);
    else
        reply_nil(x->r);
}

static void cmd_client_id(struct ctx *x)
{
    reply_int(x->r, (long long)client_id(x->c));
}

static void cmd_client_help(struct ctx *x)
{
    static const char *const lines[] = {
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "HELP",
        "    Print this help.",
        NULL};
    help(x, lines);
}

/*
 * The configuration CONFIG GET shows: what redis-benchmark asks about, with
 * the values of a Redis that neither snapshots nor logs appends. The order
 * is the one Redis 7.0 answers a CONFIG GET of several names in.
 */
static const char *const config_params[][2] = {
    {"appendonly", "no"},
    {"save", ""},
};

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Glob matching of p[0..plen) on s, as CONFIG GET does: *, ?, [a-z], [^x], \x; no case. */
static bool glob_match(const char *p, size_t plen, const char *s)
{
    size_t i = 0;
    while (i < plen) {
        char c = p[i];
        if (c == '*') {
            while (i + 1 < plen && p[i + 1] == '*')
                i++;
            if (i + 1 == plen)
                return true;
            for (;; s++) {
                if (glob_match(p + i + 1, plen - i - 1, s))
                    return true;
                if (!*s)
                    return false;
            }
        }
        if (!*s)
            return false;
        char sc = lower(*s);
        if (c == '[') {
            size_t j = i + 1;
            bool neg = j < plen && p[j] == '^', hit = false;
            if (neg)
                j++;
            for (; j < plen && p[j] != ']'; j++) {
                if (p[j] == '\\' && j + 1 < plen) {
                    j++;
                    hit |= lower(p[j]) == sc;
                } else if (j + 2 < plen && p[j + 1] == '-') {
                    char lo = lower(p[j]), hi = lower(p[j + 2]);
                    hit |= lo <= hi ? sc >= lo && sc <= hi : sc >= hi && sc <= lo;
                    j += 2;
                } else {
                    hit |= lower(p[j]) == sc;
                }
            }
            if (hit == neg)
                return false;
            i = j < plen ? j + 1 : plen;
        } else if (c == '?') {
            i++;
        } else {
            if (c == '\\' && i + 1 < plen)
                c = p[++i];
            if (lower(c) != sc)
                return false;
            i++;
        }
        s++;
    }
    return !*s;
}

static bool is_pattern(const struct resp_arg *a)
{
    for (size_t i = 0; i < a->len; i++) {
        if (a->ptr[i] == '*' || a->ptr[i] == '?' || a->ptr[i] == '[')
            return true;
    }
    return false;
}

/*
 * Each matching parameter once, in the table's order, named as the request
 * spelt it when the name that matched is not a pattern ("SAVE"), as Redis does.
 */
static void cmd_config_get(struct ctx *x)
{
    enum { N = sizeof config_params / sizeof config_params[0] };
    const struct resp_arg *by[N] = {NULL};
    size_t nhit = 0;
    for (size_t j = 0; j < N; j++) {
        for (size_t i = 2; i < x->argc && !by[j]; i++) {
            if (glob_match(x->argv[i].ptr, x->argv[i].len, config_params[j][0])) {
                by[j] = &x->argv[i];
                nhit++;
            }
        }
    }
    reply_array(x->r, 2 * nhit);
    for (size_t j = 0; j < N; j++) {
        if (!by[j])
            continue;
        if (is_pattern(by[j]))
            reply_bulk_str(x->r, config_params[j][0]);
        else
            reply_bulk(x->r, by[j]->ptr, by[j]->len);
        reply_bulk_str(x->r, config_params[j][1]);
    }
}

static void cmd_config_help(struct ctx *x)
{
    static const char *const lines[] = {
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET <pattern>",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "HELP",
        "    Print this help.",
        NULL};
    help(x, lines);
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
#define STR_WRITE "@write @string"
#define KEY_READ "@keyspace @read @fast"

/* The most used commands first: the lookup is a scan. */
static const struct command commands[] = {
    {"get", 2, cmd_get, "readonly fast", 1, 1, 1, "@read @string @fast", NULL, 0,
     "Get the value of a key", "1.0.0", "string", "O(1)"},
    {"set", -3, cmd_set, "write denyoom", 1, 1, 1, STR_WRITE " @slow", NULL, 0,
     "Set the string value of a key, with an optional expiry time", "1.0.0", "string", "O(1)"},
    {"ping", -1, cmd_ping, "fast", 0, 0, 0, "@fast @connection", NULL, 0, "Ping the server",
     "1.0.0", "connection", "O(1)"},
    {"incr", 2, cmd_incr, "write denyoom fast", 1, 1, 1, STR_WRITE " @fast", NULL, 0,
     "Increment the integer value of a key by one", "1.0.0", "string", "O(1)"},
    {"mset", -3, cmd_mset, "write denyoom", 1, -1, 2, STR_WRITE " @slow", NULL, 0,
     "Set multiple keys to multiple values", "1.0.1", "string",
     "O(N) where N is the number of keys to set"},
    {"mget", -2, cmd_mget, "readonly fast", 1, -1, 1, "@read @string @fast", NULL, 0,
     "Get the values of all the given keys", "1.0.0", "string",
     "O(N) where N is the number of keys to retrieve"},
    {"del", -2, cmd_del, "write", 1, -1, 1, "@keyspace @write @slow", NULL, 0, "Delete keys",
     "1.0.0", "generic", "O(N) where N is the number of keys that will be removed"},
    {"exists", -2, cmd_exists, "readonly fast", 1, -1, 1, KEY_READ, NULL, 0,
     "Count how many of the given keys exist", "1.0.0", "generic",
     "O(N) where N is the number of keys to check"},
    {"decr", 2, cmd_decr, "write denyoom fast", 1, 1, 1, STR_WRITE " @fast", NULL, 0,
     "Decrement the integer value of a key by one", "1.0.0", "string", "O(1)"},
    {"incrby", 3, cmd_incrby, "write denyoom fast", 1, 1, 1, STR_WRITE " @fast", NULL, 0,
     "Increment the integer value of a key by the given amount", "1.0.0", "string", "O(1)"},
    {"decrby", 3, cmd_decrby, "write denyoom fast", 1, 1, 1, STR_WRITE " @fast", NULL, 0,
     "Decrement the integer value of a key by the given number", "1.0.0", "string", "O(1)"},
    {"echo", 2, cmd_echo, "loading stale fast", 0, 0, 0, "@fast @connection", NULL, 0,
     "Echo the given string", "1.0.0", "connection", "O(1)"},
    {"ttl", 2, cmd_ttl, "readonly fast", 1, 1, 1, KEY_READ, NULL, 0,
     "Get the time to live for a key in seconds", "1.0.0", "generic", "O(1)"},
    {"pttl", 2, cmd_pttl, "readonly fast", 1, 1, 1, KEY_READ, NULL, 0,
     "Get the time to live for a key in milliseconds", "2.6.0", "generic", "O(1)"},
    {"dbsize", 1, cmd_dbsize, "readonly fast", 0, 0, 0, KEY_READ, NULL, 0,
     "Return the number of keys in the selected database", "1.0.0", "server", "O(1)"},
    {"flushdb", -1, cmd_flush, "write", 0, 0, 0, "@keyspace @write @slow @dangerous", NULL, 0,
     "Remove all keys from the current database", "1.0.0", "server",
     "O(N) where N is the number of keys in the selected database"},
    {"flushall", -1, cmd_flush, "write", 0, 0, 0, "@keyspace @write @slow @dangerous", NULL, 0,
     "Remove all keys from all databases", "1.0.0", "server",
     "O(N) where N is the total number of keys in all databases"},
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

static const struct command *find(const struct command *table, size_t n,
                                  const struct resp_arg *name)
{
    if (name->len == 0)
        return NULL;
    char first = (char)(name->ptr[0] | 0x20);
    for (size_t i = 0; i < n; i++) {
        if (table[i].name[0] == first && arg_is(name, table[i].name))
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
        return find(commands, NCOMMANDS, a);
    struct resp_arg head = {a->ptr, (size_t)(bar - a->ptr), 0};
    struct resp_arg tail = {bar + 1, a->len - head.len - 1, 0};
    const struct command *c = find(commands, NCOMMANDS, &head);
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
        syntax_error(x);
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
    help(x, lines);
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
    reply_error(x->r, "unknown command '%.*s', with args beginning with: %.*s",
                shown(&x->argv[0], 128), x->argv[0].ptr, (int)n, args);
}

static void unknown_subcommand(struct ctx *x, const struct command *c)
{
    char upper[16];
    size_t i = 0;
    for (; c->name[i] && i < sizeof upper - 1; i++)
        upper[i] = (char)(c->name[i] - 'a' + 'A');
    upper[i] = '\0';
    reply_error(x->r, "unknown subcommand '%.*s'. Try %s HELP.", shown(&x->argv[1], 128),
                x->argv[1].ptr, upper);
}

evn_action redis_execute(struct store *st, evn_conn *conn, struct reply *r,
                         const struct resp_arg *argv, size_t argc)
{
    struct ctx x = {st, conn, r, argv, argc, EVN_NONE};
    const struct command *c = find(commands, NCOMMANDS, &argv[0]);
    if (!c) {
        unknown_command(&x);
        return x.action;
    }
    if (c->nsubs && argc >= 2) {
        const struct command *sub = find(c->subs, c->nsubs, &argv[1]);
        if (!sub) {
            unknown_subcommand(&x, c);
        } else if (!arity_ok(sub, argc)) {
            wrong_arity(&x, c->name, sub->name);
        } else {
            sub->run(&x);
        }
        return x.action;
    }
    if (!arity_ok(c, argc) || !c->run)
        wrong_arity(&x, c->name, NULL);
    else
        c->run(&x);
    return x.action;
}
