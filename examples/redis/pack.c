#include "pack.h"

#include <stdlib.h>
#include <string.h>

/* backlen: the varint's bytes in reverse order, so the last byte holds the
 * low 7 bits and a set high bit means more bytes lie before it. */
static size_t backlen_put(unsigned char *p, uint64_t v)
{
    size_t n = varint_len(v);
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (i + 1 < n)
            b |= 0x80;
        p[n - 1 - i] = b;
    }
    return n;
}

unsigned char *pk_prev(unsigned char *end)
{
    uint64_t v = 0;
    size_t n = 0;
    unsigned shift = 0;
    unsigned char b;
    do {
        b = *(end - 1 - n);
        v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        n++;
    } while (b & 0x80);
    return end - n - v;
}

size_t pk_write(unsigned char *p, const void *data, size_t len)
{
    size_t h = varint_put(p, len);
    memcpy(p + h, data, len);
    return h + len + backlen_put(p + h + len, h + len);
}

void pk_init(unsigned char *p)
{
    pk_put_u32(p, PK_HEADER);
    pk_put_u32(p + 4, 0);
}

int pk_splice(unsigned char **blockp, size_t off, size_t pos, size_t del, const void *ins,
              size_t inslen, long dcount)
{
    unsigned char *b = *blockp + off;
    size_t old = pk_bytes(b), tail = old - pos - del;
    size_t total = off + old - del + inslen;
    unsigned char *block = *blockp;
    if (inslen == del) {
        /* A value replaced by one of the same size (HSET over the same
         * length): no realloc at all. */
        memcpy(b + pos, ins, inslen);
        pk_set_count(b, (size_t)((long)pk_count(b) + dcount));
        return 0;
    }
    if (inslen > del) {
        /* Grow first, then open the gap. */
        block = realloc(block, total);
        if (!block)
            return -1;
        b = block + off;
        memmove(b + pos + inslen, b + pos + del, tail);
    } else {
        /* Close the gap first: a shrinking realloc may move the block. */
        memmove(b + pos + inslen, b + pos + del, tail);
        unsigned char *nb = realloc(block, total);
        if (nb)
            block = nb;
        b = block + off;
    }
    if (inslen)
        memcpy(b + pos, ins, inslen);
    pk_put_u32(b, (uint32_t)(old - del + inslen));
    pk_set_count(b, (size_t)((long)pk_count(b) + dcount));
    *blockp = block;
    return 0;
}

unsigned char *pk_find(unsigned char *b, const void *s, size_t n, size_t stride)
{
    unsigned char *p = pk_first(b), *end = pk_end(b);
    while (p < end) {
        unsigned char *data;
        size_t len;
        unsigned char *next = pk_read(p, &data, &len);
        if (len == n && memcmp(data, s, n) == 0)
            return p;
        p = next;
        for (size_t i = 1; i < stride && p < end; i++)
            p = pk_read(p, &data, &len);
    }
    return NULL;
}

unsigned char *pk_index(unsigned char *b, size_t i)
{
    if (i >= pk_count(b))
        return NULL;
    unsigned char *p = pk_first(b);
    while (i--) {
        unsigned char *data;
        size_t len;
        p = pk_read(p, &data, &len);
    }
    return p;
}
