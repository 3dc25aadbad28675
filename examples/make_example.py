#!/usr/bin/env python3
"""Writes examples/tiny_mlp.safetensors: the seed model Linear(128,256) -> ReLU
-> Linear(256,10), plus a small Conv2d and a LayerNorm. Standard library only,
seeded, so the file is the same on every machine."""
import json
import random
import struct
import sys


def uniform(rng, n, bound):
    return [rng.uniform(-bound, bound) for _ in range(n)]


def main(path):
    rng = random.Random(20260101)
    tensors = [
        ("conv.weight", [16, 3, 3, 3], uniform(rng, 16 * 27, 27 ** -0.5)),
        ("conv.bias", [16], uniform(rng, 16, 27 ** -0.5)),
        ("fc1.weight", [256, 128], uniform(rng, 256 * 128, 128 ** -0.5)),
        ("fc1.bias", [256], uniform(rng, 256, 128 ** -0.5)),
        ("norm.weight", [256], [1.0 + rng.gauss(0, 0.02) for _ in range(256)]),
        ("norm.bias", [256], [rng.gauss(0, 0.02) for _ in range(256)]),
        ("fc2.weight", [10, 256], uniform(rng, 10 * 256, 256 ** -0.5)),
        ("fc2.bias", [10], uniform(rng, 10, 256 ** -0.5)),
    ]
    header = {"__metadata__": {"format": "pt"}}
    data = bytearray()
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/tiny_mlp.safetensors")
