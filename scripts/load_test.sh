#!/usr/bin/env bash
# Load test of the ranking server (tools/ranking_server, docs/serving.md): trains a small simulator model with
# the mtrank CLI (unless MODEL is given), starts ranking_server on 127.0.0.1 only, drives POST /score
# with wrk at several concurrencies for a bounded time each, prints throughput and latency
# percentiles, and stops the server.
#
#   scripts/load_test.sh [build dir]            (default build/load; configured and built if needed)
#   env: DURATION=10s  CONCURRENCY="1 4 16 64"  CANDIDATES=100  SERVER_THREADS=2  WRK_THREADS=2
#        MODEL=path/to/checkpoint.safetensors (a model trained on the simulator schema)  PORT=18080
#        ACCESS_LOG=off (the server's --access-log: off, on, or a file; "on" writes one line per request)
# wrk (Debian package `wrk`) is installed on demand.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/load}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-"1 4 16 64"}
CANDIDATES=${CANDIDATES:-100}
SERVER_THREADS=${SERVER_THREADS:-2}
WRK_THREADS=${WRK_THREADS:-2}
PORT=${PORT:-18080}
ACCESS_LOG=${ACCESS_LOG:-off}

if ! command -v wrk >/dev/null; then
  echo "load_test: installing wrk" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get install -y -qq wrk >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null; }
fi

if [[ ! -x "$build/tools/ranking_server/ranking_server" || ! -x "$build/tools/mtrank_cli/mtrank" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMTRANK_BUILD_TESTS=OFF -DMTRANK_BUILD_BENCH=OFF >/dev/null
  ninja -C "$build" ranking_server mtrank_cli
fi
work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]]; then kill -TERM "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

model=${MODEL:-}
if [[ -z "$model" ]]; then
  model=$work/model.safetensors
  "$build/tools/mtrank_cli/mtrank" train -c "$root/examples/configs/tiny_simulator.json" -o "$model" --progress none >/dev/null
fi

# One request: a user with a 12-click history and CANDIDATES candidates (ids within the tiny
# simulator's vocabularies).
python3 - "$CANDIDATES" > "$work/request.json" <<'PY'
import json, random, sys
n = int(sys.argv[1]); random.seed(1)
print(json.dumps({"request_id": "load", "user_id": 17, "scene": 0, "user_activity": 0.3, "hour_sin": 0.5, "hour_cos": -0.2,
    "click_seq": [random.randrange(500) for _ in range(12)], "click_cat_seq": [random.randrange(20) for _ in range(12)],
    "candidates": [{"item_id": random.randrange(500), "category": random.randrange(20), "author": random.randrange(40),
                    "log_item_pop": random.gauss(0, 1), "item_age": random.random()} for _ in range(n)]}))
PY
cat > "$work/post.lua" <<EOF2
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/request.json", "r"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests/s=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.errors.status))
end
EOF2

"$build/tools/ranking_server/ranking_server" --checkpoint "$model" --host 127.0.0.1 --port "$PORT" --threads "$SERVER_THREADS" \
  --access-log "$ACCESS_LOG" >/dev/null 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$work/server.log" >&2; echo "load_test: server did not start" >&2; exit 1; }
curl -sf -XPOST -H "Content-Type: application/json" "http://127.0.0.1:$PORT/score" --data-binary @"$work/request.json" >/dev/null || { echo "load_test: request rejected" >&2; exit 1; }

echo "# ranking_server: $SERVER_THREADS threads, $CANDIDATES candidates/request, access log $ACCESS_LOG, wrk -t$WRK_THREADS -d$DURATION, $(nproc) CPUs"
echo "| connections | requests/s | candidates/s | p50 ms | p99 ms | errors |"
echo "| --- | --- | --- | --- | --- | --- |"
for c in $CONCURRENCY; do
  t=$(( c < WRK_THREADS ? c : WRK_THREADS ))
  line=$(wrk -t"$t" -c"$c" -d"$DURATION" --latency -s "$work/post.lua" "http://127.0.0.1:$PORT/score" | grep '^RESULT')
  rps=$(sed 's/.*requests\/s=\([0-9.]*\).*/\1/' <<<"$line")
  p50=$(sed 's/.*p50_ms=\([0-9.]*\).*/\1/' <<<"$line")
  p99=$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$line")
  err=$(sed 's/.*errors=\([0-9]*\) non2xx=\([0-9]*\).*/\1+\2/' <<<"$line")
  printf "| %s | %s | %.0f | %s | %s | %s |\n" "$c" "$rps" "$(echo "$rps * $CANDIDATES" | bc -l)" "$p50" "$p99" "$err"
done
kill -TERM "$server_pid"; wait "$server_pid" || true
server_pid=
