#!/usr/bin/env bash
# Start the example servers that were built, print how to try each, and stop
# them all on Ctrl-C (or SIGTERM).
#
#   scripts/run-examples.sh [EXAMPLES_DIR]      default: build/examples
#   scripts/run-examples.sh --check [DIR]       start them on free ports, check
#                                               that each answers a request as
#                                               the table says, stop them
#
# The table below says what to start: a binary that is not there (in DIR or a
# folder of DIR) is skipped.
set -uo pipefail

# name        | arguments   | port | how to try it        | --check sends (printf) | and expects the reply to start with
EXAMPLES='
echo-server   | --port 5000 | 5000 | nc localhost 5000    | hello evn\n            | hello evn
http-server   | --port 8080 | 8080 | curl localhost:8080/ | GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n | HTTP/1.
redis-server  | --port 6380 | 6380 | redis-cli -p 6380    | PING\r\n               | +PONG
'

check=0
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
dir=${1:-build/examples}

if [ ! -d "$dir" ]; then
    echo "run-examples: no $dir; build first (make build)" >&2
    exit 1
fi

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; echo "${s%"${s##*[![:space:]]}"}"; }

names=() pids=() ports=() hints=() sends=() expects=()
logdir=$(mktemp -d "${TMPDIR:-/tmp}/evn-examples.XXXXXX")

stop_all() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null
    done
    rm -rf "$logdir"
}

on_signal() {
    trap - INT TERM
    echo
    echo "run-examples: stopping ${names[*]}"
    stop_all
    exit 0
}
trap on_signal INT TERM

# Can we connect to 127.0.0.1:PORT?
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Line-buffer the servers' stdout when it is not a terminal, if we can.
linebuf=()
command -v stdbuf >/dev/null 2>&1 && linebuf=(stdbuf -oL -eL)

while IFS='|' read -r name args port hint send expect; do
    name=$(trim "$name")
    [ -n "$name" ] || continue
    # In DIR itself or in a folder of its own (build/examples/http/http-server).
    bin=
    for b in "$dir/$name" "$dir"/*/"$name"; do
        if [ -f "$b" ] && [ -x "$b" ]; then
            bin=$b
            break
        fi
    done
    [ -n "$bin" ] || continue
    args=$(trim "$args")
    port=$(trim "$port")
    if [ "$check" = 1 ]; then
        # A free port of the kernel's choosing, read back from what it prints,
        # so that a busy port cannot make a check pass or fail.
        args=${args/--port $port/--port 0}
        port=
    elif port_open "$port"; then
        echo "run-examples: port $port is already in use; is another $name running?" >&2
        stop_all
        exit 1
    fi
    # Each server's output goes to our stdout, its lines tagged with its name
    # (and, for --check, to a log to read the port from).
    # shellcheck disable=SC2086 # the arguments are words
    "${linebuf[@]}" "$bin" $args > >(tee "$logdir/$name.log" | sed -u "s/^/[$name] /") 2>&1 &
    names+=("$name")
    pids+=("$!")
    ports+=("$port")
    hints+=("$(trim "$hint")")
    sends+=("$(trim "$send")")
    expects+=("$(trim "$expect")")
done <<<"$EXAMPLES"

if [ ${#pids[@]} -eq 0 ]; then
    echo "run-examples: no example server in $dir" >&2
    rm -rf "$logdir"
    exit 1
fi

# The port in the first "listening on tcp://HOST:PORT" line of a log.
printed_port() {
    sed -n 's|.*listening on tcp://.*:\([0-9][0-9]*\).*|\1|p' "$1" 2>/dev/null | sed -n 1p
}

# Wait up to 5 s for each to listen; report those that died or never did.
failed=0
for i in "${!pids[@]}"; do
    for _ in $(seq 50); do
        [ -n "${ports[$i]}" ] || ports[i]=$(printed_port "$logdir/${names[$i]}.log")
        [ -n "${ports[$i]}" ] && port_open "${ports[$i]}" && break
        kill -0 "${pids[$i]}" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "${ports[$i]}" ] || ! port_open "${ports[$i]}"; then
        echo "run-examples: ${names[$i]} is not listening${ports[$i]:+ on port ${ports[$i]}}" >&2
        failed=1
    fi
done

if [ "$check" = 1 ]; then
    for i in "${!names[@]}"; do
        [ -n "${sends[$i]}" ] || continue
        # shellcheck disable=SC2059 # the table's strings are printf formats
        reply=$(
            exec 3<>"/dev/tcp/127.0.0.1/${ports[$i]}" || exit 1
            printf "${sends[$i]}" >&3
            IFS= read -r -t 5 line <&3
            printf '%s' "${line%$'\r'}"
        )
        if [[ "$reply" == "${expects[$i]}"* ]]; then
            echo "run-examples: ${names[$i]} answered '$reply'"
        else
            echo "run-examples: ${names[$i]} answered '$reply', expected '${expects[$i]}...'" >&2
            failed=1
        fi
    done
    stop_all
    [ "$failed" = 0 ] && echo "run-examples: ${names[*]}: OK"
    exit "$failed"
fi

if [ "$failed" = 1 ]; then
    stop_all
    exit 1
fi

echo
echo "Running: ${names[*]}. Try them from another terminal:"
for i in "${!names[@]}"; do
    printf '  %-14s %s\n' "${names[$i]}" "${hints[$i]}"
done
echo "Ctrl-C stops them all."
echo

# Wait for Ctrl-C. If a server exits by itself, say so and stop the others.
while :; do
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            wait "${pids[$i]}"
            rc=$?
            echo "run-examples: ${names[$i]} exited ($rc); stopping the others" >&2
            stop_all
            exit 1
        fi
    done
    sleep 0.5 &
    wait $! 2>/dev/null
done
