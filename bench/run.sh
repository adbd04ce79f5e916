#!/usr/bin/env bash
# evn's benchmark suite: `make bench` (QUICK=1 for a short run) runs this.
#
#   bench/run.sh                        every section, results in bench/results/
#   ONLY=echo,redis bench/run.sh        only those sections
#   SKIP=memory bench/run.sh            all but those
#   QUICK=1 bench/run.sh                short rounds, to check a change (~5 min)
#
# Sections, in order (the method is /BENCHMARKING.md; servers on CPU 0, load
# on CPU 1, 50 connections, warm-up then rounds interleaved across servers).
# Where evn runs, it runs twice, on epoll (evn, the default) and on io_uring
# (evn-uring, --backend io_uring), and the floor twice too, floor (epoll)
# and floor-uring (bench/floor-uring.c), when the build and the kernel have
# io_uring; otherwise those rows are left out and the report says so.
#   echo        16-byte messages at depth 1 and 8 (bench/echo-load):
#               evn's echo-server, the floor, libuv-echo, libevent-echo
#   redis       redis-benchmark 7.0's whole default list, each test on its own
#               (bench/redis-load.sh), at -P 1 and -P 16, -c 50: evn's
#               redis-server beside Redis; the floor too for the PING tests
#   http        wrk -t1 -c50, keep-alive, GET /: evn's http-server, the floor,
#               nginx, h2o, haproxy
#   http-close  the same with -H 'Connection: close' (a connection a request)
#   http-16k    POST /echo with a 16 KiB body (evn, the floor); GET /16k of a
#               16 KiB body (the floor, nginx, h2o, haproxy: they cannot echo)
#   memory      RSS growth per idle connection over 10000 connections that
#               made one request each (bench/idle-memory.sh)
#   loops       evn with 1 loop (CPU 0) and 2 loops (CPUs 0-1), load on CPU 1:
#               echo at depth 8 and HTTP keep-alive
#   https       wrk over TLS, keep-alive and a connection per request: evn's
#               http-server (--tls-cert) and nginx on the same certificate
#   static      GET of a 1 MiB file, keep-alive: evn's http-server --root
#               (sendfile) and nginx (sendfile on)
#   proxy       echo depth 1 and redis-benchmark through evn's tcp-proxy and
#               through HAProxy (mode tcp), one thread each, the same backend
#               (on the load's CPU): the proxy's CPU per proxied request
#   workers     HTTP GET /sleep?ms=1 on evn's http-workers (the handler sleeps
#               1 ms on a worker thread): throughput and loop CPU per request
#
# Figures: throughput from the load tool, and server CPU microseconds per
# request (utime+stime from /proc/PID/stat), median (min-max) of the rounds,
# with the ratios evn/floor and evn/peer, and evn-uring/floor-uring,
# evn-uring/floor and evn-uring/evn (medians of per-round ratios); echo also
# reports each server's median and p99 round trip (bench/echo-load). Rounds
# in which other work took more than MAX_OTHER_PCT of a CPU are run again
# (RETRIES times at most) and counted in the report.
#
# Output: bench/results/DATE.md (the table, printed at the end too),
# DATE-*.png (gnuplot bar charts) and DATE-raw.txt (every round). A quick or
# partial (ONLY/SKIP) run writes to $EVN_BUILD_DIR/bench-results/ instead, so
# that it does not replace the last full results; RESULTS_DIR overrides both.
#
# Environment: EVN_BUILD_DIR (a Release build with the examples and bench/
# helpers; default build-bench), QUICK, ONLY, SKIP, RESULTS_DIR, ROUNDS,
# WARMUP, SECONDS_PER_ROUND, RETRIES, RERUNS, QUIET_WAIT, MAX_OTHER_PCT (see
# cpu-per-msg.sh), REDIS_PIPELINES (the redis section's -P depths, "1 16"), MEM_ROUNDS, MEM_CONNS, MEM_SETTLE, MEM_WARMUP_CONNS
# (idle-memory.sh's ROUNDS, CONNS, SETTLE, WARMUP_CONNS). Full: 1 warm-up round and 8 rounds of 2 s (many
# short interleaved rounds: the machine's speed drifts over seconds, and a
# ratio of two servers' rounds taken side by side is steadier), a noisy
# round re-run up to 2 times and 8 re-runs a workload in all, up to 5 s of
# waiting for a quiet machine before each round, 3 memory rounds. Quick:
# 2 rounds of 1 s, no warm-up, 1 re-run, up to 2 s of waiting, one memory
# round with evn, the floor, nginx and Redis only. A workload whose run
# fails (a server or the load) is run once more before it counts as failed.
# Every server is stopped by PID when the run ends, however it ends.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${EVN_BUILD_DIR:-$root/build-bench}
quick=0
[[ -z ${QUICK:-} || ${QUICK:-} == 0 ]] || quick=1

all_sections=(echo redis http http-close http-16k memory loops https static proxy workers)
want() {
    local s=$1
    if [[ -n ${ONLY:-} ]]; then
        [[ ",$ONLY," == *",$s,"* ]] || return 1
    fi
    [[ ",${SKIP:-}," != *",$s,"* ]]
}
_only=${ONLY:-}; _skip=${SKIP:-}
for s in ${_only//,/ } ${_skip//,/ }; do
    [[ " ${all_sections[*]} " == *" $s "* ]] || { echo "run.sh: unknown section '$s' (${all_sections[*]})" >&2; exit 2; }
done

if ((quick)); then
    : "${ROUNDS:=2}" "${WARMUP:=0}" "${SECONDS_PER_ROUND:=1}" "${RETRIES:=1}" "${RERUNS:=1}"
    : "${QUIET_WAIT:=2}" "${MEM_ROUNDS:=1}" "${MEM_SETTLE:=0.5}"
    redis_scale=6
else
    : "${ROUNDS:=8}" "${WARMUP:=1}" "${SECONDS_PER_ROUND:=2}" "${RETRIES:=2}" "${RERUNS:=$ROUNDS}"
    : "${QUIET_WAIT:=5}" "${MEM_ROUNDS:=3}" "${MEM_SETTLE:=1}"
    redis_scale=1
fi
: "${MAX_OTHER_PCT:=10}" "${MEM_CONNS:=10000}" "${MEM_WARMUP_CONNS:=300}"
export ROUNDS WARMUP RETRIES RERUNS QUIET_WAIT MAX_OTHER_PCT
S=$SECONDS_PER_ROUND
# redis-benchmark runs a fixed number of requests: about 1 s a round on a
# 2-core machine at each depth (a sixth of that in quick mode).
redis_n() {
    case $1 in 1) echo $((60000 / redis_scale)) ;; 8) echo $((500000 / redis_scale)) ;; *) echo $((1000000 / redis_scale)) ;; esac
}
# The same, per test of the redis section's default list: about 0.6 s a round
# (38 cases), an LRANGE_600 request moving 600 elements, a GET one value.
redis_test_n() {
    local t=$1 p=$2 n
    if ((p == 1)); then
        case $t in lrange_100) n=20000 ;; lrange_300) n=10000 ;; lrange_500) n=6000 ;;
        lrange_600) n=5000 ;; mset) n=25000 ;; *) n=40000 ;; esac
    else
        case $t in lrange_100) n=100000 ;; lrange_300) n=40000 ;; lrange_500) n=25000 ;;
        lrange_600) n=20000 ;; mset) n=200000 ;; *) n=600000 ;; esac
    fi
    echo $((n / redis_scale))
}
# The default list, in redis-benchmark's order.
redis_tests=(ping_inline ping_mbulk set get incr lpush rpush lpop rpop sadd hset spop zadd zpopmin
    lrange_100 lrange_300 lrange_500 lrange_600 mset)

partial=0
[[ -z ${ONLY:-} && -z ${SKIP:-} ]] || partial=1
if [[ -n ${RESULTS_DIR:-} ]]; then
    out_dir=$RESULTS_DIR
elif ((quick || partial)); then
    out_dir=$build/bench-results
else
    out_dir=$here/results
fi
mkdir -p "$out_dir"
date=$(date +%F)
raw=$out_dir/$date-raw.txt

floor=$build/bench/floor
floor_uring=$build/bench/floor-uring
echo_load=$build/bench/echo-load
libuv=$build/bench/libuv-echo
libevent=$build/bench/libevent-echo
evn_echo=$build/examples/echo-server
evn_http=$build/examples/http-server
evn_redis=$build/examples/redis-server
for f in "$floor" "$echo_load" "$build/bench/idle-conns" "$evn_echo" "$evn_http" "$evn_redis"; do
    [[ -x $f ]] || { echo "run.sh: $f was not built (make bench builds it)" >&2; exit 1; }
done
have() { command -v "$1" >/dev/null 2>&1; }

# Whether evn runs on io_uring here: built with it, and the kernel lets a
# ring be set up (a seccomp filter or kernel.io_uring_disabled may not). An
# echo-server asked for io_uring by name says so, or fails.
uring=0
uring_says=$(timeout 1 "$evn_echo" --port 0 --loops 1 --backend io_uring 2>/dev/null || true)
[[ $uring_says != *"io_uring backend"* ]] || uring=1

BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/evn-bench.XXXXXX")
export BENCH_TMP EVN_BUILD_DIR=$build
child=""
# The sections' scripts stop their own servers when they end; on a signal
# this one ends the running script by PID (it then stops its servers).
stop_child() {
    if [[ -n $child ]]; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
        child=""
    fi
}
# Backends the proxy section starts for the proxies to relay to (on the
# load's CPU); killed by PID when the run ends, however it ends.
backend_pids=()
stop_backends() {
    local p
    for p in "${backend_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${backend_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    backend_pids=()
}
trap 'stop_child; stop_backends; rm -rf "$BENCH_TMP"' EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM
# Runs "$@" in the background (so that a signal is acted on at once) and
# waits for it; its stdout goes to $BENCH_TMP/out, its stderr to
# $BENCH_TMP/err. Returns its exit status.
run_child() {
    "$@" >"$BENCH_TMP/out" 2>"$BENCH_TMP/err" &
    child=$!
    local rc=0
    wait "$child" || rc=$?
    child=""
    return $rc
}

rel() { local s=${1//$build\//build-bench\/}; s=${s//$root\//}; echo "$s"; }

{
    echo "machine nproc $(nproc)"
    echo "machine kernel $(uname -sr)"
    echo "machine cpu $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "machine memory $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "machine os $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "machine versions $(nginx -v 2>&1 | sed 's/.*version: //'), h2o $(h2o --version 2>/dev/null | awk 'NR == 1 { print $3 }'), $(haproxy -v 2>/dev/null | awk 'NR == 1 { print "haproxy " $3 }'), redis $(redis-server --version 2>/dev/null | sed 's/.*v=\([^ ]*\).*/\1/'), libuv $(pkg-config --modversion libuv 2>/dev/null), libevent $(pkg-config --modversion libevent 2>/dev/null), $(wrk --version 2>&1 | awk 'NR == 1 { print "wrk " $2 }')"
    echo "machine started $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "setting mode $( ((quick)) && echo quick || echo full)"
    echo "setting rounds $ROUNDS warmup $WARMUP seconds $S retries $RETRIES reruns $RERUNS quiet_wait $QUIET_WAIT max_other_pct $MAX_OTHER_PCT mem_rounds $MEM_ROUNDS mem_conns $MEM_CONNS mem_warmup $MEM_WARMUP_CONNS"
    echo "setting command $( ((quick)) && echo "make bench QUICK=1" || echo "make bench")$([[ -z ${ONLY:-} ]] || echo " ONLY=$ONLY")$([[ -z ${SKIP:-} ]] || echo " SKIP=$SKIP")"
} >"$raw"

failures=0
# measure ID SECTION TITLE [-n NAME -s SERVER]... -l LOAD
# One bench/cpu-per-msg.sh run; its lines go to the raw file under ID.
measure() {
    local id=$1 section=$2 title=$3
    shift 3
    local args=("$@") i name="" t0=$SECONDS nservers=0
    echo "case $id $section $title" >>"$raw"
    for ((i = 0; i < ${#args[@]}; i++)); do
        case ${args[$i]} in
        -n) name=${args[$((i + 1))]} ;;
        -s) echo "server $id $name $(rel "${args[$((i + 1))]}")" >>"$raw"; nservers=$((nservers + 1)) ;;
        -l) echo "load $id $(rel "${args[$((i + 1))]}")" >>"$raw" ;;
        esac
    done
    printf '== %s\n' "$title" >&2
    local rc try
    for try in 1 2; do
        rc=0
        run_child env NOISE="${NOISE:-per-cpu}" "$here/cpu-per-msg.sh" "$@" || rc=$?
        ((rc)) || break
        grep -v -e '^noisy ' -e '^waited ' "$BENCH_TMP/err" >&2 || true
        if ((try == 1)); then
            echo "   failed (exit $rc), once more" >&2
            echo "retried $id exit $rc: $(grep -v -e '^noisy ' -e '^waited ' "$BENCH_TMP/err" | head -3 | tr '\n' ' ')" >>"$raw"
        fi
    done
    sed -n "s/^round /round $id /p; s/^result /result $id /p" "$BENCH_TMP/out" >>"$raw"
    sed -n "s/^noisy /noisy $id /p" "$BENCH_TMP/err" >>"$raw"
    echo "waited $id $(grep -c '^waited ' "$BENCH_TMP/err" || true)" >>"$raw"
    ((rc)) || grep -v -e '^noisy ' -e '^waited ' "$BENCH_TMP/err" >&2 || true
    local noisy
    noisy=$(grep -c '^noisy ' "$BENCH_TMP/err" || true)
    noisy=$((noisy / (nservers ? nservers : 1)))
    if ((rc)); then
        echo "failed $id exit $rc" >>"$raw"
        echo "   FAILED (exit $rc)" >&2
        failures=$((failures + 1))
        return 0
    fi
    awk '$1 == "result" { printf "   %-12s %10s msgs/s  %8.3f us/msg (%.3f-%.3f)\n", $2, $4, $8, $9, $10 }' "$BENCH_TMP/out" >&2
    printf '   %ds, %d noisy round(s) re-run\n' $((SECONDS - t0)) "$noisy" >&2
}

# Peers from Debian packages: a server that is not installed is left out.
peer() {
    local name=$1 bin=$2
    shift 2
    if have "$bin"; then
        printf '%s\n' -n "$name" -s "$here/peer.sh $*"
    else
        echo "run.sh: $bin not installed, $name left out (scripts/setup.sh bench installs it)" >&2
        echo "missing $name" >>"$raw"
    fi
}
baseline() {
    local name=$1 bin=$2
    shift 2
    if [[ -x $bin ]]; then
        printf '%s\n' -n "$name" -s "$bin $*"
    else
        echo "run.sh: $bin not built (no pkg-config for it?), $name left out" >&2
        echo "missing $name" >>"$raw"
    fi
}

# The io_uring rows, as -n/-s pairs, or nothing (and a "missing" line) when
# io_uring is not there: uring_floor MODE [ARGS...] for floor-uring,
# uring_evn NAME COMMAND for an example on io_uring.
uring_floor() {
    local m=$1
    shift
    if ((uring)) && [[ -x $floor_uring ]]; then
        printf '%s\n' -n floor-uring -s "$floor_uring --mode $m --host :: --port {port}${*:+ $*}"
    else
        echo "run.sh: no io_uring here or $floor_uring not built (liburing-dev?), floor-uring left out" >&2
        echo "missing floor-uring" >>"$raw"
    fi
}
uring_evn() {
    if ((uring)); then
        printf '%s\n' -n "$1" -s "$2 --backend io_uring"
    else
        echo "run.sh: evn cannot run on io_uring here (built without liburing, or the kernel refuses), $1 left out" >&2
        echo "missing $1" >>"$raw"
    fi
}

t_start=$SECONDS
if want echo; then
    mapfile -t extra < <(baseline libuv "$libuv" --port {port}; baseline libevent "$libevent" --port {port})
    mapfile -t ur < <(uring_floor echo; uring_evn evn-uring "$evn_echo --port {port} --loops 1")
    for d in 1 8; do
        measure "echo-d$d" echo "echo, 16-byte messages, depth $d" \
            -n floor -s "$floor --mode echo --host :: --port {port}" \
            -n evn -s "$evn_echo --port {port} --loops 1" \
            "${ur[@]}" \
            "${extra[@]}" \
            -l "$echo_load --host 127.0.0.1 --port {port} --conns 50 --depth $d --size 16 --seconds $S"
    done
fi

if want redis; then
    # Each test of the default list on its own, with fresh servers (state
    # the full list would have left, such as a list to pop from, is made by
    # redis-load.sh in the warm-up round). The floor answers PING only.
    mapfile -t extra < <(peer redis redis-server redis {port})
    mapfile -t ur < <(uring_evn evn-uring "$evn_redis --port {port} --loops 1")
    mapfile -t urfl < <(uring_floor ping)
    for p in ${REDIS_PIPELINES:-1 16}; do
        for t in "${redis_tests[@]}"; do
            fl=()
            [[ $t != ping_* ]] || fl=(-n floor -s "$floor --mode ping --host :: --port {port}" "${urfl[@]}")
            measure "redis-$t-P$p" redis "redis $t, -P $p" \
                "${fl[@]}" \
                -n evn -s "$evn_redis --port {port} --loops 1" \
                "${ur[@]}" \
                "${extra[@]}" \
                -l "$here/redis-load.sh $t {port} $p $(redis_test_n "$t" "$p")"
        done
    done
fi

http_peers() {
    peer nginx nginx nginx {port}
    peer h2o h2o h2o {port}
    peer haproxy haproxy haproxy {port} "$@"
}
http_uring() {
    uring_floor http
    uring_evn evn-uring "$evn_http --port {port} --loops 1"
}
if want http; then
    mapfile -t extra < <(http_peers)
    mapfile -t ur < <(http_uring)
    measure http-keepalive http "HTTP keep-alive, GET /" \
        -n floor -s "$floor --mode http --host :: --port {port}" \
        -n evn -s "$evn_http --port {port} --loops 1" \
        "${ur[@]}" \
        "${extra[@]}" \
        -l "$here/load.sh wrk -t1 -c50 -d${S}s http://127.0.0.1:{port}/"
fi

if want http-close; then
    mapfile -t extra < <(http_peers)
    mapfile -t ur < <(http_uring)
    measure http-close http "HTTP, a new connection per request (Connection: close), GET /" \
        -n floor -s "$floor --mode http --host :: --port {port}" \
        -n evn -s "$evn_http --port {port} --loops 1" \
        -n evn-deferaccept -s "$evn_http --port {port} --loops 1 --tcp-options deferaccept=1" \
        "${ur[@]}" \
        "${extra[@]}" \
        -l "$here/load.sh wrk -t1 -c50 -d${S}s -H 'Connection: close' http://127.0.0.1:{port}/"
fi

if want http-16k; then
    mapfile -t ur < <(http_uring)
    measure http-post16k http "HTTP keep-alive, POST /echo with a 16 KiB body (echoed back)" \
        -n floor -s "$floor --mode http --host :: --port {port}" \
        -n evn -s "$evn_http --port {port} --loops 1" \
        "${ur[@]}" \
        -l "$here/load.sh wrk -t1 -c50 -d${S}s -s $here/post-16k.lua http://127.0.0.1:{port}/echo"
    mapfile -t extra < <(http_peers --big)
    measure http-get16k http "HTTP keep-alive, GET /16k (a 16 KiB body; evn's example has no such route)" \
        -n floor -s "$floor --mode http --host :: --port {port} --body 16384" \
        "${extra[@]}" \
        -l "$here/load.sh wrk -t1 -c50 -d${S}s http://127.0.0.1:{port}/16k"
fi

if want memory; then
    printf '== idle memory, %d connections\n' "$MEM_CONNS" >&2
    t0=$SECONDS
    mem=(-n evn-http -p http -s "$evn_http --port {port} --loops 1"
        -n evn-echo -p echo -s "$evn_echo --port {port} --loops 1"
        -n evn-redis -p redis -s "$evn_redis --port {port} --loops 1"
        -n floor -p http -s "$floor --mode http --host :: --port {port}")
    if ((uring)); then
        mem+=(-n evn-http-uring -p http -s "$evn_http --port {port} --loops 1 --backend io_uring")
        ((quick)) || mem+=(-n evn-echo-uring -p echo -s "$evn_echo --port {port} --loops 1 --backend io_uring"
            -n evn-redis-uring -p redis -s "$evn_redis --port {port} --loops 1 --backend io_uring")
        [[ ! -x $floor_uring ]] || mem+=(-n floor-uring -p http -s "$floor_uring --mode http --host :: --port {port}")
    else
        echo "missing evn-http-uring" >>"$raw"
    fi
    have nginx && mem+=(-n nginx -p http -s "$here/peer.sh nginx {port}")
    have redis-server && mem+=(-n redis -p redis -s "$here/peer.sh redis {port}")
    # Quick mode leaves out the servers no target is about.
    if ((!quick)); then
        have h2o && mem+=(-n h2o -p http -s "$here/peer.sh h2o {port}")
        # haproxy takes 9990 connections at most within the fd limit of 20000.
        have haproxy && mem+=(-n haproxy -p http -c $((MEM_CONNS < 9900 ? MEM_CONNS : 9900)) -s "$here/peer.sh haproxy {port}")
        [[ ! -x $libuv ]] || mem+=(-n libuv -p echo -s "$libuv --port {port}")
        [[ ! -x $libevent ]] || mem+=(-n libevent -p echo -s "$libevent --port {port}")
    fi
    echo "case memory memory idle connections, RSS growth per connection" >>"$raw"
    for ((i = 0; i < ${#mem[@]}; i++)); do
        case ${mem[$i]} in
        -n) name=${mem[$((i + 1))]} ;;
        -s) echo "server memory $name $(rel "${mem[$((i + 1))]}")" >>"$raw" ;;
        esac
    done
    echo "load memory $(rel "$build/bench/idle-conns") --port {port} --proto http|echo|redis --conns $MEM_CONNS (after a warm-up of $MEM_WARMUP_CONNS that close)" >>"$raw"
    rc=0
    run_child env ROUNDS="$MEM_ROUNDS" CONNS="$MEM_CONNS" SETTLE="$MEM_SETTLE" WARMUP_CONNS="$MEM_WARMUP_CONNS" \
        "$here/idle-memory.sh" "${mem[@]}" || rc=$?
    grep -E '^mem(result)? ' "$BENCH_TMP/out" >>"$raw" || true
    cat "$BENCH_TMP/err" >&2
    if ((rc)); then
        echo "failed memory exit $rc" >>"$raw"
        echo "   FAILED (exit $rc)" >&2
        failures=$((failures + 1))
    fi
    awk '$1 == "memresult" { printf "   %-12s %8.1f bytes/conn (%.1f-%.1f)\n", $2, $4, $5, $6 }' "$BENCH_TMP/out" >&2
    printf '   %ds\n' $((SECONDS - t0)) >&2
fi

if want loops; then
    # The 2-loop server runs on both CPUs, so "other work" is counted over
    # both (NOISE=total): busy time that is neither the server's nor the load's.
    NOISE=total measure loops-echo loops "echo, depth 8: evn with 1 and 2 loops" \
        -n evn-1loop -s "$evn_echo --port {port} --loops 1" \
        -n evn-2loops -s "taskset -c 0,1 $evn_echo --port {port} --loops 2" \
        -l "$echo_load --host 127.0.0.1 --port {port} --conns 50 --depth 8 --size 16 --seconds $S"
    NOISE=total measure loops-http loops "HTTP keep-alive: evn with 1 and 2 loops" \
        -n evn-1loop -s "$evn_http --port {port} --loops 1" \
        -n evn-2loops -s "taskset -c 0,1 $evn_http --port {port} --loops 2" \
        -l "$here/load.sh wrk -t1 -c50 -d${S}s http://127.0.0.1:{port}/"
fi

# A free TCP port (the kernel's choice, released at once).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# start_backend CMD...: start a backend pinned to the load's CPU on the port
# in $bport (its command says where), wait until it accepts connections.
start_backend() {
    taskset -c 1 "$@" >"$BENCH_TMP/backend.out" 2>"$BENCH_TMP/backend.err" &
    backend_pids+=($!)
    local deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$bport") 2>/dev/null; do
        if ! kill -0 "${backend_pids[-1]}" 2>/dev/null || ((SECONDS >= deadline)); then
            echo "run.sh: backend did not start: $*" >&2
            cat "$BENCH_TMP/backend.err" >&2
            return 1
        fi
        sleep 0.05
    done
}

if want https; then
    if have openssl && "$evn_http" --help 2>&1 | grep -q -- --tls-cert; then
        # One certificate for both servers: ECDSA P-256, as a site would use.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
            -keyout "$BENCH_TMP/key.pem" -out "$BENCH_TMP/cert.pem" 2>/dev/null
        tls=(--tls-cert "$BENCH_TMP/cert.pem" --tls-key "$BENCH_TMP/key.pem")
        mapfile -t extra < <(peer nginx nginx nginx {port} --tls "$BENCH_TMP/cert.pem" "$BENCH_TMP/key.pem")
        measure https-keepalive https "HTTPS keep-alive, GET /" \
            -n evn -s "$evn_http --port 0 --tls-port {port} ${tls[*]} --loops 1" \
            "${extra[@]}" \
            -l "$here/load.sh wrk -t1 -c50 -d${S}s https://127.0.0.1:{port}/"
        measure https-close https "HTTPS, a new connection per request (Connection: close), GET /" \
            -n evn -s "$evn_http --port 0 --tls-port {port} ${tls[*]} --loops 1" \
            "${extra[@]}" \
            -l "$here/load.sh wrk -t1 -c50 -d${S}s -H 'Connection: close' https://127.0.0.1:{port}/"
    else
        echo "run.sh: openssl or http-server --tls-cert missing, https left out" >&2
        echo "missing https" >>"$raw"
    fi
fi

if want static; then
    if "$evn_http" --help 2>&1 | grep -q -- --root; then
        mkdir -p "$BENCH_TMP/www"
        head -c 1048576 /dev/urandom >"$BENCH_TMP/www/1m"
        mapfile -t extra < <(peer nginx nginx nginx {port})
        measure static-1m static "HTTP keep-alive, GET of a 1 MiB static file" \
            -n evn -s "$evn_http --port {port} --root $BENCH_TMP/www --loops 1" \
            "${extra[@]}" \
            -l "$here/load.sh wrk -t1 -c50 -d${S}s http://127.0.0.1:{port}/1m"
    else
        echo "run.sh: http-server has no --root, static left out" >&2
        echo "missing static" >>"$raw"
    fi
fi

if want proxy; then
    proxy=$build/examples/tcp-proxy
    if [[ -x $proxy ]] && have haproxy; then
        # echo: the floor's echo mode behind both proxies.
        bport=$(free_port)
        mapfile -t ur < <(uring_evn evn-proxy-uring "$proxy --port {port} --loops 1 --backend tcp://127.0.0.1:$bport")
        if start_backend "$floor" --mode echo --host 127.0.0.1 --port "$bport"; then
            LOAD_PIDS="${backend_pids[*]}" measure proxy-echo-d1 proxy "echo depth 1 through a proxy" \
                -n evn-proxy -s "$proxy --port {port} --loops 1 --backend tcp://127.0.0.1:$bport" \
                -n evn-proxy-splice -s "$proxy --port {port} --loops 1 --splice on --backend tcp://127.0.0.1:$bport" \
                "${ur[@]}" \
                -n haproxy -s "$here/peer.sh haproxy-tcp {port} --to $bport" \
                -l "$echo_load --host 127.0.0.1 --port {port} --conns 50 --depth 1 --size 16 --seconds $S"
        fi
        stop_backends
        # Redis traffic: Debian's redis-server behind both.
        if have redis-server; then
            bport=$(free_port)
            mapfile -t ur < <(uring_evn evn-proxy-uring "$proxy --port {port} --loops 1 --backend tcp://127.0.0.1:$bport")
            if start_backend redis-server --port "$bport" --save '' --appendonly no --dir "$BENCH_TMP"; then
                for p in 1 16; do
                    LOAD_PIDS="${backend_pids[*]}" measure "proxy-redis-get-P$p" proxy "redis get -P $p through a proxy" \
                        -n evn-proxy -s "$proxy --port {port} --loops 1 --backend tcp://127.0.0.1:$bport" \
                        -n evn-proxy-splice -s "$proxy --port {port} --loops 1 --splice on --backend tcp://127.0.0.1:$bport" \
                        "${ur[@]}" \
                        -n haproxy -s "$here/peer.sh haproxy-tcp {port} --to $bport" \
                        -l "$here/load.sh redis-benchmark -h 127.0.0.1 -p {port} -c 50 -P $p -n $(redis_n $p) -t get"
                done
            fi
            stop_backends
        fi
    else
        echo "run.sh: tcp-proxy or haproxy missing, proxy left out" >&2
        echo "missing proxy" >>"$raw"
    fi
fi

if want workers; then
    workers=$build/examples/http-workers
    if [[ -x $workers ]]; then
        measure workers-sleep workers "HTTP keep-alive, GET /sleep?ms=1 (1 ms on a worker thread)" \
            -n evn-workers -s "$workers --port {port} --loops 1 --workers 64" \
            -l "$here/load.sh wrk -t1 -c50 -d${S}s http://127.0.0.1:{port}/sleep?ms=1"
    else
        echo "missing workers" >>"$raw"
    fi
fi

echo "machine finished $(date -u +%Y-%m-%dT%H:%MZ) seconds $((SECONDS - t_start))" >>"$raw"
python3 "$here/report.py" "$raw" "$out_dir" "$date"
echo >&2
echo "run.sh: $((SECONDS - t_start))s; results in $(rel "$out_dir")/$date.md" >&2
((failures == 0)) || { echo "run.sh: $failures case(s) failed" >&2; exit 1; }
