#!/usr/bin/env python3
"""tcp-proxy with a backend given by host name, re-pointed while it runs.

Two small backends listen on the same port at 127.0.0.1 and 127.0.0.2, one
answering "A" to each client and the other "B". The proxy is started once,
with --backend tcp://backend.test:PORT and --hosts-file naming a file this
test writes: backend.test is first 127.0.0.1, and a client through the
proxy reaches A; the file is then replaced (a rename, as a deployment tool
does) to say 127.0.0.2, and the next client reaches B, with no restart;
then back to A. A name the file lists with an address where nothing listens
first, then the live one, still reaches a backend (every address is tried
in order). With c-ares, a name that resolves nowhere (--dns-servers at a
closed port) closes its client, and the proxy's log says the name did not
resolve.

    test_proxy_names.py --proxy build/examples/tcp-proxy [--backend poll]

No sleeps: each client waits for its byte or its EOF.
"""

import argparse
import os
import socket
import sys
import tempfile
import threading

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evnserver import (IO_TIMEOUT, Server, check, check_eq, connect, finish,  # noqa: E402
                       main_guard, read_until_eof, run_part, skip)


class Answerer:
    """A backend on host:port that sends its tag to each client and closes."""

    def __init__(self, host, port, tag):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.tag = tag
        self.served = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.served += 1
            try:
                c.sendall(self.tag)
            finally:
                c.close()

    def close(self):
        self.sock.close()


def pair_of_backends():
    """A on 127.0.0.1 and B on 127.0.0.2, on one port free at both."""
    for _ in range(20):
        b = Answerer("127.0.0.2", 0, b"B")
        try:
            a = Answerer("127.0.0.1", b.port, b"A")
            return a, b
        except OSError:
            b.close()
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


def write_hosts(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def through(proxy):
    s = connect(proxy.port)
    try:
        data, _how = read_until_eof(s)
        return data
    finally:
        s.close()


def start_proxy(binary, hosts, backend):
    return Server(binary, "--listen", "tcp://127.0.0.1:0", "--hosts-file", hosts,
                  "--backend", backend, "--backend-timeout", str(IO_TIMEOUT * 1000 // 2),
                  port0=False, backend="")


def part_repointed(binary, d):
    a, b = pair_of_backends()
    hosts = os.path.join(d, "hosts")
    write_hosts(hosts, "127.0.0.1 backend.test\n")
    p = start_proxy(binary, hosts, f"tcp://backend.test:{a.port}")
    try:
        check_eq(through(p), b"A", "backend.test is 127.0.0.1: the client reaches A")
        write_hosts(hosts, "# replaced\n127.0.0.2 backend.test\n")
        check_eq(through(p), b"B", "re-pointed to 127.0.0.2: the next client reaches B")
        check_eq(through(p), b"B", "and the one after")
        write_hosts(hosts, "127.0.0.1 backend.test\n")
        check_eq(through(p), b"A", "back to 127.0.0.1: A again, still without a restart")
    finally:
        check_eq(p.stop(), 0, "proxy exits 0")
        a.close()
        b.close()


def part_every_address(binary, d):
    live = Answerer("127.0.0.1", 0, b"L")
    # Nothing listens on 127.0.0.3 at that port: refused, then 127.0.0.1.
    hosts = os.path.join(d, "hosts2")
    write_hosts(hosts, "127.0.0.3 two.test\n127.0.0.1 two.test\n")
    p = start_proxy(binary, hosts, f"tcp://two.test:{live.port}")
    try:
        check_eq(through(p), b"L", "the first address refuses, the second answers")
    finally:
        check_eq(p.stop(), 0, "proxy exits 0")
        live.close()


def part_unresolved(binary, d):
    """With c-ares, the proxy is pointed at a DNS server that is not there
    (a closed UDP port): the name cannot resolve, quickly and surely."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    dns_port = u.getsockname()[1]
    u.close()
    hosts = os.path.join(d, "hosts3")
    write_hosts(hosts, "")
    try:
        p = Server(binary, "--listen", "tcp://127.0.0.1:0", "--hosts-file", hosts,
                   "--dns-servers", f"127.0.0.1:{dns_port}", "--backend", "tcp://nowhere.test:9",
                   port0=False, backend="")
    except Exception as e:  # noqa: BLE001
        if "c-ares" in str(e):
            skip("a name that does not resolve: needs evn with c-ares (--dns-servers)")
            return
        raise
    try:
        check_eq(through(p), b"", "a backend name that does not resolve closes the client")
    finally:
        check_eq(p.stop(), 0, "proxy exits 0")
    log = p.stderr()
    check("nowhere.test" in log and "did not resolve" in log,
          "the proxy's log names the backend and says it did not resolve", log[-500:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", "epoll"))
    args = ap.parse_args()
    os.environ["EVN_BACKEND"] = args.backend
    with tempfile.TemporaryDirectory(prefix="evn-names-") as d:
        for part in (part_repointed, part_every_address, part_unresolved):
            run_part(lambda: part(args.proxy, d))
    return finish(f"proxy names ({args.backend})")


if __name__ == "__main__":
    main_guard(main)
