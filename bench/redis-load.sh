#!/usr/bin/env bash
# One test of redis-benchmark's default list, run on its own against a
# server that may not have the data the full list would have left for it,
# printing what bench/load.sh prints (messages, msgs_per_sec, ...):
#
#   bench/redis-load.sh TEST PORT DEPTH REQUESTS
#
# TEST is a -t name of redis-benchmark 7.0: ping_inline ping_mbulk set get
# incr lpush rpush lpop rpop sadd hset spop zadd zpopmin lrange_100
# lrange_300 lrange_500 lrange_600 mset. The run is redis-benchmark -h
# 127.0.0.1 -p PORT -c 50 -P DEPTH -n REQUESTS, with the same requests the
# full list sends for that test:
#   lpop, rpop   pop from "mylist", which the full list has filled with
#                LPUSH and RPUSH first. When it holds fewer than REQUESTS
#                elements it is filled first, with 20 x REQUESTS 3-byte
#                elements in RPUSH commands of 1000 (one round trip per
#                100 000), enough for the warm-up and every round after it;
#                so the filling falls in the warm-up round, not in the
#                measured ones (unless the list ran out).
#   lrange_N     "LRANGE mylist 0 N-1" given as the command to run: -t
#                lrange_N would first run the full list's LPUSH phase (as
#                many requests again) inside the measured run. mylist is
#                filled to 600 elements first when shorter.
#   spop, zpopmin  as in the full list after SADD and ZADD of the one
#                member "element:__rand_int__": the first pop takes it, the
#                rest find the set empty. Nothing is filled.
# Everything else is redis-benchmark -t TEST as it is.
set -euo pipefail
usage="usage: redis-load.sh TEST PORT DEPTH REQUESTS"
test=${1:?$usage} port=${2:?$usage} depth=${3:?$usage} n=${4:?$usage}
here=$(cd "$(dirname "$0")" && pwd)

# Fill mylist with RPUSH mylist xxx ... when it has fewer than $1 elements.
fill_list() {
    local want=$1 total=$2
    python3 - "$port" "$want" "$total" <<'PY'
import socket, sys
port, want, total = (int(x) for x in sys.argv[1:4])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def call(args):
    s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return f.readline()
have = int(call([b"LLEN", b"mylist"])[1:])
if have < want:
    cmd = [b"RPUSH", b"mylist"] + [b"xxx"] * 1000
    one = b"*%d\r\n" % len(cmd) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in cmd)
    left = total
    while left > 0:
        k = min(100, (left + 999) // 1000)
        s.sendall(one * k)
        for _ in range(k):
            if not f.readline().startswith(b":"):
                sys.exit("redis-load.sh: RPUSH failed")
        left -= 1000 * k
PY
}

common=(-h 127.0.0.1 -p "$port" -c 50 -P "$depth" -n "$n")
case $test in
lpop | rpop)
    fill_list "$n" $((20 * n))
    exec "$here/load.sh" redis-benchmark "${common[@]}" -t "$test"
    ;;
lrange_100 | lrange_300 | lrange_500 | lrange_600)
    fill_list 600 600
    exec "$here/load.sh" redis-benchmark "${common[@]}" LRANGE mylist 0 $((${test#lrange_} - 1))
    ;;
ping_inline | ping_mbulk | set | get | incr | lpush | rpush | sadd | hset | spop | zadd | zpopmin | mset)
    exec "$here/load.sh" redis-benchmark "${common[@]}" -t "$test"
    ;;
*)
    echo "redis-load.sh: unknown test '$test'" >&2
    exit 2
    ;;
esac
