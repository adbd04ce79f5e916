#!/usr/bin/env bash
# What a server does per message: system calls and user-space instructions.
#
#   bench/profile-per-msg.sh TOOL 'SERVER COMMAND' 'LOAD COMMAND'
#
# TOOL is one of
#   perf       syscall counts from the kernel's tracepoints (perf stat -e
#              'syscalls:sys_enter_*'); barely slows the server, so the
#              batching (events per epoll_wait, bytes per read) is the real one.
#   strace     strace -c -f attached to the server: counts and kernel time per
#              call. It slows the server a lot, so more events pile up per
#              epoll_wait than in a real run; read and write counts still hold.
#   callgrind  the server runs under valgrind --tool=callgrind; the counters
#              are zeroed after the warm-up and dumped after the measured run,
#              so only the measured messages count. Prints instructions per
#              message, in total and per function (callgrind_annotate).
#
# "{port}" in both commands is replaced by a free port. The server runs on
# CPU 0 (SERVER_CPU), the load on CPU 1 (LOAD_CPU). The load runs once to
# warm up, then once measured; give it a fixed --messages so runs compare.
# The load must print "messages N". Results are per message of that run.
#
# Environment: OUT (directory for the raw outputs, default a temporary one
# that is removed), TOP (functions to show, 25), START_TIMEOUT (60 s).
set -euo pipefail

[[ $# == 3 ]] || { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2; }
tool=$1 server=$2 load=$3
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TOP=${TOP:-25}
START_TIMEOUT=${START_TIMEOUT:-60}
case $tool in perf | strace | callgrind) ;; *) echo "profile-per-msg: unknown tool $tool" >&2; exit 2 ;; esac

keep_out=1
if [[ -z ${OUT:-} ]]; then
    OUT=$(mktemp -d)
    keep_out=0
fi
mkdir -p "$OUT"
spid=""
tpid=""
cleanup() {
    local pid
    for pid in $tpid $spid; do
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    ((keep_out)) || rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=${server//\{port\}/$port}
load=${load//\{port\}/$port}

prefix=""
if [[ $tool == callgrind ]]; then
    prefix="valgrind --tool=callgrind --callgrind-out-file=$OUT/callgrind.out.%p"
fi
taskset -c "$SERVER_CPU" bash -c "exec $prefix $server" >"$OUT/server.out" 2>"$OUT/server.err" &
spid=$!
deadline=$((SECONDS + START_TIMEOUT))
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$spid" 2>/dev/null || { echo "profile-per-msg: server exited" >&2; cat "$OUT/server.err" >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "profile-per-msg: server not accepting after ${START_TIMEOUT}s" >&2; exit 1; }
    sleep 0.05
done

run_load() {
    taskset -c "$LOAD_CPU" bash -c "exec $load"
}

run_load >/dev/null

case $tool in
perf)
    perf stat -x, -e 'syscalls:sys_enter_*' -e task-clock -e context-switches -p "$spid" -o "$OUT/perf.csv" &
    tpid=$!
    # perf needs a moment to attach; its events have no "attached" signal.
    sleep 1
    out=$(run_load)
    kill -INT "$tpid"
    wait "$tpid" || true
    tpid=""
    ;;
strace)
    strace -c -f -p "$spid" -o "$OUT/strace.txt" 2>"$OUT/strace.err" &
    tpid=$!
    for _ in $(seq 200); do
        [[ $(awk '/^TracerPid/ { print $2 }' "/proc/$spid/status") != 0 ]] && break
        sleep 0.05
    done
    out=$(run_load)
    kill -INT "$tpid"
    wait "$tpid" || true
    tpid=""
    ;;
callgrind)
    callgrind_control -z "$spid" >/dev/null 2>&1
    out=$(run_load)
    callgrind_control -d "$spid" >/dev/null 2>&1
    ;;
esac

messages=$(awk '$1 == "messages" { print $2 }' <<<"$out")
[[ -n $messages && $messages != 0 ]] || { echo "profile-per-msg: no messages: $out" >&2; exit 1; }
echo "# $tool: $server"
echo "# load: $load"
echo "messages $messages"

case $tool in
perf)
    awk -F, -v m="$messages" '
        $3 ~ /^syscalls:sys_enter_/ && $1 + 0 > 0 {
            name = $3; sub(/^syscalls:sys_enter_/, "", name)
            printf "syscall %-16s calls %10d per_msg %.4f\n", name, $1, $1 / m; total += $1
        }
        $3 == "task-clock" { clock = $1 }
        $3 == "context-switches" { cs = $1 }
        END {
            printf "context_switches_per_msg %.4f\n", cs / m
            printf "syscall %-16s calls %10d per_msg %.4f\n", "total", total, total / m
            printf "task_clock_us_per_msg %.4f\n", clock * 1000 / m
        }' "$OUT/perf.csv"
    ;;
strace)
    awk -v m="$messages" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 {
            name = $NF; calls = $4; errors = NF == 6 ? $5 : 0
            if (name == "total") next
            printf "syscall %-16s calls %10d per_msg %.4f errors %d usecs_per_call %s\n", name, calls, calls / m, errors, $3
            total += calls
        }
        END { printf "syscall %-16s calls %10d per_msg %.4f\n", "total", total, total / m }' "$OUT/strace.txt"
    ;;
callgrind)
    # The dump taken after the measured run is part 1: callgrind.out.PID.1.
    dumps=("$OUT"/callgrind.out.*.1)
    file=${dumps[0]}
    callgrind_annotate --threshold=100 --auto=no "$file" >"$OUT/annotate.txt"
    callgrind_annotate --threshold=100 --auto=no --inclusive=yes "$file" >"$OUT/annotate-inclusive.txt"
    callgrind_annotate --threshold=100 --auto=yes "$file" >"$OUT/annotate-source.txt" 2>/dev/null || true
    # A dump taken mid-run charges the whole run, as self cost, to each
    # frame still on the stack below the loop (main, libc start-up, the
    # server's run function); entries within 2% of the total are those, skipped.
    awk -v m="$messages" -v top="$TOP" '
        /PROGRAM TOTALS/ { total = $1; gsub(/,/, "", total); total += 0; printf "instructions_per_msg %.1f\n", total / m; next }
        /file:function/ { on = 1; print "# self instructions per message, by function"; next }
        on && /^ *[0-9,]+ \(/ && shown < top {
            n = $1; gsub(/,/, "", n); line = $0
            if (n + 0 >= 0.98 * total) next
            sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, "", line)
            printf "%10.1f  %s\n", n / m, line; shown++
        }' "$OUT/annotate.txt"
    if ((keep_out)); then echo "# raw profile: $file (annotated sources: $OUT/annotate-source.txt)"; fi
    ;;
esac
