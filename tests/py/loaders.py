"""The loader contract's tools: tiny seeded Hugging Face models built from
configs, compressed-tensors' own compression of the same weights (the
byte-level oracle), vLLM's scheme-selection rules restated, and a plain
from_pretrained that records missing/unexpected keys and warnings."""
import json
import logging
import os
import warnings

import torch

# Schemes: the CLI flags, and what the output must be.
SCHEMES = {
    "w8a8": {"args": [], "format": "int-quantized", "symmetric": True, "strategy": "channel",
             "acts": True, "vllm": "CompressedTensorsW8A8Int8", "min_cos": 0.999},
    "w8a8-tensor": {"args": ["--per-tensor"], "format": "int-quantized", "symmetric": True,
                    "strategy": "tensor", "acts": True, "vllm": "CompressedTensorsW8A8Int8",
                    "min_cos": 0.998},
    "asym": {"args": ["--scheme", "asym"], "format": "pack-quantized", "symmetric": False,
             "strategy": "channel", "acts": False, "vllm": "CompressedTensorsWNA16",
             "min_cos": 0.999},
    "weights-only": {"args": ["--weights-only"], "format": "pack-quantized", "symmetric": True,
                     "strategy": "channel", "acts": False, "vllm": "CompressedTensorsWNA16",
                     "min_cos": 0.999},
    "asym-tensor": {"args": ["--scheme", "asym", "--per-tensor"], "format": "pack-quantized",
                    "symmetric": False, "strategy": "tensor", "acts": False, "vllm": None,
                    "min_cos": 0.998},
}


# The compressed-tensors presets (--preset NAME), on models whose Linear
# layers divide into groups and 128x128 blocks. min_cos None: never below
# compressed-tensors' own output of the same preset on the same model.
PRESETS = {
    "W8A8": {"args": ["--preset", "W8A8"], "format": "int-quantized", "symmetric": True,
             "strategy": "channel", "acts": True, "vllm": "CompressedTensorsW8A8Int8",
             "min_cos": 0.999, "preset": "W8A8"},
    "W8A16": {"args": ["--preset", "W8A16"], "format": "pack-quantized", "symmetric": True,
              "strategy": "group", "acts": False, "vllm": "CompressedTensorsWNA16",
              "min_cos": 0.999, "preset": "W8A16"},
    "W4A16": {"args": ["--preset", "W4A16"], "format": "pack-quantized", "symmetric": True,
              "strategy": "group", "acts": False, "vllm": "CompressedTensorsWNA16",
              "min_cos": None, "preset": "W4A16"},
    "W4A16_ASYM": {"args": ["--preset", "W4A16_ASYM"], "format": "pack-quantized",
                   "symmetric": False, "strategy": "group", "acts": False,
                   "vllm": "CompressedTensorsWNA16", "min_cos": None, "preset": "W4A16_ASYM"},
    "FP8_DYNAMIC": {"args": ["--preset", "FP8_DYNAMIC"], "format": "float-quantized",
                    "symmetric": True, "strategy": "channel", "acts": True,
                    "vllm": "CompressedTensorsW8A8Fp8", "min_cos": None, "preset": "FP8_DYNAMIC"},
    "FP8_BLOCK": {"args": ["--preset", "FP8_BLOCK"], "format": "float-quantized",
                  "symmetric": True, "strategy": "block", "acts": True,
                  "vllm": "CompressedTensorsW8A8Fp8", "min_cos": None, "preset": "FP8_BLOCK"},
}


# The microscaling presets (e8m0 scales per 32 values), checked by
# test_mx.py: byte identity, config.json and loading, not vLLM's selection.
MX_PRESETS = {
    p: {"args": ["--preset", p], "format": fmt, "symmetric": True, "strategy": strategy,
        "acts": acts, "vllm": vllm, "min_cos": None, "preset": p}
    for p, fmt, strategy, acts, vllm in [
        ("MXFP4A16", "mxfp4-pack-quantized", "group", False, "CompressedTensorsW4A16Mxfp4"),
        ("MXFP4", "mxfp4-pack-quantized", "group", True, "CompressedTensorsW4A16Mxfp4"),
        ("MXFP8A16", "mxfp8-quantized", "group", False, None),
        ("MXFP8", "mxfp8-quantized", "group", True, None),
        ("NVFP4A16", "nvfp4-pack-quantized", "tensor_group", False, "CompressedTensorsW4A16Fp4")]
}


def scheme_info(scheme):
    if scheme in SCHEMES:
        return SCHEMES[scheme]
    return PRESETS[scheme] if scheme in PRESETS else MX_PRESETS[scheme]


def weight_args(s):
    """compressed-tensors' (weights, input_activations) QuantizationArgs of a scheme."""
    from compressed_tensors.quantization import QuantizationArgs, preset_name_to_scheme
    if "preset" in s:
        qs = preset_name_to_scheme(s["preset"], ["Linear"])
        return qs.weights, qs.input_activations
    weights = QuantizationArgs(num_bits=8, type="int", symmetric=s["symmetric"],
                               strategy=s["strategy"], dynamic=False)
    acts = (QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True)
            if s["acts"] else None)
    return weights, acts


def observe(w, args):
    """The min and max an observer gives calculate_qparams for each scale."""
    rows, cols = w.shape[0], w.shape[-1]
    if args.strategy == "channel":
        return w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
    if args.strategy == "group":
        v = w.reshape(rows, cols // args.group_size, args.group_size)
        return v.amin(-1), v.amax(-1)
    if args.strategy == "block":
        b0, b1 = args.block_structure
        v = w.reshape(rows // b0, b0, cols // b1, b1)
        return v.amin((1, 3)), v.amax((1, 3))
    return w.amin().reshape(1), w.amax().reshape(1)


def _seeded(build):
    torch.manual_seed(1234)
    return build()


def build_models():
    """name -> (builder of the model, loader class, dtype, shard size or None)."""
    import transformers as tf
    tiny = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=128, initializer_range=0.1,
                max_position_embeddings=64)
    wide = dict(tiny, hidden_size=256, intermediate_size=512, initializer_range=0.02)
    ragged = dict(tiny, hidden_size=256, intermediate_size=320, initializer_range=0.02)
    return {
        "llama256-f32": (lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**wide)),
                         tf.AutoModelForCausalLM, torch.float32, None),
        "llama256-bf16": (lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**wide)),
                          tf.AutoModelForCausalLM, torch.bfloat16, None),
        "llama256-sharded": (lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**wide)),
                             tf.AutoModelForCausalLM, torch.float32, "400KB"),
        "llama-ragged": (lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**ragged)),
                         tf.AutoModelForCausalLM, torch.float32, None),
        "llama-f32": (lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**tiny)),
                      tf.AutoModelForCausalLM, torch.float32, None),
        "llama-bf16": (lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**tiny)),
                       tf.AutoModelForCausalLM, torch.bfloat16, None),
        "llama-sharded": (lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**tiny)),
                          tf.AutoModelForCausalLM, torch.float32, "100KB"),
        "qwen2": (lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**tiny)),
                  tf.AutoModelForCausalLM, torch.float32, None),
        "bert": (lambda: tf.BertModel(tf.BertConfig(
                     hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, vocab_size=128, initializer_range=0.1,
                     max_position_embeddings=64), add_pooling_layer=True),
                 tf.AutoModel, torch.float32, None),
        "gpt2": (lambda: tf.GPT2LMHeadModel(tf.GPT2Config(
                     n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64,
                     initializer_range=0.1, bos_token_id=0, eos_token_id=1)),
                 tf.AutoModelForCausalLM, torch.float32, None),
        "t5": (lambda: tf.T5ForConditionalGeneration(tf.T5Config(
                   d_model=64, d_ff=128, d_kv=16, num_layers=2, num_heads=4, vocab_size=128,
                   initializer_factor=1.0)),
               tf.AutoModelForSeq2SeqLM, torch.float32, None),
        "whisper": (lambda: tf.WhisperForConditionalGeneration(tf.WhisperConfig(
                        d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                        vocab_size=128, num_mel_bins=16, max_source_positions=32,
                        max_target_positions=32, init_std=0.1, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=3, suppress_tokens=[],
                        begin_suppress_tokens=[])),
                    tf.AutoModelForSpeechSeq2Seq, torch.float32, None),
        "mixtral": (lambda: tf.MixtralForCausalLM(tf.MixtralConfig(
                        num_local_experts=4, num_experts_per_tok=2, **tiny)),
                    tf.AutoModelForCausalLM, torch.float32, None),
        # Experts of 512x256: more than one 128x128 block each.
        "mixtral256": (lambda: tf.MixtralForCausalLM(tf.MixtralConfig(
                           num_local_experts=4, num_experts_per_tok=2, **wide)),
                       tf.AutoModelForCausalLM, torch.float32, None),
        # A router that is no nn.Linear (mlp.router) and fused 3-D experts.
        "gpt-oss": (lambda: tf.GptOssForCausalLM(tf.GptOssConfig(
                        num_local_experts=4, num_experts_per_tok=2, head_dim=16,
                        layer_types=["sliding_attention", "full_attention"], sliding_window=16,
                        rope_parameters={"rope_type": "default", "rope_theta": 150000.0},
                        **tiny)),
                    tf.AutoModelForCausalLM, torch.float32, None),
        # DeepSeek-V3's shape: MLA projections (kv_a_proj_with_mqa of 160 rows:
        # a partial 128x128 block), a dense first layer, routed and shared experts.
        "deepseek-v3": (lambda: tf.DeepseekV3ForCausalLM(tf.DeepseekV3Config(
                            hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                            num_hidden_layers=2, first_k_dense_replace=1, n_routed_experts=4,
                            num_experts_per_tok=2, n_shared_experts=1, n_group=1, topk_group=1,
                            num_attention_heads=4, num_key_value_heads=4, q_lora_rank=128,
                            kv_lora_rank=128, qk_rope_head_dim=32, qk_nope_head_dim=32,
                            v_head_dim=32, vocab_size=128, max_position_embeddings=64,
                            initializer_range=0.02)),
                        tf.AutoModelForCausalLM, torch.bfloat16, None),
        "qwen3": (lambda: tf.Qwen3ForCausalLM(tf.Qwen3Config(
                      hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=128,
                      max_position_embeddings=64, initializer_range=0.02)),
                  tf.AutoModelForCausalLM, torch.bfloat16, None),
        "falcon": (lambda: tf.FalconForCausalLM(tf.FalconConfig(
                       hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       vocab_size=128, initializer_range=0.1)),
                   tf.AutoModelForCausalLM, torch.float32, None),
        # transformers 5 builds ViT's checkpoint modules under other names
        # (encoder.layer.N.output.dense -> layers.N.mlp.fc2); an MLP of 320
        # leaves ragged groups and partial blocks, kept in float.
        "vit-ragged": (lambda: tf.ViTForImageClassification(tf.ViTConfig(
                           hidden_size=128, intermediate_size=320, num_hidden_layers=2,
                           num_attention_heads=4, image_size=32, patch_size=8, num_labels=10,
                           initializer_range=0.02)),
                       tf.AutoModelForImageClassification, torch.float32, None),
    }


def save_model(name, path):
    builder, _, dtype, shard = build_models()[name]
    model = _seeded(builder).to(dtype)
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(path, **kw)
    return model


def model_inputs(name, model):
    g = torch.Generator().manual_seed(99)
    ids = torch.randint(0, 128, (2, 12), generator=g)
    if name == "whisper":
        feats = torch.randn(2, 16, 64, generator=g).to(model.dtype)
        return {"input_features": feats, "decoder_input_ids": ids[:, :6]}
    if name == "t5":
        return {"input_ids": ids, "decoder_input_ids": ids[:, :6]}
    if name.startswith("vit"):
        return {"pixel_values": torch.randn(2, 3, 32, 32, generator=g).to(model.dtype)}
    return {"input_ids": ids}


def outputs(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    t = out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state
    return t.float()


def cosine_per_row(a, b):
    """Cosine similarity of the two outputs over all positions and logits."""
    a = a.reshape(-1).double()
    b = b.reshape(-1).double()
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def plain_load(name, path):
    """from_pretrained(path) as a user writes it: (model, loading info, warnings)."""
    import transformers as tf
    _, cls, _, _ = build_models()[name]
    handler = _Collect()
    roots = [logging.getLogger("transformers"), logging.getLogger("compressed_tensors")]
    for r in roots:
        r.addHandler(handler)
    tf.logging.set_verbosity_warning()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, info = cls.from_pretrained(path, output_loading_info=True)
    finally:
        for r in roots:
            r.removeHandler(handler)
    msgs = handler.records + [str(w.message) for w in caught]
    return model.eval(), info, msgs


def built_modules(model, modules):
    """Checkpoint module -> the module transformers builds from it, by its own
    rename_source_key and the model's conversion mapping, where the model has a
    module of that name; else the name itself (fused MoE experts)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, rename_source_key
    conv = get_model_conversion_mapping(model)
    renamings = [t for t in conv if not isinstance(t, WeightConverter)]
    converters = [t for t in conv if isinstance(t, WeightConverter)]
    built = {n for n, _ in model.named_modules()}
    out = {}
    for m in modules:
        key, _ = rename_source_key(m + ".weight", renamings, converters)
        b = key[:-len(".weight")] if key.endswith(".weight") else key
        out[m] = b if b in built else m
    return out


def quantizable_linears(model):
    """Qualified names of the modules compressed-tensors targets with "Linear"."""
    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def ct_oracle(name, src, dst, scheme, ignore):
    """compressed-tensors quantizing and compressing the weights of `src` with
    `scheme` (min/max per channel or per tensor, its own calculate_qparams and
    compressor), saved to `dst` as llm-compressor saves a model."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (QuantizationConfig, QuantizationScheme,
                                                 apply_quantization_config)
    from compressed_tensors.quantization.utils import calculate_qparams
    _, cls, _, _ = build_models()[name]
    s = scheme_info(scheme)
    model = cls.from_pretrained(src).eval()
    weights, acts = weight_args(s)
    qs = QuantizationScheme(targets=["Linear"], weights=weights, input_activations=acts)
    apply_quantization_config(model, QuantizationConfig(config_groups={"group_0": qs},
                                                        ignore=list(ignore)))
    for _, m in model.named_modules():
        if not hasattr(m, "weight_scale"):
            continue
        lo, hi = observe(m.weight.data, m.quantization_scheme.weights)
        sc, zp = calculate_qparams(lo, hi, m.quantization_scheme.weights)
        m.weight_scale.data.copy_(sc.reshape(m.weight_scale.shape))
        if hasattr(m, "weight_zero_point"):
            m.weight_zero_point.data.copy_(zp.reshape(m.weight_zero_point.shape))
    comp = ModelCompressor.from_pretrained_model(model, s["format"])
    comp.compress_model(model)
    model.save_pretrained(dst)
    comp.update_config(dst)


def load_tensors(path):
    from safetensors.torch import load_file
    out = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(path, f)))
    return out


def set_ignore(path, ignore):
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"]["ignore"] = list(ignore)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def quantization_config(path):
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f).get("quantization_config")


# ---- vLLM 0.33's rules (compressed_tensors.py), restated ----

def vllm_scheme(qc):
    """The Linear scheme class vLLM 0.33 picks for each config group, or raises
    as vLLM does. Facts from vLLM 0.33's compressed-tensors config parser:
    a group's own format wins over the top-level one; int-quantized/naive/
    float-quantized with no input activations must have float weights
    (AssertionError); WNA16 = pack-quantized, channel or group strategy,
    static weights of 2-8 bits, no input activations; W8A8Int8 = an
    activation-quantized format with symmetric static 8-bit int weights per
    tensor or channel and 8-bit int activations that are static per tensor or
    dynamic per token; W8A8Fp8 = an activation-quantized format with
    symmetric static 8-bit float weights per tensor, channel or block and
    8-bit float activations, dynamic (per token or group) or static per tensor.
    Checked first: W4A16Fp4 = NVFP4 weights (4-bit float, tensor_group,
    groups of 16, symmetric) with no input activations; W4A16Mxfp4 = MXFP4
    weights (4-bit float, group, groups of 32, symmetric) whatever the
    activations (MXFP4's dynamic MX activations run unquantized). The
    compressed_tensors.py read for these two rules has no MXFP8 scheme: an
    8-bit float group weight finds none (NotImplementedError)."""
    picked = {}
    for gname, g in qc["config_groups"].items():
        fmt = g.get("format") or qc.get("format")
        w, a = g.get("weights"), g.get("input_activations")
        if fmt in ("int-quantized", "naive-quantized", "float-quantized") and a is None:
            if w["type"] != "float":
                raise AssertionError("vLLM: %s needs input_activations for int weights" % fmt)
        fp4 = w["type"] == "float" and w["num_bits"] == 4 and w["symmetric"]
        if fp4 and w["strategy"] == "tensor_group" and w["group_size"] == 16 and a is None:
            picked[gname] = "CompressedTensorsW4A16Fp4"
            continue
        if fp4 and w["strategy"] == "group" and w["group_size"] == 32:
            picked[gname] = "CompressedTensorsW4A16Mxfp4"
            continue
        if (fmt == "pack-quantized" and a is None and w["type"] == "int"
                and w["strategy"] in ("channel", "group") and not w["dynamic"]
                and 2 <= w["num_bits"] <= 8):
            picked[gname] = "CompressedTensorsWNA16"
            continue
        if (a is not None and fmt in ("int-quantized", "naive-quantized") and w["type"] == "int"
                and a["type"] == "int" and w["num_bits"] == 8 and a["num_bits"] == 8
                and w["symmetric"] and not w["dynamic"] and w["strategy"] in ("tensor", "channel")
                and ((a["strategy"] == "tensor" and not a["dynamic"])
                     or (a["strategy"] == "token" and a["dynamic"]))):
            picked[gname] = "CompressedTensorsW8A8Int8"
            continue
        if (a is not None and fmt in ("float-quantized", "naive-quantized")
                and w["type"] == "float" and a["type"] == "float" and w["num_bits"] == 8
                and a["num_bits"] == 8 and w["symmetric"] and not w["dynamic"]
                and w["strategy"] in ("tensor", "channel", "block")
                and (a["dynamic"] or a["strategy"] == "tensor")):
            picked[gname] = "CompressedTensorsW8A8Fp8"
            continue
        raise NotImplementedError("vLLM: no compressed-tensors compatible scheme was found")
    return picked


def ct_oracle_tensors(src, dst, scheme, modules, qc):
    """compressed-tensors' own compression of the same weights, tensor by
    tensor, for checkpoints whose modules transformers does not build as
    Linear layers (MoE experts, which transformers 5 fuses): for each module
    in `modules`, min/max per channel or per tensor, calculate_qparams and the
    format's compressor; every other tensor copied; config.json with the
    quantization_config block `qc`."""
    import shutil
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from compressed_tensors.quantization.utils import calculate_qparams
    from safetensors.torch import load_file, save_file
    s = scheme_info(scheme)
    weights, acts = weight_args(s)
    qs = QuantizationScheme(targets=["Linear"], weights=weights, input_activations=acts)
    comp = BaseCompressor.get_value_from_registry(s["format"])
    os.makedirs(dst, exist_ok=True)
    for f in sorted(os.listdir(src)):
        p = os.path.join(src, f)
        if not f.endswith(".safetensors"):
            if os.path.isfile(p):
                shutil.copy(p, os.path.join(dst, f))
            continue
        t = load_file(p)
        out = {}
        for k, v in t.items():
            m = k[:-len(".weight")] if k.endswith(".weight") else None
            if m not in modules:
                out[k] = v
                continue
            lo, hi = observe(v, weights)
            sc, zp = calculate_qparams(lo, hi, weights)
            local = {"weight": v, "weight_scale": sc.to(v.dtype), "weight_zero_point": zp}
            for name, tensor in comp.compress(local, qs).items():
                out[m + "." + name] = tensor.contiguous()
        save_file(out, os.path.join(dst, f), metadata={"format": "pt"})
    with open(os.path.join(dst, "config.json")) as fh:
        cfg = json.load(fh)
    cfg["quantization_config"] = qc
    with open(os.path.join(dst, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
