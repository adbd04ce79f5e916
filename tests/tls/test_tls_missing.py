#!/usr/bin/env python3
"""In a build of evn without OpenSSL, the --tls-* flags are still parsed
(half a pair is a usage error) and a full pair fails with a message saying
that TLS needs OpenSSL.

    test_tls_missing.py ECHO_SERVER
"""

import os
import subprocess
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import evnserver  # noqa: E402
from evnserver import IO_TIMEOUT, check, finish, main_guard  # noqa: E402


def main():
    binary = sys.argv[1]
    r = subprocess.run([binary, "--port", "0", "--tls-cert", "c.pem"], capture_output=True,
                       text=True, timeout=IO_TIMEOUT)
    check(r.returncode == 2 and "usage" in r.stderr, "only --tls-cert: usage, status 2")
    r = subprocess.run([binary, "--port", "0", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
                       capture_output=True, text=True, timeout=IO_TIMEOUT)
    check(r.returncode == 1 and "--tls-cert" in r.stderr and "OpenSSL" in r.stderr,
          f"--tls-cert and --tls-key without OpenSSL: status 1, says why ({r.stderr.strip()})")
    return finish()


if __name__ == "__main__":
    evnserver.verbose = True
    main_guard(main)
