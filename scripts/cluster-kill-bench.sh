#!/usr/bin/env bash
# Node kill to last leave notice (docs/performance.md, "Cluster (Redis)").
#
# Starts its own Redis (unix socket, no persistence) and two nodes with a short lease on
# loopback; then KILLS times: a fresh victim node B, `switchboard bench kill` puts a watcher
# on node A and PEERS members of its room on B, sends B SIGKILL, and times every leave notice
# the watcher gets. Prints one line per kill and the distribution of "kill to last leave
# notice" (min, median, p95, max) next to the lease. Every process it starts is stopped by
# its PID on exit. Needs a release build:
#   cargo build --release -p switchboard
#   scripts/cluster-kill-bench.sh            # KILLS=20 PEERS=4 LEASE=3s
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-./target/release/switchboard}
KILLS=${KILLS:-20}
PEERS=${PEERS:-4}
LEASE=${LEASE:-3s}
PORT_A=${PORT_A:-18301}
PORT_B=${PORT_B:-18302}
# Bounds: a kill waits at most 30 s for its notices, so the whole run is bounded too.
[ "$KILLS" -ge 1 ] && [ "$KILLS" -le 100 ] || { echo "KILLS must be 1 to 100" >&2; exit 2; }

dir=$(mktemp -d /tmp/cluster-kill.XXXXXX)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT

redis-server --port 0 --unixsocket "$dir/r.sock" --save '' --appendonly no \
  >"$dir/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$dir/r.sock" ] && break; sleep 0.1; done
[ -S "$dir/r.sock" ] || { echo "redis did not start: $dir/redis.log" >&2; exit 1; }
REDIS="redis+unix://$dir/r.sock"

# node PORT LOG: starts a node and waits until /readyz answers 200 (10 s at most).
node() {
  RUST_LOG=warn "$BIN" --listen "127.0.0.1:$1" --no-media --redis "$REDIS" \
    --cluster-lease "$LEASE" >>"$2" 2>&1 &
  started=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node on :$1 not ready: $2" >&2
  exit 1
}

node "$PORT_A" "$dir/a.log"
pids+=("$started")
: >"$dir/kills.jsonl"
for kill in $(seq "$KILLS"); do
  node "$PORT_B" "$dir/b.log"
  victim=$started
  "$BIN" bench kill --url "ws://127.0.0.1:$PORT_A,ws://127.0.0.1:$PORT_B" \
    --victim-pid "$victim" --peers "$PEERS" --wait 30s --json >>"$dir/kills.jsonl"
  wait "$victim" 2>/dev/null || true  # bash reports "Killed": that is the point
  tail -n 1 "$dir/kills.jsonl" | jq -r --arg k "$kill" \
    '"kill \($k): \(.received)/\(.expected) leave notices, first \((.latency_us.p50 // 0) / 1000 | floor) ms (median), last \((.latency_us.max // 0) / 1000 | floor) ms, errors \(.errors)"'
done

echo "kill to last leave notice over $KILLS kills, lease $LEASE, $PEERS members on the victim:"
jq -r 'select(.errors == 0) | .latency_us.max' "$dir/kills.jsonl" | sort -n | awk -v lease="$LEASE" '
  { v[NR] = $1 / 1000 }
  END {
    n = NR; p95 = int(0.95 * n + 0.999999); if (p95 < 1) p95 = 1
    median = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    l = lease; sub(/s$/, "", l); l *= 1000
    printf "  min %.0f ms  median %.0f ms  p95 %.0f ms  max %.0f ms  (lease %.0f ms: %.2f / %.2f / %.2f / %.2f leases)\n",
      v[1], median, v[p95], v[n], l, v[1] / l, median / l, v[p95] / l, v[n] / l
  }'
missing=$(jq -s 'map(select(.errors > 0)) | length' "$dir/kills.jsonl")
echo "  kills with a leave notice missing after 30 s (left out above): $missing"
echo "runs: $dir/kills.jsonl"
