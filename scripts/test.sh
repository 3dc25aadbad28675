#!/usr/bin/env bash
# Builds mono-quant and runs the whole test suite (cmocka suites, CLI and
# interop tests). Installs missing dependencies first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --python
py=""
[ -x build/venv/bin/python ] && py="-DMQ_PYTHON=$PWD/build/venv/bin/python"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $py >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
