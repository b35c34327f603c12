#!/usr/bin/env bash
# The test command: everything CI runs, runnable on a fresh Debian machine.
# Installs what it needs, then checks formatting, lints, and runs every test, including the
# browser end-to-end tests (Debian's Chromium + playwright-core, an aiortc peer).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The cluster tests start their own Redis servers (Debian's), one per test.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# The TURN tests start their own coturn (turnserver) and use its turnutils_uclient/_peer.
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
# The ACME test runs Debian's pebble test CA and its mock DNS (pebble-challtestsrv).
{ command -v pebble && command -v pebble-challtestsrv; } >/dev/null 2>&1 || need_apt+=(pebble)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  # The package starts a system Redis on 6379; the tests use their own, so stop it.
  if [[ " ${need_apt[*]} " == *" redis-server "* ]]; then
    (service redis-server stop || pkill -x redis-server) >/dev/null 2>&1 || true
  fi
  # Likewise a system coturn on 3478, if the package started one (Debian's normally does not).
  if [[ " ${need_apt[*]} " == *" coturn "* ]]; then
    service coturn stop >/dev/null 2>&1 || true
  fi
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "==> adding the $component component"
    rustup component add "$component"
  fi
done

# Load-style tests open many sockets at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
echo "==> the black-box suites again, against two cluster nodes on one Redis (clients alternate)"
SWITCHBOARD_TEST_NODES=2 cargo test -p switchboard-server --locked \
  --test conference --test query_rooms --test room_relay --test pairing --test broadcast \
  --test cross_dialect
echo "==> fuzz: every decoder for 10 s (nightly + ASan when present; crashes fail the run)"
scripts/fuzz.sh 10
echo "==> end-to-end: real Chromium and aiortc through the release binary"
./tests/e2e/run.sh
echo "==> the Debian package: cargo deb (reusing the release build), dpkg -i, run, dpkg -r"
scripts/test-deb.sh
