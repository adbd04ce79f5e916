#include <evn.h>
#include <stdio.h>
#include <string.h>

/* Echo every byte back; "quit" on its own closes the connection. */
static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    if (len >= 4 && memcmp(in, "quit", 4) == 0)
        return EVN_CLOSE;
    evn_write(c, in, len);
    return EVN_NONE;
}

int main(void)
{
    evn_events ev = {.data = on_data, .nloops = -1};
    const char *addrs[] = {"tcp://:5000", "unix:///tmp/echo.sock"};
    int rc = evn_serve(&ev, addrs, 2);
    if (rc < 0)
        fprintf(stderr, "evn: %s (%s)\n", evn_errmsg(), evn_strerror(rc));
    return rc < 0;
}
