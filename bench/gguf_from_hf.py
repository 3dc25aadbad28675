"""A llama-shaped model directory (mq-genmodel's) as a GGUF file for
llama-quantize: the same tensors in the same dtype under llama.cpp's names,
the hyperparameters llama.cpp reads, and a placeholder vocabulary (the
generated models have no tokenizer, which convert_hf_to_gguf.py needs).
Only for bench_floor.sh's CPU-time comparison: the weights are not permuted
as the converter permutes q and k, which changes no quantization work.

Usage: gguf_from_hf.py MODEL_DIR OUT.gguf  (llama.cpp's gguf-py on PYTHONPATH)
"""
import json
import struct
import sys
from pathlib import Path

import gguf
import numpy as np

NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
DTYPES = {"F32": (np.float32, gguf.GGMLQuantizationType.F32),
          "F16": (np.float16, gguf.GGMLQuantizationType.F16),
          "BF16": (np.uint16, gguf.GGMLQuantizationType.BF16)}


def gguf_name(name):
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".")  # model.layers.N.<module>.<proj>.weight
    return "blk.%s.%s.%s" % (parts[2], NAMES[".".join(parts[3:-1])], parts[-1])


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    for name, t in header.items():
        if name == "__metadata__":
            continue
        np_dt, gg_dt = DTYPES[t["dtype"]]
        a, b = t["data_offsets"]
        yield name, data[a:b].view(np_dt).reshape(t["shape"]), gg_dt


def main():
    src, out = Path(sys.argv[1]), sys.argv[2]
    cfg = json.loads((src / "config.json").read_text())
    w = gguf.GGUFWriter(out, "llama")
    w.add_context_length(2048)
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = cfg["vocab_size"]
    w.add_tokenizer_model("llama")
    w.add_token_list(["<t%d>" % i for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([gguf.TokenType.NORMAL] * vocab)
    for shard in sorted(src.glob("*.safetensors")):
        for name, arr, gg_dt in tensors(shard):
            w.add_tensor(gguf_name(name), arr, raw_dtype=gg_dt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
