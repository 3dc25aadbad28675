#!/bin/sh
# The mse observer against min-max on a generated F32 model: mean weight SQNR
# of the quantized tensors and the host-path wall time, per preset.
# Usage: bench/bench_observer.sh BUILD_DIR [mq-genmodel preset, default small]
set -eu
build=${1:?build directory}
size=${2:-small}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/mq-genmodel" "$tmp/in" --preset "$size" --dtype F32 --seed 1 >/dev/null
printf '%-28s %-7s %9s %9s\n' "preset" "observer" "SQNR dB" "seconds"
for args in "W4A16 --group-size channel" "W4A16 --group-size 64" "W4A16_ASYM --group-size 64" \
            "W8A8" "FP8_DYNAMIC"; do
  for obs in minmax mse; do
    rm -rf "$tmp/out"
    # shellcheck disable=SC2086
    "$build/monoquant" quantize "$tmp/in" -o "$tmp/out" --preset $args --observer $obs \
      --device host --report "$tmp/r.json" -q
    python3 - "$tmp/r.json" "$args" "$obs" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
q = [t["weight_sqnr_db"] for t in r["quantized"]]
print("%-28s %-7s %9.3f %9.2f" % (sys.argv[2], sys.argv[3], sum(q) / len(q), r["seconds"]))
PY
  done
done
