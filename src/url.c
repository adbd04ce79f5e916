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
    {"tcp", EVN__TCP, AF_UNSPEC}, {"tcp4", EVN__TCP, AF_INET},      {"tcp6", EVN__TCP, AF_INET6},
    {"udp", EVN__UDP, AF_UNSPEC}, {"udp4", EVN__UDP, AF_INET},      {"udp6", EVN__UDP, AF_INET6},
    {"unix", EVN__UNIX, AF_UNIX}, {"tls", EVN__TCP, AF_UNSPEC},     {"tls4", EVN__TCP, AF_INET},
    {"tls6", EVN__TCP, AF_INET6}, {"tls+unix", EVN__UNIX, AF_UNIX},
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

enum { OPT_BOOL, OPT_INT, OPT_PATH, OPT_VERIFY, OPT_PROXY, OPT_CIDRS };
#define P_TCP (1u << EVN__TCP)
#define P_UDP (1u << EVN__UDP)
#define P_UNIX (1u << EVN__UNIX)
#define P_TLS (1u << 8)
#define P_OUT (1u << 9)     /* allowed on an evn_connect URL (tls:// ones only) */
#define P_LISTEN (1u << 10) /* allowed on a listener's URL */

/* Every option a URL may carry, what it takes and where it applies. */
static const struct option {
    const char *name;
    int type;
    size_t off, size;
    long min, max;
    unsigned where;
} options[] = {
#define F(field) offsetof(struct evn__url, field), sizeof(((struct evn__url *)0)->field)
    {"reuseport", OPT_BOOL, F(reuseport), 0, 1, P_TCP | P_UDP | P_UNIX},
    {"backlog", OPT_INT, F(backlog), 1, 1 << 20, P_TCP | P_UNIX},
    {"nodelay", OPT_BOOL, F(nodelay), 0, 1, P_TCP},
    {"keepalive", OPT_INT, F(keepalive), 0, 86400, P_TCP},
    {"fastopen", OPT_INT, F(fastopen), 0, 65535, P_TCP},
    {"deferaccept", OPT_INT, F(deferaccept), 0, 3600, P_TCP},
    {"ipv6only", OPT_BOOL, F(ipv6only), 0, 1, P_TCP | P_UDP},
    {"sndbuf", OPT_INT, F(sndbuf), 1, 1 << 30, P_TCP | P_UDP | P_UNIX},
    {"rcvbuf", OPT_INT, F(rcvbuf), 1, 1 << 30, P_TCP | P_UDP | P_UNIX},
    {"cert", OPT_PATH, F(cert), 0, 0, P_TLS | P_OUT | P_LISTEN},
    {"key", OPT_PATH, F(key), 0, 0, P_TLS | P_OUT | P_LISTEN},
    {"ca", OPT_PATH, F(ca), 0, 0, P_TLS | P_OUT | P_LISTEN},
    {"verify", OPT_VERIFY, F(verify), 0, 0, P_TLS | P_OUT | P_LISTEN},
    {"alpn", OPT_PATH, F(alpn), 0, 0, P_TLS | P_OUT | P_LISTEN},
    {"sni", OPT_PATH, F(sni), 0, 0, P_TLS | P_OUT},
    {"fdname", OPT_PATH, F(fdname), 0, 0, P_TCP | P_UDP | P_UNIX},
    /* Accepting PROXY headers on a UDP socket (one per datagram) is not done
     * yet: refused for now. evn_connect sends one with
     * evn_connect_proxy_header, not through its URL. */
    {"proxy", OPT_PROXY, F(proxy), 0, 0, P_TCP | P_UNIX},
    {"proxy_timeout", OPT_INT, F(proxy_timeout), 1, 3600000, P_TCP | P_UNIX},
    /* A unix socket's peer has no address to check against the list. */
    {"proxy_from", OPT_CIDRS, F(proxy_from), 0, 0, P_TCP},
#undef F
};

static int set_option(const char *url, const struct option *o, const char *v, size_t vlen,
                      struct evn__url *out, char *err, size_t errlen)
{
    char *field = (char *)out + o->off;
    long num;
    int b;
    switch (o->type) {
    case OPT_BOOL:
        if (!parse_bool(v, vlen, &b))
            return fail(err, errlen, url, "this option takes true or false, not", v, vlen);
        *(int *)field = b;
        return 0;
    case OPT_INT:
        if (!parse_int(v, vlen, o->min, o->max, &num)) {
            char what[96];
            snprintf(what, sizeof what, "%s must be %ld..%ld, not", o->name, o->min, o->max);
            return fail(err, errlen, url, what, v, vlen);
        }
        *(int *)field = (int)num;
        return 0;
    case OPT_VERIFY:
        if (vlen == 4 && strncmp(v, "none", 4) == 0)
            *(int *)field = EVN__VERIFY_NONE;
        else if (vlen == 8 && strncmp(v, "optional", 8) == 0)
            *(int *)field = EVN__VERIFY_OPTIONAL;
        else if (vlen == 7 && strncmp(v, "require", 7) == 0)
            *(int *)field = EVN__VERIFY_REQUIRE;
        else
            return fail(err, errlen, url, "verify must be none, optional or require, not", v, vlen);
        return 0;
    case OPT_PROXY:
        if (vlen == 2 && strncmp(v, "v1", 2) == 0)
            *(int *)field = EVN__PROXY_V1;
        else if (vlen == 2 && strncmp(v, "v2", 2) == 0)
            *(int *)field = EVN__PROXY_V2;
        else if (vlen == 3 && strncmp(v, "any", 3) == 0)
            *(int *)field = EVN__PROXY_ANY;
        else
            return fail(err, errlen, url, "proxy must be v1, v2 or any, not", v, vlen);
        return 0;
    case OPT_CIDRS: {
        char why[192];
        if (evn__proxy_cidrs_parse(v, vlen, (struct evn__proxy_cidrs *)(void *)field, why,
                                   sizeof why) < 0) {
            if (errlen > 0)
                snprintf(err, errlen, "%s: %s: %s", url, o->name, why);
            return -EINVAL;
        }
        return 0;
    }
    default:
        if (vlen == 0 || vlen >= o->size)
            return fail(err, errlen, url, "empty or too long value for", o->name, strlen(o->name));
        memcpy(field, v, vlen);
        field[vlen] = '\0';
        return 0;
    }
}

/* Options without P_LISTEN or P_OUT are listener options. */
static bool option_for(const struct option *o, bool outbound)
{
    if (outbound)
        return o->where & P_OUT;
    return !(o->where & P_OUT) || (o->where & P_LISTEN);
}

static int parse_options(const char *url, const char *q, struct evn__url *out, char *err,
                         size_t errlen, bool outbound)
{
    unsigned here = (out->tls ? P_TLS : 0) | (1u << out->proto);
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        if (!eq)
            return fail(err, errlen, url, "option without a value", q, n);
        size_t klen = (size_t)(eq - q), vlen = n - klen - 1;
        const struct option *o = NULL;
        for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
            if (strlen(options[i].name) == klen && strncmp(q, options[i].name, klen) == 0)
                o = &options[i];
        if (!o)
            return fail(err, errlen, url, "unknown option", q, klen);
        if (!option_for(o, outbound))
            return fail(err, errlen, url,
                        outbound ? "option is for listeners, not for evn_connect:"
                                 : "option only for evn_connect:",
                        q, klen);
        if (!(o->where & here & ~(P_OUT | P_LISTEN)))
            return fail(err, errlen, url,
                        (o->where & P_TLS) ? "option only for tls:// URLs:"
                                           : "option does not apply to this kind of socket:",
                        q, klen);
        int rc = set_option(url, o, eq + 1, vlen, out, err, errlen);
        if (rc < 0)
            return rc;
        if (outbound && o->type == OPT_VERIFY && out->verify == EVN__VERIFY_OPTIONAL)
            return fail(err, errlen, url, "evn_connect takes verify=require or verify=none, not",
                        eq + 1, vlen);
        if (!amp)
            break;
        q = amp + 1;
    }
    /* Without proxy= there is no header to take from anyone. */
    if (out->proxy_from.n > 0 && !out->proxy)
        return fail(err, errlen, url, "proxy_from= needs proxy=v1, v2 or any", NULL, 0);
    if (out->proxy_timeout > 0 && !out->proxy)
        return fail(err, errlen, url, "proxy_timeout= needs proxy=v1, v2 or any", NULL, 0);
    if (!outbound && out->tls && (!out->cert[0] || !out->key[0]))
        return fail(err, errlen, url, "a tls:// listener needs cert= and key=", NULL, 0);
    /* A unix socket has no name of its own to check a certificate against. */
    if (outbound && out->tls && out->proto == EVN__UNIX && out->verify == EVN__VERIFY_REQUIRE &&
        !out->sni[0])
        return fail(err, errlen, url,
                    "tls+unix:// needs sni= (the name the certificate must have) or verify=none",
                    NULL, 0);
    /* A client certificate comes with its key, or not at all. */
    if (outbound && !out->cert[0] != !out->key[0])
        return fail(err, errlen, url, "a client certificate needs both cert= and key=", NULL, 0);
    return 0;
}

static int parse(const char *url, struct evn__url *out, char *err, size_t errlen, bool outbound)
{
    if (errlen > 0)
        err[0] = '\0';
    memset(out, 0, sizeof *out);
    out->backlog = EVN__DEFAULT_BACKLOG;
    out->nodelay = 1;
    out->ipv6only = -1;
    /* A client checks the server's certificate unless told not to. */
    out->verify = outbound ? EVN__VERIFY_REQUIRE : EVN__VERIFY_NONE;
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
        out->tls = strncmp(url, "tls", 3) == 0;
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
    return parse_options(url, q ? q + 1 : "", out, err, errlen, outbound);
}

int evn__url_parse(const char *url, struct evn__url *out, char *err, size_t errlen)
{
    return parse(url, out, err, errlen, false);
}

int evn__url_parse_outbound(const char *url, struct evn__url *out, char *err, size_t errlen)
{
    return parse(url, out, err, errlen, true);
}
