/*
 * Internal interfaces shared between evn's source files. Nothing here is
 * part of the public API; symbols are named evn__* and are hidden in the
 * shared library.
 */
#ifndef EVN_INTERNAL_H
#define EVN_INTERNAL_H

#include "evn.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
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
};

/*
 * Parse an address URL. Returns 0, or -EINVAL with a message naming the bad
 * part written to err (always NUL-terminated when errlen > 0).
 */
EVN__HIDDEN int evn__url_parse(const char *url, struct evn__url *out, char *err, size_t errlen);

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

enum { EVN__H_CONN = 1, EVN__H_LISTENER, EVN__H_UDP, EVN__H_INBOX };

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
    int fd;                  /* shared socket, or loop 0's when reuseport */
    int *fds;                /* with reuseport: one socket per loop */
    int nfds;
    bool unlink_on_free;
};

/* A socket listening (TCP/unix) or bound (UDP) on one loop. */
struct evn__lsock {
    struct evn__handle h;
    int fd;
    struct evn__listener *l;
    struct evn_conn *udp; /* UDP: the pseudo-connection used for datagrams */
};

/* One piece of queued output. */
struct evn__chunk {
    struct evn__chunk *next;
    size_t off, len, cap;
    char data[];
};

enum {
    EVN__C_CLOSING = 1u << 0,   /* close once output drains */
    EVN__C_DETACHING = 1u << 1, /* detach once output drains */
    EVN__C_WANTW = 1u << 2,     /* waiting for writability */
    EVN__C_DIRTY = 1u << 3,     /* on the loop's flush list */
    EVN__C_UDP = 1u << 4,
    EVN__C_KEPT = 1u << 5, /* evn_keep was called in this data event */
    EVN__C_RDOFF = 1u << 6, /* read interest removed */
    EVN__C_WOKEN = 1u << 7  /* a wake is pending in this inbox batch */
};

struct evn_conn {
    struct evn__handle h;
    uint16_t flags;
    int fd;
    uint32_t seq;    /* low half of the id; matches the fd table entry */
    uint32_t listener;
    struct evn_loop *loop;
    void *udata;
    struct evn__chunk *out_head, *out_tail;
    size_t out_bytes;
    char *in;   /* kept input, heap, NULL when none */
    size_t in_len, in_cap;
    /* During a data event: the input handed to the callback. */
    size_t cur_len, keep;
    /* UDP only: the sender of the current datagram. */
    struct sockaddr_storage *peer;
    socklen_t peerlen;
};

/* A message for a loop from another thread. */
struct evn__msg {
    int type; /* EVN__M_WAKE or EVN__M_CONN */
    int fd;
    uint64_t arg; /* wake: the id; conn: the listener index */
};

enum { EVN__M_WAKE = 1, EVN__M_CONN };

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
    atomic_uint rr_next;
    atomic_uint rand_state;
    bool ran;
};

/* ---- shared between files ---- */

EVN__HIDDEN int evn__listener_open(struct evn__listener *l, const char *url, int nloops,
                                   char *err, size_t errlen);
EVN__HIDDEN void evn__listener_close(struct evn__listener *l);
EVN__HIDDEN int evn__set_nonblock(int fd, bool on);

EVN__HIDDEN int evn__loop_init(struct evn_loop *loop, struct evn_server *srv, int index);
EVN__HIDDEN void evn__loop_destroy(struct evn_loop *loop);
EVN__HIDDEN int evn__loop_run(struct evn_loop *loop);
EVN__HIDDEN int evn__loop_post(struct evn_loop *loop, const struct evn__msg *msg);
EVN__HIDDEN void evn__loop_signal(struct evn_loop *loop);
EVN__HIDDEN int evn__loop_track(struct evn_loop *loop, int fd, struct evn__handle *h);
EVN__HIDDEN int64_t evn__now_ms(void);

EVN__HIDDEN int evn__conn_open(struct evn_loop *loop, int fd, uint32_t listener);
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

/* Act on a callback's return value for connection c (may free c). */
EVN__HIDDEN bool evn__conn_act(struct evn_conn *c, evn_action a);

#endif
