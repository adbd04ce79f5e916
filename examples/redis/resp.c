/*
 * The RESP2 request parser: see resp.h. The behaviour follows what a real
 * Redis 7 server does with the same bytes (learnt by sending it requests),
 * so that replies and protocol errors match byte for byte.
 */
#include "resp.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An inline line that can never end: a NUL came before any '\n'. */
#define BLOCKED ((size_t)-1)

void resp_init(struct resp_parser *p, size_t max_bulk)
{
    memset(p, 0, sizeof *p);
    p->max_bulk = max_bulk;
    p->argv = p->small;
    p->cap = RESP_SMALL_ARGS;
}

void resp_reset(struct resp_parser *p)
{
    p->argc = 0;
    p->error = NULL;
    p->pos = 0;
    p->nargs = 0;
}

void resp_free(struct resp_parser *p)
{
    if (p->argv != p->small)
        free(p->argv);
    free(p->scratch);
    resp_init(p, p->max_bulk);
}

int resp_strtoll(const char *s, size_t len, long long *out)
{
    size_t i = 0;
    unsigned long long v = 0;
    bool neg = false;
    /* 20 characters hold "-9223372036854775808". */
    if (len == 0 || len > 20)
        return 0;
    if (len == 1 && s[0] == '0') {
        *out = 0;
        return 1;
    }
    if (s[0] == '-') {
        neg = true;
        i = 1;
        if (len == 1)
            return 0;
    }
    if (s[i] < '1' || s[i] > '9')
        return 0;
    if (len - i <= 18) {
        /* Up to 18 digits cannot overflow: no check per digit. */
        for (; i < len; i++) {
            unsigned d = (unsigned)(unsigned char)s[i] - '0';
            if (d > 9)
                return 0;
            v = v * 10 + d;
        }
        *out = neg ? -(long long)v : (long long)v;
        return 1;
    }
    for (; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (ULLONG_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return 0;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return 0;
        *out = (long long)v;
    }
    return 1;
}

static int fail(struct resp_parser *p, const char *msg)
{
    p->error = msg;
    return RESP_ERROR;
}

/*
 * Redis finds a line end with strchr() on its NUL-terminated buffer: a NUL
 * byte before the wanted character hides it. Do the same, so the same bytes
 * get the same answer.
 */
static const char *find_char(const char *s, const char *end, char ch)
{
    const char *hit = memchr(s, ch, (size_t)(end - s));
    if (!hit || memchr(s, '\0', (size_t)(hit - s)))
        return NULL;
    return hit;
}

static int __attribute__((noinline)) grow_args(struct resp_parser *p)
{
    {
        size_t ncap = p->cap * 2;
        struct resp_arg *na;
        if (p->argv == p->small) {
            na = malloc(ncap * sizeof *na);
            if (na)
                memcpy(na, p->small, sizeof p->small);
        } else {
            na = realloc(p->argv, ncap * sizeof *na);
        }
        if (!na)
            return -1;
        p->argv = na;
        p->cap = ncap;
    }
    return 0;
}

static inline int push_arg(struct resp_parser *p, const char *ptr, size_t off, size_t len)
{
    if (p->argc == p->cap && grow_args(p) < 0)
        return -1;
    p->argv[p->argc].ptr = ptr;
    p->argv[p->argc].off = off;
    p->argv[p->argc].len = len;
    p->argc++;
    return 0;
}

static int complete(struct resp_parser *p, size_t *used, size_t n)
{
    *used = n;
    p->pos = 0;
    p->nargs = 0;
    return RESP_COMPLETE;
}

static int bad_prefix(struct resp_parser *p, char got)
{
    /* Redis puts a '\r' or '\n' of the message as a space. */
    if (got == '\r' || got == '\n')
        got = ' ';
    snprintf(p->errbuf, sizeof p->errbuf, "Protocol error: expected '$', got '%c'", got);
    return fail(p, p->errbuf);
}

/*
 * The common case of a count line, "$3\r\n" or "*2\r\n", in one pass: if
 * s[1..] is a plain decimal of 1 to 18 digits (no leading zero but in "0")
 * followed by '\r' and one more byte, set *n and return the '\r'. Anything
 * else returns NULL and takes the general path, which gives the same
 * answer for these bytes, so that only the speed differs.
 */
static const char *quick_count(const char *s, const char *end, long long *n)
{
    const char *q = s + 1;
    const char *lim = end - q > 18 ? q + 18 : end;
    unsigned long long v = 0;
    while (q < lim && (unsigned)(unsigned char)*q - '0' <= 9) {
        v = v * 10 + ((unsigned)(unsigned char)*q - '0');
        q++;
    }
    if (q == s + 1 || end - q < 2 || *q != '\r' || (s[1] == '0' && q - s > 2))
        return NULL;
    *n = (long long)v;
    return q;
}

static int parse_multibulk(struct resp_parser *p, const char *buf, size_t len, size_t *used)
{
    const char *end = buf + len;
    if (p->nargs == 0) {
        long long n;
        const char *cr = quick_count(buf, end, &n);
        if (cr && n <= INT_MAX)
            goto counted;
        cr = find_char(buf, end, '\r');
        if (!cr)
            return len > RESP_INLINE_MAX ? fail(p, "Protocol error: too big mbulk count string")
                                         : RESP_INCOMPLETE;
        /* The byte after '\r' must be there; like Redis, it is not checked. */
        if (end - cr < 2)
            return RESP_INCOMPLETE;
        if (!resp_strtoll(buf + 1, (size_t)(cr - buf - 1), &n) || n > INT_MAX)
            return fail(p, "Protocol error: invalid multibulk length");
counted:
        p->argc = 0;
        if (n <= 0)
            return complete(p, used, (size_t)(cr + 2 - buf));
        p->nargs = n;
        p->pos = (size_t)(cr + 2 - buf);
    }
    while ((long long)p->argc < p->nargs) {
        const char *h = buf + p->pos;
        long long n;
        const char *cr = NULL;
        if (h < end && *h == '$' && (cr = quick_count(h, end, &n)) &&
            (unsigned long long)n <= p->max_bulk)
            goto counted_bulk;
        cr = find_char(h, end, '\r');
        if (!cr)
            return (size_t)(end - h) > RESP_INLINE_MAX
                       ? fail(p, "Protocol error: too big bulk count string")
                       : RESP_INCOMPLETE;
        if (end - cr < 2)
            return RESP_INCOMPLETE;
        if (*h != '$')
            return bad_prefix(p, *h);
        if (!resp_strtoll(h + 1, (size_t)(cr - h - 1), &n) || n < 0 ||
            (unsigned long long)n > p->max_bulk)
            return fail(p, "Protocol error: invalid bulk length");
counted_bulk:;
        const char *data = cr + 2;
        /* The bulk and the two bytes after it, which Redis skips unchecked. */
        if ((size_t)(end - data) < (size_t)n + 2)
            return RESP_INCOMPLETE;
        if (push_arg(p, NULL, (size_t)(data - buf), (size_t)n) < 0)
            return fail(p, "out of memory");
        p->pos = (size_t)(data - buf) + (size_t)n + 2;
    }
    /* Offsets, not pointers, survive the input moving between calls. */
    for (size_t i = 0; i < p->argc; i++)
        p->argv[i].ptr = buf + p->argv[i].off;
    return complete(p, used, p->pos);
}

/* C's isspace() in the C locale, which Redis's inline splitting uses. */
static bool is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char unescape(char c)
{
    switch (c) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'a':
        return '\a';
    default:
        return c;
    }
}

/*
 * Copy the quoted section at *sp (its opening quote) into *op, unescaping,
 * up to its closing quote, which ends the argument and must be followed by a
 * space or the end of the line. Returns -1 if the quotes do not balance.
 */
static int take_quoted(const char **sp, const char *e, char **op)
{
    const char *s = *sp;
    char *o = *op;
    char q = *s++;
    for (;;) {
        if (s == e)
            return -1;
        if (q == '"' && *s == '\\' && e - s >= 4 && s[1] == 'x' && hex_value(s[2]) >= 0 &&
            hex_value(s[3]) >= 0) {
            *o++ = (char)(hex_value(s[2]) * 16 + hex_value(s[3]));
            s += 4;
        } else if (q == '"' && *s == '\\' && e - s >= 2) {
            *o++ = unescape(s[1]);
            s += 2;
        } else if (q == '\'' && *s == '\\' && e - s >= 2 && s[1] == '\'') {
            *o++ = '\'';
            s += 2;
        } else if (*s == q) {
            s++;
            if (s < e && !is_space(*s))
                return -1;
            break;
        } else {
            *o++ = *s++;
        }
    }
    *sp = s;
    *op = o;
    return 0;
}

/*
 * Split one inline line into arguments, as Redis's inline requests are.
 * quotes: whether the line holds a quote, or -1 if not known yet.
 */
static int split_line(struct resp_parser *p, const char *s, const char *e, int quotes)
{
    if (quotes < 0)
        quotes = memchr(s, '"', (size_t)(e - s)) || memchr(s, '\'', (size_t)(e - s));
    if (quotes) {
        size_t need = (size_t)(e - s);
        if (p->scratch_cap < need) {
            char *ns = realloc(p->scratch, need);
            if (!ns)
                return fail(p, "out of memory");
            p->scratch = ns;
            p->scratch_cap = need;
        }
    }
    char *o = p->scratch;
    p->argc = 0;
    for (;;) {
        while (s < e && is_space(*s))
            s++;
        if (s == e)
            return 0;
        const char *start = s;
        while (s < e && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n' && *s != '"' &&
               *s != '\'')
            s++;
        if (s == e || (*s != '"' && *s != '\'')) {
            /* Plain: it stays in the caller's buffer. */
            if (push_arg(p, start, 0, (size_t)(s - start)) < 0)
                return fail(p, "out of memory");
            continue;
        }
        char *ostart = o;
        memcpy(o, start, (size_t)(s - start));
        o += s - start;
        if (take_quoted(&s, e, &o) < 0)
            return fail(p, "Protocol error: unbalanced quotes in request");
        if (push_arg(p, ostart, 0, (size_t)(o - ostart)) < 0)
            return fail(p, "out of memory");
    }
}

static int parse_inline(struct resp_parser *p, const char *buf, size_t len, size_t *used)
{
    const char *end = buf + len;
    const char *nl = NULL;
    int quotes = -1;
    if (p->pos == 0) {
        /* A short line (PING) in one pass: its end, and whether it holds a
         * quote. A NUL, or no end in sight, takes the general path. */
        const char *lim = len > 64 ? buf + 64 : end;
        bool q = false;
        for (const char *s = buf; s < lim && *s; s++) {
            if (*s == '\n') {
                nl = s;
                quotes = q;
                break;
            }
            q |= *s == '"' || *s == '\'';
        }
    }
    if (!nl && p->pos != BLOCKED) {
        const char *s = buf + p->pos;
        nl = memchr(s, '\n', (size_t)(end - s));
        /* Like Redis's strchr(): a NUL first means the line never ends. */
        if (memchr(s, '\0', (size_t)((nl ? nl : end) - s))) {
            p->pos = BLOCKED;
            nl = NULL;
        } else if (!nl) {
            p->pos = len;
        }
    }
    if (!nl)
        return len > RESP_INLINE_MAX ? fail(p, "Protocol error: too big inline request")
                                     : RESP_INCOMPLETE;
    const char *e = nl;
    if (e > buf && e[-1] == '\r')
        e--;
    if (split_line(p, buf, e, quotes) < 0)
        return RESP_ERROR;
    return complete(p, used, (size_t)(nl + 1 - buf));
}

int resp_parse(struct resp_parser *p, const char *buf, size_t len, size_t *used)
{
    if (len == 0)
        return RESP_INCOMPLETE;
    if (buf[0] == '*')
        return parse_multibulk(p, buf, len, used);
    return parse_inline(p, buf, len, used);
}
