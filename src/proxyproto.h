/*
 * The PROXY protocol (HAProxy's doc/proxy-protocol.txt): a header a load
 * balancer puts in front of a relayed connection's first byte to name the
 * client it relays, as one line of text (v1) or a binary block (v2).
 *
 * Three standalone pieces, none of which allocates, blocks or keeps state:
 *
 * evn__proxy_parse(buf, len, versions, &hdr, &reason)
 *   Reads a header at the start of buf[0, len): the bytes read from the
 *   socket so far. It reads nothing at or past buf + len, and nothing past
 *   the header's end, so what follows the header (the application's first
 *   bytes, or a TLS ClientHello) stays where it is. Returns
 *     > 0   the header is complete and valid; that many bytes are the
 *           header, to be dropped before anything else reads the input.
 *           *hdr is filled in (its tlv pointer points into buf).
 *     0     (EVN__PROXY_INCOMPLETE) every byte so far is a valid start of
 *           a header: read more, then call again with the same buffer grown
 *           by the new bytes. The parse restarts from buf[0] each time and
 *           keeps no state between calls (a header is at most
 *           EVN__PROXY_MAX bytes, so re-reading it costs nothing).
 *     < 0   the connection must be closed, and the event counted:
 *           -ENOMSG   no header: the bytes do not begin with the signature
 *                     of an accepted version (a client talking to the
 *                     listener directly, or the wrong version configured)
 *           -EBADMSG  a header that breaks the specification
 *           -EMSGSIZE a header longer than the cap below
 *           -EINVAL   versions is not EVN__PROXY_V1, _V2 or _ANY
 *           *reason (if reason is not NULL) is then a short static string
 *           for a log line, such as "v1: port has a leading zero".
 *   *hdr is written only when the return is > 0.
 *   A bad header is reported as soon as the bytes seen so far prove it bad
 *   (one wrong byte of the signature is enough), so a client that is not a
 *   balancer is refused at its first read rather than at a timeout.
 *   Timing out a header that never completes is the caller's job: the
 *   specification asks for at least 3 seconds (one TCP retransmit).
 *
 *   What the caller then uses:
 *   - command EVN__PROXY_CMD_PROXY with family TCP4/TCP6/UDP4/UDP6: src is
 *     the client (what evn_conn_remote_addr should give) and dst the
 *     address the client connected to, as sockaddr_in or sockaddr_in6
 *     with the port, ready to copy into a union evn__ip_addr.
 *   - family UNIX_STREAM/UNIX_DGRAM: src and dst are sockaddr_un holding
 *     the balancer's unix socket paths (sun_path is 108 bytes on Linux,
 *     104 on BSD and macOS: longer paths are cut). A TCP connection cannot
 *     give its peer a unix address, so the caller should treat these as
 *     UNSPEC unless it has somewhere to keep them.
 *   - command EVN__PROXY_CMD_LOCAL (v2: the balancer's own connection, such
 *     as a health check), family UNSPEC (v2: no usable addresses) and
 *     UNKNOWN (v1's "PROXY UNKNOWN"): src and dst have ss_family AF_UNSPEC;
 *     the connection keeps the socket's own peer and local addresses, as
 *     the specification asks.
 *   So: use src when src.ss_family is AF_INET or AF_INET6, else the socket.
 *
 * evn__proxy_encode(buf, cap, version, local, src, dst)
 *   Writes a v1 or v2 header for an outbound connection (what HAProxy's
 *   send-proxy / send-proxy-v2 sends) into buf[0, cap), and returns its
 *   length, or -ENOBUFS when cap is too small (EVN__PROXY_ENCODE_MAX is
 *   always enough), or -EINVAL for a bad version. src and dst are borrowed
 *   for the call and may be NULL with local.
 *
 * evn__proxy_cidrs_parse / evn__proxy_cidrs_match
 *   The balancers a listener takes headers from (proxy_from=): a list such
 *   as "10.0.0.0/8,192.168.1.7,::1/128,fd00::/8" parsed into a fixed-size
 *   value (no allocation, copyable with the listener's URL), and a test of a
 *   peer address against it. IPv4 and IPv6 entries are kept apart: an IPv4
 *   peer, or an IPv4-mapped IPv6 peer (::ffff:a.b.c.d, what a dual-stack
 *   listener sees), matches only IPv4 entries, so "0.0.0.0/0,::/0" means
 *   every address. An entry written as a mapped address with a prefix of
 *   96 or more (::ffff:10.0.0.0/104) is stored as the IPv4 one (10.0.0.0/8).
 *
 * The size cap. v1: 107 bytes with the CRLF, the specification's own limit
 * (its longest line, "PROXY UNKNOWN" with two full IPv6 addresses and
 * ports). v2: 4096 bytes in all (the 16-byte fixed part and the length it
 * announces). The addresses take at most 216 bytes (two unix paths); what
 * real balancers add as TLVs is small: HAProxy's authority (a host name, at
 * most 255 bytes), unique id (at most 128), SSL block with version, cipher,
 * common name and algorithm names, CRC32C and network namespace; AWS's
 * VPC endpoint id, Azure's link id and GCP's connection id are tens of
 * bytes. 4096 leaves room for all of them at once and is also nginx's
 * limit, so a balancer configuration that works in front of nginx works
 * here. Only a raw client certificate TLV (PP2_SUBTYPE_SSL_CLIENT_CERT,
 * optional, off by default in senders) could exceed it. A fixed cap bounds
 * what the caller must buffer per connection while the header arrives.
 */
#ifndef EVN_PROXYPROTO_H
#define EVN_PROXYPROTO_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifndef EVN__HIDDEN
#ifdef _WIN32
#define EVN__HIDDEN
#else
#define EVN__HIDDEN __attribute__((visibility("hidden")))
#endif
#endif

/* Which versions a listener accepts; also the version of a parsed header. */
enum { EVN__PROXY_V1 = 1, EVN__PROXY_V2 = 2, EVN__PROXY_ANY = 3 };

#define EVN__PROXY_V1_MAX 107
#define EVN__PROXY_V2_MAX 4096
/* The most bytes a caller ever needs to hold before the header completes. */
#define EVN__PROXY_MAX EVN__PROXY_V2_MAX
/* The longest header evn__proxy_encode writes (v2 with two unix paths). */
#define EVN__PROXY_ENCODE_MAX (16 + 216)

#define EVN__PROXY_INCOMPLETE 0

enum { EVN__PROXY_CMD_LOCAL = 0, EVN__PROXY_CMD_PROXY = 1 };

enum {
    EVN__PROXY_UNSPEC = 0, /* v2 LOCAL, or v2 UNSPEC family or protocol: no addresses */
    EVN__PROXY_UNKNOWN,    /* v1 "PROXY UNKNOWN": no addresses */
    EVN__PROXY_TCP4,
    EVN__PROXY_TCP6,
    EVN__PROXY_UDP4, /* v2 only */
    EVN__PROXY_UDP6,
    EVN__PROXY_UNIX_STREAM, /* v2 only: src and dst are sockaddr_un */
    EVN__PROXY_UNIX_DGRAM,
};

/* Registered v2 TLV types (for evn__proxy_tlv_find). */
enum {
    EVN__PP2_TYPE_ALPN = 0x01,
    EVN__PP2_TYPE_AUTHORITY = 0x02,
    EVN__PP2_TYPE_CRC32C = 0x03,
    EVN__PP2_TYPE_NOOP = 0x04,
    EVN__PP2_TYPE_UNIQUE_ID = 0x05,
    EVN__PP2_TYPE_SSL = 0x20,
    EVN__PP2_TYPE_NETNS = 0x30,
};

struct evn__proxy_hdr {
    int version; /* EVN__PROXY_V1 or EVN__PROXY_V2 */
    int command; /* EVN__PROXY_CMD_*; always PROXY for v1 */
    int family;  /* EVN__PROXY_UNSPEC ... */
    /* The client and the address it connected to; ss_family AF_UNSPEC when
     * the header gives none (see above). */
    struct sockaddr_storage src, dst;
    /* v2: the TLVs after the addresses, all checked to lie within the header;
     * points into the caller's buffer. NULL, 0 when there are none, and for
     * LOCAL and UNSPEC headers, whose bytes are skipped unread. */
    const uint8_t *tlv;
    size_t tlv_len;
};

/* See the top of this file. */
EVN__HIDDEN ssize_t evn__proxy_parse(const void *buf, size_t len, int versions,
                                     struct evn__proxy_hdr *hdr, const char **reason);

/*
 * The first TLV of the given type in a parsed header: true with *val (into
 * the caller's buffer) and *len set, or false. The SSL TLV's sub-TLVs start
 * 5 bytes into its value (a client byte and a 32-bit verify field).
 */
EVN__HIDDEN bool evn__proxy_tlv_find(const struct evn__proxy_hdr *hdr, uint8_t type,
                                     const uint8_t **val, size_t *len);

/*
 * Write a header into buf[0, cap): version EVN__PROXY_V1 or EVN__PROXY_V2.
 * local: a v2 LOCAL header (v1 has none and writes "PROXY UNKNOWN\r\n").
 * Otherwise src and dst name the client and the address it reached:
 * IPv4-mapped IPv6 addresses are written as IPv4; if one is then IPv4 and
 * the other IPv6, the IPv4 one is written as mapped IPv6 (a header has one
 * family for both); two sockaddr_un (whole ones: all of sun_path is read) give a
 * v2 UNIX stream header, and "PROXY UNKNOWN\r\n" in v1. Anything else
 * (NULL, other families) gives "PROXY UNKNOWN\r\n" or a v2 PROXY header of
 * family UNSPEC, which receivers treat as LOCAL. Returns the length, -ENOBUFS
 * (nothing is written then) or -EINVAL.
 */
EVN__HIDDEN ssize_t evn__proxy_encode(void *buf, size_t cap, int version, bool local,
                                      const struct sockaddr *src, const struct sockaddr *dst);

#define EVN__PROXY_CIDR_MAX 32

struct evn__proxy_cidr {
    uint8_t addr[16]; /* network order; IPv4 in the first 4 bytes */
    uint8_t bits;     /* prefix length */
    uint8_t v6;       /* 0: IPv4, 1: IPv6 */
};

struct evn__proxy_cidrs {
    uint8_t n; /* entries used; 0: the list is empty and matches nothing */
    struct evn__proxy_cidr e[EVN__PROXY_CIDR_MAX];
};

/*
 * Parse a comma-separated list of at most EVN__PROXY_CIDR_MAX entries from
 * s[0, len) (no terminator needed), each ADDRESS or ADDRESS/BITS: IPv4 in
 * dotted decimal without leading zeros, IPv6 as inet_pton reads it, BITS in
 * decimal 0..32 or 0..128 without leading zeros; a bare address is /32 or
 * /128. Bits set past the prefix (10.0.0.1/8) are refused as a likely typo.
 * Returns 0, or -EINVAL with a message naming the bad entry in err (always
 * terminated when errlen > 0). *out is undefined after a failure.
 */
EVN__HIDDEN int evn__proxy_cidrs_parse(const char *s, size_t len, struct evn__proxy_cidrs *out,
                                       char *err, size_t errlen);

/* Whether peer (AF_INET or AF_INET6; any other family never matches) lies
 * in one of the list's networks. */
EVN__HIDDEN bool evn__proxy_cidrs_match(const struct evn__proxy_cidrs *set,
                                        const struct sockaddr *peer);

#endif
