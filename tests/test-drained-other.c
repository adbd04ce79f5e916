/*
 * drained fires for a connection whose output another connection's callback
 * pushed over high water, as a proxy does: it writes to the other side,
 * stops reading its own when evn_conn_full() says the other side is full,
 * and counts on the other side's drained to resume (evn.h, drained and
 * evn_conn_read).
 *
 * The server gets two connections, src and dst. One byte from src makes it
 * write ABOVE_HIGH bytes to dst in one evn_write, so evn_conn_full(dst) is
 * true. dst's socket has room for all of it, so it leaves in one send, and
 * the client reads it all: the queue goes from above high water to empty
 * without dst's own callback ever running and without a short send that
 * would have made evn wait for writability. drained(dst) must fire all the
 * same; a proxy that waits for it would otherwise stop reading src for good.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HIGH (64u << 10)
#define LOW (16u << 10)
#define ABOVE_HIGH (HIGH + (16u << 10))

struct state {
    th_counter opened, full_seen, drained;
    evn_conn *dst; /* loop thread only */
    evn_id dst_id;
};

static struct state *S(evn_conn *c)
{
    return evn_server_udata(evn_conn_server(c));
}

static evn_action on_opened(evn_conn *c)
{
    struct state *s = S(c);
    /* The second connection is dst: room in its socket for all of it. */
    if (th_counter_get(&s->opened) == 1) {
        int big = 1 << 20;
        setsockopt(evn_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        EXPECT_EQ_INT(evn_conn_set_watermarks(c, HIGH, LOW), 0);
        s->dst = c;
        s->dst_id = evn_conn_id(c);
    }
    th_counter_add(&s->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct state *s = S(c);
    if (!in || c == s->dst)
        return EVN_NONE;
    static char block[ABOVE_HIGH];
    memset(block, 'x', sizeof block);
    EXPECT_EQ_INT(evn_write(s->dst, block, sizeof block), 0);
    if (evn_conn_full(s->dst))
        th_counter_add(&s->full_seen, 1);
    return EVN_NONE;
}

static evn_action on_drained(evn_conn *c)
{
    struct state *s = S(c);
    if (c == s->dst)
        th_counter_add(&s->drained, 1);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    struct state *s = S(c);
    if (c == s->dst)
        s->dst = NULL;
    return EVN_NONE;
}

static void test_drained_after_full_from_other_conn(void)
{
    struct state s = {0};
    th_counter_init(&s.opened);
    th_counter_init(&s.full_seen);
    th_counter_init(&s.drained);
    evn_events ev = {0};
    ev.udata = &s;
    ev.opened = on_opened;
    ev.data = on_data;
    ev.drained = on_drained;
    ev.closed = on_closed;
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);

    int src = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 1);
    int dst = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&s.opened, 2);
    th_write_str(src, "go");
    TH_WAIT_COUNTER(&s.full_seen, 1);

    char *got = malloc(ABOVE_HIGH);
    ASSERT_NOT_NULL(got);
    EXPECT_EQ_INT(th_read_exact(dst, got, ABOVE_HIGH), ABOVE_HIGH);
    free(got);
    /* Everything was sent and read: the queue went from above HIGH to 0. */
    TH_WAIT_COUNTER(&s.drained, 1);

    close(src);
    close(dst);
    th_server_stop(&ts);
    th_counter_destroy(&s.opened);
    th_counter_destroy(&s.full_seen);
    th_counter_destroy(&s.drained);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_drained_after_full_from_other_conn);
    return th_finish();
}
