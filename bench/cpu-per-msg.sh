#!/usr/bin/env bash
# Server CPU time per message, measured the way BENCHMARKING.md describes.
#
#   bench/cpu-per-msg.sh 'SERVER COMMAND' 'LOAD COMMAND'
#   bench/cpu-per-msg.sh [-n NAME] -s 'SERVER' [-n NAME -s 'SERVER' ...] -l 'LOAD'
#
# Every server is started pinned to CPU 0 (SERVER_CPU) on a free port of its
# own; "{port}" in its command and in the load command is replaced by that
# port. The script waits (bounded) until the port accepts connections, then,
# for each of WARMUP warm-up rounds and ROUNDS measured rounds, runs the load
# pinned to CPU 1 (LOAD_CPU) once against each server in turn, so that drift
# of the machine affects all of them alike. The load must print
# "messages N" and "msgs_per_sec X" lines (bench/echo-load does).
#
# Around each round it reads the server's utime+stime (fields 14 and 15 of
# /proc/PID/stat, in clock ticks) and prints, one line per round and server:
#   round R NAME msgs_per_sec X cpu_us_per_msg Y messages N cpu_ticks T
#         sched_us_per_msg Z user_us_per_msg U reads_per_msg R other_pct O
# (all on one line; Z cross-checks Y at nanosecond resolution: the run time
# of the server's threads from /proc/PID/task/*/schedstat, field 1; U is the
# utime part of Y, the time spent outside the kernel; R counts the server's
# read-type system calls (syscr in /proc/PID/io: read, readv, not recv),
# which shows how many messages each wake-up found; O is how busy the
# server's CPU was with processes other than the server (their user and
# system time, from /proc/stat), in percent,
# or the same for the load's CPU if higher and the load prints its own
# "cpu_seconds C"; with NOISE=total, for a server that runs on both CPUs,
# the busy time of both CPUs less the server's and the load's, over one
# CPU's time.) When the load prints "latency_p50_us" and "latency_p99_us"
# (bench/echo-load does), the round line also has, before other_pct,
#   lat_p50_us L50 lat_p99_us L99
# then one line per server with median, min and max of each figure:
#   result NAME msgs_per_sec MEDIAN MIN MAX cpu_us_per_msg MEDIAN MIN MAX
#          user_us_per_msg MEDIAN MIN MAX sched_us_per_msg MEDIAN MIN MAX
#          [lat_p50_us MEDIAN MIN MAX lat_p99_us MEDIAN MIN MAX]
#
# On a shared machine other work disturbs both figures. Before each round
# the script waits, QUIET_WAIT (10) seconds at most, until other processes
# take no more than MAX_OTHER_PCT (10) percent of either CPU. A round in
# which O still exceeds MAX_OTHER_PCT for any server is reported on stderr
# as "noisy ..." and run again, all servers, up to RETRIES (5) times, and
# up to RERUNS times in all the rounds together (no limit unless set);
# after that it is kept as it is.
#
# Environment: ROUNDS (3), WARMUP (1), MAX_OTHER_PCT (10), RETRIES (5),
# SERVER_CPU (0), LOAD_CPU (1), HOST (127.0.0.1, where the port is probed),
# START_TIMEOUT (10 seconds), NOISE (per-cpu or total), QUIET_WAIT (10
# seconds; 0: do not wait), RERUNS, LOAD_PIDS (processes that run on the
# load's CPU as part of the workload, such as a proxied backend: their CPU
# time is counted as the load's, not as other work). Servers and load are always killed on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
HOST=${HOST:-127.0.0.1}
START_TIMEOUT=${START_TIMEOUT:-10}
MAX_OTHER_PCT=${MAX_OTHER_PCT:-10}
RETRIES=${RETRIES:-5}
NOISE=${NOISE:-per-cpu}
QUIET_WAIT=${QUIET_WAIT:-10}
RERUNS=${RERUNS:-}
CLK_TCK=$(getconf CLK_TCK)

names=()
servers=()
pids=()
ports=()
load=""
next_name=""

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
    exit 2
}

while (($#)); do
    case $1 in
    -n) next_name=$2; shift 2 ;;
    -s) names+=("${next_name:-server${#servers[@]}}"); servers+=("$2"); next_name=""; shift 2 ;;
    -l) load=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) usage ;;
    *)
        if ((${#servers[@]} == 0)); then
            names+=(server); servers+=("$1")
        elif [[ -z $load ]]; then
            load=$1
        else
            usage
        fi
        shift ;;
    esac
done
if ((${#servers[@]} == 0)) || [[ -z $load ]]; then
    usage
fi
[[ $load == *"{port}"* ]] || { echo "cpu-per-msg: the load command needs {port}" >&2; exit 2; }

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
        # A server that ignores SIGTERM gets SIGKILL after about 5 seconds.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Succeeds once something accepts a TCP connection on HOST:$1.
port_open() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Prints "BUSY TOTAL" clock ticks of CPU $1 from /proc/stat. BUSY is the
# time spent in processes (user, nice, system): the kernel's interrupt and
# softirq time (on loopback, much of the network stack's work, for whichever
# process sent the packet) is charged to no process, so it is left out, and
# so is the time the hypervisor stole.
cpu_busy() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print $2 + $3 + $4, t }' /proc/stat
}

# Prints the read-type system calls process $1 has made.
read_calls() {
    awk '$1 == "syscr:" { print $2 }' "/proc/$1/io"
}

# Prints "UTIME STIME" of process $1, in clock ticks.
cpu_ticks() {
    local stat rest
    stat=$(<"/proc/$1/stat")
    # The command name (field 2) may hold spaces; fields 3.. follow the last ')'.
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    echo "${f[11]} ${f[12]}"
}

sched_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

start_server() {
    local i=$1 port cmd
    port=$(free_port)
    cmd=${servers[$i]//\{port\}/$port}
    # exec keeps the PID: taskset execs bash, which execs the server.
    taskset -c "$SERVER_CPU" bash -c "exec $cmd" >"$tmp/server$i.out" 2>"$tmp/server$i.err" &
    pids+=($!)
    ports+=("$port")
    local deadline=$((SECONDS + START_TIMEOUT))
    until port_open "$port"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "cpu-per-msg: ${names[$i]} exited before accepting connections: $cmd" >&2
            cat "$tmp/server$i.err" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "cpu-per-msg: ${names[$i]} not accepting on port $port after ${START_TIMEOUT}s" >&2
            exit 1
        fi
        sleep 0.05
    done
}

# CPU ticks (utime + stime) of the LOAD_PIDS processes together.
extra_ticks() {
    local p u s sum=0
    for p in ${LOAD_PIDS:-}; do
        read -r u s < <(cpu_ticks "$p") || continue
        sum=$((sum + u + s))
    done
    echo "$sum"
}

# Runs one round of load against server $1 and prints its figures.
run_round() {
    local i=$1 label=$2 cmd out messages rate ticks uticks ns0 ns1 u0 s0 u1 s1 b0 t0 b1 t1
    local lb0 lt0 lb1 lt1 load_cpu r0 r1 x0 x1 lat50 lat99
    cmd=${load//\{port\}/${ports[$i]}}
    read -r b0 t0 < <(cpu_busy "$SERVER_CPU")
    read -r lb0 lt0 < <(cpu_busy "$LOAD_CPU")
    read -r u0 s0 < <(cpu_ticks "${pids[$i]}")
    ns0=$(sched_ns "${pids[$i]}")
    r0=$(read_calls "${pids[$i]}")
    x0=$(extra_ticks)
    # In the background so that a signal to this script is acted on at once
    # (bash runs traps only between foreground commands) and the load is
    # killed along with the servers.
    taskset -c "$LOAD_CPU" bash -c "exec $cmd" >"$tmp/load.out" &
    load_pid=$!
    if ! wait "$load_pid"; then
        load_pid=""
        echo "cpu-per-msg: load failed against ${names[$i]}: $cmd" >&2
        exit 1
    fi
    load_pid=""
    out=$(<"$tmp/load.out")
    read -r u1 s1 < <(cpu_ticks "${pids[$i]}")
    ns1=$(sched_ns "${pids[$i]}")
    r1=$(read_calls "${pids[$i]}")
    x1=$(extra_ticks)
    read -r b1 t1 < <(cpu_busy "$SERVER_CPU")
    read -r lb1 lt1 < <(cpu_busy "$LOAD_CPU")
    messages=$(awk '$1 == "messages" { print $2 }' <<<"$out")
    rate=$(awk '$1 == "msgs_per_sec" { print $2 }' <<<"$out")
    load_cpu=$(awk '$1 == "cpu_seconds" { print $2 }' <<<"$out")
    lat50=$(awk '$1 == "latency_p50_us" { print $2 }' <<<"$out")
    lat99=$(awk '$1 == "latency_p99_us" { print $2 }' <<<"$out")
    ticks=$((u1 + s1 - u0 - s0))
    uticks=$((u1 - u0))
    if [[ -z $messages || $messages == 0 ]]; then
        echo "cpu-per-msg: no messages from load against ${names[$i]}: $out" >&2
        exit 1
    fi
    awk -v r="$label" -v n="${names[$i]}" -v m="$messages" -v x="$rate" -v t="$ticks" -v hz="$CLK_TCK" \
        -v ns=$((ns1 - ns0)) -v u="$uticks" -v other=$((b1 - b0 - ticks)) -v all=$((t1 - t0)) \
        -v lbusy=$((lb1 - lb0 - (x1 - x0))) -v lall=$((lt1 - lt0)) -v lcpu="$load_cpu" -v reads=$((r1 - r0)) \
        -v mode="$NOISE" -v lat50="$lat50" -v lat99="$lat99" \
        'BEGIN { o = all > 0 ? 100 * other / all : 0
                 if (mode == "total" && all > 0)
                     o = 100 * (other + lbusy - (lcpu == "" ? 0 : lcpu * hz)) / all
                 else if (lcpu != "" && lall > 0) {
                     lo = 100 * (lbusy - lcpu * hz) / lall
                     if (lo > o) o = lo
                 }
                 if (o < 0) o = 0
                 lat = lat50 != "" && lat99 != "" ? sprintf(" lat_p50_us %.3f lat_p99_us %.3f", lat50, lat99) : ""
                 printf "round %s %s msgs_per_sec %.0f cpu_us_per_msg %.4f messages %d cpu_ticks %d sched_us_per_msg %.4f user_us_per_msg %.4f reads_per_msg %.4f%s other_pct %.1f\n",
                 r, n, x, t * 1e6 / hz / m, m, t, ns / 1e3 / m, u * 1e6 / hz / m, reads / m, lat, o }'
}

tmp=$(mktemp -d)
trap 'cleanup; rm -rf "$tmp"' EXIT

for i in "${!servers[@]}"; do
    start_server "$i"
done

for ((w = 1; w <= WARMUP; w++)); do
    for i in "${!servers[@]}"; do
        run_round "$i" "warmup$w" >/dev/null
    done
done
: >"$tmp/rounds"
# Waits (QUIET_WAIT seconds at most) until processes other than the
# servers, which are idle now, take at most MAX_OTHER_PCT of the CPUs
# (the larger of the two CPUs' shares, over a quarter second).
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) a0 t0 c0 a1 t1 c1 busy
    while ((SECONDS < deadline)); do
        read -r a0 t0 < <(cpu_busy "$SERVER_CPU")
        read -r c0 _ < <(cpu_busy "$LOAD_CPU")
        sleep 0.25
        read -r a1 t1 < <(cpu_busy "$SERVER_CPU")
        read -r c1 _ < <(cpu_busy "$LOAD_CPU")
        busy=$(((a1 - a0) > (c1 - c0) ? (a1 - a0) : (c1 - c0)))
        if ((t1 == t0 || 100 * busy <= MAX_OTHER_PCT * (t1 - t0))); then
            return 0
        fi
        waited_quiet=1
    done
    return 0
}

reruns=0
for ((r = 1; r <= ROUNDS; r++)); do
    for ((try = 0; ; try++)); do
        waited_quiet=0
        ((QUIET_WAIT <= 0)) || wait_quiet
        ((!waited_quiet)) || echo "waited for other work to stop before round $r" >&2
        : >"$tmp/round"
        for i in "${!servers[@]}"; do
            run_round "$i" "$r" >>"$tmp/round"
        done
        noisy=$(awk -v max="$MAX_OTHER_PCT" '$NF > max' "$tmp/round")
        if [[ -z $noisy ]] || ((try >= RETRIES)) || { [[ -n $RERUNS ]] && ((reruns >= RERUNS)); }; then
            break
        fi
        reruns=$((reruns + 1))
        sed 's/^round/noisy/' "$tmp/round" >&2
    done
    tee -a "$tmp/rounds" <"$tmp/round"
done

for i in "${!servers[@]}"; do
    awk -v n="${names[$i]}" '
        function stats(a, k,   t, i, j, x) {
            for (i = 1; i <= k; i++) t[i] = a[i]
            for (i = 2; i <= k; i++)
                for (j = i; j > 1 && t[j - 1] > t[j]; j--) { x = t[j]; t[j] = t[j - 1]; t[j - 1] = x }
            med = k % 2 ? t[(k + 1) / 2] : (t[k / 2] + t[k / 2 + 1]) / 2
            return sprintf("%.4f %.4f %.4f", med, t[1], t[k])
        }
        $3 == n {
            k++; rate[k] = $5; cpu[k] = $7; sched[k] = $13; user[k] = $15
            for (i = 18; i < NF; i += 2) {
                if ($i == "lat_p50_us") { l50[++nl] = $(i + 1) }
                if ($i == "lat_p99_us") { l99[nl] = $(i + 1) }
            }
        }
        END {
            split(stats(rate, k), r, " ")
            lat = nl == k && k ? sprintf(" lat_p50_us %s lat_p99_us %s", stats(l50, k), stats(l99, k)) : ""
            printf "result %s msgs_per_sec %.0f %.0f %.0f cpu_us_per_msg %s user_us_per_msg %s sched_us_per_msg %s%s\n",
                n, r[1], r[2], r[3], stats(cpu, k), stats(user, k), stats(sched, k), lat
        }' "$tmp/rounds"
done
