/*
 * Commands on keys whatever their type: DEL, UNLINK, EXISTS, the EXPIRE
 * family, TTL, PTTL, PERSIST, TYPE, KEYS, SCAN, RENAME, DBSIZE, FLUSHDB.
 */
#include "cmd.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cmd_del(struct ctx *x)
{
    size_t n = x->argc - 1;
    uint64_t mask = store_lock_keys(x->st, &x->argv[1], n, 1);
    long long deleted = 0;
    for (size_t i = 1; i <= n; i++) {
        struct kref r;
        store_find(x->st, x->argv[i].ptr, x->argv[i].len, &r);
        if (r.e) {
            store_delete(x->st, &r);
            deleted++;
        }
    }
    store_unlock_keys(x->st, mask);
    reply_int(x->r, deleted);
}

void cmd_exists(struct ctx *x)
{
    size_t n = x->argc - 1;
    uint64_t mask = store_lock_keys(x->st, &x->argv[1], n, 1);
    long long found = 0;
    for (size_t i = 1; i <= n; i++) {
        struct kref r;
        store_find(x->st, x->argv[i].ptr, x->argv[i].len, &r);
        found += r.e != NULL;
    }
    store_unlock_keys(x->st, mask);
    reply_int(x->r, found);
}

enum { EXP_NX = 1, EXP_XX = 2, EXP_GT = 4, EXP_LT = 8 };

/* EXPIRE's NX, XX, GT and LT; -1 after replying an error. */
static int expire_options(struct ctx *x)
{
    int f = 0;
    for (size_t i = 3; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        if (arg_is(a, "nx")) {
            f |= EXP_NX;
        } else if (arg_is(a, "xx")) {
            f |= EXP_XX;
        } else if (arg_is(a, "gt")) {
            f |= EXP_GT;
        } else if (arg_is(a, "lt")) {
            f |= EXP_LT;
        } else {
            char msg[160];
            snprintf(msg, sizeof msg, "Unsupported option %.*s", (int)(a->len < 128 ? a->len : 128),
                     a->ptr);
            reply_err(x, msg);
            return -1;
        }
    }
    if ((f & EXP_NX) && (f & (EXP_XX | EXP_GT | EXP_LT))) {
        reply_err(x, "NX and XX, GT or LT options at the same time are not compatible");
        return -1;
    }
    if ((f & EXP_GT) && (f & EXP_LT)) {
        reply_err(x, "GT and LT options at the same time are not compatible");
        return -1;
    }
    return f;
}

/* Whether the options let a key expiring at old (0: never) get `when`. */
static bool expire_allowed(int f, int64_t old, int64_t when)
{
    if ((f & EXP_NX) && old)
        return false;
    if ((f & EXP_XX) && !old)
        return false;
    /* A key without an expiry counts as expiring never, later than any time. */
    if ((f & EXP_GT) && (!old || when <= old))
        return false;
    if ((f & EXP_LT) && old && when >= old)
        return false;
    return true;
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: unit 1000 or 1, relative or not. */
static void expire_generic(struct ctx *x, const char *name, long long unit, bool relative)
{
    long long when;
    if (!arg_ll_or_reply(x, &x->argv[2], &when))
        return;
    int f = expire_options(x);
    if (f < 0)
        return;
    int64_t base = relative ? store_now_ms() : 0;
    if ((unit > 1 && (when > LLONG_MAX / unit || when < LLONG_MIN / unit)) ||
        (when *= unit, when > LLONG_MAX - base)) {
        char msg[64];
        snprintf(msg, sizeof msg, "invalid expire time in '%s' command", name);
        reply_err(x, msg);
        return;
    }
    when += base;
    struct kref r;
    store_open(x->st, x->argv[1].ptr, x->argv[1].len, &r);
    long long done = 0;
    if (r.e && expire_allowed(f, entry_expire(r.e), when)) {
        done = 1;
        /* A time already past deletes the key, as in Redis. */
        if (when <= store_now_ms())
            store_delete(x->st, &r);
        else if (store_set_expire(&r, when) < 0)
            done = -1;
    }
    store_close(x->st, &r);
    if (done < 0)
        reply_oom(x);
    else
        reply_int(x->r, done);
}

void cmd_expire(struct ctx *x)
{
    expire_generic(x, "expire", 1000, true);
}

void cmd_pexpire(struct ctx *x)
{
    expire_generic(x, "pexpire", 1, true);
}

void cmd_expireat(struct ctx *x)
{
    expire_generic(x, "expireat", 1000, false);
}

void cmd_pexpireat(struct ctx *x)
{
    expire_generic(x, "pexpireat", 1, false);
}

/* Milliseconds left: -2 if absent, -1 without an expiry. */
static int64_t pttl(struct ctx *x)
{
    struct kref r;
    store_open(x->st, x->argv[1].ptr, x->argv[1].len, &r);
    int64_t ttl = -2;
    if (r.e) {
        int64_t when = entry_expire(r.e);
        ttl = when ? when - store_now_ms() : -1;
        if (when && ttl < 0)
            ttl = 0;
    }
    store_close(x->st, &r);
    return ttl;
}

void cmd_pttl(struct ctx *x)
{
    reply_int(x->r, pttl(x));
}

void cmd_ttl(struct ctx *x)
{
    int64_t ms = pttl(x);
    reply_int(x->r, ms < 0 ? ms : (ms + 500) / 1000);
}

void cmd_persist(struct ctx *x)
{
    struct kref r;
    store_open(x->st, x->argv[1].ptr, x->argv[1].len, &r);
    long long done = 0;
    if (r.e && entry_expire(r.e))
        done = store_set_expire(&r, 0) == 0;
    store_close(x->st, &r);
    reply_int(x->r, done);
}

static const char *const type_names[] = {"string", "list", "hash", "set", "zset"};

void cmd_type(struct ctx *x)
{
    struct kref r;
    store_open(x->st, x->argv[1].ptr, x->argv[1].len, &r);
    reply_status(x->r, r.e ? type_names[entry_type(r.e)] : "none");
    store_close(x->st, &r);
}

/* Keys gathered as bulk replies, counted, for a reply whose length comes first. */
struct gather {
    struct reply *r;
    const struct resp_arg *match;
    int type; /* -1: any */
    size_t n;
    char *buf;
    size_t len, cap;
    bool failed;
};

static void gather_add(struct gather *g, const unsigned char *k, size_t klen)
{
    char head[32];
    int h = snprintf(head, sizeof head, "$%zu\r\n", klen);
    size_t need = (size_t)h + klen + 2;
    if (g->cap - g->len < need) {
        size_t cap = g->cap ? g->cap * 2 : 4096;
        while (cap - g->len < need)
            cap *= 2;
        char *nb = realloc(g->buf, cap);
        if (!nb) {
            g->failed = true;
            return;
        }
        g->buf = nb;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, head, (size_t)h);
    memcpy(g->buf + g->len + h, k, klen);
    memcpy(g->buf + g->len + h + klen, "\r\n", 2);
    g->len += need;
    g->n++;
}

static void gather_key(void *arg, unsigned char *e)
{
    struct gather *g = arg;
    size_t klen;
    const unsigned char *k = item_key(e, &klen);
    if (g->failed || (g->type >= 0 && entry_type(e) != g->type))
        return;
    if (g->match && !glob_match(g->match->ptr, g->match->len, (const char *)k, klen, false))
        return;
    gather_add(g, k, klen);
}

/* Send what was gathered as an array; false (after "out of memory") if it failed. */
static void gather_reply(struct ctx *x, struct gather *g)
{
    if (g->failed) {
        reply_oom(x);
    } else {
        reply_array(x->r, g->n);
        reply_raw(x->r, g->buf, g->len);
    }
    free(g->buf);
}

void cmd_keys(struct ctx *x)
{
    struct gather g = {.r = x->r, .match = &x->argv[1], .type = -1};
    /* "*" alone matches everything: skip the matcher. */
    if (x->argv[1].len == 1 && x->argv[1].ptr[0] == '*')
        g.match = NULL;
    store_each(x->st, gather_key, &g);
    gather_reply(x, &g);
}

/* SCAN's cursor as Redis reads it: strtoull, no leading space, nothing after. */
static bool scan_cursor(const struct resp_arg *a, uint64_t *cursor)
{
    char buf[64];
    if (a->len >= sizeof buf)
        return false;
    memcpy(buf, a->ptr, a->len);
    buf[a->len] = '\0';
    if (isspace((unsigned char)buf[0]))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (*end || errno == ERANGE)
        return false;
    *cursor = v;
    return true;
}

static int type_by_name(const struct resp_arg *a)
{
    for (int t = 0; t < 5; t++) {
        if (arg_is(a, type_names[t]))
            return t;
    }
    return 99; /* matches no key */
}

/* SCAN's options; false after replying an error. */
static bool scan_options(struct ctx *x, struct gather *g, long long *count)
{
    for (size_t i = 2; i < x->argc; i += 2) {
        const struct resp_arg *a = &x->argv[i];
        if (i + 1 >= x->argc) {
            reply_err(x, ERR_SYNTAX);
            return false;
        }
        if (arg_is(a, "count")) {
            if (!arg_ll_or_reply(x, a + 1, count))
                return false;
            if (*count < 1) {
                reply_err(x, ERR_SYNTAX);
                return false;
            }
        } else if (arg_is(a, "match")) {
            g->match = a + 1;
        } else if (arg_is(a, "type")) {
            g->type = type_by_name(a + 1);
        } else {
            reply_err(x, ERR_SYNTAX);
            return false;
        }
    }
    return true;
}

void cmd_scan(struct ctx *x)
{
    uint64_t cursor;
    if (!scan_cursor(&x->argv[1], &cursor)) {
        reply_err(x, "invalid cursor");
        return;
    }
    struct gather g = {.r = x->r, .type = -1};
    long long count = 10;
    if (!scan_options(x, &g, &count))
        return;
    if (g.match && g.match->len == 1 && g.match->ptr[0] == '*')
        g.match = NULL;
    uint64_t next = store_scan(x->st, cursor, (size_t)count, gather_key, &g);
    if (g.failed) {
        gather_reply(x, &g);
        return;
    }
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)next);
    reply_array(x->r, 2);
    reply_bulk(x->r, num, (size_t)n);
    gather_reply(x, &g);
}

void cmd_rename(struct ctx *x)
{
    const struct resp_arg *from = &x->argv[1], *to = &x->argv[2];
    uint64_t mask = store_lock_keys(x->st, from, 2, 1);
    struct kref a, b;
    store_find(x->st, from->ptr, from->len, &a);
    if (!a.e) {
        store_unlock_keys(x->st, mask);
        reply_err(x, "no such key");
        return;
    }
    bool ok = true;
    if (from->len != to->len || memcmp(from->ptr, to->ptr, to->len) != 0) {
        /* The key is part of the entry: build the entry anew under the new
         * name, with the same expiry and value. */
        size_t off = entry_payload_off(a.e), size = entry_size(a.e);
        unsigned char *e =
            entry_new(a.e[0] & (E_TYPE | E_OBJ), to->ptr, to->len, entry_expire(a.e), size - off);
        ok = e != NULL;
        if (ok) {
            memcpy(entry_payload(e), a.e + off, size - off);
            store_find(x->st, to->ptr, to->len, &b);
            /* The value now belongs to e: free the old block alone. */
            free(store_take(x->st, &a));
            if (b.e)
                store_delete(x->st, &b);
            ok = store_put(x->st, &b, e) == 0;
        }
    }
    store_unlock_keys(x->st, mask);
    if (ok)
        reply_raw(x->r, "+OK\r\n", 5);
    else
        reply_oom(x);
}

void cmd_dbsize(struct ctx *x)
{
    reply_int(x->r, (long long)store_size(x->st));
}

/* FLUSHDB and FLUSHALL: there is one database, and flushing is synchronous. */
void cmd_flush(struct ctx *x)
{
    if (x->argc > 2 ||
        (x->argc == 2 && !arg_is(&x->argv[1], "async") && !arg_is(&x->argv[1], "sync"))) {
        reply_err(x, ERR_SYNTAX);
        return;
    }
    store_flush(x->st);
    reply_raw(x->r, "+OK\r\n", 5);
}
