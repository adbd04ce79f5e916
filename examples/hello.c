#include <evn.h>
#include <stdio.h>
#include <string.h>

/* Echo each line; "quit" closes. Input comes in pieces of any size, so an
 * unfinished line is kept and handed back with what follows it. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    const char *nl;
    while ((nl = memchr(in, '\n', len)) != NULL) {
        size_t n = (size_t)(nl - in) + 1;
        if ((n == 5 || (n == 6 && in[4] == '\r')) && memcmp(in, "quit", 4) == 0)
            return EVN_CLOSE;
        evn_write(c, in, n);
        in += n, len -= n;
    }
    if (len > 4096) /* no line is that long: a client to turn away */
        return EVN_CLOSE;
    evn_keep(c, len);
    return EVN_NONE;
}

int main(int argc, char **argv)
{
    evn_events ev = {.data = on_data, .nloops = -1};
    const char *addr = argc > 1 ? argv[1] : "tcp://:5000";
    int rc = evn_serve(&ev, &addr, 1);
    if (rc < 0)
        fprintf(stderr, "evn: %s (%s)\n", evn_errmsg(), evn_strerror(rc));
    return rc < 0;
}
