/*
 * The key space: binary-safe string keys and values, with optional expiry
 * times, shared by every event loop of the server.
 *
 * Thread safety: the keys are split into STORE_SHARDS shards by hash, each a
 * chained hash table with its own mutex. An operation on one key locks one
 * shard; an operation on several keys (MGET, MSET) locks every shard it
 * touches, in ascending order, so it is atomic and cannot deadlock. With a
 * single event loop the mutexes are not used at all.
 *
 * Expiry: a key past its expiry time is treated as absent by every read and
 * write and freed when it is next touched (lazy expiry); store_expire_some(),
 * run on a timer, frees the rest a bounded slice at a time (active expiry).
 * So, as in Redis, store_size() may count keys that have expired but not yet
 * been freed, for at most one sweep of the table (about a second unless the
 * table is very large).
 */
#ifndef EVN_EXAMPLES_STORE_H
#define EVN_EXAMPLES_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"

#define STORE_SHARDS 64

struct store;

/* Receives a value while its shard is locked; v is valid during the call. */
typedef void (*store_emit)(void *arg, const char *v, size_t vlen);

/* A new, empty store; locking = false when one thread alone will use it. */
struct store *store_new(bool locking);
void store_free(struct store *s);

/* Milliseconds since the epoch (wall clock, as Redis's expiry times). */
int64_t store_now_ms(void);

/* Emit the value of the key and return true, or return false if absent. */
bool store_get(struct store *s, const char *k, size_t klen, store_emit emit, void *arg);

enum store_set_flags {
    STORE_NX = 1,      /* only if absent */
    STORE_XX = 2,      /* only if present */
    STORE_KEEPTTL = 4, /* keep the key's expiry time */
    STORE_GET = 8      /* emit the old value, if any, before setting */
};

/*
 * Set the key to the value with expiry time expire_ms (0: none), as allowed
 * by flags. Returns 1 if set, 0 if NX/XX prevented it, -1 if out of memory.
 * *had_old (may be NULL) tells whether the key existed.
 */
int store_set(struct store *s, const char *k, size_t klen, const char *v, size_t vlen,
              int64_t expire_ms, int flags, store_emit emit, void *arg, bool *had_old);

/* Set key kv[2i] to value kv[2i+1] for i < npairs, all at once (MSET); -1 if out of memory. */
int store_mset(struct store *s, const struct resp_arg *kv, size_t npairs);

/* For each of the n keys, emit its value or call missing (MGET), all at once. */
void store_mget(struct store *s, const struct resp_arg *keys, size_t n, store_emit emit,
                void (*missing)(void *arg), void *arg);

/* Delete the key; returns 1 if it existed. */
int store_del(struct store *s, const char *k, size_t klen);

/* 1 if the key exists. */
int store_exists(struct store *s, const char *k, size_t klen);

enum store_incr_result { STORE_INCR_OK = 0, STORE_NOT_INT, STORE_OVERFLOW, STORE_NOMEM };

/* Add delta to the key's integer value (0 if absent), keeping its expiry. */
enum store_incr_result store_incrby(struct store *s, const char *k, size_t klen, long long delta,
                                    long long *result);

/* Milliseconds left to live: -2 if absent, -1 if the key has no expiry. */
int64_t store_pttl(struct store *s, const char *k, size_t klen);

/* Keys stored (see above about expired keys). */
size_t store_size(struct store *s);

/* Delete every key. */
void store_flush(struct store *s);

/*
 * Active expiry: look at the next tenth of the buckets of each shard that
 * holds keys with an expiry time (at least min_buckets, at most max_buckets),
 * freeing the keys past it. Returns the number freed.
 */
size_t store_expire_some(struct store *s, size_t min_buckets, size_t max_buckets);

#endif
