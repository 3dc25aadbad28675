#!/usr/bin/env bash
# Installs dependencies, builds mono-quant, and quantizes the bundled example
# model (Linear 128->256, ReLU, Linear 256->10, a Conv2d and a LayerNorm).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target monoquant_cli
build/monoquant quantize examples/tiny_mlp.safetensors -o build/tiny_mlp-int8.safetensors \
  --report build/tiny_mlp-int8.report.json
