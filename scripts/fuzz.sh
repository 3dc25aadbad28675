#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) in
# build-fuzz and runs each one for a bounded time, starting from the seed
# corpus in tests/fuzz/corpus/<target> (what a run finds is kept in
# build-fuzz/corpus/<target>, not in the source tree).
#   usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60, or $MQ_FUZZ_SECONDS)
# Prints each target's execution count. Exits non-zero when a target crashes,
# leaks, times out or runs out of memory; the input is saved under
# build-fuzz/artifacts/<target>/ (copy it to tests/fuzz/regressions/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-${MQ_FUZZ_SECONDS:-60}}"
targets=(fuzz_safetensors fuzz_hfjson)

command -v clang >/dev/null || { echo "fuzz: clang is not installed" >&2; exit 1; }
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQ_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >/dev/null

status=0
for t in "${targets[@]}"; do
  work="build-fuzz/corpus/$t"
  art="build-fuzz/artifacts/$t"
  log="build-fuzz/$t.log"
  mkdir -p "$work" "$art"
  rc=0
  "build-fuzz/tests/fuzz/$t" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="tests/fuzz/$t.dict" -artifact_prefix="$art/" \
    "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs="$(awk '/stat::number_of_executed_units/ {print $2}' "$log")"
  rate="$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")"
  echo "fuzz: $t: ${execs:-?} executions in ${secs} s (${rate:-?}/s), corpus $(ls "$work" | wc -l) files, exit $rc"
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $t FAILED; log $log, input in $art/:" >&2
    tail -n 60 "$log" >&2
    status=1
  fi
done
exit "$status"
