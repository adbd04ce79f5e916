#include "zset.h"
#include "item.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

static unsigned char *node_item(const struct znode *x)
{
    return (unsigned char *)&x->level[x->nlevel];
}

static struct znode *node_of(const unsigned char *item)
{
    return (struct znode *)(item - offsetof(struct znode, level) -
                            (size_t)item[0] * sizeof(struct zlevel));
}

const unsigned char *znode_member(const struct znode *x, size_t *n)
{
    return item_key(node_item(x), n);
}

int zset_cmp(double s1, const void *m1, size_t n1, double s2, const void *m2, size_t n2)
{
    if (s1 != s2)
        return s1 < s2 ? -1 : 1;
    int c = memcmp(m1, m2, n1 < n2 ? n1 : n2);
    if (c)
        return c;
    return n1 < n2 ? -1 : n1 > n2;
}

static struct znode *node_new(int nlevel, double score, const void *m, size_t n)
{
    struct znode *x = malloc(sizeof *x + (size_t)nlevel * sizeof(struct zlevel) + item_key_size(n));
    if (!x)
        return NULL;
    x->score = score;
    x->backward = NULL;
    x->nlevel = nlevel;
    item_put_key(node_item(x), (unsigned)nlevel, m, n);
    return x;
}

struct zset *zset_new(void)
{
    struct zset *z = malloc(sizeof *z);
    if (!z)
        return NULL;
    z->header = node_new(ZSET_MAXLEVEL, 0, "", 0);
    if (!z->header) {
        free(z);
        return NULL;
    }
    for (int i = 0; i < ZSET_MAXLEVEL; i++) {
        z->header->level[i].forward = NULL;
        z->header->level[i].span = 0;
    }
    table_init(&z->dict, false);
    z->tail = NULL;
    z->length = 0;
    z->level = 1;
    return z;
}

void zset_free(struct zset *z)
{
    if (!z)
        return;
    struct znode *x = z->header;
    while (x) {
        struct znode *next = x->level[0].forward;
        free(x);
        x = next;
    }
    table_free(&z->dict);
    free(z);
}

struct znode *zset_find(struct zset *z, const void *m, size_t n)
{
    size_t slot = table_find(&z->dict, hash_bytes(m, n), m, n);
    return slot == TABLE_NONE ? NULL : node_of(table_get(&z->dict, slot));
}

static int random_level(void)
{
    /* Each level with probability 1/4, as Redis's skip list. */
    int level = 1;
    uint64_t r = store_random();
    while ((r & 3) == 0 && level < ZSET_MAXLEVEL) {
        level++;
        r >>= 2;
    }
    return level;
}

/* Before x goes after the node y: compare (score, member). */
static bool before(const struct znode *y, double score, const void *m, size_t n)
{
    size_t yn;
    const unsigned char *ym = znode_member(y, &yn);
    return zset_cmp(y->score, ym, yn, score, m, n) < 0;
}

/* The last node before (score, m) at each level, and its rank. */
static void path(struct zset *z, double score, const void *m, size_t n, struct znode **update,
                 size_t *rank)
{
    struct znode *x = z->header;
    for (int i = z->level - 1; i >= 0; i--) {
        rank[i] = i == z->level - 1 ? 0 : rank[i + 1];
        while (x->level[i].forward && before(x->level[i].forward, score, m, n)) {
            rank[i] += x->level[i].span;
            x = x->level[i].forward;
        }
        update[i] = x;
    }
}

static void link_node(struct zset *z, struct znode *x)
{
    struct znode *update[ZSET_MAXLEVEL];
    size_t rank[ZSET_MAXLEVEL], n;
    const unsigned char *m = znode_member(x, &n);
    path(z, x->score, m, n, update, rank);
    int level = x->nlevel;
    if (level > z->level) {
        for (int i = z->level; i < level; i++) {
            rank[i] = 0;
            update[i] = z->header;
            update[i]->level[i].span = z->length;
        }
        z->level = level;
    }
    for (int i = 0; i < level; i++) {
        x->level[i].forward = update[i]->level[i].forward;
        update[i]->level[i].forward = x;
        x->level[i].span = update[i]->level[i].span - (rank[0] - rank[i]);
        update[i]->level[i].span = rank[0] - rank[i] + 1;
    }
    for (int i = level; i < z->level; i++)
        update[i]->level[i].span++;
    x->backward = update[0] == z->header ? NULL : update[0];
    if (x->level[0].forward)
        x->level[0].forward->backward = x;
    else
        z->tail = x;
    z->length++;
}

static void unlink_node(struct zset *z, struct znode *x)
{
    struct znode *update[ZSET_MAXLEVEL];
    size_t rank[ZSET_MAXLEVEL], n;
    const unsigned char *m = znode_member(x, &n);
    path(z, x->score, m, n, update, rank);
    for (int i = 0; i < z->level; i++) {
        if (update[i]->level[i].forward == x) {
            update[i]->level[i].span += x->level[i].span - 1;
            update[i]->level[i].forward = x->level[i].forward;
        } else {
            update[i]->level[i].span--;
        }
    }
    if (x->level[0].forward)
        x->level[0].forward->backward = x->backward;
    else
        z->tail = x->backward;
    while (z->level > 1 && !z->header->level[z->level - 1].forward)
        z->level--;
    z->length--;
}

int zset_add(struct zset *z, double score, const void *m, size_t n)
{
    struct znode *x = node_new(random_level(), score, m, n);
    if (!x)
        return -1;
    if (table_insert(&z->dict, hash_bytes(m, n), node_item(x)) == TABLE_NONE) {
        free(x);
        return -1;
    }
    link_node(z, x);
    return 0;
}

void zset_update(struct zset *z, struct znode *x, double score)
{
    /* Still in order with its neighbours: the score changes in place. */
    struct znode *prev = x->backward, *next = x->level[0].forward;
    size_t n;
    const unsigned char *m = znode_member(x, &n);
    if ((!prev || before(prev, score, m, n)) && (!next || !before(next, score, m, n))) {
        x->score = score;
        return;
    }
    unlink_node(z, x);
    x->score = score;
    link_node(z, x);
}

void zset_delete(struct zset *z, struct znode *x)
{
    size_t n;
    const unsigned char *m = znode_member(x, &n);
    table_remove(&z->dict, table_find(&z->dict, hash_bytes(m, n), m, n));
    unlink_node(z, x);
    free(x);
    table_shrink(&z->dict);
}

size_t zset_rank(struct zset *z, struct znode *target)
{
    size_t n, rank = 0;
    const unsigned char *m = znode_member(target, &n);
    struct znode *x = z->header;
    for (int i = z->level - 1; i >= 0; i--) {
        while (x->level[i].forward && x->level[i].forward != target &&
               before(x->level[i].forward, target->score, m, n)) {
            rank += x->level[i].span;
            x = x->level[i].forward;
        }
        if (x->level[i].forward == target)
            return rank + x->level[i].span - 1;
    }
    return rank;
}

struct znode *zset_at(struct zset *z, size_t r)
{
    /* Ranks count from 1 along the spans. */
    size_t want = r + 1, traversed = 0;
    struct znode *x = z->header;
    for (int i = z->level - 1; i >= 0; i--) {
        while (x->level[i].forward && traversed + x->level[i].span <= want) {
            traversed += x->level[i].span;
            x = x->level[i].forward;
        }
        if (traversed == want)
            return x;
    }
    return NULL;
}
