/*
 * PROXY protocol headers: parser, encoder and the proxy_from= address lists
 * (what each function promises is in proxyproto.h).
 *
 * The rules of the specification the parser checks, named here so the tests
 * can say which one each bad input breaks:
 *
 * v1, one line of text:
 *   V1-SIG    it starts with "PROXY" (anything else: -ENOMSG), then exactly
 *             one space
 *   V1-PROTO  the protocol is "TCP4", "TCP6" or "UNKNOWN", in capitals
 *   V1-FIELDS after TCP4 or TCP6 come exactly: source address, destination
 *             address, source port, destination port, each after exactly
 *             one space (no tabs, no doubled spaces, no more, no fewer)
 *   V1-IPV4   TCP4 addresses: four decimal numbers 0..255 joined by single
 *             dots, without leading zeros (which could be read as octal)
 *   V1-IPV6   TCP6 addresses: hex digits in either case and colons, at most
 *             one "::", 128 bits in all, as inet_pton reads them (a dotted
 *             IPv4 tail is allowed: inet_ntop writes mapped addresses so);
 *             at most 45 characters; no zone ("%eth0")
 *   V1-PORT   ports: decimal 0..65535 without sign or leading zeros ("0" is
 *             fine)
 *   V1-UNKNOWN "UNKNOWN" is followed by the CRLF, or by a space and bytes up
 *             to the CRLF that are ignored (a bare CR or LF among them is
 *             refused all the same)
 *   V1-CRLF   the line ends with CR LF: a bare LF, or a CR followed by
 *             anything else, is refused
 *   V1-LEN    the line, CRLF included, is at most 107 bytes: when 107 bytes
 *             hold no complete line the answer is -EMSGSIZE
 *
 * v2, a binary block:
 *   V2-SIG    the 12-byte signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
 *             (anything else: -ENOMSG)
 *   V2-VER    the high 4 bits of byte 13 (the version) are 2
 *   V2-CMD    the low 4 bits of byte 13 (the command) are 0 (LOCAL) or
 *             1 (PROXY)
 *   V2-FAM    for PROXY, the high 4 bits of byte 14 (the family) are 0..3
 *             (UNSPEC, INET, INET6, UNIX) and the low 4 (the protocol)
 *             0..2 (UNSPEC, STREAM, DGRAM); LOCAL's family byte is ignored,
 *             as the specification says
 *   V2-LEN    16 + the big-endian length in bytes 15-16 is at most 4096
 *             (-EMSGSIZE), decided as soon as those 16 bytes are in
 *   V2-ADDR   for PROXY with INET, INET6 or UNIX and a protocol, the length
 *             covers the address block: 12, 36 or 216 bytes
 *   V2-TLV    what follows the address block is a run of TLVs, each with
 *             its 1-byte type, 2-byte length and value inside the header
 *   V2-SKIP   LOCAL, and PROXY with an UNSPEC family or protocol, have
 *             their length's worth of bytes skipped unread (a receiver must
 *             honour the length and not assume 0)
 *
 * Not checked, on purpose: the CRC32C TLV (the specification lets a receiver
 * ignore it), the contents of other TLVs, and the sample code's "wait for 16
 * (or 8) bytes before deciding" rule: this parser decides from any prefix,
 * so a header split across reads works, as the specification recommends.
 */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/*
 * The longest IPv6 address text inet_pton reads (eight groups with a dotted
 * IPv4 tail), without its NUL. Not INET6_ADDRSTRLEN - 1: that is 45 on
 * POSIX systems but 64 on Windows, where it has room for a zone and a port,
 * and a too-long address must be refused the same way everywhere.
 */
#define V6_TEXT_MAX 45

/* What a step of the parse found. */
enum { BAD = -1, MORE = 0, OK = 1 };

/* A cursor over the bytes that may be part of the header, and what was
 * wrong when a step gave BAD. */
struct scan {
    const uint8_t *p, *end;
    int err;
    const char *why;
};

static int fail_as(struct scan *s, int err, const char *why)
{
    s->err = err;
    s->why = why;
    return BAD;
}

static int bad(struct scan *s, const char *why)
{
    return fail_as(s, -EBADMSG, why);
}

/* The literal str next, or as much of it as there is so far. */
static int lit(struct scan *s, const char *str, const char *why)
{
    size_t n = strlen(str), have = (size_t)(s->end - s->p);
    size_t m = have < n ? have : n;
    if (memcmp(s->p, str, m) != 0)
        return bad(s, why);
    if (m < n)
        return MORE;
    s->p += n;
    return OK;
}

/*
 * A run of at most max bytes from the set, ended by a byte outside it (which
 * is left for the caller), copied to out with a terminator. The run's end
 * must be seen before its text is judged, so running out of input is MORE
 * even if the text is already bad; a run longer than max is bad at once.
 */
static int token(struct scan *s, const char *set, size_t max, const char *why, char *out)
{
    size_t n = 0;
    for (;;) {
        if (s->p + n == s->end)
            return MORE;
        if (!memchr(set, s->p[n], strlen(set)))
            break;
        if (++n > max)
            return bad(s, why);
    }
    if (n == 0)
        return bad(s, why);
    memcpy(out, s->p, n);
    out[n] = '\0';
    s->p += n;
    return OK;
}

/* Dotted-decimal IPv4, exactly four parts 0..255, no leading zeros. */
static bool ipv4_text(const char *t, uint8_t out[4])
{
    for (int i = 0; i < 4; i++) {
        if (i > 0 && *t++ != '.')
            return false;
        if (*t < '0' || *t > '9')
            return false;
        unsigned v = 0;
        const char *start = t;
        while (*t >= '0' && *t <= '9') {
            if (t > start && *start == '0')
                return false;
            v = v * 10 + (unsigned)(*t++ - '0');
            if (v > 255)
                return false;
        }
        out[i] = (uint8_t)v;
    }
    return *t == '\0';
}

/* Decimal 0..max, no sign, no leading zeros; t is digits only, non-empty. */
static bool number_text(const char *t, unsigned max, unsigned *out)
{
    if (t[0] == '0' && t[1] != '\0')
        return false;
    unsigned v = 0;
    for (; *t; t++) {
        v = v * 10 + (unsigned)(*t - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

/* One address of a TCP4 or TCP6 line, into sa with port 0. */
static int v1_addr(struct scan *s, bool v6, struct sockaddr_storage *ss)
{
    char t[V6_TEXT_MAX + 1];
    int r = v6 ? token(s, "0123456789abcdefABCDEF:.", V6_TEXT_MAX, "v1: bad IPv6 address", t)
               : token(s, "0123456789.", 15, "v1: bad IPv4 address", t);
    if (r != OK)
        return r;
    memset(ss, 0, sizeof *ss);
    if (v6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, t, &in6->sin6_addr) != 1)
            return bad(s, "v1: bad IPv6 address");
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        if (!ipv4_text(t, (uint8_t *)&in->sin_addr))
            return bad(s, "v1: bad IPv4 address");
    }
    return OK;
}

static int v1_port(struct scan *s, struct sockaddr_storage *ss)
{
    char t[6];
    unsigned port;
    int r = token(s, "0123456789", 5, "v1: port must be 0..65535 without leading zeros", t);
    if (r != OK)
        return r;
    if (!number_text(t, 65535, &port))
        return bad(s, "v1: port must be 0..65535 without leading zeros");
    uint16_t n = htons((uint16_t)port);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = n;
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = n;
    return OK;
}

/* "UNKNOWN" is read; the CRLF, or a space and anything up to the CRLF. */
static int v1_unknown_tail(struct scan *s)
{
    if (s->p == s->end)
        return MORE;
    if (*s->p == '\r')
        return lit(s, "\r\n", "v1: line must end with CRLF");
    if (*s->p == '\n')
        return bad(s, "v1: line must end with CRLF");
    if (*s->p != ' ')
        return bad(s, "v1: protocol must be TCP4, TCP6 or UNKNOWN");
    for (s->p++; s->p < s->end; s->p++) {
        if (*s->p == '\n')
            return bad(s, "v1: line must end with CRLF");
        if (*s->p == '\r')
            return lit(s, "\r\n", "v1: line must end with CRLF");
    }
    return MORE;
}

static int v1_parse(struct scan *s, struct evn__proxy_hdr *h)
{
    int r;
    bool v6;
    /* The caller saw the 'P', so a mismatch later in "PROXY" is still not
     * a header at all; what follows is a header gone wrong. */
    if ((r = lit(s, "PROXY", "not a PROXY protocol header")) != OK) {
        s->err = -ENOMSG;
        return r;
    }
    if ((r = lit(s, " ", "v1: expected one space after PROXY")) != OK)
        return r;
    if (s->p == s->end)
        return MORE;
    h->version = EVN__PROXY_V1;
    h->command = EVN__PROXY_CMD_PROXY;
    if (*s->p == 'U') {
        if ((r = lit(s, "UNKNOWN", "v1: protocol must be TCP4, TCP6 or UNKNOWN")) != OK)
            return r;
        h->family = EVN__PROXY_UNKNOWN;
        return v1_unknown_tail(s);
    }
    if ((r = lit(s, "TCP", "v1: protocol must be TCP4, TCP6 or UNKNOWN")) != OK)
        return r;
    if (s->p == s->end)
        return MORE;
    if (*s->p != '4' && *s->p != '6')
        return bad(s, "v1: protocol must be TCP4, TCP6 or UNKNOWN");
    v6 = *s->p++ == '6';
    h->family = v6 ? EVN__PROXY_TCP6 : EVN__PROXY_TCP4;
    if ((r = lit(s, " ", "v1: expected one space after the protocol")) != OK)
        return r;
    if ((r = v1_addr(s, v6, &h->src)) != OK)
        return r;
    if ((r = lit(s, " ", "v1: expected one space after the source address")) != OK)
        return r;
    if ((r = v1_addr(s, v6, &h->dst)) != OK)
        return r;
    if ((r = lit(s, " ", "v1: expected one space after the destination address")) != OK)
        return r;
    if ((r = v1_port(s, &h->src)) != OK)
        return r;
    if ((r = lit(s, " ", "v1: expected one space after the source port")) != OK)
        return r;
    if ((r = v1_port(s, &h->dst)) != OK)
        return r;
    return lit(s, "\r\n", "v1: line must end with CRLF after the destination port");
}

static size_t v2_block_size(int family)
{
    switch (family) {
    case EVN__PROXY_TCP4:
    case EVN__PROXY_UDP4:
        return 12;
    case EVN__PROXY_TCP6:
    case EVN__PROXY_UDP6:
        return 36;
    case EVN__PROXY_UNIX_STREAM:
    case EVN__PROXY_UNIX_DGRAM:
        return 216;
    default:
        return 0;
    }
}

/* The family byte of a PROXY header: EVN__PROXY_* or -1 if not allowed. */
static int v2_family(uint8_t b)
{
    unsigned af = b >> 4, proto = b & 0xF;
    if (af > 3 || proto > 2)
        return -1;
    if (af == 0 || proto == 0)
        return EVN__PROXY_UNSPEC;
    static const int map[3][2] = {{EVN__PROXY_TCP4, EVN__PROXY_UDP4},
                                  {EVN__PROXY_TCP6, EVN__PROXY_UDP6},
                                  {EVN__PROXY_UNIX_STREAM, EVN__PROXY_UNIX_DGRAM}};
    return map[af - 1][proto - 1];
}

static void v2_addrs(const uint8_t *a, int family, struct evn__proxy_hdr *h)
{
    memset(&h->src, 0, sizeof h->src);
    memset(&h->dst, 0, sizeof h->dst);
    if (family == EVN__PROXY_TCP4 || family == EVN__PROXY_UDP4) {
        struct sockaddr_in *s = (struct sockaddr_in *)&h->src, *d = (struct sockaddr_in *)&h->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
    } else if (family == EVN__PROXY_TCP6 || family == EVN__PROXY_UDP6) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
    } else if (family == EVN__PROXY_UNIX_STREAM || family == EVN__PROXY_UNIX_DGRAM) {
        struct sockaddr_un *s = (struct sockaddr_un *)&h->src, *d = (struct sockaddr_un *)&h->dst;
        size_t n = sizeof s->sun_path < 108 ? sizeof s->sun_path : 108;
        s->sun_family = d->sun_family = AF_UNIX;
        memcpy(s->sun_path, a, n);
        memcpy(d->sun_path, a + 108, n);
    }
}

static int v2_parse(struct scan *s, struct evn__proxy_hdr *h)
{
    const uint8_t *b = s->p;
    size_t have = (size_t)(s->end - b);
    size_t m = have < sizeof v2_sig ? have : sizeof v2_sig;
    if (memcmp(b, v2_sig, m) != 0)
        return fail_as(s, -ENOMSG, "not a PROXY protocol header");
    if (have < 13)
        return MORE;
    if (b[12] >> 4 != 2)
        return bad(s, "v2: version must be 2");
    if ((b[12] & 0xF) > 1)
        return bad(s, "v2: command must be LOCAL or PROXY");
    h->version = EVN__PROXY_V2;
    h->command = b[12] & 0xF;
    h->family = EVN__PROXY_UNSPEC;
    if (have < 14)
        return MORE;
    if (h->command == EVN__PROXY_CMD_PROXY) {
        int f = v2_family(b[13]);
        if (f < 0)
            return bad(s, "v2: unknown address family or protocol");
        h->family = f;
    }
    if (have < 16)
        return MORE;
    size_t len = (size_t)b[14] << 8 | b[15], total = 16 + len;
    if (total > EVN__PROXY_V2_MAX)
        return fail_as(s, -EMSGSIZE, "v2: header longer than 4096 bytes");
    size_t block = v2_block_size(h->family);
    if (len < block)
        return bad(s, "v2: length too short for the addresses of its family");
    if (have < total)
        return MORE;
    s->p = b + total;
    memset(&h->src, 0, sizeof h->src);
    memset(&h->dst, 0, sizeof h->dst);
    h->tlv = NULL;
    h->tlv_len = 0;
    if (block == 0)
        return OK;
    v2_addrs(b + 16, h->family, h);
    const uint8_t *t = b + 16 + block, *end = b + total;
    if (t < end) {
        h->tlv = t;
        h->tlv_len = (size_t)(end - t);
    }
    while (t < end) {
        if (end - t < 3)
            return bad(s, "v2: truncated TLV");
        size_t vlen = (size_t)t[1] << 8 | t[2];
        if (vlen > (size_t)(end - t) - 3)
            return bad(s, "v2: TLV longer than the header");
        t += 3 + vlen;
    }
    return OK;
}

ssize_t evn__proxy_parse(const void *buf, size_t len, int versions, struct evn__proxy_hdr *hdr,
                         const char **reason)
{
    static const char *const none[] = {"", "not a PROXY protocol v1 header",
                                       "not a PROXY protocol v2 header",
                                       "not a PROXY protocol header"};
    const uint8_t *b = buf;
    const char *why_local;
    const char **why = reason ? reason : &why_local;
    if (versions < EVN__PROXY_V1 || versions > EVN__PROXY_ANY) {
        *why = "bad PROXY protocol version setting";
        return -EINVAL;
    }
    if (len == 0)
        return EVN__PROXY_INCOMPLETE;
    struct evn__proxy_hdr h;
    memset(&h, 0, sizeof h);
    struct scan s = {b, b + len, 0, NULL};
    int r;
    bool v1 = false;
    if (b[0] == 'P' && (versions & EVN__PROXY_V1)) {
        /* The 107-byte limit is applied by parsing no further: needing a
         * byte past it means the line is too long. */
        v1 = true;
        if (len > EVN__PROXY_V1_MAX)
            s.end = b + EVN__PROXY_V1_MAX;
        r = v1_parse(&s, &h);
    } else if (b[0] == v2_sig[0] && (versions & EVN__PROXY_V2)) {
        r = v2_parse(&s, &h);
    } else {
        *why = none[versions];
        return -ENOMSG;
    }
    if (r == MORE) {
        if (v1 && len >= EVN__PROXY_V1_MAX) {
            *why = "v1: no CRLF in the first 107 bytes";
            return -EMSGSIZE;
        }
        return EVN__PROXY_INCOMPLETE;
    }
    if (r == BAD) {
        *why = s.why;
        return s.err;
    }
    *hdr = h;
    return s.p - b;
}

bool evn__proxy_tlv_find(const struct evn__proxy_hdr *hdr, uint8_t type, const uint8_t **val,
                         size_t *len)
{
    /* The parser checked that every TLV lies within tlv_len. */
    const uint8_t *t = hdr->tlv, *end = hdr->tlv ? hdr->tlv + hdr->tlv_len : NULL;
    while (t && end - t >= 3) {
        size_t n = (size_t)t[1] << 8 | t[2];
        if (n > (size_t)(end - t) - 3)
            return false;
        if (t[0] == type) {
            *val = t + 3;
            *len = n;
            return true;
        }
        t += 3 + n;
    }
    return false;
}

/* An IPv4 address (in network order) from sa if it is IPv4 or IPv4-mapped. */
static bool as_ipv4(const struct sockaddr *sa, uint8_t out[4], uint16_t *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(out, &in->sin_addr, 4);
        if (port)
            *port = in->sin_port;
        return true;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
        memcpy(out, (const uint8_t *)&in6->sin6_addr + 12, 4);
        if (port)
            *port = in6->sin6_port;
        return true;
    }
    return false;
}

/* An IPv6 address from sa, an IPv4 one made into a mapped IPv6 address. */
static bool as_ipv6(const struct sockaddr *sa, uint8_t out[16], uint16_t *port)
{
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(out, &in6->sin6_addr, 16);
        *port = in6->sin6_port;
        return true;
    }
    if (sa->sa_family == AF_INET) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        memcpy(out, mapped, 12);
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        *port = ((const struct sockaddr_in *)sa)->sin_port;
        return true;
    }
    return false;
}

/* The family a pair of addresses is sent as: TCP4, TCP6, UNIX_STREAM or
 * UNSPEC when they cannot be sent. */
static int encode_family(const struct sockaddr *src, const struct sockaddr *dst)
{
    uint8_t a[4];
    if (!src || !dst)
        return EVN__PROXY_UNSPEC;
    if (as_ipv4(src, a, NULL) && as_ipv4(dst, a, NULL))
        return EVN__PROXY_TCP4;
    bool ip_src = src->sa_family == AF_INET || src->sa_family == AF_INET6;
    bool ip_dst = dst->sa_family == AF_INET || dst->sa_family == AF_INET6;
    if (ip_src && ip_dst)
        return EVN__PROXY_TCP6;
    if (src->sa_family == AF_UNIX && dst->sa_family == AF_UNIX)
        return EVN__PROXY_UNIX_STREAM;
    return EVN__PROXY_UNSPEC;
}

static ssize_t encode_v1(char *buf, size_t cap, int family, const struct sockaddr *src,
                         const struct sockaddr *dst)
{
    char line[EVN__PROXY_V1_MAX + 1], s[INET6_ADDRSTRLEN] = "", d[INET6_ADDRSTRLEN] = "";
    int n;
    uint16_t sp = 0, dp = 0;
    if (family == EVN__PROXY_TCP4) {
        uint8_t sa[4], da[4];
        as_ipv4(src, sa, &sp);
        as_ipv4(dst, da, &dp);
        inet_ntop(AF_INET, sa, s, sizeof s);
        inet_ntop(AF_INET, da, d, sizeof d);
    } else if (family == EVN__PROXY_TCP6) {
        uint8_t sa[16], da[16];
        as_ipv6(src, sa, &sp);
        as_ipv6(dst, da, &dp);
        inet_ntop(AF_INET6, sa, s, sizeof s);
        inet_ntop(AF_INET6, da, d, sizeof d);
    }
    if (family == EVN__PROXY_TCP4 || family == EVN__PROXY_TCP6)
        n = snprintf(line, sizeof line, "PROXY TCP%c %s %s %u %u\r\n",
                     family == EVN__PROXY_TCP4 ? '4' : '6', s, d, ntohs(sp), ntohs(dp));
    else
        n = snprintf(line, sizeof line, "PROXY UNKNOWN\r\n");
    if (n < 0 || (size_t)n >= sizeof line || (size_t)n > cap)
        return -ENOBUFS;
    memcpy(buf, line, (size_t)n);
    return n;
}

static ssize_t encode_v2(uint8_t *buf, size_t cap, bool local, int family,
                         const struct sockaddr *src, const struct sockaddr *dst)
{
    uint8_t h[EVN__PROXY_ENCODE_MAX];
    size_t len = 0;
    uint16_t sp = 0, dp = 0;
    memcpy(h, v2_sig, sizeof v2_sig);
    h[12] = local ? 0x20 : 0x21;
    h[13] = 0x00;
    if (local) {
        /* LOCAL carries no addresses: the receiver uses the connection's. */
    } else if (family == EVN__PROXY_TCP4) {
        h[13] = 0x11;
        as_ipv4(src, h + 16, &sp);
        as_ipv4(dst, h + 20, &dp);
        memcpy(h + 24, &sp, 2);
        memcpy(h + 26, &dp, 2);
        len = 12;
    } else if (family == EVN__PROXY_TCP6) {
        h[13] = 0x21;
        as_ipv6(src, h + 16, &sp);
        as_ipv6(dst, h + 32, &dp);
        memcpy(h + 48, &sp, 2);
        memcpy(h + 50, &dp, 2);
        len = 36;
    } else if (family == EVN__PROXY_UNIX_STREAM) {
        const struct sockaddr_un *s = (const struct sockaddr_un *)src;
        const struct sockaddr_un *d = (const struct sockaddr_un *)dst;
        size_t n = sizeof s->sun_path < 108 ? sizeof s->sun_path : 108;
        h[13] = 0x31;
        memset(h + 16, 0, 216);
        memcpy(h + 16, s->sun_path, n);
        memcpy(h + 16 + 108, d->sun_path, n);
        len = 216;
    }
    h[14] = (uint8_t)(len >> 8);
    h[15] = (uint8_t)len;
    if (16 + len > cap)
        return -ENOBUFS;
    memcpy(buf, h, 16 + len);
    return (ssize_t)(16 + len);
}

ssize_t evn__proxy_encode(void *buf, size_t cap, int version, bool local,
                          const struct sockaddr *src, const struct sockaddr *dst)
{
    int family = local ? EVN__PROXY_UNSPEC : encode_family(src, dst);
    if (version == EVN__PROXY_V1)
        return encode_v1(buf, cap, family, src, dst);
    if (version == EVN__PROXY_V2)
        return encode_v2(buf, cap, local, family, src, dst);
    return -EINVAL;
}

static int cidr_fail(char *err, size_t errlen, const char *what, const char *e, size_t n)
{
    if (errlen > 0)
        snprintf(err, errlen, "%s '%.*s'", what, (int)n, e);
    return -EINVAL;
}

/* One entry, ADDRESS or ADDRESS/BITS, spanning exactly e[0, n); the index
 * names an empty one. */
static int cidr_entry(const char *e, size_t n, unsigned index, struct evn__proxy_cidr *c, char *err,
                      size_t errlen)
{
    char a[V6_TEXT_MAX + 1], b[4];
    const char *slash = memchr(e, '/', n);
    size_t alen = slash ? (size_t)(slash - e) : n, blen = slash ? n - alen - 1 : 0;
    unsigned bits;
    if (n == 0) {
        if (errlen > 0)
            snprintf(err, errlen, "entry %u of the list is empty", index + 1);
        return -EINVAL;
    }
    if (alen == 0 || alen >= sizeof a)
        return cidr_fail(err, errlen, "bad address in", e, n);
    memcpy(a, e, alen);
    a[alen] = '\0';
    memset(c, 0, sizeof *c);
    if (memchr(a, ':', alen)) {
        if (inet_pton(AF_INET6, a, c->addr) != 1)
            return cidr_fail(err, errlen, "bad IPv6 address in", e, n);
        c->v6 = 1;
    } else if (!ipv4_text(a, c->addr)) {
        return cidr_fail(err, errlen, "bad IPv4 address (a.b.c.d, no leading zeros) in", e, n);
    }
    unsigned max = c->v6 ? 128 : 32;
    if (!slash) {
        bits = max;
    } else {
        if (blen == 0 || blen >= sizeof b)
            return cidr_fail(err, errlen, "prefix length must be a number in", e, n);
        memcpy(b, slash + 1, blen);
        b[blen] = '\0';
        if (strspn(b, "0123456789") < blen)
            return cidr_fail(err, errlen, "prefix length must be a number in", e, n);
        if (!number_text(b, max, &bits))
            return cidr_fail(err, errlen,
                             c->v6 ? "prefix length must be 0..128 without leading zeros in"
                                   : "prefix length must be 0..32 without leading zeros in",
                             e, n);
    }
    c->bits = (uint8_t)bits;
    /* A mapped network is an IPv4 one: that is how peers are matched. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (c->v6 && bits >= 96 && memcmp(c->addr, mapped, 12) == 0) {
        memmove(c->addr, c->addr + 12, 4);
        memset(c->addr + 4, 0, 12);
        c->v6 = 0;
        c->bits = (uint8_t)(bits - 96);
    }
    for (unsigned i = c->bits; i < 128; i++)
        if (c->addr[i / 8] & (0x80u >> (i % 8)))
            return cidr_fail(err, errlen, "address has bits set past its prefix length:", e, n);
    return 0;
}

int evn__proxy_cidrs_parse(const char *s, size_t len, struct evn__proxy_cidrs *out, char *err,
                           size_t errlen)
{
    if (errlen > 0)
        err[0] = '\0';
    memset(out, 0, sizeof *out);
    const char *p = s, *end = s + len;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (out->n == EVN__PROXY_CIDR_MAX)
            return cidr_fail(err, errlen, "more than 32 entries in the list, from", p, n);
        int rc = cidr_entry(p, n, out->n, &out->e[out->n], err, errlen);
        if (rc < 0)
            return rc;
        out->n++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (a[whole] & mask) == net[whole];
}

bool evn__proxy_cidrs_match(const struct evn__proxy_cidrs *set, const struct sockaddr *peer)
{
    uint8_t a[16];
    int v6 = 0;
    if (!as_ipv4(peer, a, NULL)) {
        if (peer->sa_family != AF_INET6)
            return false;
        memcpy(a, &((const struct sockaddr_in6 *)peer)->sin6_addr, 16);
        v6 = 1;
    }
    for (unsigned i = 0; i < set->n; i++)
        if (set->e[i].v6 == v6 && prefix_match(a, set->e[i].addr, set->e[i].bits))
            return true;
    return false;
}
