#!/usr/bin/env bash
# The GPU check in one unattended command: the kernel and CLI suites on the GPU
# (MQ_DEVICE=gpu, bit for bit against the reference), bench_kernels (every dtype
# x scheme, and the presets' int4/fp8/FP4/MX kinds, kernel against
# clEnqueueCopyBuffer on the same device), the FP4 and MX presets end to end
# on the device against the host path (presets_fp4), bench_eval
# (eval and CLBlast SGEMM) and bench_pipeline.py (the generated 1b model, F32 and
# BF16: --device gpu, --device host, cp -r + sync). Each step runs under a
# timeout inside one time budget (450 s); a failed step is recorded and the
# rest still run. Writes OUTDIR/gpu_check.md, OUTDIR/gpu_check.json and
# OUTDIR/gpu_check.log (every step's output); exits 1 when a step failed.
#
# usage: bench/gpu_check.sh OUTDIR [--build DIR] [--device SPEC] [--budget SECONDS]
#                           [--work DIR] [--keep-work] [--dry-run]
#   --build    the build tree (default: build in the source tree); the script
#              runs its monoquant, mq-genmodel, tests/test_* and bench/bench_*
#              and compiles nothing
#   --device   the device the steps use (default: gpu; with --dry-run: opencl)
#   --budget   seconds for all steps together (default: 450; with --dry-run: 1800)
#   --work     where models and temporaries go (default: a new directory in
#              $TMPDIR or /tmp; about 6 GB for the 1b model), removed at the end
#              unless --keep-work
#   --dry-run  the same steps on PoCL (or the host path when there is no OpenCL
#              device) at tiny sizes, in about 2 minutes on an idle machine:
#              plumbing, not figures. Its step timeouts are ten times the
#              GPU run's and only catch a hang, so a loaded machine cannot
#              fail it. ctest runs it (label gpu_check).
#
# On a GPU machine with no compiler and no network it needs python3 (standard
# library only), coreutils and what ../shared/device/pack.sh carries. Here:
#   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build-gpu -j
#   MQ_EXTRA_DEBS=libpcre2-8-0 ../shared/device/pack.sh   # the library links libpcre2-8
# (a build tree of its own, about 25 MB, keeps build/venv, several GB, out of
# what is carried),
# then on the GPU machine, carrying .device and build-gpu:
#   source .device/setup.sh && bash bench/gpu_check.sh "$OUT" --build build-gpu
# The test binaries hold the source and build paths they were built with; where
# those paths do not exist the script links them to this tree for the run.
set -uo pipefail

usage() {
  sed -n '/^# usage:/,/^#$/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

root=$(cd "$(dirname "$0")/.." && pwd)
outdir="" build="$root/build" device="" budget="" work="" keep=0 dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=${2:?}; shift 2 ;;
    --device) device=${2:?}; shift 2 ;;
    --budget) budget=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --keep-work) keep=1; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage ;;
    -*) echo "gpu_check: unknown option '$1'" >&2; usage ;;
    *) [ -z "$outdir" ] || usage; outdir=$1; shift ;;
  esac
done
[ -n "$outdir" ] || usage
[ -n "$device" ] || { [ $dry = 1 ] && device=opencl || device=gpu; }
[ -n "$budget" ] || { [ $dry = 1 ] && budget=1800 || budget=450; }
# The dry run checks plumbing, not speed: its timeouts only catch a hang.
stretch=$([ $dry = 1 ] && echo 10 || echo 1)
build=$(cd "$build" 2>/dev/null && pwd) || { echo "gpu_check: no build tree '$build'" >&2; exit 2; }
command -v python3 >/dev/null || { echo "gpu_check: python3 is needed" >&2; exit 2; }
mkdir -p "$outdir" && outdir=$(cd "$outdir" && pwd) || exit 2
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/mq-gpu-check.XXXXXX") || exit 2
else
  mkdir -p "$work" && work=$(cd "$work" && pwd) || exit 2
fi
cd "$root" || exit 2
mkdir -p "$work/logs" "$work/tmp"
: >"$work/steps.tsv"
: >"$work/notes.txt"
start=$SECONDS
deadline=$((SECONDS + budget))
mode=$([ $dry = 1 ] && echo dry-run || echo gpu)
mq="$build/monoquant"

note() { echo "gpu_check: $*"; echo "$*" >>"$work/notes.txt"; }

# step NAME TIMEOUT CMD...: runs CMD under `timeout` (never past the budget),
# its output in logs/NAME.log, and appends a line to steps.tsv.
step() {
  local name=$1 limit=$2 left rc status t0 dt cmd
  shift 2
  cmd=$(printf '%s ' "$@" | tr '\t\n' '  ')
  cmd=${cmd% }
  limit=$((limit * stretch))
  left=$((deadline - SECONDS - 10))
  [ "$limit" -le "$left" ] || limit=$left
  if [ "$limit" -lt 5 ]; then
    printf '%s\tnot run\t\t0\t0\t%s\n' "$name" "$cmd" >>"$work/steps.tsv"
    echo "== $name: not run (time budget spent)"
    return 1
  fi
  echo "== $name (timeout ${limit} s): $cmd"
  t0=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" >"$work/logs/$name.log" 2>&1
  rc=$?
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) status=ok ;;
    77) status=skipped ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$dt" "$limit" "$cmd" >>"$work/steps.tsv"
  echo "   $status (exit $rc) in $dt s"
  [ $rc = 0 ] || [ $rc = 77 ]
}

# The test binaries run the CLI and read examples/ by the absolute paths they
# were built with; on another machine those paths are links to this tree.
made_links=()
link_path() {
  local want=$1 here=$2
  [ -n "$want" ] && ! [ "$want" -ef "$here" ] || return 0
  if [ -e "$want" ] || [ -L "$want" ]; then
    note "the build's path $want is not this tree ($here): tests use what is there"
  elif mkdir -p "$(dirname "$want")" 2>/dev/null && ln -s "$here" "$want" 2>/dev/null; then
    made_links+=("$want")
    note "linked $want -> $here (the path the test binaries were built with)"
  else
    note "could not link $want -> $here: the CLI tests will fail"
  fi
}
cache="$build/CMakeCache.txt"
if [ -f "$cache" ]; then
  link_path "$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")" "$root"
  link_path "$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$cache")" "$build"
fi

# Writes the reports; returns 1 when a step did not pass (skips pass).
finish() {
  local rc=0 l f
  for ((l = ${#made_links[@]} - 1; l >= 0; l--)); do # the last first: it may lie in an earlier one
    [ -L "${made_links[l]}" ] && rm -f "${made_links[l]}"
  done
  awk -F'\t' '$2 != "ok" && $2 != "skipped" { bad = 1 } END { exit !bad }' "$work/steps.tsv" && rc=1
  python3 "$root/bench/gpu_check_report.py" --work "$work" --out "$outdir" --mode "$mode" \
    --device "$device" --build "$build" --budget "$budget" --seconds $((SECONDS - start)) || rc=1
  for f in "$work"/logs/*.log; do
    [ -e "$f" ] || continue
    printf '\n===== %s =====\n' "$(basename "$f" .log)"
    tail -c 500000 "$f"
  done >"$outdir/gpu_check.log"
  if [ $keep = 0 ]; then rm -rf "$work"; else echo "gpu_check: work directory kept: $work"; fi
  echo "gpu_check: $outdir/gpu_check.md, gpu_check.json, gpu_check.log ($((SECONDS - start)) s)"
  return $rc
}

trap 'note "interrupted"; finish; exit 130' INT TERM

# ---- the device ----
step devices 30 "$mq" devices
cl=1
grep -q 'Device #' "$work/logs/devices.log" || cl=0
if command -v clinfo >/dev/null; then
  step clinfo 30 clinfo --raw
else
  note "clinfo not installed: no driver version from it"
fi
if command -v nvidia-smi >/dev/null; then
  step nvidia-smi 30 nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv
fi
if [ $cl = 0 ] && [ $dry = 1 ]; then
  note "no OpenCL device: the dry run uses the host path and skips the kernel benchmark"
  device=host
fi
# One quantize on the device and on the host, compared byte for byte; its
# "device:" line names the device the other steps get.
# shellcheck disable=SC2016 # expanded by the inner shell
step probe 60 bash -c '"$1" quantize "$2" -o "$3/p-dev" --device "$4" &&
  "$1" quantize "$2" -o "$3/p-host" --device host -q && cmp "$3/p-dev" "$3/p-host" &&
  echo "probe: --device $4 and --device host wrote the same bytes"' \
  probe "$mq" "$root/examples/tiny_mlp.safetensors" "$work/tmp" "$device"

# ---- (a) the suites on the device ----
suite_limit=$([ $dry = 1 ] && echo 90 || echo 150)
for t in test_kernels test_errstats test_stream test_eval test_devfault test_cli; do
  step "$t" "$suite_limit" env MQ_DEVICE="$device" TMPDIR="$work/tmp" "$build/tests/$t"
done

# ---- (b) kernels ----
if [ "$device" = host ]; then
  printf 'bench_kernels\tskipped\t77\t0\t0\tno OpenCL device\n' >>"$work/steps.tsv"
elif [ $dry = 1 ]; then
  step bench_kernels 60 "$build/bench/bench_kernels" --device "$device" \
    --shapes 256x256,300x1000 --dtypes f32,f16,bf16 --schemes sym,asym --iters 3 --host-iters 1
else
  step bench_kernels 150 "$build/bench/bench_kernels" --device "$device" \
    --shapes 4096x4096,14336x4096,4096x14336,128256x4096 --dtypes f32,f16,bf16 \
    --schemes sym,asym --iters 20 --host-iters 3 --no-ref
fi
# The presets' code kinds: int4 groups (sym, asym), fp8 per channel and in
# blocks, MX fp4 and fp8 (groups of 32, e8m0 scales) and NVFP4 (groups of 16,
# e4m3 scales under a global scale). Their bytes against the reference are
# test_kernels' (above, on the same device) and presets_fp4's (below).
if [ "$device" != host ]; then
  if [ $dry = 1 ]; then
    step bench_kinds 60 "$build/bench/bench_kernels" --device "$device" --shapes 256x256 \
      --dtypes f32,bf16 --kinds int4,int4-asym,fp8,fp8-block,mxfp4,mxfp8,nvfp4 --iters 2 \
      --host-iters 1
  else
    step bench_kinds 90 "$build/bench/bench_kernels" --device "$device" \
      --shapes 4096x4096,14336x4096 --dtypes f32,bf16 \
      --kinds int4,int4-asym,fp8,fp8-block,mxfp4,mxfp8,nvfp4 --iters 10 --host-iters 2 --no-ref
  fi
fi
# The FP4 and MX presets end to end on the device against the host path, byte
# for byte: a generated model directory in two shards (NVFP4A16's global
# scales shared across the shards' fused sets) and one of its shards as a
# single file. The tiny model's ffn of 176 leaves ragged groups of 32 (kept in
# float), the small model's none.
# shellcheck disable=SC2016 # expanded by the inner shell
step presets_fp4 "$([ $dry = 1 ] && echo 60 || echo 90)" bash -c '
  mq=$1 gen=$2 w=$3/presets dev=$4 size=$5
  mkdir -p "$w" && "$gen" "$w/model" --preset "$size" --dtype BF16 --shards 2 >/dev/null || exit 1
  f=$(cd "$w/model" && ls -- *.safetensors | head -1)
  for p in MXFP4A16 MXFP4 MXFP8A16 MXFP8 NVFP4A16; do
    "$mq" quantize "$w/model" -o "$w/$p-dev" -q --preset $p --device "$dev" &&
      "$mq" quantize "$w/model" -o "$w/$p-host" -q --preset $p --device host &&
      diff -r "$w/$p-dev" "$w/$p-host" &&
      "$mq" quantize "$w/model/$f" -o "$w/$p-dev.safetensors" -q --preset $p --device "$dev" &&
      "$mq" quantize "$w/model/$f" -o "$w/$p-host.safetensors" -q --preset $p --device host &&
      cmp "$w/$p-dev.safetensors" "$w/$p-host.safetensors" || exit 1
    echo "presets_fp4: $p: --device $dev and --device host wrote the same bytes (directory, $f)"
  done' presets_fp4 "$mq" "$build/mq-genmodel" "$work/tmp" "$device" \
  "$([ $dry = 1 ] && echo tiny || echo small)"

# ---- (d) eval and CLBlast ----
if [ $dry = 1 ]; then
  step bench_eval 60 env TMPDIR="$work/tmp" "$build/bench/bench_eval" --device "$device" --quick
else
  step bench_eval 120 env TMPDIR="$work/tmp" "$build/bench/bench_eval" --device "$device"
fi

# ---- (c) end to end ----
devs="$device,host"
[ "$device" = host ] && devs=host
for dt in F32 BF16; do
  if [ $dry = 1 ]; then
    step "pipeline_$dt" 60 python3 "$root/bench/bench_pipeline.py" --build "$build" \
      --work "$work/pipeline" --runs 3 --dtypes "$dt" --preset tiny --devices "$devs" \
      --json "$work/pipeline_$dt.json"
  else
    step "pipeline_$dt" "$([ $dt = F32 ] && echo 170 || echo 120)" \
      python3 "$root/bench/bench_pipeline.py" --build "$build" --work "$work/pipeline" \
      --runs 3 --dtypes "$dt" --preset 1b --devices "$devs" --json "$work/pipeline_$dt.json"
  fi
  rm -rf "$work/pipeline/llama-"*"-$dt"
done
df -hT "$work" >"$work/logs/work-filesystem.log" 2>&1
finish
