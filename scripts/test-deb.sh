#!/usr/bin/env bash
# The Debian package end to end: `cargo deb` builds it (reusing the release build), dpkg
# installs it, the installed binary checks the installed config and serves from it (run
# directly: no systemd in a container), the installed unit verifies, then it is purged.
# Needs root (dpkg). Refuses to touch a switchboard package that was already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test-deb.sh: needs root (dpkg -i)" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' switchboard 2>/dev/null | grep -q installed; then
  echo "test-deb.sh: a switchboard package is already installed; not touching it" >&2
  exit 1
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "==> installing cargo-deb"
  cargo install cargo-deb --locked
fi

echo "==> the container image's build stage (packaging/build-release.sh), also what cargo deb packs"
packaging/build-release.sh target/image-out
rm -rf target/image-out  # a copy of the release binary: only its --version was wanted
echo "==> cargo deb"
cargo deb -p switchboard --locked --no-build
deb=$(ls -t target/debian/switchboard_*.deb | head -n 1)
echo "built $deb"
contents=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/switchboard ./etc/switchboard/switchboard.toml ./etc/default/switchboard \
  ./usr/share/man/man1/switchboard.1 ./usr/share/bash-completion/completions/switchboard \
  switchboard.service; do
  grep -q -- "$path" <<<"$contents" || { echo "the package lacks $path" >&2; exit 1; }
done
info=$(dpkg-deb --info "$deb")
# conffiles keep edits over upgrades; the scripts enable the unit and stop it at removal.
for control in conffiles postinst prerm postrm; do
  grep -q " $control " <<<"$info" || { echo "the package lacks its $control" >&2; exit 1; }
done

server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  dpkg -r switchboard >/dev/null 2>&1 || true
  dpkg -P switchboard >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "==> dpkg -i"
dpkg -i "$deb"
/usr/bin/switchboard --version
echo "==> check-config on the installed config"
/usr/bin/switchboard check-config --config /etc/switchboard/switchboard.toml >/dev/null
echo "==> systemd-analyze verify on the installed unit"
unit=$(dpkg -L switchboard | grep '/switchboard\.service$')
verify=$(systemd-analyze verify "$unit" 2>&1) || { echo "$verify" >&2; exit 1; }
if grep -q switchboard.service <<<"$verify"; then echo "$verify" >&2; exit 1; fi
if command -v man >/dev/null 2>&1; then man -w switchboard >/dev/null; fi

echo "==> the installed binary serves from the installed config (on loopback)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || shuf -i 30000-60000 -n 1)
# The packaged config listens on 0.0.0.0:8080; the test stays on loopback: the variable wins.
SIGNALING_ADDR="127.0.0.1:$port" /usr/bin/switchboard --config /etc/switchboard/switchboard.toml \
  >target/debian/serve.log 2>&1 &
server=$!
for _ in $(seq 1 200); do
  if /usr/bin/switchboard healthcheck "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$server" 2>/dev/null || { cat target/debian/serve.log >&2; exit 1; }
  sleep 0.1
done
/usr/bin/switchboard healthcheck "http://127.0.0.1:$port/healthz"
/usr/bin/switchboard healthcheck "http://127.0.0.1:$port/readyz"
kill -TERM "$server"
wait "$server"
server=""

echo "==> dpkg -r"
dpkg -r switchboard
test ! -e /usr/bin/switchboard
# Removed, not purged: the edited config stays until a purge.
test -e /etc/switchboard/switchboard.toml
dpkg -P switchboard
test ! -e /etc/switchboard/switchboard.toml
trap - EXIT
echo "the Debian package: OK"
