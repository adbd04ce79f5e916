/*
 * Choosing the backend: "auto" runs io_uring where it can be set up and
 * falls back to the default where it cannot, serving the same; asked for by
 * name and unavailable, io_uring makes evn_server_new fail with a message
 * naming the reason. io_uring is made unavailable as a container's seccomp
 * profile or kernel.io_uring_disabled would: a seccomp filter makes
 * io_uring_setup fail with EPERM (and, in another run, ENOSYS as on a kernel
 * without it), in a fresh copy of this program so that nothing probed
 * before the filter counts.
 */
#include "harness.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DENY_ENV "EVN_TEST_DENY_IO_URING"

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (in)
        evn_write(c, in, len);
    return EVN_NONE;
}

/* A server on backend (NULL: the default): its backend's name, after an
 * echo through it; NULL if evn_server_new failed (errmsg then has why). */
static const char *serve_echo(const char *backend, char *errmsg, size_t errlen)
{
    static char name[32];
    evn_events ev = {.backend = backend, .data = on_data};
    const char *addr = "tcp://127.0.0.1:0";
    evn_server *srv = NULL;
    if (evn_server_new(&srv, &ev, &addr, 1) < 0) {
        snprintf(errmsg, errlen, "%s", evn_errmsg());
        return NULL;
    }
    snprintf(name, sizeof name, "%s", evn_server_backend(srv));
    th_server ts = {.srv = srv};
    th_server_run(&ts);
    int fd = th_connect_srv(&ts, 0);
    th_write_str(fd, "hello");
    char buf[5];
    EXPECT_EQ_INT(th_read_exact(fd, buf, sizeof buf), 5);
    EXPECT_MEMEQ(buf, "hello", 5);
    close(fd);
    th_server_stop(&ts);
    return name;
}

/* ---- in the copy whose io_uring_setup fails ---- */

static int deny_io_uring(int err)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -errno;
    return 0;
}

static void test_denied(void)
{
    const char *deny = getenv(DENY_ENV);
    ASSERT_NOT_NULL(deny);
    /* The filter works: the system call itself fails as asked. */
    long rc = syscall(__NR_io_uring_setup, 8, NULL);
    EXPECT_EQ_INT(rc, -1);
    EXPECT_STREQ(strerrorname_np(errno), deny);

    char err[256] = "";
    const char *def = serve_echo(NULL, err, sizeof err);
    ASSERT_NOT_NULL(def);
    char want[32];
    snprintf(want, sizeof want, "%s", def);
    EXPECT_TRUE(strcmp(want, "io_uring") != 0);

    /* auto falls back to the default, and serves. */
    const char *got = serve_echo("auto", err, sizeof err);
    ASSERT_NOT_NULL(got);
    EXPECT_STREQ(got, want);

    /* By name it fails, saying why. */
    EXPECT_NULL(serve_echo("io_uring", err, sizeof err));
    EXPECT_CONTAINS(err, "io_uring");
    EXPECT_CONTAINS(err, "io_uring_setup");
    EXPECT_CONTAINS(err, strerror(strcmp(deny, "EPERM") == 0 ? EPERM : ENOSYS));
}

/* ---- in the test itself ---- */

/* Run this program again with io_uring_setup failing with deny; its exit
 * status. */
static int run_denied(const char *deny)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    ASSERT_TRUE(n > 0);
    self[n] = '\0';
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **env = calloc(nenv + 2, sizeof *env);
    ASSERT_NOT_NULL(env);
    char var[64];
    snprintf(var, sizeof var, "%s=%s", DENY_ENV, deny);
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "EVN_BACKEND=", 12) != 0)
            env[k++] = environ[i];
    env[k++] = var;
    env[k] = NULL;
    char *argv[] = {self, "test_denied", NULL};
    pid_t pid;
    int e = posix_spawn(&pid, self, NULL, NULL, argv, env);
    free(env);
    ASSERT_EQ_INT(e, 0);
    int status;
    ASSERT_EQ_INT(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_fallback_on_eperm(void)
{
    EXPECT_EQ_INT(run_denied("EPERM"), 0);
}

static void test_fallback_on_enosys(void)
{
    EXPECT_EQ_INT(run_denied("ENOSYS"), 0);
}

/* Where io_uring works, auto is io_uring. */
static void test_auto_is_io_uring_where_it_works(void)
{
    char err[256] = "";
    const char *by_name = serve_echo("io_uring", err, sizeof err);
    if (!by_name) {
        char why[300];
        snprintf(why, sizeof why, "io_uring does not work here: %s", err);
        th_skip(why);
        return;
    }
    const char *got = serve_echo("auto", err, sizeof err);
    ASSERT_NOT_NULL(got);
    EXPECT_STREQ(got, "io_uring");
}

int main(int argc, char **argv)
{
    const char *deny = getenv(DENY_ENV);
    if (deny) {
        int rc = deny_io_uring(strcmp(deny, "EPERM") == 0 ? EPERM : ENOSYS);
        if (rc < 0) {
            fprintf(stderr, "seccomp: %s\n", strerror(-rc));
            return 1;
        }
    }
    th_init(argc, argv);
    if (deny) {
        TH_RUN(test_denied);
        return th_finish();
    }
    TH_RUN(test_auto_is_io_uring_where_it_works);
    TH_RUN(test_fallback_on_eperm);
    TH_RUN(test_fallback_on_enosys);
    return th_finish();
}
