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


def main(model_dir, text, out, tokens=8192):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    ids = tok.encode(open(text, encoding="utf-8").read()).ids[:tokens]
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    sums, counts, hooks = {}, {}, []
    for name, mod in m.named_modules():
        if not isinstance(mod, torch.nn.Linear) or ".layers." not in name:
            continue
        layer = name.split(".layers.")[1].split(".", 1)
        key = "blk.%s.%s.weight" % (layer[0], CPP[layer[1]])
        sums[key] = torch.zeros(mod.in_features, dtype=torch.float64)
        counts[key] = 0

        def hook(_m, args, key=key):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            sums[key] += (x * x).sum(0)
            counts[key] += x.shape[0]
        hooks.append(mod.register_forward_pre_hook(hook))
    chunks = 0
    with torch.no_grad():
        for s in range(0, len(ids) - CHUNK + 1, CHUNK):
            m(torch.tensor([ids[s:s + CHUNK]]))
            chunks += 1
    entries = {k: ([sums[k].float().tolist()], [float(counts[k])]) for k in sums}
    imatrixfile.write(out, imatrixfile.gguf_bytes(entries, chunk_count=chunks, chunk_size=CHUNK,
                                                  datasets=(os.path.basename(text),)))
    print("%d entries, %d chunks of %d tokens" % (len(entries), chunks, CHUNK))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *[int(a) for a in sys.argv[4:]])
