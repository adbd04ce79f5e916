#!/usr/bin/env python3
"""The echo-server example, driven as a user would: TCP (IPv4 and IPv6),
a unix socket and UDP echo every byte; --help exits 0; a bad flag prints the
usage and exits 2; --tcp-options reaches the listener (an unknown option is
named, status 1); SIGINT and SIGTERM stop it with status 0.

The Windows build's .exe runs under Wine: no unix socket there (Wine has no
AF_UNIX), Ctrl-C (a SIGINT, which Wine delivers as one) is the only stop,
and --reuseport and deferaccept are refused (Windows has neither)."""
import os
import signal
import socket
import sys
import tempfile
import threading

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evnserver  # noqa: E402
from evnserver import (Server, check, check_eq, finish, main_guard,  # noqa: E402
                       skip_on_windows)

BIN = sys.argv[1]


def echo_stream(sock, payload):
    got = bytearray()
    t = threading.Thread(target=sock.sendall, args=(payload,))
    t.start()
    while len(got) < len(payload):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    t.join()
    return bytes(got)


def main():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "echo.sock")
    unix = not skip_on_windows("the unix socket", evnserver.WHY_NO_UNIX)
    srv = Server(BIN, "--udp", "0", *(["--unixsocket", path] if unix else []))
    tcp, udp = srv.port_of("tcp"), srv.port_of("udp")
    check(tcp is not None and udp is not None and len(srv.urls) == 2 + unix,
          f"prints its addresses {srv.urls}")
    payload = os.urandom(8 << 20)
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(fam) as s:
            s.settimeout(20)
            s.connect((host, tcp))
            check(echo_stream(s, payload) == payload, f"8 MB echoed over TCP to {host}")
    if unix:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(path)
            check(echo_stream(s, payload[:1 << 20]) == payload[:1 << 20],
                  "1 MB echoed over the unix socket")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(20)
        for n in (1, 512, 60000):
            msg = os.urandom(n)
            s.sendto(msg, ("127.0.0.1", udp))
            data, _ = s.recvfrom(65536)
            check(data == msg, f"UDP datagram of {n} bytes echoed")
    check_eq(srv.stop(signal.SIGINT), 0, f"{evnserver.signal_name(signal.SIGINT)}: exit status 0")
    if unix:
        check(not os.path.exists(path), "unix socket file removed at exit")

    if not skip_on_windows("SIGTERM", evnserver.WHY_NO_SIGTERM):
        check_eq(Server(BIN).stop(signal.SIGTERM), 0, "SIGTERM: exit status 0")

    # --tcp-options reaches the TCP listener's URL, beside --reuseport.
    # Windows has neither SO_REUSEPORT nor TCP_DEFER_ACCEPT: both are
    # refused there, naming what is missing.
    if evnserver.WINDOWS:
        opts, extra = "keepalive=30&nodelay=1", []
        for args, missing in ((["--reuseport"], "SO_REUSEPORT"),
                              (["--tcp-options", "deferaccept=2"], "TCP_DEFER_ACCEPT")):
            r = evnserver.run_program(BIN, "--port", "0", *args, text=True, timeout=30)
            check(r.returncode == 1 and missing in r.stderr,
                  f"Windows: {' '.join(args)} is refused, status 1, {missing} named", r.stderr)
    else:
        opts, extra = "deferaccept=2&keepalive=30&nodelay=1", ["--reuseport"]
    srv = Server(BIN, "--tcp-options", opts, *extra)
    port = srv.port_of("tcp")
    check(port is not None, "--tcp-options: serving")
    if port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            check(echo_stream(s, b"deferred" * 1000) == b"deferred" * 1000,
                  f"--tcp-options {opts}: a client that sends at once is echoed")
    check_eq(srv.stop(), 0, "--tcp-options: exit status 0")
    r = evnserver.run_program(BIN, "--port", "0", "--tcp-options", "fastest=1",
                              text=True, timeout=30)
    check(r.returncode == 1 and "fastest" in r.stderr,
          "--tcp-options with an unknown option: status 1, the option named")
    r = evnserver.run_program(BIN, "--port", "0", "--tcp-options", "keepalive=30&" * 30,
                              text=True, timeout=30)
    check(r.returncode == 1 and "too long" in r.stderr,
          "--tcp-options longer than the URL room: status 1, 'too long'")

    r = evnserver.run_program(BIN, "--help", text=True, timeout=30)
    check(r.returncode == 0 and "--port" in r.stdout, "--help prints the usage, status 0")
    for bad in (["--bogus"], ["--port", "70000"], ["--loops"], ["--balance", "fastest"],
                ["--tcp-options", ""], ["--tcp-options", "?deferaccept=1"]):
        r = evnserver.run_program(BIN, *bad, text=True, timeout=30)
        check(r.returncode == 2 and "usage" in r.stderr, f"{' '.join(bad)}: usage, status 2")
    return finish()


if __name__ == "__main__":
    evnserver.verbose = True
    main_guard(main)
