/*
 * evn_set_allocator: refused (-EBUSY) while a server exists, whose memory
 * came from the functions in place when it was made, and none of the new
 * functions is called; -EINVAL for a partial set; accepted once the last
 * server is freed, after which every allocation of a server's life goes
 * through the new functions and every block is given back to them.
 * (Failure of each allocation site is test-alloc-faults'.)
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

static atomic_long calls, live;

static void *my_malloc(size_t n)
{
    atomic_fetch_add(&calls, 1);
    void *p = malloc(n);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

static void *my_realloc(void *p, size_t n)
{
    atomic_fetch_add(&calls, 1);
    void *q = realloc(p, n);
    if (q && !p)
        atomic_fetch_add(&live, 1);
    return q;
}

static void *my_calloc(size_t k, size_t n)
{
    atomic_fetch_add(&calls, 1);
    void *p = calloc(k, n);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

static void my_free(void *p)
{
    if (p) {
        atomic_fetch_add(&calls, 1);
        atomic_fetch_sub(&live, 1);
    }
    free(p);
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (in)
        evn_write(c, in, len);
    return EVN_NONE;
}

static void echo_once(th_server *ts)
{
    int fd = th_connect_srv(ts, 0);
    th_write_str(fd, "ping");
    char buf[4];
    EXPECT_EQ_INT(th_read_exact(fd, buf, sizeof buf), 4);
    EXPECT_MEMEQ(buf, "ping", 4);
    close(fd);
}

static void test_busy_while_a_server_exists(void)
{
    evn_events ev = {.data = on_data};
    const char *addr = "tcp://127.0.0.1:0";
    th_server ts;
    th_server_start(&ts, &ev, &addr, 1);
    EXPECT_EQ_ERR(evn_set_allocator(my_malloc, my_realloc, my_calloc, my_free), -EBUSY);
    echo_once(&ts);
    th_server_stop(&ts);
    EXPECT_EQ_INT(atomic_load(&calls), 0);
}

static void test_partial_set_refused(void)
{
    EXPECT_EQ_ERR(evn_set_allocator(my_malloc, NULL, my_calloc, my_free), -EINVAL);
    EXPECT_EQ_ERR(evn_set_allocator(NULL, NULL, NULL, my_free), -EINVAL);
    EXPECT_EQ_INT(atomic_load(&calls), 0);
}

/* Last: from here on evn's memory is the test's, not the harness's. */
static void test_every_allocation_goes_through_it(void)
{
    TH_NEED_REUSEPORT();
    ASSERT_EQ_ERR(evn_set_allocator(my_malloc, my_realloc, my_calloc, my_free), 0);
    evn_events ev = {.data = on_data, .nloops = 2};
    const char *addrs[] = {"tcp://127.0.0.1:0", "tcp://127.0.0.1:0?reuseport=true"};
    th_server ts;
    th_server_start(&ts, &ev, addrs, 2);
    echo_once(&ts);
    EXPECT_GT_INT(atomic_load(&calls), 0);
    EXPECT_GT_INT(atomic_load(&live), 0);
    th_server_stop(&ts);
    EXPECT_EQ_INT(atomic_load(&live), 0);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    TH_RUN(test_busy_while_a_server_exists);
    TH_RUN(test_partial_set_refused);
    TH_RUN(test_every_allocation_goes_through_it);
    return th_finish();
}
