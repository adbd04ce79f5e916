/*
 * The IOCP backend's cost per request, counted: a request and its answer
 * take one receive (a WSARecv into one of the loop's buffers), one send
 * and one wait of the loop, two operations finished (the receive's and
 * the send's, by a completion or at once), and no allocation, neither in
 * the backend nor anywhere in evn. Beyond the loop's EVN__IOCP_RECV_BUFS
 * receive buffers, connections wait with a zero-byte receive and read
 * with a recv (one call more, no memory held while idle); a buffer comes
 * back when its connection closes, and goes to the next that arms.
 * Counted between two snapshots the loop takes on its own thread when
 * woken (evn_wake) with every connection idle, so that neither setting up
 * nor closing nor stopping, whose cost depends on the timing of the
 * threads, is in the difference: only the requests and the second
 * snapshot's own wake.
 *
 * And the operations that go by completion besides, each with no readiness
 * poll at all: an evn_connect is one ConnectEx; a UDP echo is one
 * WSARecvFrom and one WSASendTo per datagram; file regions between writes
 * go by TransmitFile and arrive byte-exact and in order (with one poll that
 * watches for a reset while the closing connection receives nothing). Windows only
 * (registered there alone), with the iocp backend.
 */
#include "harness.h"

#include "internal.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define CONNS 4
#define WARM 4
#define ROUNDS 200

struct state {
    th_counter opened, closed, snapped;
    evn_id first; /* the connection the snapshots are asked of */
    evn_id last;  /* the last that had a request, which is answered before the client goes on */
    struct evn__iocp_counts snap[4];
    int nsnaps;
};

static evn_action on_opened(evn_conn *c)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    if (th_counter_get(&s->opened) == 0)
        s->first = evn_conn_id(c);
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

/* Each "ping\n" gets "pong\n" (the client sends one at a time); a wake
 * takes a snapshot of the counts, here on the loop's thread. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    if (!in) {
        if (s->nsnaps < (int)(sizeof s->snap / sizeof s->snap[0]))
            evn__iocp_counts(evn_conn_server(c), &s->snap[s->nsnaps++]);
        th_counter_add(&s->snapped, 1);
        return EVN_NONE;
    }
    s->last = evn_conn_id(c);
    for (size_t i = 0; i < len; i++)
        if (in[i] == '\n')
            EXPECT_EQ_ERR(evn_write(c, "pong\n", 5), 0);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = evn_server_udata(evn_conn_server(c));
    th_counter_add(&s->closed, 1);
    return EVN_NONE;
}

static bool not_iocp(void)
{
    const char *b = th_backend();
    if (b && strcmp(b, "iocp") != 0) {
        th_skip("counts the iocp backend");
        return true;
    }
    return false;
}

/* One request on each of n connections, each answered before the next. */
static void ping_n(const int *fds, int n)
{
    char buf[8];
    for (int i = 0; i < n; i++) {
        th_write_str(fds[i], "ping\n");
        ASSERT_EQ_INT(th_read_exact(fds[i], buf, 5), 5);
        EXPECT_MEMEQ(buf, "pong\n", 5);
    }
}

static void ping_all(const int *fds)
{
    ping_n(fds, CONNS);
}

/* Wake the loop through connection id and wait for the snapshot it takes:
 * the connections are all idle, each answer read by the client. */
static void snapshot_by(evn_server *srv, struct state *s, evn_id id)
{
    long n = th_counter_get(&s->snapped);
    EXPECT_EQ_ERR(evn_wake(srv, id), 0);
    TH_WAIT_COUNTER(&s->snapped, n + 1);
}

static void snapshot(evn_server *srv, struct state *s)
{
    snapshot_by(srv, s, s->first);
}

/* A server of one loop that answers pings, and n clients connected to it. */
static void counting_start(struct state *s, th_server *ts, int *fds, int n)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->snapped);
    evn_events ev = {0};
    ev.udata = s;
    ev.nloops = 1;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.closed = on_closed;
    const char *addrs[] = {"tcp://127.0.0.1:0"};
    th_server_start(ts, &ev, addrs, 1);
    for (int i = 0; i < n; i++)
        fds[i] = th_connect_srv(ts, 0);
    TH_WAIT_COUNTER(&s->opened, n);
}

/* Its end, once every client is closed: shut down (again, if done). */
static void counting_stop(struct state *s, th_server *ts)
{
    evn_shutdown(ts->srv);
    th_server_join(ts);
    th_server_free(ts);
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->snapped);
}

static void test_cost_per_request(void)
{
    if (not_iocp())
        return;
    struct state s;
    th_server ts;
    int fds[CONNS];
    counting_start(&s, &ts, fds, CONNS);
    for (int r = 0; r < WARM; r++)
        ping_all(fds);
    snapshot(ts.srv, &s);
    th_alloc_record_sites(true);
    for (int r = 0; r < ROUNDS; r++)
        ping_all(fds);
    th_alloc_record_sites(false);
    long allocs = th_alloc_recorded();
    snapshot(ts.srv, &s);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s.closed, CONNS);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    ASSERT_EQ_INT(s.nsnaps, 2);
    const struct evn__iocp_counts *a = &s.snap[0], *z = &s.snap[1];
    long n = (long)ROUNDS * CONNS;
    fprintf(stderr,
            "  per %ld requests: %ld waits, %ld completions, %ld finished at once, "
            "%ld receives (%ld zero-byte), %ld recvs, %ld sends, %ld polls, %ld allocations\n",
            n, z->waits - a->waits, z->completions - a->completions,
            z->inline_done - a->inline_done, z->recv_posts - a->recv_posts,
            z->recv_zero - a->recv_zero, z->recvs - a->recvs, z->sends - a->sends,
            z->polls - a->polls, z->allocs - a->allocs);
    EXPECT_EQ_INT(allocs, 0);
    EXPECT_EQ_INT(z->allocs - a->allocs, 0);
    EXPECT_EQ_INT(z->sends - a->sends, n);
    /* Each receive into a buffer: no zero-byte one, no recv after it. */
    EXPECT_EQ_INT(z->recv_posts - a->recv_posts, n);
    EXPECT_EQ_INT(z->recv_zero - a->recv_zero, 0);
    EXPECT_EQ_INT(z->recvs - a->recvs, 0);
    EXPECT_EQ_INT(z->polls - a->polls, 0);
    /* The receive's and the send's: no other operation per request; and
     * the second snapshot's wake, one completion of its own. */
    EXPECT_EQ_INT((z->completions + z->inline_done) - (a->completions + a->inline_done), 2 * n + 1);
    /* One wait per request; a little more where the client was quicker
     * than the loop's next turn. */
    EXPECT_LE_INT(z->waits - a->waits, n + n / 10);
    counting_stop(&s, &ts);
}

/* ---- more connections than receive buffers ---- */

#define MORE 16
#define MANY (EVN__IOCP_RECV_BUFS + MORE)

/* Counts of a round of requests between two snapshots taken by id. */
static void round_counts(evn_server *srv, struct state *s, evn_id id, const int *fds, int n,
                         struct evn__iocp_counts *d)
{
    int k = s->nsnaps;
    snapshot_by(srv, s, id);
    ping_n(fds, n);
    snapshot_by(srv, s, id);
    ASSERT_EQ_INT(s->nsnaps, k + 2);
    const struct evn__iocp_counts *a = &s->snap[k], *z = &s->snap[k + 1];
    d->recv_posts = z->recv_posts - a->recv_posts;
    d->recv_zero = z->recv_zero - a->recv_zero;
    d->recvs = z->recvs - a->recvs;
    d->allocs = z->allocs - a->allocs;
    fprintf(stderr, "  %d requests: %ld receives (%ld zero-byte), %ld recvs, %ld allocations\n", n,
            d->recv_posts, d->recv_zero, d->recvs, d->allocs);
}

static void test_more_conns_than_buffers(void)
{
    if (not_iocp())
        return;
    struct state s;
    th_server ts;
    int fds[MANY];
    counting_start(&s, &ts, fds, MANY);
    ping_n(fds, MANY);
    /* The first EVN__IOCP_RECV_BUFS to arm keep a buffer, each taking one
     * again after its request; the others wait with zero-byte receives
     * and read with a recv, and every request is answered. */
    struct evn__iocp_counts d;
    round_counts(ts.srv, &s, s.last, fds, MANY, &d);
    EXPECT_EQ_INT(d.recv_posts, MANY);
    EXPECT_EQ_INT(d.recv_zero, MORE);
    EXPECT_EQ_INT(d.recvs, MORE);
    EXPECT_EQ_INT(d.allocs, 0);
    /* Closed connections give their buffers back: once each of the rest
     * has armed again, all of them receive into buffers. */
    for (int i = 0; i < EVN__IOCP_RECV_BUFS; i++)
        close(fds[i]);
    TH_WAIT_COUNTER(&s.closed, EVN__IOCP_RECV_BUFS);
    const int *rest = fds + EVN__IOCP_RECV_BUFS;
    ping_n(rest, MORE);
    round_counts(ts.srv, &s, s.last, rest, MORE, &d);
    EXPECT_EQ_INT(d.recv_posts, MORE);
    EXPECT_EQ_INT(d.recv_zero, 0);
    EXPECT_EQ_INT(d.recvs, 0);
    for (int i = 0; i < MORE; i++)
        close(rest[i]);
    TH_WAIT_COUNTER(&s.closed, MANY);
    counting_stop(&s, &ts);
}

/* ---- a connect: ConnectEx ---- */

struct link {
    char target[64];
    int marker;
    atomic_int connect_rc, out_err;
    th_counter replied, closed;
};

static evn_action link_serving(evn_server *srv)
{
    struct link *k = evn_server_udata(srv);
    atomic_store(&k->connect_rc, evn_connect(srv, k->target, 2000, &k->marker, NULL));
    return EVN_NONE;
}

/* The outbound connection asks, the accepted one answers. */
static evn_action link_opened(evn_conn *c)
{
    struct link *k = evn_server_udata(evn_conn_server(c));
    if (evn_conn_udata(c) == &k->marker)
        EXPECT_EQ_ERR(evn_write(c, "ping\n", 5), 0);
    return EVN_NONE;
}

static evn_action link_data(evn_conn *c, const char *in, size_t len)
{
    struct link *k = evn_server_udata(evn_conn_server(c));
    if (!in)
        return EVN_NONE;
    if (evn_conn_udata(c) != &k->marker) {
        EXPECT_EQ_ERR(evn_write(c, "pong\n", 5), 0);
        return EVN_NONE;
    }
    if (len == 5 && memcmp(in, "pong\n", 5) == 0)
        th_counter_add(&k->replied, 1);
    return EVN_CLOSE;
}

static evn_action link_closed(evn_conn *c, int err)
{
    struct link *k = evn_server_udata(evn_conn_server(c));
    if (evn_conn_udata(c) == &k->marker)
        atomic_store(&k->out_err, err);
    th_counter_add(&k->closed, 1);
    return EVN_NONE;
}

static void test_connect_by_connectex(void)
{
    if (not_iocp())
        return;
    struct link k;
    memset(&k, 0, sizeof k);
    th_counter_init(&k.replied);
    th_counter_init(&k.closed);
    evn_events ev = {0};
    ev.udata = &k;
    ev.nloops = 1;
    ev.serving = link_serving;
    ev.opened = link_opened;
    ev.data = link_data;
    ev.closed = link_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_new(&ts, &ev, &addr, 1);
    snprintf(k.target, sizeof k.target, "tcp://127.0.0.1:%d", th_server_port(&ts, 0));
    th_server_run(&ts);
    TH_WAIT_COUNTER(&k.replied, 1);
    TH_WAIT_COUNTER(&k.closed, 2);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    struct evn__iocp_counts n;
    evn__iocp_counts(ts.srv, &n);
    th_server_free(&ts);
    fprintf(stderr, "  a connect and its exchange: %ld ConnectEx, %ld polls, %ld sends\n",
            n.connects, n.polls, n.sends);
    EXPECT_EQ_INT(atomic_load(&k.connect_rc), 0);
    EXPECT_EQ_ERR(atomic_load(&k.out_err), 0);
    EXPECT_EQ_INT(n.connects, 1);
    EXPECT_EQ_INT(n.polls, 0);
    EXPECT_EQ_INT(n.sends, 2);
    th_counter_destroy(&k.replied);
    th_counter_destroy(&k.closed);
}

/* ---- UDP: WSARecvFrom and WSASendTo ---- */

#define DATAGRAMS 20

struct echo {
    th_counter snapped;
    struct evn__iocp_counts snap;
};

/* Echo each datagram; "count" takes a snapshot of the counts instead, on
 * the loop's thread, before the loop can stop (a receive is armed again
 * only at the loop's next turn, which a loop told to stop may not take). */
static evn_action echo_datagram(evn_conn *c, const char *in, size_t len)
{
    struct echo *e = evn_server_udata(evn_conn_server(c));
    if (len == 5 && memcmp(in, "count", 5) == 0) {
        evn__iocp_counts(evn_conn_server(c), &e->snap);
        th_counter_add(&e->snapped, 1);
        return EVN_NONE;
    }
    EXPECT_EQ_ERR(evn_write(c, in, len), 0);
    return EVN_NONE;
}

static void test_udp_by_wsarecvfrom(void)
{
    if (not_iocp())
        return;
    struct echo e;
    memset(&e, 0, sizeof e);
    th_counter_init(&e.snapped);
    evn_events ev = {0};
    ev.udata = &e;
    ev.nloops = 1;
    ev.data = echo_datagram;
    const char *addr = "udp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    struct sockaddr_storage to;
    socklen_t tolen;
    ASSERT_EQ_INT(th_make_addr("127.0.0.1", th_server_port(&ts, 0), &to, &tolen), 0);
    int fd = th_udp_socket(AF_INET);
    char out[64], in[64];
    for (int i = 0; i < DATAGRAMS; i++) {
        int len = snprintf(out, sizeof out, "datagram %d", i);
        ASSERT_EQ_INT(sendto(fd, out, (size_t)len, 0, (struct sockaddr *)&to, tolen), len);
        ASSERT_EQ_INT(th_wait_readable(fd, th_io_timeout_ms()), 1);
        ssize_t n = recv(fd, in, sizeof in, 0);
        ASSERT_EQ_INT(n, len);
        EXPECT_MEMEQ(in, out, (size_t)len);
    }
    ASSERT_EQ_INT(sendto(fd, "count", 5, 0, (struct sockaddr *)&to, tolen), 5);
    TH_WAIT_COUNTER(&e.snapped, 1);
    close(fd);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    th_server_free(&ts);
    const struct evn__iocp_counts *n = &e.snap;
    fprintf(stderr, "  %d datagrams echoed: %ld WSARecvFrom, %ld WSASendTo, %ld polls\n", DATAGRAMS,
            n->dgram_recvs, n->dgram_sends, n->polls);
    EXPECT_EQ_INT(n->dgram_sends, DATAGRAMS);
    /* One per datagram echoed, and the one that brought "count". */
    EXPECT_EQ_INT(n->dgram_recvs, DATAGRAMS + 1);
    EXPECT_EQ_INT(n->polls, 0);
    th_counter_destroy(&e.snapped);
}

/* ---- file regions: TransmitFile ---- */

#define FILE_LEN (3 << 20)
#define PART_OFF 12345
#define PART_LEN 100000

static char file_path[256];
static int file_fd = -1;

static char file_byte(size_t i)
{
    return (char)(i * 31 + i / 251);
}

static evn_action file_data(evn_conn *c, const char *in, size_t len)
{
    if (!in)
        return EVN_NONE;
    EXPECT_EQ_ERR(evn_write(c, "HDR", 3), 0);
    EXPECT_EQ_ERR(evn_sendfile(c, file_fd, 0, FILE_LEN), 0);
    EXPECT_EQ_ERR(evn_write(c, "MID", 3), 0);
    EXPECT_EQ_ERR(evn_sendfile(c, file_fd, PART_OFF, PART_LEN), 0);
    EXPECT_EQ_ERR(evn_write(c, "TRL", 3), 0);
    return EVN_CLOSE;
}

/* Read len bytes and compare them with the file's from off. */
static void expect_file(int fd, size_t off, size_t len)
{
    static char got[1 << 16];
    for (size_t pos = 0; pos < len;) {
        size_t n = len - pos < sizeof got ? len - pos : sizeof got;
        ASSERT_EQ_INT(th_read_exact(fd, got, n), (ssize_t)n);
        for (size_t i = 0; i < n; i++)
            if (got[i] != file_byte(off + pos + i)) {
                EXPECT_EQ_INT((long long)(pos + i), -1);
                return;
            }
        pos += n;
    }
}

static void expect_str(int fd, const char *s)
{
    char got[8];
    size_t n = strlen(s);
    ASSERT_EQ_INT(th_read_exact(fd, got, n), (ssize_t)n);
    EXPECT_MEMEQ(got, s, n);
}

static void test_sendfile_by_transmitfile(void)
{
    if (not_iocp())
        return;
    th_tmppath(file_path, sizeof file_path, "region.bin");
    int w = open(file_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(w >= 0);
    static char block[1 << 16];
    for (size_t done = 0; done < FILE_LEN; done += sizeof block) {
        for (size_t i = 0; i < sizeof block; i++)
            block[i] = file_byte(done + i);
        ASSERT_EQ_INT(write(w, block, sizeof block), (ssize_t)sizeof block);
    }
    close(w);
    file_fd = open(file_path, O_RDONLY);
    ASSERT_TRUE(file_fd >= 0);
    evn_events ev = {0};
    ev.nloops = 1;
    ev.data = file_data;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "go");
    expect_str(fd, "HDR");
    expect_file(fd, 0, FILE_LEN);
    expect_str(fd, "MID");
    expect_file(fd, PART_OFF, PART_LEN);
    expect_str(fd, "TRL");
    char c;
    EXPECT_EQ_INT(th_read_exact(fd, &c, 1), 0);
    close(fd);
    evn_shutdown(ts.srv);
    th_server_join(&ts);
    struct evn__iocp_counts n;
    evn__iocp_counts(ts.srv, &n);
    th_server_free(&ts);
    close(file_fd);
    unlink(file_path);
    fprintf(stderr,
            "  two file regions between three writes: %ld TransmitFile, %ld sends, "
            "%ld polls\n",
            n.files, n.sends, n.polls);
    EXPECT_EQ_INT(n.files, 2);
    EXPECT_EQ_INT(n.sends, 3);
    /* One poll, not for readiness: the answer ends in EVN_CLOSE, so nothing
     * receives while the first region (larger than the socket takes at once)
     * is in flight, and a poll watches for the peer's reset instead, which
     * Wine would not report through the pending TransmitFile. */
    EXPECT_EQ_INT(n.polls, 1);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_cost_per_request);
    TH_RUN(test_more_conns_than_buffers);
    TH_RUN(test_connect_by_connectex);
    TH_RUN(test_udp_by_wsarecvfrom);
    TH_RUN(test_sendfile_by_transmitfile);
    return th_finish();
}
