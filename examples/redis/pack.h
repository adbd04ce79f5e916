/*
 * Packed sequences of byte strings: the compact form of small hashes (field,
 * value, field, value ...), small sets (members) and small sorted sets
 * (member, score, ... in order), kept inline at the end of their key's
 * entry, and the element encoding of list nodes (list.h).
 *
 * An element is [length: varint][bytes][backlen], where backlen is the size
 * of the first two parts as a varint written back to front, so that the
 * sequence can be walked from either end (as Redis's listpack does). A
 * 3-byte element takes 5 bytes.
 *
 * A blob is a 4-byte total size and a 4-byte element count (both
 * little-endian, unaligned), then the elements. Blobs are edited with
 * pk_splice(), which reallocates the block the blob ends.
 */
#ifndef EVN_EXAMPLES_PACK_H
#define EVN_EXAMPLES_PACK_H

#include "item.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PK_HEADER 8
/* The most an element header and backlen take for a length that fits 32 bits. */
#define PK_OVERHEAD 10

static inline uint32_t pk_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void pk_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline size_t pk_bytes(const unsigned char *b)
{
    return pk_u32(b);
}

static inline size_t pk_count(const unsigned char *b)
{
    return pk_u32(b + 4);
}

static inline void pk_set_count(unsigned char *b, size_t n)
{
    pk_put_u32(b + 4, (uint32_t)n);
}

static inline unsigned char *pk_first(unsigned char *b)
{
    return b + PK_HEADER;
}

static inline unsigned char *pk_end(unsigned char *b)
{
    return b + pk_bytes(b);
}

/* The bytes an element of len bytes takes. */
static inline size_t pk_elem_size(size_t len)
{
    size_t l = varint_len(len) + len;
    return l + varint_len(l);
}

/* Read the element at p: its bytes and length; returns the next element. */
static inline unsigned char *pk_read(unsigned char *p, unsigned char **data, size_t *len)
{
    /* Up to 126 bytes, length and backlen are one byte each. */
    if (p[0] < 127) {
        *len = p[0];
        *data = p + 1;
        return p + 2 + p[0];
    }
    uint64_t n;
    size_t h = varint_get(p, &n);
    *data = p + h;
    *len = (size_t)n;
    size_t l = h + (size_t)n;
    return p + l + varint_len(l);
}

/* The element after the one at p. */
static inline unsigned char *pk_next(unsigned char *p)
{
    unsigned char *data;
    size_t len;
    return pk_read(p, &data, &len);
}

/* The start of the element that ends at end (walking backwards). */
unsigned char *pk_prev(unsigned char *end);
/* Write an element at p; returns the bytes written (pk_elem_size(len)). */
size_t pk_write(unsigned char *p, const void *data, size_t len);

/* A new blob holding no element: PK_HEADER bytes at p. */
void pk_init(unsigned char *p);

/*
 * Replace the bytes [pos, pos + del) of the blob at offset off of the block
 * *blockp (the blob runs to the block's end) with ins[0..inslen), and add
 * dcount to its count. The block is reallocated; returns 0, or -1 when out
 * of memory (nothing changed).
 */
int pk_splice(unsigned char **blockp, size_t off, size_t pos, size_t del, const void *ins,
              size_t inslen, long dcount);

/* The element whose bytes equal s[0..n), stepping over `stride` elements at
 * a time from the first (2 for the fields of a hash); NULL if none. */
unsigned char *pk_find(unsigned char *b, const void *s, size_t n, size_t stride);

/* The element at index i (0-based, from the first); NULL past the end. */
unsigned char *pk_index(unsigned char *b, size_t i);

#endif
