#!/usr/bin/env bash
# Runs every test and ends with one summary line over all test binaries, so
# the last line says how many tests ran (cargo's own last line is the
# doc-test run, which often has none).
set -uo pipefail
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# --no-fail-fast: one failing test binary does not hide the results of the others.
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The store's tests once more on PostgreSQL: the conformance suite of both
# backends (a throwaway cluster; PostgreSQL missing fails unless
# HPKI_ALLOW_NO_POSTGRES=1).
HPKI_TEST_STORE=postgres cargo test -p store --lib --locked "$@" 2>&1 | tee -a "$log"
pg_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$pg_status
# The fuzz harnesses are a workspace of their own: build them and replay their
# seeds and regressions, so a change that breaks them shows here.
cargo test --manifest-path fuzz/Cargo.toml --locked 2>&1 | tee -a "$log"
fuzz_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$fuzz_status
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) }
} END { print p + 0, f + 0 }' "$log")
echo
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
