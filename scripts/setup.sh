#!/usr/bin/env bash
# Install the Debian/Ubuntu packages that a part of the evn workflow needs.
#
#   scripts/setup.sh PURPOSE...      e.g.  scripts/setup.sh core
#   scripts/setup.sh --list PURPOSE  print the packages, one a line, and exit
#
# Purposes:
#   core      build the library and examples: cmake (and the C compiler of
#             build-essential); OpenSSL, liburing and c-ares are optional,
#             see tls, uring and dns
#   test      core + what the test suite uses: python3 and pkg-config, OpenSSL's
#             headers (libssl-dev) so the TLS code is built and tested,
#             liburing-dev so the io_uring backend is, libc-ares-dev so
#             host names are resolved by the loop itself, nc, the
#             openssl command (the TLS tests make their certificates with
#             it); with tests/http, the HTTP
#             clients (curl, wrk, ab, h2load); with tests/redis, Debian's
#             redis-server to compare with, redis-cli, redis-benchmark,
#             python3-redis and nutcracker (twemproxy, for the scale-out test);
#             with tests/scale, haproxy (Debian's 2.6) and iproute2 (ip, to
#             make the hosts as network namespaces)
#   sanitize  same as test (gcc's ASan/UBSan/TSan runtimes come with
#             build-essential: libasan8, libubsan1, libtsan2)
#   examples  core + clients to try the example servers (nc, curl, redis-cli)
#   tls       core + OpenSSL's headers (libssl-dev) and the openssl command
#   uring     core + liburing-dev, for the io_uring backend
#   dns       core + c-ares (libc-ares-dev, found with pkg-config), so that
#             evn_connect resolves host names by the loop itself (without
#             it: getaddrinfo on threads)
#   bench     core + the comparison servers, load generators and plotting
#   fuzz      core + clang and its libFuzzer runtime
#   format    clang-format
#   windows-build  core + the mingw-w64 cross-compiler for 64-bit Windows
#             (gcc-mingw-w64-x86-64, whose -posix compiler has winpthreads):
#             make windows
#   windows   windows-build + test + Wine (wine64) to run the .exe files and
#             the examples' Python tests against them: make test-windows
#
# Idempotent: it asks dpkg which packages are missing (a tool that is on PATH
# counts as there, however it was installed) and prints nothing when none is.
# As root it runs `apt-get update` (only when something is missing) and
# installs the missing packages without recommends. As another user it prints
# the one `sudo apt-get install ...` line to run and exits 1.
set -euo pipefail

prog=${0##*/}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages_for() {
    case "$1" in
    core) echo cmake ;;
    test | sanitize)
        packages_for core
        echo python3 pkg-config libssl-dev liburing-dev libc-ares-dev netcat-openbsd openssl
        # The example servers' tests drive them with real clients.
        [ ! -d "$repo/tests/http" ] || echo curl wrk apache2-utils nghttp2-client
        [ ! -d "$repo/tests/redis" ] || echo redis-server redis-tools python3-redis nutcracker
        [ ! -d "$repo/tests/scale" ] || echo haproxy iproute2
        ;;
    examples) packages_for core; echo netcat-openbsd curl redis-tools ;;
    tls) packages_for core; echo libssl-dev openssl ;;
    uring) packages_for core; echo liburing-dev ;;
    dns) packages_for core; echo pkg-config libc-ares-dev ;;
    bench)
        packages_for core
        echo python3 pkg-config libssl-dev liburing-dev libc-ares-dev redis-server redis-tools wrk nginx-light h2o haproxy libuv1-dev \
            libevent-dev gnuplot-nox util-linux hyperfine valgrind strace openssl
        ;;
    fuzz) packages_for core; echo clang "$(clang_rt_package)" ;;
    format) echo clang-format ;;
    windows-build) packages_for core; echo gcc-mingw-w64-x86-64 ;;
    windows) packages_for windows-build; packages_for test; echo wine64 ;;
    *)
        echo "$prog: unknown purpose '$1' (core test sanitize examples tls uring dns bench fuzz format windows-build windows)" >&2
        return 2
        ;;
    esac
}

# libFuzzer lives in libclang-rt-N-dev, N being the major of Debian's default clang.
clang_rt_package() {
    local dep
    dep=$(apt-cache depends clang 2>/dev/null | sed -n '/^ *Depends: clang-[0-9][0-9]*$/{s/^ *Depends: //p;q}' || true)
    if [ -n "$dep" ]; then
        echo "libclang-rt-${dep#clang-}-dev"
    else
        echo libclang-rt-14-dev # Debian 12's
    fi
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

list_only=0
purposes=()
for arg in "$@"; do
    case "$arg" in
    -h | --help) usage; exit 0 ;;
    --list) list_only=1 ;;
    -*) echo "$prog: unknown option '$arg'" >&2; exit 2 ;;
    *) purposes+=("$arg") ;;
    esac
done
[ ${#purposes[@]} -gt 0 ] || purposes=(core)

wanted=()
for p in "${purposes[@]}"; do
    list=$(packages_for "$p") || exit 2
    for pkg in $list; do
        case " ${wanted[*]-} " in *" $pkg "*) ;; *) wanted+=("$pkg") ;; esac
    done
done

if [ "$list_only" = 1 ]; then
    printf '%s\n' "${wanted[@]}"
    exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    # Not Debian-like: say what is needed and let the build find out.
    if ! command -v cmake >/dev/null 2>&1; then
        echo "$prog: not a Debian/Ubuntu system; install the equivalents of: ${wanted[*]}" >&2
        exit 1
    fi
    exit 0
fi

# A tool installed some other way (a newer cmake in /usr/local, say) will do.
command_of() {
    case "$1" in
    cmake | pkg-config | python3 | clang-format | curl | wrk | hyperfine | haproxy | h2o | \
        valgrind | strace | openssl) echo "$1" ;;
    redis-tools) echo redis-cli ;;
    iproute2) echo ip ;;
    nutcracker) echo nutcracker ;;
    apache2-utils) echo ab ;;
    nghttp2-client) echo h2load ;;
    gnuplot-nox) echo gnuplot ;;
    nginx-light) echo nginx ;;
    gcc-mingw-w64-x86-64) echo x86_64-w64-mingw32-gcc-posix ;;
    esac
}

missing=()
for pkg in "${wanted[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    case "$status" in
    ii*) continue ;;
    esac
    cmd=$(command_of "$pkg")
    if [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1; then
        continue
    fi
    missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "$prog: missing packages for '${purposes[*]}'. Run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp "${TMPDIR:-/tmp}/evn-setup.XXXXXX")
trap 'rm -f "$log"' EXIT
apt_opts=(-q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)

echo "$prog: installing ${missing[*]}"
# A stale or partly broken source list makes update complain; the install
# below is the real test, so keep going and show the complaint only if it fails.
apt-get "${apt_opts[@]}" update >"$log" 2>&1 || true
if ! apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    echo "$prog: apt-get install failed:" >&2
    tail -n 40 "$log" >&2
    exit 1
fi
echo "$prog: done"
