/*
 * The POSIX errno value of a Winsock error, in one place for the library
 * (win.c, backend_iocp.c) and the tests' own socket wrappers
 * (tests/compat-win.c, which cannot call the library's: the DLL test-abi
 * links exports only the API).
 */
#ifndef EVN_WIN_ERRNO_H
#define EVN_WIN_ERRNO_H

#include <errno.h>
#include <winsock2.h>

static inline int evn__errno_of_wsa(int e)
{
    switch (e) {
    case WSAEWOULDBLOCK:
        return EAGAIN;
    case WSAEINPROGRESS:
        return EINPROGRESS;
    case WSAEALREADY:
        return EALREADY;
    case WSAEINTR:
        return EINTR;
    case WSAEBADF:
        return EBADF;
    /* As POSIX calls on a descriptor that is not a socket answer. */
    case WSAENOTSOCK:
        return ENOTSOCK;
    case WSAEDESTADDRREQ:
        return EDESTADDRREQ;
    case WSAEACCES:
        return EACCES;
    case WSAEFAULT:
        return EFAULT;
    case WSAEINVAL:
        return EINVAL;
    case WSAEMFILE:
        return EMFILE;
    case WSAEMSGSIZE:
        return EMSGSIZE;
    case WSAEPROTOTYPE:
        return EPROTOTYPE;
    case WSAENOPROTOOPT:
        return ENOPROTOOPT;
    case WSAEPROTONOSUPPORT:
        return EPROTONOSUPPORT;
    case WSAESOCKTNOSUPPORT:
    case WSAEOPNOTSUPP:
        return EOPNOTSUPP;
    case WSAEPFNOSUPPORT:
    case WSAEAFNOSUPPORT:
        return EAFNOSUPPORT;
    case WSAEADDRINUSE:
        return EADDRINUSE;
    case WSAEADDRNOTAVAIL:
        return EADDRNOTAVAIL;
    case WSAENETDOWN:
        return ENETDOWN;
    case WSAENETUNREACH:
        return ENETUNREACH;
    case WSAENETRESET:
        return ENETRESET;
    case WSAECONNABORTED:
        return ECONNABORTED;
    case WSAECONNRESET:
        return ECONNRESET;
    case WSAENOBUFS:
        return ENOBUFS;
    case WSAEISCONN:
        return EISCONN;
    case WSAENOTCONN:
        return ENOTCONN;
    /* Sending after shutdown(SD_SEND), or on a connection the peer closed. */
    case WSAESHUTDOWN:
    case WSAEDISCON:
        return EPIPE;
    case WSAETIMEDOUT:
        return ETIMEDOUT;
    case WSAECONNREFUSED:
        return ECONNREFUSED;
    case WSAELOOP:
        return ELOOP;
    case WSAENAMETOOLONG:
        return ENAMETOOLONG;
    case WSAEHOSTDOWN:
    case WSAEHOSTUNREACH:
        return EHOSTUNREACH;
    case WSA_NOT_ENOUGH_MEMORY:
        return ENOMEM;
    case WSA_OPERATION_ABORTED:
        return ECANCELED;
    case WSANOTINITIALISED:
        return EINVAL;
    default:
        return EIO;
    }
}

#endif
