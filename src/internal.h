/*
 * Internal interfaces shared between evn's source files. Nothing here is
 * part of the public API; symbols are named evn__* and are hidden in the
 * shared library.
 */
#ifndef EVN_INTERNAL_H
#define EVN_INTERNAL_H

#include "evn.h"
#include "proxyproto.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#define EVN__HIDDEN __attribute__((visibility("hidden")))

/*
 * Platforms without these flags (macOS) get the same effect another way:
 * fcntl after socket(), and SO_NOSIGPIPE on each connection.
 */
#ifndef SOCK_NONBLOCK
#define SOCK_NONBLOCK 0
#define SOCK_CLOEXEC 0
#define EVN__NEED_FCNTL 1
#endif
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* ---- addresses ---- */

enum { EVN__TCP = 1, EVN__UDP, EVN__UNIX };

struct evn__url {
    int proto;      /* EVN__TCP, EVN__UDP or EVN__UNIX */
    int family;     /* AF_UNSPEC (both), AF_INET or AF_INET6; AF_UNIX for unix */
    char host[256]; /* empty for "every interface" */
    int port;
    char path[108]; /* unix socket path */
    int reuseport;
    int backlog;
    /* TCP tuning (see the option table in url.c); -1 or 0: leave alone. */
    int nodelay;     /* default 1 */
    int keepalive;   /* idle seconds before probes; 0 off */
    int fastopen;    /* TFO queue length; 0 off */
    int deferaccept; /* seconds; 0 off */
    int ipv6only;    /* -1: by scheme */
    int sndbuf, rcvbuf;
    /* TLS: tls://, tls4://, tls6:// */
    int tls;
    int verify; /* EVN__VERIFY_* */
    char cert[256], key[256], ca[256], alpn[128];
    char sni[256]; /* evn_connect: the server name to send and check */
    /* PROXY protocol header before anything else (proxyproto.h): 0 none, or
     * EVN__PROXY_V1, _V2, _ANY; taken only from peers in proxy_from, if
     * that list is not empty. */
    int proxy;
    struct evn__proxy_cidrs proxy_from;
};

enum { EVN__VERIFY_NONE = 0, EVN__VERIFY_OPTIONAL, EVN__VERIFY_REQUIRE };

/*
 * Parse an address URL. Returns 0, or -EINVAL with a message naming the bad
 * part written to err (always NUL-terminated when errlen > 0).
 */
EVN__HIDDEN int evn__url_parse(const char *url, struct evn__url *out, char *err, size_t errlen);
/* The same for an evn_connect URL: only the TLS client options (verify
 * defaults to require; sni= is allowed; cert= and key= are optional). */
EVN__HIDDEN int evn__url_parse_outbound(const char *url, struct evn__url *out, char *err,
                                        size_t errlen);

/* Record the detail of a failure for evn_errmsg() on this thread. */
EVN__HIDDEN void evn__set_errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- backends ---- */

enum { EVN__READ = 1, EVN__WRITE = 2 };

struct evn__fired {
    int fd;
    int mask; /* EVN__READ | EVN__WRITE; errors and hang-ups report as READ */
};

struct evn_loop;

/*
 * A poller. Each function gets the loop, whose `bdata` field belongs to the
 * backend. Registration is by fd with an interest mask; `wait` fills
 * loop->fired[0..n) and returns n, or a negative errno (never -EINTR).
 */
struct evn__backend {
    const char *name;
    int (*init)(struct evn_loop *loop);
    void (*destroy)(struct evn_loop *loop);
    int (*add)(struct evn_loop *loop, int fd, int mask);
    int (*mod)(struct evn_loop *loop, int fd, int oldmask, int newmask);
    /* closing: the caller closes fd next, so a poller that forgets closed
     * fds by itself may skip the work. */
    int (*del)(struct evn_loop *loop, int fd, int oldmask, bool closing);
    int (*wait)(struct evn_loop *loop, int timeout_ms);
};

EVN__HIDDEN extern const struct evn__backend evn__backend_poll;
#ifdef EVN_HAVE_EPOLL
EVN__HIDDEN extern const struct evn__backend evn__backend_epoll;
#endif
#ifdef EVN_HAVE_KQUEUE
EVN__HIDDEN extern const struct evn__backend evn__backend_kqueue;
#endif

/* Find a backend by name (NULL: EVN_BACKEND or the best). NULL if unknown. */
EVN__HIDDEN const struct evn__backend *evn__backend_find(const char *name, int *err);

/* ---- objects registered with a loop ---- */

enum { EVN__H_CONN = 1, EVN__H_LISTENER, EVN__H_UDP, EVN__H_INBOX, EVN__H_SIGNAL };

/* Every object in a loop's fd table starts with this. */
struct evn__handle {
    uint8_t kind;
};

struct evn__listener {
    struct evn__url url;
    size_t index; /* position in the address list */
    char urlstr[160];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fd;   /* shared socket, or loop 0's when reuseport */
    int *fds; /* with reuseport: one socket per loop */
    int nfds;
    bool unlink_on_free;
    struct evn__tls_ctx *tls; /* tls:// listeners: the SSL_CTX and ALPN list (tls.c) */
};

/* A socket listening (TCP/unix) or bound (UDP) on one loop. */
struct evn__lsock {
    struct evn__handle h;
    int fd;
    struct evn__listener *l;
    struct evn_conn *udp; /* UDP: the pseudo-connection used for datagrams */
};

/* Big enough for any IPv4 or IPv6 address, small enough to keep per connection. */
union evn__ip_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/*
 * One piece of queued output. A file region queued by evn_sendfile has buf
 * NULL and cap 0; its descriptor and starting offset are in data (struct
 * evn__file), and its done callback closes the descriptor.
 */
struct evn__chunk {
    struct evn__chunk *next;
    char *buf; /* data, the application's buffer (cap 0), or NULL: a file */
    size_t off, len, cap;
    /* For an application's buffer: called when evn is done with it. */
    void (*done)(void *buf, int status, void *arg);
    void *arg;
    char data[];
};

enum {
    EVN__C_CLOSING = 1u << 0,   /* close once output drains */
    EVN__C_DETACHING = 1u << 1, /* detach once output drains */
    EVN__C_WANTW = 1u << 2,     /* waiting for writability */
    EVN__C_DIRTY = 1u << 3,     /* on the loop's flush list */
    EVN__C_UDP = 1u << 4,
    EVN__C_KEPT = 1u << 5,        /* evn_keep was called in this data event */
    EVN__C_RDOFF = 1u << 6,       /* read interest removed */
    EVN__C_WOKEN = 1u << 7,       /* a wake is pending in this inbox batch */
    EVN__C_PAUSED = 1u << 8,      /* output above high water: not reading */
    EVN__C_NOMEM = 1u << 9,       /* an allocation failed: close with -ENOMEM */
    EVN__C_NOBUFS = 1u << 10,     /* out_cap passed: close with -ENOBUFS */
    EVN__C_RESUME = 1u << 11,     /* on the loop's resume list */
    EVN__C_RESUMABLE = 1u << 12,  /* paused: queue a resume when drained */
    EVN__C_CONNECTING = 1u << 13, /* evn_connect in progress */
    EVN__C_HOLD = 1u << 14,       /* the application paused reading */
    EVN__C_EOF = 1u << 15,        /* the peer shut down its sending side */
    EVN__C_WSHUT = 1u << 16,      /* shut down our sending side once drained */
    EVN__C_WSHUT_DONE = 1u << 17, /* ... and it is done */
    EVN__C_LINGER = 1u << 18,     /* closed for the application; draining input */
    EVN__C_SLOWOUT = 1u << 19,    /* output goes through TLS or holds file chunks */
    EVN__C_HANDSHAKE = 1u << 20,  /* TLS handshake in progress: not opened yet */
    EVN__C_TLS_HSW = 1u << 21,    /* ... and it waits for writability */
    EVN__C_TLS_RWANTW = 1u << 22, /* a TLS read must write first: wait for writability */
    EVN__C_REREAD = 1u << 23,     /* on the resume list to read input buffered in TLS */
    EVN__C_TLS_DEAD = 1u << 24,   /* fatal TLS or socket error: no close_notify */
    EVN__C_UNREG = 1u << 25,      /* accept fast path: not on the poller yet (interest() is 0) */
    EVN__C_FRESH = 1u << 26,      /* the read just now emptied the socket (should_linger) */
    EVN__C_SPLICE = 1u << 27,     /* input is spliced to another connection (splice.c) */
    EVN__C_SPLWAIT = 1u << 28     /* ... which cannot take more now: not reading */
};

/* evn_conn_splice's state, on both connections of a spliced direction. */
struct evn__splice {
    evn_id to;     /* this connection's input goes to it; 0: none */
    evn_id from;   /* that connection's input comes here; 0: none */
    int pipe[2];   /* the direction's pipe (with `to`), -1 when none */
    size_t inpipe; /* bytes in it */
    bool eof;      /* the source's input ended; passed on once the pipe is empty */
};

struct evn_conn {
    struct evn__handle h;
    uint32_t flags;
    int fd;
    uint32_t seq; /* low half of the id; matches the fd table entry */
    uint32_t listener;
    struct evn_loop *loop;
    void *udata;
    struct evn__chunk *out_head, *out_tail;
    size_t out_bytes;
    char *in; /* kept input, heap, NULL when none */
    size_t in_len, in_cap;
    /* During a data event: the input handed to the callback. */
    size_t cur_len, keep;
    /* Flow control marks. */
    size_t out_high, out_low;
    /* Timers: idle timeout (checked lazily against last_active) and the
     * application's deadline; heap_idx is 1 + position in the loop's timer
     * heap, 0 when not in it. */
    uint32_t idle_ms, heap_idx;
    int64_t last_active, deadline_at;
    /* The remote address, kept from accept (so closed can still name a peer
     * that reset) or, for UDP, the current datagram's sender. peerlen 0:
     * not known (a unix socket's peer), ask the kernel. */
    union evn__ip_addr peer;
    uint8_t peerlen;
    /* The TLS session (tls.c), NULL for a plain connection. */
    struct evn__tls *tls;
    /* evn_conn_splice (splice.c), NULL when never spliced. */
    struct evn__splice *splice;
};

/* A message for a loop from another thread. */
struct evn__msg {
    int type; /* EVN__M_WAKE or EVN__M_CONN */
    int fd;
    uint64_t arg;            /* wake: the id; conn: the listener index */
    union evn__ip_addr peer; /* conn: the remote address */
    uint8_t peerlen;
    struct evn__chunk *chunk; /* write: the bytes */
};

enum { EVN__M_WAKE = 1, EVN__M_CONN, EVN__M_WRITE };

struct evn__timer {
    int64_t at;
    struct evn_conn *c;
};

struct evn_loop {
    struct evn_server *srv;
    int index;
    const struct evn__backend *be;
    void *bdata;
    struct evn__fired *fired;
    int nfired_cap;
    pthread_t thread;
    bool started;

    /* fd -> registered object; conn ids check seq against it. */
    struct evn__handle **table;
    int table_cap;
    uint32_t next_seq;

    /* Listening sockets this loop polls. */
    struct evn__lsock *lsocks;
    size_t nlsocks;

    /* Per-loop read buffer, handed to data callbacks without a copy. */
    char *rbuf;
    size_t rbuf_cap;

    /* Spare output chunks, so steady traffic allocates nothing. */
    struct evn__chunk *pool;
    int npool;

    /* Connections written to outside their own callback, flushed before the
     * next wait; stored as ids so a close in between is harmless. */
    evn_id *dirty;
    size_t ndirty, dirty_cap;

    /* The connection whose callback is running, or NULL. */
    struct evn_conn *cur;

    /* Cross-thread inbox: a mutex-guarded queue plus a wake-up fd. */
    struct evn__handle inbox_h;
    pthread_mutex_t inbox_lock;
    struct evn__msg *inbox, *inbox_spare;
    size_t ninbox, inbox_cap, spare_cap;
    atomic_bool inbox_signalled;
    int wake_rfd, wake_wfd; /* the same fd for an eventfd */

    atomic_long nconns; /* read by the acceptor for least-connections */
    size_t nconns_local;

    /* Connections with a timer, as a binary min-heap on the time due.
     * now_ms is the loop's clock, refreshed after each wait while timers
     * exist; activity stamps connections with it at no cost. */
    struct evn__timer *heap;
    size_t nheap, heap_cap;
    int64_t now_ms;

    /* Connections whose output drained below low water, to resume (drained
     * event, kept input) at the end of this turn rather than recursively. */
    evn_id *resume;
    size_t nresume, resume_cap;

    /* Out of file descriptors: listeners are off the poller until a
     * connection of this loop closes or accept_retry_ms passes. */
    bool accept_paused;
    int64_t accept_retry_ms;

    /* Graceful shutdown: listeners closed, waiting for connections to end. */
    bool drain_started;

    /* Once this loop splices or sends a file, SIGPIPE is blocked on its
     * thread, and restored when it ends (evn__sigpipe_block). */
    bool sigpipe_blocked;
    sigset_t sigpipe_old;

    /* Ticker (loop 0 only). */
    int64_t tick_at_ms, tick_delay_ms;
    bool tick_on;
};

struct evn_server {
    evn_events ev;
    const struct evn__backend *be;
    int nloops, nloops_init;
    struct evn_loop *loops;
    struct evn__listener *listeners;
    size_t nlisteners;
    atomic_bool stopping;
    atomic_bool draining;
    /* Set by loop 0 once its listeners are closed during a drain: no more
     * connections will be handed to the other loops. */
    atomic_bool handoffs_over;
    atomic_llong drain_deadline_ms;
    /* evn_server_stop_on_signals: the fds loop 0 reads, and the mask to
     * restore. */
    struct evn__handle sig_h;
    int sig_rfd, sig_wfd;
    int64_t sig_drain_ms;
    int nsignals;
    bool sig_on;
    sigset_t sig_oldmask;
    atomic_int total_conns; /* for max_conns */
    atomic_uint rr_next;
    atomic_uint rand_state;
    bool ran;
    /* evn_connect's TLS client contexts, one per option set (tls.c). */
    struct evn__tls_client *tls_clients;
};

/* ---- TLS (tls.c) ---- */

/*
 * What the TLS calls return besides byte counts and negative errno values:
 * the operation must be retried once the socket is readable or writable.
 */
#define EVN__TLS_WANT_READ (-0x10001)
#define EVN__TLS_WANT_WRITE (-0x10002)
/* Default for evn_events.tls_handshake_timeout_ms. */
#define EVN__TLS_HANDSHAKE_MS 10000

struct evn__tls_ctx;
struct evn__tls;

#ifdef EVN_HAVE_TLS
/* Build l->tls from l->url (certificate, key, CA, verify, ALPN). On failure
 * err names the file and OpenSSL's reason; -ENOENT, -EINVAL or -ENOMEM. */
EVN__HIDDEN int evn__tls_ctx_new(struct evn__listener *l, const char *url, char *err,
                                 size_t errlen);
EVN__HIDDEN void evn__tls_ctx_free(struct evn__listener *l);
/* Start a server-side session on c's socket: 0 or -ENOMEM. */
EVN__HIDDEN int evn__tls_new(struct evn_conn *c, struct evn__listener *l);
/* One handshake step: 1 when complete, EVN__TLS_WANT_*, or -errno. */
EVN__HIDDEN int evn__tls_handshake(struct evn_conn *c);
/*
 * Read plaintext into buf, as much as OpenSSL has or the socket gives without
 * blocking, up to len: bytes read, 0 at end of input, EVN__TLS_WANT_*, or
 * -errno. A condition met after some bytes were read is reported by the next
 * call; evn__tls_pending() is then true.
 */
EVN__HIDDEN ssize_t evn__tls_read(struct evn_conn *c, char *buf, size_t len);
/* Encrypt and send from buf: bytes taken (> 0), EVN__TLS_WANT_*, or -errno.
 * After a WANT, call again with the same bytes (len may have grown). */
EVN__HIDDEN ssize_t evn__tls_write(struct evn_conn *c, const char *buf, size_t len);
/* Input is waiting inside the TLS layer, where the poller cannot see it. */
EVN__HIDDEN bool evn__tls_pending(const struct evn_conn *c);
/* Send close_notify, once, without blocking (best effort). */
EVN__HIDDEN void evn__tls_notify(struct evn_conn *c);
/* Free the session (c->tls = NULL), first sending close_notify if notify. */
EVN__HIDDEN void evn__tls_free(struct evn_conn *c, bool notify);
EVN__HIDDEN const char *evn__tls_alpn(const struct evn_conn *c);
/* Whether c's handshake resumed an earlier session. */
EVN__HIDDEN bool evn__tls_resumed(const struct evn_conn *c);
/*
 * Make a client-side session for evn_connect on socket fd, in *tp, with the
 * server's cached SSL_CTX for u's options (made on first use: the CA, client
 * certificate and key files are read then). On failure evn_errmsg() names the
 * file and OpenSSL's reason; -ENOENT, -EINVAL or -ENOMEM. The session of the
 * last connection that loop (its index) made to the same place is offered
 * for resumption. A session not yet given to a connection (c->tls) is freed
 * with evn__tls_client_discard.
 */
EVN__HIDDEN int evn__tls_client_new(struct evn_server *srv, int loop, int fd,
                                    const struct evn__url *u, const char *url,
                                    struct evn__tls **tp);
EVN__HIDDEN void evn__tls_client_discard(struct evn__tls *t);
/* Free the server's client contexts (evn_server_free). */
EVN__HIDDEN void evn__tls_clients_free(struct evn_server *srv);
/* How many client contexts the server holds (for the tests). Any thread. */
EVN__HIDDEN size_t evn__tls_clients_count(struct evn_server *srv);
#else
/* Without OpenSSL no listener has a context and no connection a session, so
 * these are never called; they let conn.c read the same either way. */
static inline int evn__tls_new(struct evn_conn *c, struct evn__listener *l)
{
    return -ENOTSUP;
}
static inline int evn__tls_handshake(struct evn_conn *c)
{
    return -ENOTSUP;
}
static inline ssize_t evn__tls_read(struct evn_conn *c, char *buf, size_t len)
{
    return -ENOTSUP;
}
static inline ssize_t evn__tls_write(struct evn_conn *c, const char *buf, size_t len)
{
    return -ENOTSUP;
}
static inline bool evn__tls_pending(const struct evn_conn *c)
{
    return false;
}
static inline void evn__tls_notify(struct evn_conn *c)
{
}
static inline void evn__tls_free(struct evn_conn *c, bool notify)
{
}
static inline const char *evn__tls_alpn(const struct evn_conn *c)
{
    return NULL;
}
static inline bool evn__tls_resumed(const struct evn_conn *c)
{
    return false;
}
static inline void evn__tls_clients_free(struct evn_server *srv)
{
}
#endif

/*
 * An evn__tls_write result as a send(2)-like one for the output path: a
 * partial write there means one record went out, not that the socket is full,
 * so *want is what was taken. SSL_write cannot want to read with
 * renegotiation off; if it ever did, waiting for writability would spin, so
 * it is an error.
 */
static inline ssize_t evn__tls_sent(ssize_t n, size_t *want)
{
    if (n > 0) {
        *want = (size_t)n;
        return n;
    }
    errno = n == EVN__TLS_WANT_WRITE ? EAGAIN : n == EVN__TLS_WANT_READ ? EPROTO : (int)-n;
    return -1;
}

/* ---- file regions (sendfile.c) ---- */

struct evn__file {
    int fd;     /* evn's own: a duplicate, or the application's handed over */
    off_t base; /* file offset of the region's first byte */
};

/*
 * Check fd and the region [offset, offset + *length) (a length of 0 meaning
 * up to the end of the file, stored back in *length) and make a file chunk
 * holding a duplicate of fd, or with owned fd itself: then fd is evn's
 * whatever the result, closed at once unless a chunk holds it, and its
 * access mode is not checked (a descriptor not open for reading fails at
 * send time with EBADF). Returns 0 with *chp set (NULL for an empty region),
 * or -EINVAL, -EMFILE, -ENOMEM.
 */
EVN__HIDDEN int evn__file_chunk(int fd, off_t offset, size_t *length, bool owned,
                                struct evn__chunk **chp);
/*
 * Send from the file chunk at the head of c's output: at most max bytes with
 * sendfile(2) on a plain socket; under TLS one piece of up to 16 KiB, read
 * with pread and given to evn__tls_write (max is ignored there, so that a
 * retry after a WANT offers the same bytes). Returns
 * the bytes sent, with *want set to what was offered (more than that: the
 * socket is full), or -1 with errno set (EAGAIN: wait for writability).
 */
EVN__HIDDEN ssize_t evn__file_send(struct evn_conn *c, struct evn__chunk *ch, size_t max,
                                   size_t *want);

/* ---- shared between files ---- */

/*
 * Allocation wrappers. A test sets evn__fail_allocs to N > 0 to make the Nth
 * allocation from now fail, to prove that running out of memory closes only
 * the connection concerned.
 */
EVN__HIDDEN extern atomic_int evn__fail_allocs;
EVN__HIDDEN bool evn__alloc_should_fail(void);
static inline void *evn__malloc(size_t n)
{
    if (atomic_load_explicit(&evn__fail_allocs, memory_order_relaxed) > 0 &&
        evn__alloc_should_fail())
        return NULL;
    return malloc(n);
}
static inline void *evn__realloc(void *p, size_t n)
{
    if (atomic_load_explicit(&evn__fail_allocs, memory_order_relaxed) > 0 &&
        evn__alloc_should_fail())
        return NULL;
    return realloc(p, n);
}
static inline void *evn__calloc(size_t k, size_t n)
{
    if (atomic_load_explicit(&evn__fail_allocs, memory_order_relaxed) > 0 &&
        evn__alloc_should_fail())
        return NULL;
    return calloc(k, n);
}

/* Timers (timer.c). */
EVN__HIDDEN void evn__timer_update(struct evn_conn *c);
EVN__HIDDEN void evn__timer_remove(struct evn_conn *c);
EVN__HIDDEN void evn__timers_run(struct evn_loop *loop);
/* Milliseconds until the earliest timer is due (0 if overdue), -1 if none. */
EVN__HIDDEN int64_t evn__timer_next(struct evn_loop *loop);

EVN__HIDDEN void evn__conn_resume_all(struct evn_loop *loop);
EVN__HIDDEN void evn__conn_timeout(struct evn_conn *c, bool idle);
EVN__HIDDEN void evn__loop_accept_resume(struct evn_loop *loop);

/* Graceful shutdown and signals (shutdown.c). */
EVN__HIDDEN void evn__loop_drain_start(struct evn_loop *loop);
/* true when a draining loop is done (no connections, or time is up). */
EVN__HIDDEN bool evn__loop_drain_done(struct evn_loop *loop);
EVN__HIDDEN int64_t evn__drain_left_ms(struct evn_server *srv);
EVN__HIDDEN int evn__signals_attach(struct evn_loop *loop0);
EVN__HIDDEN void evn__signals_ready(struct evn_server *srv);
EVN__HIDDEN void evn__signals_detach(struct evn_server *srv);
EVN__HIDDEN void evn__conn_close_all(struct evn_loop *loop, int err);
/* c has just opened (opened fired and c is still there) on a loop whose
 * drain has begun: tell it as the others were told when the drain began. */
EVN__HIDDEN void evn__conn_opened_draining(struct evn_conn *c);

EVN__HIDDEN int evn__listener_open(struct evn__listener *l, const char *url, int nloops, char *err,
                                   size_t errlen);
EVN__HIDDEN void evn__listener_close(struct evn__listener *l);
EVN__HIDDEN int evn__set_nonblock(int fd, bool on);
/* A pipe with both ends non-blocking and close-on-exec; -errno on failure. */
EVN__HIDDEN int evn__pipe_nb(int p[2]);

EVN__HIDDEN int evn__loop_init(struct evn_loop *loop, struct evn_server *srv, int index);
EVN__HIDDEN void evn__loop_destroy(struct evn_loop *loop);
EVN__HIDDEN int evn__loop_run(struct evn_loop *loop);
EVN__HIDDEN int evn__loop_post(struct evn_loop *loop, const struct evn__msg *msg);
EVN__HIDDEN void evn__loop_signal(struct evn_loop *loop);
EVN__HIDDEN int evn__loop_track(struct evn_loop *loop, int fd, struct evn__handle *h);
EVN__HIDDEN int64_t evn__now_ms(void);

EVN__HIDDEN int evn__conn_open(struct evn_loop *loop, int fd, uint32_t listener,
                               const union evn__ip_addr *peer, socklen_t peerlen);
/* Register a new connection (not firing opened); NULL and fd closed on failure. */
EVN__HIDDEN struct evn_conn *evn__conn_new(struct evn_loop *loop, int fd, uint32_t listener,
                                           const union evn__ip_addr *peer, socklen_t peerlen,
                                           int mask);
/* Append a chunk from another thread's evn_send to c's output. */
EVN__HIDDEN void evn__conn_queue_chunk(struct evn_conn *c, struct evn__chunk *ch);
EVN__HIDDEN void evn__chunk_release(struct evn_loop *loop, struct evn__chunk *ch, int status);
EVN__HIDDEN struct evn_conn *evn__conn_lookup(struct evn_loop *loop, evn_id id);

/* The loop the calling thread runs, or NULL. */
EVN__HIDDEN extern _Thread_local struct evn_loop *evn__cur_loop;

#define EVN__LISTENER_OUTBOUND UINT32_MAX
EVN__HIDDEN void evn__conn_ready(struct evn_conn *c, int mask);
EVN__HIDDEN void evn__conn_wake(struct evn_conn *c);
EVN__HIDDEN void evn__conn_flush_dirty(struct evn_loop *loop);
EVN__HIDDEN void evn__conn_close(struct evn_conn *c, int err);
EVN__HIDDEN void evn__udp_ready(struct evn__lsock *ls);
EVN__HIDDEN struct evn_conn *evn__udp_conn_new(struct evn_loop *loop, uint32_t listener);
EVN__HIDDEN void evn__chunk_pool_free(struct evn_loop *loop);

static inline evn_id evn__make_id(int loop, int fd, uint32_t seq)
{
    return ((uint64_t)(uint32_t)loop << 56) | ((uint64_t)(uint32_t)fd << 32) | seq;
}

/* Splicing (splice.c) and what it uses of conn.c. */
EVN__HIDDEN void evn__splice_pump(struct evn_conn *from);
EVN__HIDDEN void evn__splice_drained(struct evn_conn *to);
EVN__HIDDEN void evn__splice_write_kept(struct evn_conn *from);
EVN__HIDDEN void evn__splice_drop(struct evn_conn *c);
/* loop.c: splice(2) and sendfile(2) raise SIGPIPE and have no MSG_NOSIGNAL.
 * SIGPIPE is blocked on the loop's thread from the first such call until the
 * loop ends (evn__sigpipe_restore), and one they raised is taken back after
 * an EPIPE (evn__sigpipe_take). */
EVN__HIDDEN void evn__sigpipe_block(struct evn_loop *loop);
EVN__HIDDEN void evn__sigpipe_take(void);
EVN__HIDDEN void evn__sigpipe_restore(struct evn_loop *loop);
EVN__HIDDEN void evn__conn_set_flags(struct evn_conn *c, uint32_t set, uint32_t clear);
EVN__HIDDEN void evn__conn_reread(struct evn_conn *c);
EVN__HIDDEN void evn__conn_input_end(struct evn_conn *c);
EVN__HIDDEN void evn__conn_drop_input(struct evn_conn *c);

/* Act on a callback's return value for connection c (may free c): false if c is
 * gone (closed or detached). */
EVN__HIDDEN bool evn__conn_act(struct evn_conn *c, evn_action a);

#endif
