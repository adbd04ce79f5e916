/*
 * libuv-echo - an echo server written against libuv the way its guide shows
 * ("Networking", the tcp-echo-server example of docs.libuv.org): one loop,
 * uv_listen + uv_accept, uv_read_start with an alloc callback that mallocs the
 * suggested size, and a uv_write per read whose callback frees the buffer.
 *
 *   libuv-echo [--host ADDR] [--port N]
 *
 * ADDR is numeric, default "::" (IPv6 and IPv4, as evn's examples listen).
 * The only additions to the guide's code: TCP_NODELAY on every accepted
 * connection (uv_tcp_nodelay), as the floor and evn set it, the address and
 * port flags, and "port N" printed once listening.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define DEFAULT_BACKLOG 4096

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req_t;

static uv_loop_t *loop;

static void free_write_req(uv_write_t *req)
{
    write_req_t *wr = (write_req_t *)req;
    free(wr->buf.base);
    free(wr);
}

static void alloc_buffer(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    (void)handle;
    buf->base = malloc(suggested_size);
    buf->len = buf->base ? suggested_size : 0;
}

static void on_close(uv_handle_t *handle)
{
    free(handle);
}

static void echo_write(uv_write_t *req, int status)
{
    if (status)
        fprintf(stderr, "libuv-echo: write error %s\n", uv_strerror(status));
    free_write_req(req);
}

static void echo_read(uv_stream_t *client, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        write_req_t *req = malloc(sizeof *req);
        if (!req) {
            free(buf->base);
            uv_close((uv_handle_t *)client, on_close);
            return;
        }
        req->buf = uv_buf_init(buf->base, (unsigned int)nread);
        uv_write((uv_write_t *)req, client, &req->buf, 1, echo_write);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF && nread != UV_ECONNRESET)
            fprintf(stderr, "libuv-echo: read error %s\n", uv_err_name((int)nread));
        uv_close((uv_handle_t *)client, on_close);
    }
    free(buf->base);
}

static void on_new_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "libuv-echo: new connection error %s\n", uv_strerror(status));
        return;
    }
    uv_tcp_t *client = malloc(sizeof *client);
    if (!client)
        return;
    uv_tcp_init(loop, client);
    if (uv_accept(server, (uv_stream_t *)client) == 0) {
        uv_tcp_nodelay(client, 1);
        uv_read_start((uv_stream_t *)client, alloc_buffer, echo_read);
    } else {
        uv_close((uv_handle_t *)client, on_close);
    }
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
            fprintf(stderr, "usage: libuv-echo [--host ADDR] [--port N]\n");
            return 2;
        }
    }
    if (argc % 2 == 0) {
        fprintf(stderr, "usage: libuv-echo [--host ADDR] [--port N]\n");
        return 2;
    }

    loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        fprintf(stderr, "libuv-echo: bad address %s\n", host);
        return 2;
    }
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (!r)
        r = uv_listen((uv_stream_t *)&server, DEFAULT_BACKLOG, on_new_connection);
    if (r) {
        fprintf(stderr, "libuv-echo: listen error %s\n", uv_strerror(r));
        return 1;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    printf("port %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
