/*
 * Looking names up without c-ares: getaddrinfo, which blocks, on threads
 * of the loop's own (up to THREADS, started as lookups need them), each
 * answer posted back to the loop through its inbox. getaddrinfo gives no
 * TTL, so nothing is kept: every connect to a name looks it up again.
 *
 * Freeing the loop waits for the lookups under way to end (a resolver that
 * does not answer holds it for as long as getaddrinfo waits).
 */
#include "internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#define THREADS 4

struct job {
    struct job *next;
    struct evn__lookup *lk;
    int family;
    int status;
    struct evn__addrs *addrs;
    char why[200];
    char host[];
};

struct pool {
    struct evn_loop *loop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *queue, **queue_tail; /* waiting for a thread */
    struct job *busy;                /* taken by a thread, or answered and posted */
    pthread_t threads[THREADS];
    int nthreads, idle;
    bool stop;
};

static void lookup(struct job *j)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = j->family;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(j->host, NULL, &hints, &res);
    size_t n = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        n += (a->ai_family == AF_INET || a->ai_family == AF_INET6) && n < EVN__ADDRS_MAX;
    if (rc == 0 && n == 0)
        rc = EAI_NODATA;
    if (rc == 0 && !(j->addrs = evn__addrs_new(n)))
        rc = EAI_MEMORY;
    if (rc != 0) {
        snprintf(j->why, sizeof j->why, "%s",
                 rc == EAI_SYSTEM ? evn_strerror(-errno) : gai_strerror(rc));
        j->status = EVN_ERESOLVE;
    } else {
        for (struct addrinfo *a = res; a && j->addrs->n < n; a = a->ai_next)
            if (a->ai_family == AF_INET || a->ai_family == AF_INET6)
                memcpy(&j->addrs->a[j->addrs->n++], a->ai_addr, a->ai_addrlen);
    }
    if (res)
        freeaddrinfo(res);
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->queue && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        struct job *j = p->queue;
        p->queue = j->next;
        if (!p->queue)
            p->queue_tail = &p->queue;
        j->next = p->busy;
        p->busy = j;
        p->idle--;
        pthread_mutex_unlock(&p->mu);
        lookup(j);
        struct evn__msg m = {.type = EVN__M_RESOLVED, .fd = -1, .arg = (uint64_t)(uintptr_t)j};
        /* Out of memory for the inbox: the answer is lost, and the connects
         * waiting for it end with their timeout, or with the server. */
        evn__loop_post(p->loop, &m);
        pthread_mutex_lock(&p->mu);
        p->idle++;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static struct pool *pool_new(struct evn_loop *loop)
{
    struct pool *p = evn__calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    p->queue_tail = &p->queue;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

int evn__mech_lookup(struct evn__resolver *r, struct evn__lookup *lk, const char *host, int family)
{
    struct pool *p = r->mech;
    if (!p && !(p = r->mech = pool_new(r->loop)))
        return -ENOMEM;
    size_t hl = strlen(host) + 1;
    struct job *j = evn__calloc(1, sizeof *j + hl);
    if (!j)
        return -ENOMEM;
    memcpy(j->host, host, hl);
    j->lk = lk;
    j->family = family;
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    if (p->idle == 0 && p->nthreads < THREADS) {
        /* The threads take no signals: the application's thread does. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int e = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (e == 0) {
            p->nthreads++;
            p->idle++;
        } else if (p->nthreads == 0) {
            rc = -e;
        }
    }
    if (rc == 0) {
        *p->queue_tail = j;
        p->queue_tail = &j->next;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (rc < 0) {
        evn__set_errmsg("cannot start a resolver thread: %s", evn_strerror(rc));
        evn__free(j);
    }
    return rc;
}

void evn__mech_posted(struct evn_loop *loop, void *job)
{
    struct evn__resolver *r = loop->resolver;
    struct pool *p = r->mech;
    struct job *j = job;
    pthread_mutex_lock(&p->mu);
    for (struct job **q = &p->busy; *q; q = &(*q)->next)
        if (*q == j) {
            *q = j->next;
            break;
        }
    pthread_mutex_unlock(&p->mu);
    evn__lookup_done(r, j->lk, j->status, j->addrs, j->why);
    evn__free(j);
}

static void jobs_free(struct job *j)
{
    while (j) {
        struct job *next = j->next;
        evn__addrs_unref(j->addrs);
        evn__free(j);
        j = next;
    }
}

void evn__mech_free(struct evn__resolver *r)
{
    struct pool *p = r->mech;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* Answers posted and not taken lie in the inbox, which drops them. */
    jobs_free(p->queue);
    jobs_free(p->busy);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    evn__free(p);
    r->mech = NULL;
}

int evn__mech_check(struct evn_server *srv)
{
    if (srv->dns_servers) {
        evn__set_errmsg("dns_servers needs evn built with c-ares (EVN_CARES)");
        return -ENOTSUP;
    }
    return 0;
}
