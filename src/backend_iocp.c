/*
 * The IOCP backend (Windows): a completion backend, with one I/O completion
 * port per loop, the default on Windows. It keeps the io_uring backend's
 * contract, so that conn.c and listener.c drive both alike: receiving is
 * turned on and off, one send is in flight per socket, the backend accepts
 * on listening sockets, and a closed handle is released (EVN__RELEASED)
 * once no operation and no event of the batch refers to it.
 *
 * Receiving: a WSARecv into one of the loop's buffers while the loop has
 * one to spare, else a zero-byte WSARecv. The loop owns BUF_COUNT buffers
 * of 16 KiB; a receive in flight takes one of its own only while more
 * than BUF_SPARE are free, so that up to EVN__IOCP_RECV_BUFS connections
 * receive straight into a buffer (a request costs that one receive), and
 * the rest, however many, wait with a zero-byte receive, which holds no
 * memory, and then read what came with a non-blocking recv into one of
 * the spare buffers (one call more per request, none per idle
 * connection). Either way the buffer is lent to the event and taken back
 * at the next wait, and the next receive takes one again if one is still
 * to spare: buffers go to whichever connections arm first, and come back
 * when a connection closes. Under Wine, as on Windows, a zero-byte
 * WSARecv stays pending until data or the end of input arrives. Data that
 * comes while receiving is off (a receive already in flight then) is
 * reported all the same: conn.c keeps it, as it does io_uring's.
 *
 * Sending: one WSASend of the pieces given (Winsock copies the WSABUF
 * array when the call is made, so it lives on the stack). Wine leaves a
 * send pending for ever on a connection its peer has reset: while no
 * receive is in flight to see the reset, a poll watches for it
 * (watch_reset).
 *
 * Accepting: AcceptEx, with ACCEPTS sockets made in advance per listening
 * socket; an accepted one gets SO_UPDATE_ACCEPT_CONTEXT (or getpeername,
 * shutdown and the rest fail on it) and is made non-blocking.
 *
 * Connecting: ConnectEx on the socket bound to any address first, and
 * SO_UPDATE_CONNECT_CONTEXT once connected; its end is an EVN__CONNECTED
 * event. A connect's timeout, or a close, cancels it (CancelIoEx).
 *
 * File regions (evn_sendfile) on a plain connection: TransmitFile, the
 * region's offset in the OVERLAPPED, up to a GiB a call, as the one send in
 * flight; its completion says how much went, and conn.c goes on from
 * there with the rest of the queue, in order.
 *
 * UDP: WSARecvFrom into a buffer the socket keeps for its life, handed to
 * the datagram's event, and received into again once that is handled; a
 * reply is copied to a second one and sent with WSASendTo.
 *
 * Readiness, for what reads or writes its socket itself (TLS, the inbox,
 * the console's stop, a PROXY header, a unix socket's file region, a
 * connect to a unix socket): IOCTL_AFD_POLL on the socket, the poll WSAPoll
 * itself is built on, whose end comes to the port like any other
 * operation; level-triggered as evn expects, since it ends at once when the
 * condition already holds, and armed again after each event while wanted.
 *
 * Every socket the backend uses is tied to the loop's port on first use
 * (never at accept: listener.c may hand the socket to another loop), and
 * set to FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, which Wine honours as
 * Windows does: an operation that finishes at once (a send on an idle
 * socket, a receive with data waiting) posts no completion and is taken
 * from a list of the backend's at the next wait. So a request costs one
 * receive completion; its reply's send usually none.
 *
 * Wakes from other threads (evn_wake, evn_send, connections handed to the
 * loop) are completions posted to the port (PostQueuedCompletionStatus):
 * the inbox has no socket pair to poll and drain.
 *
 * Unix sockets are untried: Wine 8 has no AF_UNIX.
 *
 * Per handle, the overlapped operations live in a slot (io->bslot), taken
 * from the loop's free list on first use and given back on release: after
 * the first connections, nothing is allocated per connection or request.
 * Closing cancels what is in flight (CancelIoEx), closes the socket, and
 * waits for the cancelled operations to come back before the release.
 */
#include "internal.h"
#include "win_errno.h"

#include <mswsock.h>
#include <stdio.h>
#include <string.h>
#include <winternl.h>

#define IOCTL_AFD_POLL 0x00012024
#define AFD_POLL_RECEIVE 0x0001
#define AFD_POLL_SEND 0x0004
#define AFD_POLL_DISCONNECT 0x0008
#define AFD_POLL_ABORT 0x0010
#define AFD_POLL_LOCAL_CLOSE 0x0020
#define AFD_POLL_ACCEPT 0x0080
#define AFD_POLL_CONNECT_FAIL 0x0100

#define NT_PENDING 0x00000103L
#define NT_CANCELLED ((LONG)0xC0000120L)

typedef struct {
    HANDLE handle;
    ULONG events;
    LONG status;
} afd_poll_handle;

typedef struct {
    LARGE_INTEGER timeout;
    ULONG nhandles;
    ULONG exclusive;
    afd_poll_handle h[1];
} afd_poll_info;

typedef LONG(NTAPI *nt_ioctl_fn)(HANDLE, HANDLE, PVOID, PVOID, PIO_STATUS_BLOCK, ULONG, PVOID,
                                 ULONG, PVOID, ULONG);

/* A slot's receive operation is an OP_RECV, or an OP_DGRAM_RECV on a UDP
 * socket; its send operation an OP_SEND, or for the while it runs an
 * OP_CONNECT or OP_FILE, or an OP_DGRAM_SEND on a UDP socket. */
enum {
    OP_RECV = 1,
    OP_SEND,
    OP_POLL,
    OP_ACCEPT,
    OP_CONNECT,
    OP_FILE,
    OP_DGRAM_RECV,
    OP_DGRAM_SEND
};

/* The completion key of a wake (PostQueuedCompletionStatus); sockets' are 0. */
#define WAKE_KEY 1

/* io->bstate */
enum {
    ST_RECV_WANT = 1,   /* receiving is on */
    ST_ACCEPT_WANT = 2, /* accepting is on */
    ST_CLOSED = 4,      /* closed: nothing is reported but EVN__RELEASED */
    ST_WATCH = 8        /* the poll in flight watches for a reset (watch_reset) */
};

/* io->bmask: the readiness wanted (bits 0-1) and the poll in flight's
 * (bits 4-5). */
#define WANTED(io) ((io)->bmask & 3)
#define ARMED(io) (((io)->bmask >> 4) & 3)

/* Sizes: the loop's receive buffers (and how many of them are kept for the
 * zero-byte receives' reads: see Receiving above), the accepts kept armed
 * per listening socket, and the room for an address AcceptEx wants. */
#define BUF_SPARE 32
#define BUF_COUNT (EVN__IOCP_RECV_BUFS + BUF_SPARE)
#define BUF_SIZE (16 * 1024)
#define ACCEPTS 8
#define ADDR_ROOM (sizeof(SOCKADDR_STORAGE) + 16)
#define SLOTS_PER_BLOCK 64

/*
 * One overlapped operation. ov.Internal and ov.InternalHigh hold its status
 * and bytes once it is over; err, a negative errno, when Winsock refused it
 * at once.
 */
struct op {
    OVERLAPPED ov;
    struct op *next; /* on the list of operations over without a completion */
    uint8_t kind;
    bool busy;
    int err;
};

struct acceptor;
struct dgram;

/* A handle's operations. */
struct slot {
    struct op orecv, osend, opoll;
    struct evn__io *io; /* NULL: orphaned, its socket gone, waiting for its operations */
    int fd;             /* the socket it was made for */
    afd_poll_info pinfo;
    int rbuf; /* 1 + the loop's buffer the receive in flight holds; 0: none (zero-byte) */
    struct acceptor *acc;
    struct dgram *dg;  /* a UDP socket's buffers */
    bool skip;         /* the socket skips completions for what finishes at once */
    struct slot *next; /* on the free list */
};

struct slot_block {
    struct slot_block *next;
    struct slot s[SLOTS_PER_BLOCK];
};

/* One AcceptEx: the socket made for it, and where it writes the addresses. */
struct accept_slot {
    struct op op;
    struct acceptor *a;
    SOCKET s;
    char addrs[2 * ADDR_ROOM];
};

struct acceptor {
    struct evn__io *io;
    int family;
    struct accept_slot slots[ACCEPTS];
};

struct iocp {
    HANDLE port;
    nt_ioctl_fn nt_ioctl;
    LPFN_ACCEPTEX acceptex;
    LPFN_GETACCEPTEXSOCKADDRS acceptex_addrs;
    LPFN_CONNECTEX connectex;
    LPFN_TRANSMITFILE transmitfile;
    /* Operations over at once (no completion will come), in order. */
    struct op *done_head, **done_tail;
    struct slot *free_slots;
    struct slot_block *blocks;
    /* The receive buffers, and the free ones' indexes. */
    char *bufs;
    int free_bufs[BUF_COUNT];
    int nfree_bufs;
    /* Events of the last wait (loop->fired[0..n)), and the accepted peers. */
    int n;
    struct evn__peer peers[EVN__FIRED_MIN];
    OVERLAPPED_ENTRY entries[EVN__FIRED_MIN / 2];
    bool ready;  /* init done: allocations from now on are counted */
    bool polled; /* the last wait asked the port */
    struct evn__iocp_counts counts;
};

static int nt_errno(LONG st)
{
    switch ((unsigned long)st) {
    case 0xC0000120: /* STATUS_CANCELLED */
        return -ECANCELED;
    case 0xC000020D: /* STATUS_CONNECTION_RESET */
    case 0xC000013C: /* STATUS_REMOTE_DISCONNECT */
        return -ECONNRESET;
    case 0xC0000241: /* STATUS_CONNECTION_ABORTED */
    case 0xC000013B: /* STATUS_LOCAL_DISCONNECT */
        return -ECONNABORTED;
    case 0xC0000207: /* STATUS_INVALID_ADDRESS_COMPONENT */
    case 0xC000023A: /* STATUS_CONNECTION_INVALID */
    case 0xC0000140: /* STATUS_INVALID_CONNECTION: Wine's, for an accept whose peer reset */
    case 0xC000023E: /* STATUS_NETWORK_UNREACHABLE */
        return -ENOTCONN;
    case 0xC000009A: /* STATUS_INSUFFICIENT_RESOURCES */
    case 0xC0000017: /* STATUS_NO_MEMORY */
        return -ENOBUFS;
    case 0xC00000B5: /* STATUS_IO_TIMEOUT */
        return -ETIMEDOUT;
    default:
        return -EIO;
    }
}

/* A failed operation's error: a send on a connection that is gone is
 * EPIPE, as a POSIX send says; the rest as everywhere in evn. */
static int wsa_err(int e)
{
    if (e == WSAENOTCONN || e == WSAESHUTDOWN)
        return -EPIPE;
    if (e == WSAENETRESET)
        return -ECONNRESET;
    return -evn__errno_of_wsa(e);
}

/* ---- slots ---- */

static struct slot *slot_new(struct iocp *u)
{
    if (!u->free_slots) {
        struct slot_block *b = evn__calloc(1, sizeof *b);
        if (!b)
            return NULL;
        if (u->ready)
            u->counts.allocs++;
        b->next = u->blocks;
        u->blocks = b;
        for (int i = SLOTS_PER_BLOCK - 1; i >= 0; i--) {
            b->s[i].next = u->free_slots;
            u->free_slots = &b->s[i];
        }
    }
    struct slot *s = u->free_slots;
    u->free_slots = s->next;
    memset(s, 0, sizeof *s);
    s->orecv.kind = OP_RECV;
    s->osend.kind = OP_SEND;
    s->opoll.kind = OP_POLL;
    return s;
}

static int busy_ops(const struct slot *s)
{
    return s->orecv.busy + s->osend.busy + s->opoll.busy;
}

/*
 * The slot's socket is still open and still its handle's. A closed one's
 * number is free for the next socket or file the process opens, on any
 * thread (a client's, in a test), and CancelIoEx on that number would
 * cancel that one's I/O: closing cancelled the closed socket's already.
 */
static bool slot_open(const struct slot *s)
{
    return s->io && s->io->fd == s->fd && !(s->io->bstate & ST_CLOSED);
}

static void slot_free(struct iocp *u, struct slot *s)
{
    evn__free(s->acc);
    s->acc = NULL;
    evn__free(s->dg);
    s->dg = NULL;
    s->io = NULL;
    s->next = u->free_slots;
    u->free_slots = s;
}

/* The handle lets go of its slot: at once if nothing is in flight, else
 * when the last operation comes back. */
static void slot_detach(struct iocp *u, struct evn__io *io)
{
    struct slot *s = io->bslot;
    if (!s)
        return;
    io->bslot = NULL;
    int busy = busy_ops(s);
    if (s->acc)
        for (int i = 0; i < ACCEPTS; i++)
            busy += s->acc->slots[i].op.busy;
    if (!busy) {
        slot_free(u, s);
        return;
    }
    io->refs = (uint16_t)(io->refs - busy);
    s->io = NULL;
}

/*
 * io's slot, made (and its socket tied to the port) on first use, or made
 * anew when io has a new socket since (a connect trying its next address),
 * the old one left to its operations. NULL with *err set on failure.
 */
static struct slot *slot_of(struct iocp *u, struct evn__io *io, int *err)
{
    struct slot *s = io->bslot;
    if (s && s->fd == io->fd)
        return s;
    if (s)
        slot_detach(u, io);
    if (!(s = slot_new(u))) {
        *err = -ENOMEM;
        return NULL;
    }
    s->io = io;
    s->fd = io->fd;
    /* A socket is tied to one port for its life: a second tie fails, and
     * means it is tied already (released by one handle, used by the next). */
    if (!CreateIoCompletionPort((HANDLE)(intptr_t)io->fd, u->port, 0, 0) &&
        GetLastError() != ERROR_INVALID_PARAMETER) {
        *err = -EBADF;
        slot_free(u, s);
        return NULL;
    }
    s->skip = SetFileCompletionNotificationModes((HANDLE)(intptr_t)io->fd,
                                                 FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                     FILE_SKIP_SET_EVENT_ON_HANDLE);
    io->bslot = s;
    return s;
}

static struct slot *slot_of_op(struct op *op)
{
    switch (op->kind) {
    case OP_RECV:
    case OP_DGRAM_RECV:
        return evn__container_of(op, struct slot, orecv);
    case OP_SEND:
    case OP_CONNECT:
    case OP_FILE:
    case OP_DGRAM_SEND:
        return evn__container_of(op, struct slot, osend);
    default:
        return evn__container_of(op, struct slot, opoll);
    }
}

/* ---- operations ---- */

static void op_start(struct evn__io *io, struct op *op)
{
    memset(&op->ov, 0, sizeof op->ov);
    op->err = 0;
    op->busy = true;
    if (io)
        io->refs++;
}

/* An operation is over without a completion: queue it for the next wait. */
static void op_done_now(struct iocp *u, struct op *op, LONG status, size_t bytes, int err)
{
    op->ov.Internal = (ULONG_PTR)status;
    op->ov.InternalHigh = bytes;
    op->err = err;
    op->next = NULL;
    *u->done_tail = op;
    u->done_tail = &op->next;
    u->counts.inline_done++;
}

static char zero_byte;

static char *buf_at(struct iocp *u, int b)
{
    return u->bufs + (size_t)b * BUF_SIZE;
}

static void buf_put(struct iocp *u, int b)
{
    u->free_bufs[u->nfree_bufs++] = b;
}

/* The buffer the slot's receive held goes back to the loop. */
static void recv_buf_put(struct iocp *u, struct slot *s)
{
    if (s->rbuf) {
        buf_put(u, s->rbuf - 1);
        s->rbuf = 0;
    }
}

static void arm_recv(struct iocp *u, struct evn__io *io, struct slot *s)
{
    WSABUF b = {0, &zero_byte};
    if (u->nfree_bufs > BUF_SPARE) {
        int i = u->free_bufs[--u->nfree_bufs];
        s->rbuf = i + 1;
        b = (WSABUF){BUF_SIZE, buf_at(u, i)};
    } else {
        u->counts.recv_zero++;
    }
    DWORD got = 0, flags = 0;
    op_start(io, &s->orecv);
    u->counts.recv_posts++;
    if (WSARecv((SOCKET)(intptr_t)io->fd, &b, 1, &got, &flags, &s->orecv.ov, NULL) == 0) {
        if (s->skip)
            op_done_now(u, &s->orecv, 0, got, 0);
        return;
    }
    int e = WSAGetLastError();
    if (e != WSA_IO_PENDING)
        op_done_now(u, &s->orecv, 0, 0, wsa_err(e));
}

static int afd_events(int mask)
{
    int ev = AFD_POLL_ABORT | AFD_POLL_LOCAL_CLOSE | AFD_POLL_CONNECT_FAIL;
    if (mask & EVN__READ)
        ev |= AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT;
    if (mask & EVN__WRITE)
        ev |= AFD_POLL_SEND;
    return ev;
}

static void set_masks(struct evn__io *io, int want, int arm)
{
    io->bmask = (uint8_t)(want | arm << 4);
}

static void arm_poll(struct iocp *u, struct evn__io *io, struct slot *s)
{
    HANDLE h = (HANDLE)(intptr_t)io->fd;
    s->pinfo = (afd_poll_info){.nhandles = 1};
    s->pinfo.timeout.QuadPart = INT64_MAX;
    s->pinfo.h[0].handle = h;
    s->pinfo.h[0].events = (ULONG)afd_events(WANTED(io));
    op_start(io, &s->opoll);
    io->bstate &= (uint8_t)~ST_WATCH;
    set_masks(io, WANTED(io), WANTED(io));
    u->counts.polls++;
    LONG st = u->nt_ioctl(h, NULL, NULL, &s->opoll.ov, (PIO_STATUS_BLOCK)&s->opoll.ov.Internal,
                          IOCTL_AFD_POLL, &s->pinfo, sizeof s->pinfo, &s->pinfo, sizeof s->pinfo);
    /* Over at once: with success, no completion comes if the socket skips
     * them; with an error, none ever does. */
    if (st == NT_PENDING || (st == 0 && !s->skip))
        return;
    op_done_now(u, &s->opoll, st, 0, 0);
}

/*
 * Under Wine, a send in flight on a connection its peer has reset stays
 * pending for ever (Windows ends it with an error): something else must
 * notice the reset. The zero-byte receive does while one is in flight. When
 * none is (receiving is off: the connection is closing, paused, or has had
 * the end of its input) and a send waits, a poll for the reset alone stands
 * in for it, and its end is reported as the receive's error would be.
 * Nothing is armed while the receive or a readiness poll is.
 */
static void watch_reset(struct iocp *u, struct evn__io *io, struct slot *s)
{
    if (!s->osend.busy || (s->osend.kind != OP_SEND && s->osend.kind != OP_FILE) || s->orecv.busy ||
        s->opoll.busy || WANTED(io) || (io->bstate & (ST_RECV_WANT | ST_CLOSED)) || s->acc)
        return;
    arm_poll(u, io, s);
    io->bstate |= ST_WATCH;
}

/* ---- set-up ---- */

static int drain(struct evn_loop *loop, struct iocp *u);

/* Operations in flight that loops gave up waiting for (drain). */
static atomic_long abandoned;

long evn__iocp_abandoned(void)
{
    return atomic_load(&abandoned);
}

/*
 * The loop's end. Should operations still be in flight after drain has
 * waited for them (the system never ended them), the memory the system
 * may still write into (the slots' OVERLAPPEDs and poll records, the
 * accepts' address room, the datagram buffers) is left allocated rather
 * than freed under it, and counted (evn__iocp_abandoned); the harness fails
 * the test in which it happens.
 */
static void iocp_destroy(struct evn_loop *loop)
{
    struct iocp *u = loop->bdata;
    if (!u)
        return;
    int left = drain(loop, u);
    if (u->port)
        CloseHandle(u->port);
    if (left > 0) {
        atomic_fetch_add(&abandoned, left);
        u->blocks = NULL;
    }
    while (u->blocks) {
        struct slot_block *b = u->blocks;
        u->blocks = b->next;
        for (int i = 0; i < SLOTS_PER_BLOCK; i++) {
            evn__free(b->s[i].acc);
            evn__free(b->s[i].dg);
        }
        evn__free(b);
    }
    evn__free(u->bufs);
    evn__free(u);
    loop->bdata = NULL;
}

/* The Winsock extensions the backend uses, found through one socket;
 * -ENOTSUP naming the first one missing. */
static int find_extensions(struct iocp *u)
{
    struct {
        GUID id;
        void *fn;
        DWORD size;
        const char *name;
    } ext[] = {
        {WSAID_ACCEPTEX, &u->acceptex, sizeof u->acceptex, "AcceptEx"},
        {WSAID_GETACCEPTEXSOCKADDRS, &u->acceptex_addrs, sizeof u->acceptex_addrs,
         "GetAcceptExSockaddrs"},
        {WSAID_CONNECTEX, &u->connectex, sizeof u->connectex, "ConnectEx"},
        {WSAID_TRANSMITFILE, &u->transmitfile, sizeof u->transmitfile, "TransmitFile"},
    };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0] && rc == 0; i++) {
        DWORD n;
        if (WSAIoctl((SOCKET)(intptr_t)fd, SIO_GET_EXTENSION_FUNCTION_POINTER, &ext[i].id,
                     sizeof ext[i].id, ext[i].fn, ext[i].size, &n, NULL, NULL) != 0) {
            evn__set_errmsg("backend 'iocp' is not available: no %s", ext[i].name);
            rc = -ENOTSUP;
        }
    }
    evn__sock_close(fd);
    return rc;
}

static int iocp_init(struct evn_loop *loop)
{
    int rc = evn__platform_init();
    if (rc < 0)
        return rc;
    struct iocp *u = evn__calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    loop->bdata = u;
    u->done_tail = &u->done_head;
    u->nt_ioctl = (nt_ioctl_fn)(void (*)(void))GetProcAddress(GetModuleHandleA("ntdll.dll"),
                                                              "NtDeviceIoControlFile");
    if (!u->nt_ioctl) {
        evn__set_errmsg("backend 'iocp' is not available: no NtDeviceIoControlFile");
        rc = -ENOTSUP;
        goto fail;
    }
    if ((rc = find_extensions(u)) < 0)
        goto fail;
    if (!(u->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1))) {
        u->port = NULL;
        rc = -ENOMEM;
        goto fail;
    }
    if (!(u->bufs = evn__malloc((size_t)BUF_COUNT * BUF_SIZE))) {
        rc = -ENOMEM;
        goto fail;
    }
    for (int i = 0; i < BUF_COUNT; i++)
        u->free_bufs[i] = BUF_COUNT - 1 - i;
    u->nfree_bufs = BUF_COUNT;
    u->ready = true;
    return 0;
fail:
    iocp_destroy(loop);
    return rc;
}

/* ---- readiness ---- */

static int iocp_add(struct evn_loop *loop, struct evn__io *io, int mask)
{
    struct iocp *u = loop->bdata;
    int err = 0;
    struct slot *s = slot_of(u, io, &err);
    if (!s)
        return err;
    io->bstate &= (uint8_t)~ST_CLOSED;
    set_masks(io, mask, ARMED(io));
    if (s->opoll.busy) {
        /* Armed for less than is wanted now: cancel, and it is armed
         * again for the whole when the cancel comes back. */
        if (mask & ~ARMED(io))
            CancelIoEx((HANDLE)(intptr_t)io->fd, &s->opoll.ov);
        return 0;
    }
    if (mask)
        arm_poll(u, io, s);
    return 0;
}

static int iocp_mod(struct evn_loop *loop, struct evn__io *io, int oldmask, int newmask)
{
    return iocp_add(loop, io, newmask);
}

static int iocp_del(struct evn_loop *loop, struct evn__io *io, int oldmask, bool closing)
{
    struct slot *s = io->bslot;
    set_masks(io, 0, ARMED(io));
    /* A poll that comes back wanted by no one is dropped; one whose socket
     * is closed next must not wait for that. */
    if (s && s->fd == io->fd && s->opoll.busy && closing)
        CancelIoEx((HANDLE)(intptr_t)io->fd, &s->opoll.ov);
    return 0;
}

/* ---- completion I/O ---- */

static void iocp_recv(struct evn_loop *loop, struct evn__io *io, bool on)
{
    struct iocp *u = loop->bdata;
    if (!on) {
        /* A zero-byte receive in flight holds nothing: it is left, and
         * dropped if it comes back while receiving is off. */
        io->bstate &= (uint8_t)~ST_RECV_WANT;
        return;
    }
    io->bstate |= ST_RECV_WANT;
    int err = 0;
    struct slot *s = slot_of(u, io, &err);
    if (s && !s->orecv.busy)
        arm_recv(u, io, s);
}

static int iocp_send(struct evn_loop *loop, struct evn__io *io, const struct iovec *iov, int n)
{
    struct iocp *u = loop->bdata;
    int err = 0;
    struct slot *s = slot_of(u, io, &err);
    if (!s)
        return err;
    WSABUF b[EVN__IOV_MAX];
    for (int i = 0; i < n; i++) {
        b[i].buf = iov[i].iov_base;
        b[i].len = (ULONG)(iov[i].iov_len > 0x40000000 ? 0x40000000 : iov[i].iov_len);
    }
    DWORD sent = 0;
    op_start(io, &s->osend);
    u->counts.sends++;
    if (WSASend((SOCKET)(intptr_t)io->fd, b, (DWORD)n, &sent, 0, &s->osend.ov, NULL) == 0) {
        if (s->skip)
            op_done_now(u, &s->osend, 0, sent, 0);
        return 0;
    }
    int e = WSAGetLastError();
    if (e != WSA_IO_PENDING)
        op_done_now(u, &s->osend, 0, 0, wsa_err(e));
    else
        watch_reset(u, io, s);
    return 0;
}

/* Arm one AcceptEx: 0, or -errno. */
static int arm_accept(struct iocp *u, struct evn__io *io, struct accept_slot *as)
{
    const struct slot *ls = io->bslot;
    int fd = socket(as->a->family, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    as->s = (SOCKET)(intptr_t)fd;
    DWORD n = 0;
    op_start(io, &as->op);
    u->counts.accepts++;
    if (u->acceptex((SOCKET)(intptr_t)io->fd, as->s, as->addrs, 0, ADDR_ROOM, ADDR_ROOM, &n,
                    &as->op.ov)) {
        if (ls->skip)
            op_done_now(u, &as->op, 0, 0, 0);
        return 0;
    }
    int e = WSAGetLastError();
    if (e == WSA_IO_PENDING)
        return 0;
    /* A connection reset while it waited, which this accept took at once:
     * it comes to reap_accept at the next wait, as from the port, and the
     * accept is armed again there. */
    if (e == WSAECONNRESET || e == WSAENOTCONN || e == WSAECONNABORTED) {
        op_done_now(u, &as->op, 0, 0, -evn__errno_of_wsa(e));
        return 0;
    }
    /* Refused at once: nothing will come for it. */
    as->op.busy = false;
    io->refs--;
    closesocket(as->s);
    as->s = INVALID_SOCKET;
    return wsa_err(e);
}

static int iocp_accept(struct evn_loop *loop, struct evn__io *io, bool on)
{
    struct iocp *u = loop->bdata;
    int err = 0;
    struct slot *s = slot_of(u, io, &err);
    if (!s)
        return err;
    struct acceptor *a = s->acc;
    if (!on) {
        io->bstate &= (uint8_t)~ST_ACCEPT_WANT;
        if (a)
            for (int i = 0; i < ACCEPTS; i++)
                if (a->slots[i].op.busy)
                    CancelIoEx((HANDLE)(intptr_t)io->fd, &a->slots[i].op.ov);
        return 0;
    }
    if (!a) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(io->fd, (struct sockaddr *)&ss, &len) < 0)
            return -errno;
        if (!(a = evn__calloc(1, sizeof *a)))
            return -ENOMEM;
        if (u->ready)
            u->counts.allocs++;
        a->io = io;
        a->family = ss.ss_family;
        for (int i = 0; i < ACCEPTS; i++) {
            a->slots[i].a = a;
            a->slots[i].op.kind = OP_ACCEPT;
            a->slots[i].s = INVALID_SOCKET;
        }
        s->acc = a;
    }
    io->bstate |= ST_ACCEPT_WANT;
    int rc = 0;
    for (int i = 0; i < ACCEPTS && rc == 0; i++)
        if (!a->slots[i].op.busy)
            rc = arm_accept(u, io, &a->slots[i]);
    /* Some armed is enough to go on; none is the caller's to handle. */
    for (int i = 0; i < ACCEPTS; i++)
        if (a->slots[i].op.busy)
            return 0;
    return rc;
}

static int iocp_close(struct evn_loop *loop, struct evn__io *io, bool keep_fd)
{
    struct iocp *u = loop->bdata;
    io->bstate = (uint8_t)((io->bstate & ~(ST_RECV_WANT | ST_ACCEPT_WANT)) | ST_CLOSED);
    io->bmask = 0;
    struct slot *s = io->bslot;
    if (s && s->fd != io->fd)
        slot_detach(u, io);
    else if (s && io->refs)
        CancelIoEx((HANDLE)(intptr_t)io->fd, NULL);
    if (!keep_fd)
        evn__sock_close(io->fd);
    if (io->refs == 0)
        slot_detach(u, io);
    return io->refs > 0;
}

/* ---- connects, files and datagrams ---- */

/* The most one TransmitFile is given (it counts in a DWORD): a larger
 * region goes in pieces, each completion starting the next. */
#define FILE_PIECE (1u << 30)
/* Room for the largest datagram, received or sent. */
#define DGRAM_SIZE 65536

#ifndef SIO_UDP_CONNRESET
#define SIO_UDP_CONNRESET _WSAIOW(IOC_VENDOR, 12)
#endif
#define NT_ACCESS_DENIED ((LONG)0xC0000022L)
#define NT_INVALID_HANDLE ((LONG)0xC0000008L)

/*
 * A UDP socket's buffers, made when it starts receiving and kept for its
 * life: the datagram being received (lent to its event, and received into
 * again once the event is handled), its sender, and the reply in flight,
 * copied here so that the caller's memory is free at once. Nothing is
 * allocated per datagram.
 */
struct dgram {
    struct evn__dgram ev;
    SOCKADDR_STORAGE from, to;
    INT fromlen;
    DWORD flags;
    char in[DGRAM_SIZE];
    char out[DGRAM_SIZE];
};

/* The Winsock error of an operation the system ended with a failure:
 * Winsock's own reading of its status. */
static int op_wsa_code(const struct slot *s, struct op *op)
{
    DWORD n = 0, flags = 0;
    if (WSAGetOverlappedResult((SOCKET)(intptr_t)s->fd, &op->ov, &n, FALSE, &flags))
        return 0;
    return WSAGetLastError();
}

/* A file that cannot be read (not open for reading, or not open at all)
 * is EBADF, as sendfile(2) says; the socket's errors as a send's. */
static int file_err(int e)
{
    if (e == WSAEACCES || e == ERROR_ACCESS_DENIED || e == ERROR_INVALID_HANDLE)
        return -EBADF;
    return wsa_err(e);
}

/*
 * ConnectEx, which wants the socket bound first (to any address of its
 * family). A connect always has a new socket, whose number may be an
 * earlier one's (a dial's next address): it gets a slot of its own, tied to
 * the port anew, the old one left to what it still has in flight.
 */
static int iocp_connect_to(struct evn_loop *loop, struct evn__io *io, const struct sockaddr *sa,
                           socklen_t len)
{
    struct iocp *u = loop->bdata;
    struct slot *s = io->bslot;
    if (s)
        slot_detach(u, io);
    int err = 0;
    if (!(s = slot_of(u, io, &err)))
        return err;
    struct sockaddr_storage any;
    memset(&any, 0, sizeof any);
    any.ss_family = sa->sa_family;
    socklen_t alen =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(io->fd, (struct sockaddr *)&any, alen) < 0) {
        err = -errno;
        slot_detach(u, io);
        return err;
    }
    struct op *op = &s->osend;
    DWORD sent = 0;
    op_start(io, op);
    op->kind = OP_CONNECT;
    u->counts.connects++;
    if (u->connectex((SOCKET)(intptr_t)io->fd, sa, (int)len, NULL, 0, &sent, &op->ov)) {
        if (s->skip)
            op_done_now(u, op, 0, 0, 0);
        return 0;
    }
    int e = WSAGetLastError();
    if (e == WSA_IO_PENDING)
        return 0;
    /* Refused at once: nothing will come for it, and the caller closes
     * the socket, so the slot must not stay with its number. */
    op->busy = false;
    op->kind = OP_SEND;
    io->refs--;
    slot_detach(u, io);
    return -evn__errno_of_wsa(e);
}

/* TransmitFile of up to FILE_PIECE bytes from offset, the file's place
 * given in the OVERLAPPED as the system reads it for a file. A file that
 * cannot be read is refused at once. */
static int iocp_send_file(struct evn_loop *loop, struct evn__io *io, int fd, int64_t offset,
                          size_t len)
{
    struct iocp *u = loop->bdata;
    int err = 0;
    struct slot *s = slot_of(u, io, &err);
    if (!s)
        return err;
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    if (h == INVALID_HANDLE_VALUE)
        return -EBADF;
    /* Wine's TransmitFile reads a file opened for writing only, which
     * Windows refuses: asked here, so that both say EBADF. */
    int mode = fcntl(fd, F_GETFL);
    if (mode < 0 || (mode & O_ACCMODE) == O_WRONLY)
        return -EBADF;
    DWORD n = (DWORD)(len > FILE_PIECE ? FILE_PIECE : len);
    struct op *op = &s->osend;
    op_start(io, op);
    op->kind = OP_FILE;
    op->ov.Offset = (DWORD)((uint64_t)offset & 0xffffffffu);
    op->ov.OffsetHigh = (DWORD)((uint64_t)offset >> 32);
    u->counts.files++;
    if (u->transmitfile((SOCKET)(intptr_t)io->fd, h, n, 0, &op->ov, NULL, 0)) {
        if (s->skip)
            op_done_now(u, op, 0, op->ov.InternalHigh, 0);
        return 0;
    }
    int e = WSAGetLastError();
    if (e != WSA_IO_PENDING)
        op_done_now(u, op, 0, 0, file_err(e));
    else
        watch_reset(u, io, s);
    return 0;
}

/* WSARecvFrom into the socket's datagram buffer. */
static void arm_dgram_recv(struct iocp *u, struct evn__io *io, struct slot *s)
{
    struct dgram *d = s->dg;
    WSABUF b = {DGRAM_SIZE, d->in};
    DWORD got = 0;
    d->flags = 0;
    d->fromlen = (INT)sizeof d->from;
    op_start(io, &s->orecv);
    u->counts.dgram_recvs++;
    if (WSARecvFrom((SOCKET)(intptr_t)io->fd, &b, 1, &got, &d->flags, (struct sockaddr *)&d->from,
                    &d->fromlen, &s->orecv.ov, NULL) == 0) {
        if (s->skip)
            op_done_now(u, &s->orecv, 0, got, 0);
        return;
    }
    int e = WSAGetLastError();
    if (e != WSA_IO_PENDING)
        op_done_now(u, &s->orecv, 0, 0, -evn__errno_of_wsa(e));
}

/*
 * Receive datagrams on a UDP socket. Windows reports an ICMP port
 * unreachable, which a reply to a client gone may bring, as a reset of
 * the next receive; a server has nothing to do with it, so it is turned
 * off (Wine may not know the option: nothing is lost then).
 */
static int iocp_recv_dgram(struct evn_loop *loop, struct evn__io *io, bool on)
{
    struct iocp *u = loop->bdata;
    struct slot *s = io->bslot;
    if (!on) {
        /* A receive in flight would take a datagram for no one. */
        io->bstate &= (uint8_t)~ST_RECV_WANT;
        if (s && s->fd == io->fd && s->orecv.busy)
            CancelIoEx((HANDLE)(intptr_t)io->fd, &s->orecv.ov);
        return 0;
    }
    int err = 0;
    if (!(s = slot_of(u, io, &err)))
        return err;
    if (!s->dg) {
        if (!(s->dg = evn__malloc(sizeof *s->dg)))
            return -ENOMEM;
        if (u->ready)
            u->counts.allocs++;
        s->orecv.kind = OP_DGRAM_RECV;
        s->osend.kind = OP_DGRAM_SEND;
        BOOL off = FALSE;
        DWORD n = 0;
        WSAIoctl((SOCKET)(intptr_t)io->fd, SIO_UDP_CONNRESET, &off, sizeof off, NULL, 0, &n, NULL,
                 NULL);
    }
    io->bstate |= ST_RECV_WANT;
    if (!s->orecv.busy)
        arm_dgram_recv(u, io, s);
    return 0;
}

/* WSASendTo of one datagram, copied first; one send in flight at a time. */
static int iocp_send_dgram(struct evn_loop *loop, struct evn__io *io, const struct iovec *iov,
                           int n, const struct sockaddr *to, socklen_t tolen)
{
    struct iocp *u = loop->bdata;
    struct slot *s = io->bslot;
    if (!s || s->fd != io->fd || !s->dg)
        return -ENOTCONN;
    if (s->osend.busy)
        return -EAGAIN;
    struct dgram *d = s->dg;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len > DGRAM_SIZE - len)
            return -EMSGSIZE;
        memcpy(d->out + len, iov[i].iov_base, iov[i].iov_len);
        len += iov[i].iov_len;
    }
    if ((size_t)tolen > sizeof d->to)
        return -EINVAL;
    memcpy(&d->to, to, (size_t)tolen);
    WSABUF b = {(ULONG)len, d->out};
    DWORD sent = 0;
    op_start(io, &s->osend);
    u->counts.dgram_sends++;
    if (WSASendTo((SOCKET)(intptr_t)io->fd, &b, 1, &sent, 0, (struct sockaddr *)&d->to, (int)tolen,
                  &s->osend.ov, NULL) == 0) {
        if (s->skip)
            op_done_now(u, &s->osend, 0, sent, 0);
        return (int)len;
    }
    int e = WSAGetLastError();
    if (e == WSA_IO_PENDING)
        return (int)len;
    s->osend.busy = false;
    io->refs--;
    return -evn__errno_of_wsa(e);
}

/* ---- waiting, and what came ---- */

static void emit(struct evn_loop *loop, struct iocp *u, struct evn__fired f)
{
    loop->fired[u->n++] = f;
}

/* A reference to io is dropped: a closed handle nothing refers to any more
 * is released, and its slot goes back to the free list. */
static void unref(struct evn_loop *loop, struct iocp *u, struct evn__io *io)
{
    if (--io->refs == 0 && (io->bstate & ST_CLOSED)) {
        slot_detach(u, io);
        emit(loop, u, (struct evn__fired){.io = io, .ev = EVN__RELEASED});
    }
}

/*
 * The events of the last wait have been handled: take their buffers back,
 * arm again the receives and polls still wanted, and drop their
 * references, which may release closed handles (whose EVN__RELEASED events
 * start the next batch, written over the old one as the io_uring backend
 * does: each old event is read before anything is written at its place).
 */
static void batch_done(struct evn_loop *loop, struct iocp *u)
{
    int old = u->n;
    u->n = 0;
    for (int i = 0; i < old; i++) {
        struct evn__fired f = loop->fired[i];
        if (f.ev == EVN__RELEASED || f.ev == EVN__ACCEPTED) {
            if (f.ev == EVN__ACCEPTED)
                unref(loop, u, f.io);
            continue;
        }
        struct evn__io *io = f.io;
        struct slot *s = io->bslot;
        bool live = s && s->fd == io->fd && !(io->bstate & ST_CLOSED);
        if (f.ev == EVN__RECEIVED) {
            if (f.res > 0)
                buf_put(u, (int)(((char *)f.buf - u->bufs) / BUF_SIZE));
            /* After the end of input, or with receiving turned off by the
             * event (output above high water, a close), no receive is armed
             * again. */
            if (f.res > 0 && live && (io->bstate & ST_RECV_WANT) && !s->orecv.busy)
                arm_recv(u, io, s);
            else if (f.res >= 0 && live)
                watch_reset(u, io, s);
        } else if ((f.ev & (EVN__READ | EVN__WRITE)) && live && WANTED(io) && !s->opoll.busy) {
            arm_poll(u, io, s);
        } else if (f.ev == EVN__DATAGRAM && live && (io->bstate & ST_RECV_WANT) && !s->orecv.busy) {
            arm_dgram_recv(u, io, s);
        }
        unref(loop, u, io);
    }
}

/* A receive into a buffer is over: what came, the end or the error is the
 * event's, even while receiving is off (conn.c keeps what comes then). */
static void reap_recv_buf(struct evn_loop *loop, struct iocp *u, struct slot *s, LONG st)
{
    struct evn__io *io = s->io;
    char *buf = buf_at(u, s->rbuf - 1);
    s->orecv.busy = false;
    if (st == NT_CANCELLED || (io->bstate & ST_CLOSED)) {
        recv_buf_put(u, s);
        unref(loop, u, io);
        return;
    }
    int res = s->orecv.err ? s->orecv.err : st ? nt_errno(st) : (int)s->orecv.ov.InternalHigh;
    struct evn__fired f = {.io = io, .ev = EVN__RECEIVED, .res = res};
    if (res > 0) {
        /* Lent to the event: batch_done takes it back. */
        s->rbuf = 0;
        f.buf = buf;
    } else {
        recv_buf_put(u, s);
    }
    /* The event keeps the operation's reference. */
    emit(loop, u, f);
}

/* A zero-byte receive is over: read what came, or the end, or the error.
 * false: no buffer is free this turn; the receive waits for the next. */
static bool reap_recv(struct evn_loop *loop, struct iocp *u, struct slot *s, LONG st)
{
    struct evn__io *io = s->io;
    if (s->rbuf) {
        reap_recv_buf(loop, u, s, st);
        return true;
    }
    /* The connection is broken (reset, aborted): said at once, even while
     * receiving is off, since nothing else may tell (Wine leaves a send
     * in flight on a reset socket pending). */
    if (st != 0 && st != NT_CANCELLED && !(io->bstate & ST_CLOSED)) {
        s->orecv.busy = false;
        emit(loop, u, (struct evn__fired){.io = io, .ev = EVN__RECEIVED, .res = nt_errno(st)});
        return true;
    }
    if (st == NT_CANCELLED || (io->bstate & ST_CLOSED) || !(io->bstate & ST_RECV_WANT)) {
        s->orecv.busy = false;
        if (st == 0)
            watch_reset(u, io, s);
        unref(loop, u, io);
        return true;
    }
    if (u->nfree_bufs == 0)
        return false;
    s->orecv.busy = false;
    char *buf = buf_at(u, u->free_bufs[u->nfree_bufs - 1]);
    u->counts.recvs++;
    ssize_t n = recv(io->fd, buf, BUF_SIZE, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        /* Nothing after all: wait again. */
        arm_recv(u, io, s);
        unref(loop, u, io);
        return true;
    }
    struct evn__fired f = {.io = io, .ev = EVN__RECEIVED, .res = n < 0 ? -errno : (int)n};
    if (n > 0) {
        u->nfree_bufs--;
        f.buf = buf;
    }
    /* The event keeps the operation's reference; the receive is armed
     * again after it, if still wanted. */
    emit(loop, u, f);
    return true;
}

/* Arm as again after its accept came back. A failure (no descriptor left)
 * is told to the listener, which pauses accepting, by an event that holds
 * a reference of its own: reap has room for two events. */
static void rearm_accept(struct evn_loop *loop, struct iocp *u, struct evn__io *io,
                         struct accept_slot *as)
{
    int rc = arm_accept(u, io, as);
    if (rc < 0 && u->n + 1 <= loop->nfired_cap) {
        emit(loop, u,
             (struct evn__fired){.io = io, .ev = EVN__ACCEPTED, .res = rc, .buf = &u->peers[u->n]});
        io->refs++;
    }
}

static void reap_accept(struct evn_loop *loop, struct iocp *u, struct accept_slot *as, LONG st,
                        int err)
{
    struct evn__io *io = as->a->io;
    SOCKET s = as->s;
    as->s = INVALID_SOCKET;
    as->op.busy = false;
    if (st == 0 && !err && !(io->bstate & ST_CLOSED)) {
        SOCKET l = (SOCKET)(intptr_t)io->fd;
        u_long on = 1;
        setsockopt((int)s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (const char *)&l, sizeof l);
        ioctlsocket(s, FIONBIO, &on);
        struct sockaddr *local, *remote;
        int llen = 0, rlen = 0;
        u->acceptex_addrs(as->addrs, 0, ADDR_ROOM, ADDR_ROOM, &local, &llen, &remote, &rlen);
        struct evn__peer *peer = &u->peers[u->n];
        memset(peer, 0, sizeof *peer);
        if (remote && rlen > 0) {
            size_t k = (size_t)rlen < sizeof peer->addr ? (size_t)rlen : sizeof peer->addr;
            memcpy(&peer->addr, remote, k);
            peer->len = (socklen_t)k;
        }
        emit(loop, u,
             (struct evn__fired){.io = io, .ev = EVN__ACCEPTED, .res = (int)s, .buf = peer});
        /* The event keeps this accept's reference; the slot is armed anew. */
        if (io->bstate & ST_ACCEPT_WANT)
            rearm_accept(loop, u, io, as);
        return;
    }
    if (s != INVALID_SOCKET)
        closesocket(s);
    int rc = err ? err : nt_errno(st);
    if ((io->bstate & (ST_ACCEPT_WANT | ST_CLOSED)) != ST_ACCEPT_WANT || rc == -ECANCELED) {
        unref(loop, u, io);
        return;
    }
    /* Most often a peer gone before its accept was taken: the listener is
     * told, with this accept's reference, and the accept armed again. */
    emit(loop, u,
         (struct evn__fired){.io = io, .ev = EVN__ACCEPTED, .res = rc, .buf = &u->peers[u->n]});
    rearm_accept(loop, u, io, as);
}

/*
 * A connect or a file's piece is over. A connect that succeeded gets
 * SO_UPDATE_CONNECT_CONTEXT (or getpeername, shutdown and the rest fail
 * on it); a piece that sent nothing met the end of the file (it was cut
 * short since): an error, as a pread finding nothing is.
 */
static void reap_send_other(struct evn_loop *loop, struct iocp *u, struct slot *s, LONG st)
{
    struct evn__io *io = s->io;
    struct op *op = &s->osend;
    int kind = op->kind;
    op->busy = false;
    op->kind = OP_SEND;
    if (io->bstate & ST_CLOSED) {
        unref(loop, u, io);
        return;
    }
    int res;
    if (kind == OP_CONNECT) {
        res = op->err ? op->err : st ? -evn__errno_of_wsa(op_wsa_code(s, op)) : 0;
        if (res == 0 && setsockopt(io->fd, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) < 0)
            res = -errno;
        emit(loop, u, (struct evn__fired){.io = io, .ev = EVN__CONNECTED, .res = res});
        return;
    }
    if (op->err)
        res = op->err;
    else if (st == NT_ACCESS_DENIED || st == NT_INVALID_HANDLE)
        res = -EBADF;
    else if (st)
        res = file_err(op_wsa_code(s, op));
    else
        res = op->ov.InternalHigh ? (int)op->ov.InternalHigh : -EIO;
    emit(loop, u, (struct evn__fired){.io = io, .ev = EVN__SENT, .res = res});
}

/* A datagram came (or the receive failed), or a reply's send is over
 * (nothing to tell: UDP says nothing of a datagram lost either). */
static void reap_dgram(struct evn_loop *loop, struct iocp *u, struct slot *s, struct op *op,
                       LONG st)
{
    struct evn__io *io = s->io;
    op->busy = false;
    if (op->kind == OP_DGRAM_SEND || (io->bstate & ST_CLOSED) || st == NT_CANCELLED ||
        !(io->bstate & ST_RECV_WANT)) {
        unref(loop, u, io);
        return;
    }
    struct dgram *d = s->dg;
    int res = op->err ? op->err
              : st    ? -evn__errno_of_wsa(op_wsa_code(s, op))
                      : (int)op->ov.InternalHigh;
    size_t k =
        d->fromlen > 0 && (size_t)d->fromlen <= sizeof d->ev.from.addr ? (size_t)d->fromlen : 0;
    memcpy(&d->ev.from.addr, &d->from, k);
    d->ev.from.len = (socklen_t)k;
    d->ev.data = d->in;
    /* The event keeps the receive's reference; it is armed again after. */
    emit(loop, u, (struct evn__fired){.io = io, .ev = EVN__DATAGRAM, .res = res, .buf = &d->ev});
}

/* Turn one finished operation into an event, or see to it here. false: it
 * must wait for the next turn. */
static bool reap(struct evn_loop *loop, struct iocp *u, struct op *op)
{
    LONG st = (LONG)op->ov.Internal;
    if (op->kind == OP_ACCEPT) {
        reap_accept(loop, u, (struct accept_slot *)(void *)op, st, op->err);
        return true;
    }
    struct slot *s = slot_of_op(op);
    if (!s->io) {
        /* Orphaned: its handle has another socket, or none. */
        op->busy = false;
        if (op == &s->orecv)
            recv_buf_put(u, s);
        if (!busy_ops(s))
            slot_free(u, s);
        return true;
    }
    struct evn__io *io = s->io;
    switch (op->kind) {
    case OP_RECV:
        return reap_recv(loop, u, s, st);
    case OP_CONNECT:
    case OP_FILE:
        reap_send_other(loop, u, s, st);
        return true;
    case OP_DGRAM_RECV:
    case OP_DGRAM_SEND:
        reap_dgram(loop, u, s, op, st);
        return true;
    case OP_SEND:
        op->busy = false;
        if (io->bstate & ST_CLOSED)
            break;
        emit(loop, u,
             (struct evn__fired){.io = io,
                                 .ev = EVN__SENT,
                                 .res = op->err ? op->err
                                        : st    ? nt_errno(st)
                                                : (int)op->ov.InternalHigh});
        return true;
    case OP_POLL: {
        op->busy = false;
        set_masks(io, WANTED(io), 0);
        bool watch = io->bstate & ST_WATCH;
        io->bstate &= (uint8_t)~ST_WATCH;
        if (io->bstate & ST_CLOSED)
            break;
        int want = WANTED(io), ev = 0;
        ULONG got = s->pinfo.h[0].events;
        if (watch && !want && st == 0 && (got & AFD_POLL_ABORT)) {
            /* The event keeps the poll's reference. */
            emit(loop, u, (struct evn__fired){.io = io, .ev = EVN__RECEIVED, .res = -ECONNRESET});
            return true;
        }
        if (st == 0) {
            if ((got & (AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT)) &&
                (want & EVN__READ))
                ev |= EVN__READ;
            if ((got & AFD_POLL_SEND) && (want & EVN__WRITE))
                ev |= EVN__WRITE;
            /* Errors come as readability, as from poll(2), and wake a
             * writer too (a connect that failed). */
            if (got & (AFD_POLL_ABORT | AFD_POLL_CONNECT_FAIL | AFD_POLL_LOCAL_CLOSE))
                ev |= EVN__READ | (want & EVN__WRITE);
        } else if (st != NT_CANCELLED) {
            ev = EVN__READ | (want & EVN__WRITE);
        }
        if (!ev || !want) {
            /* Cancelled to be widened, or wanted by no one any more. */
            if (want)
                arm_poll(u, io, s);
            break;
        }
        emit(loop, u, (struct evn__fired){.io = io, .ev = ev});
        return true;
    }
    }
    unref(loop, u, io);
    return true;
}

static int iocp_wait(struct evn_loop *loop, int timeout_ms)
{
    struct iocp *u = loop->bdata;
    batch_done(loop, u);
    if (u->n || u->done_head)
        timeout_ms = 0;
    /* What finished at once, first: then what the port has. */
    struct op *list = u->done_head;
    u->done_head = NULL;
    u->done_tail = &u->done_head;
    struct op *later = NULL, **later_tail = &later;
    while (list) {
        struct op *op = list;
        list = op->next;
        op->next = NULL;
        if (u->n + 2 > loop->nfired_cap || !reap(loop, u, op)) {
            *later_tail = op;
            later_tail = &op->next;
        }
    }
    /* What could not be taken goes first next time, before what this turn
     * queues. */
    if (later) {
        *later_tail = u->done_head;
        if (!u->done_head)
            u->done_tail = later_tail;
        u->done_head = later;
        timeout_ms = 0;
    }
    /* With events at hand (a send that finished at once, say), asking the
     * port would cost a call that finds nothing as often as not: it is
     * asked every other turn, so that what it holds waits one turn at
     * most. */
    if (u->n && u->polled) {
        u->polled = false;
        return u->n;
    }
    if (u->n)
        timeout_ms = 0;
    ULONG room = (ULONG)((loop->nfired_cap - u->n) / 2);
    if (room > sizeof u->entries / sizeof u->entries[0])
        room = sizeof u->entries / sizeof u->entries[0];
    if (room == 0)
        return u->n;
    u->polled = true;
    ULONG got = 0;
    u->counts.waits++;
    if (!GetQueuedCompletionStatusEx(u->port, u->entries, room, &got,
                                     timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms, FALSE)) {
        DWORD e = GetLastError();
        if (e != WAIT_TIMEOUT && e != WAIT_IO_COMPLETION)
            return -EIO;
        got = 0;
    }
    u->counts.completions += got;
    for (ULONG i = 0; i < got; i++) {
        struct op *op = (struct op *)(void *)u->entries[i].lpOverlapped;
        if (!op) {
            if (u->entries[i].lpCompletionKey == WAKE_KEY) {
                loop->wake_io.refs++;
                emit(loop, u, (struct evn__fired){.io = &loop->wake_io, .ev = EVN__READ});
            }
            continue;
        }
        op->ov.InternalHigh = u->entries[i].dwNumberOfBytesTransferred;
        op->err = 0;
        if (!reap(loop, u, op)) {
            op->next = NULL;
            *u->done_tail = op;
            u->done_tail = &op->next;
        }
    }
    return u->n;
}

/*
 * Wait until no operation of the loop's is in flight any more: cancel
 * them all, close the sockets accepts were armed with, and take the
 * completions, which nobody reports any more. The memory the system writes
 * their results into may be freed only then. Returns how many are still in
 * flight after 200 waits of 10 ms (2 s; a cancel ends an operation within
 * one turn of the system's): 0 but for a system that never ends one.
 */
static int drain(struct evn_loop *loop, struct iocp *u)
{
    if (!u->port)
        return 0;
    for (int round = 0;; round++) {
        int busy = 0;
        for (struct slot_block *b = u->blocks; b; b = b->next) {
            for (int i = 0; i < SLOTS_PER_BLOCK; i++) {
                struct slot *s = &b->s[i];
                int n = busy_ops(s);
                if (s->acc)
                    for (int k = 0; k < ACCEPTS; k++)
                        n += s->acc->slots[k].op.busy;
                if (n && round == 0 && slot_open(s))
                    CancelIoEx((HANDLE)(intptr_t)s->fd, NULL);
                busy += n;
            }
        }
        /* Over at once: nothing of the system's refers to them. */
        for (struct op *op = u->done_head; op; op = op->next) {
            op->busy = false;
            if (op->kind == OP_ACCEPT) {
                struct accept_slot *as = (struct accept_slot *)(void *)op;
                if (as->s != INVALID_SOCKET)
                    closesocket(as->s);
                as->s = INVALID_SOCKET;
            }
        }
        u->done_head = NULL;
        u->done_tail = &u->done_head;
        if (!busy || round == 200)
            return busy;
        ULONG got = 0;
        if (!GetQueuedCompletionStatusEx(u->port, u->entries,
                                         sizeof u->entries / sizeof u->entries[0], &got, 10, FALSE))
            got = 0;
        for (ULONG i = 0; i < got; i++) {
            struct op *op = (struct op *)(void *)u->entries[i].lpOverlapped;
            if (!op)
                continue;
            op->busy = false;
            if (op->kind == OP_ACCEPT) {
                struct accept_slot *as = (struct accept_slot *)(void *)op;
                if (as->s != INVALID_SOCKET)
                    closesocket(as->s);
                as->s = INVALID_SOCKET;
            }
        }
    }
}

/*
 * The loop is done: no more accepts, and a socket one took meanwhile is
 * closed; what else is in flight is cancelled and waited for, so that the
 * peers see their sockets close now. What comes back is reported to no
 * one.
 */
static void iocp_stop(struct evn_loop *loop)
{
    struct iocp *u = loop->bdata;
    for (struct slot_block *b = u->blocks; b; b = b->next) {
        for (int i = 0; i < SLOTS_PER_BLOCK; i++) {
            struct slot *s = &b->s[i];
            if (!s->acc || !slot_open(s))
                continue;
            s->io->bstate &= (uint8_t)~ST_ACCEPT_WANT;
            for (int k = 0; k < ACCEPTS; k++)
                if (s->acc->slots[k].op.busy)
                    CancelIoEx((HANDLE)(intptr_t)s->fd, &s->acc->slots[k].op.ov);
        }
    }
    drain(loop, u);
}

/* Any thread: one wake, which the inbox takes as readability of its
 * descriptor, without the descriptor. */
static void iocp_wake(struct evn_loop *loop)
{
    struct iocp *u = loop->bdata;
    PostQueuedCompletionStatus(u->port, 0, WAKE_KEY, NULL);
}

const struct evn__backend evn__backend_iocp = {
    .name = "iocp",
    .init = iocp_init,
    .destroy = iocp_destroy,
    .add = iocp_add,
    .mod = iocp_mod,
    .del = iocp_del,
    .wait = iocp_wait,
    .recv = iocp_recv,
    .send = iocp_send,
    .accept = iocp_accept,
    .close = iocp_close,
    .stop = iocp_stop,
    .wake = iocp_wake,
    .connect_to = iocp_connect_to,
    .send_file = iocp_send_file,
    .recv_dgram = iocp_recv_dgram,
    .send_dgram = iocp_send_dgram,
};

void evn__iocp_counts(struct evn_server *srv, struct evn__iocp_counts *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < srv->nloops; i++) {
        if (srv->loops[i].be != &evn__backend_iocp || !srv->loops[i].bdata)
            continue;
        const struct evn__iocp_counts *c = &((struct iocp *)srv->loops[i].bdata)->counts;
        out->waits += c->waits;
        out->completions += c->completions;
        out->inline_done += c->inline_done;
        out->recv_posts += c->recv_posts;
        out->recv_zero += c->recv_zero;
        out->recvs += c->recvs;
        out->sends += c->sends;
        out->polls += c->polls;
        out->accepts += c->accepts;
        out->allocs += c->allocs;
        out->connects += c->connects;
        out->files += c->files;
        out->dgram_recvs += c->dgram_recvs;
        out->dgram_sends += c->dgram_sends;
    }
}

typedef LONG(NTAPI *nt_query_completion_fn)(HANDLE, int, PVOID, ULONG, PULONG);

long evn__iocp_queued(struct evn_server *srv)
{
    nt_query_completion_fn query = (nt_query_completion_fn)(void (*)(void))GetProcAddress(
        GetModuleHandleA("ntdll.dll"), "NtQueryIoCompletion");
    if (!query)
        return -1;
    long total = 0;
    for (int i = 0; i < srv->nloops; i++) {
        const struct iocp *u = srv->loops[i].bdata;
        if (srv->loops[i].be != &evn__backend_iocp || !u || !u->port)
            continue;
        LONG depth = 0; /* IO_COMPLETION_BASIC_INFORMATION (class 0) */
        if (query(u->port, 0, &depth, sizeof depth, NULL) != 0)
            return -1;
        total += depth;
    }
    return total;
}
