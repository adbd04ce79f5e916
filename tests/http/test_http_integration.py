#!/usr/bin/env python3
"""The HTTP example server, driven through its real binary.

    test_http_integration.py --server build/examples/http-server [--backend poll]

Starts the server on an ephemeral port (--port 0, the port read from the line
it prints) and checks, over raw sockets: every route and status (200, 404,
501, 400, 408, 413, 414, 431, 501 for a transfer coding), HEAD, keep-alive,
HTTP/1.0 with and without keep-alive, Connection: close, pipelined requests
in one write answered in order, chunked uploads, 100-continue, bodies and
heads split across many small writes, seeded damaged requests, a client
slow to read a flood of pipelined requests, the idle and request time-outs,
GET /ip, alone and behind PROXY headers (proxy=, raw and from curl's
--haproxy-protocol); then with real clients: curl, wrk, ab and h2load. Also its flags, a unix
socket, two loops, and that SIGTERM and SIGINT stop it with status 0 (which
under AddressSanitizer also means no leak).

In the Windows build the .exe runs under Wine and is stopped with Ctrl-C
(a SIGINT, which Wine delivers as one); the unix socket and --reuseport
parts skip there, saying why.

A missing client fails the run unless EVN_ALLOW_MISSING_CLIENTS=1, so that a
machine without it cannot pass silently. Debian's python3 only.

Nothing here waits by sleeping: each step waits for the bytes it expects, and
the socket time-out (IO_TIMEOUT) only turns a hang into a failure.
"""

import argparse
import email.utils
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evnserver  # noqa: E402
# Each test here is a function that stops at its first failed expectation
# (check and eq raise Failure), run and counted by record().
from evnserver import (IO_TIMEOUT, TOOL_TIMEOUT, Failure, connect,  # noqa: E402
                       finish, main_guard, missing, record, require as check,
                       require_eq as eq)

HELLO = b"Hello World!\r\n"
DATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d\d:\d\d:\d\d GMT$"
)
PACKAGES = {"curl": "curl", "wrk": "wrk", "ab": "apache2-utils", "h2load": "nghttp2-client"}


# ---- the server ----


class Server(evnserver.Server):
    """The HTTP example on ephemeral ports; stop() must see status 0."""

    def __init__(self, binary, backend, *extra):
        super().__init__(binary, *extra, backend=backend)
        check(self.port, f"no 'listening on tcp://[::]:PORT' line in {self.urls!r}")

    def stop(self, sig=None):
        """Stop with sig (default: the graceful stop); the server must exit 0
        (and, under ASan, leak nothing)."""
        sig = evnserver.STOP_SIGNAL if sig is None else sig
        eq(super().stop(sig), 0, f"exit status after {evnserver.signal_name(sig)}")


# ---- a raw client ----


class Response:
    def __init__(self, status, reason, headers, body, raw):
        self.status, self.reason, self.headers, self.body, self.raw = (
            status,
            reason,
            headers,
            body,
            raw,
        )

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        check(len(vals) <= 1, f"header {name} repeated: {self.raw!r}")
        return vals[0] if vals else None


class Conn:
    def __init__(self, port=None, path=None):
        self.s = connect(port, path=path)
        # A bytearray, appended to in place: test_flow_control reads 25 MB in
        # one read_exact, and bytes += would copy all of it for every recv.
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.s.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def send_bytewise(self, data):
        """One send per byte (TCP_NODELAY: one segment each, as far as the
        kernel is concerned); the server may read them in any grouping."""
        for i in range(len(data)):
            self.s.sendall(data[i : i + 1])

    def _fill(self):
        try:
            data = self.s.recv(65536)
        except socket.timeout:
            raise Failure(f"no reply within {IO_TIMEOUT} s; have {bytes(self.buf[:200])!r}")
        if not data:
            raise Failure(f"connection closed; have {bytes(self.buf[:200])!r}")
        self.buf += data

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, sep):
        start = 0
        while (i := self.buf.find(sep, start)) < 0:
            start = max(0, len(self.buf) - len(sep) + 1)
            self._fill()
        return self._take(i + len(sep))

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        return self._take(n)

    def response(self, head=False):
        """One response: status line, fields, a Content-Length body (none for
        HEAD or 1xx). The server always frames with Content-Length."""
        raw = self.read_until(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d\d\d) (.*)$", lines[0])
        check(m, f"bad status line {lines[0]!r}")
        status = int(m.group(1))
        headers = []
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            check(sep and k and k == k.strip(), f"bad header line {line!r}")
            headers.append((k, v.strip()))
        r = Response(status, m.group(2), headers, b"", raw)
        if status >= 200:
            cl = r.header("Content-Length")
            check(cl is not None and cl.isdigit(), f"no Content-Length in {raw!r}")
            if not head:
                r.body = self.read_exact(int(cl))
        return r

    def expect_closed(self):
        """The server closes: EOF (or a reset, when it closed with input
        unread) and no further bytes."""
        while True:
            try:
                data = self.s.recv(65536)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                raise Failure("connection still open")
            if not data:
                break
            self.buf += data
        eq(bytes(self.buf), b"", "bytes after the last response")


def request(port, data, head=False):
    with Conn(port) as c:
        c.send(data)
        return c.response(head)


def check_common(r):
    eq(r.header("Server"), "evn", "Server header")
    date = r.header("Date")
    check(date and DATE_RE.match(date), f"Date header {date!r}")
    # The formatting, not the clock: the date is today's, give or take.
    delta = abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time())
    check(delta < 3600, f"Date {date!r} is {delta:.0f} s from now")


def check_hello(r, head=False):
    eq(r.status, 200, "status")
    eq(r.reason, "OK", "reason")
    eq(r.header("Content-Length"), "14", "Content-Length")
    eq(r.header("Content-Type"), "text/plain", "Content-Type")
    eq(r.body, b"" if head else HELLO, "body")
    check_common(r)


def check_error(port, data, status, what=""):
    """Send data on a new connection: the answer is status, then the close."""
    with Conn(port) as c:
        c.send(data)
        r = c.response()
        eq(r.status, status, f"status for {what or data[:60]!r}")
        eq(r.header("Connection"), "close", f"Connection header for {what or data[:60]!r}")
        check_common(r)
        c.expect_closed()


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def post(path, body, extra=b""):
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


def chunked(payload, size=7, ext=b"", trailers=b""):
    out = b""
    for i in range(0, len(payload), size):
        piece = payload[i : i + size]
        out += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
    return out + b"0\r\n" + trailers + b"\r\n"


def post_chunked(path, payload, **kw):
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(payload, **kw)
    )


ALL_BYTES = bytes(range(256)) * 4


# ---- raw-socket tests; each gets the main server (default limits) ----


def test_get_root(srv):
    with Conn(srv.port) as c:
        c.send(GET)
        r = c.response()
        check_hello(r)
        eq(r.header("Connection"), None, "Connection header on HTTP/1.1 keep-alive")
        # Still open: a second request on the same connection.
        c.send(b"GET /?q=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        check_hello(c.response())


def test_head(srv):
    with Conn(srv.port) as c:
        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        check_hello(c.response(head=True), head=True)
        # No body was sent: the next bytes are the next response.
        c.send(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.response(head=True)
        eq(r.status, 404, "HEAD /nope")
        c.send(GET)
        check_hello(c.response())


def test_echo(srv):
    with Conn(srv.port) as c:
        for body in (b"hello world", b"", ALL_BYTES, b"x" * 100000):
            c.send(post(b"/echo", body))
            r = c.response()
            eq(r.status, 200, "echo status")
            eq(r.body, body, "echo body")
            eq(r.header("Content-Length"), str(len(body)), "echo Content-Length")
            check_common(r)


def test_not_found(srv):
    with Conn(srv.port) as c:
        for req in (
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
            post(b"/", b"body"),
            post(b"/echo/more", b"body"),
            b"DELETE / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
        ):
            c.send(req)
            r = c.response()
            eq(r.status, 404, f"status for {req[:30]!r}")
            eq(r.body, b"Not Found\r\n", "404 body")
            eq(r.header("Connection"), None, "404 keeps the connection")
        c.send(GET)
        check_hello(c.response())


def test_unknown_method(srv):
    with Conn(srv.port) as c:
        c.send(b"BREW /pot HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        r = c.response()
        eq(r.status, 501, "unknown method")
        eq(r.header("Connection"), None, "501 for a method keeps the connection")
        # Its body was read past: the next request parses.
        c.send(GET)
        check_hello(c.response())


def test_absolute_form(srv):
    r = request(srv.port, b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
    check_hello(r)
    r = request(srv.port, b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
    check_hello(r)


def test_bad_requests(srv):
    bad = [
        (b"GARBAGE\r\n\r\n", "no method"),
        (b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", "two spaces"),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", "version 2.0"),
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", "space before colon"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", "obs-fold"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", "NUL in value"),
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 without Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "two Hosts"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", "CL not a number"),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", "CL negative"),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "two CLs",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "CL and TE",
        ),
        (
            b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "TE in HTTP/1.0",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "chunked twice",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "bad chunk size",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabcX\r\n0\r\n\r\n",
            "chunk longer than its size",
        ),
    ]
    for data, what in bad:
        check_error(srv.port, data, 400, what)
    # A bad request after a good one, pipelined: the good one is answered.
    with Conn(srv.port) as c:
        c.send(GET + b"BAD\x01 / HTTP/1.1\r\n\r\n")
        check_hello(c.response())
        eq(c.response().status, 400, "pipelined bad request")
        c.expect_closed()


def test_head_limits(srv):
    # Just under 8 KiB of head is fine...
    filler = b"X-Filler: " + b"a" * 8000 + b"\r\n"
    r = request(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + filler + b"\r\n")
    check_hello(r)
    # ... over is 431, whether it is one field, many, or arrives in pieces.
    big = b"X-Big: " + b"a" * 9000 + b"\r\n"
    check_error(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + big + b"\r\n", 431, "one big field")
    many = b"".join(b"X-%d: v\r\n" % i for i in range(1200))
    check_error(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n", 431, "many fields")
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(150))
    check_error(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n", 431, "150 fields")
    with Conn(srv.port) as c:
        # No end in sight: the server answers once it has 8 KiB, without
        # waiting for the rest, which is never sent.
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: ")
        try:
            for _ in range(9):
                c.send(b"b" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may have answered and closed already
        r = c.response()
        eq(r.status, 431, "endless field")
        c.expect_closed()
    # A request line that long is a target too long.
    check_error(srv.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "long URI")


def test_body_limits(srv, small):
    # Default limit, 1 MiB: refused from the head alone, the body never sent.
    check_error(
        srv.port,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n",
        413,
        "CL over 1 MiB",
    )
    check_error(
        srv.port,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        413,
        "CL over 64 bits",
    )
    # Exactly the limit is fine.
    body = bytes(range(256)) * 4096
    r = request(srv.port, post(b"/echo", body))
    eq((r.status, r.body == body), (200, True), "1 MiB body")
    # A server started with --max-body 100.
    r = request(small.port, post(b"/echo", b"a" * 100))
    eq((r.status, r.body), (200, b"a" * 100), "body at the limit")
    check_error(small.port, post(b"/echo", b"a" * 101), 413, "CL over the limit")
    check_error(small.port, post(b"/nope", b"a" * 101), 413, "CL over the limit, 404 route")
    r = request(small.port, post_chunked(b"/echo", b"c" * 100, size=30))
    eq((r.status, r.body), (200, b"c" * 100), "chunked body at the limit")
    # One chunk that says it is too large: refused before its data.
    check_error(
        small.port,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n",
        413,
        "one chunk over the limit",
    )
    check_error(small.port, post_chunked(b"/echo", b"c" * 101, size=10), 413, "chunks over")


def test_transfer_codings(srv):
    for te in (b"gzip", b"gzip, chunked", b"deflate", b"identity"):
        check_error(
            srv.port,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + te + b"\r\n\r\n",
            501,
            b"Transfer-Encoding: " + te,
        )


def test_keep_alive_http11(srv):
    with Conn(srv.port) as c:
        for i in range(20):
            c.send(post(b"/echo", b"n%d" % i) if i % 2 else GET)
            r = c.response()
            eq(r.body, b"n%d" % i if i % 2 else HELLO, f"request {i}")
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        check_hello(c.response())


def test_http10(srv):
    # No keep-alive: answered, said, closed. No Host needed.
    with Conn(srv.port) as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.response()
        check_hello(r)
        eq(r.header("Connection"), "close", "HTTP/1.0 Connection header")
        c.expect_closed()
    # Keep-alive asked for (ab's way of writing it): kept until not asked.
    with Conn(srv.port) as c:
        for i in range(3):
            c.send(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: t\r\n\r\n")
            r = c.response()
            check_hello(r)
            eq(r.header("Connection"), "keep-alive", "HTTP/1.0 keep-alive answer")
        c.send(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi")
        r = c.response()
        eq((r.body, r.header("Connection")), (b"hi", "keep-alive"), "HTTP/1.0 echo")
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        eq(c.response().header("Connection"), "close", "last HTTP/1.0 request")
        c.expect_closed()


def test_connection_close(srv):
    with Conn(srv.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        r = c.response()
        check_hello(r)
        eq(r.header("Connection"), "close", "Connection header")
        c.expect_closed()
    with Conn(srv.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, CLOSE\r\n\r\n")
        eq(c.response().header("Connection"), "close", "close among other tokens")
        c.expect_closed()


def test_pipelined(srv):
    reqs = [
        (GET, HELLO, 200, False),
        (post(b"/echo", b"one"), b"one", 200, False),
        (b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n", b"Not Found\r\n", 404, False),
        (b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", b"", 200, True),
        (post_chunked(b"/echo", b"two, chunked", size=5), b"two, chunked", 200, False),
        (b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n", b"Not Implemented\r\n", 501, False),
        (post(b"/echo", ALL_BYTES), ALL_BYTES, 200, False),
        (b"\r\nGET /?last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", HELLO, 200, False),
    ]
    with Conn(srv.port) as c:
        c.send(b"".join(r[0] for r in reqs))
        for i, (_, body, status, head) in enumerate(reqs):
            r = c.response(head)
            eq((r.status, r.body), (status, body), f"pipelined response {i}")
        c.expect_closed()
    # Many at once, more than one read's worth.
    with Conn(srv.port) as c:
        c.send(GET * 2000)
        for i in range(2000):
            eq(c.response().body, HELLO, f"pipelined GET {i}")


def test_chunked_upload(srv):
    payload = b"The quick brown fox jumps over the lazy dog. " * 50
    for kw in ({}, {"size": 1}, {"size": 1000}, {"ext": b";name=value"},
               {"trailers": b"X-Checksum: 123\r\nX-More: a b\r\n"}):
        r = request(srv.port, post_chunked(b"/echo", payload, **kw))
        eq((r.status, r.body), (200, payload), f"chunked upload {kw}")
    r = request(srv.port, post_chunked(b"/echo", b""))
    eq((r.status, r.body), (200, b""), "empty chunked body")
    # A chunked body to a route that does not keep it is read past.
    with Conn(srv.port) as c:
        c.send(post_chunked(b"/nope", payload) + GET)
        eq(c.response().status, 404, "chunked body to 404")
        check_hello(c.response())


def test_split_writes(srv):
    # The head one byte per write.
    with Conn(srv.port) as c:
        c.send_bytewise(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        check_hello(c.response())
        c.send_bytewise(post(b"/echo", b"split body"))
        eq(c.response().body, b"split body", "echo split byte by byte")
    # 100-continue tells when the server holds the head and waits for the
    # body, which then comes one byte per write.
    body = b"0123456789" * 30
    with Conn(srv.port) as c:
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        eq(c.read_until(b"\r\n\r\n"), b"HTTP/1.1 100 Continue\r\n\r\n", "interim response")
        c.send_bytewise(body)
        r = c.response()
        eq((r.status, r.body), (200, body), "body split across writes")
    with Conn(srv.port) as c:
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        eq(c.read_until(b"\r\n\r\n"), b"HTTP/1.1 100 Continue\r\n\r\n", "interim response")
        c.send_bytewise(chunked(body, size=13, ext=b";x=1", trailers=b"T: v\r\n"))
        r = c.response()
        eq((r.status, r.body), (200, body), "chunked body split across writes")
    # A large body in pieces of a few hundred bytes.
    big = ALL_BYTES * 200
    with Conn(srv.port) as c:
        data = post(b"/echo", big)
        for i in range(0, len(data), 777):
            c.send(data[i : i + 777])
        eq(c.response().body, big, "large body in pieces")


def test_unix_socket(binary, backend, tmp):
    path = os.path.join(tmp, "http.sock")
    srv = Server(binary, backend, "--unixsocket", path)
    try:
        check(f"unix://{path}" in srv.urls, f"unix socket not listed in {srv.urls}")
        with Conn(path=path) as c:
            c.send(GET)
            check_hello(c.response())
    finally:
        srv.stop()
    check(not os.path.exists(path), "socket file left behind")


def test_flags(binary, backend):
    r = evnserver.run_program(binary, "--help", timeout=TOOL_TIMEOUT)
    eq(r.returncode, 0, "--help exit status")
    check(b"--max-body" in r.stdout and b"--port" in r.stdout, f"usage: {r.stdout!r}")
    for args in (["--bogus"], ["--port"], ["--port", "70000"], ["--max-body", "x"],
                 ["--max-body", "-1"], ["--max-body"], ["--balance", "sideways"],
                 ["--idle-timeout", "-5"], ["--idle-timeout", "soon"],
                 ["--request-timeout", "x"]):
        r = evnserver.run_program(binary, *args, timeout=TOOL_TIMEOUT)
        eq(r.returncode, 2, f"exit status for {args}")
        check(b"usage:" in r.stderr, f"no usage for {args}: {r.stderr!r}")


def test_sigint(binary, backend):
    srv = Server(binary, backend)
    check_hello(request(srv.port, GET))
    # A connection in the middle of a body when the signal comes: its state
    # is freed (an ASan build would report a leak, and exit non-zero).
    with Conn(srv.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
               b"Content-Length: 10\r\n\r\n")
        eq(c.read_until(b"\r\n\r\n"), b"HTTP/1.1 100 Continue\r\n\r\n", "interim response")
        c.send(b"half")
        srv.stop(signal.SIGINT)


def test_two_loops(binary, backend, clients):
    variants = [["--loops", "2", "--balance", "round-robin"]]
    if not evnserver.skip_on_windows("test_two_loops with --reuseport",
                                     "Windows has no SO_REUSEPORT"):
        variants.append(["--loops", "2", "--reuseport"])
    for extra in variants:
        srv = Server(binary, backend, *extra)
        try:
            for _ in range(8):
                check_hello(request(srv.port, GET))
            if "ab" in clients:
                run_ab(srv)
        finally:
            srv.stop()


def test_flow_control(srv):
    """Pipelined requests from a client that is slow to read: the server
    stops while evn says its output is full and picks up the rest once the
    client reads; every request is answered, in order. The client starts
    reading only after sending 512 KiB, by then more than the server may
    queue, so the pause is at least likely (the outcome is checked either way)."""
    import threading

    n = 200000
    data = GET * n
    with Conn(srv.port) as c:
        c.send(GET)
        size = len(c.response().raw) + len(HELLO)
        started = threading.Event()
        errors = []

        def sender():
            try:
                for i in range(0, len(data), 65536):
                    c.s.sendall(data[i : i + 65536])
                    if i >= 512 * 1024:
                        started.set()
            except OSError as e:
                errors.append(e)
            finally:
                started.set()

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        check(started.wait(IO_TIMEOUT), "sending stalled before 512 KiB")
        got = c.read_exact(size * n)
        t.join(IO_TIMEOUT)
        check(not t.is_alive() and not errors, f"sender: {errors}")
        eq(got.count(b"HTTP/1.1 200 OK\r\n"), n, "answers")
        eq(got.count(HELLO), n, "bodies")
        c.send(post(b"/echo", b"after"))
        eq(c.response().body, b"after", "the connection still works")


def get_ip(port, header=b""):
    """GET /ip on a new connection after header (a PROXY header, or
    nothing): the body, and the connection's own local port."""
    with Conn(port) as c:
        c.send(header + b"GET /ip HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.response()
        eq(r.status, 200, "GET /ip status")
        eq(r.header("Content-Type"), "text/plain", "GET /ip Content-Type")
        return r.body, c.s.getsockname()[1]


def test_ip(srv):
    """GET /ip answers with the client as evn sees it: on the dual-stack
    listener, an IPv4 client is a mapped IPv6 address."""
    body, port = get_ip(srv.port)
    eq(body, b"[::ffff:127.0.0.1]:%d\n" % port, "GET /ip")


def test_proxy_protocol(binary, backend):
    """--tcp-options proxy=...: GET /ip gives the client the PROXY header
    names; a connection without a header, or with one of the other version,
    is closed unanswered."""
    v1 = b"PROXY TCP4 203.0.113.9 192.0.2.1 5555 80\r\n"
    v2 = (b"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24"
          + socket.inet_pton(socket.AF_INET6, "2001:db8::9")
          + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + b"\x9c\x40\x01\xbb")
    srv = Server(binary, backend, "--tcp-options", "proxy=v1")
    anyv = Server(binary, backend, "--tcp-options", "proxy=any&proxy_timeout=60000")
    try:
        eq(get_ip(srv.port, v1)[0], b"203.0.113.9:5555\n", "GET /ip after a v1 header")
        eq(get_ip(anyv.port, v2)[0], b"[2001:db8::9]:40000\n", "GET /ip after a v2 header")
        eq(get_ip(anyv.port, v1)[0], b"203.0.113.9:5555\n", "proxy=any takes v1 too")
        for header, what in ((b"", "no header"), (v2, "a v2 header where v1 is wanted")):
            with Conn(srv.port) as c:
                c.send(header + GET)
                c.expect_closed()
        # The server's other connections go on.
        eq(get_ip(srv.port, v1)[0], b"203.0.113.9:5555\n", "GET /ip after refusals")
        if shutil.which("curl"):
            # curl's --haproxy-protocol sends a v1 header naming its own end.
            r = run(["curl", "-sS", "--haproxy-protocol", "-w", "|%{local_port}",
                     srv.url("/ip")], "curl --haproxy-protocol")
            body, _, port = r.stdout.partition(b"|")
            eq(body, b"127.0.0.1:" + port + b"\n", "curl --haproxy-protocol: GET /ip")
            r = subprocess.run(["curl", "-sS", srv.url("/ip")], capture_output=True,
                               timeout=TOOL_TIMEOUT)
            check(r.returncode != 0 and r.stdout == b"",
                  f"curl without the header is refused: {r.returncode} {r.stdout!r}")
    finally:
        srv.stop()
        anyv.stop()


def test_idle_timeout(binary, backend):
    srv = Server(binary, backend, "--idle-timeout", "200")
    try:
        with Conn(srv.port) as c:
            c.expect_closed()  # nothing sent: closed once idle
        with Conn(srv.port) as c:
            c.send(GET)
            check_hello(c.response())
            c.expect_closed()  # idle after an answer
    finally:
        srv.stop()


def test_request_timeout(binary, backend):
    """A request begun but not finished gets 408 and the close; a finished
    one disarms its deadline. The server's own clock orders the checks: a
    deadline armed earlier fires no later than one armed after it."""
    srv = Server(binary, backend, "--request-timeout", "300", "--idle-timeout", "0")
    try:
        with Conn(srv.port) as a, Conn(srv.port) as b:
            # A's deadline is armed once the server waits for the body (it
            # says 100 Continue then), and disarmed with the answer.
            a.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 2\r\n\r\n")
            eq(a.read_until(b"\r\n\r\n"), b"HTTP/1.1 100 Continue\r\n\r\n", "interim")
            a.send(b"ok")
            eq(a.response().body, b"ok", "echo")
            b.send(b"GET / HTTP/1.1\r\nHost: t\r\n")  # B's is armed after A's.
            r = b.response()
            eq((r.status, r.header("Connection")), (408, "close"), "unfinished head")
            b.expect_closed()
            # A's old deadline, had it been left armed, would have fired by now.
            a.send(GET)
            check_hello(a.response())
        with Conn(srv.port) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            eq(c.response().status, 408, "unfinished body")
            c.expect_closed()
        with Conn(srv.port) as c:
            c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nab")
            eq(c.response().status, 408, "unfinished chunked body")
            c.expect_closed()
    finally:
        srv.stop()


def parse_responses(data):
    """Split what a connection received into responses; fails on anything
    that is not a sequence of well-formed ones."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        check(end >= 0, f"truncated response head: {data[:200]!r}")
        lines = data[:end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d\d\d) ", lines[0])
        check(m, f"bad status line {lines[0]!r}")
        status = int(m.group(1))
        data = data[end + 4 :]
        if status == 100:
            continue
        cl = [v.strip() for k, _, v in (l.partition(":") for l in lines[1:])
              if k.lower() == "content-length"]
        check(len(cl) == 1, f"no Content-Length in {lines!r}")
        # A HEAD answer has no body: the next answer, or nothing, follows.
        # (No body the server sends here starts like a status line.)
        if data and not data.startswith(b"HTTP/1.1 "):
            n = int(cl[0])
            check(len(data) >= n, f"truncated body: {data!r}")
            data = data[n:]
        out.append(status)
    return out


def test_damaged_requests(srv):
    """Seeded damage to good requests, each on its own connection, half-closed
    after sending so that the server answers or gives up without waiting:
    whatever comes back must be well-formed responses, and the server must
    live through all of it."""
    import random

    rng = random.Random(int(os.environ.get("EVN_TEST_SEED", "1234")))
    seeds = [
        GET,
        post(b"/echo", b"hello world"),
        post_chunked(b"/echo", b"chunked body here", size=4, ext=b";e=1", trailers=b"T: 1\r\n"),
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
        GET + post(b"/echo", b"two") + GET,
    ]
    specials = b"\r\n :;,\t\x00\x7f\x80-0aF"
    rounds = 150 if os.environ.get("EVN_TEST_QUICK") else 400
    for i in range(rounds):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            op = rng.randrange(4)
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                data[at] = rng.choice(specials)
            elif op == 2:
                del data[at]
            else:
                data[at:at] = bytes([rng.choice(specials)]) * rng.choice((1, 1, 2, 50))
        with Conn(srv.port) as c:
            c.send(bytes(data))
            c.s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                try:
                    chunk = c.s.recv(65536)
                except ConnectionResetError:
                    break
                except socket.timeout:
                    raise Failure(f"round {i}: no close after {bytes(data)!r}")
                if not chunk:
                    break
                got += chunk
            try:
                parse_responses(got)
            except Failure as e:
                raise Failure(f"round {i}: {bytes(data)!r}: {e}")
    check_hello(request(srv.port, GET))


# ---- real clients ----


def run(cmd, what, input=None):
    r = subprocess.run(cmd, capture_output=True, timeout=TOOL_TIMEOUT, input=input)
    if r.returncode != 0:
        raise Failure(f"{what}: {cmd} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return r


def test_curl(srv, tmp):
    r = run(["curl", "-sS", "-i", srv.url()], "curl GET")
    check(r.stdout.startswith(b"HTTP/1.1 200 OK\r\n"), f"curl GET: {r.stdout!r}")
    check(r.stdout.endswith(b"\r\n\r\n" + HELLO), f"curl GET body: {r.stdout!r}")
    # Two URLs: curl reuses the connection.
    r = run(["curl", "-sS", "-v", srv.url(), srv.url()], "curl twice")
    eq(r.stdout, HELLO * 2, "curl twice")
    check(b"Re-using existing connection" in r.stderr, "curl did not reuse the connection")
    r = run(["curl", "-sS", "-i", "--http1.0", srv.url()], "curl --http1.0")
    check(r.stdout.startswith(b"HTTP/1.1 200 OK\r\n"), f"curl --http1.0: {r.stdout!r}")
    check(b"\r\nConnection: close\r\n" in r.stdout, f"curl --http1.0: {r.stdout!r}")
    r = run(["curl", "-sS", "-I", srv.url()], "curl -I")
    check(b"Content-Length: 14\r\n" in r.stdout, f"curl -I: {r.stdout!r}")
    r = run(["curl", "-sS", "-d", "name=evn&lang=C", srv.url("/echo")], "curl -d")
    eq(r.stdout, b"name=evn&lang=C", "curl -d")
    r = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", srv.url("/nope")], "404")
    eq(r.stdout, b"404", "curl 404")
    # -d @file drops line ends, so the file has none; over 1 KiB, so curl
    # sends Expect: 100-continue first.
    path = os.path.join(tmp, "upload.txt")
    text = b"".join(b"line %05d of the chunked upload;" % i for i in range(3000))
    with open(path, "wb") as f:
        f.write(text)
    r = run(["curl", "-sS", "-v", "-H", "Transfer-Encoding: chunked", "-d", "@" + path,
             srv.url("/echo")], "curl chunked upload")
    eq(r.stdout, text, "curl chunked upload")
    check(b"Transfer-Encoding: chunked" in r.stderr, "curl did not send chunked")
    # Every byte value, with --data-binary.
    path = os.path.join(tmp, "upload.bin")
    with open(path, "wb") as f:
        f.write(ALL_BYTES * 100)
    r = run(["curl", "-sS", "--data-binary", "@" + path, srv.url("/echo")], "curl binary")
    eq(r.stdout, ALL_BYTES * 100, "curl --data-binary")
    r = run(["curl", "-sS", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path,
             srv.url("/echo")], "curl chunked binary")
    eq(r.stdout, ALL_BYTES * 100, "curl chunked --data-binary")


def test_wrk(srv):
    r = run(["wrk", "-t1", "-c10", "-d1s", srv.url()], "wrk")
    out = r.stdout.decode()
    m = re.search(r"(\d+) requests in", out)
    check(m and int(m.group(1)) > 0, f"wrk made no requests:\n{out}")
    check("Non-2xx" not in out and "Socket errors" not in out, f"wrk saw errors:\n{out}")


def run_ab(srv):
    r = run(["ab", "-q", "-k", "-n", "1000", "-c", "10", srv.url()], "ab")
    out = r.stdout.decode()
    for want in (r"Complete requests:\s+1000\b", r"Failed requests:\s+0\b",
                 r"Keep-Alive requests:\s+1000\b"):
        check(re.search(want, out), f"ab: no {want!r} in:\n{out}")
    check("Non-2xx" not in out, f"ab saw non-2xx responses:\n{out}")


def test_ab(srv):
    run_ab(srv)


def test_h2load(srv):
    r = run(["h2load", "--h1", "-n", "1000", "-c", "10", srv.url()], "h2load")
    out = r.stdout.decode()
    check(re.search(r"requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, "
                    r"0 errored, 0 timeout", out), f"h2load:\n{out}")
    check(re.search(r"status codes: 1000 2xx", out), f"h2load:\n{out}")


# ---- the runner ----


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", "epoll"))
    args = ap.parse_args()

    clients = set()
    for tool, pkg in PACKAGES.items():
        if shutil.which(tool):
            clients.add(tool)
        else:
            missing(tool, pkg)

    with tempfile.TemporaryDirectory(prefix="evn-http-") as tmp:
        try:
            srv = Server(args.server, args.backend)
            small = Server(args.server, args.backend, "--max-body", "100")
        except Failure as e:
            print(f"FAIL start: {e}")
            return 1
        raw = [test_get_root, test_head, test_echo, test_not_found, test_unknown_method,
               test_absolute_form, test_bad_requests, test_head_limits, test_transfer_codings,
               test_keep_alive_http11, test_http10, test_connection_close, test_pipelined,
               test_chunked_upload, test_split_writes, test_damaged_requests,
               test_flow_control, test_ip]
        for fn in raw:
            record(fn.__name__, fn, srv)
        record("test_body_limits", test_body_limits, srv, small)
        if "curl" in clients:
            record("test_curl", test_curl, srv, tmp)
        if "wrk" in clients:
            record("test_wrk", test_wrk, srv)
        if "ab" in clients:
            record("test_ab", test_ab, srv)
        if "h2load" in clients:
            record("test_h2load", test_h2load, srv)
        # After all that, the server still answers, and stops cleanly.
        record("still_serving", lambda: check_hello(request(srv.port, GET)))
        record("stop_sigterm", srv.stop)
        record("stop_small", small.stop)
        if not evnserver.skip_on_windows("test_unix_socket", evnserver.WHY_NO_UNIX):
            record("test_unix_socket", test_unix_socket, args.server, args.backend, tmp)
        record("test_flags", test_flags, args.server, args.backend)
        record("test_sigint", test_sigint, args.server, args.backend)
        record("test_idle_timeout", test_idle_timeout, args.server, args.backend)
        record("test_request_timeout", test_request_timeout, args.server, args.backend)
        record("test_proxy_protocol", test_proxy_protocol, args.server, args.backend)
        record("test_two_loops", test_two_loops, args.server, args.backend, clients)
    return finish()


if __name__ == "__main__":
    main_guard(main)
