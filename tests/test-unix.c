/*
 * Unix sockets: absolute and relative paths work, a stale socket file left by
 * a dead server is replaced, evn_server_free() removes the file; a file that
 * is not a socket and a socket a live server listens on are left alone.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static th_counter closed = TH_COUNTER_INIT;

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    evn_write(c, in, len);
    return EVN_NONE;
}

static evn_action on_closed(evn_conn *c, int err)
{
    th_counter_add(&closed, 1);
    return EVN_NONE;
}

static void start(th_server *ts, const char *url)
{
    evn_events ev = {0};
    ev.data = on_data;
    ev.closed = on_closed;
    th_server_start(ts, &ev, &url, 1);
}

static void echo_via(th_server *ts, const char *msg)
{
    long before = th_counter_get(&closed);
    int fd = th_connect_srv(ts, 0);
    th_write_str(fd, msg);
    EXPECT_READ_STR(fd, msg);
    close(fd);
    TH_WAIT_COUNTER(&closed, before + 1);
}

static void unix_url(char *url, size_t size, const char *path)
{
    snprintf(url, size, "unix://%s", path);
}

static void test_absolute_path(void)
{
    char path[128], url[160];
    th_tmppath(path, sizeof path, "abs.sock");
    unix_url(url, sizeof url, path);
    th_server ts;
    start(&ts, url);
    ASSERT_TRUE(th_path_exists(path));
    EXPECT_TRUE(th_is_socket_file(path));
    EXPECT_STREQ(evn_server_url(ts.srv, 0), url);
    EXPECT_EQ_INT(th_server_port(&ts, 0), 0);
    echo_via(&ts, "absolute");
    th_server_stop(&ts);
    EXPECT_FALSE(th_path_exists(path));
}

/* A server that never ran still removes its file. */
static void test_free_without_run_removes_file(void)
{
    char path[128], url[160];
    th_tmppath(path, sizeof path, "norun.sock");
    unix_url(url, sizeof url, path);
    evn_events ev = {0};
    evn_server *srv = NULL;
    const char *addr = url;
    ASSERT_EQ_ERR(evn_server_new(&srv, &ev, &addr, 1), 0);
    EXPECT_TRUE(th_path_exists(path));
    evn_server_free(srv);
    EXPECT_FALSE(th_path_exists(path));
}

static void test_relative_path(void)
{
    char cwd[512];
    ASSERT_NOT_NULL(getcwd(cwd, sizeof cwd));
    ASSERT_EQ_INT(chdir(th_tmpdir()), 0);
    th_server ts;
    start(&ts, "unix://rel.sock");
    char path[128];
    th_tmppath(path, sizeof path, "rel.sock");
    EXPECT_TRUE(th_path_exists(path));
    EXPECT_CONTAINS(evn_server_url(ts.srv, 0), "rel.sock");
    echo_via(&ts, "relative");
    /* Connect by the absolute name too: it is the same socket. */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = th_connect_addr((struct sockaddr *)&sun, sizeof sun);
    th_write_str(fd, "abs");
    EXPECT_READ_STR(fd, "abs");
    close(fd);
    th_server_stop(&ts);
    EXPECT_FALSE(th_path_exists(path));
    ASSERT_EQ_INT(chdir(cwd), 0);
}

/* A socket file whose server died (bound, never unlinked) is replaced. */
static void test_stale_socket_replaced(void)
{
    char path[128], url[160];
    th_tmppath(path, sizeof path, "stale.sock");
    unix_url(url, sizeof url, path);
    int dead = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE_INT(dead, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    ASSERT_EQ_INT(bind(dead, (struct sockaddr *)&sun, sizeof sun), 0);
    ASSERT_EQ_INT(listen(dead, 1), 0);
    close(dead);
    ASSERT_TRUE(th_path_exists(path));

    th_server ts;
    start(&ts, url);
    echo_via(&ts, "fresh");
    th_server_stop(&ts);
    EXPECT_FALSE(th_path_exists(path));
}

/* A live server's socket is not stolen: the second server fails. */
static void test_live_socket_kept(void)
{
    char path[128], url[160];
    th_tmppath(path, sizeof path, "live.sock");
    unix_url(url, sizeof url, path);
    th_server ts;
    start(&ts, url);
    evn_events ev = {0};
    evn_server *srv = NULL;
    const char *addr = url;
    int rc = evn_server_new(&srv, &ev, &addr, 1);
    EXPECT_EQ_ERR(rc, -EADDRINUSE);
    EXPECT_NULL(srv);
    EXPECT_CONTAINS(evn_errmsg(), path);
    /* The first server still serves, and its file is still there. */
    EXPECT_TRUE(th_path_exists(path));
    echo_via(&ts, "still mine");
    th_server_stop(&ts);
    EXPECT_FALSE(th_path_exists(path));
}

/* A regular file in the way is an error, and is not deleted. */
static void test_regular_file_kept(void)
{
    char path[128], url[160];
    th_tmppath(path, sizeof path, "file.sock");
    unix_url(url, sizeof url, path);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    ASSERT_GE_INT(fd, 0);
    th_write_str(fd, "precious");
    close(fd);
    evn_events ev = {0};
    evn_server *srv = NULL;
    const char *addr = url;
    int rc = evn_server_new(&srv, &ev, &addr, 1);
    EXPECT_LT_INT(rc, 0);
    EXPECT_NULL(srv);
    EXPECT_CONTAINS(evn_errmsg(), path);
    struct stat st;
    EXPECT_EQ_INT(lstat(path, &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ_INT(st.st_size, 8);
    unlink(path);
}

/* Output larger than the socket buffers crosses a unix socket intact. */
static void test_large_transfer(void)
{
    char path[128], url[160];
    th_tmppath(path, sizeof path, "big.sock");
    unix_url(url, sizeof url, path);
    th_server ts;
    start(&ts, url);
    int fd = th_connect_srv(&ts, 0);
    size_t n = 4 << 20;
    char *out = malloc(n), *in = malloc(n);
    ASSERT_TRUE(out && in);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(i * 31 + (i >> 12));
    EXPECT_EQ_INT(th_transfer(fd, out, n, in, n), (ssize_t)n);
    EXPECT_MEMEQ(in, out, n);
    free(out);
    free(in);
    long before = th_counter_get(&closed);
    close(fd);
    TH_WAIT_COUNTER(&closed, before + 1);
    th_server_stop(&ts);
}

static char local_seen[128];
static atomic_int local_rc;

static evn_action record_local(evn_conn *c)
{
    atomic_store(&local_rc, evn_conn_local_str(c, local_seen, 110));
    return EVN_NONE;
}

/* The longest path a sockaddr_un holds (107 bytes): it binds, serves, and
 * its name fits the 110 bytes evn.h promises are enough. */
static void test_longest_path(void)
{
    char path[128], url[160];
    struct sockaddr_un sun;
    size_t max = sizeof sun.sun_path - 1;
    th_tmppath(path, sizeof path, "");
    size_t dirlen = strlen(path);
    ASSERT_TRUE(dirlen < max);
    memset(path + dirlen, 'p', max - dirlen);
    path[max] = '\0';
    unix_url(url, sizeof url, path);
    evn_events ev = {0};
    ev.data = on_data;
    ev.closed = on_closed;
    ev.opened = record_local;
    th_server ts;
    const char *addr = url;
    th_server_start(&ts, &ev, &addr, 1);
    EXPECT_STREQ(evn_server_url(ts.srv, 0), url);
    echo_via(&ts, "long");
    EXPECT_EQ_INT(atomic_load(&local_rc), (int)max);
    EXPECT_STREQ(local_seen, path);
    th_server_stop(&ts);
    EXPECT_FALSE(th_path_exists(path));
}

int main(int argc, char **argv)
{
    th_init(argc, argv);
    if (!th_have_unix_sockets()) {
        th_skip("no unix sockets (AF_UNIX) on this system");
        return th_finish();
    }
    TH_RUN(test_absolute_path);
    TH_RUN(test_free_without_run_removes_file);
    TH_RUN(test_relative_path);
    TH_RUN(test_stale_socket_replaced);
    TH_RUN(test_live_socket_kept);
    TH_RUN(test_regular_file_kept);
    TH_RUN(test_large_transfer);
    TH_RUN(test_longest_path);
    return th_finish();
}
