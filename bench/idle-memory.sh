#!/usr/bin/env bash
# Server memory per idle connection: RSS growth over many idle connections.
#
#   bench/idle-memory.sh [-n NAME] [-p http|redis|echo] [-c CONNS] -s 'SERVER' ...
#
# For each round and each server in turn (a fresh server every time, pinned
# to CPU 0): start it ("{port}" in its command becomes a free port), wait
# until it accepts, warm it up with WARMUP_CONNS connections that make one
# request each and close, read its VmRSS (/proc/PID/status), then open CONNS
# connections with bench/idle-conns (on CPU 1) that make one request each
# (-p: the protocol of the server given after it) and stay open, read VmRSS
# again, and stop both. Prints one line per round and server:
#   mem R NAME conns N rss_before_kb A rss_after_kb B fds_added F bytes_per_conn X
# (F: how many more fds the server had open at the second reading, which
# shows that it still held the connections)
# and then one per server, median, min and max over the rounds:
#   memresult NAME bytes_per_conn MEDIAN MIN MAX
#
# The soft fd limit is raised to the hard one for the servers and the client.
# The warm-up makes more requests than an io_uring server has provided
# receive buffers (evn's and floor-uring's: 256): the kernel takes them in
# turn, so fewer would leave some untouched, to be counted as the idle
# connections' memory when they fill.
#
# Environment: ROUNDS (3), CONNS (10000, the default for -c), WARMUP_CONNS (300),
# SETTLE (1 second before each reading), SERVER_CPU (0), LOAD_CPU (1),
# START_TIMEOUT (10 seconds), IDLE_CONNS (the client; default next to the
# other helpers in EVN_BUILD_DIR/bench). Servers and clients are always
# killed on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-10000}
WARMUP_CONNS=${WARMUP_CONNS:-300}
SETTLE=${SETTLE:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
START_TIMEOUT=${START_TIMEOUT:-10}
IDLE_CONNS=${IDLE_CONNS:-${EVN_BUILD_DIR:-$here/../build-bench}/bench/idle-conns}
[[ -x $IDLE_CONNS ]] || { echo "idle-memory: no client $IDLE_CONNS (build bench/)" >&2; exit 1; }

names=() protos=() conns=() servers=()
next_name="" next_proto=http next_conns=""
while (($#)); do
    case $1 in
    -n) next_name=$2; shift 2 ;;
    -p) next_proto=$2; shift 2 ;;
    -c) next_conns=$2; shift 2 ;;
    -s)
        names+=("${next_name:-server${#servers[@]}}")
        protos+=("$next_proto")
        conns+=("${next_conns:-$CONNS}")
        servers+=("$2")
        next_name="" next_conns=""
        shift 2
        ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2 ;;
    esac
done
((${#servers[@]})) || { echo "idle-memory: no server (-s)" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)"

spid="" cpid=""
stop() {
    local pid
    for pid in $cpid $spid; do
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    spid="" cpid=""
}
tmp=$(mktemp -d)
trap 'stop; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

rss_kb() {
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}

fd_count() {
    local fds=(/proc/"$1"/fd/*)
    echo "${#fds[@]}"
}

# Runs the client in the background (so that signals are acted on at once)
# and waits for it.
client() {
    taskset -c "$LOAD_CPU" "$IDLE_CONNS" "$@" &
    cpid=$!
    local rc=0
    wait "$cpid" || rc=$?
    cpid=""
    return $rc
}

: >"$tmp/mem"
for ((r = 1; r <= ROUNDS; r++)); do
    for i in "${!servers[@]}"; do
        name=${names[$i]} n=${conns[$i]} proto=${protos[$i]}
        port=$(free_port)
        cmd=${servers[$i]//\{port\}/$port}
        taskset -c "$SERVER_CPU" bash -c "exec $cmd" >"$tmp/server.out" 2>"$tmp/server.err" &
        spid=$!
        deadline=$((SECONDS + START_TIMEOUT))
        until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
            if ! kill -0 "$spid" 2>/dev/null || ((SECONDS >= deadline)); then
                echo "idle-memory: $name did not start: $cmd" >&2
                cat "$tmp/server.err" >&2
                exit 1
            fi
            sleep 0.05
        done
        client --port "$port" --proto "$proto" --conns "$WARMUP_CONNS" --exit >/dev/null
        sleep "$SETTLE"
        before=$(rss_kb "$spid")
        fds0=$(fd_count "$spid")
        taskset -c "$LOAD_CPU" "$IDLE_CONNS" --port "$port" --proto "$proto" --conns "$n" \
            >"$tmp/client.out" 2>"$tmp/client.err" &
        cpid=$!
        until grep -q '^open' "$tmp/client.out"; do
            if ! kill -0 "$cpid" 2>/dev/null; then
                echo "idle-memory: the client failed against $name:" >&2
                cat "$tmp/client.err" >&2
                exit 1
            fi
            sleep 0.05
        done
        sleep "$SETTLE"
        after=$(rss_kb "$spid")
        fds1=$(fd_count "$spid")
        stop
        awk -v r="$r" -v name="$name" -v n="$n" -v a="$before" -v b="$after" -v f=$((fds1 - fds0)) 'BEGIN {
            printf "mem %s %s conns %d rss_before_kb %d rss_after_kb %d fds_added %d bytes_per_conn %.1f\n",
                r, name, n, a, b, f, (b - a) * 1024 / n }' | tee -a "$tmp/mem"
    done
done

for i in "${!servers[@]}"; do
    awk -v n="${names[$i]}" '
        $3 == n { k++; v[k] = $NF }
        END {
            for (i = 2; i <= k; i++)
                for (j = i; j > 1 && v[j - 1] > v[j]; j--) { x = v[j]; v[j] = v[j - 1]; v[j - 1] = x }
            med = k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
            printf "memresult %s bytes_per_conn %.1f %.1f %.1f\n", n, med, v[1], v[k]
        }' "$tmp/mem"
done
