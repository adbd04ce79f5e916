#!/usr/bin/env python3
"""The other examples take the --tls-* flags too: http-workers answers over
TLS (its answers come from worker threads through evn_send), and tcp-proxy
terminates TLS in front of a plain echo-server.

    test_tls_others.py HTTP_WORKERS TCP_PROXY ECHO_SERVER
"""

import os
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evnserver import (Server, check, exchange, read_to_close, tls_connect,  # noqa: E402
                       tls_main)


def test_workers(binary, cert, key):
    srv = Server(binary, "--tls-cert", cert, "--tls-key", key, "--workers", "2")
    port = srv.port_of("tls")
    check(port is not None, f"http-workers prints its TLS address {srv.urls}")
    if port is not None:
        with tls_connect(port, cert) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = read_to_close(s) or b""
            check(data.startswith(b"HTTP/1.1 200"), "http-workers: GET / over TLS, 200")
    srv.stop_ok("http-workers over TLS")


def test_proxy(proxy, echo, cert, key):
    backend = Server(echo)
    port = backend.port_of("tcp")
    # Server adds --port 0; --listen gives the proxy a second plain address.
    srv = Server(proxy, "--listen", "tcp://127.0.0.1:0", "--backend", f"tcp://127.0.0.1:{port}",
                 "--tls-cert", cert, "--tls-key", key)
    tls = srv.port_of("tls")
    check(tls is not None, f"tcp-proxy prints its TLS address {srv.urls}")
    if tls is not None:
        with tls_connect(tls, cert) as s:
            msg = os.urandom(300000)
            check(exchange(s, msg, len(msg)) == msg,
                  "tcp-proxy: 300 kB over TLS, relayed to a plain echo-server and back")
    srv.stop_ok("tcp-proxy over TLS")
    backend.stop_ok("echo-server behind the proxy")


def run(binaries, d, cert, key):
    workers, proxy, echo = binaries
    test_workers(workers, cert, key)
    test_proxy(proxy, echo, cert, key)


if __name__ == "__main__":
    tls_main(run, 3, __doc__)
