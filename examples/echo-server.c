/* echo-server: sends every byte back, over TCP, unix sockets and UDP. */
#include "common.h"

static evn_action on_data(evn_conn *c, const char *in, size_t len)
{
    evn_write(c, in, len);
    return EVN_NONE;
}

int main(int argc, char **argv)
{
    struct ex_opts o = {.port = 5000, .udp_port = -1, .loops = 1};
    ex_parse(argc, argv, &o, "echo-server", 1);
    evn_events ev = {.data = on_data};
    return ex_run("echo-server", &ev, &o);
}
