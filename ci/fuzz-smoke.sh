#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECONDS each, default 30). cargo-fuzz needs
# nightly features; RUSTC_BOOTSTRAP=1 enables them on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "ci: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cargo fuzz build -O
for t in $(cargo fuzz list); do
  echo "ci: fuzzing $t for ${seconds}s"
  log="target/fuzz-$t.log"
  mkdir -p target
  if ! cargo fuzz run -O "$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "ci: fuzz target $t failed (log: $log, reproducer under fuzz/artifacts/$t/)"
    exit 1
  fi
  grep -E '^Done' "$log" || true
done
