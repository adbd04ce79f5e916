/*
 * Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SCARD, SPOP.
 *
 * A set of at most PACK_MAX_ENTRIES members of at most PACK_MAX_VALUE bytes
 * is a packed blob inline in its entry (Redis 7.0 packs only sets of
 * integers, as an intset; any other set is a hash table there); a larger one
 * is a table of items [flags][member length][member], and stays one.
 */
#include "cmd.h"

#include <stdlib.h>
#include <string.h>

static unsigned char *member_new(const void *m, size_t n)
{
    unsigned char *it = malloc(item_key_size(n));
    if (it)
        item_put_key(it, 0, m, n);
    return it;
}

static size_t set_len(unsigned char *e)
{
    if (entry_is_obj(e))
        return ((struct table *)entry_obj(e))->count;
    return pk_count(entry_payload(e));
}

/* Turn r's packed set into a table; -1 if out of memory (unchanged). */
static int to_table(struct store *st, struct kref *r)
{
    struct table *t = malloc(sizeof *t);
    if (!t)
        return -1;
    table_init(t, false);
    unsigned char *b = entry_payload(r->e), *p = pk_first(b), *end = pk_end(b);
    while (p < end) {
        unsigned char *m;
        size_t n;
        p = pk_read(p, &m, &n);
        unsigned char *it = member_new(m, n);
        if (!it || table_insert(t, hash_bytes(m, n), it) == TABLE_NONE) {
            free(it);
            table_destroy_items(t);
            free(t);
            return -1;
        }
    }
    return store_put_table(st, r, T_SET, t);
}

/* Add a member: 1 if added, 0 if there, -1 if out of memory. */
static int set_add(struct store *st, struct kref *r, const struct resp_arg *m)
{
    if (!entry_is_obj(r->e)) {
        size_t off = entry_payload_off(r->e);
        unsigned char *b = r->e + off;
        if (pk_find(b, m->ptr, m->len, 1))
            return 0;
        if (m->len <= PACK_MAX_VALUE && pk_count(b) < PACK_MAX_ENTRIES) {
            unsigned char buf[PACK_MAX_VALUE + PK_OVERHEAD];
            size_t n = pk_write(buf, m->ptr, m->len);
            int rc = pk_splice(&r->e, off, pk_bytes(b), 0, buf, n, 1);
            store_moved(r, r->e);
            return rc < 0 ? -1 : 1;
        }
        if (to_table(st, r) < 0)
            return -1;
    }
    struct table *t = entry_obj(r->e);
    uint64_t h = hash_bytes(m->ptr, m->len);
    if (table_find(t, h, m->ptr, m->len) != TABLE_NONE)
        return 0;
    unsigned char *it = member_new(m->ptr, m->len);
    if (!it || table_insert(t, h, it) == TABLE_NONE) {
        free(it);
        return -1;
    }
    return 1;
}

void cmd_sadd(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_SET, &r))
        return;
    if (!r.e) {
        unsigned char *e = entry_new(T_SET, x->argv[1].ptr, x->argv[1].len, 0, PK_HEADER);
        if (e)
            pk_init(entry_payload(e));
        if (!e || store_put(x->st, &r, e) < 0) {
            store_close(x->st, &r);
            reply_oom(x);
            return;
        }
    }
    long long added = 0;
    int rc = 0;
    for (size_t i = 2; i < x->argc && rc >= 0; i++) {
        rc = set_add(x->st, &r, &x->argv[i]);
        added += rc > 0;
    }
    if (rc < 0)
        reply_oom(x);
    else
        reply_int(x->r, added);
    if (set_len(r.e) == 0)
        store_delete(x->st, &r);
    store_close(x->st, &r);
}

/* Remove the packed member at `at`. */
static void packed_del(struct kref *r, unsigned char *at)
{
    size_t off = entry_payload_off(r->e);
    /* Shrinking cannot fail: a failed realloc keeps the larger block. */
    pk_splice(&r->e, off, (size_t)(at - (r->e + off)), (size_t)(pk_next(at) - at), NULL, 0, -1);
    store_moved(r, r->e);
}

/* Remove a member: true if it was there. */
static bool set_rem(struct kref *r, const void *m, size_t n)
{
    if (entry_is_obj(r->e)) {
        struct table *t = entry_obj(r->e);
        size_t slot = table_find(t, hash_bytes(m, n), m, n);
        if (slot == TABLE_NONE)
            return false;
        free(table_get(t, slot));
        table_remove(t, slot);
        return true;
    }
    unsigned char *at = pk_find(entry_payload(r->e), m, n, 1);
    if (at)
        packed_del(r, at);
    return at != NULL;
}

/* Delete an emptied set's key, shrink a table that removals emptied. */
static void set_tidy(struct store *st, struct kref *r)
{
    if (!r->e)
        return;
    if (set_len(r->e) == 0)
        store_delete(st, r);
    else if (entry_is_obj(r->e))
        table_shrink(entry_obj(r->e));
}

void cmd_srem(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_SET, &r))
        return;
    long long n = 0;
    for (size_t i = 2; r.e && i < x->argc; i++)
        n += set_rem(&r, x->argv[i].ptr, x->argv[i].len);
    set_tidy(x->st, &r);
    reply_int(x->r, n);
    store_close(x->st, &r);
}

void cmd_smembers(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_SET, &r))
        return;
    if (!r.e) {
        reply_array(x->r, 0);
    } else if (entry_is_obj(r.e)) {
        struct table *t = entry_obj(r.e);
        reply_array(x->r, t->count);
        for (size_t i = table_next(t, 0); i != TABLE_NONE; i = table_next(t, i + 1)) {
            size_t n;
            const unsigned char *m = item_key(table_get(t, i), &n);
            reply_bulk(x->r, (const char *)m, n);
        }
    } else {
        unsigned char *b = entry_payload(r.e), *p = pk_first(b), *end = pk_end(b);
        reply_array(x->r, pk_count(b));
        for (; p < end; p = pk_next(p))
            reply_packed(x->r, p);
    }
    store_close(x->st, &r);
}

void cmd_sismember(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_SET, &r))
        return;
    const struct resp_arg *m = &x->argv[2];
    bool in = false;
    if (r.e && entry_is_obj(r.e)) {
        struct table *t = entry_obj(r.e);
        in = table_find(t, hash_bytes(m->ptr, m->len), m->ptr, m->len) != TABLE_NONE;
    } else if (r.e) {
        in = pk_find(entry_payload(r.e), m->ptr, m->len, 1) != NULL;
    }
    reply_int(x->r, in);
    store_close(x->st, &r);
}

void cmd_scard(struct ctx *x)
{
    struct kref r;
    if (!open_typed(x, 1, T_SET, &r))
        return;
    reply_int(x->r, r.e ? (long long)set_len(r.e) : 0);
    store_close(x->st, &r);
}

/* Reply with a random member and remove it (the set is not empty). */
static void pop_one(struct ctx *x, struct kref *r)
{
    uint64_t rnd = store_random();
    if (entry_is_obj(r->e)) {
        struct table *t = entry_obj(r->e);
        size_t slot = table_random(t, rnd);
        unsigned char *it = table_get(t, slot);
        size_t n;
        const unsigned char *m = item_key(it, &n);
        reply_bulk(x->r, (const char *)m, n);
        table_remove(t, slot);
        free(it);
        return;
    }
    unsigned char *b = entry_payload(r->e);
    unsigned char *p = pk_index(b, (size_t)(rnd % pk_count(b))), *m;
    size_t n;
    pk_read(p, &m, &n);
    reply_bulk(x->r, (const char *)m, n);
    packed_del(r, p);
}

void cmd_spop(struct ctx *x)
{
    long long count = -1;
    if (x->argc > 3) {
        reply_err(x, ERR_SYNTAX);
        return;
    }
    if (x->argc == 3 && (!arg_ll(&x->argv[2], &count) || count < 0)) {
        reply_err(x, "value is out of range, must be positive");
        return;
    }
    struct kref r;
    if (!open_typed(x, 1, T_SET, &r))
        return;
    if (count < 0 && !r.e) {
        reply_nil(x->r);
    } else if (count < 0) {
        pop_one(x, &r);
    } else {
        size_t n = r.e ? set_len(r.e) : 0;
        if ((size_t)count < n)
            n = (size_t)count;
        reply_array(x->r, n);
        for (size_t i = 0; i < n; i++)
            pop_one(x, &r);
    }
    set_tidy(x->st, &r);
    store_close(x->st, &r);
}
