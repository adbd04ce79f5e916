/*
 * Windows: the POSIX calls evn makes, over Winsock (see platform.h).
 *
 * Every wrapper takes and gives evn's int descriptors and reports a failure
 * as -1 with errno set to the POSIX value of the Winsock error, so that the
 * rest of evn, and every error it returns, is the same as on POSIX systems:
 * a negative errno that evn_strerror names.
 */
/* Here the POSIX names mean Winsock's own functions. */
#define EVN_PLATFORM_NO_RENAMES
#include "internal.h"
#include "win_errno.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static int wsa_status;

static BOOL CALLBACK wsa_start(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    WSADATA wd;
    int rc = WSAStartup(MAKEWORD(2, 2), &wd);
    wsa_status = rc == 0 ? 0 : -EPROTONOSUPPORT;
    return TRUE;
}

int evn__platform_init(void)
{
    InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL);
    if (wsa_status < 0)
        evn__set_errmsg("WSAStartup: Winsock 2.2 is not available");
    return wsa_status;
}

/* -1 with errno set from the thread's last Winsock error. */
static int fail(void)
{
    errno = evn__errno_of_wsa(WSAGetLastError());
    return -1;
}

/*
 * A SOCKET as evn's int. Handles are 32-bit significant on 64-bit Windows
 * (they must be, for 32-bit processes to share them), so this never fails
 * in practice; if one ever did not fit it is closed and refused with
 * EMFILE, as if there were no descriptor left, rather than truncated.
 */
static int sock_int(SOCKET s)
{
    if (s == INVALID_SOCKET)
        return fail();
    if ((uint64_t)s > INT_MAX) {
        closesocket(s);
        errno = EMFILE;
        return -1;
    }
    return (int)s;
}

int evn__w_socket(int domain, int type, int protocol)
{
    if (evn__platform_init() < 0) {
        errno = EPROTONOSUPPORT;
        return -1;
    }
    /* Overlapped, so that a completion port can take it; not inherited by
     * child processes, as SOCK_CLOEXEC gives elsewhere. */
    int fd = sock_int(WSASocketW(domain, type, protocol, NULL, 0,
                                 WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT));
    /* A UDP socket would otherwise fail its next receive with WSAECONNRESET
     * after a datagram it sent met an ICMP port unreachable: POSIX systems
     * report nothing on an unconnected socket. */
    if (fd >= 0 && type == SOCK_DGRAM) {
        BOOL off = FALSE;
        DWORD got;
        WSAIoctl((SOCKET)fd, SIO_UDP_CONNRESET, &off, sizeof off, NULL, 0, &got, NULL, NULL);
    }
    return fd;
}

int evn__w_accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    return sock_int(accept((SOCKET)fd, sa, len));
}

int evn__w_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
    return bind((SOCKET)fd, sa, len) == 0 ? 0 : fail();
}

int evn__w_listen(int fd, int backlog)
{
    return listen((SOCKET)fd, backlog) == 0 ? 0 : fail();
}

int evn__w_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    if (connect((SOCKET)fd, sa, len) == 0)
        return 0;
    /* A non-blocking connect under way is WSAEWOULDBLOCK here. */
    int e = WSAGetLastError();
    errno = e == WSAEWOULDBLOCK ? EINPROGRESS : evn__errno_of_wsa(e);
    return -1;
}

int evn__w_shutdown(int fd, int how)
{
    return shutdown((SOCKET)fd, how) == 0 ? 0 : fail();
}

int evn__w_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    /* Windows' SO_REUSEADDR lets another socket take over a port in use,
     * which is not what it means on POSIX systems (rebinding over
     * connections in TIME_WAIT, which Windows allows anyway); leave it. */
    if (level == SOL_SOCKET && name == SO_REUSEADDR)
        return 0;
    if (name == SO_REUSEPORT) {
        errno = ENOPROTOOPT;
        return -1;
    }
    return setsockopt((SOCKET)fd, level, name, val, len) == 0 ? 0 : fail();
}

int evn__w_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    if (getsockopt((SOCKET)fd, level, name, val, len) != 0)
        return fail();
    /* SO_ERROR holds a Winsock error: give its errno, as callers expect. */
    if (level == SOL_SOCKET && name == SO_ERROR && *len >= (socklen_t)sizeof(int) &&
        *(int *)val != 0)
        *(int *)val = evn__errno_of_wsa(*(int *)val);
    return 0;
}

int evn__w_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
    return getsockname((SOCKET)fd, sa, len) == 0 ? 0 : fail();
}

int evn__w_getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
    return getpeername((SOCKET)fd, sa, len) == 0 ? 0 : fail();
}

/* Winsock counts bytes in an int: larger requests are cut to what fits,
 * which a stream socket's caller handles as a short count. */
static int clamp_len(size_t len)
{
    return len > INT_MAX ? INT_MAX : (int)len;
}

ssize_t evn__w_recv(int fd, void *buf, size_t len, int flags)
{
    int n = recv((SOCKET)fd, buf, clamp_len(len), flags);
    return n >= 0 ? n : fail();
}

ssize_t evn__w_send(int fd, const void *buf, size_t len, int flags)
{
    int n = send((SOCKET)fd, buf, clamp_len(len), flags);
    return n >= 0 ? n : fail();
}

ssize_t evn__w_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa,
                        socklen_t *salen)
{
    int n = recvfrom((SOCKET)fd, buf, clamp_len(len), flags, sa, salen);
    if (n >= 0)
        return n;
    /* A datagram larger than buf: POSIX truncates it silently. */
    if (WSAGetLastError() == WSAEMSGSIZE)
        return clamp_len(len);
    return fail();
}

/* sendmsg as WSASendTo: the pieces as WSABUFs (at most EVN__IOV_MAX, as
 * every caller gives), to msg_name if set. No control data. */
ssize_t evn__w_sendmsg(int fd, const struct msghdr *mh, int flags)
{
    WSABUF bufs[EVN__IOV_MAX];
    int n = mh->msg_iovlen < EVN__IOV_MAX ? mh->msg_iovlen : EVN__IOV_MAX;
    for (int i = 0; i < n; i++) {
        bufs[i].buf = mh->msg_iov[i].iov_base;
        bufs[i].len =
            (ULONG)(mh->msg_iov[i].iov_len > ULONG_MAX ? ULONG_MAX : mh->msg_iov[i].iov_len);
    }
    DWORD sent = 0;
    int rc = mh->msg_name
                 ? WSASendTo((SOCKET)fd, bufs, (DWORD)n, &sent, (DWORD)flags,
                             (const struct sockaddr *)mh->msg_name, mh->msg_namelen, NULL, NULL)
                 : WSASend((SOCKET)fd, bufs, (DWORD)n, &sent, (DWORD)flags, NULL, NULL);
    return rc == 0 ? (ssize_t)sent : fail();
}

int evn__w_ioctl(int fd, long cmd, void *arg)
{
    return ioctlsocket((SOCKET)fd, cmd, (u_long *)arg) == 0 ? 0 : fail();
}

int evn__w_poll(struct pollfd *pfds, nfds_t n, int timeout_ms)
{
    int rc = WSAPoll(pfds, (ULONG)n, timeout_ms);
    return rc >= 0 ? rc : fail();
}

/*
 * The fcntl commands evn uses elsewhere than for a socket's mode
 * (evn__set_nonblock sets that itself). F_GETFL tells a file's access mode
 * by a read of no bytes, which Windows refuses on a handle not open for
 * reading (O_WRONLY); it cannot tell O_RDONLY from O_RDWR, so says O_RDWR.
 * F_SETFD is a no-op: evn's sockets are made not inheritable.
 * F_DUPFD_CLOEXEC duplicates a file's descriptor.
 */
int evn__w_fcntl(int fd, int cmd, ...)
{
    switch (cmd) {
    case F_GETFL: {
        HANDLE h = (HANDLE)_get_osfhandle(fd);
        if (h == INVALID_HANDLE_VALUE) {
            errno = EBADF;
            return -1;
        }
        /* At the current position, which a read of nothing leaves alone. */
        char b;
        DWORD got;
        if (!ReadFile(h, &b, 0, &got, NULL) && GetLastError() == ERROR_ACCESS_DENIED)
            return O_WRONLY;
        return O_RDWR;
    }
    case F_SETFD:
        return 0;
    case F_DUPFD_CLOEXEC:
        return _dup(fd);
    default:
        errno = EINVAL;
        return -1;
    }
}

/* pread on a C library descriptor: ReadFile at an offset. */
ssize_t evn__w_pread(int fd, void *buf, size_t n, off_t pos)
{
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    if (h == INVALID_HANDLE_VALUE) {
        errno = EBADF;
        return -1;
    }
    OVERLAPPED ov = {0};
    ov.Offset = (DWORD)((uint64_t)pos & 0xffffffffu);
    ov.OffsetHigh = (DWORD)((uint64_t)pos >> 32);
    DWORD got = 0;
    if (!ReadFile(h, buf, n > 0x40000000 ? 0x40000000 : (DWORD)n, &got, &ov)) {
        DWORD e = GetLastError();
        if (e == ERROR_HANDLE_EOF)
            return 0;
        errno = e == ERROR_ACCESS_DENIED || e == ERROR_INVALID_HANDLE ? EBADF : EIO;
        return -1;
    }
    return (ssize_t)got;
}

long evn__w_sysconf(int name)
{
    if (name != _SC_NPROCESSORS_ONLN) {
        errno = EINVAL;
        return -1;
    }
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return (long)si.dwNumberOfProcessors;
}

int evn__sock_close(int fd)
{
    return closesocket((SOCKET)fd) == 0 ? 0 : fail();
}

ssize_t evn__sock_read(int fd, void *buf, size_t len)
{
    return evn__w_recv(fd, buf, len, 0);
}

ssize_t evn__sock_write(int fd, const void *buf, size_t len)
{
    return evn__w_send(fd, buf, len, 0);
}

/*
 * Listen on an ephemeral loopback port, connect, accept, close the
 * listener. A process on the same machine could connect first in the
 * moment between listen and accept; the accepted socket's peer is checked
 * to be our own connecting socket's address, so such a one is refused.
 */
int evn__w_socketpair(int sv[2])
{
    int l = -1, a = -1, c = -1, e;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    struct sockaddr_in ca, pa;
    socklen_t len = sizeof addr, clen = sizeof ca, plen = sizeof pa;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((l = evn__w_socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        evn__w_bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || evn__w_listen(l, 1) < 0 ||
        evn__w_getsockname(l, (struct sockaddr *)&addr, &len) < 0 ||
        (c = evn__w_socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        evn__w_connect(c, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        evn__w_getsockname(c, (struct sockaddr *)&ca, &clen) < 0 ||
        (a = evn__w_accept(l, (struct sockaddr *)&pa, &plen)) < 0)
        goto fail;
    if (pa.sin_port != ca.sin_port) {
        errno = ECONNREFUSED;
        goto fail;
    }
    u_long on = 1;
    int one = 1;
    ioctlsocket((SOCKET)a, FIONBIO, &on);
    ioctlsocket((SOCKET)c, FIONBIO, &on);
    /* Wake-ups are single bytes: send each at once. */
    setsockopt((SOCKET)c, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    setsockopt((SOCKET)a, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    closesocket((SOCKET)l);
    sv[0] = a;
    sv[1] = c;
    return 0;
fail:
    e = errno;
    if (l >= 0)
        closesocket((SOCKET)l);
    if (c >= 0)
        closesocket((SOCKET)c);
    if (a >= 0)
        closesocket((SOCKET)a);
    return -e;
}

/*
 * Console events for evn_server_stop_on_signals: Ctrl-C, Ctrl-Break and the
 * console window's close (and logoff/shutdown) come on a thread of their
 * own, which writes one byte to the socket loop 0 reads; as with a POSIX
 * signal, the first starts a graceful shutdown and a second stops at once.
 * Returning TRUE keeps the process from being ended then and there (for a
 * close event Windows ends it anyway some seconds later).
 */
static volatile LONG ctrl_wfd = -1;
/* Each event comes on a thread of its own, and two at one instant would
 * send at once, which Wine may fail for one of them (see evn__loop_signal):
 * they take turns. */
static SRWLOCK ctrl_lock = SRWLOCK_INIT;

static BOOL WINAPI on_ctrl(DWORD type)
{
    LONG fd = ctrl_wfd;
    if (fd < 0)
        return FALSE;
    char b = (char)type;
    AcquireSRWLockExclusive(&ctrl_lock);
    send((SOCKET)fd, &b, 1, 0);
    ReleaseSRWLockExclusive(&ctrl_lock);
    return TRUE;
}

int evn__console_stop_to(int wfd)
{
    InterlockedExchange(&ctrl_wfd, wfd);
    if (!SetConsoleCtrlHandler(on_ctrl, wfd >= 0)) {
        InterlockedExchange(&ctrl_wfd, -1);
        return wfd >= 0 ? -EINVAL : 0;
    }
    return 0;
}

/* The errno values of the C library's POSIX supplement (100 and above),
 * which its strerror leaves unnamed. */
const char *evn__win_strerror(int err)
{
    switch (err) {
    case EADDRINUSE:
        return "Address already in use";
    case EADDRNOTAVAIL:
        return "Cannot assign requested address";
    case EAFNOSUPPORT:
        return "Address family not supported by protocol";
    case EALREADY:
        return "Operation already in progress";
    case EBADMSG:
        return "Bad message";
    case ECANCELED:
        return "Operation canceled";
    case ECONNABORTED:
        return "Software caused connection abort";
    case ECONNREFUSED:
        return "Connection refused";
    case ECONNRESET:
        return "Connection reset by peer";
    case EHOSTUNREACH:
        return "No route to host";
    case EINPROGRESS:
        return "Operation now in progress";
    case EISCONN:
        return "Transport endpoint is already connected";
    case ELOOP:
        return "Too many levels of symbolic links";
    case EMSGSIZE:
        return "Message too long";
    case ENETDOWN:
        return "Network is down";
    case ENETRESET:
        return "Network dropped connection on reset";
    case ENETUNREACH:
        return "Network is unreachable";
    case ENOBUFS:
        return "No buffer space available";
    case ENOMSG:
        return "No message of desired type";
    case ENOPROTOOPT:
        return "Protocol not available";
    case ENOTCONN:
        return "Transport endpoint is not connected";
    case ENOTSOCK:
        return "Socket operation on non-socket";
    case EDESTADDRREQ:
        return "Destination address required";
    case ENOTSUP:
        return "Operation not supported";
    case EOPNOTSUPP:
        return "Operation not supported on socket";
    case EPROTO:
        return "Protocol error";
    case EPROTONOSUPPORT:
        return "Protocol not supported";
    case EPROTOTYPE:
        return "Protocol wrong type for socket";
    case ETIME:
        return "Timer expired";
    case ETIMEDOUT:
        return "Connection timed out";
    case EWOULDBLOCK:
        return "Operation would block";
    case ESHUTDOWN:
        return "Cannot send after transport endpoint shutdown";
    default:
        return NULL;
    }
}
