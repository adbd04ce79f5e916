#!/usr/bin/env python3
"""Restarts that drop nothing: SIGUSR2 upgrades of the real http-server
under load.

50 keep-alive clients send requests back to back, and 4 more open a new
connection for every request, while the server is upgraded 10 times in a
row (each new process started by the last one, on the sockets it hands
over). Counted over the whole run, each must be 0: connections refused,
resets, failed responses (wrong status or body, or none at all) and
truncated ones. A keep-alive client whose server is draining gets its
answer with "Connection: close" and then end-of-file, also for a request
that was half sent when the upgrade began. A copy that cannot start (the
program replaced by one that exits at once, or missing) leaves the old
server serving and saying why on stderr; putting the program back, the next
SIGUSR2 works. Every process exits with status 0. Under a stand-in for
systemd's NOTIFY_SOCKET the first server says READY=1 and each upgrade hands
the service on with MAINPID=<the new pid>.

Nothing waits by sleeping: each step waits for a line the servers print or
for the clients to have made progress. The script makes itself a child
subreaper, so each server's successor, orphaned when it exits, is reaped
here and its exit status checked.

In the Windows build it reports itself skipped: Windows has no SIGUSR2, and
evn cannot hand its sockets to another process there.

Usage: test_http_upgrade.py --server PATH [--backend NAME] [--args "..."]
"""

import argparse
import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import evnserver as es  # noqa: E402

UPGRADES = 10
KEEPALIVE_CLIENTS = 50
NEWCONN_CLIENTS = 4
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
BODY = b"Hello World!\r\n"


class Stats:
    def __init__(self):
        self.lock = threading.Condition()
        self.ok = 0
        self.closes = 0
        self.errors = {"refused": 0, "reset": 0, "failed": 0, "truncated": 0}
        self.examples = []

    def count_ok(self, closed):
        with self.lock:
            self.ok += 1
            self.closes += closed
            self.lock.notify_all()

    def error(self, kind, detail):
        with self.lock:
            self.errors[kind] += 1
            if len(self.examples) < 10:
                self.examples.append(f"{kind}: {detail}")

    def wait_ok(self, n):
        """Wait until n more responses came; False if they did not."""
        with self.lock:
            target = self.ok + n
            return self.lock.wait_for(lambda: self.ok >= target, timeout=es.IO_TIMEOUT)


def read_response(s, buf):
    """One response from s (buf: bytes already read after the last one).
    Returns (status, headers, body, rest) or raises EOFError(partial)."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError(buf)
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip().lower()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            raise EOFError(head + b"\r\n\r\n" + rest)
        rest += d
    return status, headers, rest[:n], rest[n:]


def one_exchange(stats, s, buf, request, keepalive=True):
    """Send request, read its response: (closed, rest), or None after
    counting an error."""
    try:
        s.sendall(request)
        status, headers, body, rest = read_response(s, buf)
    except ConnectionRefusedError as e:
        stats.error("refused", repr(e))
        return None
    except (ConnectionResetError, BrokenPipeError) as e:
        stats.error("reset", repr(e))
        return None
    except EOFError as e:
        partial = e.args[0]
        stats.error("truncated" if partial else "failed", f"EOF after {partial[:80]!r}")
        return None
    except (socket.timeout, OSError, ValueError, IndexError) as e:
        stats.error("failed", repr(e))
        return None
    if status != 200 or body != BODY:
        stats.error("failed", f"status {status} body {body[:40]!r}")
        return None
    closed = headers.get("connection") == "close"
    stats.count_ok(closed and keepalive)
    return closed, rest


def keepalive_client(port, stats, stop):
    while not stop.is_set():
        try:
            s = es.connect(port)
        except ConnectionRefusedError as e:
            stats.error("refused", repr(e))
            continue
        except OSError as e:
            stats.error("failed", f"connect: {e!r}")
            continue
        buf = b""
        with s:
            while not stop.is_set():
                r = one_exchange(stats, s, buf, REQUEST)
                if r is None:
                    break
                closed, buf = r
                if closed:
                    # The answer said so: end-of-file must follow.
                    try:
                        if s.recv(1) != b"":
                            stats.error("failed", "bytes after Connection: close")
                    except OSError as e:
                        stats.error("reset", f"after Connection: close: {e!r}")
                    break


def newconn_client(port, stats, stop):
    req = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        try:
            s = es.connect(port)
        except ConnectionRefusedError as e:
            stats.error("refused", repr(e))
            continue
        except OSError as e:
            stats.error("failed", f"connect: {e!r}")
            continue
        with s:
            one_exchange(stats, s, b"", req, keepalive=False)


def reap(pid, first_proc):
    """Exit status of a server process (ours, or adopted as subreaper)."""
    if first_proc is not None and pid == first_proc.pid:
        return first_proc.wait(timeout=es.IO_TIMEOUT * 2)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", ""))
    ap.add_argument("--args", default="")
    a = ap.parse_args()
    es.verbose = True
    if es.skip_on_windows("every upgrade", es.WHY_NO_USR2):
        return es.finish()

    # Orphans (each old server's successor) become our children.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        es.skip("prctl(PR_SET_CHILD_SUBREAPER) failed: cannot follow the generations")
        return es.finish()

    d = es.tmpdir("evn-upgrade-")
    exe = os.path.join(d, "http-server")
    shutil.copy2(a.server, exe)
    args = [exe, "--port", "0"] + (["--backend", a.backend] if a.backend else [])
    args += shlex.split(a.args)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(os.path.join(d, "notify"))
    notify.settimeout(es.IO_TIMEOUT)
    env = dict(os.environ, NOTIFY_SOCKET=os.path.join(d, "notify"))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                            env=env)
    out, err = es.Lines(proc.stdout), es.Lines(proc.stderr)
    stop = threading.Event()
    threads = []
    pids = [proc.pid]
    try:
        m = out.wait_for(r"listening on tcp://\S+:(\d+)$")
        if not es.check(m is not None, "the server prints its address", "\n".join(err.all)):
            return es.finish()
        port = int(m.group(1))
        es.check(out.wait_for(r"\d+ loops?, \w+ backend$") is not None, "the server's banner")
        es.check_eq(notify.recv(256), b"READY=1", "the server tells systemd it is ready")

        stats = Stats()
        for _ in range(KEEPALIVE_CLIENTS):
            threads.append(threading.Thread(target=keepalive_client, args=(port, stats, stop)))
        for _ in range(NEWCONN_CLIENTS):
            threads.append(threading.Thread(target=newconn_client, args=(port, stats, stop)))
        for t in threads:
            t.start()
        es.check(stats.wait_ok(500), "the clients are served before any upgrade")

        for i in range(UPGRADES):
            cur = pids[-1]
            half = None
            if i == 3:
                # A request half sent when the upgrade begins.
                half = es.connect(port)
                half.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
            if i == 5:
                upgrade_fails(exe, cur, err)
            os.kill(cur, signal.SIGUSR2)
            m = out.wait_for(r"^upgrade: pid (\d+) serves now; pid (\d+) drains and exits$")
            if not es.check(m is not None and int(m.group(2)) == cur,
                            f"upgrade {i + 1}: a new process serves, pid {cur} drains",
                            "\n".join(err.all[-20:])):
                break
            pids.append(int(m.group(1)))
            # The new process says READY=1 too (systemd ignores a process
            # that is not the main one); the old one hands the service on.
            got = [notify.recv(256), notify.recv(256)]
            es.check(f"MAINPID={pids[-1]}".encode() in got,
                     f"upgrade {i + 1}: systemd is told MAINPID={pids[-1]}", f"{got!r}")
            if half is not None:
                half.sendall(b"\r\n")
                data, end = es.read_until_eof(half)
                half.close()
                es.check(data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data
                         and data.endswith(BODY) and end == "eof",
                         "the request in flight in the old server gets its answer with "
                         "Connection: close, then end-of-file", f"{data!r} {end}")
            es.check(stats.wait_ok(500), f"upgrade {i + 1}: the clients are served after it")

        stop.set()
        for t in threads:
            t.join(es.IO_TIMEOUT)
        with stats.lock:
            print(f"{stats.ok} responses, {stats.closes} keep-alive ones with Connection: close, "
                  f"across {len(pids)} processes", flush=True)
            for kind, n in stats.errors.items():
                es.check_eq(n, 0, f"{kind} connections or responses over {UPGRADES} upgrades")
            if stats.examples:
                print("\n".join(stats.examples), flush=True)
            es.check(stats.closes >= UPGRADES,
                     "keep-alive clients of each draining server were told Connection: close",
                     f"{stats.closes}")

        os.kill(pids[-1], signal.SIGTERM)
        for pid in pids:
            es.check_eq(reap(pid, proc), 0, f"pid {pid} exits with status 0")
        text = "\n".join(err.all)
        es.check("runtime error:" not in text and "Sanitizer" not in text,
                 "no sanitizer report", text[-3000:])
    finally:
        stop.set()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)
    return es.finish()


def upgrade_fails(exe, cur, err):
    """Two copies that cannot start: pid cur says why and serves on."""
    shutil.move(exe, exe + ".real")
    with open(exe, "w") as f:
        f.write("#!/bin/sh\necho 'not a server' >&2\nexit 3\n")
    os.chmod(exe, 0o755)
    os.kill(cur, signal.SIGUSR2)
    m = err.wait_for(r"upgrade failed: (.*); pid (\d+) keeps serving$")
    es.check(m is not None and "exited with status 3" in m.group(1) and int(m.group(2)) == cur,
             "a copy that exits at once: the old server says why and serves on",
             m.group(0) if m else "\n".join(err.all[-10:]))
    os.unlink(exe)
    os.kill(cur, signal.SIGUSR2)
    m = err.wait_for(r"upgrade failed: (.*); pid (\d+) keeps serving$")
    es.check(m is not None and "cannot execute" in m.group(1) and int(m.group(2)) == cur,
             "a missing program: the old server says why and serves on",
             m.group(0) if m else "\n".join(err.all[-10:]))
    shutil.move(exe + ".real", exe)


if __name__ == "__main__":
    es.main_guard(main)
