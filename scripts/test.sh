#!/usr/bin/env bash
# Installs what is missing, builds (Release), runs the whole test suite, then the same tests
# under AddressSanitizer + UndefinedBehaviorSanitizer, every kernel ISA variant, and the
# install/consumer check. Usage: scripts/test.sh [--quick] (quick: Release tests only).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${MTRANK_JOBS:-$(nproc)}
# ccache keys on paths relative to the checkout, so clones on the same machine share hits.
export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=true
bash scripts/install-deps.sh

step() { printf '\n==== %s ====\n' "$*"; }

step "Release build"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$jobs"

step "Tests (Release)"
ctest --test-dir build/release --output-on-failure -j "$jobs"

[[ "${1:-}" == "--quick" ]] && exit 0

step "Tests with the ISA capped (MTRANK_ISA=avx2, then ref)"
# Every kernel family, block and model again with the lower ISA variants (and oneDNN capped alike).
for isa in avx2 ref; do
  for t in test_kernels test_nn test_blocks test_models; do
    echo "MTRANK_ISA=$isa $t"
    MTRANK_ISA=$isa "build/release/tests/$t"
  done
done

step "Install and build a consumer project against the installed tree"
rm -rf build/install build/consumer
cmake --install build/release --prefix build/install >/dev/null
cmake -S tests/install/consumer -B build/consumer -G Ninja -DCMAKE_PREFIX_PATH="$root/build/install" >/dev/null
cmake --build build/consumer -j "$jobs"
./build/consumer/consumer

step "Reliability suite: reload races, slowloris, bombs, quadratic inputs, kill -9, corrupt files (loopback)"
# The Release mtrank and ranking_server probed as docs/reliability.md describes (about 2 minutes).
python3 tests/reliability/reliability.py --build build/release

step "ASan + UBSan build and tests"
# -O1 without debug info keeps the sanitizer build fast; reports still name functions. The
# ranking server and its tests are included (three more translation units).
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1" -DMTRANK_SANITIZE=ON \
      -DMTRANK_BUILD_BENCH=OFF -DMTRANK_BUILD_EXAMPLES=OFF -DMTRANK_BUILD_TOOLS=OFF -DMTRANK_BUILD_SERVER=ON >/dev/null
cmake --build build/asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan --output-on-failure -j "$jobs"

step "ThreadSanitizer build: predictor, sessions, hot swap and the ranking server"
# The server is built (test_ranking_server builds ranking_server too); the "serve" label holds
# test_serve and test_ranking_server (the CLI smoke test needs the mtrank tool, which is off here).
cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1" -DMTRANK_TSAN=ON \
      -DMTRANK_BUILD_BENCH=OFF -DMTRANK_BUILD_EXAMPLES=OFF -DMTRANK_BUILD_TOOLS=OFF -DMTRANK_BUILD_SERVER=ON >/dev/null
cmake --build build/tsan -j "$jobs" --target test_serve test_ranking_server
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build/tsan --output-on-failure -L serve

step "libFuzzer: ten targets (safetensors, configs, CSV, requests, checkpoints, readers, npy, convert map, config sections, parse cost), 20 s each, fixed seed"
FUZZ_SECONDS=${FUZZ_SECONDS:-20} FUZZ_JOBS=$jobs bash scripts/fuzz.sh

step "All stages passed: Release tests, ISA-capped reruns, install + consumer, reliability, ASan+UBSan, TSan, fuzz"
# set -e stops at the first failing stage, so reaching this line means all seven passed.
echo "stages: 7 passed, 0 failed"
