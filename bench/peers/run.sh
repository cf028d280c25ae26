#!/usr/bin/env bash
# lai and three peers in front of the same fakes, one bench run each (bench/README.md,
# "Peers side by side"). The peers are installed beforehand in $PEERS (default
# /tmp/peers, outside the repository) as the README says; nothing of theirs is kept here
# but LiteLLM's config file. Everything listens on 127.0.0.1 (Portkey's gateway on all
# interfaces: it has no host option) and is stopped at the end.
#
#   bash bench/peers/run.sh                      # the bench's default plan, ~8 minutes
#   bash bench/peers/run.sh --requests 500 --rounds 3 --seconds 3   # a shorter plan
#
# Figures go to $OUT (default /tmp/peers/results): NAME.txt (the table) and NAME.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PEERS=${PEERS:-/tmp/peers}
OUT=${OUT:-$PEERS/results}
mkdir -p "$OUT"
export PYTHONPATH=$ROOT
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() {  # wait_port PORT SECONDS
  for _ in $(seq "$2"); do
    if python -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null
    then return 0; fi
    sleep 1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}

python -m tests.fakes.upstream --port 9101 --chunks 3 --delay 0 > "$OUT/fake-fast.log" 2>&1 &
PIDS+=($!)
python -m tests.fakes.upstream --port 9102 --chunks 20 --delay 0.005 > "$OUT/fake-stream.log" 2>&1 &
PIDS+=($!)
wait_port 9101 30; wait_port 9102 30

# LiteLLM: the cost map from its package, not fetched from the network at start.
LITELLM_LOCAL_MODEL_COST_MAP=True "$PEERS/litellm-venv/bin/litellm" \
  --config "$ROOT/bench/peers/litellm.yaml" --host 127.0.0.1 --port 4000 --num_workers 1 \
  > "$OUT/litellm.log" 2>&1 &
LITELLM=$!; PIDS+=($LITELLM)
(cd "$PEERS/portkey" && exec node node_modules/@portkey-ai/gateway/build/start-server.js) \
  > "$OUT/portkey.log" 2>&1 &
PORTKEY=$!; PIDS+=($PORTKEY)
# vllm-router balances over one pool of workers whatever the model name: the fast fake.
"$PEERS/vllm-venv/bin/vllm-router" --host 127.0.0.1 --port 4002 \
  --worker-urls http://127.0.0.1:9101 > "$OUT/vllm-router.log" 2>&1 &
VLLM=$!; PIDS+=($VLLM)
wait_port 4000 300; wait_port 8787 120; wait_port 4002 120

uptime | tee "$OUT/uptime.txt"
python bench/run.py "$@" --out "$OUT/lai.json" > "$OUT/lai.txt"
uptime | tee -a "$OUT/uptime.txt"
common=(--running-upstreams --upstream-port 9101 --stream-upstream-port 9102)
# Portkey routes by request headers: provider and host of the fast fake (its streamed
# answers fail here anyway: bench/README.md).
python bench/run.py "$@" "${common[@]}" --gateway http://127.0.0.1:8787 \
  --gateway-name portkey --gateway-pid "$PORTKEY" --gateway-key sk-fake \
  --gateway-header "x-portkey-provider: openai" \
  --gateway-header "x-portkey-custom-host: http://127.0.0.1:9101/v1" \
  --out "$OUT/portkey.json" > "$OUT/portkey.txt" || true
uptime | tee -a "$OUT/uptime.txt"
python bench/run.py "$@" "${common[@]}" --gateway http://127.0.0.1:4000 \
  --gateway-name litellm --gateway-key sk-bench-litellm --gateway-pid "$LITELLM" \
  --out "$OUT/litellm.json" > "$OUT/litellm.txt" || true
uptime | tee -a "$OUT/uptime.txt"
python bench/run.py "$@" "${common[@]}" --gateway http://127.0.0.1:4002 \
  --gateway-name vllm-router --gateway-pid "$VLLM" \
  --out "$OUT/vllm-router.json" > "$OUT/vllm-router.txt" || true
uptime | tee -a "$OUT/uptime.txt"
python bench/peers/table.py "$OUT"
