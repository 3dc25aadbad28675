"""An importance matrix computed as llama-imatrix computes it, with PyTorch
forward hooks on a Hugging Face model: for each Linear weight, in_sum2 the
sum over every token of the squares of its inputs, counts the number of
tokens, on chunks of 512 tokens of a calibration text; written in
llama.cpp's GGUF layout under llama.cpp's names (tests/py/imatrixfile.py).

Usage: python bench/imatrix_hooks.py MODEL_DIR TEXT OUT.gguf [TOKENS]
(Llama-shaped models; the tied head is left out, as the presets keep it.)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "py"))
import imatrixfile  # noqa: E402

CHUNK = 512
CPP = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
       "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
       "mlp.down_proj": "ffn_down"}


def run(model, key_of, inputs, out, chunk_size, dataset):
    """Runs `model` on each of `inputs` (token id lists) with a forward
    pre-hook on every Linear that key_of(name) names (its llama.cpp key, or
    None to leave it out), and writes the matrix to `out`; the number of
    entries."""
    sums, counts, hooks = {}, {}, []
    for name, mod in model.named_modules():
        key = key_of(name) if isinstance(mod, torch.nn.Linear) else None
        if key is None:
            continue
        sums[key] = torch.zeros(mod.in_features, dtype=torch.float64)
        counts[key] = 0

        def hook(_m, args, key=key):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            sums[key] += (x * x).sum(0)
            counts[key] += x.shape[0]
        hooks.append(mod.register_forward_pre_hook(hook))
    with torch.no_grad():
        for c in inputs:
            model(torch.tensor([c]))
    for h in hooks:
        h.remove()
    entries = {k: ([sums[k].float().tolist()], [float(counts[k])]) for k in sums}
    imatrixfile.write(out, imatrixfile.gguf_bytes(entries, chunk_count=len(inputs),
                                                  chunk_size=chunk_size, datasets=(dataset,)))
    return len(entries)


def llama_key(name):
    if ".layers." not in name:
        return None
    layer = name.split(".layers.")[1].split(".", 1)
    return "blk.%s.%s.weight" % (layer[0], CPP[layer[1]])


def main(model_dir, text, out, tokens=8192):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    ids = tok.encode(open(text, encoding="utf-8").read()).ids[:tokens]
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    chunks = [ids[s:s + CHUNK] for s in range(0, len(ids) - CHUNK + 1, CHUNK)]
    n = run(m, llama_key, chunks, out, CHUNK, os.path.basename(text))
    print("%d entries, %d chunks of %d tokens" % (n, len(chunks), CHUNK))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *[int(a) for a in sys.argv[4:]])
