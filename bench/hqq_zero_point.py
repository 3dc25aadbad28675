"""Issue 24 item 3: does an HQQ-style refinement of the zero point (a few
half-quadratic iterations with the scale fixed) help asymmetric int4 on a
real model? Simulated in PyTorch on SmolLM2 (fake-quantized weights in the
float model, perplexity as bench/bench_imatrix.py measures it), before any
C code: min-max (compressed-tensors' asymmetric int4 parameters) against
the refined zero point, rounded to an integer as compressed-tensors stores
it, and unrounded (not storable: the best the refinement could do).

Usage: python bench/hqq_zero_point.py MODEL_DIR EVAL_TEXT IMATRIX.gguf [--ppl] [GROUP ...]

Each line gives the weight MSE, the importance-weighted weight error
sum_j imp_j (w_j - w_hat_j)^2 / sum_j imp_j (imp from IMATRIX.gguf: a proxy
of the layers' output error on that text) and, with --ppl, the perplexity
(each costs a forward pass over the text, slow on a loaded CPU). Without
--ppl only every sixth layer is quantized and measured.

The refinement is HQQ's (Badri and Shaji, 2023) with its defaults: an l_p
error with p = 0.7, beta 10 growing by 1.01 a step, 20 steps, stopping when
the mean error grows:
  W_q = clamp(rint(W / s + z));  W_e = shrink_p(W - (W_q - z) s, beta);
  z = mean over the group of (W_q - (W - W_e) / s).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_imatrix import TOKENS, WINDOW  # noqa: E402

QMIN, QMAX = -8.0, 7.0


def minmax_params(w):
    lo = torch.clamp(w.amin(1, keepdim=True), max=0.0)
    hi = torch.clamp(w.amax(1, keepdim=True), min=0.0)
    s = (hi - lo) / (QMAX - QMIN)
    s = torch.where(s == 0, torch.ones_like(s), s)
    z = torch.clamp(QMIN - torch.round(lo / s), QMIN, QMAX)
    return s, z


def fake(w, s, z):
    return (torch.clamp(torch.round(w / s + z), QMIN, QMAX) - z) * s


def shrink(x, beta, p=0.7):
    return torch.sign(x) * torch.relu(x.abs() - (1.0 / beta) * x.abs().clamp_min(1e-8) ** (p - 1))


def hqq_zero(w, s, z, iters=20, beta=10.0, kappa=1.01):
    best = (w - fake(w, s, z)).abs().mean()
    for _ in range(iters):
        wq = torch.clamp(torch.round(w / s + z), QMIN, QMAX)
        we = shrink(w - (wq - z) * s, beta)
        zn = (wq - (w - we) / s).mean(1, keepdim=True)
        err = (w - fake(w, s, zn)).abs().mean()
        if err > best:
            break
        best, z = err, zn
        beta *= kappa
    return z


def read_imatrix(path):
    """{llama.cpp name: imp} from the GGUF layout (gguf package)."""
    from gguf import GGUFReader
    r = GGUFReader(path)
    t = {x.name: x.data for x in r.tensors}
    return {k[:-len(".in_sum2")]: torch.tensor(v.reshape(-1)) / float(t[k[:-8] + ".counts"].reshape(-1)[0])
            for k, v in t.items() if k.endswith(".in_sum2")}


CPP = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
       "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
       "mlp.down_proj": "ffn_down"}


def quantize_model(m, group, mode, imx, ppl):
    err, n, werr, wsum = 0.0, 0, 0.0, 0.0
    for name, mod in m.named_modules():
        if not isinstance(mod, torch.nn.Linear) or ".layers." not in name:
            continue
        if not ppl and int(name.split(".layers.")[1].split(".")[0]) % 6:
            continue  # the proxy alone: every sixth layer, to keep it short
        w = mod.weight.data
        if w.shape[1] % group:
            continue
        g = w.reshape(-1, group)
        s, z = minmax_params(g)
        if mode != "minmax":
            z = hqq_zero(g, s, z)
            if mode == "hqq-int":
                z = torch.clamp(torch.round(z), QMIN, QMAX)
        wh = fake(g, s, z)
        err += float(((wh - g) ** 2).sum())
        n += g.numel()
        layer = name.split(".layers.")[1].split(".", 1)
        imp = imx["blk.%s.%s.weight" % (layer[0], CPP[layer[1]])]
        d2 = ((wh - g) ** 2).reshape(w.shape)
        werr += float((d2 * imp).sum() / imp.sum())
        wsum += w.shape[0]
        mod.weight.data = wh.reshape(w.shape)
    return err / n, werr / wsum


def main(model_dir, text, imatrix, ppl, groups):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    ids = tok.encode(open(text, encoding="utf-8").read()).ids[:TOKENS]
    imx = read_imatrix(imatrix)
    for group in groups:
        for mode in ("minmax", "hqq-int", "hqq-float"):
            m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
            mse, wmse = quantize_model(m, group, mode, imx, ppl)
            if not ppl:
                print("asym int4 g%d %-9s weight mse %.4e  weighted %.4e"
                      % (group, mode, mse, wmse), flush=True)
                continue
            nll, cnt = 0.0, 0
            with torch.no_grad():
                for s in range(0, len(ids) - 1, WINDOW):
                    x = torch.tensor([ids[s:s + WINDOW + 1]])
                    logits = m(x[:, :-1]).logits.float()
                    nll += torch.nn.functional.cross_entropy(logits[0], x[0, 1:],
                                                             reduction="sum").item()
                    cnt += x.shape[1] - 1
            print("asym int4 g%d %-9s weight mse %.4e  weighted %.4e  ppl %.3f"
                  % (group, mode, mse, wmse, torch.exp(torch.tensor(nll / cnt)).item()),
                  flush=True)


if __name__ == "__main__":
    ppl = "--ppl" in sys.argv
    rest = [a for a in sys.argv[4:] if a != "--ppl"]
    main(sys.argv[1], sys.argv[2], sys.argv[3], ppl, [int(g) for g in rest] or [64, 128])
