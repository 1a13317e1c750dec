#!/usr/bin/env bash
# Long coverage-guided fuzzing: runs every target (or the ones named) under libFuzzer for
# SECONDS each (default 300), one after another on one core, niced.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Targets: escape virtqueue bar0 vfio_user tenant policy. Needs the nightly toolchain and
# cargo-fuzz (installed here if missing). Corpora grow in .cache/fuzz/corpus/TARGET (seeded from
# fuzz-targets' corpus), crashes land in tests/fuzz/cargo-fuzz/artifacts/TARGET, and each run's
# last libFuzzer line (executions, coverage) is appended to .cache/fuzz/summary.txt.
# The short deterministic pass CI runs is `cargo test -p fuzz-targets`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(escape virtqueue bar0 vfio_user tenant policy)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

mkdir -p .cache/fuzz
cargo build -q -p fuzz-targets --bin fuzz-seeds
status=0
for t in "${targets[@]}"; do
    corpus=.cache/fuzz/corpus/$t
    target/debug/fuzz-seeds "$t" "$corpus"
    log=.cache/fuzz/$t.log
    echo "fuzzing $t for ${seconds}s (log $log)"
    if ! nice -n 10 cargo +nightly fuzz run --fuzz-dir tests/fuzz/cargo-fuzz "$t" \
            "$corpus" -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 \
            -print_final_stats=1 >"$log" 2>&1; then
        echo "$t: libFuzzer stopped on a finding; see $log and tests/fuzz/cargo-fuzz/artifacts/$t"
        status=1
    fi
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)
    echo "$(date -u +%FT%TZ) $t ${seconds}s executions=${runs:-?} $(grep -E '^#[0-9]+' "$log" | tail -1)" \
        | tee -a .cache/fuzz/summary.txt
done
exit $status
