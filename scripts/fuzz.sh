#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (ASan + UBSan, separate build dir) and runs each
# for a bounded time, starting from the seed corpora in fuzz/corpus/<target>/ (read only; new
# inputs go to the build dir). A crash leaves its input in $build/artifacts/ and fails the script;
# turn it into a unit test (tests/io, tests/data, tests/models or tests/serve).
#
#   scripts/fuzz.sh [target ...]          (default: every target, the list below and in fuzz/CMakeLists.txt)
#   env: FUZZ_SECONDS=60 (per target)  FUZZ_BUILD=build/fuzz  FUZZ_JOBS=2 (ninja)  FUZZ_RSS_MB=2048
#        FUZZ_SEED=1 (fixed, so a CI run replays the same input sequence; 0 = random)
#        MTRANK_FUZZ_VERBOSE=1 (targets print the errors they catch; parse_cost its timings)
# Targets (fuzz/fuzz_<name>.cpp says what each reaches): safetensors, config, csv, request,
# checkpoint (from_checkpoint / export / resume), readers (data/readers.hpp, read_csv), npy,
# convert_map (mtrank convert's name map), config_sections (serving / optimizer / trainer),
# parse_cost (super-linear parse time of request / config / safetensors header / CSV up to 1 MiB).
# Seeds that the library writes (checkpoints, npy, ...) come from fuzz/make_seeds.cpp:
#   ninja -C build/fuzz fuzz_make_seeds && build/fuzz/fuzz/fuzz_make_seeds fuzz/corpus
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD:-$root/build/fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=("$@")
((${#targets[@]})) || targets=(safetensors config csv request checkpoint readers npy convert_map config_sections parse_cost)

if [[ ! -f "$build/build.ninja" ]]; then
  CXX=${CXX_FUZZ:-clang++} cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMTRANK_BUILD_FUZZ=ON -DMTRANK_SANITIZE=ON -DMTRANK_BUILD_TESTS=OFF -DMTRANK_BUILD_EXAMPLES=OFF \
    -DMTRANK_BUILD_BENCH=OFF -DMTRANK_BUILD_TOOLS=OFF -DMTRANK_BUILD_SERVER=OFF \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
fi
ninja -C "$build" -j"${FUZZ_JOBS:-2}" "${targets[@]/#/fuzz_}"

mkdir -p "$build/artifacts"
status=0
for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  mkdir -p "$corpus"
  echo "fuzz: $t for ${seconds}s" >&2
  # UBSan findings abort (MTRANK_SANITIZE uses -fno-sanitize-recover=undefined).
  if ! ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$build/fuzz/fuzz_$t" "$corpus" "$root/fuzz/corpus/$t" \
      -max_total_time="$seconds" -seed="${FUZZ_SEED:-1}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -timeout=10 -max_len=65536 \
      -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1 2>"$build/$t.log"; then
    status=1
    echo "fuzz: $t FAILED; see $build/$t.log and $build/artifacts/" >&2
    grep -E "ERROR|SUMMARY|runtime error" "$build/$t.log" | head -5 >&2 || true
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/$t.log" | sed "s/^/fuzz: $t /" >&2 || true
  fi
done
exit $status
