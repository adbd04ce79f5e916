"""What the tests of the examples' --tls-* flags share: a throwaway
certificate made with the openssl command, starting an example with TLS on
ephemeral ports, and TLS clients built on the standard library's ssl module.

Nothing waits by sleeping: each step waits for the bytes or the exit it
expects, and the time-outs only turn a hang into a failure.
"""

import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile

IO_TIMEOUT = 30
TOOL_TIMEOUT = 90

failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures += 1
    return cond


def skip(what):
    print("skip " + what, flush=True)


def need_tool(name, package):
    """The tool's path; without it, fail unless EVN_ALLOW_MISSING_CLIENTS=1,
    so that a machine without it cannot pass silently."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("EVN_ALLOW_MISSING_CLIENTS") == "1":
        skip(f"{name} is not installed (Debian package {package})")
    else:
        check(False, f"{name} is installed (Debian package {package}; scripts/setup.sh test)")
    return None


def finish():
    print(f"{failures} failed", flush=True)
    return 1 if failures else 0


def make_cert(d, name="cert", cn="localhost"):
    """A self-signed EC certificate for localhost and 127.0.0.1 in d:
    returns (cert path, key path)."""
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + "-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=TOOL_TIMEOUT)
    return cert, key


class Server:
    """An example started with --port 0 and the given flags; the addresses
    come from the 'listening on URL' lines it prints before the backend line."""

    def __init__(self, binary, *args, backend=None):
        backend = backend or os.environ.get("EVN_BACKEND")
        cmd = [binary, "--port", "0", *args] + (["--backend", backend] if backend else [])
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.urls = []
        for line in self.proc.stdout:
            m = re.match(r"listening on (\S+)$", line.strip())
            if m:
                self.urls.append(m.group(1))
            elif "backend" in line:
                break

    def port(self, scheme):
        for u in self.urls:
            if u.startswith(scheme + "://"):
                return int(u.rsplit(":", 1)[1])
        return None

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, what):
        """SIGTERM; status 0 (under AddressSanitizer that also means no leak)
        and nothing from a sanitizer on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        err = self.stderr()
        check(rc == 0 and "Sanitizer" not in err and "runtime error" not in err,
              f"{what}: SIGTERM stops it with status 0 (got {rc}){' ' + err[-2000:] if rc else ''}")
        self.proc.stdout.close()
        self.err.close()


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_connect(port, cafile, host="localhost"):
    raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    return client_context(cafile).wrap_socket(raw, server_hostname=host)


def exchange(sock, payload, want):
    """Write payload (all of it offered to each send, as one write) while
    reading, on one thread, until want bytes came back or the peer closed;
    returns what came back. sock is a TLS socket, made non-blocking here."""
    sock.setblocking(False)
    sent, got = 0, bytearray()
    while len(got) < want:
        wr = [sock] if sent < len(payload) else []
        if not sock.pending():
            r, w, _ = select.select([sock], wr, [], IO_TIMEOUT)
            if not r and not w:
                break
        if sent < len(payload):
            try:
                sent += sock.send(payload[sent:])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        try:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
    sock.setblocking(True)
    sock.settimeout(IO_TIMEOUT)
    return bytes(got)


def read_until_eof(sock):
    """Everything the peer sends until it closes; None on a time-out."""
    data = bytearray()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(data)
            data += chunk
    except ConnectionResetError:
        return bytes(data)
    except socket.timeout:
        return None


def client_hello(host="localhost"):
    """The first flight of a real TLS handshake, made without a socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tmpdir():
    d = tempfile.mkdtemp(prefix="evn-tls-")
    return d


def main_guard(fn):
    try:
        rc = fn()
    except Exception as e:  # a crash in the test itself is a failure too
        import traceback
        traceback.print_exc()
        check(False, f"test raised {e!r}")
        rc = finish()
    sys.exit(rc)
