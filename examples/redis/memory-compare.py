#!/usr/bin/env python3
"""Memory per key of evn's Redis example beside Debian's redis-server.

Each server is started fresh (redis-server with --save '' --appendonly no)
and warmed up with the load's requests all on one key (at least 8 MiB of
them), so that the buffers a server fills on its first traffic (the io_uring backend's
receive buffers, up to 4 MiB a loop, are touched as data passes through them)
are not counted as the keys'. Then its VmRSS is read, the data loaded through
one pipelined connection, and VmRSS read again once the replies are in; the
growth divided by the number of keys is the figure. Two workloads, as the README reports them:

  strings  N keys "key:000000000000" .. with a 3-byte value (redis-benchmark's)
  hashes   N keys "hash:000000000000" .. each a hash of 4 small fields:
           name alice, age 42, city paris, email alice@example.com

    examples/redis/memory-compare.py [--evn build/examples/redis-server]
        [--strings 1000000] [--hashes 100000] [--rounds 1]

Prints one line per server and workload: bytes of RSS per key.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, proc):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not start")


def start(kind, evn):
    port = free_port()
    if kind == "evn":
        cmd = [evn, "--port", str(port)]
    else:
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, wait_port(port, proc)


def enc(args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def requests(kind, start, end):
    if kind == "strings":
        return b"".join(enc([b"SET", b"key:%012d" % i, b"xxx"]) for i in range(start, end))
    return b"".join(enc([b"HSET", b"hash:%012d" % i, b"name", b"alice", b"age", b"42", b"city",
                         b"paris", b"email", b"alice@example.com"]) for i in range(start, end))


def warm_up(sock, kind, n):
    """The load's very requests, each on one key of the same length, parsed
    and run alike, leaving one key (deleted after); repeated to 8 MiB at least."""
    one = b"key:" if kind == "strings" else b"hash:"
    # At least 8 MiB, so that a ring of receive buffers used in turn is
    # gone through whole, twice, whatever the load's size.
    sent = 0
    while sent < 8 << 20:
        for start in range(0, n, 50000):
            end = min(n, start + 50000)
            reqs = re.sub(one + rb"\d{12}", one + b"w" * 12, requests(kind, start, end))
            sock.sendall(reqs)
            sent += len(reqs)
            want, got = (5 if kind == "strings" else 4) * (end - start), 0
            while got < want:
                d = sock.recv(1 << 20)
                if not d:
                    raise RuntimeError("connection closed while warming up")
                got += len(d)
    sock.sendall(enc([b"DEL", one + b"w" * 12]))
    sock.recv(100)


def load(sock, kind, n):
    reply_len = 5 if kind == "strings" else 4  # "+OK\r\n" or ":4\r\n"
    for start in range(0, n, 50000):
        end = min(n, start + 50000)
        sock.sendall(requests(kind, start, end))
        want, got = reply_len * (end - start), 0
        while got < want:
            d = sock.recv(1 << 20)
            if not d:
                raise RuntimeError("connection closed while loading")
            got += len(d)


def measure(server, evn, kind, n):
    proc, sock = start(server, evn)
    try:
        warm_up(sock, kind, n)
        before = rss_kb(proc.pid)
        load(sock, kind, n)
        sock.sendall(enc([b"DBSIZE"]))
        size = sock.recv(100)
        after = rss_kb(proc.pid)
        if size != b":%d\r\n" % n:
            raise RuntimeError(f"{server}: DBSIZE {size!r}, expected {n}")
        return (after - before) * 1024 / n, before, after
    finally:
        sock.close()
        proc.terminate()
        proc.wait()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evn", default=os.path.join(here, "..", "..", "build", "examples",
                                                  "redis-server"))
    ap.add_argument("--strings", type=int, default=1000000)
    ap.add_argument("--hashes", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    print(f"# {out.strip()}")
    for kind, n in (("strings", a.strings), ("hashes", a.hashes)):
        for server in ("evn", "redis"):
            for r in range(a.rounds):
                per, before, after = measure(server, a.evn, kind, n)
                print(f"{kind:8} {server:6} {n:8} keys  RSS {before} -> {after} kB  "
                      f"{per:7.1f} bytes/key", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
