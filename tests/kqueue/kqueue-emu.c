/*
 * kqueue(2) and kevent(2) on Linux, for evn's tests: with it linked in,
 * src/backend_kqueue.c runs here, against the behaviour the FreeBSD manual
 * page gives (tests/kqueue/sys/event.h has the declarations). It is a test
 * double, not a port: EVFILT_READ and EVFILT_WRITE on sockets, pipes and
 * other pollable descriptors, and EVFILT_USER; every change flag.
 *
 * The model. The page says a kevent's filter runs when the kevent is
 * registered, "whenever an event is passed to the filter", and again when
 * the application retrieves it, and that a kevent whose condition no longer
 * holds then is dropped, not returned. Here a kqueue is an epoll instance
 * used edge-triggered: an edge is "an event passed to the filter" and puts
 * the kevent on the kqueue's queue of active kevents; kevent() runs the
 * filter (poll, FIONREAD, ...) on each queued kevent as it retrieves it.
 * Returned without EV_CLEAR, a kevent stays queued, so it comes back for as
 * long as its condition holds; with EV_CLEAR it leaves the queue until the
 * next edge, so it is reported once per change. One epoll registration
 * serves a descriptor's read and write kevents, and an edge does not say
 * which side changed, so with EV_CLEAR an edge of one side also returns the
 * other's kevent again if its condition holds (a socket stays writable when
 * input arrives): once more than FreeBSD would, never less.
 *
 * What it cannot see is close(): the page says closing a descriptor removes
 * its kevents, and the kernel drops a closed file from an epoll set, but this
 * file's records of the descriptor stay. Each record keeps the identity of
 * the file it was made for (device and inode, which Linux gives every socket
 * and pipe its own of), and every use checks it: when the filter runs, and
 * when a change names the descriptor. A record whose descriptor is closed,
 * or now names another file, is dropped then, as close() would have dropped
 * it, so a reused descriptor number starts with no kevents. Each epoll
 * registration carries a generation number too, so an edge that was queued
 * for a file whose record is gone is ignored. Likewise a kqueue's own state
 * outlives close() of its descriptor, and is freed when kqueue() hands out
 * that number again.
 *
 * Where Linux cannot give what the page describes, the difference is stated
 * at the filter concerned; the largest: a socket's pending error is not put
 * in fflags with EV_EOF, because Linux reads it only by clearing it
 * (SO_ERROR), which would take it from the application's own recv() or
 * connect check. Regular files (the page's "vnodes") are refused with EINVAL.
 *
 * Threads: every kqueue has a mutex, held except while its thread sleeps in
 * epoll_wait, so one kqueue per thread (or several threads on one) is safe.
 *
 * Unlike the page's, a kqueue here is inherited by a child of fork() (until
 * it calls exec: the descriptor is close-on-exec). Closing the child's copies
 * would need to know which recorded kqueues are still open, and a number
 * freed by close() and reused for another file cannot be told from one that
 * is still a kqueue.
 */
#include <sys/event.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/sockios.h>

/* What a descriptor is decides how its filters are computed. */
enum { KQ_TCP = 1, KQ_STREAM, KQ_DGRAM, KQ_PIPE, KQ_OTHER };

/* The flags a kevent keeps from the change that added it. */
#define KQ_KEPT_FLAGS (EV_ONESHOT | EV_CLEAR | EV_DISPATCH | EV_RECEIPT)
/* epoll data of the process-wide wake-up descriptor (user triggers). */
#define KQ_WAKE_TAG UINT64_MAX
#define KQ_EPOLL_BATCH 64

struct kq_file;

/* What a descriptor names: its file's device and inode, and its type. */
struct kq_ident {
    uint64_t dev, ino;
    unsigned int mode;
};

/* One kevent: an (ident, filter) pair registered with a kqueue. */
struct kq_note {
    struct kq_note *prev, *next; /* the queue of active kevents, when queued */
    struct kq_note *user_next;   /* the kqueue's EVFILT_USER kevents */
    struct kq_file *file;        /* NULL for EVFILT_USER */
    uintptr_t ident;
    short filter;
    unsigned short flags; /* KQ_KEPT_FLAGS */
    unsigned int sfflags; /* from the change: NOTE_LOWAT, or the user's bits */
    int64_t sdata;        /* from the change: the low-water mark */
    void *udata;
    bool disabled;  /* EV_DISABLE, or EV_DISPATCH after a return */
    bool active;    /* its condition was seen to hold (it may be disabled) */
    bool queued;    /* on the queue */
    bool triggered; /* EVFILT_USER: NOTE_TRIGGER since the last EV_CLEAR */
    uint64_t scan;  /* the scan that queued it last */
};

/* One watched descriptor, with its read and write kevents. */
struct kq_file {
    int fd;
    int kind;
    uint32_t gen; /* in the epoll data, beside fd */
    struct kq_ident id;
    bool in_epoll;
    struct kq_note *rd, *wr;
};

struct kq {
    int epfd;           /* the kqueue's descriptor */
    struct kq_ident id; /* shared by every epoll instance: it tells only
                         * that the number no longer names one */
    pthread_mutex_t mu;
    struct kq_file **files; /* by descriptor */
    int nfiles;
    struct kq_note *users;
    struct kq_note queue; /* sentinel of the queue of active kevents */
    uint32_t next_gen;
    uint64_t scans;
    int waiters;      /* threads asleep in epoll_wait on it */
    bool wake_in_set; /* the wake-up descriptor is in its epoll set */
};

/* Every kqueue by its descriptor number. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kq **reg;
static int nreg;
/*
 * An eventfd, made once the process first adds an EVFILT_USER kevent and
 * kept until it exits: a trigger from another thread adds it (always
 * writable) to a sleeping kqueue's epoll set, which wakes it. Written under
 * reg_mu, read under a kqueue's mutex after that.
 */
static int wake_fd = -1;

/*
 * The identity of the file fd names, or -1 (closed). The number may be one
 * the application has closed, and another thread reused, since a record was
 * made for it: this look stands for the kernel's bookkeeping, not a use of
 * the descriptor by the program, so it is made with the raw system call,
 * which a race detector does not count as one.
 */
static int fd_ident(int fd, struct kq_ident *id)
{
    struct statx sx;
    if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO, &sx) < 0)
        return -1;
    id->dev = (uint64_t)sx.stx_dev_major << 32 | sx.stx_dev_minor;
    id->ino = sx.stx_ino;
    id->mode = sx.stx_mode;
    return 0;
}

static bool ident_eq(const struct kq_ident *a, const struct kq_ident *b)
{
    return a->dev == b->dev && a->ino == b->ino;
}

/* ---- the queue of active kevents ---- */

static void note_enqueue(struct kq *q, struct kq_note *kn)
{
    kn->prev = q->queue.prev;
    kn->next = &q->queue;
    q->queue.prev->next = kn;
    q->queue.prev = kn;
    kn->queued = true;
    kn->scan = q->scans;
}

static void note_dequeue(struct kq_note *kn)
{
    if (!kn->queued)
        return;
    kn->prev->next = kn->next;
    kn->next->prev = kn->prev;
    kn->prev = kn->next = NULL;
    kn->queued = false;
}

/* Its condition may hold: queue it to be looked at, unless disabled (then
 * EV_ENABLE queues it). */
static void note_activate(struct kq *q, struct kq_note *kn)
{
    kn->active = true;
    if (!kn->disabled && !kn->queued)
        note_enqueue(q, kn);
}

/* ---- watched descriptors ---- */

static uint64_t file_tag(const struct kq_file *f)
{
    return (uint64_t)f->gen << 32 | (uint32_t)f->fd;
}

/* Whether f's descriptor still names the file f was made for. */
static bool file_same(const struct kq_file *f)
{
    struct kq_ident id;
    return fd_ident(f->fd, &id) == 0 && ident_eq(&id, &f->id);
}

static int file_kind(int fd, const struct kq_ident *id)
{
    if (S_ISFIFO(id->mode))
        return KQ_PIPE;
    if (!S_ISSOCK(id->mode))
        return KQ_OTHER;
    int type = 0, domain = 0, proto = 0;
    socklen_t len = sizeof type;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
    len = sizeof domain;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    len = sizeof proto;
    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len);
    if (type == SOCK_DGRAM)
        return KQ_DGRAM;
    if (type == SOCK_STREAM && (domain == AF_INET || domain == AF_INET6) && proto == IPPROTO_TCP)
        return KQ_TCP;
    return KQ_STREAM;
}

/* Register f's current interest with epoll (edge-triggered: see the top). */
static int file_sync(struct kq *q, struct kq_file *f)
{
    struct epoll_event ev = {.events = EPOLLET, .data.u64 = file_tag(f)};
    if (f->rd)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (f->wr)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(q->epfd, f->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, f->fd, &ev) < 0)
        return errno;
    f->in_epoll = true;
    return 0;
}

static void file_free(struct kq *q, struct kq_file *f, bool unregister)
{
    struct kq_note *notes[2] = {f->rd, f->wr};
    for (int i = 0; i < 2; i++) {
        if (notes[i]) {
            note_dequeue(notes[i]);
            free(notes[i]);
        }
    }
    /* A stale record's descriptor is closed or names another file; the
     * kernel has dropped (or will drop) the old file from the set itself. */
    if (unregister && f->in_epoll)
        epoll_ctl(q->epfd, EPOLL_CTL_DEL, f->fd, NULL);
    q->files[f->fd] = NULL;
    free(f);
}

static struct kq_file *file_new(struct kq *q, int fd, const struct kq_ident *id, int *err)
{
    if (S_ISREG(id->mode) || S_ISDIR(id->mode)) {
        *err = EINVAL;
        return NULL;
    }
    if (fd >= q->nfiles) {
        int n = q->nfiles ? q->nfiles : 64;
        while (n <= fd)
            n *= 2;
        struct kq_file **nf = realloc(q->files, sizeof *nf * (size_t)n);
        if (!nf) {
            *err = ENOMEM;
            return NULL;
        }
        memset(nf + q->nfiles, 0, sizeof *nf * (size_t)(n - q->nfiles));
        q->files = nf;
        q->nfiles = n;
    }
    struct kq_file *f = calloc(1, sizeof *f);
    if (!f) {
        *err = ENOMEM;
        return NULL;
    }
    f->fd = fd;
    f->kind = file_kind(fd, id);
    f->gen = ++q->next_gen;
    f->id = *id;
    q->files[fd] = f;
    return f;
}

/* Remove one kevent; the descriptor's record goes with its last one. */
static void note_delete(struct kq *q, struct kq_note *kn)
{
    note_dequeue(kn);
    struct kq_file *f = kn->file;
    if (!f) {
        for (struct kq_note **p = &q->users; *p; p = &(*p)->user_next) {
            if (*p == kn) {
                *p = kn->user_next;
                break;
            }
        }
        free(kn);
        return;
    }
    if (f->rd == kn)
        f->rd = NULL;
    else
        f->wr = NULL;
    free(kn);
    if (!f->rd && !f->wr)
        file_free(q, f, true);
    else
        file_sync(q, f);
}

/* ---- the filters ---- */

static int64_t ioctl_int(int fd, unsigned long req, bool *ok)
{
    int v = 0;
    *ok = ioctl(fd, req, &v) == 0;
    return *ok ? v : 0;
}

/* The room left in a socket's send buffer. Linux counts SO_SNDBUF doubled
 * (bookkeeping included), so this is larger than FreeBSD's figure. */
static int64_t sock_space(int fd)
{
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    bool ok;
    getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
    int64_t used = ioctl_int(fd, SIOCOUTQ, &ok);
    return sndbuf > used ? sndbuf - used : 0;
}

/* Whether our side of a TCP connection can send no more: shut down for
 * writing (FIN sent) or closed, as FreeBSD's "cannot send more" state is. */
static bool tcp_cantsend(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return false;
    switch (ti.tcpi_state) {
    case TCP_FIN_WAIT1:
    case TCP_FIN_WAIT2:
    case TCP_CLOSING:
    case TCP_TIME_WAIT:
    case TCP_LAST_ACK:
    case TCP_CLOSE:
        return true;
    default:
        return false;
    }
}

/* The connections waiting on a listening socket: the accept queue's length
 * for TCP; for a unix socket Linux has no cheap count, so 1 when ready. */
static int64_t listen_backlog(const struct kq_file *f, short revents)
{
    if (f->kind == KQ_TCP) {
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        if (getsockopt(f->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_unacked > 0)
            return ti.tcpi_unacked;
    }
    return (revents & POLLIN) ? 1 : 0;
}

/*
 * EVFILT_READ: sockets return when there are at least the low-water mark's
 * bytes (NOTE_LOWAT, else 1; SO_RCVLOWAT is not read), with data the bytes
 * waiting; listening sockets when a connection waits, with data the count;
 * EV_EOF once the read direction is shut down (for a pipe: once the last
 * writer is gone), also with data still waiting. A datagram socket's data is
 * what Linux's FIONREAD gives: the size of the first datagram.
 */
static bool filter_read(const struct kq_note *kn, short revents, struct kevent *out)
{
    const struct kq_file *f = kn->file;
    bool ok;
    int64_t lowat = (kn->sfflags & NOTE_LOWAT) && kn->sdata > 0 ? kn->sdata : 1;
    int64_t n = ioctl_int(f->fd, FIONREAD, &ok);
    bool eof, ready;
    switch (f->kind) {
    case KQ_TCP:
    case KQ_STREAM:
        if (!ok && errno == EINVAL) {
            out->data = listen_backlog(f, revents);
            return out->data > 0;
        }
        eof = revents & (POLLRDHUP | POLLHUP);
        ready = n >= lowat || eof || (revents & POLLERR);
        break;
    case KQ_DGRAM:
        /* An empty datagram is input too. */
        eof = revents & (POLLRDHUP | POLLHUP);
        ready = (revents & (POLLIN | POLLERR)) || eof;
        break;
    case KQ_PIPE:
        eof = revents & POLLHUP;
        ready = n >= lowat || eof;
        break;
    default:
        eof = revents & POLLHUP;
        ready = revents & (POLLIN | POLLHUP | POLLERR);
        if (!ok)
            n = ready ? 1 : 0;
        break;
    }
    out->data = n;
    if (eof)
        out->flags |= EV_EOF;
    return ready;
}

/*
 * EVFILT_WRITE: returns when the descriptor can take output, with data the
 * room left; EV_EOF when the reader is gone (the peer reset, or closed its
 * end of a pipe), and for TCP also once this side can send no more. For a
 * unix socket shut down for writing by this side, Linux shows nothing until
 * the peer closes too.
 */
static bool filter_write(const struct kq_note *kn, short revents, struct kevent *out)
{
    const struct kq_file *f = kn->file;
    bool eof = revents & POLLHUP, ok;
    switch (f->kind) {
    case KQ_TCP:
        if (!eof && (revents & POLLOUT))
            eof = tcp_cantsend(f->fd);
        /* fall through */
    case KQ_STREAM:
    case KQ_DGRAM:
        out->data = sock_space(f->fd);
        break;
    case KQ_PIPE: {
        eof = revents & POLLERR;
        int size = fcntl(f->fd, F_GETPIPE_SZ);
        int64_t used = ioctl_int(f->fd, FIONREAD, &ok);
        out->data = size > used ? size - used : 0;
        break;
    }
    default:
        out->data = (revents & POLLOUT) ? 1 : 0;
        break;
    }
    if (eof)
        out->flags |= EV_EOF;
    return eof || (revents & (POLLOUT | POLLERR));
}

enum { KQ_FALSE, KQ_TRUE, KQ_GONE };

/* Run kn's filter and fill in *out: KQ_TRUE, KQ_FALSE, or KQ_GONE when its
 * descriptor was closed (kn and its record are freed then). */
static int note_run(struct kq *q, struct kq_note *kn, struct kevent *out)
{
    memset(out, 0, sizeof *out);
    out->ident = kn->ident;
    out->filter = kn->filter;
    out->flags = kn->flags;
    out->udata = kn->udata;
    if (kn->filter == EVFILT_USER) {
        out->fflags = kn->sfflags & NOTE_FFLAGSMASK;
        out->data = kn->sdata;
        return kn->triggered ? KQ_TRUE : KQ_FALSE;
    }
    struct kq_file *f = kn->file;
    if (!file_same(f)) {
        file_free(q, f, false);
        return KQ_GONE;
    }
    struct pollfd p = {.fd = f->fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    if (poll(&p, 1, 0) < 0)
        p.revents = 0;
    bool on = kn->filter == EVFILT_READ ? filter_read(kn, p.revents, out)
                                        : filter_write(kn, p.revents, out);
    return on ? KQ_TRUE : KQ_FALSE;
}

/* ---- changes ---- */

static void user_fflags(struct kq_note *kn, unsigned int fflags)
{
    unsigned int bits = fflags & NOTE_FFLAGSMASK;
    switch (fflags & NOTE_FFCTRLMASK) {
    case NOTE_FFAND:
        kn->sfflags &= bits;
        break;
    case NOTE_FFOR:
        kn->sfflags |= bits;
        break;
    case NOTE_FFCOPY:
        kn->sfflags = bits;
        break;
    default:
        break;
    }
}

/* Wake the threads asleep on q, to look at a kevent triggered here. */
static void kq_poke(struct kq *q)
{
    if (q->waiters == 0 || wake_fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.u64 = KQ_WAKE_TAG};
    /* Each ADD or MOD reports the always-writable eventfd once more. */
    if (epoll_ctl(q->epfd, q->wake_in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, wake_fd, &ev) == 0)
        q->wake_in_set = true;
}

static int wake_fd_open(void)
{
    pthread_mutex_lock(&reg_mu);
    if (wake_fd < 0)
        wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int rc = wake_fd < 0 ? errno : 0;
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

static int change_user(struct kq *q, const struct kevent *kev)
{
    struct kq_note *kn = q->users;
    while (kn && kn->ident != kev->ident)
        kn = kn->user_next;
    if (kev->flags & EV_DELETE) {
        if (!kn)
            return ENOENT;
        note_delete(q, kn);
        return 0;
    }
    if (!kn) {
        if (!(kev->flags & EV_ADD))
            return ENOENT;
        int rc = wake_fd_open();
        if (rc)
            return rc;
        if (!(kn = calloc(1, sizeof *kn)))
            return ENOMEM;
        kn->ident = kev->ident;
        kn->filter = EVFILT_USER;
        kn->flags = kev->flags & KQ_KEPT_FLAGS;
        kn->user_next = q->users;
        q->users = kn;
    }
    if (kev->flags & EV_ADD)
        kn->udata = kev->udata;
    user_fflags(kn, kev->fflags);
    if (kev->flags & EV_DISABLE)
        kn->disabled = true;
    else if (kev->flags & (EV_ENABLE | EV_ADD))
        kn->disabled = false;
    if (kev->fflags & NOTE_TRIGGER)
        kn->triggered = true;
    if (kn->triggered)
        note_activate(q, kn);
    if (kn->queued)
        kq_poke(q);
    return 0;
}

static int change_fd(struct kq *q, const struct kevent *kev)
{
    if (kev->ident > INT_MAX)
        return EBADF;
    int fd = (int)kev->ident;
    struct kq_ident id;
    if (fd_ident(fd, &id) < 0)
        return EBADF;
    struct kq_file *f = fd < q->nfiles ? q->files[fd] : NULL;
    /* The descriptor was closed since: its kevents went with it. */
    if (f && !ident_eq(&f->id, &id)) {
        file_free(q, f, false);
        f = NULL;
    }
    struct kq_note **slot = f ? (kev->filter == EVFILT_READ ? &f->rd : &f->wr) : NULL;
    struct kq_note *kn = slot ? *slot : NULL;
    if (kev->flags & EV_DELETE) {
        if (!kn)
            return ENOENT;
        note_delete(q, kn);
        return 0;
    }
    if (!kn) {
        if (!(kev->flags & EV_ADD))
            return ENOENT;
        int rc = 0;
        if (!f && !(f = file_new(q, fd, &id, &rc)))
            return rc;
        if (!(kn = calloc(1, sizeof *kn))) {
            if (!f->rd && !f->wr)
                file_free(q, f, true);
            return ENOMEM;
        }
        kn->file = f;
        kn->ident = kev->ident;
        kn->filter = kev->filter;
        kn->flags = kev->flags & KQ_KEPT_FLAGS;
        *(kev->filter == EVFILT_READ ? &f->rd : &f->wr) = kn;
        if ((rc = file_sync(q, f)) != 0) {
            note_delete(q, kn);
            return rc == EPERM ? EINVAL : rc;
        }
    }
    if (kev->flags & EV_ADD) {
        kn->sfflags = kev->fflags;
        kn->sdata = kev->data;
        kn->udata = kev->udata;
    }
    if (kev->flags & EV_DISABLE)
        kn->disabled = true;
    else if (kev->flags & (EV_ENABLE | EV_ADD))
        kn->disabled = false;
    /* Adding runs the filter for a condition that already holds; enabling
     * returns one that was seen while disabled. */
    if ((kev->flags & EV_ADD) || ((kev->flags & EV_ENABLE) && kn->active))
        note_activate(q, kn);
    return 0;
}

static int change_apply(struct kq *q, const struct kevent *kev)
{
    switch (kev->filter) {
    case EVFILT_READ:
    case EVFILT_WRITE:
        return change_fd(q, kev);
    case EVFILT_USER:
        return change_user(q, kev);
    default:
        return EINVAL;
    }
}

/* ---- retrieving events ---- */

/*
 * Queue the kevents of the files epoll reported edges for: every read
 * kevent first, then every write kevent. The page promises no order, and
 * this one keeps the two events of one descriptor apart, with others
 * between them, as a caller must expect they may be.
 */
static void take_edges(struct kq *q, const struct epoll_event *ev, int n)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u64 == KQ_WAKE_TAG)
                continue;
            int fd = (int)(uint32_t)ev[i].data.u64;
            uint32_t gen = (uint32_t)(ev[i].data.u64 >> 32);
            struct kq_file *f = fd < q->nfiles ? q->files[fd] : NULL;
            if (!f || f->gen != gen)
                continue;
            uint32_t e = ev[i].events;
            if (pass == 0 && f->rd && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                note_activate(q, f->rd);
            if (pass == 1 && f->wr && (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
                note_activate(q, f->wr);
        }
    }
}

/* Take the edges epoll holds now, without waiting. */
static int drain_edges(struct kq *q)
{
    struct epoll_event ev[KQ_EPOLL_BATCH];
    int n;
    do {
        n = epoll_wait(q->epfd, ev, KQ_EPOLL_BATCH, 0);
        if (n < 0)
            return errno == EINTR ? 0 : errno;
        take_edges(q, ev, n);
    } while (n == KQ_EPOLL_BATCH);
    return 0;
}

/*
 * Run the filter of each queued kevent once, in queue order, and return
 * those that hold, up to nevents. One returned without EV_CLEAR goes to the
 * back of the queue and is looked at again by the next call, not this one.
 */
static int scan(struct kq *q, struct kevent *events, int nevents)
{
    int n = 0;
    uint64_t id = ++q->scans;
    while (n < nevents && q->queue.next != &q->queue && q->queue.next->scan != id) {
        struct kq_note *kn = q->queue.next;
        note_dequeue(kn);
        /* Disabled while queued: it stays active, for EV_ENABLE. */
        if (kn->disabled)
            continue;
        int r = note_run(q, kn, &events[n]);
        if (r == KQ_GONE)
            continue;
        if (r == KQ_FALSE) {
            kn->active = false;
            continue;
        }
        n++;
        if (kn->flags & EV_ONESHOT) {
            note_delete(q, kn);
            continue;
        }
        if (kn->flags & EV_DISPATCH)
            kn->disabled = true;
        if (kn->flags & EV_CLEAR) {
            kn->active = false;
            if (kn->filter == EVFILT_USER) {
                kn->triggered = false;
                kn->sfflags = 0;
                kn->sdata = 0;
            }
            continue;
        }
        if (!kn->disabled)
            note_enqueue(q, kn);
    }
    return n;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds epoll_wait may sleep until deadline (-1: none), rounded up
 * so that kevent never returns 0 before the time has run out. */
static int wait_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* ---- the kqueue descriptors ---- */

static void kq_free(struct kq *q)
{
    /* Its last user (maybe another thread) released the mutex: taking it
     * orders this after that. */
    pthread_mutex_lock(&q->mu);
    pthread_mutex_unlock(&q->mu);
    if (q->files) {
        for (int fd = 0; fd < q->nfiles; fd++) {
            if (q->files[fd])
                file_free(q, q->files[fd], false);
        }
    }
    while (q->users)
        note_delete(q, q->users);
    pthread_mutex_destroy(&q->mu);
    free(q->files);
    free(q);
}

int kqueue(void)
{
    struct kq *q = calloc(1, sizeof *q);
    if (!q) {
        errno = ENOMEM;
        return -1;
    }
    q->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (q->epfd < 0) {
        int e = errno;
        free(q);
        errno = e;
        return -1;
    }
    fd_ident(q->epfd, &q->id);
    pthread_mutex_init(&q->mu, NULL);
    q->queue.next = q->queue.prev = &q->queue;
    int fd = q->epfd;
    struct kq *stale = NULL;
    pthread_mutex_lock(&reg_mu);
    if (fd >= nreg) {
        int n = nreg ? nreg : 64;
        while (n <= fd)
            n *= 2;
        struct kq **nr = realloc(reg, sizeof *nr * (size_t)n);
        if (!nr) {
            pthread_mutex_unlock(&reg_mu);
            close(fd);
            pthread_mutex_destroy(&q->mu);
            free(q);
            errno = ENOMEM;
            return -1;
        }
        memset(nr + nreg, 0, sizeof *nr * (size_t)(n - nreg));
        reg = nr;
        nreg = n;
    }
    /* The number is ours, so the kqueue that had it was closed. */
    stale = reg[fd];
    reg[fd] = q;
    pthread_mutex_unlock(&reg_mu);
    if (stale)
        kq_free(stale);
    return fd;
}

static struct kq *kq_find(int fd)
{
    pthread_mutex_lock(&reg_mu);
    struct kq *q = fd >= 0 && fd < nreg ? reg[fd] : NULL;
    pthread_mutex_unlock(&reg_mu);
    return q;
}

/* Apply the changes; failures (and every change with EV_RECEIPT) become
 * EV_ERROR entries while there is room. Returns the entries made, or -1
 * with errno for a failure with no room left. */
static int apply_changes(struct kq *q, const struct kevent *changes, int nchanges,
                         struct kevent *events, int nevents)
{
    int nout = 0;
    for (int i = 0; i < nchanges; i++) {
        /* A copy: the page lets changelist and eventlist be one array. */
        struct kevent kev = changes[i];
        int err = change_apply(q, &kev);
        if (!err && !(kev.flags & EV_RECEIPT))
            continue;
        if (nout == nevents) {
            if (err) {
                errno = err;
                return -1;
            }
            continue;
        }
        kev.flags = EV_ERROR;
        kev.data = err;
        events[nout++] = kev;
    }
    return nout;
}

int kevent(int kqfd, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout)
{
    if (nchanges < 0 || nevents < 0 ||
        (timeout &&
         (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L))) {
        errno = EINVAL;
        return -1;
    }
    if ((nchanges > 0 && !changelist) || (nevents > 0 && !eventlist)) {
        errno = EFAULT;
        return -1;
    }
    int64_t deadline = -1;
    if (timeout) {
        int64_t ns = timeout->tv_sec > INT64_MAX / 1000000000 - 1
                         ? INT64_MAX / 2
                         : (int64_t)timeout->tv_sec * 1000000000 + timeout->tv_nsec;
        deadline = now_ns() + ns;
    }
    struct kq *q = kq_find(kqfd);
    struct kq_ident id;
    /* Closed, or the number now names a file that is not a kqueue. */
    if (!q || fd_ident(kqfd, &id) < 0 || !ident_eq(&id, &q->id)) {
        errno = EBADF;
        return -1;
    }
    pthread_mutex_lock(&q->mu);
    int n = apply_changes(q, changelist, nchanges, eventlist, nevents);
    /* Change errors are returned alone; with no room for events, there is
     * nothing to wait for. */
    if (n != 0 || nevents == 0) {
        int e = errno;
        pthread_mutex_unlock(&q->mu);
        errno = e;
        return n;
    }
    int err = 0;
    bool drain = true;
    for (;;) {
        if (drain && (err = drain_edges(q)) != 0)
            break;
        if ((n = scan(q, eventlist, nevents)) > 0)
            break;
        int ms = wait_ms(deadline);
        if (ms == 0)
            break;
        struct epoll_event ev[KQ_EPOLL_BATCH];
        q->waiters++;
        pthread_mutex_unlock(&q->mu);
        int k = epoll_wait(q->epfd, ev, KQ_EPOLL_BATCH, ms);
        err = k < 0 ? errno : 0;
        pthread_mutex_lock(&q->mu);
        q->waiters--;
        if (k < 0)
            break;
        take_edges(q, ev, k);
        /* A full batch may have left edges behind. */
        drain = k == KQ_EPOLL_BATCH;
    }
    pthread_mutex_unlock(&q->mu);
    if (err) {
        errno = err == EINVAL ? EBADF : err;
        return -1;
    }
    return n;
}
