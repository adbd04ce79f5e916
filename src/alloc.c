/*
 * One path for memory: every allocation evn makes goes through the four
 * functions here, which evn_set_allocator can point elsewhere. They may only
 * change while no server exists, since a server's memory must go back to the
 * functions it came from; the lock orders the change before the next
 * server's first allocation on whatever thread makes it.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct evn__allocator evn__alloc = {malloc, realloc, calloc, free};

static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static long live_servers;

int evn_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                      void *(*calloc_fn)(size_t, size_t), void (*free_fn)(void *))
{
    int given = !!malloc_fn + !!realloc_fn + !!calloc_fn + !!free_fn;
    if (given != 0 && given != 4)
        return -EINVAL;
    pthread_mutex_lock(&alloc_lock);
    int rc = live_servers ? -EBUSY : 0;
    if (rc == 0 && given)
        evn__alloc = (struct evn__allocator){malloc_fn, realloc_fn, calloc_fn, free_fn};
    else if (rc == 0)
        evn__alloc = (struct evn__allocator){malloc, realloc, calloc, free};
    pthread_mutex_unlock(&alloc_lock);
    return rc;
}

void evn__servers_add(int delta)
{
    pthread_mutex_lock(&alloc_lock);
    live_servers += delta;
    pthread_mutex_unlock(&alloc_lock);
}
