#!/usr/bin/env bash
# Load benchmark (not a test): wrk against GET /tasks/{id}/progress and /tasks/{id}/result of a finished
# task, then /progress of a running one, on loopback, 30 s at 256 connections each, with a user's API key
# (keys required, as the .deb runs), against a release build of sdbox. Prints requests/s and latency
# (wrk adds "Non-2xx" and "Socket errors" lines only when there were any).
# Usage: scripts/bench-load.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
connections="${2:-256}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null || { echo "wrk is needed (apt install wrk)" >&2; exit 1; }; }
swift build -c release --product sdbox >/dev/null
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key=$(.build/release/sdbox keys add --data-dir "$data" --user load --role user | awk '{print $NF}')
# The reference worker at 0.4 s a step at 512x512: the running task below lasts longer than a run of wrk.
printf 'workers:\n  reference:\n    stepMilliseconds: 400\n    minimumStepMilliseconds: 1\n' > "$data/sdbox.yaml"
.build/release/sdbox serve --port "$port" --data-dir "$data" --config "$data/sdbox.yaml" --require-api-keys --log-level warning > "$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
task=$(curl -fsS -X POST "http://127.0.0.1:$port/txt2img" -H "Authorization: Bearer $key" -d '{"prompt":"load","steps":2,"width":64,"height":64}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["taskId"])')
echo "sdbox load: ${seconds}s, $connections connections, wrk -t2, task $task, $(nproc) cores"
load() {
    echo "--- GET /tasks/{id}/$2 ($1)"
    wrk -t2 -c"$connections" -d"${seconds}s" --latency -H "Authorization: Bearer $key" "http://127.0.0.1:$port/tasks/$3/$2" | grep -E "Requests/sec|Latency|99%|50%|Non-2xx|Socket errors|requests in"
}
load "finished task" progress "$task"
load "finished task" result "$task"
running=$(curl -fsS -X POST "http://127.0.0.1:$port/txt2img" -H "Authorization: Bearer $key" -H "Request-Type: async" -d '{"prompt":"load","steps":150,"width":512,"height":512}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["taskId"])')
until curl -fsS -H "Authorization: Bearer $key" "http://127.0.0.1:$port/tasks/$running/progress" | grep -q '"status":"running"'; do sleep 0.1; done
load "running task" progress "$running"
curl -fsS -H "Authorization: Bearer $key" "http://127.0.0.1:$port/tasks/$running/progress" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print("the running task after it:", d["status"], "step", d["state"]["sampling_step"], "of", d["state"]["sampling_steps"])'
