#!/usr/bin/env bash
# Builds mono-quant and runs the whole test suite: each fuzz target for a
# bounded time (scripts/fuzz.sh), the suite under clang with AddressSanitizer,
# UndefinedBehaviorSanitizer and LeakSanitizer (build-asan), then the normal
# build's suite (cmocka suites, CLI, interop and real-model tests, valgrind over
# the CLI), after the shared-library and host-only builds' suites. Installs
# missing dependencies first.
# MQ_QUICK=1 runs only the normal build's suite; MQ_FUZZ_SECONDS sets the fuzz time.
set -euo pipefail
cd "$(dirname "$0")/.."
quick="${MQ_QUICK:-0}"
if [ "$quick" = 1 ]; then
  bash scripts/deps.sh --python
else
  bash scripts/deps.sh --python --hardening
fi
py=""
[ -x build/venv/bin/python ] && py="-DMQ_PYTHON=$PWD/build/venv/bin/python"

if [ "$quick" != 1 ]; then
  echo "== fuzzing (${MQ_FUZZ_SECONDS:-60} s per target) =="
  bash scripts/fuzz.sh "${MQ_FUZZ_SECONDS:-60}"

  echo "== sanitizer pass (clang, ASan + UBSan + LSan) in build-asan =="
  # A build dir configured with another compiler cannot be switched to clang.
  if [ -f build-asan/CMakeCache.txt ] &&
     ! grep -q '^CMAKE_C_COMPILER:FILEPATH=.*clang' build-asan/CMakeCache.txt; then
    rm -rf build-asan
  fi
  CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQ_SANITIZE=ON $py >/dev/null
  cmake --build build-asan -j"$(nproc)"
  # Leaks are errors. tests/lsan.supp silences only leaks whose stacks run
  # through the OpenCL stack (ICD loader, PoCL and its LLVM, CLBlast, and the
  # C++ runtime that only they use), which keeps caches until exit; every
  # frame of ours is still checked, on an idle or a loaded machine alike
  # (test_leakcheck).
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1" \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir build-asan --output-on-failure -j"$(nproc)"
fi

if [ "$quick" != 1 ]; then
  # The library as others build it: shared (only the public API exported) and
  # without OpenCL (the host path alone). Their suites, less the Python and
  # valgrind tests that the main build runs.
  echo "== shared library build (BUILD_SHARED_LIBS=ON) in build-shared =="
  cmake -S . -B build-shared -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_SHARED_LIBS=ON >/dev/null
  cmake --build build-shared -j"$(nproc)"
  ctest --test-dir build-shared --output-on-failure -j"$(nproc)" -E "^(py_|valgrind_|gpu_check)"
  echo "== host-only build (MQ_OPENCL=OFF) in build-nocl =="
  cmake -S . -B build-nocl -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQ_OPENCL=OFF >/dev/null
  cmake --build build-nocl -j"$(nproc)"
  ctest --test-dir build-nocl --output-on-failure -j"$(nproc)" -E "^(py_|valgrind_|gpu_check)"
fi

echo "== test suite (gcc, RelWithDebInfo) in build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $py >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
