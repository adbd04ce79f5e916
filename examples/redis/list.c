#include "list.h"

#include <stdlib.h>
#include <string.h>

/* The first node of a list starts this small and doubles as it fills. */
#define NODE_FIRST 48

struct list *list_new(void)
{
    return calloc(1, sizeof(struct list));
}

void list_free(struct list *l)
{
    if (!l)
        return;
    struct lnode *n = l->head;
    while (n) {
        struct lnode *next = n->next;
        free(n);
        n = next;
    }
    free(l);
}

/* n was reallocated to m: its neighbours and the list point to m now. */
static void relink(struct list *l, struct lnode *m)
{
    if (m->prev)
        m->prev->next = m;
    else
        l->head = m;
    if (m->next)
        m->next->prev = m;
    else
        l->tail = m;
}

/*
 * Make room for sz bytes on one side of *np, by moving its elements to the
 * other side or growing it (up to LIST_NODE_MAX). False when the node is
 * full: a new node is needed.
 */
static bool make_room(struct list *l, struct lnode **np, bool front, size_t sz)
{
    struct lnode *n = *np;
    if (front ? n->start >= sz : n->cap - n->end >= sz)
        return true;
    size_t used = n->end - n->start;
    if (used + sz > LIST_NODE_MAX)
        return false;
    size_t cap = n->cap;
    while (cap < used + sz)
        cap *= 2;
    if (cap > LIST_NODE_MAX)
        cap = LIST_NODE_MAX;
    if (cap != n->cap) {
        struct lnode *m = realloc(n, sizeof *n + cap);
        if (!m)
            return false;
        relink(l, m);
        n = m;
        n->cap = (uint32_t)cap;
    }
    /* All the free room goes to the side the node grows from. */
    size_t start = front ? cap - used : 0;
    memmove(n->buf + start, n->buf + n->start, used);
    n->start = (uint32_t)start;
    n->end = (uint32_t)(start + used);
    *np = n;
    return true;
}

static struct lnode *node_add(struct list *l, bool front, size_t sz)
{
    /* A list's first node starts small; once one node has filled, more
     * come whole. An element larger than a node gets one of its own size. */
    size_t cap = l->head ? LIST_NODE_MAX : NODE_FIRST;
    if (cap < sz)
        cap = sz;
    struct lnode *n = malloc(sizeof *n + cap);
    if (!n)
        return NULL;
    n->cap = (uint32_t)cap;
    n->start = n->end = front ? (uint32_t)cap : 0;
    n->count = 0;
    if (front) {
        n->prev = NULL;
        n->next = l->head;
        if (l->head)
            l->head->prev = n;
        else
            l->tail = n;
        l->head = n;
    } else {
        n->next = NULL;
        n->prev = l->tail;
        if (l->tail)
            l->tail->next = n;
        else
            l->head = n;
        l->tail = n;
    }
    return n;
}

int list_push(struct list *l, bool front, const void *v, size_t len)
{
    size_t sz = pk_elem_size(len);
    if (sz > UINT32_MAX / 2)
        return -1;
    struct lnode *n = front ? l->head : l->tail;
    if (!n || !make_room(l, &n, front, sz)) {
        n = node_add(l, front, sz);
        if (!n)
            return -1;
    }
    if (front) {
        n->start -= (uint32_t)sz;
        pk_write(n->buf + n->start, v, len);
    } else {
        pk_write(n->buf + n->end, v, len);
        n->end += (uint32_t)sz;
    }
    n->count++;
    l->count++;
    return 0;
}

unsigned char *list_peek(struct list *l, bool front, size_t *len)
{
    struct lnode *n = front ? l->head : l->tail;
    unsigned char *p = front ? n->buf + n->start : pk_prev(n->buf + n->end), *data;
    pk_read(p, &data, len);
    return data;
}

static void node_unlink(struct list *l, struct lnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    free(n);
}

void list_drop(struct list *l, bool front)
{
    struct lnode *n = front ? l->head : l->tail;
    if (front) {
        unsigned char *data;
        size_t len;
        n->start = (uint32_t)(pk_read(n->buf + n->start, &data, &len) - n->buf);
    } else {
        n->end = (uint32_t)(pk_prev(n->buf + n->end) - n->buf);
    }
    n->count--;
    l->count--;
    if (n->count == 0)
        node_unlink(l, n);
}

void list_iter_at(struct list *l, size_t i, struct list_iter *it)
{
    struct lnode *n;
    if (i < l->count / 2) {
        for (n = l->head; i >= n->count; n = n->next)
            i -= n->count;
        unsigned char *p = n->buf + n->start, *data;
        size_t len;
        while (i--)
            p = pk_read(p, &data, &len);
        it->off = (size_t)(p - n->buf);
    } else {
        /* Closer to the back: count from there. */
        size_t j = l->count - 1 - i;
        for (n = l->tail; j >= n->count; n = n->prev)
            j -= n->count;
        unsigned char *p = pk_prev(n->buf + n->end);
        while (j--)
            p = pk_prev(p);
        it->off = (size_t)(p - n->buf);
    }
    it->node = n;
}

size_t list_bytes(const struct list *l)
{
    size_t n = sizeof *l;
    for (const struct lnode *x = l->head; x; x = x->next)
        n += sizeof *x + x->cap;
    return n;
}
