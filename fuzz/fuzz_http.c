/*
 * Fuzz target: the HTTP request parser and the chunked body decoder. The
 * first input byte picks where to split the rest, so the decoder is also
 * driven in two pieces; every result must stay inside the input.
 */
#include "http_parser.h"

#include "check.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const char *buf, size_t len)
{
    struct http_header hdrs[32];
    struct http_request req = {.headers = hdrs, .num_headers = 32};
    ssize_t n = http_parse_request(buf, len, &req);
    FUZZ_CHECK(n == HTTP_BAD || n == HTTP_INCOMPLETE || n == HTTP_TOO_MANY_HEADERS ||
               (n > 0 && (size_t)n <= len));
    if (n <= 0)
        return;
    FUZZ_CHECK(req.method >= buf && req.method + req.method_len <= buf + n);
    FUZZ_CHECK(req.target >= buf && req.target + req.target_len <= buf + n);
    FUZZ_CHECK(req.num_headers <= 32);
    for (size_t i = 0; i < req.num_headers; i++) {
        FUZZ_CHECK(hdrs[i].name >= buf && hdrs[i].name + hdrs[i].name_len <= buf + n);
        FUZZ_CHECK(hdrs[i].value >= buf && hdrs[i].value + hdrs[i].value_len <= buf + n);
    }
    /* A complete request stays complete, and its prefixes are incomplete
     * (spot-check the one just short of it). */
    struct http_request again = {.headers = hdrs, .num_headers = 32};
    FUZZ_CHECK(http_parse_request(buf, (size_t)n - 1, &again) == HTTP_INCOMPLETE);
}

static void check_chunked(const char *buf, size_t len, size_t split)
{
    struct http_chunked d;
    char *out = malloc(len ? len : 1);
    if (!out)
        return;
    http_chunked_init(&d);
    size_t got = 0;
    ssize_t n = http_chunked_decode(&d, buf, split, out, &got);
    FUZZ_CHECK(got <= split);
    if (n == HTTP_INCOMPLETE && split < len) {
        size_t got2 = 0;
        n = http_chunked_decode(&d, buf + split, len - split, out, &got2);
        FUZZ_CHECK(got2 <= len - split);
        FUZZ_CHECK(n == HTTP_BAD || n == HTTP_INCOMPLETE || (n > 0 && (size_t)n <= len - split));
    } else {
        FUZZ_CHECK(n == HTTP_BAD || n == HTTP_INCOMPLETE || (n > 0 && (size_t)n <= split));
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t len = size - 1;
    /* An exact-size copy, so ASan catches any read past the end. */
    char *buf = malloc(len ? len : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, len);
    check_request(buf, len);
    check_chunked(buf, len, len ? data[0] % (len + 1) : 0);
    free(buf);
    return 0;
}
