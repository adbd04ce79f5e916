/*
 * Internal interfaces shared between evn's source files. Nothing here is
 * part of the public API; symbols are named evn__* and are hidden in the
 * shared library.
 *
 * The layers, from the bottom:
 *   - backends (backend_*.c) poll descriptors, or do I/O for them;
 *   - the loop (loop.c, timer.c) runs handles, timers and deferred work
 *     and knows nothing of what they are;
 *   - listeners (listener.c) accept, UDP sockets (udp.c) receive, the inbox
 *     (wake.c) takes messages from other threads;
 *   - connections (conn.c) run the events and actions of the API over a
 *     transport: a plain socket (conn.c) or TLS (tls.c), with file regions
 *     (sendfile.c) and splicing (splice.c) as special output and input; a
 *     proxy= listener's connection first passes a stage that reads its
 *     PROXY header (proxyconn.c);
 *   - each loop counts what it does for evn_server_stats (stats.c).
 */
#ifndef EVN_INTERNAL_H
#define EVN_INTERNAL_H

#include "evn.h"
#include "platform.h"
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
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

/* Windows has no hidden visibility: a DLL exports only what is marked
 * dllexport (EVN_API), which is the same set. */
#ifdef _WIN32
#define EVN__HIDDEN
#else
#define EVN__HIDDEN __attribute__((visibility("hidden")))
#endif

#define EVN__STR_(x) #x
#define EVN__STR(x) EVN__STR_(x)
#define EVN__VERSION_STRING                                                                        \
    EVN__STR(EVN_VERSION_MAJOR) "." EVN__STR(EVN_VERSION_MINOR) "." EVN__STR(EVN_VERSION_PATCH)

#define evn__container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

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

struct evn_loop;
struct evn__tls;
struct evn__tls_ctx;
struct evn__splice;

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
    /* PROXY protocol header before anything else (proxyproto.h): 0 none, or
     * EVN__PROXY_V1, _V2, _ANY; complete within proxy_timeout ms (0: the
     * default, EVN__PROXY_TIMEOUT_MS). Here, near deferaccept, because the
     * accept path reads it for every connection. */
    int proxy;
    int proxy_timeout;
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
    char sni[256];   /* evn_connect: the server name to send and check */
    char fdname[64]; /* listener: the inherited socket of this LISTEN_FDNAMES name */
    /* With proxy=: headers are taken only from peers in these networks, if
     * the list is not empty. */
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

/* Big enough for any IPv4 or IPv6 address, small enough to keep per connection. */
union evn__ip_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* Record the detail of a failure for evn_errmsg() on this thread. */
/* Windows: evn is built with mingw-w64's C99 printf (gnu_printf), not the
 * old msvcrt's that `printf` would check against. */
#ifdef _WIN32
#define EVN__PRINTF gnu_printf
#else
#define EVN__PRINTF printf
#endif
EVN__HIDDEN void evn__set_errmsg(const char *fmt, ...) __attribute__((format(EVN__PRINTF, 1, 2)));

/* ---- memory (alloc.c) ---- */

/*
 * Every allocation goes through evn__alloc, which evn_set_allocator may
 * change while no server exists; evn__servers_add(+1 / -1) counts the
 * servers that do.
 */
struct evn__allocator {
    void *(*malloc)(size_t);
    void *(*realloc)(void *, size_t);
    void *(*calloc)(size_t, size_t);
    void (*free)(void *);
};
EVN__HIDDEN extern struct evn__allocator evn__alloc;
EVN__HIDDEN void evn__servers_add(int delta);
static inline void *evn__malloc(size_t n)
{
    return evn__alloc.malloc(n);
}
static inline void *evn__realloc(void *p, size_t n)
{
    return evn__alloc.realloc(p, n);
}
static inline void *evn__calloc(size_t k, size_t n)
{
    return evn__alloc.calloc(k, n);
}
static inline void evn__free(void *p)
{
    evn__alloc.free(p);
}
static inline char *evn__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = evn__malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

/* ---- handles, timers and deferred work: what a loop runs ---- */

/*
 * What a handle's callback is told: readiness (EVN__READ | EVN__WRITE;
 * errors and hang-ups come as EVN__READ), or, from a backend that does the
 * I/O itself, one completion.
 */
enum {
    EVN__READ = 1,
    EVN__WRITE = 2,
    EVN__RECEIVED = 4,   /* res bytes at buf (valid in the callback), 0: end of input, or -errno */
    EVN__SENT = 8,       /* the send in flight took res bytes, or failed with -errno */
    EVN__ACCEPTED = 16,  /* a new connection, res its fd (or -errno), buf its struct evn__peer */
    EVN__RELEASED = 32,  /* the backend holds nothing of the handle any more (see close) */
    EVN__CONNECTED = 64, /* the backend's connect is over: res 0 or -errno */
    EVN__DATAGRAM = 128  /* res bytes (or -errno) in the struct evn__dgram at buf */
};

struct evn__fired {
    struct evn__io *io;
    int ev;    /* one EVN__* value, or readiness bits */
    int res;   /* a completion's result */
    void *buf; /* EVN__RECEIVED: the bytes; EVN__ACCEPTED: the peer */
};

/* An accepted connection's remote address, as an EVN__ACCEPTED event gives it. */
struct evn__peer {
    union evn__ip_addr addr;
    socklen_t len;
};

/* A datagram a backend received, as an EVN__DATAGRAM event gives it: its
 * bytes and its sender, valid during the callback. */
struct evn__dgram {
    struct evn__peer from;
    char *data;
};

/*
 * A descriptor registered with a loop's backend, and the function the loop
 * calls with what happened to it. The loop knows nothing else of it: a
 * connection, a listening socket or the inbox embeds one and finds itself
 * from it with evn__container_of.
 */
struct evn__io;
typedef void (*evn__io_cb)(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f);
struct evn__io {
    evn__io_cb cb;
    int fd;
    /* A completion backend's own: its references to the handle (operations
     * in flight, events not yet handled) and what it has armed. */
    uint16_t refs;
    uint8_t bstate;
    uint8_t bmask;
#ifdef _WIN32
    /* IOCP: the overlapped operations of the handle (backend_iocp.c). */
    void *bslot;
#endif
};

/*
 * A timer, embedded in what it belongs to: once armed, cb runs on the loop's
 * thread when loop->now_ms reaches the time given (or soon after), with the
 * timer disarmed first, so cb may arm it again.
 */
struct evn__timer;
typedef void (*evn__timer_cb)(struct evn_loop *loop, struct evn__timer *t);
struct evn__timer {
    evn__timer_cb cb;
    uint32_t heap_idx; /* 1 + place in the loop's heap; 0 when not armed */
};
struct evn__timer_slot {
    int64_t at;
    struct evn__timer *t;
};
#define EVN__NEVER INT64_MAX

/* Arm t for `at` (EVN__NEVER disarms), replacing an earlier time. 0, or
 * -ENOMEM: t then keeps its earlier state. */
EVN__HIDDEN int evn__timer_start(struct evn_loop *loop, struct evn__timer *t, int64_t at);
EVN__HIDDEN void evn__timer_stop(struct evn_loop *loop, struct evn__timer *t);
/* Run every timer due by loop->now_ms. */
EVN__HIDDEN void evn__timers_run(struct evn_loop *loop);
/* Milliseconds until the earliest timer is due (0 if overdue), -1 if none. */
EVN__HIDDEN int64_t evn__timer_next(struct evn_loop *loop);

/*
 * Work for the end of the loop's turn, before it waits again: a module
 * queues its hook (queueing one already queued does nothing) and the loop
 * calls it once the turn's events and timers are done. A hook queued while
 * the hooks run is called in the next turn, which then does not sleep.
 */
struct evn__defer;
typedef void (*evn__defer_cb)(struct evn_loop *loop, struct evn__defer *d);
struct evn__defer {
    evn__defer_cb cb;
    struct evn__defer *next;
    bool queued;
};
EVN__HIDDEN void evn__defer(struct evn_loop *loop, struct evn__defer *d);

/* ---- backends ---- */

/* loop->fired has room for at least this many events from one wait. */
#define EVN__FIRED_MIN 256
/* The most pieces of output one send is given. */
#define EVN__IOV_MAX 64

/*
 * A backend, one per loop; `bdata` in the loop is the backend's. Readiness
 * is registered per handle with a mask (add, mod, del); `wait` fills
 * loop->fired[0..n) and returns n (at most loop->nfired_cap), or a negative
 * errno (never -EINTR). An event may name a handle removed since the wait
 * returned, or one whose memory now serves another handle of the same kind:
 * the handles' owners keep that memory for the loop's life (connections
 * live in a pool), and a spurious readiness event costs a read that finds
 * nothing.
 *
 * A completion backend also does the I/O itself (recv, send, accept and
 * close are set): a handle's owner turns receiving on and off, hands it
 * output to send, one send at a time, and has it accept on a listening
 * socket, and the results come as events. Its close stops everything on a
 * handle and closes the descriptor (keep_fd: leaves it to the caller, the
 * backend done with it); while the backend still refers to the handle it
 * returns 1, and EVN__RELEASED comes once it no longer does, until when the
 * handle's memory must stay. It may be used on any handle of such a backend,
 * also one registered for readiness only.
 */
struct evn__backend {
    const char *name;
    int (*init)(struct evn_loop *loop);
    void (*destroy)(struct evn_loop *loop);
    int (*add)(struct evn_loop *loop, struct evn__io *io, int mask);
    int (*mod)(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask);
    /* closing: the caller closes the fd next, so a poller that forgets
     * closed fds by itself may skip the work. */
    int (*del)(struct evn_loop *loop, struct evn__io *io, int oldmask, bool closing);
    int (*wait)(struct evn_loop *loop, int timeout_ms);
    /* Completion I/O; NULL in a readiness backend. send takes at most
     * EVN__IOV_MAX pieces. */
    void (*recv)(struct evn_loop *loop, struct evn__io *io, bool on);
    int (*send)(struct evn_loop *loop, struct evn__io *io, const struct iovec *iov, int n);
    int (*accept)(struct evn_loop *loop, struct evn__io *io, bool on);
    int (*close)(struct evn_loop *loop, struct evn__io *io, bool keep_fd);
    /* The loop is done (its thread, after its last callback): what it asked
     * for and did not wait for is done now. NULL: nothing to do. */
    void (*stop)(struct evn_loop *loop);
    /* Wake the loop from its wait, from any thread, with an EVN__READ event
     * for loop->wake_io. NULL: the loop waits on a wake descriptor. */
    void (*wake)(struct evn_loop *loop);
    /*
     * More completion I/O, each NULL where the backend leaves it to
     * readiness (a non-blocking connect, recvfrom and sendmsg, sendfile(2)
     * or pread and send).
     *
     * connect_to: connect io's new socket (not bound yet) to sa; 0, its end
     * coming as EVN__CONNECTED, or -errno if it failed at once (then nothing
     * comes). Closing the socket ends a connect in flight.
     *
     * send_file: send len bytes (or fewer) of the file descriptor fd from
     * offset on io's connected stream socket, as the one send in flight;
     * 0, its end coming as EVN__SENT, or -errno.
     *
     * recv_dgram: receive datagrams on io's UDP socket (on) or not: each
     * comes as an EVN__DATAGRAM event. send_dgram: send one datagram of
     * the pieces to `to`, taken at once (the caller's memory is free on
     * return): its bytes, or -errno (-EAGAIN: the one before is still in
     * flight; the datagram is dropped, as a full socket would).
     */
    int (*connect_to)(struct evn_loop *loop, struct evn__io *io, const struct sockaddr *sa,
                      socklen_t len);
    int (*send_file)(struct evn_loop *loop, struct evn__io *io, int fd, int64_t offset, size_t len);
    int (*recv_dgram)(struct evn_loop *loop, struct evn__io *io, bool on);
    int (*send_dgram)(struct evn_loop *loop, struct evn__io *io, const struct iovec *iov, int n,
                      const struct sockaddr *to, socklen_t tolen);
};

EVN__HIDDEN extern const struct evn__backend evn__backend_poll;
#ifdef EVN_HAVE_EPOLL
EVN__HIDDEN extern const struct evn__backend evn__backend_epoll;
#endif
#ifdef EVN_HAVE_KQUEUE
EVN__HIDDEN extern const struct evn__backend evn__backend_kqueue;
#endif
#ifdef EVN_HAVE_URING
EVN__HIDDEN extern const struct evn__backend evn__backend_uring;
/* Whether io_uring can run here (set up and torn down once, then kept):
 * 0, or a negative errno, with evn_errmsg() saying why if say. Any thread. */
EVN__HIDDEN int evn__uring_probe(bool say);
/* Test hook: the receives the server's io_uring loops saw end for want of
 * a buffer (each armed again). Read once the loops are done. */
EVN__HIDDEN long evn__uring_nobufs(struct evn_server *srv);
/* Test hook: the batch_us loop 0's ring waits with (0 where the kernel
 * has no minimum wait, or on another backend). */
EVN__HIDDEN unsigned evn__uring_batch_us(struct evn_server *srv);
#endif

#ifdef _WIN32
EVN__HIDDEN extern const struct evn__backend evn__backend_iocp;
/* How many receives in flight on an IOCP loop may hold a buffer of their
 * own; the loop's other connections wait with a zero-byte receive. */
#define EVN__IOCP_RECV_BUFS 64
/* Test hook: what the server's IOCP loops have done, summed. Read once the
 * loops are done, or on the thread of the one loop that may count. */
struct evn__iocp_counts {
    long waits;       /* GetQueuedCompletionStatusEx calls */
    long completions; /* completions taken from the port */
    long inline_done; /* operations that finished at once, with no completion */
    long recv_posts;  /* WSARecv calls, into a buffer or zero-byte */
    long recv_zero;   /* of those, zero-byte ones */
    long recvs;       /* recv calls after a zero-byte receive */
    long sends;       /* WSASend calls */
    long polls;       /* readiness polls armed (AFD) */
    long accepts;     /* AcceptEx calls */
    long allocs;      /* allocations made by the backend after init */
    long connects;    /* ConnectEx calls */
    long files;       /* TransmitFile calls */
    long dgram_recvs; /* WSARecvFrom calls */
    long dgram_sends; /* WSASendTo calls */
};
EVN__HIDDEN void evn__iocp_counts(struct evn_server *srv, struct evn__iocp_counts *out);
/* Test hook: completions waiting in the server's IOCP loops' ports, summed
 * (NtQueryIoCompletion), or -1 if the system cannot tell. Any thread. */
EVN__HIDDEN long evn__iocp_queued(struct evn_server *srv);
/* Operations the process's iocp loops gave up waiting for when they ended
 * (their memory left allocated, on purpose): 0 unless something is wrong. */
EVN__HIDDEN long evn__iocp_abandoned(void);
#endif

/* Find a backend by name (NULL: EVN_BACKEND or the best). NULL if unknown. */
EVN__HIDDEN const struct evn__backend *evn__backend_find(const char *name, int *err);

/* Register io with the loop's poller for mask: 0 or -errno. */
static inline int evn__io_add(struct evn_loop *loop, struct evn__io *io, int mask);
static inline int evn__io_mod(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask);
static inline void evn__io_del(struct evn_loop *loop, struct evn__io *io, int oldmask,
                               bool closing);

/* ---- connection ids ---- */

/*
 * An evn_id is the loop's index (8 bits), the connection's slot in its
 * loop's pool (24 bits) and a sequence number the loop gives each
 * connection (32 bits, never 0), so an id never names a later connection
 * that took the same slot.
 */
#define EVN__MAX_LOOPS 255
#define EVN__MAX_SLOTS (1u << 24)
static inline evn_id evn__id_make(int loop, uint32_t slot, uint32_t seq)
{
    return ((uint64_t)(uint32_t)loop << 56) | ((uint64_t)slot << 32) | seq;
}
static inline unsigned evn__id_loop(evn_id id)
{
    return (unsigned)(id >> 56);
}
static inline uint32_t evn__id_slot(evn_id id)
{
    return (uint32_t)(id >> 32) & (EVN__MAX_SLOTS - 1);
}
static inline uint32_t evn__id_seq(evn_id id)
{
    return (uint32_t)id;
}

/* ---- listeners ---- */

/* Where a listener's sockets came from. */
enum { EVN__BOUND = 0, EVN__FROM_SYSTEMD, EVN__FROM_HANDOFF };

struct evn__listener {
    struct evn__url url;
    size_t index; /* position in the address list */
    char urlstr[160];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int fd; /* the shared socket, or fds[0] */
    /* Several sockets (reuseport, or several inherited for the address):
     * socket i is polled by loop i % nloops. Usually one per loop. */
    int *fds;
    int nfds;
    int origin; /* EVN__BOUND, or where its (first) socket was inherited from */
    bool unlink_on_free;
    struct evn__tls_ctx *tls; /* tls:// listeners: the SSL_CTX and ALPN list (tls.c) */
};

/* A socket listening (TCP/unix) or bound (UDP) on one loop. */
struct evn__lsock {
    struct evn__io io;
    struct evn__listener *l;
    int slot;             /* its place in l->fds, or -1 for l->fd */
    struct evn_conn *udp; /* UDP: the pseudo-connection used for datagrams */
};

EVN__HIDDEN int evn__listener_open(struct evn_server *srv, struct evn__listener *l, const char *url,
                                   int nloops, char *err, size_t errlen);
EVN__HIDDEN void evn__listener_close(struct evn__listener *l);
/* Register the listening and UDP sockets loop polls; stop polling them (and
 * close them: a drain) ; resume accepting after a pause for want of fds. */
EVN__HIDDEN int evn__lsocks_start(struct evn_loop *loop);
EVN__HIDDEN void evn__lsocks_close(struct evn_loop *loop);
EVN__HIDDEN void evn__lsocks_free(struct evn_loop *loop);
EVN__HIDDEN void evn__accept_resume(struct evn_loop *loop);
EVN__HIDDEN int evn__set_nonblock(int fd, bool on);
/* A pipe with both ends non-blocking and close-on-exec; -errno on failure. */
EVN__HIDDEN int evn__pipe_nb(int p[2]);

/* ---- inherited sockets (inherit.c) and the hand-off (handoff.c) ---- */

/* A listening or bound socket the process did not make: from systemd's
 * socket activation or handed over by a running evn process. */
struct evn__inherited {
    int fd;
    int origin; /* EVN__FROM_SYSTEMD or EVN__FROM_HANDOFF */
    int type;   /* SOCK_STREAM or SOCK_DGRAM */
    bool listening, reuseport;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[64]; /* systemd's LISTEN_FDNAMES entry, or "" */
};

/* Describe fd as an inherited socket: false if it is no socket. */
EVN__HIDDEN bool evn__inherited_describe(int fd, int origin, struct evn__inherited *in);
/*
 * Take the inherited sockets that serve listener l (its address resolved,
 * l->url parsed): first from the server's own (handed over), then from
 * systemd's (read from LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES on first
 * use). Writes up to max descriptors to fds, non-blocking and close-on-exec,
 * now l's, and returns how many (0: bind as usual), with *first set to the
 * description of fds[0].
 */
EVN__HIDDEN int evn__inherit_claim(struct evn_server *srv, const struct evn__listener *l, int *fds,
                                   int max, struct evn__inherited *first);
/* Close the handed-over sockets no listener took. */
EVN__HIDDEN void evn__inherit_release(struct evn_server *srv);

/*
 * The taking side of a hand-off: with EVN_HANDOFF_FD in the environment (and
 * EVN_HANDOFF_PID, if set, this process's), read the sockets offered into
 * srv->inh. 0 (nothing offered counts), or -errno.
 */
EVN__HIDDEN int evn__handoff_take(struct evn_server *srv);
/* Tell the offering process that this server serves (ok) or will not
 * (why), and close the channel. Nothing if there is none. */
EVN__HIDDEN void evn__handoff_answer(struct evn_server *srv, const char *why);

/* ---- connections ---- */

/*
 * One piece of queued output: memory (buf; data[] when evn owns it, the
 * application's buffer when cap is 0 and done is set), or a file region
 * (buf NULL, see sendfile.c).
 */
struct evn__chunk {
    struct evn__chunk *next;
    char *buf;
    size_t off, len, cap;
    /* For an application's buffer or a file: called when evn is done with it. */
    void (*done)(void *buf, int status, void *arg);
    void *arg;
    char data[];
};

/*
 * A connection's transport: how bytes reach and leave its socket. A plain
 * socket (conn.c) and TLS (tls.c) are the two. The connection code calls
 * these only for an established connection; before that (a TLS handshake)
 * the transport drives the connection itself through `ready`.
 */
struct evn__transport {
    /* Read up to len bytes into buf: > 0, 0 at end of input, or -1 with
     * errno (EAGAIN: nothing now). */
    ssize_t (*read)(struct evn_conn *c, char *buf, size_t len);
    /* Send from iov[0..n): the bytes taken (a short count means the socket
     * is full: *want says how many were offered), or -1 with errno. */
    ssize_t (*writev)(struct evn_conn *c, const struct iovec *iov, int n, size_t *want);
    /* Readiness while the transport, not the application, decides what to
     * wait for (EVN__C_TPWAIT): a handshake step, a read that must write. */
    void (*ready)(struct evn_conn *c, int mask);
    /* Input waiting inside the transport, where the poller cannot see it. */
    bool (*pending)(const struct evn_conn *c);
    /* The application's side is done sending: end the stream (close_notify)
     * before the socket's shutdown. */
    void (*shutdown)(struct evn_conn *c);
    /* Free the transport's state; notify: end the stream first. */
    void (*release)(struct evn_conn *c, bool notify);
};

EVN__HIDDEN extern const struct evn__transport evn__plain_transport;

enum {
    EVN__C_CLOSING = 1u << 0,   /* close once output drains */
    EVN__C_DETACHING = 1u << 1, /* detach once output drains */
    EVN__C_WANTW = 1u << 2,     /* waiting for writability */
    EVN__C_DIRTY = 1u << 3,     /* on the loop's flush list */
    EVN__C_UDP = 1u << 4,
    EVN__C_RDOFF = 1u << 5,       /* read interest removed */
    EVN__C_WOKEN = 1u << 6,       /* a wake is pending in this inbox batch */
    EVN__C_PAUSED = 1u << 7,      /* output above high water: not reading */
    EVN__C_NOMEM = 1u << 8,       /* an allocation failed: close with -ENOMEM */
    EVN__C_NOBUFS = 1u << 9,      /* out_cap passed: close with -ENOBUFS */
    EVN__C_RESUME = 1u << 10,     /* on the loop's resume list (drained) */
    EVN__C_RESUMABLE = 1u << 11,  /* passed high water: drained is owed */
    EVN__C_CONNECTING = 1u << 12, /* evn_connect in progress */
    EVN__C_HOLD = 1u << 13,       /* the application paused reading */
    EVN__C_EOF = 1u << 14,        /* the peer shut down its sending side */
    EVN__C_WSHUT = 1u << 15,      /* shut down our sending side once drained */
    EVN__C_WSHUT_DONE = 1u << 16, /* ... and it is done */
    EVN__C_LINGER = 1u << 17,     /* closed for the application; draining input */
    EVN__C_XTP = 1u << 18,        /* the transport is x->tp, not the plain socket's */
    EVN__C_OPENING = 1u << 19,    /* the transport is not established: not opened yet */
    EVN__C_TPWAIT = 1u << 20,     /* the transport waits for tpmask, not the application */
    EVN__C_REREAD = 1u << 21,     /* on the resume list to read again (input in the transport) */
    EVN__C_UNREG = 1u << 22,      /* not registered with the backend: its interest is 0 */
    EVN__C_FRESH = 1u << 23,      /* the read just now emptied the socket (should_linger) */
    EVN__C_SPLICE = 1u << 24,     /* input is spliced to another connection (splice.c) */
    EVN__C_SPLWAIT = 1u << 25,    /* ... which cannot take more now: not reading */
    EVN__C_MANUAL = 1u << 26,     /* EVN_FLOW_MANUAL: never paused for its own output */
    EVN__C_KEPT = 1u << 27,       /* evn_keep was called in this data event */
    EVN__C_CQ = 1u << 28,         /* the backend receives and sends (completion I/O) */
    EVN__C_SENDING = 1u << 29,    /* ... and a send is in flight */
    EVN__C_INEND = 1u << 30       /* ... and the end of input came after input kept */
};
/* evn_connect: the head chunk is a PROXY header, sent once connected before
 * anything else (proxyconn.c). Not in the enum: an enum constant is an int. */
#define EVN__C_PROXYHDR (1u << 31)

/*
 * What few connections need, allocated on first use: kept input, timers,
 * watermarks other than the server's, TLS, splicing, a close reason. Kept
 * small (88 bytes), since a server-wide idle timeout gives every
 * connection one.
 */
struct evn__conn_ext {
    struct evn_conn *c;
    /* The idle timeout (checked lazily against last_active) and the
     * deadline (the application's, a TLS handshake's, an outbound
     * connect's, a lingering close's) share one timer. */
    struct evn__timer timer;
    uint32_t idle_ms;
    int close_err; /* what closed gets for a close asked for (evn_conn_close) */
    int64_t last_active, deadline_at;
    /* Kept input (NULL when none); or, while an evn_connect to a host name
     * is resolving it or trying its addresses (EVN__C_CONNECTING), before
     * any input can be kept, that connect's state (connect.c). */
    union {
        char *in;
        struct evn__dial *dial;
    };
    uint32_t in_len, in_cap;
    uint32_t out_high, out_low; /* 0: the server's */
    struct evn__tls *tls;
    struct evn__splice *splice;
    const struct evn__transport *tp; /* with EVN__C_XTP */
};

/* Kept input stops growing here: the connection is closed with -ENOBUFS. */
#define EVN__KEPT_MAX (UINT32_MAX - (1u << 20))

struct evn_conn {
    struct evn__io io; /* io.fd is the socket */
    uint32_t flags;    /* while the slot is free: the next free slot + 1 */
    uint32_t seq;      /* the id's low half */
    /* The rest is unreadable while the slot is free (under ASan). */
    struct evn_loop *loop;
    void *udata;
    struct evn__chunk *out_head, *out_tail;
    size_t out_bytes;
    struct evn__conn_ext *x; /* NULL until needed (evn__conn_ext) */
    uint32_t slot;           /* place in the loop's pool, in the id */
    uint16_t listener;       /* index of the listener, or EVN__LISTENER_OUTBOUND */
    uint8_t tpmask;          /* with EVN__C_TPWAIT: what the transport waits for */
    uint8_t peerlen;         /* 0: not known (a unix socket's peer), ask the kernel */
    /* The remote address, kept from accept (so closed can still name a peer
     * that reset) or, for UDP, the current datagram's sender. */
    union evn__ip_addr peer;
};

#define EVN__LISTENER_OUTBOUND UINT16_MAX
#define EVN__MAX_LISTENERS (UINT16_MAX - 1)

/* Every connection of a loop is one of these, so each byte counts: an
 * idle connection's memory is this and its share of the slot table (112
 * bytes on Linux, where the handle is 16). */
_Static_assert(sizeof(struct evn_conn) - sizeof(struct evn__io) <= 96, "struct evn_conn grew");

/* c's rare state, made on first use: NULL when out of memory. */
EVN__HIDDEN struct evn__conn_ext *evn__conn_ext(struct evn_conn *c);

/* c's transport: the plain socket's unless another was set (kept in c's
 * ext, so that the common case costs a connection no pointer). */
static inline const struct evn__transport *evn__conn_tp(const struct evn_conn *c)
{
    return (c->flags & EVN__C_XTP) ? c->x->tp : &evn__plain_transport;
}
/* Make tp c's transport: 0, or -ENOMEM if c's ext could not be made. */
EVN__HIDDEN int evn__conn_set_tp(struct evn_conn *c, const struct evn__transport *tp);

/* The connections of one loop (conn.c's, kept in the loop). */
struct evn__conns {
    /* The pool: pages of connections; the free slots, linked by number
     * through their flags (0: none). */
    struct evn_conn **pages;
    uint32_t npages, nslots;
    uint32_t free;
    uint32_t limbo; /* freed this turn: free once it is over */
    uint32_t next_seq;
    size_t open; /* stream connections in use */
    /* The read buffer, handed to data callbacks without a copy. */
    char *rbuf;
    size_t rbuf_cap;
    /* Spare output chunks, so steady traffic allocates nothing. */
    struct evn__chunk *chunks;
    int nchunks;
    /* The connection whose callback is running, and during a data event
     * the length of its input and what evn_keep asked for. */
    struct evn_conn *cur;
    size_t cur_len, keep;
    /* Ids of connections written to outside their own callbacks (flushed
     * at the end of the turn) and of connections to resume (drained, kept
     * input, input left inside the transport) or to close for want of
     * memory, at the end of the turn rather than recursively. */
    evn_id *dirty, *resume;
    size_t ndirty, dirty_cap, nresume, resume_cap;
    struct evn__defer later;
    bool in_later;
    /* The server's watermarks, defaults applied. */
    size_t out_high, out_low;
};

EVN__HIDDEN int evn__conns_init(struct evn_loop *loop);
EVN__HIDDEN void evn__conns_free(struct evn_loop *loop);
/* The connection the id names on this loop, or NULL. */
EVN__HIDDEN struct evn_conn *evn__conn_lookup(struct evn_loop *loop, evn_id id);
/* Every open connection of the loop, in turn (fn may close it). */
EVN__HIDDEN void evn__conns_each(struct evn_loop *loop, void (*fn)(struct evn_conn *c, void *arg),
                                 void *arg);
/* Close every connection this loop still has, firing closed for each. */
EVN__HIDDEN void evn__conn_close_all(struct evn_loop *loop, int err);

/*
 * A new connection on fd, accepted by listener (or EVN__LISTENER_OUTBOUND),
 * in the state flags give (EVN__C_CONNECTING, EVN__C_UNREG, EVN__C_CQ),
 * registered with the backend for the interest that state has, not yet
 * opened. On failure fd is closed, its max_conns slot given back, and NULL
 * returned.
 */
EVN__HIDDEN struct evn_conn *evn__conn_new(struct evn_loop *loop, int fd, uint16_t listener,
                                           const union evn__ip_addr *peer, socklen_t peerlen,
                                           uint32_t flags);
/* A connection accepted (or handed over) on this loop: make it and open
 * it (TLS handshake first, or the accept fast path). */
EVN__HIDDEN int evn__conn_accepted(struct evn_loop *loop, int fd, uint16_t listener,
                                   const union evn__ip_addr *peer, socklen_t peerlen);
/* opened fires (and draining, if the drain began meanwhile). */
EVN__HIDDEN void evn__conn_opened(struct evn_conn *c);
EVN__HIDDEN void evn__conn_close(struct evn_conn *c, int err);
/* Close c, which the application has not heard of, without any event. */
EVN__HIDDEN void evn__conn_discard(struct evn_conn *c);
/* Act on a callback's return value for c (may free c): false if c is gone. */
EVN__HIDDEN bool evn__conn_act(struct evn_conn *c, evn_action a);
EVN__HIDDEN void evn__conn_wake(struct evn_conn *c);
/* What the loop does when c's socket is ready, for a transport that was
 * waiting in its stead (EVN__C_TPWAIT) and is done. */
EVN__HIDDEN void evn__conn_ready(struct evn_conn *c, int mask);

/* Append a chunk from another thread's evn_send to c's output. */
EVN__HIDDEN void evn__conn_queue_chunk(struct evn_conn *c, struct evn__chunk *ch);
EVN__HIDDEN void evn__chunk_release(struct evn_loop *loop, struct evn__chunk *ch, int status);
/* Set and clear flags, registering the interest they give: 0 or -errno. */
EVN__HIDDEN int evn__conn_set_flags(struct evn_conn *c, uint32_t set, uint32_t clear);
/* The registered interest for c's flags. */
EVN__HIDDEN int evn__conn_interest(const struct evn_conn *c);
/* The transport waits for mask (EVN__C_TPWAIT), or no longer (0). */
EVN__HIDDEN void evn__conn_tpwait(struct evn_conn *c, int mask);
/* Read c again at the end of this turn without waiting for the poller. */
EVN__HIDDEN void evn__conn_reread(struct evn_conn *c);
EVN__HIDDEN void evn__conn_input_end(struct evn_conn *c);
EVN__HIDDEN void evn__conn_drop_input(struct evn_conn *c);
/* Arm c's timer for its idle timeout and deadline as they now stand. */
EVN__HIDDEN void evn__conn_timer_update(struct evn_conn *c);
/* Set (ms > 0) or clear (0) c's deadline; -ENOMEM. */
EVN__HIDDEN int evn__conn_deadline(struct evn_conn *c, int64_t ms);
/* Run a callback of c with loop->conns.cur set. */
static inline void evn__conn_enter(struct evn_conn *c);
static inline void evn__conn_leave(struct evn_conn *c);

static inline struct evn__tls *evn__conn_tls(const struct evn_conn *c)
{
    return c->x ? c->x->tls : NULL;
}
static inline struct evn__splice *evn__conn_splice(const struct evn_conn *c)
{
    return c->x ? c->x->splice : NULL;
}
/* The state of an evn_connect to a host name, until it is connected. */
static inline struct evn__dial *evn__conn_dial(const struct evn_conn *c)
{
    return (c->flags & EVN__C_CONNECTING) && c->x ? c->x->dial : NULL;
}

/* UDP (udp.c): a listener's pseudo-connection and its datagrams. */
EVN__HIDDEN struct evn_conn *evn__udp_conn_new(struct evn_loop *loop, struct evn__lsock *ls);
EVN__HIDDEN void evn__udp_conn_free(struct evn_conn *c);
EVN__HIDDEN void evn__udp_ready(struct evn_loop *loop, struct evn__io *io,
                                const struct evn__fired *f);

/* ---- the inbox: other threads' messages for a loop (wake.c) ---- */

/* A message for a loop from another thread. */
struct evn__msg {
    int type; /* EVN__M_* */
    int fd;
    uint64_t arg;            /* wake, write: the id; conn: the listener index; resolved: the job */
    union evn__ip_addr peer; /* conn: the remote address */
    uint8_t peerlen;
    struct evn__chunk *chunk; /* write: the bytes */
};

enum { EVN__M_WAKE = 1, EVN__M_CONN, EVN__M_WRITE, EVN__M_RESOLVED };

EVN__HIDDEN int evn__inbox_init(struct evn_loop *loop);
EVN__HIDDEN void evn__inbox_free(struct evn_loop *loop);
EVN__HIDDEN int evn__loop_post(struct evn_loop *loop, const struct evn__msg *msg);
/* Wake the loop from its wait (any thread). */
EVN__HIDDEN void evn__loop_signal(struct evn_loop *loop);

/* ---- statistics (stats.c) ---- */

/*
 * A loop's counters for evn_server_stats. The loop's own thread is the only
 * writer of each; any thread may read them at any time.
 *
 * Most are atomics that the loop adds to with a relaxed load and store
 * (evn__stat_add): on x86-64 and arm64 those are the plain instructions, no
 * lock prefix and no barrier, so a count costs a load, an add and a store,
 * and is current for a reader at once, even while the loop sleeps. With one
 * writer no read-modify-write is needed, and a reader sees each value whole.
 * They change per turn or per connection.
 *
 * The bytes are counted per read and per send, the hottest place of all, so
 * there they go into plain fields (in, out: one add to memory each) and are
 * published to bytes_in and bytes_out once per turn, before the loop waits,
 * and when a connection closes; a store of each per turn costs less than
 * the atomic form's extra instructions on every read and send, once a turn
 * handles a few of them. Another thread thus sees the bytes as of the end of
 * the loop's last turn (exact while it waits), and of each close; the loop's
 * own thread reads in and out themselves (stats.c).
 */
struct evn__stats {
    uint64_t in, out;
    _Atomic uint64_t bytes_in, bytes_out;
    _Atomic uint64_t turns, events, wait_ns, work_ns;
    _Atomic uint64_t open, accepted, outbound, closed;
    _Atomic uint64_t refused_max_conns, refused_tls;
    /* Connections of proxy= listeners closed for their PROXY header: bad,
     * too long, missing, late, or from outside proxy_from (proxyconn.c). */
    _Atomic uint64_t refused_proxy;
    /* Accepts that found the connection gone, or failed for want of
     * descriptors or memory (listener.c). */
    _Atomic uint64_t accept_gone, accept_failed;
};

/* Add n to one of the calling loop's atomic counters (only its thread may). */
static inline void evn__stat_add(_Atomic uint64_t *x, uint64_t n)
{
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Publish the bytes counted so far to other threads (the loop's thread). */
static inline void evn__stat_publish(struct evn__stats *st)
{
    atomic_store_explicit(&st->bytes_in, st->in, memory_order_relaxed);
    atomic_store_explicit(&st->bytes_out, st->out, memory_order_relaxed);
}

/* ---- loops and the server ---- */

struct evn_loop {
    struct evn_server *srv;
    int index;
    const struct evn__backend *be;
    void *bdata;
    struct evn__fired *fired;
    int nfired_cap;
    pthread_t thread;
    bool started;

    struct evn__conns conns;

    /* Listening sockets this loop polls. */
    struct evn__lsock *lsocks;
    size_t nlsocks;
    /* Listening sockets closed that a completion backend still holds: the
     * accepts it made meanwhile are yet to come, so a drain waits. */
    int lsocks_held;
    /* Out of file descriptors: listeners are off the poller until a
     * connection of this loop closes or the retry timer fires. */
    bool accept_paused;
    struct evn__timer accept_retry;

    /* Cross-thread inbox: a mutex-guarded queue plus a wake-up fd. */
    struct evn__io wake_io;
    pthread_mutex_t inbox_lock;
    struct evn__msg *inbox, *inbox_spare;
    size_t ninbox, inbox_cap, spare_cap;
    atomic_bool inbox_signalled;
    int wake_wfd; /* the same fd as wake_io.fd for an eventfd */
#ifdef _WIN32
    pthread_mutex_t wake_lock; /* one send at a time to wake_wfd (wake.c) */
#endif

    atomic_long nconns; /* read by the acceptor for least-connections */

    /* Timers, as a binary min-heap on the time due. now_ms is the loop's
     * clock, read after each wait; activity stamps connections with it at
     * no cost. */
    struct evn__timer_slot *heap;
    size_t nheap, heap_cap;
    int64_t now_ms;

    /* Deferred hooks (evn__defer), in the order queued. */
    struct evn__defer *defer_head, **defer_tail;

    /* Graceful shutdown: listeners closed, waiting for connections to end;
     * the timer wakes the loop at the deadline. */
    bool drain_started;
    struct evn__timer drain_timer;

    /* Once this loop splices or sends a file, SIGPIPE is blocked on its
     * thread, and restored when it ends (evn__sigpipe_block). */
    bool sigpipe_blocked;
    sigset_t sigpipe_old;

    /* What evn_server_stats reports (stats.c). Here, among fields that only
     * this loop's thread uses, so that counting does not share a cache line
     * with what other threads write (nconns, the inbox) or with the next
     * loop's first fields, which its thread reads on every turn. */
    struct evn__stats stats;

    /* The ticker (loop 0 only). */
    struct evn__timer tick_timer;
    int64_t tick_delay_ms;

    /* Host names for evn_connect: made on first use (resolve.c). */
    struct evn__resolver *resolver;
};

struct evn_server {
    evn_events ev;
    const struct evn__backend *be;
    int nloops, nloops_init;
    struct evn_loop *loops;
    struct evn__listener *listeners;
    size_t nlisteners;
    /* Guards the listeners' descriptors, which loops close in a drain while
     * evn_server_handoff copies them on another thread. */
    pthread_mutex_t lfd_lock;
    /* The hand-off: sockets offered to this server (taking side), the
     * channel to answer on, and whether this server is handing off. */
    struct evn__inherited *inh;
    size_t ninh;
    int handoff_fd;
    atomic_bool handing_off;
    atomic_bool stopping;
    atomic_bool draining;
    /* Set by loop 0 once its listeners are closed during a drain: no more
     * connections will be handed to the other loops. */
    atomic_bool handoffs_over;
    atomic_llong drain_deadline_ms;
    /* evn_server_stop_on_signals: the fds loop 0 reads, and the mask to
     * restore. */
    struct evn__io sig_io;
    int sig_wfd;
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
    /* Copies of evn_events.hosts_file and dns_servers (NULL: not set). */
    char *hosts_file, *dns_servers;
};

EVN__HIDDEN int evn__loop_init(struct evn_loop *loop, struct evn_server *srv, int index);
EVN__HIDDEN void evn__loop_destroy(struct evn_loop *loop);
EVN__HIDDEN int evn__loop_run(struct evn_loop *loop);
EVN__HIDDEN int64_t evn__now_ms(void);
/* The same clock (CLOCK_MONOTONIC) in nanoseconds. */
EVN__HIDDEN int64_t evn__now_ns(void);
/* Refresh loop->now_ms (when a timer is about to be set). */
static inline int64_t evn__loop_now(struct evn_loop *loop)
{
    return loop->now_ms = evn__now_ms();
}

/* The loop the calling thread runs, or NULL. */
EVN__HIDDEN extern _Thread_local struct evn_loop *evn__cur_loop;

/* Whether this loop's backend does the I/O itself. */
static inline bool evn__loop_completes(const struct evn_loop *loop)
{
    return loop->be->recv != NULL;
}

static inline int evn__io_add(struct evn_loop *loop, struct evn__io *io, int mask)
{
    return loop->be->add(loop, io, mask);
}
static inline int evn__io_mod(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask)
{
    return loop->be->mod(loop, io, oldmask, newmask);
}
static inline void evn__io_del(struct evn_loop *loop, struct evn__io *io, int oldmask, bool closing)
{
    loop->be->del(loop, io, oldmask, closing);
}

static inline void evn__conn_enter(struct evn_conn *c)
{
    c->loop->conns.cur = c;
}
static inline void evn__conn_leave(struct evn_conn *c)
{
    c->loop->conns.cur = NULL;
}

/* Graceful shutdown and signals (shutdown.c). */
EVN__HIDDEN void evn__loop_drain_start(struct evn_loop *loop);
/* true when a draining loop is done (no connections, or time is up). */
EVN__HIDDEN bool evn__loop_drain_done(struct evn_loop *loop);
EVN__HIDDEN int64_t evn__drain_left_ms(struct evn_server *srv);
EVN__HIDDEN void evn__signals_detach(struct evn_server *srv);
/* c has just opened (opened fired and c is still there) on a loop whose
 * drain has begun: tell it as the others were told when the drain began. */
EVN__HIDDEN void evn__conn_opened_draining(struct evn_conn *c);

/*
 * splice(2) and sendfile(2) raise SIGPIPE and have no MSG_NOSIGNAL. SIGPIPE
 * is blocked on the loop's thread from the first such call until the loop
 * ends (evn__sigpipe_restore), and one they raised is taken back after an
 * EPIPE (evn__sigpipe_take). loop.c.
 */
EVN__HIDDEN void evn__sigpipe_block(struct evn_loop *loop);
EVN__HIDDEN void evn__sigpipe_take(void);
EVN__HIDDEN void evn__sigpipe_restore(struct evn_loop *loop);

/* ---- host names (resolve.c, and resolve_cares.c or resolve_thread.c) ---- */

/*
 * A name's addresses, in the order to try them, with port 0; shared by the
 * loop's cache and the connects using them. ttl: seconds they may be kept
 * (0: not at all).
 */
struct evn__addrs {
    int refs;
    int ttl;
    size_t n;
    union evn__ip_addr a[];
};
#define EVN__ADDRS_MAX 32
EVN__HIDDEN struct evn__addrs *evn__addrs_new(size_t n);
EVN__HIDDEN void evn__addrs_unref(struct evn__addrs *a);

/*
 * An evn_connect to a host name (connect.c): waiting for the name, then
 * trying its addresses one after the other, each within the connect's
 * timeout, until one connects. While waiting it is linked on its lookup or
 * on the resolver's list of answered ones (next, prevp).
 */
struct evn__dial {
    struct evn_conn *c;
    struct evn__dial *next, **prevp;
    struct evn__addrs *addrs; /* once answered */
    int status;               /* once answered: 0, or EVN_ERESOLVE with why */
    size_t tried;             /* addresses tried so far */
    int port, family;
    int64_t timeout_ms;
    bool timed_out; /* the current address took too long: its socket is shut */
    char *url;
    char why[240]; /* the resolver's reason, or each address's failure */
    char host[];
};

/*
 * Look host up for d (family AF_UNSPEC, AF_INET or AF_INET6): from the
 * loop's cache while its TTL lasts, else from the server's hosts_file, else
 * from the resolver. d gets its answer (evn__dial_answered) at the end of a
 * loop turn, never within this call, or never if it is dropped first
 * (evn__resolve_drop). 0, or -ENOMEM.
 */
EVN__HIDDEN int evn__resolve(struct evn_loop *loop, struct evn__dial *d);
EVN__HIDDEN void evn__resolve_drop(struct evn__dial *d);
EVN__HIDDEN void evn__dial_answered(struct evn__dial *d);
/*
 * c, dialling, has connected, or failed to (*err, a negative errno): false
 * if it is to go on as any connect would (its dial freed, or to close with
 * *err, evn_errmsg() saying why); true if it is trying its next address.
 */
EVN__HIDDEN bool evn__dial_connected(struct evn_conn *c, int *err);
/* c's deadline passed while dialling: true if it goes on with its next
 * address, false if it is to close with -ETIMEDOUT (evn_errmsg() set). */
EVN__HIDDEN bool evn__dial_timeout(struct evn_conn *c);
EVN__HIDDEN void evn__dial_free(struct evn_conn *c);
/* The loop is being freed: stop every lookup, free the cache. */
EVN__HIDDEN void evn__resolver_free(struct evn_loop *loop);

/* One name being looked up, and then kept while its TTL lasts (resolve.c). */
struct evn__lookup;
struct evn__resolver {
    struct evn_loop *loop;
    struct evn__lookup *lookups;
    size_t nlookups;
    /* Dials answered, for the end of the turn. */
    struct evn__dial *answered;
    struct evn__defer hook;
    void *mech; /* the mechanism's own */
};

/*
 * A mechanism (resolve_cares.c or resolve_thread.c) looks a name up without
 * blocking the loop and calls evn__lookup_done on the loop's thread, never
 * within evn__mech_lookup. done takes addrs (NULL on failure, then status
 * is EVN_ERESOLVE and reason says why). evn__mech_free stops what is under
 * way without calling done. evn__mech_check validates the server's
 * settings at evn_server_new (evn_errmsg() says what is wrong).
 */
EVN__HIDDEN int evn__mech_lookup(struct evn__resolver *r, struct evn__lookup *lk, const char *host,
                                 int family);
EVN__HIDDEN void evn__lookup_done(struct evn__resolver *r, struct evn__lookup *lk, int status,
                                  struct evn__addrs *addrs, const char *reason);
EVN__HIDDEN void evn__mech_free(struct evn__resolver *r);
EVN__HIDDEN int evn__mech_check(struct evn_server *srv);
#ifndef EVN_HAVE_CARES
/* A resolver thread's answer, posted to the loop's inbox. */
EVN__HIDDEN void evn__mech_posted(struct evn_loop *loop, void *job);
#endif

/* ---- TLS (tls.c) ---- */

/* Default for evn_events.tls_handshake_timeout_ms. */
#define EVN__TLS_HANDSHAKE_MS 10000

/* How long a TLS handshake may take: the server's setting, or the default. */
static inline int64_t evn__tls_handshake_ms(const struct evn_server *srv)
{
    return srv->ev.tls_handshake_timeout_ms > 0 ? srv->ev.tls_handshake_timeout_ms
                                                : EVN__TLS_HANDSHAKE_MS;
}

#ifdef EVN_HAVE_TLS
/* Build l->tls from l->url (certificate, key, CA, verify, ALPN). On failure
 * err names the file and OpenSSL's reason; -ENOENT, -EINVAL or -ENOMEM. */
EVN__HIDDEN int evn__tls_ctx_new(struct evn__listener *l, const char *url, char *err,
                                 size_t errlen);
EVN__HIDDEN void evn__tls_ctx_free(struct evn__listener *l);
/* Start the server side of TLS on an accepted connection: the handshake
 * runs within the handshake timeout, and opened fires once it is done; a
 * failure closes c without any event. */
EVN__HIDDEN void evn__tls_accept(struct evn_conn *c, struct evn__listener *l);
/* evn_connect to tls://: start the client side on the connected socket;
 * opened fires once the handshake is done, closed with the reason if not. */
EVN__HIDDEN void evn__tls_connected(struct evn_conn *c);
EVN__HIDDEN const char *evn__tls_alpn(const struct evn_conn *c);
/* Whether c's handshake resumed an earlier session. */
EVN__HIDDEN bool evn__tls_resumed(const struct evn_conn *c);
/*
 * Make a client-side session for evn_connect on socket fd, in *tp, with the
 * server's cached SSL_CTX for u's options (made on first use: the CA, client
 * certificate and key files are read then). On failure evn_errmsg() names the
 * file and OpenSSL's reason; -ENOENT, -EINVAL or -ENOMEM. The session of the
 * last connection that loop (its index) made to the same place is offered
 * for resumption. A session not yet given to a connection (evn__tls_attach)
 * is freed with evn__tls_client_discard.
 */
EVN__HIDDEN int evn__tls_client_new(struct evn_server *srv, int loop, int fd,
                                    const struct evn__url *u, const char *url,
                                    struct evn__tls **tp);
EVN__HIDDEN void evn__tls_client_discard(struct evn__tls *t);
/* The socket of a client session made before it had one (a host name's
 * connect, which may try several sockets). */
EVN__HIDDEN void evn__tls_client_set_fd(struct evn__tls *t, int fd);
/* Give c the session t (c->x exists). */
EVN__HIDDEN void evn__tls_attach(struct evn_conn *c, struct evn__tls *t);
/* Free the server's client contexts (evn_server_free). */
EVN__HIDDEN void evn__tls_clients_free(struct evn_server *srv);
/* How many client contexts the server holds (for the tests). Any thread. */
EVN__HIDDEN size_t evn__tls_clients_count(struct evn_server *srv);
#else
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

/* ---- the PROXY protocol on connections (proxyconn.c) ---- */

/* Default for a listener's proxy_timeout=: the header must be complete this
 * many milliseconds after the accept. */
#define EVN__PROXY_TIMEOUT_MS 5000

/* The stage a proxy= listener's connection is in until its header is read. */
EVN__HIDDEN extern const struct evn__transport evn__proxy_transport;
/* Start reading the header of c, accepted by l (made with EVN__C_UNREG):
 * once it is read, c goes on as any connection of l (TLS handshake, or
 * opened); a bad one closes c without any event and is counted. */
EVN__HIDDEN void evn__proxy_accept(struct evn_conn *c, struct evn__listener *l);
/* An outbound connection with EVN__C_PROXYHDR is connected: send its
 * header, before anything else. false if c is gone (closed with the error). */
EVN__HIDDEN bool evn__proxy_send_header(struct evn_conn *c);

/* ---- file regions (sendfile.c) ---- */

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
 * Send from the file chunk at the head of c's output: on a plain socket at
 * most max bytes with sendfile(2); otherwise one piece of up to 16 KiB, read
 * with pread into the loop's read buffer and given to the transport (max is
 * ignored there, so that a retry after the socket was full offers the same
 * bytes). Returns the bytes sent, with *want set to what was offered (more
 * than that: the socket is full), or -1 with errno set (EAGAIN: wait for
 * writability).
 */
EVN__HIDDEN ssize_t evn__file_send(struct evn_conn *c, struct evn__chunk *ch, size_t max,
                                   size_t *want);
/* Hand the file region at the head of c's output to the backend's own
 * file sending (its send_file): 0, the bytes sent coming as EVN__SENT, or
 * -errno. */
EVN__HIDDEN int evn__file_send_by_backend(struct evn_conn *c, struct evn__chunk *ch);

/* ---- splicing (splice.c) ---- */

EVN__HIDDEN void evn__splice_pump(struct evn_conn *from);
EVN__HIDDEN void evn__splice_drained(struct evn_conn *to);
EVN__HIDDEN void evn__splice_write_kept(struct evn_conn *from);
/* from's input that a completion backend received: to its target, ahead
 * of what splice(2) moves next. 0 or -ENOMEM. */
EVN__HIDDEN int evn__splice_pass(struct evn_conn *from, const char *buf, size_t n);
EVN__HIDDEN void evn__splice_drop(struct evn_conn *c);
/* For the tests: c's splice state, false if it was never spliced. */
EVN__HIDDEN bool evn__splice_info(const struct evn_conn *c, evn_id *to, evn_id *from,
                                  size_t *inpipe);

#endif
