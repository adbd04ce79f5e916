#!/usr/bin/env bash
# Run CI (bash .ci/run) on a clean Debian 12 machine: a chroot made once with
# debootstrap, copied afresh for every run, in which a fresh clone of one
# commit of this repository is built and tested as root.
#
#   scripts/chroot-check.sh [options] [REV]
#
#   REV               commit, branch or tag to test (default HEAD); it is
#                     cloned from the repository, so uncommitted changes are
#                     not part of the run
#   -d, --dir DIR     where the chroot is kept and the runs are made
#                     (default /work/chroot); must be outside the repository
#   -r, --repo PATH   the repository to clone from (default: the one this
#                     script is in)
#   -n, --runs N      run N times, one after another (default 1)
#   -k, --hogs K      keep K CPU hogs (busy shell loops) running during each
#                     run, to test under load (default 0)
#   --hogs-on WHERE   chroot (default) or host: where the hogs run
#   -c, --cmd CMD     what to run in the clone instead of `bash .ci/run`,
#                     e.g. 'make test' or 'make test && make test-sanitize'
#   -e VAR=VALUE      set VAR for the command (repeatable), e.g.
#                     -e FUZZ_SECONDS=10
#   --rebuild         make the pristine chroot again
#   --keep            keep each run's files afterwards, in DIR/runs/STAMP/run-N
#                     (with an overlay, its upper layer: what the run changed)
#   --mirror URL      Debian mirror (default http://deb.debian.org/debian)
#   -h, --help        this text
#
# Needs root, and debootstrap on the host (apt-get install debootstrap). The
# pristine chroot (DIR/pristine) is bookworm with only build-essential and
# git added, as on a fresh machine; DIR/pristine is made once and reused.
# Each run gets its own copy (an overlay on the pristine tree where the
# kernel allows, else cp -a), so what one run installs cannot hide a missing
# install step in the next. The run's /proc, /sys, /dev, /dev/pts and
# /dev/shm are mounted for it and unmounted afterwards, also on failure or
# Ctrl-C; processes left running inside the run's root are killed.
#
# Each run's whole output is kept in DIR/runs/STAMP/run-N.log. At the end a
# summary gives, for every run, pass or fail, its time, the CI step that
# failed and the ctest tests that failed or were skipped; it is also written
# to DIR/runs/STAMP/summary. The exit status is 0 if every run passed.
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

dir=/work/chroot
repo=$here
runs=1
hogs=0
hogs_on=chroot
cmd='bash .ci/run'
envs=()
rebuild=0
keep=0
mirror=http://deb.debian.org/debian
rev=HEAD
suite=bookworm

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
    echo "$prog: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    -d | --dir) dir=${2:?}; shift 2 ;;
    -r | --repo) repo=${2:?}; shift 2 ;;
    -n | --runs) runs=${2:?}; shift 2 ;;
    -k | --hogs) hogs=${2:?}; shift 2 ;;
    --hogs-on) hogs_on=${2:?}; shift 2 ;;
    -c | --cmd) cmd=${2:?}; shift 2 ;;
    -e) envs+=("${2:?}"); shift 2 ;;
    --rebuild) rebuild=1; shift ;;
    --keep) keep=1; shift ;;
    --mirror) mirror=${2:?}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option '$1' (--help lists them)" ;;
    *) rev=$1; shift ;;
    esac
done

[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number, not '$runs'"
[[ "$hogs" =~ ^[0-9]+$ ]] || die "--hogs wants a number, not '$hogs'"
case "$hogs_on" in chroot | host) ;; *) die "--hogs-on is chroot or host, not '$hogs_on'" ;; esac
for e in ${envs[@]+"${envs[@]}"}; do
    [[ "$e" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "-e wants VAR=VALUE, not '$e'"
done
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
command -v debootstrap >/dev/null || die "no debootstrap: apt-get install debootstrap"

sha=$(git -C "$repo" rev-parse --verify --quiet "$rev^{commit}") ||
    die "'$rev' is not a commit of $repo"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
repo_top=$(git -C "$repo" rev-parse --show-toplevel)
case "$dir/" in "$repo_top"/*) die "--dir must be outside the repository ($repo_top)" ;; esac

pristine=$dir/pristine

# ---- the pristine chroot, made once ----

make_pristine() {
    local tmp=$dir/pristine.tmp
    echo "== making the pristine $suite chroot in $pristine (once; a few minutes)"
    rm -rf "$tmp"
    if ! debootstrap --include=build-essential,git "$suite" "$tmp" "$mirror" \
        >"$dir/debootstrap.log" 2>&1; then
        tail -n 30 "$dir/debootstrap.log" >&2
        die "debootstrap failed; its log is $dir/debootstrap.log"
    fi
    # What a fresh Debian 12 machine has: the updates and security suites,
    # a name for localhost, and the host's resolver to reach the mirror.
    cat >"$tmp/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
    cat >"$tmp/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
EOF
    echo evn-chroot >"$tmp/etc/hostname"
    rm -rf "$tmp/var/cache/apt/archives/"*.deb
    touch "$tmp/.evn-pristine"
    rm -rf "$pristine"
    mv "$tmp" "$pristine"
}

exec 9>"$dir/.lock"
flock 9
if [ "$rebuild" = 1 ] || [ ! -f "$pristine/.evn-pristine" ]; then
    make_pristine
fi
flock -u 9

# ---- one run ----

mounted=()
hog_pids=()
cur_root=

# Every process whose root is the run's root: the hogs, and anything a test
# left behind.
kill_inside() {
    local root=$1 p pids=()
    while read -r p; do
        p=${p#/proc/}
        pids+=("${p%/root}")
    done < <(find /proc -mindepth 2 -maxdepth 2 -name root -lname "$root" 2>/dev/null)
    [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
}

stop_hogs() {
    local pid
    for pid in ${hog_pids[@]+"${hog_pids[@]}"}; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    hog_pids=()
}

cleanup_run() {
    stop_hogs
    [ -z "$cur_root" ] || kill_inside "$cur_root"
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null ||
            echo "$prog: could not unmount ${mounted[i]}" >&2
    done
    mounted=()
    if [ -n "$cur_root" ] && [ "$keep" = 0 ]; then
        # Only once nothing is mounted below it any more.
        if ! grep -q " ${cur_root%/root}/" /proc/mounts; then
            rm -rf "${cur_root%/root}"
        else
            echo "$prog: ${cur_root%/root} still has mounts; left in place" >&2
        fi
    fi
    cur_root=
}

on_exit() {
    local rc=$?
    cleanup_run
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

do_mount() {
    local target=$1
    shift
    mount "$@" "$target"
    mounted+=("$target")
}

# A fresh copy of the pristine tree at $1/root.
fresh_root() {
    local base=$1
    mkdir -p "$base/root" "$base/upper" "$base/work"
    if mount -t overlay overlay \
        -o "lowerdir=$pristine,upperdir=$base/upper,workdir=$base/work" "$base/root" 2>/dev/null; then
        mounted+=("$base/root")
    else
        rmdir "$base/upper" "$base/work"
        cp -a "$pristine/." "$base/root/"
    fi
    cur_root=$base/root
}

mount_system() {
    local root=$1
    do_mount "$root/proc" -t proc proc
    do_mount "$root/sys" -t sysfs sysfs
    # Slave mounts: what is mounted on them (pts, shm) must not propagate
    # back to the host's /dev where / is a shared mount.
    do_mount "$root/dev" --bind /dev
    mount --make-slave "$root/dev"
    mkdir -p "$root/dev/pts" "$root/dev/shm"
    do_mount "$root/dev/pts" --bind /dev/pts
    do_mount "$root/dev/shm" -t tmpfs shm -o mode=1777
    cp /etc/resolv.conf "$root/etc/resolv.conf"
}

start_hogs() {
    local root=$1 i
    for ((i = 0; i < hogs; i++)); do
        if [ "$hogs_on" = chroot ]; then
            chroot "$root" /bin/sh -c 'while :; do :; done' &
        else
            /bin/sh -c 'while :; do :; done' &
        fi
        hog_pids+=($!)
    done
}

# The CI step a log stopped in: .ci/run prints "== STEP" as one starts and
# "== STEP: N s" as it ends; the first step never ended is the one (lines
# such as make's "== configure build" come inside a step and never end).
failed_step() {
    awk '/^== .*: [0-9]+ s$/ { sub(/^== /, ""); sub(/: [0-9]+ s$/, ""); ended[$0] = 1; next }
         /^== / { sub(/^== /, ""); started[++n] = $0 }
         END { for (i = 1; i <= n; i++) if (!(started[i] in ended)) { print started[i]; exit } }' "$1"
}

# The tests ctest lists after "The following tests FAILED:" (FAILED) or
# "...did not run:" (SKIPPED), one a line ("<tab> 12 - name (Failed)"), each
# with the build directory of its ctest run (make echoes "cd DIR && ctest";
# a step whose make does not, such as make test-windows, names none).
ctest_list() {
    awk -v want="$2" '
        /^== / { d = "" }
        /^cd [^ ]+ && / { d = $2 }
        /^The following tests FAILED:/ { inb = (want == "FAILED"); next }
        /^The following tests did not run:/ { inb = (want == "SKIPPED"); next }
        inb && /^[ \t]+[0-9]+ - / {
            st = $0; sub(/^[^(]*\(/, "", st); sub(/\)[^)]*$/, "", st)
            printf "%s%s%s ", (d ? d ":" : ""), $3, (want == "FAILED" ? " (" st ")" : "")
            next
        }
        { inb = 0 }' "$1"
}

stamp=$(date +%Y%m%d-%H%M%S)
out=$dir/runs/$stamp
mkdir -p "$out"
summary=$out/summary
{
    echo "evn $sha ($rev) from $repo"
    echo "command: $cmd${envs[*]:+ (with ${envs[*]})}; $runs run(s), $hogs CPU hog(s) on the $hogs_on"
} | tee "$summary"

npass=0
for ((n = 1; n <= runs; n++)); do
    log=$out/run-$n.log
    base=$out/run-$n
    fresh_root "$base"
    mount_system "$cur_root"
    git clone -q --no-hardlinks "$repo_top" "$cur_root/root/evn"
    git -C "$cur_root/root/evn" -c advice.detachedHead=false checkout -q --detach "$sha"
    echo "== run $n of $runs: $cmd (log: $log)"
    start_hogs "$cur_root"
    start=$SECONDS
    # In the background, so that a signal to this script runs its trap (and
    # the clean-up) at once rather than when the command ends.
    chroot "$cur_root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        ${envs[@]+"${envs[@]}"} /bin/bash -c "cd /root/evn && $cmd" </dev/null >"$log" 2>&1 &
    rc=0
    wait $! || rc=$?
    secs=$((SECONDS - start))
    stop_hogs
    cleanup_run
    failed=$(ctest_list "$log" FAILED)
    failed=${failed% }
    skipped=$(ctest_list "$log" SKIPPED)
    skipped=${skipped% }
    if [ "$rc" = 0 ]; then
        npass=$((npass + 1))
        line="run $n: PASS in ${secs} s"
    else
        line="run $n: FAIL (status $rc) in ${secs} s"
        step=$(failed_step "$log")
        [ -z "$step" ] || line+=", in step '$step'"
    fi
    [ -z "$failed" ] || line+="; failed tests: $failed"
    [ -z "$skipped" ] || line+="; skipped tests: $skipped"
    echo "$line" | tee -a "$summary"
    [ "$rc" = 0 ] || tail -n 25 "$log" | sed 's/^/    /'
done
echo "$npass of $runs run(s) passed; logs and summary in $out" | tee -a "$summary"
[ "$npass" = "$runs" ]
