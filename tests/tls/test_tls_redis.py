#!/usr/bin/env python3
"""redis-server with --tls-cert/--tls-key: redis-cli --tls (PING, SET, GET),
redis-py with ssl=True when the module is there, and a RESP exchange over
Python's ssl; the plain port still answers.

    test_tls_redis.py REDIS_SERVER     (EVN_BACKEND picks the backend)
"""

import os
import socket
import subprocess
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evnserver import (IO_TIMEOUT, TOOL_TIMEOUT, check, exchange, need_tool,  # noqa: E402
                       missing, start_tls, tls_connect, tls_main)


def cli(tool, port, cert, *args):
    r = subprocess.run([tool, "--tls", "--cacert", cert, "-h", "127.0.0.1", "-p", str(port), *args],
                       capture_output=True, text=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def test_redis_cli(port, cert):
    tool = need_tool("redis-cli", "redis-tools")
    if not tool:
        return
    rc, out, err = cli(tool, port, cert, "ping")
    check(rc == 0 and out == "PONG", f"redis-cli --tls ping: PONG ({out!r} {err!r})")
    rc, out, _ = cli(tool, port, cert, "set", "tls:key", "over TLS")
    check(rc == 0 and out == "OK", f"redis-cli --tls set: OK ({out!r})")
    rc, out, _ = cli(tool, port, cert, "get", "tls:key")
    check(rc == 0 and out == "over TLS", f"redis-cli --tls get: the value ({out!r})")


def test_redis_py(port, cert):
    try:
        import redis
        redis.Redis  # not tests/redis/, which Python may import as a namespace package
    except (ImportError, AttributeError):
        missing("redis-py", "python3-redis")
        return
    r = redis.Redis(host="localhost", port=port, ssl=True, ssl_ca_certs=cert,
                    socket_timeout=IO_TIMEOUT)
    check(r.ping() is True, "redis-py ssl=True: ping")
    big = os.urandom(300000)
    check(r.set("tls:big", big) is True and r.get("tls:big") == big,
          "redis-py ssl=True: SET then GET of 300 kB")
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"tls:{i}", str(i))
    pipe.get("tls:199")
    check(pipe.execute()[-1] == b"199", "redis-py ssl=True: 201 pipelined commands")
    r.close()


def test_raw(srv, cert):
    with tls_connect(srv.port_of("tls"), cert) as s:
        want = b"+PONG\r\n$8\r\nover TLS\r\n"
        got = exchange(s, b"PING\r\n*2\r\n$3\r\nGET\r\n$7\r\ntls:key\r\n", len(want))
        check(got == want or got == b"+PONG\r\n$-1\r\n",
              f"inline PING and a RESP GET over Python's ssl ({got!r})")
    with socket.create_connection(("127.0.0.1", srv.port_of("tcp")), timeout=IO_TIMEOUT) as s:
        s.sendall(b"PING\r\n")
        check(s.recv(7) == b"+PONG\r\n", "the plain port still answers PING")


def run(binaries, d, cert, key):
    srv = start_tls(binaries[0], cert, key, "--tls-port", "0")
    if srv:
        port = srv.port_of("tls")
        test_redis_cli(port, cert)
        test_redis_py(port, cert)
        test_raw(srv, cert)
        srv.stop_ok("redis-server over TLS")


if __name__ == "__main__":
    tls_main(run, 1, __doc__)
