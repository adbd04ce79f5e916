#!/usr/bin/env bash
# How ctest runs a C test under Wine: wine-run.sh WINE PROGRAM [ARG...]
# (put before Wine in the test programs' CROSSCOMPILING_EMULATOR).
#
# A Wine process may end before the program's main() has run, and then its
# exit status is Wine's, which may even be 0. So the harness writes
# "started" to the file EVN_TEST_END_FILE names as main() begins (th_init)
# and the status main() returns at its end (th_finish), and this script
# holds the exit status to it: a program that never reached its end cannot
# pass, and the log says what happened instead.
#
# About one Wine process start in a thousand or more, with several starting
# and ending at once, fails that way before main() (Wine's own start-up;
# nothing of the program ran). A run that left the file empty is started
# again, up to 3 times in all; each retry is said on stderr and added to the
# file EVN_WINE_RETRY_LOG names, if set (make test-windows prints it after
# the run). A program that started is never run again.
set -u
end=$(mktemp "${TMPDIR:-/tmp}/evn-test-end.XXXXXX") || exit 1
trap 'rm -f "$end"' EXIT
prog=${2##*/}
tries=3
for ((try = 1; ; try++)); do
    : >"$end"
    # Wine's drive Z: is the Unix root.
    EVN_TEST_END_FILE="Z:${end//\//\\}" "$@"
    rc=$?
    said=$(tr -d "\r" <"$end")
    [ -z "$said" ] && [ "$try" -lt "$tries" ] || break
    note="wine: $prog ended with status $rc before its main() ran; trying again"
    echo "$note" >&2
    [ -z "${EVN_WINE_RETRY_LOG:-}" ] || echo "wine-run.sh: $note" >>"$EVN_WINE_RETRY_LOG"
done
case $said in
"$rc") exit "$rc" ;;
"") why="before its main() ran, $tries times" ;;
started) why="before its harness finished" ;;
*)
    echo "wine-run: $prog's harness finished with status $said, but the process ended with status $rc" >&2
    exit 1
    ;;
esac
echo "wine-run: $prog ended with status $rc $why" >&2
# Never a pass or a skip for a program that did not reach its end.
[ "$rc" = 0 ] || [ "$rc" = 77 ] && exit 1
exit "$rc"
