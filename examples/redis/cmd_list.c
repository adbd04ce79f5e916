/*
 * List commands: LPUSH, RPUSH, LPOP, RPOP, LRANGE, LLEN, LINDEX. A list is
 * always a struct list (list.h) that its entry points to; an emptied list
 * is deleted with its key, as in Redis.
 */
#include "cmd.h"
#include "list.h"

#include <stdlib.h>
#include <string.h>

static struct list *list_of(struct kref *r)
{
    return entry_obj(r->e);
}

static void push(struct ctx *x, bool front)
{
    struct kref r;
    if (!open_typed(x, 1, T_LIST, &r))
        return;
    if (!r.e) {
        struct list *l = list_new();
        unsigned char *e =
            l ? entry_new(T_LIST | E_OBJ, x->argv[1].ptr, x->argv[1].len, 0, sizeof l) : NULL;
        if (e)
            put_ptr(entry_payload(e), l);
        if (!e || store_put(x->st, &r, e) < 0) {
            if (!e)
                list_free(l);
            store_close(x->st, &r);
            reply_oom(x);
            return;
        }
    }
    struct list *l = list_of(&r);
    bool ok = true;
    for (size_t i = 2; i < x->argc && ok; i++)
        ok = list_push(l, front, x->argv[i].ptr, x->argv[i].len) == 0;
    if (ok)
        reply_int(x->r, (long long)l->count);
    else
        reply_oom(x);
    if (l->count == 0)
        store_delete(x->st, &r);
    store_close(x->st, &r);
}

void cmd_lpush(struct ctx *x)
{
    push(x, true);
}

void cmd_rpush(struct ctx *x)
{
    push(x, false);
}

/* LPOP and RPOP, with or without a count. */
static void pop(struct ctx *x, bool front)
{
    long long count = -1;
    if (x->argc > 3) {
        reply_wrong_arity(x, front ? "lpop" : "rpop", NULL);
        return;
    }
    if (x->argc == 3 && (!arg_ll(&x->argv[2], &count) || count < 0)) {
        reply_err(x, "value is out of range, must be positive");
        return;
    }
    struct kref r;
    if (!open_typed(x, 1, T_LIST, &r))
        return;
    if (!r.e) {
        if (count < 0)
            reply_nil(x->r);
        else
            reply_raw(x->r, "*-1\r\n", 5);
        store_close(x->st, &r);
        return;
    }
    struct list *l = list_of(&r);
    size_t n = count < 0 ? 1 : (size_t)count < l->count ? (size_t)count : l->count;
    if (count >= 0)
        reply_array(x->r, n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        unsigned char *v = list_peek(l, front, &len);
        reply_bulk(x->r, (const char *)v, len);
        list_drop(l, front);
    }
    if (l->count == 0)
        store_delete(x->st, &r);
    store_close(x->st, &r);
}

void cmd_lpop(struct ctx *x)
{
    pop(x, true);
}

void cmd_rpop(struct ctx *x)
{
    pop(x, false);
}

/* Clamp Redis-style indexes (negative from the end) to [0, len). False if
 * the range is empty. */
static bool clamp_range(long long start, long long stop, size_t len, size_t *from, size_t *to)
{
    long long n = (long long)len;
    if (start < 0)
        start += n;
    if (stop < 0)
        stop += n;
    if (start < 0)
        start = 0;
    if (start > stop || start >= n)
        return false;
    if (stop >= n)
        stop = n - 1;
    *from = (size_t)start;
    *to = (size_t)stop;
    return true;
}

/*
 * Reply with n elements from the packed run [*pp, end) as bulk replies,
 * returning how many were written. LRANGE spends its time here, so the
 * reply buffer's fields live in locals (a store through a char pointer
 * could otherwise alias them) and a short element is written in place.
 */
static size_t reply_run(struct reply *r, unsigned char **pp, unsigned char *end, size_t n)
{
    char *buf = r->buf;
    size_t len = r->len, cap = r->cap, done = 0;
    unsigned char *p = *pp;
    while (done < n && p < end) {
        unsigned char *v;
        size_t vlen;
        p = pk_read(p, &v, &vlen);
        if (vlen < 10 && cap - len >= 16) {
            char *o = buf + len;
            o[0] = '$';
            o[1] = (char)('0' + vlen);
            o[2] = '\r';
            o[3] = '\n';
            /* Eight bytes at once when the node holds that many from v
             * (the bytes past the element are overwritten next). */
            if (vlen <= 8 && v + 8 <= end) {
                memcpy(o + 4, v, 8);
            } else {
                for (size_t i = 0; i < vlen; i++)
                    o[4 + i] = (char)v[i];
            }
            o[4 + vlen] = '\r';
            o[5 + vlen] = '\n';
            len += vlen + 6;
        } else {
            r->len = len;
            reply_bulk(r, (const char *)v, vlen);
            len = r->len;
        }
        done++;
    }
    r->len = len;
    *pp = p;
    return done;
}

void cmd_lrange(struct ctx *x)
{
    long long start, stop;
    if (!arg_ll_or_reply(x, &x->argv[2], &start) || !arg_ll_or_reply(x, &x->argv[3], &stop))
        return;
    struct kref r;
    if (!open_typed(x, 1, T_LIST, &r))
        return;
    size_t from, to;
    if (!r.e || !clamp_range(start, stop, list_of(&r)->count, &from, &to)) {
        reply_array(x->r, 0);
    } else {
        struct list_iter it;
        unsigned char *p, *end;
        size_t left = to - from + 1;
        reply_array(x->r, left);
        list_iter_at(list_of(&r), from, &it);
        while (left && list_run(&it, &p, &end))
            left -= reply_run(x->r, &p, end, left);
    }
    store_close(x->st, &r);
}

void cmd_llen(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_LIST, &r))
        return;
    reply_int(x->r, r.e ? (long long)list_of(&r)->count : 0);
    store_close(x->st, &r);
}

void cmd_lindex(struct ctx *x)
{
    long long i;
    if (!arg_ll_or_reply(x, &x->argv[2], &i))
        return;
    struct kref r;
    if (!open_typed(x, 1, T_LIST, &r))
        return;
    size_t n = r.e ? list_of(&r)->count : 0;
    if (i < 0)
        i += (long long)n;
    if (i < 0 || i >= (long long)n) {
        reply_nil(x->r);
    } else {
        struct list_iter it;
        unsigned char *v;
        size_t len;
        list_iter_at(list_of(&r), (size_t)i, &it);
        if (list_next(&it, &v, &len))
            reply_bulk(x->r, (const char *)v, len);
        else
            reply_nil(x->r);
    }
    store_close(x->st, &r);
}
