#!/usr/bin/env bash
# Training throughput of `mtrank train` with 1 and 2 threads, on an idle host and with one busy
# process competing for the cores, under the default passive OpenMP wait policy and under
# OMP_WAIT_POLICY=active (the runtime's spinning, mtrank's behaviour before passive became the
# default). Prints one line per cell: the median and all rows/s of `reps` runs (the epoch
# record's rows_per_second: training steps only, no data generation or evaluation).
#   scripts/bench_train_threads.sh [mtrank binary] [reps]
# Keep it short on shared machines: each run is one epoch of ~80k rows.
set -euo pipefail
mtrank=${1:-build/release/tools/mtrank_cli/mtrank}
reps=${2:-3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"; [[ -n "${busy:-}" ]] && kill "$busy" 2>/dev/null || true' EXIT
cat > "$dir/config.json" <<'JSON'
{"seed": 7,
 "data": {"source": "simulator", "impressions": 100000, "users": 2000, "items": 5000, "seed": 3, "test_fraction": 0.2},
 "model": {"type": "mmoe", "num_experts": 4, "expert": {"layers": [128, 64]}, "tower": {"hidden": [32]}},
 "optimizer": {"type": "adam", "lr": 0.001},
 "trainer": {"batch_size": 1024, "epochs": 1}}
JSON
run() {  # policy threads -> rows/s of one run
  local env=()
  [[ $1 == active ]] && env=(OMP_WAIT_POLICY=active)
  env "${env[@]}" "$mtrank" train -c "$dir/config.json" -o "$dir/m.safetensors" --force --threads "$2" --progress none 2>/dev/null |
    python3 -c 'import json,sys; print(round([json.loads(l) for l in sys.stdin][0]["rows_per_second"]))'
}
cell() {  # load policy threads
  local xs=() x
  for ((i = 0; i < reps; ++i)); do x=$(run "$2" "$3"); xs+=("$x"); done
  local med
  med=$(printf '%s\n' "${xs[@]}" | sort -n | sed -n "$(((reps + 1) / 2))p")
  printf '%-5s %-7s threads=%s median=%s runs=%s\n' "$1" "$2" "$3" "$med" "$(IFS=,; echo "${xs[*]}")"
}
for policy in passive active; do
  for t in 1 2; do cell idle "$policy" "$t"; done
done
timeout 600 sh -c 'while :; do :; done' &
busy=$!
for policy in passive active; do
  for t in 1 2; do cell busy "$policy" "$t"; done
done
kill "$busy"
busy=
