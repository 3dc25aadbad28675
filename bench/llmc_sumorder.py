"""What decides the near ties where our mse observer and llm-compressor's
pick different steps (bench/llmc_ties.py, bench/llmc_capability.py): for
each group whose scale differs, upstream's own terms |fake_quantize(w) -
w|^2.4 of every step (torch, fp32), summed three ways: by torch's sum (the
observer's), serially in fp32 in value order (our reference's order), and
in double; and the step each sum makes the best (strict improvement, all
20 steps).

Usage:
  python bench/llmc_sumorder.py MONOQUANT MODEL_DIR LLMC_UNPACKED GROUP WEIGHT...
(W4A16, GROUP a group size; WEIGHT a Linear's name without ".weight").
"""
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import llmc_capability as cap  # noqa: E402
import llmcwheel  # noqa: E402


def first_best(errs):
    best, at = float("inf"), None
    for i, e in enumerate(errs):
        if e < best:
            best, at = e, i
    return at


def main(cli, model, root, group, *names):
    from compressed_tensors.quantization import QuantizationStrategy
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import calculate_qparams
    grid_search = llmcwheel.load_grid_search(root)
    qa = cap.qargs_of("W4A16", group)
    token = qa.model_copy(update={"strategy": QuantizationStrategy.TOKEN})
    tmp = tempfile.mkdtemp(prefix="mq_llmc_sum_")
    try:
        ours = cap.ours(cli, model, "W4A16", group, tmp, names)
    finally:
        shutil.rmtree(tmp)
    for n in names:
        w = cap.weight(model, n)
        obs = llmcwheel.flatten(w, qa)
        lo, hi = grid_search(obs, qa, token, 0.2, 5, 100.0, 2.4, 0.3, 1.0)
        theirs = calculate_qparams(lo, hi, qa)[0].reshape(w.shape[0], -1)
        for r, c in (ours[n] != theirs).nonzero().tolist():
            g = obs[:, r:r + 1, c:c + 1, :]
            mn, mx = torch.amin(g, dim=(0, -1)), torch.amax(g, dim=(0, -1))
            by_torch, serial, double = [], [], []
            for i in range(20):
                p = 1 - i / 100.0
                sc, zp = calculate_qparams(mn * p, mx * p, qa)
                q = fake_quantize(g, sc.unsqueeze(-1), zp.unsqueeze(-1), token).to(g.dtype)
                t = (q - g).abs().pow(2.4)
                by_torch.append(float(torch.sum(t, dim=(0, -1))))
                acc = np.float32(0.0)
                for v in t.flatten().numpy():
                    acc = np.float32(acc + v)
                serial.append(float(acc))
                double.append(float(t.double().sum()))
            print("%s group (%d, %d): best step by torch's sum %d, by a serial fp32 sum %d, "
                  "by a double sum %d" % (n, r, c, first_best(by_torch), first_best(serial),
                                          first_best(double)))


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
