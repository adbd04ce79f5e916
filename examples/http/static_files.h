/*
 * The pieces of serving static files that do not touch a connection: mapping
 * a request path to an open file under a root directory without ever leaving
 * it, the Content-Type of a file name, HTTP dates, and Range headers. No
 * allocation; the functions are safe to call from any thread.
 */
#ifndef EVN_HTTP_STATIC_FILES_H
#define EVN_HTTP_STATIC_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* The longest request path taken, once percent-decoded. */
#define SF_PATH_MAX 4096

/*
 * Open the file that path[0..len) (the path of a request-target, without its
 * query, still percent-encoded) names under the directory root_fd. A
 * directory gives its index.html. On success returns 0 with the descriptor
 * in *fd (the caller closes it), its fstat in *st (always a regular file)
 * and in *type its Content-Type, from the decoded name of the file served.
 * Otherwise *fd is -1 and the HTTP status to answer with is returned: 400 for
 * a malformed percent-encoding or a path not starting with '/', 403 for a
 * "..", a NUL, a symbolic link anywhere on the way, a file that is not
 * regular or one it may not read, 404 for what does not exist, 503 when out
 * of descriptors, 500 otherwise. Never blocks on a FIFO or a device.
 */
int sf_open(int root_fd, const char *path, size_t len, int *fd, struct stat *st, const char **type);

/* The Content-Type for a file name (by its extension, ignoring case). */
const char *sf_content_type(const char *name, size_t len);

/* Length of an IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT". */
#define SF_DATE_LEN 29

/* Write t as an IMF-fixdate to buf (SF_DATE_LEN bytes, no NUL). */
void sf_format_date(char *buf, int64_t t);

/* Parse an IMF-fixdate; false for anything else (the obsolete RFC 850 and
 * asctime forms included). */
bool sf_parse_date(const char *s, size_t len, int64_t *t);

/* A Range header's one byte range, before the file's size is known. */
enum sf_range_kind {
    SF_RANGE_NONE = 0, /* no Range, or one to ignore: send the whole file */
    SF_RANGE_SPAN,     /* bytes=first-last */
    SF_RANGE_FROM,     /* bytes=first- */
    SF_RANGE_SUFFIX    /* bytes=-last: the last `last` bytes */
};

struct sf_range {
    unsigned char kind; /* enum sf_range_kind */
    uint64_t first, last;
};

/*
 * Parse a Range header's value. Several ranges, another unit or a malformed
 * value give SF_RANGE_NONE: the whole file, which RFC 9110 (14.2) allows a
 * server to send for any Range it does not want to honour.
 */
void sf_parse_range(const char *s, size_t len, struct sf_range *r);

/*
 * Apply r to a file of size bytes: returns 200 (the whole file: *off 0,
 * *len size), 206 with the part in *off and *len, or 416 when no byte of it
 * lies in the file.
 */
int sf_resolve_range(const struct sf_range *r, uint64_t size, uint64_t *off, uint64_t *len);

#endif
