#!/usr/bin/env python3
"""Scale-out: three of evn's Redis example servers behind twemproxy
(Debian's nutcracker) with consistent hashing (ketama), as the example's
README sets it up.

Through the proxy: requests for every type get the replies one real
redis-server gives to the same requests sent to it directly (byte for byte;
hash-table orders compared sorted); the keys are spread over all three
servers, each key on exactly one; redis-py works through it; and
redis-benchmark's default list (less PING_INLINE: twemproxy takes requests in
the multibulk form only) completes with no error reply at -P 1 and -P 16.

    test_redis_twemproxy.py --server build/examples/redis-server [--backend poll]

nutcracker, redis-server, redis-benchmark and python3-redis missing fail the
test, unless EVN_ALLOW_MISSING_CLIENTS=1. In the Windows build the servers
are the .exe under Wine; the proxy and the clients are Linux's.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evnserver  # noqa: E402
from evnserver import (IO_TIMEOUT, Server, check, check_eq, finish, main_guard,  # noqa: E402
                       missing, run_part, short)
import redis_cases  # noqa: E402  (this directory)
from redis_cases import U, P  # noqa: E402
from test_redis_integration import Conn, RealRedis, encode, real_redis_binary  # noqa: E402


def nutcracker_binary():
    # Debian installs it in /usr/sbin, which a user's PATH may not have.
    return shutil.which("nutcracker") or next(
        (p for p in ("/usr/sbin/nutcracker", "/usr/local/sbin/nutcracker") if os.path.exists(p)),
        None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Twemproxy:
    """nutcracker in front of the given ports: ketama over fnv1a_64, the
    settings the README gives, on free ports (its stats port too)."""

    def __init__(self, binary, backends, tmpdir):
        conf = os.path.join(tmpdir, "nutcracker.yml")
        for _ in range(10):
            self.port, stats = free_port(), free_port()
            with open(conf, "w") as f:
                f.write("evn:\n"
                        f"  listen: 127.0.0.1:{self.port}\n"
                        "  hash: fnv1a_64\n"
                        "  distribution: ketama\n"
                        "  redis: true\n"
                        "  auto_eject_hosts: false\n"
                        "  servers:\n")
                for i, p in enumerate(backends):
                    f.write(f"   - 127.0.0.1:{p}:1 evn{i}\n")
            self.proc = subprocess.Popen(
                [binary, "-c", conf, "-s", str(stats), "-o", os.path.join(tmpdir, "nutcracker.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._ready():
                return
            self.stop()
        raise RuntimeError("nutcracker did not start")

    def _ready(self):
        # Until it listens (or exits: a port taken meanwhile), try to connect.
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# Requests twemproxy forwards (one key each, or MSET/MGET/DEL/EXISTS, which it
# splits by key and merges), for each type. Each case uses keys of its own and
# deletes them at the end, as FLUSHALL does not pass through twemproxy.
# twemproxy 0.5.0 closes the connection on a command with more arguments than
# it knows (EXPIRE's NX|XX|GT|LT, new in Redis 7.0): those are left out.
PROXY_CASES = [
    ("strings", [
        ["SET", "ts:a", "1"], ["GET", "ts:a"], ["INCR", "ts:a"], ["INCRBY", "ts:a", "x"],
        ["APPEND", "ts:a", "0"], ["GET", "ts:a"], ["SET", "ts:b", "v", "NX"],
        ["SET", "ts:b", "w", "XX", "GET"], ["MSET", *[x for i in range(20) for x in (f"ts:m{i}", str(i))]],
        ["MGET", *[f"ts:m{i}" for i in range(20)], "ts:nope"],
        ["EXISTS", "ts:a", "ts:b", "ts:nope", "ts:m3"], ["STRLEN", "ts:b"], ["TYPE", "ts:a"],
        ["DEL", "ts:a", "ts:b", *[f"ts:m{i}" for i in range(20)], "ts:nope"]]),
    ("lists", [
        ["RPUSH", "tl", *"abcdefghij"], ["LPUSH", "tl", "z"], ["LRANGE", "tl", "0", "-1"],
        ["LRANGE", "tl", "-3", "100"], ["LINDEX", "tl", "5"], ["LLEN", "tl"], ["LPOP", "tl"],
        ["RPOP", "tl", "3"], ["LPOP", "tl", "0"], ["LPOP", "nope:tl"], ["GET", "tl"],
        ["DEL", "tl"]]),
    ("hashes", [
        ["HSET", "th", "f1", "v1", "f2", "v2"], ["HGET", "th", "f1"], ["HGETALL", "th"],
        ["HINCRBY", "th", "n", "7"], ["HDEL", "th", "f1", "x"], ["HLEN", "th"],
        ["HEXISTS", "th", "f2"], ["HMGET", "th", "f2", "n", "x"],
        ["HSET", "th2", *[x for i in range(150) for x in (f"f{i}", "v")]], P(["HGETALL", "th2"]),
        ["HLEN", "th2"], ["LPUSH", "th", "x"], ["DEL", "th", "th2"]]),
    ("sets", [
        ["SADD", "tst", "a", "b", "c"], U(["SMEMBERS", "tst"]), ["SISMEMBER", "tst", "b"],
        ["SREM", "tst", "a"], ["SCARD", "tst"], ["SADD", "tst2", *[f"m{i}" for i in range(150)]],
        ["SCARD", "tst2"], U(["SPOP", "tst2", "200"]), ["EXISTS", "tst2"], ["DEL", "tst"]]),
    ("sorted sets", [
        ["ZADD", "tz", "1", "a", "2.5", "b", "3", "c"], ["ZRANGE", "tz", "0", "-1", "WITHSCORES"],
        ["ZSCORE", "tz", "b"], ["ZINCRBY", "tz", "10", "a"], ["ZRANK", "tz", "a"], ["ZCARD", "tz"],
        ["ZRANGE", "tz", "(2", "+inf", "BYSCORE"], ["ZREVRANGE", "tz", "0", "0"],
        ["ZRANGEBYSCORE", "tz", "-inf", "3"], ["ZPOPMIN", "tz"], ["ZREM", "tz", "c"],
        ["ZADD", "tz", "NX", "XX", "1", "a"], ["DEL", "tz"]]),
    ("expiry", [
        ["SET", "te", "v", "EX", "100"], ["TTL", "te"], ["EXPIRE", "te", "200"], ["TTL", "te"],
        ["PERSIST", "te"], ["TTL", "te"], ["PEXPIRE", "te", "0"], ["EXISTS", "te"]]),
]


def run(conn, case):
    conn.send(b"".join(encode(r) for r in case))
    return [redis_cases.normalize(r, conn.reply()) for r in case]


def part_replies(proxy_port, real):
    ours = Conn(proxy_port)
    theirs = Conn(real.port)
    for name, case in PROXY_CASES:
        got, want = run(ours, case), run(theirs, case)
        for i, (g, w) in enumerate(zip(got, want)):
            check_eq(g, w, f"through twemproxy, case '{name}' reply {i} (vs one redis-server)")
    ours.close()
    theirs.close()


def part_spread(proxy_port, servers):
    """Keys land on all three servers, each on exactly one."""
    c = Conn(proxy_port)
    keys = [f"spread:{i}" for i in range(300)]
    c.send(b"".join(encode(["SET", k, "v"]) for k in keys))
    check(all(r == b"+OK\r\n" for r in c.replies(len(keys))), "300 SETs through twemproxy")
    direct = [Conn(s.port) for s in servers]
    counts = []
    for d in direct:
        d.send(b"".join(encode(["EXISTS", k]) for k in keys))
        counts.append([int(r[1:-2]) for r in d.replies(len(keys))])
    per_server = [sum(x) for x in counts]
    check(all(n > 0 for n in per_server), "keys on all three servers", str(per_server))
    check(all(sum(col) == 1 for col in zip(*counts)), "each key on exactly one server",
          str(per_server))
    c.send(b"".join(encode(["GET", k]) for k in keys))
    check(all(r == b"$1\r\nv\r\n" for r in c.replies(len(keys))), "GET through twemproxy")
    c.call("DEL", *keys)
    for d in direct:
        check_eq(d.call("DBSIZE"), b":0\r\n", "DEL through twemproxy reached every server")
        d.close()
    c.close()


def part_redis_py(proxy_port):
    try:
        import redis
        redis.Redis
    except (ImportError, AttributeError):
        missing("python3-redis (import redis)", "python3-redis")
        return
    r = redis.Redis(host="127.0.0.1", port=proxy_port, socket_timeout=IO_TIMEOUT)
    check(r.set("py:a", "1") is True and r.get("py:a") == b"1", "redis-py set/get via twemproxy")
    check_eq(r.mset({f"py:m{i}": i for i in range(10)}), True, "redis-py mset via twemproxy")
    check_eq(r.mget([f"py:m{i}" for i in range(10)]), [str(i).encode() for i in range(10)],
             "redis-py mget via twemproxy")
    check_eq(r.rpush("py:l", 1, 2, 3), 3, "redis-py rpush via twemproxy")
    check_eq(r.lrange("py:l", 0, -1), [b"1", b"2", b"3"], "redis-py lrange via twemproxy")
    check_eq(r.hset("py:h", mapping={"a": 1, "b": 2}), 2, "redis-py hset via twemproxy")
    check_eq(r.hgetall("py:h"), {b"a": b"1", b"b": b"2"}, "redis-py hgetall via twemproxy")
    check_eq(r.sadd("py:s", "x", "y"), 2, "redis-py sadd via twemproxy")
    check_eq(r.smembers("py:s"), {b"x", b"y"}, "redis-py smembers via twemproxy")
    check_eq(r.zadd("py:z", {"a": 1, "b": 2}), 2, "redis-py zadd via twemproxy")
    check_eq(r.zrange("py:z", 0, -1, withscores=True), [(b"a", 1.0), (b"b", 2.0)],
             "redis-py zrange via twemproxy")
    p = r.pipeline(transaction=False)
    for i in range(200):
        p.set(f"py:p{i}", i).get(f"py:p{i}")
    res = p.execute()
    check(all(res[2 * i] is True and res[2 * i + 1] == str(i).encode() for i in range(200)),
          "redis-py pipeline of 400 commands via twemproxy")
    check_eq(r.delete("py:a", "py:l", "py:h", "py:s", "py:z", *[f"py:m{i}" for i in range(10)],
                      *[f"py:p{i}" for i in range(200)]), 215, "redis-py delete via twemproxy")
    r.close()


# The default list without PING_INLINE, as -t names the tests.
BENCH_T = ("ping_mbulk,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,"
           "lrange_100,lrange_300,lrange_500,lrange_600,mset")
BENCH_TESTS = {"PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD", "HSET",
               "SPOP", "ZADD", "ZPOPMIN", "LPUSH (needed to benchmark LRANGE)",
               "LRANGE_100 (first 100 elements)", "LRANGE_300 (first 300 elements)",
               "LRANGE_500 (first 500 elements)", "LRANGE_600 (first 600 elements)",
               "MSET (10 keys)"}


def part_benchmark(proxy_port):
    from test_redis_integration import benchmark_results
    if not shutil.which("redis-benchmark"):
        missing("redis-benchmark", "redis-tools")
        return
    # Fewer requests under Wine, as in test_redis_integration's part.
    n = "500" if evnserver.UNDER_WINE else "2000"
    for pipeline in ("1", "16"):
        res = subprocess.run(["redis-benchmark", "-p", str(proxy_port), "-n", n, "-t", BENCH_T,
                              "--csv", "-P", pipeline], capture_output=True, timeout=120)
        text = res.stdout.decode(errors="replace")
        what = f"redis-benchmark -P {pipeline} through twemproxy"
        check_eq(res.returncode, 0, f"{what} exits 0")
        check_eq(benchmark_results(text), BENCH_TESTS, f"{what}: every test reports")
        # twemproxy itself refuses CONFIG GET, which redis-benchmark asks first.
        err = res.stderr.replace(b"WARNING: Could not fetch server CONFIG\n", b"")
        check(b"ERR" not in res.stdout + err and b"Error" not in err,
              f"{what}: no error replies", short(res.stderr))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", "epoll"))
    args = ap.parse_args()
    binary = nutcracker_binary()
    if not binary:
        missing("nutcracker (twemproxy)", "nutcracker")
        return finish("redis twemproxy")
    tmpdir = tempfile.mkdtemp(prefix="evn-twemproxy-")
    # Three servers, one of them with two loops.
    servers = [Server(args.server, *extra, backend=args.backend)
               for extra in ((), ("--loops", "2"), ())]
    proxy = real = None
    try:
        proxy = Twemproxy(binary, [s.port for s in servers], tmpdir)
        if real_redis_binary():
            real = RealRedis()
            run_part(lambda: part_replies(proxy.port, real))
        else:
            missing("redis-server (the real one, to compare replies with)", "redis-server")
        run_part(lambda: part_spread(proxy.port, servers))
        run_part(lambda: part_redis_py(proxy.port))
        run_part(lambda: part_benchmark(proxy.port))
    finally:
        if proxy:
            proxy.stop()
        if real:
            real.stop()
        for s in servers:
            check_eq(s.stop(), 0, "server behind twemproxy exits 0")
        shutil.rmtree(tmpdir, ignore_errors=True)
    return finish(f"redis twemproxy ({args.backend})")


if __name__ == "__main__":
    main_guard(main)
