/*
 * Lists: a doubly linked list of nodes, each a gap buffer of packed elements
 * (pack.h) of up to LIST_NODE_MAX bytes, as Redis's quicklist is a list of
 * listpacks. A node keeps its free room on the side it grows from (the
 * front for the head, the back for the tail), so LPUSH and RPUSH write one
 * element and LPOP and RPOP step over one, never moving the rest of the node
 * (a listpack moves everything behind the element it inserts at the front).
 * A "xxx" element takes 5 bytes; a node adds 32 bytes and malloc's 8.
 */
#ifndef EVN_EXAMPLES_LIST_H
#define EVN_EXAMPLES_LIST_H

#include "pack.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIST_NODE_MAX 8192

struct lnode {
    struct lnode *prev, *next;
    uint32_t start, end, cap, count; /* elements in buf[start, end) */
    unsigned char buf[];
};

struct list {
    struct lnode *head, *tail;
    size_t count;
};

struct list_iter {
    struct lnode *node;
    size_t off;
};

struct list *list_new(void);
void list_free(struct list *l);

/* Add an element at the front (LPUSH) or the back; -1 if out of memory. */
int list_push(struct list *l, bool front, const void *v, size_t n);
/* The element at the front or back (the list is not empty); valid until the
 * list next changes. */
unsigned char *list_peek(struct list *l, bool front, size_t *n);
/* Remove the element at the front or the back (the list is not empty). */
void list_drop(struct list *l, bool front);

/* An iterator at index i (0 .. count-1). */
void list_iter_at(struct list *l, size_t i, struct list_iter *it);

/* The iterator's element, then it moves on; false past the end. */
static inline bool list_next(struct list_iter *it, unsigned char **data, size_t *len)
{
    while (it->node && it->off >= it->node->end) {
        it->node = it->node->next;
        if (it->node)
            it->off = it->node->start;
    }
    if (!it->node)
        return false;
    unsigned char *p = it->node->buf + it->off;
    it->off = (size_t)(pk_read(p, data, len) - it->node->buf);
    return true;
}

/*
 * The packed elements from the iterator to the end of its node, [*p, *end),
 * for a caller that walks many (LRANGE); the iterator moves on to the next
 * node. False past the last node.
 */
static inline bool list_run(struct list_iter *it, unsigned char **p, unsigned char **end)
{
    while (it->node && it->off >= it->node->end) {
        it->node = it->node->next;
        if (it->node)
            it->off = it->node->start;
    }
    if (!it->node)
        return false;
    *p = it->node->buf + it->off;
    *end = it->node->buf + it->node->end;
    it->off = it->node->end;
    return true;
}

/* Bytes the list takes, nodes and all (for MEMORY-like estimates). */
size_t list_bytes(const struct list *l);

#endif
