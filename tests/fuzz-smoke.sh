#!/usr/bin/env bash
# A short run of every fuzz target (fuzz/, see docs/development.md) on its committed corpus:
# each for SECS seconds (20 by default), 13 targets, so about 4.5 minutes of fuzzing once built.
# Needs the nightly toolchain; installs cargo-fuzz when it is missing. A crash fails the run and
# leaves its input under fuzz/artifacts/<target>/. New inputs go to a scratch directory, never
# into the committed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${SECS:-20}"
TARGETS=(
  query_parse:dns.dict
  hickory_diff:dns.dict
  answer_walk:dns.dict
  edns_options:dns.dict
  doh_request:dns.dict
  jamf_webhook:json.dict
  jamf_api:json.dict
  list_formats:list.dict
  zone_transfer:dns.dict
  ssf_set:json.dict
  trail_params:params.dict
  trail_chunk:dns.dict
  console_input:params.dict
)
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install cargo-fuzz --locked
fi
# No sanitizer: the code under test is safe Rust, and panics (assertions, overflow checks,
# bounds checks) are what the targets look for; this doubles the executions per second.
cargo +nightly fuzz build -s none
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for spec in "${TARGETS[@]}"; do
  target="${spec%%:*}"
  dict="${spec#*:}"
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  if cargo +nightly fuzz run -s none "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$SECS" -dict="fuzz/dict/$dict" -print_final_stats=1 >"$log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    echo "fuzz $target: ${runs:-?} runs in ${SECS}s, no crash"
  else
    echo "fuzz $target: FAILED" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
done
echo "fuzz: ${#TARGETS[@]} passed, 0 failed"
