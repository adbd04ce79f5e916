/*
 * A small test harness for evn's tests: typed assertions that print both
 * values, a runner for the subtests of one executable with an fd and memory
 * leak check around each, a watchdog so a hung test fails instead of hanging,
 * a counting allocator that can make a chosen allocation fail, a server
 * running on a background thread, and blocking client helpers with a poll()
 * guard on every read.
 *
 * EXPECT_* records a failure and carries on; ASSERT_* records it and ends the
 * process at once (use it where carrying on would crash or hang). Both may be
 * used from any thread, including from inside evn callbacks.
 */
#ifndef EVN_TEST_HARNESS_H
#define EVN_TEST_HARNESS_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* The socket API, and on Windows the POSIX calls over Winsock. */
#include "compat.h"

#include "evn.h"

/* The exit status ctest counts as "skipped" (SKIP_RETURN_CODE). */
#define TH_SKIP_STATUS 77

/* ---- assertions ---- */

/* mingw-w64's printf checks (its C99 stdio, __USE_MINGW_ANSI_STDIO=1). */
#ifdef __MINGW_PRINTF_FORMAT
#define TH_PRINTF_FORMAT __MINGW_PRINTF_FORMAT
#else
#define TH_PRINTF_FORMAT printf
#endif

void th_fail_(const char *file, int line, bool fatal, const char *fmt, ...)
    __attribute__((format(TH_PRINTF_FORMAT, 4, 5)));
void th_cmp_int_(const char *file, int line, bool fatal, const char *ea, const char *op,
                 const char *eb, long long a, long long b, bool ok);
void th_cmp_size_(const char *file, int line, bool fatal, const char *ea, const char *op,
                  const char *eb, unsigned long long a, unsigned long long b, bool ok);
void th_cmp_err_(const char *file, int line, bool fatal, const char *ea, const char *eb,
                 long long a, long long b);
void th_cmp_str_(const char *file, int line, bool fatal, const char *ea, const char *eb,
                 const char *a, const char *b);
void th_contains_(const char *file, int line, bool fatal, const char *ea, const char *eb,
                  const char *hay, const char *needle);
void th_cmp_mem_(const char *file, int line, bool fatal, const char *ea, const char *eb,
                 const void *a, const void *b, size_t n);

/* The expressions are stringified here, by the macros the tests call, so
 * the message shows them as written rather than macro-expanded. */
#define TH_INT_(a, op, b, fatal, sa, sb)                                                           \
    do {                                                                                           \
        long long th_a_ = (long long)(a), th_b_ = (long long)(b);                                  \
        th_cmp_int_(__FILE__, __LINE__, fatal, sa, #op, sb, th_a_, th_b_, th_a_ op th_b_);         \
    } while (0)
#define TH_SIZE_(a, op, b, fatal, sa, sb)                                                          \
    do {                                                                                           \
        unsigned long long th_a_ = (unsigned long long)(a), th_b_ = (unsigned long long)(b);       \
        th_cmp_size_(__FILE__, __LINE__, fatal, sa, #op, sb, th_a_, th_b_, th_a_ op th_b_);        \
    } while (0)

#define EXPECT_TRUE(c)                                                                             \
    do {                                                                                           \
        if (!(c))                                                                                  \
            th_fail_(__FILE__, __LINE__, false, "expected true: %s", #c);                          \
    } while (0)
#define ASSERT_TRUE(c)                                                                             \
    do {                                                                                           \
        if (!(c))                                                                                  \
            th_fail_(__FILE__, __LINE__, true, "expected true: %s", #c);                           \
    } while (0)
#define EXPECT_FALSE(c) EXPECT_TRUE(!(c))

#define EXPECT_EQ_INT(a, b) TH_INT_(a, ==, b, false, #a, #b)
#define EXPECT_NE_INT(a, b) TH_INT_(a, !=, b, false, #a, #b)
#define EXPECT_LT_INT(a, b) TH_INT_(a, <, b, false, #a, #b)
#define EXPECT_LE_INT(a, b) TH_INT_(a, <=, b, false, #a, #b)
#define EXPECT_GT_INT(a, b) TH_INT_(a, >, b, false, #a, #b)
#define EXPECT_GE_INT(a, b) TH_INT_(a, >=, b, false, #a, #b)
#define ASSERT_EQ_INT(a, b) TH_INT_(a, ==, b, true, #a, #b)
#define ASSERT_GE_INT(a, b) TH_INT_(a, >=, b, true, #a, #b)
#define ASSERT_GT_INT(a, b) TH_INT_(a, >, b, true, #a, #b)

#define EXPECT_EQ_SIZE(a, b) TH_SIZE_(a, ==, b, false, #a, #b)
#define EXPECT_LE_SIZE(a, b) TH_SIZE_(a, <=, b, false, #a, #b)
#define EXPECT_GE_SIZE(a, b) TH_SIZE_(a, >=, b, false, #a, #b)
#define ASSERT_EQ_SIZE(a, b) TH_SIZE_(a, ==, b, true, #a, #b)

/* Compare two errno-style results; prints their names too. */
#define EXPECT_EQ_ERR(a, b)                                                                        \
    th_cmp_err_(__FILE__, __LINE__, false, #a, #b, (long long)(a), (long long)(b))
#define ASSERT_EQ_ERR(a, b)                                                                        \
    th_cmp_err_(__FILE__, __LINE__, true, #a, #b, (long long)(a), (long long)(b))

#define EXPECT_STREQ(a, b) th_cmp_str_(__FILE__, __LINE__, false, #a, #b, (a), (b))
#define ASSERT_STREQ(a, b) th_cmp_str_(__FILE__, __LINE__, true, #a, #b, (a), (b))
#define EXPECT_CONTAINS(hay, needle)                                                               \
    th_contains_(__FILE__, __LINE__, false, #hay, #needle, (hay), (needle))
#define EXPECT_MEMEQ(a, b, n) th_cmp_mem_(__FILE__, __LINE__, false, #a, #b, (a), (b), (n))

#define EXPECT_NULL(p) EXPECT_TRUE((p) == NULL)
#define EXPECT_NOT_NULL(p) EXPECT_TRUE((p) != NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)

/* ---- the runner ---- */

/* Call first: parses "-t NAME" / a bare NAME (run only that subtest) and
 * "--list" (print the subtests' names, one a line, and run none), starts the
 * watchdog and records the seed. */
void th_init(int argc, char **argv);
void th_run_(const char *name, void (*fn)(void));
#define TH_RUN(fn) th_run_(#fn, fn)
/* Inside a subtest: mark it skipped (then return from it); it counts as
 * skipped unless it also failed. Before any subtest (in main, when the
 * platform or a tool is missing): every subtest is skipped, and main should
 * return th_finish() at once. */
void th_skip(const char *why);
/* Print the summary and return the process exit status for main(): 1 if
 * anything failed or nothing ran (a misspelt subtest name included),
 * TH_SKIP_STATUS if every subtest that ran was skipped, else 0 (with any
 * skipped subtests named in the output and counted in the summary). */
int th_finish(void);
/* Failures so far in this process. */
int th_failures(void);

/* Open fds of this process, counted in /proc/self/fd (or /dev/fd); on
 * Windows its open handles (sockets among them). */
int th_fd_count(void);
/* Seed for the random parts of a test: EVN_TEST_SEED or a fresh one, printed. */
uint64_t th_seed(void);
/* EVN_TEST_QUICK=1: shorter stress runs (for sanitizer builds). */
bool th_quick(void);
/* The backend under test (EVN_BACKEND), or NULL for the default. */
const char *th_backend(void);
/* Upper bound for any single wait on an event; a guard against hangs only. */
int th_io_timeout_ms(void);

/* xorshift64* generator; each thread keeps its own. */
typedef struct th_rng {
    uint64_t s;
} th_rng;
void th_rng_init(th_rng *r, uint64_t seed);
uint64_t th_rng_next(th_rng *r);
/* Uniform in [lo, hi]. */
uint64_t th_rng_range(th_rng *r, uint64_t lo, uint64_t hi);

/* ---- evn's memory ----
 *
 * th_init routes evn's allocations through a counting allocator
 * (evn_set_allocator). The runner fails a subtest after which evn has more
 * blocks live than before it (every server must be freed by then).
 */
/* Blocks evn has allocated and not freed. */
long th_alloc_live(void);
/* Make the nth allocation evn makes from now on fail (n > 0), or none (0). */
void th_alloc_fail_nth(long n);
/* How many allocations are left before the failure set up by
 * th_alloc_fail_nth: 0 once it has happened (or when none is set up). */
long th_alloc_fail_pending(void);
/* The place (a return address into evn) of the allocation made to fail,
 * once, then NULL. */
void *th_alloc_failed_site(void);
/* Record (on) or stop recording the places evn allocates from and how many
 * allocations each makes; the list starts empty at each start.
 * th_alloc_sites copies up to max of them and their counts. */
void th_alloc_record_sites(bool on);
int th_alloc_sites(void **out, long *counts, int max);
/* The allocations recorded since th_alloc_record_sites(true), all places. */
long th_alloc_recorded(void);
/* Make the nth allocation from this place fail (NULL: none), and tell
 * whether that is still to come. */
void th_alloc_fail_at(void *site, long nth);
bool th_alloc_fail_at_pending(void);

/* ---- waiting for events without sleeping ---- */

typedef struct th_counter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long value;
} th_counter;
#define TH_COUNTER_INIT                                                                            \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0                                     \
    }
void th_counter_init(th_counter *c);
void th_counter_destroy(th_counter *c);
void th_counter_add(th_counter *c, long n);
void th_counter_set(th_counter *c, long v);
long th_counter_get(th_counter *c);
/* Wait until the value is >= n; fails the test (fatal) after th_io_timeout_ms. */
void th_counter_wait_(th_counter *c, long n, const char *file, int line);
#define TH_WAIT_COUNTER(c, n) th_counter_wait_((c), (n), __FILE__, __LINE__)

/* ---- a server on a background thread ---- */

typedef struct th_server {
    evn_server *srv;
    pthread_t thread;
    bool running;
    int run_rc;
} th_server;

/* evn_server_new, failing the test (fatal) if it fails. */
void th_server_new(th_server *ts, const evn_events *ev, const char *const *addrs, size_t n);
/* evn_server_run on a new thread. */
void th_server_run(th_server *ts);
/* new + run. */
void th_server_start(th_server *ts, const evn_events *ev, const char *const *addrs, size_t n);
/* Join the run thread (the server stops by itself) and expect run() == 0. */
void th_server_join(th_server *ts);
/* evn_shutdown, join, evn_server_free. */
void th_server_stop(th_server *ts);
/* join (if running) and evn_server_free. */
void th_server_free(th_server *ts);
/* evn_server_stats of the whole server (all zero, and a failed check, if
 * the call fails). */
evn_stats th_server_stats(const th_server *ts);
/* The port of the i-th bound address (0 for unix). */
int th_server_port(const th_server *ts, size_t i);

/* ---- blocking clients ---- */

/* Connect a blocking stream socket to the i-th address of the server. */
int th_connect_srv(const th_server *ts, size_t i);
int th_connect_addr(const struct sockaddr *sa, socklen_t len);
/* Connect to host:port over TCP (host is a numeric IPv4/IPv6 address). */
int th_connect_ip(const char *host, int port);
/* An unconnected UDP socket of the given family. */
int th_udp_socket(int family);
/* Connect the blocking socket, but return -errno instead of failing. */
int th_try_connect_addr(const struct sockaddr *sa, socklen_t len);
int th_make_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);

/* Write everything (MSG_NOSIGNAL); fatal on error. */
void th_write_all_(int fd, const void *buf, size_t len, const char *file, int line);
#define th_write_all(fd, buf, len) th_write_all_((fd), (buf), (len), __FILE__, __LINE__)
#define th_write_str(fd, s) th_write_all_((fd), (s), strlen(s), __FILE__, __LINE__)
/* Wait for readability with the hang guard: 1 ready, -ETIMEDOUT, -errno. */
int th_wait_readable(int fd, int timeout_ms);
/* Read exactly len bytes: returns len, fewer at EOF, -errno on error or
 * -ETIMEDOUT when nothing arrives for th_io_timeout_ms. */
ssize_t th_read_exact(int fd, void *buf, size_t len);
/* One read: > 0 bytes, 0 at EOF, -errno, -ETIMEDOUT. */
ssize_t th_read_some(int fd, void *buf, size_t len);
/* Send out[0..outlen) while reading inlen bytes into in, both at once, so a
 * peer that echoes cannot deadlock us. Returns the bytes read (fewer at EOF)
 * or -errno / -ETIMEDOUT. The fd's blocking mode is left as it was. */
ssize_t th_transfer(int fd, const void *out, size_t outlen, void *in, size_t inlen);
/* Wait for the peer to close: 0 at EOF, 1 if data came instead, -errno. */
int th_wait_eof(int fd);
/* Read strlen(s) bytes and expect them to equal s. */
void th_expect_read_(int fd, const char *s, const char *file, int line);
#define EXPECT_READ_STR(fd, s) th_expect_read_((fd), (s), __FILE__, __LINE__)
/* Close with an RST instead of a FIN. */
void th_close_rst(int fd);
/* Local or peer port of a socket. */
int th_sock_port(int fd, bool peer);
int th_sockaddr_port(const struct sockaddr *sa);
/* A TCP port on 127.0.0.1 that nobody listens on: bound by a socket that is
 * then closed, so a connect to it is refused (fatal if none can be bound). */
int th_closed_port(void);

/* ---- files ---- */

/* A private temporary directory, created once and removed by th_finish(). */
const char *th_tmpdir(void);
/* th_tmpdir()/name into buf. */
void th_tmppath(char *buf, size_t size, const char *name);
bool th_path_exists(const char *path);
/* Whether path is a unix socket's file. Windows cannot tell it apart from
 * other files through the C runtime: there, whether it is a file at all. */
bool th_is_socket_file(const char *path);
bool th_have_ipv6(void);
/* Whether this system has unix sockets (AF_UNIX): always on Linux and the
 * BSDs; on Windows since Windows 10 1803, never under Wine 8. A subtest that
 * needs them skips without. */
bool th_have_unix_sockets(void);
#define TH_NEED_UNIX_SOCKETS()                                                                     \
    do {                                                                                           \
        if (!th_have_unix_sockets()) {                                                             \
            th_skip("no unix sockets (AF_UNIX) on this system");                                   \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Whether this is Windows emulated by Wine (which differs from Windows in
 * places the tests name); false elsewhere. */
bool th_under_wine(void);

/* A subtest that needs SO_REUSEPORT (an address's ?reuseport=true) skips
 * on Windows, which has no such option. */
#ifdef _WIN32
#define TH_NEED_REUSEPORT()                                                                        \
    do {                                                                                           \
        th_skip("Windows has no SO_REUSEPORT (reuseport=true)");                                   \
        return;                                                                                    \
    } while (0)
#else
#define TH_NEED_REUSEPORT()                                                                        \
    do {                                                                                           \
    } while (0)
#endif

/* ---- tools the tests run ---- */

/* Whether an executable of that name is on PATH. */
bool th_have_command(const char *name);
/* A tool a test needs is not installed: a failure, so that a machine without
 * it cannot pass unnoticed, or with EVN_ALLOW_MISSING_CLIENTS=1 a skip (of
 * the running subtest, or of every subtest when called before any). The
 * message names the Debian package that has it. */
void th_missing_tool_(const char *tool, const char *package, const char *file, int line);
#define th_missing_tool(tool, package) th_missing_tool_((tool), (package), __FILE__, __LINE__)
/* A throwaway self-signed EC certificate for CN=localhost, made by the
 * openssl command in th_tmpdir(): its paths in cert and key (size bytes
 * each). Without the command, false after th_missing_tool(); the subtest
 * then returns. The command failing ends the subtest. */
bool th_make_cert_(char *cert, char *key, size_t size, const char *file, int line);
#define th_make_cert(cert, key, size) th_make_cert_((cert), (key), (size), __FILE__, __LINE__)

#endif
