#!/usr/bin/env python3
"""Scale-out across hosts: three http-server backends behind HAProxy, each
host a network namespace of its own.

Six namespaces are made for the run and deleted after it: a switch (a bridge,
with one veth pair to each host), three backends, the balancer and the
client. Every address (10.X.Y.0/24) lives inside them; nothing is added to
the namespace the script runs in. Each backend runs

    http-server --port 8080 --tcp-options 'proxy=v2&proxy_from=LB/32'

and HAProxy (Debian's 2.6) balances them round-robin in HTTP mode, sending a
PROXY v2 header on every connection and on its HTTP health checks
(GET / every 200 ms, down after 2 failures, up after 1 success). Its admin
socket says what it thinks of each server; its X-Served-By response header
says which server answered. Shown, with numbers:

1. Requests from the client host reach all three backends; GET /ip through
   HAProxy answers the client host's own address and port (the PROXY header
   carried it), and a client talking to a backend directly is refused (it is
   not the balancer named in proxy_from).
2. A rolling SIGUSR2 upgrade of every backend, one after another, under wrk:
   0 non-2xx responses and 0 socket errors over the whole run.
3. SIGKILL of one backend under a client sending requests back to back:
   HAProxy marks it DOWN (the time it took is printed, not judged); the
   requests that failed in between are counted and printed; every request
   after it succeeds, spread over the two that remain.

Nothing waits by sleeping: each step polls HAProxy's admin socket or waits
for a line a server prints, with a generous deadline that turns a hang into
a failure. Skipped (77) when not root or when namespaces cannot be made;
haproxy, wrk or curl missing fail it unless EVN_ALLOW_MISSING_CLIENTS=1.

    test_scale_haproxy.py --server build/examples/http-server [--backend NAME]

Also `make demo-scale`, which runs it for a person to read.
"""

import argparse
import collections
import csv
import ctypes
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import evnserver as es  # noqa: E402

PREFIX = "evnscale-"
HOSTS = ("b1", "b2", "b3", "lb", "cl")
BACKENDS = ("b1", "b2", "b3")
PORT = 8080
DEADLINE = 30  # the longest wait for any one event; a guard against hangs
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def say(msg=""):
    print(msg, flush=True)


class Interrupted(BaseException):
    """SIGTERM, SIGINT or SIGHUP: stop, and clean up on the way out (a
    BaseException, so that no part takes it for its own failure)."""


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=es.TOOL_TIMEOUT)
    if check and r.returncode != 0:
        raise es.Failure(f"{' '.join(cmd)}: status {r.returncode}: {r.stderr.strip()}")
    return r


def poll_until(what, fn, deadline=DEADLINE, show=None):
    """fn() until it returns something true; that value, or a Failure after
    the deadline (with show(), what was seen last, if given). The pause
    between tries only paces the polling."""
    end = time.monotonic() + deadline
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise es.Failure(f"{what}: not within {deadline} s" + (f"; {show()}" if show else ""))
        time.sleep(0.02)


# ---------------------------------------------------------------- hosts


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def our_namespaces(tag=None):
    names = sh("ip", "netns", "list", check=False).stdout.split()
    names = [n for n in names if n.startswith(PREFIX)]
    return [n for n in names if tag is None or n.startswith(f"{PREFIX}{tag}-")]


def delete_namespace(ns):
    """Kill every process still in ns, then delete it (its links go with it)."""
    for p in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    sh("ip", "netns", "del", ns, check=False)


def remove_stale():
    """Namespaces left by an earlier run killed before it could clean up
    (its process id, in the name, no longer runs)."""
    for ns in our_namespaces():
        m = re.match(re.escape(PREFIX) + r"(\d+)-", ns)
        if m and not pid_alive(int(m.group(1))):
            say(f"removing {ns}, left by an earlier run")
            delete_namespace(ns)


class Net:
    """The switch and the five hosts; addr[h] is host h's address."""

    def __init__(self):
        self.tag = str(os.getpid())
        self.made = []
        # 10.X.Y.0/24, X and Y from the process id: only ever inside these
        # namespaces, so it cannot meet the machine's own networks.
        x, y = 200 + os.getpid() % 50, (os.getpid() // 50) % 250
        last = {"lb": 2, "b1": 11, "b2": 12, "b3": 13, "cl": 100}
        self.addr = {h: f"10.{x}.{y}.{last[h]}" for h in HOSTS}

    def ns(self, host):
        return f"{PREFIX}{self.tag}-{host}"

    def up(self):
        sw = self.ns("sw")
        for host in ("sw",) + HOSTS:
            sh("ip", "netns", "add", self.ns(host))
            self.made.append(self.ns(host))
            sh("ip", "-n", self.ns(host), "link", "set", "lo", "up")
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for host in HOSTS:
            # One end in the switch, the other in the host as its eth0.
            sh("ip", "-n", sw, "link", "add", host, "type", "veth", "peer", "name", "eth0",
               "netns", self.ns(host))
            sh("ip", "-n", sw, "link", "set", host, "master", "br0", "up")
            sh("ip", "-n", self.ns(host), "addr", "add", self.addr[host] + "/24", "dev", "eth0")
            sh("ip", "-n", self.ns(host), "link", "set", "eth0", "up")

    def down(self):
        for ns in reversed(self.made):
            delete_namespace(ns)
        self.made = []

    def run(self, host, *cmd, **kw):
        return es.run_tool(["ip", "netns", "exec", self.ns(host)] + list(cmd), **kw)

    def popen(self, host, *cmd, **kw):
        # ip netns exec execs the command: the process id is the command's.
        return subprocess.Popen(["ip", "netns", "exec", self.ns(host)] + list(cmd), **kw)

    def connect(self, host, addr, port):
        """A TCP connection made from inside host's namespace (on a thread
        that enters it, as a namespace is a property of each thread)."""
        out = {}

        def enter_and_connect():
            try:
                fd = os.open(f"/run/netns/{self.ns(host)}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                s = socket.create_connection((addr, port), timeout=es.IO_TIMEOUT)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                out["sock"] = s
            except OSError as e:
                out["error"] = e

        t = threading.Thread(target=enter_and_connect)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["sock"]


# ---------------------------------------------------------------- servers


class Backend:
    def __init__(self, net, host, exe, backend):
        self.host = host
        args = [exe, "--port", str(PORT), "--tcp-options",
                f"proxy=v2&proxy_from={net.addr['lb']}/32"]
        args += ["--backend", backend] if backend else []
        self.proc = net.popen(host, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              bufsize=0)
        self.pids = [self.proc.pid]
        self.reaped = set()
        self.out, self.err = es.Lines(self.proc.stdout), es.Lines(self.proc.stderr)
        if not self.out.wait_for(r"\d+ loops?, \w+ backend$"):
            raise es.Failure(f"{host}: http-server did not start: {self.err.all[-5:]}")

    @property
    def pid(self):
        return self.pids[-1]

    def reap(self, pid):
        """Exit status of one generation: the first is our child, the later
        ones are adopted when their parent exits (we are a subreaper)."""
        self.reaped.add(pid)
        if pid == self.proc.pid:
            return self.proc.wait(timeout=DEADLINE)
        _, st = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(st)

    def kill_all(self):
        """SIGKILL to every generation not yet reaped (a reaped id may
        already name another process)."""
        for pid in set(self.pids) - self.reaped:
            try:
                os.kill(pid, signal.SIGKILL)
                self.reap(pid)
            except (OSError, subprocess.TimeoutExpired):
                pass


class HAProxy:
    def __init__(self, net, d, send_proxy=True):
        self.sock = os.path.join(d, "admin.sock")
        self.cfg = os.path.join(d, "haproxy.cfg")
        proxy = "send-proxy-v2 check-send-proxy" if send_proxy else ""
        servers = "".join(f"    server {b} {net.addr[b]}:{PORT}\n" for b in BACKENDS)
        with open(self.cfg, "w") as f:
            f.write(f"""global
    stats socket {self.sock} mode 600 level admin
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch

frontend web
    bind {net.addr['lb']}:80
    default_backend evn

backend evn
    balance roundrobin
    option httpchk
    http-check send meth GET uri / ver HTTP/1.1 hdr Host lb
    http-check expect status 200
    http-response set-header X-Served-By %s
    default-server check inter 200ms fall 2 rise 1 {proxy}
{servers}""")
        self.proc = net.popen("lb", shutil.which("haproxy") or "/usr/sbin/haproxy", "-f",
                              self.cfg, "-db", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              bufsize=0)
        self.log = es.Lines(self.proc.stdout)
        poll_until("HAProxy's admin socket answers", self._answers)

    def _answers(self):
        if self.proc.poll() is not None:
            raise es.Failure(f"haproxy exited {self.proc.returncode}: {self.log.all[-10:]}")
        try:
            return bool(self.stat())
        except OSError:
            return False

    def command(self, cmd):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(es.IO_TIMEOUT)
            s.connect(self.sock)
            s.sendall(cmd.encode() + b"\n")
            data, _ = es.read_until_eof(s)
        return data.decode(errors="replace")

    def stat(self):
        """{server: row} of 'show stat' for the backend's servers."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows if r["pxname"] == "evn" and r["svname"] in BACKENDS}

    def states(self):
        return ", ".join(f"{b} {r['status']} {r['check_status']} {r['last_chk']!r}"
                         for b, r in self.stat().items())

    def served(self, server):
        return int(self.stat()[server]["stot"] or 0)

    def stop(self):
        """Soft stop (SIGUSR1): HAProxy finishes its connections and exits 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# ---------------------------------------------------------------- parts


def part1_spread_and_ip(net, ha):
    say("\n== 1. requests reach every backend; /ip names the client host")
    st = poll_until("HAProxy's health checks pass on all three (UP, L7OK)", lambda: (
        lambda s: s if all(s[b]["status"] == "UP" and s[b]["check_status"] == "L7OK"
                           for b in BACKENDS) else None)(ha.stat()), show=lambda: ha.states())
    say("HAProxy's health checks (GET / with a PROXY v2 header): " +
        ", ".join(f"{b} {st[b]['status']} {st[b]['check_status']}" for b in BACKENDS))

    lb = f"http://{net.addr['lb']}/"
    n = 30
    urls = [a for _ in range(n) for a in ("-o", "/dev/null", lb)]
    r = net.run("cl", "curl", "-sS", "-w", "%{http_code} %header{x-served-by}\n", *urls)
    lines = r.stdout.decode().split()
    codes, by = lines[0::2], collections.Counter(lines[1::2])
    say(f"{n} requests from the client host through HAProxy: status {dict(collections.Counter(codes))}, "
        f"served by {dict(sorted(by.items()))}")
    es.check_eq(codes, ["200"] * n, f"{n} requests through HAProxy are answered 200")
    es.check_eq(sorted(by), list(BACKENDS), "requests reach all three backends")

    r = net.run("cl", "curl", "-sS", "-w", "\n%{local_ip}:%{local_port}", lb + "ip")
    lines = r.stdout.decode().splitlines()
    body, local = lines[0] if lines else "", lines[-1] if lines else "-"
    say(f"GET /ip through HAProxy: {body!r}; the client host's curl used {local}")
    es.check_eq(body, local, "/ip through HAProxy is the client host's own address and port")
    es.check(body.startswith(net.addr["cl"] + ":"), "and not HAProxy's address", body)

    r = net.run("cl", "curl", "-sS", "-m", "10", f"http://{net.addr['b1']}:{PORT}/ip")
    say(f"GET /ip from the client host straight to b1 (no PROXY header, not the balancer): "
        f"curl status {r.returncode}, {r.stderr.decode().strip()!r}")
    es.check(r.returncode != 0 and not r.stdout, "a client going around HAProxy is not answered",
             f"status {r.returncode} {r.stdout!r}")


def wrk_counts(text):
    def num(pattern):
        m = re.search(pattern, text)
        return tuple(int(g) for g in m.groups()) if m else None

    req = num(r"(\d+) requests in")
    sock = num(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    non2xx = num(r"Non-2xx or 3xx responses: (\d+)")
    return (req[0] if req else None), (sum(sock) if sock else 0), (non2xx[0] if non2xx else 0), sock


def part2_rolling_upgrade(net, ha, backends):
    say("\n== 2. rolling SIGUSR2 upgrade of every backend under wrk")
    wrk = net.popen("cl", "wrk", "-t1", "-c16", "-d120s", "--timeout", "10s",
                    f"http://{net.addr['lb']}/", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = {b: ha.served(b) for b in BACKENDS}
        poll_until("wrk's requests reach every backend",
                   lambda: all(ha.served(b) > base[b] + 100 for b in BACKENDS))
        for b in backends:
            old = b.pid
            t0 = time.monotonic()
            os.kill(old, signal.SIGUSR2)
            m = b.out.wait_for(r"^upgrade: pid (\d+) serves now; pid (\d+) drains and exits$")
            if not es.check(m is not None and int(m.group(2)) == old,
                            f"{b.host}: a new process serves, pid {old} drains",
                            "\n".join(b.err.all[-10:])):
                return
            b.pids.append(int(m.group(1)))
            rc = b.reap(old)
            drained = time.monotonic() - t0
            es.check_eq(rc, 0, f"{b.host}: the old process (pid {old}) exits with status 0")
            n0 = ha.served(b.host)
            poll_until(f"{b.host}: the new process serves HAProxy's requests",
                       lambda: ha.served(b.host) > n0 + 100)
            say(f"{b.host}: pid {old} -> pid {b.pid}; the old one drained and exited "
                f"{drained:.2f} s after SIGUSR2; HAProxy's requests reach the new one")
        st = ha.stat()
        es.check(all(st[b]["status"] == "UP" for b in BACKENDS),
                 "HAProxy kept every backend UP through the upgrades",
                 {b: st[b]["status"] for b in BACKENDS})
    finally:
        if wrk.poll() is None:
            wrk.send_signal(signal.SIGINT)  # wrk stops and prints its report
        out, err = wrk.communicate(timeout=DEADLINE)
    text = out.decode(errors="replace")
    requests, sock, non2xx, detail = wrk_counts(text)
    say(f"wrk through HAProxy across the three upgrades: {requests} requests, "
        f"{non2xx} non-2xx, {sock} socket errors {detail or ''}")
    es.check(requests and requests > 0, "wrk made requests", text + err.decode())
    es.check_eq(non2xx, 0, "non-2xx responses during the rolling upgrade")
    es.check_eq(sock, 0, "socket errors (connect, read, write, timeout) during the rolling upgrade")


class Client:
    """Requests back to back from the client host over one keep-alive
    connection to HAProxy (a new one after a failure): each outcome kept
    with its time and the server HAProxy named."""

    REQ = b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n"

    def __init__(self, net):
        self.net = net
        self.log = []  # (time, ok, server or error)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _one(self, s, buf):
        s.sendall(self.REQ)
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                raise EOFError("closed before the answer")
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        h = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        n = int(h.get("content-length", "0"))
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                raise EOFError("closed in the body")
            rest += d
        return status, h.get("x-served-by", "?"), h.get("connection", "") == "close", rest[n:]

    def _run(self):
        while not self.stop.is_set():
            try:
                s = self.net.connect("cl", self.net.addr["lb"], 80)
            except OSError as e:
                self._add(False, f"connect: {e!r}")
                continue
            buf = b""
            with s:
                while not self.stop.is_set():
                    try:
                        status, server, closed, buf = self._one(s, buf)
                    except (OSError, EOFError, ValueError, IndexError) as e:
                        self._add(False, repr(e))
                        break
                    self._add(status == 200, server if status == 200 else f"status {status}")
                    if closed:
                        break

    def _add(self, ok, what):
        with self.lock:
            self.log.append((time.monotonic(), ok, what))

    def count(self):
        with self.lock:
            return len(self.log)

    def since(self, t):
        with self.lock:
            return [e for e in self.log if e[0] >= t]


def part3_kill(net, ha, backends):
    say("\n== 3. SIGKILL of one backend")
    victim = backends[1]
    client = Client(net)
    t_kill = t_down = None
    try:
        poll_until("the client's requests are answered", lambda: client.count() >= 200)
        t_kill = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        victim.reap(victim.pid)
        st = poll_until(f"HAProxy marks {victim.host} DOWN", lambda: (
            lambda s: s if s[victim.host]["status"].startswith("DOWN") else None)(ha.stat()),
            show=lambda: ha.states())
        t_down = time.monotonic()
        say(f"{victim.host} (pid {victim.pid}) killed; HAProxy marked it {st[victim.host]['status']} "
            f"({st[victim.host]['check_status']}) {t_down - t_kill:.2f} s later "
            f"(checks every 0.2 s, down after 2 failures)")
        es.check(True, "HAProxy marks the killed backend DOWN")
        n0 = client.count()
        poll_until("500 more requests after the backend is marked down",
                   lambda: client.count() >= n0 + 500)
    finally:
        client.stop.set()
        client.thread.join(DEADLINE)
        if t_kill is not None:
            # Also when it was never marked down: what the clients got is
            # the point of this part, so it is printed either way.
            end = t_down if t_down is not None else float("inf")
            between = [e for e in client.since(t_kill) if e[0] < end]
            failed = [e for e in between if not e[1]]
            say(f"{'between the kill and DOWN' if t_down else 'after the kill (never marked DOWN)'}: "
                f"{len(between)} requests, {len(failed)} failed"
                + (f" ({dict(collections.Counter(e[2] for e in failed))})" if failed else "")
                + f"; served by {dict(sorted(collections.Counter(e[2] for e in between if e[1]).items()))}")
    after = client.since(t_down)
    bad = [e for e in after if not e[1]]
    by = collections.Counter(e[2] for e in after if e[1])
    say(f"after DOWN: {len(after)} requests, {len(bad)} failed; served by {dict(sorted(by.items()))}")
    es.check_eq(len(bad), 0, "requests failed after HAProxy marked the backend down")
    others = sorted(b.host for b in backends if b is not victim)
    es.check_eq(sorted(by), others, "after it, the two backends left serve every request")


# ---------------------------------------------------------------- main


def can_run():
    """None, or why this machine cannot run the test."""
    if os.geteuid() != 0:
        return "not root: making network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
    if not shutil.which("ip"):
        return "no ip command (Debian package iproute2)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"cannot make a network namespace: {r.stderr.strip()}"
    r = sh("ip", "-n", probe, "link", "add", "br0", "type", "bridge", check=False)
    sh("ip", "netns", "del", probe, check=False)
    if r.returncode != 0:
        return f"cannot make a bridge in a namespace: {r.stderr.strip()}"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", ""))
    ap.add_argument("--no-send-proxy", action="store_true",
                    help="leave send-proxy-v2 out of HAProxy's configuration (to see part 1 fail)")
    a = ap.parse_args()
    es.verbose = True

    why = can_run()
    if why:
        es.skip(why)
        return es.finish()
    tools = [es.need_tool("haproxy", "haproxy") or shutil.which("/usr/sbin/haproxy"),
             es.need_tool("wrk", "wrk"), es.need_tool("curl", "curl")]
    if not all(tools):
        return es.finish()

    # Each upgraded server's successor, orphaned when it exits, is ours to reap.
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        es.skip("prctl(PR_SET_CHILD_SUBREAPER) failed: cannot follow the upgrades")
        return es.finish()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    remove_stale()
    net = Net()
    d = es.tmpdir("evn-scale-")
    backends, ha = [], None
    try:
        net.up()
        say(f"hosts (network namespaces {PREFIX}{net.tag}-*): " +
            ", ".join(f"{h} {net.addr[h]}" for h in HOSTS))
        for h in BACKENDS:
            backends.append(Backend(net, h, os.path.abspath(a.server), a.backend))
        say(f"backends: http-server --port {PORT} --tcp-options "
            f"'proxy=v2&proxy_from={net.addr['lb']}/32' on " +
            ", ".join(f"{b.host} (pid {b.pid})" for b in backends))
        ha = HAProxy(net, d, send_proxy=not a.no_send_proxy)
        say(f"balancer: HAProxy on {net.addr['lb']}:80, round-robin, send-proxy-v2, "
            "HTTP checks every 200 ms")
        failed = es.failed
        es.run_part(part1_spread_and_ip, net, ha)
        if es.failed == failed:
            es.run_part(part2_rolling_upgrade, net, ha, backends)
            es.run_part(part3_kill, net, ha, backends)
        else:
            say("parts 2 and 3 need part 1 to pass: left out")

        say("\n== stopping")
        for b in backends:
            if b.pid in b.reaped:
                continue
            os.kill(b.pid, signal.SIGTERM)
            es.check_eq(b.reap(b.pid), 0, f"{b.host}: SIGTERM stops pid {b.pid} with status 0")
        es.check_eq(ha.stop(), 0, "HAProxy stops with status 0")
        for b in backends:
            text = "\n".join(b.err.all)
            es.check("runtime error:" not in text and "Sanitizer" not in text,
                     f"{b.host}: no sanitizer report", text[-2000:])
    except Interrupted as e:
        es.check(False, f"interrupted by {e}")
    finally:
        for b in backends:
            b.kill_all()
        if ha:
            ha.stop()
        net.down()
        shutil.rmtree(d, ignore_errors=True)
    left = our_namespaces(net.tag)
    es.check_eq(left, [], "no namespace of this run is left")
    return es.finish("scale-out")


if __name__ == "__main__":
    es.main_guard(main)
