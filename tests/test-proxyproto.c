/*
 * The PROXY protocol pieces (src/proxyproto.h), table-driven:
 * - good v1 and v2 headers of every kind, every field checked, also with
 *   bytes after them, and every truncated prefix of each must be incomplete;
 * - bad headers, each tagged with the rule of proxyproto.c it breaks, must
 *   give their errno and reason;
 * - the length caps at their exact edges, and bad headers refused early;
 * - encoder round trips and exact bytes;
 * - proxy_from= lists: parsing (bad entries named) and matching, IPv4-mapped
 *   peers and /0 included.
 * Every input is parsed flush against a PROT_NONE page, so reading one byte
 * too far crashes the test at once.
 */
#include "harness.h"
#include "proxyproto.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A byte string that may hold NULs. */
struct bytes {
    const char *p;
    size_t n;
};
#define B(lit)                                                                                     \
    {                                                                                              \
        lit, sizeof(lit) - 1                                                                       \
    }

#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* ---- inputs against a guard page ---- */

static uint8_t *guard_room;
static size_t guard_size;

/* Copy len bytes so that they end exactly where an inaccessible page starts. */
static const uint8_t *flush(const void *data, size_t len)
{
    if (!guard_room) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        guard_size = (2 * EVN__PROXY_MAX + page - 1) / page * page;
        uint8_t *m = mmap(NULL, guard_size + page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(m != MAP_FAILED);
        ASSERT_EQ_INT(mprotect(m + guard_size, page, PROT_NONE), 0);
        guard_room = m;
    }
    ASSERT_TRUE(len <= guard_size);
    uint8_t *p = guard_room + guard_size - len;
    if (len > 0)
        memcpy(p, data, len);
    return p;
}

static ssize_t parse(const void *data, size_t len, int versions, struct evn__proxy_hdr *h,
                     const char **why)
{
    return evn__proxy_parse(flush(data, len), len, versions, h, why);
}

/* "1.2.3.4:5", "[::1]:5", "unix:/path" or "-" (AF_UNSPEC). */
static const char *fmt(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        snprintf(buf, size, "%s:%u", a, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
        snprintf(buf, size, "[%s]:%u", a, ntohs(in6->sin6_port));
    } else if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        snprintf(buf, size, "unix:%.*s", (int)sizeof un->sun_path, un->sun_path);
    } else if (ss->ss_family == AF_UNSPEC) {
        snprintf(buf, size, "-");
    } else {
        snprintf(buf, size, "family %d", ss->ss_family);
    }
    return buf;
}

/* The peer address from "1.2.3.4", "::1", "unix" or "unspec". */
static struct sockaddr_storage addr_of(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strcmp(s, "unix") == 0) {
        ss.ss_family = AF_UNIX;
    } else if (strcmp(s, "unspec") == 0) {
        ss.ss_family = AF_UNSPEC;
    } else if (strchr(s, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        ASSERT_EQ_INT(inet_pton(AF_INET6, s, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        ASSERT_EQ_INT(inet_pton(AF_INET, s, &in->sin_addr), 1);
    }
    return ss;
}

static struct sockaddr_storage ip_port(const char *ip, unsigned port)
{
    struct sockaddr_storage ss = addr_of(ip);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    return ss;
}

/* The settings that accept a header of version v, and the one that does not. */
static int other_version(int v)
{
    return v == EVN__PROXY_V1 ? EVN__PROXY_V2 : EVN__PROXY_V1;
}

/* ---- good headers ---- */

struct good {
    const char *name;
    struct bytes in; /* exactly one header */
    int version, command, family;
    const char *src, *dst;
    size_t tlv_len;
};

#define FULL6 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

static const struct good goods[] = {
    {"v1 tcp4 (the specification's example)",
     B("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), EVN__PROXY_V1, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP4, "192.168.0.1:56324", "192.168.0.11:443", 0},
    {"v1 tcp4 longest", B("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
     EVN__PROXY_V1, EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP4, "255.255.255.255:65535",
     "255.255.255.255:65535", 0},
    {"v1 tcp4 zeros", B("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n"), EVN__PROXY_V1, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP4, "0.0.0.0:0", "10.0.0.1:0", 0},
    {"v1 tcp4 one-digit ports", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 9\r\n"), EVN__PROXY_V1,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP4, "1.2.3.4:1", "5.6.7.8:9", 0},
    {"v1 tcp6", B("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"), EVN__PROXY_V1,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP6, "[2001:db8::1]:1", "[2001:db8::2]:65535", 0},
    {"v1 tcp6 longest (104 bytes)", B("PROXY TCP6 " FULL6 " " FULL6 " 65535 65535\r\n"),
     EVN__PROXY_V1, EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP6, "[" FULL6 "]:65535", "[" FULL6 "]:65535",
     0},
    {"v1 tcp6 upper case hex, ::", B("PROXY TCP6 2001:DB8::A :: 80 8080\r\n"), EVN__PROXY_V1,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP6, "[2001:db8::a]:80", "[::]:8080", 0},
    {"v1 tcp6 mapped, dotted", B("PROXY TCP6 ::ffff:10.1.2.3 ::1 4000 443\r\n"), EVN__PROXY_V1,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP6, "[::ffff:10.1.2.3]:4000", "[::1]:443", 0},
    {"v1 tcp6 full groups with leading zeros",
     B("PROXY TCP6 2001:0db8:0000:0000:0000:0000:0000:0001 ::2 1 2\r\n"), EVN__PROXY_V1,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP6, "[2001:db8::1]:1", "[::2]:2", 0},
    {"v1 unknown, short form", B("PROXY UNKNOWN\r\n"), EVN__PROXY_V1, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_UNKNOWN, "-", "-", 0},
    {"v1 unknown, worst case (107 bytes)", B("PROXY UNKNOWN " FULL6 " " FULL6 " 65535 65535\r\n"),
     EVN__PROXY_V1, EVN__PROXY_CMD_PROXY, EVN__PROXY_UNKNOWN, "-", "-", 0},
    {"v1 unknown, anything ignored", B("PROXY UNKNOWN whatever \x01\xff\0 it says\r\n"),
     EVN__PROXY_V1, EVN__PROXY_CMD_PROXY, EVN__PROXY_UNKNOWN, "-", "-", 0},

    {"v2 tcp4",
     B(SIG "\x21\x11\x00\x0C"
           "\xC0\xA8\x00\x01"
           "\xC0\xA8\x00\x0B"
           "\xDC\x04\x01\xBB"),
     EVN__PROXY_V2, EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP4, "192.168.0.1:56324", "192.168.0.11:443",
     0},
    {"v2 udp4",
     B(SIG "\x21\x12\x00\x0C"
           "\x01\x02\x03\x04"
           "\x05\x06\x07\x08"
           "\x00\x35\xFF\xFF"),
     EVN__PROXY_V2, EVN__PROXY_CMD_PROXY, EVN__PROXY_UDP4, "1.2.3.4:53", "5.6.7.8:65535", 0},
    {"v2 tcp6",
     B(SIG "\x21\x21\x00\x24"
           "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
           "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02"
           "\x00\x01\x00\x00"),
     EVN__PROXY_V2, EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP6, "[2001:db8::1]:1", "[2001:db8::2]:0", 0},
    {"v2 udp6",
     B(SIG "\x21\x22\x00\x24"
           "\0\0\0\0\0\0\0\0\0\0\xff\xff\x0a\x01\x02\x03"
           "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
           "\x13\x88\x01\xbb"),
     EVN__PROXY_V2, EVN__PROXY_CMD_PROXY, EVN__PROXY_UDP6, "[::ffff:10.1.2.3]:5000", "[::1]:443",
     0},
    {"v2 local, no addresses", B(SIG "\x20\x00\x00\x00"), EVN__PROXY_V2, EVN__PROXY_CMD_LOCAL,
     EVN__PROXY_UNSPEC, "-", "-", 0},
    {"v2 local with a family and addresses, skipped",
     B(SIG "\x20\x11\x00\x0C"
           "\x01\x02\x03\x04"
           "\x05\x06\x07\x08"
           "\x00\x01\x00\x02"),
     EVN__PROXY_V2, EVN__PROXY_CMD_LOCAL, EVN__PROXY_UNSPEC, "-", "-", 0},
    {"v2 local ignores even an unknown family byte",
     B(SIG "\x20\xFF\x00\x05"
           "abcde"),
     EVN__PROXY_V2, EVN__PROXY_CMD_LOCAL, EVN__PROXY_UNSPEC, "-", "-", 0},
    {"v2 proxy unspec, bytes skipped",
     B(SIG "\x21\x00\x00\x07"
           "\x01\x00\x09xyzw"),
     EVN__PROXY_V2, EVN__PROXY_CMD_PROXY, EVN__PROXY_UNSPEC, "-", "-", 0},
    {"v2 proxy inet with unspec protocol",
     B(SIG "\x21\x10\x00\x0C"
           "\x01\x02\x03\x04"
           "\x05\x06\x07\x08"
           "\x00\x01\x00\x02"),
     EVN__PROXY_V2, EVN__PROXY_CMD_PROXY, EVN__PROXY_UNSPEC, "-", "-", 0},
    {"v2 proxy unspec family with stream protocol", B(SIG "\x21\x01\x00\x00"), EVN__PROXY_V2,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_UNSPEC, "-", "-", 0},
    {"v2 tcp4 with TLVs",
     B(SIG "\x21\x11\x00\x3D"
           "\x0A\x00\x00\x01"
           "\x0A\x00\x00\x02"
           "\x30\x39\x00\x50"
           "\x01\x00\x02"
           "h2"
           "\x02\x00\x0B"
           "example.com"
           "\x04\x00\x00"
           "\x20\x00\x0F"
           "\x01"
           "\x00\x00\x00\x00"
           "\x21\x00\x07"
           "TLSv1.3"
           "\xEA\x00\x06"
           "vpce-1"),
     EVN__PROXY_V2, EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP4, "10.0.0.1:12345", "10.0.0.2:80", 49},
    {"v2 tcp6 with an empty TLV last",
     B(SIG "\x21\x21\x00\x27"
           "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
           "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x02"
           "\x00\x01\x00\x02"
           "\x04\x00\x00"),
     EVN__PROXY_V2, EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP6, "[::1]:1", "[::2]:2", 3},
};

/* A v2 UNIX header's 216 address bytes: two zero-padded 108-byte paths. */
static size_t unix_header(uint8_t *buf, uint8_t fam, const char *src, const char *dst)
{
    memcpy(buf, SIG, 12);
    buf[12] = 0x21;
    buf[13] = fam;
    buf[14] = 0;
    buf[15] = 216;
    memset(buf + 16, 0, 216);
    memcpy(buf + 16, src, strlen(src));
    memcpy(buf + 16 + 108, dst, strlen(dst));
    return 16 + 216;
}

/* Check one good header: alone, under each setting, then with bytes after
 * it, then each of its prefixes, which must be incomplete. */
static void check_good(const char *name, const uint8_t *in, size_t n, int version, int command,
                       int family, const char *src, const char *dst, size_t tlv_len)
{
    static const struct bytes after[] = {B("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), B(SIG "\x21\x11"),
                                         B("\x16\x03\x01\x02\x00"),
                                         B("PROXY TCP4 6.6.6.6 6.6.6.6 6 6\r\n"), B("\0")};
    char a[160];
    const char *why = "";
    fprintf(stderr, "  %s\n", name);
    for (int settings = 0; settings < 2; settings++) {
        int vs = settings ? EVN__PROXY_ANY : version;
        struct evn__proxy_hdr h;
        memset(&h, 0xA5, sizeof h);
        ssize_t rc = parse(in, n, vs, &h, &why);
        EXPECT_EQ_INT(rc, (ssize_t)n);
        if (rc != (ssize_t)n) {
            fprintf(stderr, "    -> %zd: %s\n", rc, rc < 0 ? why : "");
            continue;
        }
        EXPECT_EQ_INT(h.version, version);
        EXPECT_EQ_INT(h.command, command);
        EXPECT_EQ_INT(h.family, family);
        EXPECT_STREQ(fmt(&h.src, a, sizeof a), src);
        EXPECT_STREQ(fmt(&h.dst, a, sizeof a), dst);
        EXPECT_EQ_SIZE(h.tlv_len, tlv_len);
        if (tlv_len) {
            /* The TLVs are the header's last bytes, in the caller's buffer. */
            const uint8_t *placed = guard_room + guard_size - n;
            EXPECT_TRUE(h.tlv == placed + n - tlv_len);
        } else {
            EXPECT_NULL(h.tlv);
        }
    }
    {
        struct evn__proxy_hdr h;
        EXPECT_EQ_ERR(parse(in, n, other_version(version), &h, &why), -ENOMSG);
        EXPECT_CONTAINS(why, other_version(version) == EVN__PROXY_V1 ? "v1" : "v2");
    }
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        uint8_t buf[EVN__PROXY_MAX + 64];
        struct evn__proxy_hdr h;
        memcpy(buf, in, n);
        memcpy(buf + n, after[i].p, after[i].n);
        EXPECT_EQ_INT(parse(buf, n + after[i].n, EVN__PROXY_ANY, &h, &why), (ssize_t)n);
        EXPECT_EQ_INT(h.family, family);
    }
    for (size_t k = 0; k < n; k++) {
        for (int settings = 0; settings < 2; settings++) {
            struct evn__proxy_hdr h;
            struct evn__proxy_hdr before;
            memset(&h, 0x5A, sizeof h);
            memcpy(&before, &h, sizeof h);
            ssize_t rc = parse(in, k, settings ? EVN__PROXY_ANY : version, &h, &why);
            if (rc != EVN__PROXY_INCOMPLETE) {
                fprintf(stderr, "    prefix of %zu bytes -> %zd (%s)\n", k, rc, rc < 0 ? why : "");
                EXPECT_EQ_INT(rc, EVN__PROXY_INCOMPLETE);
                return;
            }
            /* Nothing is written until the header is complete. */
            EXPECT_MEMEQ(&h, &before, sizeof h);
        }
    }
}

static void test_good_headers(void)
{
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        const struct good *g = &goods[i];
        check_good(g->name, (const uint8_t *)g->in.p, g->in.n, g->version, g->command, g->family,
                   g->src, g->dst, g->tlv_len);
    }
    uint8_t buf[EVN__PROXY_MAX];
    size_t n = unix_header(buf, 0x31, "/run/haproxy.sock", "/run/app.sock");
    check_good("v2 unix stream", buf, n, EVN__PROXY_V2, EVN__PROXY_CMD_PROXY,
               EVN__PROXY_UNIX_STREAM, "unix:/run/haproxy.sock", "unix:/run/app.sock", 0);
    n = unix_header(buf, 0x32, "/a", "");
    check_good("v2 unix datagram, empty destination", buf, n, EVN__PROXY_V2, EVN__PROXY_CMD_PROXY,
               EVN__PROXY_UNIX_DGRAM, "unix:/a", "unix:", 0);
}

/* The TLVs of a parsed header can be looked up by type. */
static void test_tlv_find(void)
{
    const struct good *g = NULL;
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++)
        if (strcmp(goods[i].name, "v2 tcp4 with TLVs") == 0)
            g = &goods[i];
    ASSERT_NOT_NULL(g);
    struct evn__proxy_hdr h;
    const char *why = NULL;
    ASSERT_EQ_INT(parse(g->in.p, g->in.n, EVN__PROXY_V2, &h, &why), (ssize_t)g->in.n);
    static const struct {
        uint8_t type;
        const char *val;
        size_t len;
    } want[] = {
        {EVN__PP2_TYPE_ALPN, "h2", 2},
        {EVN__PP2_TYPE_AUTHORITY, "example.com", 11},
        {EVN__PP2_TYPE_NOOP, "", 0},
        {EVN__PP2_TYPE_SSL, "\x01\x00\x00\x00\x00\x21\x00\x07TLSv1.3", 15},
        {0xEA, "vpce-1", 6},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const uint8_t *val = NULL;
        size_t len = 99;
        EXPECT_TRUE(evn__proxy_tlv_find(&h, want[i].type, &val, &len));
        EXPECT_EQ_SIZE(len, want[i].len);
        if (val && len == want[i].len)
            EXPECT_MEMEQ(val, want[i].val, len);
    }
    const uint8_t *val;
    size_t len;
    EXPECT_FALSE(evn__proxy_tlv_find(&h, EVN__PP2_TYPE_UNIQUE_ID, &val, &len));
    EXPECT_FALSE(evn__proxy_tlv_find(&h, 0x21, &val, &len)); /* a sub-TLV, not a TLV */
    /* No TLVs at all. */
    ASSERT_EQ_INT(parse(goods[0].in.p, goods[0].in.n, EVN__PROXY_V1, &h, &why),
                  (ssize_t)goods[0].in.n);
    EXPECT_FALSE(evn__proxy_tlv_find(&h, EVN__PP2_TYPE_ALPN, &val, &len));
}

/* ---- bad headers ---- */

struct bad {
    const char *rule; /* as named in proxyproto.c */
    struct bytes in;
    int versions, err;
    const char *reason; /* must appear in the reason string */
};

#define V1 EVN__PROXY_V1
#define V2 EVN__PROXY_V2
#define ANY EVN__PROXY_ANY
#define TCP4_BODY "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"

static const struct bad bads[] = {
    {"V1-SIG", B("GET / HTTP/1.1\r\n\r\n"), ANY, -ENOMSG, "not a PROXY protocol header"},
    {"V1-SIG", B("GET / HTTP/1.1\r\n\r\n"), V1, -ENOMSG, "not a PROXY protocol v1 header"},
    {"V1-SIG", B("PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ANY, -ENOMSG, "not a PROXY"},
    {"V1-SIG", B("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), ANY, -ENOMSG, "not a PROXY"},
    {"V1-SIG", B("PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "space after PROXY"},
    {"V1-SIG", B("PROXY\r\n"), V1, -EBADMSG, "space after PROXY"},
    {"V1-PROTO", B("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "protocol"},
    {"V1-PROTO", B("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "protocol"},
    {"V1-PROTO", B("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "protocol"},
    {"V1-PROTO", B("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "protocol"},
    {"V1-PROTO", B("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "protocol"},
    {"V1-PROTO", B("PROXY UNKNOWNX\r\n"), V1, -EBADMSG, "protocol"},
    {"V1-PROTO", B("PROXY UNKNOW\r\n"), V1, -EBADMSG, "protocol"},
    {"V1-PROTO", B("PROXY \r\n"), V1, -EBADMSG, "protocol"},
    {"V1-FIELDS", B("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-FIELDS", B("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-FIELDS", B("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n"), V1, -EBADMSG, "port"},
    {"V1-FIELDS", B("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n"), V1, -EBADMSG, "port"},
    {"V1-FIELDS", B("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n"), V1, -EBADMSG, "source address"},
    {"V1-FIELDS", B("PROXY TCP4 1.2.3.4 5.6.7.8\r\n"), V1, -EBADMSG, "destination address"},
    {"V1-FIELDS", B("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), V1, -EBADMSG, "source port"},
    {"V1-FIELDS", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), V1, -EBADMSG, "CRLF"},
    {"V1-FIELDS", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), V1, -EBADMSG, "CRLF"},
    {"V1-FIELDS", B("PROXY TCP4\r\n"), V1, -EBADMSG, "after the protocol"},
    {"V1-FIELDS", B("PROXY TCP4 \r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 1.2.3.4 5.6.7.1000 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 1.2.3.00 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 1..2.3 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 1.2.3.4 5.6.7.8.9.10.11 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV4", B("PROXY TCP4 ::1 ::1 1 2\r\n"), V1, -EBADMSG, "IPv4"},
    {"V1-IPV6", B("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), V1, -EBADMSG, "IPv6"},
    {"V1-IPV6", B("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"), V1, -EBADMSG, "IPv6"},
    {"V1-IPV6", B("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n"), V1, -EBADMSG, "IPv6"},
    {"V1-IPV6", B("PROXY TCP6 1::2::3 ::1 1 2\r\n"), V1, -EBADMSG, "IPv6"},
    {"V1-IPV6", B("PROXY TCP6 12345:: ::1 1 2\r\n"), V1, -EBADMSG, "IPv6"},
    {"V1-IPV6", B("PROXY TCP6 ::1 ::: 1 2\r\n"), V1, -EBADMSG, "IPv6"},
    {"V1-IPV6", B("PROXY TCP6 [::1] ::1 1 2\r\n"), V1, -EBADMSG, "IPv6"},
    {"V1-IPV6", B("PROXY TCP6 ::g ::1 1 2\r\n"), V1, -EBADMSG, "source address"},
    {"V1-IPV6", B("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), V1, -EBADMSG, "source address"},
    {"V1-IPV6", B("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:0 ::1 1 2\r\n"), V1, -EBADMSG,
     "IPv6"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), V1, -EBADMSG, "port"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"), V1, -EBADMSG, "port"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n"), V1, -EBADMSG, "port"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), V1, -EBADMSG, "leading zeros"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n"), V1, -EBADMSG, "leading zeros"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 01\r\n"), V1, -EBADMSG, "leading zeros"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), V1, -EBADMSG, "port"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), V1, -EBADMSG, "port"},
    {"V1-PORT", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n"), V1, -EBADMSG, "CRLF"},
    {"V1-PORT", B("PROXY TCP6 ::1 ::1 http 2\r\n"), V1, -EBADMSG, "port"},
    {"V1-UNKNOWN", B("PROXY UNKNOWN\n"), V1, -EBADMSG, "CRLF"},
    {"V1-UNKNOWN", B("PROXY UNKNOWN\rX"), V1, -EBADMSG, "CRLF"},
    {"V1-UNKNOWN", B("PROXY UNKNOWN x\ny\r\n"), V1, -EBADMSG, "CRLF"},
    {"V1-UNKNOWN", B("PROXY UNKNOWN x\ry\r\n"), V1, -EBADMSG, "CRLF"},
    {"V1-CRLF", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), V1, -EBADMSG, "CRLF"},
    {"V1-CRLF", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), V1, -EBADMSG, "CRLF"},
    {"V1-CRLF", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), V1, -EBADMSG, "CRLF"},
    {"V1-CRLF", B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n"), V1, -EBADMSG, "CRLF"},
    {"V1-CRLF", B("PROXY TCP6 ::1 ::2 1 2\n\r"), V1, -EBADMSG, "CRLF"},
    {"V1-LEN",
     B("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
       "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n"),
     V1, -EMSGSIZE, "107"},

    {"V2-SIG", B("\r\n\r\n\x01\r\nQUIT\n\x21\x11\x00\x0C" TCP4_BODY), ANY, -ENOMSG,
     "not a PROXY protocol header"},
    {"V2-SIG", B("\r\n\r\n\0\r\nQUIT\r\x21\x11\x00\x0C" TCP4_BODY), V2, -ENOMSG,
     "not a PROXY protocol header"},
    {"V2-SIG", B("\r\nGET"), V2, -ENOMSG, "not a PROXY protocol header"},
    {"V2-SIG", B(SIG "\x21\x11\x00\x0C" TCP4_BODY), V1, -ENOMSG, "not a PROXY protocol v1"},
    {"V2-VER", B(SIG "\x11\x11\x00\x0C" TCP4_BODY), V2, -EBADMSG, "version"},
    {"V2-VER", B(SIG "\x31\x11\x00\x0C" TCP4_BODY), V2, -EBADMSG, "version"},
    {"V2-VER", B(SIG "\x01\x11\x00\x0C" TCP4_BODY), ANY, -EBADMSG, "version"},
    {"V2-VER", B(SIG "\xF1\x11\x00\x0C" TCP4_BODY), V2, -EBADMSG, "version"},
    {"V2-CMD", B(SIG "\x22\x11\x00\x0C" TCP4_BODY), V2, -EBADMSG, "command"},
    {"V2-CMD", B(SIG "\x2F\x11\x00\x0C" TCP4_BODY), V2, -EBADMSG, "command"},
    {"V2-FAM", B(SIG "\x21\x41\x00\x0C" TCP4_BODY), V2, -EBADMSG, "family"},
    {"V2-FAM", B(SIG "\x21\x13\x00\x0C" TCP4_BODY), V2, -EBADMSG, "family"},
    {"V2-FAM", B(SIG "\x21\x03\x00\x00"), V2, -EBADMSG, "family"},
    {"V2-FAM", B(SIG "\x21\xF1\x00\x0C" TCP4_BODY), V2, -EBADMSG, "family"},
    {"V2-LEN", B(SIG "\x21\x11\x0F\xF1"), V2, -EMSGSIZE, "4096"},
    {"V2-LEN", B(SIG "\x20\x00\xFF\xFF"), V2, -EMSGSIZE, "4096"},
    {"V2-ADDR",
     B(SIG "\x21\x11\x00\x0B"
           "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00"),
     V2, -EBADMSG, "length too short"},
    {"V2-ADDR", B(SIG "\x21\x12\x00\x00"), V2, -EBADMSG, "length too short"},
    {"V2-ADDR", B(SIG "\x21\x21\x00\x23"), V2, -EBADMSG, "length too short"},
    {"V2-ADDR", B(SIG "\x21\x31\x00\xD7"), V2, -EBADMSG, "length too short"},
    {"V2-TLV", B(SIG "\x21\x11\x00\x0D" TCP4_BODY "\x04"), V2, -EBADMSG, "truncated TLV"},
    {"V2-TLV", B(SIG "\x21\x11\x00\x0E" TCP4_BODY "\x04\x00"), V2, -EBADMSG, "truncated TLV"},
    {"V2-TLV",
     B(SIG "\x21\x11\x00\x11" TCP4_BODY "\x01\x00\x05"
           "ab"),
     V2, -EBADMSG, "TLV longer"},
    {"V2-TLV", B(SIG "\x21\x11\x00\x0F" TCP4_BODY "\x01\x00\x01"), V2, -EBADMSG, "TLV longer"},
    {"V2-TLV",
     B(SIG "\x21\x11\x00\x14" TCP4_BODY "\x04\x00\x00"
           "\x02\x00\x04"
           "ab"),
     V2, -EBADMSG, "TLV longer"},
    {"V2-TLV",
     B(SIG "\x21\x11\x00\x14" TCP4_BODY "\x04\x00\x00"
           "\x02\x00\x00"
           "\x03\x00"),
     V2, -EBADMSG, "truncated TLV"},
};

static void test_bad_headers(void)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const struct bad *b = &bads[i];
        struct evn__proxy_hdr h, before;
        memset(&h, 0x5A, sizeof h);
        memcpy(&before, &h, sizeof h);
        const char *why = NULL;
        ssize_t rc = parse(b->in.p, b->in.n, b->versions, &h, &why);
        fprintf(stderr, "  %-10s #%zu -> %zd %s\n", b->rule, i, rc, why ? why : "(no reason)");
        EXPECT_EQ_ERR(rc, b->err);
        EXPECT_NOT_NULL(why);
        if (why)
            EXPECT_CONTAINS(why, b->reason);
        EXPECT_MEMEQ(&h, &before, sizeof h);
        /* The reason pointer is optional. */
        EXPECT_EQ_ERR(parse(b->in.p, b->in.n, b->versions, &h, NULL), b->err);
    }
}

/* A bad header is refused as soon as its bytes prove it, not after more. */
static void test_early_rejection(void)
{
    static const struct bad early[] = {
        {"V1-SIG", B("G"), ANY, -ENOMSG, "not a PROXY"},
        {"V1-SIG", B("\x16"), ANY, -ENOMSG, "not a PROXY"}, /* a TLS ClientHello */
        {"V1-SIG", B("PRO"), V2, -ENOMSG, "v2"},
        {"V1-SIG", B("PROXX"), V1, -ENOMSG, "not a PROXY"},
        {"V1-PROTO", B("PROXY X"), V1, -EBADMSG, "protocol"},
        {"V1-PROTO", B("PROXY TCP7"), V1, -EBADMSG, "protocol"},
        {"V1-CRLF", B("PROXY UNKNOWN \n"), V1, -EBADMSG, "CRLF"},
        {"V1-IPV4", B("PROXY TCP4 1.2.3.4:"), V1, -EBADMSG, "source address"},
        {"V2-SIG", B("\r\n\r\n\0\r\nX"), V2, -ENOMSG, "not a PROXY"},
        {"V2-SIG", B("\r"), V1, -ENOMSG, "v1"},
        {"V2-VER", B(SIG "\x11"), V2, -EBADMSG, "version"},
        {"V2-CMD", B(SIG "\x23"), V2, -EBADMSG, "command"},
        {"V2-FAM", B(SIG "\x21\x51"), V2, -EBADMSG, "family"},
        {"V2-LEN", B(SIG "\x21\x11\xFF\xFF"), V2, -EMSGSIZE, "4096"},
        {"V2-ADDR", B(SIG "\x21\x21\x00\x0C"), V2, -EBADMSG, "length too short"},
    };
    for (size_t i = 0; i < sizeof early / sizeof early[0]; i++) {
        struct evn__proxy_hdr h;
        const char *why = "";
        ssize_t rc = parse(early[i].in.p, early[i].in.n, early[i].versions, &h, &why);
        fprintf(stderr, "  %s #%zu -> %zd %s\n", early[i].rule, i, rc, why);
        EXPECT_EQ_ERR(rc, early[i].err);
        EXPECT_CONTAINS(why, early[i].reason);
    }
}

static void test_bad_settings(void)
{
    struct evn__proxy_hdr h;
    const char *why = NULL;
    EXPECT_EQ_ERR(parse("PROXY UNKNOWN\r\n", 15, 0, &h, &why), -EINVAL);
    EXPECT_NOT_NULL(why);
    EXPECT_EQ_ERR(parse("PROXY UNKNOWN\r\n", 15, 4, &h, &why), -EINVAL);
    EXPECT_EQ_ERR(parse("", 0, -1, &h, NULL), -EINVAL);
    /* Nothing yet is never an error. */
    EXPECT_EQ_INT(parse("", 0, EVN__PROXY_ANY, &h, &why), EVN__PROXY_INCOMPLETE);
}

/* V1-LEN and V2-LEN at their exact edges. */
static void test_size_caps(void)
{
    char line[EVN__PROXY_V1_MAX + 16];
    struct evn__proxy_hdr h;
    const char *why = NULL;

    /* "PROXY UNKNOWN " and x's, then CRLF: 107 bytes in all is fine. */
    memset(line, 'x', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 105, "\r\n", 2);
    EXPECT_EQ_INT(parse(line, 107, EVN__PROXY_V1, &h, &why), 107);
    EXPECT_EQ_INT(parse(line, 107 + 5, EVN__PROXY_ANY, &h, &why), 107);
    /* One byte more and the line is too long, whatever follows. */
    memset(line, 'x', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + 106, "\r\n", 2);
    EXPECT_EQ_INT(parse(line, 106, EVN__PROXY_V1, &h, &why), EVN__PROXY_INCOMPLETE);
    EXPECT_EQ_ERR(parse(line, 107, EVN__PROXY_V1, &h, &why), -EMSGSIZE);
    EXPECT_CONTAINS(why, "107");
    EXPECT_EQ_ERR(parse(line, 108, EVN__PROXY_V1, &h, &why), -EMSGSIZE);
    EXPECT_EQ_ERR(parse(line, sizeof line, EVN__PROXY_ANY, &h, &why), -EMSGSIZE);
    /* A CR as the 107th byte still waits for its LF, which would be the
     * 108th: too long. */
    memset(line, 'x', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    line[106] = '\r';
    EXPECT_EQ_ERR(parse(line, 107, EVN__PROXY_V1, &h, &why), -EMSGSIZE);

    /* v2: exactly 4096 bytes (a NOOP TLV as padding) is fine, 4097 is not,
     * and that is known from the first 16 bytes. */
    static uint8_t v2[EVN__PROXY_V2_MAX + 1];
    size_t len = EVN__PROXY_V2_MAX - 16, pad = len - 12 - 3;
    memcpy(v2, SIG "\x21\x11", 14);
    v2[14] = (uint8_t)(len >> 8);
    v2[15] = (uint8_t)len;
    memcpy(v2 + 16, TCP4_BODY, 12);
    v2[28] = EVN__PP2_TYPE_NOOP;
    v2[29] = (uint8_t)(pad >> 8);
    v2[30] = (uint8_t)pad;
    memset(v2 + 31, 0xEE, pad);
    check_good("v2 of exactly 4096 bytes", v2, EVN__PROXY_V2_MAX, EVN__PROXY_V2,
               EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP4, "1.2.3.4:1", "5.6.7.8:2", len - 12);
    len++;
    pad++;
    v2[14] = (uint8_t)(len >> 8);
    v2[15] = (uint8_t)len;
    v2[29] = (uint8_t)(pad >> 8);
    v2[30] = (uint8_t)pad;
    v2[EVN__PROXY_V2_MAX] = 0xEE;
    for (size_t n = 16; n <= EVN__PROXY_V2_MAX + 1; n += n < 40 ? 1 : 1000) {
        EXPECT_EQ_ERR(parse(v2, n, EVN__PROXY_V2, &h, &why), -EMSGSIZE);
    }
    EXPECT_EQ_ERR(parse(v2, EVN__PROXY_V2_MAX + 1, EVN__PROXY_ANY, &h, &why), -EMSGSIZE);
    EXPECT_CONTAINS(why, "4096");
    EXPECT_EQ_INT(parse(v2, 15, EVN__PROXY_V2, &h, &why), EVN__PROXY_INCOMPLETE);
}

/* ---- the encoder ---- */

struct trip {
    const char *name;
    int version;
    bool local;
    const char *src_ip;
    unsigned src_port;
    const char *dst_ip;
    unsigned dst_port;
    /* what parsing the result gives */
    int command, family;
    const char *src, *dst;
};

static const struct trip trips[] = {
    {"v1 ipv4", V1, false, "192.0.2.1", 1234, "198.51.100.7", 443, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP4, "192.0.2.1:1234", "198.51.100.7:443"},
    {"v2 ipv4", V2, false, "192.0.2.1", 1234, "198.51.100.7", 443, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP4, "192.0.2.1:1234", "198.51.100.7:443"},
    {"v1 ipv4 edges", V1, false, "0.0.0.0", 0, "255.255.255.255", 65535, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP4, "0.0.0.0:0", "255.255.255.255:65535"},
    {"v2 ipv4 edges", V2, false, "0.0.0.0", 0, "255.255.255.255", 65535, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP4, "0.0.0.0:0", "255.255.255.255:65535"},
    {"v1 ipv6", V1, false, "2001:db8::1", 65535, "2001:db8::2", 0, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP6, "[2001:db8::1]:65535", "[2001:db8::2]:0"},
    {"v2 ipv6", V2, false, "2001:db8::1", 65535, "2001:db8::2", 0, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP6, "[2001:db8::1]:65535", "[2001:db8::2]:0"},
    {"v1 ipv6 longest", V1, false, FULL6, 65535, FULL6, 65535, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP6, "[" FULL6 "]:65535", "[" FULL6 "]:65535"},
    {"v1 mapped pair is sent as ipv4", V1, false, "::ffff:192.0.2.1", 5, "::ffff:192.0.2.2", 6,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP4, "192.0.2.1:5", "192.0.2.2:6"},
    {"v2 mapped pair is sent as ipv4", V2, false, "::ffff:192.0.2.1", 5, "::ffff:192.0.2.2", 6,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP4, "192.0.2.1:5", "192.0.2.2:6"},
    {"v1 mixed families as ipv6", V1, false, "192.0.2.1", 7, "2001:db8::9", 8, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_TCP6, "[::ffff:192.0.2.1]:7", "[2001:db8::9]:8"},
    {"v2 mixed families as ipv6", V2, false, "2001:db8::9", 8, "::ffff:192.0.2.1", 7,
     EVN__PROXY_CMD_PROXY, EVN__PROXY_TCP6, "[2001:db8::9]:8", "[::ffff:192.0.2.1]:7"},
    {"v2 local", V2, true, NULL, 0, NULL, 0, EVN__PROXY_CMD_LOCAL, EVN__PROXY_UNSPEC, "-", "-"},
    {"v2 local ignores addresses", V2, true, "192.0.2.1", 1, "192.0.2.2", 2, EVN__PROXY_CMD_LOCAL,
     EVN__PROXY_UNSPEC, "-", "-"},
    {"v1 local is unknown", V1, true, "192.0.2.1", 1, "192.0.2.2", 2, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_UNKNOWN, "-", "-"},
    {"v1 no addresses", V1, false, NULL, 0, NULL, 0, EVN__PROXY_CMD_PROXY, EVN__PROXY_UNKNOWN, "-",
     "-"},
    {"v2 no addresses", V2, false, NULL, 0, "192.0.2.2", 2, EVN__PROXY_CMD_PROXY, EVN__PROXY_UNSPEC,
     "-", "-"},
    {"v1 unix is unknown", V1, false, "unix", 0, "unix", 0, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_UNKNOWN, "-", "-"},
    {"v2 unix", V2, false, "unix", 0, "unix", 0, EVN__PROXY_CMD_PROXY, EVN__PROXY_UNIX_STREAM,
     "unix:/run/src.sock", "unix:/run/dst.sock"},
    {"v2 unix with ipv4", V2, false, "unix", 0, "192.0.2.2", 2, EVN__PROXY_CMD_PROXY,
     EVN__PROXY_UNSPEC, "-", "-"},
};

static struct sockaddr_storage trip_addr(const char *ip, unsigned port, const char *path)
{
    struct sockaddr_storage ss;
    if (strcmp(ip, "unix") != 0)
        return ip_port(ip, port);
    memset(&ss, 0, sizeof ss);
    struct sockaddr_un *un = (struct sockaddr_un *)&ss;
    un->sun_family = AF_UNIX;
    snprintf(un->sun_path, sizeof un->sun_path, "%s", path);
    return ss;
}

static void test_round_trips(void)
{
    for (size_t i = 0; i < sizeof trips / sizeof trips[0]; i++) {
        const struct trip *t = &trips[i];
        struct sockaddr_storage s, d;
        const struct sockaddr *sp = NULL, *dp = NULL;
        if (t->src_ip) {
            s = trip_addr(t->src_ip, t->src_port, "/run/src.sock");
            sp = (const struct sockaddr *)&s;
        }
        if (t->dst_ip) {
            d = trip_addr(t->dst_ip, t->dst_port, "/run/dst.sock");
            dp = (const struct sockaddr *)&d;
        }
        uint8_t buf[EVN__PROXY_ENCODE_MAX];
        ssize_t n = evn__proxy_encode(buf, sizeof buf, t->version, t->local, sp, dp);
        fprintf(stderr, "  %s -> %zd\n", t->name, n);
        ASSERT_GT_INT(n, 0);
        EXPECT_LE_SIZE((size_t)n, t->version == V1 ? EVN__PROXY_V1_MAX : EVN__PROXY_ENCODE_MAX);
        struct evn__proxy_hdr h;
        const char *why = "";
        char a[160];
        for (int settings = 0; settings < 2; settings++) {
            ssize_t rc = parse(buf, (size_t)n, settings ? EVN__PROXY_ANY : t->version, &h, &why);
            EXPECT_EQ_INT(rc, n);
            if (rc != n) {
                fprintf(stderr, "    %s\n", rc < 0 ? why : "incomplete");
                continue;
            }
            EXPECT_EQ_INT(h.version, t->version);
            EXPECT_EQ_INT(h.command, t->command);
            EXPECT_EQ_INT(h.family, t->family);
            EXPECT_STREQ(fmt(&h.src, a, sizeof a), t->src);
            EXPECT_STREQ(fmt(&h.dst, a, sizeof a), t->dst);
            EXPECT_EQ_SIZE(h.tlv_len, 0);
        }
        /* The exact size is enough, even flush against the guard page; one
         * byte less is -ENOBUFS. */
        uint8_t *room = guard_room + guard_size - (size_t)n;
        EXPECT_EQ_INT(evn__proxy_encode(room, (size_t)n, t->version, t->local, sp, dp), n);
        EXPECT_MEMEQ(room, buf, (size_t)n);
        EXPECT_EQ_ERR(evn__proxy_encode(buf, (size_t)n - 1, t->version, t->local, sp, dp),
                      -ENOBUFS);
        EXPECT_EQ_ERR(evn__proxy_encode(buf, 0, t->version, t->local, sp, dp), -ENOBUFS);
    }
}

/* What goes on the wire, byte for byte. */
static void test_encode_bytes(void)
{
    struct sockaddr_storage s = ip_port("192.168.0.1", 56324), d = ip_port("192.168.0.11", 443);
    const struct sockaddr *sp = (const struct sockaddr *)&s, *dp = (const struct sockaddr *)&d;
    char buf[EVN__PROXY_ENCODE_MAX];
    static const char v1[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    EXPECT_EQ_INT(evn__proxy_encode(buf, sizeof buf, V1, false, sp, dp), (ssize_t)sizeof v1 - 1);
    EXPECT_MEMEQ(buf, v1, sizeof v1 - 1);
    /* The same bytes as the parser's table. */
    EXPECT_EQ_INT(evn__proxy_encode(buf, sizeof buf, V2, false, sp, dp), (ssize_t)goods[12].in.n);
    EXPECT_STREQ(goods[12].name, "v2 tcp4");
    EXPECT_MEMEQ(buf, goods[12].in.p, goods[12].in.n);
    EXPECT_EQ_INT(evn__proxy_encode(buf, sizeof buf, V2, true, NULL, NULL), 16);
    EXPECT_MEMEQ(buf, SIG "\x20\x00\x00\x00", 16);
    EXPECT_EQ_INT(evn__proxy_encode(buf, sizeof buf, V1, true, NULL, NULL), 15);
    EXPECT_MEMEQ(buf, "PROXY UNKNOWN\r\n", 15);
    EXPECT_EQ_INT(evn__proxy_encode(buf, sizeof buf, V2, false, NULL, NULL), 16);
    EXPECT_MEMEQ(buf, SIG "\x21\x00\x00\x00", 16);
    EXPECT_EQ_ERR(evn__proxy_encode(buf, sizeof buf, ANY, false, sp, dp), -EINVAL);
    EXPECT_EQ_ERR(evn__proxy_encode(buf, sizeof buf, 0, false, sp, dp), -EINVAL);
}

/* ---- proxy_from= lists ---- */

struct match {
    const char *list, *peer;
    bool want;
};

static const struct match matches[] = {
    {"10.0.0.0/8", "10.0.0.0", true},
    {"10.0.0.0/8", "10.255.255.255", true},
    {"10.0.0.0/8", "11.0.0.0", false},
    {"10.0.0.0/8", "9.255.255.255", false},
    {"10.0.0.0/8", "::ffff:10.1.2.3", true},
    {"10.0.0.0/8", "::ffff:11.0.0.1", false},
    {"10.0.0.0/8", "::10.1.2.3", false}, /* IPv4-compatible, not mapped */
    {"10.0.0.0/8", "2001:db8::1", false},
    {"10.0.0.0/8", "unix", false},
    {"10.0.0.0/8", "unspec", false},
    {"192.168.1.7", "192.168.1.7", true},
    {"192.168.1.7", "192.168.1.6", false},
    {"192.168.1.7", "192.168.1.8", false},
    {"192.168.1.7", "::ffff:192.168.1.7", true},
    {"192.168.1.7/32", "192.168.1.7", true},
    {"::1/128", "::1", true},
    {"::1/128", "::2", false},
    {"::1/128", "::", false},
    {"::1/128", "127.0.0.1", false},
    {"::1", "::1", true},
    {"::1", "::ffff:0.0.0.1", false},
    {"fd00::/8", "fd12:3456::1", true},
    {"fd00::/8", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
    {"fd00::/8", "fe00::1", false},
    {"fd00::/8", "fc00::1", false},
    {"0.0.0.0/0", "1.2.3.4", true},
    {"0.0.0.0/0", "0.0.0.0", true},
    {"0.0.0.0/0", "255.255.255.255", true},
    {"0.0.0.0/0", "::ffff:8.8.8.8", true},
    {"0.0.0.0/0", "::1", false},
    {"::/0", "::1", true},
    {"::/0", "2001:db8::1", true},
    {"::/0", "1.2.3.4", false},
    {"::/0", "::ffff:1.2.3.4", false},
    {"0.0.0.0/0,::/0", "1.2.3.4", true},
    {"0.0.0.0/0,::/0", "::ffff:1.2.3.4", true},
    {"0.0.0.0/0,::/0", "2001:db8::1", true},
    {"0.0.0.0/0,::/0", "unix", false},
    {"10.0.0.0/9", "10.127.255.255", true},
    {"10.0.0.0/9", "10.128.0.0", false},
    {"172.16.0.0/12", "172.31.255.255", true},
    {"172.16.0.0/12", "172.32.0.0", false},
    {"172.16.0.0/12", "172.15.255.255", false},
    {"128.0.0.0/1", "128.0.0.1", true},
    {"128.0.0.0/1", "127.255.255.255", false},
    {"192.168.1.6/31", "192.168.1.7", true},
    {"192.168.1.6/31", "192.168.1.8", false},
    {"2001:db8::/127", "2001:db8::", true},
    {"2001:db8::/127", "2001:db8::1", true},
    {"2001:db8::/127", "2001:db8::2", false},
    {"2001:db8::/33", "2001:db8:7fff::1", true},
    {"2001:db8::/33", "2001:db8:8000::", false},
    {"::ffff:10.0.0.0/104", "10.9.9.9", true},
    {"::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true},
    {"::ffff:10.0.0.0/104", "11.0.0.1", false},
    {"::ffff:0:0/96", "1.2.3.4", true},
    {"::ffff:0:0/96", "::1", false},
    {"::ffff:1.2.3.4", "1.2.3.4", true},
    {"1.2.3.4/32,5.6.7.0/24,2001:db8::/32", "5.6.7.200", true},
    {"1.2.3.4/32,5.6.7.0/24,2001:db8::/32", "2001:db8:1::1", true},
    {"1.2.3.4/32,5.6.7.0/24,2001:db8::/32", "1.2.3.4", true},
    {"1.2.3.4/32,5.6.7.0/24,2001:db8::/32", "1.2.3.5", false},
    {"1.2.3.4/32,5.6.7.0/24,2001:db8::/32", "2001:db9::", false},
};

static void test_cidr_match(void)
{
    for (size_t i = 0; i < sizeof matches / sizeof matches[0]; i++) {
        const struct match *m = &matches[i];
        struct evn__proxy_cidrs set;
        char err[128] = "untouched";
        int rc = evn__proxy_cidrs_parse(m->list, strlen(m->list), &set, err, sizeof err);
        EXPECT_EQ_ERR(rc, 0);
        EXPECT_STREQ(err, "");
        struct sockaddr_storage peer = addr_of(m->peer);
        bool got = evn__proxy_cidrs_match(&set, (const struct sockaddr *)&peer);
        if (got != m->want)
            fprintf(stderr, "  %s against %s: got %d\n", m->peer, m->list, got);
        EXPECT_EQ_INT(got, m->want);
    }
}

static void test_cidr_parse(void)
{
    struct evn__proxy_cidrs set;
    char err[128];
    const char *l = "10.0.0.0/8,192.168.1.7,::1/128,fd00::/8";
    ASSERT_EQ_ERR(evn__proxy_cidrs_parse(l, strlen(l), &set, err, sizeof err), 0);
    EXPECT_EQ_INT(set.n, 4);
    EXPECT_EQ_INT(set.e[0].v6, 0);
    EXPECT_EQ_INT(set.e[0].bits, 8);
    EXPECT_MEMEQ(set.e[0].addr, "\x0a\0\0\0", 4);
    EXPECT_EQ_INT(set.e[1].bits, 32);
    EXPECT_MEMEQ(set.e[1].addr, "\xc0\xa8\x01\x07", 4);
    EXPECT_EQ_INT(set.e[2].v6, 1);
    EXPECT_EQ_INT(set.e[2].bits, 128);
    EXPECT_EQ_INT(set.e[3].bits, 8);
    EXPECT_EQ_INT(set.e[3].addr[0], 0xfd);
    /* A mapped network is kept as IPv4. */
    ASSERT_EQ_ERR(evn__proxy_cidrs_parse("::ffff:10.0.0.0/104", 19, &set, err, sizeof err), 0);
    EXPECT_EQ_INT(set.e[0].v6, 0);
    EXPECT_EQ_INT(set.e[0].bits, 8);
    /* Only len bytes are read: the list need not be terminated. */
    ASSERT_EQ_ERR(evn__proxy_cidrs_parse("10.0.0.0/8&proxy=v2", 10, &set, err, sizeof err), 0);
    EXPECT_EQ_INT(set.n, 1);
    const char *flushed = (const char *)flush("1.2.3.4/24", 10);
    EXPECT_EQ_ERR(evn__proxy_cidrs_parse(flushed, 10, &set, err, sizeof err), -EINVAL);
    flushed = (const char *)flush("1.2.3.0/24", 10);
    EXPECT_EQ_ERR(evn__proxy_cidrs_parse(flushed, 10, &set, err, sizeof err), 0);
    flushed = (const char *)flush("::1", 3);
    EXPECT_EQ_ERR(evn__proxy_cidrs_parse(flushed, 3, &set, err, sizeof err), 0);

    /* 32 entries fit, a 33rd is named. */
    char big[64 * 20] = "";
    for (int i = 0; i < 33; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "%s10.0.%d.0/24", i ? "," : "", i);
    size_t n32 = (size_t)(strstr(big, ",10.0.32.0/24") - big);
    EXPECT_EQ_ERR(evn__proxy_cidrs_parse(big, n32, &set, err, sizeof err), 0);
    EXPECT_EQ_INT(set.n, 32);
    struct sockaddr_storage peer = addr_of("10.0.31.9");
    EXPECT_TRUE(evn__proxy_cidrs_match(&set, (const struct sockaddr *)&peer));
    EXPECT_EQ_ERR(evn__proxy_cidrs_parse(big, strlen(big), &set, err, sizeof err), -EINVAL);
    EXPECT_CONTAINS(err, "10.0.32.0/24");
    EXPECT_CONTAINS(err, "32");

    /* The message is cut to fit and terminated. */
    char small[6];
    memset(small, 'x', sizeof small);
    EXPECT_EQ_ERR(evn__proxy_cidrs_parse("bogus", 5, &set, small, sizeof small), -EINVAL);
    EXPECT_TRUE(memchr(small, '\0', sizeof small) != NULL);
    EXPECT_EQ_ERR(evn__proxy_cidrs_parse("bogus", 5, &set, NULL, 0), -EINVAL);

    /* An empty list matches nothing. */
    memset(&set, 0, sizeof set);
    peer = addr_of("1.2.3.4");
    EXPECT_FALSE(evn__proxy_cidrs_match(&set, (const struct sockaddr *)&peer));
}

static const struct {
    const char *list, *needle;
} bad_lists[] = {
    {"", "entry 1 of the list is empty"},
    {"1.2.3.4,", "entry 2 of the list is empty"},
    {",1.2.3.4", "entry 1 of the list is empty"},
    {"1.2.3.4,,5.6.7.8", "entry 2 of the list is empty"},
    {"10.0.0.0/33", "'10.0.0.0/33'"},
    {"::1/129", "'::1/129'"},
    {"10.0.0.1/8", "'10.0.0.1/8'"},
    {"2001:db8::1/64", "'2001:db8::1/64'"},
    {"::ffff:10.0.0.1/104", "'::ffff:10.0.0.1/104'"},
    {"10.0.0.0/", "'10.0.0.0/'"},
    {"/8", "'/8'"},
    {"10.0.0.0/08", "'10.0.0.0/08'"},
    {"10.0.0.0/8/8", "'10.0.0.0/8/8'"},
    {"10.0.0.0/-1", "'10.0.0.0/-1'"},
    {"10.0.0.0/ 8", "'10.0.0.0/ 8'"},
    {"10.0.0.0/1000", "'10.0.0.0/1000'"},
    {"10.0.0/8", "'10.0.0/8'"},
    {"010.0.0.0/8", "'010.0.0.0/8'"},
    {"256.0.0.0/8", "'256.0.0.0/8'"},
    {"a.b.c.d", "'a.b.c.d'"},
    {"localhost", "'localhost'"},
    {" 1.2.3.4", "' 1.2.3.4'"},
    {"1.2.3.4 ", "'1.2.3.4 '"},
    {"[::1]", "'[::1]'"},
    {"fe80::1%eth0", "'fe80::1%eth0'"},
    {"1::2::3", "'1::2::3'"},
    {"1.2.3.4,bogus", "'bogus'"},
    {"1.2.3.4;5.6.7.8", "'1.2.3.4;5.6.7.8'"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255:1/128", "bad address"},
};

static void test_cidr_bad(void)
{
    for (size_t i = 0; i < sizeof bad_lists / sizeof bad_lists[0]; i++) {
        struct evn__proxy_cidrs set;
        char err[160] = "";
        const char *l = bad_lists[i].list;
        int rc = evn__proxy_cidrs_parse(l, strlen(l), &set, err, sizeof err);
        fprintf(stderr, "  \"%s\" -> %s\n", l, err);
        EXPECT_EQ_ERR(rc, -EINVAL);
        EXPECT_CONTAINS(err, bad_lists[i].needle);
    }
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_good_headers);
    TH_RUN(test_tlv_find);
    TH_RUN(test_bad_headers);
    TH_RUN(test_early_rejection);
    TH_RUN(test_bad_settings);
    TH_RUN(test_size_caps);
    TH_RUN(test_round_trips);
    TH_RUN(test_encode_bytes);
    TH_RUN(test_cidr_match);
    TH_RUN(test_cidr_parse);
    TH_RUN(test_cidr_bad);
    return th_finish();
}
