/* Fuzz target: the address URL parser must accept or reject any bytes with
 * a message, never crash or read out of bounds, and what it accepts must be
 * well-formed. */
#include "internal.h"

#include "check.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The parser takes a C string: give it an exact-size heap copy so ASan
     * sees any read past the terminator. */
    char *url = malloc(size + 1);
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    struct evn__url u;
    char err[128];
    int rc = evn__url_parse(url, &u, err, sizeof err);
    if (rc == 0) {
        FUZZ_CHECK(u.proto == EVN__TCP || u.proto == EVN__UDP || u.proto == EVN__UNIX);
        FUZZ_CHECK(memchr(u.host, '\0', sizeof u.host));
        FUZZ_CHECK(memchr(u.path, '\0', sizeof u.path));
        FUZZ_CHECK(u.port >= 0 && u.port <= 65535);
        FUZZ_CHECK(u.backlog >= 1);
        FUZZ_CHECK(u.proto != EVN__UNIX || u.path[0] != '\0');
    } else {
        FUZZ_CHECK(rc == -EINVAL);
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(memchr(err, '\0', sizeof err));
    }
    /* The same bytes as an evn_connect URL. */
    rc = evn__url_parse_outbound(url, &u, err, sizeof err);
    if (rc == 0) {
        FUZZ_CHECK(u.proto == EVN__TCP || u.proto == EVN__UDP || u.proto == EVN__UNIX);
        FUZZ_CHECK(memchr(u.sni, '\0', sizeof u.sni));
        /* A client certificate comes with its key; a unix socket has no
         * address to check a certificate against without sni=. */
        FUZZ_CHECK(!u.cert[0] == !u.key[0]);
        FUZZ_CHECK(
            !(u.tls && u.proto == EVN__UNIX && u.verify == EVN__VERIFY_REQUIRE && !u.sni[0]));
    } else {
        FUZZ_CHECK(rc == -EINVAL);
        FUZZ_CHECK(err[0] != '\0');
    }
    /* A tiny error buffer must be handled too. */
    char small[4];
    evn__url_parse(url, &u, small, sizeof small);
    FUZZ_CHECK(memchr(small, '\0', sizeof small));
    free(url);
    return 0;
}
