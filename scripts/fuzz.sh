#!/usr/bin/env bash
# Fuzzes every decoder (the five dialects, frame.rs, the cluster's bus envelopes, access
# tokens, WebSocket frames) for SECONDS each: scripts/fuzz.sh SECONDS [TARGET...]
# Targets live in fuzz/ (cargo-fuzz layout, its own workspace). With a nightly toolchain the
# targets build with AddressSanitizer; without one, on stable with `--sanitizer none`.
# A crash fails the script and is kept under fuzz/regressions/TARGET/, which plain
# `cargo test` replays (crates/dialects/tests/fuzz_regressions.rs): commit it with the fix.
# FUZZ_TOOLCHAIN=stable forces the stable path (to check it on a machine with nightly).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 SECONDS [TARGET...]" >&2
  exit 2
fi
seconds=$1
shift
all=(conference query_rooms pairing room_relay broadcast frame envelope token websocket)
targets=("$@")
if [ $# -eq 0 ]; then targets=("${all[@]}"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "${FUZZ_TOOLCHAIN:-nightly}" = nightly ] && rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  sanitizer=(--sanitizer address)
  echo "==> fuzzing on nightly with AddressSanitizer"
else
  toolchain=()
  sanitizer=(--sanitizer none)
  echo "==> no nightly toolchain: fuzzing on stable without a sanitizer"
fi

cd fuzz
# One build for every target, so each run below starts at once.
cargo "${toolchain[@]}" fuzz build "${sanitizer[@]}" >/dev/null

failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "regressions/$target"
  log="target/fuzz-$target.log"
  echo "==> $target: ${seconds}s"
  # The cluster's bus, tokens and WebSocket frames have corpora of their own; the dialects
  # share the docs' examples.
  seeds=seeds
  if [ -d "seeds-$target" ]; then seeds="seeds-$target"; fi
  if cargo "${toolchain[@]}" fuzz run "${sanitizer[@]}" "$target" "corpus/$target" "$seeds" -- \
      -dict=signaling.dict -max_total_time="$seconds" -max_len=8192 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="regressions/$target/" >"$log" 2>&1; then
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
    echo "    $runs executions, no crash"
  else
    echo "    CRASH (or fuzzer failure); input kept under fuzz/regressions/$target/; log: fuzz/$log"
    tail -n 30 "$log"
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "==> fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
