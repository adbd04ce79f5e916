/*
 * Building RESP2 replies: everything the commands of one input event write
 * is gathered in one buffer per event loop and handed to evn_write() once,
 * when the event is done (or when the buffer fills). A large bulk value goes
 * to evn_write() directly instead of through the buffer, to copy it once.
 */
#ifndef EVN_EXAMPLES_REPLY_H
#define EVN_EXAMPLES_REPLY_H

#include "evn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct reply {
    evn_conn *c;
    char *buf;
    size_t len, cap;
    bool failed;     /* evn_write failed: the connection should close */
    unsigned writes; /* evn_write calls so far, wrapping: output may have grown */
    uint64_t bytes;  /* handed to evn_write so far, for INFO */
};

/* Set r up with a buffer of cap bytes; -1 if out of memory. */
int reply_init(struct reply *r, size_t cap);
void reply_free(struct reply *r);

/* Start gathering the replies for c. */
void reply_begin(struct reply *r, evn_conn *c);
/* Hand what is gathered to evn_write(). */
void reply_flush(struct reply *r);

/* Bytes as they are; reply_raw_slow when the buffer lacks room. */
void reply_raw_slow(struct reply *r, const char *p, size_t n);

static inline void reply_raw(struct reply *r, const char *p, size_t n)
{
    /* Inline, so that a constant reply ("+OK\r\n") is copied by a move or
     * two, not by a call to memcpy. */
    if (r->cap - r->len >= n && n) {
        memcpy(r->buf + r->len, p, n);
        r->len += n;
        return;
    }
    reply_raw_slow(r, p, n);
}
/* A status reply: "+OK\r\n" for s = "OK". */
void reply_status(struct reply *r, const char *s);
/*
 * An error reply, "-ERR ...\r\n". Like Redis, a '\r' or '\n' in the
 * message is sent as a space, so that the reply stays one line.
 */
void reply_error(struct reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for a message that is not a format, such as one with a NUL. */
void reply_error_len(struct reply *r, const char *msg, size_t n);
void reply_int(struct reply *r, long long v);
/* v in decimal at buf (20 bytes hold any); returns the length. */
size_t reply_format_ll(char *buf, long long v);
void reply_bulk_slow(struct reply *r, const char *p, size_t n);

/* A bulk reply; a short one, with room in the buffer, is written in place,
 * header, bytes and line end (LRANGE writes hundreds a request). */
static inline void reply_bulk(struct reply *r, const char *p, size_t n)
{
    if (n < 10 && r->cap - r->len >= 16) {
        char *o = r->buf + r->len;
        o[0] = '$';
        o[1] = (char)('0' + n);
        o[2] = '\r';
        o[3] = '\n';
        for (size_t i = 0; i < n; i++)
            o[4 + i] = p[i];
        o[4 + n] = '\r';
        o[5 + n] = '\n';
        r->len += n + 6;
        return;
    }
    reply_bulk_slow(r, p, n);
}
void reply_bulk_str(struct reply *r, const char *s);
void reply_nil(struct reply *r);
/* The header of an array of n elements, which follow. */
void reply_array(struct reply *r, size_t n);

#endif
