#!/usr/bin/env bash
# End-to-end tests in a real browser: Debian's Chromium driven by playwright-core (mesh calls,
# media through the SFU with mediasoup-client, calls relayed by Debian's coturn), plus an aiortc
# peer. Installs what a fresh Debian machine lacks, builds the server, then runs the tests inside
# a loopback-only network namespace, so every WebRTC packet stays on 127.0.0.0/8.
#
#   tests/e2e/run.sh                      all test files
#   tests/e2e/run.sh call.test.mjs        some of them
#   SKIP_BUILD=1 tests/e2e/run.sh         reuse target/release/switchboard as it is
#
# Screenshots land in test-artifacts/ at the repository root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# turn.test.mjs starts its own coturn (Debian's turnserver) inside the namespace.
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (Debian)"
  apt_install "${need_apt[@]}"
  # The test runs a coturn of its own: stop the system one, if the package started it.
  if [[ " ${need_apt[*]} " == *" coturn "* ]]; then
    (service coturn stop || true) >/dev/null 2>&1
  fi
fi

if ! python3 -c 'import aiortc, websockets' >/dev/null 2>&1; then
  echo "==> installing aiortc and websockets (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

echo "==> npm ci (playwright-core, mediasoup-client, esbuild; no browser download)"
(cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

# The demo's SFU mode serves a checked-in bundle of mediasoup-client: make sure it is exactly
# what the pinned packages build (esbuild from npm ci, offline, a fraction of a second).
echo "==> web/vendor/build.sh --check (the vendored mediasoup-client bundle is up to date)"
"$repo/web/vendor/build.sh" --check

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "==> cargo build --release -p switchboard"
  (cd "$repo" && cargo build --release -p switchboard)
fi

mkdir -p "$repo/test-artifacts"
cd "$here"
if [ $# -gt 0 ]; then files=("$@"); else files=(*.test.mjs); fi
echo "==> node --test ${files[*]} (in a loopback-only network namespace)"
# The namespace has only `lo`: the server, Chromium and aiortc can reach nothing else.
exec unshare --net bash -c 'ip link set lo up && exec node --test --test-concurrency=1 --test-timeout=300000 "$@"' node-test "${files[@]}"
