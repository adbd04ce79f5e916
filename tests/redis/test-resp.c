/*
 * The RESP request parser on its own (examples/redis/resp.c): tables of good
 * and bad requests; every truncated prefix of a good request must be
 * incomplete; feeding a request a piece at a time, at a new address each
 * time, must give what parsing it whole gives. Every input is copied flush
 * against an inaccessible page, so reading one byte past it crashes the test.
 */
#include "resp.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b, what)                                                                      \
    CHECK((long long)(a) == (long long)(b), "%s: got %lld, want %lld", what, (long long)(a),       \
          (long long)(b))

/* The guard: a region whose last page is inaccessible. */
static char *region;
static size_t region_len; /* the accessible part */

static void guard_setup(size_t max_input)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    region_len = (max_input + page - 1) / page * page;
    region =
        mmap(NULL, region_len + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || mprotect(region + region_len, page, PROT_NONE) != 0) {
        perror("mmap/mprotect");
        exit(1);
    }
}

/* A copy of s[0..n) that ends where the inaccessible page begins. */
static const char *guarded(const char *s, size_t n)
{
    if (n > region_len) {
        fprintf(stderr, "input of %zu bytes is larger than the guard region\n", n);
        exit(1);
    }
    char *p = region + region_len - n;
    memcpy(p, s, n);
    return p;
}

/* Show bytes readably in failure messages. */
static const char *show(const char *s, size_t n)
{
    static char buf[4][200];
    static int k;
    char *out = buf[k++ % 4];
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof buf[0] - 8; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            o += (size_t)sprintf(out + o, "\\r");
        else if (c == '\n')
            o += (size_t)sprintf(out + o, "\\n");
        else if (c < 32 || c > 126)
            o += (size_t)sprintf(out + o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (o >= sizeof buf[0] - 8)
        o += (size_t)sprintf(out + o, "...");
    out[o] = '\0';
    return out;
}

#define MAXARGS 8

struct good {
    const char *in;
    size_t len;  /* 0: strlen(in) */
    size_t used; /* 0: all of it */
    int argc;
    struct {
        const char *s;
        size_t n; /* 0: strlen(s) */
    } argv[MAXARGS];
};

#define S(x) x, sizeof(x) - 1

static const struct good goods[] = {
    {"*1\r\n$4\r\nPING\r\n", 0, 0, 1, {{"PING", 0}}},
    {"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 0, 0, 2, {{"GET", 0}, {"k", 0}}},
    {"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$3\r\nabc\r\n", 0, 0, 3, {{"SET", 0}, {"", 0}, {"abc", 0}}},
    /* Binary-safe: NUL, CR and LF inside bulks. */
    {S("*2\r\n$4\r\nECHO\r\n$6\r\na\0\r\nb\0\r\n"), 0, 2, {{"ECHO", 0}, {"a\0\r\nb\0", 6}}},
    /* Only the first command is consumed; the rest stays. */
    {"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", 0, 14, 1, {{"PING", 0}}},
    {"*1\r\n$4\r\nPING\r\nGARBAGE", 0, 14, 1, {{"PING", 0}}},
    /* Empty requests: no arguments, consumed. */
    {"*0\r\n", 0, 0, 0, {{NULL, 0}}},
    {"*-1\r\n", 0, 0, 0, {{NULL, 0}}},
    {"*-5\r\nPING\r\n", 0, 5, 0, {{NULL, 0}}},
    /* Redis skips the two bytes after a bulk without looking at them. */
    {"*1\r\n$4\r\nPINGxx", 0, 0, 1, {{"PING", 0}}},
    /* A line end is found by its '\r'; the byte after it is not checked. */
    {"*1\rx$4\r\nPING\r\n", 0, 0, 1, {{"PING", 0}}},
    {"*1\r\n$4\rxPING\r\n", 0, 0, 1, {{"PING", 0}}},
    /* Counts: "0" is fine, a large count within int is accepted. */
    {"*1\r\n$0\r\n\r\n", 0, 0, 1, {{"", 0}}},
    /* Inline requests. */
    {"PING\r\n", 0, 0, 1, {{"PING", 0}}},
    {"PING\n", 0, 0, 1, {{"PING", 0}}},
    {"ping\r\r\n", 0, 0, 1, {{"ping", 0}}},
    {"  SET   a\tb  \r\n", 0, 0, 3, {{"SET", 0}, {"a", 0}, {"b", 0}}},
    {"\r\n", 0, 0, 0, {{NULL, 0}}},
    {"   \n", 0, 0, 0, {{NULL, 0}}},
    {"GET a\r\nGET b\r\n", 0, 7, 2, {{"GET", 0}, {"a", 0}}},
    {"ECHO \"hello world\"\r\n", 0, 0, 2, {{"ECHO", 0}, {"hello world", 0}}},
    {"ECHO \"\\x41\\n\\t\\r\\b\\a\\\\\\q\\\"\"\r\n",
     0,
     0,
     2,
     {{"ECHO", 0}, {"A\n\t\r\b\a\\q\"", 0}}},
    {"ECHO \"\\x4\"\r\n", 0, 0, 2, {{"ECHO", 0}, {"x4", 0}}},
    {"ECHO \"\\x00\"\r\n", 0, 0, 2, {{"ECHO", 0}, {"\0", 1}}},
    {"ECHO 'a\\'b' 'c\\nd'\r\n", 0, 0, 3, {{"ECHO", 0}, {"a'b", 0}, {"c\\nd", 0}}},
    {"ECHO a\"b c\"\r\n", 0, 0, 2, {{"ECHO", 0}, {"ab c", 0}}},
    {"ECHO \"\" ''\r\n", 0, 0, 3, {{"ECHO", 0}, {"", 0}, {"", 0}}},
    {"ECHO a\vb\fc\r\n", 0, 0, 2, {{"ECHO", 0}, {"a\vb\fc", 0}}},
    {"\v\fECHO x\r\n", 0, 0, 2, {{"ECHO", 0}, {"x", 0}}},
};

struct bad {
    const char *in;
    size_t len;
    const char *error;
};

static const struct bad bads[] = {
    {"*x\r\n", 0, "Protocol error: invalid multibulk length"},
    {"*+1\r\n", 0, "Protocol error: invalid multibulk length"},
    {"*01\r\n", 0, "Protocol error: invalid multibulk length"},
    {"*-0\r\n", 0, "Protocol error: invalid multibulk length"},
    {"*1 \r\n", 0, "Protocol error: invalid multibulk length"},
    {"*\r\n", 0, "Protocol error: invalid multibulk length"},
    {"*2147483648\r\n", 0, "Protocol error: invalid multibulk length"},
    {"*99999999999999999999\r\n", 0, "Protocol error: invalid multibulk length"},
    {"*1\r\nx3\r\nfoo\r\n", 0, "Protocol error: expected '$', got 'x'"},
    {"*1\r\n\r\n", 0, "Protocol error: expected '$', got ' '"},
    {"*1\r$4\r\nPING\r\n", 0, "Protocol error: expected '$', got '4'"},
    {"*1\r\n$x\r\nfoo\r\n", 0, "Protocol error: invalid bulk length"},
    {"*1\r\n$-1\r\n", 0, "Protocol error: invalid bulk length"},
    {"*1\r\n$04\r\nPING\r\n", 0, "Protocol error: invalid bulk length"},
    {"*1\r\n$ 4\r\nPING\r\n", 0, "Protocol error: invalid bulk length"},
    {"*1\r\n$\r\n", 0, "Protocol error: invalid bulk length"},
    /* max_bulk is 1000 in these tests. */
    {"*1\r\n$1001\r\n", 0, "Protocol error: invalid bulk length"},
    {"*2\r\n$3\r\nGET\r\n$x\r\n", 0, "Protocol error: invalid bulk length"},
    {"PING \"a\r\n", 0, "Protocol error: unbalanced quotes in request"},
    {"ECHO \"a\"b\r\n", 0, "Protocol error: unbalanced quotes in request"},
    {"ECHO 'a\\'b'c\r\n", 0, "Protocol error: unbalanced quotes in request"},
    {"ECHO 'abc\r\n", 0, "Protocol error: unbalanced quotes in request"},
    {"ECHO \"abc\\\"\r\n", 0, "Protocol error: unbalanced quotes in request"},
};

/* Inputs that are never complete, however they end. */
static const struct bad incompletes[] = {
    {"", 0, NULL},
    {"*", 0, NULL},
    {"*1", 0, NULL},
    {"*1\r", 0, NULL},
    {"*1\r\n$4\r\nPING\r", 0, NULL},
    {"*1\r\n$4\rPING\r\n", 0, NULL}, /* the count line eats "\rP": 4 bytes and 2 more needed */
    {"*2147483647\r\n", 0, NULL},
    {"*1\r\nx3", 0, NULL},     /* no line end yet, so no verdict on the 'x' */
    {S("*1\r\n\0\r\n"), NULL}, /* a NUL hides the line end, as in Redis */
    {S("PI\0NG\r\n"), NULL},
    {S("ECHO a\0b c\r\nPING\r\n"), NULL},
    {"PING", 0, NULL},
    {"PING\r", 0, NULL},
};

static struct resp_parser parser;

static void check_good(const struct good *g, const char *in, size_t len, int rc, size_t used)
{
    size_t want_used = g->used ? g->used : len;
    CHECK_INT(rc, RESP_COMPLETE, show(g->in, len));
    if (rc != RESP_COMPLETE)
        return;
    CHECK_INT(used, want_used, show(g->in, len));
    CHECK_INT(parser.argc, g->argc, show(g->in, len));
    for (int i = 0; i < g->argc && (size_t)i < parser.argc; i++) {
        size_t n = g->argv[i].n ? g->argv[i].n : strlen(g->argv[i].s);
        CHECK(parser.argv[i].len == n && memcmp(parser.argv[i].ptr, g->argv[i].s, n) == 0,
              "%s: argument %d is '%s', want '%s'", show(g->in, len), i,
              show(parser.argv[i].ptr, parser.argv[i].len), show(g->argv[i].s, n));
        /* Plain arguments point into the input, not at a copy. */
        if (g->in[0] == '*')
            CHECK(parser.argv[i].ptr >= in && parser.argv[i].ptr + n <= in + len,
                  "%s: argument %d does not point into the input", show(g->in, len), i);
    }
}

static void test_goods(void)
{
    for (size_t t = 0; t < sizeof goods / sizeof goods[0]; t++) {
        const struct good *g = &goods[t];
        size_t len = g->len ? g->len : strlen(g->in);
        size_t want_used = g->used ? g->used : len;
        size_t used = 0;

        /* Whole. */
        resp_init(&parser, 1000);
        const char *in = guarded(g->in, len);
        int rc = resp_parse(&parser, in, len, &used);
        check_good(g, in, len, rc, used);

        /* Every prefix of the request, parsed afresh, is incomplete. */
        for (size_t n = 0; n < want_used; n++) {
            resp_reset(&parser);
            rc = resp_parse(&parser, guarded(g->in, n), n, &used);
            CHECK_INT(rc, RESP_INCOMPLETE, show(g->in, n));
        }

        /* Fed a byte more each time, resuming, each time at a new address. */
        resp_reset(&parser);
        rc = RESP_INCOMPLETE;
        size_t n = 0;
        for (; n <= len && rc == RESP_INCOMPLETE; n++) {
            in = guarded(g->in, n);
            rc = resp_parse(&parser, in, n, &used);
        }
        CHECK_INT(n - 1, want_used, show(g->in, len));
        check_good(g, in, n - 1, rc, used);
        resp_free(&parser);
    }
}

static void test_bads(void)
{
    for (size_t t = 0; t < sizeof bads / sizeof bads[0]; t++) {
        const struct bad *b = &bads[t];
        size_t len = b->len ? b->len : strlen(b->in);
        size_t used;
        resp_init(&parser, 1000);
        int rc = resp_parse(&parser, guarded(b->in, len), len, &used);
        CHECK_INT(rc, RESP_ERROR, show(b->in, len));
        if (rc == RESP_ERROR)
            CHECK(strcmp(parser.error, b->error) == 0, "%s: error '%s', want '%s'",
                  show(b->in, len), parser.error, b->error);
        /* Prefixes may be incomplete or already wrong, but must not crash. */
        for (size_t n = 0; n < len; n++) {
            resp_reset(&parser);
            rc = resp_parse(&parser, guarded(b->in, n), n, &used);
            CHECK(rc == RESP_INCOMPLETE || rc == RESP_ERROR, "%s: rc %d", show(b->in, n), rc);
        }
        resp_free(&parser);
    }
}

static void test_incompletes(void)
{
    for (size_t t = 0; t < sizeof incompletes / sizeof incompletes[0]; t++) {
        const struct bad *b = &incompletes[t];
        size_t len = b->len ? b->len : strlen(b->in);
        size_t used;
        resp_init(&parser, 1000);
        int rc = resp_parse(&parser, guarded(b->in, len), len, &used);
        CHECK_INT(rc, RESP_INCOMPLETE, show(b->in, len));
        resp_free(&parser);
    }
}

/* Lines and count strings are limited to 64 KB, as in Redis. */
static void test_limits(void)
{
    size_t big = RESP_INLINE_MAX + 1;
    char *buf = malloc(big + 16);
    size_t used;

    memset(buf, 'A', big);
    resp_init(&parser, 1000);
    CHECK_INT(resp_parse(&parser, guarded(buf, big - 1), big - 1, &used), RESP_INCOMPLETE,
              "64 KB inline line");
    CHECK_INT(resp_parse(&parser, guarded(buf, big), big, &used), RESP_ERROR,
              "64 KB + 1 inline line");
    CHECK(parser.error && strcmp(parser.error, "Protocol error: too big inline request") == 0,
          "error '%s'", parser.error);

    /* A NUL hides the line end, and then only the size limit ends it. */
    resp_reset(&parser);
    memcpy(buf, "PI\0NG\r\n", 7);
    CHECK_INT(resp_parse(&parser, guarded(buf, big), big, &used), RESP_ERROR, "NUL then 64 KB");

    buf[0] = '*';
    memset(buf + 1, '1', big - 1);
    resp_reset(&parser);
    CHECK_INT(resp_parse(&parser, guarded(buf, big), big, &used), RESP_ERROR, "long count");
    CHECK(parser.error && strcmp(parser.error, "Protocol error: too big mbulk count string") == 0,
          "error '%s'", parser.error);

    memcpy(buf, "*1\r\n$", 5);
    memset(buf + 5, '1', big);
    resp_reset(&parser);
    CHECK_INT(resp_parse(&parser, guarded(buf, big + 5), big + 5, &used), RESP_ERROR,
              "long bulk count");
    CHECK(parser.error && strcmp(parser.error, "Protocol error: too big bulk count string") == 0,
          "error '%s'", parser.error);

    /* A bulk of exactly max_bulk is taken, one more byte is not. */
    resp_reset(&parser);
    int n = sprintf(buf, "*1\r\n$1000\r\n");
    memset(buf + n, 'v', 1000);
    memcpy(buf + n + 1000, "\r\n", 2);
    CHECK_INT(resp_parse(&parser, guarded(buf, (size_t)n + 1002), (size_t)n + 1002, &used),
              RESP_COMPLETE, "bulk of max_bulk");
    CHECK_INT(parser.argv[0].len, 1000, "bulk length");
    resp_free(&parser);
    free(buf);
}

/* More arguments than the parser holds inline, arriving in pieces. */
static void test_many_args(void)
{
    enum { N = 1000 };
    char *buf = malloc(N * 16 + 16);
    size_t len = (size_t)sprintf(buf, "*%d\r\n", N);
    for (int i = 0; i < N; i++)
        len += (size_t)sprintf(buf + len, "$%d\r\n%d\r\n", i < 10 ? 1 : i < 100 ? 2 : 3, i);
    size_t used;
    resp_init(&parser, 1000);
    int rc = RESP_INCOMPLETE;
    size_t n = 0;
    const char *in = NULL;
    for (; rc == RESP_INCOMPLETE; n += 7) {
        size_t m = n < len ? n : len;
        in = guarded(buf, m);
        rc = resp_parse(&parser, in, m, &used);
        if (m == len)
            break;
    }
    CHECK_INT(rc, RESP_COMPLETE, "1000 arguments in pieces");
    CHECK_INT(used, len, "1000 arguments used");
    CHECK_INT(parser.argc, N, "argc");
    char want[16];
    for (int i = 0; i < N && (size_t)i < parser.argc; i++) {
        int wl = sprintf(want, "%d", i);
        CHECK(parser.argv[i].len == (size_t)wl && memcmp(parser.argv[i].ptr, want, wl) == 0,
              "argument %d is '%s'", i, show(parser.argv[i].ptr, parser.argv[i].len));
    }
    /* The parser is reusable at once, with no allocation left to make. */
    rc = resp_parse(&parser, guarded("*1\r\n$4\r\nPING\r\n", 14), 14, &used);
    CHECK_INT(rc, RESP_COMPLETE, "after 1000 arguments");
    CHECK_INT(parser.argc, 1, "argc after");
    resp_free(&parser);
    free(buf);
}

static void test_strtoll(void)
{
    static const struct {
        const char *s;
        int ok;
        long long v;
    } t[] = {
        {"0", 1, 0},
        {"1", 1, 1},
        {"-1", 1, -1},
        {"42", 1, 42},
        {"9223372036854775807", 1, LLONG_MAX},
        {"-9223372036854775808", 1, LLONG_MIN},
        {"9223372036854775808", 0, 0},
        {"-9223372036854775809", 0, 0},
        {"18446744073709551616", 0, 0},
        {"", 0, 0},
        {"-", 0, 0},
        {"-0", 0, 0},
        {"00", 0, 0},
        {"01", 0, 0},
        {"+1", 0, 0},
        {" 1", 0, 0},
        {"1 ", 0, 0},
        {"1.5", 0, 0},
        {"1e3", 0, 0},
        {"123456789012345678901", 0, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        long long v = 12345;
        size_t n = strlen(t[i].s);
        int ok = resp_strtoll(guarded(t[i].s, n), n, &v);
        CHECK_INT(ok, t[i].ok, t[i].s);
        if (ok && t[i].ok)
            CHECK_INT(v, t[i].v, t[i].s);
    }
}

int main(void)
{
    guard_setup(2 * RESP_INLINE_MAX + 64);
    test_goods();
    test_bads();
    test_incompletes();
    test_limits();
    test_many_args();
    test_strtoll();
    printf("resp: %d passed, %d failed\n", checks - failures, failures);
    return failures != 0;
}
