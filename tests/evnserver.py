"""What the integration tests of the examples share: starting an example
server on ephemeral ports and reading the addresses it prints, stopping it
(exit status, no sanitizer report on stderr), counting checks, the clients'
common pieces (a TCP connection, reading to EOF, a missing client tool), and
for TLS a throwaway certificate made with the openssl command and clients
built on the standard library's ssl module.

In a Windows build (EVN_TEST_WINDOWS=1, set by evn_python_test.cmake) the
scripts still run here and start the .exe servers through the emulator in
EVN_TEST_EMULATOR, Wine; command() and Server do that, and the WINDOWS and
UNDER_WINE flags and skip_on_windows() let a script skip, saying why, what
cannot apply there.

The scripts find this module by putting tests/ on sys.path from their own
__file__. Nothing here waits by sleeping: each step waits for the bytes or
the exit it expects, and the time-outs only turn a hang into a failure.
"""

import atexit
import os
import queue
import re
import select
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

IO_TIMEOUT = 30  # a hang becomes a failure after this long
SKIP_STATUS = 77  # the exit status ctest counts as skipped (SKIP_RETURN_CODE)
TOOL_TIMEOUT = 90  # a client tool (curl, wrk, openssl ...) gets this long
ALLOW_MISSING = os.environ.get("EVN_ALLOW_MISSING_CLIENTS") == "1"

# ---------------------------------------------------------------- Windows

WINDOWS = os.environ.get("EVN_TEST_WINDOWS") == "1"
EMULATOR = shlex.split(os.environ.get("EVN_TEST_EMULATOR", ""))
UNDER_WINE = bool(EMULATOR) and "wine" in os.path.basename(EMULATOR[0])

# The signal that stops a server gracefully (drain, then exit 0). Windows
# has no SIGTERM; its graceful stop is Ctrl-C, a console event, which is
# what evn_server_stop_on_signals listens for there. Wine turns a SIGINT
# sent to a Windows process into that event (CTRL_C_EVENT to the console
# handlers), while a SIGTERM ends the process at once, as TerminateProcess
# would: no drain, no exit status of the program's own.
STOP_SIGNAL = signal.SIGINT if WINDOWS else signal.SIGTERM

# Why the parts that cannot apply to the Windows build are skipped there.
WHY_NO_UNIX = ("unix sockets: Wine 8 has no AF_UNIX (Windows 10 has, but this "
               "Linux client could not reach a socket Wine made in any case)")
WHY_NO_SIGTERM = ("Windows has no SIGTERM: Ctrl-C (SIGINT under Wine) is its "
                  "graceful stop, tested instead")
WHY_NO_USR2 = ("Windows has no SIGUSR2 and evn cannot hand sockets to a new "
               "process there: no upgrade")
WHY_NO_TLS = ("the Windows build has no TLS: no OpenSSL for mingw-w64 was "
              "given (-DOPENSSL_ROOT_DIR)")
WHY_NO_FDS = ("the server's descriptors: a Windows process's handles are "
              "Wine's, not Linux descriptors that /proc could count")


# Wine's first process in a prefix starts the wineserver and Wine's own
# services (services.exe, winedevice.exe ...), and they keep that process's
# stderr until the session ends: a server started first would never show
# the end of its output, and every check that reads to the end would wait.
# So the session is started by a program with no output at all, and kept
# up by another, find.exe reading a pipe of ours, until this script ends
# (its stdin closes then, even if the script dies): each Wine process after
# that starts in a fraction of a second instead of two, and ends cleanly.
_wine_keeper = None


def _start_wine_session():
    global _wine_keeper
    if _wine_keeper is not None:
        return
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 env=child_env())
    subprocess.run(EMULATOR + ["cmd.exe", "/c", "exit"], timeout=TOOL_TIMEOUT, **quiet)
    quiet["stdin"] = subprocess.PIPE
    _wine_keeper = subprocess.Popen(EMULATOR + ["C:\\windows\\system32\\find.exe", "x"],
                                    **quiet)
    atexit.register(_end_wine_session)


def _end_wine_session():
    _wine_keeper.stdin.close()
    try:
        _wine_keeper.wait(timeout=IO_TIMEOUT)
    except subprocess.TimeoutExpired:
        _wine_keeper.kill()
        _wine_keeper.wait()


def command(binary, *args):
    """The argv that runs binary with args: through the emulator (Wine) in
    a Windows build, whose session it starts first if need be."""
    if UNDER_WINE:
        _start_wine_session()
    return EMULATOR + [binary, *args]


# Under Wine, about one process start in a thousand or more ends at once, or
# hangs, before the program's main() has run: Wine's own start-up failed
# (with Wine's tracing on, such a process writes not even the lines Wine
# writes before main()), and the process wrote nothing, or only Wine's own
# complaint ("wine client error:0: recvmsg: Connection reset by peer": the
# wineserver dropped it). The examples write on every path, their listening
# addresses or why they stop, so one that wrote nothing of its own never
# ran. Such a start is tried again, up to WINE_START_TRIES times in all;
# each retry is said on stderr and added to the file EVN_WINE_RETRY_LOG
# names (make test-windows prints it after the run).
WINE_START_TRIES = 3
_WINE_OWN = re.compile(r"wine: |wine client error:")


def wine_never_ran(out, err):
    """Under Wine: whether a program that wrote out and err (bytes or str)
    wrote nothing of its own, only Wine's start-up complaints, if any."""
    if not UNDER_WINE or out:
        return False
    text = err.decode(errors="replace") if isinstance(err, bytes) else err
    return all(_WINE_OWN.match(line) for line in text.splitlines() if line.strip())


def wine_retry_note(what):
    """Say that a Wine start failed and is tried again."""
    line = f"wine: {what}; trying again"
    print(line, file=sys.stderr, flush=True)
    log = os.environ.get("EVN_WINE_RETRY_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{os.path.basename(sys.argv[0])}: {line}\n")


def run_program(binary, *args, **kw):
    """subprocess.run of one of our programs with args, through command(),
    output captured; it must write something (its usage, an error): under
    Wine, a run that wrote nothing of its own never started, and is run
    again (WINE_START_TRIES)."""
    argv = command(binary, *args)
    attempt = 1
    while True:
        r = subprocess.run(argv, capture_output=True, **kw)
        if attempt == WINE_START_TRIES or not wine_never_ran(r.stdout, r.stderr):
            return r
        wine_retry_note(f"{argv[1:]} ended with status {r.returncode} before it wrote anything: "
                        f"{r.stderr!r}")
        attempt += 1


def child_env(env=None):
    """The environment for a server: env (default: ours) with, under Wine,
    WINEDEBUG=-all unless set, so that Wine's own messages stay out of the
    server's stderr."""
    if not UNDER_WINE:
        return env
    env = dict(os.environ if env is None else env)
    env.setdefault("WINEDEBUG", "-all")
    return env


def decode_lines(raw):
    """A server's output as text with "\n" line ends: Windows's C library
    writes "\r\n" to a stdout in text mode, as a console expects."""
    return raw.decode(errors="replace").replace("\r\n", "\n")


def skip_on_windows(what, why):
    """In a Windows build: skip what, saying why, and return True."""
    if WINDOWS:
        skip(f"{what}: {why}")
    return WINDOWS


def signal_name(sig):
    """How a stop signal is named in a check: under Wine, SIGINT stands for
    Ctrl-C."""
    if WINDOWS and sig == signal.SIGINT:
        return "Ctrl-C (SIGINT under Wine)" if UNDER_WINE else "Ctrl-C"
    return sig.name


# ---------------------------------------------------------------- results

passed = 0
failed = 0
skipped = 0
# Print a line for every check that passes too, not only for failures.
verbose = False


def check(cond, what, detail=""):
    """Count a check; print it if it failed (or always, with verbose)."""
    global passed, failed
    if cond:
        passed += 1
        if verbose:
            print("ok   " + what, flush=True)
    else:
        failed += 1
        print("FAIL " + what + (f"\n      {detail}" if detail else ""), flush=True)
    return cond


def check_eq(got, want, what):
    return check(got == want, what, f"got  {short(got)}\n      want {short(want)}")


def short(v, limit=300):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + f"... ({len(r)} chars)"


def note(msg):
    print(f"NOTE: {msg}", flush=True)


def skip(what):
    global skipped
    skipped += 1
    print("skip " + what, flush=True)


def missing(tool, package):
    """A client tool is absent: a skip with EVN_ALLOW_MISSING_CLIENTS=1, else
    a failure, so that a machine without it cannot pass silently."""
    if ALLOW_MISSING:
        skip(f"{tool} is not installed (Debian package {package}): its part is skipped")
    else:
        check(False, f"{tool} is not installed",
              f"install it (Debian package {package}; scripts/setup.sh test) "
              "or set EVN_ALLOW_MISSING_CLIENTS=1 to skip its part")


def need_tool(name, package):
    """The tool's path, or None after missing()."""
    path = shutil.which(name)
    if not path:
        missing(name, package)
    return path


class Failure(Exception):
    """For tests written as functions that stop at their first failed
    expectation (require, require_eq), each run and counted by record()."""


def require(cond, msg):
    if not cond:
        raise Failure(msg)


def require_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, expected {want!r}")


def record(name, fn, *args):
    """Run fn(*args) as one check named name: it passes unless it raises."""
    global passed, failed
    try:
        fn(*args)
    except Exception as e:  # a failure, or a crash of the test itself
        failed += 1
        detail = str(e) if isinstance(e, Failure) else traceback.format_exc()
        print(f"FAIL {name}: {detail}", flush=True)
        return False
    passed += 1
    print(f"ok   {name}", flush=True)
    return True


def run_part(fn, *args):
    """Run one part of a script; one part raising must not hide the rest."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        name = getattr(fn, "__name__", "<lambda>")
        check(False, f"{'part' if name == '<lambda>' else name} raised", traceback.format_exc())
        return None


def finish(title=None):
    """Print the counts; the exit status for them: 1 if a check failed or
    none was made at all, SKIP_STATUS if every one was skipped, else 0 (a few
    skipped among passing checks still pass: ctest has no partial skip, and
    each skip is printed and counted)."""
    line = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    print(f"{title}: {line}" if title else line, flush=True)
    if failed:
        return 1
    if not passed and skipped:
        print("SKIPPED: nothing here could be tested", flush=True)
        return SKIP_STATUS
    if not passed:
        print("FAIL: no check was made", flush=True)
        return 1
    return 0


def main_guard(fn):
    """sys.exit(fn()); an exception from fn is a failure too, and no server
    started here outlives the script."""
    try:
        rc = fn()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        check(False, f"test raised {e!r}")
        rc = finish()
    finally:
        Server.kill_all()
    sys.exit(rc)


# ---------------------------------------------------------------- servers


class ServerError(Failure):
    """The server did not come up; silent: under Wine, it wrote nothing of its
    own (wine_never_ran), so it never started."""

    def __init__(self, msg, silent=False):
        super().__init__(msg)
        self.silent = silent


BANNER = re.compile(r"\d+ loops?, (\w+) backend$")


class Server:
    """An example server: started with --port 0 (unless port0=False) and
    --backend BACKEND (by default $EVN_BACKEND, if set; "" for none) before
    the other arguments. The examples print a 'listening on URL' line per
    address, then 'N loop(s), NAME backend'; this waits for that line (it
    must name the backend asked for) and keeps the URLs. Its stderr is read
    all along, so that a chatty server never blocks on a full pipe."""

    started = []

    def __init__(self, binary, *args, backend=None, port0=True, env=None):
        if backend is None:
            backend = os.environ.get("EVN_BACKEND", "")
        self.name = os.path.basename(binary)
        self.args = command(binary, *(["--port", "0"] if port0 else []),
                            *(["--backend", backend] if backend else []), *args)
        tries = WINE_START_TRIES if UNDER_WINE else 1
        for attempt in range(1, tries + 1):
            try:
                self._start(env, backend)
                return
            except ServerError as e:
                if not e.silent or attempt == tries:
                    raise
                wine_retry_note(str(e))

    def _start(self, env, backend):
        # Unbuffered, so that select() sees every line not yet read.
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     bufsize=0, env=child_env(env))
        if self not in Server.started:
            Server.started.append(self)
        self._err = bytearray()
        self._err_thread = threading.Thread(target=self._drain_err, daemon=True)
        self._err_thread.start()
        self.rc = None
        self.out = ""
        self.urls = []
        self.banner = None
        lines = []
        deadline = time.monotonic() + IO_TIMEOUT
        while self.banner is None:
            r, _, _ = select.select([self.proc.stdout], [], [], max(deadline - time.monotonic(), 0))
            if not r:
                self.kill()
                self._not_serving(f"no banner within {IO_TIMEOUT} s", lines)
            line = decode_lines(self.proc.stdout.readline()).rstrip("\n")
            if not line:
                self._not_serving(f"exited {self.proc.wait()} before serving", lines)
            lines.append(line)
            m = re.match(r"listening on (\S+)$", line)
            if m:
                self.urls.append(m.group(1))
            elif BANNER.match(line):
                self.banner = line
        if backend and BANNER.match(self.banner).group(1) != backend:
            self.kill()
            raise ServerError(f"{self.args}: asked for {backend}, says {self.banner!r}")

    def _not_serving(self, what, lines):
        """Raise the ServerError for a server that ended (or was killed)
        having written lines on stdout."""
        self._err_thread.join(IO_TIMEOUT)
        err = self.stderr()
        raise ServerError(f"{self.args}: {what}: {lines!r} {err[-2000:]!r}",
                          silent=not lines and wine_never_ran("", err))

    def _drain_err(self):
        for chunk in iter(lambda: self.proc.stderr.read(65536), b""):
            self._err += chunk

    def port_of(self, scheme):
        """The port of the first address of that scheme (tcp, tls, udp ...)."""
        for u in self.urls:
            if u.startswith(scheme + "://"):
                return int(u.rsplit(":", 1)[1])
        return None

    @property
    def port(self):
        """The first TCP port (tcp:// or tcp6://), None if there is none."""
        p = self.port_of("tcp")
        return p if p is not None else self.port_of("tcp6")

    def url(self, path="/", scheme="http"):
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    def stderr(self):
        """What it wrote to stderr so far."""
        return bytes(self._err).decode(errors="replace")

    def stop(self, sig=None):
        """Stop it with sig (default STOP_SIGNAL, the graceful stop): its
        exit status, or "hung" if it did not exit within IO_TIMEOUT (it is
        then killed). Checks that stderr holds no sanitizer report
        (sanitizers that only print fail the test too); self.out is then
        what it printed on stdout after the banner. On Windows only SIGINT
        (Ctrl-C) is a stop: another signal raises, so that a check of one
        cannot pass for what Windows does not have."""
        if sig is None:
            sig = STOP_SIGNAL
        if WINDOWS and sig != signal.SIGINT:
            raise ValueError(f"Windows: {sig.name} is no stop there; skip the check")
        if self.rc is not None:
            return self.rc
        if self.alive():
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=IO_TIMEOUT)
            self.rc = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.rc = "hung"
        self.out = decode_lines(self.proc.stdout.read())
        self.proc.stdout.close()
        self._err_thread.join(IO_TIMEOUT)
        err = self.stderr()
        check("runtime error:" not in err and "Sanitizer" not in err,
              f"no sanitizer report from {self.name}", err[-3000:])
        if self.rc != 0 and err:
            print(f"{self.name} exited {self.rc}; its stderr:\n{err[-3000:]}", file=sys.stderr)
        return self.rc

    def stop_ok(self, what, sig=None):
        """stop(sig), checking that the status is 0 (which under
        AddressSanitizer also means no leak)."""
        sig = STOP_SIGNAL if sig is None else sig
        rc = self.stop(sig)
        return check(rc == 0, f"{what}: {signal_name(sig)} stops it with status 0", f"got {rc}")

    @classmethod
    def kill_all(cls):
        for srv in cls.started:
            if srv.alive():
                srv.kill()


class Lines:
    """The lines of a server's stdout or stderr as a queue to wait on, all
    of them kept (self.all). A server that upgrades itself hands its pipes on,
    so one Lines reads every generation."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for raw in iter(stream.readline, b""):
            line = decode_lines(raw).rstrip("\n")
            self.all.append(line)
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, pattern):
        """The match of the next line matching pattern; None at EOF or after
        IO_TIMEOUT without one."""
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                line = self.q.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                return None
            if line is None:
                return None
            m = re.search(pattern, line)
            if m:
                return m


# ---------------------------------------------------------------- clients


def connect(port, host="127.0.0.1", path=None):
    """A blocking client socket with IO_TIMEOUT: TCP (no Nagle) to
    host:port, or a unix socket to path."""
    if path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        s.connect(path)
        return s
    s = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_eof(s, limit=None):
    """Everything until EOF (or limit bytes): (bytes, how it ended: 'eof',
    'reset', 'timeout' or 'limit')."""
    out = bytearray()
    try:
        while limit is None or len(out) < limit:
            d = s.recv(1 << 20)
            if not d:
                return bytes(out), "eof"
            out += d
        return bytes(out), "limit"
    except ConnectionResetError:
        return bytes(out), "reset"
    except socket.timeout:
        return bytes(out), "timeout"


def read_to_close(s):
    """Everything the peer sends until it closes; None on a time-out."""
    data, end = read_until_eof(s)
    return None if end == "timeout" else data


def run_tool(cmd, **kw):
    """subprocess.run of a client tool with TOOL_TIMEOUT, output captured."""
    return subprocess.run(cmd, capture_output=True, timeout=TOOL_TIMEOUT, **kw)


# ---------------------------------------------------------------- TLS


def tmpdir(prefix="evn-test-"):
    return tempfile.mkdtemp(prefix=prefix)


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


def tls_main(test, nargs, doc):
    """The main of a script of the --tls-* flags, run as SCRIPT BINARY...
    with nargs binaries: a throwaway certificate in a temporary directory,
    test(binaries, d, cert, key), then the counts; every check is printed."""
    global verbose
    verbose = True

    def main():
        if len(sys.argv) != nargs + 1:
            print(doc)
            return 2
        d = tmpdir("evn-tls-")
        try:
            cert, key = make_cert(d)
            test(sys.argv[1:], d, cert, key)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return finish()

    main_guard(main)


def start_tls(binary, cert, key, *args):
    """The example with --tls-cert and --tls-key (and args), checked to print
    a plain and a TLS address; None (after it is stopped) if it did not."""
    srv = Server(binary, "--tls-cert", cert, "--tls-key", key, *args)
    tls, tcp = srv.port_of("tls"), srv.port_of("tcp")
    if check(tls and tcp, f"{srv.name} prints its plain and TLS addresses {srv.urls}"):
        return srv
    print(srv.stderr())
    srv.stop_ok(srv.name)
    return None


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


def client_hello(host="localhost"):
    """The first flight of a real TLS handshake, made without a socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
