/*
 * The byte layout every stored thing shares, so that one hash table (table.h)
 * can hold keys, hash fields, set members and sorted-set members alike:
 *
 *   [flags: 1 byte][key length: varint][key bytes][whatever the owner keeps]
 *
 * An item is one malloc'd block and carries no pointer or length header of
 * its own beyond these, which is what keeps a small key at one 32-byte
 * malloc chunk (see store.h). Varints are LEB128: 7 bits a byte, low bits
 * first, the high bit set on every byte but the last; a length below 128
 * takes one byte.
 */
#ifndef EVN_EXAMPLES_ITEM_H
#define EVN_EXAMPLES_ITEM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Set in an item's flags when it has an expiry time (keyspace entries only). */
#define ITEM_VOLATILE 0x80

static inline size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline size_t varint_put(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static inline size_t varint_get(const unsigned char *p, uint64_t *v)
{
    if (p[0] < 0x80) {
        *v = p[0];
        return 1;
    }
    uint64_t x = 0;
    size_t n = 0;
    unsigned shift = 0;
    do {
        x |= (uint64_t)(p[n] & 0x7f) << shift;
        shift += 7;
    } while (p[n++] & 0x80);
    *v = x;
    return n;
}

/* The key of an item and its length. */
static inline const unsigned char *item_key(const void *item, size_t *len)
{
    const unsigned char *p = (const unsigned char *)item + 1;
    uint64_t n;
    size_t h = varint_get(p, &n);
    *len = (size_t)n;
    return p + h;
}

/* The first byte after the key. */
static inline unsigned char *item_after_key(void *item)
{
    size_t n;
    const unsigned char *k = item_key(item, &n);
    return (unsigned char *)k + n;
}

/* Bytes for an item's flags and key. */
static inline size_t item_key_size(size_t klen)
{
    return 1 + varint_len(klen) + klen;
}

/* Write flags and key at p; returns the first byte after the key. */
static inline unsigned char *item_put_key(unsigned char *p, unsigned flags, const void *k,
                                          size_t klen)
{
    p[0] = (unsigned char)flags;
    size_t h = 1 + varint_put(p + 1, klen);
    memcpy(p + h, k, klen);
    return p + h + klen;
}

static inline uint64_t load_u64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void put_u64(void *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

static inline void *load_ptr(const void *p)
{
    void *v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void put_ptr(void *p, const void *v)
{
    memcpy(p, &v, sizeof v);
}

#endif
