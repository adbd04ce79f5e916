/*
 * An open-addressing hash table of items (item.h): the key space's shards
 * and the large hashes, sets and sorted sets all use it.
 *
 * Why open addressing: a chained table needs a next pointer in every item,
 * 8 bytes that push a small key out of malloc's 32-byte chunk into the
 * 48-byte one. Here a slot is a pointer (8 bytes) and a control byte; groups
 * of 8 control bytes are read as one 64-bit word, so a probe compares 8
 * slots at once by their 7-bit hash tags and dereferences an item only when
 * the tag matches (as in Abseil's "Swiss tables"). At most 7/8 of the slots
 * are in use, so every probe sequence ends at a group with an empty slot.
 *
 * Slots are numbered 0 .. nslots-1. A slot number stays valid until the next
 * insert, remove-and-shrink or clear; table_set() replaces the item in a
 * slot (after a realloc moved it) without hashing again.
 *
 * Not thread-safe: the key space locks each shard around its table.
 */
#ifndef EVN_EXAMPLES_TABLE_H
#define EVN_EXAMPLES_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TABLE_NONE SIZE_MAX

struct table {
    unsigned char *ctrl; /* nslots control bytes: empty, deleted or 0x80 | tag */
    void **slots;        /* NULL while nothing is allocated */
    uint64_t *volat;     /* a bit per slot: the item has an expiry (if tracked) */
    size_t mask;         /* nslots - 1 */
    size_t count;        /* items */
    size_t tombs;        /* deleted slots, reclaimed by the next resize */
    size_t nvolatile;    /* items with ITEM_VOLATILE (if tracked) */
    bool track;          /* keep volat and nvolatile */
};

/* Set the seed of hash_bytes() once, before any table is used. */
void hash_seed_set(uint64_t seed);
/* A seeded 64-bit hash, so that clients cannot choose keys that all collide. */
uint64_t hash_bytes(const void *k, size_t n);

/* An empty table; track_volatile keeps the expiry bitmap (key space only). */
void table_init(struct table *t, bool track_volatile);
/* Free the table's arrays (not the items) and make it empty. */
void table_free(struct table *t);
/* Free every item (each one malloc'd block) and the arrays. */
void table_destroy_items(struct table *t);

/* The slot holding the key (hashed to h), or TABLE_NONE. */
size_t table_find(const struct table *t, uint64_t h, const void *k, size_t klen);
/*
 * Add an item whose key (hashed to h) is not in the table. Returns its slot,
 * or TABLE_NONE when out of memory (the table is then unchanged). May grow
 * the table: earlier slot numbers are void.
 */
size_t table_insert(struct table *t, uint64_t h, void *item);
/* Take the item out of a slot (the item itself is the caller's to free). */
void table_remove(struct table *t, size_t slot);
/*
 * Shrink a table that deletions left mostly empty. Call only where no slot
 * number is held, e.g. after a command: slot numbers change.
 */
void table_shrink(struct table *t);

static inline void *table_get(const struct table *t, size_t slot)
{
    return t->slots[slot];
}

/* Put item (the same key, e.g. after a realloc) into a full slot. */
void table_set(struct table *t, size_t slot, void *item);

/* The first full slot at or after i, or TABLE_NONE. */
size_t table_next(const struct table *t, size_t i);
/* The first slot at or after i whose item has an expiry, or TABLE_NONE. */
size_t table_next_volatile(const struct table *t, size_t i);
/* A full slot chosen from r (random bits); TABLE_NONE if empty. */
size_t table_random(const struct table *t, uint64_t r);
/* Record whether the item in a slot has an expiry (tracked tables only). */
void table_mark_volatile(struct table *t, size_t slot, bool on);

static inline size_t table_slots(const struct table *t)
{
    return t->slots ? t->mask + 1 : 0;
}

/*
 * One step of SCAN: call fn for every item whose home group is the one
 * cursor names, and return the next cursor (0 when the whole table has been
 * visited). Cursors walk the groups in reversed-bit order, so that an item
 * present throughout a scan is reported at least once even if the table
 * grows or shrinks in between (it may then be reported twice).
 */
uint64_t table_scan(const struct table *t, uint64_t cursor, void (*fn)(void *arg, void *item),
                    void *arg);

/* Bytes the table's arrays take (for INFO memory). */
size_t table_bytes(const struct table *t);

#endif
