/*
 * The ABI: a program built against an older evn.h keeps working with this
 * library. evn 0.1's callers call evn_server_new and evn_serve as functions
 * with the 0.1 evn_events, which has none of the fields added since; newer
 * callers pass the size of their struct (the evn_server_new macro does). The
 * library must read no byte past the size it was given, give the newer
 * fields their defaults, accept a struct from a newer evn.h whose extra
 * fields are all zero and refuse one that sets them. evn_version() and
 * evn_version_string() agree with the header and with the build.
 *
 * This test links the shared library, as a program built earlier would.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* evn_events as evn 0.1's evn.h declared it. */
struct events_0_1 {
    int nloops;
    evn_balance balance;
    const char *backend;
    void *udata;
    evn_action (*serving)(evn_server *srv);
    evn_action (*opened)(evn_conn *c);
    evn_action (*closed)(evn_conn *c, int err);
    evn_action (*detached)(evn_conn *c, int fd);
    evn_action (*data)(evn_conn *c, const char *in, size_t len);
    evn_action (*tick)(evn_server *srv, int64_t *delay_ms);
    evn_action (*drained)(evn_conn *c);
    evn_action (*timeout)(evn_conn *c);
    evn_action (*eof)(evn_conn *c);
    evn_action (*draining)(evn_conn *c);
    size_t out_high, out_low;
    size_t out_cap;
    int64_t idle_timeout_ms;
    int max_conns;
    const char *busy_reply;
    int64_t tls_handshake_timeout_ms;
};

/* evn 0.1's entry points, as its binaries call them. */
#undef evn_server_new
#undef evn_serve
int evn_server_new(evn_server **srvp, const struct events_0_1 *ev, const char *const *addrs,
                   size_t naddrs);
int evn_serve(const struct events_0_1 *ev, const char *const *addrs, size_t naddrs);

static th_counter opened;

static evn_action on_opened(evn_conn *c)
{
    th_counter_add(&opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    evn_write(c, in, len);
    return EVN_NONE;
}

/*
 * Place an old struct at the very end of a readable page, followed by a
 * page that cannot be read at all: a read past its end crashes at once.
 */
static void *page_end(size_t size, void **map)
{
    long page = sysconf(_SC_PAGESIZE);
    char *m =
        mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(m != MAP_FAILED);
    ASSERT_EQ_INT(mprotect(m + page, (size_t)page, PROT_NONE), 0);
    *map = m;
    return m + page - size;
}

static void unmap(void *map)
{
    munmap(map, (size_t)sysconf(_SC_PAGESIZE) * 2);
}

/* Serve an echo on a server made from this old struct, with new's help. */
static void echo_through(evn_server *srv)
{
    th_server ts = {.srv = srv};
    th_server_run(&ts);
    long before = th_counter_get(&opened);
    int fd = th_connect_srv(&ts, 0);
    TH_WAIT_COUNTER(&opened, before + 1);
    th_write_str(fd, "old");
    EXPECT_READ_STR(fd, "old");
    close(fd);
    th_server_stop(&ts);
}

static void fill_0_1(struct events_0_1 *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->opened = on_opened;
    ev->data = on_data;
}

/* A 0.1 binary: the function evn_server_new, its struct against a page's end. */
static void test_0_1_caller(void)
{
    void *map;
    struct events_0_1 *ev = page_end(sizeof *ev, &map);
    fill_0_1(ev);
    const char *addr = "tcp://127.0.0.1:0";
    evn_server *srv = NULL;
    ASSERT_EQ_ERR(evn_server_new(&srv, ev, &addr, 1), 0);
    echo_through(srv);
    unmap(map);
}

/* The same struct through the sized call, followed by bytes that would be
 * an unknown flow mode if they were read as the field after it. */
static void test_short_struct_sized(void)
{
    struct {
        struct events_0_1 ev;
        unsigned char after[64];
    } buf;
    fill_0_1(&buf.ev);
    memset(buf.after, 0xff, sizeof buf.after);
    const char *addr = "tcp://127.0.0.1:0";
    evn_server *srv = NULL;
    ASSERT_EQ_ERR(evn_server_new_sized(&srv, (const evn_events *)&buf.ev, sizeof buf.ev, &addr, 1),
                  0);
    echo_through(srv);
    /* And too short for any evn: refused. */
    EXPECT_EQ_ERR(evn_server_new_sized(&srv, (const evn_events *)&buf.ev, 8, &addr, 1), -EINVAL);
    EXPECT_NULL(srv);
}

/* A program built against a newer evn.h, with fields this library lacks. */
static void test_newer_struct(void)
{
    struct {
        evn_events ev;
        unsigned char future[32];
    } buf;
    memset(&buf, 0, sizeof buf);
    buf.ev.opened = on_opened;
    buf.ev.data = on_data;
    const char *addr = "tcp://127.0.0.1:0";
    evn_server *srv = NULL;
    ASSERT_EQ_ERR(evn_server_new_sized(&srv, &buf.ev, sizeof buf, &addr, 1), 0);
    echo_through(srv);
    buf.future[17] = 1;
    EXPECT_EQ_ERR(evn_server_new_sized(&srv, &buf.ev, sizeof buf, &addr, 1), -ENOTSUP);
    EXPECT_NULL(srv);
    EXPECT_CONTAINS(evn_errmsg(), "newer evn.h");
}

/* evn_serve, the other 0.1 entry point: a server that stops at once. */
static evn_action stop_at_once(evn_server *srv)
{
    return EVN_SHUTDOWN;
}

static void test_0_1_serve(void)
{
    void *map;
    struct events_0_1 *ev = page_end(sizeof *ev, &map);
    memset(ev, 0, sizeof *ev);
    ev->serving = stop_at_once;
    const char *addr = "tcp://127.0.0.1:0";
    EXPECT_EQ_ERR(evn_serve(ev, &addr, 1), 0);
    unmap(map);
}

static void test_version(void)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", EVN_VERSION_MAJOR, EVN_VERSION_MINOR,
             EVN_VERSION_PATCH);
    EXPECT_STREQ(evn_version_string(), want);
    EXPECT_EQ_INT(evn_version(), EVN_VERSION);
    EXPECT_EQ_INT(EVN_VERSION,
                  EVN_VERSION_MAJOR * 10000 + EVN_VERSION_MINOR * 100 + EVN_VERSION_PATCH);
    /* The build's idea of the version, from CMake's project(). */
    EXPECT_STREQ(evn_version_string(), EVN_TEST_CMAKE_VERSION);
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    th_counter_init(&opened);
    TH_RUN(test_0_1_caller);
    TH_RUN(test_short_struct_sized);
    TH_RUN(test_newer_struct);
    TH_RUN(test_0_1_serve);
    TH_RUN(test_version);
    return th_finish();
}
