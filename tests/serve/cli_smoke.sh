#!/usr/bin/env bash
# ctest "cli: train eval predict inspect": runs the mtrank tool end to end on a tiny simulator config.
#   cli_smoke.sh <mtrank binary> <config> <work dir>
set -euo pipefail
mtrank=$1 config=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "cli_smoke: $*" >&2; exit 1; }

"$mtrank" --help > "$dir/help.txt"
grep -q train "$dir/help.txt" || fail "--help does not list train"
for c in train eval predict inspect convert; do "$mtrank" $c --help >/dev/null || fail "$c --help failed"; done
set +e
"$mtrank" >/dev/null 2>&1; [[ $? == 2 ]] || fail "no subcommand: expected exit code 2"
"$mtrank" train --bogus >/dev/null 2>&1; [[ $? == 2 ]] || fail "unknown option: expected exit code 2"
"$mtrank" inspect "$config" >/dev/null 2>"$dir/err.txt"; [[ $? == 1 ]] || fail "inspect of a non-checkpoint: expected exit code 1"
grep -q "mtrank: error:" "$dir/err.txt" || fail "runtime error without message"
set -e

"$mtrank" train -c "$config" -o "$dir/model.safetensors" --metrics "$dir/metrics.jsonl" --progress none > "$dir/train.jsonl"
[[ -s "$dir/model.safetensors" ]] || fail "no checkpoint"
grep -q '"auc"' "$dir/train.jsonl" || fail "train printed no metrics"
[[ -s "$dir/metrics.jsonl" ]] || fail "no metrics file"

"$mtrank" eval -m "$dir/model.safetensors" > "$dir/eval.jsonl"
[[ $(wc -l < "$dir/eval.jsonl") == 3 ]] || fail "eval: expected one line per task"
python3 - "$dir/eval.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["task"] for r in rows] == ["click", "interaction", "long_dwell"], rows
click = rows[0]
# One epoch on the simulator learns the click task well above chance.
assert click["auc"] is not None and click["auc"] > 0.6, click
assert 0 < click["log_loss"] < 1, click
PY

"$mtrank" predict -m "$dir/model.safetensors" -o "$dir/scores.csv"
head -1 "$dir/scores.csv" | grep -q "^row,click,interaction,long_dwell,fused$" || fail "predict: bad CSV header"
[[ $(wc -l < "$dir/scores.csv") == 5001 ]] || fail "predict: expected 5000 rows + header"
"$mtrank" predict -m "$dir/model.safetensors" -o "$dir/scores.npy"
[[ -s "$dir/scores.npy" ]] || fail "predict: no npy"

"$mtrank" inspect "$dir/model.safetensors" > "$dir/inspect.txt"
grep -q "experts.0.layers.0.weight" "$dir/inspect.txt" || fail "inspect: tensor list"
"$mtrank" inspect --json "$dir/model.safetensors" > "$dir/inspect.json"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['parameter_count'] > 1000; assert j['metadata']['mtrank.config']['model']['type'] == 'mmoe'" "$dir/inspect.json"
# convert: a PyTorch-style state_dict (renamed tensor, an extra integer buffer, no optimiser
# state) back into a checkpoint that predicts exactly like the original.
python3 - "$dir" <<'PY'
import json, struct, sys
d = sys.argv[1]
raw = open(f"{d}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n]); data = raw[8 + n:]
json.dump(json.loads(header["__metadata__"]["mtrank.config"]), open(f"{d}/config.json", "w"))
out_h, buf = {}, b""
for name, e in header.items():
    if name == "__metadata__" or name.startswith("__optim__."): continue
    b, e2 = e["data_offsets"]
    new = "tower_click.0.weight" if name == "towers.0.layers.0.weight" else name
    out_h[new] = {"dtype": e["dtype"], "shape": e["shape"], "data_offsets": [len(buf), len(buf) + e2 - b]}
    buf += data[b:e2]
out_h["extra.num_batches_tracked"] = {"dtype": "I64", "shape": [], "data_offsets": [len(buf), len(buf) + 8]}
buf += struct.pack("<q", 3)
h = json.dumps(out_h).encode(); h += b" " * ((8 - len(h) % 8) % 8)
open(f"{d}/torch.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + buf)
json.dump({"rename": {"tower_click.0.weight": "towers.0.layers.0.weight"}, "ignore": ["extra."]}, open(f"{d}/map.json", "w"))
PY
set +e
"$mtrank" convert --from "$dir/torch.safetensors" -c "$dir/config.json" -o "$dir/bad.safetensors" 2>"$dir/err.txt"
[[ $? == 1 ]] && grep -q "tower_click.0.weight\|towers.0.layers.0.weight" "$dir/err.txt" || fail "convert without map: expected an error naming the tensor"
set -e
"$mtrank" convert --from "$dir/torch.safetensors" -c "$dir/config.json" --map "$dir/map.json" -o "$dir/converted.safetensors"
"$mtrank" predict -m "$dir/converted.safetensors" -o "$dir/scores2.csv"
cmp -s "$dir/scores.csv" "$dir/scores2.csv" || fail "convert: converted checkpoint predicts differently"
echo "cli_smoke: ok"
