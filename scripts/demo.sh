#!/usr/bin/env bash
# Installs what is missing, builds mtrank in Release and runs the demo: a multi-task model
# trained on the built-in feed simulator, per-task AUC / GAUC / log loss next to the oracle.
# Extra arguments go to the demo (e.g. --model ple --epochs 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target mtrank_demo
./build/release/examples/mtrank_demo "$@"
