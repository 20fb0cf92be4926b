#!/usr/bin/env bash
# ctest "cli: train eval predict inspect convert export": runs the mtrank tool end to end on a tiny
# simulator config (with a validation split: data.valid_fraction).
#   cli_smoke.sh <mtrank binary> <config> <work dir>
set -euo pipefail
mtrank=$1 config=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "cli_smoke: $*" >&2; exit 1; }

"$mtrank" --help > "$dir/help.txt"
grep -q train "$dir/help.txt" || fail "--help does not list train"
for c in train eval predict inspect convert export; do "$mtrank" $c --help >/dev/null || fail "$c --help failed"; done
set +e
"$mtrank" >/dev/null 2>&1; [[ $? == 2 ]] || fail "no subcommand: expected exit code 2"
"$mtrank" train --bogus >/dev/null 2>&1; [[ $? == 2 ]] || fail "unknown option: expected exit code 2"
"$mtrank" inspect "$config" >/dev/null 2>"$dir/err.txt"; [[ $? == 1 ]] || fail "inspect of a non-checkpoint: expected exit code 1"
grep -q "mtrank: error:" "$dir/err.txt" || fail "runtime error without message"
set -e

"$mtrank" train -c "$config" -o "$dir/model.safetensors" --last "$dir/last.safetensors" --metrics "$dir/metrics.jsonl" \
  --epochs 3 --progress none > "$dir/train.jsonl"
[[ -s "$dir/model.safetensors" && -s "$dir/last.safetensors" ]] || fail "no checkpoint"
grep -q '"auc"' "$dir/train.jsonl" || fail "train printed no metrics"
[[ -s "$dir/metrics.jsonl" ]] || fail "no metrics file"
cmp -s "$dir/train.jsonl" "$dir/metrics.jsonl" || fail "stdout and --metrics differ"
# Epoch records on the validation split, then one test record with the best epoch's weights.
python3 - "$dir/metrics.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["record"] for r in recs] == ["epoch"] * 3 + ["test"], recs
assert all(list(r.keys()) == list(recs[0].keys()) for r in recs), "records differ in keys"
assert all(r["split"] == "valid" and r["tasks"]["click"]["count"] == 1500 for r in recs[:3]), recs
best = max(recs[:3], key=lambda r: r["score"])
test = recs[3]
assert test["split"] == "test" and test["epoch"] == best["epoch"] == recs[2]["best_epoch"] and test["best"], test
assert test["tasks"]["click"]["count"] == 5000 and len(test["scenes"]) == 2, test
PY
# valid_fraction is deterministic: a second run gives the same records (but the speed).
"$mtrank" train -c "$config" -o "$dir/model2.safetensors" --epochs 3 --progress none > "$dir/train2.jsonl"
python3 - "$dir/train.jsonl" "$dir/train2.jsonl" <<'PY'
import json, sys
a, b = ([{k: v for k, v in json.loads(l).items() if k != "rows_per_second"} for l in open(p)] for p in sys.argv[1:])
assert a == b, "two runs of the same config differ"
PY
"$mtrank" train -c "$config" -o "$dir/model3.safetensors" --last "$dir/model3.safetensors" >/dev/null 2>"$dir/err.txt" \
  && fail "--last equal to -o: expected an error"
# An existing checkpoint is never replaced silently: refused (file untouched) without --resume or --force.
cp "$dir/model.safetensors" "$dir/model.before"
"$mtrank" train -c "$config" -o "$dir/model.safetensors" --epochs 1 --progress none >/dev/null 2>"$dir/err.txt" \
  && fail "train over an existing -o without --force: expected an error"
grep -q "exists: to continue that training pass --resume" "$dir/err.txt" || fail "no --resume/--force hint: $(cat "$dir/err.txt")"
cmp -s "$dir/model.safetensors" "$dir/model.before" || fail "a refused train changed the existing checkpoint"
# --force starts over; temporary files of a dead writer are removed first, a live writer's are kept.
touch "$dir/.model2.safetensors.tmp.999999999.0" "$dir/.model2.safetensors.tmp.$$.0"
"$mtrank" train -c "$config" -o "$dir/model2.safetensors" --epochs 1 --force --progress none >/dev/null 2>"$dir/err.txt" \
  || fail "train --force failed: $(cat "$dir/err.txt")"
[[ ! -e "$dir/.model2.safetensors.tmp.999999999.0" ]] || fail "a dead writer's temporary file was not removed"
[[ -e "$dir/.model2.safetensors.tmp.$$.0" ]] || fail "a live process's temporary file was removed"
grep -q "removed .*tmp.999999999.0" "$dir/err.txt" || fail "the removal was not reported"
rm -f "$dir/.model2.safetensors.tmp.$$.0"
# Without a validation split: said on stderr, the last epoch is the model.
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); del c['data']['valid_fraction']; json.dump(c, open(sys.argv[2],'w'))" \
  "$config" "$dir/novalid.json"
"$mtrank" train -c "$dir/novalid.json" -o "$dir/novalid.safetensors" --epochs 1 --progress none >/dev/null 2>"$dir/err.txt"
grep -q "no validation split" "$dir/err.txt" || fail "no warning without a validation split"

"$mtrank" eval -m "$dir/model.safetensors" > "$dir/eval.jsonl"
[[ $(wc -l < "$dir/eval.jsonl") == 9 ]] || fail "eval: expected one line per task, then per task and scene (2 scenes)"
python3 - "$dir/eval.jsonl" "$dir/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["task"] for r in rows[:3]] == ["click", "interaction", "long_dwell"], rows
assert [r["scene"] for r in rows] == [None] * 3 + [0] * 3 + [1] * 3, rows
click = rows[0]
# A few epochs on the simulator learn the click task well above chance.
assert click["auc"] is not None and click["auc"] > 0.6, click
assert 0 < click["log_loss"] < 1, click
assert sum(r["count"] for r in rows if r["task"] == "click" and r["scene"] is not None) == click["count"]
# eval of the checkpoint reproduces the trainer's final test record (the same weights).
test = [json.loads(l) for l in open(sys.argv[2])][-1]
assert abs(test["tasks"]["click"]["auc"] - click["auc"]) < 1e-5, (test["tasks"]["click"], click)
assert abs(test["scenes"][1]["tasks"]["click"]["auc"] - rows[6]["auc"]) < 1e-5
PY
"$mtrank" eval -m "$dir/model.safetensors" --split valid > "$dir/eval_valid.jsonl"
head -1 "$dir/eval_valid.jsonl" | grep -q '"count":1500' || fail "eval --split valid: expected 1500 rows"

"$mtrank" predict -m "$dir/model.safetensors" -o "$dir/scores.csv"
head -1 "$dir/scores.csv" | grep -q "^row,click,interaction,long_dwell,fused$" || fail "predict: bad CSV header"
[[ $(wc -l < "$dir/scores.csv") == 5001 ]] || fail "predict: expected 5000 rows + header"
"$mtrank" predict -m "$dir/model.safetensors" -o "$dir/scores.npy"
[[ -s "$dir/scores.npy" ]] || fail "predict: no npy"

# export: a weights-only serving file that predicts exactly like the training checkpoint.
"$mtrank" export -m "$dir/model.safetensors" -o "$dir/serving.safetensors" 2>"$dir/err.txt"
grep -q "optimiser tensors" "$dir/err.txt" || fail "export: no summary"
"$mtrank" predict -m "$dir/serving.safetensors" -o "$dir/scores_serving.csv"
cmp -s "$dir/scores.csv" "$dir/scores_serving.csv" || fail "export: the serving file predicts differently"
"$mtrank" inspect --json "$dir/serving.safetensors" > "$dir/inspect_serving.json"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['optimizer_state_count'] == 0; assert j['metadata']['mtrank.kind'] == 'serving'; assert 'mtrank.train_state' not in j['metadata']" "$dir/inspect_serving.json"
[[ $(stat -c %s "$dir/serving.safetensors") -lt $(stat -c %s "$dir/model.safetensors") ]] || fail "export: not smaller"

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
