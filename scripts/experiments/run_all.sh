#!/usr/bin/env bash
# Runs every experiment of docs/results.md in sequence and writes each program's output to
# $OUT (default build/results/). Builds the example trainers in Release first.
#   scripts/experiments/run_all.sh [synthetic|simulator|scenes|sweep|real ...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build/release}
OUT=${OUT:-build/results}
mkdir -p "$OUT"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMTRANK_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target train_synthetic train_simulator train_adult train_samples mtrank_demo
X="$BUILD/examples"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(synthetic simulator scenes sweep real)
for part in "${parts[@]}"; do
  case "$part" in
    synthetic)
      "$X/train_synthetic" --verbose 0 | tee "$OUT/synthetic_paper_text.txt"
      "$X/train_synthetic" --alpha-std 1 --beta-std 1 --epochs 60 --verbose 0 | tee "$OUT/synthetic_nonlinear.txt" ;;
    simulator)
      "$X/train_simulator" --mode models | tee "$OUT/simulator_models.txt" ;;
    scenes)
      "$X/train_simulator" --mode scenes --models mmoe,multi_domain --dot 1 | tee "$OUT/simulator_scenes.txt" ;;
    sweep)
      S=("$X/train_simulator" --mode sweep --models mmoe --dot 1)
      { "${S[@]}" --optimizer adam:0.005
        "${S[@]}" --emb-dim 16
        "${S[@]}" --impressions 1000000 --epochs 2
        "${S[@]}" --epochs 2
        "${S[@]}" --impressions 2000000 --epochs 1
        "${S[@]}" --impressions 1000000 --epochs 2 --emb-dim 16; } | tee "$OUT/simulator_sweep.txt" ;;
    real)
      "$X/train_adult" | tee "$OUT/adult.txt"
      "$X/train_samples" | tee "$OUT/samples.txt" ;;
    *) echo "unknown part '$part'" >&2; exit 2 ;;
  esac
done
