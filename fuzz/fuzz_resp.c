/*
 * Fuzz target: the RESP request parser. The input is parsed as a stream of
 * commands, first whole, then again fed in two pieces at an input-chosen
 * split (exercising the resume path); both runs must agree, and every
 * argument must lie inside the input.
 */
#include "resp.h"

#include "check.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BULK (1u << 20)
#define MAX_CMDS 4096

/* Parse buf[0..len) as far as it goes, offering it `avail` bytes at first
 * and then all of it; record each command's length. Returns the count. */
static size_t run(const char *buf, size_t len, size_t avail, size_t *lens, int *last)
{
    struct resp_parser p;
    resp_init(&p, MAX_BULK);
    size_t off = 0, n = 0;
    *last = RESP_INCOMPLETE;
    while (off < len && n < MAX_CMDS) {
        size_t have = (avail > off ? avail : len) - off, used = 0;
        int rc = resp_parse(&p, buf + off, have, &used);
        if (rc == RESP_INCOMPLETE && off + have < len)
            rc = resp_parse(&p, buf + off, len - off, &used);
        *last = rc;
        if (rc != RESP_COMPLETE)
            break;
        FUZZ_CHECK(used > 0 && used <= len - off);
        for (size_t i = 0; i < p.argc; i++) {
            const char *a = p.argv[i].ptr;
            /* Quoted inline arguments live in the parser's scratch buffer. */
            bool in_input = a >= buf + off && a + p.argv[i].len <= buf + off + used;
            bool in_scratch =
                p.scratch && a >= p.scratch && a + p.argv[i].len <= p.scratch + p.scratch_cap;
            FUZZ_CHECK(in_input || in_scratch || p.argv[i].len == 0);
        }
        lens[n++] = used;
        off += used;
    }
    if (*last == RESP_ERROR)
        FUZZ_CHECK(p.error && p.error[0]);
    resp_free(&p);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t len = size - 1;
    char *buf = malloc(len ? len : 1); /* exact size: ASan sees over-reads */
    size_t *a = malloc(sizeof *a * MAX_CMDS), *b = malloc(sizeof *b * MAX_CMDS);
    if (!buf || !a || !b)
        goto out;
    memcpy(buf, data + 1, len);
    int last_a, last_b;
    size_t na = run(buf, len, len, a, &last_a);
    size_t split = len ? data[0] % (len + 1) : 0;
    size_t nb = run(buf, len, split, b, &last_b);
    FUZZ_CHECK(na == nb && last_a == last_b);
    FUZZ_CHECK(memcmp(a, b, sizeof *a * na) == 0);
out:
    free(buf);
    free(a);
    free(b);
    return 0;
}
