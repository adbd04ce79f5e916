#!/usr/bin/env bash
# System calls per message of echo servers on epoll and on io_uring.
#
#   bench/syscalls.sh                              the four servers below, strace
#   TOOL=perf bench/syscalls.sh                    counted by perf's tracepoints
#   bench/syscalls.sh -n NAME -s 'SERVER' [-n NAME -s 'SERVER' ...]
#
# The servers, unless given: floor (bench/floor --mode echo), evn (evn's
# echo-server), floor-uring (bench/floor-uring --mode echo) and evn-uring
# (echo-server --backend io_uring); the io_uring two only when the build has
# floor-uring and evn runs on io_uring here. "{port}" in a command is
# replaced by a free port.
#
# Each server runs under bench/profile-per-msg.sh TOOL, on CPU 0: the load,
# bench/echo-load with CONNS connections each keeping DEPTH messages of SIZE
# bytes in flight, MESSAGES messages in all, runs once to warm up, then once
# more with the counter attached to the server (strace -c -f -p PID, or perf
# stat on the syscalls:sys_enter_* tracepoints), and the calls counted are
# divided by the messages echo-load says came back in that run. The run's
# connections are opened and closed while counting: a few calls each
# (accept, setsockopt, close), a few thousandths a message at the defaults.
#
# Prints a Markdown table, a row a server: messages, system calls per
# message in all, io_uring_enter and epoll_wait per message, and the reads
# (read, readv, recv, recvfrom, recvmsg) and writes (write, writev, send,
# sendto, sendmsg) per message; then each server's calls by name, those
# above 0.001 a message.
#
# strace stops the server at every call, which slows it several times
# over: more messages then wait per wake-up than in a real run, so wake-ups
# (epoll_wait, io_uring_enter) per message come out lower than without it,
# though reads and writes per message hold. perf's tracepoints barely slow
# the server: TOOL=perf for the wake-ups as they are.
#
# Environment: TOOL (strace, or perf), MESSAGES (50000), CONNS (50),
# DEPTH (1), SIZE (16), EVN_BUILD_DIR (a Release build; default
# build-bench), OUT (keep each server's raw counts in OUT/NAME/).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${EVN_BUILD_DIR:-$root/build-bench}
TOOL=${TOOL:-strace}
MESSAGES=${MESSAGES:-50000}
CONNS=${CONNS:-50}
DEPTH=${DEPTH:-1}
SIZE=${SIZE:-16}

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
    exit 2
}

case $TOOL in strace | perf) ;; *) echo "syscalls: TOOL is strace or perf, not $TOOL" >&2; exit 2 ;; esac
command -v "$TOOL" >/dev/null || { echo "syscalls: $TOOL is not installed" >&2; exit 1; }
echo_load=$build/bench/echo-load
[[ -x $echo_load ]] || { echo "syscalls: $echo_load was not built" >&2; exit 1; }

names=() servers=()
next_name=""
while (($#)); do
    case $1 in
    -n) next_name=$2; shift 2 ;;
    -s) names+=("${next_name:-server${#servers[@]}}"); servers+=("$2"); next_name=""; shift 2 ;;
    *) usage ;;
    esac
done
if ((${#servers[@]} == 0)); then
    floor=$build/bench/floor floor_uring=$build/bench/floor-uring evn_echo=$build/examples/echo-server
    for f in "$floor" "$evn_echo"; do
        [[ -x $f ]] || { echo "syscalls: $f was not built" >&2; exit 1; }
    done
    names=(floor evn)
    servers=("$floor --mode echo --port {port}" "$evn_echo --port {port} --loops 1")
    # As bench/run.sh does: an echo-server asked for io_uring says so, or fails.
    says=$(timeout 1 "$evn_echo" --port 0 --loops 1 --backend io_uring 2>/dev/null || true)
    if [[ -x $floor_uring && $says == *"io_uring backend"* ]]; then
        names+=(floor-uring evn-uring)
        servers+=("$floor_uring --mode echo --port {port}" "$evn_echo --port {port} --loops 1 --backend io_uring")
    else
        echo "syscalls: no io_uring here or floor-uring not built: floor-uring and evn-uring left out" >&2
    fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load="$echo_load --host 127.0.0.1 --port {port} --conns $CONNS --depth $DEPTH --size $SIZE --messages $MESSAGES"

for i in "${!servers[@]}"; do
    name=${names[$i]}
    echo "== $name: ${servers[$i]}" >&2
    keep=()
    [[ -z ${OUT:-} ]] || keep=(env OUT="$OUT/$name")
    if ! "${keep[@]}" "$here/profile-per-msg.sh" "$TOOL" "${servers[$i]}" "$load" >"$tmp/$i.out"; then
        echo "syscalls: the run of $name failed" >&2
        echo "failed" >"$tmp/$i.out"
    fi
done

echo "# System calls per message: echo, $CONNS connections, depth $DEPTH, $SIZE-byte messages, $MESSAGES messages ($TOOL)"
echo
echo "| server | messages | system calls / msg | io_uring_enter / msg | epoll_wait / msg | reads / msg | writes / msg |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for i in "${!servers[@]}"; do
    awk -v name="${names[$i]}" '
        $1 == "failed" { failed = 1 }
        $1 == "messages" { m = $2 }
        $1 == "syscall" {
            c = $4
            if ($2 == "total") { total = c; next }
            if ($2 == "io_uring_enter") enter += c
            if ($2 == "epoll_wait" || $2 == "epoll_pwait" || $2 == "epoll_pwait2") wait += c
            if ($2 ~ /^(read|readv|recv|recvfrom|recvmsg)$/) reads += c
            if ($2 ~ /^(write|writev|send|sendto|sendmsg)$/) writes += c
        }
        END {
            if (failed || !m) { printf "| %s | failed | | | | | |\n", name; exit }
            printf "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f |\n", name, m, total / m, enter / m, wait / m,
                reads / m, writes / m
        }' "$tmp/$i.out"
done
echo
for i in "${!servers[@]}"; do
    printf '%s:' "${names[$i]}"
    awk '$1 == "messages" { m = $2 }
        $1 == "syscall" && $2 != "total" && $6 >= 0.001 { printf " %s %.3f", $2, $6 }
        END { print "" }' "$tmp/$i.out"
done
