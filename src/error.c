/* Error reporting: errno names and the per-thread failure detail. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char errmsg[256];

void evn__set_errmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
}

const char *evn_errmsg(void)
{
    return errmsg;
}

const char *evn_strerror(int err)
{
    if (err == EVN_ERESOLVE)
        return "Host name did not resolve";
    if (err < 0)
        err = -err;
    if (err == 0)
        return "success";
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    /* strerror() is not required to be thread-safe; strerrordesc_np is, but
     * is glibc-only, so fall back to strerror elsewhere. */
    const char *s = strerrordesc_np(err);
    return s ? s : "unknown error";
#elif defined(_WIN32)
    /* The C library's own strerror (platform.h makes strerror this one). */
    const char *s = evn__win_strerror(err);
    return s ? s : (strerror)(err);
#else
    return strerror(err);
#endif
}
