/*
 * The key space: STORE_SHARDS chained hash tables, each with its own mutex
 * (see store.h). A key and its value live in one allocation with the entry,
 * so setting a new key allocates once and overwriting a key with a value of
 * about the same size allocates nothing.
 */
#include "store.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct entry {
    struct entry *next;
    uint64_t hash;
    int64_t expire_ms; /* 0: never */
    size_t klen, vlen, vcap;
    char data[]; /* the key, then room for vcap bytes of value */
};

struct shard {
    pthread_mutex_t lock;
    struct entry **buckets; /* a power of two of them, or none yet */
    size_t nbuckets;
    size_t count;
    size_t nvolatile; /* entries with an expiry time */
    size_t sweep;     /* the next bucket active expiry looks at */
} __attribute__((aligned(64)));

struct store {
    struct shard shards[STORE_SHARDS];
    uint64_t seed;
    bool locking;
};

/* Integer values are stored as their decimal text with room to grow. */
#define INT_ROOM 24

static char *value_of(struct entry *e)
{
    return e->data + e->klen;
}

int64_t store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The finaliser of a 64-bit mixer: every input bit affects every output bit. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

/* A seeded hash, so that clients cannot choose keys that all collide. */
static uint64_t hash_key(const struct store *s, const char *k, size_t n)
{
    uint64_t h = s->seed ^ (n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, k, 8);
        h = (h ^ mix(w)) * 0x9e3779b97f4a7c15ULL;
        k += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, k, n);
    return mix(h ^ w ^ ((uint64_t)n << 56));
}

static struct shard *shard_of(struct store *s, uint64_t h)
{
    return &s->shards[h >> 58];
}

static void lock(struct store *s, struct shard *sh)
{
    if (s->locking)
        pthread_mutex_lock(&sh->lock);
}

static void unlock(struct store *s, struct shard *sh)
{
    if (s->locking)
        pthread_mutex_unlock(&sh->lock);
}

/* Lock every shard in mask, lowest first: one order for all, no deadlock. */
static void lock_mask(struct store *s, uint64_t mask)
{
    for (int i = 0; i < STORE_SHARDS; i++) {
        if (mask >> i & 1)
            lock(s, &s->shards[i]);
    }
}

static void unlock_mask(struct store *s, uint64_t mask)
{
    for (int i = 0; i < STORE_SHARDS; i++) {
        if (mask >> i & 1)
            unlock(s, &s->shards[i]);
    }
}

struct store *store_new(bool locking)
{
    /* aligned_alloc: the shards are aligned to cache lines, beyond malloc's promise. */
    struct store *s = aligned_alloc(_Alignof(struct store), sizeof *s);
    if (!s)
        return NULL;
    memset(s, 0, sizeof *s);
    s->locking = locking;
    if (getrandom(&s->seed, sizeof s->seed, 0) != sizeof s->seed)
        s->seed = (uint64_t)store_now_ms() * 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < STORE_SHARDS; i++)
        pthread_mutex_init(&s->shards[i].lock, NULL);
    return s;
}

static void shard_clear(struct shard *sh)
{
    for (size_t b = 0; b < sh->nbuckets; b++) {
        struct entry *e = sh->buckets[b];
        while (e) {
            struct entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(sh->buckets);
    sh->buckets = NULL;
    sh->nbuckets = 0;
    sh->count = 0;
    sh->nvolatile = 0;
    sh->sweep = 0;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    for (int i = 0; i < STORE_SHARDS; i++) {
        shard_clear(&s->shards[i]);
        pthread_mutex_destroy(&s->shards[i].lock);
    }
    free(s);
}

static bool expired(const struct entry *e, int64_t *now)
{
    if (e->expire_ms == 0)
        return false;
    if (*now == 0)
        *now = store_now_ms();
    /* As in Redis, a key lives through the millisecond it expires at. */
    return *now > e->expire_ms;
}

static void unlink_free(struct shard *sh, struct entry **link)
{
    struct entry *e = *link;
    *link = e->next;
    sh->count--;
    if (e->expire_ms)
        sh->nvolatile--;
    free(e);
}

/*
 * The live entry for the key, with *linkp set to the pointer that links it
 * in; NULL if absent. An expired entry found on the way is freed.
 */
static struct entry *lookup(struct shard *sh, uint64_t h, const char *k, size_t klen,
                            struct entry ***linkp)
{
    if (sh->nbuckets == 0)
        return NULL;
    struct entry **link = &sh->buckets[h & (sh->nbuckets - 1)];
    for (struct entry *e = *link; e; link = &e->next, e = *link) {
        if (e->hash != h || e->klen != klen || memcmp(e->data, k, klen) != 0)
            continue;
        int64_t now = 0;
        if (expired(e, &now)) {
            unlink_free(sh, link);
            return NULL;
        }
        if (linkp)
            *linkp = link;
        return e;
    }
    return NULL;
}

static void grow(struct shard *sh)
{
    size_t n = sh->nbuckets ? sh->nbuckets * 2 : 16;
    struct entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    for (size_t b = 0; b < sh->nbuckets; b++) {
        struct entry *e = sh->buckets[b];
        while (e) {
            struct entry *next = e->next;
            struct entry **slot = &nb[e->hash & (n - 1)];
            e->next = *slot;
            *slot = e;
            e = next;
        }
    }
    free(sh->buckets);
    sh->buckets = nb;
    sh->nbuckets = n;
}

static struct entry *entry_new(uint64_t h, const char *k, size_t klen, const char *v, size_t vlen,
                               size_t vcap, int64_t expire_ms)
{
    if (klen > SIZE_MAX / 2 || vcap > SIZE_MAX / 2 - klen - sizeof(struct entry))
        return NULL;
    struct entry *e = malloc(sizeof *e + klen + vcap);
    if (!e)
        return NULL;
    e->next = NULL;
    e->hash = h;
    e->expire_ms = expire_ms;
    e->klen = klen;
    e->vlen = vlen;
    e->vcap = vcap;
    memcpy(e->data, k, klen);
    memcpy(e->data + klen, v, vlen);
    return e;
}

static void insert(struct shard *sh, struct entry *e)
{
    if (sh->count >= sh->nbuckets)
        grow(sh);
    struct entry **slot = &sh->buckets[e->hash & (sh->nbuckets - 1)];
    e->next = *slot;
    *slot = e;
    sh->count++;
    if (e->expire_ms)
        sh->nvolatile++;
}

static void set_expire(struct shard *sh, struct entry *e, int64_t expire_ms)
{
    if (e->expire_ms && !expire_ms)
        sh->nvolatile--;
    else if (!e->expire_ms && expire_ms)
        sh->nvolatile++;
    e->expire_ms = expire_ms;
}

/* Store v under the key: in place when the entry has room, else anew. */
static int put(struct shard *sh, uint64_t h, const char *k, size_t klen, struct entry *e,
               struct entry **link, const char *v, size_t vlen, size_t vcap, int64_t expire_ms)
{
    if (e && e->vcap >= vlen && e->vcap / 2 <= vcap + 64) {
        memmove(value_of(e), v, vlen);
        e->vlen = vlen;
        set_expire(sh, e, expire_ms);
        return 0;
    }
    struct entry *ne = entry_new(h, k, klen, v, vlen, vcap, expire_ms);
    if (!ne)
        return -1;
    if (e) {
        ne->next = e->next;
        *link = ne;
        if (e->expire_ms)
            sh->nvolatile--;
        if (expire_ms)
            sh->nvolatile++;
        free(e);
    } else {
        insert(sh, ne);
    }
    return 0;
}

static int set_locked(struct shard *sh, uint64_t h, const char *k, size_t klen, const char *v,
                      size_t vlen, int64_t expire_ms, int flags, store_emit emit, void *arg,
                      bool *had_old)
{
    struct entry **link = NULL;
    struct entry *e = lookup(sh, h, k, klen, &link);
    if (had_old)
        *had_old = e != NULL;
    if ((flags & STORE_GET) && e)
        emit(arg, value_of(e), e->vlen);
    if (((flags & STORE_NX) && e) || ((flags & STORE_XX) && !e))
        return 0;
    if ((flags & STORE_KEEPTTL) && e)
        expire_ms = e->expire_ms;
    return put(sh, h, k, klen, e, link, v, vlen, vlen, expire_ms) < 0 ? -1 : 1;
}

int store_set(struct store *s, const char *k, size_t klen, const char *v, size_t vlen,
              int64_t expire_ms, int flags, store_emit emit, void *arg, bool *had_old)
{
    uint64_t h = hash_key(s, k, klen);
    struct shard *sh = shard_of(s, h);
    lock(s, sh);
    int rc = set_locked(sh, h, k, klen, v, vlen, expire_ms, flags, emit, arg, had_old);
    unlock(s, sh);
    return rc;
}

/* The shards that the keys keys[0], keys[stride], ... (n of them) live in. */
static uint64_t mask_of(struct store *s, const struct resp_arg *keys, size_t n, size_t stride)
{
    uint64_t mask = 0;
    for (size_t i = 0; i < n; i++)
        mask |= (uint64_t)1 << (hash_key(s, keys[i * stride].ptr, keys[i * stride].len) >> 58);
    return mask;
}

int store_mset(struct store *s, const struct resp_arg *kv, size_t npairs)
{
    uint64_t mask = mask_of(s, kv, npairs, 2);
    int rc = 0;
    lock_mask(s, mask);
    for (size_t i = 0; i < npairs && rc == 0; i++) {
        const struct resp_arg *k = &kv[2 * i], *v = &kv[2 * i + 1];
        uint64_t h = hash_key(s, k->ptr, k->len);
        if (set_locked(shard_of(s, h), h, k->ptr, k->len, v->ptr, v->len, 0, 0, NULL, NULL, NULL) <
            0)
            rc = -1;
    }
    unlock_mask(s, mask);
    return rc;
}

void store_mget(struct store *s, const struct resp_arg *keys, size_t n, store_emit emit,
                void (*missing)(void *arg), void *arg)
{
    uint64_t mask = mask_of(s, keys, n, 1);
    lock_mask(s, mask);
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hash_key(s, keys[i].ptr, keys[i].len);
        struct entry *e = lookup(shard_of(s, h), h, keys[i].ptr, keys[i].len, NULL);
        if (e)
            emit(arg, value_of(e), e->vlen);
        else
            missing(arg);
    }
    unlock_mask(s, mask);
}

bool store_get(struct store *s, const char *k, size_t klen, store_emit emit, void *arg)
{
    uint64_t h = hash_key(s, k, klen);
    struct shard *sh = shard_of(s, h);
    lock(s, sh);
    struct entry *e = lookup(sh, h, k, klen, NULL);
    if (e)
        emit(arg, value_of(e), e->vlen);
    unlock(s, sh);
    return e != NULL;
}

int store_del(struct store *s, const char *k, size_t klen)
{
    uint64_t h = hash_key(s, k, klen);
    struct shard *sh = shard_of(s, h);
    struct entry **link;
    lock(s, sh);
    struct entry *e = lookup(sh, h, k, klen, &link);
    if (e)
        unlink_free(sh, link);
    unlock(s, sh);
    return e != NULL;
}

int store_exists(struct store *s, const char *k, size_t klen)
{
    uint64_t h = hash_key(s, k, klen);
    struct shard *sh = shard_of(s, h);
    lock(s, sh);
    struct entry *e = lookup(sh, h, k, klen, NULL);
    unlock(s, sh);
    return e != NULL;
}

enum store_incr_result store_incrby(struct store *s, const char *k, size_t klen, long long delta,
                                    long long *result)
{
    uint64_t h = hash_key(s, k, klen);
    struct shard *sh = shard_of(s, h);
    struct entry **link = NULL;
    enum store_incr_result rc = STORE_INCR_OK;
    long long v = 0;
    lock(s, sh);
    struct entry *e = lookup(sh, h, k, klen, &link);
    if (e && !resp_strtoll(value_of(e), e->vlen, &v)) {
        rc = STORE_NOT_INT;
    } else if ((delta < 0 && v < 0 && delta < LLONG_MIN - v) ||
               (delta > 0 && v > 0 && delta > LLONG_MAX - v)) {
        rc = STORE_OVERFLOW;
    } else {
        char buf[INT_ROOM];
        v += delta;
        int n = snprintf(buf, sizeof buf, "%lld", v);
        /* INCR keeps the key's expiry time, as in Redis. */
        if (put(sh, h, k, klen, e, link, buf, (size_t)n, INT_ROOM, e ? e->expire_ms : 0) < 0)
            rc = STORE_NOMEM;
        *result = v;
    }
    unlock(s, sh);
    return rc;
}

int64_t store_pttl(struct store *s, const char *k, size_t klen)
{
    uint64_t h = hash_key(s, k, klen);
    struct shard *sh = shard_of(s, h);
    int64_t ttl = -2;
    lock(s, sh);
    struct entry *e = lookup(sh, h, k, klen, NULL);
    if (e && e->expire_ms == 0) {
        ttl = -1;
    } else if (e) {
        ttl = e->expire_ms - store_now_ms();
        if (ttl < 0)
            ttl = 0;
    }
    unlock(s, sh);
    return ttl;
}

size_t store_size(struct store *s)
{
    size_t n = 0;
    for (int i = 0; i < STORE_SHARDS; i++) {
        lock(s, &s->shards[i]);
        n += s->shards[i].count;
        unlock(s, &s->shards[i]);
    }
    return n;
}

void store_flush(struct store *s)
{
    for (int i = 0; i < STORE_SHARDS; i++) {
        lock(s, &s->shards[i]);
        shard_clear(&s->shards[i]);
        unlock(s, &s->shards[i]);
    }
}

size_t store_expire_some(struct store *s, size_t min_buckets, size_t max_buckets)
{
    size_t freed = 0;
    int64_t now = store_now_ms();
    for (int i = 0; i < STORE_SHARDS; i++) {
        struct shard *sh = &s->shards[i];
        lock(s, sh);
        /* A tenth of the shard, within bounds: ten runs sweep a shard of any
         * size up to 10 * max_buckets buckets, and none holds the lock long. */
        size_t budget = sh->nbuckets / 10;
        budget = budget < min_buckets ? min_buckets : budget > max_buckets ? max_buckets : budget;
        for (size_t n = 0; sh->nvolatile && n < budget && n < sh->nbuckets; n++) {
            struct entry **link = &sh->buckets[sh->sweep++ & (sh->nbuckets - 1)];
            while (*link) {
                if ((*link)->expire_ms && now > (*link)->expire_ms) {
                    unlink_free(sh, link);
                    freed++;
                } else {
                    link = &(*link)->next;
                }
            }
        }
        unlock(s, sh);
    }
    return freed;
}
