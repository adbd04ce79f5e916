/*
 * File regions in the output queue (evn_sendfile, evn_sendfile_owned). A
 * region is a chunk with no buffer: it holds a descriptor of evn's own (a
 * duplicate of the application's, or the application's itself handed over)
 * and the region's start, and its off/len count sent and total bytes like
 * any chunk's, so flow control and the queue's order treat it as output like
 * the rest. On Linux a plain socket gets it with sendfile(2), from the page
 * cache without a copy through user memory; over TLS (and elsewhere) it is
 * read piece by piece into the loop's read buffer, which no input needs
 * while output is being flushed, and given to the connection's transport.
 * A completion backend that sends files itself (iocp's TransmitFile) is
 * handed the region instead, on a plain connection, and its completion
 * says how much went.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/sendfile.h>
#endif

/* A file region's chunk holds this in its data. */
struct evn__file {
    int fd;     /* evn's own: a duplicate, or the application's handed over */
    off_t base; /* file offset of the region's first byte */
};

/* One TLS record's worth of plaintext per piece. */
#define EVN__FILE_PIECE (16 * 1024)

/* The chunk's done callback: evn no longer needs its descriptor (its
 * duplicate, or the one handed over), whether the region was sent or not. */
static void file_done(void *buf, int status, void *arg)
{
    struct evn__file f;
    memcpy(&f, arg, sizeof f);
    close(f.fd);
}

/* Returns rc, closing an owned descriptor: no chunk holds it. */
static int refuse(int fd, bool owned, int rc)
{
    if (owned)
        close(fd);
    return rc;
}

int evn__file_chunk(int fd, off_t offset, size_t *length, bool owned, struct evn__chunk **chp)
{
    struct stat st;
    *chp = NULL;
    if (fd < 0)
        return -EINVAL;
    /* A descriptor that is not open (EBADF) is not closed: the number may
     * be another thread's file by the time it would be. */
    if (fstat(fd, &st) < 0)
        return errno == EBADF ? -EINVAL : refuse(fd, owned, -EINVAL);
    if (offset < 0 || !S_ISREG(st.st_mode) || offset > st.st_size)
        return refuse(fd, owned, -EINVAL);
    /* A duplicate's access mode is checked here; an owned descriptor's is
     * not (one system call less per file): one not open for reading fails
     * when its turn comes, closing the connection with -EBADF. */
    if (!owned) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY)
            return -EINVAL;
    }
    size_t avail = (size_t)(st.st_size - offset);
    if (*length == 0)
        *length = avail;
    if (*length > avail)
        return refuse(fd, owned, -EINVAL);
    if (*length == 0)
        return refuse(fd, owned, 0);
    struct evn__chunk *ch = evn__malloc(sizeof *ch + sizeof(struct evn__file));
    if (!ch)
        return refuse(fd, owned, -ENOMEM);
    struct evn__file f = {.fd = owned ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 0), .base = offset};
    if (f.fd < 0) {
        int e = errno;
        evn__free(ch);
        return -e;
    }
    memset(ch, 0, sizeof *ch);
    memcpy(ch->data, &f, sizeof f);
    ch->len = *length;
    ch->done = file_done;
    ch->arg = ch->data;
    *chp = ch;
    return 0;
}

/* pread once; a region that now lies past the end of the file is an error. */
static ssize_t read_piece(const struct evn__file *f, char *buf, size_t n, off_t pos)
{
    ssize_t r;
    do
        r = pread(f->fd, buf, n, pos);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        errno = EIO;
    return r > 0 ? r : -1;
}

#ifdef __linux__
/*
 * sendfile(2) has no MSG_NOSIGNAL: to a socket whose peer has gone it raises
 * SIGPIPE, which evn promises never to do. As for splice, the loop's thread
 * keeps SIGPIPE blocked from the first call until the loop ends, and one the
 * call raised is taken back: no system call per sendfile for the mask.
 */
static ssize_t sendfile_quiet(struct evn_loop *loop, int sock, int fd, off_t *pos, size_t n)
{
    evn__sigpipe_block(loop);
    ssize_t r = sendfile(sock, fd, pos, n);
    if (r < 0 && errno == EPIPE) {
        evn__sigpipe_take();
        errno = EPIPE;
    }
    return r;
}
#endif

ssize_t evn__file_send(struct evn_conn *c, struct evn__chunk *ch, size_t max, size_t *want)
{
    struct evn__file f;
    memcpy(&f, ch->data, sizeof f);
    off_t pos = f.base + (off_t)ch->off;
    size_t n = ch->len - ch->off;
    char *buf = c->loop->conns.rbuf;
    if (c->flags & EVN__C_XTP) {
        /* A retry after the socket was full must offer the same bytes again,
         * at least as many: the same piece is read again (max plays no part,
         * so that it cannot shrink). */
        ssize_t r = read_piece(&f, buf, n < EVN__FILE_PIECE ? n : EVN__FILE_PIECE, pos);
        if (r < 0)
            return -1;
        struct iovec iov = {buf, (size_t)r};
        return evn__conn_tp(c)->writev(c, &iov, 1, want);
    }
    if (n > max)
        n = max;
#ifdef __linux__
    *want = n;
    ssize_t r = sendfile_quiet(c->loop, c->io.fd, f.fd, &pos, n);
    if (r == 0) {
        errno = EIO;
        return -1;
    }
    return r;
#else
    if (n > c->loop->conns.rbuf_cap)
        n = c->loop->conns.rbuf_cap;
    ssize_t r = read_piece(&f, buf, n, pos);
    if (r < 0)
        return -1;
    struct iovec iov = {buf, (size_t)r};
    return evn__conn_tp(c)->writev(c, &iov, 1, want);
#endif
}

int evn__file_send_by_backend(struct evn_conn *c, struct evn__chunk *ch)
{
    struct evn__file f;
    memcpy(&f, ch->data, sizeof f);
    return c->loop->be->send_file(c->loop, &c->io, f.fd, (int64_t)f.base + (int64_t)ch->off,
                                  ch->len - ch->off);
}
