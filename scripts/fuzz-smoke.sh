#!/usr/bin/env bash
# Fuzz smoke campaign: builds every cargo-fuzz target (stable toolchain, no sanitizer) and runs
# each for FUZZ_SECONDS (default 30) from the committed corpus, with its dictionary.
# Exits non-zero if any target crashes (a crash input lands in fuzz/artifacts/<target>/).
#
# Env:
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_TARGETS   space-separated subset (default: all six)
#   FUZZ_JOBS      libFuzzer -fork=N workers per target (default: none, one process)
#   FUZZ_KEEP      if set, new interesting inputs are written to this directory (one subdir per
#                  target) instead of a temporary one; the committed corpus is never modified.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_TARGETS="${FUZZ_TARGETS:-token_parse record_decode policy_build ops_vs_model sled_values postgres_row redis_values}"
# LLVM inlines short byte comparisons, hiding them from libFuzzer's comparison tracing;
# cargo-fuzz overrides build.rustflags, so this must be the RUSTFLAGS environment variable.
export RUSTFLAGS="-Cllvm-args=-max-loads-per-memcmp=0"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

# AddressSanitizer needs nightly: `-s none` builds with the stable toolchain.
cargo fuzz build -s none

work="${FUZZ_KEEP:-$(mktemp -d)}"
failed=()
for t in $FUZZ_TARGETS; do
    mkdir -p "$work/$t" "artifacts/$t"
    log="$work/$t.log"
    echo "== fuzz $t for ${FUZZ_SECONDS}s (log: $log) =="
    extra=()
    if [ -n "${FUZZ_JOBS:-}" ]; then
        extra+=("-fork=$FUZZ_JOBS")
    fi
    set +e
    cargo fuzz run -s none "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" \
        -dict="dicts/$t.dict" \
        -timeout=25 \
        -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" \
        "${extra[@]}" >"$log" 2>&1
    rc=$?
    set -e
    # libFuzzer's closing status line and final stats.
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | tail -2 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        echo "!! $t FAILED (exit $rc): see $log and fuzz/artifacts/$t/"
        grep -E 'panicked|SUMMARY|Test unit written|deadly signal|timeout' "$log" | head -20 || true
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz smoke: FAILED targets: ${failed[*]}"
    exit 1
fi
echo "fuzz smoke: OK (${FUZZ_SECONDS}s each: $FUZZ_TARGETS)"
