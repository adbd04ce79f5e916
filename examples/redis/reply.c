#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values at least this large skip the buffer and are copied by evn_write. */
#define DIRECT_MIN (16 * 1024)

int reply_init(struct reply *r, size_t cap)
{
    memset(r, 0, sizeof *r);
    r->buf = malloc(cap);
    if (!r->buf)
        return -1;
    r->cap = cap;
    return 0;
}

void reply_free(struct reply *r)
{
    free(r->buf);
    memset(r, 0, sizeof *r);
}

void reply_begin(struct reply *r, evn_conn *c)
{
    r->c = c;
    r->len = 0;
    r->failed = false;
}

static void write_out(struct reply *r, const char *p, size_t n)
{
    r->writes++;
    r->bytes += n;
    if (!r->failed && evn_write(r->c, p, n) < 0)
        r->failed = true;
}

void reply_flush(struct reply *r)
{
    if (r->len) {
        write_out(r, r->buf, r->len);
        r->len = 0;
    }
}

void reply_raw_slow(struct reply *r, const char *p, size_t n)
{
    if (r->cap - r->len < n) {
        reply_flush(r);
        if (n >= DIRECT_MIN || n > r->cap) {
            write_out(r, p, n);
            return;
        }
    }
    /* n may be 0 with p NULL (an empty list of keys): memcpy must not see it. */
    if (n)
        memcpy(r->buf + r->len, p, n);
    r->len += n;
}

/* Write v in decimal, backwards from the end of buf[]; returns its start.
 * Two digits at a time from a table: half the divisions. */
static char *format_ll(char *end, long long v)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    char *p = end;
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--p = pairs[d + 1];
        *--p = pairs[d];
    }
    if (u >= 10) {
        *--p = pairs[u * 2 + 1];
        *--p = pairs[u * 2];
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0)
        *--p = '-';
    return p;
}

size_t reply_format_ll(char *buf, long long v)
{
    char tmp[24];
    char *p = format_ll(tmp + sizeof tmp, v);
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(buf, p, n);
    return n;
}

/* A one-character type, a number and "\r\n": ":42\r\n", "$5\r\n", "*3\r\n". */
static void reply_line(struct reply *r, char type, long long v)
{
    char buf[32];
    char *end = buf + sizeof buf - 2;
    char *p = format_ll(end, v);
    *--p = type;
    end[0] = '\r';
    end[1] = '\n';
    reply_raw(r, p, (size_t)(end + 2 - p));
}

void reply_status(struct reply *r, const char *s)
{
    size_t n = strlen(s);
    reply_raw(r, "+", 1);
    reply_raw(r, s, n);
    reply_raw(r, "\r\n", 2);
}

void reply_error_len(struct reply *r, const char *msg, size_t n)
{
    reply_raw(r, "-ERR ", 5);
    while (n) {
        size_t run = 0;
        while (run < n && msg[run] != '\r' && msg[run] != '\n')
            run++;
        reply_raw(r, msg, run);
        if (run == n)
            break;
        reply_raw(r, " ", 1);
        msg += run + 1;
        n -= run + 1;
    }
    reply_raw(r, "\r\n", 2);
}

void reply_error(struct reply *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    reply_error_len(r, msg, (size_t)n);
}

void reply_int(struct reply *r, long long v)
{
    reply_line(r, ':', v);
}

void reply_bulk_slow(struct reply *r, const char *p, size_t n)
{
    reply_line(r, '$', (long long)n);
    reply_raw(r, p, n);
    reply_raw(r, "\r\n", 2);
}

void reply_bulk_str(struct reply *r, const char *s)
{
    reply_bulk(r, s, strlen(s));
}

void reply_nil(struct reply *r)
{
    reply_raw(r, "$-1\r\n", 5);
}

void reply_array(struct reply *r, size_t n)
{
    reply_line(r, '*', (long long)n);
}
