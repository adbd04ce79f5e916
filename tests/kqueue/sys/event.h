/*
 * The kqueue(2) interface as FreeBSD (12 and later) declares it, written for
 * evn from the manual page, for systems that have no <sys/event.h>: with
 * -I tests/kqueue, src/backend_kqueue.c compiles on Linux, so a change to the
 * backend interface cannot break it unseen; with tests/kqueue/kqueue-emu.c
 * linked in (cmake -DEVN_KQUEUE_EMULATION=ON) it also runs.
 *
 * Only what evn and the emulation need is here: the read, write and user
 * filters, every flag of the change list, and the EVFILT_USER notes. The
 * numbers are FreeBSD's, so that a value printed in a test reads the same as
 * on a BSD.
 */
#ifndef EVN_TESTS_SYS_EVENT_H
#define EVN_TESTS_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

/* Filters: what a kevent waits for. */
#define EVFILT_READ (-1)  /* a descriptor has input (or, listening, a connection) */
#define EVFILT_WRITE (-2) /* a descriptor can take output */
#define EVFILT_USER (-11) /* triggered by a kevent call with NOTE_TRIGGER */

/* Actions (in a change) and the flags a knote keeps. */
#define EV_ADD 0x0001      /* add, or modify an existing (ident, filter) */
#define EV_DELETE 0x0002   /* remove; ENOENT if there is none */
#define EV_ENABLE 0x0004   /* let it be returned again */
#define EV_DISABLE 0x0008  /* keep it, but do not return it */
#define EV_ONESHOT 0x0010  /* delete it once it has been returned */
#define EV_CLEAR 0x0020    /* reset its state once it has been returned */
#define EV_RECEIPT 0x0040  /* report every change as an EV_ERROR entry */
#define EV_DISPATCH 0x0080 /* disable it once it has been returned */

/* Returned flags. */
#define EV_ERROR 0x4000 /* a change failed (or EV_RECEIPT): data holds the errno */
#define EV_EOF 0x8000   /* end of file; fflags may hold the socket error */

/* EVFILT_READ and EVFILT_WRITE: data holds a low-water mark. */
#define NOTE_LOWAT 0x0001

/* EVFILT_USER: the low 24 bits of fflags are the application's, and the
 * control bits say what to do with them; NOTE_TRIGGER fires the event. */
#define NOTE_FFNOP 0x00000000u      /* leave them */
#define NOTE_FFAND 0x40000000u      /* AND them with the given bits */
#define NOTE_FFOR 0x80000000u       /* OR the given bits in */
#define NOTE_FFCOPY 0xc0000000u     /* replace them */
#define NOTE_FFCTRLMASK 0xc0000000u /* the control bits */
#define NOTE_FFLAGSMASK 0x00ffffffu /* the application's bits */
#define NOTE_TRIGGER 0x01000000u

struct kevent {
    uintptr_t ident;      /* what it is about: a descriptor, or the application's number */
    short filter;         /* EVFILT_* */
    unsigned short flags; /* EV_* */
    unsigned int fflags;  /* filter-specific flags (NOTE_*) */
    int64_t data;         /* filter-specific data */
    void *udata;          /* passed back unchanged */
    uint64_t ext[4];      /* extensions; zero */
};

/* Fill in a kevent; the extensions are zeroed. kev is evaluated once. */
#define EV_SET(kevp, a, b, c, d, e, f)                                                             \
    do {                                                                                           \
        struct kevent *ev_set_p_ = (kevp);                                                         \
        ev_set_p_->ident = (a);                                                                    \
        ev_set_p_->filter = (b);                                                                   \
        ev_set_p_->flags = (c);                                                                    \
        ev_set_p_->fflags = (d);                                                                   \
        ev_set_p_->data = (e);                                                                     \
        ev_set_p_->udata = (f);                                                                    \
        ev_set_p_->ext[0] = ev_set_p_->ext[1] = ev_set_p_->ext[2] = ev_set_p_->ext[3] = 0;         \
    } while (0)

/* A new, empty kernel event queue: a descriptor, or -1 with errno. */
int kqueue(void);

/*
 * Apply the nchanges changes, then return up to nevents pending events,
 * waiting at most *timeout (NULL: without limit; zero: not at all). Returns
 * the number of entries placed in eventlist, 0 when the time ran out, or -1
 * with errno.
 */
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout);

#endif
