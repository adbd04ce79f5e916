/*
 * String commands: GET, SET and its options, INCR and friends, MGET, MSET,
 * APPEND, STRLEN.
 */
#include "cmd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Make r's key the string v[0..vlen) expiring at expire_ms (0: never),
 * whatever it held. An entry that is already a string with as many length
 * bytes and the same kind of expiry is rewritten in place (realloc'd only
 * when the length changes), so that an overwriting SET allocates nothing.
 * Returns 0, or -1 if out of memory (the key is then as it was).
 */
static int string_put(struct store *st, struct kref *r, const struct resp_arg *k, const void *v,
                      size_t vlen, int64_t expire_ms)
{
    unsigned char *e = r->e;
    if (e && entry_type(e) == T_STRING && !(e[0] & ITEM_VOLATILE) == !expire_ms) {
        size_t old;
        unsigned char *ov = entry_string(e, &old);
        if (varint_len(old) == varint_len(vlen)) {
            size_t at = (size_t)(ov - e);
            if (vlen != old) {
                e = realloc(e, at + vlen);
                if (!e)
                    return -1;
                store_moved(r, e);
            }
            varint_put(entry_payload(e), vlen);
            memcpy(e + at, v, vlen);
            if (expire_ms)
                put_u64(item_after_key(e), (uint64_t)expire_ms);
            return 0;
        }
    }
    e = entry_new_string(k->ptr, k->len, v, vlen, expire_ms);
    if (!e)
        return -1;
    return store_put(st, r, e);
}

void cmd_get(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_STRING, &r))
        return;
    if (r.e) {
        size_t n;
        const unsigned char *v = entry_string(r.e, &n);
        reply_bulk(x->r, (const char *)v, n);
    } else {
        reply_nil(x->r);
    }
    count_lookup(x, r.e != NULL);
    store_close(x->st, &r);
}

enum {
    SET_NX = 1,
    SET_XX = 2,
    SET_KEEPTTL = 4,
    SET_GET = 8,
    SET_EX = 16,
    SET_PX = 32,
    SET_EXAT = 64,
    SET_PXAT = 128
};
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
        if (arg_is(a, "nx") && !(flags & SET_XX))
            flags |= SET_NX;
        else if (arg_is(a, "xx") && !(flags & SET_NX))
            flags |= SET_XX;
        else if (arg_is(a, "get"))
            flags |= SET_GET;
        else if (arg_is(a, "keepttl") && !(flags & SET_ANY_TTL))
            flags |= SET_KEEPTTL;
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
            if (!more || (flags & SET_KEEPTTL) || (flags & SET_ANY_TTL & ~ttl))
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
    if (!arg_ll_or_reply(x, arg, &v))
        return false;
    bool seconds = flags & (SET_EX | SET_EXAT);
    if (v <= 0 || (seconds && v > LLONG_MAX / 1000)) {
        reply_err(x, "invalid expire time in 'set' command");
        return false;
    }
    if (seconds)
        v *= 1000;
    if (flags & (SET_EX | SET_PX)) {
        int64_t now = store_now_ms();
        if (v > LLONG_MAX - now) {
            reply_err(x, "invalid expire time in 'set' command");
            return false;
        }
        v += now;
    }
    *when = v;
    return true;
}

/* SET's effect once the key is open; false after replying an error. */
static bool set_locked(struct ctx *x, struct kref *r, int flags, int64_t when)
{
    const struct resp_arg *k = &x->argv[1], *v = &x->argv[2];
    unsigned char *e = r->e;
    if ((flags & SET_GET) && e && entry_type(e) != T_STRING) {
        reply_wrongtype(x);
        return false;
    }
    if (flags & SET_GET) {
        if (e) {
            size_t n;
            const unsigned char *old = entry_string(e, &n);
            reply_bulk(x->r, (const char *)old, n);
        } else {
            reply_nil(x->r);
        }
    }
    if (((flags & SET_NX) && e) || ((flags & SET_XX) && !e)) {
        if (!(flags & SET_GET))
            reply_nil(x->r);
        return true;
    }
    if ((flags & SET_KEEPTTL) && e)
        when = entry_expire(e);
    /* A time already past (EXAT 1) deletes the key, as Redis does. */
    if (when && when <= store_now_ms()) {
        if (e)
            store_delete(x->st, r);
    } else if (string_put(x->st, r, k, v->ptr, v->len, when) < 0) {
        reply_oom(x);
        return false;
    }
    if (!(flags & SET_GET))
        reply_raw(x->r, "+OK\r\n", 5);
    return true;
}

void cmd_set(struct ctx *x)
{
    const struct resp_arg *ttl_arg = NULL;
    int64_t when = 0;
    int flags = x->argc > 3 ? set_options(x, &ttl_arg) : 0;
    if (flags < 0) {
        reply_err(x, ERR_SYNTAX);
        return;
    }
    if ((flags & SET_ANY_TTL) && !set_expiry(x, flags, ttl_arg, &when))
        return;
    struct kref r;
    store_open(x->st, x->argv[1].ptr, x->argv[1].len, &r);
    set_locked(x, &r, flags, when);
    store_close(x->st, &r);
}

static void incr_by(struct ctx *x, long long delta)
{
    struct kref r;
    if (!open_typed(x, 1, T_STRING, &r))
        return;
    long long v = 0;
    if (r.e) {
        size_t n;
        const unsigned char *s = entry_string(r.e, &n);
        if (!resp_strtoll((const char *)s, n, &v)) {
            reply_err(x, ERR_NOT_INT);
            goto out;
        }
    }
    if ((delta < 0 && v < 0 && delta < LLONG_MIN - v) ||
        (delta > 0 && v > 0 && delta > LLONG_MAX - v)) {
        reply_err(x, ERR_OVERFLOW);
        goto out;
    }
    v += delta;
    char buf[24];
    size_t len = ll_to_str(buf, v);
    /* INCR keeps the key's expiry time, as in Redis. */
    if (string_put(x->st, &r, &x->argv[1], buf, len, r.e ? entry_expire(r.e) : 0) < 0)
        reply_oom(x);
    else
        reply_int(x->r, v);
out:
    store_close(x->st, &r);
}

void cmd_incr(struct ctx *x)
{
    incr_by(x, 1);
}

void cmd_decr(struct ctx *x)
{
    incr_by(x, -1);
}

void cmd_incrby(struct ctx *x)
{
    long long d;
    if (arg_ll_or_reply(x, &x->argv[2], &d))
        incr_by(x, d);
}

void cmd_decrby(struct ctx *x)
{
    long long d;
    if (!arg_ll_or_reply(x, &x->argv[2], &d))
        return;
    if (d == LLONG_MIN)
        reply_err(x, "decrement would overflow");
    else
        incr_by(x, -d);
}

void cmd_mget(struct ctx *x)
{
    size_t n = x->argc - 1;
    uint64_t mask = store_lock_keys(x->st, &x->argv[1], n, 1);
    reply_array(x->r, n);
    for (size_t i = 1; i <= n; i++) {
        struct kref r;
        store_find(x->st, x->argv[i].ptr, x->argv[i].len, &r);
        if (r.e && entry_type(r.e) == T_STRING) {
            size_t len;
            const unsigned char *v = entry_string(r.e, &len);
            reply_bulk(x->r, (const char *)v, len);
        } else {
            reply_nil(x->r);
        }
        count_lookup(x, r.e != NULL);
    }
    store_unlock_keys(x->st, mask);
}

void cmd_mset(struct ctx *x)
{
    if (x->argc % 2 == 0) {
        reply_wrong_arity(x, "mset", NULL);
        return;
    }
    size_t npairs = (x->argc - 1) / 2;
    uint64_t mask = store_lock_keys(x->st, &x->argv[1], npairs, 2);
    bool ok = true;
    for (size_t i = 0; i < npairs && ok; i++) {
        const struct resp_arg *k = &x->argv[1 + 2 * i], *v = k + 1;
        struct kref r;
        store_find(x->st, k->ptr, k->len, &r);
        ok = string_put(x->st, &r, k, v->ptr, v->len, 0) == 0;
    }
    store_unlock_keys(x->st, mask);
    if (ok)
        reply_raw(x->r, "+OK\r\n", 5);
    else
        reply_oom(x);
}

void cmd_append(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_STRING, &r))
        return;
    const struct resp_arg *k = &x->argv[1], *a = &x->argv[2];
    size_t old = 0;
    const unsigned char *v = r.e ? entry_string(r.e, &old) : NULL;
    char *buf = old + a->len ? malloc(old + a->len) : NULL;
    if (old + a->len && !buf) {
        reply_oom(x);
    } else {
        if (old)
            memcpy(buf, v, old);
        if (a->len)
            memcpy(buf + old, a->ptr, a->len);
        if (string_put(x->st, &r, k, buf, old + a->len, r.e ? entry_expire(r.e) : 0) < 0)
            reply_oom(x);
        else
            reply_int(x->r, (long long)(old + a->len));
        free(buf);
    }
    store_close(x->st, &r);
}

void cmd_strlen(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_STRING, &r))
        return;
    size_t n = 0;
    if (r.e)
        entry_string(r.e, &n);
    reply_int(x->r, (long long)n);
    store_close(x->st, &r);
}
