#!/usr/bin/env bash
# The cost of evn's TCP proxy and of its worker-pool example, measured as
# ../shared/BENCHMARKING.md says: the server under test pinned to CPU 0, the
# load (and the proxied backend) to CPU 1; throughput from the load tool and
# the server's CPU microseconds per request, (utime + stime from
# /proc/PID/stat fields 14 and 15, after - before) / requests; the median of
# ROUNDS rounds after one warm-up, each round running every contender in turn
# so that drift of the machine touches all alike.
#
#   examples/proxy/bench-proxy.sh            # the real measurement
#   N=2000 DURATION=1 ROUNDS=1 WARMUP=0 examples/proxy/bench-proxy.sh   # smoke run
#
# Proxy: redis-benchmark -c 50 -n N -t ping_inline,set,get at -P 1 and -P 16
# through tcp-proxy (one loop) and through HAProxy (mode tcp, nbthread 1), both
# in front of the same backend, the repo's Redis example (BACKEND=redis for
# Debian's redis-server); the backend reached directly gives the throughput
# with no proxy. Workers: wrk -t1 -c50 -dDURATION against http-workers
# GET /sleep?ms=1 (WORKERS threads, default its own: CPUs x 4).
#
# Needs: redis-tools (redis-benchmark), haproxy, wrk, and the build (BUILD,
# default build/ at the top of the repo: make). Environment: N (100000),
# DURATION (5 seconds), ROUNDS (3), WARMUP (1), SERVER_CPU (0), LOAD_CPU (1),
# BACKEND (evn or redis), WORKERS, BUILD, SPLICE (tcp-proxy's --splice:
# auto, the default, on, off or BYTES). Every process it starts is killed
# on exit, whatever happens.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$top/build}
N=${N:-100000}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BACKEND=${BACKEND:-evn}
WORKERS=${WORKERS:-}
SPLICE=${SPLICE:-auto}
CLK_TCK=$(getconf CLK_TCK)

for tool in redis-benchmark haproxy wrk taskset python3; do
    command -v "$tool" >/dev/null || {
        echo "bench-proxy: $tool is missing (Debian: redis-tools haproxy wrk util-linux python3)" >&2
        exit 1
    }
done
for bin in tcp-proxy redis-server http-workers; do
    [[ -x $BUILD/examples/$bin ]] || {
        echo "bench-proxy: $BUILD/examples/$bin is missing: build first (make)" >&2
        exit 1
    }
done

tmp=$(mktemp -d)
pids=()
load_pid=""

cleanup() {
    local pid
    if [[ -n $load_pid ]]; then
        kill "$load_pid" 2>/dev/null || true
        wait "$load_pid" 2>/dev/null || true
    fi
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # A server that does not stop on SIGTERM gets SIGKILL after ~5 s.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start NAME CPU PORT COMMAND...: start a server pinned to CPU, wait until
# PORT accepts connections; its PID is left in $started.
start() {
    local name=$1 cpu=$2 port=$3
    shift 3
    taskset -c "$cpu" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    started=$!
    pids+=("$started")
    local deadline=$((SECONDS + 10))
    until port_open "$port"; do
        if ! kill -0 "$started" 2>/dev/null; then
            echo "bench-proxy: $name exited: $*" >&2
            cat "$tmp/$name.err" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "bench-proxy: $name is not accepting on port $port" >&2
            exit 1
        fi
        sleep 0.05
    done
}

# CPU ticks (utime + stime) of process $1: fields 14 and 15 of its stat.
ticks() {
    local stat rest
    stat=$(<"/proc/$1/stat")
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}

# run_load CMD...: run the load pinned to LOAD_CPU into $tmp/load.out, in the
# background so that a signal stops it at once.
run_load() {
    taskset -c "$LOAD_CPU" "$@" >"$tmp/load.out" 2>"$tmp/load.err" &
    load_pid=$!
    if ! wait "$load_pid"; then
        load_pid=""
        echo "bench-proxy: load failed: $*" >&2
        cat "$tmp/load.err" >&2
        exit 1
    fi
    load_pid=""
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'
}

# ---- the backend and the two proxies

bport=$(free_port)
if [[ $BACKEND == redis ]]; then
    start backend "$LOAD_CPU" "$bport" redis-server --port "$bport" --bind 127.0.0.1 \
        --save '' --appendonly no --daemonize no
else
    start backend "$LOAD_CPU" "$bport" "$BUILD/examples/redis-server" --port "$bport"
fi

eport=$(free_port)
start evn "$SERVER_CPU" "$eport" "$BUILD/examples/tcp-proxy" \
    --listen "tcp://127.0.0.1:$eport" --backend "tcp://127.0.0.1:$bport" --splice "$SPLICE"
evn_pid=$started

hport=$(free_port)
cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend in
    bind 127.0.0.1:$hport
    default_backend out
backend out
    server s1 127.0.0.1:$bport
EOF
start haproxy "$SERVER_CPU" "$hport" haproxy -db -f "$tmp/haproxy.cfg"
haproxy_pid=$started

# One round of redis-benchmark against PORT with pipeline P; appends
# "NAME TEST P RPS CPU_US_PER_REQ" lines to $tmp/results (CPU of PID, or "-").
redis_round() {
    local name=$1 port=$2 pid=$3 p=$4 t0 t1 test
    for test in ping_inline set get; do
        [[ $pid != - ]] && t0=$(ticks "$pid")
        run_load redis-benchmark -p "$port" -c 50 -n "$N" -P "$p" -t "$test" --csv
        [[ $pid != - ]] && t1=$(ticks "$pid")
        local rps
        rps=$(awk -F'","' 'NR == 2 { print $2 }' "$tmp/load.out")
        local cpu=-
        if [[ $pid != - ]]; then
            cpu=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$N" \
                'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
        fi
        echo "$name $test $p $rps $cpu" >>"$tmp/results"
    done
}

: >"$tmp/results"
for ((r = 0; r < WARMUP + ROUNDS; r++)); do
    [[ $r -lt $WARMUP ]] && out=/dev/null || out=$tmp/results
    for p in 1 16; do
        for who in evn haproxy direct; do
            case $who in
            evn) redis_round tcp-proxy "$eport" "$evn_pid" "$p" ;;
            haproxy) redis_round haproxy "$hport" "$haproxy_pid" "$p" ;;
            direct) redis_round direct "$bport" - "$p" ;;
            esac
        done
    done
    # Warm-up rounds are thrown away.
    if [[ $r -lt $WARMUP ]]; then
        : >"$tmp/results"
    fi
done

echo
echo "## TCP proxy: redis-benchmark -c 50 -n $N, backend: $BACKEND Redis example" \
    "($(nproc) CPUs, $(uname -r), median of $ROUNDS)"
echo
echo "| proxy | test | -P | requests/s | proxy CPU µs/request |"
echo "|---|---|---|---|---|"
for p in 1 16; do
    for test in ping_inline set get; do
        for name in tcp-proxy haproxy direct; do
            rps=$(awk -v n="$name" -v t="$test" -v p="$p" '$1 == n && $2 == t && $3 == p { print $4 }' \
                "$tmp/results" | median)
            cpu=$(awk -v n="$name" -v t="$test" -v p="$p" '$1 == n && $2 == t && $3 == p && $5 != "-" { print $5 }' \
                "$tmp/results" | median)
            echo "| $name | $test | $p | $rps | $cpu |"
        done
    done
done

# ---- the worker pool

wport=$(free_port)
wargs=(--port "$wport")
[[ -n $WORKERS ]] && wargs+=(--workers "$WORKERS")
start workers "$SERVER_CPU" "$wport" "$BUILD/examples/http-workers" "${wargs[@]}"
workers_pid=$started
nworkers=$(awk '/ workers$/ { print $1 }' "$tmp/workers.out")
: >"$tmp/wresults"
for ((r = 0; r < WARMUP + ROUNDS; r++)); do
    t0=$(ticks "$workers_pid")
    run_load wrk -t1 -c50 -d"${DURATION}s" "http://127.0.0.1:$wport/sleep?ms=1"
    t1=$(ticks "$workers_pid")
    reqs=$(awk '/requests in/ { print $1 }' "$tmp/load.out")
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$tmp/load.out")
    if grep -q -e "Non-2xx" -e "Socket errors" "$tmp/load.out"; then
        echo "bench-proxy: wrk saw errors:" >&2
        cat "$tmp/load.out" >&2
        exit 1
    fi
    if [[ $r -ge $WARMUP ]]; then
        awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$reqs" -v rps="$rps" \
            'BEGIN { printf "%s %.2f\n", rps, n ? d * 1e6 / hz / n : 0 }' >>"$tmp/wresults"
    fi
done
echo
echo "## Worker pool: wrk -t1 -c50 -d${DURATION}s GET /sleep?ms=1, $nworkers workers (median of $ROUNDS)"
echo
echo "| server | requests/s | server CPU µs/request |"
echo "|---|---|---|"
echo "| http-workers | $(awk '{ print $1 }' "$tmp/wresults" | median) |" \
    "$(awk '{ print $2 }' "$tmp/wresults" | median) |"
