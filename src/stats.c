/*
 * Statistics: what each loop counts (struct evn__stats, written by the
 * loop's own thread only, see internal.h), read from any thread.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

static void add_loop(evn_stats *s, const struct evn_loop *loop)
{
    const struct evn__stats *l = &loop->stats;
#define READ(f) atomic_load_explicit(&l->f, memory_order_relaxed)
    /* On the loop's own thread the bytes counted this turn are there too;
     * another thread has those published at the end of the last one. */
    if (loop == evn__cur_loop) {
        s->bytes_in += l->in;
        s->bytes_out += l->out;
    } else {
        s->bytes_in += READ(bytes_in);
        s->bytes_out += READ(bytes_out);
    }
    s->conns_open += READ(open);
    s->conns_accepted += READ(accepted);
    s->conns_outbound += READ(outbound);
    s->conns_closed += READ(closed);
    s->refused_max_conns += READ(refused_max_conns);
    s->refused_tls += READ(refused_tls);
    s->refused_proxy += READ(refused_proxy);
    s->turns += READ(turns);
    s->events += READ(events);
    s->wait_ns += READ(wait_ns);
    s->work_ns += READ(work_ns);
    s->accept_gone += READ(accept_gone);
    s->accept_failed += READ(accept_failed);
#undef READ
}

int evn_server_stats_sized(const evn_server *srv, int loop, evn_stats *out, size_t size)
{
    if (!srv || !out || loop < EVN_STATS_ALL || loop >= srv->nloops)
        return -EINVAL;
    evn_stats s;
    memset(&s, 0, sizeof s);
    int first = loop == EVN_STATS_ALL ? 0 : loop;
    int end = loop == EVN_STATS_ALL ? srv->nloops : loop + 1;
    for (int i = first; i < end; i++)
        add_loop(&s, &srv->loops[i]);
    /* As much as the caller's struct holds; fields newer than this library
     * read 0. */
    if (size <= sizeof s) {
        memcpy(out, &s, size);
    } else {
        memcpy(out, &s, sizeof s);
        memset((char *)out + sizeof s, 0, size - sizeof s);
    }
    return 0;
}
