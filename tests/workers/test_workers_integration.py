#!/usr/bin/env python3
"""Integration tests of evn's worker-pool example (examples/workers,
http-workers), through its real binary on an ephemeral port.

  - 200 slow requests (GET /sleep?ms=20) over 50 connections with 8 workers
    all complete, each with its own answer; also with two loops;
  - the loop stays responsive: with every worker busy (seen in GET /stats),
    a fast GET / on another connection is answered, and the workers are
    still busy afterwards (so it was answered while they were);
  - a connection reset while its request is with a worker, or while the
    request waits in the queue, is dropped cleanly: the server counts the
    dropped replies, serves on, and exits 0 (under ASan: with no leak);
  - a client that half-closes after its request still gets the answer;
    one that closes fully does not upset the server;
  - pipelined requests, slow and fast mixed, in one write or split across
    writes, are answered in order;
  - bad requests: 400, 404, 501;
  - a graceful stop (the first SIGTERM): idle connections close at once, a
    request with a worker is answered with Connection: close;
  - flags, and exit status 0 on SIGTERM and SIGINT with no sanitizer report.

No sleeps synchronise anything: each step waits for the bytes it expects, and
waiting for the pool to reach a state is a bounded loop of GET /stats
requests. The only times asserted are none: "responsive" is shown by order of
events, not by speed.

    test_workers_integration.py --server build/examples/http-workers [--backend poll]
"""

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evnserver import (IO_TIMEOUT, Server, check, check_eq, connect, finish,  # noqa: E402
                       main_guard, run_part, short)


class Conn:
    """A raw HTTP/1.1 client connection that reads whole responses."""

    def __init__(self, port):
        self.sock = connect(port)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def response(self):
        """(status, headers as a dict with lower-case names, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def get(self, path, close=False):
        self.send(req(path, close))
        return self.response()

    def at_eof(self):
        """True if the server closed (after any bytes already read)."""
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, ConnectionResetError):
            return False

    def reset(self):
        """Close with an RST, as a client that gives up does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


def req(path, close=False):
    return (f"GET {path} HTTP/1.1\r\nHost: t\r\n" + ("Connection: close\r\n" if close else "")
            + "\r\n").encode()


def stats(port):
    c = Conn(port)
    status, _, body = c.get("/stats", close=True)
    c.close()
    out = {}
    for line in body.decode().splitlines():
        k, v = line.split()
        out[k] = int(v)
    return out


def wait_stats(port, what, pred):
    """Ask GET /stats until pred(stats) holds: a bounded loop of requests."""
    deadline = time.monotonic() + IO_TIMEOUT
    while time.monotonic() < deadline:
        st = stats(port)
        if pred(st):
            return st
    check(False, f"waiting for {what}", short(stats(port)))
    return None


# ---------------------------------------------------------------- parts


def part_flags(binary, backend):
    r = subprocess.run([binary, "--help"], capture_output=True, timeout=IO_TIMEOUT)
    check(r.returncode == 0 and b"--workers" in r.stdout, "--help names --workers, exit 0",
          short(r.stdout))
    for bad in (["--nope"], ["--workers"], ["--workers", "0"], ["--workers", "x"],
                ["--loops", "many"], ["--port", "70000"]):
        r = subprocess.run([binary, *bad], capture_output=True, timeout=IO_TIMEOUT)
        check(r.returncode == 2 and b"usage" in r.stderr, f"bad flags {bad}: usage, exit 2",
              f"rc {r.returncode} {short(r.stderr)}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        srv = Server(binary, "--workers", "3", backend=backend)
        c = Conn(srv.port)
        check_eq(c.get("/sleep?ms=1")[2], b"slept 1 ms\r\n", "a slow request is answered")
        c.close()
        rc, out = srv.stop(sig), srv.out
        check_eq(rc, 0, f"exit 0 on {sig.name}")
        check("1 replies sent, 0 dropped" in out, "the exit line counts the replies", out)


def part_many(port, nconns=50, per_conn=4, ms=20):
    results = {}
    lock = threading.Lock()

    def run(i):
        got = []
        try:
            c = Conn(port)
            for k in range(per_conn):
                status, _, body = c.get(f"/sleep?ms={ms}")
                got.append((status, body))
            c.close()
        except (OSError, EOFError) as e:
            got.append(repr(e))
        with lock:
            results[i] = got

    ts = [threading.Thread(target=run, args=(i,)) for i in range(nconns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(IO_TIMEOUT * 2)
    want = [(200, f"slept {ms} ms\r\n".encode())] * per_conn
    bad = {i: r for i, r in results.items() if r != want}
    check(len(results) == nconns and not bad,
          f"{nconns * per_conn} requests of ms={ms} over {nconns} connections all answered",
          f"{len(results)} connections finished; wrong: {short(bad)}")


def part_responsive_and_drops(binary, backend):
    """Every worker busy: a fast request is still answered, and connections
    reset while their requests are with a worker or queued are dropped
    cleanly."""
    srv = Server(binary, "--workers", "2", backend=backend)
    port = srv.port
    try:
        busy = [Conn(port) for _ in range(2)]
        for c in busy:
            c.send(req("/sleep?ms=3000"))
        wait_stats(port, "both workers busy", lambda s: s["running"] == 2)
        queued = Conn(port)
        queued.send(req("/sleep?ms=0"))
        wait_stats(port, "a request queued", lambda s: s["queued"] == 1)

        c = Conn(port)
        status, _, body = c.get("/")
        check_eq((status, body), (200, b"Hello World!\r\n"), "GET / answered while workers busy")
        c.close()
        st = stats(port)
        check(st["running"] == 2 and st["queued"] == 1 and st["replied"] == 0,
              "the workers were busy all along", short(st))

        for conn in busy + [queued]:
            conn.reset()
        st = wait_stats(port, "three replies dropped", lambda s: s["dropped"] == 3)
        check(st is not None and st["replied"] == 0 and st["running"] == 0 and st["queued"] == 0,
              "the pool is idle again, nothing sent to the gone clients", short(st))
        c = Conn(port)
        check_eq(c.get("/sleep?ms=1")[2], b"slept 1 ms\r\n", "the server serves on")
        c.close()
    finally:
        rc, out = srv.stop(), srv.out
        check_eq(rc, 0, "exit 0 after dropped replies")
        check("3 dropped" in out, "the exit line counts the dropped replies", out)


def part_half_close(port):
    c = Conn(port)
    c.send(req("/sleep?ms=50"))
    c.sock.shutdown(socket.SHUT_WR)
    status, _, body = c.response()
    check_eq((status, body), (200, b"slept 50 ms\r\n"), "half-closed client still gets the answer")
    check(c.at_eof(), "then the server closes")
    c.close()
    # Two pipelined, then half-close: both answered, in order.
    c = Conn(port)
    c.send(req("/sleep?ms=20") + req("/"))
    c.sock.shutdown(socket.SHUT_WR)
    got = [c.response()[2], c.response()[2]]
    check_eq(got, [b"slept 20 ms\r\n", b"Hello World!\r\n"], "half-close after two requests")
    check(c.at_eof(), "then the server closes")
    c.close()
    # A full close while the worker sleeps: the server just carries on.
    c = Conn(port)
    c.send(req("/sleep?ms=50"))
    c.close()
    c = Conn(port)
    check_eq(c.get("/")[2], b"Hello World!\r\n", "server fine after a client closed early")
    c.close()


def part_pipeline(port):
    paths = ["/sleep?ms=60", "/", "/sleep?ms=1", "/nope", "/sleep?ms=30", "/sleep?ms=0", "/",
             "/sleep?ms=5"]
    want = []
    for p in paths:
        if p == "/":
            want.append((200, b"Hello World!\r\n"))
        elif p == "/nope":
            want.append((404, b"Not Found\r\n"))
        else:
            ms = p.split("=")[1]
            want.append((200, f"slept {ms} ms\r\n".encode()))
    # All in one write.
    c = Conn(port)
    c.send(b"".join(req(p) for p in paths))
    got = [c.response()[::2] for _ in paths]
    check_eq(got, want, "pipelined in one write: answered in order")
    c.close()
    # Split at every few bytes, so that requests end and begin inside writes
    # while earlier ones are with a worker.
    c = Conn(port)
    blob = b"".join(req(p) for p in paths)
    for i in range(0, len(blob), 7):
        c.send(blob[i:i + 7])
    got = [c.response()[::2] for _ in paths]
    check_eq(got, want, "pipelined in 7-byte pieces: answered in order")
    c.close()
    # Many at once, the last with Connection: close.
    c = Conn(port)
    n = 300
    c.send(b"".join(req(f"/sleep?ms={i % 3}" if i % 2 else "/") for i in range(n - 1))
           + req("/", close=True))
    got = [c.response()[2] for _ in range(n)]
    want = [f"slept {i % 3} ms\r\n".encode() if i % 2 else b"Hello World!\r\n"
            for i in range(n - 1)] + [b"Hello World!\r\n"]
    check_eq(got, want, f"{n} pipelined, slow and fast mixed: in order")
    check(c.at_eof(), "Connection: close on the last: closed after it")
    c.close()


def part_errors(port):
    for path, status in (("/sleep", 400), ("/sleep?ms=abc", 400), ("/sleep?ms=20000", 400),
                         ("/sleep?ms=", 400), ("/missing", 404)):
        c = Conn(port)
        got = c.get(path)[0]
        check_eq(got, status, f"GET {path}")
        check_eq(c.get("/")[0], 200, f"connection usable after GET {path}")
        c.close()
    c = Conn(port)
    c.send(b"POST /sleep?ms=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
    check_eq(c.response()[0], 501, "a request with a body: 501")
    check(c.at_eof(), "and the connection closes")
    c.close()
    c = Conn(port)
    c.send(b"GARBAGE\r\n\r\n")
    check_eq(c.response()[0], 400, "a malformed request: 400")
    check(c.at_eof(), "and the connection closes")
    c.close()


def part_drain(binary, backend):
    """The first SIGTERM: an idle connection is closed at once; a request with
    a worker is answered, with Connection: close, then its connection closes;
    the server exits 0."""
    srv = Server(binary, "--workers", "2", backend=backend)
    try:
        idle = Conn(srv.port)
        check_eq(idle.get("/")[0], 200, "drain: the idle connection had a request")
        busy = Conn(srv.port)
        busy.send(req("/sleep?ms=1000"))
        wait_stats(srv.port, "the request with a worker", lambda s: s["running"] == 1)
        srv.proc.send_signal(signal.SIGTERM)
        check(idle.at_eof(), "drain: the idle connection is closed")
        status, headers, body = busy.response()
        check_eq((status, body, headers.get("connection")), (200, b"slept 1000 ms\r\n", "close"),
                 "drain: the request in progress is answered, with Connection: close")
        check(busy.at_eof(), "drain: then its connection is closed")
        idle.close()
        busy.close()
        try:
            srv.proc.wait(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        check(srv.proc.poll() is not None, "drain: exits once the connections are done")
    finally:
        rc, out = srv.stop(), srv.out
        check_eq(rc, 0, "exit 0 after a graceful stop")
        check("1 replies sent, 0 dropped" in out, "drain: the answer counted as sent", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", "epoll"))
    args = ap.parse_args()

    run_part(part_flags, args.server, args.backend)
    for nloops in (1, 2):
        srv = Server(args.server, "--workers", "8", "--loops", str(nloops), backend=args.backend)
        print(f"== {nloops} loop(s), 8 workers, {args.backend}", flush=True)
        try:
            for part in (part_many, part_half_close, part_pipeline, part_errors):
                run_part(part, srv.port)
        finally:
            rc = srv.stop()
            check_eq(rc, 0, f"{nloops}-loop server exits 0 on SIGTERM")
    for part in (part_responsive_and_drops, part_drain):
        run_part(part, args.server, args.backend)
    return finish(f"workers integration ({args.backend})")


if __name__ == "__main__":
    main_guard(main)
