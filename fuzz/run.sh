#!/usr/bin/env bash
# Fuzz every target in fuzz/targets.txt with libFuzzer (clang), under
# AddressSanitizer and UndefinedBehaviorSanitizer, for FUZZ_SECONDS each
# (default 60). A crashing input is copied to fuzz/regressions/<name>/, where
# the replay tests (ctest fuzz.<name>) keep running it from then on; the
# script then exits non-zero.
#   fuzz/run.sh [name...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${FUZZ_SECONDS:-60}
out=$root/build-fuzz
mkdir -p "$out"
cc=${FUZZ_CC:-clang}
command -v "$cc" >/dev/null || { echo "fuzz: $cc not found (scripts/setup.sh fuzz installs it)" >&2; exit 2; }

status=0
while read -r name srcs; do
  case "$name" in ''|'#'*) continue ;; esac
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  files=("$root/fuzz/fuzz_$name.c")
  for s in $srcs; do files+=("$root/$s"); done
  bin=$out/fuzz-$name
  "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -D_GNU_SOURCE -DEVN_HAVE_EPOLL=1 -DEVN_HAVE_EVENTFD=1 -DEVN_HAVE_ACCEPT4=1 \
    -I"$root/include" -I"$root/src" -I"$root/examples/http" -I"$root/examples/redis" \
    "${files[@]}" -o "$bin"
  corpus=$out/corpus-$name
  mkdir -p "$corpus" "$out/artifacts-$name"
  cp -n "$root/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f "$root/fuzz/$name.dict" ] && dict=(-dict="$root/fuzz/$name.dict")
  echo "fuzz: $name for ${secs}s"
  if ! "$bin" "$corpus" "${dict[@]}" -max_total_time="$secs" -print_final_stats=1 \
      -artifact_prefix="$out/artifacts-$name/" -max_len=8192 >"$out/$name.log" 2>&1; then
    echo "fuzz: $name FAILED; the input that broke it:" >&2
    tail -40 "$out/$name.log" >&2
    mkdir -p "$root/fuzz/regressions/$name"
    for a in "$out/artifacts-$name"/*; do
      [ -f "$a" ] && cp "$a" "$root/fuzz/regressions/$name/" && echo "  kept as fuzz/regressions/$name/$(basename "$a")" >&2
    done
    status=1
  else
    grep -E 'stat::number_of_executed_units|cov:' "$out/$name.log" | tail -2 | sed "s/^/  $name: /"
  fi
done < "$root/fuzz/targets.txt"
exit $status
