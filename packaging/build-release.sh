#!/bin/sh
# The container image's build stage, as a script the tests run too (scripts/test-deb.sh):
# a locked release build of the switchboard binary, installed into OUTDIR.
set -eu
out=${1:?usage: packaging/build-release.sh OUTDIR}
cargo build --release --locked -p switchboard
install -D -m 0755 target/release/switchboard "$out/switchboard"
"$out/switchboard" --version
