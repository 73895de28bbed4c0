#!/usr/bin/env bash
# Runs the cargo-fuzz target(s) for a bounded time and keeps any failing input as a regression.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET]      (default 60)
#
# cargo-fuzz (libFuzzer) wants a nightly compiler for `-Z` flags. This project builds on the
# machine's one stable toolchain, so the script sets RUSTC_BOOTSTRAP=1 (which lets stable accept
# them) and uses `--sanitizer none`: the fuzzed crates forbid `unsafe`, so AddressSanitizer would
# find nothing a panic does not already show, and libFuzzer's coverage guidance works without it.
# cargo-fuzz itself is installed from crates.io when missing (about 1 minute).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
status=0
for target in decode_frame; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "fuzzing $target for ${secs}s"
    cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="artifacts/$target/" -print_final_stats=1 || status=$?
    for crash in artifacts/"$target"/*; do
        [ -f "$crash" ] || continue
        cp "$crash" "regressions/$target/"
        echo "kept $(basename "$crash") in fuzz/regressions/$target (replayed by cargo test)"
        status=1
    done
done
exit "$status"
