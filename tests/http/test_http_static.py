#!/usr/bin/env python3
"""The HTTP example server's --root: static files, through its real binary.

    test_http_static.py --server build/examples/http-server [--backend poll]

Builds a temporary tree (files of many types and sizes, a 5 MB one, an empty
one, directories with and without index.html, a FIFO, symbolic links to /etc,
to a file outside the tree and to a file inside it), starts the server on it
with --root on an ephemeral port, and checks over raw sockets: Content-Type,
Content-Length, Last-Modified, If-Modified-Since and 304, Range (206 in its
three forms, 416, several ranges, If-Range), HEAD, 405 for other methods,
POST /echo still echoing, keep-alive and pipelining after file bodies, path
traversal in every spelling (never the content, always 403 or 404 or 400),
the FIFO not hanging the server, with curl the 5 MB file, and the same over
TLS (where evn reads and encrypts the file itself). At the end the
server holds no descriptor it did not hold at the start, and stops with
status 0 (under AddressSanitizer: no leak).

In the Windows build the .exe runs under Wine, on the same tree: Wine shows
the symbolic links as the files they point to, and the server must still
refuse them. There the descriptor count and TLS skip, saying why.

Nothing waits by sleeping: each step waits for the bytes it expects; the one
poll (for the server's descriptors to go back down after the clients close)
has a deadline and exits as soon as the count is right.
"""

import argparse
import email.utils
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.append(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evnserver  # noqa: E402
from evnserver import (finish, main_guard, make_cert, missing, record,  # noqa: E402
                       skip)
from test_http_integration import (  # noqa: E402
    IO_TIMEOUT,
    TOOL_TIMEOUT,
    Conn,
    Failure,
    Response,
    Server,
    check,
    check_common,
    eq,
)

SECRET = b"EVN-SECRET-OUTSIDE-THE-ROOT"
# A fixed, past modification time: Thu, 02 Jan 2020 03:04:05 GMT.
MTIME = 1577934245
MTIME_STR = "Thu, 02 Jan 2020 03:04:05 GMT"

TYPES = {
    "index.html": (b"<!doctype html><title>root</title>\n", "text/html; charset=utf-8"),
    "style.css": (b"body { color: red }\n", "text/css; charset=utf-8"),
    "app.js": (b"console.log('hi');\n", "text/javascript; charset=utf-8"),
    "data.json": (b'{"a": 1}\n', "application/json"),
    "notes.txt": (b"plain text\n", "text/plain; charset=utf-8"),
    "img.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3, "image/png"),
    "photo.jpg": (b"\xff\xd8\xff" + os.urandom(3000), "image/jpeg"),
    "PHOTO.JPEG": (b"\xff\xd8\xff" + os.urandom(100), "image/jpeg"),
    "anim.gif": (b"GIF89a" + os.urandom(500), "image/gif"),
    "logo.svg": (b"<svg xmlns='http://www.w3.org/2000/svg'/>\n", "image/svg+xml"),
    "favicon.ico": (os.urandom(318), "image/vnd.microsoft.icon"),
    "mod.wasm": (b"\x00asm\x01\x00\x00\x00", "application/wasm"),
    "doc.pdf": (b"%PDF-1.4\n" + os.urandom(20000), "application/pdf"),
    "font.woff2": (b"wOF2" + os.urandom(1000), "font/woff2"),
    "clip.mp4": (os.urandom(70000), "video/mp4"),
    "blob.xyz": (os.urandom(1234), "application/octet-stream"),
    "noext": (b"no extension\n", "application/octet-stream"),
    "empty.txt": (b"", "text/plain; charset=utf-8"),
    "space name.txt": (b"spaces\n", "text/plain; charset=utf-8"),
}
BIG = os.urandom(5 * 1024 * 1024 + 7)


def make_tree(tmp):
    root = os.path.join(tmp, "root")
    outside = os.path.join(tmp, "outside")
    os.makedirs(os.path.join(root, "sub", "deep"))
    os.makedirs(os.path.join(root, "noindex"))
    os.makedirs(outside)

    def write(path, data):
        with open(path, "wb") as f:
            f.write(data)

    for name, (data, _) in TYPES.items():
        write(os.path.join(root, name), data)
    write(os.path.join(root, "big.bin"), BIG)
    write(os.path.join(root, "sub", "index.html"), b"<p>sub</p>\n")
    write(os.path.join(root, "sub", "deep", "file.txt"), b"deep\n")
    write(os.path.join(root, "noindex", "file.txt"), b"in noindex\n")
    write(os.path.join(outside, "secret.txt"), SECRET + b"\n")
    os.symlink("/etc", os.path.join(root, "link_etc"))
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "link_secret"))
    os.symlink(outside, os.path.join(root, "link_outside"))
    # Inside the root, but links are never followed.
    os.symlink("index.html", os.path.join(root, "link_inside"))
    os.mkfifo(os.path.join(root, "fifo"))
    os.utime(os.path.join(root, "notes.txt"), (MTIME, MTIME))
    return root


def read_response(c, head=False):
    """One response; unlike Conn.response, a 304 has no body and needs no
    Content-Length."""
    raw = c.read_until(b"\r\n\r\n")
    lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    check(len(parts) == 3 and parts[0] == "HTTP/1.1", f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers = []
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        check(sep and k and k == k.strip(), f"bad header line {line!r}")
        headers.append((k, v.strip()))
    r = Response(status, parts[2], headers, b"", raw)
    if status == 304:
        eq(r.header("Content-Length"), None, "Content-Length on 304")
        return r
    cl = r.header("Content-Length")
    check(cl is not None and cl.isdigit(), f"no Content-Length in {raw!r}")
    if not head:
        r.body = c.read_exact(int(cl))
    return r


def get(path, extra=b"", method=b"GET"):
    if isinstance(path, str):
        path = path.encode()
    return method + b" " + path + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def mtime_of(root, name):
    return email.utils.formatdate(os.stat(os.path.join(root, name)).st_mtime, usegmt=True)


def check_file(r, root, name, data, ctype, head=False):
    eq(r.status, 200, f"status of {name}")
    eq(r.header("Content-Type"), ctype, f"Content-Type of {name}")
    eq(r.header("Content-Length"), str(len(data)), f"Content-Length of {name}")
    eq(r.header("Last-Modified"), mtime_of(root, name), f"Last-Modified of {name}")
    eq(r.header("Accept-Ranges"), "bytes", f"Accept-Ranges of {name}")
    eq(r.header("Connection"), None, f"Connection of {name}")
    check_common(r)
    if not head:
        check(r.body == data, f"body of {name}: {len(r.body)} bytes, differ from the file")


# ---- tests ----


def test_types(srv, root):
    with Conn(srv.port) as c:
        for name, (data, ctype) in TYPES.items():
            c.send(get("/" + name.replace(" ", "%20")))
            check_file(read_response(c), root, name, data, ctype)


def test_big(srv, root):
    with Conn(srv.port) as c:
        c.send(get("/big.bin"))
        check_file(read_response(c), root, "big.bin", BIG, "application/octet-stream")
        c.send(get("/notes.txt"))
        check_file(read_response(c), root, "notes.txt", TYPES["notes.txt"][0],
                   "text/plain; charset=utf-8")


def test_curl(srv, root, tmp):
    out = os.path.join(tmp, "curl.out")
    r = subprocess.run(["curl", "--silent", "--fail", "-o", out, srv.url("/big.bin")],
                       capture_output=True, timeout=TOOL_TIMEOUT)
    eq(r.returncode, 0, f"curl exit status ({r.stderr!r})")
    with open(out, "rb") as f:
        check(f.read() == BIG, "curl's copy of big.bin differs")
    r = subprocess.run(["curl", "--silent", "--fail", "-o", out, srv.url("/nope")],
                       capture_output=True, timeout=TOOL_TIMEOUT)
    eq(r.returncode, 22, "curl --fail on a missing file")


def test_head(srv, root):
    with Conn(srv.port) as c:
        c.send(get("/big.bin", method=b"HEAD"))
        check_file(read_response(c, head=True), root, "big.bin", BIG, "application/octet-stream",
                   head=True)
        # Range is for GET only: HEAD gets the whole file's headers.
        c.send(get("/big.bin", b"Range: bytes=0-9\r\n", method=b"HEAD"))
        r = read_response(c, head=True)
        eq(r.status, 200, "HEAD with Range")
        eq(r.header("Content-Length"), str(len(BIG)), "HEAD with Range: Content-Length")
        # No body came: the next bytes are the next answer.
        c.send(get("/style.css"))
        check_file(read_response(c), root, "style.css", *TYPES["style.css"])


def test_conditional(srv, root):
    data, ctype = TYPES["notes.txt"]
    now = time.time()
    with Conn(srv.port) as c:
        c.send(get("/notes.txt"))
        r = read_response(c)
        eq(r.header("Last-Modified"), MTIME_STR, "Last-Modified")
        for ims, status in (
            (MTIME_STR, 304),
            (email.utils.formatdate(MTIME + 86400, usegmt=True), 304),
            (email.utils.formatdate(now - 60, usegmt=True), 304),
            (email.utils.formatdate(MTIME - 1, usegmt=True), 200),
            (email.utils.formatdate(MTIME - 86400 * 365, usegmt=True), 200),
            # In the future: not a valid date for this, ignored.
            (email.utils.formatdate(now + 86400 * 30, usegmt=True), 200),
            ("yesterday", 200),
            ("Thu, 02 Jan 2020 03:04:05", 200),
        ):
            for method in (b"GET", b"HEAD"):
                c.send(get("/notes.txt", b"If-Modified-Since: " + ims.encode() + b"\r\n", method))
                r = read_response(c, head=method == b"HEAD")
                eq(r.status, status, f"{method.decode()} with If-Modified-Since: {ims}")
                eq(r.header("Last-Modified"), MTIME_STR, f"Last-Modified on {status}")
                if status == 200 and method == b"GET":
                    eq(r.body, data, "body after a stale If-Modified-Since")
        # After the 304s the connection is in step: no stray body bytes.
        c.send(get("/notes.txt"))
        check_file(read_response(c), root, "notes.txt", data, ctype)


def test_ranges(srv, root):
    size = len(BIG)
    cases = [
        (b"bytes=0-99", 0, 100),
        (b"bytes=100-", 100, size - 100),
        (b"bytes=-500", size - 500, 500),
        (b"bytes=1000-1000", 1000, 1),
        (b"bytes=4000000-99999999999", 4000000, size - 4000000),
        (b"bytes=-99999999", 0, size),
        (b"bytes=0-", 0, size),
        (b"BYTES=5-9", 5, 5),
    ]
    with Conn(srv.port) as c:
        for spec, off, n in cases:
            c.send(get("/big.bin", b"Range: " + spec + b"\r\n"))
            r = read_response(c)
            eq(r.status, 206, f"status for {spec}")
            eq(r.header("Content-Range"), f"bytes {off}-{off + n - 1}/{size}",
               f"Content-Range for {spec}")
            eq(r.header("Content-Length"), str(n), f"Content-Length for {spec}")
            check(r.body == BIG[off : off + n], f"bytes for {spec} differ")
            check_common(r)
        for spec in (b"bytes=%d-" % size, b"bytes=%d-%d" % (size + 10, size + 20), b"bytes=-0"):
            c.send(get("/big.bin", b"Range: " + spec + b"\r\n"))
            r = read_response(c)
            eq(r.status, 416, f"status for {spec}")
            eq(r.header("Content-Range"), f"bytes */{size}", f"Content-Range for {spec}")
            eq(r.header("Connection"), None, "416 keeps the connection")
        # Ranges on an empty file are never satisfiable.
        c.send(get("/empty.txt", b"Range: bytes=-1\r\n"))
        r = read_response(c)
        eq(r.status, 416, "suffix range of an empty file")
        eq(r.header("Content-Range"), "bytes */0", "Content-Range of an empty file")
        # Sent whole: several ranges, a bad one, another unit, If-Range.
        small, ctype = TYPES["clip.mp4"]
        for extra in (b"Range: bytes=0-1,5-6\r\n", b"Range: bytes=9-5\r\n",
                      b"Range: bytes=x-y\r\n", b"Range: items=0-1\r\n", b"Range: bytes=-\r\n",
                      b"Range: bytes=0-1\r\nIf-Range: \"abc\"\r\n",
                      b"Range: bytes=0-1\r\nRange: bytes=2-3\r\n"):
            c.send(get("/clip.mp4", extra))
            check_file(read_response(c), root, "clip.mp4", small, ctype)
        # If-Modified-Since goes first: 304 even with a Range.
        c.send(get("/notes.txt", b"Range: bytes=0-1\r\nIf-Modified-Since: "
                   + MTIME_STR.encode() + b"\r\n"))
        eq(read_response(c).status, 304, "If-Modified-Since with Range")
        c.send(get("/notes.txt", b"Range: bytes=0-1\r\n"))
        r = read_response(c)
        eq((r.status, r.body), (206, b"pl"), "small range")


def test_pipelined(srv, root):
    with Conn(srv.port) as c:
        c.send(get("/big.bin") + get("/photo.jpg") + get("/noindex/file.txt", method=b"HEAD")
               + get("/nope") + get("/big.bin", b"Range: bytes=-10\r\n") + get("/data.json"))
        check_file(read_response(c), root, "big.bin", BIG, "application/octet-stream")
        check_file(read_response(c), root, "photo.jpg", *TYPES["photo.jpg"])
        r = read_response(c, head=True)
        eq((r.status, r.header("Content-Length")), (200, "11"), "pipelined HEAD")
        eq(read_response(c).status, 404, "pipelined 404")
        r = read_response(c)
        eq((r.status, r.body), (206, BIG[-10:]), "pipelined range")
        check_file(read_response(c), root, "data.json", *TYPES["data.json"])
        # And then an ordinary request on the same connection.
        c.send(get("/app.js"))
        check_file(read_response(c), root, "app.js", *TYPES["app.js"])
        # A body on a GET is read past; the file is answered after it.
        c.send(get("/notes.txt", b"Content-Length: 5\r\n") + b"hello" + get("/mod.wasm"))
        eq(read_response(c).body, TYPES["notes.txt"][0], "GET with a body")
        check_file(read_response(c), root, "mod.wasm", *TYPES["mod.wasm"])
        # The body in a later write: the file waits, open, for it.
        c.send(get("/photo.jpg", b"Content-Length: 5\r\n"))
        c.send(b"hel")
        c.send(b"lo" + get("/style.css"))
        check_file(read_response(c), root, "photo.jpg", *TYPES["photo.jpg"])
        check_file(read_response(c), root, "style.css", *TYPES["style.css"])


def test_traversal(srv, root):
    attempts = [
        b"/../etc/passwd",
        b"/../../../../../../etc/passwd",
        b"/%2e%2e/etc/passwd",
        b"/%2E%2E/%2e%2E/etc/passwd",
        b"/%2e%2e%2fetc%2fpasswd",
        b"/..%2f..%2f..%2fetc%2fpasswd",
        b"/a/../../x",
        b"/sub/../../outside/secret.txt",
        b"/./../outside/secret.txt",
        b"/sub/%2e%2e/%2e%2e/outside/secret.txt",
        b"/link_etc/passwd",
        b"/link_etc/hostname",
        b"/link_etc/",
        b"/link_secret",
        b"/link_outside/secret.txt",
        b"/link_inside",
        b"/index.html%00.txt",
        b"/%00",
        b"//etc/passwd",
        b"/..",
        b"/..%00/",
        b"http://t/../outside/secret.txt",
        b"/" + b"../" * 500 + b"etc/passwd",
        # What Windows would read as a separator, a stream, a device or a
        # name with its trailing dot dropped: on Linux, names not there.
        b"/..%5c..%5coutside%5csecret.txt",
        b"/sub%5c..%5c..%5coutside%5csecret.txt",
        b"/link_outside%5csecret.txt",
        b"/index.html%3a%3a$DATA",
        b"/index.html.",
        b"/index.html%20",
        b"/NUL",
        b"/con",
    ]
    with Conn(srv.port) as c:
        for path in attempts:
            c.send(get(path))
            r = read_response(c)
            check(r.status in (403, 404), f"{path[:60]!r}: status {r.status}")
            check(SECRET not in r.body and b"root:" not in r.body,
                  f"{path[:60]!r}: served {r.body[:80]!r}")
            eq(r.header("Connection"), None, f"{path[:60]!r} keeps the connection")
        # A malformed percent-encoding is a bad request, still never a file.
        for path in (b"/%", b"/%2", b"/%zz", b"/index.html%g0"):
            c.send(get(path))
            eq(read_response(c).status, 400, f"status for {path!r}")
        c.send(get("/index.html"))
        check_file(read_response(c), root, "index.html", *TYPES["index.html"])


def test_missing(srv, root):
    with Conn(srv.port) as c:
        for path in ("/nope", "/nope/", "/sub/nope.html", "/notes.txt/more", "/index.html/"):
            c.send(get(path))
            r = read_response(c)
            eq(r.status, 404, f"status for {path}")
            eq(r.header("Connection"), None, "404 keeps the connection")


def test_dirs(srv, root):
    index, ctype = TYPES["index.html"]
    with Conn(srv.port) as c:
        for path in ("/", "/?q=1", "/.", "/./"):
            c.send(get(path))
            eq(read_response(c).body, index, f"index for {path}")
        for path in ("/sub", "/sub/", "/sub/./", "/sub//"):
            c.send(get(path))
            r = read_response(c)
            eq((r.status, r.body), (200, b"<p>sub</p>\n"), f"index for {path}")
            eq(r.header("Content-Type"), "text/html; charset=utf-8", f"type for {path}")
        for path in ("/noindex", "/noindex/", "/sub/deep/"):
            c.send(get(path))
            eq(read_response(c).status, 404, f"directory without index.html: {path}")
        c.send(get("/noindex/file.txt"))
        eq(read_response(c).body, b"in noindex\n", "file in a directory without index")
        c.send(get("/sub/deep/file.txt"))
        eq(read_response(c).body, b"deep\n", "file two levels down")
        # The type comes from the decoded name.
        c.send(get("/%73ub/deep/file.%74xt"))
        r = read_response(c)
        eq((r.body, r.header("Content-Type")), (b"deep\n", "text/plain; charset=utf-8"),
           "percent-encoded name")


def test_fifo(srv, root):
    with Conn(srv.port) as c:
        for path in ("/fifo", "/fifo/", "/fifo/x"):
            c.send(get(path))
            r = read_response(c)
            check(r.status in (403, 404), f"{path}: status {r.status}")
        # The server was not stuck in open(): this and other connections go on.
        c.send(get("/notes.txt"))
        eq(read_response(c).status, 200, "after the FIFO")
    with Conn(srv.port) as c:
        c.send(get("/fifo", method=b"HEAD"))
        check(read_response(c, head=True).status in (403, 404), "HEAD of the FIFO")


def test_methods(srv, root):
    with Conn(srv.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        r = read_response(c)
        eq((r.status, r.body), (200, b"hello"), "POST /echo with --root")
        for req in (b"PUT /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
                    b"DELETE /index.html HTTP/1.1\r\nHost: t\r\n\r\n",
                    b"POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
                    b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"):
            c.send(req)
            r = read_response(c)
            eq(r.status, 405, f"status for {req[:20]!r}")
            eq(r.header("Allow"), "GET, HEAD", "Allow header")
            eq(r.header("Connection"), None, "405 keeps the connection")
        c.send(b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n")
        eq(read_response(c).status, 501, "unknown method")
        c.send(get("/index.html"))
        check_file(read_response(c), root, "index.html", *TYPES["index.html"])


def test_http10(srv, root):
    with Conn(srv.port) as c:
        c.send(b"GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = read_response(c)
        eq((r.status, r.header("Connection")), (200, "keep-alive"), "HTTP/1.0 keep-alive")
        eq(r.body, TYPES["style.css"][0], "HTTP/1.0 body")
        c.send(b"GET /big.bin HTTP/1.0\r\n\r\n")
        r = read_response(c)
        eq(r.header("Connection"), "close", "HTTP/1.0 close")
        check(r.body == BIG, "HTTP/1.0 big body")
        c.expect_closed()


def test_flags(binary, backend, tmp):
    r = evnserver.run_program(binary, "--help", timeout=TOOL_TIMEOUT)
    check(b"--root DIR" in r.stdout, f"usage does not list --root: {r.stdout!r}")
    for args in (["--root", os.path.join(tmp, "missing")], ["--root"],
                 ["--root", os.path.join(tmp, "root", "notes.txt")]):
        r = evnserver.run_program(binary, *args, timeout=TOOL_TIMEOUT)
        eq(r.returncode, 2, f"exit status for {args}")
        check(b"usage:" in r.stderr, f"no usage for {args}: {r.stderr!r}")


def test_tls(binary, backend, root, tmp):
    """Over TLS evn reads and encrypts the file itself: the same bytes must
    come out, whole and as a range, and keep-alive still works."""
    cert, key = make_cert(tmp)
    srv = Server(binary, backend, "--root", root, "--tls-cert", cert, "--tls-key", key)
    try:
        port = srv.port_of("tls")
        check(port, f"no tls:// listener in {srv.urls}")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with Conn(port) as c:
            c.s = ctx.wrap_socket(c.s, server_hostname="localhost")
            c.send(get("/big.bin") + get("/big.bin", b"Range: bytes=-70000\r\n"))
            check_file(read_response(c), root, "big.bin", BIG, "application/octet-stream")
            r = read_response(c)
            eq(r.status, 206, "range over TLS")
            check(r.body == BIG[-70000:], "range over TLS differs")
            c.send(get("/notes.txt"))
            eq(read_response(c).body, TYPES["notes.txt"][0], "after the file, over TLS")
        out = os.path.join(tmp, "curl-tls.out")
        r = subprocess.run(["curl", "--silent", "--fail", "-k", "-o", out,
                            f"https://127.0.0.1:{port}/big.bin"],
                           capture_output=True, timeout=TOOL_TIMEOUT)
        eq(r.returncode, 0, f"curl over TLS ({r.stderr!r})")
        with open(out, "rb") as f:
            check(f.read() == BIG, "curl's copy of big.bin over TLS differs")
    finally:
        srv.stop()


def fds(pid):
    d = f"/proc/{pid}/fd"
    out = []
    for name in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, name)))
        except OSError:
            pass
    return sorted(out)


def wait_fds(pid, want):
    """The server closes a connection's descriptors when it sees the client
    go, which is after the client's close returns: poll, with a deadline."""
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        have = fds(pid)
        if have == want or time.monotonic() > deadline:
            return have
        time.sleep(0.01)


# ---- the runner ----


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--backend", default=os.environ.get("EVN_BACKEND", "epoll"))
    ap.add_argument("--tls", choices=("on", "off"), default="on",
                    help="off: evn was built without TLS, skip the TLS test")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="evn-http-static-") as tmp:
        root = make_tree(tmp)
        try:
            srv = Server(args.server, args.backend, "--root", root)
        except Failure as e:
            print(f"FAIL start: {e}")
            return 1
        have_proc = (not evnserver.skip_on_windows("no_fd_leak", evnserver.WHY_NO_FDS)
                     and os.path.isdir(f"/proc/{srv.proc.pid}/fd"))
        if have_proc:
            # Before any client: the listeners, the poller, the root.
            before = fds(srv.proc.pid)
            check(before.count(root) == 1, f"root not open once: {before}")
        tests = [test_types, test_big, test_head, test_conditional, test_ranges, test_pipelined,
                 test_traversal, test_missing, test_dirs, test_fifo, test_methods, test_http10]
        for fn in tests:
            record(fn.__name__, fn, srv, root)
        if shutil.which("curl"):
            record("test_curl", test_curl, srv, root, tmp)
        else:
            missing("curl", "curl")
        if have_proc:
            def no_fd_leak():
                after = wait_fds(srv.proc.pid, before)
                eq(after, before, "the server's descriptors after every test")
            record("no_fd_leak", no_fd_leak)
        record("stop_sigterm", srv.stop)
        record("test_flags", test_flags, args.server, args.backend, tmp)
        usage = evnserver.run_program(args.server, "--help", timeout=TOOL_TIMEOUT).stdout
        if args.tls == "off":
            skip("test_tls: " + (evnserver.WHY_NO_TLS if evnserver.WINDOWS else
                                 "evn built without TLS"))
        elif b"--tls-cert" not in usage:
            record("test_tls", check, False, "a build with TLS has no --tls-cert in --help")
        elif not shutil.which("openssl"):
            missing("openssl", "openssl")
        elif not shutil.which("curl"):
            skip("test_tls: needs curl (reported missing above)")
        else:
            record("test_tls", test_tls, args.server, args.backend, root, tmp)
    return finish()


if __name__ == "__main__":
    main_guard(main)
