#!/usr/bin/env python3
"""echo-server with --tls-cert/--tls-key: bytes echoed over TLS (1 MB in one
write among them) beside the plain port; certificate paths with '?', '%' and
'=' served, one with '&' refused; and the flag errors: half a pair, a
--tls-port alone, a missing, unreadable or mismatched file; and
--tls-handshake-ms, which closes a client that never starts its handshake
long before the default 10 s, while one that does is served.

    test_tls_echo.py ECHO_SERVER     (EVN_BACKEND picks the backend)
"""

import os
import shutil
import socket
import subprocess
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evnserver import (IO_TIMEOUT, Server, check, exchange, make_cert, start_tls,  # noqa: E402
                       tls_connect, tls_main)

BIN = None


def run_flags(*args):
    return subprocess.run([BIN, "--port", "0", *args], capture_output=True, text=True,
                          timeout=IO_TIMEOUT, stdin=subprocess.DEVNULL)


def test_echo(cert, key):
    srv = start_tls(BIN, cert, key)
    if not srv:
        return
    port = srv.port_of("tls")
    check(len(srv.urls) == 2, f"prints two addresses {srv.urls}")
    with tls_connect(port, cert) as s:
        for n in (1, 100, 16384, 16385):
            msg = os.urandom(n)
            check(exchange(s, msg, n) == msg, f"{n} bytes echoed over TLS")
        big = os.urandom(1 << 20)
        check(exchange(s, big, len(big)) == big, "1 MB in one write echoed over TLS")
    with tls_connect(port, cert) as s:
        big = os.urandom(8 << 20)
        check(exchange(s, big, len(big)) == big, "8 MB echoed over a second TLS connection")
    with socket.create_connection(("127.0.0.1", srv.port_of("tcp")), timeout=IO_TIMEOUT) as s:
        s.sendall(b"plain")
        check(s.recv(5) == b"plain", "the plain port still echoes")
    srv.stop_ok("echo-server over TLS")


def test_odd_paths(d, cert, key):
    # '?', '%' and '=' reach the file system as they are: the URL's query
    # string is split at '&' only, with no %-decoding.
    odd = os.path.join(d, "we?ird%41=dir")
    os.mkdir(odd)
    ocert, okey = os.path.join(odd, "c?%2F.pem"), os.path.join(odd, "k=%.pem")
    shutil.copy(cert, ocert)
    shutil.copy(key, okey)
    srv = Server(BIN, "--tls-cert", ocert, "--tls-key", okey)
    port = srv.port_of("tls")
    ok = False
    if port is not None:
        with tls_connect(port, cert) as s:
            ok = exchange(s, b"odd", 3) == b"odd"
    check(ok, f"certificate paths with '?', '%' and '=' work ({srv.stderr().strip()})")
    srv.stop_ok("echo-server with odd paths")

    amp = os.path.join(d, "a&b.pem")
    shutil.copy(cert, amp)
    r = run_flags("--tls-cert", amp, "--tls-key", key)
    check(r.returncode == 2 and amp in r.stderr and "'&'" in r.stderr,
          f"a path with '&': status 2, the path and why ({r.returncode}, {r.stderr.strip()})")


def test_flag_errors(d, cert, key):
    for args, what in ((["--tls-cert", cert], "only --tls-cert"),
                       (["--tls-key", key], "only --tls-key"),
                       (["--tls-port", "0"], "--tls-port alone"),
                       (["--tls-cert", cert, "--tls-key", key, "--tls-port", "70000"],
                        "--tls-port 70000"),
                       (["--tls-cert"], "--tls-cert without a value")):
        r = run_flags(*args)
        check(r.returncode == 2 and "usage" in r.stderr, f"{what}: usage, status 2 ({r.returncode})")

    missing = os.path.join(d, "no-such-cert.pem")
    r = run_flags("--tls-cert", missing, "--tls-key", key)
    check(r.returncode not in (0, 2) and f"'{missing}'" in r.stderr
          and "No such file" in r.stderr,
          f"a missing certificate: fails, naming it ({r.returncode}, {r.stderr.strip()})")
    r = run_flags("--tls-cert", cert, "--tls-key", missing)
    check(r.returncode not in (0, 2) and f"'{missing}'" in r.stderr,
          f"a missing key: fails, naming it ({r.returncode}, {r.stderr.strip()})")

    junk = os.path.join(d, "junk.pem")
    with open(junk, "w") as f:
        f.write("this is not PEM\n")
    r = run_flags("--tls-cert", junk, "--tls-key", key)
    # OpenSSL's reason, such as "...:PEM routines::no start line".
    check(r.returncode not in (0, 2) and f"'{junk}'" in r.stderr and "routines" in r.stderr,
          f"a certificate that is not PEM: fails with the file and OpenSSL's reason "
          f"({r.stderr.strip()})")

    cert2, key2 = make_cert(d, "other")
    r = run_flags("--tls-cert", cert, "--tls-key", key2)
    check(r.returncode not in (0, 2) and f"'{key2}'" in r.stderr
          and ("mismatch" in r.stderr or "does not match" in r.stderr),
          f"a key of another certificate: fails, saying so ({r.stderr.strip()})")

    if os.geteuid() != 0:
        locked = os.path.join(d, "locked.pem")
        shutil.copy(key, locked)
        os.chmod(locked, 0)
        r = run_flags("--tls-cert", cert, "--tls-key", locked)
        check(r.returncode not in (0, 2) and f"'{locked}'" in r.stderr
              and "Permission denied" in r.stderr,
              f"an unreadable key: fails, naming it ({r.stderr.strip()})")

    r = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=IO_TIMEOUT)
    flags = ("--tls-cert", "--tls-key", "--tls-port", "--tls-handshake-ms")
    check(r.returncode == 0 and all(f in r.stdout for f in flags),
          "--help lists --tls-cert, --tls-key, --tls-port and --tls-handshake-ms")


def test_handshake_timeout(cert, key):
    srv = start_tls(BIN, cert, key, "--tls-handshake-ms", "200")
    if not srv:
        return
    port = srv.port_of("tls")
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as silent:
        # Served: a client that does its handshake at once.
        with tls_connect(port, cert) as s:
            check(exchange(s, b"quick", 5) == b"quick",
                  "--tls-handshake-ms 200: a prompt client is served")
        # The silent one is closed by the server. The wait is well under the
        # default 10 s, so without the flag this fails.
        silent.settimeout(8)
        try:
            got = silent.recv(1)
        except socket.timeout:
            got = None
        except ConnectionResetError:
            got = b""
        check(got == b"", f"--tls-handshake-ms 200: a silent client is closed ({got!r})")
    srv.stop_ok("echo-server with --tls-handshake-ms")
    for args, what in ((["--tls-handshake-ms", "200"], "--tls-handshake-ms without a certificate"),
                       (["--tls-cert", cert, "--tls-key", key, "--tls-handshake-ms", "0"],
                        "--tls-handshake-ms 0"),
                       (["--tls-cert", cert, "--tls-key", key, "--tls-handshake-ms", "x"],
                        "--tls-handshake-ms x")):
        r = run_flags(*args)
        check(r.returncode == 2 and "usage" in r.stderr, f"{what}: usage, status 2 ({r.returncode})")


def run(binaries, d, cert, key):
    global BIN
    BIN = binaries[0]
    test_echo(cert, key)
    test_odd_paths(d, cert, key)
    test_flag_errors(d, cert, key)
    test_handshake_timeout(cert, key)


if __name__ == "__main__":
    tls_main(run, 1, __doc__)
