/*
 * Address URLs: scheme://host:port?options, unix://path?options, or a plain
 * host:port meaning tcp. Parsing is strict: anything not understood is an
 * error naming the part that was not understood.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVN__DEFAULT_BACKLOG 1024

static const struct {
    const char *name;
    int proto, family;
} schemes[] = {
    {"tcp", EVN__TCP, AF_UNSPEC},  {"tcp4", EVN__TCP, AF_INET}, {"tcp6", EVN__TCP, AF_INET6},
    {"udp", EVN__UDP, AF_UNSPEC},  {"udp4", EVN__UDP, AF_INET}, {"udp6", EVN__UDP, AF_INET6},
    {"unix", EVN__UNIX, AF_UNIX},
};

static int fail(char *err, size_t errlen, const char *url, const char *what, const char *part,
                size_t partlen)
{
    if (errlen > 0) {
        if (part)
            snprintf(err, errlen, "%s: %s '%.*s'", url, what, (int)partlen, part);
        else
            snprintf(err, errlen, "%s: %s", url, what);
    }
    return -EINVAL;
}

/* Parse a decimal integer spanning exactly [s, s+n). */
static bool parse_int(const char *s, size_t n, long min, long max, long *out)
{
    if (n == 0 || n > 10)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, size_t n, int *out)
{
    static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strlen(yes[i]) == n && strncmp(s, yes[i], n) == 0)
            return *out = 1, true;
        if (strlen(no[i]) == n && strncmp(s, no[i], n) == 0)
            return *out = 0, true;
    }
    return false;
}

static int parse_options(const char *url, const char *q, struct evn__url *out, char *err,
                         size_t errlen)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        if (!eq)
            return fail(err, errlen, url, "option without a value", q, n);
        size_t klen = (size_t)(eq - q), vlen = n - klen - 1;
        const char *v = eq + 1;
        long num;
        if (klen == 9 && strncmp(q, "reuseport", 9) == 0) {
            if (!parse_bool(v, vlen, &out->reuseport))
                return fail(err, errlen, url, "reuseport must be true or false, not", v, vlen);
        } else if (klen == 7 && strncmp(q, "backlog", 7) == 0) {
            if (!parse_int(v, vlen, 1, 1 << 20, &num))
                return fail(err, errlen, url, "backlog must be 1..1048576, not", v, vlen);
            out->backlog = (int)num;
        } else {
            return fail(err, errlen, url, "unknown option", q, klen);
        }
        if (!amp)
            break;
        q = amp + 1;
    }
    return 0;
}

int evn__url_parse(const char *url, struct evn__url *out, char *err, size_t errlen)
{
    if (errlen > 0)
        err[0] = '\0';
    memset(out, 0, sizeof *out);
    out->backlog = EVN__DEFAULT_BACKLOG;
    if (!url || !*url)
        return fail(err, errlen, "\"\"", "empty address", NULL, 0);

    const char *rest = url;
    const char *sep = strstr(url, "://");
    if (sep) {
        size_t n = (size_t)(sep - url);
        size_t i;
        for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
            if (strlen(schemes[i].name) == n && strncmp(url, schemes[i].name, n) == 0)
                break;
        if (i == sizeof schemes / sizeof schemes[0])
            return fail(err, errlen, url, "unknown scheme", url, n);
        out->proto = schemes[i].proto;
        out->family = schemes[i].family;
        rest = sep + 3;
    } else {
        out->proto = EVN__TCP;
        out->family = AF_UNSPEC;
    }

    const char *q = strchr(rest, '?');
    size_t blen = q ? (size_t)(q - rest) : strlen(rest);

    if (out->proto == EVN__UNIX) {
        if (blen == 0)
            return fail(err, errlen, url, "missing socket path", NULL, 0);
        if (blen >= sizeof out->path)
            return fail(err, errlen, url, "socket path longer than 107 bytes", NULL, 0);
        memcpy(out->path, rest, blen);
        out->path[blen] = '\0';
    } else {
        const char *host = rest, *hend, *colon;
        if (blen > 0 && rest[0] == '[') {
            const char *close = memchr(rest, ']', blen);
            if (!close)
                return fail(err, errlen, url, "unclosed '[' in", rest, blen);
            host = rest + 1;
            hend = close;
            colon = close + 1;
            if (colon == rest + blen || *colon != ':')
                return fail(err, errlen, url, "missing ':port' after", rest,
                            (size_t)(close + 1 - rest));
            if (hend == host)
                return fail(err, errlen, url, "empty IPv6 address in", rest, blen);
        } else {
            colon = NULL;
            for (const char *p = rest + blen; p > rest; p--)
                if (p[-1] == ':') {
                    colon = p - 1;
                    break;
                }
            if (!colon)
                return fail(err, errlen, url, "missing ':port' in", rest, blen);
            if (memchr(rest, ':', (size_t)(colon - rest)))
                return fail(err, errlen, url, "IPv6 address must be in brackets:", rest,
                            (size_t)(colon - rest));
            hend = colon;
        }
        size_t hlen = (size_t)(hend - host);
        if (hlen >= sizeof out->host)
            return fail(err, errlen, url, "host name too long", NULL, 0);
        memcpy(out->host, host, hlen);
        out->host[hlen] = '\0';
        const char *port = colon + 1;
        size_t plen = (size_t)(rest + blen - port);
        long pn;
        if (plen == 0)
            return fail(err, errlen, url, "missing port after", host, hlen + 1);
        if (!parse_int(port, plen, 0, 65535, &pn))
            return fail(err, errlen, url, "port must be a number 0..65535, not", port, plen);
        out->port = (int)pn;
    }
    if (q)
        return parse_options(url, q + 1, out, err, errlen);
    return 0;
}
