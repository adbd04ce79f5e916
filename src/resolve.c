/*
 * Host names for evn_connect, per loop: a cache of the names looked up,
 * each kept while its TTL lasts; the server's hosts_file, read first; and a
 * mechanism that asks the resolver without blocking the loop (c-ares driven
 * by the loop, resolve_cares.c, or getaddrinfo on threads,
 * resolve_thread.c). Nothing is made until the first name is looked up, so
 * a server that never resolves pays nothing.
 *
 * Connects waiting for the same name share one lookup. Answers reach the
 * connects at the end of a loop turn (the resolver's deferred hook), never
 * inside evn_connect, whatever the mechanism does.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Names kept per loop: beyond this, answered ones make room. */
#define LOOKUPS_MAX 256
/* No answer is kept longer than a day, whatever its TTL. */
#define TTL_MAX (24 * 3600)

struct evn__lookup {
    struct evn__lookup *next;
    int family;
    bool pending;
    int64_t expires_ms;        /* answered: kept until then */
    struct evn__addrs *addrs;  /* answered and kept */
    struct evn__dial *waiters; /* pending: the connects waiting */
    char host[];
};

struct evn__addrs *evn__addrs_new(size_t n)
{
    struct evn__addrs *a = evn__calloc(1, sizeof *a + n * sizeof a->a[0]);
    if (a)
        a->refs = 1;
    return a;
}

void evn__addrs_unref(struct evn__addrs *a)
{
    if (a && --a->refs == 0)
        evn__free(a);
}

static void unlink_dial(struct evn__dial *d)
{
    if (!d->prevp)
        return;
    *d->prevp = d->next;
    if (d->next)
        d->next->prevp = d->prevp;
    d->next = NULL;
    d->prevp = NULL;
}

static void push_dial(struct evn__dial **head, struct evn__dial *d)
{
    d->next = *head;
    if (d->next)
        d->next->prevp = &d->next;
    d->prevp = head;
    *head = d;
}

/*
 * The end of the turn: answered connects go on. Only those answered so far:
 * one answered meanwhile (a closed callback connecting again) waits for the
 * next turn. A connect dropped meanwhile (its connection closed from a
 * callback) unlinks itself from the batch.
 */
static void run_answered(struct evn_loop *loop, struct evn__defer *hook)
{
    struct evn__resolver *r = loop->resolver;
    struct evn__dial *batch = r->answered;
    r->answered = NULL;
    if (batch)
        batch->prevp = &batch;
    while (batch) {
        struct evn__dial *d = batch;
        unlink_dial(d);
        evn__dial_answered(d);
    }
}

static void answer(struct evn__resolver *r, struct evn__dial *d, int status,
                   struct evn__addrs *addrs, const char *reason)
{
    unlink_dial(d);
    d->status = status;
    if (addrs)
        addrs->refs++;
    d->addrs = addrs;
    if (status < 0)
        snprintf(d->why, sizeof d->why, "%s", reason ? reason : "");
    push_dial(&r->answered, d);
    evn__defer(r->loop, &r->hook);
}

static struct evn__resolver *resolver_get(struct evn_loop *loop)
{
    if (!loop->resolver) {
        struct evn__resolver *r = evn__calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->loop = loop;
        r->hook.cb = run_answered;
        loop->resolver = r;
    }
    return loop->resolver;
}

static void lookup_free(struct evn__lookup *lk)
{
    evn__addrs_unref(lk->addrs);
    evn__free(lk);
}

/* Make room for one more name: forget those expired, or, if none has,
 * every answered one (pending lookups are never dropped). */
static void make_room(struct evn__resolver *r, int64_t now)
{
    for (int pass = 0; pass < 2 && r->nlookups >= LOOKUPS_MAX; pass++) {
        for (struct evn__lookup **p = &r->lookups; *p;) {
            struct evn__lookup *lk = *p;
            if (!lk->pending && (pass == 1 || lk->expires_ms <= now)) {
                *p = lk->next;
                r->nlookups--;
                lookup_free(lk);
            } else {
                p = &lk->next;
            }
        }
    }
}

static bool family_ok(int want, int family)
{
    return want == AF_UNSPEC || want == family;
}

/*
 * Look d's name up in the server's hosts file. Returns 1 with *out set
 * (in the file's order) if the file lists it, 0 if not, or a negative errno
 * with why set if the file cannot be read.
 */
static int hosts_lookup(const char *path, const struct evn__dial *d, struct evn__addrs **out,
                        char *why, size_t whylen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = -errno;
        snprintf(why, whylen, "hosts file %s: %s", path, evn_strerror(e));
        return e;
    }
    union evn__ip_addr found[EVN__ADDRS_MAX];
    size_t n = 0;
    char line[1024];
    while (n < EVN__ADDRS_MAX && fgets(line, sizeof line, f)) {
        /* A line longer than the buffer: its rest is skipped, not parsed as
         * a line of its own. */
        size_t len = strlen(line);
        if (len && line[len - 1] != '\n' && !feof(f)) {
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n')
                ;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save = NULL;
        char *addr = strtok_r(line, " \t\r\n", &save);
        if (!addr)
            continue;
        union evn__ip_addr ip;
        memset(&ip, 0, sizeof ip);
        if (inet_pton(AF_INET, addr, &ip.in.sin_addr) == 1)
            ip.in.sin_family = AF_INET;
        else if (inet_pton(AF_INET6, addr, &ip.in6.sin6_addr) == 1)
            ip.in6.sin6_family = AF_INET6;
        else
            continue;
        if (!family_ok(d->family, ip.sa.sa_family))
            continue;
        for (char *name; (name = strtok_r(NULL, " \t\r\n", &save));) {
            if (strcasecmp(name, d->host) == 0) {
                found[n++] = ip;
                break;
            }
        }
    }
    fclose(f);
    if (n == 0)
        return 0;
    struct evn__addrs *a = evn__addrs_new(n);
    if (!a) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    a->n = n;
    memcpy(a->a, found, n * sizeof found[0]);
    *out = a;
    return 1;
}

int evn__resolve(struct evn_loop *loop, struct evn__dial *d)
{
    struct evn__resolver *r = resolver_get(loop);
    if (!r)
        return -ENOMEM;
    const char *hosts = loop->srv->hosts_file;
    if (hosts) {
        struct evn__addrs *a = NULL;
        char why[sizeof d->why];
        int rc = hosts_lookup(hosts, d, &a, why, sizeof why);
        if (rc == -ENOMEM)
            return rc;
        if (rc != 0) {
            answer(r, d, rc < 0 ? EVN_ERESOLVE : 0, a, why);
            evn__addrs_unref(a);
            return 0;
        }
    }
    int64_t now = evn__loop_now(loop);
    struct evn__lookup *lk;
    for (lk = r->lookups; lk; lk = lk->next)
        if (lk->family == d->family && strcasecmp(lk->host, d->host) == 0)
            break;
    if (lk && !lk->pending && lk->expires_ms > now) {
        answer(r, d, 0, lk->addrs, NULL);
        return 0;
    }
    if (lk && lk->pending) {
        push_dial(&lk->waiters, d);
        return 0;
    }
    if (!lk) {
        make_room(r, now);
        size_t hl = strlen(d->host) + 1;
        if (!(lk = evn__calloc(1, sizeof *lk + hl)))
            return -ENOMEM;
        memcpy(lk->host, d->host, hl);
        lk->family = d->family;
        lk->next = r->lookups;
        r->lookups = lk;
        r->nlookups++;
    }
    /* New, or expired: ask again. */
    evn__addrs_unref(lk->addrs);
    lk->addrs = NULL;
    lk->pending = true;
    int rc = evn__mech_lookup(r, lk, lk->host, lk->family);
    if (rc < 0) {
        lk->pending = false;
        lk->expires_ms = 0;
        return rc;
    }
    push_dial(&lk->waiters, d);
    return 0;
}

void evn__lookup_done(struct evn__resolver *r, struct evn__lookup *lk, int status,
                      struct evn__addrs *addrs, const char *reason)
{
    lk->pending = false;
    lk->expires_ms = 0;
    if (addrs && addrs->ttl > 0) {
        int ttl = addrs->ttl < TTL_MAX ? addrs->ttl : TTL_MAX;
        lk->expires_ms = evn__loop_now(r->loop) + (int64_t)ttl * 1000;
        lk->addrs = addrs;
        addrs->refs++;
    }
    while (lk->waiters)
        answer(r, lk->waiters, status, addrs, reason);
    evn__addrs_unref(addrs);
}

void evn__resolve_drop(struct evn__dial *d)
{
    unlink_dial(d);
}

void evn__resolver_free(struct evn_loop *loop)
{
    struct evn__resolver *r = loop->resolver;
    if (!r)
        return;
    evn__mech_free(r);
    while (r->lookups) {
        struct evn__lookup *lk = r->lookups;
        r->lookups = lk->next;
        lookup_free(lk);
    }
    evn__free(r);
    loop->resolver = NULL;
}
