/*
 * The HTTP example's request parser and chunked decoder, driven by tables.
 *
 * Every input is copied so that its last byte sits just before a page that
 * cannot be read (mmap + mprotect): a parser that reads one byte too far
 * crashes here. For each valid input every truncated prefix must give -2
 * (incomplete), never an error or a success; for each invalid one the full
 * input must give the error and no prefix may succeed. The chunked decoder is
 * also fed each body byte by byte and split at every point, and must decode
 * the same payload every way. A seeded mutation loop then throws damaged
 * requests at both and checks that every answer stays within the input.
 */
#include "http_parser.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int failures, checks;

static void fail(const char *what, const char *fmt, ...)
{
    va_list ap;
    failures++;
    fprintf(stderr, "FAIL [%s]: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define CHECK_INT(what, got, want)                                                                 \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        checks++;                                                                                  \
        if (g_ != w_)                                                                              \
            fail(what, "%s:%d: %s is %lld, expected %lld", __FILE__, __LINE__, #got, g_, w_);      \
    } while (0)

#define CHECK_MEM(what, got, got_len, want)                                                        \
    do {                                                                                           \
        size_t gl_ = (got_len), wl_ = strlen(want);                                                \
        checks++;                                                                                  \
        if (gl_ != wl_ || memcmp((got), (want), wl_) != 0)                                         \
            fail(what, "%s:%d: %s is '%.*s', expected '%s'", __FILE__, __LINE__, #got, (int)gl_,   \
                 (const char *)(got), (want));                                                     \
    } while (0)

/* ---- inputs flush against an unreadable page ---- */

#define ROOM (256 * 1024)
static char *region; /* ROOM readable bytes, then a PROT_NONE page */

static void guard_init(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    char *m =
        mmap(NULL, ROOM + (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m + ROOM, (size_t)ps, PROT_NONE) != 0) {
        perror("mmap/mprotect");
        exit(1);
    }
    region = m;
}

/* A copy of data[0..len) that ends where the readable memory ends. */
static char *flush_copy(const void *data, size_t len)
{
    if (len > ROOM) {
        fprintf(stderr, "input of %zu bytes is too long for the guard region\n", len);
        exit(1);
    }
    char *p = region + ROOM - len;
    memcpy(p, data, len);
    return p;
}

/* ---- request heads ---- */

struct hdr {
    const char *name, *value;
};

struct good_req {
    const char *what;
    const char *in;
    size_t head_len; /* 0: all of in */
    const char *method, *target;
    int minor;
    struct hdr h[8];
};

static const struct good_req good_reqs[] = {
    {"minimal", "GET / HTTP/1.1\r\n\r\n", 0, "GET", "/", 1, {{0}}},
    {"curl",
     "GET /hoge?a=b&c HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: curl/7.88.1\r\n"
     "Accept: */*\r\n\r\n",
     0,
     "GET",
     "/hoge?a=b&c",
     1,
     {{"Host", "example.com:8080"}, {"User-Agent", "curl/7.88.1"}, {"Accept", "*/*"}}},
    {"ab (HTTP/1.0)",
     "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: 127.0.0.1:8080\r\n"
     "User-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n",
     0,
     "GET",
     "/",
     0,
     {{"Connection", "Keep-Alive"},
      {"Host", "127.0.0.1:8080"},
      {"User-Agent", "ApacheBench/2.3"},
      {"Accept", "*/*"}}},
    {"body follows",
     "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
     sizeof "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n" - 1,
     "POST",
     "/echo",
     1,
     {{"Host", "a"}, {"Content-Length", "5"}}},
    {"next request follows",
     "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
     sizeof "GET /a HTTP/1.1\r\n\r\n" - 1,
     "GET",
     "/a",
     1,
     {{0}}},
    {"empty lines first", "\r\n\r\n\nGET / HTTP/1.1\r\n\r\n", 0, "GET", "/", 1, {{0}}},
    {"bare LF", "GET / HTTP/1.0\nHost: x\n\n", 0, "GET", "/", 0, {{"Host", "x"}}},
    {"mixed line ends",
     "GET / HTTP/1.1\nA: 1\r\nB: 2\n\r\n",
     0,
     "GET",
     "/",
     1,
     {{"A", "1"}, {"B", "2"}}},
    {"empty value",
     "GET / HTTP/1.1\r\nCookie:\r\nX: \r\n\r\n",
     0,
     "GET",
     "/",
     1,
     {{"Cookie", ""}, {"X", ""}}},
    {"whitespace around value",
     "GET / HTTP/1.1\r\nX: \t a  b \t \r\n\r\n",
     0,
     "GET",
     "/",
     1,
     {{"X", "a  b"}}},
    {"all token characters",
     "!#$%&'*+-.^_`|~09azAZ / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
     0,
     "!#$%&'*+-.^_`|~09azAZ",
     "/",
     1,
     {{"!#$%&'*+-.^_`|~09azAZ", "v"}}},
    {"obs-text",
     "GET /caf\xc3\xa9 HTTP/1.1\r\nX: caf\xc3\xa9 \x80\xff\r\n\r\n",
     0,
     "GET",
     "/caf\xc3\xa9",
     1,
     {{"X", "caf\xc3\xa9 \x80\xff"}}},
    {"value punctuation",
     "GET / HTTP/1.1\r\nX: a:b, \"c\" (d) <e>;f=g\\h\r\n\r\n",
     0,
     "GET",
     "/",
     1,
     {{"X", "a:b, \"c\" (d) <e>;f=g\\h"}}},
    {"absolute form",
     "GET http://example.com:80/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n",
     0,
     "GET",
     "http://example.com:80/p?q",
     1,
     {{"Host", "example.com"}}},
    {"asterisk form",
     "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
     0,
     "OPTIONS",
     "*",
     1,
     {{"Host", "h"}}},
    {"minor version 9", "GET / HTTP/1.9\r\n\r\n", 0, "GET", "/", 9, {{0}}},
    {"unknown method", "BREW /pot HTTP/1.1\r\n\r\n", 0, "BREW", "/pot", 1, {{0}}},
};

struct bad_req {
    const char *what;
    const char *in;
    size_t len;
    int want;   /* HTTP_BAD or HTTP_TOO_MANY_HEADERS */
    size_t cap; /* header slots; 0 for 16 */
};

#define BAD(what, s)                                                                               \
    {                                                                                              \
        what, s, sizeof s - 1, HTTP_BAD, 0                                                         \
    }

static const struct bad_req bad_reqs[] = {
    BAD("empty method", " / HTTP/1.1\r\n\r\n"),
    BAD("two spaces", "GET  / HTTP/1.1\r\n\r\n"),
    BAD("space before version", "GET /  HTTP/1.1\r\n\r\n"),
    BAD("space after version", "GET / HTTP/1.1 \r\n\r\n"),
    BAD("tab separator", "GET\t/ HTTP/1.1\r\n\r\n"),
    BAD("no version", "GET /\r\n\r\n"),
    BAD("HTTP/0.9 style", "GET /\n"),
    BAD("HTTP/2.0", "GET / HTTP/2.0\r\n\r\n"),
    BAD("lower-case http", "GET / http/1.1\r\n\r\n"),
    BAD("version letter", "GET / HTTP/1.x\r\n\r\n"),
    BAD("long version", "GET / HTTP/1.10\r\n\r\n"),
    BAD("method with @", "G@T / HTTP/1.1\r\n\r\n"),
    BAD("method with NUL", "G\0T / HTTP/1.1\r\n\r\n"),
    BAD("target with NUL", "GET /\0 HTTP/1.1\r\n\r\n"),
    BAD("target with DEL", "GET /\x7f HTTP/1.1\r\n\r\n"),
    BAD("target with control", "GET /\x01 HTTP/1.1\r\n\r\n"),
    BAD("CR alone in request line", "GET / HTTP/1.1\rX\n\r\n"),
    BAD("CR alone before request", "\rGET / HTTP/1.1\r\n\r\n"),
    BAD("no colon", "GET / HTTP/1.1\r\nHost example.com\r\n\r\n"),
    BAD("space before colon", "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n"),
    BAD("empty name", "GET / HTTP/1.1\r\n: x\r\n\r\n"),
    BAD("name with space", "GET / HTTP/1.1\r\nX Y: z\r\n\r\n"),
    BAD("name with (", "GET / HTTP/1.1\r\nX(: z\r\n\r\n"),
    BAD("obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
    BAD("obs-fold tab", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"),
    BAD("NUL in value", "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"),
    BAD("control in value", "GET / HTTP/1.1\r\nX: a\x1b b\r\n\r\n"),
    BAD("DEL in value", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"),
    BAD("CR alone in value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"),
    BAD("CR alone at the end", "GET / HTTP/1.1\r\nX: a\r\n\rX"),
    BAD("CR alone after line", "GET / HTTP/1.1\r\n\rX"),
    {"too many headers", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
     sizeof "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n" - 1, HTTP_TOO_MANY_HEADERS, 2},
};

static ssize_t parse(const char *data, size_t len, struct http_request *req, struct http_header *h,
                     size_t cap)
{
    const char *buf = flush_copy(data, len);
    req->headers = h;
    req->num_headers = cap;
    return http_parse_request(buf, len, req);
}

static void test_good_requests(void)
{
    for (size_t t = 0; t < sizeof good_reqs / sizeof good_reqs[0]; t++) {
        const struct good_req *g = &good_reqs[t];
        size_t len = strlen(g->in), head = g->head_len ? g->head_len : len, nh = 0;
        struct http_header h[16];
        struct http_request req;
        while (g->h[nh].name)
            nh++;

        ssize_t n = parse(g->in, len, &req, h, 16);
        CHECK_INT(g->what, n, head);
        if (n < 0)
            continue;
        CHECK_MEM(g->what, req.method, req.method_len, g->method);
        CHECK_MEM(g->what, req.target, req.target_len, g->target);
        CHECK_INT(g->what, req.minor_version, g->minor);
        CHECK_INT(g->what, req.num_headers, nh);
        for (size_t i = 0; i < nh && i < req.num_headers; i++) {
            CHECK_MEM(g->what, h[i].name, h[i].name_len, g->h[i].name);
            CHECK_MEM(g->what, h[i].value, h[i].value_len, g->h[i].value);
        }
        /* Exactly enough header slots is enough; one fewer is too few. */
        CHECK_INT(g->what, parse(g->in, len, &req, h, nh), head);
        if (nh > 0)
            CHECK_INT(g->what, parse(g->in, len, &req, h, nh - 1), HTTP_TOO_MANY_HEADERS);
        /* Every truncated head is incomplete, and only that. */
        for (size_t k = 0; k < head; k++) {
            n = parse(g->in, k, &req, h, 16);
            if (n != HTTP_INCOMPLETE)
                fail(g->what, "prefix of %zu bytes gave %zd, expected -2", k, n);
            checks++;
        }
    }
}

static void test_bad_requests(void)
{
    for (size_t t = 0; t < sizeof bad_reqs / sizeof bad_reqs[0]; t++) {
        const struct bad_req *b = &bad_reqs[t];
        size_t cap = b->cap ? b->cap : 16;
        struct http_header h[16];
        struct http_request req;
        CHECK_INT(b->what, parse(b->in, b->len, &req, h, cap), b->want);
        for (size_t k = 0; k < b->len; k++) {
            ssize_t n = parse(b->in, k, &req, h, cap);
            if (n != HTTP_INCOMPLETE && n != b->want)
                fail(b->what, "prefix of %zu bytes gave %zd", k, n);
            checks++;
        }
    }
}

/* ---- chunked bodies ---- */

struct good_chunked {
    const char *what;
    const char *in;
    size_t body_len; /* 0: all of in */
    const char *payload;
};

static const struct good_chunked good_chunked[] = {
    {"one chunk", "5\r\nhello\r\n0\r\n\r\n", 0, "hello"},
    {"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 0, "hello world"},
    {"empty body", "0\r\n\r\n", 0, ""},
    {"hex digits", "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n", 0, "0123456789abcdefghijk"},
    {"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", 0, "hello"},
    {"extensions", "5;a=1;b=\"x y\"\r\nhello\r\n0;last\r\n\r\n", 0, "hello"},
    {"whitespace before extension", "5 \t;a=1\r\nhello\r\n0\r\n\r\n", 0, "hello"},
    {"trailers", "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2 3\r\n\r\n", 0, "abc"},
    {"bare LF", "3\nabc\n0\nX: y\n\n", 0, "abc"},
    {"CRLF in payload", "4\r\n\r\n\r\n\r\n0\r\n\r\n", 0, "\r\n\r\n"},
    {"next request follows", "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
     sizeof "3\r\nabc\r\n0\r\n\r\n" - 1, "abc"},
};

#define BADC(what, s)                                                                              \
    {                                                                                              \
        what, s, sizeof s - 1                                                                      \
    }

static const struct bad_chunked {
    const char *what;
    const char *in;
    size_t len;
} bad_chunked[] = {
    BADC("not hex", "x\r\n"),
    BADC("no size", "\r\n"),
    BADC("extension without size", ";a\r\n"),
    BADC("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n"),
    BADC("negative", "-5\r\nhello\r\n0\r\n\r\n"),
    BADC("sixteen digits", "1000000000000000\r\n"),
    BADC("CR alone after size", "5\rX"),
    BADC("junk after size", "5x\r\nhello\r\n"),
    BADC("payload too long", "5\r\nhelloX\r\n0\r\n\r\n"),
    BADC("CR alone after payload", "5\r\nhello\rX"),
    BADC("control in extension", "5;a\x01\r\nhello\r\n0\r\n\r\n"),
    BADC("NUL in extension", "5;a\0\r\nhello\r\n0\r\n\r\n"),
    BADC("trailer starts with space", "0\r\n X: y\r\n\r\n"),
    BADC("trailer starts with colon", "0\r\n: y\r\n\r\n"),
    BADC("control in trailer", "0\r\nX: \x02\r\n\r\n"),
    BADC("CR alone in trailer", "0\r\nX: y\rZ\r\n\r\n"),
    BADC("CR alone at the end", "0\r\n\rX"),
};

/* Decode in[0..len) in pieces of the given sizes (the last one takes the
 * rest), each flush against the guard page. Returns the last result and the
 * payload and bytes consumed over all calls. */
static ssize_t decode_pieces(const char *in, size_t len, const size_t *sizes, size_t nsizes,
                             char *payload, size_t *payload_len, size_t *consumed)
{
    struct http_chunked d;
    ssize_t n = HTTP_INCOMPLETE;
    size_t off = 0, p = 0;
    http_chunked_init(&d);
    for (size_t i = 0; i < nsizes || off < len; i++) {
        size_t k = i < nsizes && sizes[i] < len - off ? sizes[i] : len - off;
        size_t got = 0;
        n = http_chunked_decode(&d, flush_copy(in + off, k), k, payload + p, &got);
        p += got;
        if (n >= 0) {
            off += (size_t)n;
            break;
        }
        off += k;
        if (n != HTTP_INCOMPLETE || off == len)
            break;
    }
    *payload_len = p;
    *consumed = off;
    return n;
}

static void check_good_chunked(const char *what, const char *in, size_t len, size_t body_len,
                               const char *payload, size_t payload_len)
{
    char *out = malloc(len + 1);
    size_t got, used;

    /* At once. */
    ssize_t n = decode_pieces(in, len, NULL, 0, out, &got, &used);
    CHECK_INT(what, n, body_len);
    CHECK_INT(what, got, payload_len);
    checks++;
    if (got != payload_len || memcmp(out, payload, got) != 0)
        fail(what, "payload differs when decoded at once");

    /* Every prefix, to a fresh decoder: incomplete, with a prefix of the
     * payload. */
    for (size_t k = 0; k < body_len; k++) {
        n = decode_pieces(in, k, NULL, 0, out, &got, &used);
        checks++;
        if (n != HTTP_INCOMPLETE || got > payload_len || memcmp(out, payload, got) != 0)
            fail(what, "prefix of %zu bytes gave %zd with %zu payload bytes", k, n, got);
    }

    /* Byte by byte, and split in two at every point. */
    size_t *each = malloc(sizeof *each * (len + 1));
    for (size_t i = 0; i <= len; i++)
        each[i] = 1;
    n = decode_pieces(in, len, each, len, out, &got, &used);
    checks++;
    if (n < 0 || used != body_len || got != payload_len || memcmp(out, payload, got) != 0)
        fail(what, "byte by byte gave %zd, %zu consumed, %zu payload bytes", n, used, got);
    free(each);
    for (size_t k = 0; k <= body_len; k++) {
        size_t two[2] = {k, len};
        n = decode_pieces(in, len, two, 2, out, &got, &used);
        checks++;
        if (used != body_len || got != payload_len || memcmp(out, payload, got) != 0)
            fail(what, "split at %zu gave %zd, %zu consumed, %zu payload bytes", k, n, used, got);
    }

    /* In place, and with the payload dropped. */
    struct http_chunked d;
    char *copy = malloc(len + 1);
    memcpy(copy, in, len);
    http_chunked_init(&d);
    n = http_chunked_decode(&d, copy, len, copy, &got);
    CHECK_INT(what, n, body_len);
    checks++;
    if (got != payload_len || memcmp(copy, payload, got) != 0)
        fail(what, "payload differs when decoded in place");
    http_chunked_init(&d);
    n = http_chunked_decode(&d, flush_copy(in, len), len, NULL, &got);
    CHECK_INT(what, n, body_len);
    CHECK_INT(what, got, payload_len);
    CHECK_INT(what, d.total, payload_len);
    free(copy);
    free(out);
}

static void test_good_chunked(void)
{
    for (size_t t = 0; t < sizeof good_chunked / sizeof good_chunked[0]; t++) {
        const struct good_chunked *g = &good_chunked[t];
        size_t len = strlen(g->in);
        check_good_chunked(g->what, g->in, len, g->body_len ? g->body_len : len, g->payload,
                           strlen(g->payload));
    }

    /* A chunk larger than any one read, split at the 64 KiB boundary too. */
    size_t big = 70000;
    char *payload = malloc(big), *in = malloc(big + 64);
    for (size_t i = 0; i < big; i++)
        payload[i] = (char)('a' + i % 26);
    int hl = snprintf(in, 64, "%zx\r\n", big);
    memcpy(in + hl, payload, big);
    memcpy(in + hl + big, "\r\n0\r\n\r\n", 7);
    size_t len = (size_t)hl + big + 7;
    size_t got, used, sizes[2] = {65536, len};
    char *out = malloc(len);
    ssize_t n = decode_pieces(in, len, sizes, 2, out, &got, &used);
    CHECK_INT("big chunk", n, len - 65536); /* of the second piece */
    CHECK_INT("big chunk", used, len);
    CHECK_INT("big chunk", got, big);
    checks++;
    if (got != big || memcmp(out, payload, big) != 0)
        fail("big chunk", "payload differs");
    free(out);
    free(in);
    free(payload);

    /* Fifteen significant hex digits are allowed (the body is then just
     * incomplete); a sixteenth is not (in bad_chunked). */
    struct http_chunked d;
    http_chunked_init(&d);
    const char *s = "fffffffffffffff\r\nab";
    n = http_chunked_decode(&d, flush_copy(s, strlen(s)), strlen(s), NULL, &got);
    CHECK_INT("fifteen digits", n, HTTP_INCOMPLETE);
    CHECK_INT("fifteen digits", d.total, 2);
    CHECK_INT("fifteen digits", d.chunk_left, 0xfffffffffffffffULL - 2);

    /* A chunk-size line longer than the limit is refused. */
    size_t ll = HTTP_CHUNKED_LINE_MAX + 16;
    char *longext = malloc(ll);
    memset(longext, 'a', ll);
    memcpy(longext, "5;", 2);
    http_chunked_init(&d);
    CHECK_INT("long extension", http_chunked_decode(&d, flush_copy(longext, ll), ll, NULL, &got),
              HTTP_BAD);
    free(longext);
}

static void test_bad_chunked(void)
{
    char out[256];
    for (size_t t = 0; t < sizeof bad_chunked / sizeof bad_chunked[0]; t++) {
        const struct bad_chunked *b = &bad_chunked[t];
        size_t got, used;
        CHECK_INT(b->what, decode_pieces(b->in, b->len, NULL, 0, out, &got, &used), HTTP_BAD);
        for (size_t k = 0; k < b->len; k++) {
            ssize_t n = decode_pieces(b->in, k, NULL, 0, out, &got, &used);
            checks++;
            if (n != HTTP_INCOMPLETE && n != HTTP_BAD)
                fail(b->what, "prefix of %zu bytes gave %zd", k, n);
        }
        /* Byte by byte, the error is found all the same. */
        size_t each[256];
        for (size_t i = 0; i < b->len; i++)
            each[i] = 1;
        CHECK_INT(b->what, decode_pieces(b->in, b->len, each, b->len, out, &got, &used), HTTP_BAD);
    }
}

/* ---- damaged inputs ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

static void mutate(char *buf, size_t *len, size_t cap)
{
    static const char interesting[] = "\r\n :;\t\0\x7f\x80"
                                      "0aF-";
    int edits = 1 + (int)(next_rand() % 4);
    for (int e = 0; e<edits && * len> 0; e++) {
        size_t at = next_rand() % *len;
        switch (next_rand() % 4) {
        case 0:
            buf[at] = (char)next_rand();
            break;
        case 1:
            buf[at] = interesting[next_rand() % (sizeof interesting - 1)];
            break;
        case 2:
            memmove(buf + at, buf + at + 1, *len - at - 1);
            (*len)--;
            break;
        default:
            if (*len < cap) {
                memmove(buf + at + 1, buf + at, *len - at);
                buf[at] = interesting[next_rand() % (sizeof interesting - 1)];
                (*len)++;
            }
            break;
        }
    }
}

static void test_damaged(void)
{
    char buf[512], out[512];
    int rounds = getenv("EVN_TEST_QUICK") ? 20000 : 200000;
    for (int r = 0; r < rounds; r++) {
        struct http_header h[16];
        struct http_request req = {.headers = h, .num_headers = 16};
        size_t len;
        if (r % 2 == 0) {
            const struct good_req *g =
                &good_reqs[next_rand() % (sizeof good_reqs / sizeof good_reqs[0])];
            len = strlen(g->in);
            memcpy(buf, g->in, len);
            mutate(buf, &len, sizeof buf);
            const char *in = flush_copy(buf, len);
            ssize_t n = http_parse_request(in, len, &req);
            checks++;
            if (n > (ssize_t)len ||
                (n < 0 && n != HTTP_BAD && n != HTTP_INCOMPLETE && n != HTTP_TOO_MANY_HEADERS)) {
                fail("damaged request", "round %d gave %zd for %zu bytes", r, n, len);
                continue;
            }
            if (n < 0)
                continue;
            /* What it found lies within the head it measured. */
            checks++;
            if (req.method < in || req.target + req.target_len > in + n)
                fail("damaged request", "round %d: request line outside the input", r);
            for (size_t i = 0; i < req.num_headers; i++) {
                if (h[i].name < in || h[i].value + h[i].value_len > in + n)
                    fail("damaged request", "round %d: header outside the input", r);
            }
        } else {
            const struct good_chunked *g =
                &good_chunked[next_rand() % (sizeof good_chunked / sizeof good_chunked[0])];
            len = strlen(g->in);
            memcpy(buf, g->in, len);
            mutate(buf, &len, sizeof buf);
            struct http_chunked d;
            size_t got;
            http_chunked_init(&d);
            ssize_t n = http_chunked_decode(&d, flush_copy(buf, len), len, out, &got);
            checks++;
            if (n > (ssize_t)len || got > len || (n < 0 && n != HTTP_BAD && n != HTTP_INCOMPLETE))
                fail("damaged chunked", "round %d gave %zd with %zu payload bytes", r, n, got);
        }
    }
}

int main(void)
{
    guard_init();
    test_good_requests();
    test_bad_requests();
    test_good_chunked();
    test_bad_chunked();
    test_damaged();
    printf("http parser: %d checks, %d failed\n", checks, failures);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures != 0;
}
