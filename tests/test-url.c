/*
 * Address URL parsing: a table of good URLs with every field they parse to,
 * and a table of bad ones, each of which must give -EINVAL with a message
 * that names the offending part. Then the same through evn_server_new().
 */
#include "harness.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

struct good {
    const char *url;
    int proto, family;
    const char *host;
    int port;
    const char *path;
    int reuseport, backlog;
    int tls;
};

static const struct good goods[] = {
    {"tcp://127.0.0.1:8080", EVN__TCP, AF_UNSPEC, "127.0.0.1", 8080, "", 0, 1024, 0},
    {"tcp4://0.0.0.0:1", EVN__TCP, AF_INET, "0.0.0.0", 1, "", 0, 1024, 0},
    {"tcp6://[::1]:65535", EVN__TCP, AF_INET6, "::1", 65535, "", 0, 1024, 0},
    {"tcp://localhost:0", EVN__TCP, AF_UNSPEC, "localhost", 0, "", 0, 1024, 0},
    {"udp://localhost:53", EVN__UDP, AF_UNSPEC, "localhost", 53, "", 0, 1024, 0},
    {"udp4://:9", EVN__UDP, AF_INET, "", 9, "", 0, 1024, 0},
    {"udp6://[fe80::1]:0", EVN__UDP, AF_INET6, "fe80::1", 0, "", 0, 1024, 0},
    {"udp6://[::]:5353", EVN__UDP, AF_INET6, "::", 5353, "", 0, 1024, 0},
    {"unix:///tmp/evn.sock", EVN__UNIX, AF_UNIX, "", 0, "/tmp/evn.sock", 0, 1024, 0},
    {"unix://rel/path.sock", EVN__UNIX, AF_UNIX, "", 0, "rel/path.sock", 0, 1024, 0},
    {"unix://s", EVN__UNIX, AF_UNIX, "", 0, "s", 0, 1024, 0},
    {"[::1]:6380", EVN__TCP, AF_UNSPEC, "::1", 6380, "", 0, 1024, 0},
    {"localhost:80", EVN__TCP, AF_UNSPEC, "localhost", 80, "", 0, 1024, 0},
    {"10.1.2.3:443", EVN__TCP, AF_UNSPEC, "10.1.2.3", 443, "", 0, 1024, 0},
    {":6380", EVN__TCP, AF_UNSPEC, "", 6380, "", 0, 1024, 0},
    {"tcp://:0", EVN__TCP, AF_UNSPEC, "", 0, "", 0, 1024, 0},
    {"tcp://:6380?reuseport=true&backlog=16", EVN__TCP, AF_UNSPEC, "", 6380, "", 1, 16, 0},
    {"tcp://h:1?backlog=16&reuseport=true", EVN__TCP, AF_UNSPEC, "h", 1, "", 1, 16, 0},
    {"tcp://h:1?reuseport=false", EVN__TCP, AF_UNSPEC, "h", 1, "", 0, 1024, 0},
    {"udp://h:1?reuseport=true", EVN__UDP, AF_UNSPEC, "h", 1, "", 1, 1024, 0},
    {"unix:///tmp/x.sock?backlog=5", EVN__UNIX, AF_UNIX, "", 0, "/tmp/x.sock", 0, 5, 0},
    {"tls://h:443?cert=c&key=k", EVN__TCP, AF_UNSPEC, "h", 443, "", 0, 1024, 1},
    {"tls6://[::1]:1?cert=c&key=k", EVN__TCP, AF_INET6, "::1", 1, "", 0, 1024, 1},
    {"tls+unix:///tmp/t.sock?cert=c&key=k", EVN__UNIX, AF_UNIX, "", 0, "/tmp/t.sock", 0, 1024, 1},
};

struct bad {
    const char *url;
    /* must appear in the message, after the echo of the URL itself */
    const char *needle;
};

static const struct bad bads[] = {
    {"", "empty"},
    {"http://x:80", "http"},
    {"tcpx://x:80", "tcpx"},
    {"tcp://127.0.0.1", "port"},
    {"127.0.0.1", "port"},
    {"tcp://127.0.0.1:", "port"},
    {"tcp://127.0.0.1:65536", "65536"},
    {"tcp://127.0.0.1:99999", "99999"},
    {"tcp://127.0.0.1:80x", "80x"},
    {"tcp://h:http", "http"},
    {"tcp://h:-1", "-1"},
    {"tcp://h:1?bogus=1", "bogus"},
    {"tcp://h:1?reuseport=true&frob=2", "frob"},
    {"tcp://h:1?reuseport=maybe", "maybe"},
    {"tcp://h:1?backlog=abc", "abc"},
    {"tcp://h:1?backlog=0", "0"},
    {"tcp://h:1?backlog", "backlog"},
    {"tcp6://[::1:80", "[::1"},
    {"[::1:80", "[::1"},
    {"tcp://::1:80", "::1"},
    {"udp6://[]:80", "[]"},
    {"unix://", "path"},
    {"tls+unix:///tmp/t.sock", "cert="},
    {"tls+unix://?cert=c&key=k", "path"},
    {"tls+unix:///tmp/t.sock?cert=c&key=k&nodelay=true", "nodelay"},
    {"unix:///tmp/t.sock?cert=c", "tls://"},
    {"tcp://h:1?proxy=v3", "'v3'"},
    {"tcp://h:1?proxy=V2", "'V2'"},
    {"tcp://h:1?proxy=", "proxy must be"},
    {"tcp://h:1?proxy=true", "'true'"},
    {"udp://h:1?proxy=v2", "'proxy'"},
    {"udp6://[::1]:1?proxy=any", "'proxy'"},
    {"tcp://h:1?proxy_from=10.0.0.0/8", "proxy="},
    {"tcp://h:1?proxy_from=10.0.0.0/8&proxy=v3", "'v3'"},
    {"tcp://h:1?proxy=v2&proxy_from=10.0.0.0/33", "'10.0.0.0/33'"},
    {"tcp://h:1?proxy=v2&proxy_from=10.0.0.1/8", "'10.0.0.1/8'"},
    {"tcp://h:1?proxy=v2&proxy_from=10.0.0.0/8,bogus", "'bogus'"},
    {"tcp://h:1?proxy=v2&proxy_from=::1,fd00::/129", "'fd00::/129'"},
    {"tcp://h:1?proxy=v2&proxy_from=", "proxy_from"},
    {"tcp://h:1?proxy=v2&proxy_from=1.2.3.4,", "entry 2"},
    {"tcp://h:1?proxy=v2&proxy_from=localhost", "'localhost'"},
    {"unix:///tmp/p.sock?proxy=v2&proxy_from=10.0.0.0/8", "'proxy_from'"},
    {"udp://h:1?proxy_from=10.0.0.0/8", "'proxy_from'"},
    {"tcp://h:1?proxy_timeout=100", "proxy_timeout= needs proxy="},
    {"tcp://h:1?proxy=v2&proxy_timeout=0", "proxy_timeout must be 1..3600000"},
    {"tcp://h:1?proxy=v2&proxy_timeout=3600001", "'3600001'"},
    {"udp://h:1?proxy_timeout=100", "'proxy_timeout'"},
};

/* proxy= and proxy_from=: the version and the parsed list. */
static const struct {
    const char *url;
    int proxy;
    int nfrom;
    int timeout;
} proxy_goods[] = {
    {"tcp://:6380", 0, 0, 0},
    {"tcp://:6380?proxy=v1", EVN__PROXY_V1, 0, 0},
    {"tcp://:6380?proxy=v2&backlog=4096", EVN__PROXY_V2, 0, 0},
    {"tcp://:1?proxy=any&proxy_from=10.0.0.0/8,192.168.1.7,::1/128,fd00::/8", EVN__PROXY_ANY, 4, 0},
    {"tcp://:1?proxy_from=10.0.0.0/8&proxy=v2", EVN__PROXY_V2, 1, 0},
    {"tcp4://0.0.0.0:1?proxy=v2&proxy_from=0.0.0.0/0", EVN__PROXY_V2, 1, 0},
    {"tcp6://[::]:1?proxy=v1&proxy_from=::ffff:10.0.0.0/104,::/0", EVN__PROXY_V1, 2, 0},
    {"unix:///tmp/p.sock?proxy=v2", EVN__PROXY_V2, 0, 0},
    {"tls://h:443?cert=c&key=k&proxy=v2&proxy_from=10.1.2.3", EVN__PROXY_V2, 1, 0},
    {"tls+unix:///tmp/t.sock?cert=c&key=k&proxy=any", EVN__PROXY_ANY, 0, 0},
    {"tcp://:1?proxy=v1&proxy_timeout=250", EVN__PROXY_V1, 0, 250},
    {"unix:///tmp/p.sock?proxy_timeout=3600000&proxy=any", EVN__PROXY_ANY, 0, 3600000},
};

static void test_proxy_urls(void)
{
    for (size_t i = 0; i < sizeof proxy_goods / sizeof proxy_goods[0]; i++) {
        struct evn__url u;
        char err[256] = "untouched";
        int rc = evn__url_parse(proxy_goods[i].url, &u, err, sizeof err);
        fprintf(stderr, "  %s\n", proxy_goods[i].url);
        EXPECT_EQ_ERR(rc, 0);
        EXPECT_STREQ(err, "");
        EXPECT_EQ_INT(u.proxy, proxy_goods[i].proxy);
        EXPECT_EQ_INT(u.proxy_from.n, proxy_goods[i].nfrom);
        EXPECT_EQ_INT(u.proxy_timeout, proxy_goods[i].timeout);
    }
    /* The list is the parsed one: the mapped network became IPv4. */
    struct evn__url u;
    char err[256];
    ASSERT_EQ_ERR(evn__url_parse("tcp://:1?proxy=v2&proxy_from=::ffff:10.0.0.0/104,::/0", &u, err,
                                 sizeof err),
                  0);
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0A010203)};
    EXPECT_TRUE(evn__proxy_cidrs_match(&u.proxy_from, (const struct sockaddr *)&peer));
    peer.sin_addr.s_addr = htonl(0x0B010203);
    EXPECT_FALSE(evn__proxy_cidrs_match(&u.proxy_from, (const struct sockaddr *)&peer));
}

/* evn_connect does not send PROXY headers through its URL (that is
 * evn_connect_proxy_header's): the options are refused there, by name. */
static void test_proxy_outbound(void)
{
    static const char *urls[] = {"tcp://127.0.0.1:1?proxy=v2", "tls://h:1?proxy=v1",
                                 "tcp://127.0.0.1:1?proxy_from=10.0.0.0/8"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        struct evn__url u;
        char err[256] = "";
        EXPECT_EQ_ERR(evn__url_parse_outbound(urls[i], &u, err, sizeof err), -EINVAL);
        EXPECT_CONTAINS(err, "listeners");
        EXPECT_CONTAINS(err, "'proxy");
    }
}

/* The message with its leading echo of the whole URL removed, so a needle is
 * only found where the message names the bad part on purpose. */
static const char *detail(const char *err, const char *url)
{
    size_t n = strlen(url);
    if (n > 0 && strncmp(err, url, n) == 0)
        return err + n;
    return err;
}

static void test_good_urls(void)
{
    for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
        const struct good *g = &goods[i];
        struct evn__url u;
        char err[256] = "untouched";
        int rc = evn__url_parse(g->url, &u, err, sizeof err);
        fprintf(stderr, "  %s\n", g->url);
        EXPECT_EQ_ERR(rc, 0);
        if (rc != 0) {
            fprintf(stderr, "    error: %s\n", err);
            continue;
        }
        EXPECT_STREQ(err, "");
        EXPECT_EQ_INT(u.proto, g->proto);
        EXPECT_EQ_INT(u.family, g->family);
        EXPECT_STREQ(u.host, g->host);
        EXPECT_EQ_INT(u.port, g->port);
        EXPECT_STREQ(u.path, g->path);
        EXPECT_EQ_INT(u.reuseport, g->reuseport);
        EXPECT_EQ_INT(u.backlog, g->backlog);
        EXPECT_EQ_INT(u.tls, g->tls);
    }
}

static void test_bad_urls(void)
{
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const struct bad *b = &bads[i];
        struct evn__url u;
        char err[256] = "";
        int rc = evn__url_parse(b->url, &u, err, sizeof err);
        fprintf(stderr, "  \"%s\" -> %s\n", b->url, err);
        EXPECT_EQ_ERR(rc, -EINVAL);
        EXPECT_CONTAINS(detail(err, b->url), b->needle);
    }
}

/* The longest path a sockaddr_un holds is accepted, one byte more is not. */
static void test_unix_path_length(void)
{
    struct sockaddr_un sun;
    size_t max = sizeof sun.sun_path - 1;
    char url[300], err[256];
    struct evn__url u;

    memcpy(url, "unix://", 7);
    memset(url + 7, 'a', max);
    url[7 + max] = '\0';
    EXPECT_EQ_ERR(evn__url_parse(url, &u, err, sizeof err), 0);
    EXPECT_EQ_SIZE(strlen(u.path), max);

    memset(url + 7, 'a', max + 1);
    url[7 + max + 1] = '\0';
    EXPECT_EQ_ERR(evn__url_parse(url, &u, err, sizeof err), -EINVAL);
    EXPECT_CONTAINS(detail(err, url), "path");

    /* Options after a long path do not count against its length. */
    memset(url + 7, 'a', max);
    strcpy(url + 7 + max, "?backlog=1");
    EXPECT_EQ_ERR(evn__url_parse(url, &u, err, sizeof err), 0);
    EXPECT_EQ_SIZE(strlen(u.path), max);
    EXPECT_EQ_INT(u.backlog, 1);
}

/* A long host name fills the field; one that cannot fit is an error. */
static void test_host_length(void)
{
    char url[600], err[256];
    struct evn__url u;
    memcpy(url, "tcp://", 6);
    memset(url + 6, 'h', 255);
    strcpy(url + 6 + 255, ":1");
    EXPECT_EQ_ERR(evn__url_parse(url, &u, err, sizeof err), 0);
    EXPECT_EQ_SIZE(strlen(u.host), 255);
    memset(url + 6, 'h', 256);
    strcpy(url + 6 + 256, ":1");
    EXPECT_EQ_ERR(evn__url_parse(url, &u, err, sizeof err), -EINVAL);
}

/* The message is cut to fit and always terminated; no buffer at all is fine. */
static void test_small_error_buffer(void)
{
    struct evn__url u;
    char err[8];
    memset(err, 'x', sizeof err);
    EXPECT_EQ_ERR(evn__url_parse("bogus://x:1", &u, err, sizeof err), -EINVAL);
    EXPECT_TRUE(memchr(err, '\0', sizeof err) != NULL);
    EXPECT_EQ_ERR(evn__url_parse("bogus://x:1", &u, NULL, 0), -EINVAL);
    EXPECT_EQ_ERR(evn__url_parse("tcp://x:1", &u, NULL, 0), 0);
}

/* evn_server_new reports a bad address as -EINVAL, names it in evn_errmsg(),
 * and leaves nothing open, even when a good address came first. */
static void test_server_new_bad_url(void)
{
    static const char *cases[][2] = {
        {"tcp://127.0.0.1:65536", "65536"},
        {"tcp://127.0.0.1:0?frobnicate=1", "frobnicate"},
        {"gopher://127.0.0.1:0", "gopher"},
        {"tcp://127.0.0.1:0?proxy=v2&proxy_from=10.0.0.0/33", "'10.0.0.0/33'"},
        {"tcp://127.0.0.1:0?proxy=v2&proxy_from=10.0.0.0/8,nonsense", "'nonsense'"},
        {"tcp://127.0.0.1:0?proxy_from=10.0.0.0/8", "proxy="},
    };
    evn_events ev = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *addrs[] = {"tcp://127.0.0.1:0", cases[i][0]};
        evn_server *srv = (evn_server *)&ev;
        int rc = evn_server_new(&srv, &ev, addrs, 2);
        EXPECT_EQ_ERR(rc, -EINVAL);
        EXPECT_NULL(srv);
        EXPECT_CONTAINS(evn_errmsg(), cases[i][1]);
        rc = evn_server_new(&srv, &ev, addrs + 1, 1);
        EXPECT_EQ_ERR(rc, -EINVAL);
        EXPECT_NULL(srv);
        EXPECT_CONTAINS(evn_errmsg(), cases[i][1]);
    }
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_good_urls);
    TH_RUN(test_bad_urls);
    TH_RUN(test_unix_path_length);
    TH_RUN(test_host_length);
    TH_RUN(test_small_error_buffer);
    TH_RUN(test_proxy_urls);
    TH_RUN(test_proxy_outbound);
    TH_RUN(test_server_new_bad_url);
    return th_finish();
}
