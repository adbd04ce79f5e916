/*
 * The POSIX socket calls of compat.h over Winsock, for the tests on Windows.
 * Sockets travel as ints, as evn_conn_fd() gives them; errors come back in
 * errno with their POSIX values.
 */
#define TH_COMPAT_NO_MACROS
#include "compat.h"
#include "win_errno.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>

static pthread_once_t wsa_once = PTHREAD_ONCE_INIT;

static void wsa_start(void)
{
    WSADATA d;
    WSAStartup(MAKEWORD(2, 2), &d);
}

/* Sockets made non-blocking through these wrappers: Windows cannot say
 * whether a socket is, and MSG_DONTWAIT has to put a blocking one back. */
static pthread_mutex_t nb_mu = PTHREAD_MUTEX_INITIALIZER;
static int nb_fds[1024];
static int nb_count;

static bool nb_get(int fd)
{
    bool on = false;
    pthread_mutex_lock(&nb_mu);
    for (int i = 0; i < nb_count && !on; i++)
        on = nb_fds[i] == fd;
    pthread_mutex_unlock(&nb_mu);
    return on;
}

static void nb_set(int fd, bool on)
{
    pthread_mutex_lock(&nb_mu);
    int i = 0;
    while (i < nb_count && nb_fds[i] != fd)
        i++;
    if (on && i == nb_count && nb_count < (int)(sizeof nb_fds / sizeof nb_fds[0]))
        nb_fds[nb_count++] = fd;
    else if (!on && i < nb_count)
        nb_fds[i] = nb_fds[--nb_count];
    pthread_mutex_unlock(&nb_mu);
}

static int fail_wsa(void)
{
    errno = evn__errno_of_wsa(WSAGetLastError());
    return -1;
}

bool th_compat_is_socket(int fd)
{
    if (fd < 0)
        return false;
    pthread_once(&wsa_once, wsa_start);
    int type;
    int len = sizeof type;
    return getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0;
}

static int set_nonblocking(int fd, bool on)
{
    u_long v = on;
    if (ioctlsocket((SOCKET)fd, FIONBIO, &v) != 0)
        return fail_wsa();
    nb_set(fd, on);
    return 0;
}

int th_compat_socket(int family, int type, int protocol)
{
    pthread_once(&wsa_once, wsa_start);
    bool nonblock = type & SOCK_NONBLOCK;
    type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    /* socket() would make an inheritable handle; the tests' never are. */
    SOCKET s = WSASocketW(family, type, protocol, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET)
        return fail_wsa();
    if (nonblock && set_nonblocking((int)s, true) < 0) {
        int e = errno;
        closesocket(s);
        errno = e;
        return -1;
    }
    return (int)s;
}

int th_compat_close(int fd)
{
    if (th_compat_is_socket(fd)) {
        nb_set(fd, false);
        return closesocket((SOCKET)fd) == 0 ? 0 : fail_wsa();
    }
    return _close(fd);
}

/* Run one call with the socket non-blocking for MSG_DONTWAIT, then put it
 * back as it was. */
static bool dontwait_begin(int fd, int *flags)
{
    if (!(*flags & MSG_DONTWAIT))
        return false;
    *flags &= ~MSG_DONTWAIT;
    if (nb_get(fd))
        return false;
    u_long on = 1;
    ioctlsocket((SOCKET)fd, FIONBIO, &on);
    return true;
}

static void dontwait_end(int fd, bool restore)
{
    if (restore) {
        int e = errno;
        u_long off = 0;
        ioctlsocket((SOCKET)fd, FIONBIO, &off);
        errno = e;
    }
}

static int clamp_len(size_t len)
{
    return len > INT_MAX ? INT_MAX : (int)len;
}

ssize_t th_compat_recv(int fd, void *buf, size_t len, int flags)
{
    bool restore = dontwait_begin(fd, &flags);
    int n = recv((SOCKET)fd, buf, clamp_len(len), flags);
    ssize_t rc = n == SOCKET_ERROR ? fail_wsa() : n;
    dontwait_end(fd, restore);
    return rc;
}

ssize_t th_compat_send(int fd, const void *buf, size_t len, int flags)
{
    bool restore = dontwait_begin(fd, &flags);
    int n = send((SOCKET)fd, buf, clamp_len(len), flags);
    ssize_t rc = n == SOCKET_ERROR ? fail_wsa() : n;
    dontwait_end(fd, restore);
    return rc;
}

ssize_t th_compat_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa,
                           socklen_t *salen)
{
    bool restore = dontwait_begin(fd, &flags);
    int n = recvfrom((SOCKET)fd, buf, clamp_len(len), flags, sa, salen);
    ssize_t rc = n == SOCKET_ERROR ? fail_wsa() : n;
    dontwait_end(fd, restore);
    return rc;
}

ssize_t th_compat_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *sa,
                         socklen_t salen)
{
    bool restore = dontwait_begin(fd, &flags);
    int n = sendto((SOCKET)fd, buf, clamp_len(len), flags, sa, salen);
    ssize_t rc = n == SOCKET_ERROR ? fail_wsa() : n;
    dontwait_end(fd, restore);
    return rc;
}

ssize_t th_compat_read(int fd, void *buf, size_t len)
{
    if (th_compat_is_socket(fd))
        return th_compat_recv(fd, buf, len, 0);
    return _read(fd, buf, (unsigned)clamp_len(len));
}

ssize_t th_compat_write(int fd, const void *buf, size_t len)
{
    if (th_compat_is_socket(fd))
        return th_compat_send(fd, buf, len, 0);
    return _write(fd, buf, (unsigned)clamp_len(len));
}

int th_compat_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    if (connect((SOCKET)fd, sa, len) == 0)
        return 0;
    int w = WSAGetLastError();
    /* A non-blocking connect under way is EINPROGRESS, as on POSIX. */
    errno = w == WSAEWOULDBLOCK ? EINPROGRESS : evn__errno_of_wsa(w);
    return -1;
}

int th_compat_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
    return bind((SOCKET)fd, sa, len) == 0 ? 0 : fail_wsa();
}

int th_compat_listen(int fd, int backlog)
{
    return listen((SOCKET)fd, backlog) == 0 ? 0 : fail_wsa();
}

int th_compat_accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    SOCKET s = accept((SOCKET)fd, sa, len);
    if (s == INVALID_SOCKET)
        return fail_wsa();
    SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
    return (int)s;
}

int th_compat_shutdown(int fd, int how)
{
    return shutdown((SOCKET)fd, how) == 0 ? 0 : fail_wsa();
}

int th_compat_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
    return getsockname((SOCKET)fd, sa, len) == 0 ? 0 : fail_wsa();
}

int th_compat_getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
    return getpeername((SOCKET)fd, sa, len) == 0 ? 0 : fail_wsa();
}

int th_compat_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    return setsockopt((SOCKET)fd, level, name, val, len) == 0 ? 0 : fail_wsa();
}

int th_compat_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    return getsockopt((SOCKET)fd, level, name, val, len) == 0 ? 0 : fail_wsa();
}

int th_compat_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    if (n == 0) {
        Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
        return 0;
    }
    /* WSAPoll refuses requests it does not know (POLLPRI among them) with
     * WSAEINVAL; POSIX ignores them. The error bits are always reported. */
    for (nfds_t i = 0; i < n; i++)
        fds[i].events &= POLLIN | POLLOUT;
    int rc = WSAPoll(fds, (ULONG)n, timeout_ms);
    return rc == SOCKET_ERROR ? fail_wsa() : rc;
}

int th_compat_fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int arg = cmd == F_SETFL || cmd == F_SETFD ? va_arg(ap, int) : 0;
    va_end(ap);
    bool sock = th_compat_is_socket(fd);
    if (!sock && (fd < 0 || _get_osfhandle(fd) == -1)) {
        errno = EBADF;
        return -1;
    }
    switch (cmd) {
    case F_GETFD:
        return 0;
    case F_SETFD:
        return 0;
    case F_GETFL:
        return O_RDWR | (sock && nb_get(fd) ? O_NONBLOCK : 0);
    case F_SETFL:
        if (!sock) {
            errno = EINVAL;
            return -1;
        }
        return set_nonblocking(fd, arg & O_NONBLOCK);
    default:
        errno = EINVAL;
        return -1;
    }
}

static int stream_pair(int sv[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int len = sizeof a;
    int lfd = th_compat_socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0)
        return -1;
    sv[0] = sv[1] = -1;
    if (th_compat_bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || th_compat_listen(lfd, 1) < 0 ||
        th_compat_getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
        goto fail;
    sv[0] = th_compat_socket(AF_INET, SOCK_STREAM, 0);
    if (sv[0] < 0 || th_compat_connect(sv[0], (struct sockaddr *)&a, sizeof a) < 0)
        goto fail;
    sv[1] = th_compat_accept(lfd, NULL, NULL);
    if (sv[1] < 0)
        goto fail;
    th_compat_close(lfd);
    return 0;
fail:;
    int e = errno;
    th_compat_close(lfd);
    if (sv[0] >= 0)
        th_compat_close(sv[0]);
    errno = e;
    return -1;
}

static int dgram_pair(int sv[2])
{
    struct sockaddr_in a[2];
    sv[0] = sv[1] = -1;
    for (int i = 0; i < 2; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].sin_family = AF_INET;
        a[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int len = sizeof a[i];
        sv[i] = th_compat_socket(AF_INET, SOCK_DGRAM, 0);
        if (sv[i] < 0 || th_compat_bind(sv[i], (struct sockaddr *)&a[i], sizeof a[i]) < 0 ||
            th_compat_getsockname(sv[i], (struct sockaddr *)&a[i], &len) < 0)
            goto fail;
    }
    if (th_compat_connect(sv[0], (struct sockaddr *)&a[1], sizeof a[1]) < 0 ||
        th_compat_connect(sv[1], (struct sockaddr *)&a[0], sizeof a[0]) < 0)
        goto fail;
    return 0;
fail:;
    int e = errno;
    for (int i = 0; i < 2; i++)
        if (sv[i] >= 0)
            th_compat_close(sv[i]);
    errno = e;
    return -1;
}

int th_compat_socketpair(int family, int type, int protocol, int sv[2])
{
    (void)family;
    (void)protocol;
    bool nonblock = type & SOCK_NONBLOCK;
    type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    int rc = type == SOCK_DGRAM ? dgram_pair(sv) : type == SOCK_STREAM ? stream_pair(sv) : -2;
    if (rc == -2) {
        errno = EPROTONOSUPPORT;
        return -1;
    }
    if (rc == 0 && nonblock) {
        set_nonblocking(sv[0], true);
        set_nonblocking(sv[1], true);
    }
    return rc;
}

int th_compat_pipe(int fds[2])
{
    return _pipe(fds, 65536, _O_BINARY | _O_NOINHERIT);
}

long th_compat_sysconf(int name)
{
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    switch (name) {
    case _SC_PAGESIZE:
        return (long)si.dwPageSize;
    case _SC_NPROCESSORS_ONLN:
        return (long)si.dwNumberOfProcessors;
    default:
        errno = EINVAL;
        return -1;
    }
}

static DWORD page_protection(int prot)
{
    if (prot & PROT_WRITE)
        return PAGE_READWRITE;
    return prot & PROT_READ ? PAGE_READONLY : PAGE_NOACCESS;
}

void *th_compat_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    (void)addr;
    (void)off;
    if (!(flags & MAP_ANONYMOUS) || fd != -1) {
        errno = ENOTSUP;
        return MAP_FAILED;
    }
    void *p = VirtualAlloc(NULL, len, MEM_RESERVE | MEM_COMMIT, page_protection(prot));
    if (!p) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return p;
}

int th_compat_mprotect(void *addr, size_t len, int prot)
{
    DWORD old;
    if (!VirtualProtect(addr, len, page_protection(prot), &old)) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* Only whole mappings are unmapped here, which is all the tests do. */
int th_compat_munmap(void *addr, size_t len)
{
    (void)len;
    if (!VirtualFree(addr, 0, MEM_RELEASE)) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

int th_compat_open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int mode = flags & O_CREAT ? va_arg(ap, int) : 0;
    va_end(ap);
    if (flags & O_DIRECTORY) {
        HANDLE h = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                               OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
        if (h == INVALID_HANDLE_VALUE) {
            errno = ENOENT;
            return -1;
        }
        int fd = _open_osfhandle((intptr_t)h, _O_RDONLY);
        if (fd < 0)
            CloseHandle(h);
        return fd;
    }
    int crt = flags & ~(O_CLOEXEC | O_DIRECTORY);
    if (flags & O_CLOEXEC)
        crt |= _O_NOINHERIT;
    int pmode = mode & 0200 ? _S_IREAD | _S_IWRITE : _S_IREAD;
    return _open(path, crt | _O_BINARY, pmode);
}

ssize_t th_compat_pread(int fd, void *buf, size_t len, off_t off)
{
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    if (h == INVALID_HANDLE_VALUE) {
        errno = EBADF;
        return -1;
    }
    OVERLAPPED ov = {0};
    ov.Offset = (DWORD)((uint64_t)off & 0xffffffffu);
    ov.OffsetHigh = (DWORD)((uint64_t)off >> 32);
    DWORD got = 0;
    if (!ReadFile(h, buf, (DWORD)(len > 0x7fffffff ? 0x7fffffff : len), &got, &ov)) {
        if (GetLastError() == ERROR_HANDLE_EOF)
            return 0;
        errno = EIO;
        return -1;
    }
    return (ssize_t)got;
}

int th_compat_rename(const char *from, const char *to)
{
    if (MoveFileExA(from, to, MOVEFILE_REPLACE_EXISTING))
        return 0;
    errno = GetLastError() == ERROR_FILE_NOT_FOUND ? ENOENT : EACCES;
    return -1;
}
