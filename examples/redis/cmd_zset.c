/*
 * Sorted-set commands: ZADD, ZINCRBY, ZREM, ZRANGE, ZSCORE, ZCARD, ZPOPMIN,
 * ZRANK.
 *
 * A sorted set of at most PACK_MAX_ENTRIES members of at most PACK_MAX_VALUE
 * bytes is a packed blob inline in its entry: member, score, member, score
 * ... in order of (score, member), each score an 8-byte element holding the
 * double's bytes. A larger one is a struct zset (zset.h), and stays one.
 * Redis packs a zero score as the integer 0, so a small set never gives back
 * -0; the packed form drops the sign of a zero too.
 */
#include "cmd.h"
#include "zset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* What ZADD's flags ask for. */
enum { Z_NX = 1, Z_XX = 2, Z_GT = 4, Z_LT = 8, Z_CH = 16, Z_INCR = 32 };
/* What adding one member did. */
/* Z_NOP: the flags left it alone; Z_SAME: it already had that score. */
enum zres { Z_NOP, Z_SAME, Z_ADDED, Z_UPDATED, Z_NAN, Z_OOM };

static double packed_score(unsigned char *score_elem)
{
    unsigned char *data;
    size_t len;
    double d;
    pk_read(score_elem, &data, &len);
    memcpy(&d, data, sizeof d);
    return d;
}

static size_t zlen(unsigned char *e)
{
    if (entry_is_obj(e))
        return ((struct zset *)entry_obj(e))->length;
    return pk_count(entry_payload(e)) / 2;
}

/* The packed member element equal to m, or NULL. */
static unsigned char *packed_find(unsigned char *b, const void *m, size_t n)
{
    return pk_find(b, m, n, 2);
}

/* Insert (score, m) into r's packed set at its place in order. */
static int packed_insert(struct kref *r, double score, const void *m, size_t n)
{
    unsigned char buf[2 * (PACK_MAX_VALUE + PK_OVERHEAD)];
    if (score == 0)
        score = 0; /* no -0 in a packed set */
    size_t len = pk_write(buf, m, n);
    len += pk_write(buf + len, &score, sizeof score);
    size_t off = entry_payload_off(r->e);
    unsigned char *b = r->e + off, *p = pk_first(b), *end = pk_end(b);
    while (p < end) {
        unsigned char *pm, *s = pk_next(p);
        size_t pn;
        pk_read(p, &pm, &pn);
        if (zset_cmp(packed_score(s), pm, pn, score, m, n) > 0)
            break;
        p = pk_next(s);
    }
    int rc = pk_splice(&r->e, off, (size_t)(p - b), 0, buf, len, 2);
    store_moved(r, r->e);
    return rc;
}

/* Remove the pair whose member element is at `at`. */
static void packed_delete(struct kref *r, unsigned char *at)
{
    size_t off = entry_payload_off(r->e);
    unsigned char *b = r->e + off, *end = pk_next(pk_next(at));
    pk_splice(&r->e, off, (size_t)(at - b), (size_t)(end - at), NULL, 0, -2);
    store_moved(r, r->e);
}

/* Turn r's packed set into a skip list; -1 if out of memory (unchanged). */
static int to_skiplist(struct store *st, struct kref *r)
{
    struct zset *z = zset_new();
    if (!z)
        return -1;
    unsigned char *b = entry_payload(r->e), *p = pk_first(b), *end = pk_end(b);
    while (p < end) {
        unsigned char *m;
        size_t n;
        unsigned char *s = pk_read(p, &m, &n);
        if (zset_add(z, packed_score(s), m, n) < 0) {
            zset_free(z);
            return -1;
        }
        p = pk_next(s);
    }
    size_t klen;
    const unsigned char *k = item_key(r->e, &klen);
    unsigned char *e = entry_new(T_ZSET | E_OBJ, k, klen, entry_expire(r->e), sizeof z);
    if (!e) {
        zset_free(z);
        return -1;
    }
    put_ptr(entry_payload(e), z);
    return store_put(st, r, e);
}

/* The new score ZADD's flags give a member now at old (exists) or absent;
 * false when the flags leave it alone. */
static bool new_score(int flags, bool exists, double old, double *score)
{
    if ((exists && (flags & Z_NX)) || (!exists && (flags & Z_XX)))
        return false;
    if (exists && (flags & Z_INCR))
        *score += old;
    if (exists && (((flags & Z_GT) && *score <= old) || ((flags & Z_LT) && *score >= old)))
        return false;
    return true;
}

/* Add or update one member of a packed set, converting if it outgrows it. */
static enum zres packed_add(struct store *st, struct kref *r, const struct resp_arg *m,
                            double *score, int flags)
{
    unsigned char *b = entry_payload(r->e), *at = packed_find(b, m->ptr, m->len);
    double old = at ? packed_score(pk_next(at)) : 0;
    if (!new_score(flags, at != NULL, old, score))
        return Z_NOP;
    if (isnan(*score))
        return Z_NAN;
    if (at) {
        if (*score == old)
            return Z_SAME;
        packed_delete(r, at);
        return packed_insert(r, *score, m->ptr, m->len) < 0 ? Z_OOM : Z_UPDATED;
    }
    if (m->len > PACK_MAX_VALUE || pk_count(b) / 2 >= PACK_MAX_ENTRIES) {
        if (to_skiplist(st, r) < 0)
            return Z_OOM;
        return zset_add(entry_obj(r->e), *score, m->ptr, m->len) < 0 ? Z_OOM : Z_ADDED;
    }
    return packed_insert(r, *score, m->ptr, m->len) < 0 ? Z_OOM : Z_ADDED;
}

static enum zres skiplist_add(struct zset *z, const struct resp_arg *m, double *score, int flags)
{
    struct znode *x = zset_find(z, m->ptr, m->len);
    if (!new_score(flags, x != NULL, x ? x->score : 0, score))
        return Z_NOP;
    if (isnan(*score))
        return Z_NAN;
    if (x) {
        if (*score == x->score)
            return Z_SAME;
        zset_update(z, x, *score);
        return Z_UPDATED;
    }
    return zset_add(z, *score, m->ptr, m->len) < 0 ? Z_OOM : Z_ADDED;
}

static enum zres zadd_one(struct store *st, struct kref *r, const struct resp_arg *m, double *score,
                          int flags)
{
    if (!entry_is_obj(r->e))
        return packed_add(st, r, m, score, flags);
    return skiplist_add(entry_obj(r->e), m, score, flags);
}

/* ZADD's flags, and where the score-member pairs start; -1 after an error. */
static int zadd_flags(struct ctx *x, size_t *first)
{
    int f = 0;
    size_t i = 2;
    for (; i < x->argc; i++) {
        const struct resp_arg *a = &x->argv[i];
        /* Scores come first in the common case: no flag starts with a digit. */
        if (a->len == 0 || (a->ptr[0] >= '0' && a->ptr[0] <= '9'))
            break;
        if (arg_is(a, "nx"))
            f |= Z_NX;
        else if (arg_is(a, "xx"))
            f |= Z_XX;
        else if (arg_is(a, "gt"))
            f |= Z_GT;
        else if (arg_is(a, "lt"))
            f |= Z_LT;
        else if (arg_is(a, "ch"))
            f |= Z_CH;
        else if (arg_is(a, "incr"))
            f |= Z_INCR;
        else
            break;
    }
    size_t n = x->argc - i;
    if (n == 0 || n % 2) {
        reply_err(x, ERR_SYNTAX);
        return -1;
    }
    if ((f & Z_NX) && (f & Z_XX)) {
        reply_err(x, "XX and NX options at the same time are not compatible");
        return -1;
    }
    if (((f & Z_GT) && (f & Z_NX)) || ((f & Z_LT) && (f & Z_NX)) || ((f & Z_GT) && (f & Z_LT))) {
        reply_err(x, "GT, LT, and/or NX options at the same time are not compatible");
        return -1;
    }
    if ((f & Z_INCR) && n > 2) {
        reply_err(x, "INCR option supports a single increment-element pair");
        return -1;
    }
    *first = i;
    return f;
}

/* Open (creating it unless XX says not to) the sorted set of argument 1. */
static bool open_zset(struct ctx *x, struct kref *r, bool create)
{
    if (!open_typed(x, 1, T_ZSET, r))
        return false;
    if (r->e || !create)
        return true;
    unsigned char *e = entry_new(T_ZSET, x->argv[1].ptr, x->argv[1].len, 0, PK_HEADER);
    if (e)
        pk_init(entry_payload(e));
    if (!e || store_put(x->st, r, e) < 0) {
        store_close(x->st, r);
        reply_oom(x);
        return false;
    }
    return true;
}

/* Add the pairs argv[first..] with flags, replying as ZADD (or ZINCRBY). */
static void zadd_generic(struct ctx *x, size_t first, int flags, const double *scores)
{
    struct kref r;
    if (!open_zset(x, &r, !(flags & Z_XX)))
        return;
    long long added = 0, changed = 0;
    enum zres res = Z_NOP;
    double score = 0;
    for (size_t i = first; r.e && i < x->argc && res != Z_NAN && res != Z_OOM; i += 2) {
        score = scores[(i - first) / 2];
        res = zadd_one(x->st, &r, &x->argv[i + 1], &score, flags);
        added += res == Z_ADDED;
        changed += res == Z_ADDED || res == Z_UPDATED;
    }
    if (res == Z_NAN)
        reply_err(x, "resulting score is not a number (NaN)");
    else if (res == Z_OOM)
        reply_oom(x);
    else if ((flags & Z_INCR) && res == Z_NOP)
        reply_nil(x->r);
    else if (flags & Z_INCR)
        reply_double(x->r, score);
    else
        reply_int(x->r, flags & Z_CH ? changed : added);
    if (r.e && zlen(r.e) == 0)
        store_delete(x->st, &r);
    store_close(x->st, &r);
}

/* Parse the scores of the pairs from argv[first]; false after an error. */
static double *parse_scores(struct ctx *x, size_t first, double *small, size_t nsmall)
{
    size_t n = (x->argc - first) / 2;
    double *s = n <= nsmall ? small : malloc(n * sizeof *s);
    if (!s) {
        reply_oom(x);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!arg_double(&x->argv[first + 2 * i], &s[i])) {
            reply_err(x, ERR_NOT_FLOAT);
            if (s != small)
                free(s);
            return NULL;
        }
    }
    return s;
}

void cmd_zadd(struct ctx *x)
{
    size_t first;
    int flags = zadd_flags(x, &first);
    if (flags < 0)
        return;
    double small[16];
    double *scores = parse_scores(x, first, small, 16);
    if (!scores)
        return;
    zadd_generic(x, first, flags, scores);
    if (scores != small)
        free(scores);
}

void cmd_zincrby(struct ctx *x)
{
    double incr;
    if (!arg_double(&x->argv[2], &incr)) {
        reply_err(x, ERR_NOT_FLOAT);
        return;
    }
    /* ZADD key INCR increment member: the same arguments from index 2. */
    zadd_generic(x, 2, Z_INCR, &incr);
}

void cmd_zrem(struct ctx *x)
{
    struct kref r;
    if (!open_zset(x, &r, false))
        return;
    long long n = 0;
    for (size_t i = 2; r.e && i < x->argc; i++) {
        const struct resp_arg *m = &x->argv[i];
        if (entry_is_obj(r.e)) {
            struct zset *z = entry_obj(r.e);
            struct znode *node = zset_find(z, m->ptr, m->len);
            if (node) {
                zset_delete(z, node);
                n++;
            }
        } else {
            unsigned char *at = packed_find(entry_payload(r.e), m->ptr, m->len);
            if (at) {
                packed_delete(&r, at);
                n++;
            }
        }
    }
    if (r.e && zlen(r.e) == 0)
        store_delete(x->st, &r);
    reply_int(x->r, n);
    store_close(x->st, &r);
}

/* The score of a member: false if absent. */
static bool zscore_of(unsigned char *e, const struct resp_arg *m, double *score)
{
    if (entry_is_obj(e)) {
        struct znode *node = zset_find(entry_obj(e), m->ptr, m->len);
        if (node)
            *score = node->score;
        return node != NULL;
    }
    unsigned char *at = packed_find(entry_payload(e), m->ptr, m->len);
    if (at)
        *score = packed_score(pk_next(at));
    return at != NULL;
}

void cmd_zscore(struct ctx *x)
{
    struct kref r;
    double score;
    if (!open_zset(x, &r, false))
        return;
    if (r.e && zscore_of(r.e, &x->argv[2], &score))
        reply_double(x->r, score);
    else
        reply_nil(x->r);
    store_close(x->st, &r);
}

void cmd_zcard(struct ctx *x)
{
    struct kref r;
    if (!open_zset(x, &r, false))
        return;
    reply_int(x->r, r.e ? (long long)zlen(r.e) : 0);
    store_close(x->st, &r);
}

static void zrank_generic(struct ctx *x, bool rev)
{
    struct kref r;
    if (!open_zset(x, &r, false))
        return;
    const struct resp_arg *m = &x->argv[2];
    long long rank = -1;
    if (r.e && entry_is_obj(r.e)) {
        struct zset *z = entry_obj(r.e);
        struct znode *node = zset_find(z, m->ptr, m->len);
        if (node)
            rank = (long long)zset_rank(z, node);
    } else if (r.e) {
        unsigned char *b = entry_payload(r.e), *at = packed_find(b, m->ptr, m->len);
        for (unsigned char *p = pk_first(b); at && p != at; p = pk_next(pk_next(p)))
            rank++;
        rank += at != NULL;
    }
    if (rank < 0)
        reply_nil(x->r);
    else
        reply_int(x->r, rev ? (long long)zlen(r.e) - 1 - rank : rank);
    store_close(x->st, &r);
}

void cmd_zrank(struct ctx *x)
{
    zrank_generic(x, false);
}

void cmd_zrevrank(struct ctx *x)
{
    zrank_generic(x, true);
}

/* A position in a sorted set, whichever its encoding, walked in order. */
struct zcursor {
    unsigned char *p, *first, *end; /* packed */
    struct znode *node;             /* skip list */
    bool packed, rev;
};

static void zcursor_at(struct zcursor *c, unsigned char *e, size_t rank, bool rev)
{
    c->rev = rev;
    c->packed = !entry_is_obj(e);
    if (c->packed) {
        unsigned char *b = entry_payload(e);
        c->first = pk_first(b);
        c->end = pk_end(b);
        c->p = pk_index(b, 2 * rank);
    } else {
        c->node = zset_at(entry_obj(e), rank);
    }
}

/* The member and score under the cursor, then it moves on. */
static bool zcursor_next(struct zcursor *c, unsigned char **m, size_t *n, double *score)
{
    if (c->packed) {
        if (!c->p)
            return false;
        unsigned char *s = pk_read(c->p, m, n);
        *score = packed_score(s);
        if (!c->rev)
            c->p = pk_next(s) < c->end ? pk_next(s) : NULL;
        else
            c->p = c->p > c->first ? pk_prev(pk_prev(c->p)) : NULL;
        return true;
    }
    if (!c->node)
        return false;
    *m = (unsigned char *)znode_member(c->node, n);
    *score = c->node->score;
    c->node = c->rev ? c->node->backward : c->node->level[0].forward;
    return true;
}

static void reply_member(struct reply *r, const unsigned char *m, size_t n, double score,
                         bool withscores)
{
    reply_bulk(r, (const char *)m, n);
    if (withscores)
        reply_double(r, score);
}

enum { BY_RANK, BY_SCORE, BY_LEX };

/* A BYSCORE or BYLEX bound. */
struct zbound {
    double score;
    const unsigned char *lex; /* NULL with lex_inf: - (-1) or + (1) */
    size_t lexlen;
    int lex_inf;
    bool excl;
};

struct zrange {
    int by;
    bool rev, withscores;
    bool fixed;              /* ZREVRANGE, ZRANGEBYSCORE ...: no REV, BYSCORE or BYLEX words */
    long long offset, limit; /* limit < 0: no limit */
    struct zbound min, max;
    long long start, stop; /* BY_RANK */
};

/* ZRANGE's options after start and stop; false after replying an error. */
static bool zrange_options(struct ctx *x, struct zrange *q)
{
    bool limit = false;
    for (size_t j = 4; j < x->argc; j++) {
        const struct resp_arg *a = &x->argv[j];
        if (arg_is(a, "withscores")) {
            q->withscores = true;
        } else if (arg_is(a, "limit") && x->argc - j - 1 >= 2) {
            if (!arg_ll_or_reply(x, a + 1, &q->offset) || !arg_ll_or_reply(x, a + 2, &q->limit))
                return false;
            limit = true;
            j += 2;
        } else if (!q->fixed && !q->rev && arg_is(a, "rev")) {
            q->rev = true;
        } else if (!q->fixed && q->by == BY_RANK && arg_is(a, "bylex")) {
            q->by = BY_LEX;
        } else if (!q->fixed && q->by == BY_RANK && arg_is(a, "byscore")) {
            q->by = BY_SCORE;
        } else {
            reply_err(x, ERR_SYNTAX);
            return false;
        }
    }
    if (limit && q->by == BY_RANK) {
        reply_err(x, "syntax error, LIMIT is only supported in combination with either BYSCORE "
                     "or BYLEX");
        return false;
    }
    if (q->withscores && q->by == BY_LEX) {
        reply_err(x, "syntax error, WITHSCORES not supported in combination with BYLEX");
        return false;
    }
    return true;
}

/* A BYSCORE bound: "(" for exclusive, then what strtod takes, no NaN. */
static bool parse_score_bound(const struct resp_arg *a, struct zbound *b)
{
    char buf[128];
    size_t skip = a->len && a->ptr[0] == '(';
    if (a->len - skip >= sizeof buf)
        return false;
    memcpy(buf, a->ptr + skip, a->len - skip);
    buf[a->len - skip] = '\0';
    char *end;
    b->score = strtod(buf, &end);
    b->excl = skip;
    return *end == '\0' && !isnan(b->score);
}

/* A BYLEX bound: "-", "+", or "[" or "(" and a string. */
static bool parse_lex_bound(const struct resp_arg *a, struct zbound *b)
{
    b->lex = NULL;
    b->lex_inf = 0;
    if (a->len == 1 && (a->ptr[0] == '-' || a->ptr[0] == '+')) {
        b->lex_inf = a->ptr[0] == '-' ? -1 : 1;
        return true;
    }
    if (a->len == 0 || (a->ptr[0] != '[' && a->ptr[0] != '('))
        return false;
    b->excl = a->ptr[0] == '(';
    b->lex = (const unsigned char *)a->ptr + 1;
    b->lexlen = a->len - 1;
    return true;
}

static int lexcmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

/* Whether a member is above the lower bound and below the upper one. */
static bool above_min(const struct zrange *q, const unsigned char *m, size_t n, double s)
{
    const struct zbound *b = &q->min;
    if (q->by == BY_SCORE)
        return b->excl ? s > b->score : s >= b->score;
    if (b->lex_inf)
        return b->lex_inf < 0;
    int c = lexcmp(m, n, b->lex, b->lexlen);
    return b->excl ? c > 0 : c >= 0;
}

static bool below_max(const struct zrange *q, const unsigned char *m, size_t n, double s)
{
    const struct zbound *b = &q->max;
    if (q->by == BY_SCORE)
        return b->excl ? s < b->score : s <= b->score;
    if (b->lex_inf)
        return b->lex_inf > 0;
    int c = lexcmp(m, n, b->lex, b->lexlen);
    return b->excl ? c < 0 : c <= 0;
}

/* The order of two BYLEX bounds: "-" below every string, "+" above. */
static int bound_cmp(const struct zbound *a, const struct zbound *b)
{
    if (a->lex_inf || b->lex_inf)
        return a->lex_inf - b->lex_inf;
    return lexcmp(a->lex, a->lexlen, b->lex, b->lexlen);
}

/* A range that no set can have anything in: min above max, or equal with
 * either end exclusive. */
static bool range_empty(const struct zrange *q)
{
    if (q->by == BY_SCORE)
        return q->min.score > q->max.score ||
               (q->min.score == q->max.score && (q->min.excl || q->max.excl));
    int c = bound_cmp(&q->min, &q->max);
    return c > 0 || (c == 0 && (q->min.excl || q->max.excl));
}

/* What a cursor points at. */
struct zpos {
    unsigned char *m;
    size_t n;
    double s;
};

static bool zcursor_peek(struct zcursor *c, struct zpos *at)
{
    struct zcursor copy = *c;
    return zcursor_next(&copy, &at->m, &at->n, &at->s);
}

static bool in_low(const struct zrange *q, const struct zpos *p)
{
    return above_min(q, p->m, p->n, p->s);
}

static bool in_high(const struct zrange *q, const struct zpos *p)
{
    return below_max(q, p->m, p->n, p->s);
}

/*
 * Where a BYSCORE or BYLEX walk starts: going up, the first member at or
 * above the lower bound; going down (REV), the last at or below the upper
 * one. A skip list is searched top down, a packed set scanned from its end,
 * as Redis does; so for BYLEX on members with different scores (which
 * Redis leaves undefined) the answer is Redis's too.
 */
static void zrange_start(struct zcursor *c, unsigned char *e, const struct zrange *q)
{
    c->rev = q->rev;
    c->packed = !entry_is_obj(e);
    if (c->packed) {
        zcursor_at(c, e, q->rev ? zlen(e) - 1 : 0, q->rev);
        struct zpos at;
        while (zcursor_peek(c, &at) && !(q->rev ? in_high(q, &at) : in_low(q, &at)))
            zcursor_next(c, &at.m, &at.n, &at.s);
        return;
    }
    struct zset *z = entry_obj(e);
    struct znode *x = z->header;
    for (int i = z->level - 1; i >= 0; i--) {
        for (struct znode *f; (f = x->level[i].forward);) {
            struct zpos at = {(unsigned char *)znode_member(f, &at.n), 0, f->score};
            if (q->rev ? !in_high(q, &at) : in_low(q, &at))
                break;
            x = f;
        }
    }
    c->node = q->rev ? (x == z->header ? NULL : x) : x->level[0].forward;
}

/* Whether the range can hold anything of this set: its ends against it. */
static bool range_overlaps(unsigned char *e, const struct zrange *q)
{
    struct zcursor c;
    struct zpos first, last;
    zcursor_at(&c, e, 0, false);
    zcursor_peek(&c, &first);
    zcursor_at(&c, e, zlen(e) - 1, false);
    zcursor_peek(&c, &last);
    return !range_empty(q) && in_low(q, &last) && in_high(q, &first);
}

/*
 * BYSCORE and BYLEX: from the start, skip OFFSET members, then take members
 * while they are within the far bound, up to LIMIT. They are gathered
 * first, as the count comes first.
 */
static void zrange_by_value(struct ctx *x, unsigned char *e, const struct zrange *q)
{
    struct zcursor c;
    struct zpos at;
    size_t nout = 0, cap = 0;
    struct zpos *out = NULL;
    bool any = q->offset >= 0 && range_overlaps(e, q);
    if (any) {
        zrange_start(&c, e, q);
        any = zcursor_peek(&c, &at) && (q->rev ? in_low(q, &at) : in_high(q, &at));
    }
    for (long long skip = q->offset; any && skip > 0 && zcursor_next(&c, &at.m, &at.n, &at.s);)
        skip--;
    while (any && (q->limit < 0 || (long long)nout < q->limit) && zcursor_peek(&c, &at) &&
           (q->rev ? in_low(q, &at) : in_high(q, &at))) {
        zcursor_next(&c, &at.m, &at.n, &at.s);
        if (nout == cap) {
            cap = cap ? 2 * cap : 16;
            struct zpos *nb = realloc(out, cap * sizeof *out);
            if (!nb) {
                free(out);
                reply_oom(x);
                return;
            }
            out = nb;
        }
        out[nout++] = at;
    }
    reply_array(x->r, q->withscores ? 2 * nout : nout);
    for (size_t i = 0; i < nout; i++)
        reply_member(x->r, out[i].m, out[i].n, out[i].s, q->withscores);
    free(out);
}

static void zrange_by_rank(struct ctx *x, unsigned char *e, const struct zrange *q)
{
    long long len = (long long)zlen(e), start = q->start, stop = q->stop;
    if (start < 0)
        start += len;
    if (stop < 0)
        stop += len;
    if (start < 0)
        start = 0;
    if (start > stop || start >= len) {
        reply_array(x->r, 0);
        return;
    }
    if (stop >= len)
        stop = len - 1;
    size_t n = (size_t)(stop - start + 1);
    struct zcursor c;
    zcursor_at(&c, e, (size_t)(q->rev ? len - 1 - start : start), q->rev);
    reply_array(x->r, q->withscores ? 2 * n : n);
    unsigned char *m;
    size_t mn;
    double s;
    for (size_t i = 0; i < n && zcursor_next(&c, &m, &mn, &s); i++)
        reply_member(x->r, m, mn, s, q->withscores);
}

/* The range's bounds; false after replying an error. */
static bool zrange_bounds(struct ctx *x, struct zrange *q)
{
    /* With REV, BYSCORE and BYLEX take the upper bound first. */
    const struct resp_arg *lo = &x->argv[2], *hi = &x->argv[3];
    if (q->rev && q->by != BY_RANK) {
        lo = &x->argv[3];
        hi = &x->argv[2];
    }
    if (q->by == BY_RANK)
        return arg_ll_or_reply(x, lo, &q->start) && arg_ll_or_reply(x, hi, &q->stop);
    if (q->by == BY_SCORE && (!parse_score_bound(lo, &q->min) || !parse_score_bound(hi, &q->max))) {
        reply_err(x, "min or max is not a float");
        return false;
    }
    if (q->by == BY_LEX && (!parse_lex_bound(lo, &q->min) || !parse_lex_bound(hi, &q->max))) {
        reply_err(x, "min or max not valid string range item");
        return false;
    }
    return true;
}

/* ZRANGE and its older forms, which fix the kind of range and direction. */
static void zrange_generic(struct ctx *x, int by, bool rev, bool fixed)
{
    struct zrange q = {.by = by, .rev = rev, .fixed = fixed, .limit = -1};
    if (!zrange_options(x, &q) || !zrange_bounds(x, &q))
        return;
    struct kref r;
    if (!open_zset(x, &r, false))
        return;
    if (!r.e)
        reply_array(x->r, 0);
    else if (q.by == BY_RANK)
        zrange_by_rank(x, r.e, &q);
    else
        zrange_by_value(x, r.e, &q);
    store_close(x->st, &r);
}

void cmd_zrange(struct ctx *x)
{
    zrange_generic(x, BY_RANK, false, false);
}

void cmd_zrevrange(struct ctx *x)
{
    zrange_generic(x, BY_RANK, true, true);
}

void cmd_zrangebyscore(struct ctx *x)
{
    zrange_generic(x, BY_SCORE, false, true);
}

void cmd_zrevrangebyscore(struct ctx *x)
{
    zrange_generic(x, BY_SCORE, true, true);
}

void cmd_zpopmin(struct ctx *x)
{
    long long count = 1;
    if (x->argc > 3) {
        reply_err(x, ERR_SYNTAX);
        return;
    }
    if (x->argc == 3 && (!arg_ll(&x->argv[2], &count) || count < 0)) {
        reply_err(x, "value is out of range, must be positive");
        return;
    }
    struct kref r;
    if (!open_zset(x, &r, false))
        return;
    size_t n = r.e ? zlen(r.e) : 0;
    if ((size_t)count < n)
        n = (size_t)count;
    reply_array(x->r, 2 * n);
    for (size_t i = 0; i < n; i++) {
        if (entry_is_obj(r.e)) {
            struct zset *z = entry_obj(r.e);
            struct znode *first = z->header->level[0].forward;
            size_t mn;
            const unsigned char *m = znode_member(first, &mn);
            reply_member(x->r, m, mn, first->score, true);
            zset_delete(z, first);
        } else {
            unsigned char *at = pk_first(entry_payload(r.e)), *m;
            size_t mn;
            double s = packed_score(pk_read(at, &m, &mn));
            reply_member(x->r, m, mn, s, true);
            packed_delete(&r, at);
        }
    }
    if (r.e && zlen(r.e) == 0)
        store_delete(x->st, &r);
    store_close(x->st, &r);
}
