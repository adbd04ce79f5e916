#!/usr/bin/env python3
"""GET /stats of the HTTP example: evn_server_stats as JSON.

    test_http_stats.py --server build/examples/http-server [--backend poll] [--tls on|off]

Starts the server with two loops and checks: /stats answers 200 with
Content-Type application/json and a body that parses, with the backend, the
loop count, the totals and one object per loop, every counter a number, and
on a quiet server the loops summing to the totals (urllib); the counters
move with traffic, by exactly the bytes of the requests and answers made
in between (raw sockets); HEAD has the head alone, POST is 404; curl reads
it; --stats-path moves it or turns it off; and over TLS a client that sends
no TLS is counted as refused_tls, while a TLS client's requests count as
their plaintext bytes.

Nothing here waits by sleeping: each step waits for the bytes it expects.
"""

import argparse
import json
import os
import shutil
import sys
import urllib.error
import urllib.request

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evnserver  # noqa: E402
from evnserver import (IO_TIMEOUT, command, connect, finish, main_guard, make_cert,  # noqa: E402
                       missing, read_until_eof, record, require as check, require_eq as eq,
                       run_tool, skip, tls_connect, tmpdir)

FIELDS = ("conns_open", "conns_accepted", "conns_outbound", "conns_closed", "refused_max_conns",
          "refused_tls", "refused_proxy", "bytes_in", "bytes_out", "turns", "events", "wait_ns",
          "work_ns", "accept_gone", "accept_failed")
# Counters that only grow.
GROWING = tuple(f for f in FIELDS if f != "conns_open")
STATS_REQ = b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n"


class Server(evnserver.Server):
    def __init__(self, binary, backend, *extra):
        super().__init__(binary, "--loops", "2", "--balance", "round-robin", *extra,
                         backend=backend)
        check(self.port, f"no 'listening on tcp://[::]:PORT' line in {self.urls!r}")

    def stop(self):
        eq(super().stop(), 0,
           f"exit status after {evnserver.signal_name(evnserver.STOP_SIGNAL)}")


def read_response(s, head=False):
    """(status, {lower-case field: value}, body, bytes of the whole answer)."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        check(d, f"connection closed in a response head: {bytes(buf)!r}")
        buf += d
    end = buf.index(b"\r\n\r\n") + 4
    lines = buf[: end - 4].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        fields[k.strip().lower()] = v.strip()
    length = 0 if head else int(fields.get("content-length", "0"))
    while len(buf) < end + length:
        d = s.recv(65536)
        check(d, "connection closed in a response body")
        buf += d
    eq(len(buf), end + length, "bytes after the response")
    return status, fields, bytes(buf[end:]), len(buf)


def get_stats(s):
    """GET /stats on the open connection s: (parsed JSON, bytes of the answer)."""
    s.sendall(STATS_REQ)
    status, fields, body, n = read_response(s)
    eq(status, 200, "GET /stats status")
    return json.loads(body), n


def check_shape(doc, backend):
    eq(sorted(doc), ["backend", "loops", "nloops", "total"], "members of the answer")
    if backend:
        eq(doc["backend"], backend, "backend")
    eq(doc["nloops"], 2, "nloops")
    eq(len(doc["loops"]), 2, "one object per loop")
    for i, loop in enumerate(doc["loops"]):
        eq(loop["loop"], i, "loop index")
        eq(sorted(loop), sorted(FIELDS + ("loop",)), f"members of loop {i}")
    eq(sorted(doc["total"]), sorted(FIELDS), "members of total")
    for obj in [doc["total"]] + doc["loops"]:
        for f in FIELDS:
            check(isinstance(obj[f], int) and obj[f] >= 0, f"{f} is a count: {obj[f]!r}")


def test_json(srv, backend):
    """urllib on a server nobody else talks to: a quiet server, so each
    total is its loops' sum."""
    with urllib.request.urlopen(srv.url("/stats"), timeout=IO_TIMEOUT) as r:
        eq(r.status, 200, "status")
        eq(r.headers["Content-Type"], "application/json", "Content-Type")
        eq(r.headers["Cache-Control"], "no-store", "Cache-Control")
        doc = json.loads(r.read())
    check_shape(doc, backend)
    for f in FIELDS:
        eq(doc["total"][f], sum(loop[f] for loop in doc["loops"]), f"total {f} = the loops' sum")
    t = doc["total"]
    check(t["conns_open"] >= 1 and t["conns_accepted"] >= 1, f"this connection counts: {t}")
    check(t["bytes_in"] > 0 and t["turns"] > 0 and t["events"] > 0, f"its request counts: {t}")
    eq(t["refused_proxy"], 0, "refused_proxy")
    eq(t["accept_gone"], 0, "accept_gone")
    eq(t["accept_failed"], 0, "accept_failed")


def test_counters_move(srv):
    """Between two reads on one connection, another makes five requests:
    bytes in grow by exactly the six requests, bytes out by exactly the first
    stats answer and the five answers; one more connection accepted, and
    closed."""
    with connect(srv.port) as a:
        s1, first = get_stats(a)
        b = connect(srv.port)
        sent = recvd = 0
        for i in range(5):
            # The last one closes: b's loop counts an answer's bytes once
            # send() has returned, which may be after they reached us, but
            # always before it closes the socket.
            last = "Connection: close\r\n" if i == 4 else ""
            req = f"GET / HTTP/1.1\r\nHost: x\r\nX-N: {'n' * i}\r\n{last}\r\n".encode()
            b.sendall(req)
            status, _, body, n = read_response(b)
            eq(status, 200, "GET /")
            sent += len(req)
            recvd += n
        eq(read_until_eof(b), (b"", "eof"), "the server closes after Connection: close")
        b.close()
        s2, _ = get_stats(a)
        t1, t2 = s1["total"], s2["total"]
        eq(t2["bytes_in"] - t1["bytes_in"], sent + len(STATS_REQ), "bytes_in grew by the requests")
        eq(t2["bytes_out"] - t1["bytes_out"], recvd + first, "bytes_out grew by the answers")
        eq(t2["conns_accepted"] - t1["conns_accepted"], 1, "one more connection accepted")
        check(t2["conns_closed"] > t1["conns_closed"], f"b's close counts: {t1} -> {t2}")
        check(t2["turns"] > t1["turns"] and t2["events"] > t1["events"],
              f"turns and events grew: {t1} -> {t2}")
        for f in GROWING:
            check(t2[f] >= t1[f], f"{f} went back: {t1[f]} -> {t2[f]}")
        for i in range(2):
            for f in GROWING:
                check(s2["loops"][i][f] >= s1["loops"][i][f], f"loop {i} {f} went back")


def test_head_post(srv):
    with connect(srv.port) as s:
        s.sendall(b"HEAD /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        status, fields, body, _ = read_response(s, head=True)
        eq(status, 200, "HEAD /stats")
        eq(fields.get("content-type"), "application/json", "HEAD Content-Type")
        check(int(fields.get("content-length", "0")) > 0, "HEAD has the body's length")
        s.sendall(b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        eq(read_response(s)[0], 404, "POST /stats")
        doc, _ = get_stats(s)
        eq(doc["nloops"], 2, "GET after HEAD and POST on one connection")


def test_curl(srv, curl, backend):
    r = run_tool([curl, "-sS", "--fail", srv.url("/stats")])
    eq(r.returncode, 0, f"curl ({r.stderr!r})")
    check_shape(json.loads(r.stdout), backend)


def test_stats_path(binary, backend):
    srv = Server(binary, backend, "--stats-path", "/metrics")
    try:
        with connect(srv.port) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            status, fields, body, _ = read_response(s)
            eq(status, 200, "GET /metrics")
            check_shape(json.loads(body), backend)
            s.sendall(STATS_REQ)
            eq(read_response(s)[0], 404, "GET /stats with --stats-path /metrics")
    finally:
        srv.stop()
    srv = Server(binary, backend, "--stats-path", "")
    try:
        with connect(srv.port) as s:
            s.sendall(STATS_REQ)
            eq(read_response(s)[0], 404, "GET /stats with --stats-path ''")
    finally:
        srv.stop()
    r = run_tool(command(binary, "--port", "0", "--stats-path", "metrics"))
    eq(r.returncode, 2, "--stats-path without a leading / is a usage error")


def test_tls(binary, backend):
    d = tmpdir("evn-stats-")
    try:
        cert, key = make_cert(d)
        tls_stats(binary, backend, cert, key)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def tls_stats(binary, backend, cert, key):
    srv = Server(binary, backend, "--tls-cert", cert, "--tls-key", key)
    try:
        tls_port = srv.port_of("tls")
        check(tls_port, f"no tls:// address in {srv.urls}")
        # Not TLS at all: the handshake fails, the connection is closed.
        with connect(tls_port) as s:
            s.sendall(STATS_REQ)
            _, end = read_until_eof(s)
            check(end in ("eof", "reset"), f"a client without TLS is closed ({end})")
        # Counted before the socket was closed, so it shows now.
        with connect(srv.port) as s:
            t = get_stats(s)[0]["total"]
            eq(t["refused_tls"], 1, "refused_tls after one client without TLS")
        # Over TLS, bytes are the plaintext's: the second of two requests on
        # one connection adds exactly its own length to bytes_in.
        with tls_connect(tls_port, cert) as s:
            s1, first = get_stats(s)
            s2, _ = get_stats(s)
            eq(s2["total"]["bytes_in"] - s1["total"]["bytes_in"], len(STATS_REQ),
               "bytes_in over TLS: the plaintext")
            eq(s2["total"]["bytes_out"] - s1["total"]["bytes_out"], first,
               "bytes_out over TLS: the plaintext")
            eq(s2["total"]["refused_tls"], 1, "a TLS client is not refused")
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--backend", default="")
    ap.add_argument("--tls", choices=("on", "off"), default="on",
                    help="off: evn was built without TLS, skip the TLS test")
    args = ap.parse_args()
    srv = Server(args.server, args.backend)
    try:
        record("test_json", test_json, srv, args.backend)
        record("test_counters_move", test_counters_move, srv)
        record("test_head_post", test_head_post, srv)
        curl = shutil.which("curl")
        if curl:
            record("test_curl", test_curl, srv, curl, args.backend)
        else:
            missing("curl", "curl")
    finally:
        record("stop", srv.stop)
    record("test_stats_path", test_stats_path, args.server, args.backend)
    if args.tls == "off":
        skip("test_tls: " + (evnserver.WHY_NO_TLS if evnserver.WINDOWS else
                             "evn built without TLS"))
    elif not shutil.which("openssl"):
        missing("openssl", "openssl")
    else:
        record("test_tls", test_tls, args.server, args.backend)
    return finish()


if __name__ == "__main__":
    main_guard(main)
