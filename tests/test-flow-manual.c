/*
 * EVN_FLOW_MANUAL: evn never stops reading a connection because its own
 * output is full, while evn_conn_full and drained work as in the automatic
 * mode. A client that sends requests and reads nothing keeps having its
 * requests read with megabytes of answers queued; once it reads, drained
 * fires. evn_conn_set_flow switches a connection either way: to manual,
 * a connection evn had stopped reading is read again at once; to automatic
 * above the high-water mark, it is no longer read. Bad modes are refused.
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#define ANSWER (32u << 10)
#define HIGH (64u << 10)
#define LOW (16u << 10)
#define NREQ 40

struct state {
    th_counter opened, closed, requests, drained, switched;
    atomic_int full_seen;
    atomic_llong conn_id;
    atomic_int set_rc, bad_rc;
    atomic_int switch_to; /* what a wake sets: -1 nothing, else an evn_flow */
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    atomic_store(&s->conn_id, (long long)evn_conn_id(c));
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    th_counter_add(&S(c)->closed, 1);
    return EVN_NONE;
}

/* Each input byte is a request answered with ANSWER bytes, full or not;
 * 'R' with four times as many, in one write, which takes the output over the
 * high-water mark at once. A wake switches the flow mode as the test asked. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    static char answer[4 * ANSWER];
    if (!in) {
        int to = atomic_exchange(&s->switch_to, -1);
        if (to >= 0)
            atomic_store(&s->set_rc, evn_conn_set_flow(c, (evn_flow)to));
        atomic_store(&s->bad_rc, evn_conn_set_flow(c, (evn_flow)7));
        th_counter_add(&s->switched, 1);
        return EVN_NONE;
    }
    for (size_t i = 0; i < len; i++) {
        size_t n = in[i] == 'R' ? 4 * ANSWER : ANSWER;
        memset(answer, in[i], n);
        EXPECT_EQ_ERR(evn_write(c, answer, n), 0);
        if (evn_conn_full(c))
            atomic_store(&s->full_seen, 1);
        th_counter_add(&s->requests, 1);
    }
    return EVN_NONE;
}

static evn_action on_drained(evn_conn *c)
{
    th_counter_add(&S(c)->drained, 1);
    return EVN_NONE;
}

static void init(struct state *s, evn_events *ev, evn_flow flow)
{
    memset(s, 0, sizeof *s);
    th_counter_init(&s->opened);
    th_counter_init(&s->closed);
    th_counter_init(&s->requests);
    th_counter_init(&s->drained);
    th_counter_init(&s->switched);
    atomic_store(&s->switch_to, -1);
    memset(ev, 0, sizeof *ev);
    ev->udata = s;
    ev->opened = on_opened;
    ev->closed = on_closed;
    ev->data = on_data;
    ev->drained = on_drained;
    ev->out_high = HIGH;
    ev->out_low = LOW;
    ev->flow = flow;
}

static void fini(struct state *s)
{
    th_counter_destroy(&s->opened);
    th_counter_destroy(&s->closed);
    th_counter_destroy(&s->requests);
    th_counter_destroy(&s->drained);
    th_counter_destroy(&s->switched);
}

/* Small socket buffers on both sides, so the answers queue in evn. */
static const char *addr = "tcp://127.0.0.1:0?sndbuf=4096";

static int small_client(th_server *ts)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    const struct sockaddr *sa = evn_server_addr(ts->srv, 0, NULL);
    socklen_t len;
    evn_server_addr(ts->srv, 0, &len);
    ASSERT_EQ_INT(connect(fd, sa, len), 0);
    return fd;
}

/* Send requests one at a time, each only once the last was read: all are
 * read although answers pile up far above the high-water mark. */
static void send_all(struct state *s, int fd, int from, int to, const char *req)
{
    for (int i = from; i < to; i++) {
        th_write_str(fd, req);
        TH_WAIT_COUNTER(&s->requests, i + 1);
    }
}

/* Read n answers of size bytes of the letter r and check them. */
static void read_answers(int fd, int n, size_t size, char r)
{
    char *buf = malloc(size);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ_INT(th_read_exact(fd, buf, size), (ssize_t)size);
        EXPECT_TRUE(buf[0] == r && buf[size - 1] == r);
    }
    free(buf);
}

static void test_manual_keeps_reading(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev, EVN_FLOW_MANUAL);
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = small_client(&ts);
    TH_WAIT_COUNTER(&s.opened, 1);
    send_all(&s, fd, 0, 1, "R");
    send_all(&s, fd, 1, NREQ, "r");
    EXPECT_EQ_INT(atomic_load(&s.full_seen), 1);
    EXPECT_EQ_INT(th_counter_get(&s.drained), 0);
    read_answers(fd, 1, 4 * ANSWER, 'R');
    read_answers(fd, NREQ - 1, ANSWER, 'r');
    TH_WAIT_COUNTER(&s.drained, 1);
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    th_server_stop(&ts);
    EXPECT_EQ_INT(th_counter_get(&s.drained), 1);
    fini(&s);
}

static void wake_and_switch(struct state *s, th_server *ts, evn_flow to)
{
    long n = th_counter_get(&s->switched);
    atomic_store(&s->switch_to, (int)to);
    EXPECT_EQ_ERR(evn_wake(ts->srv, (evn_id)atomic_load(&s->conn_id)), 0);
    TH_WAIT_COUNTER(&s->switched, n + 1);
    EXPECT_EQ_ERR(atomic_load(&s->set_rc), 0);
    EXPECT_EQ_ERR(atomic_load(&s->bad_rc), -EINVAL);
}

/*
 * Automatic first: past the high-water mark evn stops reading, so a
 * request sent then waits. Switched to manual, it is read at once. Switched
 * back while still full, the next request waits again, until the client
 * reads and the output drains.
 */
static void test_switching(void)
{
    struct state s;
    evn_events ev;
    init(&s, &ev, EVN_FLOW_AUTO);
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    int fd = small_client(&ts);
    TH_WAIT_COUNTER(&s.opened, 1);
    /* Three answers take the queue over HIGH: evn stops reading. */
    send_all(&s, fd, 0, 3, "r");
    EXPECT_EQ_INT(atomic_load(&s.full_seen), 1);
    th_write_str(fd, "r");
    /* Nothing proves a read did not happen but the switch making it
     * happen: the fourth request is answered only after it. */
    wake_and_switch(&s, &ts, EVN_FLOW_MANUAL);
    TH_WAIT_COUNTER(&s.requests, 4);
    wake_and_switch(&s, &ts, EVN_FLOW_AUTO);
    th_write_str(fd, "r");
    read_answers(fd, 4, ANSWER, 'r');
    TH_WAIT_COUNTER(&s.requests, 5);
    read_answers(fd, 1, ANSWER, 'r');
    close(fd);
    TH_WAIT_COUNTER(&s.closed, 1);
    th_server_stop(&ts);
    fini(&s);
}

static void test_bad_mode(void)
{
    evn_events ev = {.flow = (evn_flow)2};
    evn_server *srv = NULL;
    const char *a = "tcp://127.0.0.1:0";
    EXPECT_EQ_ERR(evn_server_new(&srv, &ev, &a, 1), -EINVAL);
    EXPECT_NULL(srv);
    EXPECT_CONTAINS(evn_errmsg(), "flow");
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_manual_keeps_reading);
    TH_RUN(test_switching);
    TH_RUN(test_bad_mode);
    return th_finish();
}
