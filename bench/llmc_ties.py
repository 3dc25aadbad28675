"""For weights where our mse observer and llm-compressor's picked different
steps (bench/bench_observer_llmc.py lists them), how far apart the two
steps' errors are in llm-compressor's own arithmetic: its _calculate_error
for every step of each differing group, the step each side chose (found by
its scale), and the relative difference of their errors.

Usage:
  python bench/llmc_ties.py MONOQUANT MODEL_DIR LLMC_UNPACKED PRESET GROUP WEIGHT...

GROUP: a group size or "channel"; WEIGHT: a Linear's name without
".weight" (e.g. model.layers.16.mlp.gate_proj). Default observer options.
"""
import json
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import llmc_capability as cap  # noqa: E402
import llmcwheel  # noqa: E402

STEPS, GRID, NORM = 20, 100.0, 2.4


def main():
    cli, model, root, preset, group = sys.argv[1:6]
    names = sys.argv[6:]
    grid_search = llmcwheel.load_grid_search(root)
    from llmcompressor.observers.mse_quant import _calculate_error
    from compressed_tensors.quantization import QuantizationArgs, QuantizationStrategy
    from compressed_tensors.quantization.utils import calculate_qparams
    from safetensors import safe_open
    tmp = tempfile.mkdtemp(prefix="mq_llmc_ties_")
    try:
        out = os.path.join(tmp, "out")
        ours = cap.quantize_some(cli, model, preset, group, out, names)
        with open(os.path.join(out, "config.json")) as f:
            qc = json.load(f)["quantization_config"]
        qargs = QuantizationArgs(**qc["config_groups"]["group_0"]["weights"])
        token = qargs.model_copy(update={"strategy": QuantizationStrategy.TOKEN})
        files = [os.path.join(model, f) for f in os.listdir(model) if f.endswith(".safetensors")]
        for m in names:
            w = None
            for path in files:
                with safe_open(path, "pt") as h:
                    if m + ".weight" in h.keys():
                        w = h.get_tensor(m + ".weight")
            obs = llmcwheel.flatten(w, qargs)
            lo, hi = grid_search(obs, qargs, token, 0.2, 5, GRID, NORM, 0.3, 1.0)
            theirs = calculate_qparams(lo, hi, qargs)[0].to(w.dtype)
            mine = ours[m + ".weight_scale"]
            for r, c in (mine != theirs).nonzero().tolist():
                g = obs[:, r:r + 1, c:c + 1, :]
                mn, mx = torch.amin(g, dim=(0, -1)), torch.amax(g, dim=(0, -1))
                steps = []
                for i in range(STEPS):
                    p = 1 - i / GRID
                    err = float(_calculate_error(g, qargs, token, mn * p, mx * p, NORM))
                    scale = float(calculate_qparams(mn * p, mx * p, qargs)[0].to(w.dtype))
                    steps.append((err, scale))

                def step_of(scale):
                    return min(range(STEPS), key=lambda i: abs(steps[i][1] - scale))
                ti, oi = step_of(float(theirs[r, c])), step_of(float(mine[r, c]))
                print("%s group (%d, %d): llm-compressor step %d (error %.9g), ours step %d "
                      "(error %.9g in llm-compressor's arithmetic), relative difference %.2e" %
                      (m, r, c, ti, steps[ti][0], oi, steps[oi][0],
                       (steps[oi][0] - steps[ti][0]) / steps[ti][0]))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
