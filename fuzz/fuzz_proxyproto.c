/*
 * Fuzz target: the PROXY protocol parser, encoder and proxy_from= lists.
 *
 * Every input is parsed with each version setting. Whatever comes back must
 * be one of the documented answers, and the answers must agree with each
 * other: "any" gives what the version the first byte names gives; a prefix
 * of a complete header is incomplete, a longer input gives the same header,
 * a bad prefix stays bad with the same errno. A parsed header must have
 * addresses of its family and TLVs inside it, and a PROXY TCP4/TCP6 header
 * must come back unchanged through the encoder (v1 TCP4 and plain v2 ones
 * byte for byte: their text has one spelling). The bytes are also read as
 * a proxy_from= list and, when there are 37 or more, their first 37 as two
 * addresses to encode.
 *
 * The checks abort by hand rather than with assert(), which the replay
 * build (RelWithDebInfo, NDEBUG) would remove.
 */
#include "proxyproto.h"

#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An exact-size heap copy of data[0, n), so that ASan sees any read past
 * n even where the input goes on. */
static uint8_t *copy_of(const uint8_t *data, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    FUZZ_CHECK(copy);
    memcpy(copy, data, n);
    return copy;
}

static ssize_t parse(const uint8_t *buf, size_t n, int versions, struct evn__proxy_hdr *h)
{
    const char *why = NULL;
    struct evn__proxy_hdr local;
    ssize_t rc = evn__proxy_parse(buf, n, versions, h ? h : &local, &why);
    FUZZ_CHECK(rc >= 0 || rc == -ENOMSG || rc == -EBADMSG || rc == -EMSGSIZE);
    if (rc < 0)
        FUZZ_CHECK(why && why[0]);
    return rc;
}

/* The result for data[0, n) alone (the header is not kept). */
static ssize_t parse_copy(const uint8_t *data, size_t n, int versions)
{
    uint8_t *copy = copy_of(data, n);
    ssize_t rc = parse(copy, n, versions, NULL);
    free(copy);
    return rc;
}

/* An address as 16 bytes (IPv4 as mapped IPv6) and a port, so that the
 * encoder's unmapping of mapped pairs compares equal. */
struct norm {
    uint8_t a[16];
    uint16_t port;
};

static struct norm normalize(const struct sockaddr_storage *ss)
{
    struct norm n;
    memset(&n, 0, sizeof n);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        n.a[10] = n.a[11] = 0xFF;
        memcpy(n.a + 12, &in->sin_addr, 4);
        n.port = in->sin_port;
    } else {
        FUZZ_CHECK(ss->ss_family == AF_INET6);
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        memcpy(n.a, &in6->sin6_addr, 16);
        n.port = in6->sin6_port;
    }
    return n;
}

static bool mapped(const struct sockaddr_storage *ss)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    return ss->ss_family == AF_INET6 &&
           memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, prefix, 12) == 0;
}

/* Encode src, dst with version v, parse that, and expect the same client
 * and destination back; returns the encoded length. */
static ssize_t round_trip(int v, const struct sockaddr_storage *src,
                          const struct sockaddr_storage *dst, uint8_t *out)
{
    ssize_t n = evn__proxy_encode(out, EVN__PROXY_ENCODE_MAX, v, false,
                                  (const struct sockaddr *)src, (const struct sockaddr *)dst);
    FUZZ_CHECK(n > 0 && n <= EVN__PROXY_ENCODE_MAX);
    FUZZ_CHECK(v != EVN__PROXY_V1 || n <= EVN__PROXY_V1_MAX);
    struct evn__proxy_hdr h;
    uint8_t *copy = copy_of(out, (size_t)n);
    FUZZ_CHECK(parse(copy, (size_t)n, v, &h) == n);
    free(copy); /* h.tlv is NULL: nothing points into it */
    FUZZ_CHECK(h.tlv == NULL);
    FUZZ_CHECK(h.version == v && h.command == EVN__PROXY_CMD_PROXY);
    bool v4 =
        (src->ss_family == AF_INET || mapped(src)) && (dst->ss_family == AF_INET || mapped(dst));
    FUZZ_CHECK(h.family == (v4 ? EVN__PROXY_TCP4 : EVN__PROXY_TCP6));
    struct norm a = normalize(src), b = normalize(&h.src);
    FUZZ_CHECK(memcmp(&a, &b, sizeof a) == 0);
    a = normalize(dst);
    b = normalize(&h.dst);
    FUZZ_CHECK(memcmp(&a, &b, sizeof a) == 0);
    /* The smallest buffer that fits is enough, one byte less is not. */
    uint8_t again[EVN__PROXY_ENCODE_MAX];
    FUZZ_CHECK(evn__proxy_encode(again, (size_t)n, v, false, (const struct sockaddr *)src,
                                 (const struct sockaddr *)dst) == n);
    FUZZ_CHECK(memcmp(again, out, (size_t)n) == 0);
    FUZZ_CHECK(evn__proxy_encode(again, (size_t)n - 1, v, false, (const struct sockaddr *)src,
                                 (const struct sockaddr *)dst) == -ENOBUFS);
    return n;
}

static void check_header(const uint8_t *data, size_t size, int versions, ssize_t rc,
                         const struct evn__proxy_hdr *h)
{
    FUZZ_CHECK((size_t)rc <= size);
    FUZZ_CHECK(h->version == EVN__PROXY_V1 || h->version == EVN__PROXY_V2);
    FUZZ_CHECK(h->version & versions);
    FUZZ_CHECK(data[0] == (h->version == EVN__PROXY_V1 ? 'P' : '\r'));
    FUZZ_CHECK(rc <= (h->version == EVN__PROXY_V1 ? EVN__PROXY_V1_MAX : EVN__PROXY_V2_MAX));
    FUZZ_CHECK(h->command == EVN__PROXY_CMD_LOCAL || h->command == EVN__PROXY_CMD_PROXY);
    if (h->version == EVN__PROXY_V1) {
        FUZZ_CHECK(h->command == EVN__PROXY_CMD_PROXY);
        FUZZ_CHECK(h->family == EVN__PROXY_TCP4 || h->family == EVN__PROXY_TCP6 ||
                   h->family == EVN__PROXY_UNKNOWN);
        FUZZ_CHECK(data[rc - 2] == '\r' && data[rc - 1] == '\n');
    }
    if (h->command == EVN__PROXY_CMD_LOCAL)
        FUZZ_CHECK(h->family == EVN__PROXY_UNSPEC);

    int af;
    switch (h->family) {
    case EVN__PROXY_TCP4:
    case EVN__PROXY_UDP4:
        af = AF_INET;
        break;
    case EVN__PROXY_TCP6:
    case EVN__PROXY_UDP6:
        af = AF_INET6;
        break;
    case EVN__PROXY_UNIX_STREAM:
    case EVN__PROXY_UNIX_DGRAM:
        af = AF_UNIX;
        break;
    default:
        FUZZ_CHECK(h->family == EVN__PROXY_UNSPEC || h->family == EVN__PROXY_UNKNOWN);
        af = AF_UNSPEC;
    }
    FUZZ_CHECK(h->src.ss_family == af && h->dst.ss_family == af);

    /* TLVs: only after a v2 address block, ending where the header ends,
     * and each one findable. */
    if (h->tlv) {
        FUZZ_CHECK(h->version == EVN__PROXY_V2 && af != AF_UNSPEC);
        FUZZ_CHECK(h->tlv_len > 0);
        FUZZ_CHECK(h->tlv > data && h->tlv + h->tlv_len == data + rc);
        const uint8_t *t = h->tlv, *end = h->tlv + h->tlv_len;
        while (t < end) {
            FUZZ_CHECK(end - t >= 3);
            size_t n = (size_t)t[1] << 8 | t[2];
            FUZZ_CHECK(n <= (size_t)(end - t) - 3);
            const uint8_t *val;
            size_t len;
            FUZZ_CHECK(evn__proxy_tlv_find(h, t[0], &val, &len));
            FUZZ_CHECK(val >= h->tlv && val + len <= end);
            t += 3 + n;
        }
        /* A type is found exactly when a TLV has it, at its first one
         * (for short runs only: this walks them 256 times). */
        if (h->tlv_len <= 512) {
            for (unsigned type = 0; type < 256; type++) {
                const uint8_t *first = NULL, *val = NULL;
                size_t len = 0;
                for (t = h->tlv; t < end && !first; t += 3 + ((size_t)t[1] << 8 | t[2]))
                    if (t[0] == type)
                        first = t;
                bool found = evn__proxy_tlv_find(h, (uint8_t)type, &val, &len);
                FUZZ_CHECK(found == (first != NULL));
                if (found)
                    FUZZ_CHECK(val == first + 3 && len == ((size_t)first[1] << 8 | first[2]));
            }
        }
    } else {
        FUZZ_CHECK(h->tlv_len == 0);
    }

    /* The header is exactly rc bytes: one fewer is incomplete. */
    FUZZ_CHECK(parse_copy(data, (size_t)rc, versions) == rc);
    FUZZ_CHECK(parse_copy(data, (size_t)rc - 1, versions) == EVN__PROXY_INCOMPLETE);

    if (h->command == EVN__PROXY_CMD_PROXY &&
        (h->family == EVN__PROXY_TCP4 || h->family == EVN__PROXY_TCP6)) {
        uint8_t out[EVN__PROXY_ENCODE_MAX];
        ssize_t n = round_trip(h->version, &h->src, &h->dst, out);
        /* Text with one spelling, and v2 without extras, come back whole. */
        bool exact = h->version == EVN__PROXY_V1
                         ? h->family == EVN__PROXY_TCP4
                         : !h->tlv && data[12] == 0x21 && !(mapped(&h->src) && mapped(&h->dst));
        if (exact)
            FUZZ_CHECK(n == rc && memcmp(out, data, (size_t)rc) == 0);
    }
}

static void check_parse(const uint8_t *data, size_t size)
{
    static const int settings[] = {EVN__PROXY_V1, EVN__PROXY_V2, EVN__PROXY_ANY};
    ssize_t rcs[3];
    uint8_t *buf = copy_of(data, size);
    for (int i = 0; i < 3; i++) {
        struct evn__proxy_hdr h;
        ssize_t rc = rcs[i] = parse(buf, size, settings[i], &h);
        if (rc > 0)
            check_header(buf, size, settings[i], rc, &h);
        /* A prefix agrees with the whole: complete within it, the same
         * header; bad, the same error; otherwise incomplete. */
        size_t k = size / 2;
        ssize_t rk = parse_copy(data, k, settings[i]);
        if (rc > 0)
            FUZZ_CHECK(k < (size_t)rc ? rk == EVN__PROXY_INCOMPLETE : rk == rc);
        if (rk != EVN__PROXY_INCOMPLETE)
            FUZZ_CHECK(rk == rc);
    }
    free(buf);
    /* "any" is the version the first byte names, or nothing. */
    if (size > 0 && data[0] == 'P')
        FUZZ_CHECK(rcs[2] == rcs[0] && rcs[1] == -ENOMSG);
    else if (size > 0 && data[0] == '\r')
        FUZZ_CHECK(rcs[2] == rcs[1] && rcs[0] == -ENOMSG);
    else if (size > 0)
        FUZZ_CHECK(rcs[0] == -ENOMSG && rcs[1] == -ENOMSG && rcs[2] == -ENOMSG);
}

static void check_cidrs(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1), err[128];
    FUZZ_CHECK(copy);
    memcpy(copy, data, size);
    struct evn__proxy_cidrs set;
    int rc = evn__proxy_cidrs_parse(copy, size, &set, err, sizeof err);
    free(copy);
    if (rc < 0) {
        FUZZ_CHECK(rc == -EINVAL && err[0]);
        return;
    }
    FUZZ_CHECK(rc == 0 && set.n >= 1 && set.n <= EVN__PROXY_CIDR_MAX);
    for (unsigned i = 0; i < set.n; i++) {
        const struct evn__proxy_cidr *c = &set.e[i];
        FUZZ_CHECK(c->v6 <= 1 && c->bits <= (c->v6 ? 128 : 32));
        for (unsigned b = c->bits; b < 128; b++)
            FUZZ_CHECK(!(c->addr[b / 8] & (0x80u >> (b % 8))));
        /* Each network holds its own first address, and an IPv4 one holds
         * it in mapped form too. */
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (c->v6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            in6->sin6_family = AF_INET6;
            memcpy(&in6->sin6_addr, c->addr, 16);
            FUZZ_CHECK(evn__proxy_cidrs_match(&set, (struct sockaddr *)&ss));
        } else {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            in->sin_family = AF_INET;
            memcpy(&in->sin_addr, c->addr, 4);
            FUZZ_CHECK(evn__proxy_cidrs_match(&set, (struct sockaddr *)&ss));
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            memset(&ss, 0, sizeof ss);
            in6->sin6_family = AF_INET6;
            ((uint8_t *)&in6->sin6_addr)[10] = ((uint8_t *)&in6->sin6_addr)[11] = 0xFF;
            memcpy((uint8_t *)&in6->sin6_addr + 12, c->addr, 4);
            FUZZ_CHECK(evn__proxy_cidrs_match(&set, (struct sockaddr *)&ss));
        }
    }
}

/* Bytes 1..36 as two addresses and ports, byte 0 choosing their forms. */
static void check_encode(const uint8_t *data, size_t size)
{
    if (size < 37)
        return;
    struct sockaddr_storage a[2];
    for (int i = 0; i < 2; i++) {
        const uint8_t *p = data + 1 + 18 * i;
        int form = (data[0] >> (2 * i)) & 3;
        memset(&a[i], 0, sizeof a[i]);
        if (form == 0) {
            struct sockaddr_in *in = (struct sockaddr_in *)&a[i];
            in->sin_family = AF_INET;
            memcpy(&in->sin_addr, p, 4);
            memcpy(&in->sin_port, p + 16, 2);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a[i];
            in6->sin6_family = AF_INET6;
            memcpy(&in6->sin6_addr, p, 16);
            if (form == 1) /* make it a mapped address */
                memcpy(&in6->sin6_addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12);
            memcpy(&in6->sin6_port, p + 16, 2);
        }
    }
    uint8_t out[EVN__PROXY_ENCODE_MAX];
    round_trip(EVN__PROXY_V1, &a[0], &a[1], out);
    round_trip(EVN__PROXY_V2, &a[0], &a[1], out);
    /* LOCAL and missing addresses carry nothing. */
    struct evn__proxy_hdr h;
    ssize_t n = evn__proxy_encode(out, sizeof out, EVN__PROXY_V2, true, NULL, NULL);
    FUZZ_CHECK(n == 16 && parse(out, 16, EVN__PROXY_ANY, &h) == 16);
    FUZZ_CHECK(h.command == EVN__PROXY_CMD_LOCAL && h.src.ss_family == AF_UNSPEC);
    n = evn__proxy_encode(out, sizeof out, EVN__PROXY_V1, false, (struct sockaddr *)&a[0], NULL);
    FUZZ_CHECK(n == 15 && parse(out, 15, EVN__PROXY_ANY, &h) == 15);
    FUZZ_CHECK(h.family == EVN__PROXY_UNKNOWN && h.src.ss_family == AF_UNSPEC);
    /* Two unix paths (the same 37 bytes, zero-padded) go through v2. */
    struct sockaddr_un un[2];
    memset(un, 0, sizeof un);
    for (int i = 0; i < 2; i++) {
        un[i].sun_family = AF_UNIX;
        memcpy(un[i].sun_path + i, data, 37);
    }
    n = evn__proxy_encode(out, sizeof out, EVN__PROXY_V2, false, (struct sockaddr *)&un[0],
                          (struct sockaddr *)&un[1]);
    FUZZ_CHECK(n == 16 + 216 && parse(out, (size_t)n, EVN__PROXY_V2, &h) == n);
    FUZZ_CHECK(h.family == EVN__PROXY_UNIX_STREAM && h.src.ss_family == AF_UNIX);
    FUZZ_CHECK(memcmp(((struct sockaddr_un *)&h.src)->sun_path, un[0].sun_path, 108) == 0);
    FUZZ_CHECK(memcmp(((struct sockaddr_un *)&h.dst)->sun_path, un[1].sun_path, 108) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_parse(data, size);
    check_cidrs(data, size);
    check_encode(data, size);
    return 0;
}
