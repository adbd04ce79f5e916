#include "static_files.h"

#include "http_parser.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _WIN32
#include "../compat.h"
#endif

static int errno_status(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return 404;
    /* O_NOFOLLOW on a symbolic link: ELOOP on Linux, EMLINK on FreeBSD. */
    case ELOOP:
    case EMLINK:
    case EACCES:
    case EPERM:
    /* A unix socket or a device without a driver: not a file to serve. */
    case ENXIO:
    case ENODEV:
    case EOPNOTSUPP:
        return 403;
    case EMFILE:
    case ENFILE:
        return 503;
    default:
        return 500;
    }
}

/*
 * Flags for every open on the way. O_NOFOLLOW refuses a symbolic link as the
 * component being opened; as every component is opened on its own, relative
 * to the one before, no link is ever followed. O_NONBLOCK makes opening a
 * FIFO (or a device) return at once instead of waiting for a writer; on a
 * regular file or a directory it changes nothing. On Windows, compat.h's
 * openat does all of that by itself (and refuses pipes and devices).
 */
#ifdef _WIN32
#define SF_OPEN_FLAGS O_RDONLY
#else
#define SF_OPEN_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
#endif

/*
 * Why a component walk rather than realpath(): the path is decoded first, so
 * "%2e%2e" and "%2f" are plain "." and "/" by the time it is split; a ".."
 * segment is refused outright; and each remaining segment is opened with
 * openat() relative to the directory opened before it, starting at root_fd,
 * with O_NOFOLLOW. A name that holds neither "/" nor ".." and is not a link
 * cannot lead out of the directory it is looked up in, so the file reached
 * is under the root whatever the tree looks like or how it changes
 * meanwhile (realpath-then-open would race with a rename). The price: a
 * symbolic link inside the root is refused even when it points inside it.
 */
int sf_open(int root_fd, const char *path, size_t len, int *fdp, struct stat *st, const char **type)
{
    char name[SF_PATH_MAX + 1];
    size_t n = 0;
    const char *last = "";
    int err;
    *fdp = -1;
    if (len == 0 || path[0] != '/')
        return 400;
    for (size_t i = 0; i < len; i++) {
        char ch = path[i];
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= len || (hi = http_hexval(path[i + 1])) < 0 ||
                (lo = http_hexval(path[i + 2])) < 0)
                return 400;
            ch = (char)(hi << 4 | lo);
            i += 2;
        }
        if (ch == '\0')
            return 403;
        if (n == SF_PATH_MAX)
            return 404;
        name[n++] = ch;
    }
    name[n] = '\0';
    bool trailing_slash = name[n - 1] == '/';

    /* cur is the directory the next segment is looked up in; fd is ours to
     * close (-1 while cur is still the root). */
    int cur = root_fd, fd = -1;
    char *p = name;
    for (;;) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        char *seg = p;
        while (*p && *p != '/')
            p++;
        if (*p)
            *p++ = '\0';
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0)
            goto refuse;
        /* Not a directory: the open fails with ENOTDIR, hence 404. */
        int next = openat(cur, seg, SF_OPEN_FLAGS);
        err = errno;
        if (fd >= 0)
            close(fd);
        if (next < 0)
            return errno_status(err);
        cur = fd = next;
        last = seg;
    }

    bool is_dir = true;
    if (fd >= 0) {
        if (fstat(fd, st) < 0)
            goto fail;
        is_dir = S_ISDIR(st->st_mode);
    }
    if (is_dir) {
        int ifd = openat(cur, "index.html", SF_OPEN_FLAGS);
        err = errno;
        if (fd >= 0)
            close(fd);
        fd = ifd;
        last = "index.html";
        if (fd < 0)
            return errno_status(err);
        if (fstat(fd, st) < 0)
            goto fail;
    } else if (trailing_slash) {
        close(fd);
        return 404;
    }
    if (!S_ISREG(st->st_mode))
        goto refuse;
    *fdp = fd;
    *type = sf_content_type(last, strlen(last));
    return 0;

refuse:
    if (fd >= 0)
        close(fd);
    return 403;
fail:
    err = errno;
    close(fd);
    return errno_status(err);
}

static bool ieq(const char *s, size_t n, const char *lit)
{
    for (size_t i = 0; i < n; i++) {
        if (lit[i] == '\0' || (char)(s[i] | 0x20) != lit[i])
            return false;
    }
    return lit[n] == '\0';
}

const char *sf_content_type(const char *name, size_t len)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"},
        {"xml", "application/xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"avif", "image/avif"},
        {"svg", "image/svg+xml"},
        {"ico", "image/vnd.microsoft.icon"},
        {"wasm", "application/wasm"},
        {"pdf", "application/pdf"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},
        {"otf", "font/otf"},
        {"mp3", "audio/mpeg"},
        {"ogg", "audio/ogg"},
        {"wav", "audio/wav"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
    };
    const char *dot = NULL;
    for (size_t i = len; i > 0; i--) {
        if (name[i - 1] == '.') {
            dot = name + i;
            break;
        }
        if (name[i - 1] == '/')
            break;
    }
    if (dot) {
        size_t n = (size_t)(name + len - dot);
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            if (ieq(dot, n, types[i].ext))
                return types[i].type;
        }
    }
    return "application/octet-stream";
}

static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void sf_format_date(char *buf, int64_t t)
{
    char tmp[64];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(tmp, sizeof tmp, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], (tm.tm_year + 1900) % 10000, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(buf, tmp, SF_DATE_LEN);
}

/* n digits at s, as a number; -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool sf_parse_date(const char *s, size_t len, int64_t *t)
{
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (len != SF_DATE_LEN || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return false;
    struct tm tm = {0};
    tm.tm_mon = -1;
    for (int i = 0; i < 12; i++) {
        if (memcmp(s + 8, months[i], 3) == 0)
            tm.tm_mon = i;
    }
    tm.tm_mday = digits(s + 5, 2);
    tm.tm_year = digits(s + 12, 4) - 1900;
    tm.tm_hour = digits(s + 17, 2);
    tm.tm_min = digits(s + 20, 2);
    tm.tm_sec = digits(s + 23, 2);
    if (tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_year < 0 || tm.tm_hour < 0 ||
        tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
        return false;
    *t = (int64_t)timegm(&tm);
    return true;
}

/* Digits as a number, saturating: a position past any file is as good. */
static const char *number(const char *p, const char *end, uint64_t *v, bool *any)
{
    uint64_t x = 0;
    *any = false;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        x = x > (UINT64_MAX - 9) / 10 ? UINT64_MAX : x * 10 + (uint64_t)(*p - '0');
        *any = true;
    }
    *v = x;
    return p;
}

void sf_parse_range(const char *s, size_t len, struct sf_range *r)
{
    const char *p = s, *end = s + len;
    bool has_first, has_last;
    r->kind = SF_RANGE_NONE;
    if (len < 6 || !ieq(s, 6, "bytes="))
        return;
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    p = number(p, end, &r->first, &has_first);
    if (p == end || *p != '-')
        return;
    p = number(p + 1, end, &r->last, &has_last);
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    /* Anything left, a comma included (several ranges), sends it all. */
    if (p != end)
        return;
    if (has_first && has_last && r->last >= r->first)
        r->kind = SF_RANGE_SPAN;
    else if (has_first && !has_last)
        r->kind = SF_RANGE_FROM;
    else if (!has_first && has_last)
        r->kind = SF_RANGE_SUFFIX;
}

int sf_resolve_range(const struct sf_range *r, uint64_t size, uint64_t *off, uint64_t *len)
{
    *off = 0;
    *len = size;
    switch (r->kind) {
    case SF_RANGE_SPAN:
    case SF_RANGE_FROM:
        if (r->first >= size)
            return 416;
        *off = r->first;
        *len = (r->kind == SF_RANGE_FROM || r->last >= size ? size - 1 : r->last) - r->first + 1;
        return 206;
    case SF_RANGE_SUFFIX:
        if (r->last == 0 || size == 0)
            return 416;
        *len = r->last < size ? r->last : size;
        *off = size - *len;
        return 206;
    default:
        return 200;
    }
}
