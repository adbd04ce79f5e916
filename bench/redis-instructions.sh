#!/usr/bin/env bash
# User-space instructions per request for each test of redis-benchmark's
# default list, evn's Redis example beside redis-server, counted by
# valgrind's callgrind (bench/profile-per-msg.sh callgrind). Instruction
# counts do not depend on the machine's load, so this can run on a busy
# machine where CPU-time figures cannot; they leave out the kernel's work
# (the system calls, the same for both servers: one read and one write per
# pipeline), so they show the servers' own code only.
#
#   bench/redis-instructions.sh [BUILD_DIR]     default build-bench
#
# Environment: DEPTHS (default "16 1"), TESTS (default: the whole list),
# N (requests a run, default 20000; LRANGE tests a quarter of it). Prints a
# Markdown table: per test and depth, evn's and Redis's instructions per
# request and their ratio, and the geometric mean of the ratios per depth.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build-bench}
evn=$build/examples/redis-server
[[ -x $evn ]] || { echo "redis-instructions: $evn not built" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "redis-instructions: valgrind missing" >&2; exit 1; }
DEPTHS=${DEPTHS:-"16 1"}
TESTS=${TESTS:-"ping_inline ping_mbulk set get incr lpush rpush lpop rpop sadd hset spop zadd zpopmin lrange_100 lrange_300 lrange_500 lrange_600 mset"}
N=${N:-20000}

# Instructions per request of one server on one test.
count() {
    local server=$1 test=$2 depth=$3 n=$N
    [[ $test != lrange_* ]] || n=$((N / 4))
    "$here/profile-per-msg.sh" callgrind "$server" \
        "$here/redis-load.sh $test {port} $depth $n" |
        awk '$1 == "instructions_per_msg" { print $2 }'
}

echo "| test | depth | evn instructions/req | Redis instructions/req | evn ÷ Redis |"
echo "|---|---:|---:|---:|---:|"
for depth in $DEPTHS; do
    logsum=0 k=0
    for t in $TESTS; do
        e=$(count "$evn --port {port} --loops 1" "$t" "$depth")
        r=$(count "redis-server --port {port} --save '' --appendonly no" "$t" "$depth")
        ratio=$(awk -v e="$e" -v r="$r" 'BEGIN { printf "%.3f", e / r }')
        logsum=$(awk -v s="$logsum" -v x="$ratio" 'BEGIN { printf "%.6f", s + log(x) }')
        k=$((k + 1))
        printf '| %s | %s | %.0f | %.0f | %s |\n' "$t" "$depth" "$e" "$r" "$ratio"
    done
    awk -v s="$logsum" -v k="$k" -v d="$depth" 'BEGIN { printf "| geometric mean | %s | | | %.3f |\n", d, exp(s / k) }'
done
