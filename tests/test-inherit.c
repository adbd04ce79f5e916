/*
 * Inherited listening sockets. Under systemd's socket activation an address
 * uses the socket passed for it (by address, or by fdname= for a
 * LISTEN_FDNAMES name) and a connection already waiting on it is served;
 * the LISTEN_* variables are consumed and the sockets set close-on-exec; an
 * address with no socket is bound as usual. A hand-off passes every socket
 * of a server (a shared one, a unix one, each loop's reuseport socket) to a
 * new server: connections waiting in any accept queue at hand-off time are
 * served by the new server, none lost; a server that is running hands off
 * only once the new one serves, then drains, answering its in-flight
 * request first; a new server that fails, or a channel that closes, leaves
 * the old one serving with the reason in evn_errmsg().
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Each server answers "TAG:" and the input, so a reply says who served. */
struct tagged {
    const char *tag;
    th_counter opened, blocked;
    th_counter release;
};

static evn_action on_opened(evn_conn *c)
{
    struct tagged *t = evn_server_udata(evn_conn_server(c));
    th_counter_add(&t->opened, 1);
    return EVN_NONE;
}

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    struct tagged *t = evn_server_udata(evn_conn_server(c));
    /* "block": hold this loop inside the callback until released, so that
     * it accepts nothing meanwhile (a loop busy with a long request). */
    if (len >= 5 && memcmp(in, "block", 5) == 0) {
        th_counter_add(&t->blocked, 1);
        TH_WAIT_COUNTER(&t->release, 1);
    }
    char out[256];
    int n = snprintf(out, sizeof out, "%s:%.*s", t->tag, (int)(len < 200 ? len : 200), in);
    evn_write(c, out, (size_t)n);
    return EVN_NONE;
}

/* Told to drain: one busy in a request has had its answer queued already. */
static evn_action on_draining(evn_conn *c)
{
    return EVN_CLOSE;
}

static void tagged_init(struct tagged *t, const char *tag, evn_events *ev)
{
    memset(t, 0, sizeof *t);
    t->tag = tag;
    th_counter_init(&t->opened);
    th_counter_init(&t->blocked);
    th_counter_init(&t->release);
    memset(ev, 0, sizeof *ev);
    ev->udata = t;
    ev->opened = on_opened;
    ev->data = on_data;
    ev->draining = on_draining;
}

static void tagged_fini(struct tagged *t)
{
    th_counter_destroy(&t->opened);
    th_counter_destroy(&t->blocked);
    th_counter_destroy(&t->release);
}

/* Send "x" on fd and expect "TAG:x" back. */
static void expect_served(int fd, const char *tag, const char *x)
{
    char want[128];
    snprintf(want, sizeof want, "%s:%s", tag, x);
    th_write_str(fd, x);
    EXPECT_READ_STR(fd, want);
}

/* ---- the hand-off, between two servers of this process ---- */

struct offer {
    evn_server *srv;
    int sock;
    int64_t drain_ms;
    int rc;
    char why[256];
    pthread_t thread;
};

static void *offer_thread(void *arg)
{
    struct offer *o = arg;
    o->rc = evn_server_handoff(o->srv, o->sock, o->drain_ms);
    snprintf(o->why, sizeof o->why, "%s", evn_errmsg());
    return NULL;
}

/* Offer old's sockets on a new socketpair, its taking end named in
 * EVN_HANDOFF_FD for the next evn_server_new of this process. */
static void offer_start(struct offer *o, evn_server *old, int64_t drain_ms)
{
    int sv[2];
    ASSERT_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char v[16];
    snprintf(v, sizeof v, "%d", sv[1]);
    setenv("EVN_HANDOFF_FD", v, 1);
    snprintf(v, sizeof v, "%d", (int)getpid());
    setenv("EVN_HANDOFF_PID", v, 1);
    o->srv = old;
    o->sock = sv[0];
    o->drain_ms = drain_ms;
    o->rc = 1;
    ASSERT_EQ_INT(pthread_create(&o->thread, NULL, offer_thread, o), 0);
}

static int offer_join(struct offer *o)
{
    pthread_join(o->thread, NULL);
    close(o->sock);
    return o->rc;
}

/*
 * Connections queued on every socket of a server that accepts nothing (it
 * was made, never run): after the hand-off each is served by the new
 * server. With reuseport the kernel spreads them over the loops' sockets,
 * so a socket not passed would lose its share.
 */
static void handoff_queued(const char *url, int nloops, bool unix_too)
{
    struct tagged to, tn;
    evn_events eo, en;
    tagged_init(&to, "old", &eo);
    tagged_init(&tn, "new", &en);
    eo.nloops = en.nloops = nloops;
    char path[200], unixurl[220];
    th_tmppath(path, sizeof path, "handoff.sock");
    snprintf(unixurl, sizeof unixurl, "unix://%s", path);
    const char *addrs[2] = {url, unixurl};
    size_t naddrs = unix_too ? 2 : 1;
    evn_server *old;
    ASSERT_EQ_INT(evn_server_new(&old, &eo, addrs, naddrs), 0);
    const struct sockaddr *sa = evn_server_addr(old, 0, NULL);
    int port = th_sockaddr_port(sa);
    enum { N = 24 };
    int fds[N], ufds[N];
    for (int i = 0; i < N; i++)
        fds[i] = th_connect_ip("127.0.0.1", port);
    for (int i = 0; unix_too && i < N; i++)
        ufds[i] = th_connect_srv(&(th_server){.srv = old}, 1);

    struct offer o;
    offer_start(&o, old, 10000);
    /* The same addresses, port 0 included: the sockets offered match. */
    th_server tsn;
    th_server_new(&tsn, &en, addrs, naddrs);
    th_server_run(&tsn);
    EXPECT_EQ_INT(offer_join(&o), 0);
    EXPECT_EQ_INT(th_server_port(&tsn, 0), port);
    EXPECT_TRUE(evn_server_draining(old));
    EXPECT_NULL(getenv("EVN_HANDOFF_FD"));
    /* The old server lets go of its copies: the queues live on. */
    evn_server_free(old);
    EXPECT_TRUE(!unix_too || th_path_exists(path));
    for (int i = 0; i < N; i++) {
        expect_served(fds[i], "new", "queued");
        close(fds[i]);
    }
    for (int i = 0; unix_too && i < N; i++) {
        expect_served(ufds[i], "new", "queued-unix");
        close(ufds[i]);
    }
    /* And new connections keep coming to the new server. */
    int fd = th_connect_ip("127.0.0.1", port);
    expect_served(fd, "new", "fresh");
    close(fd);
    th_server_stop(&tsn);
    /* The new server, which ran, removes the unix socket's file. */
    EXPECT_FALSE(unix_too && th_path_exists(path));
    tagged_fini(&to);
    tagged_fini(&tn);
}

static void test_handoff_queued_shared(void)
{
    handoff_queued("tcp://127.0.0.1:0", 1, true);
}

static void test_handoff_queued_reuseport(void)
{
    handoff_queued("tcp://127.0.0.1:0?reuseport=true", 3, false);
}

/*
 * A running server busy with a request when the hand-off comes: it goes on
 * accepting until the new server serves, then drains, answering the
 * request it is in before closing. Connections queued meanwhile are all
 * served (by the new server; a backend that accepts by itself may have
 * taken some first, which the old one then serves).
 */
static void test_handoff_running(void)
{
    struct tagged to, tn;
    evn_events eo, en;
    tagged_init(&to, "old", &eo);
    tagged_init(&tn, "new", &en);
    const char *addr = "tcp://127.0.0.1:0";
    th_server tso, tsn;
    th_server_start(&tso, &eo, &addr, 1);
    int port = th_server_port(&tso, 0);
    int busy = th_connect_ip("127.0.0.1", port);
    th_write_str(busy, "block");
    TH_WAIT_COUNTER(&to.blocked, 1);
    enum { N = 16 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = th_connect_ip("127.0.0.1", port);

    struct offer o;
    offer_start(&o, tso.srv, 10000);
    th_server_new(&tsn, &en, &addr, 1);
    th_server_run(&tsn);
    EXPECT_EQ_INT(offer_join(&o), 0);
    th_counter_add(&to.release, 1);
    /* The request in flight gets its answer, then the connection closes. */
    EXPECT_READ_STR(busy, "old:block");
    EXPECT_EQ_INT(th_wait_eof(busy), 0);
    close(busy);
    th_server_join(&tso);
    th_server_free(&tso);
    int by_new = 0;
    for (int i = 0; i < N; i++) {
        char got[32] = "";
        th_write_str(fds[i], "q");
        ssize_t r = th_read_exact(fds[i], got, 5);
        EXPECT_EQ_INT(r, 5);
        EXPECT_TRUE(strcmp(got, "new:q") == 0 || strcmp(got, "old:q") == 0);
        by_new += strcmp(got, "new:q") == 0;
        close(fds[i]);
    }
    const char *be = evn_server_backend(tsn.srv);
    if (strcmp(be, "io_uring") != 0)
        EXPECT_EQ_INT(by_new, N);
    th_server_stop(&tsn);
    tagged_fini(&to);
    tagged_fini(&tn);
}

/* The new server fails (an address it cannot serve): the old one is told
 * why, and serves on. */
static void test_handoff_refused(void)
{
    struct tagged to;
    evn_events eo;
    tagged_init(&to, "old", &eo);
    const char *addr = "tcp://127.0.0.1:0";
    th_server tso;
    th_server_start(&tso, &eo, &addr, 1);
    int port = th_server_port(&tso, 0);

    struct offer o;
    offer_start(&o, tso.srv, 10000);
    const char *bad[2] = {"tcp://127.0.0.1:0", "tcp://127.0.0.1:99999"};
    evn_server *srv = NULL;
    evn_events en = eo;
    EXPECT_EQ_ERR(evn_server_new(&srv, &en, bad, 2), -EINVAL);
    EXPECT_EQ_ERR(offer_join(&o), -ECANCELED);
    EXPECT_CONTAINS(o.why, "99999");
    EXPECT_FALSE(evn_server_draining(tso.srv));
    int fd = th_connect_ip("127.0.0.1", port);
    expect_served(fd, "old", "still");
    close(fd);

    /* The channel closes with nothing taken (the new process died). */
    offer_start(&o, tso.srv, 10000);
    close(atoi(getenv("EVN_HANDOFF_FD")));
    unsetenv("EVN_HANDOFF_FD");
    unsetenv("EVN_HANDOFF_PID");
    EXPECT_EQ_ERR(offer_join(&o), -EPIPE);
    EXPECT_CONTAINS(o.why, "closed the channel");
    fd = th_connect_ip("127.0.0.1", port);
    expect_served(fd, "old", "again");
    close(fd);
    th_server_stop(&tso);
    tagged_fini(&to);
}

/* ---- systemd's socket activation ---- */

/* What the exec'd child inherits, as systemd would pass it: descriptors
 * 3 (TCP, with a connection waiting) and 4 (a unix socket). A fresh
 * process, so that nothing else holds those numbers. */
static int sd_port, sd_waiting;
static char sd_path[100];

static void systemd_setup(void)
{
    ASSERT_TRUE(fcntl(3, F_GETFD) < 0 && fcntl(4, F_GETFD) < 0);
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    if (bind(tcp, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(tcp, 64) < 0 ||
        getsockname(tcp, (struct sockaddr *)&sin, &len) < 0)
        _exit(3);
    sd_port = ntohs(sin.sin_port);
    snprintf(sd_path, sizeof sd_path, "/tmp/evn-test-sd-%d.sock", (int)getpid());
    unlink(sd_path);
    int un = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", sd_path);
    if (bind(un, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(un, 16) < 0)
        _exit(3);
    int waiting = socket(AF_INET, SOCK_STREAM, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(waiting, (struct sockaddr *)&sin, sizeof sin) < 0)
        _exit(3);
    if (dup2(tcp, 100) != 100 || dup2(un, 101) != 101 || dup2(waiting, 102) != 102)
        _exit(3);
    close(tcp), close(un), close(waiting);
    if (dup2(100, 3) != 3 || dup2(101, 4) != 4)
        _exit(3);
    close(100), close(101);
    sd_waiting = 102;
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "web:admin", 1);
}

/*
 * In the exec'd child: the TCP socket is matched by address (and serves the
 * connection waiting on it), the unix one by its name (the address asks for
 * another path), and an address with no socket is bound.
 */
static void systemd_in_child(void)
{
    struct tagged t;
    evn_events ev;
    systemd_setup();
    tagged_init(&t, "sd", &ev);
    char path[200], url[300], tcpurl[64];
    th_tmppath(path, sizeof path, "not-this.sock");
    snprintf(url, sizeof url, "unix://%s?fdname=admin", path);
    snprintf(tcpurl, sizeof tcpurl, "tcp://127.0.0.1:%d", sd_port);
    const char *addrs[3] = {tcpurl, url, "tcp://127.0.0.1:0"};
    th_server ts;
    th_server_start(&ts, &ev, addrs, 3);
    EXPECT_EQ_INT(th_server_port(&ts, 0), sd_port);
    EXPECT_NE_INT(th_server_port(&ts, 2), sd_port);
    EXPECT_NULL(getenv("LISTEN_FDS"));
    EXPECT_EQ_INT(fcntl(3, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    EXPECT_CONTAINS(evn_server_url(ts.srv, 1), sd_path);
    expect_served(sd_waiting, "sd", "was-waiting");
    int u = th_connect_srv(&ts, 1);
    expect_served(u, "sd", "by-name");
    int f = th_connect_srv(&ts, 2);
    expect_served(f, "sd", "bound");
    EXPECT_FALSE(th_path_exists(path));
    th_server_stop(&ts);
    /* systemd's socket file is systemd's to remove. */
    EXPECT_TRUE(th_path_exists(sd_path));
    close(sd_waiting), close(u), close(f);
    unlink(sd_path);
    tagged_fini(&t);
}

/* systemd's socket activation, in a fresh process (this test run again). */
static void test_systemd_activation(void)
{
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        char *args[] = {"test-inherit", "--systemd-child", NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    int st = 0;
    ASSERT_EQ_INT(waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st));
    EXPECT_EQ_INT(WEXITSTATUS(st), 0);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--systemd-child") == 0) {
        /* Descriptors inherited from whoever runs the test (ctest) move
         * out of the way of systemd's numbers. */
        for (int fd = 3; fd <= 4; fd++)
            if (fcntl(fd, F_GETFD) >= 0 && fcntl(fd, F_DUPFD_CLOEXEC, 200) >= 0)
                close(fd);
        char *none[] = {argv[0], NULL};
        th_init(1, none);
        TH_RUN(systemd_in_child);
        return th_finish();
    }
    th_init(argc, argv);
    TH_RUN(test_systemd_activation);
    TH_RUN(test_handoff_queued_shared);
    TH_RUN(test_handoff_queued_reuseport);
    TH_RUN(test_handoff_running);
    TH_RUN(test_handoff_refused);
    return th_finish();
}
