#!/usr/bin/env bash
# Fuzz every target in fuzz/targets.txt with libFuzzer (clang), under
# AddressSanitizer and UndefinedBehaviorSanitizer, for FUZZ_SECONDS each
# (default 60). A crashing input is copied to fuzz/regressions/<name>/, where
# the replay tests (ctest fuzz.<name>) keep running it from then on; the
# script then exits non-zero. Targets run FUZZ_JOBS at a time (default: one
# a CPU), each on its own.
#   fuzz/run.sh [name...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${FUZZ_SECONDS:-60}
out=$root/build-fuzz
mkdir -p "$out"
cc=${FUZZ_CC:-clang}
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (scripts/setup.sh fuzz installs it)" >&2; exit 2; }

jobs=${FUZZ_JOBS:-$(nproc)}

# Build and fuzz one target; exit status 1 if it broke.
fuzz_one() {
  local name=$1 srcs=$2
  local files=("$root/fuzz/fuzz_$name.c") s
  for s in $srcs; do files+=("$root/$s"); done
  local bin=$out/fuzz-$name
  "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -D_GNU_SOURCE -DEVN_HAVE_EPOLL=1 -DEVN_HAVE_EVENTFD=1 -DEVN_HAVE_ACCEPT4=1 \
    -I"$root/include" -I"$root/src" -I"$root/examples/http" -I"$root/examples/redis" \
    "${files[@]}" -o "$bin"
  local corpus=$out/corpus-$name
  mkdir -p "$corpus" "$out/artifacts-$name"
  cp -n "$root/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null || true
  local dict=()
  [ -f "$root/fuzz/$name.dict" ] && dict=(-dict="$root/fuzz/$name.dict")
  echo "fuzz: $name for ${secs}s"
  if ! "$bin" "$corpus" "${dict[@]}" -max_total_time="$secs" -print_final_stats=1 \
      -artifact_prefix="$out/artifacts-$name/" -max_len=8192 >"$out/$name.log" 2>&1; then
    {
      echo "fuzz: $name FAILED; the input that broke it:"
      tail -40 "$out/$name.log"
      mkdir -p "$root/fuzz/regressions/$name"
      local a
      for a in "$out/artifacts-$name"/*; do
        [ -f "$a" ] && cp "$a" "$root/fuzz/regressions/$name/" && echo "  kept as fuzz/regressions/$name/$(basename "$a")"
      done
    } >&2
    return 1
  fi
  grep -E 'stat::number_of_executed_units|cov:' "$out/$name.log" | tail -2 | sed "s/^/  $name: /"
}

status=0
pids=()
# Wait for the oldest running target; its failure fails the run.
reap() {
  wait "${pids[0]}" || status=1
  pids=("${pids[@]:1}")
}
while read -r name srcs; do
  case "$name" in ''|'#'*) continue ;; esac
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  [ "${#pids[@]}" -lt "$jobs" ] || reap
  fuzz_one "$name" "$srcs" &
  pids+=($!)
done < "$root/fuzz/targets.txt"
while [ "${#pids[@]}" -gt 0 ]; do reap; done
exit $status
