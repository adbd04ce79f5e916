/*
 * Fuzz target: running commands. The input is a stream of requests (RESP,
 * multibulk or inline) that one client sends to a fresh store; each one the
 * parser completes is run. Every command must answer with exactly one
 * well-formed reply (SHUTDOWN: none), so the output is parsed back and its
 * replies counted; the store is freed at the end, so AddressSanitizer sees a
 * leak or a use after free in any command.
 *
 * The server's own callbacks are not linked: the few functions the
 * commands take from it (the connection's client state, the counters of
 * INFO) and evn_write() are stubs here.
 */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_CMDS 2000

/* Checked in every build: the replay tests are built with NDEBUG. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* What the commands wrote, as the connection would have sent it. */
static char *out;
static size_t out_len, out_cap;
static struct client the_client;

int evn_write(evn_conn *c, const void *buf, size_t len)
{
    (void)c;
    if (out_cap - out_len < len) {
        size_t cap = out_cap ? out_cap : 4096;
        while (cap - out_len < len)
            cap *= 2;
        char *n = realloc(out, cap);
        if (!n)
            return -ENOMEM;
        out = n;
        out_cap = cap;
    }
    memcpy(out + out_len, buf, len);
    out_len += len;
    return 0;
}

struct client *client_get(evn_conn *c)
{
    (void)c;
    return &the_client;
}

struct client *client_make(evn_conn *c)
{
    (void)c;
    return &the_client;
}

uint64_t client_id(evn_conn *c)
{
    (void)c;
    return 1;
}

void server_stats_get(struct server_stats *st)
{
    memset(st, 0, sizeof *st);
}

const struct server_conf *server_conf_get(void)
{
    static const struct server_conf conf = {.backend = "fuzz", .nloops = 1, .maxclients = 1};
    return &conf;
}

/* The end of the reply at p, or NULL if it is not a whole, valid reply. */
static const char *skip_reply(const char *p, const char *end)
{
    const char *cr = memchr(p, '\r', (size_t)(end - p));
    if (!cr || cr + 1 >= end || cr[1] != '\n' || p == cr)
        return NULL;
    long long n;
    switch (*p) {
    case '+':
    case '-':
        return cr + 2;
    case ':':
        return resp_strtoll(p + 1, (size_t)(cr - p - 1), &n) ? cr + 2 : NULL;
    case '$':
        if (!resp_strtoll(p + 1, (size_t)(cr - p - 1), &n) || n < -1)
            return NULL;
        if (n < 0)
            return cr + 2;
        if (end - (cr + 2) < n + 2 || cr[2 + n] != '\r' || cr[3 + n] != '\n')
            return NULL;
        return cr + 4 + n;
    case '*':
        if (!resp_strtoll(p + 1, (size_t)(cr - p - 1), &n) || n < -1)
            return NULL;
        p = cr + 2;
        for (long long i = 0; i < n && p; i++)
            p = skip_reply(p, end);
        return p;
    }
    return NULL;
}

static size_t count_replies(void)
{
    size_t n = 0;
    if (out_len == 0)
        return 0;
    const char *p = out, *end = out + out_len;
    while (p && p < end) {
        p = skip_reply(p, end);
        n++;
    }
    REQUIRE(p == end);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        commands_init();
        ready = true;
    }
    struct store *st = store_new(false);
    struct reply r;
    struct resp_parser p;
    if (!st || reply_init(&r, 64 * 1024) < 0) {
        store_free(st);
        return 0;
    }
    resp_init(&p, 1 << 20);
    out_len = 0;
    evn_conn *conn = (evn_conn *)&the_client;
    reply_begin(&r, conn);
    size_t off = 0, ncmds = 0;
    evn_action act = EVN_NONE;
    while (off < size && ncmds < MAX_CMDS && act == EVN_NONE) {
        size_t used;
        int rc = resp_parse(&p, (const char *)data + off, size - off, &used);
        if (rc != RESP_COMPLETE)
            break;
        off += used;
        if (p.argc == 0)
            continue;
        bool shutdown = arg_is(&p.argv[0], "shutdown");
        act = redis_execute(st, conn, &r, NULL, p.argv, p.argc);
        ncmds += !(shutdown && act == EVN_SHUTDOWN);
    }
    reply_flush(&r);
    REQUIRE(!r.failed);
    REQUIRE(count_replies() == ncmds);
    resp_free(&p);
    reply_free(&r);
    store_free(st);
    free(the_client.name);
    the_client.name = NULL;
    return 0;
}
