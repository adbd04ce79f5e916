#!/usr/bin/env bash
# evn's echo example against the floor server, side by side in one run.
#
#   bench/echo-vs-floor.sh [BUILD_DIR]
#
# Builds the tree in Release mode (BUILD_DIR, default build-bench at the top
# of the repository), then for each pipeline depth runs bench/cpu-per-msg.sh
# with both servers up at once, pinned to CPU 0, and the load on CPU 1,
# alternating floor and evn round by round. Load: bench/echo-load with
# CONNS connections, SIZE-byte messages, SECONDS per round.
# Prints a Markdown table; the per-round lines go to stderr.
#
# Environment: DEPTHS ("1 8"), CONNS (50), SIZE (16), SECONDS_PER_ROUND (5),
# ROUNDS (3), WARMUP (1), EVN_ARGS ("--loops 1"), FLOOR_ARGS ("--host ::"),
# NO_BUILD (1: use BUILD_DIR as it is, no cmake), and whatever
# cpu-per-msg.sh reads (MAX_OTHER_PCT, RETRIES, ...).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-$root/build-bench}
DEPTHS=${DEPTHS:-"1 8"}
CONNS=${CONNS:-50}
SIZE=${SIZE:-16}
SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-5}
EVN_ARGS=${EVN_ARGS:-"--loops 1"}
# evn's example listens on tcp://:PORT, an IPv6 socket that also takes IPv4;
# the floor does the same so that both see the same kernel path.
FLOOR_ARGS=${FLOOR_ARGS:-"--host ::"}
export ROUNDS=${ROUNDS:-3}

if [[ ${NO_BUILD:-0} != 1 ]]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j2 >/dev/null
fi
floor=$build/bench/floor
load=$build/bench/echo-load
evn=$build/examples/echo-server
for f in "$floor" "$load" "$evn"; do
    [[ -x $f ]] || { echo "echo-vs-floor: $f was not built" >&2; exit 1; }
done

results=$(mktemp)
trap 'rm -f "$results"' EXIT

for d in $DEPTHS; do
    echo "depth $d:" >&2
    "$here/cpu-per-msg.sh" \
        -n floor -s "$floor --mode echo --port {port} $FLOOR_ARGS" \
        -n evn -s "$evn --port {port} $EVN_ARGS" \
        -l "$load --host 127.0.0.1 --port {port} --conns $CONNS --depth $d --size $SIZE --seconds $SECONDS_PER_ROUND" |
        while read -r line; do
            case $line in
            result*) echo "$d $line" >>"$results" ;;
            round*) echo "$d $line" >>"$results"; echo "  $line" >&2 ;;
            esac
        done
done

echo "echo, $CONNS connections, $SIZE-byte messages, $ROUNDS rounds of ${SECONDS_PER_ROUND}s," \
    "median (min-max); $(nproc) CPUs, $(uname -sr)," \
    "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(date -u +%Y-%m-%dT%H:%MZ)"
echo
# CPU is utime+stime from /proc/PID/stat; "user" is its utime part. The
# ratio is the median of the per-round ratios (each evn round over the floor
# round just before it, so both saw the same state of the machine), with
# their range; the schedstat ratio is the same from nanosecond run times.
awk -v max="${MAX_OTHER_PCT:-10}" '
    function median(a, k,   t, i, j, x) {
        for (i = 1; i <= k; i++) t[i] = a[i]
        for (i = 2; i <= k; i++)
            for (j = i; j > 1 && t[j - 1] > t[j]; j--) { x = t[j]; t[j] = t[j - 1]; t[j - 1] = x }
        lo = t[1]; hi = t[k]
        return k % 2 ? t[(k + 1) / 2] : (t[k / 2] + t[k / 2 + 1]) / 2
    }
    $2 == "round" { rc[$1, $4, $3] = $8; rs[$1, $4, $3] = $14; if ($NF > max) noisy++ }
    $2 == "result" {
        k = $1 SUBSEP $3
        depth[$1] = 1; rate[k] = sprintf("%s (%s-%s)", $5, $6, $7)
        cpu[k] = sprintf("%.3f (%.3f-%.3f)", $9, $10, $11); med[k] = $9
        user[k] = sprintf("%.3f", $13); sched[k] = $17
    }
    END {
        print "| server | depth | msgs/s | CPU us/msg | user us/msg | CPU ratio evn/floor | schedstat ratio |"
        print "|---|---:|---:|---:|---:|---:|---:|"
        for (d in depth) ds[++nd] = d + 0
        for (i = 2; i <= nd; i++)
            for (j = i; j > 1 && ds[j - 1] > ds[j]; j--) { t = ds[j]; ds[j] = ds[j - 1]; ds[j - 1] = t }
        for (i = 1; i <= nd; i++) {
            d = ds[i]
            printf "| floor | %s | %s | %s | %s | 1.00 | 1.00 |\n", d, rate[d, "floor"], cpu[d, "floor"], user[d, "floor"]
            delete xr; delete xs; k = 0
            for (r = 1; (d, "evn", r) in rc; r++) {
                k++
                xr[k] = rc[d, "evn", r] / rc[d, "floor", r]
                xs[k] = rs[d, "evn", r] / rs[d, "floor", r]
            }
            ms = median(xs, k)
            mr = median(xr, k)
            printf "| evn | %s | %s | %s | %s | %.3f (%.3f-%.3f) | %.3f |\n", d, rate[d, "evn"], cpu[d, "evn"],
                user[d, "evn"], mr, lo, hi, ms
        }
        if (noisy)
            printf "\n%d round(s) kept although the machine was busy with other work (over %s%% of a CPU).\n", noisy, max
    }' "$results"
