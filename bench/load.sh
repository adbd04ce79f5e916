#!/usr/bin/env bash
# Runs a stock load tool and prints its result the way bench/cpu-per-msg.sh
# reads it (the lines bench/echo-load prints):
#   messages N, seconds T, msgs_per_sec X, cpu_seconds C (the tool's own CPU)
#
#   bench/load.sh wrk [WRK ARGS...]               e.g. -t1 -c50 -d5s URL
#   bench/load.sh redis-benchmark [ARGS...]       one test: -t NAME, and -n N
#
# wrk: "N requests in Ts" and "Requests/sec"; a run with non-2xx/3xx answers
# fails, and so does one where socket errors (connect, read, write, timeout)
# exceed MAX_ERROR_PCT (0.1) percent of the requests; fewer are reported on
# stderr. redis-benchmark runs with --csv; messages is its -n.
set -euo pipefail
tool=${1:?usage: load.sh wrk|redis-benchmark ARGS...}
shift
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$out.times" "$err"' EXIT
child=""
trap '[[ -z $child ]] || kill "$child" 2>/dev/null; exit 143' TERM
trap '[[ -z $child ]] || kill "$child" 2>/dev/null; exit 130' INT

# CPU seconds (user + system) of the children this shell has waited for.
# `times` runs in this shell (a command substitution would be a subshell
# with no children of its own).
child_cpu() {
    times >"$out.times"
    awk 'NR == 2 {
        split($1, u, "m"); split($2, s, "m")
        sub(/s$/, "", u[2]); sub(/s$/, "", s[2])
        printf "%.3f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$out.times"
}

case $tool in
wrk)
    wrk "$@" >"$out" 2>"$err" &
    child=$!
    rc=0; wait "$child" || rc=$?
    child=""
    if ((rc)); then cat "$out" "$err" >&2; exit 1; fi
    child_cpu >"$err.cpu"; cpu=$(<"$err.cpu"); rm -f "$err.cpu"
    awk -v max="${MAX_ERROR_PCT:-0.1}" -v cpu="$cpu" '
        / requests in / { n = $1; t = $4; sub(/s,?$/, "", t) }
        /^Requests\/sec:/ { rate = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ { for (i = 3; i < NF; i += 2) errs += $(i + 1) }
        END {
            if (n == "" || rate == "") { print "load.sh: no result from wrk" > "/dev/stderr"; exit 1 }
            if (bad > 0) { printf "load.sh: %d non-2xx/3xx answers\n", bad > "/dev/stderr"; exit 1 }
            if (errs > 0) {
                printf "load.sh: %d socket errors in %d requests\n", errs, n > "/dev/stderr"
                if (100 * errs / n > max) exit 1
            }
            printf "messages %d\nseconds %s\nmsgs_per_sec %.0f\ncpu_seconds %s\nerrors %d\n", n, t, rate, cpu, errs
        }' "$out" || { cat "$out" >&2; exit 1; }
    ;;
redis-benchmark)
    n=""
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do
        [[ ${args[$i]} != -n ]] || n=${args[$((i + 1))]}
    done
    [[ -n $n ]] || { echo "load.sh: redis-benchmark needs -n N" >&2; exit 2; }
    # --csv first: after a command given to run, it would be one of its arguments.
    redis-benchmark --csv "$@" >"$out" 2>"$err" &
    child=$!
    rc=0; wait "$child" || rc=$?
    child=""
    if ((rc)); then cat "$out" "$err" >&2; exit 1; fi
    if grep -qi 'error' "$out" "$err"; then
        grep -i 'error' "$out" "$err" | head -5 >&2
    fi
    child_cpu >"$err.cpu"; cpu=$(<"$err.cpu"); rm -f "$err.cpu"
    awk -F, -v n="$n" -v cpu="$cpu" '
        NR > 1 && NF >= 2 { gsub(/"/, "", $2); rate = $2 + 0 }
        END {
            if (rate <= 0) { print "load.sh: no result from redis-benchmark" > "/dev/stderr"; exit 1 }
            printf "messages %d\nseconds %.3f\nmsgs_per_sec %.0f\ncpu_seconds %s\n", n, n / rate, rate, cpu
        }' "$out" || { cat "$out" "$err" >&2; exit 1; }
    ;;
*)
    echo "load.sh: unknown tool $tool" >&2
    exit 2
    ;;
esac
