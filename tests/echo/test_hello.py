#!/usr/bin/env python3
"""examples/hello.c, the template people copy, frames its input as lines
whatever pieces it arrives in: a line split across reads is echoed whole,
"quit" in the middle of a read closes after the lines before it, a line
split inside "quit" still closes, and an over-long line is refused.

hello takes its address as its only argument; it gets a unix socket in a
private directory and prints nothing, so the test waits for the socket to
accept (a bounded wait for the server to come up, nothing else).

The Windows build's hello runs under Wine, which has no unix sockets: it
gets a TCP port on 127.0.0.1 instead, one the system just handed out as
free (hello prints no address to read a port 0's from); should another
program take it first, hello fails to bind and exits, and the test starts
it again on another."""
import os
import socket
import subprocess
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evnserver import (IO_TIMEOUT, WINDOWS, check, check_eq, child_env, command,  # noqa: E402
                       finish, main_guard, tmpdir)

BIN = sys.argv[1]


def connect_when_up(addr, proc):
    """A connection to addr (a unix socket's path, or a (host, port) pair)
    once hello accepts there; raises if hello exits first or never does."""
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        s = socket.socket(socket.AF_INET if isinstance(addr, tuple) else socket.AF_UNIX)
        s.settimeout(IO_TIMEOUT)
        try:
            s.connect(addr)
            return s
        except OSError:
            s.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def read_to_eof(s):
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start():
    """hello on a fresh address: (process, the address to connect to)."""
    if not WINDOWS:
        path = os.path.join(tmpdir(), "hello.sock")
        return subprocess.Popen(command(BIN, "unix://" + path)), path
    for _ in range(5):
        addr = ("127.0.0.1", free_port())
        proc = subprocess.Popen(command(BIN, f"tcp://{addr[0]}:{addr[1]}"), env=child_env())
        try:
            connect_when_up(addr, proc).close()
            return proc, addr
        except OSError:
            proc.kill()
            proc.wait()
    raise OSError("hello did not serve on any of five free ports")


def main():
    proc, addr = start()
    try:
        with connect_when_up(addr, proc) as s:
            s.sendall(b"hel")
            s.sendall(b"lo\nwor")
            check_eq(s.recv(6), b"hello\n", "a line in two pieces comes back whole")
            s.sendall(b"ld\r\nbye\nqu")
            s.sendall(b"it\nlost\n")
            check_eq(read_to_eof(s), b"world\r\nbye\n",
                     "quit split across reads closes, after the lines before it")
        with connect_when_up(addr, proc) as s:
            s.sendall(b"one\nquit\r\ntwo\n")
            check_eq(read_to_eof(s), b"one\n", "quit\\r\\n after a line in the same read closes")
        with connect_when_up(addr, proc) as s:
            s.sendall(b"x" * 5000)
            check_eq(read_to_eof(s), b"", "a line over 4096 bytes is refused")
        check(proc.poll() is None, "hello still serves")
    finally:
        proc.terminate()
        proc.wait()
    return finish("hello")


if __name__ == "__main__":
    main_guard(main)
