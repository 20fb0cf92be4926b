#!/usr/bin/env bash
# ctest "cli: every example config trains": `mtrank train` (one epoch, full data section), `eval`
# and `predict` on every examples/configs/*_simulator.json; prints the time and click AUC of each.
#   cli_configs.sh <mtrank binary> <examples/configs dir> <work dir>
set -euo pipefail
mtrank=$1 configs=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "cli_configs: $*" >&2; exit 1; }
n=0
for config in "$configs"/*_simulator.json; do
  name=$(basename "$config" .json)
  start=$(date +%s.%N)
  "$mtrank" train -c "$config" -o "$dir/$name.safetensors" --epochs 1 --progress none > "$dir/$name.train.jsonl" 2> "$dir/$name.err" \
    || { cat "$dir/$name.err" >&2; fail "$name: train failed"; }
  "$mtrank" eval -m "$dir/$name.safetensors" > "$dir/$name.eval.jsonl" || fail "$name: eval failed"
  "$mtrank" predict -m "$dir/$name.safetensors" -o "$dir/$name.csv" 2>/dev/null || fail "$name: predict failed"
  end=$(date +%s.%N)
  python3 - "$dir" "$name" "$start" "$end" <<'PY'
import csv, json, sys
d, name, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
ev = [r for r in (json.loads(l) for l in open(f"{d}/{name}.eval.jsonl")) if r.get("scene") is None]
tasks = [r["task"] for r in ev]
header = next(csv.reader(open(f"{d}/{name}.csv")))
assert header == ["row"] + tasks + ["fused"], (name, header, tasks)
click = ev[0]
assert click["task"] == "click" and click["auc"] is not None and click["auc"] > 0.6, (name, click)
print(f"cli_configs: {name}: train + eval + predict {end - start:.1f} s, tasks {tasks}, click AUC {click['auc']:.3f}")
PY
  n=$((n + 1))
done
[[ $n -ge 15 ]] || fail "expected at least 15 example configs, found $n"
echo "cli_configs: ok ($n configs)"
