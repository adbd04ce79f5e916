/*
 * The key space, shared by every event loop of the server.
 *
 * Thread safety: keys are split into STORE_SHARDS shards by the top bits of
 * their hash, each an open-addressing table (table.h) with its own mutex. A
 * command on one key locks one shard for the whole command, reply included;
 * a command on several keys (MSET, MGET, DEL, RENAME ...) locks every shard
 * it touches, in ascending order, so it is atomic and cannot deadlock. With
 * a single event loop the mutexes are not used at all.
 *
 * An entry is one malloc'd block, an item (item.h) laid out as
 *
 *   [flags][key length][key][expiry: 8 bytes, if ITEM_VOLATILE][payload]
 *
 * where flags hold the type (E_TYPE) and whether the payload is inline or a
 * pointer to an object (E_OBJ). A string's payload is [length][bytes]; a
 * small hash, set or sorted set is a packed blob (pack.h) inline; a list and
 * a large hash, set or sorted set are a pointer. So a key of 16 bytes with a
 * 3-byte value is a 22-byte block, one 32-byte malloc chunk, plus 9 bytes of
 * table per slot.
 *
 * Expiry: a key past its expiry time is treated as absent and freed when a
 * command next looks it up (lazy expiry); store_expire_cycle(), run from a
 * timer, frees the rest a bounded slice at a time (active expiry). So, as in
 * Redis, store_size() may count keys that have expired but not yet been
 * freed.
 */
#ifndef EVN_EXAMPLES_STORE_H
#define EVN_EXAMPLES_STORE_H

#include "item.h"
#include "resp.h"
#include "table.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SHARDS 64

/* Value types (as TYPE names them), in an entry's flags. */
enum vtype { T_STRING = 0, T_LIST = 1, T_HASH = 2, T_SET = 3, T_ZSET = 4 };
#define E_TYPE 0x07
#define E_OBJ 0x08 /* the payload is a pointer to the value */

struct store;
struct shard;

/*
 * A key looked up in a locked shard: where it is (slot, e) or, if absent
 * (e == NULL), what inserting it needs (its hash and shard).
 */
struct kref {
    struct shard *sh;
    uint64_t hash;
    size_t slot;
    unsigned char *e;
};

/* A new, empty store; locking = false when one thread alone will use it. */
struct store *store_new(bool locking);
void store_free(struct store *s);

/* Milliseconds since the epoch (wall clock, as Redis's expiry times). */
int64_t store_now_ms(void);

/*
 * Lock the key's shard and look the key up; store_close() unlocks it. An
 * expired key is deleted here and reported absent.
 */
void store_open(struct store *s, const void *k, size_t klen, struct kref *r);
void store_close(struct store *s, struct kref *r);

/*
 * Several keys: lock every shard that keys[0], keys[stride], ... (n of
 * them) live in, lowest first, and return the set of shards for
 * store_unlock_keys(); then store_find() each key.
 */
uint64_t store_lock_keys(struct store *s, const struct resp_arg *keys, size_t n, size_t stride);
void store_unlock_keys(struct store *s, uint64_t mask);
/* Look a key up in a shard that is already locked (as store_open does). */
void store_find(struct store *s, const void *k, size_t klen, struct kref *r);
/* Shards are locked: shrink the tables of those in mask that deletions emptied. */
void store_tidy(struct store *s, uint64_t mask);

static inline int entry_type(const unsigned char *e)
{
    return e[0] & E_TYPE;
}

static inline bool entry_is_obj(const unsigned char *e)
{
    return e[0] & E_OBJ;
}

/* 0 if the entry has no expiry time. */
static inline int64_t entry_expire(const unsigned char *e)
{
    if (!(e[0] & ITEM_VOLATILE))
        return 0;
    return (int64_t)load_u64(item_after_key((void *)e));
}

static inline unsigned char *entry_payload(unsigned char *e)
{
    return item_after_key(e) + (e[0] & ITEM_VOLATILE ? 8 : 0);
}

static inline size_t entry_payload_off(unsigned char *e)
{
    return (size_t)(entry_payload(e) - e);
}

/* The object an E_OBJ entry points to. */
static inline void *entry_obj(unsigned char *e)
{
    return load_ptr(entry_payload(e));
}

/* A string entry's value. */
static inline unsigned char *entry_string(unsigned char *e, size_t *len)
{
    unsigned char *p = entry_payload(e);
    uint64_t n;
    size_t h = varint_get(p, &n);
    *len = (size_t)n;
    return p + h;
}

/*
 * A new entry for the key with type and flags `flags`, expiry expire_ms (0:
 * none) and payload bytes of room, left unwritten; NULL if out of memory.
 */
unsigned char *entry_new(unsigned flags, const void *k, size_t klen, int64_t expire_ms,
                         size_t payload);
/* A new string entry. */
unsigned char *entry_new_string(const void *k, size_t klen, const void *v, size_t vlen,
                                int64_t expire_ms);
/* Free an entry and the value it holds. */
void entry_free(unsigned char *e);
/* The bytes an entry's block holds (its own, not an object's it points to). */
size_t entry_size(unsigned char *e);

/*
 * Put entry e under r's key: added if r's key is absent, else in place of
 * the old entry, which is freed. Returns 0, or -1 if out of memory (e is
 * then freed and the key is as it was).
 */
int store_put(struct store *s, struct kref *r, unsigned char *e);
/*
 * Put table t in place of r's packed entry, as an entry of type `type`
 * (T_HASH, T_SET) with the same key and expiry. Returns 0, or -1 if out of
 * memory: t and its items are then freed and the key is as it was.
 */
int store_put_table(struct store *s, struct kref *r, unsigned type, struct table *t);
/* The entry was reallocated: e is its new address. */
void store_moved(struct kref *r, unsigned char *e);
/* Delete r's key (present) and free its entry. */
void store_delete(struct store *s, struct kref *r);
/* Take r's entry out of the table without freeing it (RENAME). */
unsigned char *store_take(struct store *s, struct kref *r);
/* Set or (0) clear r's expiry time; -1 if out of memory. */
int store_set_expire(struct kref *r, int64_t expire_ms);

/* Keys stored (see above about expired keys), and how many have an expiry. */
size_t store_size(struct store *s);
size_t store_volatile(struct store *s);
/* Keys freed because they expired, lazily or actively, since the start. */
uint64_t store_expired(struct store *s);
/* The average time to live, in ms, of the keys active expiry looked at lately. */
int64_t store_avg_ttl(struct store *s);

/* Delete every key. */
void store_flush(struct store *s);

/*
 * Call fn for every live key, shard by shard (each locked meanwhile), for
 * KEYS; fn may write replies but not use the store.
 */
void store_each(struct store *s, void (*fn)(void *arg, unsigned char *e), void *arg);

/*
 * One step of SCAN from cursor: fn for the keys of some home groups, about
 * count of them, each shard locked meanwhile; returns the next cursor, 0 at
 * the end. Expired keys are skipped.
 */
uint64_t store_scan(struct store *s, uint64_t cursor, size_t count,
                    void (*fn)(void *arg, unsigned char *e), void *arg);

/* What store_expire_cycle() did, for INFO. */
struct expire_stats {
    uint64_t cycles_capped; /* runs that stopped at their time budget */
    uint64_t cpu_us;        /* time spent in the cycle */
};

/*
 * Active expiry: sample the keys with an expiry time, shard by shard, from
 * where the last run stopped, freeing those past it; repeat on a shard while
 * many of its samples had expired. Stops after budget_us microseconds.
 * Returns true when it stopped at the budget with expired keys still
 * likely to be found (the caller should run it again soon).
 */
bool store_expire_cycle(struct store *s, int64_t budget_us, struct expire_stats *st);

/* Bytes the shards' tables take (for INFO memory). */
size_t store_table_bytes(struct store *s);

/* A random 64-bit number (per thread, not for cryptography). */
uint64_t store_random(void);

#endif
