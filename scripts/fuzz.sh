#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and prints the executions of each.
#
#   scripts/fuzz.sh                       # all targets, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=300 scripts/fuzz.sh ocsp_request_der csr_reader
#
# Environment:
#   FUZZ_SECONDS   libFuzzer -max_total_time per target (default 20)
#   FUZZ_JOBS      build jobs for cargo (default: cargo's)
#   FUZZ_ARGS      extra libFuzzer flags, e.g. "-max_len=4096"
#
# cargo-fuzz drives libFuzzer with -Zsanitizer=address and coverage flags,
# which need a nightly compiler; with only a stable toolchain we set
# RUSTC_BOOTSTRAP=1 (stable rustc then accepts -Z flags). The targets are
# built with debug assertions (cargo fuzz -a), so integer overflow panics.
#
# The corpus grows in fuzz/corpus/<target> (not committed); the checked-in
# seeds (fuzz/seeds/<target>) and past crashes (fuzz/regressions/<target>)
# are read-only inputs. A crash stops that target, leaves the input in
# fuzz/artifacts/<target>/ and makes the script exit 1 after all targets ran.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
fuzz="$root/fuzz"
secs="${FUZZ_SECONDS:-20}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(ocsp_request_der ocsp_get_path csr_reader issuance_validate revocation_validate serial_parsers)
fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked || { echo "cargo-fuzz could not be installed" >&2; exit 2; }
fi

jobs=()
[ -n "${FUZZ_JOBS:-}" ] && jobs=(--jobs "$FUZZ_JOBS")

echo "== building ${#targets[@]} fuzz targets (address sanitizer, debug assertions)"
build_start=$SECONDS
# Build every target in one cargo invocation (they share all dependencies).
mkdir -p "$fuzz/target"
(cd "$fuzz" && cargo fuzz build -a "${jobs[@]}") >"$fuzz/target/fuzz-build.log" 2>&1 || {
  tail -40 "$fuzz/target/fuzz-build.log" >&2
  echo "cargo fuzz build failed (log: fuzz/target/fuzz-build.log)" >&2
  exit 2
}
echo "   built in $((SECONDS - build_start)) s"

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$fuzz/corpus/$t"
  mkdir -p "$corpus" "$fuzz/artifacts/$t"
  inputs=("$corpus" "$fuzz/seeds/$t")
  [ -d "$fuzz/regressions/$t" ] && [ -n "$(ls -A "$fuzz/regressions/$t" 2>/dev/null | grep -v '^\.' | grep -v '\.md$')" ] \
    && inputs+=("$fuzz/regressions/$t")
  log="$fuzz/artifacts/$t/last-run.log"
  echo "== $t: ${secs}s"
  # -rss_limit_mb: a decoder must not need gigabytes for a small input.
  # shellcheck disable=SC2086
  (cd "$fuzz" && cargo fuzz run -a "${jobs[@]}" "$t" "${inputs[@]}" -- \
      -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 ${FUZZ_ARGS:-}) >"$log" 2>&1
  rc=$?
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  [ -z "$execs" ] && execs="$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')"
  rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')"
  crash="$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //')"
  if [ $rc -eq 0 ]; then
    line="$(printf '%-20s ok     %10s execs  %6s/s  cov %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}")"
  else
    failed+=("$t")
    line="$(printf '%-20s FAILED %10s execs  (rc %s) %s' "$t" "${execs:-?}" "$rc" "${crash:-see $log}")"
    grep -m1 -A6 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" | sed 's/^/   | /'
  fi
  echo "   $line"
  summary+=("$line")
done

echo
echo "== fuzz summary (${secs}s per target; logs in fuzz/artifacts/<target>/last-run.log)"
printf '   %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]}  -- minimise with: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin -a <target> <artifact>)" >&2
  exit 1
fi
