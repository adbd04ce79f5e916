/*
 * floor-uring - the least a user-space io_uring server can do, as the
 * yardstick for evn's io_uring backend, beside floor.c (its epoll twin).
 *
 * One thread and one ring (IORING_SETUP_SINGLE_ISSUER and DEFER_TASKRUN,
 * the completion queue sized so that it cannot overflow), no framework:
 *   - one multishot accept on the listening socket, TCP_NODELAY set on it
 *     once (accepted sockets inherit it);
 *   - one multishot receive per connection, into a ring of provided buffers
 *     the kernel picks from; each buffer goes back to the ring as soon as its
 *     bytes have been handled (copied out, or parsed and answered);
 *   - at most one send in flight per connection; output made meanwhile is
 *     appended behind it and goes out, all of it, when that send completes;
 *   - one io_uring_enter a turn (io_uring_submit_and_wait), which submits
 *     what the last turn asked for and waits for what comes next.
 *
 *   floor-uring --mode echo|ping|http [--host ADDR] [--port N] [--unix PATH] [--body N]
 *
 * With FLOOR_MIN_WAIT_US=N in the environment, each enter collects
 * completions for up to N microseconds once one has come (the kernel's
 * minimum wait, Linux 6.12): the floor for evn's batch_us.
 *
 * Modes, options and answers are floor.c's (bench/floor-proto.h, shared by
 * both): echo sends every byte back, ping answers Redis PINGs, http answers
 * each request with a fixed response (POST /echo with its body).
 *
 * A connection that ends (EOF, an error, "Connection: close" after its
 * answer has gone) first has its receive cancelled; once neither a receive
 * nor a send refers to it, its socket is closed through the ring. A
 * receive that ends while the connection lives (out of buffers: -ENOBUFS)
 * is armed again. A client that sends but does not read has its receive
 * cancelled while more than QUEUE_MAX bytes wait to be sent, and armed again
 * once they are gone, so it cannot make the server's memory grow without
 * bound.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "floor-proto.h"

/* What a completion is about: the operation in the low bits of user_data,
 * the connection's fd above them. */
enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_CANCEL, OP_CLOSE };
#define OP_BITS 3
#define OP_MASK ((1u << OP_BITS) - 1)

#define SQ_ENTRIES 4096
/*
 * Completions waiting at once: at most one a provided buffer, one a
 * connection for the end of its receive and one for its send, and the
 * accepts of one turn (no more than the listen backlog of 4096). 65536, the
 * most the kernel allows, covers the 20000 fds a process may have here.
 */
#define CQ_ENTRIES 65536
#define BUF_COUNT 256
#define BUF_SIZE (16 * 1024)
#define BUF_GROUP 0
/* Output kept for a connection before its receive is paused. */
#define QUEUE_MAX (4 * 1024 * 1024)
/* Output buffers of BLOCK bytes are kept for reuse, up to POOL_MAX of them,
 * so that a connection holds none while it has nothing to send. */
#define BLOCK BUF_SIZE
#define POOL_MAX 256

_Static_assert((BUF_COUNT & (BUF_COUNT - 1)) == 0 && BUF_COUNT <= 32768,
               "a buffer ring is a power of two of at most 32768 entries");

struct conn {
    int fd;
    unsigned open : 1;
    unsigned recv_armed : 1; /* a multishot receive is armed */
    unsigned cancelling : 1; /* ... and a cancel of it submitted */
    unsigned paused : 1;     /* receiving stopped: too much output waits */
    unsigned sending : 1;    /* a send of out is in flight */
    unsigned closing : 1;    /* closed once nothing refers to it */
    int close_after;         /* close once the output queued so far has gone */
    struct buf in;           /* the start of a request not yet complete */
    struct buf out;          /* being sent: not moved while a send is in flight */
    size_t out_done;         /* bytes of out sent so far */
    struct buf queued;       /* output made while out is being sent */
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
/* Buffers handed back to br since its tail was last advanced. */
static int returned;
static int lfd;
static struct conn *conns;
static size_t nconns;
static char *pool[POOL_MAX];
static int npool;
static int spare_fd = -1;
static volatile sig_atomic_t stopping;

static uint64_t tag(int fd, unsigned op)
{
    return (uint64_t)fd << OP_BITS | op;
}

/* A free submission entry; when the queue is full, what is in it goes first. */
static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        int rc = io_uring_submit(&ring);
        if (rc < 0) {
            errno = -rc;
            die("io_uring_submit");
        }
        sqe = io_uring_get_sqe(&ring);
        if (!sqe)
            die("io_uring_get_sqe");
    }
    return sqe;
}

/* Gives an empty buffer a block to write into, from the pool when it can. */
static void buf_take(struct buf *b)
{
    if (b->data)
        return;
    b->data = npool ? pool[--npool] : malloc(BLOCK);
    if (!b->data)
        die("malloc");
    b->cap = BLOCK;
}

/* Hands a buffer's memory back (to the pool if it is a block) and empties it. */
static void buf_release(struct buf *b)
{
    if (b->data && b->cap == BLOCK && npool < POOL_MAX)
        pool[npool++] = b->data;
    else
        free(b->data);
    memset(b, 0, sizeof *b);
}

static struct conn *conn_get(int fd)
{
    conns = fd_table_grow(conns, &nconns, sizeof *conns, fd);
    return &conns[fd];
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(lfd, OP_ACCEPT));
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, tag(c->fd, OP_RECV));
    c->recv_armed = 1;
}

static void cancel_recv(struct conn *c)
{
    if (!c->recv_armed || c->cancelling)
        return;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_cancel64(sqe, tag(c->fd, OP_RECV), 0);
    io_uring_sqe_set_data64(sqe, tag(c->fd, OP_CANCEL));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    c->cancelling = 1;
}

static void send_out(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, c->fd, c->out.data + c->out_done, c->out.len - c->out_done,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(c->fd, OP_SEND));
    c->sending = 1;
}

/* Closes a closing connection's socket once no operation refers to it. */
static void conn_finish(struct conn *c)
{
    if (!c->closing || c->recv_armed || c->sending)
        return;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, tag(c->fd, OP_CLOSE));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    buf_release(&c->in);
    buf_release(&c->out);
    buf_release(&c->queued);
    c->open = 0;
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    cancel_recv(c);
    conn_finish(c);
}

/* Where new output goes: behind the send in flight, if there is one. */
static struct buf *output(struct conn *c)
{
    return c->sending ? &c->queued : &c->out;
}

static void on_data(struct conn *c, const char *p, size_t n)
{
    struct buf *o = output(c);
    buf_take(o);
    if (mode == MODE_ECHO) {
        buf_append(o, p, n);
    } else {
        if (c->in.len) {
            buf_append(&c->in, p, n);
            p = c->in.data;
            n = c->in.len;
        }
        long used = parse_requests(o, &c->close_after, p, n);
        if (used < 0) {
            conn_close(c);
            return;
        }
        if (c->in.len) {
            buf_consume(&c->in, (size_t)used);
            if (!c->in.len)
                buf_release(&c->in);
        } else if ((size_t)used < n) {
            buf_append(&c->in, p + used, n - (size_t)used);
        }
        /* An incomplete request gets no answer yet: no block held for it. */
        if (!o->len)
            buf_release(o);
    }
    if (!c->sending && c->out.len)
        send_out(c);
    if (c->queued.len > QUEUE_MAX && !c->paused) {
        c->paused = 1;
        cancel_recv(c);
    }
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        char *p = bufs + (size_t)bid * BUF_SIZE;
        if (cqe->res > 0 && !c->closing)
            on_data(c, p, (size_t)cqe->res);
        io_uring_buf_ring_add(br, p, BUF_SIZE, (unsigned short)bid,
                              io_uring_buf_ring_mask(BUF_COUNT), returned++);
    }
    if (cqe->flags & IORING_CQE_F_MORE)
        return;
    /* The receive has ended. */
    c->recv_armed = 0;
    c->cancelling = 0;
    if (c->closing) {
        conn_finish(c);
    } else if (cqe->res == 0 || (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED)) {
        conn_close(c);
    } else if (!c->paused) {
        arm_recv(c);
    }
}

static void on_send(struct conn *c, int res)
{
    c->sending = 0;
    if (res < 0)
        conn_close(c);
    if (c->closing) {
        conn_finish(c);
        return;
    }
    c->out_done += (size_t)res;
    if (c->out_done < c->out.len) {
        send_out(c);
        return;
    }
    c->out.len = c->out_done = 0;
    if (c->queued.len) {
        struct buf t = c->out;
        c->out = c->queued;
        c->queued = t;
        send_out(c);
        return;
    }
    buf_release(&c->out);
    buf_release(&c->queued);
    if (c->close_after) {
        conn_close(c);
        return;
    }
    if (c->paused) {
        c->paused = 0;
        if (!c->recv_armed)
            arm_recv(c);
    }
}

static void on_accept(struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        arm_accept();
    int fd = cqe->res;
    if (fd < 0) {
        /* Out of fds: drop one waiting client rather than fail on it again. */
        if ((fd == -EMFILE || fd == -ENFILE) && spare_fd >= 0) {
            close(spare_fd);
            int drop = accept(lfd, NULL, NULL);
            if (drop >= 0)
                close(drop);
            spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        return;
    }
    struct conn *c = conn_get(fd);
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->open = 1;
    arm_recv(c);
}

static void on_completion(struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    unsigned op = ud & OP_MASK;
    int fd = (int)(ud >> OP_BITS);
    if (op == OP_ACCEPT) {
        on_accept(cqe);
        return;
    }
    /* A failed cancel (the receive had ended already) or close needs nothing. */
    if (op != OP_RECV && op != OP_SEND)
        return;
    struct conn *c = &conns[fd];
    if (op == OP_RECV)
        on_recv(c, cqe);
    else
        on_send(c, cqe->res);
}

static void setup_ring(void)
{
    struct io_uring_params p = {
        .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
                 IORING_SETUP_SUBMIT_ALL,
        .cq_entries = CQ_ENTRIES,
    };
    int rc = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
    if (rc < 0) {
        errno = -rc;
        die("io_uring_queue_init_params");
    }
    /* The buffers are touched now, so that the memory they take is there
     * from the start and not counted against the first connections. */
    size_t ring_len = BUF_COUNT * sizeof(struct io_uring_buf);
    br = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
              -1, 0);
    bufs = mmap(NULL, (size_t)BUF_COUNT * BUF_SIZE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED)
        die("mmap");
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = BUF_COUNT, .bgid = BUF_GROUP};
    rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc < 0) {
        errno = -rc;
        die("io_uring_register_buf_ring");
    }
    io_uring_buf_ring_init(br);
    for (int i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BUF_COUNT), i);
    io_uring_buf_ring_advance(br, BUF_COUNT);
}

/*
 * Submit what is queued and wait, collecting completions for up to us
 * microseconds before returning with whatever came (IORING_FEAT_MIN_TIMEOUT,
 * Linux 6.12; the struct's field after sigmask_sz, named pad in liburing
 * 2.3's header, is min_wait_usec). FLOOR_MIN_WAIT_US sets us; 0: plain
 * io_uring_submit_and_wait.
 */
static unsigned min_wait_us;
static int submit_and_wait_min(unsigned us)
{
    /* Publish the queued entries: the tail the kernel reads. */
    unsigned tail = ring.sq.sqe_tail;
    ring.sq.sqe_head = tail;
    __atomic_store_n(ring.sq.ktail, tail, __ATOMIC_RELEASE);
    unsigned n = tail - __atomic_load_n(ring.sq.khead, __ATOMIC_ACQUIRE);
    struct io_uring_getevents_arg arg = {.sigmask_sz = _NSIG / 8, .pad = us};
    long rc = syscall(__NR_io_uring_enter, ring.ring_fd, n, 64u,
                      IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
    return rc < 0 ? -errno : (int)rc;
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    struct floor_opts o;
    int is_tcp;
    prog = "floor-uring";
    floor_args(argc, argv, &o);
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    /* No SA_RESTART: io_uring_enter returns -EINTR and the loop ends
     * cleanly, which lets profilers such as callgrind write their output. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    lfd = floor_listen(&o, &is_tcp);
    /* Linux gives an accepted socket the listener's TCP_NODELAY: no system
     * call a connection for it. */
    int one = 1;
    if (is_tcp && setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt TCP_NODELAY");
    setup_ring();
    arm_accept();
    const char *mw = getenv("FLOOR_MIN_WAIT_US");
    min_wait_us = mw ? (unsigned)atoi(mw) : 0;

    while (!stopping) {
        if (returned) {
            io_uring_buf_ring_advance(br, returned);
            returned = 0;
        }
        int rc =
            min_wait_us ? submit_and_wait_min(min_wait_us) : io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -ETIME) {
            errno = -rc;
            die("io_uring_submit_and_wait");
        }
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            on_completion(cqe);
            n++;
        }
        io_uring_cq_advance(&ring, n);
    }

    /* Tearing the ring down ends whatever is in flight; then the sockets. */
    io_uring_queue_exit(&ring);
    for (size_t fd = 0; fd < nconns; fd++) {
        struct conn *c = &conns[fd];
        if (!c->open)
            continue;
        close(c->fd);
        buf_release(&c->in);
        buf_release(&c->out);
        buf_release(&c->queued);
    }
    free(conns);
    while (npool)
        free(pool[--npool]);
    munmap(bufs, (size_t)BUF_COUNT * BUF_SIZE);
    munmap(br, BUF_COUNT * sizeof(struct io_uring_buf));
    buf_free(&http_response);
    buf_free(&http_response_close);
    if (spare_fd >= 0)
        close(spare_fd);
    close(lfd);
    if (o.unix_path)
        unlink(o.unix_path);
    return 0;
}
