#!/usr/bin/env python3
"""Integration tests of evn's Redis example server (examples/redis).

The real binary is started on an ephemeral port (--port 0; the port is read
from the line it prints) and driven by raw sockets, by Debian's python3-redis
(`import redis`), by redis-cli and by redis-benchmark. Wherever a real
redis-server (Debian's package) is installed, the test starts one itself on a
free port and every request of the comparison tables is sent to both: the
replies must be the same, byte for byte.

A missing redis-server, redis-cli, redis-benchmark or python3-redis fails the
test, unless EVN_ALLOW_MISSING_CLIENTS=1, which turns each into a printed
note and a skipped part.

No sleeps are used to synchronise: replies are read until complete, a closed
connection is seen as EOF, and waiting for a key to expire is a bounded loop
of requests. Timeouts exist only to turn a hang into a failure.

    test_redis_integration.py --server build/examples/redis-server [--backend poll]

In the Windows build the .exe runs under Wine and is stopped with Ctrl-C (a
SIGINT, which Wine delivers as one). What cannot apply there skips, saying
why: the unix socket, --reuseport, INFO process_id against the Linux pid,
and the memory comparison.
"""

import argparse
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evnserver  # noqa: E402
from evnserver import (IO_TIMEOUT, Server, check, check_eq, connect,  # noqa: E402
                       finish, main_guard, missing, run_part, short, signal_name,
                       skip_on_windows)
import redis_cases  # noqa: E402  (this directory, first on sys.path)


# How Server.stop() stops a server, for the checks' names.
STOPPED_BY = signal_name(evnserver.STOP_SIGNAL)

# ---------------------------------------------------------------- protocol


def encode(args):
    """A request in the multibulk form."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A raw connection that reads whole RESP replies, as bytes."""

    def __init__(self, port, host="127.0.0.1", path=None):
        self.sock = connect(port, host, path)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._fill()

    def _take(self, n):
        while len(self.buf) - self.pos < n:
            self._fill()
        d = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return d

    def reply(self):
        """One whole reply, as the bytes it was sent as."""
        start = self.pos
        self._reply()
        raw = bytes(self.buf[start:self.pos])
        del self.buf[:self.pos]
        self.pos = 0
        return raw

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-", b":"):
            return
        if kind == b"$":
            n = int(rest)
            if n >= 0:
                self._take(n + 2)
            return
        if kind == b"*":
            for _ in range(max(int(rest), 0)):
                self._reply()
            return
        raise ValueError(f"bad reply line {line!r}")

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def call(self, *args):
        self.send(encode(args))
        return self.reply()

    def rest_until_eof(self):
        """Whatever comes until the peer closes: (bytes, saw_eof)."""
        data = bytes(self.buf[self.pos:])
        self.buf.clear()
        self.pos = 0
        try:
            while True:
                d = self.sock.recv(1 << 16)
                if not d:
                    return data, True
                data += d
        except (socket.timeout, ConnectionResetError):
            return data, False


# ---------------------------------------------------------------- servers


def real_redis_binary():
    for path in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if path and os.path.exists(path) and "examples" not in path:
            return path
    return None


class RealRedis:
    """Debian's redis-server, on a free port, saving nothing."""

    def __init__(self, *extra):
        binary = real_redis_binary()
        for _ in range(10):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            self.proc = subprocess.Popen(
                [binary, "--save", "", "--appendonly", "no", "--port", str(port),
                 "--bind", "127.0.0.1", "--daemonize", "no", *extra],
                # Unbuffered: a buffered readline could take several log lines
                # at once, and select() would then wait for more that never come.
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
            if self._ready():
                self.port = port
                return
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("could not start redis-server")

    def _ready(self):
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not r:
                return False
            line = self.proc.stdout.readline()
            if not line:
                return False  # it exited, most likely the port was taken meanwhile
            if b"Ready to accept connections" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return True
        return False

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- tables
#
# A case is a list of requests sent in one write; each request is a list of
# arguments (sent as multibulk) or (raw bytes, number of replies expected).
# Every case starts on an empty store. Where a case carries expected replies
# (pinned), they are checked even without a real redis-server.

BIG = "9223372036854775807"

CASES = [
    ("ping", [["PING"], ["ping", "hello"], ["PiNg", ""], ["PING", "a", "b"]]),
    ("echo", [["ECHO", "x y"], ["ECHO"], ["ECHO", "a", "b"], ["echo", "a\r\nb"]]),
    ("set get", [["SET", "k", "v"], ["GET", "k"], ["GET", "nope"], ["SET", "e", ""], ["GET", "e"],
                 ["SET", "k", "w"], ["GET", "k"]]),
    ("binary", [["SET", b"k\x00\r\n\xff", b"v\x00\r\n\xfe"], ["GET", b"k\x00\r\n\xff"],
                ["GET", b"k\x00"], ["EXISTS", b"k\x00\r\n\xff"], ["DEL", b"k\x00\r\n\xff"]]),
    ("set nx xx", [["SET", "k", "1", "NX"], ["SET", "k", "2", "NX"], ["GET", "k"],
                   ["SET", "k", "3", "XX"], ["SET", "n", "3", "XX"], ["GET", "k"], ["GET", "n"],
                   ["SET", "k", "4", "nx", "xx"], ["SET", "k", "5", "XX", "NX"],
                   ["SET", "k", "6", "NX", "NX"]]),
    ("set get option", [["SET", "k", "1", "GET"], ["SET", "k", "2", "GET"], ["GET", "k"],
                        ["SET", "k", "3", "NX", "GET"], ["SET", "m", "1", "XX", "GET"],
                        ["GET", "k"], ["GET", "m"]]),
    ("set expiry options", [
        ["SET", "k", "v", "EX", "100"], ["TTL", "k"], ["SET", "k", "v"], ["TTL", "k"],
        ["SET", "k", "v", "PX", "100000"], ["TTL", "k"],
        ["SET", "k", "w", "KEEPTTL"], ["TTL", "k"], ["GET", "k"],
        ["SET", "k", "v", "EX", "0"], ["SET", "k", "v", "EX", "-1"], ["SET", "k", "v", "PX", "0"],
        ["SET", "k", "v", "EX", "x"], ["SET", "k", "v", "EX", "1.5"], ["SET", "k", "v", "EX"],
        ["SET", "k", "v", "EX", "10", "PX", "10"], ["SET", "k", "v", "KEEPTTL", "EX", "10"],
        ["SET", "k", "v", "EX", "10", "KEEPTTL"], ["SET", "k", "v", "EX", "5", "EX", "100"],
        ["TTL", "k"], ["SET", "k", "v", "EX", "0", "PX", "5"],
        ["SET", "k", "v", "EX", "x", "NX", "XX"], ["SET", "k", "v", "PX", BIG],
        ["SET", "k", "v", "EX", "9223372036854775"], ["SET", "k", "v", "EX", "9223372036854"],
        ["SET", "k", "v", "EXAT", "1"], ["GET", "k"], ["EXISTS", "k"],
        ["SET", "k", "v", "PXAT", "1", "EXAT", "1"], ["SET", "k", "v", "KEEPTTL", "KEEPTTL"],
        ["SET", "k", "v", "FOO"], ["SET", "k"], ["SET"], ["DBSIZE"]]),
    ("ttl", [["TTL", "nope"], ["PTTL", "nope"], ["SET", "k", "v"], ["PTTL", "k"], ["TTL"],
             ["TTL", "a", "b"]]),
    ("del exists", [["MSET", "a", "1", "b", "2", "c", "3"], ["EXISTS", "a", "a", "b", "zz"],
                    ["DEL", "a", "a", "b", "zz"], ["EXISTS", "a", "b", "c"], ["DEL"], ["EXISTS"],
                    ["DBSIZE"]]),
    ("incr decr", [["INCR", "n"], ["INCR", "n"], ["DECR", "n"], ["DECR", "m"],
                   ["INCRBY", "n", "100"], ["INCRBY", "n", "-1000"], ["DECRBY", "n", "5"],
                   ["DECRBY", "n", "-5"], ["GET", "n"], ["INCRBY", "n", "x"],
                   ["INCRBY", "n", "1.5"], ["INCRBY", "n", "9223372036854775808"],
                   ["DECRBY", "n", "-9223372036854775808"], ["INCR"], ["INCRBY", "n"],
                   ["DECR", "a", "b"]]),
    ("incr values", [["SET", "a", " 1"], ["INCR", "a"], ["SET", "a", "-0"], ["INCR", "a"],
                     ["SET", "a", "00"], ["INCR", "a"], ["SET", "a", "+1"], ["INCR", "a"],
                     ["SET", "a", "1" * 30], ["INCR", "a"], ["SET", "a", "abc"], ["INCR", "a"],
                     ["SET", "a", BIG], ["INCR", "a"], ["DECR", "a"],
                     ["SET", "a", "-9223372036854775808"], ["DECR", "a"], ["INCR", "a"],
                     ["SET", "a", "9"], ["INCR", "a"], ["INCRBY", "a", "99999999"], ["GET", "a"],
                     ["SET", "t", "5", "EX", "100"], ["INCR", "t"], ["TTL", "t"]]),
    ("mset mget", [["MSET", "a", "1", "b", "2", "a", "3"], ["MGET", "a", "b", "c", "a"],
                   ["MSET", "a"], ["MSET", "a", "1", "b"], ["MSET"], ["MGET"],
                   ["MSET", "x", "", "y", b"\x00"], ["MGET", "x", "y"], ["DBSIZE"]]),
    ("dbsize flush", [["DBSIZE"], ["SET", "a", "1"], ["SET", "b", "1"], ["DBSIZE"],
                      ["FLUSHDB"], ["DBSIZE"], ["SET", "a", "1"], ["FLUSHALL", "SYNC"],
                      ["FLUSHALL", "ASYNC"], ["FLUSHDB", "async"], ["FLUSHDB", "x"],
                      ["FLUSHALL", "ASYNC", "SYNC"], ["DBSIZE", "x"], ["DBSIZE"]]),
    ("unknown commands", [["FOO"], ["FOO", "a", "b"], ["foo", "a" * 200, "b" * 200, "c"],
                          ["FOO" * 50, "a"], ["FOO\r\nX", "a\r\nb", "c\nd"],
                          ["FOO"] + ["x%d" % i for i in range(40)],
                          ["FOO"] + ["x" * 100] * 40, [b"GE\x00T", "a"], [b"FOO", b"a\x00b", "c"],
                          [""], ["GETT", "a"], ["%s%d", "%n"]]),
    ("arity", [["GET"], ["GET", "a", "b"], ["SET", "a"], ["DEL"], ["MGET"], ["INCR"],
               ["INCRBY", "a"], ["ECHO"], ["DBSIZE", "a"], ["SELECT"], ["TTL"], ["EXISTS"]]),
    ("client", [["CLIENT"], ["CLIENT", "SETNAME"], ["CLIENT", "SETNAME", "a", "b"],
                ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "conn-1"], ["CLIENT", "GETNAME"],
                ["client", "setname", "a b"], ["CLIENT", "SETNAME", "a\x80"],
                ["CLIENT", "SETNAME", "a~!"], ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", ""],
                ["CLIENT", "GETNAME"], ["CLIENT", "GETNAME", "x"], ["CLIENT", "FOO"],
                ["CLIENT", "foo\r\nbar"], ["CLIENT", "x" * 200], ["CLIENT", "ID", "x"]]),
    ("config", [["CONFIG", "GET", "save"], ["CONFIG", "GET", "appendonly"],
                ["CONFIG", "GET", "SAVE"],
                ["CONFIG", "GET", "save", "save"], ["CONFIG", "GET", "nonexistent"],
                ["CONFIG", "GET", "appendon*"], ["CONFIG", "GET"], ["CONFIG"],
                ["CONFIG", "FOO"]]),
    ("select", [["SELECT", "0"], ["SELECT", "-1"], ["SELECT", "x"], ["SELECT", "99999999999"],
                ["SELECT", "1.0"]]),
    ("command errors", [["COMMAND", "FOO"], ["COMMAND", "COUNT", "x"], ["COMMAND", "INFO", "nosuch"],
                        ["COMMAND", "DOCS", "nosuch"]]),
    ("shutdown refused", [["SHUTDOWN", "ABORT"], ["SHUTDOWN", "foo"], ["SHUTDOWN", "NOSAVE", "x"],
                          ["SHUTDOWN", "SAVE", "NOSAVE"], ["PING"]]),
    ("inline", [(b"PING\r\n", 1), (b"ping hello\r\n", 1), (b"SET a b\n", 1), (b"GET a\r\n", 1),
                (b"  set   x\t'y z'  \r\n", 1), (b"GET x\r\n", 1),
                (b'SET "\\x41\\n\\t\\\\" \'a\\\'b\'\r\n', 1), (b'GET "A\\n\\t\\\\"\r\n', 1),
                (b'ECHO "\\x4"\r\n', 1), (b'ECHO \\x41\r\n', 1), (b'ECHO "\\x41\\x4g"\r\n', 1),
                (b'ECHO a"b c"\r\n', 1), (b"ECHO a\x0bb\r\n", 1), (b"ECHO a\tb\r\n", 1),
                (b"\r\n", 0), (b"   \r\n", 0), (b"\n", 0), (b"PING\r\r\n", 1),
                (b"ECHO \"\" ''\r\n", 1), (b"FOO bar\r\n", 1)]),
    ("multibulk quirks", [(b"*0\r\n", 0), (b"*-1\r\n", 0), (b"*-5\r\n", 0),
                          (b"*1\r\n$4\r\nPINGxx", 1), (b"*1\rx$4\r\nPING\r\n", 1),
                          (b"*1\r\n$4\rxPING\r\n", 1), (b"*1\r\n$0\r\n\r\n", 1),
                          (b"*1\r\n$1\r\n\r\n\r\n", 1), (b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", 1)]),
]

# Replies pinned here, checked with or without a real redis-server.
PINNED = [
    (["GET"], b"-ERR wrong number of arguments for 'get' command\r\n"),
    (["FOO", "a", "b"], b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"),
    (["INCRBY", "k", "x"], b"-ERR value is not an integer or out of range\r\n"),
    (["SET", "k", "v", "NX", "XX"], b"-ERR syntax error\r\n"),
    (["SET", "k", "v", "EX", "0"], b"-ERR invalid expire time in 'set' command\r\n"),
    (["CONFIG", "GET", "save"], b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
    (["CONFIG", "GET", "appendonly"], b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"),
    (["CLIENT", "SETNAME", "x"], b"+OK\r\n"),
    (["CLIENT", "SETNAME"], b"-ERR wrong number of arguments for 'client|setname' command\r\n"),
    (["PING"], b"+PONG\r\n"),
    (["ECHO", "hi"], b"$2\r\nhi\r\n"),
]

# Requests that break the protocol: Redis replies with an error and closes.
# (bytes, pinned reply or None). Commands before the error are answered.
PROTOCOL_ERRORS = [
    (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*3000000000\r\n", None),
    (b"*2147483648\r\n", None),
    (b"*+1\r\n$4\r\nPING\r\n", None),
    (b"*01\r\n$4\r\nPING\r\n", None),
    (b"*-0\r\nPING\r\n", None),
    (b"*1 \r\n$4\r\nPING\r\n", None),
    (b"*1\r\nx3\r\nfoo\r\n", b"-ERR Protocol error: expected '$', got 'x'\r\n"),
    (b"*1\r\n\r\n", None),
    (b"*1\r\n\n\r\n", None),
    (b"*1\r$4\r\nPING\r\n", None),
    (b"*1\r\n$x\r\nfoo\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b"*1\r\n$-1\r\n", None),
    (b"*1\r\n$04\r\nPING\r\n", None),
    (b"*1\r\n$ 4\r\nPING\r\n", None),
    (b"*1\r\n$+4\r\nPING\r\n", None),
    (b"*1\r\n$" + b"1" * 30 + b"\r\n", None),
    (b"PING\r\n*1\r\n$x\r\nPING\r\n", b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"),
    (b'PING "a\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    (b'ECHO "a"b\r\n', None),
    (b"ECHO 'a\\'b'c\r\n", None),
    (b"A" * 70000, b"-ERR Protocol error: too big inline request\r\n"),
    (b"*" + b"1" * 70000, b"-ERR Protocol error: too big mbulk count string\r\n"),
    (b"*1\r\n$" + b"1" * 70000, b"-ERR Protocol error: too big bulk count string\r\n"),
    (b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$y\r\n", None),
]


def run_case(conn, case):
    conn.call("FLUSHALL")
    data = b""
    nreplies = 0
    for req in case:
        if isinstance(req, tuple):
            data += req[0]
            nreplies += req[1]
        else:
            data += encode(req)
            nreplies += 1
    conn.send(data)
    replies = conn.replies(nreplies)
    # Replies in the order of Redis's hash tables are compared sorted.
    reqs = [r for r in case for _ in range(r[1] if isinstance(r, tuple) else 1)]
    replies = [redis_cases.normalize(r, raw) for r, raw in zip(reqs, replies)]
    # Nothing more may come: a PING answered next is the proof.
    replies.append(conn.call("PING"))
    return replies


def protocol_error(port, data):
    c = Conn(port)
    c.send(data)
    out, eof = c.rest_until_eof()
    c.close()
    return out, eof


# ---------------------------------------------------------------- parts


def part_compare(port, real):
    """The tables, against the pins and, if present, a real redis-server."""
    ours = Conn(port)
    theirs = Conn(real.port) if real else None
    for name, case in CASES + redis_cases.CASES:
        got = run_case(ours, case)
        check(len(got) > 0, f"case '{name}' answered")
        if theirs:
            want = run_case(theirs, case)
            for i, (g, w) in enumerate(zip(got, want)):
                check_eq(g, w, f"case '{name}' reply {i} (vs redis-server)")
    # Several parameters come in the order of Redis's hash table, which varies.
    for conn, who in ((ours, ""), (theirs, " (redis-server)")):
        if conn:
            got = conn.call("CONFIG", "GET", "save", "appendonly")
            pairs = re.findall(rb"\$\d+\r\n([^\r]*)\r\n\$\d+\r\n([^\r]*)\r\n", got)
            check(got.startswith(b"*4\r\n") and dict(pairs) == {b"save": b"", b"appendonly": b"no"},
                  "CONFIG GET save appendonly" + who, short(got))
    for req, want in PINNED:
        ours.call("FLUSHALL")
        check_eq(ours.call(*req), want, f"pinned {req}")
        if theirs:
            theirs.call("FLUSHALL")
            check_eq(theirs.call(*req), want, f"pinned {req} (redis-server agrees)")
    ours.close()
    if theirs:
        theirs.close()


def part_protocol_errors(port, real):
    """Each error: Redis's message, then the connection closes; others live on."""
    bystander = Conn(port)
    bystander.call("SET", "survivor", "yes")
    for data, pinned in PROTOCOL_ERRORS:
        out, eof = protocol_error(port, data)
        what = f"protocol error {short(data[:40])}"
        check(eof, f"{what}: connection closed")
        check(b"-ERR Protocol error: " in out, f"{what}: error reply", short(out))
        if pinned is not None:
            check_eq(out, pinned, what)
        if real:
            want, _ = protocol_error(real.port, data)
            check_eq(out, want, f"{what} (vs redis-server)")
        check_eq(bystander.call("GET", "survivor"), b"$3\r\nyes\r\n",
                 f"{what}: another connection still works")
    bystander.close()


def part_pipeline(port, real):
    """1000 commands in one write, answered in order."""
    reqs = []
    for i in range(250):
        reqs += [["SET", f"p{i}", f"v{i}"], ["GET", f"p{i}"], ["INCR", "pc"], ["PING"]]
    data = b"".join(encode(r) for r in reqs)
    c = Conn(port)
    c.call("FLUSHALL")
    c.send(data)
    got = c.replies(len(reqs))
    ok = all(got[4 * i] == b"+OK\r\n" and got[4 * i + 1] == b"$%d\r\nv%d\r\n" % (len(f"v{i}"), i)
             and got[4 * i + 2] == b":%d\r\n" % (i + 1) and got[4 * i + 3] == b"+PONG\r\n"
             for i in range(250))
    check(ok, "1000 pipelined commands answered in order", short(got[:8]))
    if real:
        r = Conn(real.port)
        r.call("FLUSHALL")
        r.send(data)
        check_eq(got, r.replies(len(reqs)), "1000 pipelined commands (vs redis-server)")
        r.close()
    # The same, inline, and cut into pieces at awkward places.
    inline = b"".join(b"SET q%d %d\r\nGET q%d\n" % (i, i, i) for i in range(500))
    for i in range(0, len(inline), 997):
        c.send(inline[i:i + 997])
    got = c.replies(1000)
    check(all(got[2 * i] == b"+OK\r\n" and got[2 * i + 1] == b"$%d\r\n%d\r\n" % (len(str(i)), i)
              for i in range(500)), "1000 pipelined inline commands sent in pieces")
    c.close()


def part_split(port):
    """A request cut at every byte boundary still works (evn_keep)."""
    c = Conn(port)
    req = encode(["SET", "split", "x" * 300]) + encode(["GET", "split"])
    for cut in list(range(1, 40)) + [len(req) // 2, len(req) - 1]:
        c.send(req[:cut])
        # A round trip on another connection gives the server time to read
        # the first part on its own (likely, not certain: either way the
        # replies must be right).
        other = Conn(port)
        other.call("PING")
        other.close()
        c.send(req[cut:])
        got = c.replies(2)
        check_eq(got, [b"+OK\r\n", b"$300\r\n" + b"x" * 300 + b"\r\n"], f"request cut at {cut}")
    c.close()


def part_interleaved_cuts(port):
    """Commands cut off on several connections at once, and each connection's
    own state: the server parses with one parser per loop and gives a
    connection a parser of its own only while a command of its is cut off."""
    a, b = Conn(port), Conn(port)
    # More arguments than the parser holds without allocating, cut inside.
    keys = [f"ic{i}" for i in range(20)]
    mset = encode(["MSET"] + [x for k in keys for x in (k, k.upper() * 3)])
    mget = encode(["MGET"] + keys)
    ask = encode(["GET", "ic3"])
    # b's GET may run before or after a's MSET: the same value either way.
    check_eq(a.call("SET", "ic3", "IC3IC3IC3"), b"+OK\r\n", "SET before the cuts")
    for cut_a in (5, len(mset) // 2, len(mset) - 1):
        cut_b = len(ask) // 2
        a.send(mset[:cut_a])
        b.send(ask[:cut_b])
        a.send(mset[cut_a:] + mget[:7])
        b.send(ask[cut_b:])
        a.send(mget[7:])
        got_a = a.replies(2)
        got_b = b.replies(1)
        want_mget = b"*20\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(k) * 3, k.upper().encode() * 3)
                                          for k in keys)
        check_eq(got_a, [b"+OK\r\n", want_mget], f"MSET cut at {cut_a}, then MGET cut, interleaved")
        check_eq(got_b, [b"$9\r\nIC3IC3IC3\r\n"], f"GET cut in two beside it ({cut_a})")
    # CLIENT ID and the name stay with their connection across commands.
    ida, idb = a.call("CLIENT", "ID"), b.call("CLIENT", "ID")
    check(ida != idb, "two connections have different CLIENT IDs", f"{ida!r} {idb!r}")
    check_eq(a.call("CLIENT", "ID"), ida, "CLIENT ID is the same on the next call")
    check_eq(a.call("CLIENT", "SETNAME", "alpha"), b"+OK\r\n", "SETNAME")
    req = encode(["CLIENT", "GETNAME"])
    a.send(req[:9])
    check_eq(b.call("CLIENT", "GETNAME"), b"$-1\r\n", "the other connection has no name")
    a.send(req[9:])
    check_eq(a.replies(1), [b"$5\r\nalpha\r\n"], "the name survives a cut-off command")
    check_eq(a.call("CLIENT", "ID"), ida, "CLIENT ID kept while named")
    check_eq(a.call("CLIENT", "SETNAME", ""), b"+OK\r\n", "SETNAME '' clears the name")
    check_eq(a.call("CLIENT", "GETNAME"), b"$-1\r\n", "no name after clearing it")
    check_eq(a.call("CLIENT", "ID"), ida, "CLIENT ID kept after the name is cleared")
    # A cut-off command that turns out to be a protocol error.
    b.send(b"*2\r\n$3\r\nGET\r\n$")
    b.send(b"x\r\n")
    got, eof = b.rest_until_eof()
    check_eq(got, b"-ERR Protocol error: invalid bulk length\r\n", "error after a cut")
    check(eof, "closed after the error in a cut-off command")
    check_eq(a.call("DEL", *keys), b":20\r\n", "the other connection still served")
    a.close()
    b.close()


def part_big_value(port):
    """A 10 MB value, SET then GET, arrives over many reads."""
    value = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    c = Conn(port)
    check_eq(c.call("SET", "big", value), b"+OK\r\n", "SET 10 MB")
    got = c.call("GET", "big")
    check(got == b"$%d\r\n" % len(value) + value + b"\r\n", "GET 10 MB returns the same bytes",
          f"{len(got)} bytes")
    check_eq(c.call("DEL", "big"), b":1\r\n", "DEL 10 MB")
    c.close()


def part_backpressure(port):
    """A client that pipelines more output than it reads (64 GETs of 1 MB) gets it all."""
    value = os.urandom(1024 * 1024)
    c = Conn(port)
    check_eq(c.call("SET", "bp", value), b"+OK\r\n", "SET 1 MB")
    n = 64
    c.send(encode(["GET", "bp"]) * n + encode(["PING"]))
    want = b"$%d\r\n" % len(value) + value + b"\r\n"
    got = c.replies(n + 1)
    check(all(g == want for g in got[:n]) and got[n] == b"+PONG\r\n",
          f"{n} pipelined GETs of 1 MB, read only afterwards, all answered in order")
    check_eq(c.call("DEL", "bp"), b":1\r\n", "connection usable after the pause")
    c.close()


def part_max_bulk(binary, backend, real_cls):
    """--max-bulk: a bulk one byte over it is 'invalid bulk length'."""
    srv = Server(binary, "--max-bulk", "1048576", backend=backend)
    real = real_cls("--proto-max-bulk-len", "1048576") if real_cls else None
    try:
        for n, ok in ((1048576, True), (1048577, False)):
            # A refused bulk is sent without its body: the server closes without
            # reading it, and unread input would make the close a reset.
            head = b"*3\r\n$3\r\nSET\r\n$1\r\nm\r\n$%d\r\n" % n
            data = head + b"v" * n + b"\r\n" if ok else head
            c = Conn(srv.port)
            c.send(data)
            if ok:
                check_eq(c.reply(), b"+OK\r\n", f"bulk of {n} with --max-bulk 1048576")
            else:
                out, eof = c.rest_until_eof()
                check(eof and out == b"-ERR Protocol error: invalid bulk length\r\n",
                      f"bulk of {n} with --max-bulk 1048576 refused", short(out))
                if real:
                    want, _ = protocol_error(real.port, data)
                    check_eq(out, want, f"bulk of {n} refused (vs redis-server)")
            c.close()
    finally:
        check_eq(srv.stop(), 0, f"server with --max-bulk exits 0 on {STOPPED_BY}")
        if real:
            real.stop()


def part_max_clients(binary, backend):
    """--maxclients 2: a third client gets Redis's error and is closed; once one
    of the two leaves, a new client is served."""
    srv = Server(binary, "--maxclients", "2", backend=backend)
    try:
        a, b = Conn(srv.port), Conn(srv.port)
        for c in (a, b):
            c.send(b"PING\r\n")
            check_eq(c.reply(), b"+PONG\r\n", "a client under --maxclients 2 is served")
        third = Conn(srv.port)
        out, eof = third.rest_until_eof()
        check(eof and out == b"-ERR max number of clients reached\r\n",
              "the third client is told the limit is reached, then closed", short(out))
        third.close()
        a.close()
        # The slot frees once the server has seen a's close: ask b to make sure.
        b.send(b"PING\r\n")
        check_eq(b.reply(), b"+PONG\r\n", "the second client is still served")
        for _ in range(200):
            c = Conn(srv.port)
            c.send(b"PING\r\n")
            out = c.reply()
            c.close()
            if out == b"+PONG\r\n":
                break
        check_eq(out, b"+PONG\r\n", "a new client is served once one has left")
        b.close()
    finally:
        check_eq(srv.stop(), 0, f"server with --maxclients exits 0 on {STOPPED_BY}")


def part_expiry(port):
    """PX 100: gone soon after, by lazy (GET) and by active (DBSIZE) expiry."""
    c = Conn(port)
    c.call("FLUSHALL")
    check_eq(c.call("SET", "e1", "v", "PX", "100"), b"+OK\r\n", "SET PX 100")
    check_eq(c.call("SET", "e2", "v", "PX", "100"), b"+OK\r\n", "SET PX 100 (second key)")
    check_eq(c.call("SET", "keep", "v", "EX", "1000"), b"+OK\r\n", "SET EX 1000")
    pttl = int(c.call("PTTL", "e1")[1:-2])
    check(-2 <= pttl <= 100 and pttl != -1, "PTTL after PX 100 is at most 100", str(pttl))
    deadline = time.monotonic() + 20
    gone = False
    while time.monotonic() < deadline and not gone:
        gone = c.call("GET", "e1") == b"$-1\r\n"
    check(gone, "a PX 100 key is gone (GET) within 20 s")
    # e2 is never touched: only the active expiry on the tick can free it.
    deadline = time.monotonic() + 20
    size = None
    while time.monotonic() < deadline and size != b":1\r\n":
        size = c.call("DBSIZE")
    check_eq(size, b":1\r\n", "untouched expired key freed by active expiry (DBSIZE 1)")
    check_eq(c.call("GET", "keep"), b"$1\r\nv\r\n", "EX 1000 key still there")
    check(c.call("TTL", "keep") in (b":1000\r\n", b":999\r\n"), "TTL of EX 1000")
    c.close()


def wait_gone(c, key, at_ms, what, limit=20):
    """Ask for the key until it is gone (a bounded loop of requests). at_ms
    is the latest its expiry time can be, on this machine's clock, which is
    the server's: once that millisecond is over, the key must be gone at
    the next request (and until then it may be there or not)."""
    deadline = time.monotonic() + limit
    got = None
    while time.monotonic() < deadline:
        late = time.time() * 1000 >= at_ms + 1
        got = c.call("EXISTS", key)
        if got == b":0\r\n" or late:
            break
    check_eq(got, b":0\r\n", what)


def part_expiry_commands(port):
    """Each way of setting an expiry: the key vanishes, and TTL/PTTL on the way
    are within the clock's step of what was asked."""
    c = Conn(port)
    c.call("FLUSHALL")
    now_ms = int(time.time() * 1000)
    setters = [("EXPIRE", ["EXPIRE", "k1", "1"], 1000), ("PEXPIRE", ["PEXPIRE", "k2", "300"], 300),
               ("EXPIREAT", ["EXPIREAT", "k3", str(now_ms // 1000 + 2)], None),
               ("PEXPIREAT", ["PEXPIREAT", "k4", str(now_ms + 400)], None),
               ("SET EX", ["SET", "k5", "v", "EX", "1"], 1000),
               ("SET PXAT", ["SET", "k6", "v", "PXAT", str(now_ms + 300)], None)]
    latest = {}
    for name, req, ttl_ms in setters:
        key = req[1]
        if req[0] != "SET":
            c.call("RPUSH", key, "a", "b")  # not only strings expire
        before = time.monotonic()
        got = c.call(*req)
        # The server took its time before the reply came: the expiry is at
        # most this (an absolute time is the one given).
        latest[key] = int(time.time() * 1000) + ttl_ms if ttl_ms else int(req[-1]) * (
            1000 if req[0] == "EXPIREAT" else 1)
        check(got in (b":1\r\n", b"+OK\r\n"), f"{name} sets the expiry", short(got))
        pttl = int(c.call("PTTL", key)[1:-2])
        ttl = int(c.call("TTL", key)[1:-2])
        # What may have passed on the server's clock between setting and
        # asking: the time the requests took, and one millisecond's step.
        spent = int((time.monotonic() - before) * 1000) + 1
        if ttl_ms is None:
            # An absolute time, taken before the first setter: on a slow
            # machine it may have passed before this one was even sent.
            passed = int(time.time() * 1000) + 1 >= latest[key]
            check(0 < pttl <= 2000 or (pttl == -2 and passed), f"{name}: PTTL {pttl}")
        elif pttl == -2:
            check(spent >= ttl_ms, f"{name}: gone only once its {ttl_ms} ms had passed ({spent})")
        else:
            check(max(ttl_ms - spent, 0) <= pttl <= ttl_ms,
                  f"{name}: PTTL {pttl} within {spent} ms of {ttl_ms}")
            # TTL rounds the milliseconds left to the nearest second.
            lo, hi = (max(ttl_ms - spent, 0) + 500) // 1000, (ttl_ms + 500) // 1000
            check(lo <= ttl <= hi or ttl == -2, f"{name}: TTL {ttl} in [{lo}, {hi}]")
    for name, req, _ in setters:
        wait_gone(c, req[1], latest[req[1]], f"{name}: the key is gone once its time has passed")
    check_eq(c.call("DBSIZE"), b":0\r\n", "every expiring key gone")
    # PERSIST keeps a key that would have expired.
    c.call("SET", "kept", "v", "PX", "200")
    check_eq(c.call("PERSIST", "kept"), b":1\r\n", "PERSIST")
    c.call("SET", "other", "v", "PX", "200")
    wait_gone(c, "other", int(time.time() * 1000) + 200, "a key beside it expires")
    check_eq(c.call("GET", "kept"), b"$1\r\nv\r\n", "the persisted key is still there")
    c.close()


def info_fields(raw):
    """An INFO reply as {section: {field: value}}."""
    body = raw[raw.index(b"\r\n") + 2:-2].decode()
    out, cur = {}, None
    for line in body.split("\r\n"):
        if line.startswith("# "):
            cur = out.setdefault(line[2:].lower(), {})
        elif line:
            k, _, v = line.partition(":")
            cur[k] = v
    return out


def part_info(srv, real):
    """INFO: Redis's sections and field names, values that move as they should."""
    port = srv.port
    c = Conn(port)
    c.call("FLUSHALL")
    raw = c.call("INFO")
    check(raw.startswith(b"$") and raw.endswith(b"\r\n"), "INFO is one bulk reply")
    body = raw[raw.index(b"\r\n") + 2:-2]
    check(b"\n" not in body.replace(b"\r\n", b""), "INFO lines end with CRLF")
    info = info_fields(raw)
    check_eq(sorted(info), ["clients", "keyspace", "memory", "server", "stats"], "INFO sections")
    if real:
        r = Conn(real.port)
        theirs = info_fields(r.call("INFO", "everything"))
        r.close()
        for sec, fields in info.items():
            extra = sorted(set(fields) - set(theirs.get(sec, {})))
            check(not extra, f"INFO {sec}: every field is one Redis has", short(extra))
    for sec, names in (("server", ["redis_version", "redis_mode", "os", "arch_bits",
                                   "multiplexing_api", "process_id", "run_id", "tcp_port",
                                   "uptime_in_seconds", "uptime_in_days", "hz", "executable"]),
                       ("clients", ["connected_clients", "maxclients", "blocked_clients"]),
                       ("memory", ["used_memory", "used_memory_human", "used_memory_rss",
                                   "used_memory_peak", "maxmemory", "maxmemory_policy",
                                   "mem_fragmentation_ratio", "mem_allocator"]),
                       ("stats", ["total_connections_received", "total_commands_processed",
                                  "instantaneous_ops_per_sec", "total_net_input_bytes",
                                  "total_net_output_bytes", "rejected_connections", "expired_keys",
                                  "evicted_keys", "keyspace_hits", "keyspace_misses"])):
        absent = [f for f in names if f not in info.get(sec, {})]
        check(not absent, f"INFO {sec} has the fields tools read", short(absent))
    check_eq(info["server"].get("tcp_port"), str(port), "INFO tcp_port")
    if not skip_on_windows("INFO process_id", "a Windows process's id is Wine's own "
                           "number, not the Linux pid this script knows"):
        check_eq(info["server"].get("process_id"), str(srv.pid), "INFO process_id")
    check_eq(info["server"].get("multiplexing_api"), srv.banner.split()[-2], "INFO multiplexing_api")
    check(re.fullmatch(r"[0-9a-f]{40}", info["server"].get("run_id", "")) is not None,
          "INFO run_id is 40 hex digits")
    check_eq(info["keyspace"], {}, "INFO keyspace empty on an empty store")
    # Counters move: a second connection, commands, hits and misses, keys.
    d = Conn(port)
    d.call("PING")
    c.call("SET", "a", "1")
    c.call("SET", "b", "2", "EX", "100")
    c.call("GET", "a")
    c.call("GET", "nope")
    after = info_fields(c.call("INFO"))
    now = after.get("clients", {}).get("connected_clients", "-1")
    check(int(now) >= 2, "connected_clients counts both", now)
    st0, st1 = info.get("stats", {}), after.get("stats", {})
    check(int(st1.get("total_commands_processed", -1)) >= int(st0.get("total_commands_processed", -1)) + 6,
          "total_commands_processed grows")
    check(int(st1.get("keyspace_hits", -1)) == int(st0.get("keyspace_hits", -1)) + 1
          and int(st1.get("keyspace_misses", -1)) == int(st0.get("keyspace_misses", -1)) + 1,
          "keyspace_hits and keyspace_misses count GET", short((st0, st1)))
    # evn's own count of the bytes read: exactly the requests made between.
    sent = sum(len(encode(a)) for a in (["PING"], ["SET", "a", "1"], ["SET", "b", "2", "EX", "100"],
                                        ["GET", "a"], ["GET", "nope"], ["INFO"]))
    check_eq(int(st1.get("total_net_input_bytes", -1)) - int(st0.get("total_net_input_bytes", -1)),
             sent, "total_net_input_bytes grows by the requests' bytes")
    check(int(st1.get("total_net_output_bytes", -1)) > int(st0.get("total_net_output_bytes", -1)),
          "total_net_output_bytes grows")
    check(int(st1.get("total_connections_received", -1)) >= int(st0.get("total_connections_received", -1)) + 1,
          "total_connections_received grows")
    ks = after.get("keyspace", {}).get("db0", "")
    check(re.fullmatch(r"keys=2,expires=1,avg_ttl=\d+", ks) is not None, "INFO keyspace db0", ks)
    d.close()
    # One section, several, unknown ones, any case.
    only = c.call("INFO", "keyspace")
    check(only.startswith(b"$") and b"# Keyspace\r\ndb0:keys=2" in only and b"# Server" not in only,
          "INFO keyspace alone", short(only))
    two = info_fields(c.call("INFO", "CLIENTS", "stats"))
    check_eq(sorted(two), ["clients", "stats"], "INFO CLIENTS stats")
    check_eq(c.call("INFO", "nosuch"), b"$0\r\n\r\n", "INFO of an unknown section is empty")
    check_eq(sorted(info_fields(c.call("INFO", "all"))), sorted(info), "INFO all")
    c.close()


def part_scan(port, real):
    """SCAN walks every key, with MATCH, COUNT and TYPE, also while keys come
    and go, as a real redis-server's walk does."""
    servers = [(port, "")] + ([(real.port, " (redis-server)")] if real else [])
    for p, who in servers:
        c = Conn(p)
        c.call("FLUSHALL")
        keys = {f"s{i}".encode() for i in range(600)}
        c.send(b"".join(encode(["SET", k, "v"]) for k in keys))
        c.replies(len(keys))
        for i in range(50):
            c.call("RPUSH", f"l{i}", "x")
            keys.add(f"l{i}".encode())

        def walk(*opts, churn=False):
            seen, cursor, steps = set(), b"0", 0
            while True:
                c.send(encode(["SCAN", cursor, *opts]))
                raw = c.reply()
                els = redis_cases.elements(raw)
                cursor = els[0].split(b"\r\n")[1]
                seen.update(e.split(b"\r\n")[1] for e in redis_cases.elements(els[1]))
                steps += 1
                if churn:
                    # Other keys come and go meanwhile, enough to resize tables.
                    c.send(b"".join(encode(["SET", f"tmp{steps}-{j}", "v"]) for j in range(40)))
                    c.replies(40)
                    c.call("DEL", *[f"tmp{steps - 1}-{j}" for j in range(40)])
                if cursor == b"0" or steps > 100000:
                    return seen
        check_eq(walk(), keys, "SCAN 0 ... walks every key" + who)
        check_eq(walk("COUNT", "100"), keys, "SCAN COUNT 100 walks every key" + who)
        check_eq(walk("MATCH", "l*"), {k for k in keys if k.startswith(b"l")},
                 "SCAN MATCH l*" + who)
        check_eq(walk("TYPE", "list"), {k for k in keys if k.startswith(b"l")},
                 "SCAN TYPE list" + who)
        got = walk("COUNT", "7", churn=True)
        check(keys <= got, "SCAN reports every key present throughout, keys changing meanwhile" + who,
              short(sorted(keys - got)[:10]))
        c.call("FLUSHALL")
        check_eq(c.call("SCAN", "0"), b"*2\r\n$1\r\n0\r\n*0\r\n", "SCAN of an empty store" + who)
        c.close()


def mass_expiry_keys():
    # Sanitizer builds are slower; the code path is the same with fewer keys.
    return 200000 if os.environ.get("EVN_TEST_QUICK") == "1" else 1000000


def part_mass_expiry(binary, backend):
    """A million keys that expire at the same millisecond: the active expiry
    frees them a slice at a time, so PINGs are answered while keys are
    still being freed (DBSIZE between 0 and the count), and all go."""
    n = mass_expiry_keys()
    srv = Server(binary, backend=backend)
    try:
        c = Conn(srv.port)
        # The requests are made once, with a placeholder for the expiry time,
        # which is filled in just before they are sent.
        hole = b"$13\r\n@@@@@@@@@@@@@\r\n"
        tmpl = b"*5\r\n$3\r\nSET\r\n$9\r\nk%08d\r\n$1\r\nv\r\n$4\r\nPXAT\r\n" + hole
        chunks = [b"".join(tmpl % i for i in range(start, min(start + 100000, n)))
                  for start in range(0, n, 100000)]
        ok = False
        for margin in (4000, 12000, 40000):
            c.call("FLUSHALL")
            at = int(time.time() * 1000) + margin
            for chunk in chunks:
                count = chunk.count(hole)
                c.send(chunk.replace(hole, b"$13\r\n%d\r\n" % at))
                if c._take(5 * count) != b"+OK\r\n" * count:
                    break
            size = c.call("DBSIZE")
            # Loaded before the keys' time came: the test can go on; else the
            # machine is slow, so load again with more time.
            if time.time() * 1000 < at - 100 and size == b":%d\r\n" % n:
                ok = True
                break
        if not check(ok, f"{n} keys loaded before they expire"):
            return
        expired_before = int(info_fields(c.call("INFO", "stats"))["stats"]["expired_keys"])
        # Nothing touches the keys: only active expiry frees them. Until
        # their time comes DBSIZE stays at n.
        seen_between, pings, last = 0, 0, n
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pong = c.call("PING")
            pings += pong == b"+PONG\r\n"
            last = int(c.call("DBSIZE")[1:-2])
            seen_between += 0 < last < n
            if last == 0:
                break
        check_eq(last, 0, f"all {n} keys freed by active expiry")
        check(seen_between > 0, f"PINGs answered while the keys were being freed "
              f"({seen_between} answers with DBSIZE between 0 and {n}, {pings} PINGs)")
        st = info_fields(c.call("INFO", "stats"))["stats"]
        check_eq(int(st["expired_keys"]) - expired_before, n, "INFO expired_keys counts them all")
        check(int(st["expired_time_cap_reached_count"]) > 0,
              "INFO expired_time_cap_reached_count: runs stopped at their time budget")
        c.close()
    finally:
        # Exit status 0 under AddressSanitizer also means nothing leaked.
        check_eq(srv.stop(), 0, "server with a million expired keys exits 0")


def part_memory(binary):
    """Memory per key at most redis-server's: RSS growth after loading the
    same small strings, then the same small hashes, into fresh servers
    (examples/redis/memory-compare.py, with fewer keys). Not under
    sanitizers, whose shadow memory and redzones are most of the RSS."""
    if os.environ.get("EVN_TEST_QUICK") == "1":
        print("skip memory per key under sanitizers", flush=True)
        return
    if skip_on_windows("memory per key", "the RSS of a process under Wine is mostly Wine's "
                       "own libraries and heap, no measure of evn's"):
        return
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                        "redis", "memory-compare.py")
    spec = importlib.util.spec_from_file_location("memory_compare", path)
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    for kind, n in (("strings", 200000), ("hashes", 20000)):
        evn, _, _ = mc.measure("evn", binary, kind, n)
        redis, _, _ = mc.measure("redis", binary, kind, n)
        check(evn <= redis, f"{kind}: RSS per key at most redis-server's "
              f"({evn:.1f} against {redis:.1f} bytes, {n} keys)")


def part_quit_and_misc(port):
    c = Conn(port)
    c.send(encode(["PING"]) + encode(["QUIT"]) + encode(["PING"]))
    out, eof = c.rest_until_eof()
    check(eof and out == b"+PONG\r\n+OK\r\n", "QUIT answers +OK and closes, ignoring the rest",
          short(out))
    c.close()
    c = Conn(port)
    check(c.call("CLIENT", "ID").startswith(b":"), "CLIENT ID is an integer")
    n = c.call("COMMAND", "COUNT")
    check(re.fullmatch(rb":\d+\r\n", n) is not None, "COMMAND COUNT")
    count = int(n[1:-2])
    c.send(encode(["COMMAND"]))
    table = c.reply()
    check(table.startswith(b"*%d\r\n*10\r\n" % count), "COMMAND: one 10-field entry per command")
    for name in (b"get", b"set", b"client", b"config", b"command", b"ping"):
        check(b"$%d\r\n%s\r\n" % (len(name), name) in table, f"COMMAND lists {name.decode()}")
    info = c.call("COMMAND", "INFO", "get", "client|setname", "nosuch")
    check(info.startswith(b"*3\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"),
          "COMMAND INFO get", short(info))
    check(b"$14\r\nclient|setname\r\n:3\r\n" in info and info.endswith(b"$-1\r\n"),
          "COMMAND INFO client|setname and an unknown one", short(info))
    docs = c.call("COMMAND", "DOCS")
    check(docs.startswith(b"*%d\r\n" % (2 * count)) and b"$7\r\nsummary\r\n" in docs,
          "COMMAND DOCS", short(docs))
    docs = c.call("COMMAND", "DOCS", "get")
    check(docs.startswith(b"*2\r\n$3\r\nget\r\n*8\r\n$7\r\nsummary\r\n"), "COMMAND DOCS get",
          short(docs))
    lst = c.call("COMMAND", "LIST")
    check(lst.startswith(b"*%d\r\n" % count), "COMMAND LIST")
    check(c.call("COMMAND", "HELP").startswith(b"*"), "COMMAND HELP")
    check(c.call("CLIENT", "HELP").startswith(b"*"), "CLIENT HELP")
    check(c.call("CONFIG", "HELP").startswith(b"*"), "CONFIG HELP")
    c.close()


def part_unix(binary, backend, tmpdir):
    """--unixsocket: the same server on a unix socket too."""
    if skip_on_windows("--unixsocket", evnserver.WHY_NO_UNIX):
        return
    path = os.path.join(tmpdir, f"redis-{os.getpid()}.sock")
    srv = Server(binary, "--unixsocket", path, backend=backend)
    try:
        c = Conn(None, path=path)
        check_eq(c.call("SET", "u", "1"), b"+OK\r\n", "SET over the unix socket")
        c.close()
        c = Conn(srv.port)
        check_eq(c.call("GET", "u"), b"$1\r\n1\r\n", "same store over TCP")
        c.close()
        if shutil.which("redis-cli"):
            out = subprocess.run(["redis-cli", "-s", path, "get", "u"], capture_output=True,
                                 timeout=IO_TIMEOUT)
            check_eq(out.stdout, b"1\n", "redis-cli -s over the unix socket")
    finally:
        check_eq(srv.stop(signal.SIGINT), 0, f"server exits 0 on {signal_name(signal.SIGINT)}")
    check(not os.path.exists(path), "unix socket file removed at exit")


def part_threads(port, nloops):
    """Many connections at once (spread over the loops): the store is shared and safe."""
    nconn, per = 8, 500
    errors = []

    def incr_worker():
        try:
            c = Conn(port)
            c.send(b"".join(encode(["INCR", "shared"]) for _ in range(per)))
            c.replies(per)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    c = Conn(port)
    c.call("DEL", "shared")
    threads = [threading.Thread(target=incr_worker) for _ in range(nconn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"INCR workers ({nloops} loops)", "; ".join(errors))
    check_eq(c.call("GET", "shared"), b"$4\r\n%d\r\n" % (nconn * per),
             f"{nconn} x {per} concurrent INCRs all counted ({nloops} loops)")

    # MSET is atomic across shards: a reader never sees half of one.
    stop = threading.Event()
    torn = []

    def writer():
        w = Conn(port)
        for i in range(400):
            w.call("MSET", "ka", str(i), "kb", str(i), "kc", str(i), "kd", str(i))
        stop.set()
        w.close()

    def reader():
        r = Conn(port)
        while not stop.is_set():
            got = r.call("MGET", "ka", "kb", "kc", "kd")
            vals = re.findall(rb"\$-?\d+\r\n(?:([^\r]*)\r\n)?", got)
            if len(set(vals)) > 1:
                torn.append(got)
        r.close()

    c.call("MSET", "ka", "0", "kb", "0", "kc", "0", "kd", "0")
    ts = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not torn, f"MGET never sees a half-done MSET ({nloops} loops)", short(torn[:2]))
    c.close()


def part_redis_py(port):
    try:
        import redis  # Debian's python3-redis
        redis.Redis  # not tests/redis/, which Python may import as a namespace package
    except (ImportError, AttributeError):
        missing("python3-redis (import redis)", "python3-redis")
        return
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=IO_TIMEOUT)
    check(r.ping() is True, "redis-py ping")
    check(r.flushdb() is True, "redis-py flushdb")
    check(r.set("a", "1") is True, "redis-py set")
    check_eq(r.get("a"), b"1", "redis-py get")
    check(r.get("nope") is None, "redis-py get missing")
    check_eq(r.incr("a"), 2, "redis-py incr")
    check_eq(r.incrby("a", 10), 12, "redis-py incrby")
    check_eq(r.decr("a"), 11, "redis-py decr")
    check(r.mset({"x": "1", "y": b"\x00\xff"}) is True, "redis-py mset")
    check_eq(r.mget(["x", "y", "z"]), [b"1", b"\x00\xff", None], "redis-py mget")
    check_eq(r.exists("x", "y", "z"), 2, "redis-py exists")
    check_eq(r.delete("x", "z"), 1, "redis-py delete")
    check_eq(r.dbsize(), 2, "redis-py dbsize")
    check_eq(r.echo("hi"), b"hi", "redis-py echo")
    check(r.set("n", "v", nx=True) is True and r.set("n", "w", nx=True) is None, "redis-py set nx")
    check(r.set("n", "w", xx=True) is True and r.get("n") == b"w", "redis-py set xx")
    check(r.set("t", "v", ex=100) is True and r.ttl("t") in (100, 99), "redis-py set ex, ttl")
    check(r.set("t", "v", px=100000) is True and 0 < r.pttl("t") <= 100000, "redis-py px, pttl")
    check(r.client_setname("py-conn") is True, "redis-py client_setname")
    check(r.client_getname() in ("py-conn", b"py-conn"), "redis-py client_getname")
    check_eq(r.config_get("save"), {"save": ""}, "redis-py config_get save")
    check_eq(r.config_get("appendonly"), {"appendonly": "no"}, "redis-py config_get appendonly")
    try:
        r.incr("n")
        check(False, "redis-py incr on a string raises")
    except redis.ResponseError as e:
        check_eq(str(e), "value is not an integer or out of range", "redis-py error text")
    try:
        r.execute_command("FOO", "bar")
        check(False, "redis-py unknown command raises")
    except redis.ResponseError as e:
        check(str(e).startswith("unknown command 'FOO'"), "redis-py unknown command", str(e))
    key = b"k\x00\r\n\xff"
    check(r.set(key, b"\r\n\x00") is True and r.get(key) == b"\r\n\x00", "redis-py binary key")
    big = os.urandom(10 * 1024 * 1024)
    check(r.set("big", big) is True, "redis-py set 10 MB")
    check(r.get("big") == big, "redis-py get 10 MB")
    r.delete("big")
    p = r.pipeline(transaction=False)
    for i in range(1000):
        p.set(f"pp{i}", i)
        p.get(f"pp{i}")
    res = p.execute()
    check(all(res[2 * i] is True and res[2 * i + 1] == str(i).encode() for i in range(1000)),
          "redis-py pipeline of 2000 commands")
    redis_py_types(r, redis)
    check(r.flushall() is True and r.dbsize() == 0, "redis-py flushall")
    r.close()


def redis_py_types(r, redis):
    """redis-py's own calls for each type, as an application makes them."""
    r.flushall()
    check_eq(r.lpush("l", "a", "b"), 2, "redis-py lpush")
    check_eq(r.rpush("l", "c", "d"), 4, "redis-py rpush")
    check_eq(r.lrange("l", 0, -1), [b"b", b"a", b"c", b"d"], "redis-py lrange")
    check_eq(r.llen("l"), 4, "redis-py llen")
    check_eq(r.lindex("l", -1), b"d", "redis-py lindex")
    check_eq(r.lpop("l"), b"b", "redis-py lpop")
    check_eq(r.rpop("l", 2), [b"d", b"c"], "redis-py rpop count")
    check_eq(r.hset("h", mapping={"f1": "v1", "f2": 2}), 2, "redis-py hset mapping")
    check_eq(r.hset("h", "f3", "v3"), 1, "redis-py hset")
    check_eq(r.hget("h", "f1"), b"v1", "redis-py hget")
    check_eq(r.hgetall("h"), {b"f1": b"v1", b"f2": b"2", b"f3": b"v3"}, "redis-py hgetall")
    check_eq(r.hincrby("h", "f2", 5), 7, "redis-py hincrby")
    check(r.hexists("h", "f3") is True and r.hexists("h", "zz") is False, "redis-py hexists")
    check_eq(r.hdel("h", "f1", "zz"), 1, "redis-py hdel")
    check_eq(r.hlen("h"), 2, "redis-py hlen")
    check_eq(r.sadd("s", "a", "b", "c"), 3, "redis-py sadd")
    check_eq(r.smembers("s"), {b"a", b"b", b"c"}, "redis-py smembers")
    check(r.sismember("s", "a") in (True, 1), "redis-py sismember")
    check_eq(r.srem("s", "a"), 1, "redis-py srem")
    check_eq(r.scard("s"), 2, "redis-py scard")
    check(r.spop("s") in (b"b", b"c"), "redis-py spop")
    check_eq(r.zadd("z", {"a": 1, "b": 2.5, "c": 3}), 3, "redis-py zadd")
    check_eq(r.zrange("z", 0, -1, withscores=True), [(b"a", 1.0), (b"b", 2.5), (b"c", 3.0)],
             "redis-py zrange withscores")
    check_eq(r.zrange("z", 0, 0, desc=True), [b"c"], "redis-py zrange desc")
    check_eq(r.zrangebyscore("z", 2, "+inf") if hasattr(r, "zrangebyscore") else [b"b", b"c"],
             [b"b", b"c"], "redis-py zrange by score")
    check_eq(r.zscore("z", "b"), 2.5, "redis-py zscore")
    check_eq(r.zincrby("z", 10, "a"), 11.0, "redis-py zincrby")
    check_eq(r.zrank("z", "a"), 2, "redis-py zrank")
    check_eq(r.zcard("z"), 3, "redis-py zcard")
    check_eq(r.zpopmin("z"), [(b"b", 2.5)], "redis-py zpopmin")
    check_eq(r.zrem("z", "c"), 1, "redis-py zrem")
    check_eq(r.type("z"), b"zset", "redis-py type")
    check(r.expire("h", 100) is True and r.ttl("h") in (100, 99), "redis-py expire, ttl")
    check(r.pexpire("s", 100000) is True and 0 < r.pttl("s") <= 100000, "redis-py pexpire")
    check(r.persist("h") is True and r.ttl("h") == -1, "redis-py persist")
    check(r.expireat("s", int(time.time()) + 100) is True, "redis-py expireat")
    check(r.rename("h", "h2") is True and r.exists("h") == 0, "redis-py rename")
    check_eq(sorted(r.keys("*")), [b"h2", b"l", b"s", b"z"], "redis-py keys")
    check_eq(sorted(r.scan_iter(match="*")), [b"h2", b"l", b"s", b"z"], "redis-py scan_iter")
    check_eq(r.unlink("h2", "nope"), 1, "redis-py unlink")
    try:
        r.lpush("z", "x")
        check(False, "redis-py lpush on a sorted set raises")
    except redis.ResponseError as e:
        check(str(e).startswith("WRONGTYPE"), "redis-py WRONGTYPE", str(e))
    info = r.info()
    check(info.get("redis_mode") == "standalone" and isinstance(info.get("used_memory"), int)
          and isinstance(info.get("db0"), dict) and info["db0"].get("keys") == 3,
          "redis-py info parses", short({k: info.get(k) for k in ("redis_mode", "used_memory",
                                                                   "db0")}))
    # avg_ttl is a moving estimate that active expiry updates between calls.
    ks = r.info("keyspace")
    check(list(ks) == ["db0"] and {k: v for k, v in ks["db0"].items() if k != "avg_ttl"} ==
          {"keys": 3, "expires": 1}, "redis-py info keyspace", short(ks))
    p = r.pipeline(transaction=False)
    p.rpush("pl", *range(300)).lrange("pl", 10, 12).hset("ph", mapping={f"f{i}": i for i in range(200)})
    p.hget("ph", "f150").sadd("ps", *range(200)).scard("ps").zadd("pz", {f"m{i}": i for i in range(200)})
    p.zrange("pz", -2, -1, withscores=True)
    check_eq(p.execute(), [300, [b"10", b"11", b"12"], 200, b"150", 200, 200, 200,
                           [(b"m198", 198.0), (b"m199", 199.0)]],
             "redis-py pipeline over large lists, hashes, sets and sorted sets")


def run_cli(args, stdin=None):
    return subprocess.run(["redis-cli", *args], input=stdin, capture_output=True,
                          timeout=IO_TIMEOUT)


def interactive_cli(port):
    """redis-cli in a pseudo-terminal, as a person would use it."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "dumb"
        os.execvp("redis-cli", ["redis-cli", "-p", str(port)])
    out = b""

    def wait_for(pred):
        nonlocal out
        deadline = time.monotonic() + IO_TIMEOUT
        while not pred(out) and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not r:
                break
            try:
                d = os.read(fd, 65536)
            except OSError:
                break
            if not d:
                break
            if b"\x1b[6n" in d:  # the line editor asks where the cursor is
                os.write(fd, b"\x1b[1;1R")
            out += d
        return pred(out)

    prompt = b"127.0.0.1:%d> " % port
    ok = wait_for(lambda o: o.endswith(prompt))
    for line, want in ((b"set tty hello", b"OK"), (b"get tty", b'"hello"'),
                       (b"incr tty", b"ERR value is not an integer"), (b"ping", b"PONG")):
        mark = len(out)
        os.write(fd, line + b"\r")
        # The answer, then the next prompt.
        ok = wait_for(lambda o: want in o[mark:] and o.endswith(prompt)) and ok
    os.write(fd, b"quit\r")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return ok, out, status


def part_redis_cli(port, real):
    if not shutil.which("redis-cli"):
        missing("redis-cli", "redis-tools")
        return
    check_eq(run_cli(["-p", str(port), "set", "a", "b"]).stdout, b"OK\n", "redis-cli set a b")
    check_eq(run_cli(["-p", str(port), "get", "a"]).stdout, b"b\n", "redis-cli get a")
    check_eq(run_cli(["-p", str(port), "--raw", "incr", "cnt"]).stdout, b"1\n", "redis-cli incr")
    script = b"set x 1\nincr x\nget x\nget nope\nmget x nope\nping\nfoo bar\nset s \"a b\"\nget s\n"
    got = run_cli(["-p", str(port)], stdin=script)
    check_eq(got.returncode, 0, "redis-cli with commands on stdin exits 0")
    if real:
        run_cli(["-p", str(real.port), "del", "x", "s"])
        want = run_cli(["-p", str(real.port)], stdin=script)
        check_eq(got.stdout, want.stdout, "redis-cli stdin session output (vs redis-server)")
    else:
        check_eq(got.stdout, b"OK\n2\n2\n\n2\n\nPONG\nERR unknown command 'foo', with args "
                 b"beginning with: 'bar' \n\nOK\na b\n", "redis-cli stdin session output")
    ok, out, status = interactive_cli(port)
    check(ok and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
          "redis-cli interactive session (prompt, set, get, error, ping, quit)", short(out))


# redis-benchmark 7.0's default list, as its CSV names the tests.
BENCH_TESTS = {"PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP",
               "SADD", "HSET", "SPOP", "ZADD", "ZPOPMIN", "LPUSH (needed to benchmark LRANGE)",
               "LRANGE_100 (first 100 elements)", "LRANGE_300 (first 300 elements)",
               "LRANGE_500 (first 500 elements)", "LRANGE_600 (first 600 elements)",
               "MSET (10 keys)"}


def benchmark_results(text):
    """The tests redis-benchmark --csv reports, from its final result rows
    only: the header and anything else (warnings, progress) are not rows of
    eight quoted fields. The rate is not parsed: a test that ends within the
    clock's resolution reports "inf"."""
    done = set()
    for line in text.splitlines():
        fields = re.findall(r'"([^"]*)"', line)
        if len(fields) == 8 and fields[0] != "test" and line.count(",") >= 7:
            done.add(fields[0])
    return done


def part_benchmark(port, nloops):
    if not shutil.which("redis-benchmark"):
        missing("redis-benchmark", "redis-tools")
        return
    # Under Wine, where every socket call goes through the wineserver, the
    # server answers some 2,000 requests a second: a quarter of the requests
    # keeps this part to seconds, each test still with its 50 clients.
    n = "500" if evnserver.UNDER_WINE else "2000"
    for pipeline in ("1", "16"):
        # No -t: the whole default list, as a new user runs it.
        res = subprocess.run(
            ["redis-benchmark", "-p", str(port), "-n", n, "--csv", "-P", pipeline],
            capture_output=True, timeout=120)
        text = res.stdout.decode(errors="replace")
        done = benchmark_results(text)
        what = f"redis-benchmark -P {pipeline} ({nloops} loop{'s' if nloops > 1 else ''})"
        check_eq(res.returncode, 0, f"{what} exits 0")
        check(done == BENCH_TESTS, f"{what}: every test reports", short(text[-600:]))
        check(b"ERR" not in res.stdout + res.stderr and b"Error" not in res.stderr,
              f"{what}: no error replies", short(res.stderr))


def part_flags(binary, backend):
    r = evnserver.run_program(binary, "--help", timeout=IO_TIMEOUT)
    check(r.returncode == 0 and b"--max-bulk" in r.stdout and b"--port" in r.stdout,
          "--help: usage with --max-bulk, exit 0", short(r.stdout))
    for bad in (["--nope"], ["--port"], ["--port", "x"], ["--max-bulk", "-1"], ["--max-bulk", "x"],
                ["--loops", "many"], ["--balance", "sideways"]):
        r = evnserver.run_program(binary, *bad, timeout=IO_TIMEOUT)
        check(r.returncode == 2 and b"usage" in r.stderr, f"bad flag {bad}: usage, exit 2",
              f"rc {r.returncode} {short(r.stderr)}")
    # Windows has no SO_REUSEPORT (echo's test checks that it is refused).
    reuseport = [] if evnserver.WINDOWS else ["--reuseport"]
    srv = Server(binary, "--loops", "2", "--balance", "round-robin", *reuseport, backend=backend)
    c = Conn(srv.port)
    check_eq(c.call("PING"), b"+PONG\r\n", f"--loops 2 --balance {' '.join(reuseport)} serves")
    c.close()
    check_eq(srv.stop(), 0, f"exit 0 on {STOPPED_BY}")
    # SHUTDOWN over the protocol: no reply, the connection closes, exit 0.
    srv = Server(binary, backend=backend)
    c = Conn(srv.port)
    c.send(encode(["SET", "a", "b"]) + encode(["SHUTDOWN", "NOSAVE"]))
    out, eof = c.rest_until_eof()
    check(eof and out == b"+OK\r\n", "SHUTDOWN closes the connection without a reply", short(out))
    c.close()
    try:
        srv.proc.wait(timeout=IO_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    check_eq(srv.stop(), 0, "exit 0 after SHUTDOWN")


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", "epoll"))
    args = ap.parse_args()
    tmpdir = os.environ.get("TMPDIR", "/tmp")

    real = None
    real_cls = RealRedis if real_redis_binary() else None
    if real_cls:
        real = RealRedis()
    else:
        missing("redis-server (the real one, to compare replies with)", "redis-server")

    parts = []
    try:
        part_flags(args.server, args.backend)
        part_max_clients(args.server, args.backend)
        for nloops in (1, 2):
            srv = Server(args.server, "--loops", str(nloops), backend=args.backend)
            try:
                print(f"== {nloops} loop(s), {args.backend}", flush=True)
                if nloops == 1:
                    parts = [lambda: part_compare(srv.port, real),
                             lambda: part_protocol_errors(srv.port, real),
                             lambda: part_split(srv.port),
                             lambda: part_interleaved_cuts(srv.port),
                             lambda: part_big_value(srv.port),
                             lambda: part_backpressure(srv.port),
                             lambda: part_expiry(srv.port),
                             lambda: part_expiry_commands(srv.port),
                             lambda: part_info(srv, real),
                             lambda: part_scan(srv.port, real),
                             lambda: part_quit_and_misc(srv.port),
                             lambda: part_redis_py(srv.port),
                             lambda: part_redis_cli(srv.port, real)]
                else:
                    parts = [lambda: part_protocol_errors(srv.port, None),
                             lambda: part_big_value(srv.port)]
                parts += [lambda: part_pipeline(srv.port, real if nloops == 1 else None),
                          lambda: part_threads(srv.port, nloops),
                          lambda: part_benchmark(srv.port, nloops)]
                for part in parts:
                    run_part(part)
            finally:
                check_eq(srv.stop(), 0, f"{nloops}-loop server exits 0 on {STOPPED_BY}")
        part_max_bulk(args.server, args.backend, real_cls)
        run_part(lambda: part_mass_expiry(args.server, args.backend))
        if real_cls:
            run_part(lambda: part_memory(args.server))
        part_unix(args.server, args.backend, tmpdir)
    finally:
        if real:
            real.stop()

    return finish(f"redis integration ({args.backend})")


if __name__ == "__main__":
    main_guard(main)
