/*
 * The request parser and chunked decoder (see http_parser.h). Both look at
 * each byte once, classify it with one table lookup, and check the end of the
 * input before every read, so they can be given any prefix of a message.
 */
#include "http_parser.h"

#include <string.h>

#define TOKEN 1  /* RFC 9110 tchar: method and field names */
#define TARGET 2 /* visible ASCII or obs-text: request-target */
#define VALUE 4  /* field-vchar, SP, HTAB: field values */

// clang-format off
static const unsigned char cls[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, /* HTAB */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* controls */
    4, 7, 6, 7, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6, /*  !"#$%&'()*+,-./ */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, /* 0123456789:;<=>? */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* @ABCDEFGHIJKLMNO */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7, /* PQRSTUVWXYZ[\]^_ */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* `abcdefghijklmno */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0, /* pqrstuvwxyz{|}~ DEL */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* obs-text */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
};
// clang-format on

#define IS(c, what) (cls[(unsigned char)(c)] & (what))

/*
 * Step over the line end at *pp: CRLF or LF. Returns 0 when one was there,
 * else HTTP_INCOMPLETE or HTTP_BAD.
 */
static int eol(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p == end)
        return HTTP_INCOMPLETE;
    if (*p == '\r') {
        if (++p == end)
            return HTTP_INCOMPLETE;
    }
    if (*p != '\n')
        return HTTP_BAD;
    *pp = p + 1;
    return 0;
}

/*
 * Step over a non-empty run of bytes of class what that ends with stop,
 * leaving *pp at stop. Returns 0, HTTP_INCOMPLETE or HTTP_BAD.
 */
static int span(const char **pp, const char *end, int what, char stop)
{
    const char *p = *pp, *start = p;
    while (p != end && IS(*p, what))
        p++;
    if (p == end)
        return HTTP_INCOMPLETE;
    if (p == start || *p != stop)
        return HTTP_BAD;
    *pp = p;
    return 0;
}

static int request_line(const char **pp, const char *end, struct http_request *req)
{
    static const char version[] = "HTTP/1.";
    const char *p = *pp;
    int rc;

    /* Empty lines before the request line are ignored. */
    while (p != end && (*p == '\r' || *p == '\n')) {
        if ((rc = eol(&p, end)) != 0)
            return rc;
    }
    req->method = p;
    if ((rc = span(&p, end, TOKEN, ' ')) != 0)
        return rc;
    req->method_len = (size_t)(p - req->method);
    req->target = ++p;
    if ((rc = span(&p, end, TARGET, ' ')) != 0)
        return rc;
    req->target_len = (size_t)(p - req->target);
    p++;
    for (size_t i = 0; i < sizeof version - 1; i++, p++) {
        if (p == end)
            return HTTP_INCOMPLETE;
        if (*p != version[i])
            return HTTP_BAD;
    }
    if (p == end)
        return HTTP_INCOMPLETE;
    if (*p < '0' || *p > '9')
        return HTTP_BAD;
    req->minor_version = *p++ - '0';
    if ((rc = eol(&p, end)) != 0)
        return rc;
    *pp = p;
    return 0;
}

/* One "name: value" line; *pp is at its first byte, which is a name byte. */
static int header_line(const char **pp, const char *end, struct http_header *h)
{
    const char *p = *pp;
    int rc;
    h->name = p;
    if ((rc = span(&p, end, TOKEN, ':')) != 0)
        return rc;
    h->name_len = (size_t)(p - h->name);
    p++;
    while (p != end && (*p == ' ' || *p == '\t'))
        p++;
    h->value = p;
    while (p != end && IS(*p, VALUE))
        p++;
    if (p == end)
        return HTTP_INCOMPLETE;
    const char *vend = p;
    if ((rc = eol(&p, end)) != 0)
        return rc;
    while (vend > h->value && (vend[-1] == ' ' || vend[-1] == '\t'))
        vend--;
    h->value_len = (size_t)(vend - h->value);
    *pp = p;
    return 0;
}

ssize_t http_parse_request(const char *buf, size_t len, struct http_request *req)
{
    const char *p = buf, *end = buf + len;
    size_t cap = req->num_headers, n = 0;
    int rc;

    req->num_headers = 0;
    if ((rc = request_line(&p, end, req)) != 0)
        return rc;
    for (;;) {
        if (p == end)
            return HTTP_INCOMPLETE;
        if (*p == '\r' || *p == '\n') {
            if ((rc = eol(&p, end)) != 0)
                return rc;
            break;
        }
        /* A line that starts with whitespace would be obsolete folding, and a
         * name byte is required anyway: span() rejects both. */
        if (n == cap) {
            if (!IS(*p, TOKEN))
                return HTTP_BAD;
            return HTTP_TOO_MANY_HEADERS;
        }
        if ((rc = header_line(&p, end, &req->headers[n])) != 0)
            return rc;
        n++;
    }
    req->num_headers = n;
    return p - buf;
}

/* The decoder's states; each names what the next byte may be. */
enum {
    CH_SIZE,      /* a hex digit of the chunk size (at least one) */
    CH_SIZE_MORE, /* another hex digit, whitespace, ';' or the line end */
    CH_EXT,       /* the rest of the chunk-size line: extensions */
    CH_SIZE_LF,   /* LF after the size line's CR */
    CH_DATA,      /* chunk_left payload bytes */
    CH_DATA_CR,   /* CR or LF after a chunk's payload */
    CH_DATA_LF,   /* LF after that CR */
    CH_TRAILER,   /* the first byte of a trailer line, or of the final line end */
    CH_FIELD,     /* the rest of a trailer field line */
    CH_FIELD_LF,  /* LF after a trailer field's CR */
    CH_END_LF,    /* LF after the final CR */
    CH_DONE
};

int http_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

void http_chunked_init(struct http_chunked *d)
{
    memset(d, 0, sizeof *d);
    d->state = CH_SIZE;
}

/* Count one more byte of a size or trailer line against the limit. */
static int line_byte(struct http_chunked *d)
{
    return ++d->line_len <= HTTP_CHUNKED_LINE_MAX ? 0 : HTTP_BAD;
}

ssize_t http_chunked_decode(struct http_chunked *d, const char *buf, size_t len, char *out,
                            size_t *out_len)
{
    size_t i = 0, o = 0;
    ssize_t rc = HTTP_INCOMPLETE;

    while (i < len && d->state != CH_DONE) {
        char c = buf[i];
        switch (d->state) {
        case CH_DATA: {
            size_t n = len - i;
            if (n > d->chunk_left)
                n = (size_t)d->chunk_left;
            if (out)
                memmove(out + o, buf + i, n);
            o += n;
            i += n;
            d->chunk_left -= n;
            d->total += n;
            if (d->chunk_left == 0)
                d->state = CH_DATA_CR;
            continue;
        }
        case CH_SIZE:
        case CH_SIZE_MORE: {
            int v = http_hexval(c);
            if (v >= 0) {
                /* 15 digits keep the size below 2^60, far past any limit. */
                if (d->ndigits == 15 && d->chunk_left != 0)
                    goto bad;
                if (d->chunk_left != 0 || v != 0)
                    d->ndigits++;
                d->chunk_left = d->chunk_left * 16 + (unsigned)v;
                d->state = CH_SIZE_MORE;
            } else if (d->state == CH_SIZE) {
                goto bad;
            } else if (c == ' ' || c == '\t' || c == ';') {
                d->state = CH_EXT;
            } else if (c == '\r') {
                d->state = CH_SIZE_LF;
            } else if (c == '\n') {
                goto size_done;
            } else {
                goto bad;
            }
            if (line_byte(d))
                goto bad;
            break;
        }
        case CH_EXT:
            /* Extensions are skipped, but must not carry control bytes. */
            if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (c == '\n')
                goto size_done;
            else if (!IS(c, VALUE) || line_byte(d))
                goto bad;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                goto bad;
size_done:
            d->line_len = 0;
            d->ndigits = 0;
            d->state = d->chunk_left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA_CR:
            if (c == '\r')
                d->state = CH_DATA_LF;
            else if (c == '\n')
                d->state = CH_SIZE;
            else
                goto bad;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                goto bad;
            d->state = CH_SIZE;
            break;
        case CH_TRAILER:
            d->line_len = 0;
            if (c == '\r') {
                d->state = CH_END_LF;
            } else if (c == '\n') {
                d->state = CH_DONE;
            } else if (IS(c, TOKEN)) {
                /* The field is checked for its bytes only: a trailer is
                 * dropped, so its exact syntax cannot mislead anyone. */
                d->state = CH_FIELD;
                d->line_len = 1;
            } else {
                goto bad;
            }
            break;
        case CH_FIELD:
            if (c == '\r')
                d->state = CH_FIELD_LF;
            else if (c == '\n')
                d->state = CH_TRAILER;
            else if (!IS(c, VALUE) || line_byte(d))
                goto bad;
            break;
        case CH_FIELD_LF:
            if (c != '\n')
                goto bad;
            d->state = CH_TRAILER;
            break;
        case CH_END_LF:
            if (c != '\n')
                goto bad;
            d->state = CH_DONE;
            break;
        }
        i++;
    }
    if (d->state == CH_DONE)
        rc = (ssize_t)i;
    *out_len = o;
    return rc;
bad:
    *out_len = o;
    return HTTP_BAD;
}
