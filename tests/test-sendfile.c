/*
 * evn_sendfile: file regions queued among ordinary writes arrive byte-exact
 * and in order (a 64 MB file between a header and a trailer; random regions
 * from the middle of the file between random writes); a reader with a tiny
 * receive window still gets everything, with flow control counting the
 * file's bytes; the caller may close its descriptor at once; a file queued
 * for another connection of the loop goes out too; bad arguments are
 * refused; a peer that goes away closes the connection with an error and
 * leaves no descriptor behind, without a SIGPIPE even when sendfile(2) meets
 * EPIPE; and over TLS the same file arrives decrypted.
 *
 * evn_sendfile_owned: the same regions through descriptors handed to evn
 * arrive as byte-exact, and evn closes each descriptor once its region is
 * sent, when the peer goes away first, and at once on every refusal (bad
 * region, not a regular file, UDP, a connection shut down, out of memory,
 * out_cap), checked both on the number right after the call and by the
 * runner's fd leak check; one not open for reading closes the connection
 * with -EBADF when its turn comes.
 *
 * Sizes and offsets past 32 bits: a region of more than 1 GiB (two
 * TransmitFile calls on iocp, counted) and one at an offset past 4 GiB
 * arrive byte-exact, from a sparse file.
 */
#include "harness.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef _WIN32
#include <signal.h>
#include <sys/time.h>
#endif
#ifdef EVN_HAVE_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#define FILE_SIZE (64u << 20)

static char file_path[256];
static int file_fd = -1;

static bool make_file(void)
{
    th_tmppath(file_path, sizeof file_path, "data.bin");
    int fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    th_rng rng;
    th_rng_init(&rng, th_seed());
    static uint64_t block[1 << 17]; /* 1 MiB */
    for (size_t done = 0; done < FILE_SIZE; done += sizeof block) {
        for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
            block[i] = th_rng_next(&rng);
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block) {
            close(fd);
            return false;
        }
    }
    close(fd);
    file_fd = open(file_path, O_RDONLY | O_CLOEXEC);
    return file_fd >= 0;
}

/* ---- the server: runs a plan of writes and file regions on first input ---- */

enum { P_WRITE, P_FILE, P_FILE_OWN_FD, P_FILE_OWNED, P_FILE_OWNED_WONLY, P_FILE_BIG };

/* The sparse file of test_big_regions, zeros but for
 * BIG_MARK random bytes at each of big_at[]. */
#define BIG_MARK 4096
static char big_path[256];
static int big_fd = -1;
static evn_off_t big_at[4];
static unsigned char big_mark[4][BIG_MARK];
static int big_nat;

struct piece {
    int type;
    const char *str; /* P_WRITE */
    size_t slen;
    off_t off; /* P_FILE*: len 0 means to the end of the file */
    size_t len;
};

struct state {
    struct piece plan[128];
    int nplan;
    bool close_after;
    bool to_first; /* run the plan on the first connection, from the second's input */
    th_counter opened, closed, drained, ran, checked;
    atomic_int close_err, full_after, plan_rc;
    atomic_size_t pending_after;
    evn_conn *first;
    int bad[16];       /* stream connection, written before opened is counted */
    bool bad_open[16]; /* evn_sendfile_owned: the descriptor still open after */
    int nbad;
    atomic_int udp_rc;
    atomic_bool udp_open;
    int owned[8]; /* descriptors handed to evn by run_plan */
    int nowned;
    atomic_int owned_open; /* of those, still open once all was read; -1 before */
    atomic_long files;     /* iocp: TransmitFile calls when the connection closed */
};

/* Whether descriptor fd is open, right after it was handed to evn (no other
 * thread opens anything meanwhile, so the number is not reused). */
static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static size_t piece_len(const struct piece *p)
{
    if (p->type == P_WRITE)
        return p->slen;
    return p->len ? p->len : FILE_SIZE - (size_t)p->off;
}

static size_t plan_len(const struct state *s)
{
    size_t n = 0;
    for (int i = 0; i < s->nplan; i++)
        n += piece_len(&s->plan[i]);
    return n;
}

static void add_write(struct state *s, const char *str, size_t len)
{
    s->plan[s->nplan++] = (struct piece){.type = P_WRITE, .str = str, .slen = len};
}

static void add_file(struct state *s, int type, off_t off, size_t len)
{
    s->plan[s->nplan++] = (struct piece){.type = type, .off = off, .len = len};
}

static int run_plan(evn_conn *c, struct state *s)
{
    for (int i = 0; i < s->nplan; i++) {
        const struct piece *p = &s->plan[i];
        int rc;
        if (p->type == P_WRITE) {
            rc = evn_write(c, p->str, p->slen);
        } else if (p->type == P_FILE) {
            rc = evn_sendfile(c, file_fd, p->off, p->len);
        } else if (p->type == P_FILE_BIG) {
            rc = evn_sendfile(c, big_fd, p->off, p->len);
        } else if (p->type == P_FILE_OWN_FD) {
            /* evn keeps its own descriptor: ours may go at once. */
            int fd = open(file_path, O_RDONLY | O_CLOEXEC);
            rc = evn_sendfile(c, fd, p->off, p->len);
            close(fd);
        } else {
            /* evn takes this one: never closed here. */
            int mode = p->type == P_FILE_OWNED ? O_RDONLY : O_WRONLY;
            int fd = open(file_path, mode | O_CLOEXEC);
            if (s->nowned < (int)(sizeof s->owned / sizeof s->owned[0]))
                s->owned[s->nowned++] = fd;
            rc = evn_sendfile_owned(c, fd, p->off, p->len);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    if (!s->first)
        s->first = c;
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (!in)
        return EVN_NONE;
    if (th_counter_get(&s->ran) > 0) {
        /* Input after the plan ran: the client has read it all, so all of it
         * was sent. How many of the descriptors handed to evn are open? */
        int open_n = 0;
        for (int i = 0; i < s->nowned; i++)
            open_n += fd_open(s->owned[i]);
        atomic_store(&s->owned_open, open_n);
        th_counter_add(&s->checked, 1);
        return EVN_NONE;
    }
    evn_conn *to = s->to_first ? s->first : c;
    if (s->to_first && to == c)
        return EVN_NONE;
    atomic_store(&s->plan_rc, run_plan(to, s));
    atomic_store(&s->pending_after, evn_conn_pending(to));
    atomic_store(&s->full_after, evn_conn_full(to));
    th_counter_add(&s->ran, 1);
    if (s->close_after && to == c)
        return EVN_CLOSE;
    if (s->close_after)
        evn_conn_shutdown_write(to);
    return EVN_NONE;
}

static evn_action on_drained(evn_conn *c)
{
    th_counter_add(&S(c)->drained, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (c == s->first)
        s->first = NULL;
#ifdef _WIN32
    /* The server has one loop, this one, which may count on its thread. */
    struct evn__iocp_counts n;
    evn__iocp_counts(evn_conn_server(c), &n);
    atomic_store(&s->files, n.files);
#endif
    atomic_store(&s->close_err, err);
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static void state_init(struct state *s)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->drained);
    th_counter_init(&s->ran);
    th_counter_init(&s->checked);
    s->close_after = true;
    atomic_store(&s->owned_open, -1);
}

static void start(th_server *ts, struct state *s, evn_events *ev, const char *addr)
{
    ev->udata = s;
    ev->opened = on_opened;
    ev->data = on_data;
    ev->drained = on_drained;
    ev->closed = on_closed;
    th_server_start(ts, ev, &addr, 1);
}

/* start on loopback, connect, and send the input that runs the plan; the
 * client's socket. */
static int start_go(th_server *ts, struct state *s, evn_events *ev)
{
    start(ts, s, ev, "tcp://127.0.0.1:0");
    int fd = th_connect_srv(ts, 0);
    th_write_str(fd, "go");
    return fd;
}

static void stop(th_server *ts, struct state *s)
{
    th_server_stop(ts);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->drained);
    th_counter_destroy(&s->ran);
    th_counter_destroy(&s->checked);
}

/* ---- the client: reads the plan's bytes and checks each ---- */

typedef ssize_t (*read_fn)(void *io, void *buf, size_t len);

static ssize_t plain_read(void *io, void *buf, size_t len)
{
    return th_read_exact(*(int *)io, buf, len);
}

/* Read the whole plan, comparing as it goes; step is the most read at once. */
static void expect_plan(read_fn rd, void *io, const struct state *s, size_t step)
{
    static char got[1 << 20], want[1 << 20];
    if (step > sizeof got)
        step = sizeof got;
    size_t at = 0;
    for (int i = 0; i < s->nplan; i++) {
        const struct piece *p = &s->plan[i];
        size_t len = piece_len(p);
        for (size_t pos = 0; pos < len;) {
            size_t n = len - pos < step ? len - pos : step;
            ssize_t r = rd(io, got, n);
            if (r != (ssize_t)n) {
                th_fail_(__FILE__, __LINE__, false,
                         "piece %d: read %zd of %zu at stream offset %zu", i, r, n, at);
                return;
            }
            if (p->type == P_WRITE)
                memcpy(want, p->str + pos, n);
            else if (pread(file_fd, want, n, p->off + (off_t)pos) != (ssize_t)n)
                th_fail_(__FILE__, __LINE__, true, "pread: %s", strerror(errno));
            if (memcmp(got, want, n) != 0) {
                size_t k = 0;
                while (got[k] == want[k])
                    k++;
                th_fail_(__FILE__, __LINE__, false,
                         "piece %d (%s): wrong byte at stream offset %zu", i,
                         p->type == P_WRITE ? "write" : "file", at + k);
                return;
            }
            pos += n;
            at += n;
        }
    }
}

static void expect_eof(int fd)
{
    char c;
    EXPECT_EQ_INT(th_read_exact(fd, &c, 1), 0);
}

/* ---- tests ---- */

/* The brief's case: header, the whole 64 MB file, trailer, then close. */
static void test_header_file_trailer(void)
{
    struct state s;
    state_init(&s);
    add_write(&s, "HEADER\r\n", 8);
    add_file(&s, P_FILE, 0, 0);
    add_write(&s, "\r\nTRAILER", 9);
    evn_events ev = {0};
    th_server ts;
    int fd = start_go(&ts, &s, &ev);
    expect_plan(plain_read, &fd, &s, 1 << 20);
    expect_eof(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(atomic_load(&s.plan_rc), 0);
    EXPECT_EQ_SIZE(atomic_load(&s.pending_after), plan_len(&s));
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    close(fd);
    stop(&ts, &s);
}

/*
 * evn_sendfile_owned: a header, the whole file, a middle region and the last
 * byte through descriptors handed to evn, and a trailer, byte-exact. The
 * connection stays open, so it is the sending that closes each descriptor,
 * not the connection's end: all are closed once the client has read it all.
 */
static void test_owned_header_file_trailer(void)
{
    struct state s;
    state_init(&s);
    s.close_after = false;
    add_write(&s, "HEADER\r\n", 8);
    add_file(&s, P_FILE_OWNED, 0, 0);
    add_write(&s, "MIDDLE", 6);
    add_file(&s, P_FILE_OWNED, 12345, 3u << 20);
    add_file(&s, P_FILE_OWNED, FILE_SIZE - 1, 1);
    add_write(&s, "\r\nTRAILER", 9);
    evn_events ev = {0};
    th_server ts;
    int fd = start_go(&ts, &s, &ev);
    expect_plan(plain_read, &fd, &s, 1 << 20);
    th_write_str(fd, "check");
    TH_WAIT_COUNTER(&s.checked, 1);
    EXPECT_EQ_INT(atomic_load(&s.plan_rc), 0);
    EXPECT_EQ_SIZE(atomic_load(&s.pending_after), plan_len(&s));
    EXPECT_EQ_INT(s.nowned, 3);
    EXPECT_EQ_INT(atomic_load(&s.owned_open), 0);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    stop(&ts, &s);
}

/* Random regions from anywhere in the file, some back to back, some through
 * a descriptor closed right after the call, some through one handed to evn,
 * between writes of random sizes. */
static void test_regions_between_writes(void)
{
    static char text[200000];
    struct state s;
    state_init(&s);
    th_rng rng;
    th_rng_init(&rng, th_seed());
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + th_rng_range(&rng, 0, 25));
    while (s.nplan < 100) {
        uint64_t kind = th_rng_range(&rng, 0, 4);
        if (kind == 0) {
            size_t len = th_rng_range(&rng, 1, sizeof text);
            add_write(&s, text + th_rng_range(&rng, 0, sizeof text - len), len);
        } else {
            size_t len = th_rng_range(&rng, 1, kind == 1 ? 100 : 3u << 20);
            off_t off = (off_t)th_rng_range(&rng, 0, FILE_SIZE - len);
            add_file(&s, kind == 3 ? P_FILE_OWN_FD : kind == 4 ? P_FILE_OWNED : P_FILE, off, len);
        }
    }
    /* The last byte alone, and the tail by "length 0". */
    add_file(&s, P_FILE, FILE_SIZE - 1, 1);
    add_file(&s, P_FILE, FILE_SIZE - 4097, 0);
    evn_events ev = {0};
    th_server ts;
    int fd = start_go(&ts, &s, &ev);
    expect_plan(plain_read, &fd, &s, 1 << 20);
    expect_eof(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(atomic_load(&s.plan_rc), 0);
    close(fd);
    stop(&ts, &s);
}

/*
 * A reader with a 4 KB receive window reading 1000 bytes at a time: the
 * server sends in many partial sendfiles without blocking its loop, and the
 * queued region counts as output: full right after queueing, drained later.
 * Meanwhile a second client is answered, so the loop was never stuck.
 */
static void test_slow_reader(void)
{
    struct state s;
    state_init(&s);
    /* A closing connection is not told of drained output: stay open. */
    s.close_after = false;
    add_write(&s, "HDR", 3);
    add_file(&s, P_FILE, 12345, 8u << 20);
    add_write(&s, "TRL", 3);
    evn_events ev = {0};
    ev.out_high = 1 << 20;
    ev.out_low = 256 << 10;
    th_server ts;
    start(&ts, &s, &ev, "tcp://127.0.0.1:0");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    socklen_t alen;
    const struct sockaddr *sa = evn_server_addr(ts.srv, 0, &alen);
    ASSERT_EQ_INT(connect(fd, sa, alen), 0);
    th_write_str(fd, "go");
    TH_WAIT_COUNTER(&s.ran, 1);
    EXPECT_EQ_INT(atomic_load(&s.full_after), 1);
    EXPECT_EQ_SIZE(atomic_load(&s.pending_after), plan_len(&s));
    int other = th_connect_srv(&ts, 0);
    th_write_str(other, "x");
    close(other);
    TH_WAIT_COUNTER(&s.closed, 1);
    expect_plan(plain_read, &fd, &s, 1000);
    TH_WAIT_COUNTER(&s.drained, 1);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 2);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    stop(&ts, &s);
}

/* Queued from another connection's callback: it goes out at the end of the
 * loop's turn like any write to another connection. */
static void test_for_other_connection(void)
{
    struct state s;
    state_init(&s);
    s.to_first = true;
    add_write(&s, "<", 1);
    add_file(&s, P_FILE, 999, 5u << 20);
    add_write(&s, ">", 1);
    evn_events ev = {0};
    th_server ts;
    start(&ts, &s, &ev, "tcp://127.0.0.1:0");
    int first = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    int second = th_connect_srv(&ts, 0);
    th_write_str(second, "go");
    expect_plan(plain_read, &first, &s, 1 << 20);
    expect_eof(first);
    close(second);
    close(first);
    TH_WAIT_COUNTER(&s.closed, 2);
    stop(&ts, &s);
}

/*
 * Bad arguments, on a stream connection and a UDP one, for evn_sendfile and
 * for evn_sendfile_owned (refusal_owned). The owned variant closes each
 * descriptor handed over before it returns, whatever the reason, and also
 * for an empty region that queues nothing (a negative one gives -EINVAL and
 * has nothing to close); it does not check the access mode, so the
 * write-only case is evn_sendfile's alone (test_owned_write_only has the
 * owned one). Each case opens its own descriptor; the caller's copy is
 * closed here after evn_sendfile, which keeps a duplicate if anything.
 */
static bool refusal_owned;

enum { FD_NONE, FD_DIR, FD_WONLY, FD_PIPE, FD_FILE };

static int refusal_try(struct state *s, evn_conn *c, int kind, off_t off, size_t len)
{
    int fd = -1, p[2] = {-1, -1};
    if (kind == FD_DIR)
        fd = open(th_tmpdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    else if (kind == FD_WONLY)
        fd = open(file_path, O_WRONLY | O_CLOEXEC);
    else if (kind == FD_PIPE && pipe(p) == 0)
        fd = p[0];
    else if (kind == FD_FILE)
        fd = open(file_path, O_RDONLY | O_CLOEXEC);
    int rc = refusal_owned ? evn_sendfile_owned(c, fd, off, len) : evn_sendfile(c, fd, off, len);
    s->bad_open[s->nbad] = fd >= 0 && fd_open(fd);
    s->bad[s->nbad++] = rc;
    if (!refusal_owned && fd >= 0)
        close(fd);
    if (p[1] >= 0)
        close(p[1]);
    return rc;
}

static evn_action refusal_opened(evn_conn *c)
{
    struct state *s = S(c);
    refusal_try(s, c, FD_NONE, 0, 10);
    refusal_try(s, c, FD_DIR, 0, 10);
    if (!refusal_owned)
        refusal_try(s, c, FD_WONLY, 0, 10);
    refusal_try(s, c, FD_PIPE, 0, 10);
    refusal_try(s, c, FD_FILE, -1, 10);
    refusal_try(s, c, FD_FILE, FILE_SIZE + 1, 0);
    refusal_try(s, c, FD_FILE, FILE_SIZE - 10, 11);
    /* Nothing to send is no error, and queues nothing. */
    refusal_try(s, c, FD_FILE, FILE_SIZE, 0);
    atomic_store(&s->pending_after, evn_conn_pending(c));
    evn_write(c, "ok", 2);
    evn_conn_shutdown_write(c);
    refusal_try(s, c, FD_FILE, 0, 10);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action refusal_udp(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    int fd = open(file_path, O_RDONLY | O_CLOEXEC);
    int rc = refusal_owned ? evn_sendfile_owned(c, fd, 0, 10) : evn_sendfile(c, fd, 0, 10);
    atomic_store(&s->udp_rc, rc);
    atomic_store(&s->udp_open, fd_open(fd));
    if (!refusal_owned)
        close(fd);
    evn_write(c, "u", 1);
    th_counter_add(&s->ran, 1);
    return EVN_NONE;
}

static void run_refusals(bool owned)
{
    struct state s;
    state_init(&s);
    refusal_owned = owned;
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = refusal_opened;
    ev.data = refusal_udp;
    const char *addrs[] = {"tcp://127.0.0.1:0", "udp://127.0.0.1:0"};
    th_server ts;
    th_server_start(&ts, &ev, addrs, 2);
    int fd = th_connect_srv(&ts, 0);
    EXPECT_READ_STR(fd, "ok");
    EXPECT_EQ_INT(th_wait_eof(fd), 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    /* fd -1, directory, [write-only], pipe, offset -1, offset past the end,
     * region past the end, empty region, shut down for writing. */
    const int want_dup[] = {-EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL,
                            -EINVAL, -EINVAL, 0,       -EPIPE};
    const int want_owned[] = {-EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL, -EINVAL, 0, -EPIPE};
    const int *want = owned ? want_owned : want_dup;
    int nwant = owned ? (int)(sizeof want_owned / sizeof want_owned[0])
                      : (int)(sizeof want_dup / sizeof want_dup[0]);
    ASSERT_EQ_INT(s.nbad, nwant);
    for (int i = 0; i < s.nbad; i++) {
        EXPECT_EQ_ERR(s.bad[i], want[i]);
        /* Handed over, it is closed; lent, it is left to its owner. */
        if (owned && s.bad_open[i])
            th_fail_(__FILE__, __LINE__, false, "case %d: descriptor left open", i);
        if (!owned && i > 0 && !s.bad_open[i])
            th_fail_(__FILE__, __LINE__, false, "case %d: evn closed the caller's descriptor", i);
    }
    EXPECT_EQ_SIZE(atomic_load(&s.pending_after), 0);
    close(fd);

    int u = th_udp_socket(AF_INET);
    socklen_t alen;
    const struct sockaddr *sa = evn_server_addr(ts.srv, 1, &alen);
    ASSERT_EQ_INT(sendto(u, "q", 1, 0, sa, alen), 1);
    char c;
    EXPECT_EQ_INT(th_read_some(u, &c, 1), 1);
    TH_WAIT_COUNTER(&s.ran, 1);
    EXPECT_EQ_ERR(atomic_load(&s.udp_rc), -EINVAL);
    bool udp_open = atomic_load(&s.udp_open);
    EXPECT_EQ_INT(udp_open, !owned);
    close(u);
    stop(&ts, &s);
}

static void test_bad_arguments(void)
{
    run_refusals(false);
}

static void test_owned_refused(void)
{
    run_refusals(true);
}

/* Out of memory for the region's chunk: -ENOMEM, the descriptor closed at
 * once, and the connection closes with -ENOMEM. */
static evn_action owned_nomem_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    int fd = open(file_path, O_RDONLY | O_CLOEXEC);
    th_alloc_fail_nth(1);
    s->bad[0] = evn_sendfile_owned(c, fd, 0, 10);
    s->bad_open[0] = fd_open(fd);
    s->nbad = 1;
    th_counter_add(&s->ran, 1);
    return EVN_NONE;
}

static void test_owned_nomem(void)
{
    struct state s;
    state_init(&s);
    evn_events ev = {0};
    ev.udata = &s;
    ev.data = owned_nomem_data;
    ev.closed = on_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "go");
    TH_WAIT_COUNTER(&s.closed, 1);
    TH_WAIT_COUNTER(&s.ran, 1);
    EXPECT_EQ_INT(th_alloc_fail_pending(), 0);
    EXPECT_EQ_ERR(s.bad[0], -ENOMEM);
    EXPECT_FALSE(s.bad_open[0]);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ENOMEM);
    close(fd);
    stop(&ts, &s);
}

/* A descriptor not open for reading is taken (the access mode is not
 * checked) and fails when its turn comes: the connection closes with
 * -EBADF, and the descriptor with it. */
static void test_owned_write_only(void)
{
    struct state s;
    state_init(&s);
    s.close_after = false;
    add_write(&s, "HDR", 3);
    add_file(&s, P_FILE_OWNED_WONLY, 0, 10);
    evn_events ev = {0};
    th_server ts;
    int fd = start_go(&ts, &s, &ev);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(atomic_load(&s.plan_rc), 0);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -EBADF);
    close(fd);
    stop(&ts, &s);
}

/* A region past out_cap: -ENOBUFS, and the connection closes with it. */
static evn_action cap_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    atomic_store(&s->plan_rc, evn_sendfile(c, file_fd, 0, 2u << 20));
    /* The owned variant is refused the same way, and closes its descriptor. */
    int fd = open(file_path, O_RDONLY | O_CLOEXEC);
    s->bad[0] = evn_sendfile_owned(c, fd, 0, 2u << 20);
    s->bad_open[0] = fd_open(fd);
    s->nbad = 1;
    th_counter_add(&s->ran, 1);
    return EVN_NONE;
}

static void test_out_cap(void)
{
    struct state s;
    state_init(&s);
    evn_events ev = {0};
    ev.out_cap = 1 << 20;
    ev.udata = &s;
    ev.data = cap_data;
    ev.closed = on_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "go");
    TH_WAIT_COUNTER(&s.closed, 1);
    TH_WAIT_COUNTER(&s.ran, 1);
    EXPECT_EQ_ERR(atomic_load(&s.plan_rc), -ENOBUFS);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), -ENOBUFS);
    EXPECT_EQ_ERR(s.bad[0], -ENOBUFS);
    EXPECT_FALSE(s.bad_open[0]);
    close(fd);
    stop(&ts, &s);
}

/* The reader resets half way: closed with an error, and the duplicated
 * descriptors of the regions still queued, and the ones handed to evn, are
 * closed (the runner counts). */
static void test_peer_gone(void)
{
    struct state s;
    state_init(&s);
    s.close_after = false;
    add_file(&s, P_FILE, 0, 0);
    add_file(&s, P_FILE_OWN_FD, 0, 0);
    add_file(&s, P_FILE_OWNED, 0, 0);
    add_file(&s, P_FILE, 7, 1000);
    add_file(&s, P_FILE_OWNED, 7, 1000);
    evn_events ev = {0};
    th_server ts;
    int fd = start_go(&ts, &s, &ev);
    static char buf[1 << 16];
    EXPECT_EQ_INT(th_read_exact(fd, buf, sizeof buf), (long long)sizeof buf);
    th_close_rst(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_LT_INT(atomic_load(&s.close_err), 0);

    /*
     * And one that is gone before the server even starts sending. If it is
     * reset while it waits to be accepted, Linux still hands it over (it
     * opens, then closes), while Windows and Wine report it at accept: it
     * never opens and is counted as gone. A probe connected after it is
     * accepted after it, on the one loop, so once the probe is open that
     * choice is made and the stats say which; the probe then closes too.
     */
    uint64_t gone0 = th_server_stats(&ts).accept_gone;
    fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "go");
    th_close_rst(fd);
    int probe = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 2);
    long gone = (long)(th_server_stats(&ts).accept_gone - gone0);
    EXPECT_TRUE(gone == 0 || gone == 1);
    TH_WAIT_COUNTER(&s.opened, 3 - gone);
    close(probe);
    TH_WAIT_COUNTER(&s.closed, 3 - gone);
    EXPECT_EQ_INT(th_counter_get(&s.opened), 3 - gone);
    stop(&ts, &s);
}

/*
 * The reader half-closes and then resets while a file is still going out.
 * Its FIN puts the server's socket in CLOSE_WAIT, where the kernel records
 * a reset as EPIPE, so the next sendfile(2) fails with EPIPE and, as that
 * call has no MSG_NOSIGNAL, raises SIGPIPE. SIGPIPE keeps its default
 * action in this test (main), so unless evn keeps it blocked on the loop
 * thread the process dies here. The connection closes and leaves no
 * descriptor behind.
 */
static void test_epipe_no_sigpipe(void)
{
    struct state s;
    state_init(&s);
    s.close_after = false;
    add_file(&s, P_FILE, 0, 0);
    evn_events ev = {0};
    th_server ts;
    start(&ts, &s, &ev, "tcp://127.0.0.1:0");
    for (int round = 0; round < 4; round++) {
        int fd = th_connect_srv(&ts, 0);
        th_write_str(fd, "go");
        static char buf[1 << 16];
        EXPECT_EQ_INT(th_read_exact(fd, buf, sizeof buf), (long long)sizeof buf);
        EXPECT_EQ_INT(shutdown(fd, SHUT_WR), 0);
        th_close_rst(fd);
        TH_WAIT_COUNTER(&s.closed, round + 1);
        th_counter_add(&s.ran, -1);
    }
    stop(&ts, &s);
}

/* Make the sparse file of test_big_regions: size bytes, zeros but for the
 * random markers at each offset in at[] (each 4096-aligned at most, so the
 * markers do not overlap). */
static bool make_big_file(evn_off_t size, const evn_off_t *at, int nat)
{
    th_tmppath(big_path, sizeof big_path, "big.bin");
    int fd = open(big_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    th_rng rng;
    th_rng_init(&rng, th_seed());
    big_nat = nat;
    for (int i = 0; i < nat; i++) {
        big_at[i] = at[i];
        for (size_t k = 0; k < BIG_MARK; k++)
            big_mark[i][k] = (unsigned char)th_rng_next(&rng);
        if (lseek(fd, at[i], SEEK_SET) != at[i] || write(fd, big_mark[i], BIG_MARK) != BIG_MARK) {
            close(fd);
            unlink(big_path);
            return false;
        }
    }
    big_fd = fd;
    return lseek(fd, 0, SEEK_END) == size;
}

/* What the big file holds at [off, off + n). */
static void big_expect(unsigned char *want, evn_off_t off, size_t n)
{
    memset(want, 0, n);
    for (int i = 0; i < big_nat; i++) {
        evn_off_t lo = off > big_at[i] ? off : big_at[i];
        evn_off_t hi =
            off + (evn_off_t)n < big_at[i] + BIG_MARK ? off + (evn_off_t)n : big_at[i] + BIG_MARK;
        if (lo < hi)
            memcpy(want + (lo - off), big_mark[i] + (lo - big_at[i]), (size_t)(hi - lo));
    }
}

/* Read "HDR", the big file's [off, off + len) and "TRL", checking each byte,
 * then the end of the stream. */
static void expect_big(int fd, evn_off_t off, size_t len)
{
    static unsigned char got[1 << 20], want[1 << 20];
    EXPECT_READ_STR(fd, "HDR");
    for (size_t pos = 0; pos < len;) {
        size_t n = len - pos < sizeof got ? len - pos : sizeof got;
        ssize_t r = th_read_exact(fd, got, n);
        if (r != (ssize_t)n) {
            th_fail_(__FILE__, __LINE__, false, "read %zd of %zu at file offset %lld", r, n,
                     (long long)(off + (evn_off_t)pos));
            return;
        }
        big_expect(want, off + (evn_off_t)pos, n);
        if (memcmp(got, want, n) != 0) {
            size_t k = 0;
            while (got[k] == want[k])
                k++;
            th_fail_(__FILE__, __LINE__, false, "wrong byte at file offset %lld",
                     (long long)(off + (evn_off_t)(pos + k)));
            return;
        }
        pos += n;
    }
    EXPECT_READ_STR(fd, "TRL");
    expect_eof(fd);
}

/* Serve "HDR", the big file's region [off, off + len) and "TRL" to one
 * client and check what it reads, and on iocp that it took transmits
 * TransmitFile calls. */
static void big_region(evn_off_t off, size_t len, long transmits)
{
    struct state s;
    state_init(&s);
    add_write(&s, "HDR", 3);
    add_file(&s, P_FILE_BIG, (off_t)off, len);
    add_write(&s, "TRL", 3);
    evn_events ev = {0};
    th_server ts;
    int fd = start_go(&ts, &s, &ev);
    expect_big(fd, off, len);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_INT(atomic_load(&s.plan_rc), 0);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    close(fd);
    if (strcmp(evn_server_backend(ts.srv), "iocp") == 0)
        EXPECT_EQ_INT(atomic_load(&s.files), transmits);
    stop(&ts, &s);
}

/*
 * Regions where sizes and offsets pass 32 bits' worth: one region of more
 * than 1 GiB, which on iocp goes out in two TransmitFile calls (one takes at
 * most 1 GiB), and a short one at an offset past 4 GiB, where an offset
 * that lost its high half would read the wrong place. The file is sparse:
 * zeros, with random markers at the start, across the 1 GiB mark, at the
 * region's end and past 4 GiB.
 */
static void test_big_regions(void)
{
    const evn_off_t gib = (evn_off_t)1 << 30;
    const evn_off_t at[] = {0, gib - BIG_MARK / 2, gib + (1 << 20), 4 * gib + 8192};
    if (!make_big_file(at[3] + BIG_MARK, at, 4)) {
        th_fail_(__FILE__, __LINE__, true, "cannot make the sparse test file: %s", strerror(errno));
        return;
    }
    /* From byte 1 to the end of the third marker: 1 GiB + 1 MiB + 4095. */
    big_region(1, (size_t)(at[2] + BIG_MARK - 1), 2);
    /* Past 4 GiB: the last marker and the zeros just before it. */
    big_region(at[3] - 100, BIG_MARK + 100, 1);
    close(big_fd);
    big_fd = -1;
    unlink(big_path);
}

#ifdef EVN_HAVE_TLS
struct tls_io {
    SSL *ssl;
};

static ssize_t tls_read(void *io, void *buf, size_t len)
{
    SSL *ssl = ((struct tls_io *)io)->ssl;
    size_t got = 0;
    while (got < len) {
        int n = SSL_read(ssl, (char *)buf + got, (int)(len - got));
        if (n <= 0) {
            ERR_clear_error();
            return (ssize_t)got;
        }
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Over TLS the regions are read and encrypted piece by piece: the same
 * bytes arrive, with small watermarks so that flow control pauses it too. */
static void test_tls(void)
{
    char cert[256], key[256];
    if (!th_make_cert(cert, key, sizeof cert))
        return;
    struct state s;
    state_init(&s);
    s.close_after = false;
    add_write(&s, "HEADER", 6);
    add_file(&s, P_FILE, 0, 0);
    add_write(&s, "MIDDLE", 6);
    add_file(&s, P_FILE_OWN_FD, 33333, 3u << 20);
    add_file(&s, P_FILE, FILE_SIZE - 5, 5);
    add_file(&s, P_FILE_OWNED, 4444, 1u << 20);
    add_write(&s, "TRAILER", 7);
    evn_events ev = {0};
    ev.out_high = 256 << 10;
    ev.out_low = 64 << 10;
    char url[700];
    snprintf(url, sizeof url, "tls://127.0.0.1:0?cert=%s&key=%s", cert, key);
    th_server ts;
    start(&ts, &s, &ev, url);
    int fd = th_connect_srv(&ts, 0);
    struct timeval tv = {th_io_timeout_ms() / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_NOT_NULL(ctx);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    ASSERT_EQ_INT(SSL_connect(ssl), 1);
    ASSERT_EQ_INT(SSL_write(ssl, "go", 2), 2);
    struct tls_io io = {ssl};
    expect_plan(tls_read, &io, &s, 1 << 20);
    TH_WAIT_COUNTER(&s.drained, 1);
    SSL_shutdown(ssl);
    TH_WAIT_COUNTER(&s.closed, 1);
    EXPECT_EQ_ERR(atomic_load(&s.close_err), 0);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    unlink(cert);
    unlink(key);
    stop(&ts, &s);
}
#else
static void test_tls(void)
{
    th_skip("evn was built without TLS");
}
#endif

int main(int argc, char **argv)
{
    th_init(argc, argv);
    /* A SIGPIPE must kill this test, not be ignored (test_epipe_no_sigpipe). */
#ifndef _WIN32
    signal(SIGPIPE, SIG_DFL);
#endif
    if (!make_file()) {
        fprintf(stderr, "cannot make the %u-byte test file: %s\n", FILE_SIZE, strerror(errno));
        return 1;
    }
    TH_RUN(test_header_file_trailer);
    TH_RUN(test_owned_header_file_trailer);
    TH_RUN(test_regions_between_writes);
    TH_RUN(test_slow_reader);
    TH_RUN(test_for_other_connection);
    TH_RUN(test_bad_arguments);
    TH_RUN(test_owned_refused);
    TH_RUN(test_owned_nomem);
    TH_RUN(test_owned_write_only);
    TH_RUN(test_out_cap);
    TH_RUN(test_peer_gone);
    TH_RUN(test_epipe_no_sigpipe);
    TH_RUN(test_big_regions);
    TH_RUN(test_tls);
    close(file_fd);
    return th_finish();
}
