#!/usr/bin/env bash
# Builds mtrank in Release with the benchmarks and runs the end-to-end comparison against
# PyTorch eager (bench/compare_torch.py). Usage:
#   scripts/bench.sh [--quick] [--build-dir DIR] [-- extra compare_torch.py arguments]
# Writes the full measurement record to $BUILD_DIR/compare_torch.json.
# Needs: libbenchmark-dev, python3-torch, and a fast BLAS for torch
# (apt-get install -y libopenblas0-openmp; the script refuses to compare otherwise).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build/bench"
quick=()
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=(--quick); shift ;;
    --build-dir) build="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "scripts/bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
jobs="${JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMTRANK_BUILD_BENCH=ON \
      -DMTRANK_BUILD_TESTS=OFF -DMTRANK_BUILD_EXAMPLES=OFF >/dev/null
ninja -C "$build" -j"$jobs" bench_models bench_machine_limits
if [[ ! -x "$build/bench/bench_models" ]]; then
  echo "scripts/bench.sh: bench_models was not built (is libbenchmark-dev installed?)" >&2
  exit 1
fi
echo "lscpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exec /usr/bin/python3 "$root/bench/compare_torch.py" --bench-dir "$build/bench" "${quick[@]}" \
     --json "$build/compare_torch.json" "${extra[@]}"
