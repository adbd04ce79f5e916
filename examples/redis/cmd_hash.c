/*
 * Hash commands: HSET, HGET, HDEL, HGETALL, HLEN, HEXISTS, HINCRBY.
 *
 * A hash of at most PACK_MAX_ENTRIES fields whose fields and values are at
 * most PACK_MAX_VALUE bytes is a packed blob inline in its entry: field,
 * value, field, value ..., in the order the fields were added (so HGETALL
 * answers in Redis's order for a small hash). A larger one is a table
 * (table.h) of items [flags][field length][field][value length][value],
 * and stays one.
 */
#include "cmd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *hitem_new(const void *f, size_t flen, const void *v, size_t vlen)
{
    unsigned char *it = malloc(item_key_size(flen) + varint_len(vlen) + vlen);
    if (!it)
        return NULL;
    unsigned char *p = item_put_key(it, 0, f, flen);
    p += varint_put(p, vlen);
    memcpy(p, v, vlen);
    return it;
}

static unsigned char *hitem_value(unsigned char *it, size_t *vlen)
{
    unsigned char *p = item_after_key(it);
    uint64_t n;
    p += varint_get(p, &n);
    *vlen = (size_t)n;
    return p;
}

/* A new hash entry for the key: an empty packed blob. */
static unsigned char *hash_new(const struct resp_arg *k)
{
    unsigned char *e = entry_new(T_HASH, k->ptr, k->len, 0, PK_HEADER);
    if (e)
        pk_init(entry_payload(e));
    return e;
}

/* Turn r's packed hash into a table; -1 if out of memory (unchanged). */
static int to_table(struct store *st, struct kref *r)
{
    struct table *t = malloc(sizeof *t);
    if (!t)
        return -1;
    table_init(t, false);
    unsigned char *b = entry_payload(r->e), *p = pk_first(b), *end = pk_end(b);
    while (p < end) {
        unsigned char *f, *v;
        size_t flen, vlen;
        p = pk_read(p, &f, &flen);
        p = pk_read(p, &v, &vlen);
        unsigned char *it = hitem_new(f, flen, v, vlen);
        if (!it || table_insert(t, hash_bytes(f, flen), it) == TABLE_NONE) {
            free(it);
            table_destroy_items(t);
            free(t);
            return -1;
        }
    }
    return store_put_table(st, r, T_HASH, t);
}

/* Set a field in a table hash: 1 if it is new, 0 if replaced, -1 if out of memory. */
static int table_hset(struct table *t, const struct resp_arg *f, const void *v, size_t vlen)
{
    uint64_t h = hash_bytes(f->ptr, f->len);
    size_t slot = table_find(t, h, f->ptr, f->len);
    unsigned char *it = hitem_new(f->ptr, f->len, v, vlen);
    if (!it)
        return -1;
    if (slot != TABLE_NONE) {
        free(table_get(t, slot));
        table_set(t, slot, it);
        return 0;
    }
    if (table_insert(t, h, it) == TABLE_NONE) {
        free(it);
        return -1;
    }
    return 1;
}

/* Set a field in a packed hash (both small): 1 if new, 0 if replaced, -1 if out of memory. */
static int packed_hset(struct kref *r, const struct resp_arg *f, const void *v, size_t vlen)
{
    unsigned char buf[2 * (PACK_MAX_VALUE + PK_OVERHEAD)];
    size_t off = entry_payload_off(r->e);
    unsigned char *b = r->e + off, *at = pk_find(b, f->ptr, f->len, 2), *data;
    size_t len, n = pk_write(buf, v, vlen);
    int rc;
    if (at) {
        unsigned char *val = pk_read(at, &data, &len);
        unsigned char *next = pk_read(val, &data, &len);
        rc = pk_splice(&r->e, off, (size_t)(val - b), (size_t)(next - val), buf, n, 0) < 0 ? -1 : 0;
    } else {
        size_t fn = pk_write(buf + n, f->ptr, f->len);
        /* Field first, then value: the value was written first into buf. */
        unsigned char pair[sizeof buf];
        memcpy(pair, buf + n, fn);
        memcpy(pair + fn, buf, n);
        rc = pk_splice(&r->e, off, pk_bytes(b), 0, pair, n + fn, 2) < 0 ? -1 : 1;
    }
    store_moved(r, r->e);
    return rc;
}

/* Set a field whatever the encoding, converting when it grows too large. */
static int hset_one(struct store *st, struct kref *r, const struct resp_arg *f, const void *v,
                    size_t vlen)
{
    if (!entry_is_obj(r->e)) {
        unsigned char *b = entry_payload(r->e);
        bool fits = f->len <= PACK_MAX_VALUE && vlen <= PACK_MAX_VALUE;
        if (fits && (pk_count(b) / 2 < PACK_MAX_ENTRIES || pk_find(b, f->ptr, f->len, 2)))
            return packed_hset(r, f, v, vlen);
        if (to_table(st, r) < 0)
            return -1;
    }
    return table_hset(entry_obj(r->e), f, v, vlen);
}

/* Open the hash of argument 1, creating it if absent; false after replying. */
static bool open_hash(struct ctx *x, struct kref *r)
{
    if (!open_typed(x, 1, T_HASH, r))
        return false;
    if (r->e)
        return true;
    unsigned char *e = hash_new(&x->argv[1]);
    if (!e || store_put(x->st, r, e) < 0) {
        store_close(x->st, r);
        reply_oom(x);
        return false;
    }
    return true;
}

static size_t hash_len(unsigned char *e)
{
    if (entry_is_obj(e))
        return ((struct table *)entry_obj(e))->count;
    return pk_count(entry_payload(e)) / 2;
}

/* HSET, answering the number of new fields, and HMSET, answering OK. */
static void hset_generic(struct ctx *x, bool ok_reply)
{
    if (x->argc % 2) {
        reply_wrong_arity(x, ok_reply ? "hmset" : "hset", NULL);
        return;
    }
    struct kref r;
    if (!open_hash(x, &r))
        return;
    long long added = 0;
    int rc = 0;
    for (size_t i = 2; i < x->argc && rc >= 0; i += 2) {
        rc = hset_one(x->st, &r, &x->argv[i], x->argv[i + 1].ptr, x->argv[i + 1].len);
        added += rc > 0;
    }
    if (rc < 0)
        reply_oom(x);
    else if (ok_reply)
        reply_raw(x->r, "+OK\r\n", 5);
    else
        reply_int(x->r, added);
    if (hash_len(r.e) == 0)
        store_delete(x->st, &r);
    store_close(x->st, &r);
}

void cmd_hset(struct ctx *x)
{
    hset_generic(x, false);
}

/* The value of a field, or NULL. */
static unsigned char *hash_get(unsigned char *e, const struct resp_arg *f, size_t *vlen)
{
    if (entry_is_obj(e)) {
        struct table *t = entry_obj(e);
        size_t slot = table_find(t, hash_bytes(f->ptr, f->len), f->ptr, f->len);
        return slot == TABLE_NONE ? NULL : hitem_value(table_get(t, slot), vlen);
    }
    unsigned char *at = pk_find(entry_payload(e), f->ptr, f->len, 2), *data;
    if (!at)
        return NULL;
    pk_read(pk_read(at, &data, vlen), &data, vlen);
    return data;
}

void cmd_hget(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_HASH, &r))
        return;
    size_t n;
    unsigned char *v = r.e ? hash_get(r.e, &x->argv[2], &n) : NULL;
    if (v)
        reply_bulk(x->r, (const char *)v, n);
    else
        reply_nil(x->r);
    count_lookup(x, r.e != NULL);
    store_close(x->st, &r);
}

void cmd_hexists(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_HASH, &r))
        return;
    size_t n;
    reply_int(x->r, r.e && hash_get(r.e, &x->argv[2], &n));
    store_close(x->st, &r);
}

void cmd_hlen(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_HASH, &r))
        return;
    reply_int(x->r, r.e ? (long long)hash_len(r.e) : 0);
    store_close(x->st, &r);
}

/* Delete a field: true if it was there. */
static bool hash_del(struct kref *r, const struct resp_arg *f)
{
    if (entry_is_obj(r->e)) {
        struct table *t = entry_obj(r->e);
        size_t slot = table_find(t, hash_bytes(f->ptr, f->len), f->ptr, f->len);
        if (slot == TABLE_NONE)
            return false;
        free(table_get(t, slot));
        table_remove(t, slot);
        return true;
    }
    size_t off = entry_payload_off(r->e);
    unsigned char *b = r->e + off, *at = pk_find(b, f->ptr, f->len, 2), *data;
    size_t len;
    if (!at)
        return false;
    unsigned char *end = pk_read(pk_read(at, &data, &len), &data, &len);
    /* Shrinking cannot fail: a failed realloc keeps the larger block. */
    pk_splice(&r->e, off, (size_t)(at - b), (size_t)(end - at), NULL, 0, -2);
    store_moved(r, r->e);
    return true;
}

void cmd_hdel(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_HASH, &r))
        return;
    long long n = 0;
    for (size_t i = 2; r.e && i < x->argc; i++)
        n += hash_del(&r, &x->argv[i]);
    if (r.e && entry_is_obj(r.e))
        table_shrink(entry_obj(r.e));
    if (r.e && hash_len(r.e) == 0)
        store_delete(x->st, &r);
    reply_int(x->r, n);
    store_close(x->st, &r);
}

void cmd_hgetall(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_HASH, &r))
        return;
    if (!r.e) {
        reply_array(x->r, 0);
    } else if (entry_is_obj(r.e)) {
        struct table *t = entry_obj(r.e);
        reply_array(x->r, 2 * t->count);
        for (size_t i = table_next(t, 0); i != TABLE_NONE; i = table_next(t, i + 1)) {
            unsigned char *it = table_get(t, i);
            size_t flen, vlen;
            const unsigned char *f = item_key(it, &flen);
            const unsigned char *v = hitem_value(it, &vlen);
            reply_bulk(x->r, (const char *)f, flen);
            reply_bulk(x->r, (const char *)v, vlen);
        }
    } else {
        unsigned char *b = entry_payload(r.e), *p = pk_first(b), *end = pk_end(b);
        reply_array(x->r, pk_count(b));
        for (; p < end; p = pk_next(p))
            reply_packed(x->r, p);
    }
    store_close(x->st, &r);
}

void cmd_hmset(struct ctx *x)
{
    hset_generic(x, true);
}

void cmd_hmget(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_HASH, &r))
        return;
    reply_array(x->r, x->argc - 2);
    for (size_t i = 2; i < x->argc; i++) {
        size_t n;
        unsigned char *v = r.e ? hash_get(r.e, &x->argv[i], &n) : NULL;
        if (v)
            reply_bulk(x->r, (const char *)v, n);
        else
            reply_nil(x->r);
    }
    store_close(x->st, &r);
}

/* HKEYS (fields) and HVALS (values): every other element of HGETALL's. */
static void hash_half(struct ctx *x, bool values)
{
    struct kref r;
    if (!open_typed(x, 1, T_HASH, &r))
        return;
    if (!r.e) {
        reply_array(x->r, 0);
    } else if (entry_is_obj(r.e)) {
        struct table *t = entry_obj(r.e);
        reply_array(x->r, t->count);
        for (size_t i = table_next(t, 0); i != TABLE_NONE; i = table_next(t, i + 1)) {
            unsigned char *it = table_get(t, i);
            size_t n;
            const unsigned char *p = values ? hitem_value(it, &n) : item_key(it, &n);
            reply_bulk(x->r, (const char *)p, n);
        }
    } else {
        unsigned char *b = entry_payload(r.e), *p = pk_first(b), *end = pk_end(b);
        reply_array(x->r, pk_count(b) / 2);
        for (; p < end; p = pk_next(pk_next(p)))
            reply_packed(x->r, values ? pk_next(p) : p);
    }
    store_close(x->st, &r);
}

void cmd_hkeys(struct ctx *x)
{
    hash_half(x, false);
}

void cmd_hvals(struct ctx *x)
{
    hash_half(x, true);
}

void cmd_hincrby(struct ctx *x)
{
    long long incr, v = 0;
    if (!arg_ll_or_reply(x, &x->argv[3], &incr))
        return;
    struct kref r;
    if (!open_hash(x, &r))
        return;
    size_t n;
    const unsigned char *old = hash_get(r.e, &x->argv[2], &n);
    if (old && !resp_strtoll((const char *)old, n, &v)) {
        reply_err(x, "hash value is not an integer");
    } else if ((incr < 0 && v < 0 && incr < LLONG_MIN - v) ||
               (incr > 0 && v > 0 && incr > LLONG_MAX - v)) {
        reply_err(x, ERR_OVERFLOW);
    } else {
        char buf[24];
        v += incr;
        size_t len = ll_to_str(buf, v);
        if (hset_one(x->st, &r, &x->argv[2], buf, len) < 0)
            reply_oom(x);
        else
            reply_int(x->r, v);
    }
    if (hash_len(r.e) == 0)
        store_delete(x->st, &r);
    store_close(x->st, &r);
}
