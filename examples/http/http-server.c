/*
 * http-server: a small HTTP/1.1 server on evn.
 *
 *   GET /       Hello World!
 *   GET /ip     the client's address as evn sees it, "203.0.113.7:51234" or
 *               "[2001:db8::7]:51234": behind a load balancer and a listener
 *               with proxy= (--tcp-options 'proxy=v2'), the client the PROXY
 *               header named, so a deployment can check what reaches it
 *   POST /echo  the request body
 *   GET /stats  evn's statistics, the server's and each loop's, as JSON
 *   else        404 (501 for a method it does not know)
 *
 * With --root DIR, GET and HEAD serve the files under DIR instead (static
 * files: types, Last-Modified and If-Modified-Since, one byte range; see
 * static_files.c for how a path is kept inside DIR), GET /ip and POST /echo
 * stay, and every other method known gets 405. A file's body is queued with
 * evn_sendfile_owned behind its head, so it goes from the page cache to the
 * socket with sendfile(2), and the loop only ever opens and fstats files
 * (evn closes each once sent: no dup, no close of our own).
 *
 * Every request is parsed in full (http_parser.c): request line, header
 * fields, then a body framed by Content-Length or chunked. Connections are
 * persistent as HTTP/1.1 says (and for HTTP/1.0 with Connection: keep-alive),
 * pipelined requests are answered in order, and a request that breaks a limit
 * gets its status (400, 408, 413, 414, 431, 501) and the connection is
 * closed.
 *
 * The data callback is given a pointer into the loop's read buffer. It
 * answers every complete request in it, each with one evn_write, and hands an
 * unfinished request head back to evn with evn_keep(), which returns it with
 * the next input. A body that spans reads is consumed as it comes, into
 * per-connection state that exists only once a request has spanned reads: a
 * GET on a persistent connection allocates nothing and makes no system call
 * of its own. While evn reports the output full, the rest of the input waits
 * (kept) until the output drains.
 */
#include "common.h"
#include "http_parser.h"
#include "static_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The largest request head (request line and header fields) taken. */
#define HEAD_MAX 8192
#define MAX_HEADERS 100
/* Responses up to this size are built on the stack and written at once. */
#define OUT_MAX 16384
/* A body buffer up to this size is kept for the connection's next body. */
#define BODY_KEEP_MAX 65536

static const char hello[] = "Hello World!\r\n";

static uint64_t max_body = 1024 * 1024;
static int64_t idle_timeout_ms = 75000;
/* A request begun must be complete within this (0: no limit). */
static int64_t request_timeout_ms = 10000;
/* --root: the directory GET and HEAD are served from, or -1. */
static int root_fd = -1;
/* --stats-path: where GET answers with evn_server_stats as JSON ("" for
 * nowhere). */
static const char *stats_path = "/stats";
static size_t stats_path_len = 6;

/*
 * The Date header changes once a second. The ticker on loop 0 publishes the
 * current second; each loop thread formats its own copy of the header lines
 * that hold it, and of the whole hello response, when it sees a new second.
 */
static _Atomic int64_t now_sec;

struct date_cache {
    int64_t sec;
    /* "Server: evn\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    char lines[64];
    size_t lines_len;
    /* The whole response to GET / on a persistent HTTP/1.1 connection. */
    char hello[192];
    size_t hello_len;
};

static _Thread_local struct date_cache tl_dates = {.sec = -1};

static void format_dates(struct date_cache *dc, int64_t sec)
{
    char date[SF_DATE_LEN];
    sf_format_date(date, sec);
    int n =
        snprintf(dc->lines, sizeof dc->lines, "Server: evn\r\nDate: %.*s\r\n", SF_DATE_LEN, date);
    dc->lines_len = (size_t)n;
    n = snprintf(dc->hello, sizeof dc->hello,
                 "HTTP/1.1 200 OK\r\n%sContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                 dc->lines, sizeof hello - 1, hello);
    dc->hello_len = (size_t)n;
    dc->sec = sec;
}

static const struct date_cache *dates(void)
{
    int64_t sec = atomic_load_explicit(&now_sec, memory_order_relaxed);
    if (sec != tl_dates.sec)
        format_dates(&tl_dates, sec);
    return &tl_dates;
}

/* Publish the time now, and come back just after the next second begins. */
static evn_action on_tick(evn_server *srv, int64_t *delay_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store_explicit(&now_sec, (int64_t)ts.tv_sec, memory_order_relaxed);
    *delay_ms = 1001 - ts.tv_nsec / 1000000;
    return EVN_NONE;
}

enum route {
    R_HELLO,
    R_IP,
    R_ECHO,
    R_FILE,
    R_STATS,
    R_NOT_FOUND,
    R_NOT_ALLOWED,
    R_NOT_IMPLEMENTED
};

/* A file to answer with (route R_FILE), opened when the head arrived. */
struct file_reply {
    int fd;     /* -1 when status says why there is none */
    int status; /* 0, or the error status from sf_open */
    uint64_t size;
    int64_t mtime;
    const char *type;
    struct sf_range range;
    int64_t if_modified_since; /* -1: none */
    bool if_range;
};

/* How a request is to be answered, decided from its head. */
struct reply {
    unsigned char route; /* enum route */
    bool head;           /* HEAD: the headers of the answer but no body */
    bool keep_alive;     /* the connection stays open after the answer */
    bool http10;         /* HTTP/1.0: persistence must be said */
    struct file_reply file;
};

/* What the header fields say about the body and the connection. */
struct framing {
    bool chunked;
    bool expect_continue;
    uint64_t length;
};

/* A connection's state while a request body spans reads. */
struct conn {
    struct reply reply;
    bool in_body;
    bool chunked;
    uint64_t left; /* Content-Length bytes still to come */
    struct http_chunked dec;
    /* The body so far, when the route echoes it. */
    char *body;
    size_t body_len, body_cap;
    /* The request deadline is armed. */
    bool deadline;
};

/* What the data callback does after one step. */
enum step { STEP_NEXT, STEP_WAIT, STEP_CLOSE };

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 206:
        return "Partial Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 416:
        return "Range Not Satisfiable";
    case 413:
        return "Content Too Large";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static size_t put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return n;
}

#define PUT(p, lit) put(p, lit, sizeof lit - 1)

static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/*
 * Write a response head to out (OUT_MAX bytes): the status line, Server and
 * Date, Content-Type (unless type is NULL), Content-Length (unless length is
 * negative), the lines in extra (each ending in CRLF) and Connection as r
 * needs. Returns its length.
 */
static size_t put_head(char *out, const struct date_cache *dc, int status, const struct reply *r,
                       const char *type, int64_t length, const char *extra, size_t extra_len)
{
    const char *why = reason(status);
    size_t n = PUT(out, "HTTP/1.1 ");
    n += put_u64(out + n, (uint64_t)status);
    out[n++] = ' ';
    n += put(out + n, why, strlen(why));
    n += PUT(out + n, "\r\n");
    n += put(out + n, dc->lines, dc->lines_len);
    if (type) {
        n += PUT(out + n, "Content-Type: ");
        n += put(out + n, type, strlen(type));
        n += PUT(out + n, "\r\n");
    }
    if (length >= 0) {
        n += PUT(out + n, "Content-Length: ");
        n += put_u64(out + n, (uint64_t)length);
        n += PUT(out + n, "\r\n");
    }
    n += put(out + n, extra, extra_len);
    if (!r->keep_alive)
        n += PUT(out + n, "Connection: close\r\n");
    else if (r->http10)
        n += PUT(out + n, "Connection: keep-alive\r\n");
    n += PUT(out + n, "\r\n");
    return n;
}

/* Answer with status and the extra header lines, one evn_write when it fits
 * OUT_MAX (always, but for large echoed bodies). */
static void respond_ext(evn_conn *c, const struct date_cache *dc, int status, const struct reply *r,
                        const char *type, const char *body, size_t body_len, const char *extra,
                        size_t extra_len)
{
    char out[OUT_MAX];
    size_t n = put_head(out, dc, status, r, type, (int64_t)body_len, extra, extra_len);
    if (r->head)
        body_len = 0;
    if (body_len <= sizeof out - n) {
        memcpy(out + n, body, body_len);
        evn_write(c, out, n + body_len);
    } else {
        evn_write(c, out, n);
        evn_write(c, body, body_len);
    }
}

static void respond(evn_conn *c, const struct date_cache *dc, int status, const struct reply *r,
                    const char *type, const char *body, size_t body_len)
{
    respond_ext(c, dc, status, r, type, body, body_len, "", 0);
}

/* Answer with an error status, and close. */
static enum step fail(evn_conn *c, const struct date_cache *dc, int status, bool head)
{
    char body[64];
    const char *why = reason(status);
    struct reply r = {.head = head};
    int n = snprintf(body, sizeof body, "%s\r\n", why);
    respond(c, dc, status, &r, "text/plain", body, (size_t)n);
    return STEP_CLOSE;
}

/*
 * Answer with the file opened for the request, or with the status that says
 * why there is none. A body hands the descriptor over to evn_sendfile_owned,
 * which closes it once sent (or at once if it fails); an answer without one
 * closes it here. The head goes out with evn_write and the body is queued
 * behind it, so keep-alive and pipelining carry on in order. Returns false
 * when the connection is to close because the body could not be queued.
 */
static bool answer_file(evn_conn *c, const struct date_cache *dc, struct reply *r)
{
    struct file_reply *f = &r->file;
    char out[OUT_MAX], extra[256], date[SF_DATE_LEN];
    size_t xn = 0;
    if (f->fd < 0) {
        int status = f->status;
        const char *why = reason(status);
        char body[64];
        int n = snprintf(body, sizeof body, "%s\r\n", why);
        respond(c, dc, status, r, "text/plain", body, (size_t)n);
        return true;
    }
    sf_format_date(date, f->mtime);
    xn += PUT(extra + xn, "Last-Modified: ");
    xn += put(extra + xn, date, SF_DATE_LEN);
    xn += PUT(extra + xn, "\r\n");

    /* RFC 9110, 13.2.2: If-Modified-Since first, then Range, which is for
     * GET alone; with If-Range (not evaluated here) the whole file is the
     * safe answer. */
    uint64_t off = 0, len = f->size;
    int status = 200;
    if (f->if_modified_since >= 0 && f->mtime <= f->if_modified_since)
        status = 304;
    else if (!r->head && !f->if_range)
        status = sf_resolve_range(&f->range, f->size, &off, &len);

    bool ok = true;
    if (status == 304) {
        size_t n = put_head(out, dc, 304, r, NULL, -1, extra, xn);
        evn_write(c, out, n);
    } else if (status == 416) {
        xn += PUT(extra + xn, "Content-Range: bytes */");
        xn += put_u64(extra + xn, f->size);
        xn += PUT(extra + xn, "\r\n");
        respond_ext(c, dc, 416, r, "text/plain", "Range Not Satisfiable\r\n", 23, extra, xn);
    } else {
        if (status == 206) {
            xn += PUT(extra + xn, "Content-Range: bytes ");
            xn += put_u64(extra + xn, off);
            extra[xn++] = '-';
            xn += put_u64(extra + xn, off + len - 1);
            extra[xn++] = '/';
            xn += put_u64(extra + xn, f->size);
            xn += PUT(extra + xn, "\r\n");
        }
        xn += PUT(extra + xn, "Accept-Ranges: bytes\r\n");
        size_t n = put_head(out, dc, status, r, f->type, (int64_t)len, extra, xn);
        evn_write(c, out, n);
        /* length 0 would mean "to the end of the file": an empty body is
         * simply not queued. */
        if (!r->head && len > 0) {
            ok = evn_sendfile_owned(c, f->fd, (off_t)off, (size_t)len) == 0;
            f->fd = -1; /* evn's now, whatever it returned */
        }
    }
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    return ok;
}

/* One loop's counters, or the server's, as a JSON object's members. */
static int put_stats(char *p, size_t room, const evn_stats *s)
{
    return snprintf(p, room,
                    "\"conns_open\":%llu,\"conns_accepted\":%llu,\"conns_outbound\":%llu,"
                    "\"conns_closed\":%llu,\"refused_max_conns\":%llu,\"refused_tls\":%llu,"
                    "\"refused_proxy\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                    "\"turns\":%llu,\"events\":%llu,\"wait_ns\":%llu,\"work_ns\":%llu,"
                    "\"accept_gone\":%llu,\"accept_failed\":%llu",
                    (unsigned long long)s->conns_open, (unsigned long long)s->conns_accepted,
                    (unsigned long long)s->conns_outbound, (unsigned long long)s->conns_closed,
                    (unsigned long long)s->refused_max_conns, (unsigned long long)s->refused_tls,
                    (unsigned long long)s->refused_proxy, (unsigned long long)s->bytes_in,
                    (unsigned long long)s->bytes_out, (unsigned long long)s->turns,
                    (unsigned long long)s->events, (unsigned long long)s->wait_ns,
                    (unsigned long long)s->work_ns, (unsigned long long)s->accept_gone,
                    (unsigned long long)s->accept_failed);
}

/* Room for one object of put_stats: 15 members, each name and 20 digits. */
#define STATS_OBJ_MAX 720

/*
 * GET /stats: the server's counters and each loop's, as evn_server_stats
 * gives them, in one JSON object:
 *   {"backend":"epoll","nloops":2,"total":{...},"loops":[{"loop":0,...},...]}
 * Each read while the loops run, so a loop's numbers and the total may
 * differ by what happened in between. Returns false if it could not answer.
 */
static bool answer_stats(evn_conn *c, const struct date_cache *dc, const struct reply *r)
{
    evn_server *srv = evn_conn_server(c);
    int nloops = evn_server_nloops(srv);
    size_t cap = (size_t)(nloops + 1) * (STATS_OBJ_MAX + 32) + 128, n = 0;
    char *body = malloc(cap);
    evn_stats s;
    if (!body || evn_server_stats(srv, EVN_STATS_ALL, &s) < 0) {
        free(body);
        return false;
    }
    n += (size_t)snprintf(body + n, cap - n, "{\"backend\":\"%s\",\"nloops\":%d,\"total\":{",
                          evn_server_backend(srv), nloops);
    n += (size_t)put_stats(body + n, cap - n, &s);
    n += (size_t)snprintf(body + n, cap - n, "},\"loops\":[");
    for (int i = 0; i < nloops && evn_server_stats(srv, i, &s) == 0; i++) {
        n += (size_t)snprintf(body + n, cap - n, "%s{\"loop\":%d,", i ? "," : "", i);
        n += (size_t)put_stats(body + n, cap - n, &s);
        n += (size_t)snprintf(body + n, cap - n, "}");
    }
    n += (size_t)snprintf(body + n, cap - n, "]}\n");
    respond_ext(c, dc, 200, r, "application/json", body, n, "Cache-Control: no-store\r\n", 25);
    free(body);
    return true;
}

/* Answer the request; false if the connection must close now. */
static bool answer(evn_conn *c, const struct date_cache *dc, struct reply *r, const char *body,
                   size_t body_len)
{
    switch (r->route) {
    case R_HELLO:
        if (!r->head && r->keep_alive && !r->http10)
            evn_write(c, dc->hello, dc->hello_len);
        else
            respond(c, dc, 200, r, "text/plain", hello, sizeof hello - 1);
        break;
    case R_IP: {
        char ip[80];
        int n = evn_conn_remote_str(c, ip, sizeof ip - 1);
        if (n < 0)
            n = snprintf(ip, sizeof ip, "unknown");
        ip[n++] = '\n';
        respond(c, dc, 200, r, "text/plain", ip, (size_t)n);
        break;
    }
    case R_ECHO:
        respond(c, dc, 200, r, "application/octet-stream", body, body_len);
        break;
    case R_FILE:
        return answer_file(c, dc, r);
    case R_STATS:
        if (!answer_stats(c, dc, r)) {
            fail(c, dc, 500, r->head);
            return false;
        }
        break;
    case R_NOT_FOUND:
        respond(c, dc, 404, r, "text/plain", "Not Found\r\n", 11);
        break;
    case R_NOT_ALLOWED:
        respond_ext(c, dc, 405, r, "text/plain", "Method Not Allowed\r\n", 20,
                    "Allow: GET, HEAD\r\n", 18);
        break;
    default:
        respond(c, dc, 501, r, "text/plain", "Not Implemented\r\n", 17);
        break;
    }
    return true;
}

static bool is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/*
 * Compare s[0..n) with lit, which is lower case, ignoring case. OR-ing 0x20
 * folds only letters here: of the bytes the parser lets through, no other
 * one becomes a letter, digit or '-' that way.
 */
static bool iis(const char *s, size_t n, const char *lit)
{
    for (size_t i = 0; i < n; i++) {
        if (lit[i] == '\0' || (s[i] | 0x20) != lit[i])
            return false;
    }
    return lit[n] == '\0';
}

/* The next comma-separated element of a field value, without whitespace. */
static bool next_token(const char **pp, const char *end, const char **tok, size_t *len)
{
    const char *p = *pp;
    while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
        p++;
    if (p == end)
        return false;
    const char *s = p;
    while (p < end && *p != ',')
        p++;
    const char *e = p;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *tok = s;
    *len = (size_t)(e - s);
    *pp = p;
    return true;
}

/*
 * Pick the route from the method and the path of the request-target, which
 * is left, without its query, in *pathp and *lenp. With --root, GET and HEAD
 * of any path but /ip are files, POST /echo stays, and any other method
 * known is 405.
 */
static void route(const struct http_request *req, struct reply *r, const char **pathp, size_t *lenp)
{
    const char *m = req->method, *path = req->target;
    size_t ml = req->method_len, pl = req->target_len;
    /* The absolute form, "http://host/path?q", as a proxy would send it. */
    const char *scheme_end = pl && *path != '/' ? memchr(path, ':', pl) : NULL;
    if (scheme_end && path + pl - scheme_end >= 3 && memcmp(scheme_end, "://", 3) == 0) {
        const char *host = scheme_end + 3;
        const char *slash = memchr(host, '/', (size_t)(path + pl - host));
        if (slash) {
            pl = (size_t)(path + pl - slash);
            path = slash;
        } else {
            path = "/", pl = 1;
        }
    }
    const char *q = memchr(path, '?', pl);
    if (q)
        pl = (size_t)(q - path);

    *pathp = path;
    *lenp = pl;

    r->head = is(m, ml, "HEAD");
    bool get = r->head || is(m, ml, "GET");
    if (get && pl == stats_path_len && stats_path_len && memcmp(path, stats_path, pl) == 0)
        r->route = R_STATS;
    else if (get && is(path, pl, "/ip"))
        r->route = R_IP;
    else if (get && root_fd >= 0)
        r->route = R_FILE;
    else if (get && is(path, pl, "/"))
        r->route = R_HELLO;
    else if (is(m, ml, "POST") && is(path, pl, "/echo"))
        r->route = R_ECHO;
    else if (get || is(m, ml, "POST") || is(m, ml, "PUT") || is(m, ml, "DELETE") ||
             is(m, ml, "OPTIONS") || is(m, ml, "PATCH") || is(m, ml, "TRACE") ||
             is(m, ml, "CONNECT"))
        r->route = root_fd >= 0 ? R_NOT_ALLOWED : R_NOT_FOUND;
    else
        r->route = R_NOT_IMPLEMENTED;
}

/* Content-Length: digits only; a number too large for 64 bits saturates,
 * and is then simply too large. */
static bool parse_length(const char *s, size_t n, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x > (UINT64_MAX - 9) / 10 ? UINT64_MAX : x * 10 + (uint64_t)(s[i] - '0');
    }
    *v = x;
    return true;
}

/*
 * If-Modified-Since: a date that cannot be parsed, or one in the future, is
 * ignored (RFC 9110, 13.1.3).
 */
static void if_modified_since(struct reply *r, const char *v, size_t n)
{
    int64_t t;
    if (sf_parse_date(v, n, &t) && t <= atomic_load_explicit(&now_sec, memory_order_relaxed) + 1)
        r->file.if_modified_since = t;
}

/*
 * Read the header fields that matter: framing (Content-Length,
 * Transfer-Encoding), persistence (Connection), Expect and Host; for a file,
 * Range, If-Range and If-Modified-Since. Returns 0, or the error status to
 * answer with.
 */
static int inspect(const struct http_request *req, struct reply *r, struct framing *f)
{
    bool has_length = false, has_te = false, te_other = false, close = false, keep = false;
    bool range_seen = false;
    int nhost = 0, nchunked = 0;
    const char *tok;
    size_t tl;

    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        const char *v = h->value, *vend = h->value + h->value_len;
        switch (h->name_len) {
        case 4:
            nhost += iis(h->name, 4, "host");
            break;
        case 5:
            /* A second Range makes it ambiguous: send everything. */
            if (r->route == R_FILE && iis(h->name, 5, "range")) {
                if (range_seen)
                    r->file.range.kind = SF_RANGE_NONE;
                else
                    sf_parse_range(v, h->value_len, &r->file.range);
                range_seen = true;
            }
            break;
        case 8:
            if (r->route == R_FILE && iis(h->name, 8, "if-range"))
                r->file.if_range = true;
            break;
        case 6:
            if (iis(h->name, 6, "expect") && iis(v, h->value_len, "100-continue"))
                f->expect_continue = true;
            break;
        case 10:
            if (!iis(h->name, 10, "connection"))
                break;
            while (next_token(&v, vend, &tok, &tl)) {
                close |= iis(tok, tl, "close");
                keep |= iis(tok, tl, "keep-alive");
            }
            break;
        case 14: {
            uint64_t n;
            if (!iis(h->name, 14, "content-length"))
                break;
            /* Repeats of one value are allowed (RFC 9110, 8.6), others not. */
            if (!parse_length(v, h->value_len, &n) || (has_length && n != f->length))
                return 400;
            has_length = true;
            f->length = n;
            break;
        }
        case 17:
            if (r->route == R_FILE && iis(h->name, 17, "if-modified-since")) {
                if_modified_since(r, v, h->value_len);
                break;
            }
            if (!iis(h->name, 17, "transfer-encoding"))
                break;
            has_te = true;
            while (next_token(&v, vend, &tok, &tl)) {
                if (iis(tok, tl, "chunked"))
                    nchunked++;
                else
                    te_other = true;
            }
            break;
        }
    }
    r->http10 = req->minor_version == 0;
    r->keep_alive = !close && (!r->http10 || keep);
    if (req->minor_version >= 1 ? nhost != 1 : nhost > 1)
        return 400;
    if (has_te) {
        /* RFC 9112, 6.1 and 6.3: chunked is HTTP/1.1's, it must come last and
         * once, and with Content-Length it smells of request smuggling. */
        if (r->http10 || has_length)
            return 400;
        if (te_other)
            return 501;
        if (nchunked != 1)
            return 400;
        f->chunked = true;
        f->length = 0;
    } else if (f->length > max_body) {
        return 413;
    }
    return 0;
}

static struct conn *conn_state(evn_conn *c)
{
    struct conn *st = evn_conn_udata(c);
    if (!st) {
        st = calloc(1, sizeof *st);
        if (st)
            evn_conn_set_udata(c, st);
    }
    return st;
}

/* The request is answered: forget its body. */
static void body_done(struct conn *st)
{
    st->in_body = false;
    st->body_len = 0;
    if (st->body_cap > BODY_KEEP_MAX) {
        free(st->body);
        st->body = NULL;
        st->body_cap = 0;
    }
}

static bool body_reserve(struct conn *st, size_t cap)
{
    if (cap <= st->body_cap)
        return true;
    char *nb = realloc(st->body, cap);
    if (!nb)
        return false;
    st->body = nb;
    st->body_cap = cap;
    return true;
}

/*
 * Feed in[0..len) to the chunked decoder, keeping the payload when it is to be
 * echoed. The body buffer grows with the payload, to max_body + 1 bytes at
 * most: one byte more than allowed is enough to know it is too much.
 */
static enum step chunked_more(evn_conn *c, struct conn *st, const struct date_cache *dc,
                              const char *in, size_t len, size_t *used)
{
    bool keep_body = st->reply.route == R_ECHO;
    size_t off = 0;
    for (;;) {
        size_t piece = len - off, got;
        char *out = NULL;
        if (keep_body) {
            size_t want = st->body_len + piece, cap = st->body_cap ? st->body_cap : 4096;
            while (cap < want && cap <= max_body)
                cap *= 2;
            if (cap > max_body + 1)
                cap = (size_t)max_body + 1;
            if (!body_reserve(st, cap))
                return fail(c, dc, 500, false);
            if (piece > st->body_cap - st->body_len)
                piece = st->body_cap - st->body_len;
            /* A full buffer holds more than max_body: never reached, as the
             * check below answers 413 first, but a loop must not spin. */
            if (piece == 0)
                return fail(c, dc, 413, st->reply.head);
            out = st->body + st->body_len;
        }
        ssize_t n = http_chunked_decode(&st->dec, in + off, piece, out, &got);
        if (keep_body)
            st->body_len += got;
        if (n == HTTP_BAD)
            return fail(c, dc, 400, st->reply.head);
        if (st->dec.total + st->dec.chunk_left > max_body)
            return fail(c, dc, 413, st->reply.head);
        if (n >= 0) {
            *used = off + (size_t)n;
            return STEP_NEXT;
        }
        off += piece;
        if (off == len) {
            *used = len;
            return STEP_WAIT;
        }
    }
}

/* Take more of a body that spans reads; answer the request once it is all
 * there. */
static enum step body_more(evn_conn *c, struct conn *st, const struct date_cache *dc,
                           const char *in, size_t len, size_t *used)
{
    if (st->chunked) {
        enum step s = chunked_more(c, st, dc, in, len, used);
        if (s != STEP_NEXT)
            return s;
    } else {
        size_t n = len < st->left ? len : (size_t)st->left;
        if (st->reply.route == R_ECHO) {
            memcpy(st->body + st->body_len, in, n);
            st->body_len += n;
        }
        st->left -= n;
        *used = n;
        if (st->left)
            return STEP_WAIT;
    }
    bool ok = answer(c, dc, &st->reply, st->body, st->body_len);
    body_done(st);
    return ok && st->reply.keep_alive ? STEP_NEXT : STEP_CLOSE;
}

/* Open the file a GET or HEAD names under --root. */
static void open_file(struct file_reply *f, const char *path, size_t len)
{
    struct stat st;
    f->status = sf_open(root_fd, path, len, &f->fd, &st, &f->type);
    if (f->fd < 0)
        return;
    f->size = (uint64_t)st.st_size;
    f->mtime = (int64_t)st.st_mtime;
}

/*
 * Handle the request at the start of p[0..avail): answer it if it is all
 * there, else keep what is needed. *used receives the bytes consumed.
 */
static enum step request(evn_conn *c, const struct date_cache *dc, const char *p, size_t avail,
                         size_t *used)
{
    struct http_header headers[MAX_HEADERS];
    struct http_request req = {.headers = headers, .num_headers = MAX_HEADERS};
    ssize_t n = http_parse_request(p, avail, &req);
    *used = 0;
    if (n == HTTP_INCOMPLETE && avail < HEAD_MAX)
        return STEP_WAIT;
    if (n == HTTP_INCOMPLETE || n > HEAD_MAX) {
        /* Too large; with no end of the request line in sight, because of
         * its target. */
        return fail(c, dc, memchr(p, '\n', HEAD_MAX) ? 431 : 414, false);
    }
    if (n == HTTP_BAD)
        return fail(c, dc, 400, false);
    if (n == HTTP_TOO_MANY_HEADERS)
        return fail(c, dc, 431, false);

    struct reply r = {.file = {.fd = -1, .if_modified_since = -1}};
    struct framing f = {0};
    const char *path;
    size_t path_len;
    route(&req, &r, &path, &path_len);
    int status = inspect(&req, &r, &f);
    if (status)
        return fail(c, dc, status, r.head);
    /* While the server drains, every answer closes its connection. */
    if (evn_server_draining(evn_conn_server(c)))
        r.keep_alive = false;
    if (r.route == R_FILE)
        open_file(&r.file, path, path_len);

    size_t head_len = (size_t)n, body_avail = avail - head_len;
    if (!f.chunked && f.length <= body_avail) {
        bool ok = answer(c, dc, &r, p + head_len, (size_t)f.length);
        *used = head_len + (size_t)f.length;
        return ok && r.keep_alive ? STEP_NEXT : STEP_CLOSE;
    }

    /* The body is still to come, or chunked: it is taken by body_more(),
     * starting with whatever of it is already here. A file opened for the
     * request stays open in the connection's state until then. */
    struct conn *st = conn_state(c);
    if (!st) {
        if (r.file.fd >= 0)
            close(r.file.fd);
        return fail(c, dc, 500, r.head);
    }
    st->reply = r;
    st->in_body = true;
    st->chunked = f.chunked;
    st->left = f.length;
    st->body_len = 0;
    if (f.chunked)
        http_chunked_init(&st->dec);
    else if (r.route == R_ECHO && !body_reserve(st, (size_t)f.length))
        return fail(c, dc, 500, r.head);
    /* The client waits for this before it sends the body (RFC 9110, 10.1.1). */
    if (f.expect_continue && !r.http10 && body_avail == 0)
        evn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    *used = head_len;
    return STEP_NEXT;
}

/*
 * A request that has begun (part of its head kept, or its body coming) must
 * be complete within request_timeout_ms, so that a client cannot hold a
 * connection by trickling a request in; the idle timeout alone would not
 * notice. The deadline runs from the first partial read to the answer.
 */
static void set_deadline(evn_conn *c, bool pending)
{
    struct conn *st = evn_conn_udata(c);
    if (pending && !(st && st->deadline) && request_timeout_ms > 0) {
        st = conn_state(c);
        if (st && evn_conn_set_deadline(c, request_timeout_ms) == 0)
            st->deadline = true;
    } else if (!pending && st && st->deadline) {
        evn_conn_set_deadline(c, 0);
        st->deadline = false;
    }
}

/* How long an idle keep-alive connection of an upgraded server is kept. */
#define UPGRADE_IDLE_MS 5000

/*
 * A graceful shutdown began: one in the middle of a request gets its answer
 * with "Connection: close". An idle keep-alive connection can go now, unless
 * the drain is an upgrade (SIGUSR2): closing it would race with a request
 * its client may be sending at that moment, which would then fail, while a
 * new server is there to take the client's next connection. So it is kept
 * a while (its idle timeout, up to 5 s): a request that comes gets its
 * answer with "Connection: close", and the client moves on.
 */
static evn_action on_draining(evn_conn *c)
{
    struct conn *st = evn_conn_udata(c);
    if (st && st->deadline)
        return EVN_NONE;
    if (!ex_upgrading())
        return EVN_CLOSE;
    int64_t ms = idle_timeout_ms > 0 && idle_timeout_ms < UPGRADE_IDLE_MS ? idle_timeout_ms
                                                                          : UPGRADE_IDLE_MS;
    return evn_conn_set_idle_timeout(c, ms) == 0 ? EVN_NONE : EVN_CLOSE;
}

static evn_action on_timeout(evn_conn *c)
{
    struct conn *st = evn_conn_udata(c);
    if (st)
        st->deadline = false;
    fail(c, dates(), 408, false);
    return EVN_CLOSE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (!in)
        return EVN_NONE;
    const struct date_cache *dc = dates();
    size_t off = 0;
    bool full = false;
    while (off < len) {
        struct conn *st = evn_conn_udata(c);
        size_t used = 0;
        enum step s;
        /* A client that pipelines requests without reading the answers:
         * stop while its output is over evn's high-water mark. evn stops
         * reading too, and hands the rest back once the output drains. */
        if ((full = evn_conn_full(c)) != 0)
            s = STEP_WAIT;
        else if (st && st->in_body)
            s = body_more(c, st, dc, in + off, len - off, &used);
        else
            s = request(c, dc, in + off, len - off, &used);
        off += used;
        if (s == STEP_CLOSE)
            return EVN_CLOSE;
        if (s == STEP_WAIT) {
            if (off < len && evn_keep(c, len - off) < 0)
                return EVN_CLOSE;
            break;
        }
    }
    /* Waiting on the client's input, not on its reading our output. */
    struct conn *st = evn_conn_udata(c);
    set_deadline(c, !full && (off < len || (st && st->in_body)));
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct conn *st = evn_conn_udata(c);
    if (st) {
        /* Closed before the body of a file request was all in. */
        if (st->in_body && st->reply.route == R_FILE && st->reply.file.fd >= 0)
            close(st->reply.file.fd);
        free(st->body);
        free(st);
    }
    return EVN_NONE;
}

static int set_max_body(const char *v)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || *v == '-' || n > SIZE_MAX / 2)
        return -1;
    max_body = n;
    return 0;
}

static int set_idle_timeout(const char *v)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0)
        return -1;
    idle_timeout_ms = n;
    return 0;
}

static int set_request_timeout(const char *v)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0)
        return -1;
    request_timeout_ms = n;
    return 0;
}

static int set_stats_path(const char *v)
{
    if (*v && *v != '/')
        return -1;
    stats_path = v;
    stats_path_len = strlen(v);
    return 0;
}

static int set_root(const char *v)
{
#ifdef _WIN32
    int fd = ex_open_dir(v);
#else
    int fd = open(v, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
#endif
    if (fd < 0) {
        fprintf(stderr, "http-server: --root %s: %s\n", v, strerror(errno));
        return -1;
    }
    if (root_fd >= 0)
        close(root_fd);
    root_fd = fd;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct ex_option more[] = {
        {"--max-body", "--max-body BYTES  largest request body taken (default 1048576)",
         set_max_body},
        {"--idle-timeout",
         "--idle-timeout MS close a connection idle this long (default 75000; 0: never)",
         set_idle_timeout},
        {"--request-timeout",
         "--request-timeout MS\n"
         "                    answer 408 to a request not complete this long after it began\n"
         "                    (default 10000; 0: never)",
         set_request_timeout},
        {"--root",
         "--root DIR        serve the files under DIR for GET and HEAD (GET /ip and\n"
         "                    POST /echo stay)",
         set_root},
        {"--stats-path",
         "--stats-path PATH answer GET PATH with evn's statistics as JSON (default /stats,\n"
         "                    before any file of that name; \"\" for none)",
         set_stats_path},
    };
    struct ex_opts o = {.port = 8080, .udp_port = -1, .loops = 1};
    ex_parse_more(argc, argv, &o, "http-server", 0, more, sizeof more / sizeof more[0]);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store(&now_sec, (int64_t)ts.tv_sec);

    evn_events ev = {.data = on_data,
                     .closed = on_closed,
                     .tick = on_tick,
                     .timeout = on_timeout,
                     .draining = on_draining,
                     .idle_timeout_ms = idle_timeout_ms};
    int rc = ex_run("http-server", &ev, &o);
    if (root_fd >= 0)
        close(root_fd);
    return rc;
}
