/*
 * The POSIX calls the tests make, on every platform the tests run on.
 *
 * On Linux (and the BSDs) this is only the system's headers: the tests call
 * socket, read, write, close, poll, fcntl... as they are.
 *
 * On Windows (mingw-w64, winpthreads) the same calls go to Winsock through
 * the function-like macros below, each a th_compat_ function in
 * compat-win.c. They exist because a socket there is not a C runtime file
 * descriptor: close() and read() on one would act on an unrelated CRT fd, and
 * Winsock reports errors through WSAGetLastError() instead of errno. Each
 * wrapper takes the socket as the int the tests (and evn_conn_fd) use, and on
 * failure sets errno to the POSIX value (WSAEWOULDBLOCK as EAGAIN,
 * WSAECONNREFUSED as ECONNREFUSED ...), so a test checks the same errno
 * everywhere; strerror is evn_strerror there, which knows the socket
 * errors. Only function-like macros are used, so a struct member or
 * callback named read or close is left alone; every system header that
 * declares these names is included first. compat-win.c, which implements
 * them, defines TH_COMPAT_NO_MACROS.
 */
#ifndef EVN_TEST_COMPAT_H
#define EVN_TEST_COMPAT_H

#ifndef _WIN32

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

/* The clock pthread_cond_timedwait can be told to use for the watchdog. */
#define TH_COND_CLOCK CLOCK_MONOTONIC

#else /* _WIN32 */

/*
 * evn's own platform layer gives Winsock and what Windows lacks of POSIX
 * (struct iovec, SHUT_*, F_GETFL, ESHUTDOWN, sigset_t, strerror as
 * evn_strerror ...), the same in the tests as in the library. Its wrappers
 * are the library's internals, which the DLL test-abi links does not
 * export, so the tests have socket wrappers of their own below, and ask
 * platform.h for none of its renames; internal.h, included after this,
 * finds platform.h done.
 */
#define EVN_PLATFORM_NO_RENAMES
#include "platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#undef MSG_DONTWAIT

/* winpthreads refuses pthread_condattr_setclock(CLOCK_MONOTONIC) (EINVAL)
 * and measures a condition variable's deadline on the wall clock. */
#define TH_COND_CLOCK CLOCK_REALTIME

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* Windows has no SIGPIPE */
#endif
/* Not Winsock flags: the wrappers below act on them and never pass them on. */
#define MSG_DONTWAIT 0x40000000
#define SOCK_NONBLOCK 0x00000800
#define SOCK_CLOEXEC 0x00080000

/* fcntl: F_GETFD tells an open socket or CRT fd from a closed one;
 * F_GETFL/F_SETFL read and set O_NONBLOCK on a socket (Windows cannot read
 * a socket's mode back, so F_GETFL reports what the tests set through
 * F_SETFL, and blocking for the rest). */
#define F_GETFD 1
#ifndef O_NONBLOCK
#define O_NONBLOCK 0x4000
#endif
#define O_CLOEXEC 0x01000000 /* as _O_NOINHERIT */
#define O_DIRECTORY 0x02000000

/* open: always binary (the tests compare bytes); O_DIRECTORY opens a
 * directory, which the C runtime's open cannot. */
int th_compat_open(const char *path, int flags, ...);
/* pread: a read at an offset through the file's handle. */
ssize_t th_compat_pread(int fd, void *buf, size_t len, off_t off);
/* rename: replacing the target, as POSIX's does (the C runtime's refuses). */
int th_compat_rename(const char *from, const char *to);

/* sysconf: the page size and the number of CPUs. */
#define _SC_PAGESIZE 30
#ifndef _SC_NPROCESSORS_ONLN
#define _SC_NPROCESSORS_ONLN 84
#endif
long th_compat_sysconf(int name);

/* mmap: anonymous private memory only, and mprotect to make a guard page. */
#define PROT_NONE 0
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 2
#define MAP_ANONYMOUS 0x20
#define MAP_FAILED ((void *)-1)
void *th_compat_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int th_compat_mprotect(void *addr, size_t len, int prot);
int th_compat_munmap(void *addr, size_t len);

int th_compat_socket(int family, int type, int protocol);
int th_compat_close(int fd);
ssize_t th_compat_read(int fd, void *buf, size_t len);
ssize_t th_compat_write(int fd, const void *buf, size_t len);
ssize_t th_compat_recv(int fd, void *buf, size_t len, int flags);
ssize_t th_compat_send(int fd, const void *buf, size_t len, int flags);
ssize_t th_compat_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa,
                           socklen_t *salen);
ssize_t th_compat_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *sa,
                         socklen_t salen);
int th_compat_connect(int fd, const struct sockaddr *sa, socklen_t len);
int th_compat_bind(int fd, const struct sockaddr *sa, socklen_t len);
int th_compat_listen(int fd, int backlog);
int th_compat_accept(int fd, struct sockaddr *sa, socklen_t *len);
int th_compat_shutdown(int fd, int how);
int th_compat_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
int th_compat_getpeername(int fd, struct sockaddr *sa, socklen_t *len);
int th_compat_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int th_compat_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int th_compat_poll(struct pollfd *fds, nfds_t n, int timeout_ms);
int th_compat_fcntl(int fd, int cmd, ...);
/* A connected pair of sockets: TCP over loopback for SOCK_STREAM (whatever
 * the family asked for), two connected UDP sockets for SOCK_DGRAM. */
int th_compat_socketpair(int family, int type, int protocol, int sv[2]);
/* An anonymous pipe as two CRT fds (binary mode). */
int th_compat_pipe(int fds[2]);
/* Whether fd is a socket (else it may be a CRT fd). */
bool th_compat_is_socket(int fd);

#ifndef TH_COMPAT_NO_MACROS
#define socket(f, t, p) th_compat_socket((f), (t), (p))
#define close(fd) th_compat_close(fd)
#define read(fd, b, n) th_compat_read((fd), (b), (n))
#define write(fd, b, n) th_compat_write((fd), (b), (n))
#define recv(fd, b, n, fl) th_compat_recv((fd), (b), (n), (fl))
#define send(fd, b, n, fl) th_compat_send((fd), (b), (n), (fl))
#define recvfrom(fd, b, n, fl, sa, l) th_compat_recvfrom((fd), (b), (n), (fl), (sa), (l))
#define sendto(fd, b, n, fl, sa, l) th_compat_sendto((fd), (b), (n), (fl), (sa), (l))
#define connect(fd, sa, l) th_compat_connect((fd), (sa), (l))
#define bind(fd, sa, l) th_compat_bind((fd), (sa), (l))
#define listen(fd, b) th_compat_listen((fd), (b))
#define accept(fd, sa, l) th_compat_accept((fd), (sa), (l))
#define shutdown(fd, how) th_compat_shutdown((fd), (how))
#define getsockname(fd, sa, l) th_compat_getsockname((fd), (sa), (l))
#define getpeername(fd, sa, l) th_compat_getpeername((fd), (sa), (l))
#define setsockopt(fd, lv, nm, v, l) th_compat_setsockopt((fd), (lv), (nm), (v), (l))
#define getsockopt(fd, lv, nm, v, l) th_compat_getsockopt((fd), (lv), (nm), (v), (l))
#define poll(fds, n, t) th_compat_poll((fds), (n), (t))
#define fcntl(...) th_compat_fcntl(__VA_ARGS__)
#define socketpair(f, t, p, sv) th_compat_socketpair((f), (t), (p), (sv))
#define pipe(fds) th_compat_pipe(fds)
#define sysconf(n) th_compat_sysconf(n)
#define open(...) th_compat_open(__VA_ARGS__)
#define pread(fd, b, n, o) th_compat_pread((fd), (b), (n), (o))
#define rename(from, to) th_compat_rename((from), (to))
#define mmap(a, l, p, f, fd, o) th_compat_mmap((a), (l), (p), (f), (fd), (o))
#define mprotect(a, l, p) th_compat_mprotect((a), (l), (p))
#define munmap(a, l) th_compat_munmap((a), (l))
#endif

#endif /* _WIN32 */

#endif
