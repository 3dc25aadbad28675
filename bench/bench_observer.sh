#!/bin/sh
# The mse observer against min-max on a generated F32 model, per preset: mean
# weight SQNR of the quantized tensors, and the cost of a whole quantize run
# (wall and CPU time, user + system, of the process) as medians over
# alternating pairs (min-max then mse, then mse then min-max, ...), so that a
# change in the machine's load hits both alike. The ratios are of the medians.
# Usage: bench/bench_observer.sh BUILD_DIR [mq-genmodel preset, default small]
#        [device, default host] [pairs, default 5]
# A model of other dimensions: MQ_GENMODEL_ARGS="--hidden 1024 ..." replaces
# the preset.
set -eu
build=${1:?build directory}
size=${2:-small}
device=${3:-host}
pairs=${4:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086
"$build/mq-genmodel" "$tmp/in" ${MQ_GENMODEL_ARGS:---preset $size} --dtype F32 --seed 1 >/dev/null
python3 - "$build/monoquant" "$tmp" "$device" "$pairs" <<'PY'
import json, os, resource, statistics, subprocess, sys, time

cli, tmp, device, pairs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
presets = ["W4A16 --group-size channel", "W4A16 --group-size 64", "W4A16_ASYM --group-size 64",
           "W8A8", "FP8_DYNAMIC"]

def run(args, obs):
    out, rep = os.path.join(tmp, "out"), os.path.join(tmp, "r.json")
    subprocess.run(["rm", "-rf", out], check=True)
    cmd = [cli, "quantize", os.path.join(tmp, "in"), "-o", out, "--preset", *args.split(),
           "--observer", obs, "--device", device, "--report", rep, "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    q = [t["weight_sqnr_db"] for t in json.load(open(rep))["quantized"]]
    return wall, cpu, sum(q) / len(q)

print("device %s, %d alternating pairs, medians" % (device, pairs))
print("%-28s %8s %8s %8s %8s %8s %8s %7s %7s" % ("preset", "mm dB", "mse dB", "mm wall", "mse wall",
                                                 "mm cpu", "mse cpu", "wall x", "cpu x"))
for args in presets:
    res = {"minmax": [], "mse": []}
    for k in range(pairs):
        for obs in (("minmax", "mse") if k % 2 == 0 else ("mse", "minmax")):
            res[obs].append(run(args, obs))
    med = {o: [statistics.median(r[i] for r in res[o]) for i in range(3)] for o in res}
    mm, ms = med["minmax"], med["mse"]
    print("%-28s %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %7.1f %7.1f" %
          (args, mm[2], ms[2], mm[0], ms[0], mm[1], ms[1], ms[0] / mm[0], ms[1] / mm[1]))
PY
