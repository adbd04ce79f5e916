#!/usr/bin/env bash
# tests/wine-run.sh against a stand-in for Wine: which runs it starts again
# (only those whose main() never ran), and which status it ends with.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evn-wine-run.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
# The stand-in runs "PROGRAM" as $MODE says, counting its starts in $tmp/runs:
#   status N: main() ran and returned N; started: main() ran, the process
#   ended with 0 before its end; never: no main(), status 0; once: no main()
#   the first time, then status 0; lie: main() returned 0, the process 3.
cat >"$tmp/fake-wine" <<'FAKE'
#!/usr/bin/env bash
f=${EVN_TEST_END_FILE#Z:}
f=${f//\\//}
n=$(($(cat "$TMP_DIR/runs" 2>/dev/null || echo 0) + 1))
echo "$n" >"$TMP_DIR/runs"
case $MODE in
status*) echo started >"$f"; echo "${MODE#status }" >"$f"; exit "${MODE#status }" ;;
started) echo started >"$f"; exit 0 ;;
never) exit 0 ;;
once) [ "$n" -gt 1 ] || exit 1; echo started >"$f"; echo 0 >"$f"; exit 0 ;;
lie) echo started >"$f"; echo 0 >"$f"; exit 3 ;;
esac
FAKE
chmod +x "$tmp/fake-wine"

failed=0
# expect MODE STATUS RUNS RETRIES_LOGGED DESCRIPTION
expect() {
    rm -f "$tmp/runs" "$tmp/retries"
    MODE=$1 TMP_DIR=$tmp EVN_WINE_RETRY_LOG=$tmp/retries \
        bash "$here/wine-run.sh" "$tmp/fake-wine" dir/test-x.exe 2>"$tmp/err"
    local rc=$? runs retries
    runs=$(cat "$tmp/runs")
    retries=0
    [ ! -e "$tmp/retries" ] || retries=$(wc -l <"$tmp/retries")
    if [ "$rc" = "$2" ] && [ "$runs" = "$3" ] && [ "$retries" = "$4" ]; then
        echo "ok: $5"
    else
        echo "FAIL: $5: status $rc (want $2), $runs runs (want $3), $retries retries logged (want $4)"
        sed 's/^/  stderr: /' "$tmp/err"
        failed=1
    fi
}
expect "status 0" 0 1 0 "a test that passes passes, run once"
expect "status 1" 1 1 0 "a test that fails fails with its status, run once"
expect "status 77" 77 1 0 "a skip stays a skip"
expect lie 1 1 0 "a process whose status is not its harness's fails"
expect started 1 1 0 "a test that started and did not finish fails, never run again"
expect never 1 3 2 "a run whose main() never ran is tried 3 times, then fails"
expect once 0 2 1 "a run whose main() did not run the first time passes the second"
exit $failed
