#!/usr/bin/env python3
"""http-server with --tls-cert/--tls-key/--tls-port 0, driven over TLS by
curl (verifying the certificate, two URLs on one connection, a POST to
/echo), Python's ssl and http.client, wrk, and openssl s_client (verified,
and TLS 1.1 refused); then plain text, garbage and a client hanging up
mid-handshake on the TLS port, each followed by a TLS and a plain request.

    test_tls_http.py HTTP_SERVER     (EVN_BACKEND picks the backend)
"""

import http.client
import os
import re
import socket
import ssl
import subprocess
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evnserver import (IO_TIMEOUT, TOOL_TIMEOUT, check, client_context,  # noqa: E402
                       client_hello, need_tool, read_to_close, start_tls, tls_connect,
                       tls_main)

HELLO = b"Hello World!\r\n"


def https_get(port, cafile, path="/", conn=None):
    c = conn or http.client.HTTPSConnection("localhost", port, timeout=IO_TIMEOUT,
                                            context=client_context(cafile))
    c.request("GET", path)
    r = c.getresponse()
    return c, r.status, r.read()


def plain_get(port):
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_to_close(s) or b""


def still_serving(srv, cafile, after):
    tls, tcp = srv.port_of("tls"), srv.port_of("tcp")
    try:
        c, status, body = https_get(tls, cafile)
        c.close()
        ok = status == 200 and body == HELLO
    except (OSError, http.client.HTTPException) as e:
        ok = False
        print(f"     TLS request failed: {e!r}")
    check(ok, f"after {after}: a TLS request still gets 200")
    check(plain_get(tcp).startswith(b"HTTP/1.1 200"), f"after {after}: the plain port still serves")


def test_curl(srv, cert):
    curl = need_tool("curl", "curl")
    if not curl:
        return
    port = srv.port_of("tls")
    r = subprocess.run([curl, "-sS", "--cacert", cert, f"https://localhost:{port}/"],
                       capture_output=True, timeout=TOOL_TIMEOUT)
    check(r.returncode == 0 and r.stdout == HELLO,
          f"curl --cacert https://localhost:{port}/ verifies and gets Hello World "
          f"(rc {r.returncode}, {r.stderr.decode(errors='replace').strip()})")
    r = subprocess.run([curl, "-sS", "-v", "--cacert", cert, f"https://127.0.0.1:{port}/",
                        f"https://127.0.0.1:{port}/"],
                       capture_output=True, timeout=TOOL_TIMEOUT)
    err = r.stderr.decode(errors="replace")
    check(r.returncode == 0 and r.stdout == HELLO * 2, "curl, two URLs: two responses")
    check(bool(re.search(r"Re-using existing connection|Reusing existing connection", err))
          and err.count("SSL connection using") == 1,
          "curl, two URLs: one TLS connection, kept alive and reused")
    body = os.urandom(100000).hex().encode()
    r = subprocess.run([curl, "-sS", "--cacert", cert, "--data-binary", "@-",
                        f"https://localhost:{port}/echo"],
                       input=body, capture_output=True, timeout=TOOL_TIMEOUT)
    check(r.returncode == 0 and r.stdout == body, "curl POST /echo over TLS: 200 kB body echoed")


def test_python(srv, cert):
    port = srv.port_of("tls")
    c, status, body = https_get(port, cert)
    check(status == 200 and body == HELLO, "http.client over ssl (hostname checked): GET /")
    sock = c.sock
    c.request("POST", "/echo", body=b"tls body", headers={"Content-Type": "text/plain"})
    r = c.getresponse()
    check(r.status == 200 and r.read() == b"tls body", "http.client: POST /echo on the same connection")
    check(c.sock is sock, "http.client: keep-alive kept the one TLS connection")
    check(sock.version() in ("TLSv1.2", "TLSv1.3"), f"negotiated {sock.version()}")
    c.close()
    with tls_connect(port, cert) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        data = read_to_close(s) or b""
        check(data.count(b"HTTP/1.1 200") == 1 and data.count(b"HTTP/1.1 404") == 1,
              "two pipelined requests in one TLS write: 200 then 404, then closed")


def test_wrk(srv):
    wrk = need_tool("wrk", "wrk")
    if not wrk:
        return
    r = subprocess.run([wrk, "-t1", "-c10", "-d1s", f"https://127.0.0.1:{srv.port_of('tls')}/"],
                       capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    m = re.search(r"(\d+) requests in", r.stdout)
    n = int(m.group(1)) if m else 0
    errors = re.search(r"Socket errors:.*", r.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    check(r.returncode == 0 and n > 0 and not errors and not non2xx,
          f"wrk -t1 -c10 -d1s over TLS: {n} requests, "
          f"{errors.group(0) if errors else 'no socket errors'}, "
          f"{non2xx.group(0) if non2xx else 'all 2xx'}")


def test_s_client(srv, cert):
    openssl = need_tool("openssl", "openssl")
    if not openssl:
        return
    port = srv.port_of("tls")
    r = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", cert,
                        "-servername", "localhost", "-verify_hostname", "localhost", "-ign_eof"],
                       input=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       capture_output=True, timeout=TOOL_TIMEOUT)
    out = r.stdout.decode(errors="replace")
    check("Verify return code: 0 (ok)" in out, "openssl s_client -CAfile: Verify return code: 0")
    check("HTTP/1.1 200 OK" in out and "Hello World!" in out, "openssl s_client: the request is answered")
    # The client's own security level would refuse TLS 1.1 before sending
    # anything; level 0 makes it ask, so that the refusal is the server's.
    for flags in (["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], ["-no_tls1_2", "-no_tls1_3",
                                                                 "-cipher", "DEFAULT@SECLEVEL=0"]):
        r = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", cert,
                            *flags], input=b"", capture_output=True, timeout=TOOL_TIMEOUT)
        both = (r.stdout + r.stderr).decode(errors="replace")
        # The server's answer is a protocol_version alert (70) and no cipher.
        check(r.returncode != 0 and "Cipher is (NONE)" in both
              and "alert protocol version" in both,
              f"openssl s_client {' '.join(flags[:2])}: refused (TLS 1.2 minimum)")


def test_bad_input(srv, cert):
    port = srv.port_of("tls")
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_to_close(s)
        check(data is not None and b"HTTP/1.1" not in data,
              "plain-text HTTP to the TLS port: closed without an HTTP answer")
    still_serving(srv, cert, "plain text on the TLS port")

    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(os.urandom(8192))
        check(read_to_close(s) is not None, "8 kB of random bytes to the TLS port: closed")
    still_serving(srv, cert, "garbage on the TLS port")

    # A handshake record of the right type and version but torn to pieces.
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"\x16\x03\x01\x00\x30" + b"\x01\x00\x00\x2c" + os.urandom(44))
        check(read_to_close(s) is not None, "a malformed ClientHello: closed")
    still_serving(srv, cert, "a malformed ClientHello")

    hello = client_hello()
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(hello[: len(hello) // 2])
    still_serving(srv, cert, "a client hanging up mid-handshake")

    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(hello[: len(hello) // 2])
        s.shutdown(socket.SHUT_WR)
        check(read_to_close(s) is not None, "half a ClientHello then end of input: closed")
    still_serving(srv, cert, "half a ClientHello and end of input")

    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(hello)
        s.recv(1)
    still_serving(srv, cert, "a client hanging up after the server's first flight")

    # A client that does not trust the certificate gives up mid-handshake.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as raw:
            with ssl.create_default_context().wrap_socket(raw, server_hostname="localhost"):
                pass
        check(False, "a client without the CA refuses the certificate")
    except ssl.SSLCertVerificationError:
        check(True, "a client without the CA refuses the certificate")
    still_serving(srv, cert, "a client rejecting the certificate")


def run(binaries, d, cert, key):
    srv = start_tls(binaries[0], cert, key, "--tls-port", "0")
    if not srv:
        return
    test_curl(srv, cert)
    test_python(srv, cert)
    test_wrk(srv)
    test_s_client(srv, cert)
    test_bad_input(srv, cert)
    still_serving(srv, cert, "everything")
    srv.stop_ok("http-server over TLS")


if __name__ == "__main__":
    tls_main(run, 1, __doc__)
