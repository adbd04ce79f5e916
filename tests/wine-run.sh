#!/usr/bin/env bash
# How ctest runs a C test under Wine: wine-run.sh WINE PROGRAM [ARG...]
# (put before Wine in the test programs' CROSSCOMPILING_EMULATOR).
#
# A Wine process may end before the program's main() has run, and then its
# exit status is Wine's, which may even be 0. So the harness writes the
# status main() returns to the file EVN_TEST_END_FILE names (th_finish),
# and this script holds the exit status to it: a program that never reached
# its end cannot pass, and the log says what happened instead.
set -u
end=$(mktemp "${TMPDIR:-/tmp}/evn-test-end.XXXXXX") || exit 1
trap 'rm -f "$end"' EXIT
prog=${2##*/}
# Wine's drive Z: is the Unix root.
EVN_TEST_END_FILE="Z:${end//\//\\}" "$@"
rc=$?
said=$(tr -d "\r" <"$end")
if [ -z "$said" ]; then
    echo "wine-run: $prog ended with status $rc before its harness finished" >&2
    [ "$rc" = 0 ] || [ "$rc" = 77 ] && exit 1
    exit "$rc"
fi
if [ "$said" != "$rc" ]; then
    echo "wine-run: $prog's harness finished with status $said, but the process ended with status $rc" >&2
    exit 1
fi
exit "$rc"
