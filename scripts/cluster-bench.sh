#!/usr/bin/env bash
# The cluster's side-by-side figures (docs/performance.md, "Cluster (Redis)"): one node
# without Redis (the floor of every ratio), one node with --redis (all peers local), and two
# nodes with every pair split across them, in one `bench compare` per scenario, rounds
# interleaved; then Redis's memory per member (docs/scaling.md). Starts its own Redis on a
# loopback port and three nodes, all stopped by PID on exit. Needs a release build:
#   cargo build --release -p switchboard
#   scripts/cluster-bench.sh                 # ROUNDS=5; OUT=dir for the JSON lines
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-./target/release/switchboard}
ROUNDS=${ROUNDS:-5}
MEMBERS=${MEMBERS:-10000}
PORT_REDIS=${PORT_REDIS:-18399}
PORT_ONE=${PORT_ONE:-18201}  # one node, no Redis
PORT_A=${PORT_A:-18202}      # node A (with Redis): "one node with --redis" and half the split
PORT_B=${PORT_B:-18203}      # node B (with Redis): the other half of the split
OUT=${OUT:-$(mktemp -d /tmp/cluster-bench.XXXXXX)}
mkdir -p "$OUT"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT

redis-server --bind 127.0.0.1 --port "$PORT_REDIS" --save '' --appendonly no \
  >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
pids+=("$REDIS_PID")
for _ in $(seq 100); do redis-cli -p "$PORT_REDIS" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS="redis://127.0.0.1:$PORT_REDIS"

# node PORT [FLAGS...]: starts a node and waits until /readyz answers 200.
node() {
  local port=$1
  shift
  RUST_LOG=warn "$BIN" --listen "127.0.0.1:$port" --no-media "$@" >"$OUT/node-$port.log" 2>&1 &
  started=$!
  pids+=("$started")
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node on :$port not ready" >&2
  exit 1
}
node "$PORT_ONE"; ONE=$started
node "$PORT_A" --redis "$REDIS"; A=$started
node "$PORT_B" --redis "$REDIS"; B=$started

ONE_URL="ws://127.0.0.1:$PORT_ONE"
A_URL="ws://127.0.0.1:$PORT_A"
SPLIT_URL="$A_URL,ws://127.0.0.1:$PORT_B"
U=(--url "$ONE_URL" --url "$A_URL" --url "$SPLIT_URL"
   --server-pid "$ONE" --server-pid "$A,$REDIS_PID" --server-pid "$A,$B,$REDIS_PID")
C=("$BIN" bench compare)

redis-cli -p "$PORT_REDIS" info commandstats >"$OUT/commandstats-before.txt"
"${C[@]}" relay "${U[@]}" --rounds "$ROUNDS" --pairs 1000 --window 8 --size 1024 \
  --duration 10s --warmup 3s --json >"$OUT/relay-w8.jsonl"
"${C[@]}" relay "${U[@]}" --rounds "$ROUNDS" --pairs 1000 --window 1 --size 1024 \
  --duration 10s --warmup 3s --json >"$OUT/relay-w1.jsonl"
redis-cli -p "$PORT_REDIS" info commandstats >"$OUT/commandstats-relay.txt"
"${C[@]}" storm --url "$ONE_URL" --url "$SPLIT_URL" --server-pid "$ONE" \
  --server-pid "$A,$B,$REDIS_PID" --rounds "$ROUNDS" --clients 5000 --concurrency 500 \
  --json >"$OUT/storm.jsonl"

# Redis memory per member: MEMBERS idle connections on node A, each in its own room (a
# member, its room and the room's channel), sampled at its peak during the hold.
sleep 3
redis-cli -p "$PORT_REDIS" info memory | tr -d '\r' >"$OUT/memory-before.txt"
"$BIN" bench idle --url "$A_URL" --connections "$MEMBERS" --hold 10s --sources 4 \
  --server-pid "$A" --json >"$OUT/idle.jsonl" &
bench=$!
peak=0
while kill -0 "$bench" 2>/dev/null; do
  used=$(redis-cli -p "$PORT_REDIS" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')
  [ "${used:-0}" -gt "$peak" ] && { peak=$used; redis-cli -p "$PORT_REDIS" dbsize >"$OUT/dbsize-peak.txt"; }
  sleep 0.5
done
wait "$bench"
# What stays once every member has left: each room's change number (P:rseq:ROOM) is kept.
sleep 3
after=$(redis-cli -p "$PORT_REDIS" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')
before=$(awk -F: '/^used_memory:/ {print $2}' "$OUT/memory-before.txt")
echo "redis used_memory before $before, peak $peak with $MEMBERS members:" \
  "$(( (peak - before) / MEMBERS )) bytes per member; keys at peak $(cat "$OUT/dbsize-peak.txt");" \
  "after they left $after: $(( (after - before) / MEMBERS )) bytes per room left behind," \
  "keys $(redis-cli -p "$PORT_REDIS" dbsize)" | tee "$OUT/memory.txt"
echo "JSON lines and logs in $OUT"
