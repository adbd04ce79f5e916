/*
 * libevent-echo - an echo server written against libevent 2 the way its
 * documentation shows (the "simpler echo server with evconnlistener" of the
 * libevent book, chapter "Connection listeners"): an evconnlistener, one
 * bufferevent per connection, and a read callback that moves the input
 * buffer to the output buffer with evbuffer_add_buffer.
 *
 *   libevent-echo [--host ADDR] [--port N]
 *
 * ADDR is numeric, default "::" (IPv6 and IPv4, as evn's examples listen).
 * The only additions to the book's code: TCP_NODELAY on every accepted
 * connection, as the floor and evn set it, the address and port flags, and
 * "port N" printed once listening.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

static void echo_read_cb(struct bufferevent *bev, void *ctx)
{
    (void)ctx;
    /* This callback is invoked when there is data to read on bev. */
    struct evbuffer *input = bufferevent_get_input(bev);
    struct evbuffer *output = bufferevent_get_output(bev);
    /* Copy all the data from the input buffer to the output buffer. */
    evbuffer_add_buffer(output, input);
}

static void echo_event_cb(struct bufferevent *bev, short events, void *ctx)
{
    (void)ctx;
    if (events & BEV_EVENT_ERROR)
        perror("libevent-echo: error from bufferevent");
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void accept_conn_cb(struct evconnlistener *listener, evutil_socket_t fd,
                           struct sockaddr *address, int socklen, void *ctx)
{
    (void)address;
    (void)socklen;
    (void)ctx;
    /* We got a new connection! Set up a bufferevent for it. */
    struct event_base *base = evconnlistener_get_base(listener);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, echo_read_cb, NULL, echo_event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void accept_error_cb(struct evconnlistener *listener, void *ctx)
{
    (void)listener;
    (void)ctx;
    int err = EVUTIL_SOCKET_ERROR();
    fprintf(stderr, "libevent-echo: error %d (%s) on the listener\n", err,
            evutil_socket_error_to_string(err));
}

int main(int argc, char **argv)
{
    const char *host = "::";
    int port = 7000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) {
            host = argv[i + 1];
        } else if (!strcmp(argv[i], "--port")) {
            port = atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "usage: libevent-echo [--host ADDR] [--port N]\n");
            return 2;
        }
    }
    if (argc % 2 == 0) {
        fprintf(stderr, "usage: libevent-echo [--host ADDR] [--port N]\n");
        return 2;
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        len = sizeof *sin;
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        len = sizeof *sin6;
    } else {
        fprintf(stderr, "libevent-echo: bad address %s\n", host);
        return 2;
    }

    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "libevent-echo: could not open an event base\n");
        return 1;
    }
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, accept_conn_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
        (struct sockaddr *)&ss, (int)len);
    if (!listener) {
        perror("libevent-echo: could not create the listener");
        return 1;
    }
    evconnlistener_set_error_cb(listener, accept_error_cb);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&bound, &blen);
    printf("port %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    event_base_dispatch(base);
    evconnlistener_free(listener);
    event_base_free(base);
    return 0;
}
