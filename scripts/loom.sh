#!/usr/bin/env bash
# loom: explore every interleaving of 2–3 racing operations over the driver and MemoryStore.
#
# Runs engine/tests/loom.rs twice, each with its own target dir so the normal build is not
# evicted:
#   1. --cfg leasehold_loom                          the real code must pass every model;
#   2. --cfg leasehold_loom --cfg leasehold_planted_bug
#      MemoryStore's check-then-act twins are compiled in, and so is the rule before
#      INV-store-time (a revoke, group revoke or read that finds a session past its deadline
#      writes no ending); every `planted_twin::` test must panic with its invariant's name:
#      this run passes only if loom catches every planted bug.
#
# Usage: scripts/loom.sh [extra args passed to the test binary, e.g. a test-name filter]
# Env:   LOOM_MAX_PREEMPTIONS overrides every model's preemption bound; LOOM_LOG=info logs.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0

echo "== loom: real code (RUSTFLAGS=--cfg leasehold_loom, target/loom) =="
if ! RUSTFLAGS="--cfg leasehold_loom" CARGO_TARGET_DIR=target/loom \
    cargo test -p leasehold --release --test loom -- --test-threads=1 --nocapture "$@"; then
    echo "loom: the real code FAILED a model" >&2
    status=1
fi

echo "== loom: planted-bug twins (RUSTFLAGS=--cfg leasehold_loom --cfg leasehold_planted_bug, target/loom-planted) =="
# --nocapture so each twin's panic (the invariant loom caught) is shown; the rest of loom's
# report (backtraces, the failing schedule) goes to the log only.
log="$(mktemp)"
set +e
RUSTFLAGS="--cfg leasehold_loom --cfg leasehold_planted_bug" CARGO_TARGET_DIR=target/loom-planted \
    cargo test -p leasehold --release --test loom -- --test-threads=1 --nocapture "$@" >"$log" 2>&1
rc=$?
set -e
grep -E '^(test |running |test result)|INV-|^error|panicked at|Finished' "$log" | grep -v '^\s*Compiling' || true
if [ "$rc" -ne 0 ]; then
    echo "loom: a planted bug was NOT caught (full output: $log)" >&2
    status=1
else
    rm -f "$log"
fi

if [ "$status" -eq 0 ]; then
    echo "loom: OK (real code passes every model; every planted bug caught)"
fi
exit "$status"
