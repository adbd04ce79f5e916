/*
 * The open-addressing table (table.h). A hash h gives the 7-bit tag
 * (h & 0x7f), stored as 0x80 | tag in the slot's control byte, and the home
 * group ((h >> 7) & gmask); probing visits groups home, home+1, home+3,
 * home+6 ... (triangular numbers, which cover every group of a power-of-two
 * table). The key space takes its shard from the top bits of the same hash.
 */
#include "table.h"
#include "item.h"

#include <stdlib.h>
#include <string.h>

#define EMPTY 0x00
#define DELETED 0x01
#define GROUP 8
#define LOW 0x0101010101010101ULL
#define HIGH 0x8080808080808080ULL
#define MIN_SLOTS 8

static uint64_t seed, seed2;

/* What a table with nothing allocated probes: one group of empty slots. */
static unsigned char empty_group[GROUP];

void hash_seed_set(uint64_t s)
{
    seed = s;
    seed2 = (s ^ 0x9e3779b97f4a7c15ULL) * 0xbf58476d1ce4e5b9ULL;
    seed2 ^= seed2 >> 31;
}

/* The 128-bit product of a and b, folded to 64 bits: one multiply mixes
 * every bit of each into the middle bits of the result. */
static uint64_t mum(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    /* The same product from 32-bit halves, where there is no 128-bit type. */
    uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t lo = (mid << 32) | (uint32_t)ll;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

static uint64_t load_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/*
 * A multiply-and-fold hash in the manner of wyhash: 16 bytes per multiply,
 * and a key of up to 16 bytes (most keys) costs two. Both seeds are random
 * at start, so a client cannot choose keys that collide, nor make an
 * operand of a multiply zero.
 */
uint64_t hash_bytes(const void *key, size_t len)
{
    const unsigned char *k = key;
    size_t n = len;
    uint64_t h = seed;
    while (n > 16) {
        h = mum(load_u64(k) ^ seed2, load_u64(k + 8) ^ h);
        k += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n > 8) {
        a = load_u64(k);
        b = load_u64(k + n - 8);
    } else if (n >= 4) {
        a = load_u32(k);
        b = load_u32(k + n - 4);
    } else if (n) {
        a = (uint64_t)k[0] << 16 | (uint64_t)k[n >> 1] << 8 | k[n - 1];
    }
    h = mum(a ^ seed2, b ^ h);
    return mum(h ^ 0xa0761d6478bd642fULL, len ^ 0xe7037ed1a0b428dbULL);
}

/* Eight control bytes as a word, the first in the lowest byte on any host. */
static uint64_t group_word(const unsigned char *p)
{
    uint64_t w = load_u64(p);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Bytes of w equal to zero have their high bit set in the result. Bytes above
 * a zero byte may be flagged too (a borrow), never bytes below the first. */
static uint64_t zero_bytes(uint64_t w)
{
    return (w - LOW) & ~w & HIGH;
}

static size_t first_byte(uint64_t m)
{
    return (size_t)__builtin_ctzll(m) / 8;
}

static bool key_is(const void *item, const void *k, size_t klen)
{
    size_t n;
    const unsigned char *ik = item_key(item, &n);
    if (n != klen)
        return false;
    /* Keys of 8 to 16 bytes, the most common, in two 8-byte compares
     * (overlapping when shorter than 16) instead of a call to memcmp. */
    if (n >= 8 && n <= 16)
        return load_u64(ik) == load_u64(k) &&
               load_u64(ik + n - 8) == load_u64((const unsigned char *)k + n - 8);
    return memcmp(ik, k, klen) == 0;
}

static uint64_t item_hash(const void *item)
{
    size_t n;
    const unsigned char *k = item_key(item, &n);
    return hash_bytes(k, n);
}

void table_init(struct table *t, bool track_volatile)
{
    memset(t, 0, sizeof *t);
    t->ctrl = empty_group;
    t->mask = GROUP - 1;
    t->track = track_volatile;
}

void table_free(struct table *t)
{
    if (t->slots)
        free(t->ctrl);
    table_init(t, t->track);
}

void table_destroy_items(struct table *t)
{
    for (size_t i = table_next(t, 0); i != TABLE_NONE; i = table_next(t, i + 1))
        free(t->slots[i]);
    table_free(t);
}

size_t table_find(const struct table *t, uint64_t h, const void *k, size_t klen)
{
    size_t gmask = t->mask / GROUP;
    size_t g = (size_t)(h >> 7) & gmask;
    uint64_t tags = LOW * (0x80 | (h & 0x7f));
    for (size_t step = 1;; step++) {
        uint64_t w = group_word(t->ctrl + g * GROUP);
        for (uint64_t m = zero_bytes(w ^ tags); m; m &= m - 1) {
            size_t i = g * GROUP + first_byte(m);
            if (key_is(t->slots[i], k, klen))
                return i;
        }
        if (zero_bytes(w))
            return TABLE_NONE;
        g = (g + step) & gmask;
    }
}

/* The first empty or deleted slot on h's probe sequence. */
static size_t free_slot(const unsigned char *ctrl, size_t mask, uint64_t h)
{
    size_t gmask = mask / GROUP;
    size_t g = (size_t)(h >> 7) & gmask;
    for (size_t step = 1;; step++) {
        uint64_t m = ~group_word(ctrl + g * GROUP) & HIGH;
        if (m)
            return g * GROUP + first_byte(m);
        g = (g + step) & gmask;
    }
}

static void set_bit(uint64_t *bits, size_t i, bool on)
{
    if (on)
        bits[i / 64] |= (uint64_t)1 << (i % 64);
    else
        bits[i / 64] &= ~((uint64_t)1 << (i % 64));
}

static size_t alloc_size(size_t nslots, bool track)
{
    size_t words = (nslots + 63) / 64;
    return nslots + nslots * sizeof(void *) + (track ? words * sizeof(uint64_t) : 0);
}

/* Move every item into arrays of nslots slots; -1 if out of memory. */
static int resize(struct table *t, size_t nslots)
{
    unsigned char *mem = calloc(1, alloc_size(nslots, t->track));
    if (!mem)
        return -1;
    void **slots = (void **)(mem + nslots);
    uint64_t *volat = t->track ? (uint64_t *)(slots + nslots) : NULL;
    size_t old = table_slots(t);
    for (size_t i = 0; i < old; i++) {
        if (!(t->ctrl[i] & 0x80))
            continue;
        void *item = t->slots[i];
        uint64_t h = item_hash(item);
        size_t j = free_slot(mem, nslots - 1, h);
        mem[j] = (unsigned char)(0x80 | (h & 0x7f));
        slots[j] = item;
        if (volat && (*(unsigned char *)item & ITEM_VOLATILE))
            set_bit(volat, j, true);
    }
    if (t->slots)
        free(t->ctrl);
    t->ctrl = mem;
    t->slots = slots;
    t->volat = volat;
    t->mask = nslots - 1;
    t->tombs = 0;
    return 0;
}

/* The smallest table in which n items fill at most 7/16 of the slots. */
static size_t size_for(size_t n)
{
    size_t s = MIN_SLOTS;
    while (n * 16 > s * 7)
        s *= 2;
    return s;
}

size_t table_insert(struct table *t, uint64_t h, void *item)
{
    size_t cap = table_slots(t);
    if (!t->slots || (t->count + t->tombs + 1) * 8 > cap * 7) {
        /* Mostly tombstones: clean up at the same size; else grow. */
        size_t want = size_for(t->count + 1);
        if (want < cap)
            want = cap;
        if (t->slots && (t->count + 1) * 16 > cap * 7)
            want = cap * 2;
        if (resize(t, want) < 0)
            return TABLE_NONE;
    }
    size_t i = free_slot(t->ctrl, t->mask, h);
    if (t->ctrl[i] == DELETED)
        t->tombs--;
    t->ctrl[i] = (unsigned char)(0x80 | (h & 0x7f));
    t->slots[i] = item;
    t->count++;
    if (t->track && (*(unsigned char *)item & ITEM_VOLATILE)) {
        set_bit(t->volat, i, true);
        t->nvolatile++;
    }
    return i;
}

void table_remove(struct table *t, size_t slot)
{
    size_t g = slot / GROUP * GROUP;
    /* A group with an empty slot ends every probe that reaches it, so a
     * slot freed there can be empty again; elsewhere it must stay a
     * tombstone, or probes that passed through it would stop short. */
    if (zero_bytes(group_word(t->ctrl + g))) {
        t->ctrl[slot] = EMPTY;
    } else {
        t->ctrl[slot] = DELETED;
        t->tombs++;
    }
    t->slots[slot] = NULL;
    t->count--;
    if (t->track && (t->volat[slot / 64] >> (slot % 64) & 1)) {
        set_bit(t->volat, slot, false);
        t->nvolatile--;
    }
}

void table_shrink(struct table *t)
{
    if (!t->slots)
        return;
    if (t->count == 0) {
        table_free(t);
        return;
    }
    size_t cap = table_slots(t);
    if (cap > MIN_SLOTS && t->count * 16 < cap)
        resize(t, size_for(t->count)); /* out of memory: stays as it is */
}

void table_set(struct table *t, size_t slot, void *item)
{
    t->slots[slot] = item;
}

void table_mark_volatile(struct table *t, size_t slot, bool on)
{
    if (!t->track)
        return;
    bool was = t->volat[slot / 64] >> (slot % 64) & 1;
    if (was == on)
        return;
    set_bit(t->volat, slot, on);
    if (on)
        t->nvolatile++;
    else
        t->nvolatile--;
}

size_t table_next(const struct table *t, size_t i)
{
    size_t n = table_slots(t);
    while (i < n) {
        if (i % GROUP == 0) {
            uint64_t m = group_word(t->ctrl + i) & HIGH;
            if (!m) {
                i += GROUP;
                continue;
            }
            return i + first_byte(m);
        }
        if (t->ctrl[i] & 0x80)
            return i;
        i++;
    }
    return TABLE_NONE;
}

size_t table_next_volatile(const struct table *t, size_t i)
{
    size_t n = table_slots(t);
    if (!t->track || !t->nvolatile)
        return TABLE_NONE;
    while (i < n) {
        uint64_t w = t->volat[i / 64] >> (i % 64);
        if (w)
            return i + (size_t)__builtin_ctzll(w);
        i = (i / 64 + 1) * 64;
    }
    return TABLE_NONE;
}

size_t table_random(const struct table *t, uint64_t r)
{
    if (t->count == 0)
        return TABLE_NONE;
    size_t n = table_slots(t);
    size_t start = (size_t)(r % n);
    size_t i = table_next(t, start);
    return i != TABLE_NONE ? i : table_next(t, 0);
}

static uint64_t reverse_bits(uint64_t v)
{
    v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
    v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
    v = ((v >> 4) & 0x0f0f0f0f0f0f0f0fULL) | ((v & 0x0f0f0f0f0f0f0f0fULL) << 4);
    return __builtin_bswap64(v);
}

uint64_t table_scan(const struct table *t, uint64_t cursor, void (*fn)(void *arg, void *item),
                    void *arg)
{
    if (!t->slots || t->count == 0)
        return 0;
    uint64_t gmask = t->mask / GROUP;
    uint64_t home = cursor & gmask;
    /* Items whose home group is this one lie on its probe sequence, up to
     * the first group with an empty slot. */
    size_t g = (size_t)home;
    for (size_t step = 1;; step++) {
        uint64_t w = group_word(t->ctrl + g * GROUP);
        for (uint64_t m = w & HIGH; m; m &= m - 1) {
            void *item = t->slots[g * GROUP + first_byte(m)];
            if (((item_hash(item) >> 7) & gmask) == home)
                fn(arg, item);
        }
        if (zero_bytes(w))
            break;
        g = (g + step) & gmask;
    }
    /* The next cursor: increment the bits above the mask's reversed. */
    cursor |= ~gmask;
    cursor = reverse_bits(cursor);
    cursor++;
    return reverse_bits(cursor);
}

size_t table_bytes(const struct table *t)
{
    return t->slots ? alloc_size(table_slots(t), t->track) : 0;
}
