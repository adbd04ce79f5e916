/*
 * The io_uring backend (Linux): a completion backend. The kernel does the
 * I/O of plain connections itself: it accepts, receives into buffers it
 * picks from a ring of them the loop provides, sends and closes, and each
 * loop turn costs one io_uring_enter, which submits what the turn asked
 * for and waits for what it brought. Whatever reads or writes its socket
 * itself (TLS, splicing, file regions when the socket is full, UDP, the
 * inbox, signals) is served readiness as a poller would: a one-shot poll,
 * armed again after each event while it is wanted, which keeps the level
 * triggering the rest of evn expects.
 *
 * One ring per loop, set up by evn_server_new disabled and enabled on the
 * loop's own thread, which is then the only one to use it
 * (IORING_SETUP_SINGLE_ISSUER); the kernel runs completions only when that
 * thread enters the ring (IORING_SETUP_DEFER_TASKRUN), so nothing is
 * received between a turn deciding to stop reading a socket and the
 * cancellation that turn submits.
 *
 * An operation's user_data is its handle's address with the operation in
 * the low bits (handles are 8-aligned). Each operation in flight, and each
 * event handed to the loop until the next wait, holds a reference to its
 * handle (io->refs): a closed handle's memory is released (EVN__RELEASED)
 * only when nothing refers to it.
 */
#include "internal.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { OP_POLL = 1, OP_RECV, OP_SEND, OP_ACCEPT, OP_NONE };

/* io_uring_params.features: a wait may ask for a minimum time to collect
 * completions (Linux 6.12; newer than liburing 2.3's header). */
#define FEAT_MIN_TIMEOUT (1u << 15)
/* An accept that polls before it tries (IORING_ACCEPT_POLL_FIRST, in the
 * entry's ioprio) came with Linux 6.10, as did this feature bit, which
 * tells the two kernels apart. Trying first would make the kernel set up
 * a socket and a file for each armed accept, only to free them when no
 * connection waits, which is the common case once it is armed again. */
#define FEAT_RECVSEND_BUNDLE (1u << 14)
#define ACCEPT_POLL_FIRST (1u << 2)
#define OP_MASK 7ull

/* io->bstate */
enum {
    ST_POLL = 1,         /* a poll is armed, for the mask in the high half of bmask */
    ST_RECV = 2,         /* a receive is armed */
    ST_RECV_WANT = 4,    /* ... and wanted: armed again when it ends */
    ST_SEND = 8,         /* a send is in flight */
    ST_ACCEPT_WANT = 16, /* accepting */
    ST_CLOSED = 32       /* closed: nothing is reported but EVN__RELEASED */
};

/*
 * io->bmask: the readiness wanted (bits 0-1) and armed (bits 4-5); for a
 * receive, how many completions this batch brought (bits 2-3, up to
 * RECV_PER_TURN) and whether it was stopped for the turn (bit 6).
 */
#define BM_RECVS 0x0c
#define BM_RECV_ONE 0x04
#define BM_THROTTLED 0x40
/*
 * A multishot receive goes on receiving as long as data comes: one that
 * brought RECV_PER_TURN completions in a batch is cancelled, and armed again
 * when the cancel ends, so that a connection flooding data gets a share of
 * a turn like any other (a readiness backend reads once per connection a
 * turn), not every buffer of the ring.
 */
#define RECV_PER_TURN 3

/* Sizes: the queues, the provided buffers, the accepts kept armed per
 * listening socket, and the sendmsg headers a turn may prepare. */
#define SQ_ENTRIES 4096
#define CQ_ENTRIES (8 * SQ_ENTRIES)
#define BUF_COUNT 256
#define BUF_SIZE (16 * 1024)
#define BUF_GROUP 0
#define ACCEPTS 8
#define MSGS 256

_Static_assert(BUF_COUNT <= 32768 && (BUF_COUNT & (BUF_COUNT - 1)) == 0,
               "a buffer ring is a power of two of at most 32768 entries");
_Static_assert(EVN__FIRED_MIN <= CQ_ENTRIES, "a batch fits the completion queue");

/* One armed accept: the handle it accepts for, and where the kernel writes
 * the peer's address. */
struct accept_slot {
    struct evn__io *io;
    struct evn__peer peer;
};

/* A listening handle's accepts. */
struct acceptor {
    struct acceptor *next;
    struct evn__io *io;
    struct accept_slot slots[ACCEPTS];
    int armed;
};

/* A sendmsg's header and pieces, stable until the submission that takes it. */
struct msg {
    struct msghdr mh;
    struct iovec iov[EVN__IOV_MAX];
};

struct ur {
    struct io_uring ring;
    bool enabled;
    struct io_uring_buf_ring *br;
    char *bufs;
    size_t map_len;
    struct acceptor *acceptors;
    struct msg *msgs;
    int nmsgs;
    /* Events of the last wait (loop->fired[0..n)), still holding their
     * references and buffers, and the accepted peers' addresses, by event. */
    int n;
    struct evn__peer peers[EVN__FIRED_MIN];
    /* Receives that ended for want of a buffer (and were armed again). */
    long nobufs;
    /* evn_events.batch_us where the kernel has IORING_FEAT_MIN_TIMEOUT,
     * else 0; and the ring's registered index, or -1. */
    unsigned batch_us;
    int reg_fd;
    /* ACCEPT_POLL_FIRST where the kernel has it, else 0. */
    uint16_t accept_flags;
};

/* ---- whether io_uring works here ---- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int probe_rc;
static char probe_why[200];

static unsigned setup_flags(void)
{
    return IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
           IORING_SETUP_R_DISABLED | IORING_SETUP_SUBMIT_ALL;
}

static void probe(void)
{
    struct io_uring ring;
    struct io_uring_params p = {.flags = setup_flags(), .cq_entries = CQ_ENTRIES};
    int rc = io_uring_queue_init_params(8, &ring, &p);
    if (rc < 0) {
        probe_rc = rc;
        snprintf(probe_why, sizeof probe_why, "io_uring_setup: %s%s", evn_strerror(rc),
                 rc == -EPERM    ? " (kernel.io_uring_disabled, or a seccomp filter?)"
                 : rc == -ENOSYS ? " (a kernel without io_uring, or a seccomp filter)"
                 : rc == -EINVAL ? " (a kernel older than 6.1)"
                                 : "");
        return;
    }
    struct io_uring_probe *pr = io_uring_get_probe_ring(&ring);
    if (!pr || !(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_EXT_ARG) ||
        !io_uring_opcode_supported(pr, IORING_OP_RECV) ||
        !io_uring_opcode_supported(pr, IORING_OP_SENDMSG) ||
        !io_uring_opcode_supported(pr, IORING_OP_ACCEPT) ||
        !io_uring_opcode_supported(pr, IORING_OP_POLL_ADD) ||
        !io_uring_opcode_supported(pr, IORING_OP_ASYNC_CANCEL) ||
        !io_uring_opcode_supported(pr, IORING_OP_CLOSE)) {
        probe_rc = -ENOTSUP;
        snprintf(probe_why, sizeof probe_why, "io_uring lacks an operation or feature evn needs");
    }
    if (pr)
        io_uring_free_probe(pr);
    io_uring_queue_exit(&ring);
}

/*
 * Rings are made (and the probe's torn down) on a thread of their own,
 * which ends at once. The kernel, tearing a ring down later, interrupts
 * each thread that made or used it, once (a signal-like task work), which
 * a socket call with a timeout on that thread sees as EINTR: the thread
 * that calls evn_server_new is spared that. (The loops' own threads are
 * not; see evn.h on io_uring.)
 */
struct maker {
    struct io_uring *ring;
    unsigned entries;
    struct io_uring_params *p;
    void (*fn)(void);
    int rc;
};

static void *maker_run(void *arg)
{
    struct maker *m = arg;
    if (m->fn)
        m->fn();
    else
        m->rc = io_uring_queue_init_params(m->entries, m->ring, m->p);
    return NULL;
}

static int on_own_thread(struct maker *m)
{
    pthread_t t;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&t, NULL, maker_run, m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0)
        return -e;
    pthread_join(t, NULL);
    return 0;
}

static void probe_on_own_thread(void)
{
    struct maker m = {.fn = probe};
    if ((m.rc = on_own_thread(&m)) < 0) {
        probe_rc = m.rc;
        snprintf(probe_why, sizeof probe_why, "cannot start a thread: %s", evn_strerror(m.rc));
    }
}

int evn__uring_probe(bool say)
{
    pthread_once(&probe_once, probe_on_own_thread);
    if (probe_rc < 0 && say)
        evn__set_errmsg("backend 'io_uring' is not available: %s", probe_why);
    return probe_rc;
}

/* ---- set-up ---- */

static void ur_destroy(struct evn_loop *loop)
{
    struct ur *u = loop->bdata;
    if (!u)
        return;
    io_uring_queue_exit(&u->ring);
    if (u->bufs)
        munmap(u->br, u->map_len);
    while (u->acceptors) {
        struct acceptor *a = u->acceptors;
        u->acceptors = a->next;
        evn__free(a);
    }
    evn__free(u->msgs);
    evn__free(u);
    loop->bdata = NULL;
}

/* The provided buffers: a ring of BUF_COUNT entries, then the buffers, in
 * one mapping (the ring must be page aligned). */
static int setup_buffers(struct ur *u)
{
    size_t ring_len = BUF_COUNT * sizeof(struct io_uring_buf);
    ring_len = (ring_len + 4095) & ~(size_t)4095;
    u->map_len = ring_len + (size_t)BUF_COUNT * BUF_SIZE;
    void *m = mmap(NULL, u->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -errno;
    u->br = m;
    u->bufs = (char *)m + ring_len;
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)u->br, .ring_entries = BUF_COUNT, .bgid = BUF_GROUP};
    int rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0) {
        munmap(m, u->map_len);
        u->bufs = NULL;
        return rc;
    }
    for (unsigned i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BUF_COUNT), (int)i);
    io_uring_buf_ring_advance(u->br, BUF_COUNT);
    return 0;
}

static int ur_init(struct evn_loop *loop)
{
    int rc = evn__uring_probe(true);
    if (rc < 0)
        return rc;
    struct ur *u = evn__calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    u->msgs = evn__malloc(sizeof *u->msgs * MSGS);
    struct io_uring_params p = {.flags = setup_flags(), .cq_entries = CQ_ENTRIES};
    struct maker m = {.ring = &u->ring, .entries = SQ_ENTRIES, .p = &p};
    rc = !u->msgs ? -ENOMEM : on_own_thread(&m) < 0 ? -EAGAIN : m.rc;
    if (rc < 0) {
        evn__free(u->msgs);
        evn__free(u);
        return rc;
    }
    loop->bdata = u;
    u->reg_fd = -1;
    if (p.features & FEAT_MIN_TIMEOUT)
        u->batch_us = loop->srv->ev.batch_us;
    if (p.features & FEAT_RECVSEND_BUNDLE)
        u->accept_flags = ACCEPT_POLL_FIRST;
    if ((rc = setup_buffers(u)) < 0) {
        ur_destroy(loop);
        return rc;
    }
    return 0;
}

/* ---- the kernel directly ---- */

/*
 * What Debian's liburing 2.3 declares but does not export, called as the
 * kernel defines it (io_uring_register(2)). Every raw call is here.
 */
static int raw_enable_rings(struct io_uring *ring)
{
    long rc = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return rc < 0 ? -errno : 0;
}

/*
 * Submit what is queued and wait until a completion comes (or ts, if not
 * NULL, passes), then collect more for up to us microseconds unless `many`
 * have come by then: the kernel's minimum wait (Linux 6.12,
 * IORING_FEAT_MIN_TIMEOUT), which liburing 2.3 cannot ask for. Its
 * io_uring_getevents_arg names the field `pad`; the kernel reads it as
 * min_wait_usec. Returns what io_uring_enter(2) returns, as -errno.
 */
static int raw_submit_and_wait_min(struct ur *u, struct __kernel_timespec *ts, unsigned us,
                                   unsigned many)
{
    /* The entries queued become the kernel's: the tail it reads, stored
     * after them. */
    struct io_uring_sq *sq = &u->ring.sq;
    unsigned tail = sq->sqe_tail;
    sq->sqe_head = tail;
    __atomic_store_n(sq->ktail, tail, __ATOMIC_RELEASE);
    unsigned n = tail - __atomic_load_n(sq->khead, __ATOMIC_ACQUIRE);
    struct io_uring_getevents_arg arg = {
        .sigmask_sz = _NSIG / 8, .pad = us, .ts = (uint64_t)(uintptr_t)ts};
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    int fd = u->ring.ring_fd;
    if (u->reg_fd >= 0) {
        fd = u->reg_fd;
        flags |= IORING_ENTER_REGISTERED_RING;
    }
    long rc = syscall(__NR_io_uring_enter, fd, n, many, flags, &arg, sizeof arg);
    return rc < 0 ? -errno : (int)rc;
}

/* ---- submission ---- */

/* The loop's thread takes the ring over: from now on it alone submits. */
static int enable(struct ur *u)
{
    if (u->enabled)
        return 0;
    int rc = raw_enable_rings(&u->ring);
    if (rc < 0)
        return rc;
    u->enabled = true;
    /* The ring's descriptor, registered, saves a lookup on every enter;
     * without it, the enters work as well. */
    if (io_uring_register_ring_fd(&u->ring) == 1)
        u->reg_fd = (int)u->ring.enter_ring_fd;
    return 0;
}

/* Submit what is queued before the turn's wait, which frees the sendmsg
 * headers (the kernel has taken them): 0 or -errno. */
static int submit(struct ur *u)
{
    int rc = enable(u);
    if (rc < 0)
        return rc;
    io_uring_submit(&u->ring);
    u->nmsgs = 0;
    return 0;
}

/* A free submission entry, submitting what is queued if there is none. */
static struct io_uring_sqe *sqe_get(struct ur *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe && submit(u) == 0)
        sqe = io_uring_get_sqe(&u->ring);
    return sqe;
}

static uint64_t tag(const void *p, int op)
{
    return (uint64_t)(uintptr_t)p | (uint64_t)op;
}

/* A request whose completion is of no interest (a cancel, a close). */
static struct io_uring_sqe *sqe_quiet(struct ur *u)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe) {
        io_uring_sqe_set_data64(sqe, OP_NONE);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    return sqe;
}

static void cancel(struct ur *u, struct evn__io *io, int op)
{
    struct io_uring_sqe *sqe = sqe_quiet(u);
    if (sqe)
        io_uring_prep_cancel64(sqe, tag(io, op), IORING_ASYNC_CANCEL_ALL);
}

/* ---- readiness ---- */

static unsigned poll_events(int mask)
{
    return (mask & EVN__READ ? POLLIN : 0) | (mask & EVN__WRITE ? POLLOUT : 0);
}

#define BM_RECV_BITS (BM_RECVS | BM_THROTTLED)

static int wanted(const struct evn__io *io)
{
    return io->bmask & 3;
}

static int armed(const struct evn__io *io)
{
    return (io->bmask >> 4) & 3;
}

/* Set the readiness wanted and armed, keeping the receive's bits. */
static void set_masks(struct evn__io *io, int want, int arm)
{
    io->bmask = (uint8_t)((io->bmask & BM_RECV_BITS) | want | arm << 4);
}

static int arm_poll(struct ur *u, struct evn__io *io)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_add(sqe, io->fd, poll_events(wanted(io)));
    io_uring_sqe_set_data64(sqe, tag(io, OP_POLL));
    io->bstate |= ST_POLL;
    set_masks(io, wanted(io), wanted(io));
    io->refs++;
    return 0;
}

static int ur_add(struct evn_loop *loop, struct evn__io *io, int mask)
{
    struct ur *u = loop->bdata;
    set_masks(io, mask, armed(io));
    io->bstate &= (uint8_t)~ST_CLOSED;
    if (io->bstate & ST_POLL) {
        /* Armed for less than is wanted now: widen it. */
        if (mask & ~armed(io)) {
            struct io_uring_sqe *sqe = sqe_quiet(u);
            if (!sqe)
                return -EBUSY;
            /* (The new user_data must be 0 unless it is updated too.) */
            io_uring_prep_poll_update(sqe, tag(io, OP_POLL), 0, poll_events(mask),
                                      IORING_POLL_UPDATE_EVENTS);
            set_masks(io, mask, mask);
        }
        return 0;
    }
    return arm_poll(u, io);
}

static int ur_mod(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask)
{
    return ur_add(loop, io, newmask);
}

static int ur_del(struct evn_loop *loop, struct evn__io *io, int oldmask, bool closing)
{
    struct ur *u = loop->bdata;
    set_masks(io, 0, armed(io));
    if (io->bstate & ST_POLL) {
        struct io_uring_sqe *sqe = sqe_quiet(u);
        if (sqe)
            io_uring_prep_poll_remove(sqe, tag(io, OP_POLL));
    }
    return 0;
}

/* ---- completion I/O ---- */

static void arm_recv(struct ur *u, struct evn__io *io)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return;
    io_uring_prep_recv_multishot(sqe, io->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, tag(io, OP_RECV));
    io->bstate |= ST_RECV;
    io->refs++;
}

static void ur_recv(struct evn_loop *loop, struct evn__io *io, bool on)
{
    struct ur *u = loop->bdata;
    if (on) {
        io->bstate |= ST_RECV_WANT;
        if (!(io->bstate & ST_RECV))
            arm_recv(u, io);
    } else {
        io->bstate &= (uint8_t)~ST_RECV_WANT;
        if (io->bstate & ST_RECV)
            cancel(u, io, OP_RECV);
    }
}

static int ur_send(struct evn_loop *loop, struct evn__io *io, const struct iovec *iov, int n)
{
    struct ur *u = loop->bdata;
    if (n > 1 && u->nmsgs == MSGS) {
        /* The headers of this turn's sendmsgs are all in use: submit them. */
        if (submit(u) < 0)
            return -EBUSY;
    }
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return -EBUSY;
    if (n == 1) {
        io_uring_prep_send(sqe, io->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    } else {
        /* The kernel reads the header and pieces when it takes the entry
         * (IORING_FEAT_SUBMIT_STABLE): they must last until the enter. */
        struct msg *m = &u->msgs[u->nmsgs++];
        memcpy(m->iov, iov, sizeof *iov * (size_t)n);
        m->mh = (struct msghdr){.msg_iov = m->iov, .msg_iovlen = (size_t)n};
        io_uring_prep_sendmsg(sqe, io->fd, &m->mh, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, tag(io, OP_SEND));
    io->bstate |= ST_SEND;
    io->refs++;
    return 0;
}

static void arm_accept(struct ur *u, struct accept_slot *s)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (!sqe)
        return;
    s->peer.len = sizeof s->peer.addr;
    io_uring_prep_accept(sqe, s->io->fd, &s->peer.addr.sa, &s->peer.len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
    sqe->ioprio |= u->accept_flags;
    io_uring_sqe_set_data64(sqe, tag(s, OP_ACCEPT));
    s->io->refs++;
}

static struct acceptor *acceptor_of(struct ur *u, struct evn__io *io)
{
    for (struct acceptor *a = u->acceptors; a; a = a->next)
        if (a->io == io)
            return a;
    return NULL;
}

static int ur_accept(struct evn_loop *loop, struct evn__io *io, bool on)
{
    struct ur *u = loop->bdata;
    struct acceptor *a = acceptor_of(u, io);
    if (!on) {
        io->bstate &= (uint8_t)~ST_ACCEPT_WANT;
        if (a && a->armed)
            for (int i = 0; i < ACCEPTS; i++)
                cancel(u, (struct evn__io *)(void *)&a->slots[i], OP_ACCEPT);
        return 0;
    }
    if (!a) {
        if (!(a = evn__calloc(1, sizeof *a)))
            return -ENOMEM;
        a->io = io;
        for (int i = 0; i < ACCEPTS; i++)
            a->slots[i].io = io;
        a->next = u->acceptors;
        u->acceptors = a;
    }
    io->bstate |= ST_ACCEPT_WANT;
    for (; a->armed < ACCEPTS; a->armed++)
        arm_accept(u, &a->slots[a->armed]);
    return 0;
}

static int ur_close(struct evn_loop *loop, struct evn__io *io, bool keep_fd)
{
    struct ur *u = loop->bdata;
    io->bstate = (uint8_t)((io->bstate & ~(ST_RECV_WANT | ST_ACCEPT_WANT)) | ST_CLOSED);
    io->bmask = 0;
    if (keep_fd) {
        /* The application takes the socket next: nothing of the ring may
         * still touch it by then. */
        if (io->refs && submit(u) == 0) {
            struct io_uring_sync_cancel_reg reg = {
                .fd = io->fd, .flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL};
            reg.timeout.tv_sec = -1;
            reg.timeout.tv_nsec = -1;
            io_uring_register_sync_cancel(&u->ring, &reg);
        }
        return io->refs > 0;
    }
    /* Cancel whatever is in flight on it, then close it, in that order, in
     * the same submission: the descriptor's number stays taken until then. */
    struct io_uring_sqe *sqe;
    if (io->refs && (sqe = sqe_quiet(u)))
        io_uring_prep_cancel_fd(sqe, io->fd, IORING_ASYNC_CANCEL_ALL);
    if ((sqe = sqe_quiet(u)))
        io_uring_prep_close(sqe, io->fd);
    else
        close(io->fd);
    return io->refs > 0;
}

/* ---- waiting, and what came ---- */

/* Add an event to the batch being made. */
static void emit(struct evn_loop *loop, struct ur *u, struct evn__fired f)
{
    loop->fired[u->n++] = f;
}

/* A reference to io is dropped: a closed handle nothing refers to any more
 * is released. */
static void unref(struct evn_loop *loop, struct ur *u, struct evn__io *io)
{
    if (--io->refs == 0 && (io->bstate & ST_CLOSED))
        emit(loop, u, (struct evn__fired){.io = io, .ev = EVN__RELEASED});
}

static void buf_return(struct ur *u, const char *buf, int *returned)
{
    unsigned short bid = (unsigned short)((buf - u->bufs) / BUF_SIZE);
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                          io_uring_buf_ring_mask(BUF_COUNT), (*returned)++);
}

/*
 * The events of the last wait have been handled: give their buffers back,
 * arm the polls their handles still want, and drop their references, which
 * may release closed handles, whose EVN__RELEASED events start the next
 * batch. (They are written over the old batch from its start, which is
 * safe: each old event is read before anything is written at or after its
 * place, since each gives at most one release.)
 */
static void batch_done(struct evn_loop *loop, struct ur *u)
{
    int old = u->n, returned = 0;
    u->n = 0;
    for (int i = 0; i < old; i++) {
        struct evn__fired f = loop->fired[i];
        if (f.ev == EVN__RELEASED)
            continue;
        if (f.ev == EVN__RECEIVED && f.res > 0) {
            buf_return(u, f.buf, &returned);
            f.io->bmask &= (uint8_t) ~(BM_RECVS | BM_THROTTLED);
        }
        if ((f.ev & (EVN__READ | EVN__WRITE)) && !(f.io->bstate & (ST_POLL | ST_CLOSED)) &&
            wanted(f.io))
            arm_poll(u, f.io);
        unref(loop, u, f.io);
    }
    if (returned)
        io_uring_buf_ring_advance(u->br, returned);
}

static void reap_accept(struct evn_loop *loop, struct ur *u, const struct io_uring_cqe *cqe,
                        struct accept_slot *s)
{
    struct evn__io *io = s->io;
    struct acceptor *a = acceptor_of(u, io);
    int res = cqe->res;
    /* Out of descriptors or memory: the acceptor pauses, and arms the
     * accepts again when it resumes. */
    bool again = (io->bstate & (ST_ACCEPT_WANT | ST_CLOSED)) == ST_ACCEPT_WANT &&
                 res != -ECANCELED && res != -EMFILE && res != -ENFILE && res != -ENOBUFS &&
                 res != -ENOMEM;
    if (res == -ECANCELED || ((io->bstate & ST_CLOSED) && res < 0)) {
        a->armed--;
        unref(loop, u, io);
        return;
    }
    /* The address is copied now: the slot's is the kernel's again once
     * armed. */
    struct evn__peer *peer = &u->peers[u->n];
    *peer = s->peer;
    emit(loop, u, (struct evn__fired){.io = io, .ev = EVN__ACCEPTED, .res = res, .buf = peer});
    if (again)
        arm_accept(u, s); /* takes a reference: the event keeps this one */
    else
        a->armed--;
}

/* Turn one completion into an event, or see to it here. */
static void reap(struct evn_loop *loop, struct ur *u, const struct io_uring_cqe *cqe)
{
    uint64_t data = io_uring_cqe_get_data64(cqe);
    int op = (int)(data & OP_MASK);
    if (op == OP_ACCEPT) {
        reap_accept(loop, u, cqe, (struct accept_slot *)(uintptr_t)(data & ~OP_MASK));
        return;
    }
    if (op != OP_POLL && op != OP_RECV && op != OP_SEND)
        return;
    struct evn__io *io = (struct evn__io *)(uintptr_t)(data & ~OP_MASK);
    bool more = cqe->flags & IORING_CQE_F_MORE;
    int res = cqe->res;
    /* An event holds a reference: the operation's own when it is over, a
     * new one while it goes on. */
    if (more)
        io->refs++;
    struct evn__fired f = {.io = io, .res = res};
    switch (op) {
    case OP_POLL:
        io->bstate &= (uint8_t)~ST_POLL;
        if (res < 0 || (io->bstate & ST_CLOSED))
            break;
        f.ev =
            (res & (POLLIN | POLLERR | POLLHUP) ? EVN__READ : 0) | (res & POLLOUT ? EVN__WRITE : 0);
        if (!f.ev) {
            /* Something asked for by no one (POLLRDHUP, say): wait on. */
            if (wanted(io))
                arm_poll(u, io);
            break;
        }
        emit(loop, u, f);
        return;
    case OP_RECV:
        if (!more)
            io->bstate &= (uint8_t)~ST_RECV;
        if (res > 0 && (io->bstate & ST_CLOSED)) {
            int returned = 0;
            buf_return(u, u->bufs + (size_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT) * BUF_SIZE,
                       &returned);
            io_uring_buf_ring_advance(u->br, returned);
        }
        /* Ended, but still wanted: out of buffers (they come back before
         * the next submission), or cancelled and wanted again since. */
        if (res == -ENOBUFS)
            u->nobufs++;
        if (!more && (io->bstate & (ST_RECV_WANT | ST_CLOSED)) == ST_RECV_WANT &&
            (res > 0 || res == -ENOBUFS || res == -ECANCELED))
            arm_recv(u, io);
        if (res == -ENOBUFS || res == -ECANCELED || (io->bstate & ST_CLOSED))
            break;
        f.ev = EVN__RECEIVED;
        if (res > 0) {
            f.buf = u->bufs + (size_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT) * BUF_SIZE;
            if (more && !(io->bmask & BM_THROTTLED)) {
                if ((io->bmask & BM_RECVS) < RECV_PER_TURN * BM_RECV_ONE) {
                    io->bmask = (uint8_t)(io->bmask + BM_RECV_ONE);
                } else {
                    io->bmask |= BM_THROTTLED;
                    cancel(u, io, OP_RECV);
                }
            }
        }
        emit(loop, u, f);
        return;
    case OP_SEND:
        io->bstate &= (uint8_t)~ST_SEND;
        if (io->bstate & ST_CLOSED)
            break;
        f.ev = EVN__SENT;
        emit(loop, u, f);
        return;
    }
    unref(loop, u, io);
}

static int ur_wait(struct evn_loop *loop, int timeout_ms)
{
    struct ur *u = loop->bdata;
    int rc = enable(u);
    if (rc < 0)
        return rc;
    batch_done(loop, u);
    if (u->n)
        timeout_ms = 0;
    /* Submit what the turn queued, and wait for something to come. */
    if (io_uring_cq_ready(&u->ring) || timeout_ms == 0) {
        rc = io_uring_submit_and_get_events(&u->ring);
    } else {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        if (u->batch_us)
            rc = raw_submit_and_wait_min(u, timeout_ms < 0 ? NULL : &ts, u->batch_us,
                                         (unsigned)loop->nfired_cap / 2);
        else
            rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts,
                                                  NULL);
    }
    u->nmsgs = 0;
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
        return rc;
    unsigned head, seen = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        /* Room for an event and a release: the rest waits for the next
         * wait, which then does not sleep. */
        if (u->n + 2 > loop->nfired_cap)
            break;
        seen++;
        reap(loop, u, cqe);
    }
    io_uring_cq_advance(&u->ring, seen);
    return u->n;
}

/*
 * The loop is done, and the ring is torn down without another turn: the
 * closes of the last connections, and the cancels before them, go in now,
 * and the cancelled operations are let finish (the kernel runs their ends
 * only when this thread enters the ring), which drops the last references
 * to the sockets, so that their peers see them close now, not when the
 * server is freed. What they report is of no interest any more.
 */
static void ur_stop(struct evn_loop *loop)
{
    struct ur *u = loop->bdata;
    if (enable(u) < 0)
        return;
    /* No more accepts; a socket one took meanwhile is closed. */
    for (struct acceptor *a = u->acceptors; a; a = a->next) {
        a->io->bstate &= (uint8_t)~ST_ACCEPT_WANT;
        for (int i = 0; i < ACCEPTS; i++)
            cancel(u, (struct evn__io *)(void *)&a->slots[i], OP_ACCEPT);
    }
    for (int i = 0; i < 100; i++) {
        io_uring_submit_and_get_events(&u->ring);
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&u->ring, head, cqe)
        {
            seen++;
            if ((io_uring_cqe_get_data64(cqe) & OP_MASK) == OP_ACCEPT && cqe->res >= 0)
                close(cqe->res);
        }
        io_uring_cq_advance(&u->ring, seen);
        if (!seen && !io_uring_sq_ready(&u->ring))
            break;
    }
    u->nmsgs = 0;
    /* The registered descriptor is this thread's: let it go here, or the
     * ring would live as long as the thread (the caller's, for loop 0). */
    io_uring_unregister_ring_fd(&u->ring);
}

const struct evn__backend evn__backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .destroy = ur_destroy,
    .add = ur_add,
    .mod = ur_mod,
    .del = ur_del,
    .wait = ur_wait,
    .recv = ur_recv,
    .send = ur_send,
    .accept = ur_accept,
    .close = ur_close,
    .stop = ur_stop,
};

long evn__uring_nobufs(struct evn_server *srv)
{
    long n = 0;
    for (int i = 0; i < srv->nloops; i++)
        if (srv->loops[i].be == &evn__backend_uring && srv->loops[i].bdata)
            n += ((struct ur *)srv->loops[i].bdata)->nobufs;
    return n;
}

unsigned evn__uring_batch_us(struct evn_server *srv)
{
    if (srv->nloops < 1 || srv->loops[0].be != &evn__backend_uring || !srv->loops[0].bdata)
        return 0;
    return ((struct ur *)srv->loops[0].bdata)->batch_us;
}
