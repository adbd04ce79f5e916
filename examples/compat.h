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
#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* The errno for what a failed CreateFile left in GetLastError. */
static inline int ex_file_errno(DWORD e)
{
    switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
    case ERROR_DIRECTORY:
        return ENOENT;
    case ERROR_FILENAME_EXCED_RANGE:
        return ENAMETOOLONG;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
        return EACCES;
    case ERROR_TOO_MANY_OPEN_FILES:
        return EMFILE;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
        return ENOMEM;
    default:
        return EIO;
    }
}

/* A C runtime descriptor for h (closed, with errno set, if none is left). */
static inline int ex_handle_fd(HANDLE h)
{
    int fd = _open_osfhandle((intptr_t)h, _O_RDONLY | _O_BINARY);
    if (fd < 0) {
        CloseHandle(h);
        errno = EMFILE;
    }
    return fd;
}

/*
 * The directory at path as a descriptor, for the HTTP example's --root: the
 * C runtime's open cannot open a directory. Links in path are followed, as
 * open(2) follows them. The directory is held without delete sharing: it
 * cannot be renamed or removed while it is served.
 */
static inline int ex_open_dir(const char *path)
{
    HANDLE h = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                           OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        errno = ex_file_errno(GetLastError());
        return -1;
    }
    BY_HANDLE_FILE_INFORMATION fi;
    if (!GetFileInformationByHandle(h, &fi) || !(fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) {
        CloseHandle(h);
        errno = ENOTDIR;
        return -1;
    }
    return ex_handle_fd(h);
}

/* The path h was opened by, resolved ("\\?\C:\dir\name"): allocated, the
 * caller frees it; NULL if it cannot be read. */
static inline WCHAR *ex_final_path(HANDLE h)
{
    DWORD n = GetFinalPathNameByHandleW(h, NULL, 0, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
    WCHAR *p = n ? malloc(n * sizeof *p) : NULL;
    if (p && GetFinalPathNameByHandleW(h, p, n, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS) >= n) {
        free(p);
        p = NULL;
    }
    return p;
}

/*
 * openat(2) for one name, for the HTTP example's static files
 * (http/static_files.c), which opens a request's path one name at a time,
 * each in the directory opened before it, so that no ".." and no link can
 * lead out of --root. Windows has no openat and no O_NOFOLLOW; here the
 * directory's own path, read from its handle, and name are joined and
 * opened, and the result is refused with ELOOP, as O_NOFOLLOW refuses a
 * link, unless it is what that path names with no link on the way: it is no
 * reparse point (a symbolic link or junction, opened as itself rather than
 * followed), and the path its handle reports is the joined one, which also
 * catches a link that was followed anyway (Wine shows a Unix symbolic link
 * as the file it points to). A directory stays held without delete
 * sharing, so that it cannot be renamed or replaced while the next name is
 * looked up in it; a file is reopened with it, so that serving a file does
 * not stop anyone replacing it. A name Windows could not hold ('\', ':'
 * for a stream or a drive, '*', '?' ...) is not there (ENOENT); the path
 * goes with the \\?\ prefix, so that no name is rewritten (trailing dots
 * or spaces dropped, NUL or CON taken for a device). Anything but a file
 * or directory on a disk (a pipe, a device) is refused with ENXIO. flags
 * are ignored: the file is opened for reading, never inherited.
 */
static inline int openat(int dirfd, const char *name, int flags)
{
    (void)flags;
    int err = ENOENT, wn = 0;
    WCHAR *dir = NULL, *path = NULL, *got = NULL;
    HANDLE dh = (HANDLE)_get_osfhandle(dirfd), h = INVALID_HANDLE_VALUE;
    BY_HANDLE_FILE_INFORMATION fi;
    size_t dn;
    bool sep;
    if (!*name || strpbrk(name, "\\:*?\"<>|"))
        goto fail;
    for (const char *c = name; *c; c++) {
        if ((unsigned char)*c < 0x20)
            goto fail;
    }
    wn = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, name, -1, NULL, 0);
    if (wn <= 0)
        goto fail;
    err = EBADF;
    if (dh == INVALID_HANDLE_VALUE || !(dir = ex_final_path(dh)))
        goto fail;
    dn = wcslen(dir);
    sep = dn > 0 && dir[dn - 1] != L'\\';
    err = ENOMEM;
    if (!(path = malloc((dn + sep + (size_t)wn) * sizeof *path)))
        goto fail;
    memcpy(path, dir, dn * sizeof *path);
    if (sep)
        path[dn] = L'\\';
    MultiByteToWideChar(CP_UTF8, 0, name, -1, path + dn + sep, wn);
    h = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
                    FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        err = ex_file_errno(GetLastError());
        goto fail;
    }
    err = ENXIO;
    if (GetFileType(h) != FILE_TYPE_DISK || !GetFileInformationByHandle(h, &fi))
        goto fail;
    err = ELOOP;
    if ((fi.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT) || !(got = ex_final_path(h)) ||
        CompareStringOrdinal(got, -1, path, -1, TRUE) != CSTR_EQUAL)
        goto fail;
    if (!(fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) {
        HANDLE again =
            ReOpenFile(h, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, 0);
        if (again != INVALID_HANDLE_VALUE) {
            CloseHandle(h);
            h = again;
        }
    }
    free(dir), free(path), free(got);
    return ex_handle_fd(h);
fail:
    if (h != INVALID_HANDLE_VALUE)
        CloseHandle(h);
    free(dir), free(path), free(got);
    errno = err;
    return -1;
}

/* A FILETIME (100 ns ticks since 1601) in seconds since 1970. */
static inline int64_t ex_unix_time(FILETIME ft)
{
    int64_t t = (int64_t)((uint64_t)ft.dwHighDateTime << 32 | ft.dwLowDateTime);
    return t / 10000000 - INT64_C(11644473600);
}

/*
 * fstat(2) from the handle: the C runtime's fstat cannot say that a
 * descriptor is a directory. Type (directory, regular file, or neither
 * for anything not on a disk), size, times and link count; read-only
 * permissions.
 */
static inline int ex_fstat(int fd, struct stat *st)
{
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    BY_HANDLE_FILE_INFORMATION fi;
    if (h == INVALID_HANDLE_VALUE) {
        errno = EBADF;
        return -1;
    }
    memset(st, 0, sizeof *st);
    if (GetFileType(h) != FILE_TYPE_DISK)
        return 0;
    if (!GetFileInformationByHandle(h, &fi)) {
        errno = EIO;
        return -1;
    }
    st->st_mode = fi.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY ? S_IFDIR | 0555 : S_IFREG | 0444;
    st->st_size = (off_t)((uint64_t)fi.nFileSizeHigh << 32 | fi.nFileSizeLow);
    st->st_nlink = (short)fi.nNumberOfLinks;
    st->st_mtime = ex_unix_time(fi.ftLastWriteTime);
    st->st_atime = ex_unix_time(fi.ftLastAccessTime);
    st->st_ctime = ex_unix_time(fi.ftCreationTime);
    return 0;
}
#undef fstat
#define fstat(fd, st) ex_fstat(fd, st)
#endif

#endif
