/*
 * An HTTP/1.x request parser and chunked-body decoder for the example server.
 *
 * Neither allocates. The request parser fills a struct with pointers into
 * the caller's buffer, which it never modifies; the chunked decoder keeps its
 * state in a small struct the caller owns, so it can be fed a body in pieces
 * of any size. Both read only buf[0..len) and return:
 *
 *   >= 0  bytes consumed: the request head, or the whole encoded body
 *   -2    HTTP_INCOMPLETE: everything so far is valid, more input is needed
 *   -1    HTTP_BAD: malformed input
 *
 * so a caller (or a fuzzer) can hand them any bytes at all.
 */
#ifndef EVN_HTTP_PARSER_H
#define EVN_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_BAD (-1)
#define HTTP_INCOMPLETE (-2)
/* The head has more header fields than the caller's array holds. */
#define HTTP_TOO_MANY_HEADERS (-3)

struct http_header {
    const char *name;
    size_t name_len;
    /* Without the optional whitespace around it; may be empty. */
    const char *value;
    size_t value_len;
};

struct http_request {
    const char *method;
    size_t method_len;
    /* The request-target as sent: "/path?query", "*" or "http://host/path". */
    const char *target;
    size_t target_len;
    /* y in "HTTP/1.y". */
    int minor_version;
    /* The caller's array, and on entry its size; on return the fields found. */
    struct http_header *headers;
    size_t num_headers;
};

/*
 * Parse a request head (request line, header fields, empty line) at the start
 * of buf[0..len). Empty lines before the request line are skipped, as RFC
 * 9112 asks. Lines end in CRLF or a bare LF. Returns the head's length (the
 * body, if any, starts there), HTTP_INCOMPLETE, HTTP_BAD, or
 * HTTP_TOO_MANY_HEADERS. On failure the fields of req are unspecified.
 *
 * It is strict where leniency would let two parsers disagree about where a
 * message ends: one space between the parts of the request line, "HTTP/1.y"
 * exactly, no whitespace before a field's colon, no obsolete line folding,
 * no control characters in a field value but HTAB.
 */
ssize_t http_parse_request(const char *buf, size_t len, struct http_request *req);

/* The state of a chunked body being decoded. */
struct http_chunked {
    /* Payload bytes of the current chunk not yet seen. */
    uint64_t chunk_left;
    /* Payload bytes decoded so far. */
    uint64_t total;
    /* Bytes of the current chunk-size line or trailer field so far. */
    uint32_t line_len;
    unsigned char state;
    unsigned char ndigits;
};

/* Longest chunk-size line (with extensions) and longest trailer field line. */
#define HTTP_CHUNKED_LINE_MAX 4096

/* The value of the hex digit c, or -1 if it is not one. */
int http_hexval(char c);

void http_chunked_init(struct http_chunked *d);

/*
 * Decode the next piece, buf[0..len), of a chunked body (RFC 9112 section 7.1:
 * chunks, chunk extensions, which are skipped, last chunk, trailer fields,
 * which are checked and skipped). The payload found in this piece is copied
 * to out, which needs room for len bytes (the payload is never longer than
 * its encoding), or dropped if out is NULL; *out_len receives its length.
 * out may be buf itself, to decode in place.
 *
 * Returns the number of bytes of buf up to and including the body's last
 * CRLF once the body is complete (what follows belongs to the next message),
 * HTTP_INCOMPLETE when all of buf was consumed and more is needed, or
 * HTTP_BAD. Call again with the next piece after HTTP_INCOMPLETE only;
 * d->total and d->chunk_left tell how large the body is getting.
 */
ssize_t http_chunked_decode(struct http_chunked *d, const char *buf, size_t len, char *out,
                            size_t *out_len);

#endif
