"""src/hf/hfrenames_table.c is what scripts/gen_renames.py writes from the
transformers pinned in tests/py/requirements.txt: regenerating it changes
nothing. And on tiny models of families transformers renames on load (ViT
as a task model and alone, DeiT, BEiT, DINOv2 with a split converter,
Mixtral, CLIP and SigLIP vision towers, Qwen2-MoE), a run that keeps every
layer in float lists each Linear module transformers builds in `ignore`.
Needs transformers (build/venv); without it it fails, unless MQ_OFFLINE=1."""
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402

SRC = os.environ.get("MQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
try:
    import transformers
except ImportError as e:
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip("transformers missing and MQ_OFFLINE=1 (%s)" % e)
    print("FAIL: the rename table check needs transformers (tests/py/requirements.txt): %s" % e)
    sys.exit(1)

with open(os.path.join(SRC, "tests", "py", "requirements.txt")) as f:
    pinned = re.search(r"^transformers==(\S+)", f.read(), re.M).group(1)
if transformers.__version__ != pinned:
    print("FAIL: transformers %s is installed, the table is generated from the pinned %s"
          % (transformers.__version__, pinned))
    sys.exit(1)

p = subprocess.run([sys.executable, os.path.join(SRC, "scripts", "gen_renames.py")],
                   capture_output=True, text=True)
if p.returncode != 0:
    print("FAIL: gen_renames.py: exit %d: %s" % (p.returncode, p.stderr[-2000:]))
    sys.exit(1)
path = os.path.join(SRC, "src", "hf", "hfrenames_table.c")
with open(path) as f:
    committed = f.read()
if p.stdout != committed:
    diff = difflib.unified_diff(committed.splitlines(), p.stdout.splitlines(), "committed",
                                "regenerated", lineterm="", n=1)
    print("FAIL: %s differs from what scripts/gen_renames.py writes now:" % path)
    print("\n".join(list(diff)[:40]))
    sys.exit(1)


def families():
    import transformers as tf
    vit = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
               image_size=16, patch_size=8)
    lm = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
              num_key_value_heads=1, vocab_size=64)
    return {
        "vit-classifier": lambda: tf.ViTForImageClassification(tf.ViTConfig(num_labels=3, **vit)),
        "vit": lambda: tf.ViTModel(tf.ViTConfig(**vit)),
        "deit": lambda: tf.DeiTForImageClassification(tf.DeiTConfig(num_labels=3, **vit)),
        "beit": lambda: tf.BeitForImageClassification(tf.BeitConfig(num_labels=3, **vit)),
        "dinov2": lambda: tf.Dinov2Model(tf.Dinov2Config(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, use_swiglu_ffn=True,
            image_size=16, patch_size=8)),
        "clip-vision": lambda: tf.CLIPVisionModel(tf.CLIPVisionConfig(**vit)),
        "siglip-vision": lambda: tf.SiglipVisionModel(tf.SiglipVisionConfig(**vit)),
        "mixtral": lambda: tf.MixtralForCausalLM(tf.MixtralConfig(
            num_local_experts=2, num_experts_per_tok=1, **lm)),
        "qwen2-moe": lambda: tf.Qwen2MoeForCausalLM(tf.Qwen2MoeConfig(
            moe_intermediate_size=32, shared_expert_intermediate_size=64, num_experts=2,
            num_experts_per_tok=1, **lm)),
    }


def check_families():
    import torch
    failures = []
    tmp = tempfile.mkdtemp(prefix="mq-renames-", dir=os.environ.get("TMPDIR"))
    try:
        for name, build in families().items():
            torch.manual_seed(0)
            model = build()
            src, out = os.path.join(tmp, name), os.path.join(tmp, name + "-q")
            model.save_pretrained(src)
            p = subprocess.run([os.environ["MQ_CLI"], "quantize", src, "-o", out, "-q",
                                "--device", "host", "--exclude", "re:.*"],
                               capture_output=True, text=True)
            if p.returncode != 0:
                failures.append("%s: quantize: exit %d: %s" % (name, p.returncode, p.stderr))
                continue
            with open(os.path.join(out, "config.json")) as f:
                ignore = set(json.load(f)["quantization_config"]["ignore"])
            linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
            if not linears <= ignore:
                failures.append("%s: ignore lacks the built modules %s"
                                % (name, sorted(linears - ignore)[:4]))
            else:
                print("%s: every one of the %d Linear modules is in ignore" % (name, len(linears)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return failures


failed = check_families()
for f in failed:
    print("FAIL: " + f)
if failed:
    sys.exit(1)
print("renames: the table matches transformers %s" % transformers.__version__)
