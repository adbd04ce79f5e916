/*
 * http-workers: an HTTP/1.1 server whose handler blocks, on evn, without
 * ever blocking the loop.
 *
 *   GET /sleep?ms=N  a worker thread sleeps N ms (the stand-in for a slow
 *                    database call or a CPU-heavy step), then answers
 *   GET /            Hello World!, answered on the loop at once
 *   GET /stats       the pool's counters, answered on the loop at once
 *
 * The loop parses requests (examples/http/http_parser.c) and hands each slow
 * one, as a job holding the connection's evn_id and what the worker needs, to
 * a fixed pool of threads through a mutex and condition variable queue. The
 * worker does the blocking work, formats the reply into the job and sends it
 * with evn_send_owned (no copy: evn gives the job back to job_done on the
 * loop thread once sent, or with -ENOTCONN if the client has gone), then
 * evn_wake()s the connection, so that its loop carries on with it.
 *
 * One request per connection is with a worker at a time, so replies go out
 * in request order. Input that arrives meanwhile (pipelined requests) is kept
 * in the connection's own buffer, not with evn_keep, because after a wake
 * evn calls data with no input and kept input would come back only with the
 * next bytes from the client, which a pipelining client that waits for its
 * answers never sends. Reading goes on while a job is out, so a client that
 * resets or closes is noticed at once; past PIPELINE_MAX buffered bytes
 * reading stops until the reply is sent.
 */
#include "common.h"
#include "http_parser.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 8192
#define MAX_HEADERS 64
/* Input buffered for a connection while its request is with a worker. */
#define PIPELINE_MAX (64 * 1024)
/* The longest sleep a request may ask for. */
#define SLEEP_MAX_MS 10000

static const char hello[] = "Hello World!\r\n";

/* A slow request on its way to a worker and its reply on the way back. */
struct job {
    struct job *next;
    evn_server *srv;
    evn_id id;
    int ms;
    bool close;
    char out[256];
};

/* The pool: a FIFO of jobs, and the threads that take them. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    bool stop;
    pthread_t *threads;
    int nthreads;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Counters, for /stats and the line printed at exit. */
static atomic_long n_queued, n_running, n_replied, n_dropped;

/* A connection's state. */
struct conn {
    /* A request of this connection is with a worker. */
    bool busy;
    /* The client said it sends no more (eof): close once answered. */
    bool eof;
    /* Input not yet handled, held while busy or after a wake. */
    char *buf;
    size_t len, cap;
};

static void pool_push(struct job *j)
{
    pthread_mutex_lock(&pool.mu);
    j->next = NULL;
    if (pool.tail)
        pool.tail->next = j;
    else
        pool.head = j;
    pool.tail = j;
    pthread_cond_signal(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
}

static struct job *pool_pop(void)
{
    pthread_mutex_lock(&pool.mu);
    while (!pool.head && !pool.stop)
        pthread_cond_wait(&pool.cv, &pool.mu);
    struct job *j = pool.head;
    if (j) {
        pool.head = j->next;
        if (!pool.head)
            pool.tail = NULL;
    }
    pthread_mutex_unlock(&pool.mu);
    return j;
}

/* On the connection's loop thread once the reply is sent or dropped (or on
 * the worker, when evn_send_owned itself fails). */
static void job_done(void *buf, int status, void *arg)
{
    struct job *j = arg;
    if (status == 0)
        atomic_fetch_add(&n_replied, 1);
    else
        atomic_fetch_add(&n_dropped, 1);
    free(j);
}

static void *worker(void *arg)
{
    struct job *j;
    while ((j = pool_pop()) != NULL) {
        atomic_fetch_sub(&n_queued, 1);
        atomic_fetch_add(&n_running, 1);
        /* The slow part: the loop thread never waits for this. */
        struct timespec ts = {j->ms / 1000, (long)(j->ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        char body[64];
        int blen = snprintf(body, sizeof body, "slept %d ms\r\n", j->ms);
        /* Stopping: this is the connection's last answer (see on_draining). */
        if (evn_server_draining(j->srv))
            j->close = true;
        int n = snprintf(j->out, sizeof j->out,
                         "HTTP/1.1 200 OK\r\nServer: evn\r\nContent-Type: text/plain\r\n"
                         "Content-Length: %d\r\n%s\r\n%s",
                         blen, j->close ? "Connection: close\r\n" : "", body);
        /* evn owns j from here: read what the wake needs first. */
        evn_server *srv = j->srv;
        evn_id id = j->id;
        atomic_fetch_sub(&n_running, 1);
        /* The reply, then the wake: from one thread they arrive in order, so
         * the reply is queued before the loop carries on with the
         * connection. Both are ignored for a connection that has gone. */
        evn_send_owned(srv, id, j->out, (size_t)n, job_done, j);
        evn_wake(srv, id);
    }
    return NULL;
}

static int pool_start(int n)
{
    /* The workers take no signals: ex_run reads SIGINT and SIGTERM on a
     * thread of its own, and a worker must not get them first. */
#ifndef _WIN32
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
#endif
    pool.threads = calloc((size_t)n, sizeof *pool.threads);
    int rc = pool.threads ? 0 : ENOMEM;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = pthread_create(&pool.threads[i], NULL, worker, NULL);
        if (rc == 0)
            pool.nthreads++;
    }
#ifndef _WIN32
    pthread_sigmask(SIG_SETMASK, &old, NULL);
#endif
    return rc;
}

/* After the server stopped: end the workers, drop the jobs never started. */
static void pool_stop(evn_server *srv)
{
    pthread_mutex_lock(&pool.mu);
    pool.stop = true;
    struct job *j = pool.head;
    pool.head = pool.tail = NULL;
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    while (j) {
        struct job *next = j->next;
        atomic_fetch_sub(&n_queued, 1);
        atomic_fetch_add(&n_dropped, 1);
        free(j);
        j = next;
    }
    for (int i = 0; i < pool.nthreads; i++)
        pthread_join(pool.threads[i], NULL);
    free(pool.threads);
}

/* Append in[0..len) to the connection's own buffer. */
static bool stash(struct conn *st, const char *in, size_t len)
{
    if (st->len + len > st->cap) {
        size_t ncap = st->cap ? st->cap : 4096;
        while (ncap < st->len + len)
            ncap *= 2;
        char *nb = realloc(st->buf, ncap);
        if (!nb)
            return false;
        st->buf = nb;
        st->cap = ncap;
    }
    memcpy(st->buf + st->len, in, len);
    st->len += len;
    return true;
}

static void respond(evn_conn *c, int status, const char *reason, bool close, const char *body,
                    size_t blen)
{
    char out[512];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nServer: evn\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     status, reason, blen, close ? "Connection: close\r\n" : "");
    evn_write(c, out, (size_t)n);
    evn_write(c, body, blen);
}

static bool iequal(const char *s, size_t n, const char *lit)
{
    if (strlen(lit) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] | 0x20) != (lit[i] | 0x20))
            return false;
    }
    return true;
}

/* What the request's header fields say: persistence, and whether it has a
 * body (which this server does not take). */
static void inspect(const struct http_request *req, bool *keep_alive, bool *body)
{
    bool close = false, keep = false;
    *body = false;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (iequal(h->name, h->name_len, "connection")) {
            close |= iequal(h->value, h->value_len, "close");
            keep |= iequal(h->value, h->value_len, "keep-alive");
        } else if (iequal(h->name, h->name_len, "transfer-encoding")) {
            *body = true;
        } else if (iequal(h->name, h->name_len, "content-length")) {
            *body |= !(h->value_len == 1 && h->value[0] == '0');
        }
    }
    *keep_alive = !close && (req->minor_version >= 1 || keep);
}

/* "ms=N" in the query of /sleep?...; -1 if missing or out of range. */
static int sleep_ms(const char *q, size_t n)
{
    if (n < 4 || memcmp(q, "ms=", 3) != 0)
        return -1;
    int v = 0;
    for (size_t i = 3; i < n && q[i] != '&'; i++) {
        if (q[i] < '0' || q[i] > '9' || v > SLEEP_MAX_MS)
            return -1;
        v = v * 10 + (q[i] - '0');
    }
    return v <= SLEEP_MAX_MS ? v : -1;
}

enum step { STEP_NEXT, STEP_WAIT, STEP_BUSY, STEP_CLOSE };

/* Hand the request to the pool. */
static enum step submit(evn_conn *c, struct conn *st, int ms, bool keep_alive)
{
    struct job *j = malloc(sizeof *j);
    if (!j) {
        respond(c, 500, "Internal Server Error", true, "out of memory\r\n", 15);
        return STEP_CLOSE;
    }
    j->srv = evn_conn_server(c);
    j->id = evn_conn_id(c);
    j->ms = ms;
    j->close = !keep_alive;
    st->busy = true;
    atomic_fetch_add(&n_queued, 1);
    pool_push(j);
    return STEP_BUSY;
}

static void stats(evn_conn *c, bool keep_alive)
{
    char body[256];
    int n = snprintf(body, sizeof body,
                     "workers %d\nqueued %ld\nrunning %ld\nreplied %ld\ndropped %ld\n",
                     pool.nthreads, atomic_load(&n_queued), atomic_load(&n_running),
                     atomic_load(&n_replied), atomic_load(&n_dropped));
    respond(c, 200, "OK", !keep_alive, body, (size_t)n);
}

/* Handle the request at the start of p[0..avail); *used gets its length. */
static enum step request(evn_conn *c, struct conn *st, const char *p, size_t avail, size_t *used)
{
    struct http_header headers[MAX_HEADERS];
    struct http_request req = {.headers = headers, .num_headers = MAX_HEADERS};
    ssize_t n = http_parse_request(p, avail, &req);
    *used = 0;
    if (n == HTTP_INCOMPLETE && avail < HEAD_MAX)
        return STEP_WAIT;
    if (n < 0 || n > HEAD_MAX) {
        respond(c, 400, "Bad Request", true, "Bad Request\r\n", 13);
        return STEP_CLOSE;
    }
    *used = (size_t)n;
    bool keep_alive, body;
    inspect(&req, &keep_alive, &body);
    if (body) {
        respond(c, 501, "Not Implemented", true, "request bodies are not taken\r\n", 30);
        return STEP_CLOSE;
    }
    const char *t = req.target;
    size_t tl = req.target_len;
    const char *q = memchr(t, '?', tl);
    size_t pl = q ? (size_t)(q - t) : tl;
    if (req.method_len != 3 || memcmp(req.method, "GET", 3) != 0) {
        respond(c, 501, "Not Implemented", !keep_alive, "Not Implemented\r\n", 17);
    } else if (pl == 1 && t[0] == '/') {
        respond(c, 200, "OK", !keep_alive, hello, sizeof hello - 1);
    } else if (pl == 6 && memcmp(t, "/stats", 6) == 0) {
        stats(c, keep_alive);
    } else if (pl == 6 && memcmp(t, "/sleep", 6) == 0) {
        int ms = q ? sleep_ms(q + 1, tl - pl - 1) : -1;
        if (ms >= 0)
            return submit(c, st, ms, keep_alive);
        respond(c, 400, "Bad Request", !keep_alive, "want /sleep?ms=0..10000\r\n", 25);
    } else {
        respond(c, 404, "Not Found", !keep_alive, "Not Found\r\n", 11);
    }
    return keep_alive ? STEP_NEXT : STEP_CLOSE;
}

/*
 * Answer the requests in p[0..len) in order, until one goes to a worker, the
 * input ends within a request, or the output is full. Returns how much was
 * consumed in *used, and what to do.
 */
static enum step handle(evn_conn *c, struct conn *st, const char *p, size_t len, size_t *used)
{
    size_t off = 0;
    enum step s = STEP_WAIT;
    while (off < len) {
        size_t n;
        /* A client that pipelines fast requests without reading the answers:
         * carry on once the output drains (see on_drained). */
        if (evn_conn_full(c)) {
            s = STEP_WAIT;
            break;
        }
        s = request(c, st, p + off, len - off, &n);
        off += n;
        if (s != STEP_NEXT)
            break;
    }
    *used = off;
    return s == STEP_NEXT ? STEP_WAIT : s;
}

/* Carry on with the buffered input: after a wake, or after the output
 * drained. */
static evn_action resume(evn_conn *c, struct conn *st)
{
    size_t used;
    enum step s = handle(c, st, st->buf, st->len, &used);
    if (used) {
        memmove(st->buf, st->buf + used, st->len - used);
        st->len -= used;
    }
    if (s == STEP_CLOSE)
        return EVN_CLOSE;
    /* After the client's eof, close once all it sent is answered, unless
     * that waits for the output to drain. */
    if (st->eof && !st->busy && !evn_conn_full(c))
        return EVN_CLOSE;
    return EVN_NONE;
}

static evn_action on_opened(evn_conn *c)
{
    struct conn *st = calloc(1, sizeof *st);
    if (!st)
        return EVN_CLOSE;
    evn_conn_set_udata(c, st);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct conn *st = evn_conn_udata(c);
    if (!in) {
        /* A worker's wake: its reply is queued ahead of anything written
         * now. Read again, and answer what came meanwhile. */
        if (!st->busy)
            return EVN_NONE;
        st->busy = false;
        if (evn_server_draining(evn_conn_server(c)))
            return EVN_CLOSE;
        evn_conn_read(c, 1);
        return resume(c, st);
    }
    if (st->busy || st->len) {
        if (!stash(st, in, len))
            return EVN_CLOSE;
        if (st->busy) {
            if (st->len > PIPELINE_MAX)
                evn_conn_read(c, 0);
            return EVN_NONE;
        }
        return resume(c, st);
    }
    /* The common case: nothing buffered, parse straight from evn's buffer. */
    size_t used;
    enum step s = handle(c, st, in, len, &used);
    if (s == STEP_CLOSE)
        return EVN_CLOSE;
    if (used < len) {
        if (s == STEP_BUSY) {
            if (!stash(st, in + used, len - used))
                return EVN_CLOSE;
        } else if (evn_keep(c, len - used) < 0) {
            return EVN_CLOSE;
        }
    }
    return EVN_NONE;
}

static evn_action on_drained(evn_conn *c)
{
    struct conn *st = evn_conn_udata(c);
    if (st && !st->busy && st->len)
        return resume(c, st);
    return EVN_NONE;
}

/* The client sends no more: answer what it asked, then close. */
static evn_action on_eof(evn_conn *c)
{
    struct conn *st = evn_conn_udata(c);
    if (st && st->busy) {
        st->eof = true;
        return EVN_NONE;
    }
    return EVN_CLOSE;
}

/*
 * The first SIGINT or SIGTERM starts a graceful stop (ex_run): an idle
 * connection closes now; one whose request is with a worker closes after
 * that answer (sent with Connection: close), before any request pipelined
 * behind it.
 */
static evn_action on_draining(evn_conn *c)
{
    struct conn *st = evn_conn_udata(c);
    return st && st->busy ? EVN_NONE : EVN_CLOSE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct conn *st = evn_conn_udata(c);
    if (st) {
        free(st->buf);
        free(st);
    }
    return EVN_NONE;
}

static int nworkers;

static int set_workers(const char *v)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > 4096)
        return -1;
    nworkers = (int)n;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct ex_option more[] = {
        {"--workers", "--workers N       worker threads for slow requests (default: CPUs x 4)",
         set_workers},
    };
    struct ex_opts o = {.port = 8080, .udp_port = -1, .loops = 1};
    ex_parse_more(argc, argv, &o, "http-workers", 0, more, 1);
    if (nworkers == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        nworkers = (int)(cpus > 0 ? cpus * 4 : 4);
    }
    int rc = pool_start(nworkers);
    if (rc != 0) {
        fprintf(stderr, "http-workers: starting the workers: %s\n", strerror(rc));
        pool_stop(NULL);
        return 1;
    }
    printf("%d workers\n", nworkers);
    evn_events ev = {
        .opened = on_opened,
        .data = on_data,
        .drained = on_drained,
        .eof = on_eof,
        .draining = on_draining,
        .closed = on_closed,
    };
    rc = ex_run_ext("http-workers", &ev, &o, NULL, 0, pool_stop);
    printf("%ld replies sent, %ld dropped (their clients had gone)\n", atomic_load(&n_replied),
           atomic_load(&n_dropped));
    return rc;
}
