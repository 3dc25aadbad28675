#!/bin/bash
# The host path against the I/O floor: how much longer `monoquant quantize
# --device host` takes than reading its input once and writing a file of its
# output's size, for F32, BF16 and F16 inputs and the presets W8A8, W4A16 and
# FP8_DYNAMIC; optionally an older build in the same pairs, and llama.cpp's
# llama-quantize (Q8_0) by CPU time on the same weights.
#
# Usage: bench/bench_floor.sh -m MONOQUANT [options]
#   -m PATH    the monoquant binary to measure ("after")
#   -b PATH    an older monoquant binary ("before"), run in the same pairs
#   -g PATH    mq-genmodel (default: beside MONOQUANT)
#   -w DIR     work directory: generated models are kept there and reused
#              (default ${TMPDIR:-/tmp}/mq-bench-floor); outputs are removed
#   -n N       pairs per case (default 7)
#   -d LIST    input dtypes (default F32,BF16,F16)
#   -p LIST    presets (default W8A8,W4A16,FP8_DYNAMIC)
#   -s SIZE    1b (default: mq-genmodel --preset 1b, 0.95 B parameters in 4
#              shards) or quick (the same shapes, 2 layers, 2 shards: about a
#              tenth of the bytes, to try the script)
#   -l DIR     llama.cpp binaries (llama-quantize); with -c, each dtype's model
#              is written as GGUF once (bench/gguf_from_hf.py: the same tensors
#              and dtype; the generated models have no tokenizer, which
#              convert_hf_to_gguf.py needs) and quantized to Q8_0 on 2 threads
#   -c DIR     llama.cpp's source tree (its gguf-py is put on PYTHONPATH)
#   -P PATH    the Python that runs gguf_from_hf.py (default python3; needs numpy)
#
# What one pair is, input in the page cache (one untimed read first):
#   floor:  cat every input file > /dev/null, then dd bs=16M of /dev/zero into
#           a file of the output's total size with conv=fsync
#   mq:     monoquant quantize IN -o OUT --preset P --device host -q, which
#           fsyncs each output file and the directory before it returns
# Each timed under /usr/bin/time (wall, user, sys, peak RSS); the order within
# a pair alternates. Printed per case: medians of wall and user+sys CPU time,
# the median of the per-pair ratio mq/floor with its min-max spread, and with
# -b the median per-pair ratio after/before of wall and of CPU time. CPU time
# is the steadier figure on a machine shared with other work.
set -euo pipefail

mq="" before="" gen="" work="${TMPDIR:-/tmp}/mq-bench-floor" pairs=7
dtypes="F32,BF16,F16" presets="W8A8,W4A16,FP8_DYNAMIC" size=1b
llama="" convert="" py=python3
while getopts "m:b:g:w:n:d:p:s:l:c:P:h" opt; do
  case $opt in
  m) mq=$OPTARG ;;
  b) before=$OPTARG ;;
  g) gen=$OPTARG ;;
  w) work=$OPTARG ;;
  n) pairs=$OPTARG ;;
  d) dtypes=$OPTARG ;;
  p) presets=$OPTARG ;;
  s) size=$OPTARG ;;
  l) llama=$OPTARG ;;
  c) convert=$OPTARG ;;
  P) py=$OPTARG ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
[ -n "$mq" ] || { echo "bench_floor.sh: -m MONOQUANT is required (-h for help)" >&2; exit 2; }
[ -n "$gen" ] || gen=$(dirname "$mq")/mq-genmodel
case $size in
1b) genargs="--preset 1b --shards 4" ;;
quick) genargs="--preset 1b --layers 2 --shards 2" ;;
*) echo "bench_floor.sh: -s is 1b or quick" >&2; exit 2 ;;
esac
mkdir -p "$work"
tmp=$(mktemp -d "$work/run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# One timed command: appends "wall user sys maxrss_kb" to the file $1.
timed() {
  local log=$1
  shift
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/t" "$@" >/dev/null 2>"$tmp/err" ||
    { cat "$tmp/err" >&2; echo "bench_floor.sh: failed: $*" >&2; exit 1; }
  cat "$tmp/t" >>"$log"
}

model() { # the generated model of dtype $1, made once
  local dir="$work/model-$size-$1"
  if [ ! -f "$dir/.done" ]; then
    rm -rf "$dir"
    # shellcheck disable=SC2086
    "$gen" "$dir" $genargs --dtype "$1" --seed 1 >/dev/null
    touch "$dir/.done"
  fi
  echo "$dir"
}

floor_run() { # $1 model dir, $2 output bytes
  cat "$1"/* >/dev/null
  dd if=/dev/zero of="$tmp/floor.bin" bs=16M count="$2" iflag=count_bytes conv=fsync status=none
}
export -f floor_run

quantize() { # $1 binary, $2 model, $3 preset
  rm -rf "$tmp/out"
  "$1" quantize "$2" -o "$tmp/out" --preset "$3" --device host -q
}
export -f quantize
export tmp

echo "# bench_floor.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n)"
echo "# CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# after: $mq${before:+; before: $before}; $pairs pairs per case; model size $size"
printf '%-5s %-12s %-7s %6s %6s %8s %8s %7s %-13s %6s %s\n' dtype preset run "in GB" "out GB" \
  "wall s" "cpu s" "RSS MB" "ratio (min-max)" "" "vs before: wall, cpu"

for dt in ${dtypes//,/ }; do
  m=$(model "$dt")
  in_bytes=$(cat "$m"/* | wc -c)
  for p in ${presets//,/ }; do
    quantize "$mq" "$m" "$p" # warm-up: the input into the page cache, the output's size
    out_bytes=$(cat "$tmp/out"/* | wc -c)
    runs="floor after"
    [ -n "$before" ] && runs="floor before after"
    for r in $runs; do : >"$tmp/$r.log"; done
    for i in $(seq 1 "$pairs"); do
      # rotate the order, so that no run always follows the same one
      set -- $runs
      for _ in $(seq 2 "$i"); do set -- "${@:2}" "$1"; done
      for r in "$@"; do
        case $r in
        floor) timed "$tmp/floor.log" bash -c 'floor_run "$0" "$1"' "$m" "$out_bytes" ;;
        after) timed "$tmp/after.log" bash -c 'quantize "$0" "$1" "$2"' "$mq" "$m" "$p" ;;
        before) timed "$tmp/before.log" bash -c 'quantize "$0" "$1" "$2"' "$before" "$m" "$p" ;;
        esac
      done
    done
    rm -rf "$tmp/out" "$tmp/floor.bin"
    python3 - "$tmp" "$dt" "$p" "$in_bytes" "$out_bytes" $runs <<'PY'
import statistics as st, sys
tmp, dt, preset, inb, outb, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:]
t = {r: [list(map(float, l.split())) for l in open(f"{tmp}/{r}.log")] for r in runs}
med = lambda xs: st.median(xs)
for r in runs:
    wall = [x[0] for x in t[r]]
    cpu = [x[1] + x[2] for x in t[r]]
    rss = max(x[3] for x in t[r]) / 1024
    line = "%-5s %-12s %-7s %6.2f %6.2f %8.2f %8.2f %7s" % (
        dt, preset, r, inb / 1e9, outb / 1e9, med(wall), med(cpu), "-" if r == "floor" else "%.0f" % rss)
    if r != "floor":
        ratio = [a[0] / f[0] for a, f in zip(t[r], t["floor"])]
        line += " %5.2fx (%.2f-%.2f)" % (med(ratio), min(ratio), max(ratio))
    if r == "after" and "before" in t:
        w = [a[0] / b[0] for a, b in zip(t["after"], t["before"])]
        c = [(a[1] + a[2]) / (b[1] + b[2]) for a, b in zip(t["after"], t["before"])]
        line += "   wall %.2fx, cpu %.2fx" % (med(w), med(c))
    print(line)
PY
  done
done

# llama-quantize to Q8_0 on 2 threads, by CPU time, against monoquant W8A8 on
# the same weights, per dtype.
if [ -n "$llama" ] && [ -n "$convert" ]; then
  echo "# llama-quantize Q8_0 (2 threads) against monoquant W8A8, medians of $pairs alternating runs"
  printf '%-5s %-16s %8s %8s %s\n' dtype run "wall s" "cpu s" "cpu ratio mq/llama (min-max)"
  for dt in ${dtypes//,/ }; do
    m=$(model "$dt")
    g="$work/model-$size-$dt.gguf"
    if [ ! -f "$g" ]; then
      PYTHONPATH="$convert/gguf-py${PYTHONPATH:+:$PYTHONPATH}" \
        "$py" "$(dirname "$0")/gguf_from_hf.py" "$m" "$g.part" \
        >"$tmp/convert.log" 2>&1 || { tail -20 "$tmp/convert.log" >&2; exit 1; }
      mv "$g.part" "$g"
    fi
    : >"$tmp/llama.log"
    : >"$tmp/mq.log"
    cat "$g" >/dev/null
    for i in $(seq 1 "$pairs"); do
      rm -f "$tmp/q8.gguf"
      if [ $((i % 2)) = 1 ]; then
        timed "$tmp/llama.log" "$llama/llama-quantize" "$g" "$tmp/q8.gguf" Q8_0 2
        timed "$tmp/mq.log" bash -c 'quantize "$0" "$1" W8A8' "$mq" "$m"
      else
        timed "$tmp/mq.log" bash -c 'quantize "$0" "$1" W8A8' "$mq" "$m"
        timed "$tmp/llama.log" "$llama/llama-quantize" "$g" "$tmp/q8.gguf" Q8_0 2
      fi
    done
    rm -f "$tmp/q8.gguf"
    rm -rf "$tmp/out"
    python3 - "$tmp" "$dt" <<'PY'
import statistics as st, sys
tmp, dt = sys.argv[1:]
t = {r: [list(map(float, l.split())) for l in open(f"{tmp}/{r}.log")] for r in ("mq", "llama")}
ratio = [(a[1] + a[2]) / (b[1] + b[2]) for a, b in zip(t["mq"], t["llama"])]
for r, name in (("llama", "llama-quantize"), ("mq", "monoquant W8A8")):
    line = "%-5s %-16s %8.2f %8.2f" % (dt, name, st.median(x[0] for x in t[r]),
                                       st.median(x[1] + x[2] for x in t[r]))
    if r == "mq":
        line += " %5.2fx (%.2f-%.2f)" % (st.median(ratio), min(ratio), max(ratio))
    print(line)
PY
  done
fi
echo "# ratio: wall time over the floor's in the same pair (floor = cat input + dd output size, fsynced);"
echo "# cpu: user+sys seconds; RSS: largest peak resident set over the runs"
