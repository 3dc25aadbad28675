#!/usr/bin/env python3
"""Quantized sources against the float model they stand for: `monoquant
quantize` of compressed-tensors (W4A16, FP8_DYNAMIC) and gpt-oss MXFP4 sources beside
the same run on the float model, in paired alternating runs on the host path
(medians of CPU time, wall time and peak RSS; the outputs must be the same
bytes). The fixtures are generated seeded Llama and gpt-oss models in BF16
(torch, transformers and safetensors; the MXFP4 encoder of
tests/py/test_mxfp4_source.py).

usage: bench/bench_sources.py [--build build] [--work DIR] [--runs 3]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def timed(cmd):
    """(CPU seconds, wall seconds, peak RSS MiB) of one run, from /usr/bin/time
    (a child's own ru_maxrss would count the Python it was forked from)."""
    p = subprocess.run(["/usr/bin/time", "-f", "%U %S %e %M"] + cmd, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        sys.exit("failed: %s: %s" % (" ".join(cmd), p.stderr))
    u, s, e, m = p.stderr.strip().splitlines()[-1].split()
    return float(u) + float(s), float(e), int(m) / 1024.0


def same_tensors(a, b):
    from safetensors.torch import load_file
    ta, tb = load_file(a), load_file(b)
    return sorted(ta) == sorted(tb) and all(
        ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape and
        ta[k].contiguous().view(-1).view(__import__("torch").uint8).equal(
            tb[k].contiguous().view(-1).view(__import__("torch").uint8)) for k in ta)


def make_fixtures(cli, work):
    import torch
    import transformers as tf
    import test_mxfp4_source as mx
    torch.manual_seed(0)
    llama = os.path.join(work, "llama")
    tf.LlamaForCausalLM(tf.LlamaConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=6, num_attention_heads=8,
        num_key_value_heads=8, vocab_size=1024, max_position_embeddings=64)).to(
        torch.bfloat16).save_pretrained(llama)
    ct = os.path.join(work, "llama-w4a16")
    subprocess.run([cli, "quantize", llama, "-o", ct, "--preset", "W4A16", "-q", "--device",
                    "host"], check=True)
    ct_float = os.path.join(work, "llama-w4a16-float")
    subprocess.run([cli, "dequantize", ct, "-o", ct_float], check=True,
                   stdout=subprocess.DEVNULL)
    # FP8 per channel (BF16 scales): read as FP8 blocks, dequantized by the back end.
    fp8 = os.path.join(work, "llama-fp8")
    subprocess.run([cli, "quantize", llama, "-o", fp8, "--preset", "FP8_DYNAMIC", "-q",
                    "--device", "host"], check=True)
    fp8_float = os.path.join(work, "llama-fp8-float")
    subprocess.run([cli, "dequantize", fp8, "-o", fp8_float], check=True,
                   stdout=subprocess.DEVNULL)
    # gpt-oss: 8 experts of 1024 x 2048 (and 1024 x 1024) per layer.
    gdir = os.path.join(work, "gptoss")
    os.makedirs(gdir)
    import loaders
    cfg = tf.GptOssConfig(hidden_size=1024, intermediate_size=1024, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                          num_local_experts=8, num_experts_per_tok=2, vocab_size=1024,
                          layer_types=["sliding_attention", "full_attention"] * 2,
                          sliding_window=16, max_position_embeddings=64,
                          rope_parameters={"rope_type": "default", "rope_theta": 150000.0})
    mx_build = lambda: tf.GptOssForCausalLM(cfg)  # noqa: E731
    orig = {"gpt-oss": (mx_build, None, None, None)}
    real = loaders.build_models
    loaders.build_models = lambda: orig
    mx.check = lambda cond, what: None  # the test's count of its tiny model's experts
    try:
        flt, src, _ = mx.make_source(gdir)
    finally:
        loaders.build_models = real
    return [("compressed-tensors W4A16 -> W8A8", ct, ct_float, "W8A8"),
            ("compressed-tensors FP8_DYNAMIC -> W4A16", fp8, fp8_float, "W4A16"),
            ("gpt-oss MXFP4 -> W4A16", src, flt, "W4A16")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--work")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    cli = os.path.abspath(os.path.join(a.build, "monoquant"))
    os.environ["MQ_CLI"] = cli
    work = a.work or tempfile.mkdtemp(prefix="mq-bench-sources-")
    try:
        for label, src, flt, preset in make_fixtures(cli, work):
            res = {"source": [], "float": []}
            for _ in range(a.runs):
                for kind, d in (("source", src), ("float", flt)):
                    out = os.path.join(work, "out-" + kind)
                    shutil.rmtree(out, ignore_errors=True)
                    res[kind].append(timed([cli, "quantize", d, "-o", out, "--preset", preset,
                                            "-q", "--device", "host"]))
            same = same_tensors(os.path.join(work, "out-source", "model.safetensors"),
                                os.path.join(work, "out-float", "model.safetensors"))
            print("%s (output identical: %s)" % (label, same))
            for kind, d in (("source", src), ("float", flt)):
                cpu, wall, rss = (statistics.median(r[i] for r in res[kind]) for i in range(3))
                print("  %-6s %7.1f MB  cpu %.2f s  wall %.2f s  peak RSS %.0f MiB" %
                      (kind, dir_bytes(d) / 1e6, cpu, wall, rss))
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
