/*
 * Other threads and a loop: the inbox, a mutex-guarded queue of messages
 * plus a descriptor that wakes the loop from its wait (an eventfd, or a
 * pipe), and the calls that post to it from any thread: evn_wake, evn_send
 * and evn_send_owned, and the acceptor handing a new connection to the loop
 * that will run it.
 *
 * Writes travel as ready-made output chunks, which the connection's loop
 * links onto the connection's queue without copying again. The inbox is
 * FIFO, so one thread's writes arrive in the order made.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#ifdef EVN_HAVE_EVENTFD
#include <sys/eventfd.h>
#endif

static void inbox_ready(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f);

static int open_wakefd(struct evn_loop *loop)
{
#ifdef EVN_HAVE_EVENTFD
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    loop->wake_io.fd = loop->wake_wfd = fd;
#else
    int p[2];
    int rc = evn__pipe_nb(p);
    if (rc < 0)
        return rc;
    loop->wake_io.fd = p[0];
    loop->wake_wfd = p[1];
#endif
    return 0;
}

int evn__inbox_init(struct evn_loop *loop)
{
    atomic_init(&loop->inbox_signalled, false);
    pthread_mutex_init(&loop->inbox_lock, NULL);
#ifdef _WIN32
    pthread_mutex_init(&loop->wake_lock, NULL);
#endif
    loop->wake_io.cb = inbox_ready;
    loop->wake_io.fd = loop->wake_wfd = -1;
    if (loop->be->wake)
        return 0;
    int rc = open_wakefd(loop);
    if (rc == 0)
        rc = evn__io_add(loop, &loop->wake_io, EVN__READ);
    return rc;
}

void evn__inbox_free(struct evn_loop *loop)
{
    /* A loop that never got here has nothing to free (its fields are 0). */
    if (!loop->wake_io.cb)
        return;
    /* Connections handed over but never opened are closed unseen. */
    for (size_t i = 0; i < loop->ninbox; i++) {
        if (loop->inbox[i].type == EVN__M_CONN)
            evn__sock_close(loop->inbox[i].fd);
        else if (loop->inbox[i].type == EVN__M_WRITE)
            evn__chunk_release(loop, loop->inbox[i].chunk, -ENOTCONN);
        /* EVN__M_RESOLVED: its job went with the resolver, freed first. */
    }
    if (loop->wake_io.fd >= 0)
        evn__sock_close(loop->wake_io.fd);
    if (loop->wake_wfd >= 0 && loop->wake_wfd != loop->wake_io.fd)
        evn__sock_close(loop->wake_wfd);
    loop->wake_io.fd = loop->wake_wfd = -1;
    pthread_mutex_destroy(&loop->inbox_lock);
#ifdef _WIN32
    pthread_mutex_destroy(&loop->wake_lock);
#endif
    evn__free(loop->inbox);
    evn__free(loop->inbox_spare);
}

void evn__loop_signal(struct evn_loop *loop)
{
    if (loop->be->wake) {
        loop->be->wake(loop);
        return;
    }
#ifdef EVN_HAVE_EVENTFD
    uint64_t one = 1;
    ssize_t r = evn__sock_write(loop->wake_wfd, &one, sizeof one);
#elif defined(_WIN32)
    /*
     * The pipe is a socket pair here, and Wine fails a non-blocking send
     * with WSAEWOULDBLOCK while another thread's send to the same socket is
     * under way, however empty the socket (tests/wine/send-race.c). The
     * byte lost so was the loop's only wake-up: inbox_signalled stays set,
     * no later post sends another, and the loop sleeps on its inbox for
     * good. One send at a time leaves a failure only to a socket truly
     * full, which has bytes to wake the loop.
     */
    char one = 1;
    pthread_mutex_lock(&loop->wake_lock);
    ssize_t r = evn__sock_write(loop->wake_wfd, &one, 1);
    pthread_mutex_unlock(&loop->wake_lock);
#else
    char one = 1;
    ssize_t r = evn__sock_write(loop->wake_wfd, &one, 1);
#endif
    /* A full pipe or counter already means "wake up". */
    (void)r;
}

static void clear_wakefd(struct evn_loop *loop)
{
    char buf[64];
    if (loop->wake_io.fd < 0)
        return;
#ifdef EVN_HAVE_EVENTFD
    ssize_t r = evn__sock_read(loop->wake_io.fd, buf, sizeof(uint64_t));
    (void)r;
#else
    while (evn__sock_read(loop->wake_io.fd, buf, sizeof buf) > 0)
        ;
#endif
}

int evn__loop_post(struct evn_loop *loop, const struct evn__msg *msg)
{
    bool signal = false;
    pthread_mutex_lock(&loop->inbox_lock);
    if (loop->ninbox == loop->inbox_cap) {
        size_t ncap = loop->inbox_cap ? loop->inbox_cap * 2 : 64;
        struct evn__msg *nb = evn__realloc(loop->inbox, sizeof *nb * ncap);
        if (!nb) {
            pthread_mutex_unlock(&loop->inbox_lock);
            return -ENOMEM;
        }
        loop->inbox = nb;
        loop->inbox_cap = ncap;
    }
    loop->inbox[loop->ninbox++] = *msg;
    if (!atomic_load_explicit(&loop->inbox_signalled, memory_order_relaxed)) {
        atomic_store_explicit(&loop->inbox_signalled, true, memory_order_relaxed);
        signal = true;
    }
    pthread_mutex_unlock(&loop->inbox_lock);
    if (signal)
        evn__loop_signal(loop);
    return 0;
}

/*
 * Take the whole queue at once (swapping in the spare array, so the lock is
 * held for a moment only), then act on it. Wakes for one connection that
 * arrive in one batch merge into one data event.
 */
static void inbox_ready(struct evn_loop *loop, struct evn__io *io, const struct evn__fired *f)
{
    clear_wakefd(loop);
    pthread_mutex_lock(&loop->inbox_lock);
    struct evn__msg *msgs = loop->inbox;
    size_t n = loop->ninbox, cap = loop->inbox_cap;
    loop->inbox = loop->inbox_spare;
    loop->inbox_cap = loop->spare_cap;
    loop->ninbox = 0;
    atomic_store_explicit(&loop->inbox_signalled, false, memory_order_relaxed);
    pthread_mutex_unlock(&loop->inbox_lock);
    loop->inbox_spare = msgs;
    loop->spare_cap = cap;

    for (size_t i = 0; i < n; i++) {
        struct evn_conn *c;
        if (msgs[i].type == EVN__M_WAKE && (c = evn__conn_lookup(loop, msgs[i].arg)))
            c->flags |= EVN__C_WOKEN;
    }
    for (size_t i = 0; i < n; i++) {
        struct evn_conn *c;
        switch (msgs[i].type) {
        case EVN__M_CONN:
            evn__conn_accepted(loop, msgs[i].fd, (uint16_t)msgs[i].arg, &msgs[i].peer,
                               msgs[i].peerlen);
            break;
        case EVN__M_WRITE:
            if ((c = evn__conn_lookup(loop, msgs[i].arg)))
                evn__conn_queue_chunk(c, msgs[i].chunk);
            else
                evn__chunk_release(loop, msgs[i].chunk, -ENOTCONN);
            break;
        case EVN__M_WAKE:
            if ((c = evn__conn_lookup(loop, msgs[i].arg)) && (c->flags & EVN__C_WOKEN)) {
                c->flags &= (uint32_t)~EVN__C_WOKEN;
                evn__conn_wake(c);
            }
            break;
#ifndef EVN_HAVE_CARES
        case EVN__M_RESOLVED:
            evn__mech_posted(loop, (void *)(uintptr_t)msgs[i].arg);
            break;
#endif
        }
    }
}

/* The loop an id names, if it can be this server's: -EINVAL if not, or
 * -ESHUTDOWN if the server is stopping. */
static int id_loop(evn_server *srv, evn_id id, struct evn_loop **loop)
{
    unsigned li = evn__id_loop(id);
    if (!srv || evn__id_seq(id) == 0 || li >= (unsigned)srv->nloops)
        return -EINVAL;
    if (atomic_load_explicit(&srv->stopping, memory_order_acquire))
        return -ESHUTDOWN;
    *loop = &srv->loops[li];
    return 0;
}

int evn_wake(evn_server *srv, evn_id id)
{
    struct evn_loop *loop;
    int rc = id_loop(srv, id, &loop);
    if (rc < 0)
        return rc;
    struct evn__msg m = {.type = EVN__M_WAKE, .fd = -1, .arg = id};
    return evn__loop_post(loop, &m);
}

static int post_chunk(evn_server *srv, evn_id id, struct evn__chunk *ch)
{
    struct evn_loop *loop;
    int rc = id_loop(srv, id, &loop);
    if (rc == 0 && evn__cur_loop == loop) {
        /* On the connection's own loop: queue it now, so it keeps its place
         * among this thread's evn_write calls. */
        struct evn_conn *c = evn__conn_lookup(loop, id);
        if (c)
            evn__conn_queue_chunk(c, ch);
        else
            evn__chunk_release(loop, ch, -ENOTCONN);
        return 0;
    }
    if (rc == 0) {
        struct evn__msg m = {.type = EVN__M_WRITE, .fd = -1, .arg = id, .chunk = ch};
        rc = evn__loop_post(loop, &m);
    }
    if (rc < 0) {
        if (ch->done)
            ch->done(ch->buf, rc, ch->arg);
        evn__free(ch);
    }
    return rc;
}

int evn_send(evn_server *srv, evn_id id, const void *buf, size_t len)
{
    if (!srv || (!buf && len))
        return -EINVAL;
    if (len == 0)
        return 0;
    struct evn__chunk *ch = evn__malloc(sizeof *ch + len);
    if (!ch)
        return -ENOMEM;
    memset(ch, 0, sizeof *ch);
    ch->buf = ch->data;
    ch->len = ch->cap = len;
    memcpy(ch->data, buf, len);
    return post_chunk(srv, id, ch);
}

int evn_send_owned(evn_server *srv, evn_id id, void *buf, size_t len,
                   void (*done)(void *buf, int status, void *arg), void *arg)
{
    if (!srv || (!buf && len)) {
        if (done)
            done(buf, -EINVAL, arg);
        return -EINVAL;
    }
    if (len == 0) {
        if (done)
            done(buf, 0, arg);
        return 0;
    }
    struct evn__chunk *ch = evn__malloc(sizeof *ch);
    if (!ch) {
        if (done)
            done(buf, -ENOMEM, arg);
        return -ENOMEM;
    }
    memset(ch, 0, sizeof *ch);
    ch->buf = buf;
    ch->len = len;
    /* cap 0 keeps evn_write from appending into the application's buffer. */
    ch->done = done;
    ch->arg = arg;
    return post_chunk(srv, id, ch);
}
