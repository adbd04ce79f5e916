/*
 * Large sorted sets: a skip list ordered by (score, member), whose links
 * carry spans so that a rank is found in O(log n) (ZRANK, ZRANGE by index),
 * and a hash table (table.h) from member to node (ZSCORE, ZADD's lookup).
 *
 * A node and its member are one allocation: the levels, then the member as
 * an item (item.h) whose flags byte holds the node's level count, so that
 * the table, which holds items, leads back to the node. Small sorted sets
 * are packed blobs instead (see cmd_zset.c).
 */
#ifndef EVN_EXAMPLES_ZSET_H
#define EVN_EXAMPLES_ZSET_H

#include "table.h"

#include <stddef.h>

#define ZSET_MAXLEVEL 32

struct znode {
    double score;
    struct znode *backward;
    int nlevel;
    struct zlevel {
        struct znode *forward;
        size_t span;
    } level[];
};

struct zset {
    struct table dict; /* member items, inside their nodes */
    struct znode *header, *tail;
    size_t length;
    int level;
};

struct zset *zset_new(void);
void zset_free(struct zset *z);

/* The node of a member, or NULL. */
struct znode *zset_find(struct zset *z, const void *m, size_t n);
/* Add a member that is not there; -1 if out of memory. */
int zset_add(struct zset *z, double score, const void *m, size_t n);
/* Give a node a new score, moving it if its place changes. */
void zset_update(struct zset *z, struct znode *x, double score);
/* Remove a node and free it. */
void zset_delete(struct zset *z, struct znode *x);
/* A node's rank, 0 for the lowest. */
size_t zset_rank(struct zset *z, struct znode *x);
/* The node of rank r (0 .. length-1). */
struct znode *zset_at(struct zset *z, size_t r);
/* A node's member. */
const unsigned char *znode_member(const struct znode *x, size_t *n);

/* Order of (score, member) pairs: negative, 0 or positive. */
int zset_cmp(double s1, const void *m1, size_t n1, double s2, const void *m2, size_t n2);

#endif
