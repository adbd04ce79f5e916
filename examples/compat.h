/*
 * The few POSIX calls the examples make that Windows has under other names
 * (mingw-w64): included instead of <sys/random.h> there, and by common.h.
 * Nothing here on POSIX systems.
 */
#ifndef EVN_EXAMPLES_COMPAT_H
#define EVN_EXAMPLES_COMPAT_H

#ifdef _WIN32
/* winsock2.h first: windows.h would bring the old winsock.h otherwise. */
#include <winsock2.h>

#include <ws2tcpip.h>

#include <windows.h>

#include <bcrypt.h>
#include <malloc.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

static inline ssize_t getrandom(void *buf, size_t n, unsigned flags)
{
    (void)flags;
    return BCryptGenRandom(NULL, buf, (ULONG)n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0 ? (ssize_t)n
                                                                                      : -1;
}

static inline struct tm *gmtime_r(const time_t *t, struct tm *tm)
{
    return gmtime_s(tm, t) == 0 ? tm : NULL;
}

#define timegm _mkgmtime

/* Windows' aligned allocations are freed with _aligned_free, not free. */
#define aligned_alloc ex_aligned_alloc
static inline void *ex_aligned_alloc(size_t align, size_t n)
{
    return _aligned_malloc(n, align);
}

struct utsname {
    char sysname[16], release[16], machine[16];
};
static inline int uname(struct utsname *u)
{
    *u = (struct utsname){"Windows", "", "x86_64"};
    return 0;
}

/* Only for "/proc/self/exe", this program's path. */
static inline ssize_t readlink(const char *path, char *buf, size_t size)
{
    if (strcmp(path, "/proc/self/exe") != 0 || size == 0)
        return -1;
    DWORD n = GetModuleFileNameA(NULL, buf, (DWORD)size);
    return n > 0 && n < size ? (ssize_t)n : -1;
}

#define _SC_NPROCESSORS_ONLN 84
#define _SC_PAGESIZE 30
#define _SC_PHYS_PAGES 85
static inline long sysconf(int name)
{
    SYSTEM_INFO si;
    MEMORYSTATUSEX ms = {.dwLength = sizeof ms};
    GetSystemInfo(&si);
    switch (name) {
    case _SC_NPROCESSORS_ONLN:
        return (long)si.dwNumberOfProcessors;
    case _SC_PAGESIZE:
        return (long)si.dwPageSize;
    case _SC_PHYS_PAGES:
        return GlobalMemoryStatusEx(&ms) ? (long)(ms.ullTotalPhys / si.dwPageSize) : -1;
    default:
        return -1;
    }
}
#endif

#endif
