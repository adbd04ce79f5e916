/*
 * Glob patterns as KEYS, SCAN MATCH and CONFIG GET take them: '*' any run,
 * '?' any byte, "[abc]", "[a-z]" (either order), "[^...]" for the
 * complement, and '\' to take the next byte as it is. A class missing its
 * ']' runs to the end of the pattern; a '\' at the very end is itself.
 *
 * Every token other than '*' matches exactly one byte, so a mismatch need
 * only go back to the last '*' and let it take one more byte: the time is
 * at most pattern length times string length, never exponential (a pattern
 * such as "*a*a*a*a*b" cannot stall the server).
 */
#include "cmd.h"

static unsigned char fold(unsigned char c, bool nocase)
{
    return nocase && c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* A "[...]" class at p[*i] (the '['): does it take c? *i moves past it. */
static bool class_match(const unsigned char *p, size_t plen, size_t *i, unsigned char c,
                        bool nocase)
{
    size_t j = *i + 1;
    bool neg = j < plen && p[j] == '^', hit = false;
    if (neg)
        j++;
    c = fold(c, nocase);
    for (; j < plen && p[j] != ']'; j++) {
        if (p[j] == '\\' && j + 1 < plen) {
            j++;
            hit |= fold(p[j], nocase) == c;
        } else if (j + 2 < plen && p[j + 1] == '-') {
            unsigned char lo = fold(p[j], nocase), hi = fold(p[j + 2], nocase);
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
            hit |= c >= lo && c <= hi;
            j += 2;
        } else {
            hit |= fold(p[j], nocase) == c;
        }
    }
    *i = j < plen ? j + 1 : plen;
    return hit != neg;
}

/* The token at p[*i] (not '*'): does it take c? *i moves past it. */
static bool token_match(const unsigned char *p, size_t plen, size_t *i, unsigned char c,
                        bool nocase)
{
    if (p[*i] == '?') {
        (*i)++;
        return true;
    }
    if (p[*i] == '[')
        return class_match(p, plen, i, c, nocase);
    if (p[*i] == '\\' && *i + 1 < plen)
        (*i)++;
    return fold(p[(*i)++], nocase) == fold(c, nocase);
}

bool glob_match(const char *pattern, size_t plen, const char *str, size_t slen, bool nocase)
{
    const unsigned char *p = (const unsigned char *)pattern, *s = (const unsigned char *)str;
    size_t i = 0, j = 0, star = SIZE_MAX, star_j = 0;
    while (j < slen) {
        if (i < plen && p[i] == '*') {
            while (i < plen && p[i] == '*')
                i++;
            if (i == plen)
                return true;
            star = i;
            star_j = j;
            continue;
        }
        size_t next = i;
        if (i < plen && token_match(p, plen, &next, s[j], nocase)) {
            i = next;
            j++;
            continue;
        }
        if (star == SIZE_MAX)
            return false;
        /* Let the last '*' take one more byte and try again from there. */
        i = star;
        j = ++star_j;
    }
    while (i < plen && p[i] == '*')
        i++;
    return i == plen;
}
