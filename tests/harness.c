#include "harness.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#ifdef _WIN32
#ifdef TH_EVN_INTERNALS
/* evn__iocp_abandoned, checked after each subtest. */
#include "internal.h"
#endif
#include <direct.h>
#include <winternl.h>
#define TH_DEVNULL "NUL"
#define TH_PATH_SEP ';'
#else
#define TH_DEVNULL "/dev/null"
#define TH_PATH_SEP ':'
#endif

static pthread_mutex_t print_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int nfail_total;
static int npassed, nfailed, nskipped;
static const char *only_test;
static bool list_only;
static char cur_name[128] = "(setup)";
static atomic_bool cur_skipped;
static atomic_bool in_subtest;
/* th_skip() outside a subtest: the whole executable has nothing to test here. */
static bool all_skipped;

static pthread_mutex_t dog_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dog_cv;
static struct timespec dog_deadline;
static bool dog_armed;

static char tmpdir[128];
static uint64_t seed_value;
static bool seed_set;

static void remove_tmpdir(void)
{
    if (!tmpdir[0])
        return;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(tmpdir);
}

static void die(void)
{
    fprintf(stderr, "[ FATAL] %s: stopping here\n", cur_name);
    fprintf(stderr, "%d passed, %d failed\n", npassed, nfailed + 1);
    remove_tmpdir();
    fflush(stderr);
    fflush(stdout);
    _exit(1);
}

void th_fail_(const char *file, int line, bool fatal, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&print_mu);
    fprintf(stderr, "%s:%d: [%s] ", file, line, cur_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    atomic_fetch_add(&nfail_total, 1);
    pthread_mutex_unlock(&print_mu);
    if (fatal)
        die();
}

int th_failures(void)
{
    return atomic_load(&nfail_total);
}

void th_cmp_int_(const char *file, int line, bool fatal, const char *ea, const char *op,
                 const char *eb, long long a, long long b, bool ok)
{
    if (!ok)
        th_fail_(file, line, fatal, "expected %s %s %s, got %lld vs %lld", ea, op, eb, a, b);
}

void th_cmp_size_(const char *file, int line, bool fatal, const char *ea, const char *op,
                  const char *eb, unsigned long long a, unsigned long long b, bool ok)
{
    if (!ok)
        th_fail_(file, line, fatal, "expected %s %s %s, got %llu vs %llu", ea, op, eb, a, b);
}

void th_cmp_err_(const char *file, int line, bool fatal, const char *ea, const char *eb,
                 long long a, long long b)
{
    if (a != b)
        th_fail_(file, line, fatal, "expected %s == %s, got %lld (%s) vs %lld (%s)", ea, eb, a,
                 a < 0 ? strerror((int)-a) : "", b, b < 0 ? strerror((int)-b) : "");
}

void th_cmp_str_(const char *file, int line, bool fatal, const char *ea, const char *eb,
                 const char *a, const char *b)
{
    if (a == NULL || b == NULL || strcmp(a, b) != 0)
        th_fail_(file, line, fatal, "expected %s == %s, got \"%s\" vs \"%s\"", ea, eb,
                 a ? a : "(null)", b ? b : "(null)");
}

void th_contains_(const char *file, int line, bool fatal, const char *ea, const char *eb,
                  const char *hay, const char *needle)
{
    if (hay == NULL || needle == NULL || strstr(hay, needle) == NULL)
        th_fail_(file, line, fatal, "expected %s to contain %s: \"%s\" does not contain \"%s\"", ea,
                 eb, hay ? hay : "(null)", needle ? needle : "(null)");
}

void th_cmp_mem_(const char *file, int line, bool fatal, const char *ea, const char *eb,
                 const void *a, const void *b, size_t n)
{
    const unsigned char *pa = a, *pb = b;
    for (size_t i = 0; i < n; i++) {
        if (pa[i] != pb[i]) {
            th_fail_(file, line, fatal,
                     "expected %s == %s (%zu bytes), first difference at offset %zu: "
                     "0x%02x vs 0x%02x",
                     ea, eb, n, i, pa[i], pb[i]);
            return;
        }
    }
}

/* ---- watchdog ---- */

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    return atoi(s);
}

static void *watchdog(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&dog_mu);
    for (;;) {
        if (!dog_armed) {
            pthread_cond_wait(&dog_cv, &dog_mu);
            continue;
        }
        int rc = pthread_cond_timedwait(&dog_cv, &dog_mu, &dog_deadline);
        if (rc == ETIMEDOUT && dog_armed) {
            struct timespec now;
            clock_gettime(TH_COND_CLOCK, &now);
            if (now.tv_sec > dog_deadline.tv_sec ||
                (now.tv_sec == dog_deadline.tv_sec && now.tv_nsec >= dog_deadline.tv_nsec)) {
                fprintf(stderr, "[TIMEOUT] %s: still running after the watchdog's limit\n",
                        cur_name);
                die();
            }
        }
    }
    return NULL;
}

static void arm_watchdog(void)
{
    int secs = env_int("EVN_TEST_TIMEOUT", 60);
    pthread_mutex_lock(&dog_mu);
    clock_gettime(TH_COND_CLOCK, &dog_deadline);
    dog_deadline.tv_sec += secs;
    dog_armed = true;
    pthread_cond_signal(&dog_cv);
    pthread_mutex_unlock(&dog_mu);
}

/* ---- evn's memory ---- */

/*
 * Every allocation evn makes comes here (evn_set_allocator, from th_init):
 * a header before each block records its size, so the bytes and blocks
 * still live can be counted, and fail_at makes one chosen allocation fail.
 */
typedef union alloc_head {
    size_t size;
    max_align_t align;
} alloc_head;

static atomic_long live_blocks, live_bytes, fail_at;

/* Where the failed allocation was made; while recording, every place any
 * allocation was made (by return address into evn) and how many times; and
 * a place whose nth allocation is to fail (fail_where, fail_where_left). */
static void *_Atomic fail_site;
static pthread_mutex_t sites_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool recording, failing_where;
static void *sites[256];
static long site_count[256];
static int nsites;
static void *fail_where;
static long fail_where_left;

static bool note_site(void *site)
{
    bool fail = false;
    if (!atomic_load(&recording) && !atomic_load(&failing_where))
        return false;
    pthread_mutex_lock(&sites_mu);
    if (atomic_load(&recording)) {
        int i = 0;
        while (i < nsites && sites[i] != site)
            i++;
        if (i == nsites && nsites < (int)(sizeof sites / sizeof sites[0]))
            sites[nsites++] = site;
        if (i < nsites)
            site_count[i]++;
    }
    if (atomic_load(&failing_where) && site == fail_where && --fail_where_left == 0) {
        atomic_store(&failing_where, false);
        fail = true;
    }
    pthread_mutex_unlock(&sites_mu);
    return fail;
}

static bool should_fail(void *site)
{
    if (note_site(site) || (atomic_load(&fail_at) > 0 && atomic_fetch_sub(&fail_at, 1) == 1)) {
        atomic_store(&fail_site, site);
        return true;
    }
    return false;
}

static void *count_malloc_at(size_t n, void *site)
{
    if (should_fail(site))
        return NULL;
    alloc_head *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->size = n;
    atomic_fetch_add(&live_blocks, 1);
    atomic_fetch_add(&live_bytes, (long)n);
    return h + 1;
}

static void *count_malloc(size_t n)
{
    return count_malloc_at(n, __builtin_return_address(0));
}

static void count_free(void *p)
{
    if (!p)
        return;
    alloc_head *h = (alloc_head *)p - 1;
    atomic_fetch_sub(&live_blocks, 1);
    atomic_fetch_sub(&live_bytes, (long)h->size);
    free(h);
}

static void *count_calloc(size_t k, size_t n)
{
    if (n && k > SIZE_MAX / n)
        return NULL;
    void *p = count_malloc_at(k * n, __builtin_return_address(0));
    return p ? memset(p, 0, k * n) : NULL;
}

static void *count_realloc(void *p, size_t n)
{
    if (!p)
        return count_malloc_at(n, __builtin_return_address(0));
    if (should_fail(__builtin_return_address(0)))
        return NULL;
    alloc_head *h = (alloc_head *)p - 1;
    size_t old = h->size;
    alloc_head *nh = realloc(h, sizeof *nh + n);
    if (!nh)
        return NULL;
    nh->size = n;
    atomic_fetch_add(&live_bytes, (long)n - (long)old);
    return nh + 1;
}

long th_alloc_live(void)
{
    return atomic_load(&live_blocks);
}

void th_alloc_fail_nth(long n)
{
    atomic_store(&fail_at, n);
}

long th_alloc_fail_pending(void)
{
    return atomic_load(&fail_at);
}

void *th_alloc_failed_site(void)
{
    return atomic_exchange(&fail_site, NULL);
}

void th_alloc_record_sites(bool on)
{
    pthread_mutex_lock(&sites_mu);
    if (on) {
        nsites = 0;
        memset(site_count, 0, sizeof site_count);
    }
    atomic_store(&recording, on);
    pthread_mutex_unlock(&sites_mu);
}

int th_alloc_sites(void **out, long *counts, int max)
{
    pthread_mutex_lock(&sites_mu);
    int n = nsites < max ? nsites : max;
    memcpy(out, sites, sizeof *out * (size_t)n);
    memcpy(counts, site_count, sizeof *counts * (size_t)n);
    pthread_mutex_unlock(&sites_mu);
    return n;
}

long th_alloc_recorded(void)
{
    long total = 0;
    pthread_mutex_lock(&sites_mu);
    for (int i = 0; i < nsites; i++)
        total += site_count[i];
    pthread_mutex_unlock(&sites_mu);
    return total;
}

void th_alloc_fail_at(void *site, long nth)
{
    pthread_mutex_lock(&sites_mu);
    fail_where = site;
    fail_where_left = nth;
    atomic_store(&failing_where, site != NULL && nth > 0);
    pthread_mutex_unlock(&sites_mu);
}

bool th_alloc_fail_at_pending(void)
{
    return atomic_load(&failing_where);
}

/* ---- runner ---- */

#ifdef _WIN32
/*
 * A crash is reported here and ends the process. Without this, Wine starts
 * its debugger on an unhandled exception and the process waits on it, which
 * on a machine with no display can be for ever: a crash would look like a
 * hang. The address is given as module+offset, for addr2line.
 */
static LONG WINAPI on_crash(EXCEPTION_POINTERS *ep)
{
    const EXCEPTION_RECORD *er = ep->ExceptionRecord;
    char mod[MAX_PATH] = "?";
    HMODULE h = NULL;
    if (GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                               GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                           (LPCSTR)er->ExceptionAddress, &h))
        GetModuleFileNameA(h, mod, sizeof mod);
    fprintf(stderr, "[ CRASH] %s: exception 0x%08lx at %p (%s+0x%llx)", cur_name,
            (unsigned long)er->ExceptionCode, er->ExceptionAddress, mod,
            (unsigned long long)((uintptr_t)er->ExceptionAddress - (uintptr_t)h));
    if (er->ExceptionCode == EXCEPTION_ACCESS_VIOLATION && er->NumberParameters >= 2)
        fprintf(stderr, ", %s of %p", er->ExceptionInformation[0] ? "write" : "read",
                (void *)er->ExceptionInformation[1]);
    fputc('\n', stderr);
    fflush(stderr);
    _exit(3);
}
#endif

/*
 * For a runner that cannot see the program's own start and end
 * (tests/wine-run.sh): "started" as main() begins, then the status main is
 * about to return, in the file EVN_TEST_END_FILE names. A file left empty
 * means the process never got to main().
 */
static void say_end_file(const char *what)
{
    const char *path = getenv("EVN_TEST_END_FILE");
    FILE *f = path && *path ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%s\n", what);
        fclose(f);
    }
}

void th_init(int argc, char **argv)
{
    say_end_file("started");
    if (evn_set_allocator(count_malloc, count_realloc, count_calloc, count_free) != 0) {
        fprintf(stderr, "cannot install the test allocator\n");
        _exit(1);
    }
#ifdef _WIN32
    /* The C runtime has no line buffering (_IOLBF is full buffering there). */
    setvbuf(stdout, NULL, _IONBF, 0);
    /* No dialog box for a failed load; a crash is reported by on_crash
     * and ends the process (Wine starts winedbg whatever the error mode). */
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
    SetUnhandledExceptionFilter(on_crash);
    /* Winsock opens handles of its own on first use: let that happen
     * before the first handle count, not inside a subtest. */
    close(socket(AF_INET, SOCK_STREAM, 0));
#else
    setvbuf(stdout, NULL, _IOLBF, 0);
#endif
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            only_test = argv[++i];
        else if (strcmp(argv[i], "--list") == 0)
            list_only = true;
        else if (argv[i][0] != '-')
            only_test = argv[i];
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, TH_COND_CLOCK);
    pthread_cond_init(&dog_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t t;
    if (pthread_create(&t, NULL, watchdog, NULL) != 0) {
        fprintf(stderr, "cannot start the watchdog thread\n");
        _exit(1);
    }
    pthread_detach(t);
    arm_watchdog();
    const char *b = th_backend();
    fprintf(stderr, "backend: %s, seed: %" PRIu64 "%s\n", b ? b : "(default)", th_seed(),
            th_quick() ? ", quick" : "");
}

/*
 * On Windows the count is of the process's handles (sockets, files,
 * threads, events: whatever a subtest leaves open shows there), whose values
 * are kept for the report, and the map is of the C runtime's fds; a socket
 * is a handle, not a CRT fd, and so shows in the count and the handles only.
 */
typedef struct fd_snapshot {
    int count;
    unsigned char open[4096 / 8];
    char what[64][64]; /* readlink of the first fds, for the report */
#ifdef _WIN32
    uintptr_t handles[2048];
    int nhandles;
#endif
} fd_snapshot;

#ifdef _WIN32
typedef LONG(NTAPI *query_object_fn)(HANDLE, ULONG, PVOID, ULONG, PULONG);

/* The kind of object a handle is (File, Thread, Event ...), into buf. */
static void handle_type(uintptr_t h, char *buf, size_t size)
{
    static query_object_fn query;
    if (!query)
        query =
            (query_object_fn)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtQueryObject");
    enum { OBJECT_TYPE_INFORMATION = 2 };
    union {
        UNICODE_STRING name;
        char space[1024];
    } info;
    snprintf(buf, size, "?");
    if (query && query((HANDLE)h, OBJECT_TYPE_INFORMATION, &info, sizeof info, NULL) == 0)
        snprintf(buf, size, "%.*ls", (int)(info.name.Length / sizeof(WCHAR)), info.name.Buffer);
}

/*
 * Whether a handle is counted: files (sockets, files, pipes, directories),
 * threads, processes and completion ports, what a test or evn can leave
 * open. Events, semaphores and the like are not: winpthreads makes them on a
 * mutex's or condition variable's first use and keeps them.
 */
static bool counted_handle(uintptr_t h)
{
    char type[64];
    handle_type(h, type, sizeof type);
    /* A handle to the calling thread itself is no subtest's: winpthreads
     * makes one, and keeps it, when a thread it did not start (main, seen
     * by the DLL's own copy of winpthreads in test-abi) first asks who it is. */
    if (strcmp(type, "Thread") == 0)
        return GetThreadId((HANDLE)h) != GetCurrentThreadId();
    return strcmp(type, "File") == 0 || strcmp(type, "Process") == 0 ||
           strcmp(type, "IoCompletion") == 0;
}

/*
 * The handles of this process that counted_handle counts: their number, and
 * up to max of their values into out.
 *
 * Found by asking after each handle value in turn (they are multiples of 4,
 * and the system gives the lowest free one), until MISSES values in a row
 * are not handles: a handle left open above a gap that wide (a subtest that
 * had over a thousand open at once and left one of the last) is not seen.
 * Each question is a round trip to the Wine server (about 30 us), so the
 * gap is kept small. Not from the system's list of every process's handles
 * (NtQuerySystemInformation, SystemExtendedHandleInformation): Wine 8's
 * server crashes now and then while it makes that list (its log ends with
 * get_system_handles), and every Wine process of the session hangs with it.
 * Nor from GetProcessHandleCount, which counts all kinds, and which Wine
 * says is always 0.
 */
static int own_handles(uintptr_t *out, int max)
{
    enum { MISSES = 1024 };
    int n = 0;
    for (uintptr_t h = 4, miss = 0; miss < MISSES; h += 4) {
        DWORD flags;
        if (!GetHandleInformation((HANDLE)h, &flags)) {
            miss++;
            continue;
        }
        miss = 0;
        if (!counted_handle(h))
            continue;
        if (n < max)
            out[n] = h;
        n++;
    }
    return n;
}

static bool has_handle(const fd_snapshot *snap, uintptr_t h)
{
    for (int i = 0; i < snap->nhandles; i++)
        if (snap->handles[i] == h)
            return true;
    return false;
}

static void report_handle_diff(const fd_snapshot *a, const fd_snapshot *b)
{
    char type[64];
    for (int i = 0; i < b->nhandles; i++) {
        if (!has_handle(a, b->handles[i])) {
            handle_type(b->handles[i], type, sizeof type);
            fprintf(stderr, "    handle 0x%" PRIxPTR " (%s) was left open\n", b->handles[i], type);
        }
    }
    for (int i = 0; i < a->nhandles; i++)
        if (!has_handle(b, a->handles[i]))
            fprintf(stderr, "    handle 0x%" PRIxPTR " was closed by the test\n", a->handles[i]);
}

static bool fd_is_open(int fd)
{
    return fd < 2048 && _get_osfhandle(fd) != -1;
}

static void fd_describe(int fd, char *buf, size_t size)
{
    static const char *const types[] = {"unknown", "file", "char", "pipe"};
    DWORD t = GetFileType((HANDLE)_get_osfhandle(fd)) & 3;
    snprintf(buf, size, "%s", types[t]);
}
#else
static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void fd_describe(int fd, char *buf, size_t size)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, buf, size - 1);
    buf[n > 0 ? n : 0] = '\0';
}
#endif

static void take_snapshot(fd_snapshot *snap)
{
    memset(snap, 0, sizeof *snap);
#ifdef _WIN32
    int max = (int)(sizeof snap->handles / sizeof snap->handles[0]);
    snap->count = own_handles(snap->handles, max);
    snap->nhandles = snap->count < max ? snap->count : max;
#else
    snap->count = th_fd_count();
#endif
    for (int fd = 0; fd < 4096; fd++) {
        if (!fd_is_open(fd))
            continue;
        snap->open[fd / 8] |= (unsigned char)(1u << (fd % 8));
        if (fd < 64)
            fd_describe(fd, snap->what[fd], sizeof snap->what[fd]);
    }
}

static void report_fd_diff(const fd_snapshot *a, const fd_snapshot *b)
{
    for (int fd = 0; fd < 4096; fd++) {
        bool was = a->open[fd / 8] & (1u << (fd % 8)), is = b->open[fd / 8] & (1u << (fd % 8));
        if (was && !is)
            fprintf(stderr, "    fd %d (%s) was closed by the test\n", fd,
                    fd < 64 ? a->what[fd] : "?");
        else if (!was && is)
            fprintf(stderr, "    fd %d (%s) was left open\n", fd, fd < 64 ? b->what[fd] : "?");
        else if (was && fd < 64 && strcmp(a->what[fd], b->what[fd]) != 0)
            fprintf(stderr, "    fd %d changed from %s to %s\n", fd, a->what[fd], b->what[fd]);
    }
}

void th_run_(const char *name, void (*fn)(void))
{
    if (list_only) {
        printf("%s\n", name);
        return;
    }
    if (only_test && strcmp(only_test, name) != 0)
        return;
    snprintf(cur_name, sizeof cur_name, "%s", name);
    atomic_store(&cur_skipped, false);
    atomic_store(&in_subtest, true);
    fprintf(stderr, "[ RUN  ] %s\n", name);
    arm_watchdog();
    int fails = th_failures();
    /* A subtest that closed stdin by mistake is reported once, not again by
     * every later subtest. */
    for (int fd = 0; fd < 3; fd++)
        if (!fd_is_open(fd))
            (void)!open(TH_DEVNULL, O_RDWR);
    fd_snapshot before, after;
    take_snapshot(&before);
    long blocks = th_alloc_live();
#if defined(_WIN32) && defined(TH_EVN_INTERNALS)
    long abandoned = evn__iocp_abandoned();
#endif
    fn();
    take_snapshot(&after);
#if defined(_WIN32) && defined(TH_EVN_INTERNALS)
    /* The iocp backend gave up waiting for operations when a loop ended:
     * their memory is left allocated (so the memory check fails too). */
    if (evn__iocp_abandoned() != abandoned)
        th_fail_(__FILE__, __LINE__, false,
                 "iocp: %ld operations were still in flight when a loop ended, and were "
                 "abandoned (their memory left allocated)",
                 evn__iocp_abandoned() - abandoned);
#endif
    /* Every server the subtest made is freed by now, and with it all of
     * evn's memory. */
    if (th_alloc_live() != blocks)
        th_fail_(__FILE__, __LINE__, false,
                 "memory leak: evn had %ld blocks live before %s, %ld after", blocks, name,
                 th_alloc_live());
    if (after.count != before.count || memcmp(after.open, before.open, sizeof after.open) != 0) {
        th_fail_(__FILE__, __LINE__, false, "fd leak: %d open fds before %s, %d after",
                 before.count, name, after.count);
        report_fd_diff(&before, &after);
#ifdef _WIN32
        report_handle_diff(&before, &after);
#endif
    }
    if (th_failures() != fails) {
        nfailed++;
        fprintf(stderr, "[ FAIL ] %s\n", name);
    } else if (atomic_load(&cur_skipped)) {
        nskipped++;
        fprintf(stderr, "[ SKIP ] %s\n", name);
    } else {
        npassed++;
        fprintf(stderr, "[  OK  ] %s\n", name);
    }
    atomic_store(&in_subtest, false);
    snprintf(cur_name, sizeof cur_name, "(between tests)");
}

void th_skip(const char *why)
{
    if (!atomic_load(&in_subtest)) {
        fprintf(stderr, "SKIP: every subtest: %s\n", why);
        all_skipped = true;
        return;
    }
    fprintf(stderr, "SKIP: %s: %s\n", cur_name, why);
    atomic_store(&cur_skipped, true);
}

/*
 * The exit status says what happened and nothing more: 1 if anything failed;
 * TH_SKIP_STATUS if nothing passed because everything that ran was skipped
 * (or th_skip() was called before any subtest); 1 as well if nothing ran at
 * all, which is a misspelt subtest name or a main() that forgot its TH_RUNs,
 * never a pass. Some subtests skipped among passing ones still exit 0: ctest
 * has no partial skip, and the skipped ones are named in the output and in
 * the closing count.
 */
static int finish(void)
{
    remove_tmpdir();
    if (list_only)
        return 0;
    if (nskipped)
        fprintf(stderr, "%d passed, %d failed, %d skipped\n", npassed, nfailed, nskipped);
    else
        fprintf(stderr, "%d passed, %d failed\n", npassed, nfailed);
    if (!nfailed && th_failures())
        fprintf(stderr, "FAIL: %d failed checks outside any subtest\n", th_failures());
    if (nfailed || th_failures())
        return 1;
    if (npassed == 0 && (nskipped || all_skipped)) {
        fprintf(stderr, "SKIPPED: nothing here could be tested\n");
        return TH_SKIP_STATUS;
    }
    if (npassed == 0) {
        if (only_test)
            fprintf(stderr, "FAIL: no subtest is named %s (--list names them)\n", only_test);
        else
            fprintf(stderr, "FAIL: no subtest ran\n");
        return 1;
    }
    return 0;
}

int th_finish(void)
{
    int status = finish();
    char said[16];
    snprintf(said, sizeof said, "%d", status);
    say_end_file(said);
    return status;
}

#ifdef _WIN32
int th_fd_count(void)
{
    return own_handles(NULL, 0);
}
#else
int th_fd_count(void)
{
    const char *dir = "/proc/self/fd";
    DIR *d = opendir(dir);
    if (!d) {
        dir = "/dev/fd";
        d = opendir(dir);
    }
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    /* The directory stream's own fd was counted. */
    return n - 1;
}
#endif

uint64_t th_seed(void)
{
    if (!seed_set) {
        const char *s = getenv("EVN_TEST_SEED");
        if (s && *s) {
            seed_value = strtoull(s, NULL, 0);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            seed_value = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        }
        seed_set = true;
    }
    return seed_value;
}

bool th_quick(void)
{
    const char *s = getenv("EVN_TEST_QUICK");
    return s && *s && strcmp(s, "0") != 0;
}

const char *th_backend(void)
{
    const char *s = getenv("EVN_BACKEND");
    return s && *s ? s : NULL;
}

int th_io_timeout_ms(void)
{
    return env_int("EVN_TEST_IO_TIMEOUT_MS", 20000);
}

void th_rng_init(th_rng *r, uint64_t seed)
{
    /* splitmix64 step, so nearby seeds give unrelated streams */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    r->s = (z ^ (z >> 31)) | 1;
}

uint64_t th_rng_next(th_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

uint64_t th_rng_range(th_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + th_rng_next(r) % (hi - lo + 1);
}

/* ---- counters ---- */

void th_counter_init(th_counter *c)
{
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->value = 0;
}

void th_counter_destroy(th_counter *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

void th_counter_add(th_counter *c, long n)
{
    pthread_mutex_lock(&c->mu);
    c->value += n;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void th_counter_set(th_counter *c, long v)
{
    pthread_mutex_lock(&c->mu);
    c->value = v;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

long th_counter_get(th_counter *c)
{
    pthread_mutex_lock(&c->mu);
    long v = c->value;
    pthread_mutex_unlock(&c->mu);
    return v;
}

void th_counter_wait_(th_counter *c, long n, const char *file, int line)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    int ms = th_io_timeout_ms();
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (c->value < n) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT && c->value < n) {
            long v = c->value;
            pthread_mutex_unlock(&c->mu);
            th_fail_(file, line, true, "gave up waiting for a counter to reach %ld (it is %ld)", n,
                     v);
            return;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- server ---- */

void th_server_new(th_server *ts, const evn_events *ev, const char *const *addrs, size_t n)
{
    memset(ts, 0, sizeof *ts);
    int rc = evn_server_new(&ts->srv, ev, addrs, n);
    if (rc != 0)
        th_fail_(__FILE__, __LINE__, true, "evn_server_new(%s%s) failed: %d (%s): %s",
                 n > 0 ? addrs[0] : "", n > 1 ? ", ..." : "", rc, evn_strerror(rc), evn_errmsg());
}

static void *run_thread(void *arg)
{
    th_server *ts = arg;
    ts->run_rc = evn_server_run(ts->srv);
    return NULL;
}

void th_server_run(th_server *ts)
{
    if (pthread_create(&ts->thread, NULL, run_thread, ts) != 0)
        th_fail_(__FILE__, __LINE__, true, "pthread_create failed");
    ts->running = true;
}

void th_server_start(th_server *ts, const evn_events *ev, const char *const *addrs, size_t n)
{
    th_server_new(ts, ev, addrs, n);
    th_server_run(ts);
}

void th_server_join(th_server *ts)
{
    if (!ts->running)
        return;
    pthread_join(ts->thread, NULL);
    ts->running = false;
    EXPECT_EQ_ERR(ts->run_rc, 0);
}

void th_server_stop(th_server *ts)
{
    EXPECT_EQ_INT(evn_shutdown(ts->srv), 0);
    th_server_free(ts);
}

evn_stats th_server_stats(const th_server *ts)
{
    evn_stats st;
    memset(&st, 0, sizeof st);
    EXPECT_EQ_ERR(evn_server_stats(ts->srv, EVN_STATS_ALL, &st), 0);
    return st;
}

void th_server_free(th_server *ts)
{
    th_server_join(ts);
    evn_server_free(ts->srv);
    ts->srv = NULL;
}

int th_sockaddr_port(const struct sockaddr *sa)
{
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

int th_server_port(const th_server *ts, size_t i)
{
    return th_sockaddr_port(evn_server_addr(ts->srv, i, NULL));
}

/* ---- clients ---- */

int th_try_connect_addr(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, sa, len) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int th_connect_addr(const struct sockaddr *sa, socklen_t len)
{
    int fd = th_try_connect_addr(sa, len);
    if (fd < 0)
        th_fail_(__FILE__, __LINE__, true, "connect failed: %s", strerror(-fd));
    return fd;
}

int th_connect_srv(const th_server *ts, size_t i)
{
    socklen_t len = 0;
    const struct sockaddr *sa = evn_server_addr(ts->srv, i, &len);
    if (!sa)
        th_fail_(__FILE__, __LINE__, true, "server has no address %zu", i);
    struct sockaddr_storage ss;
    memcpy(&ss, sa, len);
    /* A wildcard listener is reached through loopback. */
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY))
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            in6->sin6_addr = in6addr_loopback;
    }
    return th_connect_addr((struct sockaddr *)&ss, len);
}

int th_make_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof *in;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return 0;
    }
    return -EINVAL;
}

int th_connect_ip(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    if (th_make_addr(host, port, &ss, &len) < 0)
        th_fail_(__FILE__, __LINE__, true, "bad address %s", host);
    return th_connect_addr((struct sockaddr *)&ss, len);
}

int th_udp_socket(int family)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        th_fail_(__FILE__, __LINE__, true, "udp socket: %s", strerror(errno));
    return fd;
}

void th_write_all_(int fd, const void *buf, size_t len, const char *file, int line)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            th_fail_(file, line, true, "write to fd %d failed: %s", fd, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

int th_wait_readable(int fd, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    for (;;) {
        int rc = poll(&pfd, 1, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -errno;
        return rc == 0 ? -ETIMEDOUT : 1;
    }
}

ssize_t th_read_some(int fd, void *buf, size_t len)
{
    int rc = th_wait_readable(fd, th_io_timeout_ms());
    if (rc < 0)
        return rc;
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : n;
    }
}

ssize_t th_read_exact(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = th_read_some(fd, (char *)buf + got, len - got);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t th_transfer(int fd, const void *out, size_t outlen, void *in, size_t inlen)
{
    size_t sent = 0, got = 0;
    while (got < inlen || sent < outlen) {
        struct pollfd pfd = {.fd = fd, .events = 0};
        if (got < inlen)
            pfd.events |= POLLIN;
        if (sent < outlen)
            pfd.events |= POLLOUT;
        int rc = poll(&pfd, 1, th_io_timeout_ms());
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return -errno;
        if (rc == 0)
            return -ETIMEDOUT;
        if (sent < outlen && (pfd.revents & (POLLOUT | POLLERR))) {
            ssize_t n =
                send(fd, (const char *)out + sent, outlen - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
            if (n > 0)
                sent += (size_t)n;
        }
        if (got < inlen && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = recv(fd, (char *)in + got, inlen - got, MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
            if (n == 0)
                break;
            if (n > 0)
                got += (size_t)n;
        }
    }
    return (ssize_t)got;
}

int th_wait_eof(int fd)
{
    char c;
    ssize_t n = th_read_some(fd, &c, 1);
    if (n < 0)
        return (int)n;
    return n == 0 ? 0 : 1;
}

void th_expect_read_(int fd, const char *s, const char *file, int line)
{
    size_t len = strlen(s);
    char *buf = malloc(len + 1);
    if (!buf)
        th_fail_(file, line, true, "out of memory");
    ssize_t n = th_read_exact(fd, buf, len);
    if (n < 0) {
        th_fail_(file, line, false, "reading \"%s\" from fd %d failed: %s", s, fd,
                 strerror((int)-n));
    } else {
        buf[n] = '\0';
        if ((size_t)n != len || memcmp(buf, s, len) != 0)
            th_fail_(file, line, false, "expected to read \"%s\", got \"%s\" (%zd bytes)", s, buf,
                     n);
    }
    free(buf);
}

void th_close_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

int th_sock_port(int fd, bool peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                  : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return -errno;
    return th_sockaddr_port((struct sockaddr *)&ss);
}

int th_closed_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0)
        th_fail_(__FILE__, __LINE__, true, "cannot bind a port on 127.0.0.1: %s", strerror(errno));
    int port = th_sock_port(fd, false);
    close(fd);
    return port;
}

/* ---- files ---- */

#ifdef _WIN32
/* Under the user's temporary directory, with forward slashes, which Windows
 * takes as well and which read the same in a unix:// URL. */
static bool make_tmpdir(void)
{
    char base[MAX_PATH];
    DWORD n = GetTempPathA(sizeof base, base);
    if (n == 0 || n >= sizeof base)
        return false;
    for (unsigned i = 0; i < 100; i++) {
        snprintf(tmpdir, sizeof tmpdir, "%sevn-test-%lu-%u", base,
                 (unsigned long)GetCurrentProcessId(), i);
        for (char *p = tmpdir; *p; p++)
            if (*p == '\\')
                *p = '/';
        if (_mkdir(tmpdir) == 0)
            return true;
        if (errno != EEXIST)
            return false;
    }
    return false;
}
#else
static bool make_tmpdir(void)
{
    /* Always under /tmp: TMPDIR may be too long for a unix socket path. */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/evn-test-XXXXXX");
    return mkdtemp(tmpdir) != NULL;
}
#endif

const char *th_tmpdir(void)
{
    if (!tmpdir[0]) {
        if (!make_tmpdir()) {
            tmpdir[0] = '\0';
            th_fail_(__FILE__, __LINE__, true, "cannot make a temporary directory: %s",
                     strerror(errno));
        }
    }
    return tmpdir;
}

void th_tmppath(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", th_tmpdir(), name);
}

bool th_path_exists(const char *path)
{
    struct stat st;
#ifdef _WIN32
    return stat(path, &st) == 0;
#else
    return lstat(path, &st) == 0;
#endif
}

bool th_is_socket_file(const char *path)
{
    struct stat st;
#ifdef _WIN32
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
#else
    return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
#endif
}

bool th_have_command(const char *name)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/bin:/bin";
    char buf[4096];
    const char sep[] = {TH_PATH_SEP, '\0'};
    while (*path) {
        size_t len = strcspn(path, sep);
        /* An empty PATH entry is the current directory. */
        snprintf(buf, sizeof buf, "%.*s/%s", len ? (int)len : 1, len ? path : ".", name);
#ifdef _WIN32
        size_t blen = strlen(buf);
        snprintf(buf + blen, sizeof buf - blen, ".exe");
        if (access(buf, F_OK) == 0)
            return true;
#else
        if (access(buf, X_OK) == 0)
            return true;
#endif
        path += len;
        if (*path == TH_PATH_SEP)
            path++;
    }
    return false;
}

void th_missing_tool_(const char *tool, const char *package, const char *file, int line)
{
    const char *allow = getenv("EVN_ALLOW_MISSING_CLIENTS");
    char why[256];
    snprintf(why, sizeof why, "%s is not installed (Debian package %s)", tool, package);
    if (allow && strcmp(allow, "1") == 0)
        th_skip(why);
    else
        th_fail_(file, line, false,
                 "%s; install it (scripts/setup.sh test) or set EVN_ALLOW_MISSING_CLIENTS=1 to "
                 "skip what needs it",
                 why);
}

bool th_make_cert_(char *cert, char *key, size_t size, const char *file, int line)
{
    if (!th_have_command("openssl")) {
        th_missing_tool_("openssl", "openssl", file, line);
        return false;
    }
    th_tmppath(cert, size, "cert.pem");
    th_tmppath(key, size, "key.pem");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 1 -subj /CN=localhost >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        th_fail_(file, line, true, "the openssl command could not make a certificate: %s", cmd);
    return true;
}

bool th_have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

bool th_have_unix_sockets(void)
{
#ifdef _WIN32
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    close(fd);
#endif
    return true;
}

bool th_under_wine(void)
{
#ifdef _WIN32
    return GetProcAddress(GetModuleHandleA("ntdll.dll"), "wine_get_version") != NULL;
#else
    return false;
#endif
}
