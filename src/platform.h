/*
 * What differs between POSIX systems and Windows, in one place.
 *
 * evn is written against POSIX sockets. On POSIX systems the functions
 * below are static inline calls of the system's own, so they compile to the
 * same code as calling it directly. On Windows (mingw-w64) they and the
 * POSIX names of the socket calls (socket, recv, send, ...) go to thin
 * wrappers over Winsock in win.c, which turn a SOCKET into evn's int and
 * back, and report failures in errno, as POSIX does, so that the code
 * above checks errno == EAGAIN the same way everywhere. The POSIX headers
 * evn's sources include (sys/socket.h, netinet/in.h, poll.h, ...) come
 * from src/win/ on Windows, each of which includes this file.
 *
 * Descriptors are ints inside evn. A Windows SOCKET is a kernel handle, and
 * 64-bit Windows keeps handles 32-bit significant (so that 32-bit processes
 * can share them), so one is stored in an int without loss; the wrappers
 * that make sockets check that it fits and refuse with EMFILE if not.
 */
#ifndef EVN_PLATFORM_H
#define EVN_PLATFORM_H

#ifdef _WIN32

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
/* In this order: winsock2.h before windows.h, which would bring the old
 * winsock.h otherwise. */
#include <winsock2.h>

#include <ws2tcpip.h>

#include <afunix.h>
#include <mswsock.h>
#include <windows.h>

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef ESHUTDOWN
#define ESHUTDOWN WSAESHUTDOWN
#endif

/* sys/uio.h and sys/socket.h: what Winsock has under other names. */
struct iovec {
    void *iov_base;
    size_t iov_len;
};
struct msghdr {
    void *msg_name;
    socklen_t msg_namelen;
    struct iovec *msg_iov;
    int msg_iovlen;
    void *msg_control;
    size_t msg_controllen;
    int msg_flags;
};
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#define MSG_DONTWAIT 0
/* No such option: setting it fails with ENOPROTOOPT (reuseport=true). */
#define SO_REUSEPORT (-1)
typedef unsigned long nfds_t;
typedef ADDRESS_FAMILY sa_family_t;
/* netdb.h: getaddrinfo's errors are Winsock's; none means "see errno". */
#define EAI_SYSTEM (-11)

/* fcntl.h: the few commands evn uses (see evn__w_fcntl). */
#define F_GETFL 3
#define F_SETFL 4
#define F_SETFD 2
#define FD_CLOEXEC 1
#define F_DUPFD_CLOEXEC 1030
#ifndef O_ACCMODE
#define O_ACCMODE (O_RDONLY | O_WRONLY | O_RDWR)
#endif

/* sys/stat.h: Windows has no socket files to stat as such. */
#define lstat stat
#ifndef S_ISSOCK
#define S_ISSOCK(m) 0
#endif

/* signal.h: signal masks mean nothing to Windows threads; the loops'
 * blocking of signals is a no-op there (winpthreads' pthread_sigmask is). */
#ifndef SIG_BLOCK
#define SIG_BLOCK 0
#define SIG_UNBLOCK 1
#define SIG_SETMASK 2
#endif
typedef _sigset_t sigset_t;
static inline int sigemptyset(sigset_t *s)
{
    *s = 0;
    return 0;
}
static inline int sigfillset(sigset_t *s)
{
    *s = (sigset_t)~0ull;
    return 0;
}
static inline int sigaddset(sigset_t *s, int n)
{
    *s |= (sigset_t)1 << n;
    return 0;
}
static inline int sigismember(const sigset_t *s, int n)
{
    return (int)((*s >> n) & 1);
}

/* winpthreads' pthread_sigmask is a macro that leaves its arguments unused. */
#undef pthread_sigmask
static inline int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    (void)how, (void)set;
    if (old)
        *old = 0;
    return 0;
}

/* unistd.h */
#define _SC_NPROCESSORS_ONLN 84
long evn__w_sysconf(int name);

/*
 * The wrappers (win.c): POSIX signatures and errno, Winsock underneath.
 * Object-like macros, so that a struct member of the same name (a backend's
 * send, a transport's shutdown) is renamed alike in every file and stays
 * what it was. A file that means Winsock's own functions by these names
 * (win.c) or has wrappers of its own (the tests' compat.h) defines
 * EVN_PLATFORM_NO_RENAMES before including this.
 */
int evn__w_socket(int domain, int type, int protocol);
int evn__w_accept(int fd, struct sockaddr *sa, socklen_t *len);
int evn__w_bind(int fd, const struct sockaddr *sa, socklen_t len);
int evn__w_listen(int fd, int backlog);
int evn__w_connect(int fd, const struct sockaddr *sa, socklen_t len);
int evn__w_shutdown(int fd, int how);
int evn__w_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int evn__w_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int evn__w_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
int evn__w_getpeername(int fd, struct sockaddr *sa, socklen_t *len);
ssize_t evn__w_recv(int fd, void *buf, size_t len, int flags);
ssize_t evn__w_send(int fd, const void *buf, size_t len, int flags);
ssize_t evn__w_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa,
                        socklen_t *salen);
ssize_t evn__w_sendmsg(int fd, const struct msghdr *mh, int flags);
int evn__w_ioctl(int fd, long cmd, void *arg);
int evn__w_poll(struct pollfd *pfds, nfds_t n, int timeout_ms);
int evn__w_fcntl(int fd, int cmd, ...);
ssize_t evn__w_pread(int fd, void *buf, size_t n, off_t pos);
#ifndef EVN_PLATFORM_NO_RENAMES
#define socket evn__w_socket
#define accept evn__w_accept
#define bind evn__w_bind
#define listen evn__w_listen
#define connect evn__w_connect
#define shutdown evn__w_shutdown
#define setsockopt evn__w_setsockopt
#define getsockopt evn__w_getsockopt
#define getsockname evn__w_getsockname
#define getpeername evn__w_getpeername
#define recv evn__w_recv
#define send evn__w_send
#define recvfrom evn__w_recvfrom
#define sendmsg evn__w_sendmsg
#define ioctl evn__w_ioctl
#define poll evn__w_poll
#define fcntl evn__w_fcntl
#define pread evn__w_pread
#define sysconf evn__w_sysconf
#endif
/* The C library's strerror knows none of the socket errors (ECONNRESET
 * and the rest are above its table); evn_strerror does. */
#define strerror(e) evn_strerror(e)

/* WSAStartup, once (any thread): 0 or -errno. */
int evn__platform_init(void);
/* Close a socket (closesocket). */
int evn__sock_close(int fd);
ssize_t evn__sock_read(int fd, void *buf, size_t len);
ssize_t evn__sock_write(int fd, const void *buf, size_t len);
/* A connected pair of loopback TCP sockets, both non-blocking: where POSIX
 * has pipes for wake-ups, Windows can poll only sockets. */
int evn__w_socketpair(int sv[2]);
/* The console's Ctrl-C, Ctrl-Break and close, as one byte written to the
 * socket wfd (-1: stop), for evn_server_stop_on_signals. */
int evn__console_stop_to(int wfd);
/* Names for the errno values above the C library's table. */
const char *evn__win_strerror(int err);

#else /* POSIX */

#include <unistd.h>

/* On POSIX systems these take any descriptor evn reads, writes or closes
 * as it would a socket: the wake-up eventfd or pipe too. */

static inline int evn__platform_init(void)
{
    return 0;
}
static inline int evn__sock_close(int fd)
{
    return close(fd);
}
static inline ssize_t evn__sock_read(int fd, void *buf, size_t len)
{
    return read(fd, buf, len);
}
static inline ssize_t evn__sock_write(int fd, const void *buf, size_t len)
{
    return write(fd, buf, len);
}

#endif

#endif
