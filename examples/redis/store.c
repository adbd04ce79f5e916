/*
 * The key space: STORE_SHARDS open-addressing tables, each with its own
 * mutex (see store.h), and the expiry of keys, lazy and active.
 */
#include "store.h"
#include "list.h"
#include "pack.h"
#include "zset.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include "../compat.h"
#else
#include <sys/random.h>
#endif
#include <time.h>

struct shard {
    pthread_mutex_t lock;
    struct table t;
    uint64_t expired; /* keys freed because they expired */
    size_t sweep;     /* the next slot active expiry looks at */
} __attribute__((aligned(64)));

struct store {
    struct shard shards[STORE_SHARDS];
    bool locking;
    int expire_shard;        /* where the next active expiry run starts */
    _Atomic int64_t avg_ttl; /* of the keys active expiry sampled lately */
};

int64_t store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t store_random(void)
{
    /* xorshift64*, one state per thread, seeded from its address and the clock. */
    static _Thread_local uint64_t x;
    if (!x)
        x = ((uint64_t)(uintptr_t)&x ^ (uint64_t)mono_us() * 0x9e3779b97f4a7c15ULL) | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 0x2545f4914f6cdd1dULL;
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

struct store *store_new(bool locking)
{
    /* aligned_alloc: the shards are aligned to cache lines, beyond malloc's promise. */
    struct store *s = aligned_alloc(_Alignof(struct store), sizeof *s);
    if (!s)
        return NULL;
    memset(s, 0, sizeof *s);
    s->locking = locking;
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)mono_us() * 0x9e3779b97f4a7c15ULL;
    hash_seed_set(seed);
    for (int i = 0; i < STORE_SHARDS; i++) {
        pthread_mutex_init(&s->shards[i].lock, NULL);
        table_init(&s->shards[i].t, true);
    }
    return s;
}

static void shard_clear(struct shard *sh)
{
    struct table *t = &sh->t;
    for (size_t i = table_next(t, 0); i != TABLE_NONE; i = table_next(t, i + 1))
        entry_free(table_get(t, i));
    table_free(t);
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
#ifdef _WIN32
    _aligned_free(s);
#else
    free(s);
#endif
}

unsigned char *entry_new(unsigned flags, const void *k, size_t klen, int64_t expire_ms,
                         size_t payload)
{
    if (klen > SIZE_MAX / 4 || payload > SIZE_MAX / 4)
        return NULL;
    if (expire_ms)
        flags |= ITEM_VOLATILE;
    unsigned char *e = malloc(item_key_size(klen) + (expire_ms ? 8 : 0) + payload);
    if (!e)
        return NULL;
    unsigned char *p = item_put_key(e, flags, k, klen);
    if (expire_ms)
        put_u64(p, (uint64_t)expire_ms);
    return e;
}

unsigned char *entry_new_string(const void *k, size_t klen, const void *v, size_t vlen,
                                int64_t expire_ms)
{
    unsigned char *e = entry_new(T_STRING, k, klen, expire_ms, varint_len(vlen) + vlen);
    if (e) {
        unsigned char *p = entry_payload(e);
        p += varint_put(p, vlen);
        memcpy(p, v, vlen);
    }
    return e;
}

void entry_free(unsigned char *e)
{
    if (entry_is_obj(e)) {
        void *o = entry_obj(e);
        switch (entry_type(e)) {
        case T_LIST:
            list_free(o);
            break;
        case T_HASH:
        case T_SET:
            table_destroy_items(o);
            free(o);
            break;
        case T_ZSET:
            zset_free(o);
            break;
        }
    }
    free(e);
}

size_t entry_size(unsigned char *e)
{
    unsigned char *p = entry_payload(e);
    if (entry_is_obj(e))
        return (size_t)(p - e) + sizeof(void *);
    if (entry_type(e) == T_STRING) {
        size_t n;
        unsigned char *v = entry_string(e, &n);
        return (size_t)(v - e) + n;
    }
    return (size_t)(p - e) + pk_bytes(p);
}

static bool expired(const unsigned char *e, int64_t now)
{
    /* As in Redis, a key lives through the millisecond it expires at. */
    return now > entry_expire(e);
}

static void remove_expired(struct shard *sh, size_t slot)
{
    unsigned char *e = table_get(&sh->t, slot);
    table_remove(&sh->t, slot);
    entry_free(e);
    sh->expired++;
}

/* store_find once the key's hash and shard are in r. */
static void find_hashed(const void *k, size_t klen, struct kref *r)
{
    r->e = NULL;
    r->slot = table_find(&r->sh->t, r->hash, k, klen);
    if (r->slot == TABLE_NONE)
        return;
    unsigned char *e = table_get(&r->sh->t, r->slot);
    if ((e[0] & ITEM_VOLATILE) && expired(e, store_now_ms())) {
        remove_expired(r->sh, r->slot);
        r->slot = TABLE_NONE;
        return;
    }
    r->e = e;
}

void store_find(struct store *s, const void *k, size_t klen, struct kref *r)
{
    r->hash = hash_bytes(k, klen);
    r->sh = shard_of(s, r->hash);
    find_hashed(k, klen, r);
}

void store_open(struct store *s, const void *k, size_t klen, struct kref *r)
{
    r->hash = hash_bytes(k, klen);
    r->sh = shard_of(s, r->hash);
    lock(s, r->sh);
    find_hashed(k, klen, r);
}

void store_close(struct store *s, struct kref *r)
{
    struct table *t = &r->sh->t;
    /* Only a table that deletions left mostly empty shrinks. */
    if (t->count * 16 < table_slots(t))
        table_shrink(t);
    unlock(s, r->sh);
}

uint64_t store_lock_keys(struct store *s, const struct resp_arg *keys, size_t n, size_t stride)
{
    uint64_t mask = 0;
    for (size_t i = 0; i < n; i++) {
        const struct resp_arg *k = &keys[i * stride];
        mask |= (uint64_t)1 << (hash_bytes(k->ptr, k->len) >> 58);
    }
    for (int i = 0; i < STORE_SHARDS; i++) {
        if (mask >> i & 1)
            lock(s, &s->shards[i]);
    }
    return mask;
}

void store_tidy(struct store *s, uint64_t mask)
{
    for (int i = 0; i < STORE_SHARDS; i++) {
        if (mask >> i & 1)
            table_shrink(&s->shards[i].t);
    }
}

void store_unlock_keys(struct store *s, uint64_t mask)
{
    store_tidy(s, mask);
    for (int i = 0; i < STORE_SHARDS; i++) {
        if (mask >> i & 1)
            unlock(s, &s->shards[i]);
    }
}

int store_put(struct store *s, struct kref *r, unsigned char *e)
{
    (void)s;
    if (r->e) {
        unsigned char *old = r->e;
        table_set(&r->sh->t, r->slot, e);
        table_mark_volatile(&r->sh->t, r->slot, e[0] & ITEM_VOLATILE);
        entry_free(old);
        r->e = e;
        return 0;
    }
    size_t slot = table_insert(&r->sh->t, r->hash, e);
    if (slot == TABLE_NONE) {
        entry_free(e);
        return -1;
    }
    r->slot = slot;
    r->e = e;
    return 0;
}

int store_put_table(struct store *s, struct kref *r, unsigned type, struct table *t)
{
    size_t klen;
    const unsigned char *k = item_key(r->e, &klen);
    unsigned char *e = entry_new(type | E_OBJ, k, klen, entry_expire(r->e), sizeof t);
    if (!e) {
        table_destroy_items(t);
        free(t);
        return -1;
    }
    put_ptr(entry_payload(e), t);
    return store_put(s, r, e);
}

void store_moved(struct kref *r, unsigned char *e)
{
    r->e = e;
    table_set(&r->sh->t, r->slot, e);
}

unsigned char *store_take(struct store *s, struct kref *r)
{
    (void)s;
    unsigned char *e = r->e;
    table_remove(&r->sh->t, r->slot);
    r->e = NULL;
    r->slot = TABLE_NONE;
    return e;
}

void store_delete(struct store *s, struct kref *r)
{
    entry_free(store_take(s, r));
}

int store_set_expire(struct kref *r, int64_t expire_ms)
{
    unsigned char *e = r->e;
    bool had = e[0] & ITEM_VOLATILE;
    unsigned char *at = item_after_key(e);
    if (had && expire_ms) {
        put_u64(at, (uint64_t)expire_ms);
        return 0;
    }
    if (!had && !expire_ms)
        return 0;
    size_t off = (size_t)(at - e), total = entry_size(e);
    if (expire_ms) {
        unsigned char *ne = realloc(e, total + 8);
        if (!ne)
            return -1;
        memmove(ne + off + 8, ne + off, total - off);
        put_u64(ne + off, (uint64_t)expire_ms);
        ne[0] |= ITEM_VOLATILE;
        e = ne;
    } else {
        memmove(e + off, e + off + 8, total - off - 8);
        e[0] &= (unsigned char)~ITEM_VOLATILE;
        unsigned char *ne = realloc(e, total - 8);
        if (ne)
            e = ne;
    }
    store_moved(r, e);
    table_mark_volatile(&r->sh->t, r->slot, expire_ms != 0);
    return 0;
}

size_t store_size(struct store *s)
{
    size_t n = 0;
    for (int i = 0; i < STORE_SHARDS; i++) {
        lock(s, &s->shards[i]);
        n += s->shards[i].t.count;
        unlock(s, &s->shards[i]);
    }
    return n;
}

size_t store_volatile(struct store *s)
{
    size_t n = 0;
    for (int i = 0; i < STORE_SHARDS; i++) {
        lock(s, &s->shards[i]);
        n += s->shards[i].t.nvolatile;
        unlock(s, &s->shards[i]);
    }
    return n;
}

uint64_t store_expired(struct store *s)
{
    uint64_t n = 0;
    for (int i = 0; i < STORE_SHARDS; i++) {
        lock(s, &s->shards[i]);
        n += s->shards[i].expired;
        unlock(s, &s->shards[i]);
    }
    return n;
}

size_t store_table_bytes(struct store *s)
{
    size_t n = 0;
    for (int i = 0; i < STORE_SHARDS; i++) {
        lock(s, &s->shards[i]);
        n += table_bytes(&s->shards[i].t);
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

void store_each(struct store *s, void (*fn)(void *arg, unsigned char *e), void *arg)
{
    int64_t now = store_now_ms();
    for (int i = 0; i < STORE_SHARDS; i++) {
        struct shard *sh = &s->shards[i];
        lock(s, sh);
        for (size_t j = table_next(&sh->t, 0); j != TABLE_NONE; j = table_next(&sh->t, j + 1)) {
            unsigned char *e = table_get(&sh->t, j);
            if (!(e[0] & ITEM_VOLATILE) || !expired(e, now))
                fn(arg, e);
        }
        unlock(s, sh);
    }
}

struct scan_step {
    void (*fn)(void *arg, unsigned char *e);
    void *arg;
    int64_t now;
    size_t seen;
};

static void scan_one(void *arg, void *item)
{
    struct scan_step *st = arg;
    unsigned char *e = item;
    st->seen++;
    if (!(e[0] & ITEM_VOLATILE) || !expired(e, st->now))
        st->fn(st->arg, e);
}

uint64_t store_scan(struct store *s, uint64_t cursor, size_t count,
                    void (*fn)(void *arg, unsigned char *e), void *arg)
{
    /* The cursor: the shard in the low 6 bits, the table's cursor above. */
    struct scan_step st = {fn, arg, store_now_ms(), 0};
    unsigned i = cursor % STORE_SHARDS;
    uint64_t c = cursor / STORE_SHARDS;
    /* A bounded number of steps, so that a sparse key space cannot make one
     * call walk all of it. */
    for (size_t steps = 0; steps < count * 10 && st.seen < count; steps++) {
        struct shard *sh = &s->shards[i];
        lock(s, sh);
        c = table_scan(&sh->t, c, scan_one, &st);
        unlock(s, sh);
        if (c == 0) {
            if (++i == STORE_SHARDS)
                return 0;
        }
    }
    return c * STORE_SHARDS + i;
}

/* Keys looked at per shard visit, and the share of them expired (in 1/16)
 * above which the same shard is looked at again at once. */
#define EXPIRE_SAMPLE 32
#define EXPIRE_AGAIN_16THS 2

/* The time to live of the keys sampled that had not expired, summed (in a
 * double: PEXPIREAT key 9223372036854775807 is a valid expiry time, and two
 * of those would overflow an integer sum). */
struct ttl_sum {
    double sum;
    int64_t n;
};

/* Look at up to EXPIRE_SAMPLE keys with an expiry in a locked shard, from
 * its sweep position; returns how many had expired (and were freed). */
static size_t expire_sample(struct shard *sh, int64_t now, size_t *looked, struct ttl_sum *ttl)
{
    size_t n = 0, freed = 0;
    bool wrapped = false;
    while (n < EXPIRE_SAMPLE && sh->t.nvolatile) {
        size_t i = table_next_volatile(&sh->t, sh->sweep);
        if (i == TABLE_NONE) {
            if (wrapped)
                break;
            wrapped = true;
            sh->sweep = 0;
            continue;
        }
        sh->sweep = i + 1;
        n++;
        unsigned char *e = table_get(&sh->t, i);
        if (expired(e, now)) {
            remove_expired(sh, i);
            freed++;
        } else {
            ttl->sum += (double)(entry_expire(e) - now);
            ttl->n++;
        }
    }
    *looked = n;
    return freed;
}

bool store_expire_cycle(struct store *s, int64_t budget_us, struct expire_stats *st)
{
    int64_t start = mono_us(), now = store_now_ms();
    bool busy = false;
    struct ttl_sum ttl = {0, 0};
    for (int visited = 0; visited < STORE_SHARDS; visited++) {
        struct shard *sh = &s->shards[s->expire_shard];
        bool again;
        do {
            lock(s, sh);
            size_t looked, freed = expire_sample(sh, now, &looked, &ttl);
            if (freed)
                table_shrink(&sh->t);
            unlock(s, sh);
            again = looked == EXPIRE_SAMPLE && freed * 16 > looked * EXPIRE_AGAIN_16THS;
            if (mono_us() - start >= budget_us) {
                st->cycles_capped++;
                busy = again;
                goto out;
            }
        } while (again);
        s->expire_shard = (s->expire_shard + 1) % STORE_SHARDS;
    }
out:
    if (ttl.n) {
        /* A moving average: each run's sample counts for a fiftieth. */
        double avg = (double)atomic_load_explicit(&s->avg_ttl, memory_order_relaxed);
        double run = ttl.sum / (double)ttl.n;
        avg = avg > 0 ? avg + (run - avg) / 50 : run;
        atomic_store_explicit(&s->avg_ttl, avg < 9e18 ? (int64_t)avg : INT64_MAX,
                              memory_order_relaxed);
    }
    st->cpu_us += (uint64_t)(mono_us() - start);
    return busy;
}

int64_t store_avg_ttl(struct store *s)
{
    return atomic_load_explicit(&s->avg_ttl, memory_order_relaxed);
}
