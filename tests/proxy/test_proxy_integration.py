#!/usr/bin/env python3
"""Integration tests of evn's TCP proxy example (examples/proxy, tcp-proxy).

The real binaries are started on ephemeral ports and their printed addresses
read: the repo's echo-server and redis-server examples as backends (and small
Python backends where a test needs one that behaves in a particular way),
tcp-proxy in front of them. Then, through the proxy:

  - a 20 MB random stream each way at once, on two connections at once,
    checked byte for byte;
  - many concurrent clients, each checked byte for byte;
  - half-close passed through both ways: a client that shuts down its
    sending side still gets every echoed byte, then EOF; a backend that shuts
    down first still receives what the client sends after;
  - input sent before the backend is connected (the backend's accept queue
    held full) arrives in full once it is;
  - a refused backend (a dead port) closes only that client, while a client
    on another backend keeps working; one that never answers the connect
    closes its client after --backend-timeout;
  - a backend killed mid-stream closes its clients, and the proxy serves on;
  - a client that writes 50 MB and reads slowly (through the echo backend),
    a backend that sends 50 MB to a client that reads slowly, and a client
    that sends 50 MB to a backend that reads slowly: each time the proxy's
    RSS (VmRSS in /proc/PID/status) stays under a bound far below 50 MB;
  - redis-cli and redis-benchmark against the Redis example;
  - round-robin over two backends, seen from what each backend holds;
  - --idle-timeout; unix socket backends and listeners; a graceful stop
    (the first SIGTERM) that refuses new clients but lets an open pair
    finish;
  - --send-proxy: the HTTP example listening with proxy=v2 behind the proxy
    (and behind two, chained) answers GET /ip with the original client;
  - flags, two loops, and exit status 0 on SIGTERM and SIGINT with no
    sanitizer report.

No sleeps synchronise anything: every step waits for the bytes or the EOF it
expects, and the socket time-out only turns a hang into a failure. The one
bound checked is a memory bound, never a time.

    test_proxy_integration.py --proxy build/examples/tcp-proxy \\
        --echo build/examples/echo-server --redis build/examples/redis-server \\
        --http build/examples/http-server \\
        [--backend poll] [--sanitize address,undefined]

With --splice MODE (off, auto, on, or a byte count) every proxy started here
runs with that --splice flag: off checks the relaying by hand alone, the
others the splice(2) path too; with those the memory bound is tighter (no
user-space buffer at all on a spliced direction),
and one more part checks a 20 MB stream in each direction through a
backend that does not echo (so each direction is spliced on its own).

A missing redis-cli or redis-benchmark fails the test unless
EVN_ALLOW_MISSING_CLIENTS=1, which turns that part into a skip.
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evnserver import (IO_TIMEOUT, Server, check, check_eq, connect, finish,  # noqa: E402
                       main_guard, missing, read_until_eof, run_part, short)

MB = 1 << 20


# ---------------------------------------------------------------- processes


def start_echo(binary):
    return Server(binary)


# Flags every proxy gets (main sets ["--splice", MODE] for a splice run).
PROXY_EXTRA = []


def start_proxy(binary, backends, *extra, env=None):
    args = [binary, "--listen", "tcp://127.0.0.1:0"]
    for b in backends:
        args += ["--backend", b]
    # No --port 0, no --backend NAME: the proxy's backend comes from
    # $EVN_BACKEND, and a part may name one itself.
    return Server(*args, *extra, *PROXY_EXTRA, port0=False, backend="", env=env)


def backend_url(proc):
    return f"tcp://127.0.0.1:{proc.port}"


def dead_port():
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------- clients


def echo_stream(port, data, shut=True):
    """Send data through the proxy while reading the echo, at once; returns
    (sha256 of what came back, its length, how it ended)."""
    s = connect(port)
    errors = []

    def writer():
        try:
            view = memoryview(data)
            while view:
                n = s.send(view[:MB])
                view = view[n:]
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    h = hashlib.sha256()
    n = 0
    end = "limit"
    try:
        while n < len(data) or shut:
            d = s.recv(1 << 20)
            if not d:
                end = "eof"
                break
            h.update(d)
            n += len(d)
            if not shut and n >= len(data):
                break
    except (socket.timeout, ConnectionResetError) as e:
        end = type(e).__name__
    t.join(IO_TIMEOUT)
    s.close()
    return h.hexdigest(), n, end, errors


# ---------------------------------------------------------------- parts


def part_flags(binary, echo):
    r = subprocess.run([binary, "--help"], capture_output=True, timeout=IO_TIMEOUT)
    check(r.returncode == 0 and b"--backend URL" in r.stdout and b"host name" in r.stdout
          and b"--hosts-file" in r.stdout and b"--backend-timeout" in r.stdout
          and b"--listen" in r.stdout,
          "--help: usage naming --listen, --backend URL (IP or host name), --hosts-file, "
          "--backend-timeout; exit 0",
          short(r.stdout))
    good = ["--backend", backend_url(echo)]
    for bad in (["--nope"], [], ["--backend", "tcp://bad!host:6380"],
                ["--backend", "tcp://127.0.0.1"], ["--backend", "tcp://127.0.0.1:0"],
                ["--backend", "udp://127.0.0.1:5"], ["--backend", "tcp://1.2.3.4:x"],
                good + ["--backend-timeout", "x"], good + ["--backend-timeout", "-1"],
                good + ["--loops", "many"], good + ["--balance", "sideways"],
                good + ["--buffer", "12"], good + ["--listen"]):
        r = subprocess.run([binary, *bad], capture_output=True, timeout=IO_TIMEOUT)
        check(r.returncode == 2 and (b"usage" in r.stderr or b"--backend" in r.stderr),
              f"bad flags {bad}: exit 2 with a message", f"rc {r.returncode} {short(r.stderr)}")
    # A listen address that cannot be had is an error, not a silent default.
    r = subprocess.run([binary, "--listen", "tcp://:99999", *good], capture_output=True,
                       timeout=IO_TIMEOUT)
    check(r.returncode == 1 and b"99999" in r.stderr, "a bad --listen URL: exit 1, named",
          f"rc {r.returncode} {short(r.stderr)}")
    # --tcp-options reaches the --listen addresses too: an unknown one is named.
    r = subprocess.run([binary, "--listen", "tcp://127.0.0.1:0", "--tcp-options", "fastest=1",
                        *good], capture_output=True, timeout=IO_TIMEOUT)
    check(r.returncode == 1 and b"fastest" in r.stderr,
          "--tcp-options applies to --listen URLs: an unknown option is named",
          f"rc {r.returncode} {short(r.stderr)}")
    # "--backend NAME" still picks the event backend, as in the other examples.
    for sig in (signal.SIGTERM, signal.SIGINT):
        p = start_proxy(binary, [backend_url(echo)], "--backend", "poll", "--loops", "2",
                        "--balance", "round-robin", "--reuseport")
        check(p.banner == "2 loops, poll backend", "--backend poll --loops 2", p.banner)
        s = connect(p.port)
        s.sendall(b"ping")
        check_eq(s.recv(4), b"ping", "two loops, reuseport: relays")
        s.close()
        check_eq(p.stop(sig), 0, f"exit 0 on {sig.name}")


def part_stream(port):
    datas = [os.urandom(20 * MB), os.urandom(20 * MB)]
    results = [None, None]

    def run(i):
        results[i] = echo_stream(port, datas[i])

    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(IO_TIMEOUT * 4)
    for i in range(2):
        if not check(results[i] is not None, f"stream {i} finished"):
            continue
        digest, n, end, errors = results[i]
        check_eq((n, end, errors), (len(datas[i]), "eof", []),
                 f"stream {i}: 20 MB each way at once, then EOF")
        check_eq(digest, hashlib.sha256(datas[i]).hexdigest(), f"stream {i}: byte for byte")


def part_many(port, nclients=200, size=64 * 1024):
    results = {}
    lock = threading.Lock()

    def run(i):
        data = os.urandom(size + i)
        try:
            r = echo_stream(port, data)
            ok = r[:3] == (hashlib.sha256(data).hexdigest(), len(data), "eof") and not r[3]
        except OSError as e:
            ok = repr(e)
        with lock:
            results[i] = ok

    ts = [threading.Thread(target=run, args=(i,)) for i in range(nclients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(IO_TIMEOUT * 2)
    bad = {i: r for i, r in results.items() if r is not True}
    check(len(results) == nclients and not bad,
          f"{nclients} concurrent clients each get their own bytes back",
          f"{len(results)} finished, bad: {short(bad)}")


def part_half_close(port):
    # The client shuts down first: every byte still comes back, then EOF.
    s = connect(port)
    data = os.urandom(3 * MB)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got, end = read_until_eof(s)
    check_eq((len(got), end), (len(data), "eof"), "client half-close: all echoed, then EOF")
    check(got == data, "client half-close: byte for byte")
    s.close()


class PyBackend:
    """A listening socket on 127.0.0.1 that the test itself serves."""

    def __init__(self, backlog=16):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.sock.settimeout(IO_TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"

    def accept(self):
        c, _ = self.sock.accept()
        c.settimeout(IO_TIMEOUT)
        return c

    def close(self):
        self.sock.close()


def part_backend_half_close(binary):
    """The backend shuts down first; what the client sends after still reaches it."""
    be = PyBackend()
    p = start_proxy(binary, [be.url])
    try:
        s = connect(p.port)
        s.sendall(b"hello backend")
        b = be.accept()
        got = b""
        while len(got) < 13:
            got += b.recv(100)
        check_eq(got, b"hello backend", "backend gets the client's first bytes")
        b.sendall(b"bye from backend")
        b.shutdown(socket.SHUT_WR)
        got, end = read_until_eof(s)
        check_eq((got, end), (b"bye from backend", "eof"), "backend half-close reaches the client")
        s.sendall(b"still talking")
        s.shutdown(socket.SHUT_WR)
        got, end = read_until_eof(b)
        check_eq((got, end), (b"still talking", "eof"),
                 "after the backend's EOF, the client's bytes and EOF still reach it")
        s.close()
        b.close()
    finally:
        be.close()
        check_eq(p.stop(), 0, "proxy (backend half-close) exits 0")


def part_early_input(binary):
    """Input sent before the backend connection is established is queued and
    delivered in full once it is. The backend's accept queue is kept full
    (listen backlog 0 and one connection not accepted), so the proxy's SYN is
    dropped until the test accepts that connection."""
    be = PyBackend(backlog=0)
    filler = socket.create_connection(("127.0.0.1", be.port), timeout=IO_TIMEOUT)
    p = start_proxy(binary, [be.url], "--buffer", str(1 * MB))
    try:
        s = connect(p.port)
        data = os.urandom(3 * MB)
        done = []

        def writer():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            done.append(True)

        t = threading.Thread(target=writer)
        t.start()
        # Let the proxy's connection in: the filler is taken first.
        be.accept().close()
        b = be.accept()
        got, end = read_until_eof(b)
        t.join(IO_TIMEOUT)
        check_eq((len(got), end, done), (len(data), "eof", [True]),
                 "input sent before the backend connected: all of it, then EOF")
        check(got == data, "early input: byte for byte")
        b.sendall(b"ok")
        b.close()
        got, end = read_until_eof(s)
        check_eq((got, end), (b"ok", "eof"), "early input: the answer comes back")
        s.close()
    finally:
        filler.close()
        be.close()
        check_eq(p.stop(), 0, "proxy (early input) exits 0")


def part_refused(binary, echo):
    """Backends [echo, dead port] round-robin: the second client is refused and
    closed; the first keeps working; the third works."""
    p = start_proxy(binary, [backend_url(echo), f"tcp://127.0.0.1:{dead_port()}"])
    try:
        a = connect(p.port)
        a.sendall(b"one")
        check_eq(a.recv(3), b"one", "client on the live backend works")
        b = connect(p.port)
        b.sendall(b"into the void")
        got, end = read_until_eof(b)
        check(got == b"" and end in ("eof", "reset"), "client of a refused backend is closed",
              f"{got!r} {end}")
        b.close()
        a.sendall(b"two")
        check_eq(a.recv(3), b"two", "the other client is untouched")
        c = connect(p.port)
        c.sendall(b"three")
        check_eq(c.recv(5), b"three", "the next client (live backend) works")
        a.close()
        c.close()
        check(p.alive(), "proxy still running")
    finally:
        check_eq(p.stop(), 0, "proxy (refused backend) exits 0")
    check("connection refused" in p.stderr().lower(), "the refusal is reported on stderr",
          short(p.stderr()))


def part_connect_timeout(binary):
    """A backend that does not answer the connect (its accept queue held full,
    so the SYN is dropped): the client is closed once --backend-timeout passes,
    and the proxy reports it."""
    be = PyBackend(backlog=0)
    filler = socket.create_connection(("127.0.0.1", be.port), timeout=IO_TIMEOUT)
    p = start_proxy(binary, [be.url], "--backend-timeout", "200")
    try:
        s = connect(p.port)
        s.sendall(b"waiting")
        got, end = read_until_eof(s)
        check(got == b"" and end in ("eof", "reset"), "connect timeout: client closed",
              f"{got!r} {end}")
        s.close()
    finally:
        filler.close()
        be.close()
        check_eq(p.stop(), 0, "proxy (connect timeout) exits 0")
    check("timed out" in p.stderr().lower(), "the timeout is reported on stderr",
          short(p.stderr()))


def part_backend_killed(binary, echo_binary):
    echo = start_echo(echo_binary)
    p = start_proxy(binary, [backend_url(echo)])
    try:
        socks = []
        for i in range(3):
            s = connect(p.port)
            s.sendall(b"x" * 1000)
            got = b""
            while len(got) < 1000:
                got += s.recv(1000)
            socks.append(s)
        # Mid-stream: data on its way in both directions when the backend dies.
        for s in socks:
            s.sendall(os.urandom(256 * 1024))
        echo.kill()
        for i, s in enumerate(socks):
            _, end = read_until_eof(s)
            check(end in ("eof", "reset"), f"client {i}: closed when its backend died", end)
            s.close()
        check(p.alive(), "proxy survives its backend")
        # The proxy goes on: a new client (the backend is gone) is closed cleanly.
        s = connect(p.port)
        got, end = read_until_eof(s)
        check(end in ("eof", "reset"), "after the backend died, a new client is closed", end)
        s.close()
    finally:
        check_eq(p.stop(), 0, "proxy (backend killed) exits 0")


# The slow-reader parts run the proxy with a 1 MiB buffer per direction, so
# that what it may hold (about 2 MiB and a few reads) stays well apart from
# what a proxy without backpressure would hold (most of 50 MB) even where a
# sanitizer multiplies RSS (TSan's shadow memory, ASan's redzones).
SLOW_FLAGS = ("--buffer", str(MB))


def asan_env():
    """ASan keeps freed memory in quarantine (256 MB by default), which would
    count in RSS; bound it so that RSS follows live memory."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8").lstrip(":")
    return env


class RssWatch:
    """The proxy's VmRSS, sampled by whoever moves the bytes."""

    def __init__(self, pid):
        self.pid = pid
        self.base = self.peak = rss_bytes(pid)

    def sample(self):
        self.peak = max(self.peak, rss_bytes(self.pid))

    def check(self, bound, what):
        print(f"  {what}: proxy RSS {self.base / MB:.1f} MB at start, {self.peak / MB:.1f} MB "
              f"at most", flush=True)
        check(self.peak - self.base < bound, f"{what}: proxy RSS grew by less than "
              f"{bound // MB} MB", f"grew {(self.peak - self.base) / MB:.1f} MB")


def slow_read(s, watch, want):
    """Read until EOF, slowly: 16 KiB at a time, a short pause every 64 KiB.
    Reading slowly is the load under test, not a wait for anything: the proxy
    must hold the sender back meanwhile. Returns (sha256, length)."""
    h = hashlib.sha256()
    n = 0
    reads = 0
    while True:
        d = s.recv(16 * 1024)
        if not d:
            break
        h.update(d)
        n += len(d)
        reads += 1
        if reads % 4 == 0:
            watch.sample()
            time.sleep(0.002)
    return h.hexdigest(), n


def part_slow_reader(binary, echo_binary, bound):
    """50 MB written as fast as possible through the echo backend, read
    slowly: the proxy's memory stays far below 50 MB."""
    echo = start_echo(echo_binary)
    p = start_proxy(binary, [backend_url(echo)], *SLOW_FLAGS, env=asan_env())
    try:
        watch = RssWatch(p.pid)
        size = 50 * MB
        data = os.urandom(size)
        s = connect(p.port)
        errors = []

        def writer():
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=writer)
        t.start()
        digest, n = slow_read(s, watch, size)
        t.join(IO_TIMEOUT)
        s.close()
        check_eq((n, errors), (size, []), "slow reader: all 50 MB came back")
        check_eq(digest, hashlib.sha256(data).hexdigest(), "slow reader: byte for byte")
        watch.check(bound, "slow reader (echo)")
    finally:
        check_eq(p.stop(), 0, "proxy (slow reader) exits 0")
        echo.stop()


def part_slow_client(binary, bound):
    """A backend that sends 50 MB at once to a client that reads slowly: the
    proxy stops reading the backend while the client's output is full."""
    be = PyBackend()
    size = 50 * MB
    data = os.urandom(size)
    p = start_proxy(binary, [be.url], *SLOW_FLAGS, env=asan_env())
    errors = []

    def source():
        try:
            b = be.accept()
            b.sendall(data)
            b.close()
        except OSError as e:
            errors.append(e)

    try:
        watch = RssWatch(p.pid)
        t = threading.Thread(target=source)
        t.start()
        s = connect(p.port)
        digest, n = slow_read(s, watch, size)
        t.join(IO_TIMEOUT)
        s.close()
        check_eq((n, errors), (size, []), "slow client: all 50 MB from the backend arrived")
        check_eq(digest, hashlib.sha256(data).hexdigest(), "slow client: byte for byte")
        watch.check(bound, "slow client (backend to client)")
    finally:
        be.close()
        check_eq(p.stop(), 0, "proxy (slow client) exits 0")


def part_slow_backend(binary, bound):
    """A client that sends 50 MB at once to a backend that reads slowly: the
    proxy stops reading the client while the backend's output is full."""
    be = PyBackend()
    size = 50 * MB
    data = os.urandom(size)
    p = start_proxy(binary, [be.url], *SLOW_FLAGS, env=asan_env())
    result = []

    def sink(watch):
        try:
            b = be.accept()
            result.append(slow_read(b, watch, size))
            b.close()
        except OSError as e:
            result.append(e)

    try:
        watch = RssWatch(p.pid)
        t = threading.Thread(target=sink, args=(watch,))
        t.start()
        s = connect(p.port)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(IO_TIMEOUT * 2)
        got, end = read_until_eof(s)
        s.close()
        check_eq(result, [(hashlib.sha256(data).hexdigest(), size)],
                 "slow backend: all 50 MB arrived, byte for byte")
        check_eq(end, "eof", "slow backend: the client sees the backend's close")
        watch.check(bound, "slow backend (client to backend)")
    finally:
        be.close()
        check_eq(p.stop(), 0, "proxy (slow backend) exits 0")


def part_splice_oneway(binary):
    """20 MB from the client to a backend that only reads, then 20 MB from
    that backend to a client that only reads: each direction alone, byte for
    byte, the half-close passed through each time."""
    be = PyBackend()
    size = 20 * MB
    up, down = os.urandom(size), os.urandom(size)
    p = start_proxy(binary, [be.url])
    result = []

    def backend():
        try:
            b = be.accept()
            got, end = read_until_eof(b)
            result.append((hashlib.sha256(got).hexdigest(), len(got), end))
            b.sendall(down)
            b.close()
        except OSError as e:
            result.append(e)

    try:
        t = threading.Thread(target=backend)
        t.start()
        s = connect(p.port)
        s.sendall(up)
        s.shutdown(socket.SHUT_WR)
        got, end = read_until_eof(s)
        t.join(IO_TIMEOUT)
        s.close()
        check_eq(result, [(hashlib.sha256(up).hexdigest(), size, "eof")],
                 "one way up: 20 MB byte for byte, then the client's EOF")
        check_eq((hashlib.sha256(got).hexdigest(), len(got), end),
                 (hashlib.sha256(down).hexdigest(), size, "eof"),
                 "one way down: 20 MB byte for byte, then the backend's close")
    finally:
        be.close()
        check_eq(p.stop(), 0, "proxy (one way) exits 0")


def part_idle_timeout(binary):
    """--idle-timeout closes a pair that has been quiet that long. The backend
    is the test's own socket, so that relaying is seen without a round trip
    that must beat the timeout: on a loaded machine an echo backend may not
    run within 200 ms, and the proxy then rightly closes the pair first."""
    be = PyBackend()
    p = start_proxy(binary, [be.url], "--idle-timeout", "200")
    try:
        s = connect(p.port)
        s.sendall(b"hello")
        b = be.accept()
        got, end = read_until_eof(b)
        check(got == b"hello" and end in ("eof", "reset"),
              "idle timeout: relays first, then closes the backend side", f"{got!r} {end}")
        got, end = read_until_eof(s)
        check(got == b"" and end in ("eof", "reset"), "idle timeout: the quiet client is closed",
              f"{got!r} {end}")
        s.close()
        b.close()
    finally:
        check_eq(p.stop(), 0, "proxy (idle timeout) exits 0")
        be.close()


def http_ip(port):
    """GET /ip of the HTTP example through port: the status line, the body,
    and the client's own port."""
    s = connect(port)
    s.sendall(b"GET /ip HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    lport = s.getsockname()[1]
    got, _ = read_until_eof(s)
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body, lport


def part_send_proxy(binary, http_binary):
    """--send-proxy: the HTTP example behind the proxy, listening with
    proxy=v2, answers GET /ip with the proxy's client, not the proxy; so it
    does behind two proxies, the first sending v1 to the second, which
    listens with proxy=v1 and sends v2 on; without --send-proxy it closes
    the proxy's connection unanswered."""
    http = Server(http_binary, "--tcp-options", "proxy=v2")
    target = f"tcp://127.0.0.1:{http.port}"
    procs = []
    try:
        p = start_proxy(binary, [target], "--send-proxy", "v2")
        procs.append(p)
        status, body, lport = http_ip(p.port)
        check(status == b"HTTP/1.1 200 OK" and body == b"127.0.0.1:%d\n" % lport,
              "--send-proxy v2: the backend sees the client", f"{status!r} {body!r} {lport}")
        second = Server(binary, "--listen", "tcp://127.0.0.1:0?proxy=v1&proxy_from=127.0.0.0/8",
                        "--backend", target, "--send-proxy", "v2", *PROXY_EXTRA, port0=False,
                        backend="")
        procs.append(second)
        first = start_proxy(binary, [backend_url(second)], "--send-proxy", "v1")
        procs.append(first)
        status, body, lport = http_ip(first.port)
        check(status == b"HTTP/1.1 200 OK" and body == b"127.0.0.1:%d\n" % lport,
              "two proxies (v1, then v2): the backend sees the first client",
              f"{status!r} {body!r} {lport}")
        plain = start_proxy(binary, [target])
        procs.append(plain)
        status, body, _ = http_ip(plain.port)
        check(status == b"" and body == b"", "without --send-proxy the backend refuses",
              f"{status!r} {body!r}")
    finally:
        for proc in procs:
            check_eq(proc.stop(), 0, f"proxy {' '.join(proc.args[1:3])} exits 0")
        check_eq(http.stop(), 0, "http-server (proxy=v2) exits 0")


def part_unix(binary, echo_binary, tmpdir):
    """A unix socket backend, and a unix socket listener."""
    bpath = os.path.join(tmpdir, f"evn-proxy-echo-{os.getpid()}.sock")
    lpath = os.path.join(tmpdir, f"evn-proxy-front-{os.getpid()}.sock")
    echo = Server(echo_binary, "--unixsocket", bpath)
    p = start_proxy(binary, [f"unix://{bpath}"], "--listen", f"unix://{lpath}")
    try:
        check(f"unix://{lpath}" in p.urls, "the unix listener is printed", short(p.urls))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        s.connect(lpath)
        data = os.urandom(MB)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got, end = read_until_eof(s)
        check_eq((got == data, end), (True, "eof"), "unix client, unix backend: echoed, then EOF")
        s.close()
        c = connect(p.port)
        c.sendall(b"tcp in")
        check_eq(c.recv(6), b"tcp in", "tcp client, unix backend")
        c.close()
    finally:
        check_eq(p.stop(), 0, "proxy (unix) exits 0")
        echo.stop()
    check(not os.path.exists(lpath), "the unix socket file is removed at exit")


def part_drain(binary, echo):
    """The first SIGTERM stops accepting but lets an open pair finish; the
    proxy exits 0 once it has."""
    p = start_proxy(binary, [backend_url(echo)])
    port = p.port
    try:
        s = connect(port)
        s.sendall(b"before")
        check_eq(s.recv(6), b"before", "drain: relays before the signal")
        p.proc.send_signal(signal.SIGTERM)
        # Not accepting any more: a new connection is refused (once the
        # listener is closed; until then it may still be accepted and relayed).
        refused = False
        deadline = time.monotonic() + IO_TIMEOUT
        while not refused and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT).close()
            except (ConnectionRefusedError, ConnectionResetError):
                refused = True
        check(refused, "drain: new connections are refused")
        s.sendall(b"after")
        check_eq(s.recv(5), b"after", "drain: the open pair still relays")
        check(p.alive(), "drain: still running while a pair is open")
        s.shutdown(socket.SHUT_WR)
        got, end = read_until_eof(s)
        check_eq((got, end), (b"", "eof"), "drain: the pair finishes with EOF")
        s.close()
        try:
            p.proc.wait(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        check(not p.alive(), "drain: exits once the last pair is done")
    finally:
        check_eq(p.stop(), 0, "proxy (drain) exits 0")


def part_redis(binary, redis_binary, nloops):
    redis = Server(redis_binary)
    p = start_proxy(binary, [backend_url(redis)], "--loops", str(nloops))
    port = str(p.port)
    try:
        cli = shutil.which("redis-cli")
        if cli:
            r = subprocess.run([cli, "-p", port, "SET", "through", "proxy"], capture_output=True,
                               timeout=IO_TIMEOUT)
            check_eq(r.stdout.strip(), b"OK", f"redis-cli SET through the proxy ({nloops} loops)")
            r = subprocess.run([cli, "-p", port, "GET", "through"], capture_output=True,
                               timeout=IO_TIMEOUT)
            check_eq(r.stdout.strip(), b"proxy", f"redis-cli GET through the proxy ({nloops} loops)")
        else:
            missing("redis-cli", "redis-tools")
        bench = shutil.which("redis-benchmark")
        if bench:
            for pipeline in ("1", "16"):
                r = subprocess.run([bench, "-p", port, "-n", "2000", "-c", "20", "-P", pipeline,
                                    "-q", "-t", "ping_inline,set,get"], capture_output=True,
                                   timeout=IO_TIMEOUT * 3)
                out = r.stdout.decode(errors="replace")
                check(r.returncode == 0 and len(re.findall(r"requests per second", out)) == 3,
                      f"redis-benchmark -n 2000 -P {pipeline} through the proxy ({nloops} loops)",
                      short(out + r.stderr.decode(errors="replace")))
        else:
            missing("redis-benchmark", "redis-tools")
    finally:
        check_eq(p.stop(), 0, f"proxy (redis, {nloops} loops) exits 0")
        redis.stop()


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def redis_call(port, *args):
    s = connect(port)
    s.sendall(resp(*args))
    got = b""
    while not got.endswith(b"\r\n") or (got.startswith(b"$") and got.count(b"\r\n") < 2):
        d = s.recv(4096)
        if not d:
            break
        got += d
    s.close()
    return got


def part_round_robin(binary, redis_binary):
    a = Server(redis_binary)
    b = Server(redis_binary)
    p = start_proxy(binary, [backend_url(a), backend_url(b)])
    try:
        check_eq(redis_call(a.port, b"SET", b"who", b"A"), b"+OK\r\n", "backend A set")
        check_eq(redis_call(b.port, b"SET", b"who", b"B"), b"+OK\r\n", "backend B set")
        seen = [redis_call(p.port, b"GET", b"who") for _ in range(6)]
        check_eq(seen, [b"$1\r\nA\r\n", b"$1\r\nB\r\n"] * 3,
                 "clients go to the two backends in turn")
    finally:
        check_eq(p.stop(), 0, "proxy (round-robin) exits 0")
        a.stop()
        b.stop()


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--echo", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--http", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", "epoll"))
    ap.add_argument("--sanitize", default="")
    ap.add_argument("--splice", default="")
    args = ap.parse_args()
    if args.splice:
        PROXY_EXTRA.extend(["--splice", args.splice])
    os.environ["EVN_BACKEND"] = args.backend
    tmpdir = os.environ.get("TMPDIR", "/tmp")
    # The proxy holds at most about one high-water mark (4 MiB by default)
    # and one read per direction; a proxy without backpressure holds nearly
    # all of the 50 MB a slow reader has not taken yet. The bound on RSS
    # growth sits between, with room for allocator and sanitizer overhead.
    bound = 24 * MB
    # On io_uring the loop's ring of receive buffers (4 MiB) is touched as
    # traffic passes, and what one wait received (up to the whole ring) is
    # taken in before the pause can stop the receive: 8 MB more at most, in
    # which TSan's shadow memory counts four times again (a proxy without
    # backpressure would still hold five times 50 MB there).
    if args.backend == "io_uring":
        bound += 8 * MB * (5 if "thread" in args.sanitize else 1)
    # Spliced, a direction holds one pipe (64 KiB, in the kernel) and no
    # buffer of the proxy's own: what is left is allocator and sanitizer
    # noise. A bound that still leaves room for the first 1 MB read relayed
    # by hand before a byte-count switch.
    if args.splice and args.splice != "off":
        bound = 8 * MB

    echo = start_echo(args.echo)
    try:
        parts = [
            lambda: part_flags(args.proxy, echo),
            lambda: part_backend_half_close(args.proxy),
            lambda: part_early_input(args.proxy),
            lambda: part_refused(args.proxy, echo),
            lambda: part_connect_timeout(args.proxy),
            lambda: part_backend_killed(args.proxy, args.echo),
            lambda: part_slow_reader(args.proxy, args.echo, bound),
            lambda: part_slow_client(args.proxy, bound),
            lambda: part_slow_backend(args.proxy, bound),
            lambda: part_round_robin(args.proxy, args.redis),
            lambda: part_idle_timeout(args.proxy),
            lambda: part_unix(args.proxy, args.echo, tmpdir),
            lambda: part_drain(args.proxy, echo),
            lambda: part_redis(args.proxy, args.redis, 1),
            lambda: part_redis(args.proxy, args.redis, 2),
            lambda: part_splice_oneway(args.proxy),
            lambda: part_send_proxy(args.proxy, args.http),
        ]
        for nloops in (1, 2):
            p = start_proxy(args.proxy, [backend_url(echo)], "--loops", str(nloops))
            print(f"== echo through the proxy, {nloops} loop(s), {args.backend}", flush=True)
            try:
                part_stream(p.port)
                part_many(p.port)
                part_half_close(p.port)
            except Exception:  # noqa: BLE001 - one part failing must not hide the rest
                check(False, "part raised", traceback.format_exc())
            finally:
                check_eq(p.stop(), 0, f"{nloops}-loop proxy exits 0 on SIGTERM")
        for part in parts:
            run_part(part)
    finally:
        echo.stop()
        Server.kill_all()

    return finish(f"proxy integration ({args.backend}"
                  + (f", --splice {args.splice}" if args.splice else "") + ")")


if __name__ == "__main__":
    main_guard(main)
